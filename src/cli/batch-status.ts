import { Command } from "commander";
import { batchFreshness, batchHealth, maxAgeFor, ScheduleStore, type BatchHealth } from "../batch/index.js";
import { MlshipError } from "../core/index.js";
import { parseWindowSize } from "../monitor/index.js";
import { usageError } from "./args.js";
import type { CliContext, GlobalOptions } from "./context.js";
import { formatTable, printJson, printLine } from "./io.js";

interface StatusFlags {
  json?: boolean;
  maxAge?: string;
  check?: boolean;
}

// Judged where the dashboard's freshness route judges it too.
export { batchHealth, type BatchHealth };

/** `3d4h`, `2h5m`, `42s`: the two largest units are enough to read an age at a glance. */
export function formatAge(seconds: number): string {
  const units: readonly (readonly [string, number])[] = [["d", 86_400], ["h", 3_600], ["m", 60], ["s", 1]];
  const total = Math.max(0, Math.floor(seconds));
  const first = units.findIndex(([, size]) => total >= size);
  const [unit, size] = units[first] ?? ["s", 1];
  const amount = Math.floor(total / size);
  const [nextUnit, nextSize] = units[first + 1] ?? ["", 0];
  const rest = nextSize === 0 ? 0 : Math.floor((total - amount * size) / nextSize);
  return rest === 0 ? `${amount}${unit}` : `${amount}${unit}${rest}${nextUnit}`;
}

function shorten(text: string, max = 60): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length <= max ? line : `${line.slice(0, max - 3)}...`;
}

/** A `--max-age` duration (`12h`, `1d`, `90m`) in milliseconds; a usage error naming `flag` otherwise. */
export function parseMaxAge(text: string, flag = "--max-age"): number {
  try {
    return parseWindowSize(text);
  } catch {
    throw usageError(`${flag} must be a duration such as 12h, 1d or 90m, got "${text}"`, flag);
  }
}

/**
 * `mlship batch status [MODEL]`: per model and table, the age and size of the last successful run and the last
 * run's status, marked `!` when a run failed since the last success or the last success is older than the max age:
 * that of the enabled schedule that writes the model into the table, else --max-age (default config
 * batch.maxAgeMs). `--check` exits 1 in that case, for cron and CI.
 */
export function batchStatusCommand(ctx: CliContext): Command {
  return new Command("status")
    .description("freshness of batch predictions: the last successful run per model and table, and failed runs since (--check exits 1 on any)")
    .argument("[model]", "only this model")
    .option("--max-age <duration>", "older successes are stale: 12h, 1d... (default config batch.maxAgeMs); a schedule's own --max-age wins for the tables it writes")
    .option("--check", "exit 1 when a model's predictions are stale, failed or never succeeded")
    .option("--json", "print JSON")
    .action(async (model: string | undefined, _opts: unknown, cmd: Command) => {
      const o = cmd.optsWithGlobals<GlobalOptions & StatusFlags>();
      const config = ctx.loadConfig(o).config;
      const maxAgeMs = o.maxAge === undefined ? config.batch.maxAgeMs : parseMaxAge(o.maxAge);
      const app = await ctx.app(o);
      const now = new Date();
      const [entries, schedules] = await Promise.all([batchFreshness(app.store, now, model === undefined ? {} : { model }), new ScheduleStore(app.store).list()]);
      const rows = entries.map((entry) => {
        const applied = maxAgeFor(schedules, entry.model, entry.table, maxAgeMs);
        return { ...entry, health: batchHealth(entry, applied.maxAgeMs), maxAgeSeconds: applied.maxAgeMs / 1000, maxAgeSchedule: applied.schedule };
      });
      const bad = rows.filter((r) => r.health !== "ok");
      if (o.json === true) {
        // The top-level max age is the fallback: each target says which one applied to it.
        printJson(ctx.io, { now: now.toISOString(), maxAgeSeconds: maxAgeMs / 1000, targets: rows });
      } else if (rows.length === 0) {
        printLine(ctx.io, model === undefined ? "no batch runs yet" : `no batch runs for model '${model}'`);
      } else {
        printLine(
          ctx.io,
          formatTable(
            ["", "model", "table", "last success", "age", "max age", "rows", "last run", "state"],
            rows.map((r) => [
              r.health === "ok" ? " " : "!",
              r.model,
              r.table,
              r.lastSuccess === null ? "never" : `${r.lastSuccess.endedAt} (v${r.lastSuccess.version})`,
              r.lastSuccess === null ? "" : formatAge(r.lastSuccess.ageSeconds),
              r.maxAgeSchedule === null ? formatAge(r.maxAgeSeconds) : `${formatAge(r.maxAgeSeconds)} (${r.maxAgeSchedule})`,
              r.lastSuccess === null ? "" : String(r.lastSuccess.rows),
              `${r.lastRun.status} ${r.lastRun.runId}`,
              r.health === "failed" && r.lastError !== null ? `failed: ${shorten(r.lastError)}` : r.health,
            ]),
          ),
        );
      }
      if (o.check === true && (bad.length > 0 || (model !== undefined && rows.length === 0))) {
        const what = bad.length > 0 ? bad.map((r) => `${r.model}/${r.table} ${r.health}`).join(", ") : `model '${model}' has no batch runs`;
        throw new MlshipError("MLSHIP_ERR_BATCH_CHECK_FAILED", `batch predictions need attention: ${what}`, { field: "batch" });
      }
    });
}
