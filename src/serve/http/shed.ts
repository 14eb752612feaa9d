import { performance } from "node:perf_hooks";
import { MlshipError } from "../../core/index.js";

const TICK_MS = 10;

/**
 * Load shedding on the server's own saturation. Requests wait in the kernel and in the event loop before any queue
 * of ours sees them, so a server whose one JavaScript thread is saturated answers everyone late, however short its
 * model queues are. A 10 ms timer measures how late the loop runs it (the wait a new request has). While that delay
 * is above `maxDelayMs` on two ticks in a row (one long blocking task is not saturation), new inference requests
 * get a fast 429 with Retry-After, before their body is parsed, which lets the loop catch up and keeps the latency
 * of the requests it does accept bounded.
 */
export class EventLoopGuard {
  private lagMs = 0;
  /** The smaller of the last two ticks' delays: one long blocking task (a start-up, a big body) is not saturation. */
  private sustainedMs = 0;
  private expected = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Made once per tick while overloaded: refusals are answered by the thousand, and an Error captures a stack. */
  private current: MlshipError | undefined;

  /** `maxDelayMs` 0 turns the guard off. */
  constructor(readonly maxDelayMs: number) {
    if (maxDelayMs > 0) this.schedule();
  }

  private schedule(): void {
    this.expected = performance.now() + TICK_MS;
    this.timer = setTimeout(() => {
      const lag = Math.max(0, performance.now() - this.expected);
      this.sustainedMs = Math.min(lag, this.lagMs);
      this.lagMs = lag;
      this.current = this.sustainedMs > this.maxDelayMs ? this.overloaded() : undefined;
      this.schedule();
    }, TICK_MS);
    this.timer.unref();
  }

  /** The loop's delay in milliseconds, as judged: the smaller of its last two ticks' delays. */
  get delayMs(): number {
    return this.sustainedMs;
  }

  /**
   * The error to answer a new inference request with now, or undefined to take it. The same object for every
   * refusal of a tick, so a transport may keep its encoded answer per object.
   */
  refusal(): MlshipError | undefined {
    return this.current;
  }

  private overloaded(): MlshipError {
    return new MlshipError(
      "MLSHIP_ERR_SERVE_OVERLOADED",
      `the server is overloaded: its event loop runs ${Math.round(this.sustainedMs)} ms late (server.maxEventLoopDelayMs ${this.maxDelayMs}); retry after 1 s`,
      { field: "server.maxEventLoopDelayMs", retryAfterSeconds: 1 },
    );
  }

  close(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
