// Lookups of stored batch predictions: the store function on real SQLite and PostgreSQL stores (fresh vs stale by an
// injected clock, chunked `in` lists, other tables, bad and missing tables), and the REST routes on the real server
// (buildServer + batchRoutes, as `mlship serve` mounts them).
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { batchRoutes, MAX_LOOKUP_IDS } from "../../src/batch/http.js";
import { LOOKUP_CHUNK_IDS, lookupPredictions, type BatchPrediction, type BatchPredictionsTable } from "../../src/batch/lookup.js";
import { ScheduleStore } from "../../src/batch/schedule.js";
import { MlshipError } from "../../src/core/index.js";
import { buildServer } from "../../src/serve/index.js";
import { openSqlStore, type SqlStore } from "../../src/store/index.js";
import { freshPostgres, freshSqlite, postgresAdmin, type FreshDatabase } from "../helpers/sql-stores.js";
import { createWorld, type World } from "../scoring/world.js";

type Tables = { batch_predictions: BatchPredictionsTable; scores_daily: BatchPredictionsTable };

const NOW = new Date("2026-12-02T12:00:00.000Z");
const DAY_MS = 86_400_000;
/** Scored 2 hours before NOW: fresh with a 1-day max age. */
const FRESH_AT = "2026-12-02T10:00:00.000Z";
/** Scored 30 hours before NOW: stale with a 1-day max age. */
const STALE_AT = "2026-12-01T06:00:00.000Z";

function row(model: string, id: string, scoredAt: string, version = 1, outputs: Record<string, unknown> = { label: 1, probabilities: [0.1, 0.9] }): BatchPredictionsTable {
  return { model, id, version, run_id: `run-${version}`, scored_at: scoredAt, outputs: JSON.stringify(outputs) };
}

/** Inserts in slices so one statement stays within SQLite's bound parameter limit. */
async function insert(store: SqlStore, table: keyof Tables, rows: BatchPredictionsTable[]): Promise<void> {
  const db = store.db.withTables<Tables>();
  for (let i = 0; i < rows.length; i += 500) await db.insertInto(table).values(rows.slice(i, i + 500)).execute();
}

async function createOtherTable(store: SqlStore): Promise<void> {
  await store.db.schema
    .createTable("scores_daily")
    .addColumn("model", "text", (c) => c.notNull())
    .addColumn("id", "text", (c) => c.notNull())
    .addColumn("version", "integer", (c) => c.notNull())
    .addColumn("run_id", "text", (c) => c.notNull())
    .addColumn("scored_at", "text", (c) => c.notNull())
    .addColumn("outputs", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("scores_daily_pk", ["model", "id"])
    .execute();
}

async function rejection(promise: Promise<unknown>): Promise<MlshipError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(MlshipError);
    return error as MlshipError;
  }
  throw new Error("expected a rejection");
}

describe.each(["sqlite", "postgres"] as const)("lookupPredictions on %s", (dialect) => {
  let admin: pg.Client | undefined;
  let database: FreshDatabase;
  let store: SqlStore;

  beforeAll(async () => {
    if (dialect === "postgres") {
      admin = await postgresAdmin();
      database = await freshPostgres(admin, "mlship-batch-lookup");
    } else {
      database = await freshSqlite("mlship-batch-lookup");
    }
    store = await database.open();
    expect(store.dialect).toBe(dialect);
    const many = Array.from({ length: 1200 }, (_, i) => row("bulk", `id-${i}`, i % 2 === 0 ? FRESH_AT : STALE_AT, 2, { value: i }));
    await insert(store, "batch_predictions", [row("bc", "a1", FRESH_AT), row("bc", "a2", STALE_AT, 3, { label: 0 }), row("other", "a1", FRESH_AT, 7), ...many]);
    await createOtherTable(store);
    await insert(store, "scores_daily", [row("bc", "a1", STALE_AT, 5, { label: 0, probabilities: [0.8, 0.2] })]);
  }, 60_000);

  afterAll(async () => {
    await database?.dispose();
    await admin?.end();
  });

  it("answers each id with its version, run, time, outputs, and stale when older than the max age", async () => {
    const found = await lookupPredictions(store, { model: "bc", ids: ["a1", "a2", "zz"], maxAgeMs: DAY_MS, now: NOW });
    expect([...found.keys()].sort()).toEqual(["a1", "a2"]);
    expect(found.get("a1")).toEqual<BatchPrediction>({
      id: "a1",
      model: "bc",
      model_version: 1,
      run_id: "run-1",
      scored_at: FRESH_AT,
      stale: false,
      outputs: { label: 1, probabilities: [0.1, 0.9] },
    });
    expect(found.get("a2")).toMatchObject({ model_version: 3, stale: true, outputs: { label: 0 } });
    // Another model's prediction for the same id is not this model's.
    expect(found.get("a1")?.model_version).toBe(1);
  });

  it("counts age from the injected clock: the same row is fresh earlier and stale later", async () => {
    const earlier = await lookupPredictions(store, { model: "bc", ids: ["a2"], maxAgeMs: DAY_MS, now: new Date("2026-12-01T12:00:00.000Z") });
    expect(earlier.get("a2")?.stale).toBe(false);
    const atTheLimit = await lookupPredictions(store, { model: "bc", ids: ["a2"], maxAgeMs: DAY_MS, now: new Date(Date.parse(STALE_AT) + DAY_MS) });
    expect(atTheLimit.get("a2")?.stale).toBe(false);
    const justAfter = await lookupPredictions(store, { model: "bc", ids: ["a2"], maxAgeMs: DAY_MS, now: new Date(Date.parse(STALE_AT) + DAY_MS + 1) });
    expect(justAfter.get("a2")?.stale).toBe(true);
  });

  it("looks up more ids than one in (...) list holds, each once", async () => {
    const ids = Array.from({ length: 1300 }, (_, i) => `id-${i}`);
    expect(ids.length).toBeGreaterThan(2 * LOOKUP_CHUNK_IDS);
    const found = await lookupPredictions(store, { model: "bulk", ids: [...ids, "id-0", "id-1"], maxAgeMs: DAY_MS, now: NOW });
    expect(found.size).toBe(1200);
    for (let i = 0; i < 1200; i++) {
      const prediction = found.get(`id-${i}`);
      expect(prediction?.outputs).toEqual({ value: i });
      expect(prediction?.stale).toBe(i % 2 === 1);
    }
    expect(found.has("id-1200")).toBe(false);
  });

  it("reads another prediction table of the store, and names a bad or missing table", async () => {
    const other = await lookupPredictions(store, { model: "bc", ids: ["a1"], table: "scores_daily", maxAgeMs: DAY_MS, now: NOW });
    expect(other.get("a1")).toMatchObject({ model_version: 5, stale: true, outputs: { label: 0, probabilities: [0.8, 0.2] } });
    for (const bad of ["Scores", "1abc", "scores-daily", "x; drop table batch_runs", "a".repeat(64)]) {
      const error = await rejection(lookupPredictions(store, { model: "bc", ids: ["a1"], table: bad, maxAgeMs: DAY_MS }));
      expect(error).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "table" });
    }
    const missing = await rejection(lookupPredictions(store, { model: "bc", ids: ["a1"], table: "no_such_scores", maxAgeMs: DAY_MS }));
    expect(missing).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "table" });
    expect(missing.message).toContain('no batch table "no_such_scores"');
  });

  it("answers an empty id list with nothing", async () => {
    expect((await lookupPredictions(store, { model: "bc", ids: [], maxAgeMs: DAY_MS })).size).toBe(0);
  });
});

describe("batch prediction REST routes", () => {
  let world: World;
  let sql: SqlStore;
  let app: ReturnType<typeof buildServer>;

  beforeAll(async () => {
    world = await createWorld({ workers: 1 });
    await world.register("bc", "breast_cancer_mlp", { columns: true });
    await world.register("bc", "breast_cancer_mlp", { columns: true });
    await world.register("empty", "breast_cancer_mlp", { columns: true });
    sql = await openSqlStore({ home: world.home });
    await insert(sql, "batch_predictions", [
      row("bc", "a1", FRESH_AT, 2),
      row("bc", "a2", STALE_AT, 1, { label: 0, probabilities: [0.7, 0.3] }),
      row("bc", "42", FRESH_AT, 2, { label: 1 }),
      row("bc", "with space/slash", FRESH_AT, 2, { label: 1 }),
    ]);
    await createOtherTable(sql);
    await insert(sql, "scores_daily", [row("bc", "a1", FRESH_AT, 1, { label: 0 })]);
    app = buildServer({ scoring: world.scoring, registry: world.registry, logger: false });
    await app.register(batchRoutes, { store: sql, registry: world.registry, maxAgeMs: DAY_MS, now: () => NOW });
    await app.ready();
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    await sql?.close();
    await world?.close();
  });

  it("answers one id with its prediction, version header and freshness", async () => {
    const res = await app.inject("/v1/predictions/bc/a1");
    expect(res.statusCode).toBe(200);
    expect(res.headers["mlship-model-version"]).toBe("bc@2");
    expect(res.json()).toEqual({ id: "a1", model: "bc", model_version: 2, run_id: "run-2", scored_at: FRESH_AT, stale: false, outputs: { label: 1, probabilities: [0.1, 0.9] } });
    const stale = await app.inject("/v1/predictions/bc/a2");
    expect(stale.statusCode).toBe(200);
    expect(stale.json()).toMatchObject({ id: "a2", model_version: 1, stale: true, outputs: { label: 0, probabilities: [0.7, 0.3] } });
    const escaped = await app.inject(`/v1/predictions/bc/${encodeURIComponent("with space/slash")}`);
    expect(escaped.statusCode).toBe(200);
    expect(escaped.json()).toMatchObject({ id: "with space/slash" });
  });

  it("reads ?table= from another prediction table", async () => {
    const res = await app.inject("/v1/predictions/bc/a1?table=scores_daily");
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ id: "a1", model_version: 1, outputs: { label: 0 } });
  });

  it("answers 404 naming the id or the model, and 400 naming a bad or missing table", async () => {
    const noId = await app.inject("/v1/predictions/bc/nope");
    expect(noId.statusCode).toBe(404);
    expect(noId.json()).toMatchObject({ code: "MLSHIP_ERR_BATCH_PREDICTION_NOT_FOUND", field: "id" });
    expect(noId.json<{ error: string }>().error).toContain('no batch prediction for id "nope"');
    const otherModel = await app.inject("/v1/predictions/empty/a1");
    expect(otherModel.statusCode).toBe(404);
    expect(otherModel.json()).toMatchObject({ field: "id" });
    const noModel = await app.inject("/v1/predictions/ghost/a1");
    expect(noModel.statusCode).toBe(404);
    expect(noModel.json<{ code: string }>().code).toBe("MLSHIP_ERR_MODEL_NOT_FOUND");
    const badTable = await app.inject("/v1/predictions/bc/a1?table=Bad-Name");
    expect(badTable.statusCode).toBe(400);
    expect(badTable.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "table" });
    const missingTable = await app.inject("/v1/predictions/bc/a1?table=nowhere");
    expect(missingTable.statusCode).toBe(400);
    expect(missingTable.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "table" });
    expect(missingTable.json<{ error: string }>().error).toContain('no batch table "nowhere"');
  });

  it("marks stale by the max age of the enabled schedule that writes the model into the table, reading schedules from a cache", async () => {
    const schedules = new ScheduleStore(sql);
    const routes = async (scheduleCacheMs: number): Promise<ReturnType<typeof buildServer>> => {
      const server = buildServer({ scoring: world.scoring, registry: world.registry, logger: false });
      await server.register(batchRoutes, { store: sql, registry: world.registry, maxAgeMs: DAY_MS, now: () => NOW, scheduleCacheMs });
      await server.ready();
      return server;
    };
    const cached = await routes(60_000);
    const uncached = await routes(0);
    try {
      // a1 was scored 2 hours before NOW: fresh by the 1-day default.
      expect((await cached.inject("/v1/predictions/bc/a1")).json()).toMatchObject({ id: "a1", stale: false });
      // An hourly schedule writes bc into batch_predictions and wants its predictions under an hour old.
      await schedules.put({ name: "bc-hourly", ref: "bc@production", input: "/data/in.csv", idColumn: "id", cron: "0 * * * *", maxAgeMs: 3_600_000 });
      expect((await uncached.inject("/v1/predictions/bc/a1")).json()).toMatchObject({ id: "a1", stale: true });
      const bulk = await uncached.inject({ method: "POST", url: "/v1/predictions/bc/lookup", payload: { ids: ["a1", "42"] } });
      expect(bulk.json<{ predictions: BatchPrediction[] }>().predictions.map((p) => [p.id, p.stale])).toEqual([
        ["a1", true],
        ["42", true],
      ]);
      // The schedules list read before the schedule existed is reused within the cache period: no query per request.
      expect((await cached.inject("/v1/predictions/bc/a1")).json()).toMatchObject({ id: "a1", stale: false });
      // Another table of the same model is not what the schedule writes.
      expect((await uncached.inject("/v1/predictions/bc/a1?table=scores_daily")).json()).toMatchObject({ id: "a1", stale: false });
      // Disabled, it no longer applies.
      await schedules.setEnabled("bc-hourly", false);
      expect((await uncached.inject("/v1/predictions/bc/a1")).json()).toMatchObject({ id: "a1", stale: false });
    } finally {
      await schedules.remove("bc-hourly");
      await cached.close();
      await uncached.close();
    }
  });

  it("looks up many ids at once: the predictions found in request order and the missing ids", async () => {
    const res = await app.inject({ method: "POST", url: "/v1/predictions/bc/lookup", payload: { ids: ["a2", "x", "a1", 42, "a1", "y"] } });
    expect(res.statusCode).toBe(200);
    const body = res.json<{ predictions: BatchPrediction[]; missing: string[] }>();
    expect(body.predictions.map((p) => [p.id, p.model_version, p.stale])).toEqual([
      ["a2", 1, true],
      ["a1", 2, false],
      ["42", 2, false],
    ]);
    expect(body.missing).toEqual(["x", "y"]);
    const other = await app.inject({ method: "POST", url: "/v1/predictions/bc/lookup", payload: { ids: ["a1", "a2"], table: "scores_daily" } });
    expect(other.json()).toMatchObject({ predictions: [{ id: "a1", model_version: 1 }], missing: ["a2"] });
    const none = await app.inject({ method: "POST", url: "/v1/predictions/bc/lookup", payload: { ids: [] } });
    expect(none.json()).toEqual({ predictions: [], missing: [] });
  });

  it("takes at most 1000 ids, and answers 400 naming the bad part of the body", async () => {
    const ids = Array.from({ length: MAX_LOOKUP_IDS }, (_, i) => `m${i}`);
    const most = await app.inject({ method: "POST", url: "/v1/predictions/bc/lookup", payload: { ids: [...ids.slice(1), "a1"] } });
    expect(most.statusCode).toBe(200);
    const body = most.json<{ predictions: BatchPrediction[]; missing: string[] }>();
    expect(body.predictions.map((p) => p.id)).toEqual(["a1"]);
    expect(body.missing).toHaveLength(MAX_LOOKUP_IDS - 1);
    const tooMany = await app.inject({ method: "POST", url: "/v1/predictions/bc/lookup", payload: { ids: [...ids, "one-more"] } });
    expect(tooMany.statusCode).toBe(400);
    expect(tooMany.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "ids" });
    expect(tooMany.json<{ error: string }>().error).toContain("at most 1000");
    for (const payload of [{ id: "a1" }, { ids: "a1" }, { ids: ["a1", null] }, { ids: [""] }, { ids: [1.5] }]) {
      const res = await app.inject({ method: "POST", url: "/v1/predictions/bc/lookup", payload });
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "ids" });
    }
    const notObject = await app.inject({ method: "POST", url: "/v1/predictions/bc/lookup", payload: ["a1"] });
    expect(notObject.statusCode).toBe(400);
    expect(notObject.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "body" });
    const badTable = await app.inject({ method: "POST", url: "/v1/predictions/bc/lookup", payload: { ids: ["a1"], table: 3 } });
    expect(badTable.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "table" });
    const noModel = await app.inject({ method: "POST", url: "/v1/predictions/ghost/lookup", payload: { ids: ["a1"] } });
    expect(noModel.statusCode).toBe(404);
    expect(noModel.json<{ code: string }>().code).toBe("MLSHIP_ERR_MODEL_NOT_FOUND");
    const malformed = await app.inject({ method: "POST", url: "/v1/predictions/bc/lookup", headers: { "content-type": "application/json" }, payload: "{" });
    expect(malformed.statusCode).toBe(400);
    expect(malformed.json<{ code: string }>().code).toBe("MLSHIP_ERR_INPUT_JSON");
  });
});
