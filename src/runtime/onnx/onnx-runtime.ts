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
import { MlshipError } from "../../core/index.js";
import type { Logger } from "../../core/index.js";
import { WorkerPool, siblingWorkerUrl } from "../pool/index.js";
import { PooledRuntime } from "../pooled-runtime.js";
import type { InlineRunner } from "../pooled-runtime.js";
import type { TensorSpec } from "../../package/index.js";
import type { LoadSpec } from "../types.js";
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
  /**
   * Runs estimated (by a calibration at load) to take at most this many microseconds execute on the caller's
   * thread instead of a worker, where the round trip would cost more than the run (see inline.ts). Default 0: off.
   */
  inlineMaxMicros?: number;
  logger?: Logger;
}

/**
 * `load(spec)` loads `spec.modelPath` in every worker. `spec.options` are onnxruntime `SessionOptions` and override
 * the defaults (intraOpNumThreads, interOpNumThreads 1, executionMode sequential, graphOptimizationLevel all,
 * logSeverityLevel 4: errors come back in the rejection instead of being printed).
 */
export class OnnxRuntime extends PooledRuntime {
  readonly flavor = "onnx";
  readonly #inlineMaxMicros: number;
  readonly #logger: Logger | undefined;

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
    super(
      new WorkerPool({
        workerUrl: siblingWorkerUrl(import.meta.url, "worker"),
        size: options.workers,
        name: "mlship-onnx",
        workerData,
        drainTimeoutMs: options.drainTimeoutMs,
        logger: options.logger,
      }),
      "the ONNX runtime",
    );
    const inlineMaxMicros = options.inlineMaxMicros ?? 0;
    if (!Number.isFinite(inlineMaxMicros) || inlineMaxMicros < 0) {
      throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `inlineMaxMicros must be a non-negative number, got ${String(inlineMaxMicros)}`, {
        field: "inlineMaxMicros",
      });
    }
    this.#inlineMaxMicros = inlineMaxMicros;
    this.#logger = options.logger;
  }

  protected override async openInline(spec: LoadSpec, inputs: readonly TensorSpec[], outputs: readonly TensorSpec[]): Promise<InlineRunner | undefined> {
    // Restricted to some workers (`instances`), a version is meant to stay off the others: keep it off this thread too.
    if (this.#inlineMaxMicros <= 0 || spec.instances !== undefined) return undefined;
    // Loaded on first use, so a process that runs no ONNX model inline never loads onnxruntime on its main thread.
    const { openInline } = await import("./inline.js");
    return openInline(spec, inputs, outputs, { maxMicros: this.#inlineMaxMicros, logger: this.#logger });
  }

  protected async checkArtifact(spec: LoadSpec): Promise<void> {
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
  }

  protected describe(path: string): string {
    return `model file ${path}`;
  }
}

/** An ONNX runtime on a fresh worker pool. Build one per process (in app.ts) and `close()` it on shutdown. */
export function createOnnxRuntime(options: OnnxRuntimeOptions = {}): OnnxRuntime {
  return new OnnxRuntime(options);
}
