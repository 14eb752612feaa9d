/**
 * Stream job status in the metadata store (table `stream_status`, migration 0008): each `mlship stream run` process
 * keeps one row per job name and instance up to date, so `mlship serve` (another process, often another machine on
 * the same PostgreSQL) can show every stream's state, rates, lag and dead letters. A process that died leaves its row
 * `running` with an old heartbeat: readers call it `stale`.
 *
 * Status is best effort: a write that fails is logged and the stream goes on; writes never wait on one another (the
 * newest figures replace a write that has not started yet), so a slow store never slows the micro-batches.
 */
import os from "node:os";
import type { Kysely } from "kysely";
import type { Logger } from "../core/index.js";
import { mapStoreError, type Database, type SqlStore } from "../store/index.js";
import type { StreamStatusView } from "../ui/contract.js";
import type { OperatorState, SourceSpec, StreamProgress, StreamSummary, TriggerSpec } from "./types.js";

/** The `stream_status` table. Type alias: Kysely's withTables needs an index signature. */
export type StreamStatusTable = {
  name: string;
  instance: string;
  model: string;
  version: number | null;
  state: StreamState;
  host: string;
  pid: number;
  source: string;
  trigger: string;
  stale_after_ms: number;
  started_at: string;
  heartbeat_at: string;
  ended_at: string | null;
  last_batch_at: string | null;
  last_batch_id: number | null;
  batches: number;
  input_records: number;
  output_records: number;
  dead_letters: number;
  late_records: number;
  input_rows_per_second: number;
  processed_rows_per_second: number;
  lag: number | null;
  state_records: number;
  watermark: string | null;
  last_error: string | null;
};

type StatusTables = { stream_status: StreamStatusTable };

export type StreamState = StreamStatusView["state"];

/** How often a running job rewrites its row while no micro-batch does. */
export const DEFAULT_STATUS_HEARTBEAT_MS = 5_000;
/** A running row whose heartbeat is older than this many heartbeat (or trigger) intervals is `stale`. */
export const STALE_HEARTBEATS = 3;
/** The instance name of a process started without `--instance` (the engine's own default). */
export const DEFAULT_INSTANCE = "default";

/** `processingTime 5000ms`, `availableNow`, `once`. */
export function describeTrigger(trigger: TriggerSpec): string {
  return trigger.kind === "processingTime" ? `processingTime ${trigger.intervalMs}ms` : trigger.kind;
}

/** How long a running job may stay silent before readers call it stale: 3 heartbeats, or 3 trigger intervals if longer. */
export function staleAfterMs(heartbeatMs: number, trigger: TriggerSpec): number {
  const interval = trigger.kind === "processingTime" ? trigger.intervalMs : 0;
  return STALE_HEARTBEATS * Math.max(heartbeatMs, interval);
}

function toView(row: StreamStatusTable, now: Date): StreamStatusView {
  const staleAfter = Number(row.stale_after_ms);
  const nullableNumber = (value: number | string | null): number | null => (value === null ? null : Number(value));
  return {
    name: row.name,
    instance: row.instance,
    model: row.model,
    version: nullableNumber(row.version),
    state: row.state,
    stale: row.state === "running" && now.getTime() - Date.parse(row.heartbeat_at) > staleAfter,
    staleAfterSeconds: staleAfter / 1000,
    host: row.host,
    pid: Number(row.pid),
    source: row.source,
    trigger: row.trigger,
    startedAt: row.started_at,
    heartbeatAt: row.heartbeat_at,
    endedAt: row.ended_at,
    lastBatchAt: row.last_batch_at,
    lastBatchId: nullableNumber(row.last_batch_id),
    batches: Number(row.batches),
    inputRecords: Number(row.input_records),
    outputRecords: Number(row.output_records),
    inputRowsPerSecond: Number(row.input_rows_per_second),
    processedRowsPerSecond: Number(row.processed_rows_per_second),
    lag: nullableNumber(row.lag),
    deadLetters: Number(row.dead_letters),
    lateRecords: Number(row.late_records),
    stateRecords: Number(row.state_records),
    watermark: row.watermark,
    lastError: row.last_error,
  };
}

/** Reads and writes `stream_status` rows. */
export class StreamStatusStore {
  constructor(readonly store: SqlStore) {}

  get #db(): Kysely<Database & StatusTables> {
    return this.store.db.withTables<StatusTables>();
  }

  /** Inserts or replaces the row of `row.name` and `row.instance`. */
  async put(row: StreamStatusTable): Promise<void> {
    try {
      await this.store.write(async (db) => {
        const { name: _name, instance: _instance, ...rest } = row;
        await db
          .withTables<StatusTables>()
          .insertInto("stream_status")
          .values(row)
          .onConflict((oc) => oc.columns(["name", "instance"]).doUpdateSet(rest))
          .execute();
      });
    } catch (error) {
      throw mapStoreError(this.store.location, error);
    }
  }

  /** Every job's status, by name then instance; `stale` as of `now`. */
  async list(now = new Date()): Promise<StreamStatusView[]> {
    const rows = await this.#read(() => this.#db.selectFrom("stream_status").selectAll().orderBy("name").orderBy("instance").execute());
    return rows.map((row) => toView(row, now));
  }

  /** The status of one job's instance, or undefined when it never reported. */
  async get(name: string, instance = DEFAULT_INSTANCE, now = new Date()): Promise<StreamStatusView | undefined> {
    const row = await this.#read(() => this.#db.selectFrom("stream_status").selectAll().where("name", "=", name).where("instance", "=", instance).executeTakeFirst());
    return row === undefined ? undefined : toView(row, now);
  }

  /** The instances of one job that reported, by instance name. */
  async instances(name: string, now = new Date()): Promise<StreamStatusView[]> {
    const rows = await this.#read(() => this.#db.selectFrom("stream_status").selectAll().where("name", "=", name).orderBy("instance").execute());
    return rows.map((row) => toView(row, now));
  }

  async #read<T>(query: () => Promise<T>): Promise<T> {
    try {
      return await query();
    } catch (error) {
      throw mapStoreError(this.store.location, error);
    }
  }
}

export interface StreamStatusReporterOptions {
  name: string;
  instance?: string;
  model: string;
  trigger: TriggerSpec;
  /** Default 5 s. */
  heartbeatMs?: number;
  logger: Logger;
}

/** What the engine reports after a committed micro-batch, besides its progress. */
export interface StatusBatch {
  progress: StreamProgress;
  /** Records the operators dropped as late in this batch (all operators together). */
  lateRecords: number;
}

/**
 * The status row of one running job, kept by the engine: `running` at start, updated after every micro-batch and
 * on a heartbeat timer (unref'd) while idle, and `stopped`/`completed`/`failed` at the end. Never throws.
 */
export class StreamStatusReporter {
  readonly #statuses: StreamStatusStore;
  readonly #log: Logger;
  readonly #heartbeatMs: number;
  readonly #row: StreamStatusTable;
  #timer: NodeJS.Timeout | undefined;
  /** The write in progress, and whether newer figures wait for it to finish. */
  #writing: Promise<void> | undefined;
  #pending = false;
  #lastWriteAt = 0;
  #ended = false;
  /** A write failed: the next success says so in the log, once. */
  #failing = false;

  constructor(store: SqlStore, options: StreamStatusReporterOptions) {
    this.#statuses = new StreamStatusStore(store);
    this.#log = options.logger;
    this.#heartbeatMs = options.heartbeatMs ?? DEFAULT_STATUS_HEARTBEAT_MS;
    const at = new Date().toISOString();
    this.#row = {
      name: options.name,
      instance: options.instance ?? DEFAULT_INSTANCE,
      model: options.model,
      version: null,
      state: "running",
      host: os.hostname(),
      pid: process.pid,
      source: "",
      trigger: describeTrigger(options.trigger),
      stale_after_ms: staleAfterMs(this.#heartbeatMs, options.trigger),
      started_at: at,
      heartbeat_at: at,
      ended_at: null,
      last_batch_at: null,
      last_batch_id: null,
      batches: 0,
      input_records: 0,
      output_records: 0,
      dead_letters: 0,
      late_records: 0,
      input_rows_per_second: 0,
      processed_rows_per_second: 0,
      lag: null,
      state_records: 0,
      watermark: null,
      last_error: null,
    };
  }

  /** Writes the `running` row and starts the heartbeat. */
  start(source: string): void {
    this.#row.source = source;
    this.#write();
    this.#timer = setInterval(() => {
      // A micro-batch wrote recently enough: no need to beat now.
      if (Date.now() - this.#lastWriteAt >= this.#heartbeatMs * 0.9) this.#write();
    }, this.#heartbeatMs);
    this.#timer.unref();
  }

  /** A committed micro-batch. */
  batch({ progress, lateRecords }: StatusBatch): void {
    const row = this.#row;
    row.batches += 1;
    row.input_records += progress.numInputRows;
    row.output_records += progress.numOutputRows;
    row.dead_letters += progress.numDeadLetters;
    row.late_records += lateRecords;
    row.input_rows_per_second = progress.inputRowsPerSecond;
    row.processed_rows_per_second = progress.processedRowsPerSecond;
    row.lag = progress.lag;
    row.last_batch_at = new Date().toISOString();
    row.last_batch_id = progress.batchId;
    if (progress.version !== null) row.version = progress.version;
    const operators: OperatorState[] = Object.values(progress.operators);
    row.state_records = operators.reduce((sum, op) => sum + op.stateRecords, 0);
    const watermarks = operators.map((op) => op.watermark).filter((w): w is number => w !== null);
    row.watermark = watermarks.length === 0 ? null : new Date(Math.min(...watermarks)).toISOString();
    row.last_error = null;
    this.#write();
  }

  /** A micro-batch (or opening a source or sink, or reading) failed and will be retried: the row shows why meanwhile. */
  retrying(error: unknown): void {
    this.#row.last_error = error instanceof Error ? error.message : String(error);
    this.#write();
  }

  /** What was being retried works now (a source or sink opened after failures). */
  recovered(): void {
    if (this.#row.last_error === null) return;
    this.#row.last_error = null;
    this.#write();
  }

  /** The stream ended: the final row (`completed`, `stopped` or `failed` with its error), written before this resolves. */
  async end(summary: StreamSummary): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    const at = new Date().toISOString();
    this.#row.state = summary.reason;
    this.#row.ended_at = at;
    if (summary.reason === "failed") this.#row.last_error = summary.error ?? "unknown error";
    // The last micro-batch's rates describe a stream that is no longer reading.
    this.#row.input_rows_per_second = 0;
    this.#row.processed_rows_per_second = 0;
    this.#write(true);
    await this.#flushed();
  }

  /** Starts a write of the current figures, or marks one as waiting when a write is in progress. */
  #write(final = false): void {
    if (this.#ended && !final) return;
    if (this.#writing !== undefined) {
      this.#pending = true;
      return;
    }
    this.#lastWriteAt = Date.now();
    const at = new Date().toISOString();
    this.#row.heartbeat_at = at;
    const row = { ...this.#row };
    this.#writing = this.#statuses
      .put(row)
      .then(
        () => {
          if (this.#failing) this.#log.info({ stream: row.name }, "stream status: writing to the metadata store works again");
          this.#failing = false;
        },
        (error: unknown) => {
          // Status is for people watching; the stream itself must not depend on it.
          if (!this.#failing) this.#log.warn({ err: error, stream: row.name }, "stream status: could not write to the metadata store; the stream goes on");
          this.#failing = true;
        },
      )
      .finally(() => {
        this.#writing = undefined;
        if (this.#pending) {
          this.#pending = false;
          this.#write(this.#ended);
        }
      });
  }

  async #flushed(): Promise<void> {
    while (this.#writing !== undefined) await this.#writing;
  }
}

/** What a source will call itself once open (`folder /data/in`, `nats ORDERS/orders.> durable scorer`). */
export function describeSourceSpec(spec: SourceSpec): string {
  return spec.kind === "folder" ? `folder ${spec.path}` : `nats ${spec.stream}${spec.subject === undefined ? "" : `/${spec.subject}`} durable ${spec.durable}`;
}
