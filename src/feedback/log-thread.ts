/**
 * The main thread's side of the prediction log's worker (log-worker.ts): a `LogSink` that hands each batch of
 * events over in one message and resolves when the worker answers that the rows are stored or spilled.
 *
 * - Tensors are structured-cloned (copied), never transferred: their buffers may be shared with the prediction cache
 *   or the exact memo. A view over part of a larger buffer, or over shared memory, is sliced first so that only its
 *   own elements are copied, and later changes to the shared memory cannot reach the worker.
 * - A batch goes over as columns (`WireEvents`: one array per field), not as an array of event objects, and the
 *   numbers of every tensor in it are copied into one buffer that is transferred, not cloned: the structured clone
 *   writes (on this thread) and the worker reads every property name of every object and every typed array
 *   separately, which for a one-row event cost more than its values (per event on this thread: ~6 µs as objects,
 *   ~3.5 µs as columns and one buffer). The worker turns the columns back into events.
 * - A worker that dies is logged, the rows of the batches it held are counted as dropped (`worker_error`), and a
 *   new worker is started for the next request (it takes stock of the spill files again); after
 *   `MAX_WORKER_RESTARTS` deaths batches are dropped and counted rather than restarting a crashing worker forever.
 * - Idle, the worker is unref'd (a logger nobody closed does not keep a CLI alive); with requests in flight it is
 *   ref'd, so awaiting `flush()` does.
 */
import { Worker } from "node:worker_threads";
import type { DType, Tensor, TensorData } from "../core/index.js";
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
  | { type: "write"; id: number; events: WireEvents; spillOnly: boolean }
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

/**
 * A tensor on the wire, without property names: strings as they are; numbers as the name of their typed array,
 * and where in the batch's `numbers` buffer they start (in bytes) and how many there are.
 */
type WireTensor = [dtype: DType, shape: number[], data: TensorData] | [dtype: DType, shape: number[], array: TypedArrayName, offset: number, length: number];
type WireTensors = Record<string, WireTensor>;

const TYPED_ARRAYS = {
  Float32Array,
  Float64Array,
  Int8Array,
  Int16Array,
  Int32Array,
  Uint8Array,
  Uint8ClampedArray,
  Uint16Array,
  Uint32Array,
  BigInt64Array,
  BigUint64Array,
} as const;
type TypedArrayName = keyof typeof TYPED_ARRAYS;
type NumericData = Exclude<TensorData, string[]>;

const typedArrayName = (data: NumericData): TypedArrayName | undefined => {
  // A Buffer is a Uint8Array (often a view into Node's shared pool, whose slice() would not copy).
  if (Buffer.isBuffer(data)) return "Uint8Array";
  const name = data.constructor.name;
  return Object.hasOwn(TYPED_ARRAYS, name) ? (name as TypedArrayName) : undefined;
};

/** A batch of events as columns: element i of every array is event i's field. */
export interface WireEvents {
  model: string[];
  version: (number | null)[];
  protocol: (string | undefined)[];
  requestId: (string | undefined)[];
  rows: number[];
  latencyMs: number[];
  ok: boolean[];
  /** Milliseconds since the epoch. */
  at: number[];
  inputs: (WireTensors | undefined)[];
  outputs: (WireTensors | undefined)[];
  key: (string | undefined)[];
  variant: (LoggedEvent["variant"] | undefined)[];
  rolloutId: (string | undefined)[];
  draw: (number | undefined)[];
  /** Every numeric tensor's elements, each at an offset aligned to 8 bytes; transferred with the message. */
  numbers: ArrayBuffer;
}

const aligned = (bytes: number): number => (bytes + 7) & ~7;

/**
 * Tensor records already put on the wire for this message, by the record they came from. Repeats of one cached
 * answer share their tensors: sent as one object, they are copied once into the message and arrive as one object,
 * which the worker's record builder then writes out once (spec.ts, `RowTextMemo`).
 */
type Done = Map<Record<string, Tensor>, WireTensors>;

/** The numbers of a batch being put on the wire: one buffer, filled in order. */
class Arena {
  readonly buffer: ArrayBuffer;
  private readonly bytes: Uint8Array;
  private offset = 0;

  constructor(size: number) {
    this.buffer = new ArrayBuffer(size);
    this.bytes = new Uint8Array(this.buffer);
  }

  /** Copies `data` in (a view over shared memory is copied as it is now) and returns where it starts. */
  add(data: NumericData): number {
    const at = this.offset;
    this.bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), at);
    this.offset += aligned(data.byteLength);
    return at;
  }
}

function wireTensors(tensors: Record<string, Tensor> | undefined, done: Done, arena: Arena): WireTensors | undefined {
  if (tensors === undefined) return undefined;
  let out = done.get(tensors);
  if (out !== undefined) return out;
  out = {};
  for (const name in tensors) {
    const { dtype, shape, data } = tensors[name] as Tensor;
    const array = Array.isArray(data) ? undefined : typedArrayName(data);
    if (array !== undefined) out[name] = [dtype, shape, array, arena.add(data as NumericData), data.length];
    // Strings (and storage of an unexpected kind) are cloned; a view is sliced to its own elements first.
    else out[name] = [dtype, shape, Array.isArray(data) ? data : (data as NumericData).slice()];
  }
  done.set(tensors, out);
  return out;
}

/** The bytes the numeric tensors of `events` take in the arena (each tensor record once). */
function arenaSize(events: readonly LoggedEvent[]): number {
  const seen = new Set<Record<string, Tensor>>();
  let size = 0;
  const add = (tensors: Record<string, Tensor> | undefined): void => {
    if (tensors === undefined || seen.has(tensors)) return;
    seen.add(tensors);
    for (const name in tensors) {
      const data = (tensors[name] as Tensor).data;
      if (!Array.isArray(data) && typedArrayName(data) !== undefined) size += aligned(data.byteLength);
    }
  };
  for (const event of events) {
    add(event.inputs);
    add(event.outputs);
  }
  return size;
}

/** The fields the worker reads, as columns of plain data (a scoring event may carry more). */
export function toWire(events: readonly LoggedEvent[]): WireEvents {
  const arena = new Arena(arenaSize(events));
  const wire: WireEvents = {
    model: [], version: [], protocol: [], requestId: [], rows: [], latencyMs: [], ok: [], at: [], inputs: [], outputs: [], key: [], variant: [], rolloutId: [], draw: [],
    numbers: arena.buffer,
  };
  const done: Done = new Map();
  for (const event of events) {
    wire.model.push(event.model);
    wire.version.push(event.version);
    wire.protocol.push(event.protocol);
    wire.requestId.push(event.requestId);
    wire.rows.push(event.rows);
    wire.latencyMs.push(event.latencyMs);
    wire.ok.push(event.ok);
    wire.at.push(event.at.getTime());
    wire.inputs.push(wireTensors(event.inputs, done, arena));
    wire.outputs.push(wireTensors(event.outputs, done, arena));
    wire.key.push(event.key);
    wire.variant.push(event.variant);
    wire.rolloutId.push(event.rolloutId);
    wire.draw.push(event.draw);
  }
  return wire;
}

/** The worker's side: events again, tensor records shared where they were shared on the main thread. */
export function fromWire(wire: WireEvents): LoggedEvent[] {
  const records = new Map<WireTensors, Record<string, Tensor>>();
  const tensorsOf = (w: WireTensors | undefined): Record<string, Tensor> | undefined => {
    if (w === undefined) return undefined;
    let out = records.get(w);
    if (out === undefined) {
      out = {};
      for (const name in w) {
        const t = w[name] as WireTensor;
        out[name] = t.length === 3 ? { dtype: t[0], shape: t[1], data: t[2] } : { dtype: t[0], shape: t[1], data: new TYPED_ARRAYS[t[2]](wire.numbers, t[3], t[4]) as NumericData };
      }
      records.set(w, out);
    }
    return out;
  };
  const events: LoggedEvent[] = new Array<LoggedEvent>(wire.model.length);
  for (let i = 0; i < events.length; i++) {
    const event: LoggedEvent = {
      model: wire.model[i] as string,
      version: wire.version[i] as number | null,
      protocol: wire.protocol[i],
      requestId: wire.requestId[i],
      rows: wire.rows[i] as number,
      latencyMs: wire.latencyMs[i] as number,
      ok: wire.ok[i] as boolean,
      at: new Date(wire.at[i] as number),
    };
    const inputs = tensorsOf(wire.inputs[i]);
    const outputs = tensorsOf(wire.outputs[i]);
    if (inputs !== undefined) event.inputs = inputs;
    if (outputs !== undefined) event.outputs = outputs;
    const key = wire.key[i];
    const variant = wire.variant[i];
    const rolloutId = wire.rolloutId[i];
    const draw = wire.draw[i];
    if (key !== undefined) event.key = key;
    if (variant !== undefined) event.variant = variant;
    if (rolloutId !== undefined) event.rolloutId = rolloutId;
    if (draw !== undefined) event.draw = draw;
    events[i] = event;
  }
  return events;
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
    const wire = toWire(events);
    await this.request({ type: "write", id: 0, events: wire, spillOnly }, rows, [wire.numbers]);
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

  private request(message: ToLogWorker & { id: number }, rows: number, transfer: ArrayBuffer[] = []): Promise<SpillFileInfo[] | number | undefined> {
    const worker = this.worker;
    if (worker === undefined) return Promise.resolve(undefined);
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.waiting.set(id, { resolve, rows });
      if (this.waiting.size === 1) worker.ref();
      worker.postMessage({ ...message, id }, transfer);
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
