// The registry read routes (GET /api/v1/models, /models/{name}, /models/{name}/versions/{version}) and
// GET /api/v1/server on the real server (buildServer + the plugins `mlship serve` mounts) over a real SQLite home
// with the example models: lists, details, package files, alias history, audit, load state, rollouts, 404s/400s,
// and that the new routes do not shadow the other /api/v1/models/... routes.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { feedbackRoutes } from "../../src/feedback/index.js";
import { MonitorStore, monitorRoutes } from "../../src/monitor/index.js";
import { listPackageFiles, registryRoutes } from "../../src/registry/index.js";
import type { AliasEvent } from "../../src/registry/index.js";
import { rolloutRoutes } from "../../src/rollout/index.js";
import { buildServer, serverInfoRoutes } from "../../src/serve/index.js";
import type { ModelDetail, ModelSummary, ServerInfo, TrafficTotals, VersionDetail } from "../../src/ui/contract.js";

const EXAMPLES = fileURLToPath(new URL("../../examples/models/", import.meta.url));
const BC = "breast-cancer";

const home = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-registry-http-"));
let app: Mlship;
let server: ReturnType<typeof buildServer>;
let bare: ReturnType<typeof buildServer>;
let rolloutId: string;
const trafficCalls: [string, string | undefined, number][] = [];

function mvTotals(requests: number, windowSeconds: number): TrafficTotals {
  return { windowSeconds, requests, requestsPerSecond: requests / windowSeconds, errors: 1, errorRate: 1 / requests, p50Ms: 2, p99Ms: 9 };
}

beforeAll(async () => {
  app = await createMlship(defaultConfig({ home, user: "tester", "runtime.workers": 1, "log.level": "warn" }));
  // breast-cancer: v1 (production), v2, v3; production moves 1 -> 2, staging is set on 3 then deleted; v1 archived.
  await registerModel(app, path.join(EXAMPLES, "breast-cancer"), { name: BC, alias: "production", reason: "first" });
  await registerModel(app, path.join(EXAMPLES, "breast-cancer"), { name: BC, description: "retrained" });
  await registerModel(app, path.join(EXAMPLES, "breast-cancer"), { name: BC });
  await app.registry.setAlias(BC, "production", 2, { by: "alice", reason: "better recall" });
  await app.registry.setAlias(BC, "staging", 3, { by: "bob" });
  await app.registry.deleteAlias(BC, "staging", { by: "bob" });
  await app.registry.archive(BC, 1, { by: "carol" });
  await registerModel(app, path.join(EXAMPLES, "diabetes"), { name: "diabetes", alias: "production" });
  await registerModel(app, path.join(EXAMPLES, "digits"), { name: "digits", alias: "production" });
  const rollout = await app.rollouts.start({ model: BC, challenger: 3, mode: "canary", percent: 25, by: "dave", reason: "try v3" });
  rolloutId = rollout.id;

  server = buildServer({ scoring: app.scoring, registry: app.registry, logger: false });
  // As `mlship serve` mounts them: the other plugins with /api/v1/models/{name}/... routes next to the registry's.
  await server.register(monitorRoutes, { store: new MonitorStore(app.store), registry: app.registry, scoring: app.scoring });
  await server.register(feedbackRoutes, { feedback: app.feedback, registry: app.registry });
  await server.register(rolloutRoutes, { rollouts: app.rollouts, registry: app.registry });
  await server.register(registryRoutes, {
    registry: app.registry,
    artifacts: app.artifacts,
    scoring: app.scoring,
    audit: app.audit,
    traffic: {
      totals: (model, version, windowSeconds) => {
        trafficCalls.push([model, version, windowSeconds]);
        return mvTotals(version === undefined ? 30 : 10, windowSeconds);
      },
    },
    activeRollout: async (model) => {
      const [active] = await app.rollouts.list({ model, state: "active", limit: 1 });
      return active === undefined ? null : { id: active.id, mode: active.mode, champion: active.champion, challenger: active.challenger, percent: active.percent };
    },
  });
  await server.register(serverInfoRoutes, {
    adminToken: true,
    defaultModel: `${BC}@production`,
    features: { liveMonitoring: false, predictionLog: true, rollouts: true, batch: true, streams: false },
    trafficIntervalSeconds: 2,
    startedAt: new Date(Date.now() - 5000),
  });
  await server.ready();

  // Only the required option: no traffic, rollouts, audit, scoring or artifacts.
  bare = buildServer({ scoring: app.scoring, registry: app.registry, logger: false });
  await bare.register(registryRoutes, { registry: app.registry });
  await bare.ready();
}, 120_000);

afterAll(async () => {
  await server?.close();
  await bare?.close();
  await app?.close();
  fs.rmSync(home, { recursive: true, force: true });
});

describe("GET /api/v1/models", () => {
  it("lists every model sorted by name, versions newest first with archived ones, aliases, traffic and the active rollout", async () => {
    const answer = await server.inject("/api/v1/models");
    expect(answer.statusCode).toBe(200);
    const { models } = answer.json<{ models: ModelSummary[] }>();
    expect(models.map((m) => m.name)).toEqual([BC, "diabetes", "digits"]);
    const bc = models[0] as ModelSummary;
    expect(bc).toMatchObject({ name: BC, aliases: { production: 2 }, latestVersion: 3, tags: {} });
    expect(bc.versions.map((v) => [v.version, v.status, v.aliases, v.flavor])).toEqual([
      [3, "ready", [], "onnx"],
      [2, "ready", ["production"], "onnx"],
      [1, "archived", [], "onnx"],
    ]);
    expect(bc.versions[0]?.createdBy).toBe("tester");
    expect(Date.parse(bc.versions[0]?.createdAt ?? "")).not.toBeNaN();
    expect(bc.rollout).toEqual({ id: rolloutId, mode: "canary", champion: 2, challenger: 3, percent: 25 });
    expect(models[1]?.rollout).toBeNull();
    // Totals per model (all versions) and per version, over 60 s windows.
    expect(bc.traffic).toEqual(mvTotals(30, 60));
    expect(bc.versions[1]?.traffic).toEqual(mvTotals(10, 60));
    expect(trafficCalls).toContainEqual([BC, undefined, 60]);
    expect(trafficCalls).toContainEqual([BC, "2", 60]);
    expect(trafficCalls).toContainEqual(["digits", "1", 60]);
  });

  it("shows which versions are loaded in this server's runtime", async () => {
    const before = (await server.inject("/api/v1/models")).json<{ models: ModelSummary[] }>();
    expect(before.models.find((m) => m.name === "diabetes")?.versions[0]?.loaded).toBeNull();
    await app.scoring.load("diabetes@1");
    const after = (await server.inject("/api/v1/models")).json<{ models: ModelSummary[] }>();
    expect(after.models.find((m) => m.name === "diabetes")?.versions[0]?.loaded).toBe("ready");
    expect(after.models.find((m) => m.name === "digits")?.versions[0]?.loaded).toBeNull();
  });

  it("gives zero traffic with null latencies and no rollout without those options", async () => {
    const { models } = (await bare.inject("/api/v1/models")).json<{ models: ModelSummary[] }>();
    const bc = models.find((m) => m.name === BC) as ModelSummary;
    const zero = { windowSeconds: 60, requests: 0, requestsPerSecond: 0, errors: 0, errorRate: 0, p50Ms: null, p99Ms: null };
    expect(bc.traffic).toEqual(zero);
    expect(bc.versions.every((v) => JSON.stringify(v.traffic) === JSON.stringify(zero))).toBe(true);
    expect(bc.rollout).toBeNull();
    expect(bc.versions.every((v) => v.loaded === null || v.loaded === "ready")).toBe(true);
  });
});

describe("GET /api/v1/models/{name}", () => {
  it("adds the dates and every alias move, newest first", async () => {
    const answer = await server.inject(`/api/v1/models/${BC}`);
    expect(answer.statusCode).toBe(200);
    const detail = answer.json<ModelDetail>();
    expect(detail.name).toBe(BC);
    expect(detail.versions).toHaveLength(3);
    expect(Date.parse(detail.createdAt)).not.toBeNaN();
    expect(Date.parse(detail.updatedAt)).toBeGreaterThanOrEqual(Date.parse(detail.createdAt));
    expect(detail.aliasHistory.map((e) => [e.alias, e.action, e.from, e.to, e.by])).toEqual([
      ["staging", "delete", 3, null, "bob"],
      ["staging", "set", null, 3, "bob"],
      ["production", "set", 1, 2, "alice"],
      ["production", "set", null, 1, "tester"],
    ]);
    expect(detail.aliasHistory[2]?.reason).toBe("better recall");
  });

  it("answers 404 MODEL_NOT_FOUND for an unknown model", async () => {
    const answer = await server.inject("/api/v1/models/no-such-model");
    expect(answer.statusCode).toBe(404);
    expect(answer.json()).toMatchObject({ code: "MLSHIP_ERR_MODEL_NOT_FOUND", field: "name" });
    expect(answer.json<{ error: string }>().error).toContain("no-such-model");
  });

  it("follows the registry: a new alias move shows at once", async () => {
    await app.registry.setAlias("digits", "staging", 1, { by: "erin" });
    const detail = (await server.inject("/api/v1/models/digits")).json<ModelDetail>();
    expect(detail.aliases).toEqual({ production: 1, staging: 1 });
    expect(detail.versions[0]?.aliases).toEqual(["production", "staging"]);
    expect(detail.aliasHistory[0]).toMatchObject({ alias: "staging", to: 1, by: "erin" });
  });
});

describe("GET /api/v1/models/{name}/versions/{version}", () => {
  it("has the record with its manifest, the package files with sizes, settings, alias moves and audit entries", async () => {
    const answer = await server.inject(`/api/v1/models/${BC}/versions/2`);
    expect(answer.statusCode).toBe(200);
    const detail = answer.json<VersionDetail>();
    expect(detail.record).toMatchObject({ name: BC, version: 2, status: "ready", description: "retrained", aliases: ["production"] });
    expect(detail.record.manifest.flavor).toBe("onnx");
    expect(detail.record.manifest.signature.inputs.length).toBeGreaterThan(0);

    const stored = app.artifacts.path(detail.record.digest);
    const names = detail.files.map((f) => f.path);
    expect(names).toEqual([...names].sort());
    expect(names).toContain("mlship.yaml");
    expect(names).toContain("model.onnx");
    for (const file of detail.files) expect(file.bytes, file.path).toBe(fs.statSync(path.join(stored, ...file.path.split("/"))).size);
    expect(detail.files.find((f) => f.path === "model.onnx")?.bytes).toBe(fs.statSync(path.join(EXAMPLES, "breast-cancer", "model.onnx")).size);

    const settings = detail.settings as { settings: { max_queue: number; batching: Record<string, unknown> }; sources: Record<string, string>; override: unknown };
    expect(settings.settings.max_queue).toBeGreaterThan(0);
    expect(settings.sources["batching.max_batch_size"]).toBeDefined();
    expect(settings.override).toEqual({});

    expect(detail.aliasHistory.map((e: AliasEvent) => [e.alias, e.from, e.to])).toEqual([["production", 1, 2]]);
    expect(detail.audit.map((e) => [e.action, e.version])).toEqual([["alias.set", 2]]);
    expect(detail.audit[0]).toMatchObject({ actor: "alice", model: BC, reason: "better recall" });
  });

  it("shows the version's rollout and alias moves in its audit entries, newest first", async () => {
    const detail = (await server.inject(`/api/v1/models/${BC}/versions/3`)).json<VersionDetail>();
    expect(detail.audit.map((e) => e.action)).toEqual(["rollout.start", "alias.delete", "alias.set"]);
    expect(detail.audit[0]).toMatchObject({ actor: "dave", rolloutId, reason: "try v3", version: 3 });
    expect(detail.aliasHistory.map((e) => [e.alias, e.action])).toEqual([
      ["staging", "delete"],
      ["staging", "set"],
    ]);
  });

  it("shows an archived version with its status, files, and the alias moves to and away from it", async () => {
    const answer = await server.inject(`/api/v1/models/${BC}/versions/1`);
    expect(answer.statusCode).toBe(200);
    const detail = answer.json<VersionDetail>();
    expect(detail.record.status).toBe("archived");
    expect(detail.record.archivedAt).not.toBeNull();
    expect(detail.files.map((f) => f.path)).toContain("model.onnx");
    expect(detail.loaded).toBeNull();
    expect(detail.aliasHistory.map((e) => [e.alias, e.from, e.to])).toEqual([
      ["production", 1, 2],
      ["production", null, 1],
    ]);
    // Both the move to it and the move away from it (details.from) are its audit entries.
    expect(detail.audit.map((e) => [e.action, e.version])).toEqual([
      ["alias.set", 2],
      ["alias.set", 1],
    ]);
  });

  it("lists files of archived versions even without an artifact store option (ready ones through resolve)", async () => {
    const ready = (await bare.inject(`/api/v1/models/${BC}/versions/2`)).json<VersionDetail>();
    expect(ready.files.map((f) => f.path)).toContain("model.onnx");
    expect(ready.settings).toBeNull();
    expect(ready.audit).toEqual([]);
    const archived = await bare.inject(`/api/v1/models/${BC}/versions/1`);
    expect(archived.statusCode).toBe(200);
    expect(archived.json<VersionDetail>().files).toEqual([]);
  });

  it("says loaded once the version is loaded", async () => {
    await app.scoring.load(`${BC}@2`);
    expect((await server.inject(`/api/v1/models/${BC}/versions/2`)).json<VersionDetail>().loaded).toBe("ready");
  });

  it("answers 404 for an unknown model or version and 400 naming version for a bad one", async () => {
    const noModel = await server.inject("/api/v1/models/nope/versions/1");
    expect(noModel.statusCode).toBe(404);
    expect(noModel.json()).toMatchObject({ code: "MLSHIP_ERR_MODEL_NOT_FOUND" });
    const noVersion = await server.inject(`/api/v1/models/${BC}/versions/9`);
    expect(noVersion.statusCode).toBe(404);
    expect(noVersion.json()).toMatchObject({ code: "MLSHIP_ERR_MODEL_VERSION_NOT_FOUND", field: "version" });
    for (const bad of ["abc", "0", "-1", "1.5", "production"]) {
      const answer = await server.inject(`/api/v1/models/${BC}/versions/${bad}`);
      expect(answer.statusCode, bad).toBe(400);
      expect(answer.json(), bad).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "version" });
    }
  });
});

describe("next to the other /api/v1/models/{name}/... routes", () => {
  it("leaves quality, rollout-policy, settings, monitor and rollback to their own routes", async () => {
    const quality = await server.inject(`/api/v1/models/${BC}/quality`);
    expect(quality.statusCode).toBe(200);
    expect(quality.json()).toMatchObject({ model: BC });
    expect(quality.json()).not.toHaveProperty("latestVersion");
    const policy = await server.inject(`/api/v1/models/${BC}/rollout-policy`);
    expect(policy.statusCode).toBe(200);
    expect(policy.json()).toMatchObject({ model: BC, onNewVersion: "manual" });
    const settings = await server.inject(`/api/v1/models/${BC}/versions/2/settings`);
    expect(settings.statusCode).toBe(200);
    expect(settings.json()).toMatchObject({ model: BC, version: 2 });
    expect(settings.json()).not.toHaveProperty("record");
    const service = await server.inject(`/api/v1/models/${BC}/versions/2/monitor/service`);
    expect(service.statusCode).toBe(200);
    expect(service.json()).toMatchObject({ model: BC, version: 2 });
    const reference = await server.inject(`/api/v1/models/${BC}/versions/2/monitor/reference`);
    expect(reference.statusCode).toBe(404);
    expect(reference.json<{ code: string }>().code).toBe("MLSHIP_ERR_MONITOR_NO_REFERENCE");
    // A path below a version that no route has is a 404 for the route, not the version detail.
    const unknown = await server.inject(`/api/v1/models/${BC}/versions/2/nothing-here`);
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json<{ code: string }>().code).toBe("MLSHIP_ERR_SERVE_ROUTE_NOT_FOUND");
    // The model routes are read-only: a POST to them is not a route.
    const post = await server.inject({ method: "POST", url: `/api/v1/models/${BC}`, payload: {} });
    expect(post.statusCode).toBe(404);
  });
});

describe("GET /api/v1/server", () => {
  it("says what the server is: version, uptime, whether actions need a token, the wired areas", async () => {
    const answer = await server.inject("/api/v1/server");
    expect(answer.statusCode).toBe(200);
    const info = answer.json<ServerInfo>();
    const pkg = JSON.parse(fs.readFileSync(fileURLToPath(new URL("../../package.json", import.meta.url)), "utf8")) as { version: string };
    expect(info).toMatchObject({
      name: "mlship",
      version: pkg.version,
      auth: { adminToken: true },
      defaultModel: `${BC}@production`,
      features: { liveMonitoring: false, predictionLog: true, rollouts: true, batch: true, streams: false },
      trafficIntervalSeconds: 2,
    });
    expect(info.uptimeSeconds).toBeGreaterThanOrEqual(5);
    expect(Date.now() - Date.parse(info.startedAt)).toBeGreaterThanOrEqual(5000);
  });
});

describe("listPackageFiles", () => {
  it("lists regular files in nested folders and never follows a symbolic link out of the package", async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-pkg-files-"));
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-outside-"));
    try {
      fs.writeFileSync(path.join(root, "mlship.yaml"), "name: x\n");
      fs.mkdirSync(path.join(root, "data", "deep"), { recursive: true });
      fs.writeFileSync(path.join(root, "data", "deep", "weights.bin"), Buffer.alloc(1234));
      fs.writeFileSync(path.join(outside, "secret.txt"), "do not list me");
      fs.mkdirSync(path.join(outside, "dir"));
      fs.writeFileSync(path.join(outside, "dir", "inner.txt"), "nor me");
      fs.symlinkSync(path.join(outside, "secret.txt"), path.join(root, "link.txt"));
      fs.symlinkSync(path.join(outside, "dir"), path.join(root, "linked-dir"));
      expect(await listPackageFiles(root)).toEqual([
        { path: "data/deep/weights.bin", bytes: 1234 },
        { path: "mlship.yaml", bytes: 8 },
      ]);
      expect(await listPackageFiles(path.join(root, "missing"))).toEqual([]);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
      fs.rmSync(outside, { recursive: true, force: true });
    }
  });
});
