import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import type { AsyncBuffer } from "hyparquet";
import { MlshipError } from "../core/index.js";
import { parseCsv } from "../package/index.js";
import type { Cell, ColumnTable, ProfileSource } from "./types.js";

export type DatasetFormat = ProfileSource["format"];

export interface ReadDatasetOptions {
  /** Columns to leave out (e.g. the label). Names the file does not have are ignored. */
  excludeColumns?: readonly string[];
  /** Overrides the format the extension implies. */
  format?: DatasetFormat;
}

export interface DatasetFile {
  table: ColumnTable;
  source: ProfileSource;
}

/**
 * The texts read as missing in CSV files: pandas' default `na_values` (so a file reads here as `pd.read_csv` reads
 * it), plus the empty cell.
 */
const CSV_MISSING = new Set([
  "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
  "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]);
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const INFINITY = /^[+-]?(inf|infinity)$/i;

export function formatOf(file: string): DatasetFormat {
  const extension = path.extname(file).toLowerCase();
  if (extension === ".csv") return "csv";
  if (extension === ".parquet" || extension === ".pq") return "parquet";
  if (extension === ".jsonl" || extension === ".ndjson") return "jsonl";
  throw new MlshipError(
    "MLSHIP_ERR_INPUT_INVALID",
    `${file}: unknown data format "${extension || "(no extension)"}"; use .csv, .parquet, .jsonl or .ndjson`,
    { field: "data" },
  );
}

/** Reads a dataset into columns. See `readDatasetFile` for what each format gives. */
export async function readDataset(file: string, options: ReadDatasetOptions = {}): Promise<ColumnTable> {
  return (await readDatasetFile(file, options)).table;
}

/**
 * Reads a dataset into columns, with the file's sha256 and size (a ProfileSource).
 * - CSV (pandas `to_csv` style): a column whose every non-missing cell is a decimal number becomes numbers; one
 *   whose every cell is true/false (any case) becomes booleans; any other stays text. Missing: the empty cell and
 *   pandas' NA texts (`NaN`, `null`, `NA`, ...).
 * - JSONL/NDJSON: one JSON object per line; columns in first-seen order, a key absent on a line is missing;
 *   arrays become `name[i]` columns and objects `name.key` columns.
 * - Parquet: every row group; INT64 as numbers, dates/timestamps as ISO text, nested values flattened as in JSONL.
 * Bad rows are MlshipErrors that name the file and line.
 */
export async function readDatasetFile(file: string, options: ReadDatasetOptions = {}): Promise<DatasetFile> {
  const format = options.format ?? formatOf(file);
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new MlshipError(
      code === "ENOENT" ? "MLSHIP_ERR_PACKAGE_NOT_FOUND" : "MLSHIP_ERR_INPUT_INVALID",
      code === "ENOENT" ? `${file}: no such data file` : `${file}: cannot be read (${(error as Error).message})`,
      { field: "data", cause: error },
    );
  }
  const source: ProfileSource = {
    path: file,
    sha256: createHash("sha256").update(bytes).digest("hex"),
    bytes: bytes.length,
    format,
  };
  let table: ColumnTable;
  if (format === "csv") table = csvTable(bytes.toString("utf8"), file);
  else if (format === "jsonl") table = jsonlTable(bytes.toString("utf8"), file);
  else table = await parquetTable(bytes, file);
  return { table: withoutColumns(table, options.excludeColumns ?? []), source };
}

function withoutColumns(table: ColumnTable, excluded: readonly string[]): ColumnTable {
  if (excluded.length === 0) return table;
  const drop = new Set(excluded);
  const keep = table.columns.map((name, i) => [name, i] as const).filter(([name]) => !drop.has(name));
  return { columns: keep.map(([name]) => name), values: keep.map(([, i]) => table.values[i] as Cell[]), rows: table.rows };
}

/** Puts the file name in front of a parse error's message, keeping its code. */
function inFile(file: string, error: unknown): unknown {
  if (error instanceof MlshipError) {
    return new MlshipError(error.code, `${file}: ${error.message}`, { field: error.field ?? "data", cause: error });
  }
  return error;
}

function csvTable(text: string, file: string): ColumnTable {
  let parsed: ReturnType<typeof parseCsv>;
  try {
    parsed = parseCsv(text);
  } catch (error) {
    throw inFile(file, error);
  }
  const { header, rows } = parsed;
  const seen = new Set<string>();
  for (const name of header) {
    if (seen.has(name)) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${file}: the header names column "${name}" twice`, { field: name });
    }
    seen.add(name);
  }
  const values = header.map((_, c) => csvColumn(rows, c));
  return { columns: header, values, rows: rows.length };
}

function csvColumn(rows: readonly string[][], c: number): Cell[] {
  let numeric = true;
  let boolean = true;
  for (const row of rows) {
    const text = (row[c] as string).trim();
    if (CSV_MISSING.has(text)) continue;
    if (numeric && !DECIMAL.test(text) && !INFINITY.test(text)) numeric = false;
    if (boolean && !/^(true|false)$/i.test(text)) boolean = false;
    if (!numeric && !boolean) break;
  }
  const cells = new Array<Cell>(rows.length);
  for (let r = 0; r < rows.length; r++) {
    const raw = (rows[r] as string[])[c] as string;
    const text = raw.trim();
    if (CSV_MISSING.has(text)) cells[r] = null;
    else if (numeric) cells[r] = INFINITY.test(text) ? (text.startsWith("-") ? -Infinity : Infinity) : Number(text);
    else if (boolean) cells[r] = text.toLowerCase() === "true";
    else cells[r] = raw;
  }
  return cells;
}

/** Collects row objects into columns: first-seen column order, missing keys null, nested values flattened. */
class ColumnCollector {
  readonly columns: string[] = [];
  readonly values: Cell[][] = [];
  readonly #index = new Map<string, number>();
  rows = 0;

  constructor(readonly file: string) {}

  addRow(row: Record<string, unknown>, where: string): void {
    const r = this.rows;
    this.#flatten("", row, r, where);
    this.rows += 1;
  }

  #flatten(prefix: string, value: Record<string, unknown> | unknown[], r: number, where: string): void {
    const entries: Array<[string, unknown]> = Array.isArray(value)
      ? value.map((item, i) => [`${prefix}[${i}]`, item])
      : Object.entries(value).map(([key, item]) => [prefix === "" ? key : `${prefix}.${key}`, item]);
    for (const [name, item] of entries) {
      if (item !== null && typeof item === "object" && !(item instanceof Date)) {
        this.#flatten(name, item as Record<string, unknown>, r, where);
        continue;
      }
      this.#set(name, r, toCell(item, name, this.file, where));
    }
  }

  #set(name: string, r: number, cell: Cell): void {
    let c = this.#index.get(name);
    if (c === undefined) {
      c = this.columns.length;
      this.#index.set(name, c);
      this.columns.push(name);
      this.values.push(new Array<Cell>(this.rows).fill(null));
    }
    const column = this.values[c] as Cell[];
    // A column first seen on a later row gets nulls for the rows before it.
    while (column.length < r) column.push(null);
    column[r] = cell;
  }

  table(): ColumnTable {
    for (const column of this.values) while (column.length < this.rows) column.push(null);
    return { columns: this.columns, values: this.values, rows: this.rows };
  }
}

function toCell(value: unknown, column: string, file: string, where: string): Cell {
  if (value === null || value === undefined) return null;
  if (typeof value === "number") return Number.isNaN(value) ? null : value;
  if (typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "bigint") {
    const number = Number(value);
    if (!Number.isSafeInteger(number)) {
      throw new MlshipError("MLSHIP_ERR_INPUT_DTYPE", `${file}: ${where}: column "${column}" holds ${value}, beyond 2^53`, {
        field: column,
      });
    }
    return number;
  }
  if (value instanceof Date) return value.toISOString();
  throw new MlshipError("MLSHIP_ERR_INPUT_DTYPE", `${file}: ${where}: column "${column}" holds a ${typeof value} value`, {
    field: column,
  });
}

function jsonlTable(text: string, file: string): ColumnTable {
  const collector = new ColumnCollector(file);
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).replace(/\r$/, "").replace(/^\uFEFF/, "");
    if (line.trim() === "") continue;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch (error) {
      throw new MlshipError("MLSHIP_ERR_INPUT_JSON", `${file}: line ${i + 1} is not valid JSON (${(error as Error).message})`, {
        field: `line ${i + 1}`,
        cause: error,
      });
    }
    if (row === null || typeof row !== "object" || Array.isArray(row)) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${file}: line ${i + 1} is not a JSON object`, { field: `line ${i + 1}` });
    }
    collector.addRow(row as Record<string, unknown>, `line ${i + 1}`);
  }
  return collector.table();
}

async function parquetTable(bytes: Buffer, file: string): Promise<ColumnTable> {
  // Loaded on the first Parquet file: CSV/JSONL users and processes that read no dataset never load it.
  const { parquetMetadataAsync, parquetReadObjects } = await import("hyparquet");
  let rows: Array<Record<string, unknown>>;
  try {
    // The bytes are already in memory (they were hashed): hand hyparquet a view of them instead of re-reading.
    const arrayBuffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
    const buffer: AsyncBuffer = { byteLength: arrayBuffer.byteLength, slice: (start, end) => arrayBuffer.slice(start, end) };
    const metadata = await parquetMetadataAsync(buffer);
    rows = await parquetReadObjects({ file: buffer, metadata });
  } catch (error) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${file}: not a readable Parquet file (${(error as Error).message})`, {
      field: "data",
      cause: error,
    });
  }
  const collector = new ColumnCollector(file);
  rows.forEach((row, i) => collector.addRow(row, `row ${i + 1}`));
  return collector.table();
}
