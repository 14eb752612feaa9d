/**
 * Races between a call's timeout, the child's answer, restarts and close: every call settles, no run folder is
 * left behind.
 */
import { existsSync, renameSync, rmSync } from "node:fs";
import path from "node:path";
import { Writable } from "node:stream";
import pino from "pino";
import { afterAll, describe, expect, test } from "vitest";
import { silentLogger } from "../../../src/core/index.js";
import type { Tensor } from "../../../src/core/index.js";
import { createCustomRuntime } from "../../../src/runtime/index.js";
import { WrapperProcess } from "../../../src/runtime/custom/wrapper-process.js";
import { FIXTURES, loadSpecOf, makePackage, X_TO_Y, xs } from "./helpers.js";
import type { TensorSpec } from "../../../src/package/index.js";

const MLP_SIGNATURE = {
  inputs: [{ name: "features", dtype: "float32", shape: [-1, 30] }] as TensorSpec[],
  outputs: [
    { name: "label", dtype: "int64", shape: [-1] },
    { name: "class_name", dtype: "string", shape: [-1] },
    { name: "probabilities", dtype: "string", shape: [-1], content_type: "json" },
  ] as TensorSpec[],
};

const cleanups: Array<() => void | Promise<void>> = [];
afterAll(async () => {
  for (const c of cleanups) await c();
});

/** Blocks this thread (the parent's event loop) for `ms`. */
function block(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** `p` settled within `ms`, or a rejection saying it did not. */
function within<T>(p: Promise<T>, ms: number): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms))]);
}

describe("custom wrapper races", () => {
  test("an answer that arrives after its call timed out does not send the next call to the dying process", async () => {
    const pkg = await makePackage({ wrapper: "slow.mjs", ...X_TO_Y, custom: { timeout_ms: 200 } });
    cleanups.push(pkg.cleanup);
    const runtime = createCustomRuntime({ closeGraceMs: 1000 });
    cleanups.push(() => runtime.close());
    const model = await runtime.load(loadSpecOf(pkg.dir, pkg.manifest, "slow"));
    const late = model.run(xs(300));
    late.catch(() => undefined);
    const next = model.run(xs(1));
    next.catch(() => undefined);
    await new Promise((r) => setTimeout(r, 30));
    // Block in the check phase: on the next loop turn the expired timeout fires first (SIGKILL), then the answer
    // the child wrote at 300 ms is read, as on a busy server.
    await new Promise((r) => setImmediate(r));
    block(700);
    await expect(late).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_TIMEOUT" });
    const out = await within(next, 10_000);
    expect(Array.from((out.y as Tensor).data as Float64Array)).toEqual([1]);
  });

  test("close while the run folder is being prepared removes it and fails the open", async () => {
    const pkg = await makePackage({ wrapper: "slow.mjs", ...X_TO_Y });
    cleanups.push(pkg.cleanup);
    const wp = new WrapperProcess({
      key: "slow@1", root: pkg.dir, manifest: pkg.manifest, name: "slow", version: 1, logger: silentLogger(), closeGraceMs: 1000,
    });
    const opening = wp.open();
    await wp.close();
    const outcome = await within(opening, 20_000).then(() => "opened", (error: unknown) => error);
    const runDir = (wp as unknown as { runDir: string | undefined }).runDir;
    expect(runDir).toBeDefined();
    expect(existsSync(runDir as string)).toBe(false);
    expect(wp.pid).toBeUndefined();
    expect(outcome).toMatchObject({ code: "MLSHIP_ERR_RUNTIME_UNAVAILABLE" });
  });

  test("a thrown value that JSON cannot print still fails only its call (a row error keeps its row), the process stays", async () => {
    const pkg = await makePackage({ wrapper: "odd-throws.mjs", ...X_TO_Y });
    cleanups.push(pkg.cleanup);
    const runtime = createCustomRuntime({ closeGraceMs: 1000 });
    cleanups.push(() => runtime.close());
    const model = await runtime.load(loadSpecOf(pkg.dir, pkg.manifest, "odd-throws"));
    await expect(model.run(xs(1))).rejects.toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "rows[0].x" });
    await expect(model.run(xs(2))).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_WRAPPER", message: expect.stringContaining("2") });
    const out = await model.run(xs(3));
    expect(Array.from((out.y as Tensor).data as Float64Array)).toEqual([3]);
    expect((await runtime.stats())[0]?.restarts).toBe(0);
  });

  test("a package folder whose path has spaces, quotes, a comma and non-ASCII letters loads and reads its artifacts", async () => {
    const pkg = await makePackage({ wrapper: "mlp.mjs", ...MLP_SIGNATURE, files: { onnx: path.join(FIXTURES, "breast_cancer_mlp", "model.onnx") }, custom: { config: { labels: ["a", "b"] } } });
    const odd = path.join(path.dirname(pkg.dir), `mlship odd 'dir', "é" ${path.basename(pkg.dir)}`);
    renameSync(pkg.dir, odd);
    cleanups.push(() => rmSync(odd, { recursive: true, force: true }));
    const runtime = createCustomRuntime({ closeGraceMs: 1000 });
    cleanups.push(() => runtime.close());
    const model = await runtime.load(loadSpecOf(odd, pkg.manifest, "odd-path"));
    const out = await model.run({ features: { dtype: "float32", shape: [1, 30], data: new Float32Array(30) } });
    expect((out.label as Tensor).data).toHaveLength(1);
  });

  test("unloading a version whose load is stuck ends it at once, as closing the runtime does", async () => {
    const pkg = await makePackage({ wrapper: "load-hangs.mjs", ...X_TO_Y });
    cleanups.push(pkg.cleanup);
    const runtime = createCustomRuntime({ closeGraceMs: 500 });
    cleanups.push(() => runtime.close());
    const spec = loadSpecOf(pkg.dir, pkg.manifest, "load-hangs");
    const loading = runtime.load(spec);
    loading.catch(() => undefined);
    // The child is up and inside load() once the runtime lists its process with a pid.
    const processes = (runtime as unknown as { processes: Set<WrapperProcess> }).processes;
    const deadline = Date.now() + 20_000;
    while (![...processes].some((p) => p.pid !== undefined) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 200));
    const started = Date.now();
    await within(runtime.unload(spec.key), 10_000);
    expect(Date.now() - started).toBeLessThan(3000);
    await expect(within(loading, 5000)).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_LOAD" });
  });

  test("a load that is still checking its bundle when the runtime closes starts no process", async () => {
    const pkg = await makePackage({ wrapper: "hanging.mjs", ...X_TO_Y, outputs: [...X_TO_Y.outputs, { name: "pid", dtype: "int32", shape: [-1] }] });
    cleanups.push(pkg.cleanup);
    const messages: string[] = [];
    const logger = pino({ level: "info" }, new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString("utf8").split("\n")) if (l.trim() !== "") messages.push(String((JSON.parse(l) as { msg?: unknown }).msg));
        done();
      },
    }));
    const runtime = createCustomRuntime({ logger, closeGraceMs: 500 });
    const loading = runtime.load(loadSpecOf(pkg.dir, pkg.manifest, "closed-early"));
    await runtime.close();
    await expect(within(loading, 20_000)).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_UNAVAILABLE" });
    await new Promise((r) => setTimeout(r, 100));
    expect(messages).not.toContain("load");
  });

  test("unloading a version right after its load was asked for (the bundle still being checked) starts no process", async () => {
    const pkg = await makePackage({ wrapper: "load-hangs.mjs", ...X_TO_Y });
    cleanups.push(pkg.cleanup);
    const runtime = createCustomRuntime({ closeGraceMs: 500 });
    cleanups.push(() => runtime.close());
    const spec = loadSpecOf(pkg.dir, pkg.manifest, "unloaded-early");
    const loading = runtime.load(spec);
    loading.catch(() => undefined);
    const started = Date.now();
    await within(runtime.unload(spec.key), 10_000);
    expect(Date.now() - started).toBeLessThan(3000);
    await expect(within(loading, 5000)).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_UNAVAILABLE" });
    expect((runtime as unknown as { processes: Set<WrapperProcess> }).processes.size).toBe(0);
  });
});
