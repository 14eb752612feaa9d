import type { FastifyPluginAsync } from "fastify";
import { MlshipError } from "../core/index.js";
import type { Registry } from "../registry/index.js";
import type { MonitorStore } from "./store.js";

export interface MonitorRoutesOptions {
  store: MonitorStore;
  registry: Registry;
}

interface VersionParams {
  name: string;
  version: string;
}

function versionNumber(text: string): number {
  if (!/^[1-9][0-9]{0,8}$/.test(text)) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `version must be a positive integer, got ${JSON.stringify(text)}`, { field: "version" });
  }
  return Number(text);
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
 * The monitoring data of a version over REST, for the dashboard: the stored reference profile and the stored
 * window profiles. Registered by the composition root next to the serving routes (the serving layer does not know
 * the monitoring area); errors go through the host server's error handler, in the native `{error, code, field}` body.
 */
export const monitorRoutes: FastifyPluginAsync<MonitorRoutesOptions> = async (app, options) => {
  const { store, registry } = options;
  /** 404s that name what is missing: the model, the version, then the profile. */
  const version = async (params: VersionParams): Promise<{ name: string; version: number }> => {
    const v = versionNumber(params.version);
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
};

Object.defineProperty(monitorRoutes, Symbol.for("skip-override"), { value: true });
