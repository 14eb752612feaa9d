import type { FastifyInstance, FastifyPluginAsync } from "fastify";
import { MlshipError } from "../../core/index.js";
import { registerParsers } from "./content.js";
import { sendError } from "./errors.js";
import { inferenceTokenHook } from "./inference-auth.js";
import { createRequestMetrics, registerMetrics } from "./metrics.js";
import { registerMlflowRoutes } from "./mlflow.js";
import { registerSettingsRoutes } from "./settings.js";
import type { MlshipPluginOptions } from "./types.js";
import { registerV2Routes } from "./v2.js";

export const DEFAULT_BODY_LIMIT_BYTES = 32 * 1024 * 1024;

/**
 * mlship's inference routes (V2, MLflow, metrics) as a Fastify plugin. It stays encapsulated on purpose: its
 * JSON/CSV parsers and error handler apply to its own routes only, so mounting it inside a user's server (with
 * or without a `prefix`) leaves their routes alone.
 */
export const mlshipPlugin: FastifyPluginAsync<MlshipPluginOptions> = async (app: FastifyInstance, options: MlshipPluginOptions) => {
  const { scoring } = options;
  if (scoring === undefined || options.registry === undefined) {
    throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", "mlshipPlugin needs the `scoring` and `registry` options", { field: "scoring" });
  }
  const bodyLimit = options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES;
  registerParsers(app, bodyLimit);
  app.setErrorHandler((err, request, reply) => sendError(request, reply, err));
  if (options.metrics !== false) {
    const metrics = options.requestMetrics ?? createRequestMetrics(scoring, options.metricsRegistry);
    registerMetrics(app, metrics, options.requestMetrics === undefined);
  }
  const isDraining = options.isDraining;
  if (isDraining !== undefined) {
    // A draining server stops taking new traffic from load balancers at once, while its in-flight requests finish.
    app.addHook("onRequest", async (request, reply) => {
      if (isDraining() && request.method === "GET" && /\/v2\/health\/ready(\?|$)/.test(request.url)) {
        await reply.code(503).header("retry-after", "1").type("application/json; charset=utf-8").send({ ready: false });
      }
    });
  }
  // Encapsulated: the hook guards this plugin's inference routes only, wherever the plugin is mounted.
  if (options.inferenceTokens !== undefined) {
    app.addHook("onRequest", inferenceTokenHook(options.inferenceTokens, scoring, options.defaultModel, options.deploymentRef));
  }
  if (options.settingsRoutes !== false) registerSettingsRoutes(app, scoring, options.registry);
  registerV2Routes(app, scoring, bodyLimit);
  registerMlflowRoutes(app, scoring, bodyLimit, options.defaultModel, options.deploymentRef);
};

Object.defineProperty(mlshipPlugin, Symbol.for("fastify.display-name"), { value: "mlship" });
