import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll } from "vitest";
import { openSqlStore, type SqlStore } from "../../src/store/index.js";
import { registrySuite } from "./registry-suite.js";

const SERVER = "postgres://postgres@127.0.0.1:5432";
let admin: pg.Client;

beforeAll(async () => {
  admin = new pg.Client({ connectionString: `${SERVER}/postgres` });
  await admin.connect();
});

afterAll(async () => {
  await admin.end();
});

registrySuite("PostgreSQL", {
  async fresh() {
    const name = `mlship_test_${randomBytes(6).toString("hex")}`;
    await admin.query(`create database ${name}`);
    const home = await fs.mkdtemp(path.join(os.tmpdir(), "mlship-pg-"));
    const opened: SqlStore[] = [];
    return {
      async open() {
        const store = await openSqlStore({ url: `${SERVER}/${name}`, home });
        opened.push(store);
        return store;
      },
      async dispose() {
        for (const store of opened) await store.close();
        await admin.query(`drop database if exists ${name} with (force)`);
        await fs.rm(home, { recursive: true, force: true });
      },
    };
  },
});
