import { describe, expect, it } from "vitest";
import {
  binomialUpperTail,
  classifyDrift,
  driftSeverity,
  formatDuration,
  mannKendall,
  significantRunLength,
  type DriftKind,
  type DriftPoint,
} from "../../src/monitor/kinds.js";
import { SeededRandom } from "../../src/monitor/profile/index.js";
import type { FeatureDrift } from "../../src/monitor/types.js";

const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 10, 1);
const ALPHA = 0.05;

/**
 * A window's severity as `driftSeverity` makes it from a test: sqrt(ln p / ln alpha), p uniform when the window
 * is stable (so 5% of stable windows are flagged, as with real tests), plus the planted effect.
 */
function series(seed: number, effects: readonly number[]): DriftPoint[] {
  const random = new SeededRandom(seed);
  return effects.map((effect, i) => {
    const p = Math.max(random.next(), 1e-12);
    const score = Math.sqrt(Math.log(p) / Math.log(ALPHA)) + effect;
    return { start: T0 + i * HOUR, score, drifted: score >= 1 };
  });
}

function range(n: number, f: (i: number) => number): number[] {
  return Array.from({ length: n }, (_, i) => f(i));
}

interface Case {
  name: string;
  seed: number;
  effects: number[];
}

const SEEDS = [1, 2, 3];

function cases(kind: string, variants: { name: string; effects: number[] }[]): Case[] {
  return variants.flatMap((v) => SEEDS.map((seed) => ({ name: `${kind} ${v.name} seed ${seed}`, seed: seed * 7919 + v.effects.length, effects: v.effects })));
}

const instant = cases(
  "instant",
  [24, 48, 96].flatMap((n) =>
    [0.3, 0.5, 0.75].flatMap((at) =>
      [2.5, 4].map((level) => ({ name: `n=${n} at ${at} level ${level}`, effects: range(n, (i) => (i >= Math.round(at * n) ? level : 0)) })),
    ),
  ),
);

const gradual = cases("gradual", [
  ...[24, 48, 96].flatMap((n) => [3, 5].map((top) => ({ name: `linear n=${n} to ${top}`, effects: range(n, (i) => (top * i) / (n - 1)) }))),
  ...[48, 96].map((n) => ({ name: `ramp from a quarter n=${n}`, effects: range(n, (i) => Math.max(0, (4 * (i - n / 4)) / (n - 1 - n / 4))) })),
  ...[48, 96].map((n) => ({ name: `quadratic n=${n}`, effects: range(n, (i) => 4 * (i / (n - 1)) ** 2) })),
]);

const periodic = cases("periodic", [
  ...[6, 8, 12].map((period) => ({ name: `square period ${period} n=48`, effects: range(48, (i) => (i % period < period / 2 ? 0 : 3)) })),
  ...[8, 12].map((period) => ({ name: `spikes of 2 every ${period} n=48`, effects: range(48, (i) => (i % period >= period - 2 ? 3.5 : 0)) })),
  { name: "daily pattern, 6 of 24 hours, 4 days", effects: range(96, (i) => (i % 24 >= 12 && i % 24 < 18 ? 3 : 0)) },
  { name: "half sine period 12 n=60", effects: range(60, (i) => 3 * Math.max(0, Math.sin((2 * Math.PI * i) / 12))) },
]);

const temporary = cases("temporary", [
  ...[24, 48, 96].flatMap((n) => [4, 6, 10].filter((len) => len < n / 3).map((len) => ({ name: `n=${n} bump of ${len} at a third`, effects: range(n, (i) => (i >= Math.round(n / 3) && i < Math.round(n / 3) + len ? 3 : 0)) }))),
  { name: "bump of 6 near the start n=48", effects: range(48, (i) => (i >= 2 && i < 8 ? 4 : 0)) },
  { name: "bump of 8 ending 6 windows before the end n=48", effects: range(48, (i) => (i >= 34 && i < 42 ? 2.5 : 0)) },
  { name: "triangular bump n=48", effects: range(48, (i) => Math.max(0, 4 - Math.abs(i - 20))) },
]);

const stable: Case[] = [
  ...cases("none", [8, 12, 24, 48, 96, 200].map((n) => ({ name: `noise n=${n}`, effects: range(n, () => 0) }))),
  ...range(20, (k) => k).map((k) => ({ name: `none noise n=48 seed ${1000 + k}`, seed: 1000 + k, effects: range(48, () => 0) })),
];

function expectKind(kind: DriftKind, list: readonly Case[]): void {
  const wrong = list
    .map((c) => ({ c, result: classifyDrift(series(c.seed, c.effects)) }))
    .filter(({ result }) => result.kind !== kind)
    .map(({ c, result }) => `${c.name}: ${result.kind} (${result.evidence})`);
  expect(wrong).toEqual([]);
}

describe("classifyDrift on planted series", () => {
  it("finds instant drift (step change, then drifted) and names where it started", () => {
    expectKind("instant", instant);
    const result = classifyDrift(series(11, range(48, (i) => (i >= 30 ? 3 : 0))));
    expect(result.kind).toBe("instant");
    expect(result.details.weak).toBeUndefined();
    expect(Math.abs((result.details.changeIndex ?? -1) - 30)).toBeLessThanOrEqual(1);
    expect(result.details.levelAfter! - result.details.levelBefore!).toBeGreaterThan(2);
    expect(result.evidence).toMatch(/step change at window 3\d \(2026-11-02T0\d:00:00.000Z\)/);
  });

  it("finds gradual drift (steady trend, no dominant step) with Mann-Kendall and Sen's slope", () => {
    expectKind("gradual", gradual);
    const result = classifyDrift(series(5, range(48, (i) => (4 * i) / 47)));
    expect(result.kind).toBe("gradual");
    expect(result.details.trendPvalue).toBeLessThan(1e-6);
    // The planted slope is 4/47 per window = per hour.
    expect(result.details.senSlopePerHour).toBeGreaterThan(0.05);
    expect(result.details.senSlopePerHour).toBeLessThan(0.12);
    expect(result.evidence).toContain("Mann-Kendall");
  });

  it("finds periodic drift and names the period in windows and in time", () => {
    expectKind("periodic", periodic);
    const result = classifyDrift(series(9, range(96, (i) => (i % 24 >= 12 && i % 24 < 18 ? 3 : 0))));
    expect(result.kind).toBe("periodic");
    expect(result.details.periodWindows).toBe(24);
    expect(result.details.periodMs).toBe(24 * HOUR);
    expect(result.evidence).toContain("every 24 windows (1d)");
  });

  it("finds temporary drift (a stretch that returned to normal)", () => {
    expectKind("temporary", temporary);
    const result = classifyDrift(series(4, range(48, (i) => (i >= 10 && i < 16 ? 3 : 0))));
    expect(result.kind).toBe("temporary");
    expect(result.details.episodeStart).toBe(10);
    expect(result.details.episodeEnd).toBe(15);
    expect(result.details.normalWindows).toBe(32);
  });

  it("reports none for stable series, whose stray false alarms are chance", () => {
    expectKind("none", stable);
    const noisy = series(3, range(48, () => 0));
    const result = classifyDrift(noisy);
    expect(result.details.driftedWindows).toBe(noisy.filter((p) => p.drifted).length);
    if (result.details.driftedWindows > 0) expect(result.evidence).toContain("consistent with the 5% false-alarm rate");
  });

  it("reports none with the reason when there are too few windows, even if they drifted", () => {
    const points = series(1, [0, 0, 4, 4]);
    const result = classifyDrift(points);
    expect(result.kind).toBe("none");
    expect(result.evidence).toBe(`too few windows to tell a kind: 4 < 6 (${points.filter((p) => p.drifted).length} drifted)`);
    expect(classifyDrift(series(1, [0, 0, 4, 4]), { minWindows: 4 }).details.windows).toBe(4);
  });

  it("reports drift present from the first window on as an instant change before the series", () => {
    const result = classifyDrift(series(2, range(30, () => 3)));
    expect(result.kind).toBe("instant");
    expect(result.details.weak).toBe(true);
    expect(result.evidence).toContain("before the series starts");
  });

  it("orders windows by start whatever order they come in", () => {
    const points = series(6, range(48, (i) => (i >= 24 ? 3 : 0)));
    expect(classifyDrift([...points].reverse())).toEqual(classifyDrift(points));
  });
});

describe("the statistics behind the rules", () => {
  it("binomial tail and the run length that counts", () => {
    // P(X >= 1 | 10, 0.5) = 1 - 0.5^10; P(X >= 3 | 4, 0.5) = 5/16.
    expect(binomialUpperTail(1, 10, 0.5)).toBeCloseTo(1 - 0.5 ** 10, 12);
    expect(binomialUpperTail(3, 4, 0.5)).toBeCloseTo(5 / 16, 12);
    expect(binomialUpperTail(0, 4, 0.5)).toBe(1);
    expect(binomialUpperTail(5, 4, 0.5)).toBe(0);
    expect(significantRunLength(48, 0.05, 0.001)).toBe(4);
    expect(significantRunLength(8, 0.05, 0.001)).toBe(3);
  });

  it("Mann-Kendall matches the textbook values", () => {
    // Strictly increasing n=10: S = 45, var = 10*9*25/18 = 125, z = 44/sqrt(125).
    const up = mannKendall(range(10, (i) => 2 * i + 1));
    expect(up.s).toBe(45);
    expect(up.z).toBeCloseTo(44 / Math.sqrt(125), 12);
    expect(up.slope).toBe(2);
    // Ties: [1,1,2,2]: S = 4, var = (4*3*13 - 2*(2*1*9))/18 = 120/18.
    const tied = mannKendall([1, 1, 2, 2]);
    expect(tied.s).toBe(4);
    expect(tied.z).toBeCloseTo(3 / Math.sqrt(120 / 18), 12);
    expect(mannKendall([3, 3, 3]).pvalue).toBe(1);
  });

  it("severity is 1 at the threshold for tests and distances", () => {
    const base: FeatureDrift = {
      feature: "x",
      kind: "numeric",
      method: "ks",
      statistic: 0.2,
      pvalue: 0.05,
      score: 0.05,
      threshold: 0.05,
      operator: "<",
      drifted: false,
      details: {},
      referenceRows: 100,
      currentRows: 100,
    };
    expect(driftSeverity(base)).toBeCloseTo(1, 12);
    expect(driftSeverity({ ...base, score: 0.05 ** 4 })).toBeCloseTo(2, 12);
    expect(driftSeverity({ ...base, score: 0 })).toBeGreaterThan(10);
    expect(driftSeverity({ ...base, method: "wasserstein_norm", operator: ">=", score: 0.25, threshold: 0.1, pvalue: undefined })).toBeCloseTo(2.5, 12);
    expect(formatDuration(12 * HOUR)).toBe("12h");
    expect(formatDuration(90 * 60_000)).toBe("1.5h");
  });
});
