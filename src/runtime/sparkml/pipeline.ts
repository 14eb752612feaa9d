/**
 * `PipelineModel` (`../shared/docs/sparkml-format.md` §8): `stages/<idx>_<uid>/` directories, each a saved stage,
 * applied in the order of `paramMap.stageUids`. The pipeline reads the columns some stage reads and no earlier
 * stage writes, and offers the last stage's outputs (every stage's columns are still added to the frame, as Spark
 * does).
 */
import { readdir } from "node:fs/promises";
import path from "node:path";
import { MlshipError } from "../../core/index.js";
import type { ColumnInfo, Frame, LoadedStage, StageContext, StageLoader } from "./types.js";

export const PIPELINE_MODEL_CLASS = "org.apache.spark.ml.PipelineModel";
/** PySpark's pure-Python pipelines (§8) write this name with the same layout. */
export const PYSPARK_PIPELINE_MODEL_CLASS = "pyspark.ml.pipeline.PipelineModel";

export class PipelineStage implements LoadedStage {
  readonly inputs: readonly ColumnInfo[];
  readonly outputs: readonly ColumnInfo[];

  constructor(
    readonly className: string,
    readonly uid: string,
    readonly stages: readonly LoadedStage[],
  ) {
    this.inputs = pipelineInputs(stages);
    this.outputs = stages.at(-1)?.outputs ?? [];
  }

  transform(frame: Frame): Frame {
    let current = frame;
    for (const stage of this.stages) current = stage.transform(current);
    return current;
  }
}

/** Every column a stage adds to the frame (a nested pipeline adds all its stages' columns). */
export function columnsWritten(stage: LoadedStage): ColumnInfo[] {
  if (stage instanceof PipelineStage) return stage.stages.flatMap(columnsWritten);
  return [...stage.outputs];
}

/** Walks the stages in order: a column read before any stage wrote it is an input of the whole pipeline. */
export function pipelineInputs(stages: readonly LoadedStage[]): ColumnInfo[] {
  const written = new Set<string>();
  const inputs = new Map<string, ColumnInfo>();
  for (const stage of stages) {
    for (const input of stage.inputs) {
      if (written.has(input.name)) continue;
      const known = inputs.get(input.name);
      // Two stages may read the same raw column; keep the more specific description (a vector size).
      if (known === undefined) inputs.set(input.name, { ...input });
      else if (known.size === undefined && input.size !== undefined) known.size = input.size;
    }
    for (const output of columnsWritten(stage)) written.add(output.name);
  }
  return [...inputs.values()];
}

export const pipelineLoader: StageLoader = async (context: StageContext) => {
  const { dir, metadata } = context;
  const stageUids = context.param<unknown>("stageUids");
  if (!Array.isArray(stageUids) || !stageUids.every((uid) => typeof uid === "string")) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `Spark PipelineModel in ${dir}: paramMap.stageUids is missing or not a list of strings`, {
      field: dir,
    });
  }
  const stagesDir = path.join(dir, "stages");
  let names: string[] = [];
  if (stageUids.length > 0) {
    try {
      names = await readdir(stagesDir);
    } catch (error) {
      // No stages folder at all: the per-stage error below names the first missing stage.
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
        throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `Spark PipelineModel in ${dir}: cannot list ${stagesDir} (${(error as Error).message})`, {
          field: stagesDir,
          cause: error,
        });
      }
    }
  }
  const stages: LoadedStage[] = [];
  for (const [index, uid] of (stageUids as string[]).entries()) {
    // `<idx>_<uid>` with idx zero-padded to the stage count's digits; match the index numerically to accept any padding.
    const name = names.find((candidate) => {
      const match = /^(\d+)_(.*)$/.exec(candidate);
      return match !== null && Number(match[1]) === index && match[2] === uid;
    });
    if (name === undefined) {
      throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `Spark PipelineModel in ${dir}: no directory for stage ${index} (${uid}) in ${stagesDir}`, {
        field: stagesDir,
      });
    }
    stages.push(await context.loadStage(path.join(stagesDir, name)));
  }
  return new PipelineStage(metadata.class, metadata.uid, stages);
};

export const pipelineLoaders = {
  [PIPELINE_MODEL_CLASS]: pipelineLoader,
  [PYSPARK_PIPELINE_MODEL_CLASS]: pipelineLoader,
} as const;
