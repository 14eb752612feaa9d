/**
 * The asynchronous prediction log: every successful prediction row goes to the `PredictionStore`, off the request
 * path. The scoring listener only keeps the event; every `flushMs` (or sooner once `maxBatchRows` rows wait) the
 * events are handed over in one batch to a `LogSink` that builds the records, writes them, spills what the store does
 * not take and replays spill files when it works again; nothing is dropped without a count.
 *
 * Two modes, one implementation of the heavy half (`LogWriter`, log-writer.ts):
 * - worker (`storeUrl`/`home`): a worker thread with its own store connection does the building and writing, so the
 *   serving thread only pays for the listener and the hand-off (a structured clone of the batch);
 * - in-process (`store`): the writer runs on this thread over the given store (tests, embedders with their own store).
 */
import { Counter, Gauge, type Registry as MetricsRegistry } from "prom-client";
import { MlshipError, type Logger } from "../core/index.js";
import { MONITOR_PROTOCOL } from "../monitor/index.js";
import type { Manifest } from "../package/index.js";
import type { Registry } from "../registry/index.js";
import type { ScoringEvent, ScoringService } from "../scoring/index.js";
import { WorkerLogSink } from "./log-thread.js";
import { DROP_REASONS, LogWriter, noDrops, versionKey, type DropReason, type LogSink, type LoggedEvent } from "./log-writer.js";
import { feedbackSpecOf } from "./spec.js";
import { SpillFolder } from "./spill.js";
import type { PredictionLogStats, PredictionStore } from "./types.js";

export { DROP_REASONS, type DropReason };

export const DEFAULT_BUFFER_ROWS = 10_000;
export const DEFAULT_FLUSH_MS = 100;
export const DEFAULT_MAX_BATCH_ROWS = 2000;
export const DEFAULT_SPILL_MAX_BYTES = 1024 ** 3;
export const DEFAULT_REPLAY_MS = 5000;
export const DEFAULT_WRITE_TIMEOUT_MS = 10_000;

export interface PredictionLoggerOptions {
  scoring: ScoringService;
  registry: Registry;
  /**
   * Worker mode (chosen whenever `home` is given): the config `store` value (`sqlite:<file>`, `postgres://...`;
   * unset or empty: `<home>/mlship.db`). A worker thread opens its own connection to it (SQLite runs in WAL mode
   * with a busy timeout, so it writes alongside the server's connection; PostgreSQL gets its own pool).
   */
  storeUrl?: string;
  /** Worker mode: MLSHIP_HOME, as `openSqlStore` takes it. */
  home?: string;
  /**
   * In-process mode: the store rows are written to, on this thread. Used when `home` is not given, or when
   * `storeUrl` is an in-memory SQLite database (which a worker's connection could not see).
   */
  store?: PredictionStore;
  logger: Logger;
  /**
   * Rows held in memory (waiting, or handed to the writer and not written yet) at most; beyond it events go straight
   * to spill files (at most as many rows again waiting for that; beyond both they are dropped and counted as
   * `buffer_full`). Default 10000.
   */
  bufferRows?: number;
  /** Flush period (milliseconds). Default 1000. */
  flushMs?: number;
  /** Rows per `insertPredictions` call at most; this many rows waiting start a flush before the timer. Default 2000. */
  maxBatchRows?: number;
  /** Folder of spill files (created if missing). */
  spillDir: string;
  /** Bound on the spill folder's size (bytes); rows beyond it are dropped and counted. Default 1 GiB. */
  spillMaxBytes?: number;
  /** How often spill files are replayed while there are some (milliseconds). Default 5000. */
  replayMs?: number;
  /**
   * A store write that has not answered by then counts as failed and its batch is spilled (a late success is
   * harmless: replays of stored rows are ignored by the store's unique key). Default 10000.
   */
  writeTimeoutMs?: number;
  /** Draws the `sampled` decision of each request (tests pass a seeded one). Default Math.random. */
  random?: () => number;
  /** Flush and replay on timers (off in tests that drive `flush()` and `replay()` themselves). Default true. */
  timers?: boolean;
}

interface Batch {
  events: ScoringEvent[];
  rows: number;
}

/** What this thread keeps of a version: its manifest goes to the sink, its input mode decides the `sampled` draw. */
interface VersionInfo {
  manifest: Manifest;
  sampled: boolean;
}

const versionGone = (err: unknown): boolean =>
  err instanceof MlshipError && (err.code === "MLSHIP_ERR_MODEL_NOT_FOUND" || err.code === "MLSHIP_ERR_MODEL_VERSION_NOT_FOUND");

function sinkOf(options: PredictionLoggerOptions, random: () => number): LogSink {
  const spillMaxBytes = options.spillMaxBytes ?? DEFAULT_SPILL_MAX_BYTES;
  const maxBatchRows = Math.max(1, options.maxBatchRows ?? DEFAULT_MAX_BATCH_ROWS);
  const writeTimeoutMs = options.writeTimeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS;
  // An in-memory SQLite database lives in its connection: a worker could not see it.
  const inMemory = /^sqlite:(\/\/)?:memory:$/i.test(options.storeUrl?.trim() ?? "");
  if (options.home !== undefined && !inMemory) {
    return new WorkerLogSink({ storeUrl: options.storeUrl, home: options.home, spillDir: options.spillDir, spillMaxBytes, maxBatchRows, writeTimeoutMs }, options.logger);
  }
  if (options.store !== undefined) {
    return new LogWriter({ store: options.store, spill: new SpillFolder(options.spillDir, spillMaxBytes), logger: options.logger, maxBatchRows, writeTimeoutMs, random });
  }
  throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", "the prediction log needs the home (and store URL) its worker opens, or a store", { field: "store" });
}

export class PredictionLogger {
  private readonly scoring: ScoringService;
  private readonly registry: Registry;
  private readonly logger: Logger;
  private readonly bufferRows: number;
  private readonly flushMs: number;
  private readonly maxBatchRows: number;
  private readonly replayMs: number;
  private readonly random: () => number;
  private readonly timers: boolean;
  private readonly sink: LogSink;

  /** Events waiting for the next flush. */
  private pending: Batch = { events: [], rows: 0 };
  /** Events that found the buffer full: spilled on the next turn of the event loop, never sent to the store. */
  private overflow: Batch = { events: [], rows: 0 };
  /** Rows taken by a flush or spill that the sink has not stored or spilled yet. */
  private inFlightRows = 0;
  /** Versions being read from the registry (a failed read is tried again next time). */
  private readonly reading = new Map<string, Promise<VersionInfo>>();
  /** Versions read and handed to the sink: the hand-off's fast path. */
  private readonly versions = new Map<string, VersionInfo>();

  private received = 0;
  /** Rows dropped before they reach the sink (the registry could not say how to build them). */
  private readonly dropped = noDrops();

  private unsubscribe: (() => void) | undefined;
  private flushTimer: NodeJS.Timeout | undefined;
  private replayTimer: NodeJS.Timeout | undefined;
  private flushChain: Promise<void> = Promise.resolve();
  private overflowChain: Promise<void> = Promise.resolve();
  private replayChain: Promise<number> = Promise.resolve(0);
  private flushing = false;
  private replaying = false;
  private overflowScheduled = false;
  /** A `buffer_full` drop was logged; reset once the overflow is handed on, so each burst logs once. */
  private overloadReported = false;
  private flushScheduled = false;
  private closing = false;
  private closed: Promise<void> | undefined;

  constructor(options: PredictionLoggerOptions) {
    this.scoring = options.scoring;
    this.registry = options.registry;
    this.logger = options.logger;
    this.bufferRows = options.bufferRows ?? DEFAULT_BUFFER_ROWS;
    this.flushMs = options.flushMs ?? DEFAULT_FLUSH_MS;
    this.maxBatchRows = Math.max(1, options.maxBatchRows ?? DEFAULT_MAX_BATCH_ROWS);
    this.replayMs = options.replayMs ?? DEFAULT_REPLAY_MS;
    this.random = options.random ?? Math.random;
    this.timers = options.timers ?? true;
    this.sink = sinkOf(options, this.random);
  }

  /**
   * Takes stock of spill files left by an earlier process, starts listening to scoring and the timers, and starts
   * replaying the old spill files (without waiting for it: a store that is down must not hold up start-up).
   */
  async start(): Promise<void> {
    if (this.unsubscribe !== undefined) return;
    const left = await this.sink.open();
    if (left.length > 0) {
      const rows = left.reduce((n, f) => n + f.rows, 0);
      this.logger.info({ files: left.length, rows }, "prediction log: replaying spill files left by an earlier run");
    }
    this.unsubscribe = this.scoring.onScored(this.onScored);
    if (this.timers) {
      this.flushTimer = setInterval(() => {
        if (!this.flushing) void this.flush();
      }, this.flushMs);
      this.flushTimer.unref();
      this.replayTimer = setInterval(() => {
        if (!this.replaying && this.sink.counters().spillBacklog > 0) void this.replay();
      }, this.replayMs);
      this.replayTimer.unref();
    }
    if (left.length > 0) void this.replay();
  }

  /**
   * The scoring listener: it runs on the serving path, so it only keeps the event (its tensors are shared and not
   * changed after the event) and counts it.
   */
  private readonly onScored = (event: ScoringEvent): void => {
    if (event.protocol === MONITOR_PROTOCOL || !event.ok || event.outputs === undefined || event.version === null || event.rows < 1) return;
    this.received += event.rows;
    // Rows the sink is still writing are in memory too: a slow store must not let the buffer grow past its bound.
    if (this.pending.rows + this.inFlightRows + event.rows > this.bufferRows) {
      // Spilling has a cost too (the records are built): past a second buffer's worth, memory stays bounded.
      if (this.overflow.rows + event.rows > this.bufferRows) {
        this.drop("buffer_full", event.rows);
        if (!this.overloadReported) {
          this.overloadReported = true;
          this.logger.warn({ bufferRows: this.bufferRows }, "prediction log: rows arrive faster than they can be written or spilled; rows dropped");
        }
        return;
      }
      this.overflow.events.push(event);
      this.overflow.rows += event.rows;
      this.scheduleOverflow();
      return;
    }
    this.pending.events.push(event);
    this.pending.rows += event.rows;
    // A busy server fills a batch before the timer fires: flush it now rather than let the buffer overflow.
    if (this.timers && !this.flushing && !this.flushScheduled && this.pending.rows >= this.maxBatchRows) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        void this.flush();
      });
    }
  };

  private scheduleOverflow(): void {
    if (this.overflowScheduled) return;
    this.overflowScheduled = true;
    setImmediate(() => {
      this.overflowScheduled = false;
      this.overflowChain = this.overflowChain.then(() => this.spillOverflow());
    });
  }

  /** Rows that found the memory buffer full go to a spill file directly, whatever the store's state. */
  private async spillOverflow(): Promise<void> {
    const batch = this.overflow;
    if (batch.rows === 0) return;
    this.overflow = { events: [], rows: 0 };
    this.overloadReported = false;
    this.inFlightRows += batch.rows;
    try {
      const { ready, retry } = await this.resolve(batch.events);
      // Events whose version could not be read yet wait in the overflow for the next turn.
      if (retry.length > 0) this.requeue(this.overflow, retry);
      await this.sink.write(ready, true);
    } finally {
      this.inFlightRows -= batch.rows;
    }
  }

  /**
   * Hands the buffered rows to the sink, which writes them `maxBatchRows` per store call and spills the rest of a
   * batch when a write fails. Resolves once they are stored or spilled. Calls are serialised.
   */
  flush(): Promise<void> {
    const next = this.flushChain.then(() => this.flushOnce());
    this.flushChain = next.catch((err: unknown) => this.logger.error({ err }, "prediction log: flush failed"));
    return this.flushChain;
  }

  private async flushOnce(): Promise<void> {
    const batch = this.pending;
    if (batch.rows === 0) return;
    this.pending = { events: [], rows: 0 };
    this.flushing = true;
    this.inFlightRows += batch.rows;
    try {
      const { ready, retry } = await this.resolve(batch.events);
      if (retry.length > 0) this.requeue(this.pending, retry);
      await this.sink.write(ready, false);
    } finally {
      this.inFlightRows -= batch.rows;
      this.flushing = false;
    }
  }

  /**
   * Puts back events whose version could not be read (registry unreachable) for the next try, within the memory
   * bound: past it they are dropped and counted, since without the manifest they cannot even be spilled.
   */
  private requeue(into: Batch, events: readonly ScoringEvent[]): void {
    const kept: ScoringEvent[] = [];
    let rows = 0;
    let lost = 0;
    for (const event of events) {
      if (into.rows + rows + event.rows <= this.bufferRows) {
        kept.push(event);
        rows += event.rows;
      } else lost += event.rows;
    }
    into.events.unshift(...kept);
    into.rows += rows;
    if (lost > 0) {
      this.drop("registry_unavailable", lost);
      this.logger.warn({ rows: lost }, "prediction log: registry unavailable and the buffer full; rows dropped");
    }
  }

  /**
   * The events the sink can build (their version's manifest handed to it, the request's `sampled` draw made); events
   * whose version cannot be read now (registry down) come back in `retry`.
   */
  private async resolve(events: readonly ScoringEvent[]): Promise<{ ready: LoggedEvent[]; retry: ScoringEvent[] }> {
    const ready: LoggedEvent[] = [];
    const retry: ScoringEvent[] = [];
    // One failed registry read per version and batch is enough: the others of that version wait with it.
    const unreadable = new Map<string, unknown>();
    for (const event of events) {
      const key = versionKey(event.model, event.version as number);
      let info = this.versions.get(key);
      if (info === undefined) {
        try {
          if (unreadable.has(key)) throw unreadable.get(key);
          info = await this.versionInfo(event.model, event.version as number);
        } catch (err) {
          const first = !unreadable.has(key);
          unreadable.set(key, err);
          if (versionGone(err)) {
            this.drop("unknown_version", event.rows);
            if (first) this.logger.warn({ err, model: event.model, version: event.version }, "prediction log: the registry does not know the version; rows dropped");
          } else if (this.closing) {
            this.drop("registry_unavailable", event.rows);
            if (first) this.logger.warn({ err, model: event.model, version: event.version }, "prediction log: registry unavailable at close; rows dropped");
          } else {
            retry.push(event);
            if (first) this.logger.warn({ err, model: event.model, version: event.version }, "prediction log: registry unavailable; rows kept for the next flush");
          }
          continue;
        }
      }
      ready.push(info.sampled ? { ...event, draw: this.random() } : event);
    }
    return { ready, retry };
  }

  /** A version's manifest, read once from the registry and handed to the sink (a failed read is tried again next time). */
  private versionInfo(model: string, version: number): Promise<VersionInfo> {
    const key = versionKey(model, version);
    let found = this.reading.get(key);
    if (found === undefined) {
      found = this.registry.getVersion(model, version).then((record) => {
        const info: VersionInfo = { manifest: record.manifest, sampled: feedbackSpecOf(record.manifest).inputs === "sampled" };
        this.sink.defineVersion(key, record.manifest);
        this.versions.set(key, info);
        this.reading.delete(key);
        return info;
      });
      found.catch(() => this.reading.delete(key));
      this.reading.set(key, found);
    }
    return found;
  }

  private drop(reason: DropReason, rows: number): void {
    this.dropped[reason] += rows;
  }

  /**
   * Writes spill files back to the store, oldest first, deleting each once all its rows are stored; stops at the
   * first failed write (the store is still down; the next replay starts again from that file, and the rows already
   * stored are ignored by the store's unique key). Returns the rows replayed.
   */
  replay(): Promise<number> {
    const next = this.replayChain.then(async () => {
      this.replaying = true;
      try {
        return await this.sink.replay();
      } finally {
        this.replaying = false;
      }
    });
    this.replayChain = next.catch((err: unknown) => {
      this.logger.error({ err }, "prediction log: replay failed");
      return 0;
    });
    return this.replayChain;
  }

  stats(): PredictionLogStats {
    const sink = this.sink.counters();
    const dropped: Record<string, number> = {};
    for (const reason of DROP_REASONS) dropped[reason] = this.dropped[reason] + sink.dropped[reason];
    return {
      received: this.received,
      written: sink.written,
      buffered: this.pending.rows + this.overflow.rows + this.inFlightRows,
      spilled: sink.spilled,
      replayed: sink.replayed,
      spillBacklog: sink.spillBacklog,
      dropped,
      storeErrors: sink.storeErrors,
    };
  }

  /**
   * Stops listening and the timers, writes out what is buffered (spilling what the store does not take), and stops
   * the sink (worker mode: the worker finishes its batches, closes its store connection and exits).
   */
  close(): Promise<void> {
    this.closed ??= (async () => {
      this.unsubscribe?.();
      this.unsubscribe = undefined;
      clearInterval(this.flushTimer);
      clearInterval(this.replayTimer);
      this.closing = true;
      await this.overflowChain;
      // A spill of the overflow may have handed events back (registry down): spill them with the rest now.
      await this.spillOverflow();
      await this.flush();
      await this.replayChain;
      await this.sink.close();
    })();
    return this.closed;
  }
}

/**
 * Registers the prediction log's series in a Prometheus registry, read from `logger.stats()` at scrape time:
 * `mlship_prediction_log_rows_total{state}`, `mlship_prediction_log_dropped_total{reason}`,
 * `mlship_prediction_log_buffered_rows`, `mlship_prediction_log_spill_backlog_rows`,
 * `mlship_prediction_log_store_errors_total`.
 */
export function predictionLogMetrics(logger: PredictionLogger, registry: MetricsRegistry): void {
  const registers = [registry];
  new Counter({
    name: "mlship_prediction_log_rows_total",
    help: "Prediction rows handed to the prediction log (received), written to the store, spilled to disk, and replayed from spill files.",
    labelNames: ["state"] as const,
    registers,
    collect() {
      const s = logger.stats();
      this.reset();
      this.inc({ state: "received" }, s.received);
      this.inc({ state: "written" }, s.written);
      this.inc({ state: "spilled" }, s.spilled);
      this.inc({ state: "replayed" }, s.replayed);
    },
  });
  new Counter({
    name: "mlship_prediction_log_dropped_total",
    help: "Prediction rows the prediction log dropped, by reason (spill_full: the spill folder was at its bound).",
    labelNames: ["reason"] as const,
    registers,
    collect() {
      this.reset();
      for (const [reason, rows] of Object.entries(logger.stats().dropped)) this.inc({ reason }, rows);
    },
  });
  new Gauge({
    name: "mlship_prediction_log_buffered_rows",
    help: "Prediction rows waiting in memory to be written.",
    registers,
    collect() {
      this.set(logger.stats().buffered);
    },
  });
  new Gauge({
    name: "mlship_prediction_log_spill_backlog_rows",
    help: "Prediction rows waiting in spill files to be replayed into the store.",
    registers,
    collect() {
      this.set(logger.stats().spillBacklog);
    },
  });
  new Counter({
    name: "mlship_prediction_log_store_errors_total",
    help: "Failed prediction store writes (each one spilled its batch).",
    registers,
    collect() {
      this.reset();
      this.inc(logger.stats().storeErrors);
    },
  });
}
