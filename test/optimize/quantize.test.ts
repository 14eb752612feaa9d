/**
 * int8 and fp16 rewrites on the real fixtures, measured on their held-out prod.csv.
 *
 * Tolerances (measured with onnxruntime-node 1.30.0, then given some room):
 * - int8 dynamic, MLP: 143/143 rows keep their class, accuracy 0.965 -> 0.965, largest probability change 0.087
 *   (one uncertain row near 0.5). We require agreement >= 0.98 and an accuracy drop <= 0.01 (at most one of 143
 *   rows may change), which is the gate's default limit.
 * - int8 dynamic, CNN: 450/450 rows agree, accuracy 0.9911 both, max probability change 0.025.
 * - fp16: float16 keeps ~3 significant digits; largest probability change measured 0.0018 (MLP), 0.0009 (CNN).
 *   We require < 0.01 and identical classes; the file is about half (initializers are 2 bytes instead of 4).
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { buildOnnxModel } from "../../src/package/index.js";
import {
  activationRange,
  agreement,
  convertFp16,
  decodeModel,
  encodeModel,
  optimizeModel,
  inputInfo,
  openSession,
  predict,
  quality,
  quantizeDynamic,
  quantizeStatic,
  quantizeWeight,
  readValidationCsv,
  rowWidth,
  uint8Params,
} from "../../src/optimize/index.js";
import type { ValidationSet } from "../../src/optimize/index.js";
import { fixture } from "../cli/helpers.js";

async function evaluate(parentBytes: Uint8Array, childBytes: Uint8Array, csv: string) {
  const parent = await openSession(parentBytes, "parent");
  const child = await openSession(childBytes, "child");
  try {
    const data = await readValidationCsv(csv, { width: rowWidth(inputInfo(parent)) });
    const p = await predict(parent, data);
    const c = await predict(child, data);
    return { parent: quality(p, data.labels), child: quality(c, data.labels), agreement: agreement(p, c), data };
  } finally {
    await parent.release();
    await child.release();
  }
}

const bytesOf = (name: string): Uint8Array => new Uint8Array(readFileSync(fixture(name).onnx));
const prod = (name: string): string => path.join(fixture(name).dir, "prod.csv");

describe("quantizeWeight", () => {
  it("is symmetric int8 with scale max|w|/127, per tensor or per column", () => {
    const w = Float32Array.from([1, -0.5, 0.25, -2]); // [2, 2]
    const t = quantizeWeight(w, 2, 2, false);
    expect(t.scales[0]).toBeCloseTo(2 / 127, 7);
    expect(Array.from(t.q)).toEqual([64, -32, 16, -127]);
    const c = quantizeWeight(w, 2, 2, true);
    expect(Array.from(c.scales)).toEqual([Math.fround(1 / 127), Math.fround(2 / 127)]);
    expect(Array.from(c.q)).toEqual([127, -32, 32, -127]);
  });
});

describe("int8 dynamic quantization", () => {
  it("MLP: smaller, runs, same classes and accuracy on prod.csv", async () => {
    const parent = bytesOf("breast_cancer_mlp");
    const { model, summary } = quantizeDynamic(decodeModel(parent));
    expect(summary.quantized).toHaveLength(3);
    const child = encodeModel(model);
    expect(child.length / parent.length).toBeLessThan(0.55); // measured 0.48
    const ops = (model.graph?.node ?? []).map((n) => n.op_type);
    expect(ops).toContain("MatMulInteger");
    expect(ops).toContain("DynamicQuantizeLinear");
    expect(ops).not.toContain("Gemm");
    expect(model.graph?.input?.map((i) => i.name)).toEqual(["input"]);
    expect(model.graph?.output?.map((o) => o.name)).toEqual(["probabilities", "label"]);
    const r = await evaluate(parent, child, prod("breast_cancer_mlp"));
    expect(r.data.rows).toBe(143);
    expect(r.parent.accuracy).toBeCloseTo(0.965, 3);
    expect(r.agreement.agreement).toBeGreaterThanOrEqual(0.98);
    expect((r.parent.accuracy ?? 0) - (r.child.accuracy ?? 0)).toBeLessThanOrEqual(0.01);
    expect(r.agreement.maxAbsDiff).toBeLessThan(0.2);
  });

  it("MLP per channel and CNN (Gemm head; Conv stays float32)", async () => {
    const mlp = bytesOf("breast_cancer_mlp");
    const perChannel = encodeModel(quantizeDynamic(decodeModel(mlp), { perChannel: true }).model);
    const r1 = await evaluate(mlp, perChannel, prod("breast_cancer_mlp"));
    expect(r1.agreement.agreement).toBeGreaterThanOrEqual(0.98);

    const cnn = bytesOf("digits_cnn");
    const { model, summary } = quantizeDynamic(decodeModel(cnn));
    expect(summary.quantized).toHaveLength(2);
    expect((model.graph?.node ?? []).filter((n) => n.op_type === "Conv")).toHaveLength(2);
    const child = encodeModel(model);
    expect(child.length / cnn.length).toBeLessThan(0.45); // measured 0.37
    const r2 = await evaluate(cnn, child, prod("digits_cnn"));
    expect(r2.parent.accuracy).toBeCloseTo(0.9911, 3);
    expect(r2.agreement.agreement).toBeGreaterThanOrEqual(0.99);
    expect((r2.parent.accuracy ?? 0) - (r2.child.accuracy ?? 0)).toBeLessThanOrEqual(0.01);
  });

  it("CNN with --include-conv: Conv layers become ConvInteger (per tensor), smaller still, same classes", async () => {
    const cnn = bytesOf("digits_cnn");
    const { model, summary } = quantizeDynamic(decodeModel(cnn), { conv: true, perChannel: true });
    expect(summary.quantized).toHaveLength(4);
    const ops = (model.graph?.node ?? []).map((n) => n.op_type);
    expect(ops.filter((o) => o === "ConvInteger")).toHaveLength(2);
    expect(ops).not.toContain("Conv");
    // Only one DynamicQuantizeLinear per distinct activation.
    expect(ops.filter((o) => o === "DynamicQuantizeLinear")).toHaveLength(4);
    const child = encodeModel(model);
    expect(child.length / cnn.length).toBeLessThan(0.32); // measured 0.29
    const r = await evaluate(cnn, child, prod("digits_cnn"));
    expect(r.agreement.agreement).toBeGreaterThanOrEqual(0.99);
    expect((r.parent.accuracy ?? 0) - (r.child.accuracy ?? 0)).toBeLessThanOrEqual(0.01);
  });

  it("a model without MatMul/Gemm weights is refused with a clear error", () => {
    const model = decodeModel(bytesOf("diabetes_linear"));
    model.graph!.node = (model.graph!.node ?? []).filter((n) => n.op_type !== "MatMul");
    expect(() => quantizeDynamic(model)).toThrow(/no MatMul or Gemm/);
  });
});

describe("int8 static (QDQ) quantization", () => {
  it("activation ranges: minmax includes 0, percentile drops outliers; uint8 parameters", () => {
    const values = Float32Array.from({ length: 10001 }, (_, i) => i / 10000); // 0 .. 1
    values[5000] = 100; // one outlier
    expect(activationRange(values, "minmax")).toEqual([0, 100]);
    const [lo, hi] = activationRange(values, "percentile", 99.9);
    expect(lo).toBe(0);
    expect(hi).toBeLessThan(1.01);
    expect(uint8Params(-1, 3)).toEqual({ scale: 4 / 255, zeroPoint: 64 });
    expect(uint8Params(0, 0)).toEqual({ scale: 1, zeroPoint: 0 });
  });

  it("MLP calibrated on train.csv (minmax and percentile): smaller, same classes", async () => {
    const parent = bytesOf("breast_cancer_mlp");
    const session = await openSession(parent, "parent");
    const width = rowWidth(inputInfo(session));
    await session.release();
    const calibration: ValidationSet = await readValidationCsv(path.join(fixture("breast_cancer_mlp").dir, "train.csv"), { width });
    for (const method of ["minmax", "percentile"] as const) {
      const { model, summary } = await quantizeStatic(decodeModel(parent), calibration, { method });
      expect(summary.quantized).toHaveLength(3);
      const ops = (model.graph?.node ?? []).map((n) => n.op_type);
      expect(ops.filter((o) => o === "QuantizeLinear")).toHaveLength(3);
      const child = encodeModel(model);
      expect(child.length / parent.length).toBeLessThan(0.55);
      const r = await evaluate(parent, child, prod("breast_cancer_mlp"));
      expect(r.agreement.agreement).toBeGreaterThanOrEqual(0.98);
      expect((r.parent.accuracy ?? 0) - (r.child.accuracy ?? 0)).toBeLessThanOrEqual(0.01);
    }
  });
});

describe("int8 static (QDQ) quantization of the CNN", () => {
  it("Conv and Gemm in QDQ form (int32 bias, quantized Conv output); onnxruntime fuses QLinearConv; same classes", async () => {
    const parent = bytesOf("digits_cnn");
    const calibration = await readValidationCsv(path.join(fixture("digits_cnn").dir, "train.csv"), { width: 64 });
    const { model, summary } = await quantizeStatic(decodeModel(parent), calibration, { perChannel: true });
    expect(summary.quantized.map((q) => q.split(" ")[0])).toEqual(["Conv", "Conv", "Gemm", "Gemm"]);
    const biasTypes = (model.graph?.initializer ?? []).filter((t) => t.name?.endsWith("bias_quantized")).map((t) => t.data_type);
    expect(biasTypes).toEqual([6, 6]); // int32
    const child = encodeModel(model);
    expect(child.length / parent.length).toBeLessThan(0.35); // measured 0.30
    const optimized = await optimizeModel(child, { level: "extended" });
    const ops = (decodeModel(optimized.model).graph?.node ?? []).map((n) => n.op_type);
    expect(ops).toContain("QLinearConv");
    const r = await evaluate(parent, child, prod("digits_cnn"));
    expect(r.agreement.agreement).toBeGreaterThanOrEqual(0.99);
    expect((r.parent.accuracy ?? 0) - (r.child.accuracy ?? 0)).toBeLessThanOrEqual(0.01);
  });
});

describe("fp16 conversion", () => {
  for (const name of ["breast_cancer_mlp", "digits_cnn"] as const) {
    it(`${name}: about half the size, float32 signature kept, outputs close`, async () => {
      const parent = bytesOf(name);
      const { model, summary } = convertFp16(decodeModel(parent));
      expect(summary.initializers).toBe(8);
      const child = encodeModel(model);
      const ratio = child.length / parent.length;
      expect(ratio).toBeGreaterThan(0.45);
      expect(ratio).toBeLessThan(0.6); // measured 0.55 (MLP), 0.51 (CNN)
      expect(model.graph?.input?.[0]?.type?.tensor_type?.elem_type).toBe(1);
      expect(model.graph?.output?.map((o) => o.type?.tensor_type?.elem_type)).toEqual([1, 7]);
      const r = await evaluate(parent, child, prod(name));
      expect(r.agreement.agreement).toBe(1);
      expect(r.agreement.maxAbsDiff).toBeLessThan(0.01);
      expect(r.child.accuracy).toBe(r.parent.accuracy);
    });
  }

  it("keeps listed ops in float32 with Casts around them", async () => {
    const parent = bytesOf("breast_cancer_mlp");
    const { model, summary } = convertFp16(decodeModel(parent), { keep: ["Softmax"] });
    expect(summary.keptFloat32).toHaveLength(1);
    expect(summary.keptFloat32[0]).toMatch(/^Softmax/);
    const r = await evaluate(parent, encodeModel(model), prod("breast_cancer_mlp"));
    expect(r.agreement.agreement).toBe(1);
  });
});

describe("onnxruntime graph optimization levels", () => {
  it("saves the optimized model at each level; it loads and gives the same classes", async () => {
    const parent = bytesOf("digits_cnn");
    const seen: Record<string, string[]> = {};
    for (const level of ["basic", "extended", "all"] as const) {
      const { model, optimization } = await optimizeModel(parent, { level, quantize: "int8-dynamic" });
      expect(optimization).toMatchObject({ method: `int8-dynamic+ort-${level}`, ort_level: level });
      seen[level] = [...new Set((decodeModel(model).graph?.node ?? []).map((n) => `${n.domain ?? ""}:${n.op_type ?? ""}`))];
      const r = await evaluate(parent, model, prod("digits_cnn"));
      expect(r.agreement.agreement).toBeGreaterThanOrEqual(0.99);
    }
    // basic keeps standard ONNX ops; extended fuses into onnxruntime's com.microsoft kernels.
    expect(seen.basic?.every((op) => op.startsWith(":"))).toBe(true);
    expect(seen.extended).toContain("com.microsoft:DynamicQuantizeMatMul");
  });
});

describe("fp16 conversion of constants and casts", () => {
  it("Constant(value_float), Constant(value_ints) and Cast(to=float) keep the graph type-consistent", async () => {
    const bytes = buildOnnxModel({
      inputs: [{ name: "x", dtype: "float32", shape: ["b", 3] }],
      outputs: [{ name: "y", dtype: "float32", shape: ["b", 3] }, { name: "n", dtype: "int64", shape: [2] }],
      nodes: [
        { op: "Constant", inputs: [], outputs: ["c"], attrs: { value_float: { f: 2.5 } } },
        { op: "Constant", inputs: [], outputs: ["n"], attrs: { value_ints: { ints: [1, 2] } } },
        { op: "Mul", inputs: ["x", "c"], outputs: ["m"] },
        { op: "Cast", inputs: ["m"], outputs: ["y"], attrs: { to: 1 } },
      ],
    });
    const { model } = convertFp16(decodeModel(bytes));
    const session = await openSession(encodeModel(model), "fp16 constants");
    try {
      const result = await session.run({ x: new ort.Tensor("float32", Float32Array.from([1, 2, 3, -1, 0, 0.5]), [2, 3]) });
      expect(result.y?.type).toBe("float32");
      expect(Array.from(result.y?.data as Float32Array)).toEqual([2.5, 5, 7.5, -2.5, 0, 1.25]);
      expect(Array.from(result.n?.data as BigInt64Array)).toEqual([1n, 2n]);
    } finally {
      await session.release();
    }
  });
});
