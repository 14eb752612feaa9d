/**
 * Live quality over time (`GET /api/v1/models/{name}/quality/series`): the trailing `range` cut into buckets of
 * `step`, each bucket's quality computed by `computeQuality` exactly as a `/quality` report over that bucket would.
 *
 * Buckets are aligned to multiples of `step` since the epoch (UTC), like the monitoring windows, so a bucket is the
 * same span on every refresh: `ceil(range / step)` of them, the last one ending at `now` (partial unless `now` is on
 * a boundary).
 * The rows of a version with an outcome are read once for the whole span and bucketed in memory; the predictions of
 * each bucket (the denominator of coverage) are counted in the store, one indexed count per bucket, so a day of
 * traffic is never read row by row.
 */
import { MlshipError } from "../core/index.js";
import { parseWindowSize } from "../monitor/index.js";
import type { QualityPoint } from "../ui/contract.js";
import { CLASSIFICATION_METRICS, computeQuality, REGRESSION_METRICS } from "./quality.js";
import type { FeedbackSpec, JoinedPrediction } from "./types.js";

/** The most buckets one series request may ask for. */
export const MAX_QUALITY_BUCKETS = 500;
export const DEFAULT_SERIES_RANGE = "1d";
export const DEFAULT_SERIES_STEP = "1h";

export interface QualityBucket {
  /** Epoch ms, start inclusive, end exclusive. */
  start: number;
  end: number;
}

/** A span label (`range`, `step`) in ms, or a 400 naming the field. */
export function spanMs(text: string, field: string): number {
  try {
    return parseWindowSize(text);
  } catch (error) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${field}: ${error instanceof Error ? error.message : String(error)}`, { field, cause: error });
  }
}

/**
 * The buckets of `step` covering the trailing `range` up to `now` (see the file's doc). A step longer than the range,
 * or more than MAX_QUALITY_BUCKETS buckets, is a 400 naming `step`.
 */
export function qualityBuckets(now: number, range: string, step: string): QualityBucket[] {
  const rangeMs = spanMs(range, "range");
  const stepMs = spanMs(step, "step");
  if (stepMs > rangeMs) throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `step ${step} is longer than range ${range}`, { field: "step" });
  const count = Math.ceil(rangeMs / stepMs);
  if (count > MAX_QUALITY_BUCKETS) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `range ${range} in steps of ${step} makes ${count} buckets; at most ${MAX_QUALITY_BUCKETS} (take a longer step)`, { field: "step" });
  }
  // The last bucket ends at or after `now` and starts before it (at a boundary it is the full step just ended).
  const last = Math.ceil(now / stepMs) * stepMs - stepMs;
  return Array.from({ length: count }, (_, i) => {
    const start = last - (count - 1 - i) * stepMs;
    return { start, end: Math.min(start + stepMs, now) };
  });
}

/**
 * Quality per bucket of rows (any order; rows outside the buckets are left out). `predictions[i]`, when given, is
 * how many predictions bucket `i` holds (rows may then be only those with an outcome); otherwise its rows count.
 */
export function bucketQuality(rows: readonly JoinedPrediction[], spec: FeedbackSpec, buckets: readonly QualityBucket[], predictions?: readonly number[]): QualityPoint[] {
  const grouped = buckets.map((): JoinedPrediction[] => []);
  const first = buckets[0]?.start ?? 0;
  const stepMs = buckets.length > 1 ? (buckets[1] as QualityBucket).start - first : Number.POSITIVE_INFINITY;
  for (const row of rows) {
    const at = Date.parse(row.at);
    // Every bucket but the last is `stepMs` long, so the index is arithmetic; the last bucket's end is checked.
    const index = Math.floor((at - first) / stepMs);
    const bucket = buckets[index];
    if (bucket === undefined || at < bucket.start || at >= bucket.end) continue;
    (grouped[index] as JoinedPrediction[]).push(row);
  }
  return buckets.map((bucket, i) => {
    const quality = computeQuality(grouped[i] as JoinedPrediction[], spec, predictions?.[i]);
    return {
      start: new Date(bucket.start).toISOString(),
      end: new Date(bucket.end).toISOString(),
      predictions: quality.predictions,
      outcomes: quality.outcomes,
      coverage: quality.coverage,
      metrics: quality.metrics,
    };
  });
}

/** The metric a dashboard plots first: the first one the version's thresholds watch, else its task's first metric. */
export function primaryMetricOf(spec: FeedbackSpec): string {
  const watched = spec.thresholds.find((t) => t.metric !== "coverage" && t.metric !== "error_rate");
  if (watched !== undefined) return watched.metric;
  return spec.task === "regression" ? REGRESSION_METRICS[0] : CLASSIFICATION_METRICS[0];
}
