import { randomUUID } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import BetterSqlite3 from "better-sqlite3";
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql, type KyselyPlugin, type QueryId } from "kysely";
import { MlshipError, type Logger } from "../core/index.js";
import { RegistryChangeListener } from "./change-listener.js";
import { isTransientConflict, mapStoreError, redactUrl, storeUnavailable } from "./errors.js";
import { withFileLock } from "./file-lock.js";
import {
  MIGRATIONS,
  MIGRATION_LOCK_TABLE,
  MIGRATION_TABLE,
  migrationProvider,
  type SqlDialectName,
  type StoreMigration,
} from "./migrations.js";
import type { Database } from "./schema.js";

export interface OpenSqlStoreOptions {
  /**
   * Where the metadata lives. Unset or empty: the SQLite file `<home>/mlship.db`. `postgres://...` or
   * `postgresql://...`: PostgreSQL. `sqlite:<file>` (also `sqlite://<file>`) or a bare path: that SQLite file.
   */
  url?: string;
  /** MLSHIP_HOME; created if missing when the store is SQLite. */
  home: string;
  /** Defaults to every migration mlship knows (MIGRATIONS). */
  migrations?: readonly StoreMigration[];
  /** SQLite: how long a write waits for another process's lock. Default 5000 ms. */
  busyTimeoutMs?: number;
  /** PostgreSQL: pool size. Default 10. */
  poolSize?: number;
  /** PostgreSQL: where the change listener reports a lost or regained connection. */
  logger?: Pick<Logger, "warn" | "info">;
}

export interface SqlStore {
  readonly db: Kysely<Database>;
  readonly dialect: SqlDialectName;
  /** The SQLite file, or the PostgreSQL URL with its password redacted: what error messages name. */
  readonly location: string;
  /**
   * SQLite only: the connection itself, for bulk writes on hot paths (a prepared statement run per row is several
   * times faster than Kysely compiling one large multi-row insert each time). Use it only inside `write`, where the
   * transaction is open on this connection.
   */
  readonly sqlite?: BetterSqlite3.Database;
  /**
   * Runs `fn` in one write transaction and commits it. On SQLite the transaction starts with `BEGIN IMMEDIATE`
   * (the write lock is taken up front, so no transaction fails half-way on a lock upgrade), and write transactions
   * of every store this process opened on the same file run one at a time. Busy/serialization failures are retried
   * a few times, then reported as MLSHIP_ERR_STORE_UNAVAILABLE. Not re-entrant: do not call `write` inside `fn`.
   */
  write<T>(fn: (db: Kysely<Database>) => Promise<T>): Promise<T>;
  /**
   * A cheap value that changes whenever a registry write commits, in this process or any other.
   * SQLite: `PRAGMA data_version` (bumped by other connections' commits) plus a counter of this connection's own
   * writes; it also moves on non-registry writes. PostgreSQL: `registry_state.revision`, bumped by every registry
   * write transaction (see `touchRegistryState`).
   */
  changeToken(): Promise<string>;
  /**
   * PostgreSQL only: calls `listener` right after any process commits a registry write (LISTEN/NOTIFY on a dedicated
   * connection, opened by the first subscription; see `RegistryChangeListener`). Returns the unsubscribe function.
   */
  onChange?(listener: () => void): () => void;
  /** PostgreSQL only, once `onChange` has been used: the listening connection (its backend pid). */
  readonly changeListener?: RegistryChangeListener;
  /** Idempotent. */
  close(): Promise<void>;
}

const DEFAULT_BUSY_TIMEOUT_MS = 5000;
const WRITE_ATTEMPTS = 4;

type Target = { kind: "sqlite"; file: string } | { kind: "postgres"; url: string };

function parseTarget(url: string | undefined, home: string): Target {
  const text = url?.trim() ?? "";
  if (text === "") return { kind: "sqlite", file: path.resolve(home, "mlship.db") };
  if (/^postgres(ql)?:\/\//i.test(text)) return { kind: "postgres", url: text };
  if (/^sqlite:/i.test(text)) {
    let file = text.slice("sqlite:".length);
    if (file.startsWith("//")) file = file.slice(2);
    if (file === "") {
      throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `store URL "${text}" names no SQLite file`, { field: "store" });
    }
    return { kind: "sqlite", file: file === ":memory:" ? file : path.resolve(file) };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    throw new MlshipError(
      "MLSHIP_ERR_CONFIG_INVALID",
      `store URL "${redactUrl(text)}" is not supported: use postgres://..., postgresql://... or sqlite:<file>`,
      { field: "store" },
    );
  }
  return { kind: "sqlite", file: path.resolve(text) };
}

/** Opens (and migrates) the metadata store. Connection failures are MLSHIP_ERR_STORE_UNAVAILABLE. */
export async function openSqlStore(options: OpenSqlStoreOptions): Promise<SqlStore> {
  const target = parseTarget(options.url, options.home);
  const migrations = options.migrations ?? MIGRATIONS;
  return target.kind === "sqlite"
    ? openSqlite(target.file, options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS, migrations)
    : openPostgres(target.url, options.poolSize ?? 10, migrations, options.logger);
}

/** Counts this connection's own writes: SQLite's data_version only moves for other connections' commits. */
class WriteCounter implements KyselyPlugin {
  count = 0;
  readonly #writes = new WeakSet<QueryId>();

  transformQuery(args: Parameters<KyselyPlugin["transformQuery"]>[0]): ReturnType<KyselyPlugin["transformQuery"]> {
    if (args.node.kind !== "SelectQueryNode") {
      this.count += 1;
      this.#writes.add(args.queryId);
    }
    return args.node;
  }

  transformResult(args: Parameters<KyselyPlugin["transformResult"]>[0]): ReturnType<KyselyPlugin["transformResult"]> {
    // Bump again once the statement has run, so a poller that read the token mid-statement sees one more change.
    if (this.#writes.has(args.queryId)) this.count += 1;
    return Promise.resolve(args.result);
  }
}

async function retryTransient<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await fn();
    } catch (error) {
      if (!isTransientConflict(error) || attempt >= WRITE_ATTEMPTS) throw error;
      await new Promise((resolve) => setTimeout(resolve, 10 * attempt + Math.random() * 40));
    }
  }
}

function migrator(db: Kysely<Database>, migrations: readonly StoreMigration[], dialect: SqlDialectName): Migrator {
  return new Migrator({
    db,
    provider: migrationProvider(migrations, dialect),
    migrationTableName: MIGRATION_TABLE,
    migrationLockTableName: MIGRATION_LOCK_TABLE,
  });
}

async function openSqlite(
  file: string,
  busyTimeoutMs: number,
  migrations: readonly StoreMigration[],
): Promise<SqlStore> {
  let sqlite: BetterSqlite3.Database;
  try {
    if (file !== ":memory:") fs.mkdirSync(path.dirname(file), { recursive: true });
    sqlite = new BetterSqlite3(file, { timeout: busyTimeoutMs });
  } catch (error) {
    throw storeUnavailable(file, error, "cannot be opened");
  }
  try {
    sqlite.pragma(`busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`);
    // WAL lets a server keep reading while the CLI writes; NORMAL sync is durable enough in WAL mode.
    sqlite.pragma("journal_mode = WAL");
    sqlite.pragma("synchronous = NORMAL");
    sqlite.pragma("foreign_keys = ON");
  } catch (error) {
    sqlite.close();
    throw storeUnavailable(file, error, "cannot be opened");
  }

  const counter = new WriteCounter();
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }), plugins: [counter] });
  const lockKey = file === ":memory:" ? `memory:${randomUUID()}` : `file:${safeRealpath(file)}`;

  try {
    // Kysely runs SQLite migrations outside a transaction; wrap them so that two processes opening a fresh file
    // at once do not interleave, and a crash leaves no half-made schema.
    await withFileLock(lockKey, async () => {
      sqlite.exec("BEGIN IMMEDIATE");
      try {
        const { error } = await migrator(db, migrations, "sqlite").migrateToLatest();
        if (error !== undefined) throw error;
        sqlite.exec("COMMIT");
      } catch (error) {
        if (sqlite.inTransaction) sqlite.exec("ROLLBACK");
        throw error;
      }
    });
  } catch (error) {
    await db.destroy();
    throw openFailure(file, error);
  }

  let closing: Promise<void> | undefined;
  return {
    db,
    dialect: "sqlite",
    location: file,
    sqlite,
    write<T>(fn: (db: Kysely<Database>) => Promise<T>): Promise<T> {
      if (closing !== undefined) return Promise.reject(closedError(file));
      const attempt = () =>
        withFileLock(lockKey, () =>
          db.connection().execute(async (conn) => {
            await sql`begin immediate`.execute(conn);
            try {
              const result = await fn(conn);
              await sql`commit`.execute(conn);
              return result;
            } catch (error) {
              if (sqlite.inTransaction) await sql`rollback`.execute(conn);
              throw error;
            } finally {
              counter.count += 1;
            }
          }),
        );
      return retryTransient(attempt).catch((error: unknown) => {
        throw mapStoreError(file, error);
      });
    },
    changeToken() {
      if (closing !== undefined) return Promise.reject(closedError(file));
      try {
        const dataVersion = sqlite.pragma("data_version", { simple: true }) as number;
        return Promise.resolve(`sqlite:${dataVersion}:${counter.count}`);
      } catch (error) {
        return Promise.reject(mapStoreError(file, error));
      }
    },
    close() {
      closing ??= db.destroy();
      return closing;
    },
  };
}

function closedError(location: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_STORE_UNAVAILABLE", `metadata store ${location} is closed`, { field: "store" });
}

function safeRealpath(file: string): string {
  try {
    return fs.realpathSync(file);
  } catch {
    return file;
  }
}

function openFailure(location: string, error: unknown): unknown {
  const mapped = mapStoreError(location, error);
  if (mapped instanceof MlshipError) return mapped;
  const reason = error instanceof Error ? error.message : String(error);
  return new MlshipError("MLSHIP_ERR_STORE_UNAVAILABLE", `metadata store ${location} could not be migrated: ${reason}`, {
    field: "store",
    cause: error,
    details: { store: location },
  });
}

async function openPostgres(
  url: string,
  poolSize: number,
  migrations: readonly StoreMigration[],
  logger: Pick<Logger, "warn" | "info"> | undefined,
): Promise<SqlStore> {
  const location = redactUrl(url);
  // Loaded here, not at the top: an embedded (SQLite) install never pays for the PostgreSQL driver.
  const { default: pg } = await import("pg");
  const pool = new pg.Pool({ connectionString: url, max: poolSize, connectionTimeoutMillis: 10_000 });
  // An idle client losing its connection emits 'error' on the pool; without a listener that kills the process.
  // The next query reports the problem as MLSHIP_ERR_STORE_UNAVAILABLE instead.
  pool.on("error", () => undefined);
  // A client checked out of the pool (mid-query) has no pool listener: when its socket dies it emits 'error' on the
  // client itself, which would kill the process. Its query already fails with the error, so the event adds nothing.
  pool.on("connect", (client) => client.on("error", () => undefined));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });

  try {
    const { error } = await migrator(db, migrations, "postgres").migrateToLatest();
    if (error !== undefined) throw error;
  } catch (error) {
    await db.destroy().catch(() => undefined);
    throw openFailure(location, error);
  }

  let closing: Promise<void> | undefined;
  let listener: RegistryChangeListener | undefined;
  return {
    db,
    dialect: "postgres",
    location,
    get changeListener() {
      return listener;
    },
    onChange(subscriber: () => void): () => void {
      if (closing !== undefined) return () => undefined;
      listener ??= new RegistryChangeListener({ url, location, ...(logger === undefined ? {} : { logger }) });
      return listener.subscribe(subscriber);
    },
    write<T>(fn: (db: Kysely<Database>) => Promise<T>): Promise<T> {
      if (closing !== undefined) return Promise.reject(closedError(location));
      return retryTransient(() => db.transaction().execute((trx) => fn(trx))).catch((error: unknown) => {
        throw mapStoreError(location, error);
      });
    },
    async changeToken() {
      if (closing !== undefined) throw closedError(location);
      try {
        const row = await db.selectFrom("registry_state").select("revision").where("id", "=", 1).executeTakeFirst();
        return `pg:${String(row?.revision ?? 0)}`;
      } catch (error) {
        throw mapStoreError(location, error);
      }
    },
    close() {
      closing ??= (async () => {
        await listener?.close();
        await db.destroy();
      })();
      return closing;
    },
  };
}

/**
 * Bumps `registry_state.revision`. Call it first in every registry write transaction: on PostgreSQL this is the
 * change token other processes poll, and its row lock makes concurrent registry writes queue instead of racing.
 */
export async function touchRegistryState(db: Kysely<Database>): Promise<void> {
  await db
    .updateTable("registry_state")
    .set({ revision: sql<number>`revision + 1` })
    .where("id", "=", 1)
    .execute();
}
