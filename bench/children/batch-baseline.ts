/**
 * The baseline of the `batch` group: onnxruntime-node's session.run on `batchRows`-row batches of the breast-cancer
 * features, in a loop, in-process, with mlship's worker session options (as `compute.ts`, whose job carries its
 * input in the environment, too small a place for 5,000 rows). The rows are the fixture's, repeated. No reading,
 * parsing or writing: what batch scoring would cost if only the model counted. One process per core, rates added.
 */
import fs from "node:fs";
import { performance } from "node:perf_hooks";
import ort from "onnxruntime-node";
import { answer, job } from "../lib/child.js";

export interface BatchBaselineJob {
  modelPath: string;
  inputName: string;
  fixture: string;
  features: number;
  batchRows: number;
  warmupSeconds: number;
  seconds: number;
}

export interface BatchBaselineResult {
  runs: number;
  seconds: number;
  runsPerSecond: number;
  rowsPerSecond: number;
}

const j = job<BatchBaselineJob>();
const lines = fs.readFileSync(j.fixture, "utf8").split("\n").slice(1).filter((l) => l.trim() !== "");
const data = new Float32Array(j.batchRows * j.features);
for (let r = 0; r < j.batchRows; r++) {
  const cells = (lines[r % lines.length] as string).split(",");
  for (let c = 0; c < j.features; c++) data[r * j.features + c] = Number(cells[c]);
}
const session = await ort.InferenceSession.create(j.modelPath, {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  executionMode: "sequential",
  graphOptimizationLevel: "all",
});
const feeds = { [j.inputName]: new ort.Tensor("float32", data, [j.batchRows, j.features]) };

async function loop(seconds: number): Promise<{ runs: number; seconds: number }> {
  const start = performance.now();
  const stopAt = start + seconds * 1000;
  let now = start;
  let runs = 0;
  while (now < stopAt) {
    await session.run(feeds);
    runs++;
    now = performance.now();
  }
  return { runs, seconds: (now - start) / 1000 };
}

await loop(j.warmupSeconds);
const measured = await loop(j.seconds);
answer({
  runs: measured.runs,
  seconds: measured.seconds,
  runsPerSecond: measured.runs / measured.seconds,
  rowsPerSecond: (measured.runs * j.batchRows) / measured.seconds,
} satisfies BatchBaselineResult);
await session.release();
