import { Kysely, PostgresDialect } from "kysely";
import type pg from "pg";
import { MlshipError } from "../core/index.js";
import { isUnavailable, mapStoreError, pgDriver, redactUrl, type SqlStore } from "../store/index.js";
import { checkTableName, DEFAULT_PREDICTIONS_TABLE, type PredictionsTable } from "./sinks.js";

/**
 * The `batch_predictions` table (migration 0006_batch); a `--table NAME` target in the metadata store has the same
 * columns. A type alias: Kysely's withTables needs index signatures.
 */
export type BatchPredictionsTable = PredictionsTable;

type LookupTables = { batch_predictions: BatchPredictionsTable };

/**
 * A PostgreSQL database that batch runs write into with `--into postgres://...`, read by the lookup routes instead of
 * the metadata store (config `batch.lookupUrl`). Only read: mlship's migrations are never run there.
 */
export interface LookupDatabase {
  readonly kind: "lookup";
  readonly db: Kysely<LookupTables>;
  /** The URL with its password redacted: what messages name. */
  readonly location: string;
  close(): Promise<void>;
}

/** Where lookups read predictions: the metadata store, or a lookup database. */
export type PredictionSource = SqlStore | LookupDatabase;

/** Pool size of a lookup database: lookups are single short selects. */
export const LOOKUP_POOL_SIZE = 4;

/**
 * Opens a small pool on the PostgreSQL database at `url` (nothing connects until the first lookup, so a database
 * that is down does not stop the server from starting). A URL that is not postgres:// is a config error naming
 * `field`.
 */
export function openLookupDatabase(url: string, field = "batch.lookupUrl"): LookupDatabase {
  const text = url.trim();
  if (!/^postgres(ql)?:\/\//i.test(text)) {
    throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `${field} must be a postgres:// URL, got "${redactUrl(text)}"`, { field });
  }
  const location = redactUrl(text);
  let pool: pg.Pool;
  try {
    new URL(text);
    pool = new (pgDriver().Pool)({ connectionString: text, max: LOOKUP_POOL_SIZE, connectionTimeoutMillis: 10_000 });
  } catch (error) {
    throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `${field} "${location}" is not a valid PostgreSQL URL: ${(error as Error).message}`, { field, cause: error });
  }
  // An idle client losing its connection must not crash the server; the next lookup reports the failure.
  pool.on("error", () => undefined);
  const db = new Kysely<LookupTables>({ dialect: new PostgresDialect({ pool }) });
  let closing: Promise<void> | undefined;
  return { kind: "lookup", db, location, close: () => (closing ??= db.destroy()) };
}

function isLookupDatabase(source: PredictionSource): source is LookupDatabase {
  return (source as Partial<LookupDatabase>).kind === "lookup";
}

/** How messages name a source. */
function sourceName(source: PredictionSource): string {
  return isLookupDatabase(source) ? `the lookup database (${source.location})` : `the metadata store (${source.location})`;
}

function sourceError(source: PredictionSource, error: unknown): unknown {
  if (!isLookupDatabase(source)) return mapStoreError(source.location, error);
  if (error instanceof MlshipError || !isUnavailable(error)) return error;
  const reason = error instanceof Error ? error.message : String(error);
  return new MlshipError("MLSHIP_ERR_STORE_UNAVAILABLE", `batch lookup database ${source.location} cannot be reached: ${reason}`, {
    field: "batch.lookupUrl",
    cause: error,
    details: { database: source.location },
    retryAfterSeconds: 1,
  });
}

/** Ids per `in (...)` list: far below SQLite's and PostgreSQL's bound parameter limits. */
export const LOOKUP_CHUNK_IDS = 500;


/** One stored batch prediction, as the lookup routes answer it. */
export interface BatchPrediction {
  id: string;
  model: string;
  model_version: number;
  run_id: string;
  /** ISO-8601 UTC. */
  scored_at: string;
  /** Scored longer ago than the max age. */
  stale: boolean;
  outputs: Record<string, unknown>;
}

export interface LookupOptions {
  model: string;
  ids: readonly string[];
  /** A prediction table of the metadata store; default `batch_predictions`. */
  table?: string;
  /** A prediction scored more than this long before `now` is `stale`. */
  maxAgeMs: number;
  now?: Date;
}

/** The table to read: `batch_predictions` by default, else a name checked as the sinks check it. */
export function predictionTableName(table: string | undefined): string {
  return table === undefined || table === "" ? DEFAULT_PREDICTIONS_TABLE : checkTableName(table);
}

/** SQLite "no such table", PostgreSQL undefined_table (42P01). */
function isMissingTable(error: unknown): boolean {
  if (typeof error !== "object" || error === null) return false;
  const code = (error as { code?: unknown }).code;
  if (code === "42P01") return true;
  return error instanceof Error && /no such table/i.test(error.message);
}

function parseOutputs(text: string, model: string, id: string): Record<string, unknown> {
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) return parsed as Record<string, unknown>;
  } catch (error) {
    throw new MlshipError("MLSHIP_ERR_CORE_INTERNAL", `the stored outputs of batch prediction ${model}/${id} are not valid JSON`, { cause: error });
  }
  throw new MlshipError("MLSHIP_ERR_CORE_INTERNAL", `the stored outputs of batch prediction ${model}/${id} are not a JSON object`);
}

/**
 * Stored batch predictions of `model` for `ids`, keyed by id (ids with no prediction are absent), from the metadata
 * store or a lookup database. Repeated ids are looked up once. A table that does not exist is bad input naming
 * `table`, not a server error.
 */
export async function lookupPredictions(source: PredictionSource, options: LookupOptions): Promise<Map<string, BatchPrediction>> {
  const table = predictionTableName(options.table);
  if (!Number.isFinite(options.maxAgeMs) || options.maxAgeMs <= 0) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `maxAgeMs must be a positive number of milliseconds, got ${options.maxAgeMs}`, { field: "maxAgeMs" });
  }
  const staleBefore = (options.now ?? new Date()).getTime() - options.maxAgeMs;
  const ids = [...new Set(options.ids)];
  // Kysely's table map is invariant; the store's Kysely has every table the lookup one has, so it serves as one.
  const db = isLookupDatabase(source) ? source.db : (source.db.withTables<LookupTables>() as unknown as Kysely<LookupTables>);
  const found = new Map<string, BatchPrediction>();
  for (let start = 0; start < ids.length; start += LOOKUP_CHUNK_IDS) {
    const chunk = ids.slice(start, start + LOOKUP_CHUNK_IDS);
    let rows: BatchPredictionsTable[];
    try {
      rows = await db
        // Other tables have the same columns; the name was checked by predictionTableName and Kysely quotes it.
        .selectFrom(table as "batch_predictions")
        .select(["model", "id", "version", "run_id", "scored_at", "outputs"])
        .where("model", "=", options.model)
        .where("id", "in", chunk)
        .execute();
    } catch (error) {
      if (isMissingTable(error)) {
        throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `no batch table ${JSON.stringify(table)} in ${sourceName(source)}`, { field: "table" });
      }
      throw sourceError(source, error);
    }
    for (const row of rows) {
      const scoredAt = Date.parse(row.scored_at);
      found.set(row.id, {
        id: row.id,
        model: row.model,
        model_version: Number(row.version),
        run_id: row.run_id,
        scored_at: row.scored_at,
        // An unreadable timestamp cannot be shown to be fresh.
        stale: Number.isNaN(scoredAt) || scoredAt < staleBefore,
        outputs: parseOutputs(row.outputs, row.model, row.id),
      });
    }
  }
  return found;
}
