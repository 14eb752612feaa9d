/**
 * The `mlship` library entry: `import { loadModel, mlshipPlugin, createMlship } from "mlship"`.
 */
export { loadModel, toScoringInput } from "./embedded.js";
export type {
  EmbeddedModel,
  LoadModelOptions,
  PredictInput,
  PredictOptions,
  PredictRecord,
  PredictTable,
  PredictTensors,
} from "./embedded.js";

export { createMlship, registerModel, mlshipPaths } from "./app.js";
export type { CreateMlshipOptions, Mlship, MlshipPaths, RegisterOptions } from "./app.js";

export { CONFIG_FILE_NAME, KEYS as CONFIG_KEYS, defaultConfig, loadConfig, loadConfigWithSources } from "./config/index.js";
export type { ConfigKey, LoadConfigOptions, LoadedConfig, LogLevel, MlshipConfig } from "./config/index.js";

export { ERROR_CODES, MlshipError, isMlshipError, toMlshipError, errorBody, mlflowErrorBody } from "./core/index.js";
export type { DType, ErrorCode, MlshipErrorOptions, Tensor, TensorData } from "./core/index.js";

export { parseModelRef, formatModelRef } from "./registry/index.js";
export type {
  AliasEvent,
  ModelRecord,
  ModelRef,
  Registry,
  ResolvedVersion,
  VersionRecord,
} from "./registry/index.js";

export type { Manifest, ModelPackage, Signature, TensorSpec, ColumnSpec } from "./package/index.js";

export { formatMlflowResponse, formatV2Response } from "./scoring/index.js";
export type {
  ModelMetadata,
  PublicSignature,
  ScoreOptions,
  ScoreResult,
  ScoringInput,
  ScoringService,
} from "./scoring/index.js";

export { adminTokenHook, buildServer, mlshipPlugin } from "./serve/index.js";

/** Function platforms (AWS Lambda and the like): see docs/serverless.md; `mlship/serverless` also exports a ready `handler`. */
export { createHandler } from "./serverless/handler.js";
export type { HttpEventV1, HttpEventV2, HttpResult, InvocationContext, PlainError, PlainEvent, ServerlessHandler, ServerlessOptions } from "./serverless/handler.js";

export { startFeedbackLoop, startPredictionLog, runStream } from "./app.js";
export type { FeedbackLoop, FeedbackLoopOptions } from "./app.js";

/** Writing ONNX models from JavaScript (e.g. a retraining hook that fits a linear model): see examples/feedback-loop. */
export { buildOnnxModel, writeOnnxModel, ONNX_DATA_TYPE } from "./package/index.js";
export type { OnnxModelSpec, OnnxValueSpec, OnnxNodeSpec, OnnxTensorValue, OnnxAttrValue, FeedbackConfig, QualityThreshold } from "./package/index.js";

export { feedbackRoutes, SqlPredictionStore } from "./feedback/index.js";
export type {
  FeedbackService,
  IngestResult,
  PredictionRecord,
  PredictionStore,
  QualityReport,
} from "./feedback/index.js";

export { rolloutRoutes } from "./rollout/index.js";
export type { AuditEntry, GateResult, Rollout, RolloutGuard, RolloutPolicy, RolloutService, RolloutStatus, RetrainContext } from "./rollout/index.js";

/** Streaming prediction (issue 7): `runStream(app, await loadStreamConfig("stream.yaml", { home }))`, see docs/streaming.md. */
export { createStreamMetrics, loadStreamConfig, parseStreamConfig, startStream } from "./stream/index.js";
export type {
  StartStreamOptions,
  StreamDeps,
  StreamHandle,
  StreamJobConfig,
  StreamMetrics,
  StreamProgress,
  StreamSummary,
} from "./stream/index.js";
