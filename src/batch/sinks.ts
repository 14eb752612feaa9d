/**
 * Prediction sinks for `mlship batch score ... --into TARGET [--table NAME]`: the metadata store (SQLite or
 * PostgreSQL), another PostgreSQL database, a JSON Lines file or a Parquet file.
 *
 * SQL targets upsert on (model, id), so a repeated or resumed run leaves one prediction per id: the one written last,
 * which is the newest run's. File targets append: a resumed run adds its rows after those already in the file.
 */
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import readline from "node:readline";
import type BetterSqlite3 from "better-sqlite3";
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from "hyparquet";
import { ByteWriter, ParquetWriter } from "hyparquet-writer";
import { Kysely, PostgresDialect, type Transaction } from "kysely";
import pg from "pg";
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
/** PostgreSQL allows 65535 parameters per statement; 1000 rows keeps statements moderate. */
const POSTGRES_INSERT_ROWS = 1000;
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
  return new SqlSink(target);
}

async function openPostgresSink(url: string, table: string): Promise<PredictionSink> {
  const location = redactUrl(url);
  let pool: pg.Pool;
  try {
    pool = new pg.Pool({ connectionString: url, max: 4, connectionTimeoutMillis: 10_000 });
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

  async write(rows: readonly ScoredRow[], meta: SinkWriteMeta): Promise<void> {
    this.#checkOpen();
    const records = toRows(rows, meta);
    if (records.length === 0) return;
    try {
      await this.#target.write(async (db, raw) => {
        if (raw !== undefined) this.#writeSqlite(raw, records);
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
