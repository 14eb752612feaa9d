/**
 * Two-sample Kolmogorov-Smirnov test, a port of `scipy.stats.ks_2samp(alternative="two-sided")` (SciPy 1.10,
 * `scipy/stats/_stats_py.py`, `scipy/stats/_stats_pythran.py`) and of the `kstwo` survival function it uses
 * for the asymptotic p-value (`scipy/stats/_ksstats.py`, `scipy/special/cephes/kolmogorov.c`). The algorithms
 * and their regime boundaries are kept exactly as SciPy has them, so the p-values agree to rounding.
 */
import { MlshipError } from "../../core/index.js";
import { assertFinite, clipProbability, gcd, roundHalfEven, scaleByPowerOfTwo, sortedCopy } from "./numeric.js";

export type KsMethod = "auto" | "exact" | "asymp";

export interface KsResult {
  /** D = max |F1 - F2| over the pooled sample (right-continuous ECDFs, so ties are handled as SciPy does). */
  statistic: number;
  pvalue: number;
  /** The method that produced the p-value (after SciPy's fallbacks). */
  method: "exact" | "asymp";
}

/** SciPy's `MAX_AUTO_N`: `auto` is exact when both samples have at most this many values. */
export const KS_MAX_EXACT_N = 10000;

/** `ks_2samp(a, b, alternative="two-sided", method)`. Values must be finite (drop missing values first). */
export function ks2samp(a: ArrayLike<number>, b: ArrayLike<number>, method: KsMethod = "auto"): KsResult {
  assertFinite(a, "first KS sample");
  assertFinite(b, "second KS sample");
  return ks2sampFromSorted(sortedCopy(a), sortedCopy(b), method);
}

/** The same test on samples that are already sorted ascending (saves the sort when a profile keeps them sorted). */
export function ks2sampFromSorted(sortedA: ArrayLike<number>, sortedB: ArrayLike<number>, method: KsMethod = "auto"): KsResult {
  const n1 = sortedA.length;
  const n2 = sortedB.length;
  if (n1 === 0 || n2 === 0) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "ks_2samp needs two non-empty samples");
  }
  const statistic = ksStatisticSorted(sortedA, sortedB);
  let mode: "exact" | "asymp" = method === "auto" ? (Math.max(n1, n2) <= KS_MAX_EXACT_N ? "exact" : "asymp") : method;
  const g = gcd(n1, n2);
  if (method === "exact" && n1 / g >= 2147483647 / (n2 / g)) mode = "asymp";
  let d = statistic;
  let pvalue = Number.NaN;
  if (mode === "exact") {
    const attempt = attemptExact(n1, n2, g, d);
    d = attempt.d;
    if (attempt.success) pvalue = attempt.probability;
    else mode = "asymp";
  }
  if (mode === "asymp") {
    const [m, n] = n1 >= n2 ? [n1, n2] : [n2, n1];
    const en = (m * n) / (m + n);
    pvalue = kstwoSf(d, roundHalfEven(en));
  }
  return { statistic: d, pvalue: clipProbability(pvalue), method: mode };
}

/**
 * D on sorted samples: walk the pooled distinct values; after every value (all its ties consumed) the ECDFs are
 * count/n, as SciPy's `searchsorted(..., "right")`. D = max(D+, D-) with SciPy's tie-break (D+ unless D- is larger).
 */
function ksStatisticSorted(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n1 = a.length;
  const n2 = b.length;
  let i = 0;
  let j = 0;
  let maxDiff = -Infinity;
  let minDiff = Infinity;
  while (i < n1 || j < n2) {
    const x = j >= n2 || (i < n1 && (a[i] as number) <= (b[j] as number)) ? (a[i] as number) : (b[j] as number);
    while (i < n1 && (a[i] as number) <= x) i++;
    while (j < n2 && (b[j] as number) <= x) j++;
    const diff = i / n1 - j / n2;
    if (diff > maxDiff) maxDiff = diff;
    if (diff < minDiff) minDiff = diff;
  }
  const minS = Math.min(Math.max(-minDiff, 0), 1);
  return minS > maxDiff ? minS : maxDiff;
}

function attemptExact(n1: number, n2: number, g: number, d: number): { success: boolean; d: number; probability: number } {
  const lcm = (n1 / g) * n2;
  const h = roundHalfEven(d * lcm);
  const snapped = h / lcm;
  if (h === 0) return { success: true, d: snapped, probability: 1 };
  const probability = n1 === n2 ? probOutsideSquare(n1, h) : outerProbInsideMethod(n1, n2, g, h);
  // SciPy treats a result outside [0, 1] (or NaN from overflow) as a failed exact computation.
  if (!(probability >= 0 && probability <= 1)) return { success: false, d: snapped, probability };
  return { success: true, d: snapped, probability };
}

/** `_compute_prob_outside_square(n, h)`: P(D_{n,n} >= h/n), Horner-like alternating series. */
function probOutsideSquare(n: number, h: number): number {
  let p = 0;
  let k = Math.floor(n / h);
  while (k >= 0) {
    let p1 = 1;
    for (let j = 0; j < h; j++) p1 = ((n - k * h - j) * p1) / (n + k * h + j + 1);
    p = p1 * (1 - p);
    k -= 1;
  }
  return 2 * p;
}

/** `_compute_outer_prob_inside_method(m, n, g, h)`: 1 - P(paths stay strictly inside |x/m - y/n| < h/lcm). */
function outerProbInsideMethod(m0: number, n0: number, g: number, h: number): number {
  const [m, n] = m0 >= n0 ? [m0, n0] : [n0, m0];
  const mg = Math.floor(m / g);
  const ng = Math.floor(n / g);
  let minj = 0;
  let maxj = Math.min(Math.ceil(h / mg), n + 1);
  let curlen = maxj - minj;
  const lenA = Math.min(2 * maxj + 2, n + 1);
  const A = new Float64Array(lenA).fill(1);
  A.fill(0, minj, maxj);
  for (let i = 1; i <= m; i++) {
    const lastminj = minj;
    const lastlen = curlen;
    minj = Math.max(Math.floor((ng * i - h) / mg) + 1, 0);
    minj = Math.min(minj, n);
    maxj = Math.min(Math.ceil((ng * i + h) / mg), n + 1);
    if (maxj <= minj) return 1;
    let val = minj === 0 ? 0 : 1;
    for (let jj = 0; jj < maxj - minj; jj++) {
      const j = jj + minj;
      const index = jj + minj - lastminj;
      // Reads past the window would be an out-of-bounds read in SciPy's compiled code; report failure instead.
      if (index >= lenA) return Number.NaN;
      val = ((A[index] as number) * i + val * j) / (i + j);
      A[jj] = val;
    }
    curlen = maxj - minj;
    if (lastlen > curlen) A.fill(1, maxj - minj, Math.min(maxj - minj + (lastlen - curlen), lenA));
  }
  return A[maxj - minj - 1] as number;
}

// ---- kstwo: the exact finite-n distribution of the one-sample two-sided KS statistic (Simard & L'Ecuyer 2011).

const E128 = 128;
const EP128 = 2 ** 128;
const EM128 = 2 ** -128;
const SQRT2PI = Math.sqrt(2 * Math.PI);
const LOG_2PI = Math.log(2 * Math.PI);
const MIN_LOG = -708;
const SQRT3 = Math.sqrt(3);
const PI_SQUARED = Math.PI ** 2;
const PI_FOUR = Math.PI ** 4;
const PI_SIX = Math.PI ** 6;
/** B_2j / (2j (2j - 1)) for j = 8..1, as SciPy lists them (here as the nearest doubles). */
const STIRLING_COEFFS = [
  -0.029550653594771242, 0.00641025641025641, -0.0019175269175269176, 0.0008417508417508417,
  -0.0005952380952380953, 0.0007936507936507937, -0.002777777777777778, 0.08333333333333333,
];

/** `scipy.stats.kstwo.sf(d, n)` = P(D_n > d) for integer n >= 1. */
export function kstwoSf(d: number, n: number): number {
  if (Number.isNaN(d) || Number.isNaN(n)) return Number.NaN;
  if (!Number.isInteger(n) || n <= 0) return Number.NaN;
  return kolmognSf(n, d);
}

/** `_kolmogn(n, x, cdf=False)`. */
function kolmognSf(n: number, x: number): number {
  if (x >= 1) return 0;
  if (x <= 0) return 1;
  const t = n * x;
  if (t <= 1) {
    // Ruben-Gambino: 1/2n <= x <= 1/n.
    if (t <= 0.5) return 1;
    let prob: number;
    if (n <= 140) {
      prob = 1;
      for (let i = 1; i <= n; i++) prob *= i * (1 / n) * (2 * t - 1);
    } else {
      prob = Math.exp(logFactorialOverPower(n) + n * Math.log(2 * t - 1));
    }
    return clipProbability(1 - prob);
  }
  if (t >= n - 1) return clipProbability(2 * (1 - x) ** n);
  if (x >= 0.5) return clipProbability(2 * smirnov(n, x));
  const nxSquared = t * x;
  if (n <= 140) {
    if (nxSquared <= 0.754693) return clipProbability(1 - durbinMatrixCdf(n, x));
    if (nxSquared <= 4) return clipProbability(1 - pomeranzCdf(n, x));
    return clipProbability(2 * smirnov(n, x));
  }
  if (nxSquared >= 370) return 0;
  if (nxSquared >= 2.2) return clipProbability(2 * smirnov(n, x));
  let cdf: number;
  if (nxSquared >= 18) cdf = 1;
  else if (n <= 100000 && n * x ** 1.5 <= 1.4) cdf = durbinMatrixCdf(n, x);
  else cdf = pelzGoodCdf(n, x);
  return clipProbability(1 - cdf);
}

/** log(n! / n^n) by Stirling's series with n log n removed up front (`_log_nfactorial_div_n_pow_n`). */
function logFactorialOverPower(n: number): number {
  const rn = 1 / n;
  let poly = 0;
  for (const c of STIRLING_COEFFS) poly = poly * (rn / n) + c;
  return Math.log(n) / 2 - n + LOG_2PI / 2 + rn * poly;
}

/**
 * Cephes `smirnov(n, e)`: exact one-sided P(D+_n > e) (Birnbaum-Tingey sum), in the classic double-precision
 * form. SciPy >= 1.2 evaluates the same sum in double-double arithmetic; the two agree within 1e-9 relative
 * wherever the result exceeds 1e-60 (checked against SciPy in test/monitor/stats.test.ts) and differ only in
 * tails far below any p-value threshold.
 */
export function smirnov(n: number, e: number): number {
  if (!(n > 0 && e >= 0 && e <= 1)) return Number.NaN;
  if (e === 0) return 1;
  const nn = Math.floor(n * (1 - e));
  let p = 0;
  if (n < 1013) {
    let c = 1;
    for (let v = 0; v <= nn; v++) {
      const evn = e + v / n;
      p += c * evn ** (v - 1) * (1 - evn) ** (n - v);
      c *= (n - v) / (v + 1);
    }
  } else {
    // log C(n, v) kept incrementally (Cephes uses lgam for it); terms below exp(-MAXLOG) are dropped as there.
    const maxLog = 709.782712893384; // Cephes MAXLOG = ln(DBL_MAX)
    let logBinomial = 0;
    for (let v = 0; v <= nn; v++) {
      if (v > 0) logBinomial += Math.log(n - v + 1) - Math.log(v);
      const evn = e + v / n;
      const omevn = 1 - evn;
      if (Math.abs(omevn) > 0) {
        const t = logBinomial + (v - 1) * Math.log(evn) + (n - v) * Math.log(omevn);
        if (t > -maxLog) p += Math.exp(t);
      }
    }
  }
  return p * e;
}

/** `_kolmogn_DMTW`: Durbin's matrix algorithm (Marsaglia-Tsang-Wang), the CDF P(D_n <= d). */
function durbinMatrixCdf(n: number, d: number): number {
  if (d >= 1) return 1;
  const nd = n * d;
  if (nd <= 0.5) return 0;
  const k = Math.ceil(nd);
  const h = k - nd;
  const m = 2 * k - 1;
  const v = new Float64Array(m);
  const w = new Float64Array(m);
  let fac = 1;
  for (let j = 1; j <= m; j++) {
    w[j - 1] = fac;
    fac /= j;
    v[j - 1] = (1 - h ** j) * fac;
  }
  const tt = Math.max(2 * h - 1, 0) ** m - 2 * h ** m;
  v[m - 1] = (1 + tt) * fac;
  let H = new Float64Array(m * m);
  for (let i = 1; i < m; i++) {
    for (let row = i - 1; row < m; row++) H[row * m + i] = w[row - i + 1] as number;
  }
  for (let row = 0; row < m; row++) H[row * m] = v[row] as number;
  for (let col = 0; col < m; col++) H[(m - 1) * m + col] = v[m - 1 - col] as number;

  let power = new Float64Array(m * m);
  for (let i = 0; i < m; i++) power[i * m + i] = 1;
  let nn = n;
  let exponent = 0;
  let hExponent = 0;
  while (nn > 0) {
    if (nn % 2) {
      power = matmul(power, H, m);
      exponent += hExponent;
    }
    H = matmul(H, H, m);
    hExponent *= 2;
    if (Math.abs(H[(k - 1) * m + (k - 1)] as number) > EP128) {
      for (let i = 0; i < H.length; i++) H[i] = (H[i] as number) / EP128;
      hExponent += E128;
    }
    nn = Math.floor(nn / 2);
  }
  let p = power[(k - 1) * m + (k - 1)] as number;
  for (let i = 1; i <= n; i++) {
    p = (i * p) / n;
    if (Math.abs(p) < EM128) {
      p *= EP128;
      exponent -= E128;
    }
  }
  if (exponent !== 0) p = scaleByPowerOfTwo(p, exponent);
  return clipProbability(p);
}

function matmul(a: Float64Array, b: Float64Array, m: number): Float64Array<ArrayBuffer> {
  const out = new Float64Array(m * m);
  for (let i = 0; i < m; i++) {
    for (let k = 0; k < m; k++) {
      const aik = a[i * m + k] as number;
      if (aik === 0) continue;
      for (let j = 0; j < m; j++) out[i * m + j] = (out[i * m + j] as number) + aik * (b[k * m + j] as number);
    }
  }
  return out;
}

function pomeranzBounds(i: number, n: number, ll: number, ceilf: number, roundf: number): [number, number] {
  let j1: number;
  let j2: number;
  if (i === 0) {
    j1 = -ll - ceilf - 1;
    j2 = ll + ceilf - 1;
  } else {
    const ip1div2 = Math.floor((i + 1) / 2);
    const ip1mod2 = (i + 1) % 2;
    if (ip1mod2 === 0) {
      if (ip1div2 === n + 1) {
        j1 = n - ll - ceilf - 1;
        j2 = n + ll + ceilf - 1;
      } else {
        j1 = ip1div2 - 1 - ll - roundf - 1;
        j2 = ip1div2 + ll - 1 + ceilf - 1;
      }
    } else {
      j1 = ip1div2 - 1 - ll - 1;
      j2 = ip1div2 + ll + roundf - 1;
    }
  }
  return [Math.max(j1 + 2, 0), Math.min(j2, n)];
}

/** `_kolmogn_Pomeranz`: Pomeranz's recursion, the CDF P(D_n <= x). */
function pomeranzCdf(n: number, x: number): number {
  const t = n * x;
  const ll = Math.floor(t);
  const f = t - ll;
  const g = Math.min(f, 1 - f);
  const ceilf = f > 0 ? 1 : 0;
  const roundf = f > 0.5 ? 1 : 0;
  const npwrs = 2 * (ll + 1);
  const gpower = new Float64Array(npwrs);
  const twogpower = new Float64Array(npwrs);
  const onem2gpower = new Float64Array(npwrs);
  gpower[0] = 1;
  twogpower[0] = 1;
  onem2gpower[0] = 1;
  let exponent = 0;
  const gOverN = g / n;
  const twoGOverN = (2 * g) / n;
  const oneMinusTwoGOverN = (1 - 2 * g) / n;
  for (let m = 1; m < npwrs; m++) {
    gpower[m] = ((gpower[m - 1] as number) * gOverN) / m;
    twogpower[m] = ((twogpower[m - 1] as number) * twoGOverN) / m;
    onem2gpower[m] = ((onem2gpower[m - 1] as number) * oneMinusTwoGOverN) / m;
  }
  let V0: Float64Array = new Float64Array(npwrs);
  let V1: Float64Array = new Float64Array(npwrs);
  V1[0] = 1;
  let V0s = 0;
  let V1s = 0;
  let [j1, j2] = pomeranzBounds(0, n, ll, ceilf, roundf);
  for (let i = 1; i < 2 * n + 2; i++) {
    const k1 = j1;
    [V0, V1] = [V1, V0];
    [V0s, V1s] = [V1s, V0s];
    V1.fill(0);
    [j1, j2] = pomeranzBounds(i, n, ll, ceilf, roundf);
    const pwrs = i === 1 || i === 2 * n + 1 ? gpower : i % 2 ? twogpower : onem2gpower;
    const ln2 = j2 - k1 + 1;
    if (ln2 > 0) {
      const start = k1 - V0s;
      const aLength = Math.min(ln2, npwrs - start);
      const bLength = Math.min(ln2, npwrs);
      const convStart = j1 - k1;
      const convLength = j2 - j1 + 1;
      let maxValue = -Infinity;
      for (let out = 0; out < convLength; out++) {
        const index = convStart + out;
        let sum = 0;
        const lowA = Math.max(0, index - (bLength - 1));
        const highA = Math.min(aLength - 1, index);
        for (let ia = lowA; ia <= highA; ia++) sum += (V0[start + ia] as number) * (pwrs[index - ia] as number);
        V1[out] = sum;
      }
      for (let q = 0; q < npwrs; q++) if ((V1[q] as number) > maxValue) maxValue = V1[q] as number;
      if (maxValue > 0 && maxValue < EM128) {
        for (let q = 0; q < npwrs; q++) V1[q] = (V1[q] as number) * EP128;
        exponent -= E128;
      }
      V1s = V0s + j1 - k1;
    }
  }
  let answer = V1[n - V1s] as number;
  for (let m = 1; m <= n; m++) {
    if (Math.abs(answer) > EP128) {
      answer *= EM128;
      exponent += E128;
    }
    answer *= m;
  }
  if (exponent !== 0) answer = scaleByPowerOfTwo(answer, exponent);
  return clipProbability(answer);
}

/** `_kolmogn_PelzGood`: the Pelz-Good asymptotic series for the CDF (large n). */
function pelzGoodCdf(n: number, x: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const z = Math.sqrt(n) * x;
  const zsquared = z ** 2;
  const zthree = z ** 3;
  const zfour = z ** 4;
  const zsix = z ** 6;
  const qlog = -PI_SQUARED / 8 / zsquared;
  if (qlog < MIN_LOG) return 0;
  let q = Math.exp(qlog);
  const k1a = -zsquared;
  const k1b = PI_SQUARED / 4;
  const k2a = 6 * zsix + 2 * zfour;
  const k2b = ((2 * zfour - 5 * zsquared) * PI_SQUARED) / 4;
  const k2c = (PI_FOUR * (1 - 2 * zsquared)) / 16;
  const k3d = (PI_SIX * (5 - 30 * zsquared)) / 64;
  const k3c = (PI_FOUR * (-60 * zsquared + 212 * zfour)) / 16;
  const k3b = (PI_SQUARED * (135 * zfour - 96 * zsix)) / 4;
  const k3a = -30 * zsix - 90 * z ** 8;
  const K = [0, 0, 0, 0];
  const maxk = Math.ceil((16 * z) / Math.PI);
  for (let k = maxk; k > 0; k--) {
    const m = 2 * k - 1;
    const msquared = m ** 2;
    const mfour = m ** 4;
    const msix = m ** 6;
    const qpower = q ** (8 * k);
    const coeffs = [
      1,
      k1a + k1b * msquared,
      k2a + k2b * msquared + k2c * mfour,
      k3a + k3b * msquared + k3c * mfour + k3d * msix,
    ];
    for (let i = 0; i < 4; i++) K[i] = (K[i] as number) * qpower + (coeffs[i] as number);
  }
  const divisors = [z, 6 * zfour, 72 * z ** 7, 6480 * z ** 10];
  for (let i = 0; i < 4; i++) K[i] = ((K[i] as number) * q * SQRT2PI) / (divisors[i] as number);
  q = Math.exp(-PI_SQUARED / 2 / zsquared);
  const sqrt3z = SQRT3 * z;
  let k2extra = 0;
  let k3extra = 0;
  for (let k = maxk; k > 0; k--) {
    const ksquared = k ** 2;
    const qpower = q ** ksquared;
    const kspi = Math.PI * k;
    k2extra += ksquared * qpower;
    k3extra += (sqrt3z + kspi) * (sqrt3z - kspi) * ksquared * qpower;
  }
  k2extra *= (PI_SQUARED * SQRT2PI) / (-36 * zthree);
  k3extra *= (PI_SQUARED * SQRT2PI) / (216 * zsix);
  K[2] = (K[2] as number) + k2extra;
  K[3] = (K[3] as number) + k3extra;
  let sum = 0;
  for (let i = 0; i < 4; i++) sum += (K[i] as number) / n ** (i / 2);
  return sum;
}
