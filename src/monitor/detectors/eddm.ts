import { DetectorBase } from "./base.js";
import { MlshipError } from "../../core/index.js";
import type { DetectorSignal, DetectorSnapshot, DriftDetector } from "./types.js";
import { bitInput, checkSnapshot, numberParam, rejectUnknown, stateNumber } from "./validate.js";

export type EddmParams = {
  warm_start: number;
  alpha: number;
  beta: number;
};

export const EDDM_DEFAULTS: Readonly<EddmParams> = Object.freeze({
  warm_start: 30,
  alpha: 0.95,
  beta: 0.9,
});

const EDDM_FIELDS = Object.keys(EDDM_DEFAULTS);

type EddmState = {
  /** Points seen since the last restart. */
  n: number;
  errors: number;
  /** Index (1-based, within `n`) of the last error; 0 before the first. */
  lastError: number;
  /** Running mean and sum of squared deviations of the distances between consecutive errors. */
  distanceCount: number;
  distanceMean: number;
  distanceM2: number;
  /** Largest p′ + 2s′ seen (River starts it at -1). */
  p2sMax: number;
};

/** Checks EDDM parameters (River's names), filling in River's defaults; `alpha` must be at least `beta`. */
export function eddmParams(params: Record<string, unknown> = {}): EddmParams {
  rejectUnknown(params, EDDM_FIELDS);
  const alpha = numberParam(params, "alpha", EDDM_DEFAULTS.alpha, { min: 0, max: 1, minExclusive: true });
  const beta = numberParam(params, "beta", EDDM_DEFAULTS.beta, { min: 0, max: 1, minExclusive: true });
  if (alpha < beta) {
    throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `alpha (${alpha}) must be greater than or equal to beta (${beta})`, { field: "alpha" });
  }
  return { warm_start: numberParam(params, "warm_start", EDDM_DEFAULTS.warm_start, { min: 0, integer: true }), alpha, beta };
}

function emptyState(): EddmState {
  return { n: 0, errors: 0, lastError: 0, distanceCount: 0, distanceMean: 0, distanceM2: 0, p2sMax: -1 };
}

/**
 * EDDM, the Early Drift Detection Method (Baena-García et al., 2006), a port of `river.drift.binary.EDDM`.
 *
 * Input: one bit per prediction, 1 (or true) = error. It follows the distance between consecutive errors: its
 * mean p′ and standard deviation s′ (sample, n − 1). After `warm_start` points it remembers the largest p′ + 2s′;
 * once more than `warm_start` errors were seen, at each error, level = (p′ + 2s′) / max(p′ + 2s′) signals a drift
 * when below `beta` and a warning when below `alpha`. Errors coming closer together (a rising error rate) lower
 * the level; it reacts to gradual change earlier than DDM. After a drift the next `update` starts afresh.
 * `estimation` is p′, the mean distance between errors.
 *
 * Parameters (River's names and defaults):
 * - `warm_start` = 30: points before p′ + 2s′ is tracked, and errors before anything is signalled.
 * - `alpha` = 0.95: warning level; the smaller, the more conservative.
 * - `beta` = 0.9: drift level (at most `alpha`); the smaller, the more conservative.
 */
export class Eddm extends DetectorBase<EddmParams, EddmState> implements DriftDetector {
  readonly kind = "eddm" as const;

  constructor(params: Partial<EddmParams> = {}) {
    super(eddmParams(params), emptyState);
  }



  /** Mean distance between consecutive errors (0 before the first error). */
  get estimation(): number {
    return this.state.distanceMean;
  }

  get n(): number {
    return this.state.n;
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
    if (bit === 1) {
      s.errors += 1;
      const distance = s.n - s.lastError;
      const previousMean = s.distanceMean;
      s.distanceCount += 1;
      s.distanceMean += (distance - previousMean) / s.distanceCount;
      s.distanceM2 += (distance - previousMean) * (distance - s.distanceMean);
      if (s.n > this.params.warm_start) {
        const sd = Math.sqrt(s.distanceCount > 1 ? s.distanceM2 / (s.distanceCount - 1) : 0);
        const p2s = s.distanceMean + 2 * sd;
        if (p2s > s.p2sMax) {
          s.p2sMax = p2s;
        } else if (s.errors > this.params.warm_start) {
          const level = p2s / s.p2sMax;
          if (level < this.params.beta) {
            this.drift = true;
            this.detections += 1;
          } else {
            this.warning = level < this.params.alpha;
          }
        }
      }
      s.lastError = s.n;
    }
    return { drift: this.drift, warning: this.warning };
  }


  serialize(): DetectorSnapshot<EddmParams, EddmState> {
    return this.snapshot({ ...this.state });
  }

  static restore(snapshot: unknown): Eddm {
    const checked = checkSnapshot(snapshot, "eddm");
    const detector = new Eddm(checked.params as Partial<EddmParams>);
    const raw = checked.state;
    detector.state = {
      n: stateNumber(raw, "n"),
      errors: stateNumber(raw, "errors"),
      lastError: stateNumber(raw, "lastError"),
      distanceCount: stateNumber(raw, "distanceCount"),
      distanceMean: stateNumber(raw, "distanceMean"),
      distanceM2: stateNumber(raw, "distanceM2"),
      p2sMax: stateNumber(raw, "p2sMax"),
    };
    detector.restoreCounters(checked);
    return detector;
  }
}
