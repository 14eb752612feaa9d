// Live monitoring while serving: a real scoring service over the breast-cancer model, a reference profile in the
// same SQLite home, requests scored through the service with an injected clock stepping over hourly windows, alerts
// delivered to a real HTTP receiver and the Prometheus gauge.
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkDataset, MonitorStore, predictionTable, profileTable, readDatasetFile } from "../../src/monitor/index.js";
import type { Alert, ReferenceProfile, StoredWindow } from "../../src/monitor/index.js";
import { LiveMonitor } from "../../src/monitor/live.js";
import { openSqlStore, type SqlStore } from "../../src/store/index.js";
import { createWorld, FIXTURES, readCsv, waitFor, type World } from "../scoring/world.js";

const DIR = path.join(FIXTURES, "breast_cancer_mlp");
const PLANTED = ["mean radius", "mean texture", "worst smoothness"];
const HOUR = 3_600_000;
const T0 = Date.parse("2026-12-01T10:00:00Z");

function memoryLogger(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: "debug" }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, lines };
}

interface Receiver {
  url: string;
  bodies: { alerts: Alert[] }[];
  close(): Promise<void>;
}

async function startReceiver(): Promise<Receiver> {
  const bodies: { alerts: Alert[] }[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      bodies.push(JSON.parse(Buffer.concat(chunks).toString("utf8")) as { alerts: Alert[] });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/hook`, bodies, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe("LiveMonitor", () => {
  let world: World;
  let sql: SqlStore;
  let store: MonitorStore;
  let columns: string[];
  let prod: number[][];
  let drifted: number[][];
  let reference: ReferenceProfile;

  const score = async (ref: string, rows: number[][], chunk = 10): Promise<void> => {
    for (let i = 0; i < rows.length; i += chunk) {
      const result = await world.scoring.score(ref, { kind: "mlflow", body: { dataframe_split: { columns, data: rows.slice(i, i + chunk) } } });
      expect(result.rows).toBe(Math.min(chunk, rows.length - i));
    }
  };

  beforeAll(async () => {
    world = await createWorld({ workers: 1 });
    await world.register("bc", "breast_cancer_mlp", { columns: true });
    await world.register("unprofiled", "breast_cancer_mlp", { columns: true });
    sql = await openSqlStore({ home: world.home });
    store = new MonitorStore(sql);
    const { table, source } = await readDatasetFile(path.join(DIR, "train.csv"), { excludeColumns: ["label"] });
    reference = {
      model: "bc",
      version: 1,
      createdAt: new Date(T0 - 24 * HOUR).toISOString(),
      source,
      features: profileTable(table),
      predictions: profileTable(await predictionTable(world.scoring, "bc@1", table)),
    };
    await store.saveReference(reference);
    const csv = async (file: string): Promise<number[][]> => {
      const { header, rows } = await readCsv("breast_cancer_mlp", file);
      columns = header.slice(0, -1);
      return rows.map((r) => r.slice(0, -1).map(Number));
    };
    prod = await csv("prod.csv");
    drifted = await csv("drifted.csv");
  }, 120_000);

  afterAll(async () => {
    await sql?.close();
    await world?.close();
  });

  it("profiles served requests into hourly windows, finds the planted drift and alerts", async () => {
    const receiver = await startReceiver();
    const registry = new Registry();
    const { logger, lines } = memoryLogger();
    let clock = T0 + 5 * 60_000;
    const monitor = new LiveMonitor({ scoring: world.scoring, store, logger, registry, sizes: ["1h"], minRows: 30, webhookUrl: receiver.url, now: () => new Date(clock), timer: false });
    monitor.start();
    try {
      const half = Math.floor(prod.length / 2);
      await score("bc", prod.slice(0, half));
      await score("unprofiled", prod.slice(0, 20));
      // The first window is closed on time; the second is still open.
      clock = T0 + HOUR + 5 * 60_000;
      await score("bc", prod.slice(half));
      const first = await monitor.flush(new Date(T0 + HOUR));
      expect(first.errors).toBe(0);
      expect(first.windows.map((w) => [w.window.start, w.window.rows])).toEqual([["2026-12-01T10:00:00.000Z", half]]);
      expect(monitor.stats()).toMatchObject({ versionsMonitored: 1, versionsWithoutReference: 1, openWindows: 1 });

      clock = T0 + 2 * HOUR + 5 * 60_000;
      await score("bc", drifted);
      const rest = await monitor.flush(new Date(T0 + 3 * HOUR));
      expect(rest.errors).toBe(0);
      expect(rest.windows).toHaveLength(2);

      const stored = (await store.listWindows("bc", 1, { size: "1h" })) as StoredWindow[];
      expect(stored.map((w) => [w.start, w.end, w.rows, w.insufficient])).toEqual([
        ["2026-12-01T10:00:00.000Z", "2026-12-01T11:00:00.000Z", half, false],
        ["2026-12-01T11:00:00.000Z", "2026-12-01T12:00:00.000Z", prod.length - half, false],
        ["2026-12-01T12:00:00.000Z", "2026-12-01T13:00:00.000Z", drifted.length, false],
      ]);
      expect(await store.listWindows("unprofiled", 1)).toEqual([]);
      // Profiles on the reference's edges, no raw rows: the stored window holds the reservoir (every value, here).
      const third = stored[2] as StoredWindow;
      const radius = third.features.columns.find((c) => c.name === "mean radius");
      expect(radius).toMatchObject({ kind: "numeric", count: drifted.length, histogram: { rule: "fixed" } });
      expect(third.features.columns).toHaveLength(30);
      expect(third.predictions?.columns.map((c) => c.name).sort()).toEqual(["label", "probabilities[0]", "probabilities[1]"]);

      for (const window of stored.slice(0, 2)) {
        for (const feature of PLANTED) expect(window.drift?.features.find((f) => f.feature === feature)?.drifted, `${window.start} ${feature}`).toBe(false);
      }
      const liveDrifted = (third.drift?.features ?? []).filter((f) => f.drifted).map((f) => f.feature).sort();
      expect(liveDrifted).toEqual([...PLANTED].sort());

      // The same rows checked from the file give the same tests: the live window is exact below its sample size.
      const resolved = await world.scoring.resolve("bc@1");
      const fileReport = await checkDataset({ scoring: world.scoring, store }, resolved, path.join(DIR, "drifted.csv"));
      expect(fileReport.drift.features.filter((f) => f.drifted).map((f) => f.feature).sort()).toEqual(liveDrifted);
      for (const fileFeature of fileReport.drift.features) {
        const live = third.drift?.features.find((f) => f.feature === fileFeature.feature);
        expect(live?.method, fileFeature.feature).toBe(fileFeature.method);
        expect(live?.statistic, fileFeature.feature).toBeCloseTo(fileFeature.statistic, 12);
        expect(live?.details.currentApproximate).toBe(false);
      }

      // Alerts: the planted features' drift reached the webhook, the log and the gauge.
      const posted = receiver.bodies.flatMap((b) => b.alerts);
      const driftAlerts = posted.filter((a) => a.kind === "drift").map((a) => a.feature).sort();
      expect(driftAlerts).toEqual([...PLANTED].sort());
      expect(posted.find((a) => a.kind === "drift" && a.feature === "mean radius")).toMatchObject({
        id: "bc@1:drift:drift:mean radius[1h]",
        model: "bc",
        version: 1,
        window: { size: "1h", start: "2026-12-01T12:00:00.000Z", end: "2026-12-01T13:00:00.000Z" },
      });
      expect(lines.filter((l) => l.event === "monitor_alert").map((l) => (l.alert as Alert).feature)).toEqual(expect.arrayContaining(PLANTED));
      const gauge = await registry.getSingleMetric("mlship_monitor_alert_active")?.get();
      const active = (gauge?.values ?? []).filter((v) => v.value === 1 && v.labels.kind === "drift").map((v) => v.labels.feature).sort();
      expect(active).toEqual([...PLANTED].sort());

      // A partly filled window is only stored on close({ flushOpen }), and as insufficient below minRows.
      clock = T0 + 3 * HOUR + 5 * 60_000;
      await score("bc", prod.slice(0, 10));
      const closed = await monitor.close({ flushOpen: true });
      expect(closed.windows.map((w) => [w.window.start, w.window.rows, w.window.insufficient, w.window.drift, w.alerts])).toEqual([
        ["2026-12-01T13:00:00.000Z", 10, true, undefined, undefined],
      ]);
      expect(monitor.stats()).toMatchObject({
        versionsMonitored: 1,
        versionsWithoutReference: 1,
        openWindows: 0,
        // 8 + 8 + 15 + 1 requests of at most 10 rows.
        eventsProfiled: 32,
        // The unprofiled version's 2 requests, and the file check's own scoring call (protocol "monitor").
        eventsIgnored: 3,
        eventsDropped: 0,
        rowsProfiled: prod.length + drifted.length + 10,
        windowsSaved: 4,
        errors: 0,
      });
      // After close, requests are no longer heard.
      await score("bc", prod.slice(0, 10));
      expect(monitor.stats().eventsSeen).toBe(35);
    } finally {
      await monitor.close();
      await receiver.close();
    }
  }, 120_000);

  it("never fails scoring: a store that throws and a clock that throws are logged and counted", async () => {
    const broken = await openSqlStore({ home: world.home });
    await broken.close();
    const { logger, lines } = memoryLogger();
    const failing = new LiveMonitor({ scoring: world.scoring, store: new MonitorStore(broken), logger, sizes: ["1h"], now: () => new Date(T0), timer: false });
    failing.start();
    const { logger: clockLogger, lines: clockLines } = memoryLogger();
    const badClock = new LiveMonitor({
      scoring: world.scoring,
      store,
      logger: clockLogger,
      now: () => {
        throw new Error("clock is broken");
      },
      timer: false,
    });
    badClock.start();
    try {
      await score("bc", prod.slice(0, 20));
      const flushed = await failing.flush(new Date(T0 + HOUR));
      expect(flushed.windows).toEqual([]);
      expect(failing.stats()).toMatchObject({ eventsSeen: 2, eventsProfiled: 0, versionsMonitored: 0, versionsWithoutReference: 1 });
      expect(failing.stats().errors).toBeGreaterThanOrEqual(1);
      expect(lines.find((l) => l.event === "monitor_live_error")).toMatchObject({ level: 50, model: "bc", version: 1 });
      expect(badClock.stats()).toMatchObject({ eventsSeen: 2, errors: 2, queuedEvents: 0 });
      expect(clockLines.filter((l) => l.event === "monitor_live_error").map((l) => l.msg)).toEqual([
        "live monitor could not take a scoring event: clock is broken",
        "live monitor could not take a scoring event: clock is broken",
      ]);
    } finally {
      await failing.close();
      // Its own clock cannot tell which windows have ended: close says so instead of guessing.
      await expect(badClock.close()).rejects.toThrow("clock is broken");
    }
  }, 60_000);

  it("looks a version without a reference up again only after 60 s, then monitors it", async () => {
    await world.register("late", "breast_cancer_mlp", { columns: true });
    const { logger } = memoryLogger();
    let clock = T0 + 10 * HOUR;
    const monitor = new LiveMonitor({ scoring: world.scoring, store, logger, sizes: ["1h"], now: () => new Date(clock), timer: false });
    monitor.start();
    try {
      await score("late", prod.slice(0, 10));
      await monitor.flush(new Date(clock));
      expect(monitor.stats()).toMatchObject({ versionsMonitored: 0, versionsWithoutReference: 1, eventsIgnored: 1 });
      await store.saveReference({ ...reference, model: "late" });
      clock += 30_000;
      await score("late", prod.slice(10, 40), 30);
      await monitor.flush(new Date(clock));
      expect(monitor.stats()).toMatchObject({ versionsMonitored: 0, eventsIgnored: 2, eventsProfiled: 0 });
      clock += 31_000;
      await score("late", prod.slice(40, 80), 40);
      const flushed = await monitor.flush(new Date(T0 + 11 * HOUR));
      expect(monitor.stats()).toMatchObject({ versionsMonitored: 1, versionsWithoutReference: 0, eventsProfiled: 1 });
      expect(flushed.windows.map((w) => [w.window.model, w.window.start, w.window.rows, w.window.insufficient])).toEqual([["late", "2026-12-01T20:00:00.000Z", 40, false]]);
    } finally {
      await monitor.close();
    }
  }, 60_000);

  it("drops requests beyond its queue bound and closes windows on its own timer", async () => {
    const { logger } = memoryLogger();
    const bounded = new LiveMonitor({ scoring: world.scoring, store, logger, sizes: ["1h"], maxQueuedRows: 5, timer: false });
    bounded.start();
    const timed = new LiveMonitor({ scoring: world.scoring, store, logger, sizes: ["2s"], minRows: 5 });
    timed.start();
    try {
      await score("bc", prod.slice(0, 10));
      expect(bounded.stats()).toMatchObject({ eventsSeen: 1, eventsDropped: 1, queuedEvents: 0 });
      // The 2 s windows close by the timer (every second): no flush call here.
      await waitFor(async () => (await store.listWindows("bc", 1, { size: "2s" })).length === 1, 20_000);
      const [window] = (await store.listWindows("bc", 1, { size: "2s" })) as StoredWindow[];
      expect(window?.rows).toBe(10);
      expect(window?.drift?.features).toHaveLength(30);
      expect(timed.stats()).toMatchObject({ openWindows: 0, windowsSaved: 1, errors: 0 });
    } finally {
      await bounded.close();
      await timed.close();
    }
  }, 60_000);
});
