/**
 * Every knob of `npm run bench`, read once from the environment. Defaults keep a full run under about five
 * minutes on a 2-core machine; BENCH_QUICK=1 shrinks every duration for a smoke run (about a minute).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const EXAMPLES = path.join(ROOT, "examples", "models");

function num(name: string, fallback: number, opts: { integer?: boolean; min?: number } = {}): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const n = Number(raw);
  const min = opts.min ?? 0;
  if (!Number.isFinite(n) || n < min || (opts.integer === true && !Number.isInteger(n))) {
    throw new Error(`${name} must be ${opts.integer === true ? "an integer" : "a number"} >= ${min}, got "${raw}"`);
  }
  return n;
}

export type LoadgenKind = "wrk" | "autocannon";

/** Scenario groups BENCH_ONLY can pick (comma separated). */
export const GROUPS = ["bare", "compute", "mlp", "digits", "cache", "evict", "grpc", "overload", "feedback", "monitor", "batch", "stream", "sparkml", "scale", "serverless"] as const;
export type Group = (typeof GROUPS)[number];

export interface BenchConfig {
  quick: boolean;
  /** Measured seconds per scenario. */
  seconds: number;
  /** Unmeasured seconds before each scenario (connections open, JIT and model warm). */
  warmupSeconds: number;
  /** Closed-loop connections for the HTTP and gRPC scenarios. */
  connections: number;
  /** Connections for the digits CNN batching scenario (the issue fixes 64). */
  digitsConnections: number;
  /** wrk threads. */
  threads: number;
  /** Concurrent in-process session.run loops (one process each) for the compute ceiling. */
  computeProcs: number;
  /** Connections of the 2x-overload scenario, each rate-limited so that together they offer 2x capacity. */
  overloadConnections: number;
  /** Multiple of the measured capacity the overload scenario offers. */
  overloadFactor: number;
  /** Duration of the overload scenario. */
  overloadSeconds: number;
  /** The latency probe that runs inside the capacity and overload loads when wrk drives them: its total rate. */
  probeRate: number;
  /** The latency probe's keep-alive connections. */
  probeConnections: number;
  /** gRPC channels (separate HTTP/2 connections) the gRPC client spreads its loops over. */
  grpcChannels: number;
  /** Inference workers of every mlship server (undefined: mlship's default, one per core). */
  workers: number | undefined;
  /** Passed to the server as MLSHIP_CACHE when set (the cache-hit scenario). */
  cache: string | undefined;
  loadgen: LoadgenKind;
  /** gRPC vs REST client: h2load for both protocols when on PATH, else Node clients (grpc-js, node:http). */
  grpcClient: "h2load" | "node";
  /** Rows of the `batch` group's generated CSV and Parquet inputs. */
  batchRows: number;
  /** PostgreSQL server the `batch` group writes into (it creates and drops a database of its own there). */
  batchPostgresUrl: string;
  /** Records the `stream` group publishes to NATS JetStream and scores into PostgreSQL. */
  streamRecords: number;
  /** NATS server of the `stream` group (it creates and deletes a JetStream stream of its own there). */
  natsServers: string;
  only: ReadonlySet<Group>;
  resultsDir: string;
  /** Write bench/results/latest.md too (off when BENCH_RESULTS_DIR points elsewhere, e.g. in the smoke test). */
  writeLatest: boolean;
}

export function onPath(cmd: string): boolean {
  return (process.env.PATH ?? "").split(path.delimiter).some((dir) => dir !== "" && fileExists(path.join(dir, cmd)));
}

function fileExists(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

export function loadBenchConfig(): BenchConfig {
  const quick = process.env.BENCH_QUICK === "1" || process.env.BENCH_QUICK === "true";
  const requested = process.env.BENCH_LOADGEN?.trim();
  if (requested !== undefined && requested !== "" && requested !== "wrk" && requested !== "autocannon") {
    throw new Error(`BENCH_LOADGEN must be wrk or autocannon, got "${requested}"`);
  }
  let loadgen: LoadgenKind = onPath("wrk") ? "wrk" : "autocannon";
  if (requested === "autocannon") loadgen = "autocannon";
  if (requested === "wrk") {
    if (!onPath("wrk")) throw new Error("BENCH_LOADGEN=wrk but wrk is not on PATH (apt-get install wrk)");
    loadgen = "wrk";
  }
  const grpcRequested = process.env.BENCH_GRPC_CLIENT?.trim();
  if (grpcRequested !== undefined && grpcRequested !== "" && grpcRequested !== "h2load" && grpcRequested !== "node") {
    throw new Error(`BENCH_GRPC_CLIENT must be h2load or node, got "${grpcRequested}"`);
  }
  if (grpcRequested === "h2load" && !onPath("h2load")) throw new Error("BENCH_GRPC_CLIENT=h2load but h2load is not on PATH (apt-get install nghttp2-client)");
  const grpcClient = grpcRequested === "node" || !onPath("h2load") ? "node" : "h2load";
  const onlyRaw = process.env.BENCH_ONLY?.trim();
  const only = new Set<Group>();
  for (const g of onlyRaw === undefined || onlyRaw === "" ? GROUPS : onlyRaw.split(",").map((s) => s.trim())) {
    if (!(GROUPS as readonly string[]).includes(g)) throw new Error(`BENCH_ONLY: unknown group "${g}" (groups: ${GROUPS.join(", ")})`);
    only.add(g as Group);
  }
  const resultsEnv = process.env.BENCH_RESULTS_DIR?.trim();
  const resultsDir = resultsEnv === undefined || resultsEnv === "" ? path.join(ROOT, "bench", "results") : path.resolve(resultsEnv);
  const cores = os.availableParallelism();
  const seconds = num("BENCH_SECONDS", quick ? 1 : 5, { min: 0.5 });
  const workersRaw = process.env.BENCH_WORKERS;
  const batchPostgres = process.env.BENCH_BATCH_POSTGRES?.trim();
  return {
    quick,
    seconds,
    warmupSeconds: num("BENCH_WARMUP_SECONDS", quick ? 0.5 : 1, { min: 0 }),
    connections: num("BENCH_CONNECTIONS", 16, { integer: true, min: 1 }),
    digitsConnections: num("BENCH_DIGITS_CONNECTIONS", 64, { integer: true, min: 1 }),
    threads: num("BENCH_THREADS", Math.min(2, cores), { integer: true, min: 1 }),
    computeProcs: num("BENCH_COMPUTE_PROCS", cores, { integer: true, min: 1 }),
    overloadConnections: num("BENCH_OVERLOAD_CONNECTIONS", 512, { integer: true, min: 1 }),
    overloadFactor: num("BENCH_OVERLOAD_FACTOR", 2, { min: 1 }),
    overloadSeconds: num("BENCH_OVERLOAD_SECONDS", seconds * 2, { min: 0.5 }),
    probeRate: num("BENCH_PROBE_RATE", 200, { min: 1 }),
    probeConnections: num("BENCH_PROBE_CONNECTIONS", 16, { integer: true, min: 1 }),
    grpcChannels: num("BENCH_GRPC_CHANNELS", 4, { integer: true, min: 1 }),
    workers: workersRaw === undefined || workersRaw === "" ? undefined : num("BENCH_WORKERS", 1, { integer: true, min: 1 }),
    cache: process.env.BENCH_CACHE === undefined || process.env.BENCH_CACHE === "" ? undefined : process.env.BENCH_CACHE,
    loadgen,
    grpcClient,
    batchRows: num("BENCH_BATCH_ROWS", quick ? 100_000 : 1_000_000, { integer: true, min: 1 }),
    batchPostgresUrl: batchPostgres === undefined || batchPostgres === "" ? "postgres://postgres@127.0.0.1:5432/postgres" : batchPostgres,
    streamRecords: num("BENCH_STREAM_RECORDS", quick ? 20_000 : 200_000, { integer: true, min: 1 }),
    natsServers: process.env.BENCH_NATS?.trim() || "nats://127.0.0.1:4222",
    only,
    resultsDir,
    writeLatest: resultsEnv === undefined || resultsEnv === "",
  };
}
