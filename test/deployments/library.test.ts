// The deployment service as a library (createDeploymentService over a real app) behind buildServer: a model with
// inference tokens stays protected when reached through a deployment, and a change made by another process sharing
// the store (its own service) reaches this server's inference route without a restart.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { createDeploymentService, deploymentRoutes, type DeploymentService } from "../../src/deployments/index.js";
import { buildServer, createInferenceTokens } from "../../src/serve/index.js";

const MODELS = fileURLToPath(new URL("../../examples/models", import.meta.url));
const CANCER_TOKEN = "cancer-token-0a1b2c3d";
const home = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-deployments-lib-"));
let app: Mlship;
let other: Mlship;
let service: DeploymentService;
let otherService: DeploymentService;
let server: ReturnType<typeof buildServer>;
const body = JSON.stringify(JSON.parse(fs.readFileSync(path.join(MODELS, "breast-cancer", "input_example.json"), "utf8")));

beforeAll(async () => {
  const config = defaultConfig({ home, user: "tester", "runtime.workers": 1, "log.level": "warn" });
  app = await createMlship(config);
  await registerModel(app, path.join(MODELS, "breast-cancer"), { name: "breast-cancer", alias: "production" });
  await registerModel(app, path.join(MODELS, "breast-cancer"), { name: "breast-cancer" });
  await registerModel(app, path.join(MODELS, "diabetes"), { name: "diabetes", alias: "production" });
  service = createDeploymentService({ store: app.store, registry: app.registry, scoring: app.scoring, logger: app.logger, rollouts: () => app.rollouts, refreshMs: 50 });
  server = buildServer({
    scoring: app.scoring,
    registry: app.registry,
    logger: false,
    inferenceTokens: createInferenceTokens({ "breast-cancer": [CANCER_TOKEN] }),
    deploymentRef: (name) => service.modelOf(name),
  });
  void server.register(deploymentRoutes, { deployments: service });
  // Another process on the same store (the CLI, a replica): its own app and service.
  other = await createMlship(config);
  otherService = createDeploymentService({ store: other.store, registry: other.registry, scoring: other.scoring, logger: other.logger, rollouts: () => other.rollouts });
}, 120_000);

afterAll(async () => {
  service?.close();
  otherService?.close();
  await server?.close();
  await other?.close();
  await app?.close();
  fs.rmSync(home, { recursive: true, force: true });
});

const invoke = (name: string, headers: Record<string, string> = {}) =>
  server.inject({ method: "POST", url: `/v1/deployments/${name}/invocations`, headers: { "content-type": "application/json", ...headers }, payload: body });

describe("deployments as a library", () => {
  it("keeps a model's inference tokens in force through a deployment", async () => {
    await service.create({ name: "cancer", model: "breast-cancer@production" }, { by: "lib" });
    const open = await invoke("cancer");
    expect(open.statusCode).toBe(401);
    expect(open.json()).toMatchObject({ mlship_code: "MLSHIP_ERR_AUTH_REQUIRED" });
    expect((await invoke("cancer", { authorization: "Bearer wrong" })).statusCode).toBe(403);
    const ok = await invoke("cancer", { authorization: `Bearer ${CANCER_TOKEN}` });
    expect(ok.statusCode).toBe(200);
    expect(ok.headers["mlship-model-version"]).toBe("breast-cancer@1");
    // The same answer as the model's own route.
    const direct = await server.inject({ method: "POST", url: "/v1/models/breast-cancer@production/invocations", headers: { "content-type": "application/json", authorization: `Bearer ${CANCER_TOKEN}` }, payload: body });
    expect(ok.json()).toEqual(direct.json());
  });

  it("serves a change another process made to the store on the next requests", async () => {
    await otherService.create({ name: "shared", model: "breast-cancer@1" }, { by: "replica" });
    const first = await invoke("shared", { authorization: `Bearer ${CANCER_TOKEN}` });
    expect(first.headers["mlship-model-version"]).toBe("breast-cancer@1");
    await otherService.update("shared", { model: "breast-cancer@2" }, { by: "replica" });
    const deadline = Date.now() + 3000;
    let answered = "";
    while (Date.now() < deadline) {
      answered = String((await invoke("shared", { authorization: `Bearer ${CANCER_TOKEN}` })).headers["mlship-model-version"]);
      if (answered === "breast-cancer@2") break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(answered).toBe("breast-cancer@2");
    // Deleted elsewhere: 404 here, in the MLflow error shape of the route.
    await otherService.delete("shared", { by: "replica" });
    await new Promise((r) => setTimeout(r, 100));
    const gone = await invoke("shared");
    expect(gone.statusCode).toBe(404);
    expect(gone.json()).toMatchObject({ error_code: "RESOURCE_DOES_NOT_EXIST", mlship_code: "MLSHIP_ERR_DEPLOYMENT_NOT_FOUND" });
  });

  it("refuses a rollout on a reference that names a fixed version, naming the field, and changes nothing", async () => {
    await expect(
      service.create({ name: "pinned", model: "breast-cancer@2", rollout: { strategy: "canary", candidate: 1 } }, { by: "lib" }),
    ).rejects.toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "rollout" });
    await expect(service.get("pinned")).rejects.toMatchObject({ code: "MLSHIP_ERR_DEPLOYMENT_NOT_FOUND" });
    await expect(
      service.create({ name: "cross", model: "breast-cancer@production", rollout: { strategy: "shadow", candidate: "diabetes@production" } }, { by: "lib" }),
    ).rejects.toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "rollout.candidate" });
    await expect(
      service.create({ name: "same", model: "breast-cancer@production", rollout: { strategy: "canary", candidate: 1 } }, { by: "lib" }),
    ).rejects.toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "rollout.candidate" });
    // A rollout someone else started on the alias: 409 before any setting is written.
    const foreign = await app.rollouts.start({ model: "breast-cancer", challenger: 2, percent: 0, by: "someone" });
    try {
      await expect(
        service.create({ name: "late", model: "breast-cancer@production", settings: { max_queue: 7 }, rollout: { strategy: "canary", candidate: 2 } }, { by: "lib" }),
      ).rejects.toMatchObject({ code: "MLSHIP_ERR_ROLLOUT_CONFLICT", field: "rollout" });
      expect(await app.registry.getVersionSettings("breast-cancer", 1)).toEqual({});
    } finally {
      await app.rollouts.abort(foreign.id, { by: "someone" });
    }
    expect((await service.list()).map((d) => d.name)).toEqual(["cancer"]);
  });
});
