// Live quality over time (`GET /api/v1/models/{name}/quality/series`) on the real server over real data: the
// breast-cancer example scores the fixture's held-out rows, each scoring event becomes prediction-log records as the
// prediction log builds them (`recordsOf`), placed at chosen times over six hours, and outcomes with the true labels
// (some flipped, some missing) are posted over REST at several event times. Every bucket must equal the
// single-window `/quality` report over the same span.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { silentLogger } from "../../src/core/index.js";
import { createFeedbackService, feedbackRoutes, feedbackSpecOf, recordsOf } from "../../src/feedback/index.js";
import type { FeedbackService, QualityReport, Variant } from "../../src/feedback/index.js";
import type { ScoringEvent } from "../../src/scoring/index.js";
import { buildServer } from "../../src/serve/index.js";
import type { QualityPoint, QualitySeries, QualitySeriesResponse } from "../../src/ui/contract.js";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const EXAMPLE = path.join(REPO, "examples/models/breast-cancer");
const FIXTURE = fileURLToPath(new URL("../../../shared/fixtures/breast_cancer_mlp/", import.meta.url));
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
/** The server's clock during the test: 12:30 UTC, so `range=6h&step=1h` has buckets 07:00 .. 12:00-12:30. */
const NOW = Date.UTC(2026, 10, 30, 12, 30);
const at = (hh: number, mm: number): number => Date.UTC(2026, 10, 30, hh, mm);

interface Prod {
  columns: string[];
  features: number[][];
  labels: number[];
}

function readProd(): Prod {
  const lines = fs.readFileSync(path.join(FIXTURE, "prod.csv"), "utf8").trim().split("\n");
  const rows = lines.slice(1).map((line) => line.split(",").map(Number));
  return { columns: (lines[0] as string).split(",").slice(0, 30), features: rows.map((r) => r.slice(0, 30)), labels: rows.map((r) => r[30] as number) };
}

/** One scored request, placed at `time`: which prod rows, which version and variant, how many outcomes and flips. */
interface Request {
  id: string;
  version: number;
  variant?: Variant;
  time: number;
  rows: [number, number];
  /** Outcomes for the first `outcomes` rows, the first `wrong` of them with the other label. */
  outcomes: number;
  wrong: number;
}

const REQUESTS: Request[] = [
  // Before the first bucket but inside the 6 h range (06:30 on): counted in the whole-range report only.
  { id: "early", version: 1, time: at(6, 45), rows: [0, 5], outcomes: 5, wrong: 1 },
  { id: "h07", version: 1, time: at(7, 5), rows: [5, 17], outcomes: 12, wrong: 0 },
  { id: "h07b", version: 1, time: at(7, 59), rows: [17, 20], outcomes: 2, wrong: 2 },
  { id: "h08", version: 1, time: at(8, 0), rows: [20, 32], outcomes: 10, wrong: 3 },
  // Nothing in 09:00-10:00.
  { id: "h10", version: 1, time: at(10, 20), rows: [32, 44], outcomes: 12, wrong: 6 },
  { id: "h11", version: 1, time: at(11, 40), rows: [44, 54], outcomes: 0, wrong: 0 },
  { id: "h12", version: 1, time: at(12, 10), rows: [54, 66], outcomes: 11, wrong: 1 },
  // Version 2 during a canary: challenger rows and rows outside the rollout.
  { id: "v2-08", version: 2, variant: "challenger", time: at(8, 30), rows: [66, 78], outcomes: 12, wrong: 2 },
  { id: "v2-11", version: 2, variant: "challenger", time: at(11, 15), rows: [78, 90], outcomes: 8, wrong: 0 },
  { id: "v2-11b", version: 2, time: at(11, 45), rows: [90, 96], outcomes: 6, wrong: 3 },
];

/** Metrics of a point and of a report, without `error_rate` (the request metrics' figure, not a windowed one). */
function windowed(metrics: Record<string, number | null>): Record<string, number | null> {
  const { error_rate: _ignored, ...rest } = metrics;
  return rest;
}

describe("GET /api/v1/models/{name}/quality/series", () => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-quality-series-"));
  const prod = readProd();
  let app: Mlship;
  let feedback: FeedbackService;
  let server: ReturnType<typeof buildServer>;
  let clock = NOW;

  const get = (url: string) => server.inject(url);
  const seriesOf = async (query: string): Promise<QualitySeriesResponse> => {
    const res = await get(`/api/v1/models/bc/quality/series${query}`);
    expect(res.statusCode, res.body).toBe(200);
    return res.json<QualitySeriesResponse>();
  };
  /** `/quality` of one version (variant) over [start, end): the clock set to `end`, the window `end - start`. */
  const qualityOver = async (version: number, variant: string | null, start: number, end: number): Promise<QualityReport> => {
    clock = end;
    try {
      const res = await get(`/api/v1/models/bc/quality?version=${version}&window=${end - start}ms${variant === null ? "" : `&variant=${variant}`}`);
      expect(res.statusCode, res.body).toBe(200);
      return res.json<QualityReport>();
    } finally {
      clock = NOW;
    }
  };

  beforeAll(async () => {
    app = await createMlship(defaultConfig({ home, "runtime.workers": 1 }), { logger: silentLogger() });
    await registerModel(app, EXAMPLE, { name: "bc" });
    // Version 2: the same package watching f1 (its primary metric).
    const watched = path.join(home, "bc-watched");
    fs.cpSync(EXAMPLE, watched, { recursive: true });
    fs.appendFileSync(path.join(watched, "mlship.yaml"), "\nfeedback:\n  thresholds:\n    - f1 < 0.8 over 1h with at least 20 outcomes\n");
    await registerModel(app, watched, { name: "bc" });

    feedback = createFeedbackService({ store: app.predictions, registry: app.registry, logger: silentLogger(), horizonMs: 7 * 24 * HOUR, pendingMs: 10 * MINUTE, timers: false, now: () => new Date(clock) });
    const events: ScoringEvent[] = [];
    const unsubscribe = app.scoring.onScored((event) => events.push(event));
    const outcomes: unknown[] = [];
    for (const request of REQUESTS) {
      const [from, to] = request.rows;
      await app.scoring.score(`bc@${request.version}`, { kind: "mlflow", body: { dataframe_split: { columns: prod.columns, data: prod.features.slice(from, to) } } }, { requestId: request.id });
      const event = events.pop() as ScoringEvent;
      expect(event.requestId).toBe(request.id);
      const manifest = (await app.registry.getVersion("bc", request.version)).manifest;
      const placed: ScoringEvent = { ...event, at: new Date(request.time), ...(request.variant === undefined ? {} : { variant: request.variant, rolloutId: "rollout-1" }) };
      expect(await app.predictions.insertPredictions(recordsOf(placed, feedbackSpecOf(manifest), manifest))).toBe(to - from);
      for (let row = 0; row < request.outcomes; row++) {
        const label = prod.labels[from + row] as number;
        // Outcomes arrive 20 minutes to a few hours after their prediction.
        outcomes.push({ request_id: request.id, row, actual: row < request.wrong ? 1 - label : label, event_time: new Date(request.time + (20 + row * 15) * MINUTE).toISOString() });
      }
    }
    unsubscribe();
    server = buildServer({ scoring: app.scoring, registry: app.registry, logger: false });
    await server.register(feedbackRoutes, { feedback, registry: app.registry });
    await server.ready();
    const posted = await server.inject({ method: "POST", url: "/v1/feedback", headers: { "content-type": "application/json" }, payload: JSON.stringify({ outcomes }) });
    expect(posted.statusCode, posted.body).toBe(202);
    expect(posted.json()).toMatchObject({ accepted: outcomes.length, matched: outcomes.length, rejected: [] });
    const clicks = await server.inject({
      method: "POST",
      url: "/v1/events",
      headers: { "content-type": "application/json" },
      payload: JSON.stringify({ events: [{ event_id: "c1", name: "click", request_id: "h08", row: 1 }, { event_id: "c2", name: "purchase", value: 40, request_id: "h12", row: 0 }] }),
    });
    expect(clicks.statusCode, clicks.body).toBe(202);
  }, 120_000);

  afterAll(async () => {
    await server?.close();
    await feedback?.close();
    await app?.close();
    fs.rmSync(home, { recursive: true, force: true });
  });

  it("buckets every version and rollout variant over the range, aligned to the step", async () => {
    const body = await seriesOf("?range=6h&step=1h");
    expect(body).toMatchObject({ model: "bc", task: "binary_classification", range: "6h", step: "1h", primaryMetric: "f1" });
    expect(body.series.map((s) => [s.version, s.variant])).toEqual([[1, null], [2, null], [2, "challenger"]]);
    const starts = [7, 8, 9, 10, 11, 12].map((h) => new Date(at(h, 0)).toISOString());
    for (const s of body.series) {
      expect(s.points.map((p) => p.start)).toEqual(starts);
      expect(s.points.at(-1)?.end).toBe(new Date(NOW).toISOString());
    }
    const v1 = body.series[0] as QualitySeries;
    expect(v1.points.map((p) => [p.predictions, p.outcomes])).toEqual([[15, 14], [12, 10], [0, 0], [12, 12], [10, 0], [12, 11]]);
    expect(v1.points[2]).toEqual({ start: starts[2], end: new Date(at(10, 0)).toISOString(), predictions: 0, outcomes: 0, coverage: null, metrics: expect.objectContaining({ accuracy: null, f1: null }) as unknown });
    expect(v1.points[4]?.coverage).toBe(0);
    expect(v1.points[4]?.metrics.accuracy).toBeNull();
    expect(body.series[2]?.points.map((p) => p.predictions)).toEqual([0, 12, 0, 0, 12, 0]);
    expect(body.series[1]?.points.map((p) => p.predictions)).toEqual([0, 12, 0, 0, 18, 0]);
  });

  it("computes each bucket exactly as the single-window /quality report over that bucket", async () => {
    const body = await seriesOf("?range=6h&step=1h");
    let compared = 0;
    for (const s of body.series) {
      for (const point of s.points) {
        const report = await qualityOver(s.version, s.variant, Date.parse(point.start), Date.parse(point.end));
        const fromReport: QualityPoint = { start: point.start, end: point.end, predictions: report.predictions, outcomes: report.outcomes, coverage: report.coverage, metrics: windowed(report.metrics) };
        expect(point, `${s.version}/${s.variant} ${point.start}`).toEqual(fromReport);
        if (point.outcomes > 0) compared++;
      }
    }
    expect(compared).toBe(8);
  });

  it("holds the whole-range /quality report per version and variant in `latest`, with confusion matrix and business events", async () => {
    const body = await seriesOf("?range=6h&step=1h");
    const latest = body.latest as QualityReport[];
    expect(latest.map((r) => [r.version, r.variant])).toEqual([[1, undefined], [2, undefined], [2, "challenger"]]);
    for (const report of latest) {
      const res = await get(`/api/v1/models/bc/quality?version=${report.version}&window=6h${report.variant === undefined ? "" : `&variant=${report.variant}`}`);
      expect(report).toEqual(res.json());
    }
    const v1 = latest[0] as QualityReport;
    // The 06:45 request is in the range, before the first bucket.
    expect(v1.predictions).toBe(5 + 15 + 12 + 12 + 10 + 12);
    expect(v1.window).toEqual({ size: "6h", start: new Date(NOW - 6 * HOUR).toISOString(), end: new Date(NOW).toISOString() });
    expect(v1.confusion?.labels).toEqual(["malignant", "benign"]);
    expect(v1.confusion?.matrix.flat().reduce((a, b) => a + b, 0)).toBe(v1.outcomes);
    expect(v1.events).toEqual({ click: { count: 1, sum: 1, rate: 1 / 66 }, purchase: { count: 1, sum: 40, rate: 1 / 66 } });
    // And the whole-range report agrees with its buckets where they overlap: the early request is the difference.
    const bucketed = body.series[0]?.points.reduce((n, p) => n + p.predictions, 0);
    expect(v1.predictions - (bucketed ?? 0)).toBe(5);
  });

  it("serves one version with ?version=N, with its own primary metric; other steps and the defaults", async () => {
    const one = await seriesOf("?range=6h&step=1h&version=1");
    expect(one.series.map((s) => [s.version, s.variant])).toEqual([[1, null]]);
    expect(one.primaryMetric).toBe("accuracy");
    expect((one.latest as QualityReport[]).map((r) => r.version)).toEqual([1]);

    const halfHours = await seriesOf("?range=3h&step=30m&version=1");
    // Now (12:30) is on a boundary: the last bucket is the full half hour that just ended.
    expect(halfHours.series[0]?.points.map((p) => [p.start.slice(11, 16), p.end.slice(11, 16), p.predictions])).toEqual([
      ["09:30", "10:00", 0],
      ["10:00", "10:30", 12],
      ["10:30", "11:00", 0],
      ["11:00", "11:30", 0],
      ["11:30", "12:00", 10],
      ["12:00", "12:30", 12],
    ]);

    // Defaults: range 1d, step 1h: 24 buckets, the last holding now.
    const defaults = await seriesOf("");
    expect(defaults).toMatchObject({ range: "1d", step: "1h" });
    expect(defaults.series[0]?.points).toHaveLength(24);
    expect(defaults.series[0]?.points.at(-1)?.start).toBe(new Date(at(12, 0)).toISOString());

    // A version with no predictions in the span: empty buckets, still its task and metric.
    clock = NOW + 30 * 24 * HOUR;
    try {
      const quiet = await seriesOf("?range=6h&step=1h&version=2");
      expect(quiet.primaryMetric).toBe("f1");
      expect(quiet.series[0]?.points.every((p) => p.predictions === 0 && p.coverage === null)).toBe(true);
      const nothing = await seriesOf("?range=6h&step=1h");
      expect(nothing).toMatchObject({ task: null, primaryMetric: null, series: [], latest: [] });
    } finally {
      clock = NOW;
    }
  });

  it("answers 400 naming range or step for bad spans or too many buckets, and 404 for unknown models and versions", async () => {
    for (const [query, field] of [
      ["?range=1d&step=1m", "step"],
      ["?range=1h&step=2h", "step"],
      ["?range=yesterday", "range"],
      ["?range=0h", "range"],
      ["?step=1.5h", "step"],
      ["?range=1d&range=2d", "range"],
      ["?version=zero", "version"],
    ] as const) {
      const res = await get(`/api/v1/models/bc/quality/series${query}`);
      expect(res.statusCode, query).toBe(400);
      expect(res.json(), query).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field });
    }
    expect((await get("/api/v1/models/bc/quality/series?range=500h&step=1h")).statusCode).toBe(200);
    expect((await get("/api/v1/models/bc/quality/series?range=501h&step=1h")).json()).toMatchObject({ field: "step" });
    const model = await get("/api/v1/models/nope/quality/series");
    expect(model.statusCode).toBe(404);
    expect(model.json()).toMatchObject({ code: "MLSHIP_ERR_MODEL_NOT_FOUND" });
    const version = await get("/api/v1/models/bc/quality/series?version=7");
    expect(version.statusCode).toBe(404);
    expect(version.json()).toMatchObject({ code: "MLSHIP_ERR_MODEL_VERSION_NOT_FOUND" });
  });
});
