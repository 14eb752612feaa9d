// The monitoring REST routes on the real server (buildServer + monitorRoutes, as `mlship serve` mounts them), over a
// reference profile made from the breast-cancer training data.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MonitorStore, monitorRoutes, profileTable, readDatasetFile } from "../../src/monitor/index.js";
import type { ReferenceProfile } from "../../src/monitor/index.js";
import { buildServer, requestMetricsOf } from "../../src/serve/index.js";
import { openSqlStore, type SqlStore } from "../../src/store/index.js";
import { createWorld, FIXTURES, type World } from "../scoring/world.js";

describe("monitoring REST routes", () => {
  let world: World;
  let sql: SqlStore;
  let store: MonitorStore;
  let app: ReturnType<typeof buildServer>;

  beforeAll(async () => {
    world = await createWorld({ workers: 1 });
    await world.register("bc", "breast_cancer_mlp", { columns: true });
    await world.register("bc", "breast_cancer_mlp", { columns: true });
    sql = await openSqlStore({ home: world.home });
    store = new MonitorStore(sql);
    const { table, source } = await readDatasetFile(path.join(FIXTURES, "breast_cancer_mlp", "train.csv"), { excludeColumns: ["label"] });
    const profile: ReferenceProfile = { model: "bc", version: 1, createdAt: new Date("2026-12-01T00:00:00Z").toISOString(), source, features: profileTable(table), predictions: undefined };
    await store.saveReference(profile);
    const features = profileTable({ ...table, rows: 10, values: table.values.map((c) => c.slice(0, 10)) });
    for (const [size, start] of [["1h", "2026-12-01T10:00:00Z"], ["1h", "2026-12-01T11:00:00Z"], ["1d", "2026-12-01T00:00:00Z"]] as const) {
      const end = new Date(new Date(start).getTime() + (size === "1h" ? 3_600_000 : 86_400_000)).toISOString();
      await store.saveWindow({ model: "bc", version: 1, size, start, end, createdAt: end, features, predictions: undefined });
    }
    app = buildServer({ scoring: world.scoring, registry: world.registry, logger: false });
    const metrics = requestMetricsOf(app);
    await app.register(monitorRoutes, { store, registry: world.registry, scoring: world.scoring, requests: (m, v) => metrics?.snapshot(m, v) });
    await app.ready();
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    await sql?.close();
    await world?.close();
  });

  it("serves the stored reference profile", async () => {
    const res = await app.inject("/api/v1/models/bc/versions/1/monitor/reference");
    expect(res.statusCode).toBe(200);
    const body = res.json<ReferenceProfile>();
    expect(body).toMatchObject({ model: "bc", version: 1, source: { format: "csv" } });
    expect(body.features.rows).toBe(426);
    expect(body.features.columns).toHaveLength(30);
  });

  it("lists window profiles, filtered by size and start", async () => {
    const all = await app.inject("/api/v1/models/bc/versions/1/monitor/windows");
    expect(all.statusCode).toBe(200);
    expect(all.json<{ windows: unknown[] }>().windows).toHaveLength(3);
    const hourly = await app.inject("/api/v1/models/bc/versions/1/monitor/windows?size=1h&since=2026-12-01T11:00:00Z");
    const windows = hourly.json<{ windows: { size: string; start: string }[] }>().windows;
    expect(windows.map((w) => [w.size, w.start])).toEqual([["1h", "2026-12-01T11:00:00.000Z"]]);
  });

  it("shows the version's service figures next to its data: requests, errors, latency, worker time", async () => {
    const before = (await app.inject("/api/v1/models/bc/versions/1/monitor/service")).json<{ requests: { total: number }; worker: unknown }>();
    expect(before.requests.total).toBe(0);
    expect(before.worker).toBeNull();
    const lines = fs.readFileSync(path.join(FIXTURES, "breast_cancer_mlp", "prod.csv"), "utf8").trim().split("\n");
    const columns = (lines[0] as string).split(",").slice(0, 30);
    const data = lines.slice(1, 21).map((l) => l.split(",").slice(0, 30).map(Number));
    for (let i = 0; i < 20; i++) {
      const res = await app.inject({ method: "POST", url: "/v1/models/bc@1/invocations", payload: { dataframe_split: { columns, data: [data[i]] } } });
      expect(res.statusCode).toBe(200);
    }
    const bad = await app.inject({ method: "POST", url: "/v1/models/bc@1/invocations", payload: { dataframe_split: { columns: ["x"], data: [[1]] } } });
    expect(bad.statusCode).toBe(400);
    const res = await app.inject("/api/v1/models/bc/versions/1/monitor/service");
    expect(res.statusCode).toBe(200);
    const body = res.json<{
      requests: { total: number; byStatus: Record<string, number>; errors: Record<string, number>; errorRate: number; rows: number };
      latencySeconds: { count: number; p50: number; p99: number };
      worker: { state: string; runs: number; busySeconds: number; queued: number };
      process: { rssBytes: number };
    }>();
    expect(body.requests).toMatchObject({ total: 21, byStatus: { "200": 20, "400": 1 }, rows: 20 });
    expect(body.requests.errorRate).toBeCloseTo(1 / 21, 12);
    expect(Object.keys(body.requests.errors)).toEqual(["MLSHIP_ERR_INPUT_MISSING"]);
    expect(body.latencySeconds.count).toBe(21);
    expect(body.latencySeconds.p50).toBeGreaterThan(0);
    expect(body.latencySeconds.p99).toBeGreaterThanOrEqual(body.latencySeconds.p50);
    expect(body.worker).toMatchObject({ state: "ready", queued: 0 });
    expect(body.worker.runs).toBeGreaterThan(0);
    expect(body.worker.busySeconds).toBeGreaterThan(0);
    expect(body.process.rssBytes).toBeGreaterThan(0);
  });

  it("answers 404 naming what is missing, and 400 for a bad version or time", async () => {
    const none = await app.inject("/api/v1/models/bc/versions/2/monitor/reference");
    expect(none.statusCode).toBe(404);
    expect(none.json()).toMatchObject({ code: "MLSHIP_ERR_MONITOR_NO_REFERENCE", field: "version" });
    expect(none.json<{ error: string }>().error).toContain("mlship monitor profile bc@2");
    const unknownVersion = await app.inject("/api/v1/models/bc/versions/9/monitor/reference");
    expect(unknownVersion.statusCode).toBe(404);
    expect(unknownVersion.json<{ code: string }>().code).toBe("MLSHIP_ERR_MODEL_VERSION_NOT_FOUND");
    const unknownModel = await app.inject("/api/v1/models/nope/versions/1/monitor/windows");
    expect(unknownModel.statusCode).toBe(404);
    expect(unknownModel.json<{ code: string }>().code).toBe("MLSHIP_ERR_MODEL_NOT_FOUND");
    const badVersion = await app.inject("/api/v1/models/bc/versions/0/monitor/reference");
    expect(badVersion.statusCode).toBe(400);
    expect(badVersion.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "version" });
    const badSince = await app.inject("/api/v1/models/bc/versions/1/monitor/windows?since=yesterday");
    expect(badSince.statusCode).toBe(400);
    expect(badSince.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "since" });
  });
});
