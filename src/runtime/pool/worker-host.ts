/**
 * The worker side of the pool protocol. A flavor's worker script calls `serveWorker(openSession)`; the host keeps
 * the sessions by key, maps errors to platform codes and transfers outputs back.
 *
 * Requests are handled strictly one at a time, in arrival order. Native inference is synchronous anyway (one
 * run at a time per thread), and the order gives simple guarantees: a run follows its load, an unload or close
 * follows the runs before it, and the stop flag is honoured between requests. That flag is how the pool stops a
 * worker: `Worker.terminate()` while onnxruntime is inside a native call aborts the whole process, whereas
 * `process.exit()` from the worker's own JavaScript, between two requests, is safe.
 */
import { parentPort, workerData } from "node:worker_threads";
import { isMlshipError } from "../../core/index.js";
import type { ErrorCode } from "../../core/index.js";
import type { LoadSpec } from "../types.js";
import { STOP_EXIT_CODE, isDataCloneError, isPoolWorkerData, prepareTransfer } from "./protocol.js";
import type { Feeds, ModelSignature, Outputs, WireError, WorkerReply, WorkerRequest } from "./protocol.js";

/** One loaded model inside one worker. */
export interface WorkerSession {
  readonly signature: ModelSignature;
  run(feeds: Feeds, outputs: string[] | undefined): Promise<Outputs>;
  release(): Promise<void>;
}

export type SessionOpener = (spec: LoadSpec) => Promise<WorkerSession>;

/** The `workerData` the pool's owner passed in `WorkerPoolOptions.workerData` (the pool wraps it). */
export function workerPayload<T>(): T {
  return (isPoolWorkerData(workerData) ? workerData.data : workerData) as T;
}

function wireError(error: unknown, fallback: ErrorCode, prefix: string, field?: string): WireError {
  if (isMlshipError(error)) {
    return error.field === undefined
      ? { code: error.code, message: error.message }
      : { code: error.code, message: error.message, field: error.field };
  }
  const message = error instanceof Error ? error.message : String(error);
  return field === undefined ? { code: fallback, message: prefix + message } : { code: fallback, message: prefix + message, field };
}

export function serveWorker(open: SessionOpener): void {
  const port = parentPort;
  if (port === null) throw new Error("serveWorker() must run inside a worker thread");
  const control = isPoolWorkerData(workerData) ? new Int32Array(workerData.control) : undefined;
  const stopRequested = (): boolean => control !== undefined && Atomics.load(control, 0) !== 0;
  const sessions = new Map<string, { spec: LoadSpec; session: WorkerSession }>();

  const reply = (message: WorkerReply, transfer: ArrayBuffer[] = []): void => {
    try {
      port.postMessage(message, transfer);
    } catch (error) {
      if (transfer.length > 0 && isDataCloneError(error)) port.postMessage(message);
      else throw error;
    }
  };
  const fail = (id: number, error: WireError): void => reply({ id, ok: false, error });

  const handle = async (request: WorkerRequest): Promise<void> => {
    switch (request.type) {
      case "load": {
        const { spec } = request;
        try {
          let entry = sessions.get(spec.key);
          if (entry === undefined) {
            entry = { spec, session: await open(spec) };
            sessions.set(spec.key, entry);
          }
          reply({ id: request.id, ok: true, result: entry.session.signature });
        } catch (error) {
          fail(request.id, wireError(error, "MLSHIP_ERR_RUNTIME_LOAD", `cannot load model file ${spec.modelPath}: `, spec.modelPath));
        }
        return;
      }
      case "run": {
        const entry = sessions.get(request.key);
        if (entry === undefined) {
          fail(request.id, {
            code: "MLSHIP_ERR_RUNTIME_UNAVAILABLE",
            message: `model ${request.key} is not loaded in this worker`,
            field: request.key,
          });
          return;
        }
        try {
          const outputs = await entry.session.run(request.feeds, request.outputs);
          const { tensors, transfer } = prepareTransfer(outputs);
          reply({ id: request.id, ok: true, result: tensors }, transfer);
        } catch (error) {
          fail(request.id, wireError(error, "MLSHIP_ERR_RUNTIME_INFERENCE", `model ${request.key} failed to run: `));
        }
        return;
      }
      case "unload": {
        const entry = sessions.get(request.key);
        sessions.delete(request.key);
        if (entry !== undefined) await releaseQuietly(entry.session);
        reply({ id: request.id, ok: true, result: null });
        return;
      }
      case "close": {
        const all = [...sessions.values()];
        sessions.clear();
        for (const entry of all) await releaseQuietly(entry.session);
        reply({ id: request.id, ok: true, result: null });
        // Replies posted before exit are still delivered; exiting here spares the pool a terminate().
        process.exit(0);
      }
    }
  };

  let queue: Promise<void> = Promise.resolve();
  port.on("message", (request: WorkerRequest) => {
    queue = queue.then(async () => {
      if (stopRequested()) process.exit(STOP_EXIT_CODE);
      try {
        await handle(request);
      } catch (error) {
        fail(request.id, wireError(error, "MLSHIP_ERR_CORE_INTERNAL", ""));
      }
      if (stopRequested()) process.exit(STOP_EXIT_CODE);
    });
  });
}

async function releaseQuietly(session: WorkerSession): Promise<void> {
  try {
    await session.release();
  } catch {
    // A session whose release failed holds nothing more we can free.
  }
}
