/**
 * Promotion gates: a candidate version is scored on a labelled holdout file and must meet every requirement and not
 * be worse than the alias's current target (scored on the same rows) by more than the margin.
 */
import { elementCount, MlshipError } from "../core/index.js";
import type { Tensor } from "../core/index.js";
import { compareWith, higherIsBetter } from "../feedback/index.js";
import type { FeedbackSpec, JoinedPrediction, QualityResult } from "../feedback/index.js";
import { featureColumns, readDatasetFile } from "../monitor/index.js";
import type { Cell, ColumnTable } from "../monitor/index.js";
import { QUALITY_METRICS } from "../package/index.js";
import type { Manifest, QualityMetric } from "../package/index.js";
import type { AliasEvent, Registry } from "../registry/index.js";
import { tensorValues } from "../scoring/index.js";
import type { ScoringService } from "../scoring/index.js";
import type { AuditLog, GateRequirement, GateResult, GateSpec } from "./types.js";

/** Label columns looked for, in order, when the gate does not name one. */
export const DEFAULT_LABEL_COLUMNS = ["label", "target", "y", "actual"] as const;

/** Rows sent to the model per scoring call. */
export const DEFAULT_GATE_BATCH_ROWS = 1000;

/** The protocol label gate scoring carries in scoring events (so the prediction log and metrics can tell it apart). */
export const GATE_PROTOCOL = "gate";

/** `computeQuality` of src/feedback, injected so the gate does not depend on when that module is wired. */
export type ComputeQuality = (rows: readonly JoinedPrediction[], spec: FeedbackSpec) => QualityResult;

/** `feedbackSpecOf` of src/feedback: which outputs carry the prediction and the probabilities. */
export type FeedbackSpecOf = (manifest: Manifest) => FeedbackSpec;

function isQualityMetric(name: string): name is QualityMetric {
  return (QUALITY_METRICS as readonly string[]).includes(name);
}

function qualityMetric(name: string, field: string, text: string): QualityMetric {
  if (!isQualityMetric(name)) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${field} "${text}": unknown metric "${name}"; use one of ${QUALITY_METRICS.join(", ")}`, { field });
  }
  return name;
}

const REQUIREMENT = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*([^\s]+)\s*$/;

/** Parses `accuracy >= 0.9` (spaces optional). Bad text is MLSHIP_ERR_INPUT_INVALID with field `require`. */
export function parseRequirement(text: string): GateRequirement {
  const match = REQUIREMENT.exec(String(text));
  if (match === null) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `require "${text}" is not "<metric> <op> <number>", e.g. "accuracy >= 0.9"`, { field: "require" });
  }
  const [, name = "", op = ">=", valueText = ""] = match;
  const metric = qualityMetric(name, "require", text);
  const value = Number(valueText);
  if (!Number.isFinite(value)) throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `require "${text}": "${valueText}" is not a number`, { field: "require" });
  return { metric, op: op as GateRequirement["op"], value, text: `${metric} ${op} ${value}` };
}

/** Parses `accuracy=0.01`: the largest regression allowed against the current version. Field `margin` on error. */
export function parseMargin(text: string): { metric: QualityMetric; value: number } {
  const eq = String(text).indexOf("=");
  if (eq <= 0) throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `margin "${text}" is not "<metric>=<number>", e.g. "accuracy=0.01"`, { field: "margin" });
  const metric = qualityMetric(text.slice(0, eq).trim(), "margin", text);
  const valueText = text.slice(eq + 1).trim();
  const value = Number(valueText);
  if (valueText === "" || !Number.isFinite(value) || value < 0) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `margin "${text}": "${valueText}" is not a number >= 0`, { field: "margin" });
  }
  return { metric, value };
}

/** `parseMargin` over several texts, as GateSpec.margin. */
export function parseMargins(texts: readonly string[]): Partial<Record<QualityMetric, number>> {
  const margins: Partial<Record<QualityMetric, number>> = {};
  for (const text of texts) {
    const { metric, value } = parseMargin(text);
    margins[metric] = value;
  }
  return margins;
}

export interface EvaluateGateOptions {
  scoring: ScoringService;
  registry: Registry;
  model: string;
  candidate: number;
  /** The alias whose current target the candidate is compared with. Default `production`. */
  alias?: string;
  spec: GateSpec;
  computeQuality: ComputeQuality;
  specOf: FeedbackSpecOf;
  /** Rows per scoring call. Default 1000. */
  batchRows?: number;
  now?: () => Date;
}

/** The column holding the actual labels or values: the gate's own, else the first of label, target, y, actual. */
export function labelColumnOf(table: ColumnTable, spec: GateSpec): string {
  if (spec.labelColumn !== undefined) {
    if (!table.columns.includes(spec.labelColumn)) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${spec.holdout}: no label column '${spec.labelColumn}' (columns: ${table.columns.join(", ")})`, { field: "labelColumn" });
    }
    return spec.labelColumn;
  }
  const found = DEFAULT_LABEL_COLUMNS.find((name) => table.columns.includes(name));
  if (found === undefined) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${spec.holdout}: no label column (looked for ${DEFAULT_LABEL_COLUMNS.join(", ")}); name it with labelColumn (--label)`, {
      field: "labelColumn",
    });
  }
  return found;
}

/** One value (or K values) per row of an output tensor. */
function perRowValues(tensor: Tensor, rows: number): { values: unknown[]; width: number } {
  const width = rows === 0 ? 0 : elementCount(tensor.shape) / rows;
  return { values: tensorValues(tensor), width };
}

function classText(value: unknown, labels: readonly string[] | undefined): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === "boolean" && labels?.length === 2) return labels[value ? 1 : 0] ?? null;
  if (labels !== undefined) {
    if (typeof value === "number" && Number.isInteger(value) && value >= 0 && value < labels.length) return labels[value] ?? null;
    // An index written as text ("1") is an index unless it is itself one of the labels.
    if (typeof value === "string" && /^\d+$/.test(value) && !labels.includes(value)) {
      const index = Number(value);
      if (index < labels.length) return labels[index] ?? null;
    }
  }
  if (typeof value === "number" && !Number.isFinite(value)) return null;
  return String(value);
}

function regressionValue(value: unknown): number | null {
  const n = typeof value === "number" ? value : typeof value === "string" && value.trim() !== "" ? Number(value) : Number.NaN;
  return Number.isFinite(n) ? n : null;
}

/** Scores the holdout rows with one version and pairs each prediction with its actual, as quality reads them. */
async function scoreVersion(
  options: EvaluateGateOptions,
  version: number,
  table: ColumnTable,
  labels: readonly Cell[],
  labelColumn: string,
): Promise<{ rows: JoinedPrediction[]; spec: FeedbackSpec }> {
  const record = await options.registry.getVersion(options.model, version);
  const spec = options.specOf(record.manifest);
  const columns = featureColumns(record.manifest, table, [labelColumn], options.spec.holdout);
  const indexes = columns.map((name) => table.columns.indexOf(name));
  const batchRows = Math.max(1, Math.floor(options.batchRows ?? DEFAULT_GATE_BATCH_ROWS));
  const at = (options.now?.() ?? new Date()).toISOString();
  const classification = spec.task !== "regression";
  const rows: JoinedPrediction[] = [];
  for (let start = 0; start < table.rows; start += batchRows) {
    const end = Math.min(table.rows, start + batchRows);
    const data: Cell[][] = [];
    for (let r = start; r < end; r++) data.push(indexes.map((c) => table.values[c]?.[r] ?? null));
    const result = await options.scoring.score(`${options.model}@${version}`, { kind: "mlflow", body: { dataframe_split: { columns, data } } }, { protocol: GATE_PROTOCOL });
    const count = end - start;
    const predictionTensor = result.outputs[spec.predictionOutput];
    if (predictionTensor === undefined) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${options.model}@${version} has no output '${spec.predictionOutput}' (outputs: ${Object.keys(result.outputs).join(", ")})`, {
        field: "feedback.prediction",
      });
    }
    const predicted = perRowValues(predictionTensor, count);
    const probabilityTensor = spec.probabilityOutput === undefined ? undefined : result.outputs[spec.probabilityOutput];
    const probabilities = probabilityTensor === undefined ? undefined : perRowValues(probabilityTensor, count);
    for (let i = 0; i < count; i++) {
      const r = start + i;
      const raw = predicted.values[i * predicted.width];
      const actualCell = labels[r] ?? null;
      const scores = probabilities === undefined ? null : (probabilities.values.slice(i * probabilities.width, (i + 1) * probabilities.width) as unknown[]).map(Number);
      const actual = classification ? classText(actualCell, spec.labels) : regressionValue(actualCell);
      rows.push({
        requestId: `gate-${r}`,
        row: r,
        model: options.model,
        version,
        variant: null,
        at,
        prediction: classification ? classText(raw, spec.labels) : regressionValue(raw),
        scores,
        actual,
        actualAt: actual === null ? null : at,
      });
    }
  }
  return { rows, spec };
}

const format = (x: number): string => String(Number(x.toPrecision(5)));

const compare = (observed: number, op: GateRequirement["op"], value: number): boolean => compareWith(observed, op, value);

/** The metric a gate without requirements and margins judges: not worse than the current version at all. */
function primaryMetric(spec: FeedbackSpec): QualityMetric {
  return spec.task === "regression" ? "rmse" : "accuracy";
}

/**
 * Scores the candidate (and the alias's current target, when there is one and it differs) on the holdout file and
 * judges the gate. A gate with neither requirements nor margins asks for "not worse than the current version" on
 * the primary metric (accuracy, or rmse for regression).
 */
export async function evaluateGate(options: EvaluateGateOptions): Promise<GateResult> {
  const { model, candidate, spec } = options;
  const alias = options.alias ?? "production";
  const { table } = await readDatasetFile(spec.holdout);
  if (table.rows === 0) throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${spec.holdout}: the holdout file has no rows`, { field: "holdout" });
  const labelColumn = labelColumnOf(table, spec);
  const labels = table.values[table.columns.indexOf(labelColumn)] ?? [];

  const modelRecord = await options.registry.getModel(model);
  const target = modelRecord.aliases[alias];
  const current = target !== undefined && target !== candidate ? target : null;

  const scoredCandidate = await scoreVersion(options, candidate, table, labels, labelColumn);
  const candidateQuality = options.computeQuality(scoredCandidate.rows, scoredCandidate.spec);
  const candidateMetrics: Record<string, number | null> = { ...candidateQuality.metrics };
  let currentMetrics: Record<string, number | null> | null = null;
  if (current !== null) {
    const scoredCurrent = await scoreVersion(options, current, table, labels, labelColumn);
    currentMetrics = { ...options.computeQuality(scoredCurrent.rows, scoredCurrent.spec).metrics };
  }

  const checks: GateResult["checks"] = [];
  if (candidateQuality.outcomes === 0) checks.push({ check: `${spec.holdout}: no row has a usable value in '${labelColumn}'`, passed: false });
  for (const requirement of spec.require ?? []) {
    const observed = candidateMetrics[requirement.metric] ?? null;
    if (observed === null) {
      checks.push({ check: `${requirement.metric} could not be computed on the holdout (required ${requirement.op} ${requirement.value}): FAILED`, passed: false });
      continue;
    }
    const passed = compare(observed, requirement.op, requirement.value);
    checks.push({ check: `${requirement.metric} ${format(observed)} ${requirement.op} ${requirement.value}: ${passed ? "ok" : "FAILED"}`, passed });
  }
  const margins: Partial<Record<QualityMetric, number>> =
    (spec.require?.length ?? 0) === 0 && Object.keys(spec.margin ?? {}).length === 0 ? { [primaryMetric(scoredCandidate.spec)]: 0 } : (spec.margin ?? {});
  for (const [name, allowed] of Object.entries(margins) as [QualityMetric, number][]) {
    const mine = candidateMetrics[name] ?? null;
    if (current === null || currentMetrics === null) {
      checks.push({ check: `${name} margin ${allowed}: no current version on '${alias}' to compare with: ok`, passed: true });
      continue;
    }
    const theirs = currentMetrics[name] ?? null;
    if (theirs === null) {
      checks.push({ check: `${name} margin ${allowed}: the current version ${current} has no ${name} on the holdout: ok`, passed: true });
      continue;
    }
    if (mine === null) {
      checks.push({ check: `${name} could not be computed for version ${candidate} (current version ${current}: ${format(theirs)}): FAILED`, passed: false });
      continue;
    }
    // Regression in the metric's bad direction, as a positive number when the candidate is worse.
    const regression = higherIsBetter(name) ? theirs - mine : mine - theirs;
    const passed = regression <= allowed + 1e-12;
    const direction = higherIsBetter(name) ? "higher is better" : "lower is better";
    checks.push({
      check: `${name} ${format(mine)} vs ${format(theirs)} (version ${current}, ${direction}): ${regression > 0 ? `worse by ${format(regression)}` : "not worse"}, margin ${allowed}: ${passed ? "ok" : "FAILED"}`,
      passed,
    });
  }
  return {
    passed: checks.every((c) => c.passed),
    model,
    candidate,
    current,
    rows: table.rows,
    candidateMetrics,
    currentMetrics,
    checks,
  };
}

/** Who judged or moved, and why, as the audit log records it. */
export interface AuditedActor {
  /** Where gate.pass / gate.fail and alias.set are recorded (the rollout service's audit log). */
  audit: Pick<AuditLog, "record">;
  by: string;
  reason?: string;
}

/** Records a gate's verdict (`gate.pass` / `gate.fail`) with the result, the alias and the holdout file. */
export async function recordGate(actor: AuditedActor, result: GateResult, spec: GateSpec, alias: string): Promise<void> {
  await actor.audit.record({
    actor: actor.by,
    action: result.passed ? "gate.pass" : "gate.fail",
    model: result.model,
    version: result.candidate,
    ...(actor.reason === undefined ? {} : { reason: actor.reason }),
    details: { ...result, alias, holdout: spec.holdout },
  });
}

/** Moves the alias in the registry (its alias history) and records `alias.set` in the audit log. */
export async function setAliasAudited(registry: Pick<Registry, "setAlias">, actor: AuditedActor, model: string, alias: string, version: number, details: Record<string, unknown> = {}): Promise<AliasEvent> {
  const event = await registry.setAlias(model, alias, version, { by: actor.by, reason: actor.reason });
  await actor.audit.record({
    actor: actor.by,
    action: "alias.set",
    model,
    version,
    ...(actor.reason === undefined ? {} : { reason: actor.reason }),
    // aliasEventId: the audit log lists the registry's alias event once, as this entry.
    details: { alias, from: event.from, to: event.to, aliasEventId: event.id, ...details },
  });
  return event;
}

export interface PromoteWithGateOptions extends EvaluateGateOptions, AuditedActor {}

/**
 * Evaluates the gate, records the verdict, and moves the alias to the candidate when it passed. A failed gate is
 * MLSHIP_ERR_ROLLOUT_GATE_FAILED with the GateResult's fields in `details` (the alias does not move).
 */
export async function promoteWithGate(options: PromoteWithGateOptions): Promise<{ result: GateResult; event: AliasEvent }> {
  const alias = options.alias ?? "production";
  const result = await evaluateGate(options);
  await recordGate(options, result, options.spec, alias);
  if (!result.passed) throw gateFailedError(result);
  const event = await setAliasAudited(options.registry, options, options.model, alias, options.candidate, { gate: "passed" });
  return { result, event };
}

/** MLSHIP_ERR_ROLLOUT_GATE_FAILED naming the failed checks, with the result in `details`. */
export function gateFailedError(result: GateResult): MlshipError {
  const failed = result.checks.filter((c) => !c.passed).map((c) => c.check);
  return new MlshipError("MLSHIP_ERR_ROLLOUT_GATE_FAILED", `gate failed for ${result.model}@${result.candidate}: ${failed.join("; ")}`, {
    details: { ...result },
  });
}
