import { MlshipError } from "../core/index.js";
import type { Tensor } from "../core/index.js";
import { defaultAs } from "./manifest.js";
import type { PostprocessStep } from "./types.js";

type Numeric = Exclude<Tensor["data"], string[]>;

function stepError(step: PostprocessStep, what: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_RUNTIME_INFERENCE", `post-processing ${step.type} on output ${JSON.stringify(
    step.output)}: ${what}`, { field: step.output });
}

/**
 * Runs post-processing steps in order on the model's named outputs and returns a new map (the input map and its
 * tensors are not modified; with no steps the input map itself comes back). Each step reads `output` (a model output or an earlier step's result) and writes:
 * - softmax: `as` (default: replaces `output`), same dtype and shape, over the last axis;
 * - argmax: `as` (default `<output>_argmax`), int64, the last axis removed;
 * - labels: `as` (default `<output>_labels`), string, from an integer index output (same shape) or from the
 *   argmax of a score output (last axis removed);
 * - top_k: `<as>_indices` (int64) and `<as>_scores` (the output's dtype), shape [..., k], best first (ties: lower
 *   index first), plus `<as>_labels` (string) when labels are given; `as` defaults to `<output>_top<k>`.
 */
export function applyPostprocess(outputs: Record<string, Tensor>, steps: readonly PostprocessStep[]):
  Record<string, Tensor> {
  if (steps.length === 0) return outputs;
  const out: Record<string, Tensor> = { ...outputs };
  for (const step of steps) {
    const src = out[step.output];
    if (src === undefined) throw stepError(step, "no such output");
    switch (step.type) {
      case "softmax":
        out[step.as ?? defaultAs("softmax", step.output)] = softmax(src, step);
        break;
      case "argmax":
        out[step.as ?? defaultAs("argmax", step.output)] = argmax(src, step);
        break;
      case "labels":
        out[step.as ?? defaultAs("labels", step.output)] = labels(src, step);
        break;
      case "top_k": {
        const base = step.as ?? defaultAs("top_k", step.output, step.k);
        const result = topK(src, step);
        out[`${base}_indices`] = result.indices;
        out[`${base}_scores`] = result.scores;
        if (result.labels !== undefined) out[`${base}_labels`] = result.labels;
        break;
      }
    }
  }
  return out;
}

function lastAxis(src: Tensor, step: PostprocessStep): { rows: number; width: number } {
  const width = src.shape[src.shape.length - 1];
  if (width === undefined) throw stepError(step, "needs an output with at least one axis");
  if (width === 0) throw stepError(step, "the last axis is empty");
  return { rows: src.data.length / width, width };
}

function softmax(src: Tensor, step: PostprocessStep): Tensor {
  if (!(src.data instanceof Float32Array || src.data instanceof Float64Array)) {
    throw stepError(step, `needs float32/float64 values, got ${src.dtype}`);
  }
  const { rows, width } = lastAxis(src, step);
  const x = src.data;
  const y = src.data instanceof Float32Array ? new Float32Array(x.length) : new Float64Array(x.length);
  const e = new Float64Array(width);
  for (let r = 0; r < rows; r++) {
    const base = r * width;
    let max = -Infinity;
    for (let i = 0; i < width; i++) {
      const v = x[base + i] as number;
      if (v > max) max = v;
    }
    // Subtracting the max keeps exp() finite; a row of all -Infinity stays NaN as numpy's would.
    let sum = 0;
    for (let i = 0; i < width; i++) {
      const v = Math.exp((x[base + i] as number) - max);
      e[i] = v;
      sum += v;
    }
    for (let i = 0; i < width; i++) y[base + i] = (e[i] as number) / sum;
  }
  return { dtype: src.dtype, shape: [...src.shape], data: y };
}

/** Index of the largest value per row of the last axis (first one on ties, like numpy). */
function argmaxRows(data: Numeric, rows: number, width: number): Int32Array {
  const idx = new Int32Array(rows);
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
    for (let r = 0; r < rows; r++) {
      const base = r * width;
      let best = 0;
      let bestV = data[base] as bigint;
      for (let i = 1; i < width; i++) {
        const v = data[base + i] as bigint;
        if (v > bestV) {
          bestV = v;
          best = i;
        }
      }
      idx[r] = best;
    }
    return idx;
  }
  const d = data as Exclude<Numeric, BigInt64Array | BigUint64Array>;
  for (let r = 0; r < rows; r++) {
    const base = r * width;
    let best = 0;
    let bestV = d[base] as number;
    for (let i = 1; i < width; i++) {
      const v = d[base + i] as number;
      if (v > bestV || (bestV !== bestV && v === v)) {
        bestV = v;
        best = i;
      }
    }
    idx[r] = best;
  }
  return idx;
}

function numeric(src: Tensor, step: PostprocessStep): Numeric {
  if (Array.isArray(src.data) || src.dtype === "float16" || src.dtype === "bool") {
    throw stepError(step, `needs numeric values, got ${src.dtype}`);
  }
  return src.data as Numeric;
}

function argmax(src: Tensor, step: PostprocessStep): Tensor {
  const data = numeric(src, step);
  const { rows, width } = lastAxis(src, step);
  const idx = argmaxRows(data, rows, width);
  const out = new BigInt64Array(rows);
  for (let r = 0; r < rows; r++) out[r] = BigInt(idx[r] as number);
  return { dtype: "int64", shape: src.shape.slice(0, -1), data: out };
}

function labels(src: Tensor, step: Extract<PostprocessStep, { type: "labels" }>): Tensor {
  const names = step.labels;
  const isFloat = src.data instanceof Float32Array || src.data instanceof Float64Array;
  if (isFloat && src.shape.length >= 2) {
    const { rows, width } = lastAxis(src, step);
    if (width !== names.length) throw stepError(step, `${names.length} labels for ${width} classes`);
    const idx = argmaxRows(src.data as Numeric, rows, width);
    const out = new Array<string>(rows);
    for (let r = 0; r < rows; r++) out[r] = names[idx[r] as number] as string;
    return { dtype: "string", shape: src.shape.slice(0, -1), data: out };
  }
  if (isFloat || Array.isArray(src.data) || src.dtype === "float16") {
    throw stepError(step, `needs an integer class index or a [batch, classes] score output, got ${src.dtype} [${
      src.shape.join(", ")}]`);
  }
  const data = src.data;
  const n = data.length;
  const out = new Array<string>(n);
  for (let i = 0; i < n; i++) {
    const raw = data[i] as number | bigint;
    const index = typeof raw === "bigint" ? Number(raw) : raw;
    const name = names[index];
    if (name === undefined) {
      throw stepError(step, `class index ${String(raw)} (element ${i}) is outside the ${names.length} labels`);
    }
    out[i] = name;
  }
  return { dtype: "string", shape: [...src.shape], data: out };
}

function topK(src: Tensor, step: Extract<PostprocessStep, { type: "top_k" }>):
  { indices: Tensor; scores: Tensor; labels?: Tensor } {
  const data = numeric(src, step);
  const { rows, width } = lastAxis(src, step);
  const k = step.k;
  if (k > width) throw stepError(step, `k = ${k} but the last axis has ${width} values`);
  if (step.labels !== undefined && step.labels.length !== width) {
    throw stepError(step, `${step.labels.length} labels for ${width} classes`);
  }
  const shape = [...src.shape.slice(0, -1), k];
  const indices = new BigInt64Array(rows * k);
  const ctor = data.constructor as new (n: number) => Numeric;
  const scores = new ctor(rows * k);
  const big = data instanceof BigInt64Array || data instanceof BigUint64Array;
  const pos = new Int32Array(k);
  for (let r = 0; r < rows; r++) {
    const base = r * width;
    // Insertion into a sorted window of k: fast for the small k this step is for.
    let filled = 0;
    for (let i = 0; i < width; i++) {
      const v = data[base + i] as number | bigint;
      let j = filled;
      while (j > 0 && greater(v, data[base + (pos[j - 1] as number)] as number | bigint, big)) j--;
      if (j >= k) continue;
      const end = Math.min(filled, k - 1);
      for (let m = end; m > j; m--) pos[m] = pos[m - 1] as number;
      pos[j] = i;
      if (filled < k) filled++;
    }
    for (let j = 0; j < k; j++) {
      const i = pos[j] as number;
      indices[r * k + j] = BigInt(i);
      (scores as { [n: number]: number | bigint })[r * k + j] = data[base + i] as number | bigint;
    }
  }
  const result: { indices: Tensor; scores: Tensor; labels?: Tensor } = {
    indices: { dtype: "int64", shape, data: indices },
    scores: { dtype: src.dtype, shape: [...shape], data: scores },
  };
  if (step.labels !== undefined) {
    const names = step.labels;
    const out = new Array<string>(rows * k);
    for (let n = 0; n < out.length; n++) out[n] = names[Number(indices[n])] as string;
    result.labels = { dtype: "string", shape: [...shape], data: out };
  }
  return result;
}

function greater(a: number | bigint, b: number | bigint, big: boolean): boolean {
  if (big) return (a as bigint) > (b as bigint);
  // NaN ranks below every number so it never displaces a real score.
  return (a as number) > (b as number) || ((b as number) !== (b as number) && (a as number) === (a as number));
}
