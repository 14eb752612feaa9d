// The same CLI against the machine's PostgreSQL (MLSHIP_STORE / --store): the composition root picks the store
// from the config, everything else behaves the same.
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectRecordsMatch, fixture, REPO, runCli, tempDir } from "./helpers.js";

const SERVER = "postgres://postgres@127.0.0.1:5432";
const database = `mlship_cli_${randomBytes(6).toString("hex")}`;
const home = tempDir("cli-pg");
const env = { MLSHIP_HOME: home, MLSHIP_STORE: `${SERVER}/${database}`, MLSHIP_WORKERS: "1", MLSHIP_USER: "pg-tester" };
let admin: pg.Client;

beforeAll(async () => {
  admin = new pg.Client({ connectionString: `${SERVER}/postgres` });
  await admin.connect();
  await admin.query(`create database ${database}`);
});

afterAll(async () => {
  await admin.query(`drop database if exists ${database} with (force)`);
  await admin.end();
  fs.rmSync(home, { recursive: true, force: true });
});

describe("mlship CLI on PostgreSQL", () => {
  it("registers, moves aliases and predicts with the registry in PostgreSQL", async () => {
    const diabetes = fixture("diabetes_linear");
    const cli = (...args: string[]) => runCli(args, { env, cwd: home });
    expect(await cli("models", "register", path.join(REPO, "examples/models/diabetes"), "--name", "diabetes", "--alias", "production")).toMatchObject({ code: 0, stdout: "1\n" });
    expect(await cli("models", "register", path.join(REPO, "examples/models/diabetes"), "--name", "diabetes", "--alias", "production")).toMatchObject({ code: 0, stdout: "2\n" });
    expect(await cli("models", "rollback", "diabetes")).toMatchObject({ code: 0, stdout: "diabetes@production -> 1 (was 2)\n" });

    // Nothing went to a SQLite file: the metadata lives in the database.
    expect(fs.existsSync(path.join(home, "mlship.db"))).toBe(false);
    const rows = new pg.Client({ connectionString: `${SERVER}/${database}` });
    await rows.connect();
    try {
      const names = await rows.query<{ name: string }>("select name from models");
      expect(names.rows.map((r) => r.name)).toEqual(["diabetes"]);
    } finally {
      await rows.end();
    }

    const input = path.join(home, "rows.json");
    fs.writeFileSync(input, JSON.stringify({ dataframe_split: { columns: diabetes.features, data: diabetes.expected.inputs } }));
    const predicted = await cli("predict", "diabetes@production", "--input", input);
    expect(predicted.stderr).toBe("");
    expectRecordsMatch((JSON.parse(predicted.stdout) as { predictions: unknown }).predictions, diabetes.expected);

    const config = JSON.parse((await cli("config", "--json")).stdout) as { sources: Record<string, string> };
    expect(config.sources.store).toBe("MLSHIP_STORE");
  });

  it("names the store when PostgreSQL cannot be reached", async () => {
    const r = await runCli(["models", "list"], { env: { ...env, MLSHIP_STORE: "postgres://postgres@127.0.0.1:1/none" }, cwd: home });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^mlship: .*127\.0\.0\.1:1.* \[MLSHIP_ERR_STORE_UNAVAILABLE\]\n$/);
  });
});
