import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, defaultConfig, loadModel, MlshipError, registerModel, type Mlship } from "../../src/index.js";
import { expectRecordsMatch, expectValueClose, fixture, REPO, tempDir } from "../cli/helpers.js";

const bc = fixture("breast_cancer_mlp");
const diabetes = fixture("diabetes_linear");
const digits = fixture("digits_cnn");
const examples = path.join(REPO, "examples", "models");

function records(features: string[], rows: number[][]): Array<Record<string, number>> {
  return rows.map((row) => Object.fromEntries(features.map((f, i) => [f, row[i] as number])));
}

async function rejection(promise: Promise<unknown>): Promise<MlshipError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(MlshipError);
    return error as MlshipError;
  }
  throw new Error("expected a rejection");
}

describe("loadModel on a path (no registry)", () => {
  it("predicts records, {columns, data} and tensors from a package folder", async () => {
    const model = await loadModel(path.join(examples, "breast-cancer"));
    try {
      expect(model.name).toBe("breast-cancer");
      expect(model.version).toBe(1);
      expect(model.columns).toEqual(bc.features);
      expect(model.signature.inputs).toEqual([{ name: "input", dtype: "float32", shape: [-1, 30] }]);

      const fromRecords = await model.predict(records(bc.features, bc.expected.inputs));
      expectRecordsMatch(fromRecords, bc.expected);
      // Post-processing from mlship.yaml maps the label to its class name.
      expect(fromRecords[0]?.class).toBe(["malignant", "benign"][bc.expected.outputs.label?.[0] as number]);

      const fromTable = await model.predict({ columns: bc.features, data: bc.expected.inputs });
      expectRecordsMatch(fromTable, bc.expected);

      const tensors = await model.predict({
        input: { dtype: "float32", shape: [50, 30], data: Float32Array.from(bc.expected.inputs.flat()) },
      });
      expect(tensors.label?.data).toBeInstanceOf(BigInt64Array);
      expect(Array.from(tensors.label?.data as BigInt64Array, Number)).toEqual(bc.expected.outputs.label);
      expectValueClose(Array.from(tensors.probabilities?.data as Float32Array), bc.expected.outputs.probabilities, "probabilities", bc.expected);
    } finally {
      await model.close();
    }
  });

  it("loads a bare .onnx file and feeds a table by position", async () => {
    const model = await loadModel(digits.onnx, { name: "digits" });
    try {
      expect(model.name).toBe("digits");
      const result = await model.predict({ columns: digits.features, data: digits.expected.inputs });
      expectRecordsMatch(result, digits.expected);
      // Without declared columns, records (JSON key order is not a contract) are refused with advice.
      const refused = await rejection(model.predict(records(digits.features, digits.expected.inputs.slice(0, 1))));
      expect(refused.httpStatus).toBe(400);
    } finally {
      await model.close();
    }
  });

  it("reports bad paths, bad input and use after close", async () => {
    const missing = await rejection(loadModel(path.join(examples, "no-such-model")));
    expect(missing.code).toBe("MLSHIP_ERR_PACKAGE_NOT_FOUND");
    expect(missing.message).toContain("no-such-model");

    const model = await loadModel(path.join(examples, "diabetes"));
    const bad = await rejection(model.predict([{ age: 1 }]));
    expect(bad.code).toBe("MLSHIP_ERR_INPUT_MISSING");
    expect(bad.message).toContain("sex");
    await model.close();
    await model.close();
    expect((await rejection(model.predict([{ age: 1 }]))).code).toBe("MLSHIP_ERR_RUNTIME_UNAVAILABLE");
  });
});

describe("loadModel on the registry", () => {
  const home = tempDir("embedded");
  let app: Mlship;

  beforeAll(async () => {
    app = await createMlship(defaultConfig({ home, "runtime.workers": 1, "log.level": "warn" }));
    await registerModel(app, path.join(examples, "diabetes"), { name: "diabetes", alias: "production" });
    await registerModel(app, diabetes.onnx, { name: "diabetes", columns: diabetes.features });
  });
  afterAll(async () => {
    await app.close();
    fs.rmSync(home, { recursive: true, force: true });
  });

  it("resolves a reference in a given app and follows alias moves", async () => {
    const model = await loadModel("models:/diabetes@production", { app });
    try {
      expect(model.version).toBe(1);
      expectRecordsMatch(await model.predict(records(diabetes.features, diabetes.expected.inputs)), diabetes.expected);
      await app.registry.setAlias("diabetes", "production", 2);
      await app.scoring.refresh();
      const result = await model.score(records(diabetes.features, diabetes.expected.inputs.slice(0, 2)));
      expect(result.version).toBe(2);
    } finally {
      await model.close();
    }
    // The app belongs to the caller: closing the model leaves it usable.
    expect((await app.registry.listModels()).map((m) => m.name)).toEqual(["diabetes"]);
  });

  it("builds its own platform from a config (MLSHIP_HOME) and closes it", async () => {
    const model = await loadModel("diabetes@1", { config: defaultConfig({ home, "log.level": "warn" }), workers: 1 });
    try {
      expect(model.version).toBe(1);
      expectRecordsMatch(await model.predict({ columns: diabetes.features, data: diabetes.expected.inputs }), diabetes.expected);
    } finally {
      await model.close();
    }
  });

  it("logs every prediction of a reference it loads itself, with the caller's request id and key", async () => {
    const start = new Date(Date.now() - 1000).toISOString();
    const model = await loadModel("diabetes@1", { config: defaultConfig({ home, "log.level": "warn" }), workers: 1 });
    let generated: string;
    try {
      await model.predict({ columns: diabetes.features, data: diabetes.expected.inputs.slice(0, 3) }, { requestId: "order-17", key: "customer-9" });
      generated = (await model.score(records(diabetes.features, diabetes.expected.inputs.slice(3, 4)))).requestId;
    } finally {
      // close() flushes the log into the store before the platform closes.
      await model.close();
    }
    const logged = [];
    for await (const row of app.predictions.exportPredictions({ model: "diabetes", start, end: new Date(Date.now() + 1000).toISOString() })) {
      // Other tests here predict through loadModel too (and are logged as well): only this test's requests.
      if (row.requestId === "order-17" || row.requestId === generated) logged.push(row);
    }
    expect(logged.map((r) => [r.requestId, r.row, r.version, r.key])).toEqual([
      ["order-17", 0, 1, "customer-9"],
      ["order-17", 1, 1, "customer-9"],
      ["order-17", 2, 1, "customer-9"],
      [generated, 0, 1, null],
    ]);
    expect(generated).toMatch(/^[0-9a-f-]{36}$/);
    // Inputs are kept by column; the prediction is the model's own output for the row.
    expect(logged[0]?.inputs).toMatchObject({ age: diabetes.expected.inputs[0]?.[0] });
    expect(logged[0]?.prediction).toBeCloseTo((diabetes.expected.outputs.prediction as number[][])[0]?.[0] as number, 3);
  });

  it("rejects unknown models and bad references", async () => {
    const config = defaultConfig({ home, "log.level": "warn" });
    expect((await rejection(loadModel("nope", { config, workers: 1 }))).code).toBe("MLSHIP_ERR_MODEL_NOT_FOUND");
    expect((await rejection(loadModel("diabetes@staging", { app }))).code).toBe("MLSHIP_ERR_MODEL_ALIAS_NOT_FOUND");
    expect((await rejection(loadModel("bad name@", { app }))).code).toBe("MLSHIP_ERR_MODEL_REF_INVALID");
  });
});
