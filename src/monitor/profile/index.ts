export { DatasetProfiler, inferKind, mergeProfiles, profileTable } from "./dataset.js";
export type { MergeOptions, ProfileOptions } from "./dataset.js";
export { DEFAULT_SAMPLE_SIZE, DEFAULT_SEED, DISTINCT_CAP, NumericProfiler, chanMerge, mergeNumericProfiles } from "./numeric.js";
export type { NumericProfilerOptions } from "./numeric.js";
export { CategoricalProfiler, DEFAULT_TOP_K, categoryKey, mergeCategoricalProfiles } from "./categorical.js";
export { addToHistogram, binIndex, doaneEdges, emptyHistogram, histogramOn, mergeHistograms, sameEdges } from "./histogram.js";
export { Reservoir, SeededRandom, mergeSamples } from "./reservoir.js";
export {
  PROFILE_QUANTILES,
  SKETCH_RELATIVE_ACCURACY,
  decodeSketch,
  encodeSketch,
  mergeSketchInto,
  newSketch,
  sketchQuantiles,
} from "./sketch.js";
export type { QuantileSketch } from "./sketch.js";
