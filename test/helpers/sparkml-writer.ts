/**
 * Writes Spark ML saved-model directories in tests, in exactly the layout Spark writes (see
 * `../shared/docs/sparkml-format.md` §1, §2, §8), so that loaders are tested against the real on-disk format
 * without a JVM.
 *
 * API
 *
 * `await writeSparkStage(dir, stage)` writes one saved stage into `dir` (created if missing):
 *   - `metadata/part-00000` (Spark <= 3.x; `part-00000-<uuid>-c000.txt` when `sparkVersion` is 4.x): one line of
 *     compact JSON `{class, timestamp, sparkVersion, uid, paramMap, defaultParamMap?, ...extraMetadata}` + "\n".
 *     JS `NaN`/`Infinity`/`-Infinity` anywhere in params are written as Spark writes them ("NaN", "Inf", "-Inf").
 *   - `data/part-NNNNN-<uuid>-c000.snappy.parquet` when `stage.data` is given, `treesMetadata/...` when
 *     `stage.treesMetadata` is given, each dataset `{ schema: SparkField[], rows, partSizes? }`. The Parquet
 *     physical schema is Spark's (root `spark_schema`; `int` INT32, `long` INT64, `double` DOUBLE, `byte` INT32
 *     INT_8, `string` UTF8; arrays as the 3-level `LIST { repeated group list { element } }`; maps as
 *     `MAP { repeated group key_value { key; value } }`; `vector`/`matrix` as the VectorUDT/MatrixUDT structs),
 *     with Spark's nullability (primitives required, everything else optional, array elements of primitives
 *     required), and the Spark schema JSON in the footer key `org.apache.spark.sql.parquet.row.metadata`.
 *     `partSizes` splits the rows into several part files (a 0 writes an empty part file), as Spark 2.x trees do.
 *   - `_SUCCESS` in every dataset folder, and Hadoop's `.<name>.crc` checksum files next to every file (as a local
 *     filesystem write leaves them) unless `crcFiles: false`.
 *   - `stages/<idx>_<uid>/` for each of `stage.stages` (a PipelineModel; `idx` zero-padded to the digits of the
 *     stage count), and `paramMap.stageUids` filled in from the stages when the caller did not set it.
 *   Returns the stage's metadata object as written.
 *
 * `await writeSparkPipeline(dir, stages, { uid?, sparkVersion? })` = `writeSparkStage` of an
 *   `org.apache.spark.ml.PipelineModel` with those stages.
 *
 * Values in `rows`: `vector` fields take a `SparkVector` (`vectorDense([...])`, `vectorSparse(size, idx, vals)`)
 * or a plain number array (dense); `matrix` fields a `SparkMatrix` (`matrixDense(...)`, `matrixSparse(...)`);
 * arrays take JS arrays or typed arrays; `long` takes number or bigint; structs take plain objects; `null` is
 * written as null (only where the field is nullable).
 *
 * Schema building blocks for the common Spark data classes: `VECTOR`/`MATRIX` field types, `nodeDataFields(v3)`
 * (tree NodeData), `ensembleDataSchema(v3)`, `TREES_METADATA_SCHEMA`, and `treesMetadataRows(trees)`.
 */
import { randomUUID } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { crc32 } from "node:zlib";
import { parquetWriteBuffer } from "hyparquet-writer";

// hyparquet-writer bundles its own hyparquet; take the schema type it expects rather than the top-level one.
type SchemaElement = NonNullable<Parameters<typeof parquetWriteBuffer>[0]["schema"]>[number];
import type { SparkMatrix, SparkVector } from "../../src/runtime/sparkml/types.js";

export type SparkPrimitive = "int" | "long" | "double" | "boolean" | "string" | "byte";
export type SparkFieldType =
  | SparkPrimitive
  | "vector"
  | "matrix"
  | { readonly array: SparkFieldType; readonly containsNull?: boolean }
  | { readonly map: readonly [key: SparkFieldType, value: SparkFieldType]; readonly valueContainsNull?: boolean }
  | { readonly struct: readonly SparkField[] };

export interface SparkField {
  readonly name: string;
  readonly type: SparkFieldType;
  /** Spark's default: false for int/long/double/boolean/byte, true for everything else. */
  readonly nullable?: boolean;
}

export interface SparkDataset {
  readonly schema: readonly SparkField[];
  readonly rows: readonly Record<string, unknown>[];
  /** Rows per part file, in order (must add up to rows.length); default one part with every row. */
  readonly partSizes?: readonly number[];
}

export interface SparkStageSpec {
  /** Fully qualified, e.g. `org.apache.spark.ml.classification.LogisticRegressionModel`. */
  readonly className: string;
  /** Default: a Spark-like uid from the class's short name. */
  readonly uid?: string;
  /** Default "3.5.1". */
  readonly sparkVersion?: string;
  readonly timestamp?: number;
  readonly paramMap: Record<string, unknown>;
  /** Written when given (Spark >= 2.4 writes it; leave it out to imitate older releases). */
  readonly defaultParamMap?: Record<string, unknown>;
  /** Extra top-level metadata keys (`numFeatures`, `numClasses`, `numTrees`). */
  readonly extraMetadata?: Record<string, unknown>;
  readonly data?: SparkDataset;
  readonly treesMetadata?: SparkDataset;
  /** PipelineModel stages, written under `stages/`. */
  readonly stages?: readonly SparkStageSpec[];
  /** Hadoop `.crc` files next to each file (default true). */
  readonly crcFiles?: boolean;
}

export const PIPELINE_MODEL_CLASS = "org.apache.spark.ml.PipelineModel";

export const VECTOR: SparkFieldType = "vector";
export const MATRIX: SparkFieldType = "matrix";

export function vectorDense(values: readonly number[] | Float64Array): SparkVector {
  return { type: "dense", values: Float64Array.from(values) };
}

export function vectorSparse(
  size: number,
  indices: readonly number[] | Int32Array,
  values: readonly number[] | Float64Array,
): SparkVector {
  if (indices.length !== values.length) throw new Error("vectorSparse: indices and values differ in length");
  return { type: "sparse", size, indices: Int32Array.from(indices), values: Float64Array.from(values) };
}

/** `values` column-major (Spark's default) unless `isTransposed` (then row-major). */
export function matrixDense(
  numRows: number,
  numCols: number,
  values: readonly number[] | Float64Array,
  isTransposed = false,
): SparkMatrix {
  if (values.length !== numRows * numCols) throw new Error("matrixDense: values.length !== numRows * numCols");
  return { type: "dense", numRows, numCols, values: Float64Array.from(values), isTransposed };
}

/** CSC (or CSR when `isTransposed`), as §2.2 describes. */
export function matrixSparse(
  numRows: number,
  numCols: number,
  colPtrs: readonly number[],
  rowIndices: readonly number[],
  values: readonly number[],
  isTransposed = false,
): SparkMatrix {
  return {
    type: "sparse",
    numRows,
    numCols,
    colPtrs: Int32Array.from(colPtrs),
    rowIndices: Int32Array.from(rowIndices),
    values: Float64Array.from(values),
    isTransposed,
  };
}

/** Tree `NodeData` (§5.1); Spark >= 3.0 adds `rawCount`. */
export function nodeDataFields(sparkV3 = true): SparkField[] {
  return [
    { name: "id", type: "int" },
    { name: "prediction", type: "double" },
    { name: "impurity", type: "double" },
    { name: "impurityStats", type: { array: "double" } },
    ...(sparkV3 ? [{ name: "rawCount", type: "long" } as const] : []),
    { name: "gain", type: "double" },
    { name: "leftChild", type: "int" },
    { name: "rightChild", type: "int" },
    {
      name: "split",
      type: {
        struct: [
          { name: "featureIndex", type: "int" },
          { name: "leftCategoriesOrThreshold", type: { array: "double" } },
          { name: "numCategories", type: "int" },
        ],
      },
    },
  ];
}

/** Ensemble `data/` rows: `{ treeID, nodeData }` (§5.3). */
export function ensembleDataSchema(sparkV3 = true): SparkField[] {
  return [
    { name: "treeID", type: "int" },
    { name: "nodeData", type: { struct: nodeDataFields(sparkV3) } },
  ];
}

export const TREES_METADATA_SCHEMA: readonly SparkField[] = [
  { name: "treeID", type: "int" },
  { name: "metadata", type: "string" },
  { name: "weights", type: "double" },
];

/** `treesMetadata/` rows from each member tree's metadata (class, uid, params) and weight. */
export function treesMetadataRows(
  trees: readonly { className: string; uid?: string; sparkVersion?: string; paramMap?: Record<string, unknown>; weight?: number }[],
): Record<string, unknown>[] {
  return trees.map((tree, treeID) => ({
    treeID,
    metadata: JSON.stringify(
      encodeParamValues({
        class: tree.className,
        timestamp: 1_700_000_000_000 + treeID,
        sparkVersion: tree.sparkVersion ?? DEFAULT_SPARK_VERSION,
        uid: tree.uid ?? `${shortUidPrefix(tree.className)}_${randomHex(12)}`,
        paramMap: tree.paramMap ?? {},
        defaultParamMap: {},
      }),
    ),
    weights: tree.weight ?? 1,
  }));
}

const DEFAULT_SPARK_VERSION = "3.5.1";

export async function writeSparkPipeline(
  dir: string,
  stages: readonly SparkStageSpec[],
  options: { uid?: string; sparkVersion?: string; crcFiles?: boolean } = {},
): Promise<Record<string, unknown>> {
  return writeSparkStage(dir, {
    className: PIPELINE_MODEL_CLASS,
    uid: options.uid,
    sparkVersion: options.sparkVersion,
    crcFiles: options.crcFiles,
    paramMap: {},
    defaultParamMap: {},
    stages,
  });
}

export async function writeSparkStage(dir: string, stage: SparkStageSpec): Promise<Record<string, unknown>> {
  const sparkVersion = stage.sparkVersion ?? DEFAULT_SPARK_VERSION;
  const uid = stage.uid ?? `${shortUidPrefix(stage.className)}_${randomHex(12)}`;
  const crcFiles = stage.crcFiles ?? true;
  const stageUids: string[] = [];
  if (stage.stages) {
    const digits = String(stage.stages.length).length;
    for (const [index, child] of stage.stages.entries()) {
      const childUid = child.uid ?? `${shortUidPrefix(child.className)}_${randomHex(12)}`;
      stageUids.push(childUid);
      const childDir = path.join(dir, "stages", `${String(index).padStart(digits, "0")}_${childUid}`);
      await writeSparkStage(childDir, { ...child, uid: childUid, sparkVersion: child.sparkVersion ?? sparkVersion, crcFiles: child.crcFiles ?? crcFiles });
    }
  }
  const paramMap = stage.stages && !("stageUids" in stage.paramMap) ? { stageUids, ...stage.paramMap } : stage.paramMap;
  const metadata: Record<string, unknown> = {
    class: stage.className,
    timestamp: stage.timestamp ?? Date.now(),
    sparkVersion,
    uid,
    paramMap,
    ...(stage.defaultParamMap ? { defaultParamMap: stage.defaultParamMap } : {}),
    ...(stage.extraMetadata ?? {}),
  };
  const encoded = encodeParamValues(metadata) as Record<string, unknown>;
  const metadataName = sparkMajor(sparkVersion) >= 4 ? `part-00000-${randomUUID()}-c000.txt` : "part-00000";
  await writeDatasetFolder(path.join(dir, "metadata"), [[metadataName, Buffer.from(`${JSON.stringify(encoded)}\n`)]], crcFiles);
  if (stage.data) await writeParquetDataset(path.join(dir, "data"), stage.data, crcFiles);
  if (stage.treesMetadata) await writeParquetDataset(path.join(dir, "treesMetadata"), stage.treesMetadata, crcFiles);
  return encoded;
}

/** Writes a dataset's part files (+ `_SUCCESS`, + crc files) into `dir`. Exported for odd layouts in tests. */
export async function writeParquetDataset(dir: string, dataset: SparkDataset, crcFiles = true): Promise<string[]> {
  const sizes = dataset.partSizes ?? [dataset.rows.length];
  const total = sizes.reduce((sum, size) => sum + size, 0);
  if (total !== dataset.rows.length) throw new Error(`partSizes add up to ${total}, rows has ${dataset.rows.length}`);
  const jobUuid = randomUUID();
  const files: [string, Buffer][] = [];
  let start = 0;
  for (const [part, size] of sizes.entries()) {
    const rows = dataset.rows.slice(start, start + size);
    start += size;
    files.push([`part-${String(part).padStart(5, "0")}-${jobUuid}-c000.snappy.parquet`, Buffer.from(sparkParquetBuffer(dataset.schema, rows))]);
  }
  await writeDatasetFolder(dir, files, crcFiles);
  return files.map(([name]) => path.join(dir, name));
}

/** One Parquet file with Spark's physical schema for `schema`, holding `rows`. */
export function sparkParquetBuffer(schema: readonly SparkField[], rows: readonly Record<string, unknown>[]): ArrayBuffer {
  const parquetSchema: SchemaElement[] = [{ name: "spark_schema", num_children: schema.length }];
  for (const field of schema) parquetSchema.push(...parquetElements(field.name, field.type, isNullable(field)));
  const columnData = schema.map((field) => ({
    name: field.name,
    data: rows.map((row) => encodeCell(field.type, row[field.name], `${field.name}`)),
  }));
  return parquetWriteBuffer({
    columnData,
    schema: parquetSchema,
    kvMetadata: [{ key: "org.apache.spark.sql.parquet.row.metadata", value: JSON.stringify(sparkStructJson(schema)) }],
    createdBy: "mlship test sparkml-writer (Spark's parquet layout)",
  });
}

async function writeDatasetFolder(dir: string, files: readonly [string, Buffer][], crcFiles: boolean): Promise<void> {
  await mkdir(dir, { recursive: true });
  const all: [string, Buffer][] = [...files, ["_SUCCESS", Buffer.alloc(0)]];
  for (const [name, content] of all) {
    await writeFile(path.join(dir, name), content);
    if (crcFiles) await writeFile(path.join(dir, `.${name}.crc`), hadoopCrc(content));
  }
}

/** Hadoop ChecksumFileSystem's side file: "crc\0", bytesPerChecksum (512), then a CRC32 per 512-byte chunk. */
function hadoopCrc(content: Buffer): Buffer {
  const bytesPerChecksum = 512;
  const chunks = Math.ceil(content.length / bytesPerChecksum);
  const out = Buffer.alloc(8 + 4 * chunks);
  out.write("crc\0", 0, "latin1");
  out.writeInt32BE(bytesPerChecksum, 4);
  for (let chunk = 0; chunk < chunks; chunk += 1) {
    out.writeUInt32BE(crc32(content.subarray(chunk * bytesPerChecksum, (chunk + 1) * bytesPerChecksum)), 8 + 4 * chunk);
  }
  return out;
}

const VECTOR_FIELDS: readonly SparkField[] = [
  { name: "type", type: "byte" },
  { name: "size", type: "int", nullable: true },
  { name: "indices", type: { array: "int" } },
  { name: "values", type: { array: "double" } },
];

const MATRIX_FIELDS: readonly SparkField[] = [
  { name: "type", type: "byte" },
  { name: "numRows", type: "int" },
  { name: "numCols", type: "int" },
  { name: "colPtrs", type: { array: "int" } },
  { name: "rowIndices", type: { array: "int" } },
  { name: "values", type: { array: "double" } },
  { name: "isTransposed", type: "boolean" },
];

function isPrimitiveNonNull(type: SparkFieldType): boolean {
  return type === "int" || type === "long" || type === "double" || type === "boolean" || type === "byte";
}

function isNullable(field: SparkField): boolean {
  return field.nullable ?? !isPrimitiveNonNull(field.type);
}

function repetition(nullable: boolean): "OPTIONAL" | "REQUIRED" {
  return nullable ? "OPTIONAL" : "REQUIRED";
}

function parquetElements(name: string, type: SparkFieldType, nullable: boolean): SchemaElement[] {
  const repetition_type = repetition(nullable);
  if (typeof type === "string") {
    switch (type) {
      case "int":
        return [{ name, type: "INT32", repetition_type }];
      case "byte":
        return [{ name, type: "INT32", converted_type: "INT_8", repetition_type }];
      case "long":
        return [{ name, type: "INT64", repetition_type }];
      case "double":
        return [{ name, type: "DOUBLE", repetition_type }];
      case "boolean":
        return [{ name, type: "BOOLEAN", repetition_type }];
      case "string":
        return [{ name, type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type }];
      case "vector":
        return structElements(name, VECTOR_FIELDS, repetition_type);
      case "matrix":
        return structElements(name, MATRIX_FIELDS, repetition_type);
    }
  }
  if ("array" in type) {
    const containsNull = type.containsNull ?? !isPrimitiveNonNull(type.array);
    return [
      { name, repetition_type, converted_type: "LIST", num_children: 1 },
      { name: "list", repetition_type: "REPEATED", num_children: 1 },
      ...parquetElements("element", type.array, containsNull),
    ];
  }
  if ("map" in type) {
    return [
      { name, repetition_type, converted_type: "MAP", num_children: 1 },
      { name: "key_value", repetition_type: "REPEATED", num_children: 2 },
      ...parquetElements("key", type.map[0], false),
      ...parquetElements("value", type.map[1], type.valueContainsNull ?? !isPrimitiveNonNull(type.map[1])),
    ];
  }
  return structElements(name, type.struct, repetition_type);
}

function structElements(name: string, fields: readonly SparkField[], repetition_type: "OPTIONAL" | "REQUIRED"): SchemaElement[] {
  const out: SchemaElement[] = [{ name, repetition_type, num_children: fields.length }];
  for (const field of fields) out.push(...parquetElements(field.name, field.type, isNullable(field)));
  return out;
}

function encodeCell(type: SparkFieldType, value: unknown, where: string): unknown {
  if (value === null || value === undefined) return null;
  if (typeof type === "string") {
    switch (type) {
      case "long":
        return typeof value === "bigint" ? value : BigInt(value as number);
      case "int":
      case "byte":
      case "double":
        if (typeof value !== "number") throw new Error(`${where}: expected a number, got ${typeof value}`);
        return value;
      case "boolean":
      case "string":
        return value;
      case "vector":
        return encodeVector(value, where);
      case "matrix":
        return encodeMatrix(value as SparkMatrix);
    }
  }
  if ("array" in type) {
    if (!Array.isArray(value) && !ArrayBuffer.isView(value)) throw new Error(`${where}: expected an array`);
    return Array.from(value as ArrayLike<unknown>, (item, index) => encodeCell(type.array, item, `${where}[${index}]`));
  }
  if ("map" in type) {
    const entries = value instanceof Map ? [...value.entries()] : Object.entries(value as Record<string, unknown>);
    return entries.map(([key, item]) => ({ key: encodeCell(type.map[0], key, where), value: encodeCell(type.map[1], item, `${where}.${String(key)}`) }));
  }
  const record = value as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const field of type.struct) out[field.name] = encodeCell(field.type, record[field.name], `${where}.${field.name}`);
  return out;
}

function encodeVector(value: unknown, where: string): Record<string, unknown> {
  if (Array.isArray(value) || value instanceof Float64Array) return { type: 1, size: null, indices: null, values: Array.from(value as ArrayLike<number>) };
  const vector = value as SparkVector;
  if (vector.type === "dense") return { type: 1, size: null, indices: null, values: Array.from(vector.values) };
  if (vector.type === "sparse") {
    return { type: 0, size: vector.size, indices: Array.from(vector.indices), values: Array.from(vector.values) };
  }
  throw new Error(`${where}: not a vector`);
}

function encodeMatrix(matrix: SparkMatrix): Record<string, unknown> {
  if (matrix.type === "dense") {
    return {
      type: 1,
      numRows: matrix.numRows,
      numCols: matrix.numCols,
      colPtrs: null,
      rowIndices: null,
      values: Array.from(matrix.values),
      isTransposed: matrix.isTransposed,
    };
  }
  return {
    type: 0,
    numRows: matrix.numRows,
    numCols: matrix.numCols,
    colPtrs: Array.from(matrix.colPtrs),
    rowIndices: Array.from(matrix.rowIndices),
    values: Array.from(matrix.values),
    isTransposed: matrix.isTransposed,
  };
}

function sparkTypeJson(type: SparkFieldType): unknown {
  if (typeof type === "string") {
    switch (type) {
      case "int":
        return "integer";
      case "vector":
        return {
          type: "udt",
          class: "org.apache.spark.ml.linalg.VectorUDT",
          pyClass: "pyspark.ml.linalg.VectorUDT",
          sqlType: sparkStructJson(VECTOR_FIELDS),
        };
      case "matrix":
        return {
          type: "udt",
          class: "org.apache.spark.ml.linalg.MatrixUDT",
          pyClass: "pyspark.ml.linalg.MatrixUDT",
          sqlType: sparkStructJson(MATRIX_FIELDS),
        };
      default:
        return type;
    }
  }
  if ("array" in type) return { type: "array", elementType: sparkTypeJson(type.array), containsNull: type.containsNull ?? !isPrimitiveNonNull(type.array) };
  if ("map" in type) {
    return {
      type: "map",
      keyType: sparkTypeJson(type.map[0]),
      valueType: sparkTypeJson(type.map[1]),
      valueContainsNull: type.valueContainsNull ?? !isPrimitiveNonNull(type.map[1]),
    };
  }
  return sparkStructJson(type.struct);
}

function sparkStructJson(fields: readonly SparkField[]): unknown {
  return {
    type: "struct",
    fields: fields.map((field) => ({ name: field.name, type: sparkTypeJson(field.type), nullable: isNullable(field), metadata: {} })),
  };
}

/** Spark's DoubleParam JSON: non-finite numbers as strings. */
function encodeParamValues(value: unknown): unknown {
  if (typeof value === "number") {
    if (Number.isNaN(value)) return "NaN";
    if (value === Infinity) return "Inf";
    if (value === -Infinity) return "-Inf";
    return value;
  }
  if (Array.isArray(value)) return value.map(encodeParamValues);
  if (ArrayBuffer.isView(value)) return Array.from(value as unknown as ArrayLike<number>, encodeParamValues);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, encodeParamValues(item)]));
  }
  return value;
}

function sparkMajor(version: string): number {
  return Number.parseInt(version, 10) || 0;
}

/** Spark uids are `<ShortName>_<12 hex>` (Scala) or `<ShortName>_<20 hex>` (PySpark). */
function shortUidPrefix(className: string): string {
  const short = className.split(".").at(-1) ?? className;
  return short.replace(/Model$/, "");
}

function randomHex(length: number): string {
  return randomUUID().replaceAll("-", "").slice(0, length);
}
