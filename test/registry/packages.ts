import { randomUUID } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import type { Manifest } from "../../src/package/index.js";

export const FIXTURES = fileURLToPath(new URL("../../../shared/fixtures/", import.meta.url));
export const BREAST_CANCER_ONNX = path.join(FIXTURES, "breast_cancer_mlp", "model.onnx");
export const DIABETES_ONNX = path.join(FIXTURES, "diabetes_linear", "model.onnx");

/** The breast-cancer MLP fixture's real signature (meta.json): input [batch,30] -> probabilities, label. */
export function breastCancerManifest(params: Record<string, string | number | boolean> = {}): Manifest {
  return {
    format_version: 1,
    flavor: "onnx",
    files: { model: "model.onnx" },
    signature: {
      inputs: [{ name: "input", dtype: "float32", shape: [-1, 30] }],
      outputs: [
        { name: "probabilities", dtype: "float32", shape: [-1, 2] },
        { name: "label", dtype: "int64", shape: [-1] },
      ],
    },
    preprocess: [],
    postprocess: [],
    metadata: {
      framework: "pytorch",
      params,
      metrics: { accuracy: 0.965 },
      tags: { dataset: "breast_cancer", owner: "fixtures" },
      class_labels: ["malignant", "benign"],
      description: "breast cancer MLP from the shared fixtures",
    },
  };
}

export function diabetesManifest(): Manifest {
  return {
    format_version: 1,
    flavor: "onnx",
    files: { model: "model.onnx" },
    signature: {
      inputs: [{ name: "input", dtype: "float32", shape: [-1, 10] }],
      outputs: [{ name: "prediction", dtype: "float32", shape: [-1, 1] }],
    },
    preprocess: [],
    postprocess: [],
    metadata: { framework: "sklearn", metrics: { r2: 0.457 } },
  };
}

/**
 * Writes a package folder (a copy of a real fixture model plus mlship.yaml) under os.tmpdir(). Packages made with
 * equal arguments hold byte-identical files; a different `params` value changes mlship.yaml and so the digest.
 */
export async function makePackage(
  options: { params?: Record<string, string | number | boolean>; model?: "breast_cancer" | "diabetes"; parent?: string } = {},
): Promise<string> {
  const parent = options.parent ?? os.tmpdir();
  const dir = path.join(parent, `mlship-pkg-${randomUUID()}`);
  await fs.mkdir(dir, { recursive: true });
  const diabetes = options.model === "diabetes";
  await fs.copyFile(diabetes ? DIABETES_ONNX : BREAST_CANCER_ONNX, path.join(dir, "model.onnx"));
  // copyFile keeps the fixture's read-only mode; make the copy an ordinary writable file like a user's own.
  await fs.chmod(path.join(dir, "model.onnx"), 0o644);
  const manifest = diabetes ? diabetesManifest() : breastCancerManifest(options.params ?? {});
  await fs.writeFile(path.join(dir, "mlship.yaml"), stringify(manifest));
  return dir;
}
