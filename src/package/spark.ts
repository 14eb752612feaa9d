/**
 * Spark ML saved-model directories as mlship packages (flavor `sparkml`). The directory (`model.save(path)` or
 * `PipelineModel.save(path)`) is copied as it is, minus Hadoop's `.crc` side files, into a folder of the package
 * that `files.model` names; the signature comes from loading the model: one input per pipeline input column, one
 * output per column of the last stage (see `src/runtime/sparkml/types.ts`). A class the sparkml runtime cannot
 * score, at the root or in any pipeline stage, fails the import with the class named.
 */
import { chmod, copyFile, mkdir, readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { MlshipError } from "../core/index.js";
import { loadSparkModel, readSparkMetadata as readMetadata, sparkColumnTensorSpec as tensorSpecOf } from "../runtime/index.js";
import type { Manifest } from "./types.js";
import { pathExists } from "./util.js";

export const SPARKML_FLAVOR = "sparkml";

/** Class name prefixes of Spark ML stages (PySpark's pure-Python pipelines use Python names). */
const SPARK_CLASS_PREFIXES = ["org.apache.spark.ml.", "pyspark.ml."];

/**
 * The `class` in `<dir>/metadata/part-*` when `dir` is a Spark ML saved model, else undefined (not an error:
 * detection tries other kinds next).
 */
export async function sparkModelClass(dir: string): Promise<string | undefined> {
  const metadataDir = path.join(dir, "metadata");
  if (!(await pathExists(metadataDir))) return undefined;
  let names: string[];
  try {
    names = (await readdir(metadataDir)).filter((name) => name.startsWith("part-")).sort();
  } catch {
    return undefined;
  }
  const first = names[0];
  if (first === undefined) return undefined;
  try {
    const text = await readFile(path.join(metadataDir, first), "utf8");
    const line = text.split(/\r?\n/).find((candidate) => candidate.trim() !== "");
    if (line === undefined) return undefined;
    const parsed = JSON.parse(line) as unknown;
    const className = (parsed as { class?: unknown } | null)?.class;
    if (typeof className !== "string") return undefined;
    return SPARK_CLASS_PREFIXES.some((prefix) => className.startsWith(prefix)) ? className : undefined;
  } catch {
    return undefined;
  }
}

/** The package folder name for the copied model directory: its own name when usable, else `spark-model`. */
function artifactFolderName(dir: string): string {
  const base = path.basename(path.resolve(dir));
  return /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(base) && base !== "mlship.yaml" ? base : "spark-model";
}

/** Copies a Spark saved model tree (without `.crc` files) to `dest`. */
export async function copySparkDirectory(src: string, dest: string): Promise<void> {
  await mkdir(dest, { recursive: true });
  for (const entry of await readdir(src, { withFileTypes: true })) {
    if (entry.name.endsWith(".crc")) continue;
    const from = path.join(src, entry.name);
    const to = path.join(dest, entry.name);
    if (entry.isDirectory()) {
      await copySparkDirectory(from, to);
    } else if (entry.isFile()) {
      await copyFile(from, to);
      await chmod(to, 0o644);
    }
  }
}

export interface SparkImportOptions {
  /** Refuse a directory holding another class (fully qualified or the short class name). */
  expectClass?: string;
}

/** Builds the manifest of a Spark ML model and stages its directory under `staging`. */
export async function fromSpark(dir: string, staging: string, options: SparkImportOptions = {}): Promise<Manifest> {
  const model = await loadSparkModel(dir, options.expectClass === undefined ? {} : { expectClass: options.expectClass });
  const folder = artifactFolderName(dir);
  await copySparkDirectory(dir, path.join(staging, folder));
  const metadataLine = await sparkRootMetadata(dir);
  const params: Record<string, string> = { spark_class: model.className };
  if (metadataLine.sparkVersion !== undefined) params.spark_version = metadataLine.sparkVersion;
  if (metadataLine.uid !== undefined) params.spark_uid = metadataLine.uid;
  return {
    format_version: 1,
    flavor: SPARKML_FLAVOR,
    files: { model: folder },
    signature: { inputs: model.inputs.map(tensorSpecOf), outputs: model.outputs.map(tensorSpecOf) },
    preprocess: [],
    postprocess: [],
    metadata: { framework: "spark", created_at: new Date().toISOString(), params },
  };
}

async function sparkRootMetadata(dir: string): Promise<{ sparkVersion?: string; uid?: string }> {
  const metadata = await readMetadata(dir);
  return {
    ...(metadata.sparkVersion === "" ? {} : { sparkVersion: metadata.sparkVersion }),
    ...(metadata.uid === "" ? {} : { uid: metadata.uid }),
  };
}

/**
 * Checks a sparkml package's model folder against its declared signature (re-import of an mlship package): the
 * model must load, and every declared input/output must be one the model has, with the same dtype.
 */
export async function checkSparkSignature(modelDir: string, manifest: Manifest, file: string): Promise<void> {
  const model = await loadSparkModel(modelDir);
  const compare = (declared: Manifest["signature"]["inputs"], actual: Manifest["signature"]["inputs"], kind: string): void => {
    for (const spec of declared) {
      const found = actual.find((candidate) => candidate.name === spec.name);
      if (found === undefined || found.dtype !== spec.dtype) {
        throw new MlshipError(
          "MLSHIP_ERR_PACKAGE_INVALID",
          `${file}: ${kind} ${JSON.stringify(spec.name)} ${found === undefined ? "is not a column of" : `is ${spec.dtype} here but ${found.dtype} in`} the Spark model ${modelDir} at signature.${kind}s`,
          { field: `signature.${kind}s` },
        );
      }
    }
  };
  compare(manifest.signature.inputs, model.inputs.map(tensorSpecOf), "input");
  compare(manifest.signature.outputs, model.outputs.map(tensorSpecOf), "output");
  for (const column of model.inputs) {
    if (!manifest.signature.inputs.some((spec) => spec.name === column.name)) {
      throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${file}: the Spark model's input column ${JSON.stringify(column.name)} is missing from the signature at signature.inputs`, {
        field: "signature.inputs",
      });
    }
  }
}
