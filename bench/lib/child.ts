/** The protocol between the bench and its children: a job in, one tagged JSON line out. */

/** Line that carries a child's answer on stdout: `BENCH_RESULT <json>` (a ready server: `BENCH_READY <json>`). */
export const RESULT_TAG = "BENCH_RESULT ";
export const READY_TAG = "BENCH_READY ";

/** A child's answer, written by the child itself. */
export function answer(value: unknown): void {
  process.stdout.write(`${RESULT_TAG}${JSON.stringify(value)}\n`);
}

/** The job a child was started with (BENCH_JOB, JSON). */
export function job<T>(): T {
  const raw = process.env.BENCH_JOB;
  if (raw === undefined) throw new Error("bench child started without BENCH_JOB");
  return JSON.parse(raw) as T;
}

/** Sorted latencies (ms) to a percentile; NaN when there are none. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

/** A growable Float64Array of latencies (a plain array of 10^6 numbers costs more and triggers GC in the loop). */
export class Samples {
  private data = new Float64Array(1 << 16);
  length = 0;
  push(v: number): void {
    if (this.length === this.data.length) {
      const next = new Float64Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = v;
  }
  sorted(): Float64Array {
    return this.data.slice(0, this.length).sort();
  }
}
