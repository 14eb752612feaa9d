/**
 * The REST protocols as a client that is not ours speaks them: the `curl` binary against a server listening on a
 * real port, with the payload shapes the Open Inference Protocol spec and MLflow's documentation write down.
 * Outputs are compared with each fixture's expected.json within its own tolerance.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nest } from "../../src/core/index.js";
import { buildServer } from "../../src/serve/index.js";
import { createWorld, csvBody, maxAbsDiff, readCsv, readExpected, waitFor } from "../scoring/world.js";
import type { Expected, FixtureName, World } from "../scoring/world.js";
import { curlClient, ensureCurl, json } from "./curl.js";
import type { CurlClient } from "./curl.js";

type Json = Record<string, unknown>;

interface V2Output {
  name: string;
  shape: number[];
  datatype: string;
  data: unknown[];
}

const MODELS: Array<{ name: string; fixture: FixtureName; columns: boolean }> = [
  { name: "breast-cancer", fixture: "breast_cancer_mlp", columns: true },
  { name: "digits", fixture: "digits_cnn", columns: false },
  { name: "diabetes", fixture: "diabetes_linear", columns: true },
];

/** The fixture's own tolerance for a float output (labels are compared exactly). */
function tolerance(e: Expected, output: string): number {
  const t = e.tolerance[`${output}_abs`];
  if (typeof t !== "number") throw new Error(`expected.json has no tolerance for ${output}`);
  return t;
}

/** Checks every output of expected.json for the first `n` rows, whatever the nesting of `got(name)`. */
function checkOutputs(e: Expected, n: number, got: (output: string) => unknown): void {
  for (const [out, want] of Object.entries(e.outputs)) {
    const value = got(out);
    if (out === "label") expect(value, out).toEqual(want.slice(0, n));
    else expect(maxAbsDiff(value, want.slice(0, n)), out).toBeLessThanOrEqual(tolerance(e, out));
  }
}

/** Predictions one record per row (dataframe and CSV input). */
function checkRecords(predictions: unknown, e: Expected, n: number): void {
  expect(Array.isArray(predictions)).toBe(true);
  const rows = predictions as Json[];
  expect(rows).toHaveLength(n);
  checkOutputs(e, n, (out) => rows.map((r) => r[out]));
}

/** Predictions one nested array per output (instances and inputs). */
function checkColumnar(predictions: unknown, e: Expected, n: number): void {
  const cols = predictions as Json;
  checkOutputs(e, n, (out) => cols[out]);
}

describe("the REST protocols through curl", () => {
  let w: World;
  let dir: string;
  let app: FastifyInstance;
  let small: FastifyInstance;
  let c: CurlClient;
  let tiny: CurlClient;
  const expected = {} as Record<FixtureName, Expected>;

  const listen = async (server: FastifyInstance): Promise<string> => {
    await server.listen({ host: "127.0.0.1", port: 0 });
    const address = server.server.address();
    if (address === null || typeof address !== "object") throw new Error("the server has no port");
    return `http://127.0.0.1:${address.port}`;
  };

  beforeAll(async () => {
    await ensureCurl();
    w = await createWorld();
    dir = await mkdtemp(path.join(os.tmpdir(), "mlship-curl-"));
    for (const m of MODELS) {
      await w.register(m.name, m.fixture, m.columns ? { columns: true, labelColumn: m.fixture === "diabetes_linear" ? "target" : "label" } : {});
      await w.registry.setAlias(m.name, "production", 1);
      expected[m.fixture] = await readExpected(m.fixture);
    }
    app = buildServer({ scoring: w.scoring, registry: w.registry, defaultModel: "breast-cancer@production", logger: false });
    small = buildServer({ scoring: w.scoring, registry: w.registry, defaultModel: "breast-cancer@production", logger: false, bodyLimitBytes: 4096 });
    c = curlClient(await listen(app), dir);
    tiny = curlClient(await listen(small), dir);
    // Loads are lazy; wait until every model answers so the protocol checks below are about the protocols.
    for (const m of MODELS) await waitFor(async () => (await c.curl([`/v2/models/${m.name}/ready`])).status === 200, 30_000, 100);
  });

  afterAll(async () => {
    await app?.close();
    await small?.close();
    await w?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  describe("Open Inference Protocol V2", () => {
    it("answers health and server metadata as the spec writes them", async () => {
      const live = await c.curl(["/v2/health/live"]);
      expect(live.status).toBe(200);
      expect(json(live)).toEqual({ live: true });
      const ready = await c.curl(["/v2/health/ready"]);
      expect(ready.status).toBe(200);
      expect(json(ready)).toEqual({ ready: true });
      const server = await c.curl(["/v2"]);
      expect(server.status).toBe(200);
      expect(server.headers["content-type"]).toMatch(/^application\/json/);
      const body = json(server);
      expect(body.name).toBe("mlship");
      expect(body.version).toMatch(/^\d+\.\d+\.\d+/);
      expect(body.extensions).toEqual(["binary_tensor_data"]);
    });

    it("serves model metadata and readiness by name, by version and by alias", async () => {
      const md = await c.curl(["/v2/models/breast-cancer"]);
      expect(md.status).toBe(200);
      expect(md.headers["mlship-model-version"]).toBe("breast-cancer@1");
      expect(json(md)).toEqual({
        name: "breast-cancer",
        versions: ["1"],
        platform: "onnx_onnxv1",
        inputs: [{ name: "input", datatype: "FP32", shape: [-1, 30] }],
        outputs: [
          { name: "probabilities", datatype: "FP32", shape: [-1, 2] },
          { name: "label", datatype: "INT64", shape: [-1] },
        ],
      });
      // `@` is legal in a URL path; curl sends it as typed, and encoded it means the same.
      for (const url of ["/v2/models/breast-cancer/versions/1", "/v2/models/breast-cancer@production", "/v2/models/breast-cancer%40production"]) {
        const res = await c.curl([url]);
        expect(res.status, url).toBe(200);
        expect(json(res), url).toEqual(json(md));
      }
      const digits = json(await c.curl(["/v2/models/digits"]));
      expect(digits.inputs).toEqual([{ name: "input", datatype: "FP32", shape: [-1, 1, 8, 8] }]);
      const ready = await c.curl(["/v2/models/diabetes/versions/1/ready"]);
      expect(ready.status).toBe(200);
      expect(json(ready)).toEqual({ name: "diabetes", ready: true });
      const missing = await c.curl(["/v2/models/nope"]);
      expect(missing.status).toBe(404);
      expect(typeof json(missing).error).toBe("string");
    });

    it("infers with the spec's request shape (flat data, id, requested outputs) and matches expected.json", async () => {
      for (const m of MODELS) {
        const e = expected[m.fixture];
        const outputs = Object.keys(e.outputs);
        const request = {
          id: `req-${m.name}`,
          inputs: [{ name: "input", shape: e.input_shape, datatype: "FP32", data: e.inputs.flat() }],
          outputs: outputs.map((name) => ({ name })),
        };
        const file = await c.file(`v2-${m.name}.json`, request);
        const res = await c.curl(["-X", "POST", `/v2/models/${m.name}/infer`, "-H", "Content-Type: application/json", "--data-binary", `@${file}`]);
        expect(res.status, res.body.slice(0, 300)).toBe(200);
        expect(res.headers["mlship-model-version"]).toBe(`${m.name}@1`);
        const body = json<{ model_name: string; model_version: string; id: string; outputs: V2Output[] }>(res);
        expect(body.model_name).toBe(m.name);
        expect(body.model_version).toBe("1");
        expect(body.id).toBe(`req-${m.name}`);
        expect(body.outputs.map((o) => o.name)).toEqual(outputs);
        for (const o of body.outputs) {
          const want = e.outputs[o.name] as unknown[];
          // V2 output data is flat, row-major; the shape says how to read it.
          expect(o.shape).toEqual(o.name === "label" ? [50] : [50, (want[0] as unknown[]).length]);
          expect(o.datatype).toBe(o.name === "label" ? "INT64" : "FP32");
          expect(o.data).toHaveLength(o.shape.reduce((a, b) => a * b, 1));
        }
        checkOutputs(e, 50, (out) => body.outputs.find((o) => o.name === out)?.data);
      }
    });

    it("accepts data nested in the tensor's shape, and an alias in the URL", async () => {
      for (const m of MODELS) {
        const e = expected[m.fixture];
        const nested = nest(e.inputs.flat(), e.input_shape);
        const file = await c.file(`v2-nested-${m.name}.json`, { inputs: [{ name: "input", shape: e.input_shape, datatype: "FP32", data: nested }] });
        const res = await c.curl(["-X", "POST", `/v2/models/${m.name}@production/infer`, "-H", "Content-Type: application/json", "--data-binary", `@${file}`]);
        expect(res.status, res.body.slice(0, 300)).toBe(200);
        const body = json<{ outputs: V2Output[]; id?: string }>(res);
        expect(body.id).toBeUndefined();
        checkOutputs(e, 50, (out) => body.outputs.find((o) => o.name === out)?.data);
      }
    });
  });

  describe("MLflow scoring protocol", () => {
    /** POSTs `payload` (written to a file) the way MLflow's docs do, to the per-model route or /invocations. */
    const post = async (url: string, payload: unknown, contentType = "Content-Type: application/json") => {
      const file = await c.file(`mlflow-${Math.random().toString(36).slice(2)}`, payload);
      return c.curl([url, "-H", contentType, "--data-binary", `@${file}`]);
    };
    const predictions = (res: Awaited<ReturnType<typeof post>>): unknown => {
      expect(res.status, res.body.slice(0, 300)).toBe(200);
      const body = json(res);
      expect(Object.keys(body)).toEqual(["predictions"]);
      return body.predictions;
    };

    it("scores dataframe_split as pandas' to_dict(orient=\"split\") writes it", async () => {
      for (const m of MODELS) {
        const e = expected[m.fixture];
        const { columns } = await csvBody(m.fixture, 1);
        const split = { columns, index: e.inputs.map((_, i) => i), data: e.inputs };
        const res = await post(`/v1/models/${m.name}/invocations`, { dataframe_split: split });
        expect(res.headers["mlship-model-version"]).toBe(`${m.name}@1`);
        checkRecords(predictions(res), e, 50);
      }
    });

    it("scores dataframe_records as pandas' to_dict(orient=\"records\") writes it, by column name", async () => {
      for (const m of MODELS.filter((x) => x.columns)) {
        const e = expected[m.fixture];
        const { columns } = await csvBody(m.fixture, 1);
        const records = e.inputs.map((row) => Object.fromEntries(columns.map((col, i) => [col, row[i]])));
        checkRecords(predictions(await post(`/v1/models/${m.name}/invocations`, { dataframe_records: records })), e, 50);
      }
      // Without declared columns, JSON key order is not a contract: a 400 that says how to declare them.
      const res = await post("/v1/models/digits/invocations", { dataframe_records: [{ pixel_0_0: 0 }] });
      expect(res.status).toBe(400);
      expect(json(res)).toMatchObject({ error_code: "BAD_REQUEST", mlship_code: "MLSHIP_ERR_INPUT_INVALID" });
      expect(json(res).message).toContain("--columns");
    });

    it("scores instances and inputs (TF Serving row and columnar formats), with params", async () => {
      for (const m of MODELS) {
        const e = expected[m.fixture];
        checkColumnar(predictions(await post(`/v1/models/${m.name}/invocations`, { instances: e.inputs })), e, 50);
        checkColumnar(predictions(await post(`/v1/models/${m.name}/invocations`, { inputs: e.inputs, params: { unused: 1 } })), e, 50);
      }
      // The docs' own request: -H "Content-Type:application/json" (no space), --data, to /invocations.
      const e = expected.breast_cancer_mlp;
      const res = await c.curl(["/invocations", "-H", "Content-Type:application/json", "--data", JSON.stringify({ inputs: e.inputs.slice(0, 3) })]);
      expect(res.headers["mlship-model-version"]).toBe("breast-cancer@1");
      checkColumnar(predictions(res), e, 3);
    });

    it("scores CSV sent with --data-binary @file as text/csv and application/csv", async () => {
      for (const m of MODELS) {
        const e = expected[m.fixture];
        const { text } = await csvBody(m.fixture, 50);
        const file = await c.file(`${m.name}.csv`, text);
        for (const type of ["Content-Type: text/csv", "Content-Type: application/csv", "Content-Type: text/csv; charset=utf-8"]) {
          const res = await c.curl([`/v1/models/${m.name}/invocations`, "-H", type, "--data-binary", `@${file}`]);
          checkRecords(predictions(res), e, 50);
        }
      }
      // The whole prod.csv, label column and all, against a model with declared columns: extra columns are ignored.
      const { text } = await readCsv("breast_cancer_mlp");
      const file = await c.file("prod.csv", text);
      const res = await c.curl(["/invocations", "-H", "Content-Type: text/csv", "--data-binary", `@${file}`]);
      expect(predictions(res)).toHaveLength(143);
    });

    it("answers /ping, /health and /version", async () => {
      for (const route of ["/ping", "/health"]) {
        const res = await c.curl([route]);
        expect(res.status, route).toBe(200);
        expect(res.headers["mlship-model-version"]).toBe("breast-cancer@1");
      }
      const version = await c.curl(["/version"]);
      expect(version.status).toBe(200);
      expect(version.body).toMatch(/^\d+\.\d+\.\d+/);
    });
  });

  describe("bad requests get the protocol's status and error body", () => {
    const row30 = Array.from({ length: 30 }, (_, i) => i + 1);

    it("malformed JSON is a 400 on both protocols", async () => {
      const file = await c.file("broken.json", '{"inputs": [{"name": "input", "shape": [1, 30], ');
      const v2 = await c.curl(["-X", "POST", "/v2/models/breast-cancer/infer", "-H", "Content-Type: application/json", "--data-binary", `@${file}`]);
      expect(v2.status).toBe(400);
      expect(json(v2)).toMatchObject({ code: "MLSHIP_ERR_INPUT_JSON", field: "body" });
      expect(typeof json(v2).error).toBe("string");
      const mlflow = await c.curl(["/invocations", "-H", "Content-Type: application/json", "--data-binary", `@${file}`]);
      expect(mlflow.status).toBe(400);
      expect(json(mlflow)).toMatchObject({ error_code: "BAD_REQUEST", mlship_code: "MLSHIP_ERR_INPUT_JSON" });
      expect(json(mlflow).message).toContain("valid JSON");
      const notObject = await c.curl(["-X", "POST", "/v2/models/breast-cancer/infer", "-H", "Content-Type: application/json", "--data-binary", "null"]);
      expect(notObject.status).toBe(400);
      expect(json(notObject)).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "body" });
    });

    it("a charset other than UTF-8, or an unsupported type, is a 415", async () => {
      const body = JSON.stringify({ instances: [row30] });
      for (const type of ["Content-Type: application/json; charset=latin-1", "Content-Type: text/csv; charset=latin-1"]) {
        const res = await c.curl(["/invocations", "-H", type, "--data-binary", body]);
        expect(res.status, type).toBe(415);
        expect(json(res)).toMatchObject({ error_code: "BAD_REQUEST", mlship_code: "MLSHIP_ERR_INPUT_CONTENT_TYPE", field: "content-type" });
        expect(json(res).message).toContain("UTF-8");
      }
      const v2 = await c.curl(["-X", "POST", "/v2/models/breast-cancer/infer", "-H", "Content-Type: application/json; charset=latin-1", "--data-binary", "{}"]);
      expect(v2.status).toBe(415);
      expect(json(v2)).toMatchObject({ code: "MLSHIP_ERR_INPUT_CONTENT_TYPE" });
      // curl's default for -d is application/x-www-form-urlencoded: a client that forgot -H gets told what to send.
      const form = await c.curl(["/invocations", "-d", body]);
      expect(form.status).toBe(415);
      expect(json(form).message).toContain("application/json");
      const param = await c.curl(["/invocations", "-H", "Content-Type: application/json; format=pandas-split", "--data-binary", body]);
      expect(param.status).toBe(415);
    });

    it("a body over the limit is a 413, streamed or not", async () => {
      const big = await tiny.file("big.json", { inputs: [{ name: "input", shape: [100, 30], datatype: "FP32", data: Array.from({ length: 3000 }, () => 0.123456) }] });
      const v2 = await tiny.curl(["-X", "POST", "/v2/models/breast-cancer/infer", "-H", "Content-Type: application/json", "--data-binary", `@${big}`]);
      expect(v2.status).toBe(413);
      expect(json(v2)).toMatchObject({ code: "MLSHIP_ERR_INPUT_TOO_LARGE", field: "body" });
      const csv = await tiny.file("big.csv", `${(await csvBody("breast_cancer_mlp", 50)).text}`);
      const mlflow = await tiny.curl(["/invocations", "-H", "Content-Type: text/csv", "--data-binary", `@${csv}`]);
      expect(mlflow.status).toBe(413);
      expect(json(mlflow)).toMatchObject({ error_code: "BAD_REQUEST", mlship_code: "MLSHIP_ERR_INPUT_TOO_LARGE" });
      // Chunked upload: no Content-Length for the server to refuse up front.
      const chunked = await tiny.curl(["-X", "POST", "/v2/models/breast-cancer/infer", "-H", "Content-Type: application/json", "-H", "Transfer-Encoding: chunked", "--data-binary", `@${big}`]);
      expect(chunked.status).toBe(413);
      // The server is still serving.
      expect((await tiny.curl(["/v2/health/live"])).status).toBe(200);
    });

    it("wrong shape, wrong datatype, missing column and unknown model name the problem", async () => {
      const shape = await c.curl(["-X", "POST", "/v2/models/breast-cancer/infer", "-H", "Content-Type: application/json", "--data-binary",
        JSON.stringify({ inputs: [{ name: "input", shape: [1, 29], datatype: "FP32", data: row30.slice(1) }] })]);
      expect(shape.status).toBe(400);
      expect(json(shape)).toMatchObject({ code: "MLSHIP_ERR_INPUT_SHAPE", field: "inputs[0].shape" });
      const dtype = await c.curl(["-X", "POST", "/v2/models/breast-cancer/infer", "-H", "Content-Type: application/json", "--data-binary",
        JSON.stringify({ inputs: [{ name: "input", shape: [1, 30], datatype: "FP64", data: row30 }] })]);
      expect(dtype.status).toBe(400);
      expect(json(dtype)).toMatchObject({ code: "MLSHIP_ERR_INPUT_DTYPE", field: "inputs[0].datatype" });
      const { columns } = await csvBody("breast_cancer_mlp", 1);
      const csv = `${columns.slice(1).join(",")}\n${row30.slice(1).join(",")}\n`;
      const missing = await c.curl(["/invocations", "-H", "Content-Type: text/csv", "--data-binary", csv]);
      expect(missing.status).toBe(400);
      expect(json(missing)).toMatchObject({ error_code: "BAD_REQUEST", mlship_code: "MLSHIP_ERR_INPUT_MISSING", field: "mean radius" });
      const twoKeys = await c.curl(["/invocations", "-H", "Content-Type: application/json", "--data-binary", JSON.stringify({ instances: [row30], inputs: [row30] })]);
      expect(twoKeys.status).toBe(400);
      expect(json(twoKeys).message).toContain("exactly one of the input fields");
      const unknownV2 = await c.curl(["-X", "POST", "/v2/models/nope/infer", "-H", "Content-Type: application/json", "--data-binary", "{\"inputs\":[]}"]);
      expect(unknownV2.status).toBe(404);
      expect(json(unknownV2)).toMatchObject({ code: "MLSHIP_ERR_MODEL_NOT_FOUND" });
      const unknownMlflow = await c.curl(["/v1/models/nope/invocations", "-H", "Content-Type: application/json", "--data-binary", JSON.stringify({ instances: [row30] })]);
      expect(unknownMlflow.status).toBe(404);
      expect(json(unknownMlflow)).toMatchObject({ error_code: "RESOURCE_DOES_NOT_EXIST", mlship_code: "MLSHIP_ERR_MODEL_NOT_FOUND" });
      // A version pinned in the path next to an alias in the name is ambiguous.
      const both = await c.curl(["/v2/models/breast-cancer@production/versions/1"]);
      expect(both.status).toBe(400);
      expect(json(both)).toMatchObject({ code: "MLSHIP_ERR_MODEL_REF_INVALID" });
    });
  });

  it("exports the request series for what curl sent on /metrics", async () => {
    const res = await c.curl(["/metrics"]);
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toContain("text/plain");
    for (const series of [
      /mlship_requests_total\{model="breast-cancer",version="1",protocol="v2",status="200"\} \d+/,
      /mlship_requests_total\{model="digits",version="1",protocol="mlflow",status="200"\} \d+/,
      /mlship_request_errors_total\{model="breast-cancer",version="1",code="MLSHIP_ERR_INPUT_SHAPE"\} \d+/,
      /mlship_request_duration_seconds_bucket\{le="\+Inf",model="diabetes",version="1",protocol="mlflow"\} \d+/,
      /mlship_rows_total\{model="breast-cancer",version="1"\} \d+/,
      /mlship_model_load_seconds\{model="digits",version="1"\} \d/,
      /process_cpu_user_seconds_total \d/,
      /process_resident_memory_bytes \d/,
    ]) {
      expect(res.body).toMatch(series);
    }
  });
});
