import { describe, expect, it } from "vitest";
import {
  compareArms,
  higherIsBetter,
  lnGamma,
  regularizedIncompleteBeta,
  studentTTwoSidedP,
  twoProportionZTest,
  welchTTest,
} from "../../src/feedback/significance.js";
import type { FeedbackSpec, JoinedPrediction } from "../../src/feedback/types.js";

// Reference numbers below were produced with SciPy 1.17.1:
//   z, p: z = (p1 - p2) / sqrt(P (1 - P) (1/n1 + 1/n2)), p = 2 * scipy.stats.norm.sf(abs(z))
//   Welch: scipy.stats.ttest_ind(a, b, equal_var=False) -> statistic, pvalue, df
//   scipy.special.betainc(a, b, x); Student: 2 * scipy.stats.t.sf(abs(t), df)

describe("twoProportionZTest", () => {
  it.each([
    [412, 500, 380, 500, 2.493191973355884, 0.012660037687824437],
    [90, 100, 80, 120, 4.112153197726057, 3.9198603664954395e-05],
    [138, 143, 120, 143, 3.5815139989838003, 0.00034160882974935974],
    [5, 10, 5, 10, 0, 1],
  ])("%i/%i vs %i/%i matches SciPy", (sa, na, sb, nb, z, p) => {
    const result = twoProportionZTest(sa, na, sb, nb);
    expect(result.z).toBeCloseTo(z, 12);
    expect(result.pValue).toBeCloseTo(p, 14);
    expect(Math.abs((result.pValue as number) - p) / p).toBeLessThan(1e-9);
  });

  it("is safe on empty and constant arms", () => {
    expect(twoProportionZTest(0, 0, 3, 10).pValue).toBeNull();
    expect(twoProportionZTest(10, 10, 7, 7)).toEqual({ z: 0, pValue: 1 });
  });
});

describe("welchTTest and the Student t tail", () => {
  it("matches scipy.stats.ttest_ind(equal_var=False)", () => {
    const a = welchTTest([12.1, 15.3, 9.8, 11.4, 14.2, 10.9, 13.7], [16.2, 18.9, 14.1, 17.5, 15.8]);
    expect(a.t).toBeCloseTo(-3.646532835132827, 12);
    expect(a.df).toBeCloseTo(9.240133470791756, 10);
    expect(Math.abs((a.pValue as number) - 0.005115764562219763) / 0.005115764562219763).toBeLessThan(1e-9);
    const b = welchTTest([0.2, 0.5, 0.1, 0.9, 0.3, 0.4, 0.7, 0.6, 0.25, 0.35], [0.21, 0.52, 0.12, 0.88, 0.33, 0.41, 0.69, 0.61, 0.27, 0.36, 0.5]);
    expect(b.t).toBeCloseTo(-0.15013317888652697, 12);
    expect(b.df).toBeCloseTo(18.28359451369228, 10);
    expect(b.pValue).toBeCloseTo(0.8823033744484112, 12);
  });

  it("has no p-value with fewer than two values or no variance", () => {
    expect(welchTTest([1], [2, 3]).pValue).toBeNull();
    expect(welchTTest([1, 1], [1, 1]).pValue).toBeNull();
  });

  it.each([
    [0.3, 2.5, 0.5, 0.018927124071945658],
    [0.9, 50, 0.5, 0.001204149832559813],
    [0.999, 3000, 0.5, 0.01428560678371607],
    [0.5, 1, 1, 0.5],
    [0.1, 0.5, 0.5, 0.20483276469913345],
  ])("betainc(x=%f, a=%f, b=%f) matches scipy.special.betainc", (x, a, b, expected) => {
    expect(Math.abs(regularizedIncompleteBeta(x, a, b) - expected) / expected).toBeLessThan(1e-10);
  });

  it.each([
    [2.1, 3, 0.1265652025496846],
    [0.5, 1.5, 0.68056711066994],
    [3.3, 12000, 0.0009696669263291194],
    [-1.96, 40, 0.05698822403200634],
  ])("two-sided t p-value of t=%f with %f df matches SciPy", (t, df, expected) => {
    expect(Math.abs(studentTTwoSidedP(t, df) - expected) / expected).toBeLessThan(1e-9);
  });

  it("lnGamma agrees with factorials", () => {
    expect(lnGamma(10)).toBeCloseTo(Math.log(362880), 12);
    expect(lnGamma(0.5)).toBeCloseTo(Math.log(Math.sqrt(Math.PI)), 12);
  });
});

let sequence = 0;
function row(prediction: string | number, actual: string | number | null, scores: number[] | null = null): JoinedPrediction {
  sequence++;
  return { requestId: `r${sequence}`, row: 0, model: "m", version: 1, variant: null, at: "2026-11-30T10:00:00.000Z", prediction, scores, actual, actualAt: actual === null ? null : "2026-11-30T10:05:00.000Z" };
}

const binary: FeedbackSpec = { task: "binary_classification", predictionOutput: "label", labels: ["malignant", "benign"], inputs: "full", sampleRate: 0.1, thresholds: [] };
const regression: FeedbackSpec = { task: "regression", predictionOutput: "prediction", inputs: "full", sampleRate: 0.1, thresholds: [] };

/** `correct` of `n` rows right; the wrong ones predict malignant for a benign case. */
function arm(correct: number, n: number): JoinedPrediction[] {
  return Array.from({ length: n }, (_, i) => (i < correct ? row("benign", "benign") : row("malignant", "benign")));
}

describe("compareArms", () => {
  it("compares accuracy with the two-proportion z-test", () => {
    const comparison = compareArms("accuracy", arm(380, 500), arm(412, 500), binary);
    expect(comparison).toMatchObject({ metric: "accuracy", higherIsBetter: true, test: "two_proportion_z", significant: true });
    expect(comparison.champion).toBeCloseTo(0.76, 12);
    expect(comparison.challenger).toBeCloseTo(0.824, 12);
    expect(comparison.difference).toBeCloseTo(0.064, 12);
    expect(comparison.pValue).toBeCloseTo(0.012660037687824437, 14);
  });

  it("compares mae with Welch's t-test on absolute errors", () => {
    // Absolute errors of the challenger and champion are the two samples of the first Welch reference above.
    const challenger = [12.1, 15.3, 9.8, 11.4, 14.2, 10.9, 13.7].map((e, i) => row(150 - (i % 2 === 0 ? e : -e), 150));
    const champion = [16.2, 18.9, 14.1, 17.5, 15.8].map((e) => row(200 + e, 200));
    const comparison = compareArms("mae", champion, challenger, regression);
    expect(comparison).toMatchObject({ metric: "mae", higherIsBetter: false, test: "welch_t", significant: true });
    expect(comparison.champion).toBeCloseTo(82.5 / 5, 10);
    expect(comparison.difference).toBeCloseTo(87.4 / 7 - 82.5 / 5, 10);
    expect(Math.abs((comparison.pValue as number) - 0.005115764562219763) / 0.005115764562219763).toBeLessThan(1e-9);
  });

  it("uses squared errors for rmse and has no test for metrics that are no mean or proportion", () => {
    const champion = [1, 2, 3, 4].map((e) => row(10 + e, 10));
    const challenger = [2, 2, 5, 1].map((e) => row(10 - e, 10));
    const rmse = compareArms("rmse", champion, challenger, regression);
    expect(rmse.test).toBe("welch_t");
    expect(rmse.pValue).toBeCloseTo(welchTTest([4, 4, 25, 1], [1, 4, 9, 16]).pValue as number, 14);
    const r2 = compareArms("r2", champion, challenger, regression);
    expect(r2).toMatchObject({ test: null, pValue: null, significant: false, higherIsBetter: true });
    expect(compareArms("accuracy", [], [], binary)).toMatchObject({ champion: null, challenger: null, difference: null, pValue: null, significant: false });
  });

  it("knows which direction is better", () => {
    expect(["accuracy", "precision", "recall", "f1", "roc_auc", "r2", "coverage"].every(higherIsBetter)).toBe(true);
    expect(["log_loss", "mae", "rmse", "mape", "error_rate"].some(higherIsBetter)).toBe(false);
  });
});
