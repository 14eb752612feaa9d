import fs from "node:fs/promises";
import path from "node:path";
import { V2_DATATYPE } from "../core/index.js";
import type { Manifest } from "../package/index.js";

/** One row of input built from a package's input example, ready to paste into MLflow and V2 requests. */
export interface ExampleRow {
  /** Column names (declared columns, or the example's own). Empty when the model has none. */
  columns: string[];
  values: unknown[];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The first row of the package's `input_example`, whatever MLflow form it is written in; null when there is none. */
export async function exampleRow(packageDir: string, manifest: Manifest): Promise<ExampleRow | null> {
  if (manifest.input_example === undefined) return null;
  let example: unknown;
  try {
    example = JSON.parse(await fs.readFile(path.join(packageDir, manifest.input_example), "utf8"));
  } catch {
    return null;
  }
  if (!isRecord(example)) return null;
  const declared = manifest.signature.columns?.map((c) => c.name) ?? [];
  const split = example.dataframe_split;
  if (isRecord(split) && Array.isArray(split.data) && Array.isArray(split.data[0])) {
    const columns = Array.isArray(split.columns) ? split.columns.map(String) : declared;
    return { columns, values: split.data[0] as unknown[] };
  }
  const records = example.dataframe_records;
  if (Array.isArray(records) && isRecord(records[0])) {
    const first = records[0];
    const columns = declared.length > 0 ? declared : Object.keys(first);
    return { columns, values: columns.map((c) => first[c]) };
  }
  for (const key of ["inputs", "instances"] as const) {
    const rows = example[key];
    if (Array.isArray(rows) && rows.length > 0) {
      return { columns: declared, values: flatten(rows[0]) };
    }
    // `{"inputs": {"input": [[...], ...]}}`: the columns input's first row.
    if (isRecord(rows)) {
      const inputName = manifest.signature.columnsInput ?? manifest.signature.inputs[0]?.name;
      const tensor = inputName === undefined ? undefined : rows[inputName];
      if (Array.isArray(tensor) && tensor.length > 0) return { columns: declared, values: flatten(tensor[0]) };
    }
  }
  return null;
}

function flatten(value: unknown): unknown[] {
  return Array.isArray(value) ? value.flatMap((v) => flatten(v)) : [value];
}

/** An MLflow `dataframe_split` body with one row (or `inputs` when the model declares no columns). */
export function mlflowBody(row: ExampleRow): unknown {
  if (row.columns.length === row.values.length && row.columns.length > 0) {
    return { dataframe_split: { columns: row.columns, data: [row.values] } };
  }
  return { inputs: [row.values] };
}

/** A V2 infer body with one row for the model's (columns) input. */
export function v2Body(row: ExampleRow, manifest: Manifest): unknown {
  const inputName = manifest.signature.columnsInput ?? manifest.signature.inputs[0]?.name;
  const spec = manifest.signature.inputs.find((i) => i.name === inputName) ?? manifest.signature.inputs[0];
  if (spec === undefined) return { inputs: [] };
  const trailing = spec.shape.slice(1);
  const fixed = trailing.every((d) => d > 0) && trailing.reduce((a, b) => a * b, 1) === row.values.length;
  const shape = fixed ? [1, ...trailing] : [1, row.values.length];
  return { inputs: [{ name: spec.name, shape, datatype: V2_DATATYPE[spec.dtype], data: row.values }] };
}

/** A curl line that posts `body` as JSON; single-quoted for POSIX shells. */
export function curlLine(url: string, body: unknown): string {
  const json = JSON.stringify(body).replace(/'/g, "'\\''");
  return `curl -s ${url} -H 'Content-Type: application/json' -d '${json}'`;
}
