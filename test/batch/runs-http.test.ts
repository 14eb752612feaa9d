// The dashboard's batch routes on real runs: the breast-cancer MLP from examples/models scores the fixture's
// production rows through scoreJob (what `mlship batch score` and the scheduler run) into the SQLite metadata store:
// a clean run, a run with rejected rows, a run that fails (a feature column missing) and a scheduled run into another
// table. Then GET /api/v1/batch/runs (order, filters, 400s), /runs/{id} (rejects, 404) and /freshness (health,
// max ages from the fallback, the query and a schedule; a scheduled target without runs) on the real server.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { batchFreshness, batchHealth } from "../../src/batch/freshness.js";
import { batchFreshnessAlerts, batchRoutes } from "../../src/batch/http.js";
import { failedRunOf, scoreJob, type ScoreJobOptions } from "../../src/batch/job.js";
import { maxAgeFor, nextFire, ScheduleStore } from "../../src/batch/schedule.js";
import type { BatchRun } from "../../src/batch/types.js";
import { defaultConfig } from "../../src/config/index.js";
import { Alerter, alertRoutes } from "../../src/monitor/index.js";
import { buildServer } from "../../src/serve/index.js";
import type { AlertsResponse, BatchFreshnessResponse, BatchFreshnessView, BatchRunDetail, BatchRunView } from "../../src/ui/contract.js";
import { fixture, REPO, tempDir } from "../cli/helpers.js";

const MODEL = "breast-cancer";
const EXAMPLE = path.join(REPO, "examples", "models", "breast-cancer");
const bc = fixture("breast_cancer_mlp");
const prodLines = fs.readFileSync(path.join(bc.dir, "prod.csv"), "utf8").trim().split(/\r?\n/);
const header = prodLines[0] as string;
const prodRows = prodLines.slice(1);
const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
/** The routes see the clock this far ahead of the runs, so ages are known to the second. */
const LATER_MS = 2 * HOUR_MS;

let home: string;
let app: Mlship;
let server: ReturnType<typeof buildServer>;
let clean: BatchRun;
let withRejects: BatchRun;
let failed: BatchRun;
let scheduled: BatchRun;
let scheduleCreatedAt: Date;

function csv(name: string, lines: string[]): string {
  const file = path.join(home, name);
  fs.writeFileSync(file, `${lines.join("\n")}\n`);
  return file;
}

async function score(options: Omit<ScoreJobOptions, "ref" | "idColumn">): Promise<BatchRun> {
  return scoreJob(app, { ref: `${MODEL}@production`, idColumn: "id", ...options });
}

async function getJson<T>(url: string, status = 200): Promise<T> {
  const res = await server.inject(url);
  expect(res.statusCode, res.body).toBe(status);
  return res.json<T>();
}

beforeAll(async () => {
  home = tempDir("batch-runs-http");
  app = await createMlship(defaultConfig({ home, user: "tester", "runtime.workers": 1, "log.level": "warn" }));
  await registerModel(app, EXAMPLE, { name: MODEL, alias: "production" });

  const good = csv("good.csv", [`id,${header}`, ...prodRows.slice(0, 40).map((row, i) => `g${i},${row}`)]);
  const textCell = (prodRows[0] as string).split(",");
  textCell[2] = "abc";
  const bad = csv("bad.csv", [`id,${header}`, ...prodRows.slice(0, 20).map((row, i) => `b${i},${row}`), `bad-text,${textCell.join(",")}`, `,${prodRows[1] as string}`]);
  const missing = csv("missing.csv", [`id,${header.split(",").slice(1).join(",")}`, `m0,${(prodRows[0] as string).split(",").slice(1).join(",")}`]);

  clean = await score({ input: good });
  withRejects = await score({ input: bad });
  const failing: ScoreJobOptions = { ref: `${MODEL}@production`, idColumn: "id", input: missing };
  await expect(scoreJob(app, failing)).rejects.toThrow(/mean radius/);
  failed = (await failedRunOf(app, failing)) as BatchRun;
  expect(failed?.status).toBe("failed");
  // What the scheduler runs: its name in the run's settings.
  scheduled = await score({ input: good, table: "scores_daily", settings: { schedule: "nightly" } });

  // Schedules made three days ago: their first fire time has long passed without a run starting, so they are late.
  scheduleCreatedAt = new Date(Date.now() - 3 * DAY_MS);
  const schedules = new ScheduleStore(app.store);
  await schedules.put({ name: "nightly", ref: `${MODEL}@production`, input: good, idColumn: "id", table: "scores_daily", cron: "0 2 * * *", timezone: "UTC", maxAgeMs: 90 * 60_000 }, scheduleCreatedAt);
  await schedules.put({ name: "churn-weekly", ref: "churn@production", input: good, idColumn: "id", table: "churn_scores", cron: "0 3 * * 1", timezone: "UTC" }, scheduleCreatedAt);

  server = buildServer({ scoring: app.scoring, registry: app.registry, logger: false });
  await server.register(batchRoutes, { store: app.store, registry: app.registry, maxAgeMs: DAY_MS, now: () => new Date(Date.now() + LATER_MS) });
}, 120_000);

afterAll(async () => {
  await server?.close();
  await app?.close();
  fs.rmSync(home, { recursive: true, force: true });
});

describe("GET /api/v1/batch/runs", () => {
  it("lists the recorded runs newest first, with counts, target and schedule", async () => {
    const { runs } = await getJson<{ runs: BatchRunView[] }>("/api/v1/batch/runs");
    expect(runs.map((r) => r.id)).toEqual([scheduled.id, failed.id, withRejects.id, clean.id]);
    const byId = new Map(runs.map((r) => [r.id, r]));
    expect(byId.get(clean.id)).toMatchObject({
      model: MODEL,
      version: 1,
      ref: `${MODEL}@production`,
      input: path.join(home, "good.csv"),
      table: "batch_predictions",
      target: "sqlite",
      status: "succeeded",
      rowsIn: 40,
      rowsOut: 40,
      rowsRejected: 0,
      error: null,
      shard: null,
      schedule: null,
      stalled: false,
      startedAt: clean.startedAt,
      endedAt: clean.endedAt,
    });
    expect(byId.get(clean.id)?.rowsPerSecond).toBeGreaterThan(0);
    expect(byId.get(clean.id)?.durationSeconds).toBeCloseTo((Date.parse(clean.endedAt as string) - Date.parse(clean.startedAt)) / 1000, 2);
    expect(byId.get(withRejects.id)).toMatchObject({ status: "succeeded", rowsIn: 22, rowsOut: 20, rowsRejected: 2 });
    expect(byId.get(failed.id)).toMatchObject({ status: "failed", rowsOut: 0 });
    expect(byId.get(failed.id)?.error).toMatch(/mean radius/);
    expect(byId.get(scheduled.id)).toMatchObject({ table: "scores_daily", schedule: "nightly", status: "succeeded", rowsOut: 40 });
  });

  it("filters by model and status, and limits", async () => {
    const ids = async (query: string): Promise<string[]> => (await getJson<{ runs: BatchRunView[] }>(`/api/v1/batch/runs?${query}`)).runs.map((r) => r.id);
    expect(await ids("status=failed")).toEqual([failed.id]);
    expect(await ids(`model=${MODEL}&status=succeeded`)).toEqual([scheduled.id, withRejects.id, clean.id]);
    expect(await ids("status=interrupted")).toEqual([]);
    expect(await ids("model=churn")).toEqual([]);
    expect(await ids("limit=2")).toEqual([scheduled.id, failed.id]);
    expect(await ids("limit=500")).toHaveLength(4);
  });

  it("answers 400 naming the field for a bad limit or an unknown status", async () => {
    for (const limit of ["0", "501", "abc", "2.5", "-1"]) {
      const body = await getJson<{ code: string; field: string; error: string }>(`/api/v1/batch/runs?limit=${limit}`, 400);
      expect(body).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "limit" });
      expect(body.error).toMatch(/1 to 500/);
    }
    const body = await getJson<{ code: string; field: string; error: string }>("/api/v1/batch/runs?status=done", 400);
    expect(body).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "status" });
    expect(body.error).toMatch(/running, succeeded, failed, interrupted/);
    expect((await getJson<{ field: string }>("/api/v1/batch/runs?status=failed&status=running", 400)).field).toBe("status");
  });
});

describe("GET /api/v1/batch/runs/{id}", () => {
  it("answers the run with its settings and rejected rows", async () => {
    const detail = await getJson<BatchRunDetail>(`/api/v1/batch/runs/${withRejects.id}`);
    expect(detail.run).toMatchObject({ id: withRejects.id, rowsRejected: 2, status: "succeeded" });
    expect(detail.settings).toMatchObject({ format: "csv", chunkRows: app.config.batch.chunkRows });
    // Which process ran it is for resuming, not for the page.
    expect(detail.settings).not.toHaveProperty("owner");
    expect(detail.rejects).toHaveLength(2);
    expect(detail.rejects[0]).toMatchObject({ rowNumber: 20, rowId: "bad-text" });
    expect(detail.rejects[0]?.reason).toMatch(/mean perimeter|number/i);
    expect(detail.rejects[1]).toMatchObject({ rowNumber: 21, rowId: null, field: "id" });

    const cleanDetail = await getJson<BatchRunDetail>(`/api/v1/batch/runs/${clean.id}`);
    expect(cleanDetail.rejects).toEqual([]);
    const failedDetail = await getJson<BatchRunDetail>(`/api/v1/batch/runs/${failed.id}`);
    expect(failedDetail.run.error).toMatch(/mean radius/);
  });

  it("shows the first 100 rejected rows of a run that rejected more", async () => {
    const lines = [`id,${header}`];
    for (let i = 0; i < 130; i++) lines.push(`,${prodRows[i % prodRows.length] as string}`);
    lines.push(`ok-0,${prodRows[0] as string}`);
    const run = await score({ input: csv("mostly-bad.csv", lines), table: "mostly_bad" });
    expect(run.rowsRejected).toBe(130);
    const detail = await getJson<BatchRunDetail>(`/api/v1/batch/runs/${run.id}`);
    expect(detail.run.rowsRejected).toBe(130);
    expect(detail.rejects.map((r) => r.rowNumber)).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  it("answers 404 MLSHIP_ERR_BATCH_RUN_NOT_FOUND for an unknown run", async () => {
    const body = await getJson<{ code: string; field: string; error: string }>("/api/v1/batch/runs/no-such-run", 404);
    expect(body).toMatchObject({ code: "MLSHIP_ERR_BATCH_RUN_NOT_FOUND", field: "id" });
    expect(body.error).toContain("no-such-run");
  });
});

describe("GET /api/v1/batch/freshness", () => {
  const entry = (response: BatchFreshnessResponse, model: string, table: string): BatchFreshnessView => {
    const found = response.freshness.find((f) => f.model === model && f.table === table);
    expect(found, `${model}/${table}`).toBeDefined();
    return found as BatchFreshnessView;
  };

  it("judges each table as `mlship batch status` does, with the schedule writing it", async () => {
    const response = await getJson<BatchFreshnessResponse>(`/api/v1/batch/freshness?model=${MODEL}`);
    expect(response.maxAgeSeconds).toBe(DAY_MS / 1000);
    const now = Date.parse(response.now);
    expect(Math.abs(now - (Date.now() + LATER_MS))).toBeLessThan(60_000);
    expect(response.freshness.map((f) => f.table)).toEqual(["batch_predictions", "mostly_bad", "scores_daily"]);

    // The failure after the last success marks the table failed; its age is from the clean-with-rejects run.
    const main = entry(response, MODEL, "batch_predictions");
    expect(main).toMatchObject({
      lastSuccessAt: withRejects.endedAt,
      lastSuccessVersion: 1,
      lastSuccessRows: 20,
      maxAgeSeconds: DAY_MS / 1000,
      maxAgeSchedule: null,
      stale: false,
      health: "failed",
      lastRunFailed: true,
      failedSinceSuccess: true,
      lastRun: { id: failed.id, status: "failed", version: 1, startedAt: failed.startedAt, endedAt: failed.endedAt },
      schedule: null,
      shards: null,
    });
    expect(main.lastError).toMatch(/mean radius/);
    expect(main.ageSeconds).toBeCloseTo((now - Date.parse(withRejects.endedAt as string)) / 1000, 1);

    // The schedule's own max age (90 minutes) applies to the table it writes: two hours later, it is stale.
    const daily = entry(response, MODEL, "scores_daily");
    const expectedNext = nextFire({ cron: "0 2 * * *", timezone: "UTC" }, scheduleCreatedAt);
    expect(daily).toMatchObject({
      lastSuccessAt: scheduled.endedAt,
      lastSuccessRows: 40,
      maxAgeSeconds: 90 * 60,
      maxAgeSchedule: "nightly",
      stale: true,
      health: "stale",
      lastRunFailed: false,
      failedSinceSuccess: false,
      lastError: null,
      schedule: { name: "nightly", cron: "0 2 * * *", timezone: "UTC", enabled: true, nextAt: expectedNext?.toISOString(), late: true, lastStatus: null },
    });

    // The same functions as `mlship batch status` decide, on the same runs and schedules.
    const judged = await batchFreshness(app.store, new Date(now), { model: MODEL });
    const schedules = await new ScheduleStore(app.store).list();
    for (const f of judged) {
      const applied = maxAgeFor(schedules, f.model, f.table, DAY_MS);
      expect(entry(response, f.model, f.table).health).toBe(batchHealth(f, applied.maxAgeMs));
    }
  });

  it("takes the fallback max age from ?maxAge, lists scheduled targets without runs, and refuses a bad maxAge", async () => {
    const response = await getJson<BatchFreshnessResponse>("/api/v1/batch/freshness?maxAge=1h");
    expect(response.maxAgeSeconds).toBe(3600);
    // Two hours old against one hour: stale now, besides failed.
    expect(entry(response, MODEL, "mostly_bad")).toMatchObject({ maxAgeSeconds: 3600, stale: true, health: "stale" });
    expect(entry(response, MODEL, "batch_predictions")).toMatchObject({ stale: true, health: "failed" });
    // A schedule's own max age still wins over the fallback for its table.
    expect(entry(response, MODEL, "scores_daily")).toMatchObject({ maxAgeSeconds: 5400, maxAgeSchedule: "nightly" });
    expect(entry(response, "churn", "churn_scores")).toMatchObject({
      lastSuccessAt: null,
      ageSeconds: null,
      lastRun: null,
      health: "never succeeded",
      stale: false,
      maxAgeSeconds: 3600,
      schedule: { name: "churn-weekly", enabled: true, late: true },
    });

    const fresh = await getJson<BatchFreshnessResponse>("/api/v1/batch/freshness?maxAge=3h");
    expect(entry(fresh, MODEL, "mostly_bad")).toMatchObject({ stale: false, health: "ok" });

    const body = await getJson<{ code: string; field: string }>("/api/v1/batch/freshness?maxAge=soon", 400);
    expect(body).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "maxAge" });
  });

  it("leaves a disabled schedule's max age out and says it is off", async () => {
    const schedules = new ScheduleStore(app.store);
    await schedules.setEnabled("nightly", false);
    try {
      const response = await getJson<BatchFreshnessResponse>(`/api/v1/batch/freshness?model=${MODEL}`);
      expect(entry(response, MODEL, "scores_daily")).toMatchObject({
        maxAgeSeconds: DAY_MS / 1000,
        maxAgeSchedule: null,
        stale: false,
        health: "ok",
        schedule: { name: "nightly", enabled: false, late: false },
      });
    } finally {
      await schedules.setEnabled("nightly", true);
    }
  });
});

describe("batch tables as alerts (GET /api/v1/alerts)", () => {
  it("a table failed since its last success is an error, a scheduled table past its max age a warning; healthy and scheduled-without-runs tables none", async () => {
    const at = new Date(Date.now() + LATER_MS);
    const alerts = await batchFreshnessAlerts(app.store, DAY_MS, at);
    expect(alerts.map((a) => a.id).sort()).toEqual([`batch-table:${MODEL}:batch_predictions:failed`, `batch-table:${MODEL}:scores_daily:stale`]);
    const failedAlert = alerts.find((a) => a.kind === "failed");
    expect(failedAlert).toMatchObject({ source: "batch", severity: "error", model: MODEL, version: null });
    expect(failedAlert?.message).toContain("mean radius");
    expect(failedAlert?.since).toBe(failed.endedAt);
    const stale = alerts.find((a) => a.kind === "stale");
    // Stale since the moment the last success passed its schedule's 90 minutes.
    expect(Date.parse(stale?.since as string)).toBe(Date.parse(scheduled.endedAt as string) + 90 * 60_000);

    // Over HTTP, next to the alerter's own (none here), and a failing computation leaves the alerter's list answering.
    const alertsServer = buildServer({ scoring: app.scoring, registry: app.registry, logger: false });
    await alertsServer.register(alertRoutes, { alerter: new Alerter({ sinks: [] }), computed: () => batchFreshnessAlerts(app.store, DAY_MS, at) });
    const broken = buildServer({ scoring: app.scoring, registry: app.registry, logger: false });
    await broken.register(alertRoutes, { alerter: new Alerter({ sinks: [] }), computed: () => Promise.reject(new Error("store down")) });
    try {
      const body = (await alertsServer.inject("/api/v1/alerts")).json<AlertsResponse>();
      expect(body.active.map((a) => a.id)).toEqual([`batch-table:${MODEL}:batch_predictions:failed`, `batch-table:${MODEL}:scores_daily:stale`]);
      expect(body.recent).toEqual([]);
      const down = await broken.inject("/api/v1/alerts");
      expect(down.statusCode).toBe(200);
      expect(down.json<AlertsResponse>().active).toEqual([]);
    } finally {
      await alertsServer.close();
      await broken.close();
    }
  });
});
