import { MlshipError } from "../core/index.js";
import type { DType } from "../core/index.js";
import type { PreprocessStep } from "./types.js";

const INT_RANGE: Partial<Record<DType, [number, number]>> = {
  int8: [-128, 127], int16: [-32768, 32767], int32: [-2147483648, 2147483647],
  uint8: [0, 255], uint16: [0, 65535], uint32: [0, 4294967295],
  int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER], uint64: [0, Number.MAX_SAFE_INTEGER],
};

/**
 * Runs the tabular pre-processing steps (select_columns, cast) on rows of a table; image steps are skipped (they
 * work on tensors). Returns new arrays; the input rows are not modified.
 *
 * cast to a float dtype: numbers pass, numeric text is parsed (surrounding spaces allowed), booleans become 1/0,
 * null/empty becomes NaN (a missing value, as pandas reads it). Integer dtypes additionally need a whole number
 * in range. bool accepts true/false, 1/0 and their text. string turns numbers and booleans into text. Anything
 * else is a 400 (MLSHIP_ERR_INPUT_DTYPE) naming the column and the row (0-based).
 */
export function applyTabularPreprocess(columns: readonly string[], rows: readonly unknown[][],
  steps: readonly PreprocessStep[]): { columns: string[]; rows: unknown[][] } {
  let cols = [...columns];
  let data: unknown[][] = rows as unknown[][];
  let copied = false;
  for (const step of steps) {
    if (step.type === "select_columns") {
      const index = new Map(cols.map((c, i) => [c, i]));
      const picks = step.columns.map((name) => {
        const i = index.get(name);
        if (i === undefined) {
          throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", `column ${JSON.stringify(name)} is missing from the input ` +
            `(got: ${cols.join(", ")})`, { field: name });
        }
        return i;
      });
      data = data.map((row) => {
        const out = new Array<unknown>(picks.length);
        for (let j = 0; j < picks.length; j++) out[j] = row[picks[j] as number];
        return out;
      });
      cols = [...step.columns];
      copied = true;
    } else if (step.type === "cast") {
      const targets = step.columns === undefined ? cols.map((_, i) => i) : step.columns.map((name) => {
        const i = cols.indexOf(name);
        if (i < 0) {
          throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", `column ${JSON.stringify(name)} (to cast to ${step.dtype
          }) is missing from the input`, { field: name });
        }
        return i;
      });
      const cast = caster(step.dtype);
      if (!copied) {
        data = data.map((row) => row.slice());
        copied = true;
      }
      for (let r = 0; r < data.length; r++) {
        const row = data[r] as unknown[];
        for (const i of targets) {
          const result = cast(row[i]);
          if (result.ok) row[i] = result.value;
          else {
            const name = cols[i] as string;
            throw new MlshipError("MLSHIP_ERR_INPUT_DTYPE", `column ${JSON.stringify(name)} row ${r}: ${
              result.why} (cast to ${step.dtype})`, { field: name, details: { row: r } });
          }
        }
      }
    }
  }
  return { columns: cols, rows: copied ? data : data.map((row) => row.slice()) };
}

/**
 * Numeric text as pandas/numpy read it when casting a column: decimal and exponent forms, `nan`, `inf`,
 * `-inf`, `infinity` (any case, surrounding spaces allowed); undefined when the text is not a number.
 */
export function parseNumber(text: string): number | undefined {
  // Every CSV cell comes through here: plain numbers take the fast path (Number() skips surrounding spaces
  // itself); only text that is not one is trimmed and lower-cased to look for the special words.
  const n = Number(text);
  if (!Number.isNaN(n)) return n === 0 && text.trim() === "" ? undefined : n;
  const lower = text.trim().toLowerCase();
  if (lower === "nan") return Number.NaN;
  if (lower === "inf" || lower === "+inf" || lower === "infinity" || lower === "+infinity") return Number.POSITIVE_INFINITY;
  if (lower === "-inf" || lower === "-infinity") return Number.NEGATIVE_INFINITY;
  return undefined;
}

type CastResult = { ok: true; value: unknown } | { ok: false; why: string };

function show(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

function caster(dtype: DType): (value: unknown) => CastResult {
  if (dtype === "string") {
    return (v) => (typeof v === "string" ? { ok: true, value: v }
      : typeof v === "number" || typeof v === "boolean" || typeof v === "bigint" ? { ok: true, value: String(v) }
        : { ok: false, why: `${show(v)} is not text` });
  }
  if (dtype === "bool") {
    return (v) => {
      if (typeof v === "boolean") return { ok: true, value: v };
      if (v === 1 || v === 0) return { ok: true, value: v === 1 };
      if (typeof v === "string") {
        const t = v.trim().toLowerCase();
        if (t === "true" || t === "1") return { ok: true, value: true };
        if (t === "false" || t === "0") return { ok: true, value: false };
      }
      return { ok: false, why: `${show(v)} is not a boolean` };
    };
  }
  const range = INT_RANGE[dtype];
  return (v) => {
    let n: number;
    if (typeof v === "number") n = v;
    else if (typeof v === "boolean") n = v ? 1 : 0;
    else if (typeof v === "bigint") n = Number(v);
    else if (typeof v === "string") {
      const parsed = v.trim().length === 0 ? NaN : parseNumber(v);
      if (parsed === undefined) return { ok: false, why: `${show(v)} is not a number` };
      n = parsed;
    } else if (v === null || v === undefined) n = NaN;
    else return { ok: false, why: `${show(v)} is not a number` };
    if (range === undefined) return { ok: true, value: n };
    if (Number.isNaN(n)) return { ok: false, why: "a missing value cannot be an integer" };
    if (!Number.isInteger(n)) return { ok: false, why: `${show(v)} is not a whole number` };
    if (n < range[0] || n > range[1]) return { ok: false, why: `${show(v)} is out of range` };
    return { ok: true, value: n };
  };
}
