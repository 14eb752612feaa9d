import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MlshipError } from "../../src/core/index.js";
import { readDataset, readDatasetFile } from "../../src/monitor/readers.js";

const FIXTURES = path.resolve("../shared/fixtures");
const TRAIN = path.join(FIXTURES, "breast_cancer_mlp/train.csv");
const TREES = path.join(FIXTURES, "sparkml/py_rforest_cls/treesMetadata");
const LOGREG = path.join(FIXTURES, "sparkml/py_log_reg/data");

let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "mlship-readers-"));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function write(name: string, text: string): Promise<string> {
  const file = path.join(dir, name);
  await fs.writeFile(file, text);
  return file;
}

async function failure(promise: Promise<unknown>): Promise<MlshipError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(MlshipError);
    return error as MlshipError;
  }
  throw new Error("expected a failure");
}

describe("readDataset", () => {
  it("reads the fixture CSV as numbers, with the file's digest and size", async () => {
    const { table, source } = await readDatasetFile(TRAIN);
    const bytes = await fs.readFile(TRAIN);
    expect(source).toEqual({
      path: TRAIN,
      sha256: createHash("sha256").update(bytes).digest("hex"),
      bytes: bytes.length,
      format: "csv",
    });
    expect(table.rows).toBe(426);
    expect(table.columns).toHaveLength(31);
    expect(table.columns[0]).toBe("mean radius");
    expect(table.values[0]?.[0]).toBe(10.95);
    expect(table.values[0]).toHaveLength(426);
    expect(table.values.every((column) => column.every((cell) => typeof cell === "number"))).toBe(true);
    // The first data line, parsed as Python's float() would.
    const firstLine = bytes.toString("utf8").split("\n")[1]?.split(",").map(Number);
    expect(table.values.map((column) => column[0])).toEqual(firstLine);
  });

  it("leaves out excluded columns", async () => {
    const table = await readDataset(TRAIN, { excludeColumns: ["label", "no such column"] });
    expect(table.columns).toHaveLength(30);
    expect(table.columns).not.toContain("label");
  });

  it("types CSV columns: numbers with missing cells, booleans, text", async () => {
    const file = await write(
      "mixed.csv",
      'x,flag,city,code\n1.5,True,Paris,007\n,false,"Saint-Malo, FR",8\nNaN,TRUE,,1e3\nnull,False,NA,-2\n',
    );
    const table = await readDataset(file);
    expect(table.columns).toEqual(["x", "flag", "city", "code"]);
    expect(table.values).toEqual([
      [1.5, null, null, null],
      [true, false, true, false],
      ["Paris", "Saint-Malo, FR", null, null],
      [7, 8, 1000, -2],
    ]);
    expect(table.rows).toBe(4);
  });

  it("names the file and line of a bad CSV row", async () => {
    const file = await write("bad.csv", "a,b\n1,2\n3\n");
    const error = await failure(readDataset(file));
    expect(error.code).toBe("MLSHIP_ERR_INPUT_SHAPE");
    expect(error.message).toContain(file);
    expect(error.message).toContain("line 3");
  });

  it("reads JSONL with missing keys and nested values flattened", async () => {
    const file = await write(
      "rows.jsonl",
      '{"a": 1, "b": "x", "probabilities": [0.25, 0.75]}\n\n{"a": 2.5, "c": true, "meta": {"k": null}}\r\n{"b": "y", "a": null}\n',
    );
    const { table, source } = await readDatasetFile(file);
    expect(source.format).toBe("jsonl");
    expect(table.columns).toEqual(["a", "b", "probabilities[0]", "probabilities[1]", "c", "meta.k"]);
    expect(table.values).toEqual([
      [1, 2.5, null],
      ["x", null, "y"],
      [0.25, null, null],
      [0.75, null, null],
      [null, true, null],
      [null, null, null],
    ]);
    expect(table.rows).toBe(3);
    const ndjson = await write("rows.ndjson", '{"a": 1}\n');
    expect((await readDataset(ndjson)).values).toEqual([[1]]);
  });

  it("names the file and line of bad JSONL", async () => {
    const broken = await write("broken.jsonl", '{"a": 1}\n{"a": \n');
    const error = await failure(readDataset(broken));
    expect(error.code).toBe("MLSHIP_ERR_INPUT_JSON");
    expect(error.message).toContain(`${broken}: line 2`);
    const notObject = await write("array.jsonl", '{"a": 1}\n{"a": 2}\n[1, 2]\n');
    const second = await failure(readDataset(notObject));
    expect(second.code).toBe("MLSHIP_ERR_INPUT_INVALID");
    expect(second.message).toContain("line 3 is not a JSON object");
  });

  it("reads Parquet files (Spark-written, snappy) into columns", async () => {
    const parts = (await fs.readdir(TREES)).filter((name) => name.endsWith(".parquet")).sort();
    expect(parts).toHaveLength(4);
    const treeIds: number[] = [];
    for (const part of parts) {
      const { table, source } = await readDatasetFile(path.join(TREES, part));
      expect(source.format).toBe("parquet");
      expect(table.columns).toEqual(["treeID", "metadata", "weights"]);
      expect(table.values[2]?.every((w) => w === 1)).toBe(true);
      for (const text of table.values[1] ?? []) {
        expect(JSON.parse(text as string)).toMatchObject({ class: "org.apache.spark.ml.classification.DecisionTreeClassificationModel" });
      }
      treeIds.push(...(table.values[0] as number[]));
    }
    // A random forest's trees, numbered 0..n-1 across the parts.
    expect(treeIds.sort((a, b) => a - b)).toEqual(Array.from({ length: treeIds.length }, (_, i) => i));
  });

  it("flattens nested Parquet values", async () => {
    const part = (await fs.readdir(LOGREG)).find((name) => name.endsWith(".parquet")) as string;
    const table = await readDataset(path.join(LOGREG, part));
    expect(table.rows).toBe(1);
    expect(table.columns.slice(0, 2)).toEqual(["numClasses", "numFeatures"]);
    expect(table.values.slice(0, 2)).toEqual([[2], [692]]);
    expect(table.columns).toContain("coefficientMatrix.numCols");
    expect(table.values[table.columns.indexOf("coefficientMatrix.numCols")]).toEqual([692]);
    expect(table.columns).toContain("interceptVector.values[1]");
  });

  it("rejects unknown formats, missing files and non-Parquet bytes", async () => {
    expect((await failure(readDataset(path.join(dir, "data.xlsx")))).code).toBe("MLSHIP_ERR_INPUT_INVALID");
    expect((await failure(readDataset(path.join(dir, "absent.csv")))).code).toBe("MLSHIP_ERR_PACKAGE_NOT_FOUND");
    const fake = await write("fake.parquet", "not parquet at all");
    const error = await failure(readDataset(fake));
    expect(error.code).toBe("MLSHIP_ERR_INPUT_INVALID");
    expect(error.message).toContain(fake);
  });
});
