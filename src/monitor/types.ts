import type { DriftMethod } from "../package/index.js";

/**
 * Contracts of the monitoring area: profiles (mergeable summaries of a dataset), drift results and rule results.
 * Everything here is plain JSON-serialisable data, stored with a model version and sent over REST as is.
 */

/** How a column is treated: numbers get moments, quantiles, histograms; categories get frequencies. */
export type FeatureKind = "numeric" | "categorical";

/** A column's values as read from a dataset: numbers, strings, booleans; null for missing/empty/NaN. */
export type Cell = number | string | boolean | null;

/** A dataset in columns, as the readers produce it (one array per column, all of `rows` length). */
export interface ColumnTable {
  columns: string[];
  /** `values[c][r]`: column c, row r. */
  values: Cell[][];
  rows: number;
}

/** Equal-width or rule-based bin edges with counts; values outside [edges[0], edges[last]] are counted apart. */
export interface Histogram {
  /** Ascending, length = counts.length + 1. The last bin is closed on the right (numpy convention). */
  edges: number[];
  counts: number[];
  /** Values below edges[0] / above edges[last] (only for histograms on fixed reference edges). */
  below: number;
  above: number;
  /** The rule that made the edges: `doane` (reference only), `sturges`, `fixed` (reused reference edges). */
  rule: string;
}

export interface NumericProfile {
  kind: "numeric";
  name: string;
  /** Non-missing values. */
  count: number;
  /** Missing values (null, empty cell, NaN). */
  nulls: number;
  min: number | null;
  max: number | null;
  mean: number | null;
  /** Population standard deviation (ddof 0), as Evidently normalises Wasserstein with. */
  std: number | null;
  /** Welford's running sum of squared deviations (mergeable with `count` and `mean`). */
  m2: number;
  sum: number;
  negatives: number;
  zeros: number;
  /** Every value is an integer. */
  integer: boolean;
  /** Distinct values, counted exactly up to `DISTINCT_CAP` (then reported as the cap: "many"). */
  distinct: number;
  /** p1, p5, p25, p50, p75, p95, p99 from the mergeable quantile sketch. */
  quantiles: Record<string, number>;
  /** DDSketch (relative accuracy 1%), protobuf bytes in base64: mergeable across windows and replicas. */
  sketch: string;
  /** Histogram on the reference's own edges (Doane's rule), so current data can be binned the same way. */
  histogram: Histogram;
  /**
   * A uniform reservoir sample of the values (at most `sampleSize`); when `count <= sampleSize` it is every value,
   * so exact tests (KS) on it equal tests on the full data.
   */
  sample: number[];
  sampleSize: number;
}

export interface CategoricalProfile {
  kind: "categorical";
  name: string;
  count: number;
  nulls: number;
  /** Value -> count, the most frequent `topK` kept exactly; the rest summed under `otherCount`. */
  frequencies: Record<string, number>;
  otherCount: number;
  distinct: number;
}

export type ColumnProfile = NumericProfile | CategoricalProfile;

export interface DatasetProfile {
  /** Format version of this object. */
  format: 1;
  rows: number;
  columns: ColumnProfile[];
}

/** What a version's reference profile was made from. */
export interface ProfileSource {
  /** File path as given, its sha256 and size. */
  path: string;
  sha256: string;
  bytes: number;
  format: "csv" | "parquet" | "jsonl";
}

/** The stored reference of a model version: its training/validation data and its predictions on them. */
export interface ReferenceProfile {
  model: string;
  version: number;
  createdAt: string;
  source: ProfileSource;
  /** The model's feature columns (label/target columns excluded). */
  features: DatasetProfile;
  /** The model's outputs on the reference rows (one column per output element, e.g. `label`, `probabilities[1]`). */
  predictions: DatasetProfile | undefined;
}

/** A statistical test or distance (the package's `monitor.drift.methods` names them). */
export type { DriftMethod };

export interface FeatureDrift {
  feature: string;
  kind: FeatureKind;
  method: DriftMethod;
  /** Test statistic or distance. */
  statistic: number;
  /** p-value for tests (ks, chisquare, z); undefined for distances. */
  pvalue: number | undefined;
  /** The value compared with the threshold: the p-value for tests, the statistic for distances. */
  score: number;
  threshold: number;
  /** `drifted` is `score < threshold` for tests, `score >= threshold` for distances. */
  operator: "<" | ">=";
  drifted: boolean;
  /** Binning, log base, smoothing, exact/asymptotic: whatever else the number depends on. */
  details: Record<string, string | number | boolean>;
  referenceRows: number;
  currentRows: number;
}

export interface DatasetDrift {
  features: FeatureDrift[];
  driftedFeatures: number;
  share: number;
  /** Dataset drift: `share >= shareThreshold`. */
  drifted: boolean;
  shareThreshold: number;
}

export type Severity = "error" | "warning";

/** One failed or passed rule-based check. */
export interface RuleResult {
  /** Stable rule id: `column_missing`, `type`, `range`, `non_negative`, `positive`, `null_rate`, `row_count_drop`, `unseen_categories`, `unexpected_column`, `allowed_values`. */
  rule: string;
  /** The column it is about, or undefined for dataset-level rules. */
  column: string | undefined;
  passed: boolean;
  severity: Severity;
  message: string;
  /** The observed value and the bound it was checked against. */
  observed: number | string | null;
  expected: string;
  /** Where the bound came from: declared in the package/monitor config, or learned from the reference. */
  source: "declared" | "reference" | "previous_window";
}
