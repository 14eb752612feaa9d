/**
 * Monitoring at scale (issue 4 item 9), in one process on one core: profiling a table of `rows` x `features`
 * numbers with `profileTable` (moments, DDSketch quantiles, Doane histogram, reservoir sample, distinct count per
 * column) against a plain pass over the same values (sum and sum of squares per column: the loop ceiling), and a
 * two-sample Kolmogorov-Smirnov test of `ksRows` vs `ksRows` values against sorting both samples (what any exact KS
 * must do first). The data is seeded normal values with a shift in the second KS sample.
 */
import { performance } from "node:perf_hooks";
import { answer, job } from "../lib/child.js";
import { distModule } from "../lib/dist.js";
import type * as Monitor from "../../src/monitor/index.js";
import type * as Ks from "../../src/monitor/stats/ks.js";

export interface MonitorJob {
  rows: number;
  features: number;
  ksRows: number;
}

export interface MonitorResult {
  rows: number;
  features: number;
  baselineSeconds: number;
  profileSeconds: number;
  ksRows: number;
  sortSeconds: number;
  ksSeconds: number;
  ksStatistic: number;
  ksPvalue: number;
  ksMethod: string;
}

const j = job<MonitorJob>();
const monitor = await distModule<typeof Monitor>("monitor/index.js");
const ks = await distModule<typeof Ks>("monitor/stats/ks.js");

/** Mulberry32 + Box-Muller: deterministic normal values. */
function normals(n: number, seed: number, shift: number): Float64Array {
  let s = seed >>> 0;
  const uniform = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = shift + Math.sqrt(-2 * Math.log(uniform() + 1e-300)) * Math.cos(2 * Math.PI * uniform());
  return out;
}

const columns = Array.from({ length: j.features }, (_, c) => `f${c}`);
const values = columns.map((_, c) => Array.from(normals(j.rows, 1000 + c, c * 0.1)));
const table = { columns, values, rows: j.rows };

let t = performance.now();
let check = 0;
for (const column of values) {
  let sum = 0;
  let squares = 0;
  for (let i = 0; i < column.length; i++) {
    const v = column[i] as number;
    sum += v;
    squares += v * v;
  }
  check += sum + squares;
}
const baselineSeconds = (performance.now() - t) / 1000;

t = performance.now();
const profile = monitor.profileTable(table);
const profileSeconds = (performance.now() - t) / 1000;
if (profile.rows !== j.rows || !Number.isFinite(check)) throw new Error("profiling produced the wrong row count");

const a = normals(j.ksRows, 7, 0);
const b = normals(j.ksRows, 8, 0.01);
t = performance.now();
Float64Array.from(a).sort();
Float64Array.from(b).sort();
const sortSeconds = (performance.now() - t) / 1000;
t = performance.now();
const result = ks.ks2samp(a, b);
const ksSeconds = (performance.now() - t) / 1000;

answer({
  rows: j.rows,
  features: j.features,
  baselineSeconds,
  profileSeconds,
  ksRows: j.ksRows,
  sortSeconds,
  ksSeconds,
  ksStatistic: result.statistic,
  ksPvalue: result.pvalue,
  ksMethod: result.method,
} satisfies MonitorResult);
