// Stream sinks into folders of JSON Lines and Parquet files: one file per micro-batch, named by batch and ids,
// exactly once on the row id across repeated writes and restarts (the `_ledger.sqlite` ledger), and recovery of what a
// crash left half-written. Files are read back as a downstream reader would: JSON.parse per line, hyparquet.
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import BetterSqlite3 from "better-sqlite3";
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from "hyparquet";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MlshipError, silentLogger } from "../../src/core/index.js";
import { createFolderSink, LEDGER_FILE, partFileName } from "../../src/stream/sinks/files.js";
import type { OutputRow, StreamSink } from "../../src/stream/types.js";

const logger = silentLogger();

let root: string;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-stream-files-"));
});
afterEach(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

function rows(from: number, to: number, seed = 0): OutputRow[] {
  const out: OutputRow[] = [];
  for (let n = from; n < to; n += 1) {
    const benign = ((n * 7919 + seed * 104729) % 1000) / 1000;
    out.push({
      id: `orders:${n}`,
      fields: { "mean radius": 10 + n + 0.5, label: benign >= 0.5 ? "benign" : "malignant", probabilities: [1 - benign, benign], seed },
    });
  }
  return out;
}

/** The name the sink must give a file: batch id on 8 digits, 12 hex of sha256 over the sorted ids. */
function expectedName(batchId: number, ids: string[], ext: "jsonl" | "parquet"): string {
  const digest = createHash("sha256")
    .update(
      [...ids]
        .sort()
        .map((id) => `${id}\n`)
        .join(""),
    )
    .digest("hex");
  return `part-${String(batchId).padStart(8, "0")}-${digest.slice(0, 12)}.${ext}`;
}

/** Data files a folder reader would see (no dot or underscore prefix), sorted. */
function visibleFiles(folder: string): string[] {
  return fs
    .readdirSync(folder)
    .filter((name) => !name.startsWith(".") && !name.startsWith("_"))
    .sort();
}

function readJsonLines(file: string): Record<string, unknown>[] {
  const text = fs.readFileSync(file, "utf8");
  expect(text.endsWith("\n")).toBe(true);
  return text
    .trimEnd()
    .split("\n")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

function allJsonRows(folder: string): Record<string, unknown>[] {
  return visibleFiles(folder).flatMap((name) => readJsonLines(path.join(folder, name)));
}

async function openSink(kind: "jsonl" | "parquet", folder: string): Promise<StreamSink> {
  const sink = createFolderSink({ kind, path: folder }, { logger });
  await sink.open();
  return sink;
}

async function caught(promise: Promise<unknown>): Promise<MlshipError> {
  const error = await promise.then(
    () => undefined,
    (failure: unknown) => failure,
  );
  expect(error).toBeInstanceOf(MlshipError);
  return error as MlshipError;
}

describe("jsonl folder sink", () => {
  it("writes one file per write, named by batch and ids, one JSON object per line with _id first", async () => {
    const folder = path.join(root, "out", "predictions");
    const sink = await openSink("jsonl", folder);
    expect(sink.kind).toBe("jsonl");
    expect(sink.description).toBe(`jsonl folder ${folder}`);
    await sink.write([], { stream: "s", batchId: 0 });
    expect(visibleFiles(folder)).toEqual([]);

    const batch = rows(0, 3);
    await sink.write(batch, { stream: "s", batchId: 42 });
    const name = expectedName(42, ["orders:0", "orders:1", "orders:2"], "jsonl");
    expect(name).toBe(partFileName(42, ["orders:2", "orders:0", "orders:1"], "jsonl"));
    expect(visibleFiles(folder)).toEqual([name]);
    expect(fs.readdirSync(folder).filter((entry) => entry.startsWith(".tmp-"))).toEqual([]);
    const lines = readJsonLines(path.join(folder, name));
    expect(lines).toEqual(batch.map((row) => ({ _id: row.id, ...row.fields })));
    expect(Object.keys(lines[0]!)[0]).toBe("_id");

    await sink.write(rows(3, 5), { stream: "s", batchId: 43 });
    await sink.close();
    expect(visibleFiles(folder)).toEqual([name, expectedName(43, ["orders:3", "orders:4"], "jsonl")]);
    expect(allJsonRows(folder).map((row) => row._id)).toEqual(["orders:0", "orders:1", "orders:2", "orders:3", "orders:4"]);
  });

  it("writes each id once: a repeated write adds nothing, an overlapping one only its new ids, across restarts", async () => {
    const folder = path.join(root, "once");
    const sink = await openSink("jsonl", folder);
    await sink.write(rows(0, 100, 1), { stream: "s", batchId: 0 });
    // The same batch replayed (after a crash the source redelivers it), then with another batch number.
    await sink.write(rows(0, 100, 1), { stream: "s", batchId: 0 });
    await sink.write(rows(0, 100, 2), { stream: "s", batchId: 1 });
    expect(visibleFiles(folder)).toHaveLength(1);

    // Partly overlapping: only 100..149 are new; an id twice in one write keeps the last row.
    const overlapping = rows(50, 150, 3);
    overlapping.push({ id: "orders:149", fields: { label: "last" } });
    await sink.write(overlapping, { stream: "s", batchId: 2 });
    await sink.close();

    const files = visibleFiles(folder);
    expect(files).toHaveLength(2);
    const second = readJsonLines(path.join(folder, files[1]!));
    expect(files[1]).toBe(expectedName(2, rows(100, 150).map((row) => row.id), "jsonl"));
    expect(second).toHaveLength(50);
    expect(second[0]).toEqual({ _id: "orders:100", ...rows(100, 101, 3)[0]!.fields });
    expect(second.find((row) => row._id === "orders:149")).toEqual({ _id: "orders:149", label: "last" });

    // A new sink on the same folder (a restarted process) still knows every id.
    const restarted = await openSink("jsonl", folder);
    await restarted.write(rows(0, 150, 4), { stream: "s", batchId: 3 });
    await restarted.write(rows(140, 160, 4), { stream: "s", batchId: 4 });
    await restarted.close();
    const all = allJsonRows(folder);
    expect(all).toHaveLength(160);
    expect(new Set(all.map((row) => row._id)).size).toBe(160);
    expect(all.filter((row) => row.seed === 4).map((row) => row._id)).toEqual(rows(150, 160).map((row) => row.id));
  });

  it("normalizes values (bigint, Date, undefined) and refuses a field named _id", async () => {
    const folder = path.join(root, "values");
    const sink = await openSink("jsonl", folder);
    await sink.write([{ id: "a", fields: { big: 7n, when: new Date(Date.UTC(2026, 0, 2)), gone: undefined, nested: { n: [1n] } } }], {
      stream: "s",
      batchId: 0,
    });
    expect(allJsonRows(folder)).toEqual([{ _id: "a", big: 7, when: "2026-01-02T00:00:00.000Z", gone: null, nested: { n: [1] } }]);
    const error = await caught(sink.write([{ id: "b", fields: { _id: "x" } }], { stream: "s", batchId: 1 }));
    expect(error.code).toBe("MLSHIP_ERR_INPUT_INVALID");
    expect(error.field).toBe("_id");
    await sink.close();
    const closed = await caught(sink.write(rows(0, 1), { stream: "s", batchId: 2 }));
    expect(closed.code).toBe("MLSHIP_ERR_INPUT_INVALID");
  });

  it("reports a folder that cannot be created as MLSHIP_ERR_STREAM_UNAVAILABLE", async () => {
    const blocker = path.join(root, "a-file");
    fs.writeFileSync(blocker, "not a folder");
    const sink = createFolderSink({ kind: "jsonl", path: path.join(blocker, "out") }, { logger });
    const error = await caught(sink.open());
    expect(error.code).toBe("MLSHIP_ERR_STREAM_UNAVAILABLE");
    expect(error.message).toContain(path.join(blocker, "out"));
    const notOpen = await caught(sink.write(rows(0, 1), { stream: "s", batchId: 0 }));
    expect(notOpen.code).toBe("MLSHIP_ERR_INPUT_INVALID");
  });
});

describe("crash recovery", () => {
  /** A folder as a crashed process leaves it: the ledger written by hand, files placed by hand. */
  async function crashedFolder(): Promise<{ folder: string; ledger: BetterSqlite3.Database }> {
    const folder = path.join(root, "crashed");
    // A sink that opened and wrote once creates the ledger's tables.
    const sink = await openSink("jsonl", folder);
    await sink.write(rows(0, 2), { stream: "s", batchId: 0 });
    await sink.close();
    return { folder, ledger: new BetterSqlite3(path.join(folder, LEDGER_FILE)) };
  }

  function recordPending(ledger: BetterSqlite3.Database, name: string, ids: string[]): void {
    ledger.transaction(() => {
      ledger.prepare("insert into files (name, state) values (?, 'pending')").run(name);
      for (const id of ids) ledger.prepare("insert into ids (_id, file) values (?, ?)").run(id, name);
    })();
  }

  function lines(batch: OutputRow[]): string {
    return batch.map((row) => JSON.stringify({ _id: row.id, ...row.fields })).join("\n") + "\n";
  }

  it("open() renames a recorded temporary file, marks a renamed one done, and removes unknown temporary files", async () => {
    const { folder, ledger } = await crashedFolder();
    // Crash after the ledger transaction, before the rename.
    const recorded = rows(10, 15);
    const recordedName = expectedName(1, recorded.map((row) => row.id), "jsonl");
    fs.writeFileSync(path.join(folder, `.tmp-${recordedName}`), lines(recorded));
    recordPending(ledger, recordedName, recorded.map((row) => row.id));
    // Crash after the rename, before marking it done.
    const renamed = rows(20, 22);
    const renamedName = expectedName(2, renamed.map((row) => row.id), "jsonl");
    fs.writeFileSync(path.join(folder, renamedName), lines(renamed));
    recordPending(ledger, renamedName, renamed.map((row) => row.id));
    // Crash before the ledger transaction: the rows were never recorded.
    const stray = rows(30, 33);
    const strayName = expectedName(3, stray.map((row) => row.id), "jsonl");
    fs.writeFileSync(path.join(folder, `.tmp-${strayName}`), lines(stray));
    ledger.close();

    const sink = await openSink("jsonl", folder);
    expect(fs.readdirSync(folder).filter((entry) => entry.startsWith(".tmp-"))).toEqual([]);
    expect(visibleFiles(folder)).toContain(recordedName);
    const check = new BetterSqlite3(path.join(folder, LEDGER_FILE), { readonly: true });
    try {
      const states = check.prepare("select name, state from files order by name").all() as { name: string; state: string }[];
      expect(states.every((row) => row.state === "done")).toBe(true);
      expect(states.map((row) => row.name)).toEqual(expect.arrayContaining([recordedName, renamedName]));
    } finally {
      check.close();
    }

    // The source replays the batches it had not committed: recorded ids add nothing, the stray ones are written.
    await sink.write(recorded, { stream: "s", batchId: 1 });
    await sink.write(renamed, { stream: "s", batchId: 2 });
    await sink.write(stray, { stream: "s", batchId: 3 });
    await sink.close();
    const all = allJsonRows(folder);
    expect(all.map((row) => row._id).sort()).toEqual(
      [...rows(0, 2), ...recorded, ...renamed, ...stray].map((row) => row.id).sort(),
    );
    expect(visibleFiles(folder)).toContain(strayName);
  });

  it("forgets a pending file that exists under neither name, so its rows are written again", async () => {
    const { folder, ledger } = await crashedFolder();
    const lost = rows(40, 44);
    const lostName = expectedName(5, lost.map((row) => row.id), "jsonl");
    recordPending(ledger, lostName, lost.map((row) => row.id));
    ledger.close();

    const sink = await openSink("jsonl", folder);
    await sink.write(lost, { stream: "s", batchId: 5 });
    await sink.close();
    expect(visibleFiles(folder)).toContain(lostName);
    expect(readJsonLines(path.join(folder, lostName)).map((row) => row._id)).toEqual(lost.map((row) => row.id));
  });
});

describe("parquet folder sink", () => {
  it("writes typed columns with _id first, readable by hyparquet", async () => {
    const folder = path.join(root, "parquet");
    const sink = await openSink("parquet", folder);
    expect(sink.description).toBe(`parquet folder ${folder}`);
    const batch: OutputRow[] = [
      { id: "b", fields: { "mean radius": 12, label: "benign", probabilities: [0.25, 0.75], ok: true, note: null, mixed: 1 } },
      { id: "a", fields: { "mean radius": 13.5, label: "malignant", probabilities: [0.9, 0.1], ok: false, mixed: "x" } },
    ];
    await sink.write(batch, { stream: "s", batchId: 3 });
    await sink.close();

    const name = expectedName(3, ["a", "b"], "parquet");
    expect(visibleFiles(folder)).toEqual([name]);
    const file = await asyncBufferFromFile(path.join(folder, name));
    const metadata = await parquetMetadataAsync(file);
    const schema = Object.fromEntries(metadata.schema.slice(1).map((element) => [element.name, [element.type, element.converted_type]]));
    expect(metadata.schema.slice(1).map((element) => element.name)).toEqual(["_id", "mean radius", "label", "probabilities", "ok", "note", "mixed"]);
    expect(schema).toEqual({
      _id: ["BYTE_ARRAY", "UTF8"],
      "mean radius": ["DOUBLE", undefined],
      label: ["BYTE_ARRAY", "UTF8"],
      probabilities: ["BYTE_ARRAY", "JSON"],
      ok: ["BOOLEAN", undefined],
      note: ["BYTE_ARRAY", "UTF8"],
      mixed: ["BYTE_ARRAY", "UTF8"],
    });
    const read = await parquetReadObjects({ file });
    expect(read).toEqual([
      { _id: "b", "mean radius": 12, label: "benign", probabilities: [0.25, 0.75], ok: true, note: null, mixed: "1" },
      { _id: "a", "mean radius": 13.5, label: "malignant", probabilities: [0.9, 0.1], ok: false, note: null, mixed: "x" },
    ]);
  });

  it("writes each id once across writes and restarts, 10,000 rows in one file", async () => {
    const folder = path.join(root, "parquet-once");
    const sink = await openSink("parquet", folder);
    await sink.write(rows(0, 10_000), { stream: "s", batchId: 0 });
    await sink.write(rows(0, 10_000, 1), { stream: "s", batchId: 0 });
    await sink.close();
    const restarted = await openSink("parquet", folder);
    await restarted.write(rows(9_990, 10_010, 2), { stream: "s", batchId: 1 });
    await restarted.close();

    const files = visibleFiles(folder);
    expect(files).toEqual([
      expectedName(0, rows(0, 10_000).map((row) => row.id), "parquet"),
      expectedName(1, rows(10_000, 10_010).map((row) => row.id), "parquet"),
    ]);
    const first = await parquetReadObjects({ file: await asyncBufferFromFile(path.join(folder, files[0]!)) });
    expect(first).toHaveLength(10_000);
    expect(first[9_999]).toEqual({ _id: "orders:9999", ...rows(9_999, 10_000)[0]!.fields });
    const second = await parquetReadObjects({ file: await asyncBufferFromFile(path.join(folder, files[1]!)) });
    expect(second.map((row) => row._id)).toEqual(rows(10_000, 10_010).map((row) => row.id));
    expect(second.every((row) => row.seed === 2)).toBe(true);
  });
});
