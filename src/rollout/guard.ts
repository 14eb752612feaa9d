import { MlshipError } from "../core/index.js";
import { parseWindowSize } from "../monitor/index.js";
import { QUALITY_METRICS, type QualityMetric } from "../package/index.js";
import type { Rollout, RolloutComparison, RolloutGuard, VariantStatus } from "./types.js";

/** RolloutGuard's documented defaults. */
export const GUARD_DEFAULTS = {
  window: "1h",
  minOutcomes: 100,
  margin: 0.02,
  rollbackOnRegression: true,
  maxErrorRateIncrease: 0.05,
  minRequests: 50,
  autoPromote: false,
  /** Not documented in the contract: a rollout runs at least as long as the default guard window before promoting. */
  promoteAfter: "1h",
} as const;

export type GuardAction = "none" | "rollback" | "promote";

export interface GuardVerdict {
  action: GuardAction;
  reason: string;
}

/** Metrics where a lower value is better; every other quality metric is better higher. */

function percentText(rate: number): string {
  return `${(rate * 100).toFixed(1)}%`;
}

function num(value: number): string {
  return String(Number(value.toPrecision(4)));
}

function rateOf(arm: VariantStatus | undefined): number {
  if (arm === undefined || arm.requests === 0) return 0;
  return arm.errorRate ?? arm.errors / arm.requests;
}

/**
 * How much worse the challenger is than the champion on the compared metric (positive = worse), or undefined when
 * either value is missing.
 */
function regression(comparison: RolloutComparison | null): number | undefined {
  if (comparison === null || comparison.champion === null || comparison.challenger === null) return undefined;
  const diff = comparison.challenger - comparison.champion;
  return comparison.higherIsBetter ? -diff : diff;
}

/**
 * What the guard would do now, from the arms' request counters and live quality. Pure: the service decides
 * whether to act on it. Order: error rate (judged first, it needs no outcomes), then quality regression, then
 * automatic promotion; otherwise `none` with what it is waiting for.
 */
export function judgeRollout(rollout: Rollout, arms: readonly VariantStatus[], comparison: RolloutComparison | null, now: Date): GuardVerdict {
  if (rollout.state !== "active") return { action: "none", reason: `the rollout has ended (${rollout.state.replace("_", " ")})` };
  const guard: RolloutGuard = rollout.guard;
  const minOutcomes = guard.minOutcomes ?? GUARD_DEFAULTS.minOutcomes;
  const margin = guard.margin ?? GUARD_DEFAULTS.margin;
  const maxIncrease = guard.maxErrorRateIncrease ?? GUARD_DEFAULTS.maxErrorRateIncrease;
  const minRequests = guard.minRequests ?? GUARD_DEFAULTS.minRequests;
  const champion = arms.find((a) => a.variant === "champion");
  const challenger = arms.find((a) => a.variant === "challenger" || a.variant === "shadow");
  const vChampion = `version ${rollout.champion}`;
  const vChallenger = `version ${rollout.challenger}`;

  if (challenger !== undefined && challenger.requests >= minRequests) {
    const challengerRate = rateOf(challenger);
    const championRate = rateOf(champion);
    if (challengerRate - championRate > maxIncrease) {
      return {
        action: "rollback",
        reason:
          `challenger ${vChallenger} failed ${percentText(challengerRate)} of ${challenger.requests} requests against ` +
          `${percentText(championRate)} for champion ${vChampion}, more than the allowed increase of ${percentText(maxIncrease)}`,
      };
    }
  }

  const championOutcomes = champion?.quality?.outcomes ?? 0;
  const challengerOutcomes = challenger?.quality?.outcomes ?? 0;
  const worse = regression(comparison);
  const metric = comparison?.metric ?? guard.metric ?? "quality";
  if (guard.rollbackOnRegression !== false && worse !== undefined && comparison !== null && championOutcomes >= minOutcomes && challengerOutcomes >= minOutcomes && worse > margin) {
    return {
      action: "rollback",
      reason:
        `challenger ${vChallenger} ${metric} ${num(comparison.challenger as number)} is worse than champion ${vChampion} ` +
        `${num(comparison.champion as number)} by ${num(worse)}, more than the margin ${num(margin)} ` +
        `(${challengerOutcomes} and ${championOutcomes} outcomes)`,
    };
  }

  if (guard.autoPromote === true) {
    const promoteAfterMs = parseWindowSize(guard.promoteAfter ?? GUARD_DEFAULTS.promoteAfter);
    const ranMs = now.getTime() - new Date(rollout.startedAt).getTime();
    if (ranMs < promoteAfterMs) {
      return { action: "none", reason: `auto-promotion waits until the rollout has run ${guard.promoteAfter ?? GUARD_DEFAULTS.promoteAfter} (${durationText(ranMs)} so far)` };
    }
    if (challengerOutcomes < minOutcomes) {
      return { action: "none", reason: `auto-promotion waits for ${minOutcomes} outcomes of challenger ${vChallenger} (${challengerOutcomes} so far)` };
    }
    if (worse === undefined || comparison === null) {
      return { action: "none", reason: `auto-promotion waits for the ${metric} of both arms (no live quality to compare yet)` };
    }
    if (worse <= margin) {
      return {
        action: "promote",
        reason:
          `challenger ${vChallenger} ${metric} ${num(comparison.challenger as number)} is within the margin ${num(margin)} of champion ${vChampion} ` +
          `${num(comparison.champion as number)} after ${challengerOutcomes} outcomes and ${durationText(ranMs)}`,
      };
    }
    return { action: "none", reason: `challenger ${vChallenger} ${metric} is worse than champion ${vChampion} by ${num(worse)} (margin ${num(margin)}); not promoting` };
  }

  if (worse !== undefined && comparison !== null && (championOutcomes < minOutcomes || challengerOutcomes < minOutcomes)) {
    return { action: "none", reason: `quality is judged once both arms have ${minOutcomes} outcomes (champion ${championOutcomes}, challenger ${challengerOutcomes})` };
  }
  if (worse !== undefined && comparison !== null) {
    return { action: "none", reason: `challenger ${vChallenger} ${metric} ${num(comparison.challenger as number)} against champion ${vChampion} ${num(comparison.champion as number)}: within the margin ${num(margin)}` };
  }
  return { action: "none", reason: `no regression found (challenger ${challenger?.requests ?? 0} requests, ${challengerOutcomes} outcomes)` };
}

const GUARD_KEYS = new Set(["metric", "window", "minOutcomes", "margin", "rollbackOnRegression", "maxErrorRateIncrease", "minRequests", "autoPromote", "promoteAfter"]);

function invalid(field: string, message: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${field} ${message}`, { field });
}

function durationLabel(value: unknown, field: string): string {
  if (typeof value !== "string") throw invalid(field, `must be a duration such as "30m" or "1h", got ${JSON.stringify(value)}`);
  try {
    parseWindowSize(value);
  } catch {
    throw invalid(field, `must be a duration such as "30m" or "1h" (units ms, s, m, h, d, w), got ${JSON.stringify(value)}`);
  }
  return value.trim();
}

/** Checks a guard's fields (as sent over REST or stored in a policy), naming the bad one under `prefix`. */
export function validateGuard(value: unknown, prefix = "guard"): RolloutGuard {
  if (value === undefined || value === null) return {};
  if (typeof value !== "object" || Array.isArray(value)) throw invalid(prefix, "must be an object");
  const input = value as Record<string, unknown>;
  for (const key of Object.keys(input)) {
    if (!GUARD_KEYS.has(key)) throw invalid(`${prefix}.${key}`, `is not a guard setting (known: ${[...GUARD_KEYS].join(", ")})`);
  }
  const guard: RolloutGuard = {};
  const field = (key: string): string => `${prefix}.${key}`;
  if (input.metric !== undefined) {
    if (typeof input.metric !== "string" || !(QUALITY_METRICS as readonly string[]).includes(input.metric)) {
      throw invalid(field("metric"), `must be one of ${QUALITY_METRICS.join(", ")}, got ${JSON.stringify(input.metric)}`);
    }
    guard.metric = input.metric as QualityMetric;
  }
  if (input.window !== undefined) guard.window = durationLabel(input.window, field("window"));
  if (input.promoteAfter !== undefined) guard.promoteAfter = durationLabel(input.promoteAfter, field("promoteAfter"));
  const count = (key: "minOutcomes" | "minRequests"): void => {
    const v = input[key];
    if (v === undefined) return;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw invalid(field(key), `must be a whole number >= 0, got ${JSON.stringify(v)}`);
    guard[key] = v;
  };
  count("minOutcomes");
  count("minRequests");
  if (input.margin !== undefined) {
    if (typeof input.margin !== "number" || !Number.isFinite(input.margin) || input.margin < 0) throw invalid(field("margin"), `must be a number >= 0, got ${JSON.stringify(input.margin)}`);
    guard.margin = input.margin;
  }
  if (input.maxErrorRateIncrease !== undefined) {
    const v = input.maxErrorRateIncrease;
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || v > 1) throw invalid(field("maxErrorRateIncrease"), `must be a number from 0 to 1, got ${JSON.stringify(v)}`);
    guard.maxErrorRateIncrease = v;
  }
  for (const key of ["rollbackOnRegression", "autoPromote"] as const) {
    const v = input[key];
    if (v === undefined) continue;
    if (typeof v !== "boolean") throw invalid(field(key), `must be true or false, got ${JSON.stringify(v)}`);
    guard[key] = v;
  }
  return guard;
}

/** A run time for guard reasons: seconds under two minutes, whole minutes under two hours, hours beyond. */
function durationText(ms: number): string {
  if (ms < 120_000) return `${Math.floor(ms / 1000)} s`;
  if (ms < 7_200_000) return `${Math.floor(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}
