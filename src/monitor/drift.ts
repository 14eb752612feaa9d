/**
 * Per-feature and dataset drift with Evidently's default test selection (`_get_default_stattest` in
 * `evidently/legacy/calculations/stattests/registry.py`, reference doc TL;DR 1 and §1.2):
 *
 * | reference rows | numeric, > 5 distinct values | numeric <= 5 / categorical, > 2 distinct | <= 2 distinct |
 * |----------------|------------------------------|------------------------------------------|---------------|
 * | <= 1000        | `ks` (p < 0.05)              | `chisquare` (p < 0.05)                   | `z` (p < 0.05) |
 * | > 1000         | `wasserstein_norm` (>= 0.1)  | `jensenshannon` (>= 0.1)                 | `jensenshannon` |
 *
 * Distinct values are counted over reference ∪ current, rows after dropping missing values; dataset drift is
 * `share of drifted features >= 0.5`. Every choice that changes the number is written into `details`.
 */
import { MlshipError } from "../core/index.js";
import type {
  CategoricalProfile,
  Cell,
  ColumnTable,
  DatasetDrift,
  DatasetProfile,
  DriftMethod,
  FeatureDrift,
  FeatureKind,
  NumericProfile,
} from "./types.js";
import { ks2samp } from "./stats/ks.js";
import { evidentlyChiSquare, zTestFromCounts, compareKeys } from "./stats/chisquare.js";
import { jensenShannon, kl, l1, normedWasserstein, psi, wasserstein } from "./stats/divergence.js";
import { EVIDENTLY_PER_VALUE_MAX_DISTINCT, fillEmptyBins, histogramCounts, histogramEdges } from "./stats/binning.js";
import { populationStd } from "./stats/numeric.js";

/** A feature's reference: its raw values, or the profile stored with the model version. */
export type ReferenceInput = readonly Cell[] | NumericProfile | CategoricalProfile;

export interface MethodOverride {
  /** Defaults to the default selection (`defaultMethod`): a threshold alone may be overridden. */
  method?: DriftMethod;
  /** Defaults to the method's default threshold (`DEFAULT_THRESHOLDS`). */
  threshold?: number;
}

export interface FeatureDriftOptions {
  feature: string;
  /** Defaults to the profile's kind, else numeric when every reference value is a number. */
  kind?: FeatureKind;
  /** Overrides the default test selection. */
  method?: DriftMethod;
  threshold?: number;
}

export interface DatasetDriftOptions {
  /** Per-feature method (and threshold) instead of the default selection. */
  methods?: Record<string, MethodOverride>;
  kinds?: Record<string, FeatureKind>;
  /** Dataset drift when the share of drifted features is >= this (Evidently's `drift_share`, 0.5). */
  shareThreshold?: number;
}

/** Evidently's thresholds: p-value 0.05 for tests, 0.1 for distances (0.1 for `wasserstein`/`l1` is ours). */
export const DEFAULT_THRESHOLDS: Readonly<Record<DriftMethod, number>> = {
  ks: 0.05,
  chisquare: 0.05,
  z: 0.05,
  psi: 0.1,
  kl: 0.1,
  jensenshannon: 0.1,
  wasserstein: 0.1,
  wasserstein_norm: 0.1,
  l1: 0.1,
};
export const DEFAULT_DRIFT_SHARE = 0.5;
/** Reference sizes up to this use statistical tests, larger ones distances (Evidently). */
export const SMALL_REFERENCE_MAX_ROWS = 1000;
/** Numeric columns with at most this many distinct values are treated like categories (Evidently). */
export const FEW_VALUES_MAX = 5;

const TESTS: ReadonlySet<DriftMethod> = new Set(["ks", "chisquare", "z"]);
const NUMERIC_ONLY: ReadonlySet<DriftMethod> = new Set(["ks", "wasserstein", "wasserstein_norm"]);

type Key = string | number;

/** A column ready for the statistics: numeric values (when numeric) and per-value counts. */
interface PreparedColumn {
  kind: FeatureKind;
  values: number[] | undefined;
  counts: Map<Key, number>;
  /** Rows the counts add up to. */
  countedRows: number;
  /** The column's true non-missing row count (a profile's `count` may exceed its sample). */
  rows: number;
  /** Distinct values known beyond the counts (a profile's exact distinct count), 0 when none. */
  distinctHint: number;
  source: "values" | "profile.sample" | "profile.frequencies";
  approximate: boolean;
}

/** Key under which a categorical profile's `otherCount` (values beyond its top-K) is counted. */
export const OTHER_CATEGORY = "__other__";

function isProfile(reference: ReferenceInput): reference is NumericProfile | CategoricalProfile {
  return !Array.isArray(reference) && typeof reference === "object" && reference !== null && "kind" in reference;
}

function isPresent(value: Cell): value is number | string | boolean {
  return value !== null && value !== undefined && !(typeof value === "number" && !Number.isFinite(value));
}

function toNumber(value: number | string | boolean, feature: string): number {
  const n = typeof value === "number" ? value : typeof value === "string" && value.trim() !== "" ? Number(value) : Number.NaN;
  if (!Number.isFinite(n)) {
    throw new MlshipError("MLSHIP_ERR_INPUT_DTYPE", `feature "${feature}": value ${JSON.stringify(value)} is not a number`);
  }
  return n;
}

function countKeys(keys: readonly Key[]): Map<Key, number> {
  const counts = new Map<Key, number>();
  for (const k of keys) counts.set(k, (counts.get(k) ?? 0) + 1);
  return counts;
}

function fromValues(values: readonly Cell[], kind: FeatureKind, feature: string, knownCategories?: ReadonlySet<string>): PreparedColumn {
  const present = values.filter(isPresent);
  if (kind === "numeric") {
    const numbers = present.map((v) => toNumber(v, feature));
    return { kind, values: numbers, counts: countKeys(numbers), countedRows: numbers.length, rows: numbers.length, distinctHint: 0, source: "values", approximate: false };
  }
  let keys = present.map((v) => String(v));
  if (knownCategories !== undefined) keys = keys.map((k) => (knownCategories.has(k) ? k : OTHER_CATEGORY));
  return { kind, values: undefined, counts: countKeys(keys), countedRows: keys.length, rows: keys.length, distinctHint: 0, source: "values", approximate: false };
}

function prepareReference(reference: ReferenceInput, feature: string, kind: FeatureKind | undefined): PreparedColumn {
  if (!isProfile(reference)) {
    const present = reference.filter(isPresent);
    const inferred: FeatureKind = present.every((v) => typeof v === "number") ? "numeric" : "categorical";
    return fromValues(reference, kind ?? inferred, feature);
  }
  if (reference.kind === "numeric") {
    if (kind === "categorical") {
      return { ...fromValues(reference.sample, "categorical", feature), rows: reference.count, approximate: reference.count > reference.sample.length, source: "profile.sample" };
    }
    const sample = [...reference.sample];
    return {
      kind: "numeric",
      values: sample,
      counts: countKeys(sample),
      countedRows: sample.length,
      rows: reference.count,
      distinctHint: reference.distinct,
      source: "profile.sample",
      // The reservoir holds every value only while count <= sampleSize; beyond that the sample stands in.
      approximate: reference.count > reference.sampleSize || reference.count !== sample.length,
    };
  }
  if (kind === "numeric") {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `feature "${feature}": a categorical profile cannot be tested as numeric`);
  }
  const counts = new Map<Key, number>(Object.entries(reference.frequencies));
  if (reference.otherCount > 0) counts.set(OTHER_CATEGORY, (counts.get(OTHER_CATEGORY) ?? 0) + reference.otherCount);
  let countedRows = 0;
  for (const c of counts.values()) countedRows += c;
  return {
    kind: "categorical",
    values: undefined,
    counts,
    countedRows,
    rows: reference.count,
    distinctHint: reference.distinct,
    source: "profile.frequencies",
    approximate: reference.otherCount > 0,
  };
}

/** Evidently's `_get_default_stattest`. */
export function defaultMethod(kind: FeatureKind, referenceRows: number, distinctValues: number): DriftMethod {
  if (referenceRows <= SMALL_REFERENCE_MAX_ROWS) {
    if (kind === "numeric" && distinctValues > FEW_VALUES_MAX) return "ks";
    return distinctValues > 2 ? "chisquare" : "z";
  }
  if (kind === "numeric" && distinctValues > FEW_VALUES_MAX) return "wasserstein_norm";
  return "jensenshannon";
}

type Details = FeatureDrift["details"];

function setDetail(details: Details, key: string, value: string | number | boolean | undefined): void {
  if (value !== undefined) details[key] = value;
}

/** Per-bin shares as Evidently's `get_binned_data` makes them, from prepared columns. */
function binnedShares(reference: PreparedColumn, current: PreparedColumn, fillZeroes: boolean, details: Details): { p: number[]; q: number[] } {
  let p: number[];
  let q: number[];
  const referenceDistinct = Math.max(reference.counts.size, reference.distinctHint);
  if (reference.kind === "numeric" && reference.values !== undefined && current.values !== undefined && referenceDistinct > EVIDENTLY_PER_VALUE_MAX_DISTINCT) {
    const edges = histogramEdges([...reference.values, ...current.values], "sturges");
    p = histogramCounts(reference.values, edges).counts.map((c) => c / reference.values!.length);
    q = histogramCounts(current.values, edges).counts.map((c) => c / current.values!.length);
    details.binning = "sturges on reference ∪ current";
    details.binMin = edges[0] as number;
    details.binMax = edges[edges.length - 1] as number;
  } else {
    const keys = [...new Set<Key>([...reference.counts.keys(), ...current.counts.keys()])].sort(compareKeys);
    p = keys.map((k) => (reference.counts.get(k) ?? 0) / reference.countedRows);
    q = keys.map((k) => (current.counts.get(k) ?? 0) / current.countedRows);
    details.binning = "one bin per value";
  }
  details.bins = p.length;
  if (fillZeroes) {
    const filledP = fillEmptyBins(p);
    const filledQ = fillEmptyBins(q);
    p = filledP.shares;
    q = filledQ.shares;
    details.smoothing = "empty bins := min_nonzero/1e6 if min_nonzero <= 1e-4 else 1e-4 (Evidently)";
    setDetail(details, "referenceEpsilon", filledP.epsilon);
    setDetail(details, "currentEpsilon", filledQ.epsilon);
  } else {
    details.smoothing = "none";
  }
  return { p, q };
}

function unionCounts(reference: PreparedColumn, current: PreparedColumn): { keys: Key[]; referenceCounts: number[]; currentCounts: number[] } {
  const keys = [...new Set<Key>([...reference.counts.keys(), ...current.counts.keys()])].sort(compareKeys);
  return {
    keys,
    referenceCounts: keys.map((k) => reference.counts.get(k) ?? 0),
    currentCounts: keys.map((k) => current.counts.get(k) ?? 0),
  };
}

function runMethod(method: DriftMethod, reference: PreparedColumn, current: PreparedColumn, details: Details): { statistic: number; pvalue: number | undefined } {
  if (NUMERIC_ONLY.has(method) && (reference.values === undefined || current.values === undefined)) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `method "${method}" needs a numeric feature`);
  }
  switch (method) {
    case "ks": {
      const result = ks2samp(reference.values!, current.values!);
      details.pvalueMethod = result.method;
      return { statistic: result.statistic, pvalue: result.pvalue };
    }
    case "wasserstein":
      return { statistic: wasserstein(reference.values!, current.values!), pvalue: undefined };
    case "wasserstein_norm": {
      details.referenceStd = populationStd(reference.values!);
      details.normalization = "W1 / max(std(reference, ddof 0), 0.001)";
      return { statistic: normedWasserstein(reference.values!, current.values!), pvalue: undefined };
    }
    case "chisquare": {
      const { referenceCounts, currentCounts } = unionCounts(reference, current);
      const result = evidentlyChiSquare(referenceCounts, currentCounts, reference.countedRows, current.countedRows);
      details.test = "goodness of fit: f_obs = current counts, f_exp = reference counts x n_cur / n_ref";
      details.dof = result.dof;
      details.bins = referenceCounts.length;
      return { statistic: result.statistic, pvalue: result.pvalue };
    }
    case "z": {
      const { keys, referenceCounts, currentCounts } = unionCounts(reference, current);
      const baseline = keys[0] ?? 0;
      const referenceOnes = reference.countedRows - (referenceCounts[0] ?? 0);
      const currentOnes = current.countedRows - (currentCounts[0] ?? 0);
      const result = zTestFromCounts(referenceOnes, reference.countedRows, currentOnes, current.countedRows, baseline);
      details.baseline = String(baseline);
      return { statistic: result.statistic, pvalue: result.pvalue };
    }
    case "jensenshannon": {
      const { p, q } = binnedShares(reference, current, false, details);
      details.logBase = "e";
      return { statistic: jensenShannon(p, q), pvalue: undefined };
    }
    case "psi": {
      const { p, q } = binnedShares(reference, current, true, details);
      details.logBase = "e";
      return { statistic: psi(p, q), pvalue: undefined };
    }
    case "kl": {
      const { p, q } = binnedShares(reference, current, true, details);
      details.logBase = "e";
      details.direction = "KL(reference || current)";
      return { statistic: kl(p, q), pvalue: undefined };
    }
    case "l1": {
      const { p, q } = binnedShares(reference, current, false, details);
      return { statistic: l1(p, q), pvalue: undefined };
    }
  }
}

/**
 * Drift of one feature: `current` holds the raw current values (nulls/NaN/inf dropped here), `reference` the raw
 * reference values or its profile. A numeric profile is tested on its sample: exact while `count <= sampleSize`
 * (the sample is every value), otherwise `details.approximate` is true. A categorical profile uses its
 * frequencies; with an `otherCount`, current values outside the kept categories are pooled with it.
 */
export function featureDrift(reference: ReferenceInput, current: readonly Cell[], options: FeatureDriftOptions): FeatureDrift {
  const { feature } = options;
  const preparedReference = prepareReference(reference, feature, options.kind);
  const kind = preparedReference.kind;
  const knownCategories =
    kind === "categorical" && preparedReference.counts.has(OTHER_CATEGORY) && preparedReference.approximate
      ? new Set([...preparedReference.counts.keys()].map(String))
      : undefined;
  const preparedCurrent = fromValues(current, kind, feature, knownCategories);
  if (preparedReference.countedRows === 0 || preparedCurrent.countedRows === 0) {
    throw new MlshipError(
      "MLSHIP_ERR_INPUT_INVALID",
      `feature "${feature}": the ${preparedReference.countedRows === 0 ? "reference" : "current"} data has no non-missing values`,
    );
  }
  const distinct = Math.max(
    new Set<Key>([...preparedReference.counts.keys(), ...preparedCurrent.counts.keys()]).size,
    preparedReference.distinctHint,
  );
  const method = options.method ?? defaultMethod(kind, preparedReference.rows, distinct);
  const threshold = options.threshold ?? DEFAULT_THRESHOLDS[method];
  const details: Details = {
    selection: options.method === undefined ? "default" : "override",
    distinctValues: distinct,
    referenceSource: preparedReference.source,
    approximate: preparedReference.approximate,
  };
  if (options.method === undefined) {
    details.rule = `reference rows ${preparedReference.rows} ${preparedReference.rows <= SMALL_REFERENCE_MAX_ROWS ? "<=" : ">"} ${SMALL_REFERENCE_MAX_ROWS}, ${kind}, ${distinct} distinct values in reference ∪ current`;
  }
  const { statistic, pvalue } = runMethod(method, preparedReference, preparedCurrent, details);
  const isTest = TESTS.has(method);
  const score = isTest ? (pvalue as number) : statistic;
  return {
    feature,
    kind,
    method,
    statistic,
    pvalue,
    score,
    threshold,
    operator: isTest ? "<" : ">=",
    drifted: isTest ? score < threshold : score >= threshold,
    details,
    referenceRows: preparedReference.rows,
    currentRows: preparedCurrent.rows,
  };
}

/**
 * Drift of every feature of `reference` (raw columns or profiles) against the current columns, and the dataset
 * verdict: `share = drifted / features`, drifted when `share >= shareThreshold`.
 */
export function datasetDrift(
  reference: Readonly<Record<string, ReferenceInput>>,
  current: Readonly<Record<string, readonly Cell[]>>,
  options: DatasetDriftOptions = {},
): DatasetDrift {
  const shareThreshold = options.shareThreshold ?? DEFAULT_DRIFT_SHARE;
  const features: FeatureDrift[] = [];
  for (const [feature, referenceColumn] of Object.entries(reference)) {
    const currentColumn = current[feature];
    if (currentColumn === undefined) {
      throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", `current data has no column "${feature}"`);
    }
    const override = options.methods?.[feature];
    features.push(
      featureDrift(referenceColumn, currentColumn, {
        feature,
        kind: options.kinds?.[feature],
        method: override?.method,
        threshold: override?.threshold,
      }),
    );
  }
  const driftedFeatures = features.filter((f) => f.drifted).length;
  const share = features.length === 0 ? 0 : driftedFeatures / features.length;
  return { features, driftedFeatures, share, drifted: features.length > 0 && share >= shareThreshold, shareThreshold };
}

/** The feature columns of a stored profile, keyed by name, for `datasetDrift`. */
export function referenceFromProfile(profile: DatasetProfile): Record<string, NumericProfile | CategoricalProfile> {
  return Object.fromEntries(profile.columns.map((column) => [column.name, column]));
}

/** A column table as name -> values, for `datasetDrift`. */
export function columnsOf(table: ColumnTable, only?: readonly string[]): Record<string, Cell[]> {
  const columns: Record<string, Cell[]> = {};
  table.columns.forEach((name, index) => {
    if (only === undefined || only.includes(name)) columns[name] = table.values[index] ?? [];
  });
  return columns;
}
