import path from "node:path";
import { Command } from "commander";
import { isMlshipError } from "../core/index.js";
import { computeQuality, feedbackSpecOf } from "../feedback/index.js";
import { evaluateGate, gateFailedError, parseMargins, parseRequirement, recordGate, setAliasAudited } from "../rollout/index.js";
import type { GateResult, GateSpec, Rollout } from "../rollout/index.js";
import type { AliasEvent } from "../registry/index.js";
import { collect, parseVersion, usageError } from "./args.js";
import type { CliContext, GlobalOptions } from "./context.js";
import { printJson, printLine } from "./io.js";

interface PromoteFlags extends GlobalOptions {
  alias: string;
  holdout?: string;
  label?: string;
  require?: string[];
  margin?: string[];
  canary?: string;
  json?: boolean;
  reason?: string;
}

/** A parse error of --require / --margin is a bad command line (exit 2), naming the flag. */
function asUsage<T>(flag: string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    if (isMlshipError(error) && error.code === "MLSHIP_ERR_INPUT_INVALID") throw usageError(`${flag}: ${error.message}`, flag);
    throw error;
  }
}

function parsePercent(text: string): number {
  const percent = Number(text);
  if (text.trim() === "" || !Number.isFinite(percent) || percent <= 0 || percent > 100) throw usageError(`--canary must be a percentage above 0 and up to 100, got "${text}"`, "--canary");
  return percent;
}

function gateText(result: GateResult, spec: GateSpec, alias: string): string[] {
  const against = result.current === null ? `no other version on '${alias}' to compare with` : `compared with version ${result.current} ('${alias}')`;
  return [
    `gate for ${result.model}@${result.candidate} on ${spec.holdout} (${result.rows} rows), ${against}:`,
    ...result.checks.map((c) => `  ${c.check}`),
    `gate ${result.passed ? "passed" : "failed"}`,
  ];
}

/**
 * `mlship models promote NAME VERSION`: moves an alias (default production) to VERSION, after a gate on a labelled
 * holdout file when --holdout is given; with --canary PCT it starts a canary rollout of VERSION instead.
 */
export function promoteCommand(ctx: CliContext): Command {
  return new Command("promote")
    .description("promote VERSION to an alias (default production): straight away, after a gate on a holdout file (--holdout), or as a canary (--canary PCT)")
    .argument("<name>", "model name")
    .argument("<version>", "version number")
    .option("--alias <alias>", "the alias to promote to", "production")
    .option("--holdout <file>", "labelled data (.csv, .jsonl, .parquet) the version must pass a gate on first")
    .option("--label <column>", "the holdout's label column (default: label, target, y or actual)")
    .option("--require <rule>", 'a gate requirement such as "accuracy>=0.9" (repeatable)', collect)
    .option("--margin <metric=value>", "largest allowed regression against the alias's current version, e.g. accuracy=0.01 (repeatable)", collect)
    .option("--canary <pct>", "start a canary rollout with this share of the alias's traffic instead of moving the alias")
    .option("--reason <text>", "why (recorded in the alias history and the audit log)")
    .option("--json", "print the gate result, the alias move or the rollout as JSON")
    .addHelpText(
      "after",
      [
        "",
        "Examples:",
        '  mlship models promote breast-cancer 2 --holdout holdout.csv --require "accuracy>=0.9" --margin accuracy=0.01',
        "  mlship models promote breast-cancer 2 --canary 10 --reason \"retrained on May data\"",
        "",
        "A gate without --require or --margin asks that the version is not worse than the alias's current one",
        "(accuracy, or rmse for regression). A failed gate prints its checks and exits 1.",
      ].join("\n"),
    )
    .action(async (name: string, versionText: string, _opts: unknown, cmd: Command) => {
      const o = cmd.optsWithGlobals<PromoteFlags>();
      const version = parseVersion(versionText);
      if (o.holdout === undefined) {
        for (const [flag, value] of [["--label", o.label], ["--require", o.require], ["--margin", o.margin]] as const) {
          if (value !== undefined) throw usageError(`${flag} needs --holdout FILE`, flag);
        }
      }
      const percent = o.canary === undefined ? undefined : parsePercent(o.canary);
      const spec: GateSpec | undefined =
        o.holdout === undefined
          ? undefined
          : {
              holdout: path.resolve(ctx.io.cwd, o.holdout),
              ...(o.label === undefined ? {} : { labelColumn: o.label }),
              require: asUsage("--require", () => (o.require ?? []).map(parseRequirement)),
              margin: asUsage("--margin", () => parseMargins(o.margin ?? [])),
            };

      const app = await ctx.app(o, {}, { "runtime.workers": 1 });
      // Refused early (MLSHIP_ERR_VERSION_NOT_FOUND) before any scoring.
      await app.registry.getVersion(name, version);
      const rollouts = app.rollouts;
      const actor = { audit: rollouts.audit, by: app.config.user, ...(o.reason === undefined ? {} : { reason: o.reason }) };
      const out: { gate: GateResult | null; alias: AliasEvent | null; rollout: Rollout | null } = { gate: null, alias: null, rollout: null };
      if (spec !== undefined) {
        const result = await evaluateGate({ scoring: app.scoring, registry: app.registry, model: name, candidate: version, alias: o.alias, spec, computeQuality, specOf: feedbackSpecOf });
        await recordGate(actor, result, spec, o.alias);
        out.gate = result;
        if (o.json !== true) for (const line of gateText(result, spec, o.alias)) printLine(ctx.io, line);
        if (!result.passed) {
          if (o.json === true) printJson(ctx.io, out);
          throw gateFailedError(result);
        }
      }
      if (percent !== undefined) {
        const policy = await rollouts.getPolicy(name);
        out.rollout = await rollouts.start({
          model: name,
          challenger: version,
          mode: "canary",
          percent,
          alias: o.alias,
          sticky: policy.canary.sticky,
          guard: policy.canary.guard,
          by: app.config.user,
          ...(o.reason === undefined ? {} : { reason: o.reason }),
        });
        if (o.json !== true) {
          const r = out.rollout;
          printLine(ctx.io, `canary ${r.id} started: ${name}@${r.challenger} gets ${r.percent}% of ${name}@${r.alias} traffic (champion ${r.champion})`);
        }
      } else {
        out.alias = await setAliasAudited(app.registry, actor, name, o.alias, version, spec === undefined ? {} : { gate: "passed" });
        if (o.json !== true) {
          const e = out.alias;
          printLine(ctx.io, `${name}@${o.alias} -> ${version} (${e.from === null ? "new alias" : `was ${e.from}`})`);
        }
      }
      if (o.json === true) printJson(ctx.io, out);
    });
}
