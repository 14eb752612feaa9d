/**
 * Loading a Spark ML saved model directory as one `SparkModel`: the root metadata's `class` picks the loader (any
 * class the feature, linear, tree or pipeline loaders know); nested pipeline stages go through the same lookup, so
 * an unsupported stage anywhere is refused with its class and directory named.
 */
import path from "node:path";
import { MlshipError, isMlshipError } from "../../core/index.js";
import { featureLoaders } from "./features.js";
import { readMetadata, makeStageContext } from "./io.js";
import { linearLoaders } from "./linear.js";
import { pipelineLoaders } from "./pipeline.js";
import { treeLoaders } from "./trees.js";
import type { ColumnInfo, LoadedStage, StageLoaders } from "./types.js";

/** Every class the sparkml flavor loads: the fully qualified Spark class name -> its loader. */
export const sparkStageLoaders: StageLoaders = {
  ...featureLoaders,
  ...linearLoaders,
  ...treeLoaders,
  ...pipelineLoaders,
};

/** The supported class names, sorted (for errors and docs). */
export function supportedSparkClasses(): string[] {
  return Object.keys(sparkStageLoaders).sort();
}

export interface SparkModel {
  /** The root stage's class (`org.apache.spark.ml.PipelineModel`, `...LogisticRegressionModel`, ...). */
  readonly className: string;
  readonly stage: LoadedStage;
  /** The columns a request must supply: read by some stage and written by no earlier one. */
  readonly inputs: ColumnInfo[];
  /** The last stage's output columns. */
  readonly outputs: ColumnInfo[];
}

export interface LoadSparkModelOptions {
  /** Refuse a directory holding another class (fully qualified, or the short name `LogisticRegressionModel`). */
  expectClass?: string;
}

function shortName(className: string): string {
  return className.split(".").at(-1) ?? className;
}

function classMatches(found: string, expected: string): boolean {
  return expected.includes(".") ? found === expected : shortName(found) === expected;
}

/** Loads the stage saved in `dir` (and, for a pipeline, its stages) with the loader of its metadata class. */
export async function loadSparkStage(dir: string, loaders: StageLoaders = sparkStageLoaders): Promise<LoadedStage> {
  const metadata = await readMetadata(dir);
  const loader = loaders[metadata.class];
  if (loader === undefined) {
    throw new MlshipError(
      "MLSHIP_ERR_PACKAGE_UNSUPPORTED",
      `Spark ML class ${metadata.class} (in ${dir}) is not supported by the sparkml flavor; see docs/sparkml.md for the supported classes`,
      { field: dir, details: { class: metadata.class, dir } },
    );
  }
  const context = makeStageContext(dir, metadata, (child) => loadSparkStage(path.resolve(dir, child), loaders));
  try {
    return await loader(context);
  } catch (error) {
    if (isMlshipError(error)) throw error;
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `cannot load Spark ML ${shortName(metadata.class)} from ${dir}: ${(error as Error).message}`, {
      field: dir,
      cause: error,
      details: { class: metadata.class, dir },
    });
  }
}

/**
 * Loads a Spark ML saved model directory (`model.save(path)` or `PipelineModel.save(path)`). With `expectClass`,
 * a directory holding another class is refused before anything else is read.
 */
export async function loadSparkModel(dir: string, options: LoadSparkModelOptions = {}): Promise<SparkModel> {
  const root = path.resolve(dir);
  if (options.expectClass !== undefined) {
    const metadata = await readMetadata(root);
    if (!classMatches(metadata.class, options.expectClass)) {
      throw new MlshipError(
        "MLSHIP_ERR_PACKAGE_UNSUPPORTED",
        `expected ${options.expectClass}, found ${options.expectClass.includes(".") ? metadata.class : shortName(metadata.class)} in ${root}`,
        { field: root, details: { expected: options.expectClass, found: metadata.class, dir: root } },
      );
    }
  }
  const stage = await loadSparkStage(root);
  const inputs = stage.inputs.map((column) => ({ ...column }));
  const outputs = stage.outputs.map((column) => ({ ...column }));
  if (inputs.length === 0) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_UNSUPPORTED", `Spark ML ${shortName(stage.className)} in ${root} reads no input columns, so it cannot be scored`, {
      field: root,
    });
  }
  if (outputs.length === 0) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_UNSUPPORTED", `Spark ML ${shortName(stage.className)} in ${root} produces no output columns`, {
      field: root,
    });
  }
  // An output with an input's name would shadow the request's column in the signature; Spark itself refuses that.
  const inputNames = new Set(inputs.map((column) => column.name));
  for (const column of outputs) {
    if (inputNames.has(column.name)) {
      throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `Spark ML model in ${root}: output column '${column.name}' is also an input column`, {
        field: root,
      });
    }
  }
  return { className: stage.className, stage, inputs, outputs };
}
