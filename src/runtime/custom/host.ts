/**
 * The child process that runs one custom wrapper (one per loaded version). It is started by wrapper-process.ts
 * under Node's permission model and talks to it over the IPC channel only (protocol.ts): `init` imports the
 * bundle and runs `load`, each `predict` turns feeds into rows, calls the wrapper and packs its rows back into
 * tensors, `close` runs the wrapper's `close` and exits. Wrapper errors are reported per call; the process only
 * dies when the wrapper kills it (a crash, a heap exhausted), and the parent then starts a new one.
 *
 * It imports nothing outside src/runtime/custom/ (the permission model lets it read only this folder, the
 * package, and mlship's node_modules).
 */
import process from "node:process";
import { pathToFileURL } from "node:url";
import type { ChildMessage, HostFailure, HostInit, ParentMessage, WireTensor } from "./protocol.js";
import { feedsToRows, rowsToTensors, RowsError } from "./rows.js";
import type { ModelWrapper, WrapperContext, WrapperLogger, WrapperOnnxSession } from "./wrapper.js";

/** The slice of onnxruntime-node this file uses (imported lazily: a wrapper that never calls `onnx()` never loads it). */
interface Ort {
  InferenceSession: {
    create(path: string, options: Record<string, unknown>): Promise<OrtSession>;
  };
  Tensor: new (type: string, data: unknown, dims: readonly number[]) => unknown;
}
interface OrtSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(feeds: Record<string, unknown>): Promise<Record<string, { data: ArrayLike<number | bigint> | string[]; dims: readonly number[] }>>;
  release?(): Promise<void>;
}

function send(message: ChildMessage): void {
  process.send?.(message);
}

function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  if (typeof error === "string") return error;
  const message = (error as { message?: unknown } | null)?.message;
  if (typeof message === "string" && message !== "") return message;
  // A circular object or a BigInt makes JSON.stringify throw: that would reject the call's chain and end the process.
  try {
    return JSON.stringify(error) ?? String(error);
  } catch {
    return String(error);
  }
}

/** Any thrown error with a numeric `row` (WrapperInputError or a look-alike from another copy) is an input error. */
function failureOf(error: unknown): HostFailure {
  if (error instanceof RowsError) return { kind: "wrapper", message: error.message, field: error.field };
  if (typeof error === "object" && error !== null && typeof (error as { row?: unknown }).row === "number") {
    const { row, column } = error as { row: number; column?: unknown };
    const field = typeof column === "string" && column !== "" ? `rows[${row}].${column}` : `rows[${row}]`;
    return { kind: "input", message: messageOf(error), field };
  }
  return { kind: "wrapper", message: messageOf(error) };
}

function inferType(data: unknown): string {
  if (Array.isArray(data)) return "string";
  if (data instanceof Float32Array) return "float32";
  if (data instanceof Float64Array) return "float64";
  if (data instanceof BigInt64Array) return "int64";
  if (data instanceof BigUint64Array) return "uint64";
  if (data instanceof Int32Array) return "int32";
  if (data instanceof Int16Array) return "int16";
  if (data instanceof Int8Array) return "int8";
  if (data instanceof Uint16Array) return "uint16";
  if (data instanceof Uint32Array) return "uint32";
  if (data instanceof Uint8Array) return "uint8";
  return "float32";
}

let wrapper: ModelWrapper | undefined;
let context: WrapperContext | undefined;
let init: HostInit | undefined;
const sessions = new Map<string, Promise<WrapperOnnxSession & { release(): Promise<void> }>>();
let ortModule: Promise<Ort> | undefined;
/** Calls run one after the other, in the order they arrived. */
let chain: Promise<void> = Promise.resolve();

function openOnnx(key: string): Promise<WrapperOnnxSession> {
  const existing = sessions.get(key);
  if (existing !== undefined) return existing;
  const opening = (async (): Promise<WrapperOnnxSession & { release(): Promise<void> }> => {
    const setup = init as HostInit;
    const file = setup.artifacts[key];
    if (file === undefined) {
      throw new Error(`context.onnx(${JSON.stringify(key)}): no such file key in mlship.yaml files (keys: ${Object.keys(setup.artifacts).join(", ")})`);
    }
    if (setup.onnxUrl === null) throw new Error("context.onnx: onnxruntime-node is not installed alongside mlship");
    ortModule ??= import(setup.onnxUrl) as Promise<Ort>;
    const ort = await ortModule;
    // One thread per session: the server runs other models and wrappers on the same cores.
    const session = await ort.InferenceSession.create(file, {
      intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: "sequential", graphOptimizationLevel: "all", logSeverityLevel: 4,
    });
    return {
      inputNames: session.inputNames,
      outputNames: session.outputNames,
      async run(feeds: Parameters<WrapperOnnxSession["run"]>[0]) {
        const ortFeeds: Record<string, unknown> = {};
        for (const [name, f] of Object.entries(feeds)) ortFeeds[name] = new ort.Tensor(f.type ?? inferType(f.data), f.data, f.dims);
        const result = await session.run(ortFeeds);
        const out: Record<string, { data: ArrayLike<number | bigint> | string[]; dims: readonly number[] }> = {};
        for (const [name, t] of Object.entries(result)) out[name] = { data: t.data, dims: t.dims.slice() };
        return out;
      },
      async release() {
        await session.release?.();
      },
    };
  })();
  sessions.set(key, opening);
  opening.catch(() => sessions.delete(key));
  return opening;
}

function logger(): WrapperLogger {
  const line = (level: "info" | "warn" | "error") => (message: string, fields?: Record<string, unknown>): void => {
    send(fields === undefined ? { type: "log", level, message: String(message) } : { type: "log", level, message: String(message), fields });
  };
  return { info: line("info"), warn: line("warn"), error: line("error") };
}

async function start(setup: HostInit): Promise<void> {
  init = setup;
  context = Object.freeze({
    model: Object.freeze({ ...setup.model }),
    artifacts: Object.freeze({ ...setup.artifacts }),
    config: Object.freeze({ ...setup.config }),
    signature: {
      inputs: setup.inputs.map((i) => (i.content_type === "base64" ? { name: i.name, dtype: i.dtype, shape: i.shape, content_type: "base64" as const } : { name: i.name, dtype: i.dtype, shape: i.shape })),
      outputs: setup.outputs.map((o) => (o.content_type === "json" ? { name: o.name, dtype: o.dtype, shape: o.shape, content_type: "json" as const } : { name: o.name, dtype: o.dtype, shape: o.shape })),
    },
    onnx: openOnnx,
    log: logger(),
    scratchDir: setup.scratchDir,
  });
  let loaded: unknown;
  try {
    const mod = (await import(pathToFileURL(setup.bundle).href)) as { default?: unknown };
    loaded = mod.default;
  } catch (error) {
    throw new Error(`cannot import the wrapper bundle: ${messageOf(error)}`);
  }
  // A class is accepted too (`export default class implements ModelWrapper`): one instance per process.
  if (typeof loaded === "function" && typeof (loaded as { prototype?: { predict?: unknown } }).prototype?.predict === "function") {
    loaded = new (loaded as new () => unknown)();
  }
  if (typeof loaded !== "object" || loaded === null || typeof (loaded as ModelWrapper).predict !== "function") {
    throw new Error("the bundle's default export must be a ModelWrapper (an object or class with predict(context, rows))");
  }
  wrapper = loaded as ModelWrapper;
  await wrapper.load?.(context);
}

async function predict(id: number, feeds: Record<string, WireTensor>): Promise<void> {
  const setup = init as HostInit;
  try {
    const rows = feedsToRows(setup.inputs, feeds);
    const answer = await (wrapper as ModelWrapper).predict(context as WrapperContext, rows);
    send({ type: "result", id, outputs: rowsToTensors(setup.outputs, answer, rows.length) });
  } catch (error) {
    send({ type: "failed", id, error: failureOf(error) });
  }
}

async function close(): Promise<void> {
  try {
    if (wrapper !== undefined && context !== undefined) await wrapper.close?.(context);
  } catch (error) {
    send({ type: "log", level: "warn", message: `wrapper close() failed: ${messageOf(error)}` });
  }
  for (const s of sessions.values()) await s.then((x) => x.release()).catch(() => undefined);
  send({ type: "closed" });
  process.disconnect?.();
  process.exit(0);
}

process.on("message", (message: ParentMessage) => {
  switch (message.type) {
    case "init":
      chain = chain.then(() =>
        start(message).then(
          () => send({ type: "ready" }),
          (error: unknown) => send({ type: "load-failed", error: { kind: "load", message: messageOf(error) } }),
        ));
      break;
    case "predict":
      chain = chain.then(() => predict(message.id, message.feeds));
      break;
    case "close":
      chain = chain.then(close);
      break;
  }
});

// The parent went away (or closed the channel): nothing more can arrive, so stop.
process.on("disconnect", () => process.exit(0));
