/**
 * Small array helpers shared by the statistics. They follow NumPy's own algorithms where the result depends on
 * the order of floating-point operations (pairwise summation, `searchsorted` sides, round-half-to-even), so
 * that our numbers match NumPy/SciPy to the last bits rather than only approximately.
 */
import { MlshipError } from "../../core/index.js";

/**
 * `np.sum` of a contiguous float64 array: NumPy reduces in buffers of 8192 elements, adding each buffer's
 * pairwise sum (`pairwise_sum` in `loops_utils.h`: 8 accumulators per block of at most 128) to the total.
 */
export function pairwiseSum(values: ArrayLike<number>): number {
  let total = 0;
  for (let start = 0; start < values.length; start += 8192) {
    total += blockPairwiseSum(values, start, Math.min(8192, values.length - start));
  }
  return total;
}

function blockPairwiseSum(values: ArrayLike<number>, start: number, length: number): number {
  if (length < 8) {
    let sum = 0;
    for (let i = start; i < start + length; i++) sum += values[i] as number;
    return sum;
  }
  if (length <= 128) {
    const r = new Float64Array(8);
    for (let k = 0; k < 8; k++) r[k] = values[start + k] as number;
    let i = 8;
    for (; i < length - (length % 8); i += 8) {
      for (let k = 0; k < 8; k++) r[k] = (r[k] as number) + (values[start + i + k] as number);
    }
    let sum = ((r[0]! + r[1]!) + (r[2]! + r[3]!)) + ((r[4]! + r[5]!) + (r[6]! + r[7]!));
    for (; i < length; i++) sum += values[start + i] as number;
    return sum;
  }
  let half = Math.floor(length / 2);
  half -= half % 8;
  return blockPairwiseSum(values, start, half) + blockPairwiseSum(values, start + half, length - half);
}

/** `np.mean`: pairwise sum divided by the count. */
export function mean(values: ArrayLike<number>): number {
  return pairwiseSum(values) / values.length;
}

/** `np.std(x)` with ddof 0, computed as NumPy does (`_var`: mean, squared deviations, pairwise sums). */
export function populationStd(values: ArrayLike<number>): number {
  const n = values.length;
  const average = mean(values);
  const squares = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const deviation = (values[i] as number) - average;
    squares[i] = deviation * deviation;
  }
  return Math.sqrt(pairwiseSum(squares) / n);
}

/** A sorted copy as a Float64Array (numeric order; typed-array sort puts NaN last, we refuse NaN earlier). */
export function sortedCopy(values: ArrayLike<number>): Float64Array {
  const sorted = Float64Array.from(values as ArrayLike<number>);
  sorted.sort();
  return sorted;
}

/** Rejects NaN and infinities: every statistic here is defined on finite values only (callers drop missing). */
export function assertFinite(values: ArrayLike<number>, what: string): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i] as number)) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${what} contains a non-finite value at index ${i}`);
    }
  }
}

/** `np.searchsorted(sorted, value, side)`: the insertion index that keeps `sorted` ascending. */
export function searchSorted(sorted: ArrayLike<number>, value: number, side: "left" | "right"): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    const probe = sorted[middle] as number;
    if (side === "left" ? probe < value : probe <= value) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** `np.round` on a scalar: halves go to the even neighbour. */
export function roundHalfEven(value: number): number {
  const floor = Math.floor(value);
  const fraction = value - floor;
  if (fraction > 0.5) return floor + 1;
  if (fraction < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** `ldexp(value, exponent)` = value * 2^exponent, in steps so that neither the factor nor the result overflows early. */
export function scaleByPowerOfTwo(value: number, exponent: number): number {
  let result = value;
  let remaining = exponent;
  while (remaining > 1000) {
    result *= 2 ** 1000;
    remaining -= 1000;
  }
  while (remaining < -1000) {
    result *= 2 ** -1000;
    remaining += 1000;
  }
  return result * 2 ** remaining;
}

/** Greatest common divisor of two positive integers. */
export function gcd(a: number, b: number): number {
  let x = a;
  let y = b;
  while (y !== 0) [x, y] = [y, x % y];
  return x;
}

/** Clips a probability into [0, 1] (NaN passes through, as `np.clip` does). */
export function clipProbability(p: number): number {
  return p < 0 ? 0 : p > 1 ? 1 : p;
}
