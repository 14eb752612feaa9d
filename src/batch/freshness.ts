import { sql } from "kysely";
import { Gauge, type Registry as PromRegistry } from "prom-client";
import { mapStoreError, type SqlStore } from "../store/index.js";
import { maxAgeFor, ScheduleStore, type BatchSchedule } from "./schedule.js";
import type { RunStatus } from "./types.js";

/**
 * The last succeeded run of a model into a table. For a sharded target, the stalest shard's last success (the
 * table is only as fresh as that) and the rows of every shard's last success.
 */
export interface LastSuccess {
  runId: string;
  version: number;
  /** ISO-8601 UTC. */
  endedAt: string;
  /** Seconds between `endedAt` and the time asked about. */
  ageSeconds: number;
  /** Predictions the run wrote (for a sharded target, the sum over its shards' last successes). */
  rows: number;
}

export interface LastRun {
  runId: string;
  version: number;
  status: RunStatus;
  startedAt: string;
  heartbeatAt: string;
  endedAt: string | null;
  error: string | null;
}

/** Freshness of one model's predictions in one target. */
export interface BatchFreshness {
  model: string;
  /** The SQL table written, or the file target's path for Parquet/JSON Lines runs. */
  table: string;
  /** How many shards the latest run was one of; null when it was not sharded. */
  shards: number | null;
  /** Null when no run has succeeded yet (for a sharded target: when a shard has no success among its latest runs). */
  lastSuccess: LastSuccess | null;
  /** The most recently started run, whatever its status. */
  lastRun: LastRun;
  /**
   * A run failed (or was interrupted and not resumed) after the last success, or there is no success and a run
   * failed. A retry still running does not clear it: only a success does.
   */
  failedSinceSuccess: boolean;
  /** A failed or interrupted run's error, when `failedSinceSuccess`. */
  lastError: string | null;
}

/** What is wrong with a model's predictions in a table, if anything (`mlship batch status`, the dashboard). */
export type BatchHealth = "ok" | "failed" | "stale" | "never succeeded";

/** `failed` when a run failed since the last success, else `never succeeded`, `stale` past `maxAgeMs`, or `ok`. */
export function batchHealth(entry: Pick<BatchFreshness, "failedSinceSuccess" | "lastSuccess">, maxAgeMs: number): BatchHealth {
  if (entry.failedSinceSuccess) return "failed";
  if (entry.lastSuccess === null) return "never succeeded";
  return entry.lastSuccess.ageSeconds * 1000 > maxAgeMs ? "stale" : "ok";
}

export interface BatchFreshnessOptions {
  /** Only this model's runs. */
  model?: string;
}

type Category = "succeeded" | "failed" | "other";

interface LatestRow {
  id: string;
  model: string;
  target_key: string;
  shard_index: number | string | null;
  shard_count: number | string | null;
  category: Category;
  version: number | string;
  status: RunStatus;
  rows_out: number | string;
  started_at: string;
  heartbeat_at: string;
  ended_at: string | null;
  error: string | null;
}

/** The latest run of one shard (or of the unsharded runs) in each category. */
type ShardRuns = Partial<Record<Category, LatestRow>>;

function newer(a: LatestRow, b: LatestRow): LatestRow {
  return b.started_at > a.started_at || (b.started_at === a.started_at && b.id > a.id) ? b : a;
}

function shardCount(row: LatestRow): number | null {
  return row.shard_count === null ? null : Number(row.shard_count);
}

/**
 * One target's freshness from the latest runs of each of its shards. Only runs split like the most recent one count
 * (a table scored by 3 shards yesterday and 1 process today is judged by today's runs). A sharded table is as fresh
 * as its stalest shard, holds the sum of its shards' rows, and has failed when any shard failed since that shard's
 * own success: a sibling shard's success must not hide it.
 */
function targetFreshness(rows: readonly LatestRow[], now: Date): BatchFreshness {
  const last = rows.reduce(newer);
  const count = shardCount(last);
  const shards = new Map<string, ShardRuns>();
  for (const row of rows) {
    if (shardCount(row) !== count) continue;
    const key = row.shard_index === null ? "" : String(row.shard_index);
    const shard = shards.get(key) ?? {};
    shard[row.category] = row;
    shards.set(key, shard);
  }
  let failedSinceSuccess = false;
  let lastError: string | null = null;
  let stalest: LatestRow | undefined;
  let rowsWritten = 0;
  let complete = shards.size === (count ?? 1);
  for (const shard of shards.values()) {
    const { succeeded: success, failed: failure } = shard;
    if (failure !== undefined && (success === undefined || failure.started_at > success.started_at)) {
      failedSinceSuccess = true;
      lastError ??= failure.error;
    }
    if (success === undefined) {
      complete = false;
      continue;
    }
    rowsWritten += Number(success.rows_out);
    const endedAt = success.ended_at ?? success.heartbeat_at;
    if (stalest === undefined || endedAt < (stalest.ended_at ?? stalest.heartbeat_at)) stalest = success;
  }
  const endedAt = stalest?.ended_at ?? stalest?.heartbeat_at;
  return {
    model: last.model,
    table: last.target_key,
    shards: count,
    lastSuccess:
      !complete || stalest === undefined || endedAt === undefined
        ? null
        : {
            runId: stalest.id,
            version: Number(stalest.version),
            endedAt,
            ageSeconds: Math.max(0, (now.getTime() - Date.parse(endedAt)) / 1000),
            rows: rowsWritten,
          },
    lastRun: {
      runId: last.id,
      version: Number(last.version),
      status: last.status,
      startedAt: last.started_at,
      heartbeatAt: last.heartbeat_at,
      endedAt: last.ended_at,
      error: last.error,
    },
    failedSinceSuccess,
    lastError,
  };
}

/**
 * Per model and target, the last success, the last run and whether a run failed since the last success, as of
 * `now`. One query: the latest run of each (model, target, shard, kind of outcome) by a window function, which SQLite
 * and PostgreSQL both have, so what is read does not grow with the history of runs.
 */
export async function batchFreshness(store: SqlStore, now: Date = new Date(), options: BatchFreshnessOptions = {}): Promise<BatchFreshness[]> {
  const modelFilter = options.model === undefined ? sql`` : sql`where model = ${options.model}`;
  let rows: LatestRow[];
  try {
    const result = await sql<LatestRow>`
      select id, model, target_key, shard_index, shard_count, category, version, status, rows_out, started_at, heartbeat_at, ended_at, error
      from (
        select r.*, row_number() over (
          partition by model, target_key, coalesce(shard_count, 0), coalesce(shard_index, -1), category
          order by started_at desc, id desc
        ) as rn
        from (
          select id, model, coalesce(target_table, target) as target_key, shard_index, shard_count,
            case when status = 'succeeded' then 'succeeded' when status in ('failed', 'interrupted') then 'failed' else 'other' end as category,
            version, status, rows_out, started_at, heartbeat_at, ended_at, error
          from batch_runs ${modelFilter}
        ) r
      ) latest
      where rn = 1
      order by model, target_key`.execute(store.db);
    rows = result.rows;
  } catch (error) {
    throw mapStoreError(store.location, error);
  }
  const targets = new Map<string, LatestRow[]>();
  for (const row of rows) {
    const key = JSON.stringify([row.model, row.target_key]);
    const list = targets.get(key) ?? [];
    list.push(row);
    targets.set(key, list);
  }
  return [...targets.values()].map((list) => targetFreshness(list, now));
}

export interface BatchFreshnessMetricsOptions {
  now?: () => Date;
  /**
   * The max age of predictions no enabled schedule gives one to (config `batch.maxAgeMs`), for
   * `mlship_batch_predictions_stale`. Default 1 day.
   */
  maxAgeMs?: number;
  /** Called when the store cannot be read at scrape time; the gauges are then left empty for that scrape. */
  onError?: (error: unknown) => void;
}

export const BATCH_FRESHNESS_METRICS = [
  "mlship_batch_last_success_age_seconds",
  "mlship_batch_last_run_failed",
  "mlship_batch_last_success_rows",
  "mlship_batch_predictions_stale",
] as const;

/** The gauges of one scrape read the runs (and the schedules) once. */
const SCRAPE_REUSE_MS = 1000;
const DEFAULT_MAX_AGE_MS = 86_400_000;

interface Scrape {
  entries: BatchFreshness[];
  schedules: BatchSchedule[];
}

/**
 * Registers gauges read from `batch_runs` at scrape time, labelled by model and table:
 * `mlship_batch_last_success_age_seconds` (absent until a run succeeded), `mlship_batch_last_run_failed` (1 when a
 * run failed since the last success), `mlship_batch_last_success_rows`, and `mlship_batch_predictions_stale` (1 when
 * the last success is older than the max age: the enabled schedule's that writes the model into the table, else
 * `maxAgeMs`; absent until a run succeeded). Returns a function that unregisters them.
 */
export function batchFreshnessMetrics(store: SqlStore, register: PromRegistry, options: BatchFreshnessMetricsOptions = {}): () => void {
  const now = options.now ?? (() => new Date());
  const fallbackMs = options.maxAgeMs ?? DEFAULT_MAX_AGE_MS;
  const schedules = new ScheduleStore(store);
  let cached: { at: number; value: Promise<Scrape | undefined> } | undefined;
  const current = (): Promise<Scrape | undefined> => {
    const at = Date.now();
    if (cached === undefined || at - cached.at > SCRAPE_REUSE_MS) {
      cached = {
        at,
        value: Promise.all([batchFreshness(store, now()), schedules.list()])
          .then(([entries, list]) => ({ entries, schedules: list }))
          .catch((error: unknown) => {
            options.onError?.(error);
            return undefined;
          }),
      };
    }
    return cached.value;
  };
  const gauge = (name: string, help: string, value: (f: BatchFreshness, scrape: Scrape) => number | undefined): void => {
    new Gauge({
      name,
      help,
      labelNames: ["model", "table"] as const,
      registers: [register],
      async collect() {
        const scrape = await current();
        this.reset();
        for (const entry of scrape?.entries ?? []) {
          const v = value(entry, scrape as Scrape);
          if (v !== undefined) this.set({ model: entry.model, table: entry.table }, v);
        }
      },
    });
  };
  const [age, failed, rows, stale] = BATCH_FRESHNESS_METRICS;
  gauge(age, "Seconds since the last successful batch prediction run of the model into the table ended.", (f) => f.lastSuccess?.ageSeconds);
  gauge(failed, "1 when a batch prediction run of the model into the table failed since its last success, else 0.", (f) => (f.failedSinceSuccess ? 1 : 0));
  gauge(rows, "Predictions written by the last successful batch prediction run of the model into the table.", (f) => f.lastSuccess?.rows);
  gauge(
    stale,
    "1 when the last successful batch prediction run of the model into the table is older than its max age (its schedule's, else batch.maxAgeMs), else 0.",
    (f, scrape) => {
      if (f.lastSuccess === null) return undefined;
      const { maxAgeMs } = maxAgeFor(scrape.schedules, f.model, f.table, fallbackMs);
      return f.lastSuccess.ageSeconds * 1000 > maxAgeMs ? 1 : 0;
    },
  );
  return () => {
    for (const name of BATCH_FRESHNESS_METRICS) register.removeSingleMetric(name);
  };
}
