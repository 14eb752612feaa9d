/**
 * Tooling for custom (wrapper) model packages: `mlship package init` (scaffold from a template), `mlship package
 * build` (type-check with the TypeScript compiler API, then bundle with esbuild into one self-contained module) and
 * the staleness check `mlship package test` uses. The format is in docs/custom-models.md.
 *
 * A served wrapper must never depend on the author's node_modules: everything is bundled except the two native
 * addons (`sharp`, `onnxruntime-node`), which the custom runtime resolves to mlship's own installed copies. The
 * `mlship/wrapper` import is aliased to mlship's own wrapper module, so a fresh folder without node_modules builds.
 */
import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import fs from "node:fs/promises";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { BuildResult, Message, PluginBuild } from "esbuild";
import type TypeScriptApi from "typescript";
import type { CompilerOptions, Diagnostic } from "typescript";
import YAML from "yaml";
import { MlshipError } from "../core/index.js";
import { inspectOnnx } from "./onnx.js";
import { MANIFEST_FILE } from "./manifest.js";
import type { TensorSpec } from "./types.js";

/** The templates `mlship package init --template` knows (folders under templates/custom/). */
export const WRAPPER_TEMPLATES = ["onnx-classifier", "image-classifier", "tabular"] as const;
export type WrapperTemplate = (typeof WRAPPER_TEMPLATES)[number];

/** Imports a bundle may keep: the native addons mlship provides at runtime (and Node's own modules). */
export const WRAPPER_EXTERNALS = ["sharp", "onnxruntime-node"] as const;

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** The repository / installed package root: src/package/ and dist/package/ both sit two levels down. */
const MLSHIP_ROOT = path.resolve(HERE, "..", "..");
const TEMPLATES_DIR = path.join(MLSHIP_ROOT, "templates", "custom");
const requireHere = createRequire(import.meta.url);

/** mlship's own wrapper module: the compiled one when running from dist/, the source when running from src/. */
export function wrapperModulePath(): { module: string; types: string } {
  const js = path.join(HERE, "..", "runtime", "custom", "wrapper.js");
  if (existsSync(js)) {
    const dts = path.join(HERE, "..", "runtime", "custom", "wrapper.d.ts");
    return { module: js, types: existsSync(dts) ? dts : js };
  }
  const ts = path.join(HERE, "..", "runtime", "custom", "wrapper.ts");
  return { module: ts, types: ts };
}

function buildError(message: string, details?: Record<string, unknown>, field = "custom.entry"): MlshipError {
  return new MlshipError("MLSHIP_ERR_PACKAGE_BUILD", message, details === undefined ? { field } : { field, details });
}

/** The parts of a custom package's mlship.yaml that building needs (read without the full manifest validation). */
export interface WrapperManifestInfo {
  root: string;
  /** Absolute path of `custom.entry`. */
  entry: string;
  /** Absolute path of `files.model` (the bundle). */
  bundle: string;
  /** `files.model` as written (relative). */
  bundleRel: string;
  entryRel: string;
}

export async function readWrapperManifest(dir: string): Promise<WrapperManifestInfo> {
  const root = path.resolve(dir);
  const file = path.join(root, MANIFEST_FILE);
  let doc: unknown;
  try {
    doc = YAML.parse(await fs.readFile(file, "utf8"));
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === "ENOENT" || code === "ENOTDIR") {
      throw new MlshipError("MLSHIP_ERR_PACKAGE_NOT_FOUND", `${file} not found: ${dir} is not a package folder (create one with mlship package init)`, {
        field: MANIFEST_FILE,
      });
    }
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${file}: ${error instanceof Error ? error.message : String(error)}`, { field: MANIFEST_FILE, cause: error });
  }
  const m = (typeof doc === "object" && doc !== null ? doc : {}) as {
    flavor?: unknown;
    files?: { model?: unknown };
    custom?: { entry?: unknown };
  };
  if (m.flavor !== "custom") {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_UNSUPPORTED", `${file}: flavor is ${JSON.stringify(m.flavor ?? null)}; only flavor custom packages are built (the others need no build)`, {
      field: "flavor",
    });
  }
  const entryRel = m.custom?.entry;
  if (typeof entryRel !== "string" || entryRel.trim() === "") {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${file}: custom.entry must name the wrapper source (e.g. src/wrapper.ts)`, { field: "custom.entry" });
  }
  const bundleRel = m.files?.model;
  if (typeof bundleRel !== "string" || !bundleRel.endsWith(".mjs")) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${file}: files.model must name the bundle to write, a .mjs file (e.g. build/wrapper.mjs)`, { field: "files.model" });
  }
  const inside = (rel: string, field: string): string => {
    const abs = path.resolve(root, rel);
    const up = path.relative(root, abs);
    // `..` as a path segment, not a name that starts with two dots (`..src/wrapper.ts` is inside).
    if (path.isAbsolute(rel) || up === ".." || up.startsWith(`..${path.sep}`)) {
      throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${file}: ${field} must be a path inside the package folder, got ${rel}`, { field });
    }
    return abs;
  };
  return { root, entry: inside(entryRel, "custom.entry"), bundle: inside(bundleRel, "files.model"), bundleRel, entryRel };
}

// ---------------------------------------------------------------------------------------------------------------
// Type-check

/** The folder of an installed package (resolved from mlship's own location) and its types entry. */
function installedPackage(name: string): { dir: string; types: string | undefined } | undefined {
  let resolved: string;
  try {
    resolved = requireHere.resolve(name);
  } catch {
    return undefined;
  }
  for (let dir = path.dirname(resolved); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const file = path.join(dir, "package.json");
    if (!existsSync(file)) continue;
    const pkg = JSON.parse(readFileSync(file, "utf8")) as {
      name?: string;
      types?: string;
      typings?: string;
      exports?: { "."?: { import?: { types?: string } } };
    };
    if (pkg.name !== name) continue;
    const rel = pkg.types ?? pkg.typings ?? pkg.exports?.["."]?.import?.types;
    return { dir, types: rel === undefined ? undefined : path.join(dir, rel) };
  }
  return undefined;
}

/** Where mlship's own @types (node) live, when installed (a dev checkout has them). */
function mlshipTypeRoots(): string | undefined {
  for (let dir = MLSHIP_ROOT; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const candidate = path.join(dir, "node_modules", "@types");
    if (existsSync(path.join(candidate, "node", "package.json"))) return candidate;
  }
  return undefined;
}

/**
 * Type-checks the entry (and what it imports) with the TypeScript compiler API. Options come from DIR/tsconfig.json
 * when present, else strict ESNext/NodeNext defaults; `mlship/wrapper`, `sharp` and `onnxruntime-node` are mapped
 * (compilerOptions.paths) to mlship's own copies so the check works in a folder without node_modules.
 * Returns the errors as `file:line:col message` lines (file relative to the package folder).
 */
export async function typecheckWrapper(info: WrapperManifestInfo): Promise<string[]> {
  const ts = (await import("typescript")).default;
  const tsconfigFile = path.join(info.root, "tsconfig.json");
  let options: CompilerOptions;
  const problems: string[] = [];
  if (existsSync(tsconfigFile)) {
    const read = ts.readConfigFile(tsconfigFile, (f) => ts.sys.readFile(f));
    if (read.error !== undefined) problems.push(formatTsDiagnostic(ts, read.error, info.root));
    const parsed = ts.parseJsonConfigFileContent(read.config ?? {}, ts.sys, info.root, undefined, tsconfigFile);
    // "No inputs were found" (TS18003) and "The 'files' list is empty" (TS18002) do not matter: the entry is the
    // root, not the tsconfig's include or files.
    problems.push(...parsed.errors.filter((d) => d.code !== 18003 && d.code !== 18002).map((d) => formatTsDiagnostic(ts, d, info.root)));
    options = parsed.options;
  } else {
    options = {
      strict: true,
      target: ts.ScriptTarget.ESNext,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      esModuleInterop: true,
      skipLibCheck: true,
      lib: ["lib.esnext.d.ts"],
    };
  }
  const wrapper = wrapperModulePath();
  const paths: Record<string, string[]> = { ...(options.paths ?? {}), "mlship/wrapper": [wrapper.types] };
  for (const name of WRAPPER_EXTERNALS) {
    const found = installedPackage(name);
    if (found !== undefined) paths[name] = [found.types ?? found.dir];
  }
  const typeRoots = mlshipTypeRoots();
  options = {
    ...options,
    noEmit: true,
    paths,
    ...(typeRoots === undefined ? {} : {
      typeRoots: [...(options.typeRoots ?? [path.join(info.root, "node_modules", "@types")]), typeRoots],
      types: options.types ?? ["node"],
    }),
  };
  // Without baseUrl, TypeScript resolves `paths` from the tsconfig folder; ours are absolute anyway.
  const program = ts.createProgram({ rootNames: [info.entry], options });
  const diagnostics = ts.getPreEmitDiagnostics(program).filter((d) => d.category === ts.DiagnosticCategory.Error);
  problems.push(...diagnostics.map((d) => formatTsDiagnostic(ts, d, info.root)));
  return problems;
}

function formatTsDiagnostic(ts: typeof TypeScriptApi, d: Diagnostic, root: string): string {
  const message = `${ts.flattenDiagnosticMessageText(d.messageText, " ")} (TS${d.code})`;
  if (d.file === undefined || d.start === undefined) return message;
  const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
  return `${displayPath(d.file.fileName, root)}:${line + 1}:${character + 1} ${message}`;
}

function displayPath(file: string, root: string): string {
  const rel = path.relative(root, path.resolve(root, file));
  return rel.startsWith("..") ? file : rel.split(path.sep).join("/");
}

// ---------------------------------------------------------------------------------------------------------------
// Bundle

export interface WrapperBuildResult {
  /** Absolute path of the bundle (`files.model`). */
  bundle: string;
  /** `files.model` as written in mlship.yaml. */
  bundleRel: string;
  bytes: number;
  sha256: string;
  /** The bundle's imports left to the runtime (only sharp, onnxruntime-node and node: builtins). */
  externals: string[];
  ms: number;
}

/**
 * `mlship package build DIR`: type-check, then bundle `custom.entry` into `files.model` (platform node, ESM,
 * node20). Fails with MLSHIP_ERR_PACKAGE_BUILD; `details.diagnostics` holds every `file:line:col message` line.
 */
export async function buildWrapperPackage(dir: string, options: { typecheck?: boolean } = {}): Promise<WrapperBuildResult> {
  const started = Date.now();
  const info = await readWrapperManifest(dir);
  if (!existsSync(info.entry)) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `custom.entry ${info.entryRel} does not exist in ${info.root}`, { field: "custom.entry" });
  }
  if (options.typecheck !== false) {
    const problems = await typecheckWrapper(info);
    if (problems.length > 0) {
      throw buildError(`${info.entryRel} does not type-check (${problems.length} error${problems.length === 1 ? "" : "s"}):\n${problems.join("\n")}`,
        { diagnostics: problems });
    }
  }
  const esbuild = await import("esbuild");
  const wrapper = wrapperModulePath().module;
  let result: BuildResult<{ metafile: true }>;
  try {
    result = await esbuild.build({
      entryPoints: [info.entry],
      absWorkingDir: info.root,
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      outfile: info.bundle,
      metafile: true,
      logLevel: "silent",
      external: WRAPPER_EXTERNALS.flatMap((name) => [name, `${name}/*`]),
      // CommonJS dependencies bundled into an ES module still call require() for Node's own modules.
      banner: { js: 'import { createRequire as __mlshipCreateRequire } from "node:module";\nconst require = __mlshipCreateRequire(import.meta.url);' },
      plugins: [
        {
          name: "mlship-wrapper",
          setup(build: PluginBuild) {
            build.onResolve({ filter: /^mlship\/wrapper$/ }, () => ({ path: wrapper }));
          },
        },
      ],
    });
  } catch (error) {
    const messages = (error as { errors?: Message[] }).errors;
    if (messages === undefined) throw buildError(`bundling ${info.entryRel} failed: ${error instanceof Error ? error.message : String(error)}`);
    const problems = messages.map((m) => formatEsbuildMessage(m, info.root));
    throw buildError(`${info.entryRel} cannot be bundled (${problems.length} error${problems.length === 1 ? "" : "s"}):\n${problems.join("\n")}`,
      { diagnostics: problems });
  }
  const externals = new Set<string>();
  for (const output of Object.values(result.metafile.outputs)) {
    for (const imp of output.imports) if (imp.external) externals.add(imp.path);
  }
  const bytes = await fs.readFile(info.bundle);
  return {
    bundle: info.bundle,
    bundleRel: info.bundleRel,
    bytes: bytes.length,
    sha256: createHash("sha256").update(bytes).digest("hex"),
    externals: [...externals].sort(),
    ms: Date.now() - started,
  };
}

function formatEsbuildMessage(m: Message, root: string): string {
  const unresolved = /^Could not resolve "(.+)"$/.exec(m.text);
  const text = unresolved === null
    ? m.text
    : `cannot resolve import "${unresolved[1]}": install it in the package folder (npm install ${unresolved[1]}) so it is bundled; ` +
      `only ${WRAPPER_EXTERNALS.join(" and ")} stay external`;
  if (m.location === null) return text;
  return `${displayPath(m.location.file, root)}:${m.location.line}:${m.location.column + 1} ${text}`;
}

/**
 * Whether the bundle must be (re)built: it is missing, or older than the entry, a source file in the entry's
 * folder (recursively, node_modules aside) or tsconfig.json.
 */
export async function wrapperBundleStale(dir: string): Promise<boolean> {
  const info = await readWrapperManifest(dir);
  const built = await fs.stat(info.bundle).catch(() => undefined);
  if (built === undefined) return true;
  const newest = async (folder: string): Promise<number> => {
    let max = 0;
    const entries = await fs.readdir(folder, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const abs = path.join(folder, e.name);
      if (e.isDirectory()) {
        if (e.name !== "node_modules" && abs !== path.dirname(info.bundle)) max = Math.max(max, await newest(abs));
      } else if (/\.(m|c)?(t|j)sx?$|\.json$/.test(e.name) && abs !== info.bundle) {
        // A dangling link (an editor's `.#wrapper.ts` lock) is no source: skipped, not a failure.
        max = Math.max(max, (await fs.stat(abs).catch(() => undefined))?.mtimeMs ?? 0);
      }
    }
    return max;
  };
  const entryDir = path.dirname(info.entry);
  // A flat package (entry next to mlship.yaml) only compares the entry itself.
  let sources = entryDir === info.root ? (await fs.stat(info.entry)).mtimeMs : await newest(entryDir);
  const tsconfig = await fs.stat(path.join(info.root, "tsconfig.json")).catch(() => undefined);
  if (tsconfig !== undefined) sources = Math.max(sources, tsconfig.mtimeMs);
  sources = Math.max(sources, (await fs.stat(info.entry)).mtimeMs);
  return built.mtimeMs < sources;
}

// ---------------------------------------------------------------------------------------------------------------
// Init

export interface WrapperInitOptions {
  template: string;
  /** An ONNX model copied into the package as model.onnx; its input and output shapes fill in the template. */
  model?: string;
  /** A JSON array of class names (classifier templates); default "0".."n-1" from the model's output width. */
  labels?: string;
  /** Package name used in the README and description (default: the folder name). */
  name?: string;
}

export interface WrapperInitResult {
  dir: string;
  template: WrapperTemplate;
  /** The files written, relative to `dir`. */
  files: string[];
}

/** The template folder (for tests and docs: the example image classifier is generated from it). */
export function wrapperTemplateDir(template: WrapperTemplate): string {
  return path.join(TEMPLATES_DIR, template);
}

function isTemplate(name: string): name is WrapperTemplate {
  return (WRAPPER_TEMPLATES as readonly string[]).includes(name);
}

interface TemplateManifest {
  files: Record<string, string>;
  signature: { inputs: TensorSpec[]; outputs: TensorSpec[] };
  custom: { config: Record<string, unknown> } & Record<string, unknown>;
  metadata: { description?: string } & Record<string, unknown>;
  input_example?: string;
}

/**
 * `mlship package init DIR --template T`: copies templates/custom/T into DIR (which must be missing or empty),
 * fills in the model-specific parts from `--model` (input/output names and shapes, class names) and writes an
 * input example.
 */
export async function initWrapperPackage(dir: string, options: WrapperInitOptions): Promise<WrapperInitResult> {
  if (!isTemplate(options.template)) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_UNSUPPORTED", `unknown template ${JSON.stringify(options.template)}; use one of ${WRAPPER_TEMPLATES.join(", ")}`, {
      field: "template",
    });
  }
  const template = options.template;
  const root = path.resolve(dir);
  const existing = await fs.readdir(root).catch((error: unknown) => {
    if ((error as { code?: unknown }).code === "ENOENT") return [];
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${root} cannot be used: ${error instanceof Error ? error.message : String(error)}`, { field: "DIR" });
  });
  if (existing.length > 0) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${root} is not empty (${existing.length} entr${existing.length === 1 ? "y" : "ies"}); ` +
      "mlship package init writes a new package into a missing or empty folder", { field: "DIR" });
  }
  const graph = options.model === undefined ? undefined : await inspectOnnx(path.resolve(options.model));
  let labels = options.labels === undefined ? undefined : await readLabelsFile(path.resolve(options.labels));

  const source = wrapperTemplateDir(template);
  const manifest = YAML.parse(await fs.readFile(path.join(source, MANIFEST_FILE), "utf8")) as TemplateManifest;
  const name = options.name ?? path.basename(root);
  manifest.metadata.description = `${name}: ${manifest.metadata.description ?? template}`;
  const config = manifest.custom.config;
  let example: unknown;

  if (template === "image-classifier") {
    if (graph !== undefined) {
      const input = pickInput(graph.inputs, options.model as string);
      const output = pickClassOutput(graph.outputs, options.model as string);
      const shape = input.shape;
      if (shape.length !== 4) {
        throw new MlshipError("MLSHIP_ERR_PACKAGE_UNSUPPORTED", `${options.model}: input ${input.name} has shape [${shape.join(", ")}]; ` +
          "the image-classifier template needs an image input [batch, C, H, W] or [batch, H, W, C]", { field: "--model" });
      }
      const nchw = shape[1] === 1 || shape[1] === 3;
      const [channels, height, width] = nchw ? [shape[1], shape[2], shape[3]] : [shape[3], shape[1], shape[2]];
      if ((channels !== 1 && channels !== 3) || height === undefined || width === undefined || height < 1 || width < 1) {
        throw new MlshipError("MLSHIP_ERR_PACKAGE_UNSUPPORTED", `${options.model}: input ${input.name} has shape [${shape.join(", ")}]; ` +
          "the image-classifier template needs fixed height, width and 1 or 3 channels", { field: "--model" });
      }
      Object.assign(config, { onnx_input: input.name, onnx_output: output.name, width, height, channels, layout: nchw ? "NCHW" : "NHWC" });
      labels ??= defaultLabels(output);
    }
    example = await blankImageExample(Number(config.width), Number(config.height), Number(config.channels));
  } else if (template === "onnx-classifier") {
    let width = manifest.signature.inputs[0]?.shape.slice(1) ?? [4];
    if (graph !== undefined) {
      const input = pickInput(graph.inputs, options.model as string);
      const output = pickClassOutput(graph.outputs, options.model as string);
      width = input.shape.slice(1);
      if (width.some((d) => d < 1)) {
        throw new MlshipError("MLSHIP_ERR_PACKAGE_UNSUPPORTED", `${options.model}: input ${input.name} has shape [${input.shape.join(", ")}]; ` +
          "the onnx-classifier template needs fixed dimensions after the batch axis", { field: "--model" });
      }
      (manifest.signature.inputs[0] as TensorSpec).shape = [-1, ...width];
      Object.assign(config, { onnx_input: input.name, onnx_output: output.name });
      labels ??= defaultLabels(output);
    }
    const zeros = (dims: number[]): unknown => dims.length === 0 ? 0 : Array.from({ length: dims[0] as number }, () => zeros(dims.slice(1)));
    example = { inputs: { features: [zeros(width)] } };
  } else {
    let columns = config.columns as string[];
    if (graph !== undefined) {
      const input = pickInput(graph.inputs, options.model as string);
      const output = graph.outputs[0];
      const n = input.shape.length === 2 ? input.shape[1] : undefined;
      if (n === undefined || n < 1 || output === undefined) {
        throw new MlshipError("MLSHIP_ERR_PACKAGE_UNSUPPORTED", `${options.model}: input ${input.name} has shape [${input.shape.join(", ")}]; ` +
          "the tabular template needs a [batch, columns] input with a fixed column count", { field: "--model" });
      }
      columns = Array.from({ length: n }, (_, i) => `feature_${i}`);
      manifest.signature.inputs = columns.map((c) => ({ name: c, dtype: "float64", shape: [-1] }));
      Object.assign(config, { onnx_input: input.name, onnx_output: output.name, columns });
    }
    example = { dataframe_split: { columns, data: [columns.map(() => 0)] } };
  }

  if (labels === undefined) {
    // Without a model the class count is unknown: classes are named by index until labels.json lists them.
    labels = [];
  }
  const written: string[] = [];
  const write = async (rel: string, content: string | Buffer): Promise<void> => {
    const abs = path.join(root, rel);
    await fs.mkdir(path.dirname(abs), { recursive: true });
    await fs.writeFile(abs, content);
    written.push(rel);
  };
  await fs.mkdir(root, { recursive: true });
  await write(MANIFEST_FILE, `# ${name}: a custom (wrapper) model package, made by mlship package init --template ${template}.\n` +
    "# Build: mlship package build .   Try: mlship package test . --input input_example.json   Docs: docs/custom-models.md\n" +
    manifestYaml(manifest));
  for (const rel of ["src/wrapper.ts", "tsconfig.json"]) await write(rel, await fs.readFile(path.join(source, rel)));
  const readme = await fs.readFile(path.join(source, "README.md"), "utf8");
  await write("README.md", readme.replaceAll("{{name}}", name));
  await write("input_example.json", `${JSON.stringify(example, null, 2)}\n`);
  if ("labels" in manifest.files) await write("labels.json", `${JSON.stringify(labels)}\n`);
  if (options.model !== undefined) {
    await fs.copyFile(path.resolve(options.model), path.join(root, "model.onnx"));
    // copyFile keeps the source mode; a read-only fixture would make a read-only package.
    await fs.chmod(path.join(root, "model.onnx"), 0o644);
    written.push("model.onnx");
  }
  return { dir: root, template, files: written };
}

/** The manifest as YAML, short lists of scalars (shapes, columns) on one line as in the docs' examples. */
function manifestYaml(manifest: TemplateManifest): string {
  const doc = new YAML.Document(manifest);
  YAML.visit(doc, {
    Seq(_, node) {
      if (node.items.every((item) => YAML.isScalar(item))) node.flow = true;
    },
  });
  return doc.toString({ lineWidth: 0 });
}

async function readLabelsFile(file: string): Promise<string[]> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await fs.readFile(file, "utf8"));
  } catch (error) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `--labels ${file}: ${error instanceof Error ? error.message : String(error)}`, { field: "--labels" });
  }
  if (!Array.isArray(parsed) || !parsed.every((l) => typeof l === "string")) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `--labels ${file} must be a JSON array of class names`, { field: "--labels" });
  }
  return parsed as string[];
}

function pickInput(inputs: TensorSpec[], model: string): TensorSpec {
  const first = inputs[0];
  if (inputs.length !== 1 || first === undefined || first.dtype !== "float32") {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_UNSUPPORTED", `${model}: the templates take a model with one float32 input ` +
      `(this one has ${inputs.map((i) => `${i.name} ${i.dtype}`).join(", ")}); edit the template's wrapper for others`, { field: "--model" });
  }
  return first;
}

/** The classifier's probability output: a float output [batch, classes] (the first such). */
function pickClassOutput(outputs: TensorSpec[], model: string): TensorSpec {
  const found = outputs.find((o) => (o.dtype === "float32" || o.dtype === "float64") && o.shape.length === 2 && (o.shape[1] ?? 0) > 0);
  if (found === undefined) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_UNSUPPORTED", `${model}: no float output shaped [batch, classes] to read class scores from ` +
      `(outputs: ${outputs.map((o) => `${o.name} [${o.shape.join(", ")}]`).join(", ")})`, { field: "--model" });
  }
  return found;
}

function defaultLabels(output: TensorSpec): string[] {
  return Array.from({ length: output.shape[1] as number }, (_, i) => String(i));
}

/** An MLflow body with one blank (black) PNG of the model's input size, base64. */
async function blankImageExample(width: number, height: number, channels: number): Promise<unknown> {
  const sharp = (await import("sharp")).default;
  const png = await sharp({ create: { width, height, channels: 3, background: { r: 0, g: 0, b: 0 } } })
    .toColourspace(channels === 1 ? "b-w" : "srgb")
    .png()
    .toBuffer();
  return { dataframe_split: { columns: ["image"], data: [[png.toString("base64")]] } };
}
