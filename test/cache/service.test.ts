import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Tensor } from "../../src/core/index.js";
import { tensorValues } from "../../src/scoring/index.js";
import type { ScoreResult, ScoringInput } from "../../src/scoring/index.js";
import { MemoryPredictionCache } from "../../src/scoring/cache/index.js";
import { createWorld, csvBody, maxAbsDiff, readExpected, type Expected, type World } from "../scoring/world.js";

function values(result: ScoreResult, name: string): unknown[] {
  const t = result.outputs[name];
  expect(t).toBeDefined();
  return tensorValues(t as Tensor);
}

describe("prediction cache in the scoring service (real registry and ONNX runtime)", () => {
  let w: World;
  let cache: MemoryPredictionCache;
  let expected: Expected;
  let columns: string[];
  const runs = (): number => w.runtime.stats().workers.reduce((n, x) => n + x.runsCompleted, 0);

  beforeAll(async () => {
    cache = new MemoryPredictionCache();
    w = await createWorld({ cache, cacheTtlSeconds: 60 });
    await w.register("bc", "breast_cancer_mlp", { columns: true });
    await w.register("bc-off", "breast_cancer_mlp", { columns: true, edit: (m) => ({ ...m, serving: { cache: { enabled: false } } }) });
    await w.register("bc-ttl", "breast_cancer_mlp", { columns: true, edit: (m) => ({ ...m, serving: { cache: { ttl_seconds: 1 } } }) });
    expected = await readExpected("breast_cancer_mlp");
    columns = (await csvBody("breast_cancer_mlp", 1)).columns;
  });

  afterAll(async () => {
    await w?.close();
    await cache?.close();
  });

  const rows = (n: number, from = 0): number[][] => expected.inputs.slice(from, from + n);
  const v2 = (data: number[][], outputs?: string[]): ScoringInput => ({
    kind: "v2",
    body: { inputs: [{ name: "input", shape: [data.length, 30], datatype: "FP32", data: data.flat() }], ...(outputs === undefined ? {} : { outputs: outputs.map((name) => ({ name })) }) },
  });

  it("answers a repeated request from the cache without running the model, with identical results", async () => {
    const input = v2(rows(5));
    const before = runs();
    const first = await w.scoring.score("bc", input);
    expect(first.cached).toBe(false);
    expect(runs()).toBe(before + 1);
    const second = await w.scoring.score("bc", v2(rows(5)));
    expect(second.cached).toBe(true);
    expect(runs()).toBe(before + 1);
    for (const name of ["probabilities", "label"]) {
      expect(values(second, name)).toEqual(values(first, name));
      expect(second.outputs[name]?.shape).toEqual(first.outputs[name]?.shape);
      expect(second.outputs[name]?.dtype).toBe(first.outputs[name]?.dtype);
    }
    expect(values(second, "label")).toEqual((expected.outputs.label as number[]).slice(0, 5));
    expect(maxAbsDiff(values(second, "probabilities"), (expected.outputs.probabilities as number[][]).slice(0, 5))).toBeLessThanOrEqual(1e-5);
    expect(second.rows).toBe(5);
  });

  it("leaves batch scoring out of the cache: a repeated batch chunk runs the model again and is never a hit", async () => {
    const input = v2(rows(7));
    const before = runs();
    const first = await w.scoring.score("bc", input, { protocol: "batch" });
    const second = await w.scoring.score("bc", v2(rows(7)), { protocol: "batch" });
    expect(runs()).toBe(before + 2);
    expect([first.cached, second.cached]).toEqual([undefined, undefined]);
    // The same rows from an online request are a miss, not a hit left behind by the batch.
    expect((await w.scoring.score("bc", v2(rows(7)))).cached).toBe(false);
    expect(values(second, "label")).toEqual((expected.outputs.label as number[]).slice(0, 7));
  });

  it("shares one entry between V2, MLflow dataframe_split, instances, CSV, records and typed tensors", async () => {
    const data = rows(4, 10);
    const before = runs();
    const csv = await csvBody("breast_cancer_mlp", 14);
    const csvText = [csv.text.split("\n")[0], ...csv.text.split("\n").slice(11, 15)].join("\n");
    const forms: ScoringInput[] = [
      { kind: "mlflow", body: { dataframe_split: { columns, data } } },
      v2(data),
      { kind: "mlflow", body: { instances: data } },
      { kind: "csv", text: csvText },
      { kind: "records", records: data.map((r) => Object.fromEntries(columns.map((c, i) => [c, r[i]]))) },
      { kind: "tensors", feeds: { input: { dtype: "float32", shape: [4, 30], data: Float32Array.from(data.flat()) } } },
    ];
    const results: ScoreResult[] = [];
    for (const f of forms) results.push(await w.scoring.score("bc", f));
    expect(results.map((r) => r.cached)).toEqual([false, true, true, true, true, true]);
    expect(runs()).toBe(before + 1);
    for (const r of results) expect(values(r, "label")).toEqual((expected.outputs.label as number[]).slice(10, 14));
    // The orientation comes from the request, not from the entry.
    expect(results[0]?.orientation).toBe("records");
    expect(results[1]?.orientation).toBe("columnar");
  });

  it("misses when one float differs or other outputs are requested", async () => {
    const data = rows(2, 20);
    await w.scoring.score("bc", v2(data));
    const changed = data.map((r) => [...r]);
    (changed[1] as number[])[7] = ((changed[1] as number[])[7] as number) + 1e-3;
    const before = runs();
    expect((await w.scoring.score("bc", v2(changed))).cached).toBe(false);
    const onlyLabel = await w.scoring.score("bc", v2(data, ["label"]));
    expect(onlyLabel.cached).toBe(false);
    expect(Object.keys(onlyLabel.outputs)).toEqual(["label"]);
    expect(runs()).toBe(before + 2);
    const again = await w.scoring.score("bc", v2(data, ["label"]));
    expect(again.cached).toBe(true);
    expect(Object.keys(again.outputs)).toEqual(["label"]);
    expect((await w.scoring.score("bc", v2(data))).cached).toBe(true);
  });

  it("never answers one version with another's result, even with identical files", async () => {
    await w.register("twin", "breast_cancer_mlp", { columns: true });
    const v2n = await w.register("twin", "breast_cancer_mlp", { columns: true });
    expect(v2n).toBe(2);
    // Same model file and inputs; the version number alone must separate the entries (predictionKey's unit
    // test covers an identical digest under two version numbers).
    const data = rows(3, 30);
    const before = runs();
    expect((await w.scoring.score("twin@1", v2(data))).cached).toBe(false);
    const second = await w.scoring.score("twin@2", v2(data));
    expect(second.cached).toBe(false);
    expect(second.version).toBe(2);
    expect(runs()).toBe(before + 2);
    expect((await w.scoring.score("twin@1", v2(data))).cached).toBe(true);
    expect((await w.scoring.score("twin", v2(data))).cached).toBe(true); // latest = 2
  });

  it("gives callers their own arrays: mutating a result does not change the next hit", async () => {
    const data = rows(2, 40);
    const first = await w.scoring.score("bc", v2(data));
    const want = values(first, "probabilities");
    (first.outputs.probabilities?.data as Float32Array).fill(7);
    const hit = await w.scoring.score("bc", v2(data));
    expect(hit.cached).toBe(true);
    expect(values(hit, "probabilities")).toEqual(want);
    (hit.outputs.probabilities?.data as Float32Array).fill(8);
    expect(values(await w.scoring.score("bc", v2(data)), "probabilities")).toEqual(want);
  });

  it("skips the cache for a version whose package turns it off, and honours a package TTL", async () => {
    const data = rows(1, 45);
    const before = runs();
    for (let i = 0; i < 3; i++) expect((await w.scoring.score("bc-off", v2(data))).cached).toBeUndefined();
    expect(runs()).toBe(before + 3);
    expect((await w.scoring.score("bc-ttl", v2(data))).cached).toBe(false);
    expect((await w.scoring.score("bc-ttl", v2(data))).cached).toBe(true);
    await new Promise((r) => setTimeout(r, 1100));
    expect((await w.scoring.score("bc-ttl", v2(data))).cached).toBe(false);
  });

  it("follows a runtime registry override: turned off and back on without a restart", async () => {
    await w.register("bc-live", "breast_cancer_mlp", { columns: true });
    const data = rows(1, 46);
    await w.scoring.score("bc-live", v2(data));
    expect((await w.scoring.score("bc-live", v2(data))).cached).toBe(true);
    await w.registry.setVersionSettings("bc-live", 1, { cache: { enabled: false } });
    await w.scoring.refresh();
    const before = runs();
    expect((await w.scoring.score("bc-live", v2(data))).cached).toBeUndefined();
    expect(runs()).toBe(before + 1);
    await w.registry.setVersionSettings("bc-live", 1, {});
    await w.scoring.refresh();
    expect((await w.scoring.score("bc-live", v2(data))).cached).toBe(true);
  });

  it("counts hits and misses per version", () => {
    const stats = w.scoring.cacheStats();
    expect(stats?.backend).toBe("memory");
    expect(stats?.errors).toBe(0);
    const bc = stats?.versions.find((v) => v.model === "bc" && v.version === 1);
    expect(bc?.hits).toBeGreaterThanOrEqual(9);
    expect(bc?.misses).toBeGreaterThanOrEqual(5);
    expect(stats?.versions.find((v) => v.model === "bc-off")).toBeUndefined();
  });

  it("does nothing without a cache", async () => {
    const plain = await createWorld();
    try {
      await plain.register("bc", "breast_cancer_mlp");
      const a = await plain.scoring.score("bc", v2(rows(1)));
      const b = await plain.scoring.score("bc", v2(rows(1)));
      expect(a.cached).toBeUndefined();
      expect(b.cached).toBeUndefined();
      expect(plain.scoring.cacheStats()).toBeUndefined();
    } finally {
      await plain.close();
    }
  });
});
