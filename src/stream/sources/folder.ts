/**
 * The folder source (issue 7): new files in a folder are a stream, as in Spark's file source. Each micro-batch reads up
 * to `maxFilesPerTrigger` files whole, oldest first (mtime, then relative path), and `commit()` records them in
 * `<checkpointDir>/processed.jsonl`, so they are never read again; a batch that was not committed before a crash is
 * read again by the next process, giving the same record ids (`<relative path>#<0-based data row>`), which is what lets
 * idempotent sinks ignore the replay.
 *
 * The rules writers must follow (Spark's): a file is placed atomically and never rewritten. Write it under a name
 * starting with `.` or `_` (or in another folder on the same filesystem) and rename it into place; files and folders
 * whose names start with `.` or `_` are ignored, so a half-written file is never read. A file is known by its path
 * relative to the folder: once processed, a file rewritten or replaced under the same path is NOT read again.
 *
 * Formats: by extension (`.csv`; `.jsonl`/`.ndjson`; `.parquet`/`.pq`); with `format` set, only that format's
 * extensions. CSV and Parquet are read through batch's `openRowSource` (typed CSV cells, Parquet values); JSON Lines is
 * read here, line by line, so that one bad line becomes one dead letter rather than failing its file, and values stay
 * as parsed. A CSV row with the wrong number of cells or a bad JSON line is a dead letter (stage `decode`); a file that
 * cannot be read (a corrupt Parquet file, a CSV with an unclosed quote) gives one dead letter with the file's path as
 * id, keeps the rows read before the failure, and is still marked processed on commit, so the stream keeps running.
 *
 * Memory: a micro-batch's files are read whole into records; that is what a micro-batch is. Size `maxFilesPerTrigger`
 * with the files' size in mind.
 */
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import readline from "node:readline";
import { openRowSource, type BatchRowSource } from "../../batch/index.js";
import { MlshipError, type Logger } from "../../core/index.js";
import type { DeadLetter, FolderSourceSpec, RawRecord, SourceBatch, StreamSource } from "../types.js";

export interface FolderSourceOptions {
  /** A folder of the job's checkpoint that belongs to this source (it holds `processed.jsonl`). */
  checkpointDir: string;
  logger: Logger;
  /** Rows per read chunk (memory while reading; the whole file ends up in the batch either way). */
  chunkRows?: number;
  /** How often a waiting `next()` lists the folder again. Default 200 ms. */
  pollMs?: number;
}

type FileFormat = "csv" | "jsonl" | "parquet";

/** A file found in the folder and not yet processed. */
interface ListedFile {
  /** Relative to the folder, with `/` separators: the file's identity. */
  path: string;
  absolute: string;
  size: number;
  mtimeMs: number;
  format: FileFormat;
}

/** One line of `processed.jsonl`. */
interface ProcessedEntry {
  path: string;
  size: number;
  mtimeMs: number;
  committedAt: string;
}

const EXTENSIONS: Record<string, FileFormat> = {
  ".csv": "csv",
  ".jsonl": "jsonl",
  ".ndjson": "jsonl",
  ".parquet": "parquet",
  ".pq": "parquet",
};

const DEFAULT_POLL_MS = 200;
const MAX_RAW_BYTES = 64 * 1024;
/** File names listed in a batch's description; the rest are counted. */
const DESCRIBED_FILES = 5;

export function createFolderSource(spec: FolderSourceSpec, options: FolderSourceOptions): StreamSource {
  return new FolderSource(spec, options);
}

class FolderSource implements StreamSource {
  readonly kind = "folder" as const;
  readonly description: string;
  readonly #spec: FolderSourceSpec;
  readonly #root: string;
  readonly #logFile: string;
  readonly #logger: Logger;
  readonly #chunkRows: number | undefined;
  readonly #pollMs: number;
  readonly #processed = new Set<string>();
  /** Files handed out in a batch that is not committed yet: not handed out again by this process. */
  readonly #inFlight = new Set<string>();
  /** Wakes `next()` calls waiting for files, when the source closes. */
  readonly #wakers = new Set<() => void>();
  /** Commits append to the log one at a time. */
  #appending: Promise<void> = Promise.resolve();
  #opened = false;
  #closed = false;

  constructor(spec: FolderSourceSpec, options: FolderSourceOptions) {
    if (!Number.isSafeInteger(spec.maxFilesPerTrigger) || spec.maxFilesPerTrigger < 1) {
      throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `maxFilesPerTrigger must be a positive integer, got ${spec.maxFilesPerTrigger}`, {
        field: "source.maxFilesPerTrigger",
      });
    }
    this.#spec = spec;
    this.#root = path.resolve(spec.path);
    this.#logFile = path.join(options.checkpointDir, "processed.jsonl");
    this.#logger = options.logger;
    this.#chunkRows = options.chunkRows;
    this.#pollMs = options.pollMs ?? DEFAULT_POLL_MS;
    this.description = `folder ${this.#root}`;
  }

  async open(): Promise<void> {
    let stat: fs.Stats;
    try {
      stat = await fsp.stat(this.#root);
    } catch (error) {
      throw unavailable(this.#root, error);
    }
    if (!stat.isDirectory()) {
      throw new MlshipError("MLSHIP_ERR_STREAM_UNAVAILABLE", `folder source ${this.#root} is not a folder`, { field: "source.path" });
    }
    await checkpointFs(this.#logFile, async () => {
      await fsp.mkdir(path.dirname(this.#logFile), { recursive: true });
      await this.#loadLog();
    });
    this.#opened = true;
  }

  async next(options: { waitMs: number; signal?: AbortSignal }): Promise<SourceBatch> {
    if (!this.#opened) throw new MlshipError("MLSHIP_ERR_STREAM_UNAVAILABLE", `${this.description}: next() before open()`);
    const deadline = Date.now() + Math.max(0, options.waitMs);
    for (;;) {
      if (this.#closed || options.signal?.aborted === true) return emptyBatch();
      const ready = (await this.#list()).filter((file) => !this.#inFlight.has(file.path));
      if (ready.length > 0) return this.#read(ready.slice(0, this.#spec.maxFilesPerTrigger));
      const left = deadline - Date.now();
      if (left <= 0) return emptyBatch();
      await this.#sleep(Math.min(this.#pollMs, left), options.signal);
    }
  }

  async lag(): Promise<number | null> {
    if (!this.#opened || this.#closed) return null;
    try {
      return (await this.#list()).length;
    } catch (error) {
      this.#logger.warn({ err: error, source: this.description }, "folder source: cannot list the folder for its lag");
      return null;
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const wake of this.#wakers) wake();
    this.#wakers.clear();
    await this.#appending;
  }

  // ---- the processed-files log ----

  /** Loads `processed.jsonl`; a torn last line (a crash mid-append) is cut off so the next append starts clean. */
  async #loadLog(): Promise<void> {
    let bytes: Buffer;
    try {
      bytes = await fsp.readFile(this.#logFile);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      bytes = Buffer.alloc(0);
    }
    const complete = bytes.lastIndexOf(0x0a) + 1;
    if (complete < bytes.length) {
      this.#logger.warn(
        { file: this.#logFile, bytes: bytes.length - complete },
        "folder source: ignoring a torn last line of the processed-files log (its files are read again)",
      );
      await fsp.truncate(this.#logFile, complete);
    }
    for (const line of bytes.subarray(0, complete).toString("utf8").split("\n")) {
      if (line.trim() === "") continue;
      try {
        const entry = JSON.parse(line) as Partial<ProcessedEntry>;
        if (typeof entry.path === "string") this.#processed.add(entry.path);
      } catch {
        this.#logger.warn({ file: this.#logFile, line }, "folder source: skipping an unreadable line of the processed-files log");
      }
    }
    if (bytes.length === 0) {
      // Created up front (and the folder fsynced) so each commit only has to append and fsync the file.
      await (await fsp.open(this.#logFile, "a")).close();
      await syncFolder(path.dirname(this.#logFile));
    }
  }

  /** Appends the files to the log, fsyncs it, then marks them processed. */
  #commit(files: readonly ListedFile[]): Promise<void> {
    const append = this.#appending.then(async () => {
      const committedAt = new Date().toISOString();
      const text = files
        .map((file) => JSON.stringify({ path: file.path, size: file.size, mtimeMs: file.mtimeMs, committedAt } satisfies ProcessedEntry))
        .join("\n");
      await checkpointFs(this.#logFile, async () => {
        const handle = await fsp.open(this.#logFile, "a");
        try {
          await handle.write(`${text}\n`);
          await handle.sync();
        } finally {
          await handle.close();
        }
      });
      for (const file of files) {
        this.#processed.add(file.path);
        this.#inFlight.delete(file.path);
      }
    });
    // A failed append must not block later ones; the caller still sees the failure.
    this.#appending = append.catch(() => {});
    return append;
  }

  // ---- listing ----

  /** Unprocessed files (in flight included), oldest first: mtime, then relative path. */
  async #list(): Promise<ListedFile[]> {
    const files: ListedFile[] = [];
    await this.#listFolder(this.#root, "", files, true);
    return files.sort((x, y) => x.mtimeMs - y.mtimeMs || (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
  }

  async #listFolder(folder: string, prefix: string, into: ListedFile[], top: boolean): Promise<void> {
    let entries: fs.Dirent[];
    try {
      entries = await fsp.readdir(folder, { withFileTypes: true });
    } catch (error) {
      // The watched folder going away is the source failing; a sub-folder going away is a sub-folder removed.
      if (top || (error as NodeJS.ErrnoException).code !== "ENOENT") throw unavailable(folder, error);
      return;
    }
    for (const entry of entries) {
      if (entry.name.startsWith(".") || entry.name.startsWith("_")) continue;
      const relative = prefix === "" ? entry.name : `${prefix}/${entry.name}`;
      const absolute = path.join(folder, entry.name);
      // Sub-folders are walked, but not through links (a link to a parent would loop).
      if (entry.isDirectory()) {
        if (this.#spec.recursive) await this.#listFolder(absolute, relative, into, false);
        continue;
      }
      if (!entry.isFile() && !entry.isSymbolicLink()) continue;
      if (this.#processed.has(relative)) continue;
      const format = this.#formatOf(entry.name);
      if (format === null) continue;
      let stat: fs.Stats;
      try {
        stat = await fsp.stat(absolute);
      } catch {
        continue; // Removed since the listing, or a dangling link.
      }
      if (!stat.isFile()) continue;
      into.push({ path: relative, absolute, size: stat.size, mtimeMs: stat.mtimeMs, format });
    }
  }

  #formatOf(name: string): FileFormat | null {
    const format = EXTENSIONS[path.extname(name).toLowerCase()] ?? null;
    if (format === null) return null;
    return this.#spec.format === undefined || this.#spec.format === format ? format : null;
  }

  #sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        this.#wakers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener("abort", done, { once: true });
      this.#wakers.add(done);
    });
  }

  // ---- reading ----

  async #read(files: readonly ListedFile[]): Promise<SourceBatch> {
    for (const file of files) this.#inFlight.add(file.path);
    const records: RawRecord[] = [];
    const undecodable: DeadLetter[] = [];
    try {
      for (const file of files) {
        const read = file.format === "jsonl" ? await this.#readJsonl(file) : await this.#readRows(file);
        for (const record of read.records) records.push(record);
        for (const letter of read.undecodable) undecodable.push(letter);
      }
    } catch (error) {
      for (const file of files) this.#inFlight.delete(file.path);
      throw error;
    }
    let committing: Promise<void> | null = null;
    let committed = false;
    return {
      records,
      undecodable,
      description: describeFiles(files),
      commit: () => {
        if (committed) return Promise.resolve();
        committing ??= this.#commit(files).then(
          () => {
            committed = true;
          },
          (error: unknown) => {
            committing = null; // so the engine may try again
            throw error;
          },
        );
        return committing;
      },
    };
  }

  /** A CSV or Parquet file through batch's reader. */
  async #readRows(file: ListedFile): Promise<{ records: RawRecord[]; undecodable: DeadLetter[] }> {
    const records: RawRecord[] = [];
    const undecodable: DeadLetter[] = [];
    const problems: Array<{ rowNumber: number; line: number; reason: string }> = [];
    const arrivedAt = Math.trunc(file.mtimeMs);
    let rows: BatchRowSource;
    try {
      rows = await openRowSource(file.absolute, { format: file.format, ...(this.#chunkRows === undefined ? {} : { chunkRows: this.#chunkRows }) });
    } catch (error) {
      return { records, undecodable: [this.#unreadable(file, error, 0)] };
    }
    try {
      for await (const chunk of rows) {
        const columns = chunk.columns;
        for (let r = 0; r < chunk.rows.length; r++) {
          const cells = chunk.rows[r] as unknown[];
          const rowNumber = chunk.rowNumbers[r] as number;
          const fields: Record<string, unknown> = {};
          for (let c = 0; c < columns.length; c++) fields[columns[c] as string] = cells[c];
          records.push({
            id: `${file.path}#${rowNumber}`,
            fields,
            origin: file.format === "csv" ? `${file.path}:${rowNumber + 2}` : `${file.path} row ${rowNumber}`,
            arrivedAt,
          });
        }
        for (const problem of chunk.problems) problems.push(problem);
      }
    } catch (error) {
      undecodable.push(this.#unreadable(file, error, records.length + problems.length));
    }
    if (problems.length > 0) {
      const lines = await readLines(file.absolute, new Set(problems.map((problem) => problem.line)));
      const at = Date.now();
      for (const problem of problems) {
        undecodable.push({
          id: `${file.path}#${problem.rowNumber}`,
          origin: `${file.path}:${problem.line}`,
          stage: "decode",
          field: null,
          reason: problem.reason,
          raw: truncate(lines.get(problem.line) ?? `row ${problem.rowNumber}`),
          at,
        });
      }
    }
    return { records, undecodable };
  }

  /** A JSON Lines file: one object per line; blank lines are skipped and do not count as rows. */
  async #readJsonl(file: ListedFile): Promise<{ records: RawRecord[]; undecodable: DeadLetter[] }> {
    const records: RawRecord[] = [];
    const undecodable: DeadLetter[] = [];
    const arrivedAt = Math.trunc(file.mtimeMs);
    let lineNumber = 0;
    let rowNumber = 0;
    const stream = fs.createReadStream(file.absolute, { highWaterMark: 256 * 1024 });
    const lines = readline.createInterface({ input: stream, crlfDelay: Infinity });
    try {
      for await (const line of lines) {
        lineNumber += 1;
        const text = lineNumber === 1 ? line.replace(/^\uFEFF/, "") : line;
        if (text.trim() === "") continue;
        const number = rowNumber++;
        const id = `${file.path}#${number}`;
        const origin = `${file.path}:${lineNumber}`;
        let value: unknown;
        let reason: string | null = null;
        try {
          value = JSON.parse(text);
          if (value === null || typeof value !== "object" || Array.isArray(value)) reason = `line ${lineNumber} is not a JSON object`;
        } catch (error) {
          reason = `line ${lineNumber} is not valid JSON (${(error as Error).message})`;
        }
        if (reason === null) records.push({ id, fields: value as Record<string, unknown>, origin, arrivedAt });
        else undecodable.push({ id, origin, stage: "decode", field: null, reason, raw: truncate(text), at: Date.now() });
      }
    } catch (error) {
      undecodable.push(this.#unreadable(file, error, rowNumber));
    } finally {
      lines.close();
      stream.destroy();
    }
    return { records, undecodable };
  }

  /** The one dead letter of a file that could not be read (through): its path is the id. */
  #unreadable(file: ListedFile, error: unknown, rowsRead: number): DeadLetter {
    const message = (error as Error).message;
    const reason = rowsRead > 0 ? `${message} (after ${rowsRead} rows; those were read)` : message;
    this.#logger.warn({ file: file.absolute, err: error, rowsRead }, "folder source: a file could not be read; it goes to the dead letters");
    return {
      id: file.path,
      origin: file.path,
      stage: "decode",
      field: null,
      reason,
      raw: JSON.stringify({ file: file.path, size: file.size, mtimeMs: file.mtimeMs, rowsRead }),
      at: Date.now(),
    };
  }
}

function emptyBatch(): SourceBatch {
  return { records: [], undecodable: [], commit: () => Promise.resolve(), description: "no new files" };
}

function describeFiles(files: readonly ListedFile[]): string {
  const names = files.slice(0, DESCRIBED_FILES).map((file) => file.path);
  if (files.length > DESCRIBED_FILES) names.push(`${files.length - DESCRIBED_FILES} more`);
  return `${files.length} ${files.length === 1 ? "file" : "files"} (${names.join(", ")})`;
}

/** The text of the wanted lines (1-based) of a file, for dead letters' `raw`. */
async function readLines(file: string, wanted: ReadonlySet<number>): Promise<Map<number, string>> {
  const found = new Map<number, string>();
  const last = Math.max(...wanted);
  const stream = fs.createReadStream(file, { highWaterMark: 256 * 1024 });
  const lines = readline.createInterface({ input: stream, crlfDelay: Infinity });
  let lineNumber = 0;
  try {
    for await (const line of lines) {
      lineNumber += 1;
      if (wanted.has(lineNumber)) found.set(lineNumber, line);
      if (lineNumber >= last) break;
    }
  } catch {
    // The dead letters fall back to the row number.
  } finally {
    lines.close();
    stream.destroy();
  }
  return found;
}

function truncate(text: string): string {
  if (text.length * 3 <= MAX_RAW_BYTES) return text;
  const bytes = Buffer.from(text, "utf8");
  return bytes.length <= MAX_RAW_BYTES ? text : bytes.subarray(0, MAX_RAW_BYTES).toString("utf8");
}

async function syncFolder(folder: string): Promise<void> {
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(folder, "r");
  } catch {
    return; // Some platforms cannot open a folder.
  }
  try {
    await handle.sync();
  } catch {
    // Not supported for folders here; the file's own fsync still holds.
  } finally {
    await handle.close();
  }
}

function unavailable(folder: string, cause: unknown): MlshipError {
  const code = (cause as NodeJS.ErrnoException).code;
  const why = code === "ENOENT" ? "does not exist" : `cannot be read (${(cause as Error).message})`;
  return new MlshipError("MLSHIP_ERR_STREAM_UNAVAILABLE", `folder source ${folder} ${why}`, { field: "source.path", cause });
}

async function checkpointFs<T>(file: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (error) {
    if (error instanceof MlshipError) throw error;
    throw new MlshipError("MLSHIP_ERR_STREAM_CHECKPOINT", `folder source's log ${file} cannot be written: ${(error as Error).message}`, {
      cause: error,
    });
  }
}
