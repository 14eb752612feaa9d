/**
 * The contract a custom model wrapper implements (the pyfunc pattern in TypeScript). A wrapper package's entry
 * module default-exports a `ModelWrapper`; `mlship package build` bundles it into one self-contained module that
 * the custom runtime loads in a child process of its own (one per loaded version, see docs/custom-models.md).
 *
 * Wrapper authors import only types from here: `import type { ModelWrapper } from "mlship/wrapper"`.
 */

/** One row as the wrapper sees it: a value per declared signature input (scalars, nested arrays, strings). */
export type WrapperRow = Record<string, unknown>;

/** A loaded ONNX model inside the wrapper's process: plain arrays in, plain arrays out. */
export interface WrapperOnnxSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /**
   * Runs the model. Each feed is `{ data, dims }` with `data` a typed array (or string[]), as onnxruntime takes it;
   * the result maps output names to `{ data, dims }`.
   */
  run(feeds: Record<string, { data: ArrayLike<number> | string[] | Float32Array; dims: readonly number[]; type?: string }>): Promise<Record<string, { data: ArrayLike<number | bigint> | string[]; dims: readonly number[] }>>;
}

/** Audit and diagnostic log lines; they reach the server's log (and the audit trail) tagged with the version. */
export interface WrapperLogger {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

export interface WrapperContext {
  /** The model version being served. */
  readonly model: { name: string; version: number };
  /** Absolute paths of the package's files, by their key in `mlship.yaml` `files` (e.g. `onnx`, `labels`). */
  readonly artifacts: Readonly<Record<string, string>>;
  /** `custom.config` from `mlship.yaml` (free-form JSON values). */
  readonly config: Readonly<Record<string, unknown>>;
  /** The declared signature (inputs and outputs with dtypes and shapes). */
  readonly signature: {
    inputs: ReadonlyArray<{ name: string; dtype: string; shape: readonly number[]; content_type?: "base64" }>;
    outputs: ReadonlyArray<{ name: string; dtype: string; shape: readonly number[]; content_type?: "json" }>;
  };
  /** Opens an ONNX model from one of the package's artifacts (by `files` key), once; later calls return the same session. */
  onnx(artifact: string): Promise<WrapperOnnxSession>;
  readonly log: WrapperLogger;
  /** Where the wrapper may write scratch files (kept across restarts of its process, deleted when the version is unloaded); null when writing is not allowed. */
  readonly scratchDir: string | null;
}

/**
 * Throw this from `predict` to fail one row with a clear message: the request fails with 400
 * MLSHIP_ERR_INPUT_INVALID naming the row (`field: "rows[3].image"`), instead of a 500.
 */
export class WrapperInputError extends Error {
  constructor(
    message: string,
    /** The row index within the batch given to `predict`. */
    readonly row: number,
    /** The input (column) that was wrong, if one. */
    readonly column?: string,
  ) {
    super(message);
    this.name = "WrapperInputError";
  }
}

export interface ModelWrapper {
  /** Runs once per loaded version, inside the wrapper's process, before the first `predict`: load artifacts here. */
  load?(context: WrapperContext): void | Promise<void>;
  /** Batch in, batch out: one output row per input row, each with a value per declared signature output. */
  predict(context: WrapperContext, rows: WrapperRow[]): WrapperRow[] | Promise<WrapperRow[]>;
  /** Runs when the version is unloaded or the server stops. */
  close?(context: WrapperContext): void | Promise<void>;
}
