/**
 * A pool of `worker_threads` workers that load models and run them off the caller's event loop.
 *
 * - `load` broadcasts to every worker (so any of them can serve a run), or to `spec.instances` of them (those holding
 *   the fewest models), and resolves when all of those have loaded; runs go only to them.
 * - `run` goes to the least-busy live worker that has the model ready (or, failing that, the least-busy one,
 *   which loads it lazily: the worker orders the run behind its load).
 * - A worker that dies rejects its in-flight requests with MLSHIP_ERR_RUNTIME_UNAVAILABLE; a replacement starts
 *   and re-loads the pool's models. Repeated crashes back off (up to 5 s) so a broken worker cannot spin.
 * - The pool never calls `Worker.terminate()`: on a worker inside native code (a run, a session load, the addon's
 *   own start-up) onnxruntime aborts the whole process. It raises the worker's stop flag instead, and the worker
 *   exits itself between two requests.
 * - A `.ts` worker URL (sources under vitest/tsx) starts through ts-worker-bootstrap.mjs; dist/ uses the .js.
 * - Idle workers are unref'd, so a pool that nobody closed does not keep a CLI process alive; a worker with
 *   requests in flight is ref'd, so awaiting a result does.
 */
import { once } from "node:events";
import os from "node:os";
import { Worker } from "node:worker_threads";
import { MlshipError, silentLogger } from "../../core/index.js";
import type { Logger } from "../../core/index.js";
import type { LoadSpec } from "../types.js";
import { isDataCloneError, prepareTransfer } from "./protocol.js";
import type {
  Feeds, ModelSignature, Outputs, PoolWorkerData, RequestType, ResultOf, WorkerReply, WorkerRequest,
} from "./protocol.js";

export interface WorkerPoolOptions {
  /** The worker script (it calls `serveWorker`). A `.ts` URL (running from sources) is started through tsx. */
  workerUrl: URL;
  /** Number of workers; defaults to `os.availableParallelism()`. */
  size?: number;
  /** Thread name prefix, shown in diagnostics. */
  name?: string;
  /** Passed to every worker as `workerData`. */
  workerData?: unknown;
  /** How long `close()` waits for in-flight requests before terminating the workers (ms, default 5000). */
  drainTimeoutMs?: number;
  logger?: Logger;
}

export interface PoolRunOptions {
  outputs?: string[];
  signal?: AbortSignal;
}

export interface WorkerStats {
  index: number;
  /** The current thread's id; null while a replacement is pending. */
  threadId: number | null;
  alive: boolean;
  /** Runs posted to this worker and not yet answered. */
  inFlight: number;
  runsCompleted: number;
  runsFailed: number;
  /** How many times this slot's worker was replaced. */
  restarts: number;
  /** Keys loaded and ready in this worker. */
  models: string[];
}

export interface PoolStats {
  size: number;
  closed: boolean;
  models: string[];
  workers: WorkerStats[];
}

interface Pending {
  type: RequestType;
  resolve(result: unknown): void;
  reject(error: MlshipError): void;
}

interface Slot {
  index: number;
  worker: Worker | undefined;
  /** The current worker's stop flag (Int32 slot 0), shared with it. */
  control: Int32Array;
  /** Bumped on every replacement so replies and load results from a dead worker are ignored. */
  generation: number;
  pending: Map<number, Pending>;
  runsInFlight: number;
  runsCompleted: number;
  runsFailed: number;
  restarts: number;
  consecutiveCrashes: number;
  ready: Set<string>;
  loading: Map<string, Promise<ModelSignature>>;
  lastError: Error | undefined;
  stopReason: string | undefined;
  respawnTimer: NodeJS.Timeout | undefined;
}

interface ModelEntry {
  spec: LoadSpec;
  ready: Promise<ModelSignature>;
  /** Indexes of the workers that hold this model (`spec.instances` of them); undefined: every worker. */
  slots: ReadonlySet<number> | undefined;
}

/** Runs a `.ts` worker entry from sources; see the file for why `--import tsx` in execArgv is not enough. */
const TS_BOOTSTRAP = new URL("./ts-worker-bootstrap.mjs", import.meta.url);

/** Errors produced because a worker went away; a load that meets one is retried on the replacement. */
const workerGone = new WeakSet<MlshipError>();

/** The worker script next to `moduleUrl`: `<dir>/<basename>.ts` from TypeScript sources, `.js` from `dist/`. */
export function siblingWorkerUrl(moduleUrl: string, basename: string): URL {
  const ext = new URL(moduleUrl).pathname.endsWith(".ts") ? ".ts" : ".js";
  return new URL(`./${basename}${ext}`, moduleUrl);
}

function unavailable(message: string, field?: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_RUNTIME_UNAVAILABLE", message, { field, retryAfterSeconds: 1 });
}

export class WorkerPool {
  readonly size: number;
  private readonly options: WorkerPoolOptions;
  private readonly logger: Logger;
  private readonly slots: Slot[] = [];
  private readonly models = new Map<string, ModelEntry>();
  private nextId = 1;
  private cursor = 0;
  private started = false;
  private closing: Promise<void> | undefined;

  constructor(options: WorkerPoolOptions) {
    const size = options.size ?? os.availableParallelism();
    if (!Number.isInteger(size) || size < 1) {
      throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `worker pool size must be a positive integer, got ${String(size)}`, {
        field: "workers",
      });
    }
    this.size = size;
    this.options = options;
    this.logger = options.logger ?? silentLogger();
  }

  get closed(): boolean {
    return this.closing !== undefined;
  }

  /** True when `key` was loaded (or is loading) and not unloaded since. */
  has(key: string): boolean {
    return this.models.has(key);
  }

  /** Loads a model in every worker; loading a key again returns the first load's result. */
  load(spec: LoadSpec): Promise<ModelSignature> {
    if (this.closed) return Promise.reject(unavailable(`cannot load ${spec.key}: the worker pool is closed`));
    const existing = this.models.get(spec.key);
    if (existing !== undefined) return existing.ready;
    this.start();
    const entry: ModelEntry = { spec, ready: Promise.resolve({ inputs: [], outputs: [] }), slots: this.assignSlots(spec) };
    entry.ready = this.broadcastLoad(spec, entry.slots).catch(async (error: unknown) => {
      if (this.models.get(spec.key) === entry) {
        this.models.delete(spec.key);
        await this.unloadEverywhere(spec.key).catch(() => undefined);
      }
      throw error;
    });
    this.models.set(spec.key, entry);
    return entry.ready;
  }

  /** Runs a loaded model on the least-busy worker. The typed arrays of `feeds` are transferred (detached). */
  run(key: string, feeds: Feeds, options: PoolRunOptions = {}): Promise<Outputs> {
    if (this.closed) return Promise.reject(unavailable(`cannot run ${key}: the worker pool is closed`));
    const entry = this.models.get(key);
    if (entry === undefined) {
      return Promise.reject(unavailable(`model ${key} is not loaded (it was never loaded or has been unloaded)`, key));
    }
    const { signal } = options;
    if (signal?.aborted === true) return Promise.reject(abortError(signal, key));
    const slot = this.pick(key);
    if (slot === undefined) return Promise.reject(unavailable(`cannot run ${key}: no inference worker is running; retry shortly`));
    if (!slot.ready.has(key) && !slot.loading.has(key)) this.loadOnSlot(slot, entry.spec).catch(() => undefined);
    const { tensors, transfer } = prepareTransfer(feeds);
    const request: WorkerRequest =
      options.outputs === undefined
        ? { id: this.nextId++, type: "run", key, feeds: tensors }
        : { id: this.nextId++, type: "run", key, feeds: tensors, outputs: options.outputs };
    const result = this.post(slot, request, transfer);
    return signal === undefined ? result : raceAbort(result, signal, key);
  }

  /** Frees `key` in every worker; unknown keys are ignored. */
  async unload(key: string): Promise<void> {
    if (this.closed) throw unavailable(`cannot unload ${key}: the worker pool is closed`);
    if (!this.models.delete(key)) return;
    await this.unloadEverywhere(key);
  }

  /**
   * Terminates one worker as if it had crashed: its in-flight requests reject with RUNTIME_UNAVAILABLE and a
   * replacement starts and re-loads the models. For tests and for recycling a misbehaving worker.
   */
  async terminateWorker(index: number): Promise<void> {
    const slot = this.slots[index];
    const worker = slot?.worker;
    if (slot === undefined || worker === undefined) return;
    slot.stopReason = "it was terminated";
    const exited = once(worker, "exit");
    Atomics.store(slot.control, 0, 1);
    // The worker checks its flag between requests; a no-op request wakes it if it is idle. Its queued requests
    // are then rejected like those of a crashed worker.
    this.post(slot, { id: this.nextId++, type: "unload", key: "" }, []).catch(() => undefined);
    await exited;
  }

  stats(): PoolStats {
    return {
      size: this.size,
      closed: this.closed,
      models: [...this.models.keys()],
      workers: this.slots.map((s) => ({
        index: s.index,
        threadId: s.worker?.threadId ?? null,
        alive: s.worker !== undefined,
        inFlight: s.runsInFlight,
        runsCompleted: s.runsCompleted,
        runsFailed: s.runsFailed,
        restarts: s.restarts,
        models: [...s.ready],
      })),
    };
  }

  /** Waits for in-flight requests (up to drainTimeoutMs), releases every model and stops the workers. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  // ---- internals ----

  private start(): void {
    if (this.started) return;
    this.started = true;
    for (let index = 0; index < this.size; index++) {
      const slot: Slot = {
        index, worker: undefined, control: new Int32Array(1), generation: 0, pending: new Map(), runsInFlight: 0, runsCompleted: 0, runsFailed: 0,
        restarts: 0, consecutiveCrashes: 0, ready: new Set(), loading: new Map(), lastError: undefined,
        stopReason: undefined, respawnTimer: undefined,
      };
      this.slots.push(slot);
      this.spawn(slot);
    }
  }

  private spawn(slot: Slot): void {
    const url = this.options.workerUrl;
    const name = `${this.options.name ?? "mlship-worker"}-${slot.index}`;
    const control = new SharedArrayBuffer(4);
    const workerData: PoolWorkerData = { control, data: this.options.workerData, mlshipPoolWorker: true };
    const worker = url.pathname.endsWith(".ts")
      ? new Worker(TS_BOOTSTRAP, { argv: [url.href], name, workerData })
      : new Worker(url, { name, workerData });
    slot.control = new Int32Array(control);
    worker.unref();
    slot.worker = worker;
    slot.generation += 1;
    slot.lastError = undefined;
    slot.stopReason = undefined;
    worker.on("message", (reply: WorkerReply) => this.onReply(slot, worker, reply));
    worker.on("error", (error: Error) => {
      slot.lastError = error;
    });
    worker.on("exit", (code: number) => this.onExit(slot, worker, code));
    for (const entry of this.models.values()) {
      if (entry.slots !== undefined && !entry.slots.has(slot.index)) continue;
      this.loadOnSlot(slot, entry.spec).catch((error: unknown) => {
        this.logger.warn({ err: error, worker: slot.index, model: entry.spec.key }, "replacement worker could not re-load a model");
      });
    }
  }

  private onReply(slot: Slot, worker: Worker, reply: WorkerReply): void {
    if (slot.worker !== worker) return;
    const pending = slot.pending.get(reply.id);
    if (pending === undefined) return;
    slot.pending.delete(reply.id);
    if (slot.pending.size === 0 && !this.closed) worker.unref();
    if (pending.type === "run") {
      slot.runsInFlight -= 1;
      if (reply.ok) slot.runsCompleted += 1;
      else slot.runsFailed += 1;
    }
    if (reply.ok) {
      slot.consecutiveCrashes = 0;
      pending.resolve(reply.result);
    } else {
      const { code, message, field } = reply.error;
      pending.reject(new MlshipError(code, message, { field }));
    }
  }

  private onExit(slot: Slot, worker: Worker, code: number): void {
    if (slot.worker !== worker) return;
    slot.worker = undefined;
    slot.ready.clear();
    slot.loading.clear();
    const why = slot.stopReason ?? `it exited with code ${code}${slot.lastError === undefined ? "" : ` (${slot.lastError.message})`}`;
    const pending = [...slot.pending.values()];
    slot.pending.clear();
    slot.runsInFlight = 0;
    for (const p of pending) {
      const error = unavailable(`inference worker ${slot.index} stopped while handling this request: ${why}; retry`);
      workerGone.add(error);
      p.reject(error);
    }
    if (this.closed) return;
    this.logger.error({ worker: slot.index, code, err: slot.lastError }, "inference worker stopped; starting a replacement");
    slot.restarts += 1;
    // A deliberate terminateWorker() is not a sign of a crash loop; only real crashes back off.
    if (slot.stopReason === undefined) slot.consecutiveCrashes += 1;
    const delay = slot.consecutiveCrashes <= 1 ? 0 : Math.min(5000, 100 * 2 ** (slot.consecutiveCrashes - 2));
    if (delay === 0) {
      this.spawn(slot);
    } else {
      slot.respawnTimer = setTimeout(() => {
        slot.respawnTimer = undefined;
        if (!this.closed) this.spawn(slot);
      }, delay);
      slot.respawnTimer.unref();
    }
  }

  private post<T extends RequestType>(slot: Slot, request: WorkerRequest & { type: T }, transfer: ArrayBuffer[]): Promise<ResultOf[T]> {
    const worker = slot.worker;
    if (worker === undefined) {
      const error = unavailable(`inference worker ${slot.index} is restarting; retry shortly`);
      workerGone.add(error);
      return Promise.reject(error);
    }
    return new Promise<ResultOf[T]>((resolve, reject) => {
      slot.pending.set(request.id, { type: request.type, resolve: (r) => resolve(r as ResultOf[T]), reject });
      if (request.type === "run") slot.runsInFlight += 1;
      if (slot.pending.size === 1) worker.ref();
      try {
        try {
          worker.postMessage(request, transfer);
        } catch (error) {
          // Some buffers cannot be moved (e.g. marked untransferable); cloning them still works.
          if (transfer.length > 0 && isDataCloneError(error)) worker.postMessage(request);
          else throw error;
        }
      } catch (error) {
        slot.pending.delete(request.id);
        if (request.type === "run") slot.runsInFlight -= 1;
        if (slot.pending.size === 0) worker.unref();
        const code = request.type === "load" ? "MLSHIP_ERR_RUNTIME_LOAD" : "MLSHIP_ERR_CORE_INTERNAL";
        const what = request.type === "load" && "spec" in request ? `the load request for ${request.spec.modelPath}` : `the ${request.type} request`;
        reject(new MlshipError(code, `cannot send ${what} to a worker: ${(error as Error).message}`, { cause: error }));
      }
    });
  }

  private loadOnSlot(slot: Slot, spec: LoadSpec): Promise<ModelSignature> {
    const generation = slot.generation;
    const loading = this.post(slot, { id: this.nextId++, type: "load", spec }, []);
    slot.loading.set(spec.key, loading);
    return loading.then(
      (signature) => {
        if (slot.generation === generation && slot.loading.get(spec.key) === loading) {
          slot.loading.delete(spec.key);
          slot.ready.add(spec.key);
        }
        return signature;
      },
      (error: unknown) => {
        if (slot.generation === generation && slot.loading.get(spec.key) === loading) slot.loading.delete(spec.key);
        throw error;
      },
    );
  }

  /** The workers a model with `spec.instances` goes to: those holding the fewest models, so versions spread out. */
  private assignSlots(spec: LoadSpec): ReadonlySet<number> | undefined {
    const n = spec.instances;
    if (n === undefined || !Number.isInteger(n) || n >= this.size || n < 1) return undefined;
    const load = new Array<number>(this.size).fill(0);
    for (const entry of this.models.values()) {
      for (let i = 0; i < this.size; i++) if (entry.slots === undefined || entry.slots.has(i)) load[i] = (load[i] ?? 0) + 1;
    }
    const order = [...load.keys()].sort((a, b) => (load[a] ?? 0) - (load[b] ?? 0) || a - b);
    return new Set(order.slice(0, n));
  }

  private async broadcastLoad(spec: LoadSpec, slots: ReadonlySet<number> | undefined): Promise<ModelSignature> {
    const live = this.slots.filter((s) => s.worker !== undefined && (slots === undefined || slots.has(s.index)));
    if (live.length === 0) throw unavailable(`cannot load ${spec.key}: no inference worker is running; retry shortly`);
    const results = await Promise.all(live.map((slot) => this.loadSurvivingCrash(slot, spec)));
    const signature = results.find((r): r is ModelSignature => !(r instanceof MlshipError));
    if (signature !== undefined) return signature;
    const why = results[0] instanceof MlshipError ? ` (${results[0].message})` : "";
    throw unavailable(`cannot load ${spec.key}: every inference worker stopped while loading it${why}`);
  }

  /** A worker that dies mid-load is replaced and re-loads the model itself; wait for that instead of failing. */
  private async loadSurvivingCrash(slot: Slot, spec: LoadSpec): Promise<ModelSignature | MlshipError> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await (slot.loading.get(spec.key) ?? this.loadOnSlot(slot, spec));
      } catch (error) {
        const gone = error instanceof MlshipError && workerGone.has(error);
        if (!gone || this.closed || !this.models.has(spec.key)) throw error;
        // No replacement yet (backing off): it re-loads the model when it starts; the others answer for now.
        if (slot.worker === undefined || attempt >= 2) return error;
      }
    }
  }

  private async unloadEverywhere(key: string): Promise<void> {
    const requests: Array<Promise<null>> = [];
    for (const slot of this.slots) {
      slot.ready.delete(key);
      slot.loading.delete(key);
      if (slot.worker !== undefined) requests.push(this.post(slot, { id: this.nextId++, type: "unload", key }, []));
    }
    const results = await Promise.allSettled(requests);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    // A worker that died meanwhile holds nothing any more; anything else is worth reporting.
    if (failed !== undefined && !(failed.reason instanceof MlshipError && workerGone.has(failed.reason))) throw failed.reason;
  }

  private pick(key: string): Slot | undefined {
    const allowed = this.models.get(key)?.slots;
    let best: Slot | undefined;
    let bestReady = false;
    const n = this.slots.length;
    // Start the scan at a rotating offset so equally idle workers share the work.
    const offset = this.cursor++ % n;
    for (let i = 0; i < n; i++) {
      const slot = this.slots[(offset + i) % n];
      if (slot?.worker === undefined) continue;
      if (allowed !== undefined && !allowed.has(slot.index)) continue;
      const ready = slot.ready.has(key);
      if (best === undefined || (ready && !bestReady) || (ready === bestReady && slot.pending.size < best.pending.size)) {
        best = slot;
        bestReady = ready;
      }
    }
    return best;
  }

  private async shutdown(): Promise<void> {
    const timeout = this.options.drainTimeoutMs ?? 5000;
    const inFlight = this.slots.flatMap((slot) =>
      [...slot.pending.values()].map((p) => new Promise<void>((resolve) => {
        const { resolve: res, reject: rej } = p;
        p.resolve = (r) => { res(r); resolve(); };
        p.reject = (e) => { rej(e); resolve(); };
      })),
    );
    if (inFlight.length > 0) await withTimeout(Promise.all(inFlight), timeout);
    await Promise.all(
      this.slots.map(async (slot) => {
        if (slot.respawnTimer !== undefined) clearTimeout(slot.respawnTimer);
        const worker = slot.worker;
        if (worker === undefined) return;
        slot.stopReason = "the worker pool was closed";
        const exited = once(worker, "exit");
        worker.ref(); // until it has exited, even after its last reply
        // The worker releases its sessions, answers and exits by itself (see worker-host.ts).
        this.post(slot, { id: this.nextId++, type: "close" }, []).catch(() => null);
        const gone = await withTimeout(exited, timeout);
        if (!gone) {
          // Stuck in a long native call: terminating could abort the process, so let it finish and exit alone.
          Atomics.store(slot.control, 0, 1);
          worker.unref();
          this.logger.warn({ worker: slot.index }, "inference worker still busy at close; it will exit when its run ends");
        }
      }),
    );
    this.models.clear();
  }
}

/** Resolves true when `promise` settles within `ms`, false otherwise. */
function withTimeout(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    timer.unref();
    promise.then(
      () => { clearTimeout(timer); resolve(true); },
      () => { clearTimeout(timer); resolve(true); },
    );
  });
}

function abortError(signal: AbortSignal, key: string): MlshipError {
  const reason: unknown = signal.reason;
  if (reason instanceof MlshipError) return reason;
  const why = reason instanceof Error ? reason.message : "aborted";
  return unavailable(`the run of ${key} was cancelled (${why})`);
}

function raceAbort<T>(promise: Promise<T>, signal: AbortSignal, key: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortError(signal, key));
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => { signal.removeEventListener("abort", onAbort); resolve(value); },
      (error: unknown) => { signal.removeEventListener("abort", onAbort); reject(error); },
    );
  });
}
