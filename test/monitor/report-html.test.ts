import path from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { defaultMonitorConfig } from "../../src/package/index.js";
import { checkRules, columnsOf, datasetDrift, profileTable, readDatasetFile, referenceFromProfile } from "../../src/monitor/index.js";
import type { CheckReport, ColumnTable, DatasetProfile, NumericProfile, ReferenceProfile } from "../../src/monitor/index.js";
import { escapeHtml, renderHtmlReport } from "../../src/monitor/report-html.js";
import type { WindowSeries } from "../../src/monitor/report-html.js";

const FIXTURES = fileURLToPath(new URL("../../../shared/fixtures/breast_cancer_mlp/", import.meta.url));
/** The fixture's planted drift (meta.json `drift.changes`). */
const PLANTED = ["mean radius", "mean texture", "worst smoothness"];

interface Built {
  reference: ReferenceProfile;
  current: DatasetProfile;
  check: CheckReport;
}

/** Reference and current profiles and a check report, made the way `checkDataset` makes them (no model scored). */
function build(train: ColumnTable, other: ColumnTable, sourcePath: string): Built {
  const features = profileTable(train);
  const kinds = Object.fromEntries(features.columns.map((c) => [c.name, c.kind]));
  const edges = Object.fromEntries(features.columns.flatMap((c) => (c.kind === "numeric" ? [[c.name, c.histogram.edges]] : [])));
  const current = profileTable(other, { kinds, edges });
  const rules = checkRules({ current, reference: features, config: defaultMonitorConfig() });
  const drift = datasetDrift(referenceFromProfile(features), columnsOf(other), { kinds });
  const failures = [
    ...rules.filter((r) => !r.passed && r.severity === "error").map((r) => `rule ${r.rule} on '${r.column ?? ""}': ${r.message}`),
    ...drift.features.filter((f) => f.drifted).map((f) => `drift in '${f.feature}'`),
  ];
  const reference: ReferenceProfile = {
    model: "breast-cancer",
    version: 2,
    createdAt: "2024-06-01T00:00:00.000Z",
    source: { path: sourcePath, sha256: "ab".repeat(32), bytes: 1, format: "csv" },
    features,
    predictions: undefined,
  };
  const check: CheckReport = {
    model: "breast-cancer",
    version: 2,
    rows: other.rows,
    source: "drifted.csv",
    rules,
    drift,
    skippedFeatures: [],
    predictionDrift: undefined,
    predictionDriftSkipped: "not scored in this test", windows: undefined, kinds: undefined,
    failures,
    passed: failures.length === 0,
  };
  return { reference, current, check };
}

/** The `<section class="feature ...">` elements with their attributes and inner HTML. */
function featureSections(html: string): { feature: string; drifted: boolean; body: string }[] {
  const out: { feature: string; drifted: boolean; body: string }[] = [];
  const re = /<section class="feature[^"]*" id="[^"]*" data-feature="([^"]*)" data-drifted="(true|false)">([\s\S]*?)<\/section>/g;
  for (let m = re.exec(html); m !== null; m = re.exec(html)) out.push({ feature: m[1] as string, drifted: m[2] === "true", body: m[3] as string });
  return out;
}

function attr(tag: string, name: string): number {
  const m = new RegExp(` ${name}="([^"]*)"`).exec(tag);
  if (m === null) throw new Error(`no ${name} in ${tag}`);
  return Number(m[1]);
}

function rects(body: string, cls: "ref" | "cur"): { slot: number; share: number; height: number; y: number }[] {
  return [...body.matchAll(new RegExp(`<rect class="${cls}"[^>]*>`, "g"))].map((m) => ({ slot: attr(m[0], "data-slot"), share: attr(m[0], "data-share"), height: attr(m[0], "height"), y: attr(m[0], "y") }));
}

function unescape(text: string): string {
  return text.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, "&");
}

describe("renderHtmlReport on drifted.csv vs train.csv", () => {
  let built: Built;
  let html: string;
  const windows: WindowSeries[] = [
    {
      size: "1h",
      series: [0.6, 0.4, 0.7, 0.01, 0.001, 0.002].map((p, i) => ({
        start: new Date(Date.UTC(2024, 5, 1, i)).toISOString(),
        end: new Date(Date.UTC(2024, 5, 1, i + 1)).toISOString(),
        features: { "mean radius": { score: p, drifted: p < 0.05, method: "ks" } },
      })),
    },
  ];

  beforeAll(async () => {
    const train = (await readDatasetFile(path.join(FIXTURES, "train.csv"), { excludeColumns: ["label"] })).table;
    const drifted = (await readDatasetFile(path.join(FIXTURES, "drifted.csv"), { excludeColumns: ["label"] })).table;
    built = build(train, drifted, "train.csv");
    html = renderHtmlReport({ ...built, windows, kinds: { "mean radius": { kind: "instant", evidence: "step change between 03:00 and 04:00 that stays" } }, generatedAt: "2024-06-02T00:00:00.000Z" });
  });

  it("is one self-contained document: no external scripts, styles, fonts or images", () => {
    expect(html.startsWith("<!DOCTYPE html>")).toBe(true);
    expect(html.match(/<!DOCTYPE html>/g)).toHaveLength(1);
    expect(html.match(/<html[ >]/g)).toHaveLength(1);
    expect(html.match(/<\/html>/g)).toHaveLength(1);
    const tags = [...html.matchAll(/<([a-zA-Z][\w-]*)((?:[^>"]|"[^"]*")*)>/g)];
    expect(tags.length).toBeGreaterThan(100);
    for (const t of tags) expect(t[2]).not.toMatch(/\s(src|on\w+)\s*=/i);
    expect(html).not.toMatch(/<script|<link|<img|<iframe|<object|<embed|@import|url\(/i);
    const hrefs = [...html.matchAll(/href="([^"]*)"/g)].map((m) => m[1] as string);
    expect(hrefs.length).toBeGreaterThan(0);
    for (const href of hrefs) {
      expect(href.startsWith("#")).toBe(true);
      expect(html).toContain(`id="${href.slice(1)}"`);
    }
  });

  it("summarises the check: model, rows, status and every failure", () => {
    const summary = /<section id="summary">([\s\S]*?)<\/section>/.exec(html)?.[1] ?? "";
    expect(summary).toContain("breast-cancer@2");
    expect(summary).toContain(`${built.check.rows} rows`);
    expect(built.check.passed).toBe(false);
    expect(summary).toContain(`id="status">FAILED<`);
    const items = [...summary.matchAll(/<li>([\s\S]*?)<\/li>/g)].map((m) => unescape(m[1] as string));
    expect(items).toEqual(built.check.failures);
  });

  it("has one section with an SVG histogram per feature and marks exactly the drifted ones", () => {
    const sections = featureSections(html);
    expect(sections.map((s) => unescape(s.feature))).toEqual(built.reference.features.columns.map((c) => c.name));
    for (const s of sections) expect(s.body).toMatch(/<svg class="histogram"[\s\S]*<\/svg>/);
    const driftedInReport = sections.filter((s) => s.drifted).map((s) => s.feature);
    const driftedInCheck = built.check.drift.features.filter((f) => f.drifted).map((f) => f.feature);
    expect(driftedInReport).toEqual(driftedInCheck);
    expect(driftedInReport).toEqual(PLANTED);
    // Each section shows its test, statistic, p-value and threshold.
    const radius = sections.find((s) => s.feature === "mean radius");
    const test = built.check.drift.features.find((f) => f.feature === "mean radius");
    expect(radius?.body).toContain(`<th>test</th><td>${test?.method}</td>`);
    expect(radius?.body).toContain(`<th>drift if</th><td>p-value &lt; ${test?.threshold}</td>`);
  });

  it("draws reference bars in proportion to the reference histogram, and current bars on the same edges", () => {
    const name = "mean radius";
    const section = featureSections(html).find((s) => s.feature === name);
    const ref = built.reference.features.columns.find((c) => c.name === name) as NumericProfile;
    const cur = built.current.columns.find((c) => c.name === name) as NumericProfile;
    expect(cur.histogram.edges).toEqual(ref.histogram.edges);
    // The shift puts current values above the reference maximum: a `>` slot after the bins.
    expect(cur.histogram.above).toBeGreaterThan(0);
    const refBars = rects(section?.body ?? "", "ref");
    const curBars = rects(section?.body ?? "", "cur");
    const slotOffset = cur.histogram.below > 0 ? 1 : 0;
    expect(refBars).toHaveLength(ref.histogram.counts.length + slotOffset + 1);
    const refTotal = ref.histogram.counts.reduce((a, b) => a + b, 0);
    expect(refTotal).toBe(ref.count);
    const curTotal = cur.count;
    const tallest = Math.max(...refBars.map((b) => b.height), ...curBars.map((b) => b.height));
    const tallestShare = Math.max(...refBars.map((b) => b.share), ...curBars.map((b) => b.share));
    ref.histogram.counts.forEach((count, i) => {
      const bar = refBars.find((b) => b.slot === i + slotOffset);
      expect(bar?.share).toBeCloseTo(count / refTotal, 12);
      expect((bar?.height ?? NaN) / tallest).toBeCloseTo(count / refTotal / tallestShare, 3);
      const curBar = curBars.find((b) => b.slot === i + slotOffset);
      expect(curBar?.share).toBeCloseTo((cur.histogram.counts[i] ?? 0) / curTotal, 12);
      // Both sides stand on the same baseline.
      expect((bar?.y ?? 0) + (bar?.height ?? 0)).toBeCloseTo((curBar?.y ?? 0) + (curBar?.height ?? 0), 1);
    });
    const aboveBar = curBars.find((b) => b.slot === refBars.length - 1);
    expect(aboveBar?.share).toBeCloseTo(cur.histogram.above / curTotal, 12);
  });

  it("puts failed rules first and the passed ones in a collapsed block", () => {
    const failedTable = /<table class="rules failed">([\s\S]*?)<\/table>/.exec(html)?.[1];
    const failed = built.check.rules.filter((r) => !r.passed);
    if (failed.length === 0) expect(html).toContain("Every rule passed.");
    else expect(failedTable?.match(/<tr>/g)).toHaveLength(failed.length + 1);
    const passed = built.check.rules.filter((r) => r.passed);
    expect(passed.length).toBeGreaterThan(0);
    expect(html).toMatch(new RegExp(`<details class="rules-passed"><summary>${passed.length} passed rules</summary>`));
    expect(html.indexOf('<table class="rules failed">')).toBeLessThan(html.indexOf('<details class="rules-passed">'));
  });

  it("shows the drift kind and the per-window series with its threshold line", () => {
    const sections = featureSections(html);
    const radius = sections.find((s) => s.feature === "mean radius")?.body ?? "";
    expect(radius).toContain('<span class="drift-kind">instant</span>');
    expect(radius).toContain("step change between 03:00 and 04:00 that stays");
    const figure = /<figure class="window" data-size="1h">([\s\S]*?)<\/figure>/.exec(radius)?.[1] ?? "";
    const points = [...figure.matchAll(/<circle class="pt( drifted)?" cx="([^"]*)" cy="([^"]*)"/g)];
    expect(points).toHaveLength(6);
    expect(points.filter((p) => p[1] !== undefined)).toHaveLength(3);
    // x ascends with time; the threshold line sits where a p-value of 0.05 would.
    const xs = points.map((p) => Number(p[2]));
    expect([...xs].sort((a, b) => a - b)).toEqual(xs);
    const line = /<line class="threshold" data-threshold="([^"]*)" x1="[^"]*" y1="([^"]*)"/.exec(figure);
    expect(Number(line?.[1])).toBe(0.05);
    const ys = points.map((p) => Number(p[3]));
    // p-values are drawn on a linear 0..1 axis: y is linear in p through the first two points (p 0.6 and 0.4).
    const slope = ((ys[1] as number) - (ys[0] as number)) / (0.4 - 0.6);
    expect(slope).toBeLessThan(0);
    expect(Number(line?.[2])).toBeCloseTo((ys[0] as number) + (0.05 - 0.6) * slope, 1);
    // Features without window data get no chart.
    expect(sections.find((s) => s.feature === "mean area")?.body).not.toContain("<figure");
  });
});

describe("renderHtmlReport on synthetic tables", () => {
  const hostile = "<script>alert(1)</script>";
  const category = `"><img src=x onerror=alert(1)>`;
  const rows = 60;
  const reference: ColumnTable = {
    columns: [hostile, "colour"],
    values: [Array.from({ length: rows }, (_, i) => i % 10), Array.from({ length: rows }, (_, i) => ["red", "green", "blue"][i % 3] as string)],
    rows,
  };
  const current: ColumnTable = {
    columns: [hostile, "colour"],
    values: [Array.from({ length: rows }, (_, i) => (i % 10) + 5), Array.from({ length: rows }, (_, i) => (i % 4 === 0 ? category : "red"))],
    rows,
  };

  it("escapes feature names, categories and paths from the data", () => {
    const built = build(reference, current, `/data/${hostile}.csv`);
    const html = renderHtmlReport({ ...built, kinds: { [hostile]: { kind: "gradual", evidence: `trend in ${hostile}` } } });
    expect(html).not.toContain(hostile);
    expect(html).not.toContain(category);
    // The hostile texts stay text: no element or attribute comes out of them.
    const tags = [...html.matchAll(/<([a-zA-Z][\w-]*)((?:[^>"]|"[^"]*")*)>/g)];
    expect(tags.map((t) => t[1]?.toLowerCase())).not.toContain("img");
    expect(tags.map((t) => t[1]?.toLowerCase())).not.toContain("script");
    for (const t of tags) expect(t[2]).not.toMatch(/\s(src|on\w+)\s*=/i);
    expect(html).toContain(escapeHtml(hostile));
    const sections = featureSections(html);
    expect(sections.map((s) => unescape(s.feature))).toEqual([hostile, "colour"]);
    expect(sections[0]?.body).toContain(`trend in ${escapeHtml(hostile)}`);
  });

  it("draws categorical frequencies side by side, reference and current", () => {
    const built = build(reference, current, "ref.csv");
    const html = renderHtmlReport(built);
    const colour = featureSections(html).find((s) => s.feature === "colour")?.body ?? "";
    const refBars = rects(colour, "ref");
    const curBars = rects(colour, "cur");
    // red, green, blue (reference order, equal counts: then by current frequency, then name) and the new category.
    expect(refBars.map((b) => b.share)).toEqual([1 / 3, 1 / 3, 1 / 3, 0].map((x) => expect.closeTo(x, 12) as unknown as number));
    expect(curBars.map((b) => b.share)).toEqual([45 / 60, 0, 0, 15 / 60].map((x) => expect.closeTo(x, 12) as unknown as number));
    expect(colour).toContain("1 category not in the reference.");
    const labels = [...colour.matchAll(/<text [^>]*transform="rotate[^"]*">([^<]*)<\/text>/g)].map((m) => unescape(m[1] as string));
    expect(labels.slice(0, 3)).toEqual(["red", "blue", "green"]);
    expect(labels[3]?.startsWith('">')).toBe(true);
  });
});
