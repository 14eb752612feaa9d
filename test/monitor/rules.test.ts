import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import YAML from "yaml";
import { MlshipError } from "../../src/core/index.js";
import {
  defaultMonitorConfig,
  loadMonitorConfigFile,
  monitorConfigToPlain,
  parseMonitorConfig,
} from "../../src/package/index.js";
import type { MonitorConfig } from "../../src/package/index.js";
import { checkRules } from "../../src/monitor/rules.js";
import type {
  CategoricalProfile,
  ColumnProfile,
  DatasetProfile,
  NumericProfile,
  RuleResult,
} from "../../src/monitor/types.js";
import { checkMonitorSection, monitorSectionPlain } from "../../src/package/monitor-section.js";

const FIXTURES = fileURLToPath(new URL("../../../shared/fixtures/", import.meta.url));

/** A CSV of the fixtures (no quoting, header row) as columns of raw cells; empty cells are null. */
function readColumns(file: string): { names: string[]; cells: (string | null)[][]; rows: number } {
  const lines = readFileSync(path.join(FIXTURES, file), "utf8").split("\n").filter((l) => l.length > 0);
  const names = (lines[0] as string).split(",");
  const cells = names.map(() => [] as (string | null)[]);
  for (const line of lines.slice(1)) {
    line.split(",").forEach((cell, i) => (cells[i] as (string | null)[]).push(cell === "" ? null : cell));
  }
  return { names, cells, rows: lines.length - 1 };
}

/**
 * The statistics the rules read, computed here from the values themselves (the profiler lives elsewhere and is
 * not used by these tests). Quantiles, sketch and histogram are not read by the rules and stay empty.
 */
function numericProfile(name: string, values: (number | null)[]): NumericProfile {
  const xs = values.filter((v): v is number => v !== null && !Number.isNaN(v));
  const count = xs.length;
  const sum = xs.reduce((a, b) => a + b, 0);
  const mean = count > 0 ? sum / count : null;
  const m2 = mean === null ? 0 : xs.reduce((a, x) => a + (x - mean) ** 2, 0);
  return {
    kind: "numeric",
    name,
    count,
    nulls: values.length - count,
    min: count > 0 ? Math.min(...xs) : null,
    max: count > 0 ? Math.max(...xs) : null,
    mean,
    std: count > 0 ? Math.sqrt(m2 / count) : null,
    m2,
    sum,
    negatives: xs.filter((x) => x < 0).length,
    zeros: xs.filter((x) => x === 0).length,
    integer: xs.every((x) => Number.isInteger(x)),
    distinct: new Set(xs).size,
    quantiles: {},
    sketch: "",
    histogram: { edges: [], counts: [], below: 0, above: 0, rule: "doane" },
    sample: xs,
    sampleSize: Math.max(count, 1),
  };
}

function categoricalProfile(name: string, values: (string | null)[], topK = 50): CategoricalProfile {
  const counts = new Map<string, number>();
  for (const v of values) if (v !== null) counts.set(v, (counts.get(v) ?? 0) + 1);
  const sorted = [...counts.entries()].sort((a, b) => b[1] - a[1]);
  const kept = sorted.slice(0, topK);
  const present = values.filter((v) => v !== null).length;
  return {
    kind: "categorical",
    name,
    count: present,
    nulls: values.length - present,
    frequencies: Object.fromEntries(kept),
    otherCount: sorted.slice(topK).reduce((n, [, c]) => n + c, 0),
    distinct: counts.size,
  };
}

function dataset(columns: ColumnProfile[], rows: number): DatasetProfile {
  return { format: 1, rows, columns };
}

/** Every column of a fixture CSV profiled as numeric, without the label/target column unless asked. */
function profileFile(file: string, options: { keepLabel?: boolean } = {}): DatasetProfile {
  const { names, cells, rows } = readColumns(file);
  const columns = names
    .map((name, i) => numericProfile(name, (cells[i] as (string | null)[]).map((c) => (c === null ? null : Number(c)))))
    .filter((c) => options.keepLabel === true || (c.name !== "label" && c.name !== "target"));
  return dataset(columns, rows);
}

function numericValues(file: string, column: string): number[] {
  const { names, cells } = readColumns(file);
  return (cells[names.indexOf(column)] as string[]).map(Number);
}

function replaceColumn(profile: DatasetProfile, column: ColumnProfile): DatasetProfile {
  return { ...profile, columns: profile.columns.map((c) => (c.name === column.name ? column : c)) };
}

function config(raw: unknown): MonitorConfig {
  return parseMonitorConfig(raw, "test-monitor.yaml");
}

function find(results: RuleResult[], rule: string, column: string | undefined, source?: RuleResult["source"]): RuleResult {
  const hits = results.filter((r) => r.rule === rule && r.column === column && (source === undefined || r.source === source));
  expect(hits, `${rule} on ${String(column)} (${String(source)})`).toHaveLength(1);
  return hits[0] as RuleResult;
}

function failedColumns(results: RuleResult[], rule: string): string[] {
  return results.filter((r) => r.rule === rule && !r.passed).map((r) => r.column as string).sort();
}

const BC = "breast_cancer_mlp";
let train: DatasetProfile;
let prod: DatasetProfile;
let drifted: DatasetProfile;
let features: string[];

beforeAll(() => {
  train = profileFile(`${BC}/train.csv`);
  prod = profileFile(`${BC}/prod.csv`);
  drifted = profileFile(`${BC}/drifted.csv`);
  const meta = JSON.parse(readFileSync(path.join(FIXTURES, BC, "meta.json"), "utf8")) as { features: string[] };
  features = meta.features;
});

describe("checkRules on the breast cancer fixtures", () => {
  it("passes every check when the training data is checked against itself", () => {
    const results = checkRules({ current: train, reference: train, config: defaultMonitorConfig(), expectedColumns: features });
    expect(results.filter((r) => !r.passed)).toEqual([]);
    // Presence, kind, null rate, learned range and inferred non-negativity for each of the 30 features.
    for (const rule of ["column_missing", "type", "null_rate", "range", "non_negative"]) {
      expect(results.filter((r) => r.rule === rule)).toHaveLength(30);
    }
    const radius = find(results, "range", "mean radius", "reference");
    expect(radius.expected).toBe("[4.8681, 30.2229]");
    expect(find(results, "non_negative", "mean concavity").source).toBe("reference");
  });

  it("flags the shifted columns of drifted.csv with learned ranges, as warnings naming the bound", () => {
    const results = checkRules({ current: drifted, reference: train, config: defaultMonitorConfig(), expectedColumns: features });
    // Computed from the CSVs: train [min, max] widened by 10% of the width on each side against drifted min/max.
    // mean radius (+1.5 std) and worst smoothness (+3 std on 30% of rows) are the planted shifts; the other four
    // already pass the training range in prod.csv (next test).
    expect(failedColumns(results, "range")).toEqual([
      "compactness error", "mean radius", "smoothness error", "worst compactness", "worst fractal dimension",
      "worst smoothness",
    ]);
    const radius = find(results, "range", "mean radius");
    expect(radius).toMatchObject({ passed: false, severity: "warning", source: "reference", observed: 31.11277 });
    expect(radius.message).toContain('column "mean radius": max 31.1128 is above the learned maximum 30.2229');
    expect(radius.message).toContain("reference [6.981, 28.11]");
    const smoothness = find(results, "range", "worst smoothness");
    expect(smoothness.message).toContain('column "worst smoothness": max 0.249725 is above the learned maximum 0.237743');
    // mean texture x1.25 stays inside its wide training range (max 40.5875 <= 42.237).
    expect(find(results, "range", "mean texture").passed).toBe(true);
    // Nothing else fails on drifted data: no nulls, no negatives, all columns numeric and present.
    expect(results.filter((r) => !r.passed && r.rule !== "range")).toEqual([]);
  });

  it("leaves the planted shifts unflagged on the untouched prod.csv", () => {
    const results = checkRules({ current: prod, reference: train, config: defaultMonitorConfig(), expectedColumns: features });
    expect(failedColumns(results, "range")).toEqual([
      "compactness error", "smoothness error", "worst compactness", "worst fractal dimension",
    ]);
  });

  it("uses a declared range instead of the learned one, as an error", () => {
    const cfg = config({ rules: { columns: { "mean radius": { min: 5, max: 30 }, "mean texture": { max: 40 } } } });
    const results = checkRules({ current: drifted, reference: train, config: cfg });
    const radius = results.filter((r) => r.rule === "range" && r.column === "mean radius");
    // Both sides declared: no learned range runs for the column.
    expect(radius).toHaveLength(1);
    expect(radius[0]).toMatchObject({ passed: false, severity: "error", source: "declared", expected: "[5, 30]" });
    expect(radius[0]?.message).toBe('column "mean radius": max 31.1128 is above the declared maximum 30 (declared)');
    // Only the max declared: the declared max fails, the learned min still runs on its own.
    const texture = find(results, "range", "mean texture", "declared");
    expect(texture).toMatchObject({ passed: false, expected: "<= 40", observed: 40.5875 });
    expect(texture.message).toContain('column "mean texture": max 40.5875 is above the declared maximum 40');
    const textureLearned = find(results, "range", "mean texture", "reference");
    expect(textureLearned).toMatchObject({ passed: true, expected: ">= 6.753" });
  });

  it("reports a missing expected column as an error and extra columns as warnings under strict", () => {
    const withLabel = profileFile(`${BC}/prod.csv`, { keepLabel: true });
    const current = { ...withLabel, columns: withLabel.columns.filter((c) => c.name !== "mean radius") };
    const present = checkRules({ current, reference: train, config: defaultMonitorConfig(), expectedColumns: features });
    expect(find(present, "column_missing", "mean radius")).toMatchObject({
      passed: false, severity: "error", message: 'column "mean radius" is missing from the data',
    });
    expect(present.filter((r) => r.rule === "unexpected_column")).toEqual([]);

    const strict = checkRules({
      current, reference: train, config: config({ rules: { expected_columns: "strict" } }), expectedColumns: features,
    });
    expect(find(strict, "unexpected_column", "label")).toMatchObject({ passed: false, severity: "warning" });
    expect(find(strict, "unexpected_column", "label").message).toContain('column "label" is not one of the 30 expected');

    const clean = checkRules({ current: prod, reference: train, config: config({ rules: { expected_columns: "strict" } }) });
    expect(find(clean, "unexpected_column", undefined)).toMatchObject({ passed: true });
  });

  it("checks the row count against the previous window", () => {
    // prod.csv has 143 rows, train.csv 426: a 66.4% drop.
    const results = checkRules({ current: prod, previous: train, config: defaultMonitorConfig() });
    const drop = find(results, "row_count_drop", undefined);
    expect(drop).toMatchObject({ passed: false, severity: "error", source: "previous_window", observed: 143 });
    expect(drop.expected).toBe(">= 213 rows (at most 50% fewer than the previous window's 426)");
    expect(drop.message).toContain("row count dropped 66.43% to 143 from 426");
    const lenient = checkRules({ current: prod, previous: train, config: config({ rules: { max_row_drop: 0.7 } }) });
    expect(find(lenient, "row_count_drop", undefined).passed).toBe(true);
    // Exactly at the bound passes: 213 of 426 is a 50% drop.
    const half = { ...prod, rows: 213 };
    expect(find(checkRules({ current: half, previous: train, config: defaultMonitorConfig() }), "row_count_drop", undefined).passed)
      .toBe(true);
    expect(find(checkRules({ current: { ...prod, rows: 212 }, previous: train, config: defaultMonitorConfig() }),
      "row_count_drop", undefined).passed).toBe(false);
  });
});

describe("checkRules on planted problems", () => {
  it("infers non-negativity from the reference and finds planted negatives", () => {
    const concavity = numericValues(`${BC}/prod.csv`, "mean concavity");
    concavity[3] = -0.05;
    concavity[40] = -0.2;
    concavity[99] = -0.01;
    const current = replaceColumn(prod, numericProfile("mean concavity", concavity));
    const results = checkRules({ current, reference: train, config: defaultMonitorConfig() });
    const rule = find(results, "non_negative", "mean concavity");
    expect(rule).toMatchObject({ passed: false, severity: "warning", source: "reference", observed: 3 });
    expect(rule.message).toBe(
      'column "mean concavity": 3 negative values (min -0.2); expected every value >= 0 (inferred: the reference has no negative value)',
    );
    // Declaring non_negative makes it an error; declaring it false switches the inference off.
    const declared = checkRules({
      current, reference: train, config: config({ rules: { columns: { "mean concavity": { non_negative: true } } } }),
    });
    expect(find(declared, "non_negative", "mean concavity")).toMatchObject({ passed: false, severity: "error", source: "declared" });
    const off = checkRules({
      current, reference: train, config: config({ rules: { columns: { "mean concavity": { non_negative: false } } } }),
    });
    expect(off.filter((r) => r.rule === "non_negative" && r.column === "mean concavity")).toEqual([]);
  });

  it("fails a declared positive column on the zeros the real data holds", () => {
    const zeros = numericValues(`${BC}/train.csv`, "mean concavity").filter((v) => v === 0).length;
    expect(zeros).toBeGreaterThan(0);
    const results = checkRules({
      current: train, config: config({ rules: { columns: { "mean concavity": { positive: true }, "mean area": { positive: true } } } }),
    });
    const concavity = find(results, "positive", "mean concavity");
    expect(concavity).toMatchObject({ passed: false, severity: "error", observed: zeros, expected: "every value > 0" });
    expect(concavity.message).toBe(
      `column "mean concavity": ${zeros} zero or negative values (min 0); expected every value > 0 (declared positive)`,
    );
    expect(find(results, "positive", "mean area").passed).toBe(true);
  });

  it("checks null rates against declared, learned and default ceilings", () => {
    const area: (number | null)[] = numericValues(`${BC}/prod.csv`, "mean area");
    for (let i = 0; i < area.length; i += 10) area[i] = null; // 15 of 143 rows
    const current = replaceColumn(prod, numericProfile("mean area", area));

    const learned = find(checkRules({ current, reference: train, config: defaultMonitorConfig() }), "null_rate", "mean area");
    expect(learned).toMatchObject({ passed: false, severity: "warning", source: "reference", expected: "<= 0.05" });
    expect(learned.observed).toBeCloseTo(15 / 143, 12);
    expect(learned.message).toBe(
      'column "mean area": null rate 10.49% (15 of 143 values missing) is above the ceiling 5% (reference null rate 0% + 5%)',
    );

    const declaredColumn = config({ rules: { max_null_rate: 0.2, columns: { "mean area": { max_null_rate: 0.01 } } } });
    const tight = find(checkRules({ current, reference: train, config: declaredColumn }), "null_rate", "mean area");
    expect(tight).toMatchObject({ passed: false, severity: "error", source: "declared", expected: "<= 0.01" });
    expect(tight.message).toContain("above the ceiling 1% (declared for the column)");

    const datasetWide = find(checkRules({ current, config: config({ rules: { max_null_rate: 0.2 } }) }), "null_rate", "mean area");
    expect(datasetWide).toMatchObject({ passed: true, source: "declared", expected: "<= 0.2" });

    const fallback = find(checkRules({ current, config: defaultMonitorConfig() }), "null_rate", "mean area");
    expect(fallback).toMatchObject({ passed: false, severity: "warning", expected: "<= 0.05 (default)" });
  });

  it("finds unseen categories, and downgrades them when the reference kept only its top categories", () => {
    const { names, cells } = readColumns("diabetes_linear/train.csv");
    const sex = cells[names.indexOf("sex")] as string[];
    const reference = dataset([categoricalProfile("sex", sex)], sex.length);
    expect(Object.keys((reference.columns[0] as CategoricalProfile).frequencies).sort()).toEqual(["1.0", "2.0"]);

    const planted = [...sex.slice(0, 100), "3.0", "3.0", "unknown"];
    const current = dataset([categoricalProfile("sex", planted)], planted.length);
    const results = checkRules({ current, reference, config: defaultMonitorConfig() });
    const unseen = find(results, "unseen_categories", "sex");
    expect(unseen).toMatchObject({ passed: false, severity: "error", source: "reference", observed: 2 });
    expect(unseen.message).toBe('column "sex": 2 categories not in the reference (3 rows): "3.0", "unknown"');
    expect(find(results, "type", "sex")).toMatchObject({ passed: true, source: "reference" });

    const asWarning = checkRules({ current, reference, config: config({ rules: { unseen_categories: "warning" } }) });
    expect(find(asWarning, "unseen_categories", "sex").severity).toBe("warning");
    const ignored = checkRules({ current, reference, config: config({ rules: { unseen_categories: "ignore" } }) });
    expect(ignored.filter((r) => r.rule === "unseen_categories")).toEqual([]);

    // A reference profile that kept one category and summed the other under otherCount.
    const truncated = dataset([categoricalProfile("sex", sex, 1)], sex.length);
    const truncatedRef = truncated.columns[0] as CategoricalProfile;
    expect(truncatedRef.otherCount).toBeGreaterThan(0);
    const incomplete = find(checkRules({ current, reference: truncated, config: defaultMonitorConfig() }), "unseen_categories", "sex");
    expect(incomplete).toMatchObject({ passed: false, severity: "warning" });
    expect(incomplete.message).toContain(
      `the reference profile keeps only its 1 most frequent categories (${truncatedRef.otherCount} reference values in others)`,
    );

    const allowed = find(checkRules({
      current, config: config({ rules: { columns: { sex: { type: "string", allowed: ["1.0", "2.0"] } } } }),
    }), "allowed_values", "sex");
    expect(allowed).toMatchObject({ passed: false, severity: "error", source: "declared", observed: 2 });
    expect(allowed.message).toBe('column "sex": 3 values not allowed: "3.0", "unknown"; expected one of "1.0", "2.0"');
  });

  it("checks kinds and declared types", () => {
    const diabetes = profileFile("diabetes_linear/train.csv");
    const declared = checkRules({
      current: diabetes,
      config: config({ rules: { columns: { age: { type: "int" }, bmi: { type: "int" }, bp: { type: "float" }, s1: { type: "string" } } } }),
    });
    expect(find(declared, "type", "age")).toMatchObject({ passed: true, source: "declared" });
    expect(find(declared, "type", "bmi")).toMatchObject({
      passed: false, severity: "error", message: 'column "bmi" is declared int but it holds non-integer values',
    });
    expect(find(declared, "type", "bp").passed).toBe(true);
    expect(find(declared, "type", "s1").message).toBe(
      'column "s1" is declared string but it was profiled as numeric (every value is a number)',
    );

    // Text where the reference had numbers: "mean radius" read with a few "n/a" cells becomes categorical.
    const radius = numericValues(`${BC}/prod.csv`, "mean radius").map((v, i) => (i % 20 === 0 ? "n/a" : String(v)));
    const current = replaceColumn(prod, categoricalProfile("mean radius", radius));
    const results = checkRules({ current, reference: train, config: defaultMonitorConfig() });
    expect(find(results, "type", "mean radius")).toMatchObject({
      passed: false,
      severity: "error",
      observed: "categorical",
      expected: "numeric",
      message: 'column "mean radius" is categorical but numeric in the reference (it holds values that are not numbers)',
    });
    // A categorical column gets no numeric range or sign checks.
    expect(results.filter((r) => r.column === "mean radius" && ["range", "non_negative"].includes(r.rule))).toEqual([]);

    // The reference's ages are all integers: a fractional age is a warning.
    const ages = numericValues("diabetes_linear/prod.csv", "age");
    ages[0] = 40.5;
    const fractional = replaceColumn(profileFile("diabetes_linear/prod.csv"), numericProfile("age", ages));
    const intRule = checkRules({ current: fractional, reference: diabetes, config: defaultMonitorConfig() })
      .filter((r) => r.rule === "type" && r.column === "age");
    expect(intRule.map((r) => [r.passed, r.severity])).toEqual([[true, "error"], [false, "warning"]]);
    expect(intRule[1]?.message).toBe('column "age" holds non-integer values but the reference held only integers');
  });

  it("checks declared allowed values of a numeric column", () => {
    const diabetes = profileFile("diabetes_linear/prod.csv");
    const ok = find(checkRules({ current: diabetes, config: config({ rules: { columns: { sex: { allowed: [1, 2] } } } }) }),
      "allowed_values", "sex");
    expect(ok).toMatchObject({ passed: true, observed: 0 });
    const sex = numericValues("diabetes_linear/prod.csv", "sex");
    sex[5] = 0;
    const bad = find(checkRules({
      current: replaceColumn(diabetes, numericProfile("sex", sex)), config: config({ rules: { columns: { sex: { allowed: [1, 2] } } } }),
    }), "allowed_values", "sex");
    expect(bad).toMatchObject({ passed: false, observed: 1 });
    expect(bad.message).toBe('column "sex": values not allowed: 0; expected one of "1", "2"');
  });
});

describe("monitor config", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "mlship-monitor-config-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const FULL = `
monitor:
  rules:
    columns:
      mean radius: { type: float, min: 0, max: 40, non_negative: true, positive: false, max_null_rate: 0.01 }
      sex: { allowed: [1, 2] }
      note:
    expected_columns: strict
    range_tolerance: 0.2
    max_null_rate: 0.05
    max_row_drop: 0.4
    unseen_categories: warning
  drift:
    share: 0.5
    methods: { mean radius: { method: psi, threshold: 0.2 } }
`;

  it("fills defaults and reads every field", async () => {
    expect(parseMonitorConfig(undefined, "x")).toEqual(defaultMonitorConfig());
    expect(defaultMonitorConfig().rules).toEqual({
      columns: {}, expected_columns: "present", range_tolerance: 0.1, max_row_drop: 0.5, unseen_categories: "error",
    });
    const file = path.join(dir, "monitor.yaml");
    await writeFile(file, FULL);
    const cfg = await loadMonitorConfigFile(file);
    expect(cfg).toEqual({
      rules: {
        columns: {
          "mean radius": { type: "float", min: 0, max: 40, non_negative: true, positive: false, max_null_rate: 0.01 },
          sex: { allowed: [1, 2] },
          note: {},
        },
        expected_columns: "strict",
        range_tolerance: 0.2,
        max_null_rate: 0.05,
        max_row_drop: 0.4,
        unseen_categories: "warning",
      },
      drift: { share: 0.5, methods: { "mean radius": { method: "psi", threshold: 0.2 } } },
    });
    // The same section unwrapped, as JSON.
    const json = path.join(dir, "monitor.json");
    await writeFile(json, JSON.stringify((YAML.parse(FULL) as { monitor: unknown }).monitor));
    expect(await loadMonitorConfigFile(json)).toEqual(cfg);
    // Written back without defaults, it reads the same.
    const plain = monitorConfigToPlain(cfg);
    expect(parseMonitorConfig(YAML.parse(YAML.stringify(plain)), "again")).toEqual(cfg);
    expect(monitorConfigToPlain(defaultMonitorConfig())).toEqual({});
    // A typed config validates as itself (writePackage re-validates the manifest it is given).
    expect(parseMonitorConfig(cfg, "typed")).toEqual(cfg);
    expect(monitorSectionPlain(cfg)).toEqual(plain);
  });

  it("drives the rules from a loaded file on the drifted data", async () => {
    const file = path.join(dir, "radius.yaml");
    await writeFile(file, "rules:\n  columns:\n    mean radius: { max: 30 }\n");
    const results = checkRules({ current: drifted, reference: train, config: await loadMonitorConfigFile(file) });
    expect(find(results, "range", "mean radius", "declared").message).toContain("max 31.1128 is above the declared maximum 30");
  });

  function errorOf(run: () => unknown): MlshipError {
    try {
      run();
    } catch (error) {
      expect(error).toBeInstanceOf(MlshipError);
      return error as MlshipError;
    }
    throw new Error("expected an MlshipError");
  }

  it("names the file and YAML path of a bad field", () => {
    const cases: [unknown, string, string][] = [
      [{ rules: { columns: { "mean radius": { max: "x" } } } }, "rules.columns.mean radius.max", 'expected a finite number, got the string "x"'],
      [{ rules: { columns: { "mean radius": { min: 5, max: 1 } } } }, "rules.columns.mean radius.min", "min 5 is above max 1"],
      [{ rules: { columns: { a: { type: "integer" } } } }, "rules.columns.a.type", "expected one of int, float, string, bool"],
      [{ rules: { columns: { a: { maximum: 3 } } } }, "rules.columns.a.maximum", 'unknown field "maximum"'],
      [{ rules: { columns: { a: { allowed: [] } } } }, "rules.columns.a.allowed", "the list is empty"],
      [{ rules: { columns: { a: { allowed: [1, {}] } } } }, "rules.columns.a.allowed[1]", "expected a string, number or boolean"],
      [{ rules: { columns: { a: { type: "string", min: 0 } } } }, "rules.columns.a.type", "need a numeric type"],
      [{ rules: { columns: { a: { positive: true, max: 0 } } } }, "rules.columns.a.max", "contradicts positive: true"],
      [{ rules: { max_null_rate: 1.5 } }, "rules.max_null_rate", "expected a number from 0 up to 1, got 1.5"],
      [{ rules: { range_tolerance: -1 } }, "rules.range_tolerance", "expected a number >= 0"],
      [{ rules: { expected_columns: "all" } }, "rules.expected_columns", "expected one of strict, present"],
      [{ rules: { unseen_categories: true } }, "rules.unseen_categories", "expected one of error, warning, ignore, got boolean true"],
      [{ drift: { share: 0 } }, "drift.share", "expected a number above 0 up to 1, got 0"],
      [{ drift: { methods: { a: { method: "anderson" } } } }, "drift.methods.a.method", "expected one of ks, chisquare"],
      [{ drift: { methods: { a: "psi" } } }, "drift.methods.a", "expected a mapping"],
      [{ alerts: {} }, "alerts", 'unknown field "alerts" (allowed: rules, drift)'],
      [[], "(root)", "expected a mapping, got a list"],
    ];
    for (const [raw, field, what] of cases) {
      const error = errorOf(() => parseMonitorConfig(raw, "cfg.yaml"));
      expect(error.code).toBe("MLSHIP_ERR_CONFIG_INVALID");
      expect(error.field).toBe(field);
      expect(error.message).toContain(what);
      expect(error.message.startsWith("cfg.yaml: ")).toBe(true);
      expect(error.message.endsWith(` at ${field}`)).toBe(true);
    }
  });

  it("reports the package's monitor section as PACKAGE_INVALID under monitor.", () => {
    const error = errorOf(() => checkMonitorSection({ rules: { columns: { "mean radius": { max_null_rate: 2 } } } }, "pkg/mlship.yaml"));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    expect(error.field).toBe("monitor.rules.columns.mean radius.max_null_rate");
    expect(error.message).toBe(
      "pkg/mlship.yaml: expected a number from 0 up to 1, got 2 at monitor.rules.columns.mean radius.max_null_rate",
    );
    expect(checkMonitorSection(null, "pkg/mlship.yaml")).toEqual(defaultMonitorConfig());
  });

  it("reports unreadable and malformed files", async () => {
    await expect(loadMonitorConfigFile(path.join(dir, "absent.yaml"))).rejects.toMatchObject({
      code: "MLSHIP_ERR_CONFIG_INVALID", message: expect.stringContaining("does not exist") as unknown,
    });
    const yamlFile = path.join(dir, "bad.yaml");
    await writeFile(yamlFile, "rules:\n  max_row_drop: 0.5\n  max_row_drop: 0.6\n");
    await expect(loadMonitorConfigFile(yamlFile)).rejects.toMatchObject({
      code: "MLSHIP_ERR_CONFIG_INVALID", message: expect.stringMatching(/bad\.yaml: malformed YAML .* at line 3, column 3$/) as unknown,
    });
    const jsonFile = path.join(dir, "bad.json");
    await writeFile(jsonFile, "{ rules: }");
    await expect(loadMonitorConfigFile(jsonFile)).rejects.toMatchObject({
      code: "MLSHIP_ERR_CONFIG_INVALID", message: expect.stringContaining("bad.json: not valid JSON") as unknown,
    });
    const wrapped = path.join(dir, "wrapped.yaml");
    await writeFile(wrapped, "monitor:\n  rules:\n    max_row_drop: 2\n");
    await expect(loadMonitorConfigFile(wrapped)).rejects.toMatchObject({ field: "monitor.rules.max_row_drop" });
  });
});
