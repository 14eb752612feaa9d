// Stream job status in the metadata store, on real parts: the breast-cancer MLP from examples/models scores CSV files
// from a folder and JSON messages from NATS JetStream (the local server) through the real engine, and the status rows
// it writes to the SQLite metadata store are read back through StreamStatusStore and the REST routes (buildServer +
// streamRoutes, as `mlship serve` mounts them). PostgreSQL serves as a sink that is down at first, as a metadata
// store of its own for the status table, and as the store `mlship stream run` and `mlship serve` (the real CLI, in
// this process) share: the server shows what the stream commands report.
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { pino } from "pino";
import { connect } from "@nats-io/transport-node";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { silentLogger, type Logger } from "../../src/core/index.js";
import { buildServer } from "../../src/serve/index.js";
import { parseStreamConfig } from "../../src/stream/config.js";
import { startStream, type StreamDeps } from "../../src/stream/engine.js";
import { streamRoutes } from "../../src/stream/http.js";
import { DEFAULT_INSTANCE, staleAfterMs, StreamStatusReporter, StreamStatusStore, type StreamStatusTable } from "../../src/stream/status.js";
import type { StreamJobConfig, StreamProgress, StreamSummary } from "../../src/stream/types.js";
import { openSqlStore } from "../../src/store/index.js";
import type { StreamStatusView } from "../../src/ui/contract.js";
import { main } from "../../src/cli/main.js";
import { freshPostgres, freshSqlite, postgresAdmin, POSTGRES_SERVER, type FreshDatabase } from "../helpers/sql-stores.js";
import { fixture, REPO, runCli, tempDir } from "../cli/helpers.js";

const MODEL = "breast-cancer";
const EXAMPLE = path.join(REPO, "examples", "models", "breast-cancer");
const bc = fixture("breast_cancer_mlp");
const prodLines = fs.readFileSync(path.join(bc.dir, "prod.csv"), "utf8").trim().split(/\r?\n/);
const prodFeatures = prodLines.slice(1).map((line) => line.split(",").slice(0, bc.features.length));

let home: string;
let app: Mlship;
let deps: StreamDeps;
let statuses: StreamStatusStore;

beforeAll(async () => {
  home = tempDir("stream-status");
  app = await createMlship(defaultConfig({ home, user: "tester", "runtime.workers": 1, "log.level": "silent" }));
  await registerModel(app, EXAMPLE, { name: MODEL, alias: "production" });
  deps = { scoring: app.scoring, store: app.store, logger: app.logger };
  statuses = new StreamStatusStore(app.store);
}, 60_000);

afterAll(async () => {
  await app?.close();
  fs.rmSync(home, { recursive: true, force: true });
});

/** A CSV file written as writers must: under a `.` name, then renamed into place. */
function dropCsv(folder: string, name: string, rows: { id: string; ts?: string; cells: readonly string[] }[], withTs = false): void {
  fs.mkdirSync(folder, { recursive: true });
  const header = ["id", ...(withTs ? ["ts"] : []), ...bc.features].map((h) => (h.includes(",") ? `"${h}"` : h)).join(",");
  const temporary = path.join(folder, `.${name}`);
  fs.writeFileSync(temporary, `${header}\n${rows.map((r) => [r.id, ...(withTs ? [r.ts ?? ""] : []), ...r.cells].join(",")).join("\n")}\n`);
  fs.renameSync(temporary, path.join(folder, name));
}

function prodRows(from: number, to: number): { id: string; cells: readonly string[] }[] {
  return prodFeatures.slice(from, to).map((cells, i) => ({ id: `p${from + i}`, cells }));
}

function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString("hex")}`;
}

function job(dir: string, raw: Record<string, unknown>): StreamJobConfig {
  return parseStreamConfig(
    {
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

async function waitFor<T>(read: () => Promise<T>, ok: (value: T) => boolean, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: last ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const statusOf = (name: string, instance?: string): Promise<StreamStatusView | undefined> => statuses.get(name, instance);

describe("stream status written by the engine", { timeout: 60_000 }, () => {
  it("availableNow: running (retrying while its sink is down) then completed, with the job's counts", async () => {
    const dir = tempDir("stream-status-folder");
    const admin = await postgresAdmin();
    const database = `mlship_test_${randomBytes(6).toString("hex")}`;
    await admin.query(`create database ${database}`);
    const name = uniqueName("folder");
    try {
      const bad = [...(prodFeatures[0] as string[])];
      bad[2] = "abc";
      dropCsv(path.join(dir, "in"), "a.csv", [...prodRows(0, 10), { id: "bad-1", cells: bad }]);
      dropCsv(path.join(dir, "in"), "b.csv", prodRows(10, 25));
      dropCsv(path.join(dir, "in"), "c.csv", prodRows(25, 30));
      // The sink's database refuses connections: the job retries opening it, running, and says why.
      await admin.query(`alter database ${database} allow_connections false`);
      const config = job(dir, { name, sinks: [{ kind: "postgres", url: `${POSTGRES_SERVER}/${database}`, table: "predictions" }] });
      const progress: StreamProgress[] = [];
      const started = Date.now();
      const handle = startStream(deps, config, { retryDelaysMs: Array.from({ length: 40 }, () => 100), onProgress: (p) => progress.push(p) });
      const waiting = await waitFor(() => statusOf(name), (s) => s?.lastError !== null && s?.lastError !== undefined, "the sink's error in the status");
      expect(waiting).toMatchObject({
        name,
        instance: DEFAULT_INSTANCE,
        model: `${MODEL}@production`,
        version: null,
        state: "running",
        stale: false,
        pid: process.pid,
        source: `folder ${path.join(dir, "in")}`,
        trigger: "availableNow",
        endedAt: null,
        batches: 0,
        lastBatchAt: null,
        lastBatchId: null,
      });
      expect(waiting?.lastError).toMatch(/not currently accepting connections|connect|unavailable/i);
      expect(Date.parse(waiting?.startedAt as string)).toBeGreaterThanOrEqual(started - 1000);

      await admin.query(`alter database ${database} allow_connections true`);
      const summary = await handle.done;
      expect(summary).toMatchObject({ reason: "completed", batches: 3, inputRows: 31, outputRows: 30, deadLetters: 1 });

      // Written before `done` resolved.
      const done = await statusOf(name);
      expect(done).toMatchObject({
        state: "completed",
        stale: false,
        version: 1,
        batches: 3,
        inputRecords: 31,
        outputRecords: 30,
        deadLetters: 1,
        lateRecords: 0,
        lag: 0,
        lastBatchId: 2,
        lastError: null,
        inputRowsPerSecond: 0,
        processedRowsPerSecond: 0,
        stateRecords: 0,
        watermark: null,
      });
      expect(done?.lastBatchAt).not.toBeNull();
      expect(Date.parse(done?.endedAt as string)).toBeGreaterThanOrEqual(Date.parse(done?.lastBatchAt as string));
      expect(progress.map((p) => p.numInputRows)).toEqual([11, 15, 5]);
    } finally {
      await admin.query(`alter database ${database} allow_connections true`).catch(() => undefined);
      await admin.query(`drop database if exists ${database} with (force)`);
      await admin.end();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("NATS, processingTime: running after each micro-batch with rates, lag and operator state, heartbeats while idle, then stopped", async () => {
    const dir = tempDir("stream-status-nats");
    const nc = await connect({ servers: "nats://127.0.0.1:4222" });
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    const subject = `MLS_${randomBytes(5).toString("hex")}`.toUpperCase();
    await jsm.streams.add({ name: subject, subjects: [`${subject}.>`] });
    const name = uniqueName("nats");
    const message = (i: number): Record<string, unknown> => ({ id: `n${i}`, ...Object.fromEntries(bc.features.map((f, j) => [f, Number(prodFeatures[i]?.[j])])) });
    try {
      for (let i = 0; i < 30; i++) await js.publish(`${subject}.in`, JSON.stringify(message(i)));
      const config = job(dir, {
        name,
        source: { kind: "nats", stream: subject, durable: "status", maxMessages: 10 },
        trigger: { processingTime: "50ms" },
        aggregations: [{ name: "per_label", window: { kind: "tumbling", sizeMs: "1h" }, watermarkMs: "1m", groupBy: ["label"], metrics: [{ fn: "count" }], sink: { kind: "jsonl", path: "counts" } }],
      });
      const progress: StreamProgress[] = [];
      const handle = startStream(deps, config, { instance: "a", statusHeartbeatMs: 100, onProgress: (p) => progress.push(p) });
      const running = await waitFor(() => statusOf(name, "a"), (s) => s?.batches === 3, "three micro-batches in the status");
      expect(running).toMatchObject({
        instance: "a",
        state: "running",
        stale: false,
        source: `nats ${subject} durable status`,
        trigger: "processingTime 50ms",
        staleAfterSeconds: 0.3,
        inputRecords: 30,
        outputRecords: 30,
        deadLetters: 0,
        lag: 0,
        lastBatchId: 2,
        version: 1,
        endedAt: null,
        lastError: null,
      });
      const last = progress[2] as StreamProgress;
      expect(running?.inputRowsPerSecond).toBe(last.inputRowsPerSecond);
      expect(running?.processedRowsPerSecond).toBe(last.processedRowsPerSecond);
      expect(running?.processedRowsPerSecond).toBeGreaterThan(0);
      // One open window, a group per label seen; the watermark is the operator's.
      expect(running?.stateRecords).toBe(last.operators["aggregation:per_label"]?.stateRecords);
      expect(running?.stateRecords).toBeGreaterThan(0);
      expect(running?.watermark).toBe(new Date(last.operators["aggregation:per_label"]?.watermark as number).toISOString());
      // Only the instance's own row: the default instance never reported.
      expect(await statusOf(name)).toBeUndefined();

      // Idle: the heartbeat keeps moving.
      const beat = await waitFor(() => statusOf(name, "a"), (s) => s !== undefined && Date.parse(s.heartbeatAt) > Date.parse(running?.heartbeatAt as string) + 150, "a heartbeat while idle");
      expect(beat?.batches).toBe(3);

      expect(await handle.stop()).toMatchObject({ reason: "stopped", batches: 3 } satisfies Partial<StreamSummary>);
      const stopped = await statusOf(name, "a");
      expect(stopped).toMatchObject({ state: "stopped", stale: false, batches: 3, inputRecords: 30, lastError: null, inputRowsPerSecond: 0 });
      expect(stopped?.endedAt).not.toBeNull();
      // No heartbeat after the end.
      await new Promise((r) => setTimeout(r, 300));
      expect((await statusOf(name, "a"))?.heartbeatAt).toBe(stopped?.heartbeatAt);
    } finally {
      await jsm.streams.delete(subject).catch(() => false);
      await nc.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("counts records an event-time aggregation drops as late, and shows its watermark", async () => {
    const dir = tempDir("stream-status-late");
    const name = uniqueName("late");
    try {
      const base = Date.parse("2026-01-01T00:00:00Z");
      const at = (ms: number): string => new Date(base + ms).toISOString();
      // The first file moves the watermark an hour ahead; two records of the second are behind it: late.
      dropCsv(path.join(dir, "in"), "a.csv", [...prodRows(0, 5).map((r, i) => ({ ...r, ts: at(i * 1000) })), { ...(prodRows(5, 6)[0] as { id: string; cells: string[] }), ts: at(3_600_000) }], true);
      dropCsv(path.join(dir, "in"), "b.csv", prodRows(6, 9).map((r, i) => ({ ...r, ts: at(i === 2 ? 3_601_000 : i * 1000) })), true);
      const config = job(dir, {
        name,
        schema: { fields: { id: "string", ts: "timestamp" }, key: "id", eventTime: "ts", fromModel: true },
        aggregations: [{ name: "by_label", window: { kind: "tumbling", sizeMs: "1m" }, watermarkMs: "10s", groupBy: ["label"], metrics: [{ fn: "count" }], sink: { kind: "jsonl", path: "counts" } }],
      });
      const progress: StreamProgress[] = [];
      expect(await startStream(deps, config, { onProgress: (p) => progress.push(p) }).done).toMatchObject({ reason: "completed", batches: 2, inputRows: 9 });
      const done = await statusOf(name);
      expect(done).toMatchObject({ state: "completed", batches: 2, inputRecords: 9, outputRecords: 9, lateRecords: 2 });
      const operator = progress.at(-1)?.operators["aggregation:by_label"];
      expect(operator?.lateRecords).toBe(2);
      expect(done?.watermark).toBe(at(3_601_000 - 10_000));
      expect(done?.watermark).toBe(new Date(operator?.watermark as number).toISOString());
      expect(done?.stateRecords).toBe(operator?.stateRecords);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("failed, with the error, when a sink stays unavailable", async () => {
    const dir = tempDir("stream-status-fail");
    const name = uniqueName("failing");
    try {
      dropCsv(path.join(dir, "in"), "a.csv", prodRows(0, 5));
      const config = job(dir, { name, sinks: [{ kind: "postgres", url: "postgres://postgres@127.0.0.1:1/nothing", table: "predictions" }] });
      const handle = startStream(deps, config, { retryDelaysMs: [10, 10] });
      const summary = await handle.done;
      expect(summary.reason).toBe("failed");
      const failed = await statusOf(name);
      expect(failed).toMatchObject({ state: "failed", stale: false, batches: 0, inputRecords: 0 });
      expect(failed?.lastError).toBe(summary.error);
      expect(failed?.lastError).toMatch(/127\.0\.0\.1:1|connect|unavailable|refused/i);
      expect(failed?.endedAt).not.toBeNull();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("an outage longer than the retry delays pauses the job within maxOutageMs, and fails it past that", async () => {
    const dir = tempDir("stream-status-outage");
    const admin = await postgresAdmin();
    const database = `mlship_test_${randomBytes(6).toString("hex")}`;
    await admin.query(`create database ${database}`);
    try {
      dropCsv(path.join(dir, "in"), "a.csv", prodRows(0, 5));
      await admin.query(`alter database ${database} allow_connections false`);
      const sinks = [{ kind: "postgres" as const, url: `${POSTGRES_SERVER}/${database}`, table: "predictions" }];

      // Two 20 ms retries alone would fail at once; the outage budget keeps the job waiting (doubling delays).
      const name = uniqueName("outage");
      const handle = startStream(deps, job(dir, { name, sinks }), { retryDelaysMs: [20, 20], maxOutageMs: 60_000 });
      await waitFor(() => statusOf(name), (st) => st?.lastError !== null && st?.lastError !== undefined, "the sink's error in the status");
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(await statusOf(name)).toMatchObject({ state: "running", batches: 0 });
      await admin.query(`alter database ${database} allow_connections true`);
      expect(await handle.done).toMatchObject({ reason: "completed", outputRows: 5 });

      // Past its budget, the same outage ends the job as failed.
      await admin.query(`alter database ${database} allow_connections false`);
      const short = uniqueName("outage-short");
      const started = Date.now();
      const failed = await startStream(deps, job(dir, { name: short, sinks }), { retryDelaysMs: [20, 20], maxOutageMs: 500 }).done;
      expect(failed.reason).toBe("failed");
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      await admin.query(`alter database ${database} allow_connections true`).catch(() => undefined);
      await admin.query(`drop database if exists ${database} with (force)`);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a second process refused by the checkpoint leaves the running one's row alone", async () => {
    const dir = tempDir("stream-status-lock");
    const name = uniqueName("locked");
    try {
      fs.mkdirSync(path.join(dir, "in"));
      const config = job(dir, { name, trigger: { processingTime: "50ms" } });
      const first = startStream(deps, config);
      const running = await waitFor(() => statusOf(name), (s) => s?.state === "running", "the first process's row");
      const second = await startStream(deps, config).done;
      expect(second.reason).toBe("failed");
      expect(second.error).toMatch(/in use/);
      expect(await statusOf(name)).toMatchObject({ state: "running", startedAt: running?.startedAt, lastError: null });
      expect((await first.stop()).reason).toBe("stopped");
      expect((await statusOf(name))?.state).toBe("stopped");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("goes on when its status cannot be written (the table is gone), logging a warning once", async () => {
    const dir = tempDir("stream-status-nowrite");
    const broken = await openSqlStore({ home: dir });
    const warnings: string[] = [];
    const logger: Logger = pino({ level: "warn" }, { write: (line: string) => void warnings.push(String((JSON.parse(line) as { msg?: unknown }).msg)) });
    try {
      await broken.write(async (db) => {
        await db.schema.dropTable("stream_status").execute();
      });
      dropCsv(path.join(dir, "in"), "a.csv", prodRows(0, 10));
      dropCsv(path.join(dir, "in"), "b.csv", prodRows(10, 20));
      const summary = await startStream({ ...deps, store: broken, logger }, job(dir, { name: uniqueName("nowrite") })).done;
      expect(summary).toMatchObject({ reason: "completed", batches: 2, outputRows: 20, error: null });
      expect(warnings.filter((w) => w.includes("stream status")).length).toBe(1);
    } finally {
      await broken.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

function row(name: string, overrides: Partial<StreamStatusTable>): StreamStatusTable {
  const at = new Date().toISOString();
  return {
    name,
    instance: DEFAULT_INSTANCE,
    model: `${MODEL}@production`,
    version: 1,
    state: "running",
    host: "worker-1",
    pid: 4242,
    source: "folder /data/in",
    trigger: "processingTime 1000ms",
    stale_after_ms: staleAfterMs(5000, { kind: "processingTime", intervalMs: 1000 }),
    started_at: at,
    heartbeat_at: at,
    ended_at: null,
    last_batch_at: at,
    last_batch_id: 7,
    batches: 8,
    input_records: 3_000_000_000,
    output_records: 2_999_999_990,
    dead_letters: 10,
    late_records: 2,
    input_rows_per_second: 1234.5,
    processed_rows_per_second: 8000.25,
    lag: 17,
    state_records: 3,
    watermark: at,
    last_error: null,
    ...overrides,
  };
}

describe("reading stream status", () => {
  it("calls a running job stale after 3 heartbeats (or trigger intervals) without one", () => {
    expect(staleAfterMs(5000, { kind: "availableNow" })).toBe(15_000);
    expect(staleAfterMs(5000, { kind: "processingTime", intervalMs: 1000 })).toBe(15_000);
    expect(staleAfterMs(5000, { kind: "processingTime", intervalMs: 60_000 })).toBe(180_000);
  });

  it.each(["sqlite", "postgres"] as const)("on %s: upserts rows, reads big counters back as numbers, and judges stale at read time", async (dialect) => {
    let admin: pg.Client | undefined;
    let database: FreshDatabase;
    if (dialect === "postgres") {
      admin = await postgresAdmin();
      database = await freshPostgres(admin, "mlship-stream-status");
    } else {
      database = await freshSqlite("mlship-stream-status");
    }
    try {
      const store = await database.open();
      expect(store.dialect).toBe(dialect);
      const statusStore = new StreamStatusStore(store);
      const old = new Date(Date.now() - 60_000).toISOString();
      await statusStore.put(row("fresh", {}));
      await statusStore.put(row("gone", { heartbeat_at: old }));
      await statusStore.put(row("ended", { state: "stopped", heartbeat_at: old, ended_at: old }));
      await statusStore.put(row("fresh", { batches: 9, instance: "b" }));
      // An upsert replaces the row of its name and instance.
      await statusStore.put(row("fresh", { batches: 10, lag: null }));
      const list = await statusStore.list();
      expect(list.map((s) => [s.name, s.instance, s.stale])).toEqual([
        ["ended", "default", false],
        ["fresh", "b", false],
        ["fresh", "default", false],
        ["gone", "default", true],
      ]);
      const fresh = list.find((s) => s.name === "fresh" && s.instance === "default");
      expect(fresh).toMatchObject({ batches: 10, lag: null, inputRecords: 3_000_000_000, outputRecords: 2_999_999_990, inputRowsPerSecond: 1234.5, processedRowsPerSecond: 8000.25, pid: 4242, version: 1, lastBatchId: 7, staleAfterSeconds: 15 });
      // The reporter writes through the same table on this dialect too.
      const reporter = new StreamStatusReporter(store, { name: "reported", model: "m@production", trigger: { kind: "once" }, logger: silentLogger() });
      reporter.start("folder /x");
      await reporter.end({ stream: "reported", reason: "completed", batches: 0, inputRows: 0, outputRows: 0, deadLetters: 0, error: null });
      expect(await statusStore.get("reported")).toMatchObject({ state: "completed", source: "folder /x", trigger: "once", batches: 0 });
    } finally {
      await database.dispose();
      await admin?.end();
    }
  });
});

describe("GET /api/v1/streams", () => {
  let server: ReturnType<typeof buildServer>;

  beforeAll(async () => {
    const old = new Date(Date.now() - 120_000).toISOString();
    await statuses.put(row("http-running", {}));
    await statuses.put(row("http-running", { instance: "b", state: "failed", last_error: "sink down", ended_at: old }));
    await statuses.put(row("http-silent", { heartbeat_at: old }));
    server = buildServer({ scoring: app.scoring, registry: app.registry, logger: false });
    await server.register(streamRoutes, { store: app.store });
  });

  afterAll(async () => {
    await server?.close();
  });

  it("lists every job and instance that reported, with stale judged now", async () => {
    const res = await server.inject("/api/v1/streams");
    expect(res.statusCode).toBe(200);
    const { streams } = res.json<{ streams: StreamStatusView[] }>();
    const mine = streams.filter((s) => s.name.startsWith("http-"));
    expect(mine.map((s) => [s.name, s.instance, s.state, s.stale])).toEqual([
      ["http-running", "b", "failed", false],
      ["http-running", "default", "running", false],
      ["http-silent", "default", "running", true],
    ]);
    // Jobs the engine ran in this file reported to the same store.
    expect(streams.some((s) => s.name.startsWith("folder-") && s.state === "completed")).toBe(true);
    expect(mine[1]).toMatchObject({ inputRecords: 3_000_000_000, deadLetters: 10, lateRecords: 2, lag: 17, host: "worker-1", pid: 4242 });
  });

  it("answers one job's instance, and 404 naming what is unknown", async () => {
    const one = await server.inject("/api/v1/streams/http-running");
    expect(one.statusCode).toBe(200);
    expect(one.json<StreamStatusView>()).toMatchObject({ name: "http-running", instance: "default", state: "running" });
    const b = await server.inject("/api/v1/streams/http-running?instance=b");
    expect(b.json<StreamStatusView>()).toMatchObject({ instance: "b", state: "failed", lastError: "sink down" });
    expect((await server.inject("/api/v1/streams/http-silent")).json<StreamStatusView>().stale).toBe(true);

    const unknown = await server.inject("/api/v1/streams/nobody");
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json()).toMatchObject({ code: "MLSHIP_ERR_STREAM_NOT_FOUND", field: "name" });
    const noInstance = await server.inject("/api/v1/streams/http-running?instance=zzz");
    expect(noInstance.statusCode).toBe(404);
    expect(noInstance.json()).toMatchObject({ code: "MLSHIP_ERR_STREAM_NOT_FOUND", field: "instance" });
    expect(noInstance.json<{ error: string }>().error).toMatch(/b, default/);
  });
});

describe("`mlship stream run` and `mlship serve` on one PostgreSQL store", { timeout: 90_000 }, () => {
  it("the server shows what the stream commands report: completed, then a running job that is stopped", async () => {
    const admin = await postgresAdmin();
    const database = `mlship_test_${randomBytes(6).toString("hex")}`;
    await admin.query(`create database ${database}`);
    const store = `${POSTGRES_SERVER}/${database}`;
    const dir = tempDir("stream-status-cli");
    const env = { MLSHIP_HOME: dir, MLSHIP_STORE: store, MLSHIP_USER: "tester", MLSHIP_WORKERS: "1" };
    const serveStop = new AbortController();
    const streamStop = new AbortController();
    let serving: Promise<number> | undefined;
    let follower: Promise<{ code: number }> | undefined;
    try {
      const setup = await createMlship(defaultConfig({ home: dir, store, user: "tester", "log.level": "silent" }));
      try {
        await registerModel(setup, EXAMPLE, { name: MODEL, alias: "production" });
      } finally {
        await setup.close();
      }
      const writeJob = (name: string, folder: string, trigger: unknown): string => {
        const file = path.join(dir, `${name}.json`);
        fs.writeFileSync(
          file,
          JSON.stringify({
            name,
            model: `${MODEL}@production`,
            source: { kind: "folder", path: folder },
            schema: { fields: { id: "string" }, key: "id", fromModel: true },
            trigger,
            sinks: [{ kind: "jsonl", path: path.join(dir, `${name}-out`) }],
            checkpoint: path.join(dir, `${name}-checkpoint`),
          }),
        );
        return file;
      };
      dropCsv(path.join(dir, "in"), "a.csv", prodRows(0, 12));
      dropCsv(path.join(dir, "in"), "b.csv", prodRows(12, 20));
      const once = await runCli(["stream", "run", writeJob("nightly-files", path.join(dir, "in"), "availableNow")], { env, cwd: dir });
      expect(once.code, once.stderr).toBe(0);

      let stdout = "";
      serving = main(["node", "mlship", "serve", "--port", "0", "--grpc-port", "-1"], {
        stdout: { write: (s: string) => (stdout += s) },
        stderr: { write: () => true },
        env: { ...env, MLSHIP_LOG_LEVEL: "silent" },
        cwd: dir,
        handleSignals: false,
        signal: serveStop.signal,
      });
      const url = (
        await waitFor(async () => /serving on (http:\/\/\S+)/.exec(stdout), (m) => m !== null, "the server")
      )?.[1] as string;
      const streams = async (): Promise<StreamStatusView[]> => ((await (await fetch(`${url}/api/v1/streams`)).json()) as { streams: StreamStatusView[] }).streams;
      const one = async (name: string): Promise<StreamStatusView | undefined> => {
        const res = await fetch(`${url}/api/v1/streams/${name}`);
        return res.status === 404 ? undefined : ((await res.json()) as StreamStatusView);
      };

      expect(await streams()).toEqual([expect.objectContaining({ name: "nightly-files", state: "completed", batches: 2, inputRecords: 20, outputRecords: 20, stale: false, lag: 0 })]);

      // A job started after the server: it shows up running, then stopped.
      fs.mkdirSync(path.join(dir, "live"));
      follower = runCli(["stream", "run", writeJob("live-files", path.join(dir, "live"), { processingTime: "100ms" })], { env, cwd: dir, signal: streamStop.signal });
      await waitFor(() => one("live-files"), (s) => s?.state === "running", "the live job running");
      dropCsv(path.join(dir, "live"), "c.csv", prodRows(20, 27));
      const busy = await waitFor(() => one("live-files"), (s) => s?.batches === 1, "the live job's batch");
      expect(busy).toMatchObject({ state: "running", stale: false, inputRecords: 7, outputRecords: 7, trigger: "processingTime 100ms", pid: process.pid });
      streamStop.abort();
      expect((await follower).code).toBe(0);
      expect(await one("live-files")).toMatchObject({ state: "stopped", batches: 1 });
      const missing = await fetch(`${url}/api/v1/streams/nothing-here`);
      expect(missing.status).toBe(404);
      expect(((await missing.json()) as { code: string }).code).toBe("MLSHIP_ERR_STREAM_NOT_FOUND");
    } finally {
      streamStop.abort();
      await follower?.catch(() => undefined);
      serveStop.abort();
      await serving?.catch(() => undefined);
      await admin.query(`drop database if exists ${database} with (force)`);
      await admin.end();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
