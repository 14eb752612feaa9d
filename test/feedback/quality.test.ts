import fs from "node:fs";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { averageRanks, computeQuality, labelOf, rocAuc } from "../../src/feedback/quality.js";
import type { FeedbackSpec, JoinedPrediction } from "../../src/feedback/types.js";

const FIXTURES = path.resolve(__dirname, "../../../shared/fixtures");

function spec(partial: Partial<FeedbackSpec> & Pick<FeedbackSpec, "task">): FeedbackSpec {
  return { predictionOutput: "label", inputs: "full", sampleRate: 0.1, thresholds: [], ...partial };
}

let sequence = 0;
function row(prediction: string | number | null, actual: string | number | boolean | null, scores: number[] | null = null): JoinedPrediction {
  sequence++;
  return {
    requestId: `req-${sequence}`,
    row: 0,
    model: "m",
    version: 1,
    variant: null,
    at: "2026-11-30T10:00:00.000Z",
    prediction,
    scores,
    // Booleans are what a client may post; the store keeps them as they came.
    actual: actual as string | number | null,
    actualAt: actual === null ? null : "2026-11-30T11:00:00.000Z",
  };
}

/** AUC by counting pairs (positive score above negative: 1, tie: 1/2), independent of the rank formula. */
function pairCountAuc(positive: boolean[], scores: number[]): number {
  let wins = 0;
  let pairs = 0;
  for (let i = 0; i < scores.length; i++) {
    if (!positive[i]) continue;
    for (let j = 0; j < scores.length; j++) {
      if (positive[j]) continue;
      pairs++;
      const si = scores[i] as number;
      const sj = scores[j] as number;
      wins += si > sj ? 1 : si === sj ? 0.5 : 0;
    }
  }
  return wins / pairs;
}

function readCsv(file: string): { header: string[]; rows: number[][] } {
  const [head, ...lines] = fs.readFileSync(file, "utf8").trim().split("\n");
  return { header: (head as string).split(","), rows: lines.map((line) => line.split(",").map(Number)) };
}

/** Runs a fixture model on its whole prod.csv with onnxruntime: the real model's outputs on held-out data. */
async function runFixture(fixture: string, labelColumn: string): Promise<{ outputs: Record<string, ort.Tensor>; labels: number[]; expected: { outputs: Record<string, unknown> } }> {
  const dir = path.join(FIXTURES, fixture);
  const { header, rows } = readCsv(path.join(dir, "prod.csv"));
  const labelIndex = header.indexOf(labelColumn);
  const features = rows.map((r) => r.filter((_, i) => i !== labelIndex));
  const width = (features[0] as number[]).length;
  const session = await ort.InferenceSession.create(path.join(dir, "model.onnx"));
  try {
    const input = new ort.Tensor("float32", Float32Array.from(features.flat()), [features.length, width]);
    const outputs = await session.run({ input });
    const expected = JSON.parse(fs.readFileSync(path.join(dir, "expected.json"), "utf8")) as { outputs: Record<string, unknown> };
    return { outputs, labels: rows.map((r) => r[labelIndex] as number), expected };
  } finally {
    await session.release();
  }
}

/** Ordinary least squares with an intercept (scikit-learn's LinearRegression), on centred data, in float64. */
function fitLeastSquares(x: number[][], y: number[]): (features: number[]) => number {
  const n = x.length;
  const k = (x[0] as number[]).length;
  const xMean = Array.from({ length: k }, (_, j) => x.reduce((s, r) => s + (r[j] as number), 0) / n);
  const yMean = y.reduce((s, v) => s + v, 0) / n;
  // Normal equations [X'X | X'y] on centred columns, solved by Gauss-Jordan elimination with partial pivoting.
  const a = Array.from({ length: k }, (_, i) => {
    const line = Array.from({ length: k + 1 }, () => 0);
    for (let r = 0; r < n; r++) {
      const xi = (x[r] as number[])[i]! - xMean[i]!;
      for (let j = 0; j < k; j++) line[j]! += xi * ((x[r] as number[])[j]! - xMean[j]!);
      line[k]! += xi * (y[r]! - yMean);
    }
    return line;
  });
  for (let c = 0; c < k; c++) {
    let pivot = c;
    for (let r = c + 1; r < k; r++) if (Math.abs(a[r]![c]!) > Math.abs(a[pivot]![c]!)) pivot = r;
    [a[c], a[pivot]] = [a[pivot]!, a[c]!];
    for (let r = 0; r < k; r++) {
      if (r === c) continue;
      const factor = a[r]![c]! / a[c]![c]!;
      for (let j = c; j <= k; j++) a[r]![j]! -= factor * a[c]![j]!;
    }
  }
  const coef = a.map((line, i) => line[k]! / line[i]!);
  const intercept = yMean - coef.reduce((s, b, j) => s + b * xMean[j]!, 0);
  return (features) => intercept + coef.reduce((s, b, j) => s + b * features[j]!, 0);
}

function metadataMetric(model: string, name: string): number {
  const text = fs.readFileSync(path.resolve(__dirname, `../../examples/models/${model}/mlship.yaml`), "utf8");
  const match = new RegExp(`^\\s+${name}: ([0-9.]+)$`, "m").exec(text);
  if (match === null) throw new Error(`${name} not in ${model}/mlship.yaml`);
  return Number(match[1]);
}

describe("labelOf", () => {
  const binary = spec({ task: "binary_classification", labels: ["malignant", "benign"] });
  it("maps indexes, index text, booleans and labels to the label text", () => {
    expect(labelOf(1, binary)).toBe("benign");
    expect(labelOf(0, binary)).toBe("malignant");
    expect(labelOf("1", binary)).toBe("benign");
    expect(labelOf(true, binary)).toBe("benign");
    expect(labelOf(false, binary)).toBe("malignant");
    expect(labelOf("benign", binary)).toBe("benign");
    expect(labelOf(7, binary)).toBe("7");
    expect(labelOf(null, binary)).toBeNull();
    expect(labelOf(true, spec({ task: "multiclass_classification", labels: ["a", "b", "c"] }))).toBe("true");
    expect(labelOf(false, spec({ task: "binary_classification" }))).toBe("false");
  });
});

describe("averageRanks and rocAuc", () => {
  it("averages tied ranks like scipy.stats.rankdata", () => {
    expect(averageRanks([0.5, 0.1, 0.5, 0.9, 0.5])).toEqual([3, 1, 3, 5, 3]);
  });
  it("is null with one class only", () => {
    expect(rocAuc([true, true], [0.1, 0.2])).toBeNull();
  });
});

describe("computeQuality: binary classification", () => {
  // Positive "yes"; predicted "yes" when the score is >= 0.5. TP 4, FP 1, FN 1, TN 4.
  const s = [0.9, 0.3, 0.6, 0.6, 0.6, 0.1, 0.8, 0.45, 0.2, 0.05];
  // Actuals posted in the three accepted forms: label text, class index, boolean.
  const actual: (string | number | boolean)[] = ["yes", 0, 1, true, "no", false, "yes", 0, 1, "no"];
  const binary = spec({ task: "binary_classification", labels: ["no", "yes"], probabilityOutput: "probabilities" });
  const rows = [...s.map((p, i) => row(p >= 0.5 ? "yes" : "no", actual[i] as string, [1 - p, p])), row("yes", null, [0.2, 0.8]), row("no", null, [0.9, 0.1])];

  it("computes accuracy, precision, recall, F1, ROC AUC and log loss", () => {
    const quality = computeQuality(rows, binary);
    expect(quality.predictions).toBe(12);
    expect(quality.outcomes).toBe(10);
    expect(quality.coverage).toBeCloseTo(10 / 12, 12);
    expect(quality.metrics.accuracy).toBeCloseTo(0.8, 12);
    expect(quality.metrics.precision).toBeCloseTo(0.8, 12);
    expect(quality.metrics.recall).toBeCloseTo(0.8, 12);
    expect(quality.metrics.f1).toBeCloseTo(0.8, 12);
    // Reference values: scipy.stats.mannwhitneyu(pos, neg).statistic / 25 = 0.84, and
    // numpy -mean(log(clip(p_actual, 1e-15, 1 - 1e-15))) = 0.4987049713552002 (scipy 1.17.1).
    expect(quality.metrics.roc_auc).toBeCloseTo(0.84, 12);
    const flags = s.map((_, i) => ["yes", 1, true].includes(actual[i] as string));
    expect(quality.metrics.roc_auc).toBeCloseTo(pairCountAuc(flags, s), 12);
    expect(quality.metrics.log_loss).toBeCloseTo(0.4987049713552002, 12);
    expect(quality.confusion).toEqual({ labels: ["no", "yes"], matrix: [[4, 1], [1, 4]] });
  });

  it("uses the configured positive label", () => {
    const quality = computeQuality(rows, { ...binary, positiveLabel: "no" });
    // For "no": TP 4, FP 1 (actual yes predicted no), FN 1.
    expect(quality.metrics.precision).toBeCloseTo(0.8, 12);
    expect(quality.metrics.recall).toBeCloseTo(0.8, 12);
    // Flipping both the class and the score column leaves the AUC as it was.
    expect(quality.metrics.roc_auc).toBeCloseTo(0.84, 12);
  });

  it("gives zero precision without positive predictions and null AUC with one class (zero_division=0)", () => {
    const quality = computeQuality([row("no", "no", [0.9, 0.1]), row("no", "no", [0.8, 0.2]), row("no", "yes", [0.7, 0.3])], binary);
    expect(quality.metrics.precision).toBe(0);
    expect(quality.metrics.recall).toBe(0);
    expect(quality.metrics.f1).toBe(0);
    expect(quality.metrics.roc_auc).toBeCloseTo(1, 12);
    const oneClass = computeQuality([row("no", "no", [0.9, 0.1]), row("yes", "no", [0.4, 0.6])], binary);
    expect(oneClass.metrics.roc_auc).toBeNull();
    expect(oneClass.metrics.accuracy).toBe(0.5);
  });

  it("clips probabilities in the log loss and leaves score metrics null without scores", () => {
    const clipped = computeQuality([row("yes", "no", [0, 1])], binary);
    expect(clipped.metrics.log_loss).toBeCloseTo(-Math.log(1e-15), 9);
    const unscored = computeQuality([row("yes", "yes"), row("no", "yes")], binary);
    expect(unscored.metrics.roc_auc).toBeNull();
    expect(unscored.metrics.log_loss).toBeNull();
    expect(unscored.metrics.accuracy).toBe(0.5);
  });

  it("reports nulls without outcomes and null coverage without predictions", () => {
    const quality = computeQuality([row("yes", null)], binary);
    expect(quality).toMatchObject({ predictions: 1, outcomes: 0, coverage: 0 });
    expect(quality.metrics).toEqual({ accuracy: null, precision: null, recall: null, f1: null, roc_auc: null, log_loss: null });
    expect(computeQuality([], binary).coverage).toBeNull();
  });
});

describe("computeQuality: multiclass classification", () => {
  const labels = ["cat", "dog", "bird"];
  const multi = spec({ task: "multiclass_classification", labels, probabilityOutput: "probabilities" });
  const actual = ["cat", "cat", "cat", "dog", "dog", "dog", "bird", "bird", "bird"];
  const predicted = ["cat", "cat", "dog", "dog", "dog", "cat", "bird", "dog", "bird"];
  const scores = [
    [0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.3, 0.5, 0.2], [0.1, 0.8, 0.1], [0.2, 0.6, 0.2],
    [0.5, 0.4, 0.1], [0.1, 0.2, 0.7], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8],
  ];
  // Actuals posted as class indexes for the dogs.
  const rows = actual.map((a, i) => row(predicted[i] as string, a === "dog" ? 1 : a, scores[i] as number[]));

  it("computes macro precision, recall and F1 (per class by hand), OvR AUC and log loss", () => {
    const quality = computeQuality(rows, multi);
    expect(quality.metrics.accuracy).toBeCloseTo(6 / 9, 12);
    // cat P 2/3 R 2/3 F1 2/3; dog P 2/4 R 2/3 F1 4/7; bird P 1 R 2/3 F1 4/5.
    expect(quality.metrics.precision).toBeCloseTo(13 / 18, 12);
    expect(quality.metrics.recall).toBeCloseTo(2 / 3, 12);
    expect(quality.metrics.f1).toBeCloseTo(214 / 315, 12);
    // Reference: mean over classes of scipy.stats.mannwhitneyu(pos, neg).statistic / (P N) = 0.9444444444444443,
    // log loss numpy -mean(log(clip(p_actual))) = 0.6117249531737659 (scipy 1.17.1).
    expect(quality.metrics.roc_auc).toBeCloseTo(0.9444444444444443, 12);
    const perClass = labels.map((label, k) => pairCountAuc(actual.map((a) => a === label), scores.map((s) => s[k] as number)));
    expect(quality.metrics.roc_auc).toBeCloseTo((perClass[0]! + perClass[1]! + perClass[2]!) / 3, 12);
    expect(quality.metrics.log_loss).toBeCloseTo(0.6117249531737659, 12);
    expect(quality.confusion).toEqual({ labels, matrix: [[2, 1, 0], [1, 2, 0], [0, 1, 2]] });
  });

  it("averages over the labels present and appends unseen labels to the confusion matrix", () => {
    const quality = computeQuality([row("cat", "cat"), row("cat", "fish"), row("dog", "dog")], multi);
    // Present: cat (P 1/2 R 1), fish (P 0 R 0), dog (P 1 R 1); bird is neither actual nor predicted.
    expect(quality.metrics.precision).toBeCloseTo((0.5 + 0 + 1) / 3, 12);
    expect(quality.metrics.recall).toBeCloseTo((1 + 0 + 1) / 3, 12);
    expect(quality.metrics.f1).toBeCloseTo((2 / 3 + 0 + 1) / 3, 12);
    expect(quality.metrics.roc_auc).toBeNull();
    expect(quality.confusion?.labels).toEqual(["cat", "dog", "bird", "fish"]);
    expect(quality.confusion?.matrix[3]).toEqual([1, 0, 0, 0]);
  });

  it("gives a null AUC when a class has no positives", () => {
    const quality = computeQuality(rows.slice(0, 6), multi);
    expect(quality.metrics.roc_auc).toBeNull();
    expect(quality.metrics.log_loss).not.toBeNull();
  });
});

describe("computeQuality: regression", () => {
  const regression = spec({ task: "regression", predictionOutput: "prediction" });

  it("computes MAE, RMSE, R2 and MAPE like scikit-learn", () => {
    const actual = [3, -0.5, 2, 7];
    const predicted = [2.5, 0.0, 2, 8];
    const quality = computeQuality(actual.map((a, i) => row(predicted[i] as number, a)), regression);
    // scikit-learn's own docstring examples for these inputs: mae 0.5, mse 0.375, r2 0.9486081370449679,
    // mape 0.3273809523809524.
    expect(quality.metrics.mae).toBeCloseTo(0.5, 12);
    expect(quality.metrics.rmse).toBeCloseTo(Math.sqrt(0.375), 12);
    expect(quality.metrics.r2).toBeCloseTo(0.9486081370449679, 12);
    expect(quality.metrics.mape).toBeCloseTo(0.3273809523809524, 12);
  });

  it("skips non-numeric actuals, floors |y| in MAPE and leaves R2 null when it is undefined", () => {
    const quality = computeQuality([row(1, 0), row(2, "n/a"), row(3, "3"), row(4, null)], regression);
    expect(quality.outcomes).toBe(2);
    expect(quality.coverage).toBe(0.5);
    expect(quality.metrics.mape).toBeCloseTo((1 / 2.220446049250313e-16 + 0) / 2, 0);
    expect(computeQuality([row(1, 2)], regression).metrics.r2).toBeNull();
    expect(computeQuality([row(1, 2), row(3, 2)], regression).metrics.r2).toBeNull();
  });
});

describe("computeQuality on the real fixtures", () => {
  it("breast-cancer: the model's prod accuracy is the one in its package metadata", async () => {
    const { outputs, labels, expected } = await runFixture("breast_cancer_mlp", "label");
    const probabilities = outputs.probabilities!.data as Float32Array;
    const predictedIndex = Array.from(outputs.label!.data as BigInt64Array, Number);
    // Our run reproduces the fixture's expected outputs on its first 50 rows.
    expect(predictedIndex.slice(0, 50)).toEqual(expected.outputs.label);
    const classLabels = ["malignant", "benign"];
    const rows = labels.map((actual, i) =>
      row(classLabels[predictedIndex[i] as number] as string, actual, [probabilities[2 * i] as number, probabilities[2 * i + 1] as number]),
    );
    const quality = computeQuality(rows, spec({ task: "binary_classification", labels: classLabels, probabilityOutput: "probabilities" }));
    expect(quality.predictions).toBe(143);
    expect(quality.outcomes).toBe(143);
    expect(Math.abs((quality.metrics.accuracy as number) - metadataMetric("breast-cancer", "prod_accuracy"))).toBeLessThan(1e-6);

    const positive = labels.map((l) => l === 1);
    const benignScores = labels.map((_, i) => probabilities[2 * i + 1] as number);
    expect(quality.metrics.roc_auc).toBeCloseTo(pairCountAuc(positive, benignScores), 12);
    const cm = quality.confusion!.matrix;
    const [tn, fp] = cm[0] as [number, number];
    const [fn, tp] = cm[1] as [number, number];
    expect(tn + fp + fn + tp).toBe(143);
    expect(quality.metrics.precision).toBeCloseTo(tp / (tp + fp), 12);
    expect(quality.metrics.recall).toBeCloseTo(tp / (tp + fn), 12);
    let loss = 0;
    for (let i = 0; i < labels.length; i++) loss -= Math.log(Math.min(Math.max(probabilities[2 * i + (labels[i] as number)] as number, 1e-15), 1 - 1e-15));
    expect(quality.metrics.log_loss).toBeCloseTo(loss / 143, 12);
  });

  it("diabetes: RMSE and R2 of scikit-learn's float64 predictions are the ones in the package metadata", async () => {
    const dir = path.join(FIXTURES, "diabetes_linear");
    const train = readCsv(path.join(dir, "train.csv")).rows;
    const prod = readCsv(path.join(dir, "prod.csv")).rows;
    // The metadata was computed from LinearRegression's float64 predictions; refit the same least squares in float64
    // (it reproduces expected.json's `sklearn_predict_float64`) to check the formulas at the 1e-6 the metadata keeps.
    const predict = fitLeastSquares(train.map((r) => r.slice(0, 10)), train.map((r) => r[10] as number));
    const expected = JSON.parse(fs.readFileSync(path.join(dir, "expected.json"), "utf8")) as { sklearn_predict_float64: number[] };
    for (let i = 0; i < 50; i++) expect(Math.abs(predict((prod[i] as number[]).slice(0, 10)) - (expected.sklearn_predict_float64[i] as number))).toBeLessThan(1e-8);
    const regression = spec({ task: "regression", predictionOutput: "prediction" });
    const quality = computeQuality(prod.map((r) => row(predict(r.slice(0, 10)), r[10] as number)), regression);
    expect(quality.outcomes).toBe(111);
    expect(Math.abs((quality.metrics.rmse as number) - metadataMetric("diabetes", "prod_rmse"))).toBeLessThan(1e-6);
    expect(Math.abs((quality.metrics.r2 as number) - metadataMetric("diabetes", "prod_r2"))).toBeLessThan(1e-6);

    // The ONNX model computes in float32 (weights and sums): its outputs land within 1e-5 of the same numbers.
    const { outputs, labels: targets } = await runFixture("diabetes_linear", "target");
    const predictions = Array.from(outputs.prediction!.data as Float32Array);
    const live = computeQuality(targets.map((target, i) => row(predictions[i] as number, target)), regression);
    expect(Math.abs((live.metrics.rmse as number) - metadataMetric("diabetes", "prod_rmse"))).toBeLessThan(1e-5);
    expect(Math.abs((live.metrics.r2 as number) - metadataMetric("diabetes", "prod_r2"))).toBeLessThan(1e-6);
  });
});
