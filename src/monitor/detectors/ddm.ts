import { DetectorBase } from "./base.js";
import type { DetectorSignal, DetectorSnapshot, DriftDetector } from "./types.js";
import {
  bitInput, checkSnapshot, finiteOrNull, numberParam, rejectUnknown, stateNumber, stateNumberOrInfinity,
} from "./validate.js";

export type DdmParams = {
  warm_start: number;
  warning_threshold: number;
  drift_threshold: number;
};

export const DDM_DEFAULTS: Readonly<DdmParams> = Object.freeze({
  warm_start: 30,
  warning_threshold: 2.0,
  drift_threshold: 3.0,
});

const DDM_FIELDS = Object.keys(DDM_DEFAULTS);

type DdmState = {
  n: number;
  /** Running error rate pᵢ. */
  p: number;
  /** pᵢ and sᵢ where pᵢ + sᵢ was smallest; +Infinity until the warm start is over (null in JSON). */
  pMin: number;
  sMin: number;
  psMin: number;
};

/** Checks DDM parameters (River's names), filling in River's defaults. */
export function ddmParams(params: Record<string, unknown> = {}): DdmParams {
  rejectUnknown(params, DDM_FIELDS);
  const warningThreshold = numberParam(params, "warning_threshold", DDM_DEFAULTS.warning_threshold, { min: 0, minExclusive: true });
  const driftThreshold = numberParam(params, "drift_threshold", DDM_DEFAULTS.drift_threshold, {
    min: warningThreshold,
  });
  return {
    warm_start: numberParam(params, "warm_start", DDM_DEFAULTS.warm_start, { min: 0, integer: true }),
    warning_threshold: warningThreshold,
    drift_threshold: driftThreshold,
  };
}

function emptyState(): DdmState {
  const infinity = Number.POSITIVE_INFINITY;
  return { n: 0, p: 0, pMin: infinity, sMin: infinity, psMin: infinity };
}

/**
 * DDM, the Drift Detection Method (Gama, Medas, Castillo, Rodrigues, SBIA 2004), a port of
 * `river.drift.binary.DDM`.
 *
 * Input: one bit per prediction, 1 (or true) = error, 0 (or false) = correct. With pᵢ the error rate so far and
 * sᵢ = √(pᵢ(1 − pᵢ)/i), once more than `warm_start` points were seen it remembers p_min and s_min where pᵢ + sᵢ
 * was smallest, and signals a warning when pᵢ + sᵢ > p_min + `warning_threshold`·s_min and a drift when
 * pᵢ + sᵢ > p_min + `drift_threshold`·s_min (a drift clears the warning). After a drift the next `update` starts
 * afresh (as River does). `estimation` is the error rate pᵢ.
 *
 * Parameters (River's names and defaults):
 * - `warm_start` = 30: points seen before the minimum is tracked and anything can be signalled.
 * - `warning_threshold` = 2.0: standard deviations above the minimum for a warning (about 95% confidence).
 * - `drift_threshold` = 3.0: standard deviations above the minimum for a drift (about 99% confidence).
 *
 * Like River's, it can fire on a stationary stream when pᵢ + sᵢ is tiny right after the warm start (for example no
 * error at all in the first points): a larger `warm_start` makes that rarer.
 */
export class Ddm extends DetectorBase<DdmParams, DdmState> implements DriftDetector {
  readonly kind = "ddm" as const;

  constructor(params: Partial<DdmParams> = {}) {
    super(ddmParams(params), emptyState);
  }



  /** Error rate since the last restart. */
  get estimation(): number {
    return this.state.p;
  }

  get n(): number {
    return this.state.n;
  }

  /** sᵢ = √(pᵢ(1 − pᵢ)/i), 0 before the first point. */
  get standardDeviation(): number {
    const { p, n } = this.state;
    return n === 0 ? 0 : Math.sqrt((p * (1 - p)) / n);
  }

  /** The remembered minimum (undefined until the warm start is over). */
  get minimum(): { p: number; s: number } | undefined {
    return Number.isFinite(this.state.psMin) ? { p: this.state.pMin, s: this.state.sMin } : undefined;
  }


  update(x: number | boolean): DetectorSignal {
    const bit = bitInput(x);
    if (this.drift) {
      this.state = emptyState();
      this.drift = false;
      this.warning = false;
    }
    this.seen += 1;
    const s = this.state;
    s.n += 1;
    s.p += (bit - s.p) / s.n;
    const sd = Math.sqrt((s.p * (1 - s.p)) / s.n);
    const { warm_start: warmStart, warning_threshold: warningThreshold, drift_threshold: driftThreshold } = this.params;
    if (s.n > warmStart) {
      if (s.p + sd <= s.psMin) {
        s.pMin = s.p;
        s.sMin = sd;
        s.psMin = s.pMin + s.sMin;
      }
      this.warning = s.p + sd > s.pMin + warningThreshold * s.sMin;
      if (s.p + sd > s.pMin + driftThreshold * s.sMin) {
        this.drift = true;
        this.warning = false;
        this.detections += 1;
      }
    }
    return { drift: this.drift, warning: this.warning };
  }


  serialize(): DetectorSnapshot<DdmParams, Record<string, number | null>> {
    const s = this.state;
    return this.snapshot({ n: s.n, p: s.p, pMin: finiteOrNull(s.pMin), sMin: finiteOrNull(s.sMin), psMin: finiteOrNull(s.psMin) });
  }

  static restore(snapshot: unknown): Ddm {
    const checked = checkSnapshot(snapshot, "ddm");
    const detector = new Ddm(checked.params as Partial<DdmParams>);
    const raw = checked.state;
    const infinity = Number.POSITIVE_INFINITY;
    detector.state = {
      n: stateNumber(raw, "n"),
      p: stateNumber(raw, "p"),
      pMin: stateNumberOrInfinity(raw, "pMin", infinity),
      sMin: stateNumberOrInfinity(raw, "sMin", infinity),
      psMin: stateNumberOrInfinity(raw, "psMin", infinity),
    };
    detector.restoreCounters(checked);
    return detector;
  }
}
