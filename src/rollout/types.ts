/**
 * Safe iteration's contract (issue 5): rollouts of a challenger against the champion on one endpoint, promotion
 * gates, automatic rollback and promotion, retraining hooks, and the audit log. Tables `rollouts`,
 * `rollout_policies` and `audit_log` (migration 0005_rollout).
 */
import type { ArmComparison, QualityReport } from "../feedback/index.js";
import type { QualityMetric } from "../package/index.js";
import type { TrafficRouter } from "../scoring/index.js";

/**
 * `canary`: `percent` of the alias's traffic goes to the challenger (sticky by the routing key when given);
 * `shadow`: the champion answers every request and the challenger scores a copy (`percent` of requests) that is
 * only logged; `ab`: like canary, reported per arm with a significance test.
 */
export type RolloutMode = "canary" | "shadow" | "ab";

export type RolloutState = "active" | "promoted" | "aborted" | "rolled_back";

/**
 * Automatic decisions during a rollout, judged on live quality per variant (the feedback loop) and request error
 * rates. All optional; an empty guard never acts by itself.
 */
export interface RolloutGuard {
  /** The live metric compared between arms (default: accuracy for classification, rmse for regression). */
  metric?: QualityMetric;
  /** Trailing window the arms are compared over. Default `1h`. */
  window?: string;
  /** Outcomes each arm needs before quality is judged. Default 100. */
  minOutcomes?: number;
  /**
   * Roll back when the challenger is worse than the champion by more than this (absolute, in the metric's units;
   * "worse" follows the metric's direction). Default 0.02. Unset `rollbackOnRegression: false` to turn it off.
   */
  margin?: number;
  rollbackOnRegression?: boolean;
  /**
   * Roll back when the challenger's error rate (failed requests / requests) exceeds the champion's by more than
   * this. Default 0.05; judged once the challenger has `minRequests` requests.
   */
  maxErrorRateIncrease?: number;
  /** Requests the challenger needs before its error rate is judged. Default 50. */
  minRequests?: number;
  /**
   * Promote automatically once the challenger has `minOutcomes` outcomes, the rollout has run `promoteAfter`
   * (duration label, e.g. `30m`) and the challenger is not worse than the champion by more than `margin`.
   * Default false (a person promotes).
   */
  autoPromote?: boolean;
  promoteAfter?: string;
}

export interface Rollout {
  id: string;
  model: string;
  /** The alias whose traffic is split (default `production`); its target is the champion. */
  alias: string;
  champion: number;
  challenger: number;
  mode: RolloutMode;
  /** Share of traffic (canary, ab) or of requests shadowed (shadow), 0..100. */
  percent: number;
  /** Route by a hash of the routing key (same key, same arm) when the request has one. */
  sticky: boolean;
  state: RolloutState;
  guard: RolloutGuard;
  startedAt: string;
  startedBy: string;
  reason: string | null;
  endedAt: string | null;
  endedBy: string | null;
  /** Why it ended: the person's reason, or the guard's finding. */
  endReason: string | null;
}

export interface StartRolloutInput {
  model: string;
  challenger: number;
  mode?: RolloutMode;
  /** Default 10. */
  percent?: number;
  /** Default `production`. */
  alias?: string;
  /** Default true. */
  sticky?: boolean;
  guard?: RolloutGuard;
  by: string;
  reason?: string;
}

/** Every deployment action, in the audit log. */
export type AuditAction =
  | "alias.set"
  | "alias.delete"
  | "alias.rollback"
  | "version.archive"
  | "version.unarchive"
  | "rollout.start"
  | "rollout.promote"
  | "rollout.abort"
  | "rollout.rollback"
  | "gate.pass"
  | "gate.fail"
  | "retrain.trigger"
  | "policy.set"
  | "deployment.create"
  | "deployment.update"
  | "deployment.delete";

export interface AuditEntry {
  id: number;
  at: string;
  actor: string;
  action: AuditAction;
  model: string | null;
  version: number | null;
  rolloutId: string | null;
  reason: string | null;
  /** What else describes the action (versions moved, metrics judged, hook results). */
  details: Record<string, unknown>;
}

export interface AuditInput {
  actor: string;
  action: AuditAction;
  model?: string;
  version?: number;
  rolloutId?: string;
  reason?: string;
  details?: Record<string, unknown>;
}

export interface AuditLog {
  record(entry: AuditInput): Promise<AuditEntry>;
  /** Newest first. */
  list(query?: { model?: string; action?: AuditAction; limit?: number; since?: string }): Promise<AuditEntry[]>;
}

/** A requirement of a gate: `metric op value` on the holdout file, e.g. `accuracy >= 0.9`. */
export interface GateRequirement {
  metric: QualityMetric;
  op: "<" | "<=" | ">" | ">=";
  value: number;
  text: string;
}

/**
 * A promotion gate: the candidate is scored on a labelled holdout file; it must meet every requirement and not be
 * worse than the current target of the alias by more than `margin[metric]` on the same file.
 */
export interface GateSpec {
  /** CSV, JSON Lines or Parquet file with the feature columns and a label column. */
  holdout: string;
  /** Column holding the actual label or value. Default `label`... then `target`, `y`. */
  labelColumn?: string;
  require?: GateRequirement[];
  /** Largest allowed regression against the current version per metric (absolute). */
  margin?: Partial<Record<QualityMetric, number>>;
}

export interface GateResult {
  passed: boolean;
  model: string;
  candidate: number;
  /** The alias's target compared with, if any. */
  current: number | null;
  rows: number;
  candidateMetrics: Record<string, number | null>;
  currentMetrics: Record<string, number | null> | null;
  /** One line per check, passed or not, e.g. `accuracy 0.93 >= 0.9: ok`. */
  checks: { check: string; passed: boolean }[];
}

/** What happens when an alert fires for a model and when a new version of it is registered. */
export interface RolloutPolicy {
  model: string;
  /**
   * `manual`: a new version waits for a person; `auto` ("fly"): a new version goes through the gate and, if it
   * passes, starts a canary with the guard below.
   */
  onNewVersion: "manual" | "auto";
  gate: GateSpec | null;
  canary: { mode: RolloutMode; percent: number; sticky: boolean; guard: RolloutGuard };
  /** Retraining trigger: called when a drift or quality alert fires for the model's production version. */
  retrain: RetrainHook | null;
}

export interface RetrainHook {
  /** POSTed the context as JSON. */
  webhook?: string;
  /** Run through the shell with the context as JSON on stdin and in MLSHIP_RETRAIN_CONTEXT (a file path). */
  command?: string;
  /** Which alerts trigger it. Default both. */
  on?: ("drift" | "quality")[];
  /** At most one call per model per this duration label. Default `1h`. */
  cooldown?: string;
  /** Kill the command after this many seconds. Default 600. */
  timeoutSeconds?: number;
}

/** What a retraining hook receives. */
export interface RetrainContext {
  model: string;
  version: number;
  alias: string;
  /** The alerts that triggered it. */
  alerts: { id: string; kind: string; message: string; window?: { size: string; start: string; end: string }; value: number | string | null }[];
  /** Live quality of the version over the alert's window, when known. */
  metrics: Record<string, number | null>;
  /** A JSON Lines file of recent predictions joined with their outcomes (inputs, prediction, actual). */
  recentData: { path: string; rows: number; start: string; end: string };
  /** The server's base URL and where to register a new version (the CLI) for hooks that retrain and register. */
  mlship: { url: string | null; home: string; store: string };
  at: string;
}

/** Requests and live quality of one arm of a rollout. */
export interface VariantStatus {
  variant: "champion" | "challenger" | "shadow";
  version: number;
  /** Requests scored by this arm since the rollout started, as this process counted them (scoring events). */
  requests: number;
  /** Of those, failed (any error the model or its queue returned). */
  errors: number;
  errorRate: number | null;
  /** Predictions logged for this arm (all replicas), from the prediction log. */
  logged: number;
  /** Live quality over the guard's window; null when the feedback loop is off. */
  quality: QualityReport | null;
}

/** The arms compared on the guard's metric, with a significance test (A/B): the feedback loop's comparison. */
export type RolloutComparison = ArmComparison;

export interface RolloutStatus {
  rollout: Rollout;
  variants: VariantStatus[];
  comparison: RolloutComparison | null;
  /** What the guard would do now and why (`none`, `rollback`, `promote`). */
  verdict: { action: "none" | "rollback" | "promote"; reason: string };
}

export interface Actor {
  by: string;
  reason?: string;
}

/** Rollouts, policies and the audit log over the SQL store; its `router` is what scoring consults. */
export interface RolloutService {
  readonly router: TrafficRouter;
  readonly audit: AuditLog;
  /** Starts a rollout of `challenger` against the alias's current target; MLSHIP_ERR_ROLLOUT_CONFLICT if one is active. */
  start(input: StartRolloutInput): Promise<Rollout>;
  get(id: string): Promise<Rollout>;
  /** The active rollout of a model's alias (default `production`), if any. */
  active(model: string, alias?: string): Promise<Rollout | undefined>;
  list(query?: { model?: string; state?: RolloutState; limit?: number }): Promise<Rollout[]>;
  /** Points the alias at the challenger and ends the rollout as `promoted`. */
  promote(id: string, actor: Actor): Promise<Rollout>;
  /** Ends the rollout; the alias stays on the champion. `rolled_back` when the guard (or a rollback) ended it. */
  abort(id: string, actor: Actor, state?: "aborted" | "rolled_back"): Promise<Rollout>;
  /** Arms, comparison and the guard's verdict. */
  status(id: string): Promise<RolloutStatus>;
  /** Aborts the alias's active rollout (if any) and moves the alias back to its previous version, audited. */
  rollbackModel(model: string, alias: string, actor: Actor): Promise<{ from: number | null; to: number | null; rollout: Rollout | undefined }>;
  getPolicy(model: string): Promise<RolloutPolicy>;
  setPolicy(policy: RolloutPolicy, actor: Actor): Promise<RolloutPolicy>;
  /** Re-reads active rollouts into the router (also on a timer and after every change made through this service). */
  refresh(): Promise<void>;
  close(): Promise<void>;
}
