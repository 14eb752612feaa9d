/**
 * Checks feeds against a model's input specs on the caller's thread, before anything is posted to a worker, so a
 * bad request fails fast with a 4xx-class code that names the input (and never costs a worker a round trip).
 */
import { MlshipError, elementCount } from "../core/index.js";
import type { DType, Tensor, TensorData } from "../core/index.js";
import type { TensorSpec } from "../package/index.js";

const STORAGE: Record<DType, { ok(data: TensorData): boolean; name: string }> = {
  float16: { ok: (d) => d instanceof Uint16Array, name: "Uint16Array (raw float16 bits)" },
  float32: { ok: (d) => d instanceof Float32Array, name: "Float32Array" },
  float64: { ok: (d) => d instanceof Float64Array, name: "Float64Array" },
  int8: { ok: (d) => d instanceof Int8Array, name: "Int8Array" },
  int16: { ok: (d) => d instanceof Int16Array, name: "Int16Array" },
  int32: { ok: (d) => d instanceof Int32Array, name: "Int32Array" },
  int64: { ok: (d) => d instanceof BigInt64Array, name: "BigInt64Array" },
  uint8: { ok: (d) => d instanceof Uint8Array, name: "Uint8Array" },
  uint16: { ok: (d) => d instanceof Uint16Array, name: "Uint16Array" },
  uint32: { ok: (d) => d instanceof Uint32Array, name: "Uint32Array" },
  uint64: { ok: (d) => d instanceof BigUint64Array, name: "BigUint64Array" },
  bool: { ok: (d) => d instanceof Uint8Array, name: "Uint8Array of 0/1" },
  string: { ok: (d) => Array.isArray(d) && d.every((v) => typeof v === "string"), name: "array of strings" },
};

export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(",")}]`;
}

function storageName(data: unknown): string {
  if (Array.isArray(data)) return "an array";
  if (typeof data === "object" && data !== null) return `a ${data.constructor.name}`;
  return typeof data;
}

/**
 * Throws MLSHIP_ERR_INPUT_MISSING / _DTYPE / _SHAPE / _INVALID (field = the input name) unless `feeds` has exactly
 * the inputs in `specs` with matching dtypes, ranks, fixed dimensions and data lengths. A `-1` dimension accepts
 * any size. An empty spec shape means the model declares no shape (ONNX metadata cannot tell that from a
 * scalar), so any shape is accepted there and the runtime has the last word.
 */
export function validateFeeds(specs: readonly TensorSpec[], feeds: Record<string, Tensor>): void {
  if (typeof feeds !== "object" || feeds === null) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "feeds must be an object of named tensors", { field: "inputs" });
  }
  const known = new Set(specs.map((s) => s.name));
  for (const name of Object.keys(feeds)) {
    if (!known.has(name)) {
      throw new MlshipError(
        "MLSHIP_ERR_INPUT_INVALID",
        `unknown input '${name}'; the model's inputs are ${specs.map((s) => `'${s.name}'`).join(", ")}`,
        { field: name },
      );
    }
  }
  for (const spec of specs) {
    const tensor = feeds[spec.name];
    const expected = `${spec.dtype} ${formatShape(spec.shape)}`;
    if (tensor === undefined || tensor === null) {
      throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", `missing input '${spec.name}' (${expected})`, { field: spec.name });
    }
    if (tensor.dtype !== spec.dtype) {
      throw new MlshipError(
        "MLSHIP_ERR_INPUT_DTYPE",
        `input '${spec.name}' has dtype ${String(tensor.dtype)}; the model expects ${spec.dtype}`,
        { field: spec.name },
      );
    }
    const storage = STORAGE[spec.dtype];
    if (!storage.ok(tensor.data)) {
      throw new MlshipError(
        "MLSHIP_ERR_INPUT_DTYPE",
        `input '${spec.name}' is ${spec.dtype}, so its data must be a ${storage.name}, not ${storageName(tensor.data)}`,
        { field: spec.name },
      );
    }
    const shape = tensor.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new MlshipError(
        "MLSHIP_ERR_INPUT_SHAPE",
        `input '${spec.name}' has an invalid shape ${JSON.stringify(shape)}: dimensions must be non-negative integers; the model expects ${formatShape(spec.shape)}`,
        { field: spec.name },
      );
    }
    if (spec.shape.length > 0) {
      const mismatch =
        shape.length !== spec.shape.length || spec.shape.some((d, axis) => d >= 0 && shape[axis] !== d);
      if (mismatch) {
        throw new MlshipError(
          "MLSHIP_ERR_INPUT_SHAPE",
          `input '${spec.name}' has shape ${formatShape(shape)}; the model expects ${formatShape(spec.shape)} (-1 = any size)`,
          { field: spec.name },
        );
      }
    }
    const count = elementCount(shape);
    if (tensor.data.length !== count) {
      throw new MlshipError(
        "MLSHIP_ERR_INPUT_SHAPE",
        `input '${spec.name}' has ${tensor.data.length} values but its shape ${formatShape(shape)} needs ${count}`,
        { field: spec.name },
      );
    }
  }
}

/** Throws MLSHIP_ERR_INPUT_INVALID (field `outputs`) if a requested output is not one of the model's. */
export function validateOutputNames(specs: readonly TensorSpec[], requested: readonly string[] | undefined): void {
  if (requested === undefined) return;
  if (!Array.isArray(requested) || requested.length === 0) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "outputs must name at least one output when given", { field: "outputs" });
  }
  for (const name of requested) {
    if (!specs.some((s) => s.name === name)) {
      throw new MlshipError(
        "MLSHIP_ERR_INPUT_INVALID",
        `unknown output '${String(name)}'; the model's outputs are ${specs.map((s) => `'${s.name}'`).join(", ")}`,
        { field: "outputs" },
      );
    }
  }
}
