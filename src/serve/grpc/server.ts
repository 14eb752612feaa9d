import { Metadata, Server, ServerCredentials, setLogger } from "@grpc/grpc-js";
import type { sendUnaryData, ServerUnaryCall, ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import { ERROR_CODES, GrpcStatus, MlshipError, silentLogger, toMlshipError } from "../../core/index.js";
import type { ErrorCode, Logger, Tensor } from "../../core/index.js";
import { parseModelRef } from "../../registry/index.js";
import type { ModelRef, Registry } from "../../registry/index.js";
import { newRequestId, v2TensorMetadata } from "../../scoring/index.js";
import type { ScoringService } from "../../scoring/index.js";
import { mlshipVersion } from "../http/index.js";
import type { InferenceTokens } from "../http/inference-auth.js";
import { inferencePackageDefinition, SERVICE_NAME } from "./proto.js";
import { EventLoopGuard } from "../http/shed.js";
import type { ModelInferRequest, ModelInferResponse, ModelMetadataResponse, ModelRequest } from "./proto.js";
import { buildModelInfo, decodeInputs, encodeOutputs, requestedOutputs, wantsRawOutput } from "./tensors.js";
import type { ModelInfo } from "./tensors.js";

/** Default for both the largest request and the largest response, in bytes (gRPC's own default is 4 MiB). */
export const DEFAULT_GRPC_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

export interface GrpcServerOptions {
  scoring: ScoringService;
  /** Accepted for symmetry with `buildServer`; the service reads everything through `scoring`. */
  registry?: Registry;
  /** Largest message received or sent, in bytes; larger ones fail with RESOURCE_EXHAUSTED. Default 64 MiB. */
  maxMessageBytes?: number;
  logger?: Logger;
  /**
   * Load shedding as on REST (`server.maxEventLoopDelayMs`): while the event loop runs later than this, ModelInfer
   * fails at once with RESOURCE_EXHAUSTED and `retry-after`. 0 or unset: off.
   */
  maxEventLoopDelayMs?: number;
  /**
   * Per-model inference tokens (`createInferenceTokens`, as on REST): ModelInfer, ModelMetadata and ModelReady for a
   * listed model need `authorization: Bearer <one of its tokens>` metadata, else UNAUTHENTICATED (none sent) or
   * PERMISSION_DENIED (another token). Unset: open.
   */
  inferenceTokens?: InferenceTokens;
}

export interface GrpcServer {
  /** The grpc-js server (the inference service is added; not bound until `listen`). */
  readonly server: Server;
  /** Binds `host:port` (0 = any free port) without TLS and resolves with the bound port. */
  listen(host: string, port: number): Promise<number>;
  /**
   * Stops taking calls and turns ServerReady false, lets in-flight calls finish for up to `graceMs`, then
   * cancels what is left. Idempotent.
   */
  close(graceMs?: number): Promise<void>;
}

/** Trailer names; grpc metadata keys are lower case. */
export const TRAILER_ERROR_CODE = "mlship-error-code";
export const TRAILER_ERROR_FIELD = "mlship-error-field";
export const TRAILER_MODEL_VERSION = "mlship-model-version";
/** `hit` or `miss` on ModelInfer when the version uses the prediction cache (REST's `mlship-cache` header). */
export const TRAILER_CACHE = "mlship-cache";
/** Seconds to wait before retrying, on RESOURCE_EXHAUSTED (max_queue) and UNAVAILABLE (REST's `Retry-After`). */
export const TRAILER_RETRY_AFTER = "retry-after";

/** ASCII metadata values only; anything else (a non-ASCII input name in a field path) is percent-encoded. */
function metadataValue(value: string): string {
  return /^[ -~]*$/.test(value) ? value : encodeURIComponent(value);
}

interface Fields {
  name: string;
  version: string;
}

function parseRef(text: string, field: string): ModelRef {
  try {
    return parseModelRef(text);
  } catch (err) {
    const e = toMlshipError(err);
    throw new MlshipError(e.code, `${field}: ${e.message}`, { field, cause: e });
  }
}

/**
 * A reference from a name (which may itself be a reference, `breast-cancer@production`) and an optional
 * version number, as the REST routes read `/v2/models/{name}[/versions/{v}]`: both selecting is an error.
 */
function modelRef(name: string, version: string, fields: Fields): string {
  if (name === "") throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", `${fields.name} is required`, { field: fields.name });
  const parsed = parseRef(name, fields.name);
  if (version === "") return name;
  if (parsed.alias !== undefined || parsed.version !== undefined) {
    const selects = parsed.alias !== undefined ? `alias '${parsed.alias}'` : `version ${parsed.version}`;
    throw new MlshipError(
      "MLSHIP_ERR_MODEL_REF_INVALID",
      `${fields.version}: ${fields.name} '${name}' already selects ${selects}; set ${fields.name} '${name}' alone, or ${fields.name} '${parsed.name}' with ${fields.version} '${version}'`,
      { field: fields.version },
    );
  }
  if (!/^\d+$/.test(version) || Number(version) < 1 || !Number.isSafeInteger(Number(version))) {
    throw new MlshipError("MLSHIP_ERR_MODEL_REF_INVALID", `${fields.version}: '${version}' is not a version number (1, 2, ...)`, { field: fields.version });
  }
  return `${parsed.name}@${Number(version)}`;
}

const REF_CODES = new Set<ErrorCode>([
  "MLSHIP_ERR_MODEL_NOT_FOUND",
  "MLSHIP_ERR_MODEL_VERSION_NOT_FOUND",
  "MLSHIP_ERR_MODEL_ALIAS_NOT_FOUND",
  "MLSHIP_ERR_MODEL_REF_INVALID",
]);

interface CallContext {
  fields: Fields;
  /** Whether the request set its version field (else a version came from the name, `iris@3`). */
  versionGiven: boolean;
  infer: ModelInferRequest | undefined;
}

/** The registry and scoring name fields in their own vocabulary; on gRPC they become the request's field paths. */
function requestField(e: MlshipError, ctx: CallContext): string | undefined {
  const field = e.field;
  if (field === undefined) return undefined;
  if (REF_CODES.has(e.code)) {
    if (field === ctx.fields.name || field === ctx.fields.version) return field;
    return field === "version" && ctx.versionGiven ? ctx.fields.version : ctx.fields.name;
  }
  const request = ctx.infer;
  if (request === undefined) return field;
  const raw = request.raw_input_contents.length > 0;
  for (let i = 0; i < request.inputs.length; i++) {
    const name = request.inputs[i]?.name;
    if (name === undefined || name === "") continue;
    if (field === name) return `inputs[${i}]`;
    // Image decoding names the element as `<input>[j]`.
    const m = field.startsWith(`${name}[`) ? /^\[(\d+)\]$/.exec(field.slice(name.length)) : null;
    if (m !== null) return raw ? `raw_input_contents[${i}][${m[1]}]` : `inputs[${i}].contents.bytes_contents[${m[1]}]`;
  }
  return field;
}

interface Reply<R> {
  response: R;
  /** A version that answered, for the `mlship-model-version` trailer. */
  modelVersion?: string;
  /** Whether the prediction cache answered; undefined when the version does not use one. */
  cached?: boolean;
  /** Which variant of a rollout answered, and the rollout (`mlship-variant`, `mlship-rollout` trailers). */
  variant?: string;
  rolloutId?: string;
}

/** What the call's metadata says about the request, for handlers. */
interface CallInfo {
  /** `x-request-id` metadata, else the V2 request `id`, else a new one: the id the prediction is logged under. */
  requestId: string;
  /** `mlship-key` metadata: the caller's business key. */
  key: string | undefined;
}

/**
 * Why the call's AbortSignal fired: its gRPC deadline passed (grpc-js has already answered DEADLINE_EXCEEDED) or
 * the client cancelled it. The reason reaches the batcher, which drops the request if its run has not started, and
 * the scoring events; the client never sees it.
 */
function cancellation(call: Pick<ServerUnaryCall<unknown, unknown>, "getDeadline">): MlshipError {
  const deadline = call.getDeadline();
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  // grpc-js's own deadline timer may fire a few milliseconds before Date.now() reaches the deadline.
  if (Number.isFinite(at) && Date.now() + 20 >= at) {
    return new MlshipError("MLSHIP_ERR_SERVE_TIMEOUT", "the call's gRPC deadline passed before it was answered");
  }
  return new MlshipError("MLSHIP_ERR_RUNTIME_UNAVAILABLE", "the client cancelled the call before it was answered");
}

/** The gRPC side of mlship: the Open Inference Protocol service over the scoring pipeline. */
export function createGrpcServer(options: GrpcServerOptions): GrpcServer {
  const { scoring } = options;
  const logger = options.logger ?? silentLogger();
  const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_GRPC_MAX_MESSAGE_BYTES;
  const inferenceTokens = options.inferenceTokens;
  const guard = new EventLoopGuard(options.maxEventLoopDelayMs ?? 0);
  let draining = false;

  // Signatures per version (keyed by digest too, so a re-registered name never reuses a stale entry).
  const infos = new Map<string, Promise<ModelInfo>>();
  const MAX_INFOS = 256;
  const modelInfo = async (ref: string): Promise<ModelInfo> => {
    const resolved = await scoring.resolve(ref);
    const v = resolved.version;
    const key = `${v.name}@${v.version}#${v.digest}`;
    let pending = infos.get(key);
    if (pending === undefined) {
      // Pinned to the version just resolved, so an alias moving meanwhile cannot mix two signatures.
      pending = scoring.metadata(`${v.name}@${v.version}`).then((md) => buildModelInfo(md, v.manifest));
      if (infos.size >= MAX_INFOS) infos.delete(infos.keys().next().value as string);
      infos.set(key, pending);
      pending.catch(() => {
        if (infos.get(key) === pending) infos.delete(key);
      });
    }
    return pending;
  };

  const failure = (err: unknown, method: string, requestId: string, ctx: CallContext, cancelled: boolean) => {
    const e = toMlshipError(err);
    const field = requestField(e, ctx);
    const trailer = new Metadata();
    trailer.set(TRAILER_ERROR_CODE, e.code);
    if (field !== undefined) trailer.set(TRAILER_ERROR_FIELD, metadataValue(field));
    const model = e.details?.model;
    const version = e.details?.version;
    if (typeof model === "string" && (typeof version === "number" || typeof version === "string")) {
      trailer.set(TRAILER_MODEL_VERSION, metadataValue(`${model}@${version}`));
    }
    trailer.set("x-request-id", metadataValue(requestId));
    if (e.retryAfterSeconds !== undefined || e.grpcStatus === GrpcStatus.UNAVAILABLE) {
      trailer.set(TRAILER_RETRY_AFTER, String(Math.max(1, Math.ceil(e.retryAfterSeconds ?? 1))));
    }
    let details: string;
    if (cancelled) {
      // Nobody is waiting for this answer any more (the deadline passed or the client went away): not a failure.
      logger.debug({ code: e.code, method, requestId }, `call ended by the client: ${e.message}`);
      details = e.message;
    } else if (e.httpStatus >= 500 && e.code !== "MLSHIP_ERR_MODEL_NOT_READY") {
      // Internal failures say what kind they were; the details go to the log only.
      logger.error({ err: e.cause ?? e, code: e.code, method, requestId }, e.message);
      details = `${ERROR_CODES[e.code].description} (request id ${requestId})`;
    } else {
      logger.debug({ code: e.code, field, method, requestId }, e.message);
      details = field !== undefined && !e.message.includes(field) ? `${field}: ${e.message}` : e.message;
    }
    return { code: e.grpcStatus, details, metadata: trailer };
  };

  /**
   * Runs a handler; every outcome, thrown or not, becomes one status (a bad request never escapes). `refOf` names the
   * model a call reaches, for the inference tokens, checked here before the handler runs.
   */
  const unary = <Q, R>(
    method: string,
    fields: Fields,
    handle: (request: Q, signal: AbortSignal, info: CallInfo) => Promise<Reply<R>>,
    refOf?: (request: Q) => string,
  ) => {
    return (call: ServerUnaryCall<Q, R>, callback: sendUnaryData<R>): void => {
      const given = call.metadata.get("x-request-id")[0];
      const bodyId = (call.request as { id?: unknown } | null)?.id;
      const requestId = typeof given === "string" && given !== "" ? given : typeof bodyId === "string" && bodyId !== "" ? bodyId : newRequestId();
      const keyValue = call.metadata.get("mlship-key")[0];
      const info: CallInfo = { requestId, key: typeof keyValue === "string" && keyValue !== "" ? keyValue : undefined };
      // grpc-js emits `cancelled` when the client's deadline passes or it cancels, and also once the answer is
      // sent; only the first two abort the work (a request still queued is then dropped and never runs).
      const controller = new AbortController();
      let answered = false;
      const onCancelled = (): void => {
        if (!answered && !controller.signal.aborted) controller.abort(cancellation(call));
      };
      call.once("cancelled", onCancelled);
      if (call.cancelled) onCancelled();
      const settle = (): void => {
        answered = true;
        call.removeListener("cancelled", onCancelled);
      };
      let pending: Promise<Reply<R>>;
      try {
        if (refOf !== undefined && inferenceTokens !== undefined) {
          const authorization = call.metadata.get("authorization")[0];
          const refusal = inferenceTokens.refusal(refOf(call.request), typeof authorization === "string" ? authorization : undefined);
          if (refusal !== undefined) throw refusal;
        }
        pending = handle(call.request, controller.signal, info);
      } catch (err) {
        pending = Promise.reject(err);
      }
      pending.then(
        (reply) => {
          settle();
          const trailer = new Metadata();
          trailer.set("x-request-id", metadataValue(requestId));
          if (reply.modelVersion !== undefined) trailer.set(TRAILER_MODEL_VERSION, metadataValue(reply.modelVersion));
          if (reply.cached !== undefined) trailer.set(TRAILER_CACHE, reply.cached ? "hit" : "miss");
          if (reply.variant !== undefined) {
            trailer.set("mlship-variant", reply.variant);
            trailer.set("mlship-rollout", metadataValue(reply.rolloutId ?? ""));
          }
          callback(null, reply.response, trailer);
        },
        (err: unknown) => {
          const cancelled = controller.signal.aborted;
          settle();
          const request = call.request as Partial<ModelInferRequest & ModelRequest>;
          const version = method === "ModelInfer" ? request.model_version : request.version;
          const ctx: CallContext = {
            fields,
            versionGiven: typeof version === "string" && version !== "",
            infer: method === "ModelInfer" ? (call.request as ModelInferRequest) : undefined,
          };
          // After a cancellation grpc-js has already ended the call and ignores this status.
          callback(failure(err, method, requestId, ctx, cancelled));
        },
      );
    };
  };

  const MODEL_FIELDS: Fields = { name: "name", version: "version" };
  const INFER_FIELDS: Fields = { name: "model_name", version: "model_version" };
  const modelRefOf = (request: ModelRequest): string => modelRef(request.name, request.version, MODEL_FIELDS);

  const handlers: UntypedServiceImplementation = {
    ServerLive: unary("ServerLive", MODEL_FIELDS, async () => ({ response: { live: true } })),

    ServerReady: unary("ServerReady", MODEL_FIELDS, async () => ({
      response: { ready: !draining && (await scoring.servingReady()) },
    })),

    ServerMetadata: unary("ServerMetadata", MODEL_FIELDS, async () => ({
      response: { name: "mlship", version: mlshipVersion(), extensions: [] as string[] },
    })),

    ModelReady: unary("ModelReady", MODEL_FIELDS, async (request: ModelRequest) => {
      const ref = modelRef(request.name, request.version, MODEL_FIELDS);
      const resolved = await scoring.resolve(ref);
      const ready = await scoring.isReady(ref);
      return { response: { ready }, modelVersion: `${resolved.version.name}@${resolved.version.version}` };
    }, modelRefOf),

    ModelMetadata: unary("ModelMetadata", MODEL_FIELDS, async (request: ModelRequest): Promise<Reply<ModelMetadataResponse>> => {
      const md = await scoring.metadata(modelRef(request.name, request.version, MODEL_FIELDS));
      return {
        response: {
          name: md.name,
          versions: md.versions.map(String),
          platform: md.platform,
          inputs: md.signature.inputs.map(v2TensorMetadata),
          outputs: md.signature.outputs.map(v2TensorMetadata),
        },
        modelVersion: `${md.name}@${md.version}`,
      };
    }, modelRefOf),

    ModelInfer: unary("ModelInfer", INFER_FIELDS, async (request: ModelInferRequest, signal, info): Promise<Reply<ModelInferResponse>> => {
      const refusal = guard.refusal();
      if (refusal !== undefined) throw refusal;
      const ref = modelRef(request.model_name, request.model_version, INFER_FIELDS);
      const model = await modelInfo(ref);
      let raw: boolean;
      let outputs: string[] | undefined;
      let feeds: Record<string, Tensor>;
      try {
        raw = wantsRawOutput(request);
        outputs = requestedOutputs(request, model);
        feeds = decodeInputs(request, model);
      } catch (err) {
        // Like the scoring pipeline's own refusals, these name the version that refused the request.
        const e = toMlshipError(err);
        throw new MlshipError(e.code, e.message, { field: e.field, cause: e, details: { ...e.details, model: model.name, version: model.version } });
      }
      const result = await scoring.score(ref, { kind: "tensors", feeds }, { outputs, protocol: "grpc", requestId: info.requestId, signal, ...(info.key === undefined ? {} : { key: info.key }) });
      const encoded = encodeOutputs(result.outputs, raw, result.jsonOutputs);
      return {
        response: {
          model_name: result.model,
          model_version: String(result.version),
          id: request.id,
          outputs: encoded.outputs,
          raw_output_contents: encoded.raw_output_contents,
        },
        modelVersion: `${result.model}@${result.version}`,
        cached: result.cached,
        ...(result.variant === undefined ? {} : { variant: result.variant, rolloutId: result.rolloutId }),
      };
    }, (request: ModelInferRequest) => modelRef(request.model_name, request.model_version, INFER_FIELDS)),
  };

  // grpc-js prints its own diagnostics with console.error (a bind failure, which listen() reports anyway); they
  // go to the log instead, so a CLI failure stays one line on stderr. The setting is process-wide.
  const forward = (...args: unknown[]): void => logger.debug({ component: "grpc-js" }, args.map(String).join(" "));
  setLogger({ error: forward, info: forward, debug: forward });

  const server = new Server({
    "grpc.max_receive_message_length": maxMessageBytes,
    "grpc.max_send_message_length": maxMessageBytes,
  });
  server.addService(inferencePackageDefinition()[SERVICE_NAME] as ServiceDefinition, handlers);

  let closing: Promise<void> | undefined;
  return {
    server,
    listen(host, port) {
      const address = host.includes(":") && !host.startsWith("[") ? `[${host}]:${port}` : `${host}:${port}`;
      return new Promise<number>((resolve, reject) => {
        server.bindAsync(address, ServerCredentials.createInsecure(), (err, bound) => {
          if (err !== null) reject(err);
          else {
            logger.info({ address: `${host}:${bound}` }, "gRPC inference service is listening");
            resolve(bound);
          }
        });
      });
    },
    close(graceMs = 10_000) {
      draining = true;
      guard.close();
      closing ??= new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          logger.warn({ graceMs }, "gRPC shutdown grace period over: cancelling the calls still running");
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      return closing;
    },
  };
}
