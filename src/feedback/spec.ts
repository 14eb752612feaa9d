/**
 * What the feedback loop reads from a model version (`feedbackSpecOf`), and how one scoring event becomes logged
 * prediction rows (`recordsOf`).
 */
import { createHash, randomUUID } from "node:crypto";
import { elementCount } from "../core/index.js";
import type { DType, Tensor } from "../core/index.js";
import { FEEDBACK_TASKS, defaultAs } from "../package/index.js";
import type { FeedbackTask, Manifest, PostprocessStep } from "../package/index.js";
import { fromFloat16Bits, jsonOutputNames, jsonTextValue, postprocessOutputSpecs } from "../scoring/index.js";
import type { ScoringEvent } from "../scoring/index.js";
import type { FeedbackSpec, PredictionRecord, Variant } from "./types.js";

/** Share of `sampled` predictions whose inputs are logged in full, when the package does not say. */
export const DEFAULT_SAMPLE_RATE = 0.1;
/** An input tensor with more elements than this per row is logged as its digest, never in full. */
export const MAX_LOGGED_ELEMENTS = 4096;
/** The same bound for text (BYTES) inputs, in characters per row: an encoded image is kept as its digest. */
export const MAX_LOGGED_CHARS = 65_536;

const FLOAT_DTYPES: readonly DType[] = ["float16", "float32", "float64"];
const CLASS_DTYPES: readonly DType[] = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool", "string"];

interface OutputFacts {
  dtype: DType;
  shape: number[];
}

/** Every output a result may hold, with its dtype and shape: the model's own, then what post-processing adds. */
function outputFacts(manifest: Manifest): Map<string, OutputFacts> {
  return new Map(postprocessOutputSpecs(manifest.signature.outputs, manifest.postprocess).map((o) => [o.name, { dtype: o.dtype, shape: o.shape }]));
}

type LabelsStep = Extract<PostprocessStep, { type: "labels" }>;

const labelsSteps = (manifest: Manifest): LabelsStep[] =>
  manifest.postprocess.filter((s): s is LabelsStep => s.type === "labels");

/** Width of a `[rows, K]` output, or undefined for any other shape. */
function classWidth(facts: OutputFacts | undefined): number | undefined {
  if (facts === undefined || facts.shape.length !== 2) return undefined;
  const k = facts.shape[1] as number;
  return k >= 2 ? k : undefined;
}

function classificationTask(classes: number | undefined): FeedbackTask {
  return classes === 2 ? "binary_classification" : "multiclass_classification";
}

/**
 * The feedback spec of a model version: the package's `feedback:` section, with what it leaves out detected from the
 * signature, post-processing and metadata. Never throws for a valid manifest: every model gets a spec.
 *
 * - prediction output: the `as` of a `labels` step, else an output named `label` or `prediction`, else the first;
 * - task: the `task` tag when it is (or names) a task, else classification when a `labels` step exists or the
 *   prediction is an integer or text, else regression when the model has a single float output;
 * - probability output (classification): a `softmax` step's output, else a float `[rows, K]` output with K >= 2;
 * - labels: the `labels` step's, else `metadata.class_labels`; positive label `labels[1]` for a binary model.
 */
export function feedbackSpecOf(manifest: Manifest): FeedbackSpec {
  const section = manifest.feedback ?? {};
  const facts = outputFacts(manifest);
  const names = [...facts.keys()];
  const steps = labelsSteps(manifest);
  const firstLabelsStep = steps[0];

  const predictionOutput =
    section.prediction ??
    (firstLabelsStep === undefined ? undefined : firstLabelsStep.as ?? defaultAs("labels", firstLabelsStep.output)) ??
    ["label", "prediction"].find((n) => facts.has(n)) ??
    (manifest.signature.outputs[0]?.name as string);
  const predictionStep = steps.find((s) => (s.as ?? defaultAs("labels", s.output)) === predictionOutput) ?? firstLabelsStep;
  const predictionFacts = facts.get(predictionOutput);

  const detectedLabels = section.labels ?? predictionStep?.labels ?? manifest.metadata.class_labels;
  const probabilityCandidate = (): string | undefined => {
    if (section.probabilities !== undefined) return section.probabilities;
    const softmax = manifest.postprocess.find((s) => s.type === "softmax");
    if (softmax !== undefined) return softmax.as ?? defaultAs("softmax", softmax.output);
    const wide = names.filter((n) => n !== predictionOutput && FLOAT_DTYPES.includes((facts.get(n) as OutputFacts).dtype) && classWidth(facts.get(n)) !== undefined);
    return wide.find((n) => classWidth(facts.get(n)) === detectedLabels?.length) ?? wide[0];
  };
  const probabilityGuess = probabilityCandidate();
  const classes = detectedLabels?.length ?? classWidth(facts.get(probabilityGuess ?? ""));

  const task = section.task ?? taskFromTag(manifest.metadata.tags?.task, classes) ?? detectTask(manifest, predictionFacts, steps.length > 0, classes);
  const classification = task !== "regression";

  const spec: FeedbackSpec = {
    task,
    predictionOutput,
    inputs: section.log_inputs ?? "full",
    sampleRate: section.sample_rate ?? DEFAULT_SAMPLE_RATE,
    thresholds: section.thresholds ?? [],
  };
  if (classification) {
    if (probabilityGuess !== undefined) spec.probabilityOutput = probabilityGuess;
    if (detectedLabels !== undefined) spec.labels = [...detectedLabels];
    const positive = section.positive ?? (task === "binary_classification" ? detectedLabels?.[1] : undefined);
    if (positive !== undefined) spec.positiveLabel = positive;
  }
  return spec;
}

/** A `task` tag names a feedback task directly, or loosely (`multiclass_image_classification`, `classification`). */
function taskFromTag(tag: string | undefined, classes: number | undefined): FeedbackTask | undefined {
  if (tag === undefined) return undefined;
  const lower = tag.toLowerCase();
  if ((FEEDBACK_TASKS as readonly string[]).includes(lower)) return lower as FeedbackTask;
  if (lower.includes("regression")) return "regression";
  if (lower.includes("binary")) return "binary_classification";
  if (lower.includes("multiclass")) return "multiclass_classification";
  if (lower.includes("classification")) return classificationTask(classes);
  return undefined;
}

function detectTask(manifest: Manifest, prediction: OutputFacts | undefined, hasLabelsStep: boolean, classes: number | undefined): FeedbackTask {
  if (hasLabelsStep || (prediction !== undefined && CLASS_DTYPES.includes(prediction.dtype))) return classificationTask(classes);
  const floats = manifest.signature.outputs.filter((o) => FLOAT_DTYPES.includes(o.dtype));
  if (floats.length === 1 && manifest.signature.outputs.length === 1) {
    // One float output is a regression unless it is clearly a score per class.
    return classWidth(floats[0]) === undefined || classes === undefined ? "regression" : classificationTask(classes);
  }
  return prediction !== undefined && classWidth(prediction) !== undefined ? classificationTask(classWidth(prediction)) : "regression";
}

// ---------------------------------------------------------------------------------------------------------------
// Records

type JsonValue = number | string | boolean | null | JsonValue[];

/** Exact powers of ten (every one up to 1e22 is a double). */
const POW10 = Array.from({ length: 23 }, (_, i) => 10 ** i);

/**
 * The shortest decimal that reads back as the same float32, so a logged `13.17` is not `13.170000076293945`.
 * JSON has no NaN or Infinity: those are logged as null.
 *
 * The result is exactly `Number(value.toPrecision(d))` for the smallest d that reads back, but computed by
 * arithmetic (this runs for every logged float): with k the d-digit integer nearest |value| * 10^e, k / 10^e (or
 * k * 10^-e) is the double nearest the decimal, as parsing it would give, since 10^e and k are exact. Where the
 * scaled value is too close to a rounding tie, or the estimated magnitude is off by one (log10 near a power of
 * ten), or 10^e is not exact, `toPrecision` decides.
 */
function float32Value(value: number): number | null {
  if (!Number.isFinite(value)) return null;
  if (value === 0) return 0;
  const magnitude = Math.abs(value);
  const exponent = decimalExponent(magnitude);
  for (let digits = 1; digits < 9; digits++) {
    const candidate = shortDecimal(value, magnitude, exponent, digits);
    if (Math.fround(candidate) === value) return candidate;
  }
  return Number(value.toPrecision(9));
}

/**
 * floor(log10(magnitude)), by comparison with the powers of ten where they are exact enough: Math.log10 took a fifth
 * of the time a logged row's inputs took. Near a power of ten below 1 the product may round to the other side; an
 * estimate off by one only sends `shortDecimal` to `toPrecision`, as with log10.
 */
function decimalExponent(magnitude: number): number {
  if (magnitude >= 1 && magnitude < 1e22) {
    let e = 0;
    while (magnitude >= (POW10[e + 1] as number)) e++;
    return e;
  }
  if (magnitude < 1 && magnitude >= 1e-22) {
    let e = 1;
    while (magnitude * (POW10[e] as number) < 1) e++;
    return -e;
  }
  return Math.floor(Math.log10(magnitude));
}

/** `Number(value.toPrecision(digits))`, by arithmetic where that is exact (see `float32Value`). */
function shortDecimal(value: number, magnitude: number, exponent: number, digits: number): number {
  const e = digits - 1 - exponent;
  if (e <= 22 && e >= -22) {
    const scale = POW10[e < 0 ? -e : e] as number;
    const scaled = e >= 0 ? magnitude * scale : magnitude / scale;
    const floor = Math.floor(scaled);
    const fraction = scaled - floor;
    // The scaled value's rounding error is far below 1e-6 (it is under 1e9, to 2^-53 relative).
    if (scaled >= (POW10[digits - 1] as number) && scaled < (POW10[digits] as number) && Math.abs(fraction - 0.5) > 1e-6) {
      const k = fraction > 0.5 ? floor + 1 : floor;
      const decimal = e >= 0 ? k / scale : k * scale;
      return value < 0 ? -decimal : decimal;
    }
  }
  return Number(value.toPrecision(digits));
}

/** Element `index` of a tensor as a JSON value (bigint as number, bool as boolean, float16 decoded). */
function element(tensor: Tensor, index: number): JsonValue {
  const raw = tensor.data[index];
  switch (tensor.dtype) {
    case "string": return raw as string;
    case "bool": return (raw as number) !== 0;
    case "int64":
    case "uint64": return Number(raw as bigint);
    case "float16": return finite(fromFloat16Bits(raw as number));
    case "float32": return float32Value(raw as number);
    default: return finite(raw as number);
  }
}

function finite(value: number): number | null {
  return Number.isFinite(value) ? value : null;
}

/** Where one row's elements sit in a tensor: a tensor without the batch axis gives every row the whole of itself. */
function rowSpan(tensor: Tensor, row: number, rows: number): { start: number; count: number; shape: number[] } {
  if (tensor.shape.length > 0 && tensor.shape[0] === rows) {
    const shape = tensor.shape.slice(1);
    const count = elementCount(shape);
    return { start: row * count, count, shape };
  }
  return { start: 0, count: elementCount(tensor.shape), shape: tensor.shape };
}

/** One row of a tensor as JSON: a scalar for `[rows]` tensors, nested arrays for `[rows, ...]`. */
function rowValue(tensor: Tensor, row: number, rows: number): JsonValue {
  const { start, shape } = rowSpan(tensor, row, rows);
  const build = (offset: number, dims: number[]): JsonValue => {
    if (dims.length === 0) return element(tensor, offset);
    const [outer, ...inner] = dims as [number, ...number[]];
    const step = elementCount(inner);
    const out: JsonValue[] = new Array<JsonValue>(outer);
    for (let i = 0; i < outer; i++) out[i] = build(offset + i * step, inner);
    return out;
  };
  return build(start, shape);
}

/** Flat numbers of one row (class scores). */
function rowNumbers(tensor: Tensor, row: number, rows: number): number[] {
  const { start, count } = rowSpan(tensor, row, rows);
  const out: number[] = new Array<number>(count);
  for (let i = 0; i < count; i++) {
    const v = element(tensor, start + i);
    out[i] = typeof v === "number" ? v : Number.NaN;
  }
  return out;
}

/** A row too big to log in full: its digest over the raw row (elements as text for BYTES tensors). */
function rowDigest(tensor: Tensor, row: number, rows: number): { sha256: string; dtype: DType; shape: number[] } {
  const { start, count, shape } = rowSpan(tensor, row, rows);
  const hash = createHash("sha256");
  if (Array.isArray(tensor.data)) {
    for (let i = start; i < start + count; i++) hash.update(`${JSON.stringify(tensor.data[i])}\n`);
  } else {
    const typed = tensor.data;
    const bytes = typed.BYTES_PER_ELEMENT;
    hash.update(new Uint8Array(typed.buffer, typed.byteOffset + start * bytes, count * bytes));
  }
  return { sha256: hash.digest("hex"), dtype: tensor.dtype, shape };
}

function tooBig(tensor: Tensor, row: number, rows: number): boolean {
  const { start, count } = rowSpan(tensor, row, rows);
  if (count > MAX_LOGGED_ELEMENTS) return true;
  if (!Array.isArray(tensor.data)) return false;
  let chars = 0;
  for (let i = start; i < start + count; i++) chars += (tensor.data[i] as string).length;
  return chars > MAX_LOGGED_CHARS;
}

/**
 * The JSON text of each column's key as `rowInputs` writes it (`"name":`, with a leading comma after the first), or
 * null when its object would not come out in column order: JSON.stringify puts integer-like keys first, a repeated
 * name keeps its first place with its last value, and `__proto__` is no own key at all. Per manifest.
 */
const columnKeysCache = new WeakMap<Manifest, readonly string[] | null>();
function columnKeys(manifest: Manifest): readonly string[] | null {
  let keys = columnKeysCache.get(manifest);
  if (keys === undefined) {
    const names = (manifest.signature.columns ?? []).map((c) => c.name);
    const plain = new Set(names).size === names.length && names.every((n) => n !== "__proto__" && !/^(?:0|[1-9]\d*)$/.test(n));
    keys = plain ? names.map((n, i) => `${i === 0 ? "" : ","}${JSON.stringify(n)}:`) : null;
    columnKeysCache.set(manifest, keys);
  }
  return keys;
}

/** An element as JSON text: what JSON.stringify writes for it inside an object. */
function elementText(tensor: Tensor, index: number): string {
  const value = element(tensor, index);
  return typeof value === "number" ? String(value) : JSON.stringify(value);
}

/**
 * `JSON.stringify(rowInputs(...))`. The common tabular case (one input, one value per column) is written out
 * directly: building an object of some thirty keys per row and walking it again cost more than the values.
 */
function rowInputsText(inputs: Record<string, Tensor>, manifest: Manifest, row: number, rows: number): string {
  const columns = manifest.signature.columns;
  if (columns !== undefined) {
    const names = Object.keys(inputs);
    const only = names.length === 1 ? names[0] : undefined;
    const tensor = only !== undefined && only === (manifest.signature.columnsInput ?? manifest.signature.inputs[0]?.name) ? inputs[only] : undefined;
    const keys = tensor === undefined ? null : columnKeys(manifest);
    if (tensor !== undefined && keys !== null) {
      const { start, count } = rowSpan(tensor, row, rows);
      if (count === keys.length) {
        let text = "{";
        for (let c = 0; c < count; c++) text += (keys[c] as string) + elementText(tensor, start + c);
        return `${text}}`;
      }
    }
  }
  return JSON.stringify(rowInputs(inputs, manifest, row, rows));
}

/** Row `row`'s inputs: by column for the tabular input, by input name (or digest when too big) for the others. */
function rowInputs(inputs: Record<string, Tensor>, manifest: Manifest, row: number, rows: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const columns = manifest.signature.columns;
  const columnsInput = columns === undefined ? undefined : manifest.signature.columnsInput ?? manifest.signature.inputs[0]?.name;
  for (const [name, tensor] of Object.entries(inputs)) {
    if (columns !== undefined && name === columnsInput) {
      const { start, count } = rowSpan(tensor, row, rows);
      if (count === columns.length) {
        for (let c = 0; c < count; c++) out[(columns[c] as { name: string }).name] = element(tensor, start + c);
        continue;
      }
    }
    out[name] = tooBig(tensor, row, rows) ? rowDigest(tensor, row, rows) : rowValue(tensor, row, rows);
  }
  return out;
}

/** Picks out the prediction of one row: label text for classifiers that know their labels, else the number. */
function predictionOf(tensor: Tensor | undefined, spec: FeedbackSpec, row: number, rows: number): string | number | null {
  if (tensor === undefined) return null;
  const { start, count } = rowSpan(tensor, row, rows);
  const classification = spec.task !== "regression";
  let value: JsonValue;
  if (count === 1) value = element(tensor, start);
  else if (classification && count > 1 && tensor.dtype !== "string") value = argmax(rowNumbers(tensor, row, rows));
  else return null;
  if (typeof value === "boolean") value = value ? 1 : 0;
  if (typeof value === "number" && classification && spec.labels !== undefined && Number.isInteger(value) && CLASS_DTYPES.includes(tensor.dtype)) {
    // An index output on a model that knows its labels: log the label, as actuals are normalised to it.
    return spec.labels[value] ?? value;
  }
  if (typeof value === "number" && classification && spec.labels !== undefined && count > 1) return spec.labels[value] ?? value;
  return value === null || Array.isArray(value) ? null : value;
}

function argmax(values: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if ((values[i] as number) > (values[best] as number)) best = i;
  return best;
}

const sha256 = (text: string): string => createHash("sha256").update(text).digest("hex");

interface RowTexts {
  texts: string[];
  hashes: (string | undefined)[];
}

/**
 * The rows' JSON texts already written, by the tensor record they were written from. The prediction log makes one
 * per batch: events answered from one cache entry share their tensors (and the log's worker receives them as one
 * object), so a batch of repeats writes their rows once. Tensors of a scoring event are never changed afterwards.
 */
export class RowTextMemo {
  readonly #inputs = new Map<Record<string, Tensor>, { manifest: Manifest; rows: number; rowTexts: RowTexts }>();
  readonly #outputs = new Map<Record<string, Tensor>, { manifest: Manifest; rows: number; rowTexts: RowTexts }>();

  inputs(inputs: Record<string, Tensor>, manifest: Manifest, rows: number): RowTexts | undefined {
    const known = this.#inputs.get(inputs);
    if (known !== undefined) return known.manifest === manifest && known.rows === rows ? known.rowTexts : undefined;
    const rowTexts = rowTextsOf(rows, (row) => rowInputsText(inputs, manifest, row, rows));
    this.#inputs.set(inputs, { manifest, rows, rowTexts });
    return rowTexts;
  }

  outputs(outputs: Record<string, Tensor>, manifest: Manifest, rows: number): RowTexts | undefined {
    const known = this.#outputs.get(outputs);
    if (known !== undefined) return known.manifest === manifest && known.rows === rows ? known.rowTexts : undefined;
    const rowTexts = rowTextsOf(rows, (row) => rowOutputsText(outputs, manifest, row, rows));
    this.#outputs.set(outputs, { manifest, rows, rowTexts });
    return rowTexts;
  }
}

function rowTextsOf(rows: number, text: (row: number) => string): RowTexts {
  const texts = new Array<string>(rows);
  for (let row = 0; row < rows; row++) texts[row] = text(row);
  return { texts, hashes: new Array<string | undefined>(rows) };
}

/**
 * One row's outputs as JSON. A `content_type: json` output (custom wrappers) holds each row's JSON text: it is logged
 * as that value, as MLflow responses, batch and stream sinks give it, not as a quoted string.
 */
function rowOutputsText(outputs: Record<string, Tensor>, manifest: Manifest, row: number, rows: number): string {
  const json = jsonOutputNames(manifest);
  const rowOutputs: Record<string, unknown> = {};
  for (const [name, tensor] of Object.entries(outputs)) {
    const value = rowValue(tensor, row, rows);
    rowOutputs[name] = json?.has(name) === true && typeof value === "string" ? jsonTextValue(value) : value;
  }
  return JSON.stringify(rowOutputs);
}

/**
 * One record per row of a successful scoring event (none for a failed one or one without outputs). Inputs are
 * logged by `spec.inputs`: `full` as JSON, `hashed` as the sha256 of that JSON, `sampled` in full for a share
 * `sampleRate` of requests (one `random()` draw per request, so a request's rows share it) and hashed otherwise,
 * `none` not at all. `memo` (one per batch of events) writes rows shared by several events only once.
 */
export function recordsOf(event: ScoringEvent, spec: FeedbackSpec, manifest: Manifest, random: () => number = Math.random, memo?: RowTextMemo): PredictionRecord[] {
  if (!event.ok || event.outputs === undefined || event.version === null || event.rows < 1) return [];
  const rows = event.rows;
  const outputs = event.outputs;
  const mode = spec.inputs;
  const full = mode === "full" || (mode === "sampled" && random() < spec.sampleRate);
  const logInputs = mode !== "none" && event.inputs !== undefined;
  const requestId = event.requestId ?? randomUUID();
  const at = event.at.toISOString();
  const variant: Variant | null = event.variant ?? null;
  const predictionTensor = outputs[spec.predictionOutput];
  const probabilityTensor = spec.probabilityOutput === undefined ? undefined : outputs[spec.probabilityOutput];
  const inputTexts = logInputs ? memo?.inputs(event.inputs as Record<string, Tensor>, manifest, rows) : undefined;
  const outputTexts = memo?.outputs(outputs, manifest, rows);
  const records: PredictionRecord[] = new Array<PredictionRecord>(rows);
  for (let row = 0; row < rows; row++) {
    let inputs: string | null = null;
    let inputsHash: string | null = null;
    if (logInputs) {
      const json = inputTexts?.texts[row] ?? rowInputsText(event.inputs as Record<string, Tensor>, manifest, row, rows);
      if (full) inputs = json;
      else if (inputTexts !== undefined) inputsHash = inputTexts.hashes[row] ??= sha256(json);
      else inputsHash = sha256(json);
    }
    records[row] = {
      requestId,
      row,
      model: event.model,
      version: event.version,
      variant,
      rolloutId: event.rolloutId ?? null,
      key: event.key ?? null,
      at,
      protocol: event.protocol ?? null,
      inputs,
      inputsHash,
      outputs: outputTexts?.texts[row] ?? rowOutputsText(outputs, manifest, row, rows),
      prediction: predictionOf(predictionTensor, spec, row, rows),
      scores: probabilityTensor === undefined ? null : rowNumbers(probabilityTensor, row, rows),
      latencyMs: event.latencyMs,
    };
  }
  return records;
}
