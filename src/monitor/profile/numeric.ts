import { MlshipError } from "../../core/index.js";
import type { Cell, Histogram, NumericProfile } from "../types.js";
import { addToHistogram, doaneEdges, emptyHistogram, mergeHistograms } from "./histogram.js";
import { hashString, mergeSamples, Reservoir } from "./reservoir.js";
import { decodeSketch, encodeSketch, mergeSketchInto, newSketch, sketchQuantiles, type QuantileSketch } from "./sketch.js";

/** Distinct values are counted exactly up to this many; beyond it a column reports the cap ("many"). */
export const DISTINCT_CAP = 1000;
export const DEFAULT_SAMPLE_SIZE = 10_000;
export const DEFAULT_SEED = 20_240_601;
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

export interface NumericProfilerOptions {
  /**
   * Bin edges to count on (e.g. the reference's, for current data): the histogram is `rule: "fixed"` with
   * below/above counts. Unset: Doane's rule on all the values this profiler saw, computed in `finish()` (the
   * values are kept until then, 8 bytes each).
   */
  edges?: readonly number[];
  /** Reservoir size. Default 10000. */
  sampleSize?: number;
  /** Seed of the reservoir; mixed with the column name. */
  seed?: number;
}

/**
 * Turns a cell into a number for a numeric column: null, NaN and +-Infinity are missing (moments and sketches
 * cannot hold infinities), booleans are 0/1, numeric strings are parsed; any other string is an error.
 */
function toNumber(cell: Cell, column: string, row: number): number | null {
  if (typeof cell === "number") return Number.isFinite(cell) ? cell : null;
  if (cell === null || cell === undefined) return null;
  if (typeof cell === "boolean") return cell ? 1 : 0;
  const text = cell.trim();
  if (text === "" || /^[+-]?nan$/i.test(text)) return null;
  if (!DECIMAL.test(text) && !/^[+-]?(inf|infinity)$/i.test(text)) {
    throw new MlshipError(
      "MLSHIP_ERR_INPUT_DTYPE",
      `column "${column}" is numeric but row ${row + 1} holds the text ${JSON.stringify(cell.length > 40 ? `${cell.slice(0, 40)}...` : cell)}`,
      { field: column },
    );
  }
  const value = /^[+-]?inf/i.test(text) ? Infinity : Number(text);
  return Number.isFinite(value) ? value : null;
}

/** Accumulates one numeric column chunk by chunk; `finish()` gives its NumericProfile. */
export class NumericProfiler {
  readonly name: string;
  #count = 0;
  #nulls = 0;
  #mean = 0;
  #m2 = 0;
  #sum = 0;
  #min = Infinity;
  #max = -Infinity;
  #negatives = 0;
  #zeros = 0;
  #integer = true;
  #distinct: Set<number> | undefined = new Set<number>();
  readonly #sketch: QuantileSketch = newSketch();
  readonly #reservoir: Reservoir;
  readonly #histogram: Histogram | undefined;
  /** Every value, kept for Doane's edges when no edges were given. */
  #kept: Float64Array[] = [];
  #scratch = new Float64Array(0);
  #rowsSeen = 0;

  constructor(name: string, options: NumericProfilerOptions = {}) {
    this.name = name;
    const sampleSize = options.sampleSize ?? DEFAULT_SAMPLE_SIZE;
    if (!Number.isInteger(sampleSize) || sampleSize < 0) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `sample size must be a non-negative integer, got ${sampleSize}`);
    }
    this.#reservoir = new Reservoir(sampleSize, ((options.seed ?? DEFAULT_SEED) ^ hashString(name)) >>> 0);
    this.#histogram = options.edges === undefined ? undefined : emptyHistogram(options.edges, "fixed");
  }

  /** Adds a chunk of cells (rows in order). */
  add(cells: ArrayLike<Cell>): void {
    if (this.#scratch.length < cells.length) this.#scratch = new Float64Array(cells.length);
    const values = this.#scratch;
    let n = 0;
    for (let i = 0; i < cells.length; i++) {
      const value = toNumber(cells[i] as Cell, this.name, this.#rowsSeen + i);
      if (value === null) this.#nulls += 1;
      else values[n++] = value;
    }
    this.#rowsSeen += cells.length;
    this.addNumbers(values, n);
  }

  /** Adds finite numbers (no missing values): the fast path for callers that already hold a numeric array. */
  addNumbers(values: ArrayLike<number>, length = values.length): void {
    if (length === 0) return;
    // The chunk's own two-pass moments, then Chan's parallel update: as accurate as two passes over everything.
    let sum = 0;
    let min = this.#min;
    let max = this.#max;
    let negatives = 0;
    let zeros = 0;
    let integer = this.#integer;
    const sketch = this.#sketch;
    for (let i = 0; i < length; i++) {
      const v = values[i] as number;
      sum += v;
      if (v < min) min = v;
      if (v > max) max = v;
      if (v < 0) negatives += 1;
      else if (v === 0) zeros += 1;
      if (integer && !Number.isInteger(v)) integer = false;
      sketch.accept(v);
    }
    const chunkMean = sum / length;
    let chunkM2 = 0;
    for (let i = 0; i < length; i++) {
      const d = (values[i] as number) - chunkMean;
      chunkM2 += d * d;
    }
    const merged = chanMerge(this.#count, this.#mean, this.#m2, length, chunkMean, chunkM2);
    this.#count = merged.count;
    this.#mean = merged.mean;
    this.#m2 = merged.m2;
    this.#sum += sum;
    this.#min = min;
    this.#max = max;
    this.#negatives += negatives;
    this.#zeros += zeros;
    this.#integer = integer;

    const distinct = this.#distinct;
    if (distinct !== undefined) {
      for (let i = 0; i < length && distinct.size <= DISTINCT_CAP; i++) distinct.add(values[i] as number);
      if (distinct.size > DISTINCT_CAP) this.#distinct = undefined;
    }
    this.#reservoir.add(values, length);
    if (this.#histogram !== undefined) addToHistogram(this.#histogram, values, length);
    else this.#kept.push(copyOf(values, length));
  }

  /** Adds missing values (rows with no value). */
  addNulls(count: number): void {
    this.#nulls += count;
    this.#rowsSeen += count;
  }

  finish(): NumericProfile {
    let histogram = this.#histogram;
    if (histogram === undefined) {
      const all = concat(this.#kept, this.#count);
      histogram = emptyHistogram(doaneEdges(all), "doane");
      addToHistogram(histogram, all);
    } else {
      histogram = { ...histogram, edges: [...histogram.edges], counts: [...histogram.counts] };
    }
    const count = this.#count;
    const sketch = encodeSketch(this.#sketch);
    return {
      kind: "numeric",
      name: this.name,
      count,
      nulls: this.#nulls,
      min: count === 0 ? null : this.#min,
      max: count === 0 ? null : this.#max,
      mean: count === 0 ? null : this.#mean,
      std: count === 0 ? null : Math.sqrt(this.#m2 / count),
      m2: this.#m2,
      sum: this.#sum,
      negatives: this.#negatives,
      zeros: this.#zeros,
      integer: count > 0 && this.#integer,
      distinct: this.#distinct === undefined ? DISTINCT_CAP : this.#distinct.size,
      // From the decoded sketch, as a merge computes them: the decoded mapping can differ in the last bits.
      quantiles: sketchQuantiles(decodeSketch(sketch, this.name)),
      sketch,
      histogram,
      sample: [...this.#reservoir.sample],
      sampleSize: this.#reservoir.size,
    };
  }
}

function copyOf(values: ArrayLike<number>, length: number): Float64Array {
  if (values instanceof Float64Array) return values.slice(0, length);
  const copy = new Float64Array(length);
  for (let i = 0; i < length; i++) copy[i] = values[i] as number;
  return copy;
}

function concat(chunks: readonly Float64Array[], total: number): Float64Array {
  if (chunks.length === 1 && (chunks[0] as Float64Array).length === total) return chunks[0] as Float64Array;
  const all = new Float64Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    all.set(chunk, offset);
    offset += chunk.length;
  }
  return all;
}

/** Chan et al.'s pairwise update of (count, mean, M2). */
export function chanMerge(
  countA: number,
  meanA: number,
  m2A: number,
  countB: number,
  meanB: number,
  m2B: number,
): { count: number; mean: number; m2: number } {
  if (countA === 0) return { count: countB, mean: meanB, m2: m2B };
  if (countB === 0) return { count: countA, mean: meanA, m2: m2A };
  const count = countA + countB;
  const delta = meanB - meanA;
  return {
    count,
    mean: meanA + (delta * countB) / count,
    m2: m2A + m2B + (delta * delta * countA * countB) / count,
  };
}

/** Merges the profiles of one numeric column over two disjoint sets of rows. */
export function mergeNumericProfiles(a: NumericProfile, b: NumericProfile, seed = DEFAULT_SEED): NumericProfile {
  const column = a.name;
  const moments = chanMerge(a.count, a.mean ?? 0, a.m2, b.count, b.mean ?? 0, b.m2);
  const sketch = decodeSketch(a.sketch, column);
  mergeSketchInto(sketch, decodeSketch(b.sketch, column), column);
  const sampleSize = Math.min(a.sampleSize, b.sampleSize);
  const sample = mergeSamples(a.sample, a.count, b.sample, b.count, sampleSize, (seed ^ hashString(column) ^ a.count ^ (b.count << 1)) >>> 0);
  const count = moments.count;
  return {
    kind: "numeric",
    name: column,
    count,
    nulls: a.nulls + b.nulls,
    min: minOf(a.min, b.min, Math.min),
    max: minOf(a.max, b.max, Math.max),
    mean: count === 0 ? null : moments.mean,
    std: count === 0 ? null : Math.sqrt(moments.m2 / count),
    m2: moments.m2,
    sum: a.sum + b.sum,
    negatives: a.negatives + b.negatives,
    zeros: a.zeros + b.zeros,
    integer: (a.count === 0 || a.integer) && (b.count === 0 || b.integer) && count > 0,
    distinct: mergedDistinct(a, b),
    quantiles: sketchQuantiles(sketch),
    sketch: encodeSketch(sketch),
    histogram: mergeHistograms(a.histogram, b.histogram, column),
    sample,
    sampleSize,
  };
}

function minOf(a: number | null, b: number | null, pick: (x: number, y: number) => number): number | null {
  if (a === null) return b;
  if (b === null) return a;
  return pick(a, b);
}

/**
 * Exact when both samples hold every value (the union is counted); otherwise the best bound the counts give:
 * at least the larger side, at most the cap.
 */
function mergedDistinct(a: NumericProfile, b: NumericProfile): number {
  if (a.distinct >= DISTINCT_CAP || b.distinct >= DISTINCT_CAP) return DISTINCT_CAP;
  if (a.sample.length === a.count && b.sample.length === b.count) {
    return Math.min(new Set([...a.sample, ...b.sample]).size, DISTINCT_CAP);
  }
  return Math.min(Math.max(a.distinct, b.distinct), DISTINCT_CAP);
}
