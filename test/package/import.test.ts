import { createHash, randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import YAML from "yaml";
import { columnsFromCsv, importModel, loadPackage, parseCsv } from "../../src/package/index.js";
import { catchMlship, fixture, FIXTURES, REPO, tempDir, writeMlflowModel } from "./helpers.js";

const BREAST_SIG_IN = '[{"name": "input", "type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 30]}}]';
const BREAST_SIG_OUT = '[{"name": "probabilities", "type": "tensor", "tensor-spec": {"dtype": "float32", "shape": ' +
  '[-1, 2]}}, {"name": "label", "type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]';

async function meta(name: string): Promise<{ features: string[] }> {
  return JSON.parse(await readFile(path.join(FIXTURES, name, "meta.json"), "utf8")) as { features: string[] };
}

async function sha256(file: string): Promise<string> {
  return createHash("sha256").update(await readFile(file)).digest("hex");
}

async function staging(): Promise<string> {
  return path.join(await tempDir(), "staging");
}

async function csvRows(name: string, count: number): Promise<{ header: string[]; rows: number[][] }> {
  const lines = (await readFile(path.join(FIXTURES, name, "prod.csv"), "utf8")).split("\n");
  return {
    header: (lines[0] as string).split(","),
    rows: lines.slice(1, 1 + count).map((l) => l.split(",").map(Number)),
  };
}

describe("importing a bare .onnx file", () => {
  it("reads the signature from the graph and copies the model", async () => {
    const before = Date.now();
    const dir = await staging();
    const pkg = await importModel(fixture("breast_cancer_mlp", "model.onnx"), { stagingDir: dir });
    expect(pkg.root).toBe(path.resolve(dir));
    const m = pkg.manifest;
    expect(m.files).toEqual({ model: "model.onnx" });
    expect(m.signature).toEqual({
      inputs: [{ name: "input", dtype: "float32", shape: [-1, 30] }],
      outputs: [
        { name: "probabilities", dtype: "float32", shape: [-1, 2] },
        { name: "label", dtype: "int64", shape: [-1] },
      ],
    });
    expect(m.metadata.framework).toBe("onnx");
    const created = Date.parse(m.metadata.created_at as string);
    expect(created).toBeGreaterThanOrEqual(before - 1000);
    expect(created).toBeLessThanOrEqual(Date.now());
    expect(await sha256(path.join(dir, "model.onnx"))).toBe(await sha256(fixture("breast_cancer_mlp", "model.onnx")));
    // The fixture is read-only; the staged copy must not be.
    expect((await stat(path.join(dir, "model.onnx"))).mode & 0o200).toBe(0o200);
    expect((await readdir(dir)).sort()).toEqual(["mlship.yaml", "model.onnx"]);
    expect((await loadPackage(dir)).manifest).toEqual(m);
  });

  it("applies --columns-from with a label column and every metadata option", async () => {
    const dir = await staging();
    const example = path.join(await tempDir(), "example.json");
    const prod = await csvRows("breast_cancer_mlp", 1);
    await writeFile(example, JSON.stringify({ dataframe_split: { columns: prod.header.slice(0, 30),
      data: prod.rows.map((r) => r.slice(0, 30)) } }));
    const train = fixture("breast_cancer_mlp", "train.csv");
    const pkg = await importModel(fixture("breast_cancer_mlp", "model.onnx"), {
      stagingDir: dir,
      columnsFromCsv: train,
      labelColumn: "label",
      description: "MLP on breast cancer",
      tags: { team: "ml" },
      metrics: { prod_accuracy: 0.965 },
      params: { epochs: 150 },
      classLabels: ["malignant", "benign"],
      trainingData: train,
      inputExample: example,
    });
    const m = pkg.manifest;
    expect(m.signature.columns?.map((c) => c.name)).toEqual((await meta("breast_cancer_mlp")).features);
    expect(m.metadata).toMatchObject({
      description: "MLP on breast cancer",
      tags: { team: "ml" },
      metrics: { prod_accuracy: 0.965 },
      params: { epochs: 150 },
      class_labels: ["malignant", "benign"],
      training_data_fingerprint: await sha256(train),
    });
    expect(m.input_example).toBe("input_example.json");
    expect(await readFile(path.join(dir, "input_example.json"), "utf8")).toBe(await readFile(example, "utf8"));
  });

  it("refuses columns that do not fit the input, naming the CSV, and leaves the staging folder empty", async () => {
    const dir = await staging();
    const csv = fixture("diabetes_linear", "train.csv");
    const error = await catchMlship(() => importModel(fixture("breast_cancer_mlp", "model.onnx"), {
      stagingDir: dir, columnsFromCsv: csv, labelColumn: "target",
    }));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    expect(error.field).toBe("signature.columns");
    expect(error.message).toContain(csv);
    expect(error.message).toMatch(/10 columns given but input "input" .* takes 30 values per row/);
    expect(await readdir(dir)).toEqual([]);
  });

  it("refuses class labels that do not fit the outputs", async () => {
    const dir = await staging();
    const error = await catchMlship(() => importModel(fixture("digits_cnn", "model.onnx"), {
      stagingDir: dir, classLabels: ["a", "b"],
    }));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    expect(error.field).toBe("metadata.class_labels");
    expect(error.message).toContain(fixture("digits_cnn", "model.onnx"));
  });

  it("a corrupt .onnx file is refused naming it", async () => {
    const bad = path.join(await tempDir(), "bad.onnx");
    await writeFile(bad, randomBytes(1000));
    const dir = await staging();
    const error = await catchMlship(() => importModel(bad, { stagingDir: dir }));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    expect(error.message).toContain(bad);
    expect(await readdir(dir)).toEqual([]);
  });
});

describe("importing an MLflow model folder", () => {
  it("tensor-spec signature, split example, run id and creation time", async () => {
    const prod = await csvRows("breast_cancer_mlp", 2);
    const features = prod.header.slice(0, 30);
    const src = await writeMlflowModel(path.join(await tempDir(), "model"), {
      onnx: fixture("breast_cancer_mlp", "model.onnx"),
      signatureInputs: BREAST_SIG_IN,
      signatureOutputs: BREAST_SIG_OUT,
      // pandas `to_json(orient="split")` without the index, as MLflow 2.x saves a DataFrame example.
      example: { file: "input_example.json", info: "{artifact_path: input_example.json, type: dataframe, pandas_orient: split}",
        body: { columns: features, data: prod.rows.map((r) => r.slice(0, 30)) } },
      metadata: "metadata:\n  owner: ml-team\n  epochs: 150\n  tuned: true",
    });
    const dir = await staging();
    const pkg = await importModel(src, { stagingDir: dir });
    const m = pkg.manifest;
    expect(m.signature.inputs).toEqual([{ name: "input", dtype: "float32", shape: [-1, 30] }]);
    expect(m.signature.outputs.map((o) => o.name)).toEqual(["probabilities", "label"]);
    expect(m.signature.columns).toBeUndefined();
    expect(m.metadata.source_run).toEqual({ system: "mlflow", id: "8ede7df408dd42ed9fc39019ef7df309",
      uri: "runs:/8ede7df408dd42ed9fc39019ef7df309/model" });
    expect(m.metadata.created_at).toBe("2024-01-01T00:00:00.000Z");
    expect(m.metadata.framework).toBe("onnx");
    expect(m.metadata.tags).toEqual({ "mlflow.model_uuid": "39ca11813cfc46b09ab83972740b80ca", "mlflow.version": "2.14.1",
      owner: "ml-team" });
    expect(m.metadata.params).toEqual({ epochs: 150, tuned: true });
    expect(m.input_example).toBe("input_example.json");
    const example = JSON.parse(await readFile(path.join(dir, "input_example.json"), "utf8")) as unknown;
    expect(example).toEqual({ dataframe_split: { columns: features, data: prod.rows.map((r) => r.slice(0, 30)) } });
    // Only the model and what mlship wrote: MLflow's environment files stay behind.
    expect((await readdir(dir)).sort()).toEqual(["input_example.json", "mlship.yaml", "model.onnx"]);
  });

  it("column-based signature becomes signature.columns feeding the single input", async () => {
    const features = (await meta("diabetes_linear")).features;
    const inputs = JSON.stringify(features.map((name) => ({ type: "double", name, required: true })));
    const prod = await csvRows("diabetes_linear", 2);
    const records = prod.rows.map((r) => Object.fromEntries(features.map((f, i) => [f, r[i]])));
    const src = await writeMlflowModel(path.join(await tempDir(), "model"), {
      onnx: fixture("diabetes_linear", "model.onnx"),
      signatureInputs: inputs,
      signatureOutputs: '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 1]}}]',
      example: { file: "input_example.json", info: "{artifact_path: input_example.json, type: dataframe, pandas_orient: records}",
        body: records },
    });
    const pkg = await importModel(src, { stagingDir: await staging() });
    const m = pkg.manifest;
    expect(m.signature.columns).toEqual(features.map((name) => ({ name, dtype: "float64" })));
    expect(m.signature.inputs).toEqual([{ name: "input", dtype: "float32", shape: [-1, 10] }]);
    const example = JSON.parse(await readFile(path.join(pkg.root, "input_example.json"), "utf8")) as unknown;
    expect(example).toEqual({ dataframe_records: records });
  });

  it("the MLmodel path itself may be given", async () => {
    const src = await writeMlflowModel(path.join(await tempDir(), "model"), {
      onnx: fixture("diabetes_linear", "model.onnx"),
    });
    const pkg = await importModel(path.join(src, "MLmodel"), { stagingDir: await staging() });
    expect(pkg.manifest.signature.outputs).toEqual([{ name: "prediction", dtype: "float32", shape: [-1, 1] }]);
  });

  it("a model without the onnx flavor is unsupported, naming the flavors found", async () => {
    const src = await writeMlflowModel(path.join(await tempDir(), "model"), {
      onnx: fixture("diabetes_linear", "model.onnx"),
      flavors: "flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n    model_path: model.pkl\n" +
        "  sklearn:\n    pickled_model: model.pkl\n    serialization_format: cloudpickle\n    sklearn_version: 1.2.1",
    });
    const dir = await staging();
    const error = await catchMlship(() => importModel(src, { stagingDir: dir }));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_UNSUPPORTED");
    expect(error.message).toContain(path.join(src, "MLmodel"));
    expect(error.message).toMatch(/flavors found: python_function, sklearn/);
    expect(await readdir(dir)).toEqual([]);
  });

  it("a signature dtype that disagrees with the graph is refused naming MLmodel", async () => {
    const src = await writeMlflowModel(path.join(await tempDir(), "model"), {
      onnx: fixture("breast_cancer_mlp", "model.onnx"),
      signatureInputs: BREAST_SIG_IN.replace("float32", "float64"),
      signatureOutputs: BREAST_SIG_OUT,
    });
    const error = await catchMlship(() => importModel(src, { stagingDir: path.join(src, "..", "out") }));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    expect(error.field).toBe("signature.inputs[0].tensor-spec.dtype");
    expect(error.message).toBe(`${path.join(src, "MLmodel")}: input "input" is float64 in the signature but float32 in ` +
      "the ONNX graph at signature.inputs[0].tensor-spec.dtype");
  });

  it("a signature name that is not in the graph is refused naming MLmodel", async () => {
    const src = await writeMlflowModel(path.join(await tempDir(), "model"), {
      onnx: fixture("breast_cancer_mlp", "model.onnx"),
      signatureInputs: BREAST_SIG_IN,
      signatureOutputs: BREAST_SIG_OUT.replace('"label"', '"class"'),
    });
    const out = await staging();
    const error = await catchMlship(() => importModel(src, { stagingDir: out }));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    expect(error.field).toBe("signature.outputs[1].name");
    expect(error.message).toContain(path.join(src, "MLmodel"));
    expect(error.message).toMatch(/output "class" is not an output of the ONNX graph/);
  });

  it("a column-based signature whose width differs from the input is refused", async () => {
    const src = await writeMlflowModel(path.join(await tempDir(), "model"), {
      onnx: fixture("diabetes_linear", "model.onnx"),
      signatureInputs: '[{"type": "double", "name": "age"}, {"type": "double", "name": "bmi"}]',
    });
    const out = await staging();
    const error = await catchMlship(() => importModel(src, { stagingDir: out }));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    expect(error.message).toMatch(/MLmodel: 2 columns in the signature but the ONNX input "input"/);
  });

  it("a malformed MLmodel is invalid, naming it", async () => {
    const src = await writeMlflowModel(path.join(await tempDir(), "model"), { onnx: fixture("diabetes_linear", "model.onnx") });
    await writeFile(path.join(src, "MLmodel"), "flavors: {onnx: {data: model.onnx}\n");
    const out = await staging();
    const error = await catchMlship(() => importModel(src, { stagingDir: out }));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    expect(error.message).toMatch(/MLmodel: malformed YAML/);
  });
});

describe("importing an mlship package folder", () => {
  it("validates, checks against the graph and copies the referenced files", async () => {
    const src = path.join(REPO, "examples/models/digits");
    const dir = await staging();
    const pkg = await importModel(src, { stagingDir: dir, description: "digits v2", tags: { stage: "test" } });
    const original = await loadPackage(src);
    expect(pkg.manifest).toEqual({
      ...original.manifest,
      metadata: { ...original.manifest.metadata, description: "digits v2",
        tags: { ...original.manifest.metadata.tags, stage: "test" } },
    });
    expect((await readdir(dir)).sort()).toEqual(["input_example.json", "mlship.yaml", "model.onnx"]);
    expect(await sha256(path.join(dir, "model.onnx"))).toBe(await sha256(fixture("digits_cnn", "model.onnx")));
  });

  it("refuses a package whose signature disagrees with its graph, naming mlship.yaml", async () => {
    const src = await tempDir();
    await importModel(fixture("diabetes_linear", "model.onnx"), { stagingDir: src });
    const manifest = YAML.parse(await readFile(path.join(src, "mlship.yaml"), "utf8")) as {
      signature: { inputs: Array<{ dtype: string }> };
    };
    (manifest.signature.inputs[0] as { dtype: string }).dtype = "float64";
    await writeFile(path.join(src, "mlship.yaml"), YAML.stringify(manifest));
    const out = await staging();
    const error = await catchMlship(() => importModel(src, { stagingDir: out }));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    expect(error.field).toBe("signature.inputs[0].dtype");
    expect(error.message).toContain(path.join(src, "mlship.yaml"));
  });
});

describe("source detection and staging", () => {
  it("a missing source is not found", async () => {
    const error = await catchMlship(() => importModel("/nonexistent/model.onnx", { stagingDir: "/nonexistent/x" }));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_NOT_FOUND");
  });

  it("a file that is no model and an empty folder are unsupported", async () => {
    for (const source of [fixture("breast_cancer_mlp", "train.csv"), await tempDir()]) {
      const out = await staging();
      const error = await catchMlship(() => importModel(source, { stagingDir: out }));
      expect(error.code).toBe("MLSHIP_ERR_PACKAGE_UNSUPPORTED");
      expect(error.message).toContain(source);
    }
  });

  it("a folder with exactly one .onnx file imports that file", async () => {
    const src = await tempDir();
    await writeFile(path.join(src, "net.onnx"), await readFile(fixture("diabetes_linear", "model.onnx")));
    const pkg = await importModel(src, { stagingDir: await staging() });
    expect(pkg.manifest.signature.inputs[0]?.shape).toEqual([-1, 10]);
  });

  it("refuses a staging folder that is not empty", async () => {
    const dir = await tempDir();
    await mkdir(path.join(dir, "old"));
    const error = await catchMlship(() => importModel(fixture("diabetes_linear", "model.onnx"), { stagingDir: dir }));
    expect(error.code).toBe("MLSHIP_ERR_CORE_INTERNAL");
    expect(await readdir(dir)).toEqual(["old"]);
  });
});

describe("columnsFromCsv", () => {
  it("reads the fixture header minus the label column", async () => {
    expect(await columnsFromCsv(fixture("breast_cancer_mlp", "train.csv"), "label"))
      .toEqual((await meta("breast_cancer_mlp")).features);
    expect(await columnsFromCsv(fixture("diabetes_linear", "train.csv"), "target"))
      .toEqual((await meta("diabetes_linear")).features);
    const all = await columnsFromCsv(fixture("digits_cnn", "train.csv"));
    expect(all).toHaveLength(65);
    expect(all[64]).toBe("label");
  });

  it("handles quotes, CRLF and a byte-order mark", async () => {
    const file = path.join(await tempDir(), "q.csv");
    await writeFile(file, '\uFEFFa,"b, with comma","say ""hi""",y\r\n1,2,3,4\r\n');
    expect(await columnsFromCsv(file, "y")).toEqual(["a", "b, with comma", 'say "hi"']);
  });

  it("splits the header exactly as a CSV request body is split, spaces after commas included", async () => {
    const text = "mean radius, mean texture ,\"worst, area\",label\n1,2,3,0\n";
    const file = path.join(await tempDir(), "spaced.csv");
    await writeFile(file, text);
    const columns = await columnsFromCsv(file, "label");
    expect(columns).toEqual(["mean radius", "mean texture", "worst, area"]);
    // Registering these columns and posting the same file as text/csv then finds every column by name.
    expect(parseCsv(text).header.slice(0, 3)).toEqual(columns);
  });

  it("names a missing label column and a missing file", async () => {
    const file = fixture("breast_cancer_mlp", "train.csv");
    const error = await catchMlship(() => columnsFromCsv(file, "target"));
    expect(error.code).toBe("MLSHIP_ERR_INPUT_MISSING");
    expect(error.message).toContain(file);
    expect(error.message).toMatch(/label column "target" is not in the CSV header/);
    const missing = await catchMlship(() => columnsFromCsv("/nonexistent/train.csv"));
    expect(missing.code).toBe("MLSHIP_ERR_PACKAGE_NOT_FOUND");
  });
});
