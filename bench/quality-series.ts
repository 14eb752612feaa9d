// How long `qualitySeries` (`GET /api/v1/models/{name}/quality/series`, the dashboard's quality page) holds the event
// loop on the default SQLite store (its queries are synchronous there), and how much memory it takes, before and
// after it stopped reading every prediction of the range:
//   node --import tsx bench/quality-series.ts [rows, default 300000]
// Logs `rows` predictions of the breast-cancer example over one day through the real store (bc@1: no rollout for
// the first half of the day, champion after; bc@2: the challenger, a tenth of the traffic in the second half), posts
// outcomes for 5 % of them, then, each in a fresh child process on that database:
// - before: the old computation (every prediction of the span read with `joined` and bucketed in memory);
// - after: `FeedbackService.qualitySeries` (rows with outcomes only, predictions counted in the store per bucket);
// at range=1d with step=1h (24 buckets) and step=15m (96 buckets): median and max ms of a call, the longest the event
// loop went without running a timer during a call, and the child's peak RSS above its RSS before the first call. Both must give the same answer (checked). Also times three ways of
// counting the predictions per bucket and variant in SQL, for the record.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { sql } from "kysely";
import { createMlship, registerModel } from "../src/app.js";
import { defaultConfig } from "../src/config/index.js";
import { silentLogger } from "../src/core/index.js";
import { computeQuality } from "../src/feedback/quality.js";
import { bucketQuality, primaryMetricOf, qualityBuckets, spanMs } from "../src/feedback/series.js";
import { createFeedbackService } from "../src/feedback/service.js";
import { feedbackSpecOf } from "../src/feedback/spec.js";
import { SqlPredictionStore } from "../src/feedback/store.js";
import type { JoinedPrediction, PredictionRecord, Variant } from "../src/feedback/types.js";
import type { QualitySeriesResponse } from "../src/ui/contract.js";

const HERE = fileURLToPath(import.meta.url);
const EXAMPLE = path.resolve(path.dirname(HERE), "../examples/models/breast-cancer");
const NOW = Date.parse("2026-12-01T12:34:56.789Z");
const DAY = 24 * 3_600_000;
const BATCH = 2000;
const RUNS = 7;
const VARIANT_ORDER: readonly Variant[] = ["champion", "challenger", "shadow"];
const LABELS = ["malignant", "benign"];

function records(from: number, count: number, total: number): PredictionRecord[] {
  return Array.from({ length: count }, (_, k) => {
    const i = from + k;
    const offset = Math.floor((i / total) * DAY);
    const secondHalf = offset >= DAY / 2;
    const version = secondHalf && i % 10 === 0 ? 2 : 1;
    const variant: Variant | null = !secondHalf ? null : version === 2 ? "challenger" : "champion";
    const label = i % 3 === 0 ? 1 : 0;
    return {
      requestId: `req-${i}`,
      row: 0,
      model: "bc",
      version,
      variant,
      rolloutId: variant === null ? null : "ro-1",
      key: null,
      at: new Date(NOW - DAY + offset).toISOString(),
      protocol: "rest",
      inputs: JSON.stringify({ x: [i % 7, i % 11, i % 13] }),
      inputsHash: null,
      outputs: JSON.stringify({ label, class: LABELS[label] }),
      prediction: LABELS[label] as string,
      scores: label === 1 ? [0.2, 0.8] : [0.7, 0.3],
      latencyMs: 1.5,
    };
  });
}

function stats(samples: number[]): string {
  const sorted = [...samples].sort((a, b) => a - b);
  return `median ${(sorted[Math.floor(sorted.length / 2)] ?? 0).toFixed(1)} ms, max ${(sorted.at(-1) ?? 0).toFixed(1)} ms`;
}

/** The child: opens the database in `home`, runs one mode, prints one JSON line. */
async function measure(home: string, mode: "before" | "after", step: string): Promise<void> {
  const app = await createMlship(defaultConfig({ home, "runtime.workers": 1, "cache.backend": "off" }), { logger: silentLogger() });
  const store = app.predictions;
  const feedback = createFeedbackService({ store, registry: app.registry, logger: silentLogger(), horizonMs: 7 * DAY, pendingMs: 3_600_000, timers: false, now: () => new Date(NOW) });
  const query = { model: "bc", range: "1d", step, now: new Date(NOW) };

  /** The old `qualitySeries`: every prediction of the span read and bucketed in memory. */
  async function before(): Promise<QualitySeriesResponse> {
    const now = query.now;
    const buckets = qualityBuckets(now.getTime(), query.range, query.step);
    const rangeStart = now.getTime() - spanMs(query.range, "range");
    const from = new Date(Math.min(rangeStart, buckets[0]?.start ?? rangeStart));
    const active = (await store.activeVersions(from.toISOString(), now.toISOString())).filter((a) => a.model === query.model);
    const response: QualitySeriesResponse = { model: query.model, task: null, range: query.range, step: query.step, primaryMetric: null, series: [], latest: [] };
    for (const { version } of active) {
      const spec = feedbackSpecOf((await app.registry.getVersion(query.model, version)).manifest);
      response.task = spec.task;
      response.primaryMetric = primaryMetricOf(spec);
      const rows = await store.joined({ model: query.model, version, start: from.toISOString(), end: now.toISOString() });
      const variants = VARIANT_ORDER.filter((variant) => rows.some((r) => r.variant === variant));
      const inRange = rows.filter((r) => Date.parse(r.at) >= rangeStart);
      for (const variant of [undefined, ...variants]) {
        const mine = (list: readonly JoinedPrediction[]): JoinedPrediction[] => (variant === undefined ? [...list] : list.filter((r) => r.variant === variant));
        response.series.push({ version, variant: variant ?? null, points: bucketQuality(mine(rows), spec, buckets) });
        const q = computeQuality(mine(inRange), spec);
        response.latest.push({ version, variant: variant ?? null, predictions: q.predictions, outcomes: q.outcomes, coverage: q.coverage, metrics: q.metrics });
      }
    }
    return response;
  }
  async function after(): Promise<QualitySeriesResponse> {
    const response = await feedback.qualitySeries(query);
    // The same fields of `latest` as `before` keeps.
    response.latest = response.latest.map((l) => {
      const r = l as { version: number; variant?: string; predictions: number; outcomes: number; coverage: number | null; metrics: Record<string, number | null> };
      const { error_rate: _ignored, ...metrics } = r.metrics;
      return { version: r.version, variant: r.variant ?? null, predictions: r.predictions, outcomes: r.outcomes, coverage: r.coverage, metrics };
    });
    return response;
  }

  const run = mode === "before" ? before : after;
  const baseRss = process.memoryUsage().rss;
  const samples: number[] = [];
  /** The longest the event loop went without running a 1 ms timer during each call. */
  const stalls: number[] = [];
  let answer = "";
  for (let i = 0; i < RUNS; i += 1) {
    let last = performance.now();
    let stall = 0;
    const ticker = setInterval(() => {
      const t = performance.now();
      stall = Math.max(stall, t - last);
      last = t;
    }, 1);
    const start = performance.now();
    const response = await run();
    const end = performance.now();
    samples.push(end - start);
    stalls.push(Math.max(stall, end - last));
    clearInterval(ticker);
    answer = createHash("sha256").update(JSON.stringify(response)).digest("hex");
  }
  // maxRSS is in KiB.
  const peakRss = process.resourceUsage().maxRSS * 1024;
  const extra: Record<string, string> = {};
  if (mode === "after") {
    // Three ways to count predictions per bucket and variant, raw SQL on the same database.
    if (!(app.predictions instanceof SqlPredictionStore)) throw new Error("expected the SQL prediction store");
    const db = app.predictions.store.db;
    const buckets = qualityBuckets(NOW, query.range, query.step).map((b) => [new Date(b.start).toISOString(), new Date(b.end).toISOString()] as const);
    const perVariant = async () => {
      for (const version of [1, 2]) {
        for (const [s, e] of buckets) {
          await sql`select count(*) from prediction_log where model = 'bc' and version = ${version} and at >= ${s} and at < ${e}`.execute(db);
          for (const v of ["champion", "challenger"]) await sql`select count(*) from prediction_log where model = 'bc' and version = ${version} and at >= ${s} and at < ${e} and variant = ${v}`.execute(db);
        }
      }
    };
    const groupedPerBucket = async () => {
      for (const version of [1, 2]) {
        for (const [s, e] of buckets) await sql`select variant, count(*) from prediction_log where model = 'bc' and version = ${version} and at >= ${s} and at < ${e} group by variant`.execute(db);
      }
    };
    const first = Date.parse(buckets[0]?.[0] ?? "");
    const stepMs = spanMs(query.step, "step");
    const oneQuery = async () => {
      for (const version of [1, 2]) {
        await sql`select cast((julianday(at) - julianday(${new Date(first).toISOString()})) * 86400000 / ${stepMs} as integer) as bucket, variant, count(*)
          from prediction_log where model = 'bc' and version = ${version} and at >= ${buckets[0]?.[0]} and at < ${buckets.at(-1)?.[1]} group by bucket, variant`.execute(db);
      }
    };
    const wholeOnly = async () => {
      for (const version of [1, 2]) for (const [s, e] of buckets) await sql`select count(*) from prediction_log where model = 'bc' and version = ${version} and at >= ${s} and at < ${e}`.execute(db);
    };
    for (const [label, fn] of [
      ["count(*) per bucket, whole version only (index only)", wholeOnly],
      ["count(*) per bucket, whole version + each variant", perVariant],
      ["count(*) group by variant per bucket", groupedPerBucket],
      ["one query, bucket index from julianday(at), group by bucket, variant", oneQuery],
    ] as const) {
      const times: number[] = [];
      for (let i = 0; i < RUNS; i += 1) {
        const start = performance.now();
        await fn();
        times.push(performance.now() - start);
      }
      extra[label] = stats(times);
    }
  }
  await feedback.close();
  await app.close();
  console.log(JSON.stringify({ mode, step, time: stats(samples), stall: stats(stalls), rssAboveBaseMiB: ((peakRss - baseRss) / 2 ** 20).toFixed(1), answer, extra }));
}

async function main(): Promise<void> {
  if (process.argv[2] === "--measure") {
    await measure(process.argv[3] as string, process.argv[4] as "before" | "after", process.argv[5] as string);
    return;
  }
  const rows = Number(process.argv[2] ?? 300_000);
  const home = await fs.mkdtemp(path.join(os.tmpdir(), "mlship-bench-series-"));
  try {
    const app = await createMlship(defaultConfig({ home, "runtime.workers": 1, "cache.backend": "off" }), { logger: silentLogger() });
    await registerModel(app, EXAMPLE, { name: "bc" });
    await registerModel(app, EXAMPLE, { name: "bc" });
    const loadStart = performance.now();
    for (let from = 0; from < rows; from += BATCH) await app.predictions.insertPredictions(records(from, Math.min(BATCH, rows - from), rows));
    const feedback = createFeedbackService({ store: app.predictions, registry: app.registry, logger: silentLogger(), horizonMs: 7 * DAY, pendingMs: 3_600_000, timers: false, now: () => new Date(NOW) });
    let outcomes = 0;
    for (let from = 0; from < rows; from += 20 * BATCH) {
      const items: unknown[] = [];
      for (let i = from; i < Math.min(rows, from + 20 * BATCH); i += 20) items.push({ request_id: `req-${i}`, actual: i % 7 === 0 ? 1 - (i % 3 === 0 ? 1 : 0) : i % 3 === 0 ? 1 : 0, event_time: new Date(NOW - 60_000).toISOString() });
      outcomes += (await feedback.ingestOutcomes(items)).matched;
    }
    await feedback.close();
    await app.close();
    console.log(`prediction_log: ${rows} rows over one day, ${outcomes} with outcomes (${((outcomes / rows) * 100).toFixed(1)} %), loaded in ${((performance.now() - loadStart) / 1000).toFixed(1)} s`);
    for (const step of ["1h", "15m"]) {
      const results = (["before", "after"] as const).map((mode) => {
        const out = execFileSync(process.execPath, [...process.execArgv, HERE, "--measure", home, mode, step], { encoding: "utf8", maxBuffer: 1 << 24 });
        return JSON.parse(out.trim().split("\n").at(-1) as string) as { mode: string; time: string; stall: string; rssAboveBaseMiB: string; answer: string; extra: Record<string, string> };
      });
      const [old, now] = results as [(typeof results)[0], (typeof results)[0]];
      if (old.answer !== now.answer) throw new Error(`range 1d step ${step}: the answers differ`);
      console.log(`range 1d, step ${step}: same answer`);
      console.log(`  before: call ${old.time}; longest event-loop stall ${old.stall}; peak RSS +${old.rssAboveBaseMiB} MiB`);
      console.log(`  after:  call ${now.time}; longest event-loop stall ${now.stall}; peak RSS +${now.rssAboveBaseMiB} MiB`);
      for (const [label, value] of Object.entries(now.extra)) console.log(`  counts, ${label}: ${value}`);
    }
  } finally {
    await fs.rm(home, { recursive: true, force: true });
  }
}

await main();
