/**
 * The custom runtime with real child processes: a wrapper on the breast-cancer MLP fixture through context.onnx,
 * wrapper errors (500 / 400 naming the row), outputs that do not fit the signature, a failing load, a hanging
 * wrapper (killed at its timeout, restarted, load run again), one that exhausts its heap and one that exits,
 * and what the permission model refuses. An ONNX model served by the same process keeps answering throughout.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import pino from "pino";
import type { Tensor } from "../../../src/core/index.js";
import { createCustomRuntime, createOnnxRuntime } from "../../../src/runtime/index.js";
import type { CustomRuntime, LoadedModel, OnnxRuntime } from "../../../src/runtime/index.js";
import { FIXTURES, loadSpecOf, makePackage, X_TO_Y, xs } from "./helpers.js";

/** Log lines the runtime writes (pino JSON), for the audit-trail assertions. */
const lines: Array<Record<string, unknown>> = [];
const logger = pino(
  { level: "info" },
  new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString("utf8").split("\n")) if (l.trim() !== "") lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  }),
);

const MLP = path.join(FIXTURES, "breast_cancer_mlp");
const expected = JSON.parse(readFileSync(path.join(MLP, "expected.json"), "utf8")) as {
  inputs: number[][];
  outputs: { probabilities: number[][]; label: number[] };
  tolerance: { probabilities_abs: number; label: "exact" };
};
const cleanups: Array<() => void> = [];
let runtime: CustomRuntime;
let onnx: OnnxRuntime;
let onnxModel: LoadedModel;

async function loadWrapper(wrapper: string, options: Partial<Parameters<typeof makePackage>[0]> = {}, name = wrapper.replace(/\W/g, "-")): Promise<LoadedModel> {
  const pkg = await makePackage({ wrapper, ...X_TO_Y, ...options });
  cleanups.push(pkg.cleanup);
  return runtime.load(loadSpecOf(pkg.dir, pkg.manifest, name));
}

/** The ONNX model answers while a custom one misbehaves: the server's other models are not affected. */
async function onnxAnswers(): Promise<void> {
  const out = await onnxModel.run({ input: { dtype: "float32", shape: [1, 30], data: Float32Array.from(expected.inputs[0] as number[]) } });
  expect(Number((out.label as Tensor).data[0])).toBe(expected.outputs.label[0]);
}

function y(out: Record<string, Tensor>): number[] {
  return Array.from((out.y as Tensor).data as Float64Array);
}

beforeAll(async () => {
  runtime = createCustomRuntime({ logger, closeGraceMs: 2000 });
  onnx = createOnnxRuntime({ workers: 1 });
  onnxModel = await onnx.load({ key: "mlp-onnx", modelPath: path.join(MLP, "model.onnx") });
});

afterAll(async () => {
  await runtime.close();
  await onnx.close();
  for (const c of cleanups) c();
});

describe("custom runtime", () => {
  test("a wrapper runs the MLP fixture through context.onnx and answers json outputs", async () => {
    const labels = ["malignant", "benign"];
    const model = await loadWrapper("mlp.mjs", {
      inputs: [{ name: "features", dtype: "float32", shape: [-1, 30] }],
      outputs: [
        { name: "label", dtype: "int64", shape: [-1] },
        { name: "class_name", dtype: "string", shape: [-1] },
        { name: "probabilities", dtype: "string", shape: [-1], content_type: "json" },
      ],
      files: { onnx: path.join(MLP, "model.onnx") },
      custom: { config: { labels } },
    }, "mlp");
    const rows = expected.inputs.length;
    const out = await model.run({ features: { dtype: "float32", shape: [rows, 30], data: Float32Array.from(expected.inputs.flat()) } });
    expect(out.label).toMatchObject({ dtype: "int64", shape: [rows] });
    expect(Array.from((out.label as Tensor).data as BigInt64Array, Number)).toEqual(expected.outputs.label);
    const names = (out.class_name as Tensor).data as string[];
    expect(names).toEqual(expected.outputs.label.map((l) => labels[l]));
    const probs = ((out.probabilities as Tensor).data as string[]).map((t) => JSON.parse(t) as Record<string, number>);
    const tol = expected.tolerance.probabilities_abs;
    probs.forEach((p, r) => {
      expect(Object.keys(p)).toEqual(labels);
      expect(Math.abs((p.malignant as number) - (expected.outputs.probabilities[r]?.[0] as number))).toBeLessThanOrEqual(tol);
      expect(Math.abs((p.benign as number) - (expected.outputs.probabilities[r]?.[1] as number))).toBeLessThanOrEqual(tol);
    });
    // Only the outputs asked for.
    const some = await model.run({ features: { dtype: "float32", shape: [1, 30], data: Float32Array.from(expected.inputs[0] as number[]) } }, { outputs: ["class_name"] });
    expect(Object.keys(some)).toEqual(["class_name"]);
    // context.log lines reach the server's log with the version; one audit line per predict call.
    expect(lines.some((l) => l.msg === "loaded" && l.model === "mlp" && l.version === 1 && l.source === "wrapper")).toBe(true);
    expect(lines.some((l) => l.msg === "scored" && l.rows === rows && l.model === "mlp")).toBe(true);
    const audit = lines.filter((l) => l.msg === "custom wrapper predict" && l.model === "mlp");
    expect(audit).toHaveLength(2);
    expect(audit[0]).toMatchObject({ rows, outcome: "ok", version: 1 });
    expect(typeof audit[0]?.ms).toBe("number");
  });

  test("a throw fails the call (500 with the wrapper's message); a row error is a 400 naming the row; the process stays", async () => {
    const model = await loadWrapper("throwing.mjs");
    expect(y(await model.run(xs(1, 2, 3)))).toEqual([2, 4, 6]);
    await expect(model.run(xs(1, -1))).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_WRAPPER", message: expect.stringContaining("negative x is not supported") as unknown });
    await expect(model.run(xs(5, 13))).rejects.toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "rows[1].x", message: "13 is unlucky" });
    await expect(model.run(xs(99))).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_WRAPPER", field: "rows[0].y", message: expect.stringContaining("expected a number") as unknown });
    await expect(model.run(xs(2, 98))).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_WRAPPER", field: "rows[1].y", message: expect.stringContaining("output 'y' is missing") as unknown });
    // Feeds are checked against the declared signature before they reach the wrapper.
    await expect(model.run({ x: { dtype: "float32", shape: [1], data: Float32Array.of(1) } })).rejects.toMatchObject({ code: "MLSHIP_ERR_INPUT_DTYPE" });
    expect(y(await model.run(xs(4)))).toEqual([8]);
    const stats = await runtime.stats();
    expect(stats.find((s) => s.key.startsWith("throwing"))?.restarts).toBe(0);
  });

  test("a failing load is MLSHIP_ERR_RUNTIME_LOAD with the wrapper's message", async () => {
    await expect(loadWrapper("bad-load.mjs")).rejects.toMatchObject({
      code: "MLSHIP_ERR_RUNTIME_LOAD",
      message: expect.stringContaining("the labels file is corrupt") as unknown,
    });
  });

  test("a hanging wrapper: the call fails MLSHIP_ERR_RUNTIME_TIMEOUT, the process is replaced and loaded again", async () => {
    const model = await loadWrapper("hanging.mjs", { outputs: [...X_TO_Y.outputs, { name: "pid", dtype: "int32", shape: [-1] }], custom: { timeout_ms: 500 } });
    const before = await model.run(xs(5));
    const pid1 = ((before.pid as Tensor).data as Int32Array)[0];
    const started = Date.now();
    const hung = model.run(xs(1));
    const queued = model.run(xs(7));
    await expect(hung).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_TIMEOUT", field: "custom.timeout_ms" });
    expect(Date.now() - started).toBeLessThan(5000);
    await onnxAnswers();
    // The call queued behind it runs in the new process, after load ran again.
    const after = await queued;
    expect(y(after)).toEqual([8]);
    expect(((after.pid as Tensor).data as Int32Array)[0]).not.toBe(pid1);
    expect(lines.filter((l) => l.msg === "load" && l.model === "hanging-mjs")).toHaveLength(2);
    expect(lines.some((l) => l.msg === "custom wrapper predict" && l.model === "hanging-mjs" && l.outcome === "timeout")).toBe(true);
  });

  test("a wrapper that exhausts its heap fails its call ('out of memory') and is restarted", async () => {
    const model = await loadWrapper("oom.mjs", { outputs: [...X_TO_Y.outputs, { name: "pid", dtype: "int32", shape: [-1] }], custom: { memory_mb: 32 } });
    expect(y(await model.run(xs(2)))).toEqual([3]);
    const oom = model.run(xs(1));
    const busy = onnxAnswers();
    await expect(oom).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_WRAPPER", message: expect.stringMatching(/wrapper process .* died: out of memory/) as unknown });
    await busy;
    expect(y(await model.run(xs(3)))).toEqual([4]);
  });

  test("a wrapper that exits fails its call with the exit code and is restarted", async () => {
    const model = await loadWrapper("crash.mjs", { outputs: [...X_TO_Y.outputs, { name: "pid", dtype: "int32", shape: [-1] }] });
    await expect(model.run(xs(1))).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_WRAPPER", message: expect.stringContaining("died: exit code 7") as unknown });
    expect(y(await model.run(xs(2)))).toEqual([3]);
    await onnxAnswers();
  });

  test("a restart whose load fails fails the waiting calls with MLSHIP_ERR_RUNTIME_LOAD; later calls try again", async () => {
    const model = await loadWrapper("reload-fails.mjs", { custom: { allow_write: true } });
    expect(y(await model.run(xs(5)))).toEqual([5]);
    const died = model.run(xs(1));
    const waiting = model.run(xs(2));
    await expect(died).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_WRAPPER", message: expect.stringContaining("died: exit code 3") as unknown });
    await expect(waiting).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_LOAD", message: expect.stringContaining("refusing to load again") as unknown });
    await expect(model.run(xs(2))).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_LOAD" });
    await onnxAnswers();
  });

  test("the permission model: no /etc/passwd, no child processes or workers, no writes but the scratch folder, no server env", async () => {
    process.env.MLSHIP_TEST_SECRET = "s3cret";
    const notes = path.join(FIXTURES, "README.md");
    const model = await loadWrapper("escape.mjs", {
      outputs: [{ name: "report", dtype: "string", shape: [-1], content_type: "json" }],
      files: { notes },
      custom: {
        allow_write: true,
        // A folder granted by allow_read is readable; a file next to it is not.
        allow_read: [path.join(FIXTURES, "digits_cnn", "images")],
        config: { extra: path.join(FIXTURES, "digits_cnn", "images", "labels.json"), sibling: path.join(FIXTURES, "digits_cnn", "meta.json") },
      },
    });
    const out = await model.run(xs(0));
    const report = JSON.parse(((out.report as Tensor).data as string[])[0] as string) as Record<string, unknown>;
    expect(report.passwd).toMatch(/^ERR_ACCESS_DENIED/);
    expect(report.spawn).toMatch(/^ERR_ACCESS_DENIED/);
    expect(report.worker).toMatch(/^ERR_ACCESS_DENIED/);
    expect(report.write_tmp).toMatch(/^ERR_ACCESS_DENIED/);
    expect(existsSync("/tmp/mlship-escape-test.txt")).toBe(false);
    expect(report.write_scratch).toBe("allowed");
    expect(report.read_artifact).toBe("allowed");
    expect(report.read_allowed).toBe("allowed");
    expect(report.read_sibling).toMatch(/^ERR_ACCESS_DENIED/);
    expect(report.env_keys).toBe(0);
    delete process.env.MLSHIP_TEST_SECRET;
  });

  test("without allow_write the wrapper has no scratch folder and cannot write", async () => {
    const model = await loadWrapper("escape.mjs", {
      outputs: [{ name: "report", dtype: "string", shape: [-1], content_type: "json" }],
      files: { notes: path.join(FIXTURES, "README.md") },
    }, "escape-readonly");
    const out = await model.run(xs(0));
    const report = JSON.parse(((out.report as Tensor).data as string[])[0] as string) as Record<string, unknown>;
    expect(report.write_scratch).toBe("no scratch");
    expect(report.write_tmp).toMatch(/^ERR_ACCESS_DENIED/);
  });

  test("a bundle outside mlship imports mlship's own sharp", async () => {
    const png = readFileSync(path.join(FIXTURES, "digits_cnn", "images", "digit_00.png")).toString("base64");
    const model = await loadWrapper("sharp-probe.mjs", {
      inputs: [{ name: "image", dtype: "string", shape: [-1], content_type: "base64" }],
      outputs: [{ name: "info", dtype: "string", shape: [-1], content_type: "json" }],
    });
    const out = await model.run({ image: { dtype: "string", shape: [1], data: [png] } });
    expect(JSON.parse(((out.info as Tensor).data as string[])[0] as string)).toEqual({ width: 32, height: 32, format: "png" });
  });

  test("closing the runtime does not wait for a load that is stuck", async () => {
    const own = createCustomRuntime({ logger, closeGraceMs: 500 });
    const pkg = await makePackage({ wrapper: "load-hangs.mjs", ...X_TO_Y });
    cleanups.push(pkg.cleanup);
    const loading = own.load(loadSpecOf(pkg.dir, pkg.manifest, "load-hangs"));
    loading.catch(() => undefined);
    const deadline = Date.now() + 20_000;
    while (!lines.some((l) => l.msg === "load started" && l.model === "load-hangs") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const started = Date.now();
    await own.close();
    expect(Date.now() - started).toBeLessThan(3000);
    await expect(loading).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_LOAD" });
  });

  test("unload ends the process even when the wrapper is stuck; later calls are refused", async () => {
    const model = await loadWrapper("hanging.mjs", { outputs: [...X_TO_Y.outputs, { name: "pid", dtype: "int32", shape: [-1] }] }, "stuck");
    const pid = ((await model.run(xs(2))).pid as Tensor).data[0] as number;
    const hung = model.run(xs(1));
    hung.catch(() => undefined);
    const started = Date.now();
    await runtime.unload(model.key);
    expect(Date.now() - started).toBeLessThan(5000);
    await expect(hung).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_UNAVAILABLE" });
    expect(() => process.kill(pid, 0)).toThrow();
    await expect(model.run(xs(2))).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_UNAVAILABLE" });
  });
});
