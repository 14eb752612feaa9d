/**
 * Reading a Spark ML saved stage from disk (`../shared/docs/sparkml-format.md` §1-§2): the one-line metadata JSON
 * and the Parquet datasets (`data/`, `treesMetadata/`), with VectorUDT/MatrixUDT structs decoded to
 * `SparkVector`/`SparkMatrix`. No Spark, no JVM: hyparquet reads the part files.
 */
import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import type { Compressors } from "hyparquet";
import { MlshipError } from "../../core/index.js";
import type { LoadedStage, SparkMatrix, SparkVector, StageContext, StageMetadata } from "./types.js";

/** Hadoop writes side files (`_SUCCESS`, `_metadata`, `.crc`) next to the parts; Spark's readers skip them too. */
function isDataFileName(name: string): boolean {
  return !name.startsWith("_") && !name.startsWith(".");
}

async function listParts(dir: string, what: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${what}: cannot list ${dir} (${(error as Error).message})`, {
      field: dir,
      cause: error,
    });
  }
  // Part numbers are zero-padded, so name order is part order (part-00000 < part-00001 < part-r-00000 ...).
  return names.filter(isDataFileName).sort();
}

/**
 * The stage's `metadata/`: the first non-empty line of the first part file (`part-00000` up to Spark 3.x,
 * `part-00000-<uuid>-c000.txt` from 4.x).
 */
export async function readMetadata(dir: string): Promise<StageMetadata> {
  const metadataDir = path.join(dir, "metadata");
  const parts = (await listParts(metadataDir, "Spark metadata")).filter((name) => name.startsWith("part-"));
  const first = parts[0];
  if (first === undefined) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `Spark metadata: no part file in ${metadataDir}`, { field: metadataDir });
  }
  const file = path.join(metadataDir, first);
  const text = await readFile(file, "utf8");
  const line = text.split(/\r?\n/).find((candidate) => candidate.trim() !== "");
  if (line === undefined) throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `Spark metadata: ${file} is empty`, { field: file });
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch (error) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `Spark metadata: ${file} is not JSON (${(error as Error).message})`, {
      field: file,
      cause: error,
    });
  }
  return parseMetadataJson(parsed, file);
}

/** Validates a metadata object (from `metadata/` or an ensemble's `treesMetadata` string). */
export function parseMetadataJson(parsed: unknown, where: string): StageMetadata {
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `Spark metadata: ${where} is not a JSON object`, { field: where });
  }
  const record = parsed as Record<string, unknown>;
  if (typeof record.class !== "string" || record.class === "") {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `Spark metadata: ${where} has no "class"`, { field: where });
  }
  const paramMap = isPlainObject(record.paramMap) ? record.paramMap : {};
  const metadata: StageMetadata & Record<string, unknown> = {
    ...record,
    class: record.class,
    uid: typeof record.uid === "string" ? record.uid : "",
    sparkVersion: typeof record.sparkVersion === "string" ? record.sparkVersion : "",
    paramMap,
  };
  if (typeof record.timestamp === "number") metadata.timestamp = record.timestamp;
  // Spark ignores defaultParamMap before 2.4 (§1.2); such files do not have one anyway.
  if (isPlainObject(record.defaultParamMap) && sparkVersionAtLeast(metadata.sparkVersion, 2, 4)) {
    metadata.defaultParamMap = record.defaultParamMap;
  } else {
    delete metadata.defaultParamMap;
  }
  return metadata;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** `major.minor` of `sparkVersion` (suffixes like `-SNAPSHOT` ignored) >= the given one; unknown versions count as new. */
export function sparkVersionAtLeast(version: string, major: number, minor: number): boolean {
  const match = /^(\d+)\.(\d+)/.exec(version);
  if (!match) return true;
  const [versionMajor, versionMinor] = [Number(match[1]), Number(match[2])];
  return versionMajor > major || (versionMajor === major && versionMinor >= minor);
}

/** Codecs beyond hyparquet's built-in snappy that Node can decode without extra packages. */
const compressors: Compressors = {
  GZIP: (input) => new Uint8Array(gunzipSync(input)),
  BROTLI: (input) => new Uint8Array(brotliDecompressSync(input)),
};

/**
 * Rows of the Parquet dataset in `<dir>/<sub>`: every `*.parquet` part in part order, empty parts included.
 * VectorUDT/MatrixUDT structs become `SparkVector`/`SparkMatrix` (at any depth), INT64 values become numbers
 * when they are safe integers, lists stay plain arrays. A missing folder reads as no rows only when `optional`.
 */
export async function readParquetRows(dir: string, sub = "data", optional = false): Promise<Record<string, unknown>[]> {
  const datasetDir = path.join(dir, sub);
  let parts: string[];
  try {
    parts = (await readdir(datasetDir)).filter((name) => isDataFileName(name) && name.endsWith(".parquet")).sort();
  } catch (error) {
    if (optional && (error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `Spark model: cannot read ${datasetDir} (${(error as Error).message})`, {
      field: datasetDir,
      cause: error,
    });
  }
  // Loaded here rather than at the top: only a Spark model's loading reads Parquet.
  const { asyncBufferFromFile, parquetReadObjects } = await import("hyparquet");
  const rows: Record<string, unknown>[] = [];
  for (const name of parts) {
    const file = path.join(datasetDir, name);
    let partRows: Record<string, unknown>[];
    try {
      partRows = await parquetReadObjects({ file: await asyncBufferFromFile(file), compressors });
    } catch (error) {
      throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `Spark model: cannot read Parquet file ${file} (${(error as Error).message})`, {
        field: file,
        cause: error,
      });
    }
    for (const row of partRows) rows.push(decodeValue(row, file) as Record<string, unknown>);
  }
  return rows;
}

const VECTOR_KEYS = ["indices", "size", "type", "values"].join(",");
const MATRIX_KEYS = ["colPtrs", "isTransposed", "numCols", "numRows", "rowIndices", "type", "values"].join(",");

function decodeValue(value: unknown, file: string): unknown {
  if (typeof value === "bigint") {
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  }
  if (Array.isArray(value)) return value.map((item) => decodeValue(item, file));
  if (!isPlainObject(value)) return value;
  const keys = Object.keys(value).sort().join(",");
  if (keys === VECTOR_KEYS && (value.type === 0 || value.type === 1)) return decodeVector(value, file);
  if (keys === MATRIX_KEYS && (value.type === 0 || value.type === 1)) return decodeMatrix(value, file);
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) out[key] = decodeValue(item, file);
  return out;
}

function numbers(value: unknown, what: string, file: string): number[] {
  if (!Array.isArray(value) && !ArrayBuffer.isView(value)) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `Spark model: ${file}: ${what} is not an array`, { field: file });
  }
  return Array.from(value as ArrayLike<unknown>, (item) => Number(item));
}

function decodeVector(struct: Record<string, unknown>, file: string): SparkVector {
  const values = Float64Array.from(numbers(struct.values, "vector values", file));
  if (struct.type === 1) return { type: "dense", values };
  const indices = Int32Array.from(numbers(struct.indices, "sparse vector indices", file));
  if (indices.length !== values.length || typeof struct.size !== "number") {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `Spark model: ${file}: malformed sparse vector`, { field: file });
  }
  return { type: "sparse", size: struct.size, indices, values };
}

function decodeMatrix(struct: Record<string, unknown>, file: string): SparkMatrix {
  const numRows = Number(struct.numRows);
  const numCols = Number(struct.numCols);
  const isTransposed = struct.isTransposed === true;
  const values = Float64Array.from(numbers(struct.values, "matrix values", file));
  if (struct.type === 1) {
    if (values.length !== numRows * numCols) {
      throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `Spark model: ${file}: dense matrix ${numRows}x${numCols} has ${values.length} values`, { field: file });
    }
    return { type: "dense", numRows, numCols, values, isTransposed };
  }
  return {
    type: "sparse",
    numRows,
    numCols,
    colPtrs: Int32Array.from(numbers(struct.colPtrs, "matrix colPtrs", file)),
    rowIndices: Int32Array.from(numbers(struct.rowIndices, "matrix rowIndices", file)),
    values,
    isTransposed,
  };
}

/** The `StageContext` a loader gets for the stage in `dir`. */
export function makeStageContext(
  dir: string,
  metadata: StageMetadata,
  loadStage: (dir: string) => Promise<LoadedStage>,
): StageContext {
  return {
    dir,
    metadata,
    param<T>(name: string, fallback?: T): T | undefined {
      if (Object.hasOwn(metadata.paramMap, name)) return metadata.paramMap[name] as T;
      if (metadata.defaultParamMap && Object.hasOwn(metadata.defaultParamMap, name)) return metadata.defaultParamMap[name] as T;
      return fallback;
    },
    readParquet: (sub = "data") => readParquetRows(dir, sub),
    loadStage,
  };
}

/** Spark's DoubleParam JSON (§1.3): NaN/Inf as strings. Loaders use it for params like Imputer's missingValue. */
export function decodeSparkDouble(value: unknown): number {
  if (value === "NaN") return Number.NaN;
  if (value === "Inf" || value === "Infinity") return Number.POSITIVE_INFINITY;
  if (value === "-Inf" || value === "-Infinity") return Number.NEGATIVE_INFINITY;
  return Number(value);
}

/** Dense copy of a vector (sparse: zeros except the stored indices). */
export function vectorToArray(vector: SparkVector): Float64Array {
  if (vector.type === "dense") return vector.values;
  const out = new Float64Array(vector.size);
  for (let k = 0; k < vector.indices.length; k += 1) out[vector.indices[k] as number] = vector.values[k] as number;
  return out;
}

export function vectorSize(vector: SparkVector): number {
  return vector.type === "dense" ? vector.values.length : vector.size;
}

/** `A[i][j]` of a stored matrix, for any of the four encodings (§2.2). */
export function matrixToRows(matrix: SparkMatrix): Float64Array[] {
  const rows = Array.from({ length: matrix.numRows }, () => new Float64Array(matrix.numCols));
  if (matrix.type === "dense") {
    for (let i = 0; i < matrix.numRows; i += 1) {
      const row = rows[i] as Float64Array;
      for (let j = 0; j < matrix.numCols; j += 1) {
        row[j] = matrix.values[matrix.isTransposed ? i * matrix.numCols + j : j * matrix.numRows + i] as number;
      }
    }
    return rows;
  }
  const outer = matrix.isTransposed ? matrix.numRows : matrix.numCols;
  for (let o = 0; o < outer; o += 1) {
    for (let k = matrix.colPtrs[o] as number; k < (matrix.colPtrs[o + 1] as number); k += 1) {
      const inner = matrix.rowIndices[k] as number;
      const value = matrix.values[k] as number;
      if (matrix.isTransposed) (rows[o] as Float64Array)[inner] = value;
      else (rows[inner] as Float64Array)[o] = value;
    }
  }
  return rows;
}
