/**
 * The asynchronous prediction log: every successful prediction row goes to the `PredictionStore`, off the request
 * path. The scoring listener only keeps the event; records are built and written in batches by `flush()`. Rows the
 * store cannot take wait in spill files and are replayed when it works again; nothing is dropped without a count.
 */
import { Counter, Gauge, type Registry as MetricsRegistry } from "prom-client";
import { MlshipError, type Logger } from "../core/index.js";
import { MONITOR_PROTOCOL } from "../monitor/index.js";
import type { Manifest } from "../package/index.js";
import type { Registry } from "../registry/index.js";
import type { ScoringEvent, ScoringService } from "../scoring/index.js";
import { feedbackSpecOf, recordsOf } from "./spec.js";
import { SpillFolder } from "./spill.js";
import type { FeedbackSpec, PredictionLogStats, PredictionRecord, PredictionStore } from "./types.js";

export const DEFAULT_BUFFER_ROWS = 10_000;
export const DEFAULT_FLUSH_MS = 1000;
export const DEFAULT_MAX_BATCH_ROWS = 2000;
export const DEFAULT_SPILL_MAX_BYTES = 1024 ** 3;
export const DEFAULT_REPLAY_MS = 5000;
export const DEFAULT_WRITE_TIMEOUT_MS = 10_000;

/** Reasons rows are dropped, each counted in `stats().dropped`. */
export const DROP_REASONS = [
  /** The spill folder was at its bound. */
  "spill_full",
  /** Writing a spill file failed (disk full, permissions). */
  "spill_error",
  /** A line of a spill file could not be read back (cut short by a crash). */
  "spill_corrupt",
  /** The registry no longer knows the version (deleted). */
  "unknown_version",
  /** The registry could not be read (at close, or while the buffer was full), so the rows could not be built. */
  "registry_unavailable",
  /** The event could not be turned into records (a bug; logged). */
  "record_error",
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export interface PredictionLoggerOptions {
  scoring: ScoringService;
  registry: Registry;
  store: PredictionStore;
  logger: Logger;
  /** Rows held in memory at most; beyond it events go straight to spill files. Default 10000. */
  bufferRows?: number;
  /** Flush period (milliseconds). Default 1000. */
  flushMs?: number;
  /** Rows per `insertPredictions` call at most. Default 2000. */
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

/** A version's manifest and the feedback spec read from it. */
interface VersionFeedback {
  manifest: Manifest;
  spec: FeedbackSpec;
}

interface Batch {
  events: ScoringEvent[];
  rows: number;
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

const versionGone = (err: unknown): boolean =>
  err instanceof MlshipError && (err.code === "MLSHIP_ERR_MODEL_NOT_FOUND" || err.code === "MLSHIP_ERR_MODEL_VERSION_NOT_FOUND");

export class PredictionLogger {
  private readonly scoring: ScoringService;
  private readonly registry: Registry;
  private readonly store: PredictionStore;
  private readonly logger: Logger;
  private readonly bufferRows: number;
  private readonly flushMs: number;
  private readonly maxBatchRows: number;
  private readonly replayMs: number;
  private readonly writeTimeoutMs: number;
  private readonly random: () => number;
  private readonly timers: boolean;
  private readonly spill: SpillFolder;

  /** Events waiting for the next flush. */
  private pending: Batch = { events: [], rows: 0 };
  /** Events that found the buffer full: spilled on the next turn of the event loop, never sent to the store. */
  private overflow: Batch = { events: [], rows: 0 };
  /** Rows taken by a flush or spill that are not stored or spilled yet. */
  private inFlightRows = 0;
  private readonly specs = new Map<string, Promise<VersionFeedback>>();

  private received = 0;
  private written = 0;
  private spilled = 0;
  private replayed = 0;
  private storeErrors = 0;
  private readonly dropped: Record<string, number> = Object.fromEntries(DROP_REASONS.map((r) => [r, 0]));

  private unsubscribe: (() => void) | undefined;
  private flushTimer: NodeJS.Timeout | undefined;
  private replayTimer: NodeJS.Timeout | undefined;
  private flushChain: Promise<void> = Promise.resolve();
  private overflowChain: Promise<void> = Promise.resolve();
  private replayChain: Promise<number> = Promise.resolve(0);
  private flushing = false;
  private replaying = false;
  private overflowScheduled = false;
  private flushScheduled = false;
  private closing = false;
  private closed: Promise<void> | undefined;

  constructor(options: PredictionLoggerOptions) {
    this.scoring = options.scoring;
    this.registry = options.registry;
    this.store = options.store;
    this.logger = options.logger;
    this.bufferRows = options.bufferRows ?? DEFAULT_BUFFER_ROWS;
    this.flushMs = options.flushMs ?? DEFAULT_FLUSH_MS;
    this.maxBatchRows = Math.max(1, options.maxBatchRows ?? DEFAULT_MAX_BATCH_ROWS);
    this.replayMs = options.replayMs ?? DEFAULT_REPLAY_MS;
    this.writeTimeoutMs = options.writeTimeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS;
    this.random = options.random ?? Math.random;
    this.timers = options.timers ?? true;
    this.spill = new SpillFolder(options.spillDir, options.spillMaxBytes ?? DEFAULT_SPILL_MAX_BYTES);
  }

  /**
   * Takes stock of spill files left by an earlier process, starts listening to scoring and the timers, and starts
   * replaying the old spill files (without waiting for it: a store that is down must not hold up start-up).
   */
  async start(): Promise<void> {
    if (this.unsubscribe !== undefined) return;
    const left = await this.spill.open();
    if (left.length > 0) {
      this.logger.info({ files: left.length, rows: this.spill.backlogRows, dir: this.spill.dir }, "prediction log: replaying spill files left by an earlier run");
    }
    this.unsubscribe = this.scoring.onScored(this.onScored);
    if (this.timers) {
      this.flushTimer = setInterval(() => {
        if (!this.flushing) void this.flush();
      }, this.flushMs);
      this.flushTimer.unref();
      this.replayTimer = setInterval(() => {
        if (!this.replaying && this.spill.backlogRows > 0) void this.replay();
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
    // Rows a flush is still writing are in memory too: a slow store must not let the buffer grow past its bound.
    if (this.pending.rows + this.inFlightRows + event.rows > this.bufferRows) {
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
    this.inFlightRows += batch.rows;
    try {
      const { records, retry } = await this.build(batch.events);
      // Events whose version could not be read yet wait in the overflow for the next turn.
      if (retry.length > 0) this.requeue(this.overflow, retry);
      if (records.length > 0) {
        const name = this.spill.newName();
        this.spill.hold(name);
        try {
          await this.spillRecords(name, records);
        } finally {
          this.spill.release(name);
        }
      }
    } finally {
      this.inFlightRows -= batch.rows;
    }
  }

  /**
   * Writes the buffered rows to the store, `maxBatchRows` per call. When a write fails, that batch and the rest of
   * this flush go to one spill file. Calls are serialised.
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
    let spillName: string | undefined;
    try {
      const { records, retry } = await this.build(batch.events);
      if (retry.length > 0) this.requeue(this.pending, retry);
      for (const part of chunks(records, this.maxBatchRows)) {
        if (spillName === undefined) {
          try {
            await this.write(part);
            this.written += part.length;
            continue;
          } catch (err) {
            this.storeErrors += 1;
            this.logger.warn({ err, rows: records.length }, "prediction log: store write failed; spilling rows to disk");
            spillName = this.spill.newName();
            this.spill.hold(spillName);
          }
        }
        await this.spillRecords(spillName, part);
      }
    } finally {
      if (spillName !== undefined) this.spill.release(spillName);
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

  /** Builds the records of events; events whose version cannot be read now (registry down) come back in `retry`. */
  private async build(events: readonly ScoringEvent[]): Promise<{ records: PredictionRecord[]; retry: ScoringEvent[] }> {
    const records: PredictionRecord[] = [];
    const retry: ScoringEvent[] = [];
    // One failed registry read per version and build is enough: the others of that version wait with it.
    const unreadable = new Map<string, unknown>();
    for (const event of events) {
      let feedback: VersionFeedback;
      const key = `${event.model}@${event.version}`;
      try {
        if (unreadable.has(key)) throw unreadable.get(key);
        feedback = await this.feedbackOf(event.model, event.version as number);
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
      try {
        for (const record of recordsOf(event, feedback.spec, feedback.manifest, this.random)) records.push(record);
      } catch (err) {
        this.drop("record_error", event.rows);
        this.logger.error({ err, model: event.model, version: event.version }, "prediction log: could not build the rows of a prediction");
      }
    }
    return { records, retry };
  }

  /** The manifest and spec of a version, read once from the registry (a failed read is tried again next time). */
  private feedbackOf(model: string, version: number): Promise<VersionFeedback> {
    const key = `${model}@${version}`;
    let found = this.specs.get(key);
    if (found === undefined) {
      found = this.registry.getVersion(model, version).then((record) => ({ manifest: record.manifest, spec: feedbackSpecOf(record.manifest) }));
      found.catch(() => this.specs.delete(key));
      this.specs.set(key, found);
    }
    return found;
  }

  private async write(records: readonly PredictionRecord[]): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new MlshipError("MLSHIP_ERR_STORE_UNAVAILABLE", `the prediction store did not answer within ${this.writeTimeoutMs} ms`)), this.writeTimeoutMs);
    });
    try {
      await Promise.race([this.store.insertPredictions(records), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async spillRecords(name: string, records: readonly PredictionRecord[]): Promise<void> {
    try {
      const { written, refused } = await this.spill.append(name, records);
      this.spilled += written;
      if (refused > 0) {
        this.drop("spill_full", refused);
        this.logger.warn({ rows: refused, dir: this.spill.dir, maxBytes: this.spill.maxBytes }, "prediction log: spill folder full; rows dropped");
      }
    } catch (err) {
      this.drop("spill_error", records.length);
      this.logger.error({ err, rows: records.length, dir: this.spill.dir }, "prediction log: could not write a spill file; rows dropped");
    }
  }

  private drop(reason: DropReason, rows: number): void {
    this.dropped[reason] = (this.dropped[reason] ?? 0) + rows;
  }

  /**
   * Writes spill files back to the store, oldest first, deleting each once all its rows are stored; stops at the
   * first failed write (the store is still down; the next replay starts again from that file, and the rows already
   * stored are ignored by the store's unique key). Returns the rows replayed.
   */
  replay(): Promise<number> {
    const next = this.replayChain.then(() => this.replayOnce());
    this.replayChain = next.catch((err: unknown) => {
      this.logger.error({ err }, "prediction log: replay failed");
      return 0;
    });
    return this.replayChain;
  }

  private async replayOnce(): Promise<number> {
    this.replaying = true;
    let total = 0;
    try {
      for (const file of this.spill.waiting()) {
        this.spill.hold(file.name);
        try {
          let contents;
          try {
            contents = await this.spill.read(file.name);
          } catch (err) {
            this.logger.warn({ err, file: file.name }, "prediction log: spill file vanished");
            this.spill.forget(file.name);
            continue;
          }
          try {
            for (const part of chunks(contents.records, this.maxBatchRows)) await this.write(part);
          } catch (err) {
            this.storeErrors += 1;
            this.logger.warn({ err, backlog: this.spill.backlogRows }, "prediction log: store still unavailable; replay postponed");
            break;
          }
          await this.spill.remove(file.name);
          this.replayed += contents.records.length;
          total += contents.records.length;
          if (contents.corrupt > 0) {
            this.drop("spill_corrupt", contents.corrupt);
            this.logger.warn({ file: file.name, lines: contents.corrupt }, "prediction log: unreadable lines in a spill file skipped");
          }
        } finally {
          this.spill.release(file.name);
        }
      }
    } finally {
      this.replaying = false;
    }
    if (total > 0) this.logger.info({ rows: total, backlog: this.spill.backlogRows }, "prediction log: spilled rows replayed");
    return total;
  }

  stats(): PredictionLogStats {
    return {
      received: this.received,
      written: this.written,
      buffered: this.pending.rows + this.overflow.rows + this.inFlightRows,
      spilled: this.spilled,
      replayed: this.replayed,
      spillBacklog: this.spill.backlogRows,
      dropped: { ...this.dropped },
      storeErrors: this.storeErrors,
    };
  }

  /** Stops listening and the timers, and writes out what is buffered (spilling what the store does not take). */
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
