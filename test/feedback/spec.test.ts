// The feedback spec of the three example packages (binary MLP, digits CNN with image input, diabetes regression),
// detection when the `feedback:` section is missing or partial, and records built from real scoring events.
import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { silentLogger, type Tensor } from "../../src/core/index.js";
import { feedbackSpecOf, MAX_LOGGED_ELEMENTS, recordsOf } from "../../src/feedback/spec.js";
import type { FeedbackSpec } from "../../src/feedback/types.js";
import { loadPackage, validateManifest, type Manifest } from "../../src/package/index.js";
import type { ScoreOptions, ScoreResult, ScoringEvent } from "../../src/scoring/index.js";

const EXAMPLES = path.resolve(__dirname, "../../examples/models");
const DIGIT_LABELS = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

async function exampleManifest(name: string): Promise<Manifest> {
  return (await loadPackage(path.join(EXAMPLES, name))).manifest;
}

interface Example {
  dataframe_split: { columns: string[]; data: number[][] };
}

async function example(name: string): Promise<Example> {
  return JSON.parse(await fs.readFile(path.join(EXAMPLES, name, "input_example.json"), "utf8")) as Example;
}

/** A manifest changed by `edit` and validated again, as a package with those fields would load. */
function edited(manifest: Manifest, edit: (m: Manifest) => void): Manifest {
  const copy = structuredClone(manifest);
  edit(copy);
  return validateManifest(copy);
}

describe("feedbackSpecOf on the example packages", () => {
  it("breast-cancer: binary classification, label text from the labels step, probabilities", async () => {
    expect(feedbackSpecOf(await exampleManifest("breast-cancer"))).toEqual({
      task: "binary_classification",
      predictionOutput: "class",
      probabilityOutput: "probabilities",
      labels: ["malignant", "benign"],
      positiveLabel: "benign",
      inputs: "full",
      sampleRate: 0.1,
      thresholds: [],
    } satisfies FeedbackSpec);
  });

  it("digits: multiclass from the `multiclass_image_classification` tag, ten labels, no positive class", async () => {
    expect(feedbackSpecOf(await exampleManifest("digits"))).toEqual({
      task: "multiclass_classification",
      predictionOutput: "class",
      probabilityOutput: "probabilities",
      labels: DIGIT_LABELS,
      inputs: "full",
      sampleRate: 0.1,
      thresholds: [],
    } satisfies FeedbackSpec);
  });

  it("diabetes: regression on the `prediction` output, no probabilities or labels", async () => {
    expect(feedbackSpecOf(await exampleManifest("diabetes"))).toEqual({
      task: "regression",
      predictionOutput: "prediction",
      inputs: "full",
      sampleRate: 0.1,
      thresholds: [],
    } satisfies FeedbackSpec);
  });
});

describe("feedbackSpecOf detection", () => {
  it("the section's fields win over detection", async () => {
    const manifest = edited(await exampleManifest("breast-cancer"), (m) => {
      m.feedback = {
        prediction: "label",
        positive: "malignant",
        log_inputs: "sampled",
        sample_rate: 0.5,
        thresholds: [{ metric: "accuracy", op: "<", value: 0.8, window: "1d", minOutcomes: 10, severity: "error", text: "accuracy < 0.8 over 1d with at least 10 outcomes" }],
      };
    });
    expect(feedbackSpecOf(manifest)).toEqual({
      task: "binary_classification",
      predictionOutput: "label",
      probabilityOutput: "probabilities",
      labels: ["malignant", "benign"],
      positiveLabel: "malignant",
      inputs: "sampled",
      sampleRate: 0.5,
      thresholds: [expect.objectContaining({ metric: "accuracy", minOutcomes: 10 })],
    });
  });

  it("without tags, post-processing or class labels: the integer `label` output makes a classifier, the score width its classes", async () => {
    const manifest = edited(await exampleManifest("breast-cancer"), (m) => {
      m.postprocess = [];
      m.metadata = {};
    });
    expect(feedbackSpecOf(manifest)).toEqual({
      task: "binary_classification",
      predictionOutput: "label",
      probabilityOutput: "probabilities",
      inputs: "full",
      sampleRate: 0.1,
      thresholds: [],
    });
    // metadata.class_labels alone give the labels.
    const labelled = edited(manifest, (m) => {
      m.metadata.class_labels = ["malignant", "benign"];
    });
    expect(feedbackSpecOf(labelled)).toMatchObject({ labels: ["malignant", "benign"], positiveLabel: "benign" });
  });

  it("a `classification` tag with two labels is binary; a regression tag wins over detection", async () => {
    const bc = await exampleManifest("breast-cancer");
    expect(feedbackSpecOf(edited(bc, (m) => { m.metadata.tags = { task: "classification" }; })).task).toBe("binary_classification");
    const digits = await exampleManifest("digits");
    expect(feedbackSpecOf(edited(digits, (m) => { m.metadata.tags = { task: "classification" }; })).task).toBe("multiclass_classification");
    expect(feedbackSpecOf(edited(digits, (m) => { m.metadata.tags = {}; })).task).toBe("multiclass_classification");
    const regression = feedbackSpecOf(edited(bc, (m) => { m.metadata.tags = { task: "regression" }; }));
    expect(regression).toMatchObject({ task: "regression", predictionOutput: "class" });
    expect(regression).not.toHaveProperty("labels");
    expect(regression).not.toHaveProperty("probabilityOutput");
  });

  it("a single float output without tags is a regression", async () => {
    const manifest = edited(await exampleManifest("diabetes"), (m) => {
      m.metadata = {};
    });
    expect(feedbackSpecOf(manifest)).toMatchObject({ task: "regression", predictionOutput: "prediction" });
  });

  it("a softmax step's output is the probability output; the labels step's `as` the prediction", async () => {
    const manifest = validateManifest({
      format_version: 1,
      flavor: "onnx",
      files: { model: "model.onnx" },
      signature: {
        inputs: [{ name: "x", dtype: "float32", shape: [-1, 4] }],
        outputs: [{ name: "logits", dtype: "float32", shape: [-1, 3] }, { name: "embedding", dtype: "float32", shape: [-1, 8] }],
      },
      postprocess: [
        { type: "softmax", output: "logits", as: "probs" },
        { type: "labels", output: "probs", labels: ["setosa", "versicolor", "virginica"], as: "species" },
      ],
    });
    expect(feedbackSpecOf(manifest)).toEqual({
      task: "multiclass_classification",
      predictionOutput: "species",
      probabilityOutput: "probs",
      labels: ["setosa", "versicolor", "virginica"],
      inputs: "full",
      sampleRate: 0.1,
      thresholds: [],
    });
  });
});

describe("recordsOf on real scoring events", () => {
  let home: string;
  let app: Mlship;
  const events: ScoringEvent[] = [];
  const manifests = new Map<string, Manifest>();

  beforeAll(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), "mlship-feedback-spec-"));
    app = await createMlship(defaultConfig({ home, "runtime.workers": 1, "cache.backend": "off" }), { logger: silentLogger() });
    for (const name of ["breast-cancer", "diabetes", "digits"]) {
      const record = await registerModel(app, path.join(EXAMPLES, name), { name, alias: "production" });
      manifests.set(name, record.manifest);
    }
    app.scoring.onScored((event) => events.push(event));
  }, 60_000);

  afterAll(async () => {
    await app?.close();
    await fs.rm(home, { recursive: true, force: true });
  });

  /** Scores the package's input example and returns the result with the event it emitted. */
  async function scoreExample(name: string, options: ScoreOptions = {}, rows?: number[][]): Promise<{ result: ScoreResult; event: ScoringEvent; data: number[][]; columns: string[] }> {
    const body = await example(name);
    const data = rows ?? body.dataframe_split.data;
    const before = events.length;
    const result = await app.scoring.score(name, { kind: "mlflow", body: { dataframe_split: { columns: body.dataframe_split.columns, data } } }, options);
    const event = events.slice(before).find((e) => e.requestId === result.requestId);
    if (event === undefined) throw new Error("no scoring event for the request");
    return { result, event, data, columns: body.dataframe_split.columns };
  }

  const specOf = (name: string, edit?: Partial<FeedbackSpec>): FeedbackSpec => ({ ...feedbackSpecOf(manifests.get(name) as Manifest), ...edit });
  const values = (t: Tensor | undefined): number[] => Array.from(t?.data as ArrayLike<number | bigint>, Number);

  it("breast-cancer: one record per row with inputs by column, outputs, label and scores", async () => {
    const { result, event, data, columns } = await scoreExample("breast-cancer", { protocol: "mlflow", key: "customer-7" });
    expect(event.rows).toBeGreaterThan(1);
    const records = recordsOf(event, specOf("breast-cancer"), manifests.get("breast-cancer") as Manifest);
    expect(records).toHaveLength(result.rows);
    const probabilities = values(result.outputs.probabilities);
    const labels = values(result.outputs.label);
    const classes = result.outputs.class?.data as string[];
    records.forEach((record, i) => {
      expect(record).toMatchObject({
        requestId: result.requestId, row: i, model: "breast-cancer", version: result.version, variant: null, rolloutId: null,
        key: "customer-7", at: event.at.toISOString(), protocol: "mlflow", inputsHash: null, latencyMs: event.latencyMs,
      });
      // float32 inputs are logged as the shortest decimal that reads back to the same float: the caller's numbers.
      expect(JSON.parse(record.inputs as string)).toEqual(Object.fromEntries(columns.map((c, j) => [c, data[i]?.[j]])));
      const outputs = JSON.parse(record.outputs) as { probabilities: number[]; label: number; class: string };
      expect(Object.keys(outputs)).toEqual(["probabilities", "label", "class"]);
      expect(outputs.label).toBe(labels[i]);
      expect(outputs.class).toBe(classes[i]);
      expect(outputs.probabilities[0]).toBeCloseTo(probabilities[2 * i] as number, 6);
      expect(outputs.probabilities[1]).toBeCloseTo(probabilities[2 * i + 1] as number, 6);
      expect(record.prediction).toBe(classes[i]);
      expect(record.prediction).toBe(["malignant", "benign"][labels[i] as number]);
      expect(record.scores).toHaveLength(2);
      expect(record.scores?.[1]).toBeCloseTo(probabilities[2 * i + 1] as number, 6);
    });
  });

  it("diabetes: the prediction is the number the model returned", async () => {
    const { result, event, data, columns } = await scoreExample("diabetes");
    const records = recordsOf(event, specOf("diabetes"), manifests.get("diabetes") as Manifest);
    const predicted = values(result.outputs.prediction);
    expect(records).toHaveLength(data.length);
    records.forEach((record, i) => {
      expect(JSON.parse(record.inputs as string)).toEqual(Object.fromEntries(columns.map((c, j) => [c, data[i]?.[j]])));
      expect(typeof record.prediction).toBe("number");
      expect(Math.fround(record.prediction as number)).toBe(predicted[i]);
      expect(JSON.parse(record.outputs)).toEqual({ prediction: [record.prediction] });
      expect(record.scores).toBeNull();
    });
  });

  it("digits: the decoded image rows are logged by pixel column, the prediction as the digit", async () => {
    const { result, event } = await scoreExample("digits");
    const records = recordsOf(event, specOf("digits"), manifests.get("digits") as Manifest);
    expect(records).toHaveLength(result.rows);
    const classes = result.outputs.class?.data as string[];
    records.forEach((record, i) => {
      const inputs = JSON.parse(record.inputs as string) as Record<string, number>;
      expect(Object.keys(inputs)).toHaveLength(64);
      expect(inputs).toHaveProperty("pixel_7_7");
      expect(record.prediction).toBe(classes[i]);
      expect(DIGIT_LABELS).toContain(record.prediction);
      expect(record.scores).toHaveLength(10);
      expect((record.scores as number[]).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 4);
    });
  });

  it("hashed, sampled and none input modes", async () => {
    const { event } = await scoreExample("breast-cancer");
    const manifest = manifests.get("breast-cancer") as Manifest;
    const full = recordsOf(event, specOf("breast-cancer"), manifest);
    const sha = (text: string | null): string => createHash("sha256").update(text as string).digest("hex");

    const hashed = recordsOf(event, specOf("breast-cancer", { inputs: "hashed" }), manifest);
    hashed.forEach((record, i) => {
      expect(record.inputs).toBeNull();
      expect(record.inputsHash).toBe(sha(full[i]?.inputs ?? null));
      expect(record.outputs).toBe(full[i]?.outputs);
    });
    expect(new Set(hashed.map((r) => r.inputsHash)).size).toBe(hashed.length);

    // One draw per request: every row of a request shares the decision.
    const draws: number[] = [];
    const drawing = (value: number) => () => {
      draws.push(value);
      return value;
    };
    const chosen = recordsOf(event, specOf("breast-cancer", { inputs: "sampled", sampleRate: 0.1 }), manifest, drawing(0.05));
    expect(chosen.map((r) => r.inputs)).toEqual(full.map((r) => r.inputs));
    expect(chosen.every((r) => r.inputsHash === null)).toBe(true);
    const skipped = recordsOf(event, specOf("breast-cancer", { inputs: "sampled", sampleRate: 0.1 }), manifest, drawing(0.5));
    expect(skipped.map((r) => r.inputsHash)).toEqual(hashed.map((r) => r.inputsHash));
    expect(skipped.every((r) => r.inputs === null)).toBe(true);
    expect(draws).toEqual([0.05, 0.5]);

    const none = recordsOf(event, specOf("breast-cancer", { inputs: "none" }), manifest);
    expect(none.every((r) => r.inputs === null && r.inputsHash === null)).toBe(true);
    expect(none.map((r) => r.prediction)).toEqual(full.map((r) => r.prediction));
  });

  it("failed requests and events without outputs give no records", async () => {
    const before = events.length;
    await expect(app.scoring.score("breast-cancer", { kind: "mlflow", body: { dataframe_split: { columns: ["mean radius"], data: [[1]] } } })).rejects.toThrow();
    const failed = events.slice(before).find((e) => !e.ok);
    expect(failed).toBeDefined();
    expect(recordsOf(failed as ScoringEvent, specOf("breast-cancer"), manifests.get("breast-cancer") as Manifest)).toEqual([]);
    const { event } = await scoreExample("breast-cancer");
    const withoutOutputs: ScoringEvent = { ...event, outputs: undefined };
    expect(recordsOf(withoutOutputs, specOf("breast-cancer"), manifests.get("breast-cancer") as Manifest)).toEqual([]);
  });

  it("an input too big to log in full is logged as its digest", async () => {
    const { event } = await scoreExample("breast-cancer");
    const width = MAX_LOGGED_ELEMENTS + 1;
    const big = new Float32Array(event.rows * width);
    for (let i = 0; i < big.length; i++) big[i] = i % 251;
    const inputs = { ...event.inputs, raster: { dtype: "float32", shape: [event.rows, width], data: big } satisfies Tensor };
    const records = recordsOf({ ...event, inputs }, specOf("breast-cancer"), manifests.get("breast-cancer") as Manifest);
    records.forEach((record, i) => {
      const logged = JSON.parse(record.inputs as string) as Record<string, unknown>;
      const digest = createHash("sha256").update(new Uint8Array(big.buffer, i * width * 4, width * 4)).digest("hex");
      expect(logged.raster).toEqual({ sha256: digest, dtype: "float32", shape: [width] });
      expect(logged["mean radius"]).toBeTypeOf("number");
    });
  });

  it("float32 values are logged as the shortest decimal that reads back to the same float32 (toPrecision's digits)", async () => {
    const { event } = await scoreExample("diabetes");
    // Random bit patterns (every exponent), decimals a client would type, and values next to powers of ten and
    // rounding ties, where a shortcut is most likely to pick another decimal than toPrecision.
    const bits = new Uint32Array(1);
    const asFloat = new Float32Array(bits.buffer);
    const values: number[] = [];
    let seed = 12345;
    const next = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
    for (let i = 0; i < 20_000; i++) {
      bits[0] = next();
      values.push(asFloat[0] as number);
    }
    for (let i = 0; i < 5000; i++) values.push(Math.fround((next() % 10 ** (1 + (i % 8))) / 10 ** ((i % 11) - 3)));
    for (let p = -44; p <= 38; p++) {
      for (const m of [1, 0.9999999, 1.0000001, 9.5, 2.5, 0.5, 0.05, 1.5, 0.25]) {
        asFloat[0] = Math.fround(m * 10 ** p);
        const center = bits[0] as number;
        for (let k = -2; k <= 2; k++) {
          bits[0] = center + k;
          values.push(asFloat[0] as number);
        }
      }
    }
    const finite = values.filter((v) => Number.isFinite(v));
    const signed = [...finite, ...finite.map((v) => -v), 0, 1e-45, 3.4028234663852886e38];
    const shortest = (value: number): number => {
      for (let digits = 1; digits < 9; digits++) {
        const candidate = Number(value.toPrecision(digits));
        if (Math.fround(candidate) === value) return candidate;
      }
      return Number(value.toPrecision(9));
    };
    const data = Float32Array.from(signed);
    const outputs = { prediction: { dtype: "float32", shape: [1, data.length], data } satisfies Tensor };
    const [record] = recordsOf({ ...event, rows: 1, inputs: undefined, outputs }, specOf("diabetes"), manifests.get("diabetes") as Manifest);
    const logged = (JSON.parse(record?.outputs as string) as { prediction: number[] }).prediction;
    expect(logged).toHaveLength(data.length);
    const wrong = logged.filter((v, i) => v !== shortest(data[i] as number));
    expect(wrong).toEqual([]);
  });
});
