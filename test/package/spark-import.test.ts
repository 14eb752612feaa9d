/**
 * Spark ML saved model folders as mlship packages: detection, the copied artifact folder (no `.crc` files), the
 * derived signature, class checks, refusal of unsupported classes, re-import of the package, and registration
 * through the registry and the CLI.
 */
import { createHash } from "node:crypto";
import { cp, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { createMlship, registerModel } from "../../src/app.js";
import { silentLogger } from "../../src/core/index.js";
import { defaultConfig } from "../../src/config/index.js";
import { detectSource, importModel, loadPackage, validateManifest, writePackage } from "../../src/package/index.js";
import { runCli } from "../cli/helpers.js";
import { writeSparkStage } from "../helpers/sparkml-writer.js";
import { catchMlship, FIXTURES, tempDir } from "./helpers.js";

const LOG_REG = path.join(FIXTURES, "sparkml", "py_log_reg");
const FOREST = path.join(FIXTURES, "sparkml", "py_rforest_cls");

/** Every file under `dir`, relative, sorted. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)))
    .sort();
}

async function sha256(file: string): Promise<string> {
  return createHash("sha256").update(await readFile(file)).digest("hex");
}

describe("detecting a Spark ML saved model folder", () => {
  it("recognises both fixtures by the Spark class in metadata/part-00000", async () => {
    expect(await detectSource(LOG_REG)).toEqual({ kind: "spark", path: LOG_REG });
    expect(await detectSource(FOREST)).toEqual({ kind: "spark", path: FOREST });
  });

  it("does not take a metadata folder of something else for a Spark model", async () => {
    const dir = await tempDir();
    await writeSparkStage(dir, { className: "com.example.NotSpark", paramMap: {} });
    const error = await catchMlship(() => detectSource(dir));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_UNSUPPORTED");
  });
});

describe("importing a Spark ML model", () => {
  it("copies the folder without .crc files and derives the signature from the model", async () => {
    const staging = path.join(await tempDir(), "staging");
    const pkg = await importModel(LOG_REG, { stagingDir: staging });
    const manifest = pkg.manifest;
    expect(manifest.flavor).toBe("sparkml");
    expect(manifest.files).toEqual({ model: "py_log_reg" });
    expect(manifest.signature.inputs).toEqual([{ name: "features", dtype: "float64", shape: [-1, 692] }]);
    expect(manifest.signature.outputs.map((spec) => spec.name)).toEqual(["rawPrediction", "probability", "prediction"]);
    expect(manifest.metadata).toMatchObject({
      framework: "spark",
      params: { spark_class: "org.apache.spark.ml.classification.LogisticRegressionModel", spark_version: "2.3.0", spark_uid: "LogisticRegression_4e3fbe1b6c7b7678aa1a" },
    });
    const source = (await filesUnder(LOG_REG)).filter((file) => !path.basename(file).endsWith(".crc"));
    expect(source.length).toBeLessThan((await filesUnder(LOG_REG)).length);
    const copied = await filesUnder(path.join(pkg.root, "py_log_reg"));
    expect(copied).toEqual(source);
    for (const file of copied) expect(await sha256(path.join(pkg.root, "py_log_reg", file))).toBe(await sha256(path.join(LOG_REG, file)));
    // The package reloads and re-imports (the mlship-package path checks the folder against the signature).
    expect((await loadPackage(pkg.root)).manifest).toEqual(manifest);
    const again = await importModel(pkg.root, { stagingDir: path.join(await tempDir(), "again") });
    expect(again.manifest.signature).toEqual(manifest.signature);
    expect(await filesUnder(path.join(again.root, "py_log_reg"))).toEqual(source);
  });

  it("checks the class when one is asked for", async () => {
    const ok = await importModel(FOREST, { stagingDir: path.join(await tempDir(), "s"), sparkClass: "RandomForestClassificationModel" });
    expect(ok.manifest.signature.inputs).toEqual([{ name: "indexedFeatures", dtype: "float64", shape: [-1, 692] }]);
    const staging = path.join(await tempDir(), "s");
    const error = await catchMlship(() => importModel(FOREST, { stagingDir: staging, sparkClass: "org.apache.spark.ml.classification.LogisticRegressionModel" }));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_UNSUPPORTED");
    expect(error.message).toContain("expected org.apache.spark.ml.classification.LogisticRegressionModel, found org.apache.spark.ml.classification.RandomForestClassificationModel");
    expect(await readdir(staging)).toEqual([]);
    const onnxStaging = path.join(await tempDir(), "s");
    const notSpark = await catchMlship(() =>
      importModel(path.join(FIXTURES, "breast_cancer_mlp", "model.onnx"), { stagingDir: onnxStaging, sparkClass: "LogisticRegressionModel" }),
    );
    expect(notSpark.code).toBe("MLSHIP_ERR_PACKAGE_UNSUPPORTED");
  });

  it("refuses an unsupported class, naming it, and leaves the staging folder empty", async () => {
    const dir = await tempDir();
    await writeSparkStage(dir, { className: "org.apache.spark.ml.regression.GeneralizedLinearRegressionModel", paramMap: { family: "poisson" } });
    const staging = path.join(await tempDir(), "s");
    const error = await catchMlship(() => importModel(dir, { stagingDir: staging }));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_UNSUPPORTED");
    expect(error.message).toContain("org.apache.spark.ml.regression.GeneralizedLinearRegressionModel");
    expect(await readdir(staging)).toEqual([]);
  });

  it("needs files.model of a sparkml package to be a folder", async () => {
    const root = await tempDir();
    await writeFile(path.join(root, "model"), "not a folder");
    await writePackage(root, validateManifest({
      format_version: 1,
      flavor: "sparkml",
      files: { model: "model" },
      signature: { inputs: [{ name: "features", dtype: "float64", shape: [-1, 2] }], outputs: [{ name: "prediction", dtype: "float64", shape: [-1] }] },
    }));
    const error = await catchMlship(() => loadPackage(root));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    expect(error.message).toContain("is not a folder");
  });
});

describe("an MLflow model saved with the spark flavor", () => {
  it("imports through importModel as a sparkml package (the Spark folder under model_data)", async () => {
    const dir = path.join(await tempDir(), "mlflow-model");
    await cp(LOG_REG, path.join(dir, "sparkml"), { recursive: true });
    await writeFile(path.join(dir, "MLmodel"), [
      "artifact_path: model",
      "flavors:",
      "  python_function:",
      "    data: sparkml",
      "    loader_module: mlflow.spark",
      "  spark:",
      "    model_data: sparkml",
      "    pyspark_version: 3.5.1",
      "run_id: 0c9d6a0b1e2f4a5b8c7d6e5f4a3b2c1d",
      "",
    ].join("\n"));
    const pkg = await importModel(dir, { stagingDir: path.join(await tempDir(), "s") });
    expect(pkg.manifest.flavor).toBe("sparkml");
    expect(pkg.manifest.signature.inputs).toEqual([{ name: "features", dtype: "float64", shape: [-1, 692] }]);
    expect(await filesUnder(path.join(pkg.root, pkg.manifest.files.model))).toContain("metadata/part-00000");
  });
});

describe("registering Spark ML models", () => {
  it("stores the model folder (without .crc files) in the registry's package", async () => {
    const home = await tempDir();
    const app = await createMlship(defaultConfig({ home, "runtime.workers": 1 }), { logger: silentLogger() });
    try {
      const first = await registerModel(app, FOREST, { name: "forest" });
      const second = await registerModel(app, FOREST, { name: "forest" });
      expect(second.version).toBe(first.version + 1);
      expect(first.manifest.flavor).toBe("sparkml");
      const resolved = await app.registry.resolve("forest");
      const stored = await filesUnder(path.join(resolved.packageDir, "py_rforest_cls"));
      expect(stored.filter((file) => file.startsWith("data/") && file.endsWith(".parquet"))).toHaveLength(4);
      expect(stored.some((file) => file.endsWith(".crc"))).toBe(false);
    } finally {
      await app.close();
    }
  });

  it("works from the CLI: mlship models register DIR --name N", async () => {
    const home = await tempDir();
    const env = { MLSHIP_HOME: home, MLSHIP_USER: "tester", MLSHIP_WORKERS: "1" };
    const registered = await runCli(["models", "register", LOG_REG, "--name", "spark-lr"], { env, cwd: home });
    expect(registered.stderr).toBe("");
    expect(registered).toMatchObject({ code: 0, stdout: "1\n" });
    const shown = await runCli(["models", "show", "spark-lr"], { env, cwd: home });
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain("sparkml");
    const wrongClass = await runCli(["models", "register", LOG_REG, "--name", "spark-lr", "--class", "RandomForestClassificationModel"], { env, cwd: home });
    expect(wrongClass.code).toBe(1);
    expect(wrongClass.stderr).toContain("RandomForestClassificationModel");
    expect(wrongClass.stderr).toContain("LogisticRegressionModel");
    const rightClass = await runCli(["models", "register", LOG_REG, "--name", "spark-lr", "--class", "LogisticRegressionModel"], { env, cwd: home });
    expect(rightClass).toMatchObject({ code: 0, stdout: "2\n" });
  });
});
