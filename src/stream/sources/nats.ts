/**
 * A NATS JetStream durable pull consumer as a stream source. Processes that name the same durable share its
 * messages: the server hands each message to one pull request at a time, and a message not acked within `ackWaitMs`
 * goes to whoever pulls next. Nothing is acked before the engine commits the batch, so a crash loses nothing; record
 * ids are `<stream>:<stream sequence>`, the same on every redelivery, which is what lets idempotent sinks drop the
 * replayed rows.
 *
 * Pulls are raw `CONSUMER.MSG.NEXT` requests with `no_wait`, not the client's `fetch()`: a fetch keeps its request
 * open until it has `max_messages` or `expires` (at least 1 s) passes, so a batch of 5 waiting messages would sit
 * for the whole expiry, and abandoning a fetch early leaves a live request on the server whose messages would then
 * wait out their ack wait. With `no_wait` the server answers at once with what is there (404 when nothing is), and
 * `no_wait` plus `expires` waits up to `expires` for the first message, then returns what is there: exactly
 * `next({ waitMs })`. Either way the request ends with a status the source waits for. A loaded server or connection
 * may delay that status after the last message, so a request that has messages and then hears nothing for
 * PULL_IDLE_MS returns them; a message that still comes for it afterwards is handed back at once (`-NAK`).
 *
 * From the moment a message arrives until its batch commits, it is marked in progress (`+WPI`) every half
 * `ackWaitMs`, which restarts its ack wait: neither a pull waiting for its closing status nor a slow batch (the first
 * one loads the model) lets it go to another process meanwhile. The marks stop when the batch commits or the source
 * closes, and after MAX_PROGRESS_MARKS of them: a batch stuck that long is let go as before. They are timers, so a
 * stalled event loop (or process) still lets a batch go to another process: that is at-least-once delivery, and the
 * operators count such a record once through the engine's claims (../claims.ts), not through these marks.
 *
 * A commit may hand some records back (`redeliver`): their messages get `-NAK` with a delay (one ack wait unless told)
 * instead of `+ACK`, so the server delivers them again later, to whichever process pulls then; the delivery count
 * each record carries (`deliveries`) is what bounds how often the engine does that.
 */
import type { ConsumerConfig, ConsumerInfo, JetStreamManager } from "@nats-io/jetstream";
import type { Msg } from "@nats-io/transport-node";
import { MlshipError, type Logger } from "../../core/index.js";
import {
  checkJetStreamName,
  closeNats,
  connectNats,
  createStream,
  describeNatsError,
  isApiError,
  JsApiCode,
  mapOpenError,
  nanos,
  NATS_REQUEST_TIMEOUT_MS,
  natsLib,
  natsUnavailable,
  openJetStreamManager,
  parseServers,
  replyStatus,
  requestMany,
  type NatsConnection,
} from "../nats.js";
import type { DeadLetter, NatsSourceSpec, RawRecord, SourceBatch, StreamSource } from "../types.js";

/** Dead letters keep at most this much of the message (the contract's 64 KiB). */
const MAX_RAW_BYTES = 64 * 1024;
/** After a pull that ended early with nothing (the server busy with other requests), wait this long before the next. */
const RETRY_PAUSE_MS = 100;
/** How long past its own expiry a pull request may go unanswered before the connection is deemed down. */
const PULL_ANSWER_GRACE_MS = 5_000;
const ACK = new TextEncoder().encode("+ACK");
/** JetStream's "work in progress" ack: the message's ack wait starts again. */
const IN_PROGRESS = new TextEncoder().encode("+WPI");
/** At most this many in-progress marks per batch (ten ack waits' worth of extensions at two marks per wait). */
const MAX_PROGRESS_MARKS = 20;
/** JetStream's negative ack: the message is redelivered at once rather than after its ack wait. */
const NOT_TAKEN = new TextEncoder().encode("-NAK");
/**
 * A pull that has messages but no closing status after this long without another message returns what it has: the
 * server sends a request's messages back to back, then its status, which a loaded server or connection may delay.
 */
const PULL_IDLE_MS = 250;
/** Acks are tiny: a whole batch may be in flight at once. */
const MAX_ACKS_IN_FLIGHT = 4096;

export interface NatsSourceOptions {
  logger: Logger;
  /** The stream job's name; names the connection (`mlship-stream-<name>-source` in the server's monitoring). */
  name: string;
}

/** A message as pulled: its ack subject and what the ack subject says about it. */
interface PulledMessage {
  subject: string;
  /** `$JS.ACK...`: acking publishes here. */
  ackSubject: string;
  data: Uint8Array;
  streamSeq: number;
  deliveryCount: number;
  /** The JetStream timestamp (ms since epoch). */
  storedAt: number;
}

/** What a pull request got, with the in-progress marks already running on it (a no-op when it got nothing). */
interface Pulled {
  messages: PulledMessage[];
  stopMarks: () => void;
}

/** Room for several processes each holding a full batch, so that sharing a durable never stalls on the limit. */
export function natsMaxAckPending(maxMessages: number): number {
  return Math.max(10_000, 20 * maxMessages);
}

export function createNatsSource(spec: NatsSourceSpec, options: NatsSourceOptions): StreamSource {
  checkJetStreamName(spec.stream, "source.stream");
  checkJetStreamName(spec.durable, "source.durable");
  if (!Number.isInteger(spec.maxMessages) || spec.maxMessages < 1) {
    throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `maxMessages must be a positive integer, not ${spec.maxMessages}`, {
      field: "source.maxMessages",
    });
  }
  if (!Number.isFinite(spec.ackWaitMs) || spec.ackWaitMs < 1) {
    throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `ackWaitMs must be a positive number, not ${spec.ackWaitMs}`, {
      field: "source.ackWaitMs",
    });
  }
  return new NatsSource(spec, options);
}

class NatsSource implements StreamSource {
  readonly kind = "nats" as const;
  readonly description: string;
  readonly #spec: NatsSourceSpec;
  readonly #logger: Logger;
  readonly #connectionName: string;
  readonly #servers: string;
  #nc: NatsConnection | null = null;
  #jsm: JetStreamManager | null = null;
  /** The in-progress timers of pulled batches not committed yet. */
  readonly #inProgress = new Set<NodeJS.Timeout>();

  constructor(spec: NatsSourceSpec, options: NatsSourceOptions) {
    this.#spec = spec;
    this.#servers = parseServers(spec.servers).join(",");
    this.#logger = options.logger.child({ source: "nats", stream: spec.stream, durable: spec.durable });
    this.#connectionName = `mlship-stream-${options.name}-source`;
    this.description = `nats ${spec.stream}${spec.subject === undefined ? "" : `/${spec.subject}`} durable ${spec.durable}`;
  }

  async open(): Promise<void> {
    if (this.#nc !== null) return;
    const nc = await connectNats(this.#servers, { name: this.#connectionName, logger: this.#logger });
    try {
      const jsm = await openJetStreamManager(nc, this.#servers);
      await this.#ensureStream(jsm);
      await this.#ensureConsumer(jsm);
      this.#nc = nc;
      this.#jsm = jsm;
    } catch (error) {
      await closeNats(nc, this.#logger);
      throw error;
    }
  }

  async #ensureStream(jsm: JetStreamManager): Promise<void> {
    const { stream } = this.#spec;
    try {
      await jsm.streams.info(stream);
      return;
    } catch (error) {
      if (!isApiError(error, JsApiCode.StreamNotFound)) throw mapOpenError(error, `cannot read JetStream stream ${stream}`, "source.stream");
    }
    if (!this.#spec.createStream) {
      throw natsUnavailable(
        `JetStream stream ${stream} does not exist at ${this.#servers}; create it or set createStream`,
        "source.stream",
      );
    }
    const subjects = [this.#spec.subject ?? `${stream}.>`];
    try {
      await createStream(jsm, stream, subjects, this.#logger);
      // Another process may have won a creation race with other subjects; what matters is that the stream exists.
      await jsm.streams.info(stream);
    } catch (error) {
      throw mapOpenError(error, `cannot create JetStream stream ${stream} (subjects ${subjects.join(", ")})`, "source.stream");
    }
  }

  /**
   * Creates the durable if missing. An existing one is used as it is, except that its ack wait follows `ackWaitMs` and
   * its max_ack_pending is raised to ours when lower (a larger value set by an operator is kept); a filter subject,
   * ack policy or push delivery that differs is a configuration error rather than something to overwrite, because
   * other processes may be consuming with it. The deliver policy only matters when the consumer is created.
   */
  async #ensureConsumer(jsm: JetStreamManager): Promise<void> {
    const { stream, durable, subject } = this.#spec;
    const { AckPolicy, DeliverPolicy } = natsLib().jetstream;
    const wanted: Partial<ConsumerConfig> = {
      durable_name: durable,
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(this.#spec.ackWaitMs),
      deliver_policy: this.#spec.deliverPolicy === "new" ? DeliverPolicy.New : DeliverPolicy.All,
      max_ack_pending: natsMaxAckPending(this.#spec.maxMessages),
      ...(subject === undefined ? {} : { filter_subject: subject }),
    };
    const what = `cannot set up durable consumer ${durable} on stream ${stream}`;
    try {
      // Two rounds: processes starting together may race to create it; creating the same config twice is fine, and
      // a server that refuses the second creation (newer servers when configs differ) sends us to the update path.
      for (let round = 0; round < 2; round++) {
        const existing = await consumerInfoOrNull(jsm, stream, durable);
        if (existing === null) {
          try {
            await jsm.consumers.add(stream, wanted);
            this.#logger.info({ ackWaitMs: this.#spec.ackWaitMs, deliverPolicy: this.#spec.deliverPolicy }, "created durable consumer");
            return;
          } catch (error) {
            if (round === 0 && isApiError(error, JsApiCode.ConsumerNameInUse, JsApiCode.ConsumerAlreadyExists)) continue;
            throw error;
          }
        }
        this.#checkCompatible(existing);
        const update: Partial<ConsumerConfig> = {};
        if (existing.config.ack_wait !== wanted.ack_wait) update.ack_wait = wanted.ack_wait;
        if ((existing.config.max_ack_pending ?? 0) < (wanted.max_ack_pending ?? 0)) update.max_ack_pending = wanted.max_ack_pending;
        if (Object.keys(update).length > 0) {
          await jsm.consumers.update(stream, durable, update);
          this.#logger.info({ from: pick(existing.config, update), to: update }, "updated durable consumer");
        }
        return;
      }
    } catch (error) {
      throw mapOpenError(error, what, "source.durable");
    }
  }

  #checkCompatible(info: ConsumerInfo): void {
    const { durable, stream } = this.#spec;
    const config = info.config;
    const problem =
      config.deliver_subject !== undefined && config.deliver_subject !== ""
        ? "is a push consumer"
        : config.ack_policy !== natsLib().jetstream.AckPolicy.Explicit
          ? `acks with policy "${config.ack_policy}", not "explicit"`
          : (config.filter_subject ?? "") !== (this.#spec.subject ?? "") ||
              (config.filter_subjects !== undefined && config.filter_subjects.length > 0)
            ? `filters ${describeFilter(config)}, not ${this.#spec.subject ?? "the whole stream"}`
            : null;
    if (problem !== null) {
      throw new MlshipError(
        "MLSHIP_ERR_CONFIG_INVALID",
        `durable consumer ${durable} on stream ${stream} already exists and ${problem}: delete it or choose another durable name`,
        { field: "source.durable" },
      );
    }
  }

  async next(options: { waitMs: number; signal?: AbortSignal }): Promise<SourceBatch> {
    const nc = this.#requireOpen();
    const deadline = Date.now() + Math.max(0, options.waitMs);
    let pulled: Pulled = { messages: [], stopMarks: () => undefined };
    for (;;) {
      if (isAborted(options.signal)) break;
      const remaining = deadline - Date.now();
      pulled = await this.#pull(nc, Math.max(0, remaining), options.signal).catch((error: unknown) => this.#explain(error));
      const left = deadline - Date.now();
      if (pulled.messages.length > 0 || left <= 0 || isAborted(options.signal)) break;
      // The server ended the request early without messages (busy with other processes' requests, or too many
      // unacked): try again shortly rather than returning before the caller's wait is over.
      await sleep(Math.min(RETRY_PAUSE_MS, left), options.signal);
      if (deadline - Date.now() <= 0) break;
    }
    return this.#toBatch(nc, pulled);
  }

  /**
   * One pull request for up to `maxMessages`: `no_wait` alone returns what is there now; with `expires` the server
   * waits that long for the first message. Resolves once the server ends the request (a status message, or the batch
   * is full), once messages stop coming for PULL_IDLE_MS, or when `signal` aborts (messages the server sends after
   * that wait out their ack wait). Messages are marked in progress from the moment they arrive, not only once the
   * engine has them: until then the request is what holds them, and it may wait for its closing status.
   */
  #pull(nc: NatsConnection, waitMs: number, signal: AbortSignal | undefined): Promise<Pulled> {
    if (nc.isClosed()) return Promise.reject(this.#unavailable("the connection is closed"));
    const batch = this.#spec.maxMessages;
    const request = { batch, no_wait: true, ...(waitMs > 0 ? { expires: nanos(waitMs) } : {}) };
    const subject = `$JS.API.CONSUMER.MSG.NEXT.${this.#spec.stream}.${this.#spec.durable}`;
    return new Promise<Pulled>((resolve, reject) => {
      const messages: PulledMessage[] = [];
      let stopMarks: () => void = () => undefined;
      let settled = false;
      let idle: NodeJS.Timeout | undefined;
      let lastArrival = 0;
      // Ends the request's subscription: at once when the server ended it, else (returned on idle) on its closing
      // status or the answer timer, whichever comes first.
      const unsubscribe = (): void => {
        clearTimeout(timer);
        clearTimeout(idle);
        sub.unsubscribe();
      };
      const finish = (error?: MlshipError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(idle);
        signal?.removeEventListener("abort", onAbort);
        if (error !== undefined && messages.length === 0) reject(error);
        else resolve({ messages: messages.slice(), stopMarks });
      };
      const onAbort = (): void => {
        finish();
        unsubscribe();
      };
      const onIdle = (): void => {
        // Timers run before the event loop reads the socket: look again after reading what has already come in.
        setImmediate(() => {
          if (settled) return;
          const quiet = Date.now() - lastArrival;
          if (quiet >= PULL_IDLE_MS) {
            this.#logger.debug({ messages: messages.length, quietMs: quiet }, "returned a pull's messages before its closing status");
            finish();
            // Still listening for the closing status (or a late message), but not what keeps a process alive.
            timer.unref();
          } else idle = setTimeout(onIdle, PULL_IDLE_MS - quiet);
        });
      };
      const inbox = natsLib().transport.createInbox();
      const sub = nc.subscribe(inbox, {
        callback: (error, msg) => {
          if (error !== null) {
            finish(this.#unavailable(describeNatsError(error)));
            unsubscribe();
            return;
          }
          const status = statusOf(msg);
          if (status !== null) {
            const outcome = this.#onStatus(status);
            if (outcome === "ignore") return;
            finish(outcome === "end" ? undefined : outcome);
            unsubscribe();
            return;
          }
          const pulled = parsePulled(msg);
          if (pulled === null) {
            this.#logger.warn({ subject: msg.subject, reply: msg.reply }, "ignored a message without a JetStream ack subject");
            return;
          }
          if (settled) {
            // Came after the request was returned on idle: hand it back at once rather than leave it to its ack wait.
            try {
              nc.publish(pulled.ackSubject, NOT_TAKEN);
            } catch {
              // The connection is closing: the message goes to another process after its ack wait.
            }
            return;
          }
          if (messages.length === 0) {
            stopMarks = this.#markInProgress(nc, messages);
            idle = setTimeout(onIdle, PULL_IDLE_MS);
          }
          messages.push(pulled);
          lastArrival = Date.now();
          if (messages.length >= batch) {
            finish();
            unsubscribe();
          }
        },
      });
      // The server always answers a pull (at the latest with 408 at its expiry); silence means the connection is down.
      const timer = setTimeout(() => {
        finish(this.#unavailable(`no answer to a pull request within ${Math.round((waitMs + PULL_ANSWER_GRACE_MS) / 1000)} s`));
        unsubscribe();
      }, waitMs + PULL_ANSWER_GRACE_MS);
      signal?.addEventListener("abort", onAbort, { once: true });
      try {
        nc.publish(subject, JSON.stringify(request), { reply: inbox });
      } catch (error) {
        finish(this.#unavailable(describeNatsError(error)));
        unsubscribe();
      }
    });
  }

  /**
   * A pull that got no answer at all is what a deleted durable looks like (the JetStream API takes the request and
   * drops it): say so when that is the reason, else pass the error on.
   */
  async #explain(error: unknown): Promise<never> {
    const jsm = this.#jsm;
    if (jsm !== null && this.#nc?.isClosed() === false) {
      const { stream, durable } = this.#spec;
      const gone = await jsm.consumers.info(stream, durable).then(
        () => false,
        (infoError: unknown) => isApiError(infoError, JsApiCode.ConsumerNotFound, JsApiCode.StreamNotFound),
      );
      if (gone) throw this.#unavailable(`durable consumer ${durable} no longer exists on stream ${stream} (deleted?)`);
    }
    throw error;
  }

  /** What a status message on a pull request means: the request ended normally, ended with an error, or neither. */
  #onStatus(status: { code: number; description: string }): "end" | "ignore" | MlshipError {
    const { code, description } = status;
    // 404 No Messages, 408 Request Timeout (also after a no_wait batch that had fewer messages than asked).
    if (code === 404 || code === 408) return "end";
    if (code === 100) return "ignore";
    if (code === 409) {
      const lower = description.toLowerCase();
      if (lower.includes("deleted")) return this.#unavailable(`the consumer or stream was deleted (${description})`);
      if (lower.includes("push based")) return this.#unavailable(`the consumer is push based (${description})`);
      // Exceeded MaxWaiting / MaxAckPending / MaxRequestBatch, Leadership Change...: nothing for this request now.
      this.#logger.debug({ status: code, description }, "pull request ended by the server");
      return "end";
    }
    if (code === 503) return this.#unavailable(`JetStream did not answer (${description || "no responders"})`);
    return this.#unavailable(`the server ended a pull request with ${code} ${description}`);
  }

  #toBatch(nc: NatsConnection, { messages, stopMarks }: Pulled): SourceBatch {
    const records: RawRecord[] = [];
    const undecodable: DeadLetter[] = [];
    // Which message each record came from: a record handed back at commit takes its whole message with it.
    const seqOf = new Map<string, number>();
    for (const message of messages) {
      const before = records.length;
      decodeMessage(this.#spec.stream, message, records, undecodable);
      for (const record of records.slice(before)) seqOf.set(record.id, message.streamSeq);
    }
    let committing: Promise<void> | null = null;
    return {
      records,
      undecodable,
      description: describeBatch(messages),
      commit: (options) => {
        stopMarks();
        committing ??= this.#commit(nc, messages, seqOf, options).catch((error: unknown) => {
          // A failed commit may be retried; the messages the server did not confirm are redelivered after ackWaitMs.
          committing = null;
          throw error;
        });
        return committing;
      },
    };
  }

  /**
   * Hands back (`-NAK` with a delay) the messages holding a record of `options.redeliver`, then acks the rest. A
   * message the server delivered twice into one batch (a redelivery while the pull was still receiving) is handed back
   * under both deliveries: an ack of either would settle it. The hand-backs are not confirmed: one the server never got
   * has the same effect after the ack wait.
   */
  async #commit(
    nc: NatsConnection,
    messages: PulledMessage[],
    seqOf: ReadonlyMap<string, number>,
    options: { redeliver?: ReadonlySet<string>; delayMs?: number } | undefined,
  ): Promise<void> {
    const backSeqs = new Set<number>();
    for (const id of options?.redeliver ?? []) {
      const seq = seqOf.get(id);
      if (seq !== undefined) backSeqs.add(seq);
    }
    if (backSeqs.size === 0) return this.#ack(nc, messages);
    const back = messages.filter((m) => backSeqs.has(m.streamSeq));
    if (nc.isClosed()) throw this.#unavailable(`cannot hand back ${back.length} messages: the connection is closed`);
    const delay = new TextEncoder().encode(`-NAK ${JSON.stringify({ delay: nanos(Math.max(0, options?.delayMs ?? this.#spec.ackWaitMs)) })}`);
    for (const message of back) nc.publish(message.ackSubject, delay);
    await this.#ack(nc, messages.filter((m) => !backSeqs.has(m.streamSeq)));
  }

  /**
   * Marks `messages` in progress every half ack wait until the returned function is called (see the file comment).
   * `messages` may still grow (a pull still receiving): each mark covers what it holds by then.
   */
  #markInProgress(nc: NatsConnection, messages: readonly PulledMessage[]): () => void {
    let marks = 0;
    const timer = setInterval(() => {
      if (++marks > MAX_PROGRESS_MARKS || nc.isClosed()) {
        stop();
        return;
      }
      for (const m of messages) nc.publish(m.ackSubject, IN_PROGRESS);
    }, Math.max(50, Math.floor(this.#spec.ackWaitMs / 2)));
    // Never what keeps a process alive.
    timer.unref();
    this.#inProgress.add(timer);
    const stop = (): void => {
      clearInterval(timer);
      this.#inProgress.delete(timer);
    };
    return stop;
  }

  /**
   * Acks every message with a confirmation request (`AckAck`) and waits for the server to confirm each, so a resolved
   * commit is a durable one. Pipelined on one inbox: a batch of a thousand acks is one round trip, not a thousand.
   */
  async #ack(nc: NatsConnection, messages: PulledMessage[]): Promise<void> {
    if (messages.length === 0) return;
    if (nc.isClosed()) throw this.#unavailable(`cannot ack ${messages.length} messages: the connection is closed`);
    const { replies, failure } = await requestMany(
      nc,
      messages.map((m) => ({ subject: m.ackSubject, data: ACK })),
      { inFlight: MAX_ACKS_IN_FLIGHT, timeoutMs: NATS_REQUEST_TIMEOUT_MS },
    );
    // An answer with a status (503: no consumer listens on the ack subject any more) is not a confirmation.
    const refused = replies.filter((reply) => reply !== undefined && replyStatus(reply) !== null).length;
    const unconfirmed = replies.filter((reply) => reply === undefined).length + refused;
    if (unconfirmed > 0) {
      const reason = failure ?? `${refused} acks were refused (the consumer or stream is gone?)`;
      throw this.#unavailable(
        `${unconfirmed} of ${messages.length} acks were not confirmed (${reason}); the server redelivers them after ${this.#spec.ackWaitMs} ms`,
      );
    }
  }

  async lag(): Promise<number | null> {
    const jsm = this.#jsm;
    if (jsm === null || this.#nc?.isClosed() !== false) return null;
    try {
      const info = await jsm.consumers.info(this.#spec.stream, this.#spec.durable);
      return info.num_pending + info.num_ack_pending;
    } catch (error) {
      this.#logger.debug({ err: describeNatsError(error) }, "cannot read the consumer's lag");
      return null;
    }
  }

  async close(): Promise<void> {
    for (const timer of this.#inProgress) clearInterval(timer);
    this.#inProgress.clear();
    const nc = this.#nc;
    this.#nc = null;
    this.#jsm = null;
    await closeNats(nc, this.#logger);
  }

  #requireOpen(): NatsConnection {
    if (this.#nc === null) {
      throw new MlshipError("MLSHIP_ERR_STREAM_UNAVAILABLE", `${this.description} is not open`, { field: "source" });
    }
    return this.#nc;
  }

  #unavailable(reason: string): MlshipError {
    return natsUnavailable(`${this.description} at ${this.#servers}: ${reason}`, "source");
  }
}

async function consumerInfoOrNull(jsm: JetStreamManager, stream: string, durable: string): Promise<ConsumerInfo | null> {
  try {
    return await jsm.consumers.info(stream, durable);
  } catch (error) {
    if (isApiError(error, JsApiCode.ConsumerNotFound)) return null;
    throw error;
  }
}

function describeFilter(config: ConsumerConfig): string {
  if (config.filter_subjects !== undefined && config.filter_subjects.length > 0) return config.filter_subjects.join(", ");
  return config.filter_subject === undefined || config.filter_subject === "" ? "the whole stream" : config.filter_subject;
}

function pick(config: ConsumerConfig, keys: Partial<ConsumerConfig>): Partial<ConsumerConfig> {
  const out: Partial<ConsumerConfig> = {};
  for (const key of Object.keys(keys) as (keyof ConsumerConfig)[]) Object.assign(out, { [key]: config[key] });
  return out;
}

/** A status message (no payload, a status code, not a stored message) or null. */
function statusOf(msg: Msg): { code: number; description: string } | null {
  // A stored message always comes with its ack subject, even when it is empty and carries headers.
  return msg.reply?.startsWith("$JS.ACK.") === true ? null : replyStatus(msg);
}

/**
 * Reads the ack subject: `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>`, or
 * the newer form with `<domain>.<account hash>` after `$JS.ACK` (and sometimes a trailing token).
 */
export function parseAckSubject(ackSubject: string): { streamSeq: number; deliveryCount: number; storedAt: number } | null {
  const tokens = ackSubject.split(".");
  if (tokens[0] !== "$JS" || tokens[1] !== "ACK") return null;
  const offset = tokens.length === 9 ? 2 : tokens.length >= 11 ? 4 : -1;
  if (offset < 0) return null;
  const deliveryCount = Number(tokens[offset + 2]);
  const streamSeq = Number(tokens[offset + 3]);
  const nanosText = tokens[offset + 5] ?? "";
  if (!Number.isSafeInteger(streamSeq) || !Number.isSafeInteger(deliveryCount) || !/^\d+$/.test(nanosText)) return null;
  return { streamSeq, deliveryCount, storedAt: Number(BigInt(nanosText) / 1_000_000n) };
}

function parsePulled(msg: Msg): PulledMessage | null {
  if (msg.reply === undefined) return null;
  const info = parseAckSubject(msg.reply);
  if (info === null) return null;
  return { subject: msg.subject, ackSubject: msg.reply, data: msg.data, ...info };
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
const utf8Lenient = new TextDecoder("utf-8");

/**
 * A JSON object is one record; a JSON array gives one record per object in it. Anything else is a dead letter at
 * stage `decode`: invalid UTF-8 or JSON, a scalar, or (per element) an array element that is not an object.
 */
function decodeMessage(stream: string, message: PulledMessage, records: RawRecord[], undecodable: DeadLetter[]): void {
  const id = `${stream}:${message.streamSeq}`;
  const origin = `${message.subject} #${message.streamSeq}`;
  const deadLetter = (letterId: string, reason: string, raw: string): void => {
    undecodable.push({ id: letterId, origin, stage: "decode", field: null, reason, raw, at: Date.now() });
  };
  let value: unknown;
  try {
    const text = utf8.decode(message.data);
    value = JSON.parse(text.startsWith("\uFEFF") ? text.slice(1) : text);
  } catch (error) {
    const reason = error instanceof SyntaxError ? `not valid JSON: ${error.message}` : "not valid UTF-8 text";
    deadLetter(id, reason, truncatedText(message.data));
    return;
  }
  if (isPlainObject(value)) {
    records.push({ id, fields: value, origin, arrivedAt: message.storedAt, deliveries: message.deliveryCount });
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((element: unknown, index) => {
      const elementId = `${id}#${index}`;
      if (isPlainObject(element)) records.push({ id: elementId, fields: element, origin, arrivedAt: message.storedAt, deliveries: message.deliveryCount });
      else deadLetter(elementId, `element ${index} of the JSON array is ${jsonKind(element)}, not an object`, truncate(JSON.stringify(element)));
    });
    return;
  }
  deadLetter(id, `the message is a JSON ${jsonKind(value)}, not an object or an array of objects`, truncatedText(message.data));
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function jsonKind(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "string" ? "a string" : typeof value === "number" ? "a number" : typeof value === "boolean" ? "a boolean" : typeof value;
}

function truncatedText(data: Uint8Array): string {
  return utf8Lenient.decode(data.length > MAX_RAW_BYTES ? data.subarray(0, MAX_RAW_BYTES) : data);
}

function truncate(text: string): string {
  return text.length > MAX_RAW_BYTES ? text.slice(0, MAX_RAW_BYTES) : text;
}

function describeBatch(messages: PulledMessage[]): string {
  if (messages.length === 0) return "0 messages";
  let low = Infinity;
  let high = -Infinity;
  let redelivered = 0;
  for (const m of messages) {
    low = Math.min(low, m.streamSeq);
    high = Math.max(high, m.streamSeq);
    if (m.deliveryCount > 1) redelivered++;
  }
  const range = low === high ? `seq ${low}` : `seq ${low}-${high}`;
  const noun = messages.length === 1 ? "message" : "messages";
  return `${messages.length} ${noun}, ${range}${redelivered > 0 ? ` (${redelivered} redelivered)` : ""}`;
}

/** A function, not an inline check, so the compiler does not assume an earlier check still holds after an await. */
function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
