// Concept drift on live errors, on real models and real labels: the breast-cancer MLP and the diabetes regression
// score their fixtures' prod split; the truth then shifts (labels flipped, targets moved), and the detectors (DDM,
// ADWIN) must find the change, while the unshifted stream raises nothing.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { tensorValues } from "../../src/scoring/index.js";
import { Alerter, type Alert } from "../../src/monitor/index.js";
import { createFeedbackService, feedbackSpecOf, SqlPredictionStore, type JoinedPrediction, type PredictionRecord } from "../../src/feedback/index.js";
import { conceptDriftAlert, detectConceptDrift } from "../../src/feedback/index.js";
import { fixture, REPO } from "../cli/helpers.js";

const home = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-concept-"));
let app: Mlship;

interface Scored {
  features: number[][];
  truth: number[];
  predicted: number[];
}

function readCsv(file: string): { header: string[]; rows: number[][] } {
  const [head, ...lines] = fs.readFileSync(file, "utf8").trim().split("\n");
  return { header: (head as string).split(","), rows: lines.map((l) => l.split(",").map(Number)) };
}

async function score(name: string, fixtureName: string, output: string): Promise<Scored> {
  const { header, rows } = readCsv(path.join(fixture(fixtureName).dir, "prod.csv"));
  const features = rows.map((r) => r.slice(0, header.length - 1));
  const result = await app.scoring.score(`${name}@production`, { kind: "mlflow", body: { dataframe_split: { columns: header.slice(0, -1), data: features } } });
  const predicted = (tensorValues(result.outputs[output] as never) as unknown[]).flat().map(Number);
  return { features, truth: rows.map((r) => r[header.length - 1] as number), predicted };
}

/** The scored rows as joined predictions, one per minute, with the actual the `truth` function gives. */
function joined(s: Scored, model: string, start: number, truth: (i: number) => number): JoinedPrediction[] {
  return s.predicted.map((p, i) => ({
    requestId: `${model}-${start + i}`,
    row: 0,
    model,
    version: 1,
    variant: null,
    at: new Date(Date.UTC(2026, 11, 1, 0, start + i)).toISOString(),
    prediction: p,
    scores: null,
    actual: truth(i),
    actualAt: null,
  }));
}

let cancer: Scored;
let diabetes: Scored;

beforeAll(async () => {
  app = await createMlship(defaultConfig({ home, "runtime.workers": 1, "log.level": "warn" }));
  await registerModel(app, path.join(REPO, "examples/models/breast-cancer"), { name: "breast-cancer", alias: "production" });
  await registerModel(app, path.join(REPO, "examples/models/diabetes"), { name: "diabetes", alias: "production" });
  cancer = await score("breast-cancer", "breast_cancer_mlp", "label");
  diabetes = await score("diabetes", "diabetes_linear", "prediction");
}, 60_000);

afterAll(async () => {
  await app.close();
  fs.rmSync(home, { recursive: true, force: true });
});

describe("concept drift on live errors", () => {
  it("DDM finds labels that flipped for a classifier, and nothing on the true labels", async () => {
    const spec = feedbackSpecOf((await app.registry.getVersion("breast-cancer", 1)).manifest);
    // 138 of 143 right on the true labels (the fixture's documented accuracy 0.965).
    const steady = [...joined(cancer, "bc", 0, (i) => cancer.truth[i] as number), ...joined(cancer, "bc", 143, (i) => cancer.truth[i] as number)];
    expect(detectConceptDrift(steady, spec)).toBeNull();

    const shifted = [...joined(cancer, "bc", 0, (i) => cancer.truth[i] as number), ...joined(cancer, "bc", 143, (i) => 1 - (cancer.truth[i] as number))];
    const drift = detectConceptDrift(shifted, spec);
    expect(drift).not.toBeNull();
    expect(drift?.detector).toBe("ddm");
    expect(drift?.outcomes).toBe(286);
    // The change is signalled after the shift (row 143), and the error rate before it is the model's own.
    expect(Date.parse(drift?.at as string)).toBeGreaterThanOrEqual(Date.UTC(2026, 11, 1, 0, 143));
    expect(drift?.before).toBeLessThan(0.2);
    expect(drift?.after).toBeGreaterThan(0.8);
  });

  it("ADWIN finds targets that moved for a regressor", async () => {
    const spec = feedbackSpecOf((await app.registry.getVersion("diabetes", 1)).manifest);
    const steady = [...joined(diabetes, "db", 0, (i) => diabetes.truth[i] as number), ...joined(diabetes, "db", 89, (i) => diabetes.truth[i] as number)];
    expect(detectConceptDrift(steady, spec)).toBeNull();
    const moved = [...joined(diabetes, "db", 0, (i) => diabetes.truth[i] as number), ...joined(diabetes, "db", 89, (i) => (diabetes.truth[i] as number) + 150)];
    const drift = detectConceptDrift(moved, spec);
    expect(drift?.detector).toBe("adwin");
    // The model's own MAE on prod is about 45; after the move the errors are about 150 larger.
    expect(drift?.before).toBeLessThan(80);
    expect(drift?.after).toBeGreaterThan(120);
    const alert = conceptDriftAlert("diabetes", 1, drift as NonNullable<typeof drift>, { size: "1d", start: "s", end: "e" }, new Date(0));
    expect(alert).toMatchObject({ id: "diabetes@1:concept_drift:adwin:*[1d]", kind: "concept_drift", severity: "warning" });
  });

  it("the feedback service raises a concept_drift alert from logged predictions and posted outcomes", async () => {
    const store = new SqlPredictionStore(app.store);
    const spec = feedbackSpecOf((await app.registry.getVersion("breast-cancer", 1)).manifest);
    const now = Date.now();
    const records: PredictionRecord[] = [];
    for (let pass = 0; pass < 2; pass++) {
      cancer.predicted.forEach((p, i) => {
        records.push({
          requestId: `live-${pass}-${i}`, row: 0, model: "breast-cancer", version: 1, variant: null, rolloutId: null, key: null,
          at: new Date(now - 3_600_000 + (pass * 143 + i) * 1000).toISOString(), protocol: "test", inputs: null, inputsHash: null,
          outputs: "{}", prediction: (spec.labels as string[])[p] as string, scores: null, latencyMs: 1,
        });
      });
    }
    await store.insertPredictions(records);
    const outcomes = records.map((r, n) => ({ request_id: r.requestId, actual: n < 143 ? cancer.truth[n] : 1 - (cancer.truth[n - 143] as number), event_time: r.at }));
    await store.ingestOutcomes(outcomes, { horizonMs: 86_400_000, pendingMs: 60_000 });
    const sent: Alert[] = [];
    const alerter = new Alerter({ sinks: [{ name: "test", send: (alerts) => (sent.push(...alerts), Promise.resolve()) }] });
    const feedback = createFeedbackService({ store, registry: app.registry, logger: app.logger, alerter, horizonMs: 86_400_000, pendingMs: 60_000, timers: false });
    await feedback.evaluate(new Date(now));
    await feedback.close();
    const concept = sent.filter((a) => a.kind === "concept_drift");
    expect(concept.map((a) => a.id)).toEqual(["breast-cancer@1:concept_drift:ddm:*[1d]"]);
    expect(concept[0]?.message).toMatch(/error rate 0\.0\d+ before, 0\.9\d* after/);
  });
});
