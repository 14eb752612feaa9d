import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { MlshipError } from "../../core/index.js";
import { formatMlflowResponse } from "../../scoring/index.js";
import type { ScoringService } from "../../scoring/index.js";
import { CsvBody } from "./content.js";
import { answeredBy, businessKeyOf, headerObject, rolloutHeaders } from "./state.js";
import type { RouteConfig } from "./types.js";
import { mlshipVersion } from "./version.js";

const MLFLOW: RouteConfig = { protocol: "mlflow" };
const MLFLOW_DEFAULT_INFER: RouteConfig = { protocol: "mlflow", inference: true, metricsProtocol: "mlflow", model: "default" };
const MLFLOW_INFER: RouteConfig = { protocol: "mlflow", inference: true, metricsProtocol: "mlflow", model: "ref" };
const MLFLOW_DEPLOYMENT_INFER: RouteConfig = { protocol: "mlflow", inference: true, metricsProtocol: "mlflow", model: "deployment" };

/** `/invocations` serves the configured default model, or the only registered one (conventions.md). */
export async function defaultModelRef(scoring: ScoringService, defaultModel: string | undefined): Promise<string> {
  if (defaultModel !== undefined && defaultModel !== "") return defaultModel;
  const names = await scoring.modelNames();
  if (names.length === 1) return names[0] as string;
  throw new MlshipError(
    "MLSHIP_ERR_MODEL_NO_DEFAULT",
    names.length === 0
      ? "no model is registered, so /invocations has nothing to serve; register one with `mlship models register PATH --name NAME`"
      : `the server has no default model and ${names.length} models are registered (${names.slice(0, 5).join(", ")}${names.length > 5 ? ", ..." : ""}); ` +
        `POST to /v1/models/{ref}/invocations (e.g. /v1/models/${names[0]}@production/invocations) or start the server with --model REF`,
    { field: "model" },
  );
}

export function registerMlflowRoutes(
  app: FastifyInstance,
  scoring: ScoringService,
  bodyLimit: number,
  defaultModel: string | undefined,
  deploymentRef?: (name: string) => Promise<string>,
): void {
  const invoke = async (ref: string, request: FastifyRequest, reply: FastifyReply) => {
    const body = request.body;
    const input = body instanceof CsvBody ? { kind: "csv" as const, text: body.text } : { kind: "mlflow" as const, body };
    const key = businessKeyOf(request.headers);
    const result = await scoring.score(ref, input, key === undefined ? { protocol: "mlflow", requestId: String(request.id) } : { protocol: "mlflow", requestId: String(request.id), key });
    answeredBy(request, reply, result.model, result.version, result.rows);
    if (result.cached !== undefined) reply.header("mlship-cache", result.cached ? "hit" : "miss");
    if (result.variant !== undefined) reply.headers(headerObject(rolloutHeaders(result)));
    return formatMlflowResponse(result);
  };

  app.post("/invocations", { config: MLFLOW_DEFAULT_INFER, bodyLimit }, async (request, reply) =>
    invoke(await defaultModelRef(scoring, defaultModel), request, reply),
  );
  app.post<{ Params: { ref: string } }>("/v1/models/:ref/invocations", { config: MLFLOW_INFER, bodyLimit }, async (request, reply) =>
    invoke(request.params.ref, request, reply),
  );
  if (deploymentRef !== undefined) {
    // The same handler with the deployment's model reference, read per request (cached until the store changes).
    app.post<{ Params: { name: string } }>("/v1/deployments/:name/invocations", { config: MLFLOW_DEPLOYMENT_INFER, bodyLimit }, async (request, reply) =>
      invoke(await deploymentRef(request.params.name), request, reply),
    );
  }

  // MLflow answers 200 once the model is loaded; here: the default model resolves and is loaded (503 while it
  // loads), or with no default model, the registry answers.
  const health = async (request: FastifyRequest, reply: FastifyReply) => {
    let ref: string;
    try {
      ref = await defaultModelRef(scoring, defaultModel);
    } catch (err) {
      if (err instanceof MlshipError && err.code === "MLSHIP_ERR_MODEL_NO_DEFAULT" && (await scoring.registryReachable())) {
        return { status: "ok" };
      }
      throw err;
    }
    const resolved = await scoring.resolve(ref);
    const label = `${resolved.version.name}@${resolved.version.version}`;
    answeredBy(request, reply, resolved.version.name, resolved.version.version);
    if (!(await scoring.isReady(ref))) {
      throw new MlshipError("MLSHIP_ERR_MODEL_NOT_READY", `model '${label}' is still loading`, { retryAfterSeconds: 1 });
    }
    return { status: "ok", model: label };
  };
  app.get("/ping", { config: MLFLOW }, health);
  app.get("/health", { config: MLFLOW }, health);

  app.get("/version", { config: MLFLOW }, async (_request, reply) => {
    reply.type("text/plain; charset=utf-8");
    return mlshipVersion();
  });
}
