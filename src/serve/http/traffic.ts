/**
 * Live traffic for the dashboard: the server's request metrics sampled every few seconds and kept as rates per model
 * version for a while (`GET /api/v1/traffic`), plus totals over a trailing span for the model lists.
 *
 * Each sample reads the cumulative series the `/metrics` registry holds (request and error counts, rows, the
 * latency histogram, batch sizes, cache hits and misses); a point is the difference between two samples over the
 * time between them. Only the few series needed are read (`getSingleMetric(...).get()`), never the whole exposition.
 */
import type { FastifyInstance, FastifyPluginAsync } from "fastify";
import { Registry } from "prom-client";
import type { MetricValue } from "prom-client";
import { MlshipError } from "../../core/index.js";
import type { TrafficPoint, TrafficResponse, TrafficSeries, TrafficTotals } from "../../ui/contract.js";
import { requestMetricsOf } from "./server.js";

export const DEFAULT_TRAFFIC_INTERVAL_SECONDS = 2;
export const DEFAULT_TRAFFIC_RETENTION_SECONDS = 1800;

export interface TrafficRecorderOptions {
  /** Seconds between samples. Default 2. */
  intervalSeconds?: number;
  /** How long points are kept, in seconds. Default 1800 (30 minutes). */
  retentionSeconds?: number;
}

type Field = "requests" | "errors" | "rows" | "latency" | "batchSum" | "batchCount" | "cacheHits" | "cacheMisses";

/** One cumulative series of the registry at one sample (one label set of a counter, one bucket of a histogram). */
interface RawSeries {
  /** Series that reset together: one counter series, or every bucket, sum and count of one histogram label set. */
  group: string;
  model: string;
  version: string;
  field: Field;
  /** Latency buckets: the upper bound in seconds (`Infinity` for +Inf). */
  bound: number;
  value: number;
}

/** The increases of one model version over an interval, every protocol together. */
interface Increases {
  model: string;
  version: string;
  requests: number;
  errors: number;
  rows: number;
  /** Upper bound -> cumulative count of the requests answered in the interval. */
  latency: Map<number, number>;
  batchSum: number;
  batchCount: number;
  cacheHits: number;
  cacheMisses: number;
}

/** One interval of one version: the deltas themselves, so totals over a window can add them up exactly. */
interface StoredPoint {
  t: number;
  seconds: number;
  requests: number;
  errors: number;
  rows: number;
  /** Cumulative counts per upper bound of the requests answered in the interval (sorted by bound). */
  latency: { bounds: number[]; counts: number[] };
  batchSum: number;
  batchCount: number;
  cacheHits: number;
  cacheMisses: number;
}

interface SeriesState {
  model: string;
  version: string;
  points: StoredPoint[];
}

const keyOf = (model: string, version: string): string => `${model}\u0000${version}`;

function boundOf(le: unknown): number {
  if (le === "+Inf") return Number.POSITIVE_INFINITY;
  return typeof le === "number" ? le : Number(le);
}

/**
 * A quantile of a histogram given as cumulative counts per upper bound (ascending, the last one usually +Inf), by
 * linear interpolation inside the bucket the rank falls in, as Prometheus' `histogram_quantile` does: the first
 * bucket starts at 0, and a rank in the +Inf bucket answers the highest finite bound. Null without observations.
 */
export function histogramQuantile(q: number, bounds: readonly number[], cumulative: readonly number[]): number | null {
  const total = cumulative[cumulative.length - 1] ?? 0;
  if (!(total > 0)) return null;
  const rank = q * total;
  const i = cumulative.findIndex((c) => c >= rank);
  if (i < 0) return null;
  const upper = bounds[i] as number;
  if (upper === Number.POSITIVE_INFINITY) return i === 0 ? null : (bounds[i - 1] as number);
  const lower = i === 0 ? 0 : (bounds[i - 1] as number);
  if (i === 0 && upper <= 0) return upper;
  const below = i === 0 ? 0 : (cumulative[i - 1] as number);
  const inBucket = (cumulative[i] as number) - below;
  return inBucket > 0 ? lower + (upper - lower) * ((rank - below) / inBucket) : upper;
}

/** Sorted bounds and cumulative counts of a bound -> count map. */
function sortedHistogram(map: Map<number, number>): { bounds: number[]; counts: number[] } {
  const bounds = [...map.keys()].sort((a, b) => a - b);
  return { bounds, counts: bounds.map((b) => map.get(b) as number) };
}

const toMs = (seconds: number | null): number | null => (seconds === null ? null : seconds * 1000);

/**
 * Samples a server's request metrics on a timer (unref'ed: it never keeps the process alive) and keeps a bounded
 * ring of rate points per model version. `sampleNow` takes a sample on demand (tests, or a caller with its own
 * clock).
 */
export class TrafficRecorder {
  readonly intervalSeconds: number;
  readonly retentionSeconds: number;
  readonly #register: Registry;
  readonly #series = new Map<string, SeriesState>();
  #previous: Map<string, RawSeries> | undefined;
  /** Model versions present in the newest sample. */
  #present = new Set<string>();
  #previousAt: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  #sampling: Promise<void> | undefined;

  constructor(register: Registry, options: TrafficRecorderOptions = {}) {
    this.#register = register;
    this.intervalSeconds = options.intervalSeconds ?? DEFAULT_TRAFFIC_INTERVAL_SECONDS;
    this.retentionSeconds = options.retentionSeconds ?? DEFAULT_TRAFFIC_RETENTION_SECONDS;
    if (!(this.intervalSeconds > 0)) throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `traffic intervalSeconds must be > 0, got ${this.intervalSeconds}`, { field: "intervalSeconds" });
    if (!(this.retentionSeconds > 0)) throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `traffic retentionSeconds must be > 0, got ${this.retentionSeconds}`, { field: "retentionSeconds" });
  }

  /** Epoch ms of the newest sample (the first one included, which makes no point); undefined before any. */
  get lastSampleAt(): number | undefined {
    return this.#previousAt;
  }

  start(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => {
      // A slow sample (a busy event loop) is not stacked behind another one.
      if (this.#sampling !== undefined) return;
      this.#sampling = this.sampleNow().finally(() => (this.#sampling = undefined));
    }, this.intervalSeconds * 1000);
    this.#timer.unref();
    // The baseline, so the first point comes one interval after start.
    if (this.#previousAt === undefined) this.#sampling = this.sampleNow().finally(() => (this.#sampling = undefined));
  }

  async stop(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#sampling?.catch(() => undefined);
  }

  /** Takes a sample now (`at`: its time, epoch ms). The first sample is the baseline and makes no point. */
  async sampleNow(at: number = Date.now()): Promise<void> {
    const current = await this.#read();
    const previous = this.#previous;
    const previousAt = this.#previousAt;
    this.#previous = current;
    this.#previousAt = at;
    this.#present = new Set([...current.values()].map((r) => keyOf(r.model, r.version)));
    if (previous === undefined || previousAt === undefined || at <= previousAt) return;
    const seconds = (at - previousAt) / 1000;
    for (const increases of this.#increases(current, previous).values()) {
      const key = keyOf(increases.model, increases.version);
      let state = this.#series.get(key);
      if (state === undefined) this.#series.set(key, (state = { model: increases.model, version: increases.version, points: [] }));
      const { requests, errors, rows, batchSum, batchCount, cacheHits, cacheMisses } = increases;
      state.points.push({ t: at, seconds, requests, errors, rows, latency: sortedHistogram(increases.latency), batchSum, batchCount, cacheHits, cacheMisses });
    }
    this.#prune(at);
  }

  /** Rate points newer than `since` (epoch ms), oldest first, per model version; `model` keeps one model's. */
  traffic(query: { since?: number; model?: string } = {}): TrafficResponse {
    const series: TrafficSeries[] = [];
    for (const state of this.#series.values()) {
      if (query.model !== undefined && state.model !== query.model) continue;
      const points = state.points.filter((p) => query.since === undefined || p.t > query.since).map((p) => this.#view(p));
      if (points.length > 0) series.push({ model: state.model, version: state.version, points });
    }
    series.sort((a, b) => a.model.localeCompare(b.model) || Number(a.version) - Number(b.version) || a.version.localeCompare(b.version));
    return { intervalSeconds: this.intervalSeconds, now: this.#previousAt ?? 0, retentionSeconds: this.retentionSeconds, series };
  }

  /**
   * Request figures of a model version (`version` undefined: all versions of the model) over the points of the last
   * `windowSeconds` before the newest sample. Rates are over the time those points cover (less than the window
   * while the server is young); quantiles come from the window's summed histogram, not from per-point quantiles.
   */
  totals(model: string, version: number | string | undefined, windowSeconds: number): TrafficTotals {
    const from = (this.#previousAt ?? 0) - windowSeconds * 1000;
    let requests = 0;
    let errors = 0;
    let seconds = 0;
    const latency = new Map<number, number>();
    const covered = new Set<number>();
    for (const state of this.#series.values()) {
      if (state.model !== model || (version !== undefined && state.version !== String(version))) continue;
      for (const p of state.points) {
        if (p.t <= from) continue;
        requests += p.requests;
        errors += p.errors;
        // Versions are sampled together: an interval counts once however many versions it holds.
        if (!covered.has(p.t)) {
          covered.add(p.t);
          seconds += p.seconds;
        }
        p.latency.bounds.forEach((b, i) => latency.set(b, (latency.get(b) ?? 0) + (p.latency.counts[i] as number)));
      }
    }
    const { bounds, counts } = sortedHistogram(latency);
    return {
      windowSeconds,
      requests,
      requestsPerSecond: seconds > 0 ? requests / seconds : 0,
      errors,
      errorRate: requests > 0 ? errors / requests : 0,
      p50Ms: toMs(histogramQuantile(0.5, bounds, counts)),
      p99Ms: toMs(histogramQuantile(0.99, bounds, counts)),
    };
  }

  /**
   * Per model version, how much each series grew since the previous sample. A series that went down was reset
   * (its process restarted, its metric was reset) and counts from zero, as Prometheus' `rate()` does; a histogram
   * is reset as a whole, so its buckets, sum and count stay consistent with each other.
   */
  #increases(current: Map<string, RawSeries>, previous: Map<string, RawSeries>): Map<string, Increases> {
    const resetGroups = new Set<string>();
    for (const [key, now] of current) {
      const before = previous.get(key);
      if (before !== undefined && now.value < before.value) resetGroups.add(now.group);
    }
    const out = new Map<string, Increases>();
    for (const [key, now] of current) {
      const before = resetGroups.has(now.group) ? undefined : previous.get(key);
      const increase = now.value - (before?.value ?? 0);
      const versionKey = keyOf(now.model, now.version);
      let v = out.get(versionKey);
      if (v === undefined) {
        v = { model: now.model, version: now.version, requests: 0, errors: 0, rows: 0, latency: new Map(), batchSum: 0, batchCount: 0, cacheHits: 0, cacheMisses: 0 };
        out.set(versionKey, v);
      }
      // Protocols are separate series of one version: their figures add up.
      if (now.field === "latency") v.latency.set(now.bound, (v.latency.get(now.bound) ?? 0) + increase);
      else v[now.field] += increase;
    }
    return out;
  }

  #view(p: StoredPoint): TrafficPoint {
    const lookups = p.cacheHits + p.cacheMisses;
    return {
      t: p.t,
      requestsPerSecond: p.requests / p.seconds,
      rowsPerSecond: p.rows / p.seconds,
      errorsPerSecond: p.errors / p.seconds,
      p50Ms: toMs(histogramQuantile(0.5, p.latency.bounds, p.latency.counts)),
      p99Ms: toMs(histogramQuantile(0.99, p.latency.bounds, p.latency.counts)),
      meanBatchSize: p.batchCount > 0 ? p.batchSum / p.batchCount : null,
      cacheHitRate: lookups > 0 ? p.cacheHits / lookups : null,
    };
  }

  #prune(now: number): void {
    const oldest = now - this.retentionSeconds * 1000;
    for (const [key, state] of this.#series) {
      let drop = 0;
      while (drop < state.points.length && (state.points[drop] as StoredPoint).t <= oldest) drop++;
      if (drop > 0) state.points.splice(0, drop);
      // A version gone from the metrics (unloaded, counters removed) leaves once its last point is too old.
      if (state.points.length === 0 && !this.#present.has(key)) this.#series.delete(key);
    }
  }

  async #values(name: string): Promise<MetricValue<string>[]> {
    const metric = this.#register.getSingleMetric(name);
    if (metric === undefined) return [];
    return (await metric.get()).values;
  }

  /** Every cumulative series the traffic figures are made of, by a key unique to the series. */
  async #read(): Promise<Map<string, RawSeries>> {
    const [requests, rows, duration, batch, hits, misses] = await Promise.all(
      ["mlship_requests_total", "mlship_rows_total", "mlship_request_duration_seconds", "mlship_batch_size", "mlship_cache_hits_total", "mlship_cache_misses_total"].map((n) => this.#values(n)),
    );
    const out = new Map<string, RawSeries>();
    const add = (metric: string, value: MetricValue<string>, field: Field, bound = 0): void => {
      const { le, ...labels } = value.labels;
      const model = labels.model === undefined ? "" : String(labels.model);
      // Requests that failed before a model was resolved (unknown model, bad reference) belong to no version.
      if (model === "") return;
      const version = labels.version === undefined ? "" : String(labels.version);
      const group = `${metric}${JSON.stringify(labels)}`;
      out.set(`${group}\u0000${field}\u0000${le ?? ""}`, { group, model, version, field, bound, value: value.value });
    };
    for (const v of requests ?? []) {
      add("requests", v, "requests");
      if (Number(v.labels.status) >= 400) add("requests", v, "errors");
    }
    for (const v of rows ?? []) add("rows", v, "rows");
    for (const v of duration ?? []) {
      if ((v as { metricName?: string }).metricName === "mlship_request_duration_seconds_bucket") add("duration", v, "latency", boundOf(v.labels.le));
    }
    for (const v of batch ?? []) {
      const name = (v as { metricName?: string }).metricName;
      if (name === "mlship_batch_size_sum") add("batch", v, "batchSum");
      else if (name === "mlship_batch_size_count") add("batch", v, "batchCount");
    }
    for (const v of hits ?? []) add("hits", v, "cacheHits");
    for (const v of misses ?? []) add("misses", v, "cacheMisses");
    return out;
  }
}

/**
 * A started recorder of `server`'s request metrics, stopped when the server closes. A server built without metrics
 * gets a recorder of an empty registry (no series, zero totals), so callers need no special case. Call before the
 * server is ready (hooks cannot be added after).
 */
export function recordTraffic(server: FastifyInstance, options: TrafficRecorderOptions = {}): TrafficRecorder {
  const register = requestMetricsOf(server)?.register ?? new Registry();
  const recorder = new TrafficRecorder(register, options);
  server.addHook("onClose", async () => recorder.stop());
  recorder.start();
  return recorder;
}

export interface TrafficRoutesOptions {
  traffic: TrafficRecorder;
}

/** `GET /api/v1/traffic?since=<epoch ms>&model=<name>`: the recorder's points (both parameters optional). */
export const trafficRoutes: FastifyPluginAsync<TrafficRoutesOptions> = async (app, options) => {
  app.get<{ Querystring: { since?: string; model?: string } }>("/api/v1/traffic", async (request): Promise<TrafficResponse> => {
    const { since: sinceText, model } = request.query;
    let since: number | undefined;
    if (sinceText !== undefined && sinceText !== "") {
      since = Number(sinceText);
      if (!Number.isFinite(since)) {
        throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `since must be a time in epoch milliseconds (e.g. 1764547200000), got ${JSON.stringify(sinceText)}`, { field: "since" });
      }
    }
    return options.traffic.traffic({ ...(since === undefined ? {} : { since }), ...(model === undefined || model === "" ? {} : { model }) });
  });
};

Object.defineProperty(trafficRoutes, Symbol.for("skip-override"), { value: true });
