import { readFile, realpath, stat, writeFile } from "node:fs/promises";
import { checkMonitorSection, monitorSectionPlain } from "./monitor-section.js";
import { checkFeedbackOutputs, checkFeedbackSection, feedbackSectionPlain } from "./feedback-section.js";
import path from "node:path";
import YAML from "yaml";
import { DTYPES, isDType } from "../core/index.js";
import type { MlshipError } from "../core/index.js";
import type { DType } from "../core/index.js";
import type {
  ColumnSpec,
  CustomSection,
  Manifest,
  ModelPackage,
  PackageLineage,
  PackageMetadata,
  PostprocessStep,
  PreprocessStep,
  ResizeKernel,
  ServingSettings,
  Signature,
  TensorSpec,
} from "./types.js";
import { describe, invalid, isRecord, notFound, resolveInside, unsupported, yamlReason } from "./util.js";

export const MANIFEST_FILE = "mlship.yaml";
export const SUPPORTED_FLAVORS = ["onnx", "sparkml", "custom"] as const;
export const RESIZE_KERNELS: readonly ResizeKernel[] = ["nearest", "area", "linear", "cubic", "lanczos3"];
/** The request keys an input example may hold (MLflow scoring protocol). */
export const EXAMPLE_KEYS = ["dataframe_split", "dataframe_records", "instances", "inputs"] as const;

/** A registry model name (the registry's own rule, src/registry/refs.ts), for `metadata.lineage.parent.model`. */
const MODEL_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const FLOAT_DTYPES: readonly DType[] = ["float16", "float32", "float64"];
const INDEX_DTYPES: readonly DType[] = [
  "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool",
];

/**
 * Validates a parsed manifest object (everything that does not need the file system) and returns it in canonical
 * form: defaults filled in, columns given as plain names turned into `{name}`. `file` names the manifest in errors.
 */
export function validateManifest(raw: unknown, file: string = MANIFEST_FILE): Manifest {
  return new ManifestChecker(file).manifest(raw);
}

/** Parses the YAML text of a manifest and validates it (see `validateManifest`). */
export function parseManifest(text: string, file: string = MANIFEST_FILE): Manifest {
  const doc = YAML.parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  const first = doc.errors[0];
  if (first !== undefined) {
    const where = first.linePos?.[0];
    const at = where === undefined ? "(document)" : `line ${where.line}, column ${where.col}`;
    throw invalid(file, `malformed YAML (${yamlReason(first.message, first.code)})`, at);
  }
  return validateManifest(doc.toJS({ maxAliasCount: 100 }) as unknown, file);
}

/** Renders a manifest as the YAML text of `mlship.yaml`: fixed key order, short lists of scalars in flow style. */
export function stringifyManifest(manifest: Manifest): string {
  const doc = new YAML.Document(toPlain(manifest));
  YAML.visit(doc, {
    Seq(_key, node) {
      // Shapes and short label lists read best on one line; long lists (columns) stay one item per line.
      const scalars = node.items.every((item) => YAML.isScalar(item) && typeof item.value !== "object");
      const length = node.items.reduce<number>((n, item) => n + String(YAML.isScalar(item) ? item.value : "").length + 2, 0);
      if (scalars && node.items.length > 0 && length <= 60) node.flow = true;
    },
  });
  return doc.toString({ lineWidth: 0 });
}

/** Plain data in the documented key order, without undefined members; columns without a dtype as bare names. */
function toPlain(manifest: Manifest): Record<string, unknown> {
  const sig = manifest.signature;
  const signature: Record<string, unknown> = { inputs: sig.inputs.map(specPlain), outputs: sig.outputs.map(specPlain) };
  if (sig.columns !== undefined) {
    signature.columns = sig.columns.map((c) => (c.dtype === undefined ? c.name : { name: c.name, dtype: c.dtype }));
  }
  if (sig.columnsInput !== undefined) signature.columnsInput = sig.columnsInput;
  const plain: Record<string, unknown> = {
    format_version: manifest.format_version,
    flavor: manifest.flavor,
    files: { ...manifest.files },
    signature,
  };
  if (manifest.input_example !== undefined) plain.input_example = manifest.input_example;
  plain.preprocess = manifest.preprocess.map(dropUndefined);
  plain.postprocess = manifest.postprocess.map(dropUndefined);
  plain.metadata = dropUndefined(manifest.metadata);
  if (manifest.serving !== undefined) plain.serving = manifest.serving;
  if (manifest.monitor !== undefined) plain.monitor = monitorSectionPlain(manifest.monitor);
  if (manifest.feedback !== undefined) plain.feedback = feedbackSectionPlain(manifest.feedback);
  if (manifest.custom !== undefined) plain.custom = dropUndefined(manifest.custom);
  return plain;
}

/** Drops members whose value is undefined, so canonical manifests compare and serialise cleanly. */
function compact<T extends object>(value: T): T {
  for (const key of Object.keys(value) as (keyof T)[]) if (value[key] === undefined) delete value[key];
  return value;
}

function specPlain(spec: TensorSpec): Record<string, unknown> {
  const plain: Record<string, unknown> = { name: spec.name, dtype: spec.dtype, shape: [...spec.shape] };
  if (spec.content_type !== undefined) plain.content_type = spec.content_type;
  return plain;
}

function dropUndefined<T extends object>(value: T): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (v === undefined) continue;
    out[k] = isRecord(v) ? dropUndefined(v) : v;
  }
  return out;
}

export interface LoadPackageOptions {
  /** Skip the checks that read the package's files (used when only the manifest text matters). */
  skipFileChecks?: boolean;
}

/**
 * Reads `<dir>/mlship.yaml`, validates every field and checks that every file it names exists inside `dir`.
 * `dir` may also be the path of the mlship.yaml file itself.
 */
export async function loadPackage(dir: string, options: LoadPackageOptions = {}): Promise<ModelPackage> {
  let root = path.resolve(dir);
  let info;
  try {
    info = await stat(root);
  } catch {
    throw notFound(dir, "no such file or folder");
  }
  if (info.isFile()) {
    if (path.basename(root) !== MANIFEST_FILE) {
      throw invalid(dir, `a model package is a folder with ${MANIFEST_FILE}, not a single file`, "(package)");
    }
    root = path.dirname(root);
  }
  const file = path.join(root, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    throw notFound(file, `no ${MANIFEST_FILE} in the folder (not an mlship package)`);
  }
  const manifest = parseManifest(text, file);
  if (options.skipFileChecks !== true) await checkPackageFiles(root, manifest, file);
  return { root, manifest };
}

/** Checks that the files a manifest names exist inside `root`, and that the input example is a usable request. */
export async function checkPackageFiles(root: string, manifest: Manifest, file: string): Promise<void> {
  for (const [key, rel] of Object.entries(manifest.files)) {
    // A Spark ML model is a saved-model folder (metadata/, data/, ...), not a single file.
    const found = key === "model" && manifest.flavor === "sparkml"
      ? await resolveFolderInside(root, rel)
      : await resolveInside(root, rel);
    if ("problem" in found) {
      // A custom package's model is the bundle `mlship package build` writes: say so rather than "no such file".
      const hint = key === "model" && manifest.flavor === "custom"
        ? ` (files.model is the wrapper bundle: run \`mlship package build ${root}\` first)`
        : "";
      throw invalid(file, `${found.problem}${hint}`, `files.${key}`);
    }
  }
  if (manifest.input_example !== undefined) {
    const found = await resolveInside(root, manifest.input_example);
    if ("problem" in found) throw invalid(file, found.problem, "input_example");
    await checkInputExample(found.abs, file);
  }
}

/** Like `resolveInside` for a folder: relative, inside `root` (also through links), and a directory. */
async function resolveFolderInside(root: string, rel: string): Promise<{ abs: string } | { problem: string }> {
  if (rel.length === 0) return { problem: "the path is empty" };
  if (path.isAbsolute(rel) || /^[A-Za-z]:[\\/]/.test(rel)) {
    return { problem: `the path ${JSON.stringify(rel)} must be relative to the package root` };
  }
  if (path.normalize(rel).split(/[\\/]/).includes("..")) return { problem: `the path ${JSON.stringify(rel)} leaves the package root` };
  const abs = path.resolve(root, rel);
  let info;
  try {
    info = await stat(abs);
  } catch {
    return { problem: `the model folder ${JSON.stringify(rel)} does not exist` };
  }
  if (!info.isDirectory()) return { problem: `${JSON.stringify(rel)} is not a folder (a Spark ML model is a saved-model folder)` };
  const [realRoot, realDir] = await Promise.all([realpath(root), realpath(abs)]);
  const fromRoot = path.relative(realRoot, realDir);
  if (fromRoot === "" || fromRoot.startsWith("..") || path.isAbsolute(fromRoot)) {
    return { problem: `the path ${JSON.stringify(rel)} leaves the package root (through a link)` };
  }
  return { abs };
}

/** An input example must be a JSON object with exactly one of the MLflow request keys. */
export async function checkInputExample(abs: string, manifestFile: string): Promise<void> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(abs, "utf8")) as unknown;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw invalid(abs, `not valid JSON (${reason}); named by ${manifestFile}`, "input_example", error);
  }
  const keys = isRecord(parsed) ? EXAMPLE_KEYS.filter((k) => k in parsed) : [];
  if (keys.length !== 1) {
    throw invalid(
      abs,
      `an input example must be a JSON object with exactly one of ${EXAMPLE_KEYS.join(", ")}; named by ${manifestFile}`,
      "input_example",
    );
  }
}

/** Writes `<dir>/mlship.yaml` after validating the manifest (the files it names are not checked here). */
export async function writePackage(dir: string, manifest: Manifest): Promise<ModelPackage> {
  const root = path.resolve(dir);
  const file = path.join(root, MANIFEST_FILE);
  const canonical = validateManifest(manifest, file);
  try {
    await writeFile(file, stringifyManifest(canonical), "utf8");
  } catch (error) {
    if (isErrno(error) && error.code === "ENOENT") throw notFound(dir, "the package folder does not exist");
    throw error;
  }
  return { root, manifest: canonical };
}

function isErrno(error: unknown): error is NodeJS.ErrnoException {
  return error instanceof Error && typeof (error as NodeJS.ErrnoException).code === "string";
}

/** Width (values per row) fed by the columns: the product of an input's dims after the batch axis. */
export function trailingWidth(spec: TensorSpec): number | undefined {
  let width = 1;
  for (const d of spec.shape.slice(1)) {
    if (d < 0) return undefined;
    width *= d;
  }
  return width;
}

interface OutputFacts {
  dtype: DType;
  shape: number[];
  /** Number of classes an index output ranges over, when known (argmax of a known-width output). */
  classes?: number;
}

class ManifestChecker {
  constructor(private readonly file: string) {}

  private fail(what: string, at: string): MlshipError {
    return invalid(this.file, what, at);
  }

  private keys(obj: Record<string, unknown>, allowed: readonly string[], at: string): void {
    for (const key of Object.keys(obj)) {
      if (!allowed.includes(key)) {
        throw this.fail(`unknown field ${JSON.stringify(key)} (allowed: ${allowed.join(", ")})`, at ? `${at}.${key}` : key);
      }
    }
  }

  private record(value: unknown, at: string): Record<string, unknown> {
    if (!isRecord(value)) throw this.fail(`expected a mapping, got ${describe(value)}`, at);
    return value;
  }

  private list(value: unknown, at: string): unknown[] {
    if (!Array.isArray(value)) throw this.fail(`expected a list, got ${describe(value)}`, at);
    return value;
  }

  private str(value: unknown, at: string): string {
    if (typeof value !== "string" || value.length === 0) {
      throw this.fail(`expected a non-empty string, got ${describe(value)}`, at);
    }
    return value;
  }

  private optStr(value: unknown, at: string): string | undefined {
    return value === undefined ? undefined : this.str(value, at);
  }

  private num(value: unknown, at: string): number {
    if (typeof value !== "number" || !Number.isFinite(value)) {
      throw this.fail(`expected a finite number, got ${describe(value)}`, at);
    }
    return value;
  }

  private posInt(value: unknown, at: string): number {
    if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
      throw this.fail(`expected a positive integer, got ${describe(value)}`, at);
    }
    return value;
  }

  private dtype(value: unknown, at: string): DType {
    if (!isDType(value)) throw this.fail(`unknown dtype ${typeof value === "string" ? JSON.stringify(value) : describe(value)} (one of ${DTYPES.join(", ")})`, at);
    return value;
  }

  private strList(value: unknown, at: string, unique = true): string[] {
    const items = this.list(value, at).map((v, i) => this.str(v, `${at}[${i}]`));
    if (items.length === 0) throw this.fail("the list is empty", at);
    if (unique) {
      const seen = new Set<string>();
      items.forEach((item, i) => {
        if (seen.has(item)) throw this.fail(`duplicate name ${JSON.stringify(item)}`, `${at}[${i}]`);
        seen.add(item);
      });
    }
    return items;
  }

  manifest(raw: unknown): Manifest {
    const top = this.record(raw, "(root)");
    this.keys(top, ["format_version", "flavor", "files", "signature", "input_example", "preprocess", "postprocess",
      "metadata", "serving", "monitor", "feedback", "custom"], "");
    if (top.format_version === undefined) throw this.fail("format_version is required", "format_version");
    if (typeof top.format_version !== "number" || !Number.isInteger(top.format_version)) {
      throw this.fail(`format_version must be the integer 1, got ${describe(top.format_version)}`, "format_version");
    }
    if (top.format_version !== 1) {
      throw unsupported(this.file, `format_version ${top.format_version} is newer than this mlship reads (1)`,
        "format_version");
    }
    if (top.flavor === undefined) throw this.fail("flavor is required", "flavor");
    const flavor = this.str(top.flavor, "flavor");
    if (!(SUPPORTED_FLAVORS as readonly string[]).includes(flavor)) {
      throw unsupported(this.file, `flavor ${JSON.stringify(flavor)} is not supported (supported: ${
        SUPPORTED_FLAVORS.join(", ")})`, "flavor");
    }
    if (top.files === undefined) throw this.fail("files is required", "files");
    const files = this.files(top.files);
    if (top.signature === undefined) throw this.fail("signature is required", "signature");
    const signature = this.signature(top.signature);
    const input_example = this.optStr(top.input_example, "input_example");
    const metadata = this.metadata(top.metadata ?? {});
    const preprocess = this.list(top.preprocess ?? [], "preprocess").map((s, i) =>
      this.preStep(s, `preprocess[${i}]`, signature));
    this.checkImageTargets(preprocess, signature);
    const postprocess = this.postSteps(top.postprocess ?? [], signature, metadata);
    this.checkClassLabels(metadata, signature);
    const manifest: Manifest = {
      format_version: 1, flavor: flavor as Manifest["flavor"], files, signature, preprocess, postprocess, metadata,
    };
    if (input_example !== undefined) manifest.input_example = input_example;
    if (top.monitor !== undefined && top.monitor !== null) manifest.monitor = checkMonitorSection(top.monitor, this.file);
    if (top.feedback !== undefined && top.feedback !== null) {
      manifest.feedback = checkFeedbackSection(top.feedback, this.file);
      checkFeedbackOutputs(manifest.feedback, outputNames(signature, postprocess), this.file);
    }
    if (top.serving !== undefined && top.serving !== null) {
      manifest.serving = checkServingSettings(top.serving, "serving", (what, field) => this.fail(what, field));
    }
    if (flavor === "custom") {
      this.checkCustomSignature(signature);
      if (top.custom !== undefined && top.custom !== null) manifest.custom = this.custom(top.custom);
    } else if (top.custom !== undefined && top.custom !== null) {
      throw this.fail(`the custom section is only for flavor custom (this package is ${flavor})`, "custom");
    } else {
      this.checkNoContentTypes(signature);
    }
    return manifest;
  }

  private files(value: unknown): Manifest["files"] {
    const obj = this.record(value, "files");
    if (obj.model === undefined) throw this.fail("files.model (the model artifact) is required", "files.model");
    const out: Record<string, string> = {};
    for (const [key, rel] of Object.entries(obj)) out[key] = this.str(rel, `files.${key}`);
    return out as Manifest["files"];
  }

  private tensorSpecs(value: unknown, at: string): TensorSpec[] {
    const items = this.list(value, at);
    if (items.length === 0) throw this.fail("at least one tensor is required", at);
    const seen = new Set<string>();
    return items.map((item, i) => {
      const where = `${at}[${i}]`;
      const obj = this.record(item, where);
      this.keys(obj, ["name", "dtype", "shape", "content_type"], where);
      const name = this.str(obj.name, `${where}.name`);
      if (seen.has(name)) throw this.fail(`duplicate tensor name ${JSON.stringify(name)}`, `${where}.name`);
      seen.add(name);
      const dtype = this.dtype(obj.dtype, `${where}.dtype`);
      const shape = this.list(obj.shape, `${where}.shape`).map((d, j) => {
        if (typeof d !== "number" || !Number.isInteger(d) || d < -1) {
          throw this.fail(`a dimension must be an integer >= -1 (-1 = variable), got ${describe(d)}`,
            `${where}.shape[${j}]`);
        }
        return d;
      });
      const spec: TensorSpec = { name, dtype, shape };
      if (obj.content_type !== undefined) {
        // json: an output whose values are JSON texts; base64: an input whose raw BYTES arrive as base64 text.
        const wanted = at.endsWith("outputs") ? "json" : "base64";
        if (obj.content_type !== wanted) {
          throw this.fail(`content_type of ${at.endsWith("outputs") ? "an output" : "an input"} can only be ${
            JSON.stringify(wanted)}, got ${describe(obj.content_type)}`, `${where}.content_type`);
        }
        if (dtype !== "string") throw this.fail(`content_type ${wanted} needs dtype string, got ${dtype}`, `${where}.content_type`);
        spec.content_type = wanted;
      }
      return spec;
    });
  }

  /** Custom wrappers: no float16 (rows are JS numbers); a json output holds one JSON value per row. */
  private checkCustomSignature(signature: Signature): void {
    for (const [list, at] of [[signature.inputs, "signature.inputs"], [signature.outputs, "signature.outputs"]] as const) {
      list.forEach((spec, i) => {
        if (spec.dtype === "float16") throw this.fail("a custom wrapper's tensors cannot be float16 (declare float32)", `${at}[${i}].dtype`);
        if (spec.shape.length === 0 || (spec.shape[0] as number) !== -1) {
          throw this.fail(`a custom wrapper's tensors are batched: the first dimension must be -1 (rows), got [${spec.shape.join(", ")}]`, `${at}[${i}].shape`);
        }
        if (spec.content_type === "json" && spec.shape.length !== 1) {
          throw this.fail(`a content_type json output holds one JSON value per row: its shape is [-1], got [${spec.shape.join(", ")}]`, `${at}[${i}].shape`);
        }
      });
    }
  }

  /** content_type is a custom-flavor feature: other flavors' string tensors are plain text. */
  private checkNoContentTypes(signature: Signature): void {
    for (const [list, at] of [[signature.inputs, "signature.inputs"], [signature.outputs, "signature.outputs"]] as const) {
      list.forEach((spec, i) => {
        if (spec.content_type !== undefined) throw this.fail("content_type is only for flavor custom", `${at}[${i}].content_type`);
      });
    }
  }

  private custom(value: unknown): CustomSection {
    const obj = this.record(value, "custom");
    this.keys(obj, ["entry", "config", "timeout_ms", "memory_mb", "allow_read", "allow_write"], "custom");
    const section: CustomSection = {};
    if (obj.entry !== undefined) {
      const entry = this.str(obj.entry, "custom.entry");
      if (path.isAbsolute(entry) || path.normalize(entry).split(/[\\/]/).includes("..")) {
        throw this.fail(`the entry ${JSON.stringify(entry)} must be a path inside the package`, "custom.entry");
      }
      section.entry = entry;
    }
    if (obj.config !== undefined && obj.config !== null) section.config = this.record(obj.config, "custom.config");
    if (obj.timeout_ms !== undefined) section.timeout_ms = this.posInt(obj.timeout_ms, "custom.timeout_ms");
    if (obj.memory_mb !== undefined) {
      const mb = this.posInt(obj.memory_mb, "custom.memory_mb");
      if (mb < 16) throw this.fail(`memory_mb must be at least 16 (MiB), got ${mb}`, "custom.memory_mb");
      section.memory_mb = mb;
    }
    if (obj.allow_read !== undefined) {
      section.allow_read = this.list(obj.allow_read, "custom.allow_read").map((p, i) => {
        const at = `custom.allow_read[${i}]`;
        const dir = this.str(p, at);
        if (!path.isAbsolute(dir)) throw this.fail(`expected an absolute path, got ${JSON.stringify(dir)}`, at);
        if (dir.includes(",")) throw this.fail("a path with a comma cannot be granted (Node's permission flags)", at);
        return dir;
      });
    }
    if (obj.allow_write !== undefined) {
      if (typeof obj.allow_write !== "boolean") throw this.fail(`expected true or false, got ${describe(obj.allow_write)}`, "custom.allow_write");
      section.allow_write = obj.allow_write;
    }
    return section;
  }

  private signature(value: unknown): Signature {
    const obj = this.record(value, "signature");
    this.keys(obj, ["inputs", "outputs", "columns", "columnsInput"], "signature");
    const signature: Signature = {
      inputs: this.tensorSpecs(obj.inputs, "signature.inputs"),
      outputs: this.tensorSpecs(obj.outputs, "signature.outputs"),
    };
    if (obj.columnsInput !== undefined && obj.columns === undefined) {
      throw this.fail("columnsInput needs columns", "signature.columnsInput");
    }
    if (obj.columns !== undefined) {
      const columns = this.columns(obj.columns);
      const target = obj.columnsInput === undefined ? signature.inputs[0] : (() => {
        const name = this.str(obj.columnsInput, "signature.columnsInput");
        const found = signature.inputs.find((s) => s.name === name);
        if (found === undefined) {
          throw this.fail(`columnsInput ${JSON.stringify(name)} is not a signature input (inputs: ${
            signature.inputs.map((s) => s.name).join(", ")})`, "signature.columnsInput");
        }
        return found;
      })();
      // inputs is non-empty (checked above), so target is defined.
      const input = target as TensorSpec;
      if (input.shape.length === 0) {
        throw this.fail(`columns need an input with a batch axis; ${JSON.stringify(input.name)} is a scalar`,
          "signature.columns");
      }
      const width = trailingWidth(input);
      if (width !== undefined && width !== columns.length) {
        throw this.fail(`${columns.length} columns declared but input ${JSON.stringify(input.name)} (shape [${
          input.shape.join(", ")}]) takes ${width} values per row`, "signature.columns");
      }
      signature.columns = columns;
      if (obj.columnsInput !== undefined) signature.columnsInput = input.name;
    }
    return signature;
  }

  private columns(value: unknown): ColumnSpec[] {
    const items = this.list(value, "signature.columns");
    if (items.length === 0) throw this.fail("the list is empty", "signature.columns");
    const seen = new Set<string>();
    return items.map((item, i) => {
      const where = `signature.columns[${i}]`;
      let spec: ColumnSpec;
      if (typeof item === "string") {
        spec = { name: this.str(item, where) };
      } else {
        const obj = this.record(item, where);
        this.keys(obj, ["name", "dtype"], where);
        spec = { name: this.str(obj.name, `${where}.name`) };
        if (obj.dtype !== undefined) spec.dtype = this.dtype(obj.dtype, `${where}.dtype`);
      }
      if (seen.has(spec.name)) throw this.fail(`duplicate column ${JSON.stringify(spec.name)}`, where);
      seen.add(spec.name);
      return spec;
    });
  }

  private checkColumnsKnown(names: string[], signature: Signature, at: string): void {
    if (signature.columns === undefined) return;
    const known = new Set(signature.columns.map((c) => c.name));
    names.forEach((name, i) => {
      if (!known.has(name)) throw this.fail(`column ${JSON.stringify(name)} is not in signature.columns`, `${at}[${i}]`);
    });
  }

  private preStep(value: unknown, at: string, signature: Signature): PreprocessStep {
    const obj = this.record(value, at);
    const type = this.str(obj.type, `${at}.type`);
    switch (type) {
      case "select_columns": {
        this.keys(obj, ["type", "columns"], at);
        const columns = this.strList(obj.columns, `${at}.columns`);
        this.checkColumnsKnown(columns, signature, `${at}.columns`);
        return { type, columns };
      }
      case "cast": {
        this.keys(obj, ["type", "dtype", "columns"], at);
        const step: PreprocessStep = { type, dtype: this.dtype(obj.dtype, `${at}.dtype`) };
        if (obj.columns !== undefined) {
          step.columns = this.strList(obj.columns, `${at}.columns`);
          this.checkColumnsKnown(step.columns, signature, `${at}.columns`);
        }
        return step;
      }
      case "image":
        return this.imageStep(obj, at, signature);
      default:
        throw this.fail(`unknown pre-processing step type ${JSON.stringify(type)} (select_columns, cast, image)`,
          `${at}.type`);
    }
  }

  private imageStep(obj: Record<string, unknown>, at: string, signature: Signature): PreprocessStep {
    this.keys(obj, ["type", "input", "target", "width", "height", "channels", "resize", "scale", "mean", "std",
      "layout"], at);
    const input = this.str(obj.input, `${at}.input`);
    if (signature.inputs.some((s) => s.name === input)) {
      throw this.fail(`the image input ${JSON.stringify(input)} has the name of a model input; give the encoded ` +
        "images their own name and point target at the model input", `${at}.input`);
    }
    const targetName = obj.target === undefined ? (signature.inputs[0] as TensorSpec).name : this.str(obj.target,
      `${at}.target`);
    const target = signature.inputs.find((s) => s.name === targetName);
    if (target === undefined) {
      throw this.fail(`target ${JSON.stringify(targetName)} is not a signature input`, `${at}.target`);
    }
    const width = this.posInt(obj.width, `${at}.width`);
    const height = this.posInt(obj.height, `${at}.height`);
    if (obj.channels !== 1 && obj.channels !== 3) {
      throw this.fail(`channels must be 1 or 3, got ${describe(obj.channels)}`, `${at}.channels`);
    }
    const channels = obj.channels;
    const resize = obj.resize ?? "area";
    if (!RESIZE_KERNELS.includes(resize as ResizeKernel)) {
      throw this.fail(`unknown resize kernel ${describe(resize)} (${RESIZE_KERNELS.join(", ")})`, `${at}.resize`);
    }
    const scale = this.num(obj.scale ?? 1, `${at}.scale`);
    const layout = obj.layout ?? "NCHW";
    if (layout !== "NCHW" && layout !== "NHWC") {
      throw this.fail(`layout must be NCHW or NHWC, got ${describe(layout)}`, `${at}.layout`);
    }
    const perChannel = (v: unknown, name: "mean" | "std"): number[] | undefined => {
      if (v === undefined) return undefined;
      const values = this.list(v, `${at}.${name}`).map((x, i) => this.num(x, `${at}.${name}[${i}]`));
      if (values.length !== channels) {
        throw this.fail(`${name} needs ${channels} value(s), one per channel, got ${values.length}`, `${at}.${name}`);
      }
      if (name === "std") {
        values.forEach((x, i) => {
          if (x === 0) throw this.fail("std must not be 0", `${at}.std[${i}]`);
        });
      }
      return values;
    };
    const mean = perChannel(obj.mean, "mean");
    const std = perChannel(obj.std, "std");
    if (target.dtype !== "float32") {
      throw this.fail(`an image step feeds a float32 input; ${JSON.stringify(target.name)} is ${target.dtype}`,
        `${at}.target`);
    }
    if (target.shape.length !== 4) {
      throw this.fail(`an image step feeds a rank-4 input ([batch, C, H, W] or [batch, H, W, C]); ${
        JSON.stringify(target.name)} has shape [${target.shape.join(", ")}]`, `${at}.target`);
    }
    const expected = layout === "NCHW" ? [channels, height, width] : [height, width, channels];
    const fields = layout === "NCHW" ? ["channels", "height", "width"] : ["height", "width", "channels"];
    target.shape.slice(1).forEach((d, i) => {
      if (d !== -1 && d !== expected[i]) {
        throw this.fail(`the step makes [batch, ${expected.join(", ")}] (${layout}) but input ${
          JSON.stringify(target.name)} has shape [${target.shape.join(", ")}]`, `${at}.${fields[i] ?? "layout"}`);
      }
    });
    return compact({
      type: "image", input, target: obj.target === undefined ? undefined : target.name, width, height, channels,
      resize: resize as ResizeKernel, scale, mean, std, layout,
    });
  }

  private checkImageTargets(steps: PreprocessStep[], signature: Signature): void {
    const targets = new Map<string, number>();
    const inputs = new Map<string, number>();
    steps.forEach((step, i) => {
      if (step.type !== "image") return;
      const target = step.target ?? (signature.inputs[0] as TensorSpec).name;
      if (targets.has(target)) {
        throw this.fail(`two image steps feed input ${JSON.stringify(target)} (also preprocess[${targets.get(target)}])`,
          `preprocess[${i}].target`);
      }
      if (inputs.has(step.input)) {
        throw this.fail(`two image steps read ${JSON.stringify(step.input)}`, `preprocess[${i}].input`);
      }
      targets.set(target, i);
      inputs.set(step.input, i);
    });
  }

  private postSteps(value: unknown, signature: Signature, metadata: PackageMetadata): PostprocessStep[] {
    const facts = new Map<string, OutputFacts>(signature.outputs.map((o) => [o.name, { dtype: o.dtype, shape: o.shape }]));
    return this.list(value, "postprocess").map((item, i) => {
      const at = `postprocess[${i}]`;
      const obj = this.record(item, at);
      const type = this.str(obj.type, `${at}.type`);
      if (!["softmax", "argmax", "labels", "top_k"].includes(type)) {
        throw this.fail(`unknown post-processing step type ${JSON.stringify(type)} (softmax, argmax, labels, top_k)`,
          `${at}.type`);
      }
      const output = this.str(obj.output, `${at}.output`);
      const src = facts.get(output);
      if (src === undefined) {
        throw this.fail(`output ${JSON.stringify(output)} is not a model output or an earlier step's result (known: ${
          [...facts.keys()].join(", ")})`, `${at}.output`);
      }
      const as = this.optStr(obj.as, `${at}.as`);
      const last = src.shape.length > 0 ? src.shape[src.shape.length - 1] as number : undefined;
      const lastKnown = last !== undefined && last >= 0 ? last : undefined;
      const needRank = (what: string): void => {
        if (src.shape.length === 0) throw this.fail(`${what} needs an output with at least one axis`, `${at}.output`);
      };
      switch (type) {
        case "softmax": {
          this.keys(obj, ["type", "output", "as"], at);
          if (!FLOAT_DTYPES.includes(src.dtype) || src.dtype === "float16") {
            throw this.fail(`softmax needs a float32/float64 output; ${JSON.stringify(output)} is ${src.dtype}`,
              `${at}.output`);
          }
          needRank("softmax");
          facts.set(as ?? output, { dtype: src.dtype, shape: src.shape });
          return as === undefined ? { type, output } : { type, output, as };
        }
        case "argmax": {
          this.keys(obj, ["type", "output", "as"], at);
          if (src.dtype === "string" || src.dtype === "bool" || src.dtype === "float16") {
            throw this.fail(`argmax needs a numeric output; ${JSON.stringify(output)} is ${src.dtype}`, `${at}.output`);
          }
          needRank("argmax");
          const f: OutputFacts = { dtype: "int64", shape: src.shape.slice(0, -1) };
          if (lastKnown !== undefined) f.classes = lastKnown;
          facts.set(as ?? defaultAs(type, output), f);
          return as === undefined ? { type, output } : { type, output, as };
        }
        case "labels": {
          this.keys(obj, ["type", "output", "labels", "as"], at);
          const labels = this.strList(obj.labels, `${at}.labels`, false);
          let classes: number | undefined;
          let shape: number[];
          if (INDEX_DTYPES.includes(src.dtype)) {
            classes = src.dtype === "bool" ? 2 : src.classes ?? metadata.class_labels?.length;
            shape = src.shape;
          } else if (FLOAT_DTYPES.includes(src.dtype) && src.dtype !== "float16" && src.shape.length >= 2) {
            classes = lastKnown;
            shape = src.shape.slice(0, -1);
          } else {
            throw this.fail(`labels needs an integer class index or a [batch, classes] score output; ${
              JSON.stringify(output)} is ${src.dtype} [${src.shape.join(", ")}]`, `${at}.output`);
          }
          if (classes !== undefined && labels.length !== classes) {
            throw this.fail(`${labels.length} labels given but output ${JSON.stringify(output)} has ${classes} classes`,
              `${at}.labels`);
          }
          facts.set(as ?? defaultAs(type, output), { dtype: "string", shape });
          return as === undefined ? { type, output, labels } : { type, output, labels, as };
        }
        default: {
          this.keys(obj, ["type", "output", "k", "labels", "as"], at);
          if (src.dtype === "string" || src.dtype === "bool" || src.dtype === "float16") {
            throw this.fail(`top_k needs a numeric output; ${JSON.stringify(output)} is ${src.dtype}`, `${at}.output`);
          }
          needRank("top_k");
          const k = this.posInt(obj.k, `${at}.k`);
          if (lastKnown !== undefined && k > lastKnown) {
            throw this.fail(`k = ${k} is larger than the ${lastKnown} values of output ${JSON.stringify(output)}`,
              `${at}.k`);
          }
          const step: PostprocessStep = { type: "top_k", output, k };
          if (obj.labels !== undefined) {
            step.labels = this.strList(obj.labels, `${at}.labels`, false);
            if (lastKnown !== undefined && step.labels.length !== lastKnown) {
              throw this.fail(`${step.labels.length} labels given but output ${JSON.stringify(output)} has ${
                lastKnown} classes`, `${at}.labels`);
            }
          }
          if (as !== undefined) step.as = as;
          const base = as ?? defaultAs("top_k", output, k);
          const shape = [...src.shape.slice(0, -1), k];
          facts.set(`${base}_indices`, { dtype: "int64", shape });
          facts.set(`${base}_scores`, { dtype: src.dtype, shape });
          if (step.labels !== undefined) facts.set(`${base}_labels`, { dtype: "string", shape });
          return step;
        }
      }
    });
  }

  private metadata(value: unknown): PackageMetadata {
    const obj = this.record(value, "metadata");
    this.keys(obj, ["framework", "created_at", "params", "metrics", "tags", "source_run",
      "training_data_fingerprint", "class_labels", "description", "lineage"], "metadata");
    const meta: PackageMetadata = {};
    if (obj.framework !== undefined) meta.framework = this.str(obj.framework, "metadata.framework");
    if (obj.created_at !== undefined) {
      // YAML turns an unquoted timestamp into a string only with the core schema; accept a Date too.
      const v = obj.created_at instanceof Date ? obj.created_at.toISOString() : this.str(obj.created_at,
        "metadata.created_at");
      if (Number.isNaN(Date.parse(v))) throw this.fail(`not an ISO-8601 date/time: ${JSON.stringify(v)}`,
        "metadata.created_at");
      meta.created_at = v;
    }
    if (obj.description !== undefined) {
      if (typeof obj.description !== "string") {
        throw this.fail(`expected a string, got ${describe(obj.description)}`, "metadata.description");
      }
      meta.description = obj.description;
    }
    if (obj.params !== undefined) {
      const params = this.record(obj.params, "metadata.params");
      const out: Record<string, string | number | boolean> = {};
      for (const [k, v] of Object.entries(params)) {
        if (typeof v === "string" || typeof v === "boolean" || (typeof v === "number" && Number.isFinite(v))) out[k] = v;
        else throw this.fail(`a param is a string, number or boolean, got ${describe(v)}`, `metadata.params.${k}`);
      }
      meta.params = out;
    }
    if (obj.metrics !== undefined) {
      const metrics = this.record(obj.metrics, "metadata.metrics");
      meta.metrics = Object.fromEntries(Object.entries(metrics).map(([k, v]) => [k, this.num(v, `metadata.metrics.${k}`)]));
    }
    if (obj.tags !== undefined) {
      const tags = this.record(obj.tags, "metadata.tags");
      meta.tags = Object.fromEntries(Object.entries(tags).map(([k, v]) => {
        if (typeof v !== "string") throw this.fail(`a tag value is a string, got ${describe(v)}`, `metadata.tags.${k}`);
        return [k, v];
      }));
    }
    if (obj.source_run !== undefined) {
      const run = this.record(obj.source_run, "metadata.source_run");
      this.keys(run, ["id", "uri", "system"], "metadata.source_run");
      const out: NonNullable<PackageMetadata["source_run"]> = {};
      for (const key of ["id", "uri", "system"] as const) {
        const v = this.optStr(run[key], `metadata.source_run.${key}`);
        if (v !== undefined) out[key] = v;
      }
      meta.source_run = out;
    }
    if (obj.training_data_fingerprint !== undefined) {
      const fp = this.str(obj.training_data_fingerprint, "metadata.training_data_fingerprint");
      if (!/^[0-9a-f]{64}$/.test(fp)) {
        throw this.fail("expected a sha256 digest (64 lowercase hex digits)", "metadata.training_data_fingerprint");
      }
      meta.training_data_fingerprint = fp;
    }
    if (obj.class_labels !== undefined) {
      meta.class_labels = this.strList(obj.class_labels, "metadata.class_labels", false);
    }
    if (obj.lineage !== undefined) meta.lineage = this.lineage(obj.lineage);
    return meta;
  }

  /** `metadata.lineage`: the parent version (model, version, digest), what derived it and the transform settings. */
  private lineage(value: unknown): PackageLineage {
    const at = "metadata.lineage";
    const obj = this.record(value, at);
    this.keys(obj, ["parent", "derived_by", "transform"], at);
    const lineage: PackageLineage = {};
    if (obj.parent !== undefined) {
      const parent = this.record(obj.parent, `${at}.parent`);
      this.keys(parent, ["model", "version", "digest"], `${at}.parent`);
      if (parent.model === undefined) throw this.fail("model is required", `${at}.parent.model`);
      const model = this.str(parent.model, `${at}.parent.model`);
      if (model.length > 200 || !MODEL_NAME_RE.test(model)) {
        throw this.fail(`model name ${JSON.stringify(model)} is not valid: use at most 200 of A-Z a-z 0-9 _ . - starting with a letter or digit`,
          `${at}.parent.model`);
      }
      if (parent.version === undefined) throw this.fail("version is required", `${at}.parent.version`);
      const out: NonNullable<PackageLineage["parent"]> = { model, version: this.posInt(parent.version, `${at}.parent.version`) };
      if (parent.digest !== undefined) {
        const digest = this.str(parent.digest, `${at}.parent.digest`);
        if (!/^[0-9a-f]{64}$/.test(digest)) {
          throw this.fail("expected a sha256 digest (64 lowercase hex digits)", `${at}.parent.digest`);
        }
        out.digest = digest;
      }
      lineage.parent = out;
    }
    if (obj.derived_by !== undefined) lineage.derived_by = this.str(obj.derived_by, `${at}.derived_by`);
    if (obj.transform !== undefined) {
      const transform = this.record(obj.transform, `${at}.transform`);
      const out: NonNullable<PackageLineage["transform"]> = {};
      for (const [k, v] of Object.entries(transform)) {
        if (typeof v === "string" || typeof v === "boolean" || (typeof v === "number" && Number.isFinite(v))) out[k] = v;
        else if (Array.isArray(v) && v.every((x) => typeof x === "string")) out[k] = [...(v as string[])];
        else {
          throw this.fail(`a transform setting is a string, number, boolean or list of strings, got ${describe(v)}`,
            `${at}.transform.${k}`);
        }
      }
      lineage.transform = out;
    }
    return lineage;
  }

  /** Class labels must fit at least one [batch, classes] output when the model has any with a known width. */
  private checkClassLabels(metadata: PackageMetadata, signature: Signature): void {
    const labels = metadata.class_labels;
    if (labels === undefined) return;
    const widths = signature.outputs
      .filter((o) => o.shape.length === 2 && (o.shape[1] as number) > 1 && o.dtype !== "string")
      .map((o) => o.shape[1] as number);
    if (widths.length > 0 && !widths.includes(labels.length)) {
      throw this.fail(`${labels.length} class labels but the model's class outputs have ${widths.join(" or ")} columns`,
        "metadata.class_labels");
    }
  }
}

/** Every output a scoring result may hold: the model's own, then what post-processing adds. */
export function outputNames(signature: Signature, postprocess: readonly PostprocessStep[]): string[] {
  const names = new Set(signature.outputs.map((o) => o.name));
  for (const step of postprocess) {
    if (step.type === "top_k") {
      const base = step.as ?? defaultAs("top_k", step.output, step.k);
      names.add(`${base}_indices`).add(`${base}_scores`);
      if (step.labels !== undefined) names.add(`${base}_labels`);
    } else {
      names.add(step.as ?? defaultAs(step.type, step.output));
    }
  }
  return [...names];
}

/** The output name a step writes when `as` is not given (documented in docs/model-package.md). */
export function defaultAs(type: PostprocessStep["type"], output: string, k?: number): string {
  switch (type) {
    case "softmax": return output;
    case "argmax": return `${output}_argmax`;
    case "labels": return `${output}_labels`;
    case "top_k": return `${output}_top${k ?? ""}`;
  }
}

/**
 * Validates a `serving` section (package manifest or registry override) and returns it without unknown or unset
 * fields. `fail(what, field)` builds the error, so the package reports PACKAGE_INVALID and the registry
 * INPUT_INVALID, both naming the field (`batching.max_batch_size must be an integer >= 1`).
 */
export function checkServingSettings(
  raw: unknown,
  at: string,
  fail: (what: string, field: string) => MlshipError,
): ServingSettings {
  const where = (key: string): string => (at === "" ? key : `${at}.${key}`);
  if (!isRecord(raw)) throw fail(`${at || "settings"} must be a mapping, got ${describe(raw)}`, at || "settings");
  const allowed = ["batching", "cache", "max_queue", "timeout_ms", "max_request_rows", "instances"];
  for (const key of Object.keys(raw)) {
    if (!allowed.includes(key)) throw fail(`unknown field ${where(key)} (allowed: ${allowed.join(", ")})`, where(key));
  }
  const int = (value: unknown, field: string, min: number): number => {
    if (typeof value !== "number" || !Number.isInteger(value) || value < min) {
      throw fail(`${field} must be an integer >= ${min}, got ${describe(value)}`, field);
    }
    return value;
  };
  const bool = (value: unknown, field: string): boolean => {
    if (typeof value !== "boolean") throw fail(`${field} must be true or false, got ${describe(value)}`, field);
    return value;
  };
  const out: ServingSettings = {};
  if (raw.batching !== undefined && raw.batching !== null) {
    const b = raw.batching;
    const f = where("batching");
    if (!isRecord(b)) throw fail(`${f} must be a mapping, got ${describe(b)}`, f);
    const keys = ["enabled", "max_batch_size", "max_delay_ms", "preferred_batch_sizes"];
    for (const key of Object.keys(b)) if (!keys.includes(key)) throw fail(`unknown field ${f}.${key} (allowed: ${keys.join(", ")})`, `${f}.${key}`);
    const batching: NonNullable<ServingSettings["batching"]> = {};
    if (b.enabled !== undefined) batching.enabled = bool(b.enabled, `${f}.enabled`);
    if (b.max_batch_size !== undefined) batching.max_batch_size = int(b.max_batch_size, `${f}.max_batch_size`, 1);
    if (b.max_delay_ms !== undefined) {
      batching.max_delay_ms = int(b.max_delay_ms, `${f}.max_delay_ms`, 0);
      if (batching.max_delay_ms > 60_000) throw fail(`${f}.max_delay_ms must be at most 60000, got ${batching.max_delay_ms}`, `${f}.max_delay_ms`);
    }
    if (b.preferred_batch_sizes !== undefined) {
      const p = b.preferred_batch_sizes;
      if (!Array.isArray(p)) throw fail(`${f}.preferred_batch_sizes must be a list of integers >= 1, got ${describe(p)}`, `${f}.preferred_batch_sizes`);
      batching.preferred_batch_sizes = [...new Set(p.map((v, i) => int(v, `${f}.preferred_batch_sizes[${i}]`, 1)))].sort((x, y) => x - y);
    }
    if (
      batching.max_batch_size !== undefined &&
      batching.preferred_batch_sizes?.some((s) => s > (batching.max_batch_size as number)) === true
    ) {
      throw fail(`${f}.preferred_batch_sizes must not exceed max_batch_size (${batching.max_batch_size})`, `${f}.preferred_batch_sizes`);
    }
    out.batching = batching;
  }
  if (raw.cache !== undefined && raw.cache !== null) {
    const c = raw.cache;
    const f = where("cache");
    if (!isRecord(c)) throw fail(`${f} must be a mapping, got ${describe(c)}`, f);
    for (const key of Object.keys(c)) if (key !== "enabled" && key !== "ttl_seconds") throw fail(`unknown field ${f}.${key} (allowed: enabled, ttl_seconds)`, `${f}.${key}`);
    const cache: NonNullable<ServingSettings["cache"]> = {};
    if (c.enabled !== undefined) cache.enabled = bool(c.enabled, `${f}.enabled`);
    if (c.ttl_seconds !== undefined) cache.ttl_seconds = int(c.ttl_seconds, `${f}.ttl_seconds`, 1);
    out.cache = cache;
  }
  if (raw.max_queue !== undefined) out.max_queue = int(raw.max_queue, where("max_queue"), 1);
  if (raw.timeout_ms !== undefined) out.timeout_ms = int(raw.timeout_ms, where("timeout_ms"), 1);
  if (raw.max_request_rows !== undefined) out.max_request_rows = int(raw.max_request_rows, where("max_request_rows"), 1);
  if (raw.instances !== undefined) out.instances = int(raw.instances, where("instances"), 1);
  return out;
}
