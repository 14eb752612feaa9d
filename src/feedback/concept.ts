/**
 * Concept drift on the live error stream: once outcomes are joined, a version's per-prediction errors (in prediction
 * time order) go through a drift detector from src/monitor (River ports): DDM on the 0/1 error of a classifier,
 * ADWIN on the absolute error of a regressor. A detected change whose errors went up becomes a `concept_drift` alert
 * (a retraining hook listening for drift hears it), with the error level before and after the change point.
 */
import { Adwin, Ddm, type Alert, type DriftDetector } from "../monitor/index.js";
import { labelOf, numberOf } from "./quality.js";
import type { FeedbackSpec, JoinedPrediction, QualityWindow } from "./types.js";

/** Below this many outcomes in the window no detector runs (DDM alone needs 30 to warm up). */
export const MIN_CONCEPT_OUTCOMES = 60;

export interface ConceptDrift {
  detector: "ddm" | "adwin";
  /** Outcomes fed to the detector. */
  outcomes: number;
  /** Prediction time of the point where the (last) drift was signalled. */
  at: string;
  /** Mean error (error rate, or mean absolute error) before and after that point. */
  before: number;
  after: number;
}

interface ErrorPoint {
  at: string;
  error: number;
}

function errorStream(rows: readonly JoinedPrediction[], spec: FeedbackSpec): ErrorPoint[] {
  const points: ErrorPoint[] = [];
  for (const row of rows) {
    if (row.actual === null) continue;
    if (spec.task === "regression") {
      const actual = numberOf(row.actual);
      const predicted = numberOf(row.prediction);
      if (actual !== null && predicted !== null) points.push({ at: row.at, error: Math.abs(actual - predicted) });
    } else {
      const actual = labelOf(row.actual, spec);
      const predicted = labelOf(row.prediction, spec);
      if (actual !== null && predicted !== null) points.push({ at: row.at, error: predicted === actual ? 0 : 1 });
    }
  }
  return points;
}

const mean = (points: readonly ErrorPoint[]): number => points.reduce((sum, p) => sum + p.error, 0) / Math.max(1, points.length);

/**
 * Runs the task's detector over the joined rows (oldest first) and returns the last drift whose errors rose, or null.
 * `rows` must be in prediction time order (as `PredictionStore.joined` returns them).
 */
export function detectConceptDrift(rows: readonly JoinedPrediction[], spec: FeedbackSpec): ConceptDrift | null {
  const points = errorStream(rows, spec);
  if (points.length < MIN_CONCEPT_OUTCOMES) return null;
  const detector: DriftDetector = spec.task === "regression" ? new Adwin() : new Ddm();
  let last = -1;
  points.forEach((p, i) => {
    if (detector.update(spec.task === "regression" ? p.error : p.error === 1).drift) last = i;
  });
  if (last < 0) return null;
  const before = mean(points.slice(0, last));
  const after = mean(points.slice(last));
  // A drop in errors is a change too, but nothing to act on.
  if (!(after > before)) return null;
  return { detector: detector.kind as "ddm" | "adwin", outcomes: points.length, at: (points[last] as ErrorPoint).at, before, after };
}

/** The alert of a concept drift of `model@version` found over `window`. */
export function conceptDriftAlert(model: string, version: number, drift: ConceptDrift, window: QualityWindow, at: Date): Alert {
  const what = drift.detector === "ddm" ? "error rate" : "mean absolute error";
  const level = (x: number): string => String(Number(x.toPrecision(3)));
  return {
    id: `${model}@${version}:concept_drift:${drift.detector}:*[${window.size}]`,
    model,
    version,
    kind: "concept_drift",
    severity: "warning",
    message: `concept drift in the live errors of ${model}@${version}: ${drift.detector} signalled a change at ${drift.at}; ${what} ${level(drift.before)} before, ${level(drift.after)} after (${drift.outcomes} outcomes over ${window.size})`,
    value: drift.after,
    threshold: `${drift.detector} change`,
    window: { ...window },
    at: at.toISOString(),
  };
}
