// The NATS JetStream source and sink against the real server at 127.0.0.1:4222: batches bounded by maxMessages,
// JSON arrays and undecodable messages, commits that ack (and only they), redelivery of what was not committed, two
// processes splitting one durable, waiting behaviour, and a sink whose replays JetStream deduplicates. Every test
// makes its own streams (unique names) and deletes them afterwards.
import { randomBytes } from "node:crypto";
import { createServer, connect as connectTcp, type AddressInfo, type Socket } from "node:net";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { MlshipError, silentLogger } from "../../src/core/index.js";
import { createNatsSink } from "../../src/stream/sinks/nats.js";
import { createNatsSource, natsMaxAckPending } from "../../src/stream/sources/nats.js";
import type { NatsSinkSpec, NatsSourceSpec, OutputRow, SourceBatch, StreamSink, StreamSource } from "../../src/stream/types.js";

const SERVERS = "nats://127.0.0.1:4222";
const UNREACHABLE = "nats://127.0.0.1:4299";
const logger = silentLogger();

let admin: NatsConnection;
let jsm: JetStreamManager;
let js: JetStreamClient;
const streamsToDelete = new Set<string>();
const openedSources: StreamSource[] = [];
const openedSinks: StreamSink[] = [];

beforeAll(async () => {
  admin = await connect({ servers: SERVERS });
  jsm = await jetstreamManager(admin);
  js = jetstream(admin);
});

afterEach(async () => {
  await Promise.all(openedSources.splice(0).map((s) => s.close()));
  await Promise.all(openedSinks.splice(0).map((s) => s.close()));
  for (const name of streamsToDelete) {
    await jsm.streams.delete(name).catch(() => false);
  }
  streamsToDelete.clear();
});

afterAll(async () => {
  await admin.close();
});

function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString("hex")}`.toUpperCase();
}

/** A stream `<name>` capturing `<name>.>`, deleted after the test. */
async function makeStream(prefix = "MLT"): Promise<string> {
  const name = uniqueName(prefix);
  streamsToDelete.add(name);
  await jsm.streams.add({ name, subjects: [`${name}.>`] });
  return name;
}

async function publishJson(subject: string, values: unknown[]): Promise<void> {
  for (const value of values) await js.publish(subject, JSON.stringify(value));
}

function sourceSpec(stream: string, overrides: Partial<NatsSourceSpec> = {}): NatsSourceSpec {
  return {
    kind: "nats",
    servers: SERVERS,
    stream,
    durable: "scorer",
    maxMessages: 1000,
    ackWaitMs: 30_000,
    deliverPolicy: "all",
    createStream: false,
    ...overrides,
  };
}

async function openSource(spec: NatsSourceSpec): Promise<StreamSource> {
  const source = createNatsSource(spec, { logger, name: "test" });
  openedSources.push(source);
  await source.open();
  return source;
}

async function openSink(spec: NatsSinkSpec): Promise<StreamSink> {
  const sink = createNatsSink(spec, { logger, name: "test" });
  openedSinks.push(sink);
  await sink.open();
  return sink;
}

async function expectMlshipError(promise: Promise<unknown>, code: string, message: RegExp): Promise<MlshipError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(MlshipError);
  expect((error as MlshipError).code).toBe(code);
  expect((error as MlshipError).message).toMatch(message);
  return error as MlshipError;
}

/**
 * A TCP relay to the real server that holds back the status messages ending pull requests (`HMSG` frames whose
 * headers are `NATS/1.0 404` or `408`) for `holdMs`, as a loaded server or connection can, and with
 * `passMessages` also the stored messages (those with a `$JS.ACK.` reply) after the first `passMessages`; everything
 * else passes at once. `held` resolves when it first holds a status: by then the request's messages have gone through.
 */
async function statusDelayingRelay(
  holdMs: number,
  passMessages = Infinity,
): Promise<{ servers: string; held: Promise<void>; close: () => void }> {
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let onHeld: () => void = () => undefined;
  const held = new Promise<void>((resolve) => (onHeld = resolve));
  const server = createServer((client) => {
    const upstream = connectTcp(4222, "127.0.0.1");
    sockets.add(client).add(upstream);
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    client.pipe(upstream);
    let pending = Buffer.alloc(0);
    let passed = 0;
    upstream.on("data", (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        const lineEnd = pending.indexOf("\r\n");
        if (lineEnd < 0) return;
        const line = pending.subarray(0, lineEnd).toString("latin1");
        const isHmsg = line.startsWith("HMSG ");
        const isMsg = isHmsg || line.startsWith("MSG ");
        const bodyLength = isMsg ? Number(line.split(" ").at(-1)) + 2 : 0;
        if (pending.length < lineEnd + 2 + bodyLength) return;
        const frame = pending.subarray(0, lineEnd + 2 + bodyLength);
        pending = pending.subarray(frame.length);
        const headers = frame.subarray(lineEnd + 2, lineEnd + 2 + 12).toString("latin1");
        const isStatus = isHmsg && (headers === "NATS/1.0 404" || headers === "NATS/1.0 408");
        const isStored = isMsg && line.split(" ")[3]?.startsWith("$JS.ACK.") === true;
        if (isStatus || (isStored && ++passed > passMessages)) {
          if (isStatus) onHeld();
          const timer = setTimeout(() => {
            timers.delete(timer);
            client.write(frame);
          }, holdMs);
          timers.add(timer);
        } else {
          client.write(frame);
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    servers: `nats://127.0.0.1:${port}`,
    held,
    close: () => {
      for (const timer of timers) clearTimeout(timer);
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

function ids(batch: SourceBatch): string[] {
  return batch.records.map((r) => r.id);
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

describe("NATS source", () => {
  it("reads what is there in batches of at most maxMessages, with stable ids, fields and origins", async () => {
    const stream = await makeStream();
    const before = Date.now();
    await publishJson(`${stream}.orders`, range(0, 25).map((n) => ({ n, name: `order ${n}`, nested: { ok: n % 2 === 0 } })));
    const source = await openSource(sourceSpec(stream, { maxMessages: 10 }));
    expect(source.kind).toBe("nats");
    expect(source.description).toBe(`nats ${stream} durable scorer`);
    expect(await source.lag()).toBe(25);

    const first = await source.next({ waitMs: 0 });
    expect(ids(first)).toEqual(range(1, 11).map((seq) => `${stream}:${seq}`));
    expect(first.undecodable).toEqual([]);
    expect(first.description).toBe("10 messages, seq 1-10");
    const record = first.records[3];
    expect(record?.fields).toEqual({ n: 3, name: "order 3", nested: { ok: false } });
    expect(record?.origin).toBe(`${stream}.orders #4`);
    expect(record?.arrivedAt).toBeGreaterThanOrEqual(before - 1000);
    expect(record?.arrivedAt).toBeLessThanOrEqual(Date.now());
    await first.commit();

    const second = await source.next({ waitMs: 0 });
    expect(ids(second)).toEqual(range(11, 21).map((seq) => `${stream}:${seq}`));
    await second.commit();
    const third = await source.next({ waitMs: 0 });
    expect(ids(third)).toEqual(range(21, 26).map((seq) => `${stream}:${seq}`));
    expect(third.records.map((r) => r.fields.n)).toEqual(range(20, 25));
    await third.commit();
    const empty = await source.next({ waitMs: 0 });
    expect(empty.records).toEqual([]);
    expect(empty.description).toBe("0 messages");
    expect(await source.lag()).toBe(0);
  });

  it("gives one record per object of a JSON array and dead letters for what is not JSON objects", async () => {
    const stream = await makeStream();
    const subject = `${stream}.in`;
    const huge = `{"broken": "${"x".repeat(70_000)}`;
    for (const text of ['[{"a":1},{"a":2}]', "not json", "42", '[{"a":3}, 5]', '{"b":1}', huge, "[]"]) {
      await js.publish(subject, text);
    }
    const source = await openSource(sourceSpec(stream, { subject }));
    expect(source.description).toBe(`nats ${stream}/${subject} durable scorer`);
    const batch = await source.next({ waitMs: 0 });
    expect(ids(batch)).toEqual([`${stream}:1#0`, `${stream}:1#1`, `${stream}:4#0`, `${stream}:5`]);
    expect(batch.records.map((r) => r.fields)).toEqual([{ a: 1 }, { a: 2 }, { a: 3 }, { b: 1 }]);
    expect(batch.records[2]?.origin).toBe(`${subject} #4`);

    const letters = new Map(batch.undecodable.map((d) => [d.id, d]));
    expect([...letters.keys()]).toEqual([`${stream}:2`, `${stream}:3`, `${stream}:4#1`, `${stream}:6`]);
    for (const letter of letters.values()) {
      expect(letter.stage).toBe("decode");
      expect(letter.field).toBeNull();
    }
    expect(letters.get(`${stream}:2`)?.reason).toMatch(/not valid JSON/);
    expect(letters.get(`${stream}:2`)?.raw).toBe("not json");
    expect(letters.get(`${stream}:2`)?.origin).toBe(`${subject} #2`);
    expect(letters.get(`${stream}:3`)?.reason).toMatch(/a number, not an object/);
    expect(letters.get(`${stream}:3`)?.raw).toBe("42");
    expect(letters.get(`${stream}:4#1`)?.reason).toMatch(/element 1 .* a number/);
    expect(letters.get(`${stream}:4#1`)?.raw).toBe("5");
    expect(letters.get(`${stream}:6`)?.raw).toHaveLength(64 * 1024);
    expect(letters.get(`${stream}:6`)?.raw).toBe(huge.slice(0, 64 * 1024));
    expect(batch.description).toBe("7 messages, seq 1-7");

    // Undecodable messages are acked with the rest: the engine commits after writing their dead letters.
    await batch.commit();
    const info = await jsm.consumers.info(stream, "scorer");
    expect(info.num_ack_pending).toBe(0);
    expect(info.num_pending).toBe(0);
  });

  it("acks on commit only: nothing is left for the durable afterwards, and a second commit is a no-op", async () => {
    const stream = await makeStream();
    await publishJson(`${stream}.x`, range(0, 12).map((n) => ({ n })));
    const source = await openSource(sourceSpec(stream, { maxMessages: 50 }));
    const batch = await source.next({ waitMs: 0 });
    expect(batch.records).toHaveLength(12);
    let info = await jsm.consumers.info(stream, "scorer");
    expect(info.num_ack_pending).toBe(12);
    expect(await source.lag()).toBe(12);
    await batch.commit();
    await batch.commit();
    info = await jsm.consumers.info(stream, "scorer");
    expect(info.num_ack_pending).toBe(0);
    expect(info.num_pending).toBe(0);
    expect(info.config.max_ack_pending).toBe(natsMaxAckPending(50));
    await source.close();

    const again = await openSource(sourceSpec(stream, { maxMessages: 50 }));
    expect((await again.next({ waitMs: 0 })).records).toEqual([]);
    expect(await again.lag()).toBe(0);
  });

  it("hands back the messages holding the records a commit names (after the delay, delivery count up) and acks the rest", async () => {
    const stream = await makeStream();
    await publishJson(`${stream}.x`, [{ n: 1 }, [{ n: 2 }, { n: 3 }], { n: 4 }]);
    const source = await openSource(sourceSpec(stream));
    const batch = await source.next({ waitMs: 0 });
    expect(batch.records.map((r) => [r.id, r.deliveries])).toEqual([
      [`${stream}:1`, 1],
      [`${stream}:2#0`, 1],
      [`${stream}:2#1`, 1],
      [`${stream}:3`, 1],
    ]);
    await batch.commit({ redeliver: new Set([`${stream}:2#1`]), delayMs: 300 });
    // Only message 2 is left, and not before its delay (the ack wait is 30 s: the hand-back is what brings it back).
    expect((await jsm.consumers.info(stream, "scorer")).num_ack_pending).toBe(1);
    expect((await source.next({ waitMs: 0 })).records).toEqual([]);
    const started = Date.now();
    const back = await source.next({ waitMs: 5000 });
    expect(Date.now() - started).toBeLessThan(3000);
    expect(back.records.map((r) => [r.id, r.deliveries])).toEqual([
      [`${stream}:2#0`, 2],
      [`${stream}:2#1`, 2],
    ]);
    await back.commit();
    const info = await jsm.consumers.info(stream, "scorer");
    expect(info.num_ack_pending + info.num_pending).toBe(0);
  });

  it("redelivers what was not committed, with the same ids, after ackWaitMs; a commit after close fails", async () => {
    const stream = await makeStream();
    await publishJson(`${stream}.x`, [{ n: 1 }, { n: 2 }, { n: 3 }]);
    const spec = sourceSpec(stream, { ackWaitMs: 1500 });
    const first = await openSource(spec);
    const taken = await first.next({ waitMs: 0 });
    expect(ids(taken)).toEqual([1, 2, 3].map((seq) => `${stream}:${seq}`));
    await first.close();
    // The connection is gone, so the batch cannot be committed: the engine sees the failure and does not move on.
    await expectMlshipError(taken.commit(), "MLSHIP_ERR_STREAM_UNAVAILABLE", /cannot ack 3 messages: the connection is closed/);

    const second = await openSource(spec);
    // Still within the ack wait: the messages are held for the first reader.
    expect((await second.next({ waitMs: 0 })).records).toEqual([]);
    const started = Date.now();
    const redelivered = await second.next({ waitMs: 5000 });
    expect(Date.now() - started).toBeLessThan(3000);
    expect(ids(redelivered)).toEqual(ids(taken));
    expect(redelivered.records.map((r) => r.fields)).toEqual(taken.records.map((r) => r.fields));
    expect(redelivered.description).toBe("3 messages, seq 1-3 (3 redelivered)");
    await redelivered.commit();
    expect((await jsm.consumers.info(stream, "scorer")).num_ack_pending).toBe(0);
  });

  it("keeps a batch that takes longer than ackWaitMs from going to another process until it commits", async () => {
    const stream = await makeStream();
    await publishJson(`${stream}.x`, [{ n: 1 }, { n: 2 }]);
    const spec = sourceSpec(stream, { ackWaitMs: 600 });
    const [slow, other] = [await openSource(spec), await openSource(spec)];
    const taken = await slow.next({ waitMs: 0 });
    expect(ids(taken)).toEqual([1, 2].map((seq) => `${stream}:${seq}`));
    // Three ack waits pass while the batch is "being scored": the in-progress marks keep the messages with it.
    const started = Date.now();
    const meanwhile = await other.next({ waitMs: 1800 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1700);
    expect(meanwhile.records).toEqual([]);
    await taken.commit();
    expect((await jsm.consumers.info(stream, "scorer")).num_ack_pending).toBe(0);
    // After the commit nothing comes again, and a batch left uncommitted still goes elsewhere once the source closes.
    expect((await other.next({ waitMs: 1000 })).records).toEqual([]);
    await publishJson(`${stream}.x`, [{ n: 3 }]);
    await slow.next({ waitMs: 1000 });
    await slow.close();
    expect(ids(await other.next({ waitMs: 3000 }))).toEqual([`${stream}:3`]);
  });

  it("keeps a pull's messages from going to another process while the pull's closing status is late", async () => {
    const stream = await makeStream();
    await publishJson(`${stream}.x`, [{ n: 1 }, { n: 2 }]);
    const relay = await statusDelayingRelay(3000);
    try {
      const spec = sourceSpec(stream, { ackWaitMs: 600 });
      const late = await openSource({ ...spec, servers: relay.servers });
      const other = await openSource(spec);
      const started = Date.now();
      const pulling = late.next({ waitMs: 0 }).then((batch) => ({ batch, after: Date.now() - started }));
      // The messages have reached the first process; its pull's 408 is held for 3 s, five ack waits.
      await relay.held;
      const meanwhile = await other.next({ waitMs: 2000 });
      expect(meanwhile.records).toEqual([]);
      const { batch: taken, after } = await pulling;
      expect(ids(taken)).toEqual([1, 2].map((seq) => `${stream}:${seq}`));
      expect(taken.description).toBe("2 messages, seq 1-2");
      // Returned once the messages stopped coming, not when the held status arrived.
      expect(after).toBeLessThan(1500);
      await taken.commit();
      expect((await jsm.consumers.info(stream, "scorer")).num_ack_pending).toBe(0);
      expect((await other.next({ waitMs: 1000 })).records).toEqual([]);
      await late.close();
    } finally {
      relay.close();
    }
  });

  it("hands a message back at once when it comes after its pull returned on idle", async () => {
    const stream = await makeStream();
    await publishJson(`${stream}.x`, [{ n: 1 }, { n: 2 }]);
    // The second message and the closing status come 1.5 s late; the ack wait is far longer.
    const relay = await statusDelayingRelay(1500, 1);
    try {
      const spec = sourceSpec(stream, { ackWaitMs: 30_000 });
      const late = await openSource({ ...spec, servers: relay.servers });
      const other = await openSource(spec);
      const started = Date.now();
      const taken = await late.next({ waitMs: 0 });
      expect(ids(taken)).toEqual([`${stream}:1`]);
      expect(Date.now() - started).toBeLessThan(1200);
      // The late message is refused (-NAK) as it arrives, so the other process has it long before its ack wait.
      const handedBack = await other.next({ waitMs: 6000 });
      expect(ids(handedBack)).toEqual([`${stream}:2`]);
      expect(handedBack.description).toBe("1 message, seq 2 (1 redelivered)");
      expect(Date.now() - started).toBeLessThan(5000);
      await Promise.all([taken.commit(), handedBack.commit()]);
      expect((await jsm.consumers.info(stream, "scorer")).num_ack_pending).toBe(0);
      await late.close();
    } finally {
      relay.close();
    }
  });

  it("lets two processes share one durable: each message goes to exactly one of them", async () => {
    const stream = await makeStream();
    const total = 300;
    await publishJson(`${stream}.x`, range(0, total).map((n) => ({ n })));
    // Both open at once on a durable that does not exist yet: creating it must not fail on the race.
    const [a, b] = await Promise.all([
      openSource(sourceSpec(stream, { maxMessages: 15 })),
      openSource(sourceSpec(stream, { maxMessages: 15 })),
    ]);
    const seen: string[] = [];
    const drain = async (source: StreamSource): Promise<string[]> => {
      const mine: string[] = [];
      while (seen.length < total) {
        const batch = await source.next({ waitMs: 200 });
        mine.push(...ids(batch));
        seen.push(...ids(batch));
        await batch.commit();
      }
      return mine;
    };
    const [fromA, fromB] = await Promise.all([drain(a), drain(b)]);
    expect(fromA.length).toBeGreaterThan(0);
    expect(fromB.length).toBeGreaterThan(0);
    const inBoth = fromA.filter((id) => new Set(fromB).has(id));
    expect(inBoth).toEqual([]);
    expect(new Set([...fromA, ...fromB])).toEqual(new Set(range(1, total + 1).map((seq) => `${stream}:${seq}`)));
    expect(fromA.length + fromB.length).toBe(total);
    expect(await a.lag()).toBe(0);
  });

  it("does not wait with waitMs 0, waits about waitMs when nothing comes, and returns as soon as something does", async () => {
    const stream = await makeStream();
    const source = await openSource(sourceSpec(stream));

    let started = Date.now();
    expect((await source.next({ waitMs: 0 })).records).toEqual([]);
    expect(Date.now() - started).toBeLessThan(500);

    started = Date.now();
    expect((await source.next({ waitMs: 1500 })).records).toEqual([]);
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(1400);
    expect(waited).toBeLessThan(2500);

    started = Date.now();
    const publishing = new Promise<void>((resolve, reject) => {
      setTimeout(() => publishJson(`${stream}.x`, [{ late: true }]).then(resolve, reject), 300);
    });
    const batch = await source.next({ waitMs: 10_000 });
    await publishing;
    expect(ids(batch)).toEqual([`${stream}:1`]);
    expect(Date.now() - started).toBeLessThan(2000);

    // An aborted wait returns an empty batch promptly.
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 200);
    started = Date.now();
    expect((await source.next({ waitMs: 10_000, signal: controller.signal })).records).toEqual([]);
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it("refuses a missing stream unless createStream is set, which creates it", async () => {
    const missing = uniqueName("MLT_MISSING");
    await expectMlshipError(
      createNatsSource(sourceSpec(missing), { logger, name: "test" }).open(),
      "MLSHIP_ERR_STREAM_UNAVAILABLE",
      new RegExp(`stream ${missing} does not exist.*createStream`),
    );

    const created = uniqueName("MLT_CREATED");
    streamsToDelete.add(created);
    const source = await openSource(sourceSpec(created, { createStream: true }));
    expect((await jsm.streams.info(created)).config.subjects).toEqual([`${created}.>`]);
    await publishJson(`${created}.a`, [{ x: 1 }]);
    expect(ids(await source.next({ waitMs: 2000 }))).toEqual([`${created}:1`]);

    const withSubject = uniqueName("MLT_SUBJ");
    streamsToDelete.add(withSubject);
    await openSource(sourceSpec(withSubject, { createStream: true, subject: `${withSubject.toLowerCase()}.events` }));
    expect((await jsm.streams.info(withSubject)).config.subjects).toEqual([`${withSubject.toLowerCase()}.events`]);
  });

  it("reuses an existing durable, following a new ackWaitMs, and refuses one that filters another subject", async () => {
    const stream = await makeStream();
    const first = await openSource(sourceSpec(stream, { ackWaitMs: 30_000, subject: `${stream}.a` }));
    await first.close();
    await openSource(sourceSpec(stream, { ackWaitMs: 5_000, subject: `${stream}.a` }));
    const info = await jsm.consumers.info(stream, "scorer");
    expect(info.config.ack_wait).toBe(5_000_000_000);
    expect(info.config.filter_subject).toBe(`${stream}.a`);

    await expectMlshipError(
      createNatsSource(sourceSpec(stream, { subject: `${stream}.b` }), { logger, name: "test" }).open(),
      "MLSHIP_ERR_CONFIG_INVALID",
      /durable consumer scorer .* already exists and filters .*\.a, not .*\.b/,
    );
  });

  it("fails next() with MLSHIP_ERR_STREAM_UNAVAILABLE once the durable is deleted under it", async () => {
    const stream = await makeStream();
    const source = await openSource(sourceSpec(stream));
    await jsm.consumers.delete(stream, "scorer");
    // The JetStream API swallows a pull for a missing consumer, so this takes the pull's answer grace (5 s).
    const started = Date.now();
    await expectMlshipError(
      source.next({ waitMs: 0 }),
      "MLSHIP_ERR_STREAM_UNAVAILABLE",
      new RegExp(`nats ${stream} durable scorer .*durable consumer scorer no longer exists on stream ${stream}`),
    );
    expect(Date.now() - started).toBeLessThan(8000);
    expect(await source.lag()).toBeNull();
  });

  it("reports an unreachable server as MLSHIP_ERR_STREAM_UNAVAILABLE within seconds", async () => {
    const started = Date.now();
    const error = await expectMlshipError(
      createNatsSource(sourceSpec("ANY", { servers: UNREACHABLE }), { logger, name: "test" }).open(),
      "MLSHIP_ERR_STREAM_UNAVAILABLE",
      /cannot reach NATS at nats:\/\/127\.0\.0\.1:4299/,
    );
    expect(error.field).toBe("servers");
    expect(Date.now() - started).toBeLessThan(6000);
  });

  it("refuses bad names and limits at configuration time", () => {
    expect(() => createNatsSource(sourceSpec("A.B"), { logger, name: "test" })).toThrow(/not a valid JetStream name/);
    expect(() => createNatsSource(sourceSpec("S", { durable: "x y" }), { logger, name: "test" })).toThrow(MlshipError);
    expect(() => createNatsSource(sourceSpec("S", { maxMessages: 0 }), { logger, name: "test" })).toThrow(/maxMessages/);
  });
});

describe("NATS sink", () => {
  function rows(from: number, to: number): OutputRow[] {
    return range(from, to).map((n) => ({
      id: `r${n}`,
      fields: { key: `k${n}`, label: n % 2, probabilities: [0.25, 0.75], big: 10n ** 20n, small: 7n, at: new Date(Date.UTC(2026, 0, 1, 0, 0, n)) },
    }));
  }

  it("publishes each row as JSON with its id, and drops a republished row", async () => {
    const stream = await makeStream();
    const subject = `${stream}.preds`;
    const sink = await openSink({ kind: "nats", servers: SERVERS, subject });
    expect(sink.kind).toBe("nats");
    expect(sink.description).toBe(`nats subject ${subject}`);

    await sink.write([], { stream: "job", batchId: 0 });
    expect((await jsm.streams.info(stream)).state.messages).toBe(0);

    await sink.write(rows(0, 600), { stream: "job", batchId: 0 });
    expect((await jsm.streams.info(stream)).state.messages).toBe(600);
    const stored = await jsm.streams.getMessage(stream, { seq: 1 });
    expect(stored?.subject).toBe(subject);
    expect(stored?.json()).toEqual({
      _id: "r0",
      key: "k0",
      label: 0,
      probabilities: [0.25, 0.75],
      big: "100000000000000000000",
      small: 7,
      at: "2026-01-01T00:00:00.000Z",
    });

    // A replayed batch (same ids) adds nothing; a batch overlapping it adds only its new rows.
    await sink.write(rows(0, 600), { stream: "job", batchId: 0 });
    expect((await jsm.streams.info(stream)).state.messages).toBe(600);
    await sink.write(rows(590, 610), { stream: "job", batchId: 1 });
    expect((await jsm.streams.info(stream)).state.messages).toBe(610);
    // The job name is part of the message id: another job's rows with the same ids are not duplicates.
    await sink.write(rows(0, 5), { stream: "other-job", batchId: 0 });
    expect((await jsm.streams.info(stream)).state.messages).toBe(615);

    // What the sink publishes (messages with a Nats-Msg-Id header) reads back through the source, one record each.
    const source = await openSource(sourceSpec(stream, { maxMessages: 700 }));
    const batch = await source.next({ waitMs: 0 });
    expect(batch.undecodable).toEqual([]);
    expect(batch.records).toHaveLength(615);
    expect(batch.records[609]?.fields).toMatchObject({ _id: "r609", key: "k609", label: 1 });
    expect(batch.records[610]?.fields).toMatchObject({ _id: "r0", key: "k0" });
  });

  it("refuses a subject no stream captures, unless createStream names one to create", async () => {
    const name = uniqueName("MLT_SINK");
    const subject = `${name.toLowerCase()}.out`;
    await expectMlshipError(
      createNatsSink({ kind: "nats", servers: SERVERS, subject }, { logger, name: "test" }).open(),
      "MLSHIP_ERR_STREAM_UNAVAILABLE",
      new RegExp(`no JetStream stream captures subject ${subject.replace(/\./g, "\\.")}; create one or set createStream`),
    );

    streamsToDelete.add(name);
    const sink = await openSink({ kind: "nats", servers: SERVERS, subject, createStream: name });
    expect((await jsm.streams.info(name)).config.subjects).toEqual([subject]);
    await sink.write(rows(0, 3), { stream: "job", batchId: 0 });
    expect((await jsm.streams.info(name)).state.messages).toBe(3);

    // A second sink with the same createStream finds the stream already there.
    const again = await openSink({ kind: "nats", servers: SERVERS, subject, createStream: name });
    await again.write(rows(0, 4), { stream: "job", batchId: 1 });
    expect((await jsm.streams.info(name)).state.messages).toBe(4);
  });

  it("fails a write when the stream went away, so the engine does not commit", async () => {
    const stream = await makeStream();
    const sink = await openSink({ kind: "nats", servers: SERVERS, subject: `${stream}.out` });
    await jsm.streams.delete(stream);
    await expectMlshipError(sink.write(rows(0, 10), { stream: "job", batchId: 0 }), "MLSHIP_ERR_STREAM_UNAVAILABLE", /0 of 10 rows stored; no JetStream stream captured the subject/);
  });

  it("reports an unreachable server and refuses wildcard subjects", async () => {
    const started = Date.now();
    await expectMlshipError(
      createNatsSink({ kind: "nats", servers: UNREACHABLE, subject: "x.y" }, { logger, name: "test" }).open(),
      "MLSHIP_ERR_STREAM_UNAVAILABLE",
      /cannot reach NATS at nats:\/\/127\.0\.0\.1:4299/,
    );
    expect(Date.now() - started).toBeLessThan(6000);
    expect(() => createNatsSink({ kind: "nats", servers: SERVERS, subject: "preds.>" }, { logger, name: "test" })).toThrow(
      /not a subject to publish to/,
    );
  });
});
