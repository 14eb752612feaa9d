/**
 * Inputs of the `batch` group (issue 6 item 8): a CSV and a Parquet file of `rows` rows, an `id` column then the
 * breast-cancer model's 30 features. The rows are the fixture's production rows, repeated, each value scaled by a
 * small seeded noise (within +-1 %), so no two rows are the same and a run is the same from one bench to the next.
 * The CSV is streamed; the Parquet file is written one row group at a time (offset indexes on, the reader's way to
 * find pages), so neither file is ever held in memory whole.
 */
import { once } from "node:events";
import fs from "node:fs";
import { performance } from "node:perf_hooks";
import { fileWriter, ParquetWriter } from "hyparquet-writer";
import type { ColumnSource, SchemaElement } from "hyparquet-writer";
import { answer, job } from "../lib/child.js";
import { uniforms } from "../lib/random.js";

export interface BatchGenJob {
  /** The fixture CSV: a header row, the feature columns in model order, then `label`. */
  fixture: string;
  rows: number;
  csvPath: string;
  parquetPath: string;
  /** Rows per Parquet row group (and per CSV write). */
  rowGroupRows: number;
}

export interface BatchGenResult {
  rows: number;
  features: string[];
  csvBytes: number;
  parquetBytes: number;
  seconds: number;
}

const FEATURES = 30;

const j = job<BatchGenJob>();
const started = performance.now();
const lines = fs.readFileSync(j.fixture, "utf8").split("\n").filter((l) => l.trim() !== "");
const features = (lines[0] ?? "").split(",").slice(0, FEATURES);
if (features.length !== FEATURES) throw new Error(`${j.fixture}: expected ${FEATURES} feature columns, got ${features.length}`);
const base = lines.slice(1).map((l) => l.split(",").slice(0, FEATURES).map(Number));
if (base.length === 0) throw new Error(`${j.fixture}: no rows`);

/** Rows [from, from + count) as columns: ids and one Float64Array per feature (the same values for both files). */
function block(from: number, count: number): { ids: Int32Array; columns: Float64Array[] } {
  const next = uniforms(0x5eed + from);
  const ids = new Int32Array(count);
  const columns = Array.from({ length: FEATURES }, () => new Float64Array(count));
  for (let r = 0; r < count; r++) {
    const id = from + r;
    ids[r] = id;
    const source = base[id % base.length] as number[];
    for (let c = 0; c < FEATURES; c++) {
      // 6 significant digits: the CSV writes what the Parquet file holds.
      (columns[c] as Float64Array)[r] = Number(((source[c] as number) * (1 + (next() - 0.5) * 0.02)).toPrecision(6));
    }
  }
  return { ids, columns };
}

const csv = fs.createWriteStream(j.csvPath);
const parquet = new ParquetWriter({
  writer: fileWriter(j.parquetPath),
  schema: [
    { name: "root", num_children: FEATURES + 1 },
    { name: "id", type: "INT32", repetition_type: "REQUIRED" },
    ...features.map((name): SchemaElement => ({ name, type: "DOUBLE", repetition_type: "REQUIRED" })),
  ],
});

if (!csv.write(`id,${features.map((f) => (f.includes(",") ? `"${f}"` : f)).join(",")}\n`)) await once(csv, "drain");
for (let from = 0; from < j.rows; from += j.rowGroupRows) {
  const count = Math.min(j.rowGroupRows, j.rows - from);
  const { ids, columns } = block(from, count);
  const text: string[] = [];
  for (let r = 0; r < count; r++) {
    let line = String(ids[r]);
    for (let c = 0; c < FEATURES; c++) line += `,${(columns[c] as Float64Array)[r] as number}`;
    text.push(line);
  }
  if (!csv.write(`${text.join("\n")}\n`)) await once(csv, "drain");
  const columnData: ColumnSource[] = [
    { name: "id", data: ids, offsetIndex: true },
    ...features.map((name, c): ColumnSource => ({ name, data: columns[c] as Float64Array, offsetIndex: true })),
  ];
  await parquet.write({ columnData, rowGroupSize: j.rowGroupRows });
}
await parquet.finish();
csv.end();
await once(csv, "finish");

answer({
  rows: j.rows,
  features,
  csvBytes: fs.statSync(j.csvPath).size,
  parquetBytes: fs.statSync(j.parquetPath).size,
  seconds: (performance.now() - started) / 1000,
} satisfies BatchGenResult);
