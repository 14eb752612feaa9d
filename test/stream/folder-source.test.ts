import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parquetWriteFile } from "hyparquet-writer";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MlshipError, silentLogger } from "../../src/core/index.js";
import { createFolderSource, type FolderSourceOptions } from "../../src/stream/sources/folder.js";
import type { FolderSourceSpec, SourceBatch, StreamSource } from "../../src/stream/types.js";

const FIXTURE = path.resolve("../shared/fixtures/breast_cancer_mlp/prod.csv");

/** The fixture read independently of the reader under test: plain numeric CSV. */
const fixtureLines = fs.readFileSync(FIXTURE, "utf8").split("\n").filter((line) => line.trim() !== "");
const COLUMNS = (fixtureLines[0] as string).split(",");
const ROWS = fixtureLines.slice(1).map((line) => line.split(",").map(Number));

let root: string;
let input: string;
let checkpointDir: string;
const sources: StreamSource[] = [];

beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-folder-source-"));
  input = path.join(root, "incoming");
  checkpointDir = path.join(root, "checkpoint", "source");
  fs.mkdirSync(input);
});

afterEach(async () => {
  for (const source of sources.splice(0)) await source.close();
  fs.rmSync(root, { recursive: true, force: true });
});

async function openSource(spec: Partial<FolderSourceSpec> = {}, options: Partial<FolderSourceOptions> = {}): Promise<StreamSource> {
  const source = createFolderSource(
    { kind: "folder", path: input, maxFilesPerTrigger: 1, recursive: false, ...spec },
    { checkpointDir, logger: silentLogger(), pollMs: 50, ...options },
  );
  sources.push(source);
  await source.open();
  return source;
}

/** Writes a file the way writers should: under a dot name, then renamed into place; then sets its mtime (seconds). */
function place(name: string, content: string | Buffer, mtimeSeconds?: number): string {
  const file = path.join(input, name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const hidden = path.join(path.dirname(file), `.${path.basename(file)}.partial`);
  fs.writeFileSync(hidden, content);
  fs.renameSync(hidden, file);
  if (mtimeSeconds !== undefined) fs.utimesSync(file, mtimeSeconds, mtimeSeconds);
  return file;
}

/** A CSV of fixture rows `from` to `to` (exclusive), with an `id` column first (`r<row>`). */
function fixtureCsv(from: number, to: number): string {
  const header = ["id", ...COLUMNS].map((name) => (name.includes(",") ? `"${name}"` : name)).join(",");
  const lines = ROWS.slice(from, to).map((row, i) => [`r${from + i}`, ...row].join(","));
  return `${header}\n${lines.join("\n")}\n`;
}

function paths(batch: SourceBatch): string[] {
  return [...new Set(batch.records.map((record) => record.id.split("#")[0] as string))];
}

function processedLog(): Array<Record<string, unknown>> {
  return fs
    .readFileSync(path.join(checkpointDir, "processed.jsonl"), "utf8")
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe("folder source: formats", () => {
  it("reads a CSV file's rows as typed records with stable ids, origins and the file's mtime", async () => {
    const file = place("batch-1.csv", fixtureCsv(0, 25), 1_700_000_000);
    const source = await openSource();
    expect(source.kind).toBe("folder");
    expect(source.description).toBe(`folder ${input}`);
    expect(await source.lag()).toBe(1);

    const batch = await source.next({ waitMs: 0 });
    expect(batch.description).toBe("1 file (batch-1.csv)");
    expect(batch.undecodable).toEqual([]);
    expect(batch.records).toHaveLength(25);
    batch.records.forEach((record, i) => {
      expect(record.id).toBe(`batch-1.csv#${i}`);
      expect(record.origin).toBe(`batch-1.csv:${i + 2}`);
      expect(record.arrivedAt).toBe(1_700_000_000_000);
      expect(Object.keys(record.fields)).toEqual(["id", ...COLUMNS]);
      expect(record.fields.id).toBe(`r${i}`);
      COLUMNS.forEach((name, c) => expect(record.fields[name]).toBe(ROWS[i]?.[c]));
    });

    // Not committed: still waiting, but not handed out again by this process.
    expect(await source.lag()).toBe(1);
    const again = await source.next({ waitMs: 0 });
    expect(again.records).toEqual([]);
    expect(again.description).toBe("no new files");

    await batch.commit();
    await batch.commit(); // idempotent
    expect(await source.lag()).toBe(0);
    const log = processedLog();
    expect(log).toHaveLength(1);
    expect(log[0]).toMatchObject({ path: "batch-1.csv", size: fs.statSync(file).size, mtimeMs: 1_700_000_000_000 });
    expect(Number.isNaN(Date.parse(log[0]?.committedAt as string))).toBe(false);
  });

  it("reads JSON Lines with values as parsed; a bad line is one dead letter and blank lines are skipped", async () => {
    const lines = [
      JSON.stringify({ id: "a", x: 1.5, tags: ["p", "q"], nested: { k: true } }),
      "",
      JSON.stringify({ id: "b", x: null }),
      "{not json",
      "[1, 2]",
      JSON.stringify({ id: "c", y: "text" }),
    ];
    place("events.ndjson", `${lines.join("\n")}\n`);
    const source = await openSource();
    const batch = await source.next({ waitMs: 0 });
    expect(batch.records).toEqual([
      { id: "events.ndjson#0", fields: { id: "a", x: 1.5, tags: ["p", "q"], nested: { k: true } }, origin: "events.ndjson:1", arrivedAt: expect.any(Number) },
      { id: "events.ndjson#1", fields: { id: "b", x: null }, origin: "events.ndjson:3", arrivedAt: expect.any(Number) },
      { id: "events.ndjson#4", fields: { id: "c", y: "text" }, origin: "events.ndjson:6", arrivedAt: expect.any(Number) },
    ]);
    expect(batch.undecodable).toHaveLength(2);
    expect(batch.undecodable[0]).toMatchObject({ id: "events.ndjson#2", origin: "events.ndjson:4", stage: "decode", field: null, raw: "{not json" });
    expect(batch.undecodable[0]?.reason).toContain("line 4 is not valid JSON");
    expect(batch.undecodable[1]).toMatchObject({ id: "events.ndjson#3", origin: "events.ndjson:5", raw: "[1, 2]", reason: "line 5 is not a JSON object" });
  });

  it("reads a Parquet file's rows", async () => {
    const rows = ROWS.slice(0, 40);
    parquetWriteFile({
      filename: path.join(input, "part-0.parquet"),
      columnData: [
        { name: "id", data: rows.map((_, i) => `p${i}`), type: "STRING" },
        { name: "seq", data: rows.map((_, i) => BigInt(i) * 1000n), type: "INT64" },
        ...COLUMNS.slice(0, 3).map((name, c) => ({ name, data: rows.map((row) => row[c] as number), type: "DOUBLE" as const })),
      ],
      rowGroupSize: 15,
    });
    const source = await openSource({}, { chunkRows: 7 });
    const batch = await source.next({ waitMs: 0 });
    expect(batch.undecodable).toEqual([]);
    expect(batch.records).toHaveLength(40);
    batch.records.forEach((record, i) => {
      expect(record.id).toBe(`part-0.parquet#${i}`);
      expect(record.origin).toBe(`part-0.parquet row ${i}`);
      expect(record.fields).toEqual({
        id: `p${i}`,
        seq: i * 1000,
        ...Object.fromEntries(COLUMNS.slice(0, 3).map((name, c) => [name, rows[i]?.[c]])),
      });
    });
  });

  it("turns a CSV row with the wrong number of cells into a dead letter holding its line", async () => {
    const good = fixtureCsv(0, 5).split("\n");
    const badLine = `r-bad,${(ROWS[9] as number[]).slice(0, 4).join(",")}`;
    good.splice(3, 0, badLine); // becomes data row 2, line 4
    place("mixed.csv", good.join("\n"));
    const source = await openSource();
    const batch = await source.next({ waitMs: 0 });
    expect(batch.records.map((record) => record.id)).toEqual(["mixed.csv#0", "mixed.csv#1", "mixed.csv#3", "mixed.csv#4", "mixed.csv#5"]);
    expect(batch.records.map((record) => record.fields.id)).toEqual(["r0", "r1", "r2", "r3", "r4"]);
    expect(batch.undecodable).toHaveLength(1);
    expect(batch.undecodable[0]).toMatchObject({ id: "mixed.csv#2", origin: "mixed.csv:4", stage: "decode", field: null, raw: badLine });
    expect(batch.undecodable[0]?.reason).toBe(`line 4: the row has 5 cells, the header ${COLUMNS.length + 1}`);
  });

  it("turns a corrupt Parquet file into one dead letter, and still marks it processed on commit", async () => {
    place("broken.parquet", Buffer.concat([Buffer.from("PAR1"), Buffer.alloc(200, 7), Buffer.from("PAR1")]), 1_700_000_000);
    place("after.csv", fixtureCsv(0, 2), 1_700_000_100);
    const source = await openSource();
    const batch = await source.next({ waitMs: 0 });
    expect(batch.records).toEqual([]);
    expect(batch.undecodable).toHaveLength(1);
    expect(batch.undecodable[0]).toMatchObject({ id: "broken.parquet", origin: "broken.parquet", stage: "decode", field: null });
    expect(batch.undecodable[0]?.reason).toContain("not a readable Parquet file");
    expect(JSON.parse(batch.undecodable[0]?.raw as string)).toMatchObject({ file: "broken.parquet", size: 208 });
    await batch.commit();
    // The stream keeps going with the next file.
    const next = await source.next({ waitMs: 0 });
    expect(paths(next)).toEqual(["after.csv"]);
    expect(processedLog().map((entry) => entry.path)).toEqual(["broken.parquet"]);
  });

  it("reads only the configured format's files when format is set", async () => {
    place("a.csv", fixtureCsv(0, 1), 1_700_000_000);
    place("b.jsonl", `${JSON.stringify({ id: "x" })}\n`, 1_700_000_001);
    const source = await openSource({ format: "jsonl", maxFilesPerTrigger: 10 });
    expect(await source.lag()).toBe(1);
    const batch = await source.next({ waitMs: 0 });
    expect(paths(batch)).toEqual(["b.jsonl"]);
  });
});

describe("folder source: files and order", () => {
  it("hands out maxFilesPerTrigger files at a time, oldest mtime first, then by path", async () => {
    place("c.csv", fixtureCsv(0, 1), 1_700_000_000);
    place("b.csv", fixtureCsv(1, 2), 1_700_000_500);
    place("a.csv", fixtureCsv(2, 3), 1_700_000_500);
    place("d.csv", fixtureCsv(3, 4), 1_700_000_900);
    place("e.jsonl", `${JSON.stringify({ id: "e" })}\n`, 1_700_000_100);
    const source = await openSource({ maxFilesPerTrigger: 2 });
    expect(await source.lag()).toBe(5);

    const first = await source.next({ waitMs: 0 });
    expect(paths(first)).toEqual(["c.csv", "e.jsonl"]);
    expect(first.description).toBe("2 files (c.csv, e.jsonl)");
    // The next batch does not wait for the first to be committed, and never repeats its files.
    const second = await source.next({ waitMs: 0 });
    expect(paths(second)).toEqual(["a.csv", "b.csv"]);
    await second.commit();
    await first.commit();
    const third = await source.next({ waitMs: 0 });
    expect(paths(third)).toEqual(["d.csv"]);
    await third.commit();
    expect(await source.lag()).toBe(0);
    expect(processedLog().map((entry) => entry.path)).toEqual(["a.csv", "b.csv", "c.csv", "e.jsonl", "d.csv"]);
  });

  it("ignores dot and underscore files and folders, other extensions, and sub-folders unless recursive", async () => {
    place(".hidden.csv", fixtureCsv(0, 1));
    place("_SUCCESS.csv", fixtureCsv(0, 1));
    place("notes.txt", "id\n1\n");
    place("_temporary/x.csv", fixtureCsv(0, 1));
    place(".staging/y.csv", fixtureCsv(0, 1));
    place("day=1/part.csv", fixtureCsv(0, 3), 1_700_000_000);
    place("top.csv", fixtureCsv(0, 2), 1_700_000_100);

    const flat = await openSource({ maxFilesPerTrigger: 10 });
    const flatBatch = await flat.next({ waitMs: 0 });
    expect(paths(flatBatch)).toEqual(["top.csv"]);
    await flat.close();

    const deep = await openSource({ maxFilesPerTrigger: 10, recursive: true });
    const deepBatch = await deep.next({ waitMs: 0 });
    expect(paths(deepBatch)).toEqual(["day=1/part.csv", "top.csv"]);
    expect(deepBatch.records[0]?.id).toBe("day=1/part.csv#0");
    expect(deepBatch.records[0]?.origin).toBe("day=1/part.csv:2");
  });

  it("after a restart re-reads an uncommitted batch with the same ids, and never a committed file", async () => {
    place("one.csv", fixtureCsv(0, 3), 1_700_000_000);
    place("two.jsonl", `${JSON.stringify({ id: "t0" })}\n${JSON.stringify({ id: "t1" })}\n`, 1_700_000_100);
    const first = await openSource();
    const committed = await first.next({ waitMs: 0 });
    await committed.commit();
    const uncommitted = await first.next({ waitMs: 0 });
    expect(paths(uncommitted)).toEqual(["two.jsonl"]);
    await first.close(); // a crash before commit

    const second = await openSource();
    expect(await second.lag()).toBe(1);
    const replay = await second.next({ waitMs: 0 });
    expect(replay.records).toEqual(uncommitted.records);
    await replay.commit();
    expect((await second.next({ waitMs: 0 })).records).toEqual([]);
    await second.close();

    // A crash in the middle of an append leaves a torn last line: ignored (its file is read again), and cut off so
    // later appends start on a line of their own.
    place("three.csv", fixtureCsv(5, 6), 1_700_000_200);
    fs.appendFileSync(path.join(checkpointDir, "processed.jsonl"), '{"path":"three.cs');
    const third = await openSource();
    expect(await third.lag()).toBe(1);
    const batch = await third.next({ waitMs: 0 });
    expect(paths(batch)).toEqual(["three.csv"]);
    await batch.commit();
    expect(processedLog().map((entry) => entry.path)).toEqual(["one.csv", "two.jsonl", "three.csv"]);
  });

  it("fails to open when the folder does not exist", async () => {
    fs.rmSync(input, { recursive: true });
    const source = createFolderSource(
      { kind: "folder", path: input, maxFilesPerTrigger: 1, recursive: false },
      { checkpointDir, logger: silentLogger() },
    );
    const error = await source.open().then(
      () => null,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(MlshipError);
    expect(error).toMatchObject({ code: "MLSHIP_ERR_STREAM_UNAVAILABLE", field: "source.path" });
    expect((error as Error).message).toBe(`folder source ${input} does not exist`);
  });
});

describe("folder source: waiting", () => {
  it("waits for a file that appears during next()", async () => {
    const source = await openSource();
    const started = Date.now();
    const waiting = source.next({ waitMs: 10_000 });
    setTimeout(() => place("late.csv", fixtureCsv(0, 4)), 300);
    const batch = await waiting;
    const waited = Date.now() - started;
    expect(paths(batch)).toEqual(["late.csv"]);
    expect(batch.records).toHaveLength(4);
    expect(waited).toBeGreaterThanOrEqual(250);
    expect(waited).toBeLessThan(3000);
  });

  it("returns an empty batch once waitMs passes with nothing new", async () => {
    const source = await openSource();
    const started = Date.now();
    const batch = await source.next({ waitMs: 300 });
    expect(batch.records).toEqual([]);
    expect(batch.undecodable).toEqual([]);
    await batch.commit();
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(fs.readFileSync(path.join(checkpointDir, "processed.jsonl"), "utf8")).toBe("");
  });

  it("stops waiting when the signal aborts or the source closes", async () => {
    const source = await openSource();
    const controller = new AbortController();
    const started = Date.now();
    const waiting = source.next({ waitMs: 30_000, signal: controller.signal });
    setTimeout(() => controller.abort(), 150);
    expect((await waiting).records).toEqual([]);
    expect(Date.now() - started).toBeLessThan(2000);

    const closing = source.next({ waitMs: 30_000 });
    setTimeout(() => void source.close(), 150);
    expect((await closing).records).toEqual([]);
    expect(Date.now() - started).toBeLessThan(4000);
  });
});
