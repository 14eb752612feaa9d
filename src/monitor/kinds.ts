/**
 * The kind of drift a feature (or a prediction output) shows over a series of windows, with the evidence in words.
 *
 * Input: one point per window, oldest first: `start` (epoch ms), `score` (a drift severity that grows with drift;
 * `driftSeverity` makes one from a FeatureDrift: 1 = at the threshold) and `drifted` (the window's test verdict).
 * Windows without a verdict (too few rows) are left out by the caller.
 *
 * The rules, applied in this order (defaults in brackets, all in `ClassifyOptions`):
 *
 * 1. **none, too few windows**: fewer than `minWindows` [6] points: no shape can be told apart.
 * 2. **none, chance**: a stable feature is still flagged in about `falseAlarmRate` [0.05, the test's alpha] of
 *    its windows. The drifted flags count as real only when either the binomial tail
 *    P(X >= drifted | n, falseAlarmRate) is below `significance` [0.001], or the longest run of consecutive
 *    drifted windows is at least r, the smallest r >= 2 with (n - r + 1) * falseAlarmRate^r < significance
 *    (r = 4 for 48 windows, 3 for 8). Otherwise: none ("consistent with the false-alarm rate").
 * 3. **periodic**: candidate periods P (2 <= P <= n/2) are the local peaks of the autocorrelation of the
 *    detrended scores (residuals of a least-squares line, so that a trend does not pass for a cycle) with
 *    r(P) >= 2.58 / sqrt(n) (99% white-noise bound) standing >= 0.3 above the lowest autocorrelation at a shorter
 *    lag, strongest first; then the median spacing of the starts of >= 3 drifted episodes (runs of drifted
 *    windows, runs split by one undrifted window joined) when r there is >= 1.96 / sqrt(n). A candidate is the
 *    period when the flags folded by P (phase i collects windows i, i + P, i + 2P, ...) show a recurring
 *    pattern: some phases drifted in >= 75% of their cycles, some in <= 25%, and those two groups make up at
 *    least half of the phases (a step or a trend drifts every phase in the later cycles; a single stretch drifts
 *    a phase in one cycle only). There must be >= 2 episodes. Evidence: the period in windows and in time
 *    (windows x the median spacing of window starts), the autocorrelation and the folded pattern.
 * 4. **temporary**: the main episode (the one with the most drifted windows, then the highest total score; runs
 *    joined as above) holds at least r drifted windows (the run length of rule 2, so the episode alone is beyond
 *    chance) and is followed by at least k windows (k = `tailWindows`, default max(2, ceil(n / 10))) whose flags look like chance by the test of rule 2
 *    (binomial tail >= significance and no significant run): a drifted stretch that returned to normal.
 *    Evidence: the episode, its mean score against the rest, and how many windows have passed since it ended.
 * 5. **instant**: the change point is the split m (both sides >= 2 windows) that minimises the residual sum of
 *    squares of a two-level step fitted to the scores (binary segmentation, one step). Instant when the level
 *    rises, >= 75% of the windows from m on are drifted and <= 25% before, and the step fits clearly better than
 *    a straight line: RSS(step) <= `stepRatio` [0.5] x RSS(line). Evidence: the window (and time) where it
 *    started and the before/after levels.
 * 6. **gradual**: a Mann-Kendall trend test on the scores (normal approximation with the tie correction and
 *    continuity correction, two-sided) has p < `trendAlpha` [0.05] with a positive Sen's slope, the drifted
 *    share of the second half exceeds that of the first (drift appears late), and no step dominates
 *    (RSS(step) > stepRatio x RSS(line)). Evidence: p, Sen's slope per window and per hour, the shares.
 * 7. Leftovers: a rising step that dominates (rule 5's ratio) but whose flags flicker is instant (`weak`);
 *    drifted in >= 75% of all windows is an instant change before the series began (`weak`). When
 *    the second half's drifted share exceeds the first's by >= 0.25, the closest shape is named and flagged
 *    `weak`: gradual when Sen's slope is positive, else instant. Otherwise the drifted windows are more than
 *    chance explains but scattered with no shape in time: kind none, `scattered: true` (a mild difference
 *    from the reference all along, e.g. production drawn from a slightly different population, not a change).
 */
import { erfc } from "./stats/special.js";
import type { FeatureDrift } from "./types.js";
import type { WindowResult } from "./windows.js";

export type DriftKind = "none" | "instant" | "gradual" | "periodic" | "temporary";

export interface DriftPoint {
  /** Window start, epoch ms. */
  start: number;
  /** Drift severity: grows with drift (see `driftSeverity`). */
  score: number;
  drifted: boolean;
}

export interface ClassifyOptions {
  /** Fewer windows than this are "none, too few windows". Default 6. */
  minWindows?: number;
  /** Share of windows a stable feature is flagged in by chance (the test's alpha). Default 0.05. */
  falseAlarmRate?: number;
  /** How unlikely under chance the drifted flags must be to count as real drift. Default 0.001. */
  significance?: number;
  /** Mann-Kendall p-value below which a trend counts. Default 0.05. */
  trendAlpha?: number;
  /** A step dominates when RSS(step) <= stepRatio x RSS(line). Default 0.5. */
  stepRatio?: number;
  /** Undrifted windows at the end that make drift temporary. Default max(2, ceil(n / 10)). */
  tailWindows?: number;
}

export interface DriftKindDetails {
  windows: number;
  driftedWindows: number;
  /** Binomial tail P(X >= driftedWindows) under the false-alarm rate. */
  chance: number;
  longestRun: number;
  /** The run length that alone counts as real drift for this many windows. */
  significantRun: number;
  /** The closest shape was chosen; the evidence is not clear-cut. */
  weak?: boolean;
  /** More drifted windows than chance explains, but without a shape in time (kind none). */
  scattered?: boolean;
  /** Instant: the first window after the change point, its start (ISO), the mean scores before and after. */
  changeIndex?: number;
  changeStart?: string;
  levelBefore?: number;
  levelAfter?: number;
  stepRatio?: number;
  /** Gradual: Mann-Kendall p, Sen's slope per window and per hour. */
  trendPvalue?: number;
  senSlope?: number;
  senSlopePerHour?: number;
  /** Periodic: the period in windows and in ms, the autocorrelation at it. */
  periodWindows?: number;
  periodMs?: number;
  autocorrelation?: number;
  episodes?: number;
  /** Temporary: the episode (indexes, inclusive) and the windows since it ended. */
  episodeStart?: number;
  episodeEnd?: number;
  normalWindows?: number;
}

export interface DriftKindResult {
  kind: DriftKind;
  evidence: string;
  details: DriftKindDetails;
}

const DEFAULTS = {
  minWindows: 6,
  falseAlarmRate: 0.05,
  significance: 0.001,
  trendAlpha: 0.05,
  stepRatio: 0.5,
};
const MIN_SEGMENT = 2;
const EPISODE_SHARE = 0.75;
/** In the leftovers, drift counts as late when the second half's drifted share exceeds the first's by this. */
const LATE_MARGIN = 0.25;
/** A phase of the folded cycle is drifted when it drifted in >= 75% of cycles, normal when in <= 25%. */
const FOLD_HIGH = 0.75;
const FOLD_LOW = 0.25;
const ACF_Z = 2.58;
const FLAG_ACF_Z = 1.96;
const ACF_RISE = 0.3;
const HOUR_MS = 3_600_000;

/**
 * A FeatureDrift as one number that grows with drift, 1 at the threshold: for tests sqrt(ln p / ln threshold)
 * (roughly proportional to the effect size, as -ln p grows with its square), for distances statistic / threshold.
 */
export function driftSeverity(drift: FeatureDrift): number {
  if (drift.operator === "<") {
    const p = Math.max(drift.score, Number.MIN_VALUE);
    return Math.sqrt(Math.log(p) / Math.log(drift.threshold));
  }
  return drift.threshold > 0 ? drift.score / drift.threshold : drift.score;
}

/** P(X >= k) for X ~ Binomial(n, p), summed exactly (n is a count of windows). */
export function binomialUpperTail(k: number, n: number, p: number): number {
  if (k <= 0) return 1;
  if (k > n) return 0;
  let term = Math.pow(1 - p, n);
  let below = 0;
  for (let i = 0; i < k; i++) {
    below += term;
    term = (term * (n - i) * p) / ((i + 1) * (1 - p));
  }
  return Math.max(0, Math.min(1, 1 - below));
}

/** The smallest run length r >= 2 that alone is rarer than `significance` among n windows. */
export function significantRunLength(n: number, falseAlarmRate: number, significance: number): number {
  for (let r = 2; r <= n; r++) if ((n - r + 1) * Math.pow(falseAlarmRate, r) < significance) return r;
  return n + 1;
}

export interface MannKendall {
  s: number;
  z: number;
  pvalue: number;
  /** Sen's slope: median of pairwise slopes, per index step. */
  slope: number;
}

/** Mann-Kendall trend test (two-sided, normal approximation with tie and continuity corrections) and Sen's slope. */
export function mannKendall(values: readonly number[]): MannKendall {
  const n = values.length;
  let s = 0;
  const slopes: number[] = [];
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const d = (values[j] as number) - (values[i] as number);
      s += Math.sign(d);
      slopes.push(d / (j - i));
    }
  }
  const ties = new Map<number, number>();
  for (const v of values) ties.set(v, (ties.get(v) ?? 0) + 1);
  let tieTerm = 0;
  for (const t of ties.values()) tieTerm += t * (t - 1) * (2 * t + 5);
  const variance = (n * (n - 1) * (2 * n + 5) - tieTerm) / 18;
  const z = variance <= 0 ? 0 : s > 0 ? (s - 1) / Math.sqrt(variance) : s < 0 ? (s + 1) / Math.sqrt(variance) : 0;
  slopes.sort((a, b) => a - b);
  return { s, z, pvalue: erfc(Math.abs(z) / Math.SQRT2), slope: median(slopes) };
}

function median(sorted: readonly number[]): number {
  if (sorted.length === 0) return 0;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

function mean(values: readonly number[], from = 0, to = values.length): number {
  let sum = 0;
  for (let i = from; i < to; i++) sum += values[i] as number;
  return to > from ? sum / (to - from) : 0;
}

function sumSquares(values: readonly number[], from: number, to: number): number {
  const m = mean(values, from, to);
  let sum = 0;
  for (let i = from; i < to; i++) sum += ((values[i] as number) - m) ** 2;
  return sum;
}

/** The residuals of the least-squares line through (index, value). */
function lineResiduals(values: readonly number[]): number[] {
  const n = values.length;
  const xMean = (n - 1) / 2;
  const yMean = mean(values);
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (i - xMean) * ((values[i] as number) - yMean);
    sxx += (i - xMean) ** 2;
  }
  const slope = sxx === 0 ? 0 : sxy / sxx;
  return values.map((v, i) => v - (yMean + slope * (i - xMean)));
}

function lineRss(values: readonly number[]): number {
  let rss = 0;
  for (const r of lineResiduals(values)) rss += r * r;
  return rss;
}

interface Step {
  index: number;
  before: number;
  after: number;
  rss: number;
}

/** The one-step change point: the split minimising the two-level RSS, both sides >= MIN_SEGMENT windows. */
function bestStep(values: readonly number[]): Step | undefined {
  let best: Step | undefined;
  for (let m = MIN_SEGMENT; m <= values.length - MIN_SEGMENT; m++) {
    const rss = sumSquares(values, 0, m) + sumSquares(values, m, values.length);
    if (best === undefined || rss < best.rss) best = { index: m, before: mean(values, 0, m), after: mean(values, m, values.length), rss };
  }
  return best;
}

function autocorrelation(values: readonly number[], lag: number): number {
  const n = values.length;
  const m = mean(values);
  let denominator = 0;
  for (const v of values) denominator += (v - m) ** 2;
  if (denominator === 0) return 0;
  let numerator = 0;
  for (let i = 0; i + lag < n; i++) numerator += ((values[i] as number) - m) * ((values[i + lag] as number) - m);
  return numerator / denominator;
}

interface Episode {
  start: number;
  /** Inclusive. */
  end: number;
}

/** Runs of drifted windows; with `bridge`, runs split by a single undrifted window are joined. */
function episodesOf(flags: readonly boolean[], bridge: boolean): Episode[] {
  const runs: Episode[] = [];
  flags.forEach((drifted, i) => {
    if (!drifted) return;
    const last = runs[runs.length - 1];
    if (last !== undefined && (last.end === i - 1 || (bridge && last.end === i - 2))) last.end = i;
    else runs.push({ start: i, end: i });
  });
  return runs;
}

function fmt(value: number): string {
  if (value === 0) return "0";
  const magnitude = Math.abs(value);
  return magnitude >= 1e4 || magnitude < 1e-3 ? value.toExponential(2) : Number(value.toPrecision(3)).toString();
}

/** A duration as the largest whole unit that fits ("12h", "1d", "90m" stays "1.5h"). */
export function formatDuration(ms: number): string {
  const units: [string, number][] = [
    ["d", 86_400_000],
    ["h", HOUR_MS],
    ["m", 60_000],
    ["s", 1000],
  ];
  for (const [unit, size] of units) if (ms >= size) return `${fmt(ms / size)}${unit}`;
  return `${fmt(ms)}ms`;
}

function windowName(points: readonly DriftPoint[], index: number): string {
  const point = points[index];
  return point === undefined ? `window ${index}` : `window ${index} (${new Date(point.start).toISOString()})`;
}

/** Median spacing of the window starts, ms (the time one window index stands for). */
function spacing(points: readonly DriftPoint[]): number {
  const gaps: number[] = [];
  for (let i = 1; i < points.length; i++) gaps.push((points[i] as DriftPoint).start - (points[i - 1] as DriftPoint).start);
  gaps.sort((a, b) => a - b);
  return median(gaps);
}

interface Periodicity {
  periodWindows: number;
  autocorrelation: number;
  episodes: Episode[];
  how: string;
}

interface Fold {
  /** Per phase of the cycle: the share of cycles in which that window drifted. */
  shares: number[];
  high: number[];
  low: number[];
}

/** The drifted flags folded by `period`: phase i collects windows i, i + period, i + 2 period, ... */
function fold(flags: readonly boolean[], period: number): Fold {
  const shares = Array.from({ length: period }, (_, phase) => {
    let drifted = 0;
    let cycles = 0;
    for (let i = phase; i < flags.length; i += period) {
      cycles++;
      if (flags[i] === true) drifted++;
    }
    return cycles === 0 ? 0 : drifted / cycles;
  });
  const phases = shares.map((_, i) => i);
  return { shares, high: phases.filter((i) => (shares[i] as number) >= FOLD_HIGH), low: phases.filter((i) => (shares[i] as number) <= FOLD_LOW) };
}

/** "3-5, 9" for phase indexes. */
function phaseRanges(phases: readonly number[]): string {
  const parts: string[] = [];
  let from = phases[0];
  for (let k = 1; k <= phases.length; k++) {
    const previous = phases[k - 1] as number;
    const here = phases[k];
    if (here === previous + 1) continue;
    parts.push(from === previous ? `${previous}` : `${from}-${previous}`);
    from = here;
  }
  return parts.join(", ");
}

function findPeriod(series: readonly number[], flags: readonly boolean[]): Periodicity | undefined {
  const n = series.length;
  // Detrended, so that a trend (whose autocorrelation is high at every lag) does not pass for a cycle.
  const scores = lineResiduals(series);
  const episodes = episodesOf(flags, true);
  if (episodes.length < 2) return undefined;
  const maxLag = Math.floor(n / 2);
  const acf = [1];
  for (let lag = 1; lag <= maxLag + 1; lag++) acf.push(lag < n ? autocorrelation(scores, lag) : 0);

  const candidates: { period: number; how: string }[] = [];
  const peaks: number[] = [];
  for (let lag = 2; lag <= maxLag; lag++) {
    const r = acf[lag] as number;
    if (r < ACF_Z / Math.sqrt(n) || r < (acf[lag - 1] as number) || r < (acf[lag + 1] as number)) continue;
    if (r - Math.min(...acf.slice(1, lag)) < ACF_RISE) continue;
    peaks.push(lag);
  }
  peaks.sort((a, b) => (acf[b] as number) - (acf[a] as number));
  for (const lag of peaks) candidates.push({ period: lag, how: `the autocorrelation of the detrended scores peaks at lag ${lag} (${fmt(acf[lag] as number)})` });
  if (episodes.length >= 3) {
    const spacings = episodes.slice(1).map((e, i) => e.start - (episodes[i] as Episode).start);
    const typical = Math.round(median([...spacings].sort((a, b) => a - b)));
    if (typical >= 2 && typical <= maxLag && (acf[typical] as number) >= FLAG_ACF_Z / Math.sqrt(n)) {
      candidates.push({ period: typical, how: `${episodes.length} drifted episodes, starts spaced ${spacings.join(", ")} windows apart` });
    }
  }
  for (const { period, how } of candidates) {
    const folded = fold(flags, period);
    if (folded.high.length === 0 || folded.low.length === 0 || folded.high.length + folded.low.length < period / 2) continue;
    const highShare = mean(folded.high.map((i) => folded.shares[i] as number));
    const lowShare = mean(folded.low.map((i) => folded.shares[i] as number));
    const pattern = `folded by ${period} windows, phases ${phaseRanges(folded.high)} drifted in ${fmt(highShare * 100)}% of cycles and phases ${phaseRanges(folded.low)} in ${fmt(lowShare * 100)}%`;
    return { periodWindows: period, autocorrelation: acf[period] as number, episodes, how: `${how}; ${pattern}` };
  }
  return undefined;
}

/** Classifies one series of windows (oldest first) by the rules in this file's doc comment. */
export function classifyDrift(series: readonly DriftPoint[], options: ClassifyOptions = {}): DriftKindResult {
  const minWindows = options.minWindows ?? DEFAULTS.minWindows;
  const falseAlarmRate = options.falseAlarmRate ?? DEFAULTS.falseAlarmRate;
  const significance = options.significance ?? DEFAULTS.significance;
  const trendAlpha = options.trendAlpha ?? DEFAULTS.trendAlpha;
  const stepRatioLimit = options.stepRatio ?? DEFAULTS.stepRatio;
  const points = [...series].sort((a, b) => a.start - b.start);
  const n = points.length;
  const scores = points.map((p) => p.score);
  const flags = points.map((p) => p.drifted);
  const driftedWindows = flags.filter(Boolean).length;
  const runs = episodesOf(flags, false);
  const longestRun = Math.max(0, ...runs.map((r) => r.end - r.start + 1));
  const details: DriftKindDetails = {
    windows: n,
    driftedWindows,
    chance: binomialUpperTail(driftedWindows, n, falseAlarmRate),
    longestRun,
    significantRun: significantRunLength(n, falseAlarmRate, significance),
  };
  const result = (kind: DriftKind, evidence: string, extra: Partial<DriftKindDetails> = {}): DriftKindResult => ({ kind, evidence, details: { ...details, ...extra } });

  if (n < minWindows) return result("none", `too few windows to tell a kind: ${n} < ${minWindows} (${driftedWindows} drifted)`);
  if (driftedWindows === 0) return result("none", `no window drifted (0 of ${n})`);
  if (details.chance >= significance && longestRun < details.significantRun) {
    return result(
      "none",
      `${driftedWindows} of ${n} windows drifted, longest run ${longestRun}: consistent with the ${fmt(falseAlarmRate * 100)}% false-alarm rate ` +
        `(chance ${fmt(details.chance)} >= ${significance}; a run of ${details.significantRun} would count)`,
    );
  }

  const every = spacing(points);
  const period = findPeriod(scores, flags);
  if (period !== undefined) {
    const starts = period.episodes.map((e) => e.start).join(", ");
    return result(
      "periodic",
      `recurring drift every ${period.periodWindows} windows (${formatDuration(period.periodWindows * every)}): ${period.how}; episodes start at windows ${starts}`,
      {
        periodWindows: period.periodWindows,
        periodMs: period.periodWindows * every,
        episodes: period.episodes.length,
        autocorrelation: period.autocorrelation,
      },
    );
  }

  const tail = options.tailWindows ?? Math.max(2, Math.ceil(n / 10));
  const episodes = episodesOf(flags, true);
  // The main episode: the most drifted windows, then the highest total score (a stray pair joined across a gap
  // spans more windows than it drifted in).
  const weight = (e: Episode): [number, number] => [flags.slice(e.start, e.end + 1).filter(Boolean).length, mean(scores, e.start, e.end + 1) * (e.end - e.start + 1)];
  const episode = episodes.reduce((a, b) => {
    const [da, sa] = weight(a);
    const [db, sb] = weight(b);
    return db > da || (db === da && sb > sa) ? b : a;
  });
  const after = flags.slice(episode.end + 1);
  const afterDrifted = after.filter(Boolean).length;
  const afterRun = Math.max(0, ...episodesOf(after, false).map((r) => r.end - r.start + 1));
  const episodeDrifted = flags.slice(episode.start, episode.end + 1).filter(Boolean).length;
  const normalAgain =
    episodeDrifted >= details.significantRun &&
    after.length >= tail &&
    binomialUpperTail(afterDrifted, after.length, falseAlarmRate) >= significance &&
    afterRun < significantRunLength(after.length, falseAlarmRate, significance);
  if (normalAgain) {
    const inside = mean(scores, episode.start, episode.end + 1);
    const outside = mean(scores.filter((_, i) => i < episode.start || i > episode.end));
    const length = episode.end - episode.start + 1;
    const normalWindows = after.length;
    return result(
      "temporary",
      `drifted from ${windowName(points, episode.start)} to ${windowName(points, episode.end)} (${length} window${length > 1 ? "s" : ""}, ` +
        `score ${fmt(inside)} vs ${fmt(outside)} elsewhere), then back to normal for the last ${normalWindows} windows` +
        (afterDrifted > 0 ? ` (${afterDrifted} stray drifted, as chance would have it)` : ""),
      { episodeStart: episode.start, episodeEnd: episode.end, normalWindows, episodes: episodes.length },
    );
  }

  const step = bestStep(scores);
  const lineFit = lineRss(scores);
  const ratio = step === undefined ? Number.POSITIVE_INFINITY : lineFit === 0 ? 1 : step.rss / lineFit;
  const trend = mannKendall(scores);
  const firstHalf = flags.slice(0, Math.floor(n / 2)).filter(Boolean).length / Math.floor(n / 2);
  const secondHalf = flags.slice(Math.floor(n / 2)).filter(Boolean).length / (n - Math.floor(n / 2));
  const hours = every > 0 ? HOUR_MS / every : 0;
  const trendDetails = { trendPvalue: trend.pvalue, senSlope: trend.slope, senSlopePerHour: trend.slope * hours, stepRatio: ratio };
  if (step !== undefined && step.after > step.before) {
    const afterShare = flags.slice(step.index).filter(Boolean).length / (n - step.index);
    const beforeShare = flags.slice(0, step.index).filter(Boolean).length / step.index;
    const stepDetails = { changeIndex: step.index, changeStart: new Date((points[step.index] as DriftPoint).start).toISOString(), levelBefore: step.before, levelAfter: step.after, ...trendDetails };
    const stepWords =
      `step change at ${windowName(points, step.index)}: score ${fmt(step.before)} before, ${fmt(step.after)} after; ` +
      `${fmt(beforeShare * 100)}% of windows drifted before, ${fmt(afterShare * 100)}% after; the step fits ${fmt(1 / ratio)}x better than a trend line`;
    if (afterShare >= EPISODE_SHARE && beforeShare <= 1 - EPISODE_SHARE && ratio <= stepRatioLimit) return result("instant", stepWords, stepDetails);
    if (trend.pvalue < trendAlpha && trend.slope > 0 && ratio > stepRatioLimit && secondHalf > firstHalf) {
      return result(
        "gradual",
        `steady upward trend: Mann-Kendall p ${fmt(trend.pvalue)}, Sen's slope ${fmt(trend.slope)} per window (${fmt(trend.slope * hours)} per hour); ` +
          `${fmt(firstHalf * 100)}% of windows drifted in the first half, ${fmt(secondHalf * 100)}% in the second; no dominant step (step/line RSS ${fmt(ratio)})`,
        trendDetails,
      );
    }
    if (ratio <= stepRatioLimit) return result("instant", `weak evidence, flags flicker: ${stepWords}`, { ...stepDetails, weak: true });
  }
  if (driftedWindows >= EPISODE_SHARE * n) {
    return result("instant", `drifted in ${driftedWindows} of ${n} windows from the first one on: the change happened before the series starts`, {
      ...trendDetails,
      changeIndex: 0,
      changeStart: new Date((points[0] as DriftPoint).start).toISOString(),
      weak: true,
    });
  }
  if (secondHalf >= firstHalf + LATE_MARGIN) {
    return result(
      trend.slope > 0 ? "gradual" : "instant",
      `weak evidence: ${driftedWindows} of ${n} windows drifted, ${fmt(firstHalf * 100)}% in the first half and ${fmt(secondHalf * 100)}% in the second, ` +
        `no clear step (step/line RSS ${fmt(ratio)}), Mann-Kendall p ${fmt(trend.pvalue)} with Sen's slope ${fmt(trend.slope)} per window`,
      { ...trendDetails, weak: true },
    );
  }
  return result(
    "none",
    `${driftedWindows} of ${n} windows drifted, more than the ${fmt(falseAlarmRate * 100)}% false-alarm rate explains (chance ${fmt(details.chance)}), ` +
      `but scattered with no shape in time (${fmt(firstHalf * 100)}% in the first half, ${fmt(secondHalf * 100)}% in the second, longest run ${longestRun}): ` +
      `a mild difference from the reference throughout rather than a change`,
    { ...trendDetails, scattered: true },
  );
}

/** Which profile of a window a series is read from. */
export type SeriesSource = "features" | "predictions";

/** One column's series over stored window results (oldest first), leaving out windows without a drift verdict. */
export function featureSeries(windows: readonly WindowResult[], column: string, source: SeriesSource = "features"): DriftPoint[] {
  const points: DriftPoint[] = [];
  for (const window of windows) {
    const drift = source === "features" ? window.drift : window.predictionDrift;
    const feature = drift?.features.find((f) => f.feature === column);
    if (feature === undefined) continue;
    points.push({ start: Date.parse(window.start), score: driftSeverity(feature), drifted: feature.drifted });
  }
  return points.sort((a, b) => a.start - b.start);
}

export interface ColumnKind extends DriftKindResult {
  column: string;
  source: SeriesSource;
}

/** The kind of every column (features, then prediction outputs) of one window size's results. */
export function classifyWindows(windows: readonly WindowResult[], options: ClassifyOptions = {}): ColumnKind[] {
  const kinds: ColumnKind[] = [];
  for (const source of ["features", "predictions"] as const) {
    const columns = new Set<string>();
    for (const window of windows) for (const f of (source === "features" ? window.drift : window.predictionDrift)?.features ?? []) columns.add(f.feature);
    for (const column of columns) kinds.push({ column, source, ...classifyDrift(featureSeries(windows, column, source), options) });
  }
  return kinds;
}
