// An inference worker that dies under a real server: the pool replaces it and the server keeps answering; only the
// requests that were running on it fail, each with a 503, Retry-After and a JSON error body, and every request sent
// afterwards succeeds with the right answer. (test/runtime/lifecycle.test.ts and test/runtime/pool.test.ts cover the
// pool itself: rejection of the dead worker's runs, the replacement re-loading models, crash back-off.)
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildServer } from "../../src/serve/index.js";
import { createWorld, maxAbsDiff, readExpected, type Expected, type World } from "../scoring/world.js";
import { until } from "./proxy.js";

const SLOW_ROWS = 96;
let w: World;
let server: FastifyInstance;
let base: string;
let expected: Expected;

interface Answer {
  status: number;
  retryAfter: string | null;
  body: Record<string, unknown>;
}

async function infer(model: string, input: object): Promise<Answer> {
  const res = await fetch(`${base}/v2/models/${model}/infer`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ inputs: [input] }) });
  return { status: res.status, retryAfter: res.headers.get("retry-after"), body: (await res.json()) as Record<string, unknown> };
}

/** The slow graph keeps every value at 1 (8 MatMuls by a matrix of 1/1024): long runs with a known answer. */
const slowInput = { name: "x", shape: [SLOW_ROWS, 1024], datatype: "FP32", data: new Array<number>(SLOW_ROWS * 1024).fill(1) };

function checkSlow(answer: Answer): void {
  const y = (answer.body.outputs as Array<{ data: number[] }>)[0]?.data as number[];
  expect(y).toHaveLength(SLOW_ROWS * 1024);
  expect(Math.max(...y.map((v) => Math.abs(v - 1)))).toBeLessThan(1e-4);
}

async function checkBreastCancer(row: number): Promise<void> {
  const answer = await infer("breast-cancer", { name: "input", shape: [1, 30], datatype: "FP32", data: expected.inputs[row] });
  expect(answer.status, JSON.stringify(answer.body)).toBe(200);
  const outputs = answer.body.outputs as Array<{ name: string; data: unknown[] }>;
  expect(maxAbsDiff(outputs.find((o) => o.name === "probabilities")?.data, expected.outputs.probabilities?.[row])).toBeLessThanOrEqual(1e-5);
}

beforeAll(async () => {
  expected = await readExpected("breast_cancer_mlp");
  w = await createWorld({ workers: 2 });
  await w.register("breast-cancer", "breast_cancer_mlp");
  await w.registerGraph("slow", "slow");
  await w.scoring.load("breast-cancer");
  await w.scoring.load("slow");
  server = buildServer({ scoring: w.scoring, registry: w.registry, logger: false });
  await server.listen({ host: "127.0.0.1", port: 0 });
  base = `http://127.0.0.1:${(server.server.address() as { port: number }).port}`;
}, 60_000);

afterAll(async () => {
  await server?.close();
  await w?.close();
});

describe("an inference worker crashes", () => {
  it("is replaced; only its in-flight requests fail (503 + JSON), the server keeps answering correctly", async () => {
    const worker = (): { inFlight: number; restarts: number; alive: boolean; threadId: number } => w.runtime.stats().workers[0] as { inFlight: number; restarts: number; alive: boolean; threadId: number };
    const before = worker();
    const inFlight = Array.from({ length: 10 }, () => infer("slow", slowInput));
    // Kill worker 0 while it is running some of them.
    await until(() => worker().inFlight > 0, "worker 0 to have runs in flight", 20_000, 1);
    await w.runtime.terminateWorker(0);
    const answers = await Promise.all(inFlight);

    const failed = answers.filter((a) => a.status !== 200);
    expect(failed.length).toBeGreaterThanOrEqual(1);
    expect(failed.length).toBeLessThan(answers.length);
    for (const answer of failed) {
      expect(answer.status).toBe(503);
      expect(answer.retryAfter).not.toBeNull();
      expect(answer.body).toMatchObject({ code: "MLSHIP_ERR_RUNTIME_UNAVAILABLE" });
      expect(typeof answer.body.error).toBe("string");
    }
    for (const answer of answers.filter((a) => a.status === 200)) checkSlow(answer);

    // Replaced: a new thread in slot 0, alive, one restart; it re-loads the models in the background.
    await until(() => worker().alive, "the replacement worker");
    expect(worker().restarts).toBe(before.restarts + 1);
    expect(worker().threadId).not.toBe(before.threadId);

    // Everything sent after the crash succeeds, on both models, with the right answers.
    const later = await Promise.all(Array.from({ length: 4 }, () => infer("slow", slowInput)));
    for (const answer of later) {
      expect(answer.status, JSON.stringify(answer.body).slice(0, 300)).toBe(200);
      checkSlow(answer);
    }
    for (let row = 0; row < 20; row++) await checkBreastCancer(row);
    expect((await fetch(`${base}/v2/health/ready`)).status).toBe(200);
    expect(w.runtime.stats().workers.every((x) => x.alive)).toBe(true);
  }, 60_000);
});
