/**
 * The in-process prediction cache when it is full: every insert evicts the least recently used entry. Times the
 * same inserts into a full cache (each one evicting) and into a cache with room (none evicting), in turns, and
 * answers both rates. Evicting should cost about as much as the insert itself, whatever the number of evictions
 * so far; an eviction that walks the slots of earlier evictions (a fresh Map iterator per eviction) made inserts
 * into a full cache about ten times as slow.
 */
import { performance } from "node:perf_hooks";
import { answer, job } from "../lib/child.js";
import { distModule } from "../lib/dist.js";
import type * as Scoring from "../../src/scoring/index.js";
import type { Tensor } from "../../src/core/index.js";

export interface EvictJob {
  /** Entries the full cache holds. */
  entries: number;
  /** Inserts per timed round. */
  inserts: number;
  /** Rounds of each kind, in turns. */
  rounds: number;
}

export interface EvictResult {
  /** Inserts per second into the full cache, each evicting one entry (best round). */
  evictingPerSecond: number;
  /** Inserts per second into a cache with room (best round). */
  roomyPerSecond: number;
  /** Evictions done by the full cache over all rounds. */
  evictions: number;
}

const j = job<EvictJob>();
const { MemoryPredictionCache } = await distModule<typeof Scoring>("scoring/index.js");
const outputs: Record<string, Tensor> = { y: { dtype: "float32", shape: [1], data: new Float32Array([1]) } };
const full = new MemoryPredictionCache({ maxEntries: j.entries, maxBytes: 1024 ** 3 });
let next = 0;
for (; next < j.entries; next++) void full.set(`k${next}`, { outputs }, 300);

function timed(insert: () => void): number {
  const start = performance.now();
  for (let i = 0; i < j.inserts; i++) insert();
  return j.inserts / ((performance.now() - start) / 1000);
}

let evicting = 0;
let roomy = 0;
for (let round = 0; round < j.rounds; round++) {
  evicting = Math.max(evicting, timed(() => void full.set(`k${next++}`, { outputs }, 300)));
  const fresh = new MemoryPredictionCache({ maxEntries: j.entries * 4, maxBytes: 1024 ** 3 });
  let k = 0;
  roomy = Math.max(roomy, timed(() => void fresh.set(`k${k++}`, { outputs }, 300)));
}
if (full.size !== j.entries) throw new Error(`the full cache holds ${full.size} entries, not ${j.entries}`);
answer({ evictingPerSecond: evicting, roomyPerSecond: roomy, evictions: next - j.entries } satisfies EvictResult);
