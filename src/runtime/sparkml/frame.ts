/**
 * Tensors <-> Spark columns. A model's inputs (pipeline input columns) arrive as tensors, one per column: `double`
 * from a numeric tensor [N] (or [N,1]), `string` from a string tensor [N], `vector` from a numeric tensor [N, size]
 * (dense rows). Outputs go back as float64 [N] (`double`), float64 [N, size] (`vector`, sparse vectors expanded)
 * or string [N] (`string`). NaN passes through as NaN (Spark treats it as a value, e.g. Imputer's missing value).
 */
import { MlshipError } from "../../core/index.js";
import type { DType, Tensor } from "../../core/index.js";
import type { TensorSpec } from "../../package/index.js";
import type { ColumnInfo, Frame, FrameColumn, SparkVector } from "./types.js";

function invalid(name: string, message: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_INPUT_INVALID", `input '${name}': ${message}`, { field: name });
}

/** The tensor spec of a column, as the model signature shows it. */
export function tensorSpecOf(column: ColumnInfo): TensorSpec {
  switch (column.kind) {
    case "double":
      return { name: column.name, dtype: "float64", shape: [-1] };
    case "string":
      return { name: column.name, dtype: "string", shape: [-1] };
    case "vector":
      return { name: column.name, dtype: "float64", shape: [-1, column.size ?? -1] };
    case "strings":
      // array<string> has no fixed width; it is carried as one space-joined string per row.
      return { name: column.name, dtype: "string", shape: [-1] };
  }
}

const NUMERIC: ReadonlySet<DType> = new Set<DType>([
  "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool",
]);

function numericValues(tensor: Tensor): Float64Array {
  const data = tensor.data;
  if (data instanceof Float64Array) return data;
  if (Array.isArray(data)) throw new Error("string data");
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) return Float64Array.from(data, (value) => Number(value));
  if (tensor.dtype === "float16") throw new Error("float16 is not supported for Spark columns");
  return Float64Array.from(data as ArrayLike<number>);
}

function rowsOf(tensor: Tensor): number {
  const first = tensor.shape[0];
  if (first === undefined) throw new Error("a scalar");
  return first;
}

function tensorColumn(name: string, tensor: Tensor, info: ColumnInfo): FrameColumn {
  const rows = rowsOf(tensor);
  const shape = tensor.shape;
  switch (info.kind) {
    case "double": {
      if (!NUMERIC.has(tensor.dtype)) throw invalid(name, `a numeric column needs a numeric tensor, got ${tensor.dtype}`);
      if (shape.length > 2 || (shape.length === 2 && shape[1] !== 1)) {
        throw invalid(name, `a numeric column needs shape [N] or [N,1], got [${shape.join(",")}]`);
      }
      const values = numericValues(tensor);
      return { kind: "double", values: values === tensor.data ? Float64Array.from(values) : values };
    }
    case "string":
    case "strings": {
      if (tensor.dtype !== "string" || !Array.isArray(tensor.data)) {
        throw invalid(name, `a string column needs a string tensor, got ${tensor.dtype}`);
      }
      if (shape.length > 2 || (shape.length === 2 && shape[1] !== 1)) {
        throw invalid(name, `a string column needs shape [N] or [N,1], got [${shape.join(",")}]`);
      }
      const strings = tensor.data;
      if (info.kind === "string") return { kind: "string", values: strings.slice() };
      return { kind: "strings", values: strings.map((text) => (text === "" ? [] : text.split(" "))) };
    }
    case "vector": {
      if (!NUMERIC.has(tensor.dtype)) throw invalid(name, `a vector column needs a numeric tensor [N, size], got ${tensor.dtype}`);
      if (shape.length !== 2) throw invalid(name, `a vector column needs shape [N, size], got [${shape.join(",")}]`);
      const width = shape[1] as number;
      if (info.size !== undefined && width !== info.size) {
        throw invalid(name, `the model expects vectors of size ${info.size}, got ${width}`);
      }
      const flat = numericValues(tensor);
      const vectors: SparkVector[] = [];
      for (let row = 0; row < rows; row += 1) {
        vectors.push({ type: "dense", values: flat.slice(row * width, (row + 1) * width) });
      }
      return { kind: "vector", values: vectors, size: width };
    }
  }
}

/** The input frame from the request's tensors, one per pipeline input column (validated, named in errors). */
export function frameFromTensors(feeds: Record<string, Tensor>, inputs: readonly ColumnInfo[]): Frame {
  const columns = new Map<string, FrameColumn>();
  let rows: number | undefined;
  for (const info of inputs) {
    const tensor = feeds[info.name];
    if (tensor === undefined) {
      throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", `missing input '${info.name}' (${info.kind} column)`, { field: info.name });
    }
    let column: FrameColumn;
    let count: number;
    try {
      count = rowsOf(tensor);
      column = tensorColumn(info.name, tensor, info);
    } catch (error) {
      if (error instanceof MlshipError) throw error;
      throw invalid(info.name, (error as Error).message);
    }
    if (rows !== undefined && count !== rows) {
      throw new MlshipError("MLSHIP_ERR_INPUT_SHAPE", `input '${info.name}' has ${count} rows, other inputs have ${rows}`, {
        field: info.name,
      });
    }
    rows = count;
    columns.set(info.name, column);
  }
  return { rows: rows ?? 0, columns };
}

function vectorLength(vector: SparkVector): number {
  return vector.type === "dense" ? vector.values.length : vector.size;
}

function outputError(name: string, message: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_RUNTIME_INFERENCE", `output '${name}': ${message}`, { field: name });
}

/** The output tensors for `outputs` (the last stage's columns) from the transformed frame. */
export function tensorsFromFrame(frame: Frame, outputs: readonly ColumnInfo[]): Record<string, Tensor> {
  const result: Record<string, Tensor> = {};
  for (const info of outputs) {
    const column = frame.columns.get(info.name);
    if (column === undefined) throw outputError(info.name, "the pipeline did not produce this column");
    result[info.name] = columnTensor(info.name, column, frame.rows, info.size);
  }
  return result;
}

function columnTensor(name: string, column: FrameColumn, rows: number, declaredSize: number | undefined): Tensor {
  switch (column.kind) {
    case "double": {
      const values = Float64Array.from(column.values);
      // A null cell has no tensor encoding; NaN is the closest (and what Spark's own Pandas conversion gives).
      if (column.nulls) for (let i = 0; i < rows; i += 1) if (column.nulls[i] === 1) values[i] = Number.NaN;
      return { dtype: "float64", shape: [rows], data: values };
    }
    case "string":
      return { dtype: "string", shape: [rows], data: column.values.map((value) => value ?? "") };
    case "strings":
      return { dtype: "string", shape: [rows], data: column.values.map((value) => (value ?? []).join(" ")) };
    case "vector": {
      let width = column.size ?? declaredSize;
      if (width === undefined) {
        const first = column.values.find((value) => value !== null);
        width = first ? vectorLength(first) : 0;
      }
      const data = new Float64Array(rows * width);
      for (let row = 0; row < rows; row += 1) {
        const vector = column.values[row];
        if (vector === null || vector === undefined) {
          data.fill(Number.NaN, row * width, (row + 1) * width);
          continue;
        }
        if (vectorLength(vector) !== width) throw outputError(name, `row ${row} has a vector of size ${vectorLength(vector)}, expected ${width}`);
        const offset = row * width;
        if (vector.type === "dense") data.set(vector.values, offset);
        else for (let k = 0; k < vector.indices.length; k += 1) data[offset + (vector.indices[k] as number)] = vector.values[k] as number;
      }
      return { dtype: "float64", shape: [rows, width], data };
    }
  }
}
