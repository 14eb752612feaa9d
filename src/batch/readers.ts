import { createHash, type Hash } from "node:crypto";
import fs from "node:fs";
import fsp from "node:fs/promises";
import nodePath from "node:path";
import readline from "node:readline";
import { StringDecoder } from "node:string_decoder";
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
    this.#fingerprint ??= hashFile(this.path).then((hex) => {
      this.#fileHash = hex;
      return hex;
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
        const header = block === null ? null : firstCsvRecord(block.text, this.path, 1);
        if (header !== null) return checkHeader(header, this.path);
      }
      const rest = blocks.end();
      const header = rest === null ? null : firstCsvRecord(rest.text, this.path, 1);
      if (header !== null) return checkHeader(header, this.path);
    } finally {
      stream.destroy();
    }
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${this.path}: the CSV file is empty (no header row)`, { field: "input" });
  }

  async *#csvChunks(state: ReadState): AsyncGenerator<SourceChunk> {
    const hash = createHash("sha256");
    const stream = fs.createReadStream(this.path, { highWaterMark: 1024 * 1024 });
    const blocks = new CsvBlocks();
    const builder = new ChunkBuilder();
    let columns: string[] | null = null;
    let idIndex = -1;
    let rowNumber = 0;
    const take = (block: CsvBlock): void => {
      const { records, lines } = parseCsvBlock(block, this.path);
      for (let r = 0; r < records.length; r++) {
        const record = records[r] as string[];
        if (columns === null) {
          columns = checkHeader(record, this.path);
          this.#columns = columns;
          idIndex = this.idColumn === null ? -1 : columns.indexOf(this.idColumn);
          continue;
        }
        const number = rowNumber++;
        const rawId = idIndex >= 0 && idIndex < record.length ? (record[idIndex] as string) : undefined;
        const id = rawId === undefined || rawId.trim() === "" ? null : rawId;
        if (!this.#inShard(id)) continue;
        if (record.length !== columns.length) {
          const line = lines(r);
          builder.problems.push({
            rowNumber: number,
            line,
            rowId: id,
            reason: `line ${line}: the row has ${record.length} cells, the header ${columns.length}`,
          });
        } else {
          const row = new Array<BatchCell>(record.length);
          for (let c = 0; c < record.length; c++) row[c] = c === idIndex ? id : csvCell(record[c] as string);
          builder.add(number, row);
        }
      }
    };
    try {
      for await (const bytes of stream as AsyncIterable<Buffer>) {
        hash.update(bytes);
        state.bytes += bytes.length;
        const block = blocks.push(bytes);
        if (block !== null) take(block);
        while (columns !== null && builder.size >= this.chunkRows) yield builder.takeFirst(columns, this.chunkRows);
      }
      const rest = blocks.end();
      if (rest !== null) take(rest);
    } catch (error) {
      throw csvError(this.path, error);
    } finally {
      stream.destroy();
    }
    if (columns === null) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${this.path}: the CSV file is empty (no header row)`, { field: "input" });
    }
    while (builder.size > 0) yield builder.takeFirst(columns, this.chunkRows);
    this.#finished(hash);
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
    const builder = new ChunkBuilder();
    let groupStart = 0;
    for (const group of metadata.row_groups) {
      const groupRows = Number(group.num_rows);
      const groupEnd = groupStart + groupRows;
      // With offset indexes hyparquet reads only the pages a row range needs; without (a column chunk of one page has
      // none), each range read would decode the whole row group again, so the group is read once. Either way the data stays columnar (typed arrays for
      // numbers) and rows are built a chunk at a time.
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
        for (let rowNumber = start; rowNumber < end; rowNumber++) {
          const row = new Array<BatchCell>(columns.length);
          for (let c = 0; c < columns.length; c++) row[c] = parquetCell(cursors[c]?.at(rowNumber));
          if (idIndex >= 0 && !this.#inShard(row[idIndex])) continue;
          builder.add(rowNumber, row);
          if (builder.size >= this.chunkRows) yield builder.take(columns);
        }
      }
      groupStart = groupEnd;
    }
    if (builder.size > 0) yield builder.take(columns);
  }
}

/** Collects the rows (and problem rows) of one chunk. */
/** Complete CSV records of a file, as text: from the start of a record to the end of a line that ends one. */
interface CsvBlock {
  text: string;
  /** 1-based line of the file where `text` starts. */
  firstLine: number;
}

/** A quoted value longer than this without its closing quote is a malformed file, not a value to keep reading. */
const MAX_CSV_PENDING_CHARS = 64 * 1024 * 1024;

/**
 * Cuts a byte stream into blocks of whole CSV records, so each block can be parsed on its own (one Papa Parse call
 * per block instead of one callback per row). A newline ends a record when the number of quote characters before it
 * since the block started is even: RFC 4180 quoting (opening quote, `""` escapes, closing quote) keeps the count odd
 * exactly inside a quoted value.
 */
class CsvBlocks {
  readonly #decoder = new StringDecoder("utf8");
  #pending = "";
  /** Quote parity of `#pending` (it starts at a record start, so this is the parity at its end). */
  #parity = 0;
  #line = 1;
  #started = false;

  push(bytes: Buffer): CsvBlock | null {
    let added = this.#decoder.write(bytes);
    if (!this.#started && added !== "") {
      this.#started = true;
      if (added.charCodeAt(0) === 0xfeff) added = added.slice(1);
    }
    const from = this.#pending.length;
    const text = from === 0 ? added : this.#pending + added;
    const { cut, parity } = lastRecordEnd(text, from, this.#parity);
    this.#parity = parity;
    if (cut < 0) {
      this.#pending = text;
      if (text.length > MAX_CSV_PENDING_CHARS) {
        throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `line ${this.#line}: a quoted value is not closed`, {
          field: "input",
          details: { line: this.#line },
        });
      }
      return null;
    }
    this.#pending = text.slice(cut);
    return this.#block(text.slice(0, cut));
  }

  /** What is left at the end of the file (a last record without a newline), or null. */
  end(): CsvBlock | null {
    const text = this.#pending + this.#decoder.end();
    this.#pending = "";
    return text === "" ? null : this.#block(text);
  }

  #block(text: string): CsvBlock {
    const block = { text, firstLine: this.#line };
    for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) this.#line += 1;
    return block;
  }
}

/** The index just after the last record-ending newline at or after `from` (-1 if none), and the quote parity at the end. */
function lastRecordEnd(text: string, from: number, parity: number): { cut: number; parity: number } {
  let cut = -1;
  let position = from;
  let odd = parity;
  for (;;) {
    const quote = text.indexOf('"', position);
    const segmentEnd = quote < 0 ? text.length : quote;
    if (odd === 0 && segmentEnd > position) {
      const newline = text.lastIndexOf("\n", segmentEnd - 1);
      if (newline >= position) cut = newline + 1;
    }
    if (quote < 0) return { cut, parity: odd };
    odd ^= 1;
    position = quote + 1;
  }
}

/** The records of a block, and the 1-based line where each ends (worked out only when asked: it is for messages). */
function parseCsvBlock(block: CsvBlock, file: string): { records: string[][]; lines: (record: number) => number } {
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
function recordLines(block: CsvBlock): { starts: number[]; ends: number[] } {
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

  /** The first `count` rows and problems (in row order) as a chunk; the rest stays. */
  takeFirst(columns: readonly string[], count: number): SourceChunk {
    if (this.size <= count) return this.take(columns);
    let rows = 0;
    let problems = 0;
    while (rows + problems < count) {
      const row = this.rowNumbers[rows] ?? Infinity;
      const problem = this.problems[problems]?.rowNumber ?? Infinity;
      if (row < problem) rows += 1;
      else problems += 1;
    }
    const restRows = this.rows.splice(rows);
    const restNumbers = this.rowNumbers.splice(rows);
    const restProblems = this.problems.splice(problems);
    const chunk = this.take(columns);
    this.rows = restRows;
    this.rowNumbers = restNumbers;
    this.problems = restProblems;
    return chunk;
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

async function hashFile(file: string): Promise<string> {
  const hash = createHash("sha256");
  try {
    for await (const bytes of fs.createReadStream(file, { highWaterMark: 1024 * 1024 })) hash.update(bytes as Buffer);
  } catch (error) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${file}: cannot be read (${(error as Error).message})`, {
      field: "input",
      cause: error,
    });
  }
  return hash.digest("hex");
}
