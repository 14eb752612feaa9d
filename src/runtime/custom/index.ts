export { CustomRuntime, createCustomRuntime } from "./custom-runtime.js";
export type { CustomProcessStats, CustomRuntimeOptions } from "./custom-runtime.js";
export { DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_MS, customLimits } from "./wrapper-process.js";
export { feedsToRows, rowsToTensors, RowsError } from "./rows.js";
export { WrapperInputError } from "./wrapper.js";
export type { ModelWrapper, WrapperContext, WrapperLogger, WrapperOnnxSession, WrapperRow } from "./wrapper.js";
