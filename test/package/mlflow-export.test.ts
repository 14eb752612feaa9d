// `mlship models export REF --format mlflow`: an ONNX version as the MLflow model folder mlflow.onnx.save_model
// writes (sparkml-format.md section 11.2), checked key by key as MLflow's loaders read it, then re-imported with
// mlship's own MLflow importer to the same signature, example, model bytes and metadata.
import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import YAML from "yaml";
import { importModel } from "../../src/package/import.js";
import { loadPackage } from "../../src/package/manifest.js";
import { exportMlflowModel, MLFLOW_FORMAT_VERSION, onnxReleaseFor } from "../../src/package/mlflow-export.js";
import type { Manifest, ModelPackage } from "../../src/package/types.js";
import { runCli } from "../cli/helpers.js";
import { catchMlship, fixture, REPO, tempDir, writeMlflowModel } from "./helpers.js";

const BREAST = path.join(REPO, "examples", "models", "breast-cancer");
const DIGITS = path.join(REPO, "examples", "models", "digits");
const ORIGIN = { name: "breast-cancer", version: 3, digest: "ab".repeat(32), source: BREAST };

async function out(): Promise<string> {
  return path.join(await tempDir("mlflow-export-"), "mlflow-model");
}

async function readYaml(file: string): Promise<Record<string, unknown>> {
  // PyYAML reads MLmodel as YAML 1.1: parse it that way so a date-like or yes/no scalar would show up as one.
  return YAML.parse(await readFile(file, "utf8"), { version: "1.1" }) as Record<string, unknown>;
}

function json(text: unknown): unknown {
  expect(typeof text).toBe("string");
  return JSON.parse(text as string) as unknown;
}

describe("exporting an ONNX package as an MLflow model folder", () => {
  it("writes MLmodel with the onnx and python_function flavors exactly as mlflow.onnx.save_model does", async () => {
    const pkg = await loadPackage(BREAST);
    const dir = await out();
    const now = new Date("2026-12-01T08:09:10.123Z");
    const result = await exportMlflowModel(pkg, { outDir: dir, origin: ORIGIN, now });
    expect(result.files).toEqual(["MLmodel", "conda.yaml", "input_example.json", "model.onnx", "python_env.yaml", "requirements.txt"]);
    expect((await readdir(dir)).sort()).toEqual(result.files);
    expect(result.notes).toEqual(["postprocess step labels (label -> class) is not exported (MLflow returns the graph outputs)"]);

    const text = await readFile(path.join(dir, "MLmodel"), "utf8");
    const mlmodel = await readYaml(path.join(dir, "MLmodel"));
    // yaml.safe_dump sorts keys at every level; no artifact_path/run_id for a model that never was in a run.
    expect(Object.keys(mlmodel)).toEqual(["flavors", "metadata", "mlflow_version", "model_size_bytes", "model_uuid",
      "saved_input_example_info", "signature", "utc_time_created"]);
    const flavors = mlmodel.flavors as Record<string, Record<string, unknown>>;
    expect(Object.keys(flavors)).toEqual(["onnx", "python_function"]);
    expect(flavors.onnx).toEqual({
      code: null, data: "model.onnx", onnx_session_options: null, onnx_version: "1.8.0",
      providers: ["CUDAExecutionProvider", "CPUExecutionProvider"],
    });
    expect(Object.keys(flavors.onnx as object)).toEqual(["code", "data", "onnx_session_options", "onnx_version", "providers"]);
    // What mlflow.pyfunc.load_model reads: loader_module, data (relative to the folder), env, python_version.
    expect(flavors.python_function).toEqual({
      data: "model.onnx", env: { conda: "conda.yaml", virtualenv: "python_env.yaml" }, loader_module: "mlflow.onnx",
      python_version: "3.11.9",
    });
    expect(Object.keys(flavors.python_function as object)).toEqual(["data", "env", "loader_module", "python_version"]);
    expect(mlmodel.mlflow_version).toBe(MLFLOW_FORMAT_VERSION);
    expect(mlmodel.model_uuid).toMatch(/^[0-9a-f]{32}$/);
    // PyYAML would read an unquoted date-time as a datetime object: MLflow writes and needs the quoted text. The
    // package has no created_at, so it is the export's time.
    expect(pkg.manifest.metadata.created_at).toBeUndefined();
    expect(text).toContain("utc_time_created: '2026-12-01 08:09:10.123000'\n");
    expect(mlmodel.utc_time_created).toBe("2026-12-01 08:09:10.123000");
    const sizes = (await stat(path.join(dir, "model.onnx"))).size + (await stat(path.join(dir, "input_example.json"))).size;
    expect(mlmodel.model_size_bytes).toBe(sizes);

    const signature = mlmodel.signature as Record<string, unknown>;
    expect(Object.keys(signature)).toEqual(["inputs", "outputs", "params"]);
    expect(signature.params).toBeNull();
    // Python's json.dumps separators, ColSpec.to_dict key order.
    expect((signature.inputs as string).startsWith('[{"type": "double", "name": "mean radius", "required": true}, ')).toBe(true);
    const columns = pkg.manifest.signature.columns?.map((c) => c.name) ?? [];
    expect(json(signature.inputs)).toEqual(columns.map((name) => ({ type: "double", name, required: true })));
    expect(signature.outputs).toBe('[{"name": "probabilities", "type": "tensor", "tensor-spec": {"dtype": "float32", ' +
      '"shape": [-1, 2]}}, {"name": "label", "type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]');
    expect(mlmodel.saved_input_example_info).toEqual({ artifact_path: "input_example.json", pandas_orient: "split", type: "dataframe" });
    const original = JSON.parse(await readFile(path.join(BREAST, "input_example.json"), "utf8")) as { dataframe_split: unknown };
    expect(JSON.parse(await readFile(path.join(dir, "input_example.json"), "utf8"))).toEqual(original.dataframe_split);
    expect(mlmodel.metadata).toEqual({
      "mlship.model": "breast-cancer", "mlship.version": "3", "mlship.digest": ORIGIN.digest, "mlship.source": BREAST,
      "mlship.framework": "pytorch", "mlship.description": pkg.manifest.metadata.description,
      "mlship.class_labels": ["malignant", "benign"], "mlship.metrics": pkg.manifest.metadata.metrics,
      ...(pkg.manifest.metadata.params === undefined ? {} : { "mlship.params": pkg.manifest.metadata.params }),
      ...(pkg.manifest.metadata.tags === undefined ? {} : { "mlship.tags": pkg.manifest.metadata.tags }),
      ...(pkg.manifest.metadata.training_data_fingerprint === undefined ? {}
        : { "mlship.training_data_fingerprint": pkg.manifest.metadata.training_data_fingerprint }),
    });
    expect(Buffer.compare(await readFile(path.join(dir, "model.onnx")), await readFile(path.join(BREAST, "model.onnx")))).toBe(0);

    // The environment files as mlflow.onnx.save_model writes them (safe_dump; python_env keeps its own order).
    const requirements = `mlflow>=${MLFLOW_FORMAT_VERSION}\nonnx>=1.8.0\nonnxruntime>=1.30.0`;
    expect(await readFile(path.join(dir, "requirements.txt"), "utf8")).toBe(requirements);
    expect(await readFile(path.join(dir, "conda.yaml"), "utf8")).toBe("channels:\n- conda-forge\ndependencies:\n" +
      `- python=3.11.9\n- pip\n- pip:\n  - mlflow>=${MLFLOW_FORMAT_VERSION}\n  - onnx>=1.8.0\n  - onnxruntime>=1.30.0\n` +
      "name: mlflow-env\n");
    expect(await readFile(path.join(dir, "python_env.yaml"), "utf8")).toBe("python: 3.11.9\nbuild_dependencies:\n- pip\n" +
      "- setuptools\n- wheel\ndependencies:\n- -r requirements.txt\n");
  });

  it("re-imports with mlship's MLflow importer to the same signature, example, model bytes and metadata", async () => {
    const pkg = await loadPackage(BREAST);
    const dir = await out();
    const now = new Date("2026-12-01T08:09:10.123Z");
    await exportMlflowModel(pkg, { outDir: dir, origin: ORIGIN, now });
    const staging = await tempDir("mlflow-export-staging-");
    const back = await importModel(dir, { stagingDir: staging });
    const before = pkg.manifest;
    const after = back.manifest;
    expect(after.signature.inputs).toEqual(before.signature.inputs);
    expect(after.signature.outputs).toEqual(before.signature.outputs);
    // Columns come back with the type MLflow's schema declares (what pandas sends for them).
    expect(after.signature.columns).toEqual(before.signature.columns?.map((c) => ({ name: c.name, dtype: "float64" })));
    const example = (file: string): Promise<unknown> => readFile(file, "utf8").then((t) => JSON.parse(t) as unknown);
    expect(await example(path.join(back.root, after.input_example ?? "?"))).toEqual(await example(path.join(BREAST, "input_example.json")));
    expect(Buffer.compare(await readFile(path.join(back.root, after.files.model)), await readFile(path.join(BREAST, "model.onnx")))).toBe(0);
    const mlmodel = await readYaml(path.join(dir, "MLmodel"));
    expect(after.metadata).toEqual({
      ...before.metadata,
      created_at: now.toISOString(),
      tags: {
        ...before.metadata.tags,
        "mlflow.model_uuid": mlmodel.model_uuid, "mlflow.version": MLFLOW_FORMAT_VERSION,
        "mlship.model": "breast-cancer", "mlship.version": "3", "mlship.digest": ORIGIN.digest, "mlship.source": BREAST,
      },
    });
  });

  it("an MLflow-born package keeps its run id, artifact path and model uuid through export and re-import", async () => {
    const src = await writeMlflowModel(path.join(await tempDir("mlflow-export-src-"), "model"), {
      onnx: fixture("diabetes_linear", "model.onnx"),
      signatureInputs: '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 10]}, "name": "input"}]',
      example: { file: "input_example.json", info: "{artifact_path: input_example.json, type: ndarray, format: tf-serving}",
        body: { inputs: [[37, 2, 23.6, 94, 205, 138.8, 53, 4, 4.8, 89]] } },
      metadata: "metadata:\n  owner: ml-team\n  epochs: 150",
    });
    const first = await importModel(src, { stagingDir: await tempDir("mlflow-export-staging-") });
    const dir = await out();
    const result = await exportMlflowModel(first, { outDir: dir });
    expect(result.notes).toEqual([]);
    const mlmodel = await readYaml(path.join(dir, "MLmodel"));
    expect(mlmodel.run_id).toBe("8ede7df408dd42ed9fc39019ef7df309");
    expect(mlmodel.artifact_path).toBe("model");
    expect(mlmodel.model_uuid).toBe("39ca11813cfc46b09ab83972740b80ca");
    expect(mlmodel.saved_input_example_info).toEqual({ artifact_path: "input_example.json", format: "tf-serving", type: "ndarray" });
    expect(json((mlmodel.signature as Record<string, unknown>).inputs)).toEqual([
      { name: "input", type: "tensor", "tensor-spec": { dtype: "float32", shape: [-1, 10] } },
    ]);
    const again = await importModel(dir, { stagingDir: await tempDir("mlflow-export-staging-") });
    expect(again.manifest.metadata).toEqual(first.manifest.metadata);
    expect(again.manifest.signature).toEqual(first.manifest.signature);
    const read = (p: ModelPackage): Promise<unknown> => readFile(path.join(p.root, p.manifest.input_example ?? "?"), "utf8").then((t) => JSON.parse(t) as unknown);
    expect(await read(again)).toEqual(await read(first));
  });

  it("a non-MLflow origin and the creation time travel through metadata and utc_time_created", async () => {
    const base = await loadPackage(BREAST);
    const sourceRun = { system: "wandb", id: "run-42", uri: "wandb://team/breast/run-42" };
    const pkg: ModelPackage = { ...base, manifest: { ...base.manifest,
      metadata: { ...base.manifest.metadata, source_run: sourceRun, created_at: "2025-03-04T05:06:07.089Z" } } };
    const dir = await out();
    await exportMlflowModel(pkg, { outDir: dir });
    const mlmodel = await readYaml(path.join(dir, "MLmodel"));
    expect(mlmodel.run_id).toBeUndefined();
    expect(mlmodel.utc_time_created).toBe("2025-03-04 05:06:07.089000");
    expect((mlmodel.metadata as Record<string, unknown>)["mlship.source_run"]).toEqual(sourceRun);
    const back = await importModel(dir, { stagingDir: await tempDir("mlflow-export-staging-") });
    expect(back.manifest.metadata.source_run).toEqual(sourceRun);
    expect(back.manifest.metadata.created_at).toBe("2025-03-04T05:06:07.089Z");
  });

  it("a derived version's lineage travels through MLmodel's metadata and back", async () => {
    const base = await loadPackage(BREAST);
    const lineage = {
      parent: { model: "breast-cancer", version: 1, digest: "a".repeat(64) },
      derived_by: "mlship models optimize breast-cancer@1 --quantize int8-dynamic",
      transform: { method: "int8-dynamic", per_channel: false, quantized_nodes: ["gemm_0", "gemm_1"] },
    };
    const pkg: ModelPackage = { ...base, manifest: { ...base.manifest, metadata: { ...base.manifest.metadata, lineage } } };
    const dir = await out();
    await exportMlflowModel(pkg, { outDir: dir });
    const mlmodel = await readYaml(path.join(dir, "MLmodel"));
    expect((mlmodel.metadata as Record<string, unknown>)["mlship.lineage"]).toEqual(lineage);
    const back = await importModel(dir, { stagingDir: await tempDir("mlflow-export-staging-") });
    expect(back.manifest.metadata.lineage).toEqual(lineage);
  });

  it("columns feeding an image-shaped input export as tensors, with the example rows reshaped; dropped steps noted", async () => {
    const pkg = await loadPackage(DIGITS);
    const dir = await out();
    const result = await exportMlflowModel(pkg, { outDir: dir });
    expect(result.notes).toEqual([
      "the 64 declared columns are not exported as a column signature (MLflow feeds a DataFrame to a single [-1, width] input only); the signature is the graph's tensors",
      "preprocess step image is not exported (MLflow feeds the graph directly)",
      "postprocess step labels (label -> class) is not exported (MLflow returns the graph outputs)",
    ]);
    const mlmodel = await readYaml(path.join(dir, "MLmodel"));
    expect(json((mlmodel.signature as Record<string, unknown>).inputs)).toEqual([
      { name: "input", type: "tensor", "tensor-spec": { dtype: "float32", shape: [-1, 1, 8, 8] } },
    ]);
    const original = JSON.parse(await readFile(path.join(DIGITS, "input_example.json"), "utf8")) as { dataframe_split: { columns: string[]; data: number[][] } };
    const saved = JSON.parse(await readFile(path.join(dir, "input_example.json"), "utf8")) as { inputs: number[][][][] };
    expect(saved.inputs.length).toBe(original.dataframe_split.data.length);
    const first = original.dataframe_split.data[0] as number[];
    const col = (r: number, c: number): number => first[original.dataframe_split.columns.indexOf(`pixel_${r}_${c}`)] as number;
    expect(saved.inputs[0]?.[0]?.[2]?.[5]).toBe(col(2, 5));
    expect(saved.inputs[0]?.[0]).toEqual(Array.from({ length: 8 }, (_, r) => Array.from({ length: 8 }, (_, c) => col(r, c))));
    // mlship's importer takes the tensor signature and tf-serving example back against the graph.
    const back = await importModel(dir, { stagingDir: await tempDir("mlflow-export-staging-") });
    expect(back.manifest.signature.inputs).toEqual(pkg.manifest.signature.inputs);
    expect(back.manifest.signature.columns).toBeUndefined();
  });

  it("refuses a folder that is not empty, and a sparkml package", async () => {
    const pkg = await loadPackage(BREAST);
    const dir = await out();
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, "keep.txt"), "mine");
    const busy = await catchMlship(() => exportMlflowModel(pkg, { outDir: dir }));
    expect(busy.code).toBe("MLSHIP_ERR_INPUT_INVALID");
    expect(busy.message).toBe(`${dir}: the folder is not empty; export into a new or empty folder`);
    expect(await readdir(dir)).toEqual(["keep.txt"]);

    const spark = { ...pkg, manifest: { ...pkg.manifest, flavor: "sparkml" } as unknown as Manifest };
    const refused = await catchMlship(() => exportMlflowModel(spark, { outDir: path.join(dir, "spark") }));
    expect(refused.code).toBe("MLSHIP_ERR_PACKAGE_UNSUPPORTED");
    expect(refused.message).toContain("a sparkml package cannot be exported as an MLflow onnx model");
  });

  it("refuses a package whose model file is not at its root (MLflow looks for MLmodel next to the model)", async () => {
    const root = await tempDir("mlflow-export-nested-");
    await mkdir(path.join(root, "models"));
    await writeFile(path.join(root, "models", "model.onnx"), await readFile(path.join(BREAST, "model.onnx")));
    const pkg = await loadPackage(BREAST);
    const nested: ModelPackage = { root, manifest: { ...pkg.manifest, files: { model: "models/model.onnx" } } };
    const dir = await out();
    const error = await catchMlship(() => exportMlflowModel(nested, { outDir: dir }));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_UNSUPPORTED");
    expect(error.field).toBe("files.model");
    expect(error.message).toContain("the model file is models/model.onnx; MLflow's onnx flavor needs it at the folder root");
  });

  it("onnx_version is the first onnx release that reads the model's IR version and opset", () => {
    expect(onnxReleaseFor(7, 13)).toBe("1.8.0");
    expect(onnxReleaseFor(8, 13)).toBe("1.10.0");
    expect(onnxReleaseFor(9, 19)).toBe("1.14.0");
    expect(onnxReleaseFor(10, 21)).toBe("1.16.0");
    expect(onnxReleaseFor(undefined, undefined)).toBe("1.14.0");
  });
});

describe("mlship models export (CLI)", () => {
  it("exports a registered version by alias, with --json", async () => {
    const home = await tempDir("mlflow-export-home-");
    const env = { MLSHIP_HOME: home, MLSHIP_USER: "tester", MLSHIP_WORKERS: "1" };
    const registered = await runCli(["models", "register", BREAST, "--name", "breast-cancer", "--alias", "production"], { env });
    expect(registered.stderr).toBe("");
    expect(registered.code).toBe(0);
    const target = path.join(home, "exported");
    const text = await runCli(["models", "export", "breast-cancer@production", "--format", "mlflow", "--out", "exported"], { env, cwd: home });
    expect(text.stderr).toBe("");
    expect(text.code).toBe(0);
    expect(text.stdout).toBe(`breast-cancer@1 exported to ${target} (MLflow onnx flavor: MLmodel, conda.yaml, input_example.json, ` +
      "model.onnx, python_env.yaml, requirements.txt)\nnote: postprocess step labels (label -> class) is not exported (MLflow returns the graph outputs)\n");
    const metadata = (await readYaml(path.join(target, "MLmodel"))).metadata as Record<string, unknown>;
    expect(metadata["mlship.model"]).toBe("breast-cancer");
    expect(metadata["mlship.version"]).toBe("1");
    expect(metadata["mlship.digest"]).toMatch(/^[0-9a-f]{64}$/);

    const second = path.join(home, "second");
    const asJson = await runCli(["models", "export", "breast-cancer", "--out", second, "--python-version", "3.12.4", "--json"], { env });
    expect(asJson.code).toBe(0);
    const body = JSON.parse(asJson.stdout) as { model: string; version: number; dir: string; files: string[] };
    expect(body).toMatchObject({ model: "breast-cancer", version: 1, dir: second });
    expect(((await readYaml(path.join(second, "MLmodel"))).flavors as Record<string, Record<string, unknown>>).python_function?.python_version).toBe("3.12.4");

    const wrong = await runCli(["models", "export", "breast-cancer", "--format", "onnx", "--out", path.join(home, "x")], { env });
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toContain("--format must be mlflow");
  });
});
