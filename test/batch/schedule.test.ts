// Scheduled batch runs on real data: the breast-cancer MLP scores production rows into the SQLite store when a
// schedule's cron time has passed. Two apps on the same SQLite file stand in for two replicas: the lock in
// `batch_locks` lets exactly one of them run each fire time. Late and failed runs raise monitoring-shaped alerts.
import fs from "node:fs";
import path from "node:path";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { RunStore } from "../../src/batch/index.js";
import { BatchScheduler, healthOf, lateGraceMs, MIN_LATE_GRACE_MS, ScheduleStore } from "../../src/batch/schedule.js";
import { defaultConfig } from "../../src/config/index.js";
import type { Alert } from "../../src/monitor/index.js";
import { fixture, REPO, runCli, tempDir } from "../cli/helpers.js";
import { freshPostgres, postgresAdmin } from "../helpers/sql-stores.js";

const MODEL = "breast-cancer";
const EXAMPLE = path.join(REPO, "examples", "models", "breast-cancer");
const ROWS = 40;
const bc = fixture("breast_cancer_mlp");
const prodLines = fs.readFileSync(path.join(bc.dir, "prod.csv"), "utf8").trim().split(/\r?\n/);

let home: string;
let input: string;
let app: Mlship;
let replica: Mlship;
const CREATED = new Date("2026-03-01T00:00:00.000Z");
const AT_0205 = new Date("2026-03-01T02:05:00.000Z");

async function predictionCount(table: string): Promise<number> {
  const result = await sql<{ n: number }>`select count(*) as n from ${sql.table(table)} where model = ${MODEL}`.execute(app.store.db);
  return Number(result.rows[0]?.n);
}

beforeAll(async () => {
  home = tempDir("mlship-schedule-");
  input = path.join(home, "prod-with-ids.csv");
  const rows = prodLines.slice(1, ROWS + 1).map((row, i) => `p${i},${row}`);
  fs.writeFileSync(input, `id,${prodLines[0] as string}\n${rows.join("\n")}\n`);
  const config = defaultConfig({ home, user: "tester", "runtime.workers": 2, "log.level": "warn" });
  app = await createMlship(config);
  await registerModel(app, EXAMPLE, { name: MODEL, alias: "production" });
  replica = await createMlship(config);
}, 120_000);

afterAll(async () => {
  await replica?.close();
  await app?.close();
});

describe("BatchScheduler", () => {
  it("runs a due schedule once and writes its predictions", async () => {
    const schedules = new ScheduleStore(app.store);
    await schedules.put({ name: "nightly", ref: `${MODEL}@production`, input, idColumn: "id", table: "nightly_preds", cron: "0 2 * * *", timezone: "UTC" }, CREATED);
    const scheduler = new BatchScheduler(app, { now: () => AT_0205 });
    try {
      const before = await scheduler.scheduleHealth(AT_0205);
      expect(before.find((h) => h.name === "nightly")?.due?.toISOString()).toBe("2026-03-01T02:00:00.000Z");
      expect(await scheduler.tick()).toEqual(["nightly"]);
      // The same fire time is never run twice.
      expect(await scheduler.tick()).toEqual([]);
    } finally {
      await scheduler.close();
    }
    expect(await predictionCount("nightly_preds")).toBe(ROWS);
    const schedule = await schedules.get("nightly");
    expect(schedule?.lastRun?.status).toBe("succeeded");
    expect(schedule?.lastRun?.startedAt).toBe(AT_0205.toISOString());
    const run = await new RunStore(app.store).get(schedule?.lastRun?.runId as string);
    expect(run).toMatchObject({ status: "succeeded", rowsIn: ROWS, rowsOut: ROWS, input, targetTable: "nightly_preds" });
    // The lock was released.
    const locks = await sql<{ n: number }>`select count(*) as n from batch_locks where name = 'schedule:nightly'`.execute(app.store.db);
    expect(Number(locks.rows[0]?.n)).toBe(0);
    const health = healthOf(schedule!, AT_0205);
    expect(health).toMatchObject({ late: false, failed: false });
    expect(health.due?.toISOString()).toBe("2026-03-02T02:00:00.000Z");
  }, 120_000);

  it("runs a fire time exactly once when two replicas on one store check at the same moment", async () => {
    await new ScheduleStore(app.store).put({ name: "shared", ref: MODEL, input, idColumn: "id", table: "shared_preds", cron: "0 2 * * *", timezone: "UTC" }, CREATED);
    const a = new BatchScheduler(app, { now: () => AT_0205, holder: "replica-a" });
    const b = new BatchScheduler(replica, { now: () => AT_0205, holder: "replica-b" });
    try {
      const [ranA, ranB] = await Promise.all([a.tick(), b.tick()]);
      expect([...ranA, ...ranB]).toEqual(["shared"]);
      expect(await Promise.all([a.tick(), b.tick()])).toEqual([[], []]);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
    const runs = (await new RunStore(app.store).list({ model: MODEL, limit: 100 })).filter((r) => r.targetTable === "shared_preds");
    expect(runs).toHaveLength(1);
    expect(await predictionCount("shared_preds")).toBe(ROWS);
  }, 120_000);

  it("does not run a schedule before its fire time, and reports a missed one as late", async () => {
    await new ScheduleStore(app.store).put({ name: "later", ref: MODEL, input, idColumn: "id", table: "later_preds", cron: "30 3 * * *", timezone: "UTC" }, CREATED);
    let clock = AT_0205;
    const alerts: Alert[] = [];
    const scheduler = new BatchScheduler(app, { now: () => clock, checkMs: 60_000, onAlert: (alert) => void alerts.push(alert) });
    try {
      expect(await scheduler.tick()).not.toContain("later");
      let health = (await scheduler.scheduleHealth(AT_0205)).find((h) => h.name === "later");
      expect(health).toMatchObject({ late: false, failed: false, lastRun: null });
      expect(health?.due?.toISOString()).toBe("2026-03-01T03:30:00.000Z");
      expect(lateGraceMs(60_000)).toBe(MIN_LATE_GRACE_MS);
      expect(lateGraceMs(10 * 60_000)).toBe(20 * 60_000);
      // Due but within the grace period: not late yet.
      health = (await scheduler.scheduleHealth(new Date("2026-03-01T03:44:00.000Z"))).find((h) => h.name === "later");
      expect(health?.late).toBe(false);
      // No scheduler ran it: 16 min after the fire time it is late.
      health = (await scheduler.scheduleHealth(new Date("2026-03-01T03:46:00.000Z"))).find((h) => h.name === "later");
      expect(health?.late).toBe(true);
      // The scheduler runs it when it next checks; a run started since the fire time, so it is no longer late.
      clock = new Date("2026-03-01T03:46:00.000Z");
      expect(await scheduler.tick()).toContain("later");
      health = (await scheduler.scheduleHealth(clock)).find((h) => h.name === "later");
      expect(health).toMatchObject({ late: false, failed: false });
      expect(alerts.filter((a) => a.id === "batch:later:late")).toEqual([]);
    } finally {
      await scheduler.close();
    }
    expect(await predictionCount("later_preds")).toBe(ROWS);
  }, 120_000);

  it("alerts on a late schedule through onAlert", async () => {
    await new ScheduleStore(app.store).put({ name: "stuck", ref: MODEL, input, idColumn: "id", cron: "0 2 * * *", timezone: "UTC", enabled: true }, CREATED);
    const alerts: Alert[] = [];
    // This scheduler only reports: the other replica holds the schedule's lock (it crashed mid-run, the lock has not expired).
    await sql`insert into batch_locks (name, holder, acquired_at, expires_at) values ('schedule:stuck', 'crashed', ${CREATED.toISOString()}, '2099-01-01T00:00:00.000Z')`.execute(app.store.db);
    const clock = new Date("2026-03-01T03:00:00.000Z");
    const scheduler = new BatchScheduler(app, { now: () => clock, onAlert: (alert) => void alerts.push(alert) });
    try {
      expect(await scheduler.tick()).not.toContain("stuck");
    } finally {
      await scheduler.close();
      await sql`delete from batch_locks where name = 'schedule:stuck'`.execute(app.store.db);
      await new ScheduleStore(app.store).remove("stuck");
    }
    const late = alerts.find((a) => a.id === "batch:stuck:late");
    expect(late).toMatchObject({ kind: "rule", severity: "warning", model: MODEL, value: 60 * 60_000, at: clock.toISOString() });
    expect(late?.message).toMatch(/stuck.*late/);
  }, 60_000);

  it("records a failed run and alerts on it", async () => {
    const missing = path.join(home, "no-such-file.csv");
    await new ScheduleStore(app.store).put({ name: "broken", ref: MODEL, input: missing, idColumn: "id", cron: "0 2 * * *", timezone: "UTC" }, CREATED);
    const alerts: Alert[] = [];
    const scheduler = new BatchScheduler(app, { now: () => AT_0205, onAlert: (alert) => void alerts.push(alert) });
    try {
      expect(await scheduler.tick()).toContain("broken");
      const health = (await scheduler.scheduleHealth()).find((h) => h.name === "broken");
      expect(health).toMatchObject({ failed: true, late: false });
      expect(health?.lastRun?.status).toBe("failed");
      expect(health?.lastRun?.error).toMatch(/no-such-file\.csv/);
    } finally {
      await scheduler.close();
      await new ScheduleStore(app.store).remove("broken");
    }
    const failed = alerts.find((a) => a.id === "batch:broken:failed");
    expect(failed).toMatchObject({ kind: "rule", severity: "error", model: MODEL, value: "failed" });
    expect(failed?.message).toMatch(/no-such-file\.csv/);
  }, 60_000);

  it("never runs a disabled schedule nor alerts on it, keeps it disabled when replaced, and runs it once enabled", async () => {
    const schedules = new ScheduleStore(app.store);
    const spec = { name: "paused", ref: MODEL, input, idColumn: "id", table: "paused_preds", cron: "0 2 * * *", timezone: "UTC" };
    await schedules.put({ ...spec, enabled: false }, CREATED);
    // Replaced without saying, it stays disabled.
    expect(await schedules.put(spec, CREATED)).toMatchObject({ enabled: false });
    const alerts: Alert[] = [];
    let clock = AT_0205;
    const scheduler = new BatchScheduler(app, { now: () => clock, onAlert: (alert) => void alerts.push(alert) });
    try {
      expect(await scheduler.tick()).not.toContain("paused");
      // Hours past its fire time: not late, because it is off.
      clock = new Date("2026-03-01T09:00:00.000Z");
      expect(await scheduler.tick()).not.toContain("paused");
      expect((await scheduler.scheduleHealth(clock)).find((h) => h.name === "paused")).toMatchObject({ late: false, lastRun: null });
      expect(alerts.filter((a) => a.id.startsWith("batch:paused:"))).toEqual([]);
      expect(await schedules.claim("paused", "someone", clock)).toBeUndefined();
      expect(await predictionCount("paused_preds").catch(() => 0)).toBe(0);

      expect(await schedules.setEnabled("paused", true)).toMatchObject({ name: "paused", enabled: true });
      // The fire time missed while it was off is run once, at the next check.
      expect(await scheduler.tick()).toContain("paused");
      expect(await scheduler.tick()).not.toContain("paused");
      expect((await schedules.get("paused"))?.lastRun?.status).toBe("succeeded");
      expect(await predictionCount("paused_preds")).toBe(ROWS);
      expect(await schedules.setEnabled("no-such-schedule", false)).toBeUndefined();
    } finally {
      await scheduler.close();
      await schedules.remove("paused");
    }
  }, 120_000);

  it("raises no failed alert for a schedule disabled after its run failed", async () => {
    const schedules = new ScheduleStore(app.store);
    await schedules.put({ name: "off-broken", ref: MODEL, input: path.join(home, "missing.csv"), idColumn: "id", cron: "0 2 * * *", timezone: "UTC" }, CREATED);
    const alerts: Alert[] = [];
    const scheduler = new BatchScheduler(app, { now: () => AT_0205, onAlert: (alert) => void alerts.push(alert) });
    try {
      expect(await scheduler.tick()).toContain("off-broken");
      expect(alerts.map((a) => a.id)).toContain("batch:off-broken:failed");
      alerts.length = 0;
      await schedules.setEnabled("off-broken", false);
      await scheduler.tick();
      expect(alerts.filter((a) => a.id.startsWith("batch:off-broken:"))).toEqual([]);
    } finally {
      await scheduler.close();
      await schedules.remove("off-broken");
    }
  }, 60_000);

  it("stores a schedule's max age, and refuses one that is not a positive whole number of ms", async () => {
    const schedules = new ScheduleStore(app.store);
    expect(await schedules.put({ name: "aged", ref: MODEL, input, idColumn: "id", cron: "0 2 * * *", maxAgeMs: 26 * 3_600_000 })).toMatchObject({ maxAgeMs: 26 * 3_600_000 });
    expect(await schedules.put({ name: "aged", ref: MODEL, input, idColumn: "id", cron: "0 2 * * *" })).toMatchObject({ maxAgeMs: null });
    for (const maxAgeMs of [0, -5, 1.5]) {
      await expect(schedules.put({ name: "aged", ref: MODEL, input, idColumn: "id", cron: "0 2 * * *", maxAgeMs })).rejects.toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "maxAgeMs" });
    }
    expect(await schedules.remove("aged")).toBe(true);
  });

  it("rejects a bad cron expression or timezone naming the field", async () => {
    const schedules = new ScheduleStore(app.store);
    await expect(schedules.put({ name: "bad", ref: MODEL, input, idColumn: "id", cron: "61 * * * *" })).rejects.toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "cron" });
    await expect(schedules.put({ name: "bad", ref: MODEL, input, idColumn: "id", cron: "0 2 * * *", timezone: "Mars/Olympus" })).rejects.toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "timezone" });
    expect(await schedules.get("bad")).toBeUndefined();
  });
});

describe("mlship batch schedule | schedules | unschedule", () => {
  it("stores, lists and removes a schedule", async () => {
    const cliHome = tempDir("mlship-schedule-cli-");
    const env = { MLSHIP_HOME: cliHome };
    const added = await runCli(["batch", "schedule", "daily", `${MODEL}@production`, "--input", input, "--cron", "0 2 * * *", "--timezone", "UTC", "--table", "daily_preds"], { env });
    expect(added.stderr).toBe("");
    expect(added.code).toBe(0);
    expect(added.stdout).toMatch(/scheduled daily: breast-cancer@production .* at "0 2 \* \* \*" \(UTC\), next run \d{4}-\d\d-\d\dT02:00:00\.000Z/);

    const listed = await runCli(["batch", "schedules", "--json"], { env });
    expect(listed.code).toBe(0);
    const list = JSON.parse(listed.stdout) as { name: string; ref: string; input: string; table: string; cron: string; timezone: string; nextRun: string; lastRun: unknown; late: boolean }[];
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ name: "daily", ref: `${MODEL}@production`, input, table: "daily_preds", cron: "0 2 * * *", timezone: "UTC", lastRun: null, late: false, state: "ok", enabled: true, maxAgeMs: null });
    expect(new Date(list[0]!.nextRun).getTime()).toBeGreaterThan(Date.now());

    const table = await runCli(["batch", "schedules"], { env });
    expect(table.stdout).toMatch(/NAME\s+MODEL\s+CRON\s+NEXT RUN/);
    expect(table.stdout).toMatch(/daily\s+breast-cancer@production\s+0 2 \* \* \* UTC/);

    // Disabled and enabled again, with a max age of its own; replacing it keeps it disabled.
    expect(await runCli(["batch", "disable", "daily"], { env })).toMatchObject({ code: 0, stdout: "disabled daily\n" });
    const replaced = await runCli(["batch", "schedule", "daily", `${MODEL}@production`, "--input", input, "--cron", "0 2 * * *", "--timezone", "UTC", "--table", "daily_preds", "--max-age", "26h"], { env });
    expect(replaced.code).toBe(0);
    expect(replaced.stdout).toMatch(/, stale after 1d2h, disabled \(turn it on with mlship batch enable daily\)\n$/);
    const disabled = JSON.parse((await runCli(["batch", "schedules", "--json"], { env })).stdout) as { name: string; enabled: boolean; state: string; nextRun: string | null; maxAgeMs: number }[];
    expect(disabled[0]).toMatchObject({ name: "daily", enabled: false, state: "disabled", nextRun: null, maxAgeMs: 26 * 3_600_000 });
    expect((await runCli(["batch", "schedules"], { env })).stdout).toMatch(/daily\s+breast-cancer@production\s+0 2 \* \* \* UTC\s+-\s+-\s+-\s+1d2h\s+disabled\s/);
    const enabled = await runCli(["batch", "enable", "daily"], { env });
    expect(enabled.code).toBe(0);
    expect(enabled.stdout).toMatch(/^enabled daily, next run \d{4}-\d\d-\d\dT02:00:00\.000Z\n$/);
    expect((await runCli(["batch", "schedules"], { env })).stdout).toMatch(/1d2h\s+ok\s/);
    const noSuch = await runCli(["batch", "disable", "nope"], { env });
    expect(noSuch.code).toBe(1);
    expect(noSuch.stderr).toMatch(/no batch schedule nope/);
    const badAge = await runCli(["batch", "schedule", "x", MODEL, "--input", input, "--cron", "0 2 * * *", "--max-age", "soon"], { env });
    expect(badAge.code).toBe(2);
    expect(badAge.stderr).toMatch(/--max-age must be a duration/);

    const bad = await runCli(["batch", "schedule", "x", MODEL, "--input", input, "--cron", "not a cron"], { env });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/invalid cron "not a cron".*MLSHIP_ERR_INPUT_INVALID/);

    const removed = await runCli(["batch", "unschedule", "daily"], { env });
    expect(removed).toMatchObject({ code: 0, stdout: "unscheduled daily\n" });
    const again = await runCli(["batch", "unschedule", "daily"], { env });
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/no batch schedule daily/);
    expect((await runCli(["batch", "schedules"], { env })).stdout).toBe("no batch schedules\n");
  }, 60_000);

  it("`batch scheduler` runs until stopped and exits cleanly", async () => {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 500);
    const result = await runCli(["batch", "scheduler", "--check-seconds", "1"], { env: { MLSHIP_HOME: tempDir("mlship-scheduler-cli-") }, signal: controller.signal });
    clearTimeout(timer);
    expect(result.stderr).toBe("");
    expect(result).toMatchObject({ code: 0, stdout: "batch scheduler running (checks every 1 s); stop it with Ctrl-C\nbatch scheduler stopped\n" });
    const bad = await runCli(["batch", "scheduler", "--check-seconds", "0"], { env: { MLSHIP_HOME: tempDir("mlship-scheduler-cli-") } });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--check-seconds/);
  }, 30_000);
});

describe("schedule locks on PostgreSQL", () => {
  it("of many replicas claiming one fire time at once, exactly one wins; an expired lock is taken over", async () => {
    const admin = await postgresAdmin();
    const db = await freshPostgres(admin, "mlship-schedule-pg");
    try {
      const stores = await Promise.all([db.open(), db.open(), db.open(), db.open()]);
      const first = new ScheduleStore(stores[0]!);
      await first.put({ name: "pg", ref: MODEL, input, idColumn: "id", cron: "0 2 * * *", timezone: "UTC", maxAgeMs: 86_400_000 }, CREATED);
      const claims = await Promise.all(stores.map((store, i) => new ScheduleStore(store).claim("pg", `replica-${i}`, AT_0205)));
      expect(claims.filter((c) => c !== undefined)).toHaveLength(1);
      const schedule = await first.get("pg");
      expect(schedule).toMatchObject({ maxAgeMs: 86_400_000, enabled: true, lastRun: { status: "running", startedAt: AT_0205.toISOString() } });
      // The fire time is taken: nobody claims it again, even once the lock has expired.
      expect(await first.claim("pg", "replica-x", new Date("2026-03-01T03:00:00.000Z"))).toBeUndefined();
      // The next fire time, while the holder of the last one still holds an unexpired lock: nobody else gets it.
      const nextDay = new Date("2026-03-02T02:01:00.000Z");
      const winner = claims.findIndex((c) => c !== undefined);
      expect(await first.renew("pg", `replica-${winner}`, new Date("2026-03-02T02:00:30.000Z"))).toBe(true);
      expect(await first.claim("pg", "replica-x", nextDay)).toBeUndefined();
      // Once it expired (the holder died), another replica takes it over.
      expect(await first.claim("pg", "replica-x", new Date("2026-03-02T02:30:00.000Z"))).toMatchObject({ name: "pg" });
      await first.finish("pg", "replica-x", { runId: null, status: "failed", error: "boom" }, new Date("2026-03-02T02:31:00.000Z"));
      const after = await first.get("pg");
      expect(healthOf(after!, new Date("2026-03-02T02:32:00.000Z"))).toMatchObject({ failed: true, late: false });
      expect(await first.remove("pg")).toBe(true);
    } finally {
      await db.dispose();
      await admin.end();
    }
  }, 60_000);
});
