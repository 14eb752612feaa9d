import type { TrafficPoint, TrafficResponse } from "../../contract.js";
import { getJson, server } from "../api.js";
import { chart, color, toSeconds, type Chart, type ChartData, type SeriesSpec } from "../charts.js";
import { h, hashLink, replace } from "../dom.js";
import { duration, ms, num, pct, rate, timeEl } from "../format.js";
import { badge, note, pageTitle, section, table, type PageContext } from "../page.js";

/** At most this many samples per version are kept in the page (the server keeps its own retention). */
const MAX_POINTS = 1440;
/** The charts show this much time, ending at the newest sample (less when the server keeps less). */
const WINDOW_SECONDS = 300;

interface Line {
  key: string;
  model: string;
  version: string;
  points: Map<number, TrafficPoint>;
}

type Metric = (p: TrafficPoint) => number | null;

export async function trafficPage(ctx: PageContext): Promise<void> {
  const model = ctx.query.get("model");
  const lines = new Map<string, Line>();
  let since: number | undefined;
  let retentionMs = Number.POSITIVE_INFINITY;
  const windowSeconds = (): number => Math.min(WINDOW_SECONDS, retentionMs / 1000);
  let chartKeys = "";
  let charts: { chart: Chart; data: (xs: number[]) => ChartData }[] = [];
  let chartScope: AbortController | null = null;

  const picker = h("select", { id: "traffic-model", "aria-label": "Model" }, h("option", { value: "" }, "all models"));
  if (model !== null) picker.append(h("option", { value: model, selected: true }, model));
  picker.addEventListener("change", () => {
    location.hash = picker.value === "" ? "#/traffic" : `#/traffic?model=${encodeURIComponent(picker.value)}`;
  });
  const status = h("p", { class: "muted", "aria-live": "off" });
  const chartsBox = h("div", { class: "charts" });
  const tableBox = h("div");
  ctx.body.append(
    pageTitle("Live traffic", model === null ? "" : h("span", null, " · ", h("a", { href: hashLink("models", model) }, model))),
    h("div", { class: "toolbar" }, h("label", { for: "traffic-model" }, "Model "), picker, status),
    section("Charts", chartsBox),
    section("Per version (mean over the last minute)", tableBox),
  );

  const render = (response: TrafficResponse): void => {
    const ordered = [...lines.values()].sort((a, b) => a.key.localeCompare(b.key));
    const xsSet = new Set<number>();
    for (const line of ordered) for (const t of line.points.keys()) xsSet.add(t);
    const times = [...xsSet].sort((a, b) => a - b);
    const xs = times.map(toSeconds);
    const column = (line: Line, metric: Metric): (number | null)[] =>
      times.map((t) => {
        const p = line.points.get(t);
        return p === undefined ? null : metric(p);
      });
    const keys = ordered.map((l) => l.key).join("\n");
    if (keys !== chartKeys || charts.length === 0) {
      chartKeys = keys;
      chartScope?.abort();
      const scope = new AbortController();
      ctx.signal.addEventListener("abort", () => scope.abort(), { once: true });
      chartScope = scope;
      const perLine = (label: string): SeriesSpec[] => ordered.map((l, i) => ({ label: `${l.key}${label}`, color: color(i) }));
      const simple = (metric: Metric) => (x: number[]): ChartData => [x, ...ordered.map((l) => column(l, metric))];
      const specs: { name: string; title: string; series: SeriesSpec[]; format: (v: number) => string; data: (x: number[]) => ChartData; yRange?: [number, number] }[] = [
        { name: "rps", title: "Requests per second", series: perLine(""), format: (v) => num(v, 2), data: simple((p) => p.requestsPerSecond) },
        {
          name: "latency",
          title: "Latency p50 (dashed) and p99",
          series: ordered.flatMap((l, i) => [
            { label: `${l.key} p50`, color: color(i), dash: [4, 4] },
            { label: `${l.key} p99`, color: color(i) },
          ]),
          format: ms,
          data: (x) => [x, ...ordered.flatMap((l) => [column(l, (p) => p.p50Ms), column(l, (p) => p.p99Ms)])],
        },
        { name: "errors", title: "Errors per second", series: perLine(""), format: (v) => num(v, 2), data: simple((p) => p.errorsPerSecond) },
        { name: "batch-size", title: "Mean batch size (rows per run)", series: perLine(""), format: (v) => num(v, 1), data: simple((p) => p.meanBatchSize) },
        { name: "cache-hit", title: "Cache hit rate", series: perLine(""), format: (v) => pct(v, 0), data: simple((p) => p.cacheHitRate), yRange: [0, 1] },
      ];
      charts = specs.map((s) => ({
        chart: chart(
          { name: s.name, title: s.title, series: s.series, format: s.format, trailingSeconds: windowSeconds, ...(s.yRange ? { yRange: s.yRange } : {}) },
          s.data(xs),
          scope.signal,
        ),
        data: s.data,
      }));
      replace(chartsBox, charts.map((c) => c.chart.element));
    } else {
      for (const c of charts) c.chart.setData(c.data(xs));
    }
    // Rates averaged over the last minute of samples (single samples jump between bursts); quantiles as the mean
    // of the samples that had requests.
    const from = response.now - 60_000;
    const recent = ordered.map((l) => {
      const points = [...l.points.values()].filter((p) => p.t > from);
      const mean = (metric: Metric): number | null => {
        const values = points.map(metric).filter((v): v is number => v !== null);
        return values.length === 0 ? null : values.reduce((a, b) => a + b, 0) / values.length;
      };
      const last = points.reduce<number | null>((a, p) => (a === null || p.t > a ? p.t : a), null);
      return {
        line: l,
        last,
        rps: mean((p) => p.requestsPerSecond),
        rows: mean((p) => p.rowsPerSecond),
        errors: mean((p) => p.errorsPerSecond),
        p50: mean((p) => p.p50Ms),
        p99: mean((p) => p.p99Ms),
        batch: mean((p) => p.meanBatchSize),
        cache: mean((p) => p.cacheHitRate),
      };
    });
    replace(
      tableBox,
      table(
        [
          { label: "Model", cell: (r) => h("a", { href: hashLink("models", r.line.model) }, r.line.model) },
          { label: "Version", cell: (r) => h("a", { href: hashLink("models", r.line.model, "versions", r.line.version) }, `v${r.line.version}`) },
          { label: "Requests/s", cell: (r) => rate(r.rps), numeric: true },
          { label: "Rows/s", cell: (r) => rate(r.rows, "rows/s"), numeric: true },
          { label: "Errors/s", cell: (r) => (r.errors !== null && r.errors > 0 ? badge(rate(r.errors, "err/s"), "bad") : rate(r.errors, "err/s")), numeric: true },
          { label: "p50", cell: (r) => ms(r.p50), numeric: true },
          { label: "p99", cell: (r) => ms(r.p99), numeric: true },
          { label: "Batch size", cell: (r) => num(r.batch, 1), numeric: true },
          { label: "Cache hits", cell: (r) => pct(r.cache, 0), numeric: true },
          { label: "Newest sample", cell: (r) => timeEl(r.last) },
        ],
        recent,
        { empty: "No traffic yet: send requests to a model and its samples appear here." },
      ),
    );
    replace(
      status,
      ` Sample every ${response.intervalSeconds} s, kept ${Math.round(response.retentionSeconds / 60)} min on the server; charts show the last ${windowSeconds() % 60 === 0 ? `${windowSeconds() / 60} min` : duration(windowSeconds())}; `,
      lines.size === 0 ? "no traffic yet." : `${lines.size} version${lines.size === 1 ? "" : "s"}, updated `,
      lines.size === 0 ? "" : timeEl(response.now),
    );
  };

  const intervalSeconds = server()?.trafficIntervalSeconds ?? 5;
  ctx.poll(async (signal) => {
    const params = new URLSearchParams();
    if (since !== undefined) params.set("since", String(since));
    if (model !== null) params.set("model", model);
    const query = params.toString();
    const response = await getJson<TrafficResponse>(`/api/v1/traffic${query === "" ? "" : `?${query}`}`, signal);
    retentionMs = response.retentionSeconds * 1000;
    since = response.now;
    for (const s of response.series) {
      const key = `${s.model}@${s.version}`;
      let line = lines.get(key);
      if (line === undefined) {
        line = { key, model: s.model, version: s.version, points: new Map() };
        lines.set(key, line);
        if (model === null && ![...picker.options].some((o) => o.value === s.model)) picker.append(h("option", { value: s.model }, s.model));
      }
      for (const p of s.points) line.points.set(p.t, p);
    }
    const oldest = response.now - retentionMs;
    for (const line of lines.values()) {
      for (const t of line.points.keys()) if (t < oldest) line.points.delete(t);
      while (line.points.size > MAX_POINTS) {
        const first = line.points.keys().next();
        if (first.done === true) break;
        line.points.delete(first.value);
      }
    }
    render(response);
    ctx.ready();
  }, Math.max(1, intervalSeconds) * 1000);
  if (lines.size === 0) ctx.body.append(note("Charts show the last minutes up to the newest sample and fill from the right as samples arrive; drag across a chart to zoom, double-click to reset."));
}
