import os from "node:os";

/**
 * The one configuration schema. Every key has a default, an optional `MLSHIP_*` variable and an optional CLI flag;
 * docs/config.md lists the same table (a test keeps them in step).
 */
export interface MlshipConfig {
  /** Folder for everything mlship keeps locally (absolute path). Default `./.mlship`. */
  readonly home: string;
  /**
   * Metadata store: `postgres://...` / `postgresql://...`, or `sqlite:<absolute file>`.
   * Default `sqlite:<home>/mlship.db`.
   */
  readonly store: string;
  /**
   * Where content-addressed model artifacts live: a folder (absolute path; default `<home>/artifacts`) or an
   * S3-compatible bucket `s3://bucket/prefix` (packages are then cached under `<home>/artifact-cache`).
   */
  readonly artifacts: string;
  /** The S3-compatible artifact store (used when `artifacts` is an `s3://` URL). Credentials: the AWS SDK chain. */
  readonly s3: {
    /** Endpoint of an S3-compatible server (`http://minio:9000`), or null for AWS S3. */
    readonly endpoint: string | null;
    /** Region, or null for `us-east-1`. */
    readonly region: string | null;
    /** `on`: bucket in the path (`http://host/bucket/key`). Default `on` when `endpoint` is set, else `off`. */
    readonly forcePathStyle: "on" | "off";
  };
  readonly server: {
    /** Interface to listen on. Default `127.0.0.1` (loopback only). */
    readonly host: string;
    /** TCP port; 0 picks a free one. Default 8080. */
    readonly port: number;
    /** Largest request body accepted, in bytes. Default 16 MiB. */
    readonly bodyLimitBytes: number;
    /** Reference `/invocations` serves (resolved per request), or null for "the only model, if exactly one". */
    readonly defaultModel: string | null;
    /** Grace period for in-flight requests on shutdown, in milliseconds. Default 10000. */
    readonly shutdownTimeoutMs: number;
    /** Event-loop delay above which new inference requests get 429 (load shedding); 0 turns it off. Default 40. */
    readonly maxEventLoopDelayMs: number;
    /**
     * TCP port of the gRPC Open Inference Protocol service (same host); 0 picks a free one, -1 turns gRPC off.
     * Default 8081, or 0 when `port` is 0 (a free HTTP port gets a free gRPC port too).
     */
    readonly grpcPort: number;
    /** Largest gRPC message received or sent, in bytes. Default 64 MiB (gRPC's own default is 4 MiB). */
    readonly grpcMaxMessageBytes: number;
    /**
     * Bearer token every action under `/api/v1/` (POST, PUT, PATCH, DELETE) needs, or null for none (actions are
     * open). Set directly, or read from `adminTokenFile` at load (trimmed). Never printed: `mlship config` shows `***`.
     */
    readonly adminToken: string | null;
    /** File the admin token is read from (a mounted Kubernetes secret), or null. `adminToken` wins when both are set. */
    readonly adminTokenFile: string | null;
    /**
     * File holding per-model inference tokens (YAML or JSON `{model: [token, ...]}`), or null: inference is open. A
     * model listed there needs `Authorization: Bearer <one of its tokens>` (or the admin token) on every inference
     * route and gRPC call that reaches it; models not listed stay open.
     */
    readonly inferenceTokensFile: string | null;
    /** The tokens read from `inferenceTokensFile` at load (not a key of its own; never printed), or null. */
    readonly inferenceTokens: Readonly<Record<string, readonly string[]>> | null;
    /**
     * Browser origins allowed to call the server (CORS), comma separated exact origins (`https://app.example.com`) or
     * `*`; null (default): no CORS headers at all, so browsers on other origins cannot read answers.
     */
    readonly corsOrigins: string | null;
    /**
     * This server's identity among replicas sharing one store: live monitoring stores its part of every window under
     * it and readers merge the parts. Default the host name (the pod name on Kubernetes), so a restarted pod goes on
     * with its own part; replicas on one host need distinct ids.
     */
    readonly replicaId: string;
  };
  readonly runtime: {
    /** Inference worker threads. Default `os.availableParallelism()`. */
    readonly workers: number;
    /** onnxruntime intra-op threads per worker. Default 1 (workers already use the cores). */
    readonly intraOpThreads: number;
    /** onnxruntime inter-op threads per worker (parallel branches of a graph). Default 1. */
    readonly interOpThreads: number;
    /**
     * ONNX runs estimated at most this many microseconds run on the main thread instead of a worker, where the
     * round trip costs more than the run (small models, small batches). 0 turns it off. Default 200.
     */
    readonly inlineMaxMicros: number;
  };
  /** Server-wide serving defaults; a version's package `serving` section and its registry override win. */
  readonly serving: {
    /** Most rows one batched run holds. Default 64. */
    readonly maxBatchSize: number;
    /** Hard bound on the extra wait a request spends for others to join its batch, in milliseconds. Default 2. */
    readonly maxDelayMs: number;
    /** Requests queued or running per model version before 429. Default 256. */
    readonly maxQueue: number;
    /** Per-request deadline, in milliseconds; 503 past it. Default 30000. */
    readonly timeoutMs: number;
    /** Most rows one online request may carry (batch and stream jobs excepted); 413 past it. Default 65536. */
    readonly maxRequestRows: number;
  };
  readonly cache: {
    /** Prediction cache: `memory` (in-process LRU), `off`, or a `redis://` / `rediss://` URL shared by replicas. Default `memory`. */
    readonly backend: string;
    /** Bound on the in-process cache, in bytes. Default 64 MiB. */
    readonly maxBytes: number;
    /** Entry lifetime when a version's `serving.cache.ttl_seconds` is unset, in seconds. Default 300. */
    readonly ttlSeconds: number;
  };
  readonly monitor: {
    /**
     * Live monitoring in `mlship serve`: window profiles of served predictions against each version's reference.
     * `auto` (default): on when some version has a reference profile at start-up; `on`; `off`.
     */
    readonly live: "auto" | "on" | "off";
    /** Live window sizes, comma separated. Default `1h,12h,1d`. */
    readonly windows: string;
    /** Where live alerts are POSTed (JSON), or null for log lines and the gauge only. */
    readonly webhookUrl: string | null;
  };
  /** The feedback loop (prediction log, outcomes, live quality). */
  readonly feedback: {
    /** Log every prediction (`on`, default) or none (`off`). */
    readonly log: "on" | "off";
    /** How long after a prediction its outcome may arrive and still be joined, in ms. Default 7 days. */
    readonly horizonMs: number;
    /** How long an outcome without a logged prediction stays pending before it counts as unmatched, in ms. Default 10 min. */
    readonly pendingTimeoutMs: number;
    /** Rows the prediction log holds in memory before it spills to disk. Default 10000. */
    readonly bufferRows: number;
    /** How often the prediction log hands its buffer to its writer thread, in ms. Default 100. */
    readonly flushMs: number;
    /** Folder for spill files written while the store is slow or down. Default `<home>/spill`. */
    readonly spillDir: string;
    /** Largest total size of spill files, in bytes; beyond it rows are dropped (counted). Default 1 GiB. */
    readonly spillMaxBytes: number;
    /** How often live quality thresholds are judged, in ms. Default 60000. */
    readonly evaluateMs: number;
    /** Predictions older than this many days are pruned (with their outcomes); 0 keeps them. Default 30. */
    readonly retentionDays: number;
  };
  readonly rollout: {
    /** How often active rollouts' guards (automatic rollback and promotion) run, in ms. Default 15000. */
    readonly checkMs: number;
  };
  readonly batch: {
    /** Rows read, scored and written per chunk by `mlship batch score`. Default 5000. */
    readonly chunkRows: number;
    /**
     * A batch prediction older than this is answered with `stale: true` by the lookup routes and counts as stale in
     * `mlship batch status`, in ms, unless an enabled schedule that writes it has its own max age. Default 1 day.
     */
    readonly maxAgeMs: number;
    /**
     * A `postgres://` database the lookup routes read predictions from instead of the metadata store (batch runs
     * write there with `--into`), or null for the metadata store. Never migrated by mlship.
     */
    readonly lookupUrl: string | null;
  };
  readonly log: {
    /** pino level: fatal, error, warn, info, debug, trace or silent. Default `info`. */
    readonly level: LogLevel;
  };
  /** Who registry changes are attributed to (alias history `by`). Default the OS user name. */
  readonly user: string;
}

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Dotted names of every key, as used in mlship.config.yaml and in error messages. */
export type ConfigKey =
  | "home"
  | "store"
  | "artifacts"
  | "s3.endpoint"
  | "s3.region"
  | "s3.forcePathStyle"
  | "server.host"
  | "server.port"
  | "server.bodyLimitBytes"
  | "server.defaultModel"
  | "server.shutdownTimeoutMs"
  | "server.maxEventLoopDelayMs"
  | "server.grpcPort"
  | "server.grpcMaxMessageBytes"
  | "server.adminToken"
  | "server.adminTokenFile"
  | "server.inferenceTokensFile"
  | "server.corsOrigins"
  | "server.replicaId"
  | "runtime.workers"
  | "runtime.intraOpThreads"
  | "runtime.interOpThreads"
  | "runtime.inlineMaxMicros"
  | "serving.maxBatchSize"
  | "serving.maxDelayMs"
  | "serving.maxQueue"
  | "serving.timeoutMs"
  | "serving.maxRequestRows"
  | "cache.backend"
  | "cache.maxBytes"
  | "cache.ttlSeconds"
  | "monitor.live"
  | "monitor.windows"
  | "monitor.webhookUrl"
  | "feedback.log"
  | "feedback.horizonMs"
  | "feedback.pendingTimeoutMs"
  | "feedback.bufferRows"
  | "feedback.flushMs"
  | "feedback.spillDir"
  | "feedback.spillMaxBytes"
  | "feedback.evaluateMs"
  | "feedback.retentionDays"
  | "rollout.checkMs"
  | "batch.chunkRows"
  | "batch.maxAgeMs"
  | "batch.lookupUrl"
  | "log.level"
  | "user";

export type ConfigValue = string | number | null;

export interface KeyDef {
  key: ConfigKey;
  /** Environment variable that sets it. */
  env: string;
  /** The CLI flag that sets it, where one exists. */
  flag?: string;
  kind: "path" | "artifacts" | "string" | "int" | "level" | "store" | "ref" | "cache" | "live" | "onoff" | "windows" | "url" | "secret" | "origins";
  /** Smallest/largest accepted integer. */
  min?: number;
  max?: number;
  /** Text for docs and `mlship config`. */
  doc: string;
  unit?: string;
  /** The default as shown in docs (the real one is computed in load.ts where it depends on other keys). */
  defaultText: string;
}

export const KEYS: readonly KeyDef[] = [
  {
    key: "home", env: "MLSHIP_HOME", flag: "--home", kind: "path", defaultText: "./.mlship",
    doc: "Folder for the embedded store, artifacts and staging files.",
  },
  {
    key: "store", env: "MLSHIP_STORE", flag: "--store", kind: "store", defaultText: "sqlite:<home>/mlship.db",
    doc: "Metadata store: a postgres:// URL, or sqlite:<file> (a bare path means a SQLite file).",
  },
  {
    key: "artifacts", env: "MLSHIP_ARTIFACTS", kind: "artifacts", defaultText: "<home>/artifacts",
    doc: "Where registered model files are stored by content digest: a folder (or file:<folder>), or an S3-compatible bucket s3://bucket/prefix shared by replicas.",
  },
  {
    key: "s3.endpoint", env: "MLSHIP_S3_ENDPOINT", kind: "url", defaultText: "(none: AWS S3)",
    doc: "Endpoint of the S3-compatible server holding the artifacts (http://minio:9000); credentials come from the AWS SDK chain (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...).",
  },
  {
    key: "s3.region", env: "MLSHIP_S3_REGION", kind: "string", defaultText: "us-east-1",
    doc: "Region of the artifact bucket.",
  },
  {
    key: "s3.forcePathStyle", env: "MLSHIP_S3_FORCE_PATH_STYLE", kind: "onoff", defaultText: "on when s3.endpoint is set, else off",
    doc: "Address the bucket in the path (http://host/bucket/key) rather than the host name; most S3-compatible servers need it.",
  },
  {
    key: "server.host", env: "MLSHIP_HOST", flag: "--host", kind: "string", defaultText: "127.0.0.1",
    doc: "Interface the server listens on (0.0.0.0 exposes it to the network).",
  },
  {
    key: "server.port", env: "MLSHIP_PORT", flag: "--port", kind: "int", min: 0, max: 65535, defaultText: "8080",
    doc: "TCP port the server listens on; 0 picks a free port.",
  },
  {
    key: "server.bodyLimitBytes", env: "MLSHIP_BODY_LIMIT_BYTES", kind: "int", min: 1, max: 2 ** 31 - 1,
    unit: "bytes", defaultText: "16777216 (16 MiB)",
    doc: "Largest request body; larger ones get 413.",
  },
  {
    key: "server.defaultModel", env: "MLSHIP_DEFAULT_MODEL", flag: "--model", kind: "ref", defaultText: "(none)",
    doc: "Model reference /invocations serves, resolved per request; unset: the only registered model.",
  },
  {
    key: "server.shutdownTimeoutMs", env: "MLSHIP_SHUTDOWN_TIMEOUT_MS", kind: "int", min: 0, max: 3_600_000,
    unit: "ms", defaultText: "10000",
    doc: "How long a shutdown waits for in-flight requests before closing connections.",
  },
  {
    key: "server.maxEventLoopDelayMs", env: "MLSHIP_MAX_EVENT_LOOP_DELAY_MS", kind: "int", min: 0, max: 60_000,
    unit: "ms", defaultText: "40",
    doc: "Load shedding: while the server's event loop runs later than this, new HTTP inference requests get 429 with Retry-After at once; 0 turns it off.",
  },
  {
    key: "server.grpcPort", env: "MLSHIP_GRPC_PORT", flag: "--grpc-port", kind: "int", min: -1, max: 65535,
    defaultText: "8081 (0 when server.port is 0)",
    doc: "TCP port of the gRPC (Open Inference Protocol) service; 0 picks a free port, -1 turns gRPC off.",
  },
  {
    key: "server.grpcMaxMessageBytes", env: "MLSHIP_GRPC_MAX_MESSAGE_BYTES", kind: "int", min: 1024, max: 2 ** 31 - 1,
    unit: "bytes", defaultText: "67108864 (64 MiB)",
    doc: "Largest gRPC message received or sent; a larger one fails with RESOURCE_EXHAUSTED.",
  },
  {
    key: "server.adminToken", env: "MLSHIP_ADMIN_TOKEN", kind: "secret", defaultText: "(none: actions are open)",
    doc: "Bearer token every POST/PUT/PATCH/DELETE under /api/v1/ needs (Authorization: Bearer <token>); reads stay open. Never printed.",
  },
  {
    key: "server.adminTokenFile", env: "MLSHIP_ADMIN_TOKEN_FILE", kind: "path", defaultText: "(none)",
    doc: "File the admin token is read from at start (trimmed), e.g. a mounted Kubernetes secret; server.adminToken wins when both are set.",
  },
  {
    key: "server.inferenceTokensFile", env: "MLSHIP_INFERENCE_TOKENS_FILE", kind: "path", defaultText: "(none: inference is open)",
    doc: "YAML or JSON file mapping model names to lists of inference tokens ({model: [token, ...]}); a listed model needs Authorization: Bearer <one of its tokens> (or the admin token) on REST and gRPC inference. Tokens are never printed.",
  },
  {
    key: "server.corsOrigins", env: "MLSHIP_CORS_ORIGINS", kind: "origins", defaultText: "(none: no CORS headers)",
    doc: "Comma-separated browser origins allowed to call the server (exact, e.g. https://app.example.com, or *); never with credentials.",
  },
  {
    key: "server.replicaId", env: "MLSHIP_REPLICA_ID", kind: "string", defaultText: "the host name (os.hostname())",
    doc: "This server's id among replicas sharing one store: live monitoring stores its part of each window under it and readers merge the parts. Replicas on one host need distinct ids.",
  },
  {
    key: "runtime.workers", env: "MLSHIP_WORKERS", flag: "--workers", kind: "int", min: 1, max: 1024,
    unit: "threads", defaultText: "os.availableParallelism()",
    doc: "Inference worker threads in the pool.",
  },
  {
    key: "runtime.intraOpThreads", env: "MLSHIP_INTRA_OP_THREADS", kind: "int", min: 1, max: 1024,
    unit: "threads", defaultText: "1",
    doc: "onnxruntime intra-op threads per worker.",
  },
  {
    key: "runtime.interOpThreads", env: "MLSHIP_INTER_OP_THREADS", kind: "int", min: 1, max: 1024,
    unit: "threads", defaultText: "1",
    doc: "onnxruntime inter-op threads per worker.",
  },
  {
    key: "runtime.inlineMaxMicros", env: "MLSHIP_INLINE_MAX_MICROS", kind: "int", min: 0, max: 1_000_000,
    unit: "microseconds", defaultText: "200",
    doc: "ONNX runs estimated (by a calibration when the version loads) to take at most this long run on the main thread instead of an inference worker, because the round trip would cost more than the run: small models with small batches. 0 runs everything on the workers.",
  },
  {
    key: "serving.maxBatchSize", env: "MLSHIP_MAX_BATCH_SIZE", kind: "int", min: 1, max: 65_536,
    unit: "rows", defaultText: "64",
    doc: "Default batching.max_batch_size of every version (1 turns batching off).",
  },
  {
    key: "serving.maxDelayMs", env: "MLSHIP_MAX_DELAY_MS", kind: "int", min: 0, max: 60_000,
    unit: "ms", defaultText: "2",
    doc: "Default batching.max_delay_ms: the most a request waits for others to join its batch.",
  },
  {
    key: "serving.maxQueue", env: "MLSHIP_MAX_QUEUE", kind: "int", min: 1, max: 1_000_000,
    unit: "requests", defaultText: "256",
    doc: "Default max_queue: requests queued or running per version before 429 + Retry-After.",
  },
  {
    key: "serving.timeoutMs", env: "MLSHIP_TIMEOUT_MS", kind: "int", min: 1, max: 3_600_000,
    unit: "ms", defaultText: "30000",
    doc: "Default timeout_ms: per-request deadline; 503 + Retry-After past it.",
  },
  {
    key: "serving.maxRequestRows", env: "MLSHIP_MAX_REQUEST_ROWS", kind: "int", min: 1, max: 100_000_000,
    unit: "rows", defaultText: "65536",
    doc: "Default max_request_rows: most rows one online request may carry; 413 past it (batch and stream jobs excepted).",
  },
  {
    key: "cache.backend", env: "MLSHIP_CACHE", kind: "cache", defaultText: "memory",
    doc: "Prediction cache: memory (in-process LRU), off, or a redis:// URL shared by replicas.",
  },
  {
    key: "cache.maxBytes", env: "MLSHIP_CACHE_MAX_BYTES", kind: "int", min: 0, max: Number.MAX_SAFE_INTEGER,
    unit: "bytes", defaultText: "67108864 (64 MiB)",
    doc: "Bound on the in-process prediction cache (least recently used entries go first).",
  },
  {
    key: "cache.ttlSeconds", env: "MLSHIP_CACHE_TTL_SECONDS", kind: "int", min: 1, max: 31_536_000,
    unit: "s", defaultText: "300",
    doc: "Lifetime of a cached prediction when the version's serving.cache.ttl_seconds is unset.",
  },
  {
    key: "log.level", env: "MLSHIP_LOG_LEVEL", flag: "--log-level", kind: "level", defaultText: "info",
    doc: `Log level (${LOG_LEVELS.join(", ")}); logs go to stderr.`,
  },
  {
    key: "monitor.live", env: "MLSHIP_MONITOR_LIVE", kind: "live", defaultText: "auto",
    doc: "Live monitoring in mlship serve (windows of served predictions against each version's reference): auto (on when a reference profile exists at start-up), on or off.",
  },
  {
    key: "monitor.windows", env: "MLSHIP_MONITOR_WINDOWS", kind: "windows", defaultText: "1h,12h,1d",
    doc: "Live window sizes, comma separated (units ms, s, m, h, d, w), e.g. 1h,12h,1d.",
  },
  {
    key: "monitor.webhookUrl", env: "MLSHIP_MONITOR_WEBHOOK", kind: "url", defaultText: "(none)",
    doc: "Where live monitoring alerts are POSTed as JSON; unset: log lines and the mlship_monitor_alert_active gauge only.",
  },
  {
    key: "feedback.log", env: "MLSHIP_FEEDBACK_LOG", kind: "onoff", defaultText: "on",
    doc: "Prediction log: every prediction served (REST, gRPC, library, batch) is logged with its request id, key, inputs (per the model's feedback.log_inputs), outputs and latency; off logs nothing.",
  },
  {
    key: "feedback.horizonMs", env: "MLSHIP_FEEDBACK_HORIZON_MS", kind: "int", min: 1000, max: 366 * 86_400_000,
    unit: "ms", defaultText: "604800000 (7 days)",
    doc: "How long after a prediction its outcome may arrive (by event time) and still be joined; later outcomes are kept as late.",
  },
  {
    key: "feedback.pendingTimeoutMs", env: "MLSHIP_FEEDBACK_PENDING_TIMEOUT_MS", kind: "int", min: 0, max: 366 * 86_400_000,
    unit: "ms", defaultText: "600000 (10 min)",
    doc: "How long an outcome whose prediction is not in the log yet is retried before it counts as unmatched.",
  },
  {
    key: "feedback.bufferRows", env: "MLSHIP_FEEDBACK_BUFFER_ROWS", kind: "int", min: 1, max: 10_000_000,
    unit: "rows", defaultText: "10000",
    doc: "Prediction rows held in memory; beyond it (or while the store fails) rows spill to disk and are replayed later.",
  },
  {
    key: "feedback.flushMs", env: "MLSHIP_FEEDBACK_FLUSH_MS", kind: "int", min: 10, max: 3_600_000,
    unit: "ms", defaultText: "100",
    doc: "How often the prediction log hands its buffer to its writer thread (small hand-offs keep the serving thread's pauses short).",
  },
  {
    key: "feedback.spillDir", env: "MLSHIP_FEEDBACK_SPILL_DIR", kind: "path", defaultText: "<home>/spill",
    doc: "Folder for prediction-log spill files (JSON Lines) written while the store is slow or down.",
  },
  {
    key: "feedback.spillMaxBytes", env: "MLSHIP_FEEDBACK_SPILL_MAX_BYTES", kind: "int", min: 0, max: Number.MAX_SAFE_INTEGER,
    unit: "bytes", defaultText: "1073741824 (1 GiB)",
    doc: "Bound on spill files; rows beyond it are dropped and counted in mlship_prediction_log_dropped_total.",
  },
  {
    key: "feedback.evaluateMs", env: "MLSHIP_FEEDBACK_EVALUATE_MS", kind: "int", min: 100, max: 86_400_000,
    unit: "ms", defaultText: "60000",
    doc: "How often live quality is computed for /metrics and the models' quality thresholds are judged.",
  },
  {
    key: "feedback.retentionDays", env: "MLSHIP_FEEDBACK_RETENTION_DAYS", kind: "int", min: 0, max: 36_500,
    unit: "days", defaultText: "30",
    doc: "Logged predictions (with their outcomes and events) older than this are deleted; 0 keeps them.",
  },
  {
    key: "rollout.checkMs", env: "MLSHIP_ROLLOUT_CHECK_MS", kind: "int", min: 100, max: 86_400_000,
    unit: "ms", defaultText: "15000",
    doc: "How often active rollouts are checked for automatic rollback and promotion.",
  },
  {
    key: "batch.chunkRows", env: "MLSHIP_BATCH_CHUNK_ROWS", kind: "int", min: 1, max: 1_000_000,
    unit: "rows", defaultText: "5000",
    doc: "Rows read, scored and written per chunk by mlship batch score (memory grows with it, not with the file).",
  },
  {
    key: "batch.maxAgeMs", env: "MLSHIP_BATCH_MAX_AGE_MS", kind: "int", min: 1000, max: 366 * 86_400_000,
    unit: "ms", defaultText: "86400000 (1 day)",
    doc: "Batch predictions older than this are answered with stale: true by GET /v1/predictions/{model}/{id} and are stale in mlship batch status, unless an enabled schedule that writes them has its own --max-age.",
  },
  {
    key: "batch.lookupUrl", env: "MLSHIP_BATCH_LOOKUP_URL", kind: "string", defaultText: "(none: the metadata store)",
    doc: "A postgres:// database the batch lookup routes read predictions from instead of the metadata store (runs write there with --into); runs and schedules stay in the metadata store. mlship never migrates it.",
  },
  {
    key: "user", env: "MLSHIP_USER", flag: "--user", kind: "string", defaultText: "the OS user name",
    doc: "Name recorded as `by` in the alias history and as a version's creator.",
  },
];

export function defaultUser(): string {
  try {
    const name = os.userInfo().username;
    if (name) return name;
  } catch {
    // userInfo throws in containers without a passwd entry for the uid.
  }
  return process.env.USER ?? "unknown";
}
