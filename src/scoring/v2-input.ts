import { allocate, dtypeFromV2, elementCount, MlshipError, V2_DATATYPE } from "../core/index.js";
import type { Tensor, TensorData } from "../core/index.js";
import type { ModelContext } from "./context.js";
import { decodeImages } from "./images.js";
import { decodeRaw } from "./raw.js";
import { countLeaves, isRecord, shapeFits, shapeText, strictWriter, type ValueWriter } from "./values.js";

export interface PreparedRequest {
  feeds: Record<string, Tensor>;
  rows: number;
  /** Outputs the client asked for, if it restricted them. */
  outputs: string[] | undefined;
  id: string | undefined;
  parameters: Record<string, unknown> | undefined;
}

function invalid(field: string, message: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_INPUT_INVALID", message, { field });
}

/**
 * Copies a flat or nested JSON array into typed storage; the first bad element is reported with its path
 * (`inputs[0].data[1][2]`). The caller has checked with `countLeaves` that `data` holds exactly `out.length`
 * elements, so the walk never writes past the end.
 */
function fillTensor(data: readonly unknown[], out: TensorData, write: ValueWriter, field: string, describeTarget: () => string): void {
  let pos = 0;
  const path: number[] = [];
  const walk = (arr: readonly unknown[]): void => {
    for (let i = 0; i < arr.length; i++) {
      const v = arr[i];
      if (Array.isArray(v)) {
        path.push(i);
        walk(v);
        path.pop();
        continue;
      }
      const reason = write(out, pos, v);
      if (reason !== undefined) {
        const where = `${field}${path.map((p) => `[${p}]`).join("")}[${i}]`;
        throw new MlshipError("MLSHIP_ERR_INPUT_DTYPE", `${where}: ${reason} (${describeTarget()})`, { field: where });
      }
      pos++;
    }
  };
  walk(data);
}

/**
 * Checks that `data` holds exactly as many elements as `shape` needs before any storage is allocated: the
 * shape comes from the client, and allocating for `[1000000000]` on its word alone would take the process down.
 * Nesting deeper than the shape's rank is refused too (it cannot describe this tensor, and unbounded nesting
 * would overflow the stack of the recursive walk).
 */
function checkDataSize(data: readonly unknown[], shape: readonly number[], field: string, describeTarget: () => string): number {
  const count = elementCount(shape);
  const have = countLeaves(data, Math.max(shape.length, 1), field);
  if (have !== count) {
    throw new MlshipError("MLSHIP_ERR_INPUT_SHAPE", `${field} has ${have} elements but the shape needs ${count} (${describeTarget()})`, { field });
  }
  return count;
}

function parseShape(value: unknown, field: string): number[] {
  if (!Array.isArray(value)) throw new MlshipError("MLSHIP_ERR_INPUT_SHAPE", `${field} must be an array of dimensions`, { field });
  const shape: number[] = new Array(value.length);
  for (let i = 0; i < value.length; i++) {
    const d: unknown = value[i];
    if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0) {
      throw new MlshipError("MLSHIP_ERR_INPUT_SHAPE", `${field}[${i}] must be a non-negative integer, got ${JSON.stringify(d)}`, {
        field: `${field}[${i}]`,
      });
    }
    shape[i] = d;
  }
  return shape;
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Binary tensor extension: cuts `binary` into one slice per input that declares `parameters.binary_data_size`,
 * in input order, before any input is decoded, so a size that does not add up is reported first and nothing is
 * allocated on a declared size alone. Entries that are not objects are left to the main loop's errors.
 */
function binarySlices(inputs: readonly unknown[], binary: Uint8Array | undefined): Array<Uint8Array | undefined> {
  const slices = new Array<Uint8Array | undefined>(inputs.length);
  let offset = 0;
  let last: string | undefined;
  for (let i = 0; i < inputs.length; i++) {
    const entry = inputs[i];
    const params = isRecord(entry) ? entry.parameters : undefined;
    if (!isRecord(params) || params.binary_data_size === undefined) continue;
    const field = `inputs[${i}].parameters.binary_data_size`;
    const size = params.binary_data_size;
    if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
      throw invalid(field, `${field} must be a non-negative integer (the input's size in bytes), got ${JSON.stringify(size)}`);
    }
    if (binary === undefined) {
      throw invalid(
        field,
        `${field}: binary tensor data needs the Inference-Header-Content-Length header (the length of the JSON part), with the tensor bytes after the JSON`,
      );
    }
    if (size > binary.length - offset) {
      throw invalid(
        field,
        `${field} is ${size} but only ${binary.length - offset} bytes remain (${binary.length} bytes follow the JSON header; earlier binary inputs take ${offset})`,
      );
    }
    slices[i] = binary.subarray(offset, offset + size);
    offset += size;
    last = field;
  }
  if (binary !== undefined && offset !== binary.length) {
    if (last === undefined) {
      throw invalid(
        "inference-header-content-length",
        `${binary.length} bytes follow the JSON header (Inference-Header-Content-Length) but no input has parameters.binary_data_size`,
      );
    }
    throw invalid(last, `the inputs' binary_data_size values add up to ${offset} bytes but ${binary.length} bytes follow the JSON header; ${last} is the last binary input`);
  }
  return slices;
}

/**
 * BYTES elements sent as binary: base64 for image inputs (the image decoder takes base64) and for `content_type:
 * base64` inputs (custom wrappers decode them), UTF-8 text otherwise.
 */
function bytesToStrings(buffers: readonly Buffer[], image: boolean, field: string, base64 = false): string[] {
  return buffers.map((b, j) => {
    if (image) {
      if (b.length === 0) throw invalid(field, `${field}: element ${j} is an empty image (send the encoded PNG/JPEG/WebP bytes)`);
      return b.toString("base64");
    }
    if (base64) return b.toString("base64");
    try {
      return UTF8.decode(b);
    } catch {
      throw new MlshipError("MLSHIP_ERR_INPUT_DTYPE", `${field}: element ${j} is not valid UTF-8 text (string tensors hold text)`, { field });
    }
  });
}

function checkBoolParameter(params: unknown, key: string, field: string): void {
  if (!isRecord(params) || params[key] === undefined) return;
  if (typeof params[key] !== "boolean") throw invalid(`${field}.${key}`, `${field}.${key} must be true or false, got ${JSON.stringify(params[key])}`);
}

/**
 * Turns a V2 inference request into model feeds, strictly checked against the signature. `binary` is the part
 * of the body after the JSON header under the binary tensor extension.
 */
export async function v2RequestToFeeds(body: unknown, ctx: ModelContext, binary?: Uint8Array): Promise<PreparedRequest> {
  if (!isRecord(body)) throw invalid("body", "the request body must be a JSON object with an \"inputs\" array");
  let id: string | undefined;
  if (body.id !== undefined) {
    if (typeof body.id !== "string") throw invalid("id", "id must be a string");
    id = body.id;
  }
  let parameters: Record<string, unknown> | undefined;
  if (body.parameters !== undefined) {
    if (!isRecord(body.parameters)) throw invalid("parameters", "parameters must be an object");
    parameters = body.parameters;
    checkBoolParameter(parameters, "binary_data_output", "parameters");
  }
  const rawInputs = body.inputs;
  if (rawInputs === undefined) {
    throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", "the request has no \"inputs\" array", { field: "inputs" });
  }
  if (!Array.isArray(rawInputs)) throw invalid("inputs", "inputs must be an array of tensors");
  const slices = binarySlices(rawInputs, binary);

  const feeds: Record<string, Tensor> = {};
  const seen = new Map<string, number>();
  let rows: number | undefined;
  for (let i = 0; i < rawInputs.length; i++) {
    const field = `inputs[${i}]`;
    const entry: unknown = rawInputs[i];
    if (!isRecord(entry)) throw invalid(field, `${field} must be an object with name, shape, datatype and data`);
    const name = entry.name;
    if (typeof name !== "string") {
      throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", `${field}.name is required (a string)`, { field: `${field}.name` });
    }
    const previous = seen.get(name);
    if (previous !== undefined) throw invalid(`${field}.name`, `${field}.name: input '${name}' is also given at inputs[${previous}]`);
    seen.set(name, i);
    const image = ctx.imageInputs.get(name);
    const spec = ctx.inputByName.get(name);
    if (image === undefined && spec === undefined) {
      const known = ctx.publicSignature.inputs.map((s) => s.name).join(", ");
      throw invalid(`${field}.name`, `${field}.name: model '${ctx.name}' has no input '${name}' (inputs: ${known})`);
    }
    const datatype = entry.datatype;
    if (typeof datatype !== "string") {
      throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", `${field}.datatype is required (e.g. "FP32")`, { field: `${field}.datatype` });
    }
    const shape = parseShape(entry.shape, `${field}.shape`);
    const params = entry.parameters;
    if (params !== undefined && !isRecord(params)) throw invalid(`${field}.parameters`, `${field}.parameters must be an object`);
    const slice = slices[i];
    const data = entry.data;
    if (slice !== undefined && data !== undefined) {
      throw invalid(`${field}.data`, `${field}.data: give either data or parameters.binary_data_size, not both`);
    }
    const sizeField = `${field}.parameters.binary_data_size`;
    if (slice === undefined && !Array.isArray(data)) {
      throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", `${field}.data is required (a flat or nested array)`, { field: `${field}.data` });
    }

    if (image !== undefined && datatype === "BYTES") {
      if (shape.length !== 1) {
        throw new MlshipError(
          "MLSHIP_ERR_INPUT_SHAPE",
          `${field}.shape: image input '${name}' takes one encoded image per element, shape [-1]; got ${shapeText(shape)}`,
          { field: `${field}.shape` },
        );
      }
      let strings: string[];
      let where = `${field}.data`;
      if (slice !== undefined) {
        where = sizeField;
        const what = `image input '${name}' (BYTES ${shapeText(shape)}, encoded images)`;
        strings = bytesToStrings(decodeRaw(slice, "string", elementCount(shape), sizeField, what) as Buffer[], true, sizeField);
      } else {
        const describeImage = (): string => `image input '${name}' is BYTES [-1], base64 strings`;
        strings = allocate("string", checkDataSize(data as unknown[], shape, where, describeImage)) as string[];
        fillTensor(data as unknown[], strings, strictWriter("string"), where, describeImage);
      }
      const tensor = await decodeImages(strings, image, where);
      if (feeds[image.target.name] !== undefined) {
        throw invalid(`${field}.name`, `${field}.name: input '${image.target.name}' is given twice (directly and as image input '${name}')`);
      }
      feeds[image.target.name] = tensor;
      rows ??= tensor.shape[0];
      continue;
    }
    if (spec === undefined) {
      throw new MlshipError(
        "MLSHIP_ERR_INPUT_DTYPE",
        `${field}.datatype: image input '${name}' must be BYTES (base64-encoded images), got ${datatype}`,
        { field: `${field}.datatype` },
      );
    }
    const expected = V2_DATATYPE[spec.dtype];
    if (dtypeFromV2(datatype) !== spec.dtype) {
      const hint = image !== undefined ? ` or BYTES (base64 images)` : "";
      throw new MlshipError(
        "MLSHIP_ERR_INPUT_DTYPE",
        `${field}.datatype: input '${name}' is ${expected}${hint}, got ${datatype}`,
        { field: `${field}.datatype` },
      );
    }
    if (!shapeFits(spec.shape, shape)) {
      throw new MlshipError(
        "MLSHIP_ERR_INPUT_SHAPE",
        `${field}.shape: input '${name}' has shape ${shapeText(spec.shape)} (-1 = any size), got ${shapeText(shape)}`,
        { field: `${field}.shape` },
      );
    }
    if (feeds[name] !== undefined) throw invalid(`${field}.name`, `${field}.name: input '${name}' is given twice`);
    let out: TensorData;
    if (slice !== undefined) {
      const raw = decodeRaw(slice, spec.dtype, elementCount(shape), sizeField, `input '${name}' (${expected} ${shapeText(shape)})`);
      out = spec.dtype === "string" ? bytesToStrings(raw as Buffer[], false, sizeField, spec.content_type === "base64") : (raw as TensorData);
    } else {
      const describeInput = (): string => `input '${name}' is ${expected} ${shapeText(shape)}`;
      out = allocate(spec.dtype, checkDataSize(data as unknown[], shape, `${field}.data`, describeInput));
      fillTensor(data as unknown[], out, strictWriter(spec.dtype), `${field}.data`, describeInput);
    }
    feeds[name] = { dtype: spec.dtype, shape, data: out };
    rows ??= shape.length > 0 ? shape[0] : 1;
  }

  for (const spec of ctx.inputs) {
    if (feeds[spec.name] === undefined) {
      const viaImage = [...ctx.imageInputs.entries()].find(([, img]) => img.target.name === spec.name)?.[0];
      const hint = viaImage === undefined ? "" : ` (or image input '${viaImage}' as BYTES)`;
      throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", `inputs: missing input '${spec.name}'${hint}`, { field: "inputs" });
    }
  }

  let outputs: string[] | undefined;
  if (body.outputs !== undefined) {
    if (!Array.isArray(body.outputs)) throw invalid("outputs", "outputs must be an array of {\"name\": ...}");
    outputs = [];
    for (let j = 0; j < body.outputs.length; j++) {
      const o: unknown = body.outputs[j];
      const oname = isRecord(o) ? o.name : undefined;
      if (typeof oname !== "string") throw invalid(`outputs[${j}].name`, `outputs[${j}].name is required (a string)`);
      if (!ctx.outputNames.has(oname)) {
        throw invalid(`outputs[${j}].name`, `outputs[${j}].name: model '${ctx.name}' has no output '${oname}' (outputs: ${[...ctx.outputNames].join(", ")})`);
      }
      if (isRecord(o) && o.parameters !== undefined) {
        if (!isRecord(o.parameters)) throw invalid(`outputs[${j}].parameters`, `outputs[${j}].parameters must be an object`);
        checkBoolParameter(o.parameters, "binary_data", `outputs[${j}].parameters`);
      }
      outputs.push(oname);
    }
  }
  return { feeds, rows: rows ?? 0, outputs, id, parameters };
}
