/**
 * Tests on category frequencies: Evidently's chi-square goodness of fit and two-proportion Z-test, and SciPy's
 * `chi2_contingency` (the homogeneity test NannyML and Alibi Detect use). Distribution functions come from
 * stdlib (`gammainc` upper regularised = chi-square survival; `erfc` = normal tail), not hand-written.
 */
import { erfc, gammainc } from "./special.js";
import { MlshipError } from "../../core/index.js";
import { pairwiseSum } from "./numeric.js";

export interface ChiSquareResult {
  statistic: number;
  pvalue: number;
  dof: number;
}

/** `scipy.stats.chi2.sf(x, dof)` = Q(dof/2, x/2). */
export function chi2Sf(x: number, dof: number): number {
  if (Number.isNaN(x) || !(dof > 0)) return Number.NaN;
  if (x === Infinity) return 0;
  if (x <= 0) return 1;
  return gammainc(x / 2, dof / 2, true, true);
}

function checkCounts(counts: ArrayLike<number>, what: string): void {
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i] as number;
    if (!(c >= 0) || !Number.isFinite(c)) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${what}: counts must be finite and non-negative`);
    }
  }
}

/** `scipy.stats.chisquare(observed, expected)`: sum((o - e)^2 / e), dof = k - 1. Infinite when e = 0 < o. */
export function chisquare(observed: ArrayLike<number>, expected: ArrayLike<number>): ChiSquareResult {
  if (observed.length !== expected.length || observed.length === 0) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "chi-square: observed and expected need the same, non-zero number of bins");
  }
  const terms = new Float64Array(observed.length);
  for (let i = 0; i < observed.length; i++) {
    const difference = (observed[i] as number) - (expected[i] as number);
    terms[i] = (difference * difference) / (expected[i] as number);
  }
  const statistic = pairwiseSum(terms);
  const dof = observed.length - 1;
  return { statistic, pvalue: chi2Sf(statistic, dof), dof };
}

/**
 * Evidently's `chisquare` stat test: goodness of fit of the current counts against the reference shares scaled
 * to the current total, `chisquare(f_obs=cur, f_exp=ref * n_cur / n_ref)`. The counts are per category over
 * the union of categories (0 where a side lacks it); `referenceRows`/`currentRows` default to the count sums.
 * A category seen only in the current data makes the statistic infinite and the p-value 0.
 */
export function evidentlyChiSquare(
  referenceCounts: ArrayLike<number>,
  currentCounts: ArrayLike<number>,
  referenceRows = pairwiseSum(referenceCounts),
  currentRows = pairwiseSum(currentCounts),
): ChiSquareResult {
  checkCounts(referenceCounts, "chi-square reference");
  checkCounts(currentCounts, "chi-square current");
  const scale = currentRows / referenceRows;
  const expected = new Float64Array(referenceCounts.length);
  for (let i = 0; i < expected.length; i++) expected[i] = (referenceCounts[i] as number) * scale;
  return chisquare(currentCounts, expected);
}

export interface ContingencyResult extends ChiSquareResult {
  expected: number[][];
  /** Whether Yates' continuity correction was applied (only when dof = 1 and `correction`). */
  corrected: boolean;
}

/**
 * `scipy.stats.chi2_contingency(table, correction)`: homogeneity/independence test on an r x c table of counts,
 * expected = row sum x column sum / total, dof = (r-1)(c-1); Yates' correction when dof = 1.
 */
export function chi2Contingency(table: readonly (readonly number[])[], correction = true): ContingencyResult {
  const rows = table.length;
  const columns = table[0]?.length ?? 0;
  if (rows === 0 || columns === 0 || table.some((row) => row.length !== columns)) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "chi2_contingency needs a non-empty rectangular table");
  }
  for (const row of table) checkCounts(row, "chi2_contingency");
  const rowSums = table.map((row) => pairwiseSum(row));
  const columnSums = Array.from({ length: columns }, (_, j) => pairwiseSum(table.map((row) => row[j] as number)));
  const total = pairwiseSum(rowSums);
  const expected = rowSums.map((r) => columnSums.map((c) => (r * c) / total));
  if (expected.some((row) => row.some((e) => e === 0))) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "chi2_contingency: a row or column sums to zero (an expected frequency is 0)");
  }
  const dof = rows * columns - rows - columns + 2 - 1;
  if (dof === 0) return { statistic: 0, pvalue: 1, dof, expected, corrected: false };
  const corrected = dof === 1 && correction;
  const terms = new Float64Array(rows * columns);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < columns; j++) {
      const e = expected[i]![j]!;
      let o = table[i]![j]!;
      if (corrected) {
        const difference = e - o;
        o += Math.min(0.5, Math.abs(difference)) * Math.sign(difference);
      }
      const deviation = o - e;
      terms[i * columns + j] = (deviation * deviation) / e;
    }
  }
  const statistic = pairwiseSum(terms);
  return { statistic, pvalue: chi2Sf(statistic, dof), dof, expected, corrected };
}

export interface ZTestResult {
  /** z = (p_ref - p_cur) / sqrt(P (1 - P) (1/n_ref + 1/n_cur)), P the pooled share. */
  statistic: number;
  pvalue: number;
  /** The category counted as "0" (the smallest key); every other value counts as "1", as in Evidently. */
  baseline: string | number;
}

/**
 * Evidently's `z` stat test for binary columns: map the smallest category (sorted keys) to 0 and the rest to 1,
 * two-proportion z-test, p = 2 (1 - Phi(|z|)) = erfc(|z| / sqrt 2). Both sides constant and equal: p = 1.
 */
export function evidentlyZTest<K extends string | number>(reference: readonly K[], current: readonly K[]): ZTestResult {
  if (reference.length === 0 || current.length === 0) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "Z-test needs two non-empty samples");
  }
  const keys = [...new Set<K>([...reference, ...current])].sort(compareKeys);
  const baseline = keys[0] as K;
  if (keys.length === 1) return { statistic: 0, pvalue: 1, baseline };
  const ones = (values: readonly K[]): number => values.reduce((count, value) => count + (value === baseline ? 0 : 1), 0);
  return zTestFromCounts(ones(reference), reference.length, ones(current), current.length, baseline);
}

/** The same test from counts: `referenceOnes` of `referenceRows` reference values are not the baseline, etc. */
export function zTestFromCounts(
  referenceOnes: number,
  referenceRows: number,
  currentOnes: number,
  currentRows: number,
  baseline: string | number = 0,
): ZTestResult {
  if (referenceOnes === 0 && currentOnes === 0) return { statistic: 0, pvalue: 1, baseline };
  if (referenceOnes === referenceRows && currentOnes === currentRows) return { statistic: 0, pvalue: 1, baseline };
  const p1 = referenceOnes / referenceRows;
  const p2 = currentOnes / currentRows;
  const pooled = (p1 * referenceRows + p2 * currentRows) / (referenceRows + currentRows);
  const z = (p1 - p2) / Math.sqrt(pooled * (1 - pooled) * (1 / referenceRows + 1 / currentRows));
  return { statistic: z, pvalue: erfc(Math.abs(z) / Math.SQRT2), baseline };
}

/** Python's `sorted` order for one type of key: numbers numerically, strings by code point. */
export function compareKeys(a: string | number, b: string | number): number {
  if (typeof a === "number" && typeof b === "number") return a - b;
  const sa = String(a);
  const sb = String(b);
  return sa < sb ? -1 : sa > sb ? 1 : 0;
}
