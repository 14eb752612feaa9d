import type { FastifyPluginAsync } from "fastify";
import { MlshipError } from "../core/index.js";
import { versionFromPath } from "../registry/index.js";
import type { Registry } from "../registry/index.js";
import type { ScoringService } from "../scoring/index.js";
import type { RequestSnapshot } from "../serve/index.js";
import type { MonitorSummary } from "../ui/contract.js";
import type { MonitorStore } from "./store.js";
import { monitorSummary, summaryLimitOf, summarySizeOf } from "./summary.js";

export interface MonitorRoutesOptions {
  store: MonitorStore;
  registry: Registry;
  /** For the service view: the versions' worker-pool figures. */
  scoring?: ScoringService;
  /** For the service view: the server's request figures of a version (`requestMetricsOf(server).snapshot`). */
  requests?: (model: string, version: string) => RequestSnapshot | undefined;
}

interface VersionParams {
  name: string;
  version: string;
}


function sinceOf(text: string | undefined): string | undefined {
  if (text === undefined || text === "") return undefined;
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `since must be an ISO-8601 time (2026-12-01T00:00:00Z), got ${JSON.stringify(text)}`, { field: "since" });
  }
  return date.toISOString();
}

/**
 * The monitoring data of a version over REST, for the dashboard: the stored reference profile, the stored window
 * profiles, and the service figures (requests, errors, latency, worker time) in the same place. Registered by the composition root next to the serving routes (the serving layer does not know
 * the monitoring area); errors go through the host server's error handler, in the native `{error, code, field}` body.
 */
export const monitorRoutes: FastifyPluginAsync<MonitorRoutesOptions> = async (app, options) => {
  const { store, registry } = options;
  /** 404s that name what is missing: the model, the version, then the profile. */
  const version = async (params: VersionParams): Promise<{ name: string; version: number }> => {
    const v = versionFromPath(params.version);
    const record = await registry.getVersion(params.name, v);
    return { name: record.name, version: record.version };
  };

  app.get<{ Params: VersionParams }>("/api/v1/models/:name/versions/:version/monitor/reference", async (request) => {
    const v = await version(request.params);
    const profile = await store.getReference(v.name, v.version);
    if (profile === undefined) {
      throw new MlshipError(
        "MLSHIP_ERR_MONITOR_NO_REFERENCE",
        `model '${v.name}' version ${v.version} has no reference profile; run mlship monitor profile ${v.name}@${v.version} --data TRAIN.csv`,
        { field: "version" },
      );
    }
    return profile;
  });

  const started = new Date();
  // Latency, throughput, errors and the version's CPU share, next to its data: the dashboard's service panel.
  app.get<{ Params: VersionParams }>("/api/v1/models/:name/versions/:version/monitor/service", async (request) => {
    const v = await version(request.params);
    const uptimeSeconds = (Date.now() - started.getTime()) / 1000;
    const snapshot = options.requests?.(v.name, String(v.version));
    const requests = snapshot?.requests ?? 0;
    const failed = Object.entries(snapshot?.byStatus ?? {}).reduce((n, [status, count]) => n + (Number(status) >= 400 ? count : 0), 0);
    const loaded = options.scoring?.loadedModels().find((m) => m.model === v.name && m.version === v.version);
    const memory = process.memoryUsage();
    const cpu = process.cpuUsage();
    return {
      model: v.name,
      version: v.version,
      since: started.toISOString(),
      uptimeSeconds,
      requests: {
        total: requests,
        perSecond: uptimeSeconds > 0 ? requests / uptimeSeconds : 0,
        byStatus: snapshot?.byStatus ?? {},
        errors: snapshot?.errors ?? {},
        errorRate: requests === 0 ? 0 : failed / requests,
        rows: snapshot?.rows ?? 0,
      },
      latencySeconds: snapshot?.latency ?? { count: 0, sumSeconds: 0, p50: null, p95: null, p99: null },
      worker:
        loaded === undefined
          ? null
          : { state: loaded.state, loadSeconds: loaded.loadSeconds ?? null, runs: loaded.runs, rowsRun: loaded.rowsRun, busySeconds: loaded.busySeconds, cpuShare: uptimeSeconds > 0 ? loaded.busySeconds / uptimeSeconds : 0, queued: loaded.queued },
      // Memory and CPU are the server process's: versions share it (their workers' share is `worker.busySeconds`).
      process: { rssBytes: memory.rss, heapUsedBytes: memory.heapUsed, cpuSeconds: (cpu.user + cpu.system) / 1e6 },
    };
  });

  app.get<{ Params: VersionParams; Querystring: { size?: string; since?: string } }>(
    "/api/v1/models/:name/versions/:version/monitor/windows",
    async (request) => {
      const v = await version(request.params);
      const since = sinceOf(request.query.since);
      const size = request.query.size === undefined || request.query.size === "" ? undefined : request.query.size;
      const windows = await store.listWindows(v.name, v.version, { ...(since === undefined ? {} : { since }), ...(size === undefined ? {} : { size }) });
      return { model: v.name, version: v.version, windows };
    },
  );

  // The dashboard's drift page in one answer: per feature and output the statistic over the newest windows, the drift
  // kind, the reference-vs-newest-window histogram, and the newest window's rule results. A version without a
  // reference answers `hasReference: false` (the page shows how to make one), not a 404.
  app.get<{ Params: VersionParams; Querystring: { size?: string; limit?: string } }>(
    "/api/v1/models/:name/versions/:version/monitor/summary",
    async (request): Promise<MonitorSummary> => {
      const size = summarySizeOf(request.query.size);
      const limit = summaryLimitOf(request.query.limit);
      const record = await registry.getVersion(request.params.name, versionFromPath(request.params.version));
      return monitorSummary(store, record, { ...(size === undefined ? {} : { size }), limit });
    },
  );
};

Object.defineProperty(monitorRoutes, Symbol.for("skip-override"), { value: true });
