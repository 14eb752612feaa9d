import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { Registry as MetricsRegistry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { MlshipError, silentLogger } from "../../src/core/index.js";
import { computeQuality } from "../../src/feedback/quality.js";
import { createFeedbackService } from "../../src/feedback/service.js";
import { feedbackSpecOf } from "../../src/feedback/spec.js";
import { SqlPredictionStore } from "../../src/feedback/store.js";
import type { PredictionRecord, QualityAlert, Variant } from "../../src/feedback/types.js";
import { Alerter, logSink, type Alert, type AlertSink } from "../../src/monitor/index.js";
import { freshSqlite, type FreshDatabase } from "../helpers/sql-stores.js";

const EXAMPLE = path.resolve(__dirname, "../../examples/models/breast-cancer");
const EXPECTED = path.resolve(__dirname, "../../../shared/fixtures/breast_cancer_mlp/expected.json");
const NOW = new Date("2026-12-01T12:00:00.000Z");
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const LABELS = ["malignant", "benign"];

interface Expected {
  outputs: { probabilities: number[][]; label: number[] };
}

/** The real model's outputs on the fixture's first prod rows, as the prediction log would hold them. */
function records(expected: Expected, version: number, prefix: string, count: number, variant: Variant | null = null): PredictionRecord[] {
  return Array.from({ length: count }, (_, i) => {
    const probabilities = expected.outputs.probabilities[i] as number[];
    const label = expected.outputs.label[i] as number;
    return {
      requestId: `${prefix}-${i}`,
      row: 0,
      model: "breast-cancer",
      version,
      variant,
      rolloutId: variant === null ? null : "rollout-1",
      key: null,
      at: new Date(NOW.getTime() - 30 * MINUTE + i * 1000).toISOString(),
      protocol: "rest",
      inputs: null,
      inputsHash: null,
      outputs: JSON.stringify({ probabilities, label, class: LABELS[label] }),
      prediction: LABELS[label] as string,
      scores: probabilities,
      latencyMs: 2,
    };
  });
}

/** Outcomes by request id as class indexes: the first `wrong` contradict the prediction, the rest confirm it. */
function outcomes(expected: Expected, prefix: string, count: number, wrong: number): unknown[] {
  return Array.from({ length: count }, (_, i) => {
    const predicted = expected.outputs.label[i] as number;
    return { request_id: `${prefix}-${i}`, actual: i < wrong ? 1 - predicted : predicted, event_time: new Date(NOW.getTime() - 10 * MINUTE).toISOString() };
  });
}

describe("FeedbackService over SQLite and a real registry", () => {
  let home: string;
  let app: Mlship;
  let database: FreshDatabase;
  let store: SqlPredictionStore;
  let expected: Expected;

  beforeAll(async () => {
    expected = JSON.parse(await fs.readFile(EXPECTED, "utf8")) as Expected;
    home = await fs.mkdtemp(path.join(os.tmpdir(), "mlship-feedback-service-"));
    app = await createMlship(defaultConfig({ home, "runtime.workers": 1 }), { logger: silentLogger() });
    // Version 1: the example as shipped; versions 2 and 3: the same package with a quality threshold.
    await registerModel(app, EXAMPLE, { name: "breast-cancer" });
    const withThreshold = path.join(home, "breast-cancer-threshold");
    await fs.cp(EXAMPLE, withThreshold, { recursive: true });
    const manifest = await fs.readFile(path.join(withThreshold, "mlship.yaml"), "utf8");
    await fs.writeFile(path.join(withThreshold, "mlship.yaml"), `${manifest}\nfeedback:\n  thresholds:\n    - accuracy < 0.8 over 1h with at least 20 outcomes\n`);
    await registerModel(app, withThreshold, { name: "breast-cancer" });
    await registerModel(app, withThreshold, { name: "breast-cancer" });

    database = await freshSqlite("mlship-feedback-service-store");
    store = new SqlPredictionStore(await database.open(), { now: () => NOW });
    // Version 2: 32 predictions, 30 outcomes, 21 right (accuracy 0.7). Version 3 (a rollout's challenger): 15
    // predictions, all with outcomes, 10 wrong: worse, but below the threshold's 20 outcomes.
    await store.insertPredictions(records(expected, 2, "v2", 32));
    await store.insertPredictions(records(expected, 3, "v3", 15, "challenger"));
    // Predictions of a version the registry does not know: evaluation logs it and goes on with the others.
    await store.insertPredictions(records(expected, 1, "ghost", 2).map((r) => ({ ...r, model: "ghost" })));
  });

  afterAll(async () => {
    await app?.close();
    await database?.dispose();
    if (home !== undefined) await fs.rm(home, { recursive: true, force: true });
  });

  it("computes quality, judges thresholds, alerts once through the Alerter and exports gauges", async () => {
    const metrics = new MetricsRegistry();
    const logLines: Record<string, unknown>[] = [];
    const logger = pino({ level: "info" }, { write: (line: string) => void logLines.push(JSON.parse(line) as Record<string, unknown>) });
    const sent: Alert[] = [];
    const collectingSink: AlertSink = {
      name: "collect",
      send(alerts) {
        sent.push(...alerts);
        return Promise.resolve();
      },
    };
    const alerter = new Alerter({ sinks: [logSink(logger), collectingSink], logger });
    const feedback = createFeedbackService({
      store,
      registry: app.registry,
      logger,
      alerter,
      metricsRegistry: metrics,
      horizonMs: 2 * HOUR,
      pendingMs: HOUR,
      timers: false,
      now: () => NOW,
      errorRate: (model, version) => (version === 2 ? 0.01 : null),
    });
    const heard: QualityAlert[] = [];
    feedback.onAlert((alerts) => heard.push(...alerts));
    try {
      const v2 = await feedback.ingestOutcomes(outcomes(expected, "v2", 30, 9));
      expect(v2).toMatchObject({ accepted: 30, matched: 30, pending: 0, late: 0, rejected: [] });
      const v3 = await feedback.ingestOutcomes(outcomes(expected, "v3", 15, 10));
      expect(v3.matched).toBe(15);
      const events = await feedback.ingestEvents([{ event_id: "e1", name: "click", request_id: "v2-3" }, { event_id: "e2", name: "click", request_id: "v2-4", value: 2 }]);
      expect(events.matched).toBe(2);

      const report = await feedback.quality({ model: "breast-cancer", version: 2, window: "1h" });
      expect(report).toMatchObject({ model: "breast-cancer", version: 2, task: "binary_classification", predictions: 32, outcomes: 30 });
      expect(report.window).toEqual({ size: "1h", start: new Date(NOW.getTime() - HOUR).toISOString(), end: NOW.toISOString() });
      expect(report.coverage).toBeCloseTo(30 / 32, 12);
      expect(report.metrics.accuracy).toBeCloseTo(0.7, 12);
      expect(report.metrics.error_rate).toBe(0.01);
      expect(report.events).toEqual({ click: { count: 2, sum: 3, rate: 2 / 32 } });
      // The same numbers as computing on the rows directly with the version's spec.
      const spec = feedbackSpecOf((await app.registry.getVersion("breast-cancer", 2)).manifest);
      const direct = computeQuality(await store.joined({ model: "breast-cancer", version: 2, start: report.window.start, end: report.window.end }), spec);
      expect(report.metrics).toEqual({ ...direct.metrics, error_rate: 0.01 });
      expect(report.confusion).toEqual(direct.confusion);

      const all = await feedback.qualityAll("breast-cancer", "1h");
      expect(all.map((r) => [r.version, r.variant, r.predictions])).toEqual([[2, undefined, 32], [3, undefined, 15], [3, "challenger", 15]]);
      await expect(feedback.quality({ model: "breast-cancer", version: 2, window: "an hour" })).rejects.toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "window" });
      await expect(feedback.quality({ model: "breast-cancer", version: 2, window: "1h", variant: "blue" as Variant })).rejects.toBeInstanceOf(MlshipError);

      const results = await feedback.evaluate();
      expect(results.map((r) => [r.version, r.results[0]?.breached, r.results[0]?.insufficient, r.results[0]?.outcomes])).toEqual([
        [2, true, false, 30],
        [3, false, true, 15],
      ]);
      expect(sent).toHaveLength(1);
      expect(sent[0]).toMatchObject({ id: "breast-cancer@2:quality:accuracy<0.8:*[1h]", kind: "quality", severity: "error", message: "accuracy 0.7 < 0.8 over 1h (30 outcomes)", value: 0.7, outcomes: 30 });
      expect(heard).toEqual(sent);
      expect(logLines.some((l) => l.msg === "accuracy 0.7 < 0.8 over 1h (30 outcomes)" && l.level === 50)).toBe(true);
      expect(logLines.some((l) => l.event === "feedback_spec_failed" && l.model === "ghost")).toBe(true);

      // Still breached a minute later: the Alerter's cool-down holds it back, the listeners hear nothing new.
      await feedback.evaluate(new Date(NOW.getTime() + MINUTE));
      expect(sent).toHaveLength(1);
      expect(heard).toHaveLength(1);

      const text = await metrics.metrics();
      expect(text).toContain('mlship_quality{model="breast-cancer",version="2",variant="",window="1h",metric="accuracy"} 0.7');
      expect(text).toContain('mlship_quality{model="breast-cancer",version="3",variant="challenger",window="1h",metric="accuracy"}');
      expect(text).toContain('mlship_quality{model="breast-cancer",version="2",variant="",window="1d",metric="error_rate"} 0.01');
      expect(text).toContain('mlship_label_coverage{model="breast-cancer",version="2",variant="",window="12h"} 0.9375');
      expect(text).toContain('mlship_quality_outcomes{model="breast-cancer",version="3",variant="",window="1h"} 15');
      expect(text).toContain('mlship_feedback_outcomes{status="matched"} 45');
      expect(text).toContain('mlship_feedback_outcomes{status="pending"} 0');
      expect(text).toContain('mlship_business_events{status="matched"} 2');
    } finally {
      await feedback.close();
    }
  });

  it("evaluates on its timer and stops on close", async () => {
    const heard: QualityAlert[] = [];
    const feedback = createFeedbackService({
      store,
      registry: app.registry,
      logger: silentLogger(),
      horizonMs: 2 * HOUR,
      pendingMs: HOUR,
      evaluateMs: 50,
      now: () => NOW,
    });
    feedback.onAlert((alerts) => heard.push(...alerts));
    try {
      const deadline = Date.now() + 10_000;
      while (heard.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25));
      // Without an Alerter of its own the service still de-duplicates: one alert however many runs went by.
      expect(heard.map((a) => a.id)).toEqual(["breast-cancer@2:quality:accuracy<0.8:*[1h]"]);
    } finally {
      await feedback.close();
    }
    const count = heard.length;
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(heard).toHaveLength(count);
  });
});
