import { readFile } from "node:fs/promises";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildServer, mlshipVersion } from "../../src/serve/index.js";
import { createWorld, csvBody, DIGITS_IMAGE_STEP, FIXTURES, maxAbsDiff, readCsv, readExpected, waitFor } from "../scoring/world.js";
import type { Expected, FixtureName, World } from "../scoring/world.js";

type Json = Record<string, unknown>;

const FIXTURE_MODELS: Array<[string, FixtureName]> = [
  ["breast-cancer", "breast_cancer_mlp"],
  ["digits", "digits_cnn"],
  ["diabetes", "diabetes_linear"],
];

function tolerance(e: Expected, output: string): number {
  return (e.tolerance[`${output}_abs`] as number | undefined) ?? 1e-5;
}

/** Checks one-record-per-row MLflow predictions against expected.json. */
function checkRecords(predictions: unknown, e: Expected, n: number): void {
  expect(Array.isArray(predictions)).toBe(true);
  const rows = predictions as Json[];
  expect(rows).toHaveLength(n);
  for (const [out, want] of Object.entries(e.outputs)) {
    const got = rows.map((r) => r[out]);
    if (out === "label") expect(got).toEqual(want.slice(0, n));
    else if (out === "prediction") {
      // A [batch,1] output becomes a scalar per row.
      expect(typeof got[0]).toBe("number");
      expect(maxAbsDiff(got, (want as number[][]).slice(0, n).map((x) => x[0]))).toBeLessThanOrEqual(tolerance(e, out));
    } else expect(maxAbsDiff(got, want.slice(0, n))).toBeLessThanOrEqual(tolerance(e, out));
  }
}

/** Checks columnar MLflow predictions (instances/inputs) against expected.json. */
function checkColumnar(predictions: unknown, e: Expected, n: number): void {
  const cols = predictions as Json;
  for (const [out, want] of Object.entries(e.outputs)) {
    if (out === "label") expect(cols[out]).toEqual(want.slice(0, n));
    else {
      expect((cols[out] as unknown[]).length).toBe(n);
      expect(maxAbsDiff(cols[out], want.slice(0, n))).toBeLessThanOrEqual(tolerance(e, out));
    }
  }
}

describe("HTTP server: V2 and MLflow protocols on real models", () => {
  let w: World;
  let app: FastifyInstance;
  let small: FastifyInstance;
  const expected: Partial<Record<FixtureName, Expected>> = {};

  beforeAll(async () => {
    w = await createWorld();
    await w.register("breast-cancer", "breast_cancer_mlp", { columns: true });
    await w.register("digits", "digits_cnn", { image: DIGITS_IMAGE_STEP });
    await w.register("diabetes", "diabetes_linear", { columns: true, labelColumn: "target" });
    await w.register("bc-bare", "breast_cancer_mlp");
    for (const name of ["breast-cancer", "digits", "diabetes"]) await w.registry.setAlias(name, "production", 1);
    for (const [, fixture] of FIXTURE_MODELS) expected[fixture] = await readExpected(fixture);
    app = buildServer({ scoring: w.scoring, registry: w.registry, defaultModel: "breast-cancer@production", logger: false });
    small = buildServer({ scoring: w.scoring, registry: w.registry, logger: false, bodyLimitBytes: 2048, metrics: false });
  });

  afterAll(async () => {
    await app?.close();
    await small?.close();
    await w?.close();
  });

  const exp = (f: FixtureName): Expected => expected[f] as Expected;

  it("answers health, server metadata and version routes", async () => {
    expect((await app.inject("/v2/health/live")).json()).toEqual({ live: true });
    const ready = await app.inject("/v2/health/ready");
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({ ready: true });
    const pkg = JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
    expect((await app.inject("/v2")).json()).toEqual({ name: "mlship", version: pkg.version, extensions: ["binary_tensor_data"] });
    expect(mlshipVersion()).toBe(pkg.version);
    const version = await app.inject("/version");
    expect(version.statusCode).toBe(200);
    expect(version.body).toBe(pkg.version);
    expect(version.headers["content-type"]).toMatch(/^text\/plain/);
    // The first probe starts the load and answers 503 + Retry-After until the model is ready.
    const first = await app.inject("/ping");
    if (first.statusCode !== 200) {
      expect(first.statusCode).toBe(503);
      expect(first.headers["retry-after"]).toBe("1");
      expect(first.json()).toMatchObject({ error_code: "TEMPORARILY_UNAVAILABLE", mlship_code: "MLSHIP_ERR_MODEL_NOT_READY" });
      await waitFor(async () => (await app.inject("/ping")).statusCode === 200, 10_000);
    }
    for (const route of ["/ping", "/health"]) {
      const res = await app.inject(route);
      expect(res.statusCode, route).toBe(200);
      expect(res.json()).toEqual({ status: "ok", model: "breast-cancer@1" });
    }
  });

  it("serves V2 model metadata and readiness, by name, alias (also URL-encoded) and version", async () => {
    const md = await app.inject("/v2/models/breast-cancer");
    expect(md.statusCode).toBe(200);
    expect(md.headers["mlship-model-version"]).toBe("breast-cancer@1");
    expect(md.json()).toEqual({
      name: "breast-cancer",
      versions: ["1"],
      platform: "onnx_onnxv1",
      inputs: [{ name: "input", datatype: "FP32", shape: [-1, 30] }],
      outputs: [
        { name: "probabilities", datatype: "FP32", shape: [-1, 2] },
        { name: "label", datatype: "INT64", shape: [-1] },
      ],
    });
    expect((await app.inject("/v2/models/breast-cancer/versions/1")).json()).toEqual(md.json());
    expect((await app.inject("/v2/models/breast-cancer%40production")).json()).toEqual(md.json());
    const digits = (await app.inject("/v2/models/digits")).json() as Json;
    expect(digits.inputs).toEqual([{ name: "image", datatype: "BYTES", shape: [-1] }]);
    for (const m of ["breast-cancer", "diabetes"]) await waitFor(async () => (await app.inject(`/v2/models/${m}/ready`)).statusCode === 200, 10_000);
    const ready = await app.inject("/v2/models/breast-cancer@production/ready");
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({ name: "breast-cancer", ready: true });
    expect((await app.inject("/v2/models/diabetes/versions/1/ready")).json()).toMatchObject({ name: "diabetes" });
  });

  it("matches expected.json through V2 infer for every fixture", async () => {
    for (const [name, fixture] of FIXTURE_MODELS) {
      const e = exp(fixture);
      for (const url of [`/v2/models/${name}/infer`, `/v2/models/${name}/versions/1/infer`, `/v2/models/${name}%40production/infer`]) {
        const res = await app.inject({
          method: "POST",
          url,
          payload: { id: "req-7", inputs: [{ name: "input", shape: e.input_shape, datatype: "FP32", data: e.inputs }] },
        });
        expect(res.statusCode, `${url}: ${res.body}`).toBe(200);
        expect(res.headers["mlship-model-version"]).toBe(`${name}@1`);
        const body = res.json() as { model_name: string; model_version: string; id: string; outputs: Array<{ name: string; shape: number[]; datatype: string; data: number[] }> };
        expect(body.model_name).toBe(name);
        expect(body.model_version).toBe("1");
        expect(body.id).toBe("req-7");
        for (const [out, want] of Object.entries(e.outputs)) {
          const o = body.outputs.find((x) => x.name === out);
          expect(o, out).toBeDefined();
          if (out === "label") {
            expect(o?.datatype).toBe("INT64");
            expect(o?.shape).toEqual([50]);
            expect(o?.data).toEqual(want);
          } else {
            expect(o?.datatype).toBe("FP32");
            expect(o?.shape).toEqual([50, (want[0] as number[]).length]);
            expect(maxAbsDiff(o?.data, want)).toBeLessThanOrEqual(tolerance(e, out));
          }
        }
      }
    }
  });

  it("classifies the digit PNGs sent as V2 BYTES (base64) like labels.json", async () => {
    const labels = JSON.parse(await readFile(path.join(FIXTURES, "digits_cnn/images/labels.json"), "utf8")) as {
      images: Array<{ file: string; label: number; expected_from_png: { probabilities: number[]; label: number } }>;
    };
    const data = await Promise.all(labels.images.map(async (i) => (await readFile(path.join(FIXTURES, "digits_cnn", i.file))).toString("base64")));
    const res = await app.inject({
      method: "POST",
      url: "/v2/models/digits/infer",
      payload: { inputs: [{ name: "image", shape: [20], datatype: "BYTES", data }], outputs: [{ name: "label" }, { name: "probabilities" }] },
    });
    expect(res.statusCode, res.body).toBe(200);
    const outputs = (res.json() as { outputs: Array<{ name: string; data: number[] }> }).outputs;
    expect(outputs.map((o) => o.name)).toEqual(["label", "probabilities"]);
    expect(outputs[0]?.data).toEqual(labels.images.map((i) => Number(i.expected_from_png.label)));
    expect(outputs[0]?.data).toEqual(labels.images.map((i) => i.label));
    expect(maxAbsDiff(outputs[1]?.data, labels.images.map((i) => i.expected_from_png.probabilities))).toBeLessThanOrEqual(1e-5);
  });

  it("matches expected.json through every MLflow JSON format and CSV", async () => {
    for (const [name, fixture] of FIXTURE_MODELS) {
      const e = exp(fixture);
      const { columns, text } = await csvBody(fixture, 50);
      const url = `/v1/models/${name}/invocations`;
      const post = async (payload: unknown, contentType = "application/json") => {
        const res = await app.inject({ method: "POST", url, payload: typeof payload === "string" ? payload : JSON.stringify(payload), headers: { "content-type": contentType } });
        expect(res.statusCode, `${name} ${contentType}: ${res.body.slice(0, 300)}`).toBe(200);
        expect(res.headers["mlship-model-version"]).toBe(`${name}@1`);
        return (res.json() as { predictions: unknown }).predictions;
      };
      const rowsAsText = (await readCsv(fixture)).rows.slice(0, 50).map((r) => r.slice(0, columns.length));
      // dataframe_split with column names; values as the CSV's text, cast the way MLflow does.
      checkRecords(await post({ dataframe_split: { columns, index: rowsAsText.map((_, i) => i), data: rowsAsText } }), e, 50);
      // dataframe_split with numbers and no column names: positional.
      checkRecords(await post({ dataframe_split: { data: e.inputs } }), e, 50);
      if (fixture !== "digits_cnn") {
        const records = e.inputs.map((row) => Object.fromEntries([...columns].reverse().map((c) => [c, row[columns.indexOf(c)]])));
        checkRecords(await post({ dataframe_records: records, params: { ignored: 1 } }), e, 50);
      }
      checkColumnar(await post({ instances: e.inputs }), e, 50);
      checkColumnar(await post({ inputs: e.inputs }), e, 50);
      checkRecords(await post(text, "text/csv"), e, 50);
      checkRecords(await post(text, "application/csv; charset=utf-8"), e, 50);
    }
  });

  it("serves the default model at /invocations and answers in MLflow's shape", async () => {
    const e = exp("breast_cancer_mlp");
    const res = await app.inject({ method: "POST", url: "/invocations", payload: { dataframe_split: { data: e.inputs.slice(0, 2) } } });
    expect(res.statusCode).toBe(200);
    expect(res.headers["mlship-model-version"]).toBe("breast-cancer@1");
    const body = res.json() as { predictions: Array<{ probabilities: number[]; label: number }> };
    expect(Object.keys(body)).toEqual(["predictions"]);
    expect(body.predictions.map((p) => p.label)).toEqual((e.outputs.label as number[]).slice(0, 2));
    // Without a default and with several models registered, /invocations points to the per-model route.
    const none = await small.inject({ method: "POST", url: "/invocations", payload: { instances: [[1]] } });
    expect(none.statusCode).toBe(404);
    expect(none.json()).toMatchObject({ error_code: "RESOURCE_DOES_NOT_EXIST", mlship_code: "MLSHIP_ERR_MODEL_NO_DEFAULT" });
    expect((none.json() as Json).message).toContain("/v1/models/{ref}/invocations");
    // /ping without a default model: the registry answers, so the server is healthy.
    expect((await small.inject("/ping")).json()).toEqual({ status: "ok" });
  });

  describe("bad input gets a 4xx that names the problem", () => {
    const v2 = async (payload: unknown, url = "/v2/models/breast-cancer/infer", headers: Record<string, string> = {}) => {
      const res = await app.inject({ method: "POST", url, payload: typeof payload === "string" ? payload : JSON.stringify(payload), headers: { "content-type": "application/json", ...headers } });
      return { status: res.statusCode, body: res.json() as Json, headers: res.headers };
    };
    const mlflow = async (payload: unknown, url = "/v1/models/breast-cancer/invocations", contentType = "application/json") => {
      const res = await app.inject({ method: "POST", url, payload: typeof payload === "string" ? payload : JSON.stringify(payload), headers: { "content-type": contentType } });
      return { status: res.statusCode, body: res.json() as Json, headers: res.headers };
    };
    const row30 = Array.from({ length: 30 }, (_, i) => i + 1);

    it("malformed JSON", async () => {
      const a = await v2('{"inputs": [');
      expect(a.status).toBe(400);
      expect(a.body).toMatchObject({ code: "MLSHIP_ERR_INPUT_JSON", field: "body" });
      expect(a.body.error).toContain("malformed JSON");
      const b = await mlflow("{nope}");
      expect(b.status).toBe(400);
      expect(b.body).toMatchObject({ error_code: "BAD_REQUEST", mlship_code: "MLSHIP_ERR_INPUT_JSON", field: "body" });
      expect(b.body.message).toContain("valid JSON");
      const empty = await v2("");
      expect(empty.status).toBe(400);
      expect(empty.body.code).toBe("MLSHIP_ERR_INPUT_JSON");
    });

    it("wrong shape", async () => {
      const a = await v2({ inputs: [{ name: "input", shape: [1, 31], datatype: "FP32", data: [...row30, 31] }] });
      expect(a.status).toBe(400);
      expect(a.body).toMatchObject({ code: "MLSHIP_ERR_INPUT_SHAPE", field: "inputs[0].shape" });
      expect(a.body.error).toContain("[-1,30]");
      const b = await v2({ inputs: [{ name: "input", shape: [2, 30], datatype: "FP32", data: row30 }] });
      expect(b.status).toBe(400);
      expect(b.body).toMatchObject({ code: "MLSHIP_ERR_INPUT_SHAPE", field: "inputs[0].data" });
      expect(b.body.error).toContain("60");
      const c = await mlflow({ instances: [row30.slice(1)] });
      expect(c.status).toBe(400);
      expect(c.body).toMatchObject({ error_code: "BAD_REQUEST", mlship_code: "MLSHIP_ERR_INPUT_SHAPE", field: "instances[0]" });
      const d = await mlflow("a,b\n1,2\n", "/v1/models/bc-bare/invocations", "text/csv");
      expect(d.status).toBe(400);
      expect(d.body.mlship_code).toBe("MLSHIP_ERR_INPUT_SHAPE");
      expect(d.body.message).toContain("2 columns");
    });

    it("wrong datatype", async () => {
      const a = await v2({ inputs: [{ name: "input", shape: [1, 30], datatype: "INT64", data: row30 }] });
      expect(a.status).toBe(400);
      expect(a.body).toMatchObject({ code: "MLSHIP_ERR_INPUT_DTYPE", field: "inputs[0].datatype" });
      expect(a.body.error).toContain("FP32");
      const b = await v2({ inputs: [{ name: "input", shape: [1, 30], datatype: "FP32", data: [...row30.slice(0, 29), "7"] }] });
      expect(b.status).toBe(400);
      expect(b.body).toMatchObject({ code: "MLSHIP_ERR_INPUT_DTYPE", field: "inputs[0].data[29]" });
    });

    it("missing or unknown input, unknown output", async () => {
      const a = await v2({ inputs: [] });
      expect(a.status).toBe(400);
      expect(a.body).toMatchObject({ code: "MLSHIP_ERR_INPUT_MISSING", field: "inputs" });
      expect(a.body.error).toContain("missing input 'input'");
      const b = await v2({ inputs: [{ name: "x", shape: [1, 30], datatype: "FP32", data: row30 }] });
      expect(b.status).toBe(400);
      expect(b.body).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "inputs[0].name" });
      const c = await v2({ inputs: [{ name: "input", shape: [1, 30], datatype: "FP32", data: row30 }], outputs: [{ name: "nope" }] });
      expect(c.status).toBe(400);
      expect(c.body).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "outputs[0].name" });
      const d = await v2({ id: 5, inputs: [] });
      expect(d.body.field).toBe("id");
      const e = await v2({});
      expect(e.body).toMatchObject({ code: "MLSHIP_ERR_INPUT_MISSING", field: "inputs" });
    });

    it("missing column, named", async () => {
      const { columns } = await csvBody("breast_cancer_mlp", 1);
      const record = Object.fromEntries(columns.map((c, i) => [c, i]));
      delete record["mean texture"];
      const a = await mlflow({ dataframe_records: [record] });
      expect(a.status).toBe(400);
      expect(a.body).toMatchObject({ error_code: "BAD_REQUEST", mlship_code: "MLSHIP_ERR_INPUT_MISSING", field: "mean texture" });
      expect(a.body.message).toContain("'mean texture'");
      const cols = columns.filter((c) => c !== "worst symmetry");
      const b = await mlflow(`${cols.join(",")}\n${cols.map(() => "1").join(",")}\n`, undefined, "text/csv");
      expect(b.status).toBe(400);
      expect(b.body).toMatchObject({ mlship_code: "MLSHIP_ERR_INPUT_MISSING", field: "worst symmetry" });
    });

    it("non-numeric value, with column and row", async () => {
      const { columns } = await csvBody("breast_cancer_mlp", 1);
      const rows = [row30, row30, row30.map((v, i) => (i === 1 ? "abc" : v))];
      const a = await mlflow({ dataframe_split: { columns, data: rows } });
      expect(a.status).toBe(400);
      expect(a.body).toMatchObject({ mlship_code: "MLSHIP_ERR_INPUT_DTYPE", field: "mean texture" });
      expect(a.body.message).toContain("row 2");
      expect(a.body.message).toContain('"abc" is not a number');
      const b = await mlflow({ instances: [row30.map((v, i) => (i === 4 ? "x" : v))] }, "/v1/models/bc-bare/invocations");
      expect(b.status).toBe(400);
      expect(b.body).toMatchObject({ mlship_code: "MLSHIP_ERR_INPUT_DTYPE", field: "instances[0][4]" });
    });

    it("unknown model, unknown version, alias together with a version", async () => {
      const a = await v2({ inputs: [] }, "/v2/models/nope/infer");
      expect(a.status).toBe(404);
      expect(a.body.code).toBe("MLSHIP_ERR_MODEL_NOT_FOUND");
      expect(a.body.error).toContain("nope");
      const b = await v2({ inputs: [] }, "/v2/models/breast-cancer/versions/9/infer");
      expect(b.status).toBe(404);
      expect(b.body.code).toBe("MLSHIP_ERR_MODEL_VERSION_NOT_FOUND");
      const c = await v2({ inputs: [] }, "/v2/models/breast-cancer@production/versions/1/infer");
      expect(c.status).toBe(400);
      expect(c.body).toMatchObject({ code: "MLSHIP_ERR_MODEL_REF_INVALID", field: "version" });
      expect(c.body.error).toContain("not both");
      const d = await v2({ inputs: [] }, "/v2/models/breast-cancer/versions/abc/infer");
      expect(d.status).toBe(400);
      expect(d.body.field).toBe("version");
      const huge = await app.inject("/v2/models/breast-cancer/versions/99999999999999999999");
      expect(huge.statusCode).toBe(400);
      expect(huge.json()).toMatchObject({ code: "MLSHIP_ERR_MODEL_REF_INVALID", field: "version" });
      const e = await mlflow({ instances: [[1]] }, "/v1/models/nope/invocations");
      expect(e.status).toBe(404);
      expect(e.body).toMatchObject({ error_code: "RESOURCE_DOES_NOT_EXIST", mlship_code: "MLSHIP_ERR_MODEL_NOT_FOUND" });
      const f = await app.inject("/v2/models/breast-cancer@staging");
      expect(f.statusCode).toBe(404);
      expect((f.json() as Json).code).toBe("MLSHIP_ERR_MODEL_ALIAS_NOT_FOUND");
      const g = await app.inject("/v2/models/nope/ready");
      expect(g.statusCode).toBe(404);
    });

    it("oversized body", async () => {
      const big = { inputs: [{ name: "input", shape: [100, 30], datatype: "FP32", data: Array.from({ length: 3000 }, () => 0.123456) }] };
      const a = await small.inject({ method: "POST", url: "/v2/models/breast-cancer/infer", payload: big });
      expect(a.statusCode).toBe(413);
      expect(a.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_TOO_LARGE", field: "body" });
      expect((a.json() as Json).error).toContain("2048 bytes");
      const b = await small.inject({ method: "POST", url: "/v1/models/breast-cancer/invocations", payload: { instances: big.inputs[0]?.data } });
      expect(b.statusCode).toBe(413);
      expect(b.json()).toMatchObject({ error_code: "BAD_REQUEST", mlship_code: "MLSHIP_ERR_INPUT_TOO_LARGE" });
    });

    it("wrong content type or charset", async () => {
      const a = await mlflow("hello", undefined, "text/plain");
      expect(a.status).toBe(415);
      expect(a.body).toMatchObject({ mlship_code: "MLSHIP_ERR_INPUT_CONTENT_TYPE", field: "content-type" });
      expect(a.body.message).toContain("text/plain");
      const b = await mlflow({ instances: [row30] }, undefined, "application/json; charset=latin1");
      expect(b.status).toBe(415);
      expect(b.body.message).toContain("UTF-8");
      const c = await mlflow({ instances: [row30] }, undefined, "application/json; format=pandas-split");
      expect(c.status).toBe(415);
      expect(c.body.message).toContain("format");
      const d = await app.inject({ method: "POST", url: "/v2/models/breast-cancer/infer", payload: "a,b\n1,2\n", headers: { "content-type": "text/csv" } });
      expect(d.statusCode).toBe(415);
      expect((d.json() as Json).code).toBe("MLSHIP_ERR_INPUT_CONTENT_TYPE");
      const e = await v2({ inputs: [] }, undefined, { "content-type": "application/x-www-form-urlencoded" });
      expect(e.status).toBe(415);
      expect(e.body.code).toBe("MLSHIP_ERR_INPUT_CONTENT_TYPE");
    });

    it("records without declared columns", async () => {
      const a = await mlflow({ dataframe_records: [{ a: 1 }] }, "/v1/models/bc-bare/invocations");
      expect(a.status).toBe(400);
      expect(a.body).toMatchObject({ error_code: "BAD_REQUEST", mlship_code: "MLSHIP_ERR_INPUT_INVALID", field: "dataframe_records" });
      expect(a.body.message).toContain("--columns");
      expect(a.body.message).toContain("signature.columns");
    });

    it("not exactly one MLflow input key", async () => {
      const a = await mlflow({ instances: [row30], inputs: [row30] });
      expect(a.status).toBe(400);
      expect(a.body.mlship_code).toBe("MLSHIP_ERR_INPUT_INVALID");
      expect(a.body.message).toContain("exactly one of the input fields");
      expect(a.body.message).toContain('"instances","inputs"');
      const b = await mlflow({ data: [row30] });
      expect(b.status).toBe(400);
      expect(b.body.message).toContain("exactly one of the input fields");
      const c = await mlflow([row30]);
      expect(c.status).toBe(400);
      expect(c.body.field).toBe("body");
    });

    it("unknown routes answer 404 JSON", async () => {
      const a = await app.inject("/v3/nothing");
      expect(a.statusCode).toBe(404);
      expect(a.json()).toMatchObject({ code: "MLSHIP_ERR_SERVE_ROUTE_NOT_FOUND" });
      const b = await app.inject({ method: "GET", url: "/invocations" });
      expect(b.statusCode).toBe(404);
      expect(b.json()).toMatchObject({ error_code: "ENDPOINT_NOT_FOUND", mlship_code: "MLSHIP_ERR_SERVE_ROUTE_NOT_FOUND" });
    });
  });

  it("hides a runtime failure's internals in the 500 body and logs them", async () => {
    await w.registerGraph("broken", "broadcastFail");
    const lines: string[] = [];
    const logger = pino({ level: "error" }, { write: (line: string) => void lines.push(line) });
    const logged = buildServer({ scoring: w.scoring, registry: w.registry, logger, metrics: false });
    try {
      const res = await logged.inject({
        method: "POST",
        url: "/v2/models/broken/infer",
        payload: { inputs: [{ name: "a", shape: [1, 2], datatype: "FP32", data: [1, 2] }, { name: "b", shape: [1, 3], datatype: "FP32", data: [1, 2, 3] }] },
      });
      expect(res.statusCode).toBe(500);
      const body = res.json() as Json;
      expect(body.code).toBe("MLSHIP_ERR_RUNTIME_INFERENCE");
      expect(body.error).toContain(`request id ${String(res.headers["x-request-id"])}`);
      // The request id is a random UUID whose hex digits can spell "add": only the rest of the text is looked at.
      expect(String(body.error).replace(String(res.headers["x-request-id"]), "")).not.toMatch(/broadcast|Add|onnx|node/i);
      expect(res.headers["mlship-model-version"]).toBe("broken@1");
      expect(lines.join("\n")).toMatch(/broadcast|Add|onnx/i);
      // The server keeps serving.
      expect((await logged.inject("/v2/health/live")).statusCode).toBe(200);
    } finally {
      await logged.close();
    }
  });

  it("answers 100 concurrent requests over both protocols correctly", async () => {
    const e = exp("breast_cancer_mlp");
    const d = exp("diabetes_linear");
    const results = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const row = i % 50;
        if (i % 2 === 0) {
          const res = await app.inject({ method: "POST", url: "/v2/models/breast-cancer/infer", payload: { inputs: [{ name: "input", shape: [1, 30], datatype: "FP32", data: e.inputs[row] }] } });
          const out = (res.json() as { outputs: Array<{ name: string; data: number[] }> }).outputs;
          return res.statusCode === 200 && maxAbsDiff(out[0]?.data, e.outputs.probabilities?.[row]) <= 1e-5 && out[1]?.data[0] === e.outputs.label?.[row];
        }
        const res = await app.inject({ method: "POST", url: "/v1/models/diabetes/invocations", payload: { instances: [d.inputs[row]] } });
        const p = (res.json() as { predictions: { prediction: number[][] } }).predictions.prediction;
        return res.statusCode === 200 && maxAbsDiff(p, [d.outputs.prediction?.[row]]) <= 1e-3;
      }),
    );
    expect(results.filter((ok) => !ok)).toHaveLength(0);
  });

  it("exports per-model request, error, latency, rows and load metrics plus process metrics", async () => {
    await app.inject({ method: "POST", url: "/v2/models/nope/infer", payload: { inputs: [] } });
    await app.inject({ method: "POST", url: "/v1/models/diabetes/invocations", payload: { instances: [[1]] } });
    const res = await app.inject("/metrics");
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toContain("text/plain");
    const text = res.body;
    expect(text).toMatch(/mlship_requests_total\{model="breast-cancer",version="1",protocol="v2",status="200"\} \d+/);
    expect(text).toMatch(/mlship_requests_total\{model="diabetes",version="1",protocol="mlflow",status="200"\} \d+/);
    expect(text).toMatch(/mlship_requests_total\{model="diabetes",version="1",protocol="mlflow",status="400"\} 1/);
    expect(text).toMatch(/mlship_request_errors_total\{model="diabetes",version="1",code="MLSHIP_ERR_INPUT_SHAPE"\} 1/);
    expect(text).toMatch(/mlship_request_errors_total\{model="",version="",code="MLSHIP_ERR_MODEL_NOT_FOUND"\} \d+/);
    expect(text).toMatch(/mlship_request_duration_seconds_bucket\{le="0.005",model="breast-cancer",version="1",protocol="v2"\} \d+/);
    expect(text).toMatch(/mlship_request_duration_seconds_count\{model="digits",version="1",protocol="mlflow"\} \d+/);
    expect(text).toMatch(/mlship_rows_total\{model="breast-cancer",version="1"\} \d+/);
    expect(text).toMatch(/mlship_model_load_seconds\{model="breast-cancer",version="1"\} \d/);
    // Worker-pool use per version: runs sent, the time they took (its CPU share), the queue now.
    const runs = Number(/mlship_model_runs_total\{model="breast-cancer",version="1"\} (\d+)/.exec(text)?.[1]);
    const busy = Number(/mlship_model_busy_seconds_total\{model="breast-cancer",version="1"\} ([\d.e-]+)/.exec(text)?.[1]);
    expect(runs).toBeGreaterThan(0);
    expect(busy).toBeGreaterThan(0);
    expect(text).toMatch(/mlship_model_queue_depth\{model="breast-cancer",version="1"\} 0/);
    expect(text).toMatch(/process_cpu_user_seconds_total \d/);
    expect(text).toMatch(/process_resident_memory_bytes \d/);
    expect(text).not.toMatch(/mlship_requests_total\{[^}]*model="nope"/);
    // Health, metadata and the metrics route itself are not counted as inference.
    expect(text).not.toMatch(/mlship_requests_total\{model="",version="",protocol="v2",status="200"\}/);
    expect((await small.inject("/metrics")).statusCode).toBe(404);
  });
});
