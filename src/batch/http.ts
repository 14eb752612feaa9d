import type { FastifyPluginAsync } from "fastify";
import { MlshipError } from "../core/index.js";
import { parseWindowSize } from "../monitor/windows.js";
import type { Registry } from "../registry/index.js";
import type { SqlStore } from "../store/index.js";
import type { AlertView, BatchFreshnessResponse, BatchFreshnessView, BatchRunDetail, BatchRunView } from "../ui/contract.js";
import { batchFreshness, batchHealth, type BatchFreshness } from "./freshness.js";
import { lookupPredictions, openLookupDatabase, predictionTableName, type BatchPrediction, type PredictionSource } from "./lookup.js";
import { runSummary } from "./progress.js";
import { RunStore, STALE_HEARTBEAT_MS } from "./runs.js";
import { healthOf, maxAgeFor, ScheduledMaxAges, scheduleModel, ScheduleStore, scheduleTargetKey, type BatchSchedule } from "./schedule.js";
import type { BatchRun, RunStatus } from "./types.js";

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
/** `GET /api/v1/batch/runs`: runs listed by default, and at most. */
export const DEFAULT_RUNS_LIMIT = 50;
export const MAX_RUNS_LIMIT = 500;
/** Rejected rows `GET /api/v1/batch/runs/{id}` shows (`mlship batch rejects` lists them all). */
export const RUN_REJECTS_SHOWN = 100;
const RUN_STATUSES: readonly RunStatus[] = ["running", "succeeded", "failed", "interrupted"];

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

function invalid(field: string, message: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${field} ${message}`, { field });
}

/** A query parameter given at most once; undefined when absent or empty. */
function queryText(query: Record<string, unknown>, field: string): string | undefined {
  const value = query[field];
  if (value === undefined || value === "") return undefined;
  if (typeof value !== "string") throw invalid(field, "must be given once");
  return value;
}

function runsLimit(text: string | undefined): number {
  if (text === undefined) return DEFAULT_RUNS_LIMIT;
  const n = Number(text);
  if (!/^\s*\d+\s*$/.test(text) || !Number.isSafeInteger(n) || n < 1 || n > MAX_RUNS_LIMIT) {
    throw invalid("limit", `must be a whole number from 1 to ${MAX_RUNS_LIMIT}, got ${JSON.stringify(text)}`);
  }
  return n;
}

function runStatus(text: string | undefined): RunStatus | undefined {
  if (text === undefined) return undefined;
  if (!(RUN_STATUSES as readonly string[]).includes(text)) throw invalid("status", `must be one of ${RUN_STATUSES.join(", ")}, got ${JSON.stringify(text)}`);
  return text as RunStatus;
}

/** A run as the dashboard shows it. */
export function batchRunView(run: BatchRun, now: Date): BatchRunView {
  const summary = runSummary(run);
  const schedule = run.settings.schedule;
  return {
    id: run.id,
    model: run.model,
    version: run.version,
    ref: run.ref,
    input: run.input,
    table: run.targetTable,
    target: run.target,
    status: run.status,
    startedAt: run.startedAt,
    heartbeatAt: run.heartbeatAt,
    endedAt: run.endedAt,
    durationSeconds: summary.seconds,
    rowsIn: run.rowsIn,
    rowsOut: run.rowsOut,
    rowsRejected: run.rowsRejected,
    rowsPerSecond: summary.rowsPerSecond,
    error: run.error,
    shard: run.shard,
    schedule: typeof schedule === "string" ? schedule : null,
    stalled: run.status === "running" && now.getTime() - Date.parse(run.heartbeatAt) > STALE_HEARTBEAT_MS,
  };
}

/**
 * The schedule shown for a (model, table): the one whose max age applies, else the first enabled one writing the
 * model there, else the first (disabled) one.
 */
function scheduleFor(schedules: readonly BatchSchedule[], model: string, table: string, applied: string | null): BatchSchedule | undefined {
  const writing = schedules.filter((s) => scheduleModel(s) === model && scheduleTargetKey(s) === table);
  return writing.find((s) => s.name === applied) ?? writing.find((s) => s.enabled) ?? writing[0];
}

/**
 * Per model and table, what `mlship batch status` shows (the same functions judge it), with the schedule writing it;
 * scheduled targets without a run yet are listed too (`never succeeded`, no last run).
 */
export function batchFreshnessViews(entries: readonly BatchFreshness[], schedules: readonly BatchSchedule[], fallbackMs: number, now: Date): BatchFreshnessView[] {
  const views: BatchFreshnessView[] = entries.map((entry) => {
    const applied = maxAgeFor(schedules, entry.model, entry.table, fallbackMs);
    const success = entry.lastSuccess;
    return {
      model: entry.model,
      table: entry.table,
      shards: entry.shards,
      lastSuccessAt: success?.endedAt ?? null,
      lastSuccessVersion: success?.version ?? null,
      lastSuccessRows: success?.rows ?? null,
      ageSeconds: success === null ? null : Math.round(success.ageSeconds * 1000) / 1000,
      maxAgeSeconds: applied.maxAgeMs / 1000,
      maxAgeSchedule: applied.schedule,
      stale: success !== null && success.ageSeconds * 1000 > applied.maxAgeMs,
      health: batchHealth(entry, applied.maxAgeMs),
      lastRun: { id: entry.lastRun.runId, version: entry.lastRun.version, status: entry.lastRun.status, startedAt: entry.lastRun.startedAt, endedAt: entry.lastRun.endedAt },
      lastRunFailed: entry.lastRun.status === "failed" || entry.lastRun.status === "interrupted",
      failedSinceSuccess: entry.failedSinceSuccess,
      lastError: entry.lastError,
      schedule: scheduleView(scheduleFor(schedules, entry.model, entry.table, applied.schedule), now),
    };
  });
  const listed = new Set(views.map((v) => JSON.stringify([v.model, v.table])));
  for (const schedule of schedules) {
    const model = scheduleModel(schedule);
    const table = scheduleTargetKey(schedule);
    const key = JSON.stringify([model, table]);
    if (listed.has(key)) continue;
    listed.add(key);
    const applied = maxAgeFor(schedules, model, table, fallbackMs);
    views.push({
      model,
      table,
      shards: null,
      lastSuccessAt: null,
      lastSuccessVersion: null,
      lastSuccessRows: null,
      ageSeconds: null,
      maxAgeSeconds: applied.maxAgeMs / 1000,
      maxAgeSchedule: applied.schedule,
      stale: false,
      health: "never succeeded",
      lastRun: null,
      lastRunFailed: false,
      failedSinceSuccess: false,
      lastError: null,
      schedule: scheduleView(scheduleFor(schedules, model, table, applied.schedule), now),
    });
  }
  return views.sort((a, b) => (a.model === b.model ? (a.table < b.table ? -1 : a.table > b.table ? 1 : 0) : a.model < b.model ? -1 : 1));
}

/**
 * Tables whose predictions cannot be trusted now, as active alerts for `GET /api/v1/alerts`: a last run that failed
 * since the last success (or before any success), and predictions older than their max age. A scheduled table's
 * failures are left out: its schedule already raises `batch:<schedule>:failed` through the alerter.
 */
export async function batchFreshnessAlerts(store: SqlStore, fallbackMs: number, now: Date = new Date()): Promise<AlertView[]> {
  const [entries, schedules] = await Promise.all([batchFreshness(store, now), new ScheduleStore(store).list()]);
  const alerts: AlertView[] = [];
  for (const view of batchFreshnessViews(entries, schedules, fallbackMs, now)) {
    const where = `${view.model} -> ${view.table}`;
    const base = { source: "batch" as const, model: view.model, version: null, feature: null, window: null, at: now.toISOString() };
    if (view.health === "failed" || (view.health === "never succeeded" && view.lastRunFailed)) {
      if (view.schedule !== null) continue;
      const since = view.lastRun?.endedAt ?? view.lastRun?.startedAt ?? now.toISOString();
      const error = view.lastError === null ? "" : `: ${view.lastError}`;
      const what = view.lastSuccessAt === null ? "has never succeeded; its last run failed" : "failed since its last success";
      alerts.push({ ...base, id: `batch-table:${view.model}:${view.table}:failed`, kind: "failed", severity: "error", message: `batch ${where} ${what}${error}`, since });
    } else if (view.health === "stale" && view.lastSuccessAt !== null) {
      const since = new Date(Date.parse(view.lastSuccessAt) + view.maxAgeSeconds * 1000).toISOString();
      alerts.push({
        ...base,
        id: `batch-table:${view.model}:${view.table}:stale`,
        kind: "stale",
        severity: "warning",
        message: `batch ${where}: the last successful run is ${Math.round(view.ageSeconds ?? 0)} s old, over its max age of ${view.maxAgeSeconds} s`,
        since,
      });
    }
  }
  return alerts;
}

function scheduleView(schedule: BatchSchedule | undefined, now: Date): BatchFreshnessView["schedule"] {
  if (schedule === undefined) return null;
  const health = healthOf(schedule, now);
  return {
    name: schedule.name,
    cron: schedule.cron,
    timezone: schedule.timezone,
    enabled: schedule.enabled,
    nextAt: health.due?.toISOString() ?? null,
    late: health.late,
    lastStatus: schedule.lastRun?.status ?? null,
  };
}

/**
 * Lookups of batch predictions from the metadata store (or the `lookupUrl` database):
 * `GET /v1/predictions/:model/:id[?table=]` and the bulk form `POST /v1/predictions/:model/lookup` with
 * `{"ids": [...], "table"?}`. A prediction older than its max age (its enabled schedule's, else `maxAgeMs`) is still
 * answered, with `stale: true`. For the dashboard, from the metadata store: `GET /api/v1/batch/runs`,
 * `GET /api/v1/batch/runs/:id` and `GET /api/v1/batch/freshness`. Errors go through the host server's error handler.
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

  // ---- run history and freshness, for the dashboard (always from the metadata store) ----
  const runs = new RunStore(store);
  const schedules = new ScheduleStore(store);

  app.get("/api/v1/batch/runs", async (request): Promise<{ runs: BatchRunView[] }> => {
    const query = request.query as Record<string, unknown>;
    const model = queryText(query, "model");
    const status = runStatus(queryText(query, "status"));
    const limit = runsLimit(queryText(query, "limit"));
    const list = await runs.list({ ...(model === undefined ? {} : { model }), ...(status === undefined ? {} : { status }), limit });
    const at = now();
    return { runs: list.map((run) => batchRunView(run, at)) };
  });

  app.get<{ Params: { id: string } }>("/api/v1/batch/runs/:id", async (request): Promise<BatchRunDetail> => {
    const run = await runs.get(request.params.id);
    if (run === undefined) throw new MlshipError("MLSHIP_ERR_BATCH_RUN_NOT_FOUND", `no batch run ${JSON.stringify(request.params.id)}`, { field: "id" });
    const rejects = await runs.rejects(run.id, { limit: RUN_REJECTS_SHOWN });
    const { owner: _owner, ...settings } = run.settings;
    return {
      run: batchRunView(run, now()),
      settings,
      rejects: rejects.map((r) => ({ rowNumber: r.rowNumber, rowId: r.rowId, field: r.field, reason: r.reason })),
    };
  });

  app.get("/api/v1/batch/freshness", async (request): Promise<BatchFreshnessResponse> => {
    const query = request.query as Record<string, unknown>;
    const model = queryText(query, "model");
    const maxAgeText = queryText(query, "maxAge");
    let fallbackMs = options.maxAgeMs;
    if (maxAgeText !== undefined) {
      try {
        fallbackMs = parseWindowSize(maxAgeText);
      } catch {
        throw invalid("maxAge", `must be a duration such as 12h, 1d or 90m, got ${JSON.stringify(maxAgeText)}`);
      }
    }
    const at = now();
    const [entries, list] = await Promise.all([batchFreshness(store, at, model === undefined ? {} : { model }), schedules.list()]);
    const scheduled = model === undefined ? list : list.filter((s) => scheduleModel(s) === model);
    return { now: at.toISOString(), maxAgeSeconds: fallbackMs / 1000, freshness: batchFreshnessViews(entries, scheduled, fallbackMs, at) };
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
