// Review of the deployments feature: partial failures, races between writes to the same deployment, PATCH nulls,
// references with `@` and `models:/` through the client, inference through a deployment whose version is archived,
// and the client's handling of bodies that are not JSON and of servers that stall. A real app (SQLite) behind
// buildServer with the admin token, listening on a port so MlshipClient speaks real HTTP.
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { MlshipClient, MlshipClientError } from "../../src/client/index.js";
import { defaultConfig } from "../../src/config/index.js";
import { createDeploymentService, deploymentRoutes, type DeploymentService } from "../../src/deployments/index.js";
import { buildServer } from "../../src/serve/index.js";
import { runCli } from "../cli/helpers.js";

const MODELS = fileURLToPath(new URL("../../examples/models", import.meta.url));
const TOKEN = "review-admin-token-0123456789";
const home = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-deployments-review-"));
const example = JSON.parse(fs.readFileSync(path.join(MODELS, "breast-cancer", "input_example.json"), "utf8")) as Record<string, unknown>;
let app: Mlship;
let service: DeploymentService;
let server: ReturnType<typeof buildServer>;
let url = "";

beforeAll(async () => {
  const config = defaultConfig({ home, user: "tester", "runtime.workers": 1, "log.level": "warn" });
  app = await createMlship(config);
  // v1 production, v2 a candidate, v3 archived.
  await registerModel(app, path.join(MODELS, "breast-cancer"), { name: "breast-cancer", alias: "production" });
  await registerModel(app, path.join(MODELS, "breast-cancer"), { name: "breast-cancer" });
  await registerModel(app, path.join(MODELS, "breast-cancer"), { name: "breast-cancer" });
  await app.registry.archive("breast-cancer", 3, { by: "tester" });
  service = createDeploymentService({ store: app.store, registry: app.registry, scoring: app.scoring, logger: app.logger, rollouts: () => app.rollouts, refreshMs: 50 });
  server = buildServer({ scoring: app.scoring, registry: app.registry, logger: false, adminToken: TOKEN, deploymentRef: (name) => service.modelOf(name) });
  void server.register(deploymentRoutes, { deployments: service });
  await server.listen({ port: 0, host: "127.0.0.1" });
  url = `http://127.0.0.1:${(server.server.address() as AddressInfo).port}`;
}, 120_000);

afterAll(async () => {
  service?.close();
  await server?.close();
  await app?.close();
  fs.rmSync(home, { recursive: true, force: true });
});

async function failure(call: Promise<unknown>): Promise<MlshipClientError> {
  try {
    await call;
  } catch (error) {
    expect(error).toBeInstanceOf(MlshipClientError);
    return error as MlshipClientError;
  }
  throw new Error("expected the call to fail");
}

const admin = () => new MlshipClient({ url, token: TOKEN, user: "reviewer" });

describe("deployment writes that fail half-way or race", () => {
  it("a rollout whose candidate is archived is refused naming rollout.candidate, and writes no setting", async () => {
    const error = await failure(
      admin().createDeployment({ name: "archived-candidate", model: "breast-cancer@production", settings: { max_queue: 7 }, rollout: { strategy: "canary", candidate: 3 } }),
    );
    expect(error).toMatchObject({ status: 409, field: "rollout.candidate" });
    // Nothing changed: neither the champion's nor the candidate's override, and no deployment.
    expect(await app.registry.getVersionSettings("breast-cancer", 1)).toEqual({});
    expect(await app.registry.getVersionSettings("breast-cancer", 3)).toEqual({});
    expect(await app.rollouts.active("breast-cancer", "production")).toBeUndefined();
    expect((await admin().listDeployments()).map((d) => d.name)).toEqual([]);
  });

  it("a rollout that fails to start undoes the settings the request wrote", async () => {
    // The rollout module refuses a guard the deployment's validation also refuses; to reach the rollout step, a
    // foreign rollout starts on the alias between the deployment's check and its own start.
    let foreign: string | undefined;
    const racing = createDeploymentService({
      store: app.store,
      registry: app.registry,
      scoring: app.scoring,
      logger: app.logger,
      rollouts: () =>
        new Proxy(app.rollouts, {
          get(target, key, receiver) {
            if (key === "start" && foreign === undefined) {
              return async (input: Parameters<typeof app.rollouts.start>[0]) => {
                foreign = (await target.start({ model: "breast-cancer", challenger: 2, percent: 0, by: "someone" })).id;
                return target.start(input);
              };
            }
            return Reflect.get(target, key, receiver) as unknown;
          },
        }),
    });
    try {
      await expect(
        racing.create({ name: "late", model: "breast-cancer@production", settings: { max_queue: 9 }, rollout: { strategy: "canary", candidate: 2 } }, { by: "lib" }),
      ).rejects.toMatchObject({ code: "MLSHIP_ERR_ROLLOUT_CONFLICT" });
      expect(await app.registry.getVersionSettings("breast-cancer", 1)).toEqual({});
      expect(await app.registry.getVersionSettings("breast-cancer", 2)).toEqual({});
      await expect(service.get("late")).rejects.toMatchObject({ code: "MLSHIP_ERR_DEPLOYMENT_NOT_FOUND" });
    } finally {
      racing.close();
      if (foreign !== undefined) await app.rollouts.abort(foreign, { by: "someone" });
    }
  });

  it("a PATCH that starts a rollout and a DELETE sent at once leave no rollout running without a deployment", async () => {
    await service.create({ name: "race", model: "breast-cancer@production" }, { by: "lib" });
    const results = await Promise.allSettled([
      service.update("race", { rollout: { strategy: "canary", candidate: 2, percent: 0 } }, { by: "lib" }),
      service.delete("race", { by: "lib" }),
    ]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled"]);
    await expect(service.get("race")).rejects.toMatchObject({ code: "MLSHIP_ERR_DEPLOYMENT_NOT_FOUND" });
    expect(await app.rollouts.active("breast-cancer", "production")).toBeUndefined();
  });

  it("two creates of the same name at once: exactly one 201 and one 409", async () => {
    const post = () =>
      fetch(`${url}/api/v1/deployments`, {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ name: "twin", model: "breast-cancer@production", settings: { max_queue: 11 } }),
      });
    const answers = await Promise.all([post(), post(), post()]);
    expect(answers.map((a) => a.status).sort()).toEqual([201, 409, 409]);
    const refused = answers.find((a) => a.status === 409) as Response;
    expect(await refused.json()).toMatchObject({ code: "MLSHIP_ERR_DEPLOYMENT_EXISTS", field: "name" });
    await admin().deleteDeployment("twin");
  });

  it("every write route needs the admin token, including one with an encoded path", async () => {
    await admin().createDeployment({ name: "guarded", model: "breast-cancer@production" });
    for (const [method, target] of [
      ["POST", "/api/v1/deployments"],
      ["PATCH", "/api/v1/deployments/guarded"],
      ["DELETE", "/api/v1/deployments/guarded"],
      ["DELETE", "/%61pi/v1/deployments/guarded"],
      ["PUT", "/api/v1/deployments/guarded"],
    ] as const) {
      const answer = await fetch(`${url}${target}`, { method, headers: { "content-type": "application/json" }, body: method === "DELETE" ? undefined : "{}" });
      expect([method, target, answer.status]).toEqual([method, target, 401]);
    }
    expect((await admin().getDeployment("guarded")).name).toBe("guarded");
    await admin().deleteDeployment("guarded");
  });
});

describe("PATCH semantics", () => {
  it("merges batching and cache one level deep and keeps fields left out", async () => {
    const client = admin();
    await client.createDeployment({ name: "merge", model: "breast-cancer@2", settings: { workers: 1, batching: { enabled: true, max_batch_size: 8 }, cache: { enabled: true, ttl_seconds: 30 } } });
    const patched = await client.updateDeployment("merge", { settings: { batching: { max_delay_ms: 3 }, cache: { ttl_seconds: 60 } } });
    expect(patched.settings).toEqual({ workers: 1, batching: { enabled: true, max_batch_size: 8, max_delay_ms: 3 }, cache: { enabled: true, ttl_seconds: 60 } });
    expect(patched.model).toBe("breast-cancer@2");
    // An empty body changes nothing.
    expect((await client.updateDeployment("merge", {})).settings).toEqual(patched.settings);
  });

  it("refuses a null it cannot honour (naming the field) instead of ignoring it", async () => {
    const client = admin();
    for (const [body, field] of [
      [{ settings: { workers: null } }, "settings.workers"],
      [{ settings: { batching: null } }, "settings.batching"],
      [{ settings: { cache: null } }, "settings.cache"],
      [{ settings: null }, "settings"],
      [{ settings: { max_queue: null } }, "settings.max_queue"],
      [{ model: null }, "model"],
    ] as const) {
      const error = await failure(client.updateDeployment("merge", body as never));
      expect([JSON.stringify(body), error.status, error.code, error.field]).toEqual([JSON.stringify(body), 400, "MLSHIP_ERR_INPUT_INVALID", field]);
    }
    expect((await client.getDeployment("merge")).settings).toMatchObject({ workers: 1 });
  });

  it("checks the merged settings: a max_batch_size below the stored preferred sizes names the request's field", async () => {
    const client = admin();
    await client.updateDeployment("merge", { settings: { batching: { max_batch_size: 16, preferred_batch_sizes: [8, 16] } } });
    const error = await failure(client.updateDeployment("merge", { settings: { batching: { max_batch_size: 4 } } }));
    expect(error).toMatchObject({ status: 400, code: "MLSHIP_ERR_INPUT_INVALID", field: "settings.batching.preferred_batch_sizes" });
    expect((await client.getVersionSettings("breast-cancer", 2)).override).toMatchObject({ batching: { max_batch_size: 16 } });
    await client.deleteDeployment("merge");
  });
});

describe("references, archived versions and the client", () => {
  it("takes models:/name@alias as a deployment's model and as predictModel's reference (URL-encoded)", async () => {
    const client = admin();
    const created = await client.createDeployment({ name: "uri", model: "models:/breast-cancer@production" });
    expect(created).toMatchObject({ model: "models:/breast-cancer@production", resolved: { model: "breast-cancer", version: 1 }, state: "ready" });
    const via = await client.predict("uri", example as never);
    expect(via.modelVersion).toBe("breast-cancer@1");
    const direct = await client.predictModel("models:/breast-cancer@production", example as never);
    expect(direct.predictions).toEqual(via.predictions);
    expect((await client.predictModel("breast-cancer@2", example as never)).modelVersion).toBe("breast-cancer@2");
    await client.deleteDeployment("uri");
  });

  it("answers through a deployment on an archived version exactly as the model's own route does", async () => {
    const client = admin();
    await client.createDeployment({ name: "old", model: "breast-cancer@2" });
    await app.registry.archive("breast-cancer", 2, { by: "tester" });
    try {
      const post = (target: string) => fetch(`${url}${target}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(example) });
      // The scoring service re-resolves references at most 1 s stale: wait until the model's route sees the archive.
      const deadline = Date.now() + 5000;
      while ((await post(`/v1/models/${encodeURIComponent("breast-cancer@2")}/invocations`)).status === 200 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
      }
      const viaDeployment = await post("/v1/deployments/old/invocations");
      const viaModel = await post(`/v1/models/${encodeURIComponent("breast-cancer@2")}/invocations`);
      expect(viaDeployment.status).toBe(viaModel.status);
      const a = (await viaDeployment.json()) as Record<string, unknown>;
      const b = (await viaModel.json()) as Record<string, unknown>;
      expect(Object.keys(a).sort()).toEqual(Object.keys(b).sort());
      if (viaDeployment.status >= 400) expect(a.mlship_code).toBe(b.mlship_code);
      expect(viaDeployment.status).toBe(404);
      expect(a).toMatchObject({ error_code: "RESOURCE_DOES_NOT_EXIST", mlship_code: "MLSHIP_ERR_MODEL_VERSION_NOT_FOUND", field: "version" });
      // The deployment still reads: failed, with why.
      const read = await client.getDeployment("old");
      expect(read).toMatchObject({ resolved: null, state: "failed" });
      expect(read.error).toContain("archived");
    } finally {
      await app.registry.unarchive("breast-cancer", 2, { by: "tester" });
      await client.deleteDeployment("old");
    }
  });

  it("reports a body that is not JSON (error or success) and a stalled body as MlshipClientError", async () => {
    const fake = http.createServer((request, response) => {
      if (request.url?.startsWith("/api/v1/deployments/proxy")) {
        response.writeHead(502, { "content-type": "text/html" }).end("<html><body>Bad Gateway</body></html>");
      } else if (request.url?.startsWith("/v1/deployments/html/")) {
        response.writeHead(200, { "content-type": "text/html" }).end("<html>login page</html>");
      } else {
        // Headers, a first chunk, then nothing.
        response.writeHead(200, { "content-type": "application/json" });
        response.write('{"deployments": [');
      }
    });
    await new Promise<void>((resolve) => fake.listen(0, "127.0.0.1", resolve));
    const base = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
    try {
      const client = new MlshipClient({ url: base, token: undefined, timeoutMs: 300 });
      const gateway = await failure(client.getDeployment("proxy"));
      expect(gateway).toMatchObject({ status: 502, code: "HTTP_502" });
      expect(gateway.message).toContain("Bad Gateway");
      const html = await failure(client.predict("html", [[1, 2]]));
      expect(html).toMatchObject({ status: 200, code: "MLSHIP_ERR_CLIENT_RESPONSE" });
      const stalled = await failure(client.listDeployments());
      expect(stalled).toMatchObject({ status: 0, code: "MLSHIP_ERR_CLIENT_NETWORK" });
      expect(stalled.message).toContain("300 ms");
      // The CLI on the same answers: `mlship: <message> [CODE]` on stderr, a non-zero exit, nothing on stdout.
      const cli = await runCli(["deployments", "get", "proxy", "--url", base], { env: { MLSHIP_HOME: home }, cwd: home });
      expect(cli.code).not.toBe(0);
      expect(cli.stdout).toBe("");
      expect(cli.stderr.trim()).toMatch(/^mlship: HTTP 502 from \S+\/api\/v1\/deployments\/proxy: <html>.*Bad Gateway.* \[MLSHIP_ERR_[A-Z_]+\]$/);
      const file = path.join(home, "rows.json");
      fs.writeFileSync(file, "[[1, 2]]");
      const htmlCli = await runCli(["deployments", "predict", "html", "--input", file, "--url", base], { env: { MLSHIP_HOME: home }, cwd: home });
      expect(htmlCli.code).not.toBe(0);
      expect(htmlCli.stderr.trim()).toMatch(/^mlship: POST \S+ answered 200 with a body that is not JSON.* \[MLSHIP_ERR_[A-Z_]+\]$/);
    } finally {
      fake.closeAllConnections();
      await new Promise((resolve) => fake.close(resolve));
    }
  });
});

describe("inference tokens through a deployment", () => {
  it("does not let a request past the token check when the deployment lookup fails once (the handler would look again)", async () => {
    const { createInferenceTokens } = await import("../../src/serve/index.js");
    const { MlshipError } = await import("../../src/core/index.js");
    await service.create({ name: "tokened", model: "breast-cancer@production" }, { by: "lib" });
    let calls = 0;
    // The real lookup, failing its first call as a store that drops a connection does.
    const flaky = (name: string): Promise<string> =>
      calls++ === 0 ? Promise.reject(new MlshipError("MLSHIP_ERR_STORE_UNAVAILABLE", "metadata store went away", { field: "store" })) : service.modelOf(name);
    const guarded = buildServer({
      scoring: app.scoring,
      registry: app.registry,
      logger: false,
      inferenceTokens: createInferenceTokens({ "breast-cancer": ["cancer-token-0a1b2c3d"] }),
      deploymentRef: flaky,
    });
    try {
      const answer = await guarded.inject({ method: "POST", url: "/v1/deployments/tokened/invocations", headers: { "content-type": "application/json" }, payload: JSON.stringify(example) });
      expect(answer.statusCode).not.toBe(200);
      expect(answer.statusCode).toBe(503);
      expect(answer.json()).toMatchObject({ mlship_code: "MLSHIP_ERR_STORE_UNAVAILABLE" });
      // The next request without a token: 401 as on the model's own route; an unknown deployment: 404.
      expect((await guarded.inject({ method: "POST", url: "/v1/deployments/tokened/invocations", headers: { "content-type": "application/json" }, payload: JSON.stringify(example) })).statusCode).toBe(401);
      const unknown = await guarded.inject({ method: "POST", url: "/v1/deployments/nope/invocations", headers: { "content-type": "application/json" }, payload: JSON.stringify(example) });
      expect(unknown.statusCode).toBe(404);
      expect(unknown.json()).toMatchObject({ mlship_code: "MLSHIP_ERR_DEPLOYMENT_NOT_FOUND" });
    } finally {
      await guarded.close();
      await service.delete("tokened", { by: "lib" });
    }
  });

  it("does not let an /invocations request past the token check when the default model's lookup fails once", async () => {
    const { createInferenceTokens } = await import("../../src/serve/index.js");
    const { MlshipError } = await import("../../src/core/index.js");
    let calls = 0;
    // The scoring service whose model list (how /invocations finds its one model) fails its first call.
    const scoring = new Proxy(app.scoring, {
      get(target, prop, receiver) {
        if (prop === "modelNames") {
          return () => (calls++ === 0 ? Promise.reject(new MlshipError("MLSHIP_ERR_STORE_UNAVAILABLE", "metadata store went away", { field: "store" })) : target.modelNames());
        }
        return Reflect.get(target, prop, receiver) as unknown;
      },
    });
    const guarded = buildServer({ scoring, registry: app.registry, logger: false, inferenceTokens: createInferenceTokens({ "breast-cancer": ["cancer-token-0a1b2c3d"] }) });
    try {
      const send = () => guarded.inject({ method: "POST", url: "/invocations", headers: { "content-type": "application/json" }, payload: JSON.stringify(example) });
      const first = await send();
      expect(first.statusCode).toBe(503);
      expect(first.json()).toMatchObject({ mlship_code: "MLSHIP_ERR_STORE_UNAVAILABLE" });
      expect((await send()).statusCode).toBe(401);
      const withToken = await guarded.inject({ method: "POST", url: "/invocations", headers: { "content-type": "application/json", authorization: "Bearer cancer-token-0a1b2c3d" }, payload: JSON.stringify(example) });
      expect(withToken.statusCode, withToken.body).toBe(200);
    } finally {
      await guarded.close();
    }
  });
});
