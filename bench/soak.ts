// `npm run soak` (issue 10 item 7; bench/README.md "Soak"): a real `mlship serve` (the built dist/, a fresh home
// with the example models, prediction log on, in-memory prediction cache on) under steady load for SOAK_MINUTES
// (default 10) at SOAK_RATE requests per second (default 500), a mix of good and bad requests. Every
// SOAK_SAMPLE_SECONDS (10) the server's RSS (/proc/<pid>/status VmRSS) and its own /metrics
// (process_resident_memory_bytes, nodejs_heap_size_used_bytes) are sampled. The report: requests by status,
// errors, latency, RSS at start/end/max and its trend over the second half (least squares, MiB per minute), with a
// verdict; written to bench/results/soak-<timestamp>.md. Bounded: it stops by itself, and kills the server however it exits.
import { execFile } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { promisify } from "node:util";
import { bodyOf, mlflowMlp, streamOf, v2Digits, type Stream } from "./lib/bodies.js";
import { percentile, Samples } from "./lib/child.js";
import { EXAMPLES, ROOT } from "./lib/config.js";
import { childEnv, spawnTracked, stop } from "./lib/proc.js";

function setting(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) throw new Error(`${name} must be a number >= ${min}, got "${raw}"`);
  return n;
}

const minutes = setting("SOAK_MINUTES", 10, 0.1);
const rate = setting("SOAK_RATE", 500, 1);
const maxInFlight = setting("SOAK_CONNECTIONS", 64, 1);
const sampleSeconds = setting("SOAK_SAMPLE_SECONDS", 10, 1);
/** A trend below this (MiB per minute, either way) is "flat". */
const FLAT_MIB_PER_MIN = 1;
/** Distinct bodies per request kind: the cache both hits and misses, and reaches its steady size early. */
const POOL = 5000;
const MiB = 1024 * 1024;
const say = (line: string): void => void process.stdout.write(`${line}\n`);

interface Kind {
  name: string;
  /** Share of the requests, in percent. */
  weight: number;
  /** The status class a correct server answers: 2 (2xx) or 4 (4xx). */
  expect: 2 | 4;
  request: (n: number) => { path: string; contentType: string; body: string };
}

const fromStream = (s: Stream) => (n: number) => ({ path: s.path, contentType: s.contentType, body: bodyOf(s, n % POOL) });
const KINDS: Kind[] = [
  { name: "MLflow breast-cancer 1 row", weight: 55, expect: 2, request: fromStream(streamOf(mlflowMlp(1), 1)) },
  { name: "MLflow breast-cancer 32 rows", weight: 15, expect: 2, request: fromStream(streamOf(mlflowMlp(32), 2)) },
  { name: "V2 digits 1 image", weight: 25, expect: 2, request: fromStream(streamOf(v2Digits(), 3)) },
  { name: "bad: malformed JSON", weight: 2, expect: 4, request: () => ({ path: "/invocations", contentType: "application/json", body: '{"dataframe_split": {' }) },
  {
    name: "bad: unknown columns",
    weight: 2,
    expect: 4,
    request: () => ({ path: "/invocations", contentType: "application/json", body: '{"dataframe_split": {"columns": ["x"], "data": [[1]]}}' }),
  },
  {
    name: "bad: unknown model",
    weight: 1,
    expect: 4,
    request: () => ({ path: "/v2/models/no-such-model/infer", contentType: "application/json", body: '{"inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": [1]}]}' }),
  },
];
const totalWeight = KINDS.reduce((a, k) => a + k.weight, 0);
/** Request i's kind: a fixed, interleaved schedule (no randomness, so two runs send the same mix). */
function kindOf(i: number): Kind {
  let slot = (i * 37) % totalWeight;
  for (const k of KINDS) {
    if (slot < k.weight) return k;
    slot -= k.weight;
  }
  return KINDS[0] as Kind;
}

interface Sample {
  /** Seconds since the load started. */
  t: number;
  vmRssMiB: number | null;
  metricsRssMiB: number | null;
  heapUsedMiB: number | null;
  /** Requests answered since the previous sample, per second. */
  answeredPerSecond: number;
}

function vmRss(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m === null ? null : (Number(m[1]) * 1024) / MiB;
  } catch {
    return null;
  }
}

async function metrics(baseUrl: string): Promise<{ rss: number | null; heap: number | null }> {
  try {
    const text = await (await fetch(`${baseUrl}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    const value = (name: string): number | null => {
      const m = new RegExp(`^${name}(?:\\{[^}]*\\})?\\s+(\\S+)`, "m").exec(text);
      return m === null ? null : Number(m[1]) / MiB;
    };
    return { rss: value("process_resident_memory_bytes"), heap: value("nodejs_heap_size_used_bytes") };
  } catch {
    return { rss: null, heap: null };
  }
}

/** Least-squares slope of y over x. */
export function slope(points: ReadonlyArray<{ x: number; y: number }>): number {
  const n = points.length;
  if (n < 2) return Number.NaN;
  const mx = points.reduce((a, p) => a + p.x, 0) / n;
  const my = points.reduce((a, p) => a + p.y, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.x - mx) * (p.y - my);
    den += (p.x - mx) ** 2;
  }
  return den === 0 ? Number.NaN : num / den;
}

const startedAt = new Date();
const loadAtStart = os.loadavg()[0] ?? 0;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-soak-"));
const home = path.join(tmp, "home");
const bin = path.join(ROOT, "bin", "mlship.js");
if (!fs.existsSync(path.join(ROOT, "dist", "cli", "main.js"))) throw new Error("dist/ is missing; run `npm run build` first (npm run soak does)");
const settings: NodeJS.ProcessEnv = { MLSHIP_HOME: home, MLSHIP_LOG_LEVEL: "warn", MLSHIP_FEEDBACK_LOG: "on", MLSHIP_CACHE: "memory" };
// SOAK_MLSHIP_<X>=v reaches the server as MLSHIP_<X>=v (e.g. SOAK_MLSHIP_MAX_EVENT_LOOP_DELAY_MS=0 on a busy machine).
const passed: string[] = [];
for (const [k, v] of Object.entries(process.env)) {
  if (k.startsWith("SOAK_MLSHIP_") && v !== undefined) {
    settings[k.slice("SOAK_".length)] = v;
    passed.push(`${k.slice("SOAK_".length)}=${v}`);
  }
}

say(`soak: ${minutes} min at ${rate} req/s (at most ${maxInFlight} in flight), sampling every ${sampleSeconds} s`);
for (const name of ["breast-cancer", "digits"]) {
  await promisify(execFile)(process.execPath, [bin, "models", "register", path.join(EXAMPLES, name), "--name", name, "--alias", "production"], {
    cwd: tmp,
    env: childEnv(settings),
    timeout: 120_000,
  });
}
// SOAK_NODE_ARGS: flags for the server's node (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to see where a stall goes).
const nodeArgs = (process.env.SOAK_NODE_ARGS ?? "").split(/\s+/).filter((a) => a !== "");
const server = spawnTracked(process.execPath, [...nodeArgs, bin, "serve", "--port", "0", "--grpc-port", "-1", "--model", "breast-cancer@production"], settings, tmp);
const baseUrl = await server.waitLine((l) => /serving on (http:\/\/\S+)/.exec(l)?.[1], 90_000, "mlship serve");
const pid = server.child.pid as number;
const url = new URL(baseUrl);
const agent = new http.Agent({ keepAlive: true, maxSockets: maxInFlight });

// Each good kind answers 200 once before the clock starts (both models loaded), or the soak stops here.
for (const kind of KINDS.filter((k) => k.expect === 2)) {
  const r = kind.request(0);
  const res = await fetch(baseUrl + r.path, { method: "POST", headers: { "content-type": r.contentType }, body: r.body, signal: AbortSignal.timeout(60_000) });
  const text = await res.text();
  if (res.status !== 200) {
    await stop(server, 5000);
    throw new Error(`soak: ${kind.name} answered ${res.status} before the load: ${text.slice(0, 300)}`);
  }
}

const byStatus = new Map<string, number>();
const latencies = new Samples();
let sent = 0;
let answered = 0;
let inFlight = 0;
/** Send slots that came while maxInFlight requests were waiting: the server was not keeping up. */
let backlogged = 0;
let transportErrors = 0;
/** Non-2xx answers to good requests, and anything but 4xx to bad ones (shed requests included). */
let unexpected = 0;
/** Of those, 429/503: the server shed load (its event loop ran late, or its queue was full). */
let shed = 0;
const unexpectedExamples: string[] = [];

function send(i: number): void {
  const kind = kindOf(i);
  const { path: route, contentType, body } = kind.request(i);
  const t = performance.now();
  inFlight++;
  sent++;
  const req = http.request(
    { host: url.hostname, port: url.port, path: route, method: "POST", agent, headers: { "content-type": contentType, "content-length": Buffer.byteLength(body) } },
    (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        inFlight--;
        answered++;
        const status = res.statusCode ?? 0;
        byStatus.set(String(status), (byStatus.get(String(status)) ?? 0) + 1);
        if (Math.floor(status / 100) !== kind.expect) {
          unexpected++;
          if (status === 429 || status === 503) shed++;
          if (unexpectedExamples.length < 5) unexpectedExamples.push(`${kind.name}: ${status} ${Buffer.concat(chunks).toString("utf8").slice(0, 200)}`);
        } else if (kind.expect === 2) latencies.push(performance.now() - t);
      });
    },
  );
  req.setTimeout(30_000, () => req.destroy(new Error("timeout")));
  req.on("error", () => {
    inFlight--;
    transportErrors++;
  });
  req.end(body);
}

const samples: Sample[] = [];
const durationMs = minutes * 60_000;
const loadStart = performance.now();
let lastSampleAnswered = 0;
let lastSampleAt = loadStart;

async function takeSample(): Promise<void> {
  const now = performance.now();
  const m = await metrics(baseUrl);
  const s: Sample = {
    t: (now - loadStart) / 1000,
    vmRssMiB: vmRss(pid),
    metricsRssMiB: m.rss,
    heapUsedMiB: m.heap,
    answeredPerSecond: ((answered - lastSampleAnswered) * 1000) / Math.max(1, now - lastSampleAt),
  };
  lastSampleAnswered = answered;
  lastSampleAt = now;
  samples.push(s);
  say(
    `soak: ${s.t.toFixed(0).padStart(4)} s  RSS ${s.vmRssMiB?.toFixed(1) ?? "?"} MiB  heap ${s.heapUsedMiB?.toFixed(1) ?? "?"} MiB  ${s.answeredPerSecond.toFixed(0)} answers/s  ` +
      `unexpected ${unexpected}, transport errors ${transportErrors}, backlogged ${backlogged}`,
  );
}

await takeSample();
// Open loop on a fixed schedule: request i is due at i / rate seconds; a tick sends every request that is due.
await new Promise<void>((resolve) => {
  let due = 0;
  let nextSample = loadStart + sampleSeconds * 1000;
  const tick = setInterval(() => {
    const now = performance.now();
    if (now - loadStart >= durationMs) {
      clearInterval(tick);
      resolve();
      return;
    }
    const target = Math.floor(((now - loadStart) / 1000) * rate);
    while (due < target) {
      if (inFlight >= maxInFlight) backlogged++;
      else send(due);
      due++;
    }
    if (now >= nextSample) {
      nextSample += sampleSeconds * 1000;
      void takeSample();
    }
  }, 5);
});
// Let the requests in flight finish (bounded), then the last sample.
const drainUntil = performance.now() + 30_000;
while (inFlight > 0 && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 50));
const loadSeconds = Math.min(durationMs, performance.now() - loadStart) / 1000;
const underLoad = samples.length;
await takeSample();
const afterLoad = samples.at(-1) as Sample;
const stillLive = await fetch(`${baseUrl}/v2/health/live`, { signal: AbortSignal.timeout(5000) }).then(
  (r) => r.status === 200,
  () => false,
);
agent.destroy();
server.child.kill("SIGTERM");
const exitCode = await Promise.race([server.exited, new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 20_000))]);
await stop(server, 5000);
fs.rmSync(tmp, { recursive: true, force: true });

// ---------------------------------------------------------------------------------------------------------------
// Report

// The trend and start/end/max are over the samples taken under load; the one after the drain is reported apart.
const rssPoints = samples.slice(0, underLoad).filter((s) => s.vmRssMiB !== null).map((s) => ({ x: s.t / 60, y: s.vmRssMiB as number }));
const half = loadSeconds / 60 / 2;
const secondHalf = rssPoints.filter((p) => p.x >= half);
const trend = slope(secondHalf);
const heapTrend = slope(samples.slice(0, underLoad).filter((s) => s.heapUsedMiB !== null && s.t / 60 >= half).map((s) => ({ x: s.t / 60, y: s.heapUsedMiB as number })));
const rssValues = rssPoints.map((p) => p.y);
const sorted = latencies.sorted();
const fmt = (n: number | null | undefined, digits = 1): string => (n === null || n === undefined || !Number.isFinite(n) ? "?" : n.toFixed(digits));
const errors = unexpected + transportErrors;
const verdict = !Number.isFinite(trend)
  ? "UNKNOWN: too few RSS samples in the second half (run longer)"
  : Math.abs(trend) < FLAT_MIB_PER_MIN
    ? `FLAT: RSS trend ${fmt(trend, 2)} MiB/min over the second half (|slope| < ${FLAT_MIB_PER_MIN})`
    : trend < 0
      ? `SHRINKING: RSS trend ${fmt(trend, 2)} MiB/min over the second half (memory given back; not a leak)`
      : `GROWING: RSS trend ${fmt(trend, 2)} MiB/min over the second half (slope >= ${FLAT_MIB_PER_MIN})`;
const statusText = [...byStatus.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}: ${v.toLocaleString("en-US")}`).join(", ");

const lines = [
  `# Soak ${startedAt.toISOString()}`,
  "",
  `\`npm run soak\` (bench/soak.ts): ${minutes} min at ${rate} req/s offered (open loop, at most ${maxInFlight} in flight), ` +
    `mlship serve (dist/, 1 server, default workers, prediction log on, in-memory cache on) on ${os.cpus()[0]?.model.trim() ?? "?"}, ` +
    `${os.availableParallelism()} cores, Node ${process.version}, load average at start ${fmt(loadAtStart, 2)}, at end ${fmt(os.loadavg()[0], 2)}` +
    `${passed.length > 0 ? `; server settings ${passed.join(", ")}` : ""}.`,
  "",
  `Mix per ${totalWeight} requests: ${KINDS.map((k) => `${k.weight} ${k.name}`).join(", ")}; each good kind draws from ${POOL.toLocaleString("en-US")} distinct bodies.`,
  "",
  "| figure | value |",
  "| --- | --- |",
  `| requests sent | ${sent.toLocaleString("en-US")} (${fmt(sent / loadSeconds, 0)} req/s over ${fmt(loadSeconds, 0)} s) |`,
  `| answered, by status | ${statusText} |`,
  `| errors | ${errors} (unexpected status: ${unexpected}, of which shed with 429/503: ${shed}; transport errors: ${transportErrors}) |`,
  `| send slots skipped (${maxInFlight} already in flight) | ${backlogged} |`,
  `| latency of good requests, p50 / p99 / max | ${fmt(percentile(sorted, 50), 2)} / ${fmt(percentile(sorted, 99), 2)} / ${fmt(percentile(sorted, 100), 2)} ms |`,
  `| RSS under load: start / end / max | ${fmt(rssValues[0])} / ${fmt(rssValues.at(-1))} / ${fmt(Math.max(...rssValues))} MiB |`,
  `| RSS trend, second half (${secondHalf.length} samples) | ${fmt(trend, 2)} MiB/min |`,
  `| heap used start / end, trend second half | ${fmt(samples[0]?.heapUsedMiB)} / ${fmt(samples[underLoad - 1]?.heapUsedMiB)} MiB, ${fmt(heapTrend, 2)} MiB/min |`,
  `| after the load stopped and drained (t = ${fmt(afterLoad.t, 0)} s) | RSS ${fmt(afterLoad.vmRssMiB)} MiB, heap used ${fmt(afterLoad.heapUsedMiB)} MiB |`,
  `| server after the run | ${stillLive ? "answered /v2/health/live" : "did NOT answer /v2/health/live"}; exit after SIGTERM: ${String(exitCode)} |`,
  "",
  `**Verdict: ${verdict}; ${errors === 0 ? "no errors" : `${errors} ERRORS`}.**`,
  "",
  ...(unexpectedExamples.length > 0 ? ["Unexpected answers (first 5):", "", ...unexpectedExamples.map((e) => `- ${e}`), ""] : []),
  "## Samples",
  "",
  "| t (s) | VmRSS MiB | /metrics RSS MiB | heap used MiB | answers/s |",
  "| ---: | ---: | ---: | ---: | ---: |",
  ...samples.map((s) => `| ${fmt(s.t, 0)} | ${fmt(s.vmRssMiB)} | ${fmt(s.metricsRssMiB)} | ${fmt(s.heapUsedMiB)} | ${fmt(s.answeredPerSecond, 0)} |`),
  "",
];
const resultsDir = path.join(ROOT, "bench", "results");
fs.mkdirSync(resultsDir, { recursive: true });
const file = path.join(resultsDir, `soak-${startedAt.toISOString().replace(/[:]/g, "-").replace(/\.\d+Z$/, "Z")}.md`);
fs.writeFileSync(file, lines.join("\n"));
say("");
for (const line of lines.slice(6, lines.indexOf("## Samples"))) say(line);
say("");
say(`soak: report written to ${path.relative(process.cwd(), file)}`);
process.exitCode = errors === 0 && stillLive && !verdict.startsWith("GROWING") ? 0 : 1;
