import { randomUUID } from "node:crypto";
import { MlshipError, type Logger } from "../core/index.js";
import { higherIsBetter } from "../feedback/index.js";
import type { FeedbackService, JoinedPrediction, QualityReport, Variant } from "../feedback/index.js";
import { parseWindowSize } from "../monitor/index.js";
import { QUALITY_METRICS, type QualityMetric } from "../package/index.js";
import type { Registry } from "../registry/index.js";
import type { ScoringEvent, ScoringService } from "../scoring/index.js";
import type { SqlStore } from "../store/index.js";
import { SqlAuditLog } from "./audit.js";
import { parseRequirement } from "./gates.js";
import { GUARD_DEFAULTS, judgeRollout, validateGuard } from "./guard.js";
import { RolloutRouter } from "./router.js";
import { DEFAULT_ALIAS, RolloutStore, defaultRolloutPolicy } from "./store.js";
import type {
  Actor,
  GateRequirement,
  GateSpec,
  RetrainHook,
  Rollout,
  RolloutComparison,
  RolloutMode,
  RolloutPolicy,
  RolloutService,
  RolloutState,
  RolloutStatus,
  StartRolloutInput,
  VariantStatus,
} from "./types.js";

/**
 * Compares the arms on one metric with a significance test (src/feedback/significance.ts `compareArms`, wired by
 * the composition root, which also needs the versions' feedback spec: hence the context). It gets every logged row
 * of each arm in the guard's window (`actual` null where no outcome was joined).
 */
export type CompareArms = (
  metric: QualityMetric,
  championRows: readonly JoinedPrediction[],
  challengerRows: readonly JoinedPrediction[],
  context: { model: string; champion: number; challenger: number; rolloutId: string },
) => RolloutComparison | Promise<RolloutComparison>;

export interface CreateRolloutServiceOptions {
  store: SqlStore;
  registry: Registry;
  scoring: ScoringService;
  logger: Logger;
  /** Per-variant live quality and logged counts; without it arms have no quality and there is no comparison. */
  feedback?: FeedbackService;
  compare?: CompareArms;
  /**
   * How often active rollouts are re-read from the store, so rollouts started or ended by another replica or the
   * CLI take effect here. Default 2000 ms; 0 turns the timer off (one-shot CLI commands).
   */
  refreshMs?: number;
  now?: () => Date;
  /** Randomness of the router for requests without a routing key (tests). */
  random?: () => number;
}

export const ROLLOUT_MODES: readonly RolloutMode[] = ["canary", "shadow", "ab"];
export const ROLLOUT_STATES: readonly RolloutState[] = ["active", "promoted", "aborted", "rolled_back"];
export const DEFAULT_PERCENT = 10;

const GATE_OPS = ["<", "<=", ">", ">="] as const;
const RETRAIN_ON = ["drift", "quality"] as const;
/** Request counters of this many ended rollouts are kept for `status`; older ones are forgotten. */
const ENDED_COUNTERS_KEPT = 256;

function invalid(field: string, message: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${field} ${message}`, { field });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function validateMode(value: unknown, field = "mode"): RolloutMode {
  if (typeof value !== "string" || !(ROLLOUT_MODES as readonly string[]).includes(value)) {
    throw invalid(field, `must be one of ${ROLLOUT_MODES.join(", ")}, got ${JSON.stringify(value)}`);
  }
  return value as RolloutMode;
}

export function validatePercent(value: unknown, field = "percent"): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0 || value > 100) {
    throw invalid(field, `must be a number from 0 to 100, got ${JSON.stringify(value)}`);
  }
  return value;
}

function validateBoolean(value: unknown, field: string): boolean {
  if (typeof value !== "boolean") throw invalid(field, `must be true or false, got ${JSON.stringify(value)}`);
  return value;
}

function validateMetric(value: unknown, field: string): QualityMetric {
  if (typeof value !== "string" || !(QUALITY_METRICS as readonly string[]).includes(value)) {
    throw invalid(field, `must be one of ${QUALITY_METRICS.join(", ")}, got ${JSON.stringify(value)}`);
  }
  return value as QualityMetric;
}

function validateGate(value: unknown): GateSpec | null {
  if (value === undefined || value === null) return null;
  if (!isObject(value)) throw invalid("gate", "must be an object with a holdout file, or null");
  if (typeof value.holdout !== "string" || value.holdout.trim() === "") throw invalid("gate.holdout", "must name the labelled holdout file");
  const gate: GateSpec = { holdout: value.holdout };
  if (value.labelColumn !== undefined) {
    if (typeof value.labelColumn !== "string" || value.labelColumn === "") throw invalid("gate.labelColumn", "must be a column name");
    gate.labelColumn = value.labelColumn;
  }
  if (value.require !== undefined) {
    if (!Array.isArray(value.require)) throw invalid("gate.require", "must be a list of requirements");
    gate.require = value.require.map((item: unknown, i): GateRequirement => {
      const field = `gate.require[${i}]`;
      if (typeof item === "string") {
        try {
          return parseRequirement(item);
        } catch (error) {
          throw invalid(field, error instanceof Error ? error.message : String(error));
        }
      }
      if (!isObject(item)) throw invalid(field, 'must be a rule such as "accuracy >= 0.9" or an object {metric, op, value}');
      const metric = validateMetric(item.metric, `${field}.metric`);
      if (typeof item.op !== "string" || !(GATE_OPS as readonly string[]).includes(item.op)) throw invalid(`${field}.op`, `must be one of ${GATE_OPS.join(" ")}`);
      if (typeof item.value !== "number" || !Number.isFinite(item.value)) throw invalid(`${field}.value`, "must be a number");
      const op = item.op as GateRequirement["op"];
      const text = typeof item.text === "string" && item.text !== "" ? item.text : `${metric} ${op} ${item.value}`;
      return { metric, op, value: item.value, text };
    });
  }
  if (value.margin !== undefined) {
    if (!isObject(value.margin)) throw invalid("gate.margin", "must be an object of metric -> largest allowed regression");
    const margin: Partial<Record<QualityMetric, number>> = {};
    for (const [key, v] of Object.entries(value.margin)) {
      const metric = validateMetric(key, `gate.margin.${key}`);
      if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw invalid(`gate.margin.${key}`, "must be a number >= 0");
      margin[metric] = v;
    }
    gate.margin = margin;
  }
  return gate;
}

function validateRetrain(value: unknown): RetrainHook | null {
  if (value === undefined || value === null) return null;
  if (!isObject(value)) throw invalid("retrain", "must be an object with a webhook or a command, or null");
  const hook: RetrainHook = {};
  if (value.webhook !== undefined) {
    if (typeof value.webhook !== "string" || !/^https?:\/\/\S+$/i.test(value.webhook)) throw invalid("retrain.webhook", "must be an http(s) URL");
    hook.webhook = value.webhook;
  }
  if (value.command !== undefined) {
    if (typeof value.command !== "string" || value.command.trim() === "") throw invalid("retrain.command", "must be a shell command");
    hook.command = value.command;
  }
  if (hook.webhook === undefined && hook.command === undefined) throw invalid("retrain", "needs a webhook or a command");
  if (value.on !== undefined) {
    if (!Array.isArray(value.on) || value.on.length === 0 || value.on.some((x) => !(RETRAIN_ON as readonly unknown[]).includes(x))) {
      throw invalid("retrain.on", `must be a non-empty list of ${RETRAIN_ON.join(", ")}`);
    }
    hook.on = [...new Set(value.on as ("drift" | "quality")[])];
  }
  if (value.cooldown !== undefined) {
    if (typeof value.cooldown !== "string") throw invalid("retrain.cooldown", "must be a duration such as \"1h\"");
    try {
      parseWindowSize(value.cooldown);
    } catch {
      throw invalid("retrain.cooldown", `must be a duration such as "1h", got ${JSON.stringify(value.cooldown)}`);
    }
    hook.cooldown = value.cooldown;
  }
  if (value.timeoutSeconds !== undefined) {
    if (typeof value.timeoutSeconds !== "number" || !Number.isFinite(value.timeoutSeconds) || value.timeoutSeconds <= 0) throw invalid("retrain.timeoutSeconds", "must be a number > 0");
    hook.timeoutSeconds = value.timeoutSeconds;
  }
  return hook;
}

/** Checks a rollout policy (REST body, stored value) for `model`, naming the bad field; missing parts take the defaults. */
export function validatePolicy(value: unknown, model: string): RolloutPolicy {
  if (!isObject(value)) throw invalid("body", "must be a rollout policy object");
  const defaults = defaultRolloutPolicy(model);
  const known = new Set(["model", "onNewVersion", "gate", "canary", "retrain"]);
  for (const key of Object.keys(value)) if (!known.has(key)) throw invalid(key, `is not a policy field (known: ${[...known].join(", ")})`);
  if (value.model !== undefined && value.model !== model) throw invalid("model", `is "${String(value.model)}" but the policy is for "${model}"`);
  let onNewVersion = defaults.onNewVersion;
  if (value.onNewVersion !== undefined) {
    if (value.onNewVersion !== "manual" && value.onNewVersion !== "auto") throw invalid("onNewVersion", `must be manual or auto, got ${JSON.stringify(value.onNewVersion)}`);
    onNewVersion = value.onNewVersion;
  }
  const canary = { ...defaults.canary };
  if (value.canary !== undefined) {
    if (!isObject(value.canary)) throw invalid("canary", "must be an object {mode, percent, sticky, guard}");
    for (const key of Object.keys(value.canary)) if (!["mode", "percent", "sticky", "guard"].includes(key)) throw invalid(`canary.${key}`, "is not a canary setting (known: mode, percent, sticky, guard)");
    if (value.canary.mode !== undefined) canary.mode = validateMode(value.canary.mode, "canary.mode");
    if (value.canary.percent !== undefined) canary.percent = validatePercent(value.canary.percent, "canary.percent");
    if (value.canary.sticky !== undefined) canary.sticky = validateBoolean(value.canary.sticky, "canary.sticky");
    canary.guard = validateGuard(value.canary.guard, "canary.guard");
  }
  return { model, onNewVersion, gate: validateGate(value.gate), canary, retrain: validateRetrain(value.retrain) };
}

function validateStart(input: StartRolloutInput): { mode: RolloutMode; percent: number; alias: string; sticky: boolean } {
  if (!isObject(input)) throw invalid("body", "must be an object");
  if (typeof input.model !== "string" || input.model === "") throw invalid("model", "must name a registered model");
  if (typeof input.challenger !== "number" || !Number.isSafeInteger(input.challenger) || input.challenger < 1) {
    throw invalid("challenger", `must be a version number (1 or more), got ${JSON.stringify(input.challenger)}`);
  }
  if (typeof input.by !== "string" || input.by === "") throw invalid("by", "must name who starts the rollout");
  if (input.reason !== undefined && typeof input.reason !== "string") throw invalid("reason", "must be text");
  const alias = input.alias ?? DEFAULT_ALIAS;
  if (typeof alias !== "string" || alias === "") throw invalid("alias", "must be an alias name");
  return {
    mode: input.mode === undefined ? "canary" : validateMode(input.mode),
    percent: input.percent === undefined ? DEFAULT_PERCENT : validatePercent(input.percent),
    alias,
    sticky: input.sticky === undefined ? true : validateBoolean(input.sticky, "sticky"),
  };
}

type ArmCounters = Record<Variant, { requests: number; errors: number }>;

function emptyCounters(): ArmCounters {
  return { champion: { requests: 0, errors: 0 }, challenger: { requests: 0, errors: 0 }, shadow: { requests: 0, errors: 0 } };
}

/**
 * Rollouts of a challenger against an alias's champion, their policies and the audit log, over the SQL store.
 * Installs its router into scoring at once, and counts each arm's requests and errors from scoring events.
 */
export function createRolloutService(options: CreateRolloutServiceOptions): RolloutService {
  const { registry, scoring, logger, feedback } = options;
  const now = options.now ?? (() => new Date());
  const store = new RolloutStore(options.store);
  const audit = new SqlAuditLog(options.store);
  const router = new RolloutRouter(options.random === undefined ? {} : { random: options.random });
  const counters = new Map<string, ArmCounters>();
  let closed = false;

  scoring.setRouter(router);
  const unsubscribe = scoring.onScored((event: ScoringEvent) => {
    if (event.rolloutId === undefined || event.variant === undefined) return;
    let arms = counters.get(event.rolloutId);
    if (arms === undefined) counters.set(event.rolloutId, (arms = emptyCounters()));
    const arm = arms[event.variant];
    arm.requests++;
    if (!event.ok) arm.errors++;
  });

  // Refreshes may overlap (timer and a change): only a newer read replaces what the router holds.
  let refreshSeq = 0;
  let appliedSeq = 0;
  const refresh = async (): Promise<void> => {
    const seq = ++refreshSeq;
    const active = await store.allActive();
    if (seq < appliedSeq || closed) return;
    appliedSeq = seq;
    router.update(active);
    const activeIds = new Set(active.map((r) => r.id));
    const ended = [...counters.keys()].filter((id) => !activeIds.has(id));
    for (const id of ended.slice(0, Math.max(0, ended.length - ENDED_COUNTERS_KEPT))) counters.delete(id);
  };
  const refreshQuietly = (): void => {
    refresh().catch((error: unknown) => logger.warn({ err: error }, "could not re-read active rollouts; routing keeps the last ones read"));
  };
  const refreshMs = options.refreshMs ?? 2000;
  const timer = refreshMs > 0 ? setInterval(refreshQuietly, refreshMs) : undefined;
  timer?.unref();
  refreshQuietly();

  /** After a change: the router at once, and scoring's alias resolutions when an alias moved. */
  const changed = async (aliasMoved: boolean): Promise<void> => {
    await refresh();
    if (aliasMoved) await scoring.refresh();
  };

  const endActive = async (id: string): Promise<Rollout> => {
    const rollout = await store.get(id);
    if (rollout.state !== "active") {
      throw new MlshipError("MLSHIP_ERR_ROLLOUT_CONFLICT", `rollout ${id} of ${rollout.model}@${rollout.alias} already ended (${rollout.state})`, { field: "id" });
    }
    return rollout;
  };

  const abort = async (id: string, actor: Actor, state: "aborted" | "rolled_back" = "aborted"): Promise<Rollout> => {
    if (state !== "aborted" && state !== "rolled_back") throw invalid("state", "must be aborted or rolled_back");
    await endActive(id);
    const ended = await store.end(id, state, actor.by, actor.reason ?? null, now().toISOString());
    await audit.record({
      actor: actor.by,
      action: state === "rolled_back" ? "rollout.rollback" : "rollout.abort",
      model: ended.model,
      version: ended.challenger,
      rolloutId: ended.id,
      ...(actor.reason === undefined ? {} : { reason: actor.reason }),
      details: { alias: ended.alias, champion: ended.champion, challenger: ended.challenger, mode: ended.mode, percent: ended.percent },
    });
    await changed(false);
    return ended;
  };

  const quality = async (rollout: Rollout, version: number, variant: Variant, window: string, at: Date): Promise<QualityReport | null> => {
    if (feedback === undefined) return null;
    try {
      return await feedback.quality({ model: rollout.model, version, variant, window, now: at });
    } catch (error) {
      logger.warn({ err: error, rollout: rollout.id, version, variant }, "live quality of a rollout arm is unavailable");
      return null;
    }
  };

  const comparisonOf = async (rollout: Rollout, arms: VariantStatus[]): Promise<RolloutComparison | null> => {
    const [champion, challenger] = arms;
    if (champion?.quality == null || challenger?.quality == null) return null;
    const metric: QualityMetric = rollout.guard.metric ?? (champion.quality.task === "regression" ? "rmse" : "accuracy");
    if (options.compare !== undefined && feedback !== undefined) {
      const window = champion.quality.window;
      const rowsOf = (arm: VariantStatus): Promise<JoinedPrediction[]> =>
        feedback.store.joined({ model: rollout.model, version: arm.version, variant: arm.variant, start: window.start, end: window.end });
      const [championRows, challengerRows] = await Promise.all([rowsOf(champion), rowsOf(challenger)]);
      return options.compare(metric, championRows, challengerRows, { model: rollout.model, champion: champion.version, challenger: challenger.version, rolloutId: rollout.id });
    }
    const a = champion.quality.metrics[metric] ?? null;
    const b = challenger.quality.metrics[metric] ?? null;
    return {
      metric,
      champion: a,
      challenger: b,
      difference: a === null || b === null ? null : b - a,
      higherIsBetter: higherIsBetter(metric),
      test: null,
      pValue: null,
      significant: false,
    };
  };

  const service: RolloutService = {
    router,
    audit,

    async start(input) {
      const { mode, percent, alias, sticky } = validateStart(input);
      const guard = validateGuard(input.guard);
      const model = await registry.getModel(input.model);
      const champion = model.aliases[alias];
      if (champion === undefined) {
        throw new MlshipError("MLSHIP_ERR_MODEL_ALIAS_NOT_FOUND", `model "${model.name}" has no alias "${alias}": point it at the current version first (its target is the champion)`, { field: "alias" });
      }
      const challenger = await registry.getVersion(model.name, input.challenger);
      if (challenger.status === "archived") {
        throw new MlshipError("MLSHIP_ERR_ROLLOUT_CONFLICT", `version ${challenger.version} of "${model.name}" is archived; unarchive it before rolling it out`, { field: "challenger" });
      }
      if (challenger.version === champion) {
        throw new MlshipError("MLSHIP_ERR_ROLLOUT_CONFLICT", `version ${champion} is already the target of ${model.name}@${alias} (the champion); roll out another version`, { field: "challenger" });
      }
      const existing = await store.active(model.name, alias);
      if (existing !== undefined) {
        throw new MlshipError(
          "MLSHIP_ERR_ROLLOUT_CONFLICT",
          `model "${model.name}" already has an active ${existing.mode} rollout on alias "${alias}" (${existing.id}: version ${existing.challenger} against ${existing.champion}); promote or abort it first`,
          { field: "model" },
        );
      }
      const rollout: Rollout = {
        id: randomUUID(),
        model: model.name,
        alias,
        champion,
        challenger: challenger.version,
        mode,
        percent,
        sticky,
        state: "active",
        guard,
        startedAt: now().toISOString(),
        startedBy: input.by,
        reason: input.reason ?? null,
        endedAt: null,
        endedBy: null,
        endReason: null,
      };
      await store.insert(rollout);
      await audit.record({
        actor: input.by,
        action: "rollout.start",
        model: rollout.model,
        version: rollout.challenger,
        rolloutId: rollout.id,
        ...(input.reason === undefined ? {} : { reason: input.reason }),
        details: { alias, champion, challenger: rollout.challenger, mode, percent, sticky, guard },
      });
      await changed(false);
      return rollout;
    },

    get: (id) => store.get(id),

    active: (model, alias = DEFAULT_ALIAS) => store.active(model, alias),

    list(query = {}) {
      if (query.state !== undefined && !ROLLOUT_STATES.includes(query.state)) throw invalid("state", `must be one of ${ROLLOUT_STATES.join(", ")}, got ${JSON.stringify(query.state)}`);
      if (query.limit !== undefined && (!Number.isSafeInteger(query.limit) || query.limit < 1)) throw invalid("limit", `must be a whole number >= 1, got ${String(query.limit)}`);
      return store.list(query);
    },

    async promote(id, actor) {
      const rollout = await endActive(id);
      const event = await registry.setAlias(rollout.model, rollout.alias, rollout.challenger, { by: actor.by, reason: actor.reason ?? `promoted rollout ${rollout.id}` });
      const ended = await store.end(id, "promoted", actor.by, actor.reason ?? null, now().toISOString());
      await audit.record({
        actor: actor.by,
        action: "rollout.promote",
        model: ended.model,
        version: ended.challenger,
        rolloutId: ended.id,
        ...(actor.reason === undefined ? {} : { reason: actor.reason }),
        details: { alias: ended.alias, from: event.from, to: event.to, aliasEventId: event.id, mode: ended.mode, percent: ended.percent },
      });
      await changed(true);
      return ended;
    },

    abort,

    async status(id) {
      const rollout = await store.get(id);
      const at = now();
      const window = rollout.guard.window ?? GUARD_DEFAULTS.window;
      const challengerVariant: Variant = rollout.mode === "shadow" ? "shadow" : "challenger";
      const counts = counters.get(id) ?? emptyCounters();
      let logged: Partial<Record<Variant, number>> = {};
      if (feedback !== undefined) {
        try {
          logged = await feedback.store.variantCounts(id);
        } catch (error) {
          logger.warn({ err: error, rollout: id }, "logged prediction counts of a rollout are unavailable");
        }
      }
      const arm = async (variant: "champion" | "challenger" | "shadow", version: number): Promise<VariantStatus> => {
        const c = counts[variant];
        return {
          variant,
          version,
          requests: c.requests,
          errors: c.errors,
          errorRate: c.requests === 0 ? null : c.errors / c.requests,
          logged: logged[variant] ?? 0,
          quality: await quality(rollout, version, variant, window, at),
        };
      };
      const variants = await Promise.all([arm("champion", rollout.champion), arm(challengerVariant, rollout.challenger)]);
      let comparison: RolloutComparison | null = null;
      try {
        comparison = await comparisonOf(rollout, variants);
      } catch (error) {
        logger.warn({ err: error, rollout: id }, "could not compare the arms of a rollout");
      }
      const status: RolloutStatus = { rollout, variants, comparison, verdict: judgeRollout(rollout, variants, comparison, at) };
      return status;
    },

    async rollbackModel(model, alias, actor) {
      const active = await store.active(model, alias);
      const rollout = active === undefined ? undefined : await abort(active.id, actor, "rolled_back");
      const event = await registry.rollback(model, alias, { by: actor.by, ...(actor.reason === undefined ? {} : { reason: actor.reason }) });
      await audit.record({
        actor: actor.by,
        action: "alias.rollback",
        model: event.name,
        ...(event.to === null ? {} : { version: event.to }),
        ...(rollout === undefined ? {} : { rolloutId: rollout.id }),
        ...(actor.reason === undefined ? {} : { reason: actor.reason }),
        details: { alias, from: event.from, to: event.to, aliasEventId: event.id },
      });
      await changed(true);
      return { from: event.from, to: event.to, rollout };
    },

    async getPolicy(model) {
      return (await store.getPolicy(model)) ?? defaultRolloutPolicy(model);
    },

    async setPolicy(policy, actor) {
      const name = isObject(policy) && typeof policy.model === "string" ? policy.model : undefined;
      if (name === undefined || name === "") throw invalid("model", "must name a registered model");
      const valid = validatePolicy(policy, name);
      await registry.getModel(name);
      await store.setPolicy(valid, actor.by, now().toISOString());
      await audit.record({
        actor: actor.by,
        action: "policy.set",
        model: name,
        ...(actor.reason === undefined ? {} : { reason: actor.reason }),
        details: { policy: { onNewVersion: valid.onNewVersion, gate: valid.gate, canary: valid.canary, retrain: valid.retrain } },
      });
      return valid;
    },

    refresh,

    async close() {
      if (closed) return;
      closed = true;
      if (timer !== undefined) clearInterval(timer);
      unsubscribe();
      scoring.setRouter(undefined);
    },
  };
  return service;
}
