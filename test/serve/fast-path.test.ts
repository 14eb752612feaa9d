/**
 * The inference fast path (raw node:http in front of Fastify) against the Fastify routes of the same server:
 * every answer over a real socket must equal the one `inject()` gets (inject never goes through the fast path).
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { readFile, rm } from "node:fs/promises";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryPredictionCache } from "../../src/scoring/index.js";
import { buildServer } from "../../src/serve/index.js";
import { createWorld, csvBody, DIGITS_IMAGE_STEP, FIXTURES, readExpected, waitFor } from "../scoring/world.js";
import type { Expected, World } from "../scoring/world.js";

type Json = Record<string, unknown>;

interface Answer {
  status: number;
  headers: http.OutgoingHttpHeaders;
  body: Buffer;
}

interface Sent {
  url: string;
  headers: Record<string, string>;
  body: Buffer;
  /** Sent with Transfer-Encoding: chunked (no Content-Length), in two writes. */
  chunked?: boolean;
}

const BC_LABELS = ["malignant", "benign"];
const DIABETES_ROW = [37, 2, 23.6, 94, 205, 138.8, 53, 4, 4.1897, 107];

/** POST over a real socket, one connection per request (so closing the server never waits on keep-alive). */
function post(port: number, sent: Sent): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...sent.headers };
    if (sent.chunked !== true) headers["content-length"] = String(sent.body.length);
    const req = http.request({ host: "127.0.0.1", port, method: "POST", path: sent.url, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    if (sent.chunked === true) {
      const half = Math.floor(sent.body.length / 2);
      req.write(sent.body.subarray(0, half));
      req.end(sent.body.subarray(half));
    } else {
      req.end(sent.body);
    }
  });
}

async function get(port: number, url: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}${url}`);
  return res.text();
}

async function injected(app: FastifyInstance, sent: Sent): Promise<Answer> {
  const res = await app.inject({ method: "POST", url: sent.url, headers: sent.headers, payload: sent.body });
  return { status: res.statusCode, headers: res.headers, body: res.rawPayload };
}

function json(body: unknown, contentType = "application/json"): { headers: Record<string, string>; body: Buffer } {
  return { headers: { "content-type": contentType }, body: Buffer.from(typeof body === "string" ? body : JSON.stringify(body), "utf8") };
}

/** A JSON body with anything that embeds a request id made comparable. */
function comparableJson(body: Buffer): unknown {
  return JSON.parse(body.toString("utf8").replace(/request id [^)"]+/g, "request id <id>")) as unknown;
}

function metric(text: string, name: string, labels: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? undefined : Number(line.split(" ").pop());
}

function portOf(app: FastifyInstance): number {
  return (app.server.address() as AddressInfo).port;
}

/** Expects a socket answer and a Fastify answer to be the same to a client (soft: every difference is reported). */
function expectSameAnswer(name: string, fast: Answer, slow: Answer): void {
  const label = `${name}: socket ${fast.status} ${fast.body.toString("utf8").slice(0, 300)} / inject ${slow.status} ${slow.body.toString("utf8").slice(0, 300)}`;
  expect.soft(fast.status, label).toBe(slow.status);
  expect.soft(fast.headers["content-type"], label).toBe(slow.headers["content-type"]);
  expect.soft(fast.headers["mlship-model-version"], label).toBe(slow.headers["mlship-model-version"]);
  expect.soft(fast.headers["mlship-cache"] !== undefined, label).toBe(slow.headers["mlship-cache"] !== undefined);
  expect.soft(fast.headers["retry-after"], label).toBe(slow.headers["retry-after"]);
  expect.soft(fast.headers["inference-header-content-length"], label).toBe(slow.headers["inference-header-content-length"]);
  expect.soft(fast.headers["x-request-id"], label).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  expect.soft(slow.headers["x-request-id"], label).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  if (String(slow.headers["content-type"]).startsWith("application/json")) {
    expect.soft(comparableJson(fast.body), label).toEqual(comparableJson(slow.body));
  } else {
    expect.soft(fast.body.equals(slow.body), label).toBe(true);
  }
}

describe("the HTTP inference fast path answers as the Fastify routes do", () => {
  let w: World;
  let app: FastifyInstance;
  let port: number;
  let e: Expected;
  let digitsImages: string[];
  /** URLs that reached Fastify's hooks (the fast path never does). */
  const reachedFastify: string[] = [];

  beforeAll(async () => {
    w = await createWorld({ cache: new MemoryPredictionCache() });
    await w.register("bc", "breast_cancer_mlp", { columns: true, postprocess: [{ type: "labels", output: "label", labels: BC_LABELS, as: "class" }] });
    await w.register("diabetes", "diabetes_linear", { columns: true, labelColumn: "target" });
    await w.register("digits", "digits_cnn", { image: DIGITS_IMAGE_STEP });
    await w.registry.setAlias("bc", "production", 1);
    e = await readExpected("breast_cancer_mlp");
    const labels = JSON.parse(await readFile(path.join(FIXTURES, "digits_cnn/images/labels.json"), "utf8")) as { images: Array<{ file: string }> };
    digitsImages = await Promise.all(labels.images.slice(0, 3).map(async (i) => (await readFile(path.join(FIXTURES, "digits_cnn", i.file))).toString("base64")));
    app = buildServer({ scoring: w.scoring, registry: w.registry, defaultModel: "bc@production", logger: false });
    app.addHook("onRequest", (request, _reply, done) => {
      reachedFastify.push(request.url);
      done();
    });
    await app.listen({ host: "127.0.0.1", port: 0 });
    port = portOf(app);
    for (const m of ["bc", "diabetes", "digits"]) await waitFor(async () => (await app.inject(`/v2/models/${m}/ready`)).statusCode === 200, 20_000);
  });

  afterAll(async () => {
    await app?.close();
    await w?.close();
  });

  const bcV2 = (rows: number[][], extra: Json = {}): Json => ({
    inputs: [{ name: "input", shape: [rows.length, 30], datatype: "FP32", data: rows.flat() }],
    ...extra,
  });

  it("gives the same status, body and headers for a table of requests, and only the plain JSON ones skip Fastify", async () => {
    const { columns, text: csv } = await csvBody("breast_cancer_mlp", 3);
    const rows = e.inputs.slice(0, 3);
    const cases: Array<{ name: string; sent: Sent; fast: boolean }> = [
      { name: "v2 plain", sent: { url: "/v2/models/bc/infer", ...json(bcV2(rows)) }, fast: true },
      { name: "v2 with id", sent: { url: "/v2/models/bc/infer", ...json(bcV2(rows.slice(0, 1), { id: "client-7" })) }, fast: true },
      { name: "v2 outputs filter", sent: { url: "/v2/models/bc/infer", ...json(bcV2(rows, { outputs: [{ name: "class" }, { name: "label" }] })) }, fast: true },
      { name: "v2 versions/1", sent: { url: "/v2/models/bc/versions/1/infer", ...json(bcV2(rows.slice(1, 2))) }, fast: true },
      { name: "v2 alias ref", sent: { url: "/v2/models/bc@production/infer", ...json(bcV2(rows.slice(2, 3))) }, fast: true },
      { name: "v2 charset utf-8", sent: { url: "/v2/models/bc/infer", ...json(bcV2(rows.slice(0, 2)), "application/json; charset=UTF-8") }, fast: true },
      { name: "v2 diabetes", sent: { url: "/v2/models/diabetes/infer", ...json({ inputs: [{ name: "input", shape: [1, 10], datatype: "FP32", data: DIABETES_ROW }] }) }, fast: true },
      {
        name: "v2 digits BYTES",
        sent: { url: "/v2/models/digits/infer", ...json({ inputs: [{ name: "image", shape: [3], datatype: "BYTES", data: digitsImages }], outputs: [{ name: "label" }] }) },
        fast: true,
      },
      { name: "v2 binary_data_output", sent: { url: "/v2/models/bc/infer", ...json(bcV2(rows, { parameters: { binary_data_output: true } })) }, fast: true },
      {
        name: "v2 one output binary",
        sent: { url: "/v2/models/bc/infer", ...json(bcV2(rows, { outputs: [{ name: "probabilities", parameters: { binary_data: true } }, { name: "class" }] })) },
        fast: true,
      },
      { name: "mlflow /invocations dataframe_split", sent: { url: "/invocations", ...json({ dataframe_split: { columns, data: rows } }) }, fast: true },
      {
        name: "mlflow dataframe_records",
        sent: { url: "/v1/models/diabetes/invocations", ...json({ dataframe_records: [Object.fromEntries(DIABETES_ROW.map((v, i) => [["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"][i], v]))] }) },
        fast: true,
      },
      { name: "mlflow instances", sent: { url: "/v1/models/bc/invocations", ...json({ instances: rows }) }, fast: true },
      { name: "mlflow inputs via alias", sent: { url: "/v1/models/bc@production/invocations", ...json({ inputs: rows, params: { ignored: 1 } }) }, fast: true },
      // Errors.
      { name: "malformed JSON", sent: { url: "/v2/models/bc/infer", ...json("{") }, fast: true },
      { name: "malformed JSON, mlflow", sent: { url: "/v1/models/bc/invocations", ...json('{"instances": [1,') }, fast: true },
      { name: "empty body", sent: { url: "/v1/models/bc/invocations", ...json("") }, fast: true },
      { name: "malformed JSON to an unknown model", sent: { url: "/v2/models/nope/infer", ...json("{") }, fast: true },
      { name: "unknown model v2", sent: { url: "/v2/models/nope/infer", ...json(bcV2(rows)) }, fast: true },
      { name: "unknown model mlflow", sent: { url: "/v1/models/nope/invocations", ...json({ instances: rows }) }, fast: true },
      { name: "bad shape", sent: { url: "/v2/models/bc/infer", ...json({ inputs: [{ name: "input", shape: [1, 29], datatype: "FP32", data: (rows[0] as number[]).slice(0, 29) }] }) }, fast: true },
      { name: "missing column", sent: { url: "/invocations", ...json({ dataframe_split: { columns: columns.slice(1), data: rows.map((r) => r.slice(1)) } }) }, fast: true },
      { name: "wrong dtype", sent: { url: "/v2/models/bc/infer", ...json({ inputs: [{ name: "input", shape: [1, 30], datatype: "INT64", data: (rows[0] as number[]).map(Math.round) }] }) }, fast: true },
      { name: "bad version number", sent: { url: "/v2/models/bc/versions/x/infer", ...json(bcV2(rows)) }, fast: true },
      { name: "alias and version", sent: { url: "/v2/models/bc@production/versions/1/infer", ...json(bcV2(rows)) }, fast: true },
      { name: "missing version", sent: { url: "/v2/models/bc/versions/9/infer", ...json(bcV2(rows)) }, fast: true },
      // Left to Fastify.
      { name: "charset=latin1", sent: { url: "/v2/models/bc/infer", ...json(bcV2(rows), "application/json; charset=latin1") }, fast: false },
      { name: "unknown content type", sent: { url: "/v1/models/bc/invocations", ...json("x", "text/plain") }, fast: false },
      { name: "CSV", sent: { url: "/v1/models/bc/invocations", headers: { "content-type": "text/csv" }, body: Buffer.from(csv) }, fast: false },
      { name: "query string", sent: { url: "/v2/models/bc/infer?trace=1", ...json(bcV2(rows)) }, fast: false },
      { name: "escaped name", sent: { url: "/v2/models/bc%40production/infer", ...json(bcV2(rows)) }, fast: false },
      { name: "chunked", sent: { url: "/v1/models/bc/invocations", ...json({ instances: rows }), chunked: true }, fast: false },
    ];
    for (const c of cases) {
      const before = reachedFastify.length;
      const fast = await post(port, c.sent);
      expect.soft(reachedFastify.length - before, `${c.name} reached Fastify`).toBe(c.fast ? 0 : 1);
      const slow = await injected(app, c.sent);
      expectSameAnswer(c.name, fast, slow);
    }
    // The table covers successes and failures on both paths.
    const statuses = new Set<number>();
    for (const c of cases) statuses.add((await injected(app, c.sent)).status);
    expect([...statuses].sort()).toEqual([200, 400, 404, 415]);
  });

  it("answers V2 binary outputs with the same header length and bytes", async () => {
    const sent = { url: "/v2/models/bc/infer", ...json(bcV2(e.inputs.slice(5, 9), { parameters: { binary_data_output: true } })) };
    const fast = await post(port, sent);
    const slow = await injected(app, sent);
    expect(fast.status).toBe(200);
    expect(fast.headers["content-type"]).toBe("application/octet-stream");
    const headerLength = Number(fast.headers["inference-header-content-length"]);
    expect(headerLength).toBe(Number(slow.headers["inference-header-content-length"]));
    expect(fast.body.equals(slow.body)).toBe(true);
    const header = JSON.parse(fast.body.subarray(0, headerLength).toString("utf8")) as { outputs: Array<{ name: string; parameters?: { binary_data_size?: number } }> };
    const probabilities = header.outputs.find((o) => o.name === "probabilities");
    expect(probabilities?.parameters?.binary_data_size).toBe(4 * 2 * 4);
    const floats = new Float32Array(fast.body.buffer.slice(fast.body.byteOffset + headerLength, fast.body.byteOffset + headerLength + 32));
    const want = (e.outputs.probabilities as number[][]).slice(5, 9).flat();
    for (let i = 0; i < want.length; i++) expect(Math.abs((floats[i] as number) - (want[i] as number))).toBeLessThanOrEqual(1e-5);
  });
});

describe("exact-body memo behind the fast path", () => {
  let w: World;
  let app: FastifyInstance;
  let port: number;
  let e: Expected;
  const reachedFastify: string[] = [];
  const runs = (): number => w.runtime.stats().workers.reduce((n, x) => n + x.runsCompleted, 0);

  beforeAll(async () => {
    w = await createWorld({ cache: new MemoryPredictionCache(), refreshMs: 100 });
    await w.register("bc", "breast_cancer_mlp", { columns: true, postprocess: [{ type: "labels", output: "label", labels: BC_LABELS, as: "class" }] });
    // Two versions of one model: only the version in the answer tells which one served it.
    await w.register("twin", "breast_cancer_mlp", { columns: true });
    await w.register("twin", "breast_cancer_mlp", { columns: true });
    await w.registry.setAlias("twin", "production", 1);
    e = await readExpected("breast_cancer_mlp");
    app = buildServer({ scoring: w.scoring, registry: w.registry, logger: false });
    app.addHook("onRequest", (request, _reply, done) => {
      reachedFastify.push(request.url);
      done();
    });
    await app.listen({ host: "127.0.0.1", port: 0 });
    port = portOf(app);
    for (const ref of ["bc", "twin@1", "twin@2"]) {
      const [name, version] = ref.split("@");
      const url = version === undefined ? `/v2/models/${name}/ready` : `/v2/models/${name}/versions/${version}/ready`;
      await waitFor(async () => (await app.inject(url)).statusCode === 200, 20_000);
    }
  });

  afterAll(async () => {
    await app?.close();
    await w?.close();
  });

  const v2Body = (from: number, n: number): Sent["body"] =>
    Buffer.from(JSON.stringify({ inputs: [{ name: "input", shape: [n, 30], datatype: "FP32", data: e.inputs.slice(from, from + n).flat() }] }));

  it("answers an identical body miss, hit, hit with byte-identical bodies, on the fast path", async () => {
    for (const [url, body] of [
      ["/v2/models/bc/infer", v2Body(0, 4)],
      ["/v1/models/bc/invocations", Buffer.from(JSON.stringify({ instances: e.inputs.slice(10, 13) }))],
    ] as const) {
      const before = reachedFastify.length;
      const runsBefore = runs();
      const answers: Answer[] = [];
      for (let i = 0; i < 3; i++) answers.push(await post(port, { url, headers: { "content-type": "application/json" }, body }));
      expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
      expect(answers.map((a) => a.headers["mlship-cache"])).toEqual(["miss", "hit", "hit"]);
      expect(answers.map((a) => a.headers["mlship-model-version"])).toEqual(["bc@1", "bc@1", "bc@1"]);
      expect(answers[1]?.body.equals(answers[0]?.body as Buffer)).toBe(true);
      expect(answers[2]?.body.equals(answers[0]?.body as Buffer)).toBe(true);
      expect(runs()).toBe(runsBefore + 1);
      expect(reachedFastify.length).toBe(before);
      // A fourth time through Fastify: the same answer.
      const slow = await injected(app, { url, headers: { "content-type": "application/json" }, body });
      expect(slow.headers["mlship-cache"]).toBe("hit");
      expect(comparableJson(slow.body)).toEqual(comparableJson(answers[0]?.body as Buffer));
    }
    // The memoised answer is still the right one.
    const third = JSON.parse((await post(port, { url: "/v2/models/bc/infer", headers: { "content-type": "application/json" }, body: v2Body(0, 4) })).body.toString()) as {
      outputs: Array<{ name: string; data: unknown[] }>;
    };
    expect(third.outputs.find((o) => o.name === "label")?.data).toEqual((e.outputs.label as number[]).slice(0, 4));
    expect(third.outputs.find((o) => o.name === "class")?.data).toEqual((e.outputs.label as number[]).slice(0, 4).map((l) => BC_LABELS[l]));
  });

  it("computes the same body again once the version's cache is turned off by PUT settings, and memoises again when back on", async () => {
    const sent: Sent = { url: "/v2/models/bc/infer", headers: { "content-type": "application/json" }, body: v2Body(20, 2) };
    const first: Answer[] = [];
    for (let i = 0; i < 3; i++) first.push(await post(port, sent));
    expect(first.map((a) => a.headers["mlship-cache"])).toEqual(["miss", "hit", "hit"]);

    const off = await app.inject({ method: "PUT", url: "/api/v1/models/bc/versions/1/settings", payload: { cache: { enabled: false } } });
    expect(off.statusCode, off.body).toBe(200);
    const before = runs();
    for (let i = 0; i < 2; i++) {
      const again = await post(port, sent);
      expect(again.status).toBe(200);
      expect(again.headers["mlship-cache"]).toBeUndefined();
      expect(comparableJson(again.body)).toEqual(comparableJson(first[0]?.body as Buffer));
    }
    expect(runs()).toBe(before + 2);

    const on = await app.inject({ method: "PUT", url: "/api/v1/models/bc/versions/1/settings", payload: {} });
    expect(on.statusCode).toBe(200);
    const back = await post(port, sent);
    expect(back.headers["mlship-cache"]).toBe("hit");
    expect(back.body.equals(first[0]?.body as Buffer)).toBe(true);
    expect(runs()).toBe(before + 2);
  });

  it("answers through an alias from the version it points to now, never from the old version's memo entry", async () => {
    const v2: Sent = { url: "/v2/models/twin@production/infer", headers: { "content-type": "application/json" }, body: v2Body(30, 3) };
    const mlflow: Sent = { url: "/v1/models/twin@production/invocations", headers: { "content-type": "application/json" }, body: Buffer.from(JSON.stringify({ instances: e.inputs.slice(34, 37) })) };
    for (const sent of [v2, mlflow]) {
      const old: Answer[] = [];
      for (let i = 0; i < 3; i++) old.push(await post(port, sent));
      expect(old.map((a) => a.headers["mlship-cache"])).toEqual(["miss", "hit", "hit"]);
      expect(old.map((a) => a.headers["mlship-model-version"])).toEqual(["twin@1", "twin@1", "twin@1"]);
    }
    // Moved from another registry connection, as the CLI would: the server sees it within its refresh interval.
    const cli = await w.openSecondRegistry();
    await cli.setAlias("twin", "production", 2, { by: "ops", reason: "promote" });
    const moved = await post(port, v2);
    const answers = [moved];
    if (moved.headers["mlship-model-version"] === "twin@1") {
      await waitFor(async () => (await post(port, v2)).headers["mlship-model-version"] === "twin@2", 10_000, 25);
    }
    for (let i = 0; i < 3; i++) answers.push(await post(port, v2));
    for (const a of answers.slice(1)) {
      expect(a.status).toBe(200);
      expect(a.headers["mlship-model-version"]).toBe("twin@2");
      expect((JSON.parse(a.body.toString()) as Json).model_version).toBe("2");
    }
    expect(answers.at(-1)?.headers["mlship-cache"]).toBe("hit");
    const viaMlflow: Answer[] = [];
    for (let i = 0; i < 3; i++) viaMlflow.push(await post(port, mlflow));
    expect(viaMlflow.map((a) => a.headers["mlship-model-version"])).toEqual(["twin@2", "twin@2", "twin@2"]);
    expect(viaMlflow.map((a) => a.headers["mlship-cache"])).toEqual(["miss", "hit", "hit"]);
    // And back: version 1's entries serve version 1 again.
    await cli.setAlias("twin", "production", 1, { by: "ops", reason: "rollback" });
    await waitFor(async () => (await post(port, v2)).headers["mlship-model-version"] === "twin@1", 10_000, 25);
    const rolled = await post(port, v2);
    expect(rolled.headers["mlship-model-version"]).toBe("twin@1");
    expect((JSON.parse(rolled.body.toString()) as Json).model_version).toBe("1");
  });

  it("counts fast-path requests in /metrics: requests by status, errors by code, rows", async () => {
    // A server of its own, so that its series hold only what this test sends.
    const server = buildServer({ scoring: w.scoring, registry: w.registry, logger: false });
    const hooked: string[] = [];
    server.addHook("onRequest", (request, _reply, done) => {
      hooked.push(request.url);
      done();
    });
    await server.listen({ host: "127.0.0.1", port: 0 });
    try {
      const p = portOf(server);
      const send = (url: string, body: unknown): Promise<Answer> => post(p, { url, ...json(body) });
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) statuses.push((await send("/v2/models/bc/infer", JSON.parse(v2Body(40, 2).toString()) as unknown)).status);
      for (let i = 0; i < 2; i++) statuses.push((await send("/v1/models/bc/invocations", { instances: e.inputs.slice(42, 45) })).status);
      statuses.push((await send("/v2/models/bc/infer", { inputs: [{ name: "input", shape: [1, 29], datatype: "FP32", data: new Array(29).fill(1) }] })).status);
      statuses.push((await send("/v1/models/nope/invocations", { instances: [[1]] })).status);
      statuses.push((await send("/v2/models/bc/versions/x/infer", JSON.parse(v2Body(40, 2).toString()) as unknown)).status);
      expect(statuses).toEqual([200, 200, 200, 200, 200, 400, 404, 400]);
      expect(hooked).toEqual([]);

      const text = await get(p, "/metrics");
      expect(metric(text, "mlship_requests_total", 'model="bc",version="1",protocol="v2",status="200"')).toBe(3);
      expect(metric(text, "mlship_requests_total", 'model="bc",version="1",protocol="mlflow",status="200"')).toBe(2);
      expect(metric(text, "mlship_requests_total", 'model="bc",version="1",protocol="v2",status="400"')).toBe(1);
      expect(metric(text, "mlship_requests_total", 'model="",version="",protocol="mlflow",status="404"')).toBe(1);
      expect(metric(text, "mlship_requests_total", 'model="",version="",protocol="v2",status="400"')).toBe(1);
      const total = text
        .split("\n")
        .filter((l) => l.startsWith("mlship_requests_total{"))
        .reduce((n, l) => n + Number(l.split(" ").pop()), 0);
      expect(total).toBe(8);
      expect(metric(text, "mlship_request_errors_total", 'model="bc",version="1",code="MLSHIP_ERR_INPUT_SHAPE"')).toBe(1);
      expect(metric(text, "mlship_request_errors_total", 'model="",version="",code="MLSHIP_ERR_MODEL_NOT_FOUND"')).toBe(1);
      expect(metric(text, "mlship_request_errors_total", 'model="",version="",code="MLSHIP_ERR_MODEL_REF_INVALID"')).toBe(1);
      expect(metric(text, "mlship_rows_total", 'model="bc",version="1"')).toBe(3 * 2 + 2 * 3);
      expect(metric(text, "mlship_request_duration_seconds_count", 'model="bc",version="1",protocol="v2"')).toBe(4);
      expect(metric(text, "mlship_request_duration_seconds_count", 'model="bc",version="1",protocol="mlflow"')).toBe(2);

      // The same requests through Fastify add to the same series.
      const slow = await server.inject({ method: "POST", url: "/v2/models/bc/infer", headers: { "content-type": "application/json" }, payload: v2Body(40, 2) });
      expect(slow.statusCode).toBe(200);
      const after = (await server.inject("/metrics")).body;
      expect(metric(after, "mlship_requests_total", 'model="bc",version="1",protocol="v2",status="200"')).toBe(4);
    } finally {
      await server.close();
    }
  });
});

describe("fast path answers while the registry is gone", () => {
  it("gives the same 503 with Retry-After and request id as Fastify", async () => {
    const local = await createWorld({ workers: 1 });
    await local.register("diabetes", "diabetes_linear");
    const server = buildServer({ scoring: local.scoring, registry: local.registry, logger: false });
    await server.listen({ host: "127.0.0.1", port: 0 });
    try {
      const p = portOf(server);
      const ok = await post(p, { url: "/v1/models/diabetes/invocations", ...json({ instances: [DIABETES_ROW] }) });
      expect(ok.status).toBe(200);
      await local.registry.close();
      // What needs the store answers 503 + Retry-After; its body names the request id (normalised for comparison).
      for (const sent of [
        { url: "/v1/models/other/invocations", ...json({ instances: [DIABETES_ROW] }) },
        { url: "/v2/models/other/infer", ...json({ inputs: [{ name: "input", shape: [1, 10], datatype: "FP32", data: DIABETES_ROW }] }) },
      ]) {
        const fast = await post(p, sent);
        const slow = await injected(server, sent);
        expect(fast.status, fast.body.toString()).toBe(503);
        expect(fast.headers["retry-after"]).toBe("1");
        expect(fast.body.toString()).toContain(`request id ${String(fast.headers["x-request-id"])}`);
        expectSameAnswer(sent.url, fast, slow);
      }
    } finally {
      await server.close();
      await local.scoring.close();
      await local.runtime.close();
      await rm(local.home, { recursive: true, force: true });
    }
  });
});
