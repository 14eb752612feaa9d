export { createScoringService, runtimeKey } from "./service.js";
export { formatMlflowResponse, formatV2Response, fromFloat16Bits, tensorValues, v2TensorMetadata } from "./format.js";
export type { JsonScalar, V2InferResponse, V2OutputTensor } from "./format.js";
export { MLFLOW_FORMATS } from "./mlflow-input.js";
export { postprocessOutputSpecs } from "./context.js";
export { toFloat16Bits } from "./values.js";
export type * from "./types.js";
