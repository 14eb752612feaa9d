// Prediction sinks of `mlship batch score --into`: the metadata store (real SQLite and PostgreSQL), a separate
// PostgreSQL database, JSON Lines and Parquet files (read back with hyparquet). Rows have the shape the breast-cancer
// classifier's outputs have (a label and its two class probabilities).
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from "hyparquet";
import { sql } from "kysely";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DEFAULT_PREDICTIONS_TABLE,
  PARQUET_ROW_GROUP_ROWS,
  checkTableName,
  describeTarget,
  openSink,
  readPredictions,
} from "../../src/batch/sinks.js";
import type { PredictionSink, ScoredRow, SinkWriteMeta } from "../../src/batch/types.js";
import { MlshipError } from "../../src/core/index.js";
import type { SqlStore } from "../../src/store/index.js";
import { freshPostgres, freshSqlite, postgresAdmin, POSTGRES_SERVER, type FreshDatabase } from "../helpers/sql-stores.js";

const LABELS = ["malignant", "benign"];

/** Rows `from`..`to-1` with ids `p<n>`, outputs varying with `seed` so two runs are told apart. */
function scoredRows(from: number, to: number, seed = 0): ScoredRow[] {
  const rows: ScoredRow[] = [];
  for (let n = from; n < to; n += 1) {
    const benign = ((n * 7919 + seed * 104729) % 1000) / 1000;
    rows.push({
      id: `p${n}`,
      outputs: { label: LABELS[benign >= 0.5 ? 1 : 0], probabilities: [1 - benign, benign], score: benign },
    });
  }
  return rows;
}

function meta(runId: string, version = 1, model = "breast-cancer"): SinkWriteMeta {
  return { model, version, runId, scoredAt: new Date(Date.UTC(2026, 11, 1, 8, version)).toISOString() };
}

async function expectMlshipError(promise: Promise<unknown>, code: string, field: string, message?: RegExp): Promise<MlshipError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(MlshipError);
  const mlship = error as MlshipError;
  expect(mlship.code).toBe(code);
  expect(mlship.field).toBe(field);
  if (message !== undefined) expect(mlship.message).toMatch(message);
  return mlship;
}

async function countRows(store: SqlStore, table: string): Promise<number> {
  const result = await sql<{ n: number | string }>`select count(*) as n from ${sql.table(table)}`.execute(store.db);
  return Number(result.rows[0]!.n);
}

/** The behaviour every SQL target shares, run against the metadata store `open()` gives. */
function sqlStoreSuite(name: string, fresh: () => Promise<FreshDatabase>): void {
  describe(name, () => {
    let database: FreshDatabase;
    let store: SqlStore;
    beforeAll(async () => {
      database = await fresh();
      store = await database.open();
    });
    afterAll(async () => {
      await database.dispose();
    });

    it("writes to batch_predictions by default and upserts one row per id, the newest run's", async () => {
      for (const into of [undefined, "sqlite", "store"]) {
        const sink = await openSink(into, { store, home: os.tmpdir() });
        expect(sink.kind).toBe(store.dialect);
        expect(sink.description).toContain(DEFAULT_PREDICTIONS_TABLE);
        await sink.close();
      }
      const first = await openSink(undefined, { store, home: os.tmpdir() });
      await first.write(scoredRows(0, 300, 1), meta("run-1", 1));
      await first.close();

      // A second run over an overlapping range (a repeated run), with an id repeated inside one write.
      const second = await openSink("store", { store, home: os.tmpdir() });
      const again = scoredRows(200, 400, 2);
      again.push({ id: "p399", outputs: { label: "benign", probabilities: [0, 1], score: 1 } });
      await second.write(again, meta("run-2", 2));
      await second.close();

      expect(await countRows(store, DEFAULT_PREDICTIONS_TABLE)).toBe(400);
      const stored = await readPredictions(store, { model: "breast-cancer", ids: ["p0", "p199", "p200", "p399", "nope"] });
      expect([...stored.keys()].sort()).toEqual(["p0", "p199", "p200", "p399"]);
      expect(stored.get("p0")).toEqual({ version: 1, runId: "run-1", scoredAt: meta("run-1", 1).scoredAt, outputs: scoredRows(0, 1, 1)[0]!.outputs });
      expect(stored.get("p199")?.runId).toBe("run-1");
      expect(stored.get("p200")).toEqual({ version: 2, runId: "run-2", scoredAt: meta("run-2", 2).scoredAt, outputs: scoredRows(200, 201, 2)[0]!.outputs });
      // The last prediction of an id within a write wins.
      expect(stored.get("p399")?.outputs).toEqual({ label: "benign", probabilities: [0, 1], score: 1 });
    });

    it("existing() reports the ids already written for the model, in chunks", async () => {
      const sink = await openSink(undefined, { store, home: os.tmpdir() });
      const ids = Array.from({ length: 2500 }, (_, n) => `p${n}`);
      const found = await sink.existing("breast-cancer", ids);
      expect(found.size).toBe(400);
      expect(found.has("p0") && found.has("p399") && !found.has("p400")).toBe(true);
      expect((await sink.existing("another-model", ids)).size).toBe(0);
      await sink.write(scoredRows(0, 10, 3), meta("run-3", 3, "another-model"));
      expect([...(await sink.existing("another-model", ids))].sort()).toEqual(scoredRows(0, 10).map((row) => row.id).sort());
      await sink.close();
    });

    it("creates a custom --table on first use, with the same shape, and refuses bad names", async () => {
      const sink = await openSink(undefined, { store, home: os.tmpdir(), table: "bc_scores_2026" });
      expect(sink.description).toContain("bc_scores_2026");
      await sink.write(scoredRows(0, 50, 4), meta("run-4", 4));
      await sink.write(scoredRows(25, 75, 5), meta("run-5", 5));
      await sink.close();
      expect(await countRows(store, "bc_scores_2026")).toBe(75);
      const stored = await readPredictions(store, { model: "breast-cancer", ids: ["p0", "p30", "p74"], table: "bc_scores_2026" });
      expect(stored.get("p0")?.runId).toBe("run-4");
      expect(stored.get("p30")?.runId).toBe("run-5");
      expect(stored.get("p74")?.version).toBe(5);
      // Reopening an existing custom table is fine.
      const reopened = await openSink("store", { store, home: os.tmpdir(), table: "bc_scores_2026" });
      expect((await reopened.existing("breast-cancer", ["p0", "p80"])).size).toBe(1);
      await reopened.close();

      for (const bad of ["Scores", "1scores", "scores-2026", "scores; drop table models", "", "a".repeat(64), "x y"]) {
        await expectMlshipError(openSink(undefined, { store, home: os.tmpdir(), table: bad }), "MLSHIP_ERR_INPUT_INVALID", "table");
        expect(() => checkTableName(bad)).toThrow(MlshipError);
      }
      expect(checkTableName("a".repeat(63))).toBe("a".repeat(63));
      // A table of mlship's own that is not a predictions table.
      await expectMlshipError(openSink(undefined, { store, home: os.tmpdir(), table: "models" }), "MLSHIP_ERR_INPUT_INVALID", "table", /not a predictions table/);
      await expectMlshipError(readPredictions(store, { model: "m", ids: ["a"], table: "Bad-Name" }), "MLSHIP_ERR_INPUT_INVALID", "table");
      await expectMlshipError(readPredictions(store, { model: "m", ids: ["a"], table: "never_created" }), "MLSHIP_ERR_INPUT_INVALID", "table");
    });
  });
}

sqlStoreSuite("SQLite metadata store", () => freshSqlite("mlship-sinks"));

describe("PostgreSQL", () => {
  let admin: pg.Client;
  beforeAll(async () => {
    admin = await postgresAdmin();
  });
  afterAll(async () => {
    await admin.end();
  });

  sqlStoreSuite("PostgreSQL metadata store", () => freshPostgres(admin, "mlship-sinks-pg"));

  describe("a separate postgres:// target", () => {
    let metadata: FreshDatabase;
    let store: SqlStore;
    const targetName = `mlship_target_${randomBytes(6).toString("hex")}`;
    const targetUrl = `${POSTGRES_SERVER}/${targetName}`;
    beforeAll(async () => {
      metadata = await freshSqlite("mlship-sinks-target");
      store = await metadata.open();
      await admin.query(`create database ${targetName}`);
    });
    afterAll(async () => {
      await metadata.dispose();
      await admin.query(`drop database if exists ${targetName} with (force)`);
    });

    async function targetQuery<T extends pg.QueryResultRow>(text: string): Promise<T[]> {
      const { default: pgModule } = await import("pg");
      const client = new pgModule.Client({ connectionString: targetUrl });
      await client.connect();
      try {
        return (await client.query<T>(text)).rows;
      } finally {
        await client.end();
      }
    }

    it("creates batch_predictions there (no mlship migrations) and upserts", async () => {
      const sink = await openSink(targetUrl, { store, home: os.tmpdir() });
      expect(sink.kind).toBe("postgres");
      expect(sink.description).toContain(targetName);
      await sink.write(scoredRows(0, 2500, 1), meta("run-1", 1));
      await sink.write(scoredRows(2000, 3000, 2), meta("run-2", 2));
      expect((await sink.existing("breast-cancer", ["p0", "p2999", "p3000"])).size).toBe(2);
      await sink.close();

      const tables = await targetQuery<{ table_name: string }>(
        "select table_name from information_schema.tables where table_schema = 'public' order by table_name",
      );
      expect(tables.map((row) => row.table_name)).toEqual(["batch_predictions"]);
      const counts = await targetQuery<{ run_id: string; n: string }>(
        "select run_id, count(*) as n from batch_predictions group by run_id order by run_id",
      );
      expect(counts).toEqual([
        { run_id: "run-1", n: "2000" },
        { run_id: "run-2", n: "1000" },
      ]);
      const [row] = await targetQuery<{ version: number; outputs: string }>("select version, outputs from batch_predictions where id = 'p2500'");
      expect(row?.version).toBe(2);
      expect(JSON.parse(row!.outputs)).toEqual(scoredRows(2500, 2501, 2)[0]!.outputs);
      // Nothing went to the metadata store.
      expect(await countRows(store, DEFAULT_PREDICTIONS_TABLE)).toBe(0);
    });

    it("writes a custom --table there", async () => {
      const sink = await openSink(targetUrl.replace("postgres://", "postgresql://"), { store, home: os.tmpdir(), table: "scores" });
      await sink.write(scoredRows(0, 10), meta("run-3", 3));
      await sink.close();
      const [row] = await targetQuery<{ n: string }>("select count(*) as n from scores");
      expect(row?.n).toBe("10");
    });

    it("reports a database that cannot be reached, naming the target without its password", async () => {
      const down = "postgres://postgres:s3cret@127.0.0.1:1/nowhere";
      const error = await expectMlshipError(openSink(down, { store, home: os.tmpdir() }), "MLSHIP_ERR_STORE_UNAVAILABLE", "into");
      expect(error.message).toContain("127.0.0.1:1/nowhere");
      expect(error.message).not.toContain("s3cret");
      const missing = await expectMlshipError(
        openSink(`${POSTGRES_SERVER}/mlship_no_such_db_${randomBytes(4).toString("hex")}`, { store, home: os.tmpdir() }),
        "MLSHIP_ERR_STORE_UNAVAILABLE",
        "into",
      );
      expect(missing.message).toContain("mlship_no_such_db_");
      expect(describeTarget(down)).not.toContain("s3cret");
    });
  });
});

describe("files", () => {
  let database: FreshDatabase;
  let store: SqlStore;
  let dir: string;
  beforeAll(async () => {
    database = await freshSqlite("mlship-sinks-files");
    store = await database.open();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-sinks-out-"));
  });
  afterAll(async () => {
    await database.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function readLines(file: string): Record<string, unknown>[] {
    return fs
      .readFileSync(file, "utf8")
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }

  it("JSON Lines: one object per row, appended across two sink instances (a resumed run)", async () => {
    const file = path.join(dir, "nested", "scores.jsonl");
    const first = await openSink(file, { store, home: os.tmpdir() });
    expect(first.kind).toBe("jsonl");
    expect(first.description).toBe(file);
    expect((await first.existing("breast-cancer", ["p0"])).size).toBe(0);
    await first.write(scoredRows(0, 100, 1), meta("run-1", 1));
    // Ids written after the first `existing` are known too.
    expect((await first.existing("breast-cancer", ["p0", "p99", "p100"])).size).toBe(2);
    await first.close();

    const second = await openSink(file, { store, home: os.tmpdir() });
    const done = await second.existing("breast-cancer", scoredRows(0, 200).map((row) => row.id));
    expect(done.size).toBe(100);
    await second.write(
      scoredRows(0, 200, 2).filter((row) => !done.has(row.id)),
      meta("run-2", 2),
    );
    await second.close();

    const lines = readLines(file);
    expect(lines).toHaveLength(200);
    expect(lines[0]).toEqual({ id: "p0", model: "breast-cancer", version: 1, run_id: "run-1", scored_at: meta("run-1", 1).scoredAt, ...scoredRows(0, 1, 1)[0]!.outputs });
    expect(Object.keys(lines[0]!)).toEqual(["id", "model", "version", "run_id", "scored_at", "label", "probabilities", "score"]);
    expect(lines[150]).toMatchObject({ id: "p150", version: 2, run_id: "run-2" });
    expect(new Set(lines.map((line) => line.id)).size).toBe(200);
  });

  it("JSON Lines: a line cut short by a killed run is skipped and the next rows start on their own line", async () => {
    const file = path.join(dir, "cut.ndjson");
    fs.writeFileSync(file, `${JSON.stringify({ id: "a", model: "m", version: 1, run_id: "r", scored_at: "x", y: 1 })}\n{"id":"b","mod`);
    const sink = await openSink(file, { store, home: os.tmpdir() });
    expect([...(await sink.existing("m", ["a", "b"]))]).toEqual(["a"]);
    await sink.write([{ id: "b", outputs: { y: 2, id: "clash" } }], meta("r2", 1, "m"));
    await sink.close();
    const lines = fs.readFileSync(file, "utf8").split("\n");
    expect(lines[1]).toBe('{"id":"b","mod');
    // An output named like a metadata column is written as output_<name>.
    expect(JSON.parse(lines[2]!)).toMatchObject({ id: "b", model: "m", y: 2, output_id: "clash" });
  });

  it("Parquet: readable with hyparquet, typed columns, row groups written as they fill", async () => {
    const file = path.join(dir, "scores.parquet");
    const sink = await openSink(file, { store, home: os.tmpdir() });
    expect(sink.kind).toBe("parquet");
    const total = PARQUET_ROW_GROUP_ROWS + 1234;
    for (let start = 0; start < total; start += 5000) {
      const rows = scoredRows(start, Math.min(total, start + 5000), 1);
      if (start === 0) rows[1]!.outputs.score = null;
      await sink.write(rows, meta("run-1", 1));
    }
    // The first row group is on disk before close (nothing but the footer is held back).
    expect(fs.statSync(`${file}.partial`).size).toBeGreaterThan(100_000);
    expect(fs.existsSync(file)).toBe(false);
    await sink.close();
    expect(fs.existsSync(`${file}.partial`)).toBe(false);

    const buffer = await asyncBufferFromFile(file);
    const metadata = await parquetMetadataAsync(buffer);
    expect(Number(metadata.num_rows)).toBe(total);
    expect(metadata.row_groups.map((group) => Number(group.num_rows))).toEqual([PARQUET_ROW_GROUP_ROWS, 1234]);
    expect(metadata.schema.slice(1).map((element) => [element.name, element.type])).toEqual([
      ["id", "BYTE_ARRAY"],
      ["model", "BYTE_ARRAY"],
      ["version", "INT32"],
      ["run_id", "BYTE_ARRAY"],
      ["scored_at", "BYTE_ARRAY"],
      ["label", "BYTE_ARRAY"],
      ["probabilities", "BYTE_ARRAY"],
      ["score", "DOUBLE"],
    ]);
    const rows = await parquetReadObjects({ file: buffer, rowStart: 0, rowEnd: 3 });
    const expected = scoredRows(0, 3, 1);
    expect(rows[0]).toEqual({ id: "p0", model: "breast-cancer", version: 1, run_id: "run-1", scored_at: meta("run-1", 1).scoredAt, ...expected[0]!.outputs });
    expect(rows[1]).toMatchObject({ id: "p1", score: null, probabilities: expected[1]!.outputs.probabilities });
    const last = await parquetReadObjects({ file: buffer, rowStart: total - 1, rowEnd: total, columns: ["id", "score"] });
    expect(last).toEqual([{ id: `p${total - 1}`, score: scoredRows(total - 1, total, 1)[0]!.outputs.score }]);
  });

  it("Parquet: a resumed run keeps the file's rows and existing() reports them", async () => {
    const file = path.join(dir, "resumed.parquet");
    const first = await openSink(file, { store, home: os.tmpdir() });
    await first.write(scoredRows(0, 100, 1), meta("run-1", 1));
    await first.close();
    const second = await openSink(file, { store, home: os.tmpdir() });
    const done = await second.existing("breast-cancer", scoredRows(0, 150).map((row) => row.id));
    expect(done.size).toBe(100);
    await second.write(scoredRows(100, 150, 2), meta("run-2", 2));
    expect((await second.existing("breast-cancer", ["p149"])).size).toBe(1);
    await second.close();
    const rows = await parquetReadObjects({ file: await asyncBufferFromFile(file), columns: ["id", "run_id"] });
    expect(rows).toHaveLength(150);
    expect(rows[99]).toEqual({ id: "p99", run_id: "run-1" });
    expect(rows[149]).toEqual({ id: "p149", run_id: "run-2" });

    // Outputs of another shape do not go into that file.
    const other = await openSink(file, { store, home: os.tmpdir() });
    await expectMlshipError(other.write([{ id: "x", outputs: { value: 1 } }], meta("run-3")), "MLSHIP_ERR_INPUT_INVALID", "into", /do not match/);
    await other.close();
    expect(await parquetReadObjects({ file: await asyncBufferFromFile(file), columns: ["id"] })).toHaveLength(150);
  });

  it("refuses unknown targets and unwritable paths, naming the target", async () => {
    await expectMlshipError(openSink(path.join(dir, "scores.csv"), { store, home: os.tmpdir() }), "MLSHIP_ERR_INPUT_INVALID", "into", /scores\.csv/);
    await expectMlshipError(openSink("mysql://db/scores", { store, home: os.tmpdir() }), "MLSHIP_ERR_INPUT_INVALID", "into", /mysql/);
    await expectMlshipError(openSink(path.join(dir, "a.jsonl"), { store, home: os.tmpdir(), table: "t" }), "MLSHIP_ERR_INPUT_INVALID", "table");
    const blocker = path.join(dir, "blocker");
    fs.writeFileSync(blocker, "a file, not a directory");
    await expectMlshipError(openSink(path.join(blocker, "x.jsonl"), { store, home: os.tmpdir() }), "MLSHIP_ERR_INPUT_INVALID", "into", /blocker/);
    await expectMlshipError(openSink(path.join(blocker, "x.parquet"), { store, home: os.tmpdir() }), "MLSHIP_ERR_INPUT_INVALID", "into", /blocker/);
    fs.mkdirSync(path.join(dir, "a-directory.jsonl"));
    await expectMlshipError(openSink(path.join(dir, "a-directory.jsonl"), { store, home: os.tmpdir() }), "MLSHIP_ERR_INPUT_INVALID", "into", /a-directory/);
  });
});

describe("throughput", () => {
  let database: FreshDatabase;
  let store: SqlStore;
  beforeAll(async () => {
    database = await freshSqlite("mlship-sinks-bulk");
    store = await database.open();
  });
  afterAll(async () => {
    await database.dispose();
  });

  it("writes 200k rows into SQLite in chunks of 5000", async () => {
    const total = 200_000;
    const chunks: ScoredRow[][] = [];
    for (let start = 0; start < total; start += 5000) chunks.push(scoredRows(start, start + 5000, 7));
    const sink: PredictionSink = await openSink(undefined, { store, home: os.tmpdir() });
    const started = performance.now();
    for (const chunk of chunks) await sink.write(chunk, meta("bulk", 1));
    const seconds = (performance.now() - started) / 1000;
    await sink.close();
    const rate = Math.round(total / seconds);
    console.log(`sqlite sink: ${total} rows in ${seconds.toFixed(2)} s (${rate} rows/s)`);
    expect(await countRows(store, DEFAULT_PREDICTIONS_TABLE)).toBe(total);
    expect(seconds).toBeLessThan(30);
  });
});
