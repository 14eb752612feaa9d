/**
 * A full ONNX model decoder and encoder (protobufjs on the embedded `onnx.proto`, see onnx-schema.ts), plus the
 * small helpers the graph rewrites need: reading and writing initializer data, attributes, opset imports, names.
 *
 * `decodeModel(encodeModel(decodeModel(bytes)))` keeps every field the ONNX schema declares (IR version 10); the
 * bytes may differ from the original (field order, packed repeated scalars) but the model is the same.
 * External tensor data (`data_location = EXTERNAL`) is not read: such initializers are left as they are and the
 * rewrites skip them.
 */
import protobuf from "protobufjs";
import { MlshipError, toFloat16Bits } from "../core/index.js";
import { ONNX_PROTO } from "./onnx-schema.js";

/** protobufjs decodes int64 as a Long when the `long` package is present, else as a number. */
export interface LongLike {
  toNumber(): number;
}
export type Int64 = number | LongLike;

export interface StringStringEntry {
  key?: string;
  value?: string;
}

export interface OnnxTensor {
  dims?: Int64[];
  data_type?: number;
  float_data?: number[];
  int32_data?: number[];
  int64_data?: Int64[];
  double_data?: number[];
  uint64_data?: Int64[];
  string_data?: Uint8Array[];
  name?: string;
  doc_string?: string;
  raw_data?: Uint8Array;
  external_data?: StringStringEntry[];
  data_location?: number;
  metadata_props?: StringStringEntry[];
}

export interface OnnxAttribute {
  name?: string;
  type?: number;
  f?: number;
  i?: Int64;
  s?: Uint8Array;
  t?: OnnxTensor;
  g?: OnnxGraph;
  floats?: number[];
  ints?: Int64[];
  strings?: Uint8Array[];
  tensors?: OnnxTensor[];
  graphs?: OnnxGraph[];
  [other: string]: unknown;
}

export interface OnnxNode {
  input?: string[];
  output?: string[];
  name?: string;
  op_type?: string;
  domain?: string;
  attribute?: OnnxAttribute[];
  doc_string?: string;
  [other: string]: unknown;
}

export interface OnnxShapeDim {
  dim_value?: Int64;
  dim_param?: string;
  denotation?: string;
}

export interface OnnxType {
  tensor_type?: { elem_type?: number; shape?: { dim?: OnnxShapeDim[] } };
  [other: string]: unknown;
}

export interface OnnxValueInfo {
  name?: string;
  type?: OnnxType;
  doc_string?: string;
  [other: string]: unknown;
}

export interface OnnxGraph {
  node?: OnnxNode[];
  name?: string;
  initializer?: OnnxTensor[];
  input?: OnnxValueInfo[];
  output?: OnnxValueInfo[];
  value_info?: OnnxValueInfo[];
  [other: string]: unknown;
}

export interface OnnxOpset {
  domain?: string;
  version?: Int64;
}

/** A decoded ModelProto (snake_case field names as in onnx.proto). */
export interface OnnxModel {
  ir_version?: Int64;
  opset_import?: OnnxOpset[];
  producer_name?: string;
  producer_version?: string;
  graph?: OnnxGraph;
  metadata_props?: StringStringEntry[];
  [other: string]: unknown;
}

/** TensorProto.DataType numbers used by the rewrites. */
export const DT = { FLOAT: 1, UINT8: 2, INT8: 3, INT32: 6, INT64: 7, FLOAT16: 10, DOUBLE: 11 } as const;

/** AttributeProto.AttributeType numbers. */
export const ATTR = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, GRAPH: 5, FLOATS: 6, INTS: 7 } as const;

let modelType: protobuf.Type | undefined;

function modelProto(): protobuf.Type {
  modelType ??= protobuf.parse(ONNX_PROTO, { keepCase: true }).root.lookupType("onnx.ModelProto");
  return modelType;
}

/** Decodes an ONNX ModelProto. A file that is not one fails with MLSHIP_ERR_PACKAGE_INVALID. */
export function decodeModel(bytes: Uint8Array, what = "ONNX model"): OnnxModel {
  let model: OnnxModel;
  try {
    model = modelProto().decode(bytes) as unknown as OnnxModel;
  } catch (error) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${what} is not a valid ONNX protobuf: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (model.graph === undefined || model.graph === null) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${what} has no graph`);
  }
  return model;
}

/** Encodes a (decoded, possibly rewritten) model back to ONNX protobuf bytes. */
export function encodeModel(model: OnnxModel): Uint8Array {
  const type = modelProto();
  const problem = type.verify(model as unknown as Record<string, unknown>);
  if (problem !== null) throw new MlshipError("MLSHIP_ERR_CORE_INTERNAL", `rewritten ONNX model is malformed: ${problem}`);
  return type.encode(model as unknown as Record<string, unknown>).finish();
}

/** An int64 field as a JS number. */
export function num(value: Int64 | undefined | null): number {
  if (value === undefined || value === null) return 0;
  return typeof value === "number" ? value : value.toNumber();
}

/** The model's default-domain (ai.onnx) opset version, 0 when none is declared. */
export function defaultOpset(model: OnnxModel): number {
  const entry = (model.opset_import ?? []).find((o) => (o.domain ?? "") === "" || o.domain === "ai.onnx");
  return entry === undefined ? 0 : num(entry.version);
}

/** Raises the default-domain opset to at least `version` (no change when already there). */
export function requireOpset(model: OnnxModel, version: number): void {
  const list = [...(model.opset_import ?? [])];
  const index = list.findIndex((o) => (o.domain ?? "") === "" || o.domain === "ai.onnx");
  if (index < 0) list.push({ domain: "", version });
  else if (num(list[index]?.version) < version) list[index] = { ...list[index], version };
  model.opset_import = list;
}

/** The element count of a tensor with these dims. */
export function elementCount(dims: readonly Int64[] | undefined): number {
  return (dims ?? []).reduce<number>((n, d) => n * num(d), 1);
}

/** True when the tensor's data lives in the message (not in an external file). */
export function isInline(tensor: OnnxTensor): boolean {
  return (tensor.data_location ?? 0) === 0 && (tensor.external_data ?? []).length === 0;
}

/** The values of a float32 tensor (raw_data or float_data). */
export function floatData(tensor: OnnxTensor): Float32Array {
  if (tensor.data_type !== DT.FLOAT) throw new Error(`tensor ${tensor.name ?? ""} is not float32`);
  const n = elementCount(tensor.dims);
  if (tensor.raw_data !== undefined && tensor.raw_data !== null && tensor.raw_data.length > 0) {
    const raw = tensor.raw_data;
    if (raw.length !== n * 4) throw new Error(`tensor ${tensor.name ?? ""}: ${raw.length} raw bytes for ${n} floats`);
    const copy = new Uint8Array(raw); // aligned copy
    return new Float32Array(copy.buffer, 0, n);
  }
  return Float32Array.from(tensor.float_data ?? []);
}

/** Converts a tensor's raw little-endian bytes. */
function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/** A float32 initializer. */
export function floatTensor(name: string, dims: number[], values: ArrayLike<number>): OnnxTensor {
  return { name, dims, data_type: DT.FLOAT, raw_data: bytesOf(Float32Array.from(values)) };
}

/** A float16 initializer from float values (rounded to nearest even). */
export function float16Tensor(name: string, dims: number[], values: ArrayLike<number>): OnnxTensor {
  const bits = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) bits[i] = toFloat16Bits(values[i] ?? 0);
  return { name, dims, data_type: DT.FLOAT16, raw_data: bytesOf(bits) };
}

/** An int8 initializer. */
export function int8Tensor(name: string, dims: number[], values: Int8Array): OnnxTensor {
  return { name, dims, data_type: DT.INT8, raw_data: bytesOf(values) };
}

/** A uint8 initializer. */
export function uint8Tensor(name: string, dims: number[], values: Uint8Array): OnnxTensor {
  return { name, dims, data_type: DT.UINT8, raw_data: new Uint8Array(values) };
}

/** An int32 initializer. */
export function int32Tensor(name: string, dims: number[], values: ArrayLike<number>): OnnxTensor {
  return { name, dims, data_type: DT.INT32, raw_data: bytesOf(Int32Array.from(values)) };
}

/** An int64 initializer. */
export function int64Tensor(name: string, dims: number[], values: ArrayLike<number>): OnnxTensor {
  return { name, dims, data_type: DT.INT64, raw_data: bytesOf(BigInt64Array.from(Array.from(values, (v) => BigInt(v)))) };
}

/** The named attribute of a node, if present. */
export function attribute(node: OnnxNode, name: string): OnnxAttribute | undefined {
  return (node.attribute ?? []).find((a) => a.name === name);
}

/** An INT attribute's value, or `fallback` when absent. */
export function intAttr(node: OnnxNode, name: string, fallback: number): number {
  const a = attribute(node, name);
  return a === undefined ? fallback : num(a.i);
}

/** A FLOAT attribute's value, or `fallback` when absent. */
export function floatAttr(node: OnnxNode, name: string, fallback: number): number {
  const a = attribute(node, name);
  return a === undefined || a.f === undefined ? fallback : a.f;
}

/** An INT attribute. */
export function intAttribute(name: string, value: number): OnnxAttribute {
  return { name, type: ATTR.INT, i: value };
}

/** Builds a node (domain "" = ai.onnx). */
export function makeNode(op: string, inputs: string[], outputs: string[], name: string, attributes: OnnxAttribute[] = []): OnnxNode {
  const node: OnnxNode = { op_type: op, input: inputs, output: outputs, name };
  if (attributes.length > 0) node.attribute = attributes;
  return node;
}

/** Hands out value/node names that are not used anywhere in the graph yet. */
export class NameScope {
  readonly #used = new Set<string>();

  constructor(graph: OnnxGraph) {
    for (const node of graph.node ?? []) {
      for (const n of [...(node.input ?? []), ...(node.output ?? [])]) this.#used.add(n);
      if (node.name !== undefined) this.#used.add(node.name);
    }
    for (const list of [graph.initializer ?? [], graph.input ?? [], graph.output ?? [], graph.value_info ?? []]) {
      for (const v of list) if (v.name !== undefined) this.#used.add(v.name);
    }
  }

  /** `base` itself when free, else `base_1`, `base_2`, ... */
  fresh(base: string): string {
    let name = base;
    for (let i = 1; this.#used.has(name); i++) name = `${base}_${i}`;
    this.#used.add(name);
    return name;
  }
}

/** The static elem_type of a value from the graph's inputs, outputs or value_info, if declared. */
export function declaredElemType(graph: OnnxGraph, name: string): number | undefined {
  for (const list of [graph.input ?? [], graph.output ?? [], graph.value_info ?? []]) {
    const v = list.find((x) => x.name === name);
    const t = v?.type?.tensor_type?.elem_type;
    if (t !== undefined) return t;
  }
  return undefined;
}
