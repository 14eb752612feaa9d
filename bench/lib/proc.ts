/**
 * Child processes of the bench: servers, load generators and compute loops each get their own process, so no two
 * of them share an event loop. Every child is tracked and killed when the bench exits, however it exits.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import { RESULT_TAG } from "./child.js";
import { ROOT } from "./config.js";

const live = new Set<ChildProcess>();

function killAll(): void {
  for (const child of live) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
}

let guarded = false;
/** Installed with the first child (not on import), so importing this module changes nothing in the importer. */
function guard(): void {
  if (guarded) return;
  guarded = true;
  process.once("exit", killAll);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      killAll();
      process.exit(130);
    });
  }
}

/** `node --import tsx bench/children/<name>.ts`, the job as JSON in BENCH_JOB. */
export function tsChildArgs(name: string): string[] {
  return ["--import", "tsx", `bench/children/${name}.ts`];
}

export interface Spawned {
  child: ChildProcess;
  /** Last lines of stderr, for error messages. */
  stderrTail(): string;
  /** Resolves with the first stdout line `match` accepts (rejects on exit or after timeoutMs). */
  waitLine<T>(match: (line: string) => T | undefined, timeoutMs: number, what: string): Promise<T>;
  /** Resolves when the process has exited. */
  exited: Promise<number | null>;
}

/**
 * The environment children start from: the bench's own, less every MLSHIP_* variable, so a developer's mlship
 * settings (a PostgreSQL store, a port) never reach the servers the bench starts. What a child needs is added.
 */
export function childEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("MLSHIP_")) env[k] = v;
  return { ...env, ...extra };
}

export function spawnTracked(command: string, args: string[], env: NodeJS.ProcessEnv = {}, cwd = ROOT): Spawned {
  guard();
  const child = spawn(command, args, {
    cwd,
    env: childEnv(env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  live.add(child);
  let stderr = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  const lines: string[] = [];
  const waiters = new Set<(line: string) => void>();
  let buffered = "";
  child.stdout?.setEncoding("utf8");
  child.stdout?.on("data", (chunk: string) => {
    buffered += chunk;
    let nl = buffered.indexOf("\n");
    while (nl >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      lines.push(line);
      if (lines.length > 200) lines.shift();
      for (const w of waiters) w(line);
      nl = buffered.indexOf("\n");
    }
  });
  const exited = new Promise<number | null>((resolve) => {
    child.once("exit", (code) => {
      live.delete(child);
      resolve(code);
    });
    child.once("error", () => {
      live.delete(child);
      resolve(null);
    });
  });
  const stderrTail = (): string => stderr.trim().split("\n").slice(-8).join("\n");
  const waitLine = <T>(match: (line: string) => T | undefined, timeoutMs: number, what: string): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      let done = false;
      const finish = (fn: () => void): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        waiters.delete(onLine);
        fn();
      };
      const onLine = (line: string): void => {
        const got = match(line);
        if (got !== undefined) finish(() => resolve(got));
      };
      for (const line of lines) {
        const got = match(line);
        if (got !== undefined) {
          done = true;
          resolve(got);
          return;
        }
      }
      waiters.add(onLine);
      const timer = setTimeout(() => {
        finish(() => reject(new Error(`bench: ${what}: no answer within ${Math.round(timeoutMs / 1000)} s\n${stderrTail()}`)));
      }, timeoutMs);
      void exited.then((code) => {
        // Lines written just before exit are delivered before "exit"; give the last chunk a turn.
        setImmediate(() => finish(() => reject(new Error(`bench: ${what}: process exited (code ${String(code)})\n${stderrTail()}`))));
      });
    });
  return { child, stderrTail, waitLine, exited };
}

/** Runs a bench child to completion and returns its BENCH_RESULT. */
export async function runChild<T>(name: string, job: unknown, timeoutMs: number): Promise<T> {
  const proc = spawnTracked(process.execPath, tsChildArgs(name), { BENCH_JOB: JSON.stringify(job) });
  try {
    return await proc.waitLine((line) => (line.startsWith(RESULT_TAG) ? (JSON.parse(line.slice(RESULT_TAG.length)) as T) : undefined), timeoutMs, name);
  } finally {
    await stop(proc, 5000);
  }
}

/** SIGTERM, then SIGKILL after graceMs. */
export async function stop(proc: Spawned, graceMs: number): Promise<void> {
  const { child } = proc;
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await proc.exited;
  clearTimeout(timer);
}

export interface Memory {
  /** Resident set size now, bytes. */
  rss: number;
  /** Peak resident set size since the process started, bytes. */
  hwm: number;
}

/** Memory of a process from /proc (Linux); undefined elsewhere or once it has exited. */
export function memoryOf(pid: number): Memory | undefined {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (key: string): number => {
      const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status);
      return m === null ? Number.NaN : Number(m[1]) * 1024;
    };
    return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
  } catch {
    return undefined;
  }
}

/**
 * Share of the machine's CPU time that was busy during `ms` (all cores, from /proc/stat); undefined off Linux.
 * Sampled while the bench itself is idle, it is what other work on the machine is using.
 */
export async function machineBusy(ms: number): Promise<number | undefined> {
  const read = (): { idle: number; total: number } | undefined => {
    try {
      const line = fs.readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
      const v = line.trim().split(/\s+/).slice(1).map(Number);
      // user nice system idle iowait irq softirq steal (guest time is already in user).
      const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
      return { idle: (v[3] ?? 0) + (v[4] ?? 0), total };
    } catch {
      return undefined;
    }
  };
  const a = read();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const b = read();
  if (a === undefined || b === undefined || b.total <= a.total) return undefined;
  return 1 - (b.idle - a.idle) / (b.total - a.total);
}

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat; undefined off Linux or once gone. */
export function cpuSecondsOf(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces), counted from field 3: utime is 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Clock ticks per second: 100 on every Linux the bench targets (getconf CLK_TCK).
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}
