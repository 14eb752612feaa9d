/**
 * Inline execution of small ONNX models: a session on the caller's thread, used for runs it can finish faster than
 * a round trip to a worker costs.
 *
 * Why: for a model such as a 30-feature MLP a run takes tens of microseconds, while posting it to a worker thread
 * costs the main thread a structured clone, a transfer, a cross-thread wake-up each way and a reply it has to
 * deserialize: more main-thread time than the run itself, and on a machine whose cores are busy the wake-ups are
 * where the waiting happens. Running those small runs inline keeps the event loop shorter, not longer.
 *
 * Which runs: the session is calibrated once, on zero-filled inputs, at 1 row and at `CALIBRATION_ROWS` rows. A
 * run goes inline only when the estimate for its row count (fixed cost + rows x per-row cost) is within
 * `maxMicros`; everything else, and every model whose 1-row run is already slower, or whose file is large, or
 * whose inputs are not all fixed-width numeric tensors with a leading batch axis, keeps running on the workers.
 * A model whose live runs turn out much slower than calibrated (several in a row over `SLOW_FACTOR` x the budget)
 * is sent back to the workers for good, with a warning.
 *
 * This module imports onnxruntime-node; it is loaded with `import()` only when inline execution is on, so a
 * process that never loads an ONNX model never loads onnxruntime on its main thread.
 */
import { stat } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import * as ort from "onnxruntime-node";
import { allocate, elementCount, MlshipError } from "../../core/index.js";
import type { Logger, Tensor } from "../../core/index.js";
import type { TensorSpec } from "../../package/index.js";
import type { Outputs } from "../pool/index.js";
import type { InlineRunner } from "../pooled-runtime.js";
import type { LoadSpec } from "../types.js";
import { fromOrtValue, toOrtTensor } from "./convert.js";

/** Larger model files are never run inline: creating and calibrating them would block the event loop too long. */
export const INLINE_MAX_FILE_BYTES = 4 * 1024 * 1024;
/** The row count of the second calibration run (the batcher's default batch size). */
const CALIBRATION_ROWS = 64;
const MAX_INLINE_ROWS = 4 * CALIBRATION_ROWS;
const SLOW_FACTOR = 8;
const SLOW_RUNS_TO_GIVE_UP = 5;

export interface InlineOptions {
  /** Most estimated microseconds for a run to go inline. */
  maxMicros: number;
  logger?: Logger | undefined;
}

/**
 * Runs `session` and reports the microseconds of the run itself. onnxruntime-node runs a session inside a
 * `setImmediate` callback that `run()` queues synchronously; a marker queued just before it fires right before it,
 * so the time excludes the wait for that turn of the event loop (under load, the other callbacks of the turn).
 */
function timedRun(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>, fetches?: string[]): Promise<{ result: ort.InferenceSession.OnnxValueMapType; micros: number }> {
  let started = 0;
  setImmediate(() => {
    started = performance.now();
  });
  const running = fetches === undefined ? session.run(feeds) : session.run(feeds, fetches);
  return running.then((result) => ({ result, micros: (performance.now() - started) * 1000 }));
}

async function timeRun(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>): Promise<number> {
  return (await timedRun(session, feeds)).micros;
}

/** Zero-filled feeds of `rows` rows, or undefined when an input is not a fixed-width numeric tensor with a batch axis. */
function calibrationFeeds(inputs: readonly TensorSpec[], rows: number): Record<string, ort.Tensor> | undefined {
  const feeds: Record<string, ort.Tensor> = {};
  for (const spec of inputs) {
    if (spec.dtype === "string" || spec.shape.length === 0 || spec.shape[0] !== -1) return undefined;
    const rest = spec.shape.slice(1);
    if (rest.some((d) => d < 1)) return undefined;
    const shape = [rows, ...rest];
    feeds[spec.name] = toOrtTensor({ dtype: spec.dtype, shape, data: allocate(spec.dtype, elementCount(shape)) });
  }
  return feeds;
}

/** The fastest of `times` runs (the least disturbed by anything else on the machine). */
async function fastest(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>, times: number): Promise<number> {
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < times; i++) best = Math.min(best, await timeRun(session, feeds));
  return best;
}

class InlineSession implements InlineRunner {
  #slowRuns = 0;
  #disabled = false;

  constructor(
    private readonly key: string,
    private readonly session: ort.InferenceSession,
    private readonly fetchAll: readonly string[],
    /** Most rows a run may have to go inline. */
    readonly maxRows: number,
    private readonly maxMicros: number,
    private readonly logger: Logger | undefined,
  ) {}

  accepts(rows: number): boolean {
    return !this.#disabled && rows <= this.maxRows;
  }

  async run(feeds: Record<string, Tensor>, outputs: readonly string[] | undefined): Promise<Outputs> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, tensor] of Object.entries(feeds)) ortFeeds[name] = toOrtTensor(tensor);
    let run: { result: ort.InferenceSession.OnnxValueMapType; micros: number };
    try {
      run = await timedRun(this.session, ortFeeds, outputs === undefined ? this.fetchAll.slice() : outputs.slice());
    } catch (error) {
      throw new MlshipError("MLSHIP_ERR_RUNTIME_INFERENCE", `model ${this.key} failed to run: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
    const { result } = run;
    this.#watch(run.micros);
    const out: Outputs = {};
    for (const [name, value] of Object.entries(result)) out[name] = fromOrtValue(name, value);
    return out;
  }

  /** A single slow run may be the machine's doing (another process on the core): only a streak counts. */
  #watch(micros: number): void {
    if (micros <= SLOW_FACTOR * this.maxMicros) {
      this.#slowRuns = 0;
      return;
    }
    if (++this.#slowRuns < SLOW_RUNS_TO_GIVE_UP) return;
    this.#disabled = true;
    this.logger?.warn({ model: this.key, micros: Math.round(micros), budgetMicros: this.maxMicros }, "inline runs are slower than calibrated; this model runs on the inference workers from now on");
  }

  release(): Promise<void> {
    this.#disabled = true;
    return this.session.release();
  }
}

/**
 * A calibrated inline session for `spec`, or undefined when the model should stay on the workers (see the module
 * comment). Never throws: a model that cannot run inline simply does not.
 */
export async function openInline(spec: LoadSpec, inputs: readonly TensorSpec[], outputs: readonly TensorSpec[], options: InlineOptions): Promise<InlineRunner | undefined> {
  const one = calibrationFeeds(inputs, 1);
  const many = calibrationFeeds(inputs, CALIBRATION_ROWS);
  if (one === undefined || many === undefined || options.maxMicros <= 0) return undefined;
  let session: ort.InferenceSession | undefined;
  try {
    if ((await stat(spec.modelPath)).size > INLINE_MAX_FILE_BYTES) return undefined;
    session = await ort.InferenceSession.create(spec.modelPath, {
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      executionMode: "sequential",
      graphOptimizationLevel: "all",
      logSeverityLevel: 4,
      ...(spec.options as ort.InferenceSession.SessionOptions | undefined),
    });
    // The first runs of a session pay for its allocations and the JIT: a few untimed runs (the first one bounded, so a
    // model far too slow costs one run), then the fastest of several.
    const first = await timeRun(session, one);
    if (first > Math.max(100 * options.maxMicros, 100_000)) return await release(session);
    await timeRun(session, many);
    await timeRun(session, one);
    const oneMicros = await fastest(session, one, 7);
    if (oneMicros > options.maxMicros) return await release(session);
    const manyMicros = await fastest(session, many, 5);
    const perRow = Math.max(0, (manyMicros - oneMicros) / (CALIBRATION_ROWS - 1));
    // The per-row cost is extrapolated at most to MAX_INLINE_ROWS: beyond a few times the calibrated size, caches
    // and allocation sizes change what a row costs.
    const maxRows = perRow === 0 ? MAX_INLINE_ROWS : Math.max(1, Math.min(MAX_INLINE_ROWS, 1 + Math.floor((options.maxMicros - oneMicros) / perRow)));
    options.logger?.debug({ model: spec.key, oneRowMicros: Math.round(oneMicros), perRowMicros: Math.round(perRow * 100) / 100, maxRows }, "model runs inline for small batches");
    return new InlineSession(spec.key, session, outputs.map((o) => o.name), maxRows, options.maxMicros, options.logger);
  } catch (error) {
    options.logger?.debug({ err: error, model: spec.key }, "model cannot run inline; it runs on the inference workers");
    if (session !== undefined) await release(session);
    return undefined;
  }
}

async function release(session: ort.InferenceSession): Promise<undefined> {
  await session.release().catch(() => undefined);
  return undefined;
}
