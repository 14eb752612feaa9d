/**
 * Linear, probabilistic, clustering and MLP Spark ML models (src/runtime/sparkml/linear.ts) and the shared
 * prediction plumbing (predict.ts). Expected values are computed here by hand from Spark's documented formulas
 * (`../shared/docs/sparkml-format.md` §3, §4, §6), never by calling the code under test.
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { asyncBufferFromFile, parquetReadObjects } from "hyparquet";
import { afterEach, describe, expect, it } from "vitest";
import { MlshipError } from "../../src/core/index.js";
import { makeStageContext, readMetadata, readParquetRows } from "../../src/runtime/sparkml/io.js";
import { linearLoaders } from "../../src/runtime/sparkml/linear.js";
import { probabilityToPrediction, softmaxInPlace } from "../../src/runtime/sparkml/predict.js";
import type { Frame, FrameColumn, LoadedStage, SparkMatrix, SparkVector, StageContext, StageMetadata } from "../../src/runtime/sparkml/types.js";
import { MATRIX, VECTOR, writeSparkStage } from "../helpers/sparkml-writer.js";
import { FIXTURES } from "./util.js";

const LR = "org.apache.spark.ml.classification.LogisticRegressionModel";
const LINREG = "org.apache.spark.ml.regression.LinearRegressionModel";
const SVC = "org.apache.spark.ml.classification.LinearSVCModel";
const NB = "org.apache.spark.ml.classification.NaiveBayesModel";
const KMEANS = "org.apache.spark.ml.clustering.KMeansModel";
const MLP = "org.apache.spark.ml.classification.MultilayerPerceptronClassificationModel";
const TOLERANCE = 1e-9;

/** Temp directories of the current test, removed after it. */
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

/** Spark 3.x writes the column params' defaults in defaultParamMap. */
const CLASSIFIER_DEFAULTS = {
  featuresCol: "features",
  predictionCol: "prediction",
  rawPredictionCol: "rawPrediction",
  probabilityCol: "probability",
  labelCol: "label",
};

const dense = (values: readonly number[]): SparkVector => ({ type: "dense", values: Float64Array.from(values) });
const sparse = (size: number, indices: readonly number[], values: readonly number[]): SparkVector => ({
  type: "sparse",
  size,
  indices: Int32Array.from(indices),
  values: Float64Array.from(values),
});
const denseMatrix = (numRows: number, numCols: number, values: readonly number[], isTransposed: boolean): SparkMatrix => ({
  type: "dense",
  numRows,
  numCols,
  values: Float64Array.from(values),
  isTransposed,
});

/** A StageContext over in-memory metadata and `data/` rows shaped as the Parquet reader decodes them. */
function fakeContext(
  className: string,
  params: { paramMap?: Record<string, unknown>; defaultParamMap?: Record<string, unknown>; sparkVersion?: string },
  rows: Record<string, unknown>[],
): StageContext {
  const metadata: StageMetadata = {
    class: className,
    uid: `${className.split(".").pop() ?? "stage"}_0123456789ab`,
    sparkVersion: params.sparkVersion ?? "3.5.1",
    timestamp: 1_700_000_000_000,
    paramMap: params.paramMap ?? {},
    ...(params.defaultParamMap !== undefined ? { defaultParamMap: params.defaultParamMap } : {}),
  };
  return {
    dir: `/in-memory/${metadata.uid}`,
    metadata,
    param<T>(name: string, fallback?: T): T | undefined {
      if (Object.hasOwn(metadata.paramMap, name)) return metadata.paramMap[name] as T;
      if (metadata.defaultParamMap && Object.hasOwn(metadata.defaultParamMap, name)) return metadata.defaultParamMap[name] as T;
      return fallback;
    },
    readParquet: (sub = "data") => Promise.resolve(sub === "data" ? rows : []),
    loadStage: () => Promise.reject(new Error("no nested stages here")),
  };
}

async function load(context: StageContext): Promise<LoadedStage> {
  const loader = linearLoaders[context.metadata.class];
  if (loader === undefined) throw new Error(`no loader for ${context.metadata.class}`);
  return loader(context);
}

function featureFrame(vectors: readonly (SparkVector | null)[], column = "features"): Frame {
  return { rows: vectors.length, columns: new Map<string, FrameColumn>([[column, { kind: "vector", values: vectors }]]) };
}

function doubles(frame: Frame, name: string): number[] {
  const column = frame.columns.get(name);
  if (column?.kind !== "double") throw new Error(`${name} is not a double column`);
  return Array.from(column.values);
}

function vectors(frame: Frame, name: string): number[][] {
  const column = frame.columns.get(name);
  if (column?.kind !== "vector") throw new Error(`${name} is not a vector column`);
  return column.values.map((vector) => {
    if (vector === null || vector.type !== "dense") throw new Error(`${name} holds a non-dense vector`);
    return Array.from(vector.values);
  });
}

function expectClose(actual: readonly number[], expected: readonly number[]): void {
  expect(actual).toHaveLength(expected.length);
  actual.forEach((value, i) => expect(Math.abs(value - (expected[i] as number))).toBeLessThanOrEqual(TOLERANCE));
}

function expectRowsClose(actual: readonly (readonly number[])[], expected: readonly (readonly number[])[]): void {
  expect(actual).toHaveLength(expected.length);
  actual.forEach((row, i) => expectClose(row, expected[i] as number[]));
}

/** Plain-array math, written out independently of the code under test. */
const full = (v: SparkVector): number[] => {
  if (v.type === "dense") return Array.from(v.values);
  const out = new Array<number>(v.size).fill(0);
  v.indices.forEach((index, k) => (out[index] = v.values[k] as number));
  return out;
};
const dotArrays = (a: readonly number[], b: readonly number[]): number => a.reduce((sum, value, i) => sum + value * (b[i] as number), 0);
const logistic = (z: number): number => 1 / (1 + Math.exp(-z));
const softmax = (z: readonly number[]): number[] => {
  const max = Math.max(...z);
  const exps = z.map((value) => Math.exp(value - max));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((value) => value / total);
};
const firstMax = (values: readonly number[]): number => values.indexOf(Math.max(...values));

function expectInputInvalid(run: () => unknown, field: string): void {
  let caught: unknown;
  try {
    run();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(MlshipError);
  expect((caught as MlshipError).code).toBe("MLSHIP_ERR_INPUT_INVALID");
  expect((caught as MlshipError).field).toBe(field);
}

describe("predict.ts plumbing", () => {
  it("thresholds pick argmax of p/t with a strict scan: t=0 wins unless p=0, ties go low", () => {
    expect(probabilityToPrediction([0.2, 0.5, 0.3])).toBe(1);
    expect(probabilityToPrediction([0.4, 0.4, 0.2])).toBe(0);
    // 0.2/0.1 = 2 > 0.5/0.5 = 1
    expect(probabilityToPrediction([0.2, 0.5, 0.3], [0.1, 0.5, 0.5])).toBe(0);
    // a zero threshold gives +Inf to its class ...
    expect(probabilityToPrediction([0.7, 0.1, 0.2], [1, 0, 1])).toBe(1);
    // ... but 0/0 is NaN and never selected
    expect(probabilityToPrediction([0.7, 0, 0.3], [1, 0, 1])).toBe(0);
  });

  it("softmax subtracts the max, so huge margins do not overflow", () => {
    const probabilities = Array.from(softmaxInPlace(Float64Array.of(1000, 1001, 999)));
    const e = [Math.exp(-1), 1, Math.exp(-2)];
    const total = e[0]! + e[1]! + e[2]!;
    expectClose(probabilities, e.map((value) => value / total));
  });
});

describe("LogisticRegressionModel", () => {
  const binomialCoefficients = [0.5, -1.25, 2];
  const binomialIntercept = -0.3;
  const binomialRows = [
    {
      numClasses: 2,
      numFeatures: 3,
      interceptVector: dense([binomialIntercept]),
      coefficientMatrix: denseMatrix(1, 3, binomialCoefficients, true),
      isMultinomial: false,
    },
  ];
  const inputs: SparkVector[] = [dense([1, 2, 0.5]), sparse(3, [2], [0.4]), dense([0, 0, 0]), dense([3, -1, 0.1]), sparse(3, [0, 1], [-2, 0.7])];

  function binomialExpected(threshold: number): { raw: number[][]; probability: number[][]; prediction: number[] } {
    const margins = inputs.map((x) => dotArrays(full(x), binomialCoefficients) + binomialIntercept);
    return {
      raw: margins.map((m) => [-m, m]),
      probability: margins.map((m) => [1 - logistic(m), logistic(m)]),
      prediction: margins.map((m) => (logistic(m) > threshold ? 1 : 0)),
    };
  }

  it("binomial: rawPrediction [-m, m], sigmoid probability, default threshold 0.5", async () => {
    const stage = await load(fakeContext(LR, { paramMap: {}, defaultParamMap: { ...CLASSIFIER_DEFAULTS, threshold: 0.5 } }, binomialRows));
    expect(stage.inputs).toEqual([{ name: "features", kind: "vector", size: 3 }]);
    expect(stage.outputs).toEqual([
      { name: "rawPrediction", kind: "vector", size: 2 },
      { name: "probability", kind: "vector", size: 2 },
      { name: "prediction", kind: "double" },
    ]);
    const input = featureFrame(inputs);
    const out = stage.transform(input);
    const expected = binomialExpected(0.5);
    expectRowsClose(vectors(out, "rawPrediction"), expected.raw);
    expectRowsClose(vectors(out, "probability"), expected.probability);
    expect(doubles(out, "prediction")).toEqual(expected.prediction);
    // transform is pure: the input frame is untouched, the output keeps the input column
    expect([...input.columns.keys()]).toEqual(["features"]);
    expect([...out.columns.keys()]).toEqual(["features", "rawPrediction", "probability", "prediction"]);
  });

  it("binomial: threshold moves the decision, thresholds [t0, t1] mean t = 1/(1 + t0/t1)", async () => {
    const expected = binomialExpected(0.7);
    // sanity: the inputs straddle both thresholds, so the test can tell 0.5 from 0.7
    expect(expected.prediction).not.toEqual(binomialExpected(0.5).prediction);
    const viaThreshold = await load(fakeContext(LR, { paramMap: { threshold: 0.7 }, defaultParamMap: CLASSIFIER_DEFAULTS }, binomialRows));
    expect(doubles(viaThreshold.transform(featureFrame(inputs)), "prediction")).toEqual(expected.prediction);
    const viaThresholds = await load(
      fakeContext(LR, { paramMap: { thresholds: [0.3, 0.7] }, defaultParamMap: { ...CLASSIFIER_DEFAULTS, threshold: 0.5 } }, binomialRows),
    );
    expect(doubles(viaThresholds.transform(featureFrame(inputs)), "prediction")).toEqual(expected.prediction);
    // threshold 0 => every row is class 1 (margin threshold -Inf); threshold 1 => none
    const zero = await load(fakeContext(LR, { paramMap: { threshold: 0 } }, binomialRows));
    expect(doubles(zero.transform(featureFrame(inputs)), "prediction")).toEqual(inputs.map(() => 1));
    const one = await load(fakeContext(LR, { paramMap: { threshold: 1 } }, binomialRows));
    expect(doubles(one.transform(featureFrame(inputs)), "prediction")).toEqual(inputs.map(() => 0));
  });

  it("binomial: a sparse row-major coefficient matrix and custom/empty column names", async () => {
    const rows = [
      {
        numClasses: 2,
        numFeatures: 3,
        interceptVector: dense([binomialIntercept]),
        // 1x3 CSR: row pointers [0, 3], column indices 0..2
        coefficientMatrix: {
          type: "sparse",
          numRows: 1,
          numCols: 3,
          colPtrs: Int32Array.of(0, 3),
          rowIndices: Int32Array.of(0, 1, 2),
          values: Float64Array.from(binomialCoefficients),
          isTransposed: true,
        } satisfies SparkMatrix,
        isMultinomial: false,
      },
    ];
    const params = { featuresCol: "x", rawPredictionCol: "", probabilityCol: "p", predictionCol: "label_hat", threshold: 0.7 };
    const stage = await load(fakeContext(LR, { paramMap: params, defaultParamMap: CLASSIFIER_DEFAULTS }, rows));
    expect(stage.outputs.map((column) => column.name)).toEqual(["p", "label_hat"]);
    const out = stage.transform(featureFrame(inputs, "x"));
    expect(out.columns.has("rawPrediction")).toBe(false);
    const expected = binomialExpected(0.7);
    expectRowsClose(vectors(out, "p"), expected.probability);
    expect(doubles(out, "label_hat")).toEqual(expected.prediction);

    // every output disabled: Spark's transform is a no-op
    const none = await load(fakeContext(LR, { paramMap: { rawPredictionCol: "", probabilityCol: "", predictionCol: "" } }, rows));
    expect(none.outputs).toEqual([]);
    const frame = featureFrame(inputs);
    expect(none.transform(frame)).toBe(frame);
  });

  it("Spark <= 2.0 layout (intercept + coefficients) loads as binomial", async () => {
    const rows = [{ numClasses: 2, numFeatures: 3, intercept: binomialIntercept, coefficients: dense(binomialCoefficients) }];
    const stage = await load(fakeContext(LR, { sparkVersion: "2.0.2", paramMap: { ...CLASSIFIER_DEFAULTS, threshold: 0.5 } }, rows));
    const out = stage.transform(featureFrame(inputs));
    const expected = binomialExpected(0.5);
    expectRowsClose(vectors(out, "rawPrediction"), expected.raw);
    expectRowsClose(vectors(out, "probability"), expected.probability);
  });

  // 3 classes x 4 features, W[k][j]
  const W = [
    [0.2, -0.5, 1.5, 0],
    [-1.1, 0.3, 0, 0.8],
    [0.6, 0.9, -0.7, -0.2],
  ];
  const b = [0.1, -0.4, 0.25];
  const multinomialInputs: SparkVector[] = [dense([1, 0, 2, -1]), sparse(4, [1, 3], [3, 1]), dense([0.5, 0.5, 0.5, 0.5]), sparse(4, [], [])];
  const columnMajor = [0, 1, 2, 3].flatMap((j) => W.map((row) => row[j] as number));
  const multinomialRow = (coefficientMatrix: SparkMatrix) => ({
    numClasses: 3,
    numFeatures: 4,
    interceptVector: dense(b),
    coefficientMatrix,
    isMultinomial: true,
  });
  const margins = multinomialInputs.map((x) => W.map((row, k) => dotArrays(full(x), row) + (b[k] as number)));

  it("multinomial: margins W·x + b, softmax probability, argmax prediction", async () => {
    const stage = await load(
      fakeContext(LR, { paramMap: { family: "multinomial" }, defaultParamMap: CLASSIFIER_DEFAULTS }, [multinomialRow(denseMatrix(3, 4, columnMajor, false))]),
    );
    const out = stage.transform(featureFrame(multinomialInputs));
    expectRowsClose(vectors(out, "rawPrediction"), margins);
    expectRowsClose(vectors(out, "probability"), margins.map(softmax));
    expect(doubles(out, "prediction")).toEqual(margins.map(firstMax));
  });

  it("multinomial: a sparse CSC coefficient matrix gives the same scores; `threshold` is ignored, `thresholds` apply", async () => {
    // CSC of W, zeros left out
    const colPtrs = [0];
    const rowIndices: number[] = [];
    const values: number[] = [];
    for (let j = 0; j < 4; j++) {
      W.forEach((row, k) => {
        if (row[j] !== 0) {
          rowIndices.push(k);
          values.push(row[j] as number);
        }
      });
      colPtrs.push(values.length);
    }
    const matrix: SparkMatrix = {
      type: "sparse",
      numRows: 3,
      numCols: 4,
      colPtrs: Int32Array.from(colPtrs),
      rowIndices: Int32Array.from(rowIndices),
      values: Float64Array.from(values),
      isTransposed: false,
    };
    const plain = await load(fakeContext(LR, { paramMap: { threshold: 0.9 }, defaultParamMap: CLASSIFIER_DEFAULTS }, [multinomialRow(matrix)]));
    const out = plain.transform(featureFrame(multinomialInputs));
    expectRowsClose(vectors(out, "rawPrediction"), margins);
    expect(doubles(out, "prediction")).toEqual(margins.map(firstMax));

    const thresholds = [0.6, 0.1, 0.3];
    const expected = margins.map((m) => {
      const scaled = softmax(m).map((p, i) => p / (thresholds[i] as number));
      return firstMax(scaled);
    });
    expect(expected).not.toEqual(margins.map(firstMax));
    const withThresholds = await load(fakeContext(LR, { paramMap: { thresholds }, defaultParamMap: CLASSIFIER_DEFAULTS }, [multinomialRow(matrix)]));
    const thresholded = withThresholds.transform(featureFrame(multinomialInputs));
    expect(doubles(thresholded, "prediction")).toEqual(expected);
    // with rawPrediction disabled the prediction comes from the probability column: same thresholds rule
    const fromProbability = await load(
      fakeContext(LR, { paramMap: { thresholds, rawPredictionCol: "" }, defaultParamMap: CLASSIFIER_DEFAULTS }, [multinomialRow(matrix)]),
    );
    expect(doubles(fromProbability.transform(featureFrame(multinomialInputs)), "prediction")).toEqual(expected);
    // and with only the prediction enabled, from the features
    const onlyPrediction = await load(
      fakeContext(LR, { paramMap: { thresholds, rawPredictionCol: "", probabilityCol: "" } }, [multinomialRow(matrix)]),
    );
    expect(doubles(onlyPrediction.transform(featureFrame(multinomialInputs)), "prediction")).toEqual(expected);
  });

  it("thresholds of the wrong length are refused at load", async () => {
    const context = fakeContext(LR, { paramMap: { thresholds: [0.5, 0.5] } }, [multinomialRow(denseMatrix(3, 4, columnMajor, false))]);
    await expect(load(context)).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_LOAD", field: "thresholds" });
  });

  it("bad inputs throw MLSHIP_ERR_INPUT_INVALID naming the features column", async () => {
    const stage = await load(fakeContext(LR, { paramMap: {}, defaultParamMap: CLASSIFIER_DEFAULTS }, binomialRows));
    expectInputInvalid(() => stage.transform(featureFrame([dense([1, 2])])), "features");
    expectInputInvalid(() => stage.transform(featureFrame([sparse(4, [0], [1])])), "features");
    expectInputInvalid(() => stage.transform(featureFrame([dense([1, 2, 3]), null])), "features");
    expectInputInvalid(() => stage.transform(featureFrame([dense([1, 2, 3])], "other")), "features");
    const declaredWrong: Frame = { rows: 0, columns: new Map([["features", { kind: "vector", values: [], size: 5 }]]) };
    expectInputInvalid(() => stage.transform(declaredWrong), "features");
    const notVectors: Frame = { rows: 1, columns: new Map([["features", { kind: "double", values: Float64Array.of(1) }]]) };
    expectInputInvalid(() => stage.transform(notVectors), "features");
    // an output column that already exists is refused, as Spark's transformSchema does
    const clash: Frame = {
      rows: 1,
      columns: new Map<string, FrameColumn>([
        ["features", { kind: "vector", values: [dense([1, 2, 3])] }],
        ["prediction", { kind: "double", values: Float64Array.of(0) }],
      ]),
    };
    expectInputInvalid(() => stage.transform(clash), "prediction");
  });

  it("the PySpark 2.3 fixture py_log_reg (multinomial, sparse CSR coefficients) scores as softmax(W·x + b)", async () => {
    const dir = path.join(FIXTURES, "sparkml", "py_log_reg");
    const metadata = await readMetadata(dir);
    const stage = await load(makeStageContext(dir, metadata, () => Promise.reject(new Error("no nested stages"))));
    expect(stage.inputs).toEqual([{ name: "features", kind: "vector", size: 692 }]);

    // The expected side decodes the Parquet row itself, straight from hyparquet's objects.
    const dataDir = path.join(dir, "data");
    const part = readdirSync(dataDir).find((name) => name.startsWith("part-") && name.endsWith(".parquet"));
    expect(part).toBeDefined();
    const [raw] = (await parquetReadObjects({ file: await asyncBufferFromFile(path.join(dataDir, part!)) })) as Array<{
      numClasses: number;
      interceptVector: { values: number[] };
      coefficientMatrix: { numRows: number; numCols: number; colPtrs: number[]; rowIndices: number[]; values: number[]; isTransposed: boolean };
    }>;
    const matrix = raw!.coefficientMatrix;
    expect(matrix.isTransposed).toBe(true);
    const weights = Array.from({ length: matrix.numRows }, () => new Array<number>(matrix.numCols).fill(0));
    for (let r = 0; r < matrix.numRows; r++) {
      for (let k = matrix.colPtrs[r]!; k < matrix.colPtrs[r + 1]!; k++) weights[r]![matrix.rowIndices[k]!] = matrix.values[k]!;
    }
    const intercepts = raw!.interceptVector.values;

    // Pixel-like inputs over the coefficients' support, dense and sparse, so the margins are far from 0.
    const support = matrix.rowIndices.slice(matrix.colPtrs[0], matrix.colPtrs[1]);
    const inputs: SparkVector[] = [
      sparse(692, [], []),
      sparse(692, support, support.map((_, i) => (i % 3 === 0 ? 255 : 0.5 * i))),
      dense(Array.from({ length: 692 }, (_, j) => (j % 7) * 40)),
      sparse(692, support.slice(0, 10), support.slice(0, 10).map(() => 253)),
    ];
    const out = stage.transform(featureFrame(inputs));
    const expectedRaw = inputs.map((x) => weights.map((row, k) => dotArrays(full(x), row) + intercepts[k]!));
    expectRowsClose(vectors(out, "rawPrediction"), expectedRaw);
    expectRowsClose(vectors(out, "probability"), expectedRaw.map(softmax));
    expect(doubles(out, "prediction")).toEqual(expectedRaw.map(firstMax));
    // the inputs reach both classes, so the prediction is not a constant
    expect(new Set(doubles(out, "prediction")).size).toBe(2);
  });
});

describe("LinearRegressionModel and LinearSVCModel", () => {
  const coefficients = [1.5, 0, -2.25, 0.125];
  const inputs: SparkVector[] = [dense([1, 1, 1, 1]), sparse(4, [2], [0.5]), dense([-2, 3, 0.1, 8]), sparse(4, [], [])];

  it("linear regression: prediction = coefficients·x + intercept (3.x layout with scale, 2.2 layout without)", async () => {
    const expected = inputs.map((x) => dotArrays(full(x), coefficients) + 0.75);
    const v3 = await load(
      fakeContext(LINREG, { paramMap: {}, defaultParamMap: { featuresCol: "features", predictionCol: "prediction" } }, [
        { intercept: 0.75, coefficients: dense(coefficients), scale: 1 },
      ]),
    );
    expect(v3.outputs).toEqual([{ name: "prediction", kind: "double" }]);
    expectClose(doubles(v3.transform(featureFrame(inputs)), "prediction"), expected);
    const v22 = await load(
      fakeContext(LINREG, { sparkVersion: "2.2.0", paramMap: { featuresCol: "f", predictionCol: "y" } }, [
        { intercept: 0.75, coefficients: sparse(4, [0, 2, 3], [1.5, -2.25, 0.125]) },
      ]),
    );
    expectClose(doubles(v22.transform(featureFrame(inputs, "f")), "y"), expected);
    expectInputInvalid(() => v22.transform(featureFrame([dense([1, 2, 3])], "f")), "f");
  });

  it("linear SVC: rawPrediction [-m, m], no probability, threshold on the margin (default 0)", async () => {
    const rows = [{ coefficients: dense(coefficients), intercept: -0.5 }];
    const margins = inputs.map((x) => dotArrays(full(x), coefficients) - 0.5);
    const stage = await load(fakeContext(SVC, { paramMap: {}, defaultParamMap: { ...CLASSIFIER_DEFAULTS, threshold: 0 } }, rows));
    expect(stage.outputs.map((column) => column.name)).toEqual(["rawPrediction", "prediction"]);
    const out = stage.transform(featureFrame(inputs));
    expect(out.columns.has("probability")).toBe(false);
    expectRowsClose(vectors(out, "rawPrediction"), margins.map((m) => [-m, m]));
    expect(doubles(out, "prediction")).toEqual(margins.map((m) => (m > 0 ? 1 : 0)));

    const shifted = await load(fakeContext(SVC, { paramMap: { threshold: -1.5, rawPredictionCol: "" } }, rows));
    const expected = margins.map((m) => (m > -1.5 ? 1 : 0));
    expect(expected).not.toEqual(margins.map((m) => (m > 0 ? 1 : 0)));
    expect(doubles(shifted.transform(featureFrame(inputs)), "prediction")).toEqual(expected);
  });
});

describe("NaiveBayesModel", () => {
  // 3 classes x 3 features
  const pi = [Math.log(0.5), Math.log(0.3), Math.log(0.2)];
  const theta = [
    [Math.log(0.2), Math.log(0.5), Math.log(0.3)],
    [Math.log(0.6), Math.log(0.1), Math.log(0.3)],
    [Math.log(0.1), Math.log(0.1), Math.log(0.8)],
  ];
  const thetaColumnMajor = [0, 1, 2].flatMap((j) => theta.map((row) => row[j] as number));
  const v2Row = { pi: dense(pi), theta: denseMatrix(3, 3, thetaColumnMajor, false) };
  const v3Row = { ...v2Row, sigma: denseMatrix(0, 0, [], false) };

  it("multinomial (2.x and 3.x layouts): raw = pi + theta·x, softmax probability", async () => {
    const inputs: SparkVector[] = [dense([1, 0, 2]), sparse(3, [1], [4]), dense([0, 0, 0]), dense([3, 1, 0])];
    const raw = inputs.map((x) => theta.map((row, c) => (pi[c] as number) + dotArrays(full(x), row)));
    for (const [version, row] of [["2.4.8", v2Row], ["3.5.1", v3Row]] as const) {
      const stage = await load(fakeContext(NB, { sparkVersion: version, paramMap: { modelType: "multinomial" }, defaultParamMap: CLASSIFIER_DEFAULTS }, [row]));
      const out = stage.transform(featureFrame(inputs));
      expectRowsClose(vectors(out, "rawPrediction"), raw);
      expectRowsClose(vectors(out, "probability"), raw.map(softmax));
      expect(doubles(out, "prediction")).toEqual(raw.map(firstMax));
    }
    const stage = await load(fakeContext(NB, { paramMap: {} }, [v3Row]));
    expectInputInvalid(() => stage.transform(featureFrame([dense([1, -1, 0])])), "features");
  });

  it("bernoulli: raw = pi + Σ log(1-e^θ) + x·(θ - log(1-e^θ)); non-binary input is refused", async () => {
    const inputs: SparkVector[] = [dense([1, 0, 1]), sparse(3, [1], [1]), dense([0, 0, 0]), dense([1, 1, 1])];
    const raw = inputs.map((x) =>
      theta.map((row, c) => {
        const values = full(x);
        let sum = pi[c] as number;
        row.forEach((t, j) => (sum += values[j] === 1 ? t : Math.log(1 - Math.exp(t))));
        return sum;
      }),
    );
    const stage = await load(fakeContext(NB, { paramMap: { modelType: "bernoulli" }, defaultParamMap: CLASSIFIER_DEFAULTS }, [v3Row]));
    const out = stage.transform(featureFrame(inputs));
    expectRowsClose(vectors(out, "rawPrediction"), raw);
    expectRowsClose(vectors(out, "probability"), raw.map(softmax));
    expect(doubles(out, "prediction")).toEqual(raw.map(firstMax));
    expectInputInvalid(() => stage.transform(featureFrame([dense([1, 2, 0])])), "features");
  });

  it("complement: raw = theta·x - logSumExp(theta·x)", async () => {
    const inputs: SparkVector[] = [dense([1, 0, 2]), sparse(3, [2], [5]), dense([2, 2, 2])];
    const raw = inputs.map((x) => {
      const s = theta.map((row) => dotArrays(full(x), row));
      const lse = Math.log(s.reduce((sum, value) => sum + Math.exp(value), 0));
      return s.map((value) => value - lse);
    });
    const stage = await load(fakeContext(NB, { paramMap: { modelType: "complement" }, defaultParamMap: CLASSIFIER_DEFAULTS }, [v3Row]));
    const out = stage.transform(featureFrame(inputs));
    expectRowsClose(vectors(out, "rawPrediction"), raw);
    expectRowsClose(vectors(out, "probability"), raw.map(softmax));
  });

  it("gaussian, read from a Spark-layout directory: raw = pi - ½(Σ (x-θ)²/σ² + Σ log σ²)", async () => {
    const means = [
      [0, 1, -1],
      [2, 0, 0.5],
      [-1, -1, 3],
    ];
    const variances = [
      [1, 0.5, 2],
      [0.25, 1, 1],
      [3, 0.75, 0.5],
    ];
    const dir = mkdtempSync(path.join(os.tmpdir(), "mlship-sparkml-nb-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    await writeSparkStage(dir, {
      className: NB,
      paramMap: { modelType: "gaussian" },
      defaultParamMap: { ...CLASSIFIER_DEFAULTS, modelType: "multinomial", smoothing: 1 },
      data: {
        schema: [
          { name: "pi", type: VECTOR },
          { name: "theta", type: MATRIX },
          { name: "sigma", type: MATRIX },
        ],
        rows: [
          {
            pi: dense(pi),
            // row-major this time (isTransposed), as a compressed matrix may be stored
            theta: denseMatrix(3, 3, means.flat(), true),
            sigma: denseMatrix(3, 3, [0, 1, 2].flatMap((j) => variances.map((row) => row[j] as number)), false),
          },
        ],
      },
    });
    const stage = await load(makeStageContext(dir, await readMetadata(dir), () => Promise.reject(new Error("no nested stages"))));
    const inputs: SparkVector[] = [dense([0, 0, 0]), dense([1.5, 0.2, 0.4]), sparse(3, [2], [2.5]), dense([-1, -2, 3])];
    const raw = inputs.map((x) =>
      means.map((mean, c) => {
        const values = full(x);
        let quadratic = 0;
        let logVariances = 0;
        mean.forEach((m, j) => {
          const variance = variances[c]![j]!;
          quadratic += (values[j]! - m) ** 2 / variance;
          logVariances += Math.log(variance);
        });
        return pi[c]! - 0.5 * (quadratic + logVariances);
      }),
    );
    const out = stage.transform(featureFrame(inputs));
    expectRowsClose(vectors(out, "rawPrediction"), raw);
    expectRowsClose(vectors(out, "probability"), raw.map(softmax));
    expect(doubles(out, "prediction")).toEqual(raw.map(firstMax));
    expect(new Set(doubles(out, "prediction")).size).toBeGreaterThan(1);
  });
});

describe("KMeansModel", () => {
  const centers = [
    [0, 0, 1],
    [5, 5, 0],
    [-3, 2, 2],
  ];
  const inputs: SparkVector[] = [dense([0.1, -0.2, 0.9]), dense([4, 6, 1]), sparse(3, [0, 1], [-3, 2]), dense([10, 10, 10]), sparse(3, [], [])];

  const nearestEuclidean = (x: SparkVector): number => {
    const values = full(x);
    const distances = centers.map((center) => center.reduce((sum, c, j) => sum + (values[j]! - c) ** 2, 0));
    return distances.indexOf(Math.min(...distances));
  };

  it("euclidean: nearest center, rows read from several part files in any order", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "mlship-sparkml-kmeans-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    await writeSparkStage(dir, {
      className: KMEANS,
      sparkVersion: "3.0.3",
      paramMap: { k: 3, seed: 1, maxIter: 5 },
      defaultParamMap: { featuresCol: "features", predictionCol: "prediction", distanceMeasure: "euclidean", k: 2 },
      data: {
        schema: [
          { name: "clusterIdx", type: "int" },
          { name: "clusterCenter", type: VECTOR },
        ],
        rows: [
          { clusterIdx: 2, clusterCenter: dense(centers[2]!) },
          { clusterIdx: 0, clusterCenter: sparse(3, [2], [1]) },
          { clusterIdx: 1, clusterCenter: dense(centers[1]!) },
        ],
        partSizes: [1, 0, 2],
      },
    });
    const rows = await readParquetRows(dir);
    expect(rows).toHaveLength(3);
    const stage = await load(makeStageContext(dir, await readMetadata(dir), () => Promise.reject(new Error("no nested stages"))));
    expect(stage.outputs).toEqual([{ name: "prediction", kind: "double" }]);
    const expected = inputs.map(nearestEuclidean);
    expect(new Set(expected).size).toBe(3);
    expect(doubles(stage.transform(featureFrame(inputs)), "prediction")).toEqual(expected);
  });

  it("cosine: smallest 1 - x·c/(|x||c|); a zero vector is refused", async () => {
    const rows = centers.map((center, index) => ({ clusterIdx: index, clusterCenter: dense(center) }));
    const stage = await load(fakeContext(KMEANS, { paramMap: { distanceMeasure: "cosine", predictionCol: "cluster" } }, rows));
    const scaled: SparkVector[] = [dense([0.1, -0.2, 0.9]), dense([40, 60, 10]), sparse(3, [0, 2], [-2, 1]), dense([1, 1, 0.1])];
    const norm = (v: readonly number[]): number => Math.sqrt(dotArrays(v, v));
    const expected = scaled.map((x) => {
      const values = full(x);
      const distances = centers.map((center) => 1 - dotArrays(values, center) / (norm(values) * norm(center)));
      return distances.indexOf(Math.min(...distances));
    });
    const out = stage.transform(featureFrame(scaled));
    expect(doubles(out, "cluster")).toEqual(expected);
    expectInputInvalid(() => stage.transform(featureFrame([sparse(3, [], [])])), "features");
  });

  it("Spark 1.6 layout: one row of clusterCenters", async () => {
    const stage = await load(fakeContext(KMEANS, { sparkVersion: "1.6.3", paramMap: { featuresCol: "features", predictionCol: "prediction", k: 3 } }, [
      { clusterCenters: centers.map((center) => dense(center)) },
    ]));
    expect(doubles(stage.transform(featureFrame(inputs)), "prediction")).toEqual(inputs.map(nearestEuclidean));
  });
});

describe("MultilayerPerceptronClassificationModel", () => {
  const layers = [3, 4, 2];
  // 3*4 + 4 + 4*2 + 2 = 26 weights, deterministic and varied
  const weights = Array.from({ length: 26 }, (_, i) => Math.sin(i * 1.1 + 0.2) * 2);
  const inputs: SparkVector[] = [dense([1, 0, -1]), sparse(3, [1], [2]), dense([0.3, 0.3, 0.3]), dense([-2, 1, 4])];

  /** The doc's layout, by hand: W_i (n_out x n_in, column-major) then b_i, per affine layer. */
  function expectedRaw(x: SparkVector): number[] {
    let activation = full(x);
    let offset = 0;
    for (let i = 0; i + 1 < layers.length; i++) {
      const nIn = layers[i]!;
      const nOut = layers[i + 1]!;
      const z: number[] = [];
      for (let r = 0; r < nOut; r++) {
        let sum = weights[offset + nIn * nOut + r]!;
        for (let c = 0; c < nIn; c++) sum += weights[offset + c * nOut + r]! * activation[c]!;
        z.push(sum);
      }
      offset += nIn * nOut + nOut;
      activation = i + 2 < layers.length ? z.map(logistic) : z;
    }
    return activation;
  }

  it("Spark 3.x layout (layers param, weights in data): raw = last affine output, softmax probability", async () => {
    const stage = await load(
      fakeContext(MLP, { paramMap: { layers, blockSize: 128 }, defaultParamMap: CLASSIFIER_DEFAULTS }, [{ weights: dense(weights) }]),
    );
    expect(stage.inputs).toEqual([{ name: "features", kind: "vector", size: 3 }]);
    const out = stage.transform(featureFrame(inputs));
    const raw = inputs.map(expectedRaw);
    expectRowsClose(vectors(out, "rawPrediction"), raw);
    expectRowsClose(vectors(out, "probability"), raw.map(softmax));
    expect(doubles(out, "prediction")).toEqual(raw.map(firstMax));
    expect(new Set(doubles(out, "prediction")).size).toBe(2);
  });

  it("Spark 2.4 layout (layers and weights in data/), read from a Spark-layout directory", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "mlship-sparkml-mlp-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    await writeSparkStage(dir, {
      className: MLP,
      sparkVersion: "2.4.4",
      paramMap: { featuresCol: "features", predictionCol: "prediction", rawPredictionCol: "rawPrediction", probabilityCol: "probability" },
      defaultParamMap: { blockSize: 128, maxIter: 100 },
      data: {
        schema: [
          { name: "layers", type: { array: "int" } },
          { name: "weights", type: VECTOR },
        ],
        rows: [{ layers, weights: dense(weights) }],
      },
    });
    const stage = await load(makeStageContext(dir, await readMetadata(dir), () => Promise.reject(new Error("no nested stages"))));
    const out = stage.transform(featureFrame(inputs));
    const raw = inputs.map(expectedRaw);
    expectRowsClose(vectors(out, "rawPrediction"), raw);
    expectRowsClose(vectors(out, "probability"), raw.map(softmax));
  });

  it("a weight vector that does not fit the layers is refused at load", async () => {
    const context = fakeContext(MLP, { paramMap: { layers } }, [{ weights: dense(weights.slice(1)) }]);
    await expect(load(context)).rejects.toMatchObject({ code: "MLSHIP_ERR_RUNTIME_LOAD", field: "weights" });
  });
});
