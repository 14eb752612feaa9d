import { randomUUID } from "node:crypto";
import net from "node:net";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Tensor } from "../../src/core/index.js";
import { createScoringService, tensorValues } from "../../src/scoring/index.js";
import type { ScoringInput, ScoringService } from "../../src/scoring/index.js";
import { RedisPredictionCache, createPredictionCache, type CachedPrediction } from "../../src/scoring/cache/index.js";
import { createOnnxRuntime, type OnnxRuntime } from "../../src/runtime/index.js";
import type { Registry } from "../../src/registry/index.js";
import { createWorld, readExpected, type Expected, type World } from "../scoring/world.js";

const REDIS = "redis://127.0.0.1:6379";
// One prefix per run, so parallel runs and leftovers never meet; every key under it is deleted at the end.
const PREFIX = `mlship:pred:test-${randomUUID()}:`;

function prediction(values: number[]): CachedPrediction {
  return { outputs: { y: { dtype: "float32", shape: [values.length], data: Float32Array.from(values) } } };
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((r) => server.close(r));
  return port;
}

describe("RedisPredictionCache on a real Redis", () => {
  let admin: Redis;
  let w: World;
  let expected: Expected;
  const caches: RedisPredictionCache[] = [];
  const cache = (url = REDIS): RedisPredictionCache => {
    const c = new RedisPredictionCache({ url, keyPrefix: PREFIX });
    caches.push(c);
    return c;
  };

  beforeAll(async () => {
    admin = new Redis(REDIS);
    expected = await readExpected("breast_cancer_mlp");
  });

  afterAll(async () => {
    for (const c of caches) await c.close();
    await w?.close();
    const keys = await admin.keys(`${PREFIX}*`);
    if (keys.length > 0) await admin.del(...keys);
    expect(await admin.keys(`${PREFIX}*`)).toEqual([]);
    await admin.quit();
  });

  it("stores compact binary entries under the prefix with a TTL, and reads back copies", async () => {
    const c = cache();
    expect(await c.whenReady()).toBe(true);
    await c.set("k1", prediction([0.25, 1.5, -3]), 30);
    const raw = await admin.getBuffer(`${PREFIX}k1`);
    expect(raw?.subarray(0, 4).toString("latin1")).toBe("MLPC");
    expect(raw?.includes(Buffer.from("0.25"))).toBe(false); // raw float bits, not number text
    const pttl = await admin.pttl(`${PREFIX}k1`);
    expect(pttl).toBeGreaterThan(25_000);
    expect(pttl).toBeLessThanOrEqual(30_000);
    const got = await c.get("k1");
    expect(Array.from(got?.outputs.y?.data as Float32Array)).toEqual([0.25, 1.5, -3]);
    (got?.outputs.y?.data as Float32Array).fill(0);
    expect(Array.from((await c.get("k1"))?.outputs.y?.data as Float32Array)).toEqual([0.25, 1.5, -3]);
    expect(await c.get("absent")).toBeUndefined();
    expect(c.errors()).toBe(0);
  });

  it("lets two replicas share hits: the second one never runs the model", async () => {
    const cacheA = cache();
    const cacheB = cache();
    expect(await cacheA.whenReady()).toBe(true);
    expect(await cacheB.whenReady()).toBe(true);
    w = await createWorld({ cache: cacheA, cacheTtlSeconds: 60 });
    await w.register("bc", "breast_cancer_mlp", { columns: true });
    const secondRegistry: Registry = await w.openSecondRegistry();
    const runtimeB: OnnxRuntime = createOnnxRuntime({ workers: 1 });
    const replicaB: ScoringService = createScoringService({ registry: secondRegistry, runtimes: { onnx: runtimeB }, cache: cacheB });
    try {
      const data = expected.inputs.slice(0, 8);
      const input: ScoringInput = { kind: "v2", body: { inputs: [{ name: "input", shape: [8, 30], datatype: "FP32", data: data.flat() }] } };
      const a = await w.scoring.score("bc", input);
      expect(a.cached).toBe(false);
      // The store is asynchronous: wait until the entry is there.
      for (let i = 0; i < 50 && (await admin.keys(`${PREFIX}*`)).length < 2; i++) await new Promise((r) => setTimeout(r, 20));
      const b = await replicaB.score("bc", { kind: "mlflow", body: { instances: data } });
      expect(b.cached).toBe(true);
      expect(runtimeB.stats().workers.reduce((n, x) => n + x.runsCompleted, 0)).toBe(0);
      expect(tensorValues(b.outputs.label as Tensor)).toEqual((expected.outputs.label as number[]).slice(0, 8));
      expect(tensorValues(b.outputs.probabilities as Tensor)).toEqual(tensorValues(a.outputs.probabilities as Tensor));
      expect(replicaB.cacheStats()?.versions).toEqual([{ model: "bc", version: 1, hits: 1, misses: 0 }]);
    } finally {
      await replicaB.close();
      await runtimeB.close();
    }
  });

  it("keeps serving quickly when Redis is down, counting errors", async () => {
    const down = createPredictionCache("redis://127.0.0.1:1", { keyPrefix: PREFIX });
    expect(down?.backend).toBe("redis");
    const world = await createWorld({ cache: down, workers: 1 });
    try {
      await world.register("bc", "breast_cancer_mlp");
      await world.scoring.load("bc");
      const input: ScoringInput = { kind: "v2", body: { inputs: [{ name: "input", shape: [1, 30], datatype: "FP32", data: expected.inputs[0] }] } };
      const started = Date.now();
      for (let i = 0; i < 5; i++) {
        const r = await world.scoring.score("bc", input);
        expect(r.cached).toBe(false);
        expect(tensorValues(r.outputs.label as Tensor)).toEqual([(expected.outputs.label as number[])[0]]);
      }
      expect(Date.now() - started).toBeLessThan(1000);
      await new Promise((r) => setTimeout(r, 20));
      expect(world.scoring.cacheStats()?.errors).toBeGreaterThanOrEqual(5);
    } finally {
      await world.close();
      await down?.close();
    }
  });

  it("reconnects by itself once Redis is reachable again", async () => {
    const port = await freePort();
    const errors: string[] = [];
    const c = new RedisPredictionCache({ url: `redis://127.0.0.1:${port}`, keyPrefix: PREFIX, onError: (_err, op) => errors.push(op) });
    caches.push(c);
    expect(await c.whenReady(300)).toBe(false);
    await c.set("rk", prediction([1]), 30);
    expect(await c.get("rk")).toBeUndefined();
    expect(c.errors()).toBe(2);
    expect(errors).toEqual(["set", "get"]);
    // A TCP relay to the real Redis appears on the port the client keeps retrying.
    const sockets = new Set<net.Socket>();
    const relay = net.createServer((client) => {
      const upstream = net.connect(6379, "127.0.0.1");
      sockets.add(client).add(upstream);
      client.pipe(upstream).pipe(client);
      client.on("error", () => upstream.destroy());
      upstream.on("error", () => client.destroy());
    });
    await new Promise<void>((r) => relay.listen(port, "127.0.0.1", r));
    try {
      let ok = false;
      for (let i = 0; i < 60 && !ok; i++) {
        await c.set("rk", prediction([1]), 30);
        ok = (await c.get("rk")) !== undefined;
        if (!ok) await new Promise((r) => setTimeout(r, 100));
      }
      expect(ok).toBe(true);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => relay.close(r));
    }
  });
});
