import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import YAML from "yaml";
import type { DType } from "../core/index.js";
import { EXAMPLE_KEYS } from "./manifest.js";
import { fromSpark } from "./spark.js";
import type { ColumnSpec, Manifest, PackageMetadata, TensorSpec } from "./types.js";
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
  /** Spark column specs only: a `sparkml_vector` or numeric `array` column (a vector feature). */
  vector?: true;
}

export interface MlflowSignature {
  kind: "tensor" | "column";
  specs: MlflowSpec[];
}

/** Fields every MLflow flavor mlship imports shares. */
interface MlflowCommon {
  dir: string;
  file: string;
  inputs?: MlflowSignature;
  outputs?: MlflowSignature;
  /** Absolute path of the saved input example and how MLflow describes it. */
  example?: { path: string; type?: string; pandasOrient?: string };
  metadata: PackageMetadata;
  /** Every flavor named in MLmodel, in file order. */
  flavorsFound: string[];
}

/** An MLflow model read through its `onnx` flavor (`mlflow.onnx.save_model`). */
export interface MlflowModel extends MlflowCommon {
  flavor: "onnx";
  /** Absolute path of the ONNX artifact (`flavors.onnx.data`) and its path relative to the model folder. */
  modelPath: string;
  modelRel: string;
}

/** An MLflow model read through its `spark` flavor (`mlflow.spark.save_model`): a Spark ML saved model inside. */
export interface MlflowSparkModel extends MlflowCommon {
  flavor: "spark";
  /** Absolute path of the Spark ML saved-model folder (`flavors.spark.model_data`, `sparkml` by default). */
  sparkDir: string;
  sparkRel: string;
  pysparkVersion?: string;
  /** Python class MLflow saved (`flavors.spark.model_class`; older MLflow releases omit it). */
  modelClass?: string;
}

export type AnyMlflowModel = MlflowModel | MlflowSparkModel;

/** The MLflow flavors mlship imports, in order of preference when a model has several. */
export const MLFLOW_FLAVORS = ["onnx", "spark"] as const;

/**
 * Reads an MLflow model folder's MLmodel through the `onnx` flavor. A model without it is refused with
 * MLSHIP_ERR_PACKAGE_UNSUPPORTED naming the flavors found (see `readMlflow` for the spark flavor too).
 */
export async function readMlflowModel(dir: string): Promise<MlflowModel> {
  const model = await readMlflow(dir);
  if (model.flavor === "onnx") return model;
  throw unsupported(model.file, `no onnx flavor (flavors found: ${model.flavorsFound.join(", ")}); the spark flavor ` +
    "is imported as a sparkml package by importModel", "flavors");
}

/**
 * Reads an MLflow model folder's MLmodel through the flavor mlship runs: `onnx` (`mlflow.onnx.save_model`) or
 * `spark` (`mlflow.spark.save_model`, a Spark ML saved model under `sparkml/`). With both, onnx wins: it is the
 * artifact MLflow's own pyfunc would serve with onnxruntime, and mlship's fastest path. A model with neither is
 * refused with MLSHIP_ERR_PACKAGE_UNSUPPORTED naming the flavors found and the supported ones.
 */
export async function readMlflow(dir: string): Promise<AnyMlflowModel> {
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
  const flavorsFound = Object.keys(top.flavors);
  const chosen = MLFLOW_FLAVORS.find((f) => isRecord(top.flavors) && top.flavors[f] !== undefined);
  if (chosen === undefined) {
    throw unsupported(file, `no onnx or spark flavor (flavors found: ${flavorsFound.length > 0 ? flavorsFound.join(", ")
      : "none"}); mlship imports MLflow models saved with mlflow.onnx (flavor onnx) or mlflow.spark (flavor spark, a ` +
      "Spark ML PipelineModel); convert other models to ONNX first", "flavors");
  }
  const conf = top.flavors[chosen];
  if (!isRecord(conf)) throw invalid(file, `expected a mapping, got ${describe(conf)}`, `flavors.${chosen}`);
  const common: MlflowCommon = { dir, file, metadata: {}, flavorsFound };
  if (top.signature !== undefined && top.signature !== null) {
    if (!isRecord(top.signature)) throw invalid(file, `expected a mapping, got ${describe(top.signature)}`, "signature");
    const inputs = parseSignatureField(file, top.signature.inputs, "signature.inputs", chosen);
    const outputs = parseSignatureField(file, top.signature.outputs, "signature.outputs", chosen);
    if (inputs !== undefined) common.inputs = inputs;
    if (outputs !== undefined) common.outputs = outputs;
  }
  if (top.saved_input_example_info !== undefined && top.saved_input_example_info !== null) {
    const info = top.saved_input_example_info;
    if (!isRecord(info) || typeof info.artifact_path !== "string") {
      throw invalid(file, "expected a mapping with artifact_path", "saved_input_example_info");
    }
    const ex = await resolveInside(dir, info.artifact_path);
    if ("problem" in ex) throw invalid(file, ex.problem, "saved_input_example_info.artifact_path");
    common.example = { path: ex.abs };
    if (typeof info.type === "string") common.example.type = info.type;
    if (typeof info.pandas_orient === "string") common.example.pandasOrient = info.pandas_orient;
  }
  const run = runMetadata(file, top);
  if (chosen === "onnx") {
    const data = conf.data ?? "model.onnx";
    if (typeof data !== "string") throw invalid(file, `expected a path, got ${describe(data)}`, "flavors.onnx.data");
    const found = await resolveInside(dir, data);
    if ("problem" in found) throw invalid(file, found.problem, "flavors.onnx.data");
    return { ...common, flavor: "onnx", modelPath: found.abs, modelRel: path.normalize(data),
      metadata: { framework: "onnx", ...run } };
  }
  return readSparkFlavor(common, conf, run);
}

async function readSparkFlavor(common: MlflowCommon, conf: Record<string, unknown>,
  run: PackageMetadata): Promise<MlflowSparkModel> {
  const { file, dir } = common;
  const data = conf.model_data ?? "sparkml";
  if (typeof data !== "string" || data.length === 0) {
    throw invalid(file, `expected a folder path, got ${describe(data)}`, "flavors.spark.model_data");
  }
  const modelClass = typeof conf.model_class === "string" ? conf.model_class : undefined;
  if (modelClass?.startsWith("pyspark.ml.connect.") === true) {
    throw unsupported(file, `${modelClass} was saved by pyspark.ml.connect, whose format is not Spark ML's saved-model ` +
      "layout; save a pyspark.ml model (e.g. a PipelineModel) with mlflow.spark instead", "flavors.spark.model_class");
  }
  // The metadata file of a saved model: resolveInside checks it is a file inside the model folder (no escape).
  const metadataFile = await resolveInside(dir, path.join(data, "metadata", "part-00000"));
  if ("problem" in metadataFile) {
    throw invalid(file, `${JSON.stringify(data)} is not a Spark ML saved model (no metadata/part-00000 in it)`,
      "flavors.spark.model_data");
  }
  const sparkDir = path.dirname(path.dirname(metadataFile.abs));
  const tags: Record<string, string> = { ...run.tags };
  const version = conf.pyspark_version;
  if (typeof version === "string" || typeof version === "number") tags["mlflow.pyspark_version"] = String(version);
  if (modelClass !== undefined) tags["mlflow.spark.model_class"] = modelClass;
  const model: MlflowSparkModel = {
    ...common, flavor: "spark", sparkDir, sparkRel: path.normalize(data),
    metadata: { framework: "spark", ...run, ...(Object.keys(tags).length > 0 ? { tags } : {}) },
  };
  if (tags["mlflow.pyspark_version"] !== undefined) model.pysparkVersion = tags["mlflow.pyspark_version"];
  if (modelClass !== undefined) model.modelClass = modelClass;
  return model;
}

/**
 * Lineage from MLmodel's top-level keys. `metadata` is a free-form dict: text becomes tags, numbers and booleans
 * params, anything else a JSON tag, except the `mlship.*` keys `mlship models export` writes, which come back as
 * the package metadata they were written from (so an export re-imports to the same metadata).
 */
function runMetadata(file: string, top: Record<string, unknown>): PackageMetadata {
  const meta: PackageMetadata = {};
  if (typeof top.run_id === "string" && top.run_id.length > 0) {
    meta.source_run = { system: "mlflow", id: top.run_id };
    if (typeof top.artifact_path === "string" && top.artifact_path.length > 0) {
      meta.source_run.uri = `runs:/${top.run_id}/${top.artifact_path}`;
    }
  }
  if (top.utc_time_created !== undefined && top.utc_time_created !== null) {
    // PyYAML's YAML 1.1 reads an unquoted date-time as a timestamp; the yaml library (1.2) gives the text.
    const raw = top.utc_time_created instanceof Date ? top.utc_time_created.toISOString() : String(top.utc_time_created);
    const created = mlflowTime(raw);
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
    for (const [k, v] of Object.entries(top.metadata)) {
      if (k.startsWith(MLSHIP_PREFIX) && mlshipMetadata(k.slice(MLSHIP_PREFIX.length), v, meta, tags, params)) continue;
      if (typeof v === "string") tags[k] = v;
      else if (typeof v === "boolean" || (typeof v === "number" && Number.isFinite(v))) params[k] = v;
      else if (v !== null && v !== undefined) tags[k] = JSON.stringify(v);
    }
  }
  if (Object.keys(tags).length > 0) meta.tags = tags;
  if (Object.keys(params).length > 0) meta.params = params;
  return meta;
}

/** Prefix of the MLmodel `metadata` keys mlship writes on export. */
export const MLSHIP_PREFIX = "mlship.";

/** Takes one `mlship.<key>` metadata entry back into the package metadata; false when it is not one mlship wrote. */
function mlshipMetadata(key: string, value: unknown, meta: PackageMetadata, tags: Record<string, string>,
  params: Record<string, string | number | boolean>): boolean {
  const strings = (v: unknown): Record<string, string> | undefined =>
    isRecord(v) && Object.values(v).every((x) => typeof x === "string") ? v as Record<string, string> : undefined;
  switch (key) {
    case "description":
    case "framework":
    case "training_data_fingerprint":
      if (typeof value !== "string") return false;
      meta[key] = value;
      return true;
    case "class_labels":
      if (!Array.isArray(value) || !value.every((x) => typeof x === "string")) return false;
      meta.class_labels = value as string[];
      return true;
    case "metrics":
      if (!isRecord(value) || !Object.values(value).every((x) => typeof x === "number")) return false;
      meta.metrics = value as Record<string, number>;
      return true;
    case "tags": {
      const t = strings(value);
      if (t === undefined) return false;
      Object.assign(tags, t);
      return true;
    }
    case "params":
      if (!isRecord(value) || !Object.values(value).every((x) => ["string", "number", "boolean"].includes(typeof x))) {
        return false;
      }
      Object.assign(params, value);
      return true;
    case "lineage":
      // Validated with the rest of the manifest when the imported package is written.
      if (!isRecord(value)) return false;
      meta.lineage = value as PackageMetadata["lineage"];
      return true;
    case "source_run": {
      const run = strings(value);
      // A real run_id at the top level is the better lineage; this is the non-MLflow origin of the package.
      if (run === undefined) return false;
      if (meta.source_run === undefined) meta.source_run = { ...run };
      return true;
    }
    default:
      return false;
  }
}

/** MLflow writes `datetime.utcnow()` as `'2022-01-12 05:17:31.634689'` (UTC, no zone). */
export function mlflowTime(text: string): string | undefined {
  const m = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$/.exec(text.trim());
  if (m === null) return undefined;
  const frac = (m[3] ?? "").slice(0, 4);
  const date = new Date(`${m[1]}T${m[2]}${frac}${m[4] ?? "Z"}`);
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString();
}

function parseSignatureField(file: string, value: unknown, at: string,
  flavor: (typeof MLFLOW_FLAVORS)[number]): MlflowSignature | undefined {
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
    } else if (flavor === "spark" && isVectorColumn(entry)) {
      spec.dtype = "float64";
      spec.vector = true;
    } else {
      const dtype = typeof entry.type === "string" ? COLUMN_TYPES[entry.type] : undefined;
      if (dtype === undefined) {
        const supported = [...Object.keys(COLUMN_TYPES), ...(flavor === "spark" ? ["sparkml_vector", "array of numbers"] : [])];
        throw unsupported(file, `column type ${typeof entry.type === "string" ? entry.type : JSON.stringify(entry.type)
        } is not supported (supported: ${supported.join(", ")})`, `${where}.type`);
      }
      spec.dtype = dtype;
    }
    return spec;
  });
  const named = specs.filter((s) => s.name !== undefined).length;
  if (named !== 0 && named !== specs.length) throw invalid(file, "some specs have names and some do not", at);
  if (flavor === "spark" && kind === "column" && at === "signature.inputs" && named === 0) {
    throw invalid(file, "a spark model's input columns need names (the columns its pipeline reads)", at);
  }
  return { kind, specs };
}

/** MLflow's `sparkml_vector` type (MLflow 2.15+) or an `Array(double|float|long|integer)` column. */
function isVectorColumn(entry: Record<string, unknown>): boolean {
  if (entry.type === "sparkml_vector") return true;
  return entry.type === "array" && isRecord(entry.items) && typeof entry.items.type === "string"
    && ["double", "float", "long", "integer"].includes(entry.items.type);
}

/** Column specs of a column-based MLflow input signature (all named), for `signature.columns`. */
export function mlflowColumns(sig: MlflowSignature): ColumnSpec[] | undefined {
  if (sig.kind !== "column" || sig.specs.some((s) => s.name === undefined)) return undefined;
  return sig.specs.map((s) => ({ name: s.name as string, dtype: s.dtype }));
}

/** Where the normalised MLflow input example goes in the package. */
export const MLFLOW_EXAMPLE_FILE = "input_example.json";

/**
 * Imports an MLflow `spark` model as a sparkml package staged in `staging` (see `fromSpark`): the Spark saved model
 * under `model_data` becomes the package's model folder, MLflow's column signature is checked against the
 * pipeline's input columns (each named column is the package input of that name), and the run id, model uuid,
 * creation time, MLflow version, pyspark version and `metadata` go into the package metadata.
 */
export async function importMlflowSpark(model: MlflowSparkModel, staging: string): Promise<Manifest> {
  const manifest = await fromSpark(model.sparkDir, staging);
  if (model.inputs !== undefined) checkSparkInputs(model, model.inputs, manifest.signature.inputs);
  if (model.outputs !== undefined) checkSparkOutputs(model, model.outputs, manifest.signature.outputs);
  const sparkMeta = manifest.metadata;
  const metadata: PackageMetadata = { ...sparkMeta, ...model.metadata };
  const params = { ...sparkMeta.params, ...model.metadata.params };
  if (Object.keys(params).length > 0) metadata.params = params;
  const out: Manifest = { ...manifest, metadata };
  if (model.example !== undefined) {
    await writeFile(path.join(staging, MLFLOW_EXAMPLE_FILE), JSON.stringify(await mlflowExampleBody(model)), "utf8");
    out.input_example = MLFLOW_EXAMPLE_FILE;
  }
  return out;
}

/** Every pipeline input column must be in MLflow's signature, with a compatible type; extra columns are ignored. */
function checkSparkInputs(model: MlflowSparkModel, sig: MlflowSignature, inputs: TensorSpec[]): void {
  const at = "signature.inputs";
  const byName = new Map(sig.specs.map((s, i) => [s.name, { spec: s, i }]));
  for (const input of inputs) {
    const found = byName.get(input.name);
    if (found === undefined) {
      throw invalid(model.file, `the Spark pipeline reads column ${JSON.stringify(input.name)}, which the signature ` +
        `does not have (signature columns: ${sig.specs.map((s) => s.name ?? "?").join(", ")})`, at);
    }
    const { spec, i } = found;
    const where = `${at}[${i}]`;
    if (sig.kind === "tensor") {
      if (spec.dtype === "string" ? input.dtype !== "string" : input.dtype === "string") {
        throw invalid(model.file, `input ${JSON.stringify(input.name)} is ${spec.dtype} in the signature but ${
          input.dtype} in the Spark model`, `${where}.tensor-spec.dtype`);
      }
      continue;
    }
    const vectorInput = input.shape.length > 1;
    const what = (text: boolean, vector: boolean): string => (vector ? "a vector" : text ? "text" : "a number");
    if ((spec.dtype === "string") !== (input.dtype === "string") || (spec.vector === true) !== vectorInput) {
      throw invalid(model.file, `column ${JSON.stringify(input.name)} is ${what(spec.dtype === "string", spec.vector === true)
      } in the signature but the Spark pipeline reads ${what(input.dtype === "string", vectorInput)}`, `${where}.type`);
    }
  }
}

/** Named outputs must be columns the model adds (MLflow's spark pyfunc returns `prediction`, often unnamed). */
function checkSparkOutputs(model: MlflowSparkModel, sig: MlflowSignature, outputs: TensorSpec[]): void {
  sig.specs.forEach((spec, i) => {
    if (spec.name !== undefined && !outputs.some((o) => o.name === spec.name)) {
      throw invalid(model.file, `output ${JSON.stringify(spec.name)} is not a column the Spark model adds (it adds: ${
        outputs.map((o) => o.name).join(", ")})`, `signature.outputs[${i}].name`);
    }
  });
}

/**
 * MLflow's saved input example as a request body mlship takes: a body already keyed by a request field is kept;
 * a pandas `split` dump (`{columns, data}`, with or without `index`) becomes `dataframe_split`; a list of row
 * objects `dataframe_records`; a tf-serving or bare list `inputs`.
 */
export async function mlflowExampleBody(model: AnyMlflowModel): Promise<Record<string, unknown>> {
  const example = model.example;
  if (example === undefined) throw new Error("mlflowExampleBody: the model has no input example");
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(example.path, "utf8")) as unknown;
  } catch (error) {
    throw invalid(example.path, `not valid JSON (${error instanceof Error ? error.message : String(error)}); named by ${
      model.file}`, "saved_input_example_info.artifact_path", error);
  }
  if (isRecord(parsed) && EXAMPLE_KEYS.some((k) => k in parsed)) return parsed;
  if (isRecord(parsed) && Array.isArray(parsed.data)) {
    const split: Record<string, unknown> = { data: parsed.data };
    if (Array.isArray(parsed.columns)) split.columns = parsed.columns;
    if (Array.isArray(parsed.index)) split.index = parsed.index;
    return { dataframe_split: split };
  }
  if (Array.isArray(parsed)) {
    return parsed.length > 0 && parsed.every(isRecord) && example.type !== "ndarray"
      ? { dataframe_records: parsed } : { inputs: parsed };
  }
  throw invalid(example.path, `an input example MLflow did not write (${describe(parsed)}); named by ${model.file}`,
    "saved_input_example_info.artifact_path");
}
