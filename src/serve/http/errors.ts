import type { FastifyReply, FastifyRequest } from "fastify";
import { ERROR_CODES, errorBody, MlshipError, mlflowErrorBody, toMlshipError } from "../../core/index.js";
import type { Logger } from "../../core/index.js";
import { answeredBy, requestState } from "./state.js";
import type { Protocol, RouteConfig } from "./types.js";

export const SUPPORTED_TYPES = "application/json, text/csv or application/csv";

function fastifyCode(err: unknown): string | undefined {
  const code = typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === "string" ? code : undefined;
}

function statusOf(err: unknown): number | undefined {
  const status = typeof err === "object" && err !== null ? (err as { statusCode?: unknown }).statusCode : undefined;
  return typeof status === "number" ? status : undefined;
}

/** Maps Fastify's own FST_ERR_* errors (and anything else) onto platform errors. */
export function toHttpError(err: unknown, request: FastifyRequest): MlshipError {
  if (err instanceof MlshipError) return err;
  const code = fastifyCode(err);
  const message = err instanceof Error ? err.message : String(err);
  switch (code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new MlshipError(
        "MLSHIP_ERR_INPUT_TOO_LARGE",
        `the request body is larger than the limit of ${request.routeOptions.bodyLimit ?? "the configured"} bytes`,
        { field: "body" },
      );
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE": {
      const type = request.headers["content-type"];
      return new MlshipError(
        "MLSHIP_ERR_INPUT_CONTENT_TYPE",
        type === undefined
          ? `the request has no Content-Type; send ${SUPPORTED_TYPES}`
          : `unsupported content type '${type}'; send ${SUPPORTED_TYPES}`,
        { field: "content-type" },
      );
    }
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return new MlshipError("MLSHIP_ERR_INPUT_JSON", "the request body is empty; send a JSON document", { field: "body" });
    case "FST_ERR_CTP_INVALID_JSON_BODY":
      return new MlshipError("MLSHIP_ERR_INPUT_JSON", `malformed JSON: ${message}`, { field: "body" });
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return new MlshipError("MLSHIP_ERR_INPUT_INVALID", "the Content-Length header does not match the body", { field: "content-length" });
    case "FST_ERR_BAD_URL":
      return new MlshipError("MLSHIP_ERR_INPUT_INVALID", `the URL is not valid: ${request.url}`, { field: "url" });
    case "FST_ERR_MAX_PARAM_LENGTH":
      // Fastify's own status is 414; a path segment (a model reference) too long is bad input like any other.
      return new MlshipError("MLSHIP_ERR_INPUT_INVALID", "a path segment of the URL (a model reference or version) is too long", { field: "url" });
    case "FST_ERR_VALIDATION":
      return new MlshipError("MLSHIP_ERR_INPUT_INVALID", message);
    default:
      break;
  }
  const status = statusOf(err);
  if (status === 413) return new MlshipError("MLSHIP_ERR_INPUT_TOO_LARGE", message, { field: "body" });
  if (status === 415) return new MlshipError("MLSHIP_ERR_INPUT_CONTENT_TYPE", message, { field: "content-type" });
  if (status !== undefined && status >= 400 && status < 500) return new MlshipError("MLSHIP_ERR_INPUT_INVALID", message);
  return toMlshipError(err);
}

export function routeProtocol(request: FastifyRequest): Protocol {
  const config = request.routeOptions.config as Partial<RouteConfig> | undefined;
  if (config?.protocol !== undefined) return config.protocol;
  return /^\/(invocations|ping|health|version)(\/|\?|$)|^\/v1\//.test(request.url) ? "mlflow" : "v2";
}

/** What an error answer consists of, whichever way it is sent. */
export interface ErrorAnswer {
  status: number;
  /** `Retry-After` in seconds, when the client should try again. */
  retryAfter: string | undefined;
  body: unknown;
}

/**
 * An error in a route's protocol: V2/native `{"error","code","field"}`, MLflow
 * `{"error_code","message","mlship_code","field"}`. 5xx bodies say what kind of failure it was and carry the
 * request id; the details go to the log only.
 */
export function errorAnswer(e: MlshipError, protocol: Protocol, requestId: string, log: Pick<Logger, "error" | "debug">, url: string): ErrorAnswer {
  const status = e.httpStatus;
  let shown = e;
  if (status >= 500) {
    log.error({ err: e.cause ?? e, code: e.code, url }, e.message);
    if (e.code !== "MLSHIP_ERR_MODEL_NOT_READY") {
      shown = new MlshipError(e.code, `${ERROR_CODES[e.code].description} (request id ${requestId})`, {
        retryAfterSeconds: e.retryAfterSeconds,
      });
    }
  } else {
    log.debug({ code: e.code, field: e.field, url }, e.message);
  }
  let retryAfter: string | undefined;
  if (e.retryAfterSeconds !== undefined) retryAfter = String(Math.max(1, Math.ceil(e.retryAfterSeconds)));
  else if (status === 503) retryAfter = "1";
  return { status, retryAfter, body: protocol === "mlflow" ? mlflowErrorBody(shown) : errorBody(shown) };
}

/** The model version an error was labelled with by scoring (for metrics and the version header). */
export function errorVersion(e: MlshipError): { model: string; version: number | string } | undefined {
  const model = e.details?.model;
  const version = e.details?.version;
  return typeof model === "string" && (typeof version === "number" || typeof version === "string") ? { model, version } : undefined;
}

/** Sends an error in the route's protocol (see `errorAnswer`). */
export function sendError(request: FastifyRequest, reply: FastifyReply, err: unknown, protocol = routeProtocol(request)): FastifyReply {
  const e = toHttpError(err, request);
  requestState(request).errorCode = e.code;
  const labelled = errorVersion(e);
  if (labelled !== undefined) answeredBy(request, reply, labelled.model, labelled.version);
  const answer = errorAnswer(e, protocol, String(request.id), request.log, request.url);
  if (answer.retryAfter !== undefined) reply.header("retry-after", answer.retryAfter);
  reply.code(answer.status).type("application/json; charset=utf-8");
  return reply.send(answer.body);
}
