/**
 * Streaming prediction's contract (issue 7): a stream job reads micro-batches from a source (a folder of files, or a
 * NATS JetStream durable consumer), enforces a schema fixed at read time (records that do not fit go to a dead-letter
 * sink), scores each micro-batch in one batched call through the scoring service, writes the predictions to sinks,
 * feeds optional event-time aggregations and a stream-stream join, and only then commits the source position
 * (acks the messages / marks the files processed). Sinks are idempotent on the output row's id, so a batch that is
 * replayed after a crash (the source redelivers what was not committed) never double-counts.
 *
 * Per micro-batch, in this order (engine.ts):
 *   1. `source.next()`             records + undecodable ones
 *   2. schema                      records that fit; the rest become dead letters (stage `schema`)
 *   3. `scoring.refresh()`, score  one call for the whole batch (a promotion takes effect at the next batch)
 *   4. operators                   aggregations and join take the scored records, give rows to emit
 *   5. sinks                       predictions, dead letters, aggregates, joined rows: each `write` durable
 *   6. checkpoint                  operator state and the batch counter, atomically
 *   7. `batch.commit()`            ack / mark processed
 */

/** A value after schema enforcement. Timestamps are ms since the epoch (numbers). */
export type FieldValue = string | number | boolean | null;

export type FieldType = "string" | "double" | "float" | "integer" | "long" | "boolean" | "timestamp";

export interface FieldSpec {
  name: string;
  type: FieldType;
  /** A missing or null value is allowed (default true, except for the key and event-time fields). */
  nullable: boolean;
}

export interface SchemaSpec {
  /** The fields, in order. With `fromModel`, the model's declared columns follow (type `double`, not nullable). */
  fields: FieldSpec[];
  /** Add the model version's declared columns (resolved when the job starts) after `fields`. Default false. */
  fromModel: boolean;
  /** The business key field: output rows carry it, joins match on it, outcomes fed to the feedback loop name it. */
  key?: string;
  /** A `timestamp` field holding the event time; unset: a record's event time is its arrival time. */
  eventTime?: string;
  /** Fields the schema does not name: `drop` them (default) or send the record to the dead-letter sink. */
  extra: "drop" | "reject";
}

/** A record as a source decoded it, before the schema. */
export interface RawRecord {
  /**
   * Stable across restarts and redeliveries, unique within the source: folder `<file path relative to the folder>#<0-based
   * data row>`, NATS `<stream>:<stream sequence>` (`<stream>:<seq>#<i>` for the i-th object of a message holding a
   * JSON array). Output rows derive their ids from it, which is what makes sinks idempotent.
   */
  id: string;
  /** Decoded fields: CSV cells typed like batch's `csvCell` (number, text or null), JSON values as parsed, Parquet values. */
  fields: Record<string, unknown>;
  /** For dead letters and logs: `incoming/a.csv:12` (line) or `orders.new #1234` (subject, stream sequence). */
  origin: string;
  /** Arrival time (ms since epoch): the file's mtime, or the message's JetStream timestamp. */
  arrivedAt: number;
  /** How many times the source has handed this record out, this time included (NATS: the message's delivery count); unset when unknown (folder). */
  deliveries?: number;
}

/** A record that fits the schema. */
export interface StreamRecord {
  id: string;
  /** Exactly the schema's fields (missing nullable ones are null), typed. */
  fields: Record<string, FieldValue>;
  /** The key field's value as text, or null when the schema has no key or the value is null. */
  key: string | null;
  /** ms since epoch: the event-time field, else `arrivedAt`. */
  eventTime: number;
  origin: string;
}

/** A record scored by the model: the engine builds these and hands them to operators and the predictions sinks. */
export interface ScoredRecord extends StreamRecord {
  model: string;
  version: number;
  /** Outputs by name, as MLflow's records orientation gives them (`label`, `probabilities`: number[]...). */
  outputs: Record<string, unknown>;
  /** ms since epoch. */
  scoredAt: number;
}

export interface DeadLetter {
  /** The record's id (`RawRecord.id`), or the message/file position when it could not be decoded. */
  id: string;
  origin: string;
  /** Where it was refused: could not be decoded, did not fit the schema, the model refused it. */
  stage: "decode" | "schema" | "score";
  /** The field at fault, when one is. */
  field: string | null;
  reason: string;
  /** The raw content: the message text / CSV line, or the decoded fields as JSON. Truncated at 64 KiB. */
  raw: string;
  /** ms since epoch. */
  at: number;
}

// ---------------------------------------------------------------------------------------------------------------
// Sources

export interface SourceBatch {
  records: RawRecord[];
  undecodable: DeadLetter[];
  /**
   * Called by the engine once every sink has durably written this batch's outputs and the checkpoint is saved:
   * acks the messages (NATS) or records the files as processed (folder). Until then a crash replays them.
   *
   * `redeliver`: record ids the engine could not settle in this batch (a record another instance claimed and may still
   * fail to count, see claims.ts): the source hands them back to be delivered again after about `delayMs` (default:
   * the source's ack wait) instead of committing them. A NATS source negatively acks (`-NAK` with a delay) every
   * message holding one of them and acks the rest; the folder source ignores it (its records are never claimed).
   */
  commit(options?: { redeliver?: ReadonlySet<string>; delayMs?: number }): Promise<void>;
  /** For progress and logs: `2 files (a.csv, b.csv)` or `120 messages, seq 1001-1120`. */
  description: string;
}

export interface StreamSource {
  readonly kind: "folder" | "nats";
  /** `folder /data/incoming` or `nats ORDERS/orders.> durable scorer`. */
  readonly description: string;
  /** Connects / creates the durable consumer if missing / loads the processed-files log. */
  open(): Promise<void>;
  /**
   * The next micro-batch: what is available now, up to the source's limit (`maxFilesPerTrigger` files,
   * `maxMessages` messages). When nothing is available, waits up to `waitMs` for something to arrive (0: do not
   * wait); returns an empty batch if nothing came or `signal` aborted.
   */
  next(options: { waitMs: number; signal?: AbortSignal }): Promise<SourceBatch>;
  /** Records (NATS: pending + unacked for the consumer) or files (folder: not yet processed) waiting; null when unknown. */
  lag(): Promise<number | null>;
  /** Disconnects. Uncommitted batches are redelivered (NATS after `ackWaitMs`) or re-read (folder) later. */
  close(): Promise<void>;
}

export interface FolderSourceSpec {
  kind: "folder";
  /** Absolute path of the watched folder. Files whose name starts with `.` or `_` are ignored (write then rename). */
  path: string;
  /** Default: from each file's extension (.csv, .jsonl/.ndjson, .parquet); files with other extensions are ignored. */
  format?: "csv" | "jsonl" | "parquet";
  /** Files per micro-batch, oldest (mtime, then name) first. Default 1. */
  maxFilesPerTrigger: number;
  /** Also read files in sub-folders. Default false. */
  recursive: boolean;
}

export interface NatsSourceSpec {
  kind: "nats";
  /** Comma-separated server URLs. Default `nats://127.0.0.1:4222`. */
  servers: string;
  /** The JetStream stream to read. */
  stream: string;
  /** Subject filter of the consumer (default: the whole stream). */
  subject?: string;
  /** The durable consumer's name: processes with the same name share the work. */
  durable: string;
  /** Messages per micro-batch at most. Default 1000. */
  maxMessages: number;
  /** The consumer's ack wait: a message not acked by then is redelivered. Default 30000. */
  ackWaitMs: number;
  /** Where a new consumer starts: every message in the stream (`all`, default) or only new ones (`new`). */
  deliverPolicy: "all" | "new";
  /** Create the stream (subjects `[subject]`) when it does not exist. Default false: a missing stream is an error. */
  createStream: boolean;
}

export type SourceSpec = FolderSourceSpec | NatsSourceSpec;

// ---------------------------------------------------------------------------------------------------------------
// Sinks

/** One row a sink writes. `id` is its idempotency key: writing an id again replaces (SQL) or is skipped (files, NATS). */
export interface OutputRow {
  id: string;
  /** Flat values; arrays and objects are written as JSON (SQL text/jsonb columns, nested in JSON/Parquet). */
  fields: Record<string, unknown>;
}

export interface SinkWriteContext {
  /** The stream job's name. */
  stream: string;
  /** The micro-batch's number (0-based, increasing across restarts of one checkpoint). */
  batchId: number;
}

export interface StreamSink {
  readonly kind: "sqlite" | "postgres" | "nats" | "jsonl" | "parquet";
  /** `sqlite table predictions`, `postgres://u:***@h/db table t`, `nats subject preds.out`, `jsonl folder /out`. */
  readonly description: string;
  /** Connects, creates the table / folder / checks a JetStream stream captures the subject. */
  open(): Promise<void>;
  /**
   * Writes one micro-batch's rows durably before resolving (transaction committed, file renamed into place,
   * every PubAck received). Idempotent on `OutputRow.id`. An empty `rows` is a no-op.
   */
  write(rows: readonly OutputRow[], context: SinkWriteContext): Promise<void>;
  close(): Promise<void>;
}

export interface SqliteSinkSpec {
  kind: "sqlite";
  table: string;
  /** A SQLite file; unset: the metadata store (when it is SQLite). */
  path?: string;
}

export interface PostgresSinkSpec {
  kind: "postgres";
  /** `postgres://...`; unset: the metadata store (when it is PostgreSQL). */
  url?: string;
  table: string;
}

export interface NatsSinkSpec {
  kind: "nats";
  servers: string;
  subject: string;
  /** Create this JetStream stream capturing `subject` when no stream captures it. Unset: none captures it is an error. */
  createStream?: string;
}

export interface FolderSinkSpec {
  kind: "jsonl" | "parquet";
  /** A folder: one file per micro-batch (`part-<batchId>-<hash>.jsonl`), written then renamed into place. */
  path: string;
}

export type SinkSpec = SqliteSinkSpec | PostgresSinkSpec | NatsSinkSpec | FolderSinkSpec;

// ---------------------------------------------------------------------------------------------------------------
// Operators: event-time aggregations and the stream-stream join

export interface WindowSpec {
  /** `batch`: per micro-batch (no event time); `tumbling`: fixed `sizeMs` windows; `sliding`: `sizeMs` every `slideMs`. */
  kind: "batch" | "tumbling" | "sliding";
  sizeMs?: number;
  slideMs?: number;
}

export interface AggregateMetric {
  fn: "count" | "sum" | "mean" | "min" | "max";
  /** A field path on the scored record: `label`, `probabilities[1]`, `mean radius`. Not for `count`. */
  field?: string;
  /** Output column; default `count`, `mean_<field>` (non-alphanumerics become `_`). */
  as?: string;
}

export interface AggregationSpec {
  name: string;
  window: WindowSpec;
  /** Event-time delay: the watermark is the max event time seen minus this. A window is emitted once the watermark passes its end. */
  watermarkMs: number;
  /** Field paths to group by (e.g. `label`). */
  groupBy: string[];
  metrics: AggregateMetric[];
  sink: SinkSpec;
}

export interface JoinSpec {
  /** The outcomes stream (e.g. clicks), with its own schema; it needs a key and usually an event time. */
  source: SourceSpec;
  schema: SchemaSpec;
  /**
   * An outcome joins a prediction with the same key when `prediction.eventTime <= outcome.eventTime <=
   * prediction.eventTime + withinMs`.
   */
  withinMs: number;
  /** Event-time delay of the watermark (min over both sides of max event time minus this). */
  watermarkMs: number;
  /** `inner` (default): matches only. `leftOuter`: also each prediction that got no outcome, once the watermark passes. */
  type: "inner" | "leftOuter";
  /** At most this many buffered records (both sides); beyond it the oldest are evicted and counted. Default 1,000,000. */
  maxStateRecords: number;
  sink: SinkSpec;
  /** Feed joined rows to the feedback loop's outcomes: `actual` names the outcome field holding the actual value. */
  feedback?: { actual: string };
}

/** A rows-out operator with state that survives restarts (saved in the checkpoint every micro-batch). */
export interface OperatorState {
  /** Rows of state held now (open windows' groups, buffered join records). */
  stateRecords: number;
  /** Records dropped because their event time was behind the watermark, since the stream started. */
  lateRecords: number;
  /** The current watermark (ms), or null before any record. */
  watermark: number | null;
}

// ---------------------------------------------------------------------------------------------------------------
// The job

export type TriggerSpec =
  /** A micro-batch every `intervalMs` (a batch that takes longer is followed immediately by the next). */
  | { kind: "processingTime"; intervalMs: number }
  /** Everything available at start, in as many micro-batches as the limits make, then stop. */
  | { kind: "availableNow" }
  /** One micro-batch, then stop. */
  | { kind: "once" };

export interface StreamJobConfig {
  /** Names the checkpoint, metrics (`stream` label) and output rows. `[A-Za-z0-9_.-]+`. */
  name: string;
  /** A model reference; an alias is re-resolved every micro-batch. */
  model: string;
  source: SourceSpec;
  schema: SchemaSpec;
  trigger: TriggerSpec;
  /** Input fields copied into each prediction row besides the key and event time. Default none. */
  select: string[];
  /** Predictions go to every sink here (at least one). */
  sinks: SinkSpec[];
  /** Default: a `jsonl` folder `<checkpoint>/dead-letter`. */
  deadLetter: SinkSpec;
  aggregations: AggregationSpec[];
  join?: JoinSpec;
  /** The checkpoint folder (absolute). Default `<MLSHIP_HOME>/streams/<name>`. */
  checkpoint: string;
  /** Log each scored row to the prediction log (request id `stream:<name>:<batchId>`) so outcomes can join. Default false. */
  predictionLog: boolean;
}

/** What a stream job reports after each micro-batch (like Spark's StreamingQueryProgress), as a JSON line in the CLI. */
export interface StreamProgress {
  stream: string;
  batchId: number;
  /** ISO-8601 start of the micro-batch. */
  timestamp: string;
  /** Records read (decoded or not). */
  numInputRows: number;
  /** Scored and written. */
  numOutputRows: number;
  numDeadLetters: number;
  /** Input rows per second since the previous batch started; processed rows per second of this batch's duration. */
  inputRowsPerSecond: number;
  processedRowsPerSecond: number;
  durationMs: { total: number; read: number; score: number; write: number; commit: number };
  model: string | null;
  version: number | null;
  /** Source lag after the batch (records or files), null when unknown. */
  lag: number | null;
  /** Per operator (`aggregation:<name>`, `join`). */
  operators: Record<string, OperatorState>;
  source: string;
}

export interface StreamSummary {
  stream: string;
  /** Why it stopped: the trigger ran out (`availableNow`, `once`), `stop()`/a signal, or an error. */
  reason: "completed" | "stopped" | "failed";
  batches: number;
  inputRows: number;
  outputRows: number;
  deadLetters: number;
  error: string | null;
}
