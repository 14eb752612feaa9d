// The batch runner on real data: the breast-cancer MLP from examples/models scores the fixture's production rows
// (with an id column and a few bad rows) from a CSV file into the SQLite metadata store, through the real reader,
// sink and scoring service. Also the run store's rules on both SQL dialects, and the progress lines.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { MlshipError } from "../../src/core/index.js";
import { progressReporter } from "../../src/batch/progress.js";
import { openRowSource } from "../../src/batch/readers.js";
import { runBatch } from "../../src/batch/runner.js";
import { RunStore, STALE_HEARTBEAT_MS } from "../../src/batch/runs.js";
import { openSink, readPredictions } from "../../src/batch/sinks.js";
import type { BatchProgress, BatchRun, RowChunk, RowSource } from "../../src/batch/types.js";
import { freshPostgres, freshSqlite, postgresAdmin } from "../helpers/sql-stores.js";
import { expectValueClose, fixture, REPO, tempDir } from "../cli/helpers.js";

const MODEL = "breast-cancer";
const EXAMPLE = path.join(REPO, "examples", "models", "breast-cancer");
const bc = fixture("breast_cancer_mlp");
const prodLines = fs.readFileSync(path.join(bc.dir, "prod.csv"), "utf8").trim().split(/\r?\n/);
const header = prodLines[0] as string;
const prodRows = prodLines.slice(1);
const featureCount = bc.features.length;

/** `id,<features>,label`: prod row i has id `p<i>`; three bad rows sit among the good ones (chunks of 16 mix them). */
function writeInput(file: string): { bad: { line: number; id: string | null; why: RegExp }[] } {
  const lines = [`id,${header}`];
  const bad: { line: number; id: string | null; why: RegExp }[] = [];
  prodRows.forEach((row, i) => {
    lines.push(`p${i},${row}`);
    if (i === 20) {
      const cells = (prodRows[0] as string).split(",");
      cells[2] = "abc";
      lines.push(`bad-text,${cells.join(",")}`);
      bad.push({ line: lines.length - 2, id: "bad-text", why: /mean perimeter|number/i });
    }
    if (i === 40) {
      lines.push(`,${prodRows[1] as string}`);
      bad.push({ line: lines.length - 2, id: null, why: /id column "id" is empty/ });
    }
  });
  fs.writeFileSync(file, `${lines.join("\n")}\n`);
  return { bad };
}

let home: string;
let app: Mlship;
let input: string;
let badRows: { line: number; id: string | null; why: RegExp }[];

beforeAll(async () => {
  home = tempDir("batch-runner");
  app = await createMlship(defaultConfig({ home, user: "tester", "runtime.workers": 2, "log.level": "warn" }));
  await registerModel(app, EXAMPLE, { name: MODEL, alias: "production" });
  input = path.join(home, "prod-with-ids.csv");
  badRows = writeInput(input).bad;
}, 60_000);

afterAll(async () => {
  await app.close();
  fs.rmSync(home, { recursive: true, force: true });
});

/** A real source whose `beforeChunk` hook runs before each chunk is handed on (to move an alias, abort...). */
function observed(source: RowSource, beforeChunk: (index: number) => Promise<void> | void): RowSource {
  return {
    path: source.path,
    format: source.format,
    size: source.size,
    columns: () => source.columns(),
    fingerprint: () => source.fingerprint(),
    bytesRead: () => source.bytesRead(),
    async *[Symbol.asyncIterator](): AsyncIterator<RowChunk> {
      let index = 0;
      for await (const chunk of source) {
        await beforeChunk(index++);
        yield chunk;
      }
    },
  };
}

async function score(options: {
  table: string;
  ref?: string;
  chunkRows?: number;
  file?: string;
  wrap?: (source: RowSource) => RowSource;
  resume?: BatchRun;
  signal?: AbortSignal;
  updates?: BatchProgress[];
}): Promise<BatchRun> {
  const chunkRows = options.chunkRows ?? 16;
  const raw = await openRowSource(options.file ?? input, { chunkRows });
  const source = options.wrap === undefined ? raw : options.wrap(raw);
  const sink = await openSink(undefined, { store: app.store, table: options.table, home });
  const updates = options.updates;
  return runBatch({
    scoring: app.scoring,
    registry: app.registry,
    runs: new RunStore(app.store),
    ref: options.ref ?? `${MODEL}@production`,
    source,
    sink,
    idColumn: "id",
    chunkRows,
    logger: app.logger,
    table: options.table,
    ...(updates === undefined ? {} : { progress: { update: (p: BatchProgress) => updates.push(p), done: () => undefined } }),
    ...(options.resume === undefined ? {} : { resume: options.resume }),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
}

async function stored(table: string, ids: string[]): ReturnType<typeof readPredictions> {
  return readPredictions(app.store, { model: MODEL, ids, table });
}

async function createTable(table: string): Promise<void> {
  // Tables other than batch_predictions are created by the sink; make sure it exists the same way.
  const sink = await openSink(undefined, { store: app.store, table, home });
  await sink.close();
}

describe("runBatch into the SQLite store", () => {
  it("scores every good row, rejects the bad ones with their reason, and counts right", async () => {
    const updates: BatchProgress[] = [];
    const run = await score({ table: "batch_predictions", updates });
    const total = prodRows.length + badRows.length;
    expect(run).toMatchObject({ status: "succeeded", model: MODEL, version: 1, ref: `${MODEL}@production`, idColumn: "id" });
    expect(run).toMatchObject({ rowsIn: total, rowsOut: prodRows.length, rowsRejected: badRows.length, error: null });
    expect(run.inputFingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect(run.endedAt).not.toBeNull();
    expect(run.input).toBe(input);
    expect(run.target).toBe("sqlite");
    expect(run.targetTable).toBe("batch_predictions");

    const ids = prodRows.map((_, i) => `p${i}`);
    const predictions = await stored("batch_predictions", ids);
    expect(predictions.size).toBe(prodRows.length);
    // The first 50 production rows are expected.json's inputs.
    expect(prodRows.slice(0, bc.expected.inputs.length).map((r) => r.split(",").slice(0, featureCount).map(Number))).toEqual(bc.expected.inputs);
    bc.expected.inputs.forEach((_, i) => {
      const p = predictions.get(`p${i}`);
      expect(p?.version).toBe(1);
      expect(p?.runId).toBe(run.id);
      for (const [output, values] of Object.entries(bc.expected.outputs)) expectValueClose(p?.outputs[output], values[i], output, bc.expected);
    });

    const rejects = await new RunStore(app.store).rejects(run.id);
    expect(rejects).toHaveLength(badRows.length);
    badRows.forEach((bad, i) => {
      const reject = rejects[i];
      expect(reject?.rowNumber).toBe(bad.line);
      expect(reject?.rowId).toBe(bad.id);
      expect(reject?.reason).toMatch(bad.why);
    });
    expect(rejects[0]?.field).not.toBeNull();
    expect(rejects[1]?.field).toBe("id");

    // Progress every chunk, counters only growing, the last one complete.
    expect(updates.length).toBe(Math.ceil(total / 16));
    expect(updates.at(-1)).toMatchObject({ runId: run.id, rowsIn: total, rowsOut: prodRows.length, rowsRejected: badRows.length });
    expect(updates.at(-1)?.bytesRead).toBe(fs.statSync(input).size);
    for (let i = 1; i < updates.length; i++) expect(updates[i]?.rowsIn).toBeGreaterThan(updates[i - 1]?.rowsIn ?? 0);
  }, 60_000);

  it("scores the version the reference named at the start, even when the alias moves mid-run", async () => {
    await registerModel(app, EXAMPLE, { name: MODEL });
    await createTable("pinned");
    const run = await score({
      table: "pinned",
      wrap: (source) =>
        observed(source, async (index) => {
          if (index === 1) {
            await app.registry.setAlias(MODEL, "production", 2, { by: "tester", reason: "mid-run move" });
            await app.scoring.refresh();
          }
        }),
    });
    try {
      expect(run.status).toBe("succeeded");
      expect(run.version).toBe(1);
      const predictions = await stored("pinned", prodRows.map((_, i) => `p${i}`));
      expect(new Set([...predictions.values()].map((p) => p.version))).toEqual(new Set([1]));
    } finally {
      await app.registry.setAlias(MODEL, "production", 1, { by: "tester", reason: "back" });
      await app.scoring.refresh();
    }
  }, 60_000);

  it("fails at once, recorded with its message, when a feature column is missing", async () => {
    const file = path.join(home, "missing-column.csv");
    const cells = header.split(",");
    fs.writeFileSync(file, `id,${cells.slice(1).join(",")}\np0,${(prodRows[0] as string).split(",").slice(1).join(",")}\n`);
    await createTable("missing");
    const error = await score({ table: "missing", file }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MlshipError);
    expect((error as MlshipError).code).toBe("MLSHIP_ERR_INPUT_MISSING");
    expect((error as MlshipError).message).toContain('"mean radius"');
    const run = await new RunStore(app.store).latest(MODEL, { table: "missing" });
    expect(run).toMatchObject({ status: "failed", rowsIn: 0, rowsOut: 0 });
    expect(run?.error).toContain("mean radius");
    expect((await stored("missing", ["p0"])).size).toBe(0);
  }, 60_000);

  it("names the id column when the input lacks it", async () => {
    const file = path.join(home, "no-id.csv");
    fs.writeFileSync(file, `${header}\n${prodRows[0] as string}\n`);
    await createTable("noid");
    const error = await score({ table: "noid", file }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "id-column" });
  }, 60_000);

  it("stops `interrupted` on abort and a resumed run (same id) ends with one prediction per id", async () => {
    await createTable("resumed");
    const controller = new AbortController();
    const first = await score({
      table: "resumed",
      wrap: (source) =>
        observed(source, (index) => {
          if (index === 3) controller.abort();
        }),
      signal: controller.signal,
    });
    expect(first.status).toBe("interrupted");
    expect(first.rowsIn).toBeGreaterThan(0);
    expect(first.rowsIn).toBeLessThan(prodRows.length);
    const partial = await stored("resumed", prodRows.map((_, i) => `p${i}`));
    expect(partial.size).toBeGreaterThan(0);
    expect(partial.size).toBeLessThan(prodRows.length);

    const runs = new RunStore(app.store);
    const resumable = await runs.findResumable({ model: MODEL, input, target: "sqlite", table: "resumed" });
    expect(resumable?.id).toBe(first.id);

    const resumed = await score({ table: "resumed", resume: resumable as BatchRun });
    expect(resumed).toMatchObject({ id: first.id, status: "succeeded", version: 1, endedAt: expect.any(String) });
    // Skipped rows (already predicted) count in and out: the counters describe the whole input.
    expect(resumed).toMatchObject({ rowsIn: prodRows.length + badRows.length, rowsOut: prodRows.length, rowsRejected: badRows.length });
    const all = await stored("resumed", prodRows.map((_, i) => `p${i}`));
    expect(all.size).toBe(prodRows.length);
    // Rows scored before the stop kept their prediction (not rescored): the same scored_at as before.
    for (const [id, p] of partial) expect(all.get(id)?.scoredAt).toBe(p.scoredAt);
    const rows = await app.store.db
      .withTables<{ resumed: { model: string; id: string } }>()
      .selectFrom("resumed")
      .select(({ fn }) => fn.countAll<number>().as("n"))
      .executeTakeFirstOrThrow();
    expect(Number(rows.n)).toBe(prodRows.length);
    expect(await runs.rejects(first.id)).toHaveLength(badRows.length);
    expect(await runs.findResumable({ model: MODEL, input, target: "sqlite", table: "resumed" })).toBeUndefined();
  }, 60_000);
});

async function runStoreRules(runs: RunStore): Promise<void> {
  const t0 = new Date("2026-03-01T10:00:00.000Z");
  const base = { model: "m", version: 3, ref: "m@production", input: "/data/in.csv", target: "sqlite", targetTable: "batch_predictions", idColumn: "id" };
  const query = { model: "m", input: "/data/in.csv", target: "sqlite", table: "batch_predictions" };

  const done = await runs.start({ ...base, now: t0, settings: { chunkRows: 10 } });
  await runs.finish(done.id, { rowsIn: 5, rowsOut: 4, rowsRejected: 1 }, "ab".repeat(32), new Date(t0.getTime() + 1000));
  expect(await runs.findResumable({ ...query, now: new Date(t0.getTime() + 3_600_000) })).toBeUndefined();

  const live = await runs.start({ ...base, now: new Date(t0.getTime() + 2000), shard: { index: 1, count: 3 } });
  const shardQuery = { ...query, shard: { index: 1, count: 3 } };
  await runs.progress(live.id, { rowsIn: 10, rowsOut: 9, rowsRejected: 1 }, new Date(t0.getTime() + 5000));
  // Beating recently: not resumable; once its heartbeat is older than 30 s, it was killed.
  expect(await runs.findResumable({ ...shardQuery, now: new Date(t0.getTime() + 5000 + STALE_HEARTBEAT_MS - 1000) })).toBeUndefined();
  const killed = await runs.findResumable({ ...shardQuery, now: new Date(t0.getTime() + 5000 + STALE_HEARTBEAT_MS + 1000) });
  expect(killed).toMatchObject({ id: live.id, status: "running", rowsIn: 10, rowsOut: 9, rowsRejected: 1, shard: { index: 1, count: 3 } });
  // Another shard, table, input or target is another run.
  const later = new Date(t0.getTime() + 3_600_000);
  expect((await runs.findResumable({ ...query, now: later }))?.id).toBeUndefined();
  expect(await runs.findResumable({ ...shardQuery, shard: { index: 0, count: 3 }, now: later })).toBeUndefined();
  expect(await runs.findResumable({ ...shardQuery, table: "other", now: later })).toBeUndefined();
  expect(await runs.findResumable({ ...shardQuery, input: "/data/other.csv", now: later })).toBeUndefined();
  expect(await runs.findResumable({ ...shardQuery, target: "/data/out.jsonl", now: later })).toBeUndefined();

  const failed = await runs.fail(live.id, { rowsIn: 10, rowsOut: 9, rowsRejected: 1 }, "boom", new Date(t0.getTime() + 6000));
  expect(failed).toMatchObject({ status: "failed", error: "boom", endedAt: new Date(t0.getTime() + 6000).toISOString() });
  expect((await runs.findResumable(shardQuery))?.id).toBe(live.id);
  const reopened = await runs.reopen(live.id, new Date(t0.getTime() + 7000));
  expect(reopened).toMatchObject({ status: "running", error: null, endedAt: null, rowsIn: 10 });
  const stopped = await runs.interrupt(live.id, { rowsIn: 12, rowsOut: 11, rowsRejected: 1 }, new Date(t0.getTime() + 8000));
  expect(stopped.status).toBe("interrupted");

  await runs.reject([
    { runId: live.id, rowNumber: 7, rowId: "x7", field: "f", reason: "not a number" },
    { runId: live.id, rowNumber: 2, rowId: null, field: "id", reason: "empty id" },
  ]);
  // A resumed run rejects the same row again: kept once.
  await runs.reject([{ runId: live.id, rowNumber: 7, rowId: "x7", field: "f", reason: "not a number" }]);
  expect(await runs.rejects(live.id)).toEqual([
    { runId: live.id, rowNumber: 2, rowId: null, field: "id", reason: "empty id" },
    { runId: live.id, rowNumber: 7, rowId: "x7", field: "f", reason: "not a number" },
  ]);
  expect(await runs.countRejects(live.id)).toBe(2);

  const listed = await runs.list({ model: "m" });
  expect(listed.map((r) => r.id)).toEqual([live.id, done.id]);
  expect(listed[1]).toMatchObject({ status: "succeeded", inputFingerprint: "ab".repeat(32), settings: { chunkRows: 10 }, shard: null });
  expect((await runs.latest("m", { status: "succeeded" }))?.id).toBe(done.id);
  expect(await runs.list({ model: "nobody" })).toEqual([]);
  await expect(runs.progress("no-such-run", { rowsIn: 0, rowsOut: 0, rowsRejected: 0 })).rejects.toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID" });

  // A run still `running` whose process (on this machine) is gone was killed: resumable without waiting 30 s.
  // Elsewhere only the heartbeat can tell.
  const orphanQuery = { ...query, input: "/data/orphan.csv", now: new Date(t0.getTime() + 1000) };
  const orphan = await runs.start({ ...base, input: "/data/orphan.csv", now: t0 });
  expect(await runs.findResumable(orphanQuery)).toBeUndefined();
  const setOwner = (owner: { pid: number; host: string }): Promise<unknown> =>
    runs.store.db
      .withTables<{ batch_runs: { id: string; settings: string } }>()
      .updateTable("batch_runs")
      .set({ settings: JSON.stringify({ owner }) })
      .where("id", "=", orphan.id)
      .execute();
  const deadPid = spawnSync(process.execPath, ["-e", ""]).pid as number;
  await setOwner({ pid: deadPid, host: "another-machine" });
  expect(await runs.findResumable(orphanQuery)).toBeUndefined();
  await setOwner({ pid: deadPid, host: os.hostname() });
  expect((await runs.findResumable(orphanQuery))?.id).toBe(orphan.id);
}

describe("RunStore", () => {
  it("records runs and finds the resumable one (SQLite)", async () => {
    const db = await freshSqlite("batch-runs");
    try {
      await runStoreRules(new RunStore(await db.open()));
    } finally {
      await db.dispose();
    }
  });

  let admin: pg.Client;
  beforeAll(async () => {
    admin = await postgresAdmin();
  });
  afterAll(async () => {
    await admin.end();
  });

  it("records runs and finds the resumable one (PostgreSQL)", async () => {
    const db = await freshPostgres(admin, "batch-runs-pg");
    try {
      await runStoreRules(new RunStore(await db.open()));
    } finally {
      await db.dispose();
    }
  }, 30_000);
});

describe("progressReporter", () => {
  const progress = (rowsIn: number): BatchProgress => ({
    runId: "r1", rowsIn, rowsOut: rowsIn - 1, rowsRejected: 1, rate: 1234.56, bytesRead: rowsIn * 10, bytesTotal: 1000, elapsedSeconds: 1, etaSeconds: 2.345,
  });

  it("writes one JSON line per second at most, then a summary line", () => {
    const lines: string[] = [];
    let clock = 0;
    const reporter = progressReporter({ tty: false, write: (l) => lines.push(l), now: () => clock });
    reporter.update(progress(10));
    clock = 500;
    reporter.update(progress(20));
    clock = 1200;
    reporter.update(progress(30));
    const run: BatchRun = {
      id: "r1", model: "m", version: 1, ref: "m", input: "/in.csv", inputFingerprint: null, target: "sqlite", targetTable: "batch_predictions",
      idColumn: "id", shard: null, status: "succeeded", rowsIn: 30, rowsOut: 29, rowsRejected: 1, startedAt: "2026-03-01T10:00:00.000Z",
      heartbeatAt: "2026-03-01T10:00:02.000Z", endedAt: "2026-03-01T10:00:02.000Z", error: null, settings: {},
    };
    reporter.done(run);
    expect(lines.every((l) => l.endsWith("\n"))).toBe(true);
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(parsed).toHaveLength(3);
    expect(parsed[0]).toMatchObject({ event: "batch_progress", runId: "r1", rowsIn: 10, rowsOut: 9, rowsRejected: 1, rate: 1234.6, etaSeconds: 2.3 });
    expect(parsed[1]).toMatchObject({ event: "batch_progress", rowsIn: 30 });
    expect(parsed[2]).toMatchObject({ event: "batch_done", runId: "r1", status: "succeeded", rowsIn: 30, rowsOut: 29, rowsRejected: 1, seconds: 2, rowsPerSecond: 15 });
  });
});
