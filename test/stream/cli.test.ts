// `mlship stream run` as real processes (node bin/mlship.js, built dist/) reading NATS JetStream (the server at
// 127.0.0.1:4222, a stream per test) into PostgreSQL (a fresh database): a process killed with SIGKILL mid-stream and
// started again loses nothing and counts nothing twice; two processes on one durable split the work. Also the
// command line's errors, `stream validate`, and the metrics endpoint.
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { featureRows, fixture, REPO, runCli, startCli, tempDir, type LongRunning } from "../cli/helpers.js";
import { scratchPostgres, type ScratchDatabase } from "../helpers/sql-stores.js";

const MODEL = "breast-cancer";
const EXAMPLE = path.join(REPO, "examples", "models", "breast-cancer");
const bc = fixture("breast_cancer_mlp");
const prodFeatures = featureRows(bc);

let home: string;
let scratch: ScratchDatabase;
let dbUrl: string;
let db: pg.Client;
let nc: NatsConnection;
let jsm: JetStreamManager;
let js: JetStreamClient;
const streams = new Set<string>();
const children: LongRunning[] = [];

beforeAll(async () => {
  home = tempDir("stream-cli");
  const app = await createMlship(defaultConfig({ home, user: "tester", "log.level": "warn" }));
  try {
    await registerModel(app, EXAMPLE, { name: MODEL, alias: "production" });
  } finally {
    await app.close();
  }
  scratch = await scratchPostgres();
  dbUrl = scratch.url;
  db = scratch.client;
  nc = await connect({ servers: "nats://127.0.0.1:4222" });
  jsm = await jetstreamManager(nc);
  js = jetstream(nc);
}, 60_000);

afterAll(async () => {
  for (const child of children) if (child.child.exitCode === null) child.child.kill("SIGKILL");
  for (const name of streams) await jsm.streams.delete(name).catch(() => false);
  await nc?.close();
  await scratch?.drop();
  fs.rmSync(home, { recursive: true, force: true });
});

const env = (): Record<string, string> => ({ MLSHIP_HOME: home, MLSHIP_WORKERS: "2", MLSHIP_LOG_LEVEL: "info" });

async function makeStream(): Promise<string> {
  const name = `MLS_${Date.now().toString(36)}_${randomBytes(4).toString("hex")}`.toUpperCase();
  streams.add(name);
  await jsm.streams.add({ name, subjects: [`${name}.>`] });
  return name;
}

/** Message i: production row i mod 143 as a JSON object of named features, with id `m<i>`. */
/** Publishes `n` records, `chunk` at a time with `pauseMs` between chunks (0: as fast as acknowledgements come). */
async function publish(stream: string, n: number, { chunk = 500, pauseMs = 0 } = {}): Promise<void> {
  const pending: Promise<unknown>[] = [];
  for (let i = 0; i < n; i++) {
    const row = prodFeatures[i % prodFeatures.length] as number[];
    const message: Record<string, unknown> = { id: `m${i}` };
    bc.features.forEach((f, j) => (message[f] = row[j]));
    pending.push(js.publish(`${stream}.in`, JSON.stringify(message)));
    if (pending.length >= chunk) {
      await Promise.all(pending.splice(0));
      if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
    }
  }
  await Promise.all(pending);
}

function writeJob(dir: string, stream: string, table: string, extra: string[] = []): string {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, "stream.yaml");
  fs.writeFileSync(
    file,
    [
      `name: ${table}`,
      `model: ${MODEL}@production`,
      "source:",
      "  kind: nats",
      `  stream: ${stream}`,
      "  durable: scorer",
      "  maxMessages: 250",
      "  ackWaitMs: 3s",
      "schema:",
      "  fields: { id: string }",
      "  key: id",
      "  fromModel: true",
      "trigger: { processingTime: 50ms }",
      "sinks:",
      `  - { kind: postgres, url: "${dbUrl}", table: ${table} }`,
      `deadLetter: { kind: postgres, url: "${dbUrl}", table: ${table}_dead }`,
      "aggregations:",
      "  - name: by_label",
      "    window: { kind: batch }",
      "    groupBy: [label]",
      "    metrics: [{ fn: count }]",
      `    sink: { kind: postgres, url: "${dbUrl}", table: ${table}_by_label }`,
      "checkpoint: ./checkpoint",
      ...extra,
    ].join("\n"),
  );
  return file;
}

async function count(sql: string): Promise<number> {
  try {
    const result = await db.query<{ n: string | null }>(sql);
    return Number(result.rows[0]?.n ?? 0);
  } catch (error) {
    // The sink creates its table when the process opens it.
    if ((error as { code?: string }).code === "42P01") return 0;
    throw error;
  }
}

async function until(check: () => Promise<boolean>, what: string, child: LongRunning[], timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${child.map((c) => c.stderr().slice(-3000)).join("\n---\n")}`);
    const dead = child.find((c) => c.child.exitCode !== null);
    if (dead !== undefined) throw new Error(`mlship stream exited (${String(dead.child.exitCode)}) while waiting for ${what}\n${dead.stderr().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function start(args: string[]): LongRunning {
  const child = startCli(args, { env: env() });
  children.push(child);
  return child;
}

function progressLines(child: LongRunning): Array<{ batchId: number; numOutputRows: number }> {
  return child
    .stdout()
    .split("\n")
    .filter((l) => l.startsWith("{") && l.includes('"batchId"'))
    .map((l) => JSON.parse(l) as { batchId: number; numOutputRows: number });
}

async function assertExactlyOnce(table: string, n: number): Promise<void> {
  expect(await count(`select count(*) as n from ${table}`)).toBe(n);
  expect(await count(`select count(distinct _id) as n from ${table}`)).toBe(n);
  const keys = await db.query<{ key: string }>(`select key from ${table}`);
  const seen = new Set(keys.rows.map((r) => r.key));
  const missing = Array.from({ length: n }, (_, i) => `m${i}`).filter((id) => !seen.has(id));
  expect(missing).toEqual([]);
  expect(await count(`select count(*) as n from ${table}_dead`)).toBe(0);
  expect(await count(`select sum(count) as n from ${table}_by_label`)).toBe(n);
}

describe("mlship stream run", { timeout: 180_000 }, () => {
  it("loses nothing and double-counts nothing when killed with SIGKILL mid-stream and started again", async () => {
    const N = 20_000;
    const stream = await makeStream();
    await publish(stream, N);
    const dir = path.join(home, "sigkill");
    const job = writeJob(dir, stream, "sigkill");

    const first = start(["stream", "run", "--config", job]);
    await until(async () => (await count("select count(*) as n from sigkill")) >= 3000, "the first rows in the sink", [first]);
    first.child.kill("SIGKILL");
    await first.exited;
    const atKill = await count("select count(*) as n from sigkill");
    expect(atKill).toBeGreaterThan(0);
    expect(atKill).toBeLessThan(N);

    const second = start(["stream", "run", "--config", job, "--metrics-port", "0"]);
    await until(async () => (await count("select count(*) as n from sigkill")) >= N, `all ${N} rows`, [second]);
    // Redelivered messages the first process had counted in a committed aggregation must not count again.
    await until(async () => (await count("select sum(count) as n from sigkill_by_label")) >= N, "the aggregation", [second]);
    const url = /stream metrics on (http:\/\/\S+)/.exec(second.stderr())?.[1];
    expect(url).toBeDefined();
    const metrics = await (await fetch(url as string)).text();
    expect(metrics).toMatch(/mlship_stream_input_records_total\{stream="sigkill"\} [1-9]/);
    expect(metrics).toContain('mlship_stream_batches_total{stream="sigkill",status="ok"}');
    expect(metrics).toContain("mlship_stream_batch_duration_seconds_bucket");
    expect(metrics).toMatch(/mlship_stream_consumer_lag\{stream="sigkill",source="main"\}/);
    const health = await fetch((url as string).replace(/\/metrics$/, "/healthz"));
    expect(health.status).toBe(200);
    // Let a few empty triggers pass: nothing more may arrive.
    await new Promise((r) => setTimeout(r, 4000));
    second.child.kill("SIGTERM");
    expect(await second.exited).toBe(0);
    expect(second.stdout()).toMatch(/"summary":\{"stream":"sigkill","reason":"stopped"/);
    await assertExactlyOnce("sigkill", N);
  });

  it("splits one durable consumer between two processes (--instance): each gets some, together exactly all", async () => {
    const N = 6000;
    const stream = await makeStream();
    const dir = path.join(home, "pair");
    const job = writeJob(dir, stream, "pair");
    const a = start(["stream", "run", "--config", job, "--instance", "a"]);
    const b = start(["stream", "run", "--config", job, "--instance", "b"]);
    await until(async () => a.stderr().includes("stream started") && b.stderr().includes("stream started"), "both processes to start", [a, b]);
    // Spread over about 2.4 s: all at once, a process that is a moment slower to pull (a busy machine) can find the
    // other one has taken everything, which is correct behaviour but leaves nothing to say about the split.
    await publish(stream, N, { chunk: 250, pauseMs: 100 });
    await until(async () => (await count("select count(*) as n from pair")) >= N, `all ${N} rows`, [a, b]);
    await until(async () => (await count("select sum(count) as n from pair_by_label")) >= N, "the aggregation", [a, b]);
    a.child.kill("SIGTERM");
    b.child.kill("SIGTERM");
    expect(await a.exited).toBe(0);
    expect(await b.exited).toBe(0);
    await assertExactlyOnce("pair", N);
    const scoredBy = [a, b].map((c) => progressLines(c).reduce((sum, p) => sum + p.numOutputRows, 0));
    expect(scoredBy[0]).toBeGreaterThan(0);
    expect(scoredBy[1]).toBeGreaterThan(0);
    expect((scoredBy[0] as number) + (scoredBy[1] as number)).toBeGreaterThanOrEqual(N);
  });
});

describe("mlship stream: command line", { timeout: 60_000 }, () => {
  it("says how to name the config (exit 2) and refuses a bad --metrics-port", async () => {
    const none = await runCli(["stream", "run"], { env: { MLSHIP_HOME: home } });
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/^mlship: .*--config.* \[MLSHIP_ERR_CLI_USAGE\]\n$/);
    const port = await runCli(["stream", "run", "--config", "x.yaml", "--metrics-port", "eighty"], { env: { MLSHIP_HOME: home } });
    expect(port.code).toBe(2);
    expect(port.stderr).toContain("--metrics-port");
  });

  it("refuses an invalid config naming the field (exit 1)", async () => {
    const dir = path.join(home, "invalid");
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, "stream.yaml");
    fs.writeFileSync(file, "name: bad\nmodel: breast-cancer\nsource: { kind: folder, path: in, maxFilesPerTriger: 2 }\nschema: { fromModel: true }\nsinks: [{ kind: jsonl, path: out }]\n");
    const r = await runCli(["stream", "run", "--config", file], { env: { MLSHIP_HOME: home } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/maxFilesPerTriger/);
    expect(r.stderr).toMatch(/\[MLSHIP_ERR_CONFIG_INVALID\]\n$/);
    const missing = await runCli(["stream", "validate", path.join(dir, "nope.yaml")], { env: { MLSHIP_HOME: home } });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/does not exist/);
  });

  it("validates a config: defaults filled in, paths absolute, the model's columns resolved", async () => {
    const dir = path.join(home, "validate");
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, "stream.yaml");
    fs.writeFileSync(file, "name: checked\nmodel: breast-cancer@production\nsource: { kind: folder, path: in }\nschema: { fields: { id: string }, key: id, fromModel: true }\nsinks: [{ kind: jsonl, path: out }]\n");
    const r = await runCli(["stream", "validate", "--config", file], { env: { MLSHIP_HOME: home } });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const resolved = JSON.parse(r.stdout) as {
      source: { path: string; maxFilesPerTrigger: number };
      trigger: { kind: string; intervalMs: number };
      schema: { fields: Array<{ name: string }> };
      resolved: { model: string; version: number; features: string[] };
      checkpoint: string;
    };
    expect(resolved.source).toMatchObject({ path: path.join(dir, "in"), maxFilesPerTrigger: 1 });
    expect(resolved.trigger).toEqual({ kind: "processingTime", intervalMs: 1000 });
    expect(resolved.schema.fields.map((f) => f.name)).toEqual(["id", ...bc.features]);
    expect(resolved.resolved).toEqual({ model: MODEL, version: 1, columns: bc.features, features: bc.features });
    expect(resolved.checkpoint).toBe(path.join(home, "streams", "checked"));
    // A stream that fails (its model does not exist) exits 1 with the reason.
    fs.writeFileSync(file, "name: nomodel\nmodel: no-such-model\nsource: { kind: folder, path: in }\nschema: { fields: { id: string }, key: id, fromModel: true }\nsinks: [{ kind: jsonl, path: out }]\ntrigger: once\n");
    const failed = await runCli(["stream", "run", file], { env: { MLSHIP_HOME: home } });
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/no-such-model.*\[MLSHIP_ERR_MODEL_NOT_FOUND\]/);
  });
});
