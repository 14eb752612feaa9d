import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { createHandler, type HttpEventV2, type HttpResult, type PlainError, type ServerlessHandler } from "../../src/serverless/index.js";
import { expectRecordsMatch, expectValueClose, fixture, REPO, tempDir } from "../cli/helpers.js";

const bc = fixture("breast_cancer_mlp");
const digits = fixture("digits_cnn");
const root = tempDir("serverless");
const home = path.join(root, "bundle");
const COLD_CHILD = fileURLToPath(new URL("./cold-child.ts", import.meta.url));
let handler: ServerlessHandler;

function httpEvent(method: string, rawPath: string, body: unknown, extra: Partial<HttpEventV2> = {}): HttpEventV2 {
  return {
    version: "2.0",
    rawPath,
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
    isBase64Encoded: false,
    requestContext: { http: { method } },
    ...extra,
  };
}

async function http(event: HttpEventV2): Promise<HttpResult & { json: () => Record<string, unknown> }> {
  const result = (await handler(event, { awsRequestId: "req-1" })) as HttpResult;
  return { ...result, json: () => JSON.parse(result.body) as Record<string, unknown> };
}

const bcSplit = (rows: number[][]) => ({ dataframe_split: { columns: bc.features, data: rows } });
const v2Digits = (rows: number[][]) => ({ inputs: [{ name: "input", shape: [rows.length, 1, 8, 8], datatype: "FP32", data: rows.flat() }] });

beforeAll(async () => {
  // The bundle a function ships: a home with the example models registered (alias production).
  const app = await createMlship(defaultConfig({ home, "log.level": "warn" }));
  try {
    for (const name of ["breast-cancer", "digits"]) await registerModel(app, path.join(REPO, "examples", "models", name), { name, alias: "production" });
  } finally {
    await app.close();
  }
  handler = createHandler({ home, model: "breast-cancer@production", scratchDir: path.join(root, "scratch"), config: defaultConfig({ home, "log.level": "warn" }) });
  await handler.init();
}, 60_000);

afterAll(async () => {
  await handler.close();
  fs.rmSync(root, { recursive: true, force: true });
});

describe("serverless handler: Lambda HTTP events (payload format 2.0)", () => {
  it("answers V2 infer with the fixture's outputs", async () => {
    const rows = digits.expected.inputs.slice(0, 8);
    const res = await http(httpEvent("POST", "/v2/models/digits/infer", v2Digits(rows)));
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toMatch(/^application\/json/);
    const outputs = res.json().outputs as Array<{ name: string; shape: number[]; data: number[] }>;
    const probabilities = outputs.find((o) => o.name === "probabilities");
    const label = outputs.find((o) => o.name === "label");
    expect(probabilities?.shape).toEqual([8, 10]);
    expectValueClose(probabilities?.data, digits.expected.outputs.probabilities?.slice(0, 8), "probabilities", digits.expected);
    expect(label?.data).toEqual(digits.expected.outputs.label?.slice(0, 8));
    expect(res.json().model_name).toBe("digits");
  });

  it("answers MLflow /invocations (default model) and /v1/models/{ref}/invocations, behind a stage prefix too", async () => {
    const res = await http(httpEvent("POST", "/invocations", bcSplit(bc.expected.inputs)));
    expect(res.statusCode).toBe(200);
    expectRecordsMatch(res.json().predictions, bc.expected);
    expect(res.headers["mlship-model-version"]).toBe("breast-cancer@1");
    expect(res.headers["x-request-id"]).toBe("req-1");

    const pinned = await http(httpEvent("POST", "/v2/models/digits/versions/1/infer", v2Digits(digits.expected.inputs.slice(0, 1))));
    expect(pinned.statusCode).toBe(200);
    expect(pinned.json().model_version).toBe("1");

    const staged = await http(httpEvent("POST", "/prod/v1/models/breast-cancer@1/invocations", bcSplit(bc.expected.inputs.slice(0, 3))));
    expect(staged.statusCode).toBe(200);
    expect((staged.json().predictions as Array<{ label: number }>).map((p) => p.label)).toEqual(bc.expected.outputs.label?.slice(0, 3));
  });

  it("decodes a base64 body (CSV here, as Function URLs send non-text bodies)", async () => {
    const csv = `${bc.features.join(",")}\n${bc.expected.inputs.slice(0, 4).map((r) => r.join(",")).join("\n")}\n`;
    const res = await http(
      httpEvent("POST", "/invocations", Buffer.from(csv).toString("base64"), { isBase64Encoded: true, headers: { "content-type": "text/csv" } }),
    );
    expect(res.statusCode).toBe(200);
    expect((res.json().predictions as Array<{ label: number }>).map((p) => p.label)).toEqual(bc.expected.outputs.label?.slice(0, 4));

    const json = await http(httpEvent("POST", "/v2/models/digits/infer", Buffer.from(JSON.stringify(v2Digits(digits.expected.inputs.slice(0, 1)))).toString("base64"), { isBase64Encoded: true }));
    expect(json.statusCode).toBe(200);
  });

  it("maps bad requests to 4xx with the protocol's JSON error body and a field", async () => {
    const badJson = await http(httpEvent("POST", "/v2/models/digits/infer", "{not json"));
    expect(badJson.statusCode).toBe(400);
    expect(badJson.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_JSON", field: "body" });

    const badMlflow = await http(httpEvent("POST", "/invocations", "{"));
    expect(badMlflow.statusCode).toBe(400);
    expect(badMlflow.json()).toMatchObject({ error_code: "BAD_REQUEST", mlship_code: "MLSHIP_ERR_INPUT_JSON", field: "body" });

    const unknown = await http(httpEvent("POST", "/v2/models/no-such-model/infer", v2Digits(digits.expected.inputs.slice(0, 1))));
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().code).toBe("MLSHIP_ERR_MODEL_NOT_FOUND");

    const wrongShape = await http(httpEvent("POST", "/v2/models/digits/infer", { inputs: [{ name: "input", shape: [1, 3], datatype: "FP32", data: [1, 2, 3] }] }));
    expect(wrongShape.statusCode).toBe(400);
    expect(wrongShape.json().field).toBeTypeOf("string");

    const badEscape = await http(httpEvent("POST", "/v2/models/%E0%A4%A/infer", v2Digits(digits.expected.inputs.slice(0, 1))));
    expect(badEscape.statusCode).toBe(400);
    expect(badEscape.json().field).toBe("path");

    const noRoute = await http(httpEvent("GET", "/v2/models/digits/infer", ""));
    expect(noRoute.statusCode).toBe(404);
    expect(noRoute.json().code).toBe("MLSHIP_ERR_SERVE_ROUTE_NOT_FOUND");
  });

  it("answers the health routes", async () => {
    expect((await http(httpEvent("GET", "/v2/health/live", ""))).json()).toEqual({ live: true });
    expect((await http(httpEvent("GET", "/v2/health/ready", ""))).json()).toEqual({ ready: true });
  });

  it("never writes to the bundled home", () => {
    const files = fs.readdirSync(home).sort();
    expect(files).not.toContain("spill");
    // The registry was copied to scratch space and opened there.
    expect(fs.existsSync(path.join(root, "scratch", "mlship.db"))).toBe(true);
  });
});

describe("serverless handler: plain events", () => {
  it("scores MLflow, V2 and records events, with the model from the event or the default", async () => {
    const mlflow = (await handler(bcSplit(bc.expected.inputs))) as { predictions: unknown };
    expectRecordsMatch(mlflow.predictions, bc.expected);

    const v2 = (await handler({ model: "digits@production", ...v2Digits(digits.expected.inputs.slice(0, 2)) })) as { outputs: Array<{ name: string; data: number[] }> };
    expect(v2.outputs.find((o) => o.name === "label")?.data).toEqual(digits.expected.outputs.label?.slice(0, 2));

    const records = bc.expected.inputs.slice(0, 2).map((row) => Object.fromEntries(bc.features.map((f, i) => [f, row[i]])));
    const byRecords = (await handler({ model: "breast-cancer", records })) as { predictions: Array<{ label: number }> };
    expect(byRecords.predictions.map((p) => p.label)).toEqual(bc.expected.outputs.label?.slice(0, 2));
  });

  it("answers errors as the native body with the status it maps to", async () => {
    const unknown = (await handler({ model: "nope", dataframe_split: { columns: ["a"], data: [[1]] } })) as PlainError;
    expect(unknown).toMatchObject({ statusCode: 404, code: "MLSHIP_ERR_MODEL_NOT_FOUND" });
    const bad = (await handler({ dataframe_split: { columns: ["a"], data: [[1]] } })) as PlainError;
    expect(bad.statusCode).toBe(400);
    expect(bad.code).toMatch(/^MLSHIP_ERR_INPUT_/);
    expect(bad.field).toBeTypeOf("string");
    expect(((await handler("text")) as PlainError).statusCode).toBe(400);
  });
});

describe("serverless handler: cold start", () => {
  it("answers correctly in a fresh process configured by the environment only", async () => {
    const event = httpEvent("POST", "/invocations", bcSplit(bc.expected.inputs.slice(0, 5)));
    const line = await new Promise<string>((resolve, reject) => {
      const child = spawn(process.execPath, ["--import", "tsx", COLD_CHILD], {
        cwd: REPO,
        env: { ...process.env, MLSHIP_HOME: home, MLSHIP_DEFAULT_MODEL: "breast-cancer@production", MLSHIP_LOG_LEVEL: "warn", COLD_EVENT: JSON.stringify(event) },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      let err = "";
      child.stdout.on("data", (c: Buffer) => (out += c.toString()));
      child.stderr.on("data", (c: Buffer) => (err += c.toString()));
      const timer = setTimeout(() => child.kill("SIGKILL"), 45_000);
      child.on("exit", (code) => {
        clearTimeout(timer);
        if (code === 0) resolve(out.trim().split("\n").at(-1) ?? "");
        else reject(new Error(`cold child exited ${String(code)}: ${err}`));
      });
    });
    const got = JSON.parse(line) as { answer: HttpResult; processToAnswerMs: number; handlerToAnswerMs: number; initMs: number };
    expect(got.answer.statusCode).toBe(200);
    const predictions = (JSON.parse(got.answer.body) as { predictions: Array<{ label: number }> }).predictions;
    expect(predictions.map((p) => p.label)).toEqual(bc.expected.outputs.label?.slice(0, 5));
    expect(got.initMs).toBeGreaterThan(0);
    expect(got.handlerToAnswerMs).toBeGreaterThanOrEqual(got.initMs);
  }, 60_000);
});
