// Several real `mlship serve` processes behind nginx on loopback, sharing one PostgreSQL registry and one Redis
// prediction cache: the scale-out test (test/scale/) and the bench's `scale` group (bench/scale.ts) both use it.
// Nothing in here depends on vitest, so the bench can import it too (through tsx).
//
// What the replicas share is what a real deployment shares: the PostgreSQL database (registry, aliases, prediction
// log), the Redis cache, and the artifact folder (the default local artifact store, standing in for a shared
// volume or bucket). Each replica has a home folder of its own (MLSHIP_HOME: spill files, staging), its own port
// and no gRPC listener.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import pg from "pg";

export const REPO = fileURLToPath(new URL("../../", import.meta.url));
export const BIN = path.join(REPO, "bin", "mlship.js");
export const NGINX = "/usr/sbin/nginx";
export const POSTGRES_SERVER = "postgres://postgres@127.0.0.1:5432";
export const REDIS_SERVER = "redis://127.0.0.1:6379";
const FIXTURE = path.join(REPO, "..", "shared", "fixtures", "breast_cancer_mlp");

// ---------------------------------------------------------------------------------------------------------------
// Processes

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The environment of an mlship child: this process's, without any MLSHIP_* of the developer's, plus `env`. */
function mlshipEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("MLSHIP_") && v !== undefined) out[k] = v;
  return { ...out, MLSHIP_LOG_LEVEL: "warn", ...env };
}

export function assertBuilt(): void {
  if (!fs.existsSync(path.join(REPO, "dist", "cli", "main.js"))) {
    throw new Error("dist/ is missing: run `npx tsc -p tsconfig.build.json` (npm test builds before running vitest)");
  }
}

/** Runs `node bin/mlship.js ...` to completion. */
export function runMlship(args: string[], env: Record<string, string>, cwd: string, timeoutMs = 60_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd, env: mlshipEnv(env), stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`mlship ${args.join(" ")} timed out after ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

async function mlshipOk(args: string[], env: Record<string, string>, cwd: string): Promise<string> {
  const r = await runMlship(args, env, cwd, 120_000);
  if (r.code !== 0) throw new Error(`mlship ${args.join(" ")} exited ${r.code}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function exitedPromise(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once("exit", (code) => resolve(code)));
}

/** Sends `signal`, then SIGKILL after `graceMs` if the process is still there. */
async function stopProcess(child: ChildProcess, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = exitedPromise(child);
  child.kill(signal);
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

/** GETs `url` until it answers 200 or `timeoutMs` passes. */
async function waitFor200(url: string, timeoutMs: number, what: string, alive: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer";
  while (Date.now() < deadline) {
    if (!alive()) throw new Error(`${what} exited before ${url} answered`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (res.status === 200) return;
      last = `status ${res.status}`;
    } catch (e) {
      last = e instanceof Error ? e.message : String(e);
    }
    await sleep(50);
  }
  throw new Error(`${what}: ${url} did not answer 200 within ${timeoutMs} ms (${last})`);
}

// ---------------------------------------------------------------------------------------------------------------
// The replicas

export interface Replica {
  index: number;
  /** `http://127.0.0.1:<port>` */
  url: string;
  port: number;
  /** `127.0.0.1:<port>`, as nginx's $upstream_addr names it. */
  address: string;
  child: ChildProcess;
  exited: Promise<number | null>;
  alive(): boolean;
  stderr(): string;
}

export interface ClusterOptions {
  /** mlship serve processes. Default 3. */
  replicas?: number;
  /** Versions of `examples/models/breast-cancer` to register as `breast-cancer` (the first gets alias production). Default 1. */
  breastCancerVersions?: number;
  /** Inference worker threads per replica (MLSHIP_WORKERS); null: mlship's default (one per core). Default 1: three replicas share a small machine. */
  workers?: number | null;
  /** Redis database of the shared prediction cache, flushed when the cluster stops. Default 12. */
  redisDb?: number;
  /**
   * More MLSHIP_* settings for every replica and CLI call. By default the event-loop shedding guard is off
   * (MLSHIP_MAX_EVENT_LOOP_DELAY_MS=0): the replicas, nginx and the load generator share this machine's cores, so
   * an event loop runs late because a neighbour has the core, not because its replica is overloaded.
   */
  env?: Record<string, string>;
  /** Prefix of the temp folder and the database name. */
  label?: string;
}

export interface Cluster {
  /** The shared PostgreSQL registry (`postgres://.../mlship_scale_<hex>`). */
  storeUrl: string;
  /** The shared Redis cache (`redis://127.0.0.1:6379/<db>`). */
  cacheUrl: string;
  /** The shared artifact folder. */
  artifacts: string;
  replicas: Replica[];
  /** Runs the real CLI against the shared store (its own home). */
  cli(args: string[]): Promise<RunResult>;
  /** Stops every replica, drops the database, flushes the Redis database and removes the temp folders. */
  stop(): Promise<void>;
}

/**
 * A fresh PostgreSQL database, the example breast-cancer model registered into it through the real CLI, and
 * `replicas` real `mlship serve` processes on free ports, each ready (`/v2/health/ready` answered 200).
 */
export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  assertBuilt();
  const label = options.label ?? "scale";
  const replicaCount = options.replicas ?? 3;
  const redisDb = options.redisDb ?? 12;
  const root = fs.mkdtempSync(path.join(os.tmpdir(), `mlship-${label}-`));
  const database = `mlship_${label.replace(/\W/g, "_")}_${randomBytes(5).toString("hex")}`;
  const storeUrl = `${POSTGRES_SERVER}/${database}`;
  const cacheUrl = `${REDIS_SERVER}/${redisDb}`;
  const artifacts = path.join(root, "artifacts");
  const shared: Record<string, string> = {
    MLSHIP_STORE: storeUrl,
    MLSHIP_ARTIFACTS: artifacts,
    MLSHIP_CACHE: cacheUrl,
    ...(options.workers === null ? {} : { MLSHIP_WORKERS: String(options.workers ?? 1) }),
    MLSHIP_MAX_EVENT_LOOP_DELAY_MS: "0",
    ...options.env,
  };
  const cliHome = path.join(root, "cli");
  fs.mkdirSync(cliHome, { recursive: true });
  const cliEnv = { ...shared, MLSHIP_HOME: cliHome, MLSHIP_USER: "scale-test" };

  const admin = new pg.Client({ connectionString: `${POSTGRES_SERVER}/postgres` });
  await admin.connect();
  await admin.query(`create database ${database}`);
  const replicas: Replica[] = [];

  const stop = async (): Promise<void> => {
    await Promise.all(replicas.map((r) => stopProcess(r.child, "SIGTERM", 5000)));
    await admin.query(`drop database if exists ${database} with (force)`).catch(() => undefined);
    await admin.end().catch(() => undefined);
    const redis = new Redis(cacheUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await redis.connect();
      await redis.flushdb();
    } catch {
      // Redis unreachable: there is nothing of ours to flush.
    } finally {
      redis.disconnect();
    }
    fs.rmSync(root, { recursive: true, force: true });
  };

  try {
    const modelDir = path.join(REPO, "examples", "models", "breast-cancer");
    const versions = options.breastCancerVersions ?? 1;
    for (let v = 1; v <= versions; v++) {
      const args = ["models", "register", modelDir, "--name", "breast-cancer", ...(v === 1 ? ["--alias", "production"] : [])];
      await mlshipOk(args, cliEnv, cliHome);
    }
    const started = await Promise.all(Array.from({ length: replicaCount }, (_, i) => startReplica(i, root, shared)));
    replicas.push(...started);
  } catch (e) {
    await stop();
    throw e;
  }

  return {
    storeUrl,
    cacheUrl,
    artifacts,
    replicas,
    cli: (args) => runMlship(args, cliEnv, cliHome),
    stop,
  };
}

async function startReplica(index: number, root: string, shared: Record<string, string>): Promise<Replica> {
  const home = path.join(root, `replica-${index}`);
  fs.mkdirSync(home, { recursive: true });
  const args = [BIN, "serve", "--port", "0", "--grpc-port", "-1", "--model", "breast-cancer@production"];
  // The replicas share this host, so the default replica id (the host name) would be the same for all of them: each
  // gets its own, as pods get theirs from their names.
  const env = mlshipEnv({ MLSHIP_REPLICA_ID: `replica-${index}`, ...shared, MLSHIP_HOME: home });
  const child = spawn(process.execPath, args, { cwd: home, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const exited = exitedPromise(child);
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  const deadline = Date.now() + 60_000;
  let url: string | undefined;
  while (url === undefined) {
    url = /mlship serving on (http:\/\/\S+)/.exec(out)?.[1];
    if (url !== undefined) break;
    if (!alive() || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`replica ${index} did not start (exit ${String(child.exitCode)})\nstdout:\n${out}\nstderr:\n${err}`);
    }
    await sleep(50);
  }
  await waitFor200(`${url}/v2/health/ready`, 30_000, `replica ${index}`, alive);
  const port = Number(new URL(url).port);
  return { index, url, port, address: `127.0.0.1:${port}`, child, exited, alive, stderr: () => err };
}

// ---------------------------------------------------------------------------------------------------------------
// nginx

export interface Balancer {
  /** `http://127.0.0.1:<port>` */
  url: string;
  port: number;
  /** The generated nginx.conf. */
  config: string;
  /** nginx's master process (its workers exit with it). */
  child: ChildProcess;
  errorLog(): string;
  stop(): Promise<void>;
}

export interface BalancerOptions {
  /** nginx worker processes. Default 1 (the replicas need the cores). */
  workerProcesses?: number;
  label?: string;
}

/**
 * The nginx config of the scale-out setup (docs/deployment.md shows the same upstream block): least connections,
 * keep-alive connections to the replicas, and a request that fails on one replica (connection refused or reset,
 * timeout, 502/503) is sent to the next one, POSTs included: an inference request has no side effect a retry could
 * double. `X-Upstream` says which replica answered (the test tells them apart by port).
 */
export function nginxConfig(prefix: string, port: number, upstreams: string[], workerProcesses = 1): string {
  const servers = upstreams.map((u) => `    server ${u} max_fails=1 fail_timeout=10s;`).join("\n");
  return `# Generated by test/helpers/cluster.ts
${os.userInfo().uid === 0 ? "# Running as root: keep the workers as the same user, so they can use the temp folders below.\nuser root;\n" : ""}worker_processes ${workerProcesses};
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events {
  worker_connections 4096;
}
http {
  access_log off;
  client_body_temp_path ${prefix}/client_body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  keepalive_requests 100000;
  client_max_body_size 64m;

  upstream mlship {
    least_conn;
${servers}
    keepalive 64;
  }

  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://mlship;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_connect_timeout 1s;
      proxy_next_upstream error timeout http_502 http_503 non_idempotent;
      proxy_next_upstream_tries 3;
      proxy_next_upstream_timeout 10s;
      proxy_buffering off;
      add_header X-Upstream $upstream_addr always;
    }
  }
}
`;
}

/** nginx in the foreground (`daemon off`) with a config, pid file, temp folders and error log in a temp folder. */
export async function startNginx(upstreams: string[], options: BalancerOptions = {}): Promise<Balancer> {
  if (!fs.existsSync(NGINX)) throw new Error(`${NGINX} is missing: run scripts/ensure-nginx.sh`);
  const prefix = fs.mkdtempSync(path.join(os.tmpdir(), `mlship-${options.label ?? "nginx"}-`));
  for (const dir of ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]) fs.mkdirSync(path.join(prefix, dir));
  const errorLogPath = path.join(prefix, "error.log");
  const errorLog = (): string => (fs.existsSync(errorLogPath) ? fs.readFileSync(errorLogPath, "utf8") : "");
  let lastError = "";
  // The free port can be taken between the probe and nginx's bind; try a few.
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const config = nginxConfig(prefix, port, upstreams, options.workerProcesses ?? 1);
    const confPath = path.join(prefix, "nginx.conf");
    fs.writeFileSync(confPath, config);
    const child = spawn(NGINX, ["-c", confPath, "-p", `${prefix}/`, "-e", errorLogPath, "-g", "daemon off;"], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const alive = (): boolean => child.exitCode === null && child.signalCode === null;
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitFor200(`${url}/v2/health/ready`, 15_000, "nginx", alive);
    } catch (e) {
      await stopProcess(child, "SIGTERM", 3000);
      lastError = `${e instanceof Error ? e.message : String(e)}\n${stderr}\n${errorLog()}`;
      if (/Address already in use/.test(lastError)) continue;
      break;
    }
    return {
      url,
      port,
      config,
      child,
      errorLog,
      stop: async () => {
        // SIGQUIT would wait for idle keep-alive clients; SIGTERM is nginx's fast shutdown (workers included).
        await stopProcess(child, "SIGTERM", 5000);
        fs.rmSync(prefix, { recursive: true, force: true });
      },
    };
  }
  fs.rmSync(prefix, { recursive: true, force: true });
  throw new Error(`nginx did not start: ${lastError}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Requests and load

/** The breast-cancer fixture's first input row, as the MLflow 1-row body `/invocations` takes. */
export interface InvocationBody {
  /** A different body for each `n` (one cell varies), so the shared prediction cache cannot answer from memory. */
  (n: number): string;
}

export function breastCancerBody(): InvocationBody {
  const meta = JSON.parse(fs.readFileSync(path.join(FIXTURE, "meta.json"), "utf8")) as { features: string[] };
  const expected = JSON.parse(fs.readFileSync(path.join(FIXTURE, "expected.json"), "utf8")) as { inputs: number[][] };
  const row = expected.inputs[0] as number[];
  const base = row[0] as number;
  const MARK = -123456789;
  const template = JSON.stringify({ dataframe_split: { columns: meta.features, data: [[MARK, ...row.slice(1)]] } });
  const [head, tail] = template.split(String(MARK)) as [string, string];
  // A relative change of at most 1e-3 in one feature: still a realistic row.
  return (n) => `${head}${(base * (1 + ((n % 1_000_000) / 1e9))).toPrecision(12)}${tail}`;
}

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One POST /invocations (or `urlPath`) with a JSON body. */
export function post(agent: http.Agent | undefined, baseUrl: string, urlPath: string, body: string, timeoutMs = 10_000): Promise<Answer> {
  const target = new URL(urlPath, baseUrl);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: target.hostname, port: target.port, path: target.pathname, method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
        res.on("error", reject);
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(body);
  });
}

/** One request's outcome in a load run. */
export interface Outcome {
  /** ms since the run started, when the answer (or the error) arrived. */
  at: number;
  /** HTTP status; 0 for a socket error or timeout. */
  status: number;
  /** nginx's X-Upstream header: which replica(s) it tried. */
  upstream: string | undefined;
  error?: string;
}

export interface LoadRun {
  outcomes: Outcome[];
  /** Measured seconds (warm-up excluded). */
  seconds: number;
  /** 2xx answers per second in the measured window. */
  rps: number;
  ok: number;
  failures: number;
}

export interface LoadSpec {
  baseUrl: string;
  concurrency: number;
  seconds: number;
  /** Unmeasured seconds first (connections open, JIT warm). Default 0. */
  warmupSeconds?: number;
  body?: InvocationBody;
  urlPath?: string;
  /** Called once, `atSeconds` into the measured window (e.g. to SIGKILL a replica). */
  during?: { atSeconds: number; action: () => void };
}

let bodyCounter = 0;

/** A closed loop of `concurrency` keep-alive connections, each sending its next request when its answer arrives. */
export async function closedLoopLoad(spec: LoadSpec): Promise<LoadRun> {
  const body = spec.body ?? breastCancerBody();
  const urlPath = spec.urlPath ?? "/invocations";
  const agent = new http.Agent({ keepAlive: true, maxSockets: spec.concurrency });
  const warmup = (spec.warmupSeconds ?? 0) * 1000;
  const t0 = performance.now();
  const start = t0 + warmup;
  const end = start + spec.seconds * 1000;
  const outcomes: Outcome[] = [];
  let actionTimer: NodeJS.Timeout | undefined;
  if (spec.during !== undefined) {
    const { atSeconds, action } = spec.during;
    actionTimer = setTimeout(action, warmup + atSeconds * 1000);
  }
  const worker = async (): Promise<void> => {
    while (performance.now() < end) {
      const sentAt = performance.now();
      let outcome: Outcome;
      try {
        const res = await post(agent, spec.baseUrl, urlPath, body((bodyCounter += 1)));
        const upstream = res.headers["x-upstream"];
        outcome = { at: performance.now() - start, status: res.status, upstream: Array.isArray(upstream) ? upstream.join(",") : upstream };
        if (res.status < 200 || res.status >= 300) outcome.error = res.body.slice(0, 200);
      } catch (e) {
        outcome = { at: performance.now() - start, status: 0, upstream: undefined, error: e instanceof Error ? e.message : String(e) };
      }
      if (sentAt >= start) outcomes.push(outcome);
    }
  };
  try {
    await Promise.all(Array.from({ length: spec.concurrency }, worker));
  } finally {
    if (actionTimer !== undefined) clearTimeout(actionTimer);
    agent.destroy();
  }
  const inWindow = outcomes.filter((o) => o.at <= spec.seconds * 1000);
  const ok = inWindow.filter((o) => o.status >= 200 && o.status < 300).length;
  return {
    outcomes,
    seconds: spec.seconds,
    rps: ok / spec.seconds,
    ok,
    failures: outcomes.filter((o) => o.status < 200 || o.status >= 300).length,
  };
}

/** The replica port named last in an X-Upstream value (after retries nginx lists every replica it tried). */
export function answeringPort(upstream: string | undefined): number | undefined {
  const last = upstream?.split(",").pop()?.trim();
  const m = last === undefined ? null : /:(\d+)$/.exec(last);
  return m === null ? undefined : Number(m[1]);
}
