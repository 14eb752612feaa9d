/** The gRPC request the bench sends, built from the repository's proto, and a check that the server answers it. */
import path from "node:path";
import { Client, credentials, Metadata } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import type { MethodDefinition } from "@grpc/proto-loader";
import { ROOT } from "./config.js";

export const PROTO_FILE = path.join(ROOT, "proto", "open_inference_grpc.proto");

export function modelInferMethod(): MethodDefinition<object, unknown> {
  const definition = loadSync(PROTO_FILE, { keepCase: true, longs: String, defaults: true, oneofs: true });
  const service = definition["inference.GRPCInferenceService"] as unknown as Record<string, MethodDefinition<object, unknown>>;
  const method = service.ModelInfer;
  if (method === undefined) throw new Error("bench: no ModelInfer in proto/open_inference_grpc.proto");
  return method;
}

/** ModelInfer for one float32 tensor, sent as raw_input_contents (what Triton's clients send by default). */
export function inferRequest(model: string, input: string, shape: number[], values: Float32Array): object {
  return {
    model_name: model,
    inputs: [{ name: input, datatype: "FP32", shape }],
    raw_input_contents: [Buffer.from(values.buffer, values.byteOffset, values.byteLength)],
  };
}

/** A gRPC length-prefixed message (uncompressed): the HTTP/2 DATA a gRPC client sends for one unary call. */
export function grpcFrame(method: MethodDefinition<object, unknown>, request: object): Buffer {
  const message = method.requestSerialize(request);
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  return frame;
}

/** One ModelInfer call; throws unless it succeeds with outputs. */
export async function verifyInfer(address: string, method: MethodDefinition<object, unknown>, request: object): Promise<void> {
  const client = new Client(address, credentials.createInsecure());
  try {
    const response = await new Promise<unknown>((resolve, reject) => {
      client.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, request, new Metadata(), { deadline: Date.now() + 30_000 }, (err: ServiceError | null, value?: unknown) => {
        if (err !== null) reject(new Error(`gRPC ModelInfer failed: ${err.code} ${err.details}`));
        else resolve(value);
      });
    });
    const outputs = (response as { outputs?: unknown[] }).outputs;
    if (!Array.isArray(outputs) || outputs.length === 0) throw new Error("gRPC ModelInfer answered without outputs");
  } finally {
    client.close();
  }
}
