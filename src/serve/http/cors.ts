import type { FastifyReply, FastifyRequest, onRequestHookHandler } from "fastify";

/** Which browser origins may call the server: exact origins, or any (`*`). */
export interface CorsOrigins {
  any: boolean;
  exact: ReadonlySet<string>;
}

/** The CORS setting of `buildServer`, or undefined when it is off (no origins: the default). */
export function corsOriginsOf(origins: readonly string[] | undefined): CorsOrigins | undefined {
  if (origins === undefined || origins.length === 0) return undefined;
  return { any: origins.includes("*"), exact: new Set(origins.filter((origin) => origin !== "*")) };
}

const ALLOWED_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE";
/** What a browser may send: the JSON content type, the bearer token and mlship's own request headers. */
const ALLOWED_HEADERS = "authorization, content-type, x-request-id, mlship-key, inference-header-content-length, x-mlship-user";
/** What a browser's script may read besides the CORS-safelisted response headers. */
const EXPOSED_HEADERS = "x-request-id, mlship-model-version, mlship-cache, mlship-variant, mlship-rollout, retry-after, www-authenticate, inference-header-content-length";
const PREFLIGHT_MAX_AGE_SECONDS = "600";

/**
 * An `onRequest` hook for the listed origins only: their requests get `Access-Control-Allow-Origin` (the origin
 * itself, or `*` when any origin is allowed) and their preflights (`OPTIONS` with `Access-Control-Request-Method`)
 * a 204. Other origins get no CORS header, so their scripts cannot read answers. Credentials are never allowed:
 * tokens travel in the `Authorization` header, which a script sends on purpose, never as cookies.
 */
export function corsHook(cors: CorsOrigins): onRequestHookHandler {
  return function applyCors(request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): void {
    const origin = request.headers.origin;
    if (origin === undefined) {
      done();
      return;
    }
    // The answer depends on Origin even when it is refused: caches must not hand one origin's answer to another.
    reply.header("vary", "Origin");
    if (!cors.any && !cors.exact.has(origin)) {
      done();
      return;
    }
    reply.header("access-control-allow-origin", cors.any ? "*" : origin);
    if (request.method === "OPTIONS" && request.headers["access-control-request-method"] !== undefined) {
      reply
        .code(204)
        .header("access-control-allow-methods", ALLOWED_METHODS)
        .header("access-control-allow-headers", ALLOWED_HEADERS)
        .header("access-control-max-age", PREFLIGHT_MAX_AGE_SECONDS)
        .send();
      return;
    }
    reply.header("access-control-expose-headers", EXPOSED_HEADERS);
    done();
  };
}
