/**
 * One custom wrapper's child process, seen from the server: start it under Node's permission model, load the
 * wrapper, queue predict calls to it one at a time, and keep it alive.
 *
 * - A call that takes longer than `timeout_ms`: the child is SIGKILLed, that call fails MLSHIP_ERR_RUNTIME_TIMEOUT,
 *   a new child starts at once and runs `load` again; calls queued behind it run there.
 * - A child that dies (a crash, the heap limit `memory_mb`): the call in flight fails MLSHIP_ERR_RUNTIME_WRAPPER
 *   naming why ("out of memory", the exit code or signal), and a new child starts with a growing delay (100 ms
 *   doubling to 5 s; reset by the next successful call) so a wrapper that always crashes cannot spin.
 * - A restart whose `load` fails fails the queued calls with MLSHIP_ERR_RUNTIME_LOAD; the next call tries again.
 * - Nothing a wrapper does reaches the server's own process: it shares no memory, no event loop, no file
 *   descriptors but the IPC channel and the child's stdout/stderr (logged).
 *
 * Why a child process and not a worker thread: Node's permission model is process-wide (conventions.md).
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { copyFile, mkdir, mkdtemp, realpath, rm, stat, symlink } from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { MlshipError } from "../../core/index.js";
import type { Logger, Tensor } from "../../core/index.js";
import type { Manifest } from "../../package/index.js";
import type { ChildMessage, HostFailure, HostInit, WireTensor, WireTensorSpec } from "./protocol.js";

export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_MEMORY_MB = 512;
/** `load` (with the process start) gets at least this long, whatever `timeout_ms` says: it opens sessions. */
const MIN_LOAD_TIMEOUT_MS = 30_000;
const MAX_BACKOFF_MS = 5_000;

/** The native addons a bundle leaves external (docs/custom-models.md); the child resolves them to mlship's copies. */
const EXTERNALS = ["sharp", "onnxruntime-node"] as const;

export interface WrapperProcessOptions {
  key: string;
  root: string;
  manifest: Manifest;
  name: string;
  version: number;
  logger: Logger;
  /** How long `close()` lets the wrapper's `close` run before the child is killed (ms). */
  closeGraceMs: number;
  /** Called once when `close()` starts. */
  onClose?: () => void;
}

interface Call {
  id: number;
  feeds: Record<string, WireTensor>;
  rows: number;
  resolve(outputs: Record<string, Tensor>): void;
  reject(error: MlshipError): void;
  started: number;
  signal: AbortSignal | undefined;
}

interface Installed {
  /** mlship's own code folder that holds this file (src/runtime/custom or dist/runtime/custom). */
  codeDir: string;
  /** mlship's package.json (Node reads it to know that dist/*.js are ES modules). */
  packageJson: string;
  /** Real package folders of the external addons, by name (missing when not installed). */
  externals: Map<string, string>;
  /** The node_modules folders that hold them (their own dependencies sit next to them). */
  nodeModules: Set<string>;
  onnxUrl: string | null;
}

let installed: Installed | undefined;

function findInstalled(): Installed {
  if (installed !== undefined) return installed;
  const here = fileURLToPath(import.meta.url);
  const codeDir = path.dirname(here);
  const require = createRequire(import.meta.url);
  const externals = new Map<string, string>();
  const nodeModules = new Set<string>();
  let onnxUrl: string | null = null;
  for (const name of EXTERNALS) {
    let entry: string;
    try {
      entry = require.resolve(name);
    } catch {
      continue;
    }
    const marker = `${path.sep}node_modules${path.sep}${name}${path.sep}`;
    const at = entry.lastIndexOf(marker);
    if (at < 0) continue;
    externals.set(name, entry.slice(0, at + marker.length - 1));
    nodeModules.add(entry.slice(0, at + `${path.sep}node_modules`.length));
    if (name === "onnxruntime-node") onnxUrl = pathToFileURL(entry).href;
  }
  installed = { codeDir, packageJson: path.resolve(codeDir, "../../../package.json"), externals, nodeModules, onnxUrl };
  return installed;
}

/** A folder for the permission flags: Node 20 grants a folder's contents with a trailing `/*`. */
function tree(dir: string): string {
  return `${dir}${path.sep}*`;
}

export function customLimits(manifest: Manifest): { timeoutMs: number; memoryMb: number; allowRead: string[]; allowWrite: boolean } {
  const c = manifest.custom ?? {};
  return {
    timeoutMs: c.timeout_ms ?? DEFAULT_TIMEOUT_MS,
    memoryMb: c.memory_mb ?? DEFAULT_MEMORY_MB,
    allowRead: c.allow_read ?? [],
    allowWrite: c.allow_write === true,
  };
}

function specsOf(specs: Manifest["signature"]["inputs"]): WireTensorSpec[] {
  return specs.map((s) => (s.content_type === undefined ? { name: s.name, dtype: s.dtype, shape: s.shape.slice() } : { name: s.name, dtype: s.dtype, shape: s.shape.slice(), content_type: s.content_type }));
}

/**
 * Feeds as they go over IPC. Structured clone sends a typed array's whole underlying buffer, so a view into a larger
 * one (a batch split, a parsed body) is copied down to its own elements first.
 */
function wireFeeds(feeds: Record<string, Tensor>): Record<string, WireTensor> {
  const out: Record<string, WireTensor> = {};
  for (const [name, t] of Object.entries(feeds)) {
    const data = t.data;
    const view = ArrayBuffer.isView(data) && data.byteLength !== data.buffer.byteLength;
    out[name] = view ? { dtype: t.dtype, shape: t.shape, data: (data as Float32Array).slice() } : (t as WireTensor);
  }
  return out;
}

function wrapperError(message: string, field?: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_RUNTIME_WRAPPER", message, field === undefined ? {} : { field });
}

export class WrapperProcess {
  readonly key: string;
  private readonly options: WrapperProcessOptions;
  private readonly limits: ReturnType<typeof customLimits>;
  private readonly label: string;
  private child: ChildProcess | undefined;
  /** Bumped per child, so events of a child that was replaced are ignored. */
  private generation = 0;
  private state: "idle" | "starting" | "ready" | "broken" | "closing" | "closed" = "idle";
  private readonly queue: Call[] = [];
  private current: Call | undefined;
  private timer: NodeJS.Timeout | undefined;
  private nextId = 1;
  private crashes = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private starting: Promise<void> | undefined;
  /** The run folder being made (open): close waits for it, or it would remove the folder before it exists. */
  private preparing: Promise<void> | undefined;
  private runDir: string | undefined;
  private scratchDir: string | null = null;
  private bundleCopy: string | undefined;
  private hostScript: string | undefined;
  private killedFor: "timeout" | "close" | "load" | undefined;
  private stderrTail = "";
  private exited: Promise<void> = Promise.resolve();
  private closing: Promise<void> | undefined;
  /** Restarts so far (tests and diagnostics). */
  restarts = 0;

  constructor(options: WrapperProcessOptions) {
    this.options = options;
    this.key = options.key;
    this.limits = customLimits(options.manifest);
    this.label = `${options.name}@${options.version}`;
  }

  /** Prepares the run folder, starts the child and runs the wrapper's `load`; throws MLSHIP_ERR_RUNTIME_LOAD. */
  async open(): Promise<void> {
    try {
      this.preparing = this.prepare();
      await this.preparing;
      await this.start();
    } catch (error) {
      await this.close();
      throw error;
    }
    // Closed while loading (an unload or runtime close): no child was started, or it was killed.
    if (this.state === "closing" || this.state === "closed") {
      await this.closing;
      throw new MlshipError("MLSHIP_ERR_RUNTIME_UNAVAILABLE", `cannot load ${this.label}: it was unloaded while loading`, { retryAfterSeconds: 1 });
    }
  }

  /** The process id of the current child (tests); undefined while none runs. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  run(feeds: Record<string, Tensor>, signal?: AbortSignal): Promise<Record<string, Tensor>> {
    if (this.state === "closing" || this.state === "closed") {
      return Promise.reject(new MlshipError("MLSHIP_ERR_RUNTIME_UNAVAILABLE", `cannot run ${this.label}: its wrapper is closed`, { retryAfterSeconds: 1 }));
    }
    if (signal?.aborted === true) return Promise.reject(this.abortError(signal));
    const first = Object.values(feeds)[0];
    const rows = first === undefined || first.shape.length === 0 ? 1 : (first.shape[0] as number);
    return new Promise((resolve, reject) => {
      const call: Call = { id: this.nextId++, feeds: wireFeeds(feeds), rows, resolve, reject, started: 0, signal };
      this.queue.push(call);
      if (signal !== undefined) {
        signal.addEventListener("abort", () => {
          // Only a call still waiting can be withdrawn; one in the child runs to its end (or its timeout).
          const at = this.queue.indexOf(call);
          if (at >= 0) {
            this.queue.splice(at, 1);
            reject(this.abortError(signal));
          }
        }, { once: true });
      }
      // A version whose last restart failed to load tries again on demand, still backing off.
      if (this.state === "broken") this.restart(this.backoffMs());
      this.pump();
    });
  }

  /**
   * Runs the wrapper's `close`, ends the child (killed after the grace period; at once while it is still loading),
   * removes the run folders. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.options.onClose?.();
    const wasRunning = this.child !== undefined && this.state === "ready";
    this.state = "closing";
    clearTimeout(this.restartTimer);
    for (const call of this.queue.splice(0)) {
      call.reject(new MlshipError("MLSHIP_ERR_RUNTIME_UNAVAILABLE", `${this.label} was unloaded before its wrapper ran the call`, { retryAfterSeconds: 1 }));
    }
    const child = this.child;
    if (child !== undefined) {
      this.ref(true);
      const exited = this.exited;
      if (wasRunning && child.connected) child.send({ type: "close" });
      else this.kill("close");
      const grace = setTimeout(() => this.kill("close"), this.options.closeGraceMs);
      await exited;
      clearTimeout(grace);
    }
    this.state = "closed";
    await this.preparing?.catch(() => undefined);
    if (this.runDir !== undefined) await rm(this.runDir, { recursive: true, force: true }).catch(() => undefined);
    if (this.scratchDir !== null) await rm(this.scratchDir, { recursive: true, force: true }).catch(() => undefined);
  }

  /**
   * The run folder: a copy of the bundle next to a node_modules with links to mlship's own sharp and
   * onnxruntime-node, so the bundle's external imports resolve wherever the package lives (a registry folder has
   * no node_modules). Node resolves the links to their real paths, which the child may read.
   */
  private async prepare(): Promise<void> {
    const { root, manifest } = this.options;
    const inst = findInstalled();
    // Real paths: the permission model compares the paths the child opens with the granted ones.
    this.runDir = await realpath(await mkdtemp(path.join(os.tmpdir(), "mlship-custom-")));
    const modules = path.join(this.runDir, "node_modules");
    await mkdir(modules);
    for (const [name, dir] of inst.externals) await symlink(dir, path.join(modules, name), "dir");
    // `.mjs` makes the copy an ES module wherever it lies (no package.json around it); a `.cjs` bundle stays CommonJS.
    this.bundleCopy = path.join(this.runDir, manifest.files.model.endsWith(".cjs") ? "wrapper.cjs" : "wrapper.mjs");
    await copyFile(path.join(root, manifest.files.model), this.bundleCopy);
    if (this.limits.allowWrite) this.scratchDir = await realpath(await mkdtemp(path.join(os.tmpdir(), "mlship-scratch-")));
    const here = fileURLToPath(import.meta.url);
    if (here.endsWith(".ts")) {
      // From sources (vitest, tsx): tsx's loader hooks need a worker thread, which the child may not start, so the
      // host is bundled to plain JS first. dist/ runs host.js as it is.
      const { build } = await import("esbuild");
      this.hostScript = path.join(this.runDir, "host.mjs");
      await build({
        entryPoints: [path.join(path.dirname(here), "host.ts")], bundle: true, platform: "node", format: "esm", target: "node20",
        outfile: this.hostScript, logLevel: "silent",
      });
    } else {
      this.hostScript = path.join(path.dirname(here), "host.js");
    }
  }

  private async argsAndInit(): Promise<{ args: string[]; init: HostInit }> {
    const { manifest, name, version } = this.options;
    const inst = findInstalled();
    const root = await realpath(this.options.root);
    const runDir = this.runDir as string;
    const read = new Set<string>([tree(root), tree(runDir), tree(inst.codeDir), inst.packageJson]);
    for (const dir of inst.nodeModules) read.add(tree(dir));
    // A folder is granted as `DIR/*`, anything else as itself. Never both: Node 20 aborts at start-up on `X` next
    // to `X/*` (an assertion in its permission tree).
    for (const extra of this.limits.allowRead) {
      const abs = path.resolve(extra);
      const isDir = await stat(abs).then((s) => s.isDirectory(), () => false);
      read.add(isDir ? tree(abs) : abs);
    }
    if (this.scratchDir !== null) read.add(tree(this.scratchDir));
    const args = [
      "--experimental-permission",
      ...[...read].map((p) => `--allow-fs-read=${p}`),
      ...(this.scratchDir === null ? [] : [`--allow-fs-write=${tree(this.scratchDir)}`]),
      // sharp and onnxruntime-node are native addons; an addon runs outside the permission model (documented).
      "--allow-addons",
      `--max-old-space-size=${this.limits.memoryMb}`,
      "--no-warnings",
      this.hostScript as string,
    ];
    const artifacts: Record<string, string> = {};
    for (const [key, rel] of Object.entries(manifest.files)) artifacts[key] = path.join(root, rel);
    const init: HostInit = {
      type: "init",
      bundle: this.bundleCopy as string,
      onnxUrl: inst.onnxUrl,
      model: { name, version },
      artifacts,
      config: manifest.custom?.config ?? {},
      inputs: specsOf(manifest.signature.inputs),
      outputs: specsOf(manifest.signature.outputs),
      scratchDir: this.scratchDir,
    };
    return { args, init };
  }

  /** Starts a child and resolves once its wrapper has loaded. */
  private start(): Promise<void> {
    this.starting ??= this.startChild().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  private async startChild(): Promise<void> {
    const { args, init } = await this.argsAndInit();
    if (this.state === "closing" || this.state === "closed") return;
    this.state = "starting";
    this.killedFor = undefined;
    this.stderrTail = "";
    const generation = ++this.generation;
    // A minimal environment: the server's variables (tokens, database URLs) are none of the wrapper's business.
    const env: NodeJS.ProcessEnv = {};
    for (const k of ["TZ", "LANG", "LC_ALL", "NODE_ENV"]) if (process.env[k] !== undefined) env[k] = process.env[k];
    const child = spawn(process.execPath, args, {
      stdio: ["ignore", "pipe", "pipe", "ipc"],
      serialization: "advanced",
      env,
      cwd: this.runDir,
    });
    this.child = child;
    let onExit!: () => void;
    this.exited = new Promise<void>((resolve) => {
      onExit = resolve;
    });
    const log = this.options.logger;
    const tags = { model: this.options.name, version: this.options.version, pid: child.pid };
    child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
      for (const line of chunk.split("\n")) if (line.trim() !== "") log.info({ ...tags, stream: "stdout" }, line);
    });
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      this.stderrTail = (this.stderrTail + chunk).slice(-4096);
      for (const line of chunk.split("\n")) if (line.trim() !== "") log.warn({ ...tags, stream: "stderr" }, line);
    });
    const loadTimeoutMs = Math.max(this.limits.timeoutMs, MIN_LOAD_TIMEOUT_MS);
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const settle = (error?: MlshipError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(loadTimer);
        if (error === undefined) resolve();
        else reject(error);
      };
      const loadTimer = setTimeout(() => {
        this.kill("load");
        settle(new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", `cannot load ${this.label}: its wrapper did not finish load() within ${loadTimeoutMs} ms`, { field: "custom.timeout_ms" }));
      }, loadTimeoutMs);
      child.on("message", (message: ChildMessage) => {
        if (generation !== this.generation) return;
        switch (message.type) {
          case "ready":
            this.state = this.state === "starting" ? "ready" : this.state;
            this.ref(false);
            settle();
            this.pump();
            break;
          case "load-failed":
            this.kill("load");
            settle(new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", `cannot load ${this.label}: ${message.error.message}`, { field: "custom.entry" }));
            break;
          case "result":
          case "failed":
            this.answer(message);
            break;
          case "log": {
            const fields = { ...(message.fields ?? {}), model: this.options.name, version: this.options.version, source: "wrapper" };
            log[message.level](fields, message.message);
            break;
          }
          case "closed":
            break;
        }
      });
      child.on("error", (error) => {
        if (generation !== this.generation) return;
        settle(new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", `cannot start the wrapper process of ${this.label}: ${error.message}`, { cause: error }));
      });
      // "close" rather than "exit": it comes after stderr has been read to its end, which says "heap out of memory".
      child.on("close", (code, signal) => {
        onExit();
        if (generation !== this.generation) return;
        this.child = undefined;
        const why = this.exitReason(code, signal);
        if (!settled) {
          settle(new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", `cannot load ${this.label}: the wrapper process died during load (${why})`, { field: "custom.entry" }));
          return;
        }
        this.onChildGone(why);
      });
      child.send(init);
    });
  }

  private exitReason(code: number | null, signal: NodeJS.Signals | null): string {
    if (this.killedFor === "timeout") return `killed after ${this.limits.timeoutMs} ms (custom.timeout_ms)`;
    // "close" comes after stderr has ended, so V8's own report of a heap exhausted is there when it happened.
    if (/heap out of memory|Reached heap limit|Allocation failed - JavaScript heap/i.test(this.stderrTail)) {
      return `out of memory (heap limit custom.memory_mb = ${this.limits.memoryMb} MiB)`;
    }
    const errorLine = this.stderrTail.split("\n").find((l) => /^(\w*(Error|Exception)\b.*:|#\s+Assertion failed|FATAL ERROR)/.test(l.trim()));
    const base = signal !== null ? `killed by ${signal}` : `exit code ${String(code)}`;
    return errorLine === undefined ? base : `${base}: ${errorLine.trim().slice(0, 300)}`;
  }

  /** A child that was running is gone: fail the call in flight and start another one. */
  private onChildGone(why: string): void {
    clearTimeout(this.timer);
    const killedFor = this.killedFor;
    const call = this.current;
    this.current = undefined;
    if (this.state === "closing" || this.state === "closed") {
      call?.reject(new MlshipError("MLSHIP_ERR_RUNTIME_UNAVAILABLE", `${this.label} was unloaded while its wrapper ran the call`, { retryAfterSeconds: 1 }));
      return;
    }
    if (killedFor === "load") return;
    if (call !== undefined && killedFor !== "timeout") {
      call.reject(wrapperError(`the wrapper process of ${this.label} died: ${why}; it is being restarted`));
      this.logCall(call, "died");
    }
    this.options.logger.warn({ model: this.options.name, version: this.options.version, reason: why }, "custom wrapper process ended; restarting it");
    // A timeout restarts at once (the wrapper was healthy, only slow); crashes back off.
    const delay = killedFor === "timeout" ? 0 : this.backoffMs();
    if (killedFor !== "timeout") this.crashes++;
    this.restart(delay);
  }

  /** 100 ms doubling per consecutive failure, up to 5 s. */
  private backoffMs(): number {
    return Math.min(100 * 2 ** this.crashes, MAX_BACKOFF_MS);
  }

  private restart(delayMs: number): void {
    if (this.restartTimer !== undefined || this.starting !== undefined) return;
    this.state = "starting";
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      this.restarts++;
      this.start().catch((error: unknown) => {
        const e = error instanceof MlshipError ? error : new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", String(error));
        if (this.state === "closing" || this.state === "closed") return;
        this.state = "broken";
        this.crashes++;
        this.options.logger.error({ err: e, model: this.options.name, version: this.options.version }, "custom wrapper failed to load again");
        for (const call of this.queue.splice(0)) call.reject(e);
        this.ref(false);
      });
    }, delayMs);
  }

  private pump(): void {
    if (this.state !== "ready" || this.current !== undefined) return;
    const child = this.child;
    if (child === undefined || !child.connected) return;
    let call = this.queue.shift();
    while (call !== undefined && call.signal?.aborted === true) {
      call.reject(this.abortError(call.signal));
      call = this.queue.shift();
    }
    if (call === undefined) {
      this.ref(false);
      return;
    }
    this.ref(true);
    this.current = call;
    call.started = performance.now();
    child.send({ type: "predict", id: call.id, feeds: call.feeds });
    this.timer = setTimeout(() => this.onTimeout(call), this.limits.timeoutMs);
  }

  private onTimeout(call: Call): void {
    if (this.current !== call) return;
    call.reject(new MlshipError("MLSHIP_ERR_RUNTIME_TIMEOUT", `the wrapper of ${this.label} did not answer within ${this.limits.timeoutMs} ms (custom.timeout_ms); its process is restarted`, {
      field: "custom.timeout_ms",
      retryAfterSeconds: 1,
    }));
    this.logCall(call, "timeout");
    this.kill("timeout");
  }

  private answer(message: Extract<ChildMessage, { type: "result" | "failed" }>): void {
    const call = this.current;
    // A child being killed (the call timed out) may still deliver its answer, read after the kill: that call has
    // failed already, and taking the answer would send the next call to the dying child (never answered).
    if (call === undefined || call.id !== message.id || this.killedFor !== undefined) return;
    clearTimeout(this.timer);
    this.current = undefined;
    if (message.type === "result") {
      this.crashes = 0;
      call.resolve(message.outputs as Record<string, Tensor>);
      this.logCall(call, "ok");
    } else {
      call.reject(this.failure(message.error));
      this.logCall(call, message.error.kind === "input" ? "input_error" : "error", message.error.message);
    }
    this.pump();
  }

  private failure(error: HostFailure): MlshipError {
    if (error.kind === "input") return new MlshipError("MLSHIP_ERR_INPUT_INVALID", error.message, error.field === undefined ? {} : { field: error.field });
    if (error.kind === "load") return new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", `cannot load ${this.label}: ${error.message}`);
    return wrapperError(`the wrapper of ${this.label} failed: ${error.message}`, error.field);
  }

  /** The audit line: one per predict call. */
  private logCall(call: Call, outcome: string, error?: string): void {
    const ms = Math.round((performance.now() - call.started) * 100) / 100;
    const fields: Record<string, unknown> = { model: this.options.name, version: this.options.version, rows: call.rows, ms, outcome };
    if (error !== undefined) fields.error = error;
    this.options.logger.info(fields, "custom wrapper predict");
  }

  private kill(reason: "timeout" | "close" | "load"): void {
    const child = this.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    this.killedFor = reason;
    child.kill("SIGKILL");
  }

  /** A busy child keeps the server's event loop alive; an idle one does not (a CLI that forgot close() still exits). */
  private ref(busy: boolean): void {
    const child = this.child;
    if (child === undefined) return;
    const handles = [child, child.channel, child.stdout, child.stderr] as Array<{ ref?(): void; unref?(): void } | null | undefined>;
    for (const h of handles) {
      if (busy) h?.ref?.();
      else h?.unref?.();
    }
  }

  private abortError(signal: AbortSignal): MlshipError {
    const reason: unknown = signal.reason;
    if (reason instanceof MlshipError) return reason;
    const why = reason instanceof Error ? reason.message : "aborted";
    return new MlshipError("MLSHIP_ERR_RUNTIME_UNAVAILABLE", `the run of ${this.label} was cancelled (${why})`, { retryAfterSeconds: 1 });
  }
}
