/**
 * Decision trees and tree ensembles of spark.ml, scored natively (`../shared/docs/sparkml-format.md` §5):
 * DecisionTree, RandomForest and GBT, classifiers and regressors, from every Spark release's layout (single trees:
 * `data/` NodeData rows; ensembles: `data/` rows of `treeID` + nested `nodeData`, and `treesMetadata/` with the
 * per-tree weights; Spark 2.x files without `rawCount`, split over many part files).
 *
 * Each tree is compiled into flat typed arrays (feature index, threshold, child indices, leaf values), all trees of
 * an ensemble into one set of arrays with a root per tree, so that scoring a row is a tight loop over numbers.
 * Routing follows `Split.shouldGoLeft` exactly: continuous `x <= threshold` (NaN goes right); categorical splits keep
 * the category set Spark keeps (the left categories when they are at most half, else the complement) so values
 * outside the training categories go where Spark sends them.
 */
import { MlshipError } from "../../core/index.js";
import {
  appendColumns,
  classifierStage,
  normalizeToProbabilitiesInPlace,
  predictorStage,
  readFeatureVectors,
  readThresholds,
  type ClassifierScorer,
  type PredictorScorer,
} from "./predict.js";
import type { ColumnInfo, Frame, FrameColumn, LoadedStage, SparkVector, StageContext, StageLoader, StageLoaders } from "./types.js";

// ---------------------------------------------------------------------------------------------------------------
// NodeData rows

/** One `NodeData` row as read from Parquet (§5.1); numbers may come as bigint (INT64) or number. */
export interface NodeRow {
  id: number;
  prediction: number;
  impurity: number;
  impurityStats: readonly number[];
  gain: number;
  leftChild: number;
  rightChild: number;
  split: { featureIndex: number; leftCategoriesOrThreshold: readonly number[]; numCategories: number };
}

function numberOf(value: unknown, what: string, where: string): number {
  if (typeof value === "number") return value;
  if (typeof value === "bigint") return Number(value);
  throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${where}: ${what} is not a number (${describe(value)})`, { field: what });
}

function numbersOf(value: unknown, what: string, where: string): number[] {
  if (value === null || value === undefined) return [];
  if (Array.isArray(value) || ArrayBuffer.isView(value)) {
    return Array.from(value as ArrayLike<unknown>, (v) => numberOf(v, what, where));
  }
  throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${where}: ${what} is not a list (${describe(value)})`, { field: what });
}

function describe(value: unknown): string {
  if (value === null) return "null";
  return typeof value === "object" ? "an object" : `${typeof value} ${String(value).slice(0, 40)}`;
}

/** A Parquet row (a record of NodeData's fields) to a `NodeRow`; throws PACKAGE_INVALID naming `where`. */
export function nodeRowOf(raw: unknown, where: string): NodeRow {
  if (typeof raw !== "object" || raw === null) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${where}: a tree node row is ${describe(raw)}`, { field: "nodeData" });
  }
  const r = raw as Record<string, unknown>;
  const split = (r.split ?? {}) as Record<string, unknown>;
  return {
    id: numberOf(r.id, "id", where),
    prediction: numberOf(r.prediction, "prediction", where),
    impurity: numberOf(r.impurity, "impurity", where),
    impurityStats: numbersOf(r.impurityStats, "impurityStats", where),
    gain: numberOf(r.gain, "gain", where),
    leftChild: numberOf(r.leftChild, "leftChild", where),
    rightChild: numberOf(r.rightChild, "rightChild", where),
    split: {
      featureIndex: numberOf(split.featureIndex, "split.featureIndex", where),
      leftCategoriesOrThreshold: numbersOf(split.leftCategoriesOrThreshold, "split.leftCategoriesOrThreshold", where),
      numCategories: numberOf(split.numCategories, "split.numCategories", where),
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Compiled forests

/** A categorical split as Spark keeps it: `member[c] === 1` for the kept categories; left iff member === goLeftIfMember. */
interface CategorySplit {
  readonly featureIndex: number;
  readonly member: Uint8Array;
  readonly goLeftIfMember: boolean;
}

/**
 * Trees as flat arrays, all trees concatenated, the two children of a node side by side: a row at internal node `n`
 * moves to `child[n]` (left) or `child[n] + 1` (right), so the step is an addition, not a branch the CPU must guess.
 * `feature[n]` is the split's feature index (continuous, threshold `threshold[n]`), -1 for a leaf, or
 * `-2 - i` for categorical split `categorySplits[i]`. Per node: `prediction`, `statsWidth` values in `stats` (the
 * classifier's class counts, normalized when compiled for a random forest) and, for leaves, `leafOrdinal`.
 */
export interface CompiledForest {
  readonly numTrees: number;
  readonly roots: Int32Array;
  readonly feature: Int32Array;
  readonly threshold: Float64Array;
  readonly child: Int32Array;
  readonly categorySplits: readonly CategorySplit[];
  readonly prediction: Float64Array;
  readonly statsWidth: number;
  readonly stats: Float64Array;
  /** Per leaf: its position among its tree's leaves, left to right (Spark's `predictLeaf`). */
  readonly leafOrdinal: Float64Array;
  /** Largest feature index any split reads, -1 when every tree is a single leaf. */
  readonly maxFeatureIndex: number;
}

export interface CompileOptions {
  /** Keep `impurityStats` of this length per node (classifiers: numClasses); 0 keeps none. */
  statsWidth: number;
  /** Divide each node's stats by their sum (random forest votes; an all-zero leaf stays zero, as Spark skips it). */
  normalizeStats?: boolean;
}

const LEAF = -1;

/**
 * Compiles trees (each a list of NodeData rows in any order) into one `CompiledForest`. Checks what Spark's reader
 * checks (ids exactly 0..n-1, children in range) and that splits are well-formed; throws PACKAGE_INVALID naming
 * `where`.
 */
export function compileForest(trees: readonly (readonly NodeRow[])[], options: CompileOptions, where: string): CompiledForest {
  const total = trees.reduce((a, t) => a + t.length, 0);
  const width = options.statsWidth;
  const roots = new Int32Array(trees.length);
  const feature = new Int32Array(total);
  const threshold = new Float64Array(total);
  const child = new Int32Array(total).fill(-1);
  const categorySplits: CategorySplit[] = [];
  const prediction = new Float64Array(total);
  const stats = new Float64Array(total * width);
  const leafOrdinal = new Float64Array(total);
  let maxFeatureIndex = -1;
  let next = 0;
  trees.forEach((tree, t) => {
    const at = `${where}: tree ${t}`;
    if (tree.length === 0) throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${at} has no nodes`, { field: "data" });
    const sorted = [...tree].sort((a, b) => a.id - b.id);
    sorted.forEach((node, i) => {
      if (node.id !== i) {
        throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${at}: node ids must be 0..${sorted.length - 1}, found ${node.id} at position ${i}`, {
          field: "data",
        });
      }
    });
    // Renumber breadth first so that siblings are adjacent; `placed` guards against rows that are not a tree.
    const placed = new Int32Array(sorted.length).fill(-1);
    roots[t] = next;
    placed[0] = next++;
    const queue = [0];
    for (let q = 0; q < queue.length; q++) {
      const node = sorted[queue[q] as number] as NodeRow;
      const n = placed[node.id] as number;
      prediction[n] = node.prediction;
      if (width > 0) copyStats(node, n, width, stats, options.normalizeStats === true, at);
      if (node.leftChild === -1) {
        feature[n] = LEAF;
        continue;
      }
      const { featureIndex, leftCategoriesOrThreshold: values, numCategories } = node.split;
      const childOk = (c: number): boolean => Number.isInteger(c) && c > node.id && c < sorted.length && placed[c] === -1;
      if (!childOk(node.leftChild) || !childOk(node.rightChild) || node.leftChild === node.rightChild || !Number.isInteger(featureIndex) || featureIndex < 0) {
        throw new MlshipError(
          "MLSHIP_ERR_PACKAGE_INVALID",
          `${at}: node ${node.id} has children ${node.leftChild}/${node.rightChild} and split feature ${featureIndex}, not a valid internal node`,
          { field: "data" },
        );
      }
      maxFeatureIndex = Math.max(maxFeatureIndex, featureIndex);
      if (numCategories === -1) {
        if (values.length !== 1) {
          throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${at}: continuous split of node ${node.id} has ${values.length} thresholds, expected 1`, {
            field: "data",
          });
        }
        feature[n] = featureIndex;
        threshold[n] = values[0] as number;
      } else {
        feature[n] = -2 - categorySplits.length;
        categorySplits.push(categorySplitOf(featureIndex, values, numCategories, `${at}: node ${node.id}`));
      }
      child[n] = next;
      placed[node.leftChild] = next++;
      placed[node.rightChild] = next++;
      queue.push(node.leftChild, node.rightChild);
    }
    if (queue.length !== sorted.length) {
      throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${at}: ${sorted.length - queue.length} of its ${sorted.length} nodes are not reachable from node 0`, {
        field: "data",
      });
    }
    // Leaves numbered left to right: a depth-first walk that visits the left subtree first.
    let ordinal = 0;
    const stack = [roots[t] as number];
    while (stack.length > 0) {
      const n = stack.pop() as number;
      if (feature[n] === LEAF) leafOrdinal[n] = ordinal++;
      else stack.push((child[n] as number) + 1, child[n] as number);
    }
  });
  return { numTrees: trees.length, roots, feature, threshold, child, categorySplits, prediction, statsWidth: width, stats, leafOrdinal, maxFeatureIndex };
}

function copyStats(node: NodeRow, n: number, width: number, stats: Float64Array, normalize: boolean, at: string): void {
  if (node.impurityStats.length !== width) {
    throw new MlshipError(
      "MLSHIP_ERR_PACKAGE_INVALID",
      `${at}: node ${node.id} has ${node.impurityStats.length} impurity stats, expected ${width} (one per class)`,
      { field: "data" },
    );
  }
  // Spark's `classCounts.sum`, then each count divided by it (RandomForestClassificationModel.predictRaw).
  let sum = 0;
  for (const s of node.impurityStats) sum += s;
  for (let k = 0; k < width; k++) {
    const value = node.impurityStats[k] as number;
    stats[n * width + k] = !normalize ? value : sum !== 0 ? value / sum : 0;
  }
}

/**
 * Spark's `CategoricalSplit`: it keeps the left categories when they are at most half of `numCategories`
 * (`isLeft`), else the complement, and tests membership in the kept set. Same answer for every category in
 * `[0, numCategories)`; any other value is in neither set, so it goes right when the left set is kept, left otherwise.
 */
function categorySplitOf(featureIndex: number, leftCategories: readonly number[], numCategories: number, where: string): CategorySplit {
  if (!Number.isInteger(numCategories) || numCategories < 0) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${where}: categorical split with numCategories ${numCategories}`, { field: "data" });
  }
  const leftSet = new Uint8Array(numCategories);
  for (const c of leftCategories) {
    if (!Number.isInteger(c) || c < 0 || c >= numCategories) {
      throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${where}: category ${c} is outside 0..${numCategories - 1}`, { field: "data" });
    }
    leftSet[c] = 1;
  }
  const keepsLeft = leftCategories.length <= Math.floor(numCategories / 2);
  if (keepsLeft) return { featureIndex, member: leftSet, goLeftIfMember: true };
  return { featureIndex, member: leftSet.map((m) => 1 - m), goLeftIfMember: false };
}

/** 1 when a categorical split sends `x` right, else 0. */
function categoricalStep(split: CategorySplit, x: Float64Array): number {
  const v = x[split.featureIndex] as number;
  // Exact double equality with a kept category: only an integer in range can match.
  const member = Number.isInteger(v) && v >= 0 && v < split.member.length && split.member[v] === 1;
  return member === split.goLeftIfMember ? 0 : 1;
}

/** The forest-wide index of the leaf that `x` (dense features) reaches in the tree rooted at `root`. */
export function leafOf(forest: CompiledForest, root: number, x: Float64Array): number {
  const { feature, threshold, child } = forest;
  let n = root;
  for (;;) {
    const f = feature[n] as number;
    if (f >= 0) {
      // `!(x <= t)`: right also for NaN, as Spark's `x <= threshold` is false for NaN.
      n = (child[n] as number) + Number(!((x[f] as number) <= (threshold[n] as number)));
    } else if (f === LEAF) {
      return n;
    } else {
      n = (child[n] as number) + categoricalStep(forest.categorySplits[-2 - f] as CategorySplit, x);
    }
  }
}


// ---------------------------------------------------------------------------------------------------------------
// Scoring

/** The six tree models: decision tree, random forest, GBT; classifier or regressor. */
export type ModelKind = "dtc" | "dtr" | "rfc" | "rfr" | "gbtc" | "gbtr";

const CLASS = {
  dtc: "org.apache.spark.ml.classification.DecisionTreeClassificationModel",
  dtr: "org.apache.spark.ml.regression.DecisionTreeRegressionModel",
  rfc: "org.apache.spark.ml.classification.RandomForestClassificationModel",
  rfr: "org.apache.spark.ml.regression.RandomForestRegressionModel",
  gbtc: "org.apache.spark.ml.classification.GBTClassificationModel",
  gbtr: "org.apache.spark.ml.regression.GBTRegressionModel",
} as const satisfies Record<ModelKind, string>;

const isClassifier = (kind: ModelKind): boolean => kind === "dtc" || kind === "rfc" || kind === "gbtc";
const isSingleTree = (kind: ModelKind): boolean => kind === "dtc" || kind === "dtr";

/** A loaded tree model: the compiled trees and what the math needs. */
export interface TreeModel {
  readonly kind: ModelKind;
  readonly forest: CompiledForest;
  /** `treesMetadata` weights (GBT margins use them; single trees: [1]). */
  readonly weights: Float64Array;
  readonly numFeatures: number;
  /** Classifiers: number of classes (GBT: 2); regressors: 0. */
  readonly numClasses: number;
}

/**
 * Walks every tree for one row. Dense vectors are read in place; a sparse vector is scattered into a reused dense
 * buffer (and its slots cleared on the next row), so the split loop never searches indices.
 */
export class TreeWalker {
  /** Forest-wide leaf index per tree, for the last row walked (reused). */
  readonly leaves: Int32Array;
  private readonly scratch: Float64Array;
  private touched: Int32Array | undefined;

  constructor(readonly model: TreeModel) {
    this.leaves = new Int32Array(model.forest.numTrees);
    this.scratch = new Float64Array(model.numFeatures);
  }

  walk(features: SparkVector): Int32Array {
    const x = this.dense(features);
    const forest = this.model.forest;
    const { roots, feature, threshold, child } = forest;
    const leaves = this.leaves;
    // leafOf, inlined: this loop is the scorer's whole cost.
    for (let t = 0; t < roots.length; t++) {
      let n = roots[t] as number;
      for (;;) {
        const f = feature[n] as number;
        if (f >= 0) n = (child[n] as number) + Number(!((x[f] as number) <= (threshold[n] as number)));
        else if (f === LEAF) break;
        else n = (child[n] as number) + categoricalStep(forest.categorySplits[-2 - f] as CategorySplit, x);
      }
      leaves[t] = n;
    }
    return leaves;
  }

  /** The row as a dense array: a dense vector's own values, or the scratch buffer holding a sparse one. */
  private dense(features: SparkVector): Float64Array {
    if (this.touched !== undefined) {
      for (const i of this.touched) this.scratch[i] = 0;
      this.touched = undefined;
    }
    if (features.type === "dense") return features.values;
    const { indices, values } = features;
    for (let k = 0; k < indices.length; k++) this.scratch[indices[k] as number] = values[k] as number;
    this.touched = indices;
    return this.scratch;
  }

  /** Class counts of the single tree's leaf (DT) or the sum of each tree's normalized counts (RF). */
  votes(features: SparkVector): Float64Array {
    const leaves = this.walk(features);
    const { stats, statsWidth } = this.model.forest;
    const k = this.model.numClasses;
    const votes = new Float64Array(k);
    for (let t = 0; t < leaves.length; t++) {
      const at = (leaves[t] as number) * statsWidth;
      for (let c = 0; c < k; c++) votes[c] = (votes[c] as number) + (stats[at + c] as number);
    }
    return votes;
  }

  /** `Σ weight_t · prediction_t` in tree order (GBT margin and regression). */
  weightedSum(features: SparkVector): number {
    const leaves = this.walk(features);
    const { prediction } = this.model.forest;
    const { weights } = this.model;
    let sum = 0;
    for (let t = 0; t < leaves.length; t++) sum += (weights[t] as number) * (prediction[leaves[t] as number] as number);
    return sum;
  }

  /** Mean of the trees' leaf predictions (random forest regression: sum, then divide). */
  mean(features: SparkVector): number {
    const leaves = this.walk(features);
    const { prediction } = this.model.forest;
    let sum = 0;
    for (let t = 0; t < leaves.length; t++) sum += prediction[leaves[t] as number] as number;
    return sum / leaves.length;
  }
}

/** GBT classifier: `LogLoss.computeProbability` on raw[0] = -margin; p1 = 1 - p0. */
function gbtProbabilityInPlace(raw: Float64Array): Float64Array {
  raw[0] = 1 / (1 + Math.exp(-2 * (raw[0] as number)));
  raw[1] = 1 - (raw[0] as number);
  return raw;
}

/** The classifier math of §5 as the shared plumbing wants it. */
function classifierScorer(model: TreeModel, thresholdsSet: boolean): ClassifierScorer {
  const walker = new TreeWalker(model);
  const base = { numClasses: model.numClasses, numFeatures: model.numFeatures };
  if (model.kind === "gbtc") {
    return {
      ...base,
      predictRaw: (x) => {
        const margin = walker.weightedSum(x);
        return Float64Array.of(-margin, margin);
      },
      raw2probabilityInPlace: gbtProbabilityInPlace,
      // GBTClassificationModel.predict: the margin's sign unless thresholds are set.
      ...(thresholdsSet ? {} : { predict: (x: SparkVector) => (walker.weightedSum(x) > 0 ? 1 : 0) }),
    };
  }
  return {
    ...base,
    predictRaw: (x) => walker.votes(x),
    raw2probabilityInPlace: normalizeToProbabilitiesInPlace,
    // DecisionTreeClassificationModel.predict: the leaf's stored prediction (thresholds or not).
    ...(model.kind === "dtc" ? { predict: (x: SparkVector) => model.forest.prediction[walker.walk(x)[0] as number] as number } : {}),
  };
}

function regressorScorer(model: TreeModel): PredictorScorer {
  const walker = new TreeWalker(model);
  const numFeatures = model.numFeatures;
  switch (model.kind) {
    case "rfr":
      return { numFeatures, predict: (x) => walker.mean(x) };
    case "gbtr":
      return { numFeatures, predict: (x) => walker.weightedSum(x) };
    default:
      return { numFeatures, predict: (x) => model.forest.prediction[walker.walk(x)[0] as number] as number };
  }
}

/** Variance of a regression leaf from its `[count, sum, sumOfSquares]` stats (Spark's VarianceCalculator). */
function varianceOf(stats: Float64Array, at: number): number {
  const count = stats[at] as number;
  if (count === 0) return 0;
  const mean = (stats[at + 1] as number) / count;
  return (stats[at + 2] as number) / count - mean * mean;
}

/**
 * The tree-only outputs after Spark's prediction columns: `varianceCol` (DecisionTreeRegressionModel) and `leafCol`
 * (Spark 3.0+: the leaf's position among its tree's leaves, left to right; a double for a single tree, a vector of
 * one per tree for an ensemble).
 */
function withTreeColumns(stage: LoadedStage, model: TreeModel, featuresCol: string, varianceCol: string, leafCol: string): LoadedStage {
  if (varianceCol === "" && leafCol === "") return stage;
  const trees = model.forest.numTrees;
  const extra: ColumnInfo[] = [];
  if (varianceCol !== "") extra.push({ name: varianceCol, kind: "double" });
  if (leafCol !== "") extra.push(isSingleTree(model.kind) ? { name: leafCol, kind: "double" } : { name: leafCol, kind: "vector", size: trees });
  const walker = new TreeWalker(model);
  return {
    ...stage,
    outputs: [...stage.outputs, ...extra],
    transform(frame: Frame): Frame {
      const scored = stage.transform(frame);
      const features = readFeatureVectors(frame, featuresCol, model.numFeatures);
      const variance = varianceCol !== "" ? new Float64Array(frame.rows) : undefined;
      const leafValues = leafCol !== "" ? new Float64Array(frame.rows * trees) : undefined;
      const { stats, statsWidth, leafOrdinal } = model.forest;
      for (let row = 0; row < frame.rows; row++) {
        const leaves = walker.walk(features[row] as SparkVector);
        if (variance !== undefined) variance[row] = varianceOf(stats, (leaves[0] as number) * statsWidth);
        if (leafValues !== undefined) for (let t = 0; t < trees; t++) leafValues[row * trees + t] = leafOrdinal[leaves[t] as number] as number;
      }
      const added: [string, FrameColumn][] = [];
      if (variance !== undefined) added.push([varianceCol, { kind: "double", values: variance }]);
      if (leafValues !== undefined) {
        if (isSingleTree(model.kind)) added.push([leafCol, { kind: "double", values: leafValues }]);
        else {
          const values = Array.from({ length: frame.rows }, (_, r): SparkVector => ({ type: "dense", values: leafValues.slice(r * trees, (r + 1) * trees) }));
          added.push([leafCol, { kind: "vector", values, size: trees }]);
        }
      }
      return appendColumns(scored, added);
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Loading

/** A top-level metadata extra (`numFeatures`, `numClasses`, `numTrees`): Spark merges them into the metadata JSON. */
function extra(context: StageContext, name: string): number | undefined {
  const value = (context.metadata as unknown as Record<string, unknown>)[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value === "number" && Number.isInteger(value) && value >= 0) return value;
  throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${context.dir}: metadata ${name} is ${JSON.stringify(value)}, not a count`, { field: name });
}

function required(context: StageContext, name: string): number {
  const value = extra(context, name);
  if (value === undefined) throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${context.dir}: metadata has no ${name}`, { field: name });
  return value;
}

function stringParam(context: StageContext, name: string, fallback: string): string {
  const value = context.param<unknown>(name, fallback);
  if (typeof value !== "string") {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${context.dir}: param ${name} is ${JSON.stringify(value)}, not a string`, { field: name });
  }
  return value;
}

/** Ensemble `data/` rows (`treeID`, `nodeData`) grouped into trees by treeID, checked to be 0..numTrees-1. */
function nodeRowsOfEnsemble(rows: readonly Record<string, unknown>[], where: string): NodeRow[][] {
  const byTree = new Map<number, NodeRow[]>();
  for (const row of rows) {
    const treeId = numberOf(row.treeID, "treeID", where);
    let list = byTree.get(treeId);
    if (list === undefined) byTree.set(treeId, (list = []));
    list.push(nodeRowOf(row.nodeData, where));
  }
  const ids = [...byTree.keys()].sort((a, b) => a - b);
  ids.forEach((id, i) => {
    if (id !== i) throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${where}: tree ids must be 0..${ids.length - 1}, found ${id}`, { field: "treeID" });
  });
  return ids.map((id) => byTree.get(id) as NodeRow[]);
}

/** `treesMetadata/` weights by treeID. */
function treeWeights(rows: readonly Record<string, unknown>[], numTrees: number, where: string): Float64Array {
  const weights = new Float64Array(numTrees).fill(Number.NaN);
  for (const row of rows) {
    const id = numberOf(row.treeID, "treeID", where);
    if (!Number.isInteger(id) || id < 0 || id >= numTrees) {
      throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${where}: treesMetadata has tree ${id}, the model has ${numTrees} trees`, { field: "treeID" });
    }
    weights[id] = numberOf(row.weights, "weights", where);
  }
  const missing = weights.findIndex((w) => Number.isNaN(w));
  if (missing >= 0) throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${where}: treesMetadata has no weight for tree ${missing}`, { field: "weights" });
  return weights;
}

/** Reads and compiles a tree model's directory (exported for tests and the benchmark). */
export async function loadTreeModel(context: StageContext, kind: ModelKind): Promise<TreeModel> {
  const where = context.dir;
  const found = context.metadata.class;
  if (found !== CLASS[kind]) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${where}: metadata class is ${found}, expected ${CLASS[kind]}`, { field: "class" });
  }
  const numClasses = kind === "gbtc" ? 2 : isClassifier(kind) ? required(context, "numClasses") : 0;
  const numFeatures = required(context, "numFeatures");
  const single = isSingleTree(kind);
  const rows = await context.readParquet("data");
  const trees = single ? [rows.map((row) => nodeRowOf(row, `${where}/data`))] : nodeRowsOfEnsemble(rows, `${where}/data`);
  const declared = single ? undefined : extra(context, "numTrees");
  if (declared !== undefined && declared !== trees.length) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${where}: metadata says numTrees ${declared}, data/ holds ${trees.length} trees`, { field: "numTrees" });
  }
  const weights = single ? Float64Array.of(1) : treeWeights(await context.readParquet("treesMetadata"), trees.length, `${where}/treesMetadata`);
  // Classifier leaves keep class counts (RF: normalized per tree, as predictRaw adds them); DT regression leaves keep
  // [count, sum, sumSq] for the variance column; GBT member trees are regression trees whose stats are never read.
  const statsWidth = kind === "dtc" || kind === "rfc" ? numClasses : kind === "dtr" ? 3 : 0;
  const forest = compileForest(trees, { statsWidth, normalizeStats: kind === "rfc" }, `${where}/data`);
  if (forest.maxFeatureIndex >= numFeatures) {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${where}: a split reads feature ${forest.maxFeatureIndex}, numFeatures is ${numFeatures}`, {
      field: "numFeatures",
    });
  }
  return { kind, forest, weights, numFeatures, numClasses };
}

function loaderFor(kind: ModelKind): StageLoader {
  return async (context) => {
    const model = await loadTreeModel(context, kind);
    const stage = isClassifier(kind)
      ? classifierStage(context, classifierScorer(model, readThresholds(context) !== undefined))
      : predictorStage(context, regressorScorer(model));
    const featuresCol = stringParam(context, "featuresCol", "features");
    const varianceCol = kind === "dtr" ? stringParam(context, "varianceCol", "") : "";
    return withTreeColumns(stage, model, featuresCol, varianceCol, stringParam(context, "leafCol", ""));
  };
}

/** The six tree model classes of spark.ml. */
export const treeLoaders: StageLoaders = Object.fromEntries((Object.keys(CLASS) as ModelKind[]).map((kind) => [CLASS[kind], loaderFor(kind)]));
