import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { Command } from "commander";
import { MlshipError } from "../core/index.js";
import type { ModelRecord } from "../registry/index.js";
import { registerModel, type Mlship } from "../app.js";
import type { CliContext, GlobalOptions } from "./context.js";
import { curlLine, exampleRow, mlflowBody, v2Body } from "./examples.js";
import { printLine } from "./io.js";

interface ServeFlags extends GlobalOptions {
  host?: string;
  port?: string;
  model?: string;
  workers?: string;
}

function serveFlags(o: ServeFlags): Record<string, unknown> {
  return { "server.host": o.host, "server.port": o.port, "server.defaultModel": o.model, "runtime.workers": o.workers };
}

function addServeOptions(cmd: Command, modelHelp: string): Command {
  return cmd
    .option("--host <host>", "interface to listen on (env MLSHIP_HOST, default 127.0.0.1)")
    .option("-p, --port <port>", "TCP port, 0 for any free one (env MLSHIP_PORT, default 8080)")
    .option("-m, --model <ref>", modelHelp)
    .option("--workers <n>", "inference worker threads (env MLSHIP_WORKERS, default one per core)");
}

export interface RunningServer {
  url: string;
  /** Resolves once the server has stopped (signal or abort) and drained. */
  closed: Promise<void>;
}

/**
 * Listens and waits for SIGINT/SIGTERM (or the io abort signal). Shutdown stops accepting connections, lets
 * in-flight requests finish (up to server.shutdownTimeoutMs), then closes the app.
 */
async function listen(ctx: CliContext, app: Mlship, defaultModel: string | null): Promise<RunningServer> {
  const { config } = app;
  // Loaded here so registry commands do not pay for Fastify and prom-client at start-up.
  const { buildServer } = await import("../serve/index.js");
  const server = buildServer({
    scoring: app.scoring,
    registry: app.registry,
    logger: app.logger,
    bodyLimitBytes: config.server.bodyLimitBytes,
    defaultModel: defaultModel ?? undefined,
  });
  try {
    await server.listen({ host: config.server.host, port: config.server.port });
  } catch (error) {
    await server.close().catch(() => undefined);
    const code = (error as { code?: unknown }).code;
    const where = `${config.server.host}:${config.server.port}`;
    if (code === "EADDRINUSE" || code === "EACCES" || code === "EADDRNOTAVAIL") {
      const why = code === "EADDRINUSE" ? "is already in use" : code === "EACCES" ? "needs more privileges" : "is not an address of this machine";
      throw new MlshipError(
        "MLSHIP_ERR_CONFIG_INVALID",
        `cannot listen on ${where}: it ${why}; choose another with --port/--host (MLSHIP_PORT/MLSHIP_HOST)`,
        { field: code === "EADDRNOTAVAIL" ? "server.host" : "server.port", cause: error },
      );
    }
    throw error;
  }
  const address = server.server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  app.logger.info({ url, defaultModel }, "mlship is listening");

  const closed = new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (reason: string): void => {
      if (stopping) return;
      stopping = true;
      detach();
      app.logger.info({ reason }, "shutting down: draining in-flight requests");
      const force = setTimeout(() => {
        app.logger.warn({ timeoutMs: config.server.shutdownTimeoutMs }, "shutdown timeout: closing open connections");
        server.server.closeAllConnections();
      }, config.server.shutdownTimeoutMs);
      force.unref();
      server
        .close()
        .catch((err: unknown) => app.logger.error({ err }, "error while closing the server"))
        .finally(() => {
          clearTimeout(force);
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
  return { url, closed };
}

export function serveCommand(ctx: CliContext): Command {
  const cmd = new Command("serve").description(
    "serve every registered model over REST: Open Inference Protocol V2 (/v2/...) and MLflow (/invocations)",
  );
  addServeOptions(cmd, "model /invocations serves, resolved per request (env MLSHIP_DEFAULT_MODEL)");
  cmd.action(async (_opts: unknown, command: Command) => {
    const o = command.optsWithGlobals<ServeFlags>();
    const app = await ctx.app(o, serveFlags(o));
    const running = await listen(ctx, app, app.config.server.defaultModel);
    printLine(ctx.io, `mlship serving on ${running.url}`);
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
    const row = await exampleRow(resolved.packageDir, resolved.version.manifest);
    const name = resolved.version.name;
    printLine(ctx.io, `mlship serving on ${running.url}`);
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
    }
    printLine(ctx.io, "");
    printLine(ctx.io, "Stop with Ctrl+C.");
    await running.closed;
  });
  return cmd;
}
