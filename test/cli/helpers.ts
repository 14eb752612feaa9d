import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { expect } from "vitest";
import { main } from "../../src/cli/main.js";

export const REPO = fileURLToPath(new URL("../../", import.meta.url));
export const FIXTURES = fileURLToPath(new URL("../../../shared/fixtures/", import.meta.url));
export const BIN = path.join(REPO, "bin", "mlship.js");

export interface Expected {
  inputs: number[][];
  input_shape: number[];
  outputs: Record<string, unknown[]>;
  tolerance: Record<string, number | string>;
}

/** The feature cells of each row of a fixture's CSV (`prod.csv` by default) as numbers: the label column dropped. */
export function featureRows(f: { dir: string; features: string[] }, file = "prod.csv"): number[][] {
  return fs
    .readFileSync(path.join(f.dir, file), "utf8")
    .trim()
    .split(/\r?\n/)
    .slice(1)
    .map((line) => line.split(",").slice(0, f.features.length).map(Number));
}

export function fixture(name: string): { dir: string; onnx: string; expected: Expected; features: string[]; label: string } {
  const dir = path.join(FIXTURES, name);
  const meta = JSON.parse(fs.readFileSync(path.join(dir, "meta.json"), "utf8")) as {
    features: string[];
    label_column: string;
  };
  return {
    dir,
    onnx: path.join(dir, "model.onnx"),
    expected: JSON.parse(fs.readFileSync(path.join(dir, "expected.json"), "utf8")) as Expected,
    features: meta.features,
    label: meta.label_column,
  };
}

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `mlship-${prefix}-`));
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `main` in this process with captured streams (no process signals). */
export async function runCli(
  args: string[],
  options: { env?: Record<string, string | undefined>; cwd?: string; signal?: AbortSignal } = {},
): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  const code = await main(["node", "mlship", ...args], {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env: { MLSHIP_LOG_LEVEL: "warn", ...options.env },
    cwd: options.cwd ?? process.cwd(),
    handleSignals: false,
    signal: options.signal,
  });
  return { code, stdout, stderr };
}

function childEnv(env: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...process.env, MLSHIP_LOG_LEVEL: "warn", ...env };
  // A developer's own settings must not leak into the tests.
  for (const key of ["MLSHIP_STORE", "MLSHIP_CONFIG", "MLSHIP_DEFAULT_MODEL", "MLSHIP_PORT", "MLSHIP_HOST"]) {
    if (!(key in env)) delete out[key];
  }
  return out;
}

export function assertBuilt(): void {
  if (!fs.existsSync(path.join(REPO, "dist", "cli", "main.js"))) {
    throw new Error("dist/ is missing: run `npm run build` (npm test builds before running vitest)");
  }
}

/** Runs `node bin/mlship.js ...` as a real child process and waits for it to exit. */
export function spawnCli(
  args: string[],
  options: { env?: Record<string, string | undefined>; cwd?: string; timeoutMs?: number } = {},
): Promise<CliResult> {
  assertBuilt();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: options.cwd ?? REPO,
      env: childEnv(options.env ?? {}),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`mlship ${args.join(" ")} timed out\n${stderr}`));
    }, options.timeoutMs ?? 60_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

export interface LongRunning {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  waitForStdout(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
}

/** Starts `node bin/mlship.js ...` and keeps it running (serve, quickstart). */
export function startCli(args: string[], options: { env?: Record<string, string | undefined>; cwd?: string } = {}): LongRunning {
  assertBuilt();
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: options.cwd ?? REPO,
    env: childEnv(options.env ?? {}),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    async waitForStdout(pattern, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const m = out.match(pattern);
        if (m !== null) return m;
        if (child.exitCode !== null) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`no ${String(pattern)} on stdout (exit ${String(child.exitCode)})\nstdout:\n${out}\nstderr:\n${err}`);
    },
  };
}

/** Compares MLflow records-orientation predictions with expected.json (labels exact, floats within tolerance). */
export function expectRecordsMatch(predictions: unknown, expected: Expected): void {
  expect(Array.isArray(predictions)).toBe(true);
  const rows = predictions as Array<Record<string, unknown>>;
  expect(rows.length).toBe(expected.inputs.length);
  for (const [output, values] of Object.entries(expected.outputs)) {
    rows.forEach((row, i) => expectValueClose(row[output], values[i], output, expected));
  }
}

export function expectValueClose(actual: unknown, wanted: unknown, output: string, expected: Expected): void {
  const tol = expected.tolerance[`${output}_abs`];
  const flatA = [actual].flat(3) as number[];
  const flatW = [wanted].flat(3) as number[];
  expect(flatA.length, output).toBe(flatW.length);
  flatA.forEach((a, j) => {
    if (typeof tol === "number") expect(Math.abs(a - (flatW[j] as number)), `${output}[${j}]`).toBeLessThanOrEqual(tol);
    else expect(a, `${output}[${j}]`).toBe(flatW[j]);
  });
}

/** Writes expected.json's inputs as a CSV file with the fixture's feature names as header. */
export function writeCsv(file: string, features: string[], rows: number[][]): void {
  fs.writeFileSync(file, `${features.join(",")}\n${rows.map((r) => r.join(",")).join("\n")}\n`);
}

export async function freePort(): Promise<number> {
  const net = await import("node:net");
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}
