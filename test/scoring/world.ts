/**
 * A real mlship stack for scoring/serving tests: SQLite registry in a temp MLSHIP_HOME, the ONNX runtime with two
 * workers, and packages imported from the shared fixtures.
 */
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { importModel, writePackage } from "../../src/package/index.js";
import type { ImageStep, Manifest, PostprocessStep } from "../../src/package/index.js";
import { openRegistry } from "../../src/registry/index.js";
import type { Registry } from "../../src/registry/index.js";
import { createOnnxRuntime } from "../../src/runtime/index.js";
import type { OnnxRuntime } from "../../src/runtime/index.js";
import { createScoringService } from "../../src/scoring/index.js";
import { writeOnnxModel } from "../helpers/onnx-builder.js";
import { MODELS, type ModelName } from "../runtime/models.js";
import type { ScoringService, ScoringServiceOptions } from "../../src/scoring/index.js";

export const FIXTURES = fileURLToPath(new URL("../../../shared/fixtures/", import.meta.url));

export type FixtureName = "breast_cancer_mlp" | "digits_cnn" | "diabetes_linear";

export interface Expected {
  input_shape: number[];
  inputs: number[][];
  outputs: Record<string, unknown[]>;
  tolerance: Record<string, number | string>;
}

export async function readExpected(fixture: FixtureName): Promise<Expected> {
  return JSON.parse(await readFile(path.join(FIXTURES, fixture, "expected.json"), "utf8")) as Expected;
}

/** Header and rows of a fixture CSV (all values as text). */
export async function readCsv(fixture: FixtureName, file = "prod.csv"): Promise<{ header: string[]; rows: string[][]; text: string }> {
  const text = await readFile(path.join(FIXTURES, fixture, file), "utf8");
  const lines = text.split("\n").filter((l) => l !== "");
  return { header: (lines[0] as string).split(","), rows: lines.slice(1).map((l) => l.split(",")), text };
}

/** The first `n` rows of prod.csv as a CSV body without the label column. */
export async function csvBody(fixture: FixtureName, n: number): Promise<{ columns: string[]; text: string }> {
  const { header, rows } = await readCsv(fixture);
  const label = header.length - 1;
  const columns = header.slice(0, label);
  const lines = [columns.join(","), ...rows.slice(0, n).map((r) => r.slice(0, label).join(","))];
  return { columns, text: `${lines.join("\n")}\n` };
}

export const DIGITS_IMAGE_STEP: ImageStep = {
  type: "image",
  input: "image",
  target: "input",
  width: 8,
  height: 8,
  channels: 1,
  resize: "area",
  scale: 1 / 255,
  layout: "NCHW",
};

export interface RegisterOptions {
  /** Declare the columns from prod.csv's header (minus the label). */
  columns?: boolean;
  labelColumn?: string;
  image?: ImageStep;
  postprocess?: PostprocessStep[];
  /** Edit the manifest before registration. */
  edit?: (m: Manifest) => Manifest;
}

export interface World {
  home: string;
  registry: Registry;
  runtime: OnnxRuntime;
  scoring: ScoringService;
  /** Imports a fixture (or an .onnx path) and registers it; returns the version number. */
  register(name: string, source: FixtureName | string, options?: RegisterOptions): Promise<number>;
  /** Writes one of the runtime tests' small ONNX graphs into the temp home and registers it under `name`. */
  registerGraph(name: string, graph: ModelName, options?: RegisterOptions): Promise<number>;
  /** A second registry connection on the same SQLite file (another process would see the same). */
  openSecondRegistry(): Promise<Registry>;
  close(): Promise<void>;
}

let staged = 0;

export async function createWorld(options: Partial<ScoringServiceOptions> & { workers?: number } = {}): Promise<World> {
  const home = await mkdtemp(path.join(os.tmpdir(), "mlship-scoring-"));
  const registry = await openRegistry({ home });
  const runtime = createOnnxRuntime({ workers: options.workers ?? 2 });
  const scoring = createScoringService({ registry, runtimes: { onnx: runtime }, ...options });
  const others: Registry[] = [];
  const world: World = {
    home,
    registry,
    runtime,
    scoring,
    async register(name, source, opts = {}) {
      const isFixture = !source.includes("/");
      const file = isFixture ? path.join(FIXTURES, source, "model.onnx") : source;
      const stagingDir = path.join(home, "staging", `${name}-${staged++}`);
      const pkg = await importModel(file, {
        stagingDir,
        ...(opts.columns === true && isFixture
          ? { columnsFromCsv: path.join(FIXTURES, source, "prod.csv"), labelColumn: opts.labelColumn ?? "label" }
          : {}),
      });
      let manifest = pkg.manifest;
      if (opts.image !== undefined) manifest = { ...manifest, preprocess: [...manifest.preprocess, opts.image] };
      if (opts.postprocess !== undefined) manifest = { ...manifest, postprocess: opts.postprocess };
      if (opts.edit !== undefined) manifest = opts.edit(manifest);
      if (manifest !== pkg.manifest) await writePackage(stagingDir, manifest);
      const version = await registry.register({ name, packageDir: stagingDir });
      return version.version;
    },
    async registerGraph(name, graph, opts = {}) {
      const file = path.join(home, "graphs", `${graph}.onnx`);
      await mkdir(path.dirname(file), { recursive: true });
      writeOnnxModel(file, MODELS[graph]);
      return world.register(name, file, opts);
    },
    async openSecondRegistry() {
      const second = await openRegistry({ home });
      others.push(second);
      return second;
    },
    async close() {
      await scoring.close();
      await runtime.close();
      for (const o of others) await o.close();
      await registry.close();
      await rm(home, { recursive: true, force: true });
    },
  };
  return world;
}

/** Max absolute difference between two equally long number lists (nested lists are flattened). */
export function maxAbsDiff(actual: unknown, expected: unknown): number {
  const a = (Array.isArray(actual) ? actual.flat(Infinity) : [actual]) as number[];
  const e = (Array.isArray(expected) ? expected.flat(Infinity) : [expected]) as number[];
  if (a.length !== e.length) return Number.POSITIVE_INFINITY;
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs((a[i] as number) - (e[i] as number)));
  return max;
}

/** Polls `check` until it returns true or the deadline passes; returns the elapsed milliseconds. */
export async function waitFor(check: () => Promise<boolean>, deadlineMs: number, stepMs = 50): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await check()) return Date.now() - start;
    if (Date.now() - start > deadlineMs) throw new Error(`condition not met within ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
