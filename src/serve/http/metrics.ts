import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { ScoringService } from "../../scoring/index.js";
import { peekState } from "./state.js";
import type { RouteConfig } from "./types.js";

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * Request metrics per model and version, model load time and process metrics, in a registry of this server's
 * own (two servers in one process never share series).
 */
export function registerMetrics(app: FastifyInstance, scoring: ScoringService, register: Registry = new Registry()): Registry {
  collectDefaultMetrics({ register });
  const requests = new Counter({
    name: "mlship_requests_total",
    help: "Inference requests by model, version, protocol and HTTP status.",
    labelNames: ["model", "version", "protocol", "status"] as const,
    registers: [register],
  });
  const errors = new Counter({
    name: "mlship_request_errors_total",
    help: "Inference requests that failed, by model, version and mlship error code.",
    labelNames: ["model", "version", "code"] as const,
    registers: [register],
  });
  const duration = new Histogram({
    name: "mlship_request_duration_seconds",
    help: "Inference request latency (receive to response sent) in seconds.",
    labelNames: ["model", "version", "protocol"] as const,
    buckets: LATENCY_BUCKETS,
    registers: [register],
  });
  const rows = new Counter({
    name: "mlship_rows_total",
    help: "Rows (batch items) scored, by model and version.",
    labelNames: ["model", "version"] as const,
    registers: [register],
  });
  new Gauge({
    name: "mlship_model_load_seconds",
    help: "Seconds the runtime took to load each loaded model version.",
    labelNames: ["model", "version"] as const,
    registers: [register],
    collect() {
      this.reset();
      for (const m of scoring.loadedModels()) {
        if (m.loadSeconds !== undefined) this.set({ model: m.model, version: String(m.version) }, m.loadSeconds);
      }
    },
  });
  // The scoring service counts cache lookups (every transport's); these series read its totals at scrape time.
  const cacheCounter = (name: string, help: string, count: (v: { hits: number; misses: number }) => number): void => {
    new Counter({
      name,
      help,
      labelNames: ["model", "version"] as const,
      registers: [register],
      collect() {
        this.reset();
        for (const v of scoring.cacheStats()?.versions ?? []) this.inc({ model: v.model, version: String(v.version) }, count(v));
      },
    });
  };
  cacheCounter("mlship_cache_hits_total", "Prediction cache hits (answered without running the model), by model and version.", (v) => v.hits);
  cacheCounter("mlship_cache_misses_total", "Prediction cache misses (the model ran and the result was stored), by model and version.", (v) => v.misses);
  new Counter({
    name: "mlship_cache_errors_total",
    help: "Prediction cache backend failures (the request went on without the cache), by backend.",
    labelNames: ["backend"] as const,
    registers: [register],
    collect() {
      this.reset();
      const stats = scoring.cacheStats();
      if (stats !== undefined) this.inc({ backend: stats.backend }, stats.errors);
    },
  });

  const batchSize = new Histogram({
    name: "mlship_batch_size",
    help: "Rows per run sent to the runtime (adaptive batching merges requests), by model and version.",
    labelNames: ["model", "version"] as const,
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
    registers: [register],
  });
  const queueWait = new Histogram({
    name: "mlship_queue_wait_seconds",
    help: "Seconds a request waited in its version's queue before its run was sent, by model and version.",
    labelNames: ["model", "version"] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [register],
  });
  const unsubscribe = scoring.onBatch((b) => {
    const labels = { model: b.model, version: String(b.version) };
    batchSize.observe(labels, b.rows);
    for (const w of b.waits) queueWait.observe(labels, w);
  });
  app.addHook("onClose", async () => unsubscribe());

  const record = (request: FastifyRequest, reply: FastifyReply): void => {
    const config = request.routeOptions.config as Partial<RouteConfig> | undefined;
    if (config?.inference !== true) return;
    const state = peekState(request);
    const model = state?.model ?? "";
    const version = state?.version ?? "";
    const protocol = config.metricsProtocol ?? config.protocol ?? "";
    requests.inc({ model, version, protocol, status: String(reply.statusCode) });
    duration.observe({ model, version, protocol }, reply.elapsedTime / 1000);
    if (reply.statusCode >= 400) errors.inc({ model, version, code: state?.errorCode ?? `HTTP_${reply.statusCode}` });
    else if (state !== undefined && state.rows > 0) rows.inc({ model, version }, state.rows);
  };
  // Callback style: no promise and no extra microtask turn per request.
  app.addHook("onResponse", (request, reply, done) => {
    try {
      record(request, reply);
    } catch (err) {
      done(err as Error);
      return;
    }
    done();
  });

  app.get("/metrics", { config: { protocol: "v2" } satisfies RouteConfig }, async (_request, reply) => {
    reply.type(register.contentType);
    return register.metrics();
  });
  return register;
}
