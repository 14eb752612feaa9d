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
  // Sized first and written into one buffer: the entry is made on every cache miss.
  const names = entries.map(([name]) => Buffer.from(name, "utf8"));
  const payloads = entries.map(([, t]) => (Array.isArray(t.data) ? stringPayload(t.data) : rawBytes(t.data)));
  let size = 7;
  entries.forEach(([, t], i) => {
    size += 2 + (names[i] as Buffer).length + 2 + 8 * t.shape.length + 4 + (payloads[i] as Uint8Array).byteLength;
  });
  // Not from Node's shared pool: an entry lives long, and a pooled slice would keep its whole 8 KiB pool alive.
  const out = Buffer.allocUnsafeSlow(size);
  out.writeUInt32LE(MAGIC, 0);
  out.writeUInt8(FORMAT, 4);
  let o = out.writeUInt16LE(entries.length, 5);
  entries.forEach(([, t], i) => {
    const name = names[i] as Buffer;
    const payload = payloads[i] as Uint8Array;
    o = out.writeUInt16LE(name.length, o);
    o += name.copy(out, o);
    o = out.writeUInt8(DTYPES.indexOf(t.dtype), o);
    o = out.writeUInt8(t.shape.length, o);
    for (const d of t.shape) o = out.writeDoubleLE(d, o);
    o = out.writeUInt32LE(payload.byteLength, o);
    out.set(payload, o);
    o += payload.byteLength;
  });
  return out;
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
