import type { Redis, RedisOptions } from "ioredis";
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

/** ioredis, loaded by the first Redis cache made (processes on the in-memory cache never load it). */
let redisLoading: Promise<typeof Redis> | undefined;
function loadRedis(): Promise<typeof Redis> {
  redisLoading ??= import("ioredis").then((m) => m.Redis);
  return redisLoading;
}

/**
 * Shared cache for replicas. A cache must never make serving worse: no offline queue (commands fail at once
 * while disconnected), a short command timeout, no per-command retries; the client reconnects in the background.
 */
export class RedisPredictionCache implements PredictionCache {
  readonly backend = "redis";
  readonly keyPrefix: string;
  /** Set once ioredis is loaded (right after construction); until then commands wait for `connecting`. */
  private client: Redis | undefined;
  private readonly connecting: Promise<Redis>;
  private readonly maxEntryBytes: number;
  private readonly onError: CacheErrorListener | undefined;
  private failures = 0;

  constructor(options: RedisCacheOptions) {
    this.keyPrefix = options.keyPrefix ?? "mlship:pred:";
    this.maxEntryBytes = options.maxEntryBytes ?? 8 * 1024 * 1024;
    this.onError = options.onError;
    const settings: RedisOptions = {
      enableOfflineQueue: false,
      commandTimeout: options.commandTimeoutMs ?? 100,
      maxRetriesPerRequest: 0,
      connectTimeout: 1000,
      // Keeps trying for as long as the server lives, backing off to one attempt every 2 s.
      retryStrategy: (times) => Math.min(times * 100, 2000),
    };
    this.connecting = loadRedis().then((RedisClient) => {
      const client = new RedisClient(options.url, settings);
      // Without a listener ioredis prints every connection error; command failures are counted where they happen.
      client.on("error", () => undefined);
      this.client = client;
      return client;
    });
    // A failure to load is reported by the first command that waits on it.
    this.connecting.catch(() => undefined);
  }

  async get(key: string): Promise<CachedPrediction | undefined> {
    try {
      const client = this.client ?? (await this.connecting);
      const buf = await client.getBuffer(this.keyPrefix + key);
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
      const client = this.client ?? (await this.connecting);
      await client.set(this.keyPrefix + key, encoded, "PX", ms);
    } catch (err) {
      this.fail(err, "set");
    }
  }

  errors(): number {
    return this.failures;
  }

  /** Resolves true once connected (false after `timeoutMs`): commands sent before that are bypassed. */
  async whenReady(timeoutMs = 2000): Promise<boolean> {
    const started = Date.now();
    let client: Redis;
    try {
      client = this.client ?? (await this.connecting);
    } catch {
      return false;
    }
    if (client.status === "ready") return true;
    let timer: NodeJS.Timeout | undefined;
    let onReady: (() => void) | undefined;
    try {
      return await new Promise<boolean>((resolve) => {
        onReady = () => resolve(true);
        client.once("ready", onReady);
        timer = setTimeout(() => resolve(false), Math.max(0, timeoutMs - (Date.now() - started)));
      });
    } finally {
      clearTimeout(timer);
      if (onReady !== undefined) client.off("ready", onReady);
    }
  }

  async close(): Promise<void> {
    let client: Redis;
    try {
      client = this.client ?? (await this.connecting);
    } catch {
      return;
    }
    try {
      await client.quit();
    } catch {
      client.disconnect();
    }
  }

  private fail(err: unknown, operation: "get" | "set"): void {
    this.failures++;
    this.onError?.(err, operation);
  }
}
