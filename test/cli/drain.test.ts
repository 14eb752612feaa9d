// Graceful shutdown of the real binary (`node bin/mlship.js serve`, built in dist/): on SIGTERM readiness turns
// false, the listeners close, requests already in flight over REST and gRPC finish with correct answers, and then
// the process exits 0. Also: a model's readiness answers 503 + Retry-After while it is still loading.
import fs from "node:fs";
import path from "node:path";
import type { Client } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeOnnxModel } from "../helpers/onnx-builder.js";
import { connect, encodeRaw, outputValues, rpc } from "../grpc/client.js";
import type { InferResponse } from "../grpc/client.js";
import { spawnCli, startCli, tempDir } from "./helpers.js";
import type { LongRunning } from "./helpers.js";
import { attemptOnNewConnection, openConnection } from "./raw-http.js";
import type { Attempt, RawConnection, RawResponse } from "./raw-http.js";

const home = tempDir("drain");
const MODEL = "slow";
const WIDTH = 1024;
const ROWS = 256;
const MATMULS = 256;

/**
 * A chain of MatMuls by a uniform 1/1024 matrix, then the mean of each row. Every product keeps each row's mean,
 * so the answer for a row of one repeated integer is exactly that integer (all intermediates are exact in float32).
 * A [256,1024] batch costs about 1.5 s on one thread, so requests are reliably still running when the signal lands.
 */
function writeSlowModel(file: string): void {
  writeOnnxModel(file, {
    inputs: [{ name: "x", dtype: "float32", shape: ["batch", WIDTH] }],
    outputs: [{ name: "mean", dtype: "float32", shape: ["batch"] }],
    nodes: [
      ...Array.from({ length: MATMULS }, (_, i) => ({
        op: "MatMul",
        inputs: [i === 0 ? "x" : `h${i}`, "w"],
        outputs: [i === MATMULS - 1 ? "last" : `h${i + 1}`],
      })),
      { op: "ReduceMean", inputs: ["last"], outputs: ["mean"], attrs: { axes: [1], keepdims: 0 } },
    ],
    initializers: [{ name: "w", dtype: "float32", dims: [WIDTH, WIDTH], values: new Array<number>(WIDTH * WIDTH).fill(1 / WIDTH) }],
  });
}

/** Row r of a batch repeats `base + r`; distinct bases keep requests apart (no cache hit, answers tell them apart). */
function batch(base: number, rows = ROWS): { values: number[]; means: number[] } {
  const means = Array.from({ length: rows }, (_, r) => base + r);
  return { values: means.flatMap((m) => new Array<number>(WIDTH).fill(m)), means };
}

function v2Body(values: number[], rows: number): { contentType: string; text: string } {
  return {
    contentType: "application/json",
    text: JSON.stringify({ inputs: [{ name: "x", shape: [rows, WIDTH], datatype: "FP32", data: values }] }),
  };
}

function expectV2Means(res: RawResponse, means: number[]): void {
  expect(res.status, res.body).toBe(200);
  const body = JSON.parse(res.body) as { model_name: string; outputs: Array<{ name: string; shape: number[]; data: number[] }> };
  expect(body.model_name).toBe(MODEL);
  expect(body.outputs).toEqual([expect.objectContaining({ name: "mean", shape: [means.length], data: means })]);
}

/** Rejects when `promise` has not settled within `ms`: turns a hang into a failure with a message. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still waiting after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, hang]);
  } finally {
    clearTimeout(timer);
  }
}

async function waitUntil(what: string, check: () => Promise<boolean> | boolean, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${what}: not within ${ms} ms`);
}

/** Runs the model has sent to the runtime so far (the queue-wait histogram counts one per request dequeued). */
async function runsStarted(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = new RegExp(`^mlship_queue_wait_seconds_count\\{[^}]*model="${MODEL}"[^}]*\\} (\\d+)$`, "m").exec(text);
  return m === null ? 0 : Number(m[1]);
}

describe("mlship serve shuts down gracefully on SIGTERM", { timeout: 240_000 }, () => {
  let proc: LongRunning;
  let url: string;
  let grpcAddress: string;
  const connections: RawConnection[] = [];
  let grpcClient: Client | undefined;

  beforeAll(async () => {
    const onnx = path.join(home, "slow.onnx");
    writeSlowModel(onnx);
    const env = { MLSHIP_HOME: home, MLSHIP_USER: "ci" };
    const registered = await spawnCli(["models", "register", onnx, "--name", MODEL], { env });
    expect(registered.stderr).toBe("");
    expect(registered).toMatchObject({ code: 0, stdout: "1\n" });

    proc = startCli(["serve", "--port", "0", "--grpc-port", "0"], {
      env: {
        ...env,
        // One worker: requests queue behind each other, so several are in flight at once for several seconds.
        MLSHIP_WORKERS: "1",
        MLSHIP_CACHE: "off",
        // The drain log lines are info; the grace period is far beyond the work queued, so nothing is cut off.
        MLSHIP_LOG_LEVEL: "info",
        MLSHIP_SHUTDOWN_TIMEOUT_MS: "120000",
      },
    });
    url = (await proc.waitForStdout(/mlship serving on (http:\/\/\S+)/, 90_000))[1] as string;
    grpcAddress = (await proc.waitForStdout(/mlship gRPC \(Open Inference Protocol\) on (\S+)/, 30_000))[1] as string;
  }, 180_000);

  afterAll(() => {
    for (const c of connections) c.destroy();
    grpcClient?.close();
    if (proc !== undefined && proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill("SIGKILL");
    fs.rmSync(home, { recursive: true, force: true });
  });

  it("answers a model's readiness with 503 + Retry-After while it is still loading, then 200", async () => {
    // Nothing has loaded the model yet: the first probe starts the load, which cannot have finished when it answers.
    const first = await fetch(`${url}/v2/models/${MODEL}/ready`);
    expect(first.status).toBe(503);
    expect(first.headers.get("retry-after")).toBe("1");
    expect(await first.json()).toEqual({ name: MODEL, ready: false });

    let last: { status: number; body: unknown } = { status: 0, body: null };
    await waitUntil("the model to load", async () => {
      const res = await fetch(`${url}/v2/models/${MODEL}/ready`);
      last = { status: res.status, body: await res.json() };
      return res.status === 200;
    });
    expect(last.body).toEqual({ name: MODEL, ready: true });

    const health = await fetch(`${url}/v2/health/ready`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ ready: true });

    // A small request checks the model's answers before the slow ones rely on them.
    const small = batch(7, 3);
    const conn = await openConnection(url);
    connections.push(conn);
    expectV2Means(await conn.request("POST", `/v2/models/${MODEL}/infer`, v2Body(small.values, 3)), small.means);
  });

  it("turns readiness false, closes the listeners, finishes in-flight REST and gRPC requests, then exits 0", async () => {
    // Keep-alive connections (REST) and an HTTP/2 session (gRPC), all opened before the signal.
    const [a, b, c] = await Promise.all([openConnection(url), openConnection(url), openConnection(url)]);
    connections.push(a, b, c);
    grpcClient = connect(grpcAddress);
    expect((await rpc(grpcClient, "ServerReady", {})).response).toEqual({ ready: true });

    const before = await runsStarted(url);
    const inputA = batch(1000);
    const inputGrpc = batch(2000);
    const inputB = batch(3000);
    const inputC = batch(4000);
    const settled = { a: false, grpc: false, b: false, c: false };
    const track = <T>(key: keyof typeof settled, p: Promise<T>): Promise<T> => {
      p.then(() => (settled[key] = true), () => (settled[key] = true));
      return p;
    };

    const inferA = track("a", a.request("POST", `/v2/models/${MODEL}/infer`, v2Body(inputA.values, ROWS)));
    // The first request is running on the (only) worker once its run has been taken off the queue.
    await waitUntil("request A to start running", async () => (await runsStarted(url)) > before);
    const inferGrpc = track(
      "grpc",
      rpc<InferResponse>(grpcClient, "ModelInfer", {
        model_name: MODEL,
        inputs: [{ name: "x", datatype: "FP32", shape: [ROWS, WIDTH] }],
        raw_input_contents: [encodeRaw("FP32", inputGrpc.values)],
      }),
    );
    const inferB = track("b", b.request("POST", `/v2/models/${MODEL}/infer`, v2Body(inputB.values, ROWS)));
    const inferC = track("c", c.request("POST", `/v2/models/${MODEL}/infer`, v2Body(inputC.values, ROWS)));
    // Let the server read the queued requests; they wait behind A's ~1.5 s run, and each then takes as long again.
    await new Promise((r) => setTimeout(r, 500));
    expect(Object.values(settled), "precondition: all four requests still in flight at the signal").toEqual([false, false, false, false]);

    proc.child.kill("SIGTERM");
    // The handler sets the draining flag before it logs, so from this line on readiness must say false.
    await waitUntil("the drain to start", () => proc.stderr().includes("shutting down: draining in-flight requests"));

    // Readiness asked on a connection that is already open (C, still waiting for its inference answer): pipelined
    // behind C's request, answered in order after it.
    const readyOnOpen = c.request("GET", "/v2/health/ready");

    // New connections: refused once the listener is closed (possibly answered "not ready" for the moment before).
    const attempts: Attempt[] = [];
    let stillInFlightAtRefusal = -1;
    await waitUntil("new connections to be refused", async () => {
      const attempt = await attemptOnNewConnection(url, "/v2/health/ready");
      attempts.push(attempt);
      if (attempt.outcome === "refused") stillInFlightAtRefusal = Object.values(settled).filter((s) => !s).length;
      return attempt.outcome === "refused";
    }, 30_000);
    expect(attempts.at(-1)).toEqual({ outcome: "refused", code: "ECONNREFUSED" });
    for (const attempt of attempts.slice(0, -1)) {
      if (attempt.outcome === "answered") {
        expect(attempt.response.status).toBe(503);
        expect(JSON.parse(attempt.response.body)).toEqual({ ready: false });
      } else {
        expect(attempt.outcome).toBe("cut off");
      }
    }
    // The listener closed at the start of the drain, not after it: requests were still being served.
    expect(stillInFlightAtRefusal).toBeGreaterThan(0);

    // Every request in flight at the signal completes with its own correct answer.
    expectV2Means(await within(inferA, 90_000, "request A"), inputA.means);
    const grpcReply = await within(inferGrpc, 90_000, "gRPC ModelInfer");
    expect(grpcReply.response.model_name).toBe(MODEL);
    expect(outputValues(grpcReply.response, "mean")).toEqual(inputGrpc.means);
    expectV2Means(await within(inferB, 90_000, "request B"), inputB.means);
    expectV2Means(await within(inferC, 90_000, "request C"), inputC.means);

    const ready = await within(readyOnOpen, 30_000, "readiness on the open connection");
    expect(ready.status).toBe(503);
    expect(ready.headers["retry-after"]).toBe("1");
    expect(ready.headers["content-type"]).toMatch(/^application\/json/);
    expect(JSON.parse(ready.body)).toEqual({ ready: false });
    // A closing server ends each connection once its last answer is out.
    expect(ready.headers.connection?.toLowerCase()).toBe("close");
    await within(Promise.all([a.closed, b.closed, c.closed]), 30_000, "the server to close the kept-alive connections");

    expect(await within(proc.exited, 60_000, "the process to exit")).toBe(0);
    const stderr = proc.stderr();
    expect(stderr).toMatch(/"reason":"SIGTERM".*"msg":"shutting down: draining in-flight requests"/);
    expect(stderr).toContain('"msg":"server stopped"');
    // Everything finished inside the grace period: nothing was cut off.
    expect(stderr).not.toContain("shutdown timeout");
    expect(stderr).not.toContain("grace period over");
    expect(await attemptOnNewConnection(url, "/v2/health/ready")).toEqual({ outcome: "refused", code: "ECONNREFUSED" });
  });
});
