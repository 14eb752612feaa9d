// proto/open_inference_grpc.proto against the canonical Open Inference Protocol definition
// (kserve/open-inference-protocol: specification/protocol/open_inference_grpc.proto), as tabled in
// shared/docs/serving-reference.md section 1.12: package, service, RPCs, message and field names, numbers and types.
import { describe, expect, it } from "vitest";
import { definition, METHODS } from "./client.js";

interface Field {
  name: string;
  number: number;
  label: string;
  type: string;
  typeName: string;
  oneofIndex: number;
}

interface Descriptor {
  name: string;
  field: Field[];
  nestedType: Descriptor[];
  oneofDecl: Array<{ name: string }>;
  options: { mapEntry?: boolean } | null;
}

/** `Message.field = number type` lines; map entries folded into `map<k,v>`; oneof members marked. */
function describeMessage(d: Descriptor, prefix = ""): string[] {
  const lines: string[] = [];
  const maps = new Map(d.nestedType.filter((n) => n.options?.mapEntry === true).map((n) => [n.name, n]));
  for (const f of d.field) {
    const entry = f.type === "TYPE_MESSAGE" ? maps.get(f.typeName) : undefined;
    let type: string;
    if (entry !== undefined) {
      const [k, v] = entry.field;
      type = `map<${(k as Field).type.slice(5).toLowerCase()},${(v as Field).typeName}>`;
    } else {
      const base = f.type === "TYPE_MESSAGE" ? f.typeName : f.type.slice(5).toLowerCase();
      type = f.label === "LABEL_REPEATED" ? `repeated ${base}` : base;
    }
    const oneof = d.oneofDecl.length > 0 ? ` (oneof ${d.oneofDecl[f.oneofIndex]?.name})` : "";
    lines.push(`${prefix}${d.name}.${f.name} = ${f.number} ${type}${oneof}`);
  }
  for (const n of d.nestedType) if (n.options?.mapEntry !== true) lines.push(...describeMessage(n, `${prefix}${d.name}.`));
  return lines;
}

const CANONICAL = `
ServerLiveResponse.live = 1 bool
ServerReadyResponse.ready = 1 bool
ModelReadyRequest.name = 1 string
ModelReadyRequest.version = 2 string
ModelReadyResponse.ready = 1 bool
ServerMetadataResponse.name = 1 string
ServerMetadataResponse.version = 2 string
ServerMetadataResponse.extensions = 3 repeated string
ModelMetadataRequest.name = 1 string
ModelMetadataRequest.version = 2 string
ModelMetadataResponse.name = 1 string
ModelMetadataResponse.versions = 2 repeated string
ModelMetadataResponse.platform = 3 string
ModelMetadataResponse.inputs = 4 repeated TensorMetadata
ModelMetadataResponse.outputs = 5 repeated TensorMetadata
ModelMetadataResponse.TensorMetadata.name = 1 string
ModelMetadataResponse.TensorMetadata.datatype = 2 string
ModelMetadataResponse.TensorMetadata.shape = 3 repeated int64
ModelInferRequest.model_name = 1 string
ModelInferRequest.model_version = 2 string
ModelInferRequest.id = 3 string
ModelInferRequest.parameters = 4 map<string,InferParameter>
ModelInferRequest.inputs = 5 repeated InferInputTensor
ModelInferRequest.outputs = 6 repeated InferRequestedOutputTensor
ModelInferRequest.raw_input_contents = 7 repeated bytes
ModelInferRequest.InferInputTensor.name = 1 string
ModelInferRequest.InferInputTensor.datatype = 2 string
ModelInferRequest.InferInputTensor.shape = 3 repeated int64
ModelInferRequest.InferInputTensor.parameters = 4 map<string,InferParameter>
ModelInferRequest.InferInputTensor.contents = 5 InferTensorContents
ModelInferRequest.InferRequestedOutputTensor.name = 1 string
ModelInferRequest.InferRequestedOutputTensor.parameters = 2 map<string,InferParameter>
ModelInferResponse.model_name = 1 string
ModelInferResponse.model_version = 2 string
ModelInferResponse.id = 3 string
ModelInferResponse.parameters = 4 map<string,InferParameter>
ModelInferResponse.outputs = 5 repeated InferOutputTensor
ModelInferResponse.raw_output_contents = 6 repeated bytes
ModelInferResponse.InferOutputTensor.name = 1 string
ModelInferResponse.InferOutputTensor.datatype = 2 string
ModelInferResponse.InferOutputTensor.shape = 3 repeated int64
ModelInferResponse.InferOutputTensor.parameters = 4 map<string,InferParameter>
ModelInferResponse.InferOutputTensor.contents = 5 InferTensorContents
InferParameter.bool_param = 1 bool (oneof parameter_choice)
InferParameter.int64_param = 2 int64 (oneof parameter_choice)
InferParameter.string_param = 3 string (oneof parameter_choice)
InferParameter.double_param = 4 double (oneof parameter_choice)
InferParameter.uint64_param = 5 uint64 (oneof parameter_choice)
InferTensorContents.bool_contents = 1 repeated bool
InferTensorContents.int_contents = 2 repeated int32
InferTensorContents.int64_contents = 3 repeated int64
InferTensorContents.uint_contents = 4 repeated uint32
InferTensorContents.uint64_contents = 5 repeated uint64
InferTensorContents.fp32_contents = 6 repeated float
InferTensorContents.fp64_contents = 7 repeated double
InferTensorContents.bytes_contents = 8 repeated bytes
`.trim().split("\n");

describe("proto/open_inference_grpc.proto", () => {
  it("declares package inference, service GRPCInferenceService and the six unary RPCs", () => {
    const service = definition["inference.GRPCInferenceService"] as unknown as Record<string, {
      path: string;
      requestStream: boolean;
      responseStream: boolean;
      requestType: { type: Descriptor };
      responseType: { type: Descriptor };
    }>;
    expect(Object.keys(service).sort()).toEqual([...METHODS].sort());
    for (const m of METHODS) {
      const def = service[m];
      expect(def?.path).toBe(`/inference.GRPCInferenceService/${m}`);
      expect(def?.requestStream).toBe(false);
      expect(def?.responseStream).toBe(false);
      expect(def?.requestType.type.name).toBe(`${m}Request`);
      expect(def?.responseType.type.name).toBe(`${m}Response`);
    }
  });

  it("has exactly the canonical messages, field names, numbers and types", () => {
    const messages = Object.entries(definition)
      .filter(([key, def]) => key.startsWith("inference.") && "type" in def && (def as { format?: string }).format !== undefined)
      .map(([key, def]) => [key, (def as unknown as { type: Descriptor }).type] as const);
    expect(messages.map(([key]) => key).sort()).toEqual([
      "inference.InferParameter",
      "inference.InferTensorContents",
      ...METHODS.flatMap((m) => [`inference.${m}Request`, `inference.${m}Response`]),
    ].sort());
    const lines = messages.flatMap(([, type]) => describeMessage(type));
    expect(lines.sort()).toEqual([...CANONICAL].sort());
  });
});
