import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Tensor } from "../../src/core/index.js";
import { writeOnnxModel } from "../helpers/onnx-builder.js";
import type { ModelSpec } from "../helpers/onnx-builder.js";

export const FIXTURES = fileURLToPath(new URL("../../../shared/fixtures/", import.meta.url));

export interface Expected {
  input_name: string;
  input_shape: number[];
  inputs: number[][];
  outputs: Record<string, Array<number | number[]>>;
  tolerance: Record<string, unknown>;
}

export function readExpected(fixture: string): Expected {
  return JSON.parse(readFileSync(path.join(FIXTURES, fixture, "expected.json"), "utf8")) as Expected;
}

export function modelPath(fixture: string): string {
  return path.join(FIXTURES, fixture, "model.onnx");
}

/** Rows [from, to) of expected.inputs as one float32 tensor shaped like input_shape with that many rows. */
export function inputRows(expected: Expected, from = 0, to = expected.inputs.length): Tensor {
  const rows = expected.inputs.slice(from, to);
  const data = Float32Array.from(rows.flat());
  return { dtype: "float32", shape: [rows.length, ...expected.input_shape.slice(1)], data };
}

/** A temp folder removed by the returned cleanup function. */
export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), "mlship-runtime-"));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function writeModel(dir: string, name: string, spec: ModelSpec): string {
  return writeOnnxModel(path.join(dir, `${name}.onnx`), spec);
}

export function f32(values: number[], shape: number[]): Tensor {
  return { dtype: "float32", shape, data: Float32Array.from(values) };
}
