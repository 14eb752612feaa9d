import { randomUUID } from "node:crypto";
import { copyFile, mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import YAML from "yaml";
import { MlshipError } from "../core/index.js";
import type { DType } from "../core/index.js";
import { EXAMPLE_KEYS, trailingWidth } from "./manifest.js";
import { MLMODEL_FILE, MLSHIP_PREFIX } from "./mlflow.js";
import { readOnnxHeader } from "./onnx.js";
import type { Manifest, ModelPackage, PackageMetadata, TensorSpec } from "./types.js";
import { isRecord } from "./util.js";

/**
 * The MLflow release whose `mlflow.onnx.save_model` layout the export reproduces (MLmodel keys, environment files);
 * written as `mlflow_version` and the lower bound of the `mlflow` requirement.
 */
export const MLFLOW_FORMAT_VERSION = "2.14.1";
/** Python written to `python_function.python_version`, conda.yaml and python_env.yaml unless told otherwise. */
export const DEFAULT_PYTHON_VERSION = "3.11.9";
/** `flavors.onnx.providers` as `mlflow.onnx.save_model` writes it by default. */
export const ONNX_PROVIDERS = ["CUDAExecutionProvider", "CPUExecutionProvider"] as const;

const CONDA_FILE = "conda.yaml";
const PYTHON_ENV_FILE = "python_env.yaml";
const REQUIREMENTS_FILE = "requirements.txt";
const EXAMPLE_FILE = "input_example.json";

/** Where an exported version comes from, recorded under `metadata` (`mlship.model`, `mlship.version`...). */
export interface MlflowExportOrigin {
  name: string;
  version: number;
  digest?: string;
  /** What was registered (path or URI). */
  source?: string;
}

export interface MlflowExportOptions {
  /** The MLmodel folder to write: created; refused when it exists and is not empty (as MLflow's save_model). */
  outDir: string;
  origin?: MlflowExportOrigin;
  /** `python_version` and the conda/virtualenv Python (default DEFAULT_PYTHON_VERSION). */
  pythonVersion?: string;
  /** `utc_time_created` when the package has no `metadata.created_at` (default: now). */
  now?: Date;
}

export interface MlflowExportResult {
  dir: string;
  /** Files written, relative to `dir`, sorted. */
  files: string[];
  /** Package steps MLflow's pyfunc does not run (it feeds the ONNX graph directly), and other things left out. */
  notes: string[];
}

/**
 * Writes an ONNX package as an MLflow model folder the way `mlflow.onnx.save_model` lays one out (MLflow 2.14,
 * `../shared/docs/sparkml-format.md` section 11.2): `MLmodel` with the `onnx` and `python_function` flavors, the
 * model file(s), `input_example.json` when the package has an example, `conda.yaml`, `python_env.yaml` and
 * `requirements.txt`. MLflow loads it with `mlflow.pyfunc.load_model` / `mlflow.onnx.load_model` and serves it
 * with `mlflow models serve`. Pre- and post-processing steps do not travel (MLflow runs the bare graph): each one
 * left behind is named in `notes`. A package of another flavor is refused with MLSHIP_ERR_PACKAGE_UNSUPPORTED.
 */
export async function exportMlflowModel(pkg: ModelPackage, options: MlflowExportOptions): Promise<MlflowExportResult> {
  const manifest = pkg.manifest;
  const flavor: string = manifest.flavor;
  if (flavor !== "onnx") {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_UNSUPPORTED",
      `${pkg.root}: a ${flavor} package cannot be exported as an MLflow onnx model; only onnx packages export ` +
      "(a Spark ML model is best handed to MLflow with mlflow.spark.log_model from the Spark side)", { field: "flavor" });
  }
  const modelRel = path.normalize(manifest.files.model).split(path.sep).join("/");
  if (modelRel.includes("/")) {
    // MLflow's onnx pyfunc reads MLmodel from the model file's own folder (`Path(path).parent`).
    throw new MlshipError("MLSHIP_ERR_PACKAGE_UNSUPPORTED",
      `${pkg.root}: the model file is ${modelRel}; MLflow's onnx flavor needs it at the folder root, next to MLmodel ` +
      "(move it to the package root, e.g. files.model: model.onnx, and register again)", { field: "files.model" });
  }
  const dir = path.resolve(options.outDir);
  await prepareOutDir(dir);
  const notes: string[] = [];
  const written: string[] = [];

  // The package's files keep their relative paths: ONNX external data is found next to the model as before.
  const rels = [...new Set(Object.values(manifest.files).map((r) => path.normalize(r)))];
  for (const rel of rels) {
    await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await copyFile(path.join(pkg.root, rel), path.join(dir, rel));
    written.push(rel);
  }

  const signature = mlflowSignature(manifest, notes);
  let exampleInfo: Record<string, string> | undefined;
  if (manifest.input_example !== undefined) {
    const body = JSON.parse(await readFile(path.join(pkg.root, manifest.input_example), "utf8")) as unknown;
    const saved = mlflowExample(body, manifest, signature.kind, notes);
    if (saved !== undefined) {
      await writeFile(path.join(dir, EXAMPLE_FILE), JSON.stringify(saved.body), "utf8");
      written.push(EXAMPLE_FILE);
      exampleInfo = saved.info;
    }
  }
  for (const step of manifest.preprocess) notes.push(`preprocess step ${step.type} is not exported (MLflow feeds the graph directly)`);
  for (const step of manifest.postprocess) {
    notes.push(`postprocess step ${step.type} (${step.output} -> ${step.as ?? step.output}) is not exported (MLflow returns the graph outputs)`);
  }

  const header = await readOnnxHeader(path.join(pkg.root, manifest.files.model)).catch(() => undefined);
  const onnxVersion = onnxReleaseFor(header?.irVersion, header?.opset);
  const python = options.pythonVersion ?? DEFAULT_PYTHON_VERSION;
  // mlflow.onnx.save_model measures the folder after the model and example are written, before MLmodel and the envs.
  let size = 0;
  for (const rel of written) size += (await stat(path.join(dir, rel))).size;

  const declared = manifest.metadata.created_at === undefined ? undefined : new Date(manifest.metadata.created_at);
  const created = declared !== undefined && !Number.isNaN(declared.getTime()) ? declared : options.now ?? new Date();
  const tags = manifest.metadata.tags ?? {};
  const top: Record<string, unknown> = {};
  const runId = manifest.metadata.source_run?.system === "mlflow" ? manifest.metadata.source_run.id : undefined;
  const runUri = manifest.metadata.source_run?.uri;
  if (runId !== undefined && runUri?.startsWith(`runs:/${runId}/`) === true) top.artifact_path = runUri.slice(`runs:/${runId}/`.length);
  top.flavors = {
    onnx: { code: null, data: modelRel, onnx_session_options: null, onnx_version: onnxVersion, providers: [...ONNX_PROVIDERS] },
    python_function: {
      data: modelRel,
      env: { conda: CONDA_FILE, virtualenv: PYTHON_ENV_FILE },
      loader_module: "mlflow.onnx",
      python_version: python,
    },
  };
  const metadata = exportMetadata(manifest.metadata, options.origin, runId !== undefined);
  if (Object.keys(metadata).length > 0) top.metadata = metadata;
  top.mlflow_version = MLFLOW_FORMAT_VERSION;
  top.model_size_bytes = size;
  // The same model bytes keep the identity MLflow gave them; anything else is a new MLflow model.
  top.model_uuid = tags["mlflow.model_uuid"] ?? randomUUID().replace(/-/g, "");
  if (runId !== undefined) top.run_id = runId;
  if (exampleInfo !== undefined) top.saved_input_example_info = exampleInfo;
  top.signature = { inputs: pythonJson(signature.inputs), outputs: pythonJson(signature.outputs), params: null };
  top.utc_time_created = mlflowTimeText(created);

  await writeFile(path.join(dir, MLMODEL_FILE), pyYaml(top), "utf8");
  const requirements = [`mlflow>=${MLFLOW_FORMAT_VERSION}`, `onnx>=${onnxVersion}`, `onnxruntime>=${onnxruntimeVersion()}`];
  await writeFile(path.join(dir, CONDA_FILE), pyYaml({
    channels: ["conda-forge"],
    dependencies: [`python=${python}`, "pip", { pip: requirements }],
    name: "mlflow-env",
  }), "utf8");
  // _PythonEnv.to_yaml keeps its own key order (sort_keys=False).
  await writeFile(path.join(dir, PYTHON_ENV_FILE), pyYaml({
    python,
    build_dependencies: ["pip", "setuptools", "wheel"],
    dependencies: [`-r ${REQUIREMENTS_FILE}`],
  }, false), "utf8");
  await writeFile(path.join(dir, REQUIREMENTS_FILE), requirements.join("\n"), "utf8");
  written.push(MLMODEL_FILE, CONDA_FILE, PYTHON_ENV_FILE, REQUIREMENTS_FILE);
  return { dir, files: written.map((f) => f.split(path.sep).join("/")).sort(), notes };
}

async function prepareOutDir(dir: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${dir}: not a folder mlship can write to`, { field: "out", cause: error });
    }
    await mkdir(dir, { recursive: true });
    return;
  }
  if (entries.length > 0) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${dir}: the folder is not empty; export into a new or empty folder`,
      { field: "out" });
  }
}

/** One entry of an MLflow schema as `Schema.to_json` writes it (TensorSpec.to_dict / ColSpec.to_dict key order). */
type SchemaEntry =
  | { name?: string; type: "tensor"; "tensor-spec": { dtype: string; shape: number[] } }
  | { type: string; name: string; required: boolean };

interface ExportedSignature {
  kind: "column" | "tensor";
  inputs: SchemaEntry[];
  outputs: SchemaEntry[];
  /** The input the columns feed (column signatures). */
  columnsInput?: TensorSpec;
}

const NUMPY: Record<DType, string> = {
  float16: "float16", float32: "float32", float64: "float64",
  int8: "int8", int16: "int16", int32: "int32", int64: "int64",
  uint8: "uint8", uint16: "uint16", uint32: "uint32", uint64: "uint64",
  bool: "bool", string: "object",
};

/** mlship dtypes -> MLflow column types (mlflow.types.DataType); the wider type where MLflow has no exact one. */
const COLUMN: Record<DType, string> = {
  float16: "float", float32: "float", float64: "double",
  int8: "integer", int16: "integer", int32: "integer", int64: "long",
  uint8: "integer", uint16: "integer", uint32: "long", uint64: "long",
  bool: "boolean", string: "string",
};

/**
 * Declared columns become a column-based signature when they feed the graph's only input and that input is a
 * plain [-1, width] matrix: MLflow's onnx pyfunc then feeds `DataFrame.values` to it, in schema order. Otherwise
 * the signature is the graph's tensors. A column without a declared type is what pandas reads from CSV for the
 * input's element type (double for floats: the pyfunc casts float64 to float32 itself).
 */
function mlflowSignature(manifest: Manifest, notes: string[]): ExportedSignature {
  const sig = manifest.signature;
  const tensor = (t: TensorSpec): SchemaEntry => ({ name: t.name, type: "tensor", "tensor-spec": { dtype: NUMPY[t.dtype], shape: [...t.shape] } });
  const outputs = sig.outputs.map(tensor);
  const columns = sig.columns;
  if (columns !== undefined && columns.length > 0) {
    const target = sig.columnsInput ?? sig.inputs[0]?.name;
    const input = sig.inputs.find((i) => i.name === target);
    if (input !== undefined && sig.inputs.length === 1 && input.shape.length === 2 && trailingWidth(input) === columns.length) {
      const fallback: DType = input.dtype === "string" ? "string" : input.dtype.startsWith("float") ? "float64"
        : input.dtype === "bool" ? "bool" : "int64";
      return {
        kind: "column",
        inputs: columns.map((c) => ({ type: COLUMN[c.dtype ?? fallback], name: c.name, required: true })),
        outputs,
        columnsInput: input,
      };
    }
    notes.push(`the ${columns.length} declared columns are not exported as a column signature (MLflow feeds a ` +
      "DataFrame to a single [-1, width] input only); the signature is the graph's tensors");
  }
  return { kind: "tensor", inputs: sig.inputs.map(tensor), outputs };
}

/**
 * The package's example as MLflow's `_save_example` writes one: a DataFrame as pandas `split` (or `records`)
 * without the request wrapper, tensors as a tf-serving `{"inputs": ...}` body. Rows of columns feeding a tensor
 * signature are reshaped to the input's shape; an example that cannot be expressed is left out (noted).
 */
function mlflowExample(body: unknown, manifest: Manifest, kind: "column" | "tensor",
  notes: string[]): { body: unknown; info: Record<string, string> } | undefined {
  if (!isRecord(body)) return undefined;
  const key = EXAMPLE_KEYS.find((k) => k in body);
  const value = key === undefined ? undefined : body[key];
  const frame = (orient: string): Record<string, string> => ({ artifact_path: EXAMPLE_FILE, pandas_orient: orient, type: "dataframe" });
  const tensorInfo = { artifact_path: EXAMPLE_FILE, format: "tf-serving", type: "ndarray" };
  if (key === "inputs" || key === "instances") {
    // mlship's V2-style `inputs` (a list of {name, datatype, data}) is not a tf-serving body: MLflow cannot read it.
    if (Array.isArray(value) && value.length > 0 && value.every((v) => isRecord(v) && "datatype" in v)) {
      notes.push("the input example is in the V2 tensor form, which MLflow does not read; it is not exported");
      return undefined;
    }
    return { body: { [key]: value }, info: tensorInfo };
  }
  const rows = frameRows(key, value);
  if (rows === undefined) return undefined;
  if (kind === "column") {
    return key === "dataframe_records" ? { body: value, info: frame("records") } : { body: value, info: frame("split") };
  }
  // A tensor signature fed by columns: each row's values, in column order, reshaped to the input's trailing dims.
  const sig = manifest.signature;
  const input = sig.inputs.find((i) => i.name === (sig.columnsInput ?? sig.inputs[0]?.name));
  const names = sig.columns?.map((c) => c.name);
  if (input === undefined || names === undefined || trailingWidth(input) !== names.length || sig.inputs.length !== 1) {
    notes.push("the input example's rows cannot be turned into the graph's input tensor; it is not exported");
    return undefined;
  }
  const tensors = rows.map((row) => reshape(names.map((n) => row(n)), input.shape.slice(1)));
  return { body: { inputs: tensors }, info: tensorInfo };
}

/** Accessors `row(column)` for each row of a dataframe_split / dataframe_records value. */
function frameRows(key: string | undefined, value: unknown): Array<(column: string) => unknown> | undefined {
  if (key === "dataframe_split" && isRecord(value) && Array.isArray(value.data) && Array.isArray(value.columns)) {
    const index = new Map((value.columns as unknown[]).map((c, i) => [String(c), i]));
    return (value.data as unknown[]).map((r) => (c: string) => (Array.isArray(r) ? r[index.get(c) ?? -1] : undefined));
  }
  if (key === "dataframe_records" && Array.isArray(value)) {
    return value.map((r) => (c: string) => (isRecord(r) ? r[c] : undefined));
  }
  return undefined;
}

function reshape(values: unknown[], dims: number[]): unknown {
  if (dims.length <= 1) return values;
  const [, ...rest] = dims;
  const inner = rest.reduce((a, b) => a * b, 1);
  const out: unknown[] = [];
  for (let i = 0; i < values.length; i += inner) out.push(reshape(values.slice(i, i + inner), rest));
  return out;
}

/** `metadata` of MLmodel: mlship's lineage and the package metadata MLflow has no top-level key for. */
function exportMetadata(meta: PackageMetadata, origin: MlflowExportOrigin | undefined,
  runIdWritten: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const put = (key: string, value: unknown): void => {
    if (value !== undefined) out[`${MLSHIP_PREFIX}${key}`] = value;
  };
  if (origin !== undefined) {
    put("model", origin.name);
    put("version", String(origin.version));
    put("digest", origin.digest);
    put("source", origin.source);
  }
  put("framework", meta.framework);
  put("description", meta.description);
  put("class_labels", meta.class_labels);
  put("training_data_fingerprint", meta.training_data_fingerprint);
  if (meta.metrics !== undefined && Object.keys(meta.metrics).length > 0) put("metrics", meta.metrics);
  if (meta.params !== undefined && Object.keys(meta.params).length > 0) put("params", meta.params);
  // mlflow.* tags are MLmodel's own top-level keys (model_uuid, mlflow_version), rebuilt from them on import.
  const tags = Object.fromEntries(Object.entries(meta.tags ?? {}).filter(([k]) => !k.startsWith("mlflow.")));
  if (Object.keys(tags).length > 0) put("tags", tags);
  // An MLflow run with an id is MLmodel's own run_id (and artifact_path); any other origin travels here.
  if (meta.source_run !== undefined && !runIdWritten) put("source_run", meta.source_run);
  put("lineage", meta.lineage);
  return out;
}

/** `json.dumps` default formatting (", " and ": " separators), which MLflow uses for signature strings. */
function pythonJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(pythonJson).join(", ")}]`;
  if (isRecord(value)) {
    return `{${Object.entries(value).filter(([, v]) => v !== undefined).map(([k, v]) => `${JSON.stringify(k)}: ${pythonJson(v)}`).join(", ")}}`;
  }
  return JSON.stringify(value);
}

/** `yaml.safe_dump(..., default_flow_style=False)`: block style, keys sorted unless told, YAML 1.1 quoting. */
function pyYaml(value: Record<string, unknown>, sortKeys = true): string {
  const doc = new YAML.Document(value, { version: "1.1", sortMapEntries: sortKeys });
  return doc.toString({ indentSeq: false, singleQuote: true, lineWidth: 0 });
}

/** MLflow's `utc_time_created`: `datetime.utcnow()` as `'2024-01-01 00:00:00.000000'`. */
function mlflowTimeText(date: Date): string {
  return `${date.toISOString().replace("T", " ").replace("Z", "")}000`;
}

/**
 * The first onnx release that reads a model of this IR version and default-domain opset (onnx's versioning table):
 * written as `onnx_version` and the lower bound of the onnx requirement.
 */
export function onnxReleaseFor(irVersion: number | undefined, opset: number | undefined): string {
  const byIr: Record<number, [number, number]> = { 3: [1, 0], 4: [1, 4], 5: [1, 5], 6: [1, 6], 7: [1, 7], 8: [1, 10], 9: [1, 14], 10: [1, 16], 11: [1, 18] };
  const candidates: Array<[number, number]> = [[1, 14]];
  if (irVersion !== undefined || opset !== undefined) candidates.length = 0;
  if (irVersion !== undefined) candidates.push(byIr[irVersion] ?? [1, 14]);
  // Opset 10 came with onnx 1.5 and each release since added one.
  if (opset !== undefined) candidates.push(opset >= 10 ? [1, opset - 5] : opset === 9 ? [1, 4] : [1, 0]);
  const [major, minor] = candidates.reduce((a, b) => (b[1] > a[1] ? b : a));
  return `${major}.${minor}.0`;
}

/** The onnxruntime release mlship itself runs the model with (onnxruntime-node shares Python's version numbers). */
function onnxruntimeVersion(): string {
  try {
    const require = createRequire(import.meta.url);
    const pkg = require("onnxruntime-node/package.json") as { version?: unknown };
    if (typeof pkg.version === "string") return pkg.version;
  } catch {
    // Not resolvable from here (bundled): fall through to a release every supported opset runs on.
  }
  return "1.16.0";
}
