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

/** Bytes of a tensor's payload: the typed array's, or per string a u32 length and its UTF-8. */
function payloadBytes(data: TensorData): number {
  if (!Array.isArray(data)) return data.byteLength;
  let n = 4 * data.length;
  for (const s of data) n += Buffer.byteLength(s, "utf8");
  return n;
}

export function encodePrediction(value: CachedPrediction): Buffer {
  const outputs = value.outputs;
  const names = Object.keys(outputs);
  // Sized first and written into one buffer, names and strings in place: the entry is made on every cache miss.
  let size = 7;
  for (const name of names) {
    const t = outputs[name] as Tensor;
    size += 2 + Buffer.byteLength(name, "utf8") + 2 + 8 * t.shape.length + 4 + payloadBytes(t.data);
  }
  // Not from Node's shared pool: an entry lives long, and a pooled slice would keep its whole 8 KiB pool alive.
  const out = Buffer.allocUnsafeSlow(size);
  out.writeUInt32LE(MAGIC, 0);
  out.writeUInt8(FORMAT, 4);
  let o = out.writeUInt16LE(names.length, 5);
  for (const name of names) {
    const t = outputs[name] as Tensor;
    const nameBytes = out.write(name, o + 2, "utf8");
    o = out.writeUInt16LE(nameBytes, o) + nameBytes;
    o = out.writeUInt8(DTYPES.indexOf(t.dtype), o);
    o = out.writeUInt8(t.shape.length, o);
    for (const d of t.shape) o = out.writeDoubleLE(d, o);
    const start = o + 4;
    let end = start;
    if (Array.isArray(t.data)) {
      for (const s of t.data) {
        const n = out.write(s, end + 4, "utf8");
        out.writeUInt32LE(n, end);
        end += 4 + n;
      }
    } else {
      out.set(rawBytes(t.data), start);
      end = start + t.data.byteLength;
    }
    out.writeUInt32LE(end - start, o);
    o = end;
  }
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
