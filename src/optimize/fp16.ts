/**
 * float32 -> float16 conversion of a model's weights and computation, keeping float32 graph inputs and outputs:
 *
 * - float32 initializers, Constant node values and ConstantOfShape values become float16; Cast nodes that cast to
 *   float32 cast to float16 instead;
 * - a Cast to float16 is inserted after every float32 graph input and a Cast back to float32 before every float32
 *   graph output, so the model's signature (names, dtypes, shapes) does not change;
 * - nodes whose op is in the keep list (`FP16_KEEP_FLOAT32`, plus `keep` from the caller) and nodes of other
 *   domains stay in float32, with Casts around them;
 * - value types are followed through the graph with a small table of op rules (outputs of ArgMax/Shape/... are
 *   integers, Cast follows its `to`, other ops take the type of their first float input); float `value_info`
 *   entries are dropped (onnxruntime infers them again).
 *
 * onnxruntime's CPU provider has float16 kernels for only some ops; for the rest it inserts Casts to float32 by
 * itself at load time (its InsertCastTransformer), so a converted model always runs, but on CPU the win is the file
 * size, not the latency.
 */
import { MlshipError } from "../core/index.js";
import { ATTR, DT, NameScope, attribute, decodeModel, encodeModel, float16Tensor, floatData, isInline, makeNode, intAttribute } from "./model.js";
import type { OnnxAttribute, OnnxGraph, OnnxModel, OnnxNode, OnnxTensor } from "./model.js";

/** Ops kept in float32 by default: their float inputs have to be float32 (scales/ranges), or float16 loses too much. */
export const FP16_KEEP_FLOAT32: readonly string[] = ["Resize", "Upsample", "Range", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"];

/** Ops of quantized models: fp16 conversion refuses such a model. */
const QUANTIZED_OPS = new Set([
  "DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear", "MatMulInteger", "ConvInteger", "QLinearMatMul", "QLinearConv",
]);

/** Ops whose outputs are not of their input's type. */
const OUTPUT_TYPE: Record<string, number> = {
  ArgMax: DT.INT64, ArgMin: DT.INT64, Shape: DT.INT64, Size: DT.INT64, NonZero: DT.INT64,
  Equal: 9, Less: 9, Greater: 9, LessOrEqual: 9, GreaterOrEqual: 9, Not: 9, And: 9, Or: 9, Xor: 9, IsNaN: 9, IsInf: 9,
};

/** Options of `convertFp16`. */
export interface Fp16Options {
  /** More op types to keep in float32 (added to `FP16_KEEP_FLOAT32`). */
  keep?: string[];
}

/** What the conversion did. */
export interface Fp16Summary {
  /** float32 initializers converted. */
  initializers: number;
  /** Nodes kept in float32 (op and name). */
  keptFloat32: string[];
  /** Casts inserted at the graph boundary and around kept nodes. */
  casts: number;
}

function castNode(from: string, to: string, dtype: number, name: string): OnnxNode {
  return makeNode("Cast", [from], [to], name, [intAttribute("to", dtype)]);
}

function tensorToFp16(t: OnnxTensor): OnnxTensor {
  if (t.data_type !== DT.FLOAT || !isInline(t)) return t;
  const dims = (t.dims ?? []).map((d) => (typeof d === "number" ? d : d.toNumber()));
  const out = float16Tensor(t.name ?? "", dims, floatData(t));
  if (t.name === undefined) delete out.name;
  if (t.doc_string !== undefined) out.doc_string = t.doc_string;
  return out;
}

function convertAttributes(node: OnnxNode): OnnxAttribute[] | undefined {
  const op = node.op_type;
  return node.attribute?.map((a) => {
    // Constant(value_float / value_floats) is a float32 tensor: written again as a float16 `value` tensor.
    if (op === "Constant" && a.name === "value_float" && a.f !== undefined) return { name: "value", type: ATTR.TENSOR, t: float16Tensor("", [], [a.f]) };
    if (op === "Constant" && a.name === "value_floats") {
      const values = a.floats ?? [];
      return { name: "value", type: ATTR.TENSOR, t: float16Tensor("", [values.length], values) };
    }
    if (op === "Cast" && a.name === "to" && Number(a.i ?? 0) === DT.FLOAT) return { ...a, i: DT.FLOAT16 };
    if ((op === "Constant" || op === "ConstantOfShape") && a.name === "value" && a.t !== undefined) return { ...a, t: tensorToFp16(a.t) };
    return a;
  });
}

/** The element type a (converted) Constant / ConstantOfShape node produces. */
function constantType(node: OnnxNode): number | undefined {
  const value = attribute(node, "value");
  if (value?.t !== undefined) return value.t.data_type;
  if (node.op_type === "ConstantOfShape") return DT.FLOAT;
  if (attribute(node, "value_int") !== undefined || attribute(node, "value_ints") !== undefined) return DT.INT64;
  if (attribute(node, "value_string") !== undefined || attribute(node, "value_strings") !== undefined) return 8;
  return undefined;
}

/**
 * Converts a model to float16 (see the module comment). Returns a new model; the input is not modified.
 */
export function convertFp16(source: OnnxModel, options: Fp16Options = {}): { model: OnnxModel; summary: Fp16Summary } {
  const model = decodeModel(encodeModel(source));
  const graph = model.graph as OnnxGraph;
  const control = (graph.node ?? []).find((n) => (n.attribute ?? []).some((a) => a.g !== undefined && a.g !== null || (a.graphs ?? []).length > 0));
  if (control !== undefined) {
    throw new MlshipError(
      "MLSHIP_ERR_PACKAGE_UNSUPPORTED",
      `fp16 conversion does not handle subgraphs yet (${control.op_type ?? ""} ${control.name ?? ""} has one)`,
    );
  }
  const quantized = (graph.node ?? []).find((n) => QUANTIZED_OPS.has(n.op_type ?? ""));
  if (quantized !== undefined) {
    throw new MlshipError(
      "MLSHIP_ERR_PACKAGE_UNSUPPORTED",
      `the model is already quantized (it has a ${quantized.op_type ?? ""} node); convert its float32 parent to fp16 instead`,
    );
  }
  const keep = new Set([...FP16_KEEP_FLOAT32, ...(options.keep ?? [])]);
  const names = new NameScope(graph);
  const summary: Fp16Summary = { initializers: 0, keptFloat32: [], casts: 0 };
  /** Element type of each value in the converted graph. */
  const types = new Map<string, number>();
  /** float32 copies of float16 values, made once for kept nodes. */
  const float32Copies = new Map<string, string>();
  const float32Inits = new Map<string, OnnxTensor>();
  const out: OnnxNode[] = [];

  for (const t of graph.initializer ?? []) {
    if (t.data_type === DT.FLOAT && isInline(t)) {
      float32Inits.set(t.name ?? "", t);
      summary.initializers += 1;
    }
    types.set(t.name ?? "", t.data_type === DT.FLOAT && isInline(t) ? DT.FLOAT16 : (t.data_type ?? 0));
  }
  graph.initializer = (graph.initializer ?? []).map(tensorToFp16);
  const initNames = new Set((graph.initializer ?? []).map((t) => t.name ?? ""));

  // Graph inputs: float32 ones are cast to float16 once, under a new name the nodes then read.
  const renamedInputs = new Map<string, string>();
  for (const input of graph.input ?? []) {
    const name = input.name ?? "";
    if (initNames.has(name)) continue;
    const type = input.type?.tensor_type?.elem_type ?? 0;
    if (type === DT.FLOAT) {
      const half = names.fresh(`${name}_fp16`);
      out.push(castNode(name, half, DT.FLOAT16, names.fresh(`${name}_Cast_fp16`)));
      summary.casts += 1;
      renamedInputs.set(name, half);
      types.set(half, DT.FLOAT16);
      float32Copies.set(half, name);
    }
    types.set(name, type);
  }

  const float32Of = (value: string): string => {
    const existing = float32Copies.get(value);
    if (existing !== undefined) return existing;
    const init = float32Inits.get(value);
    if (init !== undefined) {
      // A kept node reads the original float32 weight, not a Cast of its float16 copy.
      const copy = names.fresh(`${value}_fp32`);
      graph.initializer = [...(graph.initializer ?? []), { ...init, name: copy }];
      float32Copies.set(value, copy);
      return copy;
    }
    const copy = names.fresh(`${value}_fp32`);
    out.push(castNode(value, copy, DT.FLOAT, names.fresh(`${value}_Cast_fp32`)));
    summary.casts += 1;
    float32Copies.set(value, copy);
    return copy;
  };

  for (const original of graph.node ?? []) {
    const node: OnnxNode = { ...original, input: (original.input ?? []).map((i) => renamedInputs.get(i) ?? i) };
    const op = node.op_type ?? "";
    const foreign = (node.domain ?? "") !== "" && node.domain !== "ai.onnx";
    if (keep.has(op) || foreign) {
      summary.keptFloat32.push(`${op} ${node.name ?? ""}`.trim());
      node.input = (node.input ?? []).map((i) => (i !== "" && types.get(i) === DT.FLOAT16 ? float32Of(i) : i));
      const outputs: string[] = [];
      const after: OnnxNode[] = [];
      const firstFloat = (node.input ?? []).map((i) => types.get(i)).find((t) => t === DT.FLOAT);
      for (const o of node.output ?? []) {
        const t = OUTPUT_TYPE[op] ?? firstFloat ?? (op.startsWith("Random") ? DT.FLOAT : undefined);
        if (o !== "" && t === DT.FLOAT) {
          const f32 = names.fresh(`${o}_fp32`);
          outputs.push(f32);
          after.push(castNode(f32, o, DT.FLOAT16, names.fresh(`${o}_Cast_fp16`)));
          summary.casts += 1;
          types.set(f32, DT.FLOAT);
          float32Copies.set(o, f32);
          types.set(o, DT.FLOAT16);
        } else {
          outputs.push(o);
          if (t !== undefined) types.set(o, t);
        }
      }
      node.output = outputs;
      out.push(node, ...after);
      continue;
    }
    const attrs = convertAttributes(node);
    if (attrs !== undefined) node.attribute = attrs;
    const inputTypes = (node.input ?? []).map((i) => types.get(i));
    let outType: number | undefined = OUTPUT_TYPE[op];
    if (op === "Cast") outType = Number(attribute(node, "to")?.i ?? 0);
    else if (op === "Constant" || op === "ConstantOfShape") outType = constantType(node);
    else outType ??= inputTypes.find((t) => t === DT.FLOAT16 || t === DT.FLOAT) ?? inputTypes.find((t) => t !== undefined);
    for (const o of node.output ?? []) if (o !== "" && outType !== undefined) types.set(o, outType);
    out.push(node);
  }

  // Graph outputs that were float32 and are now float16: the producer writes a new name, a Cast restores the old.
  const rename = new Map<string, string>();
  const tail: OnnxNode[] = [];
  for (const output of graph.output ?? []) {
    const name = output.name ?? "";
    if (output.type?.tensor_type?.elem_type === DT.FLOAT && types.get(name) === DT.FLOAT16) {
      const half = names.fresh(`${name}_fp16`);
      rename.set(name, half);
      tail.push(castNode(half, name, DT.FLOAT, names.fresh(`${name}_Cast_fp32`)));
      summary.casts += 1;
    }
  }
  if (rename.size > 0) {
    for (const node of out) {
      node.output = (node.output ?? []).map((o) => rename.get(o) ?? o);
      node.input = (node.input ?? []).map((i) => rename.get(i) ?? i);
    }
  }
  graph.node = [...out, ...tail];
  graph.value_info = (graph.value_info ?? []).filter((v) => {
    const t = v.type?.tensor_type?.elem_type;
    return t !== DT.FLOAT && t !== DT.FLOAT16;
  });
  return { model, summary };
}
