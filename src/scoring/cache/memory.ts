import { decodePrediction, encodePrediction } from "./codec.js";
import { OldestFirst } from "./oldest.js";
import type { CachedPrediction, PredictionCache } from "./types.js";

export interface MemoryCacheOptions {
  /** Bound on the encoded entries plus keys, in bytes. Default 64 MiB. */
  maxBytes?: number;
  /** Bound on the number of entries. Default 100000. */
  maxEntries?: number;
  /** Clock in milliseconds (tests). Default `Date.now`. */
  now?: () => number;
}

interface Entry {
  value: Buffer;
  expiresAt: number;
  size: number;
}

/** Rough per-entry bookkeeping (Map slot, Entry object, Buffer header) so tiny entries still count. */
const ENTRY_OVERHEAD = 96;

/**
 * In-process LRU bounded by bytes and entry count, with a TTL per entry. Entries are kept encoded (one Buffer
 * each): that is their true size, and every hit decodes into fresh arrays nobody else holds.
 */
export class MemoryPredictionCache implements PredictionCache {
  readonly backend = "memory";
  readonly maxBytes: number;
  readonly maxEntries: number;
  private readonly now: () => number;
  // A Map iterates in insertion order: re-inserting on a hit makes the first key the least recently used.
  private readonly entries = new Map<string, Entry>();
  private readonly oldest = new OldestFirst(this.entries);
  private bytes = 0;

  constructor(options: MemoryCacheOptions = {}) {
    this.maxBytes = Math.max(0, options.maxBytes ?? 64 * 1024 * 1024);
    this.maxEntries = Math.max(0, options.maxEntries ?? 100_000);
    this.now = options.now ?? Date.now;
  }

  /** Entries held now (expired ones included until touched or evicted). */
  get size(): number {
    return this.entries.size;
  }

  /** Bytes held now, as counted against `maxBytes`. */
  get totalBytes(): number {
    return this.bytes;
  }

  get(key: string): Promise<CachedPrediction | undefined> {
    const entry = this.entries.get(key);
    if (entry === undefined) return Promise.resolve(undefined);
    if (entry.expiresAt <= this.now()) {
      this.remove(key, entry);
      return Promise.resolve(undefined);
    }
    this.entries.delete(key);
    this.entries.set(key, entry);
    return Promise.resolve(decodePrediction(entry.value));
  }

  set(key: string, value: CachedPrediction, ttlSeconds: number): Promise<void> {
    if (!(ttlSeconds > 0)) return Promise.resolve();
    const encoded = encodePrediction(value);
    const size = encoded.length + key.length * 2 + ENTRY_OVERHEAD;
    const old = this.entries.get(key);
    if (old !== undefined) this.remove(key, old);
    // An entry larger than the whole budget would only flush everything else out.
    if (size > this.maxBytes || this.maxEntries === 0) return Promise.resolve();
    this.entries.set(key, { value: encoded, expiresAt: this.now() + ttlSeconds * 1000, size });
    this.bytes += size;
    this.evict();
    return Promise.resolve();
  }

  errors(): number {
    return 0;
  }

  close(): Promise<void> {
    this.entries.clear();
    this.oldest.reset();
    this.bytes = 0;
    return Promise.resolve();
  }

  private remove(key: string, entry: Entry): void {
    this.entries.delete(key);
    this.bytes -= entry.size;
  }

  private evict(): void {
    while (this.bytes > this.maxBytes || this.entries.size > this.maxEntries) {
      const oldest = this.oldest.next();
      if (oldest === undefined) return;
      this.remove(oldest[0], oldest[1]);
    }
  }
}
