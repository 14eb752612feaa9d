export { createScoringService, runtimeKey } from "./service.js";
export {
  formatMlflowResponse, formatV2Response, fromFloat16Bits, JSON_OUTPUT_PARAMETERS, jsonOutputNames, jsonTextValue, tensorValues, v2TensorMetadata,
} from "./format.js";
export type { JsonScalar, V2InferResponse, V2OutputTensor } from "./format.js";
export { MLFLOW_FORMATS } from "./mlflow-input.js";
export { postprocessOutputSpecs } from "./context.js";
export { toFloat16Bits } from "./values.js";
export { parseJsonBody } from "./json-body.js";
export { newRequestId } from "./request-id.js";
export { decodeRaw, encodeRaw, RAW_ELEMENT_BYTES, splitLengthPrefixed } from "./raw.js";
export type * from "./types.js";
export { createPredictionCache, ExactMemo, MemoryPredictionCache, RedisPredictionCache, predictionKey } from "./cache/index.js";
export type { CachedPrediction, CacheErrorListener, CreateCacheOptions, ExactMemoOptions, MemoryCacheOptions, ModelIdentity, PredictionCache, RedisCacheOptions } from "./cache/index.js";
