// Fresh metadata stores for tests: a SQLite file in a temp home, or a PostgreSQL database created for the test and
// dropped after it. Every store opened through `open()` is closed by `dispose()`.
import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { openSqlStore, type SqlStore, type StoreMigration } from "../../src/store/index.js";

export const POSTGRES_SERVER = "postgres://postgres@127.0.0.1:5432";

export interface FreshDatabase {
  /** Opens a store on the database; `migrations` (default: all of them) lets a test stop at an older schema. */
  open(migrations?: readonly StoreMigration[]): Promise<SqlStore>;
  dispose(): Promise<void>;
}

function tracked(home: string, url: string | undefined, cleanup: () => Promise<void>): FreshDatabase {
  const opened: SqlStore[] = [];
  return {
    async open(migrations) {
      const store = await openSqlStore({ home, ...(url === undefined ? {} : { url }), ...(migrations === undefined ? {} : { migrations }) });
      opened.push(store);
      return store;
    },
    async dispose() {
      for (const store of opened) await store.close();
      await cleanup();
      await fs.rm(home, { recursive: true, force: true });
    },
  };
}

export async function freshSqlite(prefix: string): Promise<FreshDatabase> {
  const home = await fs.mkdtemp(path.join(os.tmpdir(), `${prefix}-`));
  return tracked(home, undefined, async () => undefined);
}

/** Creates an empty database on the local server with a name no other test uses; returns its name. */
async function createDatabase(admin: pg.Client): Promise<string> {
  const name = `mlship_test_${randomBytes(6).toString("hex")}`;
  await admin.query(`create database ${name}`);
  return name;
}

/** A new database on the local server; `admin` is a connected client on its `postgres` database. */
export async function freshPostgres(admin: pg.Client, prefix: string): Promise<FreshDatabase> {
  const name = await createDatabase(admin);
  const home = await fs.mkdtemp(path.join(os.tmpdir(), `${prefix}-`));
  return tracked(home, `${POSTGRES_SERVER}/${name}`, async () => {
    await admin.query(`drop database if exists ${name} with (force)`);
  });
}

export async function postgresAdmin(): Promise<pg.Client> {
  const admin = new pg.Client({ connectionString: `${POSTGRES_SERVER}/postgres` });
  await admin.connect();
  return admin;
}

/** `freshPostgres` with its own admin connection, closed by `dispose()`. */
export async function freshPostgresAlone(prefix: string): Promise<FreshDatabase> {
  const admin = await postgresAdmin();
  const database = await freshPostgres(admin, prefix);
  return {
    open: (migrations) => database.open(migrations),
    async dispose() {
      try {
        await database.dispose();
      } finally {
        await admin.end();
      }
    },
  };
}

/** A new empty database on the local server for tests that write to it directly (not through a store). */
export interface ScratchDatabase {
  url: string;
  /** A connected client on the database. */
  client: pg.Client;
  /** Ends the client and drops the database. */
  drop(): Promise<void>;
}

export async function scratchPostgres(): Promise<ScratchDatabase> {
  const admin = await postgresAdmin();
  const name = await createDatabase(admin);
  const url = `${POSTGRES_SERVER}/${name}`;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return {
    url,
    client,
    async drop() {
      await client.end().catch(() => undefined);
      await admin.query(`drop database if exists ${name} with (force)`);
      await admin.end();
    },
  };
}
