import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MlshipError } from "../../src/core/index.js";
import type { Tensor } from "../../src/core/index.js";
import { createOnnxRuntime, validateFeeds } from "../../src/runtime/index.js";
import type { LoadedModel, OnnxRuntime } from "../../src/runtime/index.js";
import { MODELS } from "./models.js";
import { f32, tempDir, writeModel } from "./util.js";

const tmp = tempDir();
let runtime: OnnxRuntime;
let add2: LoadedModel;
let fixed: LoadedModel;
let ragged: LoadedModel;

beforeAll(async () => {
  runtime = createOnnxRuntime({ workers: 1 });
  add2 = await runtime.load({ key: "add2", modelPath: writeModel(tmp.dir, "add2", MODELS.add2) });
  fixed = await runtime.load({ key: "fixed", modelPath: writeModel(tmp.dir, "fixed", MODELS.fixed) });
  ragged = await runtime.load({ key: "ragged", modelPath: writeModel(tmp.dir, "ragged", MODELS.ragged) });
});
afterAll(async () => {
  await runtime.close();
  tmp.cleanup();
});

async function rejection(promise: Promise<unknown>): Promise<MlshipError> {
  const error: unknown = await promise.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(MlshipError);
  return error as MlshipError;
}

const ok = (): Record<string, Tensor> => ({ a: f32([1, 2, 3], [1, 3]), b: f32([4, 5, 6], [1, 3]) });

describe("feeds are validated against the model before reaching a worker", () => {
  it("names a missing input", async () => {
    const error = await rejection(add2.run({ a: f32([1, 2, 3], [1, 3]) }));
    expect(error.code).toBe("MLSHIP_ERR_INPUT_MISSING");
    expect(error.field).toBe("b");
    expect(error.message).toContain("'b'");
    expect(error.message).toContain("float32 [-1,3]");
  });

  it("names an input with the wrong dtype", async () => {
    const feeds = { ...ok(), b: { dtype: "int32", shape: [1, 3], data: Int32Array.from([1, 2, 3]) } as Tensor };
    const error = await rejection(add2.run(feeds));
    expect(error).toMatchObject({ code: "MLSHIP_ERR_INPUT_DTYPE", field: "b" });
    expect(error.message).toMatch(/int32.*float32/);
  });

  it("names an input whose data storage does not match its dtype", async () => {
    const feeds = { ...ok(), a: { dtype: "float32", shape: [1, 3], data: Float64Array.from([1, 2, 3]) } as Tensor };
    const error = await rejection(add2.run(feeds));
    expect(error).toMatchObject({ code: "MLSHIP_ERR_INPUT_DTYPE", field: "a" });
    expect(error.message).toContain("Float64Array");
  });

  it("names an input with the wrong rank and gives the expected shape", async () => {
    const error = await rejection(add2.run({ ...ok(), a: f32([1, 2, 3], [3]) }));
    expect(error).toMatchObject({ code: "MLSHIP_ERR_INPUT_SHAPE", field: "a" });
    expect(error.message).toContain("[3]");
    expect(error.message).toContain("[-1,3]");
  });

  it("names an input whose fixed dimension differs", async () => {
    const error = await rejection(add2.run({ ...ok(), b: f32([1, 2, 3, 4], [1, 4]) }));
    expect(error).toMatchObject({ code: "MLSHIP_ERR_INPUT_SHAPE", field: "b" });
    expect(error.message).toContain("[-1,3]");
    const noBatch = await rejection(fixed.run({ v: f32([1, 2], [2]) }));
    expect(noBatch).toMatchObject({ code: "MLSHIP_ERR_INPUT_SHAPE", field: "v" });
    expect(noBatch.message).toContain("[3]");
  });

  it("names an input whose data length does not match its shape", async () => {
    const error = await rejection(add2.run({ ...ok(), a: f32([1, 2, 3, 4, 5], [2, 3]) }));
    expect(error).toMatchObject({ code: "MLSHIP_ERR_INPUT_SHAPE", field: "a" });
    expect(error.message).toMatch(/5 values.*\[2,3\].*6/);
    const dynamic = await rejection(ragged.run({ x: f32([1, 2, 3], [2, 2]) }));
    expect(dynamic).toMatchObject({ code: "MLSHIP_ERR_INPUT_SHAPE", field: "x" });
  });

  it("refuses negative or fractional dimensions", async () => {
    const error = await rejection(ragged.run({ x: f32([], [-1, 0]) }));
    expect(error).toMatchObject({ code: "MLSHIP_ERR_INPUT_SHAPE", field: "x" });
    const frac = await rejection(ragged.run({ x: f32([1, 2], [1.5, 2]) }));
    expect(frac).toMatchObject({ code: "MLSHIP_ERR_INPUT_SHAPE", field: "x" });
  });

  it("names an unknown extra input", async () => {
    const error = await rejection(add2.run({ ...ok(), c: f32([1], [1]) }));
    expect(error).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "c" });
    expect(error.message).toContain("'a', 'b'");
  });

  it("names an unknown requested output", async () => {
    const error = await rejection(add2.run(ok(), { outputs: ["nope"] }));
    expect(error).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "outputs" });
    expect(error.message).toContain("'sum'");
  });

  it("fails before any worker is asked and leaves the feeds intact", async () => {
    const before = runtime.stats().workers.map((w) => w.runsCompleted + w.runsFailed);
    const feeds = { a: f32([1, 2, 3], [1, 3]), b: f32([1, 2], [1, 2]) };
    await rejection(add2.run(feeds));
    expect(runtime.stats().workers.map((w) => w.runsCompleted + w.runsFailed)).toEqual(before);
    expect((feeds.a.data as Float32Array).length).toBe(3);
  });

  it("accepts an empty batch", async () => {
    const out = await add2.run({ a: f32([], [0, 3]), b: f32([], [0, 3]) });
    expect(out.sum!.shape).toEqual([0, 3]);
  });

  it("is usable on its own and treats an undeclared shape as any shape", () => {
    expect(() => validateFeeds([{ name: "x", dtype: "string", shape: [] }], { x: { dtype: "string", shape: [2], data: ["a", "b"] } })).not.toThrow();
    expect(() =>
      validateFeeds([{ name: "x", dtype: "string", shape: [-1] }], { x: { dtype: "string", shape: [2], data: ["a", 1 as unknown as string] } }),
    ).toThrow(expect.objectContaining({ code: "MLSHIP_ERR_INPUT_DTYPE", field: "x" }) as Error);
  });
});
