// The `feedback:` section of mlship.yaml: threshold rules in text and object form, the section's validation with
// YAML paths in errors, and the section travelling through loadPackage, stringifyManifest and registration.
import { cp, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import YAML from "yaml";
import { describe, expect, it } from "vitest";
import { createMlship, registerModel } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { silentLogger } from "../../src/core/index.js";
import {
  checkFeedbackSection,
  feedbackSectionPlain,
  loadPackage,
  parseManifest,
  parseThreshold,
  parseThresholdText,
  stringifyManifest,
  thresholdText,
} from "../../src/package/index.js";
import { catchMlship, REPO, tempDir } from "./helpers.js";

const FILE = "/pkg/mlship.yaml";
const EXAMPLE = path.join(REPO, "examples/models/breast-cancer");

describe("parseThresholdText", () => {
  it("reads the documented form", () => {
    expect(parseThresholdText("accuracy < 0.80 over 1d with at least 500 outcomes")).toEqual({
      metric: "accuracy", op: "<", value: 0.8, window: "1d", minOutcomes: 500, severity: "error",
      text: "accuracy < 0.80 over 1d with at least 500 outcomes",
    });
  });

  it("fills the defaults of the optional parts", () => {
    expect(parseThresholdText("  rmse   >=  60 ")).toEqual({
      metric: "rmse", op: ">=", value: 60, window: "1d", minOutcomes: 1, severity: "error", text: "rmse >= 60",
    });
    expect(parseThresholdText("f1<=0.5 over 12h")).toMatchObject({ metric: "f1", op: "<=", value: 0.5, window: "12h", minOutcomes: 1 });
    expect(parseThresholdText("mape > 0.2 with at least 1 outcome severity warning")).toMatchObject({ window: "1d", minOutcomes: 1, severity: "warning" });
    expect(parseThresholdText("log_loss > 0.7 over 90m with at least 20 outcomes severity error")).toMatchObject({ window: "90m", minOutcomes: 20, severity: "error" });
  });

  it.each([
    ["accuracy", "threshold.text", /cannot read "accuracy"/],
    ["precision_at_k < 0.8", "threshold.metric", /unknown metric "precision_at_k" \(one of accuracy, precision/],
    ["accuracy < high", "threshold.value", /value must be a finite number, got "high"/],
    ["accuracy < 0.8 over 1y", "threshold.window", /window "1y" is not a positive whole number followed by a unit \(ms, s, m, h, d, w\)/],
    ["accuracy < 0.8 over 0h", "threshold.window", /window "0h"/],
    ["accuracy < 0.8 with at least 2.5 outcomes", "threshold.min_outcomes", /min_outcomes must be an integer >= 1, got "2.5"/],
    ["accuracy < 0.8 severity fatal", "threshold.severity", /severity must be error or warning, got "fatal"/],
    ["accuracy = 0.8", "threshold.text", /cannot read/],
  ])("refuses %j", async (text, field, message) => {
    const error = await catchMlship(() => parseThresholdText(text));
    expect(error.code).toBe("MLSHIP_ERR_INPUT_INVALID");
    expect(error.field).toBe(field);
    expect(error.message).toMatch(message);
  });

  it("rebuilds the text of the object form, and the text reads back to the same rule", () => {
    const parsed = parseThreshold({ metric: "rmse", op: ">", value: 60, window: "12h", min_outcomes: 100, severity: "warning" });
    expect(parsed).toEqual({
      metric: "rmse", op: ">", value: 60, window: "12h", minOutcomes: 100, severity: "warning",
      text: "rmse > 60 over 12h with at least 100 outcomes severity warning",
    });
    expect(parseThresholdText(parsed.text)).toEqual(parsed);
    const minimal = parseThreshold({ metric: "accuracy", op: "<", value: 0.9 });
    expect(minimal.text).toBe("accuracy < 0.9 over 1d with at least 1 outcome");
    expect(thresholdText(minimal)).toBe(minimal.text);
    // A parsed threshold is accepted back as it is (manifests are validated again in canonical form).
    expect(parseThreshold(parsed)).toEqual(parsed);
  });
});

describe("checkFeedbackSection", () => {
  const full = {
    task: "binary_classification",
    prediction: "class",
    probabilities: "probabilities",
    labels: ["malignant", "benign"],
    positive: "benign",
    log_inputs: "sampled",
    sample_rate: 0.25,
    thresholds: [
      "accuracy < 0.80 over 1d with at least 500 outcomes",
      { metric: "roc_auc", op: "<", value: 0.9, window: "12h", min_outcomes: 100, severity: "warning" },
    ],
  };

  it("validates every documented field", () => {
    const config = checkFeedbackSection(full, FILE);
    expect(config).toEqual({
      task: "binary_classification",
      prediction: "class",
      probabilities: "probabilities",
      labels: ["malignant", "benign"],
      positive: "benign",
      log_inputs: "sampled",
      sample_rate: 0.25,
      thresholds: [
        { metric: "accuracy", op: "<", value: 0.8, window: "1d", minOutcomes: 500, severity: "error", text: "accuracy < 0.80 over 1d with at least 500 outcomes" },
        { metric: "roc_auc", op: "<", value: 0.9, window: "12h", minOutcomes: 100, severity: "warning", text: "roc_auc < 0.9 over 12h with at least 100 outcomes severity warning" },
      ],
    });
    expect(checkFeedbackSection({}, FILE)).toEqual({});
    // YAML reads unquoted numeric labels as numbers; they are labels all the same.
    expect(checkFeedbackSection({ labels: [0, 1], positive: 1 }, FILE)).toEqual({ labels: ["0", "1"], positive: "1" });
  });

  it("gives back the snake_case section, thresholds as text, which validates to the same config", () => {
    const config = checkFeedbackSection(full, FILE);
    const plain = feedbackSectionPlain(config);
    expect(plain).toEqual({
      ...full,
      thresholds: ["accuracy < 0.80 over 1d with at least 500 outcomes", "roc_auc < 0.9 over 12h with at least 100 outcomes severity warning"],
    });
    expect(checkFeedbackSection(plain, FILE)).toEqual(config);
  });

  it.each([
    ["not a mapping", ["a"], "feedback", /expected a mapping, got a list/],
    ["unknown field", { tasks: "regression" }, "feedback.tasks", /unknown field "tasks" \(allowed: task, prediction/],
    ["unknown task", { task: "ranking" }, "feedback.task", /task must be one of binary_classification, multiclass_classification, regression/],
    ["empty prediction", { prediction: "" }, "feedback.prediction", /non-empty string/],
    ["labels not a list", { labels: "a,b" }, "feedback.labels", /expected a list of labels/],
    ["empty label", { labels: ["a", ""] }, "feedback.labels[1]", /non-empty string/],
    ["duplicate label", { labels: ["a", "b", "a"] }, "feedback.labels[2]", /duplicate label "a"/],
    ["one label", { labels: ["a"] }, "feedback.labels", /at least 2 labels/],
    ["positive not a label", { labels: ["a", "b"], positive: "c" }, "feedback.positive", /positive label "c" is not one of the labels \(a, b\)/],
    ["binary with 3 labels", { task: "binary_classification", labels: ["a", "b", "c"] }, "feedback.labels", /exactly 2 labels, got 3/],
    ["regression with labels", { task: "regression", labels: ["a", "b"] }, "feedback.labels", /does not apply to a regression model/],
    ["bad log_inputs", { log_inputs: "some" }, "feedback.log_inputs", /log_inputs must be one of full, sampled, hashed, none/],
    ["sample_rate above 1", { sample_rate: 1.5 }, "feedback.sample_rate", /sample_rate must be a number from 0 to 1, got number 1.5/],
    ["sample_rate as text", { sample_rate: "10%" }, "feedback.sample_rate", /sample_rate must be a number from 0 to 1/],
    ["thresholds not a list", { thresholds: "accuracy < 0.8" }, "feedback.thresholds", /expected a list of thresholds/],
    ["bad op in the object form", { thresholds: ["accuracy < 0.8", { metric: "mae", op: "=>", value: 3 }] }, "feedback.thresholds[1].op", /op must be one of < <= > >=, got the string "=>"/],
    ["missing value", { thresholds: [{ metric: "mae", op: ">" }] }, "feedback.thresholds[0].value", /value is required/],
    ["unknown threshold key", { thresholds: [{ metric: "mae", op: ">", value: 1, windows: "1d" }] }, "feedback.thresholds[0].windows", /unknown field "windows"/],
    ["bad window in the object form", { thresholds: [{ metric: "mae", op: ">", value: 1, window: "daily" }] }, "feedback.thresholds[0].window", /window "daily"/],
    ["bad text rule", { thresholds: ["accuracy < 0.8", "accuracy < 0.8 over 1 day"] }, "feedback.thresholds[1]", /cannot read "accuracy < 0.8 over 1 day"/],
    ["unknown metric in text", { thresholds: ["accurcy < 0.8"] }, "feedback.thresholds[0]", /unknown metric "accurcy"/],
    ["a number as a threshold", { thresholds: [0.8] }, "feedback.thresholds[0].text", /a threshold is a text rule or a mapping, got number 0.8/],
  ])("%s", async (_name, raw, field, message) => {
    const error = await catchMlship(() => checkFeedbackSection(raw, FILE));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    expect(error.field).toBe(field);
    expect(error.message).toContain(`${FILE}: `);
    expect(error.message).toContain(` at ${field}`);
    expect(error.message).toMatch(message);
  });
});

/** A copy of the breast-cancer example with `feedback` set in its mlship.yaml (raw YAML text appended). */
async function exampleWithFeedback(feedbackYaml: string): Promise<string> {
  const dir = await tempDir("mlship-feedback-section-");
  await cp(EXAMPLE, dir, { recursive: true });
  const file = path.join(dir, "mlship.yaml");
  await writeFile(file, `${await readFile(file, "utf8")}feedback:\n${feedbackYaml}`);
  return dir;
}

const SECTION_YAML = `  task: binary_classification
  prediction: class
  probabilities: probabilities
  positive: benign
  log_inputs: hashed
  thresholds:
    - accuracy < 0.80 over 1d with at least 500 outcomes
    - { metric: f1, op: "<", value: 0.85, window: 12h, min_outcomes: 50, severity: warning }
`;

describe("the feedback section in a package", () => {
  it("loadPackage reads it into manifest.feedback, and it survives writing the manifest back", async () => {
    const dir = await exampleWithFeedback(SECTION_YAML);
    const { manifest } = await loadPackage(dir);
    expect(manifest.feedback).toEqual({
      task: "binary_classification",
      prediction: "class",
      probabilities: "probabilities",
      positive: "benign",
      log_inputs: "hashed",
      thresholds: [
        { metric: "accuracy", op: "<", value: 0.8, window: "1d", minOutcomes: 500, severity: "error", text: "accuracy < 0.80 over 1d with at least 500 outcomes" },
        { metric: "f1", op: "<", value: 0.85, window: "12h", minOutcomes: 50, severity: "warning", text: "f1 < 0.85 over 12h with at least 50 outcomes severity warning" },
      ],
    });
    const text = stringifyManifest(manifest);
    expect(YAML.parse(text).feedback.thresholds).toEqual([
      "accuracy < 0.80 over 1d with at least 500 outcomes",
      "f1 < 0.85 over 12h with at least 50 outcomes severity warning",
    ]);
    expect(parseManifest(text)).toEqual(manifest);
  });

  it("a bad section fails loading with the file and the YAML path", async () => {
    const dir = await exampleWithFeedback(`  thresholds:\n    - accuracy < 0.8\n    - { metric: mae, op: "==", value: 3 }\n`);
    const error = await catchMlship(() => loadPackage(dir));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    expect(error.field).toBe("feedback.thresholds[1].op");
    expect(error.message).toContain(path.join(dir, "mlship.yaml"));
  });

  it("outputs the section names must exist (post-processing outputs count)", async () => {
    const dir = await exampleWithFeedback("  prediction: klass\n");
    const error = await catchMlship(() => loadPackage(dir));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    expect(error.field).toBe("feedback.prediction");
    expect(error.message).toMatch(/no output named "klass" \(outputs: probabilities, label, class\)/);
  });

  it("registration keeps the section in the registry, and a bad section fails registration naming the field", async () => {
    const home = await tempDir("mlship-feedback-register-");
    const app = await createMlship(defaultConfig({ home, "runtime.workers": 1 }), { logger: silentLogger() });
    try {
      const record = await registerModel(app, await exampleWithFeedback(SECTION_YAML), { name: "bc" });
      const stored = await app.registry.getVersion("bc", record.version);
      expect(stored.manifest.feedback?.log_inputs).toBe("hashed");
      expect(stored.manifest.feedback?.thresholds?.map((t) => t.text)).toEqual([
        "accuracy < 0.80 over 1d with at least 500 outcomes",
        "f1 < 0.85 over 12h with at least 50 outcomes severity warning",
      ]);
      const bad = await exampleWithFeedback("  sample_rate: 2\n");
      const error = await catchMlship(() => registerModel(app, bad, { name: "bc" }));
      expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
      expect(error.field).toBe("feedback.sample_rate");
      expect((await app.registry.listVersions("bc")).map((v) => v.version)).toEqual([record.version]);
    } finally {
      await app.close();
    }
  });
});
