import { MlshipError } from "../core/index.js";
import { FEEDBACK_TASKS, INPUT_LOG_MODES, QUALITY_METRICS } from "./feedback-config.js";
import type { FeedbackConfig, FeedbackTask, InputLogMode, QualityMetric, QualityThreshold, ThresholdOp } from "./feedback-config.js";
import { describe, invalid, isRecord } from "./util.js";

const SECTION_KEYS = ["task", "prediction", "probabilities", "labels", "positive", "log_inputs", "sample_rate", "thresholds"];
const THRESHOLD_KEYS = ["metric", "op", "value", "window", "min_outcomes", "severity"];
/** A parsed `QualityThreshold` is accepted back as it is (manifests are validated again in canonical form). */
const CANONICAL_KEYS = ["minOutcomes", "text"];
const THRESHOLD_OPS: readonly ThresholdOp[] = ["<", "<=", ">", ">="];
const SEVERITIES = ["error", "warning"] as const;
/** Same grammar as the monitoring windows (`parseWindowSize`), kept local: package sits below monitor. */
const WINDOW_PATTERN = /^(\d+)(ms|s|m|h|d|w)$/;
const THRESHOLD_PATTERN =
  /^(\S+?)\s*(<=|>=|<|>)\s*(\S+)(?:\s+over\s+(\S+))?(?:\s+with\s+at\s+least\s+(\S+)\s+outcomes?)?(?:\s+severity\s+(\S+))?$/i;

export const DEFAULT_THRESHOLD_WINDOW = "1d";

/** Reports a threshold problem; `field` is the part of the rule at fault (`metric`, `op`, `window`...). */
export type ThresholdFail = (what: string, field: string) => Error;

const inputInvalid: ThresholdFail = (what, field) =>
  new MlshipError("MLSHIP_ERR_INPUT_INVALID", `threshold: ${what}`, { field: `threshold.${field}` });

/**
 * Parses the text form of a quality threshold: `<metric> <op> <value> [over <window>] [with at least <N> outcomes]
 * [severity error|warning]`, e.g. `accuracy < 0.80 over 1d with at least 500 outcomes`. Defaults: window `1d`, one
 * outcome, severity `error`. Errors are MLSHIP_ERR_INPUT_INVALID naming the part at fault unless `fail` says otherwise.
 */
export function parseThresholdText(text: string, fail: ThresholdFail = inputInvalid): QualityThreshold {
  const trimmed = text.trim().replace(/\s+/g, " ");
  const match = THRESHOLD_PATTERN.exec(trimmed);
  if (match === null) {
    throw fail(
      `cannot read ${JSON.stringify(text)}: expected "<metric> <op> <value> [over <window>] [with at least <N> outcomes] [severity warning]", e.g. "accuracy < 0.80 over 1d with at least 500 outcomes"`,
      "text",
    );
  }
  const [, metric, op, value, window, minOutcomes, severity] = match as unknown as [string, string, string, string, string?, string?, string?];
  return {
    metric: checkMetric(metric, fail),
    op: op as ThresholdOp,
    value: checkValue(Number(value), value, fail),
    window: checkWindow(window ?? DEFAULT_THRESHOLD_WINDOW, fail),
    minOutcomes: minOutcomes === undefined ? 1 : checkMinOutcomes(Number(minOutcomes), minOutcomes, fail),
    severity: severity === undefined ? "error" : checkSeverity(severity.toLowerCase(), fail),
    text: trimmed,
  };
}

/** The canonical text of a threshold (what the object form is rebuilt into, and what `parseThresholdText` reads back). */
export function thresholdText(t: Omit<QualityThreshold, "text">): string {
  const severity = t.severity === "warning" ? " severity warning" : "";
  return `${t.metric} ${t.op} ${t.value} over ${t.window} with at least ${t.minOutcomes} outcome${t.minOutcomes === 1 ? "" : "s"}${severity}`;
}

/** Parses one threshold in either form: the text, or `{metric, op, value, window?, min_outcomes?, severity?}`. */
export function parseThreshold(raw: unknown, fail: ThresholdFail = inputInvalid): QualityThreshold {
  if (typeof raw === "string") return parseThresholdText(raw, fail);
  if (!isRecord(raw)) throw fail(`a threshold is a text rule or a mapping, got ${describe(raw)}`, "text");
  for (const key of Object.keys(raw)) {
    if (!THRESHOLD_KEYS.includes(key) && !CANONICAL_KEYS.includes(key)) throw fail(`unknown field ${JSON.stringify(key)} (allowed: ${THRESHOLD_KEYS.join(", ")})`, key);
  }
  if (raw.metric === undefined) throw fail("metric is required", "metric");
  if (typeof raw.metric !== "string") throw fail(`expected a metric name, got ${describe(raw.metric)}`, "metric");
  if (raw.op === undefined) throw fail("op is required", "op");
  if (typeof raw.op !== "string" || !(THRESHOLD_OPS as readonly string[]).includes(raw.op)) {
    throw fail(`op must be one of ${THRESHOLD_OPS.join(" ")}, got ${describe(raw.op)}`, "op");
  }
  if (raw.value === undefined) throw fail("value is required", "value");
  const window = raw.window === undefined ? DEFAULT_THRESHOLD_WINDOW : raw.window;
  if (typeof window !== "string") throw fail(`expected a window size such as "1d", got ${describe(window)}`, "window");
  const severity = raw.severity ?? "error";
  if (typeof severity !== "string") throw fail(`severity must be error or warning, got ${describe(severity)}`, "severity");
  const minOutcomes = raw.min_outcomes ?? raw.minOutcomes ?? 1;
  const parsed: Omit<QualityThreshold, "text"> = {
    metric: checkMetric(raw.metric, fail),
    op: raw.op as ThresholdOp,
    value: checkValue(raw.value, raw.value, fail),
    window: checkWindow(window, fail),
    minOutcomes: checkMinOutcomes(minOutcomes, minOutcomes, fail),
    severity: checkSeverity(severity, fail),
  };
  const text = typeof raw.text === "string" && raw.text.trim() !== "" ? raw.text : thresholdText(parsed);
  return { ...parsed, text };
}

function checkMetric(metric: string, fail: ThresholdFail): QualityMetric {
  if (!(QUALITY_METRICS as readonly string[]).includes(metric)) {
    throw fail(`unknown metric ${JSON.stringify(metric)} (one of ${QUALITY_METRICS.join(", ")})`, "metric");
  }
  return metric as QualityMetric;
}

function checkValue(value: unknown, shown: unknown, fail: ThresholdFail): number {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw fail(`value must be a finite number, got ${typeof shown === "string" ? JSON.stringify(shown) : describe(shown)}`, "value");
  }
  return value;
}

function checkWindow(window: string, fail: ThresholdFail): string {
  const match = WINDOW_PATTERN.exec(window.trim());
  if (match === null || Number(match[1]) <= 0 || !Number.isSafeInteger(Number(match[1]))) {
    throw fail(`window ${JSON.stringify(window)} is not a positive whole number followed by a unit (ms, s, m, h, d, w), e.g. "1h", "1d"`, "window");
  }
  return window.trim();
}

function checkMinOutcomes(value: unknown, shown: unknown, fail: ThresholdFail): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
    throw fail(`min_outcomes must be an integer >= 1, got ${typeof shown === "string" ? JSON.stringify(shown) : describe(shown)}`, "min_outcomes");
  }
  return value;
}

function checkSeverity(severity: string, fail: ThresholdFail): "error" | "warning" {
  if (!(SEVERITIES as readonly string[]).includes(severity)) {
    throw fail(`severity must be error or warning, got ${JSON.stringify(severity)}`, "severity");
  }
  return severity as "error" | "warning";
}

/**
 * Validates the optional `feedback:` section of a manifest (format: docs/model-package.md, "Feedback"); errors are
 * MLSHIP_ERR_PACKAGE_INVALID naming the file and the YAML path (`feedback.thresholds[1].op`).
 */
export function checkFeedbackSection(raw: unknown, file: string): FeedbackConfig {
  const fail = (what: string, at: string): MlshipError => invalid(file, what, at);
  if (!isRecord(raw)) throw fail(`expected a mapping, got ${describe(raw)}`, "feedback");
  for (const key of Object.keys(raw)) {
    if (!SECTION_KEYS.includes(key)) throw fail(`unknown field ${JSON.stringify(key)} (allowed: ${SECTION_KEYS.join(", ")})`, `feedback.${key}`);
  }
  const name = (value: unknown, at: string): string => {
    if (typeof value !== "string" || value.length === 0) throw fail(`expected a non-empty string, got ${describe(value)}`, at);
    return value;
  };
  const config: FeedbackConfig = {};
  if (raw.task !== undefined) {
    if (typeof raw.task !== "string" || !(FEEDBACK_TASKS as readonly string[]).includes(raw.task)) {
      throw fail(`task must be one of ${FEEDBACK_TASKS.join(", ")}, got ${describe(raw.task)}`, "feedback.task");
    }
    config.task = raw.task as FeedbackTask;
  }
  if (raw.prediction !== undefined) config.prediction = name(raw.prediction, "feedback.prediction");
  if (raw.probabilities !== undefined) config.probabilities = name(raw.probabilities, "feedback.probabilities");
  if (raw.labels !== undefined) {
    if (!Array.isArray(raw.labels)) throw fail(`expected a list of labels, got ${describe(raw.labels)}`, "feedback.labels");
    const seen = new Set<string>();
    config.labels = raw.labels.map((label, i) => {
      // YAML reads `labels: [0, 1]` as numbers; labels are text everywhere else, so numbers are taken as their text.
      const text = typeof label === "number" && Number.isFinite(label) ? String(label) : name(label, `feedback.labels[${i}]`);
      if (seen.has(text)) throw fail(`duplicate label ${JSON.stringify(text)}`, `feedback.labels[${i}]`);
      seen.add(text);
      return text;
    });
    if (config.labels.length < 2) throw fail(`a classifier has at least 2 labels, got ${config.labels.length}`, "feedback.labels");
  }
  if (raw.positive !== undefined) {
    config.positive = typeof raw.positive === "number" && Number.isFinite(raw.positive) ? String(raw.positive) : name(raw.positive, "feedback.positive");
    if (config.labels !== undefined && !config.labels.includes(config.positive)) {
      throw fail(`positive label ${JSON.stringify(config.positive)} is not one of the labels (${config.labels.join(", ")})`, "feedback.positive");
    }
  }
  if (raw.log_inputs !== undefined) {
    if (typeof raw.log_inputs !== "string" || !(INPUT_LOG_MODES as readonly string[]).includes(raw.log_inputs)) {
      throw fail(`log_inputs must be one of ${INPUT_LOG_MODES.join(", ")}, got ${describe(raw.log_inputs)}`, "feedback.log_inputs");
    }
    config.log_inputs = raw.log_inputs as InputLogMode;
  }
  if (raw.sample_rate !== undefined) {
    const rate = raw.sample_rate;
    if (typeof rate !== "number" || !Number.isFinite(rate) || rate < 0 || rate > 1) {
      throw fail(`sample_rate must be a number from 0 to 1, got ${describe(rate)}`, "feedback.sample_rate");
    }
    config.sample_rate = rate;
  }
  if (raw.thresholds !== undefined && raw.thresholds !== null) {
    if (!Array.isArray(raw.thresholds)) throw fail(`expected a list of thresholds, got ${describe(raw.thresholds)}`, "feedback.thresholds");
    config.thresholds = raw.thresholds.map((item, i) => {
      const at = `feedback.thresholds[${i}]`;
      return parseThreshold(item, (what, field) => fail(what, typeof item === "string" ? at : `${at}.${field}`));
    });
  }
  checkTaskFit(config, fail);
  return config;
}

/** Fields that contradict the declared task are refused rather than ignored. */
function checkTaskFit(config: FeedbackConfig, fail: (what: string, at: string) => MlshipError): void {
  if (config.task === "binary_classification" && config.labels !== undefined && config.labels.length !== 2) {
    throw fail(`binary_classification has exactly 2 labels, got ${config.labels.length}`, "feedback.labels");
  }
  if (config.task === "regression") {
    for (const key of ["probabilities", "labels", "positive"] as const) {
      if (config[key] !== undefined) throw fail(`${key} does not apply to a regression model`, `feedback.${key}`);
    }
  }
}

/**
 * Checks that the outputs the section names exist: the model's outputs or ones post-processing adds. Kept apart from
 * `checkFeedbackSection` because only the manifest knows its outputs.
 */
export function checkFeedbackOutputs(config: FeedbackConfig, outputs: readonly string[], file: string): void {
  for (const key of ["prediction", "probabilities"] as const) {
    const name = config[key];
    if (name !== undefined && !outputs.includes(name)) {
      throw invalid(file, `no output named ${JSON.stringify(name)} (outputs: ${outputs.join(", ")})`, `feedback.${key}`);
    }
  }
}

/** The section as written to `mlship.yaml`: declared values only, thresholds as their text. */
export function feedbackSectionPlain(config: FeedbackConfig): Record<string, unknown> {
  const plain: Record<string, unknown> = {};
  if (config.task !== undefined) plain.task = config.task;
  if (config.prediction !== undefined) plain.prediction = config.prediction;
  if (config.probabilities !== undefined) plain.probabilities = config.probabilities;
  if (config.labels !== undefined) plain.labels = [...config.labels];
  if (config.positive !== undefined) plain.positive = config.positive;
  if (config.log_inputs !== undefined) plain.log_inputs = config.log_inputs;
  if (config.sample_rate !== undefined) plain.sample_rate = config.sample_rate;
  if (config.thresholds !== undefined) plain.thresholds = config.thresholds.map((t) => t.text);
  return plain;
}
