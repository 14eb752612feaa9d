/**
 * onnxruntime-node ↔ core conversions, used inside the workers. Core tensors and ORT tensors share the same
 * storage per dtype (BigInt64Array for int64, Uint8Array 0/1 for bool, Uint16Array raw bits for float16,
 * string[] for string), so conversion wraps the existing arrays and never copies elements.
 */
import * as ort from "onnxruntime-node";
import { isDType } from "../../core/index.js";
import type { DType, Tensor } from "../../core/index.js";
import type { TensorSpec } from "../../package/index.js";

/** ORT's metadata type names coincide with core DType names for every type mlship supports. */
export function dtypeFromOrt(type: string): DType | undefined {
  return isDType(type) ? type : undefined;
}

/** Symbolic (`"batch"`), unnamed (`""`) and unknown dimensions all become -1. */
export function dimsFromOrt(shape: ReadonlyArray<number | string>): number[] {
  return shape.map((d) => (typeof d === "number" && d >= 0 ? d : -1));
}

export interface OrtSignature {
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /** Outputs ORT reports but mlship cannot return (sequences, maps, exotic dtypes); never fetched. */
  skippedOutputs: string[];
}

/**
 * Reads the session's inputs and outputs. An input mlship cannot feed is a load error; an output it cannot
 * return (e.g. the ZipMap sequence of an sklearn classifier) is left out, so the rest of the model still works.
 */
export function signatureFromSession(session: ort.InferenceSession): OrtSignature {
  const inputs: TensorSpec[] = [];
  for (const meta of session.inputMetadata) {
    const dtype = meta.isTensor ? dtypeFromOrt(meta.type) : undefined;
    if (!meta.isTensor || dtype === undefined) {
      const what = meta.isTensor ? `has element type ${meta.type}` : "is not a tensor";
      throw new Error(`input '${meta.name}' ${what}, which mlship cannot feed`);
    }
    inputs.push({ name: meta.name, dtype, shape: dimsFromOrt(meta.shape) });
  }
  const outputs: TensorSpec[] = [];
  const skippedOutputs: string[] = [];
  for (const meta of session.outputMetadata) {
    const dtype = meta.isTensor ? dtypeFromOrt(meta.type) : undefined;
    if (!meta.isTensor || dtype === undefined) skippedOutputs.push(meta.name);
    else outputs.push({ name: meta.name, dtype, shape: dimsFromOrt(meta.shape) });
  }
  return { inputs, outputs, skippedOutputs };
}

export function toOrtTensor(tensor: Tensor): ort.Tensor {
  return new ort.Tensor(tensor.dtype, tensor.data, tensor.shape);
}

export function fromOrtValue(name: string, value: ort.OnnxValue): Tensor {
  const dtype = dtypeFromOrt(value.type);
  if (dtype === undefined) throw new Error(`output '${name}' has element type ${value.type}, which mlship cannot return`);
  return { dtype, shape: [...value.dims], data: value.data as Tensor["data"] };
}
