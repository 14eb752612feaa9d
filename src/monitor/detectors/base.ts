import type { DetectorKind, DetectorSnapshot, DetectorView } from "./types.js";

/**
 * What every detector keeps besides its algorithm's own state: the last signal, the counters kept across
 * restarts, the read-only view, reset, and the snapshot envelope. Subclasses implement `update`, `estimation`,
 * `n` and their state's (de)serialisation.
 */
export abstract class DetectorBase<P extends object, S> {
  abstract readonly kind: DetectorKind;
  readonly params: Readonly<P>;
  protected state: S;
  protected drift = false;
  protected warning = false;
  protected detections = 0;
  protected seen = 0;

  protected constructor(
    params: P,
    private readonly emptyState: () => S,
  ) {
    this.params = Object.freeze(params);
    this.state = emptyState();
  }

  get driftDetected(): boolean {
    return this.drift;
  }

  get warningDetected(): boolean {
    return this.warning;
  }

  /** The level being watched (see `DetectorView.estimation`). */
  abstract get estimation(): number;

  /** Points seen since the detector last started afresh. */
  abstract get n(): number;

  /** Points the estimation rests on: `n`, except for ADWIN's adaptive window. */
  protected get span(): number {
    return this.n;
  }

  get view(): Readonly<DetectorView> {
    return Object.freeze({
      kind: this.kind,
      n: this.n,
      estimation: this.estimation,
      width: this.span,
      drift: this.drift,
      warning: this.warning,
      detections: this.detections,
      seen: this.seen,
    });
  }

  reset(): void {
    this.state = this.emptyState();
    this.drift = false;
    this.warning = false;
    this.detections = 0;
    this.seen = 0;
  }

  /** The snapshot envelope around the subclass's plain-JSON state. */
  protected snapshot<T>(state: T): DetectorSnapshot<P, T> {
    return {
      format: 1,
      kind: this.kind,
      params: { ...this.params },
      state,
      drift: this.drift,
      warning: this.warning,
      detections: this.detections,
      seen: this.seen,
    };
  }

  /** Puts back the counters and the last signal of a checked snapshot (the state is the subclass's to restore). */
  protected restoreCounters(checked: { drift: boolean; warning: boolean; detections: number; seen: number }): void {
    this.drift = checked.drift;
    this.warning = checked.warning;
    this.detections = checked.detections;
    this.seen = checked.seen;
  }
}
