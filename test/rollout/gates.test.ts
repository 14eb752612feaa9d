import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { CommanderError } from "commander";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { CliContext } from "../../src/cli/context.js";
import { buildProgram } from "../../src/cli/main.js";
import { promoteCommand } from "../../src/cli/promote.js";
import { defaultConfig } from "../../src/config/index.js";
import { MlshipError, silentLogger, toMlshipError } from "../../src/core/index.js";
import { computeQuality } from "../../src/feedback/quality.js";
import { feedbackSpecOf } from "../../src/feedback/spec.js";
import { writeOnnxModel } from "../../src/package/onnx-build.js";
import { SqlAuditLog } from "../../src/rollout/audit.js";
import { evaluateGate, parseMargin, parseMargins, parseRequirement, promoteWithGate, type EvaluateGateOptions } from "../../src/rollout/gates.js";
import type { GateSpec } from "../../src/rollout/types.js";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const FIXTURES = fileURLToPath(new URL("../../../shared/fixtures/", import.meta.url));
const BREAST_PROD = path.join(FIXTURES, "breast_cancer_mlp", "prod.csv");
const DIABETES_PROD = path.join(FIXTURES, "diabetes_linear", "prod.csv");

async function readCsv(file: string): Promise<{ header: string[]; rows: number[][] }> {
  const [head = "", ...lines] = (await fs.readFile(file, "utf8")).trim().split("\n");
  return { header: head.split(","), rows: lines.map((l) => l.split(",").map(Number)) };
}

function expectError(error: unknown, code: string, field?: string): void {
  expect(error).toBeInstanceOf(MlshipError);
  expect((error as MlshipError).code).toBe(code);
  if (field !== undefined) expect((error as MlshipError).field).toBe(field);
}

describe("gate requirements and margins", () => {
  it("parses requirements and margins, naming the field on bad text", () => {
    expect(parseRequirement("accuracy >= 0.9")).toEqual({ metric: "accuracy", op: ">=", value: 0.9, text: "accuracy >= 0.9" });
    expect(parseRequirement("rmse<60")).toEqual({ metric: "rmse", op: "<", value: 60, text: "rmse < 60" });
    expect(parseMargin("accuracy=0.01")).toEqual({ metric: "accuracy", value: 0.01 });
    expect(parseMargins(["accuracy=0.01", "log_loss=0.05"])).toEqual({ accuracy: 0.01, log_loss: 0.05 });
    for (const bad of ["accuracy", "acc >= 0.9", "accuracy >= x", "accuracy == 0.9", ""]) {
      expectError(catchSync(() => parseRequirement(bad)), "MLSHIP_ERR_INPUT_INVALID", "require");
    }
    for (const bad of ["accuracy", "speed=1", "accuracy=", "accuracy=-0.1", "accuracy=abc"]) {
      expectError(catchSync(() => parseMargin(bad)), "MLSHIP_ERR_INPUT_INVALID", "margin");
    }
  });
});

function catchSync(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  return undefined;
}

describe("promotion gates on a holdout file (real models, real data)", () => {
  let home: string;
  let app: Mlship;
  let breastAccuracy: number;
  let diabetesRmse: number;
  let baselineRmse: number;
  let baselineR2: number;

  const gate = (model: string, candidate: number, spec: GateSpec, extra: Partial<EvaluateGateOptions> = {}): Promise<Awaited<ReturnType<typeof evaluateGate>>> =>
    evaluateGate({ scoring: app.scoring, registry: app.registry, model, candidate, spec, computeQuality, specOf: feedbackSpecOf, ...extra });

  beforeAll(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), "mlship-gates-"));
    app = await createMlship(defaultConfig({ home, "runtime.workers": 1 }), { logger: silentLogger() });
    await registerModel(app, path.join(REPO, "examples/models/breast-cancer"), { name: "breast-cancer", alias: "production" });
    await registerModel(app, path.join(REPO, "examples/models/breast-cancer"), { name: "breast-cancer" });
    await registerModel(app, path.join(REPO, "examples/models/diabetes"), { name: "diabetes", alias: "production" });

    // A real but weak candidate: the training mean as the prediction for every patient (a "mean baseline").
    const train = await readCsv(path.join(FIXTURES, "diabetes_linear", "train.csv"));
    const targetIndex = train.header.indexOf("target");
    const mean = train.rows.reduce((s, r) => s + (r[targetIndex] ?? 0), 0) / train.rows.length;
    const baselineDir = path.join(home, "baseline");
    await fs.mkdir(baselineDir);
    await fs.copyFile(path.join(REPO, "examples/models/diabetes/mlship.yaml"), path.join(baselineDir, "mlship.yaml"));
    await fs.copyFile(path.join(REPO, "examples/models/diabetes/input_example.json"), path.join(baselineDir, "input_example.json"));
    writeOnnxModel(path.join(baselineDir, "model.onnx"), {
      inputs: [{ name: "input", dtype: "float32", shape: ["batch", 10] }],
      outputs: [{ name: "prediction", dtype: "float32", shape: ["batch", 1] }],
      initializers: [
        { name: "coef", dtype: "float32", dims: [10, 1], values: new Array<number>(10).fill(0) },
        { name: "intercept", dtype: "float32", dims: [1], values: [mean] },
      ],
      nodes: [
        { op: "MatMul", inputs: ["input", "coef"], outputs: ["product"] },
        { op: "Add", inputs: ["product", "intercept"], outputs: ["prediction"] },
      ],
    });
    await registerModel(app, baselineDir, { name: "diabetes" });

    // Expected values by hand from the fixture: labels of prod.csv, and the baseline's RMSE (float32 intercept).
    const prod = await readCsv(DIABETES_PROD);
    const y = prod.rows.map((r) => r[prod.header.indexOf("target")] ?? Number.NaN);
    const c = Math.fround(mean);
    const squared = y.reduce((s, v) => s + (v - c) ** 2, 0);
    const yMean = y.reduce((s, v) => s + v, 0) / y.length;
    baselineRmse = Math.sqrt(squared / y.length);
    baselineR2 = 1 - squared / y.reduce((s, v) => s + (v - yMean) ** 2, 0);
    breastAccuracy = 0.965035; // fixture README / meta.json: prod accuracy of the MLP
    diabetesRmse = 56.017618; // fixture README: prod RMSE of the linear model
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    await fs.rm(home, { recursive: true, force: true });
  });

  it("passes accuracy >= 0.9 for the real model and fails accuracy >= 0.99, with readable checks", async () => {
    const passed = await gate("breast-cancer", 2, { holdout: BREAST_PROD, require: [parseRequirement("accuracy >= 0.9")] });
    expect(passed.passed).toBe(true);
    expect(passed.rows).toBe(143);
    expect(passed.current).toBe(1);
    expect(passed.candidateMetrics.accuracy).toBeCloseTo(breastAccuracy, 5);
    expect(passed.candidateMetrics.accuracy).toBeCloseTo(138 / 143, 12);
    expect(passed.currentMetrics?.accuracy).toBeCloseTo(138 / 143, 12);
    expect(passed.checks).toEqual([{ check: "accuracy 0.96503 >= 0.9: ok", passed: true }]);

    const failed = await gate("breast-cancer", 2, { holdout: BREAST_PROD, require: [parseRequirement("accuracy >= 0.99")], margin: { accuracy: 0 } });
    expect(failed.passed).toBe(false);
    expect(failed.checks[0]).toEqual({ check: "accuracy 0.96503 >= 0.99: FAILED", passed: false });
    // Same model: not worse than the current version, so the margin check passes.
    expect(failed.checks[1]?.passed).toBe(true);
    expect(failed.checks[1]?.check).toContain("not worse");
    expect(Object.keys(failed.candidateMetrics)).toEqual(expect.arrayContaining(["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"]));
  });

  it("compares with the current version under a margin, in the metric's direction (real regression model)", async () => {
    const worse = await gate("diabetes", 2, { holdout: DIABETES_PROD, margin: { rmse: 1 } });
    expect(worse.current).toBe(1);
    expect(worse.currentMetrics?.rmse).toBeCloseTo(diabetesRmse, 2);
    expect(worse.candidateMetrics.rmse).toBeCloseTo(baselineRmse, 3);
    expect(worse.passed).toBe(false);
    expect(worse.checks).toHaveLength(1);
    expect(worse.checks[0]?.check).toMatch(/^rmse 7\d\.\d+ vs 56\.01\d+ \(version 1, lower is better\): worse by 20\.1\d+, margin 1: FAILED$/);

    // A wide enough margin lets it through; r2 is judged higher-is-better.
    const lenient = await gate("diabetes", 2, { holdout: DIABETES_PROD, margin: { rmse: 30 }, require: [parseRequirement("r2 < 0.1")] });
    expect(lenient.passed).toBe(true);
    expect(lenient.candidateMetrics.r2).toBeCloseTo(baselineR2, 6);
    expect(lenient.checks.map((c) => c.passed)).toEqual([true, true]);

    // Without requirements or margins the gate asks for "not worse" on the primary metric (rmse).
    const bare = await gate("diabetes", 2, { holdout: DIABETES_PROD });
    expect(bare.passed).toBe(false);
    expect(bare.checks[0]?.check).toContain("margin 0: FAILED");

    // The alias's own target as the candidate: nothing to compare with.
    const self = await gate("diabetes", 1, { holdout: DIABETES_PROD, margin: { rmse: 0 }, require: [parseRequirement("rmse < 60")] });
    expect(self.current).toBeNull();
    expect(self.currentMetrics).toBeNull();
    expect(self.passed).toBe(true);
  });

  it("reads JSON Lines holdouts, finds the label column (label, target, y, actual) or refuses naming labelColumn", async () => {
    const prod = await readCsv(DIABETES_PROD);
    const jsonl = path.join(home, "diabetes-holdout.jsonl");
    const renamed = prod.header.map((h) => (h === "target" ? "y" : h));
    await fs.writeFile(jsonl, prod.rows.map((r) => JSON.stringify(Object.fromEntries(renamed.map((h, i) => [h, r[i]])))).join("\n") + "\n");
    const viaY = await gate("diabetes", 1, { holdout: jsonl, require: [parseRequirement("rmse < 60")] }, { batchRows: 7 });
    expect(viaY.rows).toBe(111);
    expect(viaY.candidateMetrics.rmse).toBeCloseTo(diabetesRmse, 2);

    const named = await gate("diabetes", 1, { holdout: jsonl, labelColumn: "y", require: [parseRequirement("r2 > 0.4")] });
    expect(named.passed).toBe(true);

    expectError(await gate("diabetes", 1, { holdout: jsonl, labelColumn: "outcome" }).catch((e: unknown) => e), "MLSHIP_ERR_INPUT_INVALID", "labelColumn");
    const noLabel = path.join(home, "no-label.csv");
    await fs.writeFile(noLabel, `${prod.header.filter((h) => h !== "target").join(",")}\n${(prod.rows[0] ?? []).slice(0, 10).join(",")}\n`);
    expectError(await gate("diabetes", 1, { holdout: noLabel }).catch((e: unknown) => e), "MLSHIP_ERR_INPUT_INVALID", "labelColumn");
    expectError(await gate("diabetes", 1, { holdout: path.join(home, "missing.csv") }).catch((e: unknown) => e), "MLSHIP_ERR_PACKAGE_NOT_FOUND", "data");
  });

  it("promoteWithGate audits the verdict and moves the alias only when the gate passes", async () => {
    const audit = new SqlAuditLog(app.store);
    const base = { scoring: app.scoring, registry: app.registry, computeQuality, specOf: feedbackSpecOf, audit, by: "alice", reason: "retrained" };

    const error = await promoteWithGate({ ...base, model: "diabetes", candidate: 2, spec: { holdout: DIABETES_PROD, margin: { rmse: 1 } } }).catch((e: unknown) => e);
    expectError(error, "MLSHIP_ERR_ROLLOUT_GATE_FAILED");
    const details = (error as MlshipError).details as Record<string, unknown>;
    expect(details.passed).toBe(false);
    expect(details.candidate).toBe(2);
    expect((details.checks as { passed: boolean }[])[0]?.passed).toBe(false);
    expect((error as MlshipError).message).toContain("rmse");
    expect((await app.registry.getModel("diabetes")).aliases.production).toBe(1);
    const [failEntry] = await audit.list({ model: "diabetes", action: "gate.fail" });
    expect(failEntry).toMatchObject({ actor: "alice", version: 2, reason: "retrained" });
    expect(failEntry?.details).toMatchObject({ passed: false, current: 1, alias: "production", holdout: DIABETES_PROD });

    const { result, event } = await promoteWithGate({ ...base, model: "breast-cancer", candidate: 2, spec: { holdout: BREAST_PROD, require: [parseRequirement("accuracy >= 0.9")] } });
    expect(result.passed).toBe(true);
    expect(event).toMatchObject({ alias: "production", from: 1, to: 2, by: "alice" });
    expect((await app.registry.getModel("breast-cancer")).aliases.production).toBe(2);
    const entries = await audit.list({ model: "breast-cancer" });
    expect(entries.map((e) => e.action)).toEqual(expect.arrayContaining(["gate.pass", "alias.set"]));
    // The alias move is listed once (this log's entry covers the registry's alias event).
    expect(entries.filter((e) => e.action === "alias.set" && e.version === 2)).toHaveLength(1);
  });
});

/** Runs `mlship models promote ...` in this process (mounted under `models` as the lead will), like `main` does. */
async function runPromote(home: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const ctx = new CliContext({ stdout: { write: (t: string) => (stdout += t) }, stderr: { write: (t: string) => (stderr += t) }, env: { MLSHIP_LOG_LEVEL: "warn" }, cwd: home, handleSignals: false });
  const program = buildProgram(ctx);
  const models = program.commands.find((c) => c.name() === "models");
  if (models !== undefined && !models.commands.some((c) => c.name() === "promote")) models.addCommand(promoteCommand(ctx).exitOverride());
  let code = 0;
  try {
    await program.parseAsync(["node", "mlship", "--home", home, "models", "promote", ...args]);
  } catch (error) {
    if (error instanceof CommanderError) {
      code = 2;
      stderr += `mlship: ${error.message} [MLSHIP_ERR_CLI_USAGE]\n`;
    } else {
      const e = toMlshipError(error);
      code = e.code === "MLSHIP_ERR_CLI_USAGE" ? 2 : 1;
      stderr += `mlship: ${e.message} [${e.code}]\n`;
    }
  } finally {
    await ctx.close();
  }
  return { code, stdout, stderr };
}

describe("mlship models promote", () => {
  let home: string;

  const aliasOf = async (model: string): Promise<number | undefined> => {
    const app = await createMlship(defaultConfig({ home }), { logger: silentLogger() });
    try {
      return (await app.registry.getModel(model)).aliases.production;
    } finally {
      await app.close();
    }
  };

  beforeAll(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), "mlship-promote-"));
    const app = await createMlship(defaultConfig({ home, "runtime.workers": 1 }), { logger: silentLogger() });
    try {
      await registerModel(app, path.join(REPO, "examples/models/breast-cancer"), { name: "bc", alias: "production" });
      await registerModel(app, path.join(REPO, "examples/models/breast-cancer"), { name: "bc" });
      await registerModel(app, path.join(REPO, "examples/models/breast-cancer"), { name: "bc" });
    } finally {
      await app.close();
    }
  }, 120_000);

  afterAll(async () => {
    await fs.rm(home, { recursive: true, force: true });
  });

  it("gates on a holdout file: a failed gate prints its checks and exits 1, a passed one moves the alias", async () => {
    const failed = await runPromote(home, ["bc", "2", "--holdout", BREAST_PROD, "--require", "accuracy>=0.99", "--margin", "accuracy=0.01"]);
    expect(failed.code).toBe(1);
    expect(failed.stdout).toContain("gate for bc@2 on " + BREAST_PROD + " (143 rows), compared with version 1 ('production'):");
    expect(failed.stdout).toContain("\n  accuracy 0.96503 >= 0.99: FAILED\n");
    expect(failed.stdout).toMatch(/\n {2}accuracy 0\.96503 vs 0\.96503 \(version 1, higher is better\): not worse, margin 0\.01: ok\n/);
    expect(failed.stdout).toContain("gate failed");
    expect(failed.stderr).toContain("[MLSHIP_ERR_ROLLOUT_GATE_FAILED]");
    expect(await aliasOf("bc")).toBe(1);

    const passed = await runPromote(home, ["bc", "2", "--holdout", BREAST_PROD, "--require", "accuracy>=0.9", "--margin", "accuracy=0.01", "--reason", "retrained"]);
    expect(passed.stderr).toBe("");
    expect(passed.code).toBe(0);
    expect(passed.stdout).toContain("gate passed");
    expect(passed.stdout).toContain("bc@production -> 2 (was 1)");
    expect(await aliasOf("bc")).toBe(2);
  });

  it("starts a canary with --canary, moves the alias directly without a gate, and refuses bad command lines", async () => {
    const canary = await runPromote(home, ["bc", "3", "--canary", "25", "--json", "--reason", "try it"]);
    expect(canary.code).toBe(0);
    const out = JSON.parse(canary.stdout) as { gate: unknown; alias: unknown; rollout: { challenger: number; champion: number; percent: number; mode: string; state: string } };
    expect(out.gate).toBeNull();
    expect(out.alias).toBeNull();
    expect(out.rollout).toMatchObject({ challenger: 3, champion: 2, percent: 25, mode: "canary", state: "active" });
    expect(await aliasOf("bc")).toBe(2);

    const direct = await runPromote(home, ["bc", "1", "--alias", "staging"]);
    expect(direct.code).toBe(0);
    expect(direct.stdout.trim()).toBe("bc@staging -> 1 (new alias)");

    const app = await createMlship(defaultConfig({ home }), { logger: silentLogger() });
    try {
      const audit = new SqlAuditLog(app.store);
      const actions = (await audit.list({ model: "bc" })).map((e) => e.action);
      expect(actions).toEqual(expect.arrayContaining(["gate.fail", "gate.pass", "alias.set", "rollout.start"]));
    } finally {
      await app.close();
    }

    for (const [args, flag] of [
      [["bc", "2", "--require", "accuracy>=0.9"], "--require"],
      [["bc", "2", "--holdout", BREAST_PROD, "--require", "speed>1"], "--require"],
      [["bc", "2", "--holdout", BREAST_PROD, "--margin", "accuracy"], "--margin"],
      [["bc", "2", "--canary", "150"], "--canary"],
      [["bc", "two"], "VERSION"],
    ] as const) {
      const bad = await runPromote(home, [...args]);
      expect(bad.code, `${args.join(" ")}`).toBe(2);
      expect(bad.stderr).toContain("[MLSHIP_ERR_CLI_USAGE]");
      expect(bad.stderr, flag).toContain(flag === "VERSION" ? "VERSION" : flag);
    }
    const missing = await runPromote(home, ["bc", "9"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("MLSHIP_ERR_");
  });
});
