import { describe, expect, it } from "vitest";
import type { Tensor } from "../../src/core/index.js";
import { tensorToList } from "../../src/core/index.js";
import { applyPostprocess } from "../../src/package/index.js";
import type { PostprocessStep } from "../../src/package/index.js";
import { catchMlship, readExpected } from "./helpers.js";

function f32(shape: number[], values: number[]): Tensor {
  return { dtype: "float32", shape, data: Float32Array.from(values) };
}

function i64(shape: number[], values: number[]): Tensor {
  return { dtype: "int64", shape, data: BigInt64Array.from(values.map(BigInt)) };
}

describe("softmax", () => {
  it("matches hand-computed values over the last axis and replaces the output by default", () => {
    const out = applyPostprocess({ logits: f32([2, 3], [1, 2, 3, 0, 0, 0]) }, [{ type: "softmax", output: "logits" }]);
    const t = out.logits as Tensor;
    expect(t.dtype).toBe("float32");
    expect(t.shape).toEqual([2, 3]);
    const v = Array.from(t.data as Float32Array);
    // e^1, e^2, e^3 over their sum: 0.09003057, 0.24472847, 0.66524096
    [0.09003057, 0.24472847, 0.66524096, 1 / 3, 1 / 3, 1 / 3].forEach((x, i) => expect(v[i]).toBeCloseTo(x, 7));
  });

  it("is stable for large logits and keeps float64", () => {
    const out = applyPostprocess({ z: { dtype: "float64", shape: [1, 2], data: Float64Array.from([1000, 1000]) } },
      [{ type: "softmax", output: "z", as: "p" }]);
    expect(Array.from((out.p as Tensor).data as Float64Array)).toEqual([0.5, 0.5]);
    expect(out.p?.dtype).toBe("float64");
    expect(out.z).toBeDefined();
  });

  it("recovers the fixture probabilities from their logarithms", async () => {
    for (const name of ["breast_cancer_mlp", "digits_cnn"] as const) {
      const expected = await readExpected(name);
      const probs = expected.outputs.probabilities as number[][];
      const width = (probs[0] as number[]).length;
      const logs = f32([probs.length, width], probs.flat().map((p) => Math.log(p)));
      const out = applyPostprocess({ logits: logs }, [{ type: "softmax", output: "logits", as: "probabilities" }]);
      const got = (out.probabilities as Tensor).data as Float32Array;
      probs.flat().forEach((p, i) => expect(Math.abs((got[i] as number) - p)).toBeLessThan(1e-6));
    }
  });
});

describe("argmax", () => {
  it("gives int64 indices with the last axis removed; ties pick the first", () => {
    const out = applyPostprocess({ p: f32([3, 3], [0.1, 0.7, 0.2, 0.5, 0.5, 0, -1, -3, -2]) },
      [{ type: "argmax", output: "p" }]);
    const t = out.p_argmax as Tensor;
    expect(t.dtype).toBe("int64");
    expect(t.shape).toEqual([3]);
    expect(Array.from(t.data as BigInt64Array)).toEqual([1n, 0n, 0n]);
  });

  it("equals the fixture label output", async () => {
    for (const name of ["breast_cancer_mlp", "digits_cnn"] as const) {
      const expected = await readExpected(name);
      const probs = expected.outputs.probabilities as number[][];
      const out = applyPostprocess({ probabilities: f32([probs.length, (probs[0] as number[]).length], probs.flat()) },
        [{ type: "argmax", output: "probabilities", as: "predicted" }]);
      expect(tensorToList(out.predicted as Tensor)).toEqual(expected.outputs.label);
    }
  });
});

describe("labels", () => {
  it("maps an int64 index output (the fixture labels) to names, keeping the model outputs", async () => {
    const expected = await readExpected("breast_cancer_mlp");
    const label = expected.outputs.label as number[];
    const outputs = { label: i64([label.length], label) };
    const out = applyPostprocess(outputs, [
      { type: "labels", output: "label", labels: ["malignant", "benign"], as: "class" },
    ]);
    expect(out.class?.dtype).toBe("string");
    expect(out.class?.shape).toEqual([label.length]);
    expect(out.class?.data).toEqual(label.map((l) => (l === 0 ? "malignant" : "benign")));
    expect(out.label).toBe(outputs.label);
    expect(Object.keys(outputs)).toEqual(["label"]);
  });

  it("maps a score output through its argmax; default name <output>_labels", () => {
    const out = applyPostprocess({ p: f32([2, 3], [0.2, 0.3, 0.5, 0.9, 0.05, 0.05]) },
      [{ type: "labels", output: "p", labels: ["a", "b", "c"] }]);
    expect(out.p_labels).toEqual({ dtype: "string", shape: [2], data: ["c", "a"] });
  });

  it("an index outside the labels is an error naming the output", async () => {
    const error = await catchMlship(() => applyPostprocess({ label: i64([2], [0, 5]) },
      [{ type: "labels", output: "label", labels: ["x", "y"] }]));
    expect(error.code).toBe("MLSHIP_ERR_RUNTIME_INFERENCE");
    expect(error.field).toBe("label");
    expect(error.message).toMatch(/class index 5 \(element 1\) is outside the 2 labels/);
  });

  it("a score output with the wrong number of labels is an error", async () => {
    const error = await catchMlship(() => applyPostprocess({ p: f32([1, 3], [1, 2, 3]) },
      [{ type: "labels", output: "p", labels: ["x", "y"] }]));
    expect(error.message).toMatch(/2 labels for 3 classes/);
  });
});

describe("top_k", () => {
  it("gives <as>_indices, <as>_scores and <as>_labels, best first, ties by lower index", () => {
    const steps: PostprocessStep[] = [{ type: "top_k", output: "p", k: 3, labels: ["a", "b", "c", "d"], as: "top" }];
    const out = applyPostprocess({ p: f32([2, 4], [0.1, 0.5, 0.2, 0.2, 0.4, 0.3, 0.2, 0.1]) }, steps);
    expect(out.top_indices?.dtype).toBe("int64");
    expect(out.top_indices?.shape).toEqual([2, 3]);
    expect(Array.from(out.top_indices?.data as BigInt64Array)).toEqual([1n, 2n, 3n, 0n, 1n, 2n]);
    expect(out.top_scores?.dtype).toBe("float32");
    expect(Array.from(out.top_scores?.data as Float32Array)).toEqual(
      [0.5, 0.2, 0.2, 0.4, 0.3, 0.2].map((x) => Math.fround(x)));
    expect(out.top_labels).toEqual({ dtype: "string", shape: [2, 3], data: ["b", "c", "d", "a", "b", "c"] });
  });

  it("default name <output>_top<k>; agrees with a full sort on the digits outputs", async () => {
    const expected = await readExpected("digits_cnn");
    const probs = expected.outputs.probabilities as number[][];
    const out = applyPostprocess({ probabilities: f32([probs.length, 10], probs.flat()) },
      [{ type: "top_k", output: "probabilities", k: 5 }]);
    const idx = Array.from(out.probabilities_top5_indices?.data as BigInt64Array, Number);
    probs.forEach((row, r) => {
      const sorted = row.map((p, i) => [Math.fround(p), i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
      expect(idx.slice(r * 5, r * 5 + 5)).toEqual(sorted.slice(0, 5).map((x) => x[1]));
      expect(idx[r * 5]).toBe((expected.outputs.label as number[])[r]);
    });
    expect(out.probabilities_top5_labels).toBeUndefined();
  });

  it("works on int64 scores", () => {
    const out = applyPostprocess({ v: i64([1, 4], [3, 9, -1, 9]) }, [{ type: "top_k", output: "v", k: 2, as: "t" }]);
    expect(Array.from(out.t_indices?.data as BigInt64Array)).toEqual([1n, 3n]);
    expect(Array.from(out.t_scores?.data as BigInt64Array)).toEqual([9n, 9n]);
  });
});

describe("chained steps", () => {
  it("softmax -> argmax -> labels on a logits output", () => {
    const out = applyPostprocess({ logits: f32([2, 2], [2, 0, -1, 3]) }, [
      { type: "softmax", output: "logits", as: "probs" },
      { type: "argmax", output: "probs", as: "idx" },
      { type: "labels", output: "idx", labels: ["no", "yes"], as: "answer" },
    ]);
    expect(out.answer?.data).toEqual(["no", "yes"]);
    expect(Object.keys(out).sort()).toEqual(["answer", "idx", "logits", "probs"]);
  });

  it("an unknown output is an error", async () => {
    const error = await catchMlship(() => applyPostprocess({}, [{ type: "argmax", output: "nope" }]));
    expect(error.message).toBe('post-processing argmax on output "nope": no such output');
  });
});
