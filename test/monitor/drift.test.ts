/**
 * Feature and dataset drift on the real fixtures: `drifted.csv` (documented shifts of some columns) and
 * `prod.csv` (the held-out split) against `train.csv`, with Evidently's default test selection. SciPy's KS
 * results per column come from `vectors.json` (`scripts/monitor-vectors.py`) and `meta.json`.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { datasetDrift, defaultMethod, featureDrift, referenceFromProfile } from "../../src/monitor/drift.js";
import { ks2samp } from "../../src/monitor/stats/ks.js";
import { histogramCounts, histogramEdges } from "../../src/monitor/stats/binning.js";
import { pairwiseSum, populationStd } from "../../src/monitor/stats/numeric.js";
import type { CategoricalProfile, Cell, DatasetProfile, NumericProfile } from "../../src/monitor/types.js";

const fixturesRoot = fileURLToPath(new URL("../../../shared/fixtures/", import.meta.url));

interface Meta {
  features: string[];
  drift: { changes: { feature: string }[] };
  drift_reference_stats: Record<"prod_vs_train" | "drifted_vs_train", Record<string, { ks_statistic: number; ks_pvalue: number }>>;
}

interface Vectors {
  fixtures: Record<string, Record<"prod" | "drifted", Record<string, { statistic: number; pvalue: number }>>>;
}

const vectors = JSON.parse(readFileSync(fileURLToPath(new URL("./vectors.json", import.meta.url)), "utf8")) as Vectors;

/** The fixture CSVs have a header, no quoting, numbers only. */
function readColumns(fixture: string, file: string): Record<string, number[]> {
  const lines = readFileSync(`${fixturesRoot}${fixture}/${file}`, "utf8").trim().split("\n");
  const header = (lines[0] as string).split(",");
  const columns: Record<string, number[]> = Object.fromEntries(header.map((name) => [name, [] as number[]]));
  for (const line of lines.slice(1)) {
    line.split(",").forEach((cell, i) => columns[header[i] as string]!.push(Number(cell)));
  }
  return columns;
}

function readMeta(fixture: string): Meta {
  return JSON.parse(readFileSync(`${fixturesRoot}${fixture}/meta.json`, "utf8")) as Meta;
}

function featureColumns(columns: Record<string, number[]>, features: readonly string[]): Record<string, Cell[]> {
  return Object.fromEntries(features.map((f) => [f, columns[f] as Cell[]]));
}

/** A numeric profile as the profiler stores it, built here from the values (sample = a reservoir of them). */
function numericProfile(name: string, values: number[], sampleSize: number): NumericProfile {
  const sorted = [...values].sort((a, b) => a - b);
  const average = pairwiseSum(values) / values.length;
  const edges = histogramEdges(values, "doane");
  return {
    kind: "numeric",
    name,
    count: values.length,
    nulls: 0,
    min: sorted[0] ?? null,
    max: sorted[sorted.length - 1] ?? null,
    mean: average,
    std: populationStd(values),
    m2: values.reduce((s, v) => s + (v - average) ** 2, 0),
    sum: pairwiseSum(values),
    negatives: values.filter((v) => v < 0).length,
    zeros: values.filter((v) => v === 0).length,
    integer: values.every(Number.isInteger),
    distinct: new Set(values).size,
    quantiles: {},
    sketch: "",
    histogram: { ...histogramCounts(values, edges), rule: "doane" },
    // Every other value when the sample is smaller than the data: a stand-in for the reservoir.
    sample: values.length <= sampleSize ? [...values] : values.filter((_, i) => i % Math.ceil(values.length / sampleSize) === 0),
    sampleSize,
  };
}

describe.each(["breast_cancer_mlp", "diabetes_linear"])("fixture %s", (fixture) => {
  const meta = readMeta(fixture);
  const train = readColumns(fixture, "train.csv");
  const prod = readColumns(fixture, "prod.csv");
  const drifted = readColumns(fixture, "drifted.csv");
  const changed = new Set(meta.drift.changes.map((c) => c.feature));

  it("KS per column equals SciPy's ks_2samp (vectors.json) and meta.json's reference stats", () => {
    for (const [file, data, key] of [["prod", prod, "prod_vs_train"], ["drifted", drifted, "drifted_vs_train"]] as const) {
      for (const feature of meta.features) {
        const result = ks2samp(train[feature]!, data[feature]!);
        const scipy = vectors.fixtures[fixture]![file]![feature]!;
        expect(Math.abs(result.statistic - scipy.statistic), `${file} ${feature} D`).toBeLessThanOrEqual(1e-9 * scipy.statistic);
        expect(Math.abs(result.pvalue - scipy.pvalue), `${file} ${feature} p`).toBeLessThanOrEqual(1e-6);
        // meta.json rounds to 6 significant digits.
        const reference = meta.drift_reference_stats[key][feature]!;
        expect(result.statistic, `${file} ${feature} meta D`).toBeCloseTo(reference.ks_statistic, 5);
        expect(Math.abs(result.pvalue - reference.ks_pvalue), `${file} ${feature} meta p`).toBeLessThanOrEqual(
          Math.max(1e-6, 5e-6 * reference.ks_pvalue),
        );
      }
    }
  });

  it("drifted.csv vs train.csv flags exactly the shifted features with the default tests", () => {
    const result = datasetDrift(featureColumns(train, meta.features), featureColumns(drifted, meta.features));
    const flagged = result.features.filter((f) => f.drifted).map((f) => f.feature);
    expect(new Set(flagged)).toEqual(changed);
    expect(result.driftedFeatures).toBe(changed.size);
    expect(result.share).toBeCloseTo(changed.size / meta.features.length, 15);
    expect(result.drifted).toBe(result.share >= 0.5);
    for (const f of result.features) {
      expect(f.referenceRows).toBe(train[f.feature]!.length);
      expect(f.operator).toBe(f.pvalue === undefined ? ">=" : "<");
      expect(f.drifted).toBe(f.score < f.threshold);
    }
  });

  it("prod.csv vs train.csv flags no feature", () => {
    const result = datasetDrift(featureColumns(train, meta.features), featureColumns(prod, meta.features));
    expect(result.features.filter((f) => f.drifted).map((f) => f.feature)).toEqual([]);
    expect(result.drifted).toBe(false);
    expect(result.features).toHaveLength(meta.features.length);
  });
});

describe("default test selection (Evidently's _get_default_stattest)", () => {
  it("follows the table for both reference sizes", () => {
    expect(defaultMethod("numeric", 1000, 6)).toBe("ks");
    expect(defaultMethod("numeric", 1000, 5)).toBe("chisquare");
    expect(defaultMethod("numeric", 1000, 2)).toBe("z");
    expect(defaultMethod("categorical", 10, 3)).toBe("chisquare");
    expect(defaultMethod("categorical", 10, 2)).toBe("z");
    expect(defaultMethod("numeric", 1001, 6)).toBe("wasserstein_norm");
    expect(defaultMethod("numeric", 1001, 5)).toBe("jensenshannon");
    expect(defaultMethod("categorical", 5000, 40)).toBe("jensenshannon");
  });

  it("diabetes: sex (2 values) gets the Z-test, numeric columns KS, and the details say why", () => {
    const train = readColumns("diabetes_linear", "train.csv");
    const drifted = readColumns("diabetes_linear", "drifted.csv");
    const sex = featureDrift(train.sex!, drifted.sex!, { feature: "sex" });
    expect(sex.method).toBe("z");
    expect(sex.kind).toBe("numeric");
    expect(sex.drifted).toBe(true);
    expect(sex.details.baseline).toBe("1");
    expect(sex.details.distinctValues).toBe(2);
    const bmi = featureDrift(train.bmi!, drifted.bmi!, { feature: "bmi" });
    expect(bmi.method).toBe("ks");
    expect(bmi.details.pvalueMethod).toBe("exact");
    expect(bmi.threshold).toBe(0.05);
    expect(String(bmi.details.rule)).toMatch(/reference rows 331 <= 1000/);
  });

  it("digits (1347 reference rows): normed Wasserstein / Jensen-Shannon, the faded images drift, prod does not", () => {
    const meta = readMeta("digits_cnn");
    const train = readColumns("digits_cnn", "train.csv");
    const drifted = readColumns("digits_cnn", "drifted.csv");
    const prod = readColumns("digits_cnn", "prod.csv");
    const onDrifted = datasetDrift(featureColumns(train, meta.features), featureColumns(drifted, meta.features));
    const methods = new Set(onDrifted.features.map((f) => f.method));
    expect([...methods].every((m) => m === "wasserstein_norm" || m === "jensenshannon")).toBe(true);
    expect(methods.has("wasserstein_norm")).toBe(true);
    expect(onDrifted.features.every((f) => f.threshold === 0.1 && f.operator === ">=" && f.pvalue === undefined)).toBe(true);
    expect(onDrifted.drifted).toBe(true);
    expect(onDrifted.share).toBeGreaterThan(0.9);
    const onProd = datasetDrift(featureColumns(train, meta.features), featureColumns(prod, meta.features));
    expect(onProd.drifted).toBe(false);
    expect(onProd.share).toBeLessThan(0.1);
  });
});

describe("overrides, profiles and details", () => {
  const train = readColumns("breast_cancer_mlp", "train.csv");
  const drifted = readColumns("breast_cancer_mlp", "drifted.csv");

  it("a per-feature override picks the method and threshold and records the binning", () => {
    const result = datasetDrift(
      { "mean radius": train["mean radius"]!, "mean area": train["mean area"]! },
      { "mean radius": drifted["mean radius"]!, "mean area": drifted["mean area"]! },
      { methods: { "mean radius": { method: "psi", threshold: 0.2 }, "mean area": { method: "kl" } } },
    );
    const [radius, area] = result.features;
    expect(radius!.method).toBe("psi");
    expect(radius!.threshold).toBe(0.2);
    expect(radius!.details.selection).toBe("override");
    expect(radius!.details.binning).toBe("sturges on reference ∪ current");
    expect(radius!.details.logBase).toBe("e");
    expect(radius!.drifted).toBe(true);
    expect(area!.method).toBe("kl");
    expect(area!.threshold).toBe(0.1);
    expect(result.shareThreshold).toBe(0.5);
  });

  it("every method runs on a numeric column and reports finite numbers", () => {
    for (const method of ["ks", "chisquare", "z", "psi", "kl", "jensenshannon", "wasserstein", "wasserstein_norm", "l1"] as const) {
      const result = featureDrift(train["mean texture"]!, drifted["mean texture"]!, { feature: "mean texture", method });
      expect(Number.isFinite(result.statistic) || method === "chisquare", method).toBe(true);
      expect(result.method).toBe(method);
    }
  });

  it("a numeric profile whose sample holds every value gives the same result as the raw values", () => {
    const values = train["worst smoothness"]!;
    const profile = numericProfile("worst smoothness", values, 10000);
    const fromProfile = featureDrift(profile, drifted["worst smoothness"]!, { feature: "worst smoothness" });
    const fromValues = featureDrift(values, drifted["worst smoothness"]!, { feature: "worst smoothness" });
    expect(fromProfile.statistic).toBe(fromValues.statistic);
    expect(fromProfile.pvalue).toBe(fromValues.pvalue);
    expect(fromProfile.details.approximate).toBe(false);
    expect(fromProfile.details.referenceSource).toBe("profile.sample");
    const dataset = datasetDrift(
      referenceFromProfile({ format: 1, rows: values.length, columns: [profile] } satisfies DatasetProfile),
      { "worst smoothness": drifted["worst smoothness"]! },
    );
    expect(dataset.features[0]!.pvalue).toBe(fromValues.pvalue);
  });

  it("a sampled profile is marked approximate and still uses the true row count for the selection", () => {
    const values = train["mean radius"]!;
    const profile = numericProfile("mean radius", values, 100);
    const result = featureDrift(profile, drifted["mean radius"]!, { feature: "mean radius" });
    expect(result.details.approximate).toBe(true);
    expect(result.referenceRows).toBe(values.length);
    expect(result.method).toBe("ks");
    expect(result.drifted).toBe(true);
  });

  it("a categorical profile is tested on its frequencies (chi-square), nulls dropped from the current data", () => {
    const profile: CategoricalProfile = {
      kind: "categorical",
      name: "colour",
      count: 100,
      nulls: 0,
      frequencies: { red: 50, green: 30, blue: 20 },
      otherCount: 0,
      distinct: 3,
    };
    const current: Cell[] = [...Array<Cell>(30).fill("red"), ...Array<Cell>(40).fill("green"), ...Array<Cell>(30).fill("blue"), null, null];
    const result = featureDrift(profile, current, { feature: "colour" });
    expect(result.method).toBe("chisquare");
    expect(result.currentRows).toBe(100);
    expect(result.pvalue).toBeCloseTo(0.0002839629839032563, 12);
    expect(result.drifted).toBe(true);
    expect(result.details.referenceSource).toBe("profile.frequencies");
  });

  it("refuses an empty current column and a missing one", () => {
    expect(() => featureDrift([1, 2, 3], [null, null], { feature: "x" })).toThrow(/no non-missing values/);
    expect(() => datasetDrift({ x: [1, 2, 3] }, {})).toThrow(/no column "x"/);
  });
});
