import { allocate, dtypeFromV2, elementCount, MlshipError, V2_DATATYPE } from "../core/index.js";
import type { Tensor, TensorData } from "../core/index.js";
import type { ModelContext } from "./context.js";
import { decodeImages } from "./images.js";
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

/** Turns a V2 JSON inference request into model feeds, strictly checked against the signature. */
export async function v2RequestToFeeds(body: unknown, ctx: ModelContext): Promise<PreparedRequest> {
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
  }
  const rawInputs = body.inputs;
  if (rawInputs === undefined) {
    throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", "the request has no \"inputs\" array", { field: "inputs" });
  }
  if (!Array.isArray(rawInputs)) throw invalid("inputs", "inputs must be an array of tensors");

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
    if (params !== undefined && params.binary_data_size !== undefined) {
      throw new MlshipError(
        "MLSHIP_ERR_INPUT_CONTENT_TYPE",
        `${field}: binary tensor data is not supported; send "data" as JSON`,
        { field: `${field}.parameters.binary_data_size` },
      );
    }
    const data = entry.data;
    if (!Array.isArray(data)) {
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
      const describeImage = (): string => `image input '${name}' is BYTES [-1], base64 strings`;
      const strings = allocate("string", checkDataSize(data, shape, `${field}.data`, describeImage));
      fillTensor(data, strings, strictWriter("string"), `${field}.data`, describeImage);
      const tensor = await decodeImages(strings as string[], image, `${field}.data`);
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
    const describeInput = (): string => `input '${name}' is ${expected} ${shapeText(shape)}`;
    const out = allocate(spec.dtype, checkDataSize(data, shape, `${field}.data`, describeInput));
    fillTensor(data, out, strictWriter(spec.dtype), `${field}.data`, describeInput);
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
      if (isRecord(o) && isRecord(o.parameters) && o.parameters.binary_data === true) {
        throw new MlshipError("MLSHIP_ERR_INPUT_CONTENT_TYPE", `outputs[${j}]: binary tensor data is not supported`, {
          field: `outputs[${j}].parameters.binary_data`,
        });
      }
      outputs.push(oname);
    }
  }
  return { feeds, rows: rows ?? 0, outputs, id, parameters };
}
