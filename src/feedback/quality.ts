/**
 * Live quality of logged predictions against their joined outcomes, with scikit-learn's formulas:
 * accuracy_score; precision/recall/f1 (binary for the positive label, macro over the labels present for
 * multiclass, zero_division=0); roc_auc_score (Mann-Whitney with tie-averaged ranks; macro one-vs-rest for
 * multiclass); log_loss (probabilities clipped to [1e-15, 1 - 1e-15]); mean_absolute_error, root of
 * mean_squared_error, r2_score, mean_absolute_percentage_error.
 */
import type { ConfusionMatrix, FeedbackSpec, JoinedPrediction } from "./types.js";

/** What `computeQuality` returns; the service adds the window, the events and `error_rate` to make a QualityReport. */
export interface QualityResult {
  /** Rows given (predictions logged in the window). */
  predictions: number;
  /** Rows with a usable actual (for regression: a numeric one). */
  outcomes: number;
  /** outcomes / predictions; null when there were no predictions. */
  coverage: number | null;
  metrics: Record<string, number | null>;
  confusion?: ConfusionMatrix;
}

export const CLASSIFICATION_METRICS = ["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"] as const;
export const REGRESSION_METRICS = ["mae", "rmse", "r2", "mape"] as const;

/** scikit-learn's log_loss clipping. */
export const LOG_LOSS_EPS = 1e-15;
/** scikit-learn's mean_absolute_percentage_error floor on |y| (`np.finfo(np.float64).eps`). */
export const MAPE_EPS = 2.220446049250313e-16;

/** A classification row with an outcome: actual and predicted label text, and the class scores when complete. */
export interface LabelledRow {
  actual: string;
  /** null when the prediction could not be read; such a row counts as an outcome but in no metric. */
  predicted: string | null;
  /** Class probabilities in `spec.labels` order; null when missing or of the wrong length. */
  scores: number[] | null;
}

/** A regression row with a numeric outcome. */
export interface NumericRow {
  actual: number;
  /** null when the prediction is not a finite number; such a row counts as an outcome but in no metric. */
  predicted: number | null;
}

/**
 * The label text of an actual or a predicted value: a label as is; an integer (or integer text that is not itself a
 * label) indexing `labels` maps to that label; a boolean to `labels[1]`/`labels[0]` for binary with two labels, else
 * "true"/"false"; anything else to its text.
 */
export function labelOf(value: unknown, spec: Pick<FeedbackSpec, "task" | "labels">): string | null {
  const labels = spec.labels;
  if (value === null || value === undefined) return null;
  if (typeof value === "boolean") {
    if (spec.task === "binary_classification" && labels !== undefined && labels.length === 2) return value ? (labels[1] as string) : (labels[0] as string);
    return value ? "true" : "false";
  }
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return null;
    if (labels !== undefined && Number.isInteger(value) && value >= 0 && value < labels.length) return labels[value] as string;
    return String(value);
  }
  if (typeof value === "string") {
    if (labels === undefined || labels.includes(value)) return value;
    if (/^\d+$/.test(value)) {
      const index = Number(value);
      if (index < labels.length) return labels[index] as string;
    }
    return value;
  }
  return null;
}

/** A finite number from a number or numeric text; null otherwise. */
export function numberOf(value: unknown): number | null {
  if (typeof value === "number") return Number.isFinite(value) ? value : null;
  if (typeof value === "string" && value.trim() !== "") {
    const parsed = Number(value);
    return Number.isFinite(parsed) ? parsed : null;
  }
  return null;
}

function validScores(scores: readonly number[] | null, width: number): number[] | null {
  if (scores === null || width === 0 || scores.length !== width) return null;
  for (const s of scores) if (typeof s !== "number" || !Number.isFinite(s)) return null;
  return [...scores];
}

/** The classification rows with an outcome, normalised to label text. */
export function labelledRows(rows: readonly JoinedPrediction[], spec: FeedbackSpec): LabelledRow[] {
  const width = spec.labels?.length ?? 0;
  const out: LabelledRow[] = [];
  for (const row of rows) {
    const actual = labelOf(row.actual, spec);
    if (actual === null) continue;
    out.push({ actual, predicted: labelOf(row.prediction, spec), scores: validScores(row.scores, width) });
  }
  return out;
}

/** The regression rows with a numeric outcome (non-numeric actuals are skipped: they are no outcome of a regression). */
export function numericRows(rows: readonly JoinedPrediction[]): NumericRow[] {
  const out: NumericRow[] = [];
  for (const row of rows) {
    const actual = numberOf(row.actual);
    if (actual === null) continue;
    out.push({ actual, predicted: numberOf(row.prediction) });
  }
  return out;
}

/** The positive class of binary metrics: the spec's, else `labels[1]`, else "1" (scikit-learn's default pos_label). */
export function positiveLabelOf(spec: FeedbackSpec): string {
  return spec.positiveLabel ?? spec.labels?.[1] ?? "1";
}

/**
 * Ranks 1..n of `values` with ties given their average rank (scipy.stats.rankdata "average").
 */
export function averageRanks(values: readonly number[]): number[] {
  const order = values.map((_, i) => i).sort((a, b) => (values[a] as number) - (values[b] as number));
  const ranks = new Array<number>(values.length);
  let i = 0;
  while (i < order.length) {
    let j = i;
    while (j + 1 < order.length && values[order[j + 1] as number] === values[order[i] as number]) j++;
    // Positions i..j (0-based) share ranks i+1..j+1, whose average is (i + j) / 2 + 1.
    const rank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) ranks[order[k] as number] = rank;
    i = j + 1;
  }
  return ranks;
}

/** ROC AUC of `scores` for `positive` flags (Mann-Whitney U / (P N)); null unless both classes are present. */
export function rocAuc(positive: readonly boolean[], scores: readonly number[]): number | null {
  let positives = 0;
  for (const p of positive) if (p) positives++;
  const negatives = positive.length - positives;
  if (positives === 0 || negatives === 0) return null;
  const ranks = averageRanks(scores);
  let rankSum = 0;
  for (let i = 0; i < ranks.length; i++) if (positive[i] === true) rankSum += ranks[i] as number;
  return (rankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}

/** -log p with p clipped to [1e-15, 1 - 1e-15], as log_loss does. */
export function clippedLogLoss(p: number): number {
  return -Math.log(Math.min(Math.max(p, LOG_LOSS_EPS), 1 - LOG_LOSS_EPS));
}

interface ClassCounts {
  tp: number;
  fp: number;
  fn: number;
}

function classCounts(pairs: readonly { actual: string; predicted: string }[], label: string): ClassCounts {
  const counts = { tp: 0, fp: 0, fn: 0 };
  for (const { actual, predicted } of pairs) {
    if (predicted === label && actual === label) counts.tp++;
    else if (predicted === label) counts.fp++;
    else if (actual === label) counts.fn++;
  }
  return counts;
}

const ratio = (num: number, den: number): number => (den === 0 ? 0 : num / den);

function prf(c: ClassCounts): { precision: number; recall: number; f1: number } {
  return { precision: ratio(c.tp, c.tp + c.fp), recall: ratio(c.tp, c.tp + c.fn), f1: ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn) };
}

function confusionOf(pairs: readonly { actual: string; predicted: string }[], labels: readonly string[]): ConfusionMatrix {
  const known = new Set(labels);
  const unseen = new Set<string>();
  for (const { actual, predicted } of pairs) {
    if (!known.has(actual)) unseen.add(actual);
    if (!known.has(predicted)) unseen.add(predicted);
  }
  const all = [...labels, ...[...unseen].sort()];
  const index = new Map(all.map((label, i) => [label, i]));
  const matrix = all.map(() => all.map(() => 0));
  for (const { actual, predicted } of pairs) {
    const row = matrix[index.get(actual) as number] as number[];
    const column = index.get(predicted) as number;
    row[column] = (row[column] as number) + 1;
  }
  return { labels: all, matrix };
}

function classificationQuality(rows: readonly JoinedPrediction[], spec: FeedbackSpec): Omit<QualityResult, "predictions" | "coverage"> {
  const labelled = labelledRows(rows, spec);
  const metrics: Record<string, number | null> = Object.fromEntries(CLASSIFICATION_METRICS.map((m) => [m, null]));
  const pairs = labelled.filter((r): r is LabelledRow & { predicted: string } => r.predicted !== null);
  const labels = spec.labels ?? [];
  const result: Omit<QualityResult, "predictions" | "coverage"> = { outcomes: labelled.length, metrics };
  if (pairs.length === 0) return result;

  metrics.accuracy = pairs.filter((r) => r.actual === r.predicted).length / pairs.length;
  const scored = pairs.every((r) => r.scores !== null) ? pairs : [];

  if (spec.task === "binary_classification") {
    const positive = positiveLabelOf(spec);
    Object.assign(metrics, prf(classCounts(pairs, positive)));
    const column = labels.indexOf(positive);
    if (scored.length > 0 && column >= 0) {
      metrics.roc_auc = rocAuc(scored.map((r) => r.actual === positive), scored.map((r) => (r.scores as number[])[column] as number));
    }
  } else {
    // scikit-learn's default `labels` for macro averages: every label seen in the actuals or the predictions.
    const present = [...new Set(pairs.flatMap((r) => [r.actual, r.predicted]))];
    const perClass = present.map((label) => prf(classCounts(pairs, label)));
    const macro = (key: "precision" | "recall" | "f1"): number => perClass.reduce((sum, c) => sum + c[key], 0) / perClass.length;
    metrics.precision = macro("precision");
    metrics.recall = macro("recall");
    metrics.f1 = macro("f1");
    if (scored.length > 0 && labels.length > 0) {
      let sum = 0;
      let defined = true;
      for (let k = 0; k < labels.length && defined; k++) {
        const auc = rocAuc(scored.map((r) => r.actual === labels[k]), scored.map((r) => (r.scores as number[])[k] as number));
        if (auc === null) defined = false;
        else sum += auc;
      }
      metrics.roc_auc = defined ? sum / labels.length : null;
    }
  }
  if (scored.length > 0) {
    let loss = 0;
    for (const r of scored) {
      const column = labels.indexOf(r.actual);
      loss += clippedLogLoss(column < 0 ? 0 : ((r.scores as number[])[column] as number));
    }
    metrics.log_loss = loss / scored.length;
  }
  result.confusion = confusionOf(pairs, labels);
  return result;
}

function regressionQuality(rows: readonly JoinedPrediction[]): Omit<QualityResult, "predictions" | "coverage"> {
  const numeric = numericRows(rows);
  const metrics: Record<string, number | null> = Object.fromEntries(REGRESSION_METRICS.map((m) => [m, null]));
  const pairs = numeric.filter((r): r is NumericRow & { predicted: number } => r.predicted !== null);
  if (pairs.length > 0) {
    let absolute = 0;
    let squared = 0;
    let percentage = 0;
    let actualSum = 0;
    for (const { actual, predicted } of pairs) {
      const error = actual - predicted;
      absolute += Math.abs(error);
      squared += error * error;
      percentage += Math.abs(error) / Math.max(Math.abs(actual), MAPE_EPS);
      actualSum += actual;
    }
    const n = pairs.length;
    metrics.mae = absolute / n;
    metrics.rmse = Math.sqrt(squared / n);
    metrics.mape = percentage / n;
    const actualMean = actualSum / n;
    let total = 0;
    for (const { actual } of pairs) total += (actual - actualMean) ** 2;
    metrics.r2 = n < 2 || total === 0 ? null : 1 - squared / total;
  }
  return { outcomes: numeric.length, metrics };
}

/**
 * Quality of logged predictions with their outcomes. Only rows with an actual count as outcomes; rows whose
 * prediction could not be read count as outcomes but in no metric. Metrics that cannot be computed are null.
 */
/**
 * Quality of the rows; `predictions` is how many were logged in their range when `rows` holds only those with an
 * outcome (the coverage's denominator), else `rows.length`.
 */
export function computeQuality(rows: readonly JoinedPrediction[], spec: FeedbackSpec, predictions: number = rows.length): QualityResult {
  const part = spec.task === "regression" ? regressionQuality(rows) : classificationQuality(rows, spec);
  return {
    predictions,
    outcomes: part.outcomes,
    coverage: predictions === 0 ? null : part.outcomes / predictions,
    metrics: part.metrics,
    ...(part.confusion === undefined ? {} : { confusion: part.confusion }),
  };
}
