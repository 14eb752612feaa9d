/**
 * What every flavor that runs on the worker pool shares: one load per version key (concurrent callers share it), a
 * checked artifact before the workers see it, feeds validated on the caller's thread before they are posted, unload,
 * drain on close. A flavor says how its artifact is checked and named; its worker script does the rest.
 */
import { MlshipError, isMlshipError } from "../core/index.js";
import type { Tensor } from "../core/index.js";
import type { TensorSpec } from "../package/index.js";
import type { PoolStats, WorkerPool } from "./pool/index.js";
import type { LoadSpec, LoadedModel, ModelRuntime, RunOptions } from "./types.js";
import { validateFeeds, validateOutputNames } from "./validate.js";

export abstract class PooledRuntime implements ModelRuntime {
  abstract readonly flavor: string;
  readonly #models = new Map<string, Promise<LoadedModel>>();

  protected constructor(
    protected readonly pool: WorkerPool,
    /** For messages: `the ONNX runtime`, `the sparkml runtime`. */
    private readonly runtimeName: string,
  ) {}

  /** Checks `spec` (the artifact exists and has the right kind) before any worker loads it; throws MLSHIP_ERR_RUNTIME_LOAD. */
  protected abstract checkArtifact(spec: LoadSpec): Promise<void>;

  /** How messages name the artifact: `model file /x/model.onnx`, `Spark ML model /x/model`. */
  protected abstract describe(path: string): string;

  load(spec: LoadSpec): Promise<LoadedModel> {
    if (this.pool.closed) {
      return Promise.reject(new MlshipError("MLSHIP_ERR_RUNTIME_UNAVAILABLE", `cannot load ${spec.key}: ${this.runtimeName} is closed`));
    }
    const existing = this.#models.get(spec.key);
    if (existing !== undefined) return existing;
    const loading = this.#loadNew(spec);
    this.#models.set(spec.key, loading);
    loading.catch(() => {
      if (this.#models.get(spec.key) === loading) this.#models.delete(spec.key);
    });
    return loading;
  }

  async unload(key: string): Promise<void> {
    this.#models.delete(key);
    await this.pool.unload(key);
  }

  close(): Promise<void> {
    this.#models.clear();
    return this.pool.close();
  }

  /** Per-worker in-flight and completed run counts, for metrics. */
  stats(): PoolStats {
    return this.pool.stats();
  }

  /** Kills one worker as a crash would (tests, recycling); a replacement starts and re-loads every model. */
  terminateWorker(index: number): Promise<void> {
    return this.pool.terminateWorker(index);
  }

  async #loadNew(spec: LoadSpec): Promise<LoadedModel> {
    if (typeof spec.key !== "string" || spec.key === "") {
      throw new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", "a model load needs a non-empty key", { field: "key" });
    }
    await this.checkArtifact(spec);
    try {
      const signature = await this.pool.load(spec);
      return new PooledModel(spec.key, signature.inputs, signature.outputs, this.pool);
    } catch (error) {
      if (isMlshipError(error)) throw error;
      throw new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", `cannot load ${this.describe(spec.modelPath)}: ${String(error)}`, {
        field: spec.modelPath,
        cause: error,
      });
    }
  }
}

class PooledModel implements LoadedModel {
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
