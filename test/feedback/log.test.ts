// The asynchronous prediction log over a real scoring service (breast-cancer and diabetes examples): every row
// stored exactly once, spill to disk while the store is down and replay when it is back, recovery of a crashed
// logger's spill files, the memory and spill bounds, input logging modes, and the real SQLite prediction store.
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import type { Worker } from "node:worker_threads";
import path from "node:path";
import { sql } from "kysely";
import type pg from "pg";
import { Registry as MetricsRegistry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { MlshipError, silentLogger } from "../../src/core/index.js";
import { PredictionLogger, predictionLogMetrics, type PredictionLoggerOptions } from "../../src/feedback/log.js";
import { SqlPredictionStore } from "../../src/feedback/store.js";
import type { PredictionRecord, PredictionStore } from "../../src/feedback/types.js";
import type { Registry } from "../../src/registry/index.js";
import type { SqlStore } from "../../src/store/index.js";
import type { ScoreOptions, ScoreResult } from "../../src/scoring/index.js";
import { freshPostgres, freshSqlite, postgresAdmin, type FreshDatabase } from "../helpers/sql-stores.js";

const EXAMPLES = path.resolve(__dirname, "../../examples/models");

/**
 * A prediction store holding rows in memory that can be switched to fail: the "store down" of the failure tests.
 * Like the SQL store it ignores a row already stored (same request id, row, model and version).
 */
class MemoryPredictionStore implements PredictionStore {
  readonly rows = new Map<string, PredictionRecord>();
  /** Rows offered again after they were stored (replays of rows a timed-out write had stored). */
  duplicates = 0;
  calls = 0;
  down = false;
  /** Fail every call after this many successful ones (a store that goes down mid-flush). */
  failAfter = Number.POSITIVE_INFINITY;

  /** A slow store answers (and stores) only after this long. */
  delayMs = 0;

  async insertPredictions(records: readonly PredictionRecord[]): Promise<number> {
    if (this.down || this.calls >= this.failAfter) throw new MlshipError("MLSHIP_ERR_STORE_UNAVAILABLE", "the prediction store is down");
    this.calls += 1;
    if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    let inserted = 0;
    for (const record of records) {
      const key = `${record.requestId}\u0000${record.row}\u0000${record.model}\u0000${record.version}`;
      if (this.rows.has(key)) this.duplicates += 1;
      else {
        this.rows.set(key, structuredClone(record));
        inserted += 1;
      }
    }
    return inserted;
  }

  private unused(): never {
    throw new Error("not used by the prediction log");
  }

  ingestOutcomes = (): never => this.unused();
  ingestEvents = (): never => this.unused();
  joinPending = (): never => this.unused();
  joined = (): never => this.unused();
  countPredictions = (): never => this.unused();
  eventTotals = (): never => this.unused();
  joinStats = (): never => this.unused();
  exportPredictions = (): never => this.unused();
  activeVersions = (): never => this.unused();
  variantCounts = (): never => this.unused();
  prune = (): never => this.unused();
}

interface Example {
  columns: string[];
  data: number[][];
}

let home: string;
let app: Mlship;
const examples = new Map<string, Example>();
/** The registry, counting `getVersion` calls (the logger must read each version once). */
let registry: Registry;
let getVersionCalls = 0;
/** While set, the registry answers `getVersion` with this error (a registry that is down). */
let registryDown: MlshipError | undefined;

beforeAll(async () => {
  home = await mkdtemp(path.join(os.tmpdir(), "mlship-feedback-log-"));
  app = await createMlship(defaultConfig({ home, "runtime.workers": 1, "cache.backend": "off" }), { logger: silentLogger() });
  for (const name of ["breast-cancer", "diabetes"]) {
    await registerModel(app, path.join(EXAMPLES, name), { name, alias: "production" });
    const body = JSON.parse(await readFile(path.join(EXAMPLES, name, "input_example.json"), "utf8")) as { dataframe_split: Example };
    examples.set(name, body.dataframe_split);
  }
  // Input logging modes come from the package's feedback section: the same model, logged three other ways.
  for (const [name, section] of [
    ["bc-hashed", "  log_inputs: hashed\n"],
    ["bc-sampled", "  log_inputs: sampled\n  sample_rate: 0.5\n"],
    ["bc-none", "  log_inputs: none\n"],
  ] as const) {
    const dir = path.join(home, `pkg-${name}`);
    await cp(path.join(EXAMPLES, "breast-cancer"), dir, { recursive: true });
    const file = path.join(dir, "mlship.yaml");
    await writeFile(file, `${await readFile(file, "utf8")}feedback:\n${section}`);
    await registerModel(app, dir, { name, alias: "production" });
  }
  registry = new Proxy(app.registry, {
    get(target, prop) {
      const value = Reflect.get(target, prop) as unknown;
      if (prop === "getVersion") {
        return (name: string, version: number) => {
          getVersionCalls += 1;
          return registryDown === undefined ? target.getVersion(name, version) : Promise.reject(registryDown);
        };
      }
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}, 60_000);

afterAll(async () => {
  await app?.close();
  await rm(home, { recursive: true, force: true });
});

async function spillDir(): Promise<string> {
  return mkdtemp(path.join(home, "spill-"));
}

function newLogger(store: PredictionStore, dir: string, options: Partial<PredictionLoggerOptions> = {}): PredictionLogger {
  return new PredictionLogger({ scoring: app.scoring, registry, store, logger: silentLogger(), spillDir: dir, timers: false, ...options });
}

/** `rows` rows of the model's example, each a little different so that no two requests are alike. */
function rowsFor(model: string, rows: number, seed: number): { columns: string[]; data: number[][] } {
  const example = examples.get(model.startsWith("bc-") ? "breast-cancer" : model.startsWith("diabetes") ? "diabetes" : model) as Example;
  const data = Array.from({ length: rows }, (_, r) => (example.data[(seed + r) % example.data.length] as number[]).map((v) => v * (1 + ((seed * 7 + r) % 50) / 1000)));
  return { columns: example.columns, data };
}

async function score(model: string, rows: number, seed: number, options: ScoreOptions = {}): Promise<ScoreResult> {
  return app.scoring.score(model, { kind: "mlflow", body: { dataframe_split: rowsFor(model, rows, seed) } }, options);
}

/** Scores `count` requests, a third on diabetes, of 1 to 4 rows, `parallel` at a time; returns the results. */
async function scoreMany(count: number, parallel = 25, offset = 0): Promise<ScoreResult[]> {
  const results: ScoreResult[] = [];
  for (let start = 0; start < count; start += parallel) {
    const group = Array.from({ length: Math.min(parallel, count - start) }, (_, j) => {
      const i = offset + start + j;
      return score(i % 3 === 0 ? "diabetes" : "breast-cancer", 1 + (i % 4), i);
    });
    results.push(...(await Promise.all(group)));
  }
  return results;
}

const keysOf = (results: readonly ScoreResult[]): string[] =>
  results.flatMap((r) => Array.from({ length: r.rows }, (_, row) => `${r.requestId}\u0000${row}\u0000${r.model}\u0000${r.version}`)).sort();

async function spillFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).sort();
}

async function waitFor(condition: () => boolean, what: string | (() => string), timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === "string" ? what : what()}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Scores `count` one-row requests; each row past `bufferRows` is waited for in the spill before the next is scored. A
 * spill slower than the traffic (a worker still starting on a busy machine) lets the overflow fill and drops rows,
 * which is the memory bound working, not the case these tests check.
 */
async function scoreOneByOnePastBound(logger: PredictionLogger, bufferRows: number, count: number, seed: number, results: ScoreResult[]): Promise<void> {
  for (let i = 0; i < count; i++) {
    results.push(await score("breast-cancer", 1, seed + i));
    const spilled = i + 1 - bufferRows;
    if (spilled > 0) await waitFor(() => logger.stats().spilled === spilled, () => `row ${i} to be spilled (${JSON.stringify(logger.stats())})`);
  }
}

const NO_DROPS = { spill_full: 0, spill_error: 0, spill_corrupt: 0, unknown_version: 0, registry_unavailable: 0, record_error: 0, buffer_full: 0, worker_error: 0 };

describe("PredictionLogger", () => {
  it("stores every row of 500 requests (some multi-row) exactly once, in batches off the request path", async () => {
    const store = new MemoryPredictionStore();
    const logger = newLogger(store, await spillDir(), { timers: true, flushMs: 20, maxBatchRows: 50 });
    await logger.start();
    const results = await scoreMany(500);
    // The monitor's own calls are not predictions anyone acts on.
    await score("breast-cancer", 2, 1, { protocol: "monitor" });
    await logger.close();
    const total = results.reduce((n, r) => n + r.rows, 0);
    expect(total).toBeGreaterThan(1000);
    expect([...store.rows.keys()].sort()).toEqual(keysOf(results));
    expect(store.duplicates).toBe(0);
    expect(store.calls).toBeGreaterThanOrEqual(Math.ceil(total / 50));
    expect(logger.stats()).toEqual({
      received: total, written: total, buffered: 0, spilled: 0, replayed: 0, spillBacklog: 0, dropped: NO_DROPS, storeErrors: 0,
    });
    // Every stored row is the one its request answered.
    const byRequest = new Map(results.map((r) => [r.requestId, r]));
    for (const record of store.rows.values()) {
      const result = byRequest.get(record.requestId) as ScoreResult;
      expect(record.model).toBe(result.model);
      if (result.model === "breast-cancer") expect(record.prediction).toBe((result.outputs.class?.data as string[])[record.row]);
      else expect(Math.fround(record.prediction as number)).toBe((result.outputs.prediction?.data as Float32Array)[record.row]);
    }
  }, 120_000);

  it("the listener only keeps events: records are built, and versions read, in flush()", async () => {
    const store = new MemoryPredictionStore();
    const logger = newLogger(store, await spillDir());
    await logger.start();
    const callsBefore = getVersionCalls;
    const results = await scoreMany(12, 4, 1000);
    const total = results.reduce((n, r) => n + r.rows, 0);
    expect(logger.stats()).toMatchObject({ received: total, buffered: total, written: 0 });
    expect(store.calls).toBe(0);
    expect(getVersionCalls).toBe(callsBefore);
    await logger.flush();
    expect(logger.stats()).toMatchObject({ received: total, buffered: 0, written: total });
    // One registry read per version (breast-cancer@1 and diabetes@1), cached for later flushes.
    expect(getVersionCalls - callsBefore).toBe(2);
    await scoreMany(6, 3, 2000);
    await logger.flush();
    expect(getVersionCalls - callsBefore).toBe(2);
    await logger.close();
  });

  it("store down: rows spill to one file per flush; store back: replayed, spill folder empty, counts right", async () => {
    const store = new MemoryPredictionStore();
    const dir = await spillDir();
    const logger = newLogger(store, dir, { maxBatchRows: 7 });
    await logger.start();
    store.down = true;
    const first = await scoreMany(20, 5, 3000);
    await logger.flush();
    const second = await scoreMany(10, 5, 4000);
    await logger.flush();
    const rows = [...first, ...second].reduce((n, r) => n + r.rows, 0);
    const files = await spillFiles(dir);
    expect(files).toHaveLength(2);
    expect(files.every((f) => /^predictions-\d{15}-\d{8}-\d+\.jsonl$/.test(f))).toBe(true);
    const spilled = (await Promise.all(files.map((f) => readFile(path.join(dir, f), "utf8")))).flatMap((text) => text.trim().split("\n").map((line) => JSON.parse(line) as PredictionRecord));
    expect(spilled).toHaveLength(rows);
    expect(spilled.map((r) => `${r.requestId}\u0000${r.row}\u0000${r.model}\u0000${r.version}`).sort()).toEqual(keysOf([...first, ...second]));
    // After the first failed write a flush spills the rest without hammering the store: one error per flush.
    expect(logger.stats()).toEqual({
      received: rows, written: 0, buffered: 0, spilled: rows, replayed: 0, spillBacklog: rows, dropped: NO_DROPS, storeErrors: 2,
    });

    // Still down: the replay stops at the first file and keeps it.
    expect(await logger.replay()).toBe(0);
    expect(await spillFiles(dir)).toEqual(files);
    expect(logger.stats().storeErrors).toBe(3);

    store.down = false;
    expect(await logger.replay()).toBe(rows);
    expect(await spillFiles(dir)).toEqual([]);
    expect([...store.rows.keys()].sort()).toEqual(keysOf([...first, ...second]));
    expect(logger.stats()).toEqual({
      received: rows, written: 0, buffered: 0, spilled: rows, replayed: rows, spillBacklog: 0, dropped: NO_DROPS, storeErrors: 3,
    });
    await logger.close();
  });

  it("a store that fails mid-flush: the written batches stay written, the rest spill and replay without duplicates", async () => {
    const store = new MemoryPredictionStore();
    const dir = await spillDir();
    const logger = newLogger(store, dir, { maxBatchRows: 5 });
    await logger.start();
    store.failAfter = 2;
    const results = await scoreMany(15, 5, 5000);
    const rows = results.reduce((n, r) => n + r.rows, 0);
    await logger.flush();
    expect(logger.stats()).toMatchObject({ written: 10, spilled: rows - 10, storeErrors: 1 });
    store.failAfter = Number.POSITIVE_INFINITY;
    await logger.replay();
    expect([...store.rows.keys()].sort()).toEqual(keysOf(results));
    expect(store.duplicates).toBe(0);
    await logger.close();
  });

  it("a new logger over the spill folder of a crashed one replays it on start (a line cut short is counted)", async () => {
    const store = new MemoryPredictionStore();
    const dir = await spillDir();
    const crashed = newLogger(store, dir);
    await crashed.start();
    store.down = true;
    const results = await scoreMany(16, 4, 6000);
    await crashed.flush();
    await crashed.close();
    const rows = results.reduce((n, r) => n + r.rows, 0);
    const [file] = await spillFiles(dir);
    // The crash cut a last line short.
    await writeFile(path.join(dir, file as string), '{"requestId":"cut-sh', { flag: "a" });

    store.down = false;
    const next = newLogger(store, dir);
    await next.start();
    expect(next.stats().spillBacklog).toBe(rows + 1);
    await waitFor(() => next.stats().spillBacklog === 0, "the replay of the old spill files");
    expect(await spillFiles(dir)).toEqual([]);
    expect([...store.rows.keys()].sort()).toEqual(keysOf(results));
    expect(next.stats()).toMatchObject({ received: 0, replayed: rows, dropped: { ...NO_DROPS, spill_corrupt: 1 } });
    await next.close();
  });

  it("a slow store: a write past the timeout counts as failed and spills; the late rows make no duplicates", async () => {
    const store = new MemoryPredictionStore();
    const dir = await spillDir();
    const logger = newLogger(store, dir, { writeTimeoutMs: 50 });
    await logger.start();
    store.delayMs = 300;
    const results = await scoreMany(8, 4, 6500);
    const rows = results.reduce((n, r) => n + r.rows, 0);
    await logger.flush();
    expect(logger.stats()).toMatchObject({ written: 0, spilled: rows, storeErrors: 1 });
    // The slow write lands after all; the replay of its rows is ignored by the store's unique key.
    await waitFor(() => store.rows.size === rows, "the slow write to land");
    store.delayMs = 0;
    expect(await logger.replay()).toBe(rows);
    expect(store.duplicates).toBe(rows);
    expect([...store.rows.keys()].sort()).toEqual(keysOf(results));
    expect(await spillFiles(dir)).toEqual([]);
    await logger.close();
  });

  it("while the registry is down, events wait in memory; rows the logger cannot build at close are counted", async () => {
    const store = new MemoryPredictionStore();
    const logger = newLogger(store, await spillDir());
    await logger.start();
    // A version no logger has read yet: a fresh registration.
    const record = await registerModel(app, path.join(EXAMPLES, "diabetes"), { name: "diabetes-late" });
    registryDown = new MlshipError("MLSHIP_ERR_STORE_UNAVAILABLE", "the registry database is down");
    try {
      const first = await score(`diabetes-late@${record.version}`, 3, 1);
      await logger.flush();
      expect(logger.stats()).toMatchObject({ received: 3, buffered: 3, written: 0, dropped: NO_DROPS });
      registryDown = undefined;
      await logger.flush();
      expect(logger.stats()).toMatchObject({ received: 3, buffered: 0, written: 3 });
      expect([...store.rows.keys()].sort()).toEqual(keysOf([first]));
      const second = new PredictionLogger({ scoring: app.scoring, registry, store, logger: silentLogger(), spillDir: await spillDir(), timers: false });
      await second.start();
      registryDown = new MlshipError("MLSHIP_ERR_STORE_UNAVAILABLE", "the registry database is down");
      await score(`diabetes-late@${record.version}`, 2, 2);
      await second.close();
      expect(second.stats()).toMatchObject({ received: 2, buffered: 0, written: 0, dropped: { ...NO_DROPS, registry_unavailable: 2 } });
    } finally {
      registryDown = undefined;
      await logger.close();
    }
  });

  it("over the memory bound, rows go straight to spill files instead of growing the buffer", async () => {
    const store = new MemoryPredictionStore();
    const dir = await spillDir();
    const logger = newLogger(store, dir, { bufferRows: 10 });
    await logger.start();
    const results: ScoreResult[] = [];
    await scoreOneByOnePastBound(logger, 10, 30, 7000, results);
    expect(logger.stats()).toMatchObject({ received: 30, buffered: 10, spilled: 20, written: 0, spillBacklog: 20 });
    expect(store.calls).toBe(0);
    await logger.flush();
    await logger.replay();
    expect([...store.rows.keys()].sort()).toEqual(keysOf(results));
    expect(logger.stats()).toMatchObject({ received: 30, buffered: 0, written: 10, replayed: 20, spillBacklog: 0, dropped: NO_DROPS });
    expect(await spillFiles(dir)).toEqual([]);
    await logger.close();
  });

  it("rows a slow store is still taking count against the memory bound", async () => {
    const store = new MemoryPredictionStore();
    const dir = await spillDir();
    const logger = newLogger(store, dir, { bufferRows: 6 });
    await logger.start();
    store.delayMs = 200;
    const results: ScoreResult[] = [];
    for (let i = 0; i < 4; i++) results.push(await score("breast-cancer", 1, 7500 + i));
    const writing = logger.flush();
    await waitFor(() => store.calls === 1, "the slow write to start");
    for (let i = 4; i < 8; i++) results.push(await score("breast-cancer", 1, 7500 + i));
    await waitFor(() => logger.stats().spilled === 2, "the overflow to be spilled");
    expect(logger.stats()).toMatchObject({ received: 8, buffered: 6, spilled: 2, written: 0 });
    await writing;
    store.delayMs = 0;
    await logger.flush();
    await logger.replay();
    expect(logger.stats()).toMatchObject({ received: 8, buffered: 0, written: 6, spilled: 2, replayed: 2, spillBacklog: 0 });
    expect([...store.rows.keys()].sort()).toEqual(keysOf(results));
    await logger.close();
  });

  it("over the spill bound, rows are dropped and counted; nothing else is lost", async () => {
    const store = new MemoryPredictionStore();
    const dir = await spillDir();
    const spillMaxBytes = 5000;
    const logger = newLogger(store, dir, { spillMaxBytes });
    await logger.start();
    store.down = true;
    for (let i = 0; i < 12; i++) await score("breast-cancer", 1, 8000 + i);
    await logger.flush();
    const stats = logger.stats();
    expect(stats.spilled).toBeGreaterThan(0);
    expect(stats.dropped.spill_full).toBeGreaterThan(0);
    expect(stats.spilled + (stats.dropped.spill_full ?? 0)).toBe(12);
    const sizes = await Promise.all((await spillFiles(dir)).map(async (f) => (await readFile(path.join(dir, f))).length));
    expect(sizes.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(spillMaxBytes);
    const registry = new MetricsRegistry();
    predictionLogMetrics(logger, registry);
    const text = await registry.metrics();
    expect(text).toContain(`mlship_prediction_log_dropped_total{reason="spill_full"} ${stats.dropped.spill_full}`);
    expect(text).toContain(`mlship_prediction_log_rows_total{state="received"} 12`);
    expect(text).toContain(`mlship_prediction_log_rows_total{state="spilled"} ${stats.spilled}`);
    expect(text).toContain(`mlship_prediction_log_spill_backlog_rows ${stats.spilled}`);
    expect(text).toContain("mlship_prediction_log_buffered_rows 0");
    expect(text).toContain("mlship_prediction_log_store_errors_total 1");
    await logger.close();
  });

  it("logs inputs as the package's feedback section says: hashed, sampled (per request) or none", async () => {
    const store = new MemoryPredictionStore();
    // Draws alternate: 0.2 (< 0.5, logged in full), 0.8 (hashed).
    let draw = 0;
    const logger = newLogger(store, await spillDir(), { random: () => (draw++ % 2 === 0 ? 0.2 : 0.8) });
    await logger.start();
    const full = await score("breast-cancer", 3, 9000);
    const hashed = await score("bc-hashed", 3, 9000);
    const sampledIn = await score("bc-sampled", 3, 9000);
    const sampledOut = await score("bc-sampled", 3, 9000);
    const none = await score("bc-none", 3, 9000);
    await logger.close();
    const rowsOf = (r: ScoreResult): PredictionRecord[] => [...store.rows.values()].filter((x) => x.requestId === r.requestId).sort((a, b) => a.row - b.row);
    const fullRows = rowsOf(full);
    expect(fullRows.every((r) => r.inputs !== null && r.inputsHash === null)).toBe(true);
    const hashes = rowsOf(hashed).map((r) => r.inputsHash);
    expect(rowsOf(hashed).every((r) => r.inputs === null)).toBe(true);
    expect(hashes.every((h) => h !== null && /^[0-9a-f]{64}$/.test(h))).toBe(true);
    expect(rowsOf(sampledIn).map((r) => r.inputs)).toEqual(fullRows.map((r) => r.inputs));
    expect(rowsOf(sampledIn).every((r) => r.inputsHash === null)).toBe(true);
    expect(rowsOf(sampledOut).map((r) => r.inputsHash)).toEqual(hashes);
    expect(rowsOf(sampledOut).every((r) => r.inputs === null)).toBe(true);
    expect(rowsOf(none).every((r) => r.inputs === null && r.inputsHash === null)).toBe(true);
    expect(rowsOf(none).map((r) => r.prediction)).toEqual(fullRows.map((r) => r.prediction));
    // One draw per sampled request only.
    expect(draw).toBe(2);
  });

  describe("over the real SQLite prediction store", () => {
    let db: FreshDatabase;

    beforeAll(async () => {
      db = await freshSqlite("log");
    });

    afterAll(async () => {
      await db?.dispose();
    });

    it("stores every row once, and a replay of rows already stored adds nothing", async () => {
      const sqlStore = await db.open();
      const store = new SqlPredictionStore(sqlStore);
      const dir = await spillDir();
      const logger = newLogger(store, dir, { maxBatchRows: 40 });
      await logger.start();
      const results = await scoreMany(60, 20, 10_000);
      await logger.close();
      const rows = results.reduce((n, r) => n + r.rows, 0);
      const count = async (): Promise<number> => {
        const result = await sql<{ n: number | string }>`select count(*) as n from prediction_log`.execute(sqlStore.db);
        return Number(result.rows[0]?.n);
      };
      expect(await count()).toBe(rows);
      expect(logger.stats()).toMatchObject({ received: rows, written: rows, spilled: 0 });

      // A write that timed out but landed, spilled all the same: the replay is idempotent.
      const stored = await sql<{ request_id: string; row: number; prediction: string | null }>`select request_id, row, prediction from prediction_log order by request_id, row`.execute(sqlStore.db);
      const again = new PredictionLogger({ scoring: app.scoring, registry, store, logger: silentLogger(), spillDir: dir, timers: false });
      const records: PredictionRecord[] = stored.rows.slice(0, 10).map((r) => ({
        requestId: r.request_id, row: Number(r.row), model: "breast-cancer", version: 1, variant: null, rolloutId: null, key: null,
        at: new Date().toISOString(), protocol: null, inputs: null, inputsHash: null, outputs: "{}", prediction: null, scores: null, latencyMs: 1,
      }));
      const byModel = await sql<{ request_id: string; model: string }>`select request_id, model from prediction_log`.execute(sqlStore.db);
      const modelOf = new Map(byModel.rows.map((r) => [r.request_id, r.model]));
      for (const record of records) record.model = modelOf.get(record.requestId) as string;
      await writeFile(path.join(dir, "predictions-000000000000001-00000001-1.jsonl"), records.map((r) => `${JSON.stringify(r)}\n`).join(""));
      await again.start();
      await again.replay();
      expect(again.stats()).toMatchObject({ replayed: 10, spillBacklog: 0 });
      expect(await count()).toBe(rows);
      expect(await spillFiles(dir)).toEqual([]);
      await again.close();
    });
  });

  describe("worker mode: records built and written by a worker thread with its own store connection", () => {
    let admin: pg.Client;
    const stores: FreshDatabase[] = [];

    beforeAll(async () => {
      admin = await postgresAdmin();
    });

    afterAll(async () => {
      for (const fresh of stores) await fresh.dispose();
      await admin?.end();
    });

    /** The test's own connection to a fresh store, and the URL the worker opens. */
    async function freshStore(kind: "sqlite" | "postgres"): Promise<{ sqlStore: SqlStore; storeUrl: string }> {
      const fresh = kind === "sqlite" ? await freshSqlite("log-worker") : await freshPostgres(admin, "log-worker");
      stores.push(fresh);
      const sqlStore = await fresh.open();
      return { sqlStore, storeUrl: kind === "sqlite" ? `sqlite:${sqlStore.location}` : sqlStore.location };
    }

    function workerLogger(storeUrl: string, dir: string, options: Partial<PredictionLoggerOptions> = {}): PredictionLogger {
      return new PredictionLogger({ scoring: app.scoring, registry, storeUrl, home, logger: silentLogger(), spillDir: dir, timers: false, ...options });
    }

    async function storedKeys(sqlStore: SqlStore): Promise<string[]> {
      const stored = await sql<{ request_id: string; row: number | string; model: string; version: number | string }>`select request_id, row, model, version from prediction_log`.execute(sqlStore.db);
      return stored.rows.map((r) => `${r.request_id}\u0000${Number(r.row)}\u0000${r.model}\u0000${Number(r.version)}`).sort();
    }

    for (const kind of ["sqlite", "postgres"] as const) {
      it(`${kind}: every row of 500 requests stored exactly once while the server's connection writes too; close() flushes all`, async () => {
        const { sqlStore, storeUrl } = await freshStore(kind);
        const logger = workerLogger(storeUrl, await spillDir(), { timers: true, flushMs: 20, maxBatchRows: 50 });
        await logger.start();
        // The server's own connection keeps writing to the same table meanwhile (SQLite: a second writer on the file).
        const mainStore = new SqlPredictionStore(sqlStore);
        let mainRows = 0;
        let scoring = true;
        const mainWrites = (async () => {
          for (let i = 0; scoring; i++) {
            mainRows += await mainStore.insertPredictions([{
              requestId: `main-${i}`, row: 0, model: "other", version: 1, variant: null, rolloutId: null, key: null,
              at: new Date().toISOString(), protocol: null, inputs: null, inputsHash: null, outputs: "{}", prediction: 1, scores: null, latencyMs: 1,
            }]);
            await new Promise((resolve) => setTimeout(resolve, 5));
          }
        })();
        const results = await scoreMany(500);
        await score("breast-cancer", 2, 1, { protocol: "monitor" });
        scoring = false;
        await mainWrites;
        await logger.close();
        const total = results.reduce((n, r) => n + r.rows, 0);
        expect(total).toBeGreaterThan(1000);
        expect(mainRows).toBeGreaterThan(0);
        const keys = (await storedKeys(sqlStore)).filter((k) => !k.startsWith("main-"));
        expect(keys).toEqual(keysOf(results));
        expect(logger.stats()).toEqual({
          received: total, written: total, buffered: 0, spilled: 0, replayed: 0, spillBacklog: 0, dropped: NO_DROPS, storeErrors: 0,
        });
        // The rows are the ones the requests answered, built as in-process mode builds them.
        const byRequest = new Map(results.map((r) => [r.requestId, r]));
        const stored = await sql<{ request_id: string; row: number | string; prediction: string; inputs: string | null }>`select request_id, row, prediction, inputs from prediction_log where model = 'breast-cancer'`.execute(sqlStore.db);
        expect(stored.rows.length).toBeGreaterThan(0);
        for (const row of stored.rows) {
          const result = byRequest.get(row.request_id) as ScoreResult;
          expect(JSON.parse(row.prediction)).toBe((result.outputs.class?.data as string[])[Number(row.row)]);
          expect(Object.keys(JSON.parse(row.inputs as string) as object)).toEqual(examples.get("breast-cancer")?.columns);
        }
      }, 120_000);
    }

    it("the listener only keeps events; flush() resolves once the worker has stored them; seeded sampling still applies", async () => {
      const { sqlStore, storeUrl } = await freshStore("sqlite");
      let draw = 0;
      const logger = workerLogger(storeUrl, await spillDir(), { random: () => (draw++ % 2 === 0 ? 0.2 : 0.8) });
      await logger.start();
      const callsBefore = getVersionCalls;
      const results = await scoreMany(12, 4, 1000);
      const sampledIn = await score("bc-sampled", 2, 9100);
      const sampledOut = await score("bc-sampled", 2, 9101);
      const total = results.reduce((n, r) => n + r.rows, 0) + 4;
      expect(logger.stats()).toMatchObject({ received: total, buffered: total, written: 0 });
      expect(getVersionCalls).toBe(callsBefore);
      expect(draw).toBe(0);
      await logger.flush();
      expect(logger.stats()).toMatchObject({ received: total, buffered: 0, written: total });
      expect(await storedKeys(sqlStore)).toEqual(keysOf([...results, sampledIn, sampledOut]));
      expect(draw).toBe(2);
      const sampled = await sql<{ request_id: string; inputs: string | null; inputs_hash: string | null }>`select request_id, inputs, inputs_hash from prediction_log where model = 'bc-sampled'`.execute(sqlStore.db);
      for (const row of sampled.rows) {
        if (row.request_id === sampledIn.requestId) expect(row.inputs !== null && row.inputs_hash === null).toBe(true);
        else expect(row.inputs === null && row.inputs_hash !== null).toBe(true);
      }
      await logger.close();
    });

    it("store unreachable: the worker spills; over the memory bound rows go straight to spill files; a later worker replays them", async () => {
      const { sqlStore, storeUrl } = await freshStore("sqlite");
      const dir = await spillDir();
      // Nothing listens on port 1: every connection is refused at once.
      const down = workerLogger("postgres://postgres@127.0.0.1:1/mlship_down", dir, { bufferRows: 10, flushMs: 60_000 });
      await down.start();
      const results: ScoreResult[] = [];
      await scoreOneByOnePastBound(down, 10, 30, 11_000, results);
      expect(down.stats()).toMatchObject({ received: 30, buffered: 10, spilled: 20, written: 0, spillBacklog: 20 });
      await down.close();
      expect(down.stats()).toMatchObject({ received: 30, buffered: 0, spilled: 30, written: 0, spillBacklog: 30, storeErrors: 1, dropped: NO_DROPS });

      const next = workerLogger(storeUrl, dir);
      await next.start();
      expect(next.stats().spillBacklog).toBe(30);
      await waitFor(() => next.stats().spillBacklog === 0, "the replay of the spill files");
      expect(next.stats()).toMatchObject({ received: 0, replayed: 30, written: 0, dropped: NO_DROPS });
      expect(await spillFiles(dir)).toEqual([]);
      expect(await storedKeys(sqlStore)).toEqual(keysOf(results));
      await next.close();
    });

    it("an in-memory SQLite store, which a worker could not see, is written in-process through the given store", async () => {
      const store = new MemoryPredictionStore();
      const logger = workerLogger("sqlite::memory:", await spillDir(), { store });
      await logger.start();
      const results = await scoreMany(6, 3, 14_000);
      await logger.close();
      expect([...store.rows.keys()].sort()).toEqual(keysOf(results));
    });

    it("a worker that dies: the rows it held are counted as worker_error, a new worker takes over", async () => {
      // A "database" that accepts connections and never answers keeps the worker's write waiting (in JavaScript, not
      // inside SQLite: a worker stopped inside native code takes the process down, which is why the log stops its
      // worker only once it is idle); later it refuses them, as a database that is down does.
      let answering = false;
      const silent = net.createServer((socket) => {
        if (answering) socket.destroy();
      });
      await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
      const port = (silent.address() as net.AddressInfo).port;
      const dir = await spillDir();
      const logger = workerLogger(`postgres://postgres@127.0.0.1:${port}/mlship_silent`, dir, { writeTimeoutMs: 60_000 });
      try {
        await logger.start();
        // Reaching in for the worker is the only way to kill it as a crash would (there is no API for that, on purpose).
        const workerOf = (): Worker | undefined => (logger as unknown as { sink: { worker: Worker | undefined } }).sink.worker;
        const lost = await scoreMany(6, 3, 12_000);
        const lostRows = lost.reduce((n, r) => n + r.rows, 0);
        const flushing = logger.flush();
        await new Promise((resolve) => setTimeout(resolve, 300));
        const dying = workerOf() as Worker;
        await dying.terminate();
        await flushing;
        expect(logger.stats()).toMatchObject({ received: lostRows, buffered: 0, written: 0, spilled: 0, dropped: { ...NO_DROPS, worker_error: lostRows } });

        answering = true;
        const kept = await scoreMany(6, 3, 13_000);
        const keptRows = kept.reduce((n, r) => n + r.rows, 0);
        await logger.flush();
        expect(workerOf()).toBeDefined();
        expect(workerOf()).not.toBe(dying);
        expect(logger.stats()).toMatchObject({ received: lostRows + keptRows, written: 0, spilled: keptRows, spillBacklog: keptRows, storeErrors: 1, dropped: { ...NO_DROPS, worker_error: lostRows } });
        await logger.close();
      } finally {
        await logger.close();
        silent.close();
      }
    }, 30_000);
  });
});
