/**
 * The main thread's side of the prediction log's worker (log-worker.ts): a `LogSink` that hands each batch of
 * events over in one message and resolves when the worker answers that the rows are stored or spilled.
 *
 * - Tensors are structured-cloned (copied), never transferred: their buffers may be shared with the prediction cache
 *   or the exact memo. A view over part of a larger buffer, or over shared memory, is sliced first so that only its
 *   own elements are copied, and later changes to the shared memory cannot reach the worker.
 * - A worker that dies is logged, the rows of the batches it held are counted as dropped (`worker_error`), and a
 *   new worker is started for the next request (it takes stock of the spill files again); after
 *   `MAX_WORKER_RESTARTS` deaths batches are dropped and counted rather than restarting a crashing worker forever.
 * - Idle, the worker is unref'd (a logger nobody closed does not keep a CLI alive); with requests in flight it is
 *   ref'd, so awaiting `flush()` does.
 */
import { Worker } from "node:worker_threads";
import type { Tensor } from "../core/index.js";
import type { Manifest } from "../package/index.js";
import { noDrops, type LogLines, type LogSink, type LoggedEvent, type WriterCounters } from "./log-writer.js";
import type { SpillFileInfo } from "./spill.js";

export const MAX_WORKER_RESTARTS = 3;

/** Starts a `.ts` worker entry from sources (vitest, tsx); see that file for why `--import tsx` is not enough. */
const TS_BOOTSTRAP = new URL("../runtime/pool/ts-worker-bootstrap.mjs", import.meta.url);
/** log-worker.ts next to this file under sources, log-worker.js in dist/. */
const WORKER_URL = new URL(`./log-worker${new URL(import.meta.url).pathname.endsWith(".ts") ? ".ts" : ".js"}`, import.meta.url);

export interface LogWorkerData {
  /** The config `store` value (`sqlite:<file>`, `postgres://...`); unset: `<home>/mlship.db`. */
  storeUrl: string | undefined;
  home: string;
  spillDir: string;
  spillMaxBytes: number;
  maxBatchRows: number;
  writeTimeoutMs: number;
}

export type ToLogWorker =
  | { type: "version"; key: string; manifest: Manifest }
  | { type: "open"; id: number }
  | { type: "write"; id: number; events: LoggedEvent[]; spillOnly: boolean }
  | { type: "replay"; id: number }
  | { type: "close"; id: number };

export type FromLogWorker =
  | { type: "log"; level: "info" | "warn" | "error"; fields: object; message: string }
  | { type: "done"; id: number; counters: WriterCounters; value?: SpillFileInfo[] | number; failed?: boolean };

interface Waiting {
  resolve: (value: SpillFileInfo[] | number | undefined) => void;
  /** Rows of a write: counted as dropped if the worker dies holding them. */
  rows: number;
}

function detached(tensor: Tensor): Tensor {
  const { data } = tensor;
  if (Array.isArray(data)) return { dtype: tensor.dtype, shape: tensor.shape, data };
  const whole = !(data.buffer instanceof SharedArrayBuffer) && data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
  return { dtype: tensor.dtype, shape: tensor.shape, data: whole ? data : data.slice() };
}

function detachedAll(tensors: Record<string, Tensor> | undefined): Record<string, Tensor> | undefined {
  if (tensors === undefined) return undefined;
  const out: Record<string, Tensor> = {};
  for (const name in tensors) out[name] = detached(tensors[name] as Tensor);
  return out;
}

/** The fields the worker reads, as plain data (a scoring event may carry more). */
function wireEvent(event: LoggedEvent): LoggedEvent {
  const wire: LoggedEvent = {
    model: event.model,
    version: event.version,
    protocol: event.protocol,
    requestId: event.requestId,
    rows: event.rows,
    latencyMs: event.latencyMs,
    ok: event.ok,
    inputs: detachedAll(event.inputs),
    outputs: detachedAll(event.outputs),
    at: event.at,
  };
  if (event.key !== undefined) wire.key = event.key;
  if (event.variant !== undefined) wire.variant = event.variant;
  if (event.rolloutId !== undefined) wire.rolloutId = event.rolloutId;
  if (event.draw !== undefined) wire.draw = event.draw;
  return wire;
}

function emptyCounters(): WriterCounters {
  return { written: 0, spilled: 0, replayed: 0, storeErrors: 0, spillBacklog: 0, dropped: noDrops() };
}

export class WorkerLogSink implements LogSink {
  private worker: Worker | undefined;
  private readonly manifests = new Map<string, Manifest>();
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 1;
  /** The current worker's counters, as of its last answer. */
  private current = emptyCounters();
  /** What earlier workers had done before they died (and the rows they took with them). */
  private readonly past = emptyCounters();
  private restarts = 0;
  private closed = false;

  constructor(
    private readonly data: LogWorkerData,
    private readonly logger: LogLines,
  ) {}

  async open(): Promise<SpillFileInfo[]> {
    this.ensureWorker();
    return ((await this.request({ type: "open", id: 0 }, 0)) as SpillFileInfo[] | undefined) ?? [];
  }

  defineVersion(key: string, manifest: Manifest): void {
    if (this.manifests.has(key)) return;
    this.manifests.set(key, manifest);
    this.worker?.postMessage({ type: "version", key, manifest } satisfies ToLogWorker);
  }

  async write(events: LoggedEvent[], spillOnly: boolean): Promise<void> {
    if (events.length === 0) return;
    let rows = 0;
    for (const event of events) rows += event.rows;
    if (!this.ensureWorker()) {
      this.past.dropped.worker_error += rows;
      this.logger.error({ rows }, "prediction log: the log worker keeps dying; rows dropped");
      return;
    }
    await this.request({ type: "write", id: 0, events: events.map(wireEvent), spillOnly }, rows);
  }

  async replay(): Promise<number> {
    if (!this.ensureWorker()) return 0;
    return ((await this.request({ type: "replay", id: 0 }, 0)) as number | undefined) ?? 0;
  }

  counters(): WriterCounters {
    const dropped = noDrops();
    for (const reason of Object.keys(dropped) as (keyof typeof dropped)[]) dropped[reason] = this.past.dropped[reason] + this.current.dropped[reason];
    return {
      written: this.past.written + this.current.written,
      spilled: this.past.spilled + this.current.spilled,
      replayed: this.past.replayed + this.current.replayed,
      storeErrors: this.past.storeErrors + this.current.storeErrors,
      // A new worker counts the spill files again, those of the dead one included.
      spillBacklog: this.current.spillBacklog,
      dropped,
    };
  }

  /** Lets the worker finish what it holds (writing, or spilling what the store does not take), then stops it. */
  async close(): Promise<void> {
    if (this.closed) return;
    const worker = this.worker;
    if (worker !== undefined) await this.request({ type: "close", id: 0 }, 0);
    this.closed = true;
    // The worker is idle now (it answered close after its last write), so stopping it interrupts nothing.
    if (this.worker !== undefined) await this.worker.terminate();
    this.worker = undefined;
  }

  /** A worker to send to: the current one, or a new one (within the restart budget). False when none may start. */
  private ensureWorker(): boolean {
    if (this.worker !== undefined) return true;
    if (this.closed || this.restarts > MAX_WORKER_RESTARTS) return false;
    const name = "mlship-prediction-log";
    const worker = WORKER_URL.pathname.endsWith(".ts")
      ? new Worker(TS_BOOTSTRAP, { argv: [WORKER_URL.href], name, workerData: this.data })
      : new Worker(WORKER_URL, { name, workerData: this.data });
    worker.unref();
    worker.on("message", (message: FromLogWorker) => this.onMessage(message));
    worker.on("error", (err: Error) => this.logger.error({ err }, "prediction log: the log worker failed"));
    worker.on("exit", (code: number) => this.onExit(worker, code));
    this.worker = worker;
    this.current = emptyCounters();
    for (const [key, manifest] of this.manifests) worker.postMessage({ type: "version", key, manifest } satisfies ToLogWorker);
    // A replacement takes stock of the spill folder (the dead worker's files included) before anything else.
    if (this.restarts > 0) void this.request({ type: "open", id: 0 }, 0);
    return true;
  }

  private request(message: ToLogWorker & { id: number }, rows: number): Promise<SpillFileInfo[] | number | undefined> {
    const worker = this.worker;
    if (worker === undefined) return Promise.resolve(undefined);
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.waiting.set(id, { resolve, rows });
      if (this.waiting.size === 1) worker.ref();
      worker.postMessage({ ...message, id });
    });
  }

  private onMessage(message: FromLogWorker): void {
    if (message.type === "log") {
      this.logger[message.level](message.fields, message.message);
      return;
    }
    this.current = message.counters;
    const waiting = this.waiting.get(message.id);
    if (waiting === undefined) return;
    this.waiting.delete(message.id);
    if (this.waiting.size === 0) this.worker?.unref();
    waiting.resolve(message.value);
  }

  private onExit(worker: Worker, code: number): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    const lost = [...this.waiting.values()];
    this.waiting.clear();
    if (this.closed) return;
    this.restarts += 1;
    const { current, past } = this;
    past.written += current.written;
    past.spilled += current.spilled;
    past.replayed += current.replayed;
    past.storeErrors += current.storeErrors;
    for (const reason of Object.keys(past.dropped) as (keyof typeof past.dropped)[]) past.dropped[reason] += current.dropped[reason];
    this.current = { ...emptyCounters(), spillBacklog: current.spillBacklog };
    let rows = 0;
    for (const entry of lost) rows += entry.rows;
    past.dropped.worker_error += rows;
    this.logger.error({ code, rows, restarts: this.restarts }, "prediction log: the log worker stopped; the rows it held are dropped, a new worker takes over");
    for (const entry of lost) entry.resolve(undefined);
  }
}
