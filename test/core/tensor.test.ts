import { describe, expect, it } from "vitest";
import { allocate, dtypeFromV2, elementCount, nest, tensorToList, V2_DATATYPE, DTYPES } from "../../src/core/index.js";

describe("tensor helpers", () => {
  it("maps every dtype to a V2 datatype and back", () => {
    for (const dtype of DTYPES) expect(dtypeFromV2(V2_DATATYPE[dtype])).toBe(dtype);
    expect(dtypeFromV2("FP8")).toBeUndefined();
  });

  it("allocates the storage ORT expects", () => {
    expect(allocate("int64", 2)).toBeInstanceOf(BigInt64Array);
    expect(allocate("bool", 2)).toBeInstanceOf(Uint8Array);
    expect(allocate("float16", 3)).toBeInstanceOf(Uint16Array);
    expect(allocate("string", 2)).toEqual(["", ""]);
  });

  it("lists and nests row-major", () => {
    expect(tensorToList({ dtype: "int64", shape: [2], data: BigInt64Array.from([5n, -7n]) })).toEqual([5, -7]);
    expect(tensorToList({ dtype: "bool", shape: [2], data: Uint8Array.from([1, 0]) })).toEqual([true, false]);
    expect(nest([1, 2, 3, 4, 5, 6], [2, 3])).toEqual([[1, 2, 3], [4, 5, 6]]);
    expect(nest([1, 2, 3, 4], [2, 1, 2])).toEqual([[[1, 2]], [[3, 4]]]);
    expect(nest([9], [])).toBe(9);
    expect(elementCount([2, 3, 4])).toBe(24);
  });
});
