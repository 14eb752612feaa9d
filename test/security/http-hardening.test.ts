// The HTTP surface against hostile requests, on a server wired as `mlship serve` wires it and listening on a real
// port (so the inference fast path answers too): CORS is off unless origins are listed, and then only for them;
// deeply nested JSON is a 400 on every JSON route (never a stack overflow or a 5xx); `__proto__` and
// `constructor.prototype` keys pollute nothing and crash nothing; oversized bodies are a 413.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, startFeedbackLoop, type FeedbackLoop, type Mlship } from "../../src/app.js";
import { defaultConfig, loadConfigWithSources } from "../../src/config/index.js";
import { feedbackRoutes } from "../../src/feedback/index.js";
import { rolloutRoutes } from "../../src/rollout/index.js";
import { buildServer } from "../../src/serve/index.js";

const EXAMPLE = fileURLToPath(new URL("../../examples/models/breast-cancer", import.meta.url));
const MODEL = "breast-cancer";
const ADMIN = "hardening-admin-token";
const ALLOWED = "https://app.example.com";

const home = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-hardening-"));
let app: Mlship;
let loop: FeedbackLoop;
let row: number[];
const servers: ReturnType<typeof buildServer>[] = [];

async function wired(options: { corsOrigins?: string[]; bodyLimitBytes?: number } = {}): Promise<{ server: ReturnType<typeof buildServer>; base: string }> {
  const server = buildServer({ scoring: app.scoring, registry: app.registry, logger: false, adminToken: ADMIN, defaultModel: `${MODEL}@production`, ...options });
  await server.register(feedbackRoutes, { feedback: loop.feedback, registry: app.registry });
  await server.register(rolloutRoutes, { rollouts: loop.rollouts, registry: app.registry, promote: loop.promote });
  await server.listen({ host: "127.0.0.1", port: 0 });
  servers.push(server);
  return { server, base: `http://127.0.0.1:${(server.server.address() as { port: number }).port}` };
}

let plain: Awaited<ReturnType<typeof wired>>;
let withCors: Awaited<ReturnType<typeof wired>>;

beforeAll(async () => {
  app = await createMlship(defaultConfig({ home, user: "tester", "runtime.workers": 1, "log.level": "silent" }));
  await registerModel(app, EXAMPLE, { name: MODEL, alias: "production" });
  await registerModel(app, EXAMPLE, { name: MODEL });
  loop = await startFeedbackLoop(app, { serverUrl: null });
  plain = await wired();
  withCors = await wired({ corsOrigins: [ALLOWED, "http://localhost:3000"] });
  const example = JSON.parse(fs.readFileSync(path.join(EXAMPLE, "input_example.json"), "utf8")) as { dataframe_split: { data: number[][] } };
  row = example.dataframe_split.data[0] as number[];
}, 120_000);

afterAll(async () => {
  for (const server of servers) await server.close();
  await loop?.close();
  await app?.close();
  fs.rmSync(home, { recursive: true, force: true });
});

const AUTH = { authorization: `Bearer ${ADMIN}` };

/** Every JSON route a client can reach, with the headers it needs to get past the token checks. */
function jsonRoutes(): { method: "POST" | "PUT"; url: string; headers?: Record<string, string>; wrap: (inner: string) => string }[] {
  return [
    { method: "POST", url: `/v2/models/${MODEL}/infer`, wrap: (inner) => `{"inputs":[{"name":"input","shape":[1,30],"datatype":"FP32","data":${inner}}]}` },
    { method: "POST", url: "/invocations", wrap: (inner) => `{"inputs":${inner}}` },
    { method: "POST", url: `/v1/models/${MODEL}/invocations`, wrap: (inner) => `{"instances":${inner}}` },
    { method: "POST", url: `/v1/models/${MODEL}/invocations`, wrap: (inner) => `{"dataframe_split":{"columns":["a"],"data":${inner}}}` },
    { method: "POST", url: `/v1/models/${MODEL}/invocations`, wrap: (inner) => `{"dataframe_records":[{"a":${inner}}]}` },
    { method: "POST", url: "/v1/feedback", wrap: (inner) => `{"request_id":"r-1","actual":${inner}}` },
    { method: "POST", url: "/v1/feedback", wrap: (inner) => `{"outcomes":${inner}}` },
    { method: "PUT", url: `/api/v1/models/${MODEL}/versions/1/settings`, headers: AUTH, wrap: (inner) => `{"max_queue":${inner}}` },
    { method: "POST", url: "/api/v1/rollouts", headers: AUTH, wrap: (inner) => `{"model":"${MODEL}","challenger":${inner}}` },
  ];
}

async function post(base: string, method: string, url: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  const response = await fetch(`${base}${url}`, { method, headers: { "content-type": "application/json", ...headers }, body });
  return { status: response.status, text: await response.text() };
}

describe("CORS", () => {
  const preflight = (base: string, origin: string, url = `/v2/models/${MODEL}/infer`) =>
    fetch(`${base}${url}`, {
      method: "OPTIONS",
      headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type, authorization" },
    });

  it("is off by default: no CORS header on a preflight or a request from another origin", async () => {
    const pre = await preflight(plain.base, "https://evil.example");
    expect(pre.headers.get("access-control-allow-origin")).toBeNull();
    expect(pre.headers.get("access-control-allow-methods")).toBeNull();
    expect(pre.status).toBe(404);
    const cross = await fetch(`${plain.base}/v2/models/${MODEL}/infer`, {
      method: "POST",
      headers: { origin: "https://evil.example", "content-type": "application/json" },
      body: JSON.stringify({ inputs: [{ name: "input", shape: [1, 30], datatype: "FP32", data: row }] }),
    });
    expect(cross.status).toBe(200);
    expect(cross.headers.get("access-control-allow-origin")).toBeNull();
    for (const url of ["/v2/health/ready", "/api/v1/rollouts", "/metrics"]) {
      expect((await fetch(`${plain.base}${url}`, { headers: { origin: "https://evil.example" } })).headers.get("access-control-allow-origin"), url).toBeNull();
    }
    expect(loadConfigWithSources({ env: {} }).config.server.corsOrigins).toBeNull();
  });

  it("with origins listed, answers their preflights and requests (fast path included), never with credentials, and nobody else's", async () => {
    const pre = await preflight(withCors.base, ALLOWED);
    expect(pre.status).toBe(204);
    expect(pre.headers.get("access-control-allow-origin")).toBe(ALLOWED);
    expect(pre.headers.get("access-control-allow-methods")).toContain("POST");
    expect(pre.headers.get("access-control-allow-headers")).toContain("authorization");
    expect(pre.headers.get("access-control-allow-credentials")).toBeNull();
    expect(pre.headers.get("vary")).toContain("Origin");
    const body = JSON.stringify({ inputs: [{ name: "input", shape: [1, 30], datatype: "FP32", data: row }] });
    const real = await fetch(`${withCors.base}/v2/models/${MODEL}/infer`, { method: "POST", headers: { origin: ALLOWED, "content-type": "application/json" }, body });
    expect(real.status).toBe(200);
    expect(real.headers.get("access-control-allow-origin")).toBe(ALLOWED);
    expect(real.headers.get("access-control-expose-headers")).toContain("mlship-model-version");
    expect(real.headers.get("access-control-allow-credentials")).toBeNull();
    // A refused action still carries the header, so the page can read why.
    const refused = await fetch(`${withCors.base}/api/v1/rollouts`, { method: "POST", headers: { origin: "http://localhost:3000", "content-type": "application/json" }, body: "{}" });
    expect(refused.status).toBe(401);
    expect(refused.headers.get("access-control-allow-origin")).toBe("http://localhost:3000");

    for (const origin of ["https://evil.example", `${ALLOWED}.evil.example`, "http://app.example.com", "null", `${ALLOWED}:443`]) {
      const other = await preflight(withCors.base, origin);
      expect(other.headers.get("access-control-allow-origin"), origin).toBeNull();
      const answer = await fetch(`${withCors.base}/v2/models/${MODEL}/infer`, { method: "POST", headers: { origin, "content-type": "application/json" }, body });
      expect(answer.status).toBe(200);
      expect(answer.headers.get("access-control-allow-origin"), origin).toBeNull();
    }
    // Without an Origin header (curl, servers), nothing changes.
    expect((await fetch(`${withCors.base}/v2/health/live`)).headers.get("access-control-allow-origin")).toBeNull();
  });

  it("answers any origin with * when * is listed, still without credentials", async () => {
    const any = await wired({ corsOrigins: ["*"] });
    const pre = await preflight(any.base, "https://whoever.example");
    expect(pre.status).toBe(204);
    expect(pre.headers.get("access-control-allow-origin")).toBe("*");
    expect(pre.headers.get("access-control-allow-credentials")).toBeNull();
  });

  it("reads MLSHIP_CORS_ORIGINS as exact origins and refuses anything else", () => {
    const loaded = loadConfigWithSources({ env: { MLSHIP_CORS_ORIGINS: ` ${ALLOWED} , http://localhost:3000 ` } });
    expect(loaded.config.server.corsOrigins).toBe(`${ALLOWED},http://localhost:3000`);
    expect(loadConfigWithSources({ env: { MLSHIP_CORS_ORIGINS: "*" } }).config.server.corsOrigins).toBe("*");
    for (const bad of [`${ALLOWED}/`, `${ALLOWED}/path`, "app.example.com", "https://*.example.com", "ftp://x.example", ",", "javascript:alert(1)"]) {
      expect(() => loadConfigWithSources({ env: { MLSHIP_CORS_ORIGINS: bad } }), bad).toThrow(/server.corsOrigins/);
    }
  });
});

describe("deeply nested JSON", { timeout: 60_000 }, () => {
  const DEPTH = 100_000;
  const deep = "[".repeat(DEPTH) + "]".repeat(DEPTH);
  const deepObject = '{"a":'.repeat(DEPTH) + "1" + "}".repeat(DEPTH);

  it("is a 400 on every JSON route, over the fast path and Fastify's pipeline, and the server keeps answering", async () => {
    for (const route of jsonRoutes()) {
      for (const inner of [deep, deepObject]) {
        const body = route.wrap(inner);
        const what = `${route.method} ${route.url} ${body.slice(0, 40)}`;
        const answer = await post(plain.base, route.method, route.url, body, route.headers);
        expect(answer.status, `${what}: ${answer.text.slice(0, 200)}`).toBe(400);
        const injected = await plain.server.inject({ method: route.method, url: route.url, headers: { "content-type": "application/json", ...route.headers }, payload: body });
        expect(injected.statusCode, `${what} (inject): ${injected.body.slice(0, 200)}`).toBe(400);
      }
    }
    const ok = await post(plain.base, "POST", `/v2/models/${MODEL}/infer`, JSON.stringify({ inputs: [{ name: "input", shape: [1, 30], datatype: "FP32", data: row }] }));
    expect(ok.status).toBe(200);
  });
});

describe("prototype pollution", { timeout: 60_000 }, () => {
  const HOSTILE = [
    '{"__proto__":{"polluted":1}}',
    '{"constructor":{"prototype":{"polluted":1}}}',
  ];

  it("neither pollutes Object.prototype nor crashes on any JSON route", async () => {
    const bodies = (route: ReturnType<typeof jsonRoutes>[number]): string[] => [
      ...HOSTILE,
      route.wrap('{"__proto__":{"polluted":1}}'),
      route.wrap('[{"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":1}}}]'),
    ];
    for (const route of jsonRoutes()) {
      for (const body of bodies(route)) {
        const what = `${route.method} ${route.url} ${body}`;
        const answer = await post(plain.base, route.method, route.url, body, route.headers);
        expect(answer.status, `${what}: ${answer.text.slice(0, 200)}`).toBeGreaterThanOrEqual(400);
        expect(answer.status, `${what}: ${answer.text.slice(0, 200)}`).toBeLessThan(500);
        const injected = await plain.server.inject({ method: route.method, url: route.url, headers: { "content-type": "application/json", ...route.headers }, payload: body });
        expect(injected.statusCode, `${what} (inject): ${injected.body.slice(0, 200)}`).toBeLessThan(500);
        expect(({} as Record<string, unknown>).polluted, what).toBeUndefined();
        expect(Object.prototype).not.toHaveProperty("polluted");
      }
    }
    // The settings stored for the version hold no inherited key either.
    expect(await app.registry.getVersionSettings(MODEL, 1)).toEqual({});
  });

  it("keeps a __proto__ column in dataframe_records an ordinary (missing) column, not the prototype", async () => {
    const answer = await post(plain.base, "POST", `/v1/models/${MODEL}/invocations`, `{"dataframe_records":[{"__proto__":{"mean radius":1}}]}`);
    expect(answer.status).toBe(400);
    expect(answer.text).toContain("mean radius");
  });
});

describe("tensor sizes", () => {
  it("refuses a declared shape far beyond the data sent (no allocation from the shape alone): 400 naming the input", async () => {
    for (const shape of [[1_000_000_000, 30], [2 ** 31, 2 ** 31], [1, 30, 1e15]]) {
      const body = JSON.stringify({ inputs: [{ name: "input", shape, datatype: "FP32", data: row }] });
      const answer = await post(plain.base, "POST", `/v2/models/${MODEL}/infer`, body);
      expect(answer.status, `${JSON.stringify(shape)}: ${answer.text}`).toBe(400);
      expect(answer.text).toMatch(/inputs\[0\]/);
    }
    const header = JSON.stringify({ inputs: [{ name: "input", shape: [1_000_000_000, 30], datatype: "FP32", parameters: { binary_data_size: 120 } }] });
    const binary = await fetch(`${plain.base}/v2/models/${MODEL}/infer`, {
      method: "POST",
      headers: { "content-type": "application/octet-stream", "inference-header-content-length": String(Buffer.byteLength(header)) },
      body: Buffer.concat([Buffer.from(header), Buffer.from(new Float32Array(row).buffer)]),
    });
    expect(binary.status).toBe(400);
  });
});

describe("body size", () => {
  it("is a 413 naming the limit on inference, feedback and management routes", async () => {
    const small = await wired({ bodyLimitBytes: 1024 });
    const big = JSON.stringify({ inputs: [{ name: "input", shape: [1, 30], datatype: "FP32", data: Array.from({ length: 400 }, () => 1.5) }] });
    for (const [method, url, headers] of [
      ["POST", `/v2/models/${MODEL}/infer`, {}],
      ["POST", "/invocations", {}],
      ["PUT", `/api/v1/models/${MODEL}/versions/1/settings`, AUTH],
    ] as const) {
      const answer = await post(small.base, method, url, big, headers);
      expect(answer.status, url).toBe(413);
      expect(answer.text, url).toMatch(/MLSHIP_ERR_INPUT_TOO_LARGE/);
    }
  });
});
