import type { Tensor } from "../../core/index.js";

/** What the cache keeps for one request: the post-processed output tensors it answered with. */
export interface CachedPrediction {
  outputs: Record<string, Tensor>;
}

/**
 * A store of predictions keyed by `predictionKey(...)`. Implementations hand out fresh copies (a caller may mutate
 * or transfer what it gets) and never fail a request: a backend error resolves as a miss (get) or a no-op (set)
 * and is counted in `errors()`.
 */
export interface PredictionCache {
  /** `memory` or `redis`: the `backend` label of the error counter. */
  readonly backend: string;
  get(key: string): Promise<CachedPrediction | undefined>;
  set(key: string, value: CachedPrediction, ttlSeconds: number): Promise<void>;
  /** Backend failures so far (timeouts, connection refused, bad entries). */
  errors(): number;
  close(): Promise<void>;
}

/** Called on each backend failure (rate limiting the log is the caller's business). */
export type CacheErrorListener = (err: unknown, operation: "get" | "set") => void;
