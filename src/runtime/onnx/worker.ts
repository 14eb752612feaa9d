/** The ONNX worker script: one onnxruntime-node session per loaded model key, served over the pool protocol. */
import * as ort from "onnxruntime-node";
import { serveWorker, workerPayload } from "../pool/index.js";
import type { Outputs } from "../pool/index.js";
import { fromOrtValue, signatureFromSession, toOrtTensor } from "./convert.js";
import type { OrtSignature } from "./convert.js";

export interface OnnxWorkerData {
  intraOpThreads: number;
  /** Absent in payloads from older callers: 1. */
  interOpThreads?: number;
}

const defaults = workerPayload<OnnxWorkerData>();

serveWorker(async (spec) => {
  const options: ort.InferenceSession.SessionOptions = {
    // Parallelism comes from the pool's workers; ORT's own thread pools would oversubscribe the cores.
    intraOpNumThreads: defaults.intraOpThreads,
    interOpNumThreads: defaults.interOpThreads ?? 1,
    // Inter-op threads only run graph branches side by side in parallel mode.
    executionMode: (defaults.interOpThreads ?? 1) > 1 ? "parallel" : "sequential",
    graphOptimizationLevel: "all",
    // ORT would also print every run error to stderr; the message already travels back in the rejected promise.
    logSeverityLevel: 4,
    ...(spec.options as ort.InferenceSession.SessionOptions | undefined),
  };
  const session = await ort.InferenceSession.create(spec.modelPath, options);
  const signature = await signatureOrRelease(session);
  const fetchAll = signature.outputs.map((o) => o.name);
  return {
    signature: { inputs: signature.inputs, outputs: signature.outputs },
    async run(feeds, outputs) {
      const ortFeeds: Record<string, ort.Tensor> = {};
      for (const [name, tensor] of Object.entries(feeds)) ortFeeds[name] = toOrtTensor(tensor);
      const result = await session.run(ortFeeds, outputs ?? fetchAll);
      const out: Outputs = {};
      for (const [name, value] of Object.entries(result)) out[name] = fromOrtValue(name, value);
      return out;
    },
    release: () => session.release(),
  };
});

async function signatureOrRelease(session: ort.InferenceSession): Promise<OrtSignature> {
  try {
    return signatureFromSession(session);
  } catch (error) {
    await session.release();
    throw error;
  }
}
