// Redis down: a server with `cache.backend = redis://...` on its own redis-server process (so killing it touches no
// other test). While Redis is gone every request is still answered, correctly and promptly, with the cache bypassed,
// and mlship_cache_errors_total rises; once a redis-server is back on the same port, caching resumes by itself.
// (test/cache/redis.test.ts covers the cache class against a Redis that is never up, and its reconnection.)
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { silentLogger } from "../../src/core/index.js";
import { buildServer } from "../../src/serve/index.js";
import { maxAbsDiff, readExpected, type Expected } from "../scoring/world.js";
import { until } from "./proxy.js";

const EXAMPLE = fileURLToPath(new URL("../../examples/models/breast-cancer", import.meta.url));
const home = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-redis-down-"));

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

let port: number;
let redis: ChildProcess | undefined;
let app: Mlship;
let server: FastifyInstance;
let expected: Expected;

async function startRedis(): Promise<void> {
  redis = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
  await until(() => canConnect(port), "redis-server to listen");
}

async function killRedis(): Promise<void> {
  const child = redis;
  redis = undefined;
  if (child === undefined || child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGKILL");
  await exited;
}

/** One V2 request for the fixture's rows `from..to`, checked against expected.json; returns the mlship-cache header. */
async function predict(from: number, to: number): Promise<{ cache: string | undefined; ms: number }> {
  const started = performance.now();
  const res = await server.inject({
    method: "POST",
    url: "/v2/models/breast-cancer/infer",
    payload: { inputs: [{ name: "input", shape: [to - from, 30], datatype: "FP32", data: expected.inputs.slice(from, to).flat() }] },
  });
  const ms = performance.now() - started;
  expect(res.statusCode, res.body).toBe(200);
  const outputs = (res.json() as { outputs: Array<{ name: string; data: unknown[] }> }).outputs;
  expect(maxAbsDiff(outputs.find((o) => o.name === "probabilities")?.data, expected.outputs.probabilities?.slice(from, to))).toBeLessThanOrEqual(1e-5);
  const header = res.headers["mlship-cache"];
  return { cache: typeof header === "string" ? header : undefined, ms };
}

async function cacheErrors(): Promise<number> {
  const text = (await server.inject("/metrics")).body;
  const line = text.split("\n").find((l) => l.startsWith('mlship_cache_errors_total{backend="redis"}'));
  return line === undefined ? 0 : Number(line.split(" ").pop());
}

beforeAll(async () => {
  expected = await readExpected("breast_cancer_mlp");
  port = await freePort();
  await startRedis();
  app = await createMlship(defaultConfig({ home, "cache.backend": `redis://127.0.0.1:${port}`, "runtime.workers": 1, "log.level": "silent" }), { logger: silentLogger() });
  await registerModel(app, EXAMPLE, { name: "breast-cancer", alias: "production" });
  server = buildServer({ scoring: app.scoring, registry: app.registry, logger: false });
}, 60_000);

afterAll(async () => {
  await server?.close();
  await app?.close();
  await killRedis();
  fs.rmSync(home, { recursive: true, force: true });
});

describe("Redis down", () => {
  it("answers every request with the cache bypassed, counts the errors, and caches again once Redis is back", async () => {
    // Up: the second identical request is a hit (the entry is stored asynchronously, so poll for it).
    expect((await predict(0, 3)).cache).toBe("miss");
    await until(async () => (await predict(0, 3)).cache === "hit", "a cache hit while Redis is up");
    expect(await cacheErrors()).toBe(0);

    await killRedis();
    const before = await cacheErrors();
    for (let i = 0; i < 10; i++) {
      // Same rows every time: with a working cache all but the first would be hits.
      const answer = await predict(10, 14);
      expect(answer.cache).toBe("miss");
      // No waiting on a dead Redis: lookups fail fast (offline queue off, 100 ms command timeout).
      expect(answer.ms).toBeLessThan(1000);
    }
    // The entry stored while Redis was up is unreachable too: answered by the model, not the cache.
    expect((await predict(0, 3)).cache).toBe("miss");
    expect(await cacheErrors()).toBeGreaterThanOrEqual(before + 10);

    await startRedis();
    // The client reconnects by itself; the new Redis is empty, so a request is stored and then hit.
    await until(async () => (await predict(20, 25)).cache === "hit", "caching to resume after Redis is back", 20_000, 200);
    const errorsAfter = await cacheErrors();
    expect((await predict(20, 25)).cache).toBe("hit");
    expect(await cacheErrors()).toBe(errorsAfter);
  }, 60_000);
});
