/**
 * Prediction sinks for `mlship batch score ... --into TARGET [--table NAME]`: the metadata store (SQLite or
 * PostgreSQL), another PostgreSQL database, a JSON Lines file or a Parquet file.
 *
 * SQL targets upsert on (model, id), so a repeated or resumed run leaves one prediction per id: the one written last,
 * which is the newest run's. File targets append: a resumed run adds its rows after those already in the file.
 */
import fs from "node:fs";
import fsp from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import readline from "node:readline";
import { Worker } from "node:worker_threads";
import type BetterSqlite3 from "better-sqlite3";
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from "hyparquet";
import { ByteWriter, ParquetWriter } from "hyparquet-writer";
import { Kysely, PostgresDialect, sql, type Transaction } from "kysely";
import type pg from "pg";
import { MlshipError } from "../core/index.js";
import { isUniqueViolation, isUnavailable, mapStoreError, redactUrl, type SqlStore } from "../store/index.js";
import type { PredictionSink, ScoredRow, SinkWriteMeta } from "./types.js";

/** The table migration 0006_batch creates in the metadata store; also the default table of a `postgres://` target. */
export const DEFAULT_PREDICTIONS_TABLE = "batch_predictions";

const TABLE_NAME_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/;

/** One stored prediction, as `readPredictions` gives it back. */
export interface StoredPrediction {
  version: number;
  runId: string;
  /** ISO-8601 UTC. */
  scoredAt: string;
  outputs: Record<string, unknown>;
}

export interface OpenSinkOptions {
  /** The metadata store: the target when `--into` is unset, `sqlite` or `store`. */
  store: SqlStore;
  /** `--table NAME` for SQL targets; default `batch_predictions`. */
  table?: string;
  /** MLSHIP_HOME. Relative file targets resolve against the working directory, as the CLI's other paths do. */
  home: string;
}

/** A `batch_predictions`-shaped table. A type alias: Kysely's table maps need index signatures. */
export type PredictionsTable = {
  model: string;
  id: string;
  version: number;
  run_id: string;
  scored_at: string;
  /** JSON text. */
  outputs: string;
};

/** The target's table name is only known at run time, so the sink's Kysely instance is typed for any name. */
type PredictionTables = Record<string, PredictionsTable>;

/** Checks a `--table` name: a plain lower-case SQL identifier, so it never needs quoting rules of its own. */
export function checkTableName(name: string): string {
  if (!TABLE_NAME_PATTERN.test(name)) {
    throw new MlshipError(
      "MLSHIP_ERR_INPUT_INVALID",
      `table name "${name}" is not valid: use lower-case letters, digits and _, starting with a letter or _, at most 63 characters`,
      { field: "table" },
    );
  }
  return name;
}

/** What a target is called in messages and in `batch_runs.target`: `sqlite`, a redacted URL, or a file path. */
export function describeTarget(target: string | undefined): string {
  const text = target?.trim() ?? "";
  if (text === "" || text === "sqlite" || text === "store") return "sqlite";
  if (isPostgresUrl(text)) return redactUrl(text);
  return path.resolve(text);
}

function isPostgresUrl(text: string): boolean {
  return /^postgres(ql)?:\/\//i.test(text);
}

/** Opens the sink `--into` names. Bad targets are MLSHIP_ERR_INPUT_INVALID (field `into`), unreachable databases MLSHIP_ERR_STORE_UNAVAILABLE. */
export async function openSink(target: string | undefined, options: OpenSinkOptions): Promise<PredictionSink> {
  const text = target?.trim() ?? "";
  const lower = text.toLowerCase();
  if (text === "" || lower === "sqlite" || lower === "store") {
    const table = checkTableName(options.table ?? DEFAULT_PREDICTIONS_TABLE);
    return openStoreSink(options.store, table);
  }
  if (isPostgresUrl(text)) {
    const table = checkTableName(options.table ?? DEFAULT_PREDICTIONS_TABLE);
    return openPostgresSink(text, table);
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    throw new MlshipError(
      "MLSHIP_ERR_INPUT_INVALID",
      `--into "${redactUrl(text)}" is not supported: use sqlite, postgres://..., or a .parquet, .jsonl or .ndjson file`,
      { field: "into" },
    );
  }
  if (options.table !== undefined) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `--table applies to SQL targets only, not to the file ${text}`, {
      field: "table",
    });
  }
  const file = path.resolve(text);
  if (/\.(jsonl|ndjson)$/i.test(file)) return openJsonLinesSink(file);
  if (/\.parquet$/i.test(file)) return openParquetSink(file);
  throw new MlshipError(
    "MLSHIP_ERR_INPUT_INVALID",
    `--into "${text}" is not a known target: use sqlite, postgres://..., or a file ending in .parquet, .jsonl or .ndjson`,
    { field: "into" },
  );
}

// ---------------------------------------------------------------------------------------------------------------
// SQL

/** Columns of a predictions table, in insert order. */
const COLUMNS = ["model", "id", "version", "run_id", "scored_at", "outputs"] as const;
/** SQLite's historical default limit is 999 bound variables per statement: 166 rows of 6. */
const SQLITE_INSERT_ROWS = Math.floor(999 / COLUMNS.length);
/** Rows per statement of the writer thread, which binds an id and outputs per row plus 4 constants: under 999. */
const SQLITE_PAIR_ROWS = Math.floor((999 - 4) / 2);
/** PostgreSQL allows 65535 parameters per statement; 1000 rows keeps statements moderate. */
const POSTGRES_INSERT_ROWS = 1000;
/**
 * Rows per PostgreSQL upsert through `unnest`: ids and outputs go as two text arrays (two parameters whatever the
 * row count), so one statement carries a whole chunk; the bound keeps a statement's arrays moderate.
 */
const POSTGRES_UNNEST_ROWS = 10_000;
/** Ids per `existing`/`readPredictions` query (under SQLite's 999 variables, with the model). */
const LOOKUP_CHUNK = 900;

type PredictionRow = PredictionsTable;

function toRows(rows: readonly ScoredRow[], meta: SinkWriteMeta): PredictionRow[] {
  checkMeta(meta);
  // One row per id in a write: PostgreSQL refuses an upsert statement that touches the same row twice, and the
  // last prediction of an id is the one to keep anyway.
  const byId = new Map<string, PredictionRow>();
  for (const row of rows) {
    byId.set(row.id, {
      model: meta.model,
      id: row.id,
      version: meta.version,
      run_id: meta.runId,
      scored_at: meta.scoredAt,
      outputs: JSON.stringify(row.outputs),
    });
  }
  return [...byId.values()];
}

function checkMeta(meta: SinkWriteMeta): void {
  if (meta.model === "") throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "predictions need a model name", { field: "model" });
  if (!Number.isInteger(meta.version)) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `model version ${meta.version} is not an integer`, { field: "version" });
  }
}

interface SqlTarget {
  kind: "sqlite" | "postgres";
  /** What messages name: `sqlite <file> table t`, a redacted URL... */
  description: string;
  /** Where errors say the store is (for mapStoreError). */
  location: string;
  table: string;
  db: Kysely<PredictionTables>;
  /** Runs `fn` in one write transaction. */
  write<T>(fn: (db: Kysely<PredictionTables>, raw: BetterSqlite3.Database | undefined) => Promise<T>): Promise<T>;
  /** A SQLite file's writer thread: when set, predictions are written there (see SqliteWriterThread). */
  thread?: SqliteWriterThread;

  close(): Promise<void>;
}

function intoError(target: string, error: unknown): unknown {
  const mapped = mapStoreError(target, error);
  if (mapped instanceof MlshipError) {
    if (mapped.code === "MLSHIP_ERR_STORE_UNAVAILABLE" && mapped.field === "store") {
      return new MlshipError(mapped.code, `prediction target ${target} cannot be reached: ${errorText(error)}`, {
        field: "into",
        cause: error,
        details: { into: target },
        retryAfterSeconds: mapped.retryAfterSeconds,
      });
    }
    return mapped;
  }
  return new MlshipError("MLSHIP_ERR_STORE_UNAVAILABLE", `prediction target ${target} failed: ${errorText(error)}`, {
    field: "into",
    cause: error,
    details: { into: target },
  });
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function ensureTable(db: Kysely<PredictionTables>, table: string, description: string): Promise<void> {
  try {
    await db.schema
      .createTable(table)
      .ifNotExists()
      .addColumn("model", "text", (col) => col.notNull())
      .addColumn("id", "text", (col) => col.notNull())
      .addColumn("version", "integer", (col) => col.notNull())
      .addColumn("run_id", "text", (col) => col.notNull())
      .addColumn("scored_at", "text", (col) => col.notNull())
      .addColumn("outputs", "text", (col) => col.notNull())
      .addPrimaryKeyConstraint(`${table.slice(0, 60)}_pk`, ["model", "id"])
      .execute();
  } catch (error) {
    // Two runs creating the table at once on PostgreSQL: the loser sees a duplicate type/relation; the table exists.
    if (!isUniqueViolation(error)) throw error;
  }
  try {
    // An existing table of another shape (`--table models`, say) would fail every insert: say so up front.
    await db.selectFrom(table).select([...COLUMNS]).where("model", "=", "").limit(0).execute();
  } catch (error) {
    if (isUnavailable(error)) throw error;
    throw new MlshipError(
      "MLSHIP_ERR_INPUT_INVALID",
      `table ${table} in ${description} exists but is not a predictions table (columns ${COLUMNS.join(", ")}): ${errorText(error)}`,
      { field: "table", cause: error },
    );
  }
}

async function openStoreSink(store: SqlStore, table: string): Promise<PredictionSink> {
  // Predictions tables are not part of the store's typed schema (their name is chosen at run time).
  const asPredictions = (db: unknown) => db as Kysely<PredictionTables>;
  const target: SqlTarget = {
    kind: store.dialect,
    description: `${store.dialect} ${store.location} table ${table}`,
    location: store.location,
    table,
    db: asPredictions(store.db),
    write: (fn) => store.write((trx) => fn(asPredictions(trx), store.sqlite)),
    // The store belongs to the caller.
    close: () => Promise.resolve(),
  };
  if (table !== DEFAULT_PREDICTIONS_TABLE) {
    try {
      await target.write((db) => ensureTable(db, table, target.description));
    } catch (error) {
      throw intoError(store.location, error);
    }
  }
  // A store in a file: predictions are written by a thread of their own, on its own connection.
  const sqlite = store.sqlite;
  if (sqlite !== undefined && !sqlite.memory && store.location !== ":memory:" && fs.existsSync(store.location)) {
    const busyTimeoutMs = Number(sqlite.pragma("busy_timeout", { simple: true })) || 5000;
    const thread = new SqliteWriterThread(store.location, table, busyTimeoutMs);
    // Where a thread cannot open the file (or load the driver), the store's own connection writes, as it always could.
    if (await thread.ready) {
      target.thread = thread;
      target.close = () => thread.close();
    } else await thread.close().catch(() => undefined);
  }
  return new SqlSink(target);
}

async function openPostgresSink(url: string, table: string): Promise<PredictionSink> {
  const location = redactUrl(url);
  const { default: driver } = await import("pg");
  let pool: pg.Pool;
  try {
    pool = new driver.Pool({ connectionString: url, max: 4, connectionTimeoutMillis: 10_000 });
  } catch (error) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `--into ${location} is not a valid PostgreSQL URL: ${errorText(error)}`, {
      field: "into",
      cause: error,
    });
  }
  // An idle client losing its connection must not crash the process; the next query reports the failure.
  pool.on("error", () => undefined);
  const db = new Kysely<PredictionTables>({ dialect: new PostgresDialect({ pool }) });
  const target: SqlTarget = {
    kind: "postgres",
    description: `${location} table ${table}`,
    location,
    table,
    db,
    write: (fn) => db.transaction().execute((trx: Transaction<PredictionTables>) => fn(trx, undefined)),
    close: () => db.destroy(),
  };
  try {
    await ensureTable(db, table, location);
  } catch (error) {
    await db.destroy().catch(() => undefined);
    throw intoError(location, error);
  }
  return new SqlSink(target);
}

/** One output tensor of a scoring result, as a sink that formats rows itself takes it. */
export interface OutputTensor {
  name: string;
  dtype: string;
  shape: number[];
  data: ArrayLike<unknown>;
}

/**
 * Scored rows as the scoring service returned them: ids in row order and the result's outputs (in the result's
 * order). The sink formats each row as `formatMlflowResponse` does for dataframe input (one record per row).
 */
export interface TensorRows {
  ids: string[];
  rows: number;
  outputs: OutputTensor[];
}

/** A sink that takes scored rows as tensors (formatting them where it writes them). */
export interface TensorRowsSink extends PredictionSink {
  writeTensorRows(parts: readonly TensorRows[], meta: SinkWriteMeta): Promise<void>;
}

/** The sink as a TensorRowsSink, when it takes tensors. */
export function tensorRowsSink(sink: PredictionSink): TensorRowsSink | undefined {
  return sink instanceof SqlSink && sink.takesTensors ? sink : undefined;
}

/**
 * The worker a SqliteWriterThread runs (CommonJS, evaluated): one connection to the store's file, one transaction per
 * write (BEGIN IMMEDIATE, multi-row upserts, COMMIT), retried like the store's own writes when the file stays locked.
 */
const SQLITE_WRITER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const { file, table, busyTimeoutMs, columns, maxRows, attempts } = workerData;
const db = new Database(file, { timeout: busyTimeoutMs });
db.pragma("busy_timeout = " + busyTimeoutMs);
db.pragma("synchronous = NORMAL");
// A larger page cache than SQLite's 2 MB default: upserts into a big table touch index pages all over it.
db.pragma("cache_size = -65536");
parentPort.postMessage({ ready: true });
const statements = new Map();
// The run's constants are bound once per statement, ids and outputs in pairs ("where true": SQLite's upsert syntax
// after a select).
const statement = (rows) => {
  let found = statements.get(rows);
  if (found === undefined) {
    found = db.prepare(
      'insert into "' + table + '" (' + columns.map((c) => '"' + c + '"').join(", ") + ") " +
        "select ?, column1, ?, ?, ?, column2 from (values " + new Array(rows).fill("(?, ?)").join(", ") + ") where true" +
        " on conflict (model, id) do update set version = excluded.version, run_id = excluded.run_id," +
        " scored_at = excluded.scored_at, outputs = excluded.outputs",
    );
    if (statements.size > 8) statements.clear();
    statements.set(rows, found);
  }
  return found;
};
const sleep = new Int32Array(new SharedArrayBuffer(4));
const transient = (error) => typeof error?.code === "string" && (error.code.startsWith("SQLITE_BUSY") || error.code.startsWith("SQLITE_LOCKED"));
// formatMlflowResponse (src/scoring/format.ts) for dataframe input, one JSON text per row: keep the two alike.
const fromFloat16Bits = (h) => {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
};
const tensorValues = ({ data, dtype }) => {
  if (Array.isArray(data)) return data;
  const n = data.length;
  const out = new Array(n);
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) for (let i = 0; i < n; i++) out[i] = Number(data[i]);
  else if (dtype === "bool") for (let i = 0; i < n; i++) out[i] = data[i] !== 0;
  else if (dtype === "float16") for (let i = 0; i < n; i++) out[i] = fromFloat16Bits(data[i]);
  else for (let i = 0; i < n; i++) out[i] = data[i];
  return out;
};
const nester = (shape) => {
  const rank = shape.length;
  if (rank === 0) return (flat, offset) => flat[offset];
  const strides = new Array(rank);
  let size = 1;
  for (let d = rank - 1; d >= 0; d--) {
    strides[d] = size;
    size *= shape[d];
  }
  const build = (flat, dim, at) => {
    const n = shape[dim];
    if (dim === rank - 1) return flat.slice(at, at + n);
    const step = strides[dim];
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = build(flat, dim + 1, at + i * step);
    return out;
  };
  return (flat, offset) => build(flat, 0, offset);
};
// JSON.stringify's text for a value, without building the row object: numbers, strings (repeated labels are
// encoded once), booleans; anything else through JSON.stringify itself.
const encoded = new Map();
const jsonScalar = (v) => {
  if (typeof v === "number") return Number.isFinite(v) ? String(v) : "null";
  if (typeof v === "string") {
    let text = encoded.get(v);
    if (text === undefined) {
      text = JSON.stringify(v);
      if (encoded.size < 10000) encoded.set(v, text);
    }
    return text;
  }
  if (typeof v === "boolean") return v ? "true" : "false";
  return JSON.stringify(v);
};
const INDEX_KEY = /^(0|[1-9][0-9]*)$/;
/** rowsJson for the usual outputs (a scalar or a flat list per row, names that are not array indexes), else null. */
const plainRowsJson = ({ rows: n, outputs }) => {
  const lists = [];
  for (const t of outputs) {
    if (INDEX_KEY.test(t.name)) return null;
    const values = tensorValues(t);
    const key = JSON.stringify(t.name) + ":";
    const batched = t.shape.length > 0 && t.shape[0] === n;
    if (!batched) {
      const whole = JSON.stringify(nester(t.shape)(values, 0));
      if (whole !== undefined) lists.push({ key, whole });
      continue;
    }
    const inner = t.shape.slice(1);
    const step = inner.reduce((a, b) => a * b, 1);
    if (step !== 1 && inner.length !== 1) return null;
    if (values.length < n * step) return null;
    lists.push({ key, values, step });
  }
  const json = new Array(n);
  for (let r = 0; r < n; r++) {
    let text = "{";
    for (let i = 0; i < lists.length; i++) {
      const o = lists[i];
      if (i > 0) text += ",";
      text += o.key;
      if (o.whole !== undefined) text += o.whole;
      else if (o.step === 1) {
        const v = o.values[r];
        if (v === undefined || v === null || typeof v === "object") return null;
        text += jsonScalar(v);
      } else {
        text += "[";
        const at = r * o.step;
        for (let j = 0; j < o.step; j++) {
          const v = o.values[at + j];
          if (v === undefined || v === null || typeof v === "object") return null;
          text += (j > 0 ? "," : "") + jsonScalar(v);
        }
        text += "]";
      }
    }
    json[r] = text + "}";
  }
  return json;
};
const rowsJson = (part) => plainRowsJson(part) ?? objectRowsJson(part);
const objectRowsJson = ({ rows: n, outputs }) => {
  const lists = outputs.map((t) => {
    const values = tensorValues(t);
    const batched = t.shape.length > 0 && t.shape[0] === n;
    const inner = batched ? t.shape.slice(1) : t.shape;
    const step = batched ? inner.reduce((a, b) => a * b, 1) : values.length;
    return { name: t.name, values, batched, step, nest: nester(inner), whole: batched ? undefined : nester(t.shape)(values, 0) };
  });
  const json = new Array(n);
  for (let r = 0; r < n; r++) {
    const row = {};
    for (const o of lists) {
      if (!o.batched) row[o.name] = o.whole;
      else if (o.step === 1) row[o.name] = o.values[r];
      else row[o.name] = o.nest(o.values, r * o.step);
    }
    json[r] = JSON.stringify(row);
  }
  return json;
};
/** Ids and outputs of tensor parts; one row per id, the last one's outputs (as the sink's other writes). */
const fromParts = (parts) => {
  const byId = new Map();
  for (const part of parts) {
    const json = rowsJson(part);
    for (let r = 0; r < part.rows; r++) byId.set(part.ids[r], json[r]);
  }
  return { ids: [...byId.keys()], outputs: [...byId.values()] };
};
const write = (message) => {
  const { model, version, runId, scoredAt } = message;
  const { ids, outputs } = message.parts === undefined ? message : fromParts(message.parts);
  db.exec("BEGIN IMMEDIATE");
  try {
    for (let start = 0; start < ids.length; start += maxRows) {
      const count = Math.min(maxRows, ids.length - start);
      const values = new Array(4 + count * 2);
      values[0] = model;
      values[1] = version;
      values[2] = runId;
      values[3] = scoredAt;
      let at = 4;
      for (let row = start; row < start + count; row += 1) {
        values[at++] = ids[row];
        values[at++] = outputs[row];
      }
      statement(count).run(values);
    }
    db.exec("COMMIT");
  } catch (error) {
    if (db.inTransaction) db.exec("ROLLBACK");
    throw error;
  }
};
parentPort.on("message", (message) => {
  if (message.close === true) {
    db.close();
    parentPort.postMessage({ closed: true });
    return;
  }
  for (let attempt = 1; ; attempt += 1) {
    try {
      write(message);
      parentPort.postMessage({ id: message.id, ok: true });
      return;
    } catch (error) {
      if (transient(error) && attempt < attempts) {
        Atomics.wait(sleep, 0, 0, 10 * attempt + Math.random() * 40);
        continue;
      }
      parentPort.postMessage({ id: message.id, ok: false, error: { message: String(error?.message ?? error), code: error?.code, name: error?.name } });
      return;
    }
  }
});
`;

/**
 * Writes a store sink's predictions into the store's SQLite file from a worker thread, so that binding and inserting
 * (the costliest part of a batch run into SQLite) run beside the reading and scoring instead of between them. Each
 * write is one transaction, as through the store; writes are answered in order. The thread is referenced only while
 * a write is pending, and ends on `close`.
 */
/** A typed array that is its buffer's whole (copied when it is a view on a larger one); other arrays as they are. */
function ownArray(data: ArrayLike<unknown>): ArrayLike<unknown> {
  if (ArrayBuffer.isView(data) && !(data instanceof DataView)) {
    const view = data as unknown as { byteLength: number; buffer: ArrayBufferLike; slice(): ArrayLike<unknown> };
    return view.byteLength === view.buffer.byteLength ? data : view.slice();
  }
  return data;
}

class SqliteWriterThread {
  readonly #worker: Worker;
  /** True once the thread has opened the file; false when it could not. */
  readonly ready: Promise<boolean>;
  readonly #waiting = new Map<number, { resolve: () => void; reject: (error: unknown) => void }>();
  #next = 0;
  #broken: Error | undefined;
  #closing: Promise<void> | undefined;

  constructor(file: string, table: string, busyTimeoutMs: number) {
    const driver = createRequire(import.meta.url).resolve("better-sqlite3");
    this.#worker = new Worker(SQLITE_WRITER_SOURCE, {
      eval: true,
      workerData: { driver, file, table, busyTimeoutMs, columns: [...COLUMNS], maxRows: SQLITE_PAIR_ROWS, attempts: 4 },
    });
    let started: (ok: boolean) => void = () => undefined;
    this.ready = new Promise<boolean>((resolve) => {
      started = resolve;
    });
    this.#worker.on("message", (message: { ready?: boolean; id?: number; ok?: boolean; error?: { message: string; code?: string; name?: string } }) => {
      if (message.ready === true) {
        this.#worker.unref();
        started(true);
        return;
      }
      if (message.id === undefined) return;
      const waiting = this.#waiting.get(message.id);
      if (waiting === undefined) return;
      this.#waiting.delete(message.id);
      if (this.#waiting.size === 0) this.#worker.unref();
      if (message.ok === true) waiting.resolve();
      else waiting.reject(Object.assign(new Error(message.error?.message ?? "the SQLite writer failed"), { code: message.error?.code, name: message.error?.name ?? "Error" }));
    });
    const fail = (error: Error): void => {
      started(false);
      this.#broken ??= error;
      for (const waiting of this.#waiting.values()) waiting.reject(error);
      this.#waiting.clear();
    };
    this.#worker.on("error", fail);
    this.#worker.on("exit", (code) => fail(new Error(`the SQLite writer thread ended (exit code ${code})`)));
  }

  write(records: readonly PredictionRow[], meta: SinkWriteMeta): Promise<void> {
    if (this.#broken !== undefined) return Promise.reject(this.#broken);
    const id = this.#next++;
    const ids = new Array<string>(records.length);
    const outputs = new Array<string>(records.length);
    for (let i = 0; i < records.length; i++) {
      const record = records[i] as PredictionRow;
      ids[i] = record.id;
      outputs[i] = record.outputs;
    }
    return new Promise<void>((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#worker.ref();
      this.#worker.postMessage({ id, ids, outputs, model: meta.model, version: meta.version, runId: meta.runId, scoredAt: meta.scoredAt });
    });
  }

  /** Like `write`, with rows as tensors: the thread formats them. */
  writeTensors(parts: readonly TensorRows[], meta: SinkWriteMeta): Promise<void> {
    if (this.#broken !== undefined) return Promise.reject(this.#broken);
    const id = this.#next++;
    const plain = parts.map((part) => ({
      ids: part.ids,
      rows: part.rows,
      // Views are sent as arrays of their own (a view's whole buffer would be copied otherwise).
      outputs: part.outputs.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: ownArray(t.data) })),
    }));
    return new Promise<void>((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#worker.ref();
      this.#worker.postMessage({ id, parts: plain, model: meta.model, version: meta.version, runId: meta.runId, scoredAt: meta.scoredAt });
    });
  }

  /** Waits for the pending writes, closes the connection and ends the thread. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.allSettled([...this.#waiting.values()].map((waiting) => new Promise<void>((done) => {
        const { resolve, reject } = waiting;
        waiting.resolve = () => { resolve(); done(); };
        waiting.reject = (error) => { reject(error); done(); };
      })));
      if (this.#broken === undefined) {
        this.#worker.ref();
        await new Promise<void>((done) => {
          this.#worker.once("message", () => done());
          this.#worker.once("exit", () => done());
          this.#worker.postMessage({ close: true });
        });
      }
      await this.#worker.terminate();
    })();
    return this.#closing;
  }
}

class SqlSink implements PredictionSink {
  readonly kind: "sqlite" | "postgres";
  readonly description: string;
  readonly #target: SqlTarget;
  /** Prepared statements on the store's own SQLite connection, by rows per statement. */
  readonly #statements = new Map<number, BetterSqlite3.Statement>();
  #closed = false;

  constructor(target: SqlTarget) {
    this.#target = target;
    this.kind = target.kind;
    this.description = target.description;
  }

  /** True when rows can be written as tensors (a SQLite file written by its thread). */
  get takesTensors(): boolean {
    return this.#target.thread !== undefined;
  }

  async writeTensorRows(parts: readonly TensorRows[], meta: SinkWriteMeta): Promise<void> {
    this.#checkOpen();
    checkMeta(meta);
    const thread = this.#target.thread;
    if (thread === undefined) throw new Error("this sink does not take tensors");
    if (parts.every((part) => part.rows === 0)) return;
    try {
      await thread.writeTensors(parts, meta);
    } catch (error) {
      throw intoError(this.#target.location, error);
    }
  }

  async write(rows: readonly ScoredRow[], meta: SinkWriteMeta): Promise<void> {
    this.#checkOpen();
    const records = toRows(rows, meta);
    if (records.length === 0) return;
    try {
      const thread = this.#target.thread;
      if (thread !== undefined) {
        await thread.write(records, meta);
        return;
      }
      await this.#target.write(async (db, raw) => {
        if (raw !== undefined) this.#writeSqlite(raw, records);
        else if (this.#target.kind === "postgres") await this.#writePostgres(db, records, meta);
        else await this.#writeKysely(db, records);
      });
    } catch (error) {
      throw intoError(this.#target.location, error);
    }
  }

  #writeSqlite(raw: BetterSqlite3.Database, records: readonly PredictionRow[]): void {
    let start = 0;
    while (start < records.length) {
      const count = Math.min(SQLITE_INSERT_ROWS, records.length - start);
      const statement = this.#sqliteStatement(raw, count);
      const values: unknown[] = new Array(count * COLUMNS.length);
      let index = 0;
      for (let row = start; row < start + count; row += 1) {
        const record = records[row]!;
        values[index++] = record.model;
        values[index++] = record.id;
        values[index++] = record.version;
        values[index++] = record.run_id;
        values[index++] = record.scored_at;
        values[index++] = record.outputs;
      }
      statement.run(values);
      start += count;
    }
  }

  #sqliteStatement(raw: BetterSqlite3.Database, rows: number): BetterSqlite3.Statement {
    let statement = this.#statements.get(rows);
    if (statement === undefined) {
      const placeholders = `(${COLUMNS.map(() => "?").join(", ")})`;
      statement = raw.prepare(
        `insert into "${this.#target.table}" (${COLUMNS.map((c) => `"${c}"`).join(", ")}) values ` +
          `${new Array<string>(rows).fill(placeholders).join(", ")} ` +
          `on conflict (model, id) do update set version = excluded.version, run_id = excluded.run_id, ` +
          `scored_at = excluded.scored_at, outputs = excluded.outputs`,
      );
      // Only the full-size statement and the last partial one of a write are worth keeping.
      if (this.#statements.size > 8) this.#statements.clear();
      this.#statements.set(rows, statement);
    }
    return statement;
  }

  /**
   * One statement per POSTGRES_UNNEST_ROWS rows: the run's constants as scalars, ids and outputs as arrays unnested
   * into rows. PostgreSQL parses and plans it once, instead of binding six parameters per row.
   */
  async #writePostgres(db: Kysely<PredictionTables>, records: readonly PredictionRow[], meta: SinkWriteMeta): Promise<void> {
    for (let start = 0; start < records.length; start += POSTGRES_UNNEST_ROWS) {
      const slice = records.slice(start, start + POSTGRES_UNNEST_ROWS);
      const ids = slice.map((record) => record.id);
      const outputs = slice.map((record) => record.outputs);
      await sql`insert into ${sql.table(this.#target.table)} (model, id, version, run_id, scored_at, outputs)
        select ${meta.model}::text, u.id, ${meta.version}::integer, ${meta.runId}::text, ${meta.scoredAt}::text, u.outputs
        from unnest(${ids}::text[], ${outputs}::text[]) as u(id, outputs)
        on conflict (model, id) do update set version = excluded.version, run_id = excluded.run_id,
          scored_at = excluded.scored_at, outputs = excluded.outputs`.execute(db);
    }
  }

  async #writeKysely(db: Kysely<PredictionTables>, records: readonly PredictionRow[]): Promise<void> {
    const chunk = this.#target.kind === "sqlite" ? SQLITE_INSERT_ROWS : POSTGRES_INSERT_ROWS;
    for (let start = 0; start < records.length; start += chunk) {
      await db
        .insertInto(this.#target.table)
        .values(records.slice(start, start + chunk))
        .onConflict((oc) =>
          oc.columns(["model", "id"]).doUpdateSet((eb) => ({
            version: eb.ref("excluded.version"),
            run_id: eb.ref("excluded.run_id"),
            scored_at: eb.ref("excluded.scored_at"),
            outputs: eb.ref("excluded.outputs"),
          })),
        )
        .execute();
    }
  }

  async existing(model: string, ids: readonly string[]): Promise<Set<string>> {
    this.#checkOpen();
    const found = new Set<string>();
    try {
      for (let start = 0; start < ids.length; start += LOOKUP_CHUNK) {
        const rows = await this.#target.db
          .selectFrom(this.#target.table)
          .select("id")
          .where("model", "=", model)
          .where("id", "in", ids.slice(start, start + LOOKUP_CHUNK))
          .execute();
        for (const row of rows) found.add(row.id);
      }
    } catch (error) {
      throw intoError(this.#target.location, error);
    }
    return found;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#statements.clear();
    await this.#target.close();
  }

  #checkOpen(): void {
    if (this.#closed) throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `sink ${this.description} is closed`, { field: "into" });
  }
}

/**
 * The stored predictions of `model` for `ids` (those found), from the metadata store's `batch_predictions` or
 * `table`. For the lookup routes.
 */
export async function readPredictions(
  store: SqlStore,
  query: { model: string; ids: string[]; table?: string },
): Promise<Map<string, StoredPrediction>> {
  const table = checkTableName(query.table ?? DEFAULT_PREDICTIONS_TABLE);
  const db = store.db as unknown as Kysely<PredictionTables>;
  const found = new Map<string, StoredPrediction>();
  try {
    for (let start = 0; start < query.ids.length; start += LOOKUP_CHUNK) {
      const rows = await db
        .selectFrom(table)
        .select(["id", "version", "run_id", "scored_at", "outputs"])
        .where("model", "=", query.model)
        .where("id", "in", query.ids.slice(start, start + LOOKUP_CHUNK))
        .execute();
      for (const row of rows) {
        found.set(row.id, {
          version: Number(row.version),
          runId: row.run_id,
          scoredAt: row.scored_at,
          outputs: parseOutputs(row.outputs),
        });
      }
    }
  } catch (error) {
    if (!(error instanceof MlshipError) && !isUnavailable(error) && table !== DEFAULT_PREDICTIONS_TABLE && /no such table|does not exist/i.test(errorText(error))) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `table ${table} does not exist in ${store.location}`, { field: "table", cause: error });
    }
    throw mapStoreError(store.location, error);
  }
  return found;
}

function parseOutputs(text: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : { value };
  } catch {
    return {};
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Files

/** Columns every file row starts with; an output with one of these names is written as `output_<name>`. */
const META_COLUMNS = ["id", "model", "version", "run_id", "scored_at"] as const;
const RESERVED = new Set<string>(META_COLUMNS);

function outputColumnName(name: string): string {
  return RESERVED.has(name) ? `output_${name}` : name;
}

function fileError(file: string, error: unknown, what: string): MlshipError {
  if (error instanceof MlshipError) return error;
  return new MlshipError("MLSHIP_ERR_INPUT_INVALID", `prediction target ${file} ${what}: ${errorText(error)}`, {
    field: "into",
    cause: error,
    details: { into: file },
  });
}

async function openJsonLinesSink(file: string): Promise<PredictionSink> {
  let needsNewline = false;
  try {
    await fsp.mkdir(path.dirname(file), { recursive: true });
    const stat = await fsp.stat(file).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return undefined;
      throw error;
    });
    if (stat !== undefined) {
      if (!stat.isFile()) throw new Error("not a regular file");
      if (stat.size > 0) {
        // A run killed mid-line leaves a partial last line: start the appended rows on a line of their own.
        const handle = await fsp.open(file, "r");
        try {
          const last = Buffer.alloc(1);
          await handle.read(last, 0, 1, stat.size - 1);
          needsNewline = last[0] !== 0x0a;
        } finally {
          await handle.close();
        }
      }
    }
  } catch (error) {
    throw fileError(file, error, "cannot be written");
  }
  const stream = fs.createWriteStream(file, { flags: "a" });
  let failure: Error | undefined;
  stream.on("error", (error) => {
    failure = error;
  });
  await new Promise<void>((resolve, reject) => {
    stream.once("open", () => resolve());
    stream.once("error", reject);
  }).catch((error: unknown) => {
    throw fileError(file, error, "cannot be written");
  });
  if (needsNewline) stream.write("\n");
  return new JsonLinesSink(file, stream, () => failure);
}

class JsonLinesSink implements PredictionSink {
  readonly kind = "jsonl" as const;
  readonly description: string;
  readonly #file: string;
  readonly #stream: fs.WriteStream;
  readonly #failure: () => Error | undefined;
  /** Ids in the file by model, read once on the first `existing` and kept up to date by `write`. */
  #ids: Map<string, Set<string>> | undefined;
  #closed = false;

  constructor(file: string, stream: fs.WriteStream, failure: () => Error | undefined) {
    this.#file = file;
    this.description = file;
    this.#stream = stream;
    this.#failure = failure;
  }

  async write(rows: readonly ScoredRow[], meta: SinkWriteMeta): Promise<void> {
    this.#check();
    checkMeta(meta);
    if (rows.length === 0) return;
    const lines: string[] = [];
    for (const row of rows) {
      const record: Record<string, unknown> = {
        id: row.id,
        model: meta.model,
        version: meta.version,
        run_id: meta.runId,
        scored_at: meta.scoredAt,
      };
      for (const [name, value] of Object.entries(row.outputs)) record[outputColumnName(name)] = value;
      lines.push(JSON.stringify(record, jsonReplacer));
    }
    lines.push("");
    const flushed = this.#stream.write(lines.join("\n"));
    if (!flushed) await this.#drain();
    this.#check();
    const ids = this.#ids?.get(meta.model);
    if (this.#ids !== undefined) {
      const set = ids ?? new Set<string>();
      for (const row of rows) set.add(row.id);
      this.#ids.set(meta.model, set);
    }
  }

  #drain(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (error: Error) => {
        this.#stream.off("drain", onDrain);
        reject(fileError(this.#file, error, "cannot be written"));
      };
      const onDrain = () => {
        this.#stream.off("error", onError);
        resolve();
      };
      this.#stream.once("drain", onDrain);
      this.#stream.once("error", onError);
    });
  }

  async existing(model: string, ids: readonly string[]): Promise<Set<string>> {
    this.#check();
    this.#ids ??= await readJsonLinesIds(this.#file);
    const known = this.#ids.get(model);
    const found = new Set<string>();
    if (known === undefined) return found;
    for (const id of ids) if (known.has(id)) found.add(id);
    return found;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await new Promise<void>((resolve, reject) => {
      this.#stream.end((error?: Error | null) => (error ? reject(fileError(this.#file, error, "cannot be written")) : resolve()));
    });
    const failure = this.#failure();
    if (failure !== undefined) throw fileError(this.#file, failure, "cannot be written");
  }

  #check(): void {
    const failure = this.#failure();
    if (failure !== undefined) throw fileError(this.#file, failure, "cannot be written");
    if (this.#closed) throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `sink ${this.#file} is closed`, { field: "into" });
  }
}

function jsonReplacer(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? Number(value) : value;
}

async function readJsonLinesIds(file: string): Promise<Map<string, Set<string>>> {
  const byModel = new Map<string, Set<string>>();
  let input: fs.ReadStream;
  try {
    input = fs.createReadStream(file, { encoding: "utf8" });
    const lines = readline.createInterface({ input, crlfDelay: Infinity });
    for await (const line of lines) {
      if (line.trim() === "") continue;
      let record: unknown;
      try {
        record = JSON.parse(line);
      } catch {
        // A line cut short by a killed run: its row is scored again.
        continue;
      }
      if (typeof record !== "object" || record === null) continue;
      const { id, model } = record as { id?: unknown; model?: unknown };
      if (typeof id !== "string" || typeof model !== "string") continue;
      let set = byModel.get(model);
      if (set === undefined) byModel.set(model, (set = new Set()));
      set.add(id);
    }
  } catch (error) {
    throw fileError(file, error, "cannot be read");
  }
  return byModel;
}

// Parquet --------------------------------------------------------------------------------------------------------

/** Rows per row group: what the sink keeps in memory before handing them to the writer. */
export const PARQUET_ROW_GROUP_ROWS = 50_000;

/** hyparquet-writer bundles its own hyparquet: its schema type, not the reader's. */
type SchemaElement = ConstructorParameters<typeof ParquetWriter>[0]["schema"][number];
/** What the sink needs of a schema element read back from an existing file. */
type ReadSchemaElement = { name: string; type?: string; converted_type?: string };

type OutputKind = "DOUBLE" | "STRING" | "BOOLEAN" | "JSON";

interface OutputColumn {
  /** The output's name in `ScoredRow.outputs`. */
  output: string;
  /** Its column name in the file. */
  column: string;
  kind: OutputKind;
}

function required(name: string, type: "BYTE_ARRAY" | "INT32"): SchemaElement {
  return type === "INT32"
    ? { name, type: "INT32", repetition_type: "REQUIRED" }
    : { name, type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "REQUIRED" };
}

function outputElement(column: OutputColumn): SchemaElement {
  switch (column.kind) {
    case "DOUBLE":
      return { name: column.column, type: "DOUBLE", repetition_type: "OPTIONAL" };
    case "BOOLEAN":
      return { name: column.column, type: "BOOLEAN", repetition_type: "OPTIONAL" };
    case "STRING":
      return { name: column.column, type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" };
    case "JSON":
      return { name: column.column, type: "BYTE_ARRAY", converted_type: "JSON", repetition_type: "OPTIONAL" };
  }
}

function kindOf(value: unknown): OutputKind | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value === "number" || typeof value === "bigint") return "DOUBLE";
  if (typeof value === "string") return "STRING";
  if (typeof value === "boolean") return "BOOLEAN";
  return "JSON";
}

function kindFromElement(element: ReadSchemaElement): OutputKind | undefined {
  if (element.type === "DOUBLE") return "DOUBLE";
  if (element.type === "BOOLEAN") return "BOOLEAN";
  if (element.type === "BYTE_ARRAY" && element.converted_type === "JSON") return "JSON";
  if (element.type === "BYTE_ARRAY") return "STRING";
  return undefined;
}

/** The file's columns after the metadata ones, from the first rows written (an output null throughout is JSON). */
function outputColumnsOf(rows: readonly ScoredRow[]): OutputColumn[] {
  const kinds = new Map<string, OutputKind | undefined>();
  for (const row of rows) {
    for (const [name, value] of Object.entries(row.outputs)) {
      if (kinds.get(name) === undefined) kinds.set(name, kindOf(value));
    }
  }
  return [...kinds].map(([output, kind]) => ({ output, column: outputColumnName(output), kind: kind ?? "JSON" }));
}

/**
 * Parquet target. hyparquet-writer's `ParquetWriter` writes row groups incrementally through a file writer, so the
 * sink buffers at most one row group (PARQUET_ROW_GROUP_ROWS rows) whatever the dataset's size. The file is written
 * as `<file>.partial` and renamed on close, so a killed run never leaves a truncated file under the target's name.
 * A Parquet file cannot be appended to in place: when the target already exists (a resumed or repeated run), its rows
 * are copied into the new file first, one row group at a time, and `existing()` reports their ids.
 */
async function openParquetSink(file: string): Promise<PredictionSink> {
  let previous: PreviousParquet | undefined;
  try {
    await fsp.mkdir(path.dirname(file), { recursive: true });
    previous = await readPreviousParquet(file);
    // Fail now, not after the first chunk has been scored, when the directory cannot be written.
    await fsp.writeFile(partialPath(file), "");
  } catch (error) {
    throw fileError(file, error, "cannot be written");
  }
  return new ParquetSink(file, previous);
}

/**
 * hyparquet-writer's own `fileWriter` only writes out when its buffer passes 1 MB and defines no `flush`; this one
 * also writes each row group out as soon as ParquetWriter finishes it (ParquetWriter calls `flush` after each group),
 * through one file descriptor.
 */
class PartialFileWriter extends ByteWriter {
  static readonly FLUSH_BYTES = 1 << 20;
  readonly #fd: number;
  #open = true;

  constructor(file: string) {
    super(1 << 16);
    this.#fd = fs.openSync(file, "w");
  }

  override ensure(size: number): void {
    if (this.index > PartialFileWriter.FLUSH_BYTES) this.flush();
    super.ensure(size);
  }

  flush(): void {
    let written = 0;
    while (written < this.index) written += fs.writeSync(this.#fd, new Uint8Array(this.buffer, written, this.index - written));
    this.index = 0;
  }

  override finish(): void {
    this.flush();
    this.abort();
  }

  /** Closes the file without writing what is left (after a failure). */
  abort(): void {
    if (!this.#open) return;
    this.#open = false;
    fs.closeSync(this.#fd);
  }

  override getBuffer(): ArrayBuffer {
    throw new Error("a file writer keeps no buffer");
  }

  override getBytes(): Uint8Array<ArrayBuffer> {
    throw new Error("a file writer keeps no buffer");
  }
}

function partialPath(file: string): string {
  return `${file}.partial`;
}

interface PreviousParquet {
  schema: ReadSchemaElement[];
  rowGroups: { start: number; end: number }[];
}

async function readPreviousParquet(file: string): Promise<PreviousParquet | undefined> {
  const stat = await fsp.stat(file).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return undefined;
    throw error;
  });
  if (stat === undefined) return undefined;
  if (!stat.isFile()) throw new Error("not a regular file");
  if (stat.size === 0) return undefined;
  const buffer = await asyncBufferFromFile(file);
  const metadata = await parquetMetadataAsync(buffer);
  const rowGroups: { start: number; end: number }[] = [];
  let start = 0;
  for (const group of metadata.row_groups) {
    const end = start + Number(group.num_rows);
    rowGroups.push({ start, end });
    start = end;
  }
  return { schema: metadata.schema, rowGroups };
}

class ParquetSink implements PredictionSink {
  readonly kind = "parquet" as const;
  readonly description: string;
  readonly #file: string;
  readonly #previous: PreviousParquet | undefined;
  #writer: ParquetWriter | undefined;
  #fileWriter: PartialFileWriter | undefined;
  #outputs: OutputColumn[] | undefined;
  /** The current row group, column by column. */
  #buffer: Record<string, unknown[]> = {};
  #buffered = 0;
  #ids: Map<string, Set<string>> | undefined;
  #closed = false;
  #failed: MlshipError | undefined;

  constructor(file: string, previous: PreviousParquet | undefined) {
    this.#file = file;
    this.description = file;
    this.#previous = previous;
  }

  async write(rows: readonly ScoredRow[], meta: SinkWriteMeta): Promise<void> {
    this.#check();
    checkMeta(meta);
    if (rows.length === 0) return;
    try {
      if (this.#writer === undefined) await this.#start(rows);
      const outputs = this.#outputs!;
      for (const row of rows) {
        for (const name of Object.keys(row.outputs)) {
          if (!outputs.some((column) => column.output === name)) {
            throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `output "${name}" was not in the first rows written to ${this.#file}`, {
              field: "into",
            });
          }
        }
        this.#push("id", row.id);
        this.#push("model", meta.model);
        this.#push("version", meta.version);
        this.#push("run_id", meta.runId);
        this.#push("scored_at", meta.scoredAt);
        for (const column of outputs) this.#push(column.column, this.#cell(column, row.outputs[column.output]));
        this.#buffered += 1;
        if (this.#buffered >= PARQUET_ROW_GROUP_ROWS) this.#flushGroup();
      }
    } catch (error) {
      this.#failed = fileError(this.#file, error, "cannot be written");
      throw this.#failed;
    }
    if (this.#ids !== undefined) {
      let set = this.#ids.get(meta.model);
      if (set === undefined) this.#ids.set(meta.model, (set = new Set()));
      for (const row of rows) set.add(row.id);
    }
  }

  #push(column: string, value: unknown): void {
    (this.#buffer[column] ??= []).push(value);
  }

  #cell(column: OutputColumn, value: unknown): unknown {
    if (value === null || value === undefined) return null;
    switch (column.kind) {
      case "DOUBLE":
        if (typeof value === "number") return value;
        if (typeof value === "bigint") return Number(value);
        break;
      case "STRING":
        if (typeof value === "string") return value;
        break;
      case "BOOLEAN":
        if (typeof value === "boolean") return value;
        break;
      case "JSON":
        // hyparquet-writer serialises JSON columns itself.
        return value;
    }
    throw new MlshipError(
      "MLSHIP_ERR_INPUT_INVALID",
      `output "${column.output}" holds ${JSON.stringify(value, jsonReplacer)}, but its column in ${this.#file} is ${column.kind}`,
      { field: "into" },
    );
  }

  async #start(rows: readonly ScoredRow[]): Promise<void> {
    let outputs = outputColumnsOf(rows);
    if (this.#previous !== undefined) outputs = this.#matchPrevious(outputs);
    const schema: SchemaElement[] = [
      { name: "root", num_children: META_COLUMNS.length + outputs.length },
      required("id", "BYTE_ARRAY"),
      required("model", "BYTE_ARRAY"),
      required("version", "INT32"),
      required("run_id", "BYTE_ARRAY"),
      required("scored_at", "BYTE_ARRAY"),
      ...outputs.map(outputElement),
    ];
    this.#outputs = outputs;
    this.#writer = this.#newWriter(schema);
    if (this.#previous !== undefined) await this.#copyPrevious();
  }

  #newWriter(schema: SchemaElement[]): ParquetWriter {
    this.#fileWriter = new PartialFileWriter(partialPath(this.#file));
    return new ParquetWriter({ writer: this.#fileWriter, schema, createdBy: "mlship" });
  }

  /** A resumed run's outputs must be the file's: same names, same kinds, in the file's order. */
  #matchPrevious(outputs: OutputColumn[]): OutputColumn[] {
    const previous = this.#previous!;
    const fileColumns = previous.schema.slice(1);
    const names = fileColumns.map((element) => element.name);
    const mismatch = () =>
      new MlshipError(
        "MLSHIP_ERR_INPUT_INVALID",
        `${this.#file} already holds predictions with columns ${names.join(", ")}, which do not match this run's outputs ` +
          `(${outputs.map((column) => column.column).join(", ")}): write to another file`,
        { field: "into" },
      );
    if (names.slice(0, META_COLUMNS.length).join() !== META_COLUMNS.join()) throw mismatch();
    const matched: OutputColumn[] = [];
    for (const element of fileColumns.slice(META_COLUMNS.length)) {
      const kind = kindFromElement(element);
      const mine = outputs.find((column) => column.column === element.name);
      if (kind === undefined || mine === undefined) throw mismatch();
      // An output null in this run's first rows takes the file's kind.
      matched.push({ ...mine, kind });
    }
    if (matched.length !== outputs.length) throw mismatch();
    return matched;
  }

  async #copyPrevious(): Promise<void> {
    const previous = this.#previous!;
    const buffer = await asyncBufferFromFile(this.#file);
    const columns = previous.schema.slice(1).map((element) => element.name);
    for (const group of previous.rowGroups) {
      const rows = await parquetReadObjects({ file: buffer, rowStart: group.start, rowEnd: group.end, columns });
      for (const row of rows) {
        for (const column of columns) this.#push(column, column === "version" ? Number(row[column]) : (row[column] ?? null));
        this.#buffered += 1;
        if (this.#buffered >= PARQUET_ROW_GROUP_ROWS) this.#flushGroup();
      }
    }
  }

  #flushGroup(): void {
    if (this.#buffered === 0 || this.#writer === undefined) return;
    const outputs = this.#outputs!;
    const columnData = [
      { name: "id", data: this.#buffer.id ?? [] },
      { name: "model", data: this.#buffer.model ?? [] },
      { name: "version", data: Int32Array.from((this.#buffer.version ?? []) as number[]) },
      { name: "run_id", data: this.#buffer.run_id ?? [] },
      { name: "scored_at", data: this.#buffer.scored_at ?? [] },
      ...outputs.map((column) => ({ name: column.column, data: this.#buffer[column.column] ?? [] })),
    ];
    // fileWriter's flush is synchronous: write() returns no promise for it.
    void this.#writer.write({ columnData, rowGroupSize: this.#buffered });
    this.#buffer = {};
    this.#buffered = 0;
  }

  async existing(model: string, ids: readonly string[]): Promise<Set<string>> {
    this.#check();
    if (this.#ids === undefined) {
      this.#ids = new Map();
      if (this.#previous !== undefined) {
        try {
          const buffer = await asyncBufferFromFile(this.#file);
          for (const group of this.#previous.rowGroups) {
            const rows = await parquetReadObjects({ file: buffer, rowStart: group.start, rowEnd: group.end, columns: ["id", "model"] });
            for (const row of rows) {
              const rowModel = String(row.model);
              let set = this.#ids.get(rowModel);
              if (set === undefined) this.#ids.set(rowModel, (set = new Set()));
              set.add(String(row.id));
            }
          }
        } catch (error) {
          this.#ids = undefined;
          throw fileError(this.#file, error, "cannot be read");
        }
      }
    }
    const known = this.#ids.get(model);
    const found = new Set<string>();
    if (known !== undefined) for (const id of ids) if (known.has(id)) found.add(id);
    return found;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const partial = partialPath(this.#file);
    if (this.#failed !== undefined) {
      this.#fileWriter?.abort();
      await fsp.rm(partial, { force: true }).catch(() => undefined);
      return;
    }
    try {
      if (this.#writer === undefined) {
        // Nothing written: leave an existing file as it is; otherwise an empty file with the metadata columns.
        if (this.#previous !== undefined) {
          await fsp.rm(partial, { force: true });
          return;
        }
        this.#outputs = [];
        this.#writer = this.#newWriter([
            { name: "root", num_children: META_COLUMNS.length },
            required("id", "BYTE_ARRAY"),
            required("model", "BYTE_ARRAY"),
            required("version", "INT32"),
            required("run_id", "BYTE_ARRAY"),
            required("scored_at", "BYTE_ARRAY"),
        ]);
      }
      this.#flushGroup();
      await this.#writer.finish();
      await fsp.rename(partial, this.#file);
    } catch (error) {
      this.#fileWriter?.abort();
      await fsp.rm(partial, { force: true }).catch(() => undefined);
      throw fileError(this.#file, error, "cannot be written");
    }
  }

  #check(): void {
    if (this.#failed !== undefined) throw this.#failed;
    if (this.#closed) throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `sink ${this.#file} is closed`, { field: "into" });
  }
}
