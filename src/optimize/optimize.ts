/**
 * One optimization of an ONNX model (int8 quantization, fp16 conversion, onnxruntime graph optimization) and its
 * report: sizes, p50 latency at batch 1 and 32, and on a validation set the parent's and child's quality, their
 * agreement, and the accuracy gate.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { MlshipError } from "../core/index.js";
import { agreement, latencyP50, openSession, predict, quality, rowWidth, inputInfo, saveOptimizedModel } from "./evaluate.js";
import type { Agreement, OptimizeLevel, Quality, ValidationSet } from "./evaluate.js";
import { convertFp16 } from "./fp16.js";
import { decodeModel, encodeModel } from "./model.js";
import { quantizeDynamic } from "./quantize.js";
import { quantizeStatic } from "./static.js";
import type { CalibrationMethod } from "./static.js";

/** What to do to the model. At least one of `quantize`, `fp16`, `level` is set; `quantize` and `fp16` exclude each other. */
export interface OptimizeSpec {
  quantize?: "int8-dynamic" | "int8-static";
  /** int8: one weight scale per output column instead of one per tensor. */
  perChannel?: boolean;
  /** int8-dynamic: also quantize Conv layers (ConvInteger). */
  conv?: boolean;
  /** int8-static: rows to calibrate activation ranges on (flattened model input rows). */
  calibration?: ValidationSet;
  /** int8-static: how activation ranges are taken from the calibration data (default minmax). */
  calibrationMethod?: CalibrationMethod;
  /** int8-static with `percentile`: the percentile of |x| kept (default 99.99). */
  percentile?: number;
  fp16?: boolean;
  /** fp16: more op types to keep in float32. */
  keepFloat32?: string[];
  /** onnxruntime graph optimization applied last and saved as the model (default: none). */
  level?: OptimizeLevel;
}

/** The rewritten model and what was done. */
export interface OptimizeResult {
  model: Uint8Array;
  /** A JSON-able description of the optimization (recorded in the new version's lineage). */
  optimization: Record<string, string | number | boolean | string[]>;
}

/** The method name of a spec, e.g. `int8-dynamic`, `fp16`, `int8-static+ort-basic`, `ort-extended`. */
export function methodName(spec: OptimizeSpec): string {
  const parts: string[] = [];
  if (spec.quantize !== undefined) parts.push(spec.quantize);
  if (spec.fp16 === true) parts.push("fp16");
  if (spec.level !== undefined) parts.push(`ort-${spec.level}`);
  return parts.join("+");
}

/** Applies `spec` to ONNX model bytes. */
export async function optimizeModel(bytes: Uint8Array, spec: OptimizeSpec): Promise<OptimizeResult> {
  if (spec.quantize !== undefined && spec.fp16 === true) {
    throw new MlshipError("MLSHIP_ERR_CLI_USAGE", "use either --quantize or --fp16, not both", { field: "--fp16" });
  }
  if (spec.quantize === undefined && spec.fp16 !== true && spec.level === undefined) {
    throw new MlshipError("MLSHIP_ERR_CLI_USAGE", "say what to do: --quantize int8-dynamic|int8-static, --fp16 or --optimize-level LEVEL", {
      field: "--quantize",
    });
  }
  const optimization: OptimizeResult["optimization"] = { method: methodName(spec) };
  let model = bytes;
  if (spec.quantize === "int8-dynamic") {
    const { model: out, summary } = quantizeDynamic(decodeModel(bytes), { perChannel: spec.perChannel ?? false, conv: spec.conv ?? false });
    model = encodeModel(out);
    Object.assign(optimization, { per_channel: spec.perChannel ?? false, conv: spec.conv ?? false, quantized_nodes: summary.quantized });
    if (summary.skipped.length > 0) optimization.skipped_nodes = summary.skipped.map((s) => `${s.node}: ${s.reason}`);
  } else if (spec.quantize === "int8-static") {
    if (spec.calibration === undefined) {
      throw new MlshipError("MLSHIP_ERR_CLI_USAGE", "int8-static quantization needs --calibration FILE", { field: "--calibration" });
    }
    const method = spec.calibrationMethod ?? "minmax";
    const { model: out, summary } = await quantizeStatic(decodeModel(bytes), spec.calibration, {
      perChannel: spec.perChannel ?? false,
      method,
      percentile: spec.percentile,
    });
    model = encodeModel(out);
    Object.assign(optimization, {
      per_channel: spec.perChannel ?? false,
      calibration_method: method,
      calibration_rows: spec.calibration.rows,
      quantized_nodes: summary.quantized,
    });
    if (method === "percentile") optimization.percentile = spec.percentile ?? 99.99;
    if (summary.skipped.length > 0) optimization.skipped_nodes = summary.skipped.map((s) => `${s.node}: ${s.reason}`);
  } else if (spec.fp16 === true) {
    const { model: out, summary } = convertFp16(decodeModel(bytes), { keep: spec.keepFloat32 });
    model = encodeModel(out);
    Object.assign(optimization, { fp16_initializers: summary.initializers, kept_float32: summary.keptFloat32, casts: summary.casts });
  }
  if (spec.level !== undefined) {
    const dir = await mkdtemp(path.join(os.tmpdir(), "mlship-optimize-"));
    try {
      const file = path.join(dir, "model.onnx");
      await saveOptimizedModel(model, spec.level, file);
      model = new Uint8Array(await readFile(file));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    optimization.ort_level = spec.level;
  }
  // The result must load and run in onnxruntime (some kernels check their inputs only when run).
  const session = await openSession(model, "the optimized model");
  try {
    const info = inputInfo(session);
    const shape = info.shape.map((d) => (d > 0 ? d : 1));
    await session.run({ [info.name]: new ort.Tensor("float32", new Float32Array(shape.reduce((a, b) => a * b, 1)), shape) });
  } catch (error) {
    throw new MlshipError("MLSHIP_ERR_RUNTIME_INFERENCE", `onnxruntime cannot run the optimized model: ${(error as Error).message}`, { cause: error });
  } finally {
    await session.release();
  }
  return { model, optimization };
}

/** Measurements of one model. */
export interface ModelMeasure {
  bytes: number;
  p50_ms_batch1: number;
  p50_ms_batch32: number;
  quality?: Quality;
}

/** The report of one optimization. */
export interface OptimizeReport {
  method: string;
  parent: ModelMeasure;
  child: ModelMeasure;
  /** child bytes / parent bytes. */
  size_ratio: number;
  validation?: {
    rows: number;
    task: "classification" | "regression";
    label_column: string;
    agreement: Agreement;
    /** The gated metric: accuracy (classification) or r2 (regression); the drop is parent - child. */
    metric: "accuracy" | "r2";
    drop: number;
  };
  gate: {
    max_drop: number;
    /** null when there was no validation set (nothing to gate on). */
    passed: boolean | null;
    message: string;
  };
}

/** Options of `measure`. */
export interface MeasureOptions {
  validation?: ValidationSet;
  /** Most accepted drop of accuracy (or R² for regression), parent minus child (default 0.01). */
  maxAccuracyDrop?: number;
  /** Timed runs per latency figure (default 50). */
  runs?: number;
}

/** Measures parent and child and applies the accuracy gate (the report says whether it passed; nothing throws). */
export async function measure(parentBytes: Uint8Array, childBytes: Uint8Array, method: string, options: MeasureOptions = {}): Promise<OptimizeReport> {
  const maxDrop = options.maxAccuracyDrop ?? 0.01;
  const parent = await openSession(parentBytes, "the parent model");
  const child = await openSession(childBytes, "the optimized model").catch(async (error: unknown) => {
    await parent.release();
    throw error;
  });
  try {
    const info = inputInfo(parent);
    const width = rowWidth(info);
    const sample = options.validation?.features.subarray(0, 32 * width) ?? syntheticRows(width, 32);
    const runs = options.runs ?? 50;
    const parentMeasure: ModelMeasure = {
      bytes: parentBytes.length,
      p50_ms_batch1: await latencyP50(parent, sample, 1, runs),
      p50_ms_batch32: await latencyP50(parent, sample, 32, runs),
    };
    const childMeasure: ModelMeasure = {
      bytes: childBytes.length,
      p50_ms_batch1: await latencyP50(child, sample, 1, runs),
      p50_ms_batch32: await latencyP50(child, sample, 32, runs),
    };
    const report: OptimizeReport = {
      method,
      parent: parentMeasure,
      child: childMeasure,
      size_ratio: childBytes.length / parentBytes.length,
      gate: { max_drop: maxDrop, passed: null, message: "no validation file: accuracy not checked (pass --validate FILE)" },
    };
    const data = options.validation;
    if (data !== undefined) {
      const p = await predict(parent, data);
      const c = await predict(child, data);
      parentMeasure.quality = quality(p, data.labels);
      childMeasure.quality = quality(c, data.labels);
      const metric = p.task === "classification" ? "accuracy" : "r2";
      const drop = (parentMeasure.quality[metric] ?? 0) - (childMeasure.quality[metric] ?? 0);
      report.validation = { rows: data.rows, task: p.task, label_column: data.labelColumn, agreement: agreement(p, c), metric, drop };
      const passed = drop <= maxDrop + 1e-12;
      report.gate = {
        max_drop: maxDrop,
        passed,
        message: passed
          ? `${metric} drop ${fmt(drop)} is within the limit ${maxDrop}`
          : `${metric} drops by ${fmt(drop)} (parent ${fmt(parentMeasure.quality[metric] ?? 0)}, optimized ${fmt(childMeasure.quality[metric] ?? 0)}), more than --max-accuracy-drop ${maxDrop}`,
      };
    }
    return report;
  } finally {
    await parent.release();
    await child.release();
  }
}

function fmt(x: number): string {
  return Number(x.toFixed(4)).toString();
}

/** Deterministic rows in [0, 1) for timing models without a validation set. */
function syntheticRows(width: number, rows: number): Float32Array {
  const out = new Float32Array(width * rows);
  let s = 12345;
  for (let i = 0; i < out.length; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    out[i] = s / 2147483648;
  }
  return out;
}

/** The report as text lines for the CLI. */
export function reportLines(report: OptimizeReport): string[] {
  const kb = (b: number): string => `${(b / 1024).toFixed(1)} KiB`;
  const ms = (x: number): string => `${x.toFixed(3)} ms`;
  const q = (m: ModelMeasure): string => {
    const x = m.quality;
    if (x === undefined) return "-";
    if (x.accuracy !== undefined) return `accuracy ${fmt(x.accuracy)}`;
    return `MAE ${fmt(x.mae ?? 0)}, R2 ${fmt(x.r2 ?? 0)}`;
  };
  const lines = [
    `optimization  ${report.method}`,
    `              parent                optimized`,
    `file size     ${kb(report.parent.bytes).padEnd(22)}${kb(report.child.bytes)} (${(report.size_ratio * 100).toFixed(1)}%)`,
    `p50 batch 1   ${ms(report.parent.p50_ms_batch1).padEnd(22)}${ms(report.child.p50_ms_batch1)}`,
    `p50 batch 32  ${ms(report.parent.p50_ms_batch32).padEnd(22)}${ms(report.child.p50_ms_batch32)}`,
  ];
  const v = report.validation;
  if (v !== undefined) {
    lines.push(`quality       ${q(report.parent).padEnd(22)}${q(report.child)}   (${v.rows} rows, label ${v.label_column})`);
    const agree = v.agreement.agreement === undefined ? "" : `same class on ${(v.agreement.agreement * 100).toFixed(2)}% of rows, `;
    lines.push(`agreement     ${agree}max |diff| ${v.agreement.maxAbsDiff.toPrecision(3)}, mean |diff| ${v.agreement.meanAbsDiff.toPrecision(3)}`);
  }
  lines.push(`gate          ${report.gate.passed === null ? "not checked" : report.gate.passed ? "passed" : "REFUSED"}: ${report.gate.message}`);
  return lines;
}
