import { Redis } from "ioredis";
import { decodePrediction, encodePrediction } from "./codec.js";
import type { CacheErrorListener, CachedPrediction, PredictionCache } from "./types.js";

export interface RedisCacheOptions {
  /** `redis://[user:password@]host[:port][/db]` or `rediss://...`. */
  url: string;
  /** Prepended to every key. Default `mlship:pred:`. */
  keyPrefix?: string;
  /** A command slower than this counts as a failure and the request goes on without the cache. Default 100 ms. */
  commandTimeoutMs?: number;
  /** Entries larger than this are not stored. Default 8 MiB. */
  maxEntryBytes?: number;
  onError?: CacheErrorListener;
}

/**
 * Shared cache for replicas. A cache must never make serving worse: no offline queue (commands fail at once
 * while disconnected), a short command timeout, no per-command retries; the client reconnects in the background.
 */
export class RedisPredictionCache implements PredictionCache {
  readonly backend = "redis";
  readonly keyPrefix: string;
  private readonly client: Redis;
  private readonly maxEntryBytes: number;
  private readonly onError: CacheErrorListener | undefined;
  private failures = 0;

  constructor(options: RedisCacheOptions) {
    this.keyPrefix = options.keyPrefix ?? "mlship:pred:";
    this.maxEntryBytes = options.maxEntryBytes ?? 8 * 1024 * 1024;
    this.onError = options.onError;
    this.client = new Redis(options.url, {
      enableOfflineQueue: false,
      commandTimeout: options.commandTimeoutMs ?? 100,
      maxRetriesPerRequest: 0,
      connectTimeout: 1000,
      // Keeps trying for as long as the server lives, backing off to one attempt every 2 s.
      retryStrategy: (times) => Math.min(times * 100, 2000),
    });
    // Without a listener ioredis prints every connection error; command failures are counted where they happen.
    this.client.on("error", () => undefined);
  }

  async get(key: string): Promise<CachedPrediction | undefined> {
    try {
      const buf = await this.client.getBuffer(this.keyPrefix + key);
      return buf === null ? undefined : decodePrediction(buf);
    } catch (err) {
      this.fail(err, "get");
      return undefined;
    }
  }

  async set(key: string, value: CachedPrediction, ttlSeconds: number): Promise<void> {
    const ms = Math.round(ttlSeconds * 1000);
    if (!(ms > 0)) return;
    try {
      const encoded = encodePrediction(value);
      if (encoded.length > this.maxEntryBytes) return;
      await this.client.set(this.keyPrefix + key, encoded, "PX", ms);
    } catch (err) {
      this.fail(err, "set");
    }
  }

  errors(): number {
    return this.failures;
  }

  /** Resolves true once connected (false after `timeoutMs`): commands sent before that are bypassed. */
  async whenReady(timeoutMs = 2000): Promise<boolean> {
    if (this.client.status === "ready") return true;
    let timer: NodeJS.Timeout | undefined;
    let onReady: (() => void) | undefined;
    try {
      return await new Promise<boolean>((resolve) => {
        onReady = () => resolve(true);
        this.client.once("ready", onReady);
        timer = setTimeout(() => resolve(false), timeoutMs);
      });
    } finally {
      clearTimeout(timer);
      if (onReady !== undefined) this.client.off("ready", onReady);
    }
  }

  async close(): Promise<void> {
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }

  private fail(err: unknown, operation: "get" | "set"): void {
    this.failures++;
    this.onError?.(err, operation);
  }
}
