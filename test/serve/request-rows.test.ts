/**
 * The per-request row limit (`max_request_rows`, server default `serving.maxRequestRows`): an online request over it is
 * refused with 413 MLSHIP_ERR_INPUT_TOO_LARGE (gRPC RESOURCE_EXHAUSTED) before it is queued, on every protocol, while
 * batch jobs and stream pipelines (which choose their own chunk sizes) are not bound by it. Real breast-cancer MLP,
 * real ONNX runtime, SQLite registry in a temp home, a gRPC client generated from the proto.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { status } from "@grpc/grpc-js";
import type { Client } from "@grpc/grpc-js";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { MlshipError, silentLogger } from "../../src/core/index.js";
import type { BatchInfo } from "../../src/scoring/index.js";
import { buildServer, createGrpcServer } from "../../src/serve/index.js";
import type { GrpcServer } from "../../src/serve/index.js";
import { connect, outputValues, rpc, rpcError, trailer } from "../grpc/client.js";
import type { InferResponse } from "../grpc/client.js";
import { csvBody, FIXTURES, maxAbsDiff, readExpected } from "../scoring/world.js";
import { createWorld } from "../scoring/world.js";
import type { Expected, World } from "../scoring/world.js";

const LIMIT = 5;

describe("max_request_rows", { timeout: 120_000 }, () => {
  let w: World;
  let app: FastifyInstance;
  let grpc: GrpcServer;
  let client: Client;
  let expected: Expected;
  let columns: string[];
  const batches: BatchInfo[] = [];

  const probabilities = (n: number): number[][] => (expected.outputs.probabilities as number[][]).slice(0, n);
  const tolerance = (): number => expected.tolerance.probabilities_abs as number;
  const v2 = (n: number) => ({ inputs: [{ name: "input", shape: [n, 30], datatype: "FP32", data: expected.inputs.slice(0, n).flat() }] });

  beforeAll(async () => {
    expected = await readExpected("breast_cancer_mlp");
    columns = (await csvBody("breast_cancer_mlp", 1)).columns;
    w = await createWorld({ refreshMs: 100 });
    await w.register("bc", "breast_cancer_mlp", { columns: true });
    app = buildServer({ scoring: w.scoring, registry: w.registry, logger: false });
    await app.ready();
    grpc = createGrpcServer({ scoring: w.scoring, registry: w.registry });
    client = connect(`127.0.0.1:${await grpc.listen("127.0.0.1", 0)}`);
    w.scoring.onBatch((b) => batches.push(b));
  }, 60_000);

  afterAll(async () => {
    client?.close();
    await grpc?.close(1000);
    await app?.close();
    await w?.close();
  });

  it("shows the default in the effective settings, and takes a registry override naming the field when bad", async () => {
    const shown = await app.inject({ method: "GET", url: "/api/v1/models/bc/versions/1/settings" });
    expect(shown.statusCode).toBe(200);
    const before = shown.json<{ settings: { max_request_rows: number }; sources: Record<string, string> }>();
    expect(before.settings.max_request_rows).toBe(65_536);
    expect(before.sources.max_request_rows).toBe("default");

    const bad = await app.inject({ method: "PUT", url: "/api/v1/models/bc/versions/1/settings", payload: { max_request_rows: 0 } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "max_request_rows" });
    expect(bad.json<{ error: string }>().error).toContain("max_request_rows must be an integer >= 1");

    const put = await app.inject({ method: "PUT", url: "/api/v1/models/bc/versions/1/settings", payload: { max_request_rows: LIMIT } });
    expect(put.statusCode).toBe(200);
    const after = put.json<{ settings: { max_request_rows: number }; sources: Record<string, string> }>();
    expect(after.settings.max_request_rows).toBe(LIMIT);
    expect(after.sources.max_request_rows).toBe("registry");
  });

  it("refuses 6 rows over V2 infer with 413 naming max_request_rows, before anything runs, and serves 5", async () => {
    batches.length = 0;
    const refused = await app.inject({ method: "POST", url: "/v2/models/bc/infer", payload: v2(LIMIT + 1) });
    expect(refused.statusCode).toBe(413);
    const body = refused.json<{ error: string; code: string; field: string }>();
    expect(body).toMatchObject({ code: "MLSHIP_ERR_INPUT_TOO_LARGE", field: "max_request_rows" });
    expect(body.error).toContain(`at most ${LIMIT} rows per request (max_request_rows), got ${LIMIT + 1}`);
    expect(refused.headers["retry-after"]).toBeUndefined();
    expect(refused.headers["mlship-model-version"]).toBe("bc@1");
    // Refused before the queue: no run was sent to the workers.
    expect(batches).toEqual([]);

    const ok = await app.inject({ method: "POST", url: "/v2/models/bc/infer", payload: v2(LIMIT) });
    expect(ok.statusCode, ok.body).toBe(200);
    const out = ok.json<{ outputs: Array<{ name: string; shape: number[]; data: number[] }> }>().outputs.find((o) => o.name === "probabilities");
    expect(out?.shape).toEqual([LIMIT, 2]);
    expect(maxAbsDiff(out?.data, probabilities(LIMIT).flat())).toBeLessThanOrEqual(tolerance());
    expect(batches.reduce((n, b) => n + b.rows, 0)).toBe(LIMIT);
  });

  it("refuses 6 rows over MLflow /invocations JSON with 413 in MLflow's error shape, and serves 5", async () => {
    const split = (n: number) => ({ dataframe_split: { columns, data: expected.inputs.slice(0, n) } });
    const refused = await app.inject({ method: "POST", url: "/invocations", payload: split(LIMIT + 1) });
    expect(refused.statusCode).toBe(413);
    const body = refused.json<{ error_code: string; message: string; mlship_code: string; field: string }>();
    expect(body).toMatchObject({ error_code: "BAD_REQUEST", mlship_code: "MLSHIP_ERR_INPUT_TOO_LARGE", field: "max_request_rows" });
    expect(body.message).toContain("max_request_rows");
    // The `instances` form counts rows the same way.
    const instances = await app.inject({ method: "POST", url: "/v1/models/bc/invocations", payload: { instances: expected.inputs.slice(0, LIMIT + 1) } });
    expect(instances.statusCode).toBe(413);
    expect(instances.json()).toMatchObject({ mlship_code: "MLSHIP_ERR_INPUT_TOO_LARGE", field: "max_request_rows" });

    const ok = await app.inject({ method: "POST", url: "/invocations", payload: split(LIMIT) });
    expect(ok.statusCode, ok.body).toBe(200);
    const predictions = ok.json<{ predictions: Array<{ probabilities: number[] }> }>().predictions;
    expect(predictions).toHaveLength(LIMIT);
    expect(maxAbsDiff(predictions.map((p) => p.probabilities), probabilities(LIMIT))).toBeLessThanOrEqual(tolerance());
  });

  it("refuses 6 rows of CSV with 413, and serves 5", async () => {
    const refused = await app.inject({ method: "POST", url: "/invocations", payload: (await csvBody("breast_cancer_mlp", LIMIT + 1)).text, headers: { "content-type": "text/csv" } });
    expect(refused.statusCode).toBe(413);
    expect(refused.json()).toMatchObject({ error_code: "BAD_REQUEST", mlship_code: "MLSHIP_ERR_INPUT_TOO_LARGE", field: "max_request_rows" });

    const ok = await app.inject({ method: "POST", url: "/invocations", payload: (await csvBody("breast_cancer_mlp", LIMIT)).text, headers: { "content-type": "text/csv" } });
    expect(ok.statusCode, ok.body).toBe(200);
    const predictions = ok.json<{ predictions: Array<{ probabilities: number[] }> }>().predictions;
    expect(maxAbsDiff(predictions.map((p) => p.probabilities), probabilities(LIMIT))).toBeLessThanOrEqual(tolerance());
  });

  it("refuses 6 rows over gRPC ModelInfer with RESOURCE_EXHAUSTED and the code trailer, and serves 5", async () => {
    const request = (n: number) => ({
      model_name: "bc",
      inputs: [{ name: "input", datatype: "FP32", shape: [n, 30], contents: { fp32_contents: expected.inputs.slice(0, n).flat() } }],
    });
    const refused = await rpcError(client, "ModelInfer", request(LIMIT + 1));
    expect(refused.code, refused.details).toBe(status.RESOURCE_EXHAUSTED);
    expect(trailer(refused, "mlship-error-code")).toBe("MLSHIP_ERR_INPUT_TOO_LARGE");
    expect(trailer(refused, "mlship-error-field")).toBe("max_request_rows");
    expect(trailer(refused, "mlship-model-version")).toBe("bc@1");
    expect(refused.details).toContain("max_request_rows");
    expect(trailer(refused, "retry-after")).toBeUndefined();

    const ok = await rpc<InferResponse>(client, "ModelInfer", request(LIMIT));
    expect(maxAbsDiff(outputValues(ok.response, "probabilities"), probabilities(LIMIT).flat())).toBeLessThanOrEqual(tolerance());
  });

  it("does not bound batch jobs or stream pipelines, which choose their own chunk sizes", async () => {
    const n = 40;
    const input = { kind: "mlflow" as const, body: { dataframe_split: { columns, data: expected.inputs.slice(0, n) } } };
    for (const protocol of ["batch", "stream"]) {
      const result = await w.scoring.score("bc", input, { protocol });
      expect(result.rows).toBe(n);
      expect(maxAbsDiff(Array.from(result.outputs.probabilities?.data as Float32Array), probabilities(n).flat())).toBeLessThanOrEqual(tolerance());
    }
    // The same rows from an online caller (the library's default protocol) are refused.
    await expect(w.scoring.score("bc", input)).rejects.toMatchObject({ code: "MLSHIP_ERR_INPUT_TOO_LARGE", field: "max_request_rows" });
    await expect(w.scoring.score("bc", input, { protocol: "v2" })).rejects.toMatchObject({ code: "MLSHIP_ERR_INPUT_TOO_LARGE", field: "max_request_rows" });
  });

  it("serves more again once the override is dropped", async () => {
    await app.inject({ method: "PUT", url: "/api/v1/models/bc/versions/1/settings", payload: {} });
    const ok = await app.inject({ method: "POST", url: "/v2/models/bc/infer", payload: v2(LIMIT + 1) });
    expect(ok.statusCode, ok.body).toBe(200);
  });
});

describe("serving.maxRequestRows in createMlship", { timeout: 120_000 }, () => {
  it("sets every version's default, which the registry override replaces", async () => {
    const expected = await readExpected("breast_cancer_mlp");
    const home = await mkdtemp(path.join(os.tmpdir(), "mlship-request-rows-"));
    const app = await createMlship(defaultConfig({ home, "runtime.workers": 1, "cache.backend": "off", "serving.maxRequestRows": 3 }), { logger: silentLogger() });
    try {
      await registerModel(app, path.join(FIXTURES, "breast_cancer_mlp", "model.onnx"), { name: "bc" });
      const effective = await app.scoring.settings("bc", 1);
      expect(effective.settings.max_request_rows).toBe(3);
      expect(effective.sources.max_request_rows).toBe("default");
      const rows = (n: number) => ({ kind: "mlflow" as const, body: { instances: expected.inputs.slice(0, n) } });
      expect((await app.scoring.score("bc", rows(3))).rows).toBe(3);
      let caught: unknown;
      try {
        await app.scoring.score("bc", rows(4), { protocol: "mlflow" });
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(MlshipError);
      expect((caught as MlshipError).httpStatus).toBe(413);
      expect((caught as MlshipError).message).toBe("model 'bc' version 1 takes at most 3 rows per request (max_request_rows), got 4; split the request");

      await app.registry.setVersionSettings("bc", 1, { max_request_rows: 10 });
      await app.scoring.refresh();
      expect((await app.scoring.settings("bc", 1)).sources.max_request_rows).toBe("registry");
      expect((await app.scoring.score("bc", rows(4), { protocol: "mlflow" })).rows).toBe(4);
    } finally {
      await app.close();
      await rm(home, { recursive: true, force: true });
    }
  });
});
