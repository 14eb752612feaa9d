// The scheduler's own timer, end to end on real stores (SQLite and PostgreSQL): a schedule whose cron fires every
// second, two started schedulers on the same store (two replicas), real batch runs of the breast-cancer MLP over
// production rows. Each fire time is started by one replica only, runs never overlap, and the predictions and the
// succeeded runs are recorded.
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { sql } from "kysely";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { RunStore, type BatchRun } from "../../src/batch/index.js";
import { BatchScheduler, ScheduleStore } from "../../src/batch/schedule.js";
import { defaultConfig } from "../../src/config/index.js";
import { fixture, REPO } from "../cli/helpers.js";
import { POSTGRES_SERVER, postgresAdmin } from "../helpers/sql-stores.js";

const MODEL = "breast-cancer";
const EXAMPLE = path.join(REPO, "examples", "models", "breast-cancer");
/**
 * Production rows repeated under distinct ids, scored a row or a few at a time: a run lasts longer than the cron's
 * one-second period, so the other replica finds a fire time due while a run holds the lock (without the lock, runs
 * overlap and this test fails).
 */
const ROWS = 2000;
const TABLE = "timer_preds";
const bc = fixture("breast_cancer_mlp");

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe.each(["sqlite", "postgres"] as const)("BatchScheduler timer on %s", (dialect) => {
  let home: string;
  let input: string;
  /** The first 40 of those rows: a run that only has to happen, not to last. */
  let shortInput: string;
  let app: Mlship;
  let replica: Mlship;
  let admin: pg.Client | undefined;
  let database: string | undefined;

  beforeAll(async () => {
    home = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-scheduler-timer-"));
    input = path.join(home, "prod-with-ids.csv");
    const lines = fs.readFileSync(path.join(bc.dir, "prod.csv"), "utf8").trim().split(/\r?\n/);
    const data = lines.slice(1);
    const rows = Array.from({ length: ROWS }, (_, i) => `p${i},${data[i % data.length] as string}`);
    fs.writeFileSync(input, `id,${lines[0] as string}\n${rows.join("\n")}\n`);
    shortInput = path.join(home, "prod-40.csv");
    fs.writeFileSync(shortInput, `id,${lines[0] as string}\n${rows.slice(0, 40).join("\n")}\n`);
    let store: string | undefined;
    if (dialect === "postgres") {
      admin = await postgresAdmin();
      database = `mlship_test_${randomBytes(6).toString("hex")}`;
      await admin.query(`create database ${database}`);
      store = `${POSTGRES_SERVER}/${database}`;
    }
    const config = defaultConfig({ home, user: "tester", "runtime.workers": 1, "batch.chunkRows": dialect === "sqlite" ? 1 : 3, "log.level": "warn", ...(store === undefined ? {} : { store }) });
    app = await createMlship(config);
    await registerModel(app, EXAMPLE, { name: MODEL, alias: "production" });
    replica = await createMlship(config);
  }, 120_000);

  afterAll(async () => {
    await replica?.close();
    await app?.close();
    if (database !== undefined) await admin?.query(`drop database if exists ${database} with (force)`);
    await admin?.end();
    if (home !== undefined) fs.rmSync(home, { recursive: true, force: true });
  });

  it("fires every second from its timer, one replica per fire time, and records the runs and predictions", async () => {
    const schedules = new ScheduleStore(app.store);
    await schedules.put({ name: "every-second", ref: `${MODEL}@production`, input, idColumn: "id", table: TABLE, cron: "* * * * * *", timezone: "UTC" });
    const runs = new RunStore(app.store);
    const timerRuns = async (): Promise<BatchRun[]> =>
      (await runs.list({ model: MODEL, limit: 1000 })).filter((r) => r.targetTable === TABLE).sort((a, b) => a.startedAt.localeCompare(b.startedAt));
    // Both replicas check often, so both see each fire time come due at about the same moment.
    const a = new BatchScheduler(app, { checkMs: 100, holder: "replica-a" });
    const b = new BatchScheduler(replica, { checkMs: 100, holder: "replica-b" });
    try {
      a.start();
      b.start();
      await waitFor("two succeeded scheduled runs", async () => {
        const succeeded = (await timerRuns()).filter((r) => r.status === "succeeded");
        return succeeded.length >= 2 ? succeeded : undefined;
      }, 30_000);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }

    const all = await timerRuns();
    const succeeded = all.filter((r) => r.status === "succeeded");
    expect(succeeded.length).toBeGreaterThanOrEqual(2);
    for (const run of succeeded) {
      expect(run).toMatchObject({ model: MODEL, version: 1, input, rowsIn: ROWS, rowsOut: ROWS, rowsRejected: 0 });
      expect(run.settings.schedule).toBe("every-second");
    }
    // The lock: runs never overlap, and no two runs serve the same fire time (each starts in a later second than the
    // one before it, since a fire time is due only after the previous run's start).
    for (let i = 1; i < all.length; i++) {
      const previous = all[i - 1] as BatchRun;
      const run = all[i] as BatchRun;
      expect(previous.endedAt, `run ${previous.id} ended`).not.toBeNull();
      expect(Date.parse(run.startedAt)).toBeGreaterThanOrEqual(Date.parse(previous.endedAt as string));
      expect(Math.floor(Date.parse(run.startedAt) / 1000)).toBeGreaterThan(Math.floor(Date.parse(previous.startedAt) / 1000));
    }
    // Nothing is left running or locked once both schedulers closed.
    expect(all.filter((r) => r.status === "running")).toEqual([]);
    const locks = await sql<{ n: number | string }>`select count(*) as n from batch_locks where name = 'schedule:every-second'`.execute(app.store.db);
    expect(Number(locks.rows[0]?.n)).toBe(0);

    const schedule = await schedules.get("every-second");
    expect(all.map((r) => r.id)).toContain(schedule?.lastRun?.runId);
    expect(["succeeded", "interrupted"]).toContain(schedule?.lastRun?.status);

    // One prediction per id, the 40 production rows, each written by one of the scheduled runs.
    const predictions = await sql<{ id: string; run_id: string; outputs: string }>`select id, run_id, outputs from ${sql.table(TABLE)} where model = ${MODEL}`.execute(app.store.db);
    expect(predictions.rows.map((p) => p.id).sort()).toEqual(Array.from({ length: ROWS }, (_, i) => `p${i}`).sort());
    const runIds = new Set(all.map((r) => r.id));
    for (const p of predictions.rows) {
      expect(runIds.has(p.run_id)).toBe(true);
      expect(Object.keys(JSON.parse(p.outputs) as object).length).toBeGreaterThan(0);
    }
    // Otherwise the next test's scheduler would fire it too, and its long runs would hold the one worker.
    await schedules.remove("every-second");
  }, 90_000);

  it("never fires a disabled schedule from its timer, and fires it again once enabled", async () => {
    const schedules = new ScheduleStore(app.store);
    await schedules.put({ name: "paused", ref: MODEL, input: shortInput, idColumn: "id", table: "paused_preds", cron: "* * * * * *", timezone: "UTC", enabled: false });
    const runs = new RunStore(app.store);
    const pausedRuns = async (): Promise<BatchRun[]> => (await runs.list({ model: MODEL, limit: 1000 })).filter((r) => r.targetTable === "paused_preds");
    const scheduler = new BatchScheduler(app, { checkMs: 100, holder: "replica-a" });
    try {
      scheduler.start();
      // Two and a half fire times pass while it is disabled.
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      expect(await pausedRuns()).toEqual([]);
      expect((await schedules.get("paused"))?.lastRun).toBeNull();
      await schedules.setEnabled("paused", true);
      const done = await waitFor("a run after enabling", async () => (await pausedRuns()).find((r) => r.status === "succeeded"), 30_000);
      expect(done).toMatchObject({ input: shortInput, rowsOut: 40 });
    } finally {
      await scheduler.close();
      await schedules.remove("paused");
    }
  }, 60_000);
});
