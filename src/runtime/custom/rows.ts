/**
 * Tensors <-> rows for custom wrappers (runs inside the wrapper's child process, so it imports nothing outside
 * this folder). A wrapper sees one object per row with a value per declared input: a scalar for a `[-1]` input,
 * nested arrays for trailing dimensions (`[-1, 2, 3]` -> `[[a, b, c], [d, e, f]]`), strings for string tensors.
 * It answers one object per row with a value per declared output; `rowsToTensors` checks and packs them into
 * the declared dtypes and shapes, naming the row and output of the first value that does not fit.
 */
import type { WireDType, WireTensor, WireTensorSpec } from "./protocol.js";

/** A row count or value that does not fit the signature; `field` names where (`rows[2].label`). */
export class RowsError extends Error {
  constructor(
    message: string,
    readonly field: string,
  ) {
    super(message);
    this.name = "RowsError";
  }
}

type Scalar = number | boolean | string | bigint;

function scalarAt(t: WireTensor, i: number): Scalar {
  const v = (t.data as ArrayLike<number | bigint | string>)[i] as number | bigint | string;
  if (typeof v === "bigint") return Number.isSafeInteger(Number(v)) ? Number(v) : v;
  if (t.dtype === "bool") return v !== 0;
  return v;
}

/** The rows a wrapper's `predict` gets: one object per row, a value per input (in `specs` order). */
export function feedsToRows(specs: readonly WireTensorSpec[], feeds: Record<string, WireTensor>): Array<Record<string, unknown>> {
  let rows: number | undefined;
  const columns: Array<{ name: string; tensor: WireTensor; inner: number[]; step: number }> = [];
  for (const spec of specs) {
    const tensor = feeds[spec.name];
    if (tensor === undefined) throw new RowsError(`input '${spec.name}' is missing`, spec.name);
    const n = tensor.shape.length === 0 ? 1 : (tensor.shape[0] as number);
    if (rows !== undefined && n !== rows) {
      throw new RowsError(`input '${spec.name}' has ${n} rows but the other inputs have ${rows}`, spec.name);
    }
    rows = n;
    const inner = tensor.shape.slice(1);
    columns.push({ name: spec.name, tensor, inner, step: inner.reduce((a, b) => a * b, 1) });
  }
  const out = new Array<Record<string, unknown>>(rows ?? 0);
  for (let r = 0; r < out.length; r++) {
    const row: Record<string, unknown> = {};
    for (const c of columns) row[c.name] = c.inner.length === 0 ? scalarAt(c.tensor, r) : nest(c.tensor, c.inner, r * c.step);
    out[r] = row;
  }
  return out;
}

function nest(t: WireTensor, dims: readonly number[], offset: number): unknown[] {
  const n = dims[0] as number;
  const rest = dims.slice(1);
  const step = rest.reduce((a, b) => a * b, 1);
  const out = new Array<unknown>(n);
  for (let i = 0; i < n; i++) out[i] = rest.length === 0 ? scalarAt(t, offset + i) : nest(t, rest, offset + i * step);
  return out;
}

const INT_RANGE: Partial<Record<WireDType, readonly [number, number]>> = {
  int8: [-128, 127], int16: [-32768, 32767], int32: [-2147483648, 2147483647],
  uint8: [0, 255], uint16: [0, 65535], uint32: [0, 4294967295],
};

function allocate(dtype: WireDType, count: number): WireTensor["data"] {
  switch (dtype) {
    case "float32": return new Float32Array(count);
    case "float64": return new Float64Array(count);
    case "int8": return new Int8Array(count);
    case "int16": return new Int16Array(count);
    case "int32": return new Int32Array(count);
    case "int64": return new BigInt64Array(count);
    case "uint8": return new Uint8Array(count);
    case "uint16": return new Uint16Array(count);
    case "uint32": return new Uint32Array(count);
    case "uint64": return new BigUint64Array(count);
    case "bool": return new Uint8Array(count);
    case "string": return new Array<string>(count).fill("");
    case "float16": throw new RowsError("float16 outputs are not supported for custom wrappers (declare float32)", "dtype");
  }
}

function describe(value: unknown): string {
  if (value === undefined) return "undefined";
  if (value === null) return "null";
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === "string") return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`;
  if (typeof value === "object") return "an object";
  if (typeof value === "bigint") return `${value}n`;
  return `${typeof value} ${String(value)}`;
}

/** Checks one element against `dtype` and stores it at `data[at]`; returns why it does not fit, or undefined. */
function write(dtype: WireDType, data: WireTensor["data"], at: number, v: unknown): string | undefined {
  switch (dtype) {
    case "string":
      if (typeof v !== "string") return `expected a string, got ${describe(v)}`;
      (data as string[])[at] = v;
      return undefined;
    case "bool":
      if (typeof v !== "boolean" && v !== 0 && v !== 1) return `expected a boolean, got ${describe(v)}`;
      (data as Uint8Array)[at] = v === true || v === 1 ? 1 : 0;
      return undefined;
    case "float32":
    case "float64":
      if (typeof v !== "number") return `expected a number, got ${describe(v)}`;
      (data as Float64Array)[at] = v;
      return undefined;
    case "int64":
    case "uint64": {
      let big: bigint;
      if (typeof v === "bigint") big = v;
      else if (typeof v === "number" && Number.isSafeInteger(v)) big = BigInt(v);
      else return `expected an integer, got ${describe(v)}`;
      const fits = dtype === "int64" ? BigInt.asIntN(64, big) === big : BigInt.asUintN(64, big) === big;
      if (!fits) return `${describe(v)} does not fit ${dtype}`;
      (data as BigInt64Array | BigUint64Array)[at] = big;
      return undefined;
    }
    default: {
      if (typeof v !== "number" || !Number.isInteger(v)) return `expected an integer, got ${describe(v)}`;
      const range = INT_RANGE[dtype];
      if (range !== undefined && (v < range[0] || v > range[1])) return `${v} does not fit ${dtype} (${range[0]}..${range[1]})`;
      (data as Int32Array)[at] = v;
      return undefined;
    }
  }
}

/** The dims of a nested array value (`[[1,2],[3,4]]` -> [2, 2]), following its first elements. */
function dimsOf(value: unknown): number[] {
  const dims: number[] = [];
  let v = value;
  while (Array.isArray(v)) {
    dims.push(v.length);
    v = v[0];
  }
  return dims;
}

/**
 * Packs the wrapper's answer into one tensor per declared output (`[rows, ...trailing]`). A `content_type: json`
 * output holds each row's value as its JSON text. Throws RowsError naming the row and output that does not fit.
 */
export function rowsToTensors(specs: readonly WireTensorSpec[], answer: unknown, rows: number): Record<string, WireTensor> {
  if (!Array.isArray(answer)) throw new RowsError(`predict must return an array of rows, got ${describe(answer)}`, "rows");
  if (answer.length !== rows) throw new RowsError(`predict returned ${answer.length} rows for ${rows} input rows (one output row per input row)`, "rows");
  answer.forEach((row, r) => {
    if (typeof row !== "object" || row === null || Array.isArray(row)) {
      throw new RowsError(`rows[${r}] must be an object with a value per output, got ${describe(row)}`, `rows[${r}]`);
    }
  });
  const records = answer as Array<Record<string, unknown>>;
  const out: Record<string, WireTensor> = {};
  for (const spec of specs) {
    const field = (r: number): string => `rows[${r}].${spec.name}`;
    for (let r = 0; r < rows; r++) {
      if ((records[r] as Record<string, unknown>)[spec.name] === undefined) {
        throw new RowsError(`${field(r)}: output '${spec.name}' is missing (declared outputs: ${specs.map((s) => s.name).join(", ")})`, field(r));
      }
    }
    if (spec.content_type === "json") {
      const data = new Array<string>(rows);
      for (let r = 0; r < rows; r++) {
        let text: string | undefined;
        try {
          text = JSON.stringify((records[r] as Record<string, unknown>)[spec.name]);
        } catch (error) {
          throw new RowsError(`${field(r)}: not a JSON value (${(error as Error).message})`, field(r));
        }
        if (text === undefined) throw new RowsError(`${field(r)}: not a JSON value`, field(r));
        data[r] = text;
      }
      out[spec.name] = { dtype: "string", shape: [rows], data };
      continue;
    }
    // Trailing dims: declared ones are fixed; a -1 takes the first row's size, and every row must match it.
    const declared = spec.shape.slice(1);
    const first = rows > 0 ? dimsOf((records[0] as Record<string, unknown>)[spec.name]) : [];
    const trailing = declared.map((d, i) => (d >= 0 ? d : (first[i] ?? 0)));
    const step = trailing.reduce((a, b) => a * b, 1);
    const data = allocate(spec.dtype, rows * step);
    for (let r = 0; r < rows; r++) {
      const value = (records[r] as Record<string, unknown>)[spec.name];
      let pos = r * step;
      const walk = (v: unknown, depth: number, path: string): void => {
        if (depth === trailing.length) {
          const why = write(spec.dtype, data, pos, v);
          if (why !== undefined) throw new RowsError(`${path}: ${why} (output '${spec.name}' is ${spec.dtype} [${spec.shape.join(", ")}])`, path);
          pos++;
          return;
        }
        const n = trailing[depth] as number;
        if (!Array.isArray(v) || v.length !== n) {
          throw new RowsError(
            `${path}: expected an array of ${n}, got ${describe(v)} (output '${spec.name}' is ${spec.dtype} [${spec.shape.join(", ")}])`,
            path,
          );
        }
        // Not forEach: it skips holes (`new Array(n)` partly filled), which would shift the values after them.
        for (let i = 0; i < n; i++) walk(v[i], depth + 1, `${path}[${i}]`);
      };
      walk(value, 0, field(r));
    }
    out[spec.name] = { dtype: spec.dtype, shape: [rows, ...trailing], data };
  }
  return out;
}
