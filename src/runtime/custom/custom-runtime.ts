/**
 * The custom flavor: a model package whose `files.model` is a wrapper bundle (a `ModelWrapper` default export,
 * see wrapper.ts and docs/custom-models.md). Each loaded version runs in a child process of its own
 * (wrapper-process.ts), under Node's permission model; feeds are validated here against the declared signature
 * before they are sent, outputs come back as core Tensors of the declared dtypes (a `content_type: json` output
 * as a string tensor of JSON texts).
 */
import { stat } from "node:fs/promises";
import { MlshipError, silentLogger } from "../../core/index.js";
import type { Logger, Tensor } from "../../core/index.js";
import type { TensorSpec } from "../../package/index.js";
import type { LoadSpec, LoadedModel, ModelRuntime, RunOptions } from "../types.js";
import { validateFeeds, validateOutputNames } from "../validate.js";
import { WrapperProcess } from "./wrapper-process.js";

export interface CustomRuntimeOptions {
  logger?: Logger;
  /** How long unload/close let a wrapper's `close()` run before its process is killed (ms, default 5000). */
  closeGraceMs?: number;
}

export interface CustomProcessStats {
  key: string;
  pid: number | undefined;
  restarts: number;
}

export class CustomRuntime implements ModelRuntime {
  readonly flavor = "custom";
  private readonly logger: Logger;
  private readonly closeGraceMs: number;
  private readonly models = new Map<string, Promise<CustomModel>>();
  /** Every process opened and not yet closed, loading ones included: close() must not wait for a stuck load. */
  private readonly processes = new Set<WrapperProcess>();
  private closed = false;

  constructor(options: CustomRuntimeOptions = {}) {
    this.logger = options.logger ?? silentLogger();
    this.closeGraceMs = options.closeGraceMs ?? 5000;
  }

  load(spec: LoadSpec): Promise<LoadedModel> {
    if (this.closed) {
      return Promise.reject(new MlshipError("MLSHIP_ERR_RUNTIME_UNAVAILABLE", `cannot load ${spec.key}: the custom runtime is closed`));
    }
    const existing = this.models.get(spec.key);
    if (existing !== undefined) return existing;
    // `loading` is read only after open's first await, when it is set.
    const loading: Promise<CustomModel> = this.open(spec, () => this.models.get(spec.key) !== loading);
    this.models.set(spec.key, loading);
    loading.catch(() => {
      if (this.models.get(spec.key) === loading) this.models.delete(spec.key);
    });
    return loading;
  }

  async unload(key: string): Promise<void> {
    const loading = this.models.get(key);
    this.models.delete(key);
    // A version still loading is ended now (its load fails), not after its load finishes or times out (>= 30 s).
    await Promise.all([...this.processes].filter((p) => p.key === key).map((p) => p.close()));
    const model = await loading?.catch(() => undefined);
    await model?.process.close();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.models.clear();
    await Promise.all([...this.processes].map((p) => p.close()));
  }

  /** The child process of each loaded version (tests, diagnostics). */
  async stats(): Promise<CustomProcessStats[]> {
    const out: CustomProcessStats[] = [];
    for (const loading of this.models.values()) {
      const model = await loading.catch(() => undefined);
      if (model !== undefined) out.push({ key: model.key, pid: model.process.pid, restarts: model.process.restarts });
    }
    return out;
  }

  private async open(spec: LoadSpec, unloaded: () => boolean): Promise<CustomModel> {
    if (typeof spec.key !== "string" || spec.key === "") {
      throw new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", "a model load needs a non-empty key", { field: "key" });
    }
    const pkg = spec.package;
    if (pkg === undefined) {
      throw new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", `cannot load ${spec.key}: a custom model is loaded from its package (the load spec has no package)`, { field: "package" });
    }
    try {
      const info = await stat(spec.modelPath);
      if (!info.isFile()) throw new Error("it is not a file");
    } catch (error) {
      const why = (error as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (error as Error).message;
      throw new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", `cannot load the wrapper bundle ${spec.modelPath}: ${why} (run \`mlship package build\` on the package first)`, {
        field: "files.model",
        cause: error,
      });
    }
    // close() or unload() may have run while the bundle was checked: they could not see this process, so none may
    // start now.
    if (this.closed) throw new MlshipError("MLSHIP_ERR_RUNTIME_UNAVAILABLE", `cannot load ${spec.key}: the custom runtime is closed`);
    if (unloaded()) throw new MlshipError("MLSHIP_ERR_RUNTIME_UNAVAILABLE", `cannot load ${spec.key}: it was unloaded while loading`, { retryAfterSeconds: 1 });
    const process: WrapperProcess = new WrapperProcess({
      key: spec.key, root: pkg.root, manifest: pkg.manifest, name: pkg.name, version: pkg.version, logger: this.logger, closeGraceMs: this.closeGraceMs,
      onClose: () => this.processes.delete(process),
    });
    this.processes.add(process);
    await process.open();
    if (this.closed) {
      await process.close();
      throw new MlshipError("MLSHIP_ERR_RUNTIME_UNAVAILABLE", `cannot load ${spec.key}: the custom runtime is closed`);
    }
    return new CustomModel(spec.key, pkg.manifest.signature.inputs, pkg.manifest.signature.outputs, process);
  }
}

class CustomModel implements LoadedModel {
  constructor(
    readonly key: string,
    readonly inputs: TensorSpec[],
    readonly outputs: TensorSpec[],
    readonly process: WrapperProcess,
  ) {}

  async run(feeds: Record<string, Tensor>, options: RunOptions = {}): Promise<Record<string, Tensor>> {
    validateFeeds(this.inputs, feeds);
    validateOutputNames(this.outputs, options.outputs);
    const all = await this.process.run(feeds, options.signal);
    if (options.outputs === undefined) return all;
    const picked: Record<string, Tensor> = {};
    for (const name of options.outputs) {
      const t = all[name];
      if (t !== undefined) picked[name] = t;
    }
    return picked;
  }
}

/** A custom runtime. Build one per process (in app.ts) and `close()` it on shutdown: it ends every wrapper process. */
export function createCustomRuntime(options: CustomRuntimeOptions = {}): CustomRuntime {
  return new CustomRuntime(options);
}
