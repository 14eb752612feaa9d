import { DetectorBase } from "./base.js";
import type { DetectorSignal, DetectorSnapshot, DriftDetector } from "./types.js";
import {
  checkSnapshot, choiceParam, finiteOrNull, numberParam, numericInput, rejectUnknown, stateNumber, stateNumberOrInfinity,
} from "./validate.js";

export type PageHinkleyMode = "both" | "up" | "down";
export const PAGE_HINKLEY_MODES: readonly PageHinkleyMode[] = ["both", "up", "down"];

export type PageHinkleyParams = {
  min_instances: number;
  delta: number;
  threshold: number;
  alpha: number;
  mode: PageHinkleyMode;
};

export const PAGE_HINKLEY_DEFAULTS: Readonly<PageHinkleyParams> = Object.freeze({
  min_instances: 30,
  delta: 0.005,
  threshold: 50,
  alpha: 1 - 0.0001,
  mode: "both",
});

const PAGE_HINKLEY_FIELDS = Object.keys(PAGE_HINKLEY_DEFAULTS);

type PageHinkleyState = {
  /** Points in the running mean. */
  n: number;
  mean: number;
  sumIncrease: number;
  sumDecrease: number;
  /** +Infinity before the first point (null in JSON). */
  minIncrease: number;
  maxDecrease: number;
};

/** Checks Page-Hinkley parameters (River's names), filling in River's defaults. */
export function pageHinkleyParams(params: Record<string, unknown> = {}): PageHinkleyParams {
  rejectUnknown(params, PAGE_HINKLEY_FIELDS);
  return {
    min_instances: numberParam(params, "min_instances", PAGE_HINKLEY_DEFAULTS.min_instances, { min: 1, integer: true }),
    delta: numberParam(params, "delta", PAGE_HINKLEY_DEFAULTS.delta, { min: 0 }),
    threshold: numberParam(params, "threshold", PAGE_HINKLEY_DEFAULTS.threshold, { min: 0, minExclusive: true }),
    alpha: numberParam(params, "alpha", PAGE_HINKLEY_DEFAULTS.alpha, { min: 0, max: 1, minExclusive: true }),
    mode: choiceParam(params, "mode", PAGE_HINKLEY_MODES, PAGE_HINKLEY_DEFAULTS.mode),
  };
}

function emptyState(): PageHinkleyState {
  // River starts the largest decrease sum at -1 (not -Infinity); the first point always lifts it to `delta`.
  return { n: 0, mean: 0, sumIncrease: 0, sumDecrease: 0, minIncrease: Number.POSITIVE_INFINITY, maxDecrease: -1 };
}

/**
 * Page-Hinkley test (Page, Biometrika 1954), a port of `river.drift.PageHinkley` (two-sided, with `mode`).
 *
 * With x̄ₜ the running mean of everything seen since the last drift:
 * Uₜ = α·Uₜ₋₁ + (xₜ − x̄ₜ − δ) and Lₜ = α·Lₜ₋₁ + (xₜ − x̄ₜ + δ);
 * an increase is signalled when Uₜ − minₛ Uₛ > λ, a decrease when maxₛ Lₛ − Lₜ > λ, both only once at least
 * `min_instances` points were seen. After a drift, the next `update` starts afresh (as River does).
 * Input: any number (an error bit, an absolute error, a residual); the sums are in the unit of the input, so
 * `delta` and `threshold` must be chosen for that unit (River's defaults suit values of order 1).
 *
 * Parameters (River's names and defaults):
 * - `min_instances` = 30: points needed before a drift can be signalled.
 * - `delta` = 0.005: the magnitude of change that is tolerated (subtracted from each deviation).
 * - `threshold` = 50: λ, the cumulative deviation that signals a drift; larger means fewer false alarms and later
 *   detections.
 * - `alpha` = 1 − 0.0001: forgetting factor of the cumulative sums (1 = plain Page-Hinkley, no forgetting).
 * - `mode` = "both": watch increases ("up"), decreases ("down") or both. For an error stream "up" is a
 *   degradation; "both" also reports an improvement.
 */
export class PageHinkley extends DetectorBase<PageHinkleyParams, PageHinkleyState> implements DriftDetector {
  readonly kind = "page_hinkley" as const;

  constructor(params: Partial<PageHinkleyParams> = {}) {
    super(pageHinkleyParams(params), emptyState);
  }



  /** Running mean since the last restart. */
  get estimation(): number {
    return this.state.mean;
  }

  get n(): number {
    return this.state.n;
  }

  /** Uₜ − min Uₛ: the statistic compared with `threshold` for an increase. */
  get increaseStatistic(): number {
    return this.state.n === 0 ? 0 : this.state.sumIncrease - this.state.minIncrease;
  }

  /** max Lₛ − Lₜ: the statistic compared with `threshold` for a decrease. */
  get decreaseStatistic(): number {
    return this.state.n === 0 ? 0 : this.state.maxDecrease - this.state.sumDecrease;
  }

  /** The raw cumulative sums Uₜ and Lₜ. */
  get sums(): { increase: number; decrease: number } {
    return { increase: this.state.sumIncrease, decrease: this.state.sumDecrease };
  }


  update(x: number | boolean): DetectorSignal {
    const value = numericInput(x);
    if (this.drift) {
      this.state = emptyState();
      this.drift = false;
    }
    this.seen += 1;
    const s = this.state;
    s.n += 1;
    s.mean += (value - s.mean) / s.n;
    const deviation = value - s.mean;
    const { alpha, delta, threshold, mode, min_instances: minInstances } = this.params;
    s.sumIncrease = alpha * s.sumIncrease + deviation - delta;
    s.sumDecrease = alpha * s.sumDecrease + deviation + delta;
    if (s.sumIncrease < s.minIncrease) s.minIncrease = s.sumIncrease;
    if (s.sumDecrease > s.maxDecrease) s.maxDecrease = s.sumDecrease;
    if (s.n >= minInstances) {
      const up = s.sumIncrease - s.minIncrease > threshold;
      const down = s.maxDecrease - s.sumDecrease > threshold;
      this.drift = mode === "up" ? up : mode === "down" ? down : up || down;
      if (this.drift) this.detections += 1;
    }
    return { drift: this.drift };
  }


  serialize(): DetectorSnapshot<PageHinkleyParams, Record<string, number | null>> {
    const s = this.state;
    return this.snapshot({
      n: s.n,
      mean: s.mean,
      sumIncrease: s.sumIncrease,
      sumDecrease: s.sumDecrease,
      minIncrease: finiteOrNull(s.minIncrease),
      maxDecrease: s.maxDecrease,
    });
  }

  static restore(snapshot: unknown): PageHinkley {
    const checked = checkSnapshot(snapshot, "page_hinkley");
    const detector = new PageHinkley(checked.params as Partial<PageHinkleyParams>);
    const raw = checked.state;
    detector.state = {
      n: stateNumber(raw, "n"),
      mean: stateNumber(raw, "mean"),
      sumIncrease: stateNumber(raw, "sumIncrease"),
      sumDecrease: stateNumber(raw, "sumDecrease"),
      minIncrease: stateNumberOrInfinity(raw, "minIncrease", Number.POSITIVE_INFINITY),
      maxDecrease: stateNumber(raw, "maxDecrease"),
    };
    detector.restoreCounters(checked);
    return detector;
  }
}
