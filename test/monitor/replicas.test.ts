// Live monitoring with several replicas sharing one store (SQLite and PostgreSQL): two LiveMonitors with their own
// scoring services (as two `mlship serve` processes have) and replica ids each hear one half of the breast-cancer
// fixture's drifted rows. The stored window must be the window of all the rows, and its drift verdict the one a single
// monitor that heard every row computes. Also: migration 0011 keeps windows stored before it readable.
import path from "node:path";
import { pino } from "pino";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LiveMonitor } from "../../src/monitor/live.js";
import { predictionTable, profileTable } from "../../src/monitor/index.js";
import { readDatasetFile } from "../../src/monitor/readers.js";
import { mergeWindowParts, MonitorStore, type WindowProfile } from "../../src/monitor/store.js";
import type { ColumnProfile, DatasetProfile, NumericProfile, ReferenceProfile } from "../../src/monitor/types.js";
import type { StoredWindow } from "../../src/monitor/windows.js";
import { createOnnxRuntime, type OnnxRuntime } from "../../src/runtime/index.js";
import { createScoringService, type ScoringService } from "../../src/scoring/index.js";
import { MIGRATIONS, type SqlStore } from "../../src/store/index.js";
import { freshPostgresAlone, freshSqlite } from "../helpers/sql-stores.js";
import { createWorld, FIXTURES, readCsv, type World } from "../scoring/world.js";

const DIR = path.join(FIXTURES, "breast_cancer_mlp");
const PLANTED = ["mean radius", "mean texture", "worst smoothness"];
const HOUR = 3_600_000;
const T0 = Date.parse("2026-12-01T10:00:00Z");
const START = new Date(T0).toISOString();

/** A place for a metadata store: a SQLite home, or a PostgreSQL database created for the test. */
interface Place {
  open(migrations?: typeof MIGRATIONS): Promise<SqlStore>;
  dispose(): Promise<void>;
}

const sqlitePlace = (): Promise<Place> => freshSqlite("mlship-replicas");
const postgresPlace = (): Promise<Place> => freshPostgresAlone("mlship-replicas-pg");

const silent = pino({ level: "silent" });

function numeric(profile: DatasetProfile, name: string): NumericProfile {
  const column = profile.columns.find((c) => c.name === name) as ColumnProfile;
  expect(column.kind, name).toBe("numeric");
  return column as NumericProfile;
}

/** The merged profile against the profile of every row: exact counts, moments to rounding, same histograms. */
function expectSameProfile(actual: DatasetProfile, expected: DatasetProfile): void {
  expect(actual.rows).toBe(expected.rows);
  expect(actual.columns.map((c) => c.name)).toEqual(expected.columns.map((c) => c.name));
  for (const want of expected.columns) {
    if (want.kind !== "numeric") continue;
    const got = numeric(actual, want.name);
    expect(got.count, want.name).toBe(want.count);
    expect(got.nulls, want.name).toBe(want.nulls);
    expect(got.min, want.name).toBe(want.min);
    expect(got.max, want.name).toBe(want.max);
    expect(got.mean as number, want.name).toBeCloseTo(want.mean as number, 9);
    expect(got.std as number, want.name).toBeCloseTo(want.std as number, 9);
    expect(got.histogram.edges, want.name).toEqual(want.histogram.edges);
    expect(got.histogram.counts, want.name).toEqual(want.histogram.counts);
    // Below the sample size both samples hold every value.
    expect([...got.sample].sort((a, b) => a - b), want.name).toEqual([...want.sample].sort((a, b) => a - b));
  }
}

/** Same tests, same verdicts, same statistics (up to summation order). */
function expectSameVerdict(actual: StoredWindow | undefined, expected: StoredWindow): void {
  expect(actual?.insufficient).toBe(expected.insufficient);
  for (const key of ["drift", "predictionDrift"] as const) {
    const got = actual?.[key];
    const want = expected[key];
    expect(got?.drifted, key).toBe(want?.drifted);
    expect(got?.share as number, key).toBeCloseTo(want?.share as number, 12);
    expect(got?.features.map((f) => [f.feature, f.method, f.drifted]), key).toEqual(want?.features.map((f) => [f.feature, f.method, f.drifted]));
    for (const f of want?.features ?? []) {
      const g = got?.features.find((x) => x.feature === f.feature);
      expect(g?.statistic, `${key} ${f.feature}`).toBeCloseTo(f.statistic, 9);
      expect(g?.currentRows, `${key} ${f.feature}`).toBe(f.currentRows);
    }
  }
}

describe("live monitoring across replicas", () => {
  let world: World;
  let runtimeB: OnnxRuntime;
  let scoringB: ScoringService;
  let columns: string[];
  let drifted: number[][];
  let reference: ReferenceProfile;

  const score = async (scoring: ScoringService, rows: number[][], chunk = 10): Promise<void> => {
    for (let i = 0; i < rows.length; i += chunk) {
      const result = await scoring.score("bc", { kind: "mlflow", body: { dataframe_split: { columns, data: rows.slice(i, i + chunk) } } });
      expect(result.rows).toBe(Math.min(chunk, rows.length - i));
    }
  };

  beforeAll(async () => {
    world = await createWorld({ workers: 1 });
    await world.register("bc", "breast_cancer_mlp", { columns: true });
    // The second replica's own scoring service and runtime over the same registry.
    runtimeB = createOnnxRuntime({ workers: 1 });
    scoringB = createScoringService({ registry: world.registry, runtimes: { onnx: runtimeB } });
    const { table, source } = await readDatasetFile(path.join(DIR, "train.csv"), { excludeColumns: ["label"] });
    reference = {
      model: "bc",
      version: 1,
      createdAt: new Date(T0 - 24 * HOUR).toISOString(),
      source,
      features: profileTable(table),
      predictions: profileTable(await predictionTable(world.scoring, "bc@1", table)),
    };
    const { header, rows } = await readCsv("breast_cancer_mlp", "drifted.csv");
    columns = header.slice(0, -1);
    drifted = rows.map((r) => r.slice(0, -1).map(Number));
  }, 120_000);

  afterAll(async () => {
    await scoringB?.close();
    await runtimeB?.close();
    await world?.close();
  });

  /** One monitor hearing every row, in a store of its own: what the replicas' merged window must equal. */
  async function soloWindow(place: Place): Promise<StoredWindow> {
    const store = new MonitorStore(await place.open());
    await store.saveReference(reference);
    let clock = T0 + 5 * 60_000;
    const solo = new LiveMonitor({ scoring: world.scoring, store, logger: silent, sizes: ["1h"], now: () => new Date(clock), timer: false, replicaId: "solo" });
    solo.start();
    try {
      await score(world.scoring, drifted);
      clock = T0 + HOUR + 60_000;
      const flushed = await solo.flush();
      expect(flushed.errors).toBe(0);
      expect(flushed.windows).toHaveLength(1);
      return flushed.windows[0]?.window as StoredWindow;
    } finally {
      await solo.close();
    }
  }

  function suite(name: string, place: () => Promise<Place>): void {
    it(`merges the replicas' parts of a window and judges the whole traffic (${name})`, async () => {
      const shared = await place();
      const alone = await place();
      try {
        const expected = await soloWindow(alone);
        expect(expected.rows).toBe(drifted.length);
        expect((expected.drift?.features ?? []).filter((f) => f.drifted).map((f) => f.feature).sort()).toEqual([...PLANTED].sort());

        const store = new MonitorStore(await shared.open());
        await store.saveReference(reference);
        let clock = T0 + 5 * 60_000;
        const now = (): Date => new Date(clock);
        const a = new LiveMonitor({ scoring: world.scoring, store, logger: silent, sizes: ["1h"], now, timer: false, replicaId: "pod-a" });
        const b = new LiveMonitor({ scoring: scoringB, store: new MonitorStore(await shared.open()), logger: silent, sizes: ["1h"], now, timer: false, replicaId: "pod-b" });
        a.start();
        b.start();
        const half = Math.floor(drifted.length / 2);
        try {
          await score(world.scoring, drifted.slice(0, half));
          await score(scoringB, drifted.slice(half));
          clock = T0 + HOUR + 60_000;

          // pod-a closes the window first: it only knows its own part.
          const first = await a.flush(new Date(T0 + HOUR + 2 * 60_000));
          expect(first.errors).toBe(0);
          expect(first.windows.map((w) => w.window.rows)).toEqual([half]);
          expect((await store.listWindowVerdicts("bc", 1)).map((w) => w.rows)).toEqual([half]);

          // pod-b closes it next (its clock a minute behind): its verdict is on both parts, so it stands for the window.
          const second = await b.flush(new Date(T0 + HOUR + 60_000));
          expect(second.errors).toBe(0);
          const merged = second.windows[0]?.window;
          expect(merged?.rows).toBe(drifted.length);
          expectSameProfile(merged?.features as DatasetProfile, expected.features);
          expectSameVerdict(merged, expected);
          // Its alerts are the whole window's: the planted features.
          const alerted = (second.windows[0]?.alerts?.fired ?? []).filter((alert) => alert.kind === "drift").map((alert) => alert.feature).sort();
          expect(alerted).toEqual([...PLANTED].sort());

          // Every reader sees one window: the merged one.
          const listed = (await store.listWindows("bc", 1)) as StoredWindow[];
          expect(listed.map((w) => [w.size, w.start, w.end, w.rows])).toEqual([["1h", START, new Date(T0 + HOUR).toISOString(), drifted.length]]);
          const window = listed[0] as StoredWindow;
          expectSameProfile(window.features, expected.features);
          expectSameProfile(window.predictions as DatasetProfile, expected.predictions as DatasetProfile);
          expectSameVerdict(window, expected);
          expect(window).not.toHaveProperty("verdictRows");
          expect(await store.getWindow("bc", 1, "1h", START)).toEqual(window);
          const verdicts = await store.listWindowVerdicts("bc", 1, { size: "1h", limit: 5 });
          expect(verdicts).toHaveLength(1);
          expect(verdicts[0]).toMatchObject({ size: "1h", start: START, rows: drifted.length, insufficient: false });
          expect(verdicts[0]?.drift).toEqual(window.drift);
          // Stored: one part per replica, each with its own rows.
          const parts = await store.listWindowParts("bc", 1, "1h", START);
          expect(parts.map((p) => [p.replica, p.window.rows, p.verdictRows])).toEqual([
            ["pod-a", half, undefined],
            ["pod-b", drifted.length - half, drifted.length],
          ]);
        } finally {
          await a.close();
          await b.close();
        }
      } finally {
        await shared.dispose();
        await alone.dispose();
      }
    }, 120_000);

    it(`keeps windows stored before migration 0011 readable, as replica '' (${name})`, async () => {
      const where = await place();
      try {
        const before = MIGRATIONS.filter((m) => m.name < "0011_monitor_replicas");
        const old = await where.open(before);
        const { table } = await readDatasetFile(path.join(DIR, "prod.csv"), { excludeColumns: ["label"] });
        const legacy: WindowProfile = {
          model: "bc",
          version: 1,
          size: "1h",
          start: START,
          end: new Date(T0 + HOUR).toISOString(),
          createdAt: new Date(T0 + HOUR).toISOString(),
          features: profileTable(table, { edges: Object.fromEntries(reference.features.columns.flatMap((c) => (c.kind === "numeric" ? [[c.name, c.histogram.edges]] : []))) }),
          predictions: undefined,
          rows: table.rows,
        };
        // As the store wrote windows before: no replica column.
        await sql`insert into monitor_profiles (model, version, kind, window_size, window_start, window_end, body, created_at)
          values ('bc', 1, 'window', '1h', ${legacy.start}, ${legacy.end}, ${JSON.stringify(legacy)}, ${legacy.createdAt})`.execute(old.db);
        await old.close();

        const store = new MonitorStore(await where.open());
        expect(await store.listWindows("bc", 1)).toEqual([legacy]);
        expect((await store.listWindowParts("bc", 1, "1h", START)).map((p) => p.replica)).toEqual([""]);
        // A replica's part of the same window is stored next to it and merged when read.
        const { table: more } = await readDatasetFile(path.join(DIR, "drifted.csv"), { excludeColumns: ["label"] });
        const part: WindowProfile = { ...legacy, features: profileTable(more, { edges: Object.fromEntries(legacy.features.columns.flatMap((c) => (c.kind === "numeric" ? [[c.name, c.histogram.edges]] : []))) }), rows: more.rows };
        await store.saveWindow(part, { replica: "pod-a" });
        const [merged] = await store.listWindows("bc", 1);
        expect(merged?.rows).toBe(table.rows + more.rows);
        expect(merged?.features.rows).toBe(table.rows + more.rows);
        expect(numeric(merged?.features as DatasetProfile, "mean radius").count).toBe(table.rows + more.rows);
        // Saving with no replica replaces the legacy row, as saving a window always did.
        await store.saveWindow({ ...legacy, rows: 5, features: { ...legacy.features, rows: 5 } });
        expect((await store.listWindowParts("bc", 1, "1h", START)).map((p) => [p.replica, p.window.rows])).toEqual([
          ["", 5],
          ["pod-a", more.rows],
        ]);
        // A limit counts windows, not parts.
        const next = new Date(T0 + HOUR).toISOString();
        await store.saveWindow({ ...part, start: next, end: new Date(T0 + 2 * HOUR).toISOString() }, { replica: "pod-b" });
        expect((await store.listWindowVerdicts("bc", 1, { limit: 1 })).map((w) => [w.start, w.rows])).toEqual([[next, more.rows]]);
        expect((await store.listWindowVerdicts("bc", 1, { limit: 2 })).map((w) => [w.start, w.rows])).toEqual([
          [START, 5 + more.rows],
          [next, more.rows],
        ]);
        expect((await store.listWindows("bc", 1, { limit: 2, size: "1h" })).map((w) => [w.start, w.rows])).toEqual([
          [START, 5 + more.rows],
          [next, more.rows],
        ]);
      } finally {
        await where.dispose();
      }
    }, 60_000);
  }

  it("does not mix parts profiled on different bins: the part with the most rows stands for the window", async () => {
    const { table } = await readDatasetFile(path.join(DIR, "drifted.csv"), { excludeColumns: ["label"] });
    const slice = (from: number, to: number) => ({ columns: table.columns, values: table.values.map((c) => c.slice(from, to)), rows: to - from });
    const base = { model: "bc", version: 1, size: "1h", start: START, end: new Date(T0 + HOUR).toISOString(), createdAt: START, predictions: undefined };
    // Each part on bins of its own data (as after a reference was replaced while the replicas ran).
    const small: WindowProfile = { ...base, features: profileTable(slice(0, 40)), rows: 40 };
    const large: WindowProfile = { ...base, features: profileTable(slice(40, 143)), rows: 103 };
    expect(mergeWindowParts([{ replica: "pod-a", window: small }, { replica: "pod-b", window: large }])).toEqual(large);
    // Parts on the same bins merge, whatever order they come in.
    const edges = Object.fromEntries(reference.features.columns.flatMap((c) => (c.kind === "numeric" ? [[c.name, c.histogram.edges]] : [])));
    const a: WindowProfile = { ...base, features: profileTable(slice(0, 40), { edges }), rows: 40 };
    const b: WindowProfile = { ...base, features: profileTable(slice(40, 143), { edges }), rows: 103 };
    const merged = mergeWindowParts([{ replica: "pod-b", window: b }, { replica: "pod-a", window: a }]);
    expect(merged).toEqual(mergeWindowParts([{ replica: "pod-a", window: a }, { replica: "pod-b", window: b }]));
    expect(merged.rows).toBe(143);
    expectSameProfile(merged.features, profileTable(slice(0, 143), { edges }));
  });

  suite("SQLite", sqlitePlace);
  suite("PostgreSQL", postgresPlace);
});
