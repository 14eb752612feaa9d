/**
 * Adaptive batching, admission (max_queue), deadlines (timeout_ms) and fairness between versions, on the real
 * ONNX runtime with two workers. Timings are asserted relative to each other or to a generous bound, never to
 * a tight absolute figure.
 */
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MlshipError, Tensor } from "../../src/core/index.js";
import { tensorValues } from "../../src/scoring/index.js";
import type { BatchInfo } from "../../src/scoring/index.js";
import { writeOnnxModel, type ModelSpec } from "../helpers/onnx-builder.js";
import { createWorld, maxAbsDiff, readExpected } from "./world.js";
import type { World } from "./world.js";

const WIDTH = 256;

/** A deliberately slow model: a chain of WIDTH x WIDTH MatMuls (one shared weight), per-row cost ~ depth * WIDTH^2. */
function slowModel(depth: number): ModelSpec {
  const weights: number[] = [];
  for (let i = 0; i < WIDTH * WIDTH; i++) weights.push(((i * 7919) % 13) / 1000 - 0.006);
  const nodes: ModelSpec["nodes"] = [];
  let prev = "x";
  for (let i = 0; i < depth; i++) {
    const out = i === depth - 1 ? "y" : `h${i}`;
    nodes.push({ op: "MatMul", inputs: [prev, "w"], outputs: [out] });
    prev = out;
  }
  return {
    inputs: [{ name: "x", dtype: "float32", shape: ["batch", WIDTH] }],
    outputs: [{ name: "y", dtype: "float32", shape: ["batch", WIDTH] }],
    nodes,
    initializers: [{ name: "w", dtype: "float32", dims: [WIDTH, WIDTH], values: weights }],
  };
}

describe("adaptive batching and overload", () => {
  let w: World;
  const batches: BatchInfo[] = [];

  beforeAll(async () => {
    w = await createWorld({ refreshMs: 100, workers: 2 });
    w.scoring.onBatch((b) => batches.push(b));
    await w.register("bc", "breast_cancer_mlp");
    await w.register("bc2", "breast_cancer_mlp");
    const file = path.join(w.home, "graphs", "slow.onnx");
    await mkdir(path.dirname(file), { recursive: true });
    writeOnnxModel(file, slowModel(60));
    await w.register("slow", file);
    await w.register("slow2", file);
    await w.scoring.load("bc");
    await w.scoring.load("bc2");
    await w.scoring.load("slow");
    await w.scoring.load("slow2");
  }, 60_000);

  afterAll(async () => {
    await w.close();
  });

  const settings = async (name: string, s: Parameters<World["registry"]["setVersionSettings"]>[2]): Promise<void> => {
    await w.registry.setVersionSettings(name, 1, s);
    await w.scoring.refresh();
  };
  const bcRequest = (row: number[]) => ({ kind: "v2" as const, body: { inputs: [{ name: "input", shape: [1, 30], datatype: "FP32", data: row }] } });

  it("merges concurrent requests into fewer runs within max_batch_size, with results identical to unbatched", async () => {
    const expected = await readExpected("breast_cancer_mlp");
    await settings("bc", { batching: { max_batch_size: 8, max_delay_ms: 20 } });
    batches.length = 0;
    const rows = expected.inputs.slice(0, 40);
    const results = await Promise.all(rows.map((row) => w.scoring.score("bc", bcRequest(row))));
    const mine = batches.filter((b) => b.model === "bc");
    expect(mine.reduce((n, b) => n + b.requests, 0)).toBe(40);
    expect(mine.length).toBeLessThan(40 / 2);
    for (const b of mine) expect(b.rows).toBeLessThanOrEqual(8);
    await settings("bc", { batching: { enabled: false } });
    batches.length = 0;
    const alone = await Promise.all(rows.map((row) => w.scoring.score("bc", bcRequest(row))));
    expect(batches.filter((b) => b.model === "bc").every((b) => b.rows === 1)).toBe(true);
    results.forEach((r, i) => {
      expect(tensorValues(r.outputs.label as Tensor)).toEqual([expected.outputs.label?.[i]]);
      expect(maxAbsDiff(tensorValues(r.outputs.probabilities as Tensor), expected.outputs.probabilities?.[i])).toBeLessThanOrEqual(1e-5);
      // Batched and unbatched runs give the same numbers.
      expect(tensorValues(r.outputs.probabilities as Tensor)).toEqual(tensorValues(alone[i]?.outputs.probabilities as Tensor));
    });
  });

  it("adds no wait at low traffic: a lone request with max_delay_ms=200 answers far sooner than 200 ms", async () => {
    const expected = await readExpected("breast_cancer_mlp");
    await settings("bc", { batching: { max_batch_size: 64, max_delay_ms: 200 } });
    const row = expected.inputs[0] as number[];
    await w.scoring.score("bc", bcRequest(row));
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      await w.scoring.score("bc", bcRequest(row));
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    expect(times[2]).toBeLessThan(100);
  });

  it("bounds the extra wait by max_delay_ms while the version is busy, and sends preferred sizes at once", async () => {
    const expected = await readExpected("breast_cancer_mlp");
    await settings("bc", { batching: { max_batch_size: 64, max_delay_ms: 30 } });
    batches.length = 0;
    // Waves of requests while others are running: each request waits at most max_delay_ms in the queue for
    // batching (a little scheduling slack allowed), since a worker is free.
    const all: Array<Promise<unknown>> = [];
    for (let wave = 0; wave < 5; wave++) {
      for (let i = 0; i < 3; i++) all.push(w.scoring.score("bc", bcRequest(expected.inputs[i] as number[])));
      await new Promise((r) => setTimeout(r, 5));
    }
    await Promise.all(all);
    const waits = batches.filter((b) => b.model === "bc").flatMap((b) => b.waits);
    expect(waits.length).toBe(15);
    expect(Math.max(...waits)).toBeLessThan(0.03 + 0.05);

    await settings("bc", { batching: { max_batch_size: 16, max_delay_ms: 1000, preferred_batch_sizes: [4] } });
    batches.length = 0;
    const t0 = performance.now();
    await Promise.all(expected.inputs.slice(0, 12).map((row) => w.scoring.score("bc", bcRequest(row))));
    const mine = batches.filter((b) => b.model === "bc");
    expect(mine.map((b) => b.rows)).toEqual([4, 4, 4]);
    // Preferred sizes leave at once: nobody waited for the 1 s delay.
    expect(performance.now() - t0).toBeLessThan(500);
  });

  it("picks up settings changed in the registry at runtime", async () => {
    const expected = await readExpected("breast_cancer_mlp");
    await settings("bc", { batching: { max_batch_size: 2, max_delay_ms: 0 } });
    const effective = await w.scoring.settings("bc", 1);
    expect(effective.settings.batching).toMatchObject({ max_batch_size: 2, max_delay_ms: 0 });
    expect(effective.sources["batching.max_batch_size"]).toBe("registry");
    expect(effective.sources.max_queue).toBe("default");
    batches.length = 0;
    await Promise.all(expected.inputs.slice(0, 10).map((row) => w.scoring.score("bc", bcRequest(row))));
    const mine = batches.filter((b) => b.model === "bc");
    expect(mine.every((b) => b.rows <= 2)).toBe(true);
    expect(mine.some((b) => b.rows === 2)).toBe(true);
    // The background refresh (refreshMs 100) picks a change up without an explicit refresh, within 1 s.
    await w.registry.setVersionSettings("bc", 1, { batching: { max_batch_size: 5 } });
    await new Promise((r) => setTimeout(r, 600));
    batches.length = 0;
    await Promise.all(expected.inputs.slice(0, 10).map((row) => w.scoring.score("bc", bcRequest(row))));
    expect(Math.max(...batches.filter((b) => b.model === "bc").map((b) => b.rows))).toBe(5);
  });

  it("refuses requests beyond max_queue at once with OVERLOADED and a retry delay", async () => {
    await settings("slow", { max_queue: 4, batching: { enabled: false } });
    const heap = process.memoryUsage().heapUsed;
    const outcomes = await Promise.allSettled(
      Array.from({ length: 60 }, () => w.scoring.score("slow", { kind: "tensors", feeds: { x: { dtype: "float32", shape: [8, WIDTH], data: new Float32Array(8 * WIDTH).fill(0.01) } } })),
    );
    const ok = outcomes.filter((o) => o.status === "fulfilled").length;
    const refused = outcomes.filter((o): o is PromiseRejectedResult => o.status === "rejected").map((o) => o.reason as MlshipError);
    expect(ok).toBeGreaterThanOrEqual(4);
    expect(ok).toBeLessThanOrEqual(8);
    expect(refused.length).toBe(60 - ok);
    for (const e of refused) {
      expect(e.code).toBe("MLSHIP_ERR_SERVE_OVERLOADED");
      expect(e.retryAfterSeconds).toBeGreaterThanOrEqual(1);
      expect(e.message).toContain("max_queue 4");
    }
    expect(process.memoryUsage().heapUsed - heap).toBeLessThan(64 * 1024 * 1024);
    await settings("slow", {});
  });

  it("answers TIMEOUT past timeout_ms and drops queued work that did not start", async () => {
    await settings("slow", { timeout_ms: 40, batching: { enabled: false } });
    const runs = (): number => w.runtime.stats().workers.reduce((n, x) => n + x.runsCompleted + x.runsFailed, 0);
    const before = runs();
    const outcomes = await Promise.allSettled(
      Array.from({ length: 30 }, () => w.scoring.score("slow", { kind: "tensors", feeds: { x: { dtype: "float32", shape: [512, WIDTH], data: new Float32Array(512 * WIDTH).fill(0.01) } } })),
    );
    const timedOut = outcomes.filter((o) => o.status === "rejected" && (o.reason as MlshipError).code === "MLSHIP_ERR_SERVE_TIMEOUT");
    expect(timedOut.length).toBeGreaterThanOrEqual(25);
    const e = (timedOut[0] as PromiseRejectedResult).reason as MlshipError;
    expect(e.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(e.message).toContain("timeout_ms 40");
    await new Promise((r) => setTimeout(r, 500));
    // Only the runs already sent when the deadline passed were executed, not all 30.
    expect(runs() - before).toBeLessThan(15);
    await settings("slow", {});
  });

  it("loads a version with instances: 1 on one worker only, and still serves it", async () => {
    const expected = await readExpected("breast_cancer_mlp");
    await w.register("bc-one", "breast_cancer_mlp", { edit: (m) => ({ ...m, serving: { instances: 1 } }) });
    await w.scoring.load("bc-one");
    const holders = w.runtime.stats().workers.filter((x) => x.models.some((k) => k.startsWith("bc-one@")));
    expect(holders).toHaveLength(1);
    const results = await Promise.all(expected.inputs.slice(0, 8).map((row) => w.scoring.score("bc-one", bcRequest(row))));
    results.forEach((r, i) => expect(tensorValues(r.outputs.label as Tensor)).toEqual([expected.outputs.label?.[i]]));
    // Every other version stays on both workers.
    expect(w.runtime.stats().workers.every((x) => x.models.some((k) => k.startsWith("bc@")))).toBe(true);
  });

  it("keeps a fast model prompt while a slow model floods the pool", async () => {
    const expected = await readExpected("breast_cancer_mlp");
    await settings("bc2", { batching: { enabled: false } });
    await settings("slow2", { batching: { enabled: false }, max_queue: 1000 });
    const heavy = () => w.scoring.score("slow2", { kind: "tensors", feeds: { x: { dtype: "float32", shape: [64, WIDTH], data: new Float32Array(64 * WIDTH).fill(0.01) } } });
    // One heavy run alone, to know its cost on this machine.
    const h0 = performance.now();
    await heavy();
    const oneHeavy = performance.now() - h0;
    const f0 = performance.now();
    const flood = Promise.all(Array.from({ length: 24 }, heavy));
    await new Promise((r) => setTimeout(r, 5));
    const fast: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t = performance.now();
      await w.scoring.score("bc2", bcRequest(expected.inputs[i] as number[]));
      fast.push(performance.now() - t);
    }
    const fastDone = performance.now() - f0;
    await flood;
    const floodDone = performance.now() - f0;
    // The flood takes ~12 heavy runs per worker; the fast model's ten requests finish long before it ends.
    expect(fastDone).toBeLessThan(floodDone / 2);
    fast.sort((a, b) => a - b);
    expect(fast[5]).toBeLessThan(Math.max(oneHeavy, 20));
  }, 60_000);
});
