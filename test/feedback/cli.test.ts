// `mlship feedback import | quality | export | stats` in process (through `main`), over a real home: the
// breast-cancer example scored on 200 real rows of the fixture (all 143 held-out rows and 57 training rows), its
// predictions logged by the PredictionLogger, then the true labels imported from a CSV file.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { PredictionLogger } from "../../src/feedback/index.js";
import type { ExportedPrediction, QualityReport } from "../../src/feedback/index.js";
import { runCli } from "../cli/helpers.js";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const FIXTURE = fileURLToPath(new URL("../../../shared/fixtures/breast_cancer_mlp/", import.meta.url));
const LABELS = ["malignant", "benign"];

interface Split {
  columns: string[];
  features: number[][];
  labels: number[];
}

function readSplit(name: string): Split {
  const lines = fs.readFileSync(path.join(FIXTURE, name), "utf8").trim().split("\n");
  const rows = lines.slice(1).map((line) => line.split(",").map(Number));
  return { columns: (lines[0] as string).split(",").slice(0, 30), features: rows.map((r) => r.slice(0, 30)), labels: rows.map((r) => r[30] as number) };
}

describe("mlship feedback", { timeout: 120_000 }, () => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-feedback-cli-"));
  const env = { MLSHIP_HOME: home, MLSHIP_WORKERS: "1", MLSHIP_USER: "ci" };
  const cli = (...args: string[]) => runCli(args, { env });
  const file = (name: string) => path.join(home, name);
  const prod = readSplit("prod.csv");
  const train = readSplit("train.csv");
  const meta = JSON.parse(fs.readFileSync(path.join(FIXTURE, "meta.json"), "utf8")) as { metrics: { train_accuracy: number; prod_accuracy: number } };
  const expected = JSON.parse(fs.readFileSync(path.join(FIXTURE, "expected.json"), "utf8")) as { outputs: { label: number[] }; true_labels: number[] };
  const TRAIN_ROWS = 57;

  beforeAll(async () => {
    // Predictions made and logged the way a server makes them; the CLI then works on the same home.
    const app = await createMlship(defaultConfig({ home, "runtime.workers": 1, "log.level": "warn" }));
    try {
      await registerModel(app, path.join(REPO, "examples/models/breast-cancer"), { name: "bc" });
      await registerModel(app, path.join(REPO, "examples/models/breast-cancer"), { name: "keyed" });
      const logger = new PredictionLogger({ scoring: app.scoring, store: app.predictions, registry: app.registry, logger: app.logger, spillDir: path.join(home, "spill"), timers: false });
      await logger.start();
      const body = (features: number[][]) => ({ kind: "mlflow" as const, body: { dataframe_split: { columns: prod.columns, data: features } } });
      await app.scoring.score("bc@1", body(prod.features), { requestId: "prod" });
      await app.scoring.score("bc@1", body(train.features.slice(0, TRAIN_ROWS)), { requestId: "train" });
      for (let i = 0; i < 10; i++) await app.scoring.score("keyed@1", body([prod.features[i] as number[]]), { key: `patient-${i}` });
      await logger.close();
      expect(logger.stats()).toMatchObject({ received: 210, written: 210 });
    } finally {
      await app.close();
    }
    const lines = ["request_id,row,actual"];
    prod.labels.forEach((label, row) => lines.push(`prod,${row},${label}`));
    train.labels.slice(0, TRAIN_ROWS).forEach((label, row) => lines.push(`train,${row},${label}`));
    fs.writeFileSync(file("outcomes.csv"), `${lines.join("\n")}\n`);
  }, 120_000);

  afterAll(() => fs.rmSync(home, { recursive: true, force: true }));

  it("imports 200 outcomes from a CSV file and joins every one", async () => {
    const r = await cli("feedback", "import", file("outcomes.csv"));
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("imported 200 outcomes: 200 matched, 0 pending, 0 late, 0 rejected\n");
  });

  it("reports the accuracy the fixture documents for those rows", async () => {
    const r = await cli("feedback", "quality", "bc@1", "--json");
    expect(r.code).toBe(0);
    const reports = JSON.parse(r.stdout) as QualityReport[];
    expect(reports).toHaveLength(1);
    const report = reports[0] as QualityReport;
    expect(report).toMatchObject({ model: "bc", version: 1, task: "binary_classification", predictions: 200, outcomes: 200, coverage: 1 });
    // meta.json: 0.965035 of the 143 held-out rows (138) and every training row are classified right.
    const correct = Math.round(meta.metrics.prod_accuracy * prod.labels.length) + meta.metrics.train_accuracy * TRAIN_ROWS;
    expect(correct).toBe(195);
    expect(report.metrics.accuracy).toBeCloseTo(correct / 200, 12);
  });

  it("exports the joined predictions: the first 50 are expected.json's, and their outcomes are the true labels", async () => {
    const r = await cli("feedback", "export", "bc@1", "--out", file("joined.jsonl"), "--with-outcome");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^exported 200 predictions of bc@1 since .* to .*joined\.jsonl\n$/);
    const rows = fs.readFileSync(file("joined.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as ExportedPrediction);
    expect(rows).toHaveLength(200);
    const byRow = new Map(rows.map((x) => [`${x.requestId}/${x.row}`, x]));
    expected.outputs.label.forEach((label, i) => {
      const logged = byRow.get(`prod/${i}`) as ExportedPrediction;
      expect(logged.prediction, `prod row ${i}`).toBe(LABELS[label]);
      expect(logged.actual, `prod row ${i}`).toBe(expected.true_labels[i]);
    });
    // The share the report measured, row by row from the export.
    const correct = rows.filter((x) => x.prediction === LABELS[x.actual as number]).length;
    expect(correct).toBe(195);
    const keyed = await cli("feedback", "export", "keyed", "--out", file("keyed-export.jsonl"), "--since", "2020-01-01T00:00:00Z");
    expect(keyed.code).toBe(0);
    const keyedRows = fs.readFileSync(file("keyed-export.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as ExportedPrediction);
    expect(keyedRows.map((x) => x.key)).toEqual(Array.from({ length: 10 }, (_, i) => `patient-${i}`));
    expect(keyedRows.every((x) => x.actual === null)).toBe(true);
  });

  it("counts a re-imported file once", async () => {
    const again = await cli("feedback", "import", file("outcomes.csv"), "--batch", "64");
    expect(again.code).toBe(0);
    expect(again.stdout).toBe("imported 200 outcomes: 200 matched, 0 pending, 0 late, 0 rejected\n");
    const report = (JSON.parse((await cli("feedback", "quality", "bc", "--json")).stdout) as QualityReport[])[0] as QualityReport;
    expect(report.outcomes).toBe(200);
    expect(report.metrics.accuracy).toBeCloseTo(195 / 200, 12);
  });

  it("prints the quality table of every version", async () => {
    const r = await cli("feedback", "quality", "bc", "--window", "12h");
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^quality of bc over the last 12h \(.* to .*\), binary_classification$/);
    expect((lines[1] as string).split(/\s+/).slice(0, 6)).toEqual(["version", "variant", "predictions", "outcomes", "coverage", "accuracy"]);
    expect(lines[1]).toContain("roc_auc");
    expect((lines[2] as string).split(/\s+/).slice(0, 6)).toEqual(["1", "-", "200", "200", "1", "0.975"]);
  });

  it("imports outcomes by business key with --model, from JSON Lines with its own column names", async () => {
    const jsonl = prod.labels.slice(0, 10).map((label, i) => JSON.stringify({ patient: `patient-${i}`, diagnosis: LABELS[label] }));
    fs.writeFileSync(file("keyed.jsonl"), `${jsonl.join("\n")}\n`);
    const missingModel = await cli("feedback", "import", file("keyed.jsonl"), "--key-column", "patient", "--actual-column", "diagnosis");
    expect(missingModel.code).toBe(2);
    expect(missingModel.stderr).toMatch(/--model.*\[MLSHIP_ERR_CLI_USAGE\]/);
    const r = await cli("feedback", "import", file("keyed.jsonl"), "--model", "keyed", "--key-column", "patient", "--actual-column", "diagnosis");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("imported 10 outcomes: 10 matched, 0 pending, 0 late, 0 rejected\n");
    const report = (JSON.parse((await cli("feedback", "quality", "keyed@1", "--json")).stdout) as QualityReport[])[0] as QualityReport;
    const correct = expected.outputs.label.slice(0, 10).filter((label, i) => label === expected.true_labels[i]).length;
    expect(report).toMatchObject({ predictions: 10, outcomes: 10 });
    expect(report.metrics.accuracy).toBeCloseTo(correct / 10, 12);
  });

  it("prints the join counts", async () => {
    const r = await cli("feedback", "stats", "--json");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ outcomes: { matched: 210, pending: 0, late: 0, unmatched: 0 }, events: { matched: 0, pending: 0, late: 0, unmatched: 0 } });
    const table = await cli("feedback", "stats");
    expect(table.stdout.split("\n")[1]?.split(/\s+/)).toEqual(["outcomes", "210", "0", "0", "0"]);
  });

  it("lists the rejected rows, and exits 1 when every row is rejected", async () => {
    fs.writeFileSync(file("partly.csv"), "request_id,row,actual\nprod,0,0\nprod,1,\nprod,x,1\n");
    const partly = await cli("feedback", "import", file("partly.csv"));
    expect(partly.code).toBe(0);
    const lines = partly.stdout.trim().split("\n");
    expect(lines[0]).toBe("imported 1 outcomes: 1 matched, 0 pending, 0 late, 2 rejected");
    expect(lines[1]).toMatch(/^ {2}row 2: actual: \S/);
    expect(lines[2]).toMatch(/^ {2}row 3: row: \S/);
    fs.writeFileSync(file("bad.csv"), "request_id,actual\nprod,\ntrain,\n");
    const bad = await cli("feedback", "import", file("bad.csv"));
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/^imported 0 outcomes: 0 matched, 0 pending, 0 late, 2 rejected\n/);
    expect(bad.stderr).toMatch(/^mlship: every row of .*bad\.csv was rejected \(first: row 1, actual: .*\) \[MLSHIP_ERR_INPUT_INVALID\]\n$/);
  });

  it("fails with a message naming the file or the column", async () => {
    const missing = await cli("feedback", "import", file("nope.csv"));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/nope\.csv: no such data file/);
    fs.writeFileSync(file("outcomes.txt"), "request_id,actual\nprod,1\n");
    const unknown = await cli("feedback", "import", file("outcomes.txt"));
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/outcomes\.txt: unknown data format/);
    fs.writeFileSync(file("labels.csv"), "request_id,label\nprod,1\n");
    const noActual = await cli("feedback", "import", file("labels.csv"));
    expect(noActual.code).toBe(2);
    expect(noActual.stderr).toMatch(/labels\.csv has no column "actual".*--actual-column.*\[MLSHIP_ERR_CLI_USAGE\]/);
    const noTarget = await cli("feedback", "import", file("labels.csv"), "--actual-column", "label", "--request-id-column", "id");
    expect(noTarget.code).toBe(2);
    expect(noTarget.stderr).toMatch(/--request-id-column/);
    const badWindow = await cli("feedback", "quality", "bc", "--window", "soon");
    expect(badWindow.code).toBe(2);
    expect(badWindow.stderr).toMatch(/--window/);
    const unwritable = await cli("feedback", "export", "bc", "--out", file("no/such/folder/x.jsonl"));
    expect(unwritable.code).toBe(1);
    expect(unwritable.stderr).toMatch(/x\.jsonl: cannot be written .*\[MLSHIP_ERR_INPUT_INVALID\]/);
    const badSince = await cli("feedback", "export", "bc", "--out", file("x.jsonl"), "--since", "last week");
    expect(badSince.code).toBe(2);
    expect(badSince.stderr).toMatch(/--since/);
    const noModel = await cli("feedback", "quality", "nope");
    expect(noModel.code).toBe(1);
    expect(noModel.stderr).toMatch(/\[MLSHIP_ERR_MODEL_NOT_FOUND\]/);
  });
});
