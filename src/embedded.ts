/**
 * The "model inside your web server" pattern: `loadModel(ref | path)` gives an object whose `predict` runs the
 * same scoring pipeline as the server (validation, pre/post-processing, worker-thread inference) in any Node app.
 */
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { MlshipError, type Logger, type Tensor } from "./core/index.js";
import { defaultConfig, loadConfig, type MlshipConfig } from "./config/index.js";
import { MANIFEST_FILE, importModel, loadPackage, type ModelPackage } from "./package/index.js";
import {
  parseModelRef,
  type AliasEvent,
  type ModelRecord,
  type Registry,
  type ResolvedVersion,
  type VersionRecord,
} from "./registry/index.js";
import { createCustomRuntime, createOnnxRuntime, type ModelRuntime } from "./runtime/index.js";
import { digestDirectory } from "./store/index.js";
import {
  createScoringService,
  formatMlflowResponse,
  type ModelMetadata,
  type PublicSignature,
  type ScoreResult,
  type ScoringInput,
  type ScoringService,
} from "./scoring/index.js";
import { createMlship, startPredictionLog, type Mlship } from "./app.js";

/** A row keyed by column name (tabular models) or input name. */
export type PredictRecord = Record<string, unknown>;
/** MLflow `dataframe_split` without the wrapper: column names and rows of values. */
export interface PredictTable {
  columns: string[];
  data: unknown[][];
}
export type PredictTensors = Record<string, Tensor>;
export type PredictInput = readonly PredictRecord[] | PredictTable | PredictTensors;

export interface PredictOptions {
  /** Only these outputs. */
  outputs?: string[];
  signal?: AbortSignal;
  /** The id the prediction is logged under (default: a new one, returned in `ScoreResult.requestId`). */
  requestId?: string;
  /** Business key, logged with the prediction; outcomes may name it instead of the request id. */
  key?: string;
}

export interface EmbeddedModel {
  /** Model name (for a path: `options.name`, else the file or folder name). */
  readonly name: string;
  /** The version loaded first (an alias may move later; `predict` follows it). */
  readonly version: number;
  /** The reference `predict` resolves (per call, so alias moves are followed). */
  readonly ref: string;
  /** The tensors the model takes and returns (image inputs appear as BYTES), as of load time. */
  readonly signature: PublicSignature;
  /** Declared input columns (tabular models), in order. */
  readonly columns: readonly string[] | undefined;
  /** One object per row, e.g. `[{probabilities: [0.02, 0.98], label: 1}]`. */
  predict(input: readonly PredictRecord[] | PredictTable, options?: PredictOptions): Promise<PredictRecord[]>;
  /** Typed tensors in, typed tensors out (int64 stays BigInt64Array). */
  predict(input: PredictTensors, options?: PredictOptions): Promise<Record<string, Tensor>>;
  /** The full result: outputs as tensors, which version answered, latency. */
  score(input: PredictInput, options?: PredictOptions): Promise<ScoreResult>;
  /** Current metadata (follows alias moves). */
  metadata(): Promise<ModelMetadata>;
  /** Frees the workers (and whatever loadModel opened). Idempotent. */
  close(): Promise<void>;
}

export interface LoadModelOptions {
  /** Configuration for registry references; default `loadConfig()` (mlship.config.yaml ► MLSHIP_* env). */
  config?: MlshipConfig;
  /** Use this platform instead of building one (then `close()` leaves it open). */
  app?: Mlship;
  /** Name for a model loaded from a path. */
  name?: string;
  /** Worker threads (default: config `runtime.workers` for references, 1 for a path). */
  workers?: number;
  /**
   * Log every prediction of a registry reference to the metadata store, so outcomes can be joined to them (config
   * `feedback.log`, default on). Only when loadModel builds the platform itself; with `app`, start the log with
   * `startPredictionLog(app)` or `startFeedbackLoop(app)`. Models loaded from a path have no store and are not
   * logged.
   */
  log?: boolean;
  logger?: Logger;
}

function isTensor(value: unknown): value is Tensor {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as { dtype?: unknown }).dtype === "string" &&
    Array.isArray((value as { shape?: unknown }).shape) &&
    "data" in value
  );
}

/** Which scoring input a `predict` argument is. */
export function toScoringInput(input: PredictInput): ScoringInput {
  if (Array.isArray(input)) return { kind: "records", records: input };
  const obj = input as Record<string, unknown>;
  if (Array.isArray(obj.columns) && Array.isArray(obj.data)) {
    return { kind: "mlflow", body: { dataframe_split: { columns: obj.columns, data: obj.data } } };
  }
  const values = Object.values(obj);
  if (values.length > 0 && values.every(isTensor)) return { kind: "tensors", feeds: input as PredictTensors };
  throw new MlshipError(
    "MLSHIP_ERR_INPUT_INVALID",
    "predict() takes an array of records, {columns, data}, or an object of tensors ({dtype, shape, data})",
    { field: "input" },
  );
}

async function isPathLike(target: string): Promise<boolean> {
  if (target.startsWith("models:/")) return false;
  if (/^(\.{1,2}[\\/]|[\\/]|~[\\/])/.test(target) || target.toLowerCase().endsWith(".onnx")) return true;
  return fs.stat(target).then(
    () => true,
    () => false,
  );
}

/**
 * Loads a model for in-process prediction. `target` is a registry reference (`name`, `name@3`, `name@production`,
 * `models:/name@production`; resolved in MLSHIP_HOME / MLSHIP_STORE) or a path: an mlship package folder, an
 * MLflow model folder or a `.onnx` file, used directly without any registry.
 */
export async function loadModel(target: string, options: LoadModelOptions = {}): Promise<EmbeddedModel> {
  if (await isPathLike(target)) return loadFromPath(path.resolve(target.replace(/^~(?=[\\/])/, os.homedir())), options);
  return loadFromRegistry(target, options);
}

async function loadFromRegistry(ref: string, options: LoadModelOptions): Promise<EmbeddedModel> {
  parseModelRef(ref);
  let owned: Mlship | undefined;
  let app = options.app;
  if (app === undefined) {
    const base = options.config ?? loadConfig();
    const config =
      options.workers === undefined
        ? base
        : defaultConfig({
            home: base.home,
            store: base.store,
            artifacts: base.artifacts,
            "runtime.workers": options.workers,
            "runtime.intraOpThreads": base.runtime.intraOpThreads,
            "log.level": base.log.level,
            user: base.user,
          });
    owned = await createMlship(config, options.logger === undefined ? {} : { logger: options.logger });
    app = owned;
  }
  const predictionLog = owned !== undefined && options.log !== false ? await startPredictionLog(owned) : undefined;
  const cleanup = async (): Promise<void> => {
    // Flushed before the store closes: rows it cannot write go to spill files, replayed by the next run.
    await predictionLog?.close();
    await owned?.close();
  };
  try {
    return await embed(app.scoring, ref, cleanup);
  } catch (error) {
    await cleanup();
    throw error;
  }
}

async function loadFromPath(target: string, options: LoadModelOptions): Promise<EmbeddedModel> {
  const stat = await fs.stat(target).catch(() => undefined);
  if (stat === undefined) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_NOT_FOUND", `model path ${target} does not exist`, { field: target });
  }
  let temp: string | undefined;
  let pkg: ModelPackage;
  try {
    if (stat.isDirectory() && (await fs.stat(path.join(target, MANIFEST_FILE)).catch(() => undefined)) !== undefined) {
      pkg = await loadPackage(target);
    } else {
      // A .onnx file or an MLflow folder becomes a package in a private temp folder, removed on close().
      temp = await fs.mkdtemp(path.join(os.tmpdir(), "mlship-model-"));
      pkg = await importModel(target, { stagingDir: path.join(temp, "package") });
    }
  } catch (error) {
    if (temp !== undefined) await fs.rm(temp, { recursive: true, force: true });
    throw error;
  }
  const name = sanitizeName(options.name ?? path.basename(target).replace(/\.onnx$/i, ""));
  const { digest } = await digestDirectory(pkg.root);
  const registry = singlePackageRegistry(name, pkg, digest, target);
  const runtime = createOnnxRuntime({
    workers: options.workers ?? 1,
    intraOpThreads: options.config?.runtime.intraOpThreads ?? 1,
    inlineMaxMicros: options.config?.runtime.inlineMaxMicros ?? 200,
    logger: options.logger,
  });
  // A custom wrapper package runs in a child process of its own; none starts unless the package is one.
  const custom = createCustomRuntime({ logger: options.logger });
  const runtimes: Record<string, ModelRuntime> = { onnx: runtime, custom };
  const scoring = createScoringService({ registry, runtimes, logger: options.logger, backgroundRefresh: false, workers: options.workers ?? 1 });
  const cleanup = async (): Promise<void> => {
    await scoring.close();
    await runtime.close();
    await custom.close();
    if (temp !== undefined) await fs.rm(temp, { recursive: true, force: true });
  };
  try {
    return await embed(scoring, name, cleanup);
  } catch (error) {
    await cleanup();
    throw error;
  }
}

async function embed(scoring: ScoringService, ref: string, cleanup: () => Promise<void>): Promise<EmbeddedModel> {
  // Load now, so a bad reference or a broken model fails here and the first predict is fast.
  const active = await scoring.load(ref);
  const meta = await scoring.metadata(ref);
  let closed: Promise<void> | undefined;

  const score = (input: PredictInput, opts: PredictOptions = {}): Promise<ScoreResult> => {
    if (closed !== undefined) {
      return Promise.reject(new MlshipError("MLSHIP_ERR_RUNTIME_UNAVAILABLE", `model ${ref} is closed`));
    }
    return scoring.score(ref, toScoringInput(input), { outputs: opts.outputs, signal: opts.signal, protocol: "library", requestId: opts.requestId, key: opts.key });
  };

  async function predict(input: readonly PredictRecord[] | PredictTable, options?: PredictOptions): Promise<PredictRecord[]>;
  async function predict(input: PredictTensors, options?: PredictOptions): Promise<Record<string, Tensor>>;
  async function predict(input: PredictInput, opts?: PredictOptions): Promise<PredictRecord[] | Record<string, Tensor>> {
    const scoringInput = toScoringInput(input);
    const result = await score(input, opts);
    if (scoringInput.kind === "tensors") return result.outputs;
    return formatMlflowResponse(result).predictions as PredictRecord[];
  }

  return {
    name: active.name,
    version: active.version,
    ref,
    signature: meta.signature,
    columns: meta.columns,
    predict,
    score,
    metadata: () => scoring.metadata(ref),
    close() {
      closed ??= cleanup();
      return closed;
    },
  };
}

function sanitizeName(raw: string): string {
  const cleaned = raw.replace(/[^A-Za-z0-9_.-]+/g, "-").replace(/^[^A-Za-z0-9]+/, "");
  return cleaned === "" ? "model" : cleaned;
}

/**
 * A read-only registry holding one package as version 1, so a path can go through the same scoring pipeline as
 * a registered model without a database.
 */
function singlePackageRegistry(name: string, pkg: ModelPackage, digest: string, source: string): Registry {
  const at = new Date().toISOString();
  const version: VersionRecord = {
    name,
    version: 1,
    status: "ready",
    description: pkg.manifest.metadata.description ?? null,
    tags: pkg.manifest.metadata.tags ?? {},
    metrics: pkg.manifest.metadata.metrics ?? {},
    digest,
    manifest: pkg.manifest,
    source,
    createdAt: at,
    createdBy: "loadModel",
    archivedAt: null,
    aliases: [],
  };
  const model: ModelRecord = {
    name,
    description: version.description,
    tags: {},
    createdAt: at,
    updatedAt: at,
    aliases: {},
    latestVersion: 1,
  };
  const readOnly = (): Promise<never> =>
    Promise.reject(
      new MlshipError(
        "MLSHIP_ERR_REGISTRY_CONFLICT",
        `model ${name} was loaded from ${source} without a registry; register it (mlship models register) to manage versions and aliases`,
      ),
    );
  const checkName = (n: string): void => {
    if (n !== name) throw new MlshipError("MLSHIP_ERR_MODEL_NOT_FOUND", `model ${n} not found (loaded: ${name})`, { field: "model" });
  };
  return {
    register: readOnly,
    listModels: async () => [model],
    getModel: async (n) => {
      checkName(n);
      return model;
    },
    listVersions: async (n) => {
      checkName(n);
      return [version];
    },
    getVersion: async (n, v) => {
      checkName(n);
      if (v !== 1) {
        throw new MlshipError("MLSHIP_ERR_MODEL_VERSION_NOT_FOUND", `model ${name} has only version 1 (loaded from ${source})`, {
          field: "version",
        });
      }
      return version;
    },
    resolve: async (refIn): Promise<ResolvedVersion> => {
      const ref = typeof refIn === "string" ? parseModelRef(refIn) : refIn;
      checkName(ref.name);
      if (ref.alias !== undefined && ref.alias !== "latest") {
        throw new MlshipError("MLSHIP_ERR_MODEL_ALIAS_NOT_FOUND", `model ${name} has no alias ${ref.alias} (loaded from ${source})`, {
          field: "alias",
        });
      }
      if (ref.version !== undefined && ref.version !== 1) {
        throw new MlshipError("MLSHIP_ERR_MODEL_VERSION_NOT_FOUND", `model ${name} has only version 1 (loaded from ${source})`, {
          field: "version",
        });
      }
      return { ref, version, packageDir: pkg.root };
    },
    setAlias: readOnly,
    deleteAlias: readOnly,
    aliasHistory: async (): Promise<AliasEvent[]> => [],
    rollback: readOnly,
    archive: readOnly,
    unarchive: readOnly,
    setModelTags: readOnly,
    setVersionTags: readOnly,
    setModelDescription: readOnly,
    // A package loaded without a registry has no overrides: its own `serving` section is what applies.
    getVersionSettings: async (n, v) => {
      checkName(n);
      if (v !== 1) {
        throw new MlshipError("MLSHIP_ERR_MODEL_VERSION_NOT_FOUND", `model ${name} has only version 1 (loaded from ${source})`, {
          field: "version",
        });
      }
      return {};
    },
    setVersionSettings: readOnly,
    changeToken: async () => "static",
    close: async () => undefined,
  };
}
