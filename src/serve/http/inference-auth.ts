import type { FastifyReply, FastifyRequest, onRequestHookHandler } from "fastify";
import { MlshipError } from "../../core/index.js";
import { parseModelRef } from "../../registry/index.js";
import type { ScoringService } from "../../scoring/index.js";
import { bearerToken, createTokenCheck } from "./auth.js";
import { sendError } from "./errors.js";
import { defaultModelRef } from "./mlflow.js";
import type { RouteConfig } from "./types.js";
import { v2Ref } from "./v2.js";

/** Model name -> the bearer tokens that may reach it (`server.inferenceTokensFile`). */
export type InferenceTokenMap = Readonly<Record<string, readonly string[]>>;

/**
 * The per-model inference tokens, checked in constant time: every listed token of the model (and the admin token)
 * is compared against the presented one, each through `createTokenCheck`, and none is skipped once one matches.
 */
export interface InferenceTokens {
  /** The models that need a token. */
  readonly models: ReadonlySet<string>;
  /**
   * The error a request for `ref` (any reference: `name`, `name@alias`, `name@3`, `models:/name@alias`) gets with
   * this `Authorization` value (HTTP header or gRPC metadata), or undefined when it may pass: the model is not listed,
   * or the bearer token is one of its tokens or the admin token. An unparsable reference passes (the route refuses it).
   */
  refusal(ref: string, authorization: string | undefined): MlshipError | undefined;
}

export function createInferenceTokens(tokens: InferenceTokenMap, options: { adminToken?: string | null } = {}): InferenceTokens {
  const admin = options.adminToken === undefined || options.adminToken === null ? undefined : createTokenCheck(options.adminToken);
  const checks = new Map<string, ((presented: string) => boolean)[]>();
  for (const [model, list] of Object.entries(tokens)) {
    if (list.length === 0) throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `model ${model} is listed with no inference token`, { field: "server.inferenceTokensFile" });
    checks.set(model, [...list.map((token) => createTokenCheck(token, "server.inferenceTokensFile")), ...(admin === undefined ? [] : [admin])]);
  }
  const models = new Set(checks.keys());
  return {
    models,
    refusal(ref, authorization) {
      if (checks.size === 0) return undefined;
      let model: string;
      try {
        model = parseModelRef(ref).name;
      } catch {
        return undefined;
      }
      const modelChecks = checks.get(model);
      if (modelChecks === undefined) return undefined;
      const presented = bearerToken(authorization);
      if (presented === undefined) {
        return new MlshipError("MLSHIP_ERR_AUTH_REQUIRED", `model '${model}' needs an inference token: send Authorization: Bearer <token>`, {
          field: "authorization",
        });
      }
      let accepted = false;
      for (const check of modelChecks) accepted = check(presented) || accepted;
      if (accepted) return undefined;
      return new MlshipError("MLSHIP_ERR_AUTH_INVALID", `the bearer token is not an inference token of model '${model}'`, { field: "authorization" });
    },
  };
}

/**
 * The model reference a request of an inference route reaches, as its handler resolves it (`RouteConfig.model`), or
 * undefined when the route names none or the reference is malformed (the handler then answers that error itself).
 */
async function requestRef(
  request: FastifyRequest,
  scoring: ScoringService,
  defaultModel: string | undefined,
  deploymentRef: ((name: string) => Promise<string>) | undefined,
): Promise<string | undefined> {
  const target = (request.routeOptions.config as Partial<RouteConfig> | undefined)?.model;
  if (target === undefined) return undefined;
  const params = request.params as { name?: string; version?: string; ref?: string };
  if (target === "deployment") {
    if (params.name === undefined || deploymentRef === undefined) return undefined;
    try {
      return await deploymentRef(params.name);
    } catch (error) {
      // Only an unknown deployment goes on to its handler's 404. Any other failure (the store) ends the request here:
      // the handler looks the reference up again, and that lookup may succeed, past a check that was never made.
      if (error instanceof MlshipError && error.code === "MLSHIP_ERR_DEPLOYMENT_NOT_FOUND") return undefined;
      throw error;
    }
  }
  try {
    if (target === "default") return await defaultModelRef(scoring, defaultModel);
    if (target === "ref") return params.ref;
    if (params.name === undefined) return undefined;
    return v2Ref(params.version === undefined ? { name: params.name } : { name: params.name, version: params.version });
  } catch (error) {
    // A reference the request gets wrong (malformed, no default model) goes on to its handler's 4xx. Anything else
    // (the store failing) ends the request here, as for deployments: the handler's own lookup might succeed.
    if (error instanceof MlshipError && error.httpStatus < 500) return undefined;
    throw error;
  }
}

/**
 * mlshipPlugin's `onRequest` hook for the inference routes (V2 infer, metadata and ready; MLflow `/invocations`,
 * `/v1/models/{ref}/invocations` and `/v1/deployments/{name}/invocations`, which reaches the deployment's model): a request reaching a listed model without one of its tokens is refused before its
 * body is read, 401 `MLSHIP_ERR_AUTH_REQUIRED` (with `WWW-Authenticate`) or 403 `MLSHIP_ERR_AUTH_INVALID`, in the
 * route's error format. The standalone server's fast path makes the same check (`fast.ts`).
 */
export function inferenceTokenHook(
  tokens: InferenceTokens,
  scoring: ScoringService,
  defaultModel: string | undefined,
  deploymentRef?: (name: string) => Promise<string>,
): onRequestHookHandler {
  return async function checkInferenceToken(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> {
    const ref = await requestRef(request, scoring, defaultModel, deploymentRef);
    if (ref === undefined) return undefined;
    const refusal = tokens.refusal(ref, request.headers.authorization);
    if (refusal === undefined) return undefined;
    if (refusal.code === "MLSHIP_ERR_AUTH_REQUIRED") reply.header("www-authenticate", 'Bearer realm="mlship"');
    // Returning the reply ends the request here (Fastify's rule for async hooks that answer).
    return sendError(request, reply, refusal);
  };
}
