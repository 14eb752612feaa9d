import type { QualityReport } from "../../../feedback/index.js";
import type { QualitySeriesResponse } from "../../contract.js";
import { getJson } from "../api.js";
import { chart, color, toSeconds, type ChartData } from "../charts.js";
import { h, hashLink, replace, testName } from "../dom.js";
import { num, pct } from "../format.js";
import { note, pageTitle, section, setBody, table, type PageContext } from "../page.js";

const RANGES: [string, string][] = [
  ["1h", "5m"],
  ["6h", "15m"],
  ["1d", "1h"],
  ["7d", "6h"],
  ["30d", "1d"],
];

const RATE_METRICS = new Set(["accuracy", "precision", "recall", "f1", "roc_auc", "coverage", "error_rate"]);

function metricFormat(metric: string): (v: number) => string {
  return RATE_METRICS.has(metric) ? (v) => pct(v, 1) : (v) => num(v, 4);
}

function confusionTable(report: QualityReport): HTMLElement {
  const confusion = report.confusion;
  if (confusion === undefined) return note("No confusion matrix (regression, or no outcomes yet).");
  const max = Math.max(1, ...confusion.matrix.flat());
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "confusion", "data-testid": "confusion-matrix" },
      h("caption", null, `v${report.version}${report.variant ? ` (${report.variant})` : ""}: rows are actual classes, columns predicted ones`),
      h("thead", null, h("tr", null, h("th", { scope: "col" }, "actual \\ predicted"), confusion.labels.map((l) => h("th", { scope: "col" }, l)))),
      h(
        "tbody",
        null,
        confusion.matrix.map((row, i) =>
          h(
            "tr",
            null,
            h("th", { scope: "row" }, confusion.labels[i] ?? String(i)),
            row.map((count, j) =>
              h("td", { class: i === j ? "num diag" : "num", style: `--share:${(count / max).toFixed(3)}` }, num(count)),
            ),
          ),
        ),
      ),
    ),
  );
}

export async function qualityPage(ctx: PageContext): Promise<void> {
  const name = ctx.params[0] ?? "";
  const range = ctx.query.get("range") ?? "1d";
  const step = ctx.query.get("step") ?? RANGES.find(([r]) => r === range)?.[1] ?? "1h";
  ctx.load(async (signal) => {
    const response = await getJson<QualitySeriesResponse>(
      `/api/v1/models/${encodeURIComponent(name)}/quality/series?${new URLSearchParams({ range, step }).toString()}`,
      signal,
    );
    const reports = response.latest as QualityReport[];
    const labelOf = (s: { version: number; variant: string | null }): string => `v${s.version}${s.variant ? ` ${s.variant}` : ""}`;
    // One time axis for every series: the union of bucket starts.
    const starts = [...new Set(response.series.flatMap((s) => s.points.map((p) => p.start)))].sort();
    const xs = starts.map(toSeconds);
    const column = (pick: (p: QualitySeriesResponse["series"][number]["points"][number]) => number | null) =>
      response.series.map((s) => {
        const byStart = new Map(s.points.map((p) => [p.start, p]));
        return starts.map((t) => {
          const p = byStart.get(t);
          return p === undefined ? null : pick(p);
        });
      });
    const metricNames = [...new Set(response.series.flatMap((s) => s.points.flatMap((p) => Object.keys(p.metrics))))].sort();
    if (response.primaryMetric !== null && metricNames.includes(response.primaryMetric)) {
      metricNames.splice(metricNames.indexOf(response.primaryMetric), 1);
      metricNames.unshift(response.primaryMetric);
    }
    const seriesSpecs = response.series.map((s, i) => ({ label: labelOf(s), color: color(i) }));
    const charts = [
      ...metricNames.map(
        (metric) =>
          chart(
            {
              name: `quality-${testName(metric)}`,
              title: `${metric}${metric === response.primaryMetric ? " (primary)" : ""} per ${response.step}`,
              series: seriesSpecs,
              format: metricFormat(metric),
              ...(RATE_METRICS.has(metric) ? { yRange: [0, 1] as [number, number] } : {}),
            },
            [xs, ...column((p) => p.metrics[metric] ?? null)] as ChartData,
            ctx.signal,
          ).element,
      ),
      chart(
        { name: "coverage", title: `Label coverage (outcomes / predictions) per ${response.step}`, series: seriesSpecs, format: (v) => pct(v, 0), yRange: [0, 1] },
        [xs, ...column((p) => p.coverage)] as ChartData,
        ctx.signal,
      ).element,
    ];
    const rangePicker = h(
      "select",
      { id: "quality-range", "data-testid": "quality-range" },
      RANGES.map(([r]) => h("option", { value: r, selected: r === range }, `last ${r}`)),
    );
    rangePicker.addEventListener("change", () => {
      location.hash = `${hashLink("quality", name)}?range=${encodeURIComponent(rangePicker.value)}`;
    });
    const withConfusion = reports.filter((r) => r.confusion !== undefined);
    const confusionBox = h("div");
    const confusionPicker = h(
      "select",
      { id: "confusion-version", "aria-label": "Version" },
      withConfusion.map((r, i) => h("option", { value: i }, `v${r.version}${r.variant ? ` (${r.variant})` : ""}`)),
    );
    const showConfusion = (): void => {
      const report = withConfusion[Number(confusionPicker.value)] ?? withConfusion[0];
      replace(confusionBox, report === undefined ? note("No confusion matrix yet (regression, or no outcomes in the range).") : confusionTable(report));
    };
    confusionPicker.addEventListener("change", showConfusion);
    showConfusion();
    const eventRows = reports.flatMap((r) => Object.entries(r.events).map(([event, c]) => ({ r, event, c })));
    const allMetrics = [...new Set(reports.flatMap((r) => Object.keys(r.metrics)))].sort();
    setBody(
      ctx,
      pageTitle(h("a", { href: "#/models" }, "Models"), " / ", h("a", { href: hashLink("models", name) }, name), " / live quality"),
      h("div", { class: "toolbar" }, h("label", { for: "quality-range" }, "Range "), rangePicker, h("span", { class: "muted" }, ` buckets of ${response.step}; task ${response.task ?? "unknown"}`)),
      response.series.length === 0 ? note("No predictions logged in this range: live quality needs the prediction log and outcomes (POST /v1/feedback).") : null,
      section("Over time", h("div", { class: "charts" }, charts)),
      section(
        `Over the last ${response.range}`,
        table(
          [
            { label: "Version", cell: (r) => h("a", { href: hashLink("models", name, "versions", r.version) }, `v${r.version}`) },
            { label: "Variant", cell: (r) => r.variant ?? "" },
            { label: "Predictions", cell: (r) => num(r.predictions), numeric: true },
            { label: "Outcomes", cell: (r) => num(r.outcomes), numeric: true },
            { label: "Coverage", cell: (r) => pct(r.coverage, 1), numeric: true },
            ...allMetrics.map((m) => ({ label: m, cell: (r: QualityReport) => { const v = r.metrics[m]; return v === null || v === undefined ? "–" : metricFormat(m)(v); }, numeric: true })),
          ],
          reports,
          { empty: "No quality report in this range." },
        ),
      ),
      section("Confusion matrix", withConfusion.length > 1 ? h("div", { class: "toolbar" }, h("label", { for: "confusion-version" }, "Version "), confusionPicker) : null, confusionBox),
      section(
        "Business events",
        table(
          [
            { label: "Version", cell: (x) => `v${x.r.version}${x.r.variant ? ` (${x.r.variant})` : ""}` },
            { label: "Event", cell: (x) => x.event },
            { label: "Count", cell: (x) => num(x.c.count), numeric: true },
            { label: "Sum", cell: (x) => num(x.c.sum, 2), numeric: true },
            { label: "Per prediction", cell: (x) => pct(x.c.rate, 2), numeric: true },
          ],
          eventRows,
          { empty: "No business events in this range (POST /v1/events)." },
        ),
      ),
    );
    ctx.ready();
  });
}
