import { rm } from "node:fs/promises";
import Fastify from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createOnnxRuntime } from "../../src/runtime/index.js";
import { createScoringService } from "../../src/scoring/index.js";
import { buildServer, mlshipPlugin } from "../../src/serve/index.js";
import { createWorld, csvBody, maxAbsDiff, readExpected, waitFor } from "../scoring/world.js";
import type { World } from "../scoring/world.js";

type Json = Record<string, unknown>;

const DIABETES_ROW = [37, 2, 23.6, 94, 205, 138.8, 53, 4, 4.1897, 107];

describe("a running server follows the registry", () => {
  let w: World;

  beforeAll(async () => {
    w = await createWorld();
    // Version 1 and 2 of one name are different models, so an answer shows which version served it.
    await w.register("switch", "breast_cancer_mlp", { columns: true });
    await w.register("switch", "diabetes_linear", { columns: true, labelColumn: "target" });
    await w.registry.setAlias("switch", "production", 1);
  });

  afterAll(async () => {
    await w?.close();
  });

  it("moves and rolls back `production` for V2 and /invocations within 2 s, changed through another connection", async () => {
    const app = buildServer({ scoring: w.scoring, registry: w.registry, defaultModel: "switch@production", logger: false });
    try {
      const version = async (): Promise<string | undefined> => {
        const res = await app.inject({ method: "POST", url: "/invocations", payload: { dataframe_split: { data: [DIABETES_ROW] } } });
        return res.statusCode === 200 ? res.headers["mlship-model-version"]?.toString() : `${res.statusCode}`;
      };
      const v2Version = async (): Promise<string> => {
        const res = await app.inject({ method: "GET", url: "/v2/models/switch%40production" });
        return res.headers["mlship-model-version"]?.toString() ?? "";
      };
      // Version 1 takes 30 columns, so the 10-value row is a 400 there.
      expect(await version()).toBe("400");
      expect(await v2Version()).toBe("switch@1");

      const cli = await w.openSecondRegistry();
      await cli.setAlias("switch", "production", 2, { by: "ops", reason: "promote" });
      // Generous deadlines for a loaded machine; the 2 s requirement is the assertion.
      const moved = await waitFor(async () => (await version()) === "switch@2", 10_000, 25);
      expect(moved).toBeLessThan(2000);
      expect(await v2Version()).toBe("switch@2");
      const res = await app.inject({ method: "POST", url: "/invocations", payload: { dataframe_split: { data: [DIABETES_ROW] } } });
      const e = await readExpected("diabetes_linear");
      expect(maxAbsDiff((res.json() as { predictions: Array<{ prediction: number }> }).predictions[0]?.prediction, e.outputs.prediction?.[0])).toBeLessThanOrEqual(1e-3);

      await cli.rollback("switch", "production", { by: "ops", reason: "bad release" });
      const rolled = await waitFor(async () => (await v2Version()) === "switch@1", 10_000, 25);
      expect(rolled).toBeLessThan(2000);
      expect(await version()).toBe("400");
    } finally {
      await app.close();
    }
  });

  it("unloads an archived version from the runtime while serving", async () => {
    const app = buildServer({ scoring: w.scoring, registry: w.registry, logger: false });
    try {
      const res = await app.inject({ method: "POST", url: "/v2/models/switch/versions/2/infer", payload: { inputs: [{ name: "input", shape: [1, 10], datatype: "FP32", data: DIABETES_ROW }] } });
      expect(res.statusCode).toBe(200);
      const key = w.scoring.loadedModels().find((m) => m.model === "switch" && m.version === 2)?.key as string;
      expect(w.runtime.stats().models).toContain(key);
      const cli = await w.openSecondRegistry();
      await cli.archive("switch", 2, { by: "ops" });
      await waitFor(async () => !w.runtime.stats().models.includes(key), 10_000);
      const gone = await app.inject({ method: "POST", url: "/v2/models/switch/versions/2/infer", payload: { inputs: [{ name: "input", shape: [1, 10], datatype: "FP32", data: DIABETES_ROW }] } });
      expect(gone.statusCode).toBe(404);
      expect((gone.json() as Json).code).toBe("MLSHIP_ERR_MODEL_VERSION_NOT_FOUND");
      expect(((await app.inject("/v2/models/switch")).json() as Json).versions).toEqual(["1"]);
    } finally {
      await app.close();
    }
  });
});

describe("serving over a real socket and inside a user's Fastify app", () => {
  let w: World;

  beforeAll(async () => {
    w = await createWorld();
    await w.register("diabetes", "diabetes_linear", { columns: true, labelColumn: "target" });
  });

  afterAll(async () => {
    await w?.close();
  });

  it("listens on port 0 and answers fetch with the only registered model at /invocations", async () => {
    const app = buildServer({ scoring: w.scoring, registry: w.registry, logger: false });
    await app.listen({ host: "127.0.0.1", port: 0 });
    try {
      const address = app.server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      const base = `http://127.0.0.1:${port}`;
      const e = await readExpected("diabetes_linear");
      const { text } = await csvBody("diabetes_linear", 5);
      const csv = await fetch(`${base}/invocations`, { method: "POST", headers: { "content-type": "text/csv" }, body: text });
      expect(csv.status).toBe(200);
      expect(csv.headers.get("mlship-model-version")).toBe("diabetes@1");
      expect(csv.headers.get("x-request-id")).toBeTruthy();
      const preds = ((await csv.json()) as { predictions: Array<{ prediction: number }> }).predictions.map((p) => p.prediction);
      expect(maxAbsDiff(preds, (e.outputs.prediction as number[][]).slice(0, 5).map((x) => x[0]))).toBeLessThanOrEqual(1e-3);

      const v2 = await fetch(`${base}/v2/models/diabetes/infer`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-request-id": "client-42" },
        body: JSON.stringify({ inputs: [{ name: "input", shape: [1, 10], datatype: "FP32", data: DIABETES_ROW }] }),
      });
      expect(v2.status).toBe(200);
      expect(v2.headers.get("x-request-id")).toBe("client-42");
      expect(((await v2.json()) as Json).model_version).toBe("1");

      const bad = await fetch(`${base}/v2/models/diabetes/infer`, { method: "POST", headers: { "content-type": "application/json" }, body: "{" });
      expect(bad.status).toBe(400);
      expect(((await bad.json()) as Json).code).toBe("MLSHIP_ERR_INPUT_JSON");
      const badUrl = await fetch(`${base}/v2/models/%E0%A4%A/infer`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
      expect(badUrl.status).toBeGreaterThanOrEqual(400);
      expect(badUrl.status).toBeLessThan(500);
      expect(((await badUrl.json()) as Json).code).toMatch(/^MLSHIP_ERR_/);
      expect((await fetch(`${base}/ping`)).status).toBe(200);
      const metrics = await (await fetch(`${base}/metrics`)).text();
      expect(metrics).toContain('mlship_requests_total{model="diabetes",version="1",protocol="mlflow",status="200"} 1');
      // The server is still alive after the bad requests.
      expect((await fetch(`${base}/v2/health/live`)).status).toBe(200);
    } finally {
      await app.close();
    }
  });

  it("answers 503 with Retry-After while a model is still loading", async () => {
    const runtime = createOnnxRuntime({ workers: 1 });
    const scoring = createScoringService({ registry: w.registry, runtimes: { onnx: runtime }, loadWaitMs: 0, retryAfterSeconds: 3 });
    const app = buildServer({ scoring, registry: w.registry, logger: false });
    try {
      const res = await app.inject({ method: "POST", url: "/v1/models/diabetes/invocations", payload: { instances: [DIABETES_ROW] } });
      expect(res.statusCode).toBe(503);
      expect(res.headers["retry-after"]).toBe("3");
      expect(res.json()).toMatchObject({ error_code: "TEMPORARILY_UNAVAILABLE", mlship_code: "MLSHIP_ERR_MODEL_NOT_READY" });
      expect((res.json() as Json).message).toContain("diabetes");
      const notReady = await app.inject("/v2/models/diabetes/ready");
      if (notReady.statusCode !== 200) expect(notReady.json()).toEqual({ name: "diabetes", ready: false });
      await waitFor(async () => (await app.inject("/v2/models/diabetes/ready")).statusCode === 200, 10_000);
      const ok = await app.inject({ method: "POST", url: "/v1/models/diabetes/invocations", payload: { instances: [DIABETES_ROW] } });
      expect(ok.statusCode).toBe(200);
    } finally {
      await app.close();
      await scoring.close();
      await runtime.close();
    }
  });

  it("mounts as a plugin under a prefix without touching the host app's own routes and parsers", async () => {
    const host = Fastify();
    host.post("/echo", async (request) => ({ got: request.body }));
    host.addContentTypeParser("text/plain", { parseAs: "string" }, (_req, body, done) => done(null, body));
    host.post("/text", async (request) => ({ text: request.body }));
    await host.register(mlshipPlugin, { scoring: w.scoring, registry: w.registry, prefix: "/ml", defaultModel: "diabetes" });
    try {
      expect((await host.inject({ method: "POST", url: "/echo", payload: { a: 1 } })).json()).toEqual({ got: { a: 1 } });
      expect((await host.inject({ method: "POST", url: "/text", payload: "hi", headers: { "content-type": "text/plain" } })).json()).toEqual({ text: "hi" });
      // The host's own malformed JSON errors stay Fastify's.
      const hostBad = await host.inject({ method: "POST", url: "/echo", payload: "{", headers: { "content-type": "application/json" } });
      expect((hostBad.json() as Json).code).toBe("FST_ERR_CTP_INVALID_JSON_BODY");

      const inv = await host.inject({ method: "POST", url: "/ml/invocations", payload: { dataframe_split: { data: [DIABETES_ROW] } } });
      expect(inv.statusCode).toBe(200);
      expect(inv.headers["mlship-model-version"]).toBe("diabetes@1");
      const v2 = await host.inject({ method: "POST", url: "/ml/v2/models/diabetes/infer", payload: { inputs: [{ name: "input", shape: [1, 10], datatype: "INT64", data: DIABETES_ROW.map(Math.round) }] } });
      expect(v2.statusCode).toBe(400);
      expect(v2.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_DTYPE", field: "inputs[0].datatype" });
      const plain = await host.inject({ method: "POST", url: "/ml/invocations", payload: "x", headers: { "content-type": "text/plain" } });
      expect(plain.statusCode).toBe(415);
      expect((plain.json() as Json).mlship_code).toBe("MLSHIP_ERR_INPUT_CONTENT_TYPE");
      expect((await host.inject("/ml/metrics")).statusCode).toBe(200);
      expect((await host.inject("/v2/health/live")).statusCode).toBe(404);
    } finally {
      await host.close();
    }
  });

  it("with nothing loaded, reports not ready when the registry is gone, without crashing", async () => {
    const local = await createWorld();
    await local.register("diabetes", "diabetes_linear");
    const app = buildServer({ scoring: local.scoring, registry: local.registry, logger: false });
    try {
      expect((await app.inject("/v2/health/ready")).json()).toEqual({ ready: true });
      await local.registry.close();
      const res = await app.inject("/v2/health/ready");
      expect(res.statusCode).toBe(503);
      expect(res.json()).toEqual({ ready: false });
      expect((await app.inject("/v2/health/live")).statusCode).toBe(200);
    } finally {
      await app.close();
      await local.scoring.close();
      await local.runtime.close();
      await rm(local.home, { recursive: true, force: true });
    }
  });

  it("with a version loaded, stays ready when the registry is gone (a store outage must not empty the load balancer) and serves it", async () => {
    const local = await createWorld();
    await local.register("diabetes", "diabetes_linear");
    const app = buildServer({ scoring: local.scoring, registry: local.registry, logger: false });
    try {
      expect((await app.inject("/v2/health/ready")).json()).toEqual({ ready: true });
      const infer = () => app.inject({ method: "POST", url: "/v1/models/diabetes/invocations", payload: { instances: [DIABETES_ROW] } });
      expect((await infer()).statusCode).toBe(200);
      await local.registry.close();
      const res = await app.inject("/v2/health/ready");
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ ready: true });
      // What was resolved before keeps being served; what needs the store answers 503 with Retry-After.
      await new Promise((r) => setTimeout(r, 600));
      expect((await infer()).statusCode).toBe(200);
      const md = await app.inject("/v2/models/diabetes");
      expect(md.statusCode).toBe(503);
      expect(md.headers["retry-after"]).toBe("1");
      expect((md.json() as Json).code).toBe("MLSHIP_ERR_STORE_UNAVAILABLE");
      const other = await app.inject({ method: "POST", url: "/v1/models/other/invocations", payload: { instances: [DIABETES_ROW] } });
      expect(other.statusCode).toBe(503);
      expect((other.json() as Json).mlship_code).toBe("MLSHIP_ERR_STORE_UNAVAILABLE");
    } finally {
      await app.close();
      await local.scoring.close();
      await local.runtime.close();
      await rm(local.home, { recursive: true, force: true });
    }
  });
});
