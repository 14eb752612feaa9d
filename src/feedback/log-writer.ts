/**
 * The heavy half of the prediction log: turns scoring events into records, writes them to the store in batches,
 * spills what the store does not take, and replays spill files. `PredictionLogger` uses it directly (an injected
 * store) or inside a worker thread (log-worker.ts), so both modes share this one implementation.
 */
import { MlshipError } from "../core/index.js";
import type { Manifest } from "../package/index.js";
import type { ScoringEvent } from "../scoring/index.js";
import { feedbackSpecOf, recordsOf, RowTextMemo } from "./spec.js";
import type { SpillFileInfo, SpillFolder } from "./spill.js";
import type { FeedbackSpec, PredictionRecord, PredictionStore } from "./types.js";

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
  /**
   * Rows came faster than even spill files could take them: the memory buffer was full and so was the hand-off to
   * the spill files (as many rows again).
   */
  "buffer_full",
  /** The log's worker thread died with the rows of a batch it had not written or spilled yet. */
  "worker_error",
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export const noDrops = (): Record<DropReason, number> => Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>;

/** The only logging the writer does; a pino logger fits, and so does the worker's forwarder to the main thread. */
export interface LogLines {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

/** What the writer has done so far (the part of `PredictionLogStats` it owns). */
export interface WriterCounters {
  written: number;
  spilled: number;
  replayed: number;
  storeErrors: number;
  spillBacklog: number;
  dropped: Record<DropReason, number>;
}

/**
 * The event as the writer needs it: a scoring event, plus the request's `sampled` draw made when the event was
 * handed over (so a seeded `random` works in worker mode too).
 */
export type LoggedEvent = Pick<ScoringEvent, "model" | "version" | "protocol" | "requestId" | "rows" | "latencyMs" | "ok" | "inputs" | "outputs" | "at" | "key" | "variant" | "rolloutId"> & {
  draw?: number;
};

/** The rest of the log's machinery: the writer and the worker client both offer it to `PredictionLogger`. */
export interface LogSink {
  /** Takes stock of spill files left by an earlier process. */
  open(): Promise<SpillFileInfo[]>;
  /** Tells the sink a version's manifest (once per version, before its first events). */
  defineVersion(key: string, manifest: Manifest): void;
  /** Resolves once every row of `events` is stored, spilled, or dropped and counted. */
  write(events: LoggedEvent[], spillOnly: boolean): Promise<void>;
  replay(): Promise<number>;
  counters(): WriterCounters;
  close(): Promise<void>;
}

export interface LogWriterOptions {
  store: Pick<PredictionStore, "insertPredictions">;
  spill: SpillFolder;
  logger: LogLines;
  maxBatchRows: number;
  writeTimeoutMs: number;
  /** Used for events handed over without a draw. */
  random: () => number;
}

export const versionKey = (model: string, version: number): string => `${model}@${version}`;

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

interface VersionFeedback {
  manifest: Manifest;
  spec: FeedbackSpec;
}

export class LogWriter implements LogSink {
  private readonly store: Pick<PredictionStore, "insertPredictions">;
  private readonly spill: SpillFolder;
  private readonly logger: LogLines;
  private readonly maxBatchRows: number;
  private readonly writeTimeoutMs: number;
  private readonly random: () => number;
  private readonly versions = new Map<string, VersionFeedback>();
  private replayChain: Promise<number> = Promise.resolve(0);

  private written = 0;
  private spilled = 0;
  private replayed = 0;
  private storeErrors = 0;
  private readonly dropped = noDrops();

  constructor(options: LogWriterOptions) {
    this.store = options.store;
    this.spill = options.spill;
    this.logger = options.logger;
    this.maxBatchRows = Math.max(1, options.maxBatchRows);
    this.writeTimeoutMs = options.writeTimeoutMs;
    this.random = options.random;
  }

  open(): Promise<SpillFileInfo[]> {
    return this.spill.open();
  }

  defineVersion(key: string, manifest: Manifest): void {
    if (!this.versions.has(key)) this.versions.set(key, { manifest, spec: feedbackSpecOf(manifest) });
  }

  /**
   * Builds the records of `events` and writes them, `maxBatchRows` per store call; when a write fails, that batch
   * and the rest go to one spill file. `spillOnly` (the memory buffer was full) sends them all to a spill file.
   */
  async write(events: LoggedEvent[], spillOnly: boolean): Promise<void> {
    const records = this.build(events);
    if (records.length === 0) return;
    let spillName: string | undefined;
    if (spillOnly) {
      spillName = this.spill.newName();
      this.spill.hold(spillName);
    }
    try {
      for (const part of chunks(records, this.maxBatchRows)) {
        if (spillName === undefined) {
          try {
            await this.insert(part);
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
    }
  }

  private build(events: readonly LoggedEvent[]): PredictionRecord[] {
    const records: PredictionRecord[] = [];
    // Repeats of one cached answer share their tensors: their rows' JSON is written once per batch.
    const memo = new RowTextMemo();
    for (const event of events) {
      const feedback = this.versions.get(versionKey(event.model, event.version as number));
      try {
        if (feedback === undefined) throw new Error(`no manifest was handed over for ${event.model}@${event.version}`);
        const draw = event.draw;
        const random = draw === undefined ? this.random : () => draw;
        for (const record of recordsOf(event as ScoringEvent, feedback.spec, feedback.manifest, random, memo)) records.push(record);
      } catch (err) {
        this.drop("record_error", event.rows);
        this.logger.error({ err, model: event.model, version: event.version }, "prediction log: could not build the rows of a prediction");
      }
    }
    return records;
  }

  private async insert(records: readonly PredictionRecord[]): Promise<void> {
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

  drop(reason: DropReason, rows: number): void {
    this.dropped[reason] += rows;
  }

  /**
   * Writes spill files back to the store, oldest first, deleting each once all its rows are stored; stops at the
   * first failed write (the store is still down; the next replay starts again from that file, and the rows already
   * stored are ignored by the store's unique key). Returns the rows replayed. Calls are serialised.
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
    let total = 0;
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
          for (const part of chunks(contents.records, this.maxBatchRows)) await this.insert(part);
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
    if (total > 0) this.logger.info({ rows: total, backlog: this.spill.backlogRows }, "prediction log: spilled rows replayed");
    return total;
  }

  counters(): WriterCounters {
    return {
      written: this.written,
      spilled: this.spilled,
      replayed: this.replayed,
      storeErrors: this.storeErrors,
      spillBacklog: this.spill.backlogRows,
      dropped: { ...this.dropped },
    };
  }

  /** Waits for a replay in progress; the store is the caller's. */
  async close(): Promise<void> {
    await this.replayChain;
  }
}
