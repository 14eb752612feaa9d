import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createOnnxRuntime } from "../../src/runtime/index.js";
import type { LoadedModel, OnnxRuntime } from "../../src/runtime/index.js";
import { inputRows, modelPath, readExpected } from "./util.js";
import type { Expected } from "./util.js";

const FIXTURES = [
  { name: "breast_cancer_mlp", probs: "probabilities", tol: "probabilities_abs", label: true },
  { name: "digits_cnn", probs: "probabilities", tol: "probabilities_abs", label: true },
  { name: "diabetes_linear", probs: "prediction", tol: "prediction_abs", label: false },
] as const;

let runtime: OnnxRuntime;
beforeAll(() => {
  runtime = createOnnxRuntime({ workers: 2 });
});
afterAll(async () => {
  await runtime.close();
});

function checkOutputs(
  expected: Expected,
  fixture: (typeof FIXTURES)[number],
  out: Record<string, { shape: number[]; data: unknown }>,
  from: number,
  to: number,
): void {
  const tolerance = expected.tolerance[fixture.tol] as number;
  const want = expected.outputs[fixture.probs]!.slice(from, to) as number[][];
  const got = out[fixture.probs]!;
  const width = want[0]!.length;
  expect(got.shape).toEqual([to - from, width]);
  const data = got.data as Float32Array;
  expect(data).toBeInstanceOf(Float32Array);
  let maxDiff = 0;
  want.forEach((row, r) => row.forEach((v, c) => {
    maxDiff = Math.max(maxDiff, Math.abs(data[r * width + c]! - v));
  }));
  expect(maxDiff).toBeLessThanOrEqual(tolerance);
  if (fixture.label) {
    const labels = out.label!;
    expect(labels.shape).toEqual([to - from]);
    expect(labels.data).toBeInstanceOf(BigInt64Array);
    expect(Array.from(labels.data as BigInt64Array, Number)).toEqual(expected.outputs.label!.slice(from, to));
  }
}

describe.each(FIXTURES)("fixture $name through OnnxRuntime workers", (fixture) => {
  const expected = readExpected(fixture.name);
  let model: LoadedModel;

  beforeAll(async () => {
    model = await runtime.load({ key: `${fixture.name}@1`, modelPath: modelPath(fixture.name) });
  });

  it("reports the graph's inputs and outputs with the batch axis as -1", () => {
    expect(model.inputs).toEqual([{ name: "input", dtype: "float32", shape: [-1, ...expected.input_shape.slice(1)] }]);
    const names = model.outputs.map((o) => o.name).sort();
    expect(names).toEqual(Object.keys(expected.outputs).sort());
    if (fixture.label) expect(model.outputs.find((o) => o.name === "label")).toEqual({ name: "label", dtype: "int64", shape: [-1] });
  });

  it("matches expected.json for the whole batch within its tolerance (labels exact)", async () => {
    const out = await model.run({ input: inputRows(expected) });
    checkOutputs(expected, fixture, out, 0, expected.inputs.length);
  });

  it("gives identical numbers for single rows and for the whole batch", async () => {
    const batch = await model.run({ input: inputRows(expected) });
    const batchData = batch[fixture.probs]!.data as Float32Array;
    const width = batch[fixture.probs]!.shape[1]!;
    const singles = await Promise.all(expected.inputs.map((_, i) => model.run({ input: inputRows(expected, i, i + 1) })));
    singles.forEach((single, i) => {
      checkOutputs(expected, fixture, single, i, i + 1);
      expect(Array.from(single[fixture.probs]!.data as Float32Array)).toEqual(
        Array.from(batchData.subarray(i * width, (i + 1) * width)),
      );
    });
  });

  it("returns only the requested outputs", async () => {
    const out = await model.run({ input: inputRows(expected, 0, 3) }, { outputs: [fixture.probs] });
    expect(Object.keys(out)).toEqual([fixture.probs]);
  });
});

describe("two workers running the same model at once", () => {
  it("spreads 200 concurrent runs over both workers with correct results", async () => {
    const fixture = FIXTURES[0];
    const expected = readExpected(fixture.name);
    const model = await runtime.load({ key: `${fixture.name}@1`, modelPath: modelPath(fixture.name) });
    const before = runtime.stats().workers.map((w) => w.runsCompleted);
    const n = expected.inputs.length;
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => model.run({ input: inputRows(expected, i % n, (i % n) + 1) }).then((out) => ({ i, out }))),
    );
    for (const { i, out } of results) checkOutputs(expected, fixture, out, i % n, (i % n) + 1);
    const stats = runtime.stats();
    expect(stats.workers).toHaveLength(2);
    const served = stats.workers.map((w, k) => w.runsCompleted - before[k]!);
    expect(served.reduce((a, b) => a + b, 0)).toBe(200);
    for (const count of served) expect(count).toBeGreaterThan(0);
    expect(new Set(stats.workers.map((w) => w.threadId)).size).toBe(2);
    for (const w of stats.workers) expect(w.inFlight).toBe(0);
  });
});
