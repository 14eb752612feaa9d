import { DTYPES, allocate, elementCount, type DType, type Tensor, type TensorData } from "../../core/index.js";
import type { CachedPrediction } from "./types.js";

/**
 * Binary entry layout (little endian), so numbers keep their exact bits and take their raw size:
 * "MLPC" u8 format, u16 tensor count, then per tensor: u16 name bytes + name, u8 dtype index, u8 rank,
 * rank x f64 dims, u32 payload bytes + payload. Numeric payloads are the typed array's bytes; string payloads
 * are u32 length + UTF-8 per element.
 */
const MAGIC = 0x4350_4c4d; // "MLPC" read as a little-endian u32
const FORMAT = 1;

function rawBytes(data: Exclude<TensorData, string[]>): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function stringPayload(data: readonly string[]): Buffer {
  const parts: Buffer[] = [];
  for (const s of data) {
    const b = Buffer.from(s, "utf8");
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32LE(b.length, 0);
    parts.push(len, b);
  }
  return Buffer.concat(parts);
}

export function encodePrediction(value: CachedPrediction): Buffer {
  const entries = Object.entries(value.outputs);
  const parts: Uint8Array[] = [];
  const head = Buffer.allocUnsafe(7);
  head.writeUInt32LE(MAGIC, 0);
  head.writeUInt8(FORMAT, 4);
  head.writeUInt16LE(entries.length, 5);
  parts.push(head);
  for (const [name, t] of entries) {
    const nameBytes = Buffer.from(name, "utf8");
    const meta = Buffer.allocUnsafe(2 + nameBytes.length + 2 + 8 * t.shape.length + 4);
    let o = meta.writeUInt16LE(nameBytes.length, 0);
    o += nameBytes.copy(meta, o);
    o = meta.writeUInt8(DTYPES.indexOf(t.dtype), o);
    o = meta.writeUInt8(t.shape.length, o);
    for (const d of t.shape) o = meta.writeDoubleLE(d, o);
    const payload = Array.isArray(t.data) ? stringPayload(t.data) : rawBytes(t.data);
    meta.writeUInt32LE(payload.byteLength, o);
    parts.push(meta, payload);
  }
  return Buffer.concat(parts);
}

class Reader {
  offset = 0;
  constructor(private readonly buf: Buffer) {}
  need(n: number): void {
    if (this.offset + n > this.buf.length) throw new Error("cache entry is truncated");
  }
  u8(): number {
    this.need(1);
    return this.buf.readUInt8(this.offset++);
  }
  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16LE(this.offset);
    this.offset += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.offset);
    this.offset += 4;
    return v;
  }
  f64(): number {
    this.need(8);
    const v = this.buf.readDoubleLE(this.offset);
    this.offset += 8;
    return v;
  }
  bytes(n: number): Buffer {
    this.need(n);
    const v = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return v;
  }
}

/** Decodes into freshly allocated arrays (never views of `buf`), so callers own what they get. */
export function decodePrediction(buf: Buffer): CachedPrediction {
  const r = new Reader(buf);
  r.need(4);
  if (buf.readUInt32LE(0) !== MAGIC) throw new Error("not a cache entry (bad magic)");
  r.offset = 4;
  if (r.u8() !== FORMAT) throw new Error("cache entry has an unknown format version");
  const count = r.u16();
  const outputs: Record<string, Tensor> = {};
  for (let i = 0; i < count; i++) {
    const name = r.bytes(r.u16()).toString("utf8");
    const dtype: DType | undefined = DTYPES[r.u8()];
    if (dtype === undefined) throw new Error(`cache entry tensor '${name}' has an unknown dtype`);
    const rank = r.u8();
    const shape: number[] = [];
    for (let d = 0; d < rank; d++) shape.push(r.f64());
    const payload = r.bytes(r.u32());
    const count = elementCount(shape);
    let data: TensorData;
    if (dtype === "string") {
      const p = new Reader(payload);
      const strings: string[] = [];
      for (let k = 0; k < count; k++) strings.push(p.bytes(p.u32()).toString("utf8"));
      data = strings;
    } else {
      const typed = allocate(dtype, count) as Exclude<TensorData, string[]>;
      if (typed.byteLength !== payload.length) throw new Error(`cache entry tensor '${name}' has ${payload.length} bytes for shape [${shape.join(",")}]`);
      rawBytes(typed).set(payload);
      data = typed;
    }
    outputs[name] = { dtype, shape, data };
  }
  return { outputs };
}
