import type { AddressInfo } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { healthOf, scheduleAlerts, type BatchSchedule } from "../../src/batch/index.js";
import { silentLogger } from "../../src/core/index.js";
import { conceptDriftAlert } from "../../src/feedback/index.js";
import { defaultMonitorConfig } from "../../src/package/index.js";
import { Alerter, AlertHistory, alertRoutes, alertsFromReport, checkRules, columnsOf, datasetDrift, logSink, profileTable, readDatasetFile, referenceFromProfile } from "../../src/monitor/index.js";
import type { Alert, AlertWindow, CheckReport } from "../../src/monitor/index.js";
import type { AlertsResponse } from "../../src/ui/contract.js";

const FIXTURES = fileURLToPath(new URL("../../../shared/fixtures/breast_cancer_mlp/", import.meta.url));

/** A check of `current` against train.csv, from the same pieces `checkDataset` uses. */
async function check(current: string): Promise<CheckReport> {
  const train = (await readDatasetFile(path.join(FIXTURES, "train.csv"), { excludeColumns: ["label"] })).table;
  const data = (await readDatasetFile(path.join(FIXTURES, current), { excludeColumns: ["label"] })).table;
  const reference = profileTable(train);
  const kinds = Object.fromEntries(reference.columns.map((c) => [c.name, c.kind]));
  const edges = Object.fromEntries(reference.columns.flatMap((c) => (c.kind === "numeric" ? [[c.name, c.histogram.edges]] : [])));
  const profile = profileTable(data, { kinds, edges });
  const rules = checkRules({ current: profile, reference, config: defaultMonitorConfig() });
  const drift = datasetDrift(referenceFromProfile(reference), columnsOf(data), { kinds });
  return { model: "breast-cancer", version: 3, rows: data.rows, source: current, rules, drift, skippedFeatures: [], predictionDrift: undefined, predictionDriftSkipped: "no model scored", windows: undefined, kinds: undefined, failures: [], passed: true };
}

/** A nightly schedule of `scores@production` whose last run failed two days ago, so it is failed and late. */
function failingSchedule(now: Date): BatchSchedule {
  const twoDaysAgo = new Date(now.getTime() - 2 * 86_400_000).toISOString();
  return {
    name: "nightly-scores",
    ref: "scores@production",
    input: "/data/customers.parquet",
    idColumn: "id",
    into: null,
    table: null,
    cron: "0 2 * * *",
    timezone: null,
    maxAgeMs: null,
    createdAt: twoDaysAgo,
    createdBy: "test",
    enabled: true,
    lastRun: { runId: "r1", startedAt: twoDaysAgo, endedAt: twoDaysAgo, status: "failed", error: "input file not found" },
  };
}

describe("GET /api/v1/alerts over a real alerter", () => {
  let app: FastifyInstance;
  let url: string;
  const alerter = new Alerter({ sinks: [logSink(silentLogger())] });
  const get = async (): Promise<AlertsResponse> => {
    const res = await fetch(`${url}/api/v1/alerts`);
    expect(res.status).toBe(200);
    return (await res.json()) as AlertsResponse;
  };

  beforeAll(async () => {
    app = Fastify({ logger: false });
    await app.register(alertRoutes, { alerter });
    await app.listen({ host: "127.0.0.1", port: 0 });
    url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await app?.close();
  });

  it("lists drift, batch and feedback alerts as they fire, with their source, kind and since, and their clearing", async () => {
    expect(await get()).toEqual({ active: [], recent: [] });

    const window: AlertWindow = { size: "1h", start: "2026-12-01T10:00:00.000Z", end: "2026-12-01T11:00:00.000Z" };
    const driftAt = new Date("2026-12-01T11:00:05.000Z");
    const drifted = alertsFromReport(await check("drifted.csv"), window);
    const featureDrift = drifted.filter((a) => a.kind === "drift");
    expect(featureDrift.length).toBeGreaterThan(0);
    const scope = "breast-cancer@3[1h]";
    expect((await alerter.process(drifted, driftAt, { scope })).fired).toHaveLength(drifted.length);

    const batchAt = new Date("2026-12-01T11:05:00.000Z");
    const schedule = failingSchedule(batchAt);
    const batchAlerts = scheduleAlerts(schedule, healthOf(schedule, batchAt), batchAt);
    expect(batchAlerts.map((a) => a.id).sort()).toEqual(["batch:nightly-scores:failed", "batch:nightly-scores:late"]);
    for (const alert of batchAlerts) await alerter.process([alert], batchAt, { scope: alert.id });

    const conceptAt = new Date("2026-12-01T11:06:00.000Z");
    const concept = conceptDriftAlert("breast-cancer", 3, { detector: "ddm", outcomes: 400, at: "2026-12-01T10:30:00.000Z", before: 0.04, after: 0.21 }, { size: "1d", start: "2026-11-30T11:00:00.000Z", end: "2026-12-01T11:00:00.000Z" }, conceptAt);
    await alerter.process([concept], conceptAt, { scope: "quality:breast-cancer@3" });

    const fired = await get();
    expect(fired.active).toHaveLength(drifted.length + 3);
    // Errors first, then the most recently raised.
    const severities = fired.active.map((a) => a.severity);
    expect(severities).toEqual([...severities].sort((a, b) => (a === b ? 0 : a === "error" ? -1 : 1)));
    expect(fired.active[0]).toEqual({
      id: "batch:nightly-scores:failed",
      source: "batch",
      kind: "failed",
      severity: "error",
      model: "scores",
      version: null,
      feature: null,
      window: null,
      message: expect.stringContaining("input file not found") as string,
      since: batchAt.toISOString(),
      at: batchAt.toISOString(),
    });
    expect(fired.active.find((a) => a.id === "batch:nightly-scores:late")).toMatchObject({ source: "batch", kind: "late", severity: "warning", model: "scores", version: null });
    expect(fired.active.find((a) => a.id === concept.id)).toMatchObject({ source: "feedback", kind: "concept_drift", severity: "warning", model: "breast-cancer", version: 3, since: conceptAt.toISOString() });
    const first = featureDrift[0] as Alert;
    expect(fired.active.find((a) => a.id === first.id)).toEqual({
      id: first.id,
      source: "monitor",
      kind: "drift",
      severity: "warning",
      model: "breast-cancer",
      version: 3,
      feature: first.feature,
      window,
      message: first.message,
      since: driftAt.toISOString(),
      at: window.end,
    });
    // Every finding of the report (failed rules too) is monitoring's, with its own kind and severity.
    for (const a of drifted) {
      expect(fired.active.find((v) => v.id === a.id)).toMatchObject({ source: "monitor", kind: a.kind, severity: a.severity, feature: a.feature ?? null, window });
    }
    // Newest first: the concept drift, the two batch alerts, then the drift report's.
    expect(fired.recent).toHaveLength(drifted.length + 3);
    expect(fired.recent.every((e) => e.event === "fired")).toBe(true);
    expect(fired.recent[0]?.alert.id).toBe(concept.id);
    expect(fired.recent.slice(1, 3).map((e) => e.at)).toEqual([batchAt.toISOString(), batchAt.toISOString()]);
    expect(new Set(fired.recent.slice(3).map((e) => e.alert.id))).toEqual(new Set(drifted.map((a) => a.id)));

    // The next window of the same size is like the training data: the drift alerts clear, the others stay.
    const calm = alertsFromReport(await check("train.csv"), { ...window, start: window.end, end: "2026-12-01T12:00:00.000Z" });
    expect(calm.filter((a) => a.kind === "drift" || a.kind === "dataset_drift")).toEqual([]);
    const clearedAt = new Date("2026-12-01T12:00:05.000Z");
    const result = await alerter.process(calm, clearedAt, { scope });
    expect(result.cleared.map((a) => a.id).sort()).toEqual(drifted.map((a) => a.id).filter((id) => !calm.some((c) => c.id === id)).sort());

    const after = await get();
    expect(after.active.map((a) => a.id).sort()).toEqual([...calm.map((a) => a.id), "batch:nightly-scores:failed", "batch:nightly-scores:late", concept.id].sort());
    const cleared = after.recent.filter((e) => e.event === "cleared");
    expect(cleared).toHaveLength(result.cleared.length);
    // A cleared event keeps when its alert became active.
    expect(cleared.find((e) => e.alert.id === first.id)).toMatchObject({ at: clearedAt.toISOString(), event: "cleared", alert: { since: driftAt.toISOString(), source: "monitor" } });
    expect(after.recent[0]?.at).toBe(clearedAt.toISOString());
  });
});

describe("alert history", () => {
  const alert = (n: number): Alert => ({ id: `m@1:drift:drift:f${n}`, model: "m", version: 1, kind: "drift", severity: "warning", feature: `f${n}`, message: `drift in f${n}`, value: 0.001, threshold: 0.05, at: "2026-12-01T00:00:00.000Z" });

  it("keeps the newest 200 events by default, newest first", async () => {
    const alerter = new Alerter({ sinks: [] });
    for (let n = 0; n < 130; n++) await alerter.process([alert(n)], new Date(Date.UTC(2026, 11, 1, 0, n)), { scope: `s${n}` });
    // 130 fired, then 130 cleared: 260 events, the oldest 60 dropped.
    for (let n = 0; n < 130; n++) await alerter.process([], new Date(Date.UTC(2026, 11, 1, 3, n)), { scope: `s${n}` });
    const recent = alerter.history.recent();
    expect(recent).toHaveLength(200);
    expect(recent[0]).toMatchObject({ event: "cleared", alert: { id: alert(129).id } });
    expect(recent[199]).toMatchObject({ event: "fired", alert: { id: alert(60).id } });
    expect(recent.map((e) => Date.parse(e.at))).toEqual(recent.map((e) => Date.parse(e.at)).sort((a, b) => b - a));
    expect(await alerter.active()).toEqual([]);
  });

  it("wraps a small ring", () => {
    const history = new AlertHistory(3);
    for (let n = 0; n < 5; n++) history.record({ at: `2026-12-01T00:00:0${n}.000Z`, event: "fired", alert: alert(n), since: "2026-12-01T00:00:00.000Z" });
    expect(history.recent().map((e) => e.alert.feature)).toEqual(["f4", "f3", "f2"]);
  });
});
