export { SparkmlRuntime, createSparkmlRuntime } from "./sparkml-runtime.js";
export type { SparkmlRuntimeOptions } from "./sparkml-runtime.js";
export { loadSparkModel, loadSparkStage, sparkStageLoaders, supportedSparkClasses } from "./model.js";
export type { LoadSparkModelOptions, SparkModel } from "./model.js";
export { readMetadata, readMetadata as readSparkMetadata, readParquetRows } from "./io.js";
export { frameFromTensors, tensorSpecOf, tensorSpecOf as sparkColumnTensorSpec, tensorsFromFrame } from "./frame.js";
export { PIPELINE_MODEL_CLASS } from "./pipeline.js";
export type * from "./types.js";
