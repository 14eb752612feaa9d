/**
 * Tree models of the `sparkml` flavor: small hand-made trees (continuous and categorical splits, Spark's rule for
 * categories outside the training set) checked against hand computation for all six classes, and the real
 * `py_rforest_cls` fixture (PySpark 2.3, 10 trees over 4 part files) checked against a plain recursive walk of its
 * node rows.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { MlshipError } from "../../src/core/index.js";
import { makeStageContext, readMetadata, readParquetRows } from "../../src/runtime/sparkml/io.js";
import { treeLoaders } from "../../src/runtime/sparkml/trees.js";
import type { Frame, FrameColumn, LoadedStage, SparkVector, StageContext, StageMetadata } from "../../src/runtime/sparkml/types.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const RFOREST_FIXTURE = path.join(ROOT, "..", "shared", "fixtures", "sparkml", "py_rforest_cls");

const PKG = "org.apache.spark.ml";
const DTC = `${PKG}.classification.DecisionTreeClassificationModel`;
const DTR = `${PKG}.regression.DecisionTreeRegressionModel`;
const RFC = `${PKG}.classification.RandomForestClassificationModel`;
const RFR = `${PKG}.regression.RandomForestRegressionModel`;
const GBTC = `${PKG}.classification.GBTClassificationModel`;
const GBTR = `${PKG}.regression.GBTRegressionModel`;

// ---- rows shaped as the Parquet reader decodes NodeData ----

interface Node {
  id: number;
  prediction: number;
  impurity: number;
  impurityStats: number[];
  rawCount?: number;
  gain: number;
  leftChild: number;
  rightChild: number;
  split: { featureIndex: number; leftCategoriesOrThreshold: number[]; numCategories: number };
}

const NO_SPLIT = { featureIndex: -1, leftCategoriesOrThreshold: [], numCategories: -1 };

function leaf(id: number, prediction: number, impurityStats: number[]): Node {
  return { id, prediction, impurity: 0, impurityStats, rawCount: 10, gain: -1, leftChild: -1, rightChild: -1, split: NO_SPLIT };
}

function continuous(id: number, featureIndex: number, threshold: number, left: number, right: number, stats: number[] = []): Node {
  return {
    id,
    prediction: 0,
    impurity: 0.5,
    impurityStats: stats,
    rawCount: 20,
    gain: 0.1,
    leftChild: left,
    rightChild: right,
    split: { featureIndex, leftCategoriesOrThreshold: [threshold], numCategories: -1 },
  };
}

function categorical(id: number, featureIndex: number, leftCategories: number[], numCategories: number, left: number, right: number, stats: number[] = []): Node {
  return {
    id,
    prediction: 0,
    impurity: 0.5,
    impurityStats: stats,
    rawCount: 20,
    gain: 0.1,
    leftChild: left,
    rightChild: right,
    split: { featureIndex, leftCategoriesOrThreshold: leftCategories, numCategories },
  };
}

/**
 * The hand-made tree: node 0 `x0 <= 1.5`; left node 1 categorical on x1 (4 categories, left {0, 2}: at most half,
 * so Spark keeps the left set); right node 4 categorical on x2 (5 categories, left {1, 3, 4}: more than half, so
 * Spark keeps the complement {0, 2}). Leaves 2, 3, 5, 6 (left to right).
 */
function handTree(leafStats: [number[], number[], number[], number[]], predictions: [number, number, number, number] = [0, 0, 0, 0]): Node[] {
  const width = leafStats[0].length;
  const zeros = new Array<number>(width).fill(1);
  return [
    continuous(0, 0, 1.5, 1, 4, zeros),
    categorical(1, 1, [0, 2], 4, 2, 3, zeros),
    leaf(2, predictions[0], leafStats[0]),
    leaf(3, predictions[1], leafStats[1]),
    categorical(4, 2, [1, 3, 4], 5, 5, 6, zeros),
    leaf(5, predictions[2], leafStats[2]),
    leaf(6, predictions[3], leafStats[3]),
  ];
}

/** Rows for the hand tree and the leaf (0..3, left to right) each reaches. */
const HAND_ROWS: { x: SparkVector; leaf: number; why: string }[] = [
  { x: dense(1.0, 2, 0), leaf: 0, why: "x0 <= 1.5, category 2 in the kept left set" },
  { x: dense(1.5, 3, 0), leaf: 1, why: "x0 == threshold goes left; category 3 not in the left set" },
  { x: dense(2, 0, 4), leaf: 2, why: "x0 > 1.5; category 4 not in the kept complement {0, 2}: left" },
  { x: dense(2, 0, 7), leaf: 2, why: "unseen category 7 with the complement kept: left" },
  { x: dense(1, 9, 0), leaf: 1, why: "unseen category 9 with the left set kept: right" },
  { x: dense(Number.NaN, 0, 0), leaf: 3, why: "NaN goes right; category 0 in the complement: right" },
  { x: dense(2, 0, 2.5), leaf: 2, why: "non-integer category matches nothing: left when the complement is kept" },
  { x: sparse(3, [2], [3]), leaf: 0, why: "sparse: absent x0 = 0, x1 = 0 in the left set" },
  { x: sparse(3, [0, 2], [4, 2]), leaf: 3, why: "sparse: x0 = 4 right, category 2 in the complement: right" },
];

function dense(...values: number[]): SparkVector {
  return { type: "dense", values: Float64Array.from(values) };
}

function sparse(size: number, indices: number[], values: number[]): SparkVector {
  return { type: "sparse", size, indices: Int32Array.from(indices), values: Float64Array.from(values) };
}

function frameOf(vectors: readonly (SparkVector | null)[], column = "features"): Frame {
  return { rows: vectors.length, columns: new Map<string, FrameColumn>([[column, { kind: "vector", values: vectors }]]) };
}

/** An in-memory StageContext: metadata as Spark writes it, datasets as the Parquet reader returns them. */
function contextOf(
  className: string,
  extras: Record<string, unknown>,
  paramMap: Record<string, unknown>,
  datasets: Record<string, Record<string, unknown>[]>,
  sparkVersion = "3.5.1",
): StageContext {
  const metadata = { class: className, uid: "tree_1234", sparkVersion, timestamp: 1, paramMap, defaultParamMap: {}, ...extras } as StageMetadata;
  return {
    dir: `/in-memory/${className.split(".").pop() ?? "model"}`,
    metadata,
    param<T>(name: string, fallback?: T): T | undefined {
      if (Object.hasOwn(metadata.paramMap, name)) return metadata.paramMap[name] as T;
      return fallback;
    },
    readParquet(sub = "data") {
      const rows = datasets[sub];
      if (rows === undefined) return Promise.reject(new Error(`no ${sub}/ in this in-memory model`));
      return Promise.resolve(rows);
    },
    loadStage: () => Promise.reject(new Error("trees have no nested stages")),
  };
}

async function load(context: StageContext): Promise<LoadedStage> {
  const loader = treeLoaders[context.metadata.class];
  if (loader === undefined) throw new Error(`no tree loader for ${context.metadata.class}`);
  return loader(context);
}

/** Ensemble `data/` rows, tree by tree, interleaved as several part files would return them. */
function ensembleRows(trees: Node[][], dropRawCount = false): Record<string, unknown>[] {
  const rows = trees.flatMap((nodes, treeID) =>
    nodes.map((node) => {
      const nodeData: Record<string, unknown> = { ...node };
      if (dropRawCount) delete nodeData.rawCount;
      return { treeID, nodeData };
    }),
  );
  // Never rely on order: reverse so later trees and later nodes come first.
  return rows.reverse();
}

function treesMetadata(weights: number[], memberClass: string): Record<string, unknown>[] {
  return weights.map((weight, treeID) => ({
    treeID,
    metadata: JSON.stringify({ class: memberClass, uid: `dt_${treeID}`, sparkVersion: "3.5.1", paramMap: {} }),
    weights: weight,
  }));
}

function doubles(frame: Frame, name: string): number[] {
  const column = frame.columns.get(name);
  if (column?.kind !== "double") throw new Error(`${name} is not a double column`);
  return Array.from(column.values);
}

function vectors(frame: Frame, name: string): number[][] {
  const column = frame.columns.get(name);
  if (column?.kind !== "vector") throw new Error(`${name} is not a vector column`);
  return column.values.map((v) => {
    if (v === null || v.type !== "dense") throw new Error(`${name} holds a non-dense vector`);
    return Array.from(v.values);
  });
}

function expectError(fn: () => unknown, code: string, pattern: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(MlshipError);
  expect((caught as MlshipError).code).toBe(code);
  expect((caught as Error).message).toMatch(pattern);
}

async function expectLoadError(promise: Promise<unknown>, code: string, pattern: RegExp): Promise<void> {
  const caught = await promise.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(caught).toBeInstanceOf(MlshipError);
  expect((caught as MlshipError).code).toBe(code);
  expect((caught as Error).message).toMatch(pattern);
}

// ---------------------------------------------------------------------------------------------------------------

describe("sparkml trees: the loader table", () => {
  it("has a loader for each of the six tree model classes", () => {
    expect(Object.keys(treeLoaders).sort()).toEqual([DTR, GBTR, RFR, DTC, GBTC, RFC].sort());
  });
});

describe("sparkml trees: DecisionTreeClassificationModel", () => {
  const counts: [number[], number[], number[], number[]] = [
    [5, 1, 0],
    [0, 2, 6],
    [2, 2, 0],
    [0, 0, 4],
  ];
  const model = (paramMap: Record<string, unknown> = {}): StageContext =>
    contextOf(DTC, { numFeatures: 3, numClasses: 3 }, paramMap, { data: handTree(counts, [0, 2, 1, 2]) as unknown as Record<string, unknown>[] });

  it("routes continuous and categorical splits as Spark does and outputs counts, probabilities and argmax", async () => {
    const stage = await load(model());
    expect(stage.inputs).toEqual([{ name: "features", kind: "vector", size: 3 }]);
    expect(stage.outputs.map((o) => o.name)).toEqual(["rawPrediction", "probability", "prediction"]);
    const out = stage.transform(frameOf(HAND_ROWS.map((r) => r.x)));
    const raw = vectors(out, "rawPrediction");
    const probability = vectors(out, "probability");
    const prediction = doubles(out, "prediction");
    HAND_ROWS.forEach((row, i) => {
      const c = counts[row.leaf] as number[];
      const sum = c.reduce((a, b) => a + b, 0);
      expect(raw[i], row.why).toEqual(c);
      expect(probability[i], row.why).toEqual(c.map((v) => v / sum));
    });
    // Leaf 0 [5,1,0] -> 0; leaf 1 [0,2,6] -> 2; leaf 2 [2,2,0] is a tie -> the lower class 0; leaf 3 -> 2.
    expect(prediction).toEqual(HAND_ROWS.map((r) => [0, 2, 0, 2][r.leaf]));
    // The input frame is untouched and kept.
    expect(out.columns.get("features")).toBeDefined();
  });

  it("applies thresholds (argmax of p / t) and, with raw and probability off, the leaf's stored prediction", async () => {
    const rows = [dense(1.0, 2, 0), dense(2, 0, 4)];
    const withThresholds = (await load(model({ thresholds: [0.5, 0.25, 1] }))).transform(frameOf(rows));
    // [5/6, 1/6, 0] / t = [1.67, 0.67, 0] -> 0; [0.5, 0.5, 0] / t = [1, 2, 0] -> 1.
    expect(doubles(withThresholds, "prediction")).toEqual([0, 1]);
    const bare = await load(model({ rawPredictionCol: "", probabilityCol: "", predictionCol: "label" }));
    expect(bare.outputs).toEqual([{ name: "label", kind: "double" }]);
    // DecisionTreeClassificationModel.predict answers the leaf's stored `prediction` (1 for leaf 2 here).
    expect(doubles(bare.transform(frameOf(rows)), "label")).toEqual([0, 1]);
  });

  it("adds leafCol: the leaf's position among the tree's leaves, left to right", async () => {
    const stage = await load(model({ leafCol: "leaf", featuresCol: "f" }));
    expect(stage.outputs.map((o) => o.name)).toEqual(["rawPrediction", "probability", "prediction", "leaf"]);
    const out = stage.transform(frameOf(HAND_ROWS.map((r) => r.x), "f"));
    expect(doubles(out, "leaf")).toEqual(HAND_ROWS.map((r) => r.leaf));
  });

  it("refuses a missing or non-vector column, a null row and a vector of the wrong size, naming the column", async () => {
    const stage = await load(model());
    expectError(() => stage.transform(frameOf([dense(1, 2, 3)], "other")), "MLSHIP_ERR_INPUT_INVALID", /features/);
    const strings: Frame = { rows: 1, columns: new Map<string, FrameColumn>([["features", { kind: "string", values: ["a"] }]]) };
    expectError(() => stage.transform(strings), "MLSHIP_ERR_INPUT_INVALID", /features/);
    expectError(() => stage.transform(frameOf([dense(1, 2, 3), null])), "MLSHIP_ERR_INPUT_INVALID", /features.*null|null.*features/);
    expectError(() => stage.transform(frameOf([dense(1, 2)])), "MLSHIP_ERR_INPUT_INVALID", /features.*size 2/);
    expectError(() => stage.transform(frameOf([sparse(4, [0], [1])])), "MLSHIP_ERR_INPUT_INVALID", /features.*size 4/);
  });

  it("refuses node ids that are not 0..n-1, a split reading past numFeatures and another class's directory", async () => {
    const gap = handTree(counts).filter((n) => n.id !== 3);
    await expectLoadError(
      load(contextOf(DTC, { numFeatures: 3, numClasses: 3 }, {}, { data: gap as unknown as Record<string, unknown>[] })),
      "MLSHIP_ERR_PACKAGE_INVALID",
      /node ids must be 0\.\.5/,
    );
    await expectLoadError(
      load(contextOf(DTC, { numFeatures: 2, numClasses: 3 }, {}, { data: handTree(counts) as unknown as Record<string, unknown>[] })),
      "MLSHIP_ERR_PACKAGE_INVALID",
      /reads feature 2, numFeatures is 2/,
    );
    const wrongStats = handTree(counts).map((n) => ({ ...n, impurityStats: [1, 2] }));
    await expectLoadError(
      load(contextOf(DTC, { numFeatures: 3, numClasses: 3 }, {}, { data: wrongStats as unknown as Record<string, unknown>[] })),
      "MLSHIP_ERR_PACKAGE_INVALID",
      /2 impurity stats, expected 3/,
    );
    const dtcLoader = treeLoaders[DTC];
    if (dtcLoader === undefined) throw new Error("no DTC loader");
    await expectLoadError(
      dtcLoader(contextOf(DTR, { numFeatures: 3 }, {}, { data: handTree(counts) as unknown as Record<string, unknown>[] })),
      "MLSHIP_ERR_PACKAGE_INVALID",
      /class is .*DecisionTreeRegressionModel, expected .*DecisionTreeClassificationModel/,
    );
  });
});

describe("sparkml trees: DecisionTreeRegressionModel", () => {
  // Regression leaves: prediction = mean, stats [count, sum, sumOfSquares].
  const stats: [number[], number[], number[], number[]] = [
    [4, 10, 30],
    [2, -3, 5],
    [5, 5, 9],
    [1, 7, 49],
  ];
  const predictions: [number, number, number, number] = [2.5, -1.5, 1, 7];

  it("predicts the leaf's value and, with varianceCol, the leaf's variance", async () => {
    const context = contextOf(DTR, { numFeatures: 3 }, { varianceCol: "variance" }, { data: handTree(stats, predictions) as unknown as Record<string, unknown>[] });
    const stage = await load(context);
    expect(stage.outputs.map((o) => o.name)).toEqual(["prediction", "variance"]);
    const out = stage.transform(frameOf(HAND_ROWS.map((r) => r.x)));
    expect(doubles(out, "prediction")).toEqual(HAND_ROWS.map((r) => predictions[r.leaf]));
    const variance = (s: number[]): number => {
      const [count, sum, sumSq] = s as [number, number, number];
      return sumSq / count - (sum / count) ** 2;
    };
    expect(doubles(out, "variance")).toEqual(HAND_ROWS.map((r) => variance(stats[r.leaf] as number[])));
    // 10/4 = 2.5, 30/4 - 6.25 = 1.25 by hand.
    expect(doubles(stage.transform(frameOf([dense(1, 0, 0)])), "variance")).toEqual([1.25]);
  });

  it("has only the prediction column by default", async () => {
    const stage = await load(contextOf(DTR, { numFeatures: 3 }, {}, { data: handTree(stats, predictions) as unknown as Record<string, unknown>[] }));
    expect(stage.outputs).toEqual([{ name: "prediction", kind: "double" }]);
  });
});

describe("sparkml trees: RandomForestClassificationModel", () => {
  // Tree 0: the hand tree (2 classes). Tree 1: x0 <= 0.5 -> [0, 3] else an all-zero leaf (Spark skips its vote).
  const tree0 = handTree([
    [3, 1],
    [1, 1],
    [0, 2],
    [4, 0],
  ]);
  const tree1 = [continuous(0, 0, 0.5, 1, 2, [1, 1]), leaf(1, 1, [0, 3]), leaf(2, 0, [0, 0])];
  const context = (paramMap: Record<string, unknown> = {}, dropRawCount = false): StageContext =>
    contextOf(
      RFC,
      { numFeatures: 3, numClasses: 2, numTrees: 2 },
      paramMap,
      { data: ensembleRows([tree0, tree1], dropRawCount), treesMetadata: treesMetadata([1, 1], DTC) },
      dropRawCount ? "2.3.0" : "3.5.1",
    );

  it("adds each tree's normalized counts, skips an all-zero leaf, and normalizes the votes", async () => {
    const stage = await load(context());
    const rows = [dense(0, 0, 0), dense(1, 3, 0), dense(2, 0, 0)];
    const out = stage.transform(frameOf(rows));
    // Row 0: tree 0 leaf [3,1] -> [.75,.25]; tree 1 leaf [0,3] -> [0,1]; votes [.75, 1.25].
    // Row 1: tree 0 leaf [1,1] -> [.5,.5]; tree 1 all-zero leaf skipped; votes [.5, .5] (tie -> 0).
    // Row 2: tree 0 leaf [4,0] -> [1,0]; tree 1 skipped; votes [1, 0].
    expect(vectors(out, "rawPrediction")).toEqual([
      [0.75, 1.25],
      [0.5, 0.5],
      [1, 0],
    ]);
    expect(vectors(out, "probability")).toEqual([
      [0.75 / 2, 1.25 / 2],
      [0.5, 0.5],
      [1, 0],
    ]);
    expect(doubles(out, "prediction")).toEqual([1, 0, 0]);
  });

  it("reads Spark 2.x rows (no rawCount) in any order and outputs per-tree leaf positions with leafCol", async () => {
    const stage = await load(context({ leafCol: "leaves" }, true));
    const out = stage.transform(frameOf([dense(0, 0, 0), dense(2, 0, 4), sparse(3, [0, 2], [4, 2])]));
    expect(vectors(out, "leaves")).toEqual([
      [0, 0],
      [2, 1],
      [3, 1],
    ]);
    expect(stage.outputs.find((o) => o.name === "leaves")).toEqual({ name: "leaves", kind: "vector", size: 2 });
  });

  it("refuses a numTrees that does not match the trees in data/ and tree ids with a gap", async () => {
    await expectLoadError(
      load(contextOf(RFC, { numFeatures: 3, numClasses: 2, numTrees: 3 }, {}, { data: ensembleRows([tree0, tree1]), treesMetadata: treesMetadata([1, 1], DTC) })),
      "MLSHIP_ERR_PACKAGE_INVALID",
      /numTrees 3, data\/ holds 2 trees/,
    );
    const gap = ensembleRows([tree0, tree1]).map((r) => ({ ...r, treeID: r.treeID === 1 ? 2 : r.treeID }));
    await expectLoadError(
      load(contextOf(RFC, { numFeatures: 3, numClasses: 2 }, {}, { data: gap, treesMetadata: treesMetadata([1, 1, 1], DTC) })),
      "MLSHIP_ERR_PACKAGE_INVALID",
      /tree ids must be 0\.\.1, found 2/,
    );
  });
});

describe("sparkml trees: RandomForestRegressionModel", () => {
  it("averages the trees' leaf predictions", async () => {
    const tree0 = handTree([[1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1]], [1, 2, 3, 4]);
    const tree1 = [continuous(0, 1, 2.5, 1, 2), leaf(1, 10, [1, 10, 100]), leaf(2, 20, [1, 20, 400])];
    const context = contextOf(RFR, { numFeatures: 3, numTrees: 2 }, {}, { data: ensembleRows([tree0, tree1]), treesMetadata: treesMetadata([1, 1], DTR) });
    const stage = await load(context);
    expect(stage.outputs).toEqual([{ name: "prediction", kind: "double" }]);
    const out = stage.transform(frameOf(HAND_ROWS.map((r) => r.x)));
    const x1 = (v: SparkVector): number => (v.type === "dense" ? (v.values[1] as number) : 0);
    expect(doubles(out, "prediction")).toEqual(HAND_ROWS.map((r) => ((r.leaf + 1) + (x1(r.x) <= 2.5 ? 10 : 20)) / 2));
  });
});

describe("sparkml trees: GBT", () => {
  // Three regression trees with weights 1, 0.1, 0.1 (first tree 1.0, later trees stepSize, as trained).
  const trees = [
    handTree([[1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0]], [0.5, -0.25, 1, -1]),
    [continuous(0, 0, 1.5, 1, 2), leaf(1, 2, [1, 2, 4]), leaf(2, -3, [1, -3, 9])],
    [leaf(0, 0.75, [1, 0.75, 0.5625])],
  ];
  const weights = [1, 0.1, 0.1];
  const margin = (treeLeaf: number, x0: number): number => {
    const first = [0.5, -0.25, 1, -1][treeLeaf] as number;
    return 1 * first + 0.1 * (x0 <= 1.5 ? 2 : -3) + 0.1 * 0.75;
  };
  const x0 = (v: SparkVector): number => (v.type === "dense" ? (v.values[0] as number) : v.indices[0] === 0 ? (v.values[0] as number) : 0);

  it("GBTClassificationModel: raw [-m, m], probability via 1/(1+exp(-2 raw0)), prediction m > 0", async () => {
    const context = contextOf(GBTC, { numFeatures: 3, numTrees: 3 }, { impurity: "gini" }, { data: ensembleRows(trees), treesMetadata: treesMetadata(weights, DTR) }, "2.4.7");
    const stage = await load(context);
    const out = stage.transform(frameOf(HAND_ROWS.map((r) => r.x)));
    const raw = vectors(out, "rawPrediction");
    const probability = vectors(out, "probability");
    const prediction = doubles(out, "prediction");
    HAND_ROWS.forEach((row, i) => {
      const m = margin(row.leaf, x0(row.x));
      expect(raw[i], row.why).toEqual([-m, m]);
      const p0 = 1 / (1 + Math.exp(-2 * -m));
      expect(probability[i], row.why).toEqual([p0, 1 - p0]);
      expect(prediction[i], row.why).toBe(m > 0 ? 1 : 0);
    });
    // Row 0: 0.5 + 0.2 + 0.075 = 0.775 by hand.
    expect(raw[0]?.[1]).toBeCloseTo(0.775, 15);
  });

  it("GBTClassificationModel with raw and probability off predicts the margin's sign; thresholds go through probability", async () => {
    const data = { data: ensembleRows(trees), treesMetadata: treesMetadata(weights, DTR) };
    const rows = [dense(1, 2, 0), dense(1.5, 3, 0)];
    const bare = await load(contextOf(GBTC, { numFeatures: 3, numTrees: 3 }, { rawPredictionCol: "", probabilityCol: "" }, data));
    // Margins 0.775 and -0.25 + 0.2 + 0.075 = 0.025: both positive.
    expect(doubles(bare.transform(frameOf(rows)), "prediction")).toEqual([1, 1]);
    // p1 of the second row is about 0.5125; thresholds [0.45, 0.55] need p1/0.55 > p0/0.45, which fails.
    const thresholded = await load(contextOf(GBTC, { numFeatures: 3, numTrees: 3 }, { thresholds: [0.45, 0.55] }, data));
    expect(doubles(thresholded.transform(frameOf(rows)), "prediction")).toEqual([1, 0]);
  });

  it("GBTRegressionModel: the weighted sum of the trees' predictions", async () => {
    const context = contextOf(GBTR, { numFeatures: 3, numTrees: 3 }, {}, { data: ensembleRows(trees, true), treesMetadata: treesMetadata(weights, DTR) }, "2.4.7");
    const out = (await load(context)).transform(frameOf(HAND_ROWS.map((r) => r.x)));
    expect(doubles(out, "prediction")).toEqual(HAND_ROWS.map((r) => margin(r.leaf, x0(r.x))));
  });

  it("refuses treesMetadata without a weight for every tree", async () => {
    const context = contextOf(GBTR, { numFeatures: 3, numTrees: 3 }, {}, { data: ensembleRows(trees), treesMetadata: treesMetadata([1, 0.1], DTR) });
    await expectLoadError(load(context), "MLSHIP_ERR_PACKAGE_INVALID", /no weight for tree 2/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The real fixture, against a straightforward recursive walk of its node rows.

interface RawNode {
  id: number;
  leftChild: number;
  rightChild: number;
  impurityStats: number[];
  split: { featureIndex: number; leftCategoriesOrThreshold: number[]; numCategories: number };
}

function referenceLeaf(nodes: Map<number, RawNode>, id: number, x: Float64Array): RawNode {
  const node = nodes.get(id);
  if (node === undefined) throw new Error(`no node ${id}`);
  if (node.leftChild === -1) return node;
  const { featureIndex, leftCategoriesOrThreshold: values, numCategories } = node.split;
  const v = x[featureIndex] as number;
  let goLeft: boolean;
  if (numCategories === -1) goLeft = v <= (values[0] as number);
  else if (values.length <= Math.floor(numCategories / 2)) goLeft = values.includes(v);
  else goLeft = !Array.from({ length: numCategories }, (_, c) => c).filter((c) => !values.includes(c)).includes(v);
  return referenceLeaf(nodes, goLeft ? node.leftChild : node.rightChild, x);
}

/** Spark's RandomForestClassificationModel.predictRaw, written out plainly. */
function referenceVotes(trees: Map<number, RawNode>[], x: Float64Array, numClasses: number): number[] {
  const votes = new Array<number>(numClasses).fill(0);
  for (const tree of trees) {
    const counts = referenceLeaf(tree, 0, x).impurityStats;
    const total = counts.reduce((a, b) => a + b, 0);
    if (total !== 0) for (let i = 0; i < numClasses; i++) votes[i] = (votes[i] as number) + (counts[i] as number) / total;
  }
  return votes;
}

function toDenseArray(v: SparkVector): Float64Array {
  if (v.type === "dense") return v.values;
  const out = new Float64Array(v.size);
  v.indices.forEach((i, k) => (out[i] = v.values[k] as number));
  return out;
}

describe("sparkml trees: the py_rforest_cls fixture (PySpark 2.3, 10 trees, 4 part files)", () => {
  it("loads and scores sparse and dense vectors exactly as a recursive walk of its node rows", async () => {
    const metadata = await readMetadata(RFOREST_FIXTURE);
    const context = makeStageContext(RFOREST_FIXTURE, metadata, () => Promise.reject(new Error("no nested stages")));
    const stage = await load(context);
    expect(stage.className).toBe(RFC);
    expect(stage.inputs).toEqual([{ name: "indexedFeatures", kind: "vector", size: 692 }]);
    expect(stage.outputs.map((o) => o.name)).toEqual(["rawPrediction", "probability", "prediction"]);

    const rows = await readParquetRows(RFOREST_FIXTURE, "data");
    const trees: Map<number, RawNode>[] = [];
    for (const row of rows) {
      const treeId = row.treeID as number;
      const node = row.nodeData as RawNode;
      (trees[treeId] ??= new Map()).set(node.id, node);
    }
    expect(trees).toHaveLength(10);
    const weights = (await readParquetRows(RFOREST_FIXTURE, "treesMetadata")).map((r) => r.weights);
    expect(weights).toEqual(new Array(10).fill(1));

    // Inputs that reach many leaves: each split feature set just below, at or above its threshold, at random.
    const splits = trees.flatMap((t) => [...t.values()].filter((n) => n.leftChild !== -1).map((n) => n.split));
    expect(splits.every((s) => s.numCategories === -1)).toBe(true);
    let seed = 42;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    const inputs: SparkVector[] = [];
    for (let i = 0; i < 300; i++) {
      const values = new Map<number, number>();
      for (const s of splits) {
        if (random() < 0.5) continue;
        const t = s.leftCategoriesOrThreshold[0] as number;
        values.set(s.featureIndex, [t - 1, t, t + 1, 0, 255][Math.floor(random() * 5)] as number);
      }
      const indices = [...values.keys()].sort((a, b) => a - b);
      const vector = sparse(692, indices, indices.map((k) => values.get(k) as number));
      inputs.push(i % 3 === 0 ? { type: "dense", values: toDenseArray(vector) } : vector);
    }
    inputs.push(sparse(692, [], []), { type: "dense", values: new Float64Array(692).fill(255) });

    const out = stage.transform(frameOf(inputs, "indexedFeatures"));
    const raw = vectors(out, "rawPrediction");
    const probability = vectors(out, "probability");
    const prediction = doubles(out, "prediction");
    const seen = new Set<string>();
    inputs.forEach((x, i) => {
      const votes = referenceVotes(trees, toDenseArray(x), 2);
      seen.add(votes.join(","));
      expect(raw[i]).toEqual(votes);
      const sum = (votes[0] as number) + (votes[1] as number);
      expect(probability[i]).toEqual(votes.map((v) => v / sum));
      expect(prediction[i]).toBe((votes[1] as number) > (votes[0] as number) ? 1 : 0);
    });
    // The inputs exercise the forest: most leaves are pure, so votes are mostly tenths; many distinct ones, both
    // classes predicted.
    expect(seen.size).toBeGreaterThanOrEqual(6);
    expect(new Set(prediction)).toEqual(new Set([0, 1]));
  });
});
