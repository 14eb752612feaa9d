import path from "node:path";
import { Command } from "commander";
import { MlshipError } from "../core/index.js";
import {
  BatchScheduler,
  DEFAULT_CHECK_MS,
  DEFAULT_PREDICTIONS_TABLE,
  failedRunOf,
  healthOf,
  isFileTarget,
  progressReporter,
  RunStore,
  runSummary,
  ScheduleStore,
  scoreJob,
  type BatchRun,
  type ScoreJobOptions,
} from "../batch/index.js";
import { usageError } from "./args.js";
import { formatAge, parseMaxAge } from "./batch-status.js";
import type { CliContext, GlobalOptions } from "./context.js";
import { formatTable, printJson, printLine } from "./io.js";

/** The exit code of a run stopped by SIGINT/SIGTERM (128 + SIGINT), as shells report an interrupted command. */
export const EXIT_INTERRUPTED = 130;

/**
 * Ends `batch score` with a given exit code after its summary was printed: `main` prints the message and exits with
 * `exitCode`.
 */
export class BatchExitError extends MlshipError {
  readonly exitCode: number;

  constructor(message: string, exitCode: number) {
    super("MLSHIP_ERR_BATCH_INTERRUPTED", message);
    this.exitCode = exitCode;
  }
}

interface ScoreFlags extends GlobalOptions {
  input: string;
  idColumn: string;
  into?: string;
  table?: string;
  chunkRows?: string;
  shard?: string;
  resume?: boolean;
  resumeIfAny?: boolean;
  json?: boolean;
}

/** `--shard i/N`: 0-based shard i of N. */
export function parseShard(text: string): { index: number; count: number } {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  const index = Number(m?.[1]);
  const count = Number(m?.[2]);
  if (m === null || !Number.isSafeInteger(index) || !Number.isSafeInteger(count) || count < 1 || index >= count) {
    throw usageError(`--shard must be i/N with 0 <= i < N (shard i of N, 0-based), got "${text}"`, "--shard");
  }
  return { index, count };
}

function chunkRowsFlag(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\s*\d+\s*$/.test(text) || !Number.isSafeInteger(n) || n < 1 || n > 1_000_000) {
    throw usageError(`--chunk-rows must be a whole number from 1 to 1000000, got "${text}"`, "--chunk-rows");
  }
  return n;
}

function printSummary(ctx: CliContext, run: BatchRun, json: boolean): void {
  const summary = runSummary(run);
  if (json) {
    printJson(ctx.io, { ...summary, input: run.input, target: run.target, table: run.targetTable });
    return;
  }
  printLine(
    ctx.io,
    `batch run ${run.id} ${run.status}: ${run.model}@${run.version}, ${summary.rowsIn} rows in, ${summary.rowsOut} out, ${summary.rowsRejected} rejected, ${summary.seconds} s, ${summary.rowsPerSecond} rows/s`,
  );
  if (run.rowsRejected > 0) printLine(ctx.io, `rejected rows: mlship batch rejects ${run.id}`);
  if (run.status === "interrupted" || run.status === "failed") printLine(ctx.io, "continue it with the same command and --resume");
}

/**
 * Stops the run on SIGINT/SIGTERM (when the CLI owns the process) or when the io's signal aborts: the chunk in
 * flight finishes, the run is recorded `interrupted`.
 */
function stopSignal(ctx: CliContext): { signal: AbortSignal; detach: () => void } {
  const controller = new AbortController();
  const stop = (): void => controller.abort();
  if (ctx.io.handleSignals) {
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  }
  if (ctx.io.signal?.aborted === true) stop();
  else ctx.io.signal?.addEventListener("abort", stop, { once: true });
  return {
    signal: controller.signal,
    detach: () => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      ctx.io.signal?.removeEventListener("abort", stop);
    },
  };
}

function scoreCommand(ctx: CliContext): Command {
  return new Command("score")
    .description("score a CSV, Parquet or JSON Lines file in chunks into the store, PostgreSQL, or a Parquet/JSONL file")
    .argument("<ref>", "model reference: name, name@alias or name@version (resolved once: the whole run uses that version)")
    .requiredOption("-i, --input <file>", "input file: .csv, .parquet, .jsonl or .ndjson")
    .option("--id-column <name>", "the column that identifies a row (the key of its prediction)", "id")
    .option("--into <target>", "sqlite (the metadata store, default), postgres://..., or a .parquet/.jsonl file")
    .option("--table <name>", `table for SQL targets (default ${DEFAULT_PREDICTIONS_TABLE})`)
    .option("--chunk-rows <n>", "rows read, scored and written at a time (env MLSHIP_BATCH_CHUNK_ROWS, default 5000)")
    .option("--shard <i/N>", "score only shard i of N (0-based; rows split by the hash of their id)")
    .option("--resume", "continue the last failed, interrupted or killed run of this model, input, target, table and shard")
    .option("--resume-if-any", "like --resume when there is such a run, else start a new one (for jobs that a scheduler retries)")
    .option("--json", "print the run summary as JSON")
    .action(async (ref: string, _opts: unknown, command: Command) => {
      const o = command.optsWithGlobals<ScoreFlags>();
      const chunkFlag = chunkRowsFlag(o.chunkRows);
      const shard = o.shard === undefined ? undefined : parseShard(o.shard);
      // Each row is scored once: an in-process prediction cache would only cost time and memory. A backend set in the
      // config file or the environment (a shared Redis, say) is kept.
      const app = await ctx.app(o, chunkFlag === undefined ? {} : { "batch.chunkRows": chunkFlag }, { "cache.backend": "off" });
      const into = o.into === undefined || !isFileTarget(o.into) ? o.into : path.resolve(ctx.io.cwd, o.into);
      const stderr = ctx.io.stderr as { write(chunk: string): unknown; isTTY?: boolean };
      const stop = stopSignal(ctx);
      const job: ScoreJobOptions = {
        ref,
        input: path.resolve(ctx.io.cwd, o.input),
        idColumn: o.idColumn,
        ...(into === undefined ? {} : { into }),
        ...(o.table === undefined ? {} : { table: o.table }),
        ...(shard === undefined ? {} : { shard }),
        ...(o.resume === true ? { resume: "required" as const } : o.resumeIfAny === true ? { resume: "if-any" as const } : {}),
        progress: progressReporter({
          tty: ctx.io.handleSignals && stderr.isTTY === true,
          write: (line) => void ctx.io.stderr.write(line),
        }),
        signal: stop.signal,
      };
      let run: BatchRun;
      try {
        run = await scoreJob(app, job);
      } catch (error) {
        const failed = await failedRunOf(app, job);
        if (failed !== undefined) printSummary(ctx, failed, o.json === true);
        throw error;
      } finally {
        stop.detach();
      }
      printSummary(ctx, run, o.json === true);
      if (run.status === "interrupted") {
        throw new BatchExitError(`batch run ${run.id} was interrupted; continue it with --resume`, EXIT_INTERRUPTED);
      }
    });
}

function runsCommand(ctx: CliContext): Command {
  return new Command("runs")
    .description("the latest batch runs, most recent first")
    .argument("[model]", "only this model's runs")
    .option("--limit <n>", "how many runs", "20")
    .option("--json", "print JSON")
    .action(async (model: string | undefined, _opts: unknown, command: Command) => {
      const o = command.optsWithGlobals<GlobalOptions & { limit: string; json?: boolean }>();
      const limit = Number(o.limit);
      if (!/^\s*\d+\s*$/.test(o.limit) || limit < 1) throw usageError(`--limit must be a whole number of 1 or more, got "${o.limit}"`, "--limit");
      const app = await ctx.app(o);
      const list = await new RunStore(app.store).list({ ...(model === undefined ? {} : { model }), limit });
      if (o.json === true) {
        printJson(ctx.io, list.map((run) => ({ ...run, ...runSummary(run) })));
        return;
      }
      if (list.length === 0) {
        printLine(ctx.io, model === undefined ? "no batch runs" : `no batch runs of ${model}`);
        return;
      }
      printLine(
        ctx.io,
        formatTable(
          ["RUN", "MODEL", "STATUS", "ROWS IN", "OUT", "REJECTED", "ROWS/S", "STARTED", "TARGET"],
          list.map((run) => {
            const s = runSummary(run);
            return [
              run.id,
              `${run.model}@${run.version}`,
              run.status,
              String(run.rowsIn),
              String(run.rowsOut),
              String(run.rowsRejected),
              String(s.rowsPerSecond),
              run.startedAt,
              run.targetTable === null ? run.target : `${run.target}:${run.targetTable}`,
            ];
          }),
        ),
      );
    });
}

function rejectsCommand(ctx: CliContext): Command {
  return new Command("rejects")
    .description("the rows a batch run rejected, with the reason")
    .argument("<run-id>", "the run (see mlship batch runs)")
    .option("--limit <n>", "how many rows", "1000")
    .option("--json", "print JSON")
    .action(async (runId: string, _opts: unknown, command: Command) => {
      const o = command.optsWithGlobals<GlobalOptions & { limit: string; json?: boolean }>();
      const limit = Number(o.limit);
      if (!/^\s*\d+\s*$/.test(o.limit) || limit < 1) throw usageError(`--limit must be a whole number of 1 or more, got "${o.limit}"`, "--limit");
      const app = await ctx.app(o);
      const runs = new RunStore(app.store);
      if ((await runs.get(runId)) === undefined) {
        throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `no batch run ${runId} (see mlship batch runs)`, { field: "run-id" });
      }
      const rejects = await runs.rejects(runId, { limit });
      if (o.json === true) {
        printJson(ctx.io, rejects);
        return;
      }
      if (rejects.length === 0) {
        printLine(ctx.io, `run ${runId} rejected no rows`);
        return;
      }
      printLine(
        ctx.io,
        formatTable(
          ["ROW", "ID", "FIELD", "REASON"],
          // Row numbers as people count lines of data: the first data row is 1.
          rejects.map((r) => [String(r.rowNumber + 1), r.rowId ?? "", r.field ?? "", r.reason]),
        ),
      );
    });
}

interface ScheduleFlags extends GlobalOptions {
  input: string;
  cron: string;
  idColumn: string;
  into?: string;
  table?: string;
  timezone?: string;
  maxAge?: string;
  disabled?: boolean;
  json?: boolean;
}

function ageText(from: string, now: Date): string {
  const s = Math.max(0, Math.round((now.getTime() - new Date(from).getTime()) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172_800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86_400)}d`;
}

function scheduleCommand(ctx: CliContext): Command {
  return new Command("schedule")
    .description("score a file on a cron schedule (run by `mlship batch scheduler` or `mlship serve`); replaces a schedule of the same name")
    .argument("<name>", "the schedule's name")
    .argument("<ref>", "model reference: name, name@alias or name@version (resolved at each run)")
    .requiredOption("-i, --input <file>", "input file: .csv, .parquet, .jsonl or .ndjson")
    .requiredOption("--cron <expr>", 'when to run: a cron expression, e.g. "0 2 * * *" for 02:00 every day')
    .option("--id-column <name>", "the column that identifies a row", "id")
    .option("--into <target>", "sqlite (the metadata store, default), postgres://..., or a .parquet/.jsonl file")
    .option("--table <name>", `table for SQL targets (default ${DEFAULT_PREDICTIONS_TABLE})`)
    .option("--timezone <tz>", "IANA timezone of the cron expression (default the scheduler's local time)")
    .option("--max-age <duration>", "its predictions are stale when older than this: 26h, 2d... (default config batch.maxAgeMs)")
    .option("--disabled", "store it disabled (mlship batch enable NAME turns it on); a replaced schedule otherwise keeps its state")
    .option("--json", "print the schedule as JSON")
    .action(async (name: string, ref: string, _opts: unknown, command: Command) => {
      const o = command.optsWithGlobals<ScheduleFlags>();
      const maxAgeMs = o.maxAge === undefined ? null : parseMaxAge(o.maxAge);
      const app = await ctx.app(o);
      const into = o.into === undefined || !isFileTarget(o.into) ? o.into : path.resolve(ctx.io.cwd, o.into);
      const schedules = new ScheduleStore(app.store);
      const schedule = await schedules.put({
        name,
        ref,
        input: path.resolve(ctx.io.cwd, o.input),
        idColumn: o.idColumn,
        into: into ?? null,
        table: o.table ?? null,
        cron: o.cron,
        timezone: o.timezone ?? null,
        // Null: the table is judged by config batch.maxAgeMs wherever it is read, not by a copy of today's value.
        maxAgeMs,
        createdBy: app.config.user,
        ...(o.disabled === true ? { enabled: false } : {}),
      });
      const health = healthOf(schedule, new Date());
      if (o.json === true) {
        printJson(ctx.io, { ...schedule, nextRun: schedule.enabled ? (health.due?.toISOString() ?? null) : null });
        return;
      }
      const when = schedule.enabled ? `next run ${health.due?.toISOString() ?? "never"}` : `disabled (turn it on with mlship batch enable ${name})`;
      const maxAge = schedule.maxAgeMs === null ? "" : `, stale after ${formatAge(schedule.maxAgeMs / 1000)}`;
      printLine(ctx.io, `scheduled ${name}: ${ref} from ${schedule.input} at "${schedule.cron}"${schedule.timezone === null ? "" : ` (${schedule.timezone})`}${maxAge}, ${when}`);
    });
}

/** `disabled` first: a disabled schedule is neither late nor alerting, whatever its last run did. */
function scheduleState(enabled: boolean, health: { late: boolean; failed: boolean }): "disabled" | "late" | "failed" | "ok" {
  if (!enabled) return "disabled";
  return health.late ? "late" : health.failed ? "failed" : "ok";
}

function schedulesCommand(ctx: CliContext): Command {
  return new Command("schedules")
    .description("the batch schedules with their next run and last run")
    .option("--json", "print JSON")
    .action(async (_opts: unknown, command: Command) => {
      const o = command.optsWithGlobals<GlobalOptions & { json?: boolean }>();
      const app = await ctx.app(o);
      const now = new Date();
      const list = (await new ScheduleStore(app.store).list()).map((s) => ({ schedule: s, health: healthOf(s, now, DEFAULT_CHECK_MS) }));
      if (o.json === true) {
        printJson(
          ctx.io,
          list.map(({ schedule, health }) => ({
            ...schedule,
            nextRun: schedule.enabled ? (health.due?.toISOString() ?? null) : null,
            state: scheduleState(schedule.enabled, health),
            late: health.late,
            failed: health.failed,
          })),
        );
        return;
      }
      if (list.length === 0) {
        printLine(ctx.io, "no batch schedules");
        return;
      }
      printLine(
        ctx.io,
        formatTable(
          ["NAME", "MODEL", "CRON", "NEXT RUN", "LAST RUN", "AGE", "MAX AGE", "STATE", "INPUT"],
          list.map(({ schedule, health }) => [
            schedule.name,
            schedule.ref,
            schedule.timezone === null ? schedule.cron : `${schedule.cron} ${schedule.timezone}`,
            schedule.enabled ? (health.due?.toISOString() ?? "never") : "-",
            schedule.lastRun?.status ?? "-",
            schedule.lastRun === null ? "-" : ageText(schedule.lastRun.startedAt, now),
            schedule.maxAgeMs === null ? "-" : formatAge(schedule.maxAgeMs / 1000),
            scheduleState(schedule.enabled, health),
            schedule.input,
          ]),
        ),
      );
    });
}

function unscheduleCommand(ctx: CliContext): Command {
  return new Command("unschedule")
    .description("remove a batch schedule (its past runs stay)")
    .argument("<name>", "the schedule's name")
    .action(async (name: string, _opts: unknown, command: Command) => {
      const o = command.optsWithGlobals<GlobalOptions>();
      const app = await ctx.app(o);
      if (!(await new ScheduleStore(app.store).remove(name))) {
        throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `no batch schedule ${name} (see mlship batch schedules)`, { field: "name" });
      }
      printLine(ctx.io, `unscheduled ${name}`);
    });
}

function toggleCommand(ctx: CliContext, enabled: boolean): Command {
  const verb = enabled ? "enable" : "disable";
  return new Command(verb)
    .description(
      enabled
        ? "turn a disabled batch schedule on again (a fire time missed while it was off runs at the next check)"
        : "turn a batch schedule off without removing it: it never fires, is never late and raises no alerts",
    )
    .argument("<name>", "the schedule's name")
    .action(async (name: string, _opts: unknown, command: Command) => {
      const o = command.optsWithGlobals<GlobalOptions>();
      const app = await ctx.app(o);
      const schedule = await new ScheduleStore(app.store).setEnabled(name, enabled);
      if (schedule === undefined) {
        throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `no batch schedule ${name} (see mlship batch schedules)`, { field: "name" });
      }
      const next = healthOf(schedule, new Date()).due;
      printLine(ctx.io, enabled ? `enabled ${name}, next run ${next?.toISOString() ?? "never"}` : `disabled ${name}`);
    });
}

function schedulerCommand(ctx: CliContext): Command {
  return new Command("scheduler")
    .description("run due batch schedules until SIGINT/SIGTERM (several schedulers on one store run each fire time once)")
    .option("--check-seconds <n>", "how often to look for due schedules", String(DEFAULT_CHECK_MS / 1000))
    .action(async (_opts: unknown, command: Command) => {
      const o = command.optsWithGlobals<GlobalOptions & { checkSeconds: string }>();
      const seconds = Number(o.checkSeconds);
      if (!/^\s*\d+\s*$/.test(o.checkSeconds) || seconds < 1) {
        throw usageError(`--check-seconds must be a whole number of 1 or more, got "${o.checkSeconds}"`, "--check-seconds");
      }
      const app = await ctx.app(o);
      const scheduler = new BatchScheduler(app, {
        checkMs: seconds * 1000,
        onAlert: (alert) => app.logger.warn({ alert }, alert.message),
      });
      const stop = stopSignal(ctx);
      printLine(ctx.io, `batch scheduler running (checks every ${seconds} s); stop it with Ctrl-C`);
      scheduler.start();
      await new Promise<void>((resolve) => {
        if (stop.signal.aborted) resolve();
        else stop.signal.addEventListener("abort", () => resolve(), { once: true });
      });
      stop.detach();
      await scheduler.close();
      printLine(ctx.io, "batch scheduler stopped");
    });
}

/** `mlship batch score | runs | rejects | schedule | schedules | enable | disable | unschedule | scheduler` (`status` is added by main.ts from batch-status.ts). */
export function batchCommand(ctx: CliContext): Command {
  return new Command("batch")
    .description("batch prediction: score datasets into a prediction store, list runs and rejected rows")
    .addCommand(scoreCommand(ctx))
    .addCommand(runsCommand(ctx))
    .addCommand(rejectsCommand(ctx))
    .addCommand(scheduleCommand(ctx))
    .addCommand(schedulesCommand(ctx))
    .addCommand(toggleCommand(ctx, true))
    .addCommand(toggleCommand(ctx, false))
    .addCommand(unscheduleCommand(ctx))
    .addCommand(schedulerCommand(ctx));
}
