import type { FastifyReply } from "fastify";
import { MlshipError, V2_DATATYPE } from "../../core/index.js";
import { encodeRaw, JSON_OUTPUT_PARAMETERS, tensorValues } from "../../scoring/index.js";
import type { JsonScalar, ScoreResult } from "../../scoring/index.js";

/**
 * The REST binary tensor data extension (Triton's `binary_tensor_data`, mirrored by KServe): the body is a JSON
 * header of `Inference-Header-Content-Length` bytes followed by the tensors' raw bytes, in the order of the
 * tensors in the JSON; the response likewise when outputs are asked for as binary.
 */
export const BINARY_EXTENSION = "binary_tensor_data";
export const INFERENCE_HEADER = "inference-header-content-length";

/** A V2 request that used the extension: the parsed JSON header and the bytes after it. */
export class BinaryBody {
  constructor(
    readonly json: unknown,
    readonly binary: Buffer,
  ) {}
}

/**
 * Splits a body by its `Inference-Header-Content-Length`. The JSON part is parsed by `parseJson` (the same
 * parser, and errors, as a plain JSON body); the rest is kept as a view for scoring to cut per input.
 */
export function splitBinaryBody(body: Buffer, header: string | string[], parseJson: (text: string) => unknown): BinaryBody {
  const text = Array.isArray(header) ? header.join(",") : header;
  const n = Number(text.trim());
  if (!/^\s*\d+\s*$/.test(text) || !Number.isSafeInteger(n)) {
    throw new MlshipError(
      "MLSHIP_ERR_INPUT_INVALID",
      `Inference-Header-Content-Length must be a non-negative integer (the length of the JSON part in bytes), got '${text}'`,
      { field: INFERENCE_HEADER },
    );
  }
  if (n > body.length) {
    throw new MlshipError(
      "MLSHIP_ERR_INPUT_INVALID",
      `Inference-Header-Content-Length is ${n} but the body has only ${body.length} bytes`,
      { field: INFERENCE_HEADER },
    );
  }
  return new BinaryBody(parseJson(body.subarray(0, n).toString("utf8")), body.subarray(n));
}

function own(record: unknown, key: string): unknown {
  if (typeof record !== "object" || record === null || Array.isArray(record)) return undefined;
  return Object.prototype.hasOwnProperty.call(record, key) ? (record as Record<string, unknown>)[key] : undefined;
}

/**
 * The outputs to send as binary: all of them when the request's `parameters.binary_data_output` is true, unless
 * an output's `parameters.binary_data` says otherwise; each output whose `binary_data` is true. Scoring has
 * already checked that these parameters are booleans.
 */
export function binaryOutputNames(body: unknown, outputs: readonly string[]): Set<string> {
  const all = own(own(body, "parameters"), "binary_data_output") === true;
  const perOutput = new Map<string, boolean>();
  const requested = own(body, "outputs");
  if (Array.isArray(requested)) {
    for (const o of requested) {
      const name = own(o, "name");
      const flag = own(own(o, "parameters"), "binary_data");
      if (typeof name === "string" && typeof flag === "boolean") perOutput.set(name, flag);
    }
  }
  return new Set(outputs.filter((name) => perOutput.get(name) ?? all));
}

interface HeaderOutput {
  name: string;
  shape: number[];
  datatype: string;
  parameters?: { binary_data_size?: number; content_type?: string };
  data?: JsonScalar[];
}

/**
 * A V2 response with the `binary` outputs as raw bytes after the JSON header (which gives their
 * `binary_data_size` instead of `data`); the others stay JSON in the header.
 */
export function binaryResponse(result: ScoreResult, binary: ReadonlySet<string>): { headerLength: number; bytes: Buffer } {
  const outputs: HeaderOutput[] = [];
  const blobs: Buffer[] = [];
  for (const [name, t] of Object.entries(result.outputs)) {
    const base = { name, shape: t.shape.slice(), datatype: V2_DATATYPE[t.dtype] };
    // A custom wrapper's json output says so, in either form (its BYTES elements are JSON texts).
    const json = result.jsonOutputs?.has(name) === true ? { ...JSON_OUTPUT_PARAMETERS } : undefined;
    if (binary.has(name)) {
      const bytes = encodeRaw(t);
      blobs.push(bytes);
      outputs.push({ ...base, parameters: { ...json, binary_data_size: bytes.length } });
    } else {
      outputs.push(json === undefined ? { ...base, data: tensorValues(t) } : { ...base, parameters: json, data: tensorValues(t) });
    }
  }
  const header = Buffer.from(
    JSON.stringify({
      model_name: result.model,
      model_version: String(result.version),
      ...(result.id === undefined ? {} : { id: result.id }),
      outputs,
    }),
    "utf8",
  );
  return { headerLength: header.length, bytes: Buffer.concat([header, ...blobs]) };
}

/** Sends `binaryResponse` through Fastify. */
export function sendBinaryResponse(reply: FastifyReply, result: ScoreResult, binary: ReadonlySet<string>): FastifyReply {
  const { headerLength, bytes } = binaryResponse(result, binary);
  reply.header(INFERENCE_HEADER, String(headerLength)).type("application/octet-stream");
  return reply.send(bytes);
}
