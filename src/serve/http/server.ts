import http from "node:http";
import type { IncomingMessage } from "node:http";
import Fastify, { LogController } from "fastify";
import type { FastifyBaseLogger, FastifyInstance, FastifyServerOptions } from "fastify";
import { createLogger, MlshipError, silentLogger } from "../../core/index.js";
import { newRequestId } from "../../scoring/request-id.js";
import { adminTokenHook } from "./auth.js";
import { corsHook, corsOriginsOf } from "./cors.js";
import { routeProtocol, sendError } from "./errors.js";
import { createFastPath } from "./fast.js";
import { limitJsonDepth } from "./json-depth.js";
import { EventLoopGuard } from "./shed.js";
import { createRequestMetrics } from "./metrics.js";
import type { RequestMetrics } from "./metrics.js";
import { DEFAULT_BODY_LIMIT_BYTES, mlshipPlugin } from "./plugin.js";
import type { BuildServerOptions, RouteConfig } from "./types.js";

const REQUEST_ID_HEADER = "x-request-id";

const serverMetrics = new WeakMap<FastifyInstance, RequestMetrics>();

/** The request metrics of a server made by `buildServer` (undefined with `metrics: false`), for other views of them. */
export function requestMetricsOf(server: FastifyInstance): RequestMetrics | undefined {
  return serverMetrics.get(server);
}

/**
 * A Fastify server with mlship's routes, not listening yet (the caller listens; tests use `inject`). Unknown
 * routes and framework-level failures answer in the same JSON error shapes as the routes do.
 */
export function buildServer(options: BuildServerOptions): FastifyInstance {
  const bodyLimit = options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES;
  const logger = options.logger === false ? undefined : (options.logger ?? createLogger({ name: "mlship-http" }));
  // Request ids key the prediction log (and outcomes name them) across restarts and replicas: a per-process
  // counter would repeat them, so each is a UUID, time-ordered (v7) so the log's index takes them cheaply.
  const generateId = newRequestId;
  const requestId = (req: IncomingMessage): string => {
    const given = req.headers[REQUEST_ID_HEADER];
    return typeof given === "string" && given !== "" ? given : generateId();
  };
  const requestMetrics = options.metrics === false ? undefined : createRequestMetrics(options.scoring, options.metricsRegistry);
  const guard = new EventLoopGuard(options.maxEventLoopDelayMs ?? 0);
  const fastPath =
    options.fastPath === false
      ? undefined
      : createFastPath({
          scoring: options.scoring,
          defaultModel: options.defaultModel,
          bodyLimit,
          metrics: requestMetrics,
          logger: logger ?? silentLogger(),
          requestId,
          guard,
          ...(options.inferenceTokens === undefined ? {} : { inferenceTokens: options.inferenceTokens }),
        });
  const cors = corsOriginsOf(options.corsOrigins);
  // Fastify's own HTTP/1 server, with the inference fast path in front of its handler (inject() bypasses it).
  const serverFactory: FastifyServerOptions["serverFactory"] = (handler, serverOptions) => {
    const server = http.createServer((req, res) => {
      // Cross-origin requests take Fastify's pipeline, where the CORS hook adds its headers.
      if ((cors === undefined || req.headers.origin === undefined) && fastPath?.(req, res) === true) return;
      handler(req, res);
    });
    // As Fastify sets up the server it makes itself (its defaults are filled in by now).
    const timeouts = serverOptions as { keepAliveTimeout?: unknown; requestTimeout?: unknown; connectionTimeout?: unknown };
    if (typeof timeouts.keepAliveTimeout === "number") server.keepAliveTimeout = timeouts.keepAliveTimeout;
    if (typeof timeouts.requestTimeout === "number") server.requestTimeout = timeouts.requestTimeout;
    if (typeof timeouts.connectionTimeout === "number") server.setTimeout(timeouts.connectionTimeout);
    return server;
  };
  const app = Fastify({
    serverFactory,
    genReqId: generateId,
    ...(logger === undefined ? { logger: false } : { loggerInstance: logger as FastifyBaseLogger }),
    bodyLimit,
    // A model reference in a path is a name and an alias of up to 200 characters each, maybe percent-encoded:
    // Fastify's default of 100 would refuse names the registry accepts.
    routerOptions: { maxParamLength: 2048 },
    // Per-request info logs cost more than the inference at high rates; errors are logged where they happen.
    logController: new LogController({ disableRequestLogging: true }),
    requestIdHeader: REQUEST_ID_HEADER,
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
  // On the root instance and before any route, so it guards the routes every plugin registers later too.
  // Before the token checks, so that a refusal (401/403) reaches the allowed origin's script readable.
  if (cors !== undefined) app.addHook("onRequest", corsHook(cors));
  if (options.adminToken !== undefined) app.addHook("onRequest", adminTokenHook(options.adminToken));
  app.setErrorHandler((err, request, reply) => sendError(request, reply, err));
  // For every route without a parser of its own (management, lookups, other plugins): no body nested too deep.
  limitJsonDepth(app);
  app.setNotFoundHandler((request, reply) => {
    sendError(
      request,
      reply,
      new MlshipError("MLSHIP_ERR_SERVE_ROUTE_NOT_FOUND", `no route ${request.method} ${request.url.split("?")[0]}`, { field: "url" }),
      routeProtocol(request),
    );
  });
  if (requestMetrics !== undefined) serverMetrics.set(app, requestMetrics);
  app.addHook("onClose", async () => {
    guard.close();
    requestMetrics?.dispose();
  });
  if (guard.maxDelayMs > 0) {
    // The requests the fast path leaves to Fastify are shed the same way, before their body is parsed.
    app.addHook("onRequest", (request, reply, done) => {
      const refusal = (request.routeOptions.config as Partial<RouteConfig> | undefined)?.inference === true ? guard.refusal() : undefined;
      if (refusal === undefined) done();
      else sendError(request, reply, refusal);
    });
  }
  void app.register(mlshipPlugin, {
    scoring: options.scoring,
    registry: options.registry,
    defaultModel: options.defaultModel,
    bodyLimitBytes: bodyLimit,
    metrics: options.metrics,
    metricsRegistry: options.metricsRegistry,
    requestMetrics,
    isDraining: options.isDraining,
    settingsRoutes: options.settingsRoutes,
    inferenceTokens: options.inferenceTokens,
    deploymentRef: options.deploymentRef,
  });
  return app;
}
