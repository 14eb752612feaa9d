import { DetectorBase } from "./base.js";
import { MlshipError } from "../../core/index.js";
import type { DetectorSignal, DetectorSnapshot, DriftDetector } from "./types.js";
import { checkSnapshot, numberParam, numericInput, rejectUnknown, stateNumber } from "./validate.js";

export type AdwinParams = {
  delta: number;
  clock: number;
  max_buckets: number;
  min_window_length: number;
  grace_period: number;
};

export const ADWIN_DEFAULTS: Readonly<AdwinParams> = Object.freeze({
  delta: 0.002,
  clock: 32,
  max_buckets: 5,
  min_window_length: 5,
  grace_period: 10,
});

const ADWIN_FIELDS = Object.keys(ADWIN_DEFAULTS);

/** One row of the exponential histogram: buckets of 2^row points each, oldest first. */
interface BucketRow {
  totals: number[];
  /** Sum of squared deviations from the bucket's own mean. */
  variances: number[];
}

type AdwinState = {
  rows: BucketRow[];
  total: number;
  variance: number;
  width: number;
  tick: number;
  n: number;
};

/** Checks ADWIN parameters (River's names), filling in River's defaults. */
export function adwinParams(params: Record<string, unknown> = {}): AdwinParams {
  rejectUnknown(params, ADWIN_FIELDS);
  return {
    delta: numberParam(params, "delta", ADWIN_DEFAULTS.delta, { min: 0, max: 1, minExclusive: true, maxExclusive: true }),
    clock: numberParam(params, "clock", ADWIN_DEFAULTS.clock, { min: 1, integer: true }),
    max_buckets: numberParam(params, "max_buckets", ADWIN_DEFAULTS.max_buckets, { min: 2, integer: true }),
    min_window_length: numberParam(params, "min_window_length", ADWIN_DEFAULTS.min_window_length, { min: 1, integer: true }),
    grace_period: numberParam(params, "grace_period", ADWIN_DEFAULTS.grace_period, { min: 0, integer: true }),
  };
}

function emptyState(): AdwinState {
  return { rows: [{ totals: [], variances: [] }], total: 0, variance: 0, width: 0, tick: 0, n: 0 };
}

/**
 * ADWIN (ADaptive WINdowing; Bifet & Gavaldà, SDM 2007), a port of `river.drift.ADWIN` (River's `adwin_c.pyx`).
 *
 * It keeps a window of the most recent values, as long as no change is seen in it, compressed into an exponential
 * histogram of buckets. Every `clock` points it tries each cut of the window into an older part W0 and a newer part
 * W1; when the two means differ by more than
 * ε = √(2·m·σ²·δ′) + (2/3)·δ′·m, with δ′ = ln(2·ln(width)/δ), m = 1/(n0 − min_window_length + 1) +
 * 1/(n1 − min_window_length + 1) and σ² the variance of the whole window, it drops the oldest bucket and tries again,
 * and reports a drift. Input: any number (a 0/1 error bit, an absolute error, a squared residual); `estimation` is
 * the mean of the window, so after a drift it has already moved to the new level.
 *
 * Parameters (River's names and defaults):
 * - `delta` = 0.002: significance of the cut test; smaller means fewer false alarms and later detections.
 * - `clock` = 32: the cut test runs every `clock` points (1 = every point); larger is cheaper but detects later.
 * - `max_buckets` = 5: buckets of each size kept before two are merged; more means a finer window, more memory.
 * - `min_window_length` = 5: both sub-windows of a cut must hold at least this many points.
 * - `grace_period` = 10: no test until the window holds more than this many points.
 *
 * As River does: after a drift, the next `update` starts from an empty window (River calls `_reset` then); the
 * cut loop leaves out the newest bucket of each row when growing W0 (River's loop bound, kept so detections
 * match River's).
 */
export class Adwin extends DetectorBase<AdwinParams, AdwinState> implements DriftDetector {
  readonly kind = "adwin" as const;

  constructor(params: Partial<AdwinParams> = {}) {
    super(adwinParams(params), emptyState);
  }



  /** Mean of the current window (0 when it is empty). */
  get estimation(): number {
    return this.state.width === 0 ? 0 : this.state.total / this.state.width;
  }

  /** Number of points in the current window. */
  get width(): number {
    return this.state.width;
  }

  get n(): number {
    return this.state.n;
  }

  protected override get span(): number {
    return this.state.width;
  }

  /** Sum of the window's values. */
  get total(): number {
    return this.state.total;
  }

  /** Sum of squared deviations from the window mean (River's `variance`; divide by `width` for the variance). */
  get variance(): number {
    return this.state.variance;
  }


  update(x: number | boolean): DetectorSignal {
    const value = numericInput(x);
    if (this.drift) this.state = emptyState();
    this.seen += 1;
    this.state.n += 1;
    this.insert(value);
    this.drift = this.detectChange();
    if (this.drift) this.detections += 1;
    return { drift: this.drift };
  }


  serialize(): DetectorSnapshot<AdwinParams, AdwinState> {
    const s = this.state;
    return this.snapshot({
      rows: s.rows.map((row) => ({ totals: [...row.totals], variances: [...row.variances] })),
      total: s.total,
      variance: s.variance,
      width: s.width,
      tick: s.tick,
      n: s.n,
    });
  }

  static restore(snapshot: unknown): Adwin {
    const checked = checkSnapshot(snapshot, "adwin");
    const detector = new Adwin(checked.params as Partial<AdwinParams>);
    const raw = checked.state;
    const rows = raw.rows;
    if (!Array.isArray(rows) || rows.length === 0) {
      throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", "state.rows must be a non-empty array", { field: "state.rows" });
    }
    const restoredRows = rows.map((row: unknown, index): BucketRow => {
      const field = `state.rows[${index}]`;
      const record = (typeof row === "object" && row !== null ? row : {}) as Record<string, unknown>;
      const totals = record.totals;
      const variances = record.variances;
      const finiteArray = (value: unknown): value is number[] =>
        Array.isArray(value) && value.every((v) => typeof v === "number" && Number.isFinite(v));
      if (!finiteArray(totals) || !finiteArray(variances) || totals.length !== variances.length
        || totals.length > detector.params.max_buckets + 1) {
        throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `${field} must hold equal arrays of at most ${detector.params.max_buckets + 1} numbers`, { field });
      }
      return { totals: [...totals], variances: [...variances] };
    });
    detector.state = {
      rows: restoredRows,
      total: stateNumber(raw, "total"),
      variance: stateNumber(raw, "variance"),
      width: stateNumber(raw, "width"),
      tick: stateNumber(raw, "tick"),
      n: stateNumber(raw, "n"),
    };
    const counted = restoredRows.reduce((sum, row, index) => sum + row.totals.length * 2 ** index, 0);
    if (counted !== detector.state.width) {
      throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `state.width ${detector.state.width} does not match the buckets (${counted} points)`, {
        field: "state.width",
      });
    }
    detector.restoreCounters(checked);
    return detector;
  }

  /** Adds one point as a bucket of size 1 and updates the window's total and variance (Welford-style). */
  private insert(value: number): void {
    const s = this.state;
    const first = s.rows[0] as BucketRow;
    first.totals.push(value);
    first.variances.push(0);
    s.width += 1;
    if (s.width > 1) {
      const previousMean = s.total / (s.width - 1);
      s.variance += ((s.width - 1) * (value - previousMean) * (value - previousMean)) / s.width;
    }
    s.total += value;
    this.compress();
  }

  /** Merges the two oldest buckets of a row into the next row while a row holds more than `max_buckets`. */
  private compress(): void {
    const rows = this.state.rows;
    const maxBuckets = this.params.max_buckets;
    for (let row = 0; row < rows.length; row += 1) {
      const bucket = rows[row] as BucketRow;
      if (bucket.totals.length !== maxBuckets + 1) break;
      if (rows[row + 1] === undefined) rows.push({ totals: [], variances: [] });
      const next = rows[row + 1] as BucketRow;
      const size = 2 ** row;
      const [t0, t1] = bucket.totals as [number, number];
      const [v0, v1] = bucket.variances as [number, number];
      const mean0 = t0 / size;
      const mean1 = t1 / size;
      next.totals.push(t0 + t1);
      next.variances.push(v0 + v1 + (size * size * (mean0 - mean1) * (mean0 - mean1)) / (size + size));
      bucket.totals.splice(0, 2);
      bucket.variances.splice(0, 2);
      if (next.totals.length <= maxBuckets) break;
    }
  }

  /** Drops the oldest bucket; returns how many points it held. */
  private deleteOldest(): number {
    const s = this.state;
    const last = s.rows.length - 1;
    const bucket = s.rows[last] as BucketRow;
    const size = 2 ** last;
    const bucketTotal = bucket.totals[0] as number;
    const bucketVariance = bucket.variances[0] as number;
    const bucketMean = bucketTotal / size;
    s.width -= size;
    s.total -= bucketTotal;
    const windowMean = s.total / s.width;
    s.variance -= bucketVariance + (size * s.width * (bucketMean - windowMean) * (bucketMean - windowMean)) / (size + s.width);
    bucket.totals.shift();
    bucket.variances.shift();
    if (bucket.totals.length === 0) s.rows.pop();
    return size;
  }

  private detectChange(): boolean {
    const s = this.state;
    const { clock, grace_period: gracePeriod, min_window_length: minLength } = this.params;
    let changed = false;
    s.tick += 1;
    if (s.tick % clock !== 0 || s.width <= gracePeriod) return false;
    let shrink = true;
    while (shrink) {
      shrink = false;
      let olderCount = 0;
      let newerCount = s.width;
      let olderTotal = 0;
      let newerTotal = s.total;
      // Oldest row first; within a row, oldest bucket first. River's bound (`range(current_idx - 1)`) skips the
      // newest bucket of every row.
      scan: for (let row = s.rows.length - 1; row >= 0; row -= 1) {
        const bucket = s.rows[row] as BucketRow;
        const size = 2 ** row;
        const upTo = bucket.totals.length - 1;
        for (let k = 0; k < upTo; k += 1) {
          const bucketTotal = bucket.totals[k] as number;
          olderCount += size;
          newerCount -= size;
          olderTotal += bucketTotal;
          newerTotal -= bucketTotal;
          const meanDifference = olderTotal / olderCount - newerTotal / newerCount;
          if (newerCount >= minLength && olderCount >= minLength && this.cutDiffers(olderCount, newerCount, meanDifference)) {
            shrink = true;
            changed = true;
            if (s.width > 0) {
              this.deleteOldest();
              break scan;
            }
          }
        }
      }
    }
    return changed;
  }

  /** Hoeffding-style bound (with the window variance) on the difference of two sub-window means. */
  private cutDiffers(olderCount: number, newerCount: number, meanDifference: number): boolean {
    const s = this.state;
    const { delta, min_window_length: minLength } = this.params;
    const deltaPrime = Math.log((2 * Math.log(s.width)) / delta);
    const m = 1 / (olderCount - minLength + 1) + 1 / (newerCount - minLength + 1);
    const epsilon = Math.sqrt(2 * m * (s.variance / s.width) * deltaPrime) + (2 / 3) * deltaPrime * m;
    return Math.abs(meanDifference) > epsilon;
  }
}
