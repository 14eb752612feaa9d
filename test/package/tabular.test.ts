import { describe, expect, it } from "vitest";
import { applyTabularPreprocess } from "../../src/package/index.js";
import { catchMlship, fixture, readCsv } from "./helpers.js";

describe("applyTabularPreprocess", () => {
  it("select_columns keeps and orders the named columns", () => {
    const rows = [[1, "x", 2], [3, "y", 4]];
    const out = applyTabularPreprocess(["a", "id", "b"], rows, [{ type: "select_columns", columns: ["b", "a"] }]);
    expect(out).toEqual({ columns: ["b", "a"], rows: [[2, 1], [4, 3]] });
    expect(rows).toEqual([[1, "x", 2], [3, "y", 4]]);
  });

  it("select_columns names a missing column", async () => {
    const error = await catchMlship(() => applyTabularPreprocess(["a"], [[1]],
      [{ type: "select_columns", columns: ["a", "mean radius"] }]));
    expect(error.code).toBe("MLSHIP_ERR_INPUT_MISSING");
    expect(error.field).toBe("mean radius");
    expect(error.message).toMatch(/column "mean radius" is missing/);
  });

  it("cast float32 coerces numbers, numeric text and booleans; empty/null is NaN", () => {
    const out = applyTabularPreprocess(["a", "b", "c"], [[" 1.5 ", 2, true], ["-3e2", null, ""]],
      [{ type: "cast", dtype: "float32" }]);
    expect(out.rows).toEqual([[1.5, 2, 1], [-300, NaN, NaN]]);
  });

  it("cast reads numeric text the way the MLflow scoring path does (nan, inf, -inf, infinity)", () => {
    const out = applyTabularPreprocess(["a"], [["inf"], [" -INF "], ["Infinity"], ["nan"]], [{ type: "cast", dtype: "float64" }]);
    expect(out.rows).toEqual([[Infinity], [-Infinity], [Infinity], [NaN]]);
  });

  it("cast names the column and row of non-numeric text", async () => {
    const rows = [[1, "2"], [3, "abc"]];
    const error = await catchMlship(() => applyTabularPreprocess(["a", "mean texture"], rows,
      [{ type: "cast", dtype: "float32", columns: ["mean texture"] }]));
    expect(error.code).toBe("MLSHIP_ERR_INPUT_DTYPE");
    expect(error.field).toBe("mean texture");
    expect(error.message).toBe('column "mean texture" row 1: "abc" is not a number (cast to float32)');
    expect(rows[1]).toEqual([3, "abc"]);
  });

  it("cast to integers needs whole numbers in range; bool and string casts", async () => {
    expect(applyTabularPreprocess(["n"], [["7"], [8]], [{ type: "cast", dtype: "int64" }]).rows).toEqual([[7], [8]]);
    const frac = await catchMlship(() => applyTabularPreprocess(["n"], [[1.5]], [{ type: "cast", dtype: "int32" }]));
    expect(frac.message).toMatch(/row 0: 1.5 is not a whole number/);
    const big = await catchMlship(() => applyTabularPreprocess(["n"], [[300]], [{ type: "cast", dtype: "uint8" }]));
    expect(big.message).toMatch(/300 is out of range/);
    expect(applyTabularPreprocess(["f"], [["true"], [0], [false]], [{ type: "cast", dtype: "bool" }]).rows)
      .toEqual([[true], [false], [false]]);
    expect(applyTabularPreprocess(["s"], [[1.5], [true]], [{ type: "cast", dtype: "string" }]).rows)
      .toEqual([["1.5"], ["true"]]);
  });

  it("runs on the breast cancer CSV: drop the label, cast text to numbers", async () => {
    const { header, rows } = await readCsv(fixture("breast_cancer_mlp", "prod.csv"));
    const text = rows.map((r) => r.map(String));
    const features = header.filter((h) => h !== "label");
    const out = applyTabularPreprocess(header, text, [
      { type: "select_columns", columns: features },
      { type: "cast", dtype: "float32" },
    ]);
    expect(out.columns).toEqual(features);
    expect(out.rows).toHaveLength(143);
    expect(out.rows[0]).toEqual((rows[0] as number[]).slice(0, 30));
  });

  it("image steps are ignored here", () => {
    const out = applyTabularPreprocess(["a"], [[1]], [{ type: "image", input: "img", width: 1, height: 1, channels: 1,
      resize: "area", scale: 1, layout: "NCHW" }]);
    expect(out).toEqual({ columns: ["a"], rows: [[1]] });
  });
});
