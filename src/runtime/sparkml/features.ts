/**
 * Spark ML feature transformer stages (`../shared/docs/sparkml-format.md` §7), scored as Spark's `transform` does,
 * value for value: VectorAssembler, StringIndexerModel, OneHotEncoderModel, StandardScalerModel, MinMaxScalerModel,
 * MaxAbsScalerModel, ImputerModel, Bucketizer, Binarizer, Tokenizer, HashingTF and IDFModel.
 *
 * Where Spark's arithmetic changed between releases (MinMaxScaler, MaxAbsScaler, StandardScaler, Binarizer, the
 * HashingTF hash), the stage follows the release named by the metadata's `sparkVersion`, as Spark's own reader does
 * or as the saving release computed it.
 *
 * `handleInvalid = "skip"` drops rows in Spark. A scorer must return one result per input row, so stages saved with
 * `skip` are refused at load (MLSHIP_ERR_PACKAGE_UNSUPPORTED) rather than scored with a different meaning.
 *
 * Spark keeps no input schema in a saved model, so a stage whose input may be either a number or a vector
 * (VectorAssembler, Binarizer) declares `double` inputs and accepts vector columns at `transform`.
 */
import { MlshipError } from "../../core/index.js";
import type {
  ColumnInfo,
  Frame,
  FrameColumn,
  LoadedStage,
  SparkVector,
  StageContext,
  StageLoader,
  StageLoaders,
} from "./types.js";
import { sparkVersionAtLeast } from "./io.js";
import { checkVector, compressed, forEachActive, isSparkVector, sparseVector, toDense, vectorSize } from "./vectors.js";

const FEATURE = "org.apache.spark.ml.feature.";

// ----------------------------------------------------------------------------------------------------------------
// Metadata params

/** Whether the stage was saved by a release older than `major.minor` (an unparseable version counts as new). */
function versionBefore(context: StageContext, major: number, minor = 0): boolean {
  return !sparkVersionAtLeast(context.metadata.sparkVersion, major, minor);
}

function where(context: StageContext): string {
  return `Spark ${context.metadata.class.replace(FEATURE, "")} ${context.metadata.uid} (${context.dir})`;
}

function badParam(context: StageContext, name: string, problem: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${where(context)}: param ${name} ${problem}`, { field: name });
}

/** Spark's `paramMap` holds the params set explicitly (and, before 2.4, every param): "is set" means present there. */
function isSet(context: StageContext, name: string): boolean {
  return Object.hasOwn(context.metadata.paramMap, name);
}

/** DoubleParam JSON (§1.3): a number, or "NaN" / "Inf" / "-Inf" as strings. */
function decodeDouble(value: unknown): number | undefined {
  if (typeof value === "number") return value;
  if (value === "NaN") return Number.NaN;
  if (value === "Inf" || value === "Infinity") return Number.POSITIVE_INFINITY;
  if (value === "-Inf" || value === "-Infinity") return Number.NEGATIVE_INFINITY;
  return undefined;
}

function stringParam(context: StageContext, name: string, fallback?: string): string {
  const value = context.param<unknown>(name, fallback);
  if (typeof value !== "string") throw badParam(context, name, value === undefined ? "is not set" : "is not a string");
  return value;
}

function booleanParam(context: StageContext, name: string, fallback: boolean): boolean {
  const value = context.param<unknown>(name, fallback);
  if (typeof value !== "boolean") throw badParam(context, name, "is not a boolean");
  return value;
}

function doubleParam(context: StageContext, name: string, fallback: number): number {
  const value = decodeDouble(context.param<unknown>(name, fallback));
  if (value === undefined) throw badParam(context, name, "is not a number");
  return value;
}

function integerParam(context: StageContext, name: string, fallback: number): number {
  const value = context.param<unknown>(name, fallback);
  if (typeof value !== "number" || !Number.isInteger(value)) throw badParam(context, name, "is not an integer");
  return value;
}

function stringArrayParam(context: StageContext, name: string): string[] {
  const value = context.param<unknown>(name);
  if (!Array.isArray(value) || !value.every((item): item is string => typeof item === "string")) {
    throw badParam(context, name, value === undefined ? "is not set" : "is not an array of strings");
  }
  return value;
}

function doubleArray(context: StageContext, name: string, value: unknown): number[] {
  if (!Array.isArray(value)) throw badParam(context, name, value === undefined ? "is not set" : "is not an array of numbers");
  return value.map((item) => {
    const decoded = decodeDouble(item);
    if (decoded === undefined) throw badParam(context, name, "holds a value that is not a number");
    return decoded;
  });
}

type HandleInvalid = "error" | "keep";

/**
 * `handleInvalid`, limited to what a row-aligned scorer can honour. `skip` drops rows in Spark, so it is refused
 * here with a message that says so.
 */
function handleInvalidParam(context: StageContext, supportsKeep = true): HandleInvalid {
  const value = stringParam(context, "handleInvalid", "error");
  if (value === "error" || (value === "keep" && supportsKeep)) return value;
  if (value === "skip") {
    throw new MlshipError(
      "MLSHIP_ERR_PACKAGE_UNSUPPORTED",
      `${where(context)}: handleInvalid "skip" drops invalid rows, which a scorer that returns one result per row ` +
        `cannot do; re-save the stage with handleInvalid "error" or "keep"`,
      { field: "handleInvalid" },
    );
  }
  throw badParam(context, "handleInvalid", `has an unknown value ${JSON.stringify(value)}`);
}

/**
 * Input and output column names of a stage that takes either `inputCol`/`outputCol` or (3.0+) `inputCols`/
 * `outputCols`. Spark uses the multi-column params when `inputCols` is set.
 */
function columnPairs(context: StageContext, multiOnly = false): { inputs: string[]; outputs: string[]; multi: boolean } {
  if (multiOnly || isSet(context, "inputCols")) {
    const inputs = stringArrayParam(context, "inputCols");
    const outputs = stringArrayParam(context, "outputCols");
    if (inputs.length !== outputs.length || inputs.length === 0) {
      throw badParam(context, "outputCols", `has ${outputs.length} names for ${inputs.length} input columns`);
    }
    return { inputs, outputs, multi: true };
  }
  const input = stringParam(context, "inputCol");
  const output = stringParam(context, "outputCol", `${context.metadata.uid}__output`);
  return { inputs: [input], outputs: [output], multi: false };
}

function singleColumn(context: StageContext): { input: string; output: string } {
  const input = stringParam(context, "inputCol");
  const output = stringParam(context, "outputCol", `${context.metadata.uid}__output`);
  return { input, output };
}

// ----------------------------------------------------------------------------------------------------------------
// Learned state (`data/`)

async function singleDataRow(context: StageContext): Promise<Record<string, unknown>> {
  const rows = await context.readParquet();
  const row = rows[0];
  if (rows.length !== 1 || row === undefined) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${where(context)}: data/ holds ${rows.length} rows, expected 1`, {
      field: "data",
    });
  }
  return row;
}

function dataVector(context: StageContext, row: Record<string, unknown>, name: string): SparkVector {
  const value = row[name];
  const problem = isSparkVector(value) ? checkVector(value) : "is not a vector";
  if (problem !== undefined || !isSparkVector(value)) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${where(context)}: data column ${name} ${problem ?? ""}`, {
      field: name,
    });
  }
  return value;
}

function dataNumbers(context: StageContext, name: string, value: unknown): number[] {
  if (!Array.isArray(value) && !ArrayBuffer.isView(value)) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${where(context)}: data column ${name} is not an array`, { field: name });
  }
  return Array.from(value as ArrayLike<unknown>, (item) => Number(item));
}

// ----------------------------------------------------------------------------------------------------------------
// Frame access

function inputError(column: string, message: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_INPUT_INVALID", message, { field: column });
}

function frameColumn(frame: Frame, name: string): FrameColumn {
  const column = frame.columns.get(name);
  if (!column) throw inputError(name, `input column ${name} is missing`);
  return column;
}

function doubleColumn(frame: Frame, name: string): { values: Float64Array; nulls: Uint8Array | undefined } {
  const column = frameColumn(frame, name);
  if (column.kind !== "double") throw inputError(name, `input column ${name} must be numeric, got ${column.kind}`);
  return { values: column.values, nulls: column.nulls };
}

function vectorColumn(frame: Frame, name: string): readonly (SparkVector | null)[] {
  const column = frameColumn(frame, name);
  if (column.kind !== "vector") throw inputError(name, `input column ${name} must be a vector column, got ${column.kind}`);
  return column.values;
}

function nonNullVector(vectors: readonly (SparkVector | null)[], row: number, name: string, size?: number): SparkVector {
  const vector = vectors[row];
  if (vector === null || vector === undefined) throw inputError(name, `input column ${name} is null at row ${row}`);
  if (size !== undefined && vectorSize(vector) !== size) {
    throw inputError(name, `input column ${name} at row ${row} has ${vectorSize(vector)} features, expected ${size}`);
  }
  return vector;
}

/** The frame plus `added` columns; never modifies `frame`. An existing column is not replaced (Spark refuses too). */
function withColumns(frame: Frame, added: readonly (readonly [string, FrameColumn])[]): Frame {
  const columns = new Map(frame.columns);
  for (const [name, column] of added) {
    if (columns.has(name)) throw inputError(name, `output column ${name} already exists`);
    columns.set(name, column);
  }
  return { rows: frame.rows, columns };
}

interface StageParts {
  inputs: ColumnInfo[];
  outputs: ColumnInfo[];
  compute(frame: Frame): (readonly [string, FrameColumn])[];
}

function makeStage(context: StageContext, parts: StageParts): LoadedStage {
  const { inputs, outputs, compute } = parts;
  return {
    className: context.metadata.class,
    uid: context.metadata.uid,
    inputs,
    outputs,
    transform: (frame) => withColumns(frame, compute(frame)),
  };
}

// ----------------------------------------------------------------------------------------------------------------
// Java formatting of doubles (Spark casts numbers to string with `Double.toString`)

/** Java's `Double.toString`: "1.0", "0.001", "1.0E7", "1.0E-4", "NaN", "Infinity". */
export function javaDoubleToString(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Number.POSITIVE_INFINITY) return "Infinity";
  if (value === Number.NEGATIVE_INFINITY) return "-Infinity";
  if (value === 0) return Object.is(value, -0) ? "-0.0" : "0.0";
  const magnitude = Math.abs(value);
  if (magnitude >= 1e-3 && magnitude < 1e7) {
    const text = String(value);
    return text.includes(".") ? text : `${text}.0`;
  }
  const [mantissa = "", exponent = "0"] = value.toExponential().split("e");
  return `${mantissa.includes(".") ? mantissa : `${mantissa}.0`}E${exponent.replace("+", "")}`;
}

// ----------------------------------------------------------------------------------------------------------------
// VectorAssembler (§7.1)

const loadVectorAssembler: StageLoader = async (context) => {
  const inputCols = stringArrayParam(context, "inputCols");
  const output = stringParam(context, "outputCol", `${context.metadata.uid}__output`);
  const handleInvalid = handleInvalidParam(context);
  // Before 2.4 there was no handleInvalid: NaN passed through and only null failed.
  const nanIsInvalid = !versionBefore(context, 2, 4);
  return makeStage(context, {
    inputs: inputCols.map((name) => ({ name, kind: "double" })),
    outputs: [{ name: output, kind: "vector" }],
    compute(frame) {
      const sources = inputCols.map((name) => {
        const column = frameColumn(frame, name);
        if (column.kind === "double" || column.kind === "vector") return { name, column };
        throw inputError(name, `VectorAssembler input column ${name} must be numeric or a vector, got ${column.kind}`);
      });
      const out: (SparkVector | null)[] = new Array<SparkVector | null>(frame.rows);
      let commonSize: number | undefined;
      for (let row = 0; row < frame.rows; row++) {
        const indices: number[] = [];
        const values: number[] = [];
        let offset = 0;
        for (const source of sources) {
          const { column, name } = source;
          if (column.kind === "double") {
            const value = column.values[row] as number;
            if (column.nulls?.[row] === 1) {
              if (handleInvalid !== "keep") throw inputError(name, `VectorAssembler: input column ${name} is null at row ${row}`);
              indices.push(offset);
              values.push(Number.NaN);
            } else {
              if (Number.isNaN(value) && nanIsInvalid && handleInvalid !== "keep") {
                throw inputError(name, `VectorAssembler: input column ${name} is NaN at row ${row} (handleInvalid "error")`);
              }
              if (value !== 0) {
                indices.push(offset);
                values.push(value);
              }
            }
            offset += 1;
          } else if (column.kind === "vector") {
            const vector = column.values[row];
            if (vector === null || vector === undefined) {
              if (handleInvalid !== "keep") throw inputError(name, `VectorAssembler: input column ${name} is null at row ${row}`);
              // Spark needs the length from the column's metadata to fill a null vector with NaNs.
              if (column.size === undefined) {
                throw inputError(name, `VectorAssembler: input column ${name} is null at row ${row} and its vector size is unknown`);
              }
              for (let k = 0; k < column.size; k++) {
                indices.push(offset + k);
                values.push(Number.NaN);
              }
              offset += column.size;
            } else {
              const base = offset;
              forEachActive(vector, (index, value) => {
                if (value !== 0) {
                  indices.push(base + index);
                  values.push(value);
                }
              });
              offset += vectorSize(vector);
            }
          }
        }
        out[row] = compressed(sparseVector(offset, indices, values));
        commonSize = row === 0 || commonSize === offset ? offset : Number.NaN;
      }
      const size = commonSize !== undefined && !Number.isNaN(commonSize) ? commonSize : undefined;
      return [[output, { kind: "vector", values: out, ...(size === undefined ? {} : { size }) }]];
    },
  });
};

// ----------------------------------------------------------------------------------------------------------------
// StringIndexerModel (§7.2)

/** A column read as Spark's `cast(string)` would: strings as they are, numbers in Java's format. */
function stringCells(frame: Frame, name: string): (row: number) => { text: string | null; integerText?: string } {
  const column = frameColumn(frame, name);
  if (column.kind === "string") return (row) => ({ text: column.values[row] ?? null });
  if (column.kind === "double") {
    return (row) => {
      if (column.nulls?.[row] === 1) return { text: null };
      const value = column.values[row] as number;
      // A frame holds every number as a double; the column Spark indexed may have been integral ("1", not "1.0").
      return Number.isInteger(value) ? { text: javaDoubleToString(value), integerText: String(value) } : { text: javaDoubleToString(value) };
    };
  }
  throw inputError(name, `input column ${name} must be a string or numeric column, got ${column.kind}`);
}

const loadStringIndexer: StageLoader = async (context) => {
  const { inputs, outputs } = columnPairs(context);
  const handleInvalid = handleInvalidParam(context);
  const row = await singleDataRow(context);
  let labelsArray: string[][];
  if (row.labelsArray !== undefined && row.labelsArray !== null) {
    if (!Array.isArray(row.labelsArray)) throw badParam(context, "labelsArray", "(data) is not an array");
    labelsArray = row.labelsArray.map((labels) => dataStrings(context, "labelsArray", labels));
  } else {
    labelsArray = [dataStrings(context, "labels", row.labels)];
  }
  if (labelsArray.length !== inputs.length) {
    throw new MlshipError(
      "MLSHIP_ERR_PACKAGE_INVALID",
      `${where(context)}: data holds ${labelsArray.length} label lists for ${inputs.length} input columns`,
      { field: "labelsArray" },
    );
  }
  const indexes = labelsArray.map((labels) => {
    const index = new Map<string, number>();
    // Spark builds the map with later duplicates winning; labels are distinct in practice.
    labels.forEach((label, position) => index.set(label, position));
    return index;
  });
  return makeStage(context, {
    inputs: inputs.map((name) => ({ name, kind: "string" })),
    outputs: outputs.map((name) => ({ name, kind: "double" })),
    compute(frame) {
      return inputs.map((input, c) => {
        const index = indexes[c] as Map<string, number>;
        const unseen = (labelsArray[c] as string[]).length;
        const cell = stringCells(frame, input);
        const values = new Float64Array(frame.rows);
        for (let r = 0; r < frame.rows; r++) {
          const { text, integerText } = cell(r);
          let found = text === null ? undefined : index.get(text);
          if (found === undefined && integerText !== undefined) found = index.get(integerText);
          if (found === undefined) {
            if (handleInvalid !== "keep") {
              throw inputError(
                input,
                text === null
                  ? `StringIndexer: input column ${input} is null at row ${r}`
                  : `StringIndexer: unseen label ${JSON.stringify(text)} in column ${input} at row ${r}`,
              );
            }
            found = unseen;
          }
          values[r] = found;
        }
        return [outputs[c] as string, { kind: "double", values }] as const;
      });
    },
  });
};

function dataStrings(context: StageContext, name: string, value: unknown): string[] {
  if (!Array.isArray(value) || !value.every((item): item is string => typeof item === "string")) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${where(context)}: data column ${name} is not a list of strings`, {
      field: name,
    });
  }
  return value;
}

// ----------------------------------------------------------------------------------------------------------------
// OneHotEncoderModel (§7.3)

const loadOneHotEncoder: StageLoader = async (context) => {
  const { inputs, outputs } = columnPairs(context);
  const handleInvalid = handleInvalidParam(context);
  const dropLast = booleanParam(context, "dropLast", true);
  const row = await singleDataRow(context);
  const categorySizes = dataNumbers(context, "categorySizes", row.categorySizes);
  if (categorySizes.length !== inputs.length) {
    throw new MlshipError(
      "MLSHIP_ERR_PACKAGE_INVALID",
      `${where(context)}: data holds ${categorySizes.length} category sizes for ${inputs.length} input columns`,
      { field: "categorySizes" },
    );
  }
  const keep = handleInvalid === "keep";
  const outputSizes = categorySizes.map((n) => (keep && !dropLast ? n + 1 : dropLast && !keep ? n - 1 : n));
  return makeStage(context, {
    inputs: inputs.map((name) => ({ name, kind: "double" })),
    outputs: outputs.map((name, c) => ({ name, kind: "vector", size: outputSizes[c] as number })),
    compute(frame) {
      return inputs.map((input, c) => {
        const { values, nulls } = doubleColumn(frame, input);
        const categories = categorySizes[c] as number;
        const size = outputSizes[c] as number;
        const out: (SparkVector | null)[] = new Array<SparkVector | null>(frame.rows);
        for (let r = 0; r < frame.rows; r++) {
          // Spark's encoder UDF takes a primitive double: a null input gives a null output.
          if (nulls?.[r] === 1) {
            out[r] = null;
            continue;
          }
          const label = values[r] as number;
          let index: number;
          if (label >= 0 && label < categories) index = Math.trunc(label);
          else if (keep) index = categories;
          else {
            throw inputError(
              input,
              label < 0
                ? `OneHotEncoder: negative value ${label} in column ${input} at row ${r}`
                : `OneHotEncoder: unseen value ${label} in column ${input} at row ${r} (${categories} categories)`,
            );
          }
          out[r] = index < size ? sparseVector(size, [index], [1]) : sparseVector(size, [], []);
        }
        return [outputs[c] as string, { kind: "vector", values: out, size }] as const;
      });
    },
  });
};

// ----------------------------------------------------------------------------------------------------------------
// StandardScalerModel, MinMaxScalerModel, MaxAbsScalerModel, IDFModel (§7.4-7.6, 7.11): vector in, vector out

function vectorStage(
  context: StageContext,
  size: number,
  apply: (vector: SparkVector) => SparkVector,
): LoadedStage {
  const { input, output } = singleColumn(context);
  return makeStage(context, {
    inputs: [{ name: input, kind: "vector", size }],
    outputs: [{ name: output, kind: "vector", size }],
    compute(frame) {
      const vectors = vectorColumn(frame, input);
      const out = vectors.map((_, row) => apply(nonNullVector(vectors, row, input, size)));
      return [[output, { kind: "vector", values: out, size }]];
    },
  });
}

/** Multiplies the stored entries by `scale[index]`, keeping a sparse vector sparse (Spark's `getTransformFunc`). */
function scaleActive(vector: SparkVector, factor: (value: number, index: number) => number): SparkVector {
  if (vector.type === "dense") return { type: "dense", values: vector.values.map((value, index) => factor(value, index)) };
  const values = vector.values.map((value, k) => factor(value, vector.indices[k] as number));
  return { type: "sparse", size: vector.size, indices: vector.indices, values };
}

const loadStandardScaler: StageLoader = async (context) => {
  const row = await singleDataRow(context);
  const std = toDense(dataVector(context, row, "std"));
  const mean = toDense(dataVector(context, row, "mean"));
  const withMean = booleanParam(context, "withMean", false);
  const withStd = booleanParam(context, "withStd", true);
  const scale = std.map((value) => (value === 0 ? 0 : 1 / value));
  // Spark 2.x (mllib's scaler) wrote 0.0 for a zero-std feature when centring; 3.x computes (x - mean) * 0.
  const legacyZeroStd = versionBefore(context, 3);
  return vectorStage(context, mean.length, (vector) => {
    if (withMean) {
      const values = toDense(vector);
      for (let i = 0; i < values.length; i++) {
        if (!withStd) values[i] = (values[i] as number) - (mean[i] as number);
        else if (legacyZeroStd && std[i] === 0) values[i] = 0;
        else values[i] = ((values[i] as number) - (mean[i] as number)) * (scale[i] as number);
      }
      return { type: "dense", values };
    }
    if (withStd) return scaleActive(vector, (value, index) => value * (scale[index] as number));
    return vector;
  });
};

const loadMinMaxScaler: StageLoader = async (context) => {
  const row = await singleDataRow(context);
  const originalMin = toDense(dataVector(context, row, "originalMin"));
  const originalMax = toDense(dataVector(context, row, "originalMax"));
  const min = doubleParam(context, "min", 0);
  const max = doubleParam(context, "max", 1);
  const scale = max - min;
  if (versionBefore(context, 3)) {
    // Spark 2.x: ((x - min_i) / range_i) * scale + min, 0.5 for a constant feature; dense output.
    const range = originalMax.map((value, i) => value - (originalMin[i] as number));
    return vectorStage(context, originalMin.length, (vector) => {
      const values = toDense(vector);
      for (let i = 0; i < values.length; i++) {
        const x = values[i] as number;
        if (Number.isNaN(x)) continue;
        const raw = range[i] !== 0 ? (x - (originalMin[i] as number)) / (range[i] as number) : 0.5;
        values[i] = raw * scale + min;
      }
      return { type: "dense", values };
    });
  }
  // Spark 3.x: (x - min_i) * (scale / range_i) + min, (min + max) / 2 for a constant feature; `.compressed` output.
  const constantOutput = (min + max) / 2;
  const scaleArray = originalMax.map((value, i) => {
    const range = value - (originalMin[i] as number);
    return range !== 0 ? scale / range : 0;
  });
  return vectorStage(context, originalMin.length, (vector) => {
    const values = toDense(vector);
    for (let i = 0; i < values.length; i++) {
      const x = values[i] as number;
      if (Number.isNaN(x)) continue;
      values[i] = scaleArray[i] !== 0 ? (x - (originalMin[i] as number)) * (scaleArray[i] as number) + min : constantOutput;
    }
    return compressed({ type: "dense", values });
  });
};

const loadMaxAbsScaler: StageLoader = async (context) => {
  const row = await singleDataRow(context);
  const maxAbs = toDense(dataVector(context, row, "maxAbs"));
  if (versionBefore(context, 3)) {
    // Spark 2.x divides by maxAbs (1 for a zero column) through Breeze; 3.x multiplies by its reciprocal.
    const divisor = maxAbs.map((value) => (value === 0 ? 1 : value));
    return vectorStage(context, maxAbs.length, (vector) => scaleActive(vector, (value, index) => value / (divisor[index] as number)));
  }
  const scale = maxAbs.map((value) => (value === 0 ? 1 : 1 / value));
  return vectorStage(context, maxAbs.length, (vector) => scaleActive(vector, (value, index) => value * (scale[index] as number)));
};

const loadIdf: StageLoader = async (context) => {
  const row = await singleDataRow(context);
  const idf = toDense(dataVector(context, row, "idf"));
  return vectorStage(context, idf.length, (vector) => scaleActive(vector, (value, index) => value * (idf[index] as number)));
};

// ----------------------------------------------------------------------------------------------------------------
// ImputerModel (§7.7)

const loadImputer: StageLoader = async (context) => {
  const { inputs, outputs } = columnPairs(context);
  const missingValue = doubleParam(context, "missingValue", Number.NaN);
  const row = await singleDataRow(context);
  const surrogates = inputs.map((input) => {
    const value = row[input];
    if (typeof value !== "number") {
      throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${where(context)}: data has no surrogate for column ${input}`, {
        field: input,
      });
    }
    return value;
  });
  // Spark SQL equality: NaN = NaN is true, so the default missingValue NaN matches NaN cells.
  const isMissing = Number.isNaN(missingValue) ? (x: number) => Number.isNaN(x) : (x: number) => x === missingValue;
  return makeStage(context, {
    inputs: inputs.map((name) => ({ name, kind: "double" })),
    outputs: outputs.map((name) => ({ name, kind: "double" })),
    compute(frame) {
      return inputs.map((input, c) => {
        const { values, nulls } = doubleColumn(frame, input);
        const surrogate = surrogates[c] as number;
        const out = new Float64Array(frame.rows);
        for (let r = 0; r < frame.rows; r++) {
          const x = values[r] as number;
          out[r] = nulls?.[r] === 1 || isMissing(x) ? surrogate : x;
        }
        return [outputs[c] as string, { kind: "double", values: out }] as const;
      });
    },
  });
};

// ----------------------------------------------------------------------------------------------------------------
// Bucketizer (§7.8)

/** Java's `Double.compare`: numeric order with -0.0 < 0.0 (NaN never reaches it here). */
function javaCompare(a: number, b: number): number {
  if (a < b) return -1;
  if (a > b) return 1;
  if (a === b && Object.is(a, -0) && !Object.is(b, -0)) return -1;
  if (a === b && !Object.is(a, -0) && Object.is(b, -0)) return 1;
  return 0;
}

/** `java.util.Arrays.binarySearch(double[], key)`: index when found, else `-(insertionPoint) - 1`. */
function javaBinarySearch(sorted: readonly number[], key: number): number {
  let low = 0;
  let high = sorted.length - 1;
  while (low <= high) {
    const mid = (low + high) >>> 1;
    const order = javaCompare(sorted[mid] as number, key);
    if (order < 0) low = mid + 1;
    else if (order > 0) high = mid - 1;
    else return mid;
  }
  return -(low + 1);
}

/** Spark's `Bucketizer.binarySearchForBuckets`: the bucket, or why there is none (NaN with error, out of range). */
export function bucketOf(splits: readonly number[], feature: number, keepInvalid: boolean): number | "nan" | "out" {
  if (Number.isNaN(feature)) return keepInvalid ? splits.length - 1 : "nan";
  if (feature === splits[splits.length - 1]) return splits.length - 2;
  const found = javaBinarySearch(splits, feature);
  if (found >= 0) return found;
  const insertAt = -found - 1;
  if (insertAt === 0 || insertAt === splits.length) return "out";
  return insertAt - 1;
}

function checkSplits(context: StageContext, name: string, splits: number[]): number[] {
  const increasing = splits.every((value, i) => i === 0 || (splits[i - 1] as number) < value);
  if (splits.length < 3 || !increasing) throw badParam(context, name, "must hold at least 3 strictly increasing values");
  return splits;
}

const loadBucketizer: StageLoader = async (context) => {
  const { inputs, outputs, multi } = columnPairs(context);
  const handleInvalid = handleInvalidParam(context);
  const splitsList = multi
    ? doubleArrayArray(context, "splitsArray").map((splits) => checkSplits(context, "splitsArray", splits))
    : [checkSplits(context, "splits", doubleArray(context, "splits", context.param<unknown>("splits")))];
  if (splitsList.length !== inputs.length) throw badParam(context, "splitsArray", `has ${splitsList.length} entries for ${inputs.length} input columns`);
  const keep = handleInvalid === "keep";
  return makeStage(context, {
    inputs: inputs.map((name) => ({ name, kind: "double" })),
    outputs: outputs.map((name) => ({ name, kind: "double" })),
    compute(frame) {
      return inputs.map((input, c) => {
        const { values, nulls } = doubleColumn(frame, input);
        const splits = splitsList[c] as number[];
        const out = new Float64Array(frame.rows);
        for (let r = 0; r < frame.rows; r++) {
          // Spark's UDF takes a primitive double: a null feature gives a null bucket.
          if (nulls?.[r] === 1) continue;
          const feature = values[r] as number;
          const bucket = bucketOf(splits, feature, keep);
          if (bucket === "nan") throw inputError(input, `Bucketizer: input column ${input} is NaN at row ${r} (handleInvalid "error")`);
          if (bucket === "out") {
            throw inputError(
              input,
              `Bucketizer: value ${feature} in column ${input} at row ${r} is outside the splits [${splits[0]}, ${splits[splits.length - 1]}]`,
            );
          }
          out[r] = bucket;
        }
        return [outputs[c] as string, nulls ? { kind: "double", values: out, nulls: Uint8Array.from(nulls) } : { kind: "double", values: out }] as const;
      });
    },
  });
};

function doubleArrayArray(context: StageContext, name: string): number[][] {
  const value = context.param<unknown>(name);
  if (!Array.isArray(value)) throw badParam(context, name, value === undefined ? "is not set" : "is not an array of arrays");
  return value.map((inner) => doubleArray(context, name, inner));
}

// ----------------------------------------------------------------------------------------------------------------
// Binarizer (§7.9)

const loadBinarizer: StageLoader = async (context) => {
  const { inputs, outputs, multi } = columnPairs(context);
  const threshold = doubleParam(context, "threshold", 0);
  const thresholds =
    multi && isSet(context, "thresholds") ? doubleArray(context, "thresholds", context.param<unknown>("thresholds")) : inputs.map(() => threshold);
  if (thresholds.length !== inputs.length) throw badParam(context, "thresholds", `has ${thresholds.length} values for ${inputs.length} input columns`);
  const legacy = versionBefore(context, 3);
  return makeStage(context, {
    inputs: inputs.map((name) => ({ name, kind: "double" })),
    outputs: outputs.map((name) => ({ name, kind: "double" })),
    compute(frame) {
      return inputs.map((input, c) => {
        const t = thresholds[c] as number;
        const column = frameColumn(frame, input);
        const output = outputs[c] as string;
        if (column.kind === "double") {
          const out = new Float64Array(frame.rows);
          for (let r = 0; r < frame.rows; r++) {
            const x = column.values[r] as number;
            out[r] = !Number.isNaN(x) && x > t ? 1 : 0;
          }
          // 2.x: a UDF on a primitive double (null in, null out). 3.x: a SQL `when`, where a null compares false -> 0.0.
          const nulls = legacy && column.nulls ? Uint8Array.from(column.nulls) : undefined;
          if (!legacy && column.nulls) for (let r = 0; r < frame.rows; r++) if (column.nulls[r] === 1) out[r] = 0;
          return [output, nulls ? { kind: "double", values: out, nulls } : { kind: "double", values: out }] as const;
        }
        if (column.kind === "vector") {
          const out = column.values.map((vector, r) => binarizeVector(nonNullVector(column.values, r, input), t, legacy));
          return [output, column.size === undefined ? { kind: "vector", values: out } : { kind: "vector", values: out, size: column.size }] as const;
        }
        throw inputError(input, `Binarizer input column ${input} must be numeric or a vector, got ${column.kind}`);
      });
    },
  });
};

function binarizeVector(vector: SparkVector, threshold: number, legacy: boolean): SparkVector {
  const size = vectorSize(vector);
  if (threshold >= 0 || legacy) {
    const indices: number[] = [];
    forEachActive(vector, (index, value) => {
      if (value > threshold) indices.push(index);
    });
    return compressed(sparseVector(size, indices, indices.map(() => 1)));
  }
  // A negative threshold turns every zero into 1.0: start from ones and clear the non-zeros at or below it.
  const values = new Float64Array(size).fill(1);
  forEachActive(vector, (index, value) => {
    if (value !== 0 && value <= threshold) values[index] = 0;
  });
  return compressed({ type: "dense", values });
}

// ----------------------------------------------------------------------------------------------------------------
// Tokenizer and HashingTF (§7.10)

/** Java's `\s` (no UNICODE_CHARACTER_CLASS): space, \t, \n, \x0B, \f, \r. */
const JAVA_WHITESPACE = /[ \t\n\v\f\r]/;

/** `s.toLowerCase.split("\\s")` as Java: empty tokens between separators kept, trailing empty tokens dropped. */
export function tokenize(text: string): string[] {
  const parts = text.toLowerCase().split(JAVA_WHITESPACE);
  // Java returns the input itself when nothing matched (so "" gives [""]).
  if (parts.length === 1) return parts;
  let end = parts.length;
  while (end > 0 && parts[end - 1] === "") end--;
  return parts.slice(0, end);
}

const loadTokenizer: StageLoader = async (context) => {
  const { input, output } = singleColumn(context);
  return makeStage(context, {
    inputs: [{ name: input, kind: "string" }],
    outputs: [{ name: output, kind: "strings" }],
    compute(frame) {
      const column = frameColumn(frame, input);
      if (column.kind !== "string") throw inputError(input, `Tokenizer input column ${input} must be a string column, got ${column.kind}`);
      const out = column.values.map((text, r) => {
        if (text === null) throw inputError(input, `Tokenizer: input column ${input} is null at row ${r}`);
        return tokenize(text);
      });
      return [[output, { kind: "strings", values: out }]];
    },
  });
};

const MURMUR_SEED = 42;

function mixK1(k: number): number {
  let k1 = Math.imul(k, 0xcc9e2d51);
  k1 = (k1 << 15) | (k1 >>> 17);
  return Math.imul(k1, 0x1b873593);
}

function mixH1(h: number, k: number): number {
  let h1 = h ^ k;
  h1 = (h1 << 13) | (h1 >>> 19);
  return (Math.imul(h1, 5) + 0xe6546b64) | 0;
}

function fmix(h: number, length: number): number {
  let h1 = h ^ length;
  h1 ^= h1 >>> 16;
  h1 = Math.imul(h1, 0x85ebca6b);
  h1 ^= h1 >>> 13;
  h1 = Math.imul(h1, 0xc2b2ae35);
  h1 ^= h1 >>> 16;
  return h1 | 0;
}

/**
 * Spark's Murmur3_x86_32 over bytes, as a signed 32-bit int. `legacyTail` selects `hashUnsafeBytes` (Spark 2.x:
 * each trailing byte, sign-extended, mixed as its own word); otherwise `hashUnsafeBytes2` (standard MurmurHash3).
 */
export function sparkMurmur3Bytes(bytes: Uint8Array, seed: number, legacyTail: boolean): number {
  const aligned = bytes.length - (bytes.length % 4);
  let h = seed | 0;
  for (let i = 0; i < aligned; i += 4) {
    const word = (bytes[i] as number) | ((bytes[i + 1] as number) << 8) | ((bytes[i + 2] as number) << 16) | ((bytes[i + 3] as number) << 24);
    h = mixH1(h, mixK1(word));
  }
  if (legacyTail) {
    for (let i = aligned; i < bytes.length; i++) h = mixH1(h, mixK1(((bytes[i] as number) << 24) >> 24));
  } else {
    let k = 0;
    for (let i = aligned, shift = 0; i < bytes.length; i++, shift += 8) k ^= (bytes[i] as number) << shift;
    h ^= mixK1(k);
  }
  return fmix(h, bytes.length);
}

const utf8 = new TextEncoder();

/** HashingTF's index of a term: `nonNegativeMod(murmur3(utf8(term), 42), numFeatures)`. */
export function hashingTFIndex(term: string, numFeatures: number, legacyHash: boolean): number {
  const hash = sparkMurmur3Bytes(utf8.encode(term), MURMUR_SEED, legacyHash);
  return ((hash % numFeatures) + numFeatures) % numFeatures;
}

const loadHashingTF: StageLoader = async (context) => {
  const { input, output } = singleColumn(context);
  const numFeatures = integerParam(context, "numFeatures", 1 << 18);
  if (numFeatures < 1) throw badParam(context, "numFeatures", "must be positive");
  const binary = booleanParam(context, "binary", false);
  // HashingTF.read: models saved by Spark < 3 keep the 2.x hash (hashUnsafeBytes' byte-wise tail).
  const legacyHash = versionBefore(context, 3);
  return makeStage(context, {
    inputs: [{ name: input, kind: "strings" }],
    outputs: [{ name: output, kind: "vector", size: numFeatures }],
    compute(frame) {
      const column = frameColumn(frame, input);
      if (column.kind !== "strings") throw inputError(input, `HashingTF input column ${input} must be an array of strings, got ${column.kind}`);
      const out = column.values.map((terms, r) => {
        if (terms === null) throw inputError(input, `HashingTF: input column ${input} is null at row ${r}`);
        const frequencies = new Map<number, number>();
        for (const term of terms) {
          const index = hashingTFIndex(term, numFeatures, legacyHash);
          frequencies.set(index, binary ? 1 : (frequencies.get(index) ?? 0) + 1);
        }
        const indices = [...frequencies.keys()].sort((a, b) => a - b);
        return sparseVector(numFeatures, indices, indices.map((index) => frequencies.get(index) as number));
      });
      return [[output, { kind: "vector", values: out, size: numFeatures }]];
    },
  });
};

// ----------------------------------------------------------------------------------------------------------------

/** Feature transformer classes -> loaders. OneHotEncoderModel kept its name from 2.3 (OneHotEncoderEstimator's model) on. */
export const featureLoaders: StageLoaders = {
  [`${FEATURE}VectorAssembler`]: loadVectorAssembler,
  [`${FEATURE}StringIndexerModel`]: loadStringIndexer,
  [`${FEATURE}OneHotEncoderModel`]: loadOneHotEncoder,
  [`${FEATURE}StandardScalerModel`]: loadStandardScaler,
  [`${FEATURE}MinMaxScalerModel`]: loadMinMaxScaler,
  [`${FEATURE}MaxAbsScalerModel`]: loadMaxAbsScaler,
  [`${FEATURE}ImputerModel`]: loadImputer,
  [`${FEATURE}Bucketizer`]: loadBucketizer,
  [`${FEATURE}Binarizer`]: loadBinarizer,
  [`${FEATURE}Tokenizer`]: loadTokenizer,
  [`${FEATURE}HashingTF`]: loadHashingTF,
  [`${FEATURE}IDFModel`]: loadIdf,
};
