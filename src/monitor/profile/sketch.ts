import { DDSketch } from "@datadog/sketches-js";
import { MlshipError } from "../../core/index.js";

/** Relative accuracy of every quantile sketch: a quantile is within 1% of a value at the requested rank. */
export const SKETCH_RELATIVE_ACCURACY = 0.01;

/** The quantiles a numeric profile reports, by key. */
export const PROFILE_QUANTILES: ReadonlyArray<readonly [string, number]> = [
  ["p1", 0.01],
  ["p5", 0.05],
  ["p25", 0.25],
  ["p50", 0.5],
  ["p75", 0.75],
  ["p95", 0.95],
  ["p99", 0.99],
];

/** The sketch type as `fromProto` returns it (a base class of DDSketch with the same fields and methods). */
export type QuantileSketch = Pick<
  DDSketch,
  "accept" | "getValueAtQuantile" | "toProto" | "store" | "negativeStore" | "zeroCount" | "count" | "sum" | "min" | "max" | "mapping"
>;

export function newSketch(): QuantileSketch {
  return new DDSketch({ relativeAccuracy: SKETCH_RELATIVE_ACCURACY });
}

export function encodeSketch(sketch: QuantileSketch): string {
  return Buffer.from(sketch.toProto()).toString("base64");
}

/** Decodes a base64 protobuf sketch. The protobuf form keeps the bins only, so its min/max/sum are not meaningful. */
export function decodeSketch(base64: string, column: string): QuantileSketch {
  try {
    return DDSketch.fromProto(Buffer.from(base64, "base64"));
  } catch (error) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `column "${column}": the stored quantile sketch cannot be decoded`, {
      field: column,
      cause: error,
    });
  }
}

/**
 * Adds `source` into `target`. Written out here because DDSketch#merge of sketches-js 2.1 merges the positive bins
 * only and silently drops the negative ones.
 */
export function mergeSketchInto(target: QuantileSketch, source: QuantileSketch, column: string): void {
  if (target.mapping.gamma !== source.mapping.gamma) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `column "${column}": the quantile sketches have different accuracies`, {
      field: column,
    });
  }
  if (source.count === 0) return;
  target.store.merge(source.store);
  target.negativeStore.merge(source.negativeStore);
  target.zeroCount += source.zeroCount;
  target.count += source.count;
  target.sum += source.sum;
  target.min = Math.min(target.min, source.min);
  target.max = Math.max(target.max, source.max);
}

export function sketchQuantiles(sketch: QuantileSketch): Record<string, number> {
  const quantiles: Record<string, number> = {};
  if (sketch.count === 0) return quantiles;
  for (const [key, q] of PROFILE_QUANTILES) quantiles[key] = sketch.getValueAtQuantile(q);
  return quantiles;
}
