// Lookups from another PostgreSQL database (config batch.lookupUrl): a real batch run scores production rows of the
// breast-cancer MLP into a fresh PostgreSQL database while the metadata store is SQLite, and the lookup routes answer
// from that database. Staleness follows the metadata store's schedules; the lookup database is never migrated and
// its pool is closed with the server.
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { batchRoutes } from "../../src/batch/http.js";
import { lookupPredictions, openLookupDatabase, type BatchPrediction } from "../../src/batch/lookup.js";
import { scoreJob } from "../../src/batch/job.js";
import { ScheduleStore } from "../../src/batch/schedule.js";
import { defaultConfig, loadConfig } from "../../src/config/index.js";
import { buildServer } from "../../src/serve/index.js";
import { fixture, REPO } from "../cli/helpers.js";
import { POSTGRES_SERVER, postgresAdmin } from "../helpers/sql-stores.js";

const MODEL = "breast-cancer";
const EXAMPLE = path.join(REPO, "examples", "models", "breast-cancer");
const ROWS = 25;
const TABLE = "churn_scores";
const DAY_MS = 86_400_000;
const bc = fixture("breast_cancer_mlp");

let home: string;
let input: string;
let app: Mlship;
let admin: pg.Client;
let database: string;
let lookupUrl: string;

async function tablesOf(db: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: `${POSTGRES_SERVER}/${db}` });
  await client.connect();
  try {
    const result = await client.query<{ table_name: string }>("select table_name from information_schema.tables where table_schema = 'public' order by table_name");
    return result.rows.map((r) => r.table_name);
  } finally {
    await client.end();
  }
}

async function connectionsTo(db: string): Promise<number> {
  const result = await admin.query<{ n: string }>("select count(*) as n from pg_stat_activity where datname = $1", [db]);
  return Number(result.rows[0]?.n);
}

beforeAll(async () => {
  home = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-lookup-url-"));
  input = path.join(home, "prod-with-ids.csv");
  const lines = fs.readFileSync(path.join(bc.dir, "prod.csv"), "utf8").trim().split(/\r?\n/);
  fs.writeFileSync(input, `customer,${lines[0] as string}\n${lines.slice(1, ROWS + 1).map((row, i) => `c${i},${row}`).join("\n")}\n`);
  admin = await postgresAdmin();
  database = `mlship_test_${randomBytes(6).toString("hex")}`;
  await admin.query(`create database ${database}`);
  lookupUrl = `${POSTGRES_SERVER}/${database}`;
  // The metadata store is SQLite (the default under home); the predictions go to PostgreSQL.
  app = await createMlship(defaultConfig({ home, user: "tester", "runtime.workers": 1, "log.level": "warn" }));
  expect(app.store.dialect).toBe("sqlite");
  await registerModel(app, EXAMPLE, { name: MODEL, alias: "production" });
  const run = await scoreJob(app, { ref: `${MODEL}@production`, input, idColumn: "customer", into: lookupUrl, table: TABLE });
  expect(run).toMatchObject({ status: "succeeded", rowsOut: ROWS, targetTable: TABLE });
}, 120_000);

afterAll(async () => {
  await app?.close();
  if (database !== undefined) await admin?.query(`drop database if exists ${database} with (force)`);
  await admin?.end();
  if (home !== undefined) fs.rmSync(home, { recursive: true, force: true });
});

describe("batch lookups from batch.lookupUrl", () => {
  it("answers from the PostgreSQL database the run wrote into, not from the SQLite metadata store", async () => {
    const server = buildServer({ scoring: app.scoring, registry: app.registry, logger: false });
    await server.register(batchRoutes, { store: app.store, registry: app.registry, maxAgeMs: DAY_MS, lookupUrl });
    await server.ready();
    try {
      // What the run wrote, read directly.
      const client = new pg.Client({ connectionString: lookupUrl });
      await client.connect();
      const stored = await client.query<{ id: string; version: number; run_id: string; scored_at: string; outputs: string }>(`select id, version, run_id, scored_at, outputs from ${TABLE} where model = $1 and id = 'c7'`, [MODEL]);
      await client.end();
      const row = stored.rows[0];
      expect(row).toBeDefined();

      const one = await server.inject(`/v1/predictions/${MODEL}/c7?table=${TABLE}`);
      expect(one.statusCode).toBe(200);
      expect(one.headers["mlship-model-version"]).toBe(`${MODEL}@1`);
      expect(one.json()).toEqual({
        id: "c7",
        model: MODEL,
        model_version: 1,
        run_id: row?.run_id,
        scored_at: row?.scored_at,
        stale: false,
        outputs: JSON.parse(row?.outputs as string) as unknown,
      });
      expect(Object.keys(one.json<BatchPrediction>().outputs).length).toBeGreaterThan(0);

      const bulk = await server.inject({ method: "POST", url: `/v1/predictions/${MODEL}/lookup`, payload: { ids: ["c0", "nobody", `c${ROWS - 1}`], table: TABLE } });
      expect(bulk.statusCode).toBe(200);
      const body = bulk.json<{ predictions: BatchPrediction[]; missing: string[] }>();
      expect(body.predictions.map((p) => [p.id, p.model_version, p.stale])).toEqual([
        ["c0", 1, false],
        [`c${ROWS - 1}`, 1, false],
      ]);
      expect(body.missing).toEqual(["nobody"]);

      // The table is only in the lookup database: the metadata store does not have it.
      const fromStore = buildServer({ scoring: app.scoring, registry: app.registry, logger: false });
      await fromStore.register(batchRoutes, { store: app.store, registry: app.registry, maxAgeMs: DAY_MS });
      const missing = await fromStore.inject(`/v1/predictions/${MODEL}/c7?table=${TABLE}`);
      await fromStore.close();
      expect(missing.statusCode).toBe(400);
      expect(missing.json<{ error: string }>().error).toContain("metadata store");
      // And a table the lookup database lacks is named as missing there.
      const noTable = await server.inject(`/v1/predictions/${MODEL}/c7`);
      expect(noTable.statusCode).toBe(400);
      expect(noTable.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "table" });
      expect(noTable.json<{ error: string }>().error).toContain(`no batch table "batch_predictions" in the lookup database (${POSTGRES_SERVER}/${database})`);
    } finally {
      await server.close();
    }
    // mlship's migrations never ran there: only the run's table exists.
    expect(await tablesOf(database)).toEqual([TABLE]);
    // The pool closed with the server.
    expect(await connectionsTo(database)).toBe(0);
  }, 60_000);

  it("judges staleness by the metadata store's schedule that writes the model into that table", async () => {
    const schedules = new ScheduleStore(app.store);
    const lookup = openLookupDatabase(lookupUrl);
    const found = await lookupPredictions(lookup, { model: MODEL, ids: ["c1"], table: TABLE, maxAgeMs: DAY_MS }).finally(() => lookup.close());
    const scoredAt = Date.parse(found.get("c1")?.scored_at as string);
    // An hour after the run: fresh by the 1-day default, stale by a schedule that wants predictions under 30 min old.
    const anHourLater = new Date(scoredAt + 3_600_000);
    await schedules.put({ name: "churn-hourly", ref: `${MODEL}@production`, input, idColumn: "customer", into: lookupUrl, table: TABLE, cron: "0 * * * *", maxAgeMs: 30 * 60_000 });
    const server = buildServer({ scoring: app.scoring, registry: app.registry, logger: false });
    await server.register(batchRoutes, { store: app.store, registry: app.registry, maxAgeMs: DAY_MS, lookupUrl, now: () => anHourLater, scheduleCacheMs: 0 });
    try {
      const res = await server.inject(`/v1/predictions/${MODEL}/c1?table=${TABLE}`);
      expect(res.statusCode).toBe(200);
      expect(res.json()).toMatchObject({ id: "c1", stale: true });
      // Disabled, the schedule no longer sets the max age: the 1-day default applies again.
      await schedules.setEnabled("churn-hourly", false);
      expect((await server.inject(`/v1/predictions/${MODEL}/c1?table=${TABLE}`)).json()).toMatchObject({ id: "c1", stale: false });
    } finally {
      await server.close();
      await schedules.remove("churn-hourly");
    }
  }, 60_000);

  it("refuses a lookupUrl that is not postgres://, and answers 503 naming the key when the database is down", async () => {
    const bad = buildServer({ scoring: app.scoring, registry: app.registry, logger: false });
    // `mlship serve` registers without waiting, so this reaches it from listen() and the server does not start.
    await expect(bad.register(batchRoutes, { store: app.store, registry: app.registry, maxAgeMs: DAY_MS, lookupUrl: "mysql://somewhere/db" })).rejects.toMatchObject({
      code: "MLSHIP_ERR_CONFIG_INVALID",
      field: "batch.lookupUrl",
    });
    await bad.close().catch(() => undefined);

    // Nothing listens on port 1: the first lookup fails, the server started anyway.
    const down = buildServer({ scoring: app.scoring, registry: app.registry, logger: false });
    await down.register(batchRoutes, { store: app.store, registry: app.registry, maxAgeMs: DAY_MS, lookupUrl: "postgres://postgres:secret@127.0.0.1:1/nowhere" });
    await down.ready();
    try {
      const res = await down.inject(`/v1/predictions/${MODEL}/c1?table=${TABLE}`);
      expect(res.statusCode).toBe(503);
      // 5xx bodies are generic (the details go to the log); the error itself names the key and hides the password.
      expect(res.json()).toMatchObject({ code: "MLSHIP_ERR_STORE_UNAVAILABLE" });
      expect(res.headers["retry-after"]).toBe("1");
      const lookup = openLookupDatabase("postgres://postgres:secret@127.0.0.1:1/nowhere");
      const error = await lookupPredictions(lookup, { model: MODEL, ids: ["c1"], table: TABLE, maxAgeMs: DAY_MS }).then(
        () => undefined,
        (e: unknown) => e,
      );
      await lookup.close();
      expect(error).toMatchObject({ code: "MLSHIP_ERR_STORE_UNAVAILABLE", field: "batch.lookupUrl" });
      expect((error as Error).message).toContain("batch lookup database postgres://postgres:");
      expect((error as Error).message).not.toContain("secret");
    } finally {
      await down.close();
    }
  }, 60_000);

  it("reads batch.lookupUrl from MLSHIP_BATCH_LOOKUP_URL", () => {
    expect(loadConfig({ cwd: home, env: {} }).batch.lookupUrl).toBeNull();
    expect(loadConfig({ cwd: home, env: { MLSHIP_BATCH_LOOKUP_URL: lookupUrl } }).batch.lookupUrl).toBe(lookupUrl);
  });
});
