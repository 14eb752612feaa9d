import { describe, expect, it } from "vitest";
import { MlshipError } from "../../src/core/index.js";
import {
  ADWIN_DEFAULTS, Adwin, DDM_DEFAULTS, Ddm, EDDM_DEFAULTS, Eddm, PAGE_HINKLEY_DEFAULTS, PageHinkley, createDetector,
  restoreDetector,
} from "../../src/monitor/detectors/index.js";
import type { DetectorSignal, DetectorSpec, DriftDetector } from "../../src/monitor/detectors/index.js";

/** Python's `random.Random(seed)` (MT19937, init_by_array, 53-bit `random()`), to replay River's doc examples. */
class PyRandom {
  private mt = new Uint32Array(624);
  private index = 624;
  constructor(seed: number) {
    const mt = this.mt;
    mt[0] = 19650218;
    for (let i = 1; i < 624; i += 1) {
      const prev = mt[i - 1] as number;
      mt[i] = (Math.imul(1812433253, prev ^ (prev >>> 30)) + i) >>> 0;
    }
    const key = [seed >>> 0];
    let i = 1;
    let j = 0;
    for (let k = Math.max(624, key.length); k > 0; k -= 1) {
      const prev = mt[i - 1] as number;
      mt[i] = (((mt[i] as number) ^ Math.imul(prev ^ (prev >>> 30), 1664525)) + (key[j] as number) + j) >>> 0;
      i += 1;
      j += 1;
      if (i >= 624) { mt[0] = mt[623] as number; i = 1; }
      if (j >= key.length) j = 0;
    }
    for (let k = 623; k > 0; k -= 1) {
      const prev = mt[i - 1] as number;
      mt[i] = (((mt[i] as number) ^ Math.imul(prev ^ (prev >>> 30), 1566083941)) - i) >>> 0;
      i += 1;
      if (i >= 624) { mt[0] = mt[623] as number; i = 1; }
    }
    mt[0] = 0x80000000;
  }
  private next32(): number {
    const mt = this.mt;
    if (this.index >= 624) {
      for (let k = 0; k < 624; k += 1) {
        const y = ((mt[k] as number) & 0x80000000) | ((mt[(k + 1) % 624] as number) & 0x7fffffff);
        mt[k] = ((mt[(k + 397) % 624] as number) ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0)) >>> 0;
      }
      this.index = 0;
    }
    let y = mt[this.index++] as number;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }
  random(): number {
    const a = this.next32() >>> 5;
    const b = this.next32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }
  choices<T>(population: readonly T[], k: number, weights?: readonly number[]): T[] {
    const out: T[] = [];
    if (weights === undefined) {
      for (let i = 0; i < k; i += 1) out.push(population[Math.floor(this.random() * population.length)] as T);
      return out;
    }
    const cumulative: number[] = [];
    let sum = 0;
    for (const w of weights) { sum += w; cumulative.push(sum); }
    const total = (cumulative[cumulative.length - 1] as number) + 0.0;
    for (let i = 0; i < k; i += 1) {
      const x = this.random() * total;
      let lo = 0;
      let hi = population.length - 1;
      while (lo < hi) { const mid = (lo + hi) >> 1; if (x < (cumulative[mid] as number)) hi = mid; else lo = mid + 1; }
      out.push(population[lo] as T);
    }
    return out;
  }
}

function bernoulli(rng: PyRandom, p: number): 0 | 1 {
  return rng.random() < p ? 1 : 0;
}

/** Standard normal by Box-Muller on the Python generator (not Python's `gauss`, which is not needed here). */
function normal(rng: PyRandom): number {
  const u1 = rng.random();
  const u2 = rng.random();
  return Math.sqrt(-2 * Math.log(1 - u1)) * Math.cos(2 * Math.PI * u2);
}

/** Indexes at which `detector` signalled a drift over `stream`. */
function driftIndexes(detector: DriftDetector, stream: readonly number[]): number[] {
  const hits: number[] = [];
  stream.forEach((x, i) => {
    if (detector.update(x).drift) hits.push(i);
  });
  return hits;
}

function errorOf(fn: () => unknown): MlshipError {
  try {
    fn();
  } catch (error) {
    if (error instanceof MlshipError) return error;
    throw error;
  }
  throw new Error("expected an MlshipError");
}

/** A Bernoulli error stream: rate `before` up to `changeAt`, then `after`. */
function errorStream(seed: number, length: number, before: number, after: number, changeAt: number): number[] {
  const rng = new PyRandom(seed);
  return Array.from({ length }, (_, i) => bernoulli(rng, i < changeAt ? before : after));
}

const SEEDS = Array.from({ length: 20 }, (_, i) => i + 1);

describe("Python's random, ported for the River replays", () => {
  it("gives Python's numbers for random.Random(12345) and choices", () => {
    // python3 -c "import random; r=random.Random(12345); print(r.random(), r.random())"
    const rng = new PyRandom(12345);
    expect(rng.random()).toBe(0.41661987254534116);
    expect(rng.random()).toBe(0.010169169457068361);
    // r=random.Random(42); r.choices([0,1],k=10); r.choices([0,1],k=10,weights=[0.3,0.7])
    const rng42 = new PyRandom(42);
    expect(rng42.choices([0, 1], 10).join("")).toBe("1000111000");
    expect(rng42.choices([0, 1], 10, [0.3, 0.7]).join("")).toBe("0100110110");
  });
});

describe("River's documented examples give River's documented indexes", () => {
  // The docstrings of river.drift.ADWIN / PageHinkley / binary.DDM / binary.EDDM (River's doctests).
  const riverStream = (): number[] => {
    const rng = new PyRandom(12345);
    return [...rng.choices([0, 1], 1000), ...rng.choices([4, 5, 6, 7], 1000)];
  };
  const riverBits = (): number[] => {
    const rng = new PyRandom(42);
    return [...rng.choices([0, 1], 1000), ...rng.choices([0, 1], 1000, [0.3, 0.7])];
  };
  /** River's doctest loop: the first warning after each drift, and every drift. */
  const warningsAndDrifts = (detector: DriftDetector, stream: readonly number[]): string[] => {
    const lines: string[] = [];
    let printWarning = true;
    stream.forEach((x, i) => {
      const signal = detector.update(x);
      if (signal.warning === true && printWarning) {
        lines.push(`Warning detected at index ${i}`);
        printWarning = false;
      }
      if (signal.drift) {
        lines.push(`Change detected at index ${i}`);
        printWarning = true;
      }
    });
    return lines;
  };

  it("ADWIN: change detected at index 1023, input value 4", () => {
    const stream = riverStream();
    const hits = driftIndexes(new Adwin(), stream);
    expect(hits).toEqual([1023]);
    expect(stream[1023]).toBe(4);
  });

  it("PageHinkley: change detected at index 1006, input value 5", () => {
    const stream = riverStream();
    expect(driftIndexes(new PageHinkley(), stream)).toEqual([1006]);
    expect(stream[1006]).toBe(5);
  });

  it("DDM: warning 1084, change 1334, warning 1492", () => {
    expect(warningsAndDrifts(new Ddm(), riverBits())).toEqual([
      "Warning detected at index 1084",
      "Change detected at index 1334",
      "Warning detected at index 1492",
    ]);
  });

  it("EDDM(alpha=0.8, beta=0.75): warning 1059, change 1278", () => {
    expect(warningsAndDrifts(new Eddm({ alpha: 0.8, beta: 0.75 }), riverBits())).toEqual([
      "Warning detected at index 1059",
      "Change detected at index 1278",
    ]);
  });
});

describe("Page-Hinkley, by hand", () => {
  it("follows the cumulative sums of a short sequence", () => {
    // min_instances=1, delta=0.5, threshold=3, alpha=1 (no forgetting). x̄ is the running mean.
    // t  x  x̄      U = U + (x − x̄ − 0.5)   min U   U − min U   L = L + (x − x̄ + 0.5)  max L
    // 1  1  1      −0.5                      −0.5    0           0.5                     0.5
    // 2  1  1      −1.0                      −1.0    0           1.0                     1.0
    // 3  1  1      −1.5                      −1.5    0           1.5                     1.5
    // 4  1  1      −2.0                      −2.0    0           2.0                     2.0
    // 5  5  1.8    −2 + 3.2 − 0.5 = 0.7      −2.0    2.7 (<3)    2 + 3.2 + 0.5 = 5.7     5.7
    // 6  5  14/6   0.7 + 8/3 − 0.5 = 2.8667  −2.0    4.8667 (>3) → drift
    const ph = new PageHinkley({ min_instances: 1, delta: 0.5, threshold: 3, alpha: 1, mode: "up" });
    const expectedIncrease = [0, 0, 0, 0, 2.7, 4 + 13 / 15];
    const expectedU = [-0.5, -1, -1.5, -2, 0.7, 0.7 + 8 / 3 - 0.5];
    const signals: boolean[] = [];
    [1, 1, 1, 1, 5, 5].forEach((x, i) => {
      signals.push(ph.update(x).drift);
      expect(ph.sums.increase).toBeCloseTo(expectedU[i] as number, 12);
      expect(ph.increaseStatistic).toBeCloseTo(expectedIncrease[i] as number, 12);
    });
    expect(signals).toEqual([false, false, false, false, false, true]);
    expect(ph.estimation).toBeCloseTo(14 / 6, 12);
    expect(ph.sums.decrease).toBeCloseTo(2 + 3.2 + 0.5 + 8 / 3 + 0.5, 12);
    // The next point starts afresh, as River's `_reset` on the update after a drift.
    ph.update(7);
    expect(ph.view).toMatchObject({ n: 1, estimation: 7, drift: false, detections: 1, seen: 7 });
  });

  it("detects a decrease only in modes down and both, and waits for min_instances", () => {
    // 1,1,1,1,-3: x̄ = 0.2 at t=5, L = 2 + (−3.2 + 0.5) = −0.7, max L = 2 → max L − L = 2.7;
    // t=6 (x=−3): x̄ = −2/6, L = −0.7 + (−3 + 1/3 + 0.5) = −2.8667 → 4.8667 > 3.
    const sequence = [1, 1, 1, 1, -3, -3];
    const run = (params: ConstructorParameters<typeof PageHinkley>[0]): number[] => driftIndexes(new PageHinkley(params), sequence);
    const base = { delta: 0.5, threshold: 3, alpha: 1 };
    expect(run({ ...base, min_instances: 1, mode: "down" })).toEqual([5]);
    expect(run({ ...base, min_instances: 1, mode: "both" })).toEqual([5]);
    expect(run({ ...base, min_instances: 1, mode: "up" })).toEqual([]);
    // The statistic is over the threshold at t=6 but only 6 points were seen: no drift before t=7.
    expect(run({ ...base, min_instances: 7, mode: "down" })).toEqual([]);
  });

  it("forgets with alpha < 1", () => {
    // alpha=0.5, delta=0: constant input keeps U at 0; then x=3 after three 1s: x̄=1.5, U = 0.5·0 + 1.5 = 1.5.
    const ph = new PageHinkley({ min_instances: 1, delta: 0, threshold: 100, alpha: 0.5 });
    for (const x of [1, 1, 1]) ph.update(x);
    expect(ph.sums.increase).toBe(0);
    ph.update(3);
    expect(ph.sums.increase).toBeCloseTo(1.5, 12);
    ph.update(3); // x̄ = 9/5 = 1.8, U = 0.75 + 1.2 = 1.95
    expect(ph.sums.increase).toBeCloseTo(1.95, 12);
  });
});

describe("DDM, by hand", () => {
  it("enters the warning zone, then drifts, on a short sequence", () => {
    // warm_start=3. p = error rate, s = √(p(1−p)/n); from n=4 the minimum of p+s is kept.
    // n  x  p      s       p+s     p_min+2s_min       p_min+3s_min
    // 4  0  .25    .2165   .4665   (min: .25,.2165)
    // 5  0  .2     .1789   .3789   (min: .2,.1789) → .5578 / .7367
    // 6  1  .3333  .1925   .5258   no warning (.5258 < .5578)
    // 7  1  .4286  .1870   .6156   warning
    // 8  1  .5     .1768   .6768   warning
    // 9  1  .5556  .1656   .7212   warning (< .7367)
    // 10 1  .6     .1549   .7549   drift (> .7367), warning cleared
    const ddm = new Ddm({ warm_start: 3 });
    const signals = [1, 0, 0, 0, 0, 1, 1, 1, 1, 1].map((x) => ddm.update(x));
    expect(signals.map((s) => s.warning)).toEqual([false, false, false, false, false, false, true, true, true, false]);
    expect(signals.map((s) => s.drift)).toEqual([false, false, false, false, false, false, false, false, false, true]);
    expect(ddm.minimum?.p).toBeCloseTo(0.2, 12);
    expect(ddm.minimum?.s).toBeCloseTo(Math.sqrt(0.16 / 5), 12);
    expect(ddm.estimation).toBeCloseTo(0.6, 12);
    ddm.update(0);
    expect(ddm.view).toMatchObject({ n: 1, estimation: 0, drift: false, warning: false, detections: 1, seen: 11 });
    expect(ddm.minimum).toBeUndefined();
  });

  it("takes booleans and rejects anything but an error bit", () => {
    const ddm = new Ddm();
    ddm.update(true);
    ddm.update(false);
    expect(ddm.estimation).toBe(0.5);
    const error = errorOf(() => ddm.update(0.5));
    expect(error.code).toBe("MLSHIP_ERR_INPUT_INVALID");
    expect(error.field).toBe("x");
  });
});

describe("ADWIN, by hand", () => {
  it("keeps its window as an exponential histogram with exact total and variance", () => {
    // 1..11 with max_buckets=5: at 6, 8 and 10 points the two oldest size-1 buckets merge into a size-2 one.
    const adwin = new Adwin();
    for (let x = 1; x <= 11; x += 1) adwin.update(x);
    const { state } = adwin.serialize();
    expect(state.rows).toEqual([
      { totals: [7, 8, 9, 10, 11], variances: [0, 0, 0, 0, 0] },
      // (1,2), (3,4), (5,6): each pair's squared deviations sum to 0.5.
      { totals: [3, 7, 11], variances: [0.5, 0.5, 0.5] },
    ]);
    expect(adwin.width).toBe(11);
    expect(adwin.total).toBe(66);
    // Σ(x − 6)² for 1..11 = 2·(1+4+9+16+25) = 110.
    expect(adwin.variance).toBeCloseTo(110, 9);
    expect(adwin.estimation).toBe(6);
  });

  it("cuts where River's cut test says so (32 zeros, then ones)", () => {
    // The test runs every 32 points. At 64 points (32 zeros, 32 ones) River's scan skips the newest bucket of each
    // row, so the 32|32 cut is never tried; the nearest, 24 zeros | 8 zeros + 32 ones, has |Δμ| = 0.8 and
    // δ′ = ln(2·ln 64 / 0.002) = 8.3328, m = 1/20 + 1/36 = 0.077778, σ² = 16/64 = 0.25,
    // ε = √(2·m·σ²·δ′) + (2/3)·δ′·m = 0.56924 + 0.43207 = 1.0013 > 0.8: no drift.
    // At 128 points the oldest row holds two 16-zero buckets: cut 32 | 96 has |Δμ| = 1 and
    // δ′ = ln(2·ln 128 / 0.002) = 8.4872, m = 1/28 + 1/92 = 0.046584, σ² = (32·96/128)/128 = 0.1875,
    // ε = 0.38505 + 0.26358 = 0.6486 < 1: drift; the two zero buckets are dropped, leaving the 96 ones.
    const m64 = 1 / 20 + 1 / 36;
    const dp64 = Math.log((2 * Math.log(64)) / 0.002);
    expect(Math.sqrt(2 * m64 * 0.25 * dp64) + (2 / 3) * dp64 * m64).toBeGreaterThan(0.8);
    const m128 = 1 / 28 + 1 / 92;
    const dp128 = Math.log((2 * Math.log(128)) / 0.002);
    expect(Math.sqrt(2 * m128 * 0.1875 * dp128) + (2 / 3) * dp128 * m128).toBeLessThan(1);

    const adwin = new Adwin();
    const stream = Array.from({ length: 200 }, (_, i) => (i < 32 ? 0 : 1));
    const widths: number[] = [];
    const hits: number[] = [];
    stream.forEach((x, i) => {
      if (adwin.update(x).drift) {
        hits.push(i);
        widths.push(adwin.width);
        expect(adwin.estimation).toBe(1);
      }
    });
    expect(hits).toEqual([127]);
    expect(widths).toEqual([96]);
  });

  it("never cuts a constant stream", () => {
    const adwin = new Adwin({ clock: 1 });
    expect(driftIndexes(adwin, Array.from({ length: 3000 }, () => 0.25))).toEqual([]);
    expect(adwin.width).toBe(3000);
    expect(adwin.estimation).toBeCloseTo(0.25, 12);
  });
});

describe("error streams", () => {
  it("a stationary Bernoulli(0.1) stream of 5000 points raises no drift (ADWIN, Page-Hinkley) over 20 seeds", () => {
    for (const seed of SEEDS) {
      const stream = errorStream(seed, 5000, 0.1, 0.1, 5000);
      expect(driftIndexes(new Adwin(), stream), `ADWIN seed ${seed}`).toEqual([]);
      expect(driftIndexes(new PageHinkley(), stream), `Page-Hinkley seed ${seed}`).toEqual([]);
    }
  });

  it("DDM false alarms on a stationary stream stay rare", () => {
    // DDM compares with the best p+s seen, so a lucky run of correct predictions can set a low bar (River's DDM does
    // the same); over 20 streams of 5000 points we allow 2 alarms per 5000 on average.
    let alarms = 0;
    for (const seed of SEEDS) {
      const hits = driftIndexes(new Ddm(), errorStream(seed, 5000, 0.1, 0.1, 5000));
      expect(hits.length, `DDM seed ${seed}`).toBeLessThanOrEqual(3);
      alarms += hits.length;
    }
    expect(alarms).toBeLessThanOrEqual(40);
  });

  it("an abrupt change from 0.1 to 0.4 at t=2000 is detected within a bounded delay", () => {
    // DDM's error rate is cumulative since its last restart, so 2000 points at 0.1 slow it down: over these 20 streams
    // it needed 42..714 points (ADWIN 111..271, checked every 32 points; Page-Hinkley 99..239).
    const bounds: Record<string, number> = { adwin: 2300, page_hinkley: 2300, ddm: 2750 };
    for (const seed of SEEDS) {
      const stream = errorStream(seed, 5000, 0.1, 0.4, 2000);
      for (const kind of ["adwin", "page_hinkley"] as const) {
        const hits = driftIndexes(createDetector({ kind }), stream);
        expect(hits.filter((i) => i < 2000), `${kind} seed ${seed} before the change`).toEqual([]);
        const first = hits.find((i) => i >= 2000);
        expect(first, `${kind} seed ${seed}`).toBeDefined();
        expect(first as number).toBeGreaterThan(2000);
        expect(first as number).toBeLessThan(bounds[kind] as number);
      }
      const ddmHits = driftIndexes(new Ddm(), stream);
      const first = ddmHits.find((i) => i >= 2000);
      expect(first, `ddm seed ${seed}`).toBeDefined();
      expect(first as number).toBeLessThan(bounds.ddm as number);
    }
  });

  it("ADWIN's window shrinks at the change and its estimate moves to the new error rate", () => {
    for (const seed of SEEDS.slice(0, 5)) {
      const adwin = new Adwin();
      const stream = errorStream(seed, 3000, 0.1, 0.4, 2000);
      let detectedAt = -1;
      for (let i = 0; i < stream.length; i += 1) {
        const widthBefore = adwin.width;
        const estimationBefore = adwin.estimation;
        const signal: DetectorSignal = adwin.update(stream[i] as number);
        if (signal.drift && detectedAt < 0) {
          detectedAt = i;
          // The cut dropped the oldest buckets (of the 0.1 regime): the window is shorter and its mean is higher.
          expect(adwin.width).toBeLessThan(widthBefore);
          expect(adwin.estimation).toBeGreaterThan(estimationBefore);
        }
      }
      expect(detectedAt).toBeGreaterThan(2000);
      // After the restart the window holds only the new regime: its mean is near 0.4.
      expect(adwin.estimation).toBeGreaterThan(0.34);
      expect(adwin.estimation).toBeLessThan(0.46);
      expect(adwin.view.detections).toBeGreaterThanOrEqual(1);
    }
  });

  it("DDM warns before it drifts on a gradual increase of the error rate", () => {
    for (const seed of SEEDS.slice(0, 10)) {
      // 500 points at 0.1, then the error rate climbs linearly to 0.5 over 4500 points.
      const rng = new PyRandom(seed);
      const ddm = new Ddm();
      let warnedSinceRestart = false;
      let driftsOnRamp = 0;
      for (let i = 0; i < 5000; i += 1) {
        const rate = i < 500 ? 0.1 : 0.1 + (0.4 * (i - 500)) / 4500;
        const signal = ddm.update(bernoulli(rng, rate));
        if (signal.drift) {
          // A drift on the ramp comes only after the detector passed through its warning zone.
          if (i >= 500) {
            expect(warnedSinceRestart, `seed ${seed}, drift at ${i}`).toBe(true);
            driftsOnRamp += 1;
          }
          warnedSinceRestart = false;
        } else if (signal.warning === true) {
          warnedSinceRestart = true;
        }
      }
      expect(driftsOnRamp, `seed ${seed}`).toBeGreaterThanOrEqual(1);
    }
  });
});

describe("regression residual streams", () => {
  /** Residuals y − ŷ ~ N(0, 1) for 2000 points, then biased by +1 (the model now under-predicts). */
  const residuals = (seed: number): number[] => {
    const rng = new PyRandom(seed);
    return Array.from({ length: 4000 }, (_, i) => (i < 2000 ? 0 : 1) + normal(rng));
  };

  it("ADWIN (defaults) detects the bias once, soon after it starts", () => {
    for (const seed of SEEDS.slice(0, 10)) {
      const adwin = new Adwin();
      const hits = driftIndexes(adwin, residuals(seed));
      expect(hits.length, `seed ${seed}`).toBe(1);
      expect(hits[0]).toBeGreaterThan(2000);
      expect(hits[0]).toBeLessThan(2300);
      expect(adwin.estimation).toBeCloseTo(1, 0);
    }
  });

  it("Page-Hinkley with delta and threshold in the residual's unit detects it within a few dozen points", () => {
    // River's defaults (delta 0.005, threshold 50) suit values of order 0..1; residuals with unit spread need a
    // tolerance of a quarter standard deviation and a threshold of 25 to stay quiet before the change.
    for (const seed of SEEDS) {
      const hits = driftIndexes(createDetector({ kind: "page_hinkley", delta: 0.25, threshold: 25 }), residuals(seed));
      expect(hits.length, `seed ${seed}`).toBe(1);
      expect(hits[0]).toBeGreaterThan(2000);
      expect(hits[0]).toBeLessThan(2100);
    }
    // Mode "down" does not see an increase.
    expect(driftIndexes(createDetector({ kind: "page_hinkley", delta: 0.25, threshold: 25, mode: "down" }), residuals(1))).toEqual([]);
  });
});

describe("serialize and restore", () => {
  const specs: DetectorSpec[] = [
    { kind: "adwin" },
    { kind: "adwin", clock: 1, delta: 0.01 },
    { kind: "page_hinkley" },
    { kind: "ddm" },
    { kind: "eddm" },
  ];

  it("a detector restored from JSON mid-stream continues exactly as the one that never stopped", () => {
    const stream = errorStream(7, 4000, 0.1, 0.4, 2000);
    for (const spec of specs) {
      for (const cut of [0, 1, 1500, 2100, 3999]) {
        const straight = createDetector(spec);
        const first = createDetector(spec);
        const straightSignals = stream.map((x) => straight.update(x));
        const before = stream.slice(0, cut).map((x) => first.update(x));
        const json = JSON.stringify(first.serialize());
        const resumed = restoreDetector(JSON.parse(json));
        expect(resumed.kind).toBe(spec.kind);
        expect(resumed.view).toEqual(first.view);
        const after = stream.slice(cut).map((x) => resumed.update(x));
        expect([...before, ...after], `${JSON.stringify(spec)} cut at ${cut}`).toEqual(straightSignals);
        expect(resumed.view).toEqual(straight.view);
        expect(resumed.serialize()).toEqual(straight.serialize());
      }
    }
  });

  it("the class restore methods take their own snapshots", () => {
    const adwin = new Adwin();
    for (let i = 0; i < 100; i += 1) adwin.update(i % 3);
    expect(Adwin.restore(JSON.parse(JSON.stringify(adwin.serialize()))).serialize()).toEqual(adwin.serialize());
    const ph = new PageHinkley({ mode: "up" });
    expect(PageHinkley.restore(ph.serialize()).params).toEqual(ph.params);
    expect(Ddm.restore(new Ddm().serialize()).view.n).toBe(0);
    expect(Eddm.restore(new Eddm().serialize()).view.n).toBe(0);
  });

  it("rejects a snapshot of another kind or with a broken state, naming the field", () => {
    const adwin = new Adwin();
    for (let i = 0; i < 40; i += 1) adwin.update(i % 2);
    const snapshot = adwin.serialize();
    expect(errorOf(() => Ddm.restore(snapshot)).field).toBe("kind");
    expect(errorOf(() => restoreDetector({ ...snapshot, kind: "cusum" })).field).toBe("kind");
    expect(errorOf(() => restoreDetector({ ...snapshot, format: 2 })).field).toBe("format");
    const wrongWidth = errorOf(() => restoreDetector({ ...snapshot, state: { ...snapshot.state, width: 41 } }));
    expect(wrongWidth.code).toBe("MLSHIP_ERR_CONFIG_INVALID");
    expect(wrongWidth.field).toBe("state.width");
    expect(errorOf(() => restoreDetector({ ...snapshot, state: { ...snapshot.state, total: "x" } })).field).toBe("state.total");
    expect(errorOf(() => restoreDetector({ ...snapshot, params: { delta: 2 } })).field).toBe("delta");
    expect(errorOf(() => restoreDetector(null)).field).toBe("snapshot");
  });
});

describe("createDetector", () => {
  it("fills in River's defaults", () => {
    expect(createDetector({ kind: "adwin" }).params).toEqual({ delta: 0.002, clock: 32, max_buckets: 5, min_window_length: 5, grace_period: 10 });
    expect(createDetector({ kind: "page_hinkley" }).params).toEqual({
      min_instances: 30, delta: 0.005, threshold: 50, alpha: 1 - 0.0001, mode: "both",
    });
    expect(createDetector({ kind: "ddm" }).params).toEqual({ warm_start: 30, warning_threshold: 2, drift_threshold: 3 });
    expect(createDetector({ kind: "eddm" }).params).toEqual({ warm_start: 30, alpha: 0.95, beta: 0.9 });
    expect(ADWIN_DEFAULTS.delta).toBe(0.002);
    expect(PAGE_HINKLEY_DEFAULTS.threshold).toBe(50);
    expect(DDM_DEFAULTS.warm_start).toBe(30);
    expect(EDDM_DEFAULTS.beta).toBe(0.9);
    expect(createDetector({ kind: "adwin", delta: 0.05, clock: 1 }).params).toMatchObject({ delta: 0.05, clock: 1, max_buckets: 5 });
  });

  it("rejects bad specs with MLSHIP_ERR_CONFIG_INVALID naming the field", () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ kind: "kswin" }, "kind"],
      [{}, "kind"],
      [{ kind: "adwin", delta: 0 }, "delta"],
      [{ kind: "adwin", delta: 1.5 }, "delta"],
      [{ kind: "adwin", clock: 0 }, "clock"],
      [{ kind: "adwin", clock: 2.5 }, "clock"],
      [{ kind: "adwin", max_buckets: 1 }, "max_buckets"],
      [{ kind: "adwin", min_window_length: "5" }, "min_window_length"],
      [{ kind: "adwin", grace_period: -1 }, "grace_period"],
      [{ kind: "adwin", treshold: 3 }, "treshold"],
      [{ kind: "page_hinkley", mode: "sideways" }, "mode"],
      [{ kind: "page_hinkley", threshold: 0 }, "threshold"],
      [{ kind: "page_hinkley", alpha: 1.1 }, "alpha"],
      [{ kind: "page_hinkley", delta: Number.NaN }, "delta"],
      [{ kind: "page_hinkley", min_instances: 0 }, "min_instances"],
      [{ kind: "ddm", warm_start: -3 }, "warm_start"],
      [{ kind: "ddm", warning_threshold: 3, drift_threshold: 2 }, "drift_threshold"],
      [{ kind: "eddm", alpha: 0.8, beta: 0.9 }, "alpha"],
    ];
    for (const [spec, field] of cases) {
      const error = errorOf(() => createDetector(spec));
      expect(error.code, JSON.stringify(spec)).toBe("MLSHIP_ERR_CONFIG_INVALID");
      expect(error.field, JSON.stringify(spec)).toBe(field);
      expect(error.message).toContain(field);
    }
  });

  it("rejects non-finite input and forgets everything on reset()", () => {
    const detector = createDetector({ kind: "page_hinkley" });
    const error = errorOf(() => detector.update(Number.POSITIVE_INFINITY));
    expect(error.code).toBe("MLSHIP_ERR_INPUT_INVALID");
    for (const x of errorStream(3, 500, 0.1, 0.9, 100)) detector.update(x);
    expect(detector.view.detections).toBeGreaterThan(0);
    detector.reset();
    expect(detector.view).toEqual({ kind: "page_hinkley", n: 0, estimation: 0, width: 0, drift: false, warning: false, detections: 0, seen: 0 });
    expect(detector.serialize()).toEqual(createDetector({ kind: "page_hinkley" }).serialize());
  });
});
