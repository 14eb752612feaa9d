import fs from "node:fs/promises";
import path from "node:path";
import { Command } from "commander";
import { MlshipClient, MlshipClientError, NETWORK_ERROR } from "../client/index.js";
import type { Deployment, DeploymentRollout, DeploymentSettings, PredictInput, UpdateDeploymentRequest } from "../client/index.js";
import { MlshipError, toMlshipError } from "../core/index.js";
import { usageError } from "./args.js";
import type { CliContext, GlobalOptions } from "./context.js";
import { formatTable, printJson, printLine } from "./io.js";
import { parsePercentFlag } from "./rollout.js";

interface ServerFlags {
  url?: string;
  token?: string;
  json?: boolean;
}

interface SettingsFlags {
  model?: string;
  workers?: string;
  batching?: string;
  maxBatchSize?: string;
  maxDelayMs?: string;
  preferredBatchSizes?: string;
  cache?: string;
  cacheTtl?: string;
  maxQueue?: string;
  timeoutMs?: string;
  maxRequestRows?: string;
  rolloutStrategy?: string;
  rolloutCandidate?: string;
  rolloutPercent?: string;
  rolloutSticky?: string;
  noRollout?: boolean;
}

function globals<T>(cmd: Command): GlobalOptions & T {
  return cmd.optsWithGlobals<GlobalOptions & T>();
}

function int(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\s*\d+\s*$/.test(text)) throw usageError(`${flag} must be a whole number, got "${text}"`, flag);
  return Number(text);
}

function onOff(text: string | undefined, flag: string): boolean | undefined {
  if (text === undefined) return undefined;
  if (text === "on" || text === "true") return true;
  if (text === "off" || text === "false") return false;
  throw usageError(`${flag} must be on or off, got "${text}"`, flag);
}

/** The settings the flags name (only those: an update changes nothing else). */
function settingsOf(o: SettingsFlags): DeploymentSettings | undefined {
  const settings: DeploymentSettings = {};
  const workers = int(o.workers, "--workers");
  if (workers !== undefined) settings.workers = workers;
  const batching: NonNullable<DeploymentSettings["batching"]> = {};
  const enabled = onOff(o.batching, "--batching");
  if (enabled !== undefined) batching.enabled = enabled;
  const maxBatch = int(o.maxBatchSize, "--max-batch-size");
  if (maxBatch !== undefined) batching.max_batch_size = maxBatch;
  const maxDelay = int(o.maxDelayMs, "--max-delay-ms");
  if (maxDelay !== undefined) batching.max_delay_ms = maxDelay;
  if (o.preferredBatchSizes !== undefined) batching.preferred_batch_sizes = o.preferredBatchSizes.split(",").map((x) => int(x, "--preferred-batch-sizes") as number);
  if (Object.keys(batching).length > 0) settings.batching = batching;
  const cache: NonNullable<DeploymentSettings["cache"]> = {};
  const cacheOn = onOff(o.cache, "--cache");
  if (cacheOn !== undefined) cache.enabled = cacheOn;
  const ttl = int(o.cacheTtl, "--cache-ttl");
  if (ttl !== undefined) cache.ttl_seconds = ttl;
  if (Object.keys(cache).length > 0) settings.cache = cache;
  const maxQueue = int(o.maxQueue, "--max-queue");
  if (maxQueue !== undefined) settings.max_queue = maxQueue;
  const timeout = int(o.timeoutMs, "--timeout-ms");
  if (timeout !== undefined) settings.timeout_ms = timeout;
  const rows = int(o.maxRequestRows, "--max-request-rows");
  if (rows !== undefined) settings.max_request_rows = rows;
  return Object.keys(settings).length === 0 ? undefined : settings;
}

/** The rollout the flags describe; `--rollout-candidate` is what asks for one. */
function rolloutOf(o: SettingsFlags): DeploymentRollout | undefined {
  if (o.rolloutCandidate === undefined) {
    for (const [value, flag] of [[o.rolloutStrategy, "--rollout-strategy"], [o.rolloutPercent, "--rollout-percent"], [o.rolloutSticky, "--rollout-sticky"]] as const) {
      if (value !== undefined) throw usageError(`${flag} needs --rollout-candidate (the version the rollout sends traffic to)`, flag);
    }
    return undefined;
  }
  const strategy = o.rolloutStrategy ?? "canary";
  if (strategy !== "canary" && strategy !== "shadow" && strategy !== "ab") throw usageError(`--rollout-strategy must be canary, shadow or ab, got "${strategy}"`, "--rollout-strategy");
  const candidate = /^\s*\d+\s*$/.test(o.rolloutCandidate) ? Number(o.rolloutCandidate) : o.rolloutCandidate;
  const rollout: DeploymentRollout = { strategy, candidate };
  if (o.rolloutPercent !== undefined) rollout.percent = parsePercentFlag(o.rolloutPercent, "--rollout-percent");
  const sticky = onOff(o.rolloutSticky, "--rollout-sticky");
  if (sticky !== undefined) rollout.sticky = sticky;
  return rollout;
}

function addServerOptions(cmd: Command): Command {
  return cmd
    .option("--url <url>", "the mlship server (env MLSHIP_URL, default http://127.0.0.1:8080)")
    .option("--token <token>", "the server's admin token (env MLSHIP_ADMIN_TOKEN)")
    .option("--json", "print JSON");
}

function addSettingsOptions(cmd: Command): Command {
  return cmd
    .option("--workers <n>", "worker instances that load the version")
    .option("--batching <on|off>", "adaptive batching")
    .option("--max-batch-size <n>", "most rows one batched run holds")
    .option("--max-delay-ms <n>", "most a request waits for others to join its batch")
    .option("--preferred-batch-sizes <a,b>", "batch sizes sent at once when reached, e.g. 4,8")
    .option("--cache <on|off>", "prediction cache")
    .option("--cache-ttl <seconds>", "prediction cache entry lifetime")
    .option("--max-queue <n>", "requests queued or running before 429")
    .option("--timeout-ms <n>", "per-request deadline before 503")
    .option("--max-request-rows <n>", "most rows one request may carry before 413")
    .option("--rollout-candidate <version|ref>", "start a rollout of this version (3 or name@3) against the alias's version")
    .option("--rollout-strategy <canary|shadow|ab>", "how the rollout splits traffic (default canary)")
    .option("--rollout-percent <n>", "share of traffic (canary, ab) or of requests shadowed, e.g. 10%")
    .option("--rollout-sticky <on|off>", "same business key, same arm (default on)");
}

/** Client errors as the CLI reports them: `mlship: <message> [<code>]`, the server's code kept. */
function cliError(error: unknown, url: string): unknown {
  if (!(error instanceof MlshipClientError)) return error;
  if (error.code === NETWORK_ERROR) {
    return new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `${error.message} (check --url or MLSHIP_URL)`, { field: "--url", cause: error });
  }
  // A server error body carries one of mlship's codes; toMlshipError keeps it (and the field).
  const converted = toMlshipError({ name: error.name, message: error.message, code: error.code, field: error.field });
  return converted.code === "MLSHIP_ERR_CORE_INTERNAL" ? new MlshipError("MLSHIP_ERR_CORE_INTERNAL", `${error.message} (${url})`, { cause: error }) : converted;
}

function clientOf(ctx: CliContext, o: GlobalOptions & ServerFlags): MlshipClient {
  const env = ctx.io.env;
  const url = o.url ?? (env.MLSHIP_URL === undefined || env.MLSHIP_URL === "" ? "http://127.0.0.1:8080" : env.MLSHIP_URL);
  const token = o.token ?? (env.MLSHIP_ADMIN_TOKEN === "" ? undefined : env.MLSHIP_ADMIN_TOKEN);
  const user = o.user ?? (env.MLSHIP_USER === "" ? undefined : env.MLSHIP_USER);
  try {
    // The CLI's own environment decides (ctx.io.env), never the process's: an explicit undefined means no token.
    return new MlshipClient({ url, token, ...(user === undefined ? {} : { user }) });
  } catch (error) {
    if (error instanceof MlshipClientError) throw usageError(error.message, "--url");
    throw error;
  }
}

async function withClient<T>(ctx: CliContext, o: GlobalOptions & ServerFlags, fn: (client: MlshipClient) => Promise<T>): Promise<T> {
  const client = clientOf(ctx, o);
  try {
    return await fn(client);
  } catch (error) {
    throw cliError(error, client.url);
  }
}

function settingsText(settings: DeploymentSettings): string {
  const parts: string[] = [];
  const flat = (prefix: string, value: unknown): void => {
    if (typeof value === "object" && value !== null && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) flat(prefix === "" ? k : `${prefix}.${k}`, v);
    } else parts.push(`${prefix}=${Array.isArray(value) ? value.join(",") : String(value)}`);
  };
  flat("", settings);
  return parts.join(" ");
}

function rolloutText(rollout: DeploymentRollout | null): string {
  if (rollout === null) return "";
  return `${rollout.strategy} ${String(rollout.candidate)} ${rollout.percent ?? 10}%`;
}

function printDeployment(ctx: CliContext, d: Deployment): void {
  const rows: [string, string][] = [
    ["name", d.name],
    ["model", d.model],
    ["resolved", d.resolved === null ? "" : `${d.resolved.model}@${d.resolved.version}`],
    ["state", d.state],
    ["settings", settingsText(d.settings)],
    ["rollout", rolloutText(d.rollout)],
    ["rollout id", d.rollout_id ?? ""],
    ["created", `${d.created_at} by ${d.created_by}`],
    ["updated", `${d.updated_at} by ${d.updated_by}`],
  ];
  if (d.error !== undefined) rows.push(["error", d.error]);
  printLine(ctx.io, formatTable(["FIELD", "VALUE"], rows));
}

async function readInput(file: string, cwd: string): Promise<PredictInput> {
  const abs = path.resolve(cwd, file);
  let text: string;
  try {
    text = await fs.readFile(abs, "utf8");
  } catch (error) {
    throw usageError(`cannot read --input ${file}: ${(error as Error).message}`, "--input");
  }
  if (/\.csv$/i.test(file)) return text;
  try {
    return JSON.parse(text) as PredictInput;
  } catch (error) {
    throw usageError(`--input ${file} is not JSON (an MLflow body or a list of rows) nor a .csv file: ${(error as Error).message}`, "--input");
  }
}

export function deploymentsCommand(ctx: CliContext): Command {
  const deployments = new Command("deployments").description("create, change and call deployments on a running mlship server (local or remote)");

  addSettingsOptions(
    addServerOptions(
      deployments
        .command("create")
        .description("create a deployment: a name bound to a model reference, serving settings and an optional rollout")
        .argument("<name>", "deployment name (a-z, 0-9, '.', '_', '-')")
        .requiredOption("--model <ref>", "the model it serves: name, name@production or name@3"),
    ),
  ).action(async (name: string, _opts: unknown, cmd: Command) => {
    const o = globals<ServerFlags & SettingsFlags>(cmd);
    const settings = settingsOf(o);
    const rollout = rolloutOf(o);
    const created = await withClient(ctx, o, (client) =>
      client.createDeployment({ name, model: o.model as string, ...(settings === undefined ? {} : { settings }), ...(rollout === undefined ? {} : { rollout }) }),
    );
    if (o.json === true) return printJson(ctx.io, created);
    printDeployment(ctx, created);
  });

  addSettingsOptions(
    addServerOptions(
      deployments
        .command("update")
        .description("change a deployment's model, settings (only those named) or rollout")
        .argument("<name>", "deployment name")
        .option("--model <ref>", "serve another model reference")
        .option("--no-rollout", "end the rollout this deployment started"),
    ),
  ).action(async (name: string, _opts: unknown, cmd: Command) => {
    const o = globals<ServerFlags & SettingsFlags & { rollout?: boolean }>(cmd);
    const change: UpdateDeploymentRequest = {};
    if (o.model !== undefined) change.model = o.model;
    const settings = settingsOf(o);
    if (settings !== undefined) change.settings = settings;
    const rollout = rolloutOf(o);
    if (o.rollout === false) {
      if (rollout !== undefined) throw usageError("--no-rollout and --rollout-candidate contradict each other", "--no-rollout");
      change.rollout = null;
    } else if (rollout !== undefined) change.rollout = rollout;
    if (Object.keys(change).length === 0) throw usageError("nothing to change: give --model, a setting or a rollout flag", "update");
    const updated = await withClient(ctx, o, (client) => client.updateDeployment(name, change));
    if (o.json === true) return printJson(ctx.io, updated);
    printDeployment(ctx, updated);
  });

  addServerOptions(deployments.command("delete").description("remove a deployment (and end the rollout it started)").argument("<name>", "deployment name")).action(
    async (name: string, _opts: unknown, cmd: Command) => {
      const o = globals<ServerFlags>(cmd);
      await withClient(ctx, o, (client) => client.deleteDeployment(name));
      if (o.json === true) return printJson(ctx.io, { deleted: name });
      printLine(ctx.io, `deleted deployment ${name}`);
    },
  );

  addServerOptions(deployments.command("list").description("list the deployments with what they resolve to and their state")).action(
    async (_opts: unknown, cmd: Command) => {
      const o = globals<ServerFlags>(cmd);
      const list = await withClient(ctx, o, (client) => client.listDeployments());
      if (o.json === true) return printJson(ctx.io, list);
      const rows = list.map((d) => [
        d.name,
        d.model,
        d.resolved === null ? "" : `${d.resolved.model}@${d.resolved.version}`,
        d.state,
        settingsText(d.settings),
        rolloutText(d.rollout),
      ]);
      printLine(ctx.io, formatTable(["NAME", "MODEL", "RESOLVED", "STATE", "SETTINGS", "ROLLOUT"], rows));
    },
  );

  addServerOptions(deployments.command("get").description("show one deployment").argument("<name>", "deployment name")).action(
    async (name: string, _opts: unknown, cmd: Command) => {
      const o = globals<ServerFlags>(cmd);
      const found = await withClient(ctx, o, (client) => client.getDeployment(name));
      if (o.json === true) return printJson(ctx.io, found);
      printDeployment(ctx, found);
    },
  );

  addServerOptions(
    deployments
      .command("predict")
      .description("predict through a deployment: --input is a JSON file (MLflow body or list of rows) or a .csv file")
      .argument("<name>", "deployment name")
      .requiredOption("--input <file>", "rows to score: .json (MLflow body or a list of rows) or .csv with a header row")
      .option("--key <key>", "business key (x-mlship-key): logged, and sticky rollouts route by it"),
  ).action(async (name: string, _opts: unknown, cmd: Command) => {
    const o = globals<ServerFlags & { input: string; key?: string }>(cmd);
    const input = await readInput(o.input, ctx.io.cwd);
    const result = await withClient(ctx, o, (client) => client.predict(name, input, o.key === undefined ? {} : { key: o.key }));
    if (o.json === true) return printJson(ctx.io, { predictions: result.predictions, model_version: result.modelVersion, variant: result.variant });
    printJson(ctx.io, result.predictions);
  });

  return deployments;
}
