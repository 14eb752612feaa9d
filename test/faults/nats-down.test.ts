// NATS down: a stream job reads JetStream on its own nats-server process (file store in a temp folder), which the test
// kills with SIGKILL mid-stream. The job does not crash: it keeps retrying the read, and its status row says why;
// a nats-server restarted on the same port and store dir brings the stream back with its messages and durable
// consumer, the job resumes by itself, and the output holds exactly the N published rows, none twice, each with the
// fixture's prediction.
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { silentLogger } from "../../src/core/index.js";
import { parseStreamConfig } from "../../src/stream/config.js";
import { startStream } from "../../src/stream/engine.js";
import { StreamStatusStore } from "../../src/stream/status.js";
import type { StreamProgress } from "../../src/stream/types.js";
import { readCsv, readExpected } from "../scoring/world.js";
import { until } from "./proxy.js";

const EXAMPLE = fileURLToPath(new URL("../../examples/models/breast-cancer", import.meta.url));
const NATS_SERVER = "/usr/sbin/nats-server";
const CLASSES = ["malignant", "benign"];
const N = 200;
const home = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-nats-down-"));
const storeDir = path.join(home, "jetstream");

let port: number;
let nats: ChildProcess | undefined;
let app: Mlship;

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const p = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return p;
}

function canConnect(p: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(p, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

async function startNats(): Promise<void> {
  nats = spawn(NATS_SERVER, ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", storeDir], { stdio: "ignore" });
  await until(() => canConnect(port), "nats-server to listen");
}

async function killNats(): Promise<void> {
  const child = nats;
  nats = undefined;
  if (child === undefined || child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGKILL");
  await exited;
}

/** Publishes messages `from..to` (prod.csv rows as JSON objects with an id) with a connection of its own. */
async function publish(subject: string, rows: Array<Record<string, unknown>>, from: number, to: number, create = false): Promise<void> {
  const nc = await connect({ servers: `nats://127.0.0.1:${port}` });
  try {
    if (create) await (await jetstreamManager(nc)).streams.add({ name: "SCORES", subjects: [`${subject}.>`] });
    const js = jetstream(nc);
    for (let i = from; i < to; i++) await js.publish(`${subject}.in`, JSON.stringify(rows[i]));
  } finally {
    await nc.close();
  }
}

beforeAll(async () => {
  port = await freePort();
  await startNats();
  app = await createMlship(defaultConfig({ home, "runtime.workers": 1, "log.level": "silent" }), { logger: silentLogger() });
  await registerModel(app, EXAMPLE, { name: "breast-cancer", alias: "production" });
}, 60_000);

afterAll(async () => {
  await app?.close();
  await killNats();
  fs.rmSync(home, { recursive: true, force: true });
});

describe("NATS down", () => {
  it("pauses a stream while its NATS server is gone (status says why), resumes after a restart, and writes exactly N rows", async () => {
    const { header } = await readCsv("breast_cancer_mlp");
    const features = header.slice(0, -1);
    const expected = await readExpected("breast_cancer_mlp");
    const messages = Array.from({ length: N }, (_, i) => {
      const values = expected.inputs[i % expected.inputs.length] as number[];
      return { id: `m${i}`, ...Object.fromEntries(features.map((f, j) => [f, values[j]])) };
    });
    const labelOf = (i: number): string => CLASSES[expected.outputs.label?.[i % expected.inputs.length] as number] as string;
    await publish("JOBS", messages, 0, N / 2, true);

    const dir = path.join(home, "job");
    const config = parseStreamConfig(
      {
        name: "nats-outage",
        model: "breast-cancer@production",
        source: { kind: "nats", servers: [`nats://127.0.0.1:${port}`], stream: "SCORES", durable: "outage", maxMessages: 10 },
        schema: { fields: { id: "string" }, key: "id", fromModel: true },
        trigger: { processingTime: "20ms" },
        sinks: [{ kind: "jsonl", path: "out" }],
        deadLetter: { kind: "jsonl", path: "dead" },
        checkpoint: "checkpoint",
      },
      { baseDir: dir, home },
    );
    const progress: StreamProgress[] = [];
    const handle = startStream({ scoring: app.scoring, store: app.store, logger: app.logger }, config, { statusHeartbeatMs: 100, onProgress: (p) => progress.push(p) });
    let finished = false;
    void handle.done.then(() => {
      finished = true;
    });
    const statuses = new StreamStatusStore(app.store);

    await until(() => progress.length >= 2, "two micro-batches before the outage");
    await killNats();
    const batchesAtKill = progress.length;
    // The job is alive, retrying the read; its status row names the failure.
    const paused = await (async () => {
      let last: Awaited<ReturnType<StreamStatusStore["get"]>>;
      await until(async () => {
        last = await statuses.get("nats-outage");
        return last?.lastError !== null && last?.lastError !== undefined;
      }, "the status to report the outage", 15_000);
      return last;
    })();
    expect(paused).toMatchObject({ state: "running" });
    expect(paused?.lastError).toMatch(/nats|unavailable|connect|timeout|disconnect/i);
    expect(finished).toBe(false);
    expect(progress.length).toBeLessThanOrEqual(batchesAtKill + 1);

    await startNats();
    await publish("JOBS", messages, N / 2, N);
    const outDir = path.join(dir, "out");
    const readOutput = (): Array<Record<string, unknown>> =>
      (fs.existsSync(outDir) ? fs.readdirSync(outDir).filter((f) => f.endsWith(".jsonl")) : []).flatMap((f) =>
        fs.readFileSync(path.join(outDir, f), "utf8").trim().split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Record<string, unknown>),
      );
    await until(() => readOutput().length >= N, "all N rows written after the restart", 40_000, 100);
    await until(async () => (await statuses.get("nats-outage"))?.lastError === null, "the status to clear the error");
    // Anything redelivered after the outage (acks the dead server never confirmed) has had time to come back.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const summary = await handle.stop();
    expect(summary).toMatchObject({ reason: "stopped", deadLetters: 0 });
    expect(handle.failure()).toBeNull();

    const written = readOutput();
    expect(written).toHaveLength(N);
    // The schema's key (the message id) is each row's `key`.
    const ids = written.map((r) => r.key as string);
    expect(new Set(ids).size).toBe(N);
    expect([...ids].sort()).toEqual(messages.map((m) => m.id).sort());
    for (const row of written) {
      const i = Number((row.key as string).slice(1));
      expect(row.class, row.key as string).toBe(labelOf(i));
    }
  }, 90_000);
});
