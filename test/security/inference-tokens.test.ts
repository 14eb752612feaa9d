// Per-model inference tokens over real HTTP (the fast path in front of Fastify), through Fastify's own pipeline
// (inject, CSV, escaped names) and over gRPC with a client generated from the proto: a listed model needs one of its
// tokens (or the admin token) on every route that reaches it; other models stay open; the check comes before the
// body is read; tokens are compared in constant time (createTokenCheck) and never logged.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { Metadata, status } from "@grpc/grpc-js";
import type { Client } from "@grpc/grpc-js";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig, loadConfigWithSources } from "../../src/config/index.js";
import { LOG_REDACT_PATHS, MlshipError } from "../../src/core/index.js";
import { buildServer, createGrpcServer, createInferenceTokens } from "../../src/serve/index.js";
import type { GrpcServer } from "../../src/serve/index.js";
import { connect, rpc, rpcError, trailer } from "../grpc/client.js";

const MODELS = fileURLToPath(new URL("../../examples/models", import.meta.url));
const ADMIN = "admin-token-4f1c2a9e7d";
const CANCER_TOKENS = ["cancer-token-one-8812", "cancer-token-two-3310"];
const DIABETES_TOKEN = "diabetes-token-77aa01";

const home = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-inference-tokens-"));
const logLines: string[] = [];
let app: Mlship;
let server: ReturnType<typeof buildServer>;
let base: string;
let grpc: GrpcServer;
let client: Client;
let cancerRow: number[];
let diabetesRow: number[];

function exampleRow(model: string): number[] {
  const example = JSON.parse(fs.readFileSync(path.join(MODELS, model, "input_example.json"), "utf8")) as { dataframe_split: { data: number[][] } };
  return example.dataframe_split.data[0] as number[];
}

function v2Body(row: number[]): string {
  return JSON.stringify({ inputs: [{ name: "input", shape: [1, row.length], datatype: "FP32", data: row }] });
}

function mlflowBody(row: number[]): string {
  return JSON.stringify({ inputs: [row] });
}

beforeAll(async () => {
  app = await createMlship(defaultConfig({ home, user: "tester", "runtime.workers": 1, "log.level": "warn" }));
  for (const model of ["breast-cancer", "diabetes", "digits"]) await registerModel(app, path.join(MODELS, model), { name: model, alias: "production" });
  const tokens = createInferenceTokens({ "breast-cancer": CANCER_TOKENS, diabetes: [DIABETES_TOKEN] }, { adminToken: ADMIN });
  const logger = pino(
    { level: "trace", redact: { paths: LOG_REDACT_PATHS, censor: "***" } },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        logLines.push(chunk.toString());
        done();
      },
    }),
  );
  server = buildServer({ scoring: app.scoring, registry: app.registry, logger, adminToken: ADMIN, inferenceTokens: tokens, defaultModel: "breast-cancer@production" });
  await server.listen({ host: "127.0.0.1", port: 0 });
  const address = server.server.address() as { port: number };
  base = `http://127.0.0.1:${address.port}`;
  grpc = createGrpcServer({ scoring: app.scoring, registry: app.registry, logger, inferenceTokens: tokens });
  const port = await grpc.listen("127.0.0.1", 0);
  client = connect(`127.0.0.1:${port}`);
  cancerRow = exampleRow("breast-cancer");
  diabetesRow = exampleRow("diabetes");
}, 120_000);

afterAll(async () => {
  client?.close();
  await grpc?.close(0);
  await server?.close();
  await app?.close();
  fs.rmSync(home, { recursive: true, force: true });
});

interface Case {
  method: "GET" | "POST";
  url: string;
  body?: string;
  protocol: "v2" | "mlflow";
}

/** Every route that reaches breast-cancer, in each spelling of its reference. */
function cancerRoutes(): Case[] {
  const v2 = v2Body(cancerRow);
  const mlflow = mlflowBody(cancerRow);
  return [
    { method: "POST", url: "/v2/models/breast-cancer/infer", body: v2, protocol: "v2" },
    { method: "POST", url: "/v2/models/breast-cancer@production/infer", body: v2, protocol: "v2" },
    { method: "POST", url: "/v2/models/breast-cancer/versions/1/infer", body: v2, protocol: "v2" },
    { method: "POST", url: "/v2/models/breast-cancer%40production/infer", body: v2, protocol: "v2" },
    { method: "GET", url: "/v2/models/breast-cancer", protocol: "v2" },
    { method: "GET", url: "/v2/models/breast-cancer/versions/1", protocol: "v2" },
    { method: "GET", url: "/v2/models/breast-cancer/ready", protocol: "v2" },
    { method: "GET", url: "/v2/models/breast-cancer/versions/1/ready", protocol: "v2" },
    { method: "POST", url: "/invocations", body: mlflow, protocol: "mlflow" },
    { method: "POST", url: "/v1/models/breast-cancer/invocations", body: mlflow, protocol: "mlflow" },
    { method: "POST", url: "/v1/models/breast-cancer@1/invocations", body: mlflow, protocol: "mlflow" },
    { method: "POST", url: "/v1/models/models%3A%2Fbreast-cancer%40production/invocations", body: mlflow, protocol: "mlflow" },
  ];
}

async function call(c: Case, authorization?: string, body = c.body): Promise<{ status: number; headers: Headers; json: Record<string, unknown> }> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (authorization !== undefined) headers.authorization = authorization;
  const response = await fetch(`${base}${c.url}`, { method: c.method, headers, ...(c.method === "POST" ? { body } : {}) });
  return { status: response.status, headers: response.headers, json: (await response.json()) as Record<string, unknown> };
}

function expectRefusal(answer: { status: number; json: Record<string, unknown> }, c: Case, code: "MLSHIP_ERR_AUTH_REQUIRED" | "MLSHIP_ERR_AUTH_INVALID", what: string): void {
  expect(answer.status, what).toBe(code === "MLSHIP_ERR_AUTH_REQUIRED" ? 401 : 403);
  if (c.protocol === "v2") expect(answer.json, what).toMatchObject({ code, field: "authorization" });
  else expect(answer.json, what).toMatchObject({ mlship_code: code, error_code: code === "MLSHIP_ERR_AUTH_REQUIRED" ? "UNAUTHENTICATED" : "PERMISSION_DENIED" });
}

describe("inference tokens over REST", { timeout: 60_000 }, () => {
  it("refuses every route of a listed model without a token (401) and with another (403), and serves it with one of its tokens or the admin token", async () => {
    for (const c of cancerRoutes()) {
      const what = `${c.method} ${c.url}`;
      const missing = await call(c);
      expectRefusal(missing, c, "MLSHIP_ERR_AUTH_REQUIRED", what);
      expect(missing.headers.get("www-authenticate"), what).toBe('Bearer realm="mlship"');
      expect(missing.headers.get("mlship-model-version"), what).toBeNull();
      for (const authorization of [`Bearer ${DIABETES_TOKEN}`, `Bearer ${CANCER_TOKENS[0]}x`, `Bearer ${ADMIN.toUpperCase()}`, "Bearer x"]) {
        const wrong = await call(c, authorization);
        expectRefusal(wrong, c, "MLSHIP_ERR_AUTH_INVALID", `${what} ${authorization}`);
        expect(wrong.headers.get("www-authenticate"), what).toBeNull();
      }
      for (const authorization of [CANCER_TOKENS[0] as string, `Basic ${Buffer.from(`u:${CANCER_TOKENS[0]}`).toString("base64")}`]) {
        expectRefusal(await call(c, authorization), c, "MLSHIP_ERR_AUTH_REQUIRED", `${what} not a bearer token`);
      }
      for (const token of [...CANCER_TOKENS, ADMIN]) {
        const ok = await call(c, `bearer  ${token} `);
        expect(ok.status, `${what}: ${JSON.stringify(ok.json)}`).toBe(200);
        expect(ok.headers.get("mlship-model-version"), what).toMatch(/^breast-cancer@1$/);
      }
    }
  });

  it("checks the token before the body: a refused request with a malformed body is still a 401", async () => {
    for (const c of cancerRoutes().filter((r) => r.method === "POST")) {
      expectRefusal(await call(c, undefined, "{not json"), c, "MLSHIP_ERR_AUTH_REQUIRED", c.url);
      expectRefusal(await call(c, "Bearer nope", "{not json"), c, "MLSHIP_ERR_AUTH_INVALID", c.url);
    }
  });

  it("guards Fastify's pipeline too: CSV, the binary extension and inject()", async () => {
    const columns = (JSON.parse(fs.readFileSync(path.join(MODELS, "breast-cancer", "input_example.json"), "utf8")) as { dataframe_split: { columns: string[] } }).dataframe_split.columns;
    const text = `${columns.map((c) => JSON.stringify(c)).join(",")}\n${cancerRow.join(",")}\n`;
    const csv = await fetch(`${base}/invocations`, { method: "POST", headers: { "content-type": "text/csv" }, body: text });
    expect(csv.status).toBe(401);
    const csvOk = await fetch(`${base}/invocations`, { method: "POST", headers: { "content-type": "text/csv", authorization: `Bearer ${CANCER_TOKENS[1]}` }, body: text });
    expect(csvOk.status).toBe(200);
    const binary = await fetch(`${base}/v2/models/breast-cancer/infer`, {
      method: "POST",
      headers: { "content-type": "application/octet-stream", "inference-header-content-length": "2" },
      body: "{}",
    });
    expect(binary.status).toBe(401);
    for (const c of cancerRoutes()) {
      const injected = await server.inject({ method: c.method, url: c.url, headers: { "content-type": "application/json" }, ...(c.body === undefined ? {} : { payload: c.body }) });
      expect(injected.statusCode, c.url).toBe(401);
      const allowed = await server.inject({
        method: c.method,
        url: c.url,
        headers: { "content-type": "application/json", authorization: `Bearer ${CANCER_TOKENS[0]}` },
        ...(c.body === undefined ? {} : { payload: c.body }),
      });
      expect(allowed.statusCode, `${c.url} ${allowed.body}`).toBe(200);
    }
  });

  it("leaves models that are not listed, health, metrics and reads open; a model's token opens that model only", async () => {
    const digits = await fetch(`${base}/v2/models/digits`);
    expect(digits.status).toBe(200);
    const digitsReady = await fetch(`${base}/v2/models/digits/ready`);
    expect([200, 503]).toContain(digitsReady.status);
    for (const url of ["/v2/health/live", "/v2/health/ready", "/v2", "/ping", "/metrics", "/api/v1/models/breast-cancer/versions/1/settings"]) {
      expect((await fetch(`${base}${url}`)).status, url).toBe(200);
    }
    const diabetes: Case = { method: "POST", url: "/v2/models/diabetes/infer", body: v2Body(diabetesRow), protocol: "v2" };
    expectRefusal(await call(diabetes), diabetes, "MLSHIP_ERR_AUTH_REQUIRED", "diabetes");
    expectRefusal(await call(diabetes, `Bearer ${CANCER_TOKENS[0]}`), diabetes, "MLSHIP_ERR_AUTH_INVALID", "diabetes with a cancer token");
    expect((await call(diabetes, `Bearer ${DIABETES_TOKEN}`)).status).toBe(200);
    // An unknown model answers 404 whatever the token: the tokens file says nothing about it.
    const unknown = await call({ method: "POST", url: "/v2/models/nope/infer", body: v2Body(cancerRow), protocol: "v2" });
    expect(unknown.status).toBe(404);
  });

  it("does not let an inference token act on the management API", async () => {
    const put = await fetch(`${base}/api/v1/models/breast-cancer/versions/1/settings`, {
      method: "PUT",
      headers: { "content-type": "application/json", authorization: `Bearer ${CANCER_TOKENS[0]}` },
      body: "{}",
    });
    expect(put.status).toBe(403);
  });

  it("never logs a token, even at trace level", () => {
    const all = logLines.join("");
    expect(all.length).toBeGreaterThan(0);
    for (const token of [...CANCER_TOKENS, DIABETES_TOKEN, ADMIN]) expect(all).not.toContain(token);
  });
});

describe("inference tokens over gRPC", { timeout: 60_000 }, () => {
  function withAuth(value?: string): Metadata {
    const md = new Metadata();
    if (value !== undefined) md.set("authorization", value);
    return md;
  }
  const infer = (): object => ({ model_name: "breast-cancer", inputs: [{ name: "input", datatype: "FP32", shape: [1, cancerRow.length], contents: { fp32_contents: cancerRow } }] });

  it("answers UNAUTHENTICATED without a token and PERMISSION_DENIED with another, on ModelInfer, ModelMetadata and ModelReady", async () => {
    const calls: [Parameters<typeof rpc>[1], () => object][] = [
      ["ModelInfer", infer],
      ["ModelInfer", () => ({ ...infer(), model_name: "breast-cancer@production" })],
      ["ModelInfer", () => ({ ...infer(), model_version: "1" })],
      ["ModelMetadata", () => ({ name: "breast-cancer" })],
      ["ModelMetadata", () => ({ name: "breast-cancer", version: "1" })],
      ["ModelReady", () => ({ name: "breast-cancer@production" })],
    ];
    for (const [method, request] of calls) {
      const what = `${method} ${JSON.stringify(request()).slice(0, 60)}`;
      const missing = await rpcError(client, method, request(), withAuth());
      expect(missing.code, what).toBe(status.UNAUTHENTICATED);
      expect(trailer(missing, "mlship-error-code"), what).toBe("MLSHIP_ERR_AUTH_REQUIRED");
      const wrong = await rpcError(client, method, request(), withAuth(`Bearer ${DIABETES_TOKEN}`));
      expect(wrong.code, what).toBe(status.PERMISSION_DENIED);
      expect(trailer(wrong, "mlship-error-code"), what).toBe("MLSHIP_ERR_AUTH_INVALID");
      expect(wrong.details).not.toContain(DIABETES_TOKEN);
      for (const token of [...CANCER_TOKENS, ADMIN]) {
        const ok = await rpc(client, method, request(), withAuth(`Bearer ${token}`));
        expect(trailer(ok.trailers, "mlship-model-version"), what).toBe("breast-cancer@1");
      }
    }
  });

  it("leaves the server calls and models that are not listed open", async () => {
    expect((await rpc(client, "ServerLive", {})).response).toMatchObject({ live: true });
    expect((await rpc(client, "ServerMetadata", {})).response).toMatchObject({ name: "mlship" });
    expect((await rpc(client, "ModelMetadata", { name: "digits" })).response).toMatchObject({ name: "digits" });
  });
});

describe("the inference tokens file", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-tokens-file-"));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const load = (text: string, name = "tokens.yaml") => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, text);
    return loadConfigWithSources({ cwd: dir, env: { MLSHIP_INFERENCE_TOKENS_FILE: file } });
  };
  const failure = (text: string): MlshipError => {
    try {
      load(text);
    } catch (error) {
      return error as MlshipError;
    }
    throw new Error("loaded");
  };

  it("reads YAML or JSON: a list or a single token per model, trimmed; never shown by the config", () => {
    const yaml = load("breast-cancer:\n  - ' tok-a '\n  - tok-b\ndiabetes: tok-c\n");
    expect(yaml.config.server.inferenceTokens).toEqual({ "breast-cancer": ["tok-a", "tok-b"], diabetes: ["tok-c"] });
    expect(yaml.sources["server.inferenceTokensFile"]).toBe("MLSHIP_INFERENCE_TOKENS_FILE");
    const json = load(JSON.stringify({ digits: ["j1"] }), "tokens.json");
    expect(json.config.server.inferenceTokens).toEqual({ digits: ["j1"] });
    expect(loadConfigWithSources({ cwd: dir, env: {} }).config.server.inferenceTokens).toBeNull();
  });

  it("refuses a file that is missing, not a mapping, names no model or holds empty tokens, naming the file and never a token", () => {
    for (const [text, reason] of [
      ["- a\n- b\n", /mapping/],
      ["breast-cancer: []\n", /no token/],
      ["breast-cancer: ['  ']\n", /non-empty string/],
      ["breast-cancer: [{secret-in-an-object: 1}]\n", /non-empty string/],
      ["'../etc': [secret-value-x]\n", /not a model name/],
      ["__proto__: [secret-value-x]\n", /not a model name/],
      ["breast-cancer: [secret-value-x\n", /not valid YAML/],
    ] as const) {
      const e = failure(text);
      expect(e, text).toBeInstanceOf(MlshipError);
      expect(e.code).toBe("MLSHIP_ERR_CONFIG_INVALID");
      expect(e.field).toBe("server.inferenceTokensFile");
      expect(e.message, text).toMatch(reason);
      expect(e.message).toContain(path.join(dir, "tokens.yaml"));
      expect(e.message).not.toContain("secret-value-x");
      expect(e.message).not.toContain("secret-in-an-object");
    }
    expect(() => loadConfigWithSources({ cwd: dir, env: { MLSHIP_INFERENCE_TOKENS_FILE: path.join(dir, "missing.yaml") } })).toThrow(/cannot be read/);
  });

  it("makes a model called like an Object.prototype member an ordinary entry", () => {
    const tokens = createInferenceTokens({ constructor: ["c-token"] });
    expect(tokens.refusal("toString", undefined)).toBeUndefined();
    expect(tokens.refusal("constructor@production", undefined)?.code).toBe("MLSHIP_ERR_AUTH_REQUIRED");
    expect(tokens.refusal("constructor", "Bearer c-token")).toBeUndefined();
    expect(() => createInferenceTokens({ m: [""] })).toThrow(MlshipError);
  });
});
