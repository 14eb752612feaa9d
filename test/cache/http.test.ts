import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildServer } from "../../src/serve/index.js";
import { MemoryPredictionCache, RedisPredictionCache } from "../../src/scoring/index.js";
import { createWorld, csvBody, readExpected, type Expected, type World } from "../scoring/world.js";

function metric(text: string, name: string, labels: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? undefined : Number(line.split(" ").pop());
}

describe("prediction cache over REST", () => {
  let w: World;
  let app: FastifyInstance;
  let expected: Expected;

  beforeAll(async () => {
    w = await createWorld({ cache: new MemoryPredictionCache() });
    await w.register("bc", "breast_cancer_mlp", { columns: true });
    app = buildServer({ scoring: w.scoring, registry: w.registry, logger: false });
    expected = await readExpected("breast_cancer_mlp");
  });

  afterAll(async () => {
    await app?.close();
    await w?.close();
  });

  it("says hit or miss in mlship-cache across V2 JSON, MLflow JSON and CSV, and counts them in /metrics", async () => {
    const rows = expected.inputs.slice(0, 3);
    const v2 = await app.inject({
      method: "POST",
      url: "/v2/models/bc/infer",
      payload: { inputs: [{ name: "input", shape: [3, 30], datatype: "FP32", data: rows.flat() }] },
    });
    expect(v2.statusCode).toBe(200);
    expect(v2.headers["mlship-cache"]).toBe("miss");
    const { columns, text } = await csvBody("breast_cancer_mlp", 3);
    const split = await app.inject({ method: "POST", url: "/v1/models/bc/invocations", payload: { dataframe_split: { columns, data: rows } } });
    expect(split.statusCode).toBe(200);
    expect(split.headers["mlship-cache"]).toBe("hit");
    const csv = await app.inject({ method: "POST", url: "/v1/models/bc/invocations", headers: { "content-type": "text/csv" }, payload: text });
    expect(csv.headers["mlship-cache"]).toBe("hit");
    expect((csv.json() as { predictions: Array<{ label: number }> }).predictions.map((p) => p.label)).toEqual((expected.outputs.label as number[]).slice(0, 3));
    const again = await app.inject({
      method: "POST",
      url: "/v2/models/bc/infer",
      payload: { inputs: [{ name: "input", shape: [3, 30], datatype: "FP32", data: rows.flat() }] },
    });
    expect(again.headers["mlship-cache"]).toBe("hit");
    expect(again.json()).toEqual(v2.json());
    const text2 = (await app.inject({ method: "GET", url: "/metrics" })).body;
    expect(metric(text2, "mlship_cache_hits_total", 'model="bc",version="1"')).toBe(3);
    expect(metric(text2, "mlship_cache_misses_total", 'model="bc",version="1"')).toBe(1);
    expect(metric(text2, "mlship_cache_errors_total", 'backend="memory"')).toBe(0);
  });

  it("raises mlship_cache_errors_total{backend=\"redis\"} and still answers when Redis is down", async () => {
    const down = new RedisPredictionCache({ url: "redis://127.0.0.1:1", keyPrefix: "mlship:pred:test-down:" });
    const world = await createWorld({ cache: down, workers: 1 });
    const server = buildServer({ scoring: world.scoring, registry: world.registry, logger: false });
    try {
      await world.register("bc", "breast_cancer_mlp");
      for (let i = 0; i < 3; i++) {
        const r = await server.inject({ method: "POST", url: "/v1/models/bc/invocations", payload: { instances: [expected.inputs[0]] } });
        expect(r.statusCode).toBe(200);
        expect(r.headers["mlship-cache"]).toBe("miss");
      }
      await new Promise((r) => setTimeout(r, 20));
      const text = (await server.inject({ method: "GET", url: "/metrics" })).body;
      expect(metric(text, "mlship_cache_errors_total", 'backend="redis"')).toBeGreaterThanOrEqual(6); // a get and a set each
      expect(metric(text, "mlship_cache_misses_total", 'model="bc",version="1"')).toBe(3);
    } finally {
      await server.close();
      await world.close();
      await down.close();
    }
  });
});
