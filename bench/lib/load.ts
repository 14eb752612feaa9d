/**
 * Closed-loop HTTP load: wrk when it is on PATH (C, lighter on a 2-core machine), else autocannon in a child
 * process. Both send the same body templates (bodies.ts) and report the same LoadResult.
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { streamOf, type Payload, type Stream } from "./bodies.js";
import type { LoadgenKind } from "./config.js";
import { runChild } from "./proc.js";
import type { AutocannonJob } from "../children/autocannon.js";

export interface LoadResult {
  tool: string;
  connections: number;
  /** Measured seconds. */
  seconds: number;
  /** 2xx responses in the measured window. */
  ok: number;
  /** 2xx responses per second. */
  rps: number;
  /** Latency percentiles in ms (see latencyScope). */
  p50: number;
  p99: number;
  /** Whose latency the percentiles describe: only 2xx responses, or every response (wrk). */
  latencyScope: "2xx" | "all";
  /** Non-2xx responses plus socket errors and timeouts. */
  errors: number;
  /** Non-2xx responses by status (wrk reports only their total, as "non-2xx"). */
  statuses: Record<string, number>;
  socketErrors: number;
  timeouts: number;
  /** Cores the server process used on average while the load ran (warm-up included), where known. */
  serverCores?: number;
  /** Cores the load generator used on average, where it reports it (autocannon). */
  clientCores?: number;
  /** Requests that got an outcome (an answer, a socket error or a timeout) in the window; in-flight ones are not counted. */
  completed?: number;
}

/** Each load run gets its own number, so cell B of the bodies (bodies.ts) never repeats across runs. */
let runCounter = 0;
export function nextRun(): number {
  runCounter += 1;
  return runCounter;
}

export interface ClosedLoop {
  baseUrl: string;
  payload: Payload;
  connections: number;
  seconds: number;
  warmupSeconds: number;
  threads: number;
}

export async function closedLoop(kind: LoadgenKind, spec: ClosedLoop): Promise<LoadResult> {
  if (kind === "wrk") {
    if (spec.warmupSeconds > 0) await wrk(spec, streamOf(spec.payload, nextRun()), spec.warmupSeconds);
    return wrk(spec, streamOf(spec.payload, nextRun()), spec.seconds);
  }
  const job: AutocannonJob = {
    url: spec.baseUrl,
    warmup: streamOf(spec.payload, nextRun()),
    stream: streamOf(spec.payload, nextRun()),
    warmupSeconds: spec.warmupSeconds,
    seconds: spec.seconds,
    connections: spec.connections,
    timeoutSeconds: 10,
  };
  return runChild<LoadResult>("autocannon", job, (spec.warmupSeconds + spec.seconds + 60) * 1000);
}

export function luaString(s: string): string {
  let level = 0;
  while (s.includes(`]${"=".repeat(level)}]`)) level += 1;
  const eq = "=".repeat(level);
  // A newline right after the opening bracket is dropped by Lua, so the string starts exactly with `s`.
  return `[${eq}[\n${s}]${eq}]`;
}

/**
 * The Lua that varies the body: each thread counts its own requests, interleaved (thread t sends n = t, t + threads,
 * ...). `hooks` add Lua to setup(thread) (main state, once per thread), init() (each thread's state) and request()
 * (before the body is built); the paced overload script (overload.ts) keeps its counters there.
 */
export function wrkBodyLua(stream: Stream, threads: number, hooks: { setup?: string; init?: string; request?: string } = {}): string {
  const common = [
    `wrk.method = "${stream.method}"`,
    `wrk.headers["Content-Type"] = "${stream.contentType}"`,
  ];
  const fixed = stream.vary ? undefined : luaString(stream.prefix + stream.a.base.toFixed(stream.a.decimals) + stream.suffix);
  if (fixed !== undefined && hooks.setup === undefined && hooks.init === undefined && hooks.request === undefined) return [...common, `wrk.body = ${fixed}`, ""].join("\n");
  return [
    ...common,
    `local prefix = ${luaString(stream.prefix)}`,
    `local suffix = ${luaString(stream.suffix)}`,
    `local base, step, fmt, stride = ${stream.a.base}, ${stream.a.step}, "%.${stream.a.decimals}f", ${threads}`,
    `local vary = ${stream.vary ? "true" : "false"}`,
    "local thread_count = 0",
    "function setup(thread)",
    "  thread:set(\"tid\", thread_count)",
    "  thread_count = thread_count + 1",
    hooks.setup ?? "",
    "end",
    "function init(args)",
    "  n = tid or 0",
    hooks.init ?? "",
    "end",
    "function request()",
    hooks.request ?? "",
    "  local body = prefix .. string.format(fmt, base + (vary and n or 0) * step) .. suffix",
    "  n = n + stride",
    "  return wrk.format(nil, nil, nil, body)",
    "end",
    "",
  ].join("\n");
}

function wrkScript(stream: Stream, threads: number): string {
  return wrkBodyLua(stream, threads);
}

const UNIT_MS: Record<string, number> = { us: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function wrkMs(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  if (m === null) return Number.NaN;
  return Number(m[1]) * (UNIT_MS[m[2] as string] as number);
}

/** Parses wrk's report (with --latency). */
export function parseWrk(out: string, connections: number): LoadResult {
  const req = /(\d+) requests in ([\d.]+)(us|ms|s|m|h)/.exec(out);
  if (req === null) throw new Error(`bench: cannot read wrk's report:\n${out}`);
  const total = Number(req[1]);
  const seconds = wrkMs(`${req[2]}${req[3]}`) / 1000;
  const pct = (p: string): number => {
    const m = new RegExp(`^\\s*${p}%\\s+(\\S+)`, "m").exec(out);
    return m === null ? Number.NaN : wrkMs(m[1] as string);
  };
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const timeouts = sock === null ? 0 : Number(sock[4]);
  const socketErrors = sock === null ? 0 : Number(sock[1]) + Number(sock[2]) + Number(sock[3]);
  const ok = total - non2xx;
  return {
    tool: "wrk",
    connections,
    seconds,
    ok,
    rps: ok / seconds,
    p50: pct("50"),
    p99: pct("99"),
    latencyScope: "all",
    errors: non2xx + socketErrors + timeouts,
    statuses: non2xx > 0 ? { "non-2xx": non2xx } : {},
    socketErrors,
    timeouts,
  };
}

function wrk(spec: ClosedLoop, stream: Stream, seconds: number): Promise<LoadResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-bench-wrk-"));
  const script = path.join(dir, "body.lua");
  const threads = Math.min(spec.threads, spec.connections);
  fs.writeFileSync(script, wrkScript(stream, threads));
  const args = [
    `-t${threads}`,
    `-c${spec.connections}`,
    // wrk takes whole seconds.
    `-d${Math.max(1, Math.round(seconds))}s`,
    "--latency",
    "--timeout",
    "10s",
    "-s",
    script,
    spec.baseUrl + stream.path,
  ];
  return new Promise<LoadResult>((resolve, reject) => {
    execFile("wrk", args, { timeout: (seconds + 60) * 1000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      fs.rmSync(dir, { recursive: true, force: true });
      if (err !== null) {
        reject(new Error(`bench: wrk failed: ${err.message}\n${stderr}`));
        return;
      }
      try {
        resolve(parseWrk(stdout, spec.connections));
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  });
}
