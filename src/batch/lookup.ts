import type { Kysely } from "kysely";
import { MlshipError } from "../core/index.js";
import { mapStoreError, type Database, type SqlStore } from "../store/index.js";
import { checkTableName, DEFAULT_PREDICTIONS_TABLE, type PredictionsTable } from "./sinks.js";

/**
 * The `batch_predictions` table (migration 0006_batch); a `--table NAME` target in the metadata store has the same
 * columns. A type alias: Kysely's withTables needs index signatures.
 */
export type BatchPredictionsTable = PredictionsTable;

type LookupTables = { batch_predictions: BatchPredictionsTable };
type LookupDb = Kysely<Database & LookupTables>;

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
 * Stored batch predictions of `model` for `ids`, keyed by id (ids with no prediction are absent). Repeated ids are
 * looked up once. A table that does not exist is bad input naming `table`, not a server error.
 */
export async function lookupPredictions(store: SqlStore, options: LookupOptions): Promise<Map<string, BatchPrediction>> {
  const table = predictionTableName(options.table);
  if (!Number.isFinite(options.maxAgeMs) || options.maxAgeMs <= 0) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `maxAgeMs must be a positive number of milliseconds, got ${options.maxAgeMs}`, { field: "maxAgeMs" });
  }
  const staleBefore = (options.now ?? new Date()).getTime() - options.maxAgeMs;
  const ids = [...new Set(options.ids)];
  const db: LookupDb = store.db.withTables<LookupTables>();
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
        throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `no batch table ${JSON.stringify(table)} in the metadata store (${store.location})`, { field: "table" });
      }
      throw mapStoreError(store.location, error);
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
