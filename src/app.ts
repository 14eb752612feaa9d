/**
 * Composition root: the one file that knows every folder. It turns a config into live parts (store, artifacts,
 * registry, runtimes, scoring) and owns the folders under `home`.
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { MlshipError, createLogger, type Logger } from "./core/index.js";
import { loadConfig, type MlshipConfig } from "./config/index.js";
import { importModel, type ImportOptions } from "./package/index.js";
import { LocalArtifactStore, openSqlStore, type ArtifactStore, type SqlStore } from "./store/index.js";
import { createRegistry, validateAliasName, validateModelName, type Registry, type VersionRecord } from "./registry/index.js";
import { createOnnxRuntime, type ModelRuntime } from "./runtime/index.js";
import { createPredictionCache, createScoringService, type PredictionCache, type ScoringService } from "./scoring/index.js";

/** Every folder mlship uses under `home`, in one place. */
export interface MlshipPaths {
  home: string;
  /** Content-addressed artifacts (config `artifacts`). */
  artifacts: string;
  /** Short-lived import folders, one per registration. */
  staging: string;
}

export function mlshipPaths(config: MlshipConfig): MlshipPaths {
  return {
    home: config.home,
    artifacts: config.artifacts,
    staging: path.join(config.home, "staging"),
  };
}

export interface Mlship {
  readonly config: MlshipConfig;
  readonly paths: MlshipPaths;
  readonly logger: Logger;
  readonly store: SqlStore;
  readonly artifacts: ArtifactStore;
  readonly registry: Registry;
  /**
   * One runtime per flavor. Built on first use, so registry-only commands never start inference workers.
   */
  readonly runtimes: Record<string, ModelRuntime>;
  /** The scoring pipeline over the registry and runtimes (built on first use, like `runtimes`). */
  readonly scoring: ScoringService;
  /** Closes scoring, runtimes (workers) and the store. Idempotent. */
  close(): Promise<void>;
}

export interface CreateMlshipOptions {
  logger?: Logger;
}

/** Builds the platform from a config (default: `loadConfig()`, i.e. file ► env). */
export async function createMlship(config: MlshipConfig = loadConfig(), options: CreateMlshipOptions = {}): Promise<Mlship> {
  const logger = options.logger ?? createLogger({ level: config.log.level });
  const paths = mlshipPaths(config);
  await fs.mkdir(paths.home, { recursive: true });
  const store = await openSqlStore({ url: config.store, home: config.home });
  const artifacts = new LocalArtifactStore(paths.artifacts);
  // The app owns the store (close() closes it last), so the registry must not close it.
  const registry = createRegistry({ store, artifacts, closeStore: false });

  let runtimes: Record<string, ModelRuntime> | undefined;
  let scoring: ScoringService | undefined;
  let cache: PredictionCache | undefined;
  let closed: Promise<void> | undefined;

  const getRuntimes = (): Record<string, ModelRuntime> => {
    if (closed !== undefined) throw new MlshipError("MLSHIP_ERR_RUNTIME_UNAVAILABLE", "mlship is closed");
    runtimes ??= {
      onnx: createOnnxRuntime({
        workers: config.runtime.workers,
        intraOpThreads: config.runtime.intraOpThreads,
        interOpThreads: config.runtime.interOpThreads,
        logger,
      }),
    };
    return runtimes;
  };

  const app: Mlship = {
    config,
    paths,
    logger,
    store,
    artifacts,
    registry,
    get runtimes() {
      return getRuntimes();
    },
    get scoring() {
      if (scoring === undefined) {
        // One warning per minute at most: a Redis that is down fails every request's lookup.
        let lastWarn = Number.NEGATIVE_INFINITY;
        cache = createPredictionCache(config.cache.backend, {
          maxBytes: config.cache.maxBytes,
          onError: (err, operation) => {
            if (Date.now() - lastWarn < 60_000) return;
            lastWarn = Date.now();
            logger.warn({ err, operation }, "prediction cache unavailable; serving without it");
          },
        });
        scoring = createScoringService({
          registry,
          runtimes: getRuntimes(),
          logger,
          cache,
          cacheTtlSeconds: config.cache.ttlSeconds,
          workers: config.runtime.workers,
          serving: {
            batching: { enabled: config.serving.maxBatchSize > 1, max_batch_size: config.serving.maxBatchSize, max_delay_ms: config.serving.maxDelayMs },
            max_queue: config.serving.maxQueue,
            timeout_ms: config.serving.timeoutMs,
          },
        });
      }
      return scoring;
    },
    close() {
      closed ??= (async () => {
        await scoring?.close();
        await cache?.close();
        for (const runtime of Object.values(runtimes ?? {})) await runtime.close();
        await registry.close();
        await store.close();
      })();
      return closed;
    },
  };
  return app;
}

export interface RegisterOptions extends Omit<ImportOptions, "stagingDir"> {
  name: string;
  /** Also point this alias at the new version. */
  alias?: string;
  /** Why (recorded with the alias move). */
  reason?: string;
}

/**
 * Imports `source` (an mlship package, an MLflow model folder or a bare .onnx file) into a staging folder under
 * home, registers it, optionally sets an alias, and removes the staging folder whatever happens.
 */
export async function registerModel(app: Mlship, source: string, options: RegisterOptions): Promise<VersionRecord> {
  const { name, alias, reason, ...importOptions } = options;
  // Checked before the import, so a typo never leaves a new version behind without its alias.
  validateModelName(name);
  if (alias !== undefined) validateAliasName(alias);
  const abs = path.resolve(source);
  const stagingDir = path.join(app.paths.staging, randomUUID());
  try {
    const pkg = await importModel(abs, { ...importOptions, stagingDir });
    const record = await app.registry.register({
      name,
      packageDir: pkg.root,
      source: abs,
      description: options.description,
      tags: options.tags,
      metrics: options.metrics,
      by: app.config.user,
    });
    if (alias !== undefined) {
      await app.registry.setAlias(name, alias, record.version, { by: app.config.user, reason });
      return app.registry.getVersion(name, record.version);
    }
    return record;
  } finally {
    await fs.rm(stagingDir, { recursive: true, force: true });
  }
}
