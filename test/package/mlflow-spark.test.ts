// MLflow models saved with mlflow.spark (flavor `spark`): the Spark ML saved model under `sparkml/` becomes a
// sparkml package, MLflow's signature is checked against the pipeline's input columns, and MLflow's lineage is kept.
import { cp, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { importModel } from "../../src/package/import.js";
import { importMlflowSpark, readMlflow, readMlflowModel } from "../../src/package/mlflow.js";
import type { MlflowSparkModel } from "../../src/package/mlflow.js";
import { loadPackage, writePackage } from "../../src/package/manifest.js";
import { catchMlship, FIXTURES, fixture, tempDir } from "./helpers.js";

const LOG_REG = path.join(FIXTURES, "sparkml", "py_log_reg");
const RUN_ID = "0c9d6a0b1e2f4a5b8c7d6e5f4a3b2c1d";
const UUID = "5f1a2b3c4d5e6f708192a3b4c5d6e7f8";
/** 692 features, as the fixture's LogisticRegressionModel reads them (numFeatures of libsvm sample data). */
const FEATURES = Array.from({ length: 692 }, (_, i) => (i % 97 === 0 ? i / 7 : 0));

interface SparkMlmodelOptions {
  signatureInputs?: string;
  signatureOutputs?: string;
  example?: { body: unknown; info: string };
  sparkFlavor?: string;
  extraFlavors?: string;
  copySpark?: boolean;
}

/** An MLflow model folder as `mlflow.spark.save_model(model, path, signature=..., input_example=...)` writes it. */
async function writeSparkMlflowModel(options: SparkMlmodelOptions = {}): Promise<string> {
  const dir = path.join(await tempDir("mlflow-spark-"), "model");
  await mkdir(dir, { recursive: true });
  if (options.copySpark !== false) await cp(LOG_REG, path.join(dir, "sparkml"), { recursive: true });
  const spark = options.sparkFlavor ?? [
    "  spark:",
    "    code: null",
    "    model_class: pyspark.ml.classification.LogisticRegressionModel",
    "    model_data: sparkml",
    "    pyspark_version: 3.5.1",
  ].join("\n");
  const lines = [
    "artifact_path: spark-model",
    "flavors:",
    ...(options.extraFlavors === undefined ? [] : [options.extraFlavors]),
    "  python_function:",
    "    data: sparkml",
    "    env:",
    "      conda: conda.yaml",
    "      virtualenv: python_env.yaml",
    "    loader_module: mlflow.spark",
    "    python_version: 3.10.12",
    spark,
    "metadata:",
    "  team: fraud",
    "  auc: 0.93",
    "mlflow_version: 2.14.1",
    "model_size_bytes: 20480",
    `model_uuid: ${UUID}`,
    `run_id: ${RUN_ID}`,
  ];
  if (options.example !== undefined) lines.push(`saved_input_example_info: ${options.example.info}`);
  if (options.signatureInputs !== undefined) {
    lines.push("signature:", `  inputs: '${options.signatureInputs}'`,
      `  outputs: '${options.signatureOutputs ?? '[{"type": "double", "required": true}]'}'`, "  params: null");
  }
  lines.push("utc_time_created: '2024-05-02 10:11:12.345678'");
  await writeFile(path.join(dir, "MLmodel"), `${lines.join("\n")}\n`);
  await writeFile(path.join(dir, "requirements.txt"), "mlflow==2.14.1\npyspark==3.5.1\n");
  if (options.example !== undefined) await writeFile(path.join(dir, "input_example.json"), JSON.stringify(options.example.body));
  return dir;
}

async function readSpark(dir: string): Promise<MlflowSparkModel> {
  const model = await readMlflow(dir);
  if (model.flavor !== "spark") throw new Error(`expected the spark flavor, got ${model.flavor}`);
  return model;
}

describe("reading the spark flavor of an MLmodel", () => {
  it("finds the saved model under model_data and keeps run id, uuid, versions, time and metadata", async () => {
    const dir = await writeSparkMlflowModel();
    const model = await readSpark(dir);
    expect(model.sparkDir).toBe(path.join(dir, "sparkml"));
    expect(model.sparkRel).toBe("sparkml");
    expect(model.pysparkVersion).toBe("3.5.1");
    expect(model.modelClass).toBe("pyspark.ml.classification.LogisticRegressionModel");
    expect(model.flavorsFound).toEqual(["python_function", "spark"]);
    expect(model.metadata).toEqual({
      framework: "spark",
      source_run: { system: "mlflow", id: RUN_ID, uri: `runs:/${RUN_ID}/spark-model` },
      created_at: "2024-05-02T10:11:12.345Z",
      tags: {
        "mlflow.model_uuid": UUID, "mlflow.version": "2.14.1", team: "fraud",
        "mlflow.pyspark_version": "3.5.1", "mlflow.spark.model_class": "pyspark.ml.classification.LogisticRegressionModel",
      },
      params: { auc: 0.93 },
    });
  });

  it("prefers onnx when a model has both flavors", async () => {
    const dir = await writeSparkMlflowModel({
      extraFlavors: "  onnx:\n    code: null\n    data: model.onnx\n    onnx_version: 1.14.0",
    });
    await cp(fixture("diabetes_linear", "model.onnx"), path.join(dir, "model.onnx"));
    const model = await readMlflow(dir);
    expect(model.flavor).toBe("onnx");
    expect(model.flavorsFound).toEqual(["onnx", "python_function", "spark"]);
    expect((await readMlflowModel(dir)).modelRel).toBe("model.onnx");
  });

  it("readMlflowModel (onnx only) says the spark flavor goes through importModel", async () => {
    const dir = await writeSparkMlflowModel();
    const error = await catchMlship(() => readMlflowModel(dir));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_UNSUPPORTED");
    expect(error.message).toContain("flavors found: python_function, spark");
  });

  it("a model with neither flavor is refused, naming what was found and what is supported", async () => {
    const dir = await writeSparkMlflowModel({
      sparkFlavor: "  sklearn:\n    pickled_model: model.pkl\n    sklearn_version: 1.4.1",
    });
    const error = await catchMlship(() => readMlflow(dir));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_UNSUPPORTED");
    expect(error.field).toBe("flavors");
    expect(error.message).toBe(`${path.join(dir, "MLmodel")}: no onnx or spark flavor (flavors found: python_function, ` +
      "sklearn); mlship imports MLflow models saved with mlflow.onnx (flavor onnx) or mlflow.spark (flavor spark, a " +
      "Spark ML PipelineModel); convert other models to ONNX first at flavors");
  });

  it("a pyspark.ml.connect model is refused: its files are not Spark ML's saved-model layout", async () => {
    const dir = await writeSparkMlflowModel({
      sparkFlavor: "  spark:\n    model_class: pyspark.ml.connect.classification.LogisticRegressionModel\n    model_data: sparkml",
    });
    const error = await catchMlship(() => readMlflow(dir));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_UNSUPPORTED");
    expect(error.field).toBe("flavors.spark.model_class");
    expect(error.message).toContain("pyspark.ml.connect.classification.LogisticRegressionModel was saved by pyspark.ml.connect");
  });

  it("model_data that is not a saved model is invalid, naming the field", async () => {
    const dir = await writeSparkMlflowModel({ copySpark: false });
    const error = await catchMlship(() => readMlflow(dir));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    expect(error.field).toBe("flavors.spark.model_data");
    expect(error.message).toContain('"sparkml" is not a Spark ML saved model');
  });

  it("older MLflow without model_class and model_data defaults to sparkml/", async () => {
    const dir = await writeSparkMlflowModel({ sparkFlavor: "  spark:\n    pyspark_version: 2.4.8" });
    const model = await readSpark(dir);
    expect(model.sparkDir).toBe(path.join(dir, "sparkml"));
    expect(model.modelClass).toBeUndefined();
    expect(model.metadata.tags?.["mlflow.pyspark_version"]).toBe("2.4.8");
  });

  it("unnamed input columns are refused: a pipeline reads columns by name", async () => {
    const dir = await writeSparkMlflowModel({ signatureInputs: '[{"type": "double", "required": true}]' });
    const error = await catchMlship(() => readMlflow(dir));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    expect(error.message).toMatch(/a spark model's input columns need names/);
  });
});

describe("importing an MLflow spark model as a sparkml package", () => {
  it("vector signature, split example with index, lineage; the package validates and loads", async () => {
    const example = { columns: ["features"], index: [7], data: [[FEATURES]] };
    const dir = await writeSparkMlflowModel({
      signatureInputs: '[{"type": "sparkml_vector", "name": "features", "required": true}]',
      example: { body: example, info: "{artifact_path: input_example.json, type: dataframe, pandas_orient: split}" },
    });
    const staging = await tempDir("mlflow-spark-staging-");
    const manifest = await importMlflowSpark(await readSpark(dir), staging);
    expect(manifest.flavor).toBe("sparkml");
    expect(manifest.files.model).toBe("sparkml");
    expect(manifest.signature.inputs).toEqual([{ name: "features", dtype: "float64", shape: [-1, 692] }]);
    expect(manifest.signature.outputs.map((o) => o.name)).toEqual(["rawPrediction", "probability", "prediction"]);
    expect(manifest.metadata.source_run).toEqual({ system: "mlflow", id: RUN_ID, uri: `runs:/${RUN_ID}/spark-model` });
    expect(manifest.metadata.created_at).toBe("2024-05-02T10:11:12.345Z");
    expect(manifest.metadata.framework).toBe("spark");
    expect(manifest.metadata.tags).toMatchObject({ "mlflow.model_uuid": UUID, "mlflow.version": "2.14.1", team: "fraud" });
    // The Spark side's params (class, Spark version that wrote the files) and MLflow's metadata numbers together.
    expect(manifest.metadata.params).toEqual({
      spark_class: "org.apache.spark.ml.classification.LogisticRegressionModel", spark_version: "2.3.0",
      spark_uid: "LogisticRegression_4e3fbe1b6c7b7678aa1a", auc: 0.93,
    });
    expect(manifest.input_example).toBe("input_example.json");
    const saved = JSON.parse(await readFile(path.join(staging, "input_example.json"), "utf8")) as unknown;
    expect(saved).toEqual({ dataframe_split: example });
    await writePackage(staging, manifest);
    const pkg = await loadPackage(staging);
    expect(pkg.manifest.metadata).toEqual(manifest.metadata);
    expect((await readdir(staging)).sort()).toEqual(["input_example.json", "mlship.yaml", "sparkml"]);
    // Hadoop's .crc side files stay behind; the metadata and Parquet data come along.
    const copied = await readdir(path.join(staging, "sparkml", "data"));
    expect(copied.some((f) => f.endsWith(".parquet"))).toBe(true);
    expect(copied.some((f) => f.endsWith(".crc"))).toBe(false);
  });

  it("importModel takes the MLflow folder (or its MLmodel file) to a complete sparkml package", async () => {
    const dir = await writeSparkMlflowModel({
      signatureInputs: '[{"type": "sparkml_vector", "name": "features", "required": true}]',
      example: { body: { columns: ["features"], data: [[FEATURES]] },
        info: "{artifact_path: input_example.json, type: dataframe, pandas_orient: split}" },
    });
    for (const source of [dir, path.join(dir, "MLmodel")]) {
      const staging = await tempDir("mlflow-spark-staging-");
      const pkg = await importModel(source, { stagingDir: staging, description: "churn model", tags: { stage: "test" } });
      expect(pkg.manifest.flavor).toBe("sparkml");
      expect(pkg.manifest.files.model).toBe("sparkml");
      expect(pkg.manifest.signature.inputs).toEqual([{ name: "features", dtype: "float64", shape: [-1, 692] }]);
      expect(pkg.manifest.metadata.source_run?.id).toBe(RUN_ID);
      expect(pkg.manifest.metadata.description).toBe("churn model");
      expect(pkg.manifest.metadata.tags).toMatchObject({ stage: "test", "mlflow.model_uuid": UUID, "mlflow.pyspark_version": "3.5.1" });
      expect(JSON.parse(await readFile(path.join(pkg.root, "input_example.json"), "utf8"))).toEqual({
        dataframe_split: { columns: ["features"], data: [[FEATURES]] },
      });
      // MLflow's environment files stay behind.
      expect((await readdir(staging)).sort()).toEqual(["input_example.json", "mlship.yaml", "sparkml"]);
    }
  });

  it("an array-of-double column is a vector column too; records examples stay records", async () => {
    const records = [{ features: FEATURES }];
    const dir = await writeSparkMlflowModel({
      signatureInputs: '[{"type": "array", "items": {"type": "double"}, "name": "features", "required": true}, ' +
        '{"type": "double", "name": "label", "required": true}]',
      example: { body: records, info: "{artifact_path: input_example.json, type: dataframe, pandas_orient: records}" },
    });
    const staging = await tempDir("mlflow-spark-staging-");
    const manifest = await importMlflowSpark(await readSpark(dir), staging);
    // `label` is in the signature (inferred from the training frame) but the pipeline does not read it.
    expect(manifest.signature.inputs.map((i) => i.name)).toEqual(["features"]);
    const saved = JSON.parse(await readFile(path.join(staging, "input_example.json"), "utf8")) as unknown;
    expect(saved).toEqual({ dataframe_records: records });
  });

  it("a signature without a column the pipeline reads is refused naming both", async () => {
    const dir = await writeSparkMlflowModel({ signatureInputs: '[{"type": "double", "name": "amount", "required": true}]' });
    const error = await catchMlship(async () => importMlflowSpark(await readSpark(dir), await tempDir("mlflow-spark-staging-")));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    expect(error.field).toBe("signature.inputs");
    expect(error.message).toBe(`${path.join(dir, "MLmodel")}: the Spark pipeline reads column "features", which the ` +
      "signature does not have (signature columns: amount) at signature.inputs");
  });

  it("a scalar column where the pipeline reads a vector is refused", async () => {
    const dir = await writeSparkMlflowModel({ signatureInputs: '[{"type": "double", "name": "features", "required": true}]' });
    const error = await catchMlship(async () => importMlflowSpark(await readSpark(dir), await tempDir("mlflow-spark-staging-")));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    expect(error.field).toBe("signature.inputs[0].type");
    expect(error.message).toContain('column "features" is a number in the signature but the Spark pipeline reads a vector');
  });

  it("a named output the model does not add is refused", async () => {
    const dir = await writeSparkMlflowModel({
      signatureInputs: '[{"type": "sparkml_vector", "name": "features", "required": true}]',
      signatureOutputs: '[{"type": "double", "name": "score", "required": true}]',
    });
    const error = await catchMlship(async () => importMlflowSpark(await readSpark(dir), await tempDir("mlflow-spark-staging-")));
    expect(error.field).toBe("signature.outputs[0].name");
    expect(error.message).toContain('output "score" is not a column the Spark model adds (it adds: rawPrediction, probability, prediction)');
  });

  it("sparkml_vector is not accepted for an onnx model's columns", async () => {
    const dir = await writeSparkMlflowModel({
      extraFlavors: "  onnx:\n    code: null\n    data: model.onnx",
      signatureInputs: '[{"type": "sparkml_vector", "name": "features", "required": true}]',
    });
    await cp(fixture("diabetes_linear", "model.onnx"), path.join(dir, "model.onnx"));
    const error = await catchMlship(() => readMlflow(dir));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_UNSUPPORTED");
    expect(error.message).toContain("column type sparkml_vector is not supported");
  });
});
