/**
 * Quality thresholds (`accuracy < 0.80 over 1d with at least 500 outcomes`) judged on quality reports, and the
 * `quality` alerts of the breached ones, with ids as stable as the monitoring alerts' (src/monitor/alerts.ts).
 */
import type { QualityAlert, QualityReport, QualityThreshold, ThresholdOp, ThresholdResult } from "./types.js";

/** Metrics measured on requests rather than on outcomes: their evidence is the number of predictions. */
const PREDICTION_EVIDENCE_METRICS: ReadonlySet<string> = new Set(["coverage", "error_rate"]);

export function compareWith(observed: number, op: ThresholdOp, value: number): boolean {
  switch (op) {
    case "<":
      return observed < value;
    case "<=":
      return observed <= value;
    case ">":
      return observed > value;
    case ">=":
      return observed >= value;
  }
}

/** The value of a threshold's metric in a report: `coverage` is the report's coverage, the others its metrics. */
export function observedValue(report: QualityReport, metric: string): number | null {
  const value = metric === "coverage" ? report.coverage : report.metrics[metric];
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/** How much evidence a metric rests on in a report: outcomes, or predictions for coverage and error_rate. */
export function evidenceOf(report: QualityReport, metric: string): number {
  return PREDICTION_EVIDENCE_METRICS.has(metric) ? report.predictions : report.outcomes;
}

/**
 * Judges each threshold on the report of its window. A threshold with less evidence than `minOutcomes` is
 * `insufficient` and never breached; one whose metric could not be computed is not breached either.
 */
export function judgeThresholds(thresholds: readonly QualityThreshold[], reportFor: (window: string) => QualityReport): ThresholdResult[] {
  return thresholds.map((threshold) => {
    const report = reportFor(threshold.window);
    const observed = observedValue(report, threshold.metric);
    const outcomes = evidenceOf(report, threshold.metric);
    const insufficient = outcomes < threshold.minOutcomes;
    const breached = !insufficient && observed !== null && compareWith(observed, threshold.op, threshold.value);
    return { threshold, observed, outcomes, breached, insufficient };
  });
}

/** `model@version:quality:<metric><op><value>:*[window]`: the shape of monitoring alert ids, no feature. */
export function qualityAlertId(model: string, version: number, threshold: Pick<QualityThreshold, "metric" | "op" | "value" | "window">): string {
  return `${model}@${version}:quality:${threshold.metric}${threshold.op}${threshold.value}:*[${threshold.window}]`;
}

const shortNumber = (value: number): number => Number(value.toPrecision(4));

/** The alerts of the breached results, e.g. message `accuracy 0.74 < 0.8 over 1d (612 outcomes)`. */
export function qualityAlerts(
  model: string,
  version: number,
  results: readonly ThresholdResult[],
  reportFor: (window: string) => QualityReport,
): QualityAlert[] {
  const alerts: QualityAlert[] = [];
  for (const result of results) {
    if (!result.breached || result.observed === null) continue;
    const { threshold } = result;
    const report = reportFor(threshold.window);
    const evidence = PREDICTION_EVIDENCE_METRICS.has(threshold.metric) ? "predictions" : "outcomes";
    alerts.push({
      id: qualityAlertId(model, version, threshold),
      model,
      version,
      kind: "quality",
      severity: threshold.severity,
      message: `${threshold.metric} ${shortNumber(result.observed)} ${threshold.op} ${threshold.value} over ${threshold.window} (${result.outcomes} ${evidence})`,
      value: result.observed,
      threshold: threshold.value,
      window: { ...report.window },
      at: report.window.end,
      metric: threshold.metric,
      outcomes: result.outcomes,
    });
  }
  return alerts;
}
