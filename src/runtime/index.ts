/**
 * Model execution. `createOnnxRuntime()` gives the ONNX flavor and `createSparkmlRuntime()` the Spark ML one (same
 * contract), each on a pool of worker threads; `createCustomRuntime()` runs custom wrappers, one child process per
 * loaded version (docs/custom-models.md). Build one of each per process in app.ts and `close()` it on shutdown. `LoadedModel.run` validates feeds against the model's inputs first
 * (INPUT_MISSING / _DTYPE / _SHAPE / _INVALID, field = input name), transfers the feeds' typed arrays to a worker
 * (they are detached afterwards) and returns core Tensors in ORT's storage: int64 as BigInt64Array, bool as
 * Uint8Array 0/1, float16 as raw Uint16 bits. Converting them to JSON is the protocol layer's job (`tensorToList`).
 */
export type * from "./types.js";
export { OnnxRuntime, createOnnxRuntime } from "./onnx/index.js";
export type { OnnxRuntimeOptions } from "./onnx/index.js";
export {
  SparkmlRuntime, createSparkmlRuntime, loadSparkModel, readSparkMetadata, sparkColumnTensorSpec, supportedSparkClasses,
} from "./sparkml/index.js";
export type { LoadSparkModelOptions, SparkModel, SparkmlRuntimeOptions } from "./sparkml/index.js";
export { CustomRuntime, createCustomRuntime, customLimits, DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_MS, WrapperInputError } from "./custom/index.js";
export type {
  CustomProcessStats, CustomRuntimeOptions, ModelWrapper, WrapperContext, WrapperLogger, WrapperOnnxSession, WrapperRow,
} from "./custom/index.js";
export { WorkerPool, serveWorker, siblingWorkerUrl, workerPayload } from "./pool/index.js";
export type {
  ModelSignature, PoolRunOptions, PoolStats, SessionOpener, WorkerPoolOptions, WorkerSession, WorkerStats,
} from "./pool/index.js";
export { formatShape, validateFeeds, validateOutputNames } from "./validate.js";
