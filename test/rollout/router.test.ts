// The rollout router on its own: split proportions over many keys, stickiness, shadow copies, non-sticky routing
// with an injected random source, and what it does without an active rollout.
import { describe, expect, it } from "vitest";
import { routingBucket, RolloutRouter } from "../../src/rollout/router.js";
import type { Rollout } from "../../src/rollout/types.js";

function rollout(overrides: Partial<Rollout> = {}): Rollout {
  return {
    id: "r-1",
    model: "churn",
    alias: "production",
    champion: 1,
    challenger: 2,
    mode: "canary",
    percent: 30,
    sticky: true,
    state: "active",
    guard: {},
    startedAt: "2026-12-01T00:00:00.000Z",
    startedBy: "tester",
    reason: null,
    endedAt: null,
    endedBy: null,
    endReason: null,
    ...overrides,
  };
}

const KEYS = Array.from({ length: 10_000 }, (_, i) => `customer-${i}`);

describe("RolloutRouter", () => {
  it("answers undefined for aliases without an active rollout", () => {
    const router = new RolloutRouter();
    expect(router.route("churn", "production", "k")).toBeUndefined();
    router.update([rollout(), rollout({ id: "r-old", model: "fraud", state: "aborted" })]);
    expect(router.route("churn", "staging", "k")).toBeUndefined();
    expect(router.route("fraud", "production", "k")).toBeUndefined();
    expect(router.route("churn", "production", "k")).toMatchObject({ rolloutId: "r-1" });
    router.update([]);
    expect(router.route("churn", "production", "k")).toBeUndefined();
  });

  for (const percent of [10, 30, 50, 90]) {
    it(`splits 10k sticky keys ${percent}% to the challenger within 2 points`, () => {
      const router = new RolloutRouter();
      router.update([rollout({ percent })]);
      const challenger = KEYS.filter((k) => router.route("churn", "production", k)?.variant === "challenger").length;
      expect(Math.abs(challenger / KEYS.length - percent / 100)).toBeLessThan(0.02);
      // Versions follow the variants.
      for (const k of KEYS.slice(0, 100)) {
        const d = router.route("churn", "production", k);
        expect(d?.version).toBe(d?.variant === "challenger" ? 2 : 1);
        expect(d?.shadow).toBeUndefined();
      }
    });
  }

  it("keeps a key on its arm, and salts the hash with the rollout id", () => {
    const router = new RolloutRouter({ random: () => 0 });
    router.update([rollout()]);
    const first = KEYS.map((k) => router.route("churn", "production", k)?.variant);
    const again = KEYS.map((k) => router.route("churn", "production", k)?.variant);
    expect(again).toEqual(first);
    // The same key may land elsewhere in another rollout: the canary is not always the same customers.
    const other = KEYS.filter((k) => routingBucket("r-1", k) < 3000 !== routingBucket("r-2", k) < 3000).length;
    expect(other).toBeGreaterThan(2000);
    expect(routingBucket("r-1", "customer-1")).toBe(routingBucket("r-1", "customer-1"));
    expect(routingBucket("r-1", "customer-1")).toBeGreaterThanOrEqual(0);
    expect(routingBucket("r-1", "customer-1")).toBeLessThan(10_000);
  });

  it("routes requests without a key, or of a non-sticky rollout, by the random source", () => {
    let next = 0;
    const values = [0.1, 0.29, 0.3, 0.95];
    const router = new RolloutRouter({ random: () => values[next++ % values.length] as number });
    router.update([rollout({ percent: 30 })]);
    expect([0, 1, 2, 3].map(() => router.route("churn", "production", undefined)?.variant)).toEqual(["challenger", "challenger", "champion", "champion"]);
    router.update([rollout({ percent: 30, sticky: false })]);
    expect([0, 1, 2, 3].map(() => router.route("churn", "production", "same-key")?.variant)).toEqual(["challenger", "challenger", "champion", "champion"]);
    // With Math.random the share is still about right.
    const random = new RolloutRouter();
    random.update([rollout({ percent: 30, sticky: false })]);
    const share = KEYS.filter(() => random.route("churn", "production", undefined)?.variant === "challenger").length / KEYS.length;
    expect(Math.abs(share - 0.3)).toBeLessThan(0.03);
  });

  it("lets the champion answer every shadow request and shadows the percent to the challenger", () => {
    const router = new RolloutRouter();
    router.update([rollout({ mode: "shadow", percent: 25 })]);
    const decisions = KEYS.map((k) => router.route("churn", "production", k));
    expect(decisions.every((d) => d?.variant === "champion" && d.version === 1)).toBe(true);
    const shadowed = decisions.filter((d) => d?.shadow === 2).length;
    expect(Math.abs(shadowed / KEYS.length - 0.25)).toBeLessThan(0.02);
    router.update([rollout({ mode: "shadow", percent: 100 })]);
    expect(KEYS.slice(0, 50).every((k) => router.route("churn", "production", k)?.shadow === 2)).toBe(true);
  });

  it("honours 0% and 100%, and A/B splits like a canary", () => {
    const router = new RolloutRouter();
    router.update([rollout({ percent: 0 })]);
    expect(KEYS.slice(0, 500).some((k) => router.route("churn", "production", k)?.variant === "challenger")).toBe(false);
    router.update([rollout({ percent: 100 })]);
    expect(KEYS.slice(0, 500).every((k) => router.route("churn", "production", k)?.variant === "challenger")).toBe(true);
    router.update([rollout({ mode: "ab", percent: 50 })]);
    const share = KEYS.filter((k) => router.route("churn", "production", k)?.variant === "challenger").length / KEYS.length;
    expect(Math.abs(share - 0.5)).toBeLessThan(0.02);
  });
});
