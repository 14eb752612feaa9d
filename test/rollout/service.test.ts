// Rollouts on a real app: the breast-cancer example registered twice, real scoring through the alias, the router
// the service installs, the audit log over the SQLite store, and the guard's verdicts.
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import type { MlshipError, Tensor } from "../../src/core/index.js";
import { PredictionLogger } from "../../src/feedback/log.js";
import { createFeedbackService } from "../../src/feedback/service.js";
import { compareArms } from "../../src/feedback/significance.js";
import { feedbackSpecOf } from "../../src/feedback/spec.js";
import { SqlPredictionStore } from "../../src/feedback/store.js";
import type { QualityReport } from "../../src/feedback/types.js";
import { tensorValues, type ScoringEvent, type ScoringInput } from "../../src/scoring/index.js";
import { judgeRollout } from "../../src/rollout/guard.js";
import { createRolloutService } from "../../src/rollout/service.js";
import { RolloutStore } from "../../src/rollout/store.js";
import type { Rollout, RolloutComparison, RolloutService, VariantStatus } from "../../src/rollout/types.js";
import { POSTGRES_SERVER, postgresAdmin } from "../helpers/sql-stores.js";

const EXAMPLE = fileURLToPath(new URL("../../examples/models/breast-cancer", import.meta.url));
const MODEL = "breast-cancer";

function exampleRows(): Record<string, number>[] {
  const body = JSON.parse(fs.readFileSync(path.join(EXAMPLE, "input_example.json"), "utf8")) as { dataframe_split: { columns: string[]; data: number[][] } };
  const { columns, data } = body.dataframe_split;
  return data.map((row) => Object.fromEntries(columns.map((c, i) => [c, row[i] as number])));
}

async function rejection(promise: Promise<unknown>): Promise<MlshipError> {
  try {
    await promise;
  } catch (error) {
    return error as MlshipError;
  }
  throw new Error("expected a rejection");
}

const home = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-rollout-service-"));
let app: Mlship;
let rollouts: RolloutService;
let input: ScoringInput;

beforeAll(async () => {
  app = await createMlship(defaultConfig({ home, user: "tester", "runtime.workers": 1, "log.level": "warn" }));
  await registerModel(app, EXAMPLE, { name: MODEL, alias: "production" });
  await registerModel(app, EXAMPLE, { name: MODEL });
  await registerModel(app, EXAMPLE, { name: MODEL });
  await app.registry.archive(MODEL, 3, { by: "tester" });
  rollouts = createRolloutService({ store: app.store, registry: app.registry, scoring: app.scoring, logger: app.logger, refreshMs: 0 });
  input = { kind: "records", records: [exampleRows()[0]] };
}, 60_000);

afterAll(async () => {
  await rollouts?.close();
  await app?.close();
  fs.rmSync(home, { recursive: true, force: true });
});

describe("rollout service with real scoring", () => {
  it("splits a sticky 30% canary by key, keeps keys on their arm and never routes pinned versions", async () => {
    const rollout = await rollouts.start({ model: MODEL, challenger: 2, mode: "canary", percent: 30, by: "alice", reason: "try v2" });
    expect(rollout).toMatchObject({ model: MODEL, alias: "production", champion: 1, challenger: 2, mode: "canary", percent: 30, sticky: true, state: "active", startedBy: "alice", reason: "try v2" });
    expect(await rollouts.active(MODEL)).toEqual(rollout);

    const byKey = new Map<string, number>();
    for (let start = 0; start < 1000; start += 50) {
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, j) => app.scoring.score(`${MODEL}@production`, input, { key: `customer-${start + j}` })),
      );
      results.forEach((r, j) => {
        expect(r.rolloutId).toBe(rollout.id);
        expect(r.variant).toBe(r.version === 2 ? "challenger" : "champion");
        expect(r.alias).toBe("production");
        byKey.set(`customer-${start + j}`, r.version);
      });
    }
    const challengerShare = [...byKey.values()].filter((v) => v === 2).length / byKey.size;
    // 1000 keys: the standard deviation of the share is about 1.45 points.
    expect(Math.abs(challengerShare - 0.3)).toBeLessThan(0.05);

    // Same key, same arm.
    for (const key of [...byKey.keys()].slice(0, 100)) {
      const again = await app.scoring.score(MODEL, input, { key });
      expect(again.version).toBe(byKey.get(key));
    }
    // Pinned versions are never routed.
    for (let i = 0; i < 30; i++) {
      const pinned = await app.scoring.score(`${MODEL}@1`, input, { key: `customer-${i}` });
      expect(pinned.version).toBe(1);
      expect(pinned.variant).toBeUndefined();
      expect(pinned.rolloutId).toBeUndefined();
    }

    const status = await rollouts.status(rollout.id);
    const [champion, challenger] = status.variants;
    expect(champion).toMatchObject({ variant: "champion", version: 1, errors: 0, quality: null, logged: 0 });
    expect(challenger).toMatchObject({ variant: "challenger", version: 2, errors: 0 });
    expect((champion?.requests ?? 0) + (challenger?.requests ?? 0)).toBe(1100);
    expect(challenger?.requests).toBe([...byKey.values()].filter((v) => v === 2).length + [...byKey.entries()].slice(0, 100).filter(([, v]) => v === 2).length);
    expect(challenger?.errorRate).toBe(0);
    expect(status.comparison).toBeNull();
    expect(status.verdict.action).toBe("none");

    // A second rollout on the same alias is a conflict, whoever asks.
    const conflict = await rejection(rollouts.start({ model: MODEL, challenger: 2, by: "bob" }));
    expect(conflict.code).toBe("MLSHIP_ERR_ROLLOUT_CONFLICT");
    expect(conflict.message).toContain(rollout.id);

    const aborted = await rollouts.abort(rollout.id, { by: "alice", reason: "seen enough" });
    expect(aborted).toMatchObject({ state: "aborted", endedBy: "alice", endReason: "seen enough" });
    expect(aborted.endedAt).not.toBeNull();
    expect((await app.registry.getModel(MODEL)).aliases.production).toBe(1);
    expect(await rollouts.active(MODEL)).toBeUndefined();
    const after = await app.scoring.score(MODEL, input, { key: [...byKey.entries()].find(([, v]) => v === 2)?.[0] as string });
    expect(after.version).toBe(1);
    expect(after.variant).toBeUndefined();

    const again = await rejection(rollouts.abort(rollout.id, { by: "alice" }));
    expect(again.code).toBe("MLSHIP_ERR_ROLLOUT_CONFLICT");
    const promoteEnded = await rejection(rollouts.promote(rollout.id, { by: "alice" }));
    expect(promoteEnded.code).toBe("MLSHIP_ERR_ROLLOUT_CONFLICT");
    expect((await rollouts.status(rollout.id)).verdict).toEqual({ action: "none", reason: "the rollout has ended (aborted)" });
  }, 120_000);

  it("shadows: the caller always gets the champion, the challenger scores a logged copy; promote moves the alias", async () => {
    const events: ScoringEvent[] = [];
    const off = app.scoring.onScored((e) => events.push(e));
    const rollout = await rollouts.start({ model: MODEL, challenger: 2, mode: "shadow", percent: 100, by: "carol" });
    for (let i = 0; i < 20; i++) {
      const result = await app.scoring.score(MODEL, input, { key: `s-${i}` });
      expect(result).toMatchObject({ version: 1, variant: "champion", rolloutId: rollout.id });
    }
    const deadline = Date.now() + 10_000;
    while (events.filter((e) => e.variant === "shadow").length < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    off();
    const shadows = events.filter((e) => e.variant === "shadow");
    expect(shadows).toHaveLength(20);
    expect(shadows.every((e) => e.version === 2 && e.ok && e.rolloutId === rollout.id)).toBe(true);
    expect(new Set(shadows.map((e) => e.key))).toEqual(new Set(Array.from({ length: 20 }, (_, i) => `s-${i}`)));

    const status = await rollouts.status(rollout.id);
    expect(status.variants.map((v) => [v.variant, v.version, v.requests])).toEqual([
      ["champion", 1, 20],
      ["shadow", 2, 20],
    ]);

    const promoted = await rollouts.promote(rollout.id, { by: "carol", reason: "shadow looked fine" });
    expect(promoted).toMatchObject({ state: "promoted", endedBy: "carol", endReason: "shadow looked fine" });
    expect((await app.registry.getModel(MODEL)).aliases.production).toBe(2);
    const after = await app.scoring.score(MODEL, input, { key: "s-1" });
    expect(after.version).toBe(2);
    expect(after.variant).toBeUndefined();
  }, 60_000);

  it("refuses rollouts that cannot start, naming what is wrong", async () => {
    // production is on 2 now.
    const same = await rejection(rollouts.start({ model: MODEL, challenger: 2, by: "x" }));
    expect([same.code, same.field]).toEqual(["MLSHIP_ERR_ROLLOUT_CONFLICT", "challenger"]);
    const archived = await rejection(rollouts.start({ model: MODEL, challenger: 3, by: "x" }));
    expect([archived.code, archived.field]).toEqual(["MLSHIP_ERR_ROLLOUT_CONFLICT", "challenger"]);
    expect((await rejection(rollouts.start({ model: MODEL, challenger: 9, by: "x" }))).code).toBe("MLSHIP_ERR_MODEL_VERSION_NOT_FOUND");
    expect((await rejection(rollouts.start({ model: "nope", challenger: 1, by: "x" }))).code).toBe("MLSHIP_ERR_MODEL_NOT_FOUND");
    const noAlias = await rejection(rollouts.start({ model: MODEL, challenger: 1, alias: "staging", by: "x" }));
    expect([noAlias.code, noAlias.field]).toEqual(["MLSHIP_ERR_MODEL_ALIAS_NOT_FOUND", "alias"]);
    const percent = await rejection(rollouts.start({ model: MODEL, challenger: 1, percent: 150, by: "x" }));
    expect([percent.code, percent.field]).toEqual(["MLSHIP_ERR_INPUT_INVALID", "percent"]);
    const mode = await rejection(rollouts.start({ model: MODEL, challenger: 1, mode: "blue-green" as never, by: "x" }));
    expect([mode.code, mode.field]).toEqual(["MLSHIP_ERR_INPUT_INVALID", "mode"]);
    const guard = await rejection(rollouts.start({ model: MODEL, challenger: 1, guard: { margin: -1 }, by: "x" }));
    expect([guard.code, guard.field]).toEqual(["MLSHIP_ERR_INPUT_INVALID", "guard.margin"]);
    const after = await rejection(rollouts.start({ model: MODEL, challenger: 1, guard: { promoteAfter: "soon" }, by: "x" }));
    expect(after.field).toBe("guard.promoteAfter");
    expect((await rejection(rollouts.get("no-such-id"))).code).toBe("MLSHIP_ERR_ROLLOUT_NOT_FOUND");
    expect(await rollouts.active(MODEL)).toBeUndefined();
  });

  it("rolls a model back: the active rollout ends rolled_back and the alias returns to its previous target", async () => {
    const rollout = await rollouts.start({ model: MODEL, challenger: 1, mode: "ab", percent: 50, by: "dave" });
    const result = await rollouts.rollbackModel(MODEL, "production", { by: "dave", reason: "incident 42" });
    expect(result.from).toBe(2);
    expect(result.to).toBe(1);
    expect(result.rollout).toMatchObject({ id: rollout.id, state: "rolled_back", endReason: "incident 42" });
    expect((await app.registry.getModel(MODEL)).aliases.production).toBe(1);
    expect(rollouts.router.route(MODEL, "production", "k")).toBeUndefined();
  });

  it("audits every action, with alias moves made directly in the registry, newest first", async () => {
    await app.registry.setAlias(MODEL, "staging", 2, { by: "erin", reason: "manual move" });
    const all = await rollouts.audit.list({ model: MODEL });
    const actions = all.map((e) => e.action);
    // Newest first.
    const times = all.map((e) => e.at);
    expect([...times].sort().reverse()).toEqual(times);
    expect(all[0]).toMatchObject({ action: "alias.set", actor: "erin", reason: "manual move", version: 2, details: { source: "registry", alias: "staging", from: null, to: 2 } });
    for (const action of ["rollout.start", "rollout.abort", "rollout.promote", "rollout.rollback", "alias.rollback", "alias.set"]) expect(actions).toContain(action);
    // The rollback through the service is listed once, with the service's details.
    const rollbacks = all.filter((e) => e.action === "alias.rollback");
    expect(rollbacks).toHaveLength(1);
    expect(rollbacks[0]).toMatchObject({ actor: "dave", reason: "incident 42", details: { from: 2, to: 1 } });
    const promote = all.find((e) => e.action === "rollout.promote");
    expect(promote).toMatchObject({ actor: "carol", version: 2, details: { alias: "production", from: 1, to: 2 } });
    // The registration's alias move and the promotion's are there too.
    expect(all.filter((e) => e.action === "alias.set").map((e) => e.details.to)).toEqual([2, 2, 1]);

    const starts = await rollouts.audit.list({ action: "rollout.start", limit: 2 });
    expect(starts).toHaveLength(2);
    expect(starts.every((e) => e.action === "rollout.start" && e.rolloutId !== null)).toBe(true);
    expect(starts[0]?.details).toMatchObject({ mode: "ab", percent: 50, champion: 2, challenger: 1 });
    expect(await rollouts.audit.list({ model: "other" })).toEqual([]);
    const bad = await rejection(rollouts.audit.list({ action: "deploy" as never }));
    expect([bad.code, bad.field]).toEqual(["MLSHIP_ERR_INPUT_INVALID", "action"]);

    const listed = await rollouts.list({ model: MODEL });
    expect(listed.map((r) => r.state)).toEqual(["rolled_back", "promoted", "aborted"]);
    expect((await rollouts.list({ state: "promoted" })).map((r) => r.mode)).toEqual(["shadow"]);
  });

  it("stores rollout policies, validates them and audits the change", async () => {
    expect(await rollouts.getPolicy(MODEL)).toEqual({ model: MODEL, onNewVersion: "manual", gate: null, canary: { mode: "canary", percent: 10, sticky: true, guard: {} }, retrain: null });
    const policy = await rollouts.setPolicy(
      {
        model: MODEL,
        onNewVersion: "auto",
        gate: { holdout: "holdout.csv", require: [{ metric: "accuracy", op: ">=", value: 0.9, text: "accuracy >= 0.9" }], margin: { accuracy: 0.01 } },
        canary: { mode: "canary", percent: 20, sticky: true, guard: { autoPromote: true, promoteAfter: "30m", margin: 0.01 } },
        retrain: { webhook: "http://127.0.0.1:9/retrain", on: ["quality"], cooldown: "6h" },
      },
      { by: "frank", reason: "fly mode" },
    );
    expect(await rollouts.getPolicy(MODEL)).toEqual(policy);
    expect(policy.canary.guard).toEqual({ autoPromote: true, promoteAfter: "30m", margin: 0.01 });
    const [entry] = await rollouts.audit.list({ action: "policy.set" });
    expect(entry).toMatchObject({ actor: "frank", model: MODEL, reason: "fly mode" });
    for (const [bad, field] of [
      [{ canary: { percent: 101 } }, "canary.percent"],
      [{ onNewVersion: "sometimes" }, "onNewVersion"],
      [{ gate: { require: [] } }, "gate.holdout"],
      [{ gate: { holdout: "h.csv", require: [{ metric: "speed", op: ">", value: 1 }] } }, "gate.require[0].metric"],
      [{ retrain: { on: ["drift"] } }, "retrain"],
      [{ canary: { guard: { minOutcomes: -3 } } }, "canary.guard.minOutcomes"],
      [{ colour: "blue" }, "colour"],
    ] as const) {
      const error = await rejection(rollouts.setPolicy({ model: MODEL, ...(bad as object) } as never, { by: "x" }));
      expect([error.code, error.field]).toEqual(["MLSHIP_ERR_INPUT_INVALID", field]);
    }
    expect((await rejection(rollouts.setPolicy({ ...policy, model: "nope" }, { by: "x" }))).code).toBe("MLSHIP_ERR_MODEL_NOT_FOUND");
  });

  it("picks up rollouts started by another replica on its refresh timer", async () => {
    const replica = await createMlship(defaultConfig({ home, user: "tester", "runtime.workers": 1, "log.level": "warn" }));
    const watching = createRolloutService({ store: app.store, registry: app.registry, scoring: app.scoring, logger: app.logger, refreshMs: 100 });
    const other = createRolloutService({ store: replica.store, registry: replica.registry, scoring: replica.scoring, logger: replica.logger, refreshMs: 0 });
    try {
      const started = await other.start({ model: MODEL, challenger: 2, percent: 100, by: "replica" });
      const deadline = Date.now() + 5000;
      while (watching.router.route(MODEL, "production", "k") === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(watching.router.route(MODEL, "production", "k")).toEqual({ rolloutId: started.id, version: 2, variant: "challenger" });
      const scored = await app.scoring.score(MODEL, input, { key: "k" });
      expect(scored).toMatchObject({ version: 2, variant: "challenger", rolloutId: started.id });
      await other.abort(started.id, { by: "replica" });
      while (watching.router.route(MODEL, "production", "k") !== undefined && Date.now() < deadline + 5000) await new Promise((r) => setTimeout(r, 20));
      expect(watching.router.route(MODEL, "production", "k")).toBeUndefined();
    } finally {
      await watching.close();
      await other.close();
      await replica.close();
      // The first service's router goes back in for the tests that follow.
      app.scoring.setRouter(rollouts.router);
    }
  }, 60_000);
});

describe("judgeRollout", () => {
  const base: Rollout = {
    id: "r",
    model: "m",
    alias: "production",
    champion: 1,
    challenger: 2,
    mode: "canary",
    percent: 10,
    sticky: true,
    state: "active",
    guard: {},
    startedAt: "2026-12-01T10:00:00.000Z",
    startedBy: "t",
    reason: null,
    endedAt: null,
    endedBy: null,
    endReason: null,
  };
  const report = (outcomes: number, accuracy: number): QualityReport => ({
    model: "m",
    version: 1,
    task: "binary_classification",
    window: { size: "1h", start: "2026-12-01T10:00:00.000Z", end: "2026-12-01T11:00:00.000Z" },
    predictions: outcomes,
    outcomes,
    coverage: 1,
    metrics: { accuracy },
    events: {},
  });
  const arms = (champion: [number, number, number, number], challenger: [number, number, number, number]): VariantStatus[] => [
    { variant: "champion", version: 1, requests: champion[0], errors: champion[1], errorRate: champion[0] === 0 ? null : champion[1] / champion[0], logged: champion[0], quality: report(champion[2], champion[3]) },
    { variant: "challenger", version: 2, requests: challenger[0], errors: challenger[1], errorRate: challenger[0] === 0 ? null : challenger[1] / challenger[0], logged: challenger[0], quality: report(challenger[2], challenger[3]) },
  ];
  const comparison = (champion: number, challenger: number, metric = "accuracy", higherIsBetter = true): RolloutComparison => ({
    metric,
    champion,
    challenger,
    difference: challenger - champion,
    higherIsBetter,
    test: null,
    pValue: null,
    significant: false,
  });
  const at = new Date("2026-12-01T10:45:00.000Z");

  it("rolls back on an error rate above the champion's by more than the allowed increase, once there are enough requests", () => {
    const verdict = judgeRollout(base, arms([1000, 10, 0, 0], [100, 12, 0, 0]), null, at);
    expect(verdict.action).toBe("rollback");
    expect(verdict.reason).toBe("challenger version 2 failed 12.0% of 100 requests against 1.0% for champion version 1, more than the allowed increase of 5.0%");
    expect(judgeRollout(base, arms([1000, 10, 0, 0], [40, 12, 0, 0]), null, at).action).toBe("none");
    expect(judgeRollout({ ...base, guard: { maxErrorRateIncrease: 0.2 } }, arms([1000, 10, 0, 0], [100, 12, 0, 0]), null, at).action).toBe("none");
  });

  it("rolls back on a regression beyond the margin once both arms have the outcomes, in the metric's direction", () => {
    const worse = judgeRollout(base, arms([900, 0, 500, 0.95], [100, 0, 120, 0.9]), comparison(0.95, 0.9), at);
    expect(worse.action).toBe("rollback");
    expect(worse.reason).toBe("challenger version 2 accuracy 0.9 is worse than champion version 1 0.95 by 0.05, more than the margin 0.02 (120 and 500 outcomes)");
    expect(judgeRollout(base, arms([900, 0, 500, 0.95], [100, 0, 80, 0.9]), comparison(0.95, 0.9), at)).toEqual({
      action: "none",
      reason: "quality is judged once both arms have 100 outcomes (champion 500, challenger 80)",
    });
    expect(judgeRollout(base, arms([900, 0, 500, 0.95], [100, 0, 120, 0.94]), comparison(0.95, 0.94), at).action).toBe("none");
    expect(judgeRollout({ ...base, guard: { rollbackOnRegression: false } }, arms([900, 0, 500, 0.95], [100, 0, 120, 0.9]), comparison(0.95, 0.9), at).action).toBe("none");
    // rmse: lower is better, so a higher challenger value is the regression.
    expect(judgeRollout(base, arms([900, 0, 500, 0], [100, 0, 120, 0]), comparison(10, 10.5, "rmse", false), at).action).toBe("rollback");
    expect(judgeRollout(base, arms([900, 0, 500, 0], [100, 0, 120, 0]), comparison(10, 9, "rmse", false), at).action).toBe("none");
  });

  it("promotes automatically after promoteAfter with enough outcomes and no regression beyond the margin", () => {
    const guard = { autoPromote: true, promoteAfter: "30m", minOutcomes: 50 };
    const good = judgeRollout({ ...base, guard }, arms([900, 0, 500, 0.95], [100, 0, 60, 0.94]), comparison(0.95, 0.94), at);
    expect(good.action).toBe("promote");
    expect(good.reason).toBe("challenger version 2 accuracy 0.94 is within the margin 0.02 of champion version 1 0.95 after 60 outcomes and 45 min");
    const early = judgeRollout({ ...base, guard: { ...guard, promoteAfter: "1h" } }, arms([900, 0, 500, 0.95], [100, 0, 60, 0.94]), comparison(0.95, 0.94), at);
    expect(early).toEqual({ action: "none", reason: "auto-promotion waits until the rollout has run 1h (45 min so far)" });
    const few = judgeRollout({ ...base, guard }, arms([900, 0, 500, 0.95], [100, 0, 20, 0.99]), comparison(0.95, 0.99), at);
    expect(few).toEqual({ action: "none", reason: "auto-promotion waits for 50 outcomes of challenger version 2 (20 so far)" });
    expect(judgeRollout({ ...base, guard }, arms([900, 0, 500, 0.95], [100, 0, 60, 0.9]), comparison(0.95, 0.9), at).action).toBe("rollback");
    expect(judgeRollout(base, arms([900, 0, 500, 0.95], [100, 0, 500, 0.99]), comparison(0.95, 0.99), at).action).toBe("none");
  });
});

describe("rollouts on PostgreSQL", () => {
  it("keeps one active rollout per alias (unique index), promotes, and merges the alias history into the audit", async () => {
    const admin = await postgresAdmin();
    const database = `mlship_test_${randomBytes(6).toString("hex")}`;
    await admin.query(`create database ${database}`);
    const pgHome = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-rollout-pg-"));
    const pgApp = await createMlship(defaultConfig({ home: pgHome, store: `${POSTGRES_SERVER}/${database}`, user: "tester", "runtime.workers": 1, "log.level": "warn" }));
    const service = createRolloutService({ store: pgApp.store, registry: pgApp.registry, scoring: pgApp.scoring, logger: pgApp.logger, refreshMs: 0 });
    try {
      await registerModel(pgApp, EXAMPLE, { name: MODEL, alias: "production" });
      await registerModel(pgApp, EXAMPLE, { name: MODEL });
      const rollout = await service.start({ model: MODEL, challenger: 2, percent: 12.5, guard: { margin: 0.03 }, by: "pg" });
      expect(await service.get(rollout.id)).toEqual(rollout);
      // A second server that missed the first one's rollout still cannot start another: the index refuses it.
      const racing = await rejection(new RolloutStore(pgApp.store).insert({ ...rollout, id: "racing" }));
      expect(racing.code).toBe("MLSHIP_ERR_ROLLOUT_CONFLICT");
      const scored = await pgApp.scoring.score(MODEL, { kind: "records", records: [exampleRows()[0]] }, { key: "k" });
      expect(scored.rolloutId).toBe(rollout.id);
      await service.promote(rollout.id, { by: "pg" });
      expect((await pgApp.registry.getModel(MODEL)).aliases.production).toBe(2);
      await service.setPolicy({ ...(await service.getPolicy(MODEL)), onNewVersion: "auto" }, { by: "pg" });
      expect((await service.getPolicy(MODEL)).onNewVersion).toBe("auto");
      const audit = await service.audit.list({ model: MODEL });
      expect(audit.map((e) => e.action)).toEqual(["policy.set", "rollout.promote", "alias.set", "rollout.start", "alias.set"]);
      expect(audit[3]?.details).toMatchObject({ percent: 12.5, guard: { margin: 0.03 } });
      expect((await service.list({ state: "promoted" }))[0]).toMatchObject({ id: rollout.id, percent: 12.5, sticky: true, guard: { margin: 0.03 } });
    } finally {
      await service.close();
      await pgApp.close();
      await admin.query(`drop database if exists ${database} with (force)`);
      await admin.end();
      fs.rmSync(pgHome, { recursive: true, force: true });
    }
  }, 60_000);
});

describe("rollout status with the live feedback loop", () => {
  it("compares the arms on joined outcomes and the guard asks for a rollback when the challenger is worse", async () => {
    const fbHome = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-rollout-feedback-"));
    const fbApp = await createMlship(defaultConfig({ home: fbHome, user: "tester", "runtime.workers": 1, "log.level": "warn" }));
    const predictions = new SqlPredictionStore(fbApp.store);
    const predictionLog = new PredictionLogger({ scoring: fbApp.scoring, registry: fbApp.registry, store: predictions, logger: fbApp.logger, spillDir: path.join(fbHome, "spill"), timers: false });
    const feedback = createFeedbackService({ store: predictions, registry: fbApp.registry, logger: fbApp.logger, horizonMs: 86_400_000, pendingMs: 600_000, timers: false });
    const service = createRolloutService({
      store: fbApp.store,
      registry: fbApp.registry,
      scoring: fbApp.scoring,
      logger: fbApp.logger,
      refreshMs: 0,
      feedback,
      compare: async (metric, championRows, challengerRows, context) =>
        compareArms(metric, championRows, challengerRows, feedbackSpecOf((await fbApp.registry.getVersion(context.model, context.champion)).manifest)),
    });
    try {
      await predictionLog.start();
      await registerModel(fbApp, EXAMPLE, { name: MODEL, alias: "production" });
      await registerModel(fbApp, EXAMPLE, { name: MODEL });
      const rollout = await service.start({ model: MODEL, challenger: 2, mode: "ab", percent: 50, guard: { minOutcomes: 50, minRequests: 50 }, by: "tester" });
      const records = exampleRows().slice(0, 1);
      const outcomes: { request_id: string; actual: string }[] = [];
      for (let i = 0; i < 300; i++) {
        const result = await fbApp.scoring.score(MODEL, { kind: "records", records }, { key: `customer-${i}` });
        const predicted = String(tensorValues(result.outputs.class as Tensor)[0]);
        // The champion is always right, the challenger always wrong: a regression no margin allows.
        const actual = result.variant === "champion" ? predicted : predicted === "benign" ? "malignant" : "benign";
        outcomes.push({ request_id: result.requestId, actual });
      }
      await predictionLog.flush();
      const ingested = await feedback.ingestOutcomes(outcomes);
      expect(ingested).toMatchObject({ accepted: 300, matched: 300, rejected: [] });

      const status = await service.status(rollout.id);
      const [champion, challenger] = status.variants;
      expect((champion?.requests ?? 0) + (challenger?.requests ?? 0)).toBe(300);
      expect(champion?.logged).toBe(champion?.requests);
      expect(challenger?.logged).toBe(challenger?.requests);
      expect(champion?.quality).toMatchObject({ version: 1, variant: "champion", outcomes: champion?.requests, metrics: { accuracy: 1 } });
      expect(challenger?.quality).toMatchObject({ version: 2, variant: "challenger", outcomes: challenger?.requests, metrics: { accuracy: 0 } });
      expect(status.comparison).toMatchObject({ metric: "accuracy", champion: 1, challenger: 0, difference: -1, higherIsBetter: true, test: "two_proportion_z", significant: true });
      expect(status.verdict.action).toBe("rollback");
      expect(status.verdict.reason).toContain(`challenger version 2 accuracy 0 is worse than champion version 1 1 by 1, more than the margin 0.02 (${challenger?.requests} and ${champion?.requests} outcomes)`);
    } finally {
      await service.close();
      await predictionLog.close();
      await feedback.close();
      await fbApp.close();
      fs.rmSync(fbHome, { recursive: true, force: true });
    }
  }, 60_000);
});
