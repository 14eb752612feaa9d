import type { CategoricalProfile, Cell } from "../types.js";
import { DISTINCT_CAP } from "./numeric.js";

export const DEFAULT_TOP_K = 200;

/** The category key of a cell: strings as they are, numbers and booleans as their text. */
export function categoryKey(cell: Exclude<Cell, null>): string {
  return typeof cell === "string" ? cell : String(cell);
}

/**
 * Accumulates one categorical column. Counts are exact while profiling (one map entry per distinct value);
 * `finish()` keeps the `topK` most frequent and sums the rest into `otherCount`.
 */
export class CategoricalProfiler {
  readonly #counts = new Map<string, number>();
  #count = 0;
  #nulls = 0;

  constructor(
    readonly name: string,
    readonly topK = DEFAULT_TOP_K,
  ) {}

  add(cells: ArrayLike<Cell>): void {
    const counts = this.#counts;
    for (let i = 0; i < cells.length; i++) {
      const cell = cells[i] as Cell;
      if (cell === null || cell === undefined || (typeof cell === "number" && Number.isNaN(cell))) {
        this.#nulls += 1;
        continue;
      }
      const key = categoryKey(cell);
      counts.set(key, (counts.get(key) ?? 0) + 1);
      this.#count += 1;
    }
  }

  addNulls(count: number): void {
    this.#nulls += count;
  }

  finish(): CategoricalProfile {
    const { frequencies, otherCount } = topFrequencies(this.#counts.entries(), this.topK);
    return {
      kind: "categorical",
      name: this.name,
      count: this.#count,
      nulls: this.#nulls,
      frequencies,
      otherCount,
      distinct: Math.min(this.#counts.size, DISTINCT_CAP),
    };
  }
}

/** The `topK` most frequent values (ties broken by value, so the result does not depend on input order). */
function topFrequencies(
  entries: Iterable<[string, number]>,
  topK: number,
): { frequencies: Record<string, number>; otherCount: number } {
  const sorted = [...entries].sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
  const frequencies: Record<string, number> = {};
  let otherCount = 0;
  sorted.forEach(([key, count], i) => {
    if (i < topK) frequencies[key] = count;
    else otherCount += count;
  });
  return { frequencies, otherCount };
}

/**
 * Merges one categorical column over two disjoint sets of rows. Frequencies are exact when neither side had
 * dropped values into `otherCount`; otherwise a value kept on one side only is undercounted by at most the other
 * side's `otherCount`. `distinct` is exact when both sides kept every value, else a lower bound.
 */
export function mergeCategoricalProfiles(a: CategoricalProfile, b: CategoricalProfile, topK = DEFAULT_TOP_K): CategoricalProfile {
  const counts = new Map<string, number>(Object.entries(a.frequencies));
  for (const [key, count] of Object.entries(b.frequencies)) counts.set(key, (counts.get(key) ?? 0) + count);
  const { frequencies, otherCount } = topFrequencies(counts.entries(), topK);
  const complete = a.otherCount === 0 && b.otherCount === 0;
  const distinct = complete ? counts.size : Math.max(a.distinct, b.distinct, counts.size);
  return {
    kind: "categorical",
    name: a.name,
    count: a.count + b.count,
    nulls: a.nulls + b.nulls,
    frequencies,
    otherCount: otherCount + a.otherCount + b.otherCount,
    distinct: Math.min(distinct, DISTINCT_CAP),
  };
}
