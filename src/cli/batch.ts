import path from "node:path";
import { Command } from "commander";
import { MlshipError } from "../core/index.js";
import { DEFAULT_PREDICTIONS_TABLE, describeTarget, openRowSource, openSink, progressReporter, runBatch, RunStore, runSummary } from "../batch/index.js";
import type { BatchRun } from "../batch/index.js";
import { usageError } from "./args.js";
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

function isFileTarget(target: string | undefined): boolean {
  const described = describeTarget(target);
  return described !== "sqlite" && !/^postgres(ql)?:\/\//i.test(described);
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
      const app = await ctx.app(o, chunkFlag === undefined ? {} : { "batch.chunkRows": chunkFlag });
      const chunkRows = app.config.batch.chunkRows;
      const input = path.resolve(ctx.io.cwd, o.input);
      const into = o.into === undefined || !isFileTarget(o.into) ? o.into : path.resolve(ctx.io.cwd, o.into);
      const target = describeTarget(into);
      const table = isFileTarget(into) ? null : (o.table ?? DEFAULT_PREDICTIONS_TABLE);
      const runs = new RunStore(app.store);

      let resume: BatchRun | undefined;
      if (o.resume === true || o.resumeIfAny === true) {
        const resolved = await app.scoring.resolve(ref);
        const model = resolved.version.name;
        resume = await runs.findResumable({ model, input, target, table, shard: shard ?? null });
        if (resume === undefined && o.resume === true) {
          const last = await runs.latest(model, { table });
          const why =
            last?.status === "running"
              ? `run ${last.id} is still running (heartbeat ${last.heartbeatAt}); a killed run can be resumed 30 s after its last heartbeat`
              : `no failed, interrupted or killed run of ${model} from ${input} into ${target}${table === null ? "" : ` table ${table}`}${shard === undefined ? "" : ` shard ${shard.index}/${shard.count}`}`;
          throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `nothing to resume: ${why}`, { field: "resume" });
        }
      }

      const source = await openRowSource(input, { chunkRows, idColumn: o.idColumn, ...(shard === undefined ? {} : { shard }) });
      const sink = await openSink(into, { store: app.store, home: app.config.home, ...(o.table === undefined ? {} : { table: o.table }) });
      const stderr = ctx.io.stderr as { write(chunk: string): unknown; isTTY?: boolean };
      const progress = progressReporter({
        tty: ctx.io.handleSignals && stderr.isTTY === true,
        write: (line) => void ctx.io.stderr.write(line),
      });
      const stop = stopSignal(ctx);
      let run: BatchRun;
      try {
        run = await runBatch({
          scoring: app.scoring,
          registry: app.registry,
          runs,
          ref,
          source,
          sink,
          idColumn: o.idColumn,
          chunkRows,
          progress,
          logger: app.logger,
          signal: stop.signal,
          input,
          target,
          table,
          shard: shard ?? null,
          parallelism: app.config.runtime.workers,
          ...(resume === undefined ? {} : { resume }),
        });
      } catch (error) {
        const failed = await findFailed(runs, resume, app.scoring, ref, input, target, table);
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

/** The run a failed `runBatch` recorded (it rethrows the error; the run's summary is still worth printing). */
async function findFailed(
  runs: RunStore,
  resume: BatchRun | undefined,
  scoring: { resolve(ref: string): Promise<{ version: { name: string } }> },
  ref: string,
  input: string,
  target: string,
  table: string | null,
): Promise<BatchRun | undefined> {
  try {
    if (resume !== undefined) return await runs.get(resume.id);
    const model = (await scoring.resolve(ref)).version.name;
    const last = await runs.latest(model, { table });
    return last !== undefined && last.status === "failed" && last.input === input && last.target === target ? last : undefined;
  } catch {
    return undefined;
  }
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

/** `mlship batch score | runs | rejects`. */
export function batchCommand(ctx: CliContext): Command {
  return new Command("batch")
    .description("batch prediction: score datasets into a prediction store, list runs and rejected rows")
    .addCommand(scoreCommand(ctx))
    .addCommand(runsCommand(ctx))
    .addCommand(rejectsCommand(ctx));
}
