import type { FastifyInstance } from "fastify";
import { MlshipError } from "../../core/index.js";
import { versionFromPath } from "../../registry/index.js";
import type { Registry } from "../../registry/index.js";
import type { ScoringService } from "../../scoring/index.js";
import type { RouteConfig } from "./types.js";

const V2: RouteConfig = { protocol: "v2" };

interface SettingsParams {
  name: string;
  version: string;
}


/**
 * Management routes for a version's serving settings (batching, queue bound, timeout, cache, instances):
 * `GET` shows the effective settings, the registry override and where each value comes from; `PUT` replaces the
 * override (a JSON object, `{}` resets it). Running servers pick a change up within a second (change token).
 */
export function registerSettingsRoutes(app: FastifyInstance, scoring: ScoringService, registry: Registry): void {
  const show = async (name: string, version: number) => {
    const [effective, override] = await Promise.all([scoring.settings(name, version), registry.getVersionSettings(name, version)]);
    return { model: name, version, settings: effective.settings, override, sources: effective.sources };
  };
  app.get<{ Params: SettingsParams }>("/api/v1/models/:name/versions/:version/settings", { config: V2 }, async (request) => {
    return show(request.params.name, versionFromPath(request.params.version));
  });
  app.put<{ Params: SettingsParams }>("/api/v1/models/:name/versions/:version/settings", { config: V2 }, async (request) => {
    const version = versionFromPath(request.params.version);
    const body = request.body;
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "the body must be a JSON object of serving settings ({} resets them)", { field: "body" });
    }
    const by = request.headers["x-mlship-user"];
    await registry.setVersionSettings(request.params.name, version, body, typeof by === "string" && by !== "" ? { by } : undefined);
    await scoring.refresh();
    return show(request.params.name, version);
  });
}
