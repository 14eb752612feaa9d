/**
 * The prediction log's worker thread: it builds records, writes them through its own connection to the metadata
 * store (SQLite in WAL mode with a busy timeout, or its own PostgreSQL pool), spills and replays, so the serving
 * thread only hands over events. Started by `WorkerLogSink` (log-thread.ts); the messages are in that file.
 */
import { parentPort, workerData } from "node:worker_threads";
import { openSqlStore, type SqlStore } from "../store/index.js";
import { LogWriter, type LogLines } from "./log-writer.js";
import { fromWire, type LogWorkerData, type ToLogWorker, type FromLogWorker } from "./log-thread.js";
import { SpillFolder } from "./spill.js";
import { SqlPredictionStore } from "./store.js";
import type { PredictionRecord } from "./types.js";

const port = parentPort;
if (port === null) throw new Error("log-worker.ts runs as a worker thread");
const options = workerData as LogWorkerData;

const send = (message: FromLogWorker): void => port.postMessage(message);

/** Errors cross the thread boundary as plain fields: pino on the main thread prints them like errors. */
function plain(fields: object): object {
  const out: Record<string, unknown> = { ...fields };
  const err = out.err;
  if (err instanceof Error) out.err = { type: err.name, message: err.message, stack: err.stack, code: (err as { code?: unknown }).code };
  return out;
}

const lines: LogLines = {
  info: (fields, message) => send({ type: "log", level: "info", fields: plain(fields), message }),
  warn: (fields, message) => send({ type: "log", level: "warn", fields: plain(fields), message }),
  error: (fields, message) => send({ type: "log", level: "error", fields: plain(fields), message }),
};

/** The store, opened on first use and again after a failed open (a database that was down at start-up). */
class LazyPredictionStore {
  private opening: Promise<{ sql: SqlStore; predictions: SqlPredictionStore }> | undefined;

  private open(): Promise<{ sql: SqlStore; predictions: SqlPredictionStore }> {
    this.opening ??= openSqlStore({ url: options.storeUrl, home: options.home }).then((sql) => ({ sql, predictions: new SqlPredictionStore(sql) }));
    this.opening.catch(() => {
      this.opening = undefined;
    });
    return this.opening;
  }

  async insertPredictions(records: readonly PredictionRecord[]): Promise<number> {
    return (await this.open()).predictions.insertPredictions(records);
  }

  async close(): Promise<void> {
    const opening = this.opening;
    this.opening = undefined;
    if (opening === undefined) return;
    try {
      await (await opening).sql.close();
    } catch {
      // Never opened: nothing to close.
    }
  }
}

const store = new LazyPredictionStore();
const writer = new LogWriter({
  store,
  spill: new SpillFolder(options.spillDir, options.spillMaxBytes),
  logger: lines,
  maxBatchRows: options.maxBatchRows,
  writeTimeoutMs: options.writeTimeoutMs,
  random: Math.random,
});
/** Taking stock of the spill folder: writes and replays wait for it, so that no file is counted twice. */
let opened: Promise<unknown> = Promise.resolve();
/** Writes and replays in progress: close waits for them. */
const busy = new Set<Promise<unknown>>();

function track<T>(work: Promise<T>): Promise<T> {
  busy.add(work);
  void work.finally(() => busy.delete(work)).catch(() => undefined);
  return work;
}

async function handle(message: ToLogWorker): Promise<void> {
  switch (message.type) {
    case "version":
      writer.defineVersion(message.key, message.manifest);
      return;
    case "open": {
      const opening = writer.open();
      opened = opening;
      const files = await opening;
      send({ type: "done", id: message.id, counters: writer.counters(), value: files });
      return;
    }
    case "write":
      await opened;
      await track(writer.write(fromWire(message.events), message.spillOnly));
      send({ type: "done", id: message.id, counters: writer.counters() });
      return;
    case "replay": {
      await opened;
      const rows = await track(writer.replay());
      send({ type: "done", id: message.id, counters: writer.counters(), value: rows });
      return;
    }
    case "close":
      while (busy.size > 0) await Promise.allSettled([...busy]);
      await writer.close();
      await store.close();
      send({ type: "done", id: message.id, counters: writer.counters() });
      return;
  }
}

port.on("message", (message: ToLogWorker) => {
  handle(message).catch((err: unknown) => {
    lines.error({ err }, "prediction log worker: a request failed");
    if ("id" in message) send({ type: "done", id: message.id, counters: writer.counters(), failed: true });
  });
});
