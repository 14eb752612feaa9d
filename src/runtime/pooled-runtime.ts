/**
 * What every flavor that runs on the worker pool shares: one load per version key (concurrent callers share it), a
 * checked artifact before the workers see it, feeds validated on the caller's thread before they are posted, unload,
 * drain on close. A flavor says how its artifact is checked and named; its worker script does the rest.
 */
import { MlshipError, isMlshipError } from "../core/index.js";
import type { Tensor } from "../core/index.js";
import type { TensorSpec } from "../package/index.js";
import type { PoolStats, WorkerPool } from "./pool/index.js";
import type { Outputs } from "./pool/index.js";
import type { LoadSpec, LoadedModel, ModelRuntime, RunOptions } from "./types.js";
import { validateFeeds, validateOutputNames } from "./validate.js";

/**
 * A version's session on the caller's own thread, for the runs it finishes faster than a worker round trip costs
 * (the ONNX flavor's small models, see onnx/inline.ts). Runs it does not accept go to the workers.
 */
export interface InlineRunner {
  /** Whether a run of `rows` rows (the feeds' first dimension) should run here. */
  accepts(rows: number): boolean;
  run(feeds: Record<string, Tensor>, outputs: readonly string[] | undefined): Promise<Outputs>;
  release(): Promise<void>;
}

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

  /** An inline runner for a loaded version, when the flavor offers one and the version suits it. Never throws. */
  protected openInline(_spec: LoadSpec, _inputs: readonly TensorSpec[], _outputs: readonly TensorSpec[]): Promise<InlineRunner | undefined> {
    return Promise.resolve(undefined);
  }

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
    const model = this.#models.get(key);
    this.#models.delete(key);
    await this.pool.unload(key);
    await releaseInline(model);
  }

  async close(): Promise<void> {
    const models = [...this.#models.values()];
    this.#models.clear();
    await this.pool.close();
    for (const model of models) await releaseInline(model);
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
      const inline = await this.openInline(spec, signature.inputs, signature.outputs);
      return new PooledModel(spec.key, signature.inputs, signature.outputs, this.pool, inline);
    } catch (error) {
      if (isMlshipError(error)) throw error;
      throw new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", `cannot load ${this.describe(spec.modelPath)}: ${String(error)}`, {
        field: spec.modelPath,
        cause: error,
      });
    }
  }
}

async function releaseInline(model: Promise<LoadedModel> | undefined): Promise<void> {
  const loaded = await model?.catch(() => undefined);
  if (loaded instanceof PooledModel) await loaded.inline?.release().catch(() => undefined);
}

/** Rows of a run: the first dimension of its first feed (1 for a scalar). */
function rowsOf(feeds: Record<string, Tensor>): number {
  for (const name in feeds) {
    const shape = (feeds[name] as Tensor).shape;
    return shape.length === 0 ? 1 : (shape[0] as number);
  }
  return 1;
}

class PooledModel implements LoadedModel {
  constructor(
    readonly key: string,
    readonly inputs: TensorSpec[],
    readonly outputs: TensorSpec[],
    private readonly pool: WorkerPool,
    readonly inline: InlineRunner | undefined,
  ) {}

  run(feeds: Record<string, Tensor>, options: RunOptions = {}): Promise<Record<string, Tensor>> {
    try {
      validateFeeds(this.inputs, feeds);
      validateOutputNames(this.outputs, options.outputs);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.inline !== undefined && options.signal?.aborted !== true && this.inline.accepts(rowsOf(feeds))) {
      return this.inline.run(feeds, options.outputs);
    }
    return this.pool.run(this.key, feeds, options);
  }
}
