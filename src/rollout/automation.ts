/**
 * The rollout loop: acts on the guard's verdicts (automatic rollback and promotion of active rollouts) and, for
 * models whose policy says `onNewVersion: auto` ("fly" mode), sends each newly registered version through the gate
 * and into a canary.
 */
import { isMlshipError } from "../core/index.js";
import type { Logger } from "../core/index.js";
import type { Registry } from "../registry/index.js";
import { recordGate } from "./gates.js";
import type { AuditAction, GateResult, GateSpec, RolloutService } from "./types.js";

export const GUARD_ACTOR = "mlship-guard";
export const AUTOMATION_ACTOR = "mlship-automation";
export const DEFAULT_AUTOMATION_CHECK_MS = 15_000;
/** The alias new versions are compared with and canaried against. */
const AUTOMATION_ALIAS = "production";

export interface RolloutAutomationOptions {
  rollouts: RolloutService;
  registry: Pick<Registry, "listModels" | "getVersion">;
  /** Judges a candidate against the policy's gate (evaluateGate bound to scoring, registry and the feedback loop). */
  evaluateGate: (model: string, candidate: number, gate: GateSpec) => Promise<GateResult>;
  logger: Logger;
  /** Between ticks. Default 15 s. */
  checkMs?: number;
  /** Run `tick` on a timer after `start()`. Default true. */
  timers?: boolean;
  now?: () => Date;
}

/** What one tick did. */
export interface AutomationTickResult {
  at: string;
  /** Active rollouts looked at. */
  checked: number;
  /** Guard verdicts acted on. */
  actions: { rolloutId: string; model: string; action: "rollback" | "promote"; reason: string }[];
  /** New versions seen (after the first tick), and what became of each. */
  newVersions: { model: string; version: number; outcome: "manual" | "gate_failed" | "started" | "skipped" | "failed"; detail: string; rolloutId?: string }[];
  /** Errors logged (and audited where they concern a model). */
  errors: { model?: string; rolloutId?: string; message: string }[];
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function errorCode(error: unknown): string | undefined {
  return isMlshipError(error) ? error.code : undefined;
}

/**
 * Runs the rollout loop in a server (or a test calling `tick`). Never throws from `tick`. When several versions of a
 * model were registered between two ticks, only the newest is rolled out; a version whose gate or start failed is
 * not tried again (the failure is in the audit log).
 */
export class RolloutAutomation {
  readonly checkMs: number;
  /** Highest version number seen per model; filled from the registry on the first tick. */
  private readonly seen = new Map<string, number>();
  private initialised = false;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<AutomationTickResult> | undefined;
  private closed = false;
  private readonly now: () => Date;

  constructor(private readonly options: RolloutAutomationOptions) {
    this.checkMs = options.checkMs ?? DEFAULT_AUTOMATION_CHECK_MS;
    this.now = options.now ?? (() => new Date());
  }

  /** Starts the timer (unref'd: it never keeps the process alive). The first tick runs at once. */
  start(): void {
    if (this.closed || this.timer !== undefined || this.options.timers === false) return;
    const run = (): void => {
      // A tick still running (a slow gate) is not overlapped; the next one waits for the timer.
      if (this.running === undefined) {
        // tick() handles its own failures; anything that still escapes is logged, never left to end the process.
        this.tick().catch((error: unknown) => this.options.logger.error({ event: "rollout_automation_failed", err: error }, `rollout automation failed: ${errorText(error)}`));
      }
    };
    this.timer = setInterval(run, this.checkMs);
    this.timer.unref();
    run();
  }

  /** Stops the timer and waits for a tick in progress. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  /** One pass: guard verdicts on active rollouts, then newly registered versions. Concurrent calls share one pass. */
  tick(): Promise<AutomationTickResult> {
    this.running ??= this.pass().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async pass(): Promise<AutomationTickResult> {
    const result: AutomationTickResult = { at: this.now().toISOString(), checked: 0, actions: [], newVersions: [], errors: [] };
    await this.guardActiveRollouts(result);
    await this.newVersions(result);
    return result;
  }

  private async guardActiveRollouts(result: AutomationTickResult): Promise<void> {
    const { rollouts, logger } = this.options;
    let active;
    try {
      active = await rollouts.list({ state: "active" });
    } catch (error) {
      logger.error({ event: "rollout_automation_failed", err: error }, `rollout automation could not list active rollouts: ${errorText(error)}`);
      result.errors.push({ message: errorText(error) });
      return;
    }
    for (const rollout of active) {
      result.checked++;
      try {
        const { verdict } = await rollouts.status(rollout.id);
        if (verdict.action === "none") continue;
        const actor = { by: GUARD_ACTOR, reason: verdict.reason };
        if (verdict.action === "rollback") await rollouts.abort(rollout.id, actor, "rolled_back");
        else await rollouts.promote(rollout.id, actor);
        result.actions.push({ rolloutId: rollout.id, model: rollout.model, action: verdict.action, reason: verdict.reason });
        const line = { event: `rollout_auto_${verdict.action}`, rolloutId: rollout.id, model: rollout.model, champion: rollout.champion, challenger: rollout.challenger };
        if (verdict.action === "rollback") logger.warn(line, `rollout ${rollout.id} of ${rollout.model} rolled back: ${verdict.reason}`);
        else logger.info(line, `rollout ${rollout.id} of ${rollout.model} promoted: ${verdict.reason}`);
      } catch (error) {
        // Another replica may have ended it first (NOT_FOUND / CONFLICT): that is the expected race, not a failure.
        const raced = errorCode(error) === "MLSHIP_ERR_ROLLOUT_CONFLICT" || errorCode(error) === "MLSHIP_ERR_ROLLOUT_NOT_FOUND";
        logger[raced ? "info" : "error"]({ event: "rollout_guard_failed", rolloutId: rollout.id, model: rollout.model, err: error }, `guard of rollout ${rollout.id} (${rollout.model}): ${errorText(error)}`);
        if (!raced) result.errors.push({ model: rollout.model, rolloutId: rollout.id, message: errorText(error) });
      }
    }
  }

  private async newVersions(result: AutomationTickResult): Promise<void> {
    const { registry, logger } = this.options;
    let models;
    try {
      models = await registry.listModels();
    } catch (error) {
      logger.error({ event: "rollout_automation_failed", err: error }, `rollout automation could not list models: ${errorText(error)}`);
      result.errors.push({ message: errorText(error) });
      return;
    }
    const first = !this.initialised;
    this.initialised = true;
    for (const model of models) {
      const seen = this.seen.get(model.name);
      // Versions that existed when the loop started, and models it had not seen, are taken as they are.
      if (first || seen === undefined) {
        this.seen.set(model.name, model.latestVersion);
        continue;
      }
      if (model.latestVersion <= seen) continue;
      // Recorded before acting, so a version that fails is not retried (and re-audited) on every tick.
      this.seen.set(model.name, model.latestVersion);
      result.newVersions.push(await this.onNewVersion(model.name, model.latestVersion, model.aliases[AUTOMATION_ALIAS], result));
    }
  }

  private async onNewVersion(model: string, version: number, current: number | undefined, result: AutomationTickResult): Promise<AutomationTickResult["newVersions"][number]> {
    const { rollouts, logger } = this.options;
    const reason = `new version ${version} registered (policy auto)`;
    // The audit action a failure is recorded under: the gate's while it runs, the start's otherwise.
    let stage: Extract<AuditAction, "gate.fail" | "rollout.start"> = "rollout.start";
    try {
      const policy = await rollouts.getPolicy(model);
      if (policy.onNewVersion !== "auto") return { model, version, outcome: "manual", detail: "the policy leaves new versions to a person" };
      const record = await this.options.registry.getVersion(model, version);
      if (record.status !== "ready") return { model, version, outcome: "skipped", detail: `version ${version} is ${record.status}` };
      if (current === undefined) return { model, version, outcome: "skipped", detail: `no '${AUTOMATION_ALIAS}' alias to canary against` };
      if (current === version) return { model, version, outcome: "skipped", detail: `'${AUTOMATION_ALIAS}' already points at version ${version}` };
      if (policy.gate !== null) {
        stage = "gate.fail";
        const gate = await this.options.evaluateGate(model, version, policy.gate);
        await recordGate({ audit: rollouts.audit, by: AUTOMATION_ACTOR, reason }, gate, policy.gate, AUTOMATION_ALIAS);
        if (!gate.passed) {
          const failed = gate.checks.filter((c) => !c.passed).map((c) => c.check).join("; ");
          logger.warn({ event: "rollout_auto_gate_failed", model, version }, `${model}@${version} failed its gate, no canary: ${failed}`);
          return { model, version, outcome: "gate_failed", detail: failed };
        }
      }
      stage = "rollout.start";
      const { mode, percent, sticky, guard } = policy.canary;
      const rollout = await rollouts.start({ model, challenger: version, mode, percent, sticky, guard, alias: AUTOMATION_ALIAS, by: AUTOMATION_ACTOR, reason });
      logger.info({ event: "rollout_auto_start", model, version, rolloutId: rollout.id, mode, percent }, `${model}@${version}: ${mode} rollout ${rollout.id} started at ${percent}%`);
      return { model, version, outcome: "started", detail: `${mode} ${percent}%`, rolloutId: rollout.id };
    } catch (error) {
      const message = errorText(error);
      logger.error({ event: "rollout_auto_failed", model, version, err: error }, `automatic rollout of ${model}@${version} failed: ${message}`);
      result.errors.push({ model, message });
      try {
        await rollouts.audit.record({
          actor: AUTOMATION_ACTOR,
          action: stage,
          model,
          version,
          reason: `${reason}: failed: ${message}`,
          details: { ok: false, error: { code: errorCode(error) ?? null, message } },
        });
      } catch (auditError) {
        logger.error({ event: "rollout_auto_audit_failed", model, err: auditError }, `could not record the failed rollout of ${model}@${version}: ${errorText(auditError)}`);
      }
      return { model, version, outcome: "failed", detail: message };
    }
  }
}
