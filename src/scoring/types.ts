import type { ErrorCode, Logger, Tensor } from "../core/index.js";
import type { Manifest, ServingSettings, TensorSpec } from "../package/index.js";
import type { ModelRef, Registry, ResolvedVersion } from "../registry/index.js";
import type { LoadedModel, ModelRuntime } from "../runtime/index.js";
import type { ExactMemoOptions, PredictionCache } from "./cache/index.js";

export interface ScoringServiceOptions {
  registry: Registry;
  /** One runtime per flavor (`onnx`, ...), built by the composition root. */
  runtimes: Record<string, ModelRuntime>;
  logger?: Logger;
  /** How often (at most) the registry's change token is polled; cached resolutions live until it changes. Default 500 ms. */
  refreshMs?: number;
  /** How long a request waits for a version that is still loading before MLSHIP_ERR_MODEL_NOT_READY. Default 10000 ms. */
  loadWaitMs?: number;
  /** Retry-After (seconds) sent with MLSHIP_ERR_MODEL_NOT_READY. Default 1. */
  retryAfterSeconds?: number;
  /**
   * Default `batching.max_batch_size` (0 or 1 turns batching off by default), under `serving`, the package's
   * `serving` section and the registry override. Default 64.
   */
  maxBatchRows?: number;
  /**
   * Server-wide serving defaults (batching, max_queue, timeout_ms, max_request_rows); a version's package `serving` section and its
   * registry override win field by field.
   */
  serving?: ServingSettings;
  /** Inference workers behind the runtimes: bounds runs in flight and shares them fairly between versions. Default 1. */
  workers?: number;
  /** At most this many references' resolutions (found or not) are cached between registry changes. Default 10000. */
  maxCachedRefs?: number;
  /**
   * Poll the change token on a timer as well as on requests, so archived versions are unloaded even without
   * traffic. The timer is unref'd (it never keeps a process alive). Default true.
   */
  backgroundRefresh?: boolean;
  /**
   * Prediction cache (owned by the caller, who closes it). Versions whose `serving.cache.enabled` is false
   * bypass it. Unset: no cache.
   */
  cache?: PredictionCache;
  /** Entry lifetime when the version's `serving.cache.ttl_seconds` is unset. Default 300. */
  cacheTtlSeconds?: number;
  /**
   * Bounds of the in-process exact-body memo in front of `cache` (used for `json` inputs of versions that cache).
   * `maxEntries: 0` turns it off. Default 10000 entries, 16 MiB.
   */
  exactMemo?: ExactMemoOptions;
  /** Rollout traffic policy (see `setRouter`). */
  router?: TrafficRouter;
  /** Shadow copies in flight at most; beyond it they are dropped (counted). Default 64. */
  maxShadowInFlight?: number;
}

/** A resolved version whose model is loaded in its runtime. */
export interface ActiveModel {
  readonly name: string;
  readonly version: number;
  /** The alias that was followed, if any. */
  readonly alias: string | undefined;
  /** Runtime key: `name@version#digest`. */
  readonly key: string;
  readonly resolved: ResolvedVersion;
  readonly manifest: Manifest;
  readonly loaded: LoadedModel;
  /** Seconds the runtime took to load this version. */
  readonly loadSeconds: number;
}

/** The tensors a client sends and gets back, after pre-processing is folded in (image inputs are BYTES). */
export interface PublicSignature {
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

export interface ModelMetadata {
  name: string;
  /** The version this metadata describes. */
  version: number;
  alias: string | undefined;
  /** Non-archived version numbers of the model, ascending. */
  versions: number[];
  /** V2 platform name. */
  platform: string;
  signature: PublicSignature;
  /** Declared tabular columns, if any. */
  columns: string[] | undefined;
}

/**
 * A request payload in one of the protocols the pipeline understands. Transports only pick the kind; all
 * validation happens in scoring and names the field.
 */
export type ScoringInput =
  /**
   * Open Inference Protocol V2 JSON request body; `binary` holds the bytes that followed the JSON header under
   * the binary tensor extension (inputs with `parameters.binary_data_size` take their data from it, in order).
   */
  | { kind: "v2"; body: unknown; binary?: Uint8Array }
  /** MLflow scoring JSON body (`dataframe_split`, `dataframe_records`, `instances` or `inputs`, plus `params`). */
  | { kind: "mlflow"; body: unknown }
  /**
   * A V2 or MLflow JSON body as received (UTF-8 bytes), parsed by scoring. When the version caches, a body seen
   * before byte for byte is answered from the exact-body memo without being parsed (`ScoreResult.rendered`).
   */
  | { kind: "json"; protocol: "v2" | "mlflow"; bytes: Uint8Array }
  /** MLflow CSV body (header row = column names). */
  | { kind: "csv"; text: string }
  /** Rows as objects keyed by column (or input) name, as the embedded `predict(records)` passes them. */
  | { kind: "records"; records: readonly unknown[] }
  /** Tensors already typed (gRPC, library callers); checked against the signature. */
  | { kind: "tensors"; feeds: Record<string, Tensor> };

/** How MLflow responses lay out predictions: one object per row, or one nested array per output. */
export type Orientation = "records" | "columnar";

export interface ScoreOptions {
  /** Only these outputs are returned (V2 `outputs` in the body also restricts). */
  outputs?: string[];
  signal?: AbortSignal;
  /** A label for events and logs: `v2`, `mlflow`, `grpc`, `library`... */
  protocol?: string;
  /** Request id, echoed into the scoring event. */
  requestId?: string;
  /** The caller's business key (HTTP `X-Mlship-Key`, gRPC metadata `mlship-key`): logged, and outcomes may name it. */
  key?: string;
  /** Sticky routing during a rollout: the same key always lands on the same variant. Default `key`. */
  routingKey?: string;
  /**
   * Set by scoring itself on the copy a shadow rollout scores (never by transports): the request is not routed
   * again, and its event says `shadow`.
   */
  variant?: "shadow";
  /** With `variant`: the rollout that asked for the shadow copy. */
  rolloutId?: string;
}

/** Who answers a request that follows an alias with an active rollout. */
export interface TrafficDecision {
  rolloutId: string;
  /** The version that answers the caller. */
  version: number;
  variant: "champion" | "challenger";
  /** A version that also scores the request, logged only (shadow rollouts). */
  shadow?: number;
}

/**
 * Traffic policy over the registry's aliases (implemented by src/rollout). Consulted for every request that
 * resolved through an alias (a bare name follows `production`), never for a pinned version. Must be synchronous
 * and cheap: it runs on the hot path.
 */
export interface TrafficRouter {
  route(model: string, alias: string, routingKey: string | undefined): TrafficDecision | undefined;
}

export interface ScoreResult {
  model: string;
  version: number;
  alias: string | undefined;
  /** Named outputs after post-processing, in signature order then post-processing order. */
  outputs: Record<string, Tensor>;
  /** Batch size (first dimension of the inputs). */
  rows: number;
  orientation: Orientation;
  /** V2 request `id`, to echo. */
  id: string | undefined;
  /** V2 request `parameters` or MLflow `params` (accepted; no model uses them yet). */
  parameters: Record<string, unknown> | undefined;
  latencyMs: number;
  /** True when the outputs came from the prediction cache (the model did not run). */
  cached?: boolean;
  /** The request id the prediction was logged under: the caller's, or one scoring made up. */
  requestId: string;
  /** Set when a rollout routed the request: which variant answered, and the rollout. */
  variant?: "champion" | "challenger";
  /**
   * Outputs declared `content_type: json` (custom wrappers): string tensors of JSON texts. MLflow responses embed
   * them as parsed values; V2 sends them as BYTES with `parameters.content_type: "json"`.
   */
  jsonOutputs?: ReadonlySet<string>;
  rolloutId?: string;
  /**
   * Only for `json` inputs the exact-body memo holds: the transport's encoded responses for this body, by format
   * name. A transport that finds its format here sends those bytes; otherwise it may store what it encodes. The
   * result's `outputs` are then shared with the memo and must not be modified.
   */
  rendered?: Map<string, Uint8Array>;
}

/** One run sent to the runtime by a version's queue, for the batch-size and queue-wait histograms. */
export interface BatchInfo {
  model: string;
  version: number;
  /** Rows in the run. */
  rows: number;
  /** Requests merged into it. */
  requests: number;
  /** Seconds each request waited in the queue before the run was sent. */
  waits: number[];
}

/** A version's effective serving settings and where each value came from. */
export interface EffectiveSettings {
  model: string;
  version: number;
  settings: ServingSettings;
  /** Dotted field -> "default" | "package" | "registry". */
  sources: Record<string, "default" | "package" | "registry">;
}

/** Prediction cache counters, for metrics. */
export interface CacheStats {
  backend: string;
  /** Backend failures (the requests went on without the cache). */
  errors: number;
  /** Hits and misses per version that has used the cache. */
  versions: { model: string; version: number; hits: number; misses: number }[];
}

/** One event per scoring request, for monitoring and logs. `inputs`/`outputs` are shared, not copied. */
export interface ScoringEvent {
  model: string;
  version: number | null;
  alias: string | undefined;
  protocol: string | undefined;
  requestId: string | undefined;
  rows: number;
  latencyMs: number;
  ok: boolean;
  error?: { code: ErrorCode; message: string; field?: string };
  inputs?: Record<string, Tensor>;
  outputs?: Record<string, Tensor>;
  at: Date;
  /** The caller's business key, when given. */
  key?: string;
  /** Set when a rollout routed the request (or for its shadow copy). */
  variant?: "champion" | "challenger" | "shadow";
  rolloutId?: string;
}

export interface LoadEvent {
  model: string;
  version: number;
  key: string;
  seconds: number;
  ok: boolean;
  error?: { code: ErrorCode; message: string };
}

export interface LoadedInfo {
  model: string;
  version: number;
  key: string;
  state: "loading" | "ready";
  loadSeconds: number | undefined;
  /** Runs sent to the workers (a batch is one run) and the rows in them. */
  runs: number;
  rowsRun: number;
  /** Seconds the version's runs took from dispatch to answer, summed: its share of the worker pool's time. */
  busySeconds: number;
  /** Requests queued or running now. */
  queued: number;
}

export interface ScoringService {
  /** Resolves a reference (cached; re-checked against the registry's change token every `refreshMs`). */
  resolve(ref: string | ModelRef): Promise<ResolvedVersion>;
  /** Resolves and loads (once per version; concurrent callers share the load; bounded wait). */
  load(ref: string | ModelRef): Promise<ActiveModel>;
  /** Starts loading if needed and says whether the version is ready now (never waits for the load). */
  isReady(ref: string | ModelRef): Promise<boolean>;
  /** Public metadata of the resolved version (V2 model metadata). */
  metadata(ref: string | ModelRef): Promise<ModelMetadata>;
  /** Validates the payload against the signature, runs the model and post-processing. */
  score(ref: string | ModelRef, input: ScoringInput, options?: ScoreOptions): Promise<ScoreResult>;
  /** Registered model names (cached like resolutions). */
  modelNames(): Promise<string[]>;
  /** Whether the registry answers now. */
  registryReachable(): Promise<boolean>;
  /**
   * Whether this server should take traffic (readiness): the registry answers, or it does not but a loaded version
   * can still be served from the resolution cache. A registry outage must not take every replica out of the load
   * balancer at once while they can still answer.
   */
  servingReady(): Promise<boolean>;
  /** Versions this service has loaded or is loading. */
  loadedModels(): LoadedInfo[];
  /** Polls the change token now (ignores `refreshMs`); unloads versions that were archived. */
  refresh(): Promise<void>;
  onScored(listener: (event: ScoringEvent) => void): () => void;
  onLoaded(listener: (event: LoadEvent) => void): () => void;
  /** One event per run a version's queue sends (batched or not). */
  onBatch(listener: (event: BatchInfo) => void): () => void;
  /** Effective serving settings of a version (defaults <- package <- registry override), with each value's source. */
  settings(name: string, version: number): Promise<EffectiveSettings>;
  /** Prediction cache counters, or undefined when the service has no cache. */
  cacheStats(): CacheStats | undefined;
  /** Installs (or removes) the traffic router rollouts use; requests after this call are routed by it. */
  setRouter(router: TrafficRouter | undefined): void;
  /** Shadow copies scored, and dropped because too many were in flight. */
  shadowStats(): { scored: number; failed: number; dropped: number; inFlight: number };
  /** Stops the refresh timer. The runtimes belong to the caller and stay open. */
  close(): Promise<void>;
}

/** A tensor spec plus its V2 datatype, as the V2 metadata routes print it. */
export interface V2TensorMetadata {
  name: string;
  datatype: string;
  shape: number[];
}

