import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { MlshipError } from "../../src/core/index.js";
import { featureLoaders, hashingTFIndex, javaDoubleToString, sparkMurmur3Bytes, tokenize } from "../../src/runtime/sparkml/features.js";
import { loadSparkModel } from "../../src/runtime/sparkml/model.js";
import type { Frame, FrameColumn, LoadedStage, SparkVector, StageContext, StageMetadata } from "../../src/runtime/sparkml/types.js";
import { argmax, compressed, denseVector, dot, sparseVector, toDense, vectorGet, vectorSize } from "../../src/runtime/sparkml/vectors.js";
import { VECTOR, vectorDense, vectorSparse, writeSparkPipeline } from "../helpers/sparkml-writer.js";

const F = "org.apache.spark.ml.feature.";

interface StageSpec {
  className: string;
  sparkVersion?: string;
  paramMap: Record<string, unknown>;
  defaultParamMap?: Record<string, unknown>;
  data?: Record<string, unknown>[];
}

/** A StageContext as the loader sees it: metadata as Spark writes it, `data/` rows as the Parquet reader decodes them. */
function fakeContext(spec: StageSpec): StageContext {
  const metadata: StageMetadata = {
    class: spec.className,
    uid: `${spec.className.split(".").at(-1) ?? "stage"}_0123456789ab`,
    sparkVersion: spec.sparkVersion ?? "3.5.1",
    timestamp: 1_700_000_000_000,
    paramMap: spec.paramMap,
    ...(spec.defaultParamMap ? { defaultParamMap: spec.defaultParamMap } : {}),
  };
  return {
    dir: `/fake/${metadata.uid}`,
    metadata,
    param<T>(name: string, fallback?: T): T | undefined {
      if (Object.hasOwn(metadata.paramMap, name)) return metadata.paramMap[name] as T;
      if (metadata.defaultParamMap && Object.hasOwn(metadata.defaultParamMap, name)) return metadata.defaultParamMap[name] as T;
      return fallback;
    },
    readParquet: async () => {
      if (!spec.data) throw new Error(`${metadata.uid} has no data/`);
      return spec.data;
    },
    loadStage: async () => {
      throw new Error("feature stages have no nested stages");
    },
  };
}

async function load(spec: StageSpec): Promise<LoadedStage> {
  const loader = featureLoaders[spec.className];
  if (!loader) throw new Error(`no loader for ${spec.className}`);
  return loader(fakeContext(spec));
}

function frame(columns: Record<string, FrameColumn>): Frame {
  const first = Object.values(columns)[0];
  return { rows: first ? first.values.length : 0, columns: new Map(Object.entries(columns)) };
}

function doubles(values: readonly number[], nullRows: readonly number[] = []): FrameColumn {
  const nulls = new Uint8Array(values.length);
  for (const row of nullRows) nulls[row] = 1;
  return nullRows.length > 0 ? { kind: "double", values: Float64Array.from(values), nulls } : { kind: "double", values: Float64Array.from(values) };
}

function vectors(values: readonly (SparkVector | null)[], size?: number): FrameColumn {
  return size === undefined ? { kind: "vector", values } : { kind: "vector", values, size };
}

function doublesOf(result: Frame, name: string): number[] {
  const column = result.columns.get(name);
  if (column?.kind !== "double") throw new Error(`${name} is not a double column`);
  return Array.from(column.values);
}

function vectorsOf(result: Frame, name: string): (SparkVector | null)[] {
  const column = result.columns.get(name);
  if (column?.kind !== "vector") throw new Error(`${name} is not a vector column`);
  return [...column.values];
}

function arrays(result: Frame, name: string): (number[] | null)[] {
  return vectorsOf(result, name).map((vector) => (vector === null ? null : Array.from(toDense(vector))));
}

function expectInputError(run: () => unknown, field: string, message?: RegExp): void {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(MlshipError);
    expect((error as MlshipError).code).toBe("MLSHIP_ERR_INPUT_INVALID");
    expect((error as MlshipError).field).toBe(field);
    if (message) expect((error as MlshipError).message).toMatch(message);
    return;
  }
  throw new Error("expected an MLSHIP_ERR_INPUT_INVALID error");
}

async function expectLoadRefused(spec: StageSpec, code: string, message: RegExp): Promise<void> {
  const error: unknown = await load(spec).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(MlshipError);
  expect((error as MlshipError).code).toBe(code);
  expect((error as MlshipError).message).toMatch(message);
}

describe("vectors helpers", () => {
  it("reads, densifies and compresses dense and sparse vectors as Spark does", () => {
    const sparse = sparseVector(5, [1, 3], [2, -4]);
    expect(vectorSize(sparse)).toBe(5);
    expect([0, 1, 2, 3, 4].map((i) => vectorGet(sparse, i))).toEqual([0, 2, 0, -4, 0]);
    expect(Array.from(toDense(sparse))).toEqual([0, 2, 0, -4, 0]);
    expect(dot(sparse, [1, 10, 100, 1000, 10000])).toBe(20 - 4000);
    expect(dot(denseVector([1, 2, 3]), [4, 5, 6])).toBe(32);
    // 1.5 * (nnz + 1) < size picks sparse: 2 non-zeros in 5 slots -> 4.5 < 5 -> sparse; in 4 slots -> dense.
    expect(compressed(denseVector([0, 2, 0, -4, 0])).type).toBe("sparse");
    expect(compressed(sparseVector(4, [1, 3], [2, -4])).type).toBe("dense");
    expect(Array.from(toDense(compressed(sparseVector(6, [0, 2, 5], [1, 0, 3]))))).toEqual([1, 0, 0, 0, 0, 3]);
    expect(argmax([1, 3, 3, 2])).toBe(1);
  });
});

describe("VectorAssembler", () => {
  const spec = (extra: Record<string, unknown> = {}, sparkVersion?: string): StageSpec => ({
    className: `${F}VectorAssembler`,
    ...(sparkVersion ? { sparkVersion } : {}),
    paramMap: { inputCols: ["a", "v", "b"], outputCol: "features", ...extra },
    defaultParamMap: { handleInvalid: "error", outputCol: "VectorAssembler_0123456789ab__output" },
  });

  it("concatenates doubles and vectors in inputCols order and leaves the input frame alone", async () => {
    const stage = await load(spec());
    expect(stage.inputs.map((c) => c.name)).toEqual(["a", "v", "b"]);
    expect(stage.outputs).toEqual([{ name: "features", kind: "vector" }]);
    const input = frame({
      a: doubles([1.5, 0, 0]),
      v: vectors([denseVector([2, 3]), sparseVector(2, [1], [7]), denseVector([0, 0])]),
      b: doubles([-1, 4, 0]),
    });
    const out = stage.transform(input);
    expect(arrays(out, "features")).toEqual([
      [1.5, 2, 3, -1],
      [0, 0, 7, 4],
      [0, 0, 0, 0],
    ]);
    // Output is `.compressed`: the all-zero row becomes sparse, the full one dense.
    expect(vectorsOf(out, "features").map((v) => v?.type)).toEqual(["dense", "dense", "sparse"]);
    expect(out.columns.get("features")).toMatchObject({ size: 4 });
    expect([...input.columns.keys()]).toEqual(["a", "v", "b"]);
  });

  it("handleInvalid error refuses null and NaN scalars (not NaN inside vectors); keep passes NaN and fills nulls", async () => {
    const errorStage = await load(spec());
    expectInputError(() => errorStage.transform(frame({ a: doubles([1, Number.NaN]), v: vectors([denseVector([1, 1]), denseVector([1, 1])]), b: doubles([1, 1]) })), "a", /NaN at row 1/);
    expectInputError(() => errorStage.transform(frame({ a: doubles([1, 2]), v: vectors([denseVector([1, 1]), null]), b: doubles([1, 1]) })), "v", /null at row 1/);
    expectInputError(() => errorStage.transform(frame({ a: doubles([1, 2], [0]), v: vectors([denseVector([1, 1]), denseVector([1, 1])]), b: doubles([1, 1]) })), "a", /null/);
    const nanInVector = errorStage.transform(frame({ a: doubles([1]), v: vectors([denseVector([Number.NaN, 1])]), b: doubles([2]) }));
    expect(arrays(nanInVector, "features")).toEqual([[1, Number.NaN, 1, 2]]);

    const keepStage = await load(spec({ handleInvalid: "keep" }));
    const kept = keepStage.transform(frame({ a: doubles([Number.NaN, 3], [1]), v: vectors([denseVector([1, 2]), null], 2), b: doubles([0, 5]) }));
    expect(arrays(kept, "features")).toEqual([
      [Number.NaN, 1, 2, 0],
      [Number.NaN, Number.NaN, Number.NaN, 5],
    ]);
    // Spark needs the vector's size (column metadata) to fill a null vector.
    expectInputError(() => keepStage.transform(frame({ a: doubles([1]), v: vectors([null]), b: doubles([1]) })), "v", /size is unknown/);
  });

  it("before 2.4 (no handleInvalid) NaN passes through; skip is refused at load; a missing column names itself", async () => {
    const old = await load({ className: `${F}VectorAssembler`, sparkVersion: "2.3.0", paramMap: { inputCols: ["a", "b"], outputCol: "f" } });
    expect(arrays(old.transform(frame({ a: doubles([Number.NaN]), b: doubles([2]) })), "f")).toEqual([[Number.NaN, 2]]);
    expectInputError(() => old.transform(frame({ a: doubles([1]) })), "b", /missing/);
    await expectLoadRefused(spec({ handleInvalid: "skip" }), "MLSHIP_ERR_PACKAGE_UNSUPPORTED", /skip/);
  });
});

describe("StringIndexerModel", () => {
  it("indexes with Spark 2.x `labels` data; keep maps unseen and null to numLabels", async () => {
    const stage = await load({
      className: `${F}StringIndexerModel`,
      sparkVersion: "2.4.4",
      paramMap: { inputCol: "color", outputCol: "colorIndex", handleInvalid: "keep" },
      defaultParamMap: { handleInvalid: "error", stringOrderType: "frequencyDesc", outputCol: "x__output" },
      data: [{ labels: ["b", "c", "a"] }],
    });
    expect(stage.inputs).toEqual([{ name: "color", kind: "string" }]);
    expect(stage.outputs).toEqual([{ name: "colorIndex", kind: "double" }]);
    const out = stage.transform(frame({ color: { kind: "string", values: ["a", "b", "c", "zzz", null] } }));
    expect(doublesOf(out, "colorIndex")).toEqual([2, 0, 1, 3, 3]);
  });

  it("indexes several columns from 3.x `labelsArray`; error refuses unseen and null; numbers are cast as Java does", async () => {
    const stage = await load({
      className: `${F}StringIndexerModel`,
      paramMap: { inputCols: ["city", "code"], outputCols: ["cityIndex", "codeIndex"] },
      defaultParamMap: { handleInvalid: "error", stringOrderType: "frequencyDesc" },
      data: [{ labelsArray: [["paris", "rome"], ["1.5", "2", "1.0E10"]] }],
    });
    const out = stage.transform(frame({ city: { kind: "string", values: ["rome", "paris", "rome"] }, code: doubles([2, 1e10, 1.5]) }));
    expect(doublesOf(out, "cityIndex")).toEqual([1, 0, 1]);
    expect(doublesOf(out, "codeIndex")).toEqual([1, 2, 0]);
    expectInputError(() => stage.transform(frame({ city: { kind: "string", values: ["oslo"] }, code: doubles([2]) })), "city", /unseen label "oslo"/);
    expectInputError(() => stage.transform(frame({ city: { kind: "string", values: [null] }, code: doubles([2]) })), "city", /null/);
    expectInputError(() => stage.transform(frame({ city: { kind: "string", values: ["rome"] } })), "code", /missing/);
  });

  it("formats doubles as Java's Double.toString and refuses skip at load", async () => {
    expect([1, 0.001, 1234567.5, 1e7, 1e-4, 1.25e-5, -0, Number.NaN, -Infinity, 1e21].map(javaDoubleToString)).toEqual([
      "1.0", "0.001", "1234567.5", "1.0E7", "1.0E-4", "1.25E-5", "-0.0", "NaN", "-Infinity", "1.0E21",
    ]);
    await expectLoadRefused(
      { className: `${F}StringIndexerModel`, sparkVersion: "2.4.4", paramMap: { inputCol: "x", outputCol: "y", handleInvalid: "skip" }, data: [{ labels: ["a"] }] },
      "MLSHIP_ERR_PACKAGE_UNSUPPORTED",
      /handleInvalid "skip"/,
    );
  });
});

describe("OneHotEncoderModel", () => {
  it("encodes with dropLast (default) as sparse vectors of size n-1; error refuses unseen and negative values", async () => {
    const stage = await load({
      className: `${F}OneHotEncoderModel`,
      sparkVersion: "2.4.4",
      paramMap: { inputCols: ["idx"], outputCols: ["vec"] },
      defaultParamMap: { dropLast: true, handleInvalid: "error" },
      data: [{ categorySizes: [3] }],
    });
    expect(stage.outputs).toEqual([{ name: "vec", kind: "vector", size: 2 }]);
    const out = stage.transform(frame({ idx: doubles([0, 1, 2, 1.7]) }));
    expect(vectorsOf(out, "vec")).toEqual([sparseVector(2, [0], [1]), sparseVector(2, [1], [1]), sparseVector(2, [], []), sparseVector(2, [1], [1])]);
    expectInputError(() => stage.transform(frame({ idx: doubles([3]) })), "idx", /unseen value 3/);
    expectInputError(() => stage.transform(frame({ idx: doubles([-1]) })), "idx", /negative/);
  });

  it("keep without dropLast gives n+1 slots with invalid values in the last; multi-column; null stays null", async () => {
    const stage = await load({
      className: `${F}OneHotEncoderModel`,
      paramMap: { inputCols: ["a", "b"], outputCols: ["va", "vb"], handleInvalid: "keep", dropLast: false },
      data: [{ categorySizes: [2, 3] }],
    });
    expect(stage.outputs.map((c) => c.size)).toEqual([3, 4]);
    const out = stage.transform(frame({ a: doubles([1, 5, Number.NaN]), b: doubles([2, 0, 1], [1]) }));
    expect(arrays(out, "va")).toEqual([[0, 1, 0], [0, 0, 1], [0, 0, 1]]);
    expect(arrays(out, "vb")).toEqual([[0, 0, 1, 0], null, [0, 1, 0, 0]]);
    // keep + dropLast: n slots, the invalid index n falls off the end -> all zeros.
    const dropped = await load({
      className: `${F}OneHotEncoderModel`,
      paramMap: { inputCol: "a", outputCol: "v", handleInvalid: "keep" },
      defaultParamMap: { dropLast: true },
      data: [{ categorySizes: [2] }],
    });
    expect(arrays(dropped.transform(frame({ a: doubles([1, 9]) })), "v")).toEqual([[0, 1], [0, 0]]);
  });
});

describe("scalers and IDF", () => {
  const features = frame({ x: vectors([denseVector([1, 10, 5]), sparseVector(3, [1], [4])]) });

  it("StandardScalerModel: withStd scales by 1/std keeping sparsity, a zero std gives 0; withMean centres", async () => {
    const std = sparseVector(3, [0, 1], [2, 4]); // stored `.compressed`: std of feature 2 is 0
    const mean = denseVector([1, 2, 3]);
    const stdOnly = await load({ className: `${F}StandardScalerModel`, paramMap: { inputCol: "x", outputCol: "s" }, defaultParamMap: { withMean: false, withStd: true }, data: [{ std, mean }] });
    expect(stdOnly.inputs).toEqual([{ name: "x", kind: "vector", size: 3 }]);
    const scaled = vectorsOf(stdOnly.transform(features), "s");
    expect(scaled[1]).toEqual(sparseVector(3, [1], [1]));
    expect(Array.from(toDense(scaled[0] as SparkVector))).toEqual([0.5, 2.5, 0]);

    const both = await load({ className: `${F}StandardScalerModel`, paramMap: { inputCol: "x", outputCol: "s", withMean: true }, defaultParamMap: { withStd: true }, data: [{ std, mean }] });
    expect(arrays(both.transform(features), "s")).toEqual([[0, 2, 0], [-0.5, 0.5, -0]]);
    const meanOnly = await load({ className: `${F}StandardScalerModel`, paramMap: { inputCol: "x", outputCol: "s", withMean: true, withStd: false }, data: [{ std, mean }] });
    expect(arrays(meanOnly.transform(features), "s")).toEqual([[0, 8, 2], [-1, 2, -3]]);
    // Spark computes (x - mean) * (1 / std), which is not always (x - mean) / std in the last bit.
    const third = await load({ className: `${F}StandardScalerModel`, paramMap: { inputCol: "x", outputCol: "s", withMean: true }, data: [{ std: denseVector([3]), mean: denseVector([0]) }] });
    expect(arrays(third.transform(frame({ x: vectors([denseVector([0.7])]) })), "s")).toEqual([[0.7 * (1 / 3)]]);
    expectInputError(() => stdOnly.transform(frame({ x: vectors([denseVector([1, 2])]) })), "x", /2 features, expected 3/);
    expectInputError(() => stdOnly.transform(frame({ x: vectors([null]) })), "x", /null/);
  });

  it("MinMaxScalerModel maps to [min, max], constant features to (min + max) / 2, NaN stays NaN", async () => {
    const stage = await load({
      className: `${F}MinMaxScalerModel`,
      paramMap: { inputCol: "x", outputCol: "m", min: -1 },
      defaultParamMap: { min: 0, max: 1 },
      data: [{ originalMin: denseVector([0, 10, 5]), originalMax: denseVector([4, 20, 5]) }],
    });
    const out = stage.transform(frame({ x: vectors([denseVector([1, 10, 5]), sparseVector(3, [0], [Number.NaN]), denseVector([4, 25, 100])]) }));
    expect(arrays(out, "m")).toEqual([
      [-1 + (1 - 0) * (2 / 4), -1, 0],
      [Number.NaN, -1 + (0 - 10) * (2 / 10), 0],
      [1, -1 + 15 * (2 / 10), 0],
    ]);
    // Spark 2.x divided by the range first and used 0.5 for constant features.
    const legacy = await load({
      className: `${F}MinMaxScalerModel`,
      sparkVersion: "2.4.4",
      paramMap: { inputCol: "x", outputCol: "m", min: -1, max: 2 },
      data: [{ originalMin: denseVector([0, 7]), originalMax: denseVector([3, 7]) }],
    });
    expect(arrays(legacy.transform(frame({ x: vectors([denseVector([0.1, 1])]) })), "m")).toEqual([[(0.1 / 3) * 3 - 1, 0.5 * 3 - 1]]);
  });

  it("MaxAbsScalerModel divides by max |x| (zero columns untouched), sparse stays sparse", async () => {
    const stage = await load({ className: `${F}MaxAbsScalerModel`, paramMap: { inputCol: "x", outputCol: "a" }, data: [{ maxAbs: denseVector([2, 8, 0]) }] });
    const out = vectorsOf(stage.transform(features), "a");
    expect(Array.from(toDense(out[0] as SparkVector))).toEqual([0.5, 1.25, 5]);
    expect(out[1]).toEqual(sparseVector(3, [1], [0.5]));
  });

  it("follows the saving release's arithmetic: 2.x MaxAbsScaler divides, 3.x multiplies by the reciprocal", async () => {
    const spec = (sparkVersion: string): StageSpec => ({
      className: `${F}MaxAbsScalerModel`,
      sparkVersion,
      paramMap: { inputCol: "x", outputCol: "a" },
      data: [{ maxAbs: denseVector([3]) }],
    });
    const input = frame({ x: vectors([denseVector([5])]) });
    expect(5 / 3).not.toBe(5 * (1 / 3));
    expect(arrays((await load(spec("3.0.0"))).transform(input), "a")).toEqual([[5 * (1 / 3)]]);
    expect(arrays((await load(spec("2.4.4"))).transform(input), "a")).toEqual([[5 / 3]]);
    // StandardScaler: 2.x wrote 0.0 for a zero-std feature when centring, even for NaN; 3.x computes (x - mean) * 0.
    const scaler = (sparkVersion: string): StageSpec => ({
      className: `${F}StandardScalerModel`,
      sparkVersion,
      paramMap: { inputCol: "x", outputCol: "s", withMean: true, withStd: true },
      data: [{ std: sparseVector(2, [], []), mean: denseVector([1, 1]) }],
    });
    const nan = frame({ x: vectors([denseVector([Number.NaN, 4])]) });
    expect(arrays((await load(scaler("2.4.4"))).transform(nan), "s")).toEqual([[0, 0]]);
    expect(arrays((await load(scaler("3.5.1"))).transform(nan), "s")).toEqual([[Number.NaN, 0]]);
  });

  it("refuses learned state that is not what Spark writes", async () => {
    await expectLoadRefused(
      { className: `${F}MaxAbsScalerModel`, paramMap: { inputCol: "x", outputCol: "a" }, data: [{ maxAbs: [1, 2] }] },
      "MLSHIP_ERR_PACKAGE_INVALID",
      /maxAbs is not a vector/,
    );
    await expectLoadRefused(
      { className: `${F}IDFModel`, paramMap: { inputCol: "x", outputCol: "a" }, data: [{ idf: sparseVector(2, [1, 0], [1, 1]) }] },
      "MLSHIP_ERR_PACKAGE_INVALID",
      /strictly increasing/,
    );
    await expectLoadRefused(
      { className: `${F}StringIndexerModel`, paramMap: { inputCols: ["a", "b"], outputCols: ["x", "y"] }, data: [{ labelsArray: [["u"]] }] },
      "MLSHIP_ERR_PACKAGE_INVALID",
      /1 label lists for 2 input columns/,
    );
    await expectLoadRefused({ className: `${F}Tokenizer`, paramMap: { outputCol: "w" } }, "MLSHIP_ERR_PACKAGE_INVALID", /inputCol is not set/);
  });

  it("IDFModel multiplies term frequencies by idf, keeping the sparse indices", async () => {
    const stage = await load({
      className: `${F}IDFModel`,
      paramMap: { inputCol: "tf", outputCol: "tfidf" },
      data: [{ idf: denseVector([0.5, 0, Math.log(3)]), docFreq: [4, 9, 1], numDocs: 9 }],
    });
    expect(stage.outputs).toEqual([{ name: "tfidf", kind: "vector", size: 3 }]);
    const out = vectorsOf(stage.transform(frame({ tf: vectors([sparseVector(3, [1, 2], [3, 2]), denseVector([2, 1, 1])]) })), "tfidf");
    expect(out[0]).toEqual(sparseVector(3, [1, 2], [0, 2 * Math.log(3)]));
    expect(out[1]).toEqual(denseVector([1, 0, Math.log(3)]));
  });
});

describe("ImputerModel", () => {
  it("replaces NaN and null by the surrogates (2.x inputCols/outputCols)", async () => {
    const stage = await load({
      className: `${F}ImputerModel`,
      sparkVersion: "2.4.4",
      paramMap: { inputCols: ["a", "b"], outputCols: ["a_out", "b_out"], strategy: "median" },
      defaultParamMap: { missingValue: "NaN", strategy: "mean" },
      data: [{ a: 2.5, b: -7 }],
    });
    const out = stage.transform(frame({ a: doubles([1, Number.NaN, 3], [2]), b: doubles([Number.NaN, 0, 4]) }));
    expect(doublesOf(out, "a_out")).toEqual([1, 2.5, 2.5]);
    expect(doublesOf(out, "b_out")).toEqual([-7, 0, 4]);
  });

  it("with a missingValue, only that value (and null) is replaced; NaN stays", async () => {
    const stage = await load({
      className: `${F}ImputerModel`,
      paramMap: { inputCol: "a", outputCol: "a_out", missingValue: -1 },
      data: [{ a: 10 }],
    });
    expect(doublesOf(stage.transform(frame({ a: doubles([-1, Number.NaN, 5, 0], [3]) })), "a_out")).toEqual([10, Number.NaN, 5, 10]);
  });
});

describe("Bucketizer", () => {
  const splits = ["-Inf", -1, 0, 10, "Inf"];

  it("puts values in half-open buckets, the last bucket including its upper bound and -Inf/Inf bounds", async () => {
    const stage = await load({ className: `${F}Bucketizer`, paramMap: { inputCol: "x", outputCol: "b", splits }, defaultParamMap: { handleInvalid: "error" } });
    const out = stage.transform(frame({ x: doubles([-1e300, -1, -0.5, 0, 9.99, 10, 1e308, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0]) }));
    // -0.0 sorts below 0.0 in Java's binary search: it falls in the bucket below the 0.0 split.
    expect(doublesOf(out, "b")).toEqual([0, 1, 1, 2, 2, 3, 3, 3, 0, 1]);
    expectInputError(() => stage.transform(frame({ x: doubles([Number.NaN]) })), "x", /NaN/);
  });

  it("refuses out-of-range values, keeps NaN in an extra bucket with keep, supports splitsArray; null stays null", async () => {
    const bounded = await load({ className: `${F}Bucketizer`, paramMap: { inputCol: "x", outputCol: "b", splits: [0, 1, 2], handleInvalid: "keep" } });
    const kept = bounded.transform(frame({ x: doubles([2, 0.5, Number.NaN, 1], [3]) }));
    // Two buckets from three splits; NaN goes to the extra bucket 2 (splits.length - 1).
    expect(doublesOf(kept, "b").slice(0, 3)).toEqual([1, 0, 2]);
    expect(kept.columns.get("b")).toMatchObject({ nulls: Uint8Array.from([0, 0, 0, 1]) });
    expectInputError(() => bounded.transform(frame({ x: doubles([2.5]) })), "x", /outside the splits/);
    expectInputError(() => bounded.transform(frame({ x: doubles([-0.1]) })), "x", /outside the splits/);

    const multi = await load({
      className: `${F}Bucketizer`,
      paramMap: { inputCols: ["x", "y"], outputCols: ["bx", "by"], splitsArray: [[0, 1, 2], ["-Inf", 0, "Inf"]] },
    });
    const out = multi.transform(frame({ x: doubles([1.5, 0]), y: doubles([-3, 3]) }));
    expect(doublesOf(out, "bx")).toEqual([1, 0]);
    expect(doublesOf(out, "by")).toEqual([0, 1]);
    await expectLoadRefused({ className: `${F}Bucketizer`, paramMap: { inputCol: "x", outputCol: "b", splits: [0, 1] } }, "MLSHIP_ERR_PACKAGE_INVALID", /splits/);
  });
});

describe("Binarizer", () => {
  it("thresholds doubles (NaN -> 0) and vectors (sparse for t >= 0, zeros become 1 for t < 0)", async () => {
    const stage = await load({ className: `${F}Binarizer`, paramMap: { inputCol: "x", outputCol: "b", threshold: 0.5 } });
    expect(doublesOf(stage.transform(frame({ x: doubles([0.5, 0.6, Number.NaN, -3]) })), "b")).toEqual([0, 1, 0, 0]);
    const vectorOut = vectorsOf(stage.transform(frame({ x: vectors([denseVector([0.1, 0.9, 0, 0, 0, 2])]) })), "b");
    expect(vectorOut[0]).toEqual(sparseVector(6, [1, 5], [1, 1]));

    const negative = await load({ className: `${F}Binarizer`, paramMap: { inputCols: ["v"], outputCols: ["b"], thresholds: [-1] } });
    expect(arrays(negative.transform(frame({ v: vectors([sparseVector(4, [1, 2], [-2, -0.5])]) })), "b")).toEqual([[1, 0, 1, 1]]);
  });
});

describe("Tokenizer", () => {
  it("lower-cases and splits on each ASCII whitespace as Java's split(\"\\\\s\")", async () => {
    expect(tokenize("Hello  World")).toEqual(["hello", "", "world"]);
    expect(tokenize(" Lead\tTab\n")).toEqual(["", "lead", "tab"]);
    expect(tokenize("")).toEqual([""]);
    expect(tokenize("   ")).toEqual([]);
    expect(tokenize("non\u00a0breaking")).toEqual(["non\u00a0breaking"]);
    const stage = await load({ className: `${F}Tokenizer`, paramMap: { inputCol: "text", outputCol: "words" } });
    expect(stage.outputs).toEqual([{ name: "words", kind: "strings" }]);
    const out = stage.transform(frame({ text: { kind: "string", values: ["Spark ML rocks"] } }));
    expect(out.columns.get("words")).toEqual({ kind: "strings", values: [["spark", "ml", "rocks"]] });
    expectInputError(() => stage.transform(frame({ text: { kind: "string", values: [null] } })), "text", /null/);
  });
});

/**
 * An independent MurmurHash3_x86_32 (BigInt arithmetic, written from the reference algorithm) to check the scorer's.
 * `legacyTail` mixes each tail byte (sign-extended) as its own block, as Spark 2.x's `hashUnsafeBytes` does.
 */
function referenceMurmur3(bytes: Uint8Array, seed: number, legacyTail = false): number {
  const M = 0xffffffffn;
  const mul = (a: bigint, b: bigint): bigint => (a * b) & M;
  const rotl = (x: bigint, r: bigint): bigint => ((x << r) | (x >> (32n - r))) & M;
  const mixK = (k: bigint): bigint => mul(rotl(mul(k & M, 0xcc9e2d51n), 15n), 0x1b873593n);
  const mixH = (h: bigint, k: bigint): bigint => (mul(rotl(h ^ k, 13n), 5n) + 0xe6546b64n) & M;
  let h = BigInt(seed >>> 0);
  const blocks = Math.floor(bytes.length / 4);
  for (let i = 0; i < blocks; i++) {
    let k = 0n;
    for (let j = 3; j >= 0; j--) k = (k << 8n) | BigInt(bytes[4 * i + j] as number);
    h = mixH(h, mixK(k));
  }
  if (legacyTail) {
    for (let i = blocks * 4; i < bytes.length; i++) {
      const signed = BigInt.asUintN(32, BigInt((bytes[i] as number) >= 128 ? (bytes[i] as number) - 256 : (bytes[i] as number)));
      h = mixH(h, mixK(signed));
    }
  } else {
    let k = 0n;
    for (let i = bytes.length - 1; i >= blocks * 4; i--) k = (k << 8n) | BigInt(bytes[i] as number);
    if (bytes.length % 4 !== 0) h ^= mixK(k);
  }
  h ^= BigInt(bytes.length);
  h ^= h >> 16n;
  h = mul(h, 0x85ebca6bn);
  h ^= h >> 13n;
  h = mul(h, 0xc2b2ae35n);
  h ^= h >> 16n;
  return Number(BigInt.asIntN(32, h));
}

describe("HashingTF", () => {
  const text = (value: string): Uint8Array => new TextEncoder().encode(value);

  it("implements MurmurHash3_x86_32 (published test vectors, and an independent implementation)", () => {
    const published: [string, number, number][] = [
      ["", 0, 0],
      ["", 1, 0x514e28b7],
      ["", 0xffffffff, 0x81f16f39],
      ["hello", 0, 0x248bfa47],
      ["a", 0x9747b28c, 0x7fa09ea6],
      ["aa", 0x9747b28c, 0x5d211726],
      ["aaa", 0x9747b28c, 0x283e0130],
      ["aaaa", 0x9747b28c, 0x5a97808a],
      ["Hello, world!", 0x9747b28c, 0x24884cba],
      ["The quick brown fox jumps over the lazy dog", 0x9747b28c, 0x2fa826cd],
    ];
    for (const [input, seed, expected] of published) {
      expect(sparkMurmur3Bytes(text(input), seed, false) >>> 0).toBe(expected);
      expect(referenceMurmur3(text(input), seed) >>> 0).toBe(expected);
    }
    for (const word of ["a", "spark", "héllo wörld", "日本語", "abcdefg"]) {
      expect(sparkMurmur3Bytes(text(word), 42, false)).toBe(referenceMurmur3(text(word), 42));
      expect(sparkMurmur3Bytes(text(word), 42, true)).toBe(referenceMurmur3(text(word), 42, true));
    }
  });

  it("indexes terms as Spark 3 (HashingTFSuite: n = 100 -> a 67, b 65, c 68, d 90) and 2.x with its legacy tail", () => {
    expect(["a", "b", "c", "d"].map((term) => hashingTFIndex(term, 100, false))).toEqual([67, 65, 68, 90]);
    const nonNegativeMod = (h: number, n: number): number => ((h % n) + n) % n;
    for (const term of ["a", "b", "spark", "é"]) {
      expect(hashingTFIndex(term, 1 << 18, false)).toBe(nonNegativeMod(referenceMurmur3(text(term), 42), 1 << 18));
      expect(hashingTFIndex(term, 1 << 18, true)).toBe(nonNegativeMod(referenceMurmur3(text(term), 42, true), 1 << 18));
    }
    // Whole 4-byte words hash alike; only the tail differs between the two.
    expect(hashingTFIndex("abcd", 1 << 18, true)).toBe(hashingTFIndex("abcd", 1 << 18, false));
    expect(hashingTFIndex("a", 1 << 18, true)).not.toBe(hashingTFIndex("a", 1 << 18, false));
  });

  it("counts term frequencies (or 1.0 with binary) in sparse vectors, with the hash picked by sparkVersion", async () => {
    const n = 1 << 18;
    const v3 = await load({ className: `${F}HashingTF`, paramMap: { inputCol: "words", outputCol: "tf" }, defaultParamMap: { numFeatures: n, binary: false } });
    expect(v3.inputs).toEqual([{ name: "words", kind: "strings" }]);
    expect(v3.outputs).toEqual([{ name: "tf", kind: "vector", size: n }]);
    const words: FrameColumn = { kind: "strings", values: [["a", "b", "a", "spark"], []] };
    const expected = (legacy: boolean, binary: boolean): SparkVector => {
      const counts = new Map<number, number>();
      for (const term of ["a", "b", "a", "spark"]) {
        const index = ((referenceMurmur3(text(term), 42, legacy) % n) + n) % n;
        counts.set(index, binary ? 1 : (counts.get(index) ?? 0) + 1);
      }
      const indices = [...counts.keys()].sort((x, y) => x - y);
      return sparseVector(n, indices, indices.map((index) => counts.get(index) as number));
    };
    const out3 = vectorsOf(v3.transform(frame({ words })), "tf");
    expect(out3[0]).toEqual(expected(false, false));
    expect(out3[1]).toEqual(sparseVector(n, [], []));

    const v2 = await load({ className: `${F}HashingTF`, sparkVersion: "2.4.4", paramMap: { inputCol: "words", outputCol: "tf", numFeatures: n, binary: true } });
    expect(vectorsOf(v2.transform(frame({ words })), "tf")[0]).toEqual(expected(true, true));
  });
});

describe("on disk through loadSparkModel", () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  });

  it("loads a PipelineModel of StringIndexer + StandardScaler written in Spark's layout and scores it", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "mlship-sparkml-features-"));
    dirs.push(dir);
    await writeSparkPipeline(dir, [
      {
        className: `${F}StringIndexerModel`,
        paramMap: { inputCol: "city", outputCol: "cityIndex", handleInvalid: "keep" },
        defaultParamMap: { handleInvalid: "error", stringOrderType: "frequencyDesc", outputCol: "si__output" },
        data: { schema: [{ name: "labelsArray", type: { array: { array: "string" } } }], rows: [{ labelsArray: [["paris", "rome", "oslo"]] }] },
      },
      {
        className: `${F}StandardScalerModel`,
        paramMap: { inputCol: "x", outputCol: "scaled", withMean: true },
        defaultParamMap: { withMean: false, withStd: true },
        data: {
          schema: [
            { name: "std", type: VECTOR },
            { name: "mean", type: VECTOR },
          ],
          rows: [{ std: vectorSparse(2, [0], [4]), mean: vectorDense([1, -1]) }],
        },
      },
    ]);
    const model = await loadSparkModel(dir);
    expect(model.inputs).toEqual([
      { name: "city", kind: "string" },
      { name: "x", kind: "vector", size: 2 },
    ]);
    const out = model.stage.transform(
      frame({ city: { kind: "string", values: ["rome", "lima"] }, x: vectors([denseVector([3, 5]), sparseVector(2, [1], [2])]) }),
    );
    expect(doublesOf(out, "cityIndex")).toEqual([1, 3]);
    expect(arrays(out, "scaled")).toEqual([
      [0.5, 0],
      [-0.25, 0],
    ]);
  });
});
