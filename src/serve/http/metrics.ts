import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";
import type { LoadedInfo, ScoringService } from "../../scoring/index.js";

export type { RequestRecord, RequestSnapshot } from "./request-series.js";
import { PlainHistogram, RequestSeries, type RequestRecord, type RequestSnapshot } from "./request-series.js";
import { peekState } from "./state.js";
import type { RouteConfig } from "./types.js";

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** The metric series of one server, shared by its Fastify routes and its inference fast path. */
export interface RequestMetrics {
  readonly register: Registry;
  record(r: RequestRecord): void;
  /** A version's request figures since the server started. */
  snapshot(model: string, version: string): RequestSnapshot | undefined;
  /** Stops listening to the scoring service. */
  dispose(): void;
}

/**
 * Request metrics per model and version, model load time and process metrics, in a registry of this server's
 * own (two servers in one process never share series).
 */
export function createRequestMetrics(scoring: ScoringService, register: Registry = new Registry()): RequestMetrics {
  collectDefaultMetrics({ register });
  const series = new RequestSeries(register, LATENCY_BUCKETS);
  /** A per-version series whose values the scoring service holds, read at scrape time. */
  const versionSeries = <T extends { model: string; version: number }>(
    type: "counter" | "gauge",
    name: string,
    help: string,
    rows: () => readonly T[],
    value: (row: T) => number,
  ): void => {
    const config = { name, help, labelNames: ["model", "version"] as const, registers: [register] };
    const labels = (row: T) => ({ model: row.model, version: String(row.version) });
    if (type === "counter") {
      new Counter({
        ...config,
        collect() {
          this.reset();
          for (const row of rows()) this.inc(labels(row), value(row));
        },
      });
    } else {
      new Gauge({
        ...config,
        collect() {
          this.reset();
          for (const row of rows()) this.set(labels(row), value(row));
        },
      });
    }
  };
  const loaded = () => scoring.loadedModels();
  versionSeries("gauge", "mlship_model_load_seconds", "Seconds the runtime took to load each loaded model version.", () => loaded().filter((m) => m.loadSeconds !== undefined), (m: LoadedInfo) => m.loadSeconds ?? 0);
  // Per-version use of the worker pool.
  versionSeries("counter", "mlship_model_runs_total", "Runs sent to the inference workers (a batch counts once), by model and version.", loaded, (m: LoadedInfo) => m.runs);
  versionSeries("counter", "mlship_model_busy_seconds_total", "Seconds of worker time the version's runs took (dispatch to answer), by model and version: its share of the CPU.", loaded, (m: LoadedInfo) => m.busySeconds);
  versionSeries("gauge", "mlship_model_queue_depth", "Requests queued or running now, by model and version.", loaded, (m: LoadedInfo) => m.queued);
  // The scoring service counts cache lookups (every transport's).
  const cached = () => scoring.cacheStats()?.versions ?? [];
  versionSeries("counter", "mlship_cache_hits_total", "Prediction cache hits (answered without running the model), by model and version.", cached, (v) => v.hits);
  versionSeries("counter", "mlship_cache_misses_total", "Prediction cache misses (the model ran and the result was stored), by model and version.", cached, (v) => v.misses);
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

  // Observed once per batch and once per request it carries: plain numbers per version (prom-client would validate
  // and hash a label object on every observation), exposed as histograms when scraped.
  const batchSize = new PlainHistogram(register, {
    name: "mlship_batch_size",
    help: "Rows per run sent to the runtime (adaptive batching merges requests), by model and version.",
    labelNames: ["model", "version"],
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
  });
  const queueWait = new PlainHistogram(register, {
    name: "mlship_queue_wait_seconds",
    help: "Seconds a request waited in its version's queue before its run was sent, by model and version.",
    labelNames: ["model", "version"],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
  });
  const unsubscribe = scoring.onBatch((b) => {
    const labels = { model: b.model, version: String(b.version) };
    batchSize.child(labels).observe(b.rows);
    const wait = queueWait.child(labels);
    for (const w of b.waits) wait.observe(w);
  });
  return {
    register,
    record: (r) => series.record(r),
    snapshot: (model, version) => series.snapshot(model, version),
    dispose: unsubscribe,
  };
}

/** Records mlship's inference routes into `metrics` and serves `GET /metrics`. */
export function registerMetrics(app: FastifyInstance, metrics: RequestMetrics, ownsMetrics: boolean): void {
  if (ownsMetrics) app.addHook("onClose", async () => metrics.dispose());
  const record = (request: FastifyRequest, reply: FastifyReply): void => {
    const config = request.routeOptions.config as Partial<RouteConfig> | undefined;
    if (config?.inference !== true) return;
    const state = peekState(request);
    metrics.record({
      model: state?.model ?? "",
      version: state?.version ?? "",
      protocol: config.metricsProtocol ?? config.protocol ?? "",
      status: reply.statusCode,
      seconds: reply.elapsedTime / 1000,
      errorCode: state?.errorCode,
      rows: state?.rows ?? 0,
    });
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
    reply.type(metrics.register.contentType);
    return metrics.register.metrics();
  });
}
