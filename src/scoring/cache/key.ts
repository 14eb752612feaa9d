import { hash } from "node:crypto";
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
  const id = outputs === undefined ? `${model.digest}\u0000${model.version}\u0000${model.name}` : JSON.stringify([model.name, model.version, model.digest, outputs]);
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

/** Appends length-prefixed fields and raw bytes into one buffer, grown as needed, for a single hash call. */
class KeyBytes {
  private buf: Buffer;
  private at = 0;
  constructor(initial: number) {
    this.buf = Buffer.allocUnsafe(Math.max(256, initial));
  }
  private room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + n));
    this.buf.copy(next, 0, 0, this.at);
    this.buf = next;
  }
  bytes(b: Uint8Array): void {
    this.room(b.byteLength);
    this.buf.set(b, this.at);
    this.at += b.byteLength;
  }
  field(s: string): void {
    const n = Buffer.byteLength(s, "utf8");
    this.room(4 + n);
    this.at = this.buf.writeUInt32LE(n, this.at);
    this.at += this.buf.write(s, this.at, "utf8");
  }
  /** The tensor's byte length as a float64, then its bytes. */
  payload(d: Uint8Array): void {
    this.room(8 + d.byteLength);
    this.at = this.buf.writeDoubleLE(d.byteLength, this.at);
    this.buf.set(d, this.at);
    this.at += d.byteLength;
  }
  digest(): string {
    return hash("sha256", this.buf.subarray(0, this.at), "hex");
  }
}

/**
 * Cache key of one request: sha256 over the model identity, the requested outputs (or "all") and every input
 * tensor after parsing and validation (name, dtype, shape, raw element bytes; strings length-prefixed), inputs
 * in name order. The same rows sent as V2 JSON, MLflow JSON or CSV become the same typed tensors, hence one key.
 * Must run before the feeds are handed to the runtime (their buffers are transferred to a worker).
 */
export function predictionKey(model: ModelIdentity, feeds: Record<string, Tensor>, outputs: readonly string[] | undefined): string {
  const names = Object.keys(feeds).sort();
  let size = 64;
  for (const name of names) {
    const d = (feeds[name] as Tensor).data;
    size += 64 + (Array.isArray(d) ? 0 : d.byteLength);
  }
  const prefix = prefixOf(model, outputs);
  const key = new KeyBytes(prefix.length + size);
  key.bytes(prefix);
  key.field(`inputs:${names.length}`);
  for (const name of names) {
    const t = feeds[name] as Tensor;
    key.field(name);
    key.field(t.dtype);
    key.field(t.shape.join(","));
    if (Array.isArray(t.data)) {
      key.field(`strings:${t.data.length}`);
      for (const s of t.data) key.field(s);
    } else {
      const d = t.data;
      key.payload(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
    }
  }
  return key.digest();
}
