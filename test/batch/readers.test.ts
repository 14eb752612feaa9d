import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import v8 from "node:v8";
import vm from "node:vm";
import { parquetWriteFile } from "hyparquet-writer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MlshipError } from "../../src/core/index.js";
import { csvCell, openRowSource, shardOf, type SourceChunk } from "../../src/batch/readers.js";
import type { BatchCell, RowSourceOptions } from "../../src/batch/types.js";

const FIXTURE = path.resolve("../shared/fixtures/breast_cancer_mlp/prod.csv");

let dir: string;

/** An independent full read of a plain numeric CSV: split lines and commas, Number() each cell. */
function plainRead(file: string): { columns: string[]; rows: number[][] } {
  const lines = fs.readFileSync(file, "utf8").split("\n").filter((line) => line.trim() !== "");
  const columns = (lines[0] as string).split(",");
  return { columns, rows: lines.slice(1).map((line) => line.split(",").map(Number)) };
}

async function readAll(file: string, options: RowSourceOptions = {}): Promise<{ chunks: SourceChunk[]; rows: BatchCell[][]; rowNumbers: number[] }> {
  const source = await openRowSource(file, options);
  const chunks: SourceChunk[] = [];
  for await (const chunk of source) chunks.push(chunk);
  return { chunks, rows: chunks.flatMap((c) => c.rows), rowNumbers: chunks.flatMap((c) => c.rowNumbers) };
}

async function failure(promise: Promise<unknown>): Promise<MlshipError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(MlshipError);
    return error as MlshipError;
  }
  throw new Error("expected a failure");
}

function sha256sum(file: string): string {
  return (execFileSync("sha256sum", [file], { encoding: "utf8" }).split(" ")[0] as string).trim();
}

const fixture = plainRead(FIXTURE);
const jsonlFile = (): string => path.join(dir, "prod.jsonl");
const parquetFile = (): string => path.join(dir, "prod.parquet");
const pagedParquetFile = (): string => path.join(dir, "prod-paged.parquet");

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-readers-"));
  fs.writeFileSync(
    jsonlFile(),
    fixture.rows.map((row) => JSON.stringify(Object.fromEntries(fixture.columns.map((name, c) => [name, row[c]])))).join("\n") + "\n",
  );
  // Small row groups, so the reader crosses row-group boundaries inside a chunk.
  parquetWriteFile({
    filename: parquetFile(),
    columnData: fixture.columns.map((name, c) => ({ name, data: fixture.rows.map((row) => row[c] as number), type: "DOUBLE" as const })),
    rowGroupSize: 50,
  });
  // Small pages: the writer adds offset indexes, and the reader reads row ranges of `chunkRows` instead of groups.
  parquetWriteFile({
    filename: pagedParquetFile(),
    columnData: fixture.columns.map((name, c) => ({ name, data: fixture.rows.map((row) => row[c] as number), type: "DOUBLE" as const })),
    rowGroupSize: 100,
    pageSize: 256,
  });
});

afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("openRowSource: formats", () => {
  it("reads the breast-cancer CSV in chunks of 40 exactly as a plain full read", async () => {
    expect(fixture.rows).toHaveLength(143);
    const source = await openRowSource(FIXTURE, { chunkRows: 40 });
    expect(source.format).toBe("csv");
    expect(await source.columns()).toEqual(fixture.columns);
    const chunks: SourceChunk[] = [];
    for await (const chunk of source) chunks.push(chunk);
    expect(chunks.map((c) => c.rows.length)).toEqual([40, 40, 40, 23]);
    expect(chunks.map((c) => c.firstRow)).toEqual([0, 40, 80, 120]);
    for (const chunk of chunks) {
      expect(chunk.columns).toEqual(fixture.columns);
      expect(chunk.problems).toEqual([]);
      expect(chunk.rowNumbers).toEqual(chunk.rows.map((_, i) => chunk.firstRow + i));
    }
    expect(chunks.flatMap((c) => c.rows)).toEqual(fixture.rows);
    expect(source.bytesRead()).toBe(source.size);
    expect(source.size).toBe(fs.statSync(FIXTURE).size);
  });

  it("reads the same data as JSON Lines and as Parquet identically", async () => {
    for (const file of [jsonlFile(), parquetFile(), pagedParquetFile()]) {
      const source = await openRowSource(file, { chunkRows: 40 });
      expect(await source.columns()).toEqual(fixture.columns);
      const chunks: SourceChunk[] = [];
      for await (const chunk of source) chunks.push(chunk);
      expect(chunks.map((c) => c.rows.length)).toEqual([40, 40, 40, 23]);
      expect(chunks.flatMap((c) => c.rowNumbers)).toEqual(fixture.rows.map((_, i) => i));
      expect(chunks.every((c) => c.columns.join() === fixture.columns.join())).toBe(true);
      expect(chunks.flatMap((c) => c.rows)).toEqual(fixture.rows);
      expect(source.bytesRead()).toBeGreaterThan(0);
      expect(source.bytesRead()).toBeLessThanOrEqual(source.size);
    }
    expect((await openRowSource(parquetFile())).format).toBe("parquet");
    expect((await openRowSource(jsonlFile())).format).toBe("jsonl");
  });

  it("types CSV cells (empty -> null, finite decimals -> numbers, the rest text) through BOM, CRLF and quotes", async () => {
    const file = path.join(dir, "typed.csv");
    fs.writeFileSync(
      file,
      "\uFEFFid,x,name,note\r\n007,1.5,\"Smith, J\",\"two\r\nlines\"\r\n008,,plain, \r\n009,-2e3,nan,0x1F\r\n",
    );
    const { rows } = await readAll(file, { idColumn: "id" });
    expect(rows).toEqual([
      ["007", 1.5, "Smith, J", "two\r\nlines"],
      ["008", null, "plain", null],
      ["009", -2000, "nan", "0x1F"],
    ]);
    expect([csvCell("1e400"), csvCell(" 12 "), csvCell("+.5"), csvCell("inf"), csvCell("")]).toEqual(["1e400", 12, 0.5, "inf", null]);
  });

  it("reports CSV rows with the wrong number of cells as problems naming the line, and keeps reading", async () => {
    const file = path.join(dir, "ragged.csv");
    fs.writeFileSync(file, "id,a,b\nr0,1,2\nr1,1\nr2,1,2,3\nr3,4,5\n");
    const { chunks, rows, rowNumbers } = await readAll(file, { idColumn: "id" });
    expect(rows).toEqual([["r0", 1, 2], ["r3", 4, 5]]);
    expect(rowNumbers).toEqual([0, 3]);
    expect(chunks.flatMap((c) => c.problems)).toEqual([
      { rowNumber: 1, line: 3, rowId: "r1", reason: "line 3: the row has 2 cells, the header 3" },
      { rowNumber: 2, line: 4, rowId: "r2", reason: "line 4: the row has 4 cells, the header 3" },
    ]);
  });

  it("grows JSON Lines columns in order of first appearance and keeps nested values as JSON text", async () => {
    const file = path.join(dir, "growing.jsonl");
    fs.writeFileSync(file, '{"id":1,"a":2}\r\n\n{"a":3,"b":"x","id":2}\n{"id":3,"c":{"k":[1,2]},"d":null,"e":true}\n');
    const source = await openRowSource(file, { chunkRows: 1 });
    expect(await source.columns()).toEqual(["id", "a"]);
    const chunks: SourceChunk[] = [];
    for await (const chunk of source) chunks.push(chunk);
    expect(chunks.map((c) => [c.columns, c.rows, c.firstRow])).toEqual([
      [["id", "a"], [[1, 2]], 0],
      [["id", "a", "b"], [[2, 3, "x"]], 1],
      [["id", "a", "b", "c", "d", "e"], [[3, null, null, '{"k":[1,2]}', null, true]], 2],
    ]);
    expect(await source.columns()).toEqual(["id", "a", "b", "c", "d", "e"]);
    // Rows of one chunk are aligned to that chunk's (final) columns.
    const whole = await readAll(file);
    expect(whole.chunks[0]?.rows).toEqual([[1, 2, null, null, null, null], [2, 3, "x", null, null, null], [3, null, null, '{"k":[1,2]}', null, true]]);
  });

  it("reads Parquet INT64 as numbers when safe (else text), timestamps as ISO text", async () => {
    const file = path.join(dir, "types.parquet");
    parquetWriteFile({
      filename: file,
      columnData: [
        { name: "id", data: [1n, 9007199254740993n, null], type: "INT64" },
        { name: "at", data: [new Date("2026-01-02T03:04:05.000Z"), null, new Date(0)], type: "TIMESTAMP" },
        { name: "name", data: ["a", "b", null], type: "STRING" },
      ],
    });
    const { rows } = await readAll(file);
    expect(rows).toEqual([
      [1, "2026-01-02T03:04:05.000Z", "a"],
      ["9007199254740993", null, "b"],
      [null, "1970-01-01T00:00:00.000Z", null],
    ]);
  });
});

describe("openRowSource: sharding and fingerprint", () => {
  it("splits rows into disjoint shards whose union is every row, for CSV, JSON Lines and Parquet", async () => {
    const n = 2000;
    const ids = Array.from({ length: n }, (_, i) => `item-${i}`);
    const csv = path.join(dir, "ids.csv");
    fs.writeFileSync(csv, "id,v\n" + ids.map((id, i) => `${id},${i}`).join("\n") + "\n");
    const jsonl = path.join(dir, "ids.jsonl");
    fs.writeFileSync(jsonl, ids.map((id, i) => JSON.stringify({ id, v: i })).join("\n") + "\n");
    const parquet = path.join(dir, "ids.parquet");
    parquetWriteFile({
      filename: parquet,
      columnData: [{ name: "id", data: ids, type: "STRING" }, { name: "v", data: ids.map((_, i) => i), type: "DOUBLE" }],
      rowGroupSize: 700,
    });
    for (const file of [csv, jsonl, parquet]) {
      const seen: number[] = [];
      const sizes: number[] = [];
      for (let index = 0; index < 3; index++) {
        const { rows, rowNumbers, chunks } = await readAll(file, { idColumn: "id", shard: { index, count: 3 }, chunkRows: 250 });
        for (const row of rows) expect(shardOf(row[0] as string, 3)).toBe(index);
        // The row number is the input position, before sharding.
        expect(rows.map((row) => row[1])).toEqual(rowNumbers);
        expect(chunks.every((c) => c.rows.length <= 250 && c.firstRow === c.rowNumbers[0])).toBe(true);
        sizes.push(rows.length);
        seen.push(...rowNumbers);
      }
      expect(seen.length).toBe(n);
      expect(new Set(seen).size).toBe(n);
      // FNV-1a spreads these ids evenly enough: no shard is empty or holds most rows.
      for (const size of sizes) expect(size).toBeGreaterThan(n / 5);
    }
    expect(shardOf("item-1", 1)).toBe(0);
    expect(shardOf("", 7)).toBe(0x811c9dc5 % 7);
  });

  it("fingerprints the file's bytes like sha256sum, before and after reading", async () => {
    for (const file of [FIXTURE, jsonlFile(), parquetFile(), pagedParquetFile()]) {
      const expected = sha256sum(file);
      const before = await openRowSource(file);
      expect(await before.fingerprint()).toBe(expected);
      const after = await openRowSource(file, { chunkRows: 7 });
      for await (const chunk of after) expect(chunk.rows.length).toBeGreaterThan(0);
      expect(await after.fingerprint()).toBe(expected);
    }
  });
});

describe("openRowSource: bad input", () => {
  it("names the path for a missing file, a folder or an unknown extension (field input)", async () => {
    const missing = await failure(openRowSource(path.join(dir, "nope.csv")));
    expect([missing.code, missing.field]).toEqual(["MLSHIP_ERR_INPUT_INVALID", "input"]);
    expect(missing.message).toContain("nope.csv: no such input file");
    const folder = await failure(openRowSource(dir));
    expect([folder.code, folder.field]).toEqual(["MLSHIP_ERR_INPUT_INVALID", "input"]);
    const unknown = path.join(dir, "data.xlsx");
    fs.writeFileSync(unknown, "x");
    const format = await failure(openRowSource(unknown));
    expect([format.code, format.field]).toEqual(["MLSHIP_ERR_INPUT_INVALID", "input"]);
    expect(format.message).toContain("data.xlsx: unknown input format \".xlsx\"");
  });

  it("rejects a missing id column, sharding without one and bad shard or chunk options", async () => {
    const noId = await failure(openRowSource(FIXTURE, { idColumn: "id" }));
    expect([noId.code, noId.field]).toEqual(["MLSHIP_ERR_INPUT_INVALID", "idColumn"]);
    expect(noId.message).toContain('no id column "id"');
    for (const file of [jsonlFile(), parquetFile()]) {
      expect((await failure(openRowSource(file, { idColumn: "id", shard: { index: 0, count: 2 } }))).field).toBe("idColumn");
    }
    expect((await failure(openRowSource(FIXTURE, { shard: { index: 0, count: 2 } }))).field).toBe("idColumn");
    expect((await failure(openRowSource(FIXTURE, { idColumn: "label", shard: { index: 2, count: 2 } }))).field).toBe("shard");
    expect((await failure(openRowSource(FIXTURE, { chunkRows: 0 }))).field).toBe("chunkRows");
  });

  it("fails on a JSON Lines line that is not an object, naming the line", async () => {
    const file = path.join(dir, "bad.jsonl");
    fs.writeFileSync(file, '{"a":1}\n{"a":2}\n[1,2]\n');
    const source = await openRowSource(file);
    const error = await failure((async () => { for await (const chunk of source) void chunk; })());
    expect([error.code, error.field]).toEqual(["MLSHIP_ERR_INPUT_INVALID", "input"]);
    expect(error.message).toContain("line 3 is not a JSON object");
    fs.writeFileSync(file, '{"a":1}\n{"a":\n');
    const broken = await failure((async () => { for await (const chunk of await openRowSource(file)) void chunk; })());
    expect(broken.message).toContain("line 2 is not valid JSON");
  });

  it("fails on unclosed CSV quotes, duplicate header names, an empty CSV and a file that is not Parquet", async () => {
    const quote = path.join(dir, "quote.csv");
    fs.writeFileSync(quote, 'a,b\n1,2\n3,"4\n');
    const error = await failure((async () => { for await (const chunk of await openRowSource(quote)) void chunk; })());
    expect([error.code, error.field]).toEqual(["MLSHIP_ERR_INPUT_INVALID", "input"]);
    expect(error.message).toMatch(/quote\.csv: not valid CSV \(line 3\)/);
    const duplicate = path.join(dir, "duplicate.csv");
    fs.writeFileSync(duplicate, "a,b,a\n1,2,3\n");
    expect((await failure(openRowSource(duplicate))).message).toContain('names column "a" twice');
    const empty = path.join(dir, "empty.csv");
    fs.writeFileSync(empty, "");
    expect((await failure(openRowSource(empty))).message).toContain("no header row");
    const notParquet = path.join(dir, "fake.parquet");
    fs.writeFileSync(notParquet, "a,b\n1,2\n");
    const parquet = await failure(openRowSource(notParquet));
    expect([parquet.code, parquet.field]).toEqual(["MLSHIP_ERR_INPUT_INVALID", "input"]);
    expect(parquet.message).toContain("not a readable Parquet file");
  });
});

describe("openRowSource: bounded memory", () => {
  it("reads a 300k-row x 31-column CSV with heap growth well below the file size", async () => {
    const file = path.join(dir, "large.csv");
    const rowsWanted = 300_000;
    await new Promise<void>((resolve, reject) => {
      const out = fs.createWriteStream(file);
      out.on("error", reject);
      out.write(["id", ...fixture.columns.slice(0, 30)].join(",") + "\n");
      let i = 0;
      const writeMore = (): void => {
        let ok = true;
        while (i < rowsWanted && ok) {
          const base = fixture.rows[i % fixture.rows.length] as number[];
          ok = out.write(`id-${i},` + base.slice(0, 30).map((v, c) => (v + (i % 97) * 1e-3 * (c + 1)).toFixed(5)).join(",") + "\n");
          i += 1;
        }
        if (i < rowsWanted) out.once("drain", writeMore);
        else out.end(resolve);
      };
      writeMore();
    });
    const size = fs.statSync(file).size;
    // Without a collection, heapUsed also counts dead chunks not yet swept (V8 sweeps old space lazily), so it says
    // little about what the reader keeps. Collect before each sample to measure what stays reachable.
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc") as () => void;
    gc();
    const start = process.memoryUsage().heapUsed;
    let peak = start;
    let rows = 0;
    let chunks = 0;
    const retained: number[] = [];
    const source = await openRowSource(file, { idColumn: "id" });
    for await (const chunk of source) {
      rows += chunk.rows.length;
      chunks += 1;
      expect(chunk.rows[0]?.length).toBe(31);
      gc();
      const used = process.memoryUsage().heapUsed;
      retained.push(used - start);
      peak = Math.max(peak, used);
    }
    const growth = peak - start;
    const early = Math.max(...retained.slice(0, 10));
    const late = Math.max(...retained.slice(-10));
    console.log(`[readers] ${(size / 1e6).toFixed(1)} MB CSV, ${rows} rows in ${chunks} chunks: peak reachable heap growth ${
      (growth / 1e6).toFixed(1)} MB (${((100 * growth) / size).toFixed(1)}% of the file); chunks 1-10 ${(early / 1e6).toFixed(1)} MB, last 10 ${(late / 1e6).toFixed(1)} MB`);
    expect(rows).toBe(rowsWanted);
    expect(chunks).toBe(rowsWanted / 5000);
    expect(growth).toBeLessThan(size / 3);
    // Flat: the end of the file holds no more than the start (one chunk and the parser's buffers), within 4 MB.
    expect(late - early).toBeLessThan(4e6);
    expect(await source.fingerprint()).toBe(sha256sum(file));
  });
});
