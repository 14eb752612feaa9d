/**
 * Aggregations over the scored stream, as Spark Structured Streaming's `groupBy(window(...), ...)` in append output
 * mode: per micro-batch (`batch` windows), or over event-time windows (tumbling, sliding) closed by a watermark.
 *
 * Event-time rules (per micro-batch, Spark's):
 * - the watermark is the max event time seen so far minus `watermarkMs`; it is recomputed after each batch (the
 *   batch that moves it is still counted in full) and never goes back;
 * - a record whose event time is behind the watermark as it stood when the batch started is late: counted in
 *   `lateRecords` and dropped;
 * - a window `[start, end)` is emitted once, in the batch after which the watermark is >= `end`, then forgotten.
 *
 * Redelivery: the engine saves this state, then the source commits. A crash in between makes the source redeliver
 * records already counted here, so each open window keeps the ids of the records counted in it and a repeat is
 * skipped. A record's id is kept in its latest window only (the one starting at `floor(t / slide) * slide`): that
 * window is the last of the record's windows to close, and once it closes the record is late anyway.
 */
import { MlshipError } from "../core/index.js";
import { columnName, compileFieldPath } from "./fields.js";
import type { AggregateMetric, AggregationSpec, OperatorState, OutputRow, ScoredRecord } from "./types.js";

type FieldGetter = (record: ScoredRecord) => unknown;

interface CompiledMetric {
  fn: AggregateMetric["fn"];
  column: string;
  /** Null for `count`, which counts records. */
  read: FieldGetter | null;
}

/** Running totals of one metric in one cell: only finite numbers count towards them. */
interface MetricTotals {
  numbers: number;
  sum: number;
  min: number | null;
  max: number | null;
}

/** One (window, group) cell. */
interface GroupCell {
  groupValues: unknown[];
  records: number;
  totals: MetricTotals[];
}

interface WindowState {
  /** By the group key's JSON. */
  cells: Map<string, GroupCell>;
  /** Ids of the records whose latest window this is, counted already. */
  ids: Set<string>;
}

/** Columns every windowed / batch row has; group and metric columns may not take these names. */
const RESERVED_COLUMNS = ["aggregation", "window_start", "window_end", "batch_id", "instance", "records"];

const SNAPSHOT_FORMAT = 1;

interface AggregationSnapshot {
  format: number;
  /** What the state was built from: a restore into a differently shaped aggregation is refused. */
  shape: string;
  watermark: number | null;
  maxEventTime: number | null;
  lateRecords: number;
  windows: Array<{
    start: number;
    ids: string[];
    cells: Array<{ key: string; groupValues: unknown[]; records: number; totals: MetricTotals[] }>;
  }>;
}

function configError(message: string, field: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_CONFIG_INVALID", message, { field });
}

function checkpointError(name: string, why: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_STREAM_CHECKPOINT", `aggregation ${name}: the checkpointed state cannot be restored: ${why}`, {
    field: `aggregations.${name}`,
  });
}

function isPositiveInteger(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value > 0;
}

/** A group value as it goes into the key and the row: JSON-friendly (typed arrays become arrays, missing is null). */
function groupValue(value: unknown): unknown {
  if (value === undefined) return null;
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) return Array.from(value as unknown as ArrayLike<unknown>);
  return value;
}

function toIso(ms: number): string {
  return new Date(ms).toISOString();
}

function emptyTotals(): MetricTotals {
  return { numbers: 0, sum: 0, min: null, max: null };
}

function addValue(totals: MetricTotals, value: unknown): void {
  if (typeof value !== "number" || !Number.isFinite(value)) return;
  totals.numbers += 1;
  totals.sum += value;
  totals.min = totals.min === null ? value : Math.min(totals.min, value);
  totals.max = totals.max === null ? value : Math.max(totals.max, value);
}

function metricValue(metric: CompiledMetric, cell: GroupCell, totals: MetricTotals): number | null {
  switch (metric.fn) {
    case "count":
      return cell.records;
    case "sum":
      return totals.numbers === 0 ? null : totals.sum;
    case "mean":
      return totals.numbers === 0 ? null : totals.sum / totals.numbers;
    case "min":
      return totals.min;
    case "max":
      return totals.max;
  }
}

export class WindowAggregation {
  readonly name: string;
  private readonly kind: AggregationSpec["window"]["kind"];
  private readonly sizeMs: number;
  private readonly slideMs: number;
  private readonly watermarkMs: number;
  private readonly instance: string;
  private readonly stream: string;
  private readonly groupColumns: string[];
  private readonly groupReaders: FieldGetter[];
  private readonly metrics: CompiledMetric[];
  private readonly shape: string;

  private readonly windows = new Map<number, WindowState>();
  private watermark: number | null = null;
  private maxEventTime: number | null = null;
  private lateRecords = 0;

  /** @throws MLSHIP_ERR_CONFIG_INVALID for a window, watermark, path or column name that is not valid */
  constructor(spec: AggregationSpec, options: { stream: string; instance: string }) {
    if (typeof spec.name !== "string" || spec.name === "") throw configError("an aggregation needs a name", "aggregations.name");
    this.name = spec.name;
    this.stream = options.stream;
    this.instance = options.instance;
    const at = `aggregations.${spec.name}`;

    const window = spec.window;
    this.kind = window.kind;
    if (window.kind === "batch") {
      this.sizeMs = 0;
      this.slideMs = 0;
    } else if (window.kind === "tumbling" || window.kind === "sliding") {
      if (!isPositiveInteger(window.sizeMs)) {
        throw configError(`aggregation ${spec.name}: window.sizeMs must be a positive integer (ms), got ${String(window.sizeMs)}`, `${at}.window.sizeMs`);
      }
      this.sizeMs = window.sizeMs;
      if (window.kind === "tumbling") {
        if (window.slideMs !== undefined && window.slideMs !== window.sizeMs) {
          throw configError(`aggregation ${spec.name}: a tumbling window has no slideMs (use a sliding window)`, `${at}.window.slideMs`);
        }
        this.slideMs = window.sizeMs;
      } else {
        if (!isPositiveInteger(window.slideMs) || window.slideMs > window.sizeMs) {
          throw configError(
            `aggregation ${spec.name}: window.slideMs must be a positive integer (ms) no larger than sizeMs (${window.sizeMs}), got ${String(window.slideMs)}`,
            `${at}.window.slideMs`,
          );
        }
        this.slideMs = window.slideMs;
      }
    } else {
      throw configError(`aggregation ${spec.name}: window.kind must be batch, tumbling or sliding, got ${String(window.kind)}`, `${at}.window.kind`);
    }

    if (window.kind !== "batch" && !(typeof spec.watermarkMs === "number" && Number.isFinite(spec.watermarkMs) && spec.watermarkMs >= 0)) {
      throw configError(`aggregation ${spec.name}: watermarkMs must be a number of ms >= 0, got ${String(spec.watermarkMs)}`, `${at}.watermarkMs`);
    }
    this.watermarkMs = window.kind === "batch" ? 0 : spec.watermarkMs;

    const taken = new Set(RESERVED_COLUMNS);
    const claim = (column: string, field: string): void => {
      if (taken.has(column)) {
        throw configError(`aggregation ${spec.name}: column ${JSON.stringify(column)} is used twice (or is reserved); name the metric with \`as\``, field);
      }
      taken.add(column);
    };

    this.groupColumns = [];
    this.groupReaders = [];
    spec.groupBy.forEach((path, index) => {
      const field = `${at}.groupBy[${index}]`;
      this.groupReaders.push(compileFieldPath(path, field));
      claim(path, field);
      this.groupColumns.push(path);
    });

    this.metrics = spec.metrics.map((metric, index) => {
      const field = `${at}.metrics[${index}]`;
      if (!["count", "sum", "mean", "min", "max"].includes(metric.fn)) {
        throw configError(`aggregation ${spec.name}: metric fn must be count, sum, mean, min or max, got ${String(metric.fn)}`, `${field}.fn`);
      }
      let read: FieldGetter | null = null;
      if (metric.fn === "count") {
        if (metric.field !== undefined) {
          throw configError(`aggregation ${spec.name}: count counts records and takes no field`, `${field}.field`);
        }
      } else {
        if (typeof metric.field !== "string") throw configError(`aggregation ${spec.name}: metric ${metric.fn} needs a field`, `${field}.field`);
        read = compileFieldPath(metric.field, `${field}.field`);
      }
      const column = metric.as ?? (metric.fn === "count" ? "count" : `${metric.fn}_${columnName(metric.field ?? "")}`);
      if (column === "") throw configError(`aggregation ${spec.name}: metric column name is empty`, `${field}.as`);
      claim(column, metric.as === undefined ? field : `${field}.as`);
      return { fn: metric.fn, column, read };
    });

    // A changed field under the same column means different totals, so the shape names fields too.
    this.shape = JSON.stringify({
      window: { kind: this.kind, sizeMs: this.sizeMs, slideMs: this.slideMs },
      groupBy: this.groupColumns,
      metrics: spec.metrics.map((metric, index) => [metric.fn, metric.field ?? null, this.metrics[index]?.column]),
    });
  }

  /** Feeds one micro-batch's scored records; returns the rows to emit now (batch groups, or windows just closed). */
  process(records: readonly ScoredRecord[], batchId: number): OutputRow[] {
    if (this.kind === "batch") return this.processBatch(records, batchId);

    const watermarkAtStart = this.watermark;
    for (const record of records) {
      const eventTime = record.eventTime;
      if (typeof eventTime !== "number" || !Number.isFinite(eventTime)) continue;
      if (this.maxEventTime === null || eventTime > this.maxEventTime) this.maxEventTime = eventTime;
      if (watermarkAtStart !== null && eventTime < watermarkAtStart) {
        this.lateRecords += 1;
        continue;
      }
      const latestStart = Math.floor(eventTime / this.slideMs) * this.slideMs;
      const latest = this.windowAt(latestStart);
      if (latest.ids.has(record.id)) continue;
      latest.ids.add(record.id);
      const groupValues = this.groupReaders.map((read) => groupValue(read(record)));
      const key = JSON.stringify(groupValues);
      const metricValues = this.metrics.map((metric) => (metric.read === null ? undefined : metric.read(record)));
      for (let start = latestStart; start + this.sizeMs > eventTime; start -= this.slideMs) {
        this.count(this.windowAt(start), key, groupValues, metricValues);
      }
    }

    if (this.maxEventTime !== null) {
      const candidate = this.maxEventTime - this.watermarkMs;
      if (this.watermark === null || candidate > this.watermark) this.watermark = candidate;
    }
    return this.emitClosed();
  }

  state(): OperatorState {
    let cells = 0;
    let ids = 0;
    for (const window of this.windows.values()) {
      cells += window.cells.size;
      ids += window.ids.size;
    }
    return { stateRecords: cells + ids, lateRecords: this.lateRecords, watermark: this.watermark };
  }

  /** The state as plain JSON, for the checkpoint. */
  snapshot(): unknown {
    const snapshot: AggregationSnapshot = {
      format: SNAPSHOT_FORMAT,
      shape: this.shape,
      watermark: this.watermark,
      maxEventTime: this.maxEventTime,
      lateRecords: this.lateRecords,
      windows: [...this.windows.entries()].map(([start, window]) => ({
        start,
        ids: [...window.ids],
        cells: [...window.cells.entries()].map(([key, cell]) => ({
          key,
          groupValues: cell.groupValues,
          records: cell.records,
          totals: cell.totals.map((totals) => ({ ...totals })),
        })),
      })),
    };
    return snapshot;
  }

  /**
   * Replaces the state with a snapshot's.
   * @throws MLSHIP_ERR_STREAM_CHECKPOINT when the snapshot is malformed or was taken with another window, grouping or metrics
   */
  restore(snapshot: unknown): void {
    const parsed = this.parseSnapshot(snapshot);
    this.windows.clear();
    for (const window of parsed.windows) {
      const cells = new Map<string, GroupCell>();
      for (const cell of window.cells) {
        cells.set(cell.key, { groupValues: cell.groupValues, records: cell.records, totals: cell.totals.map((totals) => ({ ...totals })) });
      }
      this.windows.set(window.start, { cells, ids: new Set(window.ids) });
    }
    this.watermark = parsed.watermark;
    this.maxEventTime = parsed.maxEventTime;
    this.lateRecords = parsed.lateRecords;
  }

  private parseSnapshot(snapshot: unknown): AggregationSnapshot {
    const candidate = snapshot as Partial<AggregationSnapshot> | null;
    if (typeof candidate !== "object" || candidate === null || candidate.format !== SNAPSHOT_FORMAT) {
      throw checkpointError(this.name, "not an aggregation snapshot of a known format");
    }
    if (candidate.shape !== this.shape) {
      throw checkpointError(this.name, "it was built with another window, groupBy or metrics; start from a new checkpoint");
    }
    const isNumberOrNull = (value: unknown): boolean => value === null || (typeof value === "number" && Number.isFinite(value));
    const totalsValid = (totals: unknown): boolean => {
      const t = totals as Partial<MetricTotals> | null;
      return typeof t === "object" && t !== null && typeof t.numbers === "number" && typeof t.sum === "number" && isNumberOrNull(t.min) && isNumberOrNull(t.max);
    };
    const windowsValid =
      Array.isArray(candidate.windows) &&
      candidate.windows.every(
        (window) =>
          typeof window === "object" &&
          window !== null &&
          typeof window.start === "number" &&
          Array.isArray(window.ids) &&
          window.ids.every((id) => typeof id === "string") &&
          Array.isArray(window.cells) &&
          window.cells.every(
            (cell) =>
              typeof cell === "object" &&
              cell !== null &&
              typeof cell.key === "string" &&
              Array.isArray(cell.groupValues) &&
              typeof cell.records === "number" &&
              Array.isArray(cell.totals) &&
              cell.totals.length === this.metrics.length &&
              cell.totals.every(totalsValid),
          ),
      );
    if (!windowsValid || !isNumberOrNull(candidate.watermark) || !isNumberOrNull(candidate.maxEventTime) || typeof candidate.lateRecords !== "number") {
      throw checkpointError(this.name, "its fields are malformed");
    }
    return candidate as AggregationSnapshot;
  }

  private windowAt(start: number): WindowState {
    let window = this.windows.get(start);
    if (window === undefined) {
      window = { cells: new Map(), ids: new Set() };
      this.windows.set(start, window);
    }
    return window;
  }

  private count(window: WindowState, key: string, groupValues: unknown[], metricValues: unknown[]): void {
    let cell = window.cells.get(key);
    if (cell === undefined) {
      cell = { groupValues, records: 0, totals: this.metrics.map(emptyTotals) };
      window.cells.set(key, cell);
    }
    cell.records += 1;
    metricValues.forEach((value, index) => {
      const totals = cell.totals[index];
      if (totals !== undefined) addValue(totals, value);
    });
  }

  private groupAndMetricFields(cell: GroupCell): Record<string, unknown> {
    const fields: Record<string, unknown> = {};
    this.groupColumns.forEach((column, index) => {
      fields[column] = cell.groupValues[index] ?? null;
    });
    this.metrics.forEach((metric, index) => {
      fields[metric.column] = metricValue(metric, cell, cell.totals[index] ?? emptyTotals());
    });
    fields.records = cell.records;
    fields.instance = this.instance;
    return fields;
  }

  private processBatch(records: readonly ScoredRecord[], batchId: number): OutputRow[] {
    const window: WindowState = { cells: new Map(), ids: new Set() };
    for (const record of records) {
      // A record repeated within one batch (a source hiccup) counts once, as with windows.
      if (window.ids.has(record.id)) continue;
      window.ids.add(record.id);
      const groupValues = this.groupReaders.map((read) => groupValue(read(record)));
      const metricValues = this.metrics.map((metric) => (metric.read === null ? undefined : metric.read(record)));
      this.count(window, JSON.stringify(groupValues), groupValues, metricValues);
    }
    return [...window.cells.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, cell]) => ({
        id: `${this.name}:batch:${batchId}:${key}:${this.instance}`,
        fields: { aggregation: this.name, batch_id: batchId, ...this.groupAndMetricFields(cell) },
      }));
  }

  /** Rows of the windows the watermark has passed, oldest first; their state (cells and ids) is dropped. */
  private emitClosed(): OutputRow[] {
    const watermark = this.watermark;
    if (watermark === null) return [];
    const closed = [...this.windows.keys()].filter((start) => start + this.sizeMs <= watermark).sort((a, b) => a - b);
    const rows: OutputRow[] = [];
    for (const start of closed) {
      const window = this.windows.get(start);
      this.windows.delete(start);
      if (window === undefined) continue;
      const keys = [...window.cells.keys()].sort();
      for (const key of keys) {
        const cell = window.cells.get(key);
        if (cell === undefined) continue;
        rows.push({
          id: `${this.name}:${start}:${key}:${this.instance}`,
          fields: {
            aggregation: this.name,
            window_start: toIso(start),
            window_end: toIso(start + this.sizeMs),
            ...this.groupAndMetricFields(cell),
          },
        });
      }
    }
    return rows;
  }

  /** For logs: `aggregation by_label (stream orders)`. */
  toString(): string {
    return `aggregation ${this.name} (stream ${this.stream})`;
  }
}
