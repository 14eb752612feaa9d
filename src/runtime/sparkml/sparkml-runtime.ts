/**
 * The sparkml flavor: Spark ML saved model directories scored in TypeScript, inside a pool of worker threads (the
 * stages' math is CPU-bound, like ONNX inference). Same data contract as the ONNX runtime: feeds are validated on
 * the caller's thread against the signature derived from the pipeline's columns, their typed arrays are transferred
 * to a worker, outputs come back as float64 / string tensors.
 */
import { stat } from "node:fs/promises";
import { MlshipError } from "../../core/index.js";
import type { Logger } from "../../core/index.js";
import { WorkerPool, siblingWorkerUrl } from "../pool/index.js";
import { PooledRuntime } from "../pooled-runtime.js";
import type { LoadSpec } from "../types.js";

export interface SparkmlRuntimeOptions {
  /** Worker threads; defaults to `os.availableParallelism()`. */
  workers?: number;
  /** How long `close()` waits for in-flight runs (ms, default 5000). */
  drainTimeoutMs?: number;
  logger?: Logger;
}

/** `load(spec)`: `spec.options.expectClass` (optional) refuses a directory that holds another class. */
export class SparkmlRuntime extends PooledRuntime {
  readonly flavor = "sparkml";

  constructor(options: SparkmlRuntimeOptions = {}) {
    super(
      new WorkerPool({
        workerUrl: siblingWorkerUrl(import.meta.url, "worker"),
        size: options.workers,
        name: "mlship-sparkml",
        drainTimeoutMs: options.drainTimeoutMs,
        logger: options.logger,
      }),
      "the sparkml runtime",
    );
  }

  protected async checkArtifact(spec: LoadSpec): Promise<void> {
    const dir = spec.modelPath;
    try {
      const info = await stat(dir);
      if (!info.isDirectory()) throw new Error("it is not a directory (a Spark ML model is a saved-model folder)");
    } catch (error) {
      const why = (error as NodeJS.ErrnoException).code === "ENOENT" ? "no such directory" : (error as Error).message;
      throw new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", `cannot load Spark ML model ${dir}: ${why}`, { field: dir, cause: error });
    }
  }

  protected describe(path: string): string {
    return `Spark ML model ${path}`;
  }
}

/** A sparkml runtime on a fresh worker pool. Build one per process (in app.ts) and `close()` it on shutdown. */
export function createSparkmlRuntime(options: SparkmlRuntimeOptions = {}): SparkmlRuntime {
  return new SparkmlRuntime(options);
}
