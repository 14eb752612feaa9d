/**
 * What the NATS JetStream source and sink share: connecting (bounded, with reconnects logged), mapping client and
 * JetStream API errors to platform errors, and finding or creating the stream that captures a subject.
 *
 * Each source and sink owns one connection: a stream job has a handful of them, and separate connections keep a
 * slow sink's publishes from delaying the source's pulls and acks.
 */
import type * as NatsTransport from "@nats-io/transport-node";
import type { Msg, MsgHdrs, NatsConnection } from "@nats-io/transport-node";
import type * as NatsJetStream from "@nats-io/jetstream";
import type { JetStreamApiCodes, JetStreamApiError, JetStreamManager, StreamConfig } from "@nats-io/jetstream";
import { MlshipError, type Logger } from "../core/index.js";
import { DEFAULT_NATS_SERVERS } from "./config.js";

export type { Msg, NatsConnection };

/** Bounds the first connection (per server tried) and every JetStream API request, publish and ack confirmation. */
export const NATS_CONNECT_TIMEOUT_MS = 5_000;
export const NATS_REQUEST_TIMEOUT_MS = 5_000;

/** Stream, consumer and durable names: JetStream refuses `.`, `*`, `>`, whitespace and path separators in them. */
const NAME_PATTERN = /^[^.*>\s/\\]+$/;

/** The NATS client packages, loaded by the first connection (jobs without a NATS source or sink never load them). */
export interface NatsLib {
  transport: typeof NatsTransport;
  jetstream: typeof NatsJetStream;
}

let natsLoaded: NatsLib | undefined;
let natsLoading: Promise<NatsLib> | undefined;

/** Loads the client (once); `connectNats` does it before connecting. */
export function loadNats(): Promise<NatsLib> {
  natsLoading ??= Promise.all([import("@nats-io/transport-node"), import("@nats-io/jetstream")]).then(([transport, jetstream]) => {
    natsLoaded = { transport, jetstream };
    return natsLoaded;
  });
  return natsLoading;
}

/** The loaded client, for code that runs on an open connection (so after `connectNats`, which loaded it). */
export function natsLib(): NatsLib {
  if (natsLoaded === undefined) throw new Error("the NATS client is used before a connection was opened");
  return natsLoaded;
}

/** The client's named JetStream API codes (`JetStreamApiCodes`), copied so that this module loads without it. */
const CLIENT_API_CODES = {
  ConsumerNotFound: 10014,
  StreamNotFound: 10059,
  JetStreamNotEnabledForAccount: 10039,
  StreamWrongLastSequence: 10071,
  StreamWrongLastSequenceUnknown: 10164,
  NoMessageFound: 10037,
} as const satisfies typeof JetStreamApiCodes;

/** JetStream API error codes the source and sink react to (the client only names a few of them). */
export const JsApiCode = {
  ...CLIENT_API_CODES,
  StreamNameInUse: 10058,
  SubjectsOverlap: 10065,
  ConsumerNameInUse: 10013,
  ConsumerAlreadyExists: 10148,
} as const;

/** `a, b` or `nats://a:4222,nats://b:4222` as the client's server list; empty means the default server. */
export function parseServers(servers: string): string[] {
  const list = servers
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  return list.length > 0 ? list : [DEFAULT_NATS_SERVERS];
}

export function natsUnavailable(message: string, field: string, cause?: unknown): MlshipError {
  return new MlshipError("MLSHIP_ERR_STREAM_UNAVAILABLE", message, { field, ...(cause === undefined ? {} : { cause }) });
}

/** The client's message for a failure, with its cause when it adds something (`connection refused` alone says little). */
export function describeNatsError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? error.cause.message : "";
  return cause !== "" && !error.message.includes(cause) ? `${error.message} (${cause})` : error.message;
}

export function isApiError(error: unknown, ...codes: number[]): error is JetStreamApiError {
  // Before the client is loaded no error can have come from it.
  return natsLoaded !== undefined && error instanceof natsLoaded.jetstream.JetStreamApiError && (codes.length === 0 || codes.includes(error.code));
}

/** Checks a stream or durable name at configuration time, so a bad name is a config error rather than a server one. */
export function checkJetStreamName(value: string, field: string): string {
  if (!NAME_PATTERN.test(value)) {
    throw new MlshipError(
      "MLSHIP_ERR_CONFIG_INVALID",
      `"${value}" is not a valid JetStream name: it must be non-empty, without ".", "*", ">", "/", "\\" or spaces`,
      { field },
    );
  }
  return value;
}

/**
 * Connects with a bounded first attempt: an unreachable server is MLSHIP_ERR_STREAM_UNAVAILABLE (field `servers`)
 * within about NATS_CONNECT_TIMEOUT_MS. Once connected, the client reconnects forever; disconnects and reconnects are
 * logged, and requests made meanwhile fail after their own timeout, which the source and sink report as unavailable.
 */
export async function connectNats(servers: string, options: { name: string; logger: Logger }): Promise<NatsConnection> {
  const list = parseServers(servers);
  const { connect } = (await loadNats()).transport;
  const attempt = connect({
    servers: list,
    name: options.name,
    timeout: NATS_CONNECT_TIMEOUT_MS,
    reconnect: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 1_000,
    waitOnFirstConnect: false,
  });
  let timer: NodeJS.Timeout | undefined;
  // The client's timeout covers the handshake of one server; this one bounds the whole first attempt over the list.
  const overall = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no answer within ${Math.round((NATS_CONNECT_TIMEOUT_MS * (list.length + 1)) / 1000)} s`)),
      NATS_CONNECT_TIMEOUT_MS * (list.length + 1),
    );
  });
  let nc: NatsConnection;
  try {
    nc = await Promise.race([attempt, overall]);
  } catch (error) {
    // A connection that completes after we gave up must not linger.
    attempt.then((late) => late.close()).catch(() => undefined);
    throw natsUnavailable(`cannot reach NATS at ${list.join(",")}: ${describeNatsError(error)}`, "servers", error);
  } finally {
    clearTimeout(timer);
  }
  void logConnectionStatus(nc, options.logger, options.name);
  return nc;
}

async function logConnectionStatus(nc: NatsConnection, logger: Logger, name: string): Promise<void> {
  try {
    for await (const status of nc.status()) {
      switch (status.type) {
        case "disconnect":
          logger.warn({ connection: name, server: status.server }, "NATS disconnected; reconnecting");
          break;
        case "reconnect":
          logger.info({ connection: name, server: status.server }, "NATS reconnected");
          break;
        case "error":
          logger.warn({ connection: name, err: status.error.message }, "NATS connection error");
          break;
        case "ldm":
          logger.info({ connection: name, server: status.server }, "NATS server entering lame duck mode");
          break;
        case "slowConsumer":
          logger.warn({ connection: name, pending: status.pending }, "NATS slow consumer");
          break;
        default:
          break;
      }
    }
  } catch (error) {
    logger.debug({ connection: name, err: describeNatsError(error) }, "NATS status iterator ended");
  }
}

export async function openJetStreamManager(nc: NatsConnection, servers: string): Promise<JetStreamManager> {
  try {
    // checkAPI (the default) makes one request, so a server without JetStream fails here with a clear message.
    return await natsLib().jetstream.jetstreamManager(nc, { timeout: NATS_REQUEST_TIMEOUT_MS });
  } catch (error) {
    throw natsUnavailable(`JetStream is not available at ${servers}: ${describeNatsError(error)}`, "servers", error);
  }
}

/** The name of the stream whose subjects capture `subject`, or null when none does. */
export async function findStreamForSubject(jsm: JetStreamManager, subject: string): Promise<string | null> {
  try {
    return await jsm.streams.find(subject);
  } catch (error) {
    if (isApiError(error, JsApiCode.StreamNotFound)) return null;
    throw error;
  }
}

/**
 * Creates a stream with default limits capturing `subjects`. Idempotent under races between processes: when another
 * one created it first (same name, or overlapping subjects) this returns normally and the caller checks again.
 */
export async function createStream(jsm: JetStreamManager, name: string, subjects: string[], logger: Logger): Promise<void> {
  const config: Partial<StreamConfig> & { name: string } = { name, subjects };
  try {
    await jsm.streams.add(config);
    logger.info({ stream: name, subjects }, "created JetStream stream");
  } catch (error) {
    if (isApiError(error, JsApiCode.StreamNameInUse, JsApiCode.SubjectsOverlap)) return;
    throw error;
  }
}

/**
 * Maps an error from a JetStream call made while opening: the server refusing a configuration (an API error) is
 * MLSHIP_ERR_CONFIG_INVALID on `field`, anything else (timeouts, a closed connection) is unavailability.
 */
export function mapOpenError(error: unknown, what: string, field: string): MlshipError {
  if (error instanceof MlshipError) return error;
  if (isApiError(error)) {
    return new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `${what}: ${error.message}`, { field, cause: error });
  }
  return natsUnavailable(`${what}: ${describeNatsError(error)}`, field, error);
}

/** ms as the nanoseconds JetStream durations are given in. */
export function nanos(ms: number): number {
  return Math.round(ms * 1_000_000);
}

/** Closes without draining: nothing in flight is acked or waited for, which is what both sides want on close. */
export async function closeNats(nc: NatsConnection | null, logger: Logger): Promise<void> {
  if (nc === null || nc.isClosed()) return;
  try {
    await nc.close();
  } catch (error) {
    logger.debug({ err: describeNatsError(error) }, "closing the NATS connection failed");
  }
}

export interface PipelinedRequest {
  subject: string;
  data: Uint8Array;
  headers?: MsgHdrs;
}

export interface PipelinedReplies {
  /** Each request's answer, in request order; undefined where none came (only when `failure` is set). */
  replies: (Msg | undefined)[];
  /** Why not every request was answered, or null. */
  failure: string | null;
}

/**
 * Sends many requests with at most `inFlight` unanswered at once, all answered on one wildcard inbox, and waits for
 * every answer. This is what JetStream publishes (PubAcks) and acks with confirmation need at batch sizes: the
 * client's `request()` costs a round of bookkeeping per call and caps out at a few thousand a second, while this
 * runs at the server's pace. Gives up when no answer comes for `timeoutMs` (a dead connection or server).
 */
export function requestMany(
  nc: NatsConnection,
  requests: readonly PipelinedRequest[],
  options: { inFlight: number; timeoutMs: number },
): Promise<PipelinedReplies> {
  const replies: (Msg | undefined)[] = new Array<Msg | undefined>(requests.length).fill(undefined);
  if (requests.length === 0) return Promise.resolve({ replies, failure: null });
  return new Promise((resolve) => {
    const inbox = natsLib().transport.createInbox();
    const indexStart = inbox.length + 1;
    let sent = 0;
    let answered = 0;
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (failure: string | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sub.unsubscribe();
      resolve({ replies, failure });
    };
    const armTimer = (): void => {
      clearTimeout(timer);
      timer = setTimeout(
        () => finish(`${requests.length - answered} of ${requests.length} requests got no answer within ${options.timeoutMs} ms`),
        options.timeoutMs,
      );
    };
    const sendMore = (): void => {
      try {
        while (sent < requests.length && sent - answered < options.inFlight) {
          const request = requests[sent] as PipelinedRequest;
          nc.publish(request.subject, request.data, {
            reply: `${inbox}.${sent}`,
            ...(request.headers === undefined ? {} : { headers: request.headers }),
          });
          sent++;
        }
      } catch (error) {
        finish(describeNatsError(error));
      }
    };
    const sub = nc.subscribe(`${inbox}.*`, {
      callback: (error, msg) => {
        if (error !== null) {
          finish(describeNatsError(error));
          return;
        }
        const index = Number(msg.subject.slice(indexStart));
        if (!Number.isInteger(index) || index < 0 || index >= sent || replies[index] !== undefined) return;
        replies[index] = msg;
        answered++;
        if (answered === requests.length) {
          finish(null);
          return;
        }
        armTimer();
        sendMore();
      },
    });
    armTimer();
    sendMore();
  });
}

/** A status reply (no payload, a status code such as 503 when nothing answered the request), or null. */
export function replyStatus(msg: Msg): { code: number; description: string } | null {
  const headers = msg.headers;
  if (headers === undefined || msg.data.length > 0 || headers.code === 0) return null;
  return { code: headers.code, description: headers.description };
}
