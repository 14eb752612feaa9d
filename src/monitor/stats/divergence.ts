/**
 * Divergences and distances between distributions, as SciPy computes them (`scipy.stats.entropy`,
 * `scipy.spatial.distance.jensenshannon`, `scipy.stats.wasserstein_distance`) and as Evidently applies them
 * (PSI, Wasserstein normalised by the reference std). Histogram inputs are per-bin counts or shares in the
 * same bin order; see `binning.ts` for how the bins are made.
 */
import { MlshipError } from "../../core/index.js";
import { assertFinite, pairwiseSum, populationStd, searchSorted, sortedCopy } from "./numeric.js";

function assertSameLength(p: ArrayLike<number>, q: ArrayLike<number>, what: string): void {
  if (p.length !== q.length) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${what}: the two histograms have ${p.length} and ${q.length} bins`);
  }
  if (p.length === 0) throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${what}: the histograms are empty`);
}

/** Divides by the (NumPy pairwise) sum, as SciPy does before every divergence. */
export function normalize(values: ArrayLike<number>): Float64Array {
  const total = pairwiseSum(values);
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = (values[i] as number) / total;
  return out;
}

/** `scipy.special.rel_entr(x, y)`: x ln(x/y), 0 when x = 0 and y >= 0, +inf when x > 0 and y = 0 (or x < 0). */
export function relEntr(x: number, y: number): number {
  if (Number.isNaN(x) || Number.isNaN(y)) return Number.NaN;
  if (x > 0 && y > 0) return x * Math.log(x / y);
  if (x === 0 && y >= 0) return 0;
  return Infinity;
}

/**
 * KL divergence KL(p || q) = `scipy.stats.entropy(p, q, base)`: both inputs normalised to sum 1, natural log
 * unless `base` is given. Infinite when q = 0 in a bin where p > 0 (smooth empty bins first; `binning.ts`).
 */
export function kl(p: ArrayLike<number>, q: ArrayLike<number>, base?: number): number {
  assertSameLength(p, q, "KL divergence");
  const pn = normalize(p);
  const qn = normalize(q);
  const terms = new Float64Array(pn.length);
  for (let i = 0; i < pn.length; i++) terms[i] = relEntr(pn[i] as number, qn[i] as number);
  const sum = pairwiseSum(terms);
  return base === undefined ? sum : sum / Math.log(base);
}

/**
 * Population stability index, Evidently's `psi.py`: sum((p - q) ln(p / q)) over the shares as given (not
 * renormalised, as Evidently does after filling empty bins). On shares that sum to 1 it equals
 * KL(p || q) + KL(q || p). Infinite when a bin is empty on one side only.
 */
export function psi(p: ArrayLike<number>, q: ArrayLike<number>): number {
  assertSameLength(p, q, "PSI");
  const terms = new Float64Array(p.length);
  for (let i = 0; i < p.length; i++) {
    const pi = p[i] as number;
    const qi = q[i] as number;
    terms[i] = (pi - qi) * Math.log(pi / qi);
  }
  return pairwiseSum(terms);
}

/**
 * Jensen-Shannon **distance**, `scipy.spatial.distance.jensenshannon(p, q, base)`: sqrt of the JS divergence,
 * inputs normalised; natural log unless `base` (Evidently: natural log, max sqrt(ln 2); NannyML: base 2, max 1).
 */
export function jensenShannon(p: ArrayLike<number>, q: ArrayLike<number>, base?: number): number {
  assertSameLength(p, q, "Jensen-Shannon distance");
  const pn = normalize(p);
  const qn = normalize(q);
  const left = new Float64Array(pn.length);
  const right = new Float64Array(pn.length);
  for (let i = 0; i < pn.length; i++) {
    const m = ((pn[i] as number) + (qn[i] as number)) / 2;
    left[i] = relEntr(pn[i] as number, m);
    right[i] = relEntr(qn[i] as number, m);
  }
  let js = pairwiseSum(left) + pairwiseSum(right);
  if (base !== undefined) js /= Math.log(base);
  return Math.sqrt(js / 2);
}

/** L1 ("D1") distance between two histograms after normalising each to shares: sum |p - q|, in [0, 2]. */
export function l1(p: ArrayLike<number>, q: ArrayLike<number>): number {
  assertSameLength(p, q, "L1 distance");
  const pn = normalize(p);
  const qn = normalize(q);
  const terms = new Float64Array(pn.length);
  for (let i = 0; i < pn.length; i++) terms[i] = Math.abs((pn[i] as number) - (qn[i] as number));
  return pairwiseSum(terms);
}

/** Total variation distance = L1 / 2, in [0, 1]. */
export function tvd(p: ArrayLike<number>, q: ArrayLike<number>): number {
  return l1(p, q) / 2;
}

function sortWithWeights(values: ArrayLike<number>, weights: ArrayLike<number> | undefined): { sorted: Float64Array; cumulative: Float64Array | undefined } {
  if (weights === undefined) return { sorted: sortedCopy(values), cumulative: undefined };
  if (weights.length !== values.length) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "Wasserstein distance: weights and values differ in length");
  }
  let total = 0;
  for (let i = 0; i < weights.length; i++) {
    const w = weights[i] as number;
    if (!(w >= 0) || !Number.isFinite(w)) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "Wasserstein distance: weights must be finite and non-negative");
    }
    total += w;
  }
  if (!(total > 0)) throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "Wasserstein distance: weights sum to zero");
  const order = Array.from({ length: values.length }, (_, i) => i);
  order.sort((i, j) => (values[i] as number) - (values[j] as number));
  const sorted = new Float64Array(values.length);
  const cumulative = new Float64Array(values.length + 1);
  for (let k = 0; k < order.length; k++) {
    const index = order[k] as number;
    sorted[k] = values[index] as number;
    cumulative[k + 1] = (cumulative[k] as number) + (weights[index] as number);
  }
  return { sorted, cumulative };
}

/**
 * First Wasserstein distance, `scipy.stats.wasserstein_distance(u, v, uWeights, vWeights)`: the integral of
 * |U - V| over the pooled sorted values, ECDFs right-continuous, weights normalised.
 */
export function wasserstein(
  u: ArrayLike<number>,
  v: ArrayLike<number>,
  uWeights?: ArrayLike<number>,
  vWeights?: ArrayLike<number>,
): number {
  if (u.length === 0 || v.length === 0) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "Wasserstein distance needs two non-empty samples");
  }
  assertFinite(u, "first Wasserstein sample");
  assertFinite(v, "second Wasserstein sample");
  const us = sortWithWeights(u, uWeights);
  const vs = sortWithWeights(v, vWeights);
  const all = new Float64Array(u.length + v.length);
  all.set(us.sorted, 0);
  all.set(vs.sorted, u.length);
  all.sort();
  const terms = new Float64Array(all.length - 1);
  for (let i = 0; i < all.length - 1; i++) {
    const x = all[i] as number;
    const ui = searchSorted(us.sorted, x, "right");
    const vi = searchSorted(vs.sorted, x, "right");
    const uCdf = us.cumulative === undefined ? ui / u.length : (us.cumulative[ui] as number) / (us.cumulative[u.length] as number);
    const vCdf = vs.cumulative === undefined ? vi / v.length : (vs.cumulative[vi] as number) / (vs.cumulative[v.length] as number);
    terms[i] = Math.abs(uCdf - vCdf) * ((all[i + 1] as number) - x);
  }
  return pairwiseSum(terms);
}

/** Evidently's floor under the reference std, so a constant reference does not divide by zero. */
export const NORMED_WASSERSTEIN_MIN_STD = 0.001;

/** Evidently's `wasserstein` test: W1(ref, cur) / max(std(ref, ddof 0), 0.001), "in reference standard deviations". */
export function normedWasserstein(reference: ArrayLike<number>, current: ArrayLike<number>): number {
  return wasserstein(reference, current) / Math.max(populationStd(reference), NORMED_WASSERSTEIN_MIN_STD);
}
