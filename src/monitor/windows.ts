/**
 * Production data against a version's reference over several window sizes at once (default 1h, 12h, 1d).
 *
 * - **Tumbling** windows are aligned to the Unix epoch (UTC): `[floor(t / size) * size, + size)`, so a 1d window
 *   runs from 00:00 to 24:00 UTC and windows of separate runs line up.
 * - **Sliding** windows are `size` long and start every `step` (default size / 4: 15m for 1h, 3h for 12h, 6h for
 *   1d), at multiples of `step` since the epoch. The first starts at the step boundary at or before the first
 *   timestamp; the last ends at the step boundary after the last timestamp (windows reaching further would only
 *   repeat the tail with fewer rows). `step` must be at most `size`.
 * - Every window from the first timestamp's to the last timestamp's is kept, empty ones too: a row count of 0 is
 *   what the row-count-drop rule looks for. The last window may be incomplete when the data stops inside it.
 * - A window with fewer than `minRows` (default 30) rows gets its profile but no drift, and `insufficient: true`:
 *   a test on a handful of rows says nothing.
 *
 * Time column: numbers are epoch milliseconds, or epoch seconds when every number is below 1e11 (1e11 ms is
 * March 1973, 1e11 s is the year 5138, so the two cannot be confused for real data). Strings are ISO-8601 dates
 * `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS[.fff]]` or the same with a space for the `T`, in UTC unless they end with
 * `Z` or an offset (`+02:00`, `+0200`, `-05`).
 */
import { MlshipError } from "../core/index.js";
import { columnsOf, datasetDrift, referenceFromProfile } from "./drift.js";
import type { MethodOverride } from "./drift.js";
import { profileTable } from "./profile/index.js";
import type { WindowProfile } from "./store.js";
import type { Cell, ColumnTable, DatasetDrift, DatasetProfile, FeatureKind, ReferenceProfile } from "./types.js";

export type WindowMode = "tumbling" | "sliding";

export const DEFAULT_WINDOW_SIZES: readonly string[] = ["1h", "12h", "1d"];
/** Windows with fewer rows get no drift verdict. */
export const DEFAULT_MIN_WINDOW_ROWS = 30;
/** Sliding windows start every size / this. */
export const SLIDING_STEPS_PER_WINDOW = 4;
/** Below this every numeric timestamp is read as epoch seconds. */
export const EPOCH_SECONDS_BELOW = 1e11;

const UNIT_MS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/** "30m", "1h", "12h", "1d", "7d" (also "s", "ms", "w") -> milliseconds. */
export function parseWindowSize(text: string): number {
  const match = /^\s*(\d+)\s*(ms|s|m|h|d|w)\s*$/.exec(String(text));
  const amount = match === null ? Number.NaN : Number(match[1]);
  const unit = match === null ? undefined : UNIT_MS[match[2] as string];
  if (unit === undefined || !Number.isSafeInteger(amount) || amount <= 0) {
    throw new MlshipError(
      "MLSHIP_ERR_INPUT_INVALID",
      `window size ${JSON.stringify(text)} is not a positive whole number followed by a unit (ms, s, m, h, d, w), e.g. "30m", "1h", "12h", "1d"`,
      { field: "windows" },
    );
  }
  return amount * unit;
}

export interface TimeWindow {
  /** Epoch ms, inclusive. */
  start: number;
  /** Epoch ms, exclusive. */
  end: number;
  /** Indexes of the rows whose timestamp falls in [start, end). */
  rows: number[];
}

function checkDuration(ms: number, what: string): void {
  if (!Number.isFinite(ms) || ms <= 0 || !Number.isInteger(ms)) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${what} must be a positive whole number of milliseconds, got ${ms}`, { field: "windows" });
  }
}

/** The windows of `size` ms covering the timestamps (epoch ms), each with its row indexes (see the file's doc). */
export function assignWindows(timestamps: readonly number[], size: number, mode: WindowMode = "tumbling", step?: number): TimeWindow[] {
  checkDuration(size, "window size");
  const stride = mode === "tumbling" ? size : (step ?? Math.max(1, Math.floor(size / SLIDING_STEPS_PER_WINDOW)));
  checkDuration(stride, "window step");
  if (stride > size) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `window step (${stride} ms) must not exceed the window size (${size} ms)`, { field: "windows" });
  }
  if (timestamps.length === 0) return [];
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  timestamps.forEach((t, row) => {
    if (!Number.isFinite(t)) throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `row ${row}: timestamp ${t} is not a finite number`, { field: "timestamp" });
    if (t < min) min = t;
    if (t > max) max = t;
  });
  const first = Math.floor(min / stride);
  // Sliding: the last window ends by the step boundary after `max`, but must still hold `max` when size is not
  // a multiple of the step.
  const last =
    mode === "tumbling"
      ? Math.floor(max / stride)
      : Math.max(first, Math.floor(max / stride) + 1 - Math.ceil(size / stride), Math.floor((max - size) / stride) + 1);
  const windows: TimeWindow[] = [];
  for (let k = first; k <= last; k++) windows.push({ start: k * stride, end: k * stride + size, rows: [] });
  timestamps.forEach((t, row) => {
    // Windows k with k*stride <= t < k*stride + size.
    const from = Math.max(first, Math.floor((t - size) / stride) + 1);
    const to = Math.min(last, Math.floor(t / stride));
    for (let k = from; k <= to; k++) (windows[k - first] as TimeWindow).rows.push(row);
  });
  return windows;
}

const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$/;

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/** An ISO-8601 (or `YYYY-MM-DD HH:MM:SS`) text as epoch ms, UTC unless it carries an offset; undefined if not one. */
export function parseTimestampText(text: string): number | undefined {
  const match = ISO_DATE.exec(text.trim());
  if (match === null) return undefined;
  const [year, month, day, hour, minute, second] = [1, 2, 3, 4, 5, 6].map((i) => Number(match[i] ?? 0)) as [number, number, number, number, number, number];
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month) || hour > 23 || minute > 59 || second > 59) return undefined;
  const fraction = match[7] === undefined ? 0 : Math.round(Number(`0.${match[7]}`) * 1000);
  let offsetMinutes = 0;
  const zone = match[8];
  if (zone !== undefined && zone.toUpperCase() !== "Z") {
    const digits = zone.slice(1).replace(":", "");
    const hours = Number(digits.slice(0, 2));
    const minutes = digits.length > 2 ? Number(digits.slice(2)) : 0;
    if (hours > 23 || minutes > 59) return undefined;
    offsetMinutes = (zone.startsWith("-") ? -1 : 1) * (hours * 60 + minutes);
  }
  const utc = Date.UTC(year, month - 1, day, hour, minute, second, fraction);
  // Date.UTC maps years 0-99 to 1900-1999; setUTCFullYear puts them back.
  const date = new Date(utc);
  date.setUTCFullYear(year);
  return date.getTime() - offsetMinutes * 60_000;
}

/** A time column as epoch ms (see the file's doc for the accepted forms); a bad cell names its row. */
export function parseTimestamps(cells: readonly Cell[], column: string): number[] {
  const numeric = cells.filter((c): c is number => typeof c === "number" && Number.isFinite(c));
  const seconds = numeric.length > 0 && numeric.every((n) => Math.abs(n) < EPOCH_SECONDS_BELOW);
  return cells.map((cell, row) => {
    let ms: number | undefined;
    if (typeof cell === "number" && Number.isFinite(cell)) ms = seconds ? cell * 1000 : cell;
    else if (typeof cell === "string") ms = parseTimestampText(cell);
    if (ms === undefined || !Number.isFinite(ms) || Number.isNaN(new Date(ms).getTime())) {
      throw new MlshipError(
        "MLSHIP_ERR_INPUT_INVALID",
        `time column "${column}", row ${row}: ${JSON.stringify(cell)} is not a timestamp (epoch ms or seconds, or ISO-8601 such as 2026-12-01T10:00:00Z or 2026-12-01 10:00:00)`,
        { field: column, details: { row } },
      );
    }
    return ms;
  });
}

/** One window's result: what gets stored and what the drift kinds are read from. */
export interface WindowResult {
  model: string;
  version: number;
  /** Window size label, e.g. "1h". */
  size: string;
  /** ISO-8601 UTC, start inclusive, end exclusive. */
  start: string;
  end: string;
  rows: number;
  /** The window's feature profile, on the reference's kinds and histogram edges. */
  features: DatasetProfile;
  /** Its prediction profile, when prediction outputs were given. */
  predictions: DatasetProfile | undefined;
  /** Drift against the reference; undefined when `insufficient`. */
  drift: DatasetDrift | undefined;
  predictionDrift: DatasetDrift | undefined;
  /** Fewer rows than the minimum: profiled, not tested. */
  insufficient: boolean;
}

export interface WindowSeries {
  size: string;
  sizeMs: number;
  /** Start-to-start distance: the size for tumbling windows, the step for sliding ones. */
  stepMs: number;
  mode: WindowMode;
  windows: WindowResult[];
}

export interface WindowedDriftOptions {
  reference: ReferenceProfile;
  /** The production rows: the reference's feature columns and the time column. */
  table: ColumnTable;
  timeColumn: string;
  /** Size labels, default 1h, 12h, 1d. */
  sizes?: readonly string[];
  mode?: WindowMode;
  /** Sliding step per size label (e.g. `{ "1h": "15m" }`); default size / 4. */
  steps?: Readonly<Record<string, string>>;
  /** Per-feature test overrides, as in `datasetDrift`. */
  methods?: Record<string, MethodOverride>;
  shareThreshold?: number;
  /** Windows with fewer rows get no drift verdict. Default 30. */
  minRows?: number;
  /** The model's outputs on the same rows (row r of `table` is row r here), tested against the reference's predictions. */
  predictions?: ColumnTable;
}

function pickRows(columns: readonly Cell[][], names: readonly string[], rows: readonly number[]): ColumnTable {
  return { columns: [...names], values: columns.map((cells) => rows.map((r) => cells[r] ?? null)), rows: rows.length };
}

function profileShape(profile: DatasetProfile): { kinds: Record<string, FeatureKind>; edges: Record<string, readonly number[]> } {
  const kinds: Record<string, FeatureKind> = {};
  const edges: Record<string, readonly number[]> = {};
  for (const column of profile.columns) {
    kinds[column.name] = column.kind;
    if (column.kind === "numeric") edges[column.name] = column.histogram.edges;
  }
  return { kinds, edges };
}

/** The columns of `table` that `profile` has, in the profile's order; a missing one is an error. */
function columnsFor(table: ColumnTable, profile: DatasetProfile, what: string): { names: string[]; columns: Cell[][] } {
  const names = profile.columns.map((c) => c.name);
  const missing = names.filter((n) => !table.columns.includes(n));
  if (missing.length > 0) {
    throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", `the ${what} lack${missing.length > 1 ? "" : "s"} column${missing.length > 1 ? "s" : ""} ${missing.map((m) => `"${m}"`).join(", ")} of the reference`, {
      field: missing[0],
    });
  }
  const byName = columnsOf(table, names);
  return { names, columns: names.map((n) => byName[n] ?? []) };
}

/**
 * Profiles and tests every window of every size: each window is profiled on the reference's kinds and numeric
 * histogram edges and, with at least `minRows` rows, compared with the reference by `datasetDrift`.
 */
export function windowedDrift(options: WindowedDriftOptions): WindowSeries[] {
  const { reference, table, timeColumn } = options;
  const timeIndex = table.columns.indexOf(timeColumn);
  if (timeIndex < 0) throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", `the data has no time column "${timeColumn}"`, { field: timeColumn });
  const timestamps = parseTimestamps(table.values[timeIndex] ?? [], timeColumn);
  const mode = options.mode ?? "tumbling";
  const minRows = options.minRows ?? DEFAULT_MIN_WINDOW_ROWS;
  const features = columnsFor(table, reference.features, "data");
  const featureShape = profileShape(reference.features);
  const featureReference = referenceFromProfile(reference.features);
  let outputs: { names: string[]; columns: Cell[][]; shape: ReturnType<typeof profileShape>; reference: ReturnType<typeof referenceFromProfile> } | undefined;
  if (options.predictions !== undefined && reference.predictions !== undefined) {
    if (options.predictions.rows !== table.rows) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `predictions have ${options.predictions.rows} rows, the data ${table.rows}`, { field: "predictions" });
    }
    outputs = { ...columnsFor(options.predictions, reference.predictions, "predictions"), shape: profileShape(reference.predictions), reference: referenceFromProfile(reference.predictions) };
  }
  const drift = (ref: ReturnType<typeof referenceFromProfile>, current: ColumnTable, kinds: Record<string, FeatureKind>, methods?: Record<string, MethodOverride>): DatasetDrift =>
    datasetDrift(ref, columnsOf(current), {
      kinds,
      ...(methods === undefined ? {} : { methods }),
      ...(options.shareThreshold === undefined ? {} : { shareThreshold: options.shareThreshold }),
    });

  return (options.sizes ?? DEFAULT_WINDOW_SIZES).map((size) => {
    const sizeMs = parseWindowSize(size);
    const stepText = options.steps?.[size];
    const stepMs = mode === "tumbling" ? sizeMs : stepText === undefined ? Math.max(1, Math.floor(sizeMs / SLIDING_STEPS_PER_WINDOW)) : parseWindowSize(stepText);
    const windows = assignWindows(timestamps, sizeMs, mode, stepMs).map((window): WindowResult => {
      const current = pickRows(features.columns, features.names, window.rows);
      const insufficient = window.rows.length < minRows;
      const currentOutputs = outputs === undefined ? undefined : pickRows(outputs.columns, outputs.names, window.rows);
      return {
        model: reference.model,
        version: reference.version,
        size,
        start: new Date(window.start).toISOString(),
        end: new Date(window.end).toISOString(),
        rows: window.rows.length,
        features: profileTable(current, featureShape),
        predictions: currentOutputs === undefined || outputs === undefined ? undefined : profileTable(currentOutputs, outputs.shape),
        drift: insufficient ? undefined : drift(featureReference, current, featureShape.kinds, options.methods),
        predictionDrift: insufficient || currentOutputs === undefined || outputs === undefined ? undefined : drift(outputs.reference, currentOutputs, outputs.shape.kinds),
        insufficient,
      };
    });
    return { size, sizeMs, stepMs, mode, windows };
  });
}

/**
 * A window as `MonitorStore.saveWindow` takes it. `WindowProfile` has no field for the drift, but the store keeps
 * the whole object as the row's JSON body and `listWindows` returns it as stored, so the drift verdicts ride along.
 */
export type StoredWindow = WindowProfile & Pick<WindowResult, "rows" | "drift" | "predictionDrift" | "insufficient">;

export function toWindowProfile(result: WindowResult, createdAt: Date = new Date()): StoredWindow {
  return {
    model: result.model,
    version: result.version,
    size: result.size,
    start: result.start,
    end: result.end,
    createdAt: createdAt.toISOString(),
    features: result.features,
    predictions: result.predictions,
    rows: result.rows,
    drift: result.drift,
    predictionDrift: result.predictionDrift,
    insufficient: result.insufficient,
  };
}

/** A stored window back as a WindowResult (windows stored without drift read as insufficient). */
export function fromWindowProfile(window: WindowProfile): WindowResult {
  const stored = window as Partial<StoredWindow> & WindowProfile;
  return {
    model: window.model,
    version: window.version,
    size: window.size,
    start: window.start,
    end: window.end,
    rows: stored.rows ?? window.features.rows,
    features: window.features,
    predictions: window.predictions,
    drift: stored.drift ?? undefined,
    predictionDrift: stored.predictionDrift ?? undefined,
    insufficient: stored.insufficient ?? stored.drift === undefined,
  };
}
