import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { Command } from "commander";
import type { Registry as PromRegistry } from "prom-client";
import { runStream } from "../app.js";
import { parseWindowSize } from "../monitor/windows.js";
import { MlshipError } from "../core/index.js";
import type * as StreamModule from "../stream/index.js";
import type { StreamJobConfig, StreamProgress, StreamSummary } from "../stream/index.js";
import { usageError } from "./args.js";
import { EXIT_INTERRUPTED } from "./batch.js";
import type { CliContext, GlobalOptions } from "./context.js";
import { printJson, printLine } from "./io.js";

interface RunFlags extends GlobalOptions {
  instance?: string;
  maxOutage?: string;
  metricsPort?: string;
  json?: boolean;
}

/**
 * The stream job's config file: the `FILE` argument, else `--config`. The root program owns `--config` (the mlship
 * config file) and commander hands it every `--config` on the line, so `mlship stream run --config stream.yaml` lands
 * there: with no `FILE`, it names the stream job, and the mlship config comes from MLSHIP_CONFIG or
 * ./mlship.config.yaml. `mlship -c mlship.yaml stream run stream.yaml` gives both.
 */
function streamConfigFile(file: string | undefined, o: GlobalOptions): { file: string; globals: GlobalOptions } {
  if (file !== undefined) return { file, globals: o };
  if (o.config === undefined) throw usageError("name the stream job's config: mlship stream run --config stream.yaml", "--config");
  return { file: o.config, globals: { ...o, config: undefined } };
}

// The stream module (NATS client, Parquet writer) and prom-client are loaded by the stream commands only, so other
// commands do not pay for them at start-up.
const streamModule = (): Promise<typeof StreamModule> => import("../stream/index.js");

async function loadJob(ctx: CliContext, file: string, globals: GlobalOptions): Promise<StreamJobConfig> {
  const config = ctx.loadConfig(globals).config;
  const { loadStreamConfig } = await streamModule();
  return loadStreamConfig(path.resolve(ctx.io.cwd, file), { home: config.home, env: ctx.io.env });
}

function metricsPort(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\s*\d+\s*$/.test(text) || !Number.isSafeInteger(n) || n > 65_535) {
    throw usageError(`--metrics-port must be a TCP port from 0 to 65535, got "${text}"`, "--metrics-port");
  }
  return n;
}

function progressLine(p: StreamProgress): string {
  const model = p.model === null ? "" : ` ${p.model}@${p.version ?? "?"}`;
  const lag = p.lag === null ? "" : `, lag ${p.lag}`;
  return `batch ${p.batchId}: ${p.numInputRows} in, ${p.numOutputRows} out, ${p.numDeadLetters} dead letters, ${p.durationMs.total} ms (${p.processedRowsPerSecond} rows/s)${model}${lag}`;
}

function summaryLine(s: StreamSummary): string {
  const why = s.error === null ? "" : `: ${s.error}`;
  return `stream ${s.stream} ${s.reason}${why} (${s.batches} batches, ${s.inputRows} rows in, ${s.outputRows} out, ${s.deadLetters} dead letters)`;
}

/** `/metrics` (Prometheus) and `/healthz` for a running stream. */
async function serveMetrics(
  port: number,
  host: string,
  registry: PromRegistry,
  health: () => { ok: boolean; body: Record<string, unknown> },
): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? "/").split("?")[0];
    if (req.method === "GET" && url === "/metrics") {
      registry.metrics().then(
        (text) => {
          res.writeHead(200, { "content-type": registry.contentType });
          res.end(text);
        },
        (error: unknown) => {
          res.writeHead(500, { "content-type": "text/plain" });
          res.end(String(error));
        },
      );
      return;
    }
    if (req.method === "GET" && url === "/healthz") {
      const { ok, body } = health();
      res.writeHead(ok ? 200 : 503, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
      return;
    }
    res.writeHead(404, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: "not found: GET /metrics or /healthz" }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  }).catch((error: unknown) => {
    throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `cannot serve metrics on ${host}:${port}: ${(error as Error).message}`, { field: "--metrics-port", cause: error });
  });
  return server;
}

/** `--max-outage`: a duration such as 90s, 15m or 2h, or 0. */
function maxOutage(text: string | undefined): number {
  if (text === undefined || text.trim() === "0") return 0;
  try {
    return parseWindowSize(text.trim());
  } catch {
    throw usageError(`--max-outage must be a duration such as 90s, 15m or 2h (or 0), got ${JSON.stringify(text)}`, "--max-outage");
  }
}

function runCommand(ctx: CliContext): Command {
  return new Command("run")
    .description("run a stream job: micro-batches from a folder or NATS JetStream, scored into sinks, until the trigger ends or SIGINT/SIGTERM")
    .argument("[file]", "the stream job's config (YAML or JSON); or give it with --config")
    .option("--config <file>", "the stream job's config (see the note on --config below)")
    .option("--instance <name>", "this process's own checkpoint state, for several processes sharing one NATS durable consumer")
    .option("--metrics-port <port>", "serve GET /metrics (Prometheus) and /healthz on this port (0: any free one; default off)")
    .option("--json", "print each micro-batch's progress as a JSON line (the default when stdout is not a terminal)")
    .option("--max-outage <duration>", "how long to wait for a source, sink or store that is down before failing (e.g. 90s, 15m, 2h; 0: fail after the first retries)", "15m")
    .addHelpText(
      "after",
      [
        "",
        "--config after `stream run` names the stream job (the mlship config then comes from MLSHIP_CONFIG or",
        "./mlship.config.yaml); to give both: mlship -c mlship.yaml stream run stream.yaml",
        "",
        "Exit codes: 0 the trigger ran out (availableNow, once) or a signal stopped it after its batch in flight;",
        "1 the stream failed (a source or sink stayed unavailable, the config is invalid); 2 bad command line;",
        "130 a second SIGINT/SIGTERM stopped it at once (the batch in flight is replayed on restart).",
        "Docs: docs/streaming.md",
      ].join("\n"),
    )
    .action(async (file: string | undefined, _opts: unknown, command: Command) => {
      const o = command.optsWithGlobals<RunFlags>();
      const port = metricsPort(o.metricsPort);
      const { file: jobFile, globals } = streamConfigFile(file, o);
      const job = await loadJob(ctx, jobFile, globals);
      const app = await ctx.app(globals);
      const stdout = ctx.io.stdout as { write(chunk: string): unknown; isTTY?: boolean };
      const json = o.json === true || stdout.isTTY !== true;

      const { createStreamMetrics } = await streamModule();
      const { Registry } = await import("prom-client");
      const registry = new Registry();
      const metrics = createStreamMetrics(registry);
      const stopper = new AbortController();
      let signals = 0;
      const onSignal = (): void => {
        signals += 1;
        if (signals === 1) {
          app.logger.info({ stream: job.name }, "stopping after the micro-batch in flight (send the signal again to stop at once)");
          stopper.abort();
          return;
        }
        // A second signal: the operator wants out now; the uncommitted batch is replayed by the next run.
        process.exit(EXIT_INTERRUPTED);
      };
      if (ctx.io.handleSignals) {
        process.on("SIGINT", onSignal);
        process.on("SIGTERM", onSignal);
      }
      const onAbort = (): void => stopper.abort();
      if (ctx.io.signal?.aborted === true) stopper.abort();
      else ctx.io.signal?.addEventListener("abort", onAbort, { once: true });

      let server: http.Server | undefined;
      try {
        const handle = await runStream(app, job, {
          ...(o.instance === undefined ? {} : { instance: o.instance }),
          maxOutageMs: maxOutage(o.maxOutage),
          signal: stopper.signal,
          metrics,
          onProgress: (p) => {
            if (json) printLine(ctx.io, JSON.stringify(p));
            else printLine(ctx.io, progressLine(p));
          },
        });
        if (port !== undefined) {
          let finished: StreamSummary | null = null;
          void handle.done.then((s) => {
            finished = s;
          });
          server = await serveMetrics(port, app.config.server.host, registry, () => {
            const last = handle.lastProgress();
            const body = { stream: job.name, status: finished === null ? "running" : (finished as StreamSummary).reason, lastBatchId: last?.batchId ?? null, lastBatchAt: last?.timestamp ?? null };
            return { ok: finished === null || (finished as StreamSummary).reason !== "failed", body };
          });
          const address = server.address() as AddressInfo;
          app.logger.info({ url: `http://${app.config.server.host}:${address.port}/metrics` }, "stream metrics listening");
          ctx.io.stderr.write(`mlship: stream metrics on http://${app.config.server.host}:${address.port}/metrics\n`);
        }
        const summary = await handle.done;
        if (json) printLine(ctx.io, JSON.stringify({ summary }));
        else printLine(ctx.io, summaryLine(summary));
        if (summary.reason === "failed") {
          throw handle.failure() ?? new MlshipError("MLSHIP_ERR_CORE_INTERNAL", `stream ${job.name} failed: ${summary.error ?? "unknown error"}`);
        }
      } catch (error) {
        // Stop the stream if something after its start failed (the metrics port taken); it then closes its parts.
        stopper.abort();
        throw error;
      } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
        ctx.io.signal?.removeEventListener("abort", onAbort);
        if (server !== undefined) {
          const open = server;
          await new Promise<void>((resolve) => open.close(() => resolve()));
        }
      }
    });
}

function validateCommand(ctx: CliContext): Command {
  return new Command("validate")
    .description("check a stream job's config and print it resolved (defaults filled in, paths absolute, the model's columns) as JSON")
    .argument("[file]", "the stream job's config (YAML or JSON); or give it with --config")
    .option("--config <file>", "the stream job's config")
    .action(async (file: string | undefined, _opts: unknown, command: Command) => {
      const o = command.optsWithGlobals<GlobalOptions>();
      const { file: jobFile, globals } = streamConfigFile(file, o);
      const job = await loadJob(ctx, jobFile, globals);
      const app = await ctx.app(globals);
      const { effectiveFields, featureColumns, modelSchema } = await streamModule();
      const resolved = await app.scoring.resolve(job.model);
      const { schema, declared } = modelSchema(job.schema, resolved.version.manifest.signature);
      const fields = effectiveFields(schema, schema.fromModel ? declared : undefined);
      const features = featureColumns(job, fields.map((f) => f.name), declared);
      printJson(ctx.io, {
        ...job,
        schema: { ...schema, fields },
        resolved: { model: resolved.version.name, version: resolved.version.version, columns: declared ?? null, features },
      });
    });
}

/** `mlship stream run | validate`. */
export function streamCommand(ctx: CliContext): Command {
  return new Command("stream")
    .description("streaming prediction: micro-batches from folders or NATS JetStream into sinks, with aggregations and joins")
    .addCommand(runCommand(ctx))
    .addCommand(validateCommand(ctx));
}
