/**
 * The latency probe: a few keep-alive connections sending at a fixed modest rate (200 req/s over 4 connections by
 * default) while another client (wrk) loads the server, timing its own answers. At that rate the probe uses a few
 * percent of a core, so what it measures is the server's queueing and service time, not a load generator's
 * event-loop delay. Each connection has a send slot every `connections / rate` seconds; it waits for its answer
 * before it sends again, and a slot missed while waiting is skipped, not made up in a burst. Latency runs from
 * the write of the request to the end of the answer, for 2xx answers only; other statuses, socket errors and
 * timeouts are counted. Every body is distinct (bodies.ts), so a prediction cache cannot answer the probe.
 */
import http from "node:http";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { answer, job, percentile, READY_TAG, Samples } from "../lib/child.js";
import { bodyOf, type Stream } from "../lib/bodies.js";

export interface LatencyProbeJob {
  url: string;
  stream: Stream;
  connections: number;
  /** Requests per second over all connections. */
  rate: number;
  /**
   * The window starts this long after the probe says it is ready (BENCH_READY, once its connections are open), so
   * that it lies inside the load generator's run, which the bench starts on that line.
   */
  leadMs: number;
  seconds: number;
  timeoutSeconds: number;
}

export interface ProbeResult {
  tool: "latency probe";
  connections: number;
  /** The rate asked for and the rate sent. */
  targetRate: number;
  sentRate: number;
  sent: number;
  /** 2xx answers. */
  ok: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /** Non-2xx answers by status. */
  statuses: Record<string, number>;
  socketErrors: number;
  timeouts: number;
  seconds: number;
  clientCores: number;
}

const j = job<LatencyProbeJob>();
const url = new URL(j.url);
const agent = new http.Agent({ keepAlive: true, maxSockets: j.connections });
const samples = new Samples();
const statuses: Record<string, number> = {};
let socketErrors = 0;
let timeouts = 0;
let sent = 0;
let n = 0;

type Outcome = { kind: "ok"; ms: number } | { kind: "status"; status: string } | { kind: "timeout" } | { kind: "error" };

function send(body: Buffer): Promise<Outcome> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const req = http.request(
      {
        agent,
        host: url.hostname,
        port: url.port,
        path: j.stream.path,
        method: j.stream.method,
        headers: { "content-type": j.stream.contentType, "content-length": body.length },
        timeout: j.timeoutSeconds * 1000,
      },
      (res) => {
        res.on("data", () => undefined);
        res.on("end", () => {
          const code = res.statusCode ?? 0;
          resolve(code >= 200 && code < 300 ? { kind: "ok", ms: performance.now() - t0 } : { kind: "status", status: String(code) });
        });
        res.on("error", () => resolve({ kind: "error" }));
      },
    );
    req.on("timeout", () => {
      req.destroy();
      resolve({ kind: "timeout" });
    });
    req.on("error", () => resolve({ kind: "error" }));
    req.end(body);
  });
}

// Open every connection before the load starts (untimed): a real client's keep-alive connections already exist
// when overload begins, and a connect under overload would measure the server's accept backlog instead.
await Promise.all(Array.from({ length: j.connections }, () => send(Buffer.from(bodyOf(j.stream, n++)))));
process.stdout.write(`${READY_TAG}{}\n`);
await sleep(j.leadMs);
const cpu = process.cpuUsage();
const start = performance.now();
const stopAt = start + j.seconds * 1000;
const intervalMs = (j.connections * 1000) / j.rate;

async function connection(index: number): Promise<void> {
  // Connections take turns: slots spread evenly over each interval.
  let slot = start + (index * intervalMs) / j.connections;
  while (slot < stopAt) {
    const now = performance.now();
    if (slot > now) await sleep(slot - now);
    const body = Buffer.from(bodyOf(j.stream, n++));
    sent += 1;
    const outcome = await send(body);
    if (outcome.kind === "ok") samples.push(outcome.ms);
    else if (outcome.kind === "status") statuses[outcome.status] = (statuses[outcome.status] ?? 0) + 1;
    else if (outcome.kind === "timeout") timeouts += 1;
    else socketErrors += 1;
    slot = Math.max(slot + intervalMs, performance.now());
  }
}

await Promise.all(Array.from({ length: j.connections }, (_, i) => connection(i)));
const elapsed = (performance.now() - start) / 1000;
const used = process.cpuUsage(cpu);
const sorted = samples.sorted();
answer({
  tool: "latency probe",
  connections: j.connections,
  targetRate: j.rate,
  sentRate: sent / elapsed,
  sent,
  ok: samples.length,
  p50: percentile(sorted, 50),
  p90: percentile(sorted, 90),
  p99: percentile(sorted, 99),
  max: sorted.length === 0 ? Number.NaN : (sorted[sorted.length - 1] as number),
  statuses,
  socketErrors,
  timeouts,
  seconds: elapsed,
  clientCores: (used.user + used.system) / 1e6 / elapsed,
} satisfies ProbeResult);
agent.destroy();
process.exit(0);
