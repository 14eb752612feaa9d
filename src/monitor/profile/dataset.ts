import { MlshipError } from "../../core/index.js";
import type { Cell, ColumnProfile, ColumnTable, DatasetProfile, FeatureKind } from "../types.js";
import { CategoricalProfiler, DEFAULT_TOP_K, mergeCategoricalProfiles } from "./categorical.js";
import { DEFAULT_SEED, mergeNumericProfiles, NumericProfiler } from "./numeric.js";

export interface ProfileOptions {
  /** Force a column's kind; others are inferred (`inferKind`). */
  kinds?: Record<string, FeatureKind>;
  /** Fixed histogram edges per numeric column (e.g. the reference's, when profiling current data). */
  edges?: Record<string, readonly number[]>;
  /** Reservoir sample size per numeric column. Default 10000. */
  sampleSize?: number;
  /** Categories kept exactly per categorical column. Default 200. */
  topK?: number;
  /** Seed of the reservoirs (and of sample merges). */
  seed?: number;
  /** Columns to leave out (e.g. the label). Names not in the table are ignored. */
  excludeColumns?: readonly string[];
}

/**
 * Numeric when every non-missing cell is a number (an all-missing column counts as numeric); categorical as soon as
 * one cell is a string or a boolean. Booleans are categories: their frequencies say more than a mean of 0/1.
 */
export function inferKind(cells: ArrayLike<Cell>): FeatureKind {
  for (let i = 0; i < cells.length; i++) {
    const cell = cells[i];
    if (cell !== null && cell !== undefined && typeof cell !== "number") return "categorical";
  }
  return "numeric";
}

type ColumnProfiler = NumericProfiler | CategoricalProfiler;

/**
 * Profiles a dataset chunk by chunk (each chunk a ColumnTable with the same columns). A column's kind comes from
 * `options.kinds`, else from the first chunk that has a value in it; a later chunk that contradicts an inferred
 * numeric kind is an error (MLSHIP_ERR_INPUT_DTYPE), so give `kinds` when chunks are small.
 */
export class DatasetProfiler {
  readonly columns: readonly string[];
  readonly #options: ProfileOptions;
  readonly #profilers = new Map<string, ColumnProfiler>();
  /** Rows of each column seen before its kind was known. */
  readonly #pendingNulls = new Map<string, number>();
  #rows = 0;

  constructor(columns: readonly string[], options: ProfileOptions = {}) {
    const excluded = new Set(options.excludeColumns ?? []);
    this.columns = columns.filter((name) => !excluded.has(name));
    this.#options = options;
    for (const name of this.columns) {
      const kind = options.kinds?.[name];
      if (kind !== undefined) this.#profilers.set(name, this.#newProfiler(name, kind));
      else this.#pendingNulls.set(name, 0);
    }
  }

  #newProfiler(name: string, kind: FeatureKind): ColumnProfiler {
    const options = this.#options;
    if (kind === "categorical") return new CategoricalProfiler(name, options.topK ?? DEFAULT_TOP_K);
    const edges = options.edges?.[name];
    return new NumericProfiler(name, {
      ...(edges === undefined ? {} : { edges }),
      ...(options.sampleSize === undefined ? {} : { sampleSize: options.sampleSize }),
      seed: options.seed ?? DEFAULT_SEED,
    });
  }

  add(chunk: ColumnTable): void {
    const index = new Map(chunk.columns.map((name, i) => [name, i]));
    for (const name of this.columns) {
      const position = index.get(name);
      if (position === undefined) {
        throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", `column "${name}" is missing from the data`, { field: name });
      }
      const cells = chunk.values[position] as Cell[];
      let profiler = this.#profilers.get(name);
      if (profiler === undefined) {
        if (allMissing(cells)) {
          this.#pendingNulls.set(name, (this.#pendingNulls.get(name) ?? 0) + cells.length);
          continue;
        }
        profiler = this.#newProfiler(name, inferKind(cells));
        profiler.addNulls(this.#pendingNulls.get(name) ?? 0);
        this.#pendingNulls.delete(name);
        this.#profilers.set(name, profiler);
      }
      profiler.add(cells);
    }
    this.#rows += chunk.rows;
  }

  finish(): DatasetProfile {
    const columns: ColumnProfile[] = this.columns.map((name) => {
      let profiler = this.#profilers.get(name);
      if (profiler === undefined) {
        profiler = this.#newProfiler(name, "numeric");
        profiler.addNulls(this.#pendingNulls.get(name) ?? 0);
      }
      return profiler.finish();
    });
    return { format: 1, rows: this.#rows, columns };
  }
}

function allMissing(cells: ArrayLike<Cell>): boolean {
  for (let i = 0; i < cells.length; i++) {
    const cell = cells[i];
    if (cell !== null && cell !== undefined && !(typeof cell === "number" && Number.isNaN(cell))) return false;
  }
  return true;
}

/**
 * Profiles a whole table: kinds inferred from whole columns, Doane edges from all of a column's values (unless
 * `options.edges` fixes them). Column by column, so memory beyond the table is one column's values at a time.
 */
export function profileTable(table: ColumnTable, options: ProfileOptions = {}): DatasetProfile {
  const excluded = new Set(options.excludeColumns ?? []);
  const columns: ColumnProfile[] = [];
  table.columns.forEach((name, c) => {
    if (excluded.has(name)) return;
    const cells = table.values[c] as Cell[];
    const single = new DatasetProfiler([name], { ...options, kinds: { [name]: options.kinds?.[name] ?? inferKind(cells) } });
    single.add({ columns: [name], values: [cells], rows: table.rows });
    columns.push(single.finish().columns[0] as ColumnProfile);
  });
  return { format: 1, rows: table.rows, columns };
}

export interface MergeOptions {
  topK?: number;
  seed?: number;
}

/**
 * Merges the profiles of two disjoint sets of rows with the same columns: counts and moments exactly (Chan's
 * update), quantile sketches bin by bin, histograms when their edges are equal, reservoir samples so that the
 * result stays a uniform sample, category frequencies top-K.
 */
export function mergeProfiles(a: DatasetProfile, b: DatasetProfile, options: MergeOptions = {}): DatasetProfile {
  const namesA = a.columns.map((column) => column.name);
  const byName = new Map(b.columns.map((column) => [column.name, column]));
  if (a.columns.length !== b.columns.length || namesA.some((name) => !byName.has(name))) {
    throw new MlshipError(
      "MLSHIP_ERR_INPUT_INVALID",
      `profiles with different columns cannot be merged: [${namesA.join(", ")}] vs [${b.columns.map((c) => c.name).join(", ")}]`,
    );
  }
  const columns = a.columns.map((left): ColumnProfile => {
    const right = byName.get(left.name) as ColumnProfile;
    if (left.kind === "numeric" && right.kind === "numeric") return mergeNumericProfiles(left, right, options.seed ?? DEFAULT_SEED);
    if (left.kind === "categorical" && right.kind === "categorical") {
      return mergeCategoricalProfiles(left, right, options.topK ?? DEFAULT_TOP_K);
    }
    throw new MlshipError(
      "MLSHIP_ERR_INPUT_INVALID",
      `column "${left.name}" is ${left.kind} in one profile and ${right.kind} in the other`,
      { field: left.name },
    );
  });
  return { format: 1, rows: a.rows + b.rows, columns };
}
