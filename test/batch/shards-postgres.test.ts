// Issue 6 item 6: N processes score disjoint shards of one file into the same PostgreSQL store at once. Three real
// CLI processes (`mlship batch score --shard i/3`) run concurrently against a database created for the test; every
// id ends up scored exactly once, and each shard's run is recorded.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import pg from "pg";
import YAML from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { freshPostgres, postgresAdmin, type FreshDatabase } from "../helpers/sql-stores.js";
import { fixture, REPO, tempDir } from "../cli/helpers.js";

const MODEL = "breast-cancer";
const ROWS = 6000;
let admin: pg.Client;
let db: FreshDatabase;
let storeUrl: string;
let home: string;
let input: string;
let script: string;

beforeAll(async () => {
  admin = await postgresAdmin();
  db = await freshPostgres(admin, "batch-shards");
  const opened = await db.open();
  storeUrl = opened.location.replace(/:[^:@/]*@/, "@");
  home = tempDir("batch-shards");
  const app = await createMlship(defaultConfig({ home, store: storeUrl, user: "tester", "runtime.workers": 1, "log.level": "warn" }));
  try {
    await registerModel(app, path.join(REPO, "examples", "models", "breast-cancer"), { name: MODEL, alias: "production" });
  } finally {
    await app.close();
  }
  const lines = fs.readFileSync(path.join(fixture("breast_cancer_mlp").dir, "prod.csv"), "utf8").trim().split(/\r?\n/);
  const header = (lines[0] as string).split(",").slice(0, -1).join(",");
  const rows = lines.slice(1).map((l) => l.split(",").slice(0, -1).join(","));
  const out = [`id,${header}`];
  for (let i = 0; i < ROWS; i++) out.push(`c-${i},${rows[i % rows.length] as string}`);
  input = path.join(home, "customers.csv");
  fs.writeFileSync(input, `${out.join("\n")}\n`);
  script = path.join(home, "mlship-child.mts");
  fs.writeFileSync(script, `import { main } from ${JSON.stringify(path.join(REPO, "src", "cli", "main.ts"))};\nprocess.exitCode = await main(process.argv);\n`);
}, 120_000);

afterAll(async () => {
  await db?.dispose();
  await admin?.end();
  fs.rmSync(home, { recursive: true, force: true });
});

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", script, ...args], {
    cwd: REPO,
    env: { ...process.env, MLSHIP_HOME: home, MLSHIP_STORE: storeUrl, MLSHIP_LOG_LEVEL: "warn", MLSHIP_WORKERS: "1", MLSHIP_CONFIG: undefined },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on("exit", (code) => resolve({ code, stdout, stderr })));
}

describe("batch shards into PostgreSQL", () => {
  it("three processes at once score disjoint shards; every id is scored exactly once", async () => {
    const results = await Promise.all([0, 1, 2].map((i) => run(["batch", "score", `${MODEL}@production`, "--input", input, "--shard", `${i}/3`, "--chunk-rows", "500", "--json"])));
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    const runs = results.map((r) => JSON.parse(r.stdout) as { status: string; rowsOut: number; rowsRejected: number; shard: { index: number; count: number } });
    expect(runs.map((r) => r.status)).toEqual(["succeeded", "succeeded", "succeeded"]);
    expect(runs.map((r) => r.shard)).toEqual([0, 1, 2].map((index) => ({ index, count: 3 })));
    // Each shard has a share of the rows (a hash split), and together they are all of them.
    for (const r of runs) expect(r.rowsOut).toBeGreaterThan(ROWS / 6);
    expect(runs.reduce((sum, r) => sum + r.rowsOut + r.rowsRejected, 0)).toBe(ROWS);

    const client = new pg.Client({ connectionString: storeUrl });
    await client.connect();
    try {
      const counts = await client.query<{ n: string; ids: string }>("select count(*) as n, count(distinct id) as ids from batch_predictions where model = $1", [MODEL]);
      expect(counts.rows[0]).toEqual({ n: String(ROWS), ids: String(ROWS) });
      const shardRuns = await client.query<{ n: string }>("select count(*) as n from batch_runs where model = $1 and shard_count = 3 and status = 'succeeded'", [MODEL]);
      expect(shardRuns.rows[0]?.n).toBe("3");
    } finally {
      await client.end();
    }
  });

  it("--resume-if-any starts a new run when there is nothing to resume (a retried pod), still one prediction per id", async () => {
    const again = await run(["batch", "score", `${MODEL}@production`, "--input", input, "--shard", "1/3", "--resume-if-any", "--json"]);
    expect(again.code, again.stderr).toBe(0);
    expect((JSON.parse(again.stdout) as { status: string }).status).toBe("succeeded");
    const client = new pg.Client({ connectionString: storeUrl });
    await client.connect();
    try {
      const counts = await client.query<{ n: string; ids: string }>("select count(*) as n, count(distinct id) as ids from batch_predictions where model = $1", [MODEL]);
      expect(counts.rows[0]).toEqual({ n: String(ROWS), ids: String(ROWS) });
    } finally {
      await client.end();
    }
  });

  it("the Kubernetes Indexed Job manifest runs one shard per index with flags the CLI accepts", async () => {
    const manifest = YAML.parse(fs.readFileSync(path.join(REPO, "deploy", "kubernetes", "batch-indexed-job.yaml"), "utf8")) as {
      kind: string;
      spec: { completionMode: string; completions: number; parallelism: number; template: { spec: { containers: Array<{ args: string[]; env: Array<{ name: string }> }> } } };
    };
    expect(manifest.kind).toBe("Job");
    expect(manifest.spec.completionMode).toBe("Indexed");
    const n = manifest.spec.completions;
    expect(manifest.spec.parallelism).toBe(n);
    const container = manifest.spec.template.spec.containers[0];
    const command = (container?.args ?? []).join(" ");
    // Kubernetes expands $(VAR) in args from the container's env (no shell in between).
    expect(container?.args).toContain(`$(JOB_COMPLETION_INDEX)/${n}`);
    expect(container?.args[(container?.args.indexOf(`$(JOB_COMPLETION_INDEX)/${n}`) ?? 0) - 1]).toBe("--shard");
    expect(container?.env.map((e) => e.name)).toContain("JOB_COMPLETION_INDEX");
    expect(container?.env.map((e) => e.name)).toContain("MLSHIP_STORE");
    const help = await run(["batch", "score", "--help"]);
    for (const flag of command.match(/--[a-z-]+/g) ?? []) expect(help.stdout, flag).toContain(flag);
  });
});

