import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll } from "vitest";
import { MlshipError } from "../../src/core/index.js";

export const FIXTURES = fileURLToPath(new URL("../../../shared/fixtures/", import.meta.url));
export const REPO = fileURLToPath(new URL("../../", import.meta.url));
export const FIXTURE_NAMES = ["breast_cancer_mlp", "digits_cnn", "diabetes_linear"] as const;
export type FixtureName = (typeof FIXTURE_NAMES)[number];

export function fixture(name: FixtureName, file = ""): string {
  return path.join(FIXTURES, name, file);
}

const made: string[] = [];
afterAll(async () => {
  await Promise.all(made.map((d) => rm(d, { recursive: true, force: true })));
});

/** A fresh folder under os.tmpdir(), removed after the test file. */
export async function tempDir(prefix = "mlship-package-"): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export interface Expected {
  inputs: number[][];
  input_shape: number[];
  outputs: Record<string, number[][] | number[]>;
  tolerance: Record<string, number | string>;
}

export async function readExpected(name: FixtureName): Promise<Expected> {
  return JSON.parse(await readFile(fixture(name, "expected.json"), "utf8")) as Expected;
}

export async function readCsv(file: string): Promise<{ header: string[]; rows: number[][] }> {
  const lines = (await readFile(file, "utf8")).split("\n").filter((l) => l.length > 0);
  const header = (lines[0] as string).split(",");
  return { header, rows: lines.slice(1).map((l) => l.split(",").map(Number)) };
}

/** Runs `fn` and returns the MlshipError it throws (fails the test if it throws nothing or something else). */
export async function catchMlship(fn: () => Promise<unknown> | unknown): Promise<MlshipError> {
  try {
    await fn();
  } catch (error) {
    if (error instanceof MlshipError) return error;
    throw new Error(`expected an MlshipError, got ${String(error)}`, { cause: error });
  }
  throw new Error("expected an MlshipError, nothing was thrown");
}

/**
 * Writes an MLflow model folder the way `mlflow.onnx.save_model(onnx_model, path, signature=..., input_example=...)`
 * (MLflow 2.14) lays it out: MLmodel, model.onnx, conda.yaml, python_env.yaml, requirements.txt and the example.
 */
export async function writeMlflowModel(dir: string, options: {
  onnx: string;
  signatureInputs?: string;
  signatureOutputs?: string;
  example?: { file: string; body: unknown; info: string };
  flavors?: string;
  metadata?: string;
}): Promise<string> {
  await mkdir(dir, { recursive: true });
  await copyFile(options.onnx, path.join(dir, "model.onnx"));
  const flavors = options.flavors ?? `flavors:
  onnx:
    code: null
    data: model.onnx
    onnx_version: 1.14.0
    providers: [CUDAExecutionProvider, CPUExecutionProvider]
  python_function:
    data: model.onnx
    env: {conda: conda.yaml, virtualenv: python_env.yaml}
    loader_module: mlflow.onnx
    python_version: 3.9.16`;
  const lines = ["artifact_path: model", flavors, "mlflow_version: 2.14.1", "model_uuid: 39ca11813cfc46b09ab83972740b80ca",
    "run_id: 8ede7df408dd42ed9fc39019ef7df309"];
  if (options.example !== undefined) lines.push(`saved_input_example_info: ${options.example.info}`);
  if (options.signatureInputs !== undefined) {
    lines.push("signature:", `  inputs: '${options.signatureInputs}'`, `  outputs: '${options.signatureOutputs ?? "[]"}'`,
      "  params: null");
  }
  if (options.metadata !== undefined) lines.push(options.metadata);
  lines.push("utc_time_created: '2024-01-01 00:00:00.000000'");
  await writeFile(path.join(dir, "MLmodel"), `${lines.join("\n")}\n`);
  await writeFile(path.join(dir, "conda.yaml"), "channels:\n- conda-forge\ndependencies:\n- python=3.9.16\n- pip\n" +
    "- pip:\n  - mlflow==2.14.1\n  - onnx==1.14.0\n  - onnxruntime==1.16.0\nname: mlflow-env\n");
  await writeFile(path.join(dir, "python_env.yaml"), "python: 3.9.16\nbuild_dependencies:\n- pip\n" +
    "dependencies:\n- -r requirements.txt\n");
  await writeFile(path.join(dir, "requirements.txt"), "mlflow==2.14.1\nonnx==1.14.0\nonnxruntime==1.16.0\n");
  if (options.example !== undefined) {
    await writeFile(path.join(dir, options.example.file), JSON.stringify(options.example.body));
  }
  return dir;
}
