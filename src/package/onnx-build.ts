/**
 * Writes ONNX models without Python: a hand-written protobuf encoder for the few ONNX messages a graph needs
 * (ModelProto, GraphProto, NodeProto, AttributeProto, ValueInfoProto, TypeProto, TensorProto). Retraining hooks
 * written in JavaScript use it to turn fitted weights into a model package (examples/feedback-loop/retrain.mjs), and
 * the tests use it to build small models.
 *
 * Field numbers follow onnx/onnx `onnx/onnx.proto` (proto2). Repeated scalars are written unpacked, which is the
 * proto2 default and what every protobuf parser accepts.
 *
 * ```ts
 * const bytes = buildOnnxModel({
 *   inputs: [{ name: "a", dtype: "float32", shape: ["batch", 3] }, { name: "b", dtype: "float32", shape: ["batch", 3] }],
 *   outputs: [{ name: "sum", dtype: "float32", shape: ["batch", 3] }],
 *   nodes: [{ op: "Add", inputs: ["a", "b"], outputs: ["sum"] }],
 * });
 * ```
 */
import { writeFileSync } from "node:fs";
import { MlshipError, toFloat16Bits } from "../core/index.js";
import type { DType } from "../core/index.js";

/** ONNX TensorProto.DataType numbers. */
export const ONNX_DATA_TYPE: Record<DType, number> = {
  float32: 1, uint8: 2, int8: 3, uint16: 4, int16: 5, int32: 6, int64: 7,
  string: 8, bool: 9, float16: 10, float64: 11, uint32: 12, uint64: 13,
};

/** A graph input or output. A string dimension is symbolic (`dim_param`), a number is fixed (`dim_value`). */
export interface ValueSpec {
  name: string;
  dtype: DType;
  /** Omit for a tensor of unknown rank. */
  shape?: Array<number | string>;
  /** A sequence of such tensors (TypeProto.sequence_type) instead of one tensor. */
  sequence?: boolean;
}

/** A constant tensor (initializer or tensor attribute). float16 values are numbers converted to half precision. */
export interface TensorValue {
  name?: string;
  dtype: DType;
  dims: number[];
  values: ReadonlyArray<number | bigint | boolean | string>;
}

/**
 * An attribute value. Tagged forms are exact; bare values are inferred: an integer number is INT, any other
 * number FLOAT, a string STRING, an array of integers INTS, of other numbers FLOATS, of strings STRINGS.
 * Use `{ f: 1 }` for a float attribute whose value happens to be integral.
 */
export type AttrValue =
  | number
  | string
  | number[]
  | string[]
  | { f: number }
  | { i: number | bigint }
  | { s: string }
  | { floats: number[] }
  | { ints: Array<number | bigint> }
  | { strings: string[] }
  | { t: TensorValue };

export interface NodeSpec {
  op: string;
  inputs: string[];
  outputs: string[];
  name?: string;
  /** Operator domain, e.g. `ai.onnx.ml`; the default domain when omitted. */
  domain?: string;
  attrs?: Record<string, AttrValue>;
}

export interface ModelSpec {
  inputs: ValueSpec[];
  outputs: ValueSpec[];
  nodes: NodeSpec[];
  initializers?: Array<TensorValue & { name: string }>;
  graphName?: string;
  /** ModelProto.producer_name. Defaults to `mlship`. */
  producer?: string;
  /** Defaults to 8. */
  irVersion?: number;
  /** Opset per domain; the default domain ("") is 13 unless given. */
  opsets?: Record<string, number>;
}

// ---- protobuf wire format ----

const WIRE_VARINT = 0;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

class ProtoWriter {
  private readonly chunks: Uint8Array[] = [];
  private length = 0;

  private push(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.length += bytes.length;
  }

  private tag(field: number, wire: number): void {
    this.rawVarint(BigInt((field << 3) | wire));
  }

  private rawVarint(value: bigint): void {
    // Negative int64 values are encoded as their 64-bit two's complement (10 bytes), as protobuf does.
    let v = BigInt.asUintN(64, value);
    const out: number[] = [];
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v !== 0n) byte |= 0x80;
      out.push(byte);
    } while (v !== 0n);
    this.push(Uint8Array.from(out));
  }

  varint(field: number, value: number | bigint): this {
    this.tag(field, WIRE_VARINT);
    this.rawVarint(BigInt(value));
    return this;
  }

  float(field: number, value: number): this {
    this.tag(field, WIRE_FIXED32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.push(b);
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    this.tag(field, WIRE_LEN);
    this.rawVarint(BigInt(value.length));
    this.push(value);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  message(field: number, build: (w: ProtoWriter) => void): this {
    const inner = new ProtoWriter();
    build(inner);
    return this.bytes(field, inner.finish());
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.length);
    let offset = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, offset);
      offset += chunk.length;
    }
    return out;
  }
}

// ---- ONNX messages ----

function rawData(t: TensorValue): Uint8Array {
  const n = t.values.length;
  const num = (i: number): number => Number(t.values[i]);
  const big = (i: number): bigint => {
    const v = t.values[i];
    return typeof v === "bigint" ? v : BigInt(Number(v));
  };
  let bytes: Uint8Array;
  switch (t.dtype) {
    case "float32": bytes = new Uint8Array(Float32Array.from({ length: n }, (_, i) => num(i)).buffer); break;
    case "float64": bytes = new Uint8Array(Float64Array.from({ length: n }, (_, i) => num(i)).buffer); break;
    case "float16": bytes = new Uint8Array(Uint16Array.from({ length: n }, (_, i) => toFloat16Bits(num(i))).buffer); break;
    case "int8": bytes = new Uint8Array(Int8Array.from({ length: n }, (_, i) => num(i)).buffer); break;
    case "int16": bytes = new Uint8Array(Int16Array.from({ length: n }, (_, i) => num(i)).buffer); break;
    case "int32": bytes = new Uint8Array(Int32Array.from({ length: n }, (_, i) => num(i)).buffer); break;
    case "int64": bytes = new Uint8Array(BigInt64Array.from({ length: n }, (_, i) => big(i)).buffer); break;
    case "uint8": bytes = Uint8Array.from({ length: n }, (_, i) => num(i)); break;
    case "uint16": bytes = new Uint8Array(Uint16Array.from({ length: n }, (_, i) => num(i)).buffer); break;
    case "uint32": bytes = new Uint8Array(Uint32Array.from({ length: n }, (_, i) => num(i)).buffer); break;
    case "uint64": bytes = new Uint8Array(BigUint64Array.from({ length: n }, (_, i) => big(i)).buffer); break;
    case "bool": bytes = Uint8Array.from({ length: n }, (_, i) => (t.values[i] === true || num(i) !== 0 ? 1 : 0)); break;
    case "string": throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "string tensors have no raw_data", { field: "dtype" });
  }
  return bytes;
}

function writeTensor(w: ProtoWriter, t: TensorValue): void {
  const count = t.dims.reduce((a, b) => a * b, 1);
  if (count !== t.values.length) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID",
      `tensor ${t.name ?? "(attribute)"}: dims [${t.dims.join(",")}] need ${count} values, got ${t.values.length}`, { field: "values" });
  }
  for (const d of t.dims) w.varint(1, d);
  w.varint(2, ONNX_DATA_TYPE[t.dtype]);
  if (t.name !== undefined) w.string(8, t.name);
  if (t.dtype === "string") {
    for (const v of t.values) w.string(6, String(v));
  } else {
    w.bytes(9, rawData(t));
  }
}

function writeTensorType(type: ProtoWriter, v: ValueSpec): void {
  type.message(1, (tensor) => {
    tensor.varint(1, ONNX_DATA_TYPE[v.dtype]);
    if (v.shape !== undefined) {
      const shape = v.shape;
      tensor.message(2, (s) => {
        for (const d of shape) {
          s.message(1, (dim) => (typeof d === "number" ? dim.varint(1, d) : dim.string(2, d)));
        }
      });
    }
  });
}

function writeValueInfo(w: ProtoWriter, v: ValueSpec): void {
  w.string(1, v.name);
  if (v.sequence === true) {
    w.message(2, (type) => type.message(4, (seq) => seq.message(1, (elem) => writeTensorType(elem, v))));
  } else {
    w.message(2, (type) => writeTensorType(type, v));
  }
}

const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_STRING = 3;
const ATTR_TENSOR = 4;
const ATTR_FLOATS = 6;
const ATTR_INTS = 7;
const ATTR_STRINGS = 8;

function writeAttribute(w: ProtoWriter, name: string, value: AttrValue): void {
  w.string(1, name);
  if (typeof value === "number") {
    if (Number.isInteger(value)) w.varint(20, ATTR_INT).varint(3, value);
    else w.varint(20, ATTR_FLOAT).float(2, value);
  } else if (typeof value === "string") {
    w.varint(20, ATTR_STRING).string(4, value);
  } else if (Array.isArray(value)) {
    if (value.every((v): v is string => typeof v === "string")) {
      w.varint(20, ATTR_STRINGS);
      for (const v of value) w.string(9, v);
    } else if (value.every((v) => typeof v === "number" && Number.isInteger(v))) {
      w.varint(20, ATTR_INTS);
      for (const v of value) w.varint(8, Number(v));
    } else {
      w.varint(20, ATTR_FLOATS);
      for (const v of value) w.float(7, Number(v));
    }
  } else if ("f" in value) {
    w.varint(20, ATTR_FLOAT).float(2, value.f);
  } else if ("i" in value) {
    w.varint(20, ATTR_INT).varint(3, value.i);
  } else if ("s" in value) {
    w.varint(20, ATTR_STRING).string(4, value.s);
  } else if ("floats" in value) {
    w.varint(20, ATTR_FLOATS);
    for (const v of value.floats) w.float(7, v);
  } else if ("ints" in value) {
    w.varint(20, ATTR_INTS);
    for (const v of value.ints) w.varint(8, v);
  } else if ("strings" in value) {
    w.varint(20, ATTR_STRINGS);
    for (const v of value.strings) w.string(9, v);
  } else {
    const t = value.t;
    w.varint(20, ATTR_TENSOR).message(5, (tw) => writeTensor(tw, t));
  }
}

function writeNode(w: ProtoWriter, node: NodeSpec, index: number): void {
  for (const i of node.inputs) w.string(1, i);
  for (const o of node.outputs) w.string(2, o);
  w.string(3, node.name ?? `${node.op.toLowerCase()}_${index}`);
  w.string(4, node.op);
  for (const [name, value] of Object.entries(node.attrs ?? {})) w.message(5, (a) => writeAttribute(a, name, value));
  if (node.domain !== undefined && node.domain !== "") w.string(7, node.domain);
}

/** Encodes a ModelProto (IR 8, default-domain opset 13 unless overridden). */
export function buildOnnxModel(spec: ModelSpec): Uint8Array {
  const opsets: Record<string, number> = { "": 13, ...spec.opsets };
  const w = new ProtoWriter();
  w.varint(1, spec.irVersion ?? 8);
  w.string(2, spec.producer ?? "mlship");
  w.message(7, (g) => {
    spec.nodes.forEach((node, i) => g.message(1, (n) => writeNode(n, node, i)));
    g.string(2, spec.graphName ?? "graph");
    for (const init of spec.initializers ?? []) g.message(5, (t) => writeTensor(t, init));
    for (const input of spec.inputs) g.message(11, (v) => writeValueInfo(v, input));
    for (const output of spec.outputs) g.message(12, (v) => writeValueInfo(v, output));
  });
  for (const [domain, version] of Object.entries(opsets)) {
    w.message(8, (o) => {
      if (domain !== "") o.string(1, domain);
      o.varint(2, version);
    });
  }
  return w.finish();
}

/** Builds the model and writes it to `path`; returns `path`. */
export function writeOnnxModel(path: string, spec: ModelSpec): string {
  writeFileSync(path, buildOnnxModel(spec));
  return path;
}
