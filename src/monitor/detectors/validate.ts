import { MlshipError } from "../../core/index.js";
import type { DetectorKind, DetectorSnapshot } from "./types.js";

/** Parameter checks shared by the detectors; every failure names the offending field. */

function fail(field: string, message: string): never {
  throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `${field} ${message}`, { field });
}

/** A finite number, optionally bounded; `undefined` gives the default. */
export function numberParam(
  params: Record<string, unknown>,
  field: string,
  fallback: number,
  bounds: { min?: number; max?: number; minExclusive?: boolean; maxExclusive?: boolean; integer?: boolean } = {},
): number {
  const value = params[field];
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value)) fail(field, `must be a finite number, got ${JSON.stringify(value)}`);
  if (bounds.integer === true && !Number.isInteger(value)) fail(field, `must be an integer, got ${value}`);
  if (bounds.min !== undefined && (bounds.minExclusive === true ? value <= bounds.min : value < bounds.min)) {
    fail(field, `must be ${bounds.minExclusive === true ? ">" : ">="} ${bounds.min}, got ${value}`);
  }
  if (bounds.max !== undefined && (bounds.maxExclusive === true ? value >= bounds.max : value > bounds.max)) {
    fail(field, `must be ${bounds.maxExclusive === true ? "<" : "<="} ${bounds.max}, got ${value}`);
  }
  return value;
}

/** One of a fixed set of strings; `undefined` gives the default. */
export function choiceParam<T extends string>(params: Record<string, unknown>, field: string, choices: readonly T[], fallback: T): T {
  const value = params[field];
  if (value === undefined) return fallback;
  if (typeof value !== "string" || !(choices as readonly string[]).includes(value)) {
    fail(field, `must be one of ${choices.join(", ")}, got ${JSON.stringify(value)}`);
  }
  return value as T;
}

/** Rejects keys a detector does not know, so a typo (`treshold`) is not silently ignored. */
export function rejectUnknown(params: Record<string, unknown>, known: readonly string[]): void {
  for (const key of Object.keys(params)) {
    if (key !== "kind" && !known.includes(key)) fail(key, `is not a parameter of this detector (known: ${known.join(", ")})`);
  }
}

/** A numeric field of a stored state; `nullable` fields stand for ±Infinity in JSON. */
export function stateNumber(state: Record<string, unknown>, field: string): number {
  const value = state[field];
  if (typeof value !== "number" || !Number.isFinite(value)) fail(`state.${field}`, `must be a finite number, got ${JSON.stringify(value)}`);
  return value;
}

export function stateNumberOrInfinity(state: Record<string, unknown>, field: string, infinity: number): number {
  const value = state[field];
  if (value === null) return infinity;
  return stateNumber(state, field);
}

export function finiteOrNull(value: number): number | null {
  return Number.isFinite(value) ? value : null;
}

/** Checks the envelope of a snapshot (format, kind, counters) before a detector reads its state. */
export function checkSnapshot(snapshot: unknown, kind: DetectorKind): DetectorSnapshot {
  if (typeof snapshot !== "object" || snapshot === null || Array.isArray(snapshot)) fail("snapshot", "must be an object");
  const record = snapshot as Record<string, unknown>;
  if (record.format !== 1) fail("format", `must be 1, got ${JSON.stringify(record.format)}`);
  if (record.kind !== kind) fail("kind", `must be ${kind}, got ${JSON.stringify(record.kind)}`);
  for (const field of ["params", "state"]) {
    const value = record[field];
    if (typeof value !== "object" || value === null || Array.isArray(value)) fail(field, "must be an object");
  }
  for (const field of ["drift", "warning"]) {
    if (typeof record[field] !== "boolean") fail(field, "must be a boolean");
  }
  for (const field of ["detections", "seen"]) {
    const value = record[field];
    if (typeof value !== "number" || !Number.isInteger(value) || value < 0) fail(field, "must be a non-negative integer");
  }
  return record as unknown as DetectorSnapshot;
}

/** The value of one update: a finite number (ADWIN, Page-Hinkley). */
export function numericInput(x: number | boolean): number {
  const value = typeof x === "boolean" ? (x ? 1 : 0) : x;
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `a drift detector takes finite numbers, got ${String(x)}`, { field: "x" });
  }
  return value;
}

/** The value of one update of a binary detector: 1/true = error, 0/false = correct. */
export function bitInput(x: number | boolean): 0 | 1 {
  if (x === true || x === 1) return 1;
  if (x === false || x === 0) return 0;
  throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `DDM and EDDM take an error bit (0, 1, false or true), got ${String(x)}`, {
    field: "x",
  });
}
