/**
 * The sparkml flavor: Spark ML saved model directories scored in TypeScript, inside a pool of worker threads (the
 * stages' math is CPU-bound, like ONNX inference). Same data contract as the ONNX runtime: feeds are validated on
 * the caller's thread against the signature derived from the pipeline's columns, their typed arrays are transferred
 * to a worker, outputs come back as float64 / string tensors.
 */
import { stat } from "node:fs/promises";
import { MlshipError, isMlshipError } from "../../core/index.js";
import type { Logger, Tensor } from "../../core/index.js";
import type { TensorSpec } from "../../package/index.js";
import { WorkerPool, siblingWorkerUrl } from "../pool/index.js";
import type { PoolStats } from "../pool/index.js";
import type { LoadSpec, LoadedModel, ModelRuntime, RunOptions } from "../types.js";
import { validateFeeds, validateOutputNames } from "../validate.js";

export interface SparkmlRuntimeOptions {
  /** Worker threads; defaults to `os.availableParallelism()`. */
  workers?: number;
  /** How long `close()` waits for in-flight runs (ms, default 5000). */
  drainTimeoutMs?: number;
  logger?: Logger;
}

export class SparkmlRuntime implements ModelRuntime {
  readonly flavor = "sparkml";
  private readonly pool: WorkerPool;
  private readonly models = new Map<string, Promise<LoadedModel>>();

  constructor(options: SparkmlRuntimeOptions = {}) {
    this.pool = new WorkerPool({
      workerUrl: siblingWorkerUrl(import.meta.url, "worker"),
      size: options.workers,
      name: "mlship-sparkml",
      drainTimeoutMs: options.drainTimeoutMs,
      logger: options.logger,
    });
  }

  /**
   * Loads the Spark saved model directory `spec.modelPath` in the workers. `spec.options.expectClass` (optional)
   * refuses a directory that holds another class.
   */
  load(spec: LoadSpec): Promise<LoadedModel> {
    if (this.pool.closed) {
      return Promise.reject(new MlshipError("MLSHIP_ERR_RUNTIME_UNAVAILABLE", `cannot load ${spec.key}: the sparkml runtime is closed`));
    }
    const existing = this.models.get(spec.key);
    if (existing !== undefined) return existing;
    const loading = this.loadNew(spec);
    this.models.set(spec.key, loading);
    loading.catch(() => {
      if (this.models.get(spec.key) === loading) this.models.delete(spec.key);
    });
    return loading;
  }

  async unload(key: string): Promise<void> {
    this.models.delete(key);
    await this.pool.unload(key);
  }

  close(): Promise<void> {
    this.models.clear();
    return this.pool.close();
  }

  stats(): PoolStats {
    return this.pool.stats();
  }

  private async loadNew(spec: LoadSpec): Promise<LoadedModel> {
    if (typeof spec.key !== "string" || spec.key === "") {
      throw new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", "a model load needs a non-empty key", { field: "key" });
    }
    const dir = spec.modelPath;
    try {
      const info = await stat(dir);
      if (!info.isDirectory()) throw new Error("it is not a directory (a Spark ML model is a saved-model folder)");
    } catch (error) {
      const why = (error as NodeJS.ErrnoException).code === "ENOENT" ? "no such directory" : (error as Error).message;
      throw new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", `cannot load Spark ML model ${dir}: ${why}`, { field: dir, cause: error });
    }
    try {
      const signature = await this.pool.load(spec);
      return new SparkmlModel(spec.key, signature.inputs, signature.outputs, this.pool);
    } catch (error) {
      if (isMlshipError(error)) throw error;
      throw new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", `cannot load Spark ML model ${dir}: ${String(error)}`, { field: dir, cause: error });
    }
  }
}

class SparkmlModel implements LoadedModel {
  constructor(
    readonly key: string,
    readonly inputs: TensorSpec[],
    readonly outputs: TensorSpec[],
    private readonly pool: WorkerPool,
  ) {}

  run(feeds: Record<string, Tensor>, options: RunOptions = {}): Promise<Record<string, Tensor>> {
    try {
      validateFeeds(this.inputs, feeds);
      validateOutputNames(this.outputs, options.outputs);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.pool.run(this.key, feeds, options);
  }
}

/** A sparkml runtime on a fresh worker pool. Build one per process (in app.ts) and `close()` it on shutdown. */
export function createSparkmlRuntime(options: SparkmlRuntimeOptions = {}): SparkmlRuntime {
  return new SparkmlRuntime(options);
}
