import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MlshipError } from "../../src/core/index.js";
import { classifyWindows, featureSeries } from "../../src/monitor/kinds.js";
import { profileTable, SeededRandom } from "../../src/monitor/profile/index.js";
import { readDatasetFile } from "../../src/monitor/readers.js";
import { MonitorStore } from "../../src/monitor/store.js";
import type { Cell, ColumnTable, ReferenceProfile } from "../../src/monitor/types.js";
import {
  assignWindows,
  DEFAULT_WINDOW_SIZES,
  fromWindowProfile,
  parseTimestamps,
  parseWindowSize,
  toWindowProfile,
  windowedDrift,
  type WindowSeries,
} from "../../src/monitor/windows.js";
import { openSqlStore, type SqlStore } from "../../src/store/index.js";

const FIXTURES = path.resolve("../shared/fixtures/breast_cancer_mlp");
const TRAIN = path.join(FIXTURES, "train.csv");
const PROD = path.join(FIXTURES, "prod.csv");
const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2026, 10, 1);

function invalid(run: () => unknown, message: RegExp, field?: string): void {
  let caught: unknown;
  try {
    run();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(MlshipError);
  const error = caught as MlshipError;
  expect(error.code).toBe("MLSHIP_ERR_INPUT_INVALID");
  expect(error.message).toMatch(message);
  if (field !== undefined) expect(error.field).toBe(field);
}

async function referenceProfile(): Promise<ReferenceProfile> {
  const { table, source } = await readDatasetFile(TRAIN, { excludeColumns: ["label"] });
  return { model: "breast-cancer", version: 3, createdAt: "2026-10-31T00:00:00.000Z", source, features: profileTable(table), predictions: undefined };
}

describe("parseWindowSize", () => {
  it("reads sizes with their unit", () => {
    expect(parseWindowSize("30m")).toBe(30 * MINUTE);
    expect(parseWindowSize("1h")).toBe(HOUR);
    expect(parseWindowSize("12h")).toBe(12 * HOUR);
    expect(parseWindowSize("1d")).toBe(DAY);
    expect(parseWindowSize("7d")).toBe(7 * DAY);
    expect(parseWindowSize("1w")).toBe(7 * DAY);
    expect(parseWindowSize("45s")).toBe(45_000);
    expect(DEFAULT_WINDOW_SIZES.map(parseWindowSize)).toEqual([HOUR, 12 * HOUR, DAY]);
  });

  it("rejects anything else with a clear error on the windows field", () => {
    for (const bad of ["", "1", "h", "0h", "-1h", "1.5h", "1y", "1 hour", "1H"]) invalid(() => parseWindowSize(bad), /not a positive whole number followed by a unit/, "windows");
  });
});

describe("assignWindows", () => {
  it("aligns tumbling windows to the epoch and keeps empty ones between the first and last row", () => {
    // Rows at 10:05, 10:59, 13:30 (twice) and 11:00 UTC: hour windows 10, 11, 12 (empty), 13.
    const times = [10 * HOUR + 5 * MINUTE, 10 * HOUR + 59 * MINUTE, 13 * HOUR + 30 * MINUTE, 13 * HOUR + 30 * MINUTE, 11 * HOUR].map((t) => T0 + t);
    const windows = assignWindows(times, HOUR, "tumbling");
    expect(windows.map((w) => [(w.start - T0) / HOUR, (w.end - T0) / HOUR, w.rows])).toEqual([
      [10, 11, [0, 1]],
      [11, 12, [4]],
      [12, 13, []],
      [13, 14, [2, 3]],
    ]);
    // A 1d window runs midnight to midnight UTC.
    expect(assignWindows(times, DAY).map((w) => [w.start, w.end])).toEqual([[T0, T0 + DAY]]);
    expect(assignWindows([], HOUR)).toEqual([]);
  });

  it("slides windows of the size every step (default size / 4), each row in size / step windows", () => {
    const times = Array.from({ length: 12 }, (_, i) => T0 + i * 10 * MINUTE); // 00:00 .. 01:50
    const windows = assignWindows(times, HOUR, "sliding");
    // Starts every 15 minutes from 00:00; the last ends at the step boundary after 01:50 (02:00).
    expect(windows.map((w) => (w.start - T0) / MINUTE)).toEqual([0, 15, 30, 45, 60]);
    for (const w of windows) {
      expect(w.end - w.start).toBe(HOUR);
      expect(w.rows).toEqual(times.flatMap((t, i) => (t >= w.start && t < w.end ? [i] : [])));
    }
    // 00:50 is in the windows starting 00:00, 00:15, 00:30, 00:45.
    expect(windows.filter((w) => w.rows.includes(5)).length).toBe(4);
    const explicit = assignWindows(times, HOUR, "sliding", 30 * MINUTE);
    expect(explicit.map((w) => (w.start - T0) / MINUTE)).toEqual([0, 30, 60]);
    invalid(() => assignWindows(times, HOUR, "sliding", 2 * HOUR), /must not exceed the window size/, "windows");
    invalid(() => assignWindows([T0, Number.NaN], HOUR), /row 1: timestamp NaN/, "timestamp");
  });

  it("covers the last row when the size is not a multiple of the step", () => {
    const times = [T0, T0 + 11 * MINUTE];
    const windows = assignWindows(times, 10 * MINUTE, "sliding", 4 * MINUTE);
    expect(windows.some((w) => w.rows.includes(1))).toBe(true);
    expect(windows.some((w) => w.rows.includes(0))).toBe(true);
  });
});

describe("parseTimestamps", () => {
  it("reads epoch milliseconds, epoch seconds and ISO-8601 text (UTC unless an offset is given)", () => {
    expect(parseTimestamps([T0, T0 + 1], "ts")).toEqual([T0, T0 + 1]);
    expect(parseTimestamps([T0 / 1000, T0 / 1000 + 1.5], "ts")).toEqual([T0, T0 + 1500]);
    expect(
      parseTimestamps(
        ["2026-11-01T00:00:00Z", "2026-11-01 00:00:00", "2026-11-01T02:00:00+02:00", "2026-10-31T19:00-05:00", "2026-11-01", "2026-11-01T00:00:00.250Z", "2026-11-01 05:30:00+0530"],
        "ts",
      ),
    ).toEqual([T0, T0, T0, T0, T0, T0 + 250, T0]);
  });

  it("names the row of a bad timestamp", () => {
    invalid(() => parseTimestamps(["2026-11-01T00:00:00Z", "yesterday"], "ts"), /time column "ts", row 1: "yesterday" is not a timestamp/, "ts");
    invalid(() => parseTimestamps(["2026-02-30 00:00:00"], "ts"), /row 0/);
    invalid(() => parseTimestamps(["2026-11-01T24:00:00Z"], "ts"), /row 0/);
    invalid(() => parseTimestamps([T0, null], "ts"), /row 1: null/);
    invalid(() => parseTimestamps([true], "ts"), /row 0: true/);
  });
});

interface Production {
  table: ColumnTable;
  /** An output column derived from `mean radius`, standing in for a model output that inherits its drift. */
  outputs: ColumnTable;
}

/**
 * 48 hours of production rows resampled (seeded, with replacement) from prod.csv, 80 per hour at random minutes,
 * with three planted drifts (amounts from the fixtures' meta.json): `mean radius` +1.5 train std from hour 24 on
 * (instant); `mean texture` x (1 + 0.35 t / 48h) (gradual); `worst smoothness` +1.5 train std in hours 10-16 only
 * (temporary). Timestamps as "YYYY-MM-DD HH:MM:SS" text, in shuffled order.
 */
async function production(): Promise<Production> {
  const meta = JSON.parse(await fs.readFile(path.join(FIXTURES, "meta.json"), "utf8")) as {
    drift: { changes: { feature: string; train_std: number }[] };
  };
  const std = (feature: string): number => meta.drift.changes.find((c) => c.feature === feature)!.train_std;
  const { table: prod } = await readDatasetFile(PROD, { excludeColumns: ["label"] });
  const random = new SeededRandom(20_261_201);
  const column = (name: string): number => prod.columns.indexOf(name);
  const radius = column("mean radius");
  const texture = column("mean texture");
  const smoothness = column("worst smoothness");
  const rows: { time: number; cells: Cell[] }[] = [];
  for (let hour = 0; hour < 48; hour++) {
    for (let k = 0; k < 80; k++) {
      const source = random.below(prod.rows);
      const time = T0 + hour * HOUR + random.below(3600) * 1000;
      const cells = prod.values.map((values) => values[source] ?? null);
      const t = (time - T0) / (48 * HOUR);
      if (hour >= 24) cells[radius] = (cells[radius] as number) + 1.5 * std("mean radius");
      cells[texture] = (cells[texture] as number) * (1 + 0.35 * t);
      if (hour >= 10 && hour <= 16) cells[smoothness] = (cells[smoothness] as number) + 1.5 * std("worst smoothness");
      rows.push({ time, cells });
    }
  }
  // Shuffle: windows must not depend on the row order.
  for (let i = rows.length - 1; i > 0; i--) {
    const j = random.below(i + 1);
    [rows[i], rows[j]] = [rows[j]!, rows[i]!];
  }
  const text = (ms: number): string => new Date(ms).toISOString().replace("T", " ").slice(0, 19);
  const table: ColumnTable = {
    columns: [...prod.columns, "ts"],
    values: [...prod.columns.map((_, c) => rows.map((r) => r.cells[c] ?? null)), rows.map((r) => text(r.time))],
    rows: rows.length,
  };
  const outputs: ColumnTable = { columns: ["risk"], values: [rows.map((r) => (r.cells[radius] as number) / 10)], rows: rows.length };
  return { table, outputs };
}

describe("windowedDrift on the breast-cancer fixtures with planted drifts", () => {
  let reference: ReferenceProfile;
  let data: Production;
  let series: WindowSeries[];

  beforeAll(async () => {
    reference = await referenceProfile();
    data = await production();
    const outputs = data.outputs.values[0] as number[];
    const referenceRadius = (await readDatasetFile(TRAIN)).table;
    const radiusColumn = referenceRadius.values[referenceRadius.columns.indexOf("mean radius")] as number[];
    reference.predictions = profileTable({ columns: ["risk"], values: [radiusColumn.map((r) => r / 10)], rows: radiusColumn.length });
    expect(outputs.length).toBe(48 * 80);
    series = windowedDrift({ reference, table: data.table, timeColumn: "ts", sizes: ["1h", "6h", "12h"], predictions: data.outputs });
  }, 120_000);

  const bySize = (size: string): WindowSeries => series.find((s) => s.size === size)!;

  it("makes every window of every size, profiled on the reference's edges and tested", () => {
    expect(series.map((s) => [s.size, s.windows.length, s.stepMs])).toEqual([
      ["1h", 48, HOUR],
      ["6h", 8, 6 * HOUR],
      ["12h", 4, 12 * HOUR],
    ]);
    for (const s of series) {
      expect(s.windows.reduce((sum, w) => sum + w.rows, 0)).toBe(48 * 80);
      s.windows.forEach((w, i) => {
        expect(w.model).toBe("breast-cancer");
        expect(w.version).toBe(3);
        expect(w.start).toBe(new Date(T0 + i * s.sizeMs).toISOString());
        expect(w.end).toBe(new Date(T0 + (i + 1) * s.sizeMs).toISOString());
        expect(w.insufficient).toBe(false);
        expect(w.features.rows).toBe(w.rows);
        expect(w.drift?.features.length).toBe(30);
        expect(w.predictionDrift?.features.map((f) => f.feature)).toEqual(["risk"]);
      });
    }
    const first = bySize("1h").windows[0]!;
    expect(first.rows).toBe(80);
    const radius = first.features.columns.find((c) => c.name === "mean radius");
    const referenceRadius = reference.features.columns.find((c) => c.name === "mean radius");
    expect(radius?.kind === "numeric" && referenceRadius?.kind === "numeric" && radius.histogram.edges).toEqual(referenceRadius?.kind === "numeric" ? referenceRadius.histogram.edges : undefined);
    // The reference has 426 rows: Evidently's default for numeric features of small references is KS.
    expect(first.drift?.features.every((f) => f.method === "ks")).toBe(true);
  });

  it("reports the planted kinds at 1h, with evidence, and none for untouched features", () => {
    const kinds = new Map(classifyWindows(bySize("1h").windows).map((k) => [`${k.source}:${k.column}`, k]));
    const radius = kinds.get("features:mean radius")!;
    expect(radius.kind).toBe("instant");
    expect(radius.details.weak).toBeUndefined();
    expect(radius.details.changeStart).toBe(new Date(T0 + 24 * HOUR).toISOString());
    expect(radius.evidence).toContain("step change at window 24 (2026-11-02T00:00:00.000Z)");
    const texture = kinds.get("features:mean texture")!;
    expect(texture.kind).toBe("gradual");
    expect(texture.details.trendPvalue).toBeLessThan(0.05);
    expect(texture.details.senSlopePerHour).toBeGreaterThan(0);
    const smoothness = kinds.get("features:worst smoothness")!;
    expect(smoothness.kind).toBe("temporary");
    expect(smoothness.details.episodeStart).toBeGreaterThanOrEqual(9);
    expect(smoothness.details.episodeStart).toBeLessThanOrEqual(11);
    expect(smoothness.details.episodeEnd).toBeGreaterThanOrEqual(15);
    expect(smoothness.details.episodeEnd).toBeLessThanOrEqual(17);
    for (const feature of ["mean smoothness", "texture error", "worst concave points", "mean compactness", "worst symmetry", "mean symmetry"]) {
      expect(kinds.get(`features:${feature}`)?.kind, feature).toBe("none");
    }
    // The output derived from mean radius shows the same instant drift.
    expect(kinds.get("predictions:risk")?.kind).toBe("instant");
    const untouchedKinds = [...kinds.values()].filter((k) => k.source === "features" && !["mean radius", "mean texture", "worst smoothness"].includes(k.column));
    expect(untouchedKinds.filter((k) => k.kind !== "none").map((k) => `${k.column}: ${k.kind}`)).toEqual([]);
  });

  it("sees the instant and gradual drifts at 6h too, and the blip as the peak score", () => {
    const kinds = new Map(classifyWindows(bySize("6h").windows).map((k) => [k.column, k]));
    expect(kinds.get("mean radius")?.kind).toBe("instant");
    expect(kinds.get("mean radius")?.details.changeIndex).toBe(4);
    expect(kinds.get("mean texture")?.kind).toBe("gradual");
    // Six-hour windows of 480 rows resampled from prod.csv's 143 also see prod's own small difference from train
    // in this feature, so its kind there depends on the draw; the blip still stands out as the peak.
    const smoothness = featureSeries(bySize("6h").windows, "worst smoothness").map((p) => p.score);
    expect(smoothness.indexOf(Math.max(...smoothness))).toBe(2);
    for (const feature of ["mean smoothness", "texture error", "worst concave points"]) expect(kinds.get(feature)?.kind, feature).toBe("none");
  });

  it("says 12h windows are too few over 48 hours", () => {
    const radius = classifyWindows(bySize("12h").windows).find((k) => k.column === "mean radius")!;
    expect(radius.kind).toBe("none");
    expect(radius.evidence).toMatch(/^too few windows to tell a kind: 4 < 6/);
    // ...while the windows themselves still see the shift.
    expect(featureSeries(bySize("12h").windows, "mean radius").map((p) => p.drifted).slice(2)).toEqual([true, true]);
  });
});

describe("windowedDrift edge cases", () => {
  let reference: ReferenceProfile;
  let prod: ColumnTable;

  beforeAll(async () => {
    reference = await referenceProfile();
    prod = (await readDatasetFile(PROD, { excludeColumns: ["label"] })).table;
  });

  function timed(times: Cell[]): ColumnTable {
    const rows = times.length;
    return { columns: [...prod.columns, "ts"], values: [...prod.values.map((v) => v.slice(0, rows)), times], rows };
  }

  it("profiles but does not test windows under the minimum rows, and keeps empty ones", () => {
    // 40 rows in hour 0, none in hour 1, 10 in hour 2 (epoch seconds).
    const times = [...Array.from({ length: 40 }, (_, i) => T0 / 1000 + i * 60), ...Array.from({ length: 10 }, (_, i) => T0 / 1000 + 2 * 3600 + i * 60)];
    const [hourly] = windowedDrift({ reference, table: timed(times), timeColumn: "ts", sizes: ["1h"] });
    expect(hourly!.windows.map((w) => [w.rows, w.insufficient, w.drift === undefined, w.features.rows])).toEqual([
      [40, false, false, 40],
      [0, true, true, 0],
      [10, true, true, 10],
    ]);
    const [lenient] = windowedDrift({ reference, table: timed(times), timeColumn: "ts", sizes: ["1h"], minRows: 5 });
    expect(lenient!.windows.map((w) => w.insufficient)).toEqual([false, true, false]);
    expect(featureSeries(hourly!.windows, "mean radius").length).toBe(1);
  });

  it("slides with the default step of a quarter of the size", () => {
    const times = Array.from({ length: 120 }, (_, i) => T0 + i * MINUTE);
    const [sliding] = windowedDrift({ reference, table: timed(times), timeColumn: "ts", sizes: ["1h"], mode: "sliding" });
    expect(sliding!.stepMs).toBe(15 * MINUTE);
    expect(sliding!.windows.map((w) => w.rows)).toEqual([60, 60, 60, 60, 60]);
    const [custom] = windowedDrift({ reference, table: timed(times), timeColumn: "ts", sizes: ["1h"], mode: "sliding", steps: { "1h": "30m" } });
    expect(custom!.windows.map((w) => w.start)).toEqual([0, 30, 60].map((m) => new Date(T0 + m * MINUTE).toISOString()));
  });

  it("names what is wrong with the input", () => {
    const table = timed(Array.from({ length: 50 }, (_, i) => T0 + i * MINUTE));
    expect(() => windowedDrift({ reference, table, timeColumn: "when" })).toThrow(/no time column "when"/);
    invalid(() => windowedDrift({ reference, table, timeColumn: "ts", sizes: ["1hour"] }), /"1hour"/, "windows");
    const missing = { ...table, columns: table.columns.map((c) => (c === "mean radius" ? "radius" : c)) };
    expect(() => windowedDrift({ reference, table: missing, timeColumn: "ts" })).toThrow(/lacks column "mean radius"/);
    const badTime = timed([...Array.from({ length: 49 }, (_, i) => T0 + i * MINUTE), "soon"]);
    invalid(() => windowedDrift({ reference, table: badTime, timeColumn: "ts" }), /row 49: "soon"/, "ts");
  });
});

describe("storing window results", () => {
  let home: string;
  let store: SqlStore;

  beforeAll(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), "mlship-windows-"));
    store = await openSqlStore({ home });
  });

  afterAll(async () => {
    await store.close();
    await fs.rm(home, { recursive: true, force: true });
  });

  it("saves windows with their drift in the MonitorStore and reads them back", async () => {
    const reference = await referenceProfile();
    const prod = (await readDatasetFile(PROD, { excludeColumns: ["label"] })).table;
    const times = Array.from({ length: prod.rows }, (_, i) => T0 + i * MINUTE);
    const table: ColumnTable = { columns: [...prod.columns, "ts"], values: [...prod.values, times], rows: prod.rows };
    const [hourly] = windowedDrift({ reference, table, timeColumn: "ts", sizes: ["1h"] });
    const monitor = new MonitorStore(store);
    const createdAt = new Date("2026-12-01T00:00:00Z");
    for (const window of hourly!.windows) await monitor.saveWindow(toWindowProfile(window, createdAt));
    const stored = await monitor.listWindows("breast-cancer", 3, { size: "1h" });
    expect(stored.length).toBe(hourly!.windows.length);
    const back = stored.map(fromWindowProfile);
    expect(back).toEqual(hourly!.windows.map((w) => ({ ...w, predictionDrift: undefined })));
    expect(back[0]!.drift?.features.find((f) => f.feature === "mean radius")?.score).toBe(hourly!.windows[0]!.drift?.features.find((f) => f.feature === "mean radius")?.score);
  });
});
