import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectRecordsMatch, expectValueClose, fixture, runCli, tempDir, writeCsv } from "./helpers.js";

const bc = fixture("breast_cancer_mlp");
const home = tempDir("cli-inproc");
const env = { MLSHIP_HOME: home, MLSHIP_USER: "tester", MLSHIP_WORKERS: "1" };
const cli = (...args: string[]) => runCli(args, { env, cwd: home });

afterAll(() => fs.rmSync(home, { recursive: true, force: true }));

function oneErrorLine(stderr: string): string {
  const lines = stderr.trim().split("\n");
  expect(lines, stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^mlship: .+ \[MLSHIP_ERR_[A-Z_]+\]$/);
  return lines[0] as string;
}

describe("mlship CLI in-process", () => {
  beforeAll(async () => {
    const first = await cli(
      "models", "register", bc.onnx, "--name", "breast-cancer",
      "--columns-from", path.join(bc.dir, "train.csv"), "--label-column", "label",
      "--tag", "team=ml", "--metric", "accuracy=0.965", "--description", "MLP on WDBC",
    );
    expect(first.stderr).toBe("");
    expect(first).toMatchObject({ code: 0, stdout: "1\n" });
    const second = await cli(
      "models", "register", bc.onnx, "--name", "breast-cancer",
      "--columns-from", path.join(bc.dir, "train.csv"), "--label-column", "label", "--alias", "production",
    );
    expect(second).toMatchObject({ code: 0, stdout: "2\n" });
  });

  it("shows and changes a version's serving settings with their sources", async () => {
    const shown = await cli("models", "settings", "breast-cancer", "1");
    expect(shown.stderr).toBe("");
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/batching\.max_batch_size\s+64\s+default/);
    const set = await cli("models", "settings", "breast-cancer", "1", "--max-batch-size", "8", "--preferred-batch-sizes", "4,8", "--max-queue", "10", "--json");
    expect(set.code).toBe(0);
    const parsed = JSON.parse(set.stdout) as { settings: { batching: Record<string, unknown>; max_queue: number }; sources: Record<string, string>; override: unknown };
    expect(parsed.settings.batching).toMatchObject({ max_batch_size: 8, preferred_batch_sizes: [4, 8], enabled: true });
    expect(parsed.sources["batching.max_batch_size"]).toBe("registry");
    expect(parsed.override).toEqual({ batching: { max_batch_size: 8, preferred_batch_sizes: [4, 8] }, max_queue: 10 });
    // Flags change only what they name.
    const more = await cli("models", "settings", "breast-cancer", "1", "--batching", "off", "--json");
    expect((JSON.parse(more.stdout) as { override: unknown }).override).toEqual({ batching: { max_batch_size: 8, preferred_batch_sizes: [4, 8], enabled: false }, max_queue: 10 });
    const bad = await cli("models", "settings", "breast-cancer", "1", "--max-batch-size", "0");
    expect(bad.code).not.toBe(0);
    expect(oneErrorLine(bad.stderr)).toContain("batching.max_batch_size must be an integer >= 1");
    const reset = await cli("models", "settings", "breast-cancer", "1", "--reset", "--json");
    expect((JSON.parse(reset.stdout) as { override: unknown }).override).toEqual({});
  });

  it("lists models as a table and as JSON", async () => {
    const table = await cli("models", "list");
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^NAME\s+LATEST\s+ALIASES/);
    expect(table.stdout).toMatch(/breast-cancer\s+2\s+production=2/);
    const json = await cli("models", "list", "--json");
    const list = JSON.parse(json.stdout) as Array<{ name: string; latestVersion: number; aliases: Record<string, number> }>;
    expect(list).toEqual([expect.objectContaining({ name: "breast-cancer", latestVersion: 2, aliases: { production: 2 } })]);
  });

  it("shows a model and a version with tags, metrics and the signature", async () => {
    const model = await cli("models", "show", "breast-cancer", "--json");
    expect(model.code).toBe(0);
    const parsed = JSON.parse(model.stdout) as {
      model: { name: string };
      versions: Array<{ version: number; tags: Record<string, string>; metrics: Record<string, number> }>;
      version: { version: number; manifest: { signature: { columns: Array<{ name: string }> } } };
    };
    expect(parsed.versions.map((v) => v.version)).toEqual([1, 2]);
    expect(parsed.versions[0]?.tags).toMatchObject({ team: "ml" });
    expect(parsed.versions[0]?.metrics).toMatchObject({ accuracy: 0.965 });
    expect(parsed.version.version).toBe(2);
    expect(parsed.version.manifest.signature.columns.map((c) => c.name)).toEqual(bc.features);

    const v1 = await cli("models", "show", "models:/breast-cancer@1");
    expect(v1.code).toBe(0);
    expect(v1.stdout).toContain("version 1");
    expect(v1.stdout).toContain("accuracy=0.965");
    expect(v1.stdout).toContain("input float32 [-1,30]");
    expect(v1.stdout).toContain("columns: mean radius, mean texture");
  });

  it("moves an alias, rolls it back and records the history", async () => {
    const move = await cli("models", "alias", "breast-cancer", "production", "1", "--reason", "try v1");
    expect(move).toMatchObject({ code: 0, stdout: "breast-cancer@production -> 1 (was 2)\n" });
    const rollback = await cli("models", "rollback", "breast-cancer", "--reason", "v1 is worse");
    expect(rollback).toMatchObject({ code: 0, stdout: "breast-cancer@production -> 2 (was 1)\n" });
    const history = await cli("models", "history", "breast-cancer", "--json");
    const events = JSON.parse(history.stdout) as Array<{ from: number | null; to: number; by: string; reason: string | null }>;
    expect(events.map((e) => [e.from, e.to])).toEqual(expect.arrayContaining([[null, 2], [2, 1], [1, 2]]));
    expect(events.every((e) => e.by === "tester")).toBe(true);
    expect(events.map((e) => e.reason)).toContain("v1 is worse");
    const table = await cli("models", "history", "breast-cancer", "--alias", "production");
    expect(table.stdout).toMatch(/^AT\s+ALIAS\s+ACTION\s+FROM\s+TO\s+BY\s+REASON/);
  });

  it("refuses to archive the version an alias points to, naming the alias", async () => {
    const refused = await cli("models", "archive", "breast-cancer", "2");
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe("");
    const line = oneErrorLine(refused.stderr);
    expect(line).toContain("production");
    expect(line).toContain("[MLSHIP_ERR_REGISTRY_CONFLICT]");

    expect(await cli("models", "archive", "breast-cancer", "1")).toMatchObject({ code: 0, stdout: "breast-cancer@1 archived\n" });
    const shown = JSON.parse((await cli("models", "show", "breast-cancer@1", "--json")).stdout) as { version: { status: string } };
    expect(shown.version.status).toBe("archived");
    expect(await cli("models", "unarchive", "breast-cancer", "1")).toMatchObject({ code: 0, stdout: "breast-cancer@1 ready\n" });
    // Both are deployment actions in the audit log (the refused one is not).
    const entries = JSON.parse((await cli("audit", "--model", "breast-cancer", "--json")).stdout) as Array<{ action: string; version: number }>;
    expect(entries.filter((e) => e.action.startsWith("version.")).map((e) => [e.action, e.version])).toEqual([
      ["version.unarchive", 1],
      ["version.archive", 1],
    ]);
  });

  it("sets tags on a model and on a version", async () => {
    const model = await cli("models", "tag", "breast-cancer", "owner=alice");
    expect(model).toMatchObject({ code: 0 });
    expect(model.stdout).toContain("owner=alice");
    const version = await cli("models", "tag", "breast-cancer@2", "stage=qa", "--json");
    expect((JSON.parse(version.stdout) as { tags: Record<string, string> }).tags).toMatchObject({ stage: "qa" });
  });

  it("predicts from MLflow JSON, V2 JSON and CSV within the fixture's tolerance", async () => {
    const split = path.join(home, "split.json");
    fs.writeFileSync(split, JSON.stringify({ dataframe_split: { columns: bc.features, data: bc.expected.inputs } }));
    const fromJson = await cli("predict", "breast-cancer@production", "--input", split);
    expect(fromJson.stderr).toBe("");
    expect(fromJson.code).toBe(0);
    expectRecordsMatch((JSON.parse(fromJson.stdout) as { predictions: unknown }).predictions, bc.expected);

    const csv = path.join(home, "rows.csv");
    writeCsv(csv, bc.features, bc.expected.inputs);
    const out = path.join(home, "out.json");
    const fromCsv = await cli("predict", "models:/breast-cancer@production", "--input", csv, "--output", out);
    expect(fromCsv).toMatchObject({ code: 0, stdout: "" });
    expectRecordsMatch((JSON.parse(fs.readFileSync(out, "utf8")) as { predictions: unknown }).predictions, bc.expected);

    const v2 = path.join(home, "v2.json");
    fs.writeFileSync(
      v2,
      JSON.stringify({ inputs: [{ name: "input", shape: [50, 30], datatype: "FP32", data: bc.expected.inputs.flat() }] }),
    );
    const fromV2 = await cli("predict", "breast-cancer@2", "--input", v2);
    expect(fromV2.code).toBe(0);
    const body = JSON.parse(fromV2.stdout) as { model_version: string; outputs: Array<{ name: string; data: number[]; shape: number[] }> };
    expect(body.model_version).toBe("2");
    const probs = body.outputs.find((o) => o.name === "probabilities");
    expect(probs?.shape).toEqual([50, 2]);
    expectValueClose(probs?.data, bc.expected.outputs.probabilities, "probabilities", bc.expected);
    expect(body.outputs.find((o) => o.name === "label")?.data).toEqual(bc.expected.outputs.label);
  });

  it("fails with one line and exit 1 for a missing file, a bad ref and an unknown model", async () => {
    const missing = await cli("predict", "breast-cancer", "--input", path.join(home, "nope.json"));
    expect(missing.code).toBe(1);
    expect(oneErrorLine(missing.stderr)).toMatch(/nope\.json cannot be read: no such file/);

    const bad = path.join(home, "bad.json");
    fs.writeFileSync(bad, "{not json");
    const badJson = await cli("predict", "breast-cancer", "--input", bad);
    expect(oneErrorLine(badJson.stderr)).toContain("[MLSHIP_ERR_INPUT_JSON]");

    const badRef = await cli("models", "show", "breast cancer@@1");
    expect(badRef.code).toBe(1);
    expect(oneErrorLine(badRef.stderr)).toContain("[MLSHIP_ERR_MODEL_REF_INVALID]");

    const unknown = await cli("predict", "no-such-model", "--input", path.join(home, "split.json"));
    expect(unknown.code).toBe(1);
    const line = oneErrorLine(unknown.stderr);
    expect(line).toContain("no-such-model");
    expect(line).toContain("[MLSHIP_ERR_MODEL_NOT_FOUND]");

    const noAlias = await cli("models", "show", "breast-cancer@staging");
    expect(oneErrorLine(noAlias.stderr)).toContain("[MLSHIP_ERR_MODEL_ALIAS_NOT_FOUND]");

    const missingColumn = path.join(home, "missing-col.json");
    fs.writeFileSync(
      missingColumn,
      JSON.stringify({ dataframe_records: [Object.fromEntries(bc.features.slice(1).map((f, i) => [f, i]))] }),
    );
    const col = await cli("predict", "breast-cancer", "--input", missingColumn);
    expect(col.code).toBe(1);
    expect(oneErrorLine(col.stderr)).toContain("mean radius");
  });

  it("exits 2 with one line for usage errors", async () => {
    const unknownOption = await cli("models", "list", "--bogus");
    expect(unknownOption.code).toBe(2);
    expect(oneErrorLine(unknownOption.stderr)).toContain("--bogus");

    const noName = await cli("models", "register", bc.onnx);
    expect(noName.code).toBe(2);
    expect(oneErrorLine(noName.stderr)).toContain("--name");

    const badVersion = await cli("models", "alias", "breast-cancer", "production", "two");
    expect(badVersion.code).toBe(2);
    expect(oneErrorLine(badVersion.stderr)).toContain("VERSION");

    const badTag = await cli("models", "register", bc.onnx, "--name", "x", "--tag", "novalue");
    expect(badTag.code).toBe(2);
    expect(oneErrorLine(badTag.stderr)).toContain("--tag");

    const badExt = await cli("predict", "breast-cancer", "--input", "rows.txt");
    expect(badExt.code).toBe(2);

    const unknownCommand = await cli("modles");
    expect(unknownCommand.code).toBe(2);
    expect(oneErrorLine(unknownCommand.stderr)).toContain("modles");
  });

  it("names the key and source of a bad config value", async () => {
    const r = await runCli(["models", "list"], { env: { ...env, MLSHIP_LOG_LEVEL: "chatty" }, cwd: home });
    expect(r.code).toBe(1);
    const line = oneErrorLine(r.stderr);
    expect(line).toContain("log.level");
    expect(line).toContain("MLSHIP_LOG_LEVEL");
    expect(line).toContain("[MLSHIP_ERR_CONFIG_INVALID]");

    const flag = await cli("serve", "--port", "99999");
    expect(flag.code).toBe(1);
    expect(oneErrorLine(flag.stderr)).toMatch(/server\.port from --port/);
  });

  it("prints help for every command with exit 0", async () => {
    for (const args of [["--help"], ["models", "--help"], ["models", "register", "--help"], ["predict", "--help"], ["serve", "--help"], ["quickstart", "--help"], ["models", "rollback", "--help"]]) {
      const r = await cli(...args);
      expect(r.code, args.join(" ")).toBe(0);
      expect(r.stdout, args.join(" ")).toMatch(/^Usage: mlship/);
    }
    const version = await cli("--version");
    expect(version.stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
  });

  it("serves in-process until aborted, then drains and returns 0", async () => {
    const controller = new AbortController();
    let stdout = "";
    const { main } = await import("../../src/cli/main.js");
    const done = main(["node", "mlship", "serve", "--port", "0", "--model", "breast-cancer@production"], {
      stdout: { write: (s: string) => (stdout += s) },
      stderr: { write: () => true },
      env: { ...env, MLSHIP_LOG_LEVEL: "warn" },
      cwd: home,
      handleSignals: false,
      signal: controller.signal,
    });
    const deadline = Date.now() + 30_000;
    while (!/serving on (http:\/\/\S+)/.test(stdout) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const url = (stdout.match(/serving on (http:\/\/\S+)/) as RegExpMatchArray)[1] as string;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect((await fetch(`${url}/v2/health/live`)).status).toBe(200);
    const res = await fetch(`${url}/invocations`, {
      method: "POST",
      headers: { "content-type": "text/csv" },
      body: `${bc.features.join(",")}\n${bc.expected.inputs[0]?.join(",")}\n`,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("mlship-model-version")).toBe("breast-cancer@2");
    controller.abort();
    expect(await done).toBe(0);
    await expect(fetch(`${url}/v2/health/live`)).rejects.toThrow();
  });

  it("prints the effective config with its sources", async () => {
    const r = await cli("config", "--json");
    const parsed = JSON.parse(r.stdout) as { config: { home: string; user: string }; sources: Record<string, string> };
    expect(parsed.config.home).toBe(home);
    expect(parsed.sources.home).toBe("MLSHIP_HOME");
    expect(parsed.config.user).toBe("tester");

    const dir = path.join(home, "cfg");
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "team.yaml"), "server:\n  port: 9123\nlog:\n  level: error\n");
    const fromFile = await runCli(["config", "--json", "--config", path.join(dir, "team.yaml")], { env: { MLSHIP_HOME: home }, cwd: home });
    const loaded = JSON.parse(fromFile.stdout) as { config: { server: { port: number } }; sources: Record<string, string>; file: string };
    expect(loaded.config.server.port).toBe(9123);
    expect(loaded.file).toBe(path.join(dir, "team.yaml"));
    expect(loaded.sources["server.port"]).toContain("team.yaml");
    const table = await cli("config");
    expect(table.stdout).toMatch(/server\.port\s+8080\s+default\s+MLSHIP_PORT/);
  });

  it("never prints the passwords in store and cache URLs", async () => {
    const env = { MLSHIP_HOME: home, MLSHIP_STORE: "postgres://app:s3cret@db.internal:5432/mlship", MLSHIP_CACHE: "redis://:hunter2@cache:6379/0" };
    for (const args of [["config"], ["config", "--json"]]) {
      const r = await runCli(args, { env, cwd: home });
      expect(r.code).toBe(0);
      expect(r.stdout).not.toContain("s3cret");
      expect(r.stdout).not.toContain("hunter2");
      expect(r.stdout).toContain("postgres://app:***@db.internal:5432/mlship");
    }
  });

  it("says which port is taken when it cannot listen", async () => {
    const net = await import("node:net");
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      const r = await cli("serve", "--port", String(port));
      expect(r.code).toBe(1);
      expect(oneErrorLine(r.stderr)).toContain(`127.0.0.1:${port}: it is already in use`);
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  it("refuses a reserved alias before registering anything", async () => {
    const r = await cli("models", "register", bc.onnx, "--name", "breast-cancer", "--alias", "latest", "--columns-from", path.join(bc.dir, "train.csv"), "--label-column", "label");
    expect(r.code).toBe(1);
    expect(oneErrorLine(r.stderr)).toContain("[MLSHIP_ERR_REGISTRY_ALIAS_INVALID]");
    const list = JSON.parse((await cli("models", "list", "--json")).stdout) as Array<{ latestVersion: number }>;
    expect(list[0]?.latestVersion).toBe(2);
  });
});
