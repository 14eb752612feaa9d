/**
 * Promoting a version to an alias, the one path the CLI (`mlship models promote`) and REST
 * (`POST /api/v1/models/{name}/promote`) share: an optional gate on a labelled holdout file, then either the alias
 * moves at once or a canary rollout of the version starts. Every step is audited.
 */
import type { AliasEvent, Registry } from "../registry/index.js";
import type { ScoringService } from "../scoring/index.js";
import { evaluateGate, gateFailedError, recordGate, setAliasAudited, type ComputeQuality, type FeedbackSpecOf } from "./gates.js";
import type { GateResult, GateSpec, Rollout, RolloutService } from "./types.js";

export interface PromoteVersionInput {
  model: string;
  version: number;
  /** Default `production`. */
  alias?: string;
  /** Judge the version on a holdout file first; a failed gate throws MLSHIP_ERR_ROLLOUT_GATE_FAILED (result in details). */
  gate?: GateSpec;
  /** Start a canary with this share of the alias's traffic (the policy's stickiness and guard) instead of moving the alias. */
  canaryPercent?: number;
  by: string;
  reason?: string;
}

export interface PromoteVersionDeps {
  rollouts: RolloutService;
  registry: Registry;
  scoring: ScoringService;
  computeQuality: ComputeQuality;
  specOf: FeedbackSpecOf;
}

export interface PromoteVersionResult {
  gate: GateResult | null;
  /** The alias move, when no canary was asked for. */
  alias: AliasEvent | null;
  rollout: Rollout | null;
}

export async function promoteVersion(deps: PromoteVersionDeps, input: PromoteVersionInput): Promise<PromoteVersionResult> {
  const { rollouts, registry } = deps;
  const alias = input.alias ?? "production";
  // Refused (MLSHIP_ERR_MODEL_VERSION_NOT_FOUND) before any scoring.
  await registry.getVersion(input.model, input.version);
  const actor = { audit: rollouts.audit, by: input.by, ...(input.reason === undefined ? {} : { reason: input.reason }) };
  const out: PromoteVersionResult = { gate: null, alias: null, rollout: null };
  if (input.gate !== undefined) {
    const result = await evaluateGate({
      scoring: deps.scoring,
      registry,
      model: input.model,
      candidate: input.version,
      alias,
      spec: input.gate,
      computeQuality: deps.computeQuality,
      specOf: deps.specOf,
    });
    await recordGate(actor, result, input.gate, alias);
    out.gate = result;
    if (!result.passed) throw gateFailedError(result);
  }
  if (input.canaryPercent !== undefined) {
    const policy = await rollouts.getPolicy(input.model);
    out.rollout = await rollouts.start({
      model: input.model,
      challenger: input.version,
      mode: "canary",
      percent: input.canaryPercent,
      alias,
      sticky: policy.canary.sticky,
      guard: policy.canary.guard,
      by: input.by,
      ...(input.reason === undefined ? {} : { reason: input.reason }),
    });
  } else {
    out.alias = await setAliasAudited(registry, actor, input.model, alias, input.version, input.gate === undefined ? {} : { gate: "passed" });
  }
  return out;
}
