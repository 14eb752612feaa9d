/**
 * A custom wrapper package registered and served like any other flavor, through the real app (app.ts wires the
 * custom runtime), REST (MLflow JSON in both orientations, V2 JSON and binary) and gRPC with a client generated
 * from the proto, and the embedded library on a package path. A hanging custom model next to an ONNX one: the ONNX
 * one keeps answering.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Client } from "@grpc/grpc-js";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createMlship, registerModel } from "../../../src/app.js";
import { scoreJob } from "../../../src/batch/index.js";
import { readPredictions } from "../../../src/batch/sinks.js";
import type { Mlship } from "../../../src/app.js";
import { defaultConfig } from "../../../src/config/index.js";
import { silentLogger } from "../../../src/core/index.js";
import { loadModel } from "../../../src/embedded.js";
import { buildServer, createGrpcServer } from "../../../src/serve/index.js";
import type { GrpcServer } from "../../../src/serve/index.js";
import { connect, rpc } from "../../grpc/client.js";
import { FIXTURES, makePackage, X_TO_Y } from "./helpers.js";

const MLP = path.join(FIXTURES, "breast_cancer_mlp");
const LABELS = ["malignant", "benign"];
const expected = JSON.parse(await readFile(path.join(MLP, "expected.json"), "utf8")) as {
  inputs: number[][];
  outputs: { probabilities: number[][]; label: number[] };
  tolerance: { probabilities_abs: number };
};
const meta = JSON.parse(await readFile(path.join(MLP, "meta.json"), "utf8")) as { features: string[] };
const TOL = expected.tolerance.probabilities_abs;

let home: string;
let app: Mlship;
let http: FastifyInstance;
let grpc: GrpcServer;
let client: Client;
let mlpDir: string;
const cleanups: Array<() => void> = [];

const MLP_SIGNATURE = {
  inputs: [{ name: "features", dtype: "float32" as const, shape: [-1, 30] }],
  outputs: [
    { name: "label", dtype: "int64" as const, shape: [-1] },
    { name: "class_name", dtype: "string" as const, shape: [-1] },
    { name: "probabilities", dtype: "string" as const, shape: [-1], content_type: "json" as const },
  ],
};

function checkProbabilities(actual: Array<Record<string, number>>, from = 0): void {
  actual.forEach((p, i) => {
    const want = expected.outputs.probabilities[from + i] as number[];
    expect(Object.keys(p)).toEqual(LABELS);
    expect(Math.abs((p.malignant as number) - (want[0] as number))).toBeLessThanOrEqual(TOL);
    expect(Math.abs((p.benign as number) - (want[1] as number))).toBeLessThanOrEqual(TOL);
  });
}

beforeAll(async () => {
  home = await mkdtemp(path.join(os.tmpdir(), "mlship-custom-serve-"));
  app = await createMlship(defaultConfig({ home, user: "tester", "runtime.workers": 1, "cache.backend": "off", "log.level": "warn" }), { logger: silentLogger() });
  const mlp = await makePackage({ wrapper: "mlp.mjs", ...MLP_SIGNATURE, files: { onnx: path.join(MLP, "model.onnx") }, custom: { config: { labels: LABELS } } });
  cleanups.push(mlp.cleanup);
  mlpDir = mlp.dir;
  await registerModel(app, mlp.dir, { name: "wrapped-mlp", alias: "production" });
  const hanging = await makePackage({ wrapper: "hanging.mjs", ...X_TO_Y, outputs: [...X_TO_Y.outputs, { name: "pid", dtype: "int32", shape: [-1] }], custom: { timeout_ms: 1500 } });
  cleanups.push(hanging.cleanup);
  await registerModel(app, hanging.dir, { name: "hanging" });
  const throwing = await makePackage({ wrapper: "throwing.mjs", ...X_TO_Y });
  cleanups.push(throwing.cleanup);
  await registerModel(app, throwing.dir, { name: "throwing" });
  const probe = await makePackage({
    wrapper: "sharp-probe.mjs",
    inputs: [{ name: "image", dtype: "string", shape: [-1], content_type: "base64" }],
    outputs: [{ name: "info", dtype: "string", shape: [-1], content_type: "json" }],
  });
  cleanups.push(probe.cleanup);
  await registerModel(app, probe.dir, { name: "probe" });
  await registerModel(app, path.join(MLP, "model.onnx"), { name: "plain-onnx" });
  const echo = await makePackage({ wrapper: "json-echo.mjs", ...X_TO_Y, outputs: [...X_TO_Y.outputs, { name: "info", dtype: "string", shape: [-1], content_type: "json" }] });
  cleanups.push(echo.cleanup);
  await registerModel(app, echo.dir, { name: "echo" });
  http = buildServer({ scoring: app.scoring, registry: app.registry, logger: false });
  grpc = createGrpcServer({ scoring: app.scoring, registry: app.registry });
  client = connect(`127.0.0.1:${await grpc.listen("127.0.0.1", 0)}`);
});

afterAll(async () => {
  client?.close();
  await grpc?.close(1000);
  await http?.close();
  await app?.close();
  for (const c of cleanups) c();
  await rm(home, { recursive: true, force: true });
});

describe("a custom model served like any other flavor", () => {
  test("MLflow JSON: json outputs are embedded as objects, in records and in columnar orientation", async () => {
    const rows = expected.inputs.slice(0, 5);
    const records = await http.inject({
      method: "POST",
      url: "/v1/models/wrapped-mlp/invocations",
      payload: { dataframe_split: { columns: ["features"], data: rows.map((r) => [r]) } },
    });
    expect(records.statusCode, records.body).toBe(200);
    const preds = (records.json() as { predictions: Array<{ label: number; class_name: string; probabilities: Record<string, number> }> }).predictions;
    expect(preds.map((p) => p.label)).toEqual(expected.outputs.label.slice(0, 5));
    expect(preds.map((p) => p.class_name)).toEqual(expected.outputs.label.slice(0, 5).map((l) => LABELS[l]));
    checkProbabilities(preds.map((p) => p.probabilities));

    const columnar = await http.inject({ method: "POST", url: "/v1/models/wrapped-mlp/invocations", payload: { inputs: { features: rows } } });
    expect(columnar.statusCode, columnar.body).toBe(200);
    const cols = (columnar.json() as { predictions: { label: number[]; probabilities: Array<Record<string, number>> } }).predictions;
    expect(cols.label).toEqual(expected.outputs.label.slice(0, 5));
    checkProbabilities(cols.probabilities);
    expect(columnar.headers["mlship-model-version"]).toBe("wrapped-mlp@1");
  });

  test("V2 REST: BYTES outputs with parameters.content_type json; the metadata shows the declared signature", async () => {
    const md = await http.inject({ method: "GET", url: "/v2/models/wrapped-mlp" });
    expect(md.statusCode).toBe(200);
    expect((md.json() as { inputs: unknown[] }).inputs).toEqual([{ name: "features", datatype: "FP32", shape: [-1, 30] }]);
    const res = await http.inject({
      method: "POST",
      url: "/v2/models/wrapped-mlp/infer",
      payload: { inputs: [{ name: "features", datatype: "FP32", shape: [2, 30], data: expected.inputs.slice(0, 2).flat() }] },
    });
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json() as { model_version: string; outputs: Array<{ name: string; datatype: string; shape: number[]; parameters?: Record<string, unknown>; data: unknown[] }> };
    expect(body.model_version).toBe("1");
    const probs = body.outputs.find((o) => o.name === "probabilities");
    expect(probs).toMatchObject({ datatype: "BYTES", shape: [2], parameters: { content_type: "json" } });
    checkProbabilities((probs?.data as string[]).map((t) => JSON.parse(t) as Record<string, number>));
    expect(body.outputs.find((o) => o.name === "label")).toMatchObject({ datatype: "INT64", data: expected.outputs.label.slice(0, 2) });
    expect(body.outputs.find((o) => o.name === "label")?.parameters).toBeUndefined();
  });

  test("wrapper errors over REST: a row error is a 400 naming the row, a throw a 500 MLSHIP_ERR_RUNTIME_WRAPPER", async () => {
    const rowError = await http.inject({ method: "POST", url: "/v1/models/throwing/invocations", payload: { inputs: { x: [1, 13] } } });
    expect(rowError.statusCode, rowError.body).toBe(400);
    expect(rowError.json()).toMatchObject({ error_code: "BAD_REQUEST", mlship_code: "MLSHIP_ERR_INPUT_INVALID", field: "rows[1].x", message: expect.stringContaining("13 is unlucky") as unknown });
    const thrown = await http.inject({ method: "POST", url: "/v2/models/throwing/infer", payload: { inputs: [{ name: "x", datatype: "FP64", shape: [1], data: [-1] }] } });
    expect(thrown.statusCode, thrown.body).toBe(500);
    // 5xx bodies say what kind of failure it was and carry the request id; the wrapper's own message goes to the log.
    expect(thrown.json()).toMatchObject({ code: "MLSHIP_ERR_RUNTIME_WRAPPER", error: expect.stringContaining("A custom model wrapper threw") as unknown });
    const fine = await http.inject({ method: "POST", url: "/v1/models/throwing/invocations", payload: { dataframe_split: { columns: ["x"], data: [[2], [3]] } } });
    expect(fine.statusCode, fine.body).toBe(200);
    expect(fine.json()).toEqual({ predictions: [{ y: 4 }, { y: 6 }] });
  });

  test("gRPC: json outputs carry the content_type parameter; raw BYTES of a base64 input reach the wrapper as base64", async () => {
    const { response } = await rpc<{ outputs: Array<{ name: string; datatype: string; parameters: Record<string, { string_param?: string }>; contents: { bytes_contents: Buffer[]; int64_contents: string[] } }> }>(
      client, "ModelInfer", {
        model_name: "wrapped-mlp",
        inputs: [{ name: "features", datatype: "FP32", shape: [1, 30], contents: { fp32_contents: expected.inputs[0] } }],
      },
    );
    const probs = response.outputs.find((o) => o.name === "probabilities");
    expect(probs?.datatype).toBe("BYTES");
    expect(probs?.parameters.content_type?.string_param).toBe("json");
    checkProbabilities([JSON.parse((probs?.contents.bytes_contents[0] as Buffer).toString("utf8")) as Record<string, number>]);
    expect(response.outputs.find((o) => o.name === "label")?.contents.int64_contents).toEqual([String(expected.outputs.label[0])]);

    const png = await readFile(path.join(FIXTURES, "digits_cnn", "images", "digit_03.png"));
    const raw = Buffer.concat([Buffer.from(Uint32Array.of(png.length).buffer), png]);
    const probe = await rpc<{ outputs: Array<{ name: string; parameters: Record<string, { string_param?: string }> }>; raw_output_contents: Buffer[] }>(client, "ModelInfer", {
      model_name: "probe",
      inputs: [{ name: "image", datatype: "BYTES", shape: [1] }],
      raw_input_contents: [raw],
    });
    // Raw inputs give raw outputs: one length-prefixed BYTES element.
    expect(probe.response.outputs[0]?.parameters.content_type?.string_param).toBe("json");
    const blob = probe.response.raw_output_contents[0] as Buffer;
    const text = blob.subarray(4, 4 + blob.readUInt32LE(0)).toString("utf8");
    expect(JSON.parse(text)).toEqual({ width: 32, height: 32, format: "png" });
  });

  test("V2 binary extension: a raw BYTES base64 input arrives as base64 text", async () => {
    const png = await readFile(path.join(FIXTURES, "digits_cnn", "images", "digit_05.png"));
    const header = Buffer.from(JSON.stringify({ inputs: [{ name: "image", datatype: "BYTES", shape: [1], parameters: { binary_data_size: png.length + 4 } }] }), "utf8");
    const res = await http.inject({
      method: "POST",
      url: "/v2/models/probe/infer",
      payload: Buffer.concat([header, Buffer.from(Uint32Array.of(png.length).buffer), png]),
      headers: { "content-type": "application/octet-stream", "inference-header-content-length": String(header.length) },
    });
    expect(res.statusCode, res.body).toBe(200);
    const out = (res.json() as { outputs: Array<{ data: string[]; parameters: Record<string, unknown> }> }).outputs[0];
    expect(out?.parameters).toEqual({ content_type: "json" });
    expect(JSON.parse(out?.data[0] as string)).toEqual({ width: 32, height: 32, format: "png" });
  });

  test("a hanging custom model: its request fails 504 and the next one works; the ONNX model answers meanwhile", async () => {
    const payload = { dataframe_split: { columns: meta.features, data: [expected.inputs[0]] } };
    // Both loaded first, so the timings below are the calls' own.
    expect((await http.inject({ method: "POST", url: "/v1/models/plain-onnx/invocations", payload })).statusCode).toBe(200);
    expect((await http.inject({ method: "POST", url: "/v1/models/hanging/invocations", payload: { inputs: { x: [0] } } })).statusCode).toBe(200);
    let hungSettled = false;
    const hung = http.inject({ method: "POST", url: "/v1/models/hanging/invocations", payload: { inputs: { x: [1] } } }).finally(() => {
      hungSettled = true;
    });
    // A second stuck call, in flight while the first is (with one inference worker, two runs would fill the shared
    // worker pool's capacity: a custom model has a scheduler of its own, so the ONNX model still gets its run).
    await new Promise((resolve) => setTimeout(resolve, 50));
    const hung2 = http.inject({ method: "POST", url: "/v1/models/hanging/invocations", payload: { inputs: { x: [1] } } });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const onnx = await http.inject({
      method: "POST",
      url: "/v1/models/plain-onnx/invocations",
      payload,
    });
    expect(onnx.statusCode, onnx.body).toBe(200);
    // The ONNX model answered while the custom one was stuck, not after its timeout.
    expect(hungSettled).toBe(false);
    expect((onnx.json() as { predictions: Array<{ label: number }> }).predictions[0]?.label).toBe(expected.outputs.label[0]);
    const res = await hung;
    expect(res.statusCode, res.body).toBe(504);
    expect(res.json()).toMatchObject({ mlship_code: "MLSHIP_ERR_RUNTIME_TIMEOUT" });
    const res2 = await hung2;
    expect(res2.statusCode, res2.body).toBe(504);
    const next = await http.inject({ method: "POST", url: "/v1/models/hanging/invocations", payload: { inputs: { x: [2] } } });
    expect(next.statusCode, next.body).toBe(200);
    expect((next.json() as { predictions: { y: number[] } }).predictions.y).toEqual([3]);
  });

  test("batch scoring: json outputs are stored as values in the SQL store and in JSONL files", async () => {
    const input = path.join(home, "rows.csv");
    await writeFile(input, "id,x\n" + Array.from({ length: 40 }, (_, i) => `r${i},${i}`).join("\n") + "\n");
    const deps = { config: app.config, store: app.store, scoring: app.scoring, registry: app.registry, logger: silentLogger() };
    const run = await scoreJob(deps, { ref: "echo", input, idColumn: "id", chunkRows: 16 });
    expect(run.status).toBe("succeeded");
    const stored = await readPredictions(app.store, { model: "echo", ids: ["r0", "r7", "r39"] });
    expect(stored.get("r7")?.outputs).toEqual({ y: 14, info: { x: 7, even: false, tags: ["custom"] } });
    expect(stored.get("r39")?.outputs.info).toEqual({ x: 39, even: false, tags: ["custom"] });
    const out = path.join(home, "out.jsonl");
    await scoreJob(deps, { ref: "echo", input, idColumn: "id", into: out });
    const lines = (await readFile(out, "utf8")).trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(40);
    expect(JSON.stringify(lines[2])).toContain('"info":{"x":2,"even":true,"tags":["custom"]}');
  });

  test("the embedded library loads a custom package folder", async () => {
    const model = await loadModel(mlpDir, { name: "embedded-mlp" });
    try {
      const out = await model.predict(expected.inputs.slice(0, 3).map((features) => ({ features })));
      expect(out.map((r) => r.label)).toEqual(expected.outputs.label.slice(0, 3));
      checkProbabilities(out.map((r) => r.probabilities as Record<string, number>));
    } finally {
      await model.close();
    }
  });
});
