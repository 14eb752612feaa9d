import { performance } from "node:perf_hooks";
import { MlshipError, toMlshipError, type Logger, type Tensor } from "../core/index.js";
import type { Registry } from "../registry/index.js";
import type { Manifest } from "../package/index.js";
import { formatMlflowResponse, type ScoreResult, type ScoringService } from "../scoring/index.js";
import { cellOf, chunkCells, type ChunkCells } from "./readers.js";
import { tensorRowsSink, type TensorRows } from "./sinks.js";
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
 * How rows whose features are all numbers can be scored as a tensor, skipping the MLflow body: the model's declared
 * columns feed its only input, a float tensor, with no tabular pre-processing. For such rows the MLflow path would
 * cast each number into the same tensor (conventions.md "Inputs"), so the predictions are the same.
 */
interface TensorPlan {
  input: string;
  dtype: "float32" | "float64";
  /** The input's dims after the batch one, as the declared columns fill them. */
  trailing: number[];
}

function tensorPlanOf(manifest: Manifest): TensorPlan | undefined {
  const { inputs, columnsInput, columns } = manifest.signature;
  // Pre-processing (tabular steps, images) belongs to the MLflow path.
  if (manifest.preprocess.length > 0 || inputs.length !== 1 || columns === undefined || columns.length === 0) return undefined;
  const input = inputs[0];
  if (input === undefined || (columnsInput !== undefined && columnsInput !== input.name)) return undefined;
  if (input.dtype !== "float32" && input.dtype !== "float64") return undefined;
  // The declared columns fill the dims after the batch one (one of them may be free), as the MLflow path packs them.
  const trailing = input.shape.slice(1);
  const free = trailing.filter((d) => d < 0).length;
  const known = trailing.reduce((product, d) => (d < 0 ? product : product * d), 1);
  if (free > 1 || known === 0) return undefined;
  if (free === 0 ? known !== columns.length : columns.length % known !== 0) return undefined;
  return { input: input.name, dtype: input.dtype, trailing: trailing.map((d) => (d < 0 ? columns.length / known : d)) };
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
  let plan: TensorPlan | undefined;
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
    const manifest = (await scoring.resolve(`${model}@${version}`)).version.manifest;
    features = manifest.signature.columns?.map((c) => c.name);
    plan = features === undefined ? undefined : tensorPlanOf(manifest);
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
  const tensorSink = tensorRowsSink(sink);
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

  /**
   * Chunks are written in order, one at a time, each while the next is scored: its write (and the run's record) is
   * awaited before the next chunk's starts, so counters and progress only ever describe written chunks. A resumed
   * run also waits for it before asking the sink which ids it already has.
   */
  let writing: Promise<void> | undefined;
  /** True while a chunk's write is in flight. */
  let writeBusy = false;
  const settleWrite = async (): Promise<void> => {
    const pending = writing;
    writing = undefined;
    if (pending !== undefined) await pending;
  };

  /**
   * A columnar chunk (CSV, Parquet) for a model with a tensor plan: rows whose features are all numbers are scored as
   * tensors built straight from the columns; the others (text, empty cells...) take the MLflow path, which casts or
   * rejects them with their reason as before. Scored rows come back in input order.
   */
  const scoreColumns = async (
    chunk: RowChunk,
    cells: ChunkCells,
    tensorPlan: TensorPlan,
    featureNames: string[],
    rejects: BatchReject[],
  ): Promise<{ scored: ScoredRow[]; parts?: TensorRows[]; skipped: number }> => {
    const { idIndex, featureIndexes } = layout as Layout;
    const n = cells.length;
    const idColumn = cells.columns[idIndex];
    const featureColumns = featureIndexes.map((i) => cells.columns[i]);
    const k = featureColumns.length;
    // Rows with a feature cell that is not a number.
    const mixed = new Uint8Array(n);
    const numberColumns: Float64Array[] = [];
    for (const column of featureColumns) {
      if (column === undefined || column.kind === "cells") {
        mixed.fill(1);
        break;
      }
      numberColumns.push(column.values);
      if (column.others !== null) for (const r of column.others.keys()) mixed[r] = 1;
    }
    const ids = new Array<string>(n);
    let candidates: number[] = [];
    for (let r = 0; r < n; r++) {
      const id = idColumn === undefined ? null : rowId(cellOf(idColumn, r));
      if (id === null) {
        const rowNumber = chunk.rowNumbers[r] ?? chunk.firstRow + r;
        rejects.push({ runId, rowNumber, rowId: null, field: options.idColumn, reason: `the id column "${options.idColumn}" is empty` });
        continue;
      }
      ids[r] = id;
      candidates.push(r);
    }
    let skipped = 0;
    if (options.resume !== undefined && candidates.length > 0) {
      await settleWrite();
      const have = await sink.existing(model, candidates.map((r) => ids[r] as string));
      if (have.size > 0) {
        const before = candidates.length;
        candidates = candidates.filter((r) => !have.has(ids[r] as string));
        skipped = before - candidates.length;
      }
    }
    const pendingOf = (r: number): PendingRow => ({
      id: ids[r] as string,
      rowNumber: chunk.rowNumbers[r] ?? chunk.firstRow + r,
      data: featureColumns.map((column) => (column === undefined ? null : featureCell(cellOf(column, r)))),
    });
    const fast: number[] = [];
    const slow: number[] = [];
    for (const r of candidates) (mixed[r] === 1 ? slow : fast).push(r);

    const byRow = new Array<ScoredRow | undefined>(n);
    const place = (rows: readonly number[], outcome: { scored: ScoredRow[]; rejects: BatchReject[] }, pending: readonly PendingRow[]): void => {
      // The MLflow path returns the good rows in order, without the rejected ones (known by their row number).
      const rejected = new Set(outcome.rejects.map((reject) => reject.rowNumber));
      let next = 0;
      for (let i = 0; i < pending.length; i++) {
        if (rejected.has((pending[i] as PendingRow).rowNumber)) continue;
        const row = outcome.scored[next++];
        if (row !== undefined) byRow[rows[i] as number] = row;
      }
      rejects.push(...outcome.rejects);
    };
    // Results of the tensor slices, in order; a slice that fell back to the MLflow path has none.
    const results: Array<{ slice: readonly number[]; result: ScoreResult } | undefined> = [];
    const scoreFast = async (slice: readonly number[], index: number): Promise<void> => {
      const m = slice.length;
      const data = tensorPlan.dtype === "float32" ? new Float32Array(m * k) : new Float64Array(m * k);
      for (let j = 0; j < k; j++) {
        const values = numberColumns[j] as Float64Array;
        for (let t = 0; t < m; t++) data[t * k + j] = values[slice[t] as number] as number;
      }
      const tensor: Tensor = { dtype: tensorPlan.dtype, shape: [m, ...tensorPlan.trailing], data };
      try {
        const result = await scoring.score(nameAtVersion, { kind: "tensors", feeds: { [tensorPlan.input]: tensor } }, { protocol: "batch" });
        results[index] = { slice, result };
      } catch (error) {
        if (!isInputError(error)) throw error;
        const pending = slice.map(pendingOf);
        place(slice, await scoreRows(pending, featureNames), pending);
      }
    };
    const work: Promise<void>[] = [];
    let slices = 0;
    if (fast.length > 0) {
      const sliceRows = Math.max(MIN_SLICE_ROWS, Math.ceil(fast.length / parallelism));
      for (let i = 0; i < fast.length; i += sliceRows) work.push(scoreFast(fast.slice(i, i + sliceRows), slices++));
    }
    if (slow.length > 0) {
      const pending = slow.map(pendingOf);
      work.push(scoreRows(pending, featureNames).then((outcome) => place(slow, outcome, pending)));
    }
    await Promise.all(work);
    // Every row scored as tensors: a sink that formats rows itself takes them as they are, unless it is still busy
    // with the previous chunk (this thread would only wait for it: it formats them meanwhile instead).
    const done = results.filter((r) => r !== undefined);
    // (Not for a custom wrapper's json outputs: the sink would write their JSON text as a string, not the value.)
    if (tensorSink !== undefined && !writeBusy && slow.length === 0 && slices > 0 && done.length === slices && done.every((d) => d.result.jsonOutputs === undefined)) {
      const parts = done.map(({ slice, result }) => ({
        ids: slice.map((r) => ids[r] as string),
        rows: slice.length,
        outputs: Object.entries(result.outputs).map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, data: t.data })),
      }));
      return { scored: [], parts, skipped };
    }
    for (const { slice, result } of done) {
      // One record per row, as the MLflow path gives them for dataframe input.
      const predictions = formatMlflowResponse({ ...result, orientation: "records" }).predictions as Array<Record<string, unknown>>;
      slice.forEach((r, t) => {
        byRow[r] = { id: ids[r] as string, outputs: predictions[t] ?? {} };
      });
    }
    const scored: ScoredRow[] = [];
    for (let r = 0; r < n; r++) {
      const row = byRow[r];
      if (row !== undefined) scored.push(row);
    }
    return { scored, skipped };
  };

  /** A chunk scored, to be written. */
  interface ScoredChunk {
    scored: ScoredRow[];
    /** The scored rows as tensors, for a sink that takes them (then `scored` is empty). */
    parts?: TensorRows[];
    rejects: BatchReject[];
    rowsIn: number;
    skipped: number;
  }

  const scoreChunk = async (chunk: RowChunk): Promise<ScoredChunk> => {
    layout ??= planLayout(chunk.columns, options.idColumn, features);
    const featureNames = layout.featureIndexes.map((i) => chunk.columns[i] as string);
    const unreadable = unreadableRows(chunk);
    const rejects: BatchReject[] = unreadable.map((p) => ({ runId, rowNumber: p.rowNumber, rowId: p.rowId, field: null, reason: p.reason }));
    const cells = plan === undefined ? undefined : chunkCells(chunk);
    let rowCount: number;
    let scored: ScoredRow[];
    let parts: TensorRows[] | undefined;
    let skipped = 0;
    if (cells !== undefined && plan !== undefined) {
      rowCount = cells.length;
      ({ scored, parts, skipped } = await scoreColumns(chunk, cells, plan, featureNames, rejects));
    } else {
      rowCount = chunk.rows.length;
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
      if (options.resume !== undefined && pending.length > 0) {
        await settleWrite();
        const have = await sink.existing(model, pending.map((p) => p.id));
        if (have.size > 0) {
          toScore = pending.filter((p) => !have.has(p.id));
          skipped = pending.length - toScore.length;
        }
      }
      const outcome = toScore.length === 0 ? { scored: [], rejects: [] } : await scoreRows(toScore, featureNames);
      rejects.push(...outcome.rejects);
      scored = outcome.scored;
    }
    return { scored, ...(parts === undefined ? {} : { parts }), rejects, rowsIn: rowCount + unreadable.length, skipped };
  };

  /** Writes a scored chunk, then records its rejects and the run's counters (heartbeat). */
  const writeChunk = async (chunk: ScoredChunk): Promise<void> => {
    writeBusy = true;
    try {
      await writeScored(chunk);
    } finally {
      writeBusy = false;
    }
  };
  const writeScored = async ({ scored, parts, rejects, rowsIn, skipped }: ScoredChunk): Promise<void> => {
    let written = scored.length;
    if (parts !== undefined && tensorSink !== undefined) {
      written = parts.reduce((sum, part) => sum + part.rows, 0);
      if (written > 0) await tensorSink.writeTensorRows(parts, { model, version, runId, scoredAt: now().toISOString() });
    } else if (scored.length > 0) {
      await sink.write(scored, { model, version, runId, scoredAt: now().toISOString() });
    }
    await runs.reject(rejects, now());
    counters.rowsIn += rowsIn;
    counters.rowsOut += written + skipped;
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
      const scoredChunk = await scoreChunk(step.value);
      await settleWrite();
      writing = writeChunk(scoredChunk);
      // A failed write is seen when awaited (before the next write, or below); until then it is not unhandled.
      writing.catch(() => undefined);
    }
    await settleWrite();
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
    // A write still in flight ends before the sink closes (its outcome does not change this one's).
    await settleWrite().catch(() => undefined);
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
