import { createHash } from "node:crypto";
import type { Tensor } from "../../core/index.js";

/** The exact model a result was computed by: a reused version number with other files gets another digest. */
export interface ModelIdentity {
  name: string;
  version: number;
  /** Artifact content digest of the version. */
  digest: string;
}

const MAX_PREFIXES = 1024;
const prefixes = new Map<string, Buffer>();

function lengthPrefixed(s: string): Buffer[] {
  const b = Buffer.from(s, "utf8");
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32LE(b.length, 0);
  return [len, b];
}

/** The hashed bytes that depend only on the model identity and the requested outputs. */
function prefixOf(model: ModelIdentity, outputs: readonly string[] | undefined): Buffer {
  const id = JSON.stringify([model.name, model.version, model.digest, outputs ?? null]);
  let prefix = prefixes.get(id);
  if (prefix === undefined) {
    const fields = ["mlship-prediction-v1", model.name, String(model.version), model.digest];
    if (outputs === undefined) fields.push("*all*");
    else fields.push(`outputs:${outputs.length}`, ...outputs);
    prefix = Buffer.concat(fields.flatMap(lengthPrefixed));
    // Output lists come from clients: bounded, and starting over is cheap.
    if (prefixes.size >= MAX_PREFIXES) prefixes.clear();
    prefixes.set(id, prefix);
  }
  return prefix;
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
  // The same bytes as hashing each field in turn (sha256 streams), built once per model version and outputs.
  h.update(prefixOf(model, outputs));
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
