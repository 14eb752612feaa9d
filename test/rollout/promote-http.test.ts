// POST /api/v1/models/{name}/promote on the server's own composition (startFeedbackLoop): a gate on a real labelled
// holdout file (the breast-cancer fixture's prod split), then the alias move or a canary, every step audited.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, startFeedbackLoop, type FeedbackLoop, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { rolloutRoutes, type AuditEntry, type GateResult, type PromoteVersionResult } from "../../src/rollout/index.js";
import { buildServer } from "../../src/serve/index.js";
import { fixture } from "../cli/helpers.js";

const EXAMPLE = fileURLToPath(new URL("../../examples/models/breast-cancer", import.meta.url));
const MODEL = "breast-cancer";
const holdout = path.join(fixture("breast_cancer_mlp").dir, "prod.csv");

const home = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-promote-http-"));
let app: Mlship;
let loop: FeedbackLoop;
let server: ReturnType<typeof buildServer>;

beforeAll(async () => {
  app = await createMlship(defaultConfig({ home, user: "tester", "runtime.workers": 1, "log.level": "warn" }));
  await registerModel(app, EXAMPLE, { name: MODEL, alias: "production" });
  await registerModel(app, EXAMPLE, { name: MODEL });
  await registerModel(app, EXAMPLE, { name: MODEL });
  loop = await startFeedbackLoop(app, { serverUrl: null });
  server = buildServer({ scoring: app.scoring, registry: app.registry, logger: false });
  await server.register(rolloutRoutes, { rollouts: loop.rollouts, registry: app.registry, user: "server-user", promote: loop.promote });
  await server.ready();
}, 60_000);

afterAll(async () => {
  await server?.close();
  await loop?.close();
  await app?.close();
  fs.rmSync(home, { recursive: true, force: true });
});

describe("POST /api/v1/models/{name}/promote", () => {
  it("gates a version on a holdout file, then moves the alias (audited)", async () => {
    const passed = await server.inject({
      method: "POST",
      url: `/api/v1/models/${MODEL}/promote`,
      headers: { "x-mlship-user": "alice" },
      payload: { version: 2, holdout, require: ["accuracy >= 0.9"], margin: { accuracy: 0.01 }, reason: "same weights, checked" },
    });
    expect(passed.statusCode).toBe(200);
    const body = passed.json<PromoteVersionResult>();
    // 138 of the 143 prod rows are right (the fixture's documented prod accuracy 0.965035), for both versions.
    expect(body.gate).toMatchObject({ passed: true, candidate: 2, current: 1, rows: 143 });
    expect(body.gate?.candidateMetrics.accuracy).toBeCloseTo(138 / 143, 9);
    expect(body.alias).toMatchObject({ name: MODEL, alias: "production", from: 1, to: 2 });
    expect(body.rollout).toBeNull();
    expect((await app.registry.resolve(`${MODEL}@production`)).version.version).toBe(2);
    const audit = await loop.rollouts.audit.list({ model: MODEL });
    expect(audit.filter((e: AuditEntry) => e.action === "gate.pass").map((e) => [e.actor, e.version])).toEqual([["alice", 2]]);
  });

  it("answers 422 with every check when the gate fails, and leaves the alias", async () => {
    const failed = await server.inject({ method: "POST", url: `/api/v1/models/${MODEL}/promote`, payload: { version: 3, holdout, require: ["accuracy >= 0.99"] } });
    expect(failed.statusCode).toBe(422);
    const body = failed.json<{ code: string; gate: GateResult }>();
    expect(body.code).toBe("MLSHIP_ERR_ROLLOUT_GATE_FAILED");
    expect(body.gate).toMatchObject({ passed: false, candidate: 3, current: 2, rows: 143 });
    expect(body.gate.checks.some((c) => !c.passed && c.check.includes("accuracy"))).toBe(true);
    expect((await app.registry.resolve(`${MODEL}@production`)).version.version).toBe(2);
  });

  it("starts a canary instead of moving the alias when asked", async () => {
    const started = await server.inject({ method: "POST", url: `/api/v1/models/${MODEL}/promote`, payload: { version: 3, canary: 25 } });
    expect(started.statusCode).toBe(200);
    expect(started.json<PromoteVersionResult>().rollout).toMatchObject({ model: MODEL, champion: 2, challenger: 3, percent: 25, state: "active", startedBy: "server-user" });
    expect((await app.registry.resolve(`${MODEL}@production`)).version.version).toBe(2);
  });

  it("refuses bad bodies naming the field", async () => {
    const cases: Array<[unknown, string]> = [
      [{ version: "2" }, "version"],
      [{ version: 2, require: ["accuracy >= 0.9"] }, "holdout"],
      [{ version: 2, holdout, require: ["accuracy is high"] }, "require"],
      [{ version: 2, holdout, margin: { accuracy: -1 } }, "margin.accuracy"],
      [{ version: 2, canary: 150 }, "canary"],
      [{ version: 2, colour: "blue" }, "colour"],
    ];
    for (const [payload, field] of cases) {
      const answer = await server.inject({ method: "POST", url: `/api/v1/models/${MODEL}/promote`, payload: payload as object });
      expect(answer.statusCode, JSON.stringify(payload)).toBe(400);
      expect(answer.json<{ field: string }>().field, JSON.stringify(payload)).toBe(field);
    }
    const missing = await server.inject({ method: "POST", url: `/api/v1/models/${MODEL}/promote`, payload: { version: 9 } });
    expect(missing.statusCode).toBe(404);
  });
});
