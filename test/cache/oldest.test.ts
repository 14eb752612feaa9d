// OldestFirst, the eviction order of the in-process caches: at every step it names the entry a fresh iteration of
// the map would name first, through evictions, entries moved to the back, deletions in the middle, table rebuilds
// (many deletions) and clear(); and a full memory cache keeps evicting in LRU order.
import { describe, expect, it } from "vitest";
import { MemoryPredictionCache } from "../../src/scoring/cache/memory.js";
import { OldestFirst } from "../../src/scoring/cache/oldest.js";
import type { Tensor } from "../../src/core/index.js";

describe("OldestFirst", () => {
  it("always names the first entry in insertion order, as a fresh iteration would", () => {
    const map = new Map<number, number>();
    const oldest = new OldestFirst(map);
    let seed = 7;
    const random = (n: number): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n;
    let next = 0;
    for (let step = 0; step < 50_000; step++) {
      const op = random(10);
      if (op < 4) map.set(next++, step);
      else if (op < 6 && map.size > 0) {
        // Evict the oldest, as the caches do.
        const first = map.keys().next().value as number;
        const named = oldest.next();
        expect(named?.[0]).toBe(first);
        map.delete(first);
      } else if (op < 7 && map.size > 0) {
        // A hit moves an entry to the back (delete, then set).
        const named = oldest.next() as [number, number];
        expect(named[0]).toBe(map.keys().next().value);
        map.delete(named[0]);
        map.set(named[0], named[1]);
      } else if (op < 9 && map.size > 0) {
        // Deleted or moved from the middle (expiry, replacement, a hit).
        const keys = [...map.keys()];
        const key = keys[random(keys.length)] as number;
        const value = map.get(key) as number;
        map.delete(key);
        if (op === 8) map.set(key, value);
      } else if (random(500) === 0) {
        map.clear();
        oldest.reset();
      }
    }
    expect(oldest.next()?.[0]).toBe(map.keys().next().value);
    map.clear();
    oldest.reset();
    expect(oldest.next()).toBeUndefined();
    map.set(1, 1);
    expect(oldest.next()).toEqual([1, 1]);
  });
});

describe("a full memory cache", () => {
  // The cost of an eviction (it must not grow with the evictions before it) is a speed figure: the bench's `evict`
  // group measures it (inserts into a full cache against inserts with room). Here: the order and the bound.
  it("evicts the least recently used entry on every insert and keeps its bound", async () => {
    const cache = new MemoryPredictionCache({ maxEntries: 50_000, maxBytes: 1024 ** 3 });
    const outputs: Record<string, Tensor> = { y: { dtype: "float32", shape: [1], data: new Float32Array([1]) } };
    const fill = (from: number, count: number): void => {
      for (let i = from; i < from + count; i++) void cache.set(`k${i}`, { outputs }, 300);
    };
    fill(0, 50_000);
    // k0 used again: it survives the next eviction, k1 goes.
    expect(await cache.get("k0")).toBeDefined();
    fill(50_000, 1);
    expect(await cache.get("k1")).toBeUndefined();
    expect(await cache.get("k0")).toBeDefined();
    expect(cache.size).toBe(50_000);
    fill(50_001, 100_000);
    // k0 was used last before those 100,000 inserts, so it went too; the last 50,000 stay.
    expect(await cache.get("k0")).toBeUndefined();
    expect(await cache.get("k100000")).toBeUndefined();
    expect(await cache.get("k100001")).toBeDefined();
    expect(await cache.get("k150000")).toBeDefined();
    expect(cache.size).toBe(50_000);
  });
});
