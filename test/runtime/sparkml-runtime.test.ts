/**
 * The sparkml flavor end to end: Spark ML saved models registered through the registry and scored by a real
 * `createMlship` app (worker pool, scoring service, MLflow input). Expected values are computed here, from the
 * Parquet data read independently with hyparquet and Spark's documented math (`../shared/docs/sparkml-format.md`
 * §3, §4.1, §5), never from the code under test.
 */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { asyncBufferFromFile, parquetReadObjects } from "hyparquet";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel } from "../../src/app.js";
import type { Mlship } from "../../src/app.js";
import { MlshipError, silentLogger } from "../../src/core/index.js";
import { defaultConfig } from "../../src/config/index.js";
import { createSparkmlRuntime } from "../../src/runtime/index.js";
import { matrixDense, VECTOR, MATRIX, vectorDense, writeSparkPipeline } from "../helpers/sparkml-writer.js";

const SPARK_FIXTURES = fileURLToPath(new URL("../../../shared/fixtures/sparkml/", import.meta.url));
const LOG_REG = path.join(SPARK_FIXTURES, "py_log_reg");
const FOREST = path.join(SPARK_FIXTURES, "py_rforest_cls");
const TOLERANCE = 1e-9;

let home: string;
let app: Mlship;

beforeAll(async () => {
  home = await mkdtemp(path.join(os.tmpdir(), "mlship-sparkml-runtime-"));
  app = await createMlship(defaultConfig({ home, "runtime.workers": 2 }), { logger: silentLogger() });
});

afterAll(async () => {
  await app.close();
  await rm(home, { recursive: true, force: true });
});

/** Deterministic pseudo-random numbers (mulberry32), so a failure reproduces. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function rawRows(dir: string): Promise<Record<string, unknown>[]> {
  const rows: Record<string, unknown>[] = [];
  const names = (await readdir(dir)).filter((name) => name.endsWith(".parquet") && !name.startsWith(".")).sort();
  for (const name of names) rows.push(...(await parquetReadObjects({ file: await asyncBufferFromFile(path.join(dir, name)) })));
  return rows;
}

function softmax(values: number[]): number[] {
  const max = Math.max(...values);
  const exps = values.map((value) => Math.exp(value - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((value) => value / sum);
}

function argmax(values: number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i += 1) if ((values[i] as number) > (values[best] as number)) best = i;
  return best;
}

function rowsOf(data: ArrayLike<number>, width: number): number[][] {
  const rows: number[][] = [];
  for (let start = 0; start < data.length; start += width) rows.push(Array.from(data).slice(start, start + width));
  return rows;
}

function expectClose(actual: number[][], expected: number[][]): void {
  expect(actual).toHaveLength(expected.length);
  actual.forEach((row, i) => {
    expect(row).toHaveLength((expected[i] as number[]).length);
    row.forEach((value, j) => expect(Math.abs(value - ((expected[i] as number[])[j] as number))).toBeLessThanOrEqual(TOLERANCE));
  });
}

describe("py_log_reg (multinomial LogisticRegressionModel, Spark 2.3.0)", () => {
  it("registers as a sparkml package with a vector input and Spark's output columns", async () => {
    const record = await registerModel(app, LOG_REG, { name: "spark-lr" });
    expect(record.manifest.flavor).toBe("sparkml");
    expect(record.manifest.signature.inputs).toEqual([{ name: "features", dtype: "float64", shape: [-1, 692] }]);
    expect(record.manifest.signature.outputs).toEqual([
      { name: "rawPrediction", dtype: "float64", shape: [-1, 2] },
      { name: "probability", dtype: "float64", shape: [-1, 2] },
      { name: "prediction", dtype: "float64", shape: [-1] },
    ]);
  });

  it("scores like Spark: softmax of coefficients . x + intercepts", async () => {
    const [row] = (await rawRows(path.join(LOG_REG, "data"))) as [{
      interceptVector: { values: number[] };
      coefficientMatrix: { numRows: number; numCols: number; colPtrs: number[]; rowIndices: number[]; values: number[]; isTransposed: boolean };
    }];
    const matrix = row.coefficientMatrix;
    // CSR when transposed (colPtrs are row pointers), CSC otherwise (§2.2); build W[k][j] either way.
    const weights = Array.from({ length: matrix.numRows }, () => new Array<number>(matrix.numCols).fill(0));
    const outer = matrix.isTransposed ? matrix.numRows : matrix.numCols;
    for (let o = 0; o < outer; o += 1) {
      for (let k = matrix.colPtrs[o] as number; k < (matrix.colPtrs[o + 1] as number); k += 1) {
        const inner = matrix.rowIndices[k] as number;
        if (matrix.isTransposed) (weights[o] as number[])[inner] = matrix.values[k] as number;
        else (weights[inner] as number[])[o] = matrix.values[k] as number;
      }
    }
    const next = random(7);
    const used = [...new Set(matrix.rowIndices)];
    const inputs = Array.from({ length: 25 }, () => {
      const x = new Array<number>(692).fill(0);
      for (const j of used) if (next() < 0.6) x[j] = Math.floor(next() * 256);
      return x;
    });
    const margins = inputs.map((x) => weights.map((w, k) => w.reduce((sum, weight, j) => sum + weight * (x[j] as number), row.interceptVector.values[k] as number)));
    const result = await app.scoring.score("spark-lr", { kind: "mlflow", body: { inputs: { features: inputs } } });
    expect(result.rows).toBe(25);
    expectClose(rowsOf(result.outputs.rawPrediction?.data as Float64Array, 2), margins);
    const probabilities = margins.map(softmax);
    expectClose(rowsOf(result.outputs.probability?.data as Float64Array, 2), probabilities);
    expect(Array.from(result.outputs.prediction?.data as Float64Array)).toEqual(probabilities.map(argmax));
    // Both classes occur, so the check above is not satisfied by a constant answer.
    expect(new Set(probabilities.map(argmax)).size).toBe(2);
  });

  it("refuses a vector of the wrong size, naming the input", async () => {
    const error = await app.scoring.score("spark-lr", { kind: "mlflow", body: { inputs: { features: [[1, 2, 3]] } } }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MlshipError);
    expect((error as MlshipError).code).toBe("MLSHIP_ERR_INPUT_SHAPE");
    expect((error as MlshipError).field).toContain("features");
  });
});

interface RawNode {
  id: number;
  impurityStats: number[];
  leftChild: number;
  rightChild: number;
  split: { featureIndex: number; leftCategoriesOrThreshold: number[]; numCategories: number };
}

/** §5.1 routing (continuous and categorical splits) from the root to a leaf. */
function leafOf(nodes: Map<number, RawNode>, x: number[]): RawNode {
  let node = nodes.get(0) as RawNode;
  while (node.leftChild !== -1) {
    const { featureIndex, leftCategoriesOrThreshold, numCategories } = node.split;
    const value = x[featureIndex] as number;
    let left: boolean;
    if (numCategories === -1) {
      left = value <= (leftCategoriesOrThreshold[0] as number);
    } else {
      const isLeft = leftCategoriesOrThreshold.length <= Math.floor(numCategories / 2);
      if (isLeft) left = leftCategoriesOrThreshold.includes(value);
      else {
        const right = Array.from({ length: numCategories }, (_, c) => c).filter((c) => !leftCategoriesOrThreshold.includes(c));
        left = !right.includes(value);
      }
    }
    node = nodes.get(left ? node.leftChild : node.rightChild) as RawNode;
  }
  return node;
}

describe("py_rforest_cls (RandomForestClassificationModel, 10 trees, Spark 2.3.0)", () => {
  it("registers and scores like Spark: normalized leaf class counts summed over the trees", async () => {
    const record = await registerModel(app, FOREST, { name: "spark-rf" });
    expect(record.manifest.flavor).toBe("sparkml");
    expect(record.manifest.signature.inputs).toEqual([{ name: "indexedFeatures", dtype: "float64", shape: [-1, 692] }]);

    const trees = new Map<number, Map<number, RawNode>>();
    for (const row of (await rawRows(path.join(FOREST, "data"))) as { treeID: number; nodeData: RawNode }[]) {
      if (!trees.has(row.treeID)) trees.set(row.treeID, new Map());
      (trees.get(row.treeID) as Map<number, RawNode>).set(row.nodeData.id, row.nodeData);
    }
    expect(trees.size).toBe(10);
    const thresholds = new Map<number, number[]>();
    for (const nodes of trees.values()) {
      for (const node of nodes.values()) {
        if (node.leftChild === -1) continue;
        thresholds.set(node.split.featureIndex, [...(thresholds.get(node.split.featureIndex) ?? []), node.split.leftCategoriesOrThreshold[0] as number]);
      }
    }
    // Values on both sides of the thresholds the trees use, so rows reach many different leaves.
    const next = random(11);
    const inputs = Array.from({ length: 40 }, () => {
      const x = new Array<number>(692).fill(0);
      for (const [feature, cuts] of thresholds) {
        const cut = cuts[Math.floor(next() * cuts.length)] as number;
        x[feature] = next() < 0.5 ? cut - 1 - Math.floor(next() * 50) : cut + 1 + Math.floor(next() * 50);
        if (next() < 0.2) x[feature] = cut; // exactly on a threshold goes left
      }
      return x;
    });
    const votes = inputs.map((x) => {
      const total = [0, 0];
      for (const nodes of [...trees.entries()].sort(([a], [b]) => a - b).map(([, n]) => n)) {
        const counts = leafOf(nodes, x).impurityStats;
        const sum = counts.reduce((a, b) => a + b, 0);
        if (sum !== 0) counts.forEach((count, k) => (total[k] = (total[k] as number) + count / sum));
      }
      return total;
    });
    const result = await app.scoring.score("spark-rf", {
      kind: "mlflow",
      body: { dataframe_split: { columns: ["indexedFeatures"], data: inputs.map((x) => [x]) } },
    });
    expectClose(rowsOf(result.outputs.rawPrediction?.data as Float64Array, 2), votes);
    const probabilities = votes.map((v) => v.map((value) => value / v.reduce((a, b) => a + b, 0)));
    expectClose(rowsOf(result.outputs.probability?.data as Float64Array, 2), probabilities);
    expect(Array.from(result.outputs.prediction?.data as Float64Array)).toEqual(probabilities.map(argmax));
    expect(new Set(probabilities.map((p) => p[1]?.toFixed(3))).size).toBeGreaterThan(3);
  });
});

describe("a pipeline written in Spark's layout: StringIndexer -> VectorAssembler -> LogisticRegression", () => {
  const intercept = -0.25;
  const coefficients = [0.75, -1.5];
  const labels = ["red", "blue"];

  it("registers with one input per raw column and scores MLflow dataframe_split rows by column name", async () => {
    const dir = path.join(home, "colour-pipeline");
    await writeSparkPipeline(dir, [
      {
        className: "org.apache.spark.ml.feature.StringIndexerModel",
        paramMap: { inputCol: "colour", outputCol: "colour_idx", handleInvalid: "keep" },
        defaultParamMap: { stringOrderType: "frequencyDesc" },
        data: { schema: [{ name: "labelsArray", type: { array: { array: "string" } } }], rows: [{ labelsArray: [labels] }] },
      },
      {
        className: "org.apache.spark.ml.feature.VectorAssembler",
        paramMap: { inputCols: ["colour_idx", "size"], outputCol: "features" },
        defaultParamMap: { handleInvalid: "error" },
      },
      {
        className: "org.apache.spark.ml.classification.LogisticRegressionModel",
        paramMap: { family: "binomial" },
        defaultParamMap: { featuresCol: "features", predictionCol: "prediction", probabilityCol: "probability", rawPredictionCol: "rawPrediction", threshold: 0.5 },
        data: {
          schema: [
            { name: "numClasses", type: "int" },
            { name: "numFeatures", type: "int" },
            { name: "interceptVector", type: VECTOR },
            { name: "coefficientMatrix", type: MATRIX },
            { name: "isMultinomial", type: "boolean" },
          ],
          rows: [{ numClasses: 2, numFeatures: 2, interceptVector: vectorDense([intercept]), coefficientMatrix: matrixDense(1, 2, coefficients), isMultinomial: false }],
        },
      },
    ]);
    const record = await registerModel(app, dir, { name: "colour" });
    expect(record.manifest.signature.inputs).toEqual([
      { name: "colour", dtype: "string", shape: [-1] },
      { name: "size", dtype: "float64", shape: [-1] },
    ]);
    const rows: [string, number][] = [["red", 1.5], ["blue", -2], ["green", 0.3], ["blue", 4]];
    // Columns in another order than the signature: they are matched by name.
    const result = await app.scoring.score("colour", {
      kind: "mlflow",
      body: { dataframe_split: { columns: ["size", "colour"], data: rows.map(([colour, size]) => [size, colour]) } },
    });
    const expected = rows.map(([colour, size]) => {
      // handleInvalid keep: an unseen label gets index labels.length.
      const index = labels.includes(colour) ? labels.indexOf(colour) : labels.length;
      const margin = intercept + (coefficients[0] as number) * index + (coefficients[1] as number) * size;
      const p1 = 1 / (1 + Math.exp(-margin));
      return { raw: [-margin, margin], probability: [1 - p1, p1], prediction: p1 > 0.5 ? 1 : 0 };
    });
    expectClose(rowsOf(result.outputs.rawPrediction?.data as Float64Array, 2), expected.map((e) => e.raw));
    expectClose(rowsOf(result.outputs.probability?.data as Float64Array, 2), expected.map((e) => e.probability));
    expect(Array.from(result.outputs.prediction?.data as Float64Array)).toEqual(expected.map((e) => e.prediction));
    expect(new Set(expected.map((e) => e.prediction)).size).toBe(2);

    // The same rows as a CSV body (batch files take this path) and as records (the embedded API).
    const csv = await app.scoring.score("colour", { kind: "csv", text: `colour,size\n${rows.map(([c, v]) => `${c},${v}`).join("\n")}\n` });
    expectClose(rowsOf(csv.outputs.probability?.data as Float64Array, 2), expected.map((e) => e.probability));
    const records = await app.scoring.score("colour", { kind: "records", records: rows.map(([colour, size]) => ({ size, colour })) });
    expectClose(rowsOf(records.outputs.probability?.data as Float64Array, 2), expected.map((e) => e.probability));
    const missing = await app.scoring
      .score("colour", { kind: "mlflow", body: { dataframe_split: { columns: ["colour"], data: [["red"]] } } })
      .catch((e: unknown) => e);
    expect((missing as MlshipError).code).toBe("MLSHIP_ERR_INPUT_MISSING");
  });
});

describe("the sparkml runtime on its own", () => {
  it("refuses a path that is not a folder, and a folder that holds another class than asked", async () => {
    const runtime = createSparkmlRuntime({ workers: 1, logger: silentLogger() });
    try {
      const file = await runtime.load({ key: "x", modelPath: path.join(LOG_REG, "metadata", "part-00000") }).catch((e: unknown) => e);
      expect((file as MlshipError).code).toBe("MLSHIP_ERR_RUNTIME_LOAD");
      const other = await runtime
        .load({ key: "y", modelPath: FOREST, options: { expectClass: "LogisticRegressionModel" } })
        .catch((e: unknown) => e);
      expect((other as MlshipError).code).toBe("MLSHIP_ERR_PACKAGE_UNSUPPORTED");
      expect((other as MlshipError).message).toContain("expected LogisticRegressionModel, found RandomForestClassificationModel");
      const model = await runtime.load({ key: "z", modelPath: LOG_REG });
      const out = await model.run({ features: { dtype: "float64", shape: [1, 692], data: new Float64Array(692) } }, { outputs: ["prediction"] });
      expect(Object.keys(out)).toEqual(["prediction"]);
      expect(out.prediction?.shape).toEqual([1]);
    } finally {
      await runtime.close();
    }
  });
});
