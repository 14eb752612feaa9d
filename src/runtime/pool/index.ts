export { WorkerPool, siblingWorkerUrl } from "./worker-pool.js";
export type { PoolRunOptions, PoolStats, WorkerPoolOptions, WorkerStats } from "./worker-pool.js";
export { serveWorker, workerPayload } from "./worker-host.js";
export type { SessionOpener, WorkerSession } from "./worker-host.js";
export { STOP_EXIT_CODE, prepareTransfer } from "./protocol.js";
export type {
  Feeds, ModelSignature, Outputs, PoolWorkerData, RequestType, ResultOf, WireError, WorkerReply, WorkerRequest,
} from "./protocol.js";
