import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { pino } from "pino";
import { MlshipError } from "../../src/core/index.js";
import type { Logger, Tensor } from "../../src/core/index.js";
import { WorkerPool, siblingWorkerUrl } from "../../src/runtime/index.js";
import type { PoolStats } from "../../src/runtime/index.js";

const workerUrl = siblingWorkerUrl(new URL("./workers/x.ts", import.meta.url).href, "test-worker");
const pools: WorkerPool[] = [];

function makePool(size: number, logger?: Logger): WorkerPool {
  const pool = new WorkerPool({ workerUrl, size, name: "test-pool", drainTimeoutMs: 3000, logger });
  pools.push(pool);
  return pool;
}
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

function feeds(cmd: string, x: number[] = [1, 2]): Record<string, Tensor> {
  return { cmd: { dtype: "string", shape: [1], data: [cmd] }, x: { dtype: "float32", shape: [x.length], data: Float32Array.from(x) } };
}

async function settle<T>(promise: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: MlshipError }> {
  try {
    return { ok: true, value: await promise };
  } catch (error) {
    expect(error).toBeInstanceOf(MlshipError);
    return { ok: false, error: error as MlshipError };
  }
}

async function until(pool: WorkerPool, check: (s: PoolStats) => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check(pool.stats())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting; stats: ${JSON.stringify(pool.stats())}`);
    await sleep(20);
  }
}

const spec = { key: "echo@1", modelPath: "/models/echo.bin" };

describe("WorkerPool", () => {
  it("starts workers on first use, loads in every worker and runs there", async () => {
    const pool = makePool(2);
    expect(pool.stats().workers).toEqual([]);
    const signature = await pool.load(spec);
    expect(signature.inputs.map((i) => i.name)).toEqual(["cmd", "x"]);
    const stats = pool.stats();
    expect(stats.models).toEqual(["echo@1"]);
    expect(stats.workers.map((w) => w.models)).toEqual([["echo@1"], ["echo@1"]]);
    const out = await pool.run("echo@1", feeds("", [1.5, -2]));
    expect(Array.from(out.y!.data as Float32Array)).toEqual([3, -4]);
  });

  it("sends work to the least busy worker", async () => {
    const pool = makePool(2);
    await pool.load(spec);
    const blocked = pool.run("echo@1", feeds("sleep:2000"));
    const busy = pool.stats().workers.find((w) => w.inFlight === 1)!;
    const threads = new Set<number | undefined>();
    for (let i = 0; i < 10; i++) {
      // Only runs sent while the other worker is still blocked say anything (a loaded machine may be slow).
      const whileBlocked = pool.stats().workers[busy.index]!.inFlight === 1;
      const out = await pool.run("echo@1", feeds(""));
      if (whileBlocked) threads.add((out.thread!.data as Int32Array)[0]);
    }
    expect(threads.size).toBe(1);
    expect(threads.has(busy.threadId!)).toBe(false);
    const slow = await blocked;
    expect((slow.thread!.data as Int32Array)[0]).toBe(busy.threadId);
  });

  it("rejects the in-flight requests of a worker that exits, replaces it and re-loads its models", async () => {
    const pool = makePool(1);
    await pool.load(spec);
    const first = pool.stats().workers[0]!.threadId;
    const crashing = settle(pool.run("echo@1", feeds("exit")));
    const queued = settle(pool.run("echo@1", feeds("")));
    const [a, b] = await Promise.all([crashing, queued]);
    for (const r of [a, b]) {
      expect(r.ok).toBe(false);
      if (!r.ok) {
        expect(r.error.code).toBe("MLSHIP_ERR_RUNTIME_UNAVAILABLE");
        expect(r.error.message).toContain("exited with code 3");
        expect(r.error.retryAfterSeconds).toBe(1);
      }
    }
    await until(pool, (s) => s.workers[0]!.alive && s.workers[0]!.models.includes("echo@1"));
    const stats = pool.stats().workers[0]!;
    expect(stats.restarts).toBe(1);
    expect(stats.threadId).not.toBe(first);
    const out = await pool.run("echo@1", feeds("", [4]));
    expect(Array.from(out.y!.data as Float32Array)).toEqual([8]);
  });

  it("runs on a replacement that is still re-loading, and loads lazily where the re-load failed", async () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), "mlship-pool-"));
    try {
      const marker = path.join(tmp, "marker");
      const logs: string[] = [];
      const pool = makePool(1, pino({ level: "warn" }, { write: (line: string) => void logs.push(line) }));
      await pool.load({ ...spec, options: { failIfExists: marker } });
      await pool.terminateWorker(0);
      // The replacement has the re-load queued; the run waits behind it in the worker.
      const out = await pool.run("echo@1", feeds("", [2]));
      expect(Array.from(out.y!.data as Float32Array)).toEqual([4]);

      writeFileSync(marker, "");
      await pool.terminateWorker(0);
      const deadline = Date.now() + 15_000;
      while (!logs.some((l) => l.includes("could not re-load a model") && l.includes("marker file present"))) {
        if (Date.now() > deadline) throw new Error(`the re-load did not fail; logs: ${logs.join("")}`);
        await sleep(20);
      }
      expect(pool.stats().workers[0]).toMatchObject({ alive: true, restarts: 2, models: [] });
      rmSync(marker);
      const lazy = await pool.run("echo@1", feeds("", [3]));
      expect(Array.from(lazy.y!.data as Float32Array)).toEqual([6]);
      expect(pool.stats().workers[0]!.models).toEqual(["echo@1"]);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it("survives an uncaught exception inside a worker", async () => {
    const pool = makePool(2);
    await pool.load(spec);
    const r = await settle(pool.run("echo@1", feeds("throw")));
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.code).toBe("MLSHIP_ERR_RUNTIME_UNAVAILABLE");
      expect(r.error.message).toContain("boom in worker");
    }
    const out = await pool.run("echo@1", feeds("", [1]));
    expect(Array.from(out.y!.data as Float32Array)).toEqual([2]);
    await until(pool, (s) => s.workers.every((w) => w.alive && w.models.includes("echo@1")));
  });

  it("reports a model error as-is and counts it", async () => {
    const pool = makePool(1);
    await pool.load(spec);
    await expect(pool.run("echo@1", feeds("fail"))).rejects.toMatchObject({
      code: "MLSHIP_ERR_RUNTIME_INFERENCE",
      message: expect.stringContaining("the model said no") as unknown,
    });
    expect(pool.stats().workers[0]).toMatchObject({ runsFailed: 1, runsCompleted: 0, inFlight: 0, restarts: 0 });
  });

  it("turns a load failure into RUNTIME_LOAD naming the file, without poisoning the key", async () => {
    const pool = makePool(2);
    const error: unknown = await pool.load({ ...spec, options: { failLoad: "bad magic number" } }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "MLSHIP_ERR_RUNTIME_LOAD", field: "/models/echo.bin" });
    expect((error as Error).message).toBe("cannot load model file /models/echo.bin: bad magic number");
    expect(pool.has("echo@1")).toBe(false);
    await expect(pool.run("echo@1", feeds(""))).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_UNAVAILABLE", field: "echo@1" });
    await pool.load(spec);
    expect(pool.has("echo@1")).toBe(true);
  });

  it("backs off when a model crashes every worker that loads it, and keeps serving other models", async () => {
    const pool = makePool(2);
    const error: unknown = await pool.load({ key: "poison", modelPath: "/models/poison", options: { crashOnLoad: true } }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "MLSHIP_ERR_RUNTIME_UNAVAILABLE" });
    expect((error as Error).message).toContain("exited with code 1");
    expect(pool.has("poison")).toBe(false);
    await until(pool, (s) => s.workers.every((w) => w.alive));
    await sleep(300);
    for (const w of pool.stats().workers) expect(w.restarts).toBeLessThanOrEqual(3);
    await pool.load(spec);
    const out = await pool.run("echo@1", feeds("", [3]));
    expect(Array.from(out.y!.data as Float32Array)).toEqual([6]);
  });

  it("honours an abort signal before and during a run", async () => {
    const pool = makePool(1);
    await pool.load(spec);
    await expect(pool.run("echo@1", feeds(""), { signal: AbortSignal.abort() })).rejects.toMatchObject({
      code: "MLSHIP_ERR_RUNTIME_UNAVAILABLE",
    });
    const controller = new AbortController();
    const started = Date.now();
    const running = pool.run("echo@1", feeds("sleep:4000"), { signal: controller.signal });
    setTimeout(() => controller.abort(new MlshipError("MLSHIP_ERR_INPUT_INVALID", "client went away")), 20);
    await expect(running).rejects.toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", message: "client went away" });
    // Rejected at once, long before the worker finishes the blocked run (a wide margin for a loaded machine).
    expect(Date.now() - started).toBeLessThan(3000);
    expect(pool.stats().workers[0]!.inFlight).toBe(1);
    await until(pool, (s) => s.workers[0]!.inFlight === 0);
    expect(pool.stats().workers[0]!.runsCompleted).toBe(1);
  });

  it("unloads from every worker; a run afterwards gets a clear error", async () => {
    const pool = makePool(2);
    await pool.load(spec);
    await pool.unload("echo@1");
    await pool.unload("never-loaded");
    expect(pool.stats().workers.map((w) => w.models)).toEqual([[], []]);
    const r = await settle(pool.run("echo@1", feeds("")));
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.code).toBe("MLSHIP_ERR_RUNTIME_UNAVAILABLE");
      expect(r.error.message).toContain("echo@1 is not loaded");
    }
  });

  it("drains in-flight runs on close, then refuses everything", async () => {
    const pool = makePool(2);
    await pool.load(spec);
    const inFlight = pool.run("echo@1", feeds("sleep:200", [5]));
    const closing = pool.close();
    const out = await inFlight;
    expect(Array.from(out.y!.data as Float32Array)).toEqual([10]);
    await closing;
    await pool.close();
    const stats = pool.stats();
    expect(stats.closed).toBe(true);
    expect(stats.workers.every((w) => !w.alive)).toBe(true);
    for (const attempt of [pool.run("echo@1", feeds("")), pool.load(spec), pool.unload("echo@1")]) {
      await expect(attempt).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_UNAVAILABLE" });
    }
  });

  it("refuses a pool size that is not a positive integer", () => {
    expect(() => new WorkerPool({ workerUrl, size: 0 })).toThrow(expect.objectContaining({ code: "MLSHIP_ERR_CONFIG_INVALID" }) as Error);
  });
});
