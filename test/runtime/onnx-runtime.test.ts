import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Tensor } from "../../src/core/index.js";
import { createOnnxRuntime } from "../../src/runtime/index.js";
import type { LoadedModel, OnnxRuntime } from "../../src/runtime/index.js";
import { toFloat16Bits } from "../helpers/onnx-builder.js";
import { MODELS } from "./models.js";
import type { ModelName } from "./models.js";
import { f32, tempDir, writeModel } from "./util.js";

const tmp = tempDir();
let runtime: OnnxRuntime;

beforeAll(() => {
  runtime = createOnnxRuntime({ workers: 2 });
});
afterAll(async () => {
  await runtime.close();
  tmp.cleanup();
});

function load(name: ModelName): Promise<LoadedModel> {
  return runtime.load({ key: `${name}@1`, modelPath: writeModel(tmp.dir, name, MODELS[name]) });
}

describe("OnnxRuntime on built models", () => {
  it("runs a model with two float32 inputs", async () => {
    const model = await load("add2");
    expect(model.inputs).toEqual([
      { name: "a", dtype: "float32", shape: [-1, 3] },
      { name: "b", dtype: "float32", shape: [-1, 3] },
    ]);
    const out = await model.run({ a: f32([1, 2, 3, 4, 5, 6], [2, 3]), b: f32([10, 20, 30, 40, 50, 60], [2, 3]) });
    expect(out.sum!.dtype).toBe("float32");
    expect(out.sum!.shape).toEqual([2, 3]);
    expect(Array.from(out.sum!.data as Float32Array)).toEqual([11, 22, 33, 44, 55, 66]);
  });

  it("keeps int64 exact as BigInt64Array (beyond 2^53)", async () => {
    const model = await load("int64");
    expect(model.inputs).toEqual([{ name: "ids", dtype: "int64", shape: [-1, 2] }]);
    const big = 2n ** 60n + 1n;
    const out = await model.run({ ids: { dtype: "int64", shape: [2, 2], data: BigInt64Array.from([1n, 2n, big, -3n]) } });
    expect(out.plus!.data).toBeInstanceOf(BigInt64Array);
    expect(out.plus!.dtype).toBe("int64");
    expect(Array.from(out.plus!.data as BigInt64Array)).toEqual([11n, 2n - 2n ** 40n, big + 10n, -3n - 2n ** 40n]);
    expect(Array.from(out.same!.data as BigInt64Array)).toEqual([1n, 2n, big, -3n]);
  });

  it("maps bool tensors to Uint8Array 0/1 both ways", async () => {
    const model = await load("bool");
    expect(model.inputs.map((i) => i.dtype)).toEqual(["bool", "bool"]);
    const out = await model.run({
      p: { dtype: "bool", shape: [4], data: Uint8Array.from([1, 1, 0, 0]) },
      q: { dtype: "bool", shape: [4], data: Uint8Array.from([1, 0, 1, 0]) },
    });
    expect(out.not_p!.dtype).toBe("bool");
    expect(out.not_p!.data).toBeInstanceOf(Uint8Array);
    expect(Array.from(out.not_p!.data as Uint8Array)).toEqual([0, 0, 1, 1]);
    expect(Array.from(out.p_and_q!.data as Uint8Array)).toEqual([1, 0, 0, 0]);
  });

  it("passes string tensors through", async () => {
    const model = await load("string");
    const text = ["héllo", "", "a,b", "日本"];
    const out = await model.run({ text: { dtype: "string", shape: [2, 2], data: text } });
    expect(out.echo).toEqual({ dtype: "string", shape: [2, 2], data: text });
  });

  it("runs a model without a batch axis (fixed shape [3]) and refuses other shapes", async () => {
    const model = await load("fixed");
    expect(model.inputs).toEqual([{ name: "v", dtype: "float32", shape: [3] }]);
    const out = await model.run({ v: f32([1, 2, 3], [3]) });
    expect(out.doubled!.shape).toEqual([3]);
    expect(Array.from(out.doubled!.data as Float32Array)).toEqual([2, 4, 6]);
    await expect(model.run({ v: f32([1, 2, 3], [1, 3]) })).rejects.toMatchObject({ code: "MLSHIP_ERR_INPUT_SHAPE", field: "v" });
    await expect(model.run({ v: f32([1, 2, 3, 4], [4]) })).rejects.toMatchObject({
      code: "MLSHIP_ERR_INPUT_SHAPE",
      field: "v",
      message: expect.stringContaining("[3]") as unknown,
    });
  });

  it("accepts any size on a dynamic second axis", async () => {
    const model = await load("ragged");
    expect(model.inputs).toEqual([{ name: "x", dtype: "float32", shape: [-1, -1] }]);
    expect(model.outputs).toEqual([{ name: "total", dtype: "float32", shape: [-1] }]);
    const two = await model.run({ x: f32([1, 2, 3, 4], [2, 2]) });
    expect(Array.from(two.total!.data as Float32Array)).toEqual([3, 7]);
    const five = await model.run({ x: f32([1, 2, 3, 4, 5, 1, 1, 1, 1, 1], [2, 5]) });
    expect(Array.from(five.total!.data as Float32Array)).toEqual([15, 5]);
  });

  it("round-trips every other dtype with its own storage (float16 as raw bits)", async () => {
    const model = await load("dtypes");
    const halves = [1.5, -2, 0.25];
    const feeds: Record<string, Tensor> = {
      f16: { dtype: "float16", shape: [3], data: Uint16Array.from(halves.map(toFloat16Bits)) },
      f64: { dtype: "float64", shape: [3], data: Float64Array.from([0.1, -1e300, 3]) },
      i8: { dtype: "int8", shape: [3], data: Int8Array.from([-128, 0, 127]) },
      i16: { dtype: "int16", shape: [3], data: Int16Array.from([-32768, 1, 32767]) },
      i32: { dtype: "int32", shape: [3], data: Int32Array.from([-(2 ** 31), 1, 2 ** 31 - 1]) },
      u8: { dtype: "uint8", shape: [3], data: Uint8Array.from([0, 128, 255]) },
      u16: { dtype: "uint16", shape: [3], data: Uint16Array.from([0, 1, 65535]) },
      u32: { dtype: "uint32", shape: [3], data: Uint32Array.from([0, 1, 2 ** 32 - 1]) },
      u64: { dtype: "uint64", shape: [3], data: BigUint64Array.from([0n, 1n, 2n ** 64n - 1n]) },
    };
    const expected = Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, { dtype: t.dtype, values: Array.from(t.data as ArrayLike<unknown>) }]));
    const out = await model.run(feeds);
    for (const [name, want] of Object.entries(expected)) {
      const got = out[`${name}_out`]!;
      expect(got.dtype).toBe(want.dtype);
      expect(got.shape).toEqual([3]);
      expect(Array.from(got.data as ArrayLike<unknown>)).toEqual(want.values);
      expect(got.data.constructor).toBe(feeds[name]!.data.constructor);
    }
    expect(Array.from(out.f16_as_f32!.data as Float32Array)).toEqual(halves);
  });

  it("leaves out outputs that are not tensors and still runs the rest", async () => {
    const model = await load("withSequence");
    expect(model.outputs).toEqual([{ name: "y", dtype: "float32", shape: [-1, 2] }]);
    const out = await model.run({ x: f32([1, 2], [1, 2]) });
    expect(Object.keys(out)).toEqual(["y"]);
    await expect(model.run({ x: f32([1, 2], [1, 2]) }, { outputs: ["seq"] })).rejects.toMatchObject({
      code: "MLSHIP_ERR_INPUT_INVALID",
      field: "outputs",
    });
  });

  it("turns an onnxruntime failure at run time into RUNTIME_INFERENCE with ORT's message", async () => {
    const model = await load("broadcastFail");
    const error: unknown = await model.run({ a: f32([1, 2], [1, 2]), b: f32([1, 2, 3], [1, 3]) }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "MLSHIP_ERR_RUNTIME_INFERENCE" });
    expect((error as Error).message).toMatch(/broadcast/i);
    // The worker survives its model's failure.
    const ok = await model.run({ a: f32([1, 2], [1, 2]), b: f32([3, 4], [1, 2]) });
    expect(Array.from(ok.sum!.data as Float32Array)).toEqual([4, 6]);
  });

  it("moves feed buffers to the worker instead of copying them; partial views and shared memory are copied", async () => {
    const model = await load("add2");
    const a = f32([1, 2, 3], [1, 3]);
    const backing = Float32Array.from([0, 5, 5, 5, 0]);
    const b: Tensor = { dtype: "float32", shape: [1, 3], data: backing.subarray(1, 4) };
    const out = await model.run({ a, b });
    expect(Array.from(out.sum!.data as Float32Array)).toEqual([6, 7, 8]);
    expect((a.data as Float32Array).length).toBe(0); // transferred: detached here
    expect(Array.from(backing)).toEqual([0, 5, 5, 5, 0]); // a view of someone else's buffer is copied, not taken
    const shared = new Float32Array(new SharedArrayBuffer(12));
    shared.set([1, 1, 1]);
    const fromShared = await model.run({ a: { dtype: "float32", shape: [1, 3], data: shared }, b: f32([1, 2, 3], [1, 3]) });
    expect(Array.from(fromShared.sum!.data as Float32Array)).toEqual([2, 3, 4]);
    expect(shared.length).toBe(3);
  });

  it("applies session options from LoadSpec.options", async () => {
    const model = await runtime.load({
      key: "add2-opts@1",
      modelPath: writeModel(tmp.dir, "add2-opts", MODELS.add2),
      options: { intraOpNumThreads: 2, graphOptimizationLevel: "disabled" },
    });
    const out = await model.run({ a: f32([1, 1, 1], [1, 3]), b: f32([1, 1, 1], [1, 3]) });
    expect(Array.from(out.sum!.data as Float32Array)).toEqual([2, 2, 2]);
    await expect(
      runtime.load({ key: "add2-badopts@1", modelPath: writeModel(tmp.dir, "add2-badopts", MODELS.add2), options: { graphOptimizationLevel: "bogus" } }),
    ).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_LOAD" });
    await expect(
      runtime.load({ key: "add2-fnopts@1", modelPath: writeModel(tmp.dir, "add2-fnopts", MODELS.add2), options: { f: () => 1 } }),
    ).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_LOAD", field: "options" });
  });
});
