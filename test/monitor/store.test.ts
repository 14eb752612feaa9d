import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MonitorStore, type WindowProfile } from "../../src/monitor/store.js";
import { profileTable } from "../../src/monitor/profile/index.js";
import { readDatasetFile } from "../../src/monitor/readers.js";
import type { DatasetProfile, ReferenceProfile } from "../../src/monitor/types.js";
import type { SqlStore } from "../../src/store/index.js";
import { freshPostgres, freshSqlite, postgresAdmin } from "../helpers/sql-stores.js";

const TRAIN = path.resolve("../shared/fixtures/breast_cancer_mlp/train.csv");
const PROD = path.resolve("../shared/fixtures/breast_cancer_mlp/prod.csv");

interface Backend {
  open(): Promise<SqlStore>;
  dispose(): Promise<void>;
}

async function referenceOf(version: number): Promise<ReferenceProfile> {
  const { table, source } = await readDatasetFile(TRAIN);
  const labels = profileTable(table, { kinds: { label: "categorical" } }).columns.filter((c) => c.name === "label");
  return {
    model: "breast-cancer",
    version,
    createdAt: "2026-11-30T10:00:00.000Z",
    source,
    features: profileTable(table, { excludeColumns: ["label"] }),
    predictions: { format: 1, rows: table.rows, columns: labels },
  };
}

async function windowOf(start: string, size: string, rows: [number, number]): Promise<WindowProfile> {
  const { table } = await readDatasetFile(PROD, { excludeColumns: ["label"] });
  const part = { columns: table.columns, values: table.values.map((c) => c.slice(...rows)), rows: rows[1] - rows[0] };
  const features: DatasetProfile = profileTable(part);
  const hours = size === "1h" ? 1 : 24;
  return {
    model: "breast-cancer",
    version: 1,
    size,
    start,
    end: new Date(Date.parse(start) + hours * 3_600_000).toISOString(),
    createdAt: "2026-12-01T00:00:00.000Z",
    features,
    predictions: undefined,
  };
}

function suite(name: string, backend: () => Promise<Backend>): void {
  describe(`MonitorStore on ${name}`, () => {
    let current: Backend;
    let store: SqlStore;
    let monitor: MonitorStore;

    beforeAll(async () => {
      current = await backend();
      store = await current.open();
      monitor = new MonitorStore(store);
    });
    afterAll(async () => {
      await current.dispose();
    });

    it("stores a reference profile and reads it back as it was", async () => {
      expect(await monitor.getReference("breast-cancer", 1)).toBeUndefined();
      const reference = await referenceOf(1);
      await monitor.saveReference(reference);
      const read = await monitor.getReference("breast-cancer", 1);
      expect(read).toEqual(reference);
      expect(await monitor.getReference("breast-cancer", 2)).toBeUndefined();
      expect(await monitor.getReference("other", 1)).toBeUndefined();
    });

    it("replaces a version's reference and keeps references without predictions", async () => {
      const replacement: ReferenceProfile = { ...(await referenceOf(1)), createdAt: "2026-11-30T12:00:00.000Z", predictions: undefined };
      await monitor.saveReference(replacement);
      expect(await monitor.getReference("breast-cancer", 1)).toEqual(replacement);
      const count = await store.db
        .withTables<{ monitor_profiles: { model: string; kind: string } }>()
        .selectFrom("monitor_profiles")
        .select((eb) => eb.fn.countAll<number>().as("n"))
        .where("kind", "=", "reference")
        .executeTakeFirstOrThrow();
      expect(Number(count.n)).toBe(1);
    });

    it("stores windows, replaces a recomputed one and lists them by start, size and since", async () => {
      const hourA = await windowOf("2026-12-01T00:00:00Z", "1h", [0, 40]);
      const hourB = await windowOf("2026-12-01T01:00:00.000Z", "1h", [40, 80]);
      const day = await windowOf("2026-12-01T00:00:00.000Z", "1d", [0, 80]);
      await monitor.saveWindow(hourB);
      await monitor.saveWindow(day);
      await monitor.saveWindow(hourA);
      const all = await monitor.listWindows("breast-cancer", 1);
      expect(all.map((w) => [w.size, w.start])).toEqual([
        ["1d", "2026-12-01T00:00:00.000Z"],
        ["1h", "2026-12-01T00:00:00.000Z"],
        ["1h", "2026-12-01T01:00:00.000Z"],
      ]);
      expect(all[1]).toEqual({ ...hourA, start: "2026-12-01T00:00:00.000Z" });

      const hourly = await monitor.listWindows("breast-cancer", 1, { size: "1h" });
      expect(hourly.map((w) => w.start)).toEqual(["2026-12-01T00:00:00.000Z", "2026-12-01T01:00:00.000Z"]);
      const recent = await monitor.listWindows("breast-cancer", 1, { since: new Date("2026-12-01T00:30:00Z") });
      expect(recent.map((w) => w.start)).toEqual(["2026-12-01T01:00:00.000Z"]);

      const recomputed = await windowOf("2026-12-01T01:00:00.000Z", "1h", [40, 60]);
      await monitor.saveWindow(recomputed);
      const after = await monitor.listWindows("breast-cancer", 1, { size: "1h" });
      expect(after).toHaveLength(2);
      expect(after[1]?.features.rows).toBe(20);
      expect(await monitor.listWindows("breast-cancer", 2)).toEqual([]);
    });

    it("keeps the profiles after the store is reopened", async () => {
      const reopened = await current.open();
      try {
        const again = new MonitorStore(reopened);
        expect((await again.getReference("breast-cancer", 1))?.createdAt).toBe("2026-11-30T12:00:00.000Z");
        expect(await again.listWindows("breast-cancer", 1)).toHaveLength(3);
      } finally {
        await reopened.close();
      }
    });
  });
}

suite("SQLite", () => freshSqlite("mlship-monitor"));

suite("PostgreSQL", async () => {
  const admin = await postgresAdmin();
  const database = await freshPostgres(admin, "mlship-monitor-pg");
  return {
    open: () => database.open(),
    async dispose() {
      await database.dispose();
      await admin.end();
    },
  };
});
