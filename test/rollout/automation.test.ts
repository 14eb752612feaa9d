import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { silentLogger } from "../../src/core/index.js";
import { computeQuality, feedbackSpecOf, recordsOf, type PredictionStore } from "../../src/feedback/index.js";
import { RolloutAutomation } from "../../src/rollout/automation.js";
import { evaluateGate, parseRequirement } from "../../src/rollout/gates.js";
import type { RolloutPolicy, RolloutService } from "../../src/rollout/types.js";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const FIXTURES = fileURLToPath(new URL("../../../shared/fixtures/", import.meta.url));
const BREAST = path.join(REPO, "examples/models/breast-cancer");
const DIABETES = path.join(REPO, "examples/models/diabetes");
const BREAST_PROD = path.join(FIXTURES, "breast_cancer_mlp", "prod.csv");

async function prodRows(): Promise<{ columns: string[]; data: number[][]; labels: number[] }> {
  const [head = "", ...lines] = (await fs.readFile(BREAST_PROD, "utf8")).trim().split("\n");
  const header = head.split(",");
  const labelIndex = header.indexOf("label");
  const rows = lines.map((l) => l.split(",").map(Number));
  return { columns: header.filter((_, i) => i !== labelIndex), data: rows.map((r) => r.filter((_, i) => i !== labelIndex)), labels: rows.map((r) => r[labelIndex] ?? -1) };
}

describe("rollout automation (real app, real rollout service, real models)", () => {
  let home: string;
  let app: Mlship;
  let rollouts: RolloutService;
  let predictions: PredictionStore;
  let automation: RolloutAutomation;
  let prod: Awaited<ReturnType<typeof prodRows>>;

  const policy = (model: string, extra: Partial<RolloutPolicy>): RolloutPolicy => ({
    model,
    onNewVersion: "auto",
    gate: null,
    canary: { mode: "canary", percent: 20, sticky: true, guard: { minRequests: 10 } },
    retrain: null,
    ...extra,
  });

  /** Single-row requests through the alias, each with its own key and request id; logged like the prediction log. */
  async function traffic(model: string, count: number): Promise<{ requestId: string; row: number; label: number; variant: string | undefined }[]> {
    const manifest = (await app.registry.getVersion(model, 1)).manifest;
    const spec = feedbackSpecOf(manifest);
    const writes: Promise<number>[] = [];
    const off = app.scoring.onScored((event) => writes.push(predictions.insertPredictions(recordsOf(event, spec, manifest))));
    const sent: { requestId: string; row: number; label: number; variant: string | undefined }[] = [];
    try {
      for (let i = 0; i < count; i++) {
        const r = i % prod.data.length;
        const requestId = `${model}-${i}`;
        const result = await app.scoring
          .score(model, { kind: "mlflow", body: { dataframe_split: { columns: prod.columns, data: [prod.data[r]] } } }, { requestId, key: `customer-${i}` })
          .catch((error: unknown) => ({ variant: "failed", error }));
        sent.push({ requestId, row: r, label: prod.labels[r] ?? -1, variant: result.variant });
      }
    } finally {
      off();
    }
    await Promise.all(writes);
    return sent;
  }

  beforeAll(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), "mlship-automation-"));
    app = await createMlship(defaultConfig({ home, "runtime.workers": 1 }), { logger: silentLogger() });
    prod = await prodRows();
    // The app's own parts: the prediction store, and the rollout service with the feedback loop's live quality.
    predictions = app.predictions;
    rollouts = app.rollouts;
    automation = new RolloutAutomation({
      rollouts,
      registry: app.registry,
      evaluateGate: (model, candidate, gate) => evaluateGate({ scoring: app.scoring, registry: app.registry, model, candidate, spec: gate, computeQuality, specOf: feedbackSpecOf }),
      logger: silentLogger(),
      timers: false,
    });
    for (const name of ["fly", "strict", "manual", "faulty", "twin"]) {
      await registerModel(app, BREAST, { name, alias: "production" });
    }
  }, 120_000);

  afterAll(async () => {
    await automation?.close();
    await app?.close();
    await fs.rm(home, { recursive: true, force: true });
  });

  it("takes the versions registered before its first tick as they are", async () => {
    await rollouts.setPolicy(policy("fly", {}), { by: "test" });
    const first = await automation.tick();
    expect(first).toMatchObject({ checked: 0, actions: [], newVersions: [], errors: [] });
    expect(await rollouts.list({ state: "active" })).toEqual([]);
  });

  it("sends a new version through the gate into a canary when the policy is auto (fly mode)", async () => {
    const gate = { holdout: BREAST_PROD, require: [parseRequirement("accuracy >= 0.9")] };
    await rollouts.setPolicy(policy("fly", { gate }), { by: "test" });
    await rollouts.setPolicy(policy("strict", { gate: { holdout: BREAST_PROD, require: [parseRequirement("accuracy >= 0.99")] } }), { by: "test" });
    await rollouts.setPolicy(policy("manual", { onNewVersion: "manual" }), { by: "test" });
    for (const name of ["fly", "strict", "manual"]) await registerModel(app, BREAST, { name });

    const result = await automation.tick();
    const byModel = Object.fromEntries(result.newVersions.map((n) => [n.model, n]));
    expect(byModel.fly).toMatchObject({ version: 2, outcome: "started" });
    expect(byModel.strict).toMatchObject({ version: 2, outcome: "gate_failed" });
    expect(byModel.strict?.detail).toContain("accuracy 0.96503 >= 0.99: FAILED");
    expect(byModel.manual).toMatchObject({ version: 2, outcome: "manual" });
    expect(result.errors).toEqual([]);

    const active = await rollouts.list({ state: "active" });
    expect(active).toHaveLength(1);
    expect(active[0]).toMatchObject({ model: "fly", champion: 1, challenger: 2, mode: "canary", percent: 20, sticky: true, startedBy: "mlship-automation", reason: "new version 2 registered (policy auto)" });
    expect(active[0]?.id).toBe(byModel.fly?.rolloutId);

    const [pass] = await rollouts.audit.list({ model: "fly", action: "gate.pass" });
    expect(pass).toMatchObject({ actor: "mlship-automation", version: 2 });
    expect(pass?.details).toMatchObject({ passed: true, current: 1, holdout: BREAST_PROD });
    const [fail] = await rollouts.audit.list({ model: "strict", action: "gate.fail" });
    expect(fail).toMatchObject({ actor: "mlship-automation", version: 2 });

    // Nothing new: the next tick starts nothing; a failed start (a rollout already active) is audited, not thrown.
    expect((await automation.tick()).newVersions).toEqual([]);
    await registerModel(app, BREAST, { name: "fly" });
    const conflict = await automation.tick();
    expect(conflict.newVersions).toEqual([expect.objectContaining({ model: "fly", version: 3, outcome: "failed" })]);
    expect(conflict.errors[0]?.message).toContain("already has an active canary rollout");
    const [failedStart] = await rollouts.audit.list({ model: "fly", action: "rollout.start" });
    expect(failedStart).toMatchObject({ actor: "mlship-automation", version: 3 });
    expect(failedStart?.details).toMatchObject({ ok: false, error: { code: "MLSHIP_ERR_ROLLOUT_CONFLICT" } });
  });

  it("rolls back a rollout whose challenger fails requests (the guard's verdict)", async () => {
    // Version 2 of `faulty` is another model: every request made for the breast-cancer columns fails on it.
    await registerModel(app, DIABETES, { name: "faulty" });
    const rollout = await rollouts.start({ model: "faulty", challenger: 2, percent: 50, guard: { minRequests: 10 }, by: "alice" });
    const sent = await traffic("faulty", 60);
    expect(sent.filter((s) => s.variant === "failed").length).toBeGreaterThanOrEqual(10);

    const result = await automation.tick();
    expect(result.actions).toEqual([expect.objectContaining({ rolloutId: rollout.id, model: "faulty", action: "rollback" })]);
    expect(result.actions[0]?.reason).toMatch(/failed 100\.0% of \d+ requests/);
    const ended = await rollouts.get(rollout.id);
    expect(ended).toMatchObject({ state: "rolled_back", endedBy: "mlship-guard" });
    expect((await app.registry.getModel("faulty")).aliases.production).toBe(1);
    const [entry] = await rollouts.audit.list({ model: "faulty", action: "rollout.rollback" });
    expect(entry).toMatchObject({ actor: "mlship-guard", rolloutId: rollout.id });
  });

  it("promotes a rollout whose challenger is as good as the champion on live outcomes (autoPromote)", async () => {
    await registerModel(app, BREAST, { name: "twin" });
    const rollout = await rollouts.start({ model: "twin", challenger: 2, percent: 50, guard: { autoPromote: true, promoteAfter: "1ms", minOutcomes: 20, margin: 0.2 }, by: "alice" });
    const before = await automation.tick();
    expect(before.actions.filter((a) => a.model === "twin")).toEqual([]);

    const sent = await traffic("twin", 143);
    const arms = new Set(sent.map((s) => s.variant));
    expect(arms).toEqual(new Set(["champion", "challenger"]));
    const ingested = await predictions.ingestOutcomes(
      sent.map((s) => ({ request_id: s.requestId, actual: s.label })),
      { horizonMs: 86_400_000, pendingMs: 3_600_000 },
    );
    expect(ingested.matched).toBe(143);

    const status = await rollouts.status(rollout.id);
    expect(status.verdict.action).toBe("promote");
    const result = await automation.tick();
    expect(result.actions).toEqual([expect.objectContaining({ rolloutId: rollout.id, model: "twin", action: "promote" })]);
    expect(await rollouts.get(rollout.id)).toMatchObject({ state: "promoted", endedBy: "mlship-guard" });
    expect((await app.registry.getModel("twin")).aliases.production).toBe(2);
    const [entry] = await rollouts.audit.list({ model: "twin", action: "rollout.promote" });
    expect(entry).toMatchObject({ actor: "mlship-guard", rolloutId: rollout.id });
  });

  it("runs on an unref'd timer between start() and close()", async () => {
    const timed = new RolloutAutomation({
      rollouts,
      registry: app.registry,
      evaluateGate: () => Promise.reject(new Error("no gate in this policy")),
      logger: silentLogger(),
      checkMs: 20,
    });
    await rollouts.setPolicy(policy("manual", { onNewVersion: "auto" }), { by: "test" });
    timed.start();
    // The first tick (run at once) takes the registry as it is; the version registered after it starts a canary.
    await new Promise((resolve) => setTimeout(resolve, 100));
    await registerModel(app, BREAST, { name: "manual" });
    const deadline = Date.now() + 10_000;
    while ((await rollouts.active("manual")) === undefined && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    await timed.close();
    expect(await rollouts.active("manual")).toMatchObject({ challenger: 3, champion: 1, startedBy: "mlship-automation" });
  });
});
