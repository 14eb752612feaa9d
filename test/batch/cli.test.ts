// `mlship batch score | runs | rejects` on real data: the breast-cancer MLP scores the fixture's production rows
// into the SQLite store. The real process is killed with SIGKILL mid-run and `--resume` finishes the same run with
// exactly one prediction per id; SIGINT ends a run `interrupted` with exit code 130.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import BetterSqlite3 from "better-sqlite3";
import { CommanderError, type Command } from "commander";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel } from "../../src/app.js";
import { batchCommand } from "../../src/cli/batch.js";
import { CliContext } from "../../src/cli/context.js";
import { buildProgram } from "../../src/cli/main.js";
import { defaultConfig } from "../../src/config/index.js";
import { toMlshipError } from "../../src/core/index.js";
import { runCli, expectValueClose, fixture, REPO, tempDir, type CliResult } from "../cli/helpers.js";

const MODEL = "breast-cancer";
const EXAMPLE = path.join(REPO, "examples", "models", "breast-cancer");
const bc = fixture("breast_cancer_mlp");
const prodLines = fs.readFileSync(path.join(bc.dir, "prod.csv"), "utf8").trim().split(/\r?\n/);
const header = prodLines[0] as string;
const prodRows = prodLines.slice(1);

function batchRegistered(): boolean {
  const ctx = new CliContext({ stdout: { write: () => true }, stderr: { write: () => true }, env: {}, cwd: REPO, handleSignals: false });
  return buildProgram(ctx).commands.some((c) => c.name() === "batch");
}

/** Makes a command tree behave as main's does: errors are thrown, not process.exit'ed. */
function exitOverrideAll(cmd: Command): void {
  cmd.exitOverride();
  cmd.configureOutput({ outputError: () => undefined });
  cmd.commands.forEach(exitOverrideAll);
}

/**
 * Runs `mlship batch ...` in this process. Through `main` once the command is registered there; until then through
 * the same program with `batch` added, reporting errors the way main does.
 */
async function batchCli(args: string[], options: { env?: Record<string, string | undefined>; signal?: AbortSignal } = {}): Promise<CliResult> {
  if (batchRegistered()) return runCli(["batch", ...args], options);
  let stdout = "";
  let stderr = "";
  const ctx = new CliContext({
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env: { MLSHIP_LOG_LEVEL: "warn", ...options.env },
    cwd: process.cwd(),
    handleSignals: false,
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
  const program = buildProgram(ctx);
  const batch = batchCommand(ctx);
  program.addCommand(batch);
  exitOverrideAll(batch);
  let code = 0;
  try {
    await program.parseAsync(["node", "mlship", "batch", ...args], { from: "node" });
  } catch (error) {
    if (error instanceof CommanderError) {
      code = error.exitCode === 0 ? 0 : 2;
      stderr += `mlship: ${error.message} [MLSHIP_ERR_CLI_USAGE]\n`;
    } else {
      const e = toMlshipError(error);
      stderr += `mlship: ${e.message} [${e.code}]\n`;
      const exitCode = (error as { exitCode?: unknown }).exitCode;
      code = typeof exitCode === "number" ? exitCode : e.code === "MLSHIP_ERR_CLI_USAGE" ? 2 : 1;
    }
  } finally {
    await ctx.close();
  }
  return { code, stdout, stderr };
}

/** A child running `mlship batch ...` from the sources (tsx), as `node bin/mlship.js batch ...` would. */
function childScript(dir: string): string {
  const file = path.join(dir, "batch-child.mts");
  const src = (p: string): string => JSON.stringify(path.join(REPO, "src", p));
  fs.writeFileSync(
    file,
    `import { Command } from "commander";
import { main, buildProgram } from ${src("cli/main.ts")};
import { batchCommand } from ${src("cli/batch.ts")};
import { CliContext } from ${src("cli/context.ts")};
import { defaultIo } from ${src("cli/io.ts")};
import { toMlshipError } from ${src("core/index.ts")};

const io = defaultIo();
const probe = buildProgram(new CliContext({ ...io, handleSignals: false }));
if (probe.commands.some((c) => c.name() === "batch")) {
  process.exitCode = await main(process.argv);
} else {
  const ctx = new CliContext(io);
  const program = buildProgram(ctx);
  const batch = batchCommand(ctx);
  program.addCommand(batch);
  const apply = (cmd: Command): void => { cmd.exitOverride(); cmd.commands.forEach(apply); };
  apply(batch);
  let code = 0;
  try {
    await program.parseAsync(process.argv);
  } catch (error) {
    const e = toMlshipError(error);
    process.stderr.write("mlship: " + e.message + " [" + e.code + "]\\n");
    const exitCode = (error as { exitCode?: unknown }).exitCode;
    code = typeof exitCode === "number" ? exitCode : 1;
  } finally {
    await ctx.close();
  }
  process.exitCode = code;
}
`,
  );
  return file;
}

interface Child {
  stderr: () => string;
  stdout: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal: NodeJS.Signals): void;
  /** Resolves once a progress line shows at least `rows` rows written. */
  written(rows: number, timeoutMs?: number): Promise<number>;
}

function startChild(script: string, args: string[], home: string): Child {
  const child = spawn(process.execPath, ["--import", "tsx", script, "batch", ...args], {
    cwd: REPO,
    env: { ...process.env, MLSHIP_HOME: home, MLSHIP_LOG_LEVEL: "warn", MLSHIP_STORE: undefined, MLSHIP_CONFIG: undefined, MLSHIP_WORKERS: "2" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  return {
    stderr: () => err,
    stdout: () => out,
    exited,
    kill: (signal) => child.kill(signal),
    async written(rows, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const lines = err.split("\n").filter((l) => l.includes('"event":"batch_progress"'));
        const last = lines.at(-1);
        if (last !== undefined) {
          const n = (JSON.parse(last) as { rowsOut: number }).rowsOut;
          if (n >= rows) return n;
        }
        if (child.exitCode !== null) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error(`no progress line with ${rows} rows written\nstdout:\n${out}\nstderr:\n${err}`);
    },
  };
}

let home: string;
let input: string;
const env = (): Record<string, string> => ({ MLSHIP_HOME: home, MLSHIP_WORKERS: "2" });

beforeAll(async () => {
  home = tempDir("batch-cli");
  const app = await createMlship(defaultConfig({ home, user: "tester", "runtime.workers": 1, "log.level": "warn" }));
  try {
    await registerModel(app, EXAMPLE, { name: MODEL, alias: "production" });
  } finally {
    await app.close();
  }
  input = path.join(home, "prod.csv");
  const lines = [`id,${header}`, ...prodRows.map((row, i) => `p${i},${row}`)];
  const bad = (prodRows[0] as string).split(",");
  bad[5] = "n/a";
  lines.splice(11, 0, `bad-1,${bad.join(",")}`, `,${prodRows[1] as string}`);
  fs.writeFileSync(input, `${lines.join("\n")}\n`);
}, 60_000);

afterAll(() => {
  fs.rmSync(home, { recursive: true, force: true });
});

function predictions(table = "batch_predictions"): Map<string, { version: number; run_id: string; outputs: Record<string, unknown> }> {
  const db = new BetterSqlite3(path.join(home, "mlship.db"), { readonly: true });
  try {
    const rows = db.prepare(`select id, version, run_id, outputs from ${table} where model = ?`).all(MODEL) as Array<{ id: string; version: number; run_id: string; outputs: string }>;
    return new Map(rows.map((r) => [r.id, { version: r.version, run_id: r.run_id, outputs: JSON.parse(r.outputs) as Record<string, unknown> }]));
  } finally {
    db.close();
  }
}

describe("mlship batch (in process)", () => {
  let runId: string;

  it("scores a CSV into the store and prints the run summary", async () => {
    const res = await batchCli(["score", `${MODEL}@production`, "--input", input, "--chunk-rows", "20", "--json"], { env: env() });
    expect(res.code, res.stderr).toBe(0);
    const summary = JSON.parse(res.stdout) as Record<string, unknown>;
    expect(summary).toMatchObject({
      model: MODEL, version: 1, status: "succeeded", rowsIn: prodRows.length + 2, rowsOut: prodRows.length, rowsRejected: 2,
      target: "sqlite", table: "batch_predictions", input,
    });
    expect(summary.seconds).toEqual(expect.any(Number));
    expect(summary.rowsPerSecond).toBeGreaterThan(0);
    runId = summary.runId as string;
    // Not a TTY: progress is JSON lines on stderr, ending with the summary.
    const events = res.stderr.split("\n").filter((l) => l.startsWith('{"event"')).map((l) => JSON.parse(l) as { event: string });
    expect(events.at(0)?.event).toBe("batch_progress");
    expect(events.at(-1)).toMatchObject({ event: "batch_done", runId, status: "succeeded" });

    const stored = predictions();
    expect(stored.size).toBe(prodRows.length);
    bc.expected.inputs.forEach((_, i) => {
      const p = stored.get(`p${i}`);
      expect(p).toMatchObject({ version: 1, run_id: runId });
      for (const [output, values] of Object.entries(bc.expected.outputs)) expectValueClose(p?.outputs[output], values[i], output, bc.expected);
    });
  }, 60_000);

  it("lists runs and rejected rows", async () => {
    const runs = await batchCli(["runs", MODEL, "--json"], { env: env() });
    expect(runs.code, runs.stderr).toBe(0);
    const list = JSON.parse(runs.stdout) as Array<Record<string, unknown>>;
    expect(list[0]).toMatchObject({ id: runId, status: "succeeded", rowsIn: prodRows.length + 2, rowsOut: prodRows.length, rowsRejected: 2 });
    expect(list[0]?.inputFingerprint).toMatch(/^[0-9a-f]{64}$/);

    const text = await batchCli(["runs"], { env: env() });
    expect(text.stdout).toMatch(new RegExp(`${runId}\\s+${MODEL}@1\\s+succeeded\\s+${prodRows.length + 2}\\s+${prodRows.length}\\s+2`));

    const rejects = await batchCli(["rejects", runId, "--json"], { env: env() });
    expect(rejects.code, rejects.stderr).toBe(0);
    const rows = JSON.parse(rejects.stdout) as Array<{ rowNumber: number; rowId: string | null; field: string | null; reason: string }>;
    expect(rows).toHaveLength(2);
    expect(rows[0]).toMatchObject({ rowNumber: 10, rowId: "bad-1" });
    expect(rows[0]?.reason).toMatch(/mean compactness/);
    expect(rows[1]).toMatchObject({ rowNumber: 11, rowId: null, field: "id", reason: 'the id column "id" is empty' });
    const table = await batchCli(["rejects", runId], { env: env() });
    expect(table.stdout).toMatch(/^ROW\s+ID\s+FIELD\s+REASON/);
    expect(table.stdout).toContain("bad-1");

    const missing = await batchCli(["rejects", "no-such-run"], { env: env() });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("no batch run no-such-run (see mlship batch runs) [MLSHIP_ERR_INPUT_INVALID]");
  }, 60_000);

  it("says so when there is nothing to resume", async () => {
    const res = await batchCli(["score", MODEL, "--input", input, "--resume"], { env: env() });
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/nothing to resume: no failed, interrupted or killed run of breast-cancer from .*prod\.csv into sqlite table batch_predictions \[MLSHIP_ERR_INPUT_INVALID\]/);
  }, 60_000);

  it("exits 1 with the failed run's summary when the input lacks a feature column", async () => {
    const file = path.join(home, "short.csv");
    fs.writeFileSync(file, `id,${header.split(",").slice(1).join(",")}\np0,${(prodRows[0] as string).split(",").slice(1).join(",")}\n`);
    const res = await batchCli(["score", MODEL, "--input", file, "--table", "short"], { env: env() });
    expect(res.code).toBe(1);
    expect(res.stdout).toMatch(/batch run \S+ failed: breast-cancer@1, 0 rows in/);
    expect(res.stderr).toContain('the input lacks the feature column "mean radius" [MLSHIP_ERR_INPUT_MISSING]');
  }, 60_000);

  it("rejects a bad --shard and --chunk-rows as usage errors", async () => {
    const shard = await batchCli(["score", MODEL, "--input", input, "--shard", "3/3"], { env: env() });
    expect(shard.code).toBe(2);
    expect(shard.stderr).toContain("--shard must be i/N");
    const chunk = await batchCli(["score", MODEL, "--input", input, "--chunk-rows", "0"], { env: env() });
    expect(chunk.code).toBe(2);
  });

  it("--shard i/N: the shards of one input are disjoint and together complete", async () => {
    const seen = new Map<string, string>();
    let rowsIn = 0;
    for (const shard of ["0/3", "1/3", "2/3"]) {
      const res = await batchCli(["score", MODEL, "--input", input, "--table", "sharded", "--shard", shard, "--json"], { env: env() });
      expect(res.code, res.stderr).toBe(0);
      const summary = JSON.parse(res.stdout) as { runId: string; rowsIn: number; rowsOut: number };
      expect(summary.rowsIn).toBeLessThan(prodRows.length);
      rowsIn += summary.rowsIn;
      for (const [id, p] of predictions("sharded")) if (p.run_id === summary.runId) seen.set(id, shard);
    }
    expect(rowsIn).toBe(prodRows.length + 2);
    expect(seen.size).toBe(prodRows.length);
    expect(predictions("sharded").size).toBe(prodRows.length);
    expect(new Set(seen.values()).size).toBe(3);
  }, 60_000);

  it("ends `interrupted` with exit 130 when stopped", async () => {
    const controller = new AbortController();
    controller.abort();
    const res = await batchCli(["score", MODEL, "--input", input, "--table", "stopped"], { env: env(), signal: controller.signal });
    expect(res.code).toBe(130);
    expect(res.stdout).toMatch(/batch run \S+ interrupted/);
    const resumed = await batchCli(["score", MODEL, "--input", input, "--table", "stopped", "--resume", "--json"], { env: env() });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(JSON.parse(resumed.stdout)).toMatchObject({ status: "succeeded", rowsOut: prodRows.length });
    expect(predictions("stopped").size).toBe(prodRows.length);
  }, 60_000);
});

describe("mlship batch as a real process", () => {
  const ROWS = 100_000;
  let big: string;
  let script: string;

  beforeAll(() => {
    big = path.join(home, "big.csv");
    const out = fs.openSync(big, "w");
    try {
      fs.writeSync(out, `id,${header}\n`);
      let block: string[] = [];
      for (let i = 0; i < ROWS; i++) {
        block.push(`q${i},${prodRows[i % prodRows.length] as string}`);
        if (block.length === 10_000) {
          fs.writeSync(out, `${block.join("\n")}\n`);
          block = [];
        }
      }
      if (block.length > 0) fs.writeSync(out, `${block.join("\n")}\n`);
    } finally {
      fs.closeSync(out);
    }
    script = childScript(home);
  });

  it("SIGKILL mid-run, then --resume: the same run ends succeeded with exactly one prediction per id", async () => {
    const args = ["score", `${MODEL}@production`, "--input", big, "--table", "big", "--chunk-rows", "1000"];
    const first = startChild(script, args, home);
    const written = await first.written(1000);
    first.kill("SIGKILL");
    expect((await first.exited).signal).toBe("SIGKILL");
    const partial = predictions("big").size;
    expect(partial).toBeGreaterThanOrEqual(written);
    expect(partial).toBeLessThan(ROWS);

    const runsBefore = JSON.parse((await batchCli(["runs", MODEL, "--json", "--limit", "100"], { env: env() })).stdout) as Array<{ id: string; status: string; targetTable: string }>;
    const killed = runsBefore.filter((r) => r.targetTable === "big");
    expect(killed).toHaveLength(1);
    expect(killed[0]?.status).toBe("running");

    const second = startChild(script, [...args, "--resume", "--json"], home);
    const end = await second.exited;
    expect(end.code, second.stderr()).toBe(0);
    const summary = JSON.parse(second.stdout()) as Record<string, unknown>;
    expect(summary).toMatchObject({ runId: killed[0]?.id, status: "succeeded", rowsIn: ROWS, rowsOut: ROWS, rowsRejected: 0 });

    const db = new BetterSqlite3(path.join(home, "mlship.db"), { readonly: true });
    try {
      const counts = db.prepare("select count(*) as n, count(distinct id) as ids, min(version) as lo, max(version) as hi from big where model = ?").get(MODEL) as Record<string, number>;
      expect(counts).toEqual({ n: ROWS, ids: ROWS, lo: 1, hi: 1 });
      const outside = db.prepare("select count(*) as n from big where model = ? and not (id glob 'q[0-9]*')").get(MODEL) as { n: number };
      expect(outside.n).toBe(0);
      const runs = db.prepare("select id, status, rows_in, rows_out from batch_runs where target_table = 'big'").all() as Array<Record<string, unknown>>;
      expect(runs).toEqual([{ id: killed[0]?.id, status: "succeeded", rows_in: ROWS, rows_out: ROWS }]);
      // Spot check: row q{k} got the prediction of prod row k mod 144.
      const p = db.prepare("select outputs from big where model = ? and id = ?").get(MODEL, `q${prodRows.length * 100 + 3}`) as { outputs: string };
      const outputs = JSON.parse(p.outputs) as Record<string, unknown>;
      for (const [output, values] of Object.entries(bc.expected.outputs)) expectValueClose(outputs[output], values[3], output, bc.expected);
    } finally {
      db.close();
    }
  }, 180_000);

  it("SIGINT ends the run `interrupted` and the process exits 130", async () => {
    const child = startChild(script, ["score", MODEL, "--input", big, "--table", "sigint", "--chunk-rows", "1000"], home);
    await child.written(1000);
    child.kill("SIGINT");
    const end = await child.exited;
    expect(end.code, child.stderr()).toBe(130);
    expect(child.stdout()).toMatch(/batch run \S+ interrupted: breast-cancer@1, \d+ rows in/);
    const db = new BetterSqlite3(path.join(home, "mlship.db"), { readonly: true });
    try {
      const run = db.prepare("select status, rows_out from batch_runs where target_table = 'sigint'").get() as { status: string; rows_out: number };
      expect(run.status).toBe("interrupted");
      const n = (db.prepare("select count(*) as n from sigint").get() as { n: number }).n;
      expect(n).toBe(run.rows_out);
    } finally {
      db.close();
    }
  }, 120_000);
});
