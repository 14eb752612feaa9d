import type { FastifyPluginAsync } from "fastify";
import { MlshipError } from "../core/index.js";
import type { Registry } from "../registry/index.js";
import type { SqlStore } from "../store/index.js";
import { lookupPredictions, openLookupDatabase, predictionTableName, type BatchPrediction, type PredictionSource } from "./lookup.js";
import { ScheduledMaxAges } from "./schedule.js";

export interface BatchRoutesOptions {
  /** The metadata store: schedules (their max ages) and, unless `lookupUrl` is set, the predictions. */
  store: SqlStore;
  registry: Registry;
  /**
   * Predictions scored longer ago than this are answered with `stale: true` (config `batch.maxAgeMs`), unless an
   * enabled schedule that writes the model into the table has a max age of its own.
   */
  maxAgeMs: number;
  /**
   * A PostgreSQL database to read predictions from instead of the metadata store (config `batch.lookupUrl`): opened
   * with the routes, closed when the server closes, never migrated.
   */
  lookupUrl?: string | null;
  /** How long the schedules list is reused for max ages; default 5 s. */
  scheduleCacheMs?: number;
  now?: () => Date;
}

/** Most ids one bulk lookup may ask for. */
export const MAX_LOOKUP_IDS = 1000;

/**
 * `/v1/...` paths answer errors in the MLflow shape unless the route says otherwise; these routes are mlship's own,
 * so their errors use the native `{error, code, field}` body.
 */
const NATIVE = { config: { protocol: "v2" } } as const;

interface PredictionParams {
  model: string;
  id: string;
}

function tableOf(value: unknown): string | undefined {
  if (value === undefined || value === null || value === "") return undefined;
  if (typeof value !== "string") throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "table must be a string", { field: "table" });
  return predictionTableName(value);
}

/** Ids are text in the store; JSON clients may send whole numbers for numeric ids. */
function idsOf(body: unknown): string[] {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `the body must be a JSON object {"ids": [...]}`, { field: "body" });
  }
  const ids = (body as { ids?: unknown }).ids;
  if (!Array.isArray(ids)) throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `ids must be an array of ids, e.g. {"ids": ["a1", "a2"]}`, { field: "ids" });
  if (ids.length > MAX_LOOKUP_IDS) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `ids has ${ids.length} ids; at most ${MAX_LOOKUP_IDS} per lookup`, { field: "ids" });
  }
  return ids.map((id, index) => {
    if (typeof id === "string" && id !== "") return id;
    if (typeof id === "number" && Number.isSafeInteger(id)) return String(id);
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `ids[${index}] must be a non-empty string or a whole number, got ${JSON.stringify(id)}`, { field: "ids" });
  });
}

/**
 * Lookups of batch predictions from the metadata store (or the `lookupUrl` database):
 * `GET /v1/predictions/:model/:id[?table=]` and the bulk form `POST /v1/predictions/:model/lookup` with
 * `{"ids": [...], "table"?}`. A prediction older than its max age (its enabled schedule's, else `maxAgeMs`) is still
 * answered, with `stale: true`. Errors go through the host server's error handler.
 */
export const batchRoutes: FastifyPluginAsync<BatchRoutesOptions> = async (app, options) => {
  const { store, registry } = options;
  const now = options.now ?? (() => new Date());
  let source: PredictionSource = store;
  if (options.lookupUrl !== undefined && options.lookupUrl !== null && options.lookupUrl !== "") {
    const lookup = openLookupDatabase(options.lookupUrl);
    source = lookup;
    app.addHook("onClose", async () => lookup.close());
  }
  const maxAges = new ScheduledMaxAges(store, {
    fallbackMs: options.maxAgeMs,
    ...(options.scheduleCacheMs === undefined ? {} : { cacheMs: options.scheduleCacheMs }),
    onError: (error) => app.log.warn({ err: error }, "batch schedules unavailable: lookups judge staleness by batch.maxAgeMs"),
  });
  /** The max age of the model's predictions in the table: its schedule's, else the configured one. */
  const maxAgeOf = async (model: string, table: string | undefined): Promise<number> => (await maxAges.maxAgeFor(model, predictionTableName(table))).maxAgeMs;

  /** The registered model's name (404 MLSHIP_ERR_MODEL_NOT_FOUND when there is none). */
  const modelName = async (name: string): Promise<string> => (await registry.getModel(name)).name;

  app.get<{ Params: PredictionParams; Querystring: { table?: string } }>("/v1/predictions/:model/:id", NATIVE, async (request, reply) => {
    const table = tableOf(request.query.table);
    const model = await modelName(request.params.model);
    const id = request.params.id;
    const maxAgeMs = await maxAgeOf(model, table);
    const found = await lookupPredictions(source, { model, ids: [id], ...(table === undefined ? {} : { table }), maxAgeMs, now: now() });
    const prediction = found.get(id);
    if (prediction === undefined) {
      // No dedicated "prediction not found" code exists yet; this one is a 404 with the field naming the id.
      throw new MlshipError("MLSHIP_ERR_BATCH_PREDICTION_NOT_FOUND", `no batch prediction for id ${JSON.stringify(id)} of model '${model}'${table === undefined ? "" : ` in table ${table}`}`, {
        field: "id",
      });
    }
    void reply.header("mlship-model-version", `${prediction.model}@${prediction.model_version}`);
    return prediction;
  });

  app.post<{ Params: { model: string } }>("/v1/predictions/:model/lookup", NATIVE, async (request) => {
    const ids = idsOf(request.body);
    const table = tableOf((request.body as { table?: unknown }).table);
    const model = await modelName(request.params.model);
    const maxAgeMs = await maxAgeOf(model, table);
    const found = await lookupPredictions(source, { model, ids, ...(table === undefined ? {} : { table }), maxAgeMs, now: now() });
    const predictions: BatchPrediction[] = [];
    const missing: string[] = [];
    const seen = new Set<string>();
    for (const id of ids) {
      if (seen.has(id)) continue;
      seen.add(id);
      const prediction = found.get(id);
      if (prediction === undefined) missing.push(id);
      else predictions.push(prediction);
    }
    return { predictions, missing };
  });
};

Object.defineProperty(batchRoutes, Symbol.for("skip-override"), { value: true });
