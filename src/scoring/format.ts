import { elementCount, V2_DATATYPE } from "../core/index.js";
import type { Tensor } from "../core/index.js";
import type { Manifest, TensorSpec } from "../package/index.js";
import type { ScoreResult, V2TensorMetadata } from "./types.js";

/** IEEE 754 half bits -> number. */
export function fromFloat16Bits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

export type JsonScalar = number | boolean | string;

/**
 * Plain JSON values of a tensor, flat row-major: int64 (BigInt) becomes a Number (conventions.md: convert
 * explicitly before JSON), BOOL a boolean, FP16 its value.
 */
export function tensorValues(tensor: Tensor): JsonScalar[] {
  const { data, dtype } = tensor;
  if (Array.isArray(data)) return data;
  const n = data.length;
  const out = new Array<JsonScalar>(n);
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
    for (let i = 0; i < n; i++) out[i] = Number(data[i]);
  } else if (dtype === "bool") {
    for (let i = 0; i < n; i++) out[i] = data[i] !== 0;
  } else if (dtype === "float16") {
    for (let i = 0; i < n; i++) out[i] = fromFloat16Bits(data[i] as number);
  } else {
    const nums = data as ArrayLike<number>;
    for (let i = 0; i < n; i++) out[i] = nums[i] as number;
  }
  return out;
}

const jsonOutputsCache = new WeakMap<Manifest, ReadonlySet<string> | null>();

/** The outputs a manifest declares `content_type: json` (custom wrappers), or undefined when none. Cached per manifest. */
export function jsonOutputNames(manifest: Manifest): ReadonlySet<string> | undefined {
  let names = jsonOutputsCache.get(manifest);
  if (names === undefined) {
    const json = manifest.signature.outputs.filter((o) => o.content_type === "json").map((o) => o.name);
    names = json.length === 0 ? null : new Set(json);
    jsonOutputsCache.set(manifest, names);
  }
  return names ?? undefined;
}

/** The value a json output's element encodes; a text that is not JSON stays the text (the runtime writes JSON). */
export function jsonTextValue(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** A json output's elements parsed back into values. */
function parsedJson(values: readonly JsonScalar[]): unknown[] {
  return values.map((v) => (typeof v === "string" ? jsonTextValue(v) : v));
}

/** Output parameters V2 (REST and gRPC) attaches to a json output. */
export const JSON_OUTPUT_PARAMETERS = { content_type: "json" } as const;

export function v2TensorMetadata(spec: TensorSpec): V2TensorMetadata {
  return { name: spec.name, datatype: V2_DATATYPE[spec.dtype], shape: spec.shape.slice() };
}

export interface V2OutputTensor {
  name: string;
  shape: number[];
  datatype: string;
  /** `{content_type: "json"}` on a custom wrapper's json outputs (BYTES elements holding JSON texts). */
  parameters?: Record<string, unknown>;
  data: JsonScalar[];
}

export interface V2InferResponse {
  model_name: string;
  model_version: string;
  id?: string;
  parameters?: Record<string, unknown>;
  outputs: V2OutputTensor[];
}

/** Open Inference Protocol V2 response body: flat `data`, V2 datatypes, the version that answered. */
export function formatV2Response(result: ScoreResult): V2InferResponse {
  const outputs: V2OutputTensor[] = [];
  for (const [name, t] of Object.entries(result.outputs)) {
    const out: V2OutputTensor = { name, shape: t.shape.slice(), datatype: V2_DATATYPE[t.dtype], data: tensorValues(t) };
    if (result.jsonOutputs?.has(name) === true) out.parameters = { ...JSON_OUTPUT_PARAMETERS };
    outputs.push(out);
  }
  return result.id === undefined
    ? { model_name: result.model, model_version: String(result.version), outputs }
    : { model_name: result.model, model_version: String(result.version), id: result.id, outputs };
}

/**
 * A function that nests `flat[offset ...]` into `shape` (row-major). Unlike core's `nest`, which slices at every
 * level, only the innermost lists are copied out of `flat`, and the strides are worked out once per shape, not
 * once per row.
 */
function nester(shape: readonly number[]): (flat: readonly JsonScalar[], offset: number) => unknown {
  const rank = shape.length;
  if (rank === 0) return (flat, offset) => flat[offset];
  const strides = new Array<number>(rank);
  let size = 1;
  for (let d = rank - 1; d >= 0; d--) {
    strides[d] = size;
    size *= shape[d] as number;
  }
  const build = (flat: readonly JsonScalar[], dim: number, at: number): unknown => {
    const n = shape[dim] as number;
    if (dim === rank - 1) return flat.slice(at, at + n);
    const step = strides[dim] as number;
    const out = new Array<unknown>(n);
    for (let i = 0; i < n; i++) out[i] = build(flat, dim + 1, at + i * step);
    return out;
  };
  return (flat, offset) => build(flat, 0, offset);
}

/**
 * MLflow response (conventions.md "Outputs"): dataframe/CSV input gives one record per row (a value per output;
 * a [batch,1] or [batch] output becomes a scalar); instances/inputs give one nested array per output.
 */
export function formatMlflowResponse(result: ScoreResult): { predictions: unknown } {
  const entries = Object.entries(result.outputs);
  // A json output's values are embedded as the objects they encode, not as their JSON text.
  const valuesOf = (name: string, t: Tensor): JsonScalar[] =>
    result.jsonOutputs?.has(name) === true ? (parsedJson(tensorValues(t)) as JsonScalar[]) : tensorValues(t);
  if (result.orientation === "columnar") {
    const predictions: Record<string, unknown> = {};
    for (const [name, t] of entries) predictions[name] = nester(t.shape)(valuesOf(name, t), 0);
    return { predictions };
  }
  const n = result.rows;
  const lists = entries.map(([name, t]) => {
    const values = valuesOf(name, t);
    const batched = t.shape.length > 0 && t.shape[0] === n;
    const inner = batched ? t.shape.slice(1) : t.shape;
    const step = batched ? elementCount(inner) : values.length;
    return { name, values, batched, step, nest: nester(inner), whole: batched ? undefined : nester(t.shape)(values, 0) };
  });
  const predictions = new Array<Record<string, unknown>>(n);
  for (let r = 0; r < n; r++) {
    const row: Record<string, unknown> = {};
    for (const o of lists) {
      if (!o.batched) row[o.name] = o.whole;
      else if (o.step === 1) row[o.name] = o.values[r];
      else row[o.name] = o.nest(o.values, r * o.step);
    }
    predictions[r] = row;
  }
  return { predictions };
}
