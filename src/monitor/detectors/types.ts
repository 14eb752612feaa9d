/**
 * Shared contract of the concept-drift detectors that watch a model's per-prediction error stream once outcomes
 * are known (issue 4, item 5). Each detector is a port of the River (`river.drift`) class of the same name, with
 * River's parameter names and defaults, so a result can be explained with River's documentation.
 */

/** The detectors on offer. `adwin` and `page_hinkley` take any number; `ddm` and `eddm` take a 0/1 error bit. */
export type DetectorKind = "adwin" | "page_hinkley" | "ddm" | "eddm";
export const DETECTOR_KINDS: readonly DetectorKind[] = ["adwin", "page_hinkley", "ddm", "eddm"];

/** What one `update` found. `warning` is present only for detectors with a warning zone (DDM, EDDM). */
export interface DetectorSignal {
  drift: boolean;
  warning?: boolean;
}

/** A read-only picture of a detector, for logs, REST and the dashboard. */
export interface DetectorView {
  kind: DetectorKind;
  /** Points seen since the detector last started afresh (after a drift, River restarts on the next point). */
  n: number;
  /**
   * The level being watched: ADWIN's window mean, Page-Hinkley's running mean, DDM's error rate, EDDM's mean
   * distance between errors (0 before anything is known).
   */
  estimation: number;
  /** Points the estimation rests on: ADWIN's adaptive window width; `n` for the others. */
  width: number;
  /** The last update's result. */
  drift: boolean;
  warning: boolean;
  /** Drifts signalled since the detector was created (or restored); unlike `n`, kept across the restarts. */
  detections: number;
  /** Points seen since the detector was created (or restored). */
  seen: number;
}

/** Plain JSON that brings a detector back exactly where it was (`restoreDetector`, or `X.restore`). */
export interface DetectorSnapshot<P = Record<string, unknown>, S = Record<string, unknown>> {
  format: 1;
  kind: DetectorKind;
  params: P;
  /** The algorithm's own state; infinities are stored as null (JSON has none). */
  state: S;
  drift: boolean;
  warning: boolean;
  detections: number;
  seen: number;
}

export interface DriftDetector {
  readonly kind: DetectorKind;
  /** The parameters in force, defaults filled in, River's names. */
  readonly params: Readonly<Record<string, number | string>>;
  /** Feeds one point of the error stream; returns whether this point completed a drift (or a warning). */
  update(x: number | boolean): DetectorSignal;
  /** Forgets everything seen, as a new detector with the same parameters (counters `detections`/`seen` too). */
  reset(): void;
  readonly view: Readonly<DetectorView>;
  readonly driftDetected: boolean;
  readonly warningDetected: boolean;
  serialize(): DetectorSnapshot;
}
