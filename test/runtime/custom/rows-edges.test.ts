/** rowsToTensors on values that are easy to get wrong: holes in arrays, unsafe integers, missing vs null. */
import { describe, expect, test } from "vitest";
import { rowsToTensors, RowsError } from "../../../src/runtime/custom/index.js";

function failure(fn: () => unknown): RowsError {
  try {
    fn();
  } catch (error) {
    if (error instanceof RowsError) return error;
    throw error;
  }
  throw new Error("expected a RowsError");
}

describe("rowsToTensors edge cases", () => {
  const scores = [{ name: "scores", dtype: "float32" as const, shape: [-1, 3] }];

  test("a hole in an array value is a missing element named by its index, not a silent 0", () => {
    // eslint-disable-next-line no-sparse-arrays
    const sparse = [0.1, , 0.3];
    const error = failure(() => rowsToTensors(scores, [{ scores: sparse }], 1));
    expect(error.field).toBe("rows[0].scores[1]");
    expect(error.message).toMatch(/expected a number, got undefined/);
    const unfilled = new Array<number>(3);
    unfilled[2] = 1;
    expect(failure(() => rowsToTensors(scores, [{ scores: unfilled }], 1)).field).toBe("rows[0].scores[0]");
  });

  test("null is a value (a json output's null, a numeric output's error); a missing key is named as missing", () => {
    const json = [{ name: "info", dtype: "string" as const, shape: [-1], content_type: "json" as const }];
    expect(rowsToTensors(json, [{ info: null }], 1).info?.data).toEqual(["null"]);
    expect(failure(() => rowsToTensors(json, [{}], 1)).message).toMatch(/output 'info' is missing/);
    expect(failure(() => rowsToTensors(scores, [{ scores: [1, null, 2] }], 1))).toMatchObject({ field: "rows[0].scores[1]" });
  });
});
