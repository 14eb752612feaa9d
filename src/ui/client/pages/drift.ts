import type { RuleResult } from "../../../monitor/index.js";
import type { FeatureDriftSummary, HistogramOverlay, MonitorSummary } from "../../contract.js";
import { getJson } from "../api.js";
import { chart, toSeconds, type ChartData } from "../charts.js";
import { h, hashLink, testName } from "../dom.js";
import { num, pct, short, timeEl } from "../format.js";
import { badge, facts, note, pageTitle, section, setBody, table, wordBadge, type PageContext } from "../page.js";

const DATASET_DRIFT_TITLE =
  "Dataset drift needs a share of the features to drift (0.5 unless the monitor's drift.share says otherwise), so a window can be stable with a few drifted features.";

const KIND_TONE: Record<string, "ok" | "bad" | "warn" | "info"> = { none: "ok", instant: "bad", sudden: "bad", gradual: "warn", incremental: "warn", periodic: "info", temporary: "warn" };

/** Bin names: `axis` short enough for the x axis (a numeric bin's start), `full` for the legend (its range). */
function binLabels(histogram: HistogramOverlay): { axis: string[]; full: string[] } {
  if (histogram.kind === "categorical") {
    const full = histogram.categories ?? histogram.reference.map((_, i) => String(i));
    return { axis: full.map((c) => short(c, 14)), full };
  }
  const edges = histogram.edges ?? [];
  const full = histogram.reference.map((_, i) => {
    const lo = edges[i];
    const hi = edges[i + 1];
    return lo === undefined || hi === undefined ? String(i) : `${num(lo, 2)} to ${num(hi, 2)}`;
  });
  const axis = histogram.reference.map((_, i) => {
    const lo = edges[i];
    return lo === undefined ? String(i) : num(lo, 2);
  });
  return { axis, full };
}

/** Current values outside the reference's range (already counted in the end bins), in words; null when none. */
function outsideNote(histogram: HistogramOverlay): string | null {
  const below = histogram.currentBelow ?? 0;
  const above = histogram.currentAbove ?? 0;
  if (below <= 0 && above <= 0) return null;
  const edges = histogram.edges ?? [];
  const lowest = edges[0];
  const highest = edges[edges.length - 1];
  const parts = [
    below > 0 ? `${pct(below, 1)} lie below its lowest value${lowest === undefined ? "" : ` (${num(lowest, 2)})`}` : null,
    above > 0 ? `${pct(above, 1)} above its highest${highest === undefined ? "" : ` (${num(highest, 2)})`}` : null,
  ].filter((p): p is string => p !== null);
  const bins = below > 0 && above > 0 ? "first and last bins" : below > 0 ? "first bin" : "last bin";
  return `Outside the reference's range: of the current values, ${parts.join(" and ")}; they are counted in the ${bins}.`;
}

/** Per window start: how many features drifted in it, of those with a verdict. */
function driftedPerWindow(features: FeatureDriftSummary[]): Map<string, { drifted: number; judged: number }> {
  const counts = new Map<string, { drifted: number; judged: number }>();
  for (const f of features) {
    for (const p of f.series) {
      if (p.drifted === null) continue;
      const key = String(Date.parse(p.start));
      const c = counts.get(key) ?? { drifted: 0, judged: 0 };
      c.judged++;
      if (p.drifted) c.drifted++;
      counts.set(key, c);
    }
  }
  return counts;
}

function verdictBadge(drifted: boolean | null | undefined): HTMLElement {
  if (drifted === null || drifted === undefined) return badge("no verdict", "muted", "too few rows in the window");
  return drifted ? badge("drifted", "bad") : badge("stable", "ok");
}

function featureCard(ctx: PageContext, f: FeatureDriftSummary, prefix: "drift" | "pred"): HTMLElement {
  const id = testName(f.feature);
  const isTest = f.operator === "<";
  const scoreLabel = isTest ? "p-value" : `${f.method} distance`;
  const xs = f.series.map((p) => toSeconds(p.start));
  // A test's verdict is its p-value against the threshold, but its statistic (KS D, chi-square, z) is what moves
  // with the data: drawn too, on its own scale (right axis). A distance is both at once.
  const data: ChartData = [xs, f.series.map((p) => p.score), f.series.map(() => f.threshold), ...(isTest ? [f.series.map((p) => p.statistic)] : [])];
  const statistic = chart(
    {
      name: `${prefix}-${id}`,
      title: `${scoreLabel} per window (dashed: threshold ${num(f.threshold, 3)}, drift when ${isTest ? "below" : "at or above"})${isTest ? `; ${f.method} statistic on the right axis` : ""}`,
      series: [
        { label: scoreLabel, color: "#2563eb" },
        { label: "threshold", color: "#dc2626", dash: [6, 4], width: 1 },
        ...(isTest ? [{ label: `${f.method} statistic`, color: "#059669", width: 1, y2: true }] : []),
      ],
      format: (v) => num(v, 3),
      ...(isTest ? { y2: { format: (v: number) => num(v, 3) } } : {}),
      height: 160,
    },
    data,
    ctx.signal,
  );
  const latest = f.latest;
  const kind = f.driftKind;
  let histogram: HTMLElement | null = null;
  // Outputs get the same overlay as features (test ids `hist-pred-...`: an output may share a feature's name).
  const histId = prefix === "drift" ? id : `pred-${id}`;
  if (f.histogram !== null && f.histogram.reference.length > 0) {
    const { axis: labels, full } = binLabels(f.histogram);
    // Rotated labels hang to the right of their tick: leave room for the last one (about 6 px a character).
    const rotated = labels.length > 8;
    const lastLength = labels[labels.length - 1]?.length ?? 0;
    const outside = outsideNote(f.histogram);
    const histogramChart = chart(
      {
        name: `hist-${histId}`,
        title: "Distribution: reference against the newest window (share of rows per bin)",
        series: [
          { label: "reference", color: "#64748b" },
          { label: "current", color: "#d97706" },
        ],
        format: (v) => pct(v, 1),
        time: false,
        bars: true,
        xLabels: labels,
        xLegendLabels: full,
        height: 180,
        rightPadding: rotated ? Math.min(110, Math.ceil(lastLength * 6 * Math.cos(Math.PI / 5.2)) + 10) : 16,
      },
      [labels.map((_, i) => i), f.histogram.reference, f.histogram.current.length === labels.length ? f.histogram.current : labels.map((_, i) => f.histogram?.current[i] ?? null)],
      ctx.signal,
    ).element;
    histogram = outside === null ? histogramChart : h("div", null, histogramChart, h("p", { class: "muted chart-note", "data-testid": `hist-outside-${histId}` }, outside));
  }
  return h(
    "article",
    { class: latest?.drifted === true ? "feature drifted" : "feature", "data-testid": `feature-${prefix}-${id}` },
    h("h3", null, f.feature, " ", verdictBadge(latest?.drifted)),
    facts([
      ["Test", `${f.method} (${f.kind})`],
      ["Latest", latest === null ? "no verdict yet" : `statistic ${num(latest.statistic, 4)}${latest.pvalue === undefined ? "" : `, p-value ${num(latest.pvalue, 4)}`} (${num(latest.currentRows)} rows)`],
      [
        "Drift kind",
        h(
          "span",
          { "data-testid": prefix === "drift" ? `drift-kind-${id}` : `drift-kind-pred-${id}`, "data-kind": kind?.kind ?? "unknown" },
          kind === null ? wordBadge("unknown", "muted", "needs several windows") : wordBadge(kind.kind, KIND_TONE[kind.kind] ?? "info"),
          kind === null ? "" : h("span", { class: "evidence" }, ` ${kind.evidence}`),
        ),
      ],
    ]),
    h("div", { class: "charts two" }, statistic.element, histogram),
  );
}

function rulesTable(rules: RuleResult[], empty: string): HTMLElement {
  return table(
    [
      { label: "Result", cell: (r) => (r.passed ? badge("passed", "ok") : badge(r.severity === "warning" ? "warning" : "failed", r.severity === "warning" ? "warn" : "bad")) },
      { label: "Rule", cell: (r) => r.rule },
      { label: "Column", cell: (r) => r.column ?? "(dataset)" },
      { label: "Observed", cell: (r) => (typeof r.observed === "number" ? num(r.observed, 4) : (r.observed ?? "–")), numeric: true },
      { label: "Expected", cell: (r) => r.expected },
      { label: "Source", cell: (r) => r.source },
      { label: "Message", cell: (r) => r.message },
    ],
    rules,
    {
      empty,
      rowAttrs: (r) => ({ "data-testid": "rule-row", "data-passed": String(r.passed), "data-severity": r.severity, class: r.passed ? "" : r.severity === "warning" ? "warn-row" : "bad-row" }),
    },
  );
}

/** Sort key: drifted first, then by how close the score is to its threshold. */
function rank(f: FeatureDriftSummary): number {
  const latest = f.latest;
  if (latest === null) return 3;
  if (latest.drifted) return 0;
  const closeness = latest.operator === "<" ? latest.threshold / Math.max(latest.score, 1e-12) : latest.score / Math.max(latest.threshold, 1e-12);
  return 2 - Math.min(1, Math.max(0, closeness));
}

export async function driftPage(ctx: PageContext): Promise<void> {
  const name = ctx.params[0] ?? "";
  const version = ctx.params[1] ?? "";
  const size = ctx.query.get("size");
  ctx.load(async (signal) => {
    const query = new URLSearchParams({ limit: "48" });
    if (size !== null) query.set("size", size);
    const summary = await getJson<MonitorSummary>(
      `/api/v1/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}/monitor/summary?${query.toString()}`,
      signal,
    );
    const picker = h(
      "select",
      { id: "window-size", "data-testid": "window-size" },
      summary.sizes.map((s) => h("option", { value: s, selected: s === summary.size }, s)),
    );
    picker.addEventListener("change", () => {
      location.hash = `${hashLink("drift", name, version)}?size=${encodeURIComponent(picker.value)}`;
    });
    const drifted = summary.features.filter((f) => f.latest?.drifted === true).length;
    const perWindow = driftedPerWindow(summary.features);
    const driftedText = (w: MonitorSummary["windows"][number]): string => {
      const c = perWindow.get(String(Date.parse(w.start)));
      if (c !== undefined && c.judged > 0) return `${c.drifted} of ${c.judged}`;
      // Windows older than the features' series: derived from the share.
      return w.share === null || summary.features.length === 0 ? "–" : `${Math.round(w.share * summary.features.length)} of ${summary.features.length}`;
    };
    const driftedCell = (w: MonitorSummary["windows"][number]): HTMLElement => h("span", { "data-testid": "window-drifted" }, driftedText(w));
    const failedRules = summary.rules.filter((r) => !r.passed).sort((a, b) => (a.severity === b.severity ? 0 : a.severity === "error" ? -1 : 1));
    const passedRules = summary.rules.filter((r) => r.passed);
    const ruleErrors = failedRules.filter((r) => r.severity !== "warning").length;
    // Drifted features first, then the ones closest to their threshold.
    const features = [...summary.features].sort((a, b) => rank(a) - rank(b));
    setBody(
      ctx,
      pageTitle(
        h("a", { href: "#/models" }, "Models"),
        " / ",
        h("a", { href: hashLink("models", name) }, name),
        " / ",
        h("a", { href: hashLink("models", name, "versions", version) }, `v${version}`),
        " / drift",
      ),
      h("div", { class: "toolbar" }, h("label", { for: "window-size" }, "Window size "), summary.sizes.length === 0 ? h("span", { class: "muted" }, "no windows stored yet") : picker),
      summary.hasReference
        ? null
        : note(`No reference profile for ${name} v${version}: run mlship monitor profile ${name}@${version} --data train.csv to compare live traffic with the training data.`),
      section(
        "Windows",
        facts([
          ["Newest window", summary.latestWindow === null ? "–" : h("span", null, timeEl(summary.latestWindow.start), " to ", timeEl(summary.latestWindow.end))],
          ["Features drifted (newest)", `${drifted} of ${summary.features.length}`],
          [
            "Rules (newest)",
            // A rule of severity warning that does not pass is a warning (amber), as in its row below, not a failure.
            failedRules.length === 0
              ? badge(summary.rules.length === 0 ? "no results" : "all passed", summary.rules.length === 0 ? "muted" : "ok")
              : h(
                  "span",
                  { class: "badges", "data-testid": "rules-summary" },
                  ruleErrors > 0 ? badge(`${ruleErrors} failed`, "bad") : null,
                  failedRules.length - ruleErrors > 0 ? badge(`${failedRules.length - ruleErrors} warning${failedRules.length - ruleErrors === 1 ? "" : "s"}`, "warn") : null,
                ),
          ],
        ]),
        table(
          [
            { label: "Start", cell: (w) => timeEl(w.start) },
            { label: "Rows", cell: (w) => num(w.rows), numeric: true },
            {
              label: "Dataset drift",
              cell: (w) => (w.insufficient ? badge("too few rows", "muted") : verdictBadge(w.datasetDrifted)),
              title: DATASET_DRIFT_TITLE,
            },
            { label: "Drifted features", cell: driftedCell, numeric: true, title: `features whose own test drifted in the window. ${DATASET_DRIFT_TITLE}` },
            { label: "Share drifted", cell: (w) => pct(w.share, 0), numeric: true, title: DATASET_DRIFT_TITLE },
          ],
          [...summary.windows].reverse().slice(0, 12),
          { empty: "No windows yet: live monitoring fills them as traffic arrives.", rowAttrs: () => ({ "data-testid": "drift-window" }) },
        ),
      ),
      section(
        "Data-quality rules (newest window)",
        failedRules.length === 0 && summary.rules.length > 0 ? h("p", null, badge("all passed", "ok"), ` ${summary.rules.length} checks`) : rulesTable(failedRules, "No rule results yet."),
        passedRules.length === 0 ? null : h("details", null, h("summary", null, `${passedRules.length} passed checks`), rulesTable(passedRules, "")),
      ),
      section(
        "Feature drift",
        features.length === 0 ? note("No feature statistics yet.") : h("div", { class: "features" }, features.map((f) => featureCard(ctx, f, "drift"))),
      ),
      section(
        "Prediction drift",
        summary.predictions.length === 0 ? note("No prediction statistics yet.") : h("div", { class: "features" }, summary.predictions.map((f) => featureCard(ctx, f, "pred"))),
      ),
    );
    ctx.ready();
  });
}
