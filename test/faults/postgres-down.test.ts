// PostgreSQL down: a server whose registry and prediction log live in their own PostgreSQL database, reached through
// a TCP relay the test cuts (the shared PostgreSQL keeps running). While it is cut the loaded model keeps answering
// (references already resolved), the prediction log spills to disk; once the relay is back the spilled rows are
// replayed into PostgreSQL, each exactly once. (test/feedback/log.test.ts covers the spill/replay mechanics on a
// store that fails in-process; this is the whole server on a real, unreachable database.)
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance } from "fastify";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, startPredictionLog, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { silentLogger } from "../../src/core/index.js";
import type { PredictionLogger } from "../../src/feedback/index.js";
import { buildServer } from "../../src/serve/index.js";
import { POSTGRES_SERVER, postgresAdmin } from "../helpers/sql-stores.js";
import { maxAbsDiff, readExpected, type Expected } from "../scoring/world.js";
import { cuttableProxy, until, type CuttableProxy } from "./proxy.js";

const EXAMPLE = fileURLToPath(new URL("../../examples/models/breast-cancer", import.meta.url));
const CLASSES = ["malignant", "benign"];
const database = `mlship_test_${randomBytes(6).toString("hex")}`;
const home = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-pg-down-"));
const spillDir = path.join(home, "spill");

let admin: pg.Client;
/** The test's own connection to the database, straight to PostgreSQL (not through the relay). */
let direct: pg.Client;
let proxy: CuttableProxy;
let app: Mlship;
let log: PredictionLogger | undefined;
let server: FastifyInstance;
let expected: Expected;

/** What each request should have logged: request id -> the rows it scored (indexes into expected.json). */
const sent = new Map<string, number[]>();

async function predict(requestId: string, rows: number[]): Promise<void> {
  const res = await server.inject({
    method: "POST",
    url: "/v2/models/breast-cancer/infer",
    headers: { "x-request-id": requestId },
    payload: { inputs: [{ name: "input", shape: [rows.length, 30], datatype: "FP32", data: rows.flatMap((r) => expected.inputs[r] as number[]) }] },
  });
  expect(res.statusCode, res.body).toBe(200);
  expect(res.headers["mlship-model-version"]).toBe("breast-cancer@1");
  const outputs = (res.json() as { outputs: Array<{ name: string; data: unknown[] }> }).outputs;
  const probabilities = outputs.find((o) => o.name === "probabilities")?.data;
  expect(maxAbsDiff(probabilities, rows.map((r) => expected.outputs.probabilities?.[r]))).toBeLessThanOrEqual(1e-5);
  sent.set(requestId, rows);
}

/** The rows in prediction_log, as "request|row|prediction", sorted. */
async function storedRows(): Promise<string[]> {
  const result = await direct.query<{ request_id: string; row: number; prediction: string }>("select request_id, row, prediction from prediction_log where model = 'breast-cancer'");
  return result.rows.map((r) => `${r.request_id}|${r.row}|${JSON.parse(r.prediction) as string}`).sort();
}

function expectedRows(filter: (requestId: string) => boolean): string[] {
  const out: string[] = [];
  for (const [requestId, rows] of sent) {
    if (!filter(requestId)) continue;
    rows.forEach((r, i) => out.push(`${requestId}|${i}|${CLASSES[expected.outputs.label?.[r] as number] as string}`));
  }
  return out.sort();
}

function spillFiles(): string[] {
  return fs.existsSync(spillDir) ? fs.readdirSync(spillDir).filter((f) => f.endsWith(".jsonl")) : [];
}

beforeAll(async () => {
  expected = await readExpected("breast_cancer_mlp");
  admin = await postgresAdmin();
  await admin.query(`create database ${database}`);
  direct = new pg.Client({ connectionString: `${POSTGRES_SERVER}/${database}` });
  await direct.connect();
  proxy = await cuttableProxy(5432);
  app = await createMlship(
    defaultConfig({
      home,
      store: `postgres://postgres@127.0.0.1:${proxy.port}/${database}`,
      "runtime.workers": 1,
      "cache.backend": "off",
      "feedback.flushMs": 50,
      "feedback.spillDir": spillDir,
      "log.level": "silent",
    }),
    { logger: silentLogger() },
  );
  await registerModel(app, EXAMPLE, { name: "breast-cancer", alias: "production" });
  log = await startPredictionLog(app);
  server = buildServer({ scoring: app.scoring, registry: app.registry, logger: false });
}, 60_000);

afterAll(async () => {
  await proxy?.restore().catch(() => undefined);
  await server?.close();
  await log?.close();
  await app?.close();
  await proxy?.close();
  await direct?.end();
  await admin?.query(`drop database if exists ${database} with (force)`);
  await admin?.end();
  fs.rmSync(home, { recursive: true, force: true });
});

describe("PostgreSQL down", () => {
  it("keeps serving the loaded model, spills the prediction log, and replays it exactly once when PostgreSQL is back", async () => {
    await predict("up-0", [0, 1, 2]);
    await predict("up-1", [3]);
    await log?.flush();
    expect(await storedRows()).toEqual(expectedRows((id) => id.startsWith("up-")));

    await proxy.cut();
    // The registry is unreachable now, while the model already resolved keeps answering, so the replica stays ready.
    expect(await app.scoring.registryReachable()).toBe(false);
    for (let i = 0; i < 12; i++) await predict(`down-${i}`, [i % 40, (i * 7) % 50]);
    expect((await server.inject("/v2/health/live")).statusCode).toBe(200);
    expect((await server.inject("/v2/health/ready")).json()).toEqual({ ready: true });
    await log?.flush();
    const downRows = expectedRows((id) => id.startsWith("down-")).length;
    expect(log?.stats()).toMatchObject({ spilled: downRows, spillBacklog: downRows, written: 4 });
    expect(spillFiles().length).toBeGreaterThan(0);
    // Nothing reached the database meanwhile.
    expect(await storedRows()).toEqual(expectedRows((id) => id.startsWith("up-")));

    await proxy.restore();
    // The log's replay timer (every 5 s) writes the spill files back and deletes them.
    await until(() => log?.stats().spillBacklog === 0, "the spill files to be replayed", 30_000, 100);
    expect(spillFiles()).toEqual([]);
    expect(log?.stats()).toMatchObject({ replayed: downRows });
    await until(() => app.scoring.registryReachable(), "the registry to be reachable again");
    await predict("after-0", [5, 6]);
    await log?.flush();
    expect(await storedRows()).toEqual(expectedRows(() => true));
  }, 60_000);
});
