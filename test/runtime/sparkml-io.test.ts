/**
 * Reading Spark ML saved stages: the fixtures written by a real Spark 2.3.0 (metadata, multi-part Parquet, UDT
 * structs), the test writer's layout checked against those real files, and `loadSparkModel`'s class checks and
 * pipeline input derivation.
 */
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from "hyparquet";
import { afterAll, describe, expect, it } from "vitest";
import { MlshipError } from "../../src/core/index.js";
import { readMetadata, readParquetRows, matrixToRows } from "../../src/runtime/sparkml/io.js";
import { frameFromTensors, tensorsFromFrame } from "../../src/runtime/sparkml/frame.js";
import { loadSparkModel } from "../../src/runtime/sparkml/model.js";
import type { SparkMatrix, SparkVector } from "../../src/runtime/sparkml/types.js";
import {
  ensembleDataSchema,
  MATRIX,
  matrixDense,
  matrixSparse,
  sparkParquetBuffer,
  VECTOR,
  vectorDense,
  vectorSparse,
  writeSparkPipeline,
  writeSparkStage,
} from "../helpers/sparkml-writer.js";

const SPARK_FIXTURES = fileURLToPath(new URL("../../../shared/fixtures/sparkml/", import.meta.url));
const LOG_REG = path.join(SPARK_FIXTURES, "py_log_reg");
const FOREST = path.join(SPARK_FIXTURES, "py_rforest_cls");
const LR_CLASS = "org.apache.spark.ml.classification.LogisticRegressionModel";

const made: string[] = [];
afterAll(async () => {
  await Promise.all(made.map((dir) => rm(dir, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "mlship-sparkml-io-"));
  made.push(dir);
  return dir;
}

async function parquetFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.endsWith(".parquet") && !name.startsWith(".")).sort().map((name) => path.join(dir, name));
}

/** The physical schema as hyparquet sees it (names, types, repetition, LIST/INT_8 annotations, nesting). */
async function physicalSchema(file: string): Promise<string> {
  const metadata = await parquetMetadataAsync(await asyncBufferFromFile(file));
  return JSON.stringify(metadata.schema.slice(1).map((element) => [element.name, element.type, element.repetition_type, element.converted_type, element.num_children]));
}

async function sparkSchemaJson(file: string): Promise<string | undefined> {
  const metadata = await parquetMetadataAsync(await asyncBufferFromFile(file));
  return metadata.key_value_metadata?.find((entry) => entry.key === "org.apache.spark.sql.parquet.row.metadata")?.value;
}

async function caught(promise: Promise<unknown>): Promise<MlshipError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(MlshipError);
    return error as MlshipError;
  }
  throw new Error("expected a rejection");
}

const LR_DATA_SCHEMA = [
  { name: "numClasses", type: "int" },
  { name: "numFeatures", type: "int" },
  { name: "interceptVector", type: VECTOR },
  { name: "coefficientMatrix", type: MATRIX },
  { name: "isMultinomial", type: "boolean" },
] as const;

describe("the Spark 2.3.0 fixtures", () => {
  it("reads the logistic regression's metadata line", async () => {
    const metadata = await readMetadata(LOG_REG);
    expect(metadata.class).toBe(LR_CLASS);
    expect(metadata.uid).toBe("LogisticRegression_4e3fbe1b6c7b7678aa1a");
    expect(metadata.sparkVersion).toBe("2.3.0");
    expect(metadata.timestamp).toBe(1521883415278);
    expect(metadata.paramMap).toMatchObject({ family: "multinomial", regParam: 0.3, elasticNetParam: 0.8, threshold: 0.5 });
    expect(metadata.defaultParamMap).toBeUndefined();
  });

  it("reads the logistic regression's coefficients and intercepts as Spark's vector and matrix", async () => {
    const rows = await readParquetRows(LOG_REG);
    expect(rows).toHaveLength(1);
    const row = rows[0] as Record<string, unknown>;
    expect(row.numClasses).toBe(2);
    expect(row.numFeatures).toBe(692);
    expect(row.isMultinomial).toBe(true);
    const intercept = row.interceptVector as SparkVector;
    expect(intercept.type).toBe("dense");
    expect(Array.from(intercept.values)).toEqual([-0.12065879445860686, 0.12065879445860686]);
    const coefficients = row.coefficientMatrix as SparkMatrix;
    expect(coefficients).toMatchObject({ type: "sparse", numRows: 2, numCols: 692, isTransposed: true });
    if (coefficients.type !== "sparse") throw new Error("sparse expected");
    expect(Array.from(coefficients.colPtrs)).toEqual([0, 29, 58]);
    // CSR (transposed): row i's entries are k in [colPtrs[i], colPtrs[i+1]), at columns rowIndices[k].
    const dense = matrixToRows(coefficients);
    expect(dense).toHaveLength(2);
    for (let k = 0; k < 58; k += 1) {
      const row = k < 29 ? 0 : 1;
      expect((dense[row] as Float64Array)[coefficients.rowIndices[k] as number]).toBe(coefficients.values[k]);
    }
    expect((dense[0] as Float64Array).filter((value) => value !== 0)).toHaveLength(29);
    // The same numbers as hyparquet's raw struct.
    const raw = (await parquetReadObjects({ file: await asyncBufferFromFile((await parquetFiles(path.join(LOG_REG, "data")))[0] as string) }))[0] as {
      coefficientMatrix: { values: number[]; rowIndices: number[] };
    };
    expect(Array.from(coefficients.values)).toEqual(raw.coefficientMatrix.values);
    expect(Array.from(coefficients.rowIndices)).toEqual(raw.coefficientMatrix.rowIndices);
  });

  it("reads the forest's metadata extras, its 4 data parts and its trees metadata", async () => {
    const metadata = (await readMetadata(FOREST)) as unknown as Record<string, unknown>;
    expect(metadata).toMatchObject({ numFeatures: 692, numClasses: 2, numTrees: 10 });
    const rows = await readParquetRows(FOREST);
    let partRows = 0;
    for (const file of await parquetFiles(path.join(FOREST, "data"))) {
      partRows += (await parquetReadObjects({ file: await asyncBufferFromFile(file) })).length;
    }
    expect(rows).toHaveLength(partRows);
    const trees = new Map<number, Record<string, unknown>[]>();
    for (const row of rows) {
      const treeID = row.treeID as number;
      trees.set(treeID, [...(trees.get(treeID) ?? []), row.nodeData as Record<string, unknown>]);
    }
    expect([...trees.keys()].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    for (const nodes of trees.values()) {
      // Pre-order ids 0..n-1, leaves have no children and the (-1, [], -1) split.
      expect(nodes.map((node) => node.id).sort((a, b) => (a as number) - (b as number))).toEqual(nodes.map((_, i) => i));
      for (const node of nodes) {
        const split = node.split as { featureIndex: number; leftCategoriesOrThreshold: number[]; numCategories: number };
        if (node.leftChild === -1) expect(split).toEqual({ featureIndex: -1, leftCategoriesOrThreshold: [], numCategories: -1 });
        else expect(split.leftCategoriesOrThreshold).toHaveLength(1);
        expect((node.impurityStats as number[]).length).toBe(2);
      }
    }
    const root0 = (trees.get(0) as Record<string, unknown>[]).find((node) => node.id === 0);
    expect(root0).toMatchObject({ impurityStats: [48, 38], split: { featureIndex: 434, leftCategoriesOrThreshold: [70.5] } });
    const treesMetadata = await readParquetRows(FOREST, "treesMetadata");
    expect(treesMetadata).toHaveLength(10);
    for (const row of treesMetadata) {
      expect(row.weights).toBe(1);
      expect((JSON.parse(row.metadata as string) as { class: string }).class).toBe("org.apache.spark.ml.classification.DecisionTreeClassificationModel");
    }
  });
});

describe("the test writer (test/helpers/sparkml-writer.ts)", () => {
  it("writes the fixture's logistic regression with Spark's physical Parquet schema, footer and layout", async () => {
    const fixtureRow = (await readParquetRows(LOG_REG))[0] as Record<string, unknown>;
    const dir = await tempDir();
    await writeSparkStage(dir, {
      className: LR_CLASS,
      sparkVersion: "2.3.0",
      paramMap: { family: "multinomial", threshold: 0.5 },
      data: { schema: LR_DATA_SCHEMA, rows: [fixtureRow] },
    });
    const realFile = (await parquetFiles(path.join(LOG_REG, "data")))[0] as string;
    const ourFile = (await parquetFiles(path.join(dir, "data")))[0] as string;
    expect(path.basename(ourFile)).toMatch(/^part-00000-[0-9a-f-]{36}-c000\.snappy\.parquet$/);
    expect(await physicalSchema(ourFile)).toBe(await physicalSchema(realFile));
    expect(await sparkSchemaJson(ourFile)).toBe(await sparkSchemaJson(realFile));
    // The same rows with the same reader (hyparquet, raw structs) as the real file.
    const plain = (value: unknown): string => JSON.stringify(value, (_key, item: unknown) => (typeof item === "bigint" ? Number(item) : item));
    expect(plain(await parquetReadObjects({ file: await asyncBufferFromFile(ourFile) }))).toBe(
      plain(await parquetReadObjects({ file: await asyncBufferFromFile(realFile) })),
    );
    expect((await readdir(dir)).sort()).toEqual(["data", "metadata"]);
    expect((await readdir(path.join(dir, "metadata"))).sort()).toEqual(["._SUCCESS.crc", ".part-00000.crc", "_SUCCESS", "part-00000"]);
    const line = await readFile(path.join(dir, "metadata", "part-00000"), "utf8");
    expect(line.endsWith("}\n")).toBe(true);
    expect(line.split("\n")).toHaveLength(2);
    const metadata = await readMetadata(dir);
    expect(metadata).toMatchObject({ class: LR_CLASS, sparkVersion: "2.3.0", paramMap: { family: "multinomial", threshold: 0.5 } });
    // Our writer's model loads and scores exactly like the fixture.
    const [ours, theirs] = [await loadSparkModel(dir), await loadSparkModel(LOG_REG)];
    const features = vectorSparse(692, [300, 350, 400], [120, 250, 3]);
    const frame = { rows: 1, columns: new Map([["features", { kind: "vector" as const, values: [features] }]]) };
    expect(ours.stage.transform(frame).columns.get("probability")).toEqual(theirs.stage.transform(frame).columns.get("probability"));
  });

  it("writes the forest's nested node structs (split struct, lists) like Spark, in several parts", async () => {
    const fixtureRows = await readParquetRows(FOREST);
    const dir = await tempDir();
    await writeSparkStage(dir, {
      className: "org.apache.spark.ml.classification.RandomForestClassificationModel",
      sparkVersion: "2.3.0",
      paramMap: {},
      data: { schema: ensembleDataSchema(false), rows: fixtureRows, partSizes: [5, 0, fixtureRows.length - 5] },
    });
    const ours = await parquetFiles(path.join(dir, "data"));
    expect(ours).toHaveLength(3);
    const real = (await parquetFiles(path.join(FOREST, "data")))[0] as string;
    for (const file of ours) {
      expect(await physicalSchema(file)).toBe(await physicalSchema(real));
      expect(await sparkSchemaJson(file)).toBe(await sparkSchemaJson(real));
    }
    expect(await readParquetRows(dir)).toEqual(fixtureRows);
  });

  it("round-trips every field kind, nulls, empty parts and Spark 4's metadata file name", async () => {
    const dir = await tempDir();
    const rows = [
      {
        i: 1, l: 2n ** 40n, d: Number.NaN, b: true, s: "a", strings: ["x", "y"], nested: [["p"], []],
        v: vectorDense([1, 2.5]), sv: vectorSparse(5, [1, 3], [7, -1]), m: matrixDense(2, 2, [1, 2, 3, 4]),
        sm: matrixSparse(3, 2, [0, 1, 3], [2, 0, 1], [9, 8, 7], false), st: { a: 1, t: [0.5] }, mp: { k: 3 },
      },
      { i: -3, l: 5, d: 0.1, b: false, s: null, strings: null, nested: [], v: [4, 5], sv: null, m: null, sm: null, st: null, mp: null },
    ];
    await writeSparkStage(dir, {
      className: "org.apache.spark.ml.feature.Whatever",
      sparkVersion: "4.0.0",
      uid: "w_1",
      paramMap: { missingValue: Number.NaN, splits: [-Infinity, 0, Infinity] },
      defaultParamMap: { handleInvalid: "error" },
      extraMetadata: { numFeatures: 3 },
      crcFiles: false,
      data: {
        schema: [
          { name: "i", type: "int" }, { name: "l", type: "long" }, { name: "d", type: "double" }, { name: "b", type: "boolean" },
          { name: "s", type: "string" }, { name: "strings", type: { array: "string" } },
          { name: "nested", type: { array: { array: "string" } } },
          { name: "v", type: VECTOR }, { name: "sv", type: VECTOR }, { name: "m", type: MATRIX }, { name: "sm", type: MATRIX },
          { name: "st", type: { struct: [{ name: "a", type: "int" }, { name: "t", type: { array: "double" } }] } },
          { name: "mp", type: { map: ["string", "int"] } },
        ],
        rows,
        partSizes: [0, 1, 0, 1],
      },
    });
    const metadataFiles = await readdir(path.join(dir, "metadata"));
    expect(metadataFiles.sort()).toEqual(["_SUCCESS", expect.stringMatching(/^part-00000-[0-9a-f-]{36}-c000\.txt$/) as unknown as string]);
    const metadata = (await readMetadata(dir)) as unknown as Record<string, unknown>;
    expect(metadata).toMatchObject({
      class: "org.apache.spark.ml.feature.Whatever", uid: "w_1", sparkVersion: "4.0.0", numFeatures: 3,
      paramMap: { missingValue: "NaN", splits: ["-Inf", 0, "Inf"] }, defaultParamMap: { handleInvalid: "error" },
    });
    expect(await parquetFiles(path.join(dir, "data"))).toHaveLength(4);
    const read = await readParquetRows(dir);
    expect(read).toHaveLength(2);
    const [first, second] = read as [Record<string, unknown>, Record<string, unknown>];
    expect(first).toMatchObject({ i: 1, b: true, s: "a", strings: ["x", "y"], nested: [["p"], []], st: { a: 1, t: [0.5] } });
    expect(first.l).toBe(2 ** 40);
    expect(first.d).toBeNaN();
    expect(first.v).toEqual(vectorDense([1, 2.5]));
    expect(first.sv).toEqual(vectorSparse(5, [1, 3], [7, -1]));
    expect(first.m).toEqual(matrixDense(2, 2, [1, 2, 3, 4]));
    expect(first.sm).toEqual(matrixSparse(3, 2, [0, 1, 3], [2, 0, 1], [9, 8, 7]));
    expect(matrixToRows(first.sm as SparkMatrix).map((row) => Array.from(row))).toEqual([[0, 8], [0, 7], [9, 0]]);
    expect(matrixToRows(first.m as SparkMatrix).map((row) => Array.from(row))).toEqual([[1, 3], [2, 4]]);
    expect(first.mp).toEqual({ k: 3 });
    expect(second).toMatchObject({ i: -3, l: 5, d: 0.1, b: false, s: null, strings: null, nested: [], sv: null, m: null, st: null });
    expect(second.v).toEqual(vectorDense([4, 5]));
  });

  it("refuses rows a Spark schema cannot hold", () => {
    expect(() => sparkParquetBuffer([{ name: "x", type: "int" }], [{ x: null }])).toThrow();
    expect(() => sparkParquetBuffer([{ name: "x", type: "int" }], [{ x: "1" }])).toThrow(/expected a number/);
  });

  it("writes a PipelineModel: stage folders padded to the stage count, stageUids in order", async () => {
    const dir = await tempDir();
    const stages = Array.from({ length: 11 }, (_, index) => ({
      className: "org.apache.spark.ml.feature.Binarizer",
      uid: `bin_${index}`,
      paramMap: { inputCol: index === 0 ? "x" : `b${index - 1}`, outputCol: `b${index}`, threshold: 0.5 },
    }));
    await writeSparkPipeline(dir, stages, { uid: "pipe" });
    expect((await readdir(path.join(dir, "stages"))).sort()).toEqual(stages.map((stage, index) => `${String(index).padStart(2, "0")}_${stage.uid}`).sort());
    const metadata = await readMetadata(dir);
    expect(metadata).toMatchObject({ class: "org.apache.spark.ml.PipelineModel", uid: "pipe", paramMap: { stageUids: stages.map((stage) => stage.uid) } });
    const model = await loadSparkModel(dir);
    expect(model.inputs).toEqual([{ name: "x", kind: "double" }]);
    expect(model.outputs.map((column) => column.name)).toEqual(["b10"]);
  });
});

describe("loadSparkModel", () => {
  it("loads by the class found, and refuses another class than the one asked for", async () => {
    expect((await loadSparkModel(FOREST)).className).toBe("org.apache.spark.ml.classification.RandomForestClassificationModel");
    expect((await loadSparkModel(LOG_REG, { expectClass: "LogisticRegressionModel" })).className).toBe(LR_CLASS);
    expect((await loadSparkModel(LOG_REG, { expectClass: LR_CLASS })).className).toBe(LR_CLASS);
    const short = await caught(loadSparkModel(FOREST, { expectClass: "LogisticRegressionModel" }));
    expect(short.code).toBe("MLSHIP_ERR_PACKAGE_UNSUPPORTED");
    expect(short.message).toBe(`expected LogisticRegressionModel, found RandomForestClassificationModel in ${FOREST}`);
    const full = await caught(loadSparkModel(FOREST, { expectClass: LR_CLASS }));
    expect(full.message).toBe(`expected ${LR_CLASS}, found org.apache.spark.ml.classification.RandomForestClassificationModel in ${FOREST}`);
  });

  it("refuses an unsupported class by name, at the root and inside a pipeline", async () => {
    const root = await tempDir();
    await writeSparkStage(root, { className: "org.apache.spark.ml.feature.PCAModel", paramMap: { inputCol: "v", outputCol: "p", k: 2 } });
    const error = await caught(loadSparkModel(root));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_UNSUPPORTED");
    expect(error.message).toContain("org.apache.spark.ml.feature.PCAModel");
    expect(error.message).toContain(root);

    const pipeline = await tempDir();
    await writeSparkPipeline(pipeline, [
      { className: "org.apache.spark.ml.feature.Binarizer", uid: "bin_a", paramMap: { inputCol: "x", outputCol: "xb", threshold: 0 } },
      { className: "org.apache.spark.ml.feature.ChiSqSelectorModel", uid: "chi_b", paramMap: { featuresCol: "xb" } },
    ]);
    const nested = await caught(loadSparkModel(pipeline));
    expect(nested.code).toBe("MLSHIP_ERR_PACKAGE_UNSUPPORTED");
    expect(nested.message).toContain("org.apache.spark.ml.feature.ChiSqSelectorModel");
    expect(nested.message).toContain(path.join(pipeline, "stages", "1_chi_b"));
  });

  it("refuses a directory without metadata and a pipeline whose stage folder is missing", async () => {
    const empty = await tempDir();
    expect((await caught(loadSparkModel(empty))).code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    const pipeline = await tempDir();
    await writeSparkStage(pipeline, { className: "org.apache.spark.ml.PipelineModel", paramMap: { stageUids: ["gone_1"] } });
    const error = await caught(loadSparkModel(pipeline));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    expect(error.message).toContain("gone_1");
  });

  it("derives a pipeline's inputs: columns read before any stage writes them", async () => {
    const dir = await tempDir();
    await writeSparkPipeline(dir, [
      {
        className: "org.apache.spark.ml.feature.StringIndexerModel",
        uid: "si_1",
        paramMap: { inputCol: "colour", outputCol: "colour_idx", handleInvalid: "keep" },
        data: { schema: [{ name: "labelsArray", type: { array: { array: "string" } } }], rows: [{ labelsArray: [["red", "blue"]] }] },
      },
      { className: "org.apache.spark.ml.feature.VectorAssembler", uid: "va_1", paramMap: { inputCols: ["colour_idx", "size"], outputCol: "features" } },
      {
        className: LR_CLASS,
        uid: "lr_1",
        paramMap: {},
        data: {
          schema: LR_DATA_SCHEMA,
          rows: [{ numClasses: 2, numFeatures: 2, interceptVector: vectorDense([0.5]), coefficientMatrix: matrixDense(1, 2, [1, -2]), isMultinomial: false }],
        },
      },
    ]);
    const model = await loadSparkModel(dir);
    expect(model.className).toBe("org.apache.spark.ml.PipelineModel");
    expect(model.inputs).toEqual([{ name: "colour", kind: "string" }, { name: "size", kind: "double" }]);
    expect(model.outputs.map((column) => [column.name, column.kind])).toEqual([
      ["rawPrediction", "vector"], ["probability", "vector"], ["prediction", "double"],
    ]);
  });
});

describe("tensors <-> frame", () => {
  const inputs = [
    { name: "x", kind: "double" as const },
    { name: "s", kind: "string" as const },
    { name: "v", kind: "vector" as const, size: 3 },
  ];

  it("turns numeric tensors into double columns (NaN kept), strings into strings, [N, size] into dense vectors", () => {
    const frame = frameFromTensors(
      {
        x: { dtype: "float32", shape: [2], data: new Float32Array([1.5, Number.NaN]) },
        s: { dtype: "string", shape: [2], data: ["a", "b"] },
        v: { dtype: "int64", shape: [2, 3], data: new BigInt64Array([1n, 2n, 3n, 4n, 5n, 6n]) },
      },
      inputs,
    );
    expect(frame.rows).toBe(2);
    const x = frame.columns.get("x");
    expect(x?.kind).toBe("double");
    expect(Array.from((x as { values: Float64Array }).values)).toEqual([1.5, Number.NaN]);
    expect(frame.columns.get("s")).toEqual({ kind: "string", values: ["a", "b"] });
    expect(frame.columns.get("v")).toEqual({ kind: "vector", size: 3, values: [vectorDense([1, 2, 3]), vectorDense([4, 5, 6])] });
  });

  it("names the input in every refusal", () => {
    const good = {
      x: { dtype: "float64" as const, shape: [1], data: new Float64Array([1]) },
      s: { dtype: "string" as const, shape: [1], data: ["a"] },
      v: { dtype: "float64" as const, shape: [1, 3], data: new Float64Array(3) },
    };
    const failures: [Record<string, unknown>, string, string][] = [
      [{ ...good, x: undefined }, "x", "MLSHIP_ERR_INPUT_MISSING"],
      [{ ...good, x: { dtype: "string", shape: [1], data: ["1"] } }, "x", "MLSHIP_ERR_INPUT_INVALID"],
      [{ ...good, s: { dtype: "float64", shape: [1], data: new Float64Array(1) } }, "s", "MLSHIP_ERR_INPUT_INVALID"],
      [{ ...good, v: { dtype: "float64", shape: [1, 4], data: new Float64Array(4) } }, "v", "MLSHIP_ERR_INPUT_INVALID"],
      [{ ...good, v: { dtype: "float64", shape: [3], data: new Float64Array(3) } }, "v", "MLSHIP_ERR_INPUT_INVALID"],
      [{ ...good, s: { dtype: "string", shape: [2], data: ["a", "b"] } }, "s", "MLSHIP_ERR_INPUT_SHAPE"],
    ];
    for (const [feeds, field, code] of failures) {
      let error: unknown;
      try {
        frameFromTensors(Object.fromEntries(Object.entries(feeds).filter(([, value]) => value !== undefined)) as never, inputs);
      } catch (caughtError) {
        error = caughtError;
      }
      expect(error, field).toBeInstanceOf(MlshipError);
      expect((error as MlshipError).field).toBe(field);
      expect((error as MlshipError).code).toBe(code);
    }
  });

  it("returns doubles as float64 [N], vectors as float64 [N, size] with sparse ones expanded, strings as strings", () => {
    const frame = {
      rows: 2,
      columns: new Map([
        ["prediction", { kind: "double" as const, values: new Float64Array([1, 0]), nulls: new Uint8Array([0, 1]) }],
        ["probability", { kind: "vector" as const, values: [vectorSparse(3, [2], [0.5]), vectorDense([0.1, 0.2, 0.7])] }],
        ["label", { kind: "string" as const, values: ["yes", null] }],
        ["words", { kind: "strings" as const, values: [["a", "b"], []] }],
      ]),
    };
    const tensors = tensorsFromFrame(frame, [
      { name: "prediction", kind: "double" },
      { name: "probability", kind: "vector" },
      { name: "label", kind: "string" },
      { name: "words", kind: "strings" },
    ]);
    expect(tensors.prediction?.shape).toEqual([2]);
    expect(Array.from(tensors.prediction?.data as Float64Array)).toEqual([1, Number.NaN]);
    expect(tensors.probability).toEqual({ dtype: "float64", shape: [2, 3], data: new Float64Array([0, 0, 0.5, 0.1, 0.2, 0.7]) });
    expect(tensors.label).toEqual({ dtype: "string", shape: [2], data: ["yes", ""] });
    expect(tensors.words).toEqual({ dtype: "string", shape: [2], data: ["a b", ""] });
  });
});
