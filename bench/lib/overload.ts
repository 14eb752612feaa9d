/**
 * The overload scenario's measurement when wrk is on PATH. A Node load generator cannot offer 2x the server's
 * capacity on a 2-core machine: autocannon needs 110-140 us of CPU per request, about what the server needs, so
 * it takes the cores from the server, and the latency it reports is its own event-loop delay plus Little's law on
 * its connections. So the two jobs are split:
 * - the load: wrk (C), paced by a Lua delay() hook to about `rate` requests per second in total, counting every
 *   response by HTTP status in its threads and reporting sent / answered / by status as one JSON line;
 * - the latency: a separate low-rate Node probe (children/latency-probe.ts), a few keep-alive connections at a
 *   fixed modest rate, timing its own 2xx answers while wrk runs. The probe's CPU is negligible at that rate, so its
 *   latencies are the server's queueing and service time, the same way at capacity and under overload.
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { streamOf, type Payload, type Stream } from "./bodies.js";
import { nextRun, wrkBodyLua, type LoadResult } from "./load.js";
import { READY_TAG, RESULT_TAG } from "./child.js";
import { cpuSecondsOf, spawnTracked, stop, tsChildArgs } from "./proc.js";
import type { LatencyProbeJob, ProbeResult } from "../children/latency-probe.js";

/** The tag of the line the wrk script's done() prints. */
export const WRK_COUNTS_TAG = "BENCH_WRK ";

/** What the counting wrk script reports (done()). */
export interface WrkCounts {
  /** Requests written (request() calls), in-flight ones at the end included. */
  sent: number;
  /** Responses read (response() calls). */
  responses: number;
  /** Responses with `Connection: close` (wrk reconnects after each). */
  closes: number;
  /** Responses by HTTP status, e.g. {"200": 5000, "429": 300}. */
  statuses: Record<string, number>;
  durationUs: number;
  connect: number;
  read: number;
  write: number;
  timeout: number;
  /** wrk's own latency percentiles over every response (delay() time excluded), microseconds. */
  p50Us: number;
  p99Us: number;
  /** "clock": thread-level slots on a monotonic clock; "fixed": a fixed delay per connection; "none": closed loop. */
  pacing: "clock" | "fixed" | "none";
}

/**
 * The counting (and, with `rate`, pacing) wrk script. Pacing: wrk calls delay() before every request of a
 * connection (the first one too). Each thread owns `rate / threads` requests per second and hands out send slots
 * `1 / (rate / threads)` apart on a monotonic clock (LuaJIT's ffi, clock_gettime): delay() returns the wait until
 * the next free slot. So the offered rate does not shrink by the server's latency, as it would with a fixed delay
 * of `connections / rate` per connection (that fixed delay is the fallback when ffi is missing, reported as
 * pacing "fixed"). A thread that falls behind (every connection waiting for an answer) does not catch up in a
 * burst: at most `connections` requests are ever in flight.
 */
export function wrkCountingScript(stream: Stream, threads: number, connections: number, rate: number | undefined): string {
  const lines = [
    wrkBodyLua(stream, threads, {
      setup: "  bench_threads[#bench_threads + 1] = thread",
      init: "  sent, responses, statuses, closes = 0, 0, {}, 0",
      request: "  sent = sent + 1",
    }),
    "bench_threads = {}",
    "function response(status, headers, body)",
    "  responses = responses + 1",
    "  local k = tostring(status)",
    "  statuses[k] = (statuses[k] or 0) + 1",
    // A server that closes after an answer makes wrk reconnect; under overload a reconnect can wait in the accept
    // queue (or for a SYN retransmit) for seconds, and wrk counts that wait in the next request's latency.
    "  local c = headers[\"Connection\"] or headers[\"connection\"]",
    "  if c ~= nil and string.lower(c) == \"close\" then closes = closes + 1 end",
    "end",
  ];
  if (rate !== undefined) {
    const threadIntervalMs = (threads * 1000) / rate;
    const connectionIntervalMs = (connections * 1000) / rate;
    lines.push(
      `local thread_interval_ms, connection_interval_ms = ${threadIntervalMs}, ${connectionIntervalMs}`,
      "local now_ms",
      "local has_ffi, ffi = pcall(require, \"ffi\")",
      "if has_ffi then",
      "  ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } bench_timespec; int clock_gettime(int clk, bench_timespec *tp); ]]",
      "  local ts = ffi.new(\"bench_timespec\")",
      // CLOCK_MONOTONIC is 1 on Linux.
      "  now_ms = function() ffi.C.clock_gettime(1, ts); return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6 end",
      "end",
      "local next_slot",
      "function delay()",
      "  if now_ms == nil then return connection_interval_ms end",
      "  local now = now_ms()",
      "  if next_slot == nil or next_slot < now then next_slot = now end",
      "  local wait = next_slot - now",
      "  next_slot = next_slot + thread_interval_ms",
      "  return wait",
      "end",
      "local pacing = has_ffi and \"clock\" or \"fixed\"",
    );
  } else {
    lines.push('local pacing = "none"');
  }
  lines.push(
    "function done(summary, latency, requests)",
    "  local sent_all, responses_all, closes_all, by_status = 0, 0, 0, {}",
    "  for _, t in ipairs(bench_threads) do",
    "    sent_all = sent_all + (t:get(\"sent\") or 0)",
    "    responses_all = responses_all + (t:get(\"responses\") or 0)",
    "    closes_all = closes_all + (t:get(\"closes\") or 0)",
    "    for k, v in pairs(t:get(\"statuses\") or {}) do by_status[k] = (by_status[k] or 0) + v end",
    "  end",
    "  local parts = {}",
    "  for k, v in pairs(by_status) do parts[#parts + 1] = string.format('\"%s\":%d', k, v) end",
    "  local e = summary.errors",
    `  io.write(string.format('${WRK_COUNTS_TAG}{"sent":%d,"responses":%d,"closes":%d,"statuses":{%s},"durationUs":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,"p50Us":%d,"p99Us":%d,"pacing":"%s"}\\n',`,
    "    sent_all, responses_all, closes_all, table.concat(parts, \",\"), summary.duration, e.connect, e.read, e.write, e.timeout,",
    "    latency:percentile(50), latency:percentile(99), pacing))",
    "end",
    "",
  );
  return lines.join("\n");
}

/** Reads the JSON line the counting script's done() prints. */
export function parseWrkCounts(out: string): WrkCounts {
  const line = out.split("\n").map((l) => l.trim()).find((l) => l.startsWith(WRK_COUNTS_TAG));
  if (line === undefined) throw new Error(`bench: the wrk script printed no counts:\n${out.slice(-2000)}`);
  return JSON.parse(line.slice(WRK_COUNTS_TAG.length)) as WrkCounts;
}

/** wrk's counts as a LoadResult: rps is 2xx per second; latency is wrk's over every response. */
export function countsToLoad(c: WrkCounts, connections: number): LoadResult & { sent: number; closes: number; pacing: WrkCounts["pacing"] } {
  const seconds = c.durationUs / 1e6;
  let ok = 0;
  const statuses: Record<string, number> = {};
  for (const [code, count] of Object.entries(c.statuses)) {
    if (code.startsWith("2")) ok += count;
    else statuses[code] = count;
  }
  const non2xx = c.responses - ok;
  const socketErrors = c.connect + c.read + c.write;
  return {
    tool: "wrk",
    connections,
    seconds,
    ok,
    rps: ok / seconds,
    p50: c.p50Us / 1000,
    p99: c.p99Us / 1000,
    latencyScope: "all",
    errors: non2xx + socketErrors + c.timeout,
    statuses,
    socketErrors,
    timeouts: c.timeout,
    completed: c.responses,
    sent: c.sent,
    closes: c.closes,
    pacing: c.pacing,
  };
}

export interface WrkCountedSpec {
  baseUrl: string;
  stream: Stream;
  connections: number;
  threads: number;
  /** Whole seconds (wrk's -d). */
  seconds: number;
  /** Requests per second over all connections; undefined: closed loop. */
  rate?: number;
  timeoutSeconds: number;
}

/** One wrk run with the counting script; the load generator's own CPU is sampled from /proc while it runs. */
export function wrkCounted(spec: WrkCountedSpec): Promise<ReturnType<typeof countsToLoad>> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-bench-wrk-"));
  const script = path.join(dir, "counted.lua");
  const threads = Math.min(spec.threads, spec.connections);
  fs.writeFileSync(script, wrkCountingScript(spec.stream, threads, spec.connections, spec.rate));
  const seconds = Math.max(1, Math.round(spec.seconds));
  const args = [`-t${threads}`, `-c${spec.connections}`, `-d${seconds}s`, "--timeout", `${spec.timeoutSeconds}s`, "-s", script, spec.baseUrl + spec.stream.path];
  return new Promise((resolve, reject) => {
    const started = performance.now();
    let cpu: { seconds: number; at: number } | undefined;
    const child = execFile("wrk", args, { timeout: (seconds + 60) * 1000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      clearInterval(poll);
      fs.rmSync(dir, { recursive: true, force: true });
      if (err !== null) {
        reject(new Error(`bench: wrk failed: ${err.message}\n${stderr}`));
        return;
      }
      try {
        const result = countsToLoad(parseWrkCounts(stdout), spec.connections);
        // The last sample before wrk exited (up to 200 ms short of its end): close enough for "how many cores".
        if (cpu !== undefined && cpu.at > 0) result.clientCores = cpu.seconds / cpu.at;
        resolve(result);
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
    const poll = setInterval(() => {
      const used = child.pid === undefined ? undefined : cpuSecondsOf(child.pid);
      if (used !== undefined) cpu = { seconds: used, at: (performance.now() - started) / 1000 };
    }, 200);
  });
}

export interface ProbedSpec {
  baseUrl: string;
  payload: Payload;
  connections: number;
  threads: number;
  /** The probe's measured seconds; wrk runs a little longer on both sides. */
  seconds: number;
  /** wrk's total rate; undefined: closed loop. */
  rate?: number;
  probeRate: number;
  probeConnections: number;
}

/** A wrk run with the latency probe measuring inside it: the probe starts after wrk's first second and ends before wrk. */
export type ProbedResult = ReturnType<typeof countsToLoad> & { probe: ProbeResult };

/**
 * wrk and the latency probe together. The probe child loads and opens its connections first; on its ready line
 * wrk starts, and the probe's window begins LEAD_MS later and ends about a second before wrk's. The result's
 * rates and latencies are wrk's (every answer); the probe's (2xx only) are in `probe`.
 */
export async function probedWrk(spec: ProbedSpec): Promise<ProbedResult> {
  const LEAD_MS = 1000;
  const probeJob: LatencyProbeJob = {
    url: spec.baseUrl,
    stream: streamOf(spec.payload, nextRun()),
    connections: spec.probeConnections,
    rate: spec.probeRate,
    leadMs: LEAD_MS,
    seconds: spec.seconds,
    timeoutSeconds: 10,
  };
  const child = spawnTracked(process.execPath, tsChildArgs("latency-probe"), { BENCH_JOB: JSON.stringify(probeJob) });
  try {
    await child.waitLine((line) => (line.startsWith(READY_TAG) ? true : undefined), 60_000, "latency probe");
    const load = wrkCounted({
      baseUrl: spec.baseUrl,
      stream: streamOf(spec.payload, nextRun()),
      connections: spec.connections,
      threads: spec.threads,
      seconds: Math.ceil(spec.seconds + LEAD_MS / 1000 + 1),
      rate: spec.rate,
      timeoutSeconds: 10,
    });
    const probe = child.waitLine(
      (line) => (line.startsWith(RESULT_TAG) ? (JSON.parse(line.slice(RESULT_TAG.length)) as ProbeResult) : undefined),
      (spec.seconds + 60) * 1000,
      "latency probe",
    );
    const [w, p] = await Promise.all([load, probe]);
    return { ...w, tool: "wrk + latency probe", probe: p };
  } finally {
    await stop(child, 5000);
  }
}
