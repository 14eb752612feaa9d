import type { Tensor } from "../core/index.js";
import type { Manifest, TensorSpec } from "../package/index.js";

/** What a runtime needs to load one model version. */
export interface LoadSpec {
  /** A stable key for this version's artifact (e.g. `name@3#<digest>`); loading the same key twice reuses it. */
  key: string;
  /** Absolute path of the model file (e.g. model.onnx). */
  modelPath: string;
  /** Flavor-specific options (e.g. ONNX session options). */
  options?: Record<string, unknown>;
  /** How many workers load this version (default: every worker); runs go only to those. */
  instances?: number;
  /**
   * The registered version the artifact belongs to: its package folder, manifest and identity. Flavors that need
   * more than the model file (custom wrappers: other files, config, signature) read it from here.
   */
  package?: { root: string; manifest: Manifest; name: string; version: number };
}

export interface RunOptions {
  /** Only these outputs (all when omitted). */
  outputs?: string[];
  signal?: AbortSignal;
}

/**
 * A loaded model version. `run` executes on a worker, except the small runs of a flavor that runs them inline
 * because that is cheaper than the round trip (the ONNX flavor's `inlineMaxMicros`, see onnx/inline.ts).
 */
export interface LoadedModel {
  readonly key: string;
  readonly inputs: TensorSpec[];
  readonly outputs: TensorSpec[];
  run(feeds: Record<string, Tensor>, options?: RunOptions): Promise<Record<string, Tensor>>;
}

/** One flavor of model execution (onnx, later sparkml and custom). Instances are built in app.ts. */
export interface ModelRuntime {
  readonly flavor: string;
  load(spec: LoadSpec): Promise<LoadedModel>;
  /** Frees the version in every worker. Unknown keys are ignored. */
  unload(key: string): Promise<void>;
  close(): Promise<void>;
}
