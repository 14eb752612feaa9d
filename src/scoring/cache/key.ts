import { createHash } from "node:crypto";
import type { Tensor } from "../../core/index.js";

/** The exact model a result was computed by: a reused version number with other files gets another digest. */
export interface ModelIdentity {
  name: string;
  version: number;
  /** Artifact content digest of the version. */
  digest: string;
}

/**
 * Cache key of one request: sha256 over the model identity, the requested outputs (or "all") and every input
 * tensor after parsing and validation (name, dtype, shape, raw element bytes; strings length-prefixed), inputs
 * in name order. The same rows sent as V2 JSON, MLflow JSON or CSV become the same typed tensors, hence one key.
 * Must run before the feeds are handed to the runtime (their buffers are transferred to a worker).
 */
export function predictionKey(model: ModelIdentity, feeds: Record<string, Tensor>, outputs: readonly string[] | undefined): string {
  const h = createHash("sha256");
  const field = (s: string): void => {
    const b = Buffer.from(s, "utf8");
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32LE(b.length, 0);
    h.update(len);
    h.update(b);
  };
  field("mlship-prediction-v1");
  field(model.name);
  field(String(model.version));
  field(model.digest);
  if (outputs === undefined) field("*all*");
  else {
    field(`outputs:${outputs.length}`);
    for (const o of outputs) field(o);
  }
  const names = Object.keys(feeds).sort();
  field(`inputs:${names.length}`);
  for (const name of names) {
    const t = feeds[name] as Tensor;
    field(name);
    field(t.dtype);
    field(t.shape.join(","));
    if (Array.isArray(t.data)) {
      field(`strings:${t.data.length}`);
      for (const s of t.data) field(s);
    } else {
      const d = t.data;
      const len = Buffer.allocUnsafe(8);
      len.writeDoubleLE(d.byteLength, 0);
      h.update(len);
      h.update(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
    }
  }
  return h.digest("hex");
}
