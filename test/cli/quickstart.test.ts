// `npm start` in a child process: registers the examples, serves them, prints working curl lines; alias moves made by
// the CLI while it runs show up within 2 s; SIGTERM drains and exits 0; a second start registers nothing new.
import fs from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { expectValueClose, fixture, REPO, spawnCli, startCli, tempDir, type LongRunning } from "./helpers.js";

const bc = fixture("breast_cancer_mlp");
const home = tempDir("quickstart");
const env = { MLSHIP_HOME: home, MLSHIP_WORKERS: "1", MLSHIP_LOG_LEVEL: "info" };
const running: LongRunning[] = [];

afterAll(() => {
  for (const r of running) if (r.child.exitCode === null) r.child.kill("SIGKILL");
  fs.rmSync(home, { recursive: true, force: true });
});

function curlBody(line: string): { url: string; body: unknown } {
  const m = line.match(/^\s*curl -s (\S+) -H 'Content-Type: application\/json' -d '(.*)'$/);
  if (m === null) throw new Error(`not a curl line: ${line}`);
  return { url: m[1] as string, body: JSON.parse((m[2] as string).replace(/'\\''/g, "'")) };
}

async function post(url: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** Index of the example row in expected.json, so the printed request can be checked against known outputs. */
function expectedIndex(values: unknown[]): number {
  return bc.expected.inputs.findIndex((row) => row.every((v, i) => v === values[i]));
}

async function startQuickstart(): Promise<{ proc: LongRunning; base: string; curls: string[] }> {
  const proc = startCli(["quickstart", "--port", "0"], { env });
  running.push(proc);
  await proc.waitForStdout(/Stop with Ctrl\+C/, 90_000);
  const base = (proc.stdout().match(/mlship serving on (http:\/\/127\.0\.0\.1:\d+)/) as RegExpMatchArray)[1] as string;
  const curls = proc.stdout().split("\n").filter((l) => l.trim().startsWith("curl "));
  return { proc, base, curls };
}

// Child processes on a loaded 2-core machine: generous limits, the assertions carry the real timing bounds.
describe("mlship quickstart (npm start)", { timeout: 240_000 }, () => {
  it("registers the examples, serves them, follows CLI alias moves, and shuts down cleanly", async () => {
    const { proc, base, curls } = await startQuickstart();
    expect(proc.stdout()).toContain("registered now: breast-cancer, digits, diabetes");
    expect(proc.stdout()).toContain("/invocations serves breast-cancer@production");
    expect(curls).toHaveLength(2);

    // The printed MLflow line works as printed.
    const mlflow = curlBody(curls[0] as string);
    expect(mlflow.url).toBe(`${base}/invocations`);
    const split = (mlflow.body as { dataframe_split: { columns: string[]; data: unknown[][] } }).dataframe_split;
    expect(split.columns).toEqual(bc.features);
    expect(split.data).toHaveLength(1);
    const answer = await post(mlflow.url, mlflow.body);
    expect(answer.status).toBe(200);
    const [prediction] = answer.json.predictions as Array<{ probabilities: number[]; label: number; class: string }>;
    const row = expectedIndex(split.data[0] as unknown[]);
    if (row >= 0) {
      expectValueClose(prediction?.probabilities, bc.expected.outputs.probabilities?.[row], "probabilities", bc.expected);
      expect(prediction?.label).toBe(bc.expected.outputs.label?.[row]);
    }
    expect(["malignant", "benign"]).toContain(prediction?.class);

    // The printed V2 line too.
    const v2 = curlBody(curls[1] as string);
    expect(v2.url).toBe(`${base}/v2/models/breast-cancer/infer`);
    const v2Answer = await post(v2.url, v2.body);
    expect(v2Answer.status).toBe(200);
    expect(v2Answer.json.model_version).toBe("1");
    const probs = (v2Answer.json.outputs as Array<{ name: string; data: number[] }>).find((o) => o.name === "probabilities");
    expect(probs?.data).toHaveLength(2);
    if (row >= 0) expectValueClose(probs?.data, bc.expected.outputs.probabilities?.[row], "probabilities", bc.expected);

    // Every example model answers on V2 metadata.
    for (const name of ["breast-cancer", "digits", "diabetes"]) {
      expect((await fetch(`${base}/v2/models/${name}`)).status, name).toBe(200);
    }

    // A new version and an alias move from the CLI (another process) reach the running server within 2 s.
    const reg = await spawnCli(["models", "register", path.join(REPO, "examples/models/breast-cancer"), "--name", "breast-cancer"], { env });
    expect(reg).toMatchObject({ code: 0, stdout: "2\n" });
    const versionServed = async (): Promise<string> =>
      String((await post(v2.url, v2.body)).json.model_version);
    const waitFor = async (version: string): Promise<number> => {
      const started = Date.now();
      while (Date.now() - started < 5000) {
        if ((await versionServed()) === version) return Date.now() - started;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`server still answers with another version than ${version}`);
    };
    expect(await versionServed()).toBe("1");
    expect((await spawnCli(["models", "alias", "breast-cancer", "production", "2"], { env })).code).toBe(0);
    expect(await waitFor("2")).toBeLessThan(2000);
    const invocations = await fetch(`${base}/invocations`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(mlflow.body),
    });
    expect(invocations.status).toBe(200);
    expect(invocations.headers.get("mlship-model-version")).toBe("breast-cancer@2");

    expect((await spawnCli(["models", "rollback", "breast-cancer"], { env })).stdout).toBe("breast-cancer@production -> 1 (was 2)\n");
    expect(await waitFor("1")).toBeLessThan(2000);

    // SIGTERM while a request is in flight: the request completes, then the process exits 0.
    // A large batch (parsing and scoring take a while), so the signal lands while the request is being served.
    const rows = 20_000;
    const big = { dataframe_split: { columns: bc.features, data: Array.from({ length: rows }, (_, i) => bc.expected.inputs[i % 50]) } };
    const inflight = post(`${base}/invocations`, big);
    await new Promise((r) => setTimeout(r, 150));
    proc.child.kill("SIGTERM");
    const drained = await inflight;
    expect(drained.status).toBe(200);
    expect(drained.json.predictions).toHaveLength(rows);
    expect(await proc.exited).toBe(0);
    expect(proc.stderr()).toContain("server stopped");
  });

  it("registers nothing new on a second start and stops on SIGINT", async () => {
    const { proc, base } = await startQuickstart();
    expect(proc.stdout()).toContain("already registered");
    const list = await spawnCli(["models", "list", "--json"], { env });
    const models = JSON.parse(list.stdout) as Array<{ name: string; latestVersion: number; aliases: Record<string, number> }>;
    expect(models.map((m) => [m.name, m.latestVersion, m.aliases.production])).toEqual([
      ["breast-cancer", 2, 1],
      ["diabetes", 1, 1],
      ["digits", 1, 1],
    ]);
    expect((await fetch(`${base}/v2/health/ready`)).status).toBe(200);
    proc.child.kill("SIGINT");
    expect(await proc.exited).toBe(0);
  });
});
