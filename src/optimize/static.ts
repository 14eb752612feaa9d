/**
 * int8 static quantization in the QDQ form: activation ranges come from calibration data, weights are stored as
 * int8 initializers, and each quantized MatMul/Gemm reads
 *
 * ```
 * X ─QuantizeLinear(xs, xzp uint8)─DequantizeLinear─> X'      Wq int8 ─DequantizeLinear(ws, 0)─> W'
 * MatMul/Gemm(X', W', ...)   (the original node, inputs renamed)
 * ```
 *
 * onnxruntime fuses the pattern into its integer kernels (QLinearMatMul / QGemm) at load time.
 * Ranges: `minmax` takes the smallest and largest value seen (extended to include 0); `percentile` takes the
 * (100 - p)th and pth percentiles, which ignores rare outliers.
 */
import * as ort from "onnxruntime-node";
import { MlshipError } from "../core/index.js";
import { inputInfo, rowWidth, servingSessionOptions } from "./evaluate.js";
import type { ValidationSet } from "./evaluate.js";
import {
  DT,
  NameScope,
  encodeModel,
  floatAttr,
  floatData,
  floatTensor,
  int32Tensor,
  int8Tensor,
  intAttr,
  intAttribute,
  isInline,
  makeNode,
  num,
  requireOpset,
  uint8Tensor,
} from "./model.js";
import type { OnnxGraph, OnnxModel, OnnxNode, OnnxTensor } from "./model.js";
import { cloneModel, finishInitializers, nodeLabel, transpose } from "./quantize.js";
import type { QuantizeSummary } from "./quantize.js";

export type CalibrationMethod = "minmax" | "percentile";

/** Options of `quantizeStatic`. */
export interface StaticQuantizeOptions {
  method?: CalibrationMethod;
  /** For `percentile`: the upper percentile kept (default 99.99; the lower one is 100 - p). */
  percentile?: number;
  perChannel?: boolean;
  /** Quantize Conv layers too (QDQ on input, weight, int32 bias and output; default true). */
  conv?: boolean;
}

interface ConvContext {
  names: NameScope;
  newInits: OnnxTensor[];
  before: Map<OnnxNode, OnnxNode[]>;
  after: Map<OnnxNode, OnnxNode[]>;
  perChannel: boolean;
  dequantized: Map<string, string>;
  x: { scale: number; zeroPoint: number } | undefined;
  y: { scale: number; zeroPoint: number };
  inits: Map<string, OnnxTensor>;
}

/**
 * Conv in QDQ form: X' = DQ(Q(X)), W' = DQ(Wq int8, per tensor or per output channel on axis 0),
 * B' = DQ(Bq int32, scale xs * ws, zero point 0), Conv(X', W', B') -> Q -> DQ -> Y (the original output name).
 */
function quantizeConvQdq(t: Target, c: ConvContext): void {
  const node = t.node;
  const wName = t.weight.name ?? "";
  const dims = (t.weight.dims ?? []).map(num);
  const m = dims[0] ?? 1;
  const data = floatData(t.weight);
  const per = data.length / m;
  const scales = new Float32Array(c.perChannel ? m : 1);
  for (let o = 0; o < m; o++) {
    for (let i = 0; i < per; i++) {
      const k = c.perChannel ? o : 0;
      scales[k] = Math.max(scales[k] ?? 0, Math.abs(data[o * per + i] ?? 0));
    }
  }
  for (let k = 0; k < scales.length; k++) scales[k] = (scales[k] ?? 0) === 0 ? 1 : (scales[k] ?? 0) / 127;
  const q = new Int8Array(data.length);
  for (let o = 0; o < m; o++) {
    const s = scales[c.perChannel ? o : 0] ?? 1;
    for (let i = 0; i < per; i++) q[o * per + i] = Math.max(-127, Math.min(127, Math.round((data[o * per + i] ?? 0) / s)));
  }
  const { names } = c;
  const wq = names.fresh(`${wName}_quantized`);
  const ws = names.fresh(`${wName}_scale`);
  const wzp = names.fresh(`${wName}_zero_point`);
  const wdq = names.fresh(`${wName}_DequantizeLinear_output`);
  c.newInits.push(
    int8Tensor(wq, dims, q),
    c.perChannel ? floatTensor(ws, [m], scales) : floatTensor(ws, [], scales),
    c.perChannel ? int8Tensor(wzp, [m], new Int8Array(m)) : int8Tensor(wzp, [], new Int8Array(1)),
  );
  const axis = c.perChannel ? [intAttribute("axis", 0)] : [];
  const pre = [makeNode("DequantizeLinear", [wq, ws, wzp], [wdq], names.fresh(`${wName}_DequantizeLinear`), axis)];
  const inputs = [...(node.input ?? [])];
  inputs[0] = c.dequantized.get(t.x) ?? t.x;
  inputs[1] = wdq;
  const biasName = inputs[2];
  if (biasName !== undefined && biasName !== "") {
    const bias = floatData(c.inits.get(biasName) as OnnxTensor);
    const xs = c.x?.scale ?? 1;
    const bs = Float32Array.from(scales, (s) => s * xs);
    const bq = Array.from(bias, (b, o) => Math.round(b / (bs[c.perChannel ? o : 0] ?? 1)));
    const bqName = names.fresh(`${biasName}_quantized`);
    const bsName = names.fresh(`${biasName}_scale`);
    const bzName = names.fresh(`${biasName}_zero_point`);
    const bdq = names.fresh(`${biasName}_DequantizeLinear_output`);
    c.newInits.push(
      int32Tensor(bqName, [m], bq),
      c.perChannel ? floatTensor(bsName, [m], bs) : floatTensor(bsName, [], bs),
      c.perChannel ? int32Tensor(bzName, [m], new Int32Array(m)) : int32Tensor(bzName, [], [0]),
    );
    pre.push(makeNode("DequantizeLinear", [bqName, bsName, bzName], [bdq], names.fresh(`${biasName}_DequantizeLinear`), axis));
    inputs[2] = bdq;
  }
  node.input = inputs;
  c.before.set(node, [...(c.before.get(node) ?? []), ...pre]);
  const y = (node.output ?? [])[0] ?? "";
  const raw = names.fresh(`${y}_float`);
  const ys = names.fresh(`${y}_scale`);
  const yzp = names.fresh(`${y}_zero_point`);
  const yq = names.fresh(`${y}_QuantizeLinear_output`);
  c.newInits.push(floatTensor(ys, [], [c.y.scale]), uint8Tensor(yzp, [], Uint8Array.of(c.y.zeroPoint)));
  node.output = [raw, ...(node.output ?? []).slice(1)];
  c.after.set(node, [
    makeNode("QuantizeLinear", [raw, ys, yzp], [yq], names.fresh(`${y}_QuantizeLinear`)),
    makeNode("DequantizeLinear", [yq, ys, yzp], [y], names.fresh(`${y}_DequantizeLinear`)),
  ]);
}

interface Target {
  node: OnnxNode;
  x: string;
  weight: OnnxTensor;
}

function eligible(node: OnnxNode, inits: Map<string, OnnxTensor>): OnnxTensor | string {
  const init = inits.get((node.input ?? [])[1] ?? "");
  if (init === undefined) return "its weight is not an initializer";
  if (init.data_type !== DT.FLOAT || !isInline(init)) return "its weight is not an inline float32 tensor";
  if (node.op_type === "Conv") {
    if ((init.dims ?? []).length < 3) return "its weight has rank < 3";
    const bias = (node.input ?? [])[2];
    if (bias !== undefined && bias !== "") {
      const b = inits.get(bias);
      if (b === undefined || b.data_type !== DT.FLOAT || !isInline(b)) return "its bias is not an inline float32 initializer";
    }
    return init;
  }
  if ((init.dims ?? []).length !== 2) return "its weight is not 2-D";
  if (node.op_type === "Gemm") {
    if (intAttr(node, "transA", 0) !== 0) return "Gemm with transA=1";
    if (floatAttr(node, "alpha", 1) !== 1) return "Gemm with alpha != 1";
  }
  return init;
}

/** The activation range [lo, hi] of the values (always containing 0). */
export function activationRange(values: Float32Array, method: CalibrationMethod, percentile = 99.99): [number, number] {
  let lo = 0;
  let hi = 0;
  if (method === "minmax") {
    for (const v of values) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    return [lo, hi];
  }
  if (!(percentile > 50 && percentile <= 100)) {
    throw new MlshipError("MLSHIP_ERR_CLI_USAGE", `--percentile must be in (50, 100], got ${percentile}`, { field: "--percentile" });
  }
  const sorted = Float32Array.from(values).sort();
  const at = (p: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.round((p / 100) * (sorted.length - 1))))] ?? 0;
  return [Math.min(0, at(100 - percentile)), Math.max(0, at(percentile))];
}

/** uint8 asymmetric parameters for a range. */
export function uint8Params(lo: number, hi: number): { scale: number; zeroPoint: number } {
  const scale = hi - lo > 0 ? (hi - lo) / 255 : 1;
  return { scale, zeroPoint: Math.max(0, Math.min(255, Math.round(-lo / scale))) };
}

/** Runs the calibration rows and returns every value of each named intermediate tensor. */
async function collect(model: OnnxModel, names: string[], data: ValidationSet): Promise<Map<string, Float32Array>> {
  const probe = cloneModel(model);
  const graph = probe.graph as OnnxGraph;
  const existing = new Set((graph.output ?? []).map((o) => o.name));
  graph.output = [
    ...(graph.output ?? []),
    ...names.filter((n) => !existing.has(n)).map((name) => ({ name, type: { tensor_type: { elem_type: DT.FLOAT } } })),
  ];
  const session = await ort.InferenceSession.create(encodeModel(probe), servingSessionOptions("disabled"));
  try {
    const info = inputInfo(session);
    const width = rowWidth(info);
    if (width * data.rows !== data.features.length) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "calibration rows do not match the model input", { field: "--calibration" });
    }
    const parts = new Map<string, Float32Array[]>(names.map((n) => [n, []]));
    const chunk = 256;
    for (let start = 0; start < data.rows; start += chunk) {
      const n = Math.min(chunk, data.rows - start);
      const shape = [n, ...info.shape.slice(1).map((d) => (d > 0 ? d : 1))];
      const input = new ort.Tensor("float32", data.features.slice(start * width, (start + n) * width), shape);
      const result = await session.run({ [info.name]: input }, names);
      for (const name of names) parts.get(name)?.push(Float32Array.from(result[name]?.data as Float32Array));
    }
    return new Map(
      [...parts].map(([name, list]) => {
        const all = new Float32Array(list.reduce((s, a) => s + a.length, 0));
        let o = 0;
        for (const a of list) {
          all.set(a, o);
          o += a.length;
        }
        return [name, all];
      }),
    );
  } finally {
    await session.release();
  }
}

/**
 * Quantizes every MatMul/Gemm with a float32 2-D weight initializer to the QDQ form, activation ranges measured on
 * `calibration`. Returns a new model. Nothing eligible -> MLSHIP_ERR_PACKAGE_UNSUPPORTED.
 */
export async function quantizeStatic(
  source: OnnxModel,
  calibration: ValidationSet,
  options: StaticQuantizeOptions = {},
): Promise<{ model: OnnxModel; summary: QuantizeSummary }> {
  const model = cloneModel(source);
  const graph = model.graph as OnnxGraph;
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name ?? "", t]));
  const summary: QuantizeSummary = { quantized: [], skipped: [] };
  const targets: Target[] = [];
  for (const node of graph.node ?? []) {
    const op = node.op_type ?? "";
    if ((node.domain ?? "") !== "" || (op !== "MatMul" && op !== "Gemm" && !(op === "Conv" && options.conv !== false))) continue;
    const weight = eligible(node, inits);
    if (typeof weight === "string") summary.skipped.push({ node: nodeLabel(node), reason: weight });
    else targets.push({ node, x: (node.input ?? [])[0] ?? "", weight });
  }
  if (targets.length === 0) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_UNSUPPORTED", "int8 static quantization found no MatMul, Gemm or Conv with a float32 weight initializer");
  }
  const activations = [...new Set(targets.map((t) => t.x))];
  // Conv outputs are quantized too (Q -> DQ after the Conv), so onnxruntime can fuse the group into QLinearConv.
  const convOutputs = targets.filter((t) => t.node.op_type === "Conv").map((t) => (t.node.output ?? [])[0] ?? "");
  const values = await collect(model, [...new Set([...activations, ...convOutputs])], calibration);
  const names = new NameScope(graph);
  const newInits: OnnxTensor[] = [];
  const dequantized = new Map<string, string>();
  const before = new Map<OnnxNode, OnnxNode[]>();
  const after = new Map<OnnxNode, OnnxNode[]>();
  const perChannel = options.perChannel ?? false;
  const activationParams = new Map<string, { scale: number; zeroPoint: number }>();
  const paramsOf = (name: string): { scale: number; zeroPoint: number } => {
    const [lo, hi] = activationRange(values.get(name) ?? new Float32Array(), options.method ?? "minmax", options.percentile);
    return uint8Params(lo, hi);
  };

  for (const x of activations) {
    const { scale, zeroPoint } = paramsOf(x);
    activationParams.set(x, { scale, zeroPoint });
    const s = names.fresh(`${x}_scale`);
    const zp = names.fresh(`${x}_zero_point`);
    newInits.push(floatTensor(s, [], [scale]), uint8Tensor(zp, [], Uint8Array.of(zeroPoint)));
    const q = names.fresh(`${x}_QuantizeLinear_output`);
    const dq = names.fresh(`${x}_DequantizeLinear_output`);
    dequantized.set(x, dq);
    const first = targets.find((t) => t.x === x)?.node as OnnxNode;
    before.set(first, [
      ...(before.get(first) ?? []),
      makeNode("QuantizeLinear", [x, s, zp], [q], names.fresh(`${x}_QuantizeLinear`)),
      makeNode("DequantizeLinear", [q, s, zp], [dq], names.fresh(`${x}_DequantizeLinear`)),
    ]);
  }

  const replaced = new Set<string>();
  for (const t of targets) {
    if (t.node.op_type === "Conv") {
      quantizeConvQdq(t, { names, newInits, before, after, perChannel, dequantized, x: activationParams.get(t.x), y: paramsOf((t.node.output ?? [])[0] ?? ""), inits });
      replaced.add(t.weight.name ?? "");
      const bias = (t.node.input ?? [])[2];
      if (bias !== undefined && bias !== "") replaced.add(bias);
      summary.quantized.push(nodeLabel(t.node));
      continue;
    }
    const wName = t.weight.name ?? "";
    const [d0 = 0, d1 = 0] = (t.weight.dims ?? []).map(num);
    // Output channels are the columns of a [K, N] MatMul weight, the rows of a transposed Gemm weight ([N, K]).
    const axis = t.node.op_type === "Gemm" && intAttr(t.node, "transB", 0) === 1 ? 0 : 1;
    const data = floatData(t.weight);
    const kn = axis === 1 ? data : transpose(data, d0, d1);
    const k = axis === 1 ? d0 : d1;
    const n = axis === 1 ? d1 : d0;
    const scales = new Float32Array(perChannel ? n : 1);
    for (let j = 0; j < n; j++) {
      for (let i = 0; i < k; i++) {
        const c = perChannel ? j : 0;
        scales[c] = Math.max(scales[c] ?? 0, Math.abs(kn[i * n + j] ?? 0));
      }
    }
    for (let c = 0; c < scales.length; c++) scales[c] = (scales[c] ?? 0) === 0 ? 1 : (scales[c] ?? 0) / 127;
    const q = new Int8Array(d0 * d1);
    for (let r = 0; r < d0; r++) {
      for (let c = 0; c < d1; c++) {
        const channel = perChannel ? (axis === 1 ? c : r) : 0;
        q[r * d1 + c] = Math.max(-127, Math.min(127, Math.round((data[r * d1 + c] ?? 0) / (scales[channel] ?? 1))));
      }
    }
    const wq = names.fresh(`${wName}_quantized`);
    const ws = names.fresh(`${wName}_scale`);
    const wzp = names.fresh(`${wName}_zero_point`);
    const wdq = names.fresh(`${wName}_DequantizeLinear_output`);
    newInits.push(
      int8Tensor(wq, [d0, d1], q),
      perChannel ? floatTensor(ws, [n], scales) : floatTensor(ws, [], scales),
      perChannel ? int8Tensor(wzp, [n], new Int8Array(n)) : int8Tensor(wzp, [], new Int8Array(1)),
    );
    const attrs = perChannel ? [intAttribute("axis", axis)] : [];
    before.set(t.node, [...(before.get(t.node) ?? []), makeNode("DequantizeLinear", [wq, ws, wzp], [wdq], names.fresh(`${wName}_DequantizeLinear`), attrs)]);
    t.node.input = (t.node.input ?? []).map((name, i) => (i === 0 ? (dequantized.get(name) ?? name) : i === 1 ? wdq : name));
    replaced.add(wName);
    summary.quantized.push(nodeLabel(t.node));
  }
  graph.node = (graph.node ?? []).flatMap((node) => [...(before.get(node) ?? []), node, ...(after.get(node) ?? [])]);
  finishInitializers(graph, replaced, newInits);
  requireOpset(model, 13);
  return { model, summary };
}
