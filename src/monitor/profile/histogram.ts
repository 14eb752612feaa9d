import { MlshipError } from "../../core/index.js";
import type { Histogram } from "../types.js";

/**
 * Bin edges by Doane's rule, exactly as `numpy.histogram_bin_edges(x, bins="doane")` computes them: bin width
 * `ptp / (1 + log2(n) + log2(1 + |g1| / sigma_g1))`, `ceil(ptp / width)` equal bins from min to max (one bin when
 * fewer than three values or no spread; min and max widened by 0.5 when they are equal; [0, 1] when empty).
 */
export function doaneEdges(values: ArrayLike<number>): number[] {
  const n = values.length;
  if (n === 0) return linspace(0, 1, 2);
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i] as number;
    if (v < min) min = v;
    if (v > max) max = v;
    sum += v;
  }
  let first = min;
  let last = max;
  if (first === last) {
    first -= 0.5;
    last += 0.5;
  }
  let bins = 1;
  const width = doaneWidth(values, min, max, sum / n);
  if (width !== 0) bins = Math.ceil((last - first) / width);
  return linspace(first, last, bins + 1);
}

function doaneWidth(values: ArrayLike<number>, min: number, max: number, mean: number): number {
  const n = values.length;
  if (n <= 2) return 0;
  let m2 = 0;
  for (let i = 0; i < n; i++) {
    const d = (values[i] as number) - mean;
    m2 += d * d;
  }
  const sigma = Math.sqrt(m2 / n);
  if (!(sigma > 0)) return 0;
  let cubes = 0;
  for (let i = 0; i < n; i++) {
    const z = ((values[i] as number) - mean) / sigma;
    cubes += z * z * z;
  }
  const g1 = cubes / n;
  const sg1 = Math.sqrt((6.0 * (n - 2)) / ((n + 1.0) * (n + 3)));
  return (max - min) / (1.0 + Math.log2(n) + Math.log2(1.0 + Math.abs(g1) / sg1));
}

/** numpy.linspace with endpoint=True: `start + i * step`, the last edge set to `stop` exactly. */
function linspace(start: number, stop: number, count: number): number[] {
  const div = count - 1;
  const step = (stop - start) / div;
  const edges = new Array<number>(count);
  for (let i = 0; i < count; i++) edges[i] = i * step + start;
  edges[count - 1] = stop;
  return edges;
}

/**
 * Index of the bin holding `value` (numpy's convention: [e_i, e_i+1), the last bin closed), -1 below the first edge,
 * `bins` above the last.
 */
export function binIndex(edges: readonly number[], value: number): number {
  const bins = edges.length - 1;
  if (value < (edges[0] as number)) return -1;
  if (value > (edges[bins] as number)) return bins;
  let lo = 0;
  let hi = bins;
  // Invariant: edges[lo] <= value, and value < edges[hi] unless hi is the last edge.
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if ((edges[mid] as number) <= value) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** An empty histogram on `edges`. */
export function emptyHistogram(edges: readonly number[], rule: string): Histogram {
  if (edges.length < 2) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `histogram edges need at least two values, got ${edges.length}`);
  }
  for (let i = 1; i < edges.length; i++) {
    if (!((edges[i] as number) > (edges[i - 1] as number))) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "histogram edges must be finite and strictly ascending");
    }
  }
  return { edges: [...edges], counts: new Array<number>(edges.length - 1).fill(0), below: 0, above: 0, rule };
}

/**
 * Adds values (finite numbers) into a histogram in place. Like numpy, it guesses the bin arithmetically (exact for
 * equal-width edges) and then corrects the guess against the edges themselves, so the edges decide.
 */
export function addToHistogram(histogram: Histogram, values: ArrayLike<number>, length = values.length): void {
  const { edges, counts } = histogram;
  const bins = counts.length;
  const first = edges[0] as number;
  const last = edges[bins] as number;
  const scale = bins / (last - first);
  for (let i = 0; i < length; i++) {
    const v = values[i] as number;
    if (v < first) {
      histogram.below += 1;
      continue;
    }
    if (v > last) {
      histogram.above += 1;
      continue;
    }
    let index = Math.min(bins - 1, Math.floor((v - first) * scale));
    while (index > 0 && v < (edges[index] as number)) index -= 1;
    while (index < bins - 1 && v >= (edges[index + 1] as number)) index += 1;
    counts[index] = (counts[index] as number) + 1;
  }
}

/** Current data binned on fixed (reference) edges; values outside them are counted in `below`/`above`. */
export function histogramOn(edges: readonly number[], values: ArrayLike<number>): Histogram {
  const histogram = emptyHistogram(edges, "fixed");
  addToHistogram(histogram, values);
  return histogram;
}

export function sameEdges(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((edge, i) => edge === b[i]);
}

/** Sum of two histograms on the same edges. */
export function mergeHistograms(a: Histogram, b: Histogram, column: string): Histogram {
  if (!sameEdges(a.edges, b.edges)) {
    throw new MlshipError(
      "MLSHIP_ERR_INPUT_INVALID",
      `column "${column}": the histograms have different bin edges and cannot be merged; profile both on the same edges (e.g. the reference's)`,
      { field: column },
    );
  }
  return {
    edges: [...a.edges],
    counts: a.counts.map((count, i) => count + (b.counts[i] as number)),
    below: a.below + b.below,
    above: a.above + b.above,
    rule: a.rule === b.rule ? a.rule : "fixed",
  };
}
