import { describe, expect, it } from "vitest";
import { judgeThresholds, qualityAlertId, qualityAlerts } from "../../src/feedback/thresholds.js";
import type { QualityReport, QualityThreshold } from "../../src/feedback/types.js";

function threshold(partial: Partial<QualityThreshold> & Pick<QualityThreshold, "metric" | "op" | "value">): QualityThreshold {
  const t = { window: "1d", minOutcomes: 1, severity: "error" as const, ...partial };
  return { ...t, text: `${t.metric} ${t.op} ${t.value} over ${t.window} with at least ${t.minOutcomes} outcomes` };
}

function report(window: string, partial: Partial<QualityReport>): QualityReport {
  return {
    model: "breast-cancer",
    version: 3,
    task: "binary_classification",
    window: { size: window, start: "2026-11-29T12:00:00.000Z", end: "2026-11-30T12:00:00.000Z" },
    predictions: 1000,
    outcomes: 612,
    coverage: 0.612,
    metrics: { accuracy: 0.74, precision: 0.7, recall: 0.9, f1: 0.79, roc_auc: null, log_loss: 0.5, error_rate: 0.002 },
    events: {},
    ...partial,
  };
}

describe("judgeThresholds", () => {
  const reports: Record<string, QualityReport> = {
    "1d": report("1d", {}),
    "1h": report("1h", { predictions: 40, outcomes: 12, coverage: 0.3, metrics: { accuracy: 0.5, roc_auc: null, error_rate: 0.2 } }),
  };
  const reportFor = (window: string): QualityReport => reports[window] as QualityReport;

  it("breaches when the comparison holds with enough outcomes", () => {
    const results = judgeThresholds(
      [
        threshold({ metric: "accuracy", op: "<", value: 0.8, minOutcomes: 500 }),
        threshold({ metric: "accuracy", op: "<", value: 0.74 }),
        threshold({ metric: "accuracy", op: "<=", value: 0.74 }),
        threshold({ metric: "log_loss", op: ">", value: 0.4 }),
        threshold({ metric: "log_loss", op: ">=", value: 0.6 }),
      ],
      reportFor,
    );
    expect(results.map((r) => r.breached)).toEqual([true, false, true, true, false]);
    expect(results[0]).toMatchObject({ observed: 0.74, outcomes: 612, insufficient: false });
  });

  it("does not judge below minOutcomes, nor a metric that could not be computed", () => {
    const results = judgeThresholds(
      [
        threshold({ metric: "accuracy", op: "<", value: 0.8, window: "1h", minOutcomes: 20 }),
        threshold({ metric: "roc_auc", op: "<", value: 0.9 }),
        threshold({ metric: "rmse", op: ">", value: 10 }),
      ],
      reportFor,
    );
    expect(results[0]).toMatchObject({ observed: 0.5, outcomes: 12, breached: false, insufficient: true });
    expect(results[1]).toMatchObject({ observed: null, breached: false, insufficient: false });
    expect(results[2]).toMatchObject({ observed: null, breached: false });
  });

  it("judges coverage and error_rate on the number of predictions", () => {
    const results = judgeThresholds(
      [
        threshold({ metric: "coverage", op: "<", value: 0.5, window: "1h", minOutcomes: 30 }),
        threshold({ metric: "error_rate", op: ">", value: 0.1, window: "1h", minOutcomes: 30 }),
        threshold({ metric: "coverage", op: "<", value: 0.5, window: "1h", minOutcomes: 50 }),
      ],
      reportFor,
    );
    expect(results.map((r) => [r.observed, r.outcomes, r.breached])).toEqual([
      [0.3, 40, true],
      [0.2, 40, true],
      [0.3, 40, false],
    ]);
  });
});

describe("qualityAlerts", () => {
  it("builds quality alerts with stable ids and readable messages", () => {
    const reportFor = (window: string): QualityReport => report(window, {});
    const thresholds = [threshold({ metric: "accuracy", op: "<", value: 0.8, minOutcomes: 500, severity: "warning" }), threshold({ metric: "recall", op: "<", value: 0.5 })];
    const results = judgeThresholds(thresholds, reportFor);
    const alerts = qualityAlerts("breast-cancer", 3, results, reportFor);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toEqual({
      id: "breast-cancer@3:quality:accuracy<0.8:*[1d]",
      model: "breast-cancer",
      version: 3,
      kind: "quality",
      severity: "warning",
      message: "accuracy 0.74 < 0.8 over 1d (612 outcomes)",
      value: 0.74,
      threshold: 0.8,
      window: { size: "1d", start: "2026-11-29T12:00:00.000Z", end: "2026-11-30T12:00:00.000Z" },
      at: "2026-11-30T12:00:00.000Z",
      metric: "accuracy",
      outcomes: 612,
    });
    expect(qualityAlertId("m", 1, { metric: "rmse", op: ">=", value: 60, window: "12h" })).toBe("m@1:quality:rmse>=60:*[12h]");
  });

  it("names the predictions as evidence for coverage", () => {
    const reportFor = (window: string): QualityReport => report(window, { coverage: 0.123456 });
    const alerts = qualityAlerts("m", 2, judgeThresholds([threshold({ metric: "coverage", op: "<", value: 0.2 })], reportFor), reportFor);
    expect(alerts[0]?.message).toBe("coverage 0.1235 < 0.2 over 1d (1000 predictions)");
  });
});
