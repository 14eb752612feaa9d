/**
 * Retraining triggers: when a drift or quality alert fires for the version a model's `production` alias serves,
 * the model's policy hook (a webhook, a shell command, or both) is called with a RetrainContext and a JSON Lines
 * file of recent predictions joined with their outcomes. At most one call per model per cool-down, remembered in
 * memory and in the audit log (so a restart does not call again early).
 */
import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import type { Logger } from "../core/index.js";
import type { PredictionStore } from "../feedback/index.js";
import { parseWindowSize } from "../monitor/index.js";
import type { Alert, AlertSink } from "../monitor/index.js";
import type { Registry } from "../registry/index.js";
import type { RetrainContext, RetrainHook, RolloutService } from "./types.js";

/** The alias whose version alerts must be about to trigger retraining. */
export const RETRAIN_ALIAS = "production";
export const RETRAIN_ACTOR = "mlship-retrain";
export const DEFAULT_RETRAIN_COOLDOWN = "1h";
export const DEFAULT_RETRAIN_TIMEOUT_SECONDS = 600;
/** The recent data exported when no alert names a window. */
export const DEFAULT_RECENT_WINDOW = "1d";
/** Bytes of a command's output (stdout and stderr together) kept for the audit log. */
export const COMMAND_OUTPUT_TAIL_BYTES = 4096;
export const RETRAIN_WEBHOOK_TIMEOUT_MS = 10_000;
export const RETRAIN_WEBHOOK_RETRIES = 2;
/** A command still running this long after SIGTERM gets SIGKILL. */
const KILL_GRACE_MS = 2000;

export interface WebhookOutcome {
  url: string;
  ok: boolean;
  /** HTTP status of the last answer; null when none came (network error, timeout). */
  status: number | null;
  attempts: number;
  error?: string;
}

export interface CommandOutcome {
  command: string;
  /** null when the command was killed by a signal or could not start. */
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  /** The last 4 KiB of stdout and stderr, interleaved as they came. */
  output: string;
  durationMs: number;
  error?: string;
}

export interface RunCommandOptions {
  /** Written to the command's stdin. */
  input: string;
  env: NodeJS.ProcessEnv;
  timeoutMs: number;
  cwd?: string;
}

export type RunCommand = (command: string, options: RunCommandOptions) => Promise<CommandOutcome>;

/** What one model's handling came to. */
export interface RetrainOutcome {
  model: string;
  version: number | null;
  /**
   * `triggered`: the hooks were called (see `ok`); `cooldown`: called too recently; `skipped`: nothing to do (no
   * hook, alerts about another version or of a family the hook ignores); `failed`: an error before the hooks ran.
   */
  status: "triggered" | "cooldown" | "skipped" | "failed";
  /** Every hook called succeeded (exit code 0, HTTP 2xx). */
  ok: boolean;
  reason: string;
  context?: RetrainContext;
  contextPath?: string;
  webhook?: WebhookOutcome;
  command?: CommandOutcome;
}

export interface RetrainTriggerOptions {
  /** Policies (`getPolicy`) and the audit log. */
  rollouts: Pick<RolloutService, "getPolicy" | "audit">;
  registry: Pick<Registry, "getModel">;
  /** The prediction store's export, bound to its store. */
  exportPredictions: PredictionStore["exportPredictions"];
  /** Live quality of a version over a trailing window (label), for the context's `metrics`. */
  quality?: (model: string, version: number, window: string) => Promise<Record<string, number | null>>;
  /** Where the recent-data and context files are written, e.g. `<home>/retrain`. */
  dataDir: string;
  serverUrl: string | null;
  home: string;
  /** The store URL with any password redacted (what the context JSON names). */
  store: string;
  /**
   * The store URL itself, for the command's `MLSHIP_STORE` (a hook that registers a version through the CLI
   * needs the password the redacted one lacks). Default `store`.
   */
  storeUrl?: string;
  logger: Logger;
  now?: () => Date;
  runCommand?: RunCommand;
  /** Per webhook attempt. Default 10 s. */
  webhookTimeoutMs?: number;
  /** Wait before webhook retry n is `backoffMs * 2^(n-1)`. Default 500. */
  webhookBackoffMs?: number;
}

function family(alert: Alert): "quality" | "drift" {
  return alert.kind === "quality" ? "quality" : "drift";
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Keeps the last `limit` bytes of a stream of chunks. */
class OutputTail {
  #chunks: Buffer[] = [];
  #bytes = 0;
  constructor(private readonly limit: number) {}

  push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#bytes += chunk.length;
    while (this.#chunks.length > 1 && this.#bytes - (this.#chunks[0]?.length ?? 0) >= this.limit) {
      this.#bytes -= this.#chunks.shift()?.length ?? 0;
    }
  }

  text(): string {
    const all = Buffer.concat(this.#chunks);
    return all.subarray(Math.max(0, all.length - this.limit)).toString("utf8");
  }
}

/**
 * Runs `command` through the shell in its own process group, the input on stdin; kills the whole group (SIGTERM,
 * then SIGKILL) after `timeoutMs`. Never rejects.
 */
export const runShellCommand: RunCommand = (command, options) =>
  new Promise((resolve) => {
    const started = Date.now();
    const tail = new OutputTail(COMMAND_OUTPUT_TAIL_BYTES);
    let timedOut = false;
    let spawnError: string | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    const child = spawn(command, { shell: true, detached: true, env: options.env, cwd: options.cwd, stdio: ["pipe", "pipe", "pipe"] });
    const killGroup = (signal: NodeJS.Signals): void => {
      try {
        // The shell's own children (the real job) are in its group: kill them all, not only the shell.
        if (child.pid !== undefined) process.kill(-child.pid, signal);
      } catch {
        child.kill(signal);
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup("SIGTERM");
      killTimer = setTimeout(() => killGroup("SIGKILL"), KILL_GRACE_MS);
    }, options.timeoutMs);
    child.stdout.on("data", (chunk: Buffer) => tail.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => tail.push(chunk));
    // A command that never reads stdin closes it early: that is not an error of the hook.
    child.stdin.on("error", () => undefined);
    child.on("error", (error) => {
      spawnError = error.message;
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (killTimer !== undefined) clearTimeout(killTimer);
      resolve({
        command,
        exitCode: code,
        signal,
        timedOut,
        output: tail.text(),
        durationMs: Date.now() - started,
        ...(spawnError === undefined ? {} : { error: spawnError }),
      });
    });
    child.stdin.end(options.input);
  });

/** POSTs the context as JSON; retries network errors, timeouts and 5xx answers. Never rejects. */
async function postContext(url: string, body: string, timeoutMs: number, backoffMs: number): Promise<WebhookOutcome> {
  let attempts = 0;
  let status: number | null = null;
  let error: string | undefined;
  for (let n = 0; n <= RETRAIN_WEBHOOK_RETRIES; n++) {
    if (n > 0) await sleep(backoffMs * 2 ** (n - 1));
    attempts++;
    try {
      const response = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body, signal: AbortSignal.timeout(timeoutMs) });
      await response.arrayBuffer().catch(() => undefined);
      status = response.status;
      if (response.ok) return { url, ok: true, status, attempts };
      error = `HTTP ${response.status}`;
      if (response.status < 500) break;
    } catch (caught) {
      status = null;
      const name = (caught as Error).name;
      error = name === "TimeoutError" || name === "AbortError" ? `no answer within ${timeoutMs} ms` : errorText(caught);
    }
  }
  return { url, ok: false, status, attempts, ...(error === undefined ? {} : { error }) };
}

/**
 * Calls a model's retraining hook when drift or quality alerts fire for its production version. `handle` never
 * throws: failures are logged and recorded in the audit log as `retrain.trigger` entries with the outcome.
 */
export class RetrainTrigger {
  private readonly lastCall = new Map<string, number>();
  /** Models whose last call was read from the audit log already. */
  private readonly loaded = new Set<string>();
  /** Per model, the handling in progress: calls for one model run one after another so the cool-down holds. */
  private readonly chains = new Map<string, Promise<unknown>>();
  private readonly pending = new Set<Promise<unknown>>();
  private readonly now: () => Date;
  private readonly runCommand: RunCommand;

  constructor(private readonly options: RetrainTriggerOptions) {
    this.now = options.now ?? (() => new Date());
    this.runCommand = options.runCommand ?? runShellCommand;
  }

  /** Handles fired alerts (any models); resolves with one outcome per model once its hooks are done. */
  async handle(alerts: readonly Alert[]): Promise<RetrainOutcome[]> {
    const byModel = new Map<string, Alert[]>();
    for (const alert of alerts) {
      const list = byModel.get(alert.model);
      if (list === undefined) byModel.set(alert.model, [alert]);
      else list.push(alert);
    }
    const runs = [...byModel].map(([model, list]) => {
      const previous = this.chains.get(model) ?? Promise.resolve();
      const run = previous.then(() => this.handleModel(model, list));
      this.chains.set(model, run);
      this.pending.add(run);
      run
        .finally(() => {
          this.pending.delete(run);
          if (this.chains.get(model) === run) this.chains.delete(model);
        })
        // handleModel reports its own failures; this only keeps a surprise from becoming an unhandled rejection.
        .catch(() => undefined);
      return run;
    });
    return Promise.all(runs);
  }

  /** Resolves once every handling started so far has finished (for sinks that do not wait, and for shutdown). */
  async idle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  private async handleModel(model: string, alerts: readonly Alert[]): Promise<RetrainOutcome> {
    const { logger } = this.options;
    let version: number | null = null;
    let attempted = false;
    try {
      const policy = await this.options.rollouts.getPolicy(model);
      const hook = policy.retrain;
      if (hook === null || (hook.webhook === undefined && hook.command === undefined)) return skipped(model, null, "the model's policy has no retraining hook");
      const target = (await this.options.registry.getModel(model)).aliases[RETRAIN_ALIAS];
      if (target === undefined) return skipped(model, null, `the model has no '${RETRAIN_ALIAS}' alias`);
      version = target;
      const families = hook.on ?? ["drift", "quality"];
      const relevant = alerts.filter((a) => a.version === target && families.includes(family(a)));
      if (relevant.length === 0) return skipped(model, target, `no ${families.join(" or ")} alert about ${model}@${target} (the '${RETRAIN_ALIAS}' version)`);

      const cooldownMs = parseWindowSize(hook.cooldown ?? DEFAULT_RETRAIN_COOLDOWN);
      const last = await this.lastCallOf(model);
      const nowMs = this.now().getTime();
      if (last !== undefined && nowMs - last < cooldownMs) {
        const next = new Date(last + cooldownMs).toISOString();
        logger.info({ event: "retrain_cooldown", model, version: target, next }, `retraining of ${model} not triggered: called less than ${hook.cooldown ?? DEFAULT_RETRAIN_COOLDOWN} ago (next at ${next})`);
        return { model, version: target, status: "cooldown", ok: false, reason: `cool-down until ${next}` };
      }
      // Set before the hooks run: a failing hook still waits out the cool-down instead of being called on every alert.
      this.lastCall.set(model, nowMs);
      attempted = true;
      return await this.trigger(model, target, relevant, hook);
    } catch (error) {
      logger.error({ event: "retrain_failed", model, err: error }, `retraining trigger for ${model} failed: ${errorText(error)}`);
      // Only a failed call is recorded: an entry is what the cool-down counts from after a restart.
      if (attempted) await this.audit(model, version, `retraining trigger failed: ${errorText(error)}`, { ok: false, error: errorText(error), alerts: alerts.map((a) => a.id) });
      return { model, version, status: "failed", ok: false, reason: errorText(error) };
    }
  }

  private async lastCallOf(model: string): Promise<number | undefined> {
    if (!this.loaded.has(model)) {
      this.loaded.add(model);
      try {
        const [latest] = await this.options.rollouts.audit.list({ model, action: "retrain.trigger", limit: 1 });
        const at = latest === undefined ? Number.NaN : Date.parse(latest.at);
        if (Number.isFinite(at) && at > (this.lastCall.get(model) ?? Number.NEGATIVE_INFINITY)) this.lastCall.set(model, at);
      } catch (error) {
        // Without the log the in-memory time still holds for this process.
        this.loaded.delete(model);
        this.options.logger.warn({ event: "retrain_audit_unreadable", model, err: error }, `could not read the last retraining call of ${model}: ${errorText(error)}`);
      }
    }
    return this.lastCall.get(model);
  }

  private async trigger(model: string, version: number, alerts: readonly Alert[], hook: RetrainHook): Promise<RetrainOutcome> {
    const { logger } = this.options;
    const at = this.now();
    const windowed = alerts.filter((a) => a.window !== undefined);
    const end = windowed.length > 0 ? new Date(Math.max(...windowed.map((a) => Date.parse(a.window?.end ?? "")))) : at;
    const start = windowed.length > 0 ? new Date(Math.min(...windowed.map((a) => Date.parse(a.window?.start ?? "")))) : new Date(at.getTime() - parseWindowSize(DEFAULT_RECENT_WINDOW));
    const windowSize = windowed[0]?.window?.size ?? DEFAULT_RECENT_WINDOW;

    await fs.mkdir(this.options.dataDir, { recursive: true });
    const stamp = at.toISOString().replace(/[:.]/g, "-");
    const dataPath = path.join(this.options.dataDir, `${model}-${stamp}.jsonl`);
    const rows = await this.exportRecent(dataPath, { model, version, start: start.toISOString(), end: end.toISOString(), withOutcomeOnly: true });

    let metrics: Record<string, number | null> = {};
    if (this.options.quality !== undefined) {
      try {
        metrics = await this.options.quality(model, version, windowSize);
      } catch (error) {
        logger.warn({ event: "retrain_quality_unavailable", model, version, err: error }, `live quality of ${model}@${version} unavailable for the retraining context: ${errorText(error)}`);
      }
    }
    const context: RetrainContext = {
      model,
      version,
      alias: RETRAIN_ALIAS,
      alerts: alerts.map((a) => ({ id: a.id, kind: a.kind, message: a.message, ...(a.window === undefined ? {} : { window: { ...a.window } }), value: a.value })),
      metrics,
      recentData: { path: dataPath, rows, start: start.toISOString(), end: end.toISOString() },
      mlship: { url: this.options.serverUrl, home: this.options.home, store: this.options.store },
      at: at.toISOString(),
    };
    const contextPath = path.join(this.options.dataDir, `${model}-${stamp}.context.json`);
    const body = JSON.stringify(context);
    await fs.writeFile(contextPath, `${JSON.stringify(context, null, 2)}\n`);

    const [webhook, command] = await Promise.all([
      hook.webhook === undefined ? undefined : postContext(hook.webhook, body, this.options.webhookTimeoutMs ?? RETRAIN_WEBHOOK_TIMEOUT_MS, this.options.webhookBackoffMs ?? 500),
      hook.command === undefined
        ? undefined
        : this.runCommand(hook.command, {
            input: body,
            env: { ...process.env, MLSHIP_RETRAIN_CONTEXT: contextPath, MLSHIP_HOME: this.options.home, MLSHIP_STORE: this.options.storeUrl ?? this.options.store },
            timeoutMs: (hook.timeoutSeconds ?? DEFAULT_RETRAIN_TIMEOUT_SECONDS) * 1000,
          }).catch((error: unknown): CommandOutcome => ({ command: hook.command ?? "", exitCode: null, signal: null, timedOut: false, output: "", durationMs: 0, error: errorText(error) })),
    ]);
    const ok = (webhook === undefined || webhook.ok) && (command === undefined || (command.exitCode === 0 && command.error === undefined));
    const summary = [
      webhook === undefined ? undefined : `webhook ${webhook.ok ? "ok" : "failed"} (${webhook.status === null ? webhook.error ?? "no answer" : `HTTP ${webhook.status}`})`,
      command === undefined ? undefined : `command ${command.timedOut ? `timed out after ${hook.timeoutSeconds ?? DEFAULT_RETRAIN_TIMEOUT_SECONDS} s` : command.exitCode === null ? `ended by ${command.signal ?? command.error ?? "an error"}` : `exit code ${command.exitCode}`}`,
    ]
      .filter((x) => x !== undefined)
      .join(", ");
    const reason = `${alerts.length} alert${alerts.length === 1 ? "" : "s"} on ${model}@${version}: ${summary}`;
    const line = { event: "retrain_trigger", model, version, ok, rows, webhook: webhook?.status, exitCode: command?.exitCode };
    if (ok) logger.info(line, `retraining of ${model} triggered: ${summary}`);
    else logger.error(line, `retraining hook of ${model} failed: ${summary}`);
    await this.audit(model, version, reason, {
      ok,
      alerts: alerts.map((a) => a.id),
      recentData: context.recentData,
      contextPath,
      ...(webhook === undefined ? {} : { webhook }),
      ...(command === undefined ? {} : { command }),
    });
    return { model, version, status: "triggered", ok, reason, context, contextPath, ...(webhook === undefined ? {} : { webhook }), ...(command === undefined ? {} : { command }) };
  }

  /** Writes the recent joined predictions as JSON Lines; returns the rows written. */
  private async exportRecent(file: string, query: Parameters<PredictionStore["exportPredictions"]>[0]): Promise<number> {
    const handle = await fs.open(file, "w");
    let rows = 0;
    try {
      let buffer: string[] = [];
      for await (const row of this.options.exportPredictions(query)) {
        buffer.push(JSON.stringify(row));
        rows++;
        if (buffer.length >= 1000) {
          await handle.write(`${buffer.join("\n")}\n`);
          buffer = [];
        }
      }
      if (buffer.length > 0) await handle.write(`${buffer.join("\n")}\n`);
    } finally {
      await handle.close();
    }
    return rows;
  }

  private async audit(model: string, version: number | null, reason: string, details: Record<string, unknown>): Promise<void> {
    try {
      await this.options.rollouts.audit.record({ actor: RETRAIN_ACTOR, action: "retrain.trigger", model, ...(version === null ? {} : { version }), reason, details });
    } catch (error) {
      this.options.logger.error({ event: "retrain_audit_failed", model, err: error }, `could not record the retraining call of ${model}: ${errorText(error)}`);
    }
  }
}

function skipped(model: string, version: number | null, reason: string): RetrainOutcome {
  return { model, version, status: "skipped", ok: false, reason };
}

/**
 * An alert sink (for monitoring's and the feedback loop's Alerters) that hands fired alerts to the trigger without
 * waiting for the hooks: a retraining command may run for minutes. `trigger.idle()` waits for them.
 */
export function retrainSink(trigger: RetrainTrigger): AlertSink {
  return {
    name: "retrain",
    send(alerts) {
      trigger.handle(alerts).catch(() => undefined);
      return Promise.resolve();
    },
  };
}
