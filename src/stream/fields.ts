/**
 * Field paths on stream records, as aggregations (`groupBy`, metric `field`) name them: `label`, `probabilities[1]`,
 * `mean radius`, `a.b[0]`. Compiled once per operator, evaluated per record.
 */
import { MlshipError } from "../core/index.js";
import type { ScoredRecord, StreamRecord } from "./types.js";

type PathStep = { kind: "property"; name: string } | { kind: "index"; index: number };

/** Record properties a path may name when no output or field of that name shadows them. */
const RECORD_PROPERTIES = new Set(["key", "eventTime", "model", "version"]);

function invalidPath(path: string, why: string, field: string | undefined): MlshipError {
  return new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `field path ${JSON.stringify(path)} is not valid: ${why}`, {
    field: field ?? "field",
  });
}

/**
 * Splits a path into a name then `.name` and `[index]` steps. A name is any run of characters other than `.`, `[`
 * and `]` (so `mean radius` is one name); an index is a non-negative decimal integer.
 */
function parsePath(path: string, field: string | undefined): PathStep[] {
  if (typeof path !== "string" || path.trim() === "") throw invalidPath(String(path), "it is empty", field);
  const steps: PathStep[] = [];
  let position = 0;
  const readName = (): string => {
    const start = position;
    while (position < path.length && !".[]".includes(path.charAt(position))) position += 1;
    return path.slice(start, position);
  };
  const first = readName();
  if (first.trim() === "") throw invalidPath(path, "it must start with a name", field);
  steps.push({ kind: "property", name: first });
  while (position < path.length) {
    const character = path.charAt(position);
    if (character === ".") {
      position += 1;
      const name = readName();
      if (name.trim() === "") throw invalidPath(path, `a name must follow the "." at ${position - 1}`, field);
      steps.push({ kind: "property", name });
    } else if (character === "[") {
      const close = path.indexOf("]", position);
      const digits = close < 0 ? "" : path.slice(position + 1, close);
      if (!/^\d+$/.test(digits)) throw invalidPath(path, `"[" at ${position} must open an index like [0]`, field);
      steps.push({ kind: "index", index: Number(digits) });
      position = close + 1;
    } else {
      throw invalidPath(path, `unexpected "${character}" at ${position}`, field);
    }
  }
  return steps;
}

function isScored(record: ScoredRecord | StreamRecord): record is ScoredRecord {
  return typeof (record as Partial<ScoredRecord>).outputs === "object" && (record as Partial<ScoredRecord>).outputs !== null;
}

function hasOwn(object: object, name: string): boolean {
  return Object.prototype.hasOwnProperty.call(object, name);
}

/** The first step: outputs, then input fields, then the record's own `key`/`eventTime`/`model`/`version`. */
function lookUpRoot(record: ScoredRecord | StreamRecord, name: string): { found: boolean; value: unknown } {
  if (isScored(record) && hasOwn(record.outputs, name)) return { found: true, value: record.outputs[name] };
  if (hasOwn(record.fields, name)) return { found: true, value: record.fields[name] };
  if (RECORD_PROPERTIES.has(name) && hasOwn(record, name)) {
    return { found: true, value: (record as unknown as Record<string, unknown>)[name] };
  }
  return { found: false, value: undefined };
}

function step(value: unknown, next: PathStep): unknown {
  if (value === null || value === undefined) return undefined;
  if (next.kind === "index") {
    // Outputs may come as typed arrays (ONNX tensors) as well as plain arrays.
    if (Array.isArray(value)) return value[next.index];
    if (ArrayBuffer.isView(value) && !(value instanceof DataView)) return (value as unknown as ArrayLike<unknown>)[next.index];
    return undefined;
  }
  if (typeof value === "object" && !Array.isArray(value) && hasOwn(value, next.name)) {
    return (value as Record<string, unknown>)[next.name];
  }
  return undefined;
}

/**
 * Compiles a field path to a getter. The value is `undefined` when any step is missing (no such output or field, an
 * index past the end, a property of a non-object). A path that is itself the exact name of an output or field (a
 * column called `a.b`) names that column, so odd column names stay reachable.
 *
 * @param field the config field the path came from, for the error (e.g. `aggregations.by_label.groupBy[0]`)
 * @throws MLSHIP_ERR_CONFIG_INVALID when the path's syntax is not valid
 */
export function compileFieldPath(path: string, field?: string): (record: ScoredRecord | StreamRecord) => unknown {
  const steps = parsePath(path, field);
  const [root, ...rest] = steps;
  if (root === undefined || root.kind !== "property") throw invalidPath(path, "it must start with a name", field);
  if (rest.length === 0) {
    const name = root.name;
    return (record) => lookUpRoot(record, name).value;
  }
  return (record) => {
    const literal = lookUpRoot(record, path);
    if (literal.found) return literal.value;
    let value = lookUpRoot(record, root.name).value;
    for (const next of rest) value = step(value, next);
    return value;
  };
}

/**
 * A column name made from free text, for default metric names: lower-cased, each run of characters other than
 * ASCII letters and digits becomes one `_`, leading and trailing `_` dropped (`probabilities[1]` ->
 * `probabilities_1`, `Mean Radius` -> `mean_radius`).
 */
export function columnName(text: string): string {
  const name = text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "_")
    .replace(/^_+|_+$/g, "");
  return name === "" ? "_" : name;
}
