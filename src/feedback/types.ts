/**
 * The feedback loop's contract (issue 5): the prediction log, outcomes and business events, and live quality.
 * Storage lives in the `prediction_log`, `outcomes` and `business_events` tables (migration 0004_feedback), with
 * `prediction_versions` (0010) summing up which versions the log holds and when.
 */
import type { Alert } from "../monitor/index.js";
import type { FeedbackTask, InputLogMode, QualityThreshold } from "../package/index.js";
import type { QualitySeriesResponse } from "../ui/contract.js";

export type { InputLogMode, QualityThreshold, ThresholdOp } from "../package/index.js";
export type Task = FeedbackTask;

/**
 * Who answered a request when a rollout is on: the champion, the challenger (canary or A/B arm), or a shadow
 * copy the caller never saw. `null` on predictions made outside any rollout.
 */
export type Variant = "champion" | "challenger" | "shadow";

/**
 * What the feedback loop knows about a model version's outputs: its task and which outputs carry the prediction and
 * the class probabilities. From the package's `feedback:` section (docs/model-package.md), completed by detection
 * from the signature and post-processing when fields are missing (`feedbackSpecOf`).
 */
export interface FeedbackSpec {
  task: Task;
  /** Output holding the predicted label (classification) or value (regression), one per row. */
  predictionOutput: string;
  /** Output holding class probabilities `[rows, K]` (classification), if the model has one. */
  probabilityOutput?: string;
  /**
   * Class labels in probability-column order (classification). Actuals may be posted as the label or as its
   * index; both are normalised to the label text.
   */
  labels?: string[];
  /** The positive class of binary precision, recall, F1 and ROC AUC. Default `labels[1]`. */
  positiveLabel?: string;
  inputs: InputLogMode;
  /** Share of predictions whose inputs are kept in full when `inputs` is `sampled` (0..1). Default 0.1. */
  sampleRate: number;
  thresholds: QualityThreshold[];
}

/** One logged prediction row (a request with 32 rows logs 32 of these, row 0..31). */
export interface PredictionRecord {
  requestId: string;
  row: number;
  model: string;
  version: number;
  variant: Variant | null;
  rolloutId: string | null;
  /** The caller's business key (`X-Mlship-Key`, `key` in the library options), when given. */
  key: string | null;
  /** When the prediction was made (ISO-8601 UTC). */
  at: string;
  protocol: string | null;
  /** The row's inputs by column (tabular) or input name, as JSON text; null when hashed or not logged. */
  inputs: string | null;
  /** sha256 (hex) of the row's inputs JSON, for `hashed` and unsampled `sampled` rows; null otherwise. */
  inputsHash: string | null;
  /** The row's outputs by name, as JSON text. */
  outputs: string;
  /** The predicted label (text) or value (number) the spec picks out; null when the spec could not read it. */
  prediction: string | number | null;
  /** Class probabilities in `labels` order (classification with a probability output). */
  scores: number[] | null;
  latencyMs: number;
}

/** A logged prediction with the outcome joined to it, as quality reads it back. */
export interface JoinedPrediction {
  requestId: string;
  row: number;
  model: string;
  version: number;
  variant: Variant | null;
  at: string;
  prediction: string | number | null;
  scores: number[] | null;
  /** The actual label (text) or value (number); null when no outcome has been joined. */
  actual: string | number | null;
  actualAt: string | null;
}

/** One outcome as posted (`POST /v1/feedback`, `mlship feedback import`, a stream): by request id, or by model and key. */
export interface OutcomeInput {
  requestId?: string;
  /** Row of a multi-row request. Default 0. */
  row?: number;
  model?: string;
  key?: string;
  /** The true label (string, or class index) or value (number). */
  actual: string | number | boolean;
  /** When the outcome happened (ISO-8601, or epoch seconds/milliseconds). Default: when it was received. */
  eventTime?: string | number;
}

export type OutcomeStatus = "pending" | "matched" | "late" | "unmatched";

/** A business event the application posts (a click, a conversion), tied to a prediction like an outcome. */
export interface BusinessEventInput {
  /** Idempotency key: a repost with the same id is ignored. */
  eventId?: string;
  name: string;
  /** Default 1 (a count); a number for amounts. */
  value?: number;
  requestId?: string;
  row?: number;
  model?: string;
  key?: string;
  eventTime?: string | number;
}

/** A rejected item of a feedback or events post: which item, which field, why. */
export interface FeedbackRejection {
  index: number;
  field: string;
  message: string;
}

/** The answer to a feedback (or events) post: reply 202 with these counts. */
export interface IngestResult {
  /** Items stored (new or replacing an earlier post of the same outcome). */
  accepted: number;
  /** Of those, joined to a logged prediction now. */
  matched: number;
  /** Stored but not joined yet (the prediction may still be in the log's buffer); retried until the horizon. */
  pending: number;
  /** Arrived after the horizon of their prediction: kept and counted, not used for quality. */
  late: number;
  rejected: FeedbackRejection[];
}

/** Counts of the join, for `/metrics` and status. */
export interface JoinStats {
  pending: number;
  matched: number;
  late: number;
  unmatched: number;
}

/** The trailing window a quality report covers. */
export interface QualityWindow {
  size: string;
  start: string;
  end: string;
}

export interface ConfusionMatrix {
  /** Row and column labels: rows are actual classes, columns predicted ones. */
  labels: string[];
  matrix: number[][];
}

/** Totals of one business event name in a window, for one version. */
export interface EventCounter {
  /** Events tied to this version's predictions in the window. */
  count: number;
  /** Sum of their values. */
  sum: number;
  /** count / predictions in the window. */
  rate: number;
}

/**
 * Live quality of one model version (and, during a rollout, one variant) over one trailing window. Metric names:
 * classification `accuracy`, `precision`, `recall`, `f1`, `roc_auc`, `log_loss`; regression `mae`, `rmse`, `r2`,
 * `mape`; both `coverage` and `error_rate` (failed requests / requests, from the request metrics when known).
 * A metric that cannot be computed (no outcomes, one class only for AUC) is null.
 */
export interface QualityReport {
  model: string;
  version: number;
  /** Set when the report is restricted to one variant of a rollout. */
  variant?: Variant;
  task: Task;
  window: QualityWindow;
  /** Predictions (rows) logged in the window. */
  predictions: number;
  /** Of those, with an outcome joined. */
  outcomes: number;
  /** outcomes / predictions (label coverage); null when there were no predictions. */
  coverage: number | null;
  metrics: Record<string, number | null>;
  confusion?: ConfusionMatrix;
  /** Business counters by event name. */
  events: Record<string, EventCounter>;
}

/** A threshold judged on a report. */
export interface ThresholdResult {
  threshold: QualityThreshold;
  /** The metric's value, null when it could not be computed. */
  observed: number | null;
  outcomes: number;
  /** True when the alert condition holds with enough outcomes. */
  breached: boolean;
  /** True when there were fewer than `minOutcomes` outcomes (not judged). */
  insufficient: boolean;
}

/** Options of the outcome join. */
export interface JoinOptions {
  /**
   * How long after a prediction its outcome may arrive (event time - prediction time) and still be joined;
   * later ones are kept as `late`. Config `feedback.horizon`.
   */
  horizonMs: number;
  /**
   * How long an outcome whose prediction is not (yet) in the log stays `pending` (retried by `joinPending`) before
   * it is marked `unmatched`. Config `feedback.pendingTimeout`.
   */
  pendingMs: number;
  now?: Date;
}

/** Which logged predictions a query covers: one version (optionally one variant) in [start, end) of prediction time. */
export interface PredictionQuery {
  model: string;
  version: number;
  variant?: Variant;
  /** ISO-8601, inclusive. */
  start: string;
  /** ISO-8601, exclusive. */
  end: string;
  /**
   * Only rows whose outcome has arrived: what quality needs, and a bounded read where the whole range (a day of
   * traffic) would not fit in memory; count the predictions with `countPredictions`.
   */
  withOutcome?: boolean;
}

/** A logged prediction row with its inputs and outcome, as exported for retraining (`recentData`). */
export interface ExportedPrediction extends JoinedPrediction {
  key: string | null;
  inputs: Record<string, unknown> | null;
  outputs: Record<string, unknown>;
}

/**
 * Where predictions, outcomes and business events are kept (`SqlPredictionStore` over the SQL store, SQLite or
 * PostgreSQL). The join of outcomes with predictions happens here, in SQL transactions, so several replicas can
 * post outcomes at once without double counting.
 */
export interface PredictionStore {
  /** Inserts rows; a row already logged (same request id, row, model and version) is ignored. Returns rows inserted. */
  insertPredictions(records: readonly PredictionRecord[]): Promise<number>;
  /**
   * Validates, stores (upsert on (request_id,row) or (model,key)) and joins outcomes. Invalid items are rejected
   * one by one (naming the field), the others stored.
   */
  ingestOutcomes(items: readonly unknown[], options: JoinOptions): Promise<IngestResult>;
  /** The same for business events (idempotent on `event_id`). */
  ingestEvents(items: readonly unknown[], options: JoinOptions): Promise<IngestResult>;
  /** Retries pending outcomes and events against the predictions logged since; ages out the ones past `pendingMs`. */
  joinPending(options: JoinOptions): Promise<JoinStats>;
  /** Logged predictions of a version (variant) in the range, with their joined outcomes (null when none). */
  joined(query: PredictionQuery): Promise<JoinedPrediction[]>;
  /** How many predictions of the version (variant) were logged in the range, counted in the store. */
  countPredictions(query: PredictionQuery): Promise<number>;
  /** Business events tied to the version's predictions in the range, by name. */
  eventTotals(query: PredictionQuery): Promise<Record<string, { count: number; sum: number }>>;
  /** Outcomes and events by status. */
  joinStats(): Promise<{ outcomes: JoinStats; events: JoinStats }>;
  /** Logged rows with inputs, outputs and outcomes (oldest first), e.g. the recent data handed to a retraining hook. */
  exportPredictions(query: Omit<PredictionQuery, "version"> & { version?: number; withOutcomeOnly?: boolean; limit?: number }): AsyncIterable<ExportedPrediction>;
  /** Model versions (and variants) with predictions logged in [start, end), for evaluation loops. */
  activeVersions(start: string, end: string): Promise<{ model: string; version: number; variants: (Variant | null)[] }[]>;
  /** Predictions logged per variant of a rollout in [start, end) (all time when unset). */
  variantCounts(rolloutId: string, start?: string, end?: string): Promise<Partial<Record<Variant, number>>>;
  /** Deletes predictions (and their outcomes and events) made before `before`; returns rows deleted. */
  prune(before: Date): Promise<number>;
}

/** Counters of the prediction log, for `/metrics` and status. */
export interface PredictionLogStats {
  /** Rows handed to the logger. */
  received: number;
  /** Rows written to the store. */
  written: number;
  /** Rows waiting in memory. */
  buffered: number;
  /** Rows written to spill files because the store was slow or down. */
  spilled: number;
  /** Spilled rows written back to the store. */
  replayed: number;
  /** Rows in spill files now. */
  spillBacklog: number;
  /** Rows dropped by policy (memory buffer full and spilling off or the spill folder full), by reason. */
  dropped: Record<string, number>;
  /** Failed store writes (each one spilled its batch). */
  storeErrors: number;
}

/** Quality of one version over one window, as `FeedbackService.quality` computes it. */
export interface QualityQuery {
  model: string;
  version: number;
  variant?: Variant;
  /** Trailing window size label, e.g. `1h`, `1d`. */
  window: string;
  /** End of the window; default now. */
  now?: Date;
}

/** Quality over time of a model: one version, or every version with predictions in the span. */
export interface QualitySeriesQuery {
  model: string;
  version?: number;
  /** Trailing span, default `1d`; bucket size, default `1h` (size labels as `window`). */
  range?: string;
  step?: string;
  /** End of the range; default now. */
  now?: Date;
}

/** The live feedback loop of a server or process: quality on demand and on a timer (thresholds, metrics). */
export interface FeedbackService {
  readonly store: PredictionStore;
  /** Live quality of one version (variant) over one trailing window. */
  quality(query: QualityQuery): Promise<QualityReport>;
  /** Quality of every version with predictions in the window (and each variant of an active rollout). */
  qualityAll(model: string, window: string, now?: Date): Promise<QualityReport[]>;
  /** Quality per bucket of `step` over the trailing `range`, per version and variant, with whole-range reports (`series.ts`). */
  qualitySeries(query: QualitySeriesQuery): Promise<QualitySeriesResponse>;
  /** Outcome ingestion with the configured horizon. */
  ingestOutcomes(items: readonly unknown[]): Promise<IngestResult>;
  ingestEvents(items: readonly unknown[]): Promise<IngestResult>;
  /** Judges every version's thresholds now and hands breaches to the alerter; returns the results. */
  evaluate(now?: Date): Promise<{ model: string; version: number; results: ThresholdResult[] }[]>;
  /** Called with every quality alert that fires (after the alerter's cool-down): the retraining trigger listens here. */
  onAlert(listener: (alerts: readonly QualityAlert[]) => void): () => void;
  /** Stops timers and flushes the prediction log. */
  close(): Promise<void>;
}

/** A quality alert: a monitoring `Alert` of kind `quality`, through the same channels (log, gauge, webhook). */
export interface QualityAlert extends Alert {
  kind: "quality";
  window: QualityWindow;
  /** The metric and the outcomes it was measured on. */
  metric: string;
  outcomes: number;
}
