export type * from "./types.js";
export { DEFAULT_CHUNK_ROWS, idText, inputFormatOf, openRowSource, shardOf } from "./readers.js";
export type { BatchRowSource, RowProblem, SourceChunk } from "./readers.js";
export { checkTableName, DEFAULT_PREDICTIONS_TABLE, describeTarget, openSink, PARQUET_ROW_GROUP_ROWS } from "./sinks.js";
export type { OpenSinkOptions, StoredPrediction } from "./sinks.js";
export { RunStore, STALE_HEARTBEAT_MS } from "./runs.js";
export type { ListRunsOptions, ResumableQuery, RunCounters, StartRunInput } from "./runs.js";
export { runBatch } from "./runner.js";
export type { RunBatchOptions } from "./runner.js";
export { progressReporter, runSummary } from "./progress.js";
export type { ProgressReporterOptions } from "./progress.js";
export { lookupPredictions, LOOKUP_CHUNK_IDS, LOOKUP_POOL_SIZE, openLookupDatabase, predictionTableName } from "./lookup.js";
export type { BatchPrediction, LookupDatabase, LookupOptions, PredictionSource } from "./lookup.js";
export { BATCH_FRESHNESS_METRICS, batchFreshness, batchFreshnessMetrics, batchHealth } from "./freshness.js";
export type { BatchFreshness, BatchFreshnessMetricsOptions, BatchFreshnessOptions, BatchHealth, LastRun, LastSuccess } from "./freshness.js";
export { batchFreshnessAlerts, batchRoutes, MAX_LOOKUP_IDS } from "./http.js";
export type { BatchRoutesOptions } from "./http.js";
export { failedRunOf, isFileTarget, scoreJob } from "./job.js";
export type { ScoreJobDeps, ScoreJobOptions } from "./job.js";
export {
  BatchScheduler,
  DEFAULT_CHECK_MS,
  healthOf,
  lateGraceMs,
  lockName,
  maxAgeFor,
  MIN_LATE_GRACE_MS,
  nextFire,
  SCHEDULE_LOCK_TTL_MS,
  SCHEDULE_MAX_AGE_CACHE_MS,
  scheduleAlerts,
  ScheduledMaxAges,
  scheduleModel,
  ScheduleStore,
  scheduleTargetKey,
  validateSchedule,
} from "./schedule.js";
export type { AppliedMaxAge, BatchSchedule, BatchSchedulerOptions, ScheduledMaxAgesOptions, ScheduleHealth, ScheduleInput, ScheduleLastRun } from "./schedule.js";
