/**
 * mlship on a function platform (AWS Lambda and the like): one event in, one prediction out, through the same
 * scoring pipeline as `mlship serve` (`createMlship` → `app.scoring`, MLflow and V2 request parsing in
 * src/scoring). The platform is built once per process, on the first invocation (or `init()`), and kept in module
 * scope, so warm invocations only score. Contract and packaging: docs/serverless.md.
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createLogger, ERROR_CODES, errorBody, MlshipError, mlflowErrorBody, toMlshipError, type Logger } from "../core/index.js";
import { loadConfigWithSources, type MlshipConfig } from "../config/index.js";
import { formatMlflowResponse, formatV2Response, parseJsonBody, type ScoreResult, type ScoringInput } from "../scoring/index.js";
import { parseModelRef } from "../registry/index.js";
import { createMlship, startPredictionLog, type Mlship } from "../app.js";

export interface ServerlessOptions {
  /** The model `/invocations` and plain events without `model` use. Default: config `server.defaultModel`
   * (`MLSHIP_DEFAULT_MODEL`), else the only registered model. */
  model?: string;
  /** The bundled home with the registry (default: config `home`, i.e. `MLSHIP_HOME`). */
  home?: string;
  /** Inference worker threads. Default 1 (functions have 1-2 vCPUs), or `MLSHIP_WORKERS` when it is set. */
  workers?: number;
  /**
   * Where the SQLite registry is copied before it is opened (the bundle stays untouched: a function's code folder
   * is read-only and SQLite writes next to its file even to read it in WAL mode). Default: a folder under
   * `os.tmpdir()` (`/tmp` on Lambda, the only writable place there).
   */
  scratchDir?: string;
  /** Log every prediction to the metadata store (config `feedback.log`). Default off: the store copy is private to
   * one function instance; point `MLSHIP_STORE` at PostgreSQL and set this to keep the log. */
  log?: boolean;
  /** Configuration (default: `loadConfig()`: mlship.config.yaml in the working folder, then MLSHIP_* variables). */
  config?: MlshipConfig;
  logger?: Logger;
}

/** API Gateway HTTP API / Lambda Function URL event, payload format 2.0 (the fields the handler reads). */
export interface HttpEventV2 {
  version?: string;
  rawPath: string;
  rawQueryString?: string;
  headers?: Record<string, string | undefined>;
  body?: string | null;
  isBase64Encoded?: boolean;
  requestContext: { http: { method: string; path?: string }; requestId?: string };
}

/** API Gateway REST API event, payload format 1.0 (the fields the handler reads). */
export interface HttpEventV1 {
  httpMethod: string;
  path: string;
  headers?: Record<string, string | undefined> | null;
  body?: string | null;
  isBase64Encoded?: boolean;
  requestContext?: { requestId?: string };
}

/** The answer to an HTTP event: what API Gateway and Function URLs turn into an HTTP response. */
export interface HttpResult {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
  isBase64Encoded: boolean;
}

/**
 * A direct invocation (Lambda `Invoke`, Step Functions, a queue trigger): a V2 request (`inputs` as tensors), an
 * MLflow request (`dataframe_split`, `dataframe_records`, `instances`, `inputs`), or `records` (row objects), with
 * an optional `model` reference.
 */
export interface PlainEvent {
  model?: string;
  [field: string]: unknown;
}

/** A plain event's failure: the native error body plus the HTTP status it would have had. */
export interface PlainError {
  statusCode: number;
  error: string;
  code: string;
  field?: string;
}

/** The part of the platform's context object the handler reads. */
export interface InvocationContext {
  awsRequestId?: string;
}

export interface ServerlessHandler {
  (event: unknown, context?: InvocationContext): Promise<unknown>;
  /** Builds the platform and loads the default model now (e.g. at module load, so the first request is faster). */
  init(): Promise<void>;
  /** Milliseconds the last `init` took (undefined before it finished). */
  readonly initMs: number | undefined;
  /** Stops the workers and closes the store. The next invocation builds everything again. */
  close(): Promise<void>;
}

const JSON_TYPE = "application/json; charset=utf-8";
/** The V2 binary tensor extension's header (not supported here: API Gateway would have to pass the body through). */
const BINARY_HEADER = "inference-header-content-length";
const V2_INFER = /(?:^|\/)v2\/models\/([^/]+)(?:\/versions\/([^/]+))?\/infer$/;
const MLFLOW_INFER = /(?:^|\/)(?:invocations|v1\/models\/([^/]+)\/invocations)$/;
const HEALTH = /(?:^|\/)(?:v2\/health\/(live|ready)|ping|health)$/;

type Protocol = "v2" | "mlflow";

interface Loaded {
  app: Mlship;
  close: () => Promise<void>;
  defaultModel: string | undefined;
  bodyLimit: number;
}

/** The SQLite file of a `sqlite:` store URL, or undefined for other stores (PostgreSQL, in-memory). */
function sqliteFile(store: string): string | undefined {
  if (!store.startsWith("sqlite:")) return undefined;
  const file = store.slice("sqlite:".length).replace(/^\/\/(?=\/)/, "");
  return file === "" || file === ":memory:" ? undefined : file;
}

/**
 * The function's config: the bundled SQLite registry is copied to scratch space (with its WAL, if the bundle was
 * not checkpointed) and opened there; artifacts are read where they were bundled. Workers default to 1 and the
 * prediction log to off.
 */
function functionConfig(options: ServerlessOptions): { config: MlshipConfig; ownScratch: string | undefined } {
  const overrides: Record<string, unknown> = {};
  if (options.home !== undefined) overrides.home = path.resolve(options.home);
  const loaded = options.config === undefined ? loadConfigWithSources({ overrides }) : undefined;
  const base = options.config ?? (loaded as NonNullable<typeof loaded>).config;
  const workersFromEnv = loaded !== undefined && loaded.sources["runtime.workers"] !== "default";
  const workers = options.workers ?? (workersFromEnv ? base.runtime.workers : 1);
  const log = options.log ?? false;

  let home = base.home;
  let store = base.store;
  let ownScratch: string | undefined;
  const bundled = sqliteFile(base.store);
  if (bundled !== undefined) {
    if (!fs.existsSync(bundled)) {
      throw new MlshipError("MLSHIP_ERR_STORE_UNAVAILABLE", `the bundled registry ${bundled} does not exist; set MLSHIP_HOME to the home folder shipped with the function`, {
        field: "home",
      });
    }
    if (options.scratchDir === undefined) ownScratch = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-fn-"));
    const scratch = options.scratchDir ?? (ownScratch as string);
    fs.mkdirSync(scratch, { recursive: true });
    const copy = path.join(scratch, "mlship.db");
    fs.copyFileSync(bundled, copy);
    if (fs.existsSync(`${bundled}-wal`)) fs.copyFileSync(`${bundled}-wal`, `${copy}-wal`);
    home = scratch;
    store = `sqlite:${copy}`;
  }
  const runtime = { ...base.runtime, workers };
  const feedback = { ...base.feedback, log: log ? ("on" as const) : ("off" as const), spillDir: path.join(home, "spill") };
  return { config: { ...base, home, store, artifacts: base.artifacts, runtime, feedback }, ownScratch };
}

/**
 * `/v2/models/{name}[/versions/{v}]`: `{name}` may itself be a reference. The same rules as the server's V2 routes
 * (src/serve/http/v2.ts), kept here so the handler does not load the HTTP server's modules at cold start.
 */
function v2Ref(name: string, version: string | undefined): string {
  if (version === undefined) return name;
  const parsed = parseModelRef(name);
  if (parsed.alias !== undefined || parsed.version !== undefined) {
    throw new MlshipError("MLSHIP_ERR_MODEL_REF_INVALID", `'${name}' already selects a version or alias; use /v2/models/${name} or /v2/models/${parsed.name}/versions/${version}`, {
      field: "version",
    });
  }
  if (!/^\d+$/.test(version) || !Number.isSafeInteger(Number(version)) || Number(version) < 1) {
    throw new MlshipError("MLSHIP_ERR_MODEL_REF_INVALID", `version '${version}' is not a version number (1, 2, ...)`, { field: "version" });
  }
  return `${parsed.name}@${Number(version)}`;
}

function decodePathPart(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `the path has a malformed escape: '${part}'`, { field: "path" });
  }
}

/** Header lookup in either case (API Gateway lower-cases v2 headers; v1 keeps the client's case). */
function header(headers: Record<string, string | undefined> | null | undefined, name: string): string | undefined {
  if (headers === null || headers === undefined) return undefined;
  const direct = headers[name];
  if (direct !== undefined) return direct;
  for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() === name) return v;
  return undefined;
}

function isHttpEventV2(event: unknown): event is HttpEventV2 {
  if (typeof event !== "object" || event === null) return false;
  const e = event as Partial<HttpEventV2>;
  return typeof e.rawPath === "string" && typeof e.requestContext?.http?.method === "string";
}

function isHttpEventV1(event: unknown): event is HttpEventV1 {
  if (typeof event !== "object" || event === null) return false;
  const e = event as Partial<HttpEventV1>;
  return typeof e.httpMethod === "string" && typeof e.path === "string";
}

interface HttpRequest {
  method: string;
  path: string;
  headers: Record<string, string | undefined> | null | undefined;
  body: Buffer;
  requestId: string;
}

function httpRequestOf(event: HttpEventV2 | HttpEventV1, context: InvocationContext | undefined): HttpRequest {
  const v2 = isHttpEventV2(event);
  const method = v2 ? event.requestContext.http.method : (event as HttpEventV1).httpMethod;
  const urlPath = v2 ? event.rawPath : (event as HttpEventV1).path;
  const raw = event.body ?? "";
  const body = event.isBase64Encoded === true ? Buffer.from(raw, "base64") : Buffer.from(raw, "utf8");
  const requestId = header(event.headers, "x-request-id") ?? context?.awsRequestId ?? event.requestContext?.requestId ?? randomUUID();
  return { method: method.toUpperCase(), path: urlPath.replace(/\/+$/, "") || "/", headers: event.headers, body, requestId };
}

function jsonResult(statusCode: number, value: unknown, requestId: string, extra: Record<string, string> = {}): HttpResult {
  return {
    statusCode,
    headers: { "content-type": JSON_TYPE, "x-request-id": requestId, ...extra },
    body: JSON.stringify(value),
    isBase64Encoded: false,
  };
}

/** 5xx answers say what kind of failure it was and carry the request id; the details go to the log (as the server). */
function shownError(e: MlshipError, requestId: string, logger: Logger): MlshipError {
  if (e.httpStatus < 500) return e;
  logger.error({ err: e.cause ?? e, code: e.code }, e.message);
  if (e.code === "MLSHIP_ERR_MODEL_NOT_READY") return e;
  return new MlshipError(e.code, `${ERROR_CODES[e.code].description} (request id ${requestId})`, { retryAfterSeconds: e.retryAfterSeconds });
}

function errorResult(err: unknown, protocol: Protocol, requestId: string, logger: Logger): HttpResult {
  const e = shownError(toMlshipError(err), requestId, logger);
  const extra: Record<string, string> = {};
  if (e.retryAfterSeconds !== undefined) extra["retry-after"] = String(Math.max(1, Math.ceil(e.retryAfterSeconds)));
  else if (e.httpStatus === 503) extra["retry-after"] = "1";
  return jsonResult(e.httpStatus, protocol === "mlflow" ? mlflowErrorBody(e) : errorBody(e), requestId, extra);
}

function isTensorLike(value: unknown): boolean {
  return typeof value === "object" && value !== null && typeof (value as { datatype?: unknown }).datatype === "string" && "data" in value;
}

/** A plain event as a scoring input: V2 when `inputs` holds V2 tensors, `records` when given, else MLflow. */
function plainInput(event: Record<string, unknown>): { protocol: Protocol; input: ScoringInput } {
  const body: Record<string, unknown> = { ...event };
  delete body.model;
  if (Array.isArray(body.inputs) && body.inputs.length > 0 && body.inputs.every(isTensorLike)) return { protocol: "v2", input: { kind: "v2", body } };
  if (Array.isArray(body.records)) return { protocol: "mlflow", input: { kind: "records", records: body.records as unknown[] } };
  return { protocol: "mlflow", input: { kind: "mlflow", body } };
}

export function createHandler(options: ServerlessOptions = {}): ServerlessHandler {
  let loading: Promise<Loaded> | undefined;
  let initMs: number | undefined;

  const load = (): Promise<Loaded> => {
    loading ??= (async () => {
      const started = performance.now();
      const { config, ownScratch } = functionConfig(options);
      const removeScratch = (): void => {
        if (ownScratch !== undefined) fs.rmSync(ownScratch, { recursive: true, force: true });
      };
      const app = await createMlship(config, options.logger === undefined ? {} : { logger: options.logger }).catch((error: unknown) => {
        removeScratch();
        throw error;
      });
      try {
        const predictionLog = config.feedback.log === "on" ? await startPredictionLog(app) : undefined;
        const defaultModel = options.model ?? config.server.defaultModel ?? undefined;
        // Loading the default model here puts the model's session start into init, not into the first request.
        if (defaultModel !== undefined) await app.scoring.load(defaultModel);
        initMs = performance.now() - started;
        return {
          app,
          defaultModel,
          bodyLimit: config.server.bodyLimitBytes,
          close: async () => {
            await predictionLog?.close();
            await app.close();
            removeScratch();
          },
        };
      } catch (error) {
        await app.close();
        removeScratch();
        throw error;
      }
    })();
    // A failed init is not cached: the next invocation tries again (e.g. after a transient store error).
    loading.catch(() => {
      loading = undefined;
    });
    return loading;
  };

  const modelOf = async (loaded: Loaded, ref: string | undefined): Promise<string> => {
    if (ref !== undefined && ref !== "") return ref;
    if (loaded.defaultModel !== undefined) return loaded.defaultModel;
    const names = await loaded.app.scoring.modelNames();
    if (names.length === 1) return names[0] as string;
    throw new MlshipError(
      "MLSHIP_ERR_MODEL_NO_DEFAULT",
      names.length === 0
        ? "no model is registered in the bundled home"
        : `the function has no default model and ${names.length} models are registered (${names.slice(0, 5).join(", ")}); set MLSHIP_DEFAULT_MODEL or name the model in the event`,
      { field: "model" },
    );
  };

  const score = async (loaded: Loaded, ref: string, input: ScoringInput, protocol: Protocol, requestId: string): Promise<ScoreResult> =>
    loaded.app.scoring.score(ref, input, { protocol: `serverless-${protocol}`, requestId });

  const http = async (event: HttpEventV2 | HttpEventV1, context: InvocationContext | undefined): Promise<HttpResult> => {
    const request = httpRequestOf(event, context);
    const v2 = V2_INFER.exec(request.path);
    const mlflow = v2 === null ? MLFLOW_INFER.exec(request.path) : null;
    const protocol: Protocol = v2 !== null ? "v2" : mlflow !== null ? "mlflow" : request.path.includes("/v2/") || request.path.startsWith("v2") ? "v2" : "mlflow";
    let loaded: Loaded | undefined;
    try {
      loaded = await load();
      const health = HEALTH.exec(request.path);
      if (request.method === "GET" && health !== null) {
        if (health[1] === "live") return jsonResult(200, { live: true }, request.requestId);
        if (health[1] === "ready") return jsonResult(200, { ready: await loaded.app.scoring.registryReachable() }, request.requestId);
        return jsonResult(200, { status: "ok" }, request.requestId);
      }
      if (request.method !== "POST" || (v2 === null && mlflow === null)) {
        throw new MlshipError("MLSHIP_ERR_SERVE_ROUTE_NOT_FOUND", `no route for ${request.method} ${request.path}; POST to /v2/models/{name}/infer or /invocations`, { field: "path" });
      }
      if (request.body.length > loaded.bodyLimit) {
        throw new MlshipError("MLSHIP_ERR_INPUT_TOO_LARGE", `the request body is larger than the limit of ${loaded.bodyLimit} bytes`, { field: "body" });
      }
      const contentType = (header(request.headers, "content-type") ?? "application/json").toLowerCase();
      if (v2 !== null) {
        const ref = v2Ref(decodePathPart(v2[1] as string), v2[2]);
        if (header(request.headers, BINARY_HEADER) !== undefined) {
          throw new MlshipError("MLSHIP_ERR_INPUT_CONTENT_TYPE", "the function handler takes V2 requests as JSON only (no binary tensor extension)", { field: BINARY_HEADER });
        }
        const input: ScoringInput = { kind: "v2", body: parseJsonBody(request.body.toString("utf8")) };
        const result = await score(loaded, await modelOf(loaded, ref), input, "v2", request.requestId);
        const answered = { "mlship-model-version": `${result.model}@${result.version}` };
        return jsonResult(200, formatV2Response(result), request.requestId, answered);
      }
      const text = request.body.toString("utf8");
      const input: ScoringInput = /^(text|application)\/csv\b/.test(contentType) ? { kind: "csv", text } : { kind: "mlflow", body: parseJsonBody(text) };
      const ref = mlflow?.[1] === undefined ? undefined : decodePathPart(mlflow[1]);
      const result = await score(loaded, await modelOf(loaded, ref), input, "mlflow", request.requestId);
      return jsonResult(200, formatMlflowResponse(result), request.requestId, { "mlship-model-version": `${result.model}@${result.version}` });
    } catch (err) {
      return errorResult(err, protocol, request.requestId, loaded?.app.logger ?? fallbackLogger(options));
    }
  };

  const plain = async (event: PlainEvent, context: InvocationContext | undefined): Promise<unknown> => {
    const requestId = context?.awsRequestId ?? randomUUID();
    let loaded: Loaded | undefined;
    try {
      loaded = await load();
      if (event.model !== undefined && typeof event.model !== "string") {
        throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "`model` must be a model reference string (name, name@3, name@production)", { field: "model" });
      }
      const { protocol, input } = plainInput(event);
      const result = await score(loaded, await modelOf(loaded, event.model), input, protocol, requestId);
      return protocol === "v2" ? formatV2Response(result) : formatMlflowResponse(result);
    } catch (err) {
      const e = shownError(toMlshipError(err), requestId, loaded?.app.logger ?? fallbackLogger(options));
      const answer: PlainError = { statusCode: e.httpStatus, ...errorBody(e) };
      return answer;
    }
  };

  const handler = (async (event: unknown, context?: InvocationContext): Promise<unknown> => {
    if (isHttpEventV2(event) || isHttpEventV1(event)) return http(event, context);
    if (typeof event === "object" && event !== null && !Array.isArray(event)) return plain(event as PlainEvent, context);
    const e = new MlshipError("MLSHIP_ERR_INPUT_INVALID", "the event must be an HTTP event (API Gateway, Function URL) or a JSON object with the request", {
      field: "event",
    });
    const answer: PlainError = { statusCode: e.httpStatus, ...errorBody(e) };
    return answer;
  }) as ServerlessHandler;

  Object.defineProperties(handler, {
    init: { value: async (): Promise<void> => void (await load()) },
    initMs: { get: () => initMs },
    close: {
      value: async (): Promise<void> => {
        const current = loading;
        loading = undefined;
        initMs = undefined;
        if (current === undefined) return;
        const loaded = await current.catch(() => undefined);
        await loaded?.close();
      },
    },
  });
  return handler;
}

let fallback: Logger | undefined;
/** Errors before the platform exists (e.g. a missing bundle) still reach the function's log. */
function fallbackLogger(options: ServerlessOptions): Logger {
  fallback ??= options.logger ?? createLogger({ level: options.config?.log.level ?? "info", name: "mlship-serverless" });
  return fallback;
}
