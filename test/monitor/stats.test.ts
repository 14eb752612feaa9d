/**
 * The drift statistics against SciPy/NumPy: `vectors.json` is written by `scripts/monitor-vectors.py`
 * (SciPy 1.10.1, NumPy 1.24.2). Statistics must agree within 1e-9 relative, p-values within 1e-6 absolute
 * (issue 4, "Correctness"); bin edges and counts exactly.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { ks2samp, ks2sampFromSorted, kstwoSf } from "../../src/monitor/stats/ks.js";
import { jensenShannon, kl, l1, normedWasserstein, psi, tvd, wasserstein } from "../../src/monitor/stats/divergence.js";
import { chi2Contingency, evidentlyChiSquare, evidentlyZTest } from "../../src/monitor/stats/chisquare.js";
import {
  evidentlyBinnedShares,
  fillEmptyBins,
  histogramCounts,
  histogramEdges,
  nannymlBinnedShares,
  type BinRule,
} from "../../src/monitor/stats/binning.js";
import { pairwiseSum, populationStd } from "../../src/monitor/stats/numeric.js";

type Num = number | "inf" | "-inf" | "nan";

interface KsVector {
  name: string;
  a: number[];
  b: number[];
  method: "auto" | "exact" | "asymp";
  expectedMethod: "exact" | "asymp";
  statistic: number;
  pvalue: number;
  asymp?: { statistic: number; pvalue: number };
}

interface Vectors {
  versions: { scipy: string; numpy: string };
  ks: KsVector[];
  kstwo: { d: number; n: number; sf: number }[];
  divergence: {
    p: number[];
    q: number[];
    kl: Num;
    kl2: Num;
    klReverse: Num;
    js: Num;
    js2: Num;
    psiShares: number[];
    psiSharesQ: number[];
    psi: Num;
    l1: Num;
    tvd: Num;
  }[];
  wasserstein: { u: number[]; v: number[]; uWeights?: number[]; vWeights?: number[]; w1: number; normed?: number }[];
  chisquare: {
    goodnessOfFit: { reference: number[]; current: number[]; statistic: Num; pvalue: number }[];
    contingency: { table: number[][]; correction: boolean; statistic: number; pvalue: number; dof: number }[];
    z: { reference: (number | string)[]; current: (number | string)[]; statistic: number; pvalue: number }[];
  };
  binning: {
    probe: number[];
    cases: { name: string; rule: BinRule; values: number[]; edges: number[]; counts: number[]; probeCounts: number[] }[];
  };
  endToEnd: {
    name: string;
    reference: number[];
    current: number[];
    evidently: {
      bins: number;
      sharesFilledReference: number[];
      sharesFilledCurrent: number[];
      psi: number;
      kl: number;
      js: number;
      normedWasserstein: number;
      ksStatistic: number;
      ksPvalue: number;
    };
    nannyml: { bins: number; leftover: number; js: number; wasserstein: number };
  }[];
}

const vectors = JSON.parse(
  readFileSync(fileURLToPath(new URL("./vectors.json", import.meta.url)), "utf8"),
) as Vectors;

function value(x: Num): number {
  if (x === "inf") return Infinity;
  if (x === "-inf") return -Infinity;
  if (x === "nan") return Number.NaN;
  return x;
}

/** Statistics: 1e-9 relative (absolute 1e-12 around 0); infinities must match exactly. */
function expectStatistic(actual: number, expected: Num, label: string): void {
  const e = value(expected);
  if (!Number.isFinite(e)) {
    expect(actual, label).toBe(e);
    return;
  }
  const tolerance = Math.max(1e-9 * Math.abs(e), 1e-12);
  expect(Math.abs(actual - e), `${label}: ${actual} vs ${e}`).toBeLessThanOrEqual(tolerance);
}

/** p-values: 1e-6 absolute. */
function expectPvalue(actual: number, expected: Num, label: string): void {
  const e = value(expected);
  expect(Number.isFinite(actual), `${label}: p-value ${actual}`).toBe(true);
  expect(Math.abs(actual - e), `${label}: ${actual} vs ${e}`).toBeLessThanOrEqual(1e-6);
}

describe("vectors", () => {
  it("were made by the SciPy/NumPy the script documents", () => {
    expect(vectors.versions.scipy).toBe("1.10.1");
    expect(vectors.ks.length).toBeGreaterThanOrEqual(100);
  });
});

describe("ks2samp (scipy.stats.ks_2samp, two-sided)", () => {
  it("matches the reference doc 5.8 example exactly and asymptotically", () => {
    const doc = vectors.ks.find((c) => c.name === "doc 5.8 small exact")!;
    const exact = ks2samp(doc.a, doc.b);
    expect(exact.method).toBe("exact");
    expect(exact.pvalue).toBeCloseTo(0.000565698421827719, 15);
    const asymp = ks2samp(doc.a, doc.b, "asymp");
    expect(asymp.pvalue).toBeCloseTo(0.00048487459781073526, 15);
    expect(kstwoSf(0.58, 11)).toBeCloseTo(0.00048487459781073526, 15);
  });

  it("agrees with SciPy on every stored sample pair (exact, asymptotic, ties, integers, large)", () => {
    let exactCases = 0;
    let asympCases = 0;
    for (const c of vectors.ks) {
      const result = ks2samp(c.a, c.b, c.method);
      expect(result.method, c.name).toBe(c.expectedMethod);
      if (result.method === "exact") exactCases++;
      else asympCases++;
      expectStatistic(result.statistic, c.statistic, `${c.name} D`);
      expectPvalue(result.pvalue, c.pvalue, `${c.name} p`);
      if (c.pvalue > 1e-60) expect(Math.abs(result.pvalue - c.pvalue) / c.pvalue, `${c.name} relative p`).toBeLessThan(1e-9);
      if (c.asymp !== undefined) {
        const asymp = ks2samp(c.a, c.b, "asymp");
        expectStatistic(asymp.statistic, c.asymp.statistic, `${c.name} asymp D`);
        expectPvalue(asymp.pvalue, c.asymp.pvalue, `${c.name} asymp p`);
      }
    }
    expect(exactCases).toBeGreaterThan(50);
    expect(asympCases).toBeGreaterThan(0);
  });

  it("gives the same answer from pre-sorted samples and is symmetric in its arguments", () => {
    const c = vectors.ks.find((k) => k.name.startsWith("ties (1 decimal) n1=100 "))!;
    const sortedA = Float64Array.from(c.a).sort();
    const sortedB = Float64Array.from(c.b).sort();
    expect(ks2sampFromSorted(sortedA, sortedB)).toEqual(ks2samp(c.a, c.b));
    expect(ks2samp(c.b, c.a).pvalue).toBe(ks2samp(c.a, c.b).pvalue);
  });

  it("refuses empty samples and non-finite values", () => {
    expect(() => ks2samp([], [1, 2])).toThrow(/non-empty/);
    expect(() => ks2samp([1, Number.NaN], [1, 2])).toThrow(/non-finite/);
  });
});

describe("kstwoSf (scipy.stats.kstwo.sf) over all of its regimes", () => {
  it("matches SciPy on the grid of n and d", () => {
    for (const c of vectors.kstwo) expectPvalue(kstwoSf(c.d, c.n), c.sf, `kstwo.sf(${c.d}, ${c.n})`);
    // Relative agreement down to 1e-60: the regimes are ports, not approximations. (Below that SciPy's
    // double-double `smirnov` and our double one part ways; see `smirnov` in ks.ts.)
    for (const c of vectors.kstwo.filter((k) => k.sf > 1e-60)) {
      expect(Math.abs(kstwoSf(c.d, c.n) - c.sf) / c.sf, `kstwo.sf(${c.d}, ${c.n})`).toBeLessThan(1e-9);
    }
  });
});

describe("divergences (scipy.stats.entropy, scipy.spatial.distance.jensenshannon, PSI, L1)", () => {
  it("reproduces the reference doc 5.8 table", () => {
    const p = [0.2, 0.5, 0.3];
    const q = [0.1, 0.6, 0.3];
    expect(kl(p, q)).toBeCloseTo(0.047468657715011756, 15);
    expect(kl(p, q, 2)).toBeCloseTo(0.06848279708310309, 15);
    expect(kl([2, 5, 3], [1, 6, 3])).toBeCloseTo(0.047468657715011756, 15);
    expect(kl(p, [0.5, 0.5, 0])).toBe(Infinity);
    expect(psi(p, q)).toBeCloseTo(0.08754687373538998, 15);
    expect(jensenShannon(p, q)).toBeCloseTo(0.10378256108603952, 15);
    expect(jensenShannon(p, q, 2)).toBeCloseTo(0.12465555976169065, 15);
    expect(jensenShannon([1, 0, 0], [0, 1, 0], 2)).toBeCloseTo(1, 15);
    expect(jensenShannon([1, 0], [0.5, 0.5])).toBeCloseTo(0.46450140402245893, 15);
    expect(normedWasserstein([1, 2, 3, 4, 5], [2, 3, 4, 5, 6])).toBeCloseTo(0.7071067811865475, 15);
  });

  it("agrees with SciPy on every stored pair of histograms", () => {
    for (const c of vectors.divergence) {
      const label = `p=${c.p.slice(0, 4).join(",")}`;
      expectStatistic(kl(c.p, c.q), c.kl, `${label} KL`);
      expectStatistic(kl(c.p, c.q, 2), c.kl2, `${label} KL base 2`);
      expectStatistic(kl(c.q, c.p), c.klReverse, `${label} KL reverse`);
      expectStatistic(jensenShannon(c.p, c.q), c.js, `${label} JS`);
      expectStatistic(jensenShannon(c.p, c.q, 2), c.js2, `${label} JS base 2`);
      expectStatistic(psi(c.psiShares, c.psiSharesQ), c.psi, `${label} PSI`);
      expectStatistic(l1(c.p, c.q), c.l1, `${label} L1`);
      expectStatistic(tvd(c.p, c.q), c.tvd, `${label} TVD`);
      const klSum = kl(c.p, c.q) + kl(c.q, c.p);
      if (Number.isFinite(klSum)) expectStatistic(psi(c.psiShares, c.psiSharesQ), klSum, `${label} PSI = KL + KL`);
    }
  });

  it("refuses histograms of different lengths", () => {
    expect(() => kl([1, 2], [1, 2, 3])).toThrow(/bins/);
  });
});

describe("wasserstein (scipy.stats.wasserstein_distance) and Evidently's normed version", () => {
  it("matches the SciPy docstring examples", () => {
    expect(wasserstein([0, 1, 3], [5, 6, 8])).toBeCloseTo(5, 15);
    expect(wasserstein([0, 1], [0, 1], [3, 1], [2, 2])).toBeCloseTo(0.25, 15);
    expect(wasserstein([3.4, 3.9, 7.5, 7.8], [4.5, 1.4], [1.4, 0.9, 3.1, 7.2], [3.2, 3.5])).toBeCloseTo(4.0781331438047861, 14);
  });

  it("agrees with SciPy with and without weights, with ties", () => {
    for (const c of vectors.wasserstein) {
      const label = `u[${c.u.length}] v[${c.v.length}]${c.uWeights ? " weighted" : ""}`;
      expectStatistic(wasserstein(c.u, c.v, c.uWeights, c.vWeights), c.w1, label);
      if (c.normed !== undefined) expectStatistic(normedWasserstein(c.u, c.v), c.normed, `${label} normed`);
    }
  });

  it("normalises by the population std with Evidently's 0.001 floor", () => {
    expect(populationStd([1, 2, 3, 4, 5])).toBeCloseTo(Math.SQRT2, 15);
    expect(normedWasserstein([2, 2, 2], [2, 2, 3])).toBeCloseTo(wasserstein([2, 2, 2], [2, 2, 3]) / 0.001, 9);
  });
});

describe("chi-square and Z tests", () => {
  it("Evidently's goodness of fit matches scipy.stats.chisquare(cur, ref * n_cur / n_ref)", () => {
    const doc = evidentlyChiSquare([50, 30, 20], [30, 40, 30]);
    expect(doc.statistic).toBeCloseTo(16.3333333333, 9);
    expect(doc.pvalue).toBeCloseTo(0.0002839629839032563, 12);
    for (const c of vectors.chisquare.goodnessOfFit) {
      const result = evidentlyChiSquare(c.reference, c.current);
      expectStatistic(result.statistic, c.statistic, `GOF ${c.reference.join(",")}`);
      expectPvalue(result.pvalue, c.pvalue, `GOF ${c.reference.join(",")}`);
    }
  });

  it("a category only in the current data gives an infinite statistic and p = 0", () => {
    const result = evidentlyChiSquare([5, 0, 7], [3, 2, 9]);
    expect(result.statistic).toBe(Infinity);
    expect(result.pvalue).toBe(0);
  });

  it("chi2Contingency matches scipy (Yates for dof 1, none otherwise, dof 0 -> p 1)", () => {
    const doc = chi2Contingency([[50, 50], [30, 70]]);
    expect(doc.corrected).toBe(true);
    expect(doc.pvalue).toBeCloseTo(0.006098945931214352, 12);
    expect(chi2Contingency([[50, 50], [30, 70]], false).pvalue).toBeCloseTo(0.003892417122778637, 12);
    for (const c of vectors.chisquare.contingency) {
      const result = chi2Contingency(c.table, c.correction);
      const label = `${JSON.stringify(c.table)} correction=${c.correction}`;
      expect(result.dof, label).toBe(c.dof);
      expectStatistic(result.statistic, c.statistic, label);
      expectPvalue(result.pvalue, c.pvalue, label);
    }
    expect(() => chi2Contingency([[0, 1], [0, 2]])).toThrow(/expected frequency/);
  });

  it("Evidently's Z-test matches its formula with scipy.stats.norm", () => {
    for (const c of vectors.chisquare.z) {
      const result = evidentlyZTest(c.reference, c.current);
      expectStatistic(result.statistic, c.statistic, `z ${c.reference.length}/${c.current.length}`);
      expectPvalue(result.pvalue, c.pvalue, `z ${c.reference.length}/${c.current.length}`);
    }
    expect(evidentlyZTest([0, 0, 1], [1, 1, 0]).baseline).toBe(0);
  });
});

describe("binning (np.histogram_bin_edges / np.histogram)", () => {
  it("Sturges and Doane edges and counts equal NumPy's, including constant and tiny arrays", () => {
    for (const c of vectors.binning.cases) {
      const edges = histogramEdges(c.values, c.rule);
      expect(edges.length, `${c.name} ${c.rule} bins`).toBe(c.edges.length);
      edges.forEach((edge, i) => expectStatistic(edge, c.edges[i] as number, `${c.name} ${c.rule} edge ${i}`));
      expect(histogramCounts(c.values, c.edges).counts, `${c.name} ${c.rule} counts`).toEqual(c.counts);
      const probe = histogramCounts(vectors.binning.probe, c.edges);
      expect(probe.counts, `${c.name} ${c.rule} probe counts`).toEqual(c.probeCounts);
      expect(probe.below + probe.above + pairwiseSum(probe.counts)).toBe(vectors.binning.probe.length);
    }
  });

  it("the reference doc 5.8 sizes give Sturges' bin counts", () => {
    for (const [n, bins] of [[100, 8], [1000, 11], [10000, 15], [100000, 18]] as const) {
      const values = Array.from({ length: n }, (_, i) => Math.sin(i) * 3);
      expect(histogramEdges(values, "sturges").length - 1).toBe(bins);
    }
  });

  it("fills empty bins by Evidently's rule", () => {
    expect(fillEmptyBins([0.5, 0.5, 0]).shares).toEqual([0.5, 0.5, 0.0001]);
    expect(fillEmptyBins([0.99995, 0.00005, 0]).shares[2]).toBeCloseTo(0.00005 / 1e6, 20);
    expect(fillEmptyBins([0.5, 0.5]).epsilon).toBeUndefined();
  });
});

describe("end to end: Evidently and NannyML binning paths", () => {
  it("matches the reference doc 5.8 numbers", () => {
    const doc = vectors.endToEnd.find((c) => c.name === "doc 5.8")!;
    const filled = evidentlyBinnedShares(doc.reference, doc.current, true, true);
    expect(filled.bins).toBe(10);
    expect(psi(filled.reference, filled.current)).toBeCloseTo(0.3180600159055562, 14);
    expect(kl(filled.reference, filled.current)).toBeCloseTo(0.21190143190711122, 14);
    const plain = evidentlyBinnedShares(doc.reference, doc.current, true, false);
    expect(jensenShannon(plain.reference, plain.current)).toBeCloseTo(0.17838319072250236, 14);
    expect(normedWasserstein(doc.reference, doc.current)).toBeCloseTo(0.26144986647585594, 14);
    expect(ks2samp(doc.reference, doc.current).pvalue).toBeCloseTo(0.35846399889050873, 12);
    const nanny = nannymlBinnedShares(doc.reference, doc.current);
    expect(nanny.bins).toBe(10);
    expect(nanny.leftover).toBeCloseTo(0.06, 12);
    expect(jensenShannon(nanny.reference, nanny.current, 2)).toBeCloseTo(0.23942333495592363, 14);
    expect(wasserstein(doc.reference, doc.current)).toBeCloseTo(0.76, 12);
  });

  it("agrees with the Python port of both paths on every stored case", () => {
    for (const c of vectors.endToEnd) {
      const filled = evidentlyBinnedShares(c.reference, c.current, true, true);
      const plain = evidentlyBinnedShares(c.reference, c.current, true, false);
      expect(plain.bins, c.name).toBe(c.evidently.bins);
      filled.reference.forEach((s, i) => expectStatistic(s, c.evidently.sharesFilledReference[i] as number, `${c.name} ref share ${i}`));
      filled.current.forEach((s, i) => expectStatistic(s, c.evidently.sharesFilledCurrent[i] as number, `${c.name} cur share ${i}`));
      expectStatistic(psi(filled.reference, filled.current), c.evidently.psi, `${c.name} PSI`);
      expectStatistic(kl(filled.reference, filled.current), c.evidently.kl, `${c.name} KL`);
      expectStatistic(jensenShannon(plain.reference, plain.current), c.evidently.js, `${c.name} JS`);
      expectStatistic(normedWasserstein(c.reference, c.current), c.evidently.normedWasserstein, `${c.name} normed W1`);
      const ks = ks2samp(c.reference, c.current);
      expectStatistic(ks.statistic, c.evidently.ksStatistic, `${c.name} KS D`);
      expectPvalue(ks.pvalue, c.evidently.ksPvalue, `${c.name} KS p`);
      const nanny = nannymlBinnedShares(c.reference, c.current);
      expect(nanny.bins, `${c.name} NannyML bins`).toBe(c.nannyml.bins);
      expectStatistic(nanny.leftover ?? 0, c.nannyml.leftover, `${c.name} leftover`);
      expectStatistic(jensenShannon(nanny.reference, nanny.current, 2), c.nannyml.js, `${c.name} NannyML JS`);
      expectStatistic(wasserstein(c.reference, c.current), c.nannyml.wasserstein, `${c.name} W1`);
    }
  });
});
