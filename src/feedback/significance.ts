/**
 * Is the challenger's quality really different from the champion's? A pooled two-proportion z-test for rate
 * metrics (accuracy, precision, recall, coverage) and Welch's unequal-variance t-test on per-row errors for mean-error
 * metrics (mae, rmse, mape, log_loss), both two-sided, matching `scipy.stats`.
 *
 * The Student t tail needs the regularized incomplete beta function, which neither src/monitor's public surface nor
 * the installed stdlib packages provide: it is computed here with the continued fraction of Numerical Recipes
 * (`betacf`, modified Lentz) and a Lanczos log-gamma.
 */
import { erfc } from "../monitor/stats/special.js";
import { clippedLogLoss, computeQuality, labelledRows, MAPE_EPS, numericRows, positiveLabelOf } from "./quality.js";
import type { FeedbackSpec, JoinedPrediction } from "./types.js";

/** Significance level of `ArmComparison.significant`. */
export const SIGNIFICANCE_LEVEL = 0.05;

export interface ZTestResult {
  /** (pA - pB) / sqrt(P (1 - P) (1/nA + 1/nB)), P the pooled share; NaN when an arm is empty. */
  z: number;
  /** Two-sided; null when an arm is empty. */
  pValue: number | null;
}

export interface WelchResult {
  /** (mean(a) - mean(b)) / sqrt(var(a)/nA + var(b)/nB) with sample variances; NaN when undefined. */
  t: number;
  /** Welch-Satterthwaite degrees of freedom; NaN when undefined. */
  df: number;
  /** Two-sided; null when an arm has fewer than 2 values or both have zero variance. */
  pValue: number | null;
}

/** The arms of a rollout compared on one metric (src/rollout calls it `RolloutComparison`). */
export interface ArmComparison {
  metric: string;
  champion: number | null;
  challenger: number | null;
  /** challenger - champion, in the metric's units. */
  difference: number | null;
  /** True when a higher value is better (accuracy), false when lower is (rmse). */
  higherIsBetter: boolean;
  /** Two-proportion z-test for rate metrics, Welch's t-test on per-row errors for mean-error metrics. */
  test: "two_proportion_z" | "welch_t" | null;
  pValue: number | null;
  /** pValue < 0.05. */
  significant: boolean;
}

const LOWER_IS_BETTER: ReadonlySet<string> = new Set(["log_loss", "mae", "rmse", "mape", "error_rate"]);

/** False for error metrics (log_loss, mae, rmse, mape, error_rate), true for the others (accuracy, r2, coverage...). */
export function higherIsBetter(metric: string): boolean {
  return !LOWER_IS_BETTER.has(metric);
}

/** Two-sided p-value of a standard normal statistic: 2 (1 - Phi(|z|)) = erfc(|z| / sqrt 2). */
export function normalTwoSidedP(z: number): number {
  return erfc(Math.abs(z) / Math.SQRT2);
}

/** Pooled two-proportion z-test, two-sided (statsmodels `proportions_ztest`, the z of Evidently). */
export function twoProportionZTest(successA: number, nA: number, successB: number, nB: number): ZTestResult {
  if (!(nA > 0) || !(nB > 0)) return { z: Number.NaN, pValue: null };
  const pA = successA / nA;
  const pB = successB / nB;
  const pooled = (successA + successB) / (nA + nB);
  const variance = pooled * (1 - pooled) * (1 / nA + 1 / nB);
  // Both arms all successes or all failures: no difference can be seen.
  if (!(variance > 0)) return { z: 0, pValue: 1 };
  const z = (pA - pB) / Math.sqrt(variance);
  return { z, pValue: normalTwoSidedP(z) };
}

const LANCZOS_G = 7;
const LANCZOS_COEFFICIENTS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905,
  -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];

/** ln Gamma(x) for x > 0 (Lanczos approximation, g = 7, n = 9; relative error about 1e-15). */
export function lnGamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - lnGamma(1 - x);
  const z = x - 1;
  let sum = LANCZOS_COEFFICIENTS[0] as number;
  for (let i = 1; i < LANCZOS_COEFFICIENTS.length; i++) sum += (LANCZOS_COEFFICIENTS[i] as number) / (z + i);
  const t = z + LANCZOS_G + 0.5;
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(sum);
}

const BETACF_MAX_ITERATIONS = 10_000;
const BETACF_EPS = 1e-16;
const BETACF_FPMIN = 1e-300;

/** Continued fraction of the incomplete beta function (Numerical Recipes `betacf`, modified Lentz). */
function betaContinuedFraction(x: number, a: number, b: number): number {
  const qab = a + b;
  const qap = a + 1;
  const qam = a - 1;
  let c = 1;
  let d = 1 - (qab * x) / qap;
  if (Math.abs(d) < BETACF_FPMIN) d = BETACF_FPMIN;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= BETACF_MAX_ITERATIONS; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < BETACF_FPMIN) d = BETACF_FPMIN;
    c = 1 + aa / c;
    if (Math.abs(c) < BETACF_FPMIN) c = BETACF_FPMIN;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (qab + m) * x) / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < BETACF_FPMIN) d = BETACF_FPMIN;
    c = 1 + aa / c;
    if (Math.abs(c) < BETACF_FPMIN) c = BETACF_FPMIN;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < BETACF_EPS) break;
  }
  return h;
}

/** The regularized incomplete beta function I_x(a, b), a, b > 0, x in [0, 1]. */
export function regularizedIncompleteBeta(x: number, a: number, b: number): number {
  if (Number.isNaN(x) || !(a > 0) || !(b > 0)) return Number.NaN;
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const front = Math.exp(lnGamma(a + b) - lnGamma(a) - lnGamma(b) + a * Math.log(x) + b * Math.log1p(-x));
  // The continued fraction converges fast for x < (a + 1) / (a + b + 2); otherwise use I_x(a,b) = 1 - I_{1-x}(b,a).
  if (x < (a + 1) / (a + b + 2)) return (front * betaContinuedFraction(x, a, b)) / a;
  return 1 - (front * betaContinuedFraction(1 - x, b, a)) / b;
}

/** Two-sided p-value of Student's t with `df` degrees of freedom: I_{df/(df+t^2)}(df/2, 1/2). */
export function studentTTwoSidedP(t: number, df: number): number {
  if (Number.isNaN(t) || !(df > 0)) return Number.NaN;
  if (!Number.isFinite(t)) return 0;
  return Math.min(1, regularizedIncompleteBeta(df / (df + t * t), df / 2, 0.5));
}

function meanAndVariance(values: readonly number[]): { mean: number; variance: number } {
  let sum = 0;
  for (const v of values) sum += v;
  const mean = sum / values.length;
  let squares = 0;
  for (const v of values) squares += (v - mean) ** 2;
  return { mean, variance: squares / (values.length - 1) };
}

/** Welch's t-test, two-sided (`scipy.stats.ttest_ind(a, b, equal_var=False)`). */
export function welchTTest(a: readonly number[], b: readonly number[]): WelchResult {
  if (a.length < 2 || b.length < 2) return { t: Number.NaN, df: Number.NaN, pValue: null };
  const A = meanAndVariance(a);
  const B = meanAndVariance(b);
  const va = A.variance / a.length;
  const vb = B.variance / b.length;
  const se2 = va + vb;
  if (!(se2 > 0)) return { t: Number.NaN, df: Number.NaN, pValue: null };
  const t = (A.mean - B.mean) / Math.sqrt(se2);
  const df = (se2 * se2) / ((va * va) / (a.length - 1) + (vb * vb) / (b.length - 1));
  return { t, df, pValue: studentTTwoSidedP(t, df) };
}

/** Successes and trials of a rate metric in one arm; undefined for metrics that are not a proportion. */
function proportionOf(metric: string, rows: readonly JoinedPrediction[], spec: FeedbackSpec): { successes: number; trials: number } | undefined {
  if (metric === "coverage") {
    const { outcomes, predictions } = computeQuality(rows, spec);
    return { successes: outcomes, trials: predictions };
  }
  if (spec.task === "regression") return undefined;
  const pairs = labelledRows(rows, spec).filter((r) => r.predicted !== null);
  if (metric === "accuracy") return { successes: pairs.filter((r) => r.actual === r.predicted).length, trials: pairs.length };
  if (spec.task !== "binary_classification") return undefined;
  const positive = positiveLabelOf(spec);
  const truePositives = pairs.filter((r) => r.actual === positive && r.predicted === positive).length;
  if (metric === "precision") return { successes: truePositives, trials: pairs.filter((r) => r.predicted === positive).length };
  if (metric === "recall") return { successes: truePositives, trials: pairs.filter((r) => r.actual === positive).length };
  return undefined;
}

/** Per-row losses whose mean is the metric (or whose mean's root is, for rmse); undefined for other metrics. */
function perRowLosses(metric: string, rows: readonly JoinedPrediction[], spec: FeedbackSpec): number[] | undefined {
  if (spec.task === "regression") {
    const pairs = numericRows(rows).filter((r): r is { actual: number; predicted: number } => r.predicted !== null);
    if (metric === "mae") return pairs.map((r) => Math.abs(r.actual - r.predicted));
    if (metric === "rmse") return pairs.map((r) => (r.actual - r.predicted) ** 2);
    if (metric === "mape") return pairs.map((r) => Math.abs(r.actual - r.predicted) / Math.max(Math.abs(r.actual), MAPE_EPS));
    return undefined;
  }
  if (metric !== "log_loss") return undefined;
  const labels = spec.labels ?? [];
  const pairs = labelledRows(rows, spec).filter((r) => r.predicted !== null);
  if (pairs.length === 0 || pairs.some((r) => r.scores === null)) return undefined;
  return pairs.map((r) => {
    const column = labels.indexOf(r.actual);
    return clippedLogLoss(column < 0 ? 0 : ((r.scores as number[])[column] as number));
  });
}

/**
 * The champion's and the challenger's value of `metric` (as `computeQuality` gives it) with a two-sided test of the
 * difference: a two-proportion z-test for accuracy, coverage and binary precision/recall; Welch's t-test on per-row
 * absolute errors (mae), squared errors (rmse), percentage errors (mape) or log losses (log_loss). Other metrics
 * (f1, roc_auc, r2, error_rate) have no test here: `test` and `pValue` are null.
 */
export function compareArms(
  metric: string,
  champion: readonly JoinedPrediction[],
  challenger: readonly JoinedPrediction[],
  spec: FeedbackSpec,
): ArmComparison {
  const valueOf = (rows: readonly JoinedPrediction[]): number | null => {
    const quality = computeQuality(rows, spec);
    const value = metric === "coverage" ? quality.coverage : quality.metrics[metric];
    return typeof value === "number" && Number.isFinite(value) ? value : null;
  };
  const championValue = valueOf(champion);
  const challengerValue = valueOf(challenger);
  let test: ArmComparison["test"] = null;
  let pValue: number | null = null;
  const championRate = proportionOf(metric, champion, spec);
  const challengerRate = proportionOf(metric, challenger, spec);
  if (championRate !== undefined && challengerRate !== undefined) {
    test = "two_proportion_z";
    pValue = twoProportionZTest(challengerRate.successes, challengerRate.trials, championRate.successes, championRate.trials).pValue;
  } else {
    const championLosses = perRowLosses(metric, champion, spec);
    const challengerLosses = perRowLosses(metric, challenger, spec);
    if (championLosses !== undefined && challengerLosses !== undefined) {
      test = "welch_t";
      pValue = welchTTest(challengerLosses, championLosses).pValue;
    }
  }
  return {
    metric,
    champion: championValue,
    challenger: challengerValue,
    difference: championValue === null || challengerValue === null ? null : challengerValue - championValue,
    higherIsBetter: higherIsBetter(metric),
    test,
    pValue,
    significant: pValue !== null && pValue < SIGNIFICANCE_LEVEL,
  };
}
