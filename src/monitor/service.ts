import { elementCount, MlshipError } from "../core/index.js";
import type { Tensor } from "../core/index.js";
import { defaultMonitorConfig } from "../package/index.js";
import type { Manifest, MonitorConfig } from "../package/index.js";
import type { ResolvedVersion } from "../registry/index.js";
import { tensorValues } from "../scoring/index.js";
import type { ScoringService } from "../scoring/index.js";
import { columnsOf, datasetDrift, referenceFromProfile } from "./drift.js";
import type { MethodOverride } from "./drift.js";
import { profileTable } from "./profile/index.js";
import { readDatasetFile } from "./readers.js";
import { checkRules, rowCountDrop } from "./rules.js";
import type { MonitorStore } from "./store.js";
import { classifyWindows } from "./kinds.js";
import { DEFAULT_WINDOW_SIZES, toWindowProfile, windowedDrift } from "./windows.js";
import type { WindowMode, WindowSeries } from "./windows.js";
import type { Cell, ColumnTable, DatasetDrift, DatasetProfile, ReferenceProfile, RuleResult } from "./types.js";

/** Tested windows a size needs before a drift kind is named from it (the classifier's own minimum). */
const MIN_KIND_WINDOWS = 6;

/** Rows sent to the model per scoring call while profiling predictions. */
const PREDICTION_CHUNK_ROWS = 2000;

/** Columns that hold the outcome in training files (left out of the features unless the model declares them). */
const LABEL_COLUMNS = ["label", "target"];

export interface MonitorDeps {
  scoring: ScoringService;
  store: MonitorStore;
}

/**
 * The model's input columns when it names them: its declared columns, else its inputs when each takes one value per
 * row (a Spark ML pipeline's input columns: an id or label column in the file is then not mistaken for a feature).
 */
function modelColumns(manifest: Manifest): string[] | undefined {
  const declared = manifest.signature.columns?.map((c) => c.name);
  if (declared !== undefined) return declared;
  const inputs = manifest.signature.inputs;
  return inputs.length > 0 && inputs.every((input) => input.shape.length === 1) ? inputs.map((input) => input.name) : undefined;
}

/** The feature columns of a dataset for a model: its declared (or per-column input) columns, else every column but the label ones. */
export function featureColumns(manifest: Manifest, table: ColumnTable, labelColumns: readonly string[] | undefined, file: string): string[] {
  const declared = modelColumns(manifest);
  if (declared !== undefined) {
    const missing = declared.filter((name) => !table.columns.includes(name));
    if (missing.length > 0) {
      throw new MlshipError(
        "MLSHIP_ERR_INPUT_MISSING",
        `${file}: missing column${missing.length > 1 ? "s" : ""} ${missing.map((m) => `'${m}'`).join(", ")} that the model declares (${declared.length} columns)`,
        { field: missing[0] },
      );
    }
    return declared;
  }
  const excluded = new Set(labelColumns ?? LABEL_COLUMNS);
  return table.columns.filter((name) => !excluded.has(name));
}

function restrict(table: ColumnTable, names: readonly string[]): ColumnTable {
  const columns = columnsOf(table, names);
  return { columns: [...names], values: names.map((n) => columns[n] ?? []), rows: table.rows };
}

/** Output tensors as columns: `name` for one value per row, `name[i]` for each element of a wider output. */
function outputColumns(outputs: Record<string, Tensor>, rows: number, into: Map<string, Cell[]>): void {
  for (const [name, tensor] of Object.entries(outputs)) {
    const values = tensorValues(tensor);
    const perRow = rows === 0 ? 0 : elementCount(tensor.shape) / rows;
    for (let k = 0; k < perRow; k++) {
      const column = perRow === 1 ? name : `${name}[${k}]`;
      let cells = into.get(column);
      if (cells === undefined) into.set(column, (cells = []));
      for (let r = 0; r < rows; r++) cells.push(values[r * perRow + k] ?? null);
    }
  }
}

/** Scores the feature rows with the version and profiles its outputs (the prediction distribution). */
export async function predictionTable(scoring: ScoringService, ref: string, features: ColumnTable): Promise<ColumnTable> {
  const columns = new Map<string, Cell[]>();
  for (let start = 0; start < features.rows; start += PREDICTION_CHUNK_ROWS) {
    const end = Math.min(features.rows, start + PREDICTION_CHUNK_ROWS);
    const data: Cell[][] = [];
    for (let r = start; r < end; r++) data.push(features.values.map((column) => column[r] ?? null));
    const result = await scoring.score(ref, { kind: "mlflow", body: { dataframe_split: { columns: features.columns, data } } }, { protocol: "monitor" });
    outputColumns(result.outputs, end - start, columns);
  }
  return { columns: [...columns.keys()], values: [...columns.values()], rows: features.rows };
}

export interface ProfileReferenceOptions {
  /** Columns to leave out as labels; default `label` and `target` (for models without declared columns). */
  labelColumns?: readonly string[];
  /** Also score the rows and profile the predictions. Default true. */
  predictions?: boolean;
  now?: () => Date;
}

/** Profiles a version's reference data (features and, by default, its predictions on them) and stores it. */
export async function profileReference(deps: MonitorDeps, resolved: ResolvedVersion, file: string, options: ProfileReferenceOptions = {}): Promise<ReferenceProfile> {
  const v = resolved.version;
  const { table, source } = await readDatasetFile(file);
  if (table.rows === 0) throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${file}: the dataset has no rows`, { field: "data" });
  const features = restrict(table, featureColumns(v.manifest, table, options.labelColumns, file));
  const profile: ReferenceProfile = {
    model: v.name,
    version: v.version,
    createdAt: (options.now ?? (() => new Date()))().toISOString(),
    source,
    features: profileTable(features),
    predictions: options.predictions === false ? undefined : profileTable(await predictionTable(deps.scoring, `${v.name}@${v.version}`, features)),
  };
  await deps.store.saveReference(profile);
  return profile;
}

export interface CheckReport {
  model: string;
  version: number;
  rows: number;
  source: string;
  rules: RuleResult[];
  drift: DatasetDrift;
  /** Features without drift results, and why (no values on one side). */
  skippedFeatures: { feature: string; reason: string }[];
  /** Drift of the model's outputs on the current rows against its outputs on the reference. */
  predictionDrift: DatasetDrift | undefined;
  /** Why there is no prediction drift, when there is none. */
  predictionDriftSkipped: string | undefined;
  /** Per window size, when the check ran over time windows: how many windows, how many had enough rows. */
  windows: { size: string; mode: WindowMode; windows: number; tested: number; driftedWindows: Record<string, number> }[] | undefined;
  /**
   * The kind of each drifted feature and output (instant, gradual, periodic, temporary), from the smallest window
   * size with enough windows, with the evidence.
   */
  kinds: { column: string; source: "features" | "predictions"; size: string; kind: string; evidence: string }[] | undefined;
  /** The failures that decide the exit status, by the `failOn` policy. */
  failures: string[];
  passed: boolean;
}

export type FailOn = "any" | "dataset" | "rules";

export interface CheckOptions {
  config?: MonitorConfig;
  /** A column of row timestamps: the data is also compared window by window, and each drift's kind is named. */
  timeColumn?: string;
  /** Window sizes (default 1h, 12h, 1d) and their mode (default tumbling). */
  windows?: readonly string[];
  windowMode?: WindowMode;
  /** Store every window's profile and drift with the version (default true when `timeColumn` is set). */
  storeWindows?: boolean;
  labelColumns?: readonly string[];
  /** `any`: an error rule or any drifted feature fails; `dataset`: an error rule or dataset drift; `rules`: rules only. */
  failOn?: FailOn;
  predictions?: boolean;
}

/** Compares a dataset with a version's stored reference: rule-based checks and drift of features and predictions. */
export async function checkDataset(deps: MonitorDeps, resolved: ResolvedVersion, file: string, options: CheckOptions = {}): Promise<CheckReport> {
  return (await checkDatasetWithProfiles(deps, resolved, file, options)).report;
}

/** `checkDataset`, with the reference and the current data's profile (on the reference's edges) for reports. */
export async function checkDatasetWithProfiles(
  deps: MonitorDeps,
  resolved: ResolvedVersion,
  file: string,
  options: CheckOptions = {},
): Promise<{ report: CheckReport; reference: ReferenceProfile; current: DatasetProfile; series: WindowSeries[] | undefined }> {
  const v = resolved.version;
  const reference = await deps.store.getReference(v.name, v.version);
  if (reference === undefined) {
    throw new MlshipError("MLSHIP_ERR_MONITOR_NO_REFERENCE", `model '${v.name}' version ${v.version} has no reference profile; run mlship monitor profile ${v.name}@${v.version} --data TRAIN.csv`, {
      field: "ref",
    });
  }
  const config = options.config ?? v.manifest.monitor ?? defaultMonitorConfig();
  const { table } = await readDatasetFile(file);
  const names = reference.features.columns.map((c) => c.name);
  const present = names.filter((n) => table.columns.includes(n));
  const current = restrict(table, present);
  const edges: Record<string, readonly number[]> = {};
  const kinds: Record<string, "numeric" | "categorical"> = {};
  for (const column of reference.features.columns) {
    kinds[column.name] = column.kind;
    if (column.kind === "numeric") edges[column.name] = column.histogram.edges;
  }
  const currentProfile: DatasetProfile = profileTable(current, { kinds, edges });
  const rules = checkRules({ current: currentProfile, reference: reference.features, config, expectedColumns: names });
  const referenceColumns = referenceFromProfile(reference.features);
  const currentColumns = columnsOf(current);
  // A column with no values on one side has nothing to compare; the null-rate rule reports it.
  const skippedFeatures: { feature: string; reason: string }[] = [];
  const testable = present.filter((n) => {
    if ((referenceColumns[n]?.count ?? 0) === 0) skippedFeatures.push({ feature: n, reason: "the reference has no values" });
    else if (!(currentColumns[n] ?? []).some((c) => c !== null)) skippedFeatures.push({ feature: n, reason: "the current data has no values" });
    else return true;
    return false;
  });
  const comparable = Object.fromEntries(testable.map((n) => [n, referenceColumns[n]])) as typeof referenceColumns;
  const methods: Record<string, MethodOverride> = {};
  for (const [feature, choice] of Object.entries(config.drift.methods)) {
    methods[feature] = { method: choice.method, threshold: choice.threshold };
  }
  const drift = datasetDrift(comparable, currentColumns, { methods, kinds, shareThreshold: config.drift.share });
  let predictionDrift: DatasetDrift | undefined;
  let predictionDriftSkipped: string | undefined;
  let predicted: ColumnTable | undefined;
  if (options.predictions === false) predictionDriftSkipped = "turned off";
  else if (reference.predictions === undefined) predictionDriftSkipped = "the reference profile has no predictions";
  else if (present.length !== names.length || skippedFeatures.length > 0) predictionDriftSkipped = "the current data lacks values of some features";
  else {
    try {
      predicted = await predictionTable(deps.scoring, `${v.name}@${v.version}`, current);
      const referencePredictions = referenceFromProfile(reference.predictions);
      const shared = Object.fromEntries(predicted.columns.filter((c) => referencePredictions[c] !== undefined).map((c) => [c, referencePredictions[c]])) as typeof referencePredictions;
      predictionDrift = datasetDrift(shared, columnsOf(predicted, Object.keys(shared)), { shareThreshold: config.drift.share });
      predicted = restrict(predicted, Object.keys(shared));
    } catch (err) {
      // Rows the model refuses (missing or invalid values) are the rules' findings; the check itself goes on.
      predictionDriftSkipped = `the model could not score the rows: ${err instanceof Error ? err.message : String(err)}`;
    }
  }
  const failOn = options.failOn ?? "any";
  const failures: string[] = [];
  for (const r of rules) if (!r.passed && r.severity === "error") failures.push(`rule ${r.rule}${r.column === undefined ? "" : ` on '${r.column}'`}: ${r.message}`);
  // A feature the reference has but the data leaves wholly empty cannot feed the model: as bad as a missing column.
  for (const s of skippedFeatures) if (s.reason === "the current data has no values") failures.push(`column '${s.feature}' has no values in the data`);
  if (failOn === "any") {
    for (const f of drift.features) if (f.drifted) failures.push(`drift in '${f.feature}': ${f.method} ${f.operator === "<" ? "p" : "score"} ${f.score.toPrecision(4)} ${f.operator} ${f.threshold}`);
    for (const f of predictionDrift?.features ?? []) if (f.drifted) failures.push(`prediction drift in '${f.feature}': ${f.method} ${f.score.toPrecision(4)} ${f.operator} ${f.threshold}`);
  } else if (failOn === "dataset") {
    if (drift.drifted) failures.push(`dataset drift: ${drift.driftedFeatures} of ${drift.features.length} features drifted (share ${drift.share.toFixed(3)} >= ${drift.shareThreshold})`);
    if (predictionDrift?.drifted === true) failures.push(`prediction drift: ${predictionDrift.driftedFeatures} of ${predictionDrift.features.length} outputs drifted`);
  }
  let windows: CheckReport["windows"];
  let windowKinds: CheckReport["kinds"];
  let series: WindowSeries[] | undefined;
  if (options.timeColumn !== undefined) {
    if (!table.columns.includes(options.timeColumn)) {
      throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", `${file}: no time column '${options.timeColumn}' (columns: ${table.columns.slice(0, 8).join(", ")}${table.columns.length > 8 ? ", ..." : ""})`, {
        field: "time-column",
      });
    }
    const timed = restrict(table, [...testable, options.timeColumn]);
    series = windowedDrift({
      reference: { ...reference, features: { ...reference.features, columns: reference.features.columns.filter((c) => testable.includes(c.name)) } },
      table: timed,
      timeColumn: options.timeColumn,
      sizes: options.windows ?? DEFAULT_WINDOW_SIZES,
      mode: options.windowMode ?? "tumbling",
      methods,
      shareThreshold: config.drift.share,
      ...(predicted === undefined ? {} : { predictions: predicted }),
    });
    if (options.storeWindows !== false) {
      const createdAt = new Date();
      for (const s of series) for (const w of s.windows) await deps.store.saveWindow(toWindowProfile(w, createdAt));
    }
    // Row-count drops between consecutive windows of a size (only the failures: the passes would flood the list).
    for (const s of series) {
      s.windows.forEach((w, i) => {
        const previous = s.windows[i - 1];
        if (previous === undefined || previous.rows === 0) return;
        const result = rowCountDrop(w.rows, previous.rows, config.rules.max_row_drop);
        if (!result.passed) {
          const labelled = { ...result, message: `${s.size} window from ${w.start}: ${result.message}` };
          rules.push(labelled);
          failures.push(`rule ${labelled.rule}: ${labelled.message}`);
        }
      });
    }
    windows = series.map((s) => {
      const driftedWindows: Record<string, number> = {};
      for (const w of s.windows) for (const f of w.drift?.features ?? []) if (f.drifted) driftedWindows[f.feature] = (driftedWindows[f.feature] ?? 0) + 1;
      return { size: s.size, mode: s.mode, windows: s.windows.length, tested: s.windows.filter((w) => !w.insufficient).length, driftedWindows };
    });
    // The finest size with enough tested windows names the kind (coarser sizes have too few points for a shape).
    const usable = series.filter((s) => s.windows.filter((w) => !w.insufficient).length >= MIN_KIND_WINDOWS).sort((a, b) => a.sizeMs - b.sizeMs)[0];
    windowKinds = usable === undefined ? [] : classifyWindows(usable.windows).filter((k) => k.kind !== "none").map((k) => ({ column: k.column, source: k.source, size: usable.size, kind: k.kind, evidence: k.evidence }));
  }
  const report: CheckReport = { model: v.name, version: v.version, rows: table.rows, source: file, rules, drift, skippedFeatures, predictionDrift, predictionDriftSkipped, windows, kinds: windowKinds, failures, passed: failures.length === 0 };
  return { report, reference, current: currentProfile, series };
}
