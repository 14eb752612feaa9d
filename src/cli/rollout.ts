import { Command, Option } from "commander";
import type { Mlship } from "../app.js";
import { MlshipError } from "../core/index.js";
import { QUALITY_METRICS, type QualityMetric } from "../package/index.js";
import { AUDIT_ACTIONS, ROLLOUT_STATES, validateGuard } from "../rollout/index.js";
import type { AuditAction, AuditEntry, Rollout, RolloutGuard, RolloutMode, RolloutService, RolloutState, RolloutStatus, StartRolloutInput } from "../rollout/index.js";
import { parseVersion, usageError } from "./args.js";
import type { CliContext, GlobalOptions } from "./context.js";
import { formatTable, printJson, printLine } from "./io.js";

function globals<T>(cmd: Command): GlobalOptions & T {
  return cmd.optsWithGlobals<GlobalOptions & T>();
}

function rolloutsOf(app: Mlship): RolloutService {
  return app.rollouts;
}

/** `30`, `30%` or `12.5%` -> 30 / 12.5; a usage error naming the flag otherwise. */
export function parsePercentFlag(text: string, flag: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*%?\s*$/.exec(text);
  const value = match === null ? Number.NaN : Number(match[1]);
  if (!Number.isFinite(value) || value < 0 || value > 100) throw usageError(`${flag} must be a percentage from 0 to 100 such as 10%, got "${text}"`, flag);
  return value;
}

function parseNumberFlag(text: string, flag: string): number {
  const value = Number(text);
  if (text.trim() === "" || !Number.isFinite(value)) throw usageError(`${flag} must be a number, got "${text}"`, flag);
  return value;
}

function ratio(value: number | null | undefined): string {
  if (value === null || value === undefined) return "";
  return `${(value * 100).toFixed(1)}%`;
}

function num(value: number | null | undefined): string {
  if (value === null || value === undefined) return "";
  return String(Number(value.toPrecision(4)));
}

function describe(rollout: Rollout): string {
  const share = rollout.mode === "shadow" ? `shadows ${rollout.percent}% of requests` : `takes ${rollout.percent}% of traffic`;
  return `${rollout.mode} of ${rollout.model}@${rollout.alias}: version ${rollout.challenger} ${share} against version ${rollout.champion}${rollout.sticky ? " (sticky by key)" : ""}`;
}

function statusText(status: RolloutStatus): string {
  const r = status.rollout;
  const lines = [`rollout ${r.id}: ${describe(r)}`];
  lines.push(`state ${r.state}; started ${r.startedAt} by ${r.startedBy}${r.reason === null ? "" : ` (${r.reason})`}`);
  if (r.endedAt !== null) lines.push(`ended ${r.endedAt} by ${r.endedBy ?? "?"}${r.endReason === null ? "" : ` (${r.endReason})`}`);
  const metric = status.comparison?.metric;
  const headers = ["VARIANT", "VERSION", "REQUESTS", "ERRORS", "ERROR RATE", "LOGGED", "OUTCOMES"];
  if (metric !== undefined) headers.push(metric.toUpperCase());
  const rows = status.variants.map((v) => {
    const row = [v.variant, String(v.version), String(v.requests), String(v.errors), ratio(v.errorRate), String(v.logged), v.quality === null ? "" : String(v.quality.outcomes)];
    if (metric !== undefined) row.push(num(v.quality?.metrics[metric]));
    return row;
  });
  lines.push("", formatTable(headers, rows));
  const c = status.comparison;
  if (c !== null && (c.champion === null || c.challenger === null)) {
    lines.push("", `${c.metric}: not comparable yet (an arm has no outcomes in the guard's window)`);
  } else if (c !== null) {
    const test = c.test === null ? "" : `; ${c.test} p=${c.pValue === null ? "n/a" : num(c.pValue)}${c.significant ? " (significant)" : ""}`;
    lines.push("", `${c.metric}: challenger ${num(c.challenger)} vs champion ${num(c.champion)}, difference ${num(c.difference)} (${c.higherIsBetter ? "higher" : "lower"} is better${test})`);
  }
  lines.push("", `guard: ${status.verdict.action} - ${status.verdict.reason}`);
  return lines.join("\n");
}

function rolloutRows(list: readonly Rollout[]): string[][] {
  return list.map((r) => [r.id, r.model, r.alias, r.mode, `${r.percent}%`, String(r.champion), String(r.challenger), r.state, r.startedAt, r.startedBy]);
}

interface TargetFlags {
  alias: string;
  id?: string;
}

/** The rollout a command acts on: `--id`, or the active rollout of NAME's alias. */
async function targetOf(service: RolloutService, name: string | undefined, o: TargetFlags): Promise<Rollout> {
  if (o.id !== undefined) return service.get(o.id);
  if (name === undefined) throw usageError("name the model (or give --id ROLLOUT)", "name");
  const active = await service.active(name, o.alias);
  if (active === undefined) throw new MlshipError("MLSHIP_ERR_ROLLOUT_NOT_FOUND", `model "${name}" has no active rollout on alias "${o.alias}"`, { field: "name" });
  return active;
}

export function rolloutCommand(ctx: CliContext): Command {
  const rollout = new Command("rollout").description("canary, shadow and A/B rollouts of a new version on an alias (docs/rollouts.md)");

  rollout
    .command("start")
    .description("start routing part of an alias's traffic to a challenger version (default: --canary 10%)")
    .argument("<name>", "model name")
    .requiredOption("--challenger <version>", "the version to try against the alias's current target")
    .option("--canary [pct]", "canary: the challenger answers this share of requests (default 10%)")
    .option("--shadow [pct]", "shadow: the champion answers, the challenger scores a logged copy of this share (default 100%)")
    .option("--ab [pct]", "A/B: the challenger answers this share (default 50%), reported per arm with a significance test")
    .option("--alias <alias>", "whose traffic is split", "production")
    .option("--no-sticky", "route every request at random instead of by its key")
    .option("--auto-promote", "promote by itself once the challenger has enough outcomes and is not worse than the margin")
    .option("--promote-after <duration>", "with --auto-promote: run at least this long first (e.g. 30m)")
    .option("--margin <delta>", "largest allowed regression of the metric before rolling back (default 0.02)")
    .addOption(new Option("--metric <name>", "live metric the arms are compared on").choices([...QUALITY_METRICS]))
    .option("--window <duration>", "trailing window the arms are compared over (default 1h)")
    .option("--min-outcomes <n>", "outcomes each arm needs before quality is judged (default 100)")
    .option("--reason <text>", "why (kept in the audit log)")
    .option("--json", "print the rollout as JSON")
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const o = globals<{
        challenger: string;
        canary?: string | boolean;
        shadow?: string | boolean;
        ab?: string | boolean;
        alias: string;
        sticky: boolean;
        autoPromote?: boolean;
        promoteAfter?: string;
        margin?: string;
        metric?: QualityMetric;
        window?: string;
        minOutcomes?: string;
        reason?: string;
        json?: boolean;
      }>(cmd);
      const challenger = parseVersion(o.challenger, "--challenger");
      const modes = (["canary", "shadow", "ab"] as const).filter((m) => o[m] !== undefined);
      if (modes.length > 1) throw usageError(`choose one of --canary, --shadow and --ab (got ${modes.map((m) => `--${m}`).join(" and ")})`, `--${modes[1] ?? "canary"}`);
      const mode: RolloutMode = modes[0] ?? "canary";
      const defaults: Record<RolloutMode, number> = { canary: 10, shadow: 100, ab: 50 };
      const flag = o[mode];
      const percent = typeof flag === "string" ? parsePercentFlag(flag, `--${mode}`) : defaults[mode];
      const guardInput: Record<string, unknown> = {};
      if (o.autoPromote === true) guardInput.autoPromote = true;
      if (o.promoteAfter !== undefined) guardInput.promoteAfter = o.promoteAfter;
      if (o.margin !== undefined) guardInput.margin = parseNumberFlag(o.margin, "--margin");
      if (o.metric !== undefined) guardInput.metric = o.metric;
      if (o.window !== undefined) guardInput.window = o.window;
      if (o.minOutcomes !== undefined) guardInput.minOutcomes = parseNumberFlag(o.minOutcomes, "--min-outcomes");
      let guard: RolloutGuard;
      try {
        guard = validateGuard(guardInput);
      } catch (error) {
        // Name the flag rather than the REST field.
        if (error instanceof MlshipError && error.field !== undefined) {
          const flagName = `--${error.field.replace(/^guard\./, "").replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
          throw usageError(error.message.replace(error.field, flagName), flagName);
        }
        throw error;
      }
      const app = await ctx.app(o);
      const input: StartRolloutInput = { model: name, challenger, mode, percent, alias: o.alias, sticky: o.sticky, guard, by: app.config.user };
      if (o.reason !== undefined) input.reason = o.reason;
      const started = await rolloutsOf(app).start(input);
      if (o.json === true) return printJson(ctx.io, started);
      printLine(ctx.io, `started ${describe(started)}`);
      printLine(ctx.io, `rollout ${started.id}; follow it with: mlship rollout status ${started.model}`);
    });

  const targetOptions = (command: Command): Command =>
    command
      .argument("[name]", "model name (its alias's active rollout)")
      .option("--alias <alias>", "which alias", "production")
      .option("--id <rollout>", "a rollout by id instead of the model's active one");

  targetOptions(rollout.command("status").description("a rollout's arms (requests, errors, live quality), their comparison and the guard's verdict"))
    .option("--json", "print JSON")
    .action(async (name: string | undefined, _opts: unknown, cmd: Command) => {
      const o = globals<TargetFlags & { json?: boolean }>(cmd);
      const app = await ctx.app(o);
      const service = rolloutsOf(app);
      const target = await targetOf(service, name, o);
      const status = await service.status(target.id);
      if (o.json === true) printJson(ctx.io, status);
      else printLine(ctx.io, statusText(status));
    });

  const endings = [
    {
      verb: "promote",
      description: "point the alias at the challenger and end the rollout",
      end: (service: RolloutService, id: string, actor: { by: string; reason?: string }) => service.promote(id, actor),
      says: (r: Rollout) => `promoted: ${r.model}@${r.alias} -> ${r.challenger} (was ${r.champion}); rollout ${r.id} ended`,
    },
    {
      verb: "abort",
      description: "end the rollout; the alias stays on the champion",
      end: (service: RolloutService, id: string, actor: { by: string; reason?: string }) => service.abort(id, actor),
      says: (r: Rollout) => `aborted: ${r.model}@${r.alias} stays on ${r.champion}; rollout ${r.id} ended`,
    },
  ] as const;
  for (const ending of endings) {
    targetOptions(rollout.command(ending.verb).description(ending.description))
      .option("--reason <text>", "why (kept in the audit log)")
      .option("--json", "print the ended rollout as JSON")
      .action(async (name: string | undefined, _opts: unknown, cmd: Command) => {
        const o = globals<TargetFlags & { reason?: string; json?: boolean }>(cmd);
        const app = await ctx.app(o);
        const service = rolloutsOf(app);
        const target = await targetOf(service, name, o);
        const ended = await ending.end(service, target.id, { by: app.config.user, ...(o.reason === undefined ? {} : { reason: o.reason }) });
        if (o.json === true) return printJson(ctx.io, ended);
        printLine(ctx.io, ending.says(ended));
      });
  }

  rollout
    .command("list")
    .alias("ls")
    .description("rollouts, newest first")
    .argument("[name]", "only this model's")
    .addOption(new Option("--state <state>", "only rollouts in this state").choices([...ROLLOUT_STATES]))
    .option("--limit <n>", "at most this many", "50")
    .option("--json", "print JSON")
    .action(async (name: string | undefined, _opts: unknown, cmd: Command) => {
      const o = globals<{ state?: RolloutState; limit: string; json?: boolean }>(cmd);
      const limit = parseNumberFlag(o.limit, "--limit");
      if (!Number.isSafeInteger(limit) || limit < 1) throw usageError(`--limit must be a whole number >= 1, got "${o.limit}"`, "--limit");
      const app = await ctx.app(o);
      const list = await rolloutsOf(app).list({ ...(name === undefined ? {} : { model: name }), ...(o.state === undefined ? {} : { state: o.state }), limit });
      if (o.json === true) return printJson(ctx.io, list);
      if (list.length === 0) return printLine(ctx.io, name === undefined ? "no rollouts" : `no rollouts of ${name}`);
      printLine(ctx.io, formatTable(["ID", "MODEL", "ALIAS", "MODE", "PERCENT", "CHAMPION", "CHALLENGER", "STATE", "STARTED", "BY"], rolloutRows(list)));
    });

  return rollout;
}

function detailsText(entry: AuditEntry): string {
  const d = entry.details;
  if (entry.action.startsWith("alias.")) return `${String(d.alias ?? "")} ${d.from === null || d.from === undefined ? "-" : String(d.from)} -> ${d.to === null || d.to === undefined ? "-" : String(d.to)}`.trim();
  if (entry.action === "rollout.start") return `${String(d.mode)} ${String(d.percent)}% ${String(d.champion)} vs ${String(d.challenger)} on ${String(d.alias)}`;
  if (entry.action === "rollout.promote") return `${String(d.alias)} ${String(d.from)} -> ${String(d.to)}`;
  if (entry.action.startsWith("deployment.")) {
    const changed = typeof d.changes === "object" && d.changes !== null ? ` changed ${Object.keys(d.changes).join(", ")}` : "";
    return `${String(d.deployment)} -> ${String(d.model)}${changed}`;
  }
  return "";
}

export function auditCommand(ctx: CliContext): Command {
  return new Command("audit")
    .description("every deployment action, newest first: alias moves, rollouts, gates, retraining, policies")
    .option("--model <name>", "only this model's")
    .addOption(new Option("--action <action>", "only this action").choices([...AUDIT_ACTIONS]))
    .option("--since <time>", "only entries at or after this ISO-8601 time")
    .option("--limit <n>", "at most this many", "100")
    .option("--json", "print JSON")
    .action(async (_opts: unknown, cmd: Command) => {
      const o = globals<{ model?: string; action?: AuditAction; since?: string; limit: string; json?: boolean }>(cmd);
      const limit = parseNumberFlag(o.limit, "--limit");
      if (!Number.isSafeInteger(limit) || limit < 1) throw usageError(`--limit must be a whole number >= 1, got "${o.limit}"`, "--limit");
      const app = await ctx.app(o);
      const entries = await rolloutsOf(app).audit.list({
        ...(o.model === undefined ? {} : { model: o.model }),
        ...(o.action === undefined ? {} : { action: o.action }),
        ...(o.since === undefined ? {} : { since: o.since }),
        limit,
      });
      if (o.json === true) return printJson(ctx.io, entries);
      if (entries.length === 0) return printLine(ctx.io, "no audit entries");
      printLine(
        ctx.io,
        formatTable(
          ["AT", "ACTOR", "ACTION", "MODEL", "VERSION", "DETAILS", "REASON"],
          entries.map((e) => [e.at, e.actor, e.action, e.model ?? "", e.version === null ? "" : String(e.version), detailsText(e), e.reason ?? ""]),
        ),
      );
    });
}
