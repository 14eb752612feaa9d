import Fastify, { LogController } from "fastify";
import type { FastifyBaseLogger, FastifyInstance } from "fastify";
import { createLogger, MlshipError } from "../../core/index.js";
import { routeProtocol, sendError } from "./errors.js";
import { DEFAULT_BODY_LIMIT_BYTES, mlshipPlugin } from "./plugin.js";
import type { BuildServerOptions } from "./types.js";

/**
 * A Fastify server with mlship's routes, not listening yet (the caller listens; tests use `inject`). Unknown
 * routes and framework-level failures answer in the same JSON error shapes as the routes do.
 */
export function buildServer(options: BuildServerOptions): FastifyInstance {
  const bodyLimit = options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES;
  const logger = options.logger === false ? undefined : (options.logger ?? createLogger({ name: "mlship-http" }));
  const app = Fastify({
    ...(logger === undefined ? { logger: false } : { loggerInstance: logger as FastifyBaseLogger }),
    bodyLimit,
    // Per-request info logs cost more than the inference at high rates; errors are logged where they happen.
    logController: new LogController({ disableRequestLogging: true }),
    requestIdHeader: "x-request-id",
    // While draining, requests already on open connections are still answered (readiness says 503 {"ready":false}
    // through the plugin's hook, inference completes); the listener is closed, and shutdownTimeoutMs bounds it all.
    return503OnClosing: false,
    frameworkErrors: (err, request, reply) => {
      sendError(request, reply, err, routeProtocol(request));
    },
  });
  // Callback-style hooks (here and for metrics) skip a promise and a microtask turn per request.
  app.addHook("onRequest", (request, reply, done) => {
    reply.header("x-request-id", String(request.id));
    done();
  });
  app.setErrorHandler((err, request, reply) => sendError(request, reply, err));
  app.setNotFoundHandler((request, reply) => {
    sendError(
      request,
      reply,
      new MlshipError("MLSHIP_ERR_SERVE_ROUTE_NOT_FOUND", `no route ${request.method} ${request.url.split("?")[0]}`, { field: "url" }),
      routeProtocol(request),
    );
  });
  void app.register(mlshipPlugin, {
    scoring: options.scoring,
    registry: options.registry,
    defaultModel: options.defaultModel,
    bodyLimitBytes: bodyLimit,
    metrics: options.metrics,
    metricsRegistry: options.metricsRegistry,
    isDraining: options.isDraining,
    settingsRoutes: options.settingsRoutes,
  });
  return app;
}
