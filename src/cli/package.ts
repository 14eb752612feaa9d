import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Command, Option } from "commander";
import { createMlship, registerModel } from "../app.js";
import { defaultConfig } from "../config/index.js";
import { MlshipError } from "../core/index.js";
import {
  buildWrapperPackage,
  initWrapperPackage,
  readWrapperManifest,
  WRAPPER_TEMPLATES,
  wrapperBundleStale,
  type WrapperBuildResult,
} from "../package/index.js";
import { formatMlflowResponse, formatV2Response, type ScoringInput } from "../scoring/index.js";
import { usageError } from "./args.js";
import type { CliContext, GlobalOptions } from "./context.js";
import { printJson, printLine } from "./io.js";
import { readInputFile } from "./predict.js";

function globals<T>(cmd: Command): GlobalOptions & T {
  return cmd.optsWithGlobals<GlobalOptions & T>();
}

/**
 * A build's diagnostics go to stderr one per line (`file:line:col message`), so editors and CI can jump to them;
 * the error itself then prints the usual one-line `mlship: ... [MLSHIP_ERR_PACKAGE_BUILD]`.
 */
async function build(ctx: CliContext, dir: string): Promise<WrapperBuildResult> {
  try {
    return await buildWrapperPackage(dir);
  } catch (error) {
    const diagnostics = error instanceof MlshipError ? error.details?.diagnostics : undefined;
    if (error instanceof MlshipError && Array.isArray(diagnostics)) {
      for (const line of diagnostics) ctx.io.stderr.write(`${String(line)}\n`);
      const first = (error.message.split("\n")[0] ?? error.message).replace(/:$/, "");
      throw new MlshipError(error.code, `${first}, listed above`, { field: error.field, details: error.details, cause: error });
    }
    throw error;
  }
}

function kib(bytes: number): string {
  return bytes < 1024 ? `${bytes} B` : `${(bytes / 1024).toFixed(1)} KiB`;
}

/** `--input` of `package test`: what `mlship predict` reads (.json MLflow/V2, .csv), plus .jsonl rows. */
async function readTestInput(file: string): Promise<ScoringInput> {
  if (path.extname(file).toLowerCase() !== ".jsonl") return readInputFile(file);
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (error) {
    throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", `input file ${file} cannot be read: ${error instanceof Error ? error.message : String(error)}`, {
      field: "--input",
      cause: error,
    });
  }
  const records: Array<Record<string, unknown>> = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch (error) {
      throw new MlshipError("MLSHIP_ERR_INPUT_JSON", `input file ${file} line ${i + 1} is not valid JSON: ${error instanceof Error ? error.message : String(error)}`, {
        field: "--input",
      });
    }
    if (typeof row !== "object" || row === null || Array.isArray(row)) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `input file ${file} line ${i + 1}: each line must be one row, a JSON object`, { field: "--input" });
    }
    records.push(row as Record<string, unknown>);
  });
  if (records.length === 0) throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", `input file ${file} has no rows`, { field: "--input" });
  return { kind: "records", records };
}

/** A model name for the throwaway registry: the folder name, cleaned up. */
function testModelName(dir: string): string {
  const cleaned = path.basename(dir).replace(/[^A-Za-z0-9_.-]+/g, "-").replace(/^[^A-Za-z0-9]+/, "");
  return cleaned === "" ? "wrapper" : cleaned;
}

export function packageCommand(ctx: CliContext): Command {
  const pkg = new Command("package").description("custom model wrappers: scaffold, build (type-check + bundle) and test a package");

  pkg
    .command("init")
    .description("scaffold a custom (wrapper) model package from a template into DIR (missing or empty)")
    .argument("<dir>", "the folder to create")
    .addOption(new Option("-t, --template <name>", "the template").choices([...WRAPPER_TEMPLATES]).makeOptionMandatory())
    .option("-m, --model <file.onnx>", "an ONNX model to copy in; its input/output shapes fill in the template")
    .option("--labels <file.json>", "classifier templates: a JSON array of class names (default 0..n-1 from the model)")
    .option("--name <name>", "package name for the README and description (default: the folder name)")
    .action(async (dir: string, _opts: unknown, cmd: Command) => {
      const o = globals<{ template: string; model?: string; labels?: string; name?: string }>(cmd);
      if (o.model !== undefined && !o.model.toLowerCase().endsWith(".onnx")) throw usageError(`--model ${o.model}: give a .onnx file`, "--model");
      const resolve = (p: string | undefined): string | undefined => (p === undefined ? undefined : path.resolve(ctx.io.cwd, p));
      const result = await initWrapperPackage(path.resolve(ctx.io.cwd, dir), {
        template: o.template,
        model: resolve(o.model),
        labels: resolve(o.labels),
        name: o.name,
      });
      printLine(ctx.io, `created ${result.dir} from template ${result.template}:`);
      for (const file of result.files) printLine(ctx.io, `  ${file}`);
      printLine(ctx.io, "");
      printLine(ctx.io, `next: ${result.files.includes("model.onnx") ? "" : "copy your model to model.onnx, then "}mlship package build ${dir}`);
    });

  pkg
    .command("build")
    .description("type-check a wrapper package's custom.entry and bundle it into files.model (one self-contained .mjs)")
    .argument("<dir>", "the package folder (with mlship.yaml, flavor custom)")
    .option("--json", "print the result as JSON")
    .action(async (dir: string, _opts: unknown, cmd: Command) => {
      const o = globals<{ json?: boolean }>(cmd);
      const result = await build(ctx, path.resolve(ctx.io.cwd, dir));
      if (o.json === true) return printJson(ctx.io, result);
      printLine(ctx.io, `built ${result.bundle}`);
      printLine(ctx.io, `  size    ${kib(result.bytes)} (${result.bytes} bytes)`);
      printLine(ctx.io, `  sha256  ${result.sha256}`);
      printLine(ctx.io, `  external ${result.externals.length === 0 ? "(none)" : result.externals.join(", ")}`);
    });

  pkg
    .command("test")
    .description("run a wrapper package locally on an input file and print its predictions (MLflow JSON)")
    .argument("<dir>", "the package folder")
    .requiredOption("-i, --input <file>", "request file: .json (MLflow or V2 body), .csv, or .jsonl (one row object per line)")
    .addOption(new Option("--format <format>", "output form: json (MLflow predictions) or v2").choices(["json", "v2"]).default("json"))
    .action(async (dir: string, _opts: unknown, cmd: Command) => {
      const o = globals<{ input: string; format: "json" | "v2" }>(cmd);
      const root = path.resolve(ctx.io.cwd, dir);
      await readWrapperManifest(root);
      const input = await readTestInput(path.resolve(ctx.io.cwd, o.input));
      ctx.loadConfig(o);
      if (await wrapperBundleStale(root)) {
        const built = await build(ctx, root);
        ctx.logger.info({ bundle: built.bundle, bytes: built.bytes, sha256: built.sha256 }, "package built (the bundle was missing or older than its source)");
      }
      // A throwaway platform: its own home (SQLite store, artifact folder) removed afterwards, so testing a package
      // never touches the user's registry.
      const home = await fs.mkdtemp(path.join(os.tmpdir(), "mlship-package-test-"));
      try {
        const app = await createMlship(
          defaultConfig({ home, "runtime.workers": 1, "log.level": ctx.config.log.level, user: "mlship-package-test" }),
          { logger: ctx.logger },
        );
        try {
          const name = testModelName(root);
          const record = await registerModel(app, root, { name });
          const result = await app.scoring.score(`${name}@${record.version}`, input, { protocol: "cli" });
          printJson(ctx.io, o.format === "v2" ? formatV2Response(result) : formatMlflowResponse(result));
        } finally {
          await app.close();
        }
      } finally {
        await fs.rm(home, { recursive: true, force: true });
      }
    });

  return pkg;
}
