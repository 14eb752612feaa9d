/** Small seeded PRNG (mulberry32): deterministic samples for the same data and seed, on every platform. */
export class SeededRandom {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Uniform integer in [0, bound). */
  below(bound: number): number {
    return Math.floor(this.next() * bound);
  }
}

/** FNV-1a of a string: turns a column name into a seed component. */
export function hashString(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** Algorithm R: after `seen` values, every one of them is in `sample` with probability size/seen. */
export class Reservoir {
  readonly sample: number[] = [];
  seen = 0;
  readonly #random: SeededRandom;

  constructor(
    readonly size: number,
    seed: number,
  ) {
    this.#random = new SeededRandom(seed);
  }

  add(values: ArrayLike<number>, length = values.length): void {
    const { sample, size } = this;
    for (let i = 0; i < length; i++) {
      const value = values[i] as number;
      this.seen += 1;
      if (sample.length < size) {
        sample.push(value);
      } else {
        const slot = this.#random.below(this.seen);
        if (slot < size) sample[slot] = value;
      }
    }
  }
}

/**
 * Merges two uniform samples of disjoint populations (sizes `seenA`, `seenB`) into one uniform sample of the union
 * of at most `size` values. When both populations fit, the result is every value (A's then B's). Otherwise the
 * number taken from each side follows the hypergeometric law (drawing `size` without replacement from the union),
 * and each side contributes a uniform subsample of its own sample.
 */
export function mergeSamples(
  a: readonly number[],
  seenA: number,
  b: readonly number[],
  seenB: number,
  size: number,
  seed: number,
): number[] {
  if (seenA + seenB <= size && a.length === seenA && b.length === seenB) return [...a, ...b];
  const random = new SeededRandom(seed);
  const target = Math.min(size, seenA + seenB, a.length + b.length);
  let remainingA = seenA;
  let remainingB = seenB;
  let takeA = 0;
  for (let drawn = 0; drawn < target; drawn++) {
    const fromA = random.next() * (remainingA + remainingB) < remainingA;
    if (fromA && takeA < a.length) {
      takeA += 1;
      remainingA -= 1;
    } else {
      remainingB -= 1;
    }
  }
  const takeB = Math.min(target - takeA, b.length);
  return [...subsample(a, takeA, random), ...subsample(b, takeB, random)];
}

/** `count` values of `values` chosen uniformly without replacement (partial Fisher-Yates on a copy). */
function subsample(values: readonly number[], count: number, random: SeededRandom): number[] {
  if (count >= values.length) return [...values];
  const copy = [...values];
  for (let i = 0; i < count; i++) {
    const j = i + random.below(copy.length - i);
    const tmp = copy[i] as number;
    copy[i] = copy[j] as number;
    copy[j] = tmp;
  }
  return copy.slice(0, count);
}
