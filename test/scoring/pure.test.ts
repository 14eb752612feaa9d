import { describe, expect, it } from "vitest";
import { MlshipError } from "../../src/core/index.js";
import type { Tensor } from "../../src/core/index.js";
import { applyPostprocess, parseCsv } from "../../src/package/index.js";
import type { PostprocessStep, TensorSpec } from "../../src/package/index.js";
import {
  formatMlflowResponse,
  formatV2Response,
  fromFloat16Bits,
  postprocessOutputSpecs,
  tensorValues,
  toFloat16Bits,
} from "../../src/scoring/index.js";
import type { ScoreResult } from "../../src/scoring/index.js";

function result(outputs: Record<string, Tensor>, rows: number, orientation: ScoreResult["orientation"]): ScoreResult {
  return { model: "m", version: 3, alias: "production", outputs, rows, orientation, id: "x", parameters: undefined, latencyMs: 1, requestId: "req-1" };
}

describe("CSV parsing", () => {
  it("reads pandas to_csv output: header, quotes, CRLF, BOM, blank lines", () => {
    const text = '\ufeffmean radius,"name, with comma","q""uote"\r\n1.5,"a\nb",x\r\n\r\n2,,"y"\n';
    expect(parseCsv(text)).toEqual({
      header: ["mean radius", "name, with comma", 'q"uote'],
      rows: [
        ["1.5", "a\nb", "x"],
        ["2", "", "y"],
      ],
    });
  });

  it("names the line of a row with the wrong number of values", () => {
    try {
      parseCsv("a,b\n1,2\n3\n");
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(MlshipError);
      expect((err as MlshipError).code).toBe("MLSHIP_ERR_INPUT_SHAPE");
      expect((err as MlshipError).message).toContain("line 3");
    }
    expect(() => parseCsv("")).toThrow(/empty/);
    expect(() => parseCsv('a\n"open\n')).toThrow(/not closed/);
  });
});

describe("float16", () => {
  it("round-trips exactly representable values and rounds to nearest even", () => {
    for (const v of [0, 1, -2, 0.5, 1.5, -0.25, 65504, 6.103515625e-5, 5.960464477539063e-8]) {
      expect(fromFloat16Bits(toFloat16Bits(v))).toBe(v);
    }
    expect(toFloat16Bits(1)).toBe(0x3c00);
    expect(toFloat16Bits(-2)).toBe(0xc000);
    expect(toFloat16Bits(1e6)).toBe(0x7c00);
    expect(Number.isNaN(fromFloat16Bits(toFloat16Bits(Number.NaN)))).toBe(true);
    // 1 + 2^-11 is halfway between 1 and the next half; ties go to even (1).
    expect(toFloat16Bits(1 + 2 ** -11)).toBe(0x3c00);
    expect(toFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
  });
});

describe("response formatting", () => {
  const probs: Tensor = { dtype: "float32", shape: [2, 2], data: Float32Array.from([0.25, 0.75, 1, 0]) };
  const label: Tensor = { dtype: "int64", shape: [2], data: BigInt64Array.from([1n, 0n]) };
  const prediction: Tensor = { dtype: "float32", shape: [2, 1], data: Float32Array.from([152.5, 3]) };
  const flag: Tensor = { dtype: "bool", shape: [2], data: Uint8Array.from([1, 0]) };

  it("turns BigInt, bool and float16 storage into JSON values", () => {
    expect(tensorValues(label)).toEqual([1, 0]);
    expect(tensorValues(flag)).toEqual([true, false]);
    expect(tensorValues({ dtype: "float16", shape: [1], data: Uint16Array.from([0x3e00]) })).toEqual([1.5]);
    expect(JSON.stringify(tensorValues(label))).toBe("[1,0]");
  });

  it("V2: flat data, V2 datatypes, the version that answered, the request id", () => {
    expect(formatV2Response(result({ probabilities: probs, label }, 2, "columnar"))).toEqual({
      model_name: "m",
      model_version: "3",
      id: "x",
      outputs: [
        { name: "probabilities", shape: [2, 2], datatype: "FP32", data: [0.25, 0.75, 1, 0] },
        { name: "label", shape: [2], datatype: "INT64", data: [1, 0] },
      ],
    });
  });

  it("MLflow: one record per row for dataframes, nested arrays per output for instances/inputs", () => {
    expect(formatMlflowResponse(result({ probabilities: probs, label, prediction, flag }, 2, "records"))).toEqual({
      predictions: [
        { probabilities: [0.25, 0.75], label: 1, prediction: 152.5, flag: true },
        { probabilities: [1, 0], label: 0, prediction: 3, flag: false },
      ],
    });
    expect(formatMlflowResponse(result({ probabilities: probs, label, prediction }, 2, "columnar"))).toEqual({
      predictions: { probabilities: [[0.25, 0.75], [1, 0]], label: [1, 0], prediction: [[152.5], [3]] },
    });
  });
});

describe("MLflow nesting of higher-rank outputs", () => {
  const cube: Tensor = { dtype: "int32", shape: [2, 1, 2, 2], data: Int32Array.from([1, 2, 3, 4, 5, 6, 7, 8]) };

  it("nests each row's values in the row's own shape, and whole tensors in theirs", () => {
    expect(formatMlflowResponse(result({ cube }, 2, "records"))).toEqual({
      predictions: [{ cube: [[[1, 2], [3, 4]]] }, { cube: [[[5, 6], [7, 8]]] }],
    });
    expect(formatMlflowResponse(result({ cube }, 2, "columnar"))).toEqual({
      predictions: { cube: [[[[1, 2], [3, 4]]], [[[5, 6], [7, 8]]]] },
    });
    // An output that is not per row (no batch axis) is repeated whole in every record.
    const scalar: Tensor = { dtype: "float64", shape: [], data: Float64Array.of(0.5) };
    const empty: Tensor = { dtype: "float32", shape: [0, 3], data: new Float32Array(0) };
    expect(formatMlflowResponse(result({ scalar, cube }, 2, "records")).predictions).toEqual([
      { scalar: 0.5, cube: [[[1, 2], [3, 4]]] },
      { scalar: 0.5, cube: [[[5, 6], [7, 8]]] },
    ]);
    expect(formatMlflowResponse(result({ scalar, empty }, 0, "columnar")).predictions).toEqual({ scalar: 0.5, empty: [] });
  });
});

describe("post-processing output specs", () => {
  it("agree with what applyPostprocess produces (names, order, dtypes, ranks)", () => {
    const outputs: TensorSpec[] = [
      { name: "logits", dtype: "float32", shape: [-1, 3] },
      { name: "label", dtype: "int64", shape: [-1] },
    ];
    const steps: PostprocessStep[] = [
      { type: "softmax", output: "logits" },
      { type: "argmax", output: "logits" },
      { type: "labels", output: "label", labels: ["a", "b", "c"] },
      { type: "labels", output: "logits", labels: ["a", "b", "c"], as: "best" },
      { type: "top_k", output: "logits", k: 2, labels: ["a", "b", "c"] },
    ];
    const specs = postprocessOutputSpecs(outputs, steps);
    const actual = applyPostprocess(
      {
        logits: { dtype: "float32", shape: [2, 3], data: Float32Array.from([1, 2, 3, 3, 2, 1]) },
        label: { dtype: "int64", shape: [2], data: BigInt64Array.from([2n, 0n]) },
      },
      steps,
    );
    expect(specs.map((s) => s.name)).toEqual(Object.keys(actual));
    for (const spec of specs) {
      const t = actual[spec.name] as Tensor;
      expect(t.dtype, spec.name).toBe(spec.dtype);
      expect(t.shape.length, spec.name).toBe(spec.shape.length);
      spec.shape.forEach((d, i) => {
        if (d >= 0) expect(t.shape[i], `${spec.name}[${i}]`).toBe(d);
      });
    }
    expect(tensorValues(actual.best as Tensor)).toEqual(["c", "a"]);
  });
});
