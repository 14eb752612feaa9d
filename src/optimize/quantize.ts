/**
 * int8 dynamic quantization of MatMul and Gemm weights, written as standard ONNX operators:
 *
 * ```
 * X ──DynamicQuantizeLinear──> Xq (uint8), Xs, Xzp
 * MatMulInteger(Xq, Wq int8, Xzp, Wzp int8 = 0) ──Cast(float)──> Mul(Xs * Ws) ──(Gemm: + C)──> Y
 * ```
 *
 * Weights are quantized symmetrically (zero point 0, scale = max|w| / 127), per tensor or per output column. The
 * activations are quantized at run time, per tensor, asymmetric uint8 (that is what DynamicQuantizeLinear does).
 * onnxruntime fuses the pattern into its DynamicQuantizeMatMul / MatMulIntegerToFloat kernels at load time.
 * Graph inputs, outputs and their names are unchanged; the opset is raised to 11 when lower.
 */
import { MlshipError } from "../core/index.js";
import {
  DT,
  NameScope,
  decodeModel,
  elementCount,
  encodeModel,
  floatAttr,
  floatData,
  floatTensor,
  int8Tensor,
  intAttr,
  intAttribute,
  isInline,
  makeNode,
  num,
  requireOpset,
} from "./model.js";
import type { OnnxGraph, OnnxModel, OnnxNode, OnnxTensor } from "./model.js";

/** Options of `quantizeDynamic`. */
export interface DynamicQuantizeOptions {
  /** One scale per output column of each weight instead of one per weight (more accurate; default false). */
  perChannel?: boolean;
  /** Leave weights with fewer elements than this in float32 (default 0: quantize every eligible weight). */
  minElements?: number;
  /**
   * Also quantize Conv layers (ConvInteger with int8 weights, always per tensor: onnxruntime's CPU ConvInteger
   * refuses per-channel zero points). Default false: it shrinks the file but onnxruntime's ConvInteger kernel is
   * much slower than its float Conv (measured 10x at batch 32 on the digits CNN).
   */
  conv?: boolean;
}

/** What a quantization pass did. */
export interface QuantizeSummary {
  /** Nodes rewritten, as "op name" strings. */
  quantized: string[];
  /** Nodes left in float32 and why. */
  skipped: Array<{ node: string; reason: string }>;
}

interface Consumers {
  count(name: string): number;
}

function consumers(graph: OnnxGraph): Consumers {
  const counts = new Map<string, number>();
  for (const node of graph.node ?? []) for (const i of node.input ?? []) counts.set(i, (counts.get(i) ?? 0) + 1);
  for (const o of graph.output ?? []) if (o.name !== undefined) counts.set(o.name, (counts.get(o.name) ?? 0) + 1);
  return { count: (name) => counts.get(name) ?? 0 };
}

/** Label of a node for summaries. */
export function nodeLabel(node: OnnxNode): string {
  return `${node.op_type ?? "?"} ${node.name ?? (node.output ?? [])[0] ?? ""}`.trim();
}

/** Quantizes a float32 [K, N] matrix column-wise or per tensor, symmetric int8. */
export function quantizeWeight(w: Float32Array, k: number, n: number, perChannel: boolean): { q: Int8Array; scales: Float32Array } {
  const scales = new Float32Array(perChannel ? n : 1);
  if (perChannel) {
    for (let j = 0; j < n; j++) {
      let max = 0;
      for (let i = 0; i < k; i++) max = Math.max(max, Math.abs(w[i * n + j] ?? 0));
      scales[j] = max === 0 ? 1 : max / 127;
    }
  } else {
    let max = 0;
    for (const v of w) max = Math.max(max, Math.abs(v));
    scales[0] = max === 0 ? 1 : max / 127;
  }
  const q = new Int8Array(k * n);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < n; j++) {
      const s = scales[perChannel ? j : 0] ?? 1;
      q[i * n + j] = Math.max(-127, Math.min(127, Math.round((w[i * n + j] ?? 0) / s)));
    }
  }
  return { q, scales };
}

/** Transposes a row-major [rows, cols] matrix. */
export function transpose(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = w[r * cols + c] ?? 0;
  return out;
}

/** The [K, N] float32 weight a MatMul/Gemm node multiplies by, or why it cannot be quantized. */
function weightOf(node: OnnxNode, inits: Map<string, OnnxTensor>): { w: Float32Array; k: number; n: number; name: string } | string {
  const name = (node.input ?? [])[1] ?? "";
  const init = inits.get(name);
  if (init === undefined) return "its weight is not an initializer";
  if (init.data_type !== DT.FLOAT) return "its weight is not float32";
  if (!isInline(init)) return "its weight is stored as external data";
  const dims = (init.dims ?? []).map(num);
  if (dims.length !== 2) return `its weight has rank ${dims.length}, not 2`;
  const [d0 = 0, d1 = 0] = dims;
  const data = floatData(init);
  if (node.op_type === "Gemm") {
    if (intAttr(node, "transA", 0) !== 0) return "Gemm with transA=1";
    if (floatAttr(node, "alpha", 1) !== 1) return "Gemm with alpha != 1";
    if ((node.input ?? []).length > 2 && (node.input ?? [])[2] !== "" && floatAttr(node, "beta", 1) !== 1) return "Gemm with beta != 1";
    if (intAttr(node, "transB", 0) === 1) return { w: transpose(data, d0, d1), k: d1, n: d0, name };
  }
  return { w: data, k: d0, n: d1, name };
}

interface ConvWeight {
  w: Float32Array;
  dims: number[];
  name: string;
  /** The bias initializer's values, when the Conv has one. */
  bias?: Float32Array;
}

function convWeightOf(node: OnnxNode, inits: Map<string, OnnxTensor>): ConvWeight | string {
  const name = (node.input ?? [])[1] ?? "";
  const init = inits.get(name);
  if (init === undefined) return "its weight is not an initializer";
  if (init.data_type !== DT.FLOAT || !isInline(init)) return "its weight is not an inline float32 tensor";
  const dims = (init.dims ?? []).map(num);
  if (dims.length < 3) return `its weight has rank ${dims.length}`;
  const biasName = (node.input ?? [])[2];
  if (biasName === undefined || biasName === "") return { w: floatData(init), dims, name };
  const bias = inits.get(biasName);
  if (bias === undefined || bias.data_type !== DT.FLOAT || !isInline(bias)) return "its bias is not an inline float32 initializer";
  return { w: floatData(init), dims, name, bias: floatData(bias) };
}

/** Conv -> ConvInteger(Xq, Wq int8, Xzp, 0) -> Cast -> Mul(xs * ws) [-> Add(bias as [M, 1, ...])]. */
function quantizeConv(
  node: OnnxNode,
  weight: ConvWeight,
  xq: { q: string; scale: string; zp: string },
  perChannel: boolean,
  names: NameScope,
  newInits: OnnxTensor[],
): OnnxNode[] {
  const m = weight.dims[0] ?? 1;
  const per = weight.w.length / m;
  // Rows = output channels: the [M, per] view quantized per column of its transpose = per output channel.
  const { q, scales } = quantizeWeight(transpose(weight.w, m, per), per, m, perChannel);
  const qOut = new Int8Array(weight.w.length);
  for (let i = 0; i < per; i++) for (let j = 0; j < m; j++) qOut[j * per + i] = q[i * m + j] ?? 0;
  const base = node.name !== undefined && node.name !== "" ? node.name : weight.name;
  const ones = weight.dims.slice(2).map(() => 1);
  const wq = names.fresh(`${weight.name}_quantized`);
  const ws = names.fresh(`${weight.name}_scale`);
  const wzp = names.fresh(`${weight.name}_zero_point`);
  newInits.push(int8Tensor(wq, weight.dims, qOut));
  newInits.push(perChannel ? floatTensor(ws, [m, ...ones], scales) : floatTensor(ws, [], scales));
  newInits.push(perChannel ? int8Tensor(wzp, [m], new Int8Array(m)) : int8Tensor(wzp, [], new Int8Array(1)));
  const y = (node.output ?? [])[0] ?? "";
  const bias = (node.input ?? [])[2] ?? "";
  const hasBias = weight.bias !== undefined;
  const acc = names.fresh(`${base}_ConvInteger_output`);
  const accF = names.fresh(`${base}_cast_output`);
  const scale = names.fresh(`${base}_output_scale`);
  const scaled = hasBias ? names.fresh(`${base}_scaled_output`) : y;
  const nodes = [
    makeNode("ConvInteger", [xq.q, wq, xq.zp, wzp], [acc], names.fresh(`${base}_ConvInteger`), node.attribute ?? []),
    makeNode("Cast", [acc], [accF], names.fresh(`${base}_Cast`), [intAttribute("to", DT.FLOAT)]),
    makeNode("Mul", [xq.scale, ws], [scale], names.fresh(`${base}_scale_Mul`)),
    makeNode("Mul", [accF, scale], [scaled], names.fresh(`${base}_output_Mul`)),
  ];
  if (weight.bias !== undefined) {
    // The bias [M] broadcast over [N, M, H, W] needs the shape [M, 1, 1].
    const b = names.fresh(`${bias}_reshaped`);
    newInits.push(floatTensor(b, [m, ...ones], weight.bias));
    nodes.push(makeNode("Add", [scaled, b], [y], names.fresh(`${base}_bias_Add`)));
  }
  return nodes;
}

/**
 * Rewrites every MatMul and Gemm whose weight (second input) is a float32 2-D initializer into the dynamic int8
 * form. Returns a new model; the input is not modified. Nothing eligible -> MLSHIP_ERR_PACKAGE_UNSUPPORTED.
 */
export function quantizeDynamic(source: OnnxModel, options: DynamicQuantizeOptions = {}): { model: OnnxModel; summary: QuantizeSummary } {
  const model = cloneModel(source);
  const graph = model.graph as OnnxGraph;
  const perChannel = options.perChannel ?? false;
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name ?? "", t]));
  const names = new NameScope(graph);
  const summary: QuantizeSummary = { quantized: [], skipped: [] };
  const newInits: OnnxTensor[] = [];
  const quantizedInputs = new Map<string, { q: string; scale: string; zp: string }>();
  const out: OnnxNode[] = [];
  const replacedWeights = new Set<string>();

  for (const node of graph.node ?? []) {
    const op = node.op_type ?? "";
    if ((node.domain ?? "") === "" && op === "Conv" && options.conv === true) {
      const conv = convWeightOf(node, inits);
      if (typeof conv === "string") {
        summary.skipped.push({ node: nodeLabel(node), reason: conv });
        out.push(node);
        continue;
      }
      const x = (node.input ?? [])[0] ?? "";
      let xq = quantizedInputs.get(x);
      if (xq === undefined) {
        xq = { q: names.fresh(`${x}_quantized`), scale: names.fresh(`${x}_scale`), zp: names.fresh(`${x}_zero_point`) };
        quantizedInputs.set(x, xq);
        out.push(makeNode("DynamicQuantizeLinear", [x], [xq.q, xq.scale, xq.zp], names.fresh(`${x}_DynamicQuantizeLinear`)));
      }
      // onnxruntime's CPU ConvInteger takes only a per-tensor weight zero point: Conv weights are always per tensor.
      out.push(...quantizeConv(node, conv, xq, false, names, newInits));
      replacedWeights.add(conv.name);
      const biasName = (node.input ?? [])[2];
      if (biasName !== undefined && biasName !== "") replacedWeights.add(biasName);
      summary.quantized.push(nodeLabel(node));
      continue;
    }
    if ((node.domain ?? "") !== "" || (op !== "MatMul" && op !== "Gemm")) {
      out.push(node);
      continue;
    }
    const weight = weightOf(node, inits);
    if (typeof weight === "string") {
      summary.skipped.push({ node: nodeLabel(node), reason: weight });
      out.push(node);
      continue;
    }
    if (weight.k * weight.n < (options.minElements ?? 0)) {
      summary.skipped.push({ node: nodeLabel(node), reason: `weight has fewer than ${options.minElements ?? 0} elements` });
      out.push(node);
      continue;
    }
    const base = node.name !== undefined && node.name !== "" ? node.name : weight.name;
    const x = (node.input ?? [])[0] ?? "";
    const y = (node.output ?? [])[0] ?? "";
    let xq = quantizedInputs.get(x);
    if (xq === undefined) {
      xq = { q: names.fresh(`${x}_quantized`), scale: names.fresh(`${x}_scale`), zp: names.fresh(`${x}_zero_point`) };
      quantizedInputs.set(x, xq);
      out.push(makeNode("DynamicQuantizeLinear", [x], [xq.q, xq.scale, xq.zp], names.fresh(`${x}_DynamicQuantizeLinear`)));
    }
    const { q, scales } = quantizeWeight(weight.w, weight.k, weight.n, perChannel);
    const wq = names.fresh(`${weight.name}_quantized`);
    const ws = names.fresh(`${weight.name}_scale`);
    const wzp = names.fresh(`${weight.name}_zero_point`);
    newInits.push(int8Tensor(wq, [weight.k, weight.n], q));
    newInits.push(perChannel ? floatTensor(ws, [weight.n], scales) : floatTensor(ws, [], scales));
    newInits.push(perChannel ? int8Tensor(wzp, [weight.n], new Int8Array(weight.n)) : int8Tensor(wzp, [], new Int8Array(1)));
    replacedWeights.add(weight.name);

    const acc = names.fresh(`${base}_MatMulInteger_output`);
    const accF = names.fresh(`${base}_cast_output`);
    const scale = names.fresh(`${base}_output_scale`);
    const bias = op === "Gemm" ? (node.input ?? [])[2] : undefined;
    const hasBias = bias !== undefined && bias !== "";
    const scaled = hasBias ? names.fresh(`${base}_scaled_output`) : y;
    out.push(makeNode("MatMulInteger", [xq.q, wq, xq.zp, wzp], [acc], names.fresh(`${base}_MatMulInteger`)));
    out.push(makeNode("Cast", [acc], [accF], names.fresh(`${base}_Cast`), [intAttribute("to", DT.FLOAT)]));
    out.push(makeNode("Mul", [xq.scale, ws], [scale], names.fresh(`${base}_scale_Mul`)));
    out.push(makeNode("Mul", [accF, scale], [scaled], names.fresh(`${base}_output_Mul`)));
    if (hasBias) out.push(makeNode("Add", [scaled, bias], [y], names.fresh(`${base}_bias_Add`)));
    summary.quantized.push(nodeLabel(node));
  }

  if (summary.quantized.length === 0) {
    const why = summary.skipped.map((s) => `${s.node}: ${s.reason}`).join("; ");
    throw new MlshipError(
      "MLSHIP_ERR_PACKAGE_UNSUPPORTED",
      `int8 dynamic quantization found no MatMul or Gemm with a float32 weight initializer to quantize${why === "" ? "" : ` (${why})`}`,
    );
  }
  graph.node = out;
  finishInitializers(graph, replacedWeights, newInits);
  requireOpset(model, 11);
  return { model, summary };
}

/** Drops replaced initializers no node uses any more (and their graph-input entries), then adds the new ones. */
export function finishInitializers(graph: OnnxGraph, replaced: Set<string>, added: OnnxTensor[]): void {
  const used = consumers(graph);
  const dropped = new Set([...replaced].filter((name) => used.count(name) === 0));
  graph.initializer = [...(graph.initializer ?? []).filter((t) => !dropped.has(t.name ?? "")), ...added];
  graph.input = (graph.input ?? []).filter((v) => !dropped.has(v.name ?? ""));
}

/** A deep copy of a decoded model (encode + decode: exact). */
export function cloneModel(model: OnnxModel): OnnxModel {
  return decodeModel(encodeModel(model));
}

/** Float32 weight bytes a model holds in its initializers, and all initializer bytes. */
export function initializerBytes(model: OnnxModel): { float32: number; total: number } {
  let float32 = 0;
  let total = 0;
  for (const t of model.graph?.initializer ?? []) {
    const bytes = t.raw_data?.length ?? 0;
    total += bytes;
    if (t.data_type === DT.FLOAT) float32 += bytes > 0 ? bytes : elementCount(t.dims) * 4;
  }
  return { float32, total };
}
