import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { Command } from "commander";
import { MlshipError } from "../core/index.js";
import type { ModelRecord } from "../registry/index.js";
import { registerModel, startFeedbackLoop, type Mlship } from "../app.js";
import type { GrpcServer } from "../serve/index.js";
import type { CliContext, GlobalOptions } from "./context.js";
import { curlLine, exampleRow, mlflowBody, v2Body } from "./examples.js";
import { printLine } from "./io.js";

interface ServeFlags extends GlobalOptions {
  host?: string;
  port?: string;
  model?: string;
  workers?: string;
  grpcPort?: string;
}

function serveFlags(o: ServeFlags): Record<string, unknown> {
  return {
    "server.host": o.host,
    "server.port": o.port,
    "server.grpcPort": o.grpcPort,
    "server.defaultModel": o.model,
    "runtime.workers": o.workers,
  };
}

function addServeOptions(cmd: Command, modelHelp: string): Command {
  return cmd
    .option("--host <host>", "interface to listen on (env MLSHIP_HOST, default 127.0.0.1)")
    .option("-p, --port <port>", "TCP port, 0 for any free one (env MLSHIP_PORT, default 8080)")
    .option(
      "--grpc-port <port>",
      "gRPC (Open Inference Protocol) port, 0 for any free one, -1 for no gRPC (env MLSHIP_GRPC_PORT, default 8081; 0 with --port 0)",
    )
    .option("-m, --model <ref>", modelHelp)
    .option("--workers <n>", "inference worker threads (env MLSHIP_WORKERS, default one per core)");
}

export interface RunningServer {
  url: string;
  /** `host:port` of the gRPC service, or null when it is turned off (`--grpc-port -1`). */
  grpcAddress: string | null;
  /** Resolves once the server has stopped (signal or abort) and drained. */
  closed: Promise<void>;
}

function listenError(error: unknown, where: string, portKey: "server.port" | "server.grpcPort", flag: string): unknown {
  const code = (error as { code?: unknown }).code;
  const text = error instanceof Error ? error.message : String(error);
  // grpc-js reports bind failures as plain errors whose message carries the errno name.
  const errno = typeof code === "string" ? code : /\b(EADDRINUSE|EACCES|EADDRNOTAVAIL)\b/.exec(text)?.[1];
  if (errno === "EADDRINUSE" || errno === "EACCES" || errno === "EADDRNOTAVAIL") {
    const why = errno === "EADDRINUSE" ? "is already in use" : errno === "EACCES" ? "needs more privileges" : "is not an address of this machine";
    return new MlshipError(
      "MLSHIP_ERR_CONFIG_INVALID",
      `cannot listen on ${where}: it ${why}; choose another with ${flag}/--host (${portKey === "server.port" ? "MLSHIP_PORT" : "MLSHIP_GRPC_PORT"}/MLSHIP_HOST)`,
      { field: errno === "EADDRNOTAVAIL" ? "server.host" : portKey, cause: error },
    );
  }
  if (portKey === "server.grpcPort") {
    return new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `cannot listen for gRPC on ${where}: ${text}`, { field: portKey, cause: error });
  }
  return error;
}

/** Whether a listen address only takes connections from this machine (then an open management API is local). */
function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, "").toLowerCase();
  return bare === "localhost" || bare === "::1" || /^127(\.\d{1,3}){3}$/.test(bare) || bare === "::ffff:127.0.0.1";
}

/**
 * Listens (HTTP, and gRPC unless server.grpcPort is -1) and waits for SIGINT/SIGTERM (or the io abort signal).
 * Shutdown stops accepting connections on both, lets in-flight requests finish (up to server.shutdownTimeoutMs),
 * then closes the app.
 */
async function listen(ctx: CliContext, app: Mlship, defaultModel: string | null): Promise<RunningServer> {
  const { config } = app;
  // Loaded here so registry commands do not pay for Fastify and prom-client at start-up.
  const { buildServer, createGrpcServer, createInferenceTokens, requestMetricsOf } = await import("../serve/index.js");
  let draining = false;
  // One checker for REST and gRPC; the admin token passes wherever an inference token is asked for.
  const inferenceTokens = config.server.inferenceTokens === null ? undefined : createInferenceTokens(config.server.inferenceTokens, { adminToken: config.server.adminToken });
  // Deployments (/api/v1/deployments and /v1/deployments/{name}/invocations); their rollouts go through the feedback
  // loop's rollout service, built below (used only once requests arrive).
  const { createDeploymentService, deploymentRoutes } = await import("../deployments/index.js");
  const deployments = createDeploymentService({ store: app.store, registry: app.registry, scoring: app.scoring, logger: app.logger, rollouts: () => loop.rollouts });
  const server = buildServer({
    deploymentRef: (name) => deployments.modelOf(name),
    isDraining: () => draining,
    scoring: app.scoring,
    registry: app.registry,
    logger: app.logger,
    bodyLimitBytes: config.server.bodyLimitBytes,
    defaultModel: defaultModel ?? undefined,
    maxEventLoopDelayMs: config.server.maxEventLoopDelayMs,
    ...(config.server.adminToken === null ? {} : { adminToken: config.server.adminToken }),
    ...(inferenceTokens === undefined ? {} : { inferenceTokens }),
    ...(config.server.corsOrigins === null ? {} : { corsOrigins: config.server.corsOrigins.split(",") }),
  });
  if (config.server.adminToken === null && !isLoopbackHost(config.server.host)) {
    app.logger.warn(
      { host: config.server.host },
      "no admin token (server.adminToken / MLSHIP_ADMIN_TOKEN): anyone who can reach this server can move aliases, start and promote rollouts and change settings",
    );
  }
  // The monitoring data over REST (reference and window profiles), next to the serving routes.
  const { LiveMonitor, MonitorStore, monitorRoutes } = await import("../monitor/index.js");
  const { feedbackRoutes } = await import("../feedback/index.js");
  const { rolloutRoutes } = await import("../rollout/index.js");
  const { BatchScheduler, batchFreshnessAlerts, batchFreshnessMetrics, batchRoutes } = await import("../batch/index.js");
  const requestMetrics = requestMetricsOf(server);
  // Live traffic (GET /api/v1/traffic, and totals for the model lists): the request metrics sampled every 2 s.
  const { recordTraffic, trafficRoutes } = await import("../serve/index.js");
  const traffic = recordTraffic(server);
  void server.register(trafficRoutes, { traffic });
  const monitorStore = new MonitorStore(app.store);
  // The feedback loop: prediction log, live quality and thresholds, rollouts, guard and retraining hooks. Its alerter
  // is monitoring's too, so drift alerts reach the retraining hooks as well.
  const loop = await startFeedbackLoop(app, {
    ...(requestMetrics === undefined ? {} : { metricsRegistry: requestMetrics.register }),
    errorRate: (model, version) => {
      const figures = requestMetrics?.snapshot(model, String(version));
      if (figures === undefined || figures.requests === 0) return null;
      const failed = Object.values(figures.errors).reduce((a, b) => a + b, 0);
      return failed / figures.requests;
    },
    // Known before listening unless the port is picked by the system (then hooks get null and use the CLI).
    serverUrl: config.server.port === 0 ? null : `http://${config.server.host.includes(":") ? `[${config.server.host}]` : config.server.host}:${config.server.port}`,
  });
  // Live monitoring listens to every scoring event, which costs the hot path a copy of each request's tensors:
  // `auto` turns it on only where a reference exists to compare with.
  const liveOn = config.monitor.live === "on" || (config.monitor.live === "auto" && (await monitorStore.hasReferences()));
  const live = liveOn
    ? new LiveMonitor({
        scoring: app.scoring,
        store: monitorStore,
        logger: app.logger,
        sizes: config.monitor.windows.split(","),
        alerter: loop.alerter,
        // Replicas sharing the store each store their part of a window; readers merge the parts.
        replicaId: config.server.replicaId,
      })
    : undefined;
  live?.start();
  if (live !== undefined) app.logger.info({ windows: config.monitor.windows, replicaId: config.server.replicaId }, "live monitoring on");
  const { alertRoutes } = await import("../monitor/index.js");
  // Batch tables that failed or went stale are alerts too, computed from the run history when asked.
  void server.register(alertRoutes, { alerter: loop.alerter, computed: () => batchFreshnessAlerts(app.store, config.batch.maxAgeMs) });
  // The registry read routes (models, versions, files, alias history, audit) and what the server is, for the dashboard.
  const { registryRoutes } = await import("../registry/index.js");
  const { serverInfoRoutes } = await import("../serve/index.js");
  void server.register(registryRoutes, {
    registry: app.registry,
    artifacts: app.artifacts,
    scoring: app.scoring,
    traffic,
    audit: loop.rollouts.audit,
    activeRollout: async (model) => {
      const [active] = await loop.rollouts.list({ model, state: "active", limit: 1 });
      return active === undefined ? null : { id: active.id, mode: active.mode, champion: active.champion, challenger: active.challenger, percent: active.percent };
    },
  });
  void server.register(serverInfoRoutes, {
    adminToken: config.server.adminToken !== null,
    defaultModel,
    features: { liveMonitoring: live !== undefined, predictionLog: loop.predictionLog !== undefined, rollouts: true, batch: true, streams: true },
    trafficIntervalSeconds: traffic.intervalSeconds,
    replicaId: config.server.replicaId,
  });
  void server.register(monitorRoutes, {
    store: monitorStore,
    registry: app.registry,
    scoring: app.scoring,
    ...(requestMetrics === undefined ? {} : { requests: (model: string, version: string) => requestMetrics.snapshot(model, version) }),
  });
  void server.register(feedbackRoutes, {
    feedback: loop.feedback,
    registry: app.registry,
    bodyLimitBytes: config.server.bodyLimitBytes,
    ...(loop.predictionLog === undefined ? {} : { logStats: () => (loop.predictionLog as NonNullable<typeof loop.predictionLog>).stats() }),
  });
  void server.register(rolloutRoutes, { rollouts: loop.rollouts, registry: app.registry, user: config.user, promote: loop.promote });
  void server.register(deploymentRoutes, { deployments, user: config.user });
  // Batch predictions: lookups from the store (or the batch.lookupUrl database, whose pool closes with the server),
  // and the age of each table's last successful run in /metrics.
  void server.register(batchRoutes, { store: app.store, registry: app.registry, maxAgeMs: config.batch.maxAgeMs, lookupUrl: config.batch.lookupUrl });
  // Stream jobs' status, as the `mlship stream run` processes write it to the store (not the whole stream module).
  const { streamRoutes } = await import("../stream/http.js");
  void server.register(streamRoutes, { store: app.store });
  // The dashboard (built assets from dist/ui) at /ui, and / redirecting to it.
  const { uiRoutes } = await import("../ui/index.js");
  void server.register(uiRoutes, {});
  if (requestMetrics !== undefined) {
    batchFreshnessMetrics(app.store, requestMetrics.register, {
      maxAgeMs: config.batch.maxAgeMs,
      onError: (err) => app.logger.warn({ err }, "batch freshness metrics unavailable"),
    });
  }
  // Scheduled batch runs (mlship batch schedule): every replica may run the scheduler, a lock in the store lets one
  // of them start each fire time. Late or failed schedules alert through the shared alerter (one scope per alert).
  const scheduler = new BatchScheduler(app, {
    onAlert: (alert) => loop.alerter.process([alert], new Date(), { scope: alert.id }).then(() => undefined),
  });
  scheduler.start();
  try {
    await server.listen({ host: config.server.host, port: config.server.port });
  } catch (error) {
    await scheduler.close().catch(() => undefined);
    await loop.close().catch(() => undefined);
    await server.close().catch(() => undefined);
    throw listenError(error, `${config.server.host}:${config.server.port}`, "server.port", "--port");
  }
  const address = server.server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;

  let grpc: GrpcServer | null = null;
  let grpcAddress: string | null = null;
  if (config.server.grpcPort >= 0) {
    grpc = createGrpcServer({
      scoring: app.scoring,
      registry: app.registry,
      logger: app.logger,
      maxMessageBytes: config.server.grpcMaxMessageBytes,
      maxEventLoopDelayMs: config.server.maxEventLoopDelayMs,
      ...(inferenceTokens === undefined ? {} : { inferenceTokens }),
    });
    const grpcHost = config.server.host.includes(":") ? `[${config.server.host}]` : config.server.host;
    try {
      grpcAddress = `${grpcHost}:${await grpc.listen(config.server.host, config.server.grpcPort)}`;
    } catch (error) {
      await Promise.all([grpc.close(0), server.close().catch(() => undefined), scheduler.close().then(() => loop.close()).catch(() => undefined)]);
      throw listenError(error, `${grpcHost}:${config.server.grpcPort}`, "server.grpcPort", "--grpc-port");
    }
  }
  app.logger.info({ url, grpc: grpcAddress, defaultModel, dashboard: `${url}/ui/` }, "mlship is listening");

  const closed = new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (reason: string): void => {
      if (stopping) return;
      stopping = true;
      // Readiness turns false first, so balancers stop sending traffic while in-flight requests finish.
      draining = true;
      detach();
      app.logger.info({ reason }, "shutting down: draining in-flight requests");
      const force = setTimeout(() => {
        app.logger.warn({ timeoutMs: config.server.shutdownTimeoutMs }, "shutdown timeout: closing open connections");
        server.server.closeAllConnections();
      }, config.server.shutdownTimeoutMs);
      force.unref();
      // server.close() ends only the connections idle at that moment; one whose request is still in flight turns
      // idle once answered and would otherwise stay open (keep-alive) until the timeout above.
      const closeIdle = setInterval(() => server.server.closeIdleConnections(), 50);
      closeIdle.unref();
      void Promise.all([
        server.close().catch((err: unknown) => app.logger.error({ err }, "error while closing the server")),
        // Complete windows are stored; the open ones are left (a restart starts them again).
        live?.close().catch((err: unknown) => app.logger.warn({ err }, "live monitoring did not close cleanly")),
        // tryShutdown, then forceShutdown once the same grace period is over (close() never rejects).
        grpc?.close(config.server.shutdownTimeoutMs),
      ])
        // The prediction log is flushed once no request can add to it (rows it cannot store are spilled to disk).
        .then(() => scheduler.close())
        .then(() => loop.close())
        .then(() => deployments.close())
        .catch((err: unknown) => app.logger.warn({ err }, "the feedback loop did not close cleanly"))
        .finally(() => {
        clearTimeout(force);
        clearInterval(closeIdle);
        app.logger.info("server stopped");
        resolve();
      });
    };
    const onSigint = (): void => stop("SIGINT");
    const onSigterm = (): void => stop("SIGTERM");
    const onAbort = (): void => stop("abort");
    const detach = (): void => {
      process.off("SIGINT", onSigint);
      process.off("SIGTERM", onSigterm);
      ctx.io.signal?.removeEventListener("abort", onAbort);
    };
    if (ctx.io.handleSignals) {
      process.on("SIGINT", onSigint);
      process.on("SIGTERM", onSigterm);
    }
    if (ctx.io.signal?.aborted === true) onAbort();
    else ctx.io.signal?.addEventListener("abort", onAbort, { once: true });
  });
  return { url, grpcAddress, closed };
}

/** The proto the gRPC service speaks: the package's proto/ folder, the same relative place from src/cli and dist/cli. */
function protoDir(): string {
  return fileURLToPath(new URL("../../proto/", import.meta.url));
}

const CONTENTS_FIELD: Record<string, string> = {
  FP32: "fp32_contents", FP64: "fp64_contents", INT64: "int64_contents", INT32: "int_contents",
  INT16: "int_contents", INT8: "int_contents", UINT64: "uint64_contents", UINT32: "uint_contents",
  UINT16: "uint_contents", UINT8: "uint_contents", BOOL: "bool_contents",
};

/** A grpcurl ModelInfer line for the same example row as the V2 curl line; null when the input has no typed field. */
function grpcurlLine(address: string, model: string, body: unknown): string | null {
  const input = (body as { inputs?: Array<{ name: string; shape: number[]; datatype: string; data: unknown[] }> }).inputs?.[0];
  const field = input === undefined ? undefined : CONTENTS_FIELD[input.datatype];
  if (input === undefined || field === undefined) return null;
  const request = {
    model_name: model,
    inputs: [{ name: input.name, datatype: input.datatype, shape: input.shape, contents: { [field]: input.data } }],
  };
  const json = JSON.stringify(request).replace(/'/g, "'\\''");
  return `grpcurl -plaintext -import-path '${protoDir()}' -proto open_inference_grpc.proto -d '${json}' ${address} inference.GRPCInferenceService/ModelInfer`;
}

export function serveCommand(ctx: CliContext): Command {
  const cmd = new Command("serve").description(
    "serve every registered model over REST (Open Inference Protocol V2 at /v2/..., MLflow at /invocations) and gRPC (Open Inference Protocol)",
  );
  addServeOptions(cmd, "model /invocations serves, resolved per request (env MLSHIP_DEFAULT_MODEL)");
  cmd.action(async (_opts: unknown, command: Command) => {
    const o = command.optsWithGlobals<ServeFlags>();
    const app = await ctx.app(o, serveFlags(o));
    const running = await listen(ctx, app, app.config.server.defaultModel);
    printLine(ctx.io, `mlship serving on ${running.url}`);
    if (running.grpcAddress !== null) printLine(ctx.io, `mlship gRPC (Open Inference Protocol) on ${running.grpcAddress}`);
    printLine(ctx.io, `dashboard: ${running.url}/ui/`);
    await running.closed;
  });
  return cmd;
}

/** The example models `npm start` registers, shipped in examples/models (copied from the shared fixtures). */
export const EXAMPLE_MODELS = [
  { name: "breast-cancer", dir: "breast-cancer" },
  { name: "digits", dir: "digits" },
  { name: "diabetes", dir: "diabetes" },
] as const;

export const QUICKSTART_DEFAULT_MODEL = "breast-cancer@production";

/** The repository's examples/models folder: the same relative place from src/cli (tsx) and dist/cli (built). */
export function examplesDir(): string {
  return fileURLToPath(new URL("../../examples/models/", import.meta.url));
}

/**
 * Registers each example model with alias `production` unless it is registered already (so a second start
 * registers nothing new). Returns the names registered now.
 */
export async function registerExamples(app: Mlship, dir = examplesDir()): Promise<string[]> {
  const existing = new Map<string, ModelRecord>((await app.registry.listModels()).map((m) => [m.name, m]));
  const added: string[] = [];
  for (const example of EXAMPLE_MODELS) {
    const model = existing.get(example.name);
    if (model !== undefined && model.aliases.production !== undefined) continue;
    if (model !== undefined && model.latestVersion > 0) {
      // Registered by hand without the alias: point production at what the bare name serves, if anything.
      const resolved = await app.registry.resolve(example.name).catch(() => undefined);
      if (resolved !== undefined) {
        await app.registry.setAlias(example.name, "production", resolved.version.version, {
          by: app.config.user,
          reason: "quickstart",
        });
        continue;
      }
    }
    const record = await registerModel(app, path.join(dir, example.dir), {
      name: example.name,
      alias: "production",
      reason: "quickstart",
    });
    app.logger.info({ model: example.name, version: record.version }, "registered example model");
    added.push(example.name);
  }
  return added;
}

export function quickstartCommand(ctx: CliContext): Command {
  const cmd = new Command("quickstart").description(
    "register the example models (breast-cancer, digits, diabetes) with alias production if needed, then serve",
  );
  addServeOptions(cmd, `model /invocations serves (default ${QUICKSTART_DEFAULT_MODEL})`);
  cmd.action(async (_opts: unknown, command: Command) => {
    const o = command.optsWithGlobals<ServeFlags>();
    const app = await ctx.app(o, serveFlags(o), { "server.defaultModel": QUICKSTART_DEFAULT_MODEL });
    const added = await registerExamples(app);
    const defaultModel = app.config.server.defaultModel ?? QUICKSTART_DEFAULT_MODEL;
    const running = await listen(ctx, app, defaultModel);

    const resolved = await app.registry.resolve(defaultModel);
    const row = await exampleRow(await app.artifacts.materialize(resolved.version.digest), resolved.version.manifest);
    const name = resolved.version.name;
    printLine(ctx.io, `mlship serving on ${running.url}`);
    if (running.grpcAddress !== null) printLine(ctx.io, `mlship gRPC (Open Inference Protocol) on ${running.grpcAddress}`);
    printLine(ctx.io, `dashboard: ${running.url}/ui/`);
    printLine(
      ctx.io,
      `models: ${EXAMPLE_MODELS.map((m) => m.name).join(", ")} (${added.length === 0 ? "already registered" : `registered now: ${added.join(", ")}`}); home: ${app.config.home}`,
    );
    printLine(ctx.io, `/invocations serves ${defaultModel}`);
    if (row !== null) {
      printLine(ctx.io, "");
      printLine(ctx.io, "Try it (MLflow scoring protocol):");
      printLine(ctx.io, `  ${curlLine(`${running.url}/invocations`, mlflowBody(row))}`);
      printLine(ctx.io, "Or the Open Inference Protocol V2:");
      printLine(
        ctx.io,
        `  ${curlLine(`${running.url}/v2/models/${encodeURIComponent(name)}/infer`, v2Body(row, resolved.version.manifest))}`,
      );
      const grpcurl = running.grpcAddress === null ? null : grpcurlLine(running.grpcAddress, name, v2Body(row, resolved.version.manifest));
      if (grpcurl !== null) {
        printLine(ctx.io, "Or gRPC (with grpcurl):");
        printLine(ctx.io, `  ${grpcurl}`);
      }
    }
    printLine(ctx.io, "");
    printLine(ctx.io, "Stop with Ctrl+C.");
    await running.closed;
  });
  return cmd;
}
