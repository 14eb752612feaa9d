/**
 * The drift summary of a model version for the dashboard (`GET .../monitor/summary`): the newest stored windows of
 * one size, each feature's (and each prediction output's) drift statistic over them, its drift kind, the histogram
 * of the reference against the newest window with data, and that window's data-quality rule results.
 *
 * Everything is read from what the monitor stored (reference and window profiles with their drift verdicts); the
 * drift kind and the rules are computed here with the same code and inputs as live monitoring (`live.ts`):
 * `classifyWindows` over the windows as `fromWindowProfile` reads them back, and `checkRules` of the window against
 * the reference's features and the version's monitor config.
 */
import { MlshipError } from "../core/index.js";
import { defaultMonitorConfig } from "../package/index.js";
import type { MonitorConfig } from "../package/index.js";
import type { VersionRecord } from "../registry/index.js";
import type { FeatureDriftSummary, FeatureWindowPoint, HistogramOverlay, MonitorSummary } from "../ui/contract.js";
import { DEFAULT_THRESHOLDS, defaultMethod } from "./drift.js";
import { classifyWindows } from "./kinds.js";
import type { ColumnKind, SeriesSource } from "./kinds.js";
import { histogramOn, sameEdges } from "./profile/index.js";
import { checkRules } from "./rules.js";
import type { MonitorStore, WindowProfile, WindowVerdicts } from "./store.js";
import type { CategoricalProfile, ColumnProfile, DatasetDrift, DatasetProfile, FeatureDrift, NumericProfile } from "./types.js";
import { parseWindowSize } from "./windows.js";
import type { WindowResult } from "./windows.js";

/** Windows shown when the query names no `limit`: two days of one-hour windows (as live monitoring classifies over). */
export const DEFAULT_SUMMARY_WINDOWS = 48;
export const MAX_SUMMARY_WINDOWS = 1000;
/** Categories of a categorical histogram: the reference's most frequent ones, then "other". */
export const MAX_HISTOGRAM_CATEGORIES = 20;
export const OTHER_BIN = "other";

const TESTS = new Set(["ks", "chisquare", "z"]);

export interface MonitorSummaryQuery {
  /** A window size label; default the smallest size stored for the version. */
  size?: string;
  /** The newest this many windows. Default 48. */
  limit?: number;
}

/** `size` as given, or a 400 naming `size`. */
export function summarySizeOf(text: string | undefined): string | undefined {
  if (text === undefined || text.trim() === "") return undefined;
  const size = text.trim();
  try {
    parseWindowSize(size);
  } catch (error) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `size: ${error instanceof Error ? error.message : String(error)}`, { field: "size", cause: error });
  }
  return size;
}

/** `limit` as a whole number in 1..1000, or a 400 naming `limit`. */
export function summaryLimitOf(text: string | undefined): number {
  if (text === undefined || text.trim() === "") return DEFAULT_SUMMARY_WINDOWS;
  const trimmed = text.trim();
  const limit = /^\d+$/.test(trimmed) ? Number(trimmed) : Number.NaN;
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_SUMMARY_WINDOWS) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `limit must be a whole number from 1 to ${MAX_SUMMARY_WINDOWS}, got ${JSON.stringify(text)}`, { field: "limit" });
  }
  return limit;
}

/** Shares of counts; empty when they add up to nothing. */
function shares(counts: readonly number[]): number[] {
  const total = counts.reduce((a, b) => a + b, 0);
  return total > 0 ? counts.map((c) => c / total) : [];
}

/**
 * Reference against current on the reference's bins. Values of the window outside the reference's range (counted
 * apart as `below`/`above` on fixed edges) are folded into the first and last bins, and their shares reported too.
 */
function numericOverlay(reference: NumericProfile, current: NumericProfile | undefined): HistogramOverlay {
  const edges = reference.histogram.edges;
  const overlay: HistogramOverlay = { kind: "numeric", edges: [...edges], reference: shares(reference.histogram.counts), current: [] };
  if (current === undefined || current.count === 0) return overlay;
  let histogram = current.histogram;
  if (!sameEdges(histogram.edges, edges)) {
    // Binned on other edges: the reference was profiled again after the window was stored. Its sample re-binned is
    // the closest to the same picture (every value while the window had at most `sampleSize`).
    histogram = histogramOn(edges, current.sample);
    overlay.currentFromSample = true;
  }
  const counts = [...histogram.counts];
  counts[0] = (counts[0] as number) + histogram.below;
  counts[counts.length - 1] = (counts[counts.length - 1] as number) + histogram.above;
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return overlay;
  overlay.current = counts.map((c) => c / total);
  overlay.currentBelow = histogram.below / total;
  overlay.currentAbove = histogram.above / total;
  return overlay;
}

/** The reference's most frequent categories (at most 20, ties by name), then "other" for the rest of each side. */
function categoricalOverlay(reference: CategoricalProfile, current: CategoricalProfile | undefined): HistogramOverlay {
  const top = Object.entries(reference.frequencies)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .slice(0, MAX_HISTOGRAM_CATEGORIES)
    .map(([category]) => category);
  const bins = (profile: CategoricalProfile): number[] => {
    const counts = top.map((category) => profile.frequencies[category] ?? 0);
    const shown = counts.reduce((a, b) => a + b, 0);
    return [...counts, profile.count - shown];
  };
  return {
    kind: "categorical",
    categories: [...top, OTHER_BIN],
    reference: shares(bins(reference)),
    current: current === undefined || current.count === 0 ? [] : shares(bins(current)),
  };
}

function overlayOf(reference: ColumnProfile, current: ColumnProfile | undefined): HistogramOverlay {
  if (reference.kind === "numeric") return numericOverlay(reference, current?.kind === "numeric" ? current : undefined);
  return categoricalOverlay(reference, current?.kind === "categorical" ? current : undefined);
}

function driftOf(window: WindowVerdicts, source: SeriesSource): DatasetDrift | undefined {
  return source === "features" ? window.drift : window.predictionDrift;
}

/** The method a column would be tested with when no window has a verdict yet: the override, else the default selection. */
function expectedMethod(column: ColumnProfile, override: { method?: string; threshold?: number } | undefined): Pick<FeatureDriftSummary, "method" | "threshold" | "operator"> {
  const method = (override?.method ?? defaultMethod(column.kind, column.count, column.distinct)) as FeatureDrift["method"];
  return { method, threshold: override?.threshold ?? DEFAULT_THRESHOLDS[method], operator: TESTS.has(method) ? "<" : ">=" };
}

function columnSummaries(
  reference: DatasetProfile,
  windows: readonly WindowVerdicts[],
  source: SeriesSource,
  kinds: readonly ColumnKind[],
  newestWithData: WindowProfile | undefined,
  config: MonitorConfig,
): FeatureDriftSummary[] {
  const currentProfile = newestWithData === undefined ? undefined : source === "features" ? newestWithData.features : newestWithData.predictions;
  const currentByName = new Map((currentProfile?.columns ?? []).map((c) => [c.name, c]));
  return reference.columns.map((column) => {
    const series: FeatureWindowPoint[] = [];
    let latest: FeatureDrift | null = null;
    for (const window of windows) {
      const drift = driftOf(window, source)?.features.find((f) => f.feature === column.name);
      series.push({ start: window.start, statistic: drift?.statistic ?? null, score: drift?.score ?? null, drifted: drift?.drifted ?? null });
      if (drift !== undefined) latest = drift;
    }
    // Live monitoring tests prediction outputs with the default selection; the config's overrides are for features.
    const method = latest === null ? expectedMethod(column, source === "features" ? config.drift.methods[column.name] : undefined) : { method: latest.method, threshold: latest.threshold, operator: latest.operator };
    const kind = kinds.find((k) => k.column === column.name && k.source === source);
    return {
      feature: column.name,
      kind: column.kind,
      ...method,
      series,
      latest,
      driftKind: kind === undefined ? null : { kind: kind.kind, evidence: kind.evidence },
      histogram: newestWithData === undefined ? null : overlayOf(column, currentByName.get(column.name)),
    };
  });
}

/** A window's verdicts as the classifier takes them (it reads the start and the drift results, never the profiles). */
function verdictsAsResult(window: WindowVerdicts): WindowResult {
  const empty: DatasetProfile = { format: 1, rows: window.rows, columns: [] };
  return { ...window, features: empty, predictions: undefined };
}

/** The drift summary of a version (see the file's doc). `version` is the registry's record (a 404 is the caller's). */
export async function monitorSummary(store: MonitorStore, version: Pick<VersionRecord, "name" | "version" | "manifest">, query: MonitorSummaryQuery = {}): Promise<MonitorSummary> {
  const model = version.name;
  const limit = query.limit ?? DEFAULT_SUMMARY_WINDOWS;
  const [reference, storedSizes] = await Promise.all([store.getReference(model, version.version), store.windowSizes(model, version.version)]);
  // Sizes stored by other tools may not parse; they are listed but never chosen by default.
  const parsable = storedSizes.filter((s) => {
    try {
      parseWindowSize(s);
      return true;
    } catch {
      return false;
    }
  });
  parsable.sort((a, b) => parseWindowSize(a) - parseWindowSize(b) || (a < b ? -1 : 1));
  const sizes = [...parsable, ...storedSizes.filter((s) => !parsable.includes(s)).sort()];
  const size = query.size ?? parsable[0] ?? null;
  const windows = size === null ? [] : await store.listWindowVerdicts(model, version.version, { size, limit });
  const newest = [...windows].reverse().find((w) => w.rows > 0);
  // Only the window the histograms and rules are drawn from is read with its profiles.
  const newestWithData = newest === undefined || reference === undefined ? undefined : await store.getWindow(model, version.version, newest.size, newest.start);
  const summary: MonitorSummary = {
    model,
    version: version.version,
    hasReference: reference !== undefined,
    size,
    sizes,
    windows: windows.map((w) => ({ start: w.start, end: w.end, rows: w.rows, insufficient: w.insufficient, datasetDrifted: w.drift?.drifted ?? null, share: w.drift?.share ?? null })),
    features: [],
    predictions: [],
    rules: [],
    latestWindow: newest === undefined ? null : { start: newest.start, end: newest.end },
  };
  if (reference === undefined) return summary;
  const config = version.manifest.monitor ?? defaultMonitorConfig();
  const kinds = classifyWindows(windows.map(verdictsAsResult));
  summary.features = columnSummaries(reference.features, windows, "features", kinds, newestWithData, config);
  if (reference.predictions !== undefined) summary.predictions = columnSummaries(reference.predictions, windows, "predictions", kinds, newestWithData, config);
  if (newestWithData !== undefined) {
    // As live monitoring checks a closed window: the columns it profiled are the expected ones.
    summary.rules = checkRules({
      current: newestWithData.features,
      reference: reference.features,
      config,
      expectedColumns: newestWithData.features.columns.map((c) => c.name),
    });
  }
  return summary;
}
