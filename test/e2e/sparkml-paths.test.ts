/**
 * A Spark ML pipeline (StringIndexer -> VectorAssembler -> multinomial LogisticRegression, written in Spark's saved
 * layout with the test writer) goes through the same paths as an ONNX model: registry, the HTTP server (MLflow
 * `dataframe_split` and CSV, V2 one input per column), batch scoring into the store and its lookups, a folder stream
 * into SQLite, and monitoring (reference profile, drift check). Expected values are computed here with Spark's math
 * (index the string, assemble, softmax of W·x + b), never with the code under test.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel } from "../../src/app.js";
import type { Mlship } from "../../src/app.js";
import { lookupPredictions, scoreJob } from "../../src/batch/index.js";
import { defaultConfig } from "../../src/config/index.js";
import { silentLogger } from "../../src/core/index.js";
import { checkDataset, LiveMonitor, MonitorStore, profileReference } from "../../src/monitor/index.js";
import { buildServer } from "../../src/serve/index.js";
import { parseStreamConfig } from "../../src/stream/config.js";
import { startStream } from "../../src/stream/engine.js";
import { MATRIX, matrixDense, VECTOR, vectorDense, writeSparkPipeline } from "../helpers/sparkml-writer.js";

const MODEL = "spark-fruit";
const TOLERANCE = 1e-9;
/** StringIndexer's labels (frequencyDesc order as Spark saved them): index = position, unseen = labels.length (keep). */
const LABELS = ["apple", "pear", "plum"];
/** W[k][j] for the features [colour_idx, size, weight], and b[k], of 3 classes. */
const WEIGHTS = [
  [0.8, -0.6, 0.0],
  [-0.4, 0.9, -0.02],
  [-0.3, -0.2, 0.12],
];
const INTERCEPTS = [0.1, -0.5, 0.35];

interface Row {
  id: string;
  colour: string;
  size: number;
  weight: number;
}

interface Expected {
  raw: number[];
  probability: number[];
  prediction: number;
}

/** Spark's transform of one row, step by step (sparkml-format.md §3, §4.1). */
function sparkPredict(row: Row): Expected {
  const index = LABELS.includes(row.colour) ? LABELS.indexOf(row.colour) : LABELS.length;
  const features = [index, row.size, row.weight];
  const raw = WEIGHTS.map((w, k) => w.reduce((sum, weight, j) => sum + weight * (features[j] as number), INTERCEPTS[k] as number));
  const max = Math.max(...raw);
  const exps = raw.map((m) => Math.exp(m - max));
  const total = exps.reduce((a, b) => a + b, 0);
  const probability = exps.map((e) => e / total);
  let prediction = 0;
  probability.forEach((p, k) => {
    if (p > (probability[prediction] as number)) prediction = k;
  });
  return { raw, probability, prediction };
}

/** Deterministic pseudo-random numbers (mulberry32), so a failure reproduces. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Rows with every colour (and an unseen one), sizes and weights spread so that all three classes occur. */
function makeRows(count: number, seed: number, prefix: string, shift = { size: 0, colours: ["apple", "pear", "plum", "kiwi"] }): Row[] {
  const next = random(seed);
  return Array.from({ length: count }, (_, i) => ({
    id: `${prefix}${i}`,
    colour: shift.colours[Math.floor(next() * shift.colours.length)] as string,
    // Two decimals, so the CSV text is the exact number.
    size: Math.round((next() * 6 - 3 + shift.size) * 100) / 100,
    weight: Math.round((next() * 40 - 20) * 100) / 100,
  }));
}

function csvOf(rows: readonly Row[], withId = true): string {
  const header = withId ? "id,colour,size,weight" : "colour,size,weight";
  return `${header}\n${rows.map((r) => (withId ? `${r.id},` : "") + `${r.colour},${r.size},${r.weight}`).join("\n")}\n`;
}

function expectClose(actual: unknown, expected: readonly number[], what: string): void {
  expect(Array.isArray(actual), `${what}: ${JSON.stringify(actual)}`).toBe(true);
  const values = actual as number[];
  expect(values, what).toHaveLength(expected.length);
  values.forEach((value, i) => expect(Math.abs(value - (expected[i] as number)), `${what}[${i}]`).toBeLessThanOrEqual(TOLERANCE));
}

/** Checks MLflow records-orientation predictions (one object per row) against Spark's math. */
function expectPredictions(predictions: unknown, rows: readonly Row[], what: string): void {
  expect(Array.isArray(predictions), what).toBe(true);
  const records = predictions as Array<Record<string, unknown>>;
  expect(records, what).toHaveLength(rows.length);
  rows.forEach((row, i) => {
    const want = sparkPredict(row);
    const got = records[i] as Record<string, unknown>;
    expectClose(got.rawPrediction, want.raw, `${what} ${row.id} rawPrediction`);
    expectClose(got.probability, want.probability, `${what} ${row.id} probability`);
    expect(got.prediction, `${what} ${row.id} prediction`).toBe(want.prediction);
  });
}

let home: string;
let app: Mlship;
let server: FastifyInstance;
/** 40 rows covering the three classes and the unseen colour. */
const ROWS = makeRows(40, 3, "r");

beforeAll(async () => {
  home = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-sparkml-paths-"));
  app = await createMlship(defaultConfig({ home, "runtime.workers": 2 }), { logger: silentLogger() });
  const dir = path.join(home, "fruit_pipeline");
  await writeSparkPipeline(dir, [
    {
      className: "org.apache.spark.ml.feature.StringIndexerModel",
      paramMap: { inputCol: "colour", outputCol: "colour_idx", handleInvalid: "keep" },
      defaultParamMap: { stringOrderType: "frequencyDesc" },
      data: { schema: [{ name: "labelsArray", type: { array: { array: "string" } } }], rows: [{ labelsArray: [LABELS] }] },
    },
    {
      className: "org.apache.spark.ml.feature.VectorAssembler",
      paramMap: { inputCols: ["colour_idx", "size", "weight"], outputCol: "features" },
      defaultParamMap: { handleInvalid: "error" },
    },
    {
      className: "org.apache.spark.ml.classification.LogisticRegressionModel",
      paramMap: { family: "multinomial" },
      defaultParamMap: { featuresCol: "features", predictionCol: "prediction", probabilityCol: "probability", rawPredictionCol: "rawPrediction" },
      data: {
        schema: [
          { name: "numClasses", type: "int" },
          { name: "numFeatures", type: "int" },
          { name: "interceptVector", type: VECTOR },
          { name: "coefficientMatrix", type: MATRIX },
          { name: "isMultinomial", type: "boolean" },
        ],
        // Row-major values with isTransposed (Spark's CSR-like dense layout), W as written above.
        rows: [{ numClasses: 3, numFeatures: 3, interceptVector: vectorDense(INTERCEPTS), coefficientMatrix: matrixDense(3, 3, WEIGHTS.flat(), true), isMultinomial: true }],
      },
    },
  ]);
  await registerModel(app, dir, { name: MODEL, alias: "production" });
  server = buildServer({ scoring: app.scoring, registry: app.registry, logger: false, metrics: false });
}, 60_000);

afterAll(async () => {
  await server?.close();
  await app?.close();
  fs.rmSync(home, { recursive: true, force: true });
});

describe("a Spark ML pipeline on mlship's paths", { timeout: 60_000 }, () => {
  it("registers with a signature derived from the pipeline's input columns, and the test data covers every class", async () => {
    const version = (await app.scoring.resolve(`${MODEL}@production`)).version;
    expect(version.manifest.flavor).toBe("sparkml");
    expect(version.manifest.signature.inputs).toEqual([
      { name: "colour", dtype: "string", shape: [-1] },
      { name: "size", dtype: "float64", shape: [-1] },
      { name: "weight", dtype: "float64", shape: [-1] },
    ]);
    expect(version.manifest.signature.outputs.map((o) => o.name)).toEqual(["rawPrediction", "probability", "prediction"]);
    expect(new Set(ROWS.map((r) => sparkPredict(r).prediction))).toEqual(new Set([0, 1, 2]));
    expect(ROWS.some((r) => r.colour === "kiwi")).toBe(true);
  });

  it("serves: MLflow dataframe_split and CSV on /v1/models/{name}/invocations, V2 one input per column", async () => {
    const split = await server.inject({
      method: "POST",
      url: `/v1/models/${MODEL}/invocations`,
      payload: { dataframe_split: { columns: ["weight", "colour", "size"], data: ROWS.map((r) => [r.weight, r.colour, r.size]) } },
    });
    expect(split.statusCode, split.body).toBe(200);
    expectPredictions((split.json() as { predictions: unknown }).predictions, ROWS, "dataframe_split");

    const csv = await server.inject({ method: "POST", url: `/v1/models/${MODEL}/invocations`, headers: { "content-type": "text/csv" }, payload: csvOf(ROWS, false) });
    expect(csv.statusCode, csv.body).toBe(200);
    expectPredictions((csv.json() as { predictions: unknown }).predictions, ROWS, "csv");

    const v2 = await server.inject({
      method: "POST",
      url: `/v2/models/${MODEL}/infer`,
      payload: {
        inputs: [
          { name: "colour", datatype: "BYTES", shape: [ROWS.length], data: ROWS.map((r) => r.colour) },
          { name: "size", datatype: "FP64", shape: [ROWS.length], data: ROWS.map((r) => r.size) },
          { name: "weight", datatype: "FP64", shape: [ROWS.length], data: ROWS.map((r) => r.weight) },
        ],
      },
    });
    expect(v2.statusCode, v2.body).toBe(200);
    const outputs = new Map((v2.json() as { outputs: Array<{ name: string; datatype: string; shape: number[]; data: number[] }> }).outputs.map((o) => [o.name, o]));
    expect(outputs.get("probability")?.shape).toEqual([ROWS.length, 3]);
    expect(outputs.get("prediction")?.shape).toEqual([ROWS.length]);
    expectClose(outputs.get("rawPrediction")?.data, ROWS.flatMap((r) => sparkPredict(r).raw), "v2 rawPrediction");
    expectClose(outputs.get("probability")?.data, ROWS.flatMap((r) => sparkPredict(r).probability), "v2 probability");
    expect(outputs.get("prediction")?.data).toEqual(ROWS.map((r) => sparkPredict(r).prediction));

    // A column the pipeline reads is missing: refused naming it.
    const missing = await server.inject({ method: "POST", url: `/v1/models/${MODEL}/invocations`, payload: { dataframe_split: { columns: ["colour", "size"], data: [["apple", 1]] } } });
    expect(missing.statusCode).toBe(400);
    expect(missing.body).toContain("weight");
  });

  it("batch: scoreJob over a CSV with an id column into the store, read back through the lookups", async () => {
    const rows = makeRows(600, 5, "b");
    const input = path.join(home, "batch.csv");
    fs.writeFileSync(input, csvOf(rows));
    const run = await scoreJob(app, { ref: `${MODEL}@production`, input, idColumn: "id", chunkRows: 250 });
    expect(run).toMatchObject({ status: "succeeded", model: MODEL, version: 1, rowsIn: 600, rowsOut: 600, rowsRejected: 0 });
    const found = await lookupPredictions(app.store, { model: MODEL, ids: rows.map((r) => r.id), maxAgeMs: 60_000 });
    expect(found.size).toBe(rows.length);
    expectPredictions(rows.map((r) => found.get(r.id)?.outputs), rows, "batch");
    expect(found.get("b0")).toMatchObject({ model: MODEL, model_version: 1, run_id: run.id, stale: false });
  });

  it("stream: CSV files in a folder (availableNow) into SQLite, with the schema listed or taken from the model", async () => {
    const dir = path.join(home, "stream");
    const incoming = path.join(dir, "in");
    fs.mkdirSync(incoming, { recursive: true });
    const first = makeRows(30, 7, "s");
    const second = makeRows(25, 8, "t");
    fs.writeFileSync(path.join(incoming, "a.csv"), csvOf(first));
    fs.writeFileSync(path.join(incoming, "b.csv"), csvOf(second));
    const streamed = [...first, ...second];
    const deps = { scoring: app.scoring, store: app.store, logger: app.logger };
    const run = async (name: string, schema: Record<string, unknown>): Promise<Array<Record<string, unknown>>> => {
      const config = parseStreamConfig(
        {
          name,
          model: `${MODEL}@production`,
          source: { kind: "folder", path: "in", maxFilesPerTrigger: 1 },
          schema,
          trigger: "availableNow",
          sinks: [{ kind: "sqlite", path: `${name}.sqlite`, table: "predictions" }],
          deadLetter: { kind: "jsonl", path: `${name}-dead` },
          checkpoint: `${name}-checkpoint`,
        },
        { baseDir: dir, home },
      );
      const summary = await startStream(deps, config).done;
      expect(summary, name).toMatchObject({ reason: "completed", batches: 2, inputRows: streamed.length, outputRows: streamed.length, deadLetters: 0, error: null });
      const db = new Database(path.join(dir, `${name}.sqlite`), { readonly: true });
      try {
        return db.prepare("select * from predictions").all() as Array<Record<string, unknown>>;
      } finally {
        db.close();
      }
    };
    const check = (written: Array<Record<string, unknown>>, what: string): void => {
      const byKey = new Map(written.map((r) => [r.key, r]));
      expect(byKey.size, what).toBe(streamed.length);
      const records = streamed.map((r) => {
        const row = byKey.get(r.id) as Record<string, unknown>;
        expect(row, `${what} ${r.id}`).toBeDefined();
        expect(row.model).toBe(MODEL);
        expect(row.version).toBe(1);
        // Vector outputs are stored as JSON text; the prediction as a number.
        return { rawPrediction: JSON.parse(row.rawPrediction as string) as unknown, probability: JSON.parse(row.probability as string) as unknown, prediction: row.prediction };
      });
      expectPredictions(records, streamed, what);
    };
    check(await run("listed", { fields: { id: "string", colour: "string", size: "double", weight: "double" }, key: "id" }), "stream (fields listed)");
    // fromModel: the fields come from the model's input columns (with their types: colour stays a string).
    check(await run("from-model", { fields: { id: "string" }, key: "id", fromModel: true }), "stream (fromModel)");
  });

  it("monitoring: a reference profile from a CSV, then a drift check against a shifted CSV", async () => {
    const deps = { scoring: app.scoring, store: new MonitorStore(app.store) };
    const resolved = await app.scoring.resolve(`${MODEL}@production`);
    const referenceFile = path.join(home, "reference.csv");
    fs.writeFileSync(referenceFile, csvOf(makeRows(400, 11, "ref")));
    // A file without one of the pipeline's input columns is refused, naming it.
    const lacking = path.join(home, "lacking.csv");
    fs.writeFileSync(lacking, "id,colour,size\nx,apple,1.5\n");
    const refused = await profileReference(deps, resolved, lacking).catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: "MLSHIP_ERR_INPUT_MISSING", field: "weight" });
    expect((refused as Error).message).toContain("'weight'");
    const reference = await profileReference(deps, resolved, referenceFile);
    // The features are the model's input columns (the id column is not one), with their kinds.
    expect(reference.features.columns.map((c) => [c.name, c.kind])).toEqual([["colour", "categorical"], ["size", "numeric"], ["weight", "numeric"]]);
    expect(reference.predictions?.columns.map((c) => c.name)).toEqual([
      "rawPrediction[0]", "rawPrediction[1]", "rawPrediction[2]", "probability[0]", "probability[1]", "probability[2]", "prediction",
    ]);
    const predicted = reference.predictions?.columns.find((c) => c.name === "probability[1]");
    expect(predicted?.kind).toBe("numeric");

    // Same distribution, other rows: nothing drifts.
    const sameFile = path.join(home, "same.csv");
    fs.writeFileSync(sameFile, csvOf(makeRows(400, 12, "same")));
    const same = await checkDataset(deps, resolved, sameFile);
    expect(same.drift.features.filter((f) => f.drifted).map((f) => f.feature)).toEqual([]);
    expect(same.predictionDriftSkipped).toBeUndefined();
    expect(same.predictionDrift?.drifted).toBe(false);

    // Sizes shifted up and no more plums or kiwis: size and colour drift, weight does not, and the predictions move.
    const shiftedFile = path.join(home, "shifted.csv");
    fs.writeFileSync(shiftedFile, csvOf(makeRows(400, 13, "shift", { size: 2, colours: ["apple", "pear"] })));
    const shifted = await checkDataset(deps, resolved, shiftedFile);
    expect(shifted.drift.features.filter((f) => f.drifted).map((f) => f.feature).sort()).toEqual(["colour", "size"]);
    expect(shifted.predictionDriftSkipped).toBeUndefined();
    expect(shifted.predictionDrift?.features.filter((f) => f.drifted).map((f) => f.feature)).toContain("prediction");
    expect(shifted.passed).toBe(false);

    // Live monitoring while serving: each input column of a request is profiled under its name, as in the file.
    const hour = 3_600_000;
    const start = Date.parse("2026-12-01T10:00:00Z");
    let clock = start + 60_000;
    const live = new LiveMonitor({ scoring: app.scoring, store: deps.store, logger: silentLogger(), sizes: ["1h"], minRows: 30, now: () => new Date(clock), timer: false });
    live.start();
    try {
      const served = makeRows(400, 13, "live", { size: 2, colours: ["apple", "pear"] });
      for (let i = 0; i < served.length; i += 50) {
        const slice = served.slice(i, i + 50);
        await app.scoring.score(`${MODEL}@production`, {
          kind: "mlflow",
          body: { dataframe_split: { columns: ["colour", "size", "weight"], data: slice.map((r) => [r.colour, r.size, r.weight]) } },
        });
      }
      clock = start + hour + 60_000;
      const flushed = await live.flush(new Date(start + hour));
      expect(flushed.errors).toBe(0);
      const window = flushed.windows[0]?.window;
      expect(window?.rows).toBe(served.length);
      expect(window?.features.columns.map((c) => [c.name, c.count])).toEqual([["colour", 400], ["size", 400], ["weight", 400]]);
      // The same rows as shifted.csv: the window's tests agree with the file's.
      expect(window?.drift?.features.filter((f) => f.drifted).map((f) => f.feature).sort()).toEqual(["colour", "size"]);
      for (const fileFeature of shifted.drift.features) {
        expect(window?.drift?.features.find((f) => f.feature === fileFeature.feature)?.statistic, fileFeature.feature).toBeCloseTo(fileFeature.statistic, 12);
      }
    } finally {
      await live.close();
    }
  });
});
