// `metadata.lineage.derived_by` of an optimized version: the command line of the flags that shaped the model.
import { describe, expect, it } from "vitest";
import { derivedBy } from "../../src/optimize/index.js";

describe("derivedBy", () => {
  it("names the parent and the shaping flags; data files by base name; measuring and naming flags left out", () => {
    expect(derivedBy("bc@1", {
      ref: "bc@production", quantize: "int8-static", calibration: "/data/bc/train.csv", calibrationMethod: "percentile", percentile: 99.9,
      perChannel: true, level: "basic", validate: "/data/bc/prod.csv", maxAccuracyDrop: 0.02, runs: 5, name: "bc-small", description: "x",
    })).toBe("mlship models optimize bc@1 --quantize int8-static --calibration train.csv --calibration-method percentile --percentile 99.9 --per-channel --optimize-level basic");
    expect(derivedBy("bc@1", { ref: "bc", quantize: "int8-dynamic", conv: true })).toBe("mlship models optimize bc@1 --quantize int8-dynamic --include-conv");
    expect(derivedBy("digits@3", { ref: "digits@3", fp16: true, keepFloat32: ["Softmax", "LayerNormalization"] }))
      .toBe("mlship models optimize digits@3 --fp16 --keep-float32 Softmax,LayerNormalization");
  });

  it("quotes an argument with spaces", () => {
    expect(derivedBy("bc@1", { ref: "bc@1", quantize: "int8-static", calibration: "/tmp/my data/cal rows.csv" }))
      .toBe('mlship models optimize bc@1 --quantize int8-static --calibration "cal rows.csv"');
  });
});
