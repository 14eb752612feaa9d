/** The small graphs the runtime tests build (shared by the builder test, which loads each in onnxruntime directly). */
import type { ModelSpec } from "../helpers/onnx-builder.js";

export const MODELS = {
  /** Two float32 inputs added. */
  add2: {
    inputs: [{ name: "a", dtype: "float32", shape: ["batch", 3] }, { name: "b", dtype: "float32", shape: ["batch", 3] }],
    outputs: [{ name: "sum", dtype: "float32", shape: ["batch", 3] }],
    nodes: [{ op: "Add", inputs: ["a", "b"], outputs: ["sum"] }],
  },
  /** int64 in, int64 initializer added, and an Identity to check exact 64-bit values. */
  int64: {
    inputs: [{ name: "ids", dtype: "int64", shape: ["batch", 2] }],
    outputs: [{ name: "plus", dtype: "int64", shape: ["batch", 2] }, { name: "same", dtype: "int64", shape: ["batch", 2] }],
    nodes: [
      { op: "Add", inputs: ["ids", "offset"], outputs: ["plus"] },
      { op: "Identity", inputs: ["ids"], outputs: ["same"] },
    ],
    initializers: [{ name: "offset", dtype: "int64", dims: [2], values: [10n, -(2n ** 40n)] }],
  },
  /** Boolean logic. */
  bool: {
    inputs: [{ name: "p", dtype: "bool", shape: ["n"] }, { name: "q", dtype: "bool", shape: ["n"] }],
    outputs: [{ name: "not_p", dtype: "bool", shape: ["n"] }, { name: "p_and_q", dtype: "bool", shape: ["n"] }],
    nodes: [
      { op: "Not", inputs: ["p"], outputs: ["not_p"] },
      { op: "And", inputs: ["p", "q"], outputs: ["p_and_q"] },
    ],
  },
  /** Strings pass through. */
  string: {
    inputs: [{ name: "text", dtype: "string", shape: ["batch", 2] }],
    outputs: [{ name: "echo", dtype: "string", shape: ["batch", 2] }],
    nodes: [{ op: "Identity", inputs: ["text"], outputs: ["echo"] }],
  },
  /** No batch axis: a fixed [3] vector doubled. */
  fixed: {
    inputs: [{ name: "v", dtype: "float32", shape: [3] }],
    outputs: [{ name: "doubled", dtype: "float32", shape: [3] }],
    nodes: [{ op: "Mul", inputs: ["v", "two"], outputs: ["doubled"] }],
    initializers: [{ name: "two", dtype: "float32", dims: [], values: [2] }],
  },
  /** A dynamic second axis: rows of any length summed. */
  ragged: {
    inputs: [{ name: "x", dtype: "float32", shape: ["batch", "n"] }],
    outputs: [{ name: "total", dtype: "float32", shape: ["batch"] }],
    nodes: [{ op: "ReduceSum", inputs: ["x", "axes"], outputs: ["total"], attrs: { keepdims: 0 } }],
    initializers: [{ name: "axes", dtype: "int64", dims: [1], values: [1] }],
  },
  /** Every other dtype through Identity, plus float16 cast to float32 to check the raw bits are read as halves. */
  dtypes: {
    inputs: [
      { name: "f16", dtype: "float16", shape: ["n"] },
      { name: "f64", dtype: "float64", shape: ["n"] },
      { name: "i8", dtype: "int8", shape: ["n"] },
      { name: "i16", dtype: "int16", shape: ["n"] },
      { name: "i32", dtype: "int32", shape: ["n"] },
      { name: "u8", dtype: "uint8", shape: ["n"] },
      { name: "u16", dtype: "uint16", shape: ["n"] },
      { name: "u32", dtype: "uint32", shape: ["n"] },
      { name: "u64", dtype: "uint64", shape: ["n"] },
    ],
    outputs: [
      { name: "f16_out", dtype: "float16", shape: ["n"] },
      { name: "f16_as_f32", dtype: "float32", shape: ["n"] },
      { name: "f64_out", dtype: "float64", shape: ["n"] },
      { name: "i8_out", dtype: "int8", shape: ["n"] },
      { name: "i16_out", dtype: "int16", shape: ["n"] },
      { name: "i32_out", dtype: "int32", shape: ["n"] },
      { name: "u8_out", dtype: "uint8", shape: ["n"] },
      { name: "u16_out", dtype: "uint16", shape: ["n"] },
      { name: "u32_out", dtype: "uint32", shape: ["n"] },
      { name: "u64_out", dtype: "uint64", shape: ["n"] },
    ],
    nodes: [
      { op: "Identity", inputs: ["f16"], outputs: ["f16_out"] },
      { op: "Cast", inputs: ["f16"], outputs: ["f16_as_f32"], attrs: { to: 1 } },
      ...["f64", "i8", "i16", "i32", "u8", "u16", "u32", "u64"].map((n) => ({ op: "Identity", inputs: [n], outputs: [`${n}_out`] })),
    ],
  },
  /** Valid feeds that ORT still rejects at run time when the two widths differ. */
  broadcastFail: {
    inputs: [{ name: "a", dtype: "float32", shape: ["batch", "n"] }, { name: "b", dtype: "float32", shape: ["batch", "m"] }],
    outputs: [{ name: "sum", dtype: "float32", shape: ["batch", -1] }],
    nodes: [{ op: "Add", inputs: ["a", "b"], outputs: ["sum"] }],
  },
  /** A tensor output next to a sequence output (which mlship leaves out). */
  withSequence: {
    inputs: [{ name: "x", dtype: "float32", shape: ["batch", 2] }],
    outputs: [{ name: "y", dtype: "float32", shape: ["batch", 2] }, { name: "seq", dtype: "float32", shape: ["batch", 2], sequence: true }],
    nodes: [
      { op: "Identity", inputs: ["x"], outputs: ["y"] },
      { op: "SequenceConstruct", inputs: ["x"], outputs: ["seq"] },
    ],
  },
  /** Roughly 0.1-0.3 s per run of a [256,1024] batch on one thread: keeps a worker busy for crash tests. */
  slow: {
    inputs: [{ name: "x", dtype: "float32", shape: ["batch", 1024] }],
    outputs: [{ name: "y", dtype: "float32", shape: ["batch", 1024] }],
    nodes: Array.from({ length: 8 }, (_, i) => ({ op: "MatMul", inputs: [i === 0 ? "x" : `h${i}`, "w"], outputs: [i === 7 ? "y" : `h${i + 1}`] })),
    initializers: [{ name: "w", dtype: "float32", dims: [1024, 1024], values: new Array<number>(1024 * 1024).fill(1 / 1024) }],
  },
} satisfies Record<string, ModelSpec>;

export type ModelName = keyof typeof MODELS;
