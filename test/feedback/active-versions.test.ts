// `activeVersions` reads the `prediction_versions` summary (migration 0010) and confirms each candidate with one
// indexed probe of `prediction_log`. Its answer must stay exactly what the full scan it replaced
// (`select distinct model, version, variant from prediction_log where at >= ? and at < ?`) gave: checked here
// against that scan on SQLite and PostgreSQL, over ranges in and out of the logged spans, at their boundaries,
// after pruning, and on predictions logged before the migration (its backfill).
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SqlPredictionStore, type PredictionLogTable, type PredictionVersionsTable } from "../../src/feedback/store.js";
import type { PredictionRecord, Variant } from "../../src/feedback/types.js";
import { MIGRATIONS, type SqlStore, type StoreMigration } from "../../src/store/index.js";
import { freshPostgresAlone, freshSqlite } from "../helpers/sql-stores.js";

const T0 = Date.parse("2026-12-01T10:00:00.000Z");
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

function iso(offsetMs: number): string {
  return new Date(T0 + offsetMs).toISOString();
}

let sequence = 0;

function record(model: string, version: number, variant: Variant | null, offsetMs: number): PredictionRecord {
  sequence += 1;
  return {
    requestId: `req-${sequence}`,
    row: 0,
    model,
    version,
    variant,
    rolloutId: variant === null ? null : "ro-1",
    key: null,
    at: iso(offsetMs),
    protocol: "rest",
    inputs: null,
    inputsHash: null,
    outputs: JSON.stringify({ label: "yes" }),
    prediction: "yes",
    scores: null,
    latencyMs: 1,
  };
}

type Active = { model: string; version: number; variants: (Variant | null)[] }[];

/** What the full scan `activeVersions` replaced answers, shaped (and ordered) as `activeVersions` answers. */
async function scanned(store: SqlStore, start: string, end: string): Promise<Active> {
  const result = await sql<{ model: string; version: number | string; variant: Variant | null }>`
    select distinct model, version, variant from prediction_log where at >= ${start} and at < ${end}`.execute(store.db);
  const byVersion = new Map<string, { model: string; version: number; variants: (Variant | null)[] }>();
  for (const row of result.rows) {
    const id = `${row.model}\u0000${String(row.version)}`;
    const entry = byVersion.get(id) ?? { model: row.model, version: Number(row.version), variants: [] };
    byVersion.set(id, entry);
    entry.variants.push(row.variant);
  }
  const rank = (v: Variant | null) => v ?? "";
  return [...byVersion.values()]
    .map((entry) => ({ ...entry, variants: entry.variants.sort((a, b) => rank(a).localeCompare(rank(b))) }))
    .sort((a, b) => (a.model === b.model ? a.version - b.version : a.model < b.model ? -1 : 1));
}

async function summary(store: SqlStore, model: string): Promise<PredictionVersionsTable[]> {
  const rows = await store.db
    .withTables<{ prediction_versions: PredictionVersionsTable }>()
    .selectFrom("prediction_versions")
    .selectAll()
    .where("model", "=", model)
    .orderBy("version")
    .orderBy("variant")
    .execute();
  return rows.map((row) => ({ ...row, version: Number(row.version) }));
}

interface Backend {
  /** Opens the backend's database (made on first use) with these migrations (default: all). */
  open(migrations?: readonly StoreMigration[]): Promise<SqlStore>;
  dispose(): Promise<void>;
}

const sqliteBackend = (): Promise<Backend> => freshSqlite("mlship-active");
const postgresBackend = (): Promise<Backend> => freshPostgresAlone("mlship-active-pg");

function suite(name: string, makeBackend: () => Promise<Backend>): void {
  describe(`activeVersions on ${name}`, () => {
    let backend: Backend;
    let store: SqlStore;
    let predictions: SqlPredictionStore;

    beforeAll(async () => {
      backend = await makeBackend();
      store = await backend.open();
      predictions = new SqlPredictionStore(store);
    });
    afterAll(async () => {
      await backend.dispose();
    });

    const mine = (prefix: string) => (active: Active) => active.filter((a) => a.model.startsWith(prefix));

    it("answers what the full scan answers, for ranges in and out of each span and at their boundaries", async () => {
      await predictions.insertPredictions([
        ...[0, 10, 20, 30, 40, 50, 60].map((m) => record("rng-a", 1, null, m * MINUTE)),
        record("rng-a", 1, "champion", 60 * MINUTE),
        record("rng-a", 1, "champion", 90 * MINUTE),
        record("rng-a", 2, "challenger", 60 * MINUTE),
        record("rng-a", 2, "challenger", 120 * MINUTE),
      ]);
      // Separate batches, one out of order: the summary widens either way.
      await predictions.insertPredictions([record("rng-a", 3, "shadow", 75 * MINUTE), record("rng-c", 5, null, 3 * HOUR)]);
      await predictions.insertPredictions([record("rng-b", 1, null, -2 * HOUR)]);
      const only = mine("rng-");

      expect(only(await predictions.activeVersions(iso(60 * MINUTE), iso(61 * MINUTE)))).toEqual([
        { model: "rng-a", version: 1, variants: [null, "champion"] },
        { model: "rng-a", version: 2, variants: ["challenger"] },
      ]);
      expect(only(await predictions.activeVersions(iso(75 * MINUTE), iso(75 * MINUTE + 1)))).toEqual([{ model: "rng-a", version: 3, variants: ["shadow"] }]);
      // End exclusive, start inclusive.
      expect(only(await predictions.activeVersions(iso(-HOUR), iso(3 * HOUR))).map((a) => `${a.model}@${a.version}`)).toEqual(["rng-a@1", "rng-a@2", "rng-a@3"]);
      expect(only(await predictions.activeVersions(iso(3 * HOUR), iso(4 * HOUR)))).toEqual([{ model: "rng-c", version: 5, variants: [null] }]);
      expect(only(await predictions.activeVersions(iso(2 * HOUR), iso(3 * HOUR)))).toEqual([{ model: "rng-a", version: 2, variants: ["challenger"] }]);
      // Spans that meet the range with no prediction inside it: the probe rules them out.
      expect(only(await predictions.activeVersions(iso(61 * MINUTE), iso(75 * MINUTE)))).toEqual([]);
      expect(only(await predictions.activeVersions(iso(-3 * HOUR), iso(-2 * HOUR)))).toEqual([]);
      expect(only(await predictions.activeVersions(iso(-2 * HOUR), iso(-2 * HOUR + 1)))).toEqual([{ model: "rng-b", version: 1, variants: [null] }]);

      const offsets = [-3 * HOUR, -2 * HOUR, -MINUTE, 0, 5 * MINUTE, 60 * MINUTE, 61 * MINUTE, 75 * MINUTE, 90 * MINUTE, 2 * HOUR, 2 * HOUR + 1, 3 * HOUR, 3 * HOUR + 1, 4 * HOUR];
      let compared = 0;
      for (const start of offsets) {
        for (const end of offsets) {
          if (end <= start) continue;
          expect(only(await predictions.activeVersions(iso(start), iso(end))), `[${iso(start)}, ${iso(end)})`).toEqual(only(await scanned(store, iso(start), iso(end))));
          compared += 1;
        }
      }
      expect(compared).toBe(91);
      await expect(predictions.activeVersions("not a date", iso(0))).rejects.toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "start" });
    });

    it("keeps one summary row per model, version and variant spanning its predictions, replays included", async () => {
      await predictions.insertPredictions([record("sum", 1, null, 10 * MINUTE), record("sum", 1, null, 5 * MINUTE), record("sum", 1, "champion", 7 * MINUTE)]);
      const replay = [record("sum", 1, null, 20 * MINUTE)];
      await predictions.insertPredictions(replay);
      expect(await predictions.insertPredictions(replay)).toBe(0);
      await predictions.insertPredictions([record("sum", 1, null, MINUTE), record("sum", 2, "challenger", 30 * MINUTE)]);
      expect(await summary(store, "sum")).toEqual([
        { model: "sum", version: 1, variant: "", first_at: iso(MINUTE), last_at: iso(20 * MINUTE) },
        { model: "sum", version: 1, variant: "champion", first_at: iso(7 * MINUTE), last_at: iso(7 * MINUTE) },
        { model: "sum", version: 2, variant: "challenger", first_at: iso(30 * MINUTE), last_at: iso(30 * MINUTE) },
      ]);
    });

    it("stays exact after pruning, and after predictions vanish behind the summary's back", async () => {
      await predictions.insertPredictions([
        record("prn", 1, null, -40 * DAY),
        record("prn", 1, null, -DAY),
        record("prn", 2, "champion", -40 * DAY),
        record("prn", 2, "champion", -35 * DAY),
        record("prn", 3, null, -DAY),
      ]);
      const cutoff = new Date(T0 - 30 * DAY);
      expect(await predictions.prune(cutoff)).toBeGreaterThanOrEqual(3);
      // Version 2 has nothing left; version 1's oldest is at or after the cutoff; version 3 is untouched.
      expect(await summary(store, "prn")).toEqual([
        { model: "prn", version: 1, variant: "", first_at: cutoff.toISOString(), last_at: iso(-DAY) },
        { model: "prn", version: 3, variant: "", first_at: iso(-DAY), last_at: iso(-DAY) },
      ]);
      for (const [start, end] of [
        [-41 * DAY, -39 * DAY],
        [-41 * DAY, -DAY],
        [-41 * DAY, 0],
        [-30 * DAY, 0],
        [-DAY, -DAY + 1],
      ] as const) {
        expect(mine("prn")(await predictions.activeVersions(iso(start), iso(end)))).toEqual(mine("prn")(await scanned(store, iso(start), iso(end))));
      }
      expect(mine("prn")(await predictions.activeVersions(iso(-41 * DAY), iso(-DAY)))).toEqual([]);
      expect(mine("prn")(await predictions.activeVersions(iso(-41 * DAY), iso(0)))).toEqual([
        { model: "prn", version: 1, variants: [null] },
        { model: "prn", version: 3, variants: [null] },
      ]);
      // A row deleted by hand leaves its summary row stale: the probe still answers from the log itself.
      await store.write(async (db) => {
        await sql`delete from prediction_log where model = 'prn' and version = 3`.execute(db);
      });
      expect(await summary(store, "prn")).toHaveLength(2);
      expect(mine("prn")(await predictions.activeVersions(iso(-41 * DAY), iso(0)))).toEqual([{ model: "prn", version: 1, variants: [null] }]);
    });

    it("backfills the summary from predictions logged before migration 0010", async () => {
      const older = await makeBackend();
      try {
        const before = MIGRATIONS.filter((m) => m.name < "0010_prediction_versions");
        expect(before.length).toBe(MIGRATIONS.findIndex((m) => m.name === "0010_prediction_versions"));
        const legacy = await older.open(before);
        const rows: Omit<PredictionLogTable, "id" | "actual" | "actual_at" | "outcome_id">[] = [
          ["bf", 1, null, -3 * HOUR],
          ["bf", 1, null, -HOUR],
          ["bf", 1, "champion", -2 * HOUR],
          ["bf", 2, "challenger", -90 * MINUTE],
          ["bf", 2, "challenger", 0],
          ["bf-other", 7, "shadow", -10 * HOUR],
        ].map(([model, version, variant, offset], i) => ({
          request_id: `bf-${i}`,
          row: 0,
          model: model as string,
          version: version as number,
          variant: variant as string | null,
          rollout_id: null,
          key: null,
          at: iso(offset as number),
          protocol: "rest",
          inputs: null,
          inputs_hash: null,
          outputs: "{}",
          prediction: '"yes"',
          scores: null,
          latency_ms: 1,
        }));
        await legacy.write(async (db) => {
          await db.withTables<{ prediction_log: PredictionLogTable }>().insertInto("prediction_log").values(rows).execute();
        });
        const tables = await legacy.db.introspection.getTables();
        expect(tables.map((t) => t.name)).not.toContain("prediction_versions");

        const upgraded = await older.open();
        expect(await summary(upgraded, "bf")).toEqual([
          { model: "bf", version: 1, variant: "", first_at: iso(-3 * HOUR), last_at: iso(-HOUR) },
          { model: "bf", version: 1, variant: "champion", first_at: iso(-2 * HOUR), last_at: iso(-2 * HOUR) },
          { model: "bf", version: 2, variant: "challenger", first_at: iso(-90 * MINUTE), last_at: iso(0) },
        ]);
        expect(await summary(upgraded, "bf-other")).toEqual([{ model: "bf-other", version: 7, variant: "shadow", first_at: iso(-10 * HOUR), last_at: iso(-10 * HOUR) }]);
        const upgradedPredictions = new SqlPredictionStore(upgraded);
        expect(await upgradedPredictions.activeVersions(iso(-2 * HOUR), iso(-HOUR + 1))).toEqual([
          { model: "bf", version: 1, variants: [null, "champion"] },
          { model: "bf", version: 2, variants: ["challenger"] },
        ]);
        for (const [start, end] of [
          [-11 * HOUR, HOUR],
          [-3 * HOUR, -HOUR],
          [-HOUR, 0],
          [0, HOUR],
          [-10 * HOUR, -10 * HOUR + 1],
        ] as const) {
          expect(await upgradedPredictions.activeVersions(iso(start), iso(end))).toEqual(await scanned(upgraded, iso(start), iso(end)));
        }
        // Writes after the upgrade keep widening the backfilled rows.
        await upgradedPredictions.insertPredictions([record("bf", 2, "challenger", HOUR)]);
        expect((await summary(upgraded, "bf")).at(-1)).toEqual({ model: "bf", version: 2, variant: "challenger", first_at: iso(-90 * MINUTE), last_at: iso(HOUR) });
      } finally {
        await older.dispose();
      }
    });
  });
}

suite("SQLite", sqliteBackend);
suite("PostgreSQL", postgresBackend);
