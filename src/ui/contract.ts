/**
 * The read API the dashboard (`/ui`) is built on, as TypeScript types shared by the server routes that answer it and
 * the browser code that reads it. Every route here is plain JSON under `/api/v1/`, usable without the UI (curl,
 * Grafana's JSON data source, scripts); docs/http-api.md documents them.
 *
 * Reads are open. Actions (every POST/PUT/DELETE under `/api/v1/`) need `Authorization: Bearer <admin token>` when
 * the server has one (`MLSHIP_ADMIN_TOKEN`); the UI offers actions only then.
 *
 * This file holds types only: the browser bundle imports it, so it must not import server code at runtime.
 */

import type { FeatureDrift, RuleResult } from "../monitor/index.js";
import type { AliasEvent, VersionRecord } from "../registry/index.js";

/** `record.manifest.metadata.lineage` of a version: the version it was derived from, what derived it, the settings. */
export type { PackageLineage } from "../package/index.js";

/** `GET /api/v1/server`: what the UI needs to know about the server before anything else. */
export interface ServerInfo {
  name: "mlship";
  version: string;
  startedAt: string;
  uptimeSeconds: number;
  /** `adminToken`: the server has an admin token, so actions are possible (with it) and refused without it. */
  auth: { adminToken: boolean };
  /** What `/invocations` serves, when set. */
  defaultModel: string | null;
  /** Areas wired in this server (the UI hides pages whose data cannot exist). */
  features: { liveMonitoring: boolean; predictionLog: boolean; rollouts: boolean; batch: boolean; streams: boolean };
  /** Seconds between traffic samples (`/api/v1/traffic`). */
  trafficIntervalSeconds: number;
  /** This server's id among replicas sharing one store (`server.replicaId`): which replica answered. */
  replicaId: string;
}

/** Request figures over a trailing span (the last `windowSeconds` of traffic samples). */
export interface TrafficTotals {
  windowSeconds: number;
  requests: number;
  requestsPerSecond: number;
  errors: number;
  /** errors / requests; 0 with no requests. */
  errorRate: number;
  p50Ms: number | null;
  p99Ms: number | null;
}

export interface VersionSummary {
  version: number;
  status: VersionRecord["status"];
  createdAt: string;
  createdBy: string;
  flavor: string;
  /** Aliases pointing at this version now. */
  aliases: string[];
  /** Loaded in this server's runtime: `ready`, `loading`, or null when not loaded. */
  loaded: "ready" | "loading" | null;
  traffic: TrafficTotals;
}

/** `GET /api/v1/models` -> `{ models: ModelSummary[] }`, sorted by name. */
export interface ModelSummary {
  name: string;
  description: string | null;
  tags: Record<string, string>;
  /** alias -> version */
  aliases: Record<string, number>;
  latestVersion: number;
  /** Newest first, archived included (status tells). */
  versions: VersionSummary[];
  /** All versions together. */
  traffic: TrafficTotals;
  /** The active rollout of the model, if any (id, mode, challenger version, percent). */
  rollout: { id: string; mode: string; champion: number; challenger: number; percent: number } | null;
}

/** `GET /api/v1/models/{name}`. */
export interface ModelDetail extends ModelSummary {
  createdAt: string;
  updatedAt: string;
  /** Every alias move of the model, newest first. */
  aliasHistory: AliasEvent[];
}

/** One file of a version's package. */
export interface PackageFile {
  /** Relative to the package root, `/`-separated. */
  path: string;
  bytes: number;
}

/** One entry of the audit log (`GET /api/v1/audit` has the same shape). */
export interface AuditEntryView {
  id: number | string;
  at: string;
  actor: string;
  action: string;
  model: string | null;
  version: number | null;
  rolloutId: string | null;
  reason: string | null;
  details: unknown;
}

/** `GET /api/v1/models/{name}/versions/{version}`. */
export interface VersionDetail {
  /** The registry record, manifest included (signature, metadata with params, metrics and lineage). */
  record: VersionRecord;
  files: PackageFile[];
  /** Effective serving settings (defaults <- package <- registry override). */
  settings: unknown;
  /** Alias moves that pointed to or away from this version, newest first. */
  aliasHistory: AliasEvent[];
  /** Audit entries of this version, newest first (at most 100). */
  audit: AuditEntryView[];
  loaded: "ready" | "loading" | null;
}

/** One traffic sample of one model version: rates over the interval that ends at `t`. */
export interface TrafficPoint {
  /** Epoch milliseconds of the end of the interval. */
  t: number;
  requestsPerSecond: number;
  rowsPerSecond: number;
  errorsPerSecond: number;
  /** Latency quantiles of the requests answered in the interval (from the histogram buckets); null without requests. */
  p50Ms: number | null;
  p99Ms: number | null;
  /** Mean rows per worker run (adaptive batching) in the interval; null without runs. */
  meanBatchSize: number | null;
  /** hits / (hits + misses) of the prediction cache in the interval; null without lookups. */
  cacheHitRate: number | null;
}

export interface TrafficSeries {
  model: string;
  version: string;
  points: TrafficPoint[];
}

/** `GET /api/v1/traffic?since=<epoch ms>&model=<name>` (both optional): samples newer than `since`, oldest first. */
export interface TrafficResponse {
  intervalSeconds: number;
  /** Epoch ms of the newest sample (pass it back as `since` to get only newer ones). */
  now: number;
  /** How far back samples are kept (seconds). */
  retentionSeconds: number;
  series: TrafficSeries[];
}

/** Binned distributions of one feature, reference against a current window, as shares (each sums to 1 or is empty). */
export interface HistogramOverlay {
  kind: "numeric" | "categorical";
  /** Numeric: the reference's bin edges (length = bins + 1). */
  edges?: number[];
  /** Categorical: the category of each bin (the reference's most frequent, then "other"). */
  categories?: string[];
  reference: number[];
  current: number[];
  /**
   * Numeric: shares of the current values below the first edge / above the last edge. They are already counted in
   * the first / last bin (so `current` sums to 1); these say how much of those bins lies outside the reference's range.
   */
  currentBelow?: number;
  currentAbove?: number;
  /** Numeric: the window was binned on other edges (the reference was re-profiled since), so `current` is its sample re-binned. */
  currentFromSample?: boolean;
}

export interface FeatureWindowPoint {
  /** Window start, ISO-8601. */
  start: string;
  /** Statistic (distance or test statistic) and the value compared with the threshold; null for windows without a verdict. */
  statistic: number | null;
  score: number | null;
  drifted: boolean | null;
}

export interface FeatureDriftSummary {
  feature: string;
  kind: "numeric" | "categorical";
  method: string;
  threshold: number;
  operator: "<" | ">=";
  /** One point per window, oldest first. */
  series: FeatureWindowPoint[];
  /** The newest window with a verdict, as computed (statistic, p-value, details). */
  latest: FeatureDrift | null;
  /** The drift kind over the windows (`none`, `sudden`, `gradual`, `incremental`, `periodic`, `temporary`, ...) with its evidence in words. */
  driftKind: { kind: string; evidence: string } | null;
  /** Reference against the newest window with data; null when either is missing. */
  histogram: HistogramOverlay | null;
}

/** `GET /api/v1/models/{name}/versions/{version}/monitor/summary?size=1h&limit=48`. */
export interface MonitorSummary {
  model: string;
  version: number;
  hasReference: boolean;
  /** The window size shown, and every size stored for this version. */
  size: string | null;
  sizes: string[];
  /** Oldest first. */
  windows: { start: string; end: string; rows: number; insufficient: boolean; datasetDrifted: boolean | null; share: number | null }[];
  features: FeatureDriftSummary[];
  /** Prediction drift: one entry per output column (`label`, `probabilities[1]`, ...). */
  predictions: FeatureDriftSummary[];
  /** Data-quality rule results of the newest window with data (passed ones too). */
  rules: RuleResult[];
  latestWindow: { start: string; end: string } | null;
}

/** One bucket of live quality. */
export interface QualityPoint {
  start: string;
  end: string;
  predictions: number;
  outcomes: number;
  /** outcomes / predictions; null without predictions. */
  coverage: number | null;
  /** accuracy, f1, roc_auc, ... or mae, rmse, r2, ...; null where a bucket has too few outcomes. */
  metrics: Record<string, number | null>;
}

export interface QualitySeries {
  version: number;
  variant: string | null;
  points: QualityPoint[];
}

/**
 * `GET /api/v1/models/{name}/quality/series?range=1d&step=1h[&version=N]`: quality per bucket of `step` over the
 * trailing `range`, per version (and rollout variant); `latest` holds the quality report over the whole range per
 * version (the shape of `GET /api/v1/models/{name}/quality`, with confusion matrix and business events).
 */
export interface QualitySeriesResponse {
  model: string;
  task: string | null;
  range: string;
  step: string;
  /** The metric to plot first (the model's feedback spec's primary metric). */
  primaryMetric: string | null;
  series: QualitySeries[];
  latest: unknown[];
}

/**
 * `GET /api/v1/batch/runs?model=&status=&limit=50` -> `{ runs: BatchRunView[] }`, newest first (`limit` 1..500;
 * `status` one of running, succeeded, failed, interrupted). One row of `batch_runs`.
 */
export interface BatchRunView {
  id: string;
  model: string;
  version: number;
  /** The reference given (`churn@production`). */
  ref: string;
  /** The input file's path. */
  input: string;
  /** The SQL table written; null for file targets (Parquet, JSON Lines: `target` is the path). */
  table: string | null;
  /** `sqlite` (the metadata store), a `postgres://` URL with the password redacted, or a file path. */
  target: string;
  status: "running" | "succeeded" | "failed" | "interrupted";
  startedAt: string;
  /** Moves with every chunk while the run goes. */
  heartbeatAt: string;
  endedAt: string | null;
  /** From the start to the end (to now while running). */
  durationSeconds: number;
  rowsIn: number;
  rowsOut: number;
  rowsRejected: number;
  /** Input rows per second over `durationSeconds`. */
  rowsPerSecond: number;
  error: string | null;
  /** The shard of the input the run scored (`--shard index/count`), null for the whole file. */
  shard: { index: number; count: number } | null;
  /** The schedule that started the run, null for a run started by hand. */
  schedule: string | null;
  /** `running` with no heartbeat for 30 s: its process was killed (`--resume` continues it). */
  stalled: boolean;
}

/** A row a run rejected (bad cell, missing id, refused by the model). `rowNumber` is 0-based among data rows. */
export interface BatchRejectView {
  rowNumber: number;
  rowId: string | null;
  field: string | null;
  reason: string;
}

/** `GET /api/v1/batch/runs/{id}`: the run, its settings and its first 100 rejected rows (`run.rowsRejected` counts all). */
export interface BatchRunDetail {
  run: BatchRunView;
  /** Chunk size, parallelism, input format, options. */
  settings: Record<string, unknown>;
  rejects: BatchRejectView[];
}

/**
 * `GET /api/v1/batch/freshness?model=&maxAge=` -> `{ now, maxAgeSeconds, freshness: BatchFreshnessView[] }`: per model
 * and table, the last successful run and how old it is (what `mlship batch status` shows), plus each scheduled target
 * that has no run yet. `maxAgeSeconds` at the top is the fallback max age (`maxAge`, else config `batch.maxAgeMs`).
 */
export interface BatchFreshnessView {
  model: string;
  /** The SQL table, or the file's path for Parquet/JSON Lines targets. */
  table: string;
  /** How many shards the latest run was one of; null when unsharded. */
  shards: number | null;
  /** When the last success ended (for sharded tables: the stalest shard's); null when none succeeded. */
  lastSuccessAt: string | null;
  lastSuccessVersion: number | null;
  /** Predictions the last success wrote (summed over shards). */
  lastSuccessRows: number | null;
  ageSeconds: number | null;
  /** The max age the table is judged by: its enabled schedule's (`maxAgeSchedule`), else the fallback. */
  maxAgeSeconds: number;
  maxAgeSchedule: string | null;
  /** The last success is older than the max age (false when none succeeded: `health` says so). */
  stale: boolean;
  /** As `mlship batch status`: `ok`, `failed` (a run failed since the last success), `stale`, `never succeeded`. */
  health: "ok" | "failed" | "stale" | "never succeeded";
  /** The most recent run, whatever its status; null for a scheduled target without runs. */
  lastRun: { id: string; version: number; status: BatchRunView["status"]; startedAt: string; endedAt: string | null } | null;
  /** The most recent run failed or was interrupted. */
  lastRunFailed: boolean;
  /** A run failed (or was interrupted) after the last success; a retry still running does not clear it. */
  failedSinceSuccess: boolean;
  lastError: string | null;
  /**
   * The schedule writing the model into the table (the one whose max age applies, else the first enabled one, else
   * the first): its next fire time after its last run started (in the past while owed) and whether it is late.
   */
  schedule: { name: string; cron: string; timezone: string | null; enabled: boolean; nextAt: string | null; late: boolean; lastStatus: string | null } | null;
}

/** `GET /api/v1/batch/freshness`. */
export interface BatchFreshnessResponse {
  now: string;
  maxAgeSeconds: number;
  freshness: BatchFreshnessView[];
}

/**
 * `GET /api/v1/streams` -> `{ streams: StreamStatusView[] }`: the stream jobs that reported to this store, one entry
 * per job name and instance (`mlship stream run --instance`), sorted by name then instance. Each process writes its
 * row at start, after every micro-batch, on a heartbeat while idle (every 5 s) and when it ends.
 * `GET /api/v1/streams/{name}[?instance=default]` -> one `StreamStatusView`.
 */
export interface StreamStatusView {
  name: string;
  /** `default` unless the process was started with `--instance`. */
  instance: string;
  /** The model reference the job scores with (an alias is followed every micro-batch). */
  model: string;
  /** The version the last micro-batch was scored by; null before the first. */
  version: number | null;
  state: "running" | "stopped" | "failed" | "completed";
  /** `running` with no heartbeat for `staleAfterSeconds`: the process is gone or stuck. */
  stale: boolean;
  /** 3 x the heartbeat interval, or 3 x the trigger interval when that is longer. */
  staleAfterSeconds: number;
  host: string;
  pid: number;
  /** `folder /data/in`, `nats ORDERS durable scorer`. */
  source: string;
  /** `processingTime 5000ms`, `availableNow`, `once`. */
  trigger: string;
  /** When this process started the job; the counts below are since then. */
  startedAt: string;
  heartbeatAt: string;
  /** When it stopped, completed or failed; null while running. */
  endedAt: string | null;
  lastBatchAt: string | null;
  lastBatchId: number | null;
  batches: number;
  inputRecords: number;
  outputRecords: number;
  /** Rates of the last micro-batch: input rows per second since the batch before, rows per second of its duration. */
  inputRowsPerSecond: number;
  processedRowsPerSecond: number;
  /** After the last micro-batch: messages waiting (NATS: pending and unacked) or files not yet processed (folder); null when unknown. */
  lag: number | null;
  deadLetters: number;
  lateRecords: number;
  /** Rows of state the operators hold (open windows' groups, buffered join records). */
  stateRecords: number;
  /** The lowest operator watermark (ISO-8601); null without operators or before any record. */
  watermark: string | null;
  /** `failed`: why. `running`: the error of a micro-batch being retried (cleared by the next success). */
  lastError: string | null;
}

/** `GET /api/v1/alerts` -> active alerts of every source and the most recent alert events of this server. */
export interface AlertView {
  id: string;
  source: "monitor" | "batch" | "feedback" | "rollout";
  kind: string;
  severity: "error" | "warning";
  model: string | null;
  version: number | null;
  /** The column (feature or model output) a monitoring alert is about; null for dataset-level and other alerts. */
  feature: string | null;
  /** The production window the finding was computed on (drift, rules, quality); null for batch alerts. */
  window: { size: string; start: string; end: string } | null;
  message: string;
  /** When it became active. */
  since: string;
  /** When the condition was last found (the newest finding). */
  at: string;
}

export interface AlertEventView {
  at: string;
  event: "fired" | "cleared";
  alert: AlertView;
}

export interface AlertsResponse {
  active: AlertView[];
  /** Newest first, at most 200. */
  recent: AlertEventView[];
}
