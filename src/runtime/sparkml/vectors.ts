/**
 * Helpers for `SparkVector` (Spark's `ml.linalg.Vector`), shared by the feature transformers and the models.
 *
 * Vectors are treated as immutable: every helper that produces a vector returns a new one, and `values` arrays of
 * an input vector are never written to. Sparse vectors follow Spark's invariant (strictly increasing indices, each
 * `< size`); an index absent from a sparse vector means 0.0.
 */
import type { SparkVector } from "./types.js";

/** A dense vector over `values` (copied when given a plain array; a Float64Array is taken as is, not copied). */
export function denseVector(values: Float64Array | readonly number[]): SparkVector {
  return { type: "dense", values: values instanceof Float64Array ? values : Float64Array.from(values) };
}

/** A sparse vector; `indices` must be strictly increasing and below `size` (not checked here, see `checkVector`). */
export function sparseVector(
  size: number,
  indices: Int32Array | readonly number[],
  values: Float64Array | readonly number[],
): SparkVector {
  return {
    type: "sparse",
    size,
    indices: indices instanceof Int32Array ? indices : Int32Array.from(indices),
    values: values instanceof Float64Array ? values : Float64Array.from(values),
  };
}

/** Number of slots (Spark's `Vector.size`). */
export function vectorSize(vector: SparkVector): number {
  return vector.type === "dense" ? vector.values.length : vector.size;
}

/** Value at `index` (0.0 for an absent sparse index). `index` outside `[0, size)` returns NaN. */
export function vectorGet(vector: SparkVector, index: number): number {
  if (index < 0 || index >= vectorSize(vector)) return Number.NaN;
  if (vector.type === "dense") return vector.values[index] ?? Number.NaN;
  const position = sparseSearch(vector.indices, index);
  return position < 0 ? 0 : (vector.values[position] ?? 0);
}

/** A new dense Float64Array of the vector's values (always a fresh copy, safe to modify). */
export function toDense(vector: SparkVector): Float64Array {
  if (vector.type === "dense") return Float64Array.from(vector.values);
  const out = new Float64Array(vector.size);
  for (let k = 0; k < vector.indices.length; k++) out[vector.indices[k] as number] = vector.values[k] as number;
  return out;
}

/** The vector's values as a dense array, without copying a dense vector (do not modify the result). */
export function denseValues(vector: SparkVector): Float64Array {
  return vector.type === "dense" ? vector.values : toDense(vector);
}

/** Calls `visit(index, value)` for every stored slot: all slots of a dense vector, the stored entries of a sparse one. */
export function forEachActive(vector: SparkVector, visit: (index: number, value: number) => void): void {
  if (vector.type === "dense") {
    for (let i = 0; i < vector.values.length; i++) visit(i, vector.values[i] as number);
  } else {
    for (let k = 0; k < vector.indices.length; k++) visit(vector.indices[k] as number, vector.values[k] as number);
  }
}

/**
 * `Σ vector[i] · weights[i]` over the vector's slots (Spark's `BLAS.dot`/`Vector.dot` with a dense side). Summation
 * order follows Spark: ascending index over stored entries. `weights` must be at least `vectorSize(vector)` long.
 */
export function dot(vector: SparkVector, weights: ArrayLike<number>): number {
  let sum = 0;
  if (vector.type === "dense") {
    const values = vector.values;
    for (let i = 0; i < values.length; i++) sum += (values[i] as number) * (weights[i] as number);
  } else {
    const { indices, values } = vector;
    for (let k = 0; k < indices.length; k++) sum += (values[k] as number) * (weights[indices[k] as number] as number);
  }
  return sum;
}

/** Slots whose value is not 0.0 (NaN counts as non-zero, as in Spark's `numNonzeros`). */
export function numNonzeros(vector: SparkVector): number {
  let count = 0;
  for (const value of vector.values) if (value !== 0) count++;
  return count;
}

/** A sparse copy holding only the non-zero slots (Spark's `toSparse`). */
export function toSparse(vector: SparkVector): SparkVector {
  const nnz = numNonzeros(vector);
  const indices = new Int32Array(nnz);
  const values = new Float64Array(nnz);
  let k = 0;
  forEachActive(vector, (index, value) => {
    if (value !== 0) {
      indices[k] = index;
      values[k] = value;
      k++;
    }
  });
  return { type: "sparse", size: vectorSize(vector), indices, values };
}

/**
 * Spark's `Vector.compressed`: sparse (zeros dropped) when `1.5 · (nnz + 1) < size`, else dense. Transformers whose
 * Spark output is `.compressed` (VectorAssembler, MinMaxScaler, Binarizer) use this so the representation matches.
 */
export function compressed(vector: SparkVector): SparkVector {
  const nnz = numNonzeros(vector);
  const size = vectorSize(vector);
  if (1.5 * (nnz + 1) < size) return vector.type === "sparse" && nnz === vector.indices.length ? vector : toSparse(vector);
  return vector.type === "dense" ? vector : { type: "dense", values: toDense(vector) };
}

/** Index of the first maximum (strict `>` scan, ties to the lowest index), as Spark's `Vector.argmax`. -1 if empty. */
export function argmax(values: ArrayLike<number>): number {
  if (values.length === 0) return -1;
  let best = 0;
  let max = values[0] as number;
  for (let i = 1; i < values.length; i++) {
    const value = values[i] as number;
    if (value > max) {
      max = value;
      best = i;
    }
  }
  return best;
}

/** Whether `value` is a decoded `SparkVector` (as `StageContext.readParquet` returns vector columns). */
export function isSparkVector(value: unknown): value is SparkVector {
  if (typeof value !== "object" || value === null) return false;
  const candidate = value as { type?: unknown; values?: unknown; indices?: unknown; size?: unknown };
  if (!(candidate.values instanceof Float64Array)) return false;
  if (candidate.type === "dense") return true;
  return candidate.type === "sparse" && candidate.indices instanceof Int32Array && typeof candidate.size === "number";
}

/**
 * Why `vector` breaks Spark's invariants (sparse indices strictly increasing within `[0, size)`, indices and values
 * of equal length), or undefined when it is well-formed.
 */
export function checkVector(vector: SparkVector): string | undefined {
  if (vector.type === "dense") return undefined;
  if (!Number.isInteger(vector.size) || vector.size < 0) return `sparse vector size ${vector.size} is not a non-negative integer`;
  if (vector.indices.length !== vector.values.length) {
    return `sparse vector has ${vector.indices.length} indices but ${vector.values.length} values`;
  }
  let previous = -1;
  for (const index of vector.indices) {
    if (index <= previous || index >= vector.size) {
      return `sparse vector indices must be strictly increasing and below size ${vector.size} (found ${index})`;
    }
    previous = index;
  }
  return undefined;
}

/** Position of `index` in sorted `indices`, or -1. */
function sparseSearch(indices: Int32Array, index: number): number {
  let low = 0;
  let high = indices.length - 1;
  while (low <= high) {
    const mid = (low + high) >>> 1;
    const found = indices[mid] as number;
    if (found === index) return mid;
    if (found < index) low = mid + 1;
    else high = mid - 1;
  }
  return -1;
}
