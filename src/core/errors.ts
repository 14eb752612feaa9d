/**
 * One list of platform error codes. Every thrown error that crosses a module boundary is an `MlshipError`
 * whose code is a key of ERROR_CODES; the transports (HTTP, MLflow, gRPC, CLI) map it once through this table.
 */

/** gRPC status numbers (google.rpc.Code); kept here so core does not depend on a gRPC library. */
export const GrpcStatus = {
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcStatusCode = (typeof GrpcStatus)[keyof typeof GrpcStatus];

export interface ErrorCodeInfo {
  http: number;
  grpc: GrpcStatusCode;
  /** MLflow `error_code` enum name used on the MLflow scoring routes. */
  mlflow: string;
  /** What the code means, for docs/errors.md. */
  description: string;
}

export const ERROR_CODES = {
  MLSHIP_ERR_INPUT_INVALID: {
    http: 400, grpc: GrpcStatus.INVALID_ARGUMENT, mlflow: "BAD_REQUEST",
    description: "The request body or a field in it is not valid for this endpoint.",
  },
  MLSHIP_ERR_INPUT_JSON: {
    http: 400, grpc: GrpcStatus.INVALID_ARGUMENT, mlflow: "BAD_REQUEST",
    description: "The body is not well-formed JSON (or CSV).",
  },
  MLSHIP_ERR_INPUT_MISSING: {
    http: 400, grpc: GrpcStatus.INVALID_ARGUMENT, mlflow: "BAD_REQUEST",
    description: "A required input tensor, column or field is missing.",
  },
  MLSHIP_ERR_INPUT_SHAPE: {
    http: 400, grpc: GrpcStatus.INVALID_ARGUMENT, mlflow: "BAD_REQUEST",
    description: "An input's shape does not match the model signature or its data length.",
  },
  MLSHIP_ERR_INPUT_DTYPE: {
    http: 400, grpc: GrpcStatus.INVALID_ARGUMENT, mlflow: "BAD_REQUEST",
    description: "An input's datatype or a value's type does not match the model signature.",
  },
  MLSHIP_ERR_INPUT_TOO_LARGE: {
    http: 413, grpc: GrpcStatus.RESOURCE_EXHAUSTED, mlflow: "BAD_REQUEST",
    description: "The request body is larger than the configured limit (server.bodyLimitBytes), or carries more rows than the model version takes (max_request_rows).",
  },
  MLSHIP_ERR_INPUT_CONTENT_TYPE: {
    http: 415, grpc: GrpcStatus.INVALID_ARGUMENT, mlflow: "BAD_REQUEST",
    description: "The request's content type (or charset) is not supported by this endpoint.",
  },
  MLSHIP_ERR_MODEL_NOT_FOUND: {
    http: 404, grpc: GrpcStatus.NOT_FOUND, mlflow: "RESOURCE_DOES_NOT_EXIST",
    description: "No registered model has this name.",
  },
  MLSHIP_ERR_MODEL_VERSION_NOT_FOUND: {
    http: 404, grpc: GrpcStatus.NOT_FOUND, mlflow: "RESOURCE_DOES_NOT_EXIST",
    description: "The model exists but has no such version (or it is archived).",
  },
  MLSHIP_ERR_MODEL_ALIAS_NOT_FOUND: {
    http: 404, grpc: GrpcStatus.NOT_FOUND, mlflow: "RESOURCE_DOES_NOT_EXIST",
    description: "The model exists but has no such alias.",
  },
  MLSHIP_ERR_MODEL_REF_INVALID: {
    http: 400, grpc: GrpcStatus.INVALID_ARGUMENT, mlflow: "INVALID_PARAMETER_VALUE",
    description: "A model reference is not of the form name, name@version, name@alias or models:/name@alias.",
  },
  MLSHIP_ERR_MODEL_NO_DEFAULT: {
    http: 404, grpc: GrpcStatus.NOT_FOUND, mlflow: "RESOURCE_DOES_NOT_EXIST",
    description: "The server has no default model for /invocations; use /v1/models/{ref}/invocations.",
  },
  MLSHIP_ERR_MODEL_NOT_READY: {
    http: 503, grpc: GrpcStatus.UNAVAILABLE, mlflow: "TEMPORARILY_UNAVAILABLE",
    description: "The model version is still loading; retry after the Retry-After delay.",
  },
  MLSHIP_ERR_REGISTRY_CONFLICT: {
    http: 409, grpc: GrpcStatus.FAILED_PRECONDITION, mlflow: "RESOURCE_CONFLICT",
    description: "The registry change conflicts with its current state (e.g. archiving a version an alias points to).",
  },
  MLSHIP_ERR_REGISTRY_ALIAS_INVALID: {
    http: 400, grpc: GrpcStatus.INVALID_ARGUMENT, mlflow: "INVALID_PARAMETER_VALUE",
    description: "An alias name is reserved (digits, v<digits>, latest) or has characters outside [A-Za-z0-9_.-].",
  },
  MLSHIP_ERR_REGISTRY_NAME_INVALID: {
    http: 400, grpc: GrpcStatus.INVALID_ARGUMENT, mlflow: "INVALID_PARAMETER_VALUE",
    description: "A model name is empty or has characters outside [A-Za-z0-9_.-].",
  },
  MLSHIP_ERR_REGISTRY_NO_ROLLBACK: {
    http: 409, grpc: GrpcStatus.FAILED_PRECONDITION, mlflow: "RESOURCE_CONFLICT",
    description: "The alias has no earlier (non-archived) target in its history to roll back to.",
  },
  MLSHIP_ERR_PACKAGE_INVALID: {
    http: 400, grpc: GrpcStatus.INVALID_ARGUMENT, mlflow: "INVALID_PARAMETER_VALUE",
    description: "A model package, MLmodel file or ONNX file is corrupt or inconsistent; the message names the file.",
  },
  MLSHIP_ERR_PACKAGE_NOT_FOUND: {
    http: 404, grpc: GrpcStatus.NOT_FOUND, mlflow: "RESOURCE_DOES_NOT_EXIST",
    description: "The path given for a model package or file does not exist.",
  },
  MLSHIP_ERR_PACKAGE_UNSUPPORTED: {
    http: 400, grpc: GrpcStatus.INVALID_ARGUMENT, mlflow: "INVALID_PARAMETER_VALUE",
    description: "The model format or flavor is not supported.",
  },
  MLSHIP_ERR_RUNTIME_LOAD: {
    http: 500, grpc: GrpcStatus.INTERNAL, mlflow: "INTERNAL_ERROR",
    description: "The runtime could not load the model artifact.",
  },
  MLSHIP_ERR_RUNTIME_INFERENCE: {
    http: 500, grpc: GrpcStatus.INTERNAL, mlflow: "INTERNAL_ERROR",
    description: "The runtime failed while running the model.",
  },
  MLSHIP_ERR_RUNTIME_UNAVAILABLE: {
    http: 503, grpc: GrpcStatus.UNAVAILABLE, mlflow: "TEMPORARILY_UNAVAILABLE",
    description: "The worker pool is closed or a worker died; retry after the Retry-After delay.",
  },
  MLSHIP_ERR_RUNTIME_WRAPPER: {
    http: 500, grpc: GrpcStatus.INTERNAL, mlflow: "INTERNAL_ERROR",
    description: "A custom model wrapper threw, returned output that does not match its signature, or its process died (it is restarted); the message names the row when the wrapper said which one.",
  },
  MLSHIP_ERR_RUNTIME_TIMEOUT: {
    http: 504, grpc: GrpcStatus.UNAVAILABLE, mlflow: "TEMPORARILY_UNAVAILABLE",
    description: "A custom model wrapper did not answer within its timeout (custom.timeout_ms); its process is killed and restarted.",
  },
  MLSHIP_ERR_PACKAGE_BUILD: {
    http: 400, grpc: GrpcStatus.INVALID_ARGUMENT, mlflow: "INVALID_PARAMETER_VALUE",
    description: "mlship package build: the wrapper source does not type-check or bundle; the message names the file and line.",
  },
  MLSHIP_ERR_DEPLOYMENT_NOT_FOUND: {
    http: 404, grpc: GrpcStatus.NOT_FOUND, mlflow: "RESOURCE_DOES_NOT_EXIST",
    description: "No deployment has this name.",
  },
  MLSHIP_ERR_DEPLOYMENT_EXISTS: {
    http: 409, grpc: GrpcStatus.ALREADY_EXISTS, mlflow: "RESOURCE_ALREADY_EXISTS",
    description: "A deployment with this name already exists (use update).",
  },
  MLSHIP_ERR_SERVE_OVERLOADED: {
    http: 429, grpc: GrpcStatus.RESOURCE_EXHAUSTED, mlflow: "REQUEST_LIMIT_EXCEEDED",
    description: "The model version's queue is full (max_queue), or the server itself is saturated (server.maxEventLoopDelayMs); retry after the Retry-After delay.",
  },
  MLSHIP_ERR_SERVE_TIMEOUT: {
    http: 503, grpc: GrpcStatus.UNAVAILABLE, mlflow: "TEMPORARILY_UNAVAILABLE",
    description: "The request was not answered within its deadline (timeout_ms); retry after the Retry-After delay.",
  },
  MLSHIP_ERR_SERVE_ROUTE_NOT_FOUND: {
    http: 404, grpc: GrpcStatus.UNIMPLEMENTED, mlflow: "ENDPOINT_NOT_FOUND",
    description: "No route matches the method and path.",
  },
  MLSHIP_ERR_MONITOR_NO_REFERENCE: {
    http: 404, grpc: GrpcStatus.NOT_FOUND, mlflow: "RESOURCE_DOES_NOT_EXIST",
    description: "The model version has no reference profile yet; make one with `mlship monitor profile REF --data FILE`.",
  },
  MLSHIP_ERR_MONITOR_CHECK_FAILED: {
    http: 422, grpc: GrpcStatus.FAILED_PRECONDITION, mlflow: "INVALID_STATE",
    description: "A monitoring check failed: a data-quality rule of severity error, or a drift test (see the printed report).",
  },
  MLSHIP_ERR_ROLLOUT_NOT_FOUND: {
    http: 404, grpc: GrpcStatus.NOT_FOUND, mlflow: "RESOURCE_DOES_NOT_EXIST",
    description: "No such rollout, or the model has no active rollout.",
  },
  MLSHIP_ERR_ROLLOUT_CONFLICT: {
    http: 409, grpc: GrpcStatus.FAILED_PRECONDITION, mlflow: "INVALID_STATE",
    description: "The rollout action does not fit the current state: a rollout is already active for the alias, the rollout has ended, or the challenger is the champion.",
  },
  MLSHIP_ERR_OPTIMIZE_GATE_FAILED: {
    http: 422, grpc: GrpcStatus.FAILED_PRECONDITION, mlflow: "INVALID_STATE",
    description: "An optimized model (quantized, fp16 or graph-optimized) lost more accuracy on the validation file than --max-accuracy-drop allows; nothing was registered.",
  },
  MLSHIP_ERR_ROLLOUT_GATE_FAILED: {
    http: 422, grpc: GrpcStatus.FAILED_PRECONDITION, mlflow: "INVALID_STATE",
    description: "A promotion gate failed: the candidate missed a threshold on the holdout data or was worse than the current version by more than the margin (the details list each check).",
  },
  MLSHIP_ERR_BATCH_PREDICTION_NOT_FOUND: {
    http: 404, grpc: GrpcStatus.NOT_FOUND, mlflow: "RESOURCE_DOES_NOT_EXIST",
    description: "No batch prediction is stored for this model and id (in that table).",
  },
  MLSHIP_ERR_BATCH_RUN_NOT_FOUND: {
    http: 404, grpc: GrpcStatus.NOT_FOUND, mlflow: "RESOURCE_DOES_NOT_EXIST",
    description: "No batch run has this id in the metadata store.",
  },
  MLSHIP_ERR_BATCH_CHECK_FAILED: {
    http: 422, grpc: GrpcStatus.FAILED_PRECONDITION, mlflow: "INVALID_STATE",
    description: "`mlship batch status --check`: a batch table's last run failed, or its last success is older than the maximum age.",
  },
  MLSHIP_ERR_BATCH_INTERRUPTED: {
    http: 409, grpc: GrpcStatus.ABORTED, mlflow: "INVALID_STATE",
    description: "A batch run was interrupted (SIGINT/SIGTERM); `mlship batch score ... --resume` continues it (the CLI exits with 130).",
  },
  MLSHIP_ERR_STREAM_UNAVAILABLE: {
    http: 503, grpc: GrpcStatus.UNAVAILABLE, mlflow: "TEMPORARILY_UNAVAILABLE",
    description: "A stream job's source or sink cannot be reached (NATS server, JetStream stream or consumer, database, folder); the job retries, then stops with this error.",
  },
  MLSHIP_ERR_STREAM_CHECKPOINT: {
    http: 409, grpc: GrpcStatus.FAILED_PRECONDITION, mlflow: "INVALID_STATE",
    description: "A stream job's checkpoint folder is in use by another process (give each process its own `--instance`), or it belongs to another job or cannot be read.",
  },
  MLSHIP_ERR_AUTH_REQUIRED: {
    http: 401, grpc: GrpcStatus.UNAUTHENTICATED, mlflow: "UNAUTHENTICATED",
    description:
      "The server has an admin token and this action (a POST/PUT/PATCH/DELETE under `/api/v1/`) was sent without `Authorization: Bearer <token>`, or the model is listed in `server.inferenceTokensFile` and the inference request (REST, or gRPC `authorization` metadata) carried no bearer token; the answer carries `WWW-Authenticate: Bearer realm=\"mlship\"`.",
  },
  MLSHIP_ERR_AUTH_INVALID: {
    http: 403, grpc: GrpcStatus.PERMISSION_DENIED, mlflow: "PERMISSION_DENIED",
    description: "The bearer token sent with an action is not the server's admin token, or the one sent with inference is neither one of the model's inference tokens nor the admin token.",
  },
  MLSHIP_ERR_STREAM_NOT_FOUND: {
    http: 404, grpc: GrpcStatus.NOT_FOUND, mlflow: "RESOURCE_DOES_NOT_EXIST",
    description: "No stream job of this name (and instance) has reported its status to the metadata store.",
  },
  MLSHIP_ERR_CONFIG_INVALID: {
    http: 400, grpc: GrpcStatus.INVALID_ARGUMENT, mlflow: "INVALID_PARAMETER_VALUE",
    description: "A configuration value (file, MLSHIP_* variable or flag) is not valid; the message names it.",
  },
  MLSHIP_ERR_CLI_USAGE: {
    http: 400, grpc: GrpcStatus.INVALID_ARGUMENT, mlflow: "INVALID_PARAMETER_VALUE",
    description: "A command-line argument or option is missing, unknown or malformed (the CLI exits with 2).",
  },
  MLSHIP_ERR_STORE_UNAVAILABLE: {
    http: 503, grpc: GrpcStatus.UNAVAILABLE, mlflow: "TEMPORARILY_UNAVAILABLE",
    description: "The metadata store (SQLite file or PostgreSQL server) or the S3-compatible artifact store cannot be reached.",
  },
  MLSHIP_ERR_CORE_INTERNAL: {
    http: 500, grpc: GrpcStatus.INTERNAL, mlflow: "INTERNAL_ERROR",
    description: "An unexpected error; the server log has the details.",
  },
} as const satisfies Record<string, ErrorCodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface MlshipErrorOptions {
  /** The request field, column, input or file the error is about (e.g. `inputs[0].shape`, `mean radius`). */
  field?: string;
  cause?: unknown;
  /** Extra structured facts for logs and API bodies (never secrets). */
  details?: Record<string, unknown>;
  /** Seconds a client should wait before retrying (sent as Retry-After on 429/503). */
  retryAfterSeconds?: number;
}

export class MlshipError extends Error {
  readonly code: ErrorCode;
  readonly field: string | undefined;
  readonly details: Record<string, unknown> | undefined;
  readonly retryAfterSeconds: number | undefined;

  constructor(code: ErrorCode, message: string, options: MlshipErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "MlshipError";
    this.code = code;
    this.field = options.field;
    this.details = options.details;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }

  get httpStatus(): number {
    return ERROR_CODES[this.code].http;
  }

  get grpcStatus(): GrpcStatusCode {
    return ERROR_CODES[this.code].grpc;
  }

  get mlflowErrorCode(): string {
    return ERROR_CODES[this.code].mlflow;
  }
}

export function isMlshipError(value: unknown): value is MlshipError {
  return value instanceof MlshipError;
}

/** Turns any thrown value into a platform error; unknown errors become MLSHIP_ERR_CORE_INTERNAL with the cause kept. */
export function toMlshipError(value: unknown): MlshipError {
  if (value instanceof MlshipError) return value;
  if (isErrorLike(value) && typeof value.code === "string" && value.code in ERROR_CODES) {
    // Errors that crossed a worker_threads boundary arrive as plain objects carrying our code.
    return new MlshipError(value.code as ErrorCode, value.message, {
      field: typeof value.field === "string" ? value.field : undefined,
    });
  }
  const message = value instanceof Error ? value.message : String(value);
  return new MlshipError("MLSHIP_ERR_CORE_INTERNAL", message, { cause: value });
}

interface ErrorLike {
  message: string;
  code?: unknown;
  field?: unknown;
}

function isErrorLike(value: unknown): value is ErrorLike {
  return typeof value === "object" && value !== null && typeof (value as { message?: unknown }).message === "string";
}

/** The body shape of V2 and native REST errors (conventions.md). */
export function errorBody(error: MlshipError): { error: string; code: ErrorCode; field?: string } {
  return error.field === undefined
    ? { error: error.message, code: error.code }
    : { error: error.message, code: error.code, field: error.field };
}

/** The body shape of MLflow route errors (conventions.md). */
export function mlflowErrorBody(error: MlshipError): {
  error_code: string;
  message: string;
  mlship_code: ErrorCode;
  field?: string;
} {
  const body = { error_code: error.mlflowErrorCode, message: error.message, mlship_code: error.code };
  return error.field === undefined ? body : { ...body, field: error.field };
}
