import { performance } from "node:perf_hooks";
import { allocate, MlshipError } from "../core/index.js";
import type { Tensor, TensorData } from "../core/index.js";
import type { ServingSettings, TensorSpec } from "../package/index.js";
import type { LoadedModel, RunOptions } from "../runtime/index.js";

/** The serving settings a lane acts on, every field filled (defaults <- package <- registry override). */
export interface LaneSettings {
  batching: { enabled: boolean; maxBatchSize: number; maxDelayMs: number; preferred: readonly number[] };
  maxQueue: number;
  timeoutMs: number;
  /** Runs of this version that may be in flight at once (its worker instances). */
  instances: number;
}

/** Server-wide defaults, overridden per version by the package's `serving` section and the registry. */
export const DEFAULT_SERVING: Required<Pick<ServingSettings, "max_queue" | "timeout_ms" | "max_request_rows">> & {
  batching: { enabled: boolean; max_batch_size: number; max_delay_ms: number };
} = { batching: { enabled: true, max_batch_size: 64, max_delay_ms: 2 }, max_queue: 256, timeout_ms: 30_000, max_request_rows: 65_536 };

/** Field-by-field merge: later layers win where they set a value. */
export function mergeServing(...layers: ReadonlyArray<ServingSettings | undefined>): ServingSettings {
  const out: ServingSettings = {};
  for (const layer of layers) {
    if (layer === undefined) continue;
    if (layer.batching !== undefined) out.batching = { ...out.batching, ...stripUndefined(layer.batching) };
    if (layer.cache !== undefined) out.cache = { ...out.cache, ...stripUndefined(layer.cache) };
    if (layer.max_queue !== undefined) out.max_queue = layer.max_queue;
    if (layer.timeout_ms !== undefined) out.timeout_ms = layer.timeout_ms;
    if (layer.max_request_rows !== undefined) out.max_request_rows = layer.max_request_rows;
    if (layer.instances !== undefined) out.instances = layer.instances;
  }
  return out;
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(value)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

/** What one batch looked like, for the batch-size and queue-wait histograms. */
export interface BatchEvent {
  /** Rows in the run. */
  rows: number;
  /** Requests merged into it. */
  requests: number;
  /** Seconds each request spent queued before its run was sent. */
  waits: number[];
}

interface Item {
  feeds: Record<string, Tensor>;
  rows: number;
  /** Equal for requests whose tensors stack along the batch axis; undefined: runs alone. */
  key: string | undefined;
  options: RunOptions;
  enqueued: number;
  settled: boolean;
  running: boolean;
  /** performance.now() after which the request fails with MLSHIP_ERR_SERVE_TIMEOUT. */
  deadline: number;
  onAbort: (() => void) | undefined;
  resolve(outputs: Record<string, Tensor>): void;
  reject(err: unknown): void;
}

/**
 * Shares the worker pool between model versions. A version alone may keep every worker busy (two runs per worker,
 * so a worker never waits for the main thread between runs); while another version has work, each is held to one
 * worker fewer than the pool, so the pool's least-busy pick always finds an idle worker for the other, and freed
 * capacity goes to the lanes round-robin. A slow model therefore cannot starve a fast one.
 */
export class Scheduler {
  readonly workers: number;
  private readonly lanes: Lane[] = [];
  private inFlight = 0;
  private cursor = 0;

  constructor(workers: number) {
    this.workers = Math.max(1, Math.floor(workers));
  }

  get capacity(): number {
    return this.workers * 2;
  }

  add(lane: Lane): void {
    this.lanes.push(lane);
  }

  remove(lane: Lane): void {
    const at = this.lanes.indexOf(lane);
    if (at >= 0) this.lanes.splice(at, 1);
  }

  canRun(lane: Lane): boolean {
    if (this.inFlight >= this.capacity) return false;
    let others = false;
    for (const l of this.lanes) if (l !== lane && l.busy) others = true;
    const cap = Math.min(lane.settings().instances * 2, others ? Math.max(1, this.workers - 1) : this.capacity);
    return lane.running < cap;
  }

  acquired(): void {
    this.inFlight += 1;
  }

  /** A run ended: offer the freed capacity to every lane, starting after the last one served. */
  released(): void {
    this.inFlight -= 1;
    const n = this.lanes.length;
    if (n === 0) return;
    const start = this.cursor++ % n;
    for (let i = 0; i < n; i++) this.lanes[(start + i) % n]?.pump();
  }
}

/** How long after its last request a version still counts as active for fair sharing. */
const ACTIVE_WINDOW_MS = 1000;

function batchAxis(specs: readonly TensorSpec[]): boolean {
  return specs.every((s) => s.shape.length >= 1 && s.shape[0] === -1);
}

/** A key that is equal for requests whose tensors can be stacked along the batch axis. */
function stackKey(feeds: Record<string, Tensor>): string {
  let key = "";
  for (const name of Object.keys(feeds).sort()) {
    const t = feeds[name] as Tensor;
    key += `${name}:${t.dtype}:${t.shape.slice(1).join("x")};`;
  }
  return key;
}

function concat(parts: readonly Tensor[], rows: number): Tensor {
  const first = parts[0] as Tensor;
  const inner = first.shape.slice(1);
  let per = 1;
  for (const d of inner) per *= d;
  const out = allocate(first.dtype, rows * per);
  let offset = 0;
  for (const p of parts) {
    if (Array.isArray(out)) {
      const src = p.data as string[];
      for (let i = 0; i < src.length; i++) out[offset + i] = src[i] as string;
    } else {
      (out as Float32Array).set(p.data as Float32Array, offset);
    }
    offset += p.data.length;
  }
  return { dtype: first.dtype, shape: [rows, ...inner], data: out };
}

function sliceRows(t: Tensor, from: number, to: number, total: number): Tensor {
  const per = total === 0 ? 0 : t.data.length / total;
  const data: TensorData = Array.isArray(t.data)
    ? t.data.slice(from * per, to * per)
    : (t.data as Float32Array).subarray(from * per, to * per);
  return { dtype: t.dtype, shape: [to - from, ...t.shape.slice(1)], data };
}

export interface LaneOptions {
  name: string;
  version: number;
  /** Read on every dispatch, so a registry change applies to the next batch. */
  settings(): LaneSettings;
  scheduler: Scheduler;
  onBatch?: (event: BatchEvent) => void;
  retryAfterSeconds?: number;
}

/**
 * The queue of one model version in front of the worker pool: admission (max_queue -> 429), per-request deadline
 * (timeout_ms -> 503; work not started by then is dropped), and adaptive batching. Requests that can be stacked are
 * concatenated along the batch axis, run once and split back. A batch leaves when it is full, reaches a preferred
 * size, its oldest request has waited max_delay_ms, or nothing of this version is running (low traffic adds no
 * wait). Only models whose every input and output has a variable batch axis batch; anything unexpected (outputs
 * that are not per row, a failed merged run) falls back to running each request alone, so one request never sees
 * another's error.
 */
export class Lane {
  running = 0;
  private readonly model: LoadedModel;
  private readonly options: LaneOptions;
  private readonly canBatch: boolean;
  private queue: Item[] = [];
  private queued = 0;
  private scheduled = false;
  private delayTimer: NodeJS.Timeout | undefined;
  private delayAt = 0;
  private closed = false;
  /** Runs sent, rows in them, and wall time they took on the workers (per version; for service metrics). */
  runs = 0;
  rowsRun = 0;
  busyMs = 0;
  /** Requests queued or running, for the deadline sweep. */
  private readonly live = new Set<Item>();
  /** One timer for every deadline of the lane (not one per request): armed for the earliest. */
  private deadlineTimer: NodeJS.Timeout | undefined;
  private deadlineAt = Number.POSITIVE_INFINITY;

  constructor(model: LoadedModel, options: LaneOptions) {
    this.model = model;
    this.options = options;
    this.canBatch = model.inputs.length > 0 && batchAxis(model.inputs) && batchAxis(model.outputs);
    options.scheduler.add(this);
  }

  settings(): LaneSettings {
    return this.options.settings();
  }

  /** Whether batching applies to this version now (settings on and a batch axis). */
  get batching(): boolean {
    const b = this.settings().batching;
    return this.canBatch && b.enabled && b.maxBatchSize > 1;
  }

  /**
   * Has work, or had some within the last second: a client that sends one request after another is idle between
   * them for an instant only, and must still find a worker kept free for it.
   */
  get busy(): boolean {
    return this.running > 0 || this.queued > 0 || performance.now() - this.lastSeen < ACTIVE_WINDOW_MS;
  }

  private lastSeen = Number.NEGATIVE_INFINITY;

  /** Requests waiting or running for this version. */
  get depth(): number {
    return this.queued + this.runningRequests;
  }

  private runningRequests = 0;

  run(feeds: Record<string, Tensor>, rows: number, options: RunOptions = {}): Promise<Record<string, Tensor>> {
    const settings = this.settings();
    this.lastSeen = performance.now();
    const retryAfterSeconds = this.options.retryAfterSeconds ?? 1;
    if (this.closed) return Promise.reject(new MlshipError("MLSHIP_ERR_RUNTIME_UNAVAILABLE", `model '${this.options.name}' version ${this.options.version} was unloaded`, { retryAfterSeconds }));
    if (this.depth >= settings.maxQueue) {
      return Promise.reject(
        new MlshipError(
          "MLSHIP_ERR_SERVE_OVERLOADED",
          `model '${this.options.name}' version ${this.options.version} has ${this.depth} requests queued or running (max_queue ${settings.maxQueue}); retry after ${retryAfterSeconds} s`,
          { field: "max_queue", retryAfterSeconds },
        ),
      );
    }
    if (options.signal?.aborted === true) return this.model.run(feeds, options);
    let stackable = options.outputs === undefined && rows > 0;
    for (const name in feeds) if ((feeds[name] as Tensor).shape[0] !== rows) stackable = false;
    const enqueued = performance.now();
    return new Promise((resolve, reject) => {
      const item: Item = {
        feeds,
        rows,
        key: stackable ? stackKey(feeds) : undefined,
        options,
        enqueued,
        settled: false,
        running: false,
        deadline: enqueued + settings.timeoutMs,
        onAbort: undefined,
        resolve: (out) => {
          if (item.settled) return;
          this.finish(item);
          resolve(out);
        },
        reject: (err) => {
          if (item.settled) return;
          this.finish(item);
          reject(err);
        },
      };
      this.live.add(item);
      this.armDeadline(item.deadline);
      const signal = options.signal;
      if (signal !== undefined) {
        item.onAbort = () => item.reject(signal.reason instanceof Error ? signal.reason : new MlshipError("MLSHIP_ERR_RUNTIME_UNAVAILABLE", "the request was cancelled"));
        signal.addEventListener("abort", item.onAbort, { once: true });
      }
      this.queue.push(item);
      this.queued += 1;
      // Requests of one event-loop turn arrive before the pump runs, so they can share a batch.
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.pump();
        });
      }
    });
  }

  private armDeadline(at: number): void {
    if (this.deadlineTimer !== undefined && this.deadlineAt <= at) return;
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
    this.deadlineAt = at;
    this.deadlineTimer = setTimeout(() => this.expire(), Math.max(0, Math.ceil(at - performance.now())));
  }

  /** Fails every request past its deadline (queued ones are then never run) and re-arms for the next. */
  private expire(): void {
    this.deadlineTimer = undefined;
    this.deadlineAt = Number.POSITIVE_INFINITY;
    const now = performance.now();
    const retryAfterSeconds = this.options.retryAfterSeconds ?? 1;
    let next = Number.POSITIVE_INFINITY;
    for (const item of [...this.live]) {
      if (item.deadline <= now) {
        item.reject(
          new MlshipError(
            "MLSHIP_ERR_SERVE_TIMEOUT",
            `model '${this.options.name}' version ${this.options.version} did not answer within timeout_ms ${Math.round(item.deadline - item.enqueued)}; retry after ${retryAfterSeconds} s`,
            { field: "timeout_ms", retryAfterSeconds },
          ),
        );
      } else if (item.deadline < next) {
        next = item.deadline;
      }
    }
    if (next !== Number.POSITIVE_INFINITY) this.armDeadline(next);
  }

  /** Rejects what is queued (the version is going away); runs in flight finish. */
  close(): void {
    this.closed = true;
    this.options.scheduler.remove(this);
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
    this.deadlineTimer = undefined;
    if (this.delayTimer !== undefined) clearTimeout(this.delayTimer);
    for (const item of this.queue) item.reject(new MlshipError("MLSHIP_ERR_RUNTIME_UNAVAILABLE", `model '${this.options.name}' version ${this.options.version} was unloaded; retry`, { retryAfterSeconds: 1 }));
    this.queue = [];
  }

  private finish(item: Item): void {
    item.settled = true;
    this.live.delete(item);
    if (this.live.size === 0 && this.deadlineTimer !== undefined) {
      // Nothing left to time out: a pending timer would only keep an idle process alive.
      clearTimeout(this.deadlineTimer);
      this.deadlineTimer = undefined;
      this.deadlineAt = Number.POSITIVE_INFINITY;
    }
    if (item.onAbort !== undefined) item.options.signal?.removeEventListener("abort", item.onAbort);
    // A request that expires or is cancelled while queued leaves the queue (lazily) and is never run.
    if (item.running) this.runningRequests -= 1;
    else this.queued -= 1;
  }

  /** Sends as many batches as the scheduler allows and the batching rules call for. */
  pump(): void {
    const scheduler = this.options.scheduler;
    while (this.queued > 0 && scheduler.canRun(this)) {
      const batch = this.collect();
      if (batch === undefined) break;
      if (batch.wait > 0) {
        this.armDelay(batch.wait);
        break;
      }
      this.dispatch(batch.items);
    }
  }

  private armDelay(ms: number): void {
    const at = performance.now() + ms;
    if (this.delayTimer !== undefined && this.delayAt <= at + 0.5) return;
    if (this.delayTimer !== undefined) clearTimeout(this.delayTimer);
    this.delayAt = at;
    this.delayTimer = setTimeout(() => {
      this.delayTimer = undefined;
      this.pump();
    }, Math.max(0, Math.ceil(ms)));
  }

  /** The next batch from the head of the queue, and how long to wait before sending it (0: now). */
  private collect(): { items: Item[]; wait: number } | undefined {
    this.queue = this.queue.filter((i) => !i.settled);
    const head = this.queue[0];
    if (head === undefined) return undefined;
    const settings = this.settings().batching;
    if (!this.batching || head.key === undefined || head.rows >= settings.maxBatchSize) return { items: [head], wait: 0 };
    const items: Item[] = [head];
    let rows = head.rows;
    let full = false;
    for (let i = 1; i < this.queue.length; i++) {
      const next = this.queue[i] as Item;
      if (next.key !== head.key) continue;
      if (rows + next.rows > settings.maxBatchSize) {
        full = true;
        break;
      }
      items.push(next);
      rows += next.rows;
      if (settings.preferred.includes(rows)) {
        full = true;
        break;
      }
    }
    if (rows >= settings.maxBatchSize || full || settings.preferred.includes(rows)) return { items, wait: 0 };
    const waited = performance.now() - head.enqueued;
    const left = settings.maxDelayMs - waited;
    // Nothing of this version running: no batch is forming behind a busy worker, so waiting would only add latency.
    if (left <= 0 || this.running === 0) return { items, wait: 0 };
    return { items, wait: left };
  }

  private dispatch(items: Item[]): void {
    const scheduler = this.options.scheduler;
    const now = performance.now();
    for (const item of items) {
      item.running = true;
      this.queued -= 1;
      this.runningRequests += 1;
    }
    const taken = new Set(items);
    this.queue = this.queue.filter((i) => !taken.has(i));
    this.running += 1;
    scheduler.acquired();
    let total = 0;
    for (const item of items) total += item.rows;
    this.options.onBatch?.({ rows: total, requests: items.length, waits: items.map((i) => (now - i.enqueued) / 1000) });
    this.runs += 1;
    this.rowsRun += total;
    const done = (): void => {
      this.running -= 1;
      this.busyMs += performance.now() - now;
      scheduler.released();
    };
    if (items.length === 1) {
      const item = items[0] as Item;
      void this.model.run(item.feeds, item.options).then(item.resolve, item.reject).finally(done);
      return;
    }
    void this.runMerged(items, total).finally(done);
  }

  private async runMerged(group: Item[], total: number): Promise<void> {
    const feeds: Record<string, Tensor> = {};
    try {
      for (const name of Object.keys((group[0] as Item).feeds)) feeds[name] = concat(group.map((p) => p.feeds[name] as Tensor), total);
    } catch {
      // Storage that does not match its dtype (possible for tensors a library caller built) cannot be stacked;
      // alone, each request gets the runtime's own error.
      await this.runEach(group);
      return;
    }
    let merged: Record<string, Tensor>;
    try {
      merged = await this.model.run(feeds);
    } catch {
      await this.runEach(group);
      return;
    }
    const tensors = Object.values(merged);
    if (!tensors.every((t) => t.shape.length >= 1 && t.shape[0] === total)) {
      await this.runEach(group);
      return;
    }
    let from = 0;
    for (const p of group) {
      const out: Record<string, Tensor> = {};
      for (const [name, t] of Object.entries(merged)) out[name] = sliceRows(t, from, from + p.rows, total);
      from += p.rows;
      p.resolve(out);
    }
  }

  private async runEach(group: Item[]): Promise<void> {
    await Promise.all(group.map((p) => (p.settled ? undefined : this.model.run(p.feeds, p.options).then(p.resolve, p.reject))));
  }
}
