export { OnnxRuntime, createOnnxRuntime } from "./onnx-runtime.js";
export type { OnnxRuntimeOptions } from "./onnx-runtime.js";
