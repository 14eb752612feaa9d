import type { BatchCell } from "./types.js";

const FNV_OFFSET_BASIS = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/**
 * The shard (0-based, below `count`) a row with this id belongs to: FNV-1a 32-bit over the id's UTF-8 bytes, mod
 * `count`. Stable across processes, machines and runs, so N processes given the same file split it into disjoint
 * parts that together cover every row.
 */
export function shardOf(id: string, count: number): number {
  let hash = FNV_OFFSET_BASIS;
  for (const byte of Buffer.from(id, "utf8")) {
    hash ^= byte;
    hash = Math.imul(hash, FNV_PRIME) >>> 0;
  }
  return hash % count;
}

/**
 * The text of an id cell, as sharding hashes it and as predictions are keyed: numbers by `String` (so `7` and `7.0`
 * in JSON both read as "7"), a missing id as "" (such rows still land in exactly one shard; the runner rejects them).
 */
export function idText(cell: BatchCell | undefined): string {
  if (cell === null || cell === undefined) return "";
  return String(cell);
}
