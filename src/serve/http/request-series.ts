import { Counter, Histogram } from "prom-client";
import type { Registry } from "prom-client";

/** One finished inference request, as the request metrics count it. */
export interface RequestRecord {
  model: string;
  version: string;
  protocol: string;
  status: number;
  seconds: number;
  /** mlship error code of a failed request. */
  errorCode: string | undefined;
  rows: number;
}

interface Series {
  model: string;
  version: string;
  protocol: string;
  byStatus: Map<number, number>;
  errors: Map<string, number>;
  rows: number;
  /** Observations per latency bucket (not cumulative); the last slot is +Inf. */
  buckets: number[];
  sum: number;
  count: number;
}

type Labels = Record<string, string>;
interface Sample {
  labels: Labels;
  value: number;
  metricName?: string;
}

/** A version's request figures since the server started, all protocols together. */
export interface RequestSnapshot {
  requests: number;
  byStatus: Record<string, number>;
  errors: Record<string, number>;
  rows: number;
  latency: { count: number; sumSeconds: number; p50: number | null; p95: number | null; p99: number | null };
}

/** A quantile from bucket counts, by linear interpolation inside the bucket (Prometheus' histogram_quantile). */
function bucketQuantile(bounds: readonly number[], counts: readonly number[], q: number): number | null {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    const n = counts[i] as number;
    if (seen + n >= rank && n > 0) {
      // The +Inf bucket has no upper bound: report its lower one.
      if (i >= bounds.length) return bounds[bounds.length - 1] ?? null;
      const lower = i === 0 ? 0 : (bounds[i - 1] as number);
      return lower + ((bounds[i] as number) - lower) * ((rank - seen) / n);
    }
    seen += n;
  }
  return bounds[bounds.length - 1] ?? null;
}

/**
 * A histogram whose samples come from `RequestSeries` at scrape time. prom-client validates and hashes the label
 * object on every observation, which costs more than the rest of a cached answer; here a request adds to plain
 * numbers and the exposition is built when scraped.
 */
class AccumulatedHistogram extends Histogram<string> {
  private readonly metricName: string;
  private readonly metricHelp: string;

  constructor(
    private readonly samples: () => Sample[],
    config: { name: string; help: string; labelNames: string[]; buckets: number[]; registers: Registry[] },
  ) {
    super(config);
    this.metricName = config.name;
    this.metricHelp = config.help;
  }

  // Both are prom-client's exposition hooks: the registry calls getForPromString when it exists, else get().
  override async get(): ReturnType<Histogram<string>["get"]> {
    const values = this.samples();
    return { name: this.metricName, help: this.metricHelp, type: "histogram", aggregator: "sum", values } as unknown as Awaited<ReturnType<Histogram<string>["get"]>>;
  }

  async getForPromString(): ReturnType<Histogram<string>["get"]> {
    return this.get();
  }
}

/** Appends one label set's bucket, sum and count samples, as prom-client exposes a histogram. */
function pushHistogramSamples(out: Sample[], name: string, bounds: readonly number[], labels: Labels, buckets: readonly number[], sum: number, count: number): void {
  let cumulative = 0;
  bounds.forEach((bound, i) => {
    cumulative += buckets[i] as number;
    out.push({ labels: { le: String(bound), ...labels }, value: cumulative, metricName: `${name}_bucket` });
  });
  out.push({ labels: { le: "+Inf", ...labels }, value: count, metricName: `${name}_bucket` });
  out.push({ labels, value: sum, metricName: `${name}_sum` });
  out.push({ labels, value: count, metricName: `${name}_count` });
}

/** Index of the bucket a value falls in (the first bound >= value; bounds.length is +Inf). */
function bucketOf(bounds: readonly number[], value: number): number {
  let i = 0;
  while (i < bounds.length && value > (bounds[i] as number)) i++;
  return i;
}

/** One label set of a `PlainHistogram`. */
export interface PlainHistogramChild {
  observe(value: number): void;
}

/**
 * A histogram kept as plain numbers per label set and exposed through prom-client at scrape time, for series
 * observed on the hot path (see `AccumulatedHistogram`). `child(labels)` is cheap to call again: one map lookup.
 */
export class PlainHistogram {
  private readonly sets = new Map<string, { labels: Labels; buckets: number[]; sum: number; count: number; child: PlainHistogramChild }>();
  private readonly bounds: readonly number[];
  private readonly labelNames: readonly string[];

  constructor(register: Registry, config: { name: string; help: string; labelNames: string[]; buckets: number[] }) {
    this.bounds = [...config.buckets];
    this.labelNames = [...config.labelNames];
    const name = config.name;
    new AccumulatedHistogram(
      () => {
        const out: Sample[] = [];
        for (const s of this.sets.values()) pushHistogramSamples(out, name, this.bounds, s.labels, s.buckets, s.sum, s.count);
        return out;
      },
      { ...config, buckets: [...config.buckets], registers: [register] },
    );
  }

  child(labels: Labels): PlainHistogramChild {
    const key = this.labelNames.map((n) => labels[n] ?? "").join("\u0000");
    const known = this.sets.get(key);
    if (known !== undefined) return known.child;
    const bounds = this.bounds;
    const buckets = new Array<number>(bounds.length + 1).fill(0);
    const set = {
      labels: Object.fromEntries(this.labelNames.map((n) => [n, labels[n] ?? ""])),
      buckets,
      sum: 0,
      count: 0,
      child: {
        observe: (value: number) => {
          const i = bucketOf(bounds, value);
          buckets[i] = (buckets[i] as number) + 1;
          set.sum += value;
          set.count += 1;
        },
      },
    };
    this.sets.set(key, set);
    return set.child;
  }
}

/**
 * Request counters and the latency histogram of one server, kept as plain numbers per (model, version, protocol)
 * and exposed through prom-client: `mlship_requests_total`, `mlship_request_errors_total`, `mlship_rows_total`
 * and `mlship_request_duration_seconds`.
 */
export class RequestSeries {
  private readonly series = new Map<string, Series>();

  constructor(
    register: Registry,
    private readonly bounds: readonly number[],
  ) {
    const series = (): Series[] => [...this.series.values()];
    new Counter({
      name: "mlship_requests_total",
      help: "Inference requests by model, version, protocol and HTTP status.",
      labelNames: ["model", "version", "protocol", "status"] as const,
      registers: [register],
      collect() {
        this.reset();
        for (const s of series()) for (const [status, n] of s.byStatus) this.inc({ model: s.model, version: s.version, protocol: s.protocol, status: String(status) }, n);
      },
    });
    new Counter({
      name: "mlship_request_errors_total",
      help: "Inference requests that failed, by model, version and mlship error code.",
      labelNames: ["model", "version", "code"] as const,
      registers: [register],
      collect() {
        this.reset();
        for (const s of series()) for (const [code, n] of s.errors) this.inc({ model: s.model, version: s.version, code }, n);
      },
    });
    new Counter({
      name: "mlship_rows_total",
      help: "Rows (batch items) scored, by model and version.",
      labelNames: ["model", "version"] as const,
      registers: [register],
      collect() {
        this.reset();
        // Rows are per model and version: the protocols' series add up.
        for (const s of series()) if (s.rows > 0) this.inc({ model: s.model, version: s.version }, s.rows);
      },
    });
    const name = "mlship_request_duration_seconds";
    new AccumulatedHistogram(() => this.durationSamples(name), {
      name,
      help: "Inference request latency (receive to response sent) in seconds.",
      labelNames: ["model", "version", "protocol"],
      buckets: [...bounds],
      registers: [register],
    });
  }

  record(r: RequestRecord): void {
    const key = `${r.model}\u0000${r.version}\u0000${r.protocol}`;
    let s = this.series.get(key);
    if (s === undefined) {
      s = { model: r.model, version: r.version, protocol: r.protocol, byStatus: new Map(), errors: new Map(), rows: 0, buckets: new Array<number>(this.bounds.length + 1).fill(0), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    s.byStatus.set(r.status, (s.byStatus.get(r.status) ?? 0) + 1);
    if (r.status >= 400) {
      const code = r.errorCode ?? `HTTP_${r.status}`;
      s.errors.set(code, (s.errors.get(code) ?? 0) + 1);
    } else {
      s.rows += r.rows;
    }
    const i = bucketOf(this.bounds, r.seconds);
    s.buckets[i] = (s.buckets[i] as number) + 1;
    s.sum += r.seconds;
    s.count += 1;
  }

  /** A version's figures, summed over protocols; undefined before its first request. */
  snapshot(model: string, version: string): RequestSnapshot | undefined {
    const mine = [...this.series.values()].filter((s) => s.model === model && s.version === version);
    if (mine.length === 0) return undefined;
    const byStatus: Record<string, number> = {};
    const errors: Record<string, number> = {};
    const buckets = new Array<number>(this.bounds.length + 1).fill(0);
    let requests = 0;
    let rows = 0;
    let sum = 0;
    for (const s of mine) {
      for (const [status, n] of s.byStatus) {
        byStatus[String(status)] = (byStatus[String(status)] ?? 0) + n;
        requests += n;
      }
      for (const [code, n] of s.errors) errors[code] = (errors[code] ?? 0) + n;
      rows += s.rows;
      sum += s.sum;
      s.buckets.forEach((n, i) => (buckets[i] = (buckets[i] as number) + n));
    }
    const count = buckets.reduce((a, b) => a + b, 0);
    return {
      requests,
      byStatus,
      errors,
      rows,
      latency: { count, sumSeconds: sum, p50: bucketQuantile(this.bounds, buckets, 0.5), p95: bucketQuantile(this.bounds, buckets, 0.95), p99: bucketQuantile(this.bounds, buckets, 0.99) },
    };
  }

  private durationSamples(name: string): Sample[] {
    const out: Sample[] = [];
    for (const s of this.series.values()) pushHistogramSamples(out, name, this.bounds, { model: s.model, version: s.version, protocol: s.protocol }, s.buckets, s.sum, s.count);
    return out;
  }
}
