// Overload (max_queue), deadlines (timeout_ms and the client's own gRPC deadline), not-ready models and the
// prediction cache over gRPC, as REST reports them: a real ONNX runtime on worker threads, a SQLite registry in a
// temp home, and a client generated from proto/open_inference_grpc.proto.
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { Metadata, status } from "@grpc/grpc-js";
import type { Client } from "@grpc/grpc-js";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPredictionCache } from "../../src/scoring/index.js";
import type { BatchInfo, ScoringEvent } from "../../src/scoring/index.js";
import { buildServer, createGrpcServer } from "../../src/serve/index.js";
import type { GrpcServer } from "../../src/serve/index.js";
import { writeOnnxModel } from "../helpers/onnx-builder.js";
import type { ModelSpec } from "../helpers/onnx-builder.js";
import { createWorld, maxAbsDiff, readExpected, waitFor } from "../scoring/world.js";
import type { Expected, World } from "../scoring/world.js";
import { connect, definition, outputValues, rpc, rpcError, trailer } from "./client.js";
import type { InferResponse } from "./client.js";

const WIDTH = 256;
const DEPTH = 240;
const ROWS = 2048;

/**
 * A deliberately slow model: DEPTH MatMuls by a WIDTH x WIDTH matrix of 1/WIDTH (exact in float32). The first turns
 * each row into its mean in every column, the others keep it, so every output row is its input row's mean. A
 * ROWS-row call costs about DEPTH * ROWS * WIDTH^2 multiply-adds (some hundreds of milliseconds on one thread).
 */
function slowModel(): ModelSpec {
  const nodes: ModelSpec["nodes"] = [];
  for (let i = 0; i < DEPTH; i++) nodes.push({ op: "MatMul", inputs: [i === 0 ? "x" : `h${i}`, "w"], outputs: [i === DEPTH - 1 ? "y" : `h${i + 1}`] });
  return {
    inputs: [{ name: "x", dtype: "float32", shape: ["batch", WIDTH] }],
    outputs: [{ name: "y", dtype: "float32", shape: ["batch", WIDTH] }],
    nodes,
    initializers: [{ name: "w", dtype: "float32", dims: [WIDTH, WIDTH], values: new Array<number>(WIDTH * WIDTH).fill(1 / WIDTH) }],
  };
}

/** Row r holds (r % 17 + 1) / 100 * (1 + j % 5); its mean is the row's base times 3. */
const HEAVY_INPUT = (() => {
  const x = new Float32Array(ROWS * WIDTH);
  for (let r = 0; r < ROWS; r++) for (let j = 0; j < WIDTH; j++) x[r * WIDTH + j] = ((r % 17) + 1) / 100 * (1 + (j % 5));
  return x;
})();
const HEAVY_RAW = Buffer.from(HEAVY_INPUT.buffer, HEAVY_INPUT.byteOffset, HEAVY_INPUT.byteLength);

/** Every output row equals the mean of its input row, computed here from the input. */
function checkHeavy(res: InferResponse): void {
  expect(res.outputs[0]).toMatchObject({ name: "y", datatype: "FP32", shape: [String(ROWS), String(WIDTH)] });
  const y = outputValues(res, "y") as number[];
  const expected: number[] = [];
  for (let r = 0; r < ROWS; r++) {
    let sum = 0;
    for (let j = 0; j < WIDTH; j++) sum += HEAVY_INPUT[r * WIDTH + j] as number;
    for (let j = 0; j < WIDTH; j++) expected.push(sum / WIDTH);
  }
  expect(maxAbsDiff(y, expected)).toBeLessThan(1e-4);
}

/**
 * One row for the same model: small enough to arrive in one frame. A call that is to be cancelled or to pass its
 * deadline while queued must reach the server first; a 2 MiB body on a busy machine could still be arriving when
 * the client gave up, and then the server never sees the call at all.
 */
function lightRequest(model: string, id: string): object {
  return { model_name: model, id, inputs: [{ name: "x", datatype: "FP32", shape: [1, WIDTH] }], raw_input_contents: [HEAVY_RAW.subarray(0, WIDTH * 4)] };
}

/** Requests of this model queued or running in the scoring service now. */
function queuedOf(w: World, model: string): number {
  return w.scoring.loadedModels().find((m) => m.model === model)?.queued ?? 0;
}

function inferMethod(): { path: string; requestSerialize: (v: object) => Buffer; responseDeserialize: (b: Buffer) => unknown } {
  const service = definition["inference.GRPCInferenceService"] as unknown as Record<string, ReturnType<typeof inferMethod>>;
  return service.ModelInfer as ReturnType<typeof inferMethod>;
}

function heavyRequest(model: string, id: string): object {
  return { model_name: model, id, inputs: [{ name: "x", datatype: "FP32", shape: [ROWS, WIDTH] }], raw_input_contents: [HEAVY_RAW] };
}

async function registerSlow(w: World, name: string, serving?: Parameters<World["registry"]["setVersionSettings"]>[2]): Promise<void> {
  const file = path.join(w.home, "graphs", "slow.onnx");
  await mkdir(path.dirname(file), { recursive: true });
  writeOnnxModel(file, slowModel());
  await w.register(name, file, serving === undefined ? {} : { edit: (m) => ({ ...m, serving }) });
}

/** Resolves with the `count`-th run sent to the workers for `model` from now on. */
function runsSent(w: World, model: string, count: number): Promise<void> {
  return new Promise((resolve) => {
    let seen = 0;
    const stop = w.scoring.onBatch((b: BatchInfo) => {
      if (b.model !== model || ++seen < count) return;
      stop();
      resolve();
    });
  });
}

/** Resolves with the scoring event of the request with this id. */
function scoredEvent(w: World, requestId: string): Promise<ScoringEvent> {
  return new Promise((resolve) => {
    const stop = w.scoring.onScored((e) => {
      if (e.requestId !== requestId) return;
      stop();
      resolve(e);
    });
  });
}

describe("gRPC overload and timeout_ms", { timeout: 120_000 }, () => {
  let w: World;
  let grpc: GrpcServer;
  let client: Client;

  beforeAll(async () => {
    w = await createWorld({ workers: 1, refreshMs: 50 });
    // max_queue from the package's own `serving` section.
    await registerSlow(w, "slow-q1", { max_queue: 1, batching: { enabled: false } });
    await registerSlow(w, "slow");
    await w.scoring.load("slow-q1");
    await w.scoring.load("slow");
    grpc = createGrpcServer({ scoring: w.scoring, registry: w.registry });
    client = connect(`127.0.0.1:${await grpc.listen("127.0.0.1", 0)}`);
  });

  afterAll(async () => {
    client?.close();
    await grpc?.close(1000);
    await w?.close();
  });

  const infer = (request: object) => rpc<InferResponse>(client, "ModelInfer", request);

  it("refuses a call beyond max_queue at once with RESOURCE_EXHAUSTED, the code and retry-after, then serves again", async () => {
    const running = runsSent(w, "slow-q1", 1);
    const first = infer(heavyRequest("slow-q1", "first"));
    await running;
    // The first call is running: with max_queue 1 the version has no room for a second.
    const refused = await rpcError(client, "ModelInfer", heavyRequest("slow-q1", "second"));
    expect(refused.code, refused.details).toBe(status.RESOURCE_EXHAUSTED);
    expect(trailer(refused, "mlship-error-code")).toBe("MLSHIP_ERR_SERVE_OVERLOADED");
    expect(trailer(refused, "retry-after")).toBe("1");
    expect(trailer(refused, "mlship-error-field")).toBe("max_queue");
    expect(trailer(refused, "mlship-model-version")).toBe("slow-q1@1");
    expect(refused.details).toContain("max_queue 1");
    checkHeavy((await first).response);
    // The server keeps serving: the queue has room again.
    const after = await infer(heavyRequest("slow-q1", "third"));
    checkHeavy(after.response);
    expect(trailer(after.trailers, "mlship-model-version")).toBe("slow-q1@1");
  });

  it("answers UNAVAILABLE with MLSHIP_ERR_SERVE_TIMEOUT and retry-after past timeout_ms (a registry override)", async () => {
    await w.registry.setVersionSettings("slow", 1, { timeout_ms: 50, batching: { enabled: false } });
    await w.scoring.refresh();
    try {
      const late = await rpcError(client, "ModelInfer", heavyRequest("slow", "late"));
      expect(late.code, late.details).toBe(status.UNAVAILABLE);
      expect(trailer(late, "mlship-error-code")).toBe("MLSHIP_ERR_SERVE_TIMEOUT");
      expect(trailer(late, "retry-after")).toBe("1");
      expect(trailer(late, "mlship-error-field")).toBe("timeout_ms");
      expect(trailer(late, "mlship-model-version")).toBe("slow@1");
    } finally {
      await w.registry.setVersionSettings("slow", 1, {});
      await w.scoring.refresh();
    }
    expect((await rpc(client, "ServerLive", {})).response).toEqual({ live: true });
    checkHeavy((await infer(heavyRequest("slow", "in-time"))).response);
  });
});

describe("gRPC client deadlines and models still loading", { timeout: 120_000 }, () => {
  let w: World;
  let grpc: GrpcServer;
  let client: Client;

  beforeAll(async () => {
    // One worker: at most two runs of a version are in flight, a third call waits in the version's queue.
    // loadWaitMs 0: a call never waits for a model that is still loading.
    w = await createWorld({ workers: 1, loadWaitMs: 0 });
    await registerSlow(w, "slow", { batching: { enabled: false } });
    grpc = createGrpcServer({ scoring: w.scoring, registry: w.registry });
    client = connect(`127.0.0.1:${await grpc.listen("127.0.0.1", 0)}`);
  });

  afterAll(async () => {
    client?.close();
    await grpc?.close(1000);
    await w?.close();
  });

  it("answers UNAVAILABLE with MLSHIP_ERR_MODEL_NOT_READY and retry-after while the model loads", async () => {
    const loading = await rpcError(client, "ModelInfer", heavyRequest("slow", "too-early"));
    expect(loading.code, loading.details).toBe(status.UNAVAILABLE);
    expect(trailer(loading, "mlship-error-code")).toBe("MLSHIP_ERR_MODEL_NOT_READY");
    expect(trailer(loading, "retry-after")).toBe("1");
    expect(trailer(loading, "mlship-model-version")).toBe("slow@1");
    await waitFor(async () => (await rpc<{ ready: boolean }>(client, "ModelReady", { name: "slow" })).response.ready, 60_000);
    checkHeavy((await rpc<InferResponse>(client, "ModelInfer", heavyRequest("slow", "loaded"))).response);
  });

  it("ends a call past the client's deadline with DEADLINE_EXCEEDED and drops its queued run", async () => {
    const bothRunning = runsSent(w, "slow", 2);
    const runs: BatchInfo[] = [];
    const stop = w.scoring.onBatch((b) => runs.push(b));
    try {
      const first = rpc<InferResponse>(client, "ModelInfer", heavyRequest("slow", "first"));
      const second = rpc<InferResponse>(client, "ModelInfer", heavyRequest("slow", "second"));
      await bothRunning;
      const outcome = scoredEvent(w, "hurried");
      const hurried = await rpcError(client, "ModelInfer", lightRequest("slow", "hurried"), new Metadata(), { deadline: Date.now() + 150 });
      expect(hurried.code, hurried.details).toBe(status.DEADLINE_EXCEEDED);
      // The server learnt of it through the call's cancellation and let go of the request while it was queued.
      const event = await outcome;
      expect(event.ok).toBe(false);
      expect(event.error?.code).toBe("MLSHIP_ERR_SERVE_TIMEOUT");
      checkHeavy((await first).response);
      checkHeavy((await second).response);
      // Had the hurried request stayed queued it would have been sent when the first run ended, before the second did.
      expect(runs).toHaveLength(2);
    } finally {
      stop();
    }
    expect((await rpc(client, "ServerLive", {})).response).toEqual({ live: true });
    checkHeavy((await rpc<InferResponse>(client, "ModelInfer", heavyRequest("slow", "after"))).response);
  });

  it("drops the queued run of a call the client cancels, and keeps serving", async () => {
    const bothRunning = runsSent(w, "slow", 2);
    const runs: BatchInfo[] = [];
    const stop = w.scoring.onBatch((b) => runs.push(b));
    try {
      const first = rpc<InferResponse>(client, "ModelInfer", heavyRequest("slow", "first"));
      const second = rpc<InferResponse>(client, "ModelInfer", heavyRequest("slow", "second"));
      await bothRunning;
      const outcome = scoredEvent(w, "abandoned");
      const { path: method, requestSerialize, responseDeserialize } = inferMethod();
      let resolveCode: (code: number) => void = () => undefined;
      const code = new Promise<number>((resolve) => (resolveCode = resolve));
      const call = client.makeUnaryRequest(method, requestSerialize, responseDeserialize, lightRequest("slow", "abandoned"), (err) => resolveCode(err?.code ?? status.OK));
      // Cancelled once the server has queued it behind the two running calls.
      await waitFor(async () => queuedOf(w, "slow") === 3, 10_000, 5);
      call.cancel();
      expect(await code).toBe(status.CANCELLED);
      const event = await outcome;
      expect(event.ok).toBe(false);
      expect(event.error?.code).toBe("MLSHIP_ERR_RUNTIME_UNAVAILABLE");
      expect(event.error?.message).toContain("cancelled");
      checkHeavy((await first).response);
      checkHeavy((await second).response);
      expect(runs).toHaveLength(2);
    } finally {
      stop();
    }
    checkHeavy((await rpc<InferResponse>(client, "ModelInfer", heavyRequest("slow", "after-cancel"))).response);
  });
});

describe("gRPC and the prediction cache", { timeout: 120_000 }, () => {
  let w: World;
  let grpc: GrpcServer;
  let http: FastifyInstance;
  let client: Client;
  let e: Expected;
  const cache = createPredictionCache("memory");

  beforeAll(async () => {
    w = await createWorld({ cache });
    e = await readExpected("breast_cancer_mlp");
    await w.register("breast-cancer", "breast_cancer_mlp");
    await w.register("uncached", "breast_cancer_mlp", { edit: (m) => ({ ...m, serving: { cache: { enabled: false } } }) });
    grpc = createGrpcServer({ scoring: w.scoring, registry: w.registry });
    client = connect(`127.0.0.1:${await grpc.listen("127.0.0.1", 0)}`);
    // The REST server of the same process, for its /metrics and to share cache entries with.
    http = buildServer({ scoring: w.scoring, registry: w.registry, logger: false });
    await http.ready();
  });

  afterAll(async () => {
    client?.close();
    await grpc?.close(1000);
    await http?.close();
    await w?.close();
    await cache?.close();
  });

  const row = (r: number) => ({ name: "input", datatype: "FP32", shape: [1, 30], contents: { fp32_contents: e.inputs[r] } });

  async function cacheHits(): Promise<number> {
    const text = (await http.inject({ method: "GET", url: "/metrics" })).body;
    const m = /^mlship_cache_hits_total\{model="breast-cancer",version="1"\} (\d+)$/m.exec(text);
    return m === null ? 0 : Number(m[1]);
  }

  function checkRow(res: InferResponse, r: number): void {
    expect(outputValues(res, "label")).toEqual([e.outputs.label?.[r]]);
    expect(maxAbsDiff(outputValues(res, "probabilities"), e.outputs.probabilities?.[r])).toBeLessThanOrEqual(1e-5);
  }

  it("says miss, then hit for the same request, in the mlship-cache trailer, and counts the hit", async () => {
    const hitsBefore = await cacheHits();
    const miss = await rpc<InferResponse>(client, "ModelInfer", { model_name: "breast-cancer", inputs: [row(3)] });
    expect(trailer(miss.trailers, "mlship-cache")).toBe("miss");
    expect(trailer(miss.trailers, "mlship-model-version")).toBe("breast-cancer@1");
    checkRow(miss.response, 3);

    const hit = await rpc<InferResponse>(client, "ModelInfer", { model_name: "breast-cancer", inputs: [row(3)] });
    expect(trailer(hit.trailers, "mlship-cache")).toBe("hit");
    expect(trailer(hit.trailers, "mlship-model-version")).toBe("breast-cancer@1");
    checkRow(hit.response, 3);
    expect(await cacheHits()).toBe(hitsBefore + 1);
    const stats = w.scoring.cacheStats()?.versions.find((v) => v.model === "breast-cancer");
    expect(stats).toMatchObject({ hits: hitsBefore + 1 });

    // Another row is another entry.
    const other = await rpc<InferResponse>(client, "ModelInfer", { model_name: "breast-cancer", inputs: [row(4)] });
    expect(trailer(other.trailers, "mlship-cache")).toBe("miss");
    checkRow(other.response, 4);
  });

  it("shares entries between typed and raw contents and with REST", async () => {
    const values = e.inputs[5] as number[];
    const typed = await rpc<InferResponse>(client, "ModelInfer", { model_name: "breast-cancer", inputs: [row(5)] });
    expect(trailer(typed.trailers, "mlship-cache")).toBe("miss");
    const raw = await rpc<InferResponse>(client, "ModelInfer", {
      model_name: "breast-cancer",
      inputs: [{ name: "input", datatype: "FP32", shape: [1, 30] }],
      raw_input_contents: [Buffer.from(new Float32Array(values).buffer)],
    });
    expect(trailer(raw.trailers, "mlship-cache")).toBe("hit");
    expect(raw.response.raw_output_contents).toHaveLength(2);
    checkRow(raw.response, 5);
    const rest = await http.inject({
      method: "POST",
      url: "/v2/models/breast-cancer/infer",
      payload: { inputs: [{ name: "input", datatype: "FP32", shape: [1, 30], data: values }] },
    });
    expect(rest.statusCode, rest.body).toBe(200);
    expect(rest.headers["mlship-cache"]).toBe("hit");
  });

  it("sends no mlship-cache trailer for a version that opts out of the cache", async () => {
    for (let i = 0; i < 2; i++) {
      const res = await rpc<InferResponse>(client, "ModelInfer", { model_name: "uncached", inputs: [row(6)] });
      expect(trailer(res.trailers, "mlship-cache")).toBeUndefined();
      expect(trailer(res.trailers, "mlship-model-version")).toBe("uncached@1");
      checkRow(res.response, 6);
    }
  });
});
