/**
 * A NATS subject as a stream sink: each output row is published to JetStream as one JSON message,
 * `{"_id": <row id>, ...fields}`, and `write` resolves once every publish has its PubAck (the message is stored).
 *
 * Idempotence comes from JetStream's message deduplication: each publish carries `Nats-Msg-Id: <job>:<row id>`, and
 * the stream drops a message whose id it has seen within its duplicate window (2 minutes by default; the stream's
 * `duplicate_window` setting). A batch replayed after a crash within that window therefore adds nothing; one replayed
 * later is published again, so give the stream a window longer than the longest outage you want covered.
 *
 * Publishes are pipelined on one reply inbox (`requestMany`, up to 1024 awaiting their PubAck) rather than sent
 * through `js.publish()` one awaited request at a time, whose per-request overhead caps a sink at a few thousand rows
 * a second.
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import { MlshipError, type Logger } from "../../core/index.js";
import {
  checkJetStreamName,
  closeNats,
  connectNats,
  createStream,
  findStreamForSubject,
  mapOpenError,
  NATS_REQUEST_TIMEOUT_MS,
  natsLib,
  natsUnavailable,
  openJetStreamManager,
  parseServers,
  replyStatus,
  requestMany,
  type Msg,
  type NatsConnection,
} from "../nats.js";
import type { NatsSinkSpec, OutputRow, SinkWriteContext, StreamSink } from "../types.js";

/** Publishes awaiting their PubAck at once: a typical batch goes out in one window, memory stays bounded by the batch. */
const MAX_PUBLISHES_IN_FLIGHT = 1024;
/** JetStream drops a message whose id it stored within the stream's duplicate window. */
const MSG_ID_HEADER = "Nats-Msg-Id";

export interface NatsSinkOptions {
  logger: Logger;
  /** The stream job's name; names the connection (`mlship-stream-<name>-sink`). */
  name: string;
}

export function createNatsSink(spec: NatsSinkSpec, options: NatsSinkOptions): StreamSink {
  if (!/^[^\s*>]+$/.test(spec.subject) || spec.subject.split(".").some((token) => token === "")) {
    throw new MlshipError(
      "MLSHIP_ERR_CONFIG_INVALID",
      `"${spec.subject}" is not a subject to publish to: use dot-separated tokens without spaces or wildcards (* >)`,
      { field: "sink.subject" },
    );
  }
  if (spec.createStream !== undefined) checkJetStreamName(spec.createStream, "sink.createStream");
  return new NatsSink(spec, options);
}

class NatsSink implements StreamSink {
  readonly kind = "nats" as const;
  readonly description: string;
  readonly #spec: NatsSinkSpec;
  readonly #logger: Logger;
  readonly #connectionName: string;
  readonly #servers: string;
  #nc: NatsConnection | null = null;
  #stream = "";

  constructor(spec: NatsSinkSpec, options: NatsSinkOptions) {
    this.#spec = spec;
    this.#servers = parseServers(spec.servers).join(",");
    this.#logger = options.logger.child({ sink: "nats", subject: spec.subject });
    this.#connectionName = `mlship-stream-${options.name}-sink`;
    this.description = `nats subject ${spec.subject}`;
  }

  async open(): Promise<void> {
    if (this.#nc !== null) return;
    const nc = await connectNats(this.#servers, { name: this.#connectionName, logger: this.#logger });
    try {
      const jsm = await openJetStreamManager(nc, this.#servers);
      this.#stream = await this.#ensureStream(jsm);
      this.#nc = nc;
    } catch (error) {
      await closeNats(nc, this.#logger);
      throw error;
    }
  }

  async #ensureStream(jsm: JetStreamManager): Promise<string> {
    const { subject, createStream: streamToCreate } = this.#spec;
    try {
      const found = await findStreamForSubject(jsm, subject);
      if (found !== null) return found;
      if (streamToCreate === undefined) {
        throw natsUnavailable(
          `no JetStream stream captures subject ${subject}; create one or set createStream (NATS at ${this.#servers})`,
          "sink.subject",
        );
      }
      await createStream(jsm, streamToCreate, [subject], this.#logger);
      // Another process may have created a stream for the subject first, under this name or another one.
      const created = await findStreamForSubject(jsm, subject);
      if (created !== null) return created;
      throw new MlshipError(
        "MLSHIP_ERR_CONFIG_INVALID",
        `stream ${streamToCreate} exists but does not capture subject ${subject}; choose another createStream name`,
        { field: "sink.createStream" },
      );
    } catch (error) {
      throw mapOpenError(error, `cannot set up the JetStream stream for subject ${subject}`, "sink.subject");
    }
  }

  async write(rows: readonly OutputRow[], context: SinkWriteContext): Promise<void> {
    if (rows.length === 0) return;
    if (this.#nc === null) {
      throw new MlshipError("MLSHIP_ERR_STREAM_UNAVAILABLE", `${this.description} is not open`, { field: "sink" });
    }
    if (this.#nc.isClosed()) throw this.#unavailable("the connection is closed", 0, rows.length);
    const { replies, failure } = await requestMany(
      this.#nc,
      rows.map((row) => {
        const headers = natsLib().transport.headers();
        headers.set(MSG_ID_HEADER, `${context.stream}:${row.id}`);
        return { subject: this.#spec.subject, data: encodeRow(row), headers };
      }),
      { inFlight: MAX_PUBLISHES_IN_FLIGHT, timeoutMs: NATS_REQUEST_TIMEOUT_MS },
    );
    let stored = 0;
    let duplicates = 0;
    let refusal: string | null = null;
    for (const reply of replies) {
      if (reply === undefined) continue;
      const outcome = readPubAck(reply);
      if (typeof outcome === "string") refusal ??= outcome;
      else {
        stored++;
        if (outcome.duplicate) duplicates++;
      }
    }
    // Any row not stored fails the write, so the engine does not commit and the batch comes back.
    if (stored < rows.length) throw this.#unavailable(refusal ?? failure ?? "not every row was acknowledged", stored, rows.length);
    if (duplicates > 0) {
      this.#logger.debug({ batchId: context.batchId, rows: rows.length, duplicates }, "JetStream dropped rows already published");
    }
  }

  async close(): Promise<void> {
    const nc = this.#nc;
    this.#nc = null;
    await closeNats(nc, this.#logger);
  }

  #unavailable(reason: string, stored: number, total: number): MlshipError {
    return natsUnavailable(
      `publishing to ${this.#spec.subject} (stream ${this.#stream}) at ${this.#servers} failed: ${stored} of ${total} rows stored; ${reason}`,
      "sink",
    );
  }
}

/** A PubAck (`{stream, seq, duplicate?}`), or why the publish was not stored. */
function readPubAck(reply: Msg): { duplicate: boolean } | string {
  const status = replyStatus(reply);
  if (status !== null) {
    // 503: nothing answered the publish, i.e. no stream captures the subject any more.
    return status.code === 503 ? "no JetStream stream captured the subject (503 no responders)" : `${status.code} ${status.description}`;
  }
  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder().decode(reply.data));
  } catch {
    return "the server's answer to a publish was not JSON";
  }
  if (typeof body !== "object" || body === null) return "the server's answer to a publish was not a PubAck";
  const { error, seq, duplicate } = body as { error?: { description?: string; err_code?: number }; seq?: unknown; duplicate?: unknown };
  if (error !== undefined) return `JetStream refused the publish: ${error.description ?? "unknown error"}${error.err_code === undefined ? "" : ` (${error.err_code})`}`;
  if (typeof seq !== "number") return "the server's answer to a publish was not a PubAck";
  return { duplicate: duplicate === true };
}

const encoder = new TextEncoder();

/** `{"_id": id, ...fields}`: a field named `_id` is replaced by the row id, which is what consumers dedupe on. */
export function encodeRow(row: OutputRow): Uint8Array {
  const payload: Record<string, unknown> = { _id: row.id, ...row.fields };
  payload._id = row.id;
  return encoder.encode(JSON.stringify(payload, jsonValue));
}

/** JSON.stringify's replacer: bigints as numbers (as text when unsafe), typed arrays as arrays. Dates are ISO already. */
function jsonValue(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") {
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value.toString();
  }
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
    return Array.from(value as unknown as ArrayLike<number | bigint>);
  }
  return value;
}
