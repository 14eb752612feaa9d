/**
 * A gRPC client generated at run time from the repository's proto file with @grpc/proto-loader and @grpc/grpc-js:
 * it shares no code with the server (not even its loader options), only the .proto file.
 */
import { fileURLToPath } from "node:url";
import { Client, credentials, Metadata } from "@grpc/grpc-js";
import type { CallOptions, ServiceError, StatusObject } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import type { MethodDefinition, PackageDefinition } from "@grpc/proto-loader";

export const PROTO = fileURLToPath(new URL("../../proto/open_inference_grpc.proto", import.meta.url));

/** The client side decodes int64 as strings too (exact), and bytes as Buffers (the loader's default). */
export const definition: PackageDefinition = loadSync(PROTO, { keepCase: true, longs: String, defaults: true, oneofs: true });

export const METHODS = ["ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"] as const;
export type Method = (typeof METHODS)[number];

function method(name: Method): MethodDefinition<object, unknown> {
  const service = definition["inference.GRPCInferenceService"] as unknown as Record<string, MethodDefinition<object, unknown>>;
  const def = service[name];
  if (def === undefined) throw new Error(`no method ${name} in the proto`);
  return def;
}

export interface Reply<R> {
  response: R;
  trailers: Metadata;
}

export function connect(address: string, options: { maxReceive?: number } = {}): Client {
  return new Client(address, credentials.createInsecure(), {
    "grpc.max_receive_message_length": options.maxReceive ?? -1,
    "grpc.max_send_message_length": -1,
  });
}

/**
 * One unary call; resolves with the response and the trailers, rejects with the ServiceError (code, details, metadata).
 * `options.deadline` sets the call's gRPC deadline.
 */
export function rpc<R = Record<string, unknown>>(client: Client, name: Method, request: object, metadata = new Metadata(), options: CallOptions = {}): Promise<Reply<R>> {
  const def = method(name);
  return new Promise((resolve, reject) => {
    let failure: ServiceError | null = null;
    let value: unknown;
    const call = client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, request, metadata, options, (err, v) => {
      failure = err;
      value = v;
    });
    call.on("status", (status: StatusObject) => {
      if (failure !== null) reject(failure);
      else resolve({ response: value as R, trailers: status.metadata });
    });
  });
}

/** The ServiceError of a call expected to fail. */
export async function rpcError(client: Client, name: Method, request: object, metadata = new Metadata(), options: CallOptions = {}): Promise<ServiceError> {
  try {
    await rpc(client, name, request, metadata, options);
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error(`${name} succeeded but was expected to fail`);
}

/** A trailer's value, from a ServiceError or from the trailers of a successful call. */
export function trailer(from: { metadata: Metadata } | Metadata, key: string): string | undefined {
  const md = from instanceof Metadata ? from : from.metadata;
  const v = md.get(key)[0];
  return typeof v === "string" ? v : undefined;
}

export interface Contents {
  bool_contents: boolean[];
  int_contents: number[];
  int64_contents: string[];
  uint_contents: number[];
  uint64_contents: string[];
  fp32_contents: number[];
  fp64_contents: number[];
  bytes_contents: Buffer[];
}

export interface OutputTensor {
  name: string;
  datatype: string;
  shape: string[];
  contents: Contents | null;
}

export interface InferResponse {
  model_name: string;
  model_version: string;
  id: string;
  outputs: OutputTensor[];
  raw_output_contents: Buffer[];
}

/** Decodes raw little-endian output bytes by datatype, independently of the server's code. */
export function decodeRaw(datatype: string, bytes: Buffer): Array<number | bigint | boolean | string> {
  const out: Array<number | bigint | boolean | string> = [];
  const step: Record<string, [number, (o: number) => number | bigint | boolean]> = {
    FP32: [4, (o) => bytes.readFloatLE(o)],
    FP64: [8, (o) => bytes.readDoubleLE(o)],
    INT8: [1, (o) => bytes.readInt8(o)],
    INT16: [2, (o) => bytes.readInt16LE(o)],
    INT32: [4, (o) => bytes.readInt32LE(o)],
    INT64: [8, (o) => bytes.readBigInt64LE(o)],
    UINT8: [1, (o) => bytes.readUInt8(o)],
    UINT16: [2, (o) => bytes.readUInt16LE(o)],
    UINT32: [4, (o) => bytes.readUInt32LE(o)],
    UINT64: [8, (o) => bytes.readBigUInt64LE(o)],
    BOOL: [1, (o) => bytes.readUInt8(o) !== 0],
    FP16: [2, (o) => bytes.readUInt16LE(o)],
  };
  if (datatype === "BYTES") {
    let pos = 0;
    while (pos < bytes.length) {
      const n = bytes.readUInt32LE(pos);
      out.push(bytes.subarray(pos + 4, pos + 4 + n).toString("utf8"));
      pos += 4 + n;
    }
    return out;
  }
  const entry = step[datatype];
  if (entry === undefined) throw new Error(`unknown datatype ${datatype}`);
  const [size, read] = entry;
  if (bytes.length % size !== 0) throw new Error(`${datatype}: ${bytes.length} bytes is not a multiple of ${size}`);
  for (let o = 0; o < bytes.length; o += size) out.push(read(o));
  return out;
}

/** Raw little-endian bytes for a list of values, written by the client (the test's own encoder). */
export function encodeRaw(datatype: string, values: ReadonlyArray<number | bigint | boolean | string | Buffer>): Buffer {
  if (datatype === "BYTES") {
    const parts: Buffer[] = [];
    for (const v of values) {
      const b = Buffer.isBuffer(v) ? v : Buffer.from(String(v), "utf8");
      const len = Buffer.alloc(4);
      len.writeUInt32LE(b.length);
      parts.push(len, b);
    }
    return Buffer.concat(parts);
  }
  const size: Record<string, number> = { FP32: 4, FP64: 8, INT8: 1, INT16: 2, INT32: 4, INT64: 8, UINT8: 1, UINT16: 2, UINT32: 4, UINT64: 8, BOOL: 1, FP16: 2 };
  const n = size[datatype];
  if (n === undefined) throw new Error(`unknown datatype ${datatype}`);
  const buf = Buffer.alloc(values.length * n);
  values.forEach((v, i) => {
    const o = i * n;
    switch (datatype) {
      case "FP32": buf.writeFloatLE(Number(v), o); break;
      case "FP64": buf.writeDoubleLE(Number(v), o); break;
      case "INT8": buf.writeInt8(Number(v), o); break;
      case "INT16": buf.writeInt16LE(Number(v), o); break;
      case "INT32": buf.writeInt32LE(Number(v), o); break;
      case "INT64": buf.writeBigInt64LE(BigInt(v as number | bigint), o); break;
      case "UINT8": buf.writeUInt8(Number(v), o); break;
      case "UINT16": case "FP16": buf.writeUInt16LE(Number(v), o); break;
      case "UINT32": buf.writeUInt32LE(Number(v), o); break;
      case "UINT64": buf.writeBigUInt64LE(BigInt(v as number | bigint), o); break;
      case "BOOL": buf.writeUInt8(v === true ? 1 : 0, o); break;
    }
  });
  return buf;
}

/** Output values of a response, from typed contents or raw bytes, as plain numbers/booleans/strings. */
export function outputValues(res: InferResponse, name: string): Array<number | boolean | string> {
  const i = res.outputs.findIndex((o) => o.name === name);
  if (i < 0) throw new Error(`no output ${name} in ${res.outputs.map((o) => o.name).join(", ")}`);
  const o = res.outputs[i] as OutputTensor;
  if (res.raw_output_contents.length > 0) {
    return decodeRaw(o.datatype, res.raw_output_contents[i] as Buffer).map((v) => (typeof v === "bigint" ? Number(v) : v));
  }
  const c = o.contents as Contents;
  switch (o.datatype) {
    case "FP32": return c.fp32_contents;
    case "FP64": return c.fp64_contents;
    case "INT64": return c.int64_contents.map(Number);
    case "UINT64": return c.uint64_contents.map(Number);
    case "BOOL": return c.bool_contents;
    case "BYTES": return c.bytes_contents.map((b) => b.toString("utf8"));
    case "INT8": case "INT16": case "INT32": return c.int_contents;
    default: return c.uint_contents;
  }
}

export { Metadata };
