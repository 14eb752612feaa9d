import { allocate, dtypeFromV2, elementCount, MlshipError, V2_DATATYPE } from "../../core/index.js";
import type { DType, ErrorCode, Tensor, TensorData } from "../../core/index.js";
import type { Manifest, TensorSpec } from "../../package/index.js";
import { decodeRaw, encodeRaw } from "../../scoring/index.js";
import type { ModelMetadata } from "../../scoring/index.js";
import type {
  ContentsField,
  InferInputTensor,
  InferOutputTensor,
  InferParameter,
  InferTensorContents,
  ModelInferRequest,
  OutputContents,
} from "./proto.js";

/** One input a client may send: its spec and, for an image input, the model input the decoded images feed. */
export interface InputInfo {
  spec: TensorSpec;
  /** Set for image inputs (BYTES elements holding encoded PNG/JPEG/WebP files). */
  imageTarget: string | undefined;
}

/** What ModelInfer checks a request against, computed once per model version. */
export interface ModelInfo {
  name: string;
  version: number;
  /** Public inputs plus the model inputs that image pre-processing hides (they may be fed directly too). */
  inputs: ReadonlyMap<string, InputInfo>;
  /** The inputs ModelMetadata lists, in order. */
  publicInputs: readonly string[];
  outputs: ReadonlySet<string>;
}

export function buildModelInfo(md: ModelMetadata, manifest: Manifest): ModelInfo {
  const targets = new Map<string, string>();
  for (const step of manifest.preprocess) {
    if (step.type === "image") targets.set(step.input, step.target ?? manifest.signature.inputs[0]?.name ?? "");
  }
  const inputs = new Map<string, InputInfo>();
  for (const spec of md.signature.inputs) inputs.set(spec.name, { spec, imageTarget: targets.get(spec.name) });
  for (const spec of manifest.signature.inputs) {
    if (!inputs.has(spec.name)) inputs.set(spec.name, { spec, imageTarget: undefined });
  }
  return {
    name: md.name,
    version: md.version,
    inputs,
    publicInputs: md.signature.inputs.map((s) => s.name),
    outputs: new Set(md.signature.outputs.map((s) => s.name)),
  };
}

/** The typed-contents field each dtype travels in; FP16 has none (the protocol sends it raw only). */
const CONTENTS_FIELD: Record<DType, ContentsField | undefined> = {
  float16: undefined, float32: "fp32_contents", float64: "fp64_contents",
  int8: "int_contents", int16: "int_contents", int32: "int_contents", int64: "int64_contents",
  uint8: "uint_contents", uint16: "uint_contents", uint32: "uint_contents", uint64: "uint64_contents",
  bool: "bool_contents", string: "bytes_contents",
};

const ALL_FIELDS: readonly ContentsField[] = [
  "bool_contents", "int_contents", "int64_contents", "uint_contents",
  "uint64_contents", "fp32_contents", "fp64_contents", "bytes_contents",
];

const INT_RANGE: Partial<Record<DType, readonly [number, number]>> = {
  int8: [-128, 127], int16: [-32768, 32767], int32: [-2147483648, 2147483647],
  uint8: [0, 255], uint16: [0, 65535], uint32: [0, 4294967295],
};

function fail(code: ErrorCode, field: string, message: string): MlshipError {
  return new MlshipError(code, message, { field });
}

function shapeText(shape: readonly number[]): string {
  return `[${shape.join(",")}]`;
}

function shapeFits(spec: readonly number[], shape: readonly number[]): boolean {
  if (spec.length !== shape.length) return false;
  for (let i = 0; i < spec.length; i++) {
    const s = spec[i] as number;
    if (s >= 0 && s !== shape[i]) return false;
  }
  return true;
}

/** Own-property lookup: map keys come from the client, and `__proto__` must not reach the prototype. */
export function parameter(map: Record<string, InferParameter>, key: string): InferParameter | undefined {
  return Object.prototype.hasOwnProperty.call(map, key) ? map[key] : undefined;
}

function boolParameter(p: InferParameter, field: string): boolean {
  if (p.parameter_choice !== "bool_param") {
    throw fail("MLSHIP_ERR_INPUT_INVALID", field, `${field} must be a bool_param, got ${p.parameter_choice ?? "no value"}`);
  }
  return p.bool_param === true;
}

/**
 * Whether outputs go in `raw_output_contents`: `parameters.binary_data_output` decides when set; otherwise
 * requested outputs' `binary_data` parameters (raw if any is true); otherwise the request's own form (raw
 * inputs give raw outputs). FP16 outputs force raw in `encodeOutputs`, since typed contents cannot carry them.
 */
export function wantsRawOutput(request: ModelInferRequest): boolean {
  const all = parameter(request.parameters, "binary_data_output");
  if (all !== undefined) return boolParameter(all, "parameters.binary_data_output");
  let seen = false;
  let any = false;
  request.outputs.forEach((o, j) => {
    const p = parameter(o.parameters, "binary_data");
    if (p === undefined) return;
    seen = true;
    if (boolParameter(p, `outputs[${j}].parameters.binary_data`)) any = true;
  });
  if (seen) return any;
  return request.raw_input_contents.length > 0;
}

/** The requested output names (deduplicated, in request order), or undefined for "all outputs". */
export function requestedOutputs(request: ModelInferRequest, model: ModelInfo): string[] | undefined {
  if (request.outputs.length === 0) return undefined;
  const names: string[] = [];
  request.outputs.forEach((o, j) => {
    const field = `outputs[${j}].name`;
    if (o.name === "") throw fail("MLSHIP_ERR_INPUT_MISSING", field, `${field} is required`);
    if (!model.outputs.has(o.name)) {
      throw fail("MLSHIP_ERR_INPUT_INVALID", field, `${field}: model '${model.name}' has no output '${o.name}' (outputs: ${[...model.outputs].join(", ")})`);
    }
    if (!names.includes(o.name)) names.push(o.name);
  });
  return names;
}

function parseShape(dims: readonly string[], field: string): number[] {
  const shape = new Array<number>(dims.length);
  for (let k = 0; k < dims.length; k++) {
    const text = String(dims[k]);
    const d = Number(text);
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(d)) {
      throw fail("MLSHIP_ERR_INPUT_SHAPE", `${field}[${k}]`, `${field}[${k}] must be a non-negative integer, got ${text}`);
    }
    shape[k] = d;
  }
  return shape;
}

function hasContents(contents: InferTensorContents | null): boolean {
  if (contents === null) return false;
  return ALL_FIELDS.some((f) => (contents[f]?.length ?? 0) > 0);
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

interface Described {
  /** "input 'x' (FP32 [2,30])", for messages. */
  what: string;
  name: string;
}

function fromContents(contents: InferTensorContents | null, dtype: DType, count: number, field: string, d: Described): TensorData | Buffer[] {
  const want = CONTENTS_FIELD[dtype];
  const v2 = V2_DATATYPE[dtype];
  if (want === undefined) {
    throw fail("MLSHIP_ERR_INPUT_DTYPE", field, `${field}: ${v2} has no typed contents field; send ${d.what} in raw_input_contents`);
  }
  if (contents !== null) {
    for (const f of ALL_FIELDS) {
      if (f !== want && (contents[f]?.length ?? 0) > 0) {
        throw fail("MLSHIP_ERR_INPUT_DTYPE", `${field}.${f}`, `${field}.${f}: ${d.what} is ${v2}, which goes in ${want}, not ${f}`);
      }
    }
  }
  const values: readonly unknown[] = contents?.[want] ?? [];
  if (values.length !== count) {
    if (values.length === 0) {
      throw fail("MLSHIP_ERR_INPUT_MISSING", `${field}.${want}`, `${field}.${want} is empty: ${d.what} needs ${count} elements there (or send raw_input_contents)`);
    }
    throw fail("MLSHIP_ERR_INPUT_SHAPE", `${field}.${want}`, `${field}.${want} has ${values.length} elements but ${d.what} needs ${count}`);
  }
  switch (dtype) {
    case "float32":
      return Float32Array.from(values as number[]);
    case "float64":
      return Float64Array.from(values as number[]);
    case "int64":
      return BigInt64Array.from(values as string[], (s) => BigInt(s));
    case "uint64":
      return BigUint64Array.from(values as string[], (s) => BigInt(s));
    case "bool":
      return Uint8Array.from(values as boolean[], (b) => (b ? 1 : 0));
    case "string":
      return (values as Uint8Array[]).map(asBuffer);
    default: {
      const [min, max] = INT_RANGE[dtype] ?? [0, 0];
      const out = allocate(dtype, count) as Int32Array;
      const nums = values as number[];
      for (let j = 0; j < count; j++) {
        const v = nums[j] as number;
        if (v < min || v > max) {
          throw fail("MLSHIP_ERR_INPUT_DTYPE", `${field}.${want}[${j}]`, `${field}.${want}[${j}]: ${v} is out of range for ${v2} [${min}, ${max}]`);
        }
        out[j] = v;
      }
      return out;
    }
  }
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

/**
 * BYTES elements become the strings the scoring pipeline takes: base64 for image inputs (it decodes the
 * images from base64), UTF-8 text for string tensors (ONNX strings are text).
 */
function bytesToStrings(buffers: readonly Buffer[], image: boolean, where: (j: number) => string, base64 = false): string[] {
  return buffers.map((b, j) => {
    if (image) {
      if (b.length === 0) throw fail("MLSHIP_ERR_INPUT_INVALID", where(j), `${where(j)}: empty image (send the encoded PNG/JPEG/WebP bytes)`);
      return b.toString("base64");
    }
    // A `content_type: base64` input (custom wrappers) takes any bytes; the wrapper gets them as base64 text.
    if (base64) return b.toString("base64");
    try {
      return UTF8.decode(b);
    } catch {
      throw fail("MLSHIP_ERR_INPUT_DTYPE", where(j), `${where(j)}: not valid UTF-8 text (string tensors hold text)`);
    }
  });
}

/**
 * Turns ModelInfer inputs into typed feeds, checked against the model: names, datatypes, shapes, element
 * counts, raw sizes and value ranges, each error naming the request field. Either every input uses typed
 * `contents` or the request carries one `raw_input_contents` entry per input.
 */
export function decodeInputs(request: ModelInferRequest, model: ModelInfo): Record<string, Tensor> {
  const inputs: readonly InferInputTensor[] = request.inputs;
  const raw = request.raw_input_contents;
  const useRaw = raw.length > 0;
  if (useRaw && raw.length !== inputs.length) {
    throw fail(
      "MLSHIP_ERR_INPUT_INVALID",
      "raw_input_contents",
      `raw_input_contents has ${raw.length} entries but the request has ${inputs.length} inputs; send one entry per input, in the order of inputs`,
    );
  }
  const feeds: Record<string, Tensor> = {};
  const seen = new Map<string, number>();
  for (let i = 0; i < inputs.length; i++) {
    const input = inputs[i] as InferInputTensor;
    const field = `inputs[${i}]`;
    const name = input.name;
    if (name === "") throw fail("MLSHIP_ERR_INPUT_MISSING", `${field}.name`, `${field}.name is required`);
    const previous = seen.get(name);
    if (previous !== undefined) throw fail("MLSHIP_ERR_INPUT_INVALID", `${field}.name`, `${field}.name: input '${name}' is also given at inputs[${previous}]`);
    seen.set(name, i);
    const info = model.inputs.get(name);
    if (info === undefined) {
      throw fail("MLSHIP_ERR_INPUT_INVALID", `${field}.name`, `${field}.name: model '${model.name}' has no input '${name}' (inputs: ${model.publicInputs.join(", ")})`);
    }
    const { spec } = info;
    const expected = V2_DATATYPE[spec.dtype];
    const kind = info.imageTarget !== undefined ? " (encoded images)" : "";
    if (input.datatype === "") {
      throw fail("MLSHIP_ERR_INPUT_MISSING", `${field}.datatype`, `${field}.datatype is required: input '${name}' is ${expected}${kind}`);
    }
    const dtype = dtypeFromV2(input.datatype);
    if (dtype === undefined) {
      throw fail(
        "MLSHIP_ERR_INPUT_DTYPE",
        `${field}.datatype`,
        `${field}.datatype: '${input.datatype}' is not a supported datatype (${Object.values(V2_DATATYPE).join(", ")}); input '${name}' is ${expected}${kind}`,
      );
    }
    if (dtype !== spec.dtype) {
      throw fail("MLSHIP_ERR_INPUT_DTYPE", `${field}.datatype`, `${field}.datatype: input '${name}' is ${expected}${kind}, got ${input.datatype}`);
    }
    const shape = parseShape(input.shape, `${field}.shape`);
    if (!shapeFits(spec.shape, shape)) {
      throw fail(
        "MLSHIP_ERR_INPUT_SHAPE",
        `${field}.shape`,
        `${field}.shape: input '${name}' has shape ${shapeText(spec.shape)} (-1 = any size), got ${shapeText(shape)}`,
      );
    }
    const count = elementCount(shape);
    const d: Described = { name, what: `input '${name}' (${expected} ${shapeText(shape)})` };
    let data: TensorData | Buffer[];
    let where: (j: number) => string;
    if (useRaw) {
      if (hasContents(input.contents)) {
        throw fail(
          "MLSHIP_ERR_INPUT_INVALID",
          `${field}.contents`,
          `${field}.contents must be empty when raw_input_contents is used: send every input raw or every input in contents, not both`,
        );
      }
      const rawField = `raw_input_contents[${i}]`;
      data = decodeRaw(raw[i] as Uint8Array, dtype, count, rawField, d.what);
      where = (j) => `${rawField}[${j}]`;
    } else {
      data = fromContents(input.contents, dtype, count, `${field}.contents`, d);
      where = (j) => `${field}.contents.bytes_contents[${j}]`;
    }
    if (dtype === "string") data = bytesToStrings(data as Buffer[], info.imageTarget !== undefined, where, spec.content_type === "base64");
    if (info.imageTarget !== undefined && feeds[info.imageTarget] !== undefined) {
      throw fail("MLSHIP_ERR_INPUT_INVALID", `${field}.name`, `${field}.name: input '${info.imageTarget}' is given twice (directly and as image input '${name}')`);
    }
    feeds[name] = { dtype, shape, data: data as TensorData };
  }
  for (const publicName of model.publicInputs) {
    if (feeds[publicName] !== undefined) continue;
    const target = model.inputs.get(publicName)?.imageTarget;
    if (target !== undefined && feeds[target] !== undefined) continue;
    throw fail("MLSHIP_ERR_INPUT_MISSING", "inputs", `inputs: missing input '${publicName}'`);
  }
  return feeds;
}

function typedContents(t: Tensor): OutputContents {
  const { data } = t;
  switch (t.dtype) {
    case "float32":
      return { fp32_contents: Array.from(data as Float32Array) };
    case "float64":
      return { fp64_contents: Array.from(data as Float64Array) };
    case "int8":
    case "int16":
    case "int32":
      return { int_contents: Array.from(data as Int32Array) };
    case "uint8":
    case "uint16":
    case "uint32":
      return { uint_contents: Array.from(data as Uint32Array) };
    case "int64":
    case "uint64":
      return { [t.dtype === "int64" ? "int64_contents" : "uint64_contents"]: Array.from(data as BigInt64Array, (v) => v.toString()) };
    case "bool":
      return { bool_contents: Array.from(data as Uint8Array, (v) => v !== 0) };
    case "string":
      return { bytes_contents: (data as string[]).map((s) => Buffer.from(s, "utf8")) };
    case "float16":
      // encodeOutputs sends FP16 raw; reaching here is a bug, reported rather than sent wrong.
      throw new MlshipError("MLSHIP_ERR_CORE_INTERNAL", "FP16 outputs can only be sent in raw_output_contents");
  }
}

/** Response tensors: typed contents, or one `raw_output_contents` entry per output (see `wantsRawOutput`). */
export function encodeOutputs(
  outputs: Record<string, Tensor>,
  raw: boolean,
  jsonOutputs?: ReadonlySet<string>,
): { outputs: InferOutputTensor[]; raw_output_contents: Buffer[] } {
  const entries = Object.entries(outputs);
  const useRaw = raw || entries.some(([, t]) => t.dtype === "float16");
  const tensors: InferOutputTensor[] = [];
  const rawContentsList: Buffer[] = [];
  for (const [name, t] of entries) {
    const base: InferOutputTensor = { name, datatype: V2_DATATYPE[t.dtype], shape: t.shape.slice() };
    if (jsonOutputs?.has(name) === true) base.parameters = { content_type: { string_param: "json" } };
    if (useRaw) {
      tensors.push(base);
      rawContentsList.push(encodeRaw(t));
    } else {
      tensors.push({ ...base, contents: typedContents(t) });
    }
  }
  return { outputs: tensors, raw_output_contents: rawContentsList };
}
