/**
 * The feedback settings of a model: the `feedback:` section of `mlship.yaml` (docs/model-package.md "Feedback").
 * Every field is optional; the feedback loop detects what is missing from the signature and post-processing.
 *
 * ```yaml
 * feedback:
 *   task: binary_classification     # multiclass_classification | regression
 *   prediction: class               # output holding the predicted label or value
 *   probabilities: probabilities    # output holding class probabilities [rows, K]
 *   labels: [malignant, benign]     # class labels in probability-column order
 *   positive: benign                # positive class of precision / recall / F1 / ROC AUC
 *   log_inputs: full                # full | sampled | hashed | none
 *   sample_rate: 0.1                # share of predictions logged in full when log_inputs is sampled
 *   thresholds:
 *     - accuracy < 0.80 over 1d with at least 500 outcomes
 *     - { metric: rmse, op: ">", value: 60, window: 12h, min_outcomes: 100, severity: warning }
 * ```
 */

export type FeedbackTask = "binary_classification" | "multiclass_classification" | "regression";
export const FEEDBACK_TASKS: readonly FeedbackTask[] = ["binary_classification", "multiclass_classification", "regression"];

export type InputLogMode = "full" | "sampled" | "hashed" | "none";
export const INPUT_LOG_MODES: readonly InputLogMode[] = ["full", "sampled", "hashed", "none"];

/** A comparison in a quality threshold, read as "alert when <metric> <op> <value>". */
export type ThresholdOp = "<" | "<=" | ">" | ">=";

/** Live-quality metric names a threshold (or a gate) may name. */
export const QUALITY_METRICS = [
  "accuracy", "precision", "recall", "f1", "roc_auc", "log_loss",
  "mae", "rmse", "r2", "mape",
  "coverage", "error_rate",
] as const;
export type QualityMetric = (typeof QUALITY_METRICS)[number];

/**
 * A live-quality threshold: alert when `metric op value` over the trailing `window` once at least `minOutcomes`
 * outcomes are joined in it. Text form: `accuracy < 0.80 over 1d with at least 500 outcomes` (`over` and `with`
 * parts optional: default window 1d, 1 outcome).
 */
export interface QualityThreshold {
  metric: QualityMetric;
  op: ThresholdOp;
  value: number;
  /** Window size label (units ms, s, m, h, d, w), e.g. `1d`. */
  window: string;
  /** Below this many joined outcomes the threshold is not judged (no evidence). */
  minOutcomes: number;
  severity: "error" | "warning";
  /** The rule as written in text form (or rebuilt from the object form), for messages. */
  text: string;
}

/** The `feedback:` section as validated (snake_case as in the file; thresholds parsed). */
export interface FeedbackConfig {
  task?: FeedbackTask;
  prediction?: string;
  probabilities?: string;
  labels?: string[];
  positive?: string;
  log_inputs?: InputLogMode;
  sample_rate?: number;
  thresholds?: QualityThreshold[];
}
