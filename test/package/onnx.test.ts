import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { inspectOnnx, readOnnxHeader } from "../../src/package/index.js";
import { catchMlship, fixture, FIXTURE_NAMES, tempDir } from "./helpers.js";

describe("inspectOnnx on the fixtures", () => {
  it("breast cancer: float32 [-1,30] -> probabilities [-1,2], label int64 [-1]", async () => {
    const info = await inspectOnnx(fixture("breast_cancer_mlp", "model.onnx"));
    expect(info.inputs).toEqual([{ name: "input", dtype: "float32", shape: [-1, 30] }]);
    expect(info.outputs).toEqual([
      { name: "probabilities", dtype: "float32", shape: [-1, 2] },
      { name: "label", dtype: "int64", shape: [-1] },
    ]);
    expect(info.opset).toBe(13);
    expect(info.irVersion).toBe(7);
    expect(info.producer).toBe("pytorch 1.13.0");
  });

  it("digits: NCHW [-1,1,8,8] -> probabilities [-1,10], label", async () => {
    const info = await inspectOnnx(fixture("digits_cnn", "model.onnx"));
    expect(info.inputs).toEqual([{ name: "input", dtype: "float32", shape: [-1, 1, 8, 8] }]);
    expect(info.outputs).toEqual([
      { name: "probabilities", dtype: "float32", shape: [-1, 10] },
      { name: "label", dtype: "int64", shape: [-1] },
    ]);
  });

  it("diabetes: [-1,10] -> prediction [-1,1]", async () => {
    const info = await inspectOnnx(fixture("diabetes_linear", "model.onnx"));
    expect(info.inputs).toEqual([{ name: "input", dtype: "float32", shape: [-1, 10] }]);
    expect(info.outputs).toEqual([{ name: "prediction", dtype: "float32", shape: [-1, 1] }]);
    expect(info.irVersion).toBe(8);
    expect(info.producer).toBe("fixtures-src/make_fixtures.py 1");
  });

  it.each(FIXTURE_NAMES)("the hand-read header of %s agrees with meta.json", async (name) => {
    const meta = JSON.parse(await readFile(fixture(name, "meta.json"), "utf8")) as {
      onnx: { ir_version: number; opset_imports: Record<string, number>; producer: string };
    };
    const header = await readOnnxHeader(fixture(name, "model.onnx"));
    expect(header).toEqual({ irVersion: meta.onnx.ir_version, opset: meta.onnx.opset_imports["ai.onnx"],
      producer: meta.onnx.producer });
  });
});

describe("inspectOnnx refuses what is not a model", () => {
  it("random bytes: PACKAGE_INVALID naming the file", async () => {
    const file = path.join(await tempDir(), "random.onnx");
    await writeFile(file, randomBytes(4096));
    const error = await catchMlship(() => inspectOnnx(file));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    expect(error.message).toContain(file);
    expect(error.message).toMatch(/not a valid ONNX model/);
  });

  it("a truncated model: PACKAGE_INVALID naming the file", async () => {
    const file = path.join(await tempDir(), "truncated.onnx");
    const bytes = await readFile(fixture("digits_cnn", "model.onnx"));
    await writeFile(file, bytes.subarray(0, bytes.length >> 1));
    const error = await catchMlship(() => inspectOnnx(file));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    expect(error.message).toContain(file);
  });

  it("a missing file: PACKAGE_NOT_FOUND", async () => {
    const error = await catchMlship(() => inspectOnnx("/nonexistent/model.onnx"));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_NOT_FOUND");
    expect(error.message).toContain("/nonexistent/model.onnx");
  });
});
