import { createHash } from "node:crypto";
import type { TrafficDecision, TrafficRouter } from "../scoring/index.js";
import type { Rollout } from "./types.js";

/** Buckets a routing key falls into: a percent with two decimals is honoured exactly. */
export const ROUTING_BUCKETS = 10_000;

/**
 * The bucket (0..9999) of a routing key in a rollout: the first 4 bytes of sha1(rolloutId + key). Salting with the
 * rollout id means a key that was in the canary of one rollout is not always in the canary of the next one.
 */
export function routingBucket(rolloutId: string, key: string): number {
  const digest = createHash("sha1").update(rolloutId).update("\u0000").update(key).digest();
  return digest.readUInt32BE(0) % ROUTING_BUCKETS;
}

export interface RolloutRouterOptions {
  /** Source of randomness for requests without a routing key (or non-sticky rollouts): [0, 1). Default Math.random. */
  random?: () => number;
}

function routeKey(model: string, alias: string): string {
  // NUL cannot appear in model or alias names, so the pair is unambiguous.
  return `${model}\u0000${alias}`;
}

/**
 * The traffic policy scoring consults on every aliased request: the active rollouts held in memory, keyed by
 * model and alias, so a decision is one Map lookup plus at most one hash.
 */
export class RolloutRouter implements TrafficRouter {
  readonly #random: () => number;
  #active = new Map<string, Rollout>();

  constructor(options: RolloutRouterOptions = {}) {
    this.#random = options.random ?? Math.random;
  }

  /** Replaces the rollouts the router knows; only `active` ones are kept. */
  update(rollouts: readonly Rollout[]): void {
    const next = new Map<string, Rollout>();
    for (const rollout of rollouts) {
      if (rollout.state === "active") next.set(routeKey(rollout.model, rollout.alias), rollout);
    }
    // One assignment: a request routed concurrently sees either the old map or the new one, never a half-built one.
    this.#active = next;
  }

  /** The active rollouts the router holds now. */
  rollouts(): Rollout[] {
    return [...this.#active.values()];
  }

  route(model: string, alias: string, routingKey: string | undefined): TrafficDecision | undefined {
    const rollout = this.#active.get(routeKey(model, alias));
    if (rollout === undefined) return undefined;
    const selected = this.#selected(rollout, routingKey);
    if (rollout.mode === "shadow") {
      const decision: TrafficDecision = { rolloutId: rollout.id, version: rollout.champion, variant: "champion" };
      if (selected) decision.shadow = rollout.challenger;
      return decision;
    }
    return selected
      ? { rolloutId: rollout.id, version: rollout.challenger, variant: "challenger" }
      : { rolloutId: rollout.id, version: rollout.champion, variant: "champion" };
  }

  /** Whether this request falls in the rollout's `percent` share (the challenger's arm, or the shadowed requests). */
  #selected(rollout: Rollout, routingKey: string | undefined): boolean {
    if (rollout.percent <= 0) return false;
    if (rollout.percent >= 100) return true;
    const threshold = rollout.percent * (ROUTING_BUCKETS / 100);
    if (rollout.sticky && routingKey !== undefined && routingKey !== "") {
      return routingBucket(rollout.id, routingKey) < threshold;
    }
    return this.#random() * ROUTING_BUCKETS < threshold;
  }
}
