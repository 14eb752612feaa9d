import path from "node:path";
import { describe, expect, it } from "vitest";
import { MlshipError } from "../../src/core/index.js";
import {
  DatasetProfiler,
  decodeSketch,
  doaneEdges,
  histogramOn,
  inferKind,
  mergeProfiles,
  mergeSamples,
  profileTable,
} from "../../src/monitor/profile/index.js";
import { readDataset } from "../../src/monitor/readers.js";
import type { CategoricalProfile, Cell, ColumnTable, DatasetProfile, NumericProfile } from "../../src/monitor/types.js";

const FIXTURES = path.resolve("../shared/fixtures");
const TRAIN = path.join(FIXTURES, "breast_cancer_mlp/train.csv");

function numeric(profile: DatasetProfile, name: string): NumericProfile {
  const column = profile.columns.find((c) => c.name === name);
  if (column?.kind !== "numeric") throw new Error(`no numeric column ${name}`);
  return column;
}

function columnNumbers(table: ColumnTable, name: string): number[] {
  return (table.values[table.columns.indexOf(name)] as Cell[]).map((cell) => cell as number);
}

function slice(table: ColumnTable, from: number, to: number): ColumnTable {
  return { columns: table.columns, values: table.values.map((column) => column.slice(from, to)), rows: to - from };
}

function expectRelativeClose(actual: number | null, expected: number, tolerance: number): void {
  expect(actual).not.toBeNull();
  const scale = Math.max(Math.abs(expected), Number.MIN_VALUE);
  expect(Math.abs((actual as number) - expected) / scale).toBeLessThanOrEqual(tolerance);
}

// numpy 1.24 `np.histogram_bin_edges(x, bins="doane")` bin counts on train.csv (script: see the test below).
const NUMPY_DOANE_BINS: Record<string, number> = {
  "mean radius": 13, "mean texture": 13, "mean perimeter": 13, "mean area": 14, "mean smoothness": 13,
  "mean compactness": 14, "mean concavity": 14, "mean concave points": 14, "mean symmetry": 13,
  "mean fractal dimension": 14, "radius error": 15, "texture error": 14, "perimeter error": 15, "area error": 16,
  "smoothness error": 14, "compactness error": 14, "concavity error": 16, "concave points error": 14,
  "symmetry error": 15, "fractal dimension error": 15, "worst radius": 14, "worst texture": 13,
  "worst perimeter": 14, "worst area": 14, "worst smoothness": 13, "worst compactness": 14, "worst concavity": 14,
  "worst concave points": 13, "worst symmetry": 14, "worst fractal dimension": 14, label: 13,
};

describe("profileTable on breast_cancer_mlp/train.csv", async () => {
  const table = await readDataset(TRAIN);
  const features = table.columns.filter((name) => name !== "label");
  const profile = profileTable(table, { excludeColumns: ["label"] });

  it("profiles every feature column with the right counts", () => {
    expect(profile.rows).toBe(426);
    expect(profile.columns.map((c) => c.name)).toEqual(features);
    for (const column of profile.columns) {
      expect(column.kind).toBe("numeric");
      expect(column.count).toBe(426);
      expect(column.nulls).toBe(0);
    }
  });

  it("has moments equal to a two-pass computation within 1e-12 relative", () => {
    for (const name of features) {
      const values = columnNumbers(table, name);
      const mean = values.reduce((s, v) => s + v, 0) / values.length;
      const variance = values.reduce((s, v) => s + (v - mean) ** 2, 0) / values.length;
      const column = numeric(profile, name);
      expectRelativeClose(column.mean, mean, 1e-12);
      expectRelativeClose(column.std, Math.sqrt(variance), 1e-12);
      expectRelativeClose(column.m2, variance * values.length, 1e-12);
      expectRelativeClose(column.sum, values.reduce((s, v) => s + v, 0), 1e-12);
      expect(column.min).toBe(Math.min(...values));
      expect(column.max).toBe(Math.max(...values));
      expect(column.negatives).toBe(values.filter((v) => v < 0).length);
      expect(column.zeros).toBe(values.filter((v) => v === 0).length);
      expect(column.integer).toBe(values.every((v) => Number.isInteger(v)));
      expect(column.distinct).toBe(new Set(values).size);
      // 426 rows fit in the default reservoir: the sample is every value, in order.
      expect(column.sample).toEqual(values);
      expect(column.sampleSize).toBe(10_000);
    }
  });

  it("has sketch quantiles within 1% of the exact order statistics at their rank", () => {
    for (const name of features) {
      const sorted = columnNumbers(table, name).sort((a, b) => a - b);
      const column = numeric(profile, name);
      for (const [key, q] of [["p1", 0.01], ["p5", 0.05], ["p25", 0.25], ["p50", 0.5], ["p75", 0.75], ["p95", 0.95], ["p99", 0.99]] as const) {
        const rank = q * (sorted.length - 1);
        const low = sorted[Math.floor(rank)] as number;
        const high = sorted[Math.ceil(rank)] as number;
        const value = column.quantiles[key] as number;
        // Non-negative data: the sketch returns a value within 1% of an order statistic next to the rank.
        expect(value).toBeGreaterThanOrEqual(low * (1 - 0.01) - 1e-300);
        expect(value).toBeLessThanOrEqual(high * (1 + 0.01));
      }
    }
  });

  it("bins with Doane's rule exactly as numpy.histogram_bin_edges", () => {
    const withLabel = profileTable(table);
    for (const column of withLabel.columns) {
      expect((column as NumericProfile).histogram.counts.length, column.name).toBe(NUMPY_DOANE_BINS[column.name]);
      expect((column as NumericProfile).histogram.rule).toBe("doane");
    }
    const meanRadius = numeric(profile, "mean radius").histogram;
    expect(meanRadius.edges).toEqual([
      6.981, 8.606307692307691, 10.231615384615385, 11.856923076923076, 13.482230769230767, 15.10753846153846,
      16.732846153846154, 18.358153846153847, 19.983461538461537, 21.608769230769227, 23.23407692307692,
      24.859384615384613, 26.484692307692306, 28.11,
    ]);
    expect(meanRadius.counts).toEqual([7, 34, 80, 101, 78, 28, 35, 26, 24, 5, 4, 1, 3]);
    expect(numeric(profile, "worst concavity").histogram.counts).toEqual([84, 90, 72, 52, 52, 29, 16, 17, 5, 3, 4, 0, 0, 2]);
    expect(numeric(withLabel, "label").histogram.counts).toEqual([159, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 267]);
  });

  it("merges the profiles of two halves into the profile of the whole", () => {
    const edges = Object.fromEntries(profile.columns.map((c) => [c.name, (c as NumericProfile).histogram.edges]));
    const whole = profileTable(table, { excludeColumns: ["label"], edges });
    const first = profileTable(slice(table, 0, 200), { excludeColumns: ["label"], edges });
    const second = profileTable(slice(table, 200, 426), { excludeColumns: ["label"], edges });
    const merged = mergeProfiles(first, second);
    expect(merged.rows).toBe(426);
    for (const name of features) {
      const m = numeric(merged, name);
      const w = numeric(whole, name);
      expect(m.count).toBe(w.count);
      expect(m.nulls).toBe(w.nulls);
      expect(m.min).toBe(w.min);
      expect(m.max).toBe(w.max);
      expect(m.negatives).toBe(w.negatives);
      expect(m.zeros).toBe(w.zeros);
      expect(m.integer).toBe(w.integer);
      expect(m.distinct).toBe(w.distinct);
      expectRelativeClose(m.mean, w.mean as number, 1e-9);
      expectRelativeClose(m.std, w.std as number, 1e-9);
      expectRelativeClose(m.m2, w.m2, 1e-9);
      expectRelativeClose(m.sum, w.sum, 1e-9);
      expect(m.quantiles).toEqual(w.quantiles);
      expect(m.histogram).toEqual(w.histogram);
      expect(m.sample).toEqual(w.sample);
      // Merged from whole-profile edges the histogram also equals the Doane histogram of the whole.
      expect(m.histogram.counts).toEqual(numeric(profile, name).histogram.counts);
    }
  });

  it("refuses to merge histograms on different edges", () => {
    const first = profileTable(slice(table, 0, 200), { excludeColumns: ["label"] });
    const second = profileTable(slice(table, 200, 426), { excludeColumns: ["label"] });
    expect(() => mergeProfiles(first, second)).toThrow(MlshipError);
    try {
      mergeProfiles(first, second);
    } catch (error) {
      expect((error as MlshipError).code).toBe("MLSHIP_ERR_INPUT_INVALID");
      expect((error as MlshipError).message).toContain("mean radius");
    }
  });

  it("profiles chunk by chunk to the same result as in one go", () => {
    const edges = Object.fromEntries(profile.columns.map((c) => [c.name, (c as NumericProfile).histogram.edges]));
    const profiler = new DatasetProfiler(table.columns, { excludeColumns: ["label"], edges });
    for (let from = 0; from < table.rows; from += 50) profiler.add(slice(table, from, Math.min(from + 50, table.rows)));
    const chunked = profiler.finish();
    const whole = profileTable(table, { excludeColumns: ["label"], edges });
    for (const name of features) {
      const c = numeric(chunked, name);
      const w = numeric(whole, name);
      expect(c.count).toBe(w.count);
      expectRelativeClose(c.mean, w.mean as number, 1e-12);
      expectRelativeClose(c.std, w.std as number, 1e-12);
      expect(c.quantiles).toEqual(w.quantiles);
      expect(c.histogram).toEqual(w.histogram);
      expect(c.sample).toEqual(w.sample);
      expect(c.sketch).toBe(w.sketch);
    }
  });
});

describe("Doane edges", () => {
  it("match numpy on small arrays, constant and two-value data", () => {
    const values = [1.0, 2.0, 2.0, 3.0, 10.0, -4.5, 7.25];
    expect(doaneEdges(values)).toEqual([-4.5, -0.875, 2.75, 6.375, 10.0]);
    expect(histogramOn(doaneEdges(values), values).counts).toEqual([1, 3, 1, 2]);
    expect(doaneEdges([5, 5, 5])).toEqual([4.5, 5.5]);
    expect(doaneEdges([1, 2])).toEqual([1, 2]);
    expect(doaneEdges([])).toEqual([0, 1]);
  });

  it("bins current data on reference edges, counting values outside apart", () => {
    const histogram = histogramOn([0, 1, 2, 3], [-1, 0, 0.5, 1, 2.9999, 3, 3.5, 7, Number.MIN_VALUE]);
    expect(histogram.counts).toEqual([3, 1, 2]);
    expect(histogram.below).toBe(1);
    expect(histogram.above).toBe(2);
    expect(histogram.rule).toBe("fixed");
  });

  it("bins on uneven edges by the edges themselves", () => {
    const edges = [-5, -4.999, 0, 0.001, 0.002, 3, 1000];
    const values = Array.from({ length: 5000 }, (_, i) => ((i * 7919) % 10007) / 10 - 10 + (i % 3) * 0.0005);
    values.push(...edges);
    const histogram = histogramOn(edges, values);
    const expected = new Array<number>(edges.length - 1).fill(0);
    let below = 0;
    let above = 0;
    for (const v of values) {
      if (v < -5) below += 1;
      else if (v > 1000) above += 1;
      else {
        // The last bin is closed on the right; every other bin is [e_i, e_i+1).
        const index = v === 1000 ? edges.length - 2 : edges.findIndex((e, i) => v >= e && v < (edges[i + 1] as number));
        expected[index] = (expected[index] as number) + 1;
      }
    }
    expect(histogram.counts).toEqual(expected);
    expect([histogram.below, histogram.above]).toEqual([below, above]);
    expect(histogram.counts.reduce((s, c) => s + c, 0) + below + above).toBe(values.length);
  });
});

describe("sketches, samples and categories", () => {
  it("keeps negative values when sketches are merged", () => {
    const values = Array.from({ length: 2000 }, (_, i) => (i % 7) * 3.5 - 10 - i / 100);
    const table: ColumnTable = { columns: ["x"], values: [values], rows: values.length };
    const whole = profileTable(table, { edges: { x: [-40, 0, 20] } });
    const merged = mergeProfiles(
      profileTable(slice(table, 0, 700), { edges: { x: [-40, 0, 20] } }),
      profileTable(slice(table, 700, 2000), { edges: { x: [-40, 0, 20] } }),
    );
    expect(numeric(merged, "x").quantiles).toEqual(numeric(whole, "x").quantiles);
    expect(numeric(merged, "x").negatives).toBe(values.filter((v) => v < 0).length);
    expect(decodeSketch(numeric(merged, "x").sketch, "x").count).toBe(2000);
    const sorted = [...values].sort((a, b) => a - b);
    const p50 = numeric(merged, "x").quantiles.p50 as number;
    const exact = sorted[Math.floor(0.5 * 1999)] as number;
    expect(Math.abs(p50 - exact) / Math.abs(exact)).toBeLessThanOrEqual(0.01 + 1e-12);
  });

  it("draws deterministic reservoir samples whose merges stay uniform", () => {
    const values = Array.from({ length: 5000 }, (_, i) => i);
    const table: ColumnTable = { columns: ["x"], values: [values], rows: values.length };
    const a = numeric(profileTable(table, { sampleSize: 100, seed: 7 }), "x");
    const b = numeric(profileTable(table, { sampleSize: 100, seed: 7 }), "x");
    expect(a.sample).toEqual(b.sample);
    expect(a.sample).toHaveLength(100);
    expect(new Set(a.sample).size).toBe(100);

    // Population A = 0..999, B = 1000..2999; a uniform sample of the union takes a third of its values from A.
    const populationA = Array.from({ length: 1000 }, (_, i) => i);
    const populationB = Array.from({ length: 2000 }, (_, i) => 1000 + i);
    let fromA = 0;
    const trials = 200;
    for (let t = 0; t < trials; t++) {
      const sampleA = numeric(profileTable({ columns: ["x"], values: [populationA], rows: 1000 }, { sampleSize: 300, seed: t }), "x").sample;
      const sampleB = numeric(profileTable({ columns: ["x"], values: [populationB], rows: 2000 }, { sampleSize: 300, seed: t + 1000 }), "x").sample;
      const merged = mergeSamples(sampleA, 1000, sampleB, 2000, 300, t);
      expect(merged).toHaveLength(300);
      expect(new Set(merged).size).toBe(300);
      fromA += merged.filter((v) => v < 1000).length;
    }
    expect(fromA / (trials * 300)).toBeGreaterThan(1 / 3 - 0.01);
    expect(fromA / (trials * 300)).toBeLessThan(1 / 3 + 0.01);
  });

  it("profiles categories with top-K frequencies and merges them", () => {
    const colors: Cell[] = ["red", "blue", "red", null, "green", "red", "blue", "teal", "mauve"];
    const flags: Cell[] = [true, false, true, true, null, false, true, true, false];
    const table: ColumnTable = { columns: ["color", "flag"], values: [colors, flags], rows: 9 };
    const profile = profileTable(table, { topK: 2 });
    const color = profile.columns[0] as CategoricalProfile;
    expect(color).toEqual({
      kind: "categorical", name: "color", count: 8, nulls: 1, frequencies: { red: 3, blue: 2 }, otherCount: 3, distinct: 5,
    });
    expect(profile.columns[1]).toMatchObject({ kind: "categorical", frequencies: { true: 5, false: 3 }, nulls: 1 });

    const first = profileTable(slice(table, 0, 4));
    const second = profileTable(slice(table, 4, 9));
    const merged = mergeProfiles(first, second, { topK: 2 });
    expect(merged.columns[0]).toEqual(color);
  });

  it("infers kinds and honours forced kinds", () => {
    expect(inferKind([1, null, 2.5])).toBe("numeric");
    expect(inferKind([null, null])).toBe("numeric");
    expect(inferKind([1, "a"])).toBe("categorical");
    expect(inferKind([true, false])).toBe("categorical");
    const table: ColumnTable = { columns: ["code", "n"], values: [[1, 2, 2, 3], ["1", "2.5", null, "4"]], rows: 4 };
    const profile = profileTable(table, { kinds: { code: "categorical", n: "numeric" } });
    expect(profile.columns[0]).toMatchObject({ kind: "categorical", frequencies: { "2": 2, "1": 1, "3": 1 } });
    expect(profile.columns[1]).toMatchObject({ kind: "numeric", count: 3, nulls: 1, sum: 7.5 });
    const bad: ColumnTable = { columns: ["n"], values: [[1, "oops"]], rows: 2 };
    expect(() => profileTable(bad, { kinds: { n: "numeric" } })).toThrow(/column "n" is numeric but row 2/);
  });

  it("counts missing values and keeps an all-missing column", () => {
    const table: ColumnTable = { columns: ["x", "empty"], values: [[1, null, Number.NaN, 4, Infinity], [null, null, null, null, null]], rows: 5 };
    const profile = profileTable(table);
    expect(profile.columns[0]).toMatchObject({ count: 2, nulls: 3, mean: 2.5, min: 1, max: 4 });
    expect(profile.columns[1]).toMatchObject({ kind: "numeric", count: 0, nulls: 5, mean: null, std: null, quantiles: {} });
  });
});
