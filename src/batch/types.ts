/**
 * Batch prediction's contract (issue 6): a dataset is read in chunks (`RowSource`), scored through the scoring
 * service, and written to a target (`PredictionSink`: a table in the metadata store or another PostgreSQL, a Parquet or
 * JSON Lines file), with the run, its rejected rows and its progress recorded. Tables `batch_runs`, `batch_rejects`,
 * `batch_predictions` and `batch_locks` (migration 0006_batch).
 */

/** A cell as read from CSV (text/number/null after typing), JSON Lines or Parquet. */
export type BatchCell = string | number | boolean | bigint | null;

/** A block of consecutive input rows. `rows[i]` holds the cells in `columns` order. */
export interface RowChunk {
  columns: readonly string[];
  rows: BatchCell[][];
  /** 0-based number of `rows[0]` in the input file (data rows, header excluded), before sharding. */
  firstRow: number;
  /** The input row number of each row (sharding skips rows, so they are not always consecutive). */
  rowNumbers: number[];
  /** Rows the reader could not read (a CSV row with too few or too many cells): the runner rejects them. */
  problems?: { rowNumber: number; rowId: string | null; reason: string }[];
}

export type InputFormat = "csv" | "parquet" | "jsonl";

export interface RowSourceOptions {
  /** Rows per chunk. Default 5000. */
  chunkRows?: number;
  /** Only the rows of shard `index` of `count` (0-based): a row belongs to shard hash(id) mod count. */
  shard?: { index: number; count: number };
  /** The id column (needed for sharding by id). */
  idColumn?: string;
  /** Format; default from the file's extension (.csv, .parquet, .jsonl/.ndjson). */
  format?: InputFormat;
}

/**
 * An input file read as chunks, in order, with memory bounded by the chunk size whatever the file size.
 * `fingerprint` is the sha256 (hex) of the file's bytes, known once the whole file has been read.
 */
export interface RowSource extends AsyncIterable<RowChunk> {
  readonly path: string;
  readonly format: InputFormat;
  /** Column names, known after the first chunk (CSV header, Parquet schema, first JSON line's keys and later ones). */
  columns(): Promise<readonly string[]>;
  /** sha256 of the file; resolves after iteration ends (or reads the file itself if iteration did not run). */
  fingerprint(): Promise<string>;
  /** The file's size and the bytes read so far (for progress and ETA). */
  readonly size: number;
  bytesRead(): number;
}

/** One scored row as written to a target. */
export interface ScoredRow {
  id: string;
  /** Outputs by name: a number, string, or array per output (as MLflow's records orientation gives them). */
  outputs: Record<string, unknown>;
}

export interface SinkWriteMeta {
  model: string;
  version: number;
  runId: string;
  /** ISO-8601 UTC. */
  scoredAt: string;
}

/**
 * Where predictions go. SQL targets upsert on (model, id) so a resumed or repeated run leaves exactly one prediction
 * per id; file targets are written by one run each (a resumed run appends to its own file).
 */
export interface PredictionSink {
  /** `sqlite`, `postgres`, `parquet` or `jsonl`, and what to name it in messages (file path or table). */
  readonly kind: "sqlite" | "postgres" | "parquet" | "jsonl";
  readonly description: string;
  write(rows: readonly ScoredRow[], meta: SinkWriteMeta): Promise<void>;
  /** Ids already written for this model (by any run) among `ids`: a resumed run skips them. */
  existing(model: string, ids: readonly string[]): Promise<Set<string>>;
  /** Flushes and closes (a Parquet file is written here). */
  close(): Promise<void>;
}

export type RunStatus = "running" | "succeeded" | "failed" | "interrupted";

export interface BatchRun {
  id: string;
  model: string;
  version: number;
  /** The reference given (`name@production`). */
  ref: string;
  input: string;
  inputFingerprint: string | null;
  /** `sqlite` (the metadata store), a `postgres://` URL with the password redacted, or a file path. */
  target: string;
  /** The table, for SQL targets. */
  targetTable: string | null;
  idColumn: string;
  shard: { index: number; count: number } | null;
  status: RunStatus;
  rowsIn: number;
  rowsOut: number;
  rowsRejected: number;
  startedAt: string;
  /** Updated as the run goes: a running run whose heartbeat is old was killed. */
  heartbeatAt: string;
  endedAt: string | null;
  error: string | null;
  /** Chunk size, batch settings, options used. */
  settings: Record<string, unknown>;
}

export interface BatchReject {
  runId: string;
  rowNumber: number;
  rowId: string | null;
  field: string | null;
  reason: string;
}

/** Progress of a run, reported every chunk (a terminal bar, or JSON lines when not a TTY). */
export interface BatchProgress {
  runId: string;
  rowsIn: number;
  rowsOut: number;
  rowsRejected: number;
  /** Rows per second since the start. */
  rate: number;
  /** Input bytes read and the file's size, for the ETA. */
  bytesRead: number;
  bytesTotal: number;
  elapsedSeconds: number;
  /** Seconds left at the current rate, when the size is known. */
  etaSeconds: number | null;
}

export interface ProgressReporter {
  update(progress: BatchProgress): void;
  done(run: BatchRun): void;
}
