/**
 * The `sparkml` group (issue 8 item 7): rows/s of mlship's native Spark ML tree scorer on a random forest, against
 * the same forest as an ONNX `TreeEnsembleClassifier` (ai.onnx.ml) in onnxruntime-node, in one process, in turns,
 * on the same batch.
 *
 * The forest is generated from a seed (full binary trees, random split features, float32-exact thresholds, random
 * leaf class counts) as Spark's NodeData rows; the native side loads them through the RandomForestClassificationModel
 * loader from an in-memory StageContext and times `transform` on a frame of dense vectors (rawPrediction,
 * probability and prediction, as Spark outputs them); the ONNX side gets the same trees with each leaf's normalized
 * counts / numTrees as class weights, so its summed scores are the forest's probabilities. Before timing, both must
 * agree on the probabilities of a sample (float32 in ONNX: 1e-5). Both run on one thread.
 */
import { performance } from "node:perf_hooks";
import ort from "onnxruntime-node";
import { answer, job } from "../lib/child.js";
import { distModule } from "../lib/dist.js";
import { uniforms } from "../lib/random.js";
import type * as OnnxBuild from "../../src/package/onnx-build.js";
import type * as Trees from "../../src/runtime/sparkml/trees.js";
import type { Frame, FrameColumn, SparkVector, StageContext, StageMetadata } from "../../src/runtime/sparkml/types.js";

export interface ForestJob {
  trees: number;
  /** Depth of every leaf (a full tree: 2^(depth+1) - 1 nodes). */
  depth: number;
  features: number;
  classes: number;
  batchRows: number;
  /** Rows whose probabilities are compared before timing. */
  checkRows: number;
  seed: number;
  warmupSeconds: number;
  seconds: number;
}

export interface EngineResult {
  runs: number;
  seconds: number;
  rowsPerSecond: number;
}

export interface ForestResult {
  native: EngineResult;
  onnx: EngineResult;
  /** Rows compared, the largest probability difference, and rows whose argmax differs away from a near-tie. */
  check: { rows: number; maxAbsDiff: number; predictionMismatches: number };
  nodes: number;
  onnxBytes: number;
}

const RFC = "org.apache.spark.ml.classification.RandomForestClassificationModel";

interface NodeRow {
  id: number;
  prediction: number;
  impurity: number;
  impurityStats: number[];
  rawCount: number;
  gain: number;
  leftChild: number;
  rightChild: number;
  split: { featureIndex: number; leftCategoriesOrThreshold: number[]; numCategories: number };
}

/** Full binary trees in Spark's pre-order id layout. */
function generateForest(j: ForestJob): NodeRow[][] {
  const u = uniforms(j.seed);
  const forest: NodeRow[][] = [];
  for (let t = 0; t < j.trees; t++) {
    const nodes: NodeRow[] = [];
    const build = (level: number): number => {
      const id = nodes.length;
      if (level === j.depth) {
        const counts = Array.from({ length: j.classes }, () => Math.floor(u() * 20));
        if (!counts.some((c) => c > 0)) counts[Math.floor(u() * j.classes)] = 1;
        const best = counts.indexOf(Math.max(...counts));
        nodes.push({
          id,
          prediction: best,
          impurity: 0,
          impurityStats: counts,
          rawCount: counts.reduce((a, b) => a + b, 0),
          gain: -1,
          leftChild: -1,
          rightChild: -1,
          split: { featureIndex: -1, leftCategoriesOrThreshold: [], numCategories: -1 },
        });
        return id;
      }
      const node: NodeRow = {
        id,
        prediction: 0,
        impurity: 0.5,
        impurityStats: new Array<number>(j.classes).fill(1),
        rawCount: j.classes,
        gain: 0.1,
        leftChild: -1,
        rightChild: -1,
        // float32-exact so that ONNX (float thresholds, float inputs) routes every row the same way.
        split: { featureIndex: Math.floor(u() * j.features), leftCategoriesOrThreshold: [Math.fround(u())], numCategories: -1 },
      };
      nodes.push(node);
      node.leftChild = build(level + 1);
      node.rightChild = build(level + 1);
      return id;
    };
    build(0);
    forest.push(nodes);
  }
  return forest;
}

function inMemoryContext(j: ForestJob, forest: NodeRow[][]): StageContext {
  const metadata = {
    class: RFC,
    uid: "rfc_bench",
    sparkVersion: "3.5.1",
    timestamp: 0,
    paramMap: { numTrees: j.trees, maxDepth: j.depth },
    defaultParamMap: {},
    numFeatures: j.features,
    numClasses: j.classes,
    numTrees: j.trees,
  } as StageMetadata;
  const datasets: Record<string, Record<string, unknown>[]> = {
    data: forest.flatMap((nodes, treeID) => nodes.map((nodeData) => ({ treeID, nodeData }))),
    treesMetadata: forest.map((_, treeID) => ({ treeID, metadata: "{}", weights: 1 })),
  };
  return {
    dir: "/in-memory/bench-forest",
    metadata,
    param<T>(name: string, fallback?: T): T | undefined {
      return Object.hasOwn(metadata.paramMap, name) ? (metadata.paramMap[name] as T) : fallback;
    },
    readParquet: (sub = "data") => Promise.resolve(datasets[sub] ?? []),
    loadStage: () => Promise.reject(new Error("no nested stages")),
  };
}

function onnxForest(j: ForestJob, forest: NodeRow[][], build: typeof OnnxBuild): Uint8Array {
  const a = {
    treeIds: [] as number[],
    nodeIds: [] as number[],
    featureIds: [] as number[],
    modes: [] as string[],
    values: [] as number[],
    trueIds: [] as number[],
    falseIds: [] as number[],
    classTree: [] as number[],
    classNode: [] as number[],
    classIds: [] as number[],
    classWeights: [] as number[],
  };
  forest.forEach((nodes, t) => {
    for (const n of nodes) {
      const isLeaf = n.leftChild === -1;
      a.treeIds.push(t);
      a.nodeIds.push(n.id);
      a.featureIds.push(isLeaf ? 0 : n.split.featureIndex);
      a.modes.push(isLeaf ? "LEAF" : "BRANCH_LEQ");
      a.values.push(isLeaf ? 0 : (n.split.leftCategoriesOrThreshold[0] as number));
      a.trueIds.push(isLeaf ? 0 : n.leftChild);
      a.falseIds.push(isLeaf ? 0 : n.rightChild);
      if (isLeaf) {
        const total = n.impurityStats.reduce((x, y) => x + y, 0);
        n.impurityStats.forEach((count, c) => {
          a.classTree.push(t);
          a.classNode.push(n.id);
          a.classIds.push(c);
          a.classWeights.push(count / total / j.trees);
        });
      }
    }
  });
  return build.buildOnnxModel({
    inputs: [{ name: "features", dtype: "float32", shape: ["N", j.features] }],
    outputs: [
      { name: "label", dtype: "int64", shape: ["N"] },
      { name: "probabilities", dtype: "float32", shape: ["N", j.classes] },
    ],
    nodes: [
      {
        op: "TreeEnsembleClassifier",
        domain: "ai.onnx.ml",
        inputs: ["features"],
        outputs: ["label", "probabilities"],
        attrs: {
          nodes_treeids: { ints: a.treeIds },
          nodes_nodeids: { ints: a.nodeIds },
          nodes_featureids: { ints: a.featureIds },
          nodes_modes: { strings: a.modes },
          nodes_values: { floats: a.values },
          nodes_truenodeids: { ints: a.trueIds },
          nodes_falsenodeids: { ints: a.falseIds },
          class_treeids: { ints: a.classTree },
          class_nodeids: { ints: a.classNode },
          class_ids: { ints: a.classIds },
          class_weights: { floats: a.classWeights },
          classlabels_int64s: { ints: Array.from({ length: j.classes }, (_, c) => c) },
          post_transform: { s: "NONE" },
        },
      },
    ],
    opsets: { "": 17, "ai.onnx.ml": 3 },
  });
}

/**
 * Runs the two engines in turns, one batch each, until each has had `seconds`: load from other processes then
 * falls on both alike instead of on whichever happened to run second.
 */
async function alternate(seconds: number, native: () => void, onnx: () => Promise<void>): Promise<{ native: EngineResult; onnx: EngineResult }> {
  const spent = { native: 0, onnx: 0 };
  const runs = { native: 0, onnx: 0 };
  while (spent.native < seconds * 1000 || spent.onnx < seconds * 1000) {
    let t = performance.now();
    native();
    spent.native += performance.now() - t;
    runs.native++;
    t = performance.now();
    await onnx();
    spent.onnx += performance.now() - t;
    runs.onnx++;
  }
  const rate = (n: number, ms: number): EngineResult => ({ runs: n, seconds: ms / 1000, rowsPerSecond: (n * j.batchRows) / (ms / 1000) });
  return { native: rate(runs.native, spent.native), onnx: rate(runs.onnx, spent.onnx) };
}

const j = job<ForestJob>();
const trees = await distModule<typeof Trees>("runtime/sparkml/trees.js");
const onnxBuild = await distModule<typeof OnnxBuild>("package/onnx-build.js");
const forest = generateForest(j);
const loader = trees.treeLoaders[RFC];
if (loader === undefined) throw new Error(`no loader for ${RFC}`);
const stage = await loader(inMemoryContext(j, forest));

// One batch of float32-exact features, as dense vectors for the native side and one float32 tensor for ONNX.
const u = uniforms(j.seed + 1);
const flat = new Float32Array(j.batchRows * j.features);
for (let i = 0; i < flat.length; i++) flat[i] = u();
const vectors: SparkVector[] = Array.from({ length: j.batchRows }, (_, r) => ({
  type: "dense",
  values: Float64Array.from(flat.subarray(r * j.features, (r + 1) * j.features)),
}));
const frame: Frame = { rows: j.batchRows, columns: new Map<string, FrameColumn>([["features", { kind: "vector", values: vectors, size: j.features }]]) };

const bytes = onnxForest(j, forest, onnxBuild);
const session = await ort.InferenceSession.create(bytes, {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  executionMode: "sequential",
  graphOptimizationLevel: "all",
});
const feeds = { features: new ort.Tensor("float32", flat, [j.batchRows, j.features]) };

// Same answers first.
const scored = stage.transform(frame);
const probability = scored.columns.get("probability");
const prediction = scored.columns.get("prediction");
if (probability?.kind !== "vector" || prediction?.kind !== "double") throw new Error("the native scorer gave no probability/prediction columns");
const onnxOut = await session.run(feeds);
const onnxProbabilities = onnxOut.probabilities?.data as Float32Array;
let maxAbsDiff = 0;
let predictionMismatches = 0;
const checkRows = Math.min(j.checkRows, j.batchRows);
for (let r = 0; r < checkRows; r++) {
  const p = probability.values[r] as SparkVector;
  for (let c = 0; c < j.classes; c++) maxAbsDiff = Math.max(maxAbsDiff, Math.abs((p.values[c] as number) - (onnxProbabilities[r * j.classes + c] as number)));
  // The ONNX `label` output of a two-class ensemble follows onnxruntime's own binary rule, so compare the argmax of
  // its probabilities instead, leaving out rows whose top two classes are within float32 noise.
  const row = Array.from(onnxProbabilities.subarray(r * j.classes, (r + 1) * j.classes));
  const sorted = [...row].sort((a, b) => b - a);
  if ((sorted[0] as number) - (sorted[1] as number) > 1e-5 && row.indexOf(sorted[0] as number) !== prediction.values[r]) predictionMismatches++;
}
if (predictionMismatches > 0) throw new Error(`native and ONNX predictions differ on ${predictionMismatches} of ${checkRows} rows`);
if (!(maxAbsDiff <= 1e-5)) throw new Error(`native and ONNX probabilities differ by ${maxAbsDiff} (more than 1e-5) on ${checkRows} rows`);

const runNative = (): void => void stage.transform(frame);
const runOnnx = async (): Promise<void> => void (await session.run(feeds));
await alternate(j.warmupSeconds, runNative, runOnnx);
const measured = await alternate(j.seconds, runNative, runOnnx);
answer({
  native: measured.native,
  onnx: measured.onnx,
  check: { rows: checkRows, maxAbsDiff, predictionMismatches },
  nodes: forest.reduce((a, t) => a + t.length, 0),
  onnxBytes: bytes.length,
} satisfies ForestResult);
await session.release();
