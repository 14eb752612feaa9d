/**
 * h2load (nghttp2's load generator, C) drives the gRPC vs REST scenario when it is on PATH: one light client for
 * both protocols (HTTP/2 for gRPC, --h1 for REST), so the ratio is about the server and not about a Node client
 * that would need as much CPU as the server it measures. It sends one fixed body per run; percentiles come from
 * its per-request log.
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { LoadResult } from "./load.js";

export interface H2loadRun {
  url: string;
  body: Buffer;
  headers: string[];
  /** HTTP/1.1 instead of HTTP/2. */
  h1: boolean;
  connections: number;
  /** Concurrent streams per connection (HTTP/2). */
  streams: number;
  threads: number;
  seconds: number;
  warmupSeconds: number;
  /**
   * gRPC answers HTTP 200 even for a failed call (the status is in the trailers, which h2load does not read);
   * a failed call has no DATA frame, though. With the DATA bytes of one good answer, the good answers are
   * counted as total DATA bytes / this.
   */
  okDataBytes?: number;
}

function sh(file: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`bench: ${file} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

function num(re: RegExp, text: string): number {
  const m = re.exec(text);
  if (m === null) throw new Error(`bench: cannot read h2load's report (${re.source}):\n${text}`);
  return Number(m[1]);
}

/** DATA bytes of the answer to one request (the okDataBytes of a good answer). */
export async function h2loadDataBytes(run: Pick<H2loadRun, "url" | "body" | "headers" | "h1">): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-bench-h2-"));
  try {
    const data = path.join(dir, "body");
    fs.writeFileSync(data, run.body);
    const out = await sh("h2load", [...(run.h1 ? ["--h1"] : []), "-n1", "-c1", "-d", data, ...run.headers.flatMap((h) => ["-H", h]), run.url], 30_000);
    return num(/traffic: .*?\((\d+)\) data/, out);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Warm-up, then the measured run. The warm-up is a separate h2load process rather than --warm-up-time: with that
 * option h2load counts the warm-up's bytes in its traffic totals and logs answers that straddle the boundary
 * without a status, which would spoil the counts above.
 */
export async function h2load(run: H2loadRun): Promise<LoadResult> {
  if (run.warmupSeconds > 0) await h2loadOnce(run, run.warmupSeconds);
  return h2loadOnce(run, run.seconds);
}

async function h2loadOnce(run: H2loadRun, requestedSeconds: number): Promise<LoadResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-bench-h2-"));
  try {
    const data = path.join(dir, "body");
    const log = path.join(dir, "log.tsv");
    fs.writeFileSync(data, run.body);
    // h2load takes whole seconds.
    const seconds = Math.max(1, Math.round(requestedSeconds));
    const threads = Math.max(1, Math.min(run.threads, run.connections));
    const args = [
      ...(run.h1 ? ["--h1"] : ["-m", String(run.streams)]),
      "-c",
      String(run.connections),
      "-t",
      String(threads),
      "-D",
      String(seconds),
      "-T",
      "10",
      `--log-file=${log}`,
      "-d",
      data,
      ...run.headers.flatMap((h) => ["-H", h]),
      run.url,
    ];
    const out = await sh("h2load", args, (seconds + 60) * 1000);
    const done = num(/requests: \d+ total, \d+ started, (\d+) done/, out);
    const failed = num(/(\d+) failed/, out);
    const errored = num(/(\d+) errored/, out);
    const timeouts = num(/(\d+) timeout/, out);
    const s2xx = num(/status codes: (\d+) 2xx/, out);
    const dataBytes = num(/traffic: .*?\((\d+)\) data/, out);
    // Answers whose headers arrived before the run stopped count as 2xx even when their request is not done.
    const answered = Math.min(s2xx, done);
    const ok = run.okDataBytes === undefined ? answered : Math.min(answered, Math.floor(dataBytes / run.okDataBytes));
    const latencies = fs
      .readFileSync(log, "utf8")
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => Number(l.split("\t")[2]) / 1000)
      .sort((a, b) => a - b);
    const pct = (p: number): number => (latencies.length === 0 ? Number.NaN : (latencies[Math.min(latencies.length - 1, Math.ceil((p / 100) * latencies.length) - 1)] as number));
    const non2xx = done - answered;
    const callErrors = answered - ok;
    const statuses: Record<string, number> = {};
    if (non2xx > 0) statuses["non-2xx"] = non2xx;
    if (callErrors > 0) statuses["grpc error"] = callErrors;
    return {
      tool: "h2load",
      connections: run.h1 ? run.connections : run.connections * run.streams,
      seconds,
      ok,
      rps: ok / seconds,
      p50: pct(50),
      p99: pct(99),
      latencyScope: "all",
      // h2load counts errored (and, within those, timed-out) requests as failed too.
      errors: non2xx + callErrors + failed,
      statuses,
      socketErrors: errored - timeouts,
      timeouts,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
