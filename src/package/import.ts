import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { chmod, copyFile, mkdir, open, readdir, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { MlshipError } from "../core/index.js";
import {
  checkInputExample,
  loadPackage,
  MANIFEST_FILE,
  trailingWidth,
  validateManifest,
  writePackage,
} from "./manifest.js";
import { parseCsv } from "./csv.js";
import { importMlflowSpark, MLMODEL_FILE, mlflowColumns, mlflowExampleBody, readMlflow, readMlflowModel } from "./mlflow.js";
import type { MlflowModel, MlflowSignature } from "./mlflow.js";
import { inspectOnnx } from "./onnx.js";
import { checkSparkSignature, copySparkDirectory, fromSpark, SPARKML_FLAVOR, sparkModelClass } from "./spark.js";
import type {
  ImportOptions,
  Manifest,
  ModelPackage,
  OnnxGraphInfo,
  PackageMetadata,
  Signature,
  TensorSpec,
} from "./types.js";
import { invalid, notFound, pathExists, unsupported } from "./util.js";

export type SourceKind = "onnx" | "mlflow" | "mlship" | "spark";

const EXAMPLE_FILE = "input_example.json";

/**
 * Detects what `source` is: an `.onnx` file, an MLflow model folder (MLmodel), an mlship package (mlship.yaml;
 * preferred when a folder has both), or a Spark ML saved model folder (`metadata/part-*` naming a Spark ML class). A folder holding exactly one `.onnx` file and nothing that identifies it
 * otherwise is treated as that file.
 */
export async function detectSource(source: string): Promise<{ kind: SourceKind; path: string }> {
  const abs = path.resolve(source);
  let info;
  try {
    info = await stat(abs);
  } catch {
    throw notFound(source, "no such file or folder");
  }
  if (info.isFile()) {
    const base = path.basename(abs);
    if (base === MANIFEST_FILE) return { kind: "mlship", path: path.dirname(abs) };
    if (base === MLMODEL_FILE) return { kind: "mlflow", path: path.dirname(abs) };
    if (base.toLowerCase().endsWith(".onnx")) return { kind: "onnx", path: abs };
    throw unsupported(source, "not a model mlship can import (an .onnx file, an MLflow model folder with MLmodel, " +
      "a Spark ML saved model folder, or an mlship package folder with mlship.yaml)", "(source)");
  }
  if (await pathExists(path.join(abs, MANIFEST_FILE))) return { kind: "mlship", path: abs };
  if (await pathExists(path.join(abs, MLMODEL_FILE))) return { kind: "mlflow", path: abs };
  if ((await sparkModelClass(abs)) !== undefined) return { kind: "spark", path: abs };
  const entries = await readdir(abs);
  const onnxFiles = entries.filter((e) => e.toLowerCase().endsWith(".onnx"));
  if (onnxFiles.length === 1) return { kind: "onnx", path: path.join(abs, onnxFiles[0] as string) };
  throw unsupported(source, `found no ${MANIFEST_FILE}, no ${MLMODEL_FILE}${onnxFiles.length > 1
    ? ` and ${onnxFiles.length} .onnx files (name the one to import)` : " and no .onnx file"} in the folder`,
  "(source)");
}

/**
 * Imports a model into a complete mlship package written to `options.stagingDir` (created; must be empty if it
 * exists): copies the model file(s), writes mlship.yaml, validates the result and returns it. On failure the
 * staging folder is emptied again.
 */
export async function importModel(source: string, options: ImportOptions & SparkClassOption): Promise<ModelPackage> {
  const detected = await detectSource(source);
  if (options.sparkClass !== undefined && detected.kind !== "spark") {
    throw unsupported(source, `a Spark ML class (${options.sparkClass}) was asked for, but this is not a Spark ML ` +
      "saved model folder", "(source)");
  }
  const staging = path.resolve(options.stagingDir);
  await prepareStaging(staging);
  try {
    let manifest: Manifest;
    let label: string;
    switch (detected.kind) {
      case "onnx":
        label = detected.path;
        manifest = await fromOnnx(detected.path, staging);
        break;
      case "mlflow": {
        label = path.join(detected.path, MLMODEL_FILE);
        // The flavor mlship runs decides: onnx (preferred when both are there) or spark (a Spark ML model inside).
        const mlflow = await readMlflow(detected.path);
        manifest = mlflow.flavor === "spark" ? await importMlflowSpark(mlflow, staging) : await fromMlflow(detected.path, staging);
        break;
      }
      case "mlship":
        label = path.join(detected.path, MANIFEST_FILE);
        manifest = await fromMlship(detected.path, staging);
        break;
      case "spark":
        label = detected.path;
        manifest = await fromSpark(detected.path, staging,
          options.sparkClass === undefined ? {} : { expectClass: options.sparkClass });
        break;
    }

    manifest = await applyOptions(manifest, options, staging, label);
    await writePackage(staging, validateManifest(manifest, label));
    return await loadPackage(staging);
  } catch (error) {
    await emptyFolder(staging);
    throw error;
  }
}

/** `--class`: import a Spark ML folder only when it holds this class (fully qualified or short name). */
export interface SparkClassOption {
  sparkClass?: string;
}

async function prepareStaging(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const entries = await readdir(dir);
  if (entries.length > 0) {
    throw new MlshipError("MLSHIP_ERR_CORE_INTERNAL", `${dir}: the staging folder for an import must be empty`,
      { field: "stagingDir" });
  }
}

async function emptyFolder(dir: string): Promise<void> {
  const entries = await readdir(dir).catch(() => [] as string[]);
  await Promise.all(entries.map((e) => rm(path.join(dir, e), { recursive: true, force: true })));
}

/** Copies `abs` to `<staging>/<rel>`, creating folders as needed. */
async function stage(abs: string, staging: string, rel: string): Promise<void> {
  const dest = path.join(staging, rel);
  await mkdir(path.dirname(dest), { recursive: true });
  await copyFile(abs, dest);
  // copyFile keeps the source mode; a read-only source would make a read-only package.
  await chmod(dest, 0o644);
}

async function fromOnnx(file: string, staging: string): Promise<Manifest> {
  const graph = await inspectOnnx(file);
  await stage(file, staging, "model.onnx");
  return {
    format_version: 1,
    flavor: "onnx",
    files: { model: "model.onnx" },
    signature: { inputs: graph.inputs, outputs: graph.outputs },
    preprocess: [],
    postprocess: [],
    metadata: { framework: "onnx", created_at: new Date().toISOString() },
  };
}

async function fromMlflow(dir: string, staging: string): Promise<Manifest> {
  const model = await readMlflowModel(dir);
  const graph = await inspectOnnx(model.modelPath);
  const signature: Signature = { inputs: graph.inputs, outputs: graph.outputs };
  if (model.inputs !== undefined) {
    if (model.inputs.kind === "tensor") {
      checkMlflowTensors(model, model.inputs, graph.inputs, "signature.inputs", "input");
    } else {
      const columns = mlflowColumnsFor(model, model.inputs, graph);
      if (columns !== undefined) signature.columns = columns;
    }
  }
  if (model.outputs !== undefined) checkMlflowTensors(model, model.outputs, graph.outputs, "signature.outputs", "output");
  const rel = model.modelRel;
  await stage(model.modelPath, staging, rel);
  const manifest: Manifest = {
    format_version: 1,
    flavor: "onnx",
    files: { model: rel.split(path.sep).join("/") },
    signature,
    preprocess: [],
    postprocess: [],
    metadata: { ...model.metadata },
  };
  if (model.example !== undefined) {
    await writeFile(path.join(staging, EXAMPLE_FILE), JSON.stringify(await mlflowExampleBody(model)), "utf8");
    manifest.input_example = EXAMPLE_FILE;
  }
  return manifest;
}

/** The dtype and name check of an MLflow signature against the ONNX graph; a disagreement names MLmodel. */
function checkMlflowTensors(model: MlflowModel, sig: MlflowSignature, graph: TensorSpec[], at: string,
  kind: "input" | "output"): void {
  const graphNames = graph.map((g) => g.name).join(", ");
  const named = sig.specs.every((s) => s.name !== undefined);
  if (kind === "input" && sig.specs.length !== graph.length) {
    throw invalid(model.file, `the signature has ${sig.specs.length} input(s) but the ONNX graph ${
      path.basename(model.modelPath)} has ${graph.length} (${graphNames})`, at);
  }
  if (sig.specs.length > graph.length) {
    throw invalid(model.file, `the signature has ${sig.specs.length} ${kind}s but the ONNX graph has ${graph.length} (${
      graphNames})`, at);
  }
  sig.specs.forEach((spec, i) => {
    const where = `${at}[${i}]`;
    const match = named ? graph.find((g) => g.name === spec.name) : graph[i];
    if (match === undefined) {
      throw invalid(model.file, `${kind} ${JSON.stringify(spec.name)} is not an ${kind} of the ONNX graph (graph ${
        kind}s: ${graphNames})`, `${where}.name`);
    }
    if (match.dtype !== spec.dtype) {
      throw invalid(model.file, `${kind} ${JSON.stringify(match.name)} is ${spec.dtype} in the signature but ${
        match.dtype} in the ONNX graph`, sig.kind === "tensor" ? `${where}.tensor-spec.dtype` : `${where}.type`);
    }
    if (spec.shape !== undefined && !shapesAgree(spec.shape, match.shape)) {
      throw invalid(model.file, `${kind} ${JSON.stringify(match.name)} has shape [${spec.shape.join(", ")
      }] in the signature but [${match.shape.join(", ")}] in the ONNX graph`, `${where}.tensor-spec.shape`);
    }
  });
}

function shapesAgree(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === -1 || b[i] === -1 || d === b[i]);
}

/** MLflow column-based inputs feed the graph's single input, as MLflow's pyfunc does. */
function mlflowColumnsFor(model: MlflowModel, sig: MlflowSignature, graph: OnnxGraphInfo): Signature["columns"] {
  if (graph.inputs.length !== 1) {
    throw invalid(model.file, `a column-based signature feeds a single-input model, but the ONNX graph has inputs ${
      graph.inputs.map((g) => g.name).join(", ")}`, "signature.inputs");
  }
  const input = graph.inputs[0] as TensorSpec;
  const width = trailingWidth(input);
  if (width !== undefined && width !== sig.specs.length) {
    throw invalid(model.file, `${sig.specs.length} columns in the signature but the ONNX input ${JSON.stringify(
      input.name)} (shape [${input.shape.join(", ")}]) takes ${width} values per row`, "signature.inputs");
  }
  const textInput = input.dtype === "string";
  sig.specs.forEach((spec, i) => {
    if ((spec.dtype === "string") !== textInput) {
      throw invalid(model.file, `column ${JSON.stringify(spec.name ?? i)} is ${spec.dtype} but the ONNX input ${
        JSON.stringify(input.name)} is ${input.dtype}`, `signature.inputs[${i}].type`);
    }
  });
  return mlflowColumns(sig);
}

async function fromMlship(dir: string, staging: string): Promise<Manifest> {
  const pkg = await loadPackage(dir);
  const file = path.join(pkg.root, MANIFEST_FILE);
  const modelPath = path.join(pkg.root, pkg.manifest.files.model);
  const spark = pkg.manifest.flavor === SPARKML_FLAVOR;
  if (spark) await checkSparkSignature(modelPath, pkg.manifest, file);
  // A custom wrapper declares its own signature (files.model is its bundle, checked to exist by loadPackage); its
  // ONNX artifacts, if any, are the wrapper's business, opened through context.onnx.
  else if (pkg.manifest.flavor !== "custom") checkSignatureAgainstGraph(pkg.manifest.signature, await inspectOnnx(modelPath), file);
  const rels = [...Object.values(pkg.manifest.files)];
  if (pkg.manifest.input_example !== undefined) rels.push(pkg.manifest.input_example);
  for (const rel of new Set(rels.map((r) => path.normalize(r)))) {
    const abs = path.join(pkg.root, rel);
    if ((await stat(abs)).isDirectory()) await copySparkDirectory(abs, path.join(staging, rel));
    else await stage(abs, staging, rel);
  }
  return pkg.manifest;
}

/**
 * Checks an mlship signature against the ONNX graph: every graph input declared with its dtype and a compatible
 * shape, every declared output present in the graph. A declared dim may be fixed where the graph says -1.
 */
export function checkSignatureAgainstGraph(signature: Signature, graph: OnnxGraphInfo, file: string): void {
  for (const g of graph.inputs) {
    if (!signature.inputs.some((s) => s.name === g.name)) {
      throw invalid(file, `the ONNX graph input ${JSON.stringify(g.name)} is missing from the signature`,
        "signature.inputs");
    }
  }
  const compare = (specs: TensorSpec[], actual: TensorSpec[], at: string, kind: string): void => {
    specs.forEach((spec, i) => {
      const g = actual.find((a) => a.name === spec.name);
      if (g === undefined) {
        throw invalid(file, `${kind} ${JSON.stringify(spec.name)} is not in the ONNX graph (graph ${kind}s: ${
          actual.map((a) => a.name).join(", ")})`, `${at}[${i}].name`);
      }
      if (g.dtype !== spec.dtype) {
        throw invalid(file, `${kind} ${JSON.stringify(spec.name)} is ${spec.dtype} here but ${g.dtype} in the ONNX graph`,
          `${at}[${i}].dtype`);
      }
      if (!shapesAgree(spec.shape, g.shape)) {
        throw invalid(file, `${kind} ${JSON.stringify(spec.name)} has shape [${spec.shape.join(", ")}] here but [${
          g.shape.join(", ")}] in the ONNX graph`, `${at}[${i}].shape`);
      }
    });
  };
  compare(signature.inputs, graph.inputs, "signature.inputs", "input");
  compare(signature.outputs, graph.outputs, "signature.outputs", "output");
}

async function applyOptions(manifest: Manifest, options: ImportOptions, staging: string,
  label: string): Promise<Manifest> {
  const out: Manifest = { ...manifest, signature: { ...manifest.signature }, metadata: { ...manifest.metadata } };
  if (options.columns !== undefined && options.columnsFromCsv !== undefined) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "give either columns or columnsFromCsv, not both",
      { field: "columns" });
  }
  let columns: string[] | undefined = options.columns;
  let columnsFrom = "columns";
  if (options.columnsFromCsv !== undefined) {
    columns = await columnsFromCsv(options.columnsFromCsv, options.labelColumn);
    columnsFrom = options.columnsFromCsv;
  } else if (options.labelColumn !== undefined && columns !== undefined) {
    columns = columns.filter((c) => c !== options.labelColumn);
  }
  if (columns !== undefined) {
    const inputName = out.signature.columnsInput ?? out.signature.inputs[0]?.name;
    const input = out.signature.inputs.find((s) => s.name === inputName) as TensorSpec;
    const width = trailingWidth(input);
    if (width !== undefined && width !== columns.length) {
      throw invalid(columnsFrom, `${columns.length} columns given but input ${JSON.stringify(input.name)} of ${
        label} (shape [${input.shape.join(", ")}]) takes ${width} values per row`, "signature.columns");
    }
    const dtypes = new Map((out.signature.columns ?? []).map((c) => [c.name, c.dtype]));
    out.signature.columns = columns.map((name) => {
      const dtype = dtypes.get(name);
      return dtype === undefined ? { name } : { name, dtype };
    });
  }
  const meta: PackageMetadata = out.metadata;
  if (options.description !== undefined) meta.description = options.description;
  if (options.tags !== undefined) meta.tags = { ...meta.tags, ...options.tags };
  if (options.metrics !== undefined) meta.metrics = { ...meta.metrics, ...options.metrics };
  if (options.params !== undefined) meta.params = { ...meta.params, ...options.params };
  if (options.classLabels !== undefined) meta.class_labels = [...options.classLabels];
  if (options.trainingData !== undefined) meta.training_data_fingerprint = await sha256File(options.trainingData);
  if (options.inputExample !== undefined) {
    const abs = path.resolve(options.inputExample);
    if (!(await pathExists(abs))) throw notFound(options.inputExample, "no such input example file", "inputExample");
    await checkInputExample(abs, label);
    await copyFile(abs, path.join(staging, EXAMPLE_FILE));
    out.input_example = EXAMPLE_FILE;
  }
  return out;
}

/** sha256 (hex) of a file's bytes, streamed. */
export async function sha256File(file: string): Promise<string> {
  try {
    const info = await stat(file);
    if (!info.isFile()) throw new Error("not a file");
  } catch {
    throw notFound(file, "no such file", "trainingData");
  }
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/**
 * The column names of a CSV file's header row, in order, without `labelColumn` (which must be present when
 * given). Handles RFC 4180 quoting in the header and a UTF-8 byte-order mark.
 */
export async function columnsFromCsv(file: string, labelColumn?: string): Promise<string[]> {
  let handle;
  try {
    handle = await open(file, "r");
  } catch {
    throw notFound(file, "no such CSV file", "columnsFromCsv");
  }
  let text = "";
  try {
    const buf = Buffer.alloc(64 * 1024);
    let position = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buf, 0, buf.length, position);
      if (bytesRead === 0) break;
      text += buf.subarray(0, bytesRead).toString("utf8");
      position += bytesRead;
      if (headerEnd(text) >= 0) break;
    }
  } finally {
    await handle.close();
  }
  const end = headerEnd(text);
  const line = end >= 0 ? text.slice(0, end) : text;
  if (line.replace(/^\uFEFF/, "").trim().length === 0) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${file}: the CSV file has no header row`,
      { field: "columnsFromCsv" });
  }
  let names: string[];
  try {
    // The same reader as request bodies, so a header registered here is the header a CSV request must carry.
    names = parseCsv(line).header;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${file}: the CSV header cannot be read (${reason})`,
      { field: "columnsFromCsv", cause: error });
  }
  const seen = new Set<string>();
  for (const name of names) {
    if (name.length === 0) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${file}: the CSV header has an empty column name`,
        { field: "columnsFromCsv" });
    }
    if (seen.has(name)) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${file}: the CSV header names column ${JSON.stringify(name)
      } twice`, { field: name });
    }
    seen.add(name);
  }
  if (labelColumn === undefined) return names;
  if (!seen.has(labelColumn)) {
    throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", `${file}: the label column ${JSON.stringify(labelColumn)
    } is not in the CSV header (${names.join(", ")})`, { field: "labelColumn" });
  }
  return names.filter((n) => n !== labelColumn);
}

/** Index of the newline that ends the header row, ignoring newlines inside quotes; -1 if not read yet. */
function headerEnd(text: string): number {
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"') quoted = !quoted;
    else if (ch === "\n" && !quoted) return i;
  }
  return -1;
}
