/**
 * The monitoring report as one self-contained HTML file: inline CSS and inline SVG only (no scripts, fonts, images
 * or links outside the page), readable without JavaScript (`<details>` collapses the long parts). Every text from
 * data (feature names, categories, messages, paths) is escaped.
 *
 * Histograms are drawn on the reference's own bin edges: `current` is profiled on those edges (`checkDataset`), so
 * reference and current bars share one x axis; values outside the reference range show as `<` / `>` bars at the
 * sides. Bar heights are proportions of each side's non-missing values.
 */
import { DEFAULT_THRESHOLDS } from "./drift.js";
import { histogramOn, sameEdges } from "./profile/index.js";
import type { CheckReport } from "./service.js";
import type { CategoricalProfile, ColumnProfile, DatasetDrift, DatasetProfile, FeatureDrift, Histogram, NumericProfile, ReferenceProfile, RuleResult } from "./types.js";

export interface WindowPoint {
  start: string;
  end: string;
  features: Record<string, { score: number; drifted: boolean; method: string }>;
}

/** One window size's history (e.g. `1h`), oldest window first. */
export interface WindowSeries {
  size: string;
  series: WindowPoint[];
}

/** The drift kind named for a feature (instant, gradual, periodic, temporary) and the evidence for it. */
export interface DriftKindFinding {
  kind: string;
  evidence: string;
}

export interface HtmlReportInput {
  reference: ReferenceProfile;
  /** The current data's feature profile, numeric columns binned on the reference's edges. */
  current: DatasetProfile;
  check: CheckReport;
  windows?: WindowSeries[];
  /** Per feature (or model output). */
  kinds?: Record<string, DriftKindFinding>;
  /** ISO time printed as the report's date; default now. */
  generatedAt?: string;
}

/** Categories drawn per feature; the rest are summed into one `other` bar. */
const MAX_CATEGORIES = 20;
const TESTS: ReadonlySet<string> = new Set(["ks", "chisquare", "z"]);

const CHART = { width: 640, height: 220, left: 48, right: 12, top: 12, bottom: 40 } as const;
const PLOT_WIDTH = CHART.width - CHART.left - CHART.right;
const PLOT_HEIGHT = CHART.height - CHART.top - CHART.bottom;

const ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Escapes text for element content and quoted attribute values alike. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c] as string);
}

function num(value: number | null | undefined, digits = 4): string {
  if (value === null || value === undefined) return "–";
  if (!Number.isFinite(value)) return String(value);
  if (value === 0) return "0";
  return Math.abs(value) >= 1e5 || Math.abs(value) < 1e-3 ? value.toExponential(digits - 1) : String(Number(value.toPrecision(digits)));
}

/** SVG coordinates: two decimals are plenty and keep the file small. */
function px(value: number): string {
  return String(Math.round(value * 100) / 100);
}

function pct(share: number): string {
  return `${Number((share * 100).toFixed(1))}%`;
}

const STYLE = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;margin:0;background:#f6f7f9}
main{max-width:980px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d8dce3;padding-bottom:4px}
h3{font-size:16px;margin:0 0 8px}
.muted{color:#5b6576}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;vertical-align:middle}
.pass,.ok{background:#dcf3e4;color:#17693a}.fail,.drift{background:#fbe0e0;color:#a11d1d}.warning{background:#fff1cc;color:#7a5600}
table{border-collapse:collapse;width:100%;margin:6px 0 12px;background:#fff}
th,td{border:1px solid #e1e4ea;padding:4px 8px;text-align:left;vertical-align:top}th{background:#eef0f4;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums}
section.feature{background:#fff;border:1px solid #d8dce3;border-left:4px solid #6aa879;border-radius:4px;padding:12px 16px;margin:14px 0}
section.feature.drifted{border-left-color:#c43c3c}
.kind{background:#f0f4ff;border:1px solid #cdd8f6;border-radius:4px;padding:6px 10px;margin:8px 0}
svg{display:block;max-width:100%;height:auto;background:#fff}
svg text{font:11px system-ui,sans-serif;fill:#5b6576}
.ref{fill:#3b6fd4;fill-opacity:.45}.cur{fill:#e8871e;fill-opacity:.45;stroke:#c0650a;stroke-width:.6}
.axis{stroke:#9aa3b2;stroke-width:1}.threshold{stroke:#c43c3c;stroke-dasharray:5 4;stroke-width:1.2}
.line{fill:none;stroke:#3b6fd4;stroke-width:1.6}.pt{fill:#3b6fd4}.pt.drifted{fill:#c43c3c}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px;vertical-align:middle}
details>summary{cursor:pointer;margin:6px 0}
ul.failures{margin:6px 0;padding-left:20px}
`;

interface Bar {
  cls: "ref" | "cur";
  share: number;
  label: string;
}

/** One slot per bin or category; `bars` in a slot are drawn side by side (`sideBySide`) or over each other. */
interface Slot {
  label: string;
  bars: Bar[];
}

function barChart(title: string, slots: readonly Slot[], sideBySide: boolean, axisLabels: { first: string; last: string } | undefined): string {
  const maxShare = Math.max(1e-12, ...slots.flatMap((s) => s.bars.map((b) => b.share)));
  const slotWidth = PLOT_WIDTH / Math.max(1, slots.length);
  const baseline = CHART.top + PLOT_HEIGHT;
  const parts: string[] = [];
  slots.forEach((slot, i) => {
    const x0 = CHART.left + i * slotWidth;
    const inner = sideBySide ? (slotWidth * 0.8) / Math.max(1, slot.bars.length) : slotWidth * 0.9;
    slot.bars.forEach((bar, k) => {
      const height = (bar.share / maxShare) * PLOT_HEIGHT;
      const x = sideBySide ? x0 + slotWidth * 0.1 + k * inner : x0 + slotWidth * 0.05;
      parts.push(
        `<rect class="${bar.cls}" data-slot="${i}" data-share="${bar.share}" x="${px(x)}" y="${px(baseline - height)}" width="${px(inner)}" height="${px(height)}"><title>${escapeHtml(`${bar.label} ${slot.label}: ${pct(bar.share)}`)}</title></rect>`,
      );
    });
    if (axisLabels === undefined) {
      const label = slot.label.length > 14 ? `${slot.label.slice(0, 13)}…` : slot.label;
      const cx = x0 + slotWidth / 2;
      parts.push(`<text x="${px(cx)}" y="${px(baseline + 12)}" text-anchor="end" transform="rotate(-35 ${px(cx)} ${px(baseline + 12)})">${escapeHtml(label)}</text>`);
    }
  });
  const axes = [
    `<line class="axis" x1="${CHART.left}" y1="${px(baseline)}" x2="${CHART.left + PLOT_WIDTH}" y2="${px(baseline)}"/>`,
    `<line class="axis" x1="${CHART.left}" y1="${CHART.top}" x2="${CHART.left}" y2="${px(baseline)}"/>`,
    `<text x="${CHART.left - 4}" y="${CHART.top + 8}" text-anchor="end">${escapeHtml(pct(maxShare))}</text>`,
    `<text x="${CHART.left - 4}" y="${px(baseline)}" text-anchor="end">0</text>`,
  ];
  if (axisLabels !== undefined) {
    axes.push(`<text x="${CHART.left}" y="${px(baseline + 16)}">${escapeHtml(axisLabels.first)}</text>`);
    axes.push(`<text x="${CHART.left + PLOT_WIDTH}" y="${px(baseline + 16)}" text-anchor="end">${escapeHtml(axisLabels.last)}</text>`);
  }
  return `<svg class="histogram" viewBox="0 0 ${CHART.width} ${CHART.height}" width="${CHART.width}" height="${CHART.height}" role="img" aria-label="${escapeHtml(title)}"><title>${escapeHtml(title)}</title>${axes.join("")}${parts.join("")}</svg>`;
}

function legend(): string {
  return `<div class="legend muted"><span class="ref" style="background:#3b6fd4;opacity:.6"></span>reference<span class="cur" style="background:#e8871e;opacity:.6"></span>current</div>`;
}

function histogramTotal(h: Histogram): number {
  return h.counts.reduce((a, b) => a + b, 0) + h.below + h.above;
}

/** The current histogram on the reference's edges: as profiled, else re-binned from the current sample. */
function currentOnReferenceEdges(reference: NumericProfile, current: NumericProfile): { histogram: Histogram; note: string } {
  if (sameEdges(reference.histogram.edges, current.histogram.edges)) return { histogram: current.histogram, note: "" };
  const exact = current.sample.length === current.count;
  return {
    histogram: histogramOn(reference.histogram.edges, current.sample),
    note: `Current values re-binned on the reference edges from ${exact ? "all" : `a sample of ${current.sample.length}`} of its ${current.count} values.`,
  };
}

function numericHistogram(name: string, reference: NumericProfile, current: NumericProfile): string {
  const ref = reference.histogram;
  const { histogram: cur, note } = currentOnReferenceEdges(reference, current);
  const refTotal = Math.max(1, histogramTotal(ref));
  const curTotal = Math.max(1, histogramTotal(cur));
  const slots: Slot[] = [];
  const edges = ref.edges;
  if (ref.below + cur.below > 0) slots.push({ label: `< ${num(edges[0])}`, bars: [{ cls: "ref", share: ref.below / refTotal, label: "reference" }, { cls: "cur", share: cur.below / curTotal, label: "current" }] });
  ref.counts.forEach((count, i) => {
    slots.push({
      label: `[${num(edges[i])}, ${num(edges[i + 1])}${i === ref.counts.length - 1 ? "]" : ")"}`,
      bars: [
        { cls: "ref", share: count / refTotal, label: "reference" },
        { cls: "cur", share: (cur.counts[i] ?? 0) / curTotal, label: "current" },
      ],
    });
  });
  if (ref.above + cur.above > 0) slots.push({ label: `> ${num(edges[edges.length - 1])}`, bars: [{ cls: "ref", share: ref.above / refTotal, label: "reference" }, { cls: "cur", share: cur.above / curTotal, label: "current" }] });
  const first = ref.below + cur.below > 0 ? `< ${num(edges[0])}` : num(edges[0]);
  const last = ref.above + cur.above > 0 ? `> ${num(edges[edges.length - 1])}` : num(edges[edges.length - 1]);
  const outside = cur.below + cur.above;
  const outsideNote = outside > 0 ? ` ${pct(outside / curTotal)} of current values fall outside the reference range.` : "";
  return (
    barChart(`${name}: reference vs current histogram`, slots, false, { first, last }) +
    legend() +
    `<p class="muted">${ref.counts.length} bins on the reference edges (${escapeHtml(ref.rule)} rule); bars are shares of each side's non-missing values.${escapeHtml(outsideNote)}${note === "" ? "" : ` ${escapeHtml(note)}`}</p>`
  );
}

function categoricalHistogram(name: string, reference: CategoricalProfile, current: CategoricalProfile): string {
  const refTotal = Math.max(1, reference.count);
  const curTotal = Math.max(1, current.count);
  const keys = [...new Set([...Object.keys(reference.frequencies), ...Object.keys(current.frequencies)])];
  keys.sort((a, b) => (reference.frequencies[b] ?? 0) - (reference.frequencies[a] ?? 0) || (current.frequencies[b] ?? 0) - (current.frequencies[a] ?? 0) || a.localeCompare(b));
  const shown = keys.slice(0, MAX_CATEGORIES);
  const rest = keys.slice(MAX_CATEGORIES);
  const slots: Slot[] = shown.map((key) => ({
    label: key,
    bars: [
      { cls: "ref", share: (reference.frequencies[key] ?? 0) / refTotal, label: "reference" },
      { cls: "cur", share: (current.frequencies[key] ?? 0) / curTotal, label: "current" },
    ],
  }));
  const refOther = reference.otherCount + rest.reduce((a, k) => a + (reference.frequencies[k] ?? 0), 0);
  const curOther = current.otherCount + rest.reduce((a, k) => a + (current.frequencies[k] ?? 0), 0);
  if (refOther + curOther > 0) {
    slots.push({ label: "(other)", bars: [{ cls: "ref", share: refOther / refTotal, label: "reference" }, { cls: "cur", share: curOther / curTotal, label: "current" }] });
  }
  const unseen = Object.keys(current.frequencies).filter((k) => reference.frequencies[k] === undefined);
  const unseenNote = unseen.length > 0 ? ` ${unseen.length} categor${unseen.length > 1 ? "ies" : "y"} not in the reference.` : "";
  return (
    barChart(`${name}: reference vs current category frequencies`, slots, true, undefined) +
    legend() +
    `<p class="muted">${keys.length} categories, the ${shown.length} most frequent drawn; bars are shares of each side's non-missing values.${escapeHtml(unseenNote)}</p>`
  );
}

function thresholdFor(name: string, method: string, drift: readonly FeatureDrift[]): number | undefined {
  const known = drift.find((f) => f.feature === name && f.method === method);
  if (known !== undefined) return known.threshold;
  return (DEFAULT_THRESHOLDS as Record<string, number | undefined>)[method];
}

/** Score per window over time, with the threshold as a dashed line; drifted windows in red. */
function windowChart(name: string, size: string, points: { start: string; end: string; score: number; drifted: boolean }[], method: string, threshold: number | undefined): string {
  const times = points.map((p) => Date.parse(p.end));
  const byTime = times.every(Number.isFinite) && new Set(times).size === times.length;
  const xs = byTime ? times : points.map((_, i) => i);
  const xMin = Math.min(...xs);
  const xMax = Math.max(...xs);
  const isTest = TESTS.has(method);
  const yMax = isTest ? 1 : Math.max(1e-12, ...points.map((p) => p.score), threshold ?? 0) * 1.15;
  const baseline = CHART.top + PLOT_HEIGHT;
  const x = (v: number): number => CHART.left + (xMax === xMin ? PLOT_WIDTH / 2 : ((v - xMin) / (xMax - xMin)) * PLOT_WIDTH);
  const y = (v: number): number => baseline - (Math.min(Math.max(v, 0), yMax) / yMax) * PLOT_HEIGHT;
  const coords = points.map((p, i) => [x(xs[i] as number), y(p.score)] as const);
  const parts = [
    `<line class="axis" x1="${CHART.left}" y1="${px(baseline)}" x2="${CHART.left + PLOT_WIDTH}" y2="${px(baseline)}"/>`,
    `<line class="axis" x1="${CHART.left}" y1="${CHART.top}" x2="${CHART.left}" y2="${px(baseline)}"/>`,
    `<text x="${CHART.left - 4}" y="${CHART.top + 8}" text-anchor="end">${escapeHtml(num(yMax, 3))}</text>`,
    `<text x="${CHART.left - 4}" y="${px(baseline)}" text-anchor="end">0</text>`,
  ];
  if (threshold !== undefined) {
    parts.push(`<line class="threshold" data-threshold="${threshold}" x1="${CHART.left}" y1="${px(y(threshold))}" x2="${CHART.left + PLOT_WIDTH}" y2="${px(y(threshold))}"><title>threshold ${threshold}</title></line>`);
  }
  if (coords.length > 1) parts.push(`<polyline class="line" points="${coords.map(([cx, cy]) => `${px(cx)},${px(cy)}`).join(" ")}"/>`);
  points.forEach((p, i) => {
    const [cx, cy] = coords[i] as readonly [number, number];
    parts.push(`<circle class="pt${p.drifted ? " drifted" : ""}" cx="${px(cx)}" cy="${px(cy)}" r="3"><title>${escapeHtml(`${p.start} – ${p.end}: ${method} ${num(p.score)}${p.drifted ? " (drift)" : ""}`)}</title></circle>`);
  });
  const first = points[0];
  const last = points[points.length - 1];
  if (first !== undefined && last !== undefined) {
    parts.push(`<text x="${CHART.left}" y="${px(baseline + 16)}">${escapeHtml(first.start)}</text>`);
    parts.push(`<text x="${CHART.left + PLOT_WIDTH}" y="${px(baseline + 16)}" text-anchor="end">${escapeHtml(last.end)}</text>`);
  }
  const drifted = points.filter((p) => p.drifted).length;
  const title = `${name}: ${method} ${isTest ? "p-value" : "score"} per ${size} window`;
  return (
    `<figure class="window" data-size="${escapeHtml(size)}"><figcaption>${escapeHtml(`${size} windows: ${method} ${isTest ? "p-value (drift below the line)" : "score (drift at or above the line)"}, ${drifted} of ${points.length} drifted`)}</figcaption>` +
    `<svg class="series" viewBox="0 0 ${CHART.width} ${CHART.height}" width="${CHART.width}" height="${CHART.height}" role="img" aria-label="${escapeHtml(title)}"><title>${escapeHtml(title)}</title>${parts.join("")}</svg></figure>`
  );
}

function windowCharts(name: string, windows: readonly WindowSeries[] | undefined, drift: readonly FeatureDrift[]): string {
  const charts: string[] = [];
  for (const w of windows ?? []) {
    const points = w.series.flatMap((p) => {
      const f = p.features[name];
      return f === undefined ? [] : [{ start: p.start, end: p.end, score: f.score, drifted: f.drifted, method: f.method }];
    });
    if (points.length === 0) continue;
    // A series can change method (e.g. the reference grew past 1000 rows); each method gets its own chart.
    for (const method of new Set(points.map((p) => p.method))) {
      charts.push(windowChart(name, w.size, points.filter((p) => p.method === method), method, thresholdFor(name, method, drift)));
    }
  }
  return charts.length === 0 ? "" : `<h4>Over time</h4>${charts.join("")}`;
}

function kindBlock(finding: DriftKindFinding | undefined): string {
  if (finding === undefined) return "";
  return `<div class="kind"><strong>Drift kind: <span class="drift-kind">${escapeHtml(finding.kind)}</span></strong><br><span class="muted">${escapeHtml(finding.evidence)}</span></div>`;
}

function driftTable(f: FeatureDrift | undefined, skipped: string | undefined): string {
  if (f === undefined) return `<p class="muted">No drift test for this column${skipped === undefined ? "" : `: ${escapeHtml(skipped)}`}.</p>`;
  const details = Object.entries(f.details).map(([k, v]) => `${k}=${String(v)}`).join(", ");
  const rows: [string, string][] = [
    ["test", f.method],
    ["statistic", num(f.statistic)],
    ["p-value", f.pvalue === undefined ? "– (distance)" : num(f.pvalue)],
    ["drift if", `${f.operator === "<" ? "p-value" : "score"} ${f.operator} ${f.threshold}`],
    ["verdict", f.drifted ? "drift" : "no drift"],
    ["rows (reference / current)", `${f.referenceRows} / ${f.currentRows}`],
  ];
  if (details !== "") rows.push(["details", details]);
  return `<table class="drift-test"><tbody>${rows.map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join("")}</tbody></table>`;
}

function statsTable(reference: ColumnProfile, current: ColumnProfile | undefined): string {
  const header = `<tr><th></th><th>count</th><th>nulls</th>`;
  if (reference.kind === "numeric") {
    const row = (label: string, c: ColumnProfile | undefined): string =>
      c === undefined || c.kind !== "numeric"
        ? `<tr><th>${label}</th><td colspan="7" class="muted">–</td></tr>`
        : `<tr><th>${label}</th>${[c.count, c.nulls, c.min, c.mean, c.std, c.quantiles.p50, c.max].map((v) => `<td class="n">${escapeHtml(num(v))}</td>`).join("")}</tr>`;
    return `<table class="stats"><thead>${header}<th>min</th><th>mean</th><th>std</th><th>median</th><th>max</th></tr></thead><tbody>${row("reference", reference)}${row("current", current)}</tbody></table>`;
  }
  const row = (label: string, c: ColumnProfile | undefined): string =>
    c === undefined || c.kind !== "categorical" ? `<tr><th>${label}</th><td colspan="3" class="muted">–</td></tr>` : `<tr><th>${label}</th><td class="n">${c.count}</td><td class="n">${c.nulls}</td><td class="n">${c.distinct}</td></tr>`;
  return `<table class="stats"><thead>${header}<th>distinct</th></tr></thead><tbody>${row("reference", reference)}${row("current", current)}</tbody></table>`;
}

function histogramBlock(name: string, reference: ColumnProfile, current: ColumnProfile | undefined): string {
  if (current === undefined) return `<p class="badge fail">missing from the current data</p>`;
  if (reference.kind === "numeric" && current.kind === "numeric") return numericHistogram(name, reference, current);
  if (reference.kind === "categorical" && current.kind === "categorical") return categoricalHistogram(name, reference, current);
  return `<p class="muted">The column is ${reference.kind} in the reference and ${current.kind} in the current data; no common histogram.</p>`;
}

function ruleRows(rules: readonly RuleResult[]): string {
  return rules
    .map(
      (r) =>
        `<tr><td><span class="badge ${r.passed ? "ok" : r.severity === "error" ? "fail" : "warning"}">${r.passed ? "passed" : escapeHtml(r.severity)}</span></td><td>${escapeHtml(r.rule)}</td><td>${escapeHtml(r.column ?? "(dataset)")}</td><td>${escapeHtml(String(r.observed ?? "–"))}</td><td>${escapeHtml(r.expected)}</td><td>${escapeHtml(r.source)}</td><td>${escapeHtml(r.message)}</td></tr>`,
    )
    .join("");
}

function rulesSection(rules: readonly RuleResult[]): string {
  const failed = [...rules.filter((r) => !r.passed)].sort((a, b) => (a.severity === b.severity ? 0 : a.severity === "error" ? -1 : 1));
  const passed = rules.filter((r) => r.passed);
  const head = `<thead><tr><th>result</th><th>rule</th><th>column</th><th>observed</th><th>expected</th><th>source</th><th>message</th></tr></thead>`;
  const failedPart = failed.length === 0 ? `<p>Every rule passed.</p>` : `<table class="rules failed">${head}<tbody>${ruleRows(failed)}</tbody></table>`;
  const passedPart = passed.length === 0 ? "" : `<details class="rules-passed"><summary>${passed.length} passed rule${passed.length > 1 ? "s" : ""}</summary><table class="rules passed">${head}<tbody>${ruleRows(passed)}</tbody></table></details>`;
  return `<h2 id="rules">Rules: ${rules.length - failed.length} of ${rules.length} passed</h2>${failedPart}${passedPart}`;
}

function driftOverview(drift: DatasetDrift, anchors: Map<string, string>, kinds: Record<string, DriftKindFinding> | undefined, label: string): string {
  const rows = drift.features
    .map((f) => {
      const anchor = anchors.get(f.feature);
      const name = anchor === undefined ? escapeHtml(f.feature) : `<a href="#${anchor}">${escapeHtml(f.feature)}</a>`;
      return `<tr><td>${name}</td><td>${escapeHtml(f.method)}</td><td class="n">${escapeHtml(num(f.statistic))}</td><td class="n">${f.pvalue === undefined ? "–" : escapeHtml(num(f.pvalue))}</td><td>${escapeHtml(`${f.operator} ${f.threshold}`)}</td><td><span class="badge ${f.drifted ? "drift" : "ok"}">${f.drifted ? "drift" : "ok"}</span></td><td>${escapeHtml(kinds?.[f.feature]?.kind ?? "")}</td></tr>`;
    })
    .join("");
  return `<table class="drift-overview"><thead><tr><th>${escapeHtml(label)}</th><th>test</th><th>statistic</th><th>p-value</th><th>drift if</th><th>verdict</th><th>kind</th></tr></thead><tbody>${rows}</tbody></table>`;
}

function summary(input: HtmlReportInput, generatedAt: string): string {
  const { reference, check, current } = input;
  const failedRules = check.rules.filter((r) => !r.passed);
  const rows: [string, string][] = [
    ["model", `${check.model}@${check.version}`],
    ["reference", `${reference.source.path} (${reference.features.rows} rows, sha256 ${reference.source.sha256.slice(0, 12)}…, profiled ${reference.createdAt})`],
    ["current", `${check.source} (${check.rows} rows, ${current.columns.length} columns profiled)`],
    ["rules", `${check.rules.length - failedRules.length} of ${check.rules.length} passed (${failedRules.filter((r) => r.severity === "error").length} errors, ${failedRules.filter((r) => r.severity === "warning").length} warnings)`],
    ["feature drift", `${check.drift.driftedFeatures} of ${check.drift.features.length} features (share ${check.drift.share.toFixed(3)}); dataset drift ${check.drift.drifted ? "yes" : "no"} at >= ${check.drift.shareThreshold}`],
  ];
  if (check.skippedFeatures.length > 0) rows.push(["not tested", check.skippedFeatures.map((s) => `${s.feature}: ${s.reason}`).join("; ")]);
  if (check.predictionDrift !== undefined) rows.push(["prediction drift", `${check.predictionDrift.driftedFeatures} of ${check.predictionDrift.features.length} outputs; ${check.predictionDrift.drifted ? "drifted" : "no drift"}`]);
  else if (check.predictionDriftSkipped !== undefined) rows.push(["prediction drift", `not computed: ${check.predictionDriftSkipped}`]);
  const failures = check.failures.length === 0 ? "" : `<h3>Failures</h3><ul class="failures">${check.failures.map((f) => `<li>${escapeHtml(f)}</li>`).join("")}</ul>`;
  return (
    `<section id="summary"><h1>Monitoring report: ${escapeHtml(`${check.model}@${check.version}`)} <span class="badge ${check.passed ? "pass" : "fail"}" id="status">${check.passed ? "PASSED" : "FAILED"}</span></h1>` +
    `<p class="muted">Generated ${escapeHtml(generatedAt)}</p>` +
    `<table class="summary"><tbody>${rows.map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join("")}</tbody></table>${failures}</section>`
  );
}

/** Renders the report; pure (no I/O), so the CLI writes the string and the server can send it as is. */
export function renderHtmlReport(input: HtmlReportInput): string {
  const { reference, current, check, windows, kinds } = input;
  const generatedAt = input.generatedAt ?? new Date().toISOString();
  const currentByName = new Map(current.columns.map((c) => [c.name, c]));
  const driftByName = new Map(check.drift.features.map((f) => [f.feature, f]));
  const anchors = new Map(reference.features.columns.map((c, i) => [c.name, `feature-${i}`]));

  const features = reference.features.columns
    .map((column, i) => {
      const drift = driftByName.get(column.name);
      const drifted = drift?.drifted === true;
      const columnRules = check.rules.filter((r) => r.column === column.name && !r.passed);
      const rulesNote = columnRules.length === 0 ? "" : `<ul class="failures">${columnRules.map((r) => `<li><span class="badge ${r.severity === "error" ? "fail" : "warning"}">${escapeHtml(r.rule)}</span> ${escapeHtml(r.message)}</li>`).join("")}</ul>`;
      return (
        `<section class="feature${drifted ? " drifted" : ""}" id="feature-${i}" data-feature="${escapeHtml(column.name)}" data-drifted="${drifted}">` +
        `<h3>${escapeHtml(column.name)} <span class="badge ${drifted ? "drift" : "ok"}">${drifted ? "drift" : "no drift"}</span> <span class="muted">${column.kind}</span></h3>` +
        kindBlock(kinds?.[column.name]) +
        rulesNote +
        histogramBlock(column.name, column, currentByName.get(column.name)) +
        statsTable(column, currentByName.get(column.name)) +
        driftTable(drift, check.skippedFeatures.find((s) => s.feature === column.name)?.reason) +
        windowCharts(column.name, windows, check.drift.features) +
        `</section>`
      );
    })
    .join("");

  let predictions = "";
  if (check.predictionDrift !== undefined) {
    const outputs = check.predictionDrift.features
      .map((f) => {
        const block = kindBlock(kinds?.[f.feature]) + windowCharts(f.feature, windows, check.predictionDrift?.features ?? []);
        return block === "" ? "" : `<section class="output"><h3>${escapeHtml(f.feature)}</h3>${block}</section>`;
      })
      .join("");
    predictions = `<h2 id="predictions">Prediction drift</h2>${driftOverview(check.predictionDrift, new Map(), kinds, "output")}${outputs}`;
  }

  const title = `mlship monitoring report: ${check.model}@${check.version}`;
  return (
    `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">` +
    `<title>${escapeHtml(title)}</title><style>${STYLE}</style></head><body><main>` +
    summary(input, generatedAt) +
    rulesSection(check.rules) +
    `<h2 id="drift">Feature drift: ${check.drift.driftedFeatures} of ${check.drift.features.length} features</h2>` +
    driftOverview(check.drift, anchors, kinds, "feature") +
    predictions +
    `<h2 id="features">Features</h2>${features}` +
    `</main></body></html>\n`
  );
}
