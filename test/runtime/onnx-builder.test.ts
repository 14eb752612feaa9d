import * as ort from "onnxruntime-node";
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { buildOnnxModel, toFloat16Bits, writeOnnxModel } from "../helpers/onnx-builder.js";
import type { ValueSpec } from "../helpers/onnx-builder.js";
import { MODELS } from "./models.js";
import { tempDir } from "./util.js";

const tmp = tempDir();
afterAll(() => tmp.cleanup());

function ortShape(v: ValueSpec): Array<number | string> {
  return (v.shape ?? []).map((d) => (typeof d === "number" && d < 0 ? "" : d));
}

describe("onnx-builder", () => {
  it.each(Object.entries(MODELS))("builds %s so that onnxruntime-node loads it with the declared metadata", async (_name, spec) => {
    const session = await ort.InferenceSession.create(buildOnnxModel(spec));
    try {
      expect(session.inputMetadata).toEqual(
        spec.inputs.map((v) => ({ name: v.name, isTensor: true, type: v.dtype, shape: ortShape(v) })),
      );
      expect(session.outputMetadata).toEqual(
        spec.outputs.map((v: ValueSpec) =>
          v.sequence === true ? { name: v.name, isTensor: false } : { name: v.name, isTensor: true, type: v.dtype, shape: ortShape(v) },
        ),
      );
    } finally {
      await session.release();
    }
  });

  it("encodes initializers and attributes that onnxruntime computes with", async () => {
    const session = await ort.InferenceSession.create(
      buildOnnxModel({
        inputs: [{ name: "x", dtype: "float32", shape: [2, 2] }],
        outputs: [{ name: "y", dtype: "float32", shape: [2, 2] }, { name: "c", dtype: "int64", shape: [2] }, { name: "t", dtype: "float32", shape: [2, 2] }],
        nodes: [
          { op: "LeakyRelu", inputs: ["x"], outputs: ["y"], attrs: { alpha: { f: 2 } } },
          { op: "Constant", inputs: [], outputs: ["c"], attrs: { value: { t: { dtype: "int64", dims: [2], values: [-5n, 2n ** 62n] } } } },
          { op: "Transpose", inputs: ["x"], outputs: ["t"], attrs: { perm: [1, 0] } },
        ],
      }),
    );
    const out = await session.run({ x: new ort.Tensor("float32", Float32Array.from([1, -1, -2, 3]), [2, 2]) });
    expect(Array.from(out.y!.data as Float32Array)).toEqual([1, -2, -4, 3]);
    expect(Array.from(out.c!.data as BigInt64Array)).toEqual([-5n, 2n ** 62n]);
    expect(Array.from(out.t!.data as Float32Array)).toEqual([1, -2, -1, 3]);
    await session.release();
  });

  it("writes a file with writeOnnxModel", () => {
    const file = writeOnnxModel(path.join(tmp.dir, "add.onnx"), MODELS.add2);
    expect(readFileSync(file)).toEqual(Buffer.from(buildOnnxModel(MODELS.add2)));
  });

  it("converts numbers to IEEE half precision bits", () => {
    expect(toFloat16Bits(1)).toBe(0x3c00);
    expect(toFloat16Bits(-2)).toBe(0xc000);
    expect(toFloat16Bits(0.5)).toBe(0x3800);
    expect(toFloat16Bits(65504)).toBe(0x7bff);
    expect(toFloat16Bits(1e6)).toBe(0x7c00);
    expect(toFloat16Bits(2 ** -24)).toBe(0x0001);
    expect(toFloat16Bits(Number.NaN) & 0x7c00).toBe(0x7c00);
  });
});
