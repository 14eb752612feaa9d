import { performance } from "node:perf_hooks";
import { MlshipError, toMlshipError, type Logger } from "../core/index.js";
import type { Registry } from "../registry/index.js";
import { formatMlflowResponse, type ScoringService } from "../scoring/index.js";
import type { RunCounters, RunStore } from "./runs.js";
import { idText } from "./shard.js";
import type { BatchCell, BatchReject, BatchRun, PredictionSink, ProgressReporter, RowChunk, RowSource, ScoredRow } from "./types.js";

export interface RunBatchOptions {
  scoring: ScoringService;
  /** Kept for callers that resolve through the registry; the run itself resolves through `scoring`. */
  registry?: Registry;
  runs: RunStore;
  /** `name`, `name@alias` or `name@version`: resolved once, the whole run scores that version. */
  ref: string;
  source: RowSource;
  /** Closed by the runner when the run ends, whatever the outcome (a Parquet file is written then). */
  sink: PredictionSink;
  idColumn: string;
  /** A stopped run to continue (same run id and version); ids the sink already holds for the model are skipped. */
  resume?: BatchRun;
  chunkRows: number;
  progress?: ProgressReporter;
  logger: Logger;
  now?: () => Date;
  /** Aborting ends the run `interrupted` after the chunk in flight (SIGINT/SIGTERM in the CLI). */
  signal?: AbortSignal;
  /** What the run record names as input, target and table. Defaults: the source's path, the sink's kind/description, none. */
  input?: string;
  target?: string;
  table?: string | null;
  shard?: { index: number; count: number } | null;
  /**
   * A chunk is scored as this many requests at once, so every inference worker has rows to run (one request runs
   * on one worker). Default 4; the CLI passes `runtime.workers`.
   */
  parallelism?: number;
  /** Anything else worth recording in the run's settings (format, options). */
  settings?: Record<string, unknown>;
}

/** Fewer rows than this per request cost more in messaging than a second worker saves. */
const MIN_SLICE_ROWS = 256;
/** Rows scored one by one at once while looking for the bad rows of a rejected slice. */
const ROW_BY_ROW_CONCURRENCY = 32;

function isInputError(error: unknown): error is MlshipError {
  return error instanceof MlshipError && error.code.startsWith("MLSHIP_ERR_INPUT_");
}

/** The row's key as sharding hashes it (see shard.ts), or null when it is empty or blank. */
function rowId(cell: BatchCell | undefined): string | null {
  const text = idText(cell);
  return text.trim() === "" ? null : text;
}

/** Rows a reader could not turn into cells (a CSV row with the wrong number of cells): see readers.ts. */
interface UnreadableRow {
  rowNumber: number;
  rowId: string | null;
  reason: string;
}

function unreadableRows(chunk: RowChunk): readonly UnreadableRow[] {
  const problems = (chunk as RowChunk & { problems?: readonly UnreadableRow[] }).problems;
  return Array.isArray(problems) ? problems : [];
}

/** JSON-safe feature values: bigint (Parquet INT64) becomes a number. */
function featureCell(cell: BatchCell | undefined): string | number | boolean | null {
  if (cell === undefined) return null;
  return typeof cell === "bigint" ? Number(cell) : cell;
}

interface PendingRow {
  id: string;
  rowNumber: number;
  data: Array<string | number | boolean | null>;
}

interface Layout {
  idIndex: number;
  featureIndexes: number[];
}

/**
 * Scores an input file into a sink, chunk by chunk, recording the run (counters and heartbeat every chunk) and the
 * rows it rejects. Counters describe the whole input of this run: a resumed run counts the rows it skips because
 * the sink already has their id in `rowsIn` and `rowsOut` (they have their prediction), so a resumed run that
 * ends `succeeded` has `rowsIn = rowsOut + rowsRejected` like a run that was never stopped.
 *
 * Ends `succeeded`; `interrupted` when `signal` aborts (returned, not thrown); `failed` with the error's message on
 * anything else, which is rethrown.
 */
export async function runBatch(options: RunBatchOptions): Promise<BatchRun> {
  const now = options.now ?? (() => new Date());
  const { scoring, runs, source, sink, logger } = options;
  const parallelism = Math.max(1, Math.floor(options.parallelism ?? 4));
  const chunkRows = Math.max(1, Math.floor(options.chunkRows));

  let run: BatchRun;
  let model: string;
  let version: number;
  let features: string[] | undefined;
  try {
    if (options.resume !== undefined) {
      model = options.resume.model;
      version = options.resume.version;
      // The version must still be there (archived versions do not resolve).
      await scoring.resolve(`${model}@${version}`);
    } else {
      const resolved = await scoring.resolve(options.ref);
      model = resolved.version.name;
      version = resolved.version.version;
    }
    const declared = (await scoring.resolve(`${model}@${version}`)).version.manifest.signature.columns;
    features = declared?.map((c) => c.name);
  } catch (error) {
    await sink.close().catch(() => undefined);
    throw error;
  }
  const nameAtVersion = `${model}@${version}`;

  if (options.resume !== undefined) {
    run = await runs.reopen(options.resume.id, now());
  } else {
    run = await runs.start({
      model,
      version,
      ref: options.ref,
      input: options.input ?? source.path,
      target: options.target ?? (sink.kind === "sqlite" ? "sqlite" : sink.description),
      targetTable: options.table ?? null,
      idColumn: options.idColumn,
      shard: options.shard ?? null,
      settings: { chunkRows, parallelism, format: source.format, ...options.settings },
      now: now(),
    });
  }
  const runId = run.id;
  logger.info({ runId, model, version, input: run.input, target: run.target, resumed: options.resume !== undefined }, "batch run started");

  const counters: RunCounters = { rowsIn: 0, rowsOut: 0, rowsRejected: 0 };
  const started = performance.now();
  let layout: Layout | undefined;

  const report = (): void => {
    if (options.progress === undefined) return;
    const elapsedSeconds = (performance.now() - started) / 1000;
    const rate = elapsedSeconds > 0 ? counters.rowsIn / elapsedSeconds : 0;
    const bytesRead = source.bytesRead();
    const bytesTotal = source.size;
    const byteRate = elapsedSeconds > 0 ? bytesRead / elapsedSeconds : 0;
    const etaSeconds = bytesTotal > 0 && byteRate > 0 ? Math.max(0, (bytesTotal - bytesRead) / byteRate) : null;
    options.progress.update({ runId, ...counters, rate, bytesRead, bytesTotal, elapsedSeconds, etaSeconds });
  };

  const scoreRows = async (rows: readonly PendingRow[], featureNames: string[]): Promise<{ scored: ScoredRow[]; rejects: BatchReject[] }> => {
    const scored: ScoredRow[] = [];
    const rejects: BatchReject[] = [];
    const scoreMany = async (slice: readonly PendingRow[]): Promise<ScoredRow[]> => {
      const result = await scoring.score(
        nameAtVersion,
        { kind: "mlflow", body: { dataframe_split: { columns: featureNames, data: slice.map((r) => r.data) } } },
        { protocol: "batch" },
      );
      const predictions = formatMlflowResponse(result).predictions as Array<Record<string, unknown>>;
      return slice.map((r, i) => ({ id: r.id, outputs: predictions[i] ?? {} }));
    };
    const sliceRows = Math.max(MIN_SLICE_ROWS, Math.ceil(rows.length / parallelism));
    const slices: PendingRow[][] = [];
    for (let i = 0; i < rows.length; i += sliceRows) slices.push(rows.slice(i, i + sliceRows));
    const outcomes = await Promise.all(
      slices.map(async (slice) => {
        try {
          return { scored: await scoreMany(slice), rejects: [] as BatchReject[] };
        } catch (error) {
          if (!isInputError(error)) throw error;
          return scoreOneByOne(slice);
        }
      }),
    );
    for (const outcome of outcomes) {
      scored.push(...outcome.scored);
      rejects.push(...outcome.rejects);
    }
    return { scored, rejects };

    // A slice with a bad row fails as a whole: score its rows alone to keep the good ones and name the bad ones.
    async function scoreOneByOne(slice: readonly PendingRow[]): Promise<{ scored: ScoredRow[]; rejects: BatchReject[] }> {
      const good: ScoredRow[] = [];
      const bad: BatchReject[] = [];
      for (let i = 0; i < slice.length; i += ROW_BY_ROW_CONCURRENCY) {
        const group = slice.slice(i, i + ROW_BY_ROW_CONCURRENCY);
        const results = await Promise.all(
          group.map(async (row) => {
            try {
              return { row, scored: (await scoreMany([row]))[0] };
            } catch (error) {
              if (!isInputError(error)) throw error;
              return { row, error };
            }
          }),
        );
        for (const r of results) {
          if (r.scored !== undefined) good.push(r.scored);
          else if (r.error !== undefined) {
            bad.push({ runId, rowNumber: r.row.rowNumber, rowId: r.row.id, field: r.error.field ?? null, reason: r.error.message });
          }
        }
      }
      return { scored: good, rejects: bad };
    }
  };

  const processChunk = async (chunk: RowChunk): Promise<void> => {
    layout ??= planLayout(chunk.columns, options.idColumn, features);
    const featureNames = layout.featureIndexes.map((i) => chunk.columns[i] as string);
    const unreadable = unreadableRows(chunk);
    const rejects: BatchReject[] = unreadable.map((p) => ({ runId, rowNumber: p.rowNumber, rowId: p.rowId, field: null, reason: p.reason }));
    const pending: PendingRow[] = [];
    for (let r = 0; r < chunk.rows.length; r++) {
      const cells = chunk.rows[r] as BatchCell[];
      const rowNumber = chunk.rowNumbers[r] ?? chunk.firstRow + r;
      const id = rowId(cells[layout.idIndex]);
      if (id === null) {
        rejects.push({ runId, rowNumber, rowId: null, field: options.idColumn, reason: `the id column "${options.idColumn}" is empty` });
        continue;
      }
      pending.push({ id, rowNumber, data: layout.featureIndexes.map((i) => featureCell(cells[i])) });
    }
    let toScore = pending;
    let skipped = 0;
    if (options.resume !== undefined && pending.length > 0) {
      const have = await sink.existing(model, pending.map((p) => p.id));
      if (have.size > 0) {
        toScore = pending.filter((p) => !have.has(p.id));
        skipped = pending.length - toScore.length;
      }
    }
    const outcome = toScore.length === 0 ? { scored: [], rejects: [] } : await scoreRows(toScore, featureNames);
    rejects.push(...outcome.rejects);
    if (outcome.scored.length > 0) {
      await sink.write(outcome.scored, { model, version, runId, scoredAt: now().toISOString() });
    }
    await runs.reject(rejects, now());
    counters.rowsIn += chunk.rows.length + unreadable.length;
    counters.rowsOut += outcome.scored.length + skipped;
    counters.rowsRejected += rejects.length;
    await runs.progress(runId, counters, now());
    report();
  };

  try {
    const iterator = source[Symbol.asyncIterator]();
    // The next chunk is read (and parsed) while the current one is scored and written.
    let next = iterator.next();
    for (;;) {
      if (options.signal?.aborted === true) break;
      const step = await next;
      if (step.done === true) break;
      next = iterator.next();
      // A rejected read-ahead is seen when awaited; until then it must not count as unhandled.
      next.catch(() => undefined);
      await processChunk(step.value);
    }
    if (options.signal?.aborted === true) {
      await iterator.return?.().catch(() => undefined);
      await sink.close();
      const ended = await runs.interrupt(runId, counters, now());
      logger.warn({ runId, ...counters }, "batch run interrupted");
      options.progress?.done(ended);
      return ended;
    }
    const fingerprint = await source.fingerprint().catch((error: unknown) => {
      logger.warn({ err: error, runId }, "could not fingerprint the input");
      return null;
    });
    await sink.close();
    const ended = await runs.finish(runId, counters, fingerprint, now());
    logger.info({ runId, ...counters }, "batch run succeeded");
    options.progress?.done(ended);
    return ended;
  } catch (error) {
    await sink.close().catch(() => undefined);
    if (options.signal?.aborted === true) {
      // Stopping can fail the request in flight: that is still an interruption, not a failure.
      const ended = await runs.interrupt(runId, counters, now());
      options.progress?.done(ended);
      return ended;
    }
    const failure = toMlshipError(error);
    const ended = await runs.fail(runId, counters, failure.message, now()).catch((storeError: unknown) => {
      logger.error({ err: storeError, runId }, "could not record the failed batch run");
      return undefined;
    });
    logger.error({ err: error, runId, ...counters }, "batch run failed");
    if (ended !== undefined) options.progress?.done(ended);
    throw error;
  }
}

/** Where the id and the features are in the input's columns; a missing one fails the run before anything is scored. */
function planLayout(columns: readonly string[], idColumn: string, declared: string[] | undefined): Layout {
  const index = new Map<string, number>();
  columns.forEach((c, i) => {
    if (!index.has(c)) index.set(c, i);
  });
  const idIndex = index.get(idColumn);
  if (idIndex === undefined) {
    throw new MlshipError(
      "MLSHIP_ERR_INPUT_INVALID",
      `the input has no id column "${idColumn}" (columns: ${columns.slice(0, 10).join(", ")}${columns.length > 10 ? ", ..." : ""}); name it with --id-column`,
      { field: "id-column" },
    );
  }
  if (declared === undefined) {
    return { idIndex, featureIndexes: columns.map((_, i) => i).filter((i) => i !== idIndex) };
  }
  const missing = declared.filter((name) => !index.has(name));
  if (missing.length > 0) {
    throw new MlshipError(
      "MLSHIP_ERR_INPUT_MISSING",
      `the input lacks ${missing.length === 1 ? "the feature column" : `${missing.length} feature columns the model needs:`} ${missing.map((m) => `"${m}"`).join(", ")}`,
      { field: missing[0] as string },
    );
  }
  return { idIndex, featureIndexes: declared.map((name) => index.get(name) as number) };
}
