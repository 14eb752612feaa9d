/**
 * The typed message protocol between the main thread and a pool worker. Tensors travel by structured clone with
 * their typed-array buffers in the transfer list (moved, not copied); only string tensors are cloned.
 */
import type { ErrorCode, Tensor } from "../../core/index.js";
import type { TensorSpec } from "../../package/index.js";
import type { LoadSpec } from "../types.js";

/** The input/output description a worker reports after loading a model. */
export interface ModelSignature {
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

export type Feeds = Record<string, Tensor>;
export type Outputs = Record<string, Tensor>;

export type WorkerRequest =
  | { id: number; type: "load"; spec: LoadSpec }
  | { id: number; type: "run"; key: string; feeds: Feeds; outputs?: string[] }
  | { id: number; type: "unload"; key: string }
  | { id: number; type: "close" };

export type RequestType = WorkerRequest["type"];

/** What a successful reply carries for each request type. */
export interface ResultOf {
  load: ModelSignature;
  run: Outputs;
  unload: null;
  close: null;
}

/** An error as it crosses the thread boundary (Error objects lose their own fields in structured clone). */
export interface WireError {
  code: ErrorCode;
  message: string;
  field?: string;
}

export type WorkerReply =
  | { id: number; ok: true; result: ResultOf[RequestType] }
  | { id: number; ok: false; error: WireError };

/**
 * The buffers to move along with `tensors`. A typed array that views only part of its buffer (e.g. a pooled
 * Node Buffer) is replaced by a compact copy first, because transferring would hand over (and detach) memory that
 * is not ours, and cloning a view copies its whole buffer anyway. Only those views are copied.
 */
export function prepareTransfer(tensors: Record<string, Tensor>): { tensors: Record<string, Tensor>; transfer: ArrayBuffer[] } {
  const transfer = new Set<ArrayBuffer>();
  let out = tensors;
  for (const [name, tensor] of Object.entries(tensors)) {
    const data = tensor.data;
    if (Array.isArray(data)) continue;
    const buffer = data.buffer;
    // A SharedArrayBuffer view is copied as well: onnxruntime-node refuses shared memory as tensor data.
    if (buffer instanceof ArrayBuffer && data.byteOffset === 0 && data.byteLength === buffer.byteLength) {
      transfer.add(buffer);
      continue;
    }
    const compact = data.slice();
    if (out === tensors) out = { ...tensors };
    out[name] = { dtype: tensor.dtype, shape: tensor.shape, data: compact };
    transfer.add(compact.buffer as ArrayBuffer);
  }
  return { tensors: out, transfer: [...transfer] };
}

/** What the pool passes as a worker's `workerData`: the stop flag and the owner's own data. */
export interface PoolWorkerData {
  /** Int32 slot 0: non-zero asks the worker to exit between two requests. */
  control: SharedArrayBuffer;
  data: unknown;
  mlshipPoolWorker: true;
}

export function isPoolWorkerData(value: unknown): value is PoolWorkerData {
  return typeof value === "object" && value !== null && (value as { mlshipPoolWorker?: unknown }).mlshipPoolWorker === true;
}

/** The exit code of a worker that stopped because the pool raised its stop flag. */
export const STOP_EXIT_CODE = 75;

/** Structured clone fails on functions and some host objects; it also fails on untransferable buffers. */
export function isDataCloneError(error: unknown): boolean {
  return error instanceof Error && (error.name === "DataCloneError" || /could not be cloned|transfer/i.test(error.message));
}
