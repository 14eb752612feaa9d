/**
 * Stream job status over REST, for the dashboard: `GET /api/v1/streams` and `GET /api/v1/streams/:name[?instance=]`,
 * read from `stream_status` in the metadata store, which every `mlship stream run` process writes (status.ts). This
 * module loads neither the NATS client nor the sinks: `mlship serve` imports it directly.
 */
import type { FastifyPluginAsync } from "fastify";
import { MlshipError } from "../core/index.js";
import type { SqlStore } from "../store/index.js";
import type { StreamStatusView } from "../ui/contract.js";
import { DEFAULT_INSTANCE, StreamStatusStore } from "./status.js";

export interface StreamRoutesOptions {
  /** The metadata store the stream jobs report to. */
  store: SqlStore;
  now?: () => Date;
}

function instanceOf(query: Record<string, unknown>): string {
  const value = query.instance;
  if (value === undefined || value === "") return DEFAULT_INSTANCE;
  if (typeof value !== "string") throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "instance must be given once", { field: "instance" });
  return value;
}

/** Errors go through the host server's error handler (native `{error, code, field}` body). */
export const streamRoutes: FastifyPluginAsync<StreamRoutesOptions> = async (app, options) => {
  const statuses = new StreamStatusStore(options.store);
  const now = options.now ?? (() => new Date());

  app.get("/api/v1/streams", async (): Promise<{ streams: StreamStatusView[] }> => ({ streams: await statuses.list(now()) }));

  app.get<{ Params: { name: string } }>("/api/v1/streams/:name", async (request): Promise<StreamStatusView> => {
    const { name } = request.params;
    const instance = instanceOf(request.query as Record<string, unknown>);
    const found = await statuses.get(name, instance, now());
    if (found !== undefined) return found;
    const others = await statuses.instances(name, now());
    const hint = others.length === 0 ? "" : ` (its instances: ${others.map((s) => s.instance).join(", ")}; pick one with ?instance=)`;
    throw new MlshipError("MLSHIP_ERR_STREAM_NOT_FOUND", `no stream job ${JSON.stringify(name)}${instance === DEFAULT_INSTANCE ? "" : ` instance ${JSON.stringify(instance)}`} has reported its status${hint}`, {
      field: instance === DEFAULT_INSTANCE ? "name" : "instance",
    });
  });
};

Object.defineProperty(streamRoutes, Symbol.for("skip-override"), { value: true });
