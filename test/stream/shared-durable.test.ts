// Two stream engines (instances a and b) sharing one NATS durable (the server at 127.0.0.1:4222, a stream of its own)
// with a per-instance batch aggregation into PostgreSQL (a fresh database). Instance a is held up for real: the test
// keeps a SHARE lock on a's predictions table, so a's write waits past its ack wait and its in-progress marks, and
// NATS redelivers the batch to b. Both process the same messages; the aggregation must still count each once.
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { Checkpoint, stoppedInstanceProgress } from "../../src/stream/checkpoint.js";
import { RecordClaims } from "../../src/stream/claims.js";
import { parseStreamConfig } from "../../src/stream/config.js";
import { startStream, type StreamDeps, type StreamHandle } from "../../src/stream/engine.js";
import type { StreamJobConfig, StreamProgress } from "../../src/stream/types.js";
import { fixture, REPO, tempDir } from "../cli/helpers.js";
import { POSTGRES_SERVER, postgresAdmin } from "../helpers/sql-stores.js";

const MODEL = "breast-cancer";
const EXAMPLE = path.join(REPO, "examples", "models", "breast-cancer");
const bc = fixture("breast_cancer_mlp");
const prodFeatures = fs
  .readFileSync(path.join(bc.dir, "prod.csv"), "utf8")
  .trim()
  .split(/\r?\n/)
  .slice(1)
  .map((line) => line.split(",").slice(0, bc.features.length).map(Number));

let home: string;
let app: Mlship;
let deps: StreamDeps;
let admin: pg.Client;
let database: string;
let dbUrl: string;
let db: pg.Client;
let nc: NatsConnection;
let jsm: JetStreamManager;
const handles: StreamHandle[] = [];
const streams: string[] = [];

beforeAll(async () => {
  home = tempDir("stream-shared");
  app = await createMlship(defaultConfig({ home, user: "tester", "runtime.workers": 1, "log.level": "warn" }));
  await registerModel(app, EXAMPLE, { name: MODEL, alias: "production" });
  deps = { scoring: app.scoring, store: app.store, logger: app.logger };
  admin = await postgresAdmin();
  database = `mlship_test_${randomBytes(6).toString("hex")}`;
  await admin.query(`create database ${database}`);
  dbUrl = `${POSTGRES_SERVER}/${database}`;
  db = new pg.Client({ connectionString: dbUrl });
  await db.connect();
  nc = await connect({ servers: "nats://127.0.0.1:4222" });
  jsm = await jetstreamManager(nc);
}, 60_000);

afterAll(async () => {
  await Promise.all(handles.map((h) => h.stop()));
  for (const name of streams) await jsm.streams.delete(name).catch(() => false);
  await nc?.close();
  await db?.end();
  await admin?.query(`drop database if exists ${database} with (force)`);
  await admin?.end();
  await app?.close();
  fs.rmSync(home, { recursive: true, force: true });
});

function job(dir: string, stream: string, predictions: string): StreamJobConfig {
  return parseStreamConfig(
    {
      name: "shared",
      model: `${MODEL}@production`,
      // A tiny ack wait: a's in-progress marks (every 50 ms, twenty at most) run out after about a second.
      source: { kind: "nats", stream, durable: "scorer", maxMessages: 100, ackWaitMs: "100ms" },
      schema: { fields: { id: "string" }, key: "id", fromModel: true },
      trigger: { processingTime: "50ms" },
      sinks: [{ kind: "postgres", url: dbUrl, table: predictions }],
      deadLetter: { kind: "jsonl", path: "dead" },
      aggregations: [
        { name: "by_label", window: { kind: "batch" }, groupBy: ["label"], metrics: [{ fn: "count" }], sink: { kind: "postgres", url: dbUrl, table: "by_label" } },
      ],
      checkpoint: "checkpoint",
    },
    { baseDir: dir, home },
  );
}

async function count(sql: string): Promise<number> {
  try {
    const result = await db.query<{ n: string | null }>(sql);
    return Number(result.rows[0]?.n ?? 0);
  } catch (error) {
    // Sinks create their table when they open and add columns with the first rows.
    if (["42P01", "42703"].includes((error as { code?: string }).code ?? "")) return 0;
    throw error;
  }
}

async function until(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("instances sharing a NATS durable", { timeout: 90_000 }, () => {
  it("count a message redelivered from a stalled instance to the other exactly once in their aggregations", async () => {
    const N = 40;
    const stream = `MLS_SHARED_${randomBytes(4).toString("hex")}`.toUpperCase();
    streams.push(stream);
    await jsm.streams.add({ name: stream, subjects: [`${stream}.>`] });
    const dir = tempDir("stream-shared-job");

    const progressA: StreamProgress[] = [];
    const progressB: StreamProgress[] = [];
    const a = startStream(deps, job(dir, stream, "pred_a"), { instance: "a", onProgress: (p) => progressA.push(p) });
    handles.push(a);
    // a's sinks are open (its predictions table exists) once its status says so; then a is made to stall on it.
    await until(async () => (await count("select count(*) as n from information_schema.tables where table_name = 'pred_a'")) === 1, "a's predictions table");
    const locker = new pg.Client({ connectionString: dbUrl });
    await locker.connect();
    try {
      await locker.query("begin");
      await locker.query("lock table pred_a in share mode");

      // One message holding N records (a JSON array): one batch for a, whatever the timing.
      const records = Array.from({ length: N }, (_, i) => {
        const row = prodFeatures[i % prodFeatures.length] as number[];
        const record: Record<string, unknown> = { id: `m${i}` };
        bc.features.forEach((f, j) => (record[f] = row[j]));
        return record;
      });
      await jetstream(nc).publish(`${stream}.in`, JSON.stringify(records));
      // a has scored everything and written its aggregation rows; its predictions wait on the lock.
      await until(async () => (await count("select sum(count) as n from by_label where instance = 'a'")) === N, "a's aggregation rows");

      // b starts only now: the message it gets is the one a holds, redelivered once a's marks ran out.
      const b = startStream(deps, job(dir, stream, "pred_b"), { instance: "b", onProgress: (p) => progressB.push(p) });
      handles.push(b);
      // b scores and commits the redelivered batch while a still holds it.
      await until(() => progressB.reduce((sum, p) => sum + p.numOutputRows, 0) >= N, "b to commit the redelivered messages");
      expect(await count("select count(*) as n from pred_b")).toBe(N);
      // (pred_a is not read here: the query would queue behind a's waiting write.)
      expect(progressA).toEqual([]);
    } finally {
      await locker.query("rollback").catch(() => undefined);
      await locker.end();
    }
    await until(async () => (await count("select count(*) as n from pred_a")) === N, "a to write its predictions once the lock is gone");
    await until(() => progressA.length > 0, "a to commit its batch");
    await Promise.all([a.stop(), ...handles.slice(1).map((h) => h.stop())]);

    // Both scored every message; the aggregation counted each once, all of them by a (which claimed them first).
    expect(await count("select sum(count) as n from by_label")).toBe(N);
    expect(await count("select coalesce(sum(count), 0) as n from by_label where instance = 'b'")).toBe(0);
    expect(await count("select count(distinct _id) as n from pred_b")).toBe(N);
  });

  it("claims: an instance that stopped without saving a batch has its claims taken over; a running or saved one keeps them", async () => {
    const dir = tempDir("stream-claims");
    const stream = `claims_${randomBytes(4).toString("hex")}`;
    const progress = (owner: string): Promise<number | null> => stoppedInstanceProgress(dir, stream, owner);
    const claimsOf = (instance: string): RecordClaims => new RecordClaims(app.store, { stream, instance, ownerProgress: progress });
    const ids = (n: number, from = 0): string[] => Array.from({ length: n }, (_, i) => `S:${from + i}`);

    // x saved batches 0..2 (nextBatchId 3), claimed ids 0-4 in batch 2 (saved) and ids 5-9 in batch 3 (never saved).
    const x = await Checkpoint.open(dir, stream, { instance: "x" });
    await x.save({ stream, nextBatchId: 3, operators: {}, updatedAt: new Date().toISOString() });
    const xClaims = claimsOf("x");
    await xClaims.open(3);
    expect(await xClaims.claim(ids(5), 2)).toEqual(new Set(ids(5)));
    expect(await xClaims.claim(ids(5, 5), 3)).toEqual(new Set(ids(5, 5)));
    // x's own batch-2 claims come again in a later batch: counted already, not again.
    expect(await xClaims.claim(ids(2), 3)).toEqual(new Set());

    const b = claimsOf("b");
    await b.open(0);
    // x is running (this process holds its lock): nothing is taken over, even the unsaved batch.
    expect(await progress("x")).toBeNull();
    expect(await b.claim(ids(10), 0)).toEqual(new Set());

    // x stops without saving batch 3 (a failed batch, or a crash): its batch-3 claims go to b, its batch-2 ones stay.
    await x.close();
    expect(await progress("x")).toBe(3);
    expect(await b.claim([...ids(10), "S:10"], 0)).toEqual(new Set([...ids(5, 5), "S:10"]));
    // Asked again for the same batch (a retry): the same answer.
    expect(await b.claim([...ids(10), "S:10"], 0)).toEqual(new Set([...ids(5, 5), "S:10"]));

    // x starts again from its checkpoint: it releases claims of batches it never saved (none left: b has them), and a
    // record it never claimed is free for whoever comes first.
    const xAgain = await Checkpoint.open(dir, stream, { instance: "x" });
    try {
      await claimsOf("x").open(3);
      expect(await claimsOf("x").claim([...ids(10), "S:11"], 3)).toEqual(new Set(["S:11"]));
    } finally {
      await xAgain.close();
    }
    // An instance whose checkpoint is not in this folder cannot be told stopped: its claims stand.
    expect(await progress("elsewhere")).toBeNull();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
