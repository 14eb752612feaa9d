// Stream sinks into SQL tables, against real databases: the SQLite metadata store, a SQLite file of the sink's own,
// the PostgreSQL metadata store and a PostgreSQL URL of the sink's own (two pools on one database stand in for two
// stream processes). Rows have the shape of the breast-cancer classifier's predictions plus an input column whose
// name has a space, as the example package's columns do.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import BetterSqlite3 from "better-sqlite3";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MlshipError, silentLogger } from "../../src/core/index.js";
import { createSqlSink, outputValue } from "../../src/stream/sinks/sql.js";
import type { OutputRow, PostgresSinkSpec, SqliteSinkSpec, StreamSink } from "../../src/stream/types.js";
import type { SqlStore } from "../../src/store/index.js";
import { freshPostgres, freshSqlite, postgresAdmin, type FreshDatabase } from "../helpers/sql-stores.js";

const logger = silentLogger();
const LABELS = ["malignant", "benign"];

/** Rows `from`..`to-1` with ids `r<n, 6 digits>`; values vary with `seed` so two writes are told apart. */
function rows(from: number, to: number, seed = 0): OutputRow[] {
  const out: OutputRow[] = [];
  for (let n = from; n < to; n += 1) {
    const benign = ((n * 7919 + seed * 104729) % 1000) / 1000;
    out.push({
      id: rowId(n),
      fields: {
        "mean radius": 10 + (n % 17) + 0.25,
        label: LABELS[benign >= 0.5 ? 1 : 0],
        probabilities: [1 - benign, benign],
        benign: benign >= 0.5,
        seed,
      },
    });
  }
  return out;
}

function rowId(n: number): string {
  return `r${String(n).padStart(6, "0")}`;
}

async function caught(promise: Promise<unknown>): Promise<MlshipError> {
  const error = await promise.then(
    () => undefined,
    (failure: unknown) => failure,
  );
  expect(error).toBeInstanceOf(MlshipError);
  return error as MlshipError;
}

let tableCounter = 0;
function newTable(): string {
  tableCounter += 1;
  return `stream_out_${tableCounter}`;
}

/** A database the sinks write to, and how the test reads it back. */
interface Target {
  dialect: "sqlite" | "postgres";
  store: SqlStore;
  spec(table: string): SqliteSinkSpec | PostgresSinkSpec;
  /** Every row of `table`, by `_id`; numbers as numbers, JSON columns parsed. */
  select(table: string): Promise<Record<string, unknown>[]>;
  /** Column name -> declared type. */
  columns(table: string): Promise<Map<string, string>>;
  exec(statement: string): Promise<void>;
  dispose(): Promise<void>;
}

function sqliteReader(db: BetterSqlite3.Database) {
  return {
    select(table: string) {
      return Promise.resolve(db.prepare(`select * from "${table}" order by _id`).all() as Record<string, unknown>[]);
    },
    columns(table: string) {
      const info = db.pragma(`table_info("${table}")`) as { name: string; type: string }[];
      return Promise.resolve(new Map(info.map((column) => [column.name, column.type])));
    },
    exec(statement: string) {
      db.exec(statement);
      return Promise.resolve();
    },
  };
}

async function sqliteStoreTarget(): Promise<Target> {
  const database = await freshSqlite("mlship-stream-sql");
  const store = await database.open();
  return {
    dialect: "sqlite",
    store,
    spec: (table) => ({ kind: "sqlite", table }),
    ...sqliteReader(store.sqlite!),
    dispose: () => database.dispose(),
  };
}

async function sqliteFileTarget(): Promise<Target> {
  const database = await freshSqlite("mlship-stream-sql");
  const store = await database.open();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-stream-sqlfile-"));
  const file = path.join(dir, "nested", "out.db");
  let reader: BetterSqlite3.Database | undefined;
  const db = () => (reader ??= new BetterSqlite3(file));
  return {
    dialect: "sqlite",
    store,
    spec: (table) => ({ kind: "sqlite", table, path: file }),
    select: (table) => sqliteReader(db()).select(table),
    columns: (table) => sqliteReader(db()).columns(table),
    exec: (statement) => sqliteReader(db()).exec(statement),
    async dispose() {
      reader?.close();
      await database.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function postgresTarget(admin: pg.Client, ownUrl: boolean): Promise<Target> {
  const database: FreshDatabase = await freshPostgres(admin, "mlship-stream-sql");
  const store = await database.open();
  // The test server needs no password, so the store's redacted location is its URL.
  const url = store.location;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return {
    dialect: "postgres",
    store,
    spec: (table) => (ownUrl ? { kind: "postgres", table, url } : { kind: "postgres", table }),
    async select(table) {
      const result = await client.query<Record<string, unknown>>(`select * from "${table}" order by _id`);
      // int8 comes back as text from pg: the tests compare numbers.
      return result.rows.map((row) => ({ ...row, _batch_id: Number(row._batch_id) }));
    },
    async columns(table) {
      const result = await client.query<{ name: string; type: string }>(
        "select a.attname as name, format_type(a.atttypid, a.atttypmod) as type from pg_attribute a " +
          "where a.attrelid = to_regclass($1) and a.attnum > 0 and not a.attisdropped",
        [`"${table}"`],
      );
      return new Map(result.rows.map((row) => [row.name, row.type]));
    },
    async exec(statement) {
      await client.query(statement);
    },
    async dispose() {
      await client.end();
      await database.dispose();
    },
  };
}

async function openSink(target: Target, table: string): Promise<StreamSink> {
  const sink = createSqlSink(target.spec(table), { store: target.store, logger });
  await sink.open();
  return sink;
}

let admin: pg.Client;
beforeAll(async () => {
  admin = await postgresAdmin();
});
afterAll(async () => {
  await admin.end();
});

const TARGETS: [string, () => Promise<Target>][] = [
  ["sqlite metadata store", sqliteStoreTarget],
  ["sqlite file", sqliteFileTarget],
  ["postgres metadata store", () => postgresTarget(admin, false)],
  ["postgres url", () => postgresTarget(admin, true)],
];

describe.each(TARGETS)("%s", (_name, makeTarget) => {
  let target: Target;
  beforeAll(async () => {
    target = await makeTarget();
  });
  afterAll(async () => {
    await target.dispose();
  });

  it("creates the table at open with the system columns, and describes itself", async () => {
    const table = newTable();
    const sink = await openSink(target, table);
    expect(sink.kind).toBe(target.dialect);
    const spec = target.spec(table);
    if (spec.kind === "sqlite") {
      expect(sink.description).toBe(spec.path === undefined ? `sqlite table ${table}` : `sqlite ${spec.path} table ${table}`);
    } else {
      expect(sink.description).toMatch(new RegExp(`^postgres postgres://postgres@127\\.0\\.0\\.1:5432/mlship_test_[0-9a-f]+ table ${table}$`));
    }
    const columns = await target.columns(table);
    expect([...columns.keys()]).toEqual(["_id", "_stream", "_batch_id", "_written_at"]);
    expect(await target.select(table)).toEqual([]);
    await sink.write([], { stream: "s", batchId: 0 });
    expect(await target.select(table)).toEqual([]);
    await sink.close();
    // Opening again finds the table as it is.
    const again = await openSink(target, table);
    await again.close();
  });

  it("writes fields as typed columns, names with spaces included, and reads them back", async () => {
    const table = newTable();
    const sink = await openSink(target, table);
    const before = Date.now();
    await sink.write(rows(0, 20), { stream: "bc-stream", batchId: 7 });
    await sink.close();

    const stored = await target.select(table);
    expect(stored).toHaveLength(20);
    const first = stored[0]!;
    expect(first._id).toBe("r000000");
    expect(first._stream).toBe("bc-stream");
    expect(first._batch_id).toBe(7);
    expect(Date.parse(String(first._written_at))).toBeGreaterThanOrEqual(before - 1000);
    expect(first["mean radius"]).toBe(10.25);
    expect(first.label).toBe(rows(0, 1)[0]!.fields.label);
    const columns = await target.columns(table);
    if (target.dialect === "postgres") {
      expect(first.probabilities).toEqual(rows(0, 1)[0]!.fields.probabilities);
      expect(first.benign).toBe(rows(0, 1)[0]!.fields.benign);
      expect(first.seed).toBe("0"); // bigint: pg gives int8 as text
      expect(Object.fromEntries(columns)).toMatchObject({
        "mean radius": "double precision",
        label: "text",
        probabilities: "jsonb",
        benign: "boolean",
        seed: "bigint",
      });
    } else {
      expect(JSON.parse(String(first.probabilities))).toEqual(rows(0, 1)[0]!.fields.probabilities);
      expect(first.benign).toBe(rows(0, 1)[0]!.fields.benign ? 1 : 0);
      expect(first.seed).toBe(0);
      expect(Object.fromEntries(columns)).toMatchObject({
        "mean radius": "REAL",
        label: "TEXT",
        probabilities: "JSON TEXT",
        benign: "INTEGER",
        seed: "INTEGER",
      });
    }
  });

  it("upserts on _id: writing ids again replaces their rows, the last of an id within one write wins", async () => {
    const table = newTable();
    const sink = await openSink(target, table);
    await sink.write(rows(0, 100, 1), { stream: "s", batchId: 0 });
    // A replayed batch, then an overlapping one.
    await sink.write(rows(0, 100, 1), { stream: "s", batchId: 0 });
    const overlapping = rows(50, 150, 2);
    overlapping.push({ id: rowId(149), fields: { label: "last", seed: 3 } });
    await sink.write(overlapping, { stream: "s", batchId: 1 });
    await sink.close();

    const stored = await target.select(table);
    expect(stored.map((row) => row._id)).toEqual(Array.from({ length: 150 }, (_, n) => rowId(n)));
    const byId = new Map(stored.map((row) => [row._id, row]));
    expect(Number(byId.get(rowId(49))!.seed)).toBe(1);
    expect(byId.get(rowId(49))!._batch_id).toBe(0);
    expect(Number(byId.get(rowId(50))!.seed)).toBe(2);
    expect(byId.get(rowId(50))!._batch_id).toBe(1);
    expect(byId.get(rowId(50))!.label).toBe(rows(50, 51, 2)[0]!.fields.label);
    // The last row of r000149 had no "mean radius": an upsert sets the columns this write has, so it is null.
    expect(byId.get(rowId(149))!.label).toBe("last");
    expect(Number(byId.get(rowId(149))!.seed)).toBe(3);
    expect(byId.get(rowId(149))!["mean radius"]).toBeNull();
  });

  it("adds columns for fields that appear in later batches, and leaves columns a write lacks untouched", async () => {
    const table = newTable();
    const sink = await openSink(target, table);
    await sink.write(
      [
        { id: "a", fields: { score: 0.5, note: null } },
        { id: "b", fields: { score: 0.75 } },
      ],
      { stream: "s", batchId: 0 },
    );
    // A field null in every row so far has no column yet.
    expect([...(await target.columns(table)).keys()]).toEqual(["_id", "_stream", "_batch_id", "_written_at", "score"]);
    await sink.write([{ id: "c", fields: { score: 1.5, note: "late", "new field": true } }], { stream: "s", batchId: 1 });
    // Only `note` in this write: b's score stays.
    await sink.write([{ id: "b", fields: { note: "updated" } }], { stream: "s", batchId: 2 });
    await sink.close();

    expect([...(await target.columns(table)).keys()]).toEqual(["_id", "_stream", "_batch_id", "_written_at", "score", "note", "new field"]);
    const stored = await target.select(table);
    const flag = (value: boolean | null) => (value === null || target.dialect === "postgres" ? value : value ? 1 : 0);
    expect(stored.map((row) => [row._id, row.score, row.note, row["new field"]])).toEqual([
      ["a", 0.5, null, null],
      ["b", 0.75, "updated", null],
      ["c", 1.5, "late", flag(true)],
    ]);
  });

  it("keeps text with quotes, backslashes, commas, braces and non-ASCII intact, in ids too", async () => {
    const table = newTable();
    const sink = await openSink(target, table);
    const awkward = 'a "quoted", {braced} \\ back\\slash NULL é 🙂';
    await sink.write(
      [
        { id: awkward, fields: { text: awkward, json: { s: awkward, list: [awkward, null] } } },
        { id: "NULL", fields: { text: "NULL", json: ["NULL"] } },
        { id: "", fields: { text: "", json: "" } },
      ],
      { stream: awkward, batchId: 0 },
    );
    await sink.close();
    const stored = await target.select(table);
    const json = (value: unknown) => (target.dialect === "postgres" ? value : JSON.parse(String(value)));
    expect(stored.map((row) => [row._id, row.text, json(row.json), row._stream])).toEqual(
      [
        ["", "", "", awkward],
        ["NULL", "NULL", ["NULL"], awkward],
        [awkward, awkward, { s: awkward, list: [awkward, null] }, awkward],
      ].sort((a, b) => (String(a[0]) < String(b[0]) ? -1 : 1)),
    );
  });

  it("writes a micro-batch of 10,000 rows in one write", async () => {
    const table = newTable();
    const sink = await openSink(target, table);
    const started = performance.now();
    await sink.write(rows(0, 10_000, 4), { stream: "s", batchId: 0 });
    const elapsed = performance.now() - started;
    await sink.close();
    const stored = await target.select(table);
    expect(stored).toHaveLength(10_000);
    expect(stored[9_999]!._id).toBe(rowId(9_999));
    expect(stored[9_999]!["mean radius"]).toBe(rows(9_999, 10_000, 4)[0]!.fields["mean radius"]);
    // Generous: the point is that it is not row-at-a-time over the network (that takes many seconds).
    expect(elapsed).toBeLessThan(5_000);
  });

  it("refuses field names that cannot be columns, naming the field", async () => {
    const table = newTable();
    const sink = await openSink(target, table);
    const long = "x".repeat(64);
    for (const name of ['say "hi"', long, "nul\0here", "_batch_id"]) {
      const error = await caught(sink.write([{ id: "a", fields: { [name]: 1 } }], { stream: "s", batchId: 0 }));
      expect(error.code).toBe("MLSHIP_ERR_INPUT_INVALID");
      expect(error.field).toBe(name);
    }
    // 63 bytes is fine; the sink still works after refusing.
    await sink.write([{ id: "a", fields: { ["y".repeat(63)]: 1 } }], { stream: "s", batchId: 0 });
    await sink.close();
    expect(await target.select(table)).toHaveLength(1);
  });

  it("says so clearly when an existing column cannot hold the values, or the table is not a sink table", async () => {
    const table = newTable();
    const sink = await openSink(target, table);
    await sink.write([{ id: "a", fields: { amount: 1.5 } }], { stream: "s", batchId: 0 });
    const error = await caught(sink.write([{ id: "b", fields: { amount: "lots" } }], { stream: "s", batchId: 1 }));
    expect(error.code).toBe("MLSHIP_ERR_INPUT_INVALID");
    expect(error.field).toBe("amount");
    expect(error.message).toMatch(/column amount of table .* cannot hold text/);
    // A text column takes numbers (as text) without complaint.
    await sink.write([{ id: "b", fields: { name: "x" } }], { stream: "s", batchId: 2 });
    await sink.write([{ id: "c", fields: { name: 42 } }], { stream: "s", batchId: 3 });
    await sink.close();
    expect((await target.select(table)).map((row) => row.name)).toEqual([null, "x", "42"]);

    const foreign = newTable();
    await target.exec(`create table "${foreign}" (id text primary key, value text)`);
    const other = createSqlSink(target.spec(foreign), { store: target.store, logger });
    const refused = await caught(other.open());
    expect(refused.code).toBe("MLSHIP_ERR_CONFIG_INVALID");
    expect(refused.field).toBe("table");
    expect(refused.message).toContain("_id");
  });
});

describe("postgres specifics", () => {
  let target: Target;
  beforeAll(async () => {
    target = await postgresTarget(admin, true);
  });
  afterAll(async () => {
    await target.dispose();
  });

  it("widens a bigint column to double precision when a fractional number arrives", async () => {
    const table = newTable();
    const sink = await openSink(target, table);
    await sink.write([{ id: "a", fields: { value: 3, count: 1 } }], { stream: "s", batchId: 0 });
    expect((await target.columns(table)).get("value")).toBe("bigint");
    await sink.write([{ id: "b", fields: { value: 2.5, count: 2 } }], { stream: "s", batchId: 1 });
    expect((await target.columns(table)).get("value")).toBe("double precision");
    expect((await target.columns(table)).get("count")).toBe("bigint");
    // A batch mixing integers and fractions creates the column as double precision directly.
    await sink.write(
      [
        { id: "c", fields: { mixed: 1 } },
        { id: "d", fields: { mixed: 1.5 } },
      ],
      { stream: "s", batchId: 2 },
    );
    expect((await target.columns(table)).get("mixed")).toBe("double precision");
    await sink.close();
    expect((await target.select(table)).map((row) => row.value)).toEqual([3, 2.5, null, null]);
  });

  it("stores arrays and objects as jsonb the database can query", async () => {
    const table = newTable();
    const sink = await openSink(target, table);
    await sink.write(
      [
        { id: "a", fields: { probabilities: [0.25, 0.75], meta: { model: "bc", tags: ["x"] } } },
        { id: "b", fields: { probabilities: [0.9, 0.1], meta: { model: "bc", tags: [] } } },
      ],
      { stream: "s", batchId: 0 },
    );
    await sink.close();
    expect((await target.columns(table)).get("meta")).toBe("jsonb");
    const client = new pg.Client({ connectionString: target.store.location });
    await client.connect();
    try {
      const result = await client.query<{ _id: string; p1: number; model: string }>(
        `select _id, (probabilities->>1)::float8 as p1, meta->>'model' as model from "${table}" where (probabilities->>1)::float8 > 0.5`,
      );
      expect(result.rows).toEqual([{ _id: "a", p1: 0.75, model: "bc" }]);
    } finally {
      await client.end();
    }
  });

  it("reports an unreachable server as MLSHIP_ERR_STREAM_UNAVAILABLE without the password", async () => {
    const sink = createSqlSink(
      { kind: "postgres", url: "postgres://writer:s3cret-pw@127.0.0.1:5499/nowhere", table: "preds" },
      { store: target.store, logger },
    );
    expect(sink.description).toBe("postgres postgres://writer:***@127.0.0.1:5499/nowhere table preds");
    const error = await caught(sink.open());
    expect(error.code).toBe("MLSHIP_ERR_STREAM_UNAVAILABLE");
    expect(error.message).toContain("127.0.0.1:5499");
    expect(error.message).not.toContain("s3cret-pw");
    await sink.close();
  });

  it("two processes (two pools) writing disjoint and overlapping ids concurrently leave one row per id", async () => {
    const table = newTable();
    const first = await openSink(target, table);
    const second = await openSink(target, table);
    // Both add the same new columns at once in their first writes, and one brings fractions to a column the other
    // creates as bigint.
    const batches = 6;
    const writes: Promise<void>[] = [];
    for (let batch = 0; batch < batches; batch += 1) {
      // first: 0..1499 shifted by 500 per batch; second: 1000..2499 shifted likewise: both disjoint and shared ids.
      const a = rows(batch * 500, batch * 500 + 1500, 1).map((row) => ({ ...row, fields: { ...row.fields, writer: 1, ratio: 1 } }));
      const b = rows(batch * 500 + 1000, batch * 500 + 2500, 2).map((row) => ({ ...row, fields: { ...row.fields, writer: 2, ratio: 0.5 } }));
      writes.push(first.write(a, { stream: "s", batchId: batch }), second.write(b, { stream: "s", batchId: batch }));
    }
    await Promise.all(writes);
    await first.close();
    await second.close();

    const stored = await target.select(table);
    const expected = (batches - 1) * 500 + 2500;
    expect(stored).toHaveLength(expected);
    expect(new Set(stored.map((row) => row._id)).size).toBe(expected);
    expect(stored.map((row) => row._id)).toEqual(Array.from({ length: expected }, (_, n) => rowId(n)));
    // Ids only the first wrote carry its values; every row is whole (one writer's values, not a mix).
    expect(stored[0]!.writer).toBe("1");
    expect(stored[expected - 1]!.writer).toBe("2");
    for (const row of stored) {
      expect(Number(row.ratio)).toBe(row.writer === "1" ? 1 : 0.5);
      expect(Number(row.seed)).toBe(Number(row.writer));
    }
    expect((await target.columns(table)).get("ratio")).toBe("double precision");
  });

  it("needs a url when the metadata store is SQLite, and a path when it is PostgreSQL", async () => {
    const sqlite = await freshSqlite("mlship-stream-sql");
    try {
      const sqliteStore = await sqlite.open();
      const noUrl = (() => {
        try {
          createSqlSink({ kind: "postgres", table: "t" }, { store: sqliteStore, logger });
        } catch (error) {
          return error;
        }
        return undefined;
      })();
      expect(noUrl).toBeInstanceOf(MlshipError);
      expect((noUrl as MlshipError).code).toBe("MLSHIP_ERR_CONFIG_INVALID");
      expect((noUrl as MlshipError).field).toBe("url");
    } finally {
      await sqlite.dispose();
    }
    expect(() => createSqlSink({ kind: "sqlite", table: "t" }, { store: target.store, logger })).toThrow(
      expect.objectContaining({ code: "MLSHIP_ERR_CONFIG_INVALID", field: "path" }),
    );
    expect(() => createSqlSink({ kind: "sqlite", table: "Bad Name" }, { store: target.store, logger })).toThrow(
      expect.objectContaining({ code: "MLSHIP_ERR_INPUT_INVALID", field: "table" }),
    );
  });
});

describe("outputValue", () => {
  it("normalizes what a model or a decoder may hand a sink", () => {
    expect(outputValue(undefined)).toBeNull();
    expect(outputValue(12n)).toBe(12);
    expect(outputValue(2n ** 60n)).toBe("1152921504606846976");
    expect(outputValue(new Date(Date.UTC(2026, 11, 1)))).toBe("2026-12-01T00:00:00.000Z");
    expect(outputValue(new Float32Array([0.5, 0.25]))).toEqual([0.5, 0.25]);
    expect(outputValue({ a: [1n, undefined], b: "x" })).toEqual({ a: [1, null], b: "x" });
  });
});
