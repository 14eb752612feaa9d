import { readFile } from "node:fs/promises";
import path from "node:path";
import YAML from "yaml";
import type { DType } from "../core/index.js";
import type { ColumnSpec, PackageMetadata } from "./types.js";
import { describe, invalid, isRecord, resolveInside, unsupported, yamlReason } from "./util.js";

export const MLMODEL_FILE = "MLmodel";

/** numpy dtype names in MLflow tensor-specs -> our dtypes. */
const NUMPY_DTYPES: Record<string, DType> = {
  float16: "float16", float32: "float32", float64: "float64",
  int8: "int8", int16: "int16", int32: "int32", int64: "int64",
  uint8: "uint8", uint16: "uint16", uint32: "uint32", uint64: "uint64",
  bool: "bool", str: "string", object: "string", bytes: "string",
};

/** MLflow column types (mlflow.types.DataType) -> our dtypes. binary/datetime and composites are refused. */
const COLUMN_TYPES: Record<string, DType> = {
  double: "float64", float: "float32", long: "int64", integer: "int32", boolean: "bool", string: "string",
};

/** One entry of an MLflow signature, reduced to what mlship uses. */
export interface MlflowSpec {
  name?: string;
  dtype: DType;
  /** Tensor specs only. */
  shape?: number[];
}

export interface MlflowSignature {
  kind: "tensor" | "column";
  specs: MlflowSpec[];
}

export interface MlflowModel {
  dir: string;
  file: string;
  /** Absolute path of the ONNX artifact (`flavors.onnx.data`) and its path relative to the model folder. */
  modelPath: string;
  modelRel: string;
  inputs?: MlflowSignature;
  outputs?: MlflowSignature;
  /** Absolute path of the saved input example and how MLflow describes it. */
  example?: { path: string; type?: string; pandasOrient?: string };
  metadata: PackageMetadata;
}

/**
 * Reads an MLflow model folder's MLmodel (as `mlflow.onnx.save_model` writes it). A model without the `onnx`
 * flavor is refused with MLSHIP_ERR_PACKAGE_UNSUPPORTED naming the flavors found.
 */
export async function readMlflowModel(dir: string): Promise<MlflowModel> {
  const file = path.join(dir, MLMODEL_FILE);
  const text = await readFile(file, "utf8");
  const doc = YAML.parseDocument(text, { prettyErrors: true });
  const first = doc.errors[0];
  if (first !== undefined) {
    const where = first.linePos?.[0];
    throw invalid(file, `malformed YAML (${yamlReason(first.message, first.code)})`,
      where === undefined ? "(document)" : `line ${where.line}, column ${where.col}`);
  }
  const top = doc.toJS() as unknown;
  if (!isRecord(top)) throw invalid(file, `expected a mapping, got ${describe(top)}`, "(root)");
  if (!isRecord(top.flavors)) throw invalid(file, "flavors is missing or not a mapping", "flavors");
  const onnx = top.flavors.onnx;
  if (onnx === undefined) {
    const found = Object.keys(top.flavors);
    throw unsupported(file, `no onnx flavor (flavors found: ${found.length > 0 ? found.join(", ") : "none"}); ` +
      "mlship imports MLflow models saved with mlflow.onnx.save_model / log_model", "flavors");
  }
  if (!isRecord(onnx)) throw invalid(file, `expected a mapping, got ${describe(onnx)}`, "flavors.onnx");
  const data = onnx.data ?? "model.onnx";
  if (typeof data !== "string") throw invalid(file, `expected a path, got ${describe(data)}`, "flavors.onnx.data");
  const found = await resolveInside(dir, data);
  if ("problem" in found) throw invalid(file, found.problem, "flavors.onnx.data");

  const model: MlflowModel = {
    dir, file, modelPath: found.abs, modelRel: path.normalize(data), metadata: { framework: "onnx" },
  };
  if (top.signature !== undefined && top.signature !== null) {
    if (!isRecord(top.signature)) throw invalid(file, `expected a mapping, got ${describe(top.signature)}`, "signature");
    const inputs = parseSignatureField(file, top.signature.inputs, "signature.inputs");
    const outputs = parseSignatureField(file, top.signature.outputs, "signature.outputs");
    if (inputs !== undefined) model.inputs = inputs;
    if (outputs !== undefined) model.outputs = outputs;
  }
  if (top.saved_input_example_info !== undefined && top.saved_input_example_info !== null) {
    const info = top.saved_input_example_info;
    if (!isRecord(info) || typeof info.artifact_path !== "string") {
      throw invalid(file, "expected a mapping with artifact_path", "saved_input_example_info");
    }
    const ex = await resolveInside(dir, info.artifact_path);
    if ("problem" in ex) throw invalid(file, ex.problem, "saved_input_example_info.artifact_path");
    model.example = { path: ex.abs };
    if (typeof info.type === "string") model.example.type = info.type;
    if (typeof info.pandas_orient === "string") model.example.pandasOrient = info.pandas_orient;
  }
  model.metadata = { ...model.metadata, ...runMetadata(file, top) };
  return model;
}

function runMetadata(file: string, top: Record<string, unknown>): PackageMetadata {
  const meta: PackageMetadata = {};
  if (typeof top.run_id === "string" && top.run_id.length > 0) {
    meta.source_run = { system: "mlflow", id: top.run_id };
    if (typeof top.artifact_path === "string" && top.artifact_path.length > 0) {
      meta.source_run.uri = `runs:/${top.run_id}/${top.artifact_path}`;
    }
  }
  if (top.utc_time_created !== undefined && top.utc_time_created !== null) {
    const created = mlflowTime(String(top.utc_time_created));
    if (created === undefined) {
      throw invalid(file, `not a date/time: ${JSON.stringify(top.utc_time_created)}`, "utc_time_created");
    }
    meta.created_at = created;
  }
  const tags: Record<string, string> = {};
  const params: Record<string, string | number | boolean> = {};
  if (typeof top.model_uuid === "string") tags["mlflow.model_uuid"] = top.model_uuid;
  if (typeof top.mlflow_version === "string") tags["mlflow.version"] = top.mlflow_version;
  if (isRecord(top.metadata)) {
    // MLmodel metadata is a free-form dict: text becomes tags, numbers and booleans params, anything else a JSON tag.
    for (const [k, v] of Object.entries(top.metadata)) {
      if (typeof v === "string") tags[k] = v;
      else if (typeof v === "boolean" || (typeof v === "number" && Number.isFinite(v))) params[k] = v;
      else if (v !== null && v !== undefined) tags[k] = JSON.stringify(v);
    }
  }
  if (Object.keys(tags).length > 0) meta.tags = tags;
  if (Object.keys(params).length > 0) meta.params = params;
  return meta;
}

/** MLflow writes `datetime.utcnow()` as `'2022-01-12 05:17:31.634689'` (UTC, no zone). */
export function mlflowTime(text: string): string | undefined {
  const m = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$/.exec(text.trim());
  if (m === null) return undefined;
  const frac = (m[3] ?? "").slice(0, 4);
  const date = new Date(`${m[1]}T${m[2]}${frac}${m[4] ?? "Z"}`);
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString();
}

function parseSignatureField(file: string, value: unknown, at: string): MlflowSignature | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") throw invalid(file, `expected a JSON string, got ${describe(value)}`, at);
  let parsed: unknown;
  try {
    parsed = JSON.parse(value) as unknown;
  } catch (error) {
    throw invalid(file, `not valid JSON (${error instanceof Error ? error.message : String(error)})`, at, error);
  }
  if (!Array.isArray(parsed)) throw invalid(file, `expected a JSON list, got ${describe(parsed)}`, at);
  if (parsed.length === 0) return undefined;
  const isTensor = parsed.map((entry) => isRecord(entry) && entry.type === "tensor");
  if (isTensor.some((t) => t) && !isTensor.every((t) => t)) {
    throw invalid(file, "mixes tensor and column specs (MLflow schemas are all-tensor or all-column)", at);
  }
  const kind = isTensor[0] === true ? "tensor" : "column";
  const specs = parsed.map((entry: unknown, i): MlflowSpec => {
    const where = `${at}[${i}]`;
    if (!isRecord(entry)) throw invalid(file, `expected an object, got ${describe(entry)}`, where);
    const spec: MlflowSpec = { dtype: "float32" };
    if (entry.name !== undefined && entry.name !== null) {
      if (typeof entry.name !== "string") throw invalid(file, `expected a string name, got ${describe(entry.name)}`,
        `${where}.name`);
      spec.name = entry.name;
    }
    if (kind === "tensor") {
      const ts = entry["tensor-spec"];
      if (!isRecord(ts)) throw invalid(file, "a tensor spec needs a tensor-spec object", `${where}.tensor-spec`);
      const dtype = typeof ts.dtype === "string" ? NUMPY_DTYPES[ts.dtype] : undefined;
      if (dtype === undefined) {
        throw invalid(file, `unknown numpy dtype ${describe(ts.dtype)} (known: ${Object.keys(NUMPY_DTYPES).join(", ")})`,
          `${where}.tensor-spec.dtype`);
      }
      spec.dtype = dtype;
      if (!Array.isArray(ts.shape) || !ts.shape.every((d) => Number.isInteger(d) && (d as number) >= -1)) {
        throw invalid(file, "a tensor shape is a list of integers >= -1", `${where}.tensor-spec.shape`);
      }
      spec.shape = ts.shape as number[];
    } else {
      const dtype = typeof entry.type === "string" ? COLUMN_TYPES[entry.type] : undefined;
      if (dtype === undefined) {
        throw unsupported(file, `column type ${typeof entry.type === "string" ? entry.type : JSON.stringify(entry.type)
        } is not supported (supported: ${Object.keys(COLUMN_TYPES).join(", ")})`, `${where}.type`);
      }
      spec.dtype = dtype;
    }
    return spec;
  });
  const named = specs.filter((s) => s.name !== undefined).length;
  if (named !== 0 && named !== specs.length) throw invalid(file, "some specs have names and some do not", at);
  return { kind, specs };
}

/** Column specs of a column-based MLflow input signature (all named), for `signature.columns`. */
export function mlflowColumns(sig: MlflowSignature): ColumnSpec[] | undefined {
  if (sig.kind !== "column" || sig.specs.some((s) => s.name === undefined)) return undefined;
  return sig.specs.map((s) => ({ name: s.name as string, dtype: s.dtype }));
}
