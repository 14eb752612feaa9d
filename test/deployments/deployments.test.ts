// Deployments against a real server: `mlship serve` in this process (port 0, admin token, temp MLSHIP_HOME) with the
// breast-cancer fixture registered twice, driven through MlshipClient, over raw HTTP and through the CLI.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MlshipClient, MlshipClientError } from "../../src/client/index.js";
import { main } from "../../src/cli/main.js";
import { expectRecordsMatch, fixture, REPO, runCli, tempDir } from "../cli/helpers.js";

const TOKEN = "deploy-admin-token-0123456789";
const bc = fixture("breast_cancer_mlp");
const home = tempDir("deployments");
const env = { MLSHIP_HOME: home, MLSHIP_USER: "tester", MLSHIP_WORKERS: "1", MLSHIP_ADMIN_TOKEN: TOKEN };
/** Audit entries of this run are at or after this time. */
const startedAt = new Date().toISOString();
const records = bc.expected.inputs.map((row) => Object.fromEntries(bc.features.map((f, i) => [f, row[i]])));

let url = "";
let stop: AbortController | undefined;
let served: Promise<number> | undefined;

/** The error a call fails with (the test fails if it does not fail). */
async function failure(call: Promise<unknown>): Promise<MlshipClientError> {
  try {
    await call;
  } catch (error) {
    expect(error).toBeInstanceOf(MlshipClientError);
    return error as MlshipClientError;
  }
  throw new Error("expected the call to fail");
}

beforeAll(async () => {
  const cli = (...args: string[]) => runCli(args, { env, cwd: home });
  const register = ["models", "register", bc.onnx, "--name", "breast-cancer", "--columns-from", path.join(bc.dir, "train.csv"), "--label-column", "label"];
  expect((await cli(...register)).code).toBe(0);
  expect((await cli(...register, "--alias", "production")).code).toBe(0);
  stop = new AbortController();
  let stdout = "";
  let stderr = "";
  served = main(["node", "mlship", "serve", "--port", "0", "--grpc-port", "-1"], {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env: { ...env, MLSHIP_LOG_LEVEL: "warn" },
    cwd: home,
    handleSignals: false,
    signal: stop.signal,
  });
  const deadline = Date.now() + 30_000;
  while (!/serving on (http:\/\/\S+)/.test(stdout) && Date.now() < deadline) {
    if (await Promise.race([served.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 20))])) break;
  }
  const match = /serving on (http:\/\/\S+)/.exec(stdout);
  if (match === null) throw new Error(`the server did not start\n${stdout}\n${stderr}`);
  url = match[1] as string;
});

afterAll(async () => {
  stop?.abort();
  if (served !== undefined) expect(await served).toBe(0);
  fs.rmSync(home, { recursive: true, force: true });
});

describe("deployments over REST through MlshipClient", () => {
  const admin = () => new MlshipClient({ url, token: TOKEN, user: "alice" });

  it("refuses writes without the admin token (401) or with another one (403); reads stay open", async () => {
    // `token: undefined` given explicitly: no Authorization header, whatever MLSHIP_ADMIN_TOKEN says.
    const anonymous = new MlshipClient({ url, token: undefined, fetch });
    const missing = await failure(anonymous.createDeployment({ name: "nope", model: "breast-cancer" }));
    expect(missing).toMatchObject({ status: 401, code: "MLSHIP_ERR_AUTH_REQUIRED", field: "authorization" });
    const wrong = new MlshipClient({ url, token: "not-the-token" });
    expect(await failure(wrong.createDeployment({ name: "nope", model: "breast-cancer" }))).toMatchObject({ status: 403, code: "MLSHIP_ERR_AUTH_INVALID" });
    expect(await failure(wrong.updateDeployment("nope", { model: "breast-cancer@1" }))).toMatchObject({ status: 403 });
    expect(await failure(anonymous.deleteDeployment("nope"))).toMatchObject({ status: 401 });
    expect(await anonymous.listDeployments()).toEqual([]);
    // Reading the registry through the client: the two registered versions and the production alias.
    const models = await anonymous.listModels();
    expect(models.map((m) => m.name)).toEqual(["breast-cancer"]);
    expect(models[0]).toMatchObject({ latestVersion: 2, aliases: { production: 2 } });
    const detail = await anonymous.getModel("breast-cancer");
    expect(detail.versions.map((v) => v.version).sort()).toEqual([1, 2]);
    expect(await failure(anonymous.getModel("no-such-model"))).toMatchObject({ status: 404 });
  });

  it("creates, applies the settings to the resolved version, lists, gets, and refuses duplicates and bad input", async () => {
    const client = admin();
    const created = await client.createDeployment({
      name: "bc",
      model: "breast-cancer@production",
      settings: { workers: 1, batching: { enabled: true, max_batch_size: 8, max_delay_ms: 2 }, cache: { enabled: false }, max_queue: 50 },
    });
    expect(created).toMatchObject({
      name: "bc",
      model: "breast-cancer@production",
      resolved: { model: "breast-cancer", version: 2 },
      state: "ready",
      rollout: null,
      created_by: "alice",
      updated_by: "alice",
    });
    // The settings became the version's registry override (workers -> instances) and are in effect.
    const settings = await client.getVersionSettings("breast-cancer", 2);
    expect(settings.override).toEqual({ batching: { enabled: true, max_batch_size: 8, max_delay_ms: 2 }, cache: { enabled: false }, max_queue: 50, instances: 1 });
    expect(settings.settings.batching).toMatchObject({ max_batch_size: 8, max_delay_ms: 2 });
    expect(settings.sources["batching.max_batch_size"]).toBe("registry");
    expect(settings.sources.instances).toBe("registry");
    // Version 1 was not touched.
    expect((await client.getVersionSettings("breast-cancer", 1)).override).toEqual({});

    expect((await client.listDeployments()).map((d) => d.name)).toEqual(["bc"]);
    expect(await client.getDeployment("bc")).toMatchObject({ name: "bc", state: "ready", settings: { workers: 1, max_queue: 50 } });

    const duplicate = await failure(client.createDeployment({ name: "bc", model: "breast-cancer@1" }));
    expect(duplicate).toMatchObject({ status: 409, code: "MLSHIP_ERR_DEPLOYMENT_EXISTS", field: "name" });
    const unknown = await failure(client.getDeployment("missing"));
    expect(unknown).toMatchObject({ status: 404, code: "MLSHIP_ERR_DEPLOYMENT_NOT_FOUND" });
    const badSetting = await failure(client.createDeployment({ name: "bad", model: "breast-cancer", settings: { batching: { max_batch_size: 0 } } }));
    expect(badSetting).toMatchObject({ status: 400, code: "MLSHIP_ERR_INPUT_INVALID", field: "settings.batching.max_batch_size" });
    const badWorkers = await failure(client.createDeployment({ name: "bad", model: "breast-cancer", settings: { workers: -1 } }));
    expect(badWorkers).toMatchObject({ status: 400, field: "settings.workers" });
    const badName = await failure(client.createDeployment({ name: "Bad Name", model: "breast-cancer" }));
    expect(badName).toMatchObject({ status: 400, field: "name" });
    const noModel = await failure(client.createDeployment({ name: "ghost", model: "no-such-model@production" }));
    expect(noModel).toMatchObject({ status: 404, code: "MLSHIP_ERR_MODEL_NOT_FOUND" });
    const badRollout = await failure(client.createDeployment({ name: "bad", model: "breast-cancer", rollout: { strategy: "canary", candidate: 1, percent: 150 } }));
    expect(badRollout).toMatchObject({ status: 400, field: "rollout.percent" });
    // None of the refused requests left a deployment behind.
    expect((await client.listDeployments()).map((d) => d.name)).toEqual(["bc"]);
  });

  it("predicts through the deployment exactly as through the model, and 404s for an unknown deployment", async () => {
    const client = admin();
    const via = await client.predict("bc", records);
    const direct = await client.predictModel("breast-cancer@production", records);
    expect(via.modelVersion).toBe("breast-cancer@2");
    expect(via.predictions).toEqual(direct.predictions);
    expectRecordsMatch(via.predictions, bc.expected);
    // CSV and a raw MLflow body take the same route.
    const csv = `${bc.features.join(",")}\n${bc.expected.inputs.map((r) => r.join(",")).join("\n")}\n`;
    expect((await client.predict("bc", csv)).predictions).toEqual(direct.predictions);
    expect((await client.predict("bc", { dataframe_split: { columns: bc.features, data: bc.expected.inputs } })).predictions).toEqual(direct.predictions);
    const missing = await failure(client.predict("nope", records));
    expect(missing).toMatchObject({ status: 404, code: "MLSHIP_ERR_DEPLOYMENT_NOT_FOUND" });
    // An MLflow error body (error_code, message, mlship_code) for input errors.
    const bad = await failure(client.predict("bc", [{ nothing: 1 }]));
    expect(bad.status).toBe(400);
    expect((bad.body as { error_code?: string }).error_code).toBeDefined();
  });

  it("a PATCH to another version changes who answers the next request; a rollout splits traffic and ends with rollout: null", async () => {
    const client = admin();
    const moved = await client.updateDeployment("bc", { model: "breast-cancer@1" });
    expect(moved).toMatchObject({ model: "breast-cancer@1", resolved: { version: 1 }, updated_by: "alice" });
    // The settings follow the deployment to the version it now serves.
    expect((await client.getVersionSettings("breast-cancer", 1)).override).toMatchObject({ instances: 1, max_queue: 50 });
    expect((await client.predict("bc", records.slice(0, 3))).modelVersion).toBe("breast-cancer@1");

    // Back to the alias, with every request going to the candidate (version 1) while the rollout lasts.
    const rolled = await client.updateDeployment("bc", { model: "breast-cancer@production", rollout: { strategy: "canary", candidate: "breast-cancer@1", percent: 100 } });
    expect(rolled.rollout_id).toEqual(expect.any(String));
    const during = await client.predict("bc", records.slice(0, 3), { key: "k1" });
    expect(during).toMatchObject({ modelVersion: "breast-cancer@1", variant: "challenger" });
    const rollout = (await (await fetch(`${url}/api/v1/rollouts/${rolled.rollout_id as string}`)).json()) as { rollout: { state: string; startedBy: string } };
    expect(rollout.rollout).toMatchObject({ state: "active", startedBy: "alice" });

    const ended = await client.updateDeployment("bc", { rollout: null });
    expect(ended.rollout).toBeNull();
    const after = await client.predict("bc", records.slice(0, 3), { key: "k1" });
    expect(after.modelVersion).toBe("breast-cancer@2");
    expect(after.variant).toBeNull();
    const aborted = (await (await fetch(`${url}/api/v1/rollouts/${rolled.rollout_id as string}`)).json()) as { rollout: { state: string } };
    expect(aborted.rollout.state).toBe("aborted");
  });

  it("deletes (204), after which the name is unknown everywhere", async () => {
    const client = admin();
    const raw = await fetch(`${url}/api/v1/deployments/bc`, { method: "DELETE", headers: { authorization: `Bearer ${TOKEN}` } });
    expect(raw.status).toBe(204);
    expect(await failure(client.getDeployment("bc"))).toMatchObject({ status: 404, code: "MLSHIP_ERR_DEPLOYMENT_NOT_FOUND" });
    expect(await failure(client.predict("bc", records))).toMatchObject({ status: 404, code: "MLSHIP_ERR_DEPLOYMENT_NOT_FOUND" });
    expect(await failure(client.deleteDeployment("bc"))).toMatchObject({ status: 404 });
  });

  it("audits create, update and delete (who, when, what changed) on GET /api/v1/audit and `mlship audit`", async () => {
    type Entry = { id: number; at: string; actor: string; action: string; model: string | null; version: number | null; rolloutId: string | null; reason: string | null; details: Record<string, unknown> };
    const read = async (query: string): Promise<Entry[]> => {
      const response = await fetch(`${url}/api/v1/audit?${query}`);
      expect(response.status).toBe(200);
      return ((await response.json()) as { entries: Entry[] }).entries.filter((e) => e.action.startsWith("deployment.") && e.details.deployment === "bc");
    };
    // Oldest first: create, the three PATCHes of the test above, delete. The refused creates wrote nothing.
    const entries = (await read("model=breast-cancer")).reverse();
    expect(entries.map((e) => `${e.action} ${e.actor}`)).toEqual([
      "deployment.create alice",
      "deployment.update alice",
      "deployment.update alice",
      "deployment.update alice",
      // The DELETE above sent no x-mlship-user: the server's user (MLSHIP_USER) made it.
      "deployment.delete tester",
    ]);
    for (const e of entries) {
      expect(e.at >= startedAt && e.at <= new Date().toISOString()).toBe(true);
      expect(e.model).toBe("breast-cancer");
    }
    const [create, toVersion1, withRollout, withoutRollout, deleted] = entries as [Entry, Entry, Entry, Entry, Entry];
    const settings = { workers: 1, batching: { enabled: true, max_batch_size: 8, max_delay_ms: 2 }, cache: { enabled: false }, max_queue: 50 };
    expect(create).toMatchObject({ version: 2, rolloutId: null, details: { deployment: "bc", model: "breast-cancer@production", settings, rollout: null } });
    // An update names only what changed, before and after.
    expect(toVersion1).toMatchObject({ version: 1, details: { model: "breast-cancer@1", changes: { model: { from: "breast-cancer@production", to: "breast-cancer@1" } } } });
    expect(Object.keys(toVersion1.details.changes as object)).toEqual(["model"]);
    const rolloutId = withRollout.rolloutId;
    expect(rolloutId).toEqual(expect.any(String));
    expect(withRollout).toMatchObject({
      version: 2,
      details: {
        model: "breast-cancer@production",
        changes: { model: { from: "breast-cancer@1", to: "breast-cancer@production" }, rollout: { from: null, to: { strategy: "canary", candidate: "breast-cancer@1", percent: 100 } } },
      },
    });
    expect(Object.keys(withRollout.details.changes as object).sort()).toEqual(["model", "rollout"]);
    expect(withoutRollout).toMatchObject({ rolloutId, details: { changes: { rollout: { from: { strategy: "canary", percent: 100 }, to: null } } } });
    expect(Object.keys(withoutRollout.details.changes as object)).toEqual(["rollout"]);
    // The rollout had ended with the last PATCH: the deployment no longer held one when deleted.
    expect(deleted).toMatchObject({ version: 2, rolloutId: null, details: { deployment: "bc", model: "breast-cancer@production", settings, rollout: null } });

    // The action filter of the HTTP route knows the new actions.
    expect((await read("action=deployment.update")).map((e) => e.action)).toEqual(["deployment.update", "deployment.update", "deployment.update"]);
    expect(await read("model=diabetes")).toEqual([]);

    // `mlship audit` reads the same store: JSON with the details, filtered by model and action, and the table.
    const json = await runCli(["audit", "--model", "breast-cancer", "--action", "deployment.delete", "--json"], { env, cwd: home });
    expect(json.stderr).toBe("");
    const fromCli = (JSON.parse(json.stdout) as Entry[]).filter((e) => e.details.deployment === "bc");
    expect(fromCli).toEqual([deleted]);
    const table = await runCli(["audit", "--model", "breast-cancer", "--action", "deployment.create"], { env, cwd: home });
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/\salice\s+deployment\.create\s+breast-cancer\s+2\b/);
    // The table's details name the deployment and its model reference.
    expect(table.stdout).toMatch(/deployment\.create\s+breast-cancer\s+2\s+bc -> breast-cancer/);
    const updates = await runCli(["audit", "--model", "breast-cancer", "--action", "deployment.update"], { env, cwd: home });
    expect(updates.stdout).toMatch(/bc -> \S+ changed /);
  });

  it("wraps a server that cannot be reached in a client error naming the URL", async () => {
    const client = new MlshipClient({ url: "http://127.0.0.1:9" });
    const error = await failure(client.listDeployments());
    expect(error.status).toBe(0);
    expect(error.code).toBe("MLSHIP_ERR_CLIENT_NETWORK");
    expect(error.message).toContain("http://127.0.0.1:9/api/v1/deployments");
  });
});

/** `node --import tsx test/deployments/cli-entry.ts ...` as a child process. */
function spawnCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const childEnv: NodeJS.ProcessEnv = { ...process.env, MLSHIP_LOG_LEVEL: "warn", MLSHIP_URL: url, MLSHIP_ADMIN_TOKEN: TOKEN };
    const child = spawn(process.execPath, ["--import", "tsx", path.join(REPO, "test/deployments/cli-entry.ts"), ...args], { cwd: REPO, env: childEnv, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

describe("mlship deployments (CLI on MlshipClient)", () => {
  const cli = (...args: string[]) => runCli(["deployments", ...args, "--url", url, "--token", TOKEN], { env: { MLSHIP_HOME: home }, cwd: home });

  it("creates as a child process (URL and token from the environment), and reports a server error as `mlship: <message> [CODE]` with exit 1", async () => {
    const created = await spawnCli(["deployments", "create", "cli-bc", "--model", "breast-cancer@production", "--max-batch-size", "4", "--workers", "1", "--json"]);
    expect(created.stderr).toBe("");
    expect(created.code).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ name: "cli-bc", resolved: { model: "breast-cancer", version: 2 }, settings: { workers: 1, batching: { max_batch_size: 4 } } });
    const missing = await cli("get", "nope");
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim()).toMatch(/^mlship: no deployment named 'nope'.* \[MLSHIP_ERR_DEPLOYMENT_NOT_FOUND\]$/);
  });

  it("lists as a table, predicts from a CSV file, updates and deletes", async () => {
    const list = await cli("list");
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^NAME\s+MODEL\s+RESOLVED\s+STATE/);
    expect(list.stdout).toMatch(/cli-bc\s+breast-cancer@production\s+breast-cancer@2\s+ready/);

    const file = path.join(home, "rows.csv");
    fs.writeFileSync(file, `${bc.features.join(",")}\n${bc.expected.inputs.map((r) => r.join(",")).join("\n")}\n`);
    const predicted = await cli("predict", "cli-bc", "--input", file, "--json");
    expect(predicted.stderr).toBe("");
    const parsed = JSON.parse(predicted.stdout) as { predictions: unknown; model_version: string };
    expect(parsed.model_version).toBe("breast-cancer@2");
    expectRecordsMatch(parsed.predictions, bc.expected);

    const bad = await cli("update", "cli-bc", "--max-delay-ms", "999999");
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim()).toMatch(/settings\.batching\.max_delay_ms must be at most 60000.*\[MLSHIP_ERR_INPUT_INVALID\]$/);
    const updated = await cli("update", "cli-bc", "--model", "breast-cancer@1");
    expect(updated.code).toBe(0);
    expect(updated.stdout).toMatch(/resolved\s+breast-cancer@1/);

    const noToken = await runCli(["deployments", "delete", "cli-bc", "--url", url], { env: { MLSHIP_HOME: home }, cwd: home });
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toContain("[MLSHIP_ERR_AUTH_REQUIRED]");
    expect((await cli("delete", "cli-bc")).stdout).toBe("deleted deployment cli-bc\n");
    expect((await cli("list", "--json")).stdout.trim()).toBe("[]");
  });
});
