/**
 * Input of the `stream` group (issue 7 item 8): `records` JSON messages on a JetStream stream of its own, one per
 * record, `{"id": "<n>", <30 breast-cancer features>}`. The rows are the fixture's production rows, repeated, each
 * value scaled by a small seeded noise (within +-1 %), as batch-gen does. Publishes are pipelined (a bounded number
 * in flight, every PubAck awaited), so the stream holds every record before the consumers start.
 */
import fs from "node:fs";
import { performance } from "node:perf_hooks";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { answer, job } from "../lib/child.js";
import { uniforms } from "../lib/random.js";

export interface StreamPublishJob {
  servers: string;
  /** The stream to create (it must not exist) and its one subject. */
  stream: string;
  subject: string;
  /** The fixture CSV: a header row, the feature columns in model order, then `label`. */
  fixture: string;
  records: number;
}

export interface StreamPublishResult {
  records: number;
  bytes: number;
  seconds: number;
}

const FEATURES = 30;
const IN_FLIGHT = 2048;

const j = job<StreamPublishJob>();
const lines = fs.readFileSync(j.fixture, "utf8").split("\n").filter((l) => l.trim() !== "");
const features = (lines[0] ?? "").split(",").slice(0, FEATURES);
const base = lines.slice(1).map((l) => l.split(",").slice(0, FEATURES).map(Number));
if (features.length !== FEATURES || base.length === 0) throw new Error(`${j.fixture}: expected ${FEATURES} feature columns and some rows`);

const nc = await connect({ servers: j.servers, name: "mlship-bench-publisher" });
const jsm = await jetstreamManager(nc);
await jsm.streams.add({ name: j.stream, subjects: [j.subject] });
const js = jetstream(nc);
const next = uniforms(0x5eed);
const started = performance.now();
let bytes = 0;
const inFlight = new Set<Promise<unknown>>();
for (let i = 0; i < j.records; i++) {
  const values = base[i % base.length] as number[];
  const record: Record<string, unknown> = { id: String(i) };
  for (let c = 0; c < FEATURES; c++) record[features[c] as string] = Number(((values[c] as number) * (0.99 + 0.02 * next())).toPrecision(6));
  const text = JSON.stringify(record);
  bytes += text.length;
  // A failed publish rejects the race or the final wait below, which fails the child (and the scenario) loudly.
  const tracked: Promise<unknown> = js.publish(j.subject, text).then(() => inFlight.delete(tracked));
  inFlight.add(tracked);
  if (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight);
}
await Promise.all(inFlight);
const seconds = (performance.now() - started) / 1000;
await nc.close();
answer({ records: j.records, bytes, seconds } satisfies StreamPublishResult);
