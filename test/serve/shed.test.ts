import { setImmediate as turn } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { EventLoopGuard } from "../../src/serve/http/shed.js";

/** Keeps the event loop busy in slices of `sliceMs`, yielding between them, for `totalMs`. */
async function saturate(totalMs: number, sliceMs: number): Promise<void> {
  const end = performance.now() + totalMs;
  while (performance.now() < end) {
    const sliceEnd = performance.now() + sliceMs;
    while (performance.now() < sliceEnd) {
      // busy: the loop cannot run timers
    }
    await turn();
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

describe("EventLoopGuard (load shedding on event-loop delay)", () => {
  let guard: EventLoopGuard | undefined;
  afterEach(() => guard?.close());

  it("takes requests while the loop is idle", async () => {
    guard = new EventLoopGuard(40);
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(guard.refusal()).toBeUndefined();
    expect(guard.delayMs).toBeLessThan(40);
  });

  it("ignores one long blocking task but refuses under sustained saturation, then recovers", async () => {
    guard = new EventLoopGuard(20);
    await new Promise((resolve) => setTimeout(resolve, 30));
    // One block of 150 ms: a single late tick.
    const end = performance.now() + 150;
    while (performance.now() < end) {
      // busy
    }
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(guard.refusal()).toBeUndefined();

    // Sustained: every tick runs ~60 ms late.
    await saturate(400, 60);
    const refusal = guard.refusal();
    expect(refusal?.code).toBe("MLSHIP_ERR_SERVE_OVERLOADED");
    expect(refusal?.httpStatus).toBe(429);
    expect(refusal?.retryAfterSeconds).toBe(1);
    expect(refusal?.field).toBe("server.maxEventLoopDelayMs");
    expect(refusal?.message).toMatch(/event loop runs \d+ ms late/);

    // Idle again: two on-time ticks clear it.
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(guard.refusal()).toBeUndefined();
  });

  it("is off with 0", async () => {
    guard = new EventLoopGuard(0);
    await saturate(200, 60);
    expect(guard.refusal()).toBeUndefined();
  });
});
