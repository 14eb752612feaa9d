/**
 * Composition root: the one file that knows every folder. It turns a config into live parts (store, artifacts,
 * registry, runtimes, scoring) and owns the folders under `home`.
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { MlshipError, createLogger, type Logger } from "./core/index.js";
import { loadConfig, type MlshipConfig } from "./config/index.js";
import { importModel, type ImportOptions, type SparkClassOption } from "./package/index.js";
import { openArtifactStore, openSqlStore, redactUrl, type ArtifactStore, type SqlStore } from "./store/index.js";
import { createRegistry, validateAliasName, validateModelName, type Registry, type VersionRecord } from "./registry/index.js";
import { createCustomRuntime, createOnnxRuntime, createSparkmlRuntime, type ModelRuntime } from "./runtime/index.js";
import { createPredictionCache, createScoringService, type PredictionCache, type ScoringService } from "./scoring/index.js";
import type { Registry as PromRegistry } from "prom-client";
import { compareArms, computeQuality, createFeedbackService, feedbackSpecOf, PredictionLogger, predictionLogMetrics, SqlPredictionStore, type FeedbackService, type PredictionStore } from "./feedback/index.js";
import { Alerter, gaugeSink, logSink, webhookSink, type AlertSink } from "./monitor/index.js";
import type { StartStreamOptions, StreamHandle, StreamJobConfig } from "./stream/index.js";
import {
  createRolloutService,
  evaluateGate,
  promoteVersion,
  RetrainTrigger,
  retrainSink,
  RolloutAutomation,
  SqlAuditLog,
  type AuditLog,
  type CompareArms,
  type PromoteVersionInput,
  type PromoteVersionResult,
  type RolloutService,
} from "./rollout/index.js";

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
  /** Logged predictions, outcomes and business events in the metadata store. */
  readonly predictions: PredictionStore;
  /**
   * Live quality and outcome ingestion on demand (no timers: `mlship serve` runs its own with thresholds, alerts
   * and metrics, see `src/cli/serve.ts`).
   */
  readonly feedback: FeedbackService;
  /** Rollouts, policies and the audit log; installs its traffic router on `scoring` when first used. */
  readonly rollouts: RolloutService;
  /** The audit log of deployment actions (the same one `rollouts.audit` writes), without starting scoring. */
  readonly audit: AuditLog;
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
  const store = await openSqlStore({ url: config.store, home: config.home, logger });
  const artifacts = openArtifactStore({
    url: paths.artifacts,
    home: config.home,
    s3: { endpoint: config.s3.endpoint, region: config.s3.region, forcePathStyle: config.s3.forcePathStyle === "on" },
  });
  // The app owns the store (close() closes it last), so the registry must not close it.
  const registry = createRegistry({ store, artifacts, closeStore: false });

  let runtimes: Record<string, ModelRuntime> | undefined;
  let scoring: ScoringService | undefined;
  let cache: PredictionCache | undefined;
  let closed: Promise<void> | undefined;
  const predictions = new SqlPredictionStore(store);
  let feedback: FeedbackService | undefined;
  let rollouts: RolloutService | undefined;

  const getRuntimes = (): Record<string, ModelRuntime> => {
    if (closed !== undefined) throw new MlshipError("MLSHIP_ERR_RUNTIME_UNAVAILABLE", "mlship is closed");
    runtimes ??= {
      onnx: createOnnxRuntime({
        workers: config.runtime.workers,
        intraOpThreads: config.runtime.intraOpThreads,
        interOpThreads: config.runtime.interOpThreads,
        inlineMaxMicros: config.runtime.inlineMaxMicros,
        logger,
      }),
      // Spark ML saved models, scored natively (no JVM); its workers start on the first sparkml load.
      sparkml: createSparkmlRuntime({ workers: config.runtime.workers, logger }),
      // Custom wrappers: a child process per loaded version, started on its load (docs/custom-models.md).
      custom: createCustomRuntime({ logger }),
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
            max_request_rows: config.serving.maxRequestRows,
          },
        });
      }
      return scoring;
    },
    predictions,
    audit: new SqlAuditLog(store),
    get feedback() {
      feedback ??= createFeedbackService({
        store: predictions,
        registry,
        logger,
        horizonMs: config.feedback.horizonMs,
        pendingMs: config.feedback.pendingTimeoutMs,
        windows: config.monitor.windows.split(","),
        timers: false,
      });
      return feedback;
    },
    get rollouts() {
      rollouts ??= createRolloutService({
        store,
        registry,
        scoring: app.scoring,
        logger,
        feedback: app.feedback,
        compare: compareArmsOf(registry),
        // One-shot commands read the store when they act; servers refresh on a timer (rollout.checkMs).
        refreshMs: 0,
      });
      return rollouts;
    },
    close() {
      closed ??= (async () => {
        await rollouts?.close();
        await feedback?.close();
        await scoring?.close();
        await cache?.close();
        for (const runtime of Object.values(runtimes ?? {})) await runtime.close();
        await registry.close();
        artifacts.close?.();
        await store.close();
      })();
      return closed;
    },
  };
  return app;
}

export interface RegisterOptions extends Omit<ImportOptions, "stagingDir">, SparkClassOption {
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

/** The significance test of a rollout's arms, on the champion's feedback spec (task, labels, outputs). */
export function compareArmsOf(registry: Registry): CompareArms {
  return async (metric, champion, challenger, context) => {
    const record = await registry.getVersion(context.model, context.champion);
    return compareArms(metric, champion, challenger, feedbackSpecOf(record.manifest));
  };
}

/**
 * The prediction log of everything `app.scoring` answers (started: subscribed, spill files of an earlier run being
 * replayed), or undefined when config `feedback.log` is off. The caller closes it (flushing) before `app.close()`.
 */
export async function startPredictionLog(app: Mlship): Promise<PredictionLogger | undefined> {
  const { config } = app;
  if (config.feedback.log !== "on") return undefined;
  const predictionLog = new PredictionLogger({
    scoring: app.scoring,
    registry: app.registry,
    // Records are built and written in a worker thread with its own connection (`store` only serves an in-memory
    // SQLite, which a second connection cannot open).
    storeUrl: config.store,
    home: config.home,
    store: app.predictions,
    logger: app.logger,
    bufferRows: config.feedback.bufferRows,
    flushMs: config.feedback.flushMs,
    spillDir: config.feedback.spillDir,
    spillMaxBytes: config.feedback.spillMaxBytes,
  });
  await predictionLog.start();
  return predictionLog;
}

export interface FeedbackLoopOptions {
  /** Where the loop's metrics go (`/metrics`): quality gauges, prediction log counters, alert gauges. */
  metricsRegistry?: PromRegistry;
  /** Failed requests / requests of a version, from the server's request metrics (the `error_rate` quality metric). */
  errorRate?: (model: string, version: number) => number | null;
  /** The server's base URL, handed to retraining hooks. */
  serverUrl: string | null;
}

/**
 * The feedback loop of a server: prediction log (unless `feedback.log` is off), live quality with thresholds on
 * timers, rollouts refreshed from the store (so rollouts started by the CLI or another replica take effect), the
 * rollout guard and "fly" automation, and retraining hooks fed by one alerter that monitoring shares.
 */
export interface FeedbackLoop {
  readonly predictionLog: PredictionLogger | undefined;
  readonly feedback: FeedbackService;
  readonly rollouts: RolloutService;
  /** Alerts of monitoring and of the feedback loop: log, gauge, webhook (`monitor.webhookUrl`), retraining hooks. */
  readonly alerter: Alerter;
  readonly automation: RolloutAutomation;
  readonly retrain: RetrainTrigger;
  /** Promotes a version (gate on a holdout file, then alias move or canary), audited: `POST /api/v1/models/{name}/promote`. */
  promote(input: PromoteVersionInput): Promise<PromoteVersionResult>;
  /** Stops timers, flushes the prediction log, waits for hooks in flight. */
  close(): Promise<void>;
}

export async function startFeedbackLoop(app: Mlship, options: FeedbackLoopOptions): Promise<FeedbackLoop> {
  const { config, logger, registry, scoring, predictions } = app;
  const predictionLog = await startPredictionLog(app);
  if (predictionLog !== undefined && options.metricsRegistry !== undefined) predictionLogMetrics(predictionLog, options.metricsRegistry);

  // The alerter feeds the retraining trigger, which needs the rollout service, which needs the feedback service,
  // which needs the alerter: the trigger's sink forwards to it once it exists.
  const late: { retrain?: RetrainTrigger } = {};
  const sinks: AlertSink[] = [logSink(logger)];
  if (options.metricsRegistry !== undefined) sinks.push(gaugeSink(options.metricsRegistry));
  if (config.monitor.webhookUrl !== null) sinks.push(webhookSink({ url: config.monitor.webhookUrl, logger }));
  sinks.push({ name: "retrain", send: (alerts) => (late.retrain === undefined ? Promise.resolve() : retrainSink(late.retrain).send(alerts)) });
  const alerter = new Alerter({ sinks, logger });
  const feedback = createFeedbackService({
    store: predictions,
    registry,
    logger,
    alerter,
    ...(options.metricsRegistry === undefined ? {} : { metricsRegistry: options.metricsRegistry }),
    ...(options.errorRate === undefined ? {} : { errorRate: options.errorRate }),
    horizonMs: config.feedback.horizonMs,
    pendingMs: config.feedback.pendingTimeoutMs,
    evaluateMs: config.feedback.evaluateMs,
    retentionDays: config.feedback.retentionDays,
    windows: config.monitor.windows.split(","),
  });
  const rollouts = createRolloutService({
    store: app.store,
    registry,
    scoring,
    logger,
    feedback,
    compare: compareArmsOf(registry),
    refreshMs: Math.min(2000, config.rollout.checkMs),
  });
  const retrain = new RetrainTrigger({
    rollouts,
    registry,
    exportPredictions: (query) => predictions.exportPredictions(query),
    dataDir: path.join(config.home, "retrain"),
    serverUrl: options.serverUrl,
    home: config.home,
    store: redactUrl(config.store),
    storeUrl: config.store,
    logger,
  });
  const automation = new RolloutAutomation({
    rollouts,
    registry,
    logger,
    checkMs: config.rollout.checkMs,
    evaluateGate: (model, candidate, gate) =>
      evaluateGate({ scoring, registry, model, candidate, spec: gate, computeQuality, specOf: feedbackSpecOf }),
  });
  automation.start();
  late.retrain = retrain;
  let closing: Promise<void> | undefined;
  return {
    predictionLog,
    feedback,
    rollouts,
    alerter,
    automation,
    retrain,
    promote: (input) => promoteVersion({ rollouts, registry, scoring, computeQuality, specOf: feedbackSpecOf }, input),
    close() {
      closing ??= (async () => {
        await automation.close();
        await predictionLog?.close();
        await feedback.close();
        await retrain.idle();
        await rollouts.close();
      })();
      return closing;
    },
  };
}

/**
 * Runs a stream job (issue 7) on the app's scoring, store and feedback loop. With `config.predictionLog`, the
 * prediction log is started first (when config `feedback.log` is on) so the stream's scored rows are logged under
 * `stream:<name>:<batchId>` and joined outcomes can find them; it is flushed and closed once the stream has stopped,
 * before `done` resolves.
 */
export async function runStream(app: Mlship, config: StreamJobConfig, options: StartStreamOptions = {}): Promise<StreamHandle> {
  // Loaded on use, so commands that never stream do not pay for the NATS client and the Parquet writer at start-up.
  const { startStream } = await import("./stream/index.js");
  const predictionLog = config.predictionLog ? await startPredictionLog(app) : undefined;
  if (config.predictionLog && predictionLog === undefined) {
    app.logger.warn({ stream: config.name }, "stream: predictionLog is set but the prediction log is off (config feedback.log); predictions are not logged");
  }
  const handle = startStream({ scoring: app.scoring, store: app.store, logger: app.logger, feedback: app.feedback }, config, options);
  const done = handle.done.then(async (summary) => {
    await predictionLog?.close().catch((err: unknown) => app.logger.warn({ err }, "stream: the prediction log did not close cleanly"));
    return summary;
  });
  return {
    done,
    stop: async () => {
      await handle.stop();
      return done;
    },
    lastProgress: () => handle.lastProgress(),
    failure: () => handle.failure(),
  };
}
