import { createHash, type Hash } from "node:crypto";
import { Worker } from "node:worker_threads";
import fs from "node:fs";
import fsp from "node:fs/promises";
import nodePath from "node:path";
import readline from "node:readline";
import Papa from "papaparse";
import { asyncBufferFromFile, parquetMetadataAsync, parquetRead, parquetSchema, type AsyncBuffer, type FileMetaData } from "hyparquet";
import { MlshipError } from "../core/index.js";
import { idText, shardOf } from "./shard.js";
import type { BatchCell, InputFormat, RowChunk, RowSource, RowSourceOptions } from "./types.js";

export { idText, shardOf } from "./shard.js";

export const DEFAULT_CHUNK_ROWS = 5000;


/** A row the reader could not turn into cells (a CSV row with too few or too many cells). */
export interface RowProblem {
  /** 0-based input row number (data rows, header excluded), as in `RowChunk.rowNumbers`. */
  rowNumber: number;
  /** 1-based line of the file where the row ends (CSV), for the message. */
  line: number;
  /** The id cell's text when the row has one. */
  rowId: string | null;
  reason: string;
}

/**
 * A chunk as this reader yields it: a `RowChunk` plus the rows of the chunk's span that could not be read as rows.
 * Problem rows are NOT in `rows`/`rowNumbers`; a runner records them as rejects (`BatchReject`, field null).
 */
export interface SourceChunk extends RowChunk {
  problems: RowProblem[];
}

export interface BatchRowSource extends RowSource {
  [Symbol.asyncIterator](): AsyncIterator<SourceChunk>;
}

/** Same rule as the dataset reader in src/monitor/readers.ts: a plain decimal, optionally signed, with exponent. */
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** The format an input path's extension implies. */
export function inputFormatOf(file: string): InputFormat {
  const extension = nodePath.extname(file).toLowerCase();
  if (extension === ".csv") return "csv";
  if (extension === ".parquet" || extension === ".pq") return "parquet";
  if (extension === ".jsonl" || extension === ".ndjson") return "jsonl";
  throw new MlshipError(
    "MLSHIP_ERR_INPUT_INVALID",
    `${file}: unknown input format "${extension || "(no extension)"}"; use .csv, .parquet, .jsonl or .ndjson`,
    { field: "input" },
  );
}

/**
 * The common case of `DECIMAL` without a regular expression: an optional minus, digits with at most one dot, ending
 * with a digit (`12`, `-0.5`, `3.25`). Anything else takes the general path.
 */
function isPlainDecimal(text: string): boolean {
  const length = text.length;
  if (length === 0 || length > 24) return false;
  const last = text.charCodeAt(length - 1);
  if (last < 48 || last > 57) return false;
  let i = text.charCodeAt(0) === 45 ? 1 : 0;
  let dot = false;
  for (; i < length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 48 && c <= 57) continue;
    if (c === 46 && !dot) {
      dot = true;
      continue;
    }
    return false;
  }
  return true;
}

/**
 * A CSV cell: the empty (or all-blank) cell is null; a finite decimal number (surrounding spaces allowed) is a
 * number; anything else is the text as written (so `nan`, `inf`, `0x1F` stay text and the scorer decides).
 */
export function csvCell(text: string): BatchCell {
  if (isPlainDecimal(text)) return Number(text);
  const trimmed = text.trim();
  if (trimmed === "") return null;
  if (DECIMAL.test(trimmed)) {
    const value = Number(trimmed);
    if (Number.isFinite(value)) return value;
  }
  return text;
}

/**
 * Opens an input file as a stream of chunks. Checks up front (before any row is read) that the file exists, its
 * format is known, the options are sane and the id column exists, so a run fails before it starts.
 *
 * - CSV (Papa Parse over blocks of whole records, streaming): the header row names the columns; BOM, CRLF and quoted cells (with commas and
 *   newlines) are handled; cells are typed by `csvCell`, except the id column, which stays text (ids like `007`
 *   keep their zeros; an empty id is null). A row with a different number of cells than the header is not guessed
 *   at: it is left out of `rows` and reported in the chunk's `problems` with its line.
 * - JSON Lines: one object per line (blank lines skipped); columns are the keys in order of first appearance over
 *   the file so far, so a later chunk may have more columns; a key absent on a line is null; arrays and objects
 *   become JSON text. A line that is not a JSON object fails the read (MLSHIP_ERR_INPUT_INVALID, field `input`,
 *   naming the line).
 * - Parquet (`hyparquet`): top-level columns in schema order; INT64 is a number when it is a safe integer, else its
 *   decimal text; dates/timestamps are ISO-8601 text; nested values JSON text. Read by ranges of `chunkRows` rows
 *   when every column chunk has an offset index (hyparquet-writer writes one for chunks of more than one page),
 *   else one row group at a time (hyparquet decodes a column chunk whole), kept columnar and turned into rows a
 *   chunk at a time.
 *
 * Memory holds one chunk whatever the file size, except for Parquet files without offset indexes, where it holds
 * one decoded row group (about 24 bytes per nullable number: 100k rows x 31 columns is about 75 MB).
 */
export async function openRowSource(path: string, options: RowSourceOptions = {}): Promise<BatchRowSource> {
  const chunkRows = options.chunkRows ?? DEFAULT_CHUNK_ROWS;
  if (!Number.isSafeInteger(chunkRows) || chunkRows < 1) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `chunk size must be a positive integer, got ${chunkRows}`, {
      field: "chunkRows",
    });
  }
  const shard = options.shard;
  if (shard !== undefined) {
    if (!Number.isSafeInteger(shard.count) || shard.count < 1 || !Number.isSafeInteger(shard.index) ||
      shard.index < 0 || shard.index >= shard.count) {
      throw new MlshipError(
        "MLSHIP_ERR_INPUT_INVALID",
        `shard ${shard.index}/${shard.count} is not valid: use i/N with N >= 1 and 0 <= i < N`,
        { field: "shard" },
      );
    }
    if (options.idColumn === undefined || options.idColumn === "") {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "sharding needs an id column (rows are split by the hash of their id)", {
        field: "idColumn",
      });
    }
  }
  let stat: fs.Stats;
  try {
    stat = await fsp.stat(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new MlshipError(
      "MLSHIP_ERR_INPUT_INVALID",
      code === "ENOENT" ? `${path}: no such input file` : `${path}: cannot be read (${(error as Error).message})`,
      { field: "input", cause: error },
    );
  }
  if (!stat.isFile()) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${path}: is not a file`, { field: "input" });
  }
  const format = options.format ?? inputFormatOf(path);
  const reader = new InputReader(path, format, stat.size, chunkRows, options.idColumn ?? null, shard ?? null);
  await reader.open();
  return reader;
}

interface ReadState {
  bytes: number;
}

class InputReader implements BatchRowSource {
  #columns: readonly string[] = [];
  #metadata: FileMetaData | null = null;
  #fileHash: string | null = null;
  #fingerprint: Promise<string> | null = null;
  /** A Parquet file's hash, started with the first read so that it is ready (or nearly) when asked for. */
  #fileHashing: HashThread | null = null;
  #current: ReadState = { bytes: 0 };

  constructor(
    readonly path: string,
    readonly format: InputFormat,
    readonly size: number,
    private readonly chunkRows: number,
    private readonly idColumn: string | null,
    private readonly shard: { index: number; count: number } | null,
  ) {}

  /** Reads the header / schema / first line, and checks the id column against it. */
  async open(): Promise<void> {
    let hasRows = true;
    if (this.format === "csv") this.#columns = await this.#csvHeader();
    else if (this.format === "parquet") {
      const buffer = await asyncBufferFromFile(this.path);
      this.#metadata = await this.#parquetMetadata(buffer);
      this.#columns = parquetColumns(this.#metadata);
    } else {
      const first = await this.#jsonlFirstRow();
      hasRows = first !== null;
      this.#columns = first === null ? [] : Object.keys(first);
    }
    if (this.idColumn !== null && hasRows && !this.#columns.includes(this.idColumn)) {
      throw new MlshipError(
        "MLSHIP_ERR_INPUT_INVALID",
        `${this.path}: no id column "${this.idColumn}" (columns: ${preview(this.#columns)})`,
        { field: "idColumn" },
      );
    }
  }

  async columns(): Promise<readonly string[]> {
    return this.#columns;
  }

  bytesRead(): number {
    return Math.min(this.#current.bytes, this.size);
  }

  fingerprint(): Promise<string> {
    if (this.#fileHash !== null) return Promise.resolve(this.#fileHash);
    this.#fingerprint ??= (this.#fileHashing ?? new HashThread(this.path)).digest().then((hex) => {
      this.#fileHash = hex;
      return hex;
    }, (error: unknown) => {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${this.path}: cannot be read (${(error as Error).message})`, { field: "input", cause: error });
    });
    return this.#fingerprint;
  }

  [Symbol.asyncIterator](): AsyncIterator<SourceChunk> {
    const state: ReadState = { bytes: 0 };
    this.#current = state;
    if (this.format === "csv") return this.#csvChunks(state);
    if (this.format === "jsonl") return this.#jsonlChunks(state);
    return this.#parquetChunks(state);
  }

  #inShard(id: BatchCell | undefined): boolean {
    return this.shard === null || shardOf(idText(id), this.shard.count) === this.shard.index;
  }

  /** Like `#finished`, with the hash still being worked out. */
  #finishedWith(digest: Promise<string>): void {
    if (this.#fileHash !== null) return;
    this.#fingerprint = digest.then((hex) => {
      this.#fileHash ??= hex;
      return hex;
    });
    this.#fingerprint.catch(() => undefined);
  }

  /** Remembers the hash of a read that went through the whole file, so `fingerprint()` need not read it again. */
  #finished(hash: Hash): void {
    this.#fileHash ??= hash.digest("hex");
  }

  // ---- CSV ----

  async #csvHeader(): Promise<string[]> {
    const stream = fs.createReadStream(this.path, { highWaterMark: 64 * 1024 });
    const blocks = new CsvBlocks();
    try {
      for await (const bytes of stream as AsyncIterable<Buffer>) {
        const block = blocks.push(bytes);
        const header = block === null ? null : firstCsvRecord(block.bytes.toString("utf8"), this.path, 1);
        if (header !== null) return checkHeader(header, this.path);
      }
      const rest = blocks.end();
      const header = rest === null ? null : firstCsvRecord(rest.bytes.toString("utf8"), this.path, 1);
      if (header !== null) return checkHeader(header, this.path);
    } finally {
      stream.destroy();
    }
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${this.path}: the CSV file is empty (no header row)`, { field: "input" });
  }

  async *#csvChunks(state: ReadState): AsyncGenerator<SourceChunk> {
    // The file's bytes are hashed beside the parsing, by a thread of their own, as they are read.
    const hash = new HashThread();
    const done = { hashed: false };
    try {
      yield* this.#csvRead(state, hash, done);
    } finally {
      // A read that stopped early (or failed) ends the thread.
      if (!done.hashed) hash.abort();
    }
  }

  async *#csvRead(state: ReadState, hash: HashThread, done: { hashed: boolean }): AsyncGenerator<SourceChunk> {
    const stream = fs.createReadStream(this.path, { highWaterMark: 1024 * 1024 });
    const blocks = new CsvBlocks();
    let builder: ColumnarBuilder | null = null;
    let columns: string[] | null = null;
    let idIndex = -1;
    const counter = { rowNumber: 0 };
    const ready: SourceChunk[] = [];
    const inShard = this.shard === null ? null : (id: string | null): boolean => this.#inShard(id);
    const take = (block: CsvBlock): void => {
      if (columns !== null && builder !== null && isSimpleCsvBlock(block.bytes)) {
        parseSimpleCsvBlock(block, { builder, idIndex, counter, inShard, ready, chunkRows: this.chunkRows, columns });
        return;
      }
      const { records, lines } = parseCsvBlock({ text: block.bytes.toString("utf8"), firstLine: block.firstLine }, this.path);
      for (let r = 0; r < records.length; r++) {
        const record = records[r] as string[];
        if (columns === null || builder === null) {
          columns = checkHeader(record, this.path);
          this.#columns = columns;
          idIndex = this.idColumn === null ? -1 : columns.indexOf(this.idColumn);
          builder = new ColumnarBuilder(columns.length, idIndex, this.chunkRows);
          continue;
        }
        const number = counter.rowNumber++;
        const rawId = idIndex >= 0 && idIndex < record.length ? (record[idIndex] as string) : undefined;
        const id = rawId === undefined || rawId.trim() === "" ? null : rawId;
        if (inShard !== null && !inShard(id)) continue;
        if (record.length !== columns.length) {
          const line = lines(r);
          builder.problems.push({
            rowNumber: number,
            line,
            rowId: id,
            reason: `line ${line}: the row has ${record.length} cells, the header ${columns.length}`,
          });
        } else {
          for (let c = 0; c < record.length; c++) {
            if (c === idIndex) builder.setCell(c, id);
            else builder.setCell(c, csvCell(record[c] as string));
          }
          builder.commit(number);
        }
        if (builder.size >= this.chunkRows) ready.push(builder.take(columns));
      }
    };
    try {
      for await (const bytes of stream as AsyncIterable<Buffer>) {
        hash.update(bytes);
        state.bytes += bytes.length;
        const block = blocks.push(bytes);
        if (block !== null) take(block);
        while (ready.length > 0) yield ready.shift() as SourceChunk;
        await hash.drained();
      }
      const rest = blocks.end();
      if (rest !== null) take(rest);
    } catch (error) {
      throw csvError(this.path, error);
    } finally {
      stream.destroy();
    }
    if (columns === null || builder === null) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${this.path}: the CSV file is empty (no header row)`, { field: "input" });
    }
    while (ready.length > 0) yield ready.shift() as SourceChunk;
    const last: ColumnarBuilder = builder;
    if (last.size > 0) yield last.take(columns);
    done.hashed = true;
    this.#finishedWith(hash.digest());
  }

  // ---- JSON Lines ----

  async #jsonlFirstRow(): Promise<Record<string, unknown> | null> {
    const stream = fs.createReadStream(this.path, { highWaterMark: 64 * 1024 });
    const lines = readline.createInterface({ input: stream, crlfDelay: Infinity });
    let lineNumber = 0;
    try {
      for await (const line of lines) {
        lineNumber += 1;
        const object = jsonlObject(line, lineNumber, this.path);
        if (object !== null) return object;
      }
    } finally {
      lines.close();
      stream.destroy();
    }
    return null;
  }

  async *#jsonlChunks(state: ReadState): AsyncGenerator<SourceChunk> {
    const hash = createHash("sha256");
    const stream = fs.createReadStream(this.path, { highWaterMark: 256 * 1024 });
    stream.on("data", (bytes) => {
      hash.update(bytes);
      state.bytes += bytes.length;
    });
    const lines = readline.createInterface({ input: stream, crlfDelay: Infinity });
    const columns: string[] = [];
    const index = new Map<string, number>();
    const builder = new ChunkBuilder();
    let lineNumber = 0;
    let rowNumber = 0;
    try {
      for await (const line of lines) {
        lineNumber += 1;
        const object = jsonlObject(line, lineNumber, this.path);
        if (object === null) continue;
        const number = rowNumber++;
        const id = this.idColumn === null ? null : jsonCell(object[this.idColumn]);
        if (!this.#inShard(id)) continue;
        const row = new Array<BatchCell>(columns.length).fill(null);
        for (const [key, value] of Object.entries(object)) {
          let c = index.get(key);
          if (c === undefined) {
            c = columns.length;
            index.set(key, c);
            columns.push(key);
          }
          // A key new to the file lands at row.length (keys are added in order), so the row has no holes.
          row[c] = jsonCell(value);
        }
        builder.add(number, row);
        if (builder.size >= this.chunkRows) {
          this.#columns = columns.slice();
          yield builder.take(this.#columns);
        }
      }
    } finally {
      lines.close();
      stream.destroy();
    }
    this.#columns = columns.slice();
    if (builder.size > 0) yield builder.take(this.#columns);
    this.#finished(hash);
  }

  // ---- Parquet ----

  async #parquetMetadata(buffer: AsyncBuffer): Promise<FileMetaData> {
    try {
      return await parquetMetadataAsync(buffer);
    } catch (error) {
      throw parquetError(this.path, error);
    }
  }

  async *#parquetChunks(state: ReadState): AsyncGenerator<SourceChunk> {
    // Parquet is read by ranges, not front to back: the fingerprint is the file's hash, worked out beside the run.
    if (this.#fileHash === null) this.#fileHashing ??= new HashThread(this.path);
    const file = await asyncBufferFromFile(this.path);
    const counted: AsyncBuffer = {
      byteLength: file.byteLength,
      slice: async (start, end) => {
        const bytes = await file.slice(start, end);
        state.bytes += bytes.byteLength;
        return bytes;
      },
    };
    const metadata = this.#metadata ?? (await this.#parquetMetadata(counted));
    const columns = parquetColumns(metadata);
    this.#columns = columns;
    const idIndex = this.idColumn === null ? -1 : columns.indexOf(this.idColumn);
    // Every column is typed per cell (`parquetCell`): a number lands in the column's Float64Array, anything else aside.
    const builder = new ColumnarBuilder(columns.length, -1, this.chunkRows);
    let groupStart = 0;
    for (const group of metadata.row_groups) {
      const groupRows = Number(group.num_rows);
      const groupEnd = groupStart + groupRows;
      // With offset indexes hyparquet reads only the pages a row range needs; without (a column chunk of one page has
      // none), each range read would decode the whole row group again, so the group is read once. Either way the data
      // stays columnar (typed arrays for numbers) and is copied into the chunk's columns, a run of rows at a time.
      const indexed = group.columns.every((column) => column.offset_index_offset !== undefined);
      const step = indexed ? this.chunkRows : groupRows;
      for (let start = groupStart; start < groupEnd; start += step) {
        const end = Math.min(start + step, groupEnd);
        let read: Map<string, ColumnCursor>;
        try {
          read = await readParquetColumns(counted, metadata, start, end, indexed);
        } catch (error) {
          throw parquetError(this.path, error);
        }
        const cursors = columns.map((name) => read.get(name));
        if (idIndex >= 0 && this.shard !== null) {
          // Sharded: row by row, keeping the rows of this shard.
          for (let rowNumber = start; rowNumber < end; rowNumber++) {
            if (!this.#inShard(parquetCell(cursors[idIndex]?.at(rowNumber)))) continue;
            for (let c = 0; c < columns.length; c++) builder.setCell(c, parquetCell(cursors[c]?.at(rowNumber)));
            builder.commit(rowNumber);
            if (builder.size >= this.chunkRows) yield builder.take(columns);
          }
          continue;
        }
        for (let from = start; from < end; ) {
          const count = Math.min(end - from, this.chunkRows - builder.size);
          builder.appendColumns(cursors, from, count);
          from += count;
          if (builder.size >= this.chunkRows) yield builder.take(columns);
        }
      }
      groupStart = groupEnd;
    }
    if (builder.size > 0) yield builder.take(columns);
  }
}

/** Complete CSV records of a file, as bytes: from the start of a record to the end of a line that ends one. */
interface CsvBlock {
  bytes: Buffer;
  /** 1-based line of the file where `bytes` starts. */
  firstLine: number;
}

/** A block as text, for Papa Parse. */
interface TextBlock {
  text: string;
  /** 1-based line of the file where `text` starts. */
  firstLine: number;
}

/** A quoted value longer than this without its closing quote is a malformed file, not a value to keep reading. */
const MAX_CSV_PENDING_CHARS = 64 * 1024 * 1024;

const QUOTE = 0x22;
const NEWLINE = 0x0a;
const RETURN = 0x0d;
const COMMA = 0x2c;

/**
 * Cuts a byte stream into blocks of whole CSV records, so each block can be parsed on its own (one pass per block
 * instead of one callback per row). A newline ends a record when the number of quote characters before it since the
 * block started is even: RFC 4180 quoting (opening quote, `""` escapes, closing quote) keeps the count odd exactly
 * inside a quoted value. Works on bytes: UTF-8 never uses the bytes of `"` or a newline inside another character, so
 * a block always holds whole characters. A UTF-8 byte order mark at the start of the file is dropped.
 */
class CsvBlocks {
  #pending: Buffer | null = null;
  /** Quote parity of `#pending` (it starts at a record start, so this is the parity at its end). */
  #parity = 0;
  #line = 1;
  #started = false;

  push(added: Buffer): CsvBlock | null {
    // Quote parity is known up to the end of what was pending; a tail held back for the byte order mark is scanned whole.
    let from = this.#pending === null ? 0 : this.#pending.length;
    let bytes = this.#pending === null ? added : Buffer.concat([this.#pending, added]);
    if (!this.#started) {
      from = 0;
      // The byte order mark needs its 3 bytes to be told apart from text.
      if (bytes.length < 3) {
        this.#pending = bytes;
        return null;
      }
      this.#started = true;
      if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) bytes = bytes.subarray(3);
    }
    const { cut, parity } = lastRecordEnd(bytes, from, this.#parity);
    this.#parity = parity;
    if (cut < 0) {
      this.#pending = bytes;
      if (bytes.length > MAX_CSV_PENDING_CHARS) {
        throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `line ${this.#line}: a quoted value is not closed`, {
          field: "input",
          details: { line: this.#line },
        });
      }
      return null;
    }
    this.#pending = cut < bytes.length ? Buffer.from(bytes.subarray(cut)) : null;
    return this.#block(bytes.subarray(0, cut));
  }

  /** What is left at the end of the file (a last record without a newline), or null. */
  end(): CsvBlock | null {
    let bytes = this.#pending;
    this.#pending = null;
    if (bytes === null || bytes.length === 0) return null;
    if (!this.#started) {
      this.#started = true;
      if (bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) bytes = bytes.subarray(3);
      if (bytes.length === 0) return null;
    }
    return this.#block(bytes);
  }

  #block(bytes: Buffer): CsvBlock {
    const block = { bytes, firstLine: this.#line };
    for (let i = bytes.indexOf(NEWLINE); i >= 0; i = bytes.indexOf(NEWLINE, i + 1)) this.#line += 1;
    return block;
  }
}

/** The index just after the last record-ending newline at or after `from` (-1 if none), and the quote parity at the end. */
function lastRecordEnd(bytes: Buffer, from: number, parity: number): { cut: number; parity: number } {
  let cut = -1;
  let position = from;
  let odd = parity;
  for (;;) {
    const quote = bytes.indexOf(QUOTE, position);
    const segmentEnd = quote < 0 ? bytes.length : quote;
    if (odd === 0 && segmentEnd > position) {
      const newline = bytes.lastIndexOf(NEWLINE, segmentEnd - 1);
      if (newline >= position) cut = newline + 1;
    }
    if (quote < 0) return { cut, parity: odd };
    odd ^= 1;
    position = quote + 1;
  }
}

/** The records of a block, and the 1-based line where each ends (worked out only when asked: it is for messages). */
function parseCsvBlock(block: TextBlock, file: string): { records: string[][]; lines: (record: number) => number } {
  const parsed = Papa.parse<string[]>(block.text, { delimiter: ",", quoteChar: '"', escapeChar: '"', skipEmptyLines: true });
  const quoteError = parsed.errors.find((e) => e.type === "Quotes");
  let known: { starts: number[]; ends: number[] } | undefined;
  const lines = (record: number): number => {
    known ??= recordLines(block);
    return known.ends[record] ?? block.firstLine;
  };
  if (quoteError !== undefined) {
    known ??= recordLines(block);
    const line = known.starts[quoteError.row ?? 0] ?? block.firstLine;
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${file}: not valid CSV (line ${line}): ${quoteError.message}`, {
      field: "input",
      details: { line },
    });
  }
  return { records: parsed.data, lines };
}

/** Where each non-empty record of a block starts and ends (1-based lines), as `skipEmptyLines: true` counts records. */
function recordLines(block: TextBlock): { starts: number[]; ends: number[] } {
  const starts: number[] = [];
  const ends: number[] = [];
  const text = block.text;
  let line = block.firstLine;
  let startLine = line;
  let start = 0;
  let odd = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) odd ^= 1;
    else if (c === 0x0a) {
      if (odd === 0) {
        const empty = i === start || (i === start + 1 && text.charCodeAt(start) === 0x0d);
        if (!empty) {
          starts.push(startLine);
          ends.push(line);
        }
        start = i + 1;
        startLine = line + 1;
      }
      line += 1;
    }
  }
  if (start < text.length) {
    starts.push(startLine);
    ends.push(line);
  }
  return { starts, ends };
}

/** The first record of a block (the header), or null when the block has none. */
function firstCsvRecord(text: string, file: string, firstLine: number): string[] | null {
  return parseCsvBlock({ text, firstLine }, file).records[0] ?? null;
}

/** Collects the rows (and problem rows) of one chunk (JSON Lines). */
class ChunkBuilder {
  rows: BatchCell[][] = [];
  rowNumbers: number[] = [];
  problems: RowProblem[] = [];

  get size(): number {
    return this.rows.length + this.problems.length;
  }

  add(rowNumber: number, row: BatchCell[]): void {
    this.rows.push(row);
    this.rowNumbers.push(rowNumber);
  }

  /** The chunk so far, every row padded with nulls to `columns` (JSON Lines columns grow), and a fresh start. */
  take(columns: readonly string[]): SourceChunk {
    for (const row of this.rows) while (row.length < columns.length) row.push(null);
    const firstRow = Math.min(this.rowNumbers[0] ?? Infinity, this.problems[0]?.rowNumber ?? Infinity);
    const chunk: SourceChunk = { columns, rows: this.rows, firstRow, rowNumbers: this.rowNumbers, problems: this.problems };
    this.rows = [];
    this.rowNumbers = [];
    this.problems = [];
    return chunk;
  }
}

/**
 * One column of a columnar chunk: numbers in a Float64Array (with the cells that are not numbers, by row, aside), or
 * cells as they are (text columns: the CSV id).
 */
export type ChunkColumn =
  | { kind: "numbers"; values: Float64Array; others: Map<number, BatchCell> | null }
  | { kind: "cells"; values: BatchCell[] };

/** A chunk's cells column by column, as the CSV and Parquet readers decode them (no per-row arrays). */
export interface ChunkCells {
  /** Rows in the chunk (`rowNumbers.length`). */
  readonly length: number;
  readonly columns: readonly ChunkColumn[];
}

/** The cell of row `r` of a column. */
export function cellOf(column: ChunkColumn, r: number): BatchCell {
  if (column.kind === "cells") return column.values[r] ?? null;
  if (column.others !== null) {
    const other = column.others.get(r);
    if (other !== undefined || column.others.has(r)) return other ?? null;
  }
  return column.values[r] as number;
}

/** A chunk whose cells are kept as columns; `rows` are built from them when first asked for. */
class ColumnarChunk implements SourceChunk {
  #rows: BatchCell[][] | undefined;

  constructor(
    readonly columns: readonly string[],
    readonly cells: ChunkCells,
    readonly firstRow: number,
    readonly rowNumbers: number[],
    readonly problems: RowProblem[],
  ) {}

  get rows(): BatchCell[][] {
    if (this.#rows === undefined) {
      const { length, columns } = this.cells;
      const rows = new Array<BatchCell[]>(length);
      for (let r = 0; r < length; r++) {
        const row = new Array<BatchCell>(columns.length);
        for (let c = 0; c < columns.length; c++) row[c] = cellOf(columns[c] as ChunkColumn, r);
        rows[r] = row;
      }
      this.#rows = rows;
    }
    return this.#rows;
  }
}

/** The columnar cells of a chunk the CSV or Parquet reader made, or undefined for other chunks. */
export function chunkCells(chunk: RowChunk): ChunkCells | undefined {
  return chunk instanceof ColumnarChunk ? chunk.cells : undefined;
}

/**
 * Collects a chunk's rows column by column: the row being read is written in place at index `length` and kept by
 * `commit` (or dropped by `rollback`). Column `textColumn` keeps its cells as they are; the others hold numbers in a
 * Float64Array and any other cell aside.
 */
class ColumnarBuilder {
  #capacity: number;
  #length = 0;
  #numbers: Float64Array[] = [];
  #others: (Map<number, BatchCell> | null)[] = [];
  #text: BatchCell[] = [];
  /** Columns whose `others` got a cell of the row being read (to undo on rollback). */
  #touched: number[] = [];
  rowNumbers: number[] = [];
  problems: RowProblem[] = [];

  constructor(
    readonly width: number,
    readonly textColumn: number,
    private readonly chunkRows: number,
  ) {
    this.#capacity = Math.min(chunkRows, 8192);
    this.#reset();
  }

  get size(): number {
    return this.#length + this.problems.length;
  }

  /** The Float64Array a number of the current row goes into (`numbers(c)[length] = value`). */
  numbers(c: number): Float64Array {
    return this.#numbers[c] as Float64Array;
  }

  get length(): number {
    return this.#length;
  }

  /** Writes cell `c` of the current row: into the text column as it is, else a number or a cell aside. */
  setCell(c: number, value: BatchCell): void {
    if (c === this.textColumn) {
      this.#text[this.#length] = value;
      return;
    }
    if (typeof value === "number") {
      (this.#numbers[c] as Float64Array)[this.#length] = value;
      return;
    }
    let others = this.#others[c];
    if (others === null || others === undefined) this.#others[c] = others = new Map();
    others.set(this.#length, value);
    this.#touched.push(c);
  }

  /**
   * Appends rows `[from, from + count)` of decoded Parquet columns (absolute row numbers, which become the rows'
   * numbers). The caller keeps `count` within the chunk. Numeric typed arrays are copied in bulk; other values are
   * typed one by one (`parquetCell`).
   */
  appendColumns(cursors: readonly (ColumnCursor | undefined)[], from: number, count: number): void {
    this.#ensure(this.#length + count);
    const base = this.#length;
    for (let c = 0; c < this.width; c++) {
      const cursor = cursors[c];
      const numbers = this.#numbers[c] as Float64Array;
      let row = from;
      while (row < from + count) {
        const piece = cursor?.pieceAt(row);
        if (piece === undefined) {
          // No data for this row: a missing cell.
          this.#other(c, base + row - from, null);
          row += 1;
          continue;
        }
        const run = Math.min(from + count, piece.rowStart + piece.data.length) - row;
        const offset = row - piece.rowStart;
        const data = piece.data;
        if (data instanceof Float64Array || data instanceof Float32Array || data instanceof Int32Array || data instanceof Uint32Array ||
          data instanceof Int16Array || data instanceof Uint16Array || data instanceof Int8Array || data instanceof Uint8Array) {
          numbers.set(data.subarray(offset, offset + run), base + row - from);
        } else {
          for (let i = 0; i < run; i++) {
            const cell = parquetCell(data[offset + i]);
            if (typeof cell === "number") numbers[base + row - from + i] = cell;
            else this.#other(c, base + row - from + i, cell);
          }
        }
        row += run;
      }
    }
    for (let i = 0; i < count; i++) this.rowNumbers.push(from + i);
    this.#length += count;
  }

  #other(c: number, r: number, cell: BatchCell): void {
    let others = this.#others[c];
    if (others === null || others === undefined) this.#others[c] = others = new Map();
    others.set(r, cell);
  }

  #ensure(length: number): void {
    while (this.#capacity < length) this.#grow(length);
  }

  /** Keeps the row written at index `length`. */
  commit(rowNumber: number): void {
    this.rowNumbers.push(rowNumber);
    this.#length += 1;
    this.#touched.length = 0;
    if (this.#length === this.#capacity && this.#capacity < this.chunkRows) this.#grow();
  }

  /** Drops what was written of the current row. */
  rollback(): void {
    for (const c of this.#touched) this.#others[c]?.delete(this.#length);
    this.#touched.length = 0;
  }

  /** The chunk so far, and a fresh start. */
  take(columns: readonly string[]): SourceChunk {
    const length = this.#length;
    const cells: ChunkColumn[] = [];
    for (let c = 0; c < this.width; c++) {
      if (c === this.textColumn) {
        this.#text.length = length;
        cells.push({ kind: "cells", values: this.#text });
      } else {
        const others = this.#others[c] ?? null;
        cells.push({ kind: "numbers", values: (this.#numbers[c] as Float64Array).subarray(0, length), others: others !== null && others.size > 0 ? others : null });
      }
    }
    const firstRow = Math.min(this.rowNumbers[0] ?? Infinity, this.problems[0]?.rowNumber ?? Infinity);
    const chunk = new ColumnarChunk(columns, { length, columns: cells }, firstRow, this.rowNumbers, this.problems);
    this.rowNumbers = [];
    this.problems = [];
    this.#length = 0;
    this.#capacity = Math.min(this.chunkRows, 8192);
    this.#reset();
    return chunk;
  }

  #reset(): void {
    this.#numbers = [];
    this.#others = [];
    for (let c = 0; c < this.width; c++) {
      this.#numbers.push(c === this.textColumn ? new Float64Array(0) : new Float64Array(this.#capacity));
      this.#others.push(null);
    }
    this.#text = [];
  }

  #grow(atLeast = 0): void {
    const capacity = Math.max(atLeast, Math.min(this.chunkRows, this.#capacity * 2));
    for (let c = 0; c < this.width; c++) {
      if (c === this.textColumn) continue;
      const grown = new Float64Array(capacity);
      grown.set(this.#numbers[c] as Float64Array);
      this.#numbers[c] = grown;
    }
    this.#capacity = capacity;
  }
}

/**
 * Whether a block can take the fast path: no quotes, and line ends that Papa Parse would split the same way
 * (all `\n`, or all `\r\n` with no other `\r`).
 */
function isSimpleCsvBlock(bytes: Buffer): boolean {
  if (bytes.indexOf(QUOTE) >= 0) return false;
  let returns = 0;
  for (let i = bytes.indexOf(RETURN); i >= 0; i = bytes.indexOf(RETURN, i + 1)) {
    if (bytes[i + 1] !== NEWLINE) return false;
    returns += 1;
  }
  if (returns === 0) return true;
  let newlines = 0;
  for (let i = bytes.indexOf(NEWLINE); i >= 0; i = bytes.indexOf(NEWLINE, i + 1)) newlines += 1;
  // Papa Parse guesses `\r\n` from the block's first megabyte: with three or more line ends it always does.
  return newlines === returns && (returns >= 3 || bytes.length <= 1024 * 1024);
}

/** Exact powers of ten as doubles (10^0 .. 10^22). */
const POWERS_OF_TEN = Array.from({ length: 23 }, (_, i) => 10 ** i);

interface SimpleCsvState {
  builder: ColumnarBuilder;
  idIndex: number;
  counter: { rowNumber: number };
  inShard: ((id: string | null) => boolean) | null;
  ready: SourceChunk[];
  chunkRows: number;
  columns: readonly string[];
}

/**
 * Parses a block without quotes straight from its bytes into the builder, as the general path would (Papa Parse, then
 * `csvCell`): empty lines are skipped, the id cell stays text, a plain decimal of up to 15 digits is read as
 * digits / 10^decimals (exact: both are exact doubles and the division rounds once), any other cell goes through
 * `csvCell`.
 */
function parseSimpleCsvBlock(block: CsvBlock, state: SimpleCsvState): void {
  const bytes = block.bytes;
  const { builder, idIndex, counter, inShard, ready, chunkRows, columns } = state;
  const width = builder.width;
  const total = bytes.length;
  let line = block.firstLine;
  let start = 0;
  while (start < total) {
    let newline = bytes.indexOf(NEWLINE, start);
    if (newline < 0) newline = total;
    let end = newline;
    if (end > start && bytes[end - 1] === RETURN) end -= 1;
    if (end > start) {
      const number = counter.rowNumber++;
      let id: string | null = null;
      let cell = 0;
      let at = start;
      for (;;) {
        // One cell: [at, stop).
        let p = at;
        let stop = -1;
        if (cell < width && cell !== idIndex) {
          const numbers = builder.numbers(cell);
          let negative = false;
          if (p < end && bytes[p] === 0x2d) {
            negative = true;
            p += 1;
          }
          let mantissa = 0;
          let digits = 0;
          let decimals = -1;
          let plain = true;
          for (; p < end; p++) {
            const b = bytes[p] as number;
            if (b === COMMA) break;
            if (b >= 0x30 && b <= 0x39) {
              mantissa = mantissa * 10 + (b - 0x30);
              digits += 1;
              if (decimals >= 0) decimals += 1;
            } else if (b === 0x2e && decimals < 0) decimals = 0;
            else {
              plain = false;
              break;
            }
          }
          if (plain) {
            stop = p;
            const last = bytes[stop - 1] as number;
            if (digits > 0 && digits <= 15 && last >= 0x30 && last <= 0x39 && stop - at <= 24) {
              const value = decimals > 0 ? mantissa / (POWERS_OF_TEN[decimals] as number) : mantissa;
              numbers[builder.length] = negative ? -value : value;
            } else builder.setCell(cell, csvCell(bytes.toString("utf8", at, stop)));
          } else {
            stop = bytes.indexOf(COMMA, p);
            if (stop < 0 || stop > end) stop = end;
            builder.setCell(cell, csvCell(bytes.toString("utf8", at, stop)));
          }
        } else {
          stop = bytes.indexOf(COMMA, at);
          if (stop < 0 || stop > end) stop = end;
          if (cell === idIndex) {
            const raw = bytes.toString("utf8", at, stop);
            id = raw.trim() === "" ? null : raw;
            if (cell < width) builder.setCell(cell, id);
          }
        }
        cell += 1;
        if (stop >= end) break;
        at = stop + 1;
      }
      if (inShard !== null && !inShard(id)) builder.rollback();
      else if (cell !== width) {
        builder.rollback();
        builder.problems.push({ rowNumber: number, line, rowId: id, reason: `line ${line}: the row has ${cell} cells, the header ${width}` });
      } else builder.commit(number);
      if (builder.size >= chunkRows) ready.push(builder.take(columns));
    }
    start = newline + 1;
    line += 1;
  }
}

function preview(columns: readonly string[]): string {
  const shown = columns.slice(0, 8).map((name) => JSON.stringify(name)).join(", ");
  return columns.length > 8 ? `${shown}, ... ${columns.length} in all` : shown || "none";
}

function checkHeader(header: string[], file: string): string[] {
  const seen = new Set<string>();
  for (const name of header) {
    if (seen.has(name)) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${file}: the header names column "${name}" twice`, { field: "input" });
    }
    seen.add(name);
  }
  return header;
}

function csvError(file: string, error: unknown): unknown {
  if (error instanceof MlshipError) return error;
  const lines = (error as { lines?: unknown }).lines;
  const where = typeof lines === "number" ? ` (line ${lines})` : "";
  return new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${file}: not valid CSV${where}: ${(error as Error).message}`, {
    field: "input",
    cause: error,
    ...(typeof lines === "number" ? { details: { line: lines } } : {}),
  });
}

/** The object on a JSON Lines line; null for a blank line. */
function jsonlObject(line: string, lineNumber: number, file: string): Record<string, unknown> | null {
  const text = lineNumber === 1 ? line.replace(/^\uFEFF/, "") : line;
  if (text.trim() === "") return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${file}: line ${lineNumber} is not valid JSON (${(error as Error).message})`, {
      field: "input",
      cause: error,
      details: { line: lineNumber },
    });
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${file}: line ${lineNumber} is not a JSON object`, {
      field: "input",
      details: { line: lineNumber },
    });
  }
  return value as Record<string, unknown>;
}

function jsonCell(value: unknown): BatchCell {
  if (value === null || value === undefined) return null;
  if (typeof value === "number" || typeof value === "string" || typeof value === "boolean") return value;
  return JSON.stringify(value);
}

function parquetCell(value: unknown): BatchCell {
  if (value === null || value === undefined) return null;
  if (typeof value === "number" || typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "bigint") return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  if (value instanceof Date) return value.toISOString();
  return jsonText(value);
}

/** Nested Parquet values as JSON text: bigints as numbers when safe (else text), dates as ISO, bytes as arrays. */
function jsonText(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) => {
    if (typeof item === "bigint") return Number.isSafeInteger(Number(item)) ? Number(item) : item.toString();
    if (ArrayBuffer.isView(item) && !(item instanceof DataView)) return Array.from(item as unknown as ArrayLike<number>);
    return item;
  });
}

function parquetColumns(metadata: FileMetaData): string[] {
  return parquetSchema(metadata).children.map((child) => child.element.name);
}

/** One column's decoded pieces for a row range, read forward by absolute row number. */
class ColumnCursor {
  readonly pieces: Array<{ rowStart: number; data: ArrayLike<unknown> }> = [];
  #piece = 0;

  /** The piece holding `rowNumber` (reading forward), or undefined. */
  pieceAt(rowNumber: number): { rowStart: number; data: ArrayLike<unknown> } | undefined {
    let piece = this.pieces[this.#piece];
    while (piece !== undefined && rowNumber >= piece.rowStart + piece.data.length) piece = this.pieces[++this.#piece];
    return piece === undefined || rowNumber < piece.rowStart ? undefined : piece;
  }

  at(rowNumber: number): unknown {
    let piece = this.pieces[this.#piece];
    while (piece !== undefined && rowNumber >= piece.rowStart + piece.data.length) piece = this.pieces[++this.#piece];
    return piece === undefined || rowNumber < piece.rowStart ? undefined : piece.data[rowNumber - piece.rowStart];
  }
}

/** Rows [rowStart, rowEnd) as columns: no row objects are built here (pieces may extend past the range). */
async function readParquetColumns(
  file: AsyncBuffer,
  metadata: FileMetaData,
  rowStart: number,
  rowEnd: number,
  useOffsetIndex: boolean,
): Promise<Map<string, ColumnCursor>> {
  const columns = new Map<string, ColumnCursor>();
  await parquetRead({
    file,
    metadata,
    rowStart,
    rowEnd,
    useOffsetIndex,
    onChunk: ({ columnName, columnData, rowStart: pieceStart }) => {
      let cursor = columns.get(columnName);
      if (cursor === undefined) columns.set(columnName, (cursor = new ColumnCursor()));
      cursor.pieces.push({ rowStart: pieceStart, data: columnData });
    },
  });
  for (const cursor of columns.values()) cursor.pieces.sort((x, y) => x.rowStart - y.rowStart);
  return columns;
}

function parquetError(file: string, error: unknown): MlshipError {
  return new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${file}: not a readable Parquet file (${(error as Error).message})`, {
    field: "input",
    cause: error,
  });
}

/** A sha256 worker (CommonJS, evaluated): of the chunks it is sent, or of a file it reads itself. */
const HASH_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { createHash } = require("node:crypto");
const hash = createHash("sha256");
if (workerData.file !== null) {
  const stream = require("node:fs").createReadStream(workerData.file, { highWaterMark: 1 << 20 });
  stream.on("data", (bytes) => hash.update(bytes));
  stream.on("end", () => parentPort.postMessage({ hex: hash.digest("hex") }));
  stream.on("error", (error) => parentPort.postMessage({ error: String(error && error.message) }));
} else {
  parentPort.on("message", (message) => {
    if (message === "end") parentPort.postMessage({ hex: hash.digest("hex") });
    else {
      hash.update(message);
      parentPort.postMessage({ ack: 1 });
    }
  });
}
`;

/** Chunks sent to a HashThread and not hashed yet beyond which the reader waits (1 MB each). */
const HASH_BACKLOG = 16;

/**
 * sha256 in a worker thread, so that fingerprinting an input costs the reading thread a copy of each chunk instead of
 * hashing it (about 2 ms per MB). With a file, the thread reads and hashes it itself. The thread keeps the process
 * alive only while the digest is awaited, and ends once it is given.
 */
class HashThread {
  readonly #worker: Worker;
  readonly #result: Promise<string>;
  #backlog = 0;
  #wake: (() => void) | undefined;

  constructor(file: string | null = null) {
    this.#worker = new Worker(HASH_SOURCE, { eval: true, workerData: { file } });
    this.#worker.unref();
    this.#result = new Promise<string>((resolve, reject) => {
      this.#worker.on("message", (message: { ack?: number; hex?: string; error?: string }) => {
        if (message.ack !== undefined) {
          this.#backlog -= 1;
          if (this.#backlog <= HASH_BACKLOG / 2) this.#resume();
          return;
        }
        if (message.hex !== undefined) resolve(message.hex);
        else reject(new Error(message.error ?? "hashing failed"));
        void this.#worker.terminate();
      });
      this.#worker.once("error", reject);
      this.#worker.once("exit", () => {
        reject(new Error("the hashing thread ended"));
        this.#resume();
      });
    });
    this.#result.catch(() => undefined);
  }

  /** Sends a copy of `bytes` to be hashed. */
  update(bytes: Buffer): void {
    this.#backlog += 1;
    this.#worker.postMessage(bytes);
  }

  /** Resolves once the thread is at most HASH_BACKLOG chunks behind. */
  drained(): Promise<void> {
    if (this.#backlog <= HASH_BACKLOG) return Promise.resolve();
    this.#worker.ref();
    return new Promise<void>((resolve) => {
      this.#wake = resolve;
    });
  }

  /** The hex digest of everything sent (or of the file). */
  digest(): Promise<string> {
    this.#worker.ref();
    this.#worker.postMessage("end");
    return this.#result.finally(() => this.#worker.unref());
  }

  abort(): void {
    void this.#worker.terminate();
  }

  #resume(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    if (wake !== undefined) {
      this.#worker.unref();
      wake();
    }
  }
}
