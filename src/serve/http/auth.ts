import { createHash, timingSafeEqual } from "node:crypto";
import type { FastifyReply, FastifyRequest, onRequestHookHandler } from "fastify";
import { MlshipError } from "../../core/index.js";
import { sendError } from "./errors.js";

/** The management API: actions under it need the admin token (when the server has one). */
export const MANAGEMENT_PREFIX = "/api/v1/";

/** Methods that only read; every other method under `/api/v1/` is an action. */
const READ_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS"]);

const BEARER = /^Bearer[ \t]+(\S.*)$/i;

function digest(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

/** The request's path as routed: percent-decoded (`/%61pi/v1/...` reaches `/api/v1/...` routes), no query. */
function routedPath(url: string): string {
  const path = url.split("?", 1)[0] ?? "";
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}

/**
 * Whether a request is an action of the management API (`<prefix>/api/v1/...`, any method but GET, HEAD and
 * OPTIONS), judged by the route it matched and by its decoded path, so no spelling of a path gets around it.
 */
export function isManagementAction(request: FastifyRequest, prefix = ""): boolean {
  if (READ_METHODS.has(request.method)) return false;
  const management = `${prefix}${MANAGEMENT_PREFIX}`;
  const pattern = request.routeOptions.url;
  return (pattern !== undefined && pattern.startsWith(management)) || routedPath(request.url).startsWith(management);
}

/**
 * Checks a bearer token against a token (the admin token, an inference token) in constant time: both are hashed
 * first, so neither their contents nor their lengths show in how long the comparison takes.
 */
export function createTokenCheck(token: string, field = "server.adminToken"): (presented: string) => boolean {
  if (token.trim() === "") throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", "a token must not be empty", { field });
  const expected = digest(token);
  return (presented) => timingSafeEqual(digest(presented), expected);
}

/** The token of an `Authorization: Bearer <token>` value (scheme in any case, spaces trimmed), or undefined. */
export function bearerToken(authorization: string | undefined): string | undefined {
  const match = authorization === undefined ? null : BEARER.exec(authorization.trim());
  if (match === null) return undefined;
  const token = (match[1] ?? "").trim();
  return token === "" ? undefined : token;
}

/** The error an action gets without the right token, or undefined when the token is right. */
export function adminTokenRefusal(authorization: string | undefined, check: (presented: string) => boolean): MlshipError | undefined {
  const presented = bearerToken(authorization);
  if (presented === undefined) {
    return new MlshipError(
      "MLSHIP_ERR_AUTH_REQUIRED",
      "this action needs the admin token: send Authorization: Bearer <token> (reads under /api/v1/ stay open)",
      { field: "authorization" },
    );
  }
  if (!check(presented)) {
    return new MlshipError("MLSHIP_ERR_AUTH_INVALID", "the bearer token is not the server's admin token", { field: "authorization" });
  }
  return undefined;
}

/**
 * An `onRequest` hook that refuses actions under `/api/v1/` (POST, PUT, PATCH, DELETE, ...) without
 * `Authorization: Bearer <adminToken>`: 401 `MLSHIP_ERR_AUTH_REQUIRED` (with `WWW-Authenticate`) when no bearer token
 * is sent, 403 `MLSHIP_ERR_AUTH_INVALID` when it is not the admin token. Reads and the inference routes (`/v2/...`,
 * `/invocations`, `/v1/...`) are left alone. Added on the root instance, it covers routes registered later by any
 * plugin. Add it to your own Fastify server to protect mlshipPlugin's management routes the same way (`prefix`: the
 * prefix the plugin is mounted under, e.g. `/ml`).
 */
export function adminTokenHook(adminToken: string, options: { prefix?: string } = {}): onRequestHookHandler {
  const check = createTokenCheck(adminToken);
  const prefix = options.prefix ?? "";
  return function checkAdminToken(request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): void {
    if (!isManagementAction(request, prefix)) {
      done();
      return;
    }
    const refusal = adminTokenRefusal(request.headers.authorization, check);
    if (refusal === undefined) {
      done();
      return;
    }
    if (refusal.code === "MLSHIP_ERR_AUTH_REQUIRED") reply.header("www-authenticate", 'Bearer realm="mlship"');
    sendError(request, reply, refusal, "v2");
  };
}
