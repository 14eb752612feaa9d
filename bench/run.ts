// `npm run bench`: requests per second and latency of mlship's inference routes against a bare node:http server
// returning constant JSON, all measured in the same run on loopback (ratios are what to compare across machines).
//
// Knobs (env): BENCH_DURATION_MS (per scenario, default 5000), BENCH_WARMUP_MS (default 1000),
// BENCH_CONNECTIONS (concurrent keep-alive loops, default 16), BENCH_WORKERS (inference threads, default: config).
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { buildServer, createMlship, defaultConfig, registerModel } from "../src/index.js";

/** What bench/load-worker.mjs runs. */
interface LoadJob {
  url: string;
  method: "GET" | "POST";
  body?: string;
  contentType?: string;
  /** Concurrent keep-alive request loops. */
  connections: number;
  durationMs: number;
  warmupMs: number;
}

interface LoadResult {
  requests: number;
  errors: number;
  seconds: number;
  /** Latencies of the measured requests in ms, sorted. */
  latencies: number[];
  firstError?: string;
}

const env = (name: string, fallback: number): number => {
  const raw = process.env[name];
  const n = raw === undefined || raw === "" ? fallback : Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got ${raw}`);
  return n;
};
const durationMs = env("BENCH_DURATION_MS", 5000);
const warmupMs = env("BENCH_WARMUP_MS", 1000);
const connections = env("BENCH_CONNECTIONS", 16);
const workers = process.env.BENCH_WORKERS === undefined ? undefined : env("BENCH_WORKERS", 1);

const pkgDir = fileURLToPath(new URL("../examples/models/breast-cancer/", import.meta.url));
const example = JSON.parse(fs.readFileSync(path.join(pkgDir, "input_example.json"), "utf8")) as {
  dataframe_split: { columns: string[]; data: number[][] };
};
const row = example.dataframe_split.data[0] as number[];
const mlflowBody = JSON.stringify({ dataframe_split: { columns: example.dataframe_split.columns, data: [row] } });
const v2Body = JSON.stringify({ inputs: [{ name: "input", shape: [1, row.length], datatype: "FP32", data: row }] });
const constant = JSON.stringify({ predictions: [{ probabilities: [0.01, 0.99], label: 1, class: "benign" }] });

function load(job: Omit<LoadJob, "connections" | "durationMs" | "warmupMs">): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL("./load-worker.mjs", import.meta.url), {
      workerData: { ...job, connections, durationMs, warmupMs } satisfies LoadJob,
    });
    worker.once("message", (result: LoadResult) => {
      resolve(result);
      void worker.terminate();
    });
    worker.once("error", reject);
  });
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

interface Row {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

function summarize(name: string, r: LoadResult): Row {
  if (r.errors > 0 || r.requests === 0) {
    process.stderr.write(`bench: ${name}: ${r.errors} errors, ${r.requests} ok (first error: ${r.firstError ?? "-"})\n`);
  }
  return { name, rps: r.requests / r.seconds, p50: percentile(r.latencies, 50), p99: percentile(r.latencies, 99), errors: r.errors };
}

async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function main(): Promise<void> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-bench-"));
  const overrides: Record<string, unknown> = { home, "log.level": "warn" };
  if (workers !== undefined) overrides["runtime.workers"] = workers;
  const app = await createMlship(defaultConfig(overrides));
  try {
    await registerModel(app, pkgDir, { name: "breast-cancer", alias: "production" });
    const server = buildServer({
      scoring: app.scoring,
      registry: app.registry,
      logger: false,
      defaultModel: "breast-cancer@production",
    });
    await server.listen({ host: "127.0.0.1", port: 0 });
    const mlshipUrl = `http://127.0.0.1:${(server.server.address() as AddressInfo).port}`;

    const baseline = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(constant) });
        res.end(constant);
      });
    });
    const baselineUrl = await listen(baseline);

    // Fail fast (and load the model) before measuring.
    for (const [url, body] of [[`${mlshipUrl}/invocations`, mlflowBody], [`${mlshipUrl}/v2/models/breast-cancer/infer`, v2Body]] as const) {
      const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body });
      if (res.status !== 200) throw new Error(`${url} answered ${res.status}: ${await res.text()}`);
    }

    process.stdout.write(
      `mlship bench: ${connections} connections, ${warmupMs} ms warm-up + ${durationMs} ms per scenario, ` +
        `${app.config.runtime.workers} inference worker(s), ${os.availableParallelism()} cores, Node ${process.version}\n`,
    );
    const rows: Row[] = [];
    rows.push(summarize("baseline node:http constant JSON", await load({ url: `${baselineUrl}/`, method: "POST", body: mlflowBody })));
    rows.push(summarize("mlship /invocations (1 row)", await load({ url: `${mlshipUrl}/invocations`, method: "POST", body: mlflowBody })));
    rows.push(summarize("mlship V2 infer (1 row)", await load({ url: `${mlshipUrl}/v2/models/breast-cancer/infer`, method: "POST", body: v2Body })));

    const base = rows[0] as Row;
    const fmt = (n: number, d = 2): string => (Number.isFinite(n) ? n.toFixed(d) : "-");
    const header = ["scenario", "req/s", "p50 ms", "p99 ms", "errors", "req/s vs baseline", "p99 vs baseline"];
    const table = rows.map((r) => [
      r.name,
      fmt(r.rps, 0),
      fmt(r.p50),
      fmt(r.p99),
      String(r.errors),
      r === base ? "1.00" : fmt(r.rps / base.rps),
      r === base ? "1.00" : `${fmt(r.p99 / base.p99)}x`,
    ]);
    const widths = header.map((h, i) => Math.max(h.length, ...table.map((t) => (t[i] as string).length)));
    for (const line of [header, ...table]) {
      process.stdout.write(`${line.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join("  ")}\n`);
    }
    await server.close();
    await new Promise<void>((resolve) => baseline.close(() => resolve()));
  } finally {
    await app.close();
    fs.rmSync(home, { recursive: true, force: true });
  }
}

await main();
