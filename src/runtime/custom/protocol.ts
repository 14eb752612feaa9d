/**
 * Messages between the custom runtime (parent) and a wrapper's child process (host.ts), over Node's IPC channel
 * with `serialization: "advanced"` (structured clone: typed arrays and BigInt64Arrays survive as they are).
 *
 * This file and everything the child imports stay inside src/runtime/custom/ and import nothing from the rest of
 * mlship at runtime: the child runs under Node's permission model and may only read this folder (see
 * docs/custom-models.md "Isolation").
 */

/** Tensor dtypes a custom signature may use (float16 is refused by the manifest check for this flavor). */
export type WireDType =
  | "float32" | "float64" | "int8" | "int16" | "int32" | "int64" | "uint8" | "uint16" | "uint32" | "uint64" | "bool" | "string"
  | "float16";

export interface WireTensorSpec {
  name: string;
  dtype: WireDType;
  shape: number[];
  content_type?: "json" | "base64";
}

/** A tensor on the wire: the same shape as core's Tensor. */
export interface WireTensor {
  dtype: WireDType;
  shape: number[];
  data: ArrayLike<number | bigint> | string[];
}

/** Everything the child needs to build the wrapper's context and load it. */
export interface HostInit {
  type: "init";
  /** Absolute path of the bundle copy the child imports (it resolves sharp / onnxruntime-node to mlship's own). */
  bundle: string;
  /** file: URL of mlship's onnxruntime-node entry, for `context.onnx` (null when it is not installed). */
  onnxUrl: string | null;
  model: { name: string; version: number };
  artifacts: Record<string, string>;
  config: Record<string, unknown>;
  inputs: WireTensorSpec[];
  outputs: WireTensorSpec[];
  scratchDir: string | null;
}

export interface HostPredict {
  type: "predict";
  id: number;
  feeds: Record<string, WireTensor>;
}

export interface HostClose {
  type: "close";
}

export type ParentMessage = HostInit | HostPredict | HostClose;

/**
 * Why a call failed inside the child. `input`: the wrapper threw an error with a numeric `row` (400, field
 * `rows[i]` / `rows[i].column`); `wrapper`: it threw anything else or returned rows that do not fit the signature;
 * `load`: `load()` or importing the bundle failed.
 */
export interface HostFailure {
  kind: "input" | "wrapper" | "load";
  message: string;
  field?: string;
}

export type ChildMessage =
  | { type: "ready" }
  | { type: "load-failed"; error: HostFailure }
  | { type: "result"; id: number; outputs: Record<string, WireTensor> }
  | { type: "failed"; id: number; error: HostFailure }
  | { type: "log"; level: "info" | "warn" | "error"; message: string; fields?: Record<string, unknown> }
  | { type: "closed" };
