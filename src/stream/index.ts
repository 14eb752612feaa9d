/**
 * Streaming prediction (issue 7): micro-batch scoring from a folder or NATS JetStream, schema enforcement,
 * event-time aggregations and a stream-stream join, with exactly-once effects in idempotent sinks.
 */
export type * from "./types.js";
export { startStream, deadLetterRow, predictionRow, featureColumns, feedbackOutcomes, modelSchema } from "./engine.js";
export type { EngineScoredRecord, StartStreamOptions, StreamDeps, StreamHandle } from "./engine.js";
export { createStreamMetrics } from "./metrics.js";
export { DEFAULT_INSTANCE, DEFAULT_STATUS_HEARTBEAT_MS, describeTrigger, STALE_HEARTBEATS, staleAfterMs, StreamStatusReporter, StreamStatusStore } from "./status.js";
export type { StatusBatch, StreamState, StreamStatusReporterOptions, StreamStatusTable } from "./status.js";
export { streamRoutes } from "./http.js";
export type { StreamRoutesOptions } from "./http.js";
export type { BatchObservation, StreamMetrics } from "./metrics.js";
export { loadStreamConfig, parseStreamConfig, parseDurationMs } from "./config.js";
export type { StreamConfigOptions } from "./config.js";
export { compileSchema, effectiveFields } from "./schema.js";
export type { CompiledSchema, SchemaResult } from "./schema.js";
export { Checkpoint, writeFileAtomic } from "./checkpoint.js";
export type { CheckpointData, CheckpointOptions } from "./checkpoint.js";
export { createStreamSource, createFolderSource, createNatsSource } from "./sources/index.js";
export type { CreateSourceOptions } from "./sources/index.js";
export { createStreamSink } from "./sinks/index.js";
export { compileFieldPath } from "./fields.js";
export { WindowAggregation } from "./aggregate.js";
export { StreamJoin } from "./join.js";
