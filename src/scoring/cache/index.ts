import { MlshipError } from "../../core/index.js";
import { MemoryPredictionCache, type MemoryCacheOptions } from "./memory.js";
import { RedisPredictionCache } from "./redis.js";
import type { CacheErrorListener, PredictionCache } from "./types.js";

export { MemoryPredictionCache, type MemoryCacheOptions } from "./memory.js";
export { RedisPredictionCache, type RedisCacheOptions } from "./redis.js";
export { predictionKey, type ModelIdentity } from "./key.js";
export { ExactMemo, type ExactEntry, type ExactMemoOptions } from "./exact.js";
export { decodePrediction, encodePrediction } from "./codec.js";
export type { CacheErrorListener, CachedPrediction, PredictionCache } from "./types.js";

export interface CreateCacheOptions extends MemoryCacheOptions {
  onError?: CacheErrorListener;
  /** Redis key prefix. Default `mlship:pred:`. */
  keyPrefix?: string;
  commandTimeoutMs?: number;
}

/** Builds the cache the `cache` config value names: `memory`, `off` (undefined) or a `redis://` URL. */
export function createPredictionCache(spec: string, options: CreateCacheOptions = {}): PredictionCache | undefined {
  const s = spec.trim();
  if (s === "off") return undefined;
  if (s === "memory") return new MemoryPredictionCache(options);
  if (s.startsWith("redis://") || s.startsWith("rediss://")) {
    return new RedisPredictionCache({ url: s, keyPrefix: options.keyPrefix, commandTimeoutMs: options.commandTimeoutMs, onError: options.onError });
  }
  throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `cache must be 'memory', 'off' or a redis:// URL, got '${spec}'`, { field: "cache" });
}
