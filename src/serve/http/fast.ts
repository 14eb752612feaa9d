import type { IncomingMessage, ServerResponse } from "node:http";
import { performance } from "node:perf_hooks";
import { toMlshipError } from "../../core/index.js";
import type { MlshipError } from "../../core/index.js";
import type { Logger } from "../../core/index.js";
import { formatMlflowResponse, formatV2Response, parseJsonBody } from "../../scoring/index.js";
import type { ScoreResult, ScoringService } from "../../scoring/index.js";
import { binaryOutputNames, binaryResponse, INFERENCE_HEADER } from "./binary.js";
import { errorAnswer, errorVersion } from "./errors.js";
import type { RequestMetrics } from "./metrics.js";
import { defaultModelRef } from "./mlflow.js";
import type { Protocol } from "./types.js";
import type { InferenceTokens } from "./inference-auth.js";
import type { EventLoopGuard } from "./shed.js";
import { v2Ref } from "./v2.js";
import { businessKeyOf, rolloutHeaders } from "./state.js";

export interface FastPathOptions {
  scoring: ScoringService;
  defaultModel: string | undefined;
  bodyLimit: number;
  metrics: RequestMetrics | undefined;
  logger: Logger;
  /** The server's request id for a request (the `x-request-id` header, or the next generated one). */
  requestId(req: IncomingMessage): string;
  /** Load shedding: refuses new requests while the server is saturated. */
  guard?: EventLoopGuard;
  /** Per-model inference tokens, checked as mlshipPlugin's hook checks them on the Fastify routes. */
  inferenceTokens?: InferenceTokens;
}

/** The inference routes, as the Fastify routes declare them; names with `%` escapes are left to Fastify. */
const V2_INFER = /^\/v2\/models\/([^/?%]+)(?:\/versions\/([^/?%]+))?\/infer$/;
const MLFLOW_INFER = /^\/(?:invocations|v1\/models\/([^/?%]+)\/invocations)$/;
const PLAIN_JSON = /^application\/json\s*(?:;\s*charset\s*=\s*("?)utf-?8\1\s*)?$/i;
const JSON_TYPE = "application/json; charset=utf-8";
const BINARY_MARK = Buffer.from("binary_data");

interface Route {
  protocol: Protocol;
  /** The model reference, or undefined for `/invocations` (the default model). */
  ref: (() => string) | undefined;
}

function routeOf(url: string): Route | undefined {
  const v2 = V2_INFER.exec(url);
  if (v2 !== null) {
    const name = v2[1] as string;
    const version = v2[2];
    return { protocol: "v2", ref: () => v2Ref(version === undefined ? { name } : { name, version }) };
  }
  const mlflow = MLFLOW_INFER.exec(url);
  if (mlflow !== null) {
    const ref = mlflow[1];
    return { protocol: "mlflow", ref: ref === undefined ? undefined : () => ref };
  }
  return undefined;
}

/**
 * The inference routes' common case on the raw `node:http` request, in front of Fastify: a POST of plain JSON
 * with a Content-Length within the body limit, to `/invocations`, `/v1/models/{ref}/invocations` or a V2 infer
 * route. It answers exactly as the Fastify routes do (same scoring call, response and error bodies, headers and
 * metrics), without Fastify's per-request pipeline, and lets scoring answer repeated bodies from its exact-body
 * memo with the response bytes encoded the first time. Everything else (other methods and routes, CSV, the
 * binary tensor extension, chunked or compressed bodies, bodies over the limit, escaped names, query strings)
 * returns false untouched, for Fastify to handle.
 */
export function createFastPath(options: FastPathOptions): (req: IncomingMessage, res: ServerResponse) => boolean {
  const { scoring, metrics, logger } = options;
  const fixedDefault = options.defaultModel === "" ? undefined : options.defaultModel;

  const send = (res: ServerResponse, status: number, headers: string[], payload: Uint8Array): void => {
    headers.push("content-length", String(payload.byteLength));
    res.writeHead(status, headers);
    res.end(payload);
  };

  const encode = (result: ScoreResult, protocol: Protocol, body: Buffer): { payload: Uint8Array; headers: string[] } => {
    const cached = result.rendered?.get(protocol);
    if (cached !== undefined) return { payload: cached, headers: ["content-type", JSON_TYPE] };
    if (protocol === "v2" && body.includes(BINARY_MARK)) {
      // Rare: outputs asked for as binary. The body is read again here to see which (scoring has validated it).
      const binary = binaryOutputNames(parseJsonBody(body.toString("utf8")), Object.keys(result.outputs));
      if (binary.size > 0) {
        const answer = binaryResponse(result, binary);
        return { payload: answer.bytes, headers: ["content-type", "application/octet-stream", INFERENCE_HEADER, String(answer.headerLength)] };
      }
    }
    const payload = Buffer.from(JSON.stringify(protocol === "v2" ? formatV2Response(result) : formatMlflowResponse(result)), "utf8");
    result.rendered?.set(protocol, payload);
    return { payload, headers: ["content-type", JSON_TYPE] };
  };

  /** Sends an error in the route's protocol; returns the labels and status the metrics record. */
  const fail = (req: IncomingMessage, res: ServerResponse, protocol: Protocol, id: string, err: unknown): { model: string; version: string; status: number; code: string } => {
    const e = toMlshipError(err);
    const labelled = errorVersion(e);
    const headers = ["content-type", JSON_TYPE, "x-request-id", id];
    const model = labelled?.model ?? "";
    const version = labelled === undefined ? "" : String(labelled.version);
    if (labelled !== undefined) headers.push("mlship-model-version", `${model}@${version}`);
    if (e.code === "MLSHIP_ERR_AUTH_REQUIRED") headers.push("www-authenticate", 'Bearer realm="mlship"');
    const reply = errorAnswer(e, protocol, id, logger, req.url ?? "");
    if (reply.retryAfter !== undefined) headers.push("retry-after", reply.retryAfter);
    if (!res.headersSent) send(res, reply.status, headers, Buffer.from(JSON.stringify(reply.body), "utf8"));
    return { model, version, status: reply.status, code: e.code };
  };

  /** Encoded refusal bodies per refusal object (the guard makes one per tick) and protocol. */
  const refusals = new WeakMap<MlshipError, Map<Protocol, Buffer>>();
  /** A load-shedding 429: the cheapest answer the server gives, so that shedding frees the loop. */
  const refuse = (req: IncomingMessage, res: ServerResponse, protocol: Protocol, refusal: MlshipError, started: number): void => {
    let bodies = refusals.get(refusal);
    if (bodies === undefined) refusals.set(refusal, (bodies = new Map()));
    let body = bodies.get(protocol);
    if (body === undefined) {
      body = Buffer.from(JSON.stringify(errorAnswer(refusal, protocol, "", logger, req.url ?? "").body), "utf8");
      bodies.set(protocol, body);
    }
    const status = refusal.httpStatus;
    if (!res.headersSent) send(res, status, ["content-type", JSON_TYPE, "x-request-id", options.requestId(req), "retry-after", String(refusal.retryAfterSeconds ?? 1)], body);
    metrics?.record({ model: "", version: "", protocol, status, seconds: (performance.now() - started) / 1000, errorCode: refusal.code, rows: 0 });
  };

  /**
   * Fastify parses a body before its route runs, so a body that is not JSON is answered as such (no model version)
   * whatever else failed. Only on the error path: the hot path never parses twice.
   */
  const jsonErrorOf = (body: Buffer): unknown => {
    try {
      parseJsonBody(body.toString("utf8"));
      return undefined;
    } catch (err) {
      return err;
    }
  };

  const answer = async (req: IncomingMessage, res: ServerResponse, route: Route, body: Buffer, started: number): Promise<void> => {
    const id = options.requestId(req);
    const protocol = route.protocol;
    let model = "";
    let version = "";
    let rows = 0;
    let status = 200;
    let errorCode: string | undefined;
    let refusal: MlshipError | undefined;
    try {
      const ref = route.ref !== undefined ? route.ref() : fixedDefault ?? (await defaultModelRef(scoring, undefined));
      refusal = options.inferenceTokens?.refusal(ref, req.headers.authorization);
      if (refusal !== undefined) throw refusal;
      const key = businessKeyOf(req.headers);
      const result = await scoring.score(ref, { kind: "json", protocol, bytes: body }, key === undefined ? { protocol, requestId: id } : { protocol, requestId: id, key });
      model = result.model;
      version = String(result.version);
      rows = result.rows;
      const { payload, headers } = encode(result, protocol, body);
      headers.push("x-request-id", id, "mlship-model-version", `${model}@${version}`);
      if (result.cached !== undefined) headers.push("mlship-cache", result.cached ? "hit" : "miss");
      if (result.variant !== undefined) headers.push(...rolloutHeaders(result));
      send(res, 200, headers, payload);
    } catch (err) {
      // A refused token is answered as the Fastify routes answer it: before the body is looked at.
      ({ model, version, status, code: errorCode } = fail(req, res, protocol, id, refusal ?? jsonErrorOf(body) ?? err));
    }
    metrics?.record({ model, version, protocol, status, seconds: (performance.now() - started) / 1000, errorCode, rows });
  };

  return (req, res) => {
    if (req.method !== "POST") return false;
    const route = routeOf(req.url ?? "");
    if (route === undefined) return false;
    const headers = req.headers;
    const type = headers["content-type"];
    if (type === undefined || !PLAIN_JSON.test(type)) return false;
    if (headers[INFERENCE_HEADER] !== undefined || headers["content-encoding"] !== undefined || headers["transfer-encoding"] !== undefined) return false;
    const length = Number(headers["content-length"]);
    if (!Number.isSafeInteger(length) || length > options.bodyLimit) return false;
    const started = performance.now();
    const refusal = options.guard?.refusal();
    if (refusal !== undefined) {
      // Refused before the body is parsed; it is still read (and dropped) so the connection stays usable.
      req.resume();
      req.on("end", () => refuse(req, res, route.protocol, refusal, started));
      return true;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
    });
    req.on("end", () => {
      const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
      answer(req, res, route, body, started).catch((err: unknown) => {
        // answer() catches scoring's errors; only a failure to write the response lands here.
        logger.error({ err }, "inference fast path failed");
        if (!res.headersSent) res.writeHead(500).end();
      });
    });
    return true;
  };
}
