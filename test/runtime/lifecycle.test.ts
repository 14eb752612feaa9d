import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, it } from "vitest";
import { MlshipError } from "../../src/core/index.js";
import { OnnxRuntime, createOnnxRuntime } from "../../src/runtime/index.js";
import type { ModelRuntime } from "../../src/runtime/index.js";
import { MODELS } from "./models.js";
import { f32, inputRows, modelPath, readExpected, tempDir, writeModel } from "./util.js";

const tmp = tempDir();
const runtimes: OnnxRuntime[] = [];
function make(workers: number): OnnxRuntime {
  const runtime = createOnnxRuntime({ workers });
  runtimes.push(runtime);
  return runtime;
}
afterAll(async () => {
  await Promise.all(runtimes.map((r) => r.close()));
  tmp.cleanup();
});

const cancer = readExpected("breast_cancer_mlp");

describe("OnnxRuntime lifecycle", () => {
  it("is a ModelRuntime of flavor onnx with one worker per core by default, started on first load", async () => {
    const runtime = new OnnxRuntime();
    runtimes.push(runtime);
    const asInterface: ModelRuntime = runtime;
    expect(asInterface.flavor).toBe("onnx");
    expect(runtime.stats().size).toBe(os.availableParallelism());
    expect(runtime.stats().workers).toEqual([]);
    await runtime.load({ key: "cancer", modelPath: modelPath("breast_cancer_mlp") });
    expect(runtime.stats().workers).toHaveLength(os.availableParallelism());
  });

  it("reuses the session when the same key is loaded twice", async () => {
    const runtime = make(2);
    const spec = { key: "cancer@1", modelPath: modelPath("breast_cancer_mlp") };
    const [a, b] = await Promise.all([runtime.load(spec), runtime.load(spec)]);
    const c = await runtime.load(spec);
    expect(b).toBe(a);
    expect(c).toBe(a);
    expect(runtime.stats().models).toEqual(["cancer@1"]);
    expect(runtime.stats().workers.map((w) => w.models)).toEqual([["cancer@1"], ["cancer@1"]]);
  });

  it("unloads a key in every worker; running it afterwards is a clear error; loading again works", async () => {
    const runtime = make(2);
    const spec = { key: "cancer@2", modelPath: modelPath("breast_cancer_mlp") };
    const model = await runtime.load(spec);
    await runtime.unload("cancer@2");
    await runtime.unload("not-a-key");
    expect(runtime.stats().workers.map((w) => w.models)).toEqual([[], []]);
    const error: unknown = await model.run({ input: inputRows(cancer, 0, 1) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MlshipError);
    expect(error).toMatchObject({ code: "MLSHIP_ERR_RUNTIME_UNAVAILABLE", field: "cancer@2" });
    expect((error as Error).message).toContain("cancer@2 is not loaded");
    const again = await runtime.load(spec);
    expect(again).not.toBe(model);
    const out = await again.run({ input: inputRows(cancer, 0, 1) });
    expect(Array.from(out.label!.data as BigInt64Array, Number)).toEqual([cancer.outputs.label![0]]);
  });

  it("reports a corrupt or missing model file as RUNTIME_LOAD naming the file, then loads a good one under the same key", async () => {
    const runtime = make(2);
    const corrupt = path.join(tmp.dir, "corrupt.onnx");
    writeFileSync(corrupt, readFileSync(modelPath("breast_cancer_mlp")).subarray(0, 4000));
    const error: unknown = await runtime.load({ key: "m@1", modelPath: corrupt }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MlshipError);
    expect(error).toMatchObject({ code: "MLSHIP_ERR_RUNTIME_LOAD", field: corrupt });
    expect((error as Error).message).toContain(`cannot load model file ${corrupt}`);

    const garbage = path.join(tmp.dir, "garbage.onnx");
    writeFileSync(garbage, "this is not a protobuf at all");
    await expect(runtime.load({ key: "m@1", modelPath: garbage })).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_LOAD", field: garbage });

    const missing = path.join(tmp.dir, "missing.onnx");
    await expect(runtime.load({ key: "m@1", modelPath: missing })).rejects.toMatchObject({
      code: "MLSHIP_ERR_RUNTIME_LOAD",
      field: missing,
      message: `cannot load model file ${missing}: no such file`,
    });
    await expect(runtime.load({ key: "m@1", modelPath: tmp.dir })).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_LOAD" });

    expect(runtime.stats().models).toEqual([]);
    const good = path.join(tmp.dir, "good.onnx");
    copyFileSync(modelPath("breast_cancer_mlp"), good);
    const model = await runtime.load({ key: "m@1", modelPath: good });
    const out = await model.run({ input: inputRows(cancer, 0, 2) });
    expect(Array.from(out.label!.data as BigInt64Array, Number)).toEqual(cancer.outputs.label!.slice(0, 2));
  });

  it("recovers from a worker that dies mid-run: its in-flight runs fail with RUNTIME_UNAVAILABLE, the next runs succeed", async () => {
    const runtime = make(2);
    const slow = await runtime.load({ key: "slow", modelPath: writeModel(tmp.dir, "slow", MODELS.slow) });
    const cancerModel = await runtime.load({ key: "cancer", modelPath: modelPath("breast_cancer_mlp") });
    const batch = (): Record<string, { dtype: "float32"; shape: number[]; data: Float32Array }> => ({
      x: { dtype: "float32", shape: [256, 1024], data: new Float32Array(256 * 1024).fill(1) },
    });
    const runs = Array.from({ length: 6 }, () => slow.run(batch()).then(
      (out) => ({ ok: true as const, out }),
      (error: unknown) => ({ ok: false as const, error }),
    ));
    // Stop worker 0 while it still has runs queued behind the current one (no sleep: on a loaded machine the
    // queue could drain first and nothing would be left to reject).
    const before = runtime.stats().workers[0]!;
    expect(before.inFlight).toBeGreaterThan(1);
    await runtime.terminateWorker(0);
    const results = await Promise.all(runs);
    const failed = results.filter((r) => !r.ok);
    expect(failed.length).toBeGreaterThanOrEqual(1);
    for (const r of failed) {
      expect(r.error).toBeInstanceOf(MlshipError);
      expect(r.error).toMatchObject({ code: "MLSHIP_ERR_RUNTIME_UNAVAILABLE" });
    }
    for (const r of results) {
      if (r.ok) expect((r.out.y!.data as Float32Array)[0]).toBeCloseTo(1, 4);
    }
    const after = runtime.stats().workers[0]!;
    expect(after.restarts).toBe(1);
    expect(after.alive).toBe(true);
    expect(after.threadId).not.toBe(before.threadId);

    // The replacement re-loads both models; until then the other worker serves.
    const out = await cancerModel.run({ input: inputRows(cancer) });
    expect(Array.from(out.label!.data as BigInt64Array, Number)).toEqual(cancer.outputs.label);
    const deadline = Date.now() + 20_000;
    while (!["slow", "cancer"].every((k) => runtime.stats().workers[0]!.models.includes(k))) {
      if (Date.now() > deadline) throw new Error("the replacement worker did not re-load the models");
      await sleep(20);
    }
    const completed = runtime.stats().workers.map((w) => w.runsCompleted);
    await Promise.all(Array.from({ length: 40 }, (_, i) => cancerModel.run({ input: inputRows(cancer, i, i + 1) })));
    const served = runtime.stats().workers.map((w, k) => w.runsCompleted - completed[k]!);
    expect(served[0]).toBeGreaterThan(0);
    expect(served[1]).toBeGreaterThan(0);
  });

  it("closes cleanly: later calls reject with RUNTIME_UNAVAILABLE and close is idempotent", async () => {
    const runtime = make(2);
    const model = await runtime.load({ key: "add2", modelPath: writeModel(tmp.dir, "add2", MODELS.add2) });
    const running = model.run({ a: f32([1, 2, 3], [1, 3]), b: f32([1, 1, 1], [1, 3]) });
    await runtime.close();
    expect(Array.from((await running).sum!.data as Float32Array)).toEqual([2, 3, 4]);
    await runtime.close();
    expect(runtime.stats().closed).toBe(true);
    expect(runtime.stats().workers.every((w) => !w.alive)).toBe(true);
    await expect(model.run({ a: f32([1, 2, 3], [1, 3]), b: f32([1, 1, 1], [1, 3]) })).rejects.toMatchObject({
      code: "MLSHIP_ERR_RUNTIME_UNAVAILABLE",
    });
    await expect(runtime.load({ key: "add2", modelPath: path.join(tmp.dir, "add2.onnx") })).rejects.toMatchObject({
      code: "MLSHIP_ERR_RUNTIME_UNAVAILABLE",
    });
    await expect(runtime.unload("add2")).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_UNAVAILABLE" });
  });

  it("refuses invalid options", () => {
    expect(() => createOnnxRuntime({ workers: 0 })).toThrow(expect.objectContaining({ code: "MLSHIP_ERR_CONFIG_INVALID", field: "workers" }) as Error);
    expect(() => createOnnxRuntime({ intraOpThreads: 0 })).toThrow(
      expect.objectContaining({ code: "MLSHIP_ERR_CONFIG_INVALID", field: "intraOpThreads" }) as Error,
    );
  });
});
