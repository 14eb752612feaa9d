/** Tensors <-> rows, the conversion every custom wrapper call goes through (runs inside the wrapper's process). */
import { describe, expect, test } from "vitest";
import { feedsToRows, rowsToTensors } from "../../../src/runtime/custom/index.js";

describe("feedsToRows", () => {
  test("a scalar per [-1] input, nested arrays for trailing dims, strings, bools and int64 as numbers", () => {
    const rows = feedsToRows(
      [
        { name: "a", dtype: "float32", shape: [-1] },
        { name: "m", dtype: "int32", shape: [-1, 2, 3] },
        { name: "s", dtype: "string", shape: [-1] },
        { name: "b", dtype: "bool", shape: [-1] },
        { name: "i", dtype: "int64", shape: [-1] },
      ],
      {
        a: { dtype: "float32", shape: [2], data: Float32Array.of(0.5, 1.5) },
        m: { dtype: "int32", shape: [2, 2, 3], data: Int32Array.from({ length: 12 }, (_, k) => k) },
        s: { dtype: "string", shape: [2], data: ["x", "y"] },
        b: { dtype: "bool", shape: [2], data: Uint8Array.of(1, 0) },
        i: { dtype: "int64", shape: [2], data: BigInt64Array.of(7n, 2n ** 62n) },
      },
    );
    expect(rows).toEqual([
      { a: 0.5, m: [[0, 1, 2], [3, 4, 5]], s: "x", b: true, i: 7 },
      { a: 1.5, m: [[6, 7, 8], [9, 10, 11]], s: "y", b: false, i: 2n ** 62n },
    ]);
  });

  test("inputs with different row counts are refused", () => {
    expect(() => feedsToRows(
      [{ name: "a", dtype: "float64", shape: [-1] }, { name: "b", dtype: "float64", shape: [-1] }],
      { a: { dtype: "float64", shape: [2], data: Float64Array.of(1, 2) }, b: { dtype: "float64", shape: [3], data: Float64Array.of(1, 2, 3) } },
    )).toThrow(/input 'b' has 3 rows but the other inputs have 2/);
  });
});

describe("rowsToTensors", () => {
  const specs = [
    { name: "label", dtype: "int64" as const, shape: [-1] },
    { name: "scores", dtype: "float32" as const, shape: [-1, -1] },
    { name: "info", dtype: "string" as const, shape: [-1], content_type: "json" as const },
    { name: "ok", dtype: "bool" as const, shape: [-1] },
  ];

  test("packs declared dtypes and shapes; a -1 trailing dim takes the rows' size; json outputs are JSON texts", () => {
    const out = rowsToTensors(specs, [
      { label: 3, scores: [0.25, 0.75], info: { top: ["a", "b"] }, ok: true, extra: "ignored" },
      { label: 2n, scores: [1, 0], info: "plain", ok: false },
    ], 2);
    expect(out.label).toEqual({ dtype: "int64", shape: [2], data: BigInt64Array.of(3n, 2n) });
    expect(out.scores).toEqual({ dtype: "float32", shape: [2, 2], data: Float32Array.of(0.25, 0.75, 1, 0) });
    expect(out.info).toEqual({ dtype: "string", shape: [2], data: ['{"top":["a","b"]}', '"plain"'] });
    expect(out.ok).toEqual({ dtype: "bool", shape: [2], data: Uint8Array.of(1, 0) });
    expect(Object.keys(out)).toEqual(["label", "scores", "info", "ok"]);
  });

  test.each([
    ["not an array", { label: 1 }, 1, "rows", /must return an array of rows/],
    ["a wrong row count", [], 1, "rows", /returned 0 rows for 1 input rows/],
    ["a row that is not an object", [5], 1, "rows[0]", /rows\[0\] must be an object/],
    ["a missing output", [{ scores: [1], info: 1, ok: true }], 1, "rows[0].label", /output 'label' is missing/],
    ["a fraction for int64", [{ label: 1.5, scores: [1], info: 1, ok: true }], 1, "rows[0].label", /expected an integer/],
    ["a string for float32", [{ label: 1, scores: ["x"], info: 1, ok: true }], 1, "rows[0].scores[0]", /expected a number/],
    ["a ragged trailing dim", [{ label: 1, scores: [1, 2], info: 1, ok: true }, { label: 1, scores: [1], info: 1, ok: true }], 2, "rows[1].scores", /expected an array of 2/],
    ["a value JSON cannot hold", [{ label: 1, scores: [1], info: 1n, ok: true }], 1, "rows[0].info", /not a JSON value/],
  ])("refuses %s, naming the row and output", (_what, answer, rows, field, message) => {
    expect(() => rowsToTensors(specs, answer, rows)).toThrow(expect.objectContaining({ field, message: expect.stringMatching(message) as unknown }) as Error);
  });

  test("integer ranges are checked", () => {
    expect(() => rowsToTensors([{ name: "v", dtype: "uint8", shape: [-1] }], [{ v: 256 }], 1)).toThrow(/256 does not fit uint8/);
    expect(() => rowsToTensors([{ name: "v", dtype: "uint64", shape: [-1] }], [{ v: -1 }], 1)).toThrow(/does not fit uint64/);
  });
});
