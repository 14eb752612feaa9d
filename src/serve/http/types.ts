import type { Registry as PromRegistry } from "prom-client";
import type { Logger } from "../../core/index.js";
import type { Registry } from "../../registry/index.js";
import type { ScoringService } from "../../scoring/index.js";
import type { InferenceTokens } from "./inference-auth.js";
import type { RequestMetrics } from "./metrics.js";

/** Options of `mlshipPlugin`: the routes mounted inside any Fastify instance (the embedded pattern). */
export interface MlshipPluginOptions {
  scoring: ScoringService;
  registry: Registry;
  /** Reference `/invocations` serves, resolved per request. Unset: the only registered model, if exactly one. */
  defaultModel?: string;
  /** Largest request body for the inference routes, in bytes. Default 32 MiB. */
  bodyLimitBytes?: number;
  /** Serve `GET /metrics` and record request metrics. Default true. */
  metrics?: boolean;
  /** prom-client registry to record into; default a new one per plugin instance (never the global one). */
  metricsRegistry?: PromRegistry;
  /**
   * The metric series to record into (`createRequestMetrics`), when something else records into them too (the
   * standalone server's fast path); the caller disposes them. Default: the plugin makes and disposes its own.
   */
  requestMetrics?: RequestMetrics;
  /** When it returns true, `GET /v2/health/ready` answers 503 `{"ready":false}` (shutdown drain). */
  isDraining?: () => boolean;
  /** Serve `GET/PUT /api/v1/models/{name}/versions/{version}/settings`. Default true. */
  settingsRoutes?: boolean;
  /** Path prefix for every route (Fastify's own register option). */
  prefix?: string;
  /**
   * Per-model inference tokens (`createInferenceTokens`): a listed model's inference, metadata and ready routes need
   * `Authorization: Bearer <one of its tokens>` (401/403 otherwise). Unset: inference is open.
   */
  inferenceTokens?: InferenceTokens;
  /**
   * The model reference a deployment serves (`DeploymentService.modelOf`: 404 MLSHIP_ERR_DEPLOYMENT_NOT_FOUND for an
   * unknown name). When set, `POST /v1/deployments/{name}/invocations` answers like `/v1/models/{ref}/invocations`.
   */
  deploymentRef?: (name: string) => Promise<string>;
}

export interface BuildServerOptions extends Omit<MlshipPluginOptions, "prefix"> {
  /** pino logger for the server; `false` for none. Default: mlship's stderr logger. */
  logger?: Logger | false;
  /**
   * Answer plain-JSON inference requests on the raw HTTP request, in front of Fastify's pipeline (same answers,
   * less work per request). Default true; `inject()` always goes through Fastify.
   */
  fastPath?: boolean;
  /**
   * Load shedding: while the event loop runs later than this many milliseconds, new inference requests get 429
   * with Retry-After before their body is parsed (`EventLoopGuard`). 0 or unset: off.
   */
  maxEventLoopDelayMs?: number;
  /**
   * When set, every action under `/api/v1/` (POST, PUT, PATCH, DELETE, on any route, including those other plugins
   * register later) needs `Authorization: Bearer <adminToken>`: 401 without one, 403 with another. Reads and
   * inference stay open. Unset: actions are open.
   */
  adminToken?: string;
  /**
   * Browser origins allowed to call the server (CORS): exact origins (`https://app.example.com`) or `*`. Requests
   * from them get `Access-Control-Allow-Origin` and preflights are answered; never with credentials. Unset or empty:
   * no CORS headers at all.
   */
  corsOrigins?: readonly string[];
}

/** Which error body a route speaks. */
export type Protocol = "v2" | "mlflow";

/** Per-route settings, read back from `request.routeOptions.config`. */
export interface RouteConfig {
  protocol: Protocol;
  /** Inference routes are measured (requests, errors, latency, rows). */
  inference?: boolean;
  /** The protocol label in metrics: `v2` or `mlflow`. */
  metricsProtocol?: string;
  /**
   * How the route names the model it reaches, for the inference tokens: `v2` (`:name` and `:version`), `ref`
   * (`:ref`), `default` (`/invocations`: the default model) or `deployment` (`:name`, a deployment's model). Unset: no model.
   */
  model?: "v2" | "ref" | "default" | "deployment";
}
