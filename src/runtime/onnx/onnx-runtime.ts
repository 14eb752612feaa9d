/**
 * The ONNX flavor: onnxruntime-node sessions inside a pool of worker threads.
 *
 * Data contract of `LoadedModel.run`:
 * - feeds are validated against the model's inputs on the caller's thread (INPUT_MISSING / _DTYPE / _SHAPE /
 *   _INVALID naming the input) before anything is posted to a worker;
 * - the typed arrays of the feeds are transferred to the worker, so they are detached (length 0) once `run`
 *   returns: copy them first if you need them again (string tensors are copied, not moved);
 * - outputs come back as core Tensors in ORT's own storage: int64 stays a BigInt64Array, bool a Uint8Array of
 *   0/1, float16 raw Uint16 bits. Turning them into JSON numbers is the protocol layer's job (`tensorToList`).
 */
import { stat } from "node:fs/promises";
import { MlshipError, isMlshipError } from "../../core/index.js";
import type { Logger, Tensor } from "../../core/index.js";
import type { TensorSpec } from "../../package/index.js";
import { WorkerPool, siblingWorkerUrl } from "../pool/index.js";
import type { PoolStats } from "../pool/index.js";
import type { LoadSpec, LoadedModel, ModelRuntime, RunOptions } from "../types.js";
import { validateFeeds, validateOutputNames } from "../validate.js";
import type { OnnxWorkerData } from "./worker.js";

export interface OnnxRuntimeOptions {
  /** Worker threads; defaults to `os.availableParallelism()`. */
  workers?: number;
  /** ORT intra-op threads per worker session (default 1: the pool already uses every core). */
  intraOpThreads?: number;
  /** ORT inter-op threads per worker session (default 1; more than 1 runs independent graph branches in parallel). */
  interOpThreads?: number;
  /** How long `close()` waits for in-flight runs (ms, default 5000). */
  drainTimeoutMs?: number;
  logger?: Logger;
}

export class OnnxRuntime implements ModelRuntime {
  readonly flavor = "onnx";
  private readonly pool: WorkerPool;
  private readonly models = new Map<string, Promise<LoadedModel>>();

  constructor(options: OnnxRuntimeOptions = {}) {
    const intraOpThreads = options.intraOpThreads ?? 1;
    if (!Number.isInteger(intraOpThreads) || intraOpThreads < 1) {
      throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `intraOpThreads must be a positive integer, got ${String(intraOpThreads)}`, {
        field: "intraOpThreads",
      });
    }
    const interOpThreads = options.interOpThreads ?? 1;
    if (!Number.isInteger(interOpThreads) || interOpThreads < 1) {
      throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `interOpThreads must be a positive integer, got ${String(interOpThreads)}`, {
        field: "interOpThreads",
      });
    }
    const workerData: OnnxWorkerData = { intraOpThreads, interOpThreads };
    this.pool = new WorkerPool({
      workerUrl: siblingWorkerUrl(import.meta.url, "worker"),
      size: options.workers,
      name: "mlship-onnx",
      workerData,
      drainTimeoutMs: options.drainTimeoutMs,
      logger: options.logger,
    });
  }

  /**
   * Loads `spec.modelPath` in every worker. `spec.options` are onnxruntime `SessionOptions` and override the
   * defaults (intraOpNumThreads, interOpNumThreads 1, executionMode sequential, graphOptimizationLevel all,
   * logSeverityLevel 4: errors come back in the rejection instead of being printed).
   */
  load(spec: LoadSpec): Promise<LoadedModel> {
    if (this.pool.closed) {
      return Promise.reject(new MlshipError("MLSHIP_ERR_RUNTIME_UNAVAILABLE", `cannot load ${spec.key}: the ONNX runtime is closed`));
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

  /** Per-worker in-flight and completed run counts, for metrics. */
  stats(): PoolStats {
    return this.pool.stats();
  }

  /** Kills one worker as a crash would (tests, recycling); a replacement starts and re-loads every model. */
  terminateWorker(index: number): Promise<void> {
    return this.pool.terminateWorker(index);
  }

  private async loadNew(spec: LoadSpec): Promise<LoadedModel> {
    if (typeof spec.key !== "string" || spec.key === "") {
      throw new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", "a model load needs a non-empty key", { field: "key" });
    }
    const path = spec.modelPath;
    try {
      const info = await stat(path);
      if (!info.isFile()) throw new Error("it is not a file");
    } catch (error) {
      const why = (error as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (error as Error).message;
      throw new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", `cannot load model file ${path}: ${why}`, { field: path, cause: error });
    }
    if (spec.options !== undefined) {
      try {
        structuredClone(spec.options);
      } catch (error) {
        throw new MlshipError(
          "MLSHIP_ERR_RUNTIME_LOAD",
          `cannot load model file ${path}: its session options must be plain data (${(error as Error).message})`,
          { field: "options", cause: error },
        );
      }
    }
    try {
      const signature = await this.pool.load(spec);
      return new OnnxModel(spec.key, signature.inputs, signature.outputs, this.pool);
    } catch (error) {
      if (isMlshipError(error)) throw error;
      throw new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", `cannot load model file ${path}: ${String(error)}`, { field: path, cause: error });
    }
  }
}

class OnnxModel implements LoadedModel {
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

/** An ONNX runtime on a fresh worker pool. Build one per process (in app.ts) and `close()` it on shutdown. */
export function createOnnxRuntime(options: OnnxRuntimeOptions = {}): OnnxRuntime {
  return new OnnxRuntime(options);
}
