export type * from "./types.js";
export {
  checkPackageFiles,
  checkServingSettings,
  defaultAs,
  EXAMPLE_KEYS,
  loadPackage,
  MANIFEST_FILE,
  parseManifest,
  RESIZE_KERNELS,
  stringifyManifest,
  SUPPORTED_FLAVORS,
  trailingWidth,
  validateManifest,
  writePackage,
} from "./manifest.js";
export type { LoadPackageOptions } from "./manifest.js";
export { inspectOnnx, readOnnxHeader } from "./onnx.js";
export type { OnnxHeader } from "./onnx.js";
export { checkSignatureAgainstGraph, columnsFromCsv, detectSource, importModel, sha256File } from "./import.js";
export type { SourceKind, SparkClassOption } from "./import.js";
export { checkSparkSignature, copySparkDirectory, fromSpark, SPARKML_FLAVOR, sparkModelClass } from "./spark.js";
export type { SparkImportOptions } from "./spark.js";
export { MLMODEL_FILE, mlflowTime } from "./mlflow.js";
export { exportMlflowModel, MLFLOW_FORMAT_VERSION } from "./mlflow-export.js";
export { applyPostprocess } from "./postprocess.js";
export { areaResize, decodeImage, MAX_IMAGE_PIXELS } from "./image.js";
export { applyTabularPreprocess, parseNumber } from "./tabular.js";
export { parseCsv } from "./csv.js";
export { DECLARED_TYPES, DRIFT_METHODS, MONITOR_DEFAULTS, configFail, defaultMonitorConfig, loadMonitorConfigFile, monitorConfigToPlain, parseMonitorConfig } from "./monitor-config.js";
export type * from "./monitor-config.js";
export type { CsvTable } from "./csv.js";
export { FEEDBACK_TASKS, INPUT_LOG_MODES, QUALITY_METRICS } from "./feedback-config.js";
export type * from "./feedback-config.js";
export { checkFeedbackOutputs, checkFeedbackSection, DEFAULT_THRESHOLD_WINDOW, feedbackSectionPlain, parseThreshold, parseThresholdText, thresholdText } from "./feedback-section.js";
export type { ThresholdFail } from "./feedback-section.js";
export { outputNames } from "./manifest.js";
export { buildOnnxModel, ONNX_DATA_TYPE, writeOnnxModel } from "./onnx-build.js";
export type {
  AttrValue as OnnxAttrValue,
  ModelSpec as OnnxModelSpec,
  NodeSpec as OnnxNodeSpec,
  TensorValue as OnnxTensorValue,
  ValueSpec as OnnxValueSpec,
} from "./onnx-build.js";
export {
  buildWrapperPackage,
  initWrapperPackage,
  readWrapperManifest,
  typecheckWrapper,
  WRAPPER_EXTERNALS,
  WRAPPER_TEMPLATES,
  wrapperBundleStale,
  wrapperModulePath,
  wrapperTemplateDir,
} from "./wrapper-build.js";
export type { WrapperBuildResult, WrapperInitOptions, WrapperInitResult, WrapperManifestInfo, WrapperTemplate } from "./wrapper-build.js";
