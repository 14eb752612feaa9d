/**
 * Stream sinks into SQL tables: a table in the metadata store (SQLite or PostgreSQL), in another SQLite file, or in
 * another PostgreSQL database.
 *
 * Every write upserts on `_id`, so a micro-batch replayed after a crash replaces its own rows instead of adding
 * them again. The table starts with the system columns `_id`, `_stream`, `_batch_id` and `_written_at`; data
 * columns are added as field names appear, typed from their values:
 *
 * | values (non-null)          | PostgreSQL          | SQLite  |
 * |----------------------------|---------------------|---------|
 * | safe integers only         | bigint              | INTEGER |
 * | numbers                    | double precision    | REAL    |
 * | text                       | text                | TEXT    |
 * | booleans                   | boolean             | INTEGER (0/1) |
 * | arrays, objects            | jsonb               | JSON TEXT (JSON, TEXT affinity) |
 * | a mix with arrays/objects  | jsonb               | JSON TEXT |
 * | another mix of scalars     | text                | TEXT    |
 *
 * A field that is null in every row written so far gets no column yet: its rows read back as null either way, and
 * the column is created with the right type once a value arrives. A PostgreSQL bigint column that meets a
 * fractional number is widened to double precision. SQLite stores what it is given, so it needs no widening.
 */
import path from "node:path";
import fs from "node:fs";
import BetterSqlite3 from "better-sqlite3";
import { CompiledQuery, Kysely, PostgresDialect } from "kysely";
import type pg from "pg";
// Straight from the module: batch's index pulls in its HTTP routes and scheduler, which a sink has no use for.
import { checkTableName } from "../../batch/sinks.js";
import { MlshipError, type Logger } from "../../core/index.js";
import { isTransientConflict, isUnavailable, isUniqueViolation, pgDriver, redactUrl, type SqlStore } from "../../store/index.js";
import type { OutputRow, PostgresSinkSpec, SinkWriteContext, SqliteSinkSpec, StreamSink } from "../types.js";

/** Columns every sink table starts with, in this order. */
export const SYSTEM_COLUMNS = ["_id", "_stream", "_batch_id", "_written_at"] as const;
const SYSTEM_COLUMN_SET = new Set<string>(SYSTEM_COLUMNS);

/** PostgreSQL truncates identifiers at 63 bytes (NAMEDATALEN - 1); two long names could silently become one. */
const MAX_COLUMN_NAME_BYTES = 63;
/** SQLite's historical default limit of bound variables per statement. */
const SQLITE_MAX_VARIABLES = 999;
/** Rows per PostgreSQL statement: the arrays of one `unnest` insert; bounds the size of one message to the server. */
const POSTGRES_CHUNK_ROWS = 10_000;
const WRITE_ATTEMPTS = 4;
const SQLITE_BUSY_TIMEOUT_MS = 5000;

/**
 * A value fit for a sink: bigints become numbers (text when beyond 2^53), dates ISO-8601 text, undefined null,
 * typed arrays plain arrays; arrays and plain objects are normalized throughout. Everything else passes through.
 * A value that needs no change is returned as is (the same array or object), so callers on the hot path can tell
 * by identity that nothing had to be copied.
 */
export function outputValue(value: unknown): unknown {
  switch (typeof value) {
    case "string":
    case "number":
    case "boolean":
      return value;
    case "undefined":
      return null;
    case "bigint":
      return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value.toString();
    case "object":
      if (value === null) return null;
      if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
      if (Array.isArray(value)) return normalizeArray(value);
      if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
        return Array.from(value as unknown as ArrayLike<number | bigint>, outputValue);
      }
      return normalizeObject(value as Record<string, unknown>);
    default:
      return String(value);
  }
}

function normalizeArray(value: readonly unknown[]): unknown[] {
  let copy: unknown[] | undefined;
  for (let index = 0; index < value.length; index += 1) {
    const item = value[index];
    const normalized = outputValue(item);
    if (normalized !== item && copy === undefined) copy = value.slice(0, index);
    copy?.push(normalized);
  }
  return copy ?? (value as unknown[]);
}

function normalizeObject(value: Record<string, unknown>): Record<string, unknown> {
  let copy: Record<string, unknown> | undefined;
  for (const key in value) {
    const item = value[key];
    const normalized = outputValue(item);
    if (normalized !== item && copy === undefined) {
      copy = {};
      for (const earlier in value) {
        if (earlier === key) break;
        copy[earlier] = value[earlier];
      }
    }
    if (copy !== undefined) copy[key] = normalized;
  }
  return copy ?? value;
}

// ---------------------------------------------------------------------------------------------------------------
// Value kinds and column types

/** Bit flags of the kinds of non-null values a column receives in one write. */
const KIND_INTEGER = 1;
const KIND_DOUBLE = 2;
const KIND_STRING = 4;
const KIND_BOOLEAN = 8;
const KIND_JSON = 16;
const KIND_NUMBER = KIND_INTEGER | KIND_DOUBLE;

function kindOf(value: unknown): number {
  switch (typeof value) {
    case "number":
      return Number.isSafeInteger(value) ? KIND_INTEGER : KIND_DOUBLE;
    case "string":
      return KIND_STRING;
    case "boolean":
      return KIND_BOOLEAN;
    default:
      return KIND_JSON;
  }
}

function kindNames(kinds: number): string {
  const names: string[] = [];
  if (kinds & KIND_NUMBER) names.push("numbers");
  if (kinds & KIND_STRING) names.push("text");
  if (kinds & KIND_BOOLEAN) names.push("booleans");
  if (kinds & KIND_JSON) names.push("arrays/objects");
  return names.join(" and ");
}

type Dialect = "sqlite" | "postgres";

/** The type a new column gets for the kinds of values seen in this write (see the table at the top). */
function newColumnType(dialect: Dialect, kinds: number): string {
  if (kinds & KIND_JSON) return dialect === "postgres" ? "jsonb" : SQLITE_JSON_TYPE;
  if ((kinds & ~KIND_NUMBER) === 0) {
    if (kinds === KIND_INTEGER) return dialect === "postgres" ? "bigint" : "INTEGER";
    return dialect === "postgres" ? "double precision" : "REAL";
  }
  if (kinds === KIND_BOOLEAN) return dialect === "postgres" ? "boolean" : "INTEGER";
  return dialect === "postgres" ? "text" : "TEXT";
}

/**
 * How values are converted for a column of an existing type, by the family the type belongs to. `any` accepts
 * everything (SQLite BLOB/no affinity, or a PostgreSQL type the sink does not know, which the server then checks).
 */
type ColumnFamily = "integer" | "float" | "text" | "json" | "boolean" | "any";

function postgresFamily(type: string): ColumnFamily {
  const base = type.toLowerCase().replace(/\(.*$/, "").trim();
  if (base === "bigint" || base === "integer" || base === "smallint") return "integer";
  if (base === "double precision" || base === "real" || base === "numeric") return "float";
  if (base === "text" || base === "character varying" || base === "character" || base === "name") return "text";
  if (base === "jsonb" || base === "json") return "json";
  if (base === "boolean") return "boolean";
  return "any";
}

/**
 * SQLite has no JSON type; this declared type has TEXT affinity (it contains "TEXT") and tells the sink, when it
 * finds the column again, to write every value of it as JSON, text included, as PostgreSQL's jsonb does.
 */
const SQLITE_JSON_TYPE = "JSON TEXT";

/** SQLite's affinity rules (https://www.sqlite.org/datatype3.html#determination_of_column_affinity). */
function sqliteFamily(type: string): ColumnFamily {
  const upper = type.toUpperCase();
  if (upper === SQLITE_JSON_TYPE) return "json";
  if (upper.includes("INT")) return "integer";
  if (upper.includes("CHAR") || upper.includes("CLOB") || upper.includes("TEXT")) return "text";
  if (upper.includes("BLOB") || upper === "") return "any";
  // REAL and NUMERIC affinity both keep numbers as numbers and would turn numeric-looking text into numbers.
  return "float";
}

/** Kinds a column family takes without losing anything. */
function acceptedKinds(dialect: Dialect, family: ColumnFamily): number {
  switch (family) {
    case "integer":
      // SQLite keeps a fractional number in an INTEGER-affinity column as REAL; booleans are stored as 0/1 there.
      return dialect === "sqlite" ? KIND_NUMBER | KIND_BOOLEAN : KIND_INTEGER;
    case "float":
      return dialect === "sqlite" ? KIND_NUMBER | KIND_BOOLEAN : KIND_NUMBER;
    case "boolean":
      return KIND_BOOLEAN;
    case "text":
    case "json":
    case "any":
      return KIND_NUMBER | KIND_STRING | KIND_BOOLEAN | KIND_JSON;
  }
}

type Convert = (value: unknown) => unknown;

const asJsonText: Convert = (value) => (value === null ? null : JSON.stringify(value));

function converter(dialect: Dialect, family: ColumnFamily): Convert {
  if (family === "json") return asJsonText;
  if (family === "text") {
    return (value) => (value === null || typeof value === "string" ? value : typeof value === "object" ? JSON.stringify(value) : String(value));
  }
  if (dialect === "sqlite") {
    // better-sqlite3 binds numbers, text, bigints, buffers and null only.
    return (value) => (typeof value === "boolean" ? (value ? 1 : 0) : typeof value === "object" && value !== null ? JSON.stringify(value) : value);
  }
  if (family === "any") return (value) => (typeof value === "object" && value !== null ? JSON.stringify(value) : value);
  return (value) => value;
}

function quoteIdentifier(name: string): string {
  return `"${name}"`;
}

// ---------------------------------------------------------------------------------------------------------------
// Errors

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function errorCode(error: unknown): string | undefined {
  const code = typeof error === "object" && error !== null ? (error as { code?: unknown }).code : undefined;
  return typeof code === "string" ? code : undefined;
}

function unavailable(description: string, error: unknown, field: string | undefined): MlshipError {
  return new MlshipError("MLSHIP_ERR_STREAM_UNAVAILABLE", `stream sink ${description} cannot be reached: ${errorText(error)}`, {
    field,
    cause: error,
    details: { sink: description },
    retryAfterSeconds: 1,
  });
}

/**
 * Connection problems (and the store's own "unavailable" errors) become MLSHIP_ERR_STREAM_UNAVAILABLE; a value or
 * statement the database refuses becomes MLSHIP_ERR_INPUT_INVALID naming the sink; anything else is rethrown.
 */
function sinkError(description: string, error: unknown, field: string | undefined): unknown {
  if (error instanceof MlshipError) {
    if (error.code === "MLSHIP_ERR_STORE_UNAVAILABLE") return unavailable(description, error, field);
    return error;
  }
  if (isUnavailable(error) || isTransientConflict(error)) return unavailable(description, error, field);
  const code = errorCode(error) ?? "";
  if (/^(22|23|42)/.test(code) || code === "SQLITE_ERROR" || code === "SQLITE_MISMATCH" || code.startsWith("SQLITE_CONSTRAINT")) {
    return new MlshipError("MLSHIP_ERR_INPUT_INVALID", `stream sink ${description} refused the rows: ${errorText(error)}`, {
      cause: error,
      details: { sink: description },
    });
  }
  return error;
}

function checkFieldName(name: string): void {
  let problem: string | undefined;
  if (name === "") problem = "is empty";
  else if (Buffer.byteLength(name, "utf8") > MAX_COLUMN_NAME_BYTES) problem = `is longer than ${MAX_COLUMN_NAME_BYTES} bytes`;
  else if (name.includes('"') || name.includes("\0")) problem = 'contains " or NUL';
  else if (SYSTEM_COLUMN_SET.has(name)) problem = "is a system column of stream sink tables";
  if (problem !== undefined) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `field "${name.replace(/\0/g, "\\0")}" cannot be a column name: it ${problem}`, {
      field: name,
    });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// A write, prepared: rows deduplicated, values normalized, columns summarized

interface PreparedWrite {
  ids: string[];
  /** Normalized values by column name, one per row (null where the row lacks the field). */
  columns: Map<string, unknown[]>;
  /** Kinds of non-null values per column; 0: null in every row. */
  kinds: Map<string, number>;
}

function prepareWrite(rows: readonly OutputRow[], checkedNames: Set<string>): PreparedWrite {
  // Last one wins when an id repeats; PostgreSQL also refuses an upsert that touches one row twice.
  const byId = new Map<string, OutputRow>();
  for (const row of rows) {
    if (byId.has(row.id)) byId.delete(row.id);
    byId.set(row.id, row);
  }
  // Sorted ids make concurrent writers lock rows in the same order: overlapping upserts wait, never deadlock.
  const ids = [...byId.keys()].sort();
  const columns = new Map<string, unknown[]>();
  const kinds = new Map<string, number>();
  for (let index = 0; index < ids.length; index += 1) {
    const fields = byId.get(ids[index]!)!.fields;
    for (const name in fields) {
      let values = columns.get(name);
      if (values === undefined) {
        if (!checkedNames.has(name)) {
          checkFieldName(name);
          checkedNames.add(name);
        }
        values = new Array<unknown>(ids.length).fill(null);
        columns.set(name, values);
        kinds.set(name, 0);
      }
      const value = outputValue(fields[name]);
      values[index] = value;
      if (value !== null) kinds.set(name, kinds.get(name)! | kindOf(value));
    }
  }
  return { ids, columns, kinds };
}

// ---------------------------------------------------------------------------------------------------------------
// The sink

interface ExistingColumn {
  /** The column's name as the database has it (SQLite matches names case-insensitively). */
  name: string;
  type: string;
}

interface SqlTarget {
  readonly kind: Dialect;
  readonly description: string;
  /** The config field an unreachable target is reported on. */
  readonly field: string | undefined;
  connect(): Promise<void>;
  /** The table's columns by name (lower-cased on SQLite); empty when it does not exist. */
  columns(): Promise<Map<string, ExistingColumn>>;
  /** Runs DDL outside write transactions (PostgreSQL: autocommit, so concurrent writers never deadlock on it). */
  ddl(statements: readonly string[]): Promise<void>;
  write(prepared: PreparedWrite, context: SinkWriteContext, columns: readonly WriteColumn[]): Promise<void>;
  close(): Promise<void>;
}

interface WriteColumn {
  name: string;
  type: string;
  convert: Convert;
}

export function createSqlSink(spec: SqliteSinkSpec | PostgresSinkSpec, options: { store: SqlStore; logger: Logger }): StreamSink {
  const table = checkTableName(spec.table);
  const target = spec.kind === "sqlite" ? sqliteTarget(spec, table, options.store) : postgresTarget(spec, table, options.store);
  return new SqlSink(target, table, options.logger);
}

class SqlSink implements StreamSink {
  readonly kind: Dialect;
  readonly description: string;
  readonly #target: SqlTarget;
  readonly #table: string;
  readonly #logger: Logger;
  /** The table's columns as last read (keys lower-cased on SQLite). */
  #columns = new Map<string, ExistingColumn>();
  #columnsStale = false;
  readonly #checkedNames = new Set<string>();
  #state: "new" | "open" | "closed" = "new";
  /** Writes run one after another: they share the column cache. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(target: SqlTarget, table: string, logger: Logger) {
    this.#target = target;
    this.#table = table;
    this.#logger = logger;
    this.kind = target.kind;
    this.description = target.description;
  }

  async open(): Promise<void> {
    if (this.#state === "open") return;
    if (this.#state === "closed") throw this.#closedError();
    try {
      await this.#target.connect();
    } catch (error) {
      await this.#target.close().catch(() => undefined);
      this.#state = "closed";
      // Whatever stops the connection (a refused port, a file that cannot be created) is the target being unreachable.
      throw error instanceof MlshipError ? error : unavailable(this.description, error, this.#target.field);
    }
    try {
      let columns = await this.#target.columns();
      if (columns.size === 0) {
        await this.#createTable();
        columns = await this.#target.columns();
      }
      this.#checkSystemColumns(columns);
      this.#columns = columns;
    } catch (error) {
      await this.#target.close().catch(() => undefined);
      this.#state = "closed";
      throw sinkError(this.description, error, this.#target.field);
    }
    this.#state = "open";
  }

  async #createTable(): Promise<void> {
    const postgres = this.kind === "postgres";
    const statement =
      `create table if not exists ${quoteIdentifier(this.#table)} (` +
      `"_id" text primary key, "_stream" text not null, ` +
      `"_batch_id" ${postgres ? "bigint" : "integer"} not null, "_written_at" text not null)`;
    try {
      await this.#target.ddl([statement]);
    } catch (error) {
      // Two processes creating the table at once on PostgreSQL: the loser trips over the row type; the table exists.
      if (!isUniqueViolation(error)) throw error;
    }
  }

  #checkSystemColumns(columns: Map<string, ExistingColumn>): void {
    const missing = SYSTEM_COLUMNS.filter((name) => !columns.has(name));
    if (missing.length > 0) {
      throw new MlshipError(
        "MLSHIP_ERR_CONFIG_INVALID",
        `table ${this.#table} in ${this.description} exists but is not a stream sink table: it lacks ${missing.join(", ")} ` +
          `(sink tables have ${SYSTEM_COLUMNS.join(", ")}); name another table`,
        { field: "table" },
      );
    }
  }

  write(rows: readonly OutputRow[], context: SinkWriteContext): Promise<void> {
    const run = this.#queue.then(() => this.#write(rows, context));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #write(rows: readonly OutputRow[], context: SinkWriteContext): Promise<void> {
    if (this.#state !== "open") throw this.#state === "closed" ? this.#closedError() : this.#notOpenError();
    if (rows.length === 0) return;
    const prepared = prepareWrite(rows, this.#checkedNames);
    try {
      // After a failure the table may not be what the cache says (a column dropped or changed by hand).
      if (this.#columnsStale) this.#columns = await this.#target.columns();
      this.#columnsStale = false;
      const columns = await this.#ensureColumns(prepared);
      await this.#target.write(prepared, context, columns);
    } catch (error) {
      this.#columnsStale = true;
      throw sinkError(this.description, error, this.#target.field);
    }
  }

  /** Adds missing columns, widens what must be widened, and gives the columns this write sets with their converters. */
  async #ensureColumns(prepared: PreparedWrite): Promise<WriteColumn[]> {
    const dialect = this.kind;
    const key = (name: string) => (dialect === "sqlite" ? name.toLowerCase() : name);
    if (dialect === "sqlite") this.#checkCaseCollisions(prepared);
    for (let attempt = 0; ; attempt += 1) {
      const statements: string[] = [];
      const changes: { column: string; type: string; change: "added" | "widened" }[] = [];
      for (const [name, kinds] of prepared.kinds) {
        if (kinds === 0) continue;
        const existing = this.#columns.get(key(name));
        if (existing === undefined) {
          const type = newColumnType(dialect, kinds);
          statements.push(
            dialect === "postgres"
              ? `alter table ${quoteIdentifier(this.#table)} add column if not exists ${quoteIdentifier(name)} ${type}`
              : `alter table ${quoteIdentifier(this.#table)} add column ${quoteIdentifier(name)} ${type}`,
          );
          changes.push({ column: name, type, change: "added" });
          continue;
        }
        const family = dialect === "postgres" ? postgresFamily(existing.type) : sqliteFamily(existing.type);
        const refused = kinds & ~acceptedKinds(dialect, family);
        if (refused === 0) continue;
        if (dialect === "postgres" && family === "integer" && (kinds & ~KIND_NUMBER) === 0) {
          statements.push(`alter table ${quoteIdentifier(this.#table)} alter column ${quoteIdentifier(existing.name)} type double precision`);
          changes.push({ column: name, type: "double precision", change: "widened" });
          continue;
        }
        throw new MlshipError(
          "MLSHIP_ERR_INPUT_INVALID",
          `field "${name}" holds ${kindNames(kinds)}, but column ${existing.name} of table ${this.#table} in ${this.description} ` +
            `is ${existing.type || "untyped"} and cannot hold ${kindNames(refused)}: write to another table or change the column`,
          { field: name, details: { sink: this.description, column: existing.name, type: existing.type } },
        );
      }
      if (statements.length === 0) break;
      if (attempt >= 2) {
        throw new Error(`columns of ${this.#table} in ${this.description} keep changing under the sink: ${statements.join("; ")}`);
      }
      await this.#target.ddl(statements);
      for (const change of changes) {
        this.#logger.info({ sink: this.description, column: change.column, type: change.type }, `stream sink column ${change.change}`);
      }
      // Another process may have added the same column with another type meanwhile: check against what the table
      // has now (the next round finds nothing to do, or widens, or refuses).
      this.#columns = await this.#target.columns();
    }
    const columns: WriteColumn[] = [];
    for (const [name, kinds] of prepared.kinds) {
      const existing = this.#columns.get(key(name));
      if (existing === undefined) {
        if (kinds === 0) continue; // null everywhere and no column yet: nothing to write
        throw new Error(`column ${name} of ${this.#table} in ${this.description} is missing after being added`);
      }
      const family = dialect === "postgres" ? postgresFamily(existing.type) : sqliteFamily(existing.type);
      columns.push({ name, type: existing.type, convert: converter(dialect, family) });
    }
    return columns;
  }

  /** SQLite column names ignore case: `Radius` and `radius` in one write would name one column twice. */
  #checkCaseCollisions(prepared: PreparedWrite): void {
    if (prepared.columns.size < 2) return;
    const seen = new Map<string, string>();
    for (const name of prepared.columns.keys()) {
      const lower = name.toLowerCase();
      const other = seen.get(lower);
      if (other !== undefined) {
        throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `fields "${other}" and "${name}" name the same SQLite column (names ignore case)`, {
          field: name,
        });
      }
      seen.set(lower, name);
    }
  }

  async close(): Promise<void> {
    if (this.#state === "closed") return;
    this.#state = "closed";
    await this.#queue;
    await this.#target.close();
  }

  #closedError(): MlshipError {
    return new MlshipError("MLSHIP_ERR_INPUT_INVALID", `stream sink ${this.description} is closed`, { details: { sink: this.description } });
  }

  #notOpenError(): MlshipError {
    return new MlshipError("MLSHIP_ERR_INPUT_INVALID", `stream sink ${this.description} is not open: call open() first`, {
      details: { sink: this.description },
    });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// SQLite

function sqliteTarget(spec: SqliteSinkSpec, table: string, store: SqlStore): SqlTarget {
  if (spec.path === undefined) {
    if (store.dialect !== "sqlite" || store.sqlite === undefined) {
      throw new MlshipError(
        "MLSHIP_ERR_CONFIG_INVALID",
        `a sqlite sink without a path writes to the metadata store, but the metadata store is ${store.location}: give the sink a path`,
        { field: "path" },
      );
    }
    const raw = store.sqlite;
    const run = <T>(fn: (db: BetterSqlite3.Database) => T): Promise<T> => store.write(() => Promise.resolve(fn(raw)));
    return new SqliteTarget(`sqlite table ${table}`, table, undefined, () => raw, run, () => Promise.resolve());
  }
  const file = path.resolve(spec.path);
  let db: BetterSqlite3.Database | undefined;
  const connection = (): BetterSqlite3.Database => {
    if (db === undefined) throw new Error(`${file} is not open`);
    return db;
  };
  const run = async <T>(fn: (db: BetterSqlite3.Database) => T): Promise<T> => {
    const connected = connection();
    for (let attempt = 1; ; attempt += 1) {
      try {
        // IMMEDIATE takes the write lock up front: no transaction fails half-way on a lock upgrade.
        return connected.transaction(fn).immediate(connected);
      } catch (error) {
        if (!isTransientConflict(error) || attempt >= WRITE_ATTEMPTS) throw error;
        await new Promise((resolve) => setTimeout(resolve, 10 * attempt + Math.random() * 40));
      }
    }
  };
  const target = new SqliteTarget(`sqlite ${file} table ${table}`, table, "path", connection, run, () => {
    db?.close();
    db = undefined;
    return Promise.resolve();
  });
  target.connectFile = () => {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const opened = new BetterSqlite3(file, { timeout: SQLITE_BUSY_TIMEOUT_MS });
    try {
      opened.pragma(`busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
      opened.pragma("journal_mode = WAL");
      // NORMAL is durable across a process crash in WAL mode, which is what a replayed micro-batch guards against.
      opened.pragma("synchronous = NORMAL");
    } catch (error) {
      opened.close();
      throw error;
    }
    db = opened;
  };
  return target;
}

class SqliteTarget implements SqlTarget {
  readonly kind = "sqlite" as const;
  readonly description: string;
  readonly field: string | undefined;
  readonly #table: string;
  readonly #connection: () => BetterSqlite3.Database;
  readonly #run: <T>(fn: (db: BetterSqlite3.Database) => T) => Promise<T>;
  readonly #close: () => Promise<void>;
  /** Opens the sink's own file; unset for the metadata store. */
  connectFile: (() => void) | undefined;
  /** Prepared upserts by shape (rows per statement and columns); ALTER TABLE makes SQLite re-prepare them itself. */
  readonly #statements = new Map<string, BetterSqlite3.Statement>();

  constructor(
    description: string,
    table: string,
    field: string | undefined,
    connection: () => BetterSqlite3.Database,
    run: <T>(fn: (db: BetterSqlite3.Database) => T) => Promise<T>,
    close: () => Promise<void>,
  ) {
    this.description = description;
    this.field = field;
    this.#table = table;
    this.#connection = connection;
    this.#run = run;
    this.#close = close;
  }

  connect(): Promise<void> {
    this.connectFile?.();
    return Promise.resolve();
  }

  columns(): Promise<Map<string, ExistingColumn>> {
    return Promise.resolve(this.#readColumns(this.#connection()));
  }

  #readColumns(db: BetterSqlite3.Database): Map<string, ExistingColumn> {
    const rows = db.pragma(`table_info(${quoteIdentifier(this.#table)})`) as { name: string; type: string }[];
    return new Map(rows.map((row) => [row.name.toLowerCase(), { name: row.name, type: row.type }]));
  }

  ddl(statements: readonly string[]): Promise<void> {
    return this.#run((db) => {
      // Under the write lock: another process may have added some of these columns since the cache was read, and
      // SQLite has no `add column if not exists`.
      const existing = this.#readColumns(db);
      for (const statement of statements) {
        const added = /add column "([^"]+)"/.exec(statement)?.[1];
        if (added !== undefined && existing.has(added.toLowerCase())) continue;
        db.exec(statement);
      }
    });
  }

  async write(prepared: PreparedWrite, context: SinkWriteContext, columns: readonly WriteColumn[]): Promise<void> {
    const width = SYSTEM_COLUMNS.length + columns.length;
    if (width > SQLITE_MAX_VARIABLES) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `rows with ${columns.length} fields are too wide for ${this.description}`, {
        details: { sink: this.description },
      });
    }
    const perStatement = Math.floor(SQLITE_MAX_VARIABLES / width);
    const values = columns.map((column) => prepared.columns.get(column.name)!);
    const writtenAt = new Date().toISOString();
    const { ids } = prepared;
    await this.#run((db) => {
      for (let start = 0; start < ids.length; start += perStatement) {
        const count = Math.min(perStatement, ids.length - start);
        const statement = this.#statement(db, count, columns);
        const parameters = new Array<unknown>(count * width);
        let index = 0;
        for (let row = start; row < start + count; row += 1) {
          parameters[index++] = ids[row];
          parameters[index++] = context.stream;
          parameters[index++] = context.batchId;
          parameters[index++] = writtenAt;
          for (let column = 0; column < columns.length; column += 1) {
            parameters[index++] = columns[column]!.convert(values[column]![row]);
          }
        }
        statement.run(parameters);
      }
    });
  }

  #statement(db: BetterSqlite3.Database, rows: number, columns: readonly WriteColumn[]): BetterSqlite3.Statement {
    const key = `${rows}\0${columns.map((column) => column.name).join("\0")}`;
    let statement = this.#statements.get(key);
    if (statement === undefined) {
      const names = [...SYSTEM_COLUMNS, ...columns.map((column) => column.name)].map(quoteIdentifier);
      const placeholders = `(${names.map(() => "?").join(", ")})`;
      statement = db.prepare(
        `insert into ${quoteIdentifier(this.#table)} (${names.join(", ")}) values ${new Array<string>(rows).fill(placeholders).join(", ")} ` +
          `on conflict ("_id") do update set ${names.slice(1).map((name) => `${name} = excluded.${name}`).join(", ")}`,
      );
      // A stream writes a few shapes (the full-size statement, the last partial one); drop them all when it drifts.
      if (this.#statements.size >= 16) this.#statements.clear();
      this.#statements.set(key, statement);
    }
    return statement;
  }

  close(): Promise<void> {
    this.#statements.clear();
    return this.#close();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// PostgreSQL

/** Any table name: the sink's table is only known at run time and written with raw SQL. */
type AnyTables = Record<string, Record<string, unknown>>;

function postgresTarget(spec: PostgresSinkSpec, table: string, store: SqlStore): SqlTarget {
  if (spec.url === undefined) {
    if (store.dialect !== "postgres") {
      throw new MlshipError(
        "MLSHIP_ERR_CONFIG_INVALID",
        `a postgres sink without a url writes to the metadata store, but the metadata store is SQLite (${store.location}): give the sink a url`,
        { field: "url" },
      );
    }
    // The store's schema type does not know the sink's table.
    const db = store.db as unknown as Kysely<AnyTables>;
    return new PostgresTarget(`postgres ${store.location} table ${table}`, table, undefined, db, (fn) =>
      store.write((trx) => fn(trx as unknown as Kysely<AnyTables>)), () => Promise.resolve());
  }
  const location = redactUrl(spec.url);
  let pool: pg.Pool;
  try {
    // Small: a stream writes one micro-batch at a time; DDL and the write transaction are the only concurrency.
    pool = new (pgDriver().Pool)({ connectionString: spec.url, max: 2, connectionTimeoutMillis: 10_000 });
  } catch (error) {
    throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `postgres sink url ${location} is not valid: ${errorText(error)}`, {
      field: "url",
      cause: error,
    });
  }
  // An idle client losing its connection must not crash the process; the next query reports the failure.
  pool.on("error", () => undefined);
  const db = new Kysely<AnyTables>({ dialect: new PostgresDialect({ pool }) });
  const run = async <T>(fn: (trx: Kysely<AnyTables>) => Promise<T>): Promise<T> => {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await db.transaction().execute((trx) => fn(trx));
      } catch (error) {
        if (!isTransientConflict(error) || attempt >= WRITE_ATTEMPTS) throw error;
        await new Promise((resolve) => setTimeout(resolve, 10 * attempt + Math.random() * 40));
      }
    }
  };
  return new PostgresTarget(`postgres ${location} table ${table}`, table, "url", db, run, () => db.destroy());
}

const identity: Convert = (value) => value;
const NEEDS_ESCAPE = /["\\]/;
const ESCAPED = /["\\]/g;

/**
 * A PostgreSQL array literal (`{1.5,NULL,"text"}`) of `values[start..end)` after `convert`, sent as one text
 * parameter: several times cheaper than letting pg serialize a JavaScript array element by element.
 */
function arrayLiteral(values: readonly unknown[], start: number, end: number, convert: Convert): string {
  let literal = "{";
  for (let index = start; index < end; index += 1) {
    if (index > start) literal += ",";
    const value = convert(values[index]);
    if (value === null || value === undefined) literal += "NULL";
    else if (typeof value === "number") literal += String(value);
    else if (typeof value === "boolean") literal += value ? "t" : "f";
    else {
      const text = String(value);
      literal += NEEDS_ESCAPE.test(text) ? `"${text.replace(ESCAPED, "\\$&")}"` : `"${text}"`;
    }
  }
  return literal + "}";
}

class PostgresTarget implements SqlTarget {
  readonly kind = "postgres" as const;
  readonly description: string;
  readonly field: string | undefined;
  readonly #table: string;
  readonly #db: Kysely<AnyTables>;
  readonly #run: <T>(fn: (trx: Kysely<AnyTables>) => Promise<T>) => Promise<T>;
  readonly #close: () => Promise<void>;

  constructor(
    description: string,
    table: string,
    field: string | undefined,
    db: Kysely<AnyTables>,
    run: <T>(fn: (trx: Kysely<AnyTables>) => Promise<T>) => Promise<T>,
    close: () => Promise<void>,
  ) {
    this.description = description;
    this.field = field;
    this.#table = table;
    this.#db = db;
    this.#run = run;
    this.#close = close;
  }

  async connect(): Promise<void> {
    await this.#db.executeQuery(CompiledQuery.raw("select 1"));
  }

  async columns(): Promise<Map<string, ExistingColumn>> {
    const result = await this.#db.executeQuery<{ name: string; type: string }>(
      CompiledQuery.raw(
        "select a.attname as name, format_type(a.atttypid, a.atttypmod) as type from pg_attribute a " +
          "where a.attrelid = to_regclass($1) and a.attnum > 0 and not a.attisdropped order by a.attnum",
        [quoteIdentifier(this.#table)],
      ),
    );
    return new Map(result.rows.map((row) => [row.name, { name: row.name, type: row.type }]));
  }

  async ddl(statements: readonly string[]): Promise<void> {
    // One autocommit statement each: ALTER TABLE takes an exclusive lock, and holding it inside a transaction that
    // also writes rows would let two processes deadlock on each other.
    for (const statement of statements) await this.#db.executeQuery(CompiledQuery.raw(statement));
  }

  async write(prepared: PreparedWrite, context: SinkWriteContext, columns: readonly WriteColumn[]): Promise<void> {
    const { ids } = prepared;
    const writtenAt = new Date().toISOString();
    const values = columns.map((column) => prepared.columns.get(column.name)!);
    const text = this.#statement(columns);
    await this.#run(async (trx) => {
      for (let start = 0; start < ids.length; start += POSTGRES_CHUNK_ROWS) {
        const end = Math.min(ids.length, start + POSTGRES_CHUNK_ROWS);
        const parameters: unknown[] = [context.stream, context.batchId, writtenAt, arrayLiteral(ids, start, end, identity)];
        for (let column = 0; column < columns.length; column += 1) {
          parameters.push(arrayLiteral(values[column]!, start, end, columns[column]!.convert));
        }
        await trx.executeQuery(CompiledQuery.raw(text, parameters));
      }
    });
  }

  /**
   * One array parameter per column, zipped by `unnest`: any number of rows in one statement, far below the
   * 65535-parameter limit, and the server parses one short statement instead of thousands of value tuples.
   */
  #statement(columns: readonly WriteColumn[]): string {
    const names = [...SYSTEM_COLUMNS, ...columns.map((column) => column.name)].map(quoteIdentifier);
    const arrays = ["$4::text[]", ...columns.map((column, index) => `$${index + 5}::${column.type}[]`)];
    const aliases = arrays.map((_, index) => `c${index}`);
    return (
      `insert into ${quoteIdentifier(this.#table)} (${names.join(", ")}) ` +
      `select u.c0, $1::text, $2::bigint, $3::text${aliases.slice(1).map((alias) => `, u.${alias}`).join("")} ` +
      `from unnest(${arrays.join(", ")}) as u(${aliases.join(", ")}) ` +
      `on conflict ("_id") do update set ${names.slice(1).map((name) => `${name} = excluded.${name}`).join(", ")}`
    );
  }

  close(): Promise<void> {
    return this.#close();
  }
}
