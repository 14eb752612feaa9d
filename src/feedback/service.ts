/**
 * The live feedback loop of a process: quality of each model version over trailing windows (from the prediction
 * log joined with outcomes), thresholds judged on a timer with `quality` alerts through the monitoring Alerter, and
 * Prometheus gauges of the last evaluation. The join of late-arriving outcomes is retried on a timer too.
 */
import { Gauge, type Registry as MetricsRegistry } from "prom-client";
import { MlshipError, type Logger } from "../core/index.js";
import { Alerter, DEFAULT_WINDOW_SIZES, parseWindowSize } from "../monitor/index.js";
import type { Registry } from "../registry/index.js";
import { computeQuality } from "./quality.js";
import { bucketQuality, DEFAULT_SERIES_RANGE, DEFAULT_SERIES_STEP, primaryMetricOf, qualityBuckets, spanMs } from "./series.js";
import type { QualityBucket } from "./series.js";
import type { QualitySeriesResponse } from "../ui/contract.js";
import { feedbackSpecOf } from "./spec.js";
import { conceptDriftAlert, detectConceptDrift } from "./concept.js";
import { judgeThresholds, qualityAlerts } from "./thresholds.js";
import type {
  EventCounter,
  FeedbackSpec,
  FeedbackService,
  IngestResult,
  JoinedPrediction,
  JoinOptions,
  PredictionQuery,
  PredictionStore,
  QualityAlert,
  QualityQuery,
  QualityReport,
  QualitySeriesQuery,
  ThresholdResult,
  Variant,
} from "./types.js";

export const DEFAULT_QUALITY_WINDOWS: readonly string[] = DEFAULT_WINDOW_SIZES;
/** How often pending outcomes and events are retried against the predictions logged since. */
export const JOIN_PENDING_INTERVAL_MS = 5_000;
export const DEFAULT_EVALUATE_INTERVAL_MS = 60_000;
export const PRUNE_INTERVAL_MS = 24 * 60 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;
const VARIANT_ORDER: readonly Variant[] = ["champion", "challenger", "shadow"];

export interface FeedbackServiceOptions {
  store: PredictionStore;
  /** Where each version's manifest (and so its feedback spec) is read. */
  registry: Pick<Registry, "getVersion">;
  logger: Logger;
  /** Quality alerts go through it with scope `quality:model@version`; default an Alerter without sinks (listeners only). */
  alerter?: Alerter;
  /** Where the quality gauges are registered; none when absent. */
  metricsRegistry?: MetricsRegistry;
  /** Config `feedback.horizon`: how long after a prediction its outcome may arrive. */
  horizonMs: number;
  /** Config `feedback.pendingTimeout`: how long an outcome may wait for its prediction. */
  pendingMs: number;
  /** How often thresholds are judged and gauges refreshed. Default 60 s; 0 turns the timer off. */
  evaluateMs?: number;
  /** Predictions older than this many days are pruned once a day; 0 or absent keeps everything. */
  retentionDays?: number;
  /** Windows of the gauges. Default 1h, 12h, 1d. */
  windows?: string[];
  /** Start the join, evaluation and prune timers. Default true. */
  timers?: boolean;
  now?: () => Date;
  /** Failed requests / requests of a version, from the request metrics; null (or absent) when unknown. */
  errorRate?: (model: string, version: number) => number | null;
}

interface VersionReports {
  model: string;
  version: number;
  spec: FeedbackSpec;
  /** Whole-version reports by window label. */
  byWindow: Map<string, QualityReport>;
}

interface QualityGauges {
  quality: Gauge<"model" | "version" | "variant" | "window" | "metric">;
  coverage: Gauge<"model" | "version" | "variant" | "window">;
  outcomes: Gauge<"model" | "version" | "variant" | "window">;
  feedbackOutcomes: Gauge<"status">;
  businessEvents: Gauge<"status">;
}

function gauge<T extends string>(registry: MetricsRegistry, name: string, help: string, labelNames: readonly T[]): Gauge<T> {
  // A second service on the same registry (tests, a restarted loop) shares the series instead of failing to register.
  const existing = registry.getSingleMetric(name);
  if (existing instanceof Gauge) return existing as Gauge<T>;
  return new Gauge({ name, help, labelNames, registers: [registry] });
}

function createGauges(registry: MetricsRegistry): QualityGauges {
  return {
    quality: gauge(registry, "mlship_quality", "Live quality metric of a model version (variant) over a trailing window, from joined outcomes.", ["model", "version", "variant", "window", "metric"]),
    coverage: gauge(registry, "mlship_label_coverage", "Share of predictions in the window with an outcome joined.", ["model", "version", "variant", "window"]),
    outcomes: gauge(registry, "mlship_quality_outcomes", "Outcomes joined to the predictions of the window.", ["model", "version", "variant", "window"]),
    feedbackOutcomes: gauge(registry, "mlship_feedback_outcomes", "Outcomes stored, by join status (pending, matched, late, unmatched).", ["status"]),
    businessEvents: gauge(registry, "mlship_business_events", "Business events stored, by join status (pending, matched, late, unmatched).", ["status"]),
  };
}

function windowMs(window: string): number {
  try {
    return parseWindowSize(window);
  } catch (error) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", (error as Error).message, { field: "window", cause: error });
  }
}

export function createFeedbackService(options: FeedbackServiceOptions): FeedbackService {
  const { store, registry, logger } = options;
  const clock = options.now ?? ((): Date => new Date());
  const windows = options.windows ?? [...DEFAULT_QUALITY_WINDOWS];
  for (const window of windows) windowMs(window);
  const alerter = options.alerter ?? new Alerter({ sinks: [], logger });
  const gauges = options.metricsRegistry === undefined ? undefined : createGauges(options.metricsRegistry);
  const specs = new Map<string, Promise<FeedbackSpec>>();
  const listeners = new Set<(alerts: readonly QualityAlert[]) => void>();
  /** Scopes the alerter holds alerts for, so a version that went quiet gets its alerts cleared. */
  const alertScopes = new Set<string>();
  const timers: NodeJS.Timeout[] = [];
  const running = new Set<Promise<unknown>>();
  let closed: Promise<void> | undefined;

  const joinOptions = (): JoinOptions => ({ horizonMs: options.horizonMs, pendingMs: options.pendingMs, now: clock() });

  function specOf(model: string, version: number): Promise<FeedbackSpec> {
    const key = `${model}@${version}`;
    let spec = specs.get(key);
    if (spec === undefined) {
      spec = registry.getVersion(model, version).then((record) => feedbackSpecOf(record.manifest));
      // A failed read (store down, unknown version) is retried on the next call rather than cached.
      void spec.catch(() => specs.delete(key));
      specs.set(key, spec);
    }
    return spec;
  }

  async function report(query: QualityQuery, spec: FeedbackSpec): Promise<QualityReport> {
    const now = query.now ?? clock();
    const start = new Date(now.getTime() - windowMs(query.window));
    const range: PredictionQuery = {
      model: query.model,
      version: query.version,
      ...(query.variant === undefined ? {} : { variant: query.variant }),
      start: start.toISOString(),
      end: now.toISOString(),
    };
    // Only rows with an outcome are read; the rest are counted in the store (a window can hold a day of traffic).
    const [rows, predictions, totals] = await Promise.all([store.joined({ ...range, withOutcome: true }), store.countPredictions(range), store.eventTotals(range)]);
    return reportOf(query, spec, range, rows, totals, predictions);
  }

  /** A report from the rows and event totals of its range (read by `report`, or cut out of a longer read). */
  function reportOf(
    query: QualityQuery,
    spec: FeedbackSpec,
    range: PredictionQuery,
    rows: readonly JoinedPrediction[],
    totals: Record<string, { count: number; sum: number }>,
    predictions: number = rows.length,
  ): QualityReport {
    const quality = computeQuality(rows, spec, predictions);
    const events: Record<string, EventCounter> = {};
    for (const [name, total] of Object.entries(totals)) {
      events[name] = { count: total.count, sum: total.sum, rate: quality.predictions === 0 ? 0 : total.count / quality.predictions };
    }
    const errorRate = options.errorRate?.(query.model, query.version) ?? null;
    return {
      model: query.model,
      version: query.version,
      ...(query.variant === undefined ? {} : { variant: query.variant }),
      task: spec.task,
      window: { size: query.window, start: range.start, end: range.end },
      predictions: quality.predictions,
      outcomes: quality.outcomes,
      coverage: quality.coverage,
      metrics: { ...quality.metrics, error_rate: errorRate },
      ...(quality.confusion === undefined ? {} : { confusion: quality.confusion }),
      events,
    };
  }

  async function quality(query: QualityQuery): Promise<QualityReport> {
    if (typeof query.model !== "string" || query.model === "") throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "quality needs a model name", { field: "model" });
    if (!Number.isSafeInteger(query.version) || query.version < 1) throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `version ${String(query.version)} is not a positive integer`, { field: "version" });
    if (query.variant !== undefined && !VARIANT_ORDER.includes(query.variant)) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `variant ${JSON.stringify(query.variant)} is not one of ${VARIANT_ORDER.join(", ")}`, { field: "variant" });
    }
    windowMs(query.window);
    return report(query, await specOf(query.model, query.version));
  }

  /** Every active version of `model` (all models when undefined), with the variants it served in [start, end). */
  async function activeVersions(start: Date, end: Date, model?: string): Promise<{ model: string; version: number; variants: Variant[] }[]> {
    const active = await store.activeVersions(start.toISOString(), end.toISOString());
    return active
      .filter((a) => model === undefined || a.model === model)
      .sort((a, b) => a.model.localeCompare(b.model) || a.version - b.version)
      .map((a) => ({ model: a.model, version: a.version, variants: VARIANT_ORDER.filter((v) => a.variants.includes(v)) }));
  }

  async function qualityAll(model: string, window: string, now?: Date): Promise<QualityReport[]> {
    const end = now ?? clock();
    const start = new Date(end.getTime() - windowMs(window));
    const reports: QualityReport[] = [];
    for (const active of await activeVersions(start, end, model)) {
      const spec = await specOf(active.model, active.version);
      // The whole version first, then each rollout variant it answered as.
      for (const variant of [undefined, ...active.variants]) {
        reports.push(await report({ model: active.model, version: active.version, window, now: end, ...(variant === undefined ? {} : { variant }) }, spec));
      }
    }
    return reports;
  }

  async function qualitySeries(query: QualitySeriesQuery): Promise<QualitySeriesResponse> {
    const range = query.range ?? DEFAULT_SERIES_RANGE;
    const step = query.step ?? DEFAULT_SERIES_STEP;
    const now = query.now ?? clock();
    const buckets = qualityBuckets(now.getTime(), range, step);
    const rangeStart = now.getTime() - spanMs(range, "range");
    // One read per version covers both the buckets (aligned, may start before the range) and the whole-range report.
    const from = new Date(Math.min(rangeStart, (buckets[0] as QualityBucket).start));
    // The versions that served in [from, now) and the variants (null for none) each answered as, from the store's
    // summary rather than a scan of the log.
    const active = (await store.activeVersions(from.toISOString(), now.toISOString())).filter((a) => a.model === query.model).sort((a, b) => a.version - b.version);
    const versions = query.version === undefined ? active : [active.find((a) => a.version === query.version) ?? { model: query.model, version: query.version, variants: [] }];
    const response: QualitySeriesResponse = { model: query.model, task: null, range, step, primaryMetric: null, series: [], latest: [] };
    const whole = { start: new Date(rangeStart).toISOString(), end: now.toISOString() };
    const first = (buckets[0] as QualityBucket).start;
    // The spans predictions are counted over: each bucket, then (unless the range starts on a boundary) the sliver
    // between the range's start and the buckets' (less than a step), added to or taken from their sum.
    const spans = buckets.map((b) => ({ start: new Date(b.start).toISOString(), end: new Date(b.end).toISOString() }));
    const edge = Math.sign(first - rangeStart);
    if (edge !== 0) spans.push({ start: new Date(Math.min(first, rangeStart)).toISOString(), end: new Date(Math.max(first, rangeStart)).toISOString() });
    for (const { version, variants: answeredAs } of versions) {
      const spec = await specOf(query.model, version);
      // The newest version names the task and the metric to plot first.
      response.task = spec.task;
      response.primaryMetric = primaryMetricOf(spec);
      // Only rows with an outcome are read (what the metrics need); the predictions of each span are counted in the
      // store, one indexed count each (a day of traffic would not fit in memory, and on SQLite a read of it would
      // hold the event loop for seconds; between the counts the loop is let go).
      const rows = await store.joined({ model: query.model, version, start: from.toISOString(), end: now.toISOString(), withOutcome: true });
      const variants = VARIANT_ORDER.filter((variant) => answeredAs.includes(variant));
      const count = async (variant: Variant | undefined): Promise<{ buckets: number[]; range: number }> => {
        const counts: number[] = [];
        for (const span of spans) {
          counts.push(await store.countPredictions({ model: query.model, version, ...span, ...(variant === undefined ? {} : { variant }) }));
          await new Promise((resolve) => setImmediate(resolve));
        }
        const inBuckets = counts.slice(0, buckets.length);
        return { buckets: inBuckets, range: inBuckets.reduce((a, b) => a + b, 0) + edge * (counts[buckets.length] ?? 0) };
      };
      const counts = await count(undefined);
      const inRange = rows.filter((r) => Date.parse(r.at) >= rangeStart);
      // The whole version first, then each rollout variant it answered as (as `qualityAll` orders its reports).
      for (const variant of [undefined, ...variants]) {
        const mine = (list: readonly JoinedPrediction[]): JoinedPrediction[] => (variant === undefined ? [...list] : list.filter((r) => r.variant === variant));
        // A version that answered as one variant only (or none) has the same counts for it as for the whole version.
        const mineCounts = variant === undefined || answeredAs.length === 1 ? counts : await count(variant);
        response.series.push({ version, variant: variant ?? null, points: bucketQuality(mine(rows), spec, buckets, mineCounts.buckets) });
        const part: PredictionQuery = { model: query.model, version, ...whole, ...(variant === undefined ? {} : { variant }) };
        const totals = await store.eventTotals(part);
        response.latest.push(reportOf({ model: query.model, version, window: range, now, ...(variant === undefined ? {} : { variant }) }, spec, part, mine(inRange), totals, mineCounts.range));
      }
    }
    return response;
  }

  async function evaluate(now?: Date): Promise<{ model: string; version: number; results: ThresholdResult[] }[]> {
    const at = now ?? clock();
    // Thresholds live in each version's spec: look as far back as the longest window known so far, and once more if
    // the versions found there bring a longer one.
    const spanOf = (knownSpecs: Iterable<FeedbackSpec>): number => {
      let span = Math.max(...windows.map(windowMs));
      for (const spec of knownSpecs) for (const t of spec.thresholds) span = Math.max(span, windowMs(t.window));
      return span;
    };
    const loadedSpecs = async (): Promise<FeedbackSpec[]> => (await Promise.allSettled([...specs.values()])).flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    let span = spanOf(await loadedSpecs());
    let active = await activeVersions(new Date(at.getTime() - span), at);
    const versionSpecs = new Map<string, FeedbackSpec>();
    for (let pass = 0; pass < 2; pass++) {
      for (const a of active) {
        const key = `${a.model}@${a.version}`;
        if (versionSpecs.has(key)) continue;
        try {
          versionSpecs.set(key, await specOf(a.model, a.version));
        } catch (error) {
          logger.warn({ event: "feedback_spec_failed", model: a.model, version: a.version, err: error }, `feedback: no spec for ${key}: ${(error as Error).message}`);
        }
      }
      const wider = spanOf(versionSpecs.values());
      if (wider <= span) break;
      span = wider;
      active = await activeVersions(new Date(at.getTime() - span), at);
    }

    const evaluated: VersionReports[] = [];
    const gaugeRows: { labels: { model: string; version: string; variant: string; window: string }; report: QualityReport }[] = [];
    for (const a of active) {
      const spec = versionSpecs.get(`${a.model}@${a.version}`);
      if (spec === undefined) continue;
      const byWindow = new Map<string, QualityReport>();
      // Without gauges only the thresholds' windows are needed.
      const wanted = [...new Set([...(gauges === undefined ? [] : windows), ...spec.thresholds.map((t) => t.window)])];
      for (const window of wanted) {
        const whole = await report({ model: a.model, version: a.version, window, now: at }, spec);
        byWindow.set(window, whole);
        if (!windows.includes(window)) continue;
        gaugeRows.push({ labels: { model: a.model, version: String(a.version), variant: "", window }, report: whole });
        if (gauges === undefined) continue;
        for (const variant of a.variants) {
          const part = await report({ model: a.model, version: a.version, window, now: at, variant }, spec);
          gaugeRows.push({ labels: { model: a.model, version: String(a.version), variant, window }, report: part });
        }
      }
      evaluated.push({ model: a.model, version: a.version, spec, byWindow });
    }

    const results: { model: string; version: number; results: ThresholdResult[] }[] = [];
    const fired: QualityAlert[] = [];
    const seenScopes = new Set<string>();
    for (const v of evaluated) {
      const scope = `quality:${v.model}@${v.version}`;
      const reportFor = (window: string): QualityReport => v.byWindow.get(window) as QualityReport;
      const judged = judgeThresholds(v.spec.thresholds, reportFor);
      if (v.spec.thresholds.length > 0) results.push({ model: v.model, version: v.version, results: judged });
      if (v.spec.thresholds.length === 0 && !alertScopes.has(scope)) continue;
      const processed = await alerter.process(qualityAlerts(v.model, v.version, judged, reportFor), at, { scope });
      seenScopes.add(scope);
      alertScopes.add(scope);
      fired.push(...processed.fired.filter((alert): alert is QualityAlert => alert.kind === "quality"));
    }
    // Concept drift on each version's live errors over the longest configured window (alerts of kind concept_drift,
    // heard by retraining hooks that listen for drift).
    const conceptWindow = windows.reduce((a, b) => (windowMs(b) > windowMs(a) ? b : a));
    const conceptStart = new Date(at.getTime() - windowMs(conceptWindow)).toISOString();
    for (const v of evaluated) {
      const scope = `concept:${v.model}@${v.version}`;
      try {
        const rows = await store.joined({ model: v.model, version: v.version, start: conceptStart, end: at.toISOString(), withOutcome: true });
        const drift = detectConceptDrift(rows, v.spec);
        if (drift === null && !alertScopes.has(scope)) continue;
        const window = { size: conceptWindow, start: conceptStart, end: at.toISOString() };
        await alerter.process(drift === null ? [] : [conceptDriftAlert(v.model, v.version, drift, window, at)], at, { scope });
        seenScopes.add(scope);
        alertScopes.add(scope);
      } catch (error) {
        logger.warn({ event: "feedback_concept_drift_failed", model: v.model, version: v.version, err: error }, `feedback: concept drift check of ${v.model}@${v.version} failed: ${(error as Error).message}`);
      }
    }
    // Versions that stopped serving: their conditions can no longer be observed, so their alerts clear.
    for (const scope of [...alertScopes]) {
      if (seenScopes.has(scope)) continue;
      await alerter.process([], at, { scope });
      alertScopes.delete(scope);
    }
    if (fired.length > 0) {
      for (const listener of listeners) {
        try {
          listener(fired);
        } catch (error) {
          logger.error({ event: "feedback_alert_listener_failed", err: error }, `feedback: alert listener failed: ${(error as Error).message}`);
        }
      }
    }
    if (gauges !== undefined) await refreshGauges(gauges, gaugeRows);
    return results;
  }

  async function refreshGauges(g: QualityGauges, rows: readonly { labels: { model: string; version: string; variant: string; window: string }; report: QualityReport }[]): Promise<void> {
    const stats = await store.joinStats();
    // Reset and set in one synchronous stretch, so a scrape never sees a half-filled set and stale versions vanish.
    g.quality.reset();
    g.coverage.reset();
    g.outcomes.reset();
    for (const { labels, report: r } of rows) {
      g.outcomes.set(labels, r.outcomes);
      if (r.coverage !== null) g.coverage.set(labels, r.coverage);
      for (const [metric, value] of Object.entries(r.metrics)) if (value !== null && Number.isFinite(value)) g.quality.set({ ...labels, metric }, value);
    }
    for (const [status, count] of Object.entries(stats.outcomes)) g.feedbackOutcomes.set({ status }, count);
    for (const [status, count] of Object.entries(stats.events)) g.businessEvents.set({ status }, count);
  }

  /** Runs a timer's task unless the previous run is still going; errors are logged, never thrown. */
  function every(ms: number, name: string, task: () => Promise<unknown>): void {
    let inFlight = false;
    const timer = setInterval(() => {
      if (inFlight || closed !== undefined) return;
      inFlight = true;
      const run = task()
        .catch((error: unknown) => logger.error({ event: "feedback_timer_failed", task: name, err: error }, `feedback: ${name} failed: ${(error as Error).message}`))
        .finally(() => {
          inFlight = false;
          running.delete(run);
        });
      running.add(run);
    }, ms);
    timer.unref();
    timers.push(timer);
  }

  if (options.timers ?? true) {
    every(JOIN_PENDING_INTERVAL_MS, "joinPending", () => store.joinPending(joinOptions()));
    const evaluateMs = options.evaluateMs ?? DEFAULT_EVALUATE_INTERVAL_MS;
    if (evaluateMs > 0) every(evaluateMs, "evaluate", () => evaluate());
    const retentionDays = options.retentionDays ?? 0;
    if (retentionDays > 0) every(PRUNE_INTERVAL_MS, "prune", () => store.prune(new Date(clock().getTime() - retentionDays * DAY_MS)));
  }

  return {
    store,
    quality,
    qualityAll,
    qualitySeries,
    ingestOutcomes: (items: readonly unknown[]): Promise<IngestResult> => store.ingestOutcomes(items, joinOptions()),
    ingestEvents: (items: readonly unknown[]): Promise<IngestResult> => store.ingestEvents(items, joinOptions()),
    evaluate,
    onAlert(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    close() {
      closed ??= (async () => {
        for (const timer of timers) clearInterval(timer);
        await Promise.allSettled([...running]);
      })();
      return closed;
    },
  };
}
