/**
 * Model optimization: int8 quantization (dynamic, static QDQ), fp16 conversion and onnxruntime graph optimization
 * of ONNX models, written in TypeScript on a full ONNX protobuf decoder/encoder, with a report (size, latency,
 * accuracy, agreement) and an accuracy gate. `optimizeVersion` makes a registry version of the result with its
 * lineage. See docs/optimize.md.
 */
export { ONNX_PROTO } from "./onnx-schema.js";
export {
  ATTR,
  DT,
  NameScope,
  decodeModel,
  defaultOpset,
  encodeModel,
  floatData,
  num,
  requireOpset,
} from "./model.js";
export type { Int64, OnnxAttribute, OnnxGraph, OnnxModel, OnnxNode, OnnxTensor, OnnxValueInfo } from "./model.js";
export { quantizeDynamic, quantizeWeight, initializerBytes } from "./quantize.js";
export type { DynamicQuantizeOptions, QuantizeSummary } from "./quantize.js";
export { activationRange, quantizeStatic, uint8Params } from "./static.js";
export type { CalibrationMethod, StaticQuantizeOptions } from "./static.js";
export { FP16_KEEP_FLOAT32, convertFp16 } from "./fp16.js";
export type { Fp16Options, Fp16Summary } from "./fp16.js";
export {
  OPTIMIZE_LEVELS,
  agreement,
  inputInfo,
  latencyP50,
  openSession,
  predict,
  quality,
  readValidationCsv,
  rowWidth,
  saveOptimizedModel,
  servingSessionOptions,
} from "./evaluate.js";
export type { Agreement, InputInfo, OptimizeLevel, Predictions, Quality, ValidationSet } from "./evaluate.js";
export { measure, methodName, optimizeModel, reportLines } from "./optimize.js";
export type { MeasureOptions, ModelMeasure, OptimizeReport, OptimizeResult, OptimizeSpec } from "./optimize.js";
export { checkOptimizeOptions, derivedBy, optimizeVersion } from "./version.js";
export type { OptimizeVersionDeps, OptimizeVersionOptions, OptimizeVersionResult } from "./version.js";
