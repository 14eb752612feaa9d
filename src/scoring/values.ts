import { MlshipError } from "../core/index.js";
import type { DType, TensorData } from "../core/index.js";
import { parseNumber } from "../package/index.js";
import { toFloat16Bits } from "../core/index.js";

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Counts the scalars of a JSON value (a scalar counts 1, an array the scalars inside it). Arrays nested more
 * than `maxLevels` deep are a shape error naming `field`: request data is client-controlled, and the walks over
 * it are recursive, so depth must be bounded before any of them runs.
 */
export function countLeaves(value: unknown, maxLevels: number, field: string): number {
  const count = (v: unknown, level: number): number => {
    if (!Array.isArray(v)) return 1;
    if (level > maxLevels) {
      throw new MlshipError("MLSHIP_ERR_INPUT_SHAPE", `${field} is nested more than ${maxLevels} level${maxLevels === 1 ? "" : "s"} deep`, { field });
    }
    let n = 0;
    for (let i = 0; i < v.length; i++) {
      const x: unknown = v[i];
      n += Array.isArray(x) ? count(x, level + 1) : 1;
    }
    return n;
  };
  return count(value, 1);
}

/**
 * Writes one JSON value into tensor storage at an index. Returns undefined on success, or a short reason
 * (e.g. "expected an integer, got 1.5") that the caller turns into an error naming the field. Returning a
 * reason instead of throwing keeps the per-element hot loop free of try/catch and allocation.
 */
export type ValueWriter = (out: TensorData, index: number, value: unknown) => string | undefined;

const INT_RANGE: Partial<Record<DType, readonly [number, number]>> = {
  int8: [-128, 127],
  int16: [-32768, 32767],
  int32: [-2147483648, 2147483647],
  uint8: [0, 255],
  uint16: [0, 65535],
  uint32: [0, 4294967295],
};

const INT64_MIN = -(2 ** 63);
const INT64_LIMIT = 2 ** 63;
const UINT64_LIMIT = 2 ** 64;

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`;
  if (typeof value === "object") return "an object";
  return `${typeof value} ${String(value)}`;
}

/** MLflow's casts into numeric tensors: numbers, numeric strings, and booleans as 0/1. */
function castNumber(v: unknown): number | undefined {
  if (typeof v === "number") return v;
  if (typeof v === "string") return parseNumber(v);
  if (typeof v === "boolean") return v ? 1 : 0;
  return undefined;
}

function strictNumber(v: unknown): number | undefined {
  return typeof v === "number" ? v : undefined;
}

/**
 * Writers for the numeric dtypes, strict (V2: JSON numbers only) or casting (MLflow); integer dtypes refuse
 * fractional and out-of-range values either way, as MLflow refuses unsafe float-to-int casts.
 */
function numericWriter(dtype: DType, strict: boolean): ValueWriter {
  const toNumber = strict ? strictNumber : castNumber;
  const isFloat = dtype === "float16" || dtype === "float32" || dtype === "float64";
  const notNumber = (v: unknown): string =>
    strict ? `expected ${isFloat ? "a number" : "an integer"}, got ${describe(v)}` : `${describe(v)} is not a number`;
  const notInteger = (v: unknown): string =>
    strict ? `expected an integer, got ${describe(v)}` : `${describe(v)} is not an integer (the input is ${dtype})`;
  switch (dtype) {
    case "float32":
    case "float64":
      return (out, i, v) => {
        const n = toNumber(v);
        if (n === undefined) return notNumber(v);
        (out as Float32Array)[i] = n;
        return undefined;
      };
    case "float16":
      return (out, i, v) => {
        const n = toNumber(v);
        if (n === undefined) return notNumber(v);
        (out as Uint16Array)[i] = toFloat16Bits(n);
        return undefined;
      };
    case "int64":
    case "uint64": {
      const min = dtype === "int64" ? INT64_MIN : 0;
      const limit = dtype === "int64" ? INT64_LIMIT : UINT64_LIMIT;
      return (out, i, v) => {
        const n = toNumber(v);
        if (n === undefined) return notNumber(v);
        if (!Number.isInteger(n)) return notInteger(v);
        if (n < min || n >= limit) return `${n} is out of range for ${dtype}`;
        (out as BigInt64Array)[i] = BigInt(n);
        return undefined;
      };
    }
    default: {
      const [min, max] = INT_RANGE[dtype] ?? [0, 0];
      return (out, i, v) => {
        const n = toNumber(v);
        if (n === undefined) return notNumber(v);
        if (!Number.isInteger(n)) return notInteger(v);
        if (n < min || n > max) return `${n} is out of range for ${dtype} [${min}, ${max}]`;
        (out as Int32Array)[i] = n;
        return undefined;
      };
    }
  }
}

const strictBool: ValueWriter = (out, i, v) => {
  if (typeof v !== "boolean") return `expected true or false, got ${describe(v)}`;
  (out as Uint8Array)[i] = v ? 1 : 0;
  return undefined;
};

const strictString: ValueWriter = (out, i, v) => {
  if (typeof v !== "string") return `expected a string, got ${describe(v)}`;
  (out as string[])[i] = v;
  return undefined;
};

const castBool: ValueWriter = (out, i, v) => {
  let b: boolean | undefined;
  if (typeof v === "boolean") b = v;
  else if (v === 0 || v === 1) b = v === 1;
  else if (typeof v === "string") {
    const s = v.trim().toLowerCase();
    if (s === "true" || s === "1") b = true;
    else if (s === "false" || s === "0") b = false;
  }
  if (b === undefined) return `${describe(v)} is not a boolean`;
  (out as Uint8Array)[i] = b ? 1 : 0;
  return undefined;
};

const castString: ValueWriter = (out, i, v) => {
  if (typeof v === "string") (out as string[])[i] = v;
  else if (typeof v === "number" || typeof v === "boolean") (out as string[])[i] = String(v);
  else return `${describe(v)} is not a string`;
  return undefined;
};

// Writers depend on the dtype only: built once, not per request.
const STRICT = new Map<DType, ValueWriter>();
const CAST = new Map<DType, ValueWriter>();

/**
 * V2 is strict (conventions.md): numbers for numeric datatypes (integers in range for integer types), booleans
 * for BOOL, strings for BYTES.
 */
export function strictWriter(dtype: DType): ValueWriter {
  let w = STRICT.get(dtype);
  if (w === undefined) {
    w = dtype === "bool" ? strictBool : dtype === "string" ? strictString : numericWriter(dtype, true);
    STRICT.set(dtype, w);
  }
  return w;
}

/**
 * The MLflow path casts as MLflow does: numbers and numeric strings into numeric tensors (booleans as 0/1),
 * "true"/"false" and 0/1 into BOOL, anything scalar into strings. Integer tensors refuse fractional values
 * (MLflow refuses unsafe float-to-int casts).
 */
export function castWriter(dtype: DType): ValueWriter {
  let w = CAST.get(dtype);
  if (w === undefined) {
    w = dtype === "bool" ? castBool : dtype === "string" ? castString : numericWriter(dtype, false);
    CAST.set(dtype, w);
  }
  return w;
}

/** Formats a shape for messages: [-1,30]. */
export function shapeText(shape: readonly number[]): string {
  return `[${shape.join(",")}]`;
}

/**
 * Concrete trailing dimensions for `count` elements per row given a spec's trailing dims (-1 = any).
 * One -1 is inferred from the count; undefined when the count cannot fill them.
 */
export function fitTrailing(trailing: readonly number[], count: number): number[] | undefined {
  let known = 1;
  let unknown = -1;
  for (let i = 0; i < trailing.length; i++) {
    const d = trailing[i] as number;
    if (d < 0) {
      if (unknown >= 0) {
        // Several free axes: only a count that fits with all but the last free axis at 1 is unambiguous.
        return undefined;
      }
      unknown = i;
    } else known *= d;
  }
  if (unknown < 0) return known === count ? trailing.slice() : undefined;
  if (known === 0 || count % known !== 0) return undefined;
  const dims = trailing.slice();
  dims[unknown] = count / known;
  return dims;
}

/** Whether concrete `shape` fits a signature shape (same rank, -1 matches any size). */
export function shapeFits(spec: readonly number[], shape: readonly number[]): boolean {
  if (spec.length !== shape.length) return false;
  for (let i = 0; i < spec.length; i++) {
    const s = spec[i] as number;
    if (s >= 0 && s !== shape[i]) return false;
  }
  return true;
}

export { toFloat16Bits };
