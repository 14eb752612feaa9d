// The rollout REST routes on the real server (buildServer + rolloutRoutes, as `mlship serve` mounts them) over a
// real app: start, list, status, promote, abort, rollback, policies and the audit log, and the error bodies.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { rolloutRoutes } from "../../src/rollout/http.js";
import { createRolloutService } from "../../src/rollout/service.js";
import type { AuditEntry, Rollout, RolloutPolicy, RolloutService, RolloutStatus } from "../../src/rollout/types.js";
import { buildServer } from "../../src/serve/index.js";

const EXAMPLE = fileURLToPath(new URL("../../examples/models/breast-cancer", import.meta.url));
const MODEL = "breast-cancer";

const home = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-rollout-http-"));
let app: Mlship;
let rollouts: RolloutService;
let server: ReturnType<typeof buildServer>;
let row: Record<string, number>;

beforeAll(async () => {
  app = await createMlship(defaultConfig({ home, user: "tester", "runtime.workers": 1, "log.level": "warn" }));
  await registerModel(app, EXAMPLE, { name: MODEL, alias: "production" });
  await registerModel(app, EXAMPLE, { name: MODEL });
  rollouts = createRolloutService({ store: app.store, registry: app.registry, scoring: app.scoring, logger: app.logger, refreshMs: 0 });
  server = buildServer({ scoring: app.scoring, registry: app.registry, logger: false });
  await server.register(rolloutRoutes, { rollouts, registry: app.registry, user: "server-user" });
  await server.ready();
  const example = JSON.parse(fs.readFileSync(path.join(EXAMPLE, "input_example.json"), "utf8")) as { dataframe_split: { columns: string[]; data: number[][] } };
  const { columns, data } = example.dataframe_split;
  row = Object.fromEntries(columns.map((c, i) => [c, (data[0] as number[])[i] as number]));
}, 60_000);

afterAll(async () => {
  await server?.close();
  await rollouts?.close();
  await app?.close();
  fs.rmSync(home, { recursive: true, force: true });
});

describe("rollout REST routes", () => {
  it("refuses a business key longer than 256 characters, naming the header", async () => {
    const answer = await server.inject({ method: "POST", url: `/v1/models/${MODEL}/invocations`, headers: { "x-mlship-key": "k".repeat(257) }, payload: { dataframe_records: [row] } });
    expect(answer.statusCode).toBe(400);
    expect(answer.json()).toMatchObject({ field: "x-mlship-key" });
  });

  it("starts a canary (201), lists it, shows its status with live counters, and aborts it", async () => {
    const started = await server.inject({
      method: "POST",
      url: "/api/v1/rollouts",
      headers: { "x-mlship-user": "alice" },
      payload: { model: MODEL, challenger: 2, mode: "canary", percent: 100, guard: { minRequests: 5 }, reason: "try it" },
    });
    expect(started.statusCode).toBe(201);
    const rollout = started.json<Rollout>();
    expect(rollout).toMatchObject({ model: MODEL, alias: "production", champion: 1, challenger: 2, percent: 100, sticky: true, state: "active", startedBy: "alice", reason: "try it", guard: { minRequests: 5 } });

    // Served traffic follows the rollout (the scoring route of the same server).
    const scored = await server.inject({ method: "POST", url: `/v1/models/${MODEL}/invocations`, headers: { "x-mlship-key": "c-1" }, payload: { dataframe_records: [row] } });
    expect(scored.statusCode).toBe(200);
    expect(scored.headers["mlship-model-version"]).toBe(`${MODEL}@2`);
    for (let i = 0; i < 5; i++) await app.scoring.score(MODEL, { kind: "records", records: [row] }, { key: `k-${i}` });

    const conflict = await server.inject({ method: "POST", url: "/api/v1/rollouts", payload: { model: MODEL, challenger: 2 } });
    expect(conflict.statusCode).toBe(409);
    expect(conflict.json()).toMatchObject({ code: "MLSHIP_ERR_ROLLOUT_CONFLICT", field: "model" });

    const list = await server.inject(`/api/v1/rollouts?model=${MODEL}&state=active`);
    expect(list.statusCode).toBe(200);
    expect(list.json<{ rollouts: Rollout[] }>().rollouts.map((r) => r.id)).toEqual([rollout.id]);

    const status = await server.inject(`/api/v1/rollouts/${rollout.id}`);
    expect(status.statusCode).toBe(200);
    const body = status.json<RolloutStatus>();
    expect(body.rollout.id).toBe(rollout.id);
    expect(body.variants.map((v) => [v.variant, v.version, v.requests, v.errors])).toEqual([
      ["champion", 1, 0, 0],
      ["challenger", 2, 6, 0],
    ]);
    expect(body.verdict.action).toBe("none");

    const aborted = await server.inject({ method: "POST", url: `/api/v1/rollouts/${rollout.id}/abort`, payload: { reason: "enough" } });
    expect(aborted.statusCode).toBe(200);
    expect(aborted.json<Rollout>()).toMatchObject({ state: "aborted", endedBy: "server-user", endReason: "enough" });
    const twice = await server.inject({ method: "POST", url: `/api/v1/rollouts/${rollout.id}/promote` });
    expect(twice.statusCode).toBe(409);
    expect(twice.json<{ code: string }>().code).toBe("MLSHIP_ERR_ROLLOUT_CONFLICT");
    const missing = await server.inject(`/api/v1/rollouts/no-such-rollout`);
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({ code: "MLSHIP_ERR_ROLLOUT_NOT_FOUND", field: "id" });
  });

  it("promotes (the alias moves) and rolls back through the model route", async () => {
    const started = await server.inject({ method: "POST", url: "/api/v1/rollouts", payload: { model: MODEL, challenger: 2, mode: "ab", percent: 50 } });
    const rollout = started.json<Rollout>();
    const promoted = await server.inject({ method: "POST", url: `/api/v1/rollouts/${rollout.id}/promote`, headers: { "x-mlship-user": "bob" }, payload: { reason: "better" } });
    expect(promoted.statusCode).toBe(200);
    expect(promoted.json<Rollout>()).toMatchObject({ state: "promoted", endedBy: "bob" });
    expect((await app.registry.getModel(MODEL)).aliases.production).toBe(2);

    const rollback = await server.inject({ method: "POST", url: `/api/v1/models/${MODEL}/rollback`, payload: { reason: "incident" } });
    expect(rollback.statusCode).toBe(200);
    expect(rollback.json()).toEqual({ model: MODEL, alias: "production", from: 2, to: 1, rollout: null });
    expect((await app.registry.getModel(MODEL)).aliases.production).toBe(1);
    const unknown = await server.inject({ method: "POST", url: "/api/v1/models/nope/rollback" });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json<{ code: string }>().code).toBe("MLSHIP_ERR_MODEL_NOT_FOUND");
  });

  it("validates bodies and queries, naming the field", async () => {
    const cases: [unknown, string][] = [
      [{ challenger: 2 }, "model"],
      [{ model: MODEL, challenger: "two" }, "challenger"],
      [{ model: MODEL, challenger: 2, percent: -5 }, "percent"],
      [{ model: MODEL, challenger: 2, mode: "dark" }, "mode"],
      [{ model: MODEL, challenger: 2, sticky: "yes" }, "sticky"],
      [{ model: MODEL, challenger: 2, guard: { window: "forever" } }, "guard.window"],
      [{ model: MODEL, challenger: 2, colour: "red" }, "colour"],
      [[1, 2], "body"],
    ];
    for (const [payload, field] of cases) {
      const res = await server.inject({ method: "POST", url: "/api/v1/rollouts", payload: payload as object });
      expect(res.statusCode, JSON.stringify(payload)).toBe(400);
      expect(res.json(), JSON.stringify(payload)).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field });
    }
    const state = await server.inject("/api/v1/rollouts?state=paused");
    expect(state.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "state" });
    const limit = await server.inject("/api/v1/audit?limit=lots");
    expect(limit.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "limit" });
    const action = await server.inject("/api/v1/audit?action=deploy");
    expect(action.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "action" });
    const abortBody = await server.inject({ method: "POST", url: "/api/v1/rollouts/x/abort", payload: { reason: 5 } });
    expect(abortBody.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "reason" });
  });

  it("reads and replaces a model's rollout policy", async () => {
    const initial = await server.inject(`/api/v1/models/${MODEL}/rollout-policy`);
    expect(initial.statusCode).toBe(200);
    expect(initial.json<RolloutPolicy>()).toEqual({ model: MODEL, onNewVersion: "manual", gate: null, canary: { mode: "canary", percent: 10, sticky: true, guard: {} }, retrain: null });
    const put = await server.inject({
      method: "PUT",
      url: `/api/v1/models/${MODEL}/rollout-policy`,
      headers: { "x-mlship-user": "carol" },
      payload: { onNewVersion: "auto", canary: { percent: 25, guard: { autoPromote: true, promoteAfter: "2h" } }, retrain: { command: "python retrain.py" } },
    });
    expect(put.statusCode).toBe(200);
    const expected: RolloutPolicy = {
      model: MODEL,
      onNewVersion: "auto",
      gate: null,
      canary: { mode: "canary", percent: 25, sticky: true, guard: { autoPromote: true, promoteAfter: "2h" } },
      retrain: { command: "python retrain.py" },
    };
    expect(put.json()).toEqual(expected);
    expect((await server.inject(`/api/v1/models/${MODEL}/rollout-policy`)).json()).toEqual(expected);
    const bad = await server.inject({ method: "PUT", url: `/api/v1/models/${MODEL}/rollout-policy`, payload: { canary: { sticky: "always" } } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "canary.sticky" });
    const unknown = await server.inject("/api/v1/models/nope/rollout-policy");
    expect(unknown.statusCode).toBe(404);
  });

  it("lists the audit log, alias moves made in the registry included", async () => {
    await app.registry.setAlias(MODEL, "staging", 1, { by: "dave", reason: "direct" });
    const res = await server.inject(`/api/v1/audit?model=${MODEL}`);
    expect(res.statusCode).toBe(200);
    const entries = res.json<{ entries: AuditEntry[] }>().entries;
    expect(entries[0]).toMatchObject({ action: "alias.set", actor: "dave", reason: "direct", details: { alias: "staging", to: 1 } });
    expect(entries.map((e) => e.action)).toEqual([
      "alias.set",
      "policy.set",
      "alias.rollback",
      "rollout.promote",
      "alias.set",
      "rollout.start",
      "rollout.abort",
      "rollout.start",
      "alias.set",
    ]);
    const limited = await server.inject("/api/v1/audit?action=rollout.start&limit=1");
    expect(limited.json<{ entries: AuditEntry[] }>().entries).toHaveLength(1);
    expect(limited.json<{ entries: AuditEntry[] }>().entries[0]).toMatchObject({ action: "rollout.start", details: { mode: "ab" } });
  });
});
