import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import BetterSqlite3 from "better-sqlite3";
import { sql } from "kysely";
import pg from "pg";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { MlshipError } from "../../src/core/index.js";
import {
  MIGRATIONS,
  openSqlStore,
  redactUrl,
  touchRegistryState,
  type SqlStore,
  type StoreMigration,
} from "../../src/store/index.js";

const SERVER = "postgres://postgres@127.0.0.1:5432";

async function caught(promise: Promise<unknown>): Promise<MlshipError> {
  const error: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(MlshipError);
  return error as MlshipError;
}

async function tableColumns(store: SqlStore): Promise<Record<string, string[]>> {
  const tables = await store.db.introspection.getTables();
  const out: Record<string, string[]> = {};
  for (const t of tables.filter((t) => !t.isView)) out[t.name] = t.columns.map((c) => c.name).sort();
  return out;
}

describe("openSqlStore", () => {
  let home: string;
  const stores: SqlStore[] = [];
  let admin: pg.Client;
  let pgName: string;

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: `${SERVER}/postgres` });
    await admin.connect();
  });

  afterAll(async () => {
    await admin.end();
  });

  beforeEach(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), "mlship-store-"));
    pgName = `mlship_test_${randomBytes(6).toString("hex")}`;
    await admin.query(`create database ${pgName}`);
  });

  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    await admin.query(`drop database if exists ${pgName} with (force)`);
    await fs.rm(home, { recursive: true, force: true });
  });

  async function open(url?: string, extra: { migrations?: readonly StoreMigration[] } = {}): Promise<SqlStore> {
    const store = await openSqlStore({ url, home, ...extra });
    stores.push(store);
    return store;
  }

  it("defaults to <home>/mlship.db in WAL mode with foreign keys and a busy timeout", async () => {
    const nested = path.join(home, "not", "yet");
    const store = await openSqlStore({ home: nested });
    stores.push(store);
    expect(store.dialect).toBe("sqlite");
    expect(store.location).toBe(path.join(nested, "mlship.db"));
    await store.close();
    const raw = new BetterSqlite3(path.join(nested, "mlship.db"));
    try {
      expect(raw.pragma("journal_mode", { simple: true })).toBe("wal");
      const names = (raw.prepare("select name from mlship_migration order by name").all() as { name: string }[]).map((r) => r.name);
      expect(names).toEqual(MIGRATIONS.map((m) => m.name));
    } finally {
      raw.close();
    }
    const again = await open(`sqlite:${path.join(nested, "mlship.db")}`);
    const fk = await sql<{ foreign_keys: number }>`pragma foreign_keys`.execute(again.db);
    expect(fk.rows[0]?.foreign_keys).toBe(1);
    const busy = await sql<{ timeout: number }>`pragma busy_timeout`.execute(again.db);
    expect(busy.rows[0]?.timeout).toBe(5000);
  });

  it("accepts sqlite:<file>, sqlite://<file> and a bare path", async () => {
    const a = await open(`sqlite:${path.join(home, "a.db")}`);
    const b = await open(`sqlite://${path.join(home, "b.db")}`);
    const c = await open(path.join(home, "c.db"));
    expect([a.location, b.location, c.location]).toEqual(["a.db", "b.db", "c.db"].map((f) => path.join(home, f)));
    for (const f of ["a.db", "b.db", "c.db"]) expect((await fs.stat(path.join(home, f))).isFile()).toBe(true);
  });

  it("refuses an unsupported URL scheme naming it, with the password hidden", async () => {
    const error = await caught(openSqlStore({ home, url: "mysql://root:hunter2@db/x" }));
    expect(error.code).toBe("MLSHIP_ERR_CONFIG_INVALID");
    expect(error.message).toContain("mysql://root:***@db/x");
    expect(error.message).not.toContain("hunter2");
  });

  it("runs migrations once: reopening changes nothing, on both dialects", async () => {
    for (const url of [undefined, `${SERVER}/${pgName}`]) {
      const first = await open(url);
      await first.write(async (db) => {
        await db
          .insertInto("models")
          .values({ name: "kept", description: null, tags: "{}", created_at: "2024-01-01T00:00:00.000Z", updated_at: "2024-01-01T00:00:00.000Z" })
          .execute();
      });
      const second = await open(url);
      const rows = await second.db.selectFrom("models").select("name").execute();
      expect(rows).toEqual([{ name: "kept" }]);
      const applied = await sql<{ name: string }>`select name from mlship_migration order by name`.execute(second.db);
      expect(applied.rows.map((r) => r.name)).toEqual(MIGRATIONS.map((m) => m.name));
    }
  });

  it("creates the same tables and columns on SQLite and PostgreSQL", async () => {
    const lite = await tableColumns(await open());
    const post = await tableColumns(await open(`${SERVER}/${pgName}`));
    expect(Object.keys(lite).sort()).toEqual(
      ["alias_events", "audit_log", "batch_locks", "batch_predictions", "batch_rejects", "batch_runs", "batch_schedules", "business_events", "deployments", "mlship_migration",
        "mlship_migration_lock", "model_aliases", "model_versions", "models", "monitor_profiles", "outcomes", "prediction_log", "prediction_versions", "registry_state",
        "rollout_policies", "rollouts", "stream_claims", "stream_status", "version_settings"],
    );
    expect(post).toEqual(lite);
  });

  it("runs migrations added later, in order, and only once", async () => {
    const added: StoreMigration = {
      name: "9999_later_table",
      async up(db, dialect) {
        await db.schema
          .createTable("later_table")
          .addColumn("id", "integer", (c) => (dialect === "postgres" ? c.primaryKey().generatedByDefaultAsIdentity() : c.primaryKey().autoIncrement()))
          .addColumn("at", "text", (c) => c.notNull())
          .execute();
      },
    };
    for (const url of [undefined, `${SERVER}/${pgName}`]) {
      await open(url);
      const upgraded = await open(url, { migrations: [...MIGRATIONS, added] });
      await open(url, { migrations: [...MIGRATIONS, added] });
      const applied = await sql<{ name: string }>`select name from mlship_migration order by name`.execute(upgraded.db);
      expect(applied.rows.map((r) => r.name)).toEqual([...MIGRATIONS.map((m) => m.name), "9999_later_table"]);
      expect(Object.keys(await tableColumns(upgraded))).toContain("later_table");
    }
  });

  it("rolls a failed write back entirely", async () => {
    for (const url of [undefined, `${SERVER}/${pgName}`]) {
      const store = await open(url);
      const failure = store.write(async (db) => {
        await touchRegistryState(db);
        await db
          .insertInto("models")
          .values({ name: "half", description: null, tags: "{}", created_at: "t", updated_at: "t" })
          .execute();
        throw new Error("stop here");
      });
      await expect(failure).rejects.toThrow("stop here");
      expect(await store.db.selectFrom("models").selectAll().execute()).toEqual([]);
      const state = await store.db.selectFrom("registry_state").select("revision").executeTakeFirstOrThrow();
      expect(Number(state.revision)).toBe(0);
    }
  });

  it("moves the change token for writes by this and by another connection, and not otherwise", async () => {
    for (const url of [undefined, `${SERVER}/${pgName}`]) {
      const a = await open(url);
      const b = await open(url);
      const t0 = await a.changeToken();
      await a.db.selectFrom("models").selectAll().execute();
      expect(await a.changeToken()).toBe(t0);
      await b.write(touchRegistryState);
      const t1 = await a.changeToken();
      expect(t1).not.toBe(t0);
      await a.write(touchRegistryState);
      const t2 = await a.changeToken();
      expect(t2).not.toBe(t1);
      expect(await a.changeToken()).toBe(t2);
    }
  });

  it("reports an unreachable PostgreSQL server with the password redacted", async () => {
    const error = await caught(openSqlStore({ home, url: "postgres://alice:s3cret@127.0.0.1:1/mlship" }));
    expect(error.code).toBe("MLSHIP_ERR_STORE_UNAVAILABLE");
    expect(error.httpStatus).toBe(503);
    expect(error.message).toContain("postgres://alice:***@127.0.0.1:1/mlship");
    expect(error.message).not.toContain("s3cret");
    expect(JSON.stringify(error.details)).not.toContain("s3cret");
  });

  it("reports a missing PostgreSQL database and an unusable SQLite location", async () => {
    const missing = await caught(openSqlStore({ home, url: `${SERVER}/mlship_no_such_db_${randomBytes(4).toString("hex")}` }));
    expect(missing.code).toBe("MLSHIP_ERR_STORE_UNAVAILABLE");
    expect(missing.message).toContain("mlship_no_such_db_");

    const file = path.join(home, "a-file");
    await fs.writeFile(file, "not a folder");
    const blocked = await caught(openSqlStore({ home: file }));
    expect(blocked.code).toBe("MLSHIP_ERR_STORE_UNAVAILABLE");
    expect(blocked.message).toContain(path.join(file, "mlship.db"));

    const garbage = path.join(home, "garbage.db");
    await fs.writeFile(garbage, "this is not an SQLite database, just some text that is long enough to be read ".repeat(20));
    const notDb = await caught(openSqlStore({ home, url: `sqlite:${garbage}` }));
    expect(notDb.code).toBe("MLSHIP_ERR_STORE_UNAVAILABLE");
    expect(notDb.message).toContain(garbage);
  });

  it("closes idempotently and reports use after close as unavailable", async () => {
    const store = await openSqlStore({ home, url: `${SERVER}/${pgName}` });
    await store.close();
    await store.close();
    const error = await caught(store.changeToken());
    expect(error.code).toBe("MLSHIP_ERR_STORE_UNAVAILABLE");
    const lite = await openSqlStore({ home });
    await lite.close();
    expect((await caught(lite.changeToken())).code).toBe("MLSHIP_ERR_STORE_UNAVAILABLE");
    expect((await caught(lite.write(touchRegistryState))).code).toBe("MLSHIP_ERR_STORE_UNAVAILABLE");
  });
});

describe("redactUrl", () => {
  it("hides passwords in the userinfo and in parameters, and keeps the rest", () => {
    expect(redactUrl("postgres://u:p%40ss@h:5432/db")).toBe("postgres://u:***@h:5432/db");
    expect(redactUrl("postgresql://h/db?user=u&password=pw&sslmode=require")).toBe(
      "postgresql://h/db?user=u&password=***&sslmode=require",
    );
    expect(redactUrl("postgres://u@h/db")).toBe("postgres://u@h/db");
    expect(redactUrl("not a url user:pw@x")).toBe("not a url user:pw@x");
    expect(redactUrl("weird://u:pw@[bad")).not.toContain("pw@");
  });
});
