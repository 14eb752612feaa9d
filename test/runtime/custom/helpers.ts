import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import YAML from "yaml";
import { loadPackage } from "../../../src/package/index.js";
import type { Manifest, TensorSpec } from "../../../src/package/index.js";
import type { LoadSpec } from "../../../src/runtime/index.js";

export const WRAPPERS = fileURLToPath(new URL("./wrappers/", import.meta.url));
export const FIXTURES = fileURLToPath(new URL("../../../../shared/fixtures/", import.meta.url));

export interface PackageOptions {
  /** A file in ./wrappers (copied as build/wrapper.mjs, as `mlship package build` would write it). */
  wrapper: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /** Extra files: key -> absolute source path (copied into the package). */
  files?: Record<string, string>;
  custom?: Record<string, unknown>;
}

/** A custom model package in a new temp folder (removed by `cleanup`). */
export async function makePackage(options: PackageOptions): Promise<{ dir: string; manifest: Manifest; cleanup(): void }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "mlship-custom-pkg-"));
  mkdirSync(path.join(dir, "build"));
  copyFileSync(path.join(WRAPPERS, options.wrapper), path.join(dir, "build", "wrapper.mjs"));
  const files: Record<string, string> = { model: "build/wrapper.mjs" };
  for (const [key, src] of Object.entries(options.files ?? {})) {
    const rel = path.basename(src);
    copyFileSync(src, path.join(dir, rel));
    files[key] = rel;
  }
  const manifest = {
    format_version: 1,
    flavor: "custom",
    files,
    signature: { inputs: options.inputs, outputs: options.outputs },
    metadata: { framework: "custom" },
    custom: { entry: "src/wrapper.ts", ...(options.custom ?? {}) },
  };
  writeFileSync(path.join(dir, "mlship.yaml"), YAML.stringify(manifest));
  const pkg = await loadPackage(dir);
  return { dir, manifest: pkg.manifest, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function loadSpecOf(dir: string, manifest: Manifest, name = "wrapped", version = 1): LoadSpec {
  return {
    key: `${name}@${version}#test`,
    modelPath: path.join(dir, manifest.files.model),
    package: { root: dir, manifest, name, version },
  };
}

/** A scalar float64 input x -> output y, the shape most fixtures use. */
export const X_TO_Y = {
  inputs: [{ name: "x", dtype: "float64", shape: [-1] }] as TensorSpec[],
  outputs: [{ name: "y", dtype: "float64", shape: [-1] }] as TensorSpec[],
};

export function xs(...values: number[]): { x: { dtype: "float64"; shape: number[]; data: Float64Array } } {
  return { x: { dtype: "float64", shape: [values.length], data: Float64Array.from(values) } };
}
