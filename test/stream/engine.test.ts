// The stream engine on real parts: the breast-cancer MLP from examples/models (registered twice: versions 1 and 2)
// scores CSV files dropped in a folder and JSON messages from NATS JetStream (the local server), through the real
// sources, schema, scoring service, SQLite / PostgreSQL / JSONL sinks, checkpoint, aggregation and join, and the
// feedback loop's outcome store.
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import pg from "pg";
import { Registry as PromRegistry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, runStream, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { parseStreamConfig } from "../../src/stream/config.js";
import { startStream, type StreamDeps } from "../../src/stream/engine.js";
import { createStreamMetrics } from "../../src/stream/metrics.js";
import { POSTGRES_SERVER, postgresAdmin } from "../helpers/sql-stores.js";
import type { StreamJobConfig, StreamProgress, StreamSummary } from "../../src/stream/types.js";
import { expectValueClose, fixture, REPO, tempDir } from "../cli/helpers.js";

const MODEL = "breast-cancer";
const EXAMPLE = path.join(REPO, "examples", "models", "breast-cancer");
const bc = fixture("breast_cancer_mlp");
const prodLines = fs.readFileSync(path.join(bc.dir, "prod.csv"), "utf8").trim().split(/\r?\n/);
/** The 30 feature cells of each production row (the label column dropped). */
const prodFeatures = prodLines.slice(1).map((line) => line.split(",").slice(0, bc.features.length));
const prodLabels = prodLines.slice(1).map((line) => Number(line.split(",")[bc.features.length]));
const CLASS_NAMES = ["malignant", "benign"];

let home: string;
let app: Mlship;
let deps: StreamDeps;

beforeAll(async () => {
  home = tempDir("stream-engine");
  app = await createMlship(defaultConfig({ home, user: "tester", "runtime.workers": 1, "log.level": "warn", "feedback.flushMs": 50 }));
  await registerModel(app, EXAMPLE, { name: MODEL, alias: "production" });
  await registerModel(app, EXAMPLE, { name: MODEL });
  deps = { scoring: app.scoring, store: app.store, logger: app.logger, feedback: app.feedback };
}, 60_000);

afterAll(async () => {
  await app.close();
  fs.rmSync(home, { recursive: true, force: true });
});

interface Row {
  id: string;
  ts?: string;
  cells: readonly string[];
}

/** Writes a CSV file as writers must: under a `.` name, then renamed into place. */
function dropCsv(folder: string, name: string, rows: readonly Row[], withTs = false): void {
  fs.mkdirSync(folder, { recursive: true });
  const header = ["id", ...(withTs ? ["ts"] : []), ...bc.features].map((h) => (h.includes(",") ? `"${h}"` : h)).join(",");
  const lines = rows.map((r) => [r.id, ...(withTs ? [r.ts ?? ""] : []), ...r.cells].join(","));
  const temporary = path.join(folder, `.${name}`);
  fs.writeFileSync(temporary, `${header}\n${lines.join("\n")}\n`);
  fs.renameSync(temporary, path.join(folder, name));
}

function prodRows(from: number, to: number, prefix = "p"): Row[] {
  return prodFeatures.slice(from, to).map((cells, i) => ({ id: `${prefix}${from + i}`, cells }));
}

function job(dir: string, raw: Record<string, unknown>): StreamJobConfig {
  return parseStreamConfig(
    {
      name: "scorer",
      model: `${MODEL}@production`,
      source: { kind: "folder", path: "in" },
      schema: { fields: { id: "string" }, key: "id", fromModel: true },
      trigger: "availableNow",
      sinks: [{ kind: "sqlite", path: "out.sqlite", table: "predictions" }],
      deadLetter: { kind: "jsonl", path: "dead" },
      checkpoint: "checkpoint",
      ...raw,
    },
    { baseDir: dir, home },
  );
}

function readTable(file: string, table: string): Array<Record<string, unknown>> {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare(`select * from ${table} order by _id`).all() as Array<Record<string, unknown>>;
  } finally {
    db.close();
  }
}

function readJsonl(folder: string): Array<Record<string, unknown>> {
  if (!fs.existsSync(folder)) return [];
  return fs
    .readdirSync(folder)
    .filter((f) => f.endsWith(".jsonl"))
    .flatMap((f) =>
      fs
        .readFileSync(path.join(folder, f), "utf8")
        .split("\n")
        .filter((l) => l.trim() !== "")
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    );
}

async function waitFor(check: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function run(config: StreamJobConfig, extra: Parameters<typeof startStream>[2] = {}): { done: Promise<StreamSummary>; progress: StreamProgress[]; stop: () => Promise<StreamSummary> } {
  const progress: StreamProgress[] = [];
  const handle = startStream(deps, config, { ...extra, onProgress: (p) => progress.push(p) });
  return { done: handle.done, progress, stop: () => handle.stop() };
}

describe("stream engine", { timeout: 60_000 }, () => {
  it("scores CSV files as they come (availableNow), matching the fixture, with a bad record in the dead-letter sink", async () => {
    const dir = tempDir("stream-basic");
    try {
      const bad = [...(prodFeatures[0] as string[])];
      bad[2] = "abc";
      dropCsv(path.join(dir, "in"), "a.csv", [...prodRows(0, 20), { id: "bad-1", cells: bad }, ...prodRows(20, 50)]);
      dropCsv(path.join(dir, "in"), "b.csv", prodRows(50, prodFeatures.length));
      const config = job(dir, { select: ["mean radius"] });
      const registry = new PromRegistry();
      const { done, progress } = run(config, { metrics: createStreamMetrics(registry) });
      const summary = await done;
      expect(summary).toEqual({ stream: "scorer", reason: "completed", batches: 2, inputRows: prodFeatures.length + 1, outputRows: prodFeatures.length, deadLetters: 1, error: null });
      expect(progress.map((p) => [p.batchId, p.numInputRows, p.numOutputRows, p.numDeadLetters, p.model, p.version])).toEqual([
        [0, 51, 50, 1, MODEL, 1],
        [1, prodFeatures.length - 50, prodFeatures.length - 50, 0, MODEL, 1],
      ]);
      expect(progress.at(-1)?.lag).toBe(0);
      const metrics = await registry.metrics();
      expect(metrics).toContain(`mlship_stream_input_records_total{stream="scorer"} ${prodFeatures.length + 1}`);
      expect(metrics).toContain(`mlship_stream_output_records_total{stream="scorer"} ${prodFeatures.length}`);
      expect(metrics).toContain('mlship_stream_dead_letters_total{stream="scorer",stage="schema"} 1');
      expect(metrics).toContain('mlship_stream_batches_total{stream="scorer",status="ok"} 2');
      expect(metrics).toContain('mlship_stream_batch_duration_seconds_count{stream="scorer"} 2');
      expect(metrics).toContain('mlship_stream_consumer_lag{stream="scorer",source="main"} 0');

      const rows = readTable(path.join(dir, "out.sqlite"), "predictions");
      expect(rows).toHaveLength(prodFeatures.length);
      const byId = new Map(rows.map((r) => [r._id as string, r]));
      // The first 50 production rows are expected.json's inputs.
      expect(prodFeatures.slice(0, 50).map((cells) => cells.map(Number))).toEqual(bc.expected.inputs);
      bc.expected.inputs.forEach((_, i) => {
        const row = byId.get(`a.csv#${i < 20 ? i : i + 1}`);
        expect(row, `row p${i}`).toBeDefined();
        expect(row?.key).toBe(`p${i}`);
        expect(row?.version).toBe(1);
        expect(row?.model).toBe(MODEL);
        expect(row?.["mean radius"]).toBe(Number(prodFeatures[i]?.[0]));
        expectValueClose(JSON.parse(row?.probabilities as string), bc.expected.outputs.probabilities?.[i], "probabilities", bc.expected);
        expect(row?.label).toBe(bc.expected.outputs.label?.[i]);
        // The package's post-processing names the class too.
        expect(row?.class).toBe(CLASS_NAMES[bc.expected.outputs.label?.[i] as number]);
      });
      // The model gets most production rows right (it is the fixture's model, not a coin).
      const right = [...byId.values()].filter((r) => {
        const i = Number(String(r.key).slice(1));
        return r.label === prodLabels[i];
      }).length;
      expect(right / rows.length).toBeGreaterThan(0.9);

      const dead = readJsonl(path.join(dir, "dead"));
      expect(dead).toHaveLength(1);
      expect(dead[0]).toMatchObject({ _id: "schema:a.csv#20", stage: "schema", field: "mean perimeter", origin: expect.stringContaining("a.csv") as unknown, stream: "scorer" });
      expect(String(dead[0]?.reason)).toMatch(/mean perimeter|number|double/i);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("restarts from its checkpoint: processed files are not read again, batch ids go on", async () => {
    const dir = tempDir("stream-restart");
    try {
      dropCsv(path.join(dir, "in"), "a.csv", prodRows(0, 10));
      dropCsv(path.join(dir, "in"), "b.csv", prodRows(10, 20));
      const config = job(dir, {});
      expect(await run(config).done).toMatchObject({ reason: "completed", batches: 2, outputRows: 20 });
      // Nothing new: the second run reads nothing.
      expect(await run(config).done).toMatchObject({ reason: "completed", batches: 0, inputRows: 0 });
      dropCsv(path.join(dir, "in"), "c.csv", prodRows(20, 25));
      const third = run(config);
      expect(await third.done).toMatchObject({ reason: "completed", batches: 1, inputRows: 5 });
      expect(third.progress.map((p) => p.batchId)).toEqual([2]);
      const rows = readTable(path.join(dir, "out.sqlite"), "predictions");
      expect(rows).toHaveLength(25);
      expect(new Set(rows.map((r) => r._batch_id))).toEqual(new Set([0, 1, 2]));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("follows an alias move at the next micro-batch (processingTime), and stops gracefully", async () => {
    const dir = tempDir("stream-alias");
    try {
      const config = job(dir, { trigger: { processingTime: "100ms" } });
      const stream = run(config);
      dropCsv(path.join(dir, "in"), "a.csv", prodRows(0, 10));
      await waitFor(() => stream.progress.length === 1, "the first batch");
      expect(stream.progress[0]?.version).toBe(1);
      await app.registry.setAlias(MODEL, "production", 2, { by: "tester" });
      try {
        dropCsv(path.join(dir, "in"), "b.csv", prodRows(10, 20));
        await waitFor(() => stream.progress.length === 2, "the second batch");
        expect(stream.progress[1]?.version).toBe(2);
        expect(await stream.stop()).toMatchObject({ reason: "stopped", batches: 2, outputRows: 20, error: null });
      } finally {
        await app.registry.setAlias(MODEL, "production", 1, { by: "tester" });
      }
      const rows = readTable(path.join(dir, "out.sqlite"), "predictions");
      expect(rows.filter((r) => String(r._id).startsWith("a.csv")).every((r) => r.version === 1)).toBe(true);
      expect(rows.filter((r) => String(r._id).startsWith("b.csv")).every((r) => r.version === 2)).toBe(true);
      expect(rows).toHaveLength(20);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("sends the records the model refuses to the dead-letter sink (stage score) and scores the rest", async () => {
    const dir = tempDir("stream-refused");
    try {
      const rows = prodRows(0, 40);
      // The schema lets a missing feature through (nullable); the model cannot score it.
      const missing = [...(prodFeatures[5] as string[])];
      missing[7] = "";
      rows.splice(13, 0, { id: "no-feature", cells: missing });
      dropCsv(path.join(dir, "in"), "a.csv", rows);
      const config = job(dir, { schema: { fields: { id: "string", ...Object.fromEntries(bc.features.map((f) => [f, "double"])) }, key: "id" } });
      const summary = await run(config).done;
      expect(summary).toMatchObject({ reason: "completed", batches: 1, inputRows: 41, outputRows: 40, deadLetters: 1 });
      const dead = readJsonl(path.join(dir, "dead"));
      expect(dead).toHaveLength(1);
      expect(dead[0]).toMatchObject({ _id: "score:a.csv#13", stage: "score" });
      expect(JSON.parse(String(dead[0]?.raw))).toMatchObject({ id: "no-feature", "mean concave points": null });
      expect(readTable(path.join(dir, "out.sqlite"), "predictions").map((r) => r.key)).not.toContain("no-feature");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("counts predictions by label in tumbling event-time windows: counts sum to the records of the closed windows", async () => {
    const dir = tempDir("stream-windows");
    try {
      const base = Date.parse("2026-01-01T00:00:00Z");
      const rows = prodRows(0, 90).map((r, i) => ({ ...r, ts: new Date(base + i * 2000).toISOString() })); // 3 minutes
      dropCsv(path.join(dir, "in"), "a.csv", rows, true);
      // One record far ahead closes every window of the first file (its own stays open); one behind the watermark
      // (the first file's last event time) is late: counted and dropped.
      dropCsv(
        path.join(dir, "in"),
        "b.csv",
        [
          { ...(prodRows(90, 91)[0] as Row), ts: new Date(base + 3_600_000).toISOString() },
          { ...(prodRows(91, 92)[0] as Row), ts: new Date(base + 1000).toISOString() },
        ],
        true,
      );
      const config = job(dir, {
        schema: { fields: { id: "string", ts: "timestamp" }, key: "id", eventTime: "ts", fromModel: true },
        aggregations: [
          {
            name: "by_label",
            window: { kind: "tumbling", sizeMs: "1m" },
            watermarkMs: 0,
            groupBy: ["label"],
            metrics: [{ fn: "count" }, { fn: "mean", field: "probabilities[1]" }],
            sink: { kind: "sqlite", path: "out.sqlite", table: "by_label" },
          },
        ],
      });
      const registry = new PromRegistry();
      const { done, progress } = run(config, { metrics: createStreamMetrics(registry) });
      expect(await done).toMatchObject({ reason: "completed", batches: 2, outputRows: 92 });
      const metrics = await registry.metrics();
      expect(metrics).toContain(`mlship_stream_watermark_seconds{stream="scorer",operator="aggregation:by_label"} ${(base + 3_600_000) / 1000}`);
      expect(metrics).toContain('mlship_stream_late_records_total{stream="scorer",operator="aggregation:by_label"} 1');
      expect(metrics).toMatch(/mlship_stream_state_records\{stream="scorer",operator="aggregation:by_label"\} [1-9]/);
      const windows = readTable(path.join(dir, "out.sqlite"), "by_label");
      expect(new Set(windows.map((w) => w.window_start))).toEqual(new Set(["2026-01-01T00:00:00.000Z", "2026-01-01T00:01:00.000Z", "2026-01-01T00:02:00.000Z"]));
      expect(windows.reduce((sum, w) => sum + (w.count as number), 0)).toBe(90);
      // Per label, the counts agree with the predictions table.
      const predictions = readTable(path.join(dir, "out.sqlite"), "predictions").filter((p) => p.key !== "p90" && p.key !== "p91");
      for (const label of [0, 1]) {
        const counted = windows.filter((w) => w.label === label).reduce((sum, w) => sum + (w.count as number), 0);
        expect(counted).toBe(predictions.filter((p) => p.label === label).length);
      }
      expect(progress.at(-1)?.operators["aggregation:by_label"]).toMatchObject({ lateRecords: 1, watermark: base + 3_600_000 });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("joins predictions with an outcomes folder and feeds the joined outcomes to the feedback loop", async () => {
    const dir = tempDir("stream-join");
    try {
      const now = Date.now();
      const rows = prodRows(0, 30).map((r) => ({ ...r, ts: new Date(now - 5000).toISOString() }));
      dropCsv(path.join(dir, "in"), "a.csv", rows, true);
      // Outcomes for the first 20 predictions: the true label, a little later.
      const outcomes = rows.slice(0, 20).map((r, i) => `${r.id},${new Date(now - 4000).toISOString()},${prodLabels[i] as number}`);
      fs.mkdirSync(path.join(dir, "outcomes"), { recursive: true });
      fs.writeFileSync(path.join(dir, "outcomes", "o.csv"), `id,ts,actual\n${outcomes.join("\n")}\n`);
      const config = job(dir, {
        name: "joiner",
        schema: { fields: { id: "string", ts: "timestamp" }, key: "id", eventTime: "ts", fromModel: true },
        predictionLog: true,
        join: {
          source: { kind: "folder", path: "outcomes" },
          schema: { fields: { id: "string", ts: "timestamp", actual: "integer" }, key: "id", eventTime: "ts" },
          withinMs: "1m",
          watermarkMs: "1m",
          sink: { kind: "sqlite", path: "out.sqlite", table: "joined" },
          feedback: { actual: "actual" },
        },
      });
      const before = (await app.predictions.joinStats()).outcomes.matched;
      const handle = await runStream(app, config);
      const summary = await handle.done;
      expect(summary).toMatchObject({ reason: "completed", outputRows: 30, deadLetters: 0 });
      const joined = readTable(path.join(dir, "out.sqlite"), "joined");
      expect(joined).toHaveLength(20);
      for (const row of joined) {
        expect(row.request_id).toBe("stream:joiner:0");
        expect(row.key).toBe(`p${row.row as number}`);
        expect(row.actual).toBe(prodLabels[row.row as number]);
      }
      // The prediction log has flushed (runStream closed it); outcomes that came before their prediction was
      // written are pending until the next join pass.
      await app.predictions.joinPending({ horizonMs: app.config.feedback.horizonMs, pendingMs: app.config.feedback.pendingTimeoutMs });
      expect((await app.predictions.joinStats()).outcomes.matched - before).toBe(20);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("fails with the reason when a sink stays unavailable, after retries, and frees its checkpoint", async () => {
    const dir = tempDir("stream-fail");
    try {
      dropCsv(path.join(dir, "in"), "a.csv", prodRows(0, 5));
      const config = job(dir, { sinks: [{ kind: "postgres", url: "postgres://postgres@127.0.0.1:1/nothing", table: "predictions" }] });
      const summary = await startStream(deps, config, { retryDelaysMs: [10, 10] }).done;
      expect(summary.reason).toBe("failed");
      expect(summary.error).toMatch(/127\.0\.0\.1:1|connect|unavailable|refused/i);
      expect(fs.existsSync(path.join(dir, "checkpoint", "lock"))).toBe(false);
      // The file was not committed: a run with a working sink scores it.
      expect(await run(job(dir, {})).done).toMatchObject({ reason: "completed", outputRows: 5 });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("retries a batch while its PostgreSQL sink is down, then writes it once it is back: nothing lost, nothing twice", async () => {
    const dir = tempDir("stream-outage");
    const admin = await postgresAdmin();
    const database = `mlship_test_${Date.now().toString(36)}${Math.floor(Math.random() * 1e6)}`;
    await admin.query(`create database ${database}`);
    const url = `${POSTGRES_SERVER}/${database}`;
    try {
      fs.mkdirSync(path.join(dir, "in"));
      const registry = new PromRegistry();
      const config = job(dir, {
        trigger: { processingTime: "50ms" },
        sinks: [{ kind: "postgres", url, table: "predictions" }],
        aggregations: [{ name: "per_batch", window: { kind: "batch" }, groupBy: ["label"], metrics: [{ fn: "count" }], sink: { kind: "postgres", url, table: "counts" } }],
      });
      const stream = run(config, { retryDelaysMs: Array.from({ length: 20 }, () => 250), metrics: createStreamMetrics(registry) });
      dropCsv(path.join(dir, "in"), "a.csv", prodRows(0, 40));
      await waitFor(() => stream.progress.length === 1, "the first batch");
      // The database goes away: no new connection, and the open ones are ended.
      await admin.query(`alter database ${database} allow_connections false`);
      await admin.query(`select pg_terminate_backend(pid) from pg_stat_activity where datname = $1`, [database]);
      dropCsv(path.join(dir, "in"), "b.csv", prodRows(40, 100));
      const failedAttempts = async (): Promise<number> =>
        Number(/status="failed"\} (\d+)/.exec(await registry.getSingleMetricAsString("mlship_stream_batches_total"))?.[1] ?? 0);
      const deadline = Date.now() + 20_000;
      while ((await failedAttempts()) < 2) {
        if (Date.now() > deadline) throw new Error("the batch never failed");
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(stream.progress).toHaveLength(1);
      await admin.query(`alter database ${database} allow_connections true`);
      await waitFor(() => stream.progress.length === 2, "the retried batch");
      expect(await stream.stop()).toMatchObject({ reason: "stopped", batches: 2, outputRows: 100, error: null });
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        const rows = await client.query<{ n: string; ids: string }>("select count(*) as n, count(distinct _id) as ids from predictions");
        expect(rows.rows[0]).toEqual({ n: "100", ids: "100" });
        const counts = await client.query<{ n: string }>("select sum(count) as n from counts");
        expect(counts.rows[0]?.n).toBe("100");
      } finally {
        await client.end();
      }
    } finally {
      await admin.query(`alter database ${database} allow_connections true`).catch(() => undefined);
      await admin.query(`drop database if exists ${database} with (force)`);
      await admin.end();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("reads NATS JetStream (availableNow, then once): JSON objects and arrays scored, an undecodable message a dead letter", async () => {
    const dir = tempDir("stream-nats");
    const nc = await connect({ servers: "nats://127.0.0.1:4222" });
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    const name = `MLE_${randomBytes(5).toString("hex")}`.toUpperCase();
    await jsm.streams.add({ name, subjects: [`${name}.>`] });
    const message = (i: number): Record<string, unknown> => ({ id: `n${i}`, ...Object.fromEntries(bc.features.map((f, j) => [f, Number(prodFeatures[i]?.[j])])) });
    try {
      for (let i = 0; i < 30; i++) await js.publish(`${name}.in`, JSON.stringify(message(i)));
      await js.publish(`${name}.in`, JSON.stringify([message(30), message(31)]));
      await js.publish(`${name}.in`, "{not json");
      const config = job(dir, { source: { kind: "nats", stream: name, durable: "engine", maxMessages: 10 } });
      const first = run(config);
      expect(await first.done).toMatchObject({ reason: "completed", batches: 4, inputRows: 33, outputRows: 32, deadLetters: 1 });
      expect(first.progress.map((p) => p.numInputRows)).toEqual([10, 10, 10, 3]);
      expect(first.progress.at(-1)?.lag).toBe(0);
      const rows = readTable(path.join(dir, "out.sqlite"), "predictions");
      expect(rows.map((r) => r.key).sort()).toEqual(Array.from({ length: 32 }, (_, i) => `n${i}`).sort());
      expect(rows.find((r) => r.key === "n31")?._id).toBe(`${name}:31#1`);
      const dead = readJsonl(path.join(dir, "dead"));
      expect(dead).toEqual([expect.objectContaining({ _id: `decode:${name}:32`, stage: "decode", raw: "{not json" })]);
      // The durable consumer kept its position: once reads only what came since.
      await js.publish(`${name}.in`, JSON.stringify(message(40)));
      const second = run({ ...config, trigger: { kind: "once" } });
      expect(await second.done).toMatchObject({ reason: "completed", batches: 1, inputRows: 1, outputRows: 1 });
      expect(second.progress[0]?.batchId).toBe(4);
    } finally {
      await jsm.streams.delete(name).catch(() => false);
      await nc.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("keeps a NATS main batch read while the join source fails, and scores it once the join source is back", async () => {
    // The main batch's messages are this process's (marked in progress, up to ten ack waits) once pulled: dropping it
    // when the join read fails would leave them to nobody for minutes, and pull other messages the same way.
    const dir = tempDir("stream-join-down");
    const nc = await connect({ servers: "nats://127.0.0.1:4222" });
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    const main = `MLM_${randomBytes(5).toString("hex")}`.toUpperCase();
    const outcomes = `MLO_${randomBytes(5).toString("hex")}`.toUpperCase();
    await jsm.streams.add({ name: main, subjects: [`${main}.>`] });
    await jsm.streams.add({ name: outcomes, subjects: [`${outcomes}.>`] });
    const ts = new Date().toISOString();
    let stop: (() => Promise<StreamSummary>) | undefined;
    const message = (i: number): Record<string, unknown> => ({ id: `j${i}`, ts, ...Object.fromEntries(bc.features.map((f, j) => [f, Number(prodFeatures[i]?.[j])])) });
    try {
      const config = job(dir, {
        name: "joindown",
        source: { kind: "nats", stream: main, durable: "scorer", maxMessages: 5, ackWaitMs: "30s" },
        schema: { fields: { id: "string", ts: "timestamp" }, key: "id", eventTime: "ts", fromModel: true },
        trigger: { processingTime: "100ms" },
        join: {
          source: { kind: "nats", stream: outcomes, durable: "outcomes", ackWaitMs: "30s" },
          schema: { fields: { id: "string", ts: "timestamp", actual: "integer" }, key: "id", eventTime: "ts" },
          withinMs: "1m",
          watermarkMs: "1m",
          sink: { kind: "sqlite", path: "out.sqlite", table: "joined" },
        },
      });
      const stream = run(config, { retryDelaysMs: Array.from({ length: 50 }, () => 200) });
      stop = stream.stop;
      // Started (both consumers exist), then the join source goes away before the main messages come.
      const consumerThere = async (): Promise<boolean> => jsm.consumers.info(outcomes, "outcomes").then(() => true, () => false);
      const started = Date.now();
      while (!(await consumerThere())) {
        if (Date.now() - started > 20_000) throw new Error("timed out waiting for the join consumer");
        await new Promise((r) => setTimeout(r, 50));
      }
      await jsm.streams.delete(outcomes);
      for (let i = 0; i < 10; i++) await js.publish(`${main}.in`, JSON.stringify(message(i)));
      // Two failed join reads (no answer for 5 s each) while the main messages wait.
      await new Promise((r) => setTimeout(r, 11_000));
      expect(stream.progress.reduce((sum, p) => sum + p.numOutputRows, 0)).toBe(0);
      await jsm.streams.add({ name: outcomes, subjects: [`${outcomes}.>`] });
      await jsm.consumers.add(outcomes, { durable_name: "outcomes", ack_policy: AckPolicy.Explicit, ack_wait: 30_000_000_000 });
      // Back: every main message is scored well within its ack wait (not after the in-progress marks run out).
      await waitFor(() => stream.progress.reduce((sum, p) => sum + p.numOutputRows, 0) >= 10, "the main messages to be scored", 15_000);
      await stream.stop();
      expect(readTable(path.join(dir, "out.sqlite"), "predictions").map((r) => r.key).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `j${i}`).sort());
    } finally {
      await stop?.();
      await jsm.streams.delete(main).catch(() => false);
      await jsm.streams.delete(outcomes).catch(() => false);
      await nc.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses a second process on the same checkpoint", async () => {
    const dir = tempDir("stream-lock");
    try {
      fs.mkdirSync(path.join(dir, "in"));
      const config = job(dir, { trigger: { processingTime: "50ms" } });
      const first = run(config);
      await waitFor(() => fs.existsSync(path.join(dir, "checkpoint", "lock")), "the checkpoint lock");
      const second = await run(config).done;
      expect(second.reason).toBe("failed");
      expect(second.error).toMatch(/in use/);
      expect(await first.stop()).toMatchObject({ reason: "stopped" });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
