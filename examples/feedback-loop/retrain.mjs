#!/usr/bin/env node
/**
 * A retraining hook for the breast-cancer example: mlship runs it when live accuracy falls below the package's
 * threshold (the rollout policy's `retrain.command`).
 *
 * 1. Reads the retraining context (`RetrainContext`): the file named by MLSHIP_RETRAIN_CONTEXT, else stdin, else
 *    `--context FILE`.
 * 2. Reads `recentData.path`, a JSON Lines file of recent predictions joined with their outcomes (inputs by column,
 *    prediction, actual), and keeps the latest `--rows` (default 200) rows that have an outcome.
 * 3. Trains a logistic regression on the 30 feature columns: standardised with those rows' mean and standard
 *    deviation, full-batch gradient descent from zero weights for a fixed number of iterations (deterministic: the
 *    same rows always give the same model).
 * 4. Writes an ONNX model with the signature of the example (`input` float32 [-1,30] -> `probabilities` float32
 *    [-1,2], `label` int64 [-1]) with mlship's ONNX builder, and a package folder (model.onnx + mlship.yaml copied
 *    from ./model with the retrain's rows and training accuracy in its metadata).
 * 5. Registers it: `node bin/mlship.js models register DIR --name <model>`, in the environment the hook runs in
 *    (MLSHIP_HOME / MLSHIP_STORE), so the server sees the new version; with `onNewVersion: auto` a canary starts.
 *
 * `--out DIR` writes the package there and does not register it. Exit 0 on success; otherwise a message on stderr
 * and exit 1 (2 for a wrong command line).
 *
 * Run by hand: `node examples/feedback-loop/retrain.mjs --context ctx.json [--rows 200] [--out DIR]`.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import YAML from "yaml";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "..", "..");
const MLSHIP_BIN = path.join(REPO, "bin", "mlship.js");
const EXAMPLE_PACKAGE = path.join(HERE, "model");

const DEFAULT_ROWS = 200;
const MIN_ROWS = 20;
const ITERATIONS = 500;
const LEARNING_RATE = 0.5;
const L2 = 1e-3;

class HookError extends Error {
  constructor(message, exitCode = 1) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** The builder from the built package: the public entry once it exports it, else the package module directly. */
async function loadOnnxBuilder() {
  const dist = path.join(REPO, "dist");
  const entry = await import(pathToFileURL(path.join(dist, "index.js")).href).catch(() => ({}));
  if (typeof entry.buildOnnxModel === "function") return entry.buildOnnxModel;
  const file = path.join(dist, "package", "onnx-build.js");
  if (!fs.existsSync(file)) throw new HookError(`${file} is missing: run \`npm run build\` first`);
  return (await import(pathToFileURL(file).href)).buildOnnxModel;
}

function readArgs(argv) {
  try {
    const { values } = parseArgs({
      args: argv,
      options: {
        context: { type: "string" },
        rows: { type: "string" },
        out: { type: "string" },
      },
    });
    const rows = values.rows === undefined ? DEFAULT_ROWS : Number(values.rows);
    if (!Number.isInteger(rows) || rows < MIN_ROWS) throw new Error(`--rows must be an integer >= ${MIN_ROWS}, got ${values.rows}`);
    return { contextFile: values.context, rows, out: values.out };
  } catch (err) {
    throw new HookError(err.message, 2);
  }
}

function readContext(contextFile) {
  const file = contextFile ?? process.env.MLSHIP_RETRAIN_CONTEXT;
  let text;
  if (file !== undefined && file !== "") {
    text = fs.readFileSync(file, "utf8");
  } else if (!process.stdin.isTTY) {
    text = fs.readFileSync(0, "utf8");
  } else {
    throw new HookError("no retraining context: set MLSHIP_RETRAIN_CONTEXT, pipe it on stdin or pass --context FILE", 2);
  }
  let context;
  try {
    context = JSON.parse(text);
  } catch (err) {
    throw new HookError(`the retraining context is not JSON: ${err.message}`);
  }
  if (typeof context?.model !== "string" || typeof context?.recentData?.path !== "string") {
    throw new HookError("the retraining context has no model or recentData.path");
  }
  return context;
}

/** The class index of a posted outcome: a label text, a class index (number or digits) or a boolean. */
function classIndex(actual, labels) {
  if (typeof actual === "boolean") return actual ? 1 : 0;
  if (typeof actual === "string") {
    const at = labels.indexOf(actual);
    if (at >= 0) return at;
    if (/^\d+$/.test(actual.trim())) return classIndex(Number(actual), labels);
    return undefined;
  }
  if (typeof actual === "number" && (actual === 0 || actual === 1)) return actual;
  return undefined;
}

/** The latest `limit` rows with an outcome and complete inputs, as feature vectors and 0/1 targets (oldest first). */
function readTrainingRows(file, columns, labels, limit) {
  const rows = [];
  for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    if (line.trim() === "") continue;
    const record = JSON.parse(line);
    if (record.actual === null || record.actual === undefined || record.inputs === null || typeof record.inputs !== "object") continue;
    const target = classIndex(record.actual, labels);
    if (target === undefined) continue;
    const x = columns.map((c) => Number(record.inputs[c]));
    if (x.some((v) => !Number.isFinite(v))) continue;
    rows.push({ x, y: target, at: record.at ?? "" });
  }
  // The file is oldest first; sort anyway so "latest" does not depend on how the server wrote it.
  rows.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
  return rows.slice(-limit);
}

function meanAndStd(rows, width) {
  const mean = new Array(width).fill(0);
  const std = new Array(width).fill(0);
  for (const { x } of rows) x.forEach((v, j) => (mean[j] += v / rows.length));
  for (const { x } of rows) x.forEach((v, j) => (std[j] += (v - mean[j]) ** 2 / rows.length));
  // A constant column carries no information; dividing by 1 keeps it at 0 after centring.
  return { mean, std: std.map((v) => (v > 0 ? Math.sqrt(v) : 1)) };
}

const sigmoid = (z) => 1 / (1 + Math.exp(-z));

/** Full-batch gradient descent on the mean log loss (+ L2 on the weights), from zero weights: deterministic. */
function fitLogisticRegression(rows, mean, std) {
  const width = mean.length;
  const z = rows.map(({ x }) => x.map((v, j) => (v - mean[j]) / std[j]));
  const weights = new Array(width).fill(0);
  let bias = 0;
  for (let iter = 0; iter < ITERATIONS; iter++) {
    const gradW = new Array(width).fill(0);
    let gradB = 0;
    z.forEach((zi, i) => {
      const err = sigmoid(zi.reduce((s, v, j) => s + v * weights[j], bias)) - rows[i].y;
      zi.forEach((v, j) => (gradW[j] += (err * v) / rows.length));
      gradB += err / rows.length;
    });
    for (let j = 0; j < width; j++) weights[j] -= LEARNING_RATE * (gradW[j] + L2 * weights[j]);
    bias -= LEARNING_RATE * gradB;
  }
  const correct = z.filter((zi, i) => (sigmoid(zi.reduce((s, v, j) => s + v * weights[j], bias)) > 0.5 ? 1 : 0) === rows[i].y).length;
  return { weights, bias, accuracy: correct / rows.length };
}

/**
 * The example's signature: standardise (Sub, Div), logit (MatMul, Add), p = Sigmoid, probabilities = [1 - p, p]
 * (Concat), label = ArgMax. Opset 13 operators only.
 */
function onnxSpec(model, width) {
  const f32 = (name, dims, values) => ({ name, dtype: "float32", dims, values });
  return {
    graphName: "retrained_logistic_regression",
    producer: "mlship examples/feedback-loop/retrain.mjs",
    inputs: [{ name: "input", dtype: "float32", shape: ["batch", width] }],
    outputs: [
      { name: "probabilities", dtype: "float32", shape: ["batch", 2] },
      { name: "label", dtype: "int64", shape: ["batch"] },
    ],
    initializers: [
      f32("mean", [width], model.mean),
      f32("std", [width], model.std),
      f32("weights", [width, 1], model.weights),
      f32("bias", [1], [model.bias]),
      f32("one", [1], [1]),
    ],
    nodes: [
      { op: "Sub", inputs: ["input", "mean"], outputs: ["centred"] },
      { op: "Div", inputs: ["centred", "std"], outputs: ["standardised"] },
      { op: "MatMul", inputs: ["standardised", "weights"], outputs: ["weighted"] },
      { op: "Add", inputs: ["weighted", "bias"], outputs: ["logit"] },
      { op: "Sigmoid", inputs: ["logit"], outputs: ["p_positive"] },
      { op: "Sub", inputs: ["one", "p_positive"], outputs: ["p_negative"] },
      { op: "Concat", inputs: ["p_negative", "p_positive"], outputs: ["probabilities"], attrs: { axis: 1 } },
      { op: "ArgMax", inputs: ["probabilities"], outputs: ["label"], attrs: { axis: 1, keepdims: 0 } },
    ],
  };
}

function writePackage(dir, manifest, onnxBytes, summary, context) {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "model.onnx"), onnxBytes);
  fs.copyFileSync(path.join(EXAMPLE_PACKAGE, "input_example.json"), path.join(dir, "input_example.json"));
  const metadata = { ...manifest.metadata };
  // The fingerprint named the original training data; this model was fitted on other rows.
  delete metadata.training_data_fingerprint;
  manifest.metadata = {
    ...metadata,
    framework: "mlship examples/feedback-loop/retrain.mjs (logistic regression)",
    description: `retrained by the feedback-loop hook on ${summary.rows} recent labelled predictions of ${context.model}@${context.version}`,
    created_at: new Date().toISOString(),
    params: { rows: summary.rows, iterations: ITERATIONS, learning_rate: LEARNING_RATE, l2: L2, retrained_from: context.version },
    metrics: { train_accuracy: summary.accuracy },
    tags: { ...metadata.tags, retrained_by: "feedback-loop", trigger: (context.alerts ?? []).map((a) => a.kind).join(",") || "manual" },
  };
  fs.writeFileSync(path.join(dir, "mlship.yaml"), YAML.stringify(manifest));
}

function register(dir, model) {
  const result = spawnSync(process.execPath, [MLSHIP_BIN, "models", "register", dir, "--name", model], {
    env: process.env,
    encoding: "utf8",
  });
  if (result.status !== 0) {
    throw new HookError(`mlship models register failed (exit ${result.status}): ${(result.stderr || result.error?.message || "").trim()}`);
  }
  return result.stdout.trim();
}

async function main(argv) {
  const args = readArgs(argv);
  const context = readContext(args.contextFile);
  const manifest = YAML.parse(fs.readFileSync(path.join(EXAMPLE_PACKAGE, "mlship.yaml"), "utf8"));
  const columns = manifest.signature.columns;
  const labels = manifest.feedback?.labels ?? manifest.metadata?.class_labels ?? ["0", "1"];
  if (!fs.existsSync(context.recentData.path)) throw new HookError(`recentData.path ${context.recentData.path} does not exist`);

  const rows = readTrainingRows(context.recentData.path, columns, labels, args.rows);
  if (rows.length < MIN_ROWS) throw new HookError(`only ${rows.length} recent predictions have an outcome; need at least ${MIN_ROWS}`);
  if (new Set(rows.map((r) => r.y)).size < 2) throw new HookError(`the ${rows.length} labelled rows hold one class only; nothing to learn`);

  const { mean, std } = meanAndStd(rows, columns.length);
  const fitted = fitLogisticRegression(rows, mean, std);
  const buildOnnxModel = await loadOnnxBuilder();
  const onnxBytes = buildOnnxModel(onnxSpec({ ...fitted, mean, std }, columns.length));
  const summary = { rows: rows.length, accuracy: Number(fitted.accuracy.toFixed(6)) };

  const dir = args.out ?? fs.mkdtempSync(path.join(os.tmpdir(), "mlship-retrain-"));
  try {
    writePackage(dir, manifest, onnxBytes, summary, context);
    if (args.out !== undefined) {
      process.stdout.write(`${JSON.stringify({ package: dir, ...summary })}\n`);
      return;
    }
    const version = register(dir, context.model);
    process.stdout.write(`${JSON.stringify({ model: context.model, version: Number(version), ...summary })}\n`);
  } finally {
    if (args.out === undefined) fs.rmSync(dir, { recursive: true, force: true });
  }
}

main(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`retrain: ${err.message}\n`);
  process.exitCode = err instanceof HookError ? err.exitCode : 1;
});
