import { fileURLToPath } from "node:url";
import { loadSync, type Options, type PackageDefinition } from "@grpc/proto-loader";

/**
 * The Open Inference Protocol proto shipped in the package's `proto/` folder. src/serve/grpc and
 * dist/serve/grpc are both three levels below the package root, so one relative URL serves tsx, vitest and
 * the built package.
 */
export const PROTO_FILE = fileURLToPath(new URL("../../../proto/open_inference_grpc.proto", import.meta.url));

export const SERVICE_NAME = "inference.GRPCInferenceService";

/**
 * How messages become JS objects: proto field names as written (`raw_input_contents`); 64-bit integers as
 * decimal strings, because a JS number cannot hold every int64 and BigInt is not an option of the loader;
 * every field present with its default, so handlers never meet `undefined`; the oneof's chosen member named.
 */
export const LOADER_OPTIONS: Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

let cached: PackageDefinition | undefined;

/** The proto, parsed once per process. */
export function inferencePackageDefinition(): PackageDefinition {
  cached ??= loadSync(PROTO_FILE, LOADER_OPTIONS);
  return cached;
}

/** An `InferParameter` as the loader decodes it: the chosen member plus its name in `parameter_choice`. */
export interface InferParameter {
  bool_param?: boolean;
  int64_param?: string;
  string_param?: string;
  double_param?: number;
  uint64_param?: string;
  parameter_choice?: string;
}

/** Decoded `InferTensorContents`; 64-bit integers are decimal strings (see LOADER_OPTIONS). */
export interface InferTensorContents {
  bool_contents: boolean[];
  int_contents: number[];
  int64_contents: string[];
  uint_contents: number[];
  uint64_contents: string[];
  fp32_contents: number[];
  fp64_contents: number[];
  bytes_contents: Buffer[];
}

export type ContentsField = keyof InferTensorContents;

export interface InferInputTensor {
  name: string;
  datatype: string;
  shape: string[];
  parameters: Record<string, InferParameter>;
  contents: InferTensorContents | null;
}

export interface InferRequestedOutputTensor {
  name: string;
  parameters: Record<string, InferParameter>;
}

export interface ModelInferRequest {
  model_name: string;
  model_version: string;
  id: string;
  parameters: Record<string, InferParameter>;
  inputs: InferInputTensor[];
  outputs: InferRequestedOutputTensor[];
  raw_input_contents: Buffer[];
}

/**
 * Outgoing contents: only the one field that carries the data is set. 64-bit integers go out as decimal
 * strings (the serializer takes strings, numbers or Longs, not BigInts).
 */
export interface OutputContents {
  bool_contents?: boolean[];
  int_contents?: number[];
  int64_contents?: string[];
  uint_contents?: number[];
  uint64_contents?: string[];
  fp32_contents?: number[];
  fp64_contents?: number[];
  bytes_contents?: Buffer[];
}

export interface InferOutputTensor {
  name: string;
  datatype: string;
  shape: number[];
  /** `{content_type: {string_param: "json"}}` on a custom wrapper's json outputs. */
  parameters?: Record<string, InferParameter>;
  contents?: OutputContents;
}

export interface ModelInferResponse {
  model_name: string;
  model_version: string;
  id: string;
  outputs: InferOutputTensor[];
  raw_output_contents: Buffer[];
}

export interface ModelRequest {
  name: string;
  version: string;
}

export interface TensorMetadata {
  name: string;
  datatype: string;
  shape: number[];
}

export interface ModelMetadataResponse {
  name: string;
  versions: string[];
  platform: string;
  inputs: TensorMetadata[];
  outputs: TensorMetadata[];
}
