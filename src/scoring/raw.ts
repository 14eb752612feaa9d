import os from "node:os";
import { allocate, MlshipError } from "../core/index.js";
import type { DType, Tensor, TensorData } from "../core/index.js";

/**
 * The raw tensor wire form shared by gRPC `raw_input_contents`/`raw_output_contents` and the REST binary tensor
 * extension: little-endian, row-major, no padding, native element size (BOOL one byte, 0 or 1; FP16 the IEEE
 * half bits); a BYTES element is a 4-byte little-endian length followed by its bytes.
 */

const LITTLE_ENDIAN = os.endianness() === "LE";

/** Bytes per element of each fixed-size dtype on the wire. */
export const RAW_ELEMENT_BYTES: Readonly<Record<Exclude<DType, "string">, number>> = {
  float16: 2, float32: 4, float64: 8,
  int8: 1, int16: 2, int32: 4, int64: 8,
  uint8: 1, uint16: 2, uint32: 4, uint64: 8,
  bool: 1,
};

function fail(code: "MLSHIP_ERR_INPUT_SHAPE" | "MLSHIP_ERR_INPUT_INVALID" | "MLSHIP_ERR_INPUT_DTYPE", field: string, message: string): MlshipError {
  return new MlshipError(code, message, { field });
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Reverses each element's bytes in place, for the rare big-endian host (the wire is little-endian). */
function swapBytes(bytes: Uint8Array, size: number): void {
  for (let i = 0; i + size <= bytes.length; i += size) bytes.subarray(i, i + size).reverse();
}

/**
 * Splits BYTES elements (4-byte little-endian length + bytes, one after another). `what` describes the tensor
 * for messages ("input 'x' (BYTES [3])"); errors name `field`. The elements are views of `bytes`.
 */
export function splitLengthPrefixed(bytesIn: Uint8Array, count: number, field: string, what: string): Buffer[] {
  const bytes = asBuffer(bytesIn);
  const out: Buffer[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    if (out.length === count) {
      throw fail("MLSHIP_ERR_INPUT_SHAPE", field, `${field} has bytes after the ${count} BYTES elements ${what} needs (each is a 4-byte little-endian length, then the bytes)`);
    }
    if (bytes.length - pos < 4) {
      throw fail("MLSHIP_ERR_INPUT_INVALID", field, `${field}: element ${out.length} starts at byte ${pos} but fewer than 4 bytes remain for its little-endian length`);
    }
    const n = bytes.readUInt32LE(pos);
    pos += 4;
    if (n > bytes.length - pos) {
      throw fail("MLSHIP_ERR_INPUT_INVALID", field, `${field}: element ${out.length} declares ${n} bytes but only ${bytes.length - pos} remain`);
    }
    out.push(bytes.subarray(pos, pos + n));
    pos += n;
  }
  if (out.length !== count) {
    throw fail("MLSHIP_ERR_INPUT_SHAPE", field, `${field} holds ${out.length} BYTES elements but ${what} needs ${count}`);
  }
  return out;
}

/**
 * Decodes one raw tensor of `count` elements: typed storage for fixed-size dtypes (size and BOOL values checked),
 * the elements' bytes for BYTES (the caller decides whether they are text or images). Errors name `field`.
 */
export function decodeRaw(bytesIn: Uint8Array, dtype: DType, count: number, field: string, what: string): TensorData | Buffer[] {
  if (dtype === "string") return splitLengthPrefixed(bytesIn, count, field, what);
  const bytes = asBuffer(bytesIn);
  const size = RAW_ELEMENT_BYTES[dtype];
  const expected = count * size;
  if (bytes.length !== expected) {
    throw fail(
      "MLSHIP_ERR_INPUT_SHAPE",
      field,
      `${field} has ${bytes.length} bytes but ${what} needs ${expected} (${count} elements x ${size} bytes, little-endian)`,
    );
  }
  // A copy, never a view: the runtime transfers the feed's buffer to a worker, and the received bytes share
  // a buffer with the rest of the message (and may be misaligned for a typed-array view).
  const out = allocate(dtype, count) as Exclude<TensorData, string[]>;
  const view = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  view.set(bytes);
  if (!LITTLE_ENDIAN && size > 1) swapBytes(view, size);
  if (dtype === "bool") {
    for (let j = 0; j < count; j++) {
      const b = view[j] as number;
      if (b > 1) throw fail("MLSHIP_ERR_INPUT_DTYPE", `${field}[${j}]`, `${field}[${j}]: a BOOL element is one byte, 0 or 1; got ${b}`);
    }
  }
  return out;
}

/** A tensor in raw form. On a little-endian host a fixed-size tensor's bytes are shared, not copied. */
export function encodeRaw(t: Tensor): Buffer {
  if (t.dtype === "string") {
    const parts: Buffer[] = [];
    for (const s of t.data as string[]) {
      const bytes = Buffer.from(s, "utf8");
      const len = Buffer.allocUnsafe(4);
      len.writeUInt32LE(bytes.length, 0);
      parts.push(len, bytes);
    }
    return Buffer.concat(parts);
  }
  const data = t.data as Exclude<TensorData, string[]>;
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (LITTLE_ENDIAN) return bytes;
  const copy = Buffer.from(bytes);
  swapBytes(copy, RAW_ELEMENT_BYTES[t.dtype]);
  return copy;
}
