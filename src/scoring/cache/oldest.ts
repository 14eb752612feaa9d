/**
 * A Map's entries oldest first, for eviction, from one live iterator kept across calls.
 *
 * Why not `map.entries().next()` (or a fresh `for ... of`) each time: V8 leaves a deleted entry's slot in the
 * table until the table is rebuilt, and a new iterator walks every such slot from the start. A full cache deletes
 * its oldest entry on every insert, so each eviction walked over all the evictions before it since the last
 * rebuild: 15-50 µs per insert at 100,000 entries, on every prediction cache miss. A kept iterator passes each
 * deleted slot once. Every entry before its position has been deleted (evicted, or moved to the back by a delete
 * and a set, which puts it after the position), so its next entry is the oldest one.
 */
export class OldestFirst<K, V> {
  private iterator: Iterator<[K, V]> | undefined;

  constructor(private readonly map: Map<K, V>) {}

  /** The oldest entry, or undefined when the map is empty. The caller deletes it or moves it to the back. */
  next(): [K, V] | undefined {
    for (let fresh = 0; fresh < 2; fresh++) {
      this.iterator ??= this.map.entries();
      const step = this.iterator.next();
      if (step.done !== true) return step.value;
      // A finished iterator stays finished even when entries are added later: start a new one.
      this.iterator = undefined;
    }
    return undefined;
  }

  /** After `map.clear()`: start again from the beginning. */
  reset(): void {
    this.iterator = undefined;
  }
}
