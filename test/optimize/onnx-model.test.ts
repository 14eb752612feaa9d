import { readFileSync } from "node:fs";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { decodeModel, defaultOpset, encodeModel, num } from "../../src/optimize/index.js";
import { fixture } from "../cli/helpers.js";

const FIXTURES = ["breast_cancer_mlp", "digits_cnn", "diabetes_linear"] as const;

async function run(model: Uint8Array, inputs: number[][], shape: number[]): Promise<Record<string, ort.Tensor>> {
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1, graphOptimizationLevel: "all" });
  try {
    const data = Float32Array.from(inputs.flat(Infinity) as number[]);
    return await session.run({ input: new ort.Tensor("float32", data, [inputs.length, ...shape.slice(1)]) });
  } finally {
    await session.release();
  }
}

describe("ONNX decode + encode round trip", () => {
  for (const name of FIXTURES) {
    it(`${name}: re-encoded model is the same model and gives identical outputs`, async () => {
      const f = fixture(name);
      const bytes = new Uint8Array(readFileSync(f.onnx));
      const model = decodeModel(bytes);
      expect(defaultOpset(model)).toBe(13);
      expect(model.graph?.input?.[0]?.name).toBe("input");
      const again = encodeModel(model);
      // Same size, and decoding again gives the same message (field for field).
      expect(again.length).toBe(bytes.length);
      expect(encodeModel(decodeModel(again))).toEqual(again);
      expect(Buffer.from(again).equals(Buffer.from(bytes))).toBe(true);
      const dims = (model.graph?.initializer ?? []).map((t) => (t.dims ?? []).map(num));
      expect(dims.length).toBeGreaterThan(0);
      const shape = name === "digits_cnn" ? [-1, 1, 8, 8] : f.expected.input_shape;
      const inputs = name === "digits_cnn" ? f.expected.inputs.map((row) => row.flat(Infinity) as number[]) : f.expected.inputs;
      const a = await run(bytes, inputs, shape);
      const b = await run(again, inputs, shape);
      for (const key of Object.keys(a)) expect(Array.from(b[key]?.data as ArrayLike<unknown>)).toEqual(Array.from(a[key]?.data as ArrayLike<unknown>));
    });
  }

  it("refuses bytes that are not an ONNX model", () => {
    expect(() => decodeModel(new Uint8Array([0xff, 0xff, 0xff, 0x01, 0x02]), path.basename("junk.onnx"))).toThrow(/junk\.onnx/);
  });
});
