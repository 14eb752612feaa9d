// The drift summary route (`GET .../monitor/summary`) on the real server over real data: the breast-cancer example
// registered, its reference profiled from the training CSV (with its own predictions), and hourly windows made and
// stored by `checkDataset --time-column` (what `mlship monitor check` runs) from the fixture's prod rows (hours 0-5),
// its drifted rows (hours 6-11) and a short hour of 10 drifted rows (too few to test), on SQLite and PostgreSQL.
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { silentLogger } from "../../src/core/index.js";
import { checkDataset, checkRules, MonitorStore, monitorRoutes, profileReference, profileTable, readDatasetFile } from "../../src/monitor/index.js";
import type { CategoricalProfile, NumericProfile, ReferenceProfile, StoredWindow } from "../../src/monitor/index.js";
import { defaultMonitorConfig } from "../../src/package/index.js";
import { buildServer } from "../../src/serve/index.js";
import type { FeatureDriftSummary, MonitorSummary } from "../../src/ui/contract.js";
import { POSTGRES_SERVER, postgresAdmin } from "../helpers/sql-stores.js";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const FIXTURE = fileURLToPath(new URL("../../../shared/fixtures/breast_cancer_mlp/", import.meta.url));
const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 10, 30);
/** The shifts planted in drifted.csv (fixtures README). */
const PLANTED = ["mean radius", "mean texture", "worst smoothness"];

/** The fixture's rows with a `ts` column: every prod row in each of hours 0-5, every drifted row in hours 6-11, 10 drifted rows in hour 12. */
function timedCsv(file: string): void {
  const read = (name: string): { header: string; rows: string[] } => {
    const lines = fs.readFileSync(path.join(FIXTURE, name), "utf8").trim().split("\n");
    return { header: lines[0] as string, rows: lines.slice(1) };
  };
  const prod = read("prod.csv");
  const drifted = read("drifted.csv");
  const out = [`${prod.header},ts`];
  const hour = (h: number, rows: readonly string[]): void => {
    rows.forEach((row, i) => out.push(`${row},${new Date(T0 + h * HOUR + i * 20_000).toISOString()}`));
  };
  for (let h = 0; h < 6; h++) hour(h, prod.rows);
  for (let h = 6; h < 12; h++) hour(h, drifted.rows);
  hour(12, drifted.rows.slice(0, 10));
  fs.writeFileSync(file, `${out.join("\n")}\n`);
}

async function storeOf(kind: "sqlite" | "postgres"): Promise<{ store?: string; drop: () => Promise<void> }> {
  if (kind === "sqlite") return { drop: async () => undefined };
  const name = `mlship_test_${randomBytes(6).toString("hex")}`;
  const admin = await postgresAdmin();
  await admin.query(`create database ${name}`);
  return {
    store: `${POSTGRES_SERVER}/${name}`,
    drop: async () => {
      await admin.query(`drop database if exists ${name} with (force)`);
      await admin.end();
    },
  };
}

const sum = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0);

describe.each(["sqlite", "postgres"] as const)("GET .../monitor/summary (%s)", (kind) => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-monitor-summary-"));
  let database: Awaited<ReturnType<typeof storeOf>> | undefined;
  let app: Mlship;
  let store: MonitorStore;
  let reference: ReferenceProfile;
  let server: ReturnType<typeof buildServer>;
  /** The stored 1h windows, as `/monitor/windows` serves them. */
  let stored: StoredWindow[];

  const get = (url: string) => server.inject(url);
  const summaryOf = async (query = ""): Promise<MonitorSummary> => {
    const res = await get(`/api/v1/models/bc/versions/1/monitor/summary${query}`);
    expect(res.statusCode, res.body).toBe(200);
    return res.json<MonitorSummary>();
  };
  const feature = (summary: MonitorSummary, name: string): FeatureDriftSummary => summary.features.find((f) => f.feature === name) as FeatureDriftSummary;

  beforeAll(async () => {
    database = await storeOf(kind);
    app = await createMlship(defaultConfig({ home, "runtime.workers": 1, ...(database.store === undefined ? {} : { store: database.store }) }), { logger: silentLogger() });
    for (let v = 1; v <= 3; v++) await registerModel(app, path.join(REPO, "examples/models/breast-cancer"), { name: "bc" });
    store = new MonitorStore(app.store);
    const deps = { scoring: app.scoring, store };
    const resolved = await app.scoring.resolve("bc@1");
    reference = await profileReference(deps, resolved, path.join(FIXTURE, "train.csv"));
    const file = path.join(home, "timed.csv");
    timedCsv(file);
    await checkDataset(deps, resolved, file, { timeColumn: "ts", windows: ["1h", "6h"] });
    server = buildServer({ scoring: app.scoring, registry: app.registry, logger: false });
    await server.register(monitorRoutes, { store, registry: app.registry, scoring: app.scoring });
    await server.ready();
    stored = (await get("/api/v1/models/bc/versions/1/monitor/windows?size=1h")).json<{ windows: StoredWindow[] }>().windows;
  }, 180_000);

  afterAll(async () => {
    await server?.close();
    await app?.close();
    await database?.drop();
    fs.rmSync(home, { recursive: true, force: true });
  });

  it("shows the smallest stored size's windows, oldest first, with their dataset verdicts", async () => {
    expect(stored).toHaveLength(13);
    const summary = await summaryOf();
    expect(summary).toMatchObject({ model: "bc", version: 1, hasReference: true, size: "1h", sizes: ["1h", "6h"] });
    expect(summary.windows.map((w) => [w.start, w.rows, w.insufficient])).toEqual(
      Array.from({ length: 13 }, (_, h) => [new Date(T0 + h * HOUR).toISOString(), h < 12 ? 143 : 10, h === 12]),
    );
    expect(summary.windows.map((w) => w.end)).toEqual(stored.map((w) => w.end));
    expect(summary.windows.map((w) => w.share)).toEqual(stored.map((w) => w.drift?.share ?? null));
    // 3 of 30 features drifted is below the 0.5 share: no dataset drift anywhere; the short hour has no verdict.
    expect(summary.windows.map((w) => w.datasetDrifted)).toEqual([...Array<boolean>(12).fill(false), null]);
    expect(summary.windows[8]?.share).toBeCloseTo(3 / 30, 12);
    expect(summary.latestWindow).toEqual({ start: new Date(T0 + 12 * HOUR).toISOString(), end: new Date(T0 + 13 * HOUR).toISOString() });
  });

  it("flags the planted features in the drifted windows and no feature in the prod windows", async () => {
    const summary = await summaryOf();
    expect(summary.features.map((f) => f.feature)).toEqual(reference.features.columns.map((c) => c.name));
    for (const f of summary.features) {
      expect(f.series).toHaveLength(13);
      expect(f.series.slice(0, 6).map((p) => p.drifted)).toEqual(Array(6).fill(false));
      expect(f.series.slice(6, 12).map((p) => p.drifted)).toEqual(Array(6).fill(PLANTED.includes(f.feature)));
      expect(f.series[12]).toEqual({ start: new Date(T0 + 12 * HOUR).toISOString(), statistic: null, score: null, drifted: null });
      // 426 reference rows: the KS test, p < 0.05.
      expect([f.kind, f.method, f.threshold, f.operator]).toEqual(["numeric", "ks", 0.05, "<"]);
      // The newest verdict, as stored with hour 11.
      expect(f.latest).toEqual(stored[11]?.drift?.features.find((d) => d.feature === f.feature));
      f.series.slice(0, 12).forEach((p, h) => {
        const drift = stored[h]?.drift?.features.find((d) => d.feature === f.feature);
        expect([p.statistic, p.score]).toEqual([drift?.statistic, drift?.score]);
      });
    }
  });

  it("names the drift kind over the windows: an instant change for the planted shifts, none elsewhere", async () => {
    const summary = await summaryOf();
    for (const name of PLANTED) {
      const kindOf = feature(summary, name).driftKind;
      expect(kindOf?.kind, `${name}: ${kindOf?.evidence}`).toBe("instant");
      expect(kindOf?.evidence).toContain(new Date(T0 + 6 * HOUR).toISOString().slice(0, 13));
    }
    expect(feature(summary, "mean area").driftKind?.kind).toBe("none");
    expect(feature(summary, "worst radius").driftKind?.kind).toBe("none");
  });

  it("overlays the reference histogram with the newest window's on the reference's edges, as shares of the stored counts", async () => {
    const summary = await summaryOf();
    const newest = stored[12] as StoredWindow;
    for (const f of summary.features) {
      const ref = reference.features.columns.find((c) => c.name === f.feature) as NumericProfile;
      const cur = newest.features.columns.find((c) => c.name === f.feature) as NumericProfile;
      const h = f.histogram;
      expect(h?.kind).toBe("numeric");
      expect(h?.edges).toEqual(ref.histogram.edges);
      expect(cur.histogram.rule).toBe("fixed");
      expect(cur.histogram.edges).toEqual(ref.histogram.edges);
      expect(sum(h?.reference ?? [])).toBeCloseTo(1, 12);
      expect(sum(h?.current ?? [])).toBeCloseTo(1, 12);
      h?.reference.forEach((share, i) => expect(share * ref.count).toBeCloseTo(ref.histogram.counts[i] as number, 9));
      // Values outside the reference's range are folded into the first and last bins, and reported.
      const folded = [...cur.histogram.counts];
      folded[0] = (folded[0] as number) + cur.histogram.below;
      folded[folded.length - 1] = (folded[folded.length - 1] as number) + cur.histogram.above;
      expect(cur.count).toBe(10);
      h?.current.forEach((share, i) => expect(share * 10).toBeCloseTo(folded[i] as number, 9));
      expect((h?.currentBelow ?? 0) * 10).toBeCloseTo(cur.histogram.below, 9);
      expect((h?.currentAbove ?? 0) * 10).toBeCloseTo(cur.histogram.above, 9);
      expect(h?.currentFromSample).toBeUndefined();
    }
    // mean radius moved up by 1.5 std: its mean share-weighted bin sits higher than the reference's.
    const radius = feature(summary, "mean radius").histogram;
    const centre = (shares: readonly number[]): number => sum(shares.map((s, i) => s * (i + 0.5)));
    expect(centre(radius?.current ?? [])).toBeGreaterThan(centre(radius?.reference ?? []));
  });

  it("summarises prediction drift per output column, categorical outputs on the reference's categories", async () => {
    const summary = await summaryOf();
    const outputs = reference.predictions?.columns.map((c) => c.name) ?? [];
    expect(outputs).toEqual(expect.arrayContaining(["probabilities[0]", "probabilities[1]", "label", "class"]));
    expect(summary.predictions.map((p) => p.feature)).toEqual(outputs);
    for (const p of summary.predictions) {
      expect(p.series.slice(0, 12).every((point) => typeof point.drifted === "boolean")).toBe(true);
      expect(p.latest).toEqual(stored[11]?.predictionDrift?.features.find((d) => d.feature === p.feature));
      expect(p.driftKind).not.toBeNull();
    }
    const cls = summary.predictions.find((p) => p.feature === "class") as FeatureDriftSummary;
    const ref = reference.predictions?.columns.find((c) => c.name === "class") as CategoricalProfile;
    const cur = stored[12]?.predictions?.columns.find((c) => c.name === "class") as CategoricalProfile;
    expect(cls.kind).toBe("categorical");
    const categories = Object.entries(ref.frequencies).sort((a, b) => b[1] - a[1]).map(([c]) => c);
    expect(cls.histogram?.categories).toEqual([...categories, "other"]);
    expect(cls.histogram?.reference).toEqual([...categories.map((c) => (ref.frequencies[c] as number) / ref.count), 0]);
    expect(cls.histogram?.current).toEqual([...categories.map((c) => (cur.frequencies[c] ?? 0) / cur.count), 0]);
    expect(sum(cls.histogram?.current ?? [])).toBeCloseTo(1, 12);
  });

  it("checks the data-quality rules of the newest window with data, passed ones too", async () => {
    const summary = await summaryOf();
    const newest = stored[12] as StoredWindow;
    const expected = checkRules({ current: newest.features, reference: reference.features, config: defaultMonitorConfig(), expectedColumns: newest.features.columns.map((c) => c.name) });
    expect(summary.rules).toEqual(expected);
    expect(summary.rules.filter((r) => r.rule === "column_missing")).toHaveLength(30);
    expect(summary.rules.some((r) => r.passed)).toBe(true);
    expect(new Set(summary.rules.map((r) => r.rule))).toEqual(new Set(["column_missing", "type", "null_rate", "range", "non_negative"]));
  });

  it("takes another stored size and the newest `limit` windows, oldest first", async () => {
    const sixHours = await summaryOf("?size=6h");
    expect(sixHours.size).toBe("6h");
    expect(sixHours.windows.map((w) => [w.start, w.rows])).toEqual([
      [new Date(T0).toISOString(), 6 * 143],
      [new Date(T0 + 6 * HOUR).toISOString(), 6 * 143],
      [new Date(T0 + 12 * HOUR).toISOString(), 10],
    ]);
    // Too few windows for a shape.
    expect(feature(sixHours, "mean radius").driftKind?.kind).toBe("none");
    expect(feature(sixHours, "mean radius").series.map((p) => p.drifted)).toEqual([false, true, null]);

    const lastTwo = await summaryOf("?limit=2");
    expect(lastTwo.windows.map((w) => w.start)).toEqual([11, 12].map((h) => new Date(T0 + h * HOUR).toISOString()));
    expect(feature(lastTwo, "mean radius").series.map((p) => p.drifted)).toEqual([true, null]);
    expect(feature(lastTwo, "mean radius").latest).toEqual(feature(await summaryOf(), "mean radius").latest);
    expect((await summaryOf("?limit=1000")).windows).toHaveLength(13);

    // A valid size with nothing stored: no windows, no histogram, no rules.
    const daily = await summaryOf("?size=1d");
    expect(daily).toMatchObject({ size: "1d", sizes: ["1h", "6h"], windows: [], rules: [], latestWindow: null });
    expect(feature(daily, "mean radius")).toMatchObject({ series: [], latest: null, histogram: null, method: "ks", threshold: 0.05, operator: "<" });
  });

  it("reads windows stored without verdicts or on other bin edges (a reference profiled again since)", async () => {
    // Version 3: the same reference, and one window profiled on its own (Doane) edges with no drift results stored.
    await store.saveReference({ ...reference, version: 3 });
    const { table } = await readDatasetFile(path.join(FIXTURE, "prod.csv"), { excludeColumns: ["label"] });
    const features = profileTable({ ...table, rows: 40, values: table.values.map((c) => c.slice(0, 40)) });
    const start = new Date(T0).toISOString();
    await store.saveWindow({ model: "bc", version: 3, size: "1h", start, end: new Date(T0 + HOUR).toISOString(), createdAt: start, features, predictions: undefined });
    const res = await get("/api/v1/models/bc/versions/3/monitor/summary");
    expect(res.statusCode).toBe(200);
    const summary = res.json<MonitorSummary>();
    expect(summary.windows).toEqual([{ start, end: new Date(T0 + HOUR).toISOString(), rows: 40, insufficient: true, datasetDrifted: null, share: null }]);
    expect(summary.predictions.every((p) => p.histogram?.current.length === 0)).toBe(true);
    const radius = feature(summary, "mean radius");
    expect(radius.series).toEqual([{ start, statistic: null, score: null, drifted: null }]);
    expect(radius.driftKind).toBeNull();
    const own = features.columns.find((c) => c.name === "mean radius") as NumericProfile;
    const ref = reference.features.columns.find((c) => c.name === "mean radius") as NumericProfile;
    expect(own.histogram.edges).not.toEqual(ref.histogram.edges);
    // Re-binned from the window's sample (all 40 values) on the reference's edges.
    expect(radius.histogram?.currentFromSample).toBe(true);
    expect(radius.histogram?.edges).toEqual(ref.histogram.edges);
    const onReferenceEdges = ref.histogram.edges.slice(1).map((_, i) => own.sample.filter((x) => x >= (ref.histogram.edges[i] as number) && (i === ref.histogram.edges.length - 2 ? x <= (ref.histogram.edges[i + 1] as number) : x < (ref.histogram.edges[i + 1] as number))).length);
    expect(sum(onReferenceEdges)).toBe(40);
    radius.histogram?.current.forEach((share, i) => expect(share * 40).toBeCloseTo(onReferenceEdges[i] as number, 9));
  });

  it("answers hasReference: false for a version without a reference, 404 for unknown ones, 400 naming bad fields", async () => {
    const none = await get("/api/v1/models/bc/versions/2/monitor/summary");
    expect(none.statusCode).toBe(200);
    expect(none.json()).toEqual({ model: "bc", version: 2, hasReference: false, size: null, sizes: [], windows: [], features: [], predictions: [], rules: [], latestWindow: null });

    const unknownModel = await get("/api/v1/models/nope/versions/1/monitor/summary");
    expect(unknownModel.statusCode).toBe(404);
    expect(unknownModel.json()).toMatchObject({ code: "MLSHIP_ERR_MODEL_NOT_FOUND" });
    const unknownVersion = await get("/api/v1/models/bc/versions/9/monitor/summary");
    expect(unknownVersion.statusCode).toBe(404);
    expect(unknownVersion.json()).toMatchObject({ code: "MLSHIP_ERR_MODEL_VERSION_NOT_FOUND" });

    for (const [query, field] of [
      ["?limit=0", "limit"],
      ["?limit=1001", "limit"],
      ["?limit=ten", "limit"],
      ["?limit=2.5", "limit"],
      ["?size=hourly", "size"],
      ["?size=0h", "size"],
    ] as const) {
      const res = await get(`/api/v1/models/bc/versions/1/monitor/summary${query}`);
      expect(res.statusCode, query).toBe(400);
      expect(res.json(), query).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field });
    }
    const badVersion = await get("/api/v1/models/bc/versions/zero/monitor/summary");
    expect(badVersion.statusCode).toBe(400);
    expect(badVersion.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "version" });
  });
});
