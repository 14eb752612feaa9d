import type pg from "pg";
import { afterAll, beforeAll } from "vitest";
import { freshPostgres, postgresAdmin } from "../helpers/sql-stores.js";
import { registrySuite } from "./registry-suite.js";

let admin: pg.Client;

beforeAll(async () => {
  admin = await postgresAdmin();
});

afterAll(async () => {
  await admin.end();
});

registrySuite("PostgreSQL", {
  fresh: () => freshPostgres(admin, "mlship-pg"),
});
