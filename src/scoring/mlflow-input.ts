import { allocate, MlshipError } from "../core/index.js";
import type { Tensor } from "../core/index.js";
import { EXAMPLE_KEYS, parseCsv } from "../package/index.js";
import type { TensorSpec } from "../package/index.js";
import type { ModelContext } from "./context.js";
import { applyTabularSteps } from "./package-ops.js";
import type { Orientation } from "./types.js";
import { castWriter, countLeaves, fitTrailing, isRecord, shapeText } from "./values.js";

/** The MLflow scoring request keys: the same list a package's input example is checked against. */
export const MLFLOW_FORMATS = EXAMPLE_KEYS;

export interface PreparedMlflow {
  feeds: Record<string, Tensor>;
  rows: number;
  orientation: Orientation;
  parameters: Record<string, unknown> | undefined;
}

/**
 * Tabular data as the adapters see it, whatever the wire format. Cells are read in place (no per-row copies):
 * `cell(r, c)` indexes the original arrays or record objects.
 */
export interface Table {
  /** Where the data came from, for messages: `dataframe_split`, `dataframe_records`, `csv`, ... */
  source: string;
  columns: readonly string[] | undefined;
  rowCount: number;
  /** Cells in row `r` (for positional data). */
  width(r: number): number;
  cell(r: number, c: number): unknown;
  /** Records (objects) carry no position: column order is not a contract. */
  keyed: boolean;
  /** Path of a cell in the request, for errors when the column has no name. */
  cellPath(r: number, c: number): string;
}

function bad(field: string, message: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_INPUT_INVALID", message, { field });
}

export function splitTable(value: unknown): Table {
  if (!isRecord(value)) throw bad("dataframe_split", "dataframe_split must be an object {\"columns\": [...], \"data\": [[...], ...]}");
  const data = value.data;
  if (!Array.isArray(data)) {
    throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", "dataframe_split.data is required (a list of rows)", { field: "dataframe_split.data" });
  }
  let columns: string[] | undefined;
  if (value.columns !== undefined) {
    if (!Array.isArray(value.columns)) throw bad("dataframe_split.columns", "dataframe_split.columns must be a list of column names");
    columns = value.columns.map((c, i) => {
      if (typeof c !== "string" && typeof c !== "number") throw bad(`dataframe_split.columns[${i}]`, `dataframe_split.columns[${i}] must be a string`);
      return String(c);
    });
  }
  if (value.index !== undefined && !Array.isArray(value.index)) throw bad("dataframe_split.index", "dataframe_split.index must be a list");
  const rows = data as unknown[];
  return {
    source: "dataframe_split",
    columns,
    rowCount: rows.length,
    keyed: false,
    width: (r) => {
      const row = rows[r];
      return Array.isArray(row) ? row.length : 1;
    },
    cell: (r, c) => {
      const row = rows[r];
      return Array.isArray(row) ? row[c] : c === 0 ? row : undefined;
    },
    cellPath: (r, c) => `dataframe_split.data[${r}][${c}]`,
  };
}

export function recordsTable(value: unknown, source: string, columns: readonly string[]): Table {
  if (!Array.isArray(value)) throw bad(source, `${source} must be a list of objects, one per row`);
  for (let r = 0; r < value.length; r++) {
    if (!isRecord(value[r])) throw bad(`${source}[${r}]`, `${source}[${r}] must be an object keyed by column name`);
  }
  const rows = value as Record<string, unknown>[];
  return {
    source,
    columns,
    rowCount: rows.length,
    keyed: true,
    width: () => columns.length,
    cell: (r, c) => (rows[r] as Record<string, unknown>)[columns[c] as string],
    cellPath: (r, c) => `${source}[${r}].${columns[c] ?? c}`,
  };
}

/** `{"inputs": {"col": [v0, v1, ...], ...}}` read as columns of a table. */
function columnarTable(value: Record<string, unknown>, source: string, columns: readonly string[]): Table {
  let rowCount: number | undefined;
  for (const name of columns) {
    const col = value[name];
    if (col === undefined) continue;
    if (!Array.isArray(col)) throw bad(`${source}.${name}`, `${source}.${name} must be a list with one value per row`);
    if (rowCount !== undefined && col.length !== rowCount) {
      throw new MlshipError("MLSHIP_ERR_INPUT_SHAPE", `${source}.${name} has ${col.length} values but other columns have ${rowCount}`, {
        field: `${source}.${name}`,
      });
    }
    rowCount = col.length;
  }
  return {
    source,
    columns: columns.filter((c) => value[c] !== undefined),
    rowCount: rowCount ?? 0,
    keyed: true,
    width: () => columns.length,
    cell: (r, c) => {
      const col = value[columns[c] as string];
      return Array.isArray(col) ? col[r] : undefined;
    },
    cellPath: (r, c) => `${source}.${columns[c] ?? c}[${r}]`,
  };
}

function csvTable(text: string): Table {
  const { header, rows } = parseCsv(text);
  return {
    source: "csv",
    columns: header,
    rowCount: rows.length,
    keyed: false,
    width: (r) => (rows[r] as string[]).length,
    cell: (r, c) => (rows[r] as string[])[c],
    // CSV line numbers: the header is line 1.
    cellPath: (r, c) => `line ${r + 2} column ${c + 1}`,
  };
}

function dtypeNote(spec: TensorSpec): string {
  return `input '${spec.name}' is ${spec.dtype} ${shapeText(spec.shape)}`;
}

function isMissing(v: unknown): boolean {
  return v === undefined || v === null || v === "";
}

/** Copies `cols` (indexes into the table) of every row into one tensor, row-major. */
function packColumns(table: Table, cols: readonly number[], names: readonly (string | undefined)[], spec: TensorSpec, trailing: number[]): Tensor {
  const n = table.rowCount;
  const k = cols.length;
  const out = allocate(spec.dtype, n * k);
  const write = castWriter(spec.dtype);
  const allowEmpty = spec.dtype === "string";
  for (let r = 0; r < n; r++) {
    const base = r * k;
    for (let j = 0; j < k; j++) {
      const c = cols[j] as number;
      const v = table.cell(r, c);
      let reason: string | undefined;
      if (v === undefined && table.keyed) {
        const name = names[j] ?? String(c);
        throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", `${table.source}[${r}]: missing column '${name}'`, {
          field: name,
          details: { row: r },
        });
      }
      if (isMissing(v) && !(allowEmpty && v === "")) reason = "the value is missing";
      else reason = write(out, base + j, v);
      if (reason !== undefined) {
        const name = names[j];
        const field = name ?? table.cellPath(r, c);
        const where = name === undefined ? field : `column '${name}' row ${r}`;
        throw new MlshipError("MLSHIP_ERR_INPUT_DTYPE", `${where}: ${reason} (${dtypeNote(spec)})`, {
          field,
          details: { row: r, column: name ?? c },
        });
      }
    }
  }
  return { dtype: spec.dtype, shape: [n, ...trailing], data: out };
}

/** How deep one row of `instances`/`inputs` may nest; far beyond any tensor rank, well within the stack. */
const MAX_ROW_LEVELS = 32;

/**
 * Packs a list of rows (each a scalar or a nested array) into a tensor for `spec`, checking every row has the
 * same number of values and that it fills the trailing dimensions.
 */
function packRows(rows: readonly unknown[], spec: TensorSpec, source: string, cellAt?: (r: number) => unknown): Tensor {
  const n = rows.length;
  const get = cellAt ?? ((r: number) => rows[r]);
  const first = n > 0 ? countLeaves(get(0), MAX_ROW_LEVELS, `${source}[0]`) : 0;
  const trailingSpec = spec.shape.slice(1);
  const trailing = n > 0 ? fitTrailing(trailingSpec, first) : trailingSpec.map((d) => (d < 0 ? 0 : d));
  if (trailing === undefined) {
    throw new MlshipError(
      "MLSHIP_ERR_INPUT_SHAPE",
      `${source}[0] has ${first} values but ${dtypeNote(spec)}, so each row needs ${trailingSpec.length === 0 ? 1 : shapeText(trailingSpec)} values`,
      { field: `${source}[0]` },
    );
  }
  const out = allocate(spec.dtype, n * first);
  const write = castWriter(spec.dtype);
  let pos = 0;
  const path: number[] = [];
  const walk = (v: unknown, r: number): void => {
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        path.push(i);
        walk(v[i], r);
        path.pop();
      }
      return;
    }
    const reason = isMissing(v) && !(spec.dtype === "string" && v === "") ? "the value is missing" : write(out, pos, v);
    if (reason !== undefined) {
      const field = `${source}[${r}]${path.map((p) => `[${p}]`).join("")}`;
      throw new MlshipError("MLSHIP_ERR_INPUT_DTYPE", `${field}: ${reason} (${dtypeNote(spec)})`, { field });
    }
    pos++;
  };
  for (let r = 0; r < n; r++) {
    const v = get(r);
    const count = countLeaves(v, MAX_ROW_LEVELS, `${source}[${r}]`);
    if (count !== first) {
      throw new MlshipError("MLSHIP_ERR_INPUT_SHAPE", `${source}[${r}] has ${count} values but ${source}[0] has ${first}`, {
        field: `${source}[${r}]`,
      });
    }
    path.length = 0;
    walk(v, r);
  }
  return { dtype: spec.dtype, shape: spec.shape.length === 0 ? [] : [n, ...trailing], data: out };
}

function howToDeclare(ctx: ModelContext): string {
  return (
    `model '${ctx.name}' has no declared columns, so rows given as objects cannot be put in order ` +
    `(JSON key order is not a contract). Declare the columns at registration (mlship models register PATH --name ${ctx.name} ` +
    `--columns a,b,c, or --columns-from train.csv --label-column label) or in mlship.yaml under signature.columns; ` +
    `or send dataframe_split / CSV, whose columns are positional`
  );
}

function missingColumn(table: Table, name: string, ctx: ModelContext): MlshipError {
  return new MlshipError(
    "MLSHIP_ERR_INPUT_MISSING",
    `${table.source}: missing column '${name}' (model '${ctx.name}' needs columns: ${(ctx.columns ?? []).join(", ")})`,
    { field: name },
  );
}

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Feeds from tabular data, per conventions.md "Inputs". */
export function tableToFeeds(tableIn: Table, ctx: ModelContext): Record<string, Tensor> {
  let table = tableIn;
  // After select_columns the chosen columns, in their order, are what feeds the tensor.
  let selected = false;
  if (ctx.tabularSteps.length > 0) {
    table = applyTabularSteps(tableIn, ctx);
    selected = table !== tableIn && ctx.tabularSteps.some((s) => s.type === "select_columns");
  }
  if (table.rowCount === 0) throw bad(table.source, `${table.source} has no rows`);
  const feeds: Record<string, Tensor> = {};
  // Column positions by name (the first of a repeated name), made only where a name is looked up.
  let colIndexMap: Map<string, number> | undefined;
  const colIndex = (): Map<string, number> => {
    if (colIndexMap === undefined) {
      const map = new Map<string, number>();
      table.columns?.forEach((c, i) => {
        if (!map.has(c)) map.set(c, i);
      });
      colIndexMap = map;
    }
    return colIndexMap;
  };
  const target = ctx.columnsInput;

  const byNameCells = (spec: TensorSpec): Tensor => {
    const c = colIndex().get(spec.name);
    if (c === undefined) {
      throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", `${table.source}: missing column '${spec.name}' for model input '${spec.name}'`, {
        field: spec.name,
      });
    }
    const rows = new Array<unknown>(table.rowCount);
    return packRows(rows, spec, `${table.source}.${spec.name}`, (r) => table.cell(r, c));
  };

  if (ctx.columns !== undefined && target !== undefined && !selected) {
    const declared = ctx.columns;
    let cols: number[];
    if (table.columns === undefined) {
      // Positional data (dataframe_split without column names) lines up with the declared order.
      const w = table.width(0);
      if (w !== declared.length) {
        throw new MlshipError(
          "MLSHIP_ERR_INPUT_SHAPE",
          `${table.source}: rows have ${w} values but model '${ctx.name}' needs ${declared.length} columns (${declared.join(", ")}); name the columns to send them in any order`,
          { field: `${table.source}.data[0]` },
        );
      }
      cols = declared.map((_, i) => i);
    } else if (sameNames(table.columns, declared)) {
      // The usual request: the declared columns in their order. (Declared names are unique, so each one's first
      // position is its own: the lookup below would give the same.) Comparing is cheaper than hashing the names.
      cols = declared.map((_, i) => i);
    } else {
      const index = colIndex();
      cols = declared.map((name) => {
        const i = index.get(name);
        if (i === undefined) throw missingColumn(table, name, ctx);
        return i;
      });
    }
    const trailing = ctx.columnsTrailing;
    if (trailing === undefined) {
      throw new MlshipError(
        "MLSHIP_ERR_PACKAGE_INVALID",
        `model '${ctx.name}': ${declared.length} declared columns do not fit ${dtypeNote(target)}`,
        { field: "signature.columns" },
      );
    }
    if (!table.keyed) checkWidths(table, table.columns?.length ?? declared.length);
    feeds[target.name] = packColumns(table, cols, declared, target, trailing);
    for (const spec of ctx.inputs) if (spec.name !== target.name) feeds[spec.name] = byNameCells(spec);
    return feeds;
  }

  const names = table.columns;
  const allByName = !selected && names !== undefined && ctx.inputs.every((s) => colIndex().has(s.name)) && (ctx.inputs.length > 1 || names.length === 1);
  if (allByName) {
    for (const spec of ctx.inputs) feeds[spec.name] = byNameCells(spec);
    return feeds;
  }
  if (ctx.inputs.length !== 1 || target === undefined) {
    const missing = ctx.inputs.find((s) => !colIndex().has(s.name));
    throw new MlshipError(
      "MLSHIP_ERR_INPUT_MISSING",
      `${table.source}: model '${ctx.name}' has inputs ${ctx.inputs.map((s) => `'${s.name}'`).join(", ")}; give one column per input${missing === undefined ? "" : ` (missing '${missing.name}')`}`,
      { field: missing?.name ?? table.source },
    );
  }
  if (table.keyed) throw bad(table.source, howToDeclare(ctx));
  const width = names?.length ?? table.width(0);
  const trailing = fitTrailing(target.shape.slice(1), width);
  if (trailing === undefined) {
    throw new MlshipError(
      "MLSHIP_ERR_INPUT_SHAPE",
      `${table.source}: ${width} columns do not fit ${dtypeNote(target)} (each row needs ${shapeText(target.shape.slice(1))} values)`,
      { field: table.source === "csv" ? "header" : `${table.source}.columns` },
    );
  }
  checkWidths(table, width);
  const cols = Array.from({ length: width }, (_, i) => i);
  feeds[target.name] = packColumns(table, cols, names ?? new Array<undefined>(width), target, trailing);
  return feeds;
}

function checkWidths(table: Table, width: number): void {
  for (let r = 0; r < table.rowCount; r++) {
    const w = table.width(r);
    if (w !== width) {
      throw new MlshipError("MLSHIP_ERR_INPUT_SHAPE", `${table.source} row ${r} has ${w} values but there are ${width} columns`, {
        field: table.source === "dataframe_split" ? `dataframe_split.data[${r}]` : `row ${r}`,
      });
    }
  }
}

/**
 * Rows given as objects: matched by declared column names, or by model input names (one tensor per key).
 * Without either there is no order to put the values in.
 */
function keyedRows(value: unknown, source: string, ctx: ModelContext): Table {
  if (ctx.columns !== undefined) return recordsTable(value, source, ctx.columns);
  const select = ctx.tabularSteps.find((s) => s.type === "select_columns");
  if (select !== undefined) return recordsTable(value, source, select.columns);
  const first: unknown = Array.isArray(value) ? value[0] : undefined;
  const names = ctx.inputs.map((s) => s.name);
  if (isRecord(first) && names.every((n) => n in first)) return recordsTable(value, source, names);
  if (ctx.inputs.length > 1 && isRecord(first)) {
    const missing = names.find((n) => !(n in first)) as string;
    throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", `${source}[0]: missing input '${missing}' (model '${ctx.name}' has inputs ${names.join(", ")})`, {
      field: missing,
    });
  }
  if (!Array.isArray(value)) throw bad(source, `${source} must be a list of objects, one per row`);
  throw bad(source, howToDeclare(ctx));
}

function tensorsToFeeds(value: unknown, source: string, ctx: ModelContext): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  if (Array.isArray(value)) {
    if (value.length > 0 && value.every(isRecord)) return tableToFeeds(keyedRows(value, source, ctx), ctx);
    if (ctx.inputs.length !== 1) {
      throw bad(source, `model '${ctx.name}' has ${ctx.inputs.length} inputs (${ctx.inputs.map((s) => s.name).join(", ")}); send ${source} as objects keyed by input name`);
    }
    const spec = ctx.inputs[0] as TensorSpec;
    if (value.length === 0) throw bad(source, `${source} has no rows`);
    feeds[spec.name] = packRows(value, spec, source);
    return feeds;
  }
  if (isRecord(value)) {
    const keys = Object.keys(value);
    if (ctx.columns !== undefined && ctx.columns.some((c) => keys.includes(c)) && !ctx.inputs.every((s) => keys.includes(s.name))) {
      return tableToFeeds(columnarTable(value, source, ctx.columns), ctx);
    }
    for (const spec of ctx.inputs) {
      const v = value[spec.name];
      if (v === undefined) {
        throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", `${source}: missing input '${spec.name}' (model '${ctx.name}' has inputs ${ctx.inputs.map((s) => s.name).join(", ")})`, {
          field: `${source}.${spec.name}`,
        });
      }
      if (!Array.isArray(v)) throw bad(`${source}.${spec.name}`, `${source}.${spec.name} must be a list (one entry per row)`);
      if (v.length === 0) throw bad(`${source}.${spec.name}`, `${source}.${spec.name} has no rows`);
      feeds[spec.name] = packRows(v, spec, `${source}.${spec.name}`);
    }
    return feeds;
  }
  throw bad(source, `${source} must be a list of rows or an object of named tensors`);
}

function firstDim(feeds: Record<string, Tensor>): number {
  for (const t of Object.values(feeds)) return t.shape.length > 0 ? (t.shape[0] as number) : 1;
  return 0;
}

/** MLflow scoring JSON (or CSV, or records) to feeds; see conventions.md for the casting and orientation rules. */
export function mlflowToFeeds(
  input: { kind: "mlflow"; body: unknown } | { kind: "csv"; text: string } | { kind: "records"; records: readonly unknown[] },
  ctx: ModelContext,
): PreparedMlflow {
  if (input.kind === "csv") {
    const feeds = tableToFeeds(csvTable(input.text), ctx);
    return { feeds, rows: firstDim(feeds), orientation: "records", parameters: undefined };
  }
  if (input.kind === "records") {
    const feeds = tableToFeeds(keyedRows(input.records, "records", ctx), ctx);
    return { feeds, rows: firstDim(feeds), orientation: "records", parameters: undefined };
  }
  const body = input.body;
  const formats = `{${MLFLOW_FORMATS.map((f) => `'${f}'`).join(", ")}}`;
  if (!isRecord(body)) {
    throw bad("body", `The input must be a JSON dictionary with exactly one of the input fields ${formats}`);
  }
  const present = MLFLOW_FORMATS.filter((f) => body[f] !== undefined);
  if (present.length !== 1) {
    throw bad(
      present.length === 0 ? "body" : present.join(","),
      `The input must be a JSON dictionary with exactly one of the input fields ${formats}. Received dictionary with input fields: ${JSON.stringify(Object.keys(body))}`,
    );
  }
  let parameters: Record<string, unknown> | undefined;
  if (body.params !== undefined) {
    if (!isRecord(body.params)) throw bad("params", "params must be an object of parameter names to values");
    parameters = body.params;
  }
  const format = present[0] as (typeof MLFLOW_FORMATS)[number];
  const value = body[format];
  let feeds: Record<string, Tensor>;
  let orientation: Orientation = "records";
  switch (format) {
    case "dataframe_split":
      feeds = tableToFeeds(splitTable(value), ctx);
      break;
    case "dataframe_records":
      feeds = tableToFeeds(keyedRows(value, "dataframe_records", ctx), ctx);
      break;
    case "instances":
    case "inputs":
      feeds = tensorsToFeeds(value, format, ctx);
      orientation = "columnar";
      break;
  }
  return { feeds, rows: firstDim(feeds), orientation, parameters };
}

