import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createOnnxRuntime } from "../../src/runtime/index.js";
import type { OnnxRuntime } from "../../src/runtime/index.js";
import { MODELS } from "./models.js";
import { f32, tempDir, writeModel } from "./util.js";

const FIXTURE = path.resolve(import.meta.dirname, "../../../shared/fixtures/breast_cancer_mlp");
const expected = JSON.parse(fs.readFileSync(path.join(FIXTURE, "expected.json"), "utf8")) as {
  inputs: number[][];
  outputs: { probabilities: number[][]; label: number[] };
  tolerance: { probabilities_abs: number };
};

const tmp = tempDir();
let inline: OnnxRuntime;
let pooled: OnnxRuntime;

/** Runs completed by the workers of a runtime (inline runs never reach them). */
function workerRuns(runtime: OnnxRuntime): number {
  return runtime.stats().workers.reduce((sum, w) => sum + w.runsCompleted, 0);
}

function rowsOf(from: number, count: number): Float32Array {
  const out = new Float32Array(count * 30);
  for (let r = 0; r < count; r++) out.set(expected.inputs[(from + r) % expected.inputs.length] as number[], r * 30);
  return out;
}

beforeAll(() => {
  // A generous budget, so that the calibration decides the same on a busy machine.
  inline = createOnnxRuntime({ workers: 1, inlineMaxMicros: 20_000 });
  pooled = createOnnxRuntime({ workers: 1 });
});
afterAll(async () => {
  await inline.close();
  await pooled.close();
  tmp.cleanup();
});

describe("inline execution of small ONNX runs", () => {
  it("runs the real MLP's small batches on the caller's thread with the workers' results, and large ones on the workers", async () => {
    const a = await inline.load({ key: "bc-inline@1", modelPath: path.join(FIXTURE, "model.onnx") });
    const b = await pooled.load({ key: "bc-pooled@1", modelPath: path.join(FIXTURE, "model.onnx") });
    const before = workerRuns(inline);
    for (let r = 0; r < expected.inputs.length; r++) {
      const one = await a.run({ input: f32(Array.from(rowsOf(r, 1)), [1, 30]) });
      const probs = Array.from(one.probabilities!.data as Float32Array);
      const want = expected.outputs.probabilities[r] as number[];
      for (let c = 0; c < 2; c++) expect(Math.abs((probs[c] as number) - (want[c] as number))).toBeLessThanOrEqual(expected.tolerance.probabilities_abs);
      expect(Number((one.label!.data as BigInt64Array)[0])).toBe(expected.outputs.label[r]);
    }
    // 50 one-row runs and none reached a worker.
    expect(workerRuns(inline)).toBe(before);

    // The same batch inline and on a worker gives the same bytes.
    const batch = rowsOf(0, 50);
    const viaInline = await a.run({ input: { dtype: "float32", shape: [50, 30], data: batch.slice() } });
    const viaPool = await b.run({ input: { dtype: "float32", shape: [50, 30], data: batch.slice() } });
    expect(Array.from(viaInline.probabilities!.data as Float32Array)).toEqual(Array.from(viaPool.probabilities!.data as Float32Array));
    expect(workerRuns(pooled)).toBe(1);

    // A batch far beyond what the budget allows goes to the worker.
    const big = 200_000;
    const runsBefore = workerRuns(inline);
    const out = await a.run({ input: { dtype: "float32", shape: [big, 30], data: rowsOf(0, big) } });
    expect(out.probabilities!.shape).toEqual([big, 2]);
    expect(workerRuns(inline)).toBe(runsBefore + 1);
  });

  it("keeps models without a batch axis or with string inputs on the workers, and errors name the model", async () => {
    const fixed = await inline.load({ key: "fixed@1", modelPath: writeModel(tmp.dir, "fixed", MODELS.fixed) });
    const before = workerRuns(inline);
    const out = await fixed.run({ v: f32([1, 2, 3], [3]) });
    expect(Array.from(out.doubled!.data as Float32Array)).toEqual([2, 4, 6]);
    expect(workerRuns(inline)).toBe(before + 1);

    const text = await inline.load({ key: "string@1", modelPath: writeModel(tmp.dir, "string", MODELS.string) });
    const echoed = await text.run({ text: { dtype: "string", shape: [1, 2], data: ["a", "b"] } });
    expect(echoed.echo!.data).toEqual(["a", "b"]);
    expect(workerRuns(inline)).toBe(before + 2);

    // A run that fails inside onnxruntime, inline (zeros calibrate fine; an index out of range fails): the error
    // carries the runtime's code and the model's key, and the next run works.
    const gather = await inline.load({
      key: "gather@1",
      modelPath: writeModel(tmp.dir, "gather", {
        inputs: [{ name: "i", dtype: "int64", shape: ["batch", 1] }],
        outputs: [{ name: "v", dtype: "float32", shape: ["batch", 1] }],
        nodes: [{ op: "Gather", inputs: ["table", "i"], outputs: ["v"] }],
        initializers: [{ name: "table", dtype: "float32", dims: [3], values: [10, 20, 30] }],
      }),
    });
    const runsBefore = workerRuns(inline);
    const ok = await gather.run({ i: { dtype: "int64", shape: [2, 1], data: BigInt64Array.from([2n, 0n]) } });
    expect(Array.from(ok.v!.data as Float32Array)).toEqual([30, 10]);
    const error: unknown = await gather.run({ i: { dtype: "int64", shape: [1, 1], data: BigInt64Array.from([7n]) } }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "MLSHIP_ERR_RUNTIME_INFERENCE" });
    expect((error as Error).message).toContain("gather@1");
    const again = await gather.run({ i: { dtype: "int64", shape: [1, 1], data: BigInt64Array.from([1n]) } });
    expect(Array.from(again.v!.data as Float32Array)).toEqual([20]);
    expect(workerRuns(inline)).toBe(runsBefore);
  });

  it("is off at 0, and releases the inline session on unload", async () => {
    const off = createOnnxRuntime({ workers: 1, inlineMaxMicros: 0 });
    try {
      const m = await off.load({ key: "bc@1", modelPath: path.join(FIXTURE, "model.onnx") });
      await m.run({ input: f32(Array.from(rowsOf(0, 1)), [1, 30]) });
      expect(workerRuns(off)).toBe(1);
    } finally {
      await off.close();
    }
    const m = await inline.load({ key: "bc-unload@1", modelPath: path.join(FIXTURE, "model.onnx") });
    await m.run({ input: f32(Array.from(rowsOf(0, 1)), [1, 30]) });
    await inline.unload("bc-unload@1");
    await expect(m.run({ input: f32(Array.from(rowsOf(0, 1)), [1, 30]) })).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_UNAVAILABLE" });
    expect(() => createOnnxRuntime({ inlineMaxMicros: -1 })).toThrow(/inlineMaxMicros/);
  });
});
