/**
 * The compute ceiling: onnxruntime-node's session.run in a loop, in-process, with the session options mlship's
 * workers use (intra-op threads 1, inter-op 1, sequential, all graph optimizations). No HTTP, no JSON, no worker
 * messages: what is left when everything but the model is free. One loop uses one core; the bench runs one such
 * process per core at once and adds their rates.
 */
import { performance } from "node:perf_hooks";
import ort from "onnxruntime-node";
import { answer, job, percentile, Samples } from "../lib/child.js";

export interface ComputeJob {
  modelPath: string;
  inputName: string;
  /** Input shape, batch first. */
  shape: number[];
  data: number[];
  warmupSeconds: number;
  seconds: number;
}

export interface ComputeResult {
  runs: number;
  seconds: number;
  runsPerSecond: number;
  p50: number;
  p99: number;
}

const j = job<ComputeJob>();
const session = await ort.InferenceSession.create(j.modelPath, {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  executionMode: "sequential",
  graphOptimizationLevel: "all",
});
const feeds = { [j.inputName]: new ort.Tensor("float32", Float32Array.from(j.data), j.shape) };

async function loop(seconds: number, samples: Samples | undefined): Promise<number> {
  const start = performance.now();
  const stopAt = start + seconds * 1000;
  let now = start;
  while (now < stopAt) {
    const t0 = now;
    await session.run(feeds);
    now = performance.now();
    samples?.push(now - t0);
  }
  return (now - start) / 1000;
}

await loop(j.warmupSeconds, undefined);
const samples = new Samples();
const seconds = await loop(j.seconds, samples);
const sorted = samples.sorted();
answer({
  runs: samples.length,
  seconds,
  runsPerSecond: samples.length / seconds,
  p50: percentile(sorted, 50),
  p99: percentile(sorted, 99),
} satisfies ComputeResult);
await session.release();
