/** Serving settings over REST, overload (429 + Retry-After) and timeout (503) answers, readiness while draining. */
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildServer } from "../../src/serve/index.js";
import { createWorld, readExpected } from "../scoring/world.js";
import type { World } from "../scoring/world.js";

describe("serving settings, overload and drain over HTTP", () => {
  let w: World;
  let app: FastifyInstance;
  let draining = false;

  beforeAll(async () => {
    w = await createWorld({ refreshMs: 100 });
    await w.register("bc", "breast_cancer_mlp", { edit: (m) => ({ ...m, serving: { batching: { max_delay_ms: 3 }, timeout_ms: 20_000 } }) });
    app = buildServer({ scoring: w.scoring, registry: w.registry, logger: false, isDraining: () => draining });
    await app.ready();
  }, 60_000);

  afterAll(async () => {
    await app.close();
    await w.close();
  });

  it("shows effective settings with their sources, and replaces the override with PUT", async () => {
    const shown = await app.inject({ method: "GET", url: "/api/v1/models/bc/versions/1/settings" });
    expect(shown.statusCode).toBe(200);
    const body = shown.json<{ settings: { batching: Record<string, unknown>; timeout_ms: number }; sources: Record<string, string>; override: unknown }>();
    expect(body.settings.batching.max_delay_ms).toBe(3);
    expect(body.sources["batching.max_delay_ms"]).toBe("package");
    expect(body.sources["batching.max_batch_size"]).toBe("default");
    expect(body.settings.timeout_ms).toBe(20_000);
    expect(body.override).toEqual({});

    const put = await app.inject({ method: "PUT", url: "/api/v1/models/bc/versions/1/settings", payload: { batching: { max_batch_size: 8 }, max_queue: 3 } });
    expect(put.statusCode).toBe(200);
    const after = put.json<{ settings: { batching: Record<string, unknown>; max_queue: number }; sources: Record<string, string> }>();
    expect(after.settings.batching).toMatchObject({ max_batch_size: 8, max_delay_ms: 3 });
    expect(after.sources["batching.max_batch_size"]).toBe("registry");
    expect(after.settings.max_queue).toBe(3);

    const bad = await app.inject({ method: "PUT", url: "/api/v1/models/bc/versions/1/settings", payload: { batching: { max_batch_size: 0 } } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "batching.max_batch_size" });
    expect(bad.json<{ error: string }>().error).toContain("batching.max_batch_size must be an integer >= 1");
    const missing = await app.inject({ method: "GET", url: "/api/v1/models/bc/versions/7/settings" });
    expect(missing.statusCode).toBe(404);
  });

  it("answers 429 with Retry-After beyond max_queue", async () => {
    const expected = await readExpected("breast_cancer_mlp");
    await app.inject({ method: "PUT", url: "/api/v1/models/bc/versions/1/settings", payload: { max_queue: 2, batching: { enabled: false } } });
    const rows = Array.from({ length: 40 }, (_, i) => expected.inputs[i % expected.inputs.length] as number[]);
    const replies = await Promise.all(
      rows.map((row) => app.inject({ method: "POST", url: "/v2/models/bc/infer", payload: { inputs: [{ name: "input", shape: [1, 30], datatype: "FP32", data: row }] } })),
    );
    const refused = replies.filter((r) => r.statusCode === 429);
    expect(refused.length).toBeGreaterThan(0);
    expect(replies.every((r) => r.statusCode === 200 || r.statusCode === 429)).toBe(true);
    expect(refused[0]?.headers["retry-after"]).toBe("1");
    expect(refused[0]?.json()).toMatchObject({ code: "MLSHIP_ERR_SERVE_OVERLOADED", field: "max_queue" });
    await app.inject({ method: "PUT", url: "/api/v1/models/bc/versions/1/settings", payload: {} });
  });

  it("answers 503 with Retry-After when a request outlives timeout_ms", async () => {
    const expected = await readExpected("breast_cancer_mlp");
    await app.inject({ method: "PUT", url: "/api/v1/models/bc/versions/1/settings", payload: { timeout_ms: 1, batching: { enabled: false } } });
    const replies = await Promise.all(
      Array.from({ length: 30 }, () =>
        app.inject({ method: "POST", url: "/v2/models/bc/infer", payload: { inputs: [{ name: "input", shape: [1, 30], datatype: "FP32", data: expected.inputs[0] }] } }),
      ),
    );
    const late = replies.filter((r) => r.statusCode === 503);
    expect(late.length).toBeGreaterThan(0);
    expect(late[0]?.headers["retry-after"]).toBe("1");
    expect(late[0]?.json()).toMatchObject({ code: "MLSHIP_ERR_SERVE_TIMEOUT" });
    await app.inject({ method: "PUT", url: "/api/v1/models/bc/versions/1/settings", payload: {} });
  });

  it("reports batch sizes and queue waits in /metrics", async () => {
    const metrics = (await app.inject({ method: "GET", url: "/metrics" })).body;
    expect(metrics).toMatch(/mlship_batch_size_count\{model="bc",version="1"\} [1-9]/);
    expect(metrics).toMatch(/mlship_queue_wait_seconds_count\{model="bc",version="1"\} [1-9]/);
  });

  it("turns readiness false while draining", async () => {
    expect((await app.inject({ method: "GET", url: "/v2/health/ready" })).statusCode).toBe(200);
    draining = true;
    const ready = await app.inject({ method: "GET", url: "/v2/health/ready" });
    expect(ready.statusCode).toBe(503);
    expect(ready.json()).toEqual({ ready: false });
    expect(ready.headers["retry-after"]).toBe("1");
    // In-flight and new inference requests are still answered while draining.
    const expected = await readExpected("breast_cancer_mlp");
    const infer = await app.inject({ method: "POST", url: "/v2/models/bc/infer", payload: { inputs: [{ name: "input", shape: [1, 30], datatype: "FP32", data: expected.inputs[0] }] } });
    expect(infer.statusCode).toBe(200);
    draining = false;
  });
});
