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
import { Registry as PromRegistry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { Checkpoint, stoppedInstanceProgress } from "../../src/stream/checkpoint.js";
import { RecordClaims } from "../../src/stream/claims.js";
import { parseStreamConfig } from "../../src/stream/config.js";
import { startStream, type StreamDeps, type StreamHandle } from "../../src/stream/engine.js";
import { createStreamMetrics } from "../../src/stream/metrics.js";
import type { StreamJobConfig, StreamProgress } from "../../src/stream/types.js";
import { featureRows, fixture, REPO, tempDir } from "../cli/helpers.js";
import { scratchPostgres, type ScratchDatabase } from "../helpers/sql-stores.js";

const MODEL = "breast-cancer";
const EXAMPLE = path.join(REPO, "examples", "models", "breast-cancer");
const bc = fixture("breast_cancer_mlp");
const prodFeatures = featureRows(bc);

let home: string;
let app: Mlship;
let deps: StreamDeps;
let scratch: ScratchDatabase;
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
  scratch = await scratchPostgres();
  dbUrl = scratch.url;
  db = scratch.client;
  nc = await connect({ servers: "nats://127.0.0.1:4222" });
  jsm = await jetstreamManager(nc);
}, 60_000);

afterAll(async () => {
  await Promise.all(handles.map((h) => h.stop()));
  for (const name of streams) await jsm.streams.delete(name).catch(() => false);
  await nc?.close();
  await scratch?.drop();
  await app?.close();
  fs.rmSync(home, { recursive: true, force: true });
});

function job(dir: string, stream: string, predictions: string, aggregates = "by_label"): StreamJobConfig {
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
        { name: "by_label", window: { kind: "batch" }, groupBy: ["label"], metrics: [{ fn: "count" }], sink: { kind: "postgres", url: dbUrl, table: aggregates } },
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

/** A new JetStream stream for one test (deleted after all tests). */
async function newStream(tag: string): Promise<string> {
  const stream = `MLS_${tag}_${randomBytes(4).toString("hex")}`.toUpperCase();
  streams.push(stream);
  await jsm.streams.add({ name: stream, subjects: [`${stream}.>`] });
  return stream;
}

/** Production row `index` of the breast-cancer fixture as a JSON record with its features and an `id`. */
function featureRecord(index: number, id: string): Record<string, unknown> {
  const row = prodFeatures[index % prodFeatures.length] as number[];
  const record: Record<string, unknown> = { id };
  bc.features.forEach((f, j) => (record[f] = row[j]));
  return record;
}

describe("instances sharing a NATS durable", { timeout: 90_000 }, () => {
  it("count a message redelivered from a stalled instance to the other exactly once in their aggregations", async () => {
    const N = 40;
    const stream = await newStream("SHARED");
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
      const records = Array.from({ length: N }, (_, i) => featureRecord(i, `m${i}`));
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

  it("a record redelivered while its owner runs with the claiming batch unsaved is handed back, then counted by the other instance once the owner stops without saving it", async () => {
    const stream = await newStream("PENDING");
    const dir = tempDir("stream-pending-job");
    const config = job(dir, stream, "pred_pending", "by_label_pending");
    const ownerOf = (instance: string): RecordClaims =>
      new RecordClaims(app.store, { stream: config.name, instance, ownerProgress: (o) => stoppedInstanceProgress(config.checkpoint, config.name, o) });

    // Instance a runs (this process holds its lock), has saved batches 0-2 and claimed the record in batch 3, which
    // it has not saved: the redelivery that reaches b finds a's claim unsettled.
    const a = await Checkpoint.open(config.checkpoint, config.name, { instance: "a" });
    await a.save({ stream: config.name, nextBatchId: 3, operators: {}, updatedAt: new Date().toISOString() });
    await ownerOf("a").open(3);
    const id = `${stream}:1`;
    expect(await ownerOf("a").claim([id], 3)).toEqual(new Set([id]));

    await jetstream(nc).publish(`${stream}.in`, JSON.stringify(featureRecord(0, "p0")));

    const progressB: StreamProgress[] = [];
    const b = startStream(deps, config, { instance: "b", onProgress: (p) => progressB.push(p) });
    handles.push(b);
    let aOpen = true;
    try {
      // b scores the record and writes its prediction, but neither counts it (a's claim) nor acks it (a may still fail).
      await until(() => progressB.some((p) => p.numOutputRows > 0), "b to score the record");
      expect(await count("select count(*) as n from pred_pending")).toBe(1);
      expect(await count("select coalesce(sum(count), 0) as n from by_label_pending")).toBe(0);
      // Handed back, not acked: the message is still the consumer's to deliver, and comes back to b (still a's).
      await until(() => progressB.filter((p) => p.numOutputRows > 0).length >= 2, "the record to come back to b");
      const info = await jsm.consumers.info(stream, "scorer");
      expect(info.num_ack_pending + info.num_pending).toBe(1);
      expect(await count("select coalesce(sum(count), 0) as n from by_label_pending")).toBe(0);

      // a stops without saving batch 3 (a crash, or a batch that failed its retries): b takes the claim over.
      await a.close();
      aOpen = false;
      await until(async () => (await count("select coalesce(sum(count), 0) as n from by_label_pending where instance = 'b'")) === 1, "b to count the record");
      await until(async () => {
        const after = await jsm.consumers.info(stream, "scorer");
        return after.num_ack_pending + after.num_pending === 0;
      }, "b to ack the record");
      // Counted once: nothing comes again, and a starting again finds no claim of its own to count.
      const batches = progressB.length;
      await new Promise((r) => setTimeout(r, 500));
      expect(progressB.slice(batches).filter((p) => p.numInputRows > 0)).toEqual([]);
      expect(await count("select sum(count) as n from by_label_pending")).toBe(1);
      expect(await count("select count(distinct _id) as n from pred_pending")).toBe(1);
    } finally {
      await b.stop();
      if (aOpen) await a.close();
    }
    const aAgain = await Checkpoint.open(config.checkpoint, config.name, { instance: "a" });
    try {
      await ownerOf("a").open(3);
      expect(await ownerOf("a").claim([id], 3)).toEqual(new Set());
    } finally {
      await aAgain.close();
    }
  });

  it("a handed-back record whose owner saves the claiming batch meanwhile is acked and left to the owner", async () => {
    const stream = await newStream("SAVED");
    const dir = tempDir("stream-pending-saved");
    const config = job(dir, stream, "pred_saved", "by_label_saved");
    const a = await Checkpoint.open(config.checkpoint, config.name, { instance: "a" });
    const aClaims = new RecordClaims(app.store, { stream: config.name, instance: "a", ownerProgress: async () => null });
    await aClaims.open(0);
    const id = `${stream}:1`;
    expect(await aClaims.claim([id], 0)).toEqual(new Set([id]));

    await jetstream(nc).publish(`${stream}.in`, JSON.stringify(featureRecord(1, "s0")));
    const progressB: StreamProgress[] = [];
    const b = startStream(deps, config, { instance: "b", onProgress: (p) => progressB.push(p) });
    handles.push(b);
    try {
      await until(() => progressB.some((p) => p.numOutputRows > 0), "b to score the record");
      // a saves batch 0 (it counted the record) while still running: the claim is final, b acks and counts nothing.
      await a.save({ stream: config.name, nextBatchId: 1, operators: {}, updatedAt: new Date().toISOString() });
      await until(async () => {
        const info = await jsm.consumers.info(stream, "scorer");
        return info.num_ack_pending + info.num_pending === 0;
      }, "b to ack the record");
      expect(await count("select coalesce(sum(count), 0) as n from by_label_saved where instance = 'b'")).toBe(0);
    } finally {
      await b.stop();
      await a.close();
    }
  });

  it("a record whose running owner never saves it is handed back a bounded number of times, then acked and reported", async () => {
    const stream = await newStream("STUCK");
    const dir = tempDir("stream-pending-stuck");
    const config = job(dir, stream, "pred_stuck", "by_label_stuck");
    const a = await Checkpoint.open(config.checkpoint, config.name, { instance: "a" });
    const aClaims = new RecordClaims(app.store, { stream: config.name, instance: "a", ownerProgress: async () => null });
    await aClaims.open(0);
    const id = `${stream}:1`;
    expect(await aClaims.claim([id], 0)).toEqual(new Set([id]));

    await jetstream(nc).publish(`${stream}.in`, JSON.stringify(featureRecord(2, "k0")));
    const registry = new PromRegistry();
    const progressB: StreamProgress[] = [];
    const b = startStream(deps, config, { instance: "b", metrics: createStreamMetrics(registry), onProgress: (p) => progressB.push(p) });
    handles.push(b);
    try {
      await until(() => progressB.length > 0, "b to start");
      await until(async () => {
        const info = await jsm.consumers.info(stream, "scorer");
        return info.num_ack_pending + info.num_pending === 0;
      }, "b to ack the record at last");
      // Handed back again and again, then (at its twentieth delivery: some deliveries, e.g. to a pull request that had
      // already returned, never reach a batch) acked and left to a: reported, not counted.
      const rounds = progressB.filter((p) => p.numOutputRows > 0).length;
      expect(rounds).toBeGreaterThan(2);
      expect(rounds).toBeLessThanOrEqual(20);
      // The metric follows the ack: read it once b has stopped.
      await b.stop();
      expect(await registry.metrics()).toMatch(/mlship_stream_unresolved_claims_total\{stream="shared"\} 1\b/);
      expect(await count("select coalesce(sum(count), 0) as n from by_label_stuck")).toBe(0);
    } finally {
      await b.stop();
      await a.close();
    }
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
