// `qualitySeries` reads only the predictions with an outcome and counts the others in the store, per bucket (and
// variant). Its answer must stay what reading every prediction of the span and bucketing it in memory gave: checked
// here against such a brute-force computation (every logged row read back, bucketed by `Date.parse(at)` with start
// inclusive and end exclusive, each bucket through `computeQuality`) on SQLite and PostgreSQL, over a log with
// outcomes for only part of the predictions, rows before, in and after the range, timestamps on, just before and just
// after bucket boundaries, versions that answered as several rollout variants (and none), as one variant only, and
// a regression model whose non-numeric actuals count as no outcome.
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { silentLogger } from "../../src/core/index.js";
import { computeQuality } from "../../src/feedback/quality.js";
import { qualityBuckets, spanMs } from "../../src/feedback/series.js";
import { createFeedbackService } from "../../src/feedback/service.js";
import { feedbackSpecOf } from "../../src/feedback/spec.js";
import { SqlPredictionStore } from "../../src/feedback/store.js";
import type { FeedbackService, FeedbackSpec, JoinedPrediction, PredictionRecord, Variant } from "../../src/feedback/types.js";
import type { QualitySeries, QualitySeriesResponse } from "../../src/ui/contract.js";
import { freshPostgres, freshSqlite, postgresAdmin, type FreshDatabase } from "../helpers/sql-stores.js";

const EXAMPLES = path.resolve(__dirname, "../../examples/models");
const FIXTURES = path.resolve(__dirname, "../../../shared/fixtures");
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
/** Not on any boundary of the steps below (and with milliseconds). */
const NOW = Date.parse("2026-12-01T10:37:12.345Z");
/** The log spans [NOW - 26h, NOW + 1h): before every range below, and past `now`. */
const LOG_START = NOW - 26 * HOUR;
const LOG_END = NOW + HOUR;
const LABELS = ["malignant", "benign"];
const VARIANTS: readonly Variant[] = ["champion", "challenger", "shadow"];

interface Classified {
  outputs: { probabilities: number[][]; label: number[] };
  true_labels: number[];
}
interface Regressed {
  outputs: { prediction: number[][] };
  true_targets: number[];
}

/** A seeded generator (mulberry32), so the log is the same on every run and backend. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Every boundary of 7m, 15m, 45m, 1h steps in the log's span, each exactly and 1 ms either side. */
function boundaryTimes(): number[] {
  const times = new Set<number>();
  for (const step of [7 * MINUTE, 15 * MINUTE, 45 * MINUTE, HOUR]) {
    for (let t = Math.ceil(LOG_START / step) * step; t < LOG_END; t += step) for (const d of [-1, 0, 1]) times.add(t + d);
  }
  // `now` itself (excluded) and the millisecond before it (in the last bucket), and the starts of the ranges.
  for (const t of [NOW, NOW - 1, NOW + 1]) times.add(t);
  for (const range of [90 * MINUTE, 2 * HOUR, 6 * HOUR, 24 * HOUR]) for (const d of [-1, 0, 1]) times.add(NOW - range + d);
  return [...times].sort((a, b) => a - b);
}

interface Logged {
  records: PredictionRecord[];
  /** Outcomes by request id, for part of the records. */
  outcomes: unknown[];
}

/**
 * The log of model `bc` (binary, the real model's outputs on the fixture's prod rows) and `diab` (regression):
 * - bc@1: no rollout (variant null), about 45 % with outcomes, a fifth of them contradicting the prediction;
 * - bc@2: a rollout's challenger, then champion after promotion, with rows outside the rollout too (three variants);
 * - bc@3: a shadow copy only, during the first six hours of the log;
 * - diab@1: champion only; some actuals are text that is no number (no outcome of a regression).
 */
function buildLog(classified: Classified, regressed: Regressed): Logged {
  const next = random(20261201);
  const records: PredictionRecord[] = [];
  const outcomes: unknown[] = [];
  const times = [...boundaryTimes(), ...Array.from({ length: 1500 }, () => LOG_START + Math.floor(next() * (LOG_END - LOG_START)))];
  times.forEach((time, i) => {
    const at = new Date(time).toISOString();
    const pick = next();
    const item = i % 50;
    if (pick < 0.75) {
      // bc: version by time and a draw.
      let version = 1;
      let variant: Variant | null = null;
      if (time < LOG_START + 6 * HOUR && next() < 0.3) {
        version = 3;
        variant = "shadow";
      } else if (next() < 0.5) {
        version = 2;
        const phase = next();
        variant = phase < 0.2 ? null : time < NOW - 8 * HOUR ? "challenger" : "champion";
      }
      const label = classified.outputs.label[item] as number;
      const requestId = `bc-${i}`;
      records.push({
        requestId,
        row: 0,
        model: "bc",
        version,
        variant,
        rolloutId: variant === null ? null : "rollout-1",
        key: null,
        at,
        protocol: "rest",
        inputs: null,
        inputsHash: null,
        outputs: JSON.stringify({ label, class: LABELS[label] }),
        prediction: LABELS[label] as string,
        // A few rows without scores: they count in accuracy but not in roc_auc or log_loss.
        scores: i % 17 === 0 ? null : (classified.outputs.probabilities[item] as number[]),
        latencyMs: 2,
      });
      if (next() < 0.45) {
        const truth = classified.true_labels[item] as number;
        const actual = next() < 0.2 ? 1 - truth : truth;
        // As an index or as the label text.
        outcomes.push({ request_id: requestId, actual: i % 3 === 0 ? LABELS[actual] : actual, event_time: new Date(NOW - MINUTE).toISOString() });
      }
    } else {
      const requestId = `diab-${i}`;
      const prediction = (regressed.outputs.prediction[item] as number[])[0] as number;
      records.push({
        requestId,
        row: 0,
        model: "diab",
        version: 1,
        variant: "champion",
        rolloutId: "rollout-2",
        key: null,
        at,
        protocol: "rest",
        inputs: null,
        inputsHash: null,
        outputs: JSON.stringify({ prediction }),
        prediction,
        scores: null,
        latencyMs: 1,
      });
      const draw = next();
      if (draw < 0.35) outcomes.push({ request_id: requestId, actual: regressed.true_targets[item] as number, event_time: new Date(NOW - MINUTE).toISOString() });
      else if (draw < 0.4) outcomes.push({ request_id: requestId, actual: "not measured", event_time: new Date(NOW - MINUTE).toISOString() });
    }
  });
  return { records, outcomes };
}

const within = (row: JoinedPrediction, start: number, end: number): boolean => {
  const at = Date.parse(row.at);
  return at >= start && at < end;
};

/**
 * What `qualitySeries` answers, computed the slow way: every logged row of each version read back, the versions and
 * variants found among them, each bucket and the whole range filtered in memory and measured by `computeQuality`.
 */
async function bruteForce(
  store: SqlPredictionStore,
  specs: ReadonlyMap<string, FeedbackSpec>,
  query: { model: string; version?: number; range: string; step: string; now: number },
): Promise<QualitySeriesResponse> {
  const { model, range, step, now } = query;
  const buckets = qualityBuckets(now, range, step);
  const rangeStart = now - spanMs(range, "range");
  const from = Math.min(rangeStart, buckets[0]?.start ?? rangeStart);
  const versions = new Map<number, JoinedPrediction[]>();
  for (const version of [1, 2, 3]) {
    const rows = (await store.joined({ model, version, start: new Date(0).toISOString(), end: "9999-12-31T23:59:59.999Z" })).filter((r) => within(r, from, now));
    if (query.version === undefined ? rows.length > 0 : version === query.version) versions.set(version, rows);
  }
  const response: QualitySeriesResponse = { model, task: null, range, step, primaryMetric: null, series: [], latest: [] };
  for (const [version, rows] of versions) {
    const spec = specs.get(`${model}@${version}`) as FeedbackSpec;
    response.task = spec.task;
    response.primaryMetric = spec.thresholds[0]?.metric ?? (spec.task === "regression" ? "mae" : "accuracy");
    const variants = VARIANTS.filter((v) => rows.some((r) => r.variant === v));
    for (const variant of [undefined, ...variants]) {
      const mine = variant === undefined ? rows : rows.filter((r) => r.variant === variant);
      const series: QualitySeries = {
        version,
        variant: variant ?? null,
        points: buckets.map((b) => {
          const q = computeQuality(
            mine.filter((r) => within(r, b.start, b.end)),
            spec,
          );
          return { start: new Date(b.start).toISOString(), end: new Date(b.end).toISOString(), predictions: q.predictions, outcomes: q.outcomes, coverage: q.coverage, metrics: q.metrics };
        }),
      };
      response.series.push(series);
      const q = computeQuality(
        mine.filter((r) => within(r, rangeStart, now)),
        spec,
      );
      response.latest.push({
        model,
        version,
        ...(variant === undefined ? {} : { variant }),
        task: spec.task,
        window: { size: range, start: new Date(rangeStart).toISOString(), end: new Date(now).toISOString() },
        predictions: q.predictions,
        outcomes: q.outcomes,
        coverage: q.coverage,
        metrics: { ...q.metrics, error_rate: null },
        ...(q.confusion === undefined ? {} : { confusion: q.confusion }),
        events: {},
      });
    }
  }
  return response;
}

const CASES: { model: string; version?: number; range: string; step: string; now: number }[] = [
  { model: "bc", range: "1d", step: "1h", now: NOW },
  { model: "bc", range: "6h", step: "15m", now: NOW },
  // `now` on a boundary: the last bucket is the full step just ended.
  { model: "bc", range: "6h", step: "15m", now: Math.floor(NOW / (15 * MINUTE)) * 15 * MINUTE },
  { model: "bc", range: "90m", step: "7m", now: NOW },
  // A range that is no multiple of the step: the first bucket starts before the range.
  { model: "bc", range: "2h", step: "45m", now: NOW },
  { model: "bc", range: "1d", step: "1d", now: NOW },
  { model: "bc", version: 2, range: "1d", step: "1h", now: NOW },
  // The shadow-only version, inside its span and where it has no prediction.
  { model: "bc", version: 3, range: "1d", step: "1h", now: NOW },
  { model: "bc", version: 3, range: "6h", step: "1h", now: NOW },
  { model: "diab", range: "1d", step: "1h", now: NOW },
  { model: "diab", range: "6h", step: "7m", now: NOW },
];

let home: string;
let app: Mlship;
const specs = new Map<string, FeedbackSpec>();
let logged: Logged;

beforeAll(async () => {
  home = await fs.mkdtemp(path.join(os.tmpdir(), "mlship-series-counts-"));
  app = await createMlship(defaultConfig({ home, "runtime.workers": 1 }), { logger: silentLogger() });
  // bc@1 and bc@3: the example as shipped; bc@2: the same package watching f1 (its primary metric); diab@1.
  await registerModel(app, path.join(EXAMPLES, "breast-cancer"), { name: "bc" });
  const watched = path.join(home, "bc-watched");
  await fs.cp(path.join(EXAMPLES, "breast-cancer"), watched, { recursive: true });
  await fs.appendFile(path.join(watched, "mlship.yaml"), "\nfeedback:\n  thresholds:\n    - f1 < 0.8 over 1h with at least 20 outcomes\n");
  await registerModel(app, watched, { name: "bc" });
  await registerModel(app, path.join(EXAMPLES, "breast-cancer"), { name: "bc" });
  await registerModel(app, path.join(EXAMPLES, "diabetes"), { name: "diab" });
  for (const [model, version] of [["bc", 1], ["bc", 2], ["bc", 3], ["diab", 1]] as const) {
    specs.set(`${model}@${version}`, feedbackSpecOf((await app.registry.getVersion(model, version)).manifest));
  }
  const classified = JSON.parse(await fs.readFile(path.join(FIXTURES, "breast_cancer_mlp/expected.json"), "utf8")) as Classified;
  const regressed = JSON.parse(await fs.readFile(path.join(FIXTURES, "diabetes_linear/expected.json"), "utf8")) as Regressed;
  logged = buildLog(classified, regressed);
}, 60_000);

afterAll(async () => {
  await app?.close();
  if (home !== undefined) await fs.rm(home, { recursive: true, force: true });
});

function suite(name: string, makeDatabase: () => Promise<FreshDatabase>): void {
  describe(`qualitySeries on ${name}`, () => {
    let database: FreshDatabase;
    let store: SqlPredictionStore;
    let feedback: FeedbackService;

    beforeAll(async () => {
      database = await makeDatabase();
      store = new SqlPredictionStore(await database.open(), { now: () => new Date(NOW) });
      feedback = createFeedbackService({ store, registry: app.registry, logger: silentLogger(), horizonMs: 7 * 24 * HOUR, pendingMs: HOUR, timers: false, now: () => new Date(NOW) });
      expect(await store.insertPredictions(logged.records)).toBe(logged.records.length);
      const ingested = await feedback.ingestOutcomes(logged.outcomes);
      expect(ingested).toMatchObject({ accepted: logged.outcomes.length, matched: logged.outcomes.length, rejected: [] });
    }, 120_000);
    afterAll(async () => {
      await feedback?.close();
      await database?.dispose();
    });

    it("logs a realistic mix: outcomes for part of the predictions, several variants, rows on bucket boundaries", async () => {
      const all = await store.joined({ model: "bc", version: 2, start: new Date(LOG_START).toISOString(), end: new Date(LOG_END).toISOString() });
      const labelled = all.filter((r) => r.actual !== null).length;
      expect(labelled / all.length).toBeGreaterThan(0.3);
      expect(labelled / all.length).toBeLessThan(0.6);
      expect(new Set(all.map((r) => r.variant))).toEqual(new Set([null, "challenger", "champion"]));
      expect(all.some((r) => Date.parse(r.at) % HOUR === 0)).toBe(true);
    });

    for (const c of CASES) {
      it(`answers what reading every prediction answers: ${c.model}${c.version === undefined ? "" : `@${c.version}`} range ${c.range} step ${c.step}${c.now === NOW ? "" : " (now on a boundary)"}`, async () => {
        const expected = await bruteForce(store, specs, c);
        const got = await feedback.qualitySeries({ model: c.model, range: c.range, step: c.step, now: new Date(c.now), ...(c.version === undefined ? {} : { version: c.version }) });
        expect(got).toEqual(expected);
        // The comparison is not vacuous: predictions without outcomes in the buckets, and buckets with both.
        const points = got.series.flatMap((s) => s.points);
        if (c.version !== 3 || c.range === "1d") {
          expect(points.some((p) => p.predictions > p.outcomes && p.outcomes > 0)).toBe(true);
        }
      });
    }
  });
}

suite("SQLite", () => freshSqlite("mlship-series-counts-store"));
suite("PostgreSQL", async () => {
  const admin = await postgresAdmin();
  const database = await freshPostgres(admin, "mlship-series-counts-pg");
  return {
    open: () => database.open(),
    async dispose() {
      await database.dispose();
      await admin.end();
    },
  };
});
