/**
 * Measuring a model with onnxruntime-node in this process: p50 latency at a batch size, predictions on a
 * validation CSV, and the comparison of a parent and a child model (accuracy, agreement; MAE/R² for regression).
 * Sessions use the serving workers' options (one intra-op and one inter-op thread, sequential, optimization level
 * `all`), so the numbers are what one worker sees.
 */
import { readFile } from "node:fs/promises";
import * as ort from "onnxruntime-node";
import { MlshipError } from "../core/index.js";
import { parseCsv } from "../package/index.js";

/** onnxruntime graph optimization levels. */
export const OPTIMIZE_LEVELS = ["disabled", "basic", "extended", "all"] as const;
export type OptimizeLevel = (typeof OPTIMIZE_LEVELS)[number];

/** The session options of the serving workers (src/runtime/onnx/worker.ts). */
export function servingSessionOptions(level: OptimizeLevel = "all"): ort.InferenceSession.SessionOptions {
  return { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: "sequential", graphOptimizationLevel: level, logSeverityLevel: 4 };
}

/** Opens a session on model bytes; a model onnxruntime refuses fails with MLSHIP_ERR_RUNTIME_LOAD. */
export async function openSession(model: Uint8Array, what: string, level: OptimizeLevel = "all"): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(model, servingSessionOptions(level));
  } catch (error) {
    throw new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", `onnxruntime cannot load ${what}: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Lets onnxruntime apply its graph optimizations at `level` and write the optimized model to `outPath`.
 * Models optimized at `extended` or `all` may hold onnxruntime-only (com.microsoft) ops and layouts chosen for this
 * machine's CPU; `basic` stays standard ONNX.
 */
export async function saveOptimizedModel(model: Uint8Array, level: OptimizeLevel, outPath: string): Promise<void> {
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(model, { ...servingSessionOptions(level), optimizedModelFilePath: outPath });
  } catch (error) {
    throw new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", `onnxruntime cannot optimize the model at level ${level}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  await session.release();
}

/** The single float32 input a measured model must have, with its shape (-1 for symbolic dims). */
export interface InputInfo {
  name: string;
  shape: number[];
}

/** The model's input: exactly one float32 tensor with a leading batch axis, or MLSHIP_ERR_PACKAGE_UNSUPPORTED. */
export function inputInfo(session: ort.InferenceSession): InputInfo {
  const metas = session.inputMetadata;
  const first = metas[0];
  if (metas.length !== 1 || first === undefined || !first.isTensor || first.type !== "float32") {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_UNSUPPORTED", "optimize measures models with exactly one float32 input tensor");
  }
  return { name: first.name, shape: first.shape.map((d) => (typeof d === "number" && d >= 0 ? d : -1)) };
}

/** Elements of one row (the product of the non-batch dims; symbolic ones count as 1). */
export function rowWidth(info: InputInfo): number {
  return info.shape.slice(1).reduce((n, d) => n * (d > 0 ? d : 1), 1);
}

function batchTensor(info: InputInfo, rows: Float32Array, batch: number): ort.Tensor {
  const width = rowWidth(info);
  const data = new Float32Array(batch * width);
  const available = Math.max(1, Math.floor(rows.length / width));
  for (let b = 0; b < batch; b++) data.set(rows.subarray((b % available) * width, (b % available + 1) * width), b * width);
  const shape = [batch, ...info.shape.slice(1).map((d) => (d > 0 ? d : 1))];
  return new ort.Tensor("float32", data, shape);
}

/** Median wall time (ms) of `runs` runs at `batch` rows, after `warmup` runs. Rows are taken from `sample` in turn. */
export async function latencyP50(
  session: ort.InferenceSession,
  sample: Float32Array,
  batch: number,
  runs = 50,
  warmup = 10,
): Promise<number> {
  const info = inputInfo(session);
  const feeds = { [info.name]: batchTensor(info, sample, batch) };
  for (let i = 0; i < warmup; i++) await session.run(feeds);
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = process.hrtime.bigint();
    await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)] ?? 0;
}

/** A validation set read from CSV: the feature rows flattened, the labels (class index or regression target). */
export interface ValidationSet {
  rows: number;
  features: Float32Array;
  labels: Float64Array;
  labelColumn: string;
  columns: string[];
}

/**
 * Reads a validation CSV: feature columns = `columns` (a tabular package's signature columns) or, when absent,
 * every column but the label, in file order; their count must fill one input row. The label column is
 * `labelColumn`, else `label`, else `target`. Missing columns or non-numeric cells fail with MLSHIP_ERR_INPUT_INVALID.
 */
export async function readValidationCsv(
  file: string,
  options: { columns?: string[]; labelColumn?: string; width: number; labelOptional?: boolean; flag?: string },
): Promise<ValidationSet> {
  const flag = options.flag ?? "--validate";
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_NOT_FOUND", `cannot read ${flag} file ${file}: ${(error as Error).message}`, {
      field: flag,
      cause: error,
    });
  }
  const table = parseCsv(text);
  const labelColumn = options.labelColumn ?? (table.header.includes("label") ? "label" : table.header.includes("target") ? "target" : undefined);
  if ((labelColumn === undefined || !table.header.includes(labelColumn)) && !(options.labelOptional === true && options.labelColumn === undefined)) {
    throw new MlshipError(
      "MLSHIP_ERR_INPUT_INVALID",
      `${flag} file ${file} has no label column (${options.labelColumn ?? "label or target"}); its columns: ${table.header.join(", ")}`,
      { field: flag },
    );
  }
  const hasLabel = labelColumn !== undefined && table.header.includes(labelColumn);
  const columns = options.columns ?? table.header.filter((c) => c !== labelColumn);
  const missing = columns.filter((c) => !table.header.includes(c));
  if (missing.length > 0) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${flag} file ${file} lacks the model's columns: ${missing.join(", ")}`, {
      field: flag,
    });
  }
  if (columns.length !== options.width) {
    throw new MlshipError(
      "MLSHIP_ERR_INPUT_INVALID",
      `${flag} file ${file} has ${columns.length} feature columns but one model input row holds ${options.width} values`,
      { field: flag },
    );
  }
  const index = columns.map((c) => table.header.indexOf(c));
  const labelIndex = (hasLabel ? table.header.indexOf(labelColumn) : -1);
  const features = new Float32Array(table.rows.length * columns.length);
  const labels = new Float64Array(table.rows.length);
  table.rows.forEach((row, r) => {
    index.forEach((i, c) => {
      const v = Number(row[i]);
      if (row[i] === undefined || row[i] === "" || !Number.isFinite(v)) {
        throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${flag} file ${file} row ${r + 2} column ${columns[c] ?? ""}: not a number`, {
          field: flag,
        });
      }
      features[r * columns.length + c] = v;
    });
    if (!hasLabel) return;
    const label = Number(row[labelIndex]);
    if (!Number.isFinite(label)) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${flag} file ${file} row ${r + 2}: label ${row[labelIndex] ?? ""} is not a number`, {
        field: flag,
      });
    }
    labels[r] = label;
  });
  if (table.rows.length === 0) throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${flag} file ${file} has no rows`, { field: flag });
  return { rows: table.rows.length, features, labels, labelColumn: hasLabel ? labelColumn : "", columns };
}

/** What a model predicts for the validation rows: a class per row (classification) or a value (regression). */
export interface Predictions {
  task: "classification" | "regression";
  /** Class index (classification) or the predicted value (regression), per row. */
  values: Float64Array;
  /** The float output used (probabilities / scores / prediction), flattened. */
  scores: Float32Array;
}

/**
 * Runs the rows through the model in chunks. Classification when the model has an integer output (its label) or a
 * float output with more than one column (argmax); regression when its first float output has one column.
 */
export async function predict(session: ort.InferenceSession, data: ValidationSet, chunk = 256): Promise<Predictions> {
  const info = inputInfo(session);
  const width = rowWidth(info);
  const values = new Float64Array(data.rows);
  const scores: number[] = [];
  let task: Predictions["task"] = "regression";
  for (let start = 0; start < data.rows; start += chunk) {
    const n = Math.min(chunk, data.rows - start);
    const feeds = { [info.name]: batchTensor(info, data.features.subarray(start * width, (start + n) * width), n) };
    const result = await session.run(feeds);
    const outputs = session.outputNames.map((name) => result[name]).filter((t): t is ort.Tensor => t !== undefined);
    const intOut = outputs.find((t) => t.type === "int64" || t.type === "int32");
    const floatOut = outputs.find((t) => t.type === "float32");
    if (floatOut !== undefined) for (const v of floatOut.data as Float32Array) scores.push(v);
    if (intOut !== undefined && intOut.data.length === n) {
      task = "classification";
      const d = intOut.data as BigInt64Array | Int32Array;
      for (let i = 0; i < n; i++) values[start + i] = Number(d[i]);
      continue;
    }
    if (floatOut === undefined) throw new MlshipError("MLSHIP_ERR_PACKAGE_UNSUPPORTED", "optimize cannot read the model's predictions: no float or integer output");
    const cols = floatOut.data.length / n;
    const d = floatOut.data as Float32Array;
    if (cols > 1) {
      task = "classification";
      for (let i = 0; i < n; i++) {
        let best = 0;
        for (let c = 1; c < cols; c++) if ((d[i * cols + c] ?? 0) > (d[i * cols + best] ?? 0)) best = c;
        values[start + i] = best;
      }
    } else for (let i = 0; i < n; i++) values[start + i] = d[i] ?? 0;
  }
  return { task, values, scores: Float32Array.from(scores) };
}

/** Quality of predictions against labels. */
export interface Quality {
  accuracy?: number;
  mae?: number;
  r2?: number;
}

/** Accuracy (classification) or MAE and R² (regression). */
export function quality(p: Predictions, labels: Float64Array): Quality {
  if (p.task === "classification") {
    let right = 0;
    for (let i = 0; i < labels.length; i++) if (p.values[i] === labels[i]) right++;
    return { accuracy: right / labels.length };
  }
  let mean = 0;
  for (const y of labels) mean += y / labels.length;
  let abs = 0;
  let ssRes = 0;
  let ssTot = 0;
  for (let i = 0; i < labels.length; i++) {
    const e = (labels[i] ?? 0) - (p.values[i] ?? 0);
    abs += Math.abs(e);
    ssRes += e * e;
    ssTot += ((labels[i] ?? 0) - mean) ** 2;
  }
  return { mae: abs / labels.length, r2: ssTot === 0 ? 0 : 1 - ssRes / ssTot };
}

/** How a child model's predictions compare with its parent's. */
export interface Agreement {
  /** Share of rows with the same predicted class (classification only). */
  agreement?: number;
  /** Largest absolute difference of the float outputs (probabilities / predictions). */
  maxAbsDiff: number;
  /** Mean absolute difference of the float outputs. */
  meanAbsDiff: number;
}

/** Agreement of `child` with `parent` on the same rows. */
export function agreement(parent: Predictions, child: Predictions): Agreement {
  let same = 0;
  for (let i = 0; i < parent.values.length; i++) if (parent.values[i] === child.values[i]) same++;
  let max = 0;
  let sum = 0;
  const n = Math.min(parent.scores.length, child.scores.length);
  for (let i = 0; i < n; i++) {
    const d = Math.abs((parent.scores[i] ?? 0) - (child.scores[i] ?? 0));
    max = Math.max(max, d);
    sum += d;
  }
  return {
    ...(parent.task === "classification" ? { agreement: same / Math.max(1, parent.values.length) } : {}),
    maxAbsDiff: max,
    meanAbsDiff: n === 0 ? 0 : sum / n,
  };
}
