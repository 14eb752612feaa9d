/**
 * The stream-stream join of predictions with outcomes (clicks, labels), as Spark Structured Streaming's inner /
 * left-outer join with watermarks on both sides and a time-range condition:
 *
 *   prediction.key = outcome.key AND prediction.eventTime <= outcome.eventTime <= prediction.eventTime + withinMs
 *
 * Both sides are buffered by key. Each micro-batch: new predictions are matched against the buffered outcomes, then
 * new outcomes against the buffered predictions (old and new), so each pair is found once.
 *
 * Watermark (Spark's global watermark, `min` policy): per side the max event time seen minus `watermarkMs`; the
 * join's watermark is the min over the sides that have seen data (as Spark: a side with no data yet does not hold
 * the watermark back), recomputed after each batch, never going back. A record behind the watermark as it stood
 * when the batch started is late: counted and dropped. After the batch, records that can no longer match are evicted:
 * a prediction once `watermark > p.eventTime + withinMs` (a matching outcome would now be late), an outcome once
 * `watermark > o.eventTime` (a matching prediction, never later than the outcome, would now be late). With
 * `leftOuter`, a prediction evicted without a match is emitted then, its outcome columns null.
 *
 * Bounded state: beyond `maxStateRecords` buffered records (both sides), the oldest by event time are evicted and
 * counted (`evicted()`). A prediction evicted that way is NOT emitted as unmatched, even with `leftOuter`: its
 * outcome may still come, and a "no outcome" row would then be false.
 *
 * Redelivery: a record whose id is still buffered is skipped (every match it can make was made when it was first
 * buffered or since); one no longer buffered was evicted by the watermark and is late now. So a pair is emitted once;
 * the row id `<prediction id>|<outcome id>` makes sinks idempotent even in the corner case of a record evicted by
 * the size bound and then redelivered. Records with a null key cannot match and are skipped (counted by `unkeyed()`),
 * but their event times still move the watermark.
 */
import { MlshipError } from "../core/index.js";
import type { FieldValue, JoinSpec, OperatorState, OutputRow, ScoredRecord, StreamRecord } from "./types.js";

interface BufferedPrediction {
  id: string;
  key: string;
  eventTime: number;
  model: string;
  version: number;
  outputs: Record<string, unknown>;
  /** Attached by the engine for the feedback loop, when it logs predictions. */
  requestId: string | null;
  row: number | string | null;
  matched: boolean;
}

interface BufferedOutcome {
  id: string;
  key: string;
  eventTime: number;
  fields: Record<string, FieldValue>;
}

const SNAPSHOT_FORMAT = 1;

interface JoinSnapshot {
  format: number;
  watermark: number | null;
  maxPredictionTime: number | null;
  maxOutcomeTime: number | null;
  lateRecords: number;
  evicted: number;
  unkeyed: number;
  predictions: BufferedPrediction[];
  outcomes: BufferedOutcome[];
}

/** Columns every joined row has, before the prediction's outputs and the outcome's fields. */
const BASE_COLUMNS = ["key", "prediction_id", "outcome_id", "model", "version", "prediction_time", "outcome_time", "request_id", "row"];

export const DEFAULT_MAX_STATE_RECORDS = 1_000_000;

function configError(message: string, field: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_CONFIG_INVALID", message, { field });
}

function checkpointError(why: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_STREAM_CHECKPOINT", `join: the checkpointed state cannot be restored: ${why}`, { field: "join" });
}

/** Outputs as plain JSON (typed arrays become arrays), so buffered predictions survive the checkpoint unchanged. */
function plainJson(value: unknown): unknown {
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
    return Array.from(value as unknown as ArrayLike<unknown>, (item) => (typeof item === "bigint" ? Number(item) : item));
  }
  if (Array.isArray(value)) return value.map(plainJson);
  if (typeof value === "bigint") return Number(value);
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([name, item]) => [name, plainJson(item)]));
  }
  return value;
}

function isFiniteNumber(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value);
}

/** A column name not yet taken: `name`, else `prefix` + name, repeated until free. */
function freeColumn(taken: Set<string>, name: string, prefix: string): string {
  let column = name;
  while (taken.has(column)) column = `${prefix}${column}`;
  taken.add(column);
  return column;
}

interface Buffered {
  id: string;
  key: string;
  eventTime: number;
}

/** Oldest first: by event time, then id, so eviction and left-outer output do not depend on arrival order. */
function older(a: Buffered, b: Buffered): boolean {
  return a.eventTime < b.eventTime || (a.eventTime === b.eventTime && a.id < b.id);
}

/**
 * One side's buffered records: by key (for matching) and in a min-heap by event time (for eviction, which always
 * takes the oldest: the watermark expires records oldest first, and so does the state bound). Every removal goes
 * through the heap's top, so the heap and the key index always hold the same records.
 */
class BufferedSide<T extends Buffered> {
  private readonly byKey = new Map<string, Map<string, T>>();
  private readonly ids = new Set<string>();
  private readonly heap: T[] = [];

  get size(): number {
    return this.ids.size;
  }

  has(id: string): boolean {
    return this.ids.has(id);
  }

  withKey(key: string): Iterable<T> {
    return this.byKey.get(key)?.values() ?? [];
  }

  add(item: T): void {
    let forKey = this.byKey.get(item.key);
    if (forKey === undefined) {
      forKey = new Map();
      this.byKey.set(item.key, forKey);
    }
    forKey.set(item.id, item);
    this.ids.add(item.id);
    this.heap.push(item);
    this.siftUp(this.heap.length - 1);
  }

  oldest(): T | undefined {
    return this.heap[0];
  }

  removeOldest(): T | undefined {
    const top = this.heap[0];
    if (top === undefined) return undefined;
    const last = this.heap.pop() as T;
    if (this.heap.length > 0) {
      this.heap[0] = last;
      this.siftDown(0);
    }
    const forKey = this.byKey.get(top.key);
    forKey?.delete(top.id);
    if (forKey?.size === 0) this.byKey.delete(top.key);
    this.ids.delete(top.id);
    return top;
  }

  /** In the key index's order, which adding them back in this order recreates (matches are found in that order). */
  all(): T[] {
    const items: T[] = [];
    for (const forKey of this.byKey.values()) items.push(...forKey.values());
    return items;
  }

  clear(): void {
    this.byKey.clear();
    this.ids.clear();
    this.heap.length = 0;
  }

  private siftUp(index: number): void {
    const heap = this.heap;
    let child = index;
    while (child > 0) {
      const parent = (child - 1) >> 1;
      if (!older(heap[child] as T, heap[parent] as T)) return;
      [heap[child], heap[parent]] = [heap[parent] as T, heap[child] as T];
      child = parent;
    }
  }

  private siftDown(index: number): void {
    const heap = this.heap;
    let parent = index;
    for (;;) {
      const left = 2 * parent + 1;
      const right = left + 1;
      let smallest = parent;
      if (left < heap.length && older(heap[left] as T, heap[smallest] as T)) smallest = left;
      if (right < heap.length && older(heap[right] as T, heap[smallest] as T)) smallest = right;
      if (smallest === parent) return;
      [heap[smallest], heap[parent]] = [heap[parent] as T, heap[smallest] as T];
      parent = smallest;
    }
  }
}

export class StreamJoin {
  private readonly withinMs: number;
  private readonly watermarkMs: number;
  private readonly leftOuter: boolean;
  private readonly maxStateRecords: number;
  private readonly stream: string;
  /** The outcome schema's field names: the outcome columns of an unmatched (left-outer) row. */
  private readonly outcomeFieldNames: string[];

  private readonly predictions = new BufferedSide<BufferedPrediction>();
  private readonly outcomes = new BufferedSide<BufferedOutcome>();
  private watermark: number | null = null;
  private maxPredictionTime: number | null = null;
  private maxOutcomeTime: number | null = null;
  private lateRecords = 0;
  private evictedRecords = 0;
  private unkeyedRecords = 0;

  /** @throws MLSHIP_ERR_CONFIG_INVALID for a bound, watermark, type or state limit that is not valid */
  constructor(spec: JoinSpec, options: { stream: string }) {
    this.stream = options.stream;
    if (!isFiniteNumber(spec.withinMs) || spec.withinMs < 0) {
      throw configError(`join.withinMs must be a number of ms >= 0, got ${String(spec.withinMs)}`, "join.withinMs");
    }
    if (!isFiniteNumber(spec.watermarkMs) || spec.watermarkMs < 0) {
      throw configError(`join.watermarkMs must be a number of ms >= 0, got ${String(spec.watermarkMs)}`, "join.watermarkMs");
    }
    const type = spec.type ?? "inner";
    if (type !== "inner" && type !== "leftOuter") throw configError(`join.type must be inner or leftOuter, got ${String(type)}`, "join.type");
    const maxStateRecords = spec.maxStateRecords ?? DEFAULT_MAX_STATE_RECORDS;
    if (!Number.isInteger(maxStateRecords) || maxStateRecords < 1) {
      throw configError(`join.maxStateRecords must be a positive integer, got ${String(maxStateRecords)}`, "join.maxStateRecords");
    }
    this.withinMs = spec.withinMs;
    this.watermarkMs = spec.watermarkMs;
    this.leftOuter = type === "leftOuter";
    this.maxStateRecords = maxStateRecords;
    this.outcomeFieldNames = (spec.schema?.fields ?? []).map((field) => field.name);
  }

  /**
   * Feeds one micro-batch of each side; returns the joined rows to emit now (matches, and with `leftOuter` the
   * predictions that expired unmatched). The batch id is not part of any row id: a pair has one id whenever found.
   */
  process(predictions: readonly ScoredRecord[], outcomes: readonly StreamRecord[], _batchId: number): OutputRow[] {
    const watermarkAtStart = this.watermark;
    const isLate = (eventTime: number): boolean => watermarkAtStart !== null && eventTime < watermarkAtStart;
    const rows: OutputRow[] = [];

    for (const record of predictions) {
      if (!isFiniteNumber(record.eventTime)) continue;
      if (this.maxPredictionTime === null || record.eventTime > this.maxPredictionTime) this.maxPredictionTime = record.eventTime;
      if (record.key === null) {
        this.unkeyedRecords += 1;
        continue;
      }
      if (isLate(record.eventTime)) {
        this.lateRecords += 1;
        continue;
      }
      if (this.predictions.has(record.id)) continue;
      const prediction = this.bufferPrediction(record, record.key);
      for (const outcome of this.outcomes.withKey(prediction.key)) {
        if (this.matches(prediction, outcome)) rows.push(this.joinedRow(prediction, outcome));
      }
    }

    for (const record of outcomes) {
      if (!isFiniteNumber(record.eventTime)) continue;
      if (this.maxOutcomeTime === null || record.eventTime > this.maxOutcomeTime) this.maxOutcomeTime = record.eventTime;
      if (record.key === null) {
        this.unkeyedRecords += 1;
        continue;
      }
      if (isLate(record.eventTime)) {
        this.lateRecords += 1;
        continue;
      }
      if (this.outcomes.has(record.id)) continue;
      const outcome: BufferedOutcome = { id: record.id, key: record.key, eventTime: record.eventTime, fields: { ...record.fields } };
      this.outcomes.add(outcome);
      for (const prediction of this.predictions.withKey(outcome.key)) {
        if (this.matches(prediction, outcome)) rows.push(this.joinedRow(prediction, outcome));
      }
    }

    this.advanceWatermark();
    rows.push(...this.evictExpired());
    this.enforceStateBound();
    return rows;
  }

  state(): OperatorState {
    return { stateRecords: this.predictions.size + this.outcomes.size, lateRecords: this.lateRecords, watermark: this.watermark };
  }

  /** Buffered records evicted because the state exceeded `maxStateRecords`, since the stream started. */
  evicted(): number {
    return this.evictedRecords;
  }

  /** Records skipped because their key was null (they cannot match), since the stream started. */
  unkeyed(): number {
    return this.unkeyedRecords;
  }

  /** The state as plain JSON, for the checkpoint. */
  snapshot(): unknown {
    const snapshot: JoinSnapshot = {
      format: SNAPSHOT_FORMAT,
      watermark: this.watermark,
      maxPredictionTime: this.maxPredictionTime,
      maxOutcomeTime: this.maxOutcomeTime,
      lateRecords: this.lateRecords,
      evicted: this.evictedRecords,
      unkeyed: this.unkeyedRecords,
      predictions: this.predictions.all().map((prediction) => ({ ...prediction })),
      outcomes: this.outcomes.all().map((outcome) => ({ ...outcome, fields: { ...outcome.fields } })),
    };
    return snapshot;
  }

  /**
   * Replaces the state with a snapshot's.
   * @throws MLSHIP_ERR_STREAM_CHECKPOINT when the snapshot is malformed
   */
  restore(snapshot: unknown): void {
    const parsed = parseSnapshot(snapshot);
    this.predictions.clear();
    this.outcomes.clear();
    for (const prediction of parsed.predictions) this.predictions.add({ ...prediction });
    for (const outcome of parsed.outcomes) this.outcomes.add({ ...outcome, fields: { ...outcome.fields } });
    this.watermark = parsed.watermark;
    this.maxPredictionTime = parsed.maxPredictionTime;
    this.maxOutcomeTime = parsed.maxOutcomeTime;
    this.lateRecords = parsed.lateRecords;
    this.evictedRecords = parsed.evicted;
    this.unkeyedRecords = parsed.unkeyed;
  }

  /** For logs: `join (stream orders)`. */
  toString(): string {
    return `join (stream ${this.stream})`;
  }

  private bufferPrediction(record: ScoredRecord, key: string): BufferedPrediction {
    // The engine may attach these for the feedback loop; they are not part of the ScoredRecord contract.
    const attached = record as unknown as { requestId?: unknown; row?: unknown };
    const prediction: BufferedPrediction = {
      id: record.id,
      key,
      eventTime: record.eventTime,
      model: record.model,
      version: record.version,
      outputs: plainJson(record.outputs ?? {}) as Record<string, unknown>,
      requestId: typeof attached.requestId === "string" ? attached.requestId : null,
      row: typeof attached.row === "number" || typeof attached.row === "string" ? attached.row : null,
      matched: false,
    };
    this.predictions.add(prediction);
    return prediction;
  }

  private matches(prediction: BufferedPrediction, outcome: BufferedOutcome): boolean {
    if (prediction.eventTime <= outcome.eventTime && outcome.eventTime <= prediction.eventTime + this.withinMs) {
      prediction.matched = true;
      return true;
    }
    return false;
  }

  private joinedRow(prediction: BufferedPrediction, outcome: BufferedOutcome | null): OutputRow {
    const fields: Record<string, unknown> = {
      key: prediction.key,
      prediction_id: prediction.id,
      outcome_id: outcome?.id ?? null,
      model: prediction.model,
      version: prediction.version,
      prediction_time: new Date(prediction.eventTime).toISOString(),
      outcome_time: outcome === null ? null : new Date(outcome.eventTime).toISOString(),
    };
    const taken = new Set(BASE_COLUMNS);
    if (prediction.requestId !== null) fields.request_id = prediction.requestId;
    if (prediction.row !== null) fields.row = prediction.row;
    for (const [name, value] of Object.entries(prediction.outputs)) fields[freeColumn(taken, name, "prediction_")] = value;
    if (outcome === null) {
      for (const name of this.outcomeFieldNames) fields[freeColumn(taken, name, "outcome_")] = null;
    } else {
      for (const [name, value] of Object.entries(outcome.fields)) fields[freeColumn(taken, name, "outcome_")] = value;
    }
    return { id: `${prediction.id}|${outcome?.id ?? ""}`, fields };
  }

  private advanceWatermark(): void {
    const sides = [this.maxPredictionTime, this.maxOutcomeTime].filter((time): time is number => time !== null);
    if (sides.length === 0) return;
    const candidate = Math.min(...sides) - this.watermarkMs;
    if (this.watermark === null || candidate > this.watermark) this.watermark = candidate;
  }

  /** Drops the records that can no longer match; returns the left-outer rows of predictions that expired unmatched. */
  private evictExpired(): OutputRow[] {
    const watermark = this.watermark;
    if (watermark === null) return [];
    const rows: OutputRow[] = [];
    for (let oldest = this.predictions.oldest(); oldest !== undefined && watermark > oldest.eventTime + this.withinMs; oldest = this.predictions.oldest()) {
      this.predictions.removeOldest();
      if (this.leftOuter && !oldest.matched) rows.push(this.joinedRow(oldest, null));
    }
    for (let oldest = this.outcomes.oldest(); oldest !== undefined && watermark > oldest.eventTime; oldest = this.outcomes.oldest()) {
      this.outcomes.removeOldest();
    }
    return rows;
  }

  /** Evicts the oldest buffered records (both sides, by event time) beyond `maxStateRecords`. */
  private enforceStateBound(): void {
    while (this.predictions.size + this.outcomes.size > this.maxStateRecords) {
      const prediction = this.predictions.oldest();
      const outcome = this.outcomes.oldest();
      if (prediction !== undefined && (outcome === undefined || older(prediction, outcome))) this.predictions.removeOldest();
      else this.outcomes.removeOldest();
      this.evictedRecords += 1;
    }
  }
}

function parseSnapshot(snapshot: unknown): JoinSnapshot {
  const candidate = snapshot as Partial<JoinSnapshot> | null;
  if (typeof candidate !== "object" || candidate === null || candidate.format !== SNAPSHOT_FORMAT) {
    throw checkpointError("not a join snapshot of a known format");
  }
  const numberOrNull = (value: unknown): boolean => value === null || isFiniteNumber(value);
  const isRecordLike = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);
  const predictionValid = (value: unknown): boolean =>
    isRecordLike(value) &&
    typeof value.id === "string" &&
    typeof value.key === "string" &&
    isFiniteNumber(value.eventTime) &&
    typeof value.model === "string" &&
    typeof value.version === "number" &&
    isRecordLike(value.outputs) &&
    (value.requestId === null || typeof value.requestId === "string") &&
    (value.row === null || typeof value.row === "number" || typeof value.row === "string") &&
    typeof value.matched === "boolean";
  const outcomeValid = (value: unknown): boolean =>
    isRecordLike(value) && typeof value.id === "string" && typeof value.key === "string" && isFiniteNumber(value.eventTime) && isRecordLike(value.fields);
  if (
    !numberOrNull(candidate.watermark) ||
    !numberOrNull(candidate.maxPredictionTime) ||
    !numberOrNull(candidate.maxOutcomeTime) ||
    !isFiniteNumber(candidate.lateRecords) ||
    !isFiniteNumber(candidate.evicted) ||
    !isFiniteNumber(candidate.unkeyed) ||
    !Array.isArray(candidate.predictions) ||
    !candidate.predictions.every(predictionValid) ||
    !Array.isArray(candidate.outcomes) ||
    !candidate.outcomes.every(outcomeValid)
  ) {
    throw checkpointError("its fields are malformed");
  }
  return candidate as JoinSnapshot;
}
