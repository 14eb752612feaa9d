/**
 * Histogram bins for the binned drift statistics (PSI, KL, JS, L1), as NumPy makes them
 * (`np.histogram_bin_edges` with the `sturges` and `doane` rules, NumPy 1.24 `lib/histograms.py`) and as the
 * two reference tools use them:
 * - Evidently (`get_binned_data`): Sturges edges on reference ∪ current when the reference has > 20 distinct
 *   values, else one bin per distinct value; for PSI/KL empty bins are filled (doc 1.4), for JS they are not.
 * - NannyML (continuous JS): Doane edges on the reference only, plus a "leftover" bin for current mass outside.
 */
import { MlshipError } from "../../core/index.js";
import type { Histogram } from "../types.js";
import { mean, pairwiseSum, populationStd, searchSorted } from "./numeric.js";

export type BinRule = "sturges" | "doane";

function minMax(values: ArrayLike<number>): [number, number] {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    if (!Number.isFinite(v)) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `histogram: non-finite value at index ${i}`);
    }
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return [min, max];
}

/** NumPy's `_hist_bin_sturges`: ptp / (log2 n + 1). */
function sturgesWidth(values: ArrayLike<number>, ptp: number): number {
  return ptp / (Math.log2(values.length) + 1);
}

/** NumPy's `_hist_bin_doane`: ptp / (1 + log2 n + log2(1 + |g1| / sg1)); 0 (one bin) for n <= 2 or zero spread. */
function doaneWidth(values: ArrayLike<number>, ptp: number): number {
  const n = values.length;
  if (n > 2) {
    const sg1 = Math.sqrt((6 * (n - 2)) / ((n + 1) * (n + 3)));
    const sigma = populationStd(values);
    if (sigma > 0) {
      const average = mean(values);
      const cubes = new Float64Array(n);
      for (let i = 0; i < n; i++) cubes[i] = (((values[i] as number) - average) / sigma) ** 3;
      const g1 = pairwiseSum(cubes) / n;
      return ptp / (1 + Math.log2(n) + Math.log2(1 + Math.abs(g1) / sg1));
    }
  }
  return 0;
}

/**
 * `np.histogram_bin_edges(values, bins=rule)` for float data: equal-width edges from min to max
 * (`np.linspace`: start + i * step, last edge exactly max); a constant array gets one bin [v - 0.5, v + 0.5];
 * an empty array one bin [0, 1].
 */
export function histogramEdges(values: ArrayLike<number>, rule: BinRule): number[] {
  if (values.length === 0) return [0, 1];
  let [first, last] = minMax(values);
  const ptp = last - first;
  if (first === last) {
    first -= 0.5;
    last += 0.5;
  }
  const width = rule === "sturges" ? sturgesWidth(values, ptp) : doaneWidth(values, ptp);
  const bins = width ? Math.ceil((last - first) / width) : 1;
  return linspace(first, last, bins + 1);
}

/** `np.linspace(start, stop, num)` with `endpoint=True`. */
export function linspace(start: number, stop: number, num: number): number[] {
  const step = (stop - start) / (num - 1);
  const edges = new Array<number>(num);
  for (let i = 0; i < num; i++) edges[i] = step === 0 ? (i / (num - 1)) * (stop - start) + start : i * step + start;
  if (num > 1) edges[num - 1] = stop;
  return edges;
}

/**
 * `np.histogram(values, bins=edges)` counts: bin i holds edges[i] <= x < edges[i+1], the last bin also x = max
 * edge. Values outside are not in any bin; they are returned as `below`/`above`.
 */
export function histogramCounts(values: ArrayLike<number>, edges: readonly number[], rule = "fixed"): Histogram {
  if (edges.length < 2) throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "histogram: need at least two edges");
  const bins = edges.length - 1;
  const counts = new Array<number>(bins).fill(0);
  const lowest = edges[0] as number;
  const highest = edges[bins] as number;
  let below = 0;
  let above = 0;
  for (let i = 0; i < values.length; i++) {
    const x = values[i] as number;
    if (Number.isNaN(x)) continue;
    if (x < lowest) below++;
    else if (x > highest) above++;
    else if (x === highest) counts[bins - 1] = (counts[bins - 1] as number) + 1;
    else {
      const bin = searchSorted(edges, x, "right") - 1;
      counts[bin] = (counts[bin] as number) + 1;
    }
  }
  return { edges: [...edges], counts, below, above, rule };
}

/** Evidently's rule for empty bins (doc 1.4): fill with min_nonzero / 1e6 when min_nonzero <= 1e-4, else 1e-4. */
export function fillEmptyBins(shares: readonly number[]): { shares: number[]; epsilon: number | undefined } {
  let minNonZero = Infinity;
  for (const s of shares) if (s !== 0 && s < minNonZero) minNonZero = s;
  if (minNonZero === Infinity || !shares.includes(0)) return { shares: [...shares], epsilon: undefined };
  const epsilon = minNonZero <= 0.0001 ? minNonZero / 10 ** 6 : 0.0001;
  return { shares: shares.map((s) => (s === 0 ? epsilon : s)), epsilon };
}

export interface BinnedShares {
  reference: number[];
  current: number[];
  /** `sturges` (edges on reference ∪ current), `values` (one bin per distinct value), `doane` (NannyML). */
  binning: "sturges" | "values" | "doane";
  bins: number;
  edges: number[] | undefined;
  /** Category/value of each bin for the `values` binning. */
  keys: (string | number)[] | undefined;
  /** Fill values used for empty reference/current bins (undefined when none was needed or filling was off). */
  referenceEpsilon: number | undefined;
  currentEpsilon: number | undefined;
  /** NannyML: the share of current values outside the reference edges, appended as an extra bin. */
  leftover: number | undefined;
}

/** Distinct values count above which Evidently bins a numeric column by Sturges instead of per value. */
export const EVIDENTLY_PER_VALUE_MAX_DISTINCT = 20;

function distinctCount(values: readonly (string | number)[]): number {
  return new Set(values).size;
}

function perValueShares(reference: readonly (string | number)[], current: readonly (string | number)[]): { keys: (string | number)[]; reference: number[]; current: number[] } {
  const referenceCounts = new Map<string | number, number>();
  const currentCounts = new Map<string | number, number>();
  for (const v of reference) referenceCounts.set(v, (referenceCounts.get(v) ?? 0) + 1);
  for (const v of current) currentCounts.set(v, (currentCounts.get(v) ?? 0) + 1);
  const keys = [...new Set([...referenceCounts.keys(), ...currentCounts.keys()])].sort((a, b) =>
    typeof a === "number" && typeof b === "number" ? a - b : String(a) < String(b) ? -1 : String(a) > String(b) ? 1 : 0,
  );
  return {
    keys,
    reference: keys.map((k) => (referenceCounts.get(k) ?? 0) / reference.length),
    current: keys.map((k) => (currentCounts.get(k) ?? 0) / current.length),
  };
}

/**
 * Evidently's `get_binned_data(reference, current, feature_type, n, feel_zeroes)`. Numeric columns whose
 * reference has more than 20 distinct values get Sturges edges on the pooled data and shares = counts / rows;
 * other columns (and categorical ones, pass strings) one bin per distinct value of reference ∪ current.
 */
export function evidentlyBinnedShares(
  reference: readonly (number | string)[],
  current: readonly (number | string)[],
  numeric: boolean,
  fillZeroes: boolean,
): BinnedShares {
  if (reference.length === 0 || current.length === 0) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "binning needs non-empty reference and current data");
  }
  let referenceShares: number[];
  let currentShares: number[];
  let edges: number[] | undefined;
  let keys: (string | number)[] | undefined;
  let binning: BinnedShares["binning"];
  if (numeric && distinctCount(reference) > EVIDENTLY_PER_VALUE_MAX_DISTINCT) {
    const pooled = [...(reference as number[]), ...(current as number[])];
    edges = histogramEdges(pooled, "sturges");
    referenceShares = histogramCounts(reference as number[], edges).counts.map((c) => c / reference.length);
    currentShares = histogramCounts(current as number[], edges).counts.map((c) => c / current.length);
    binning = "sturges";
  } else {
    const perValue = perValueShares(reference, current);
    keys = perValue.keys;
    referenceShares = perValue.reference;
    currentShares = perValue.current;
    binning = "values";
  }
  let referenceEpsilon: number | undefined;
  let currentEpsilon: number | undefined;
  if (fillZeroes) {
    const filledReference = fillEmptyBins(referenceShares);
    const filledCurrent = fillEmptyBins(currentShares);
    referenceShares = filledReference.shares;
    currentShares = filledCurrent.shares;
    referenceEpsilon = filledReference.epsilon;
    currentEpsilon = filledCurrent.epsilon;
  }
  return {
    reference: referenceShares,
    current: currentShares,
    binning,
    bins: referenceShares.length,
    edges,
    keys,
    referenceEpsilon,
    currentEpsilon,
    leftover: undefined,
  };
}

/**
 * NannyML's continuous binning: Doane edges on the reference only, current counted on the same edges; current
 * mass outside them (1 - sum of in-range shares, when > 0) becomes an extra bin with reference share 0.
 */
export function nannymlBinnedShares(reference: readonly number[], current: readonly number[]): BinnedShares {
  if (reference.length === 0 || current.length === 0) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "binning needs non-empty reference and current data");
  }
  const edges = histogramEdges(reference, "doane");
  const referenceShares = histogramCounts(reference, edges).counts.map((c) => c / reference.length);
  const currentShares = histogramCounts(current, edges).counts.map((c) => c / current.length);
  const leftover = 1 - pairwiseSum(currentShares);
  if (leftover > 0) {
    currentShares.push(leftover);
    referenceShares.push(0);
  }
  return {
    reference: referenceShares,
    current: currentShares,
    binning: "doane",
    bins: referenceShares.length,
    edges,
    keys: undefined,
    referenceEpsilon: undefined,
    currentEpsilon: undefined,
    leftover: leftover > 0 ? leftover : 0,
  };
}
