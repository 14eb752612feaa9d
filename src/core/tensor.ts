/** Tensor element types shared by the package signature, the runtimes and the protocols. */
export const DTYPES = [
  "float16", "float32", "float64",
  "int8", "int16", "int32", "int64",
  "uint8", "uint16", "uint32", "uint64",
  "bool", "string",
] as const;
export type DType = (typeof DTYPES)[number];

export function isDType(value: unknown): value is DType {
  return typeof value === "string" && (DTYPES as readonly string[]).includes(value);
}

/** Open Inference Protocol V2 datatype names for each dtype. */
export const V2_DATATYPE: Record<DType, string> = {
  float16: "FP16", float32: "FP32", float64: "FP64",
  int8: "INT8", int16: "INT16", int32: "INT32", int64: "INT64",
  uint8: "UINT8", uint16: "UINT16", uint32: "UINT32", uint64: "UINT64",
  bool: "BOOL", string: "BYTES",
};

const FROM_V2: Record<string, DType> = Object.fromEntries(
  Object.entries(V2_DATATYPE).map(([dtype, v2]) => [v2, dtype as DType]),
);

export function dtypeFromV2(datatype: string): DType | undefined {
  return FROM_V2[datatype];
}

/** Element storage per dtype. int64/uint64 use BigInt arrays, as onnxruntime does; bool uses 0/1 bytes. */
export type TensorData =
  | Float32Array | Float64Array | Uint16Array
  | Int8Array | Int16Array | Int32Array | BigInt64Array
  | Uint8Array | Uint32Array | BigUint64Array
  | string[];

export interface Tensor {
  dtype: DType;
  /** Concrete dimensions (no -1). */
  shape: number[];
  data: TensorData;
}

export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Allocates the storage array for `count` elements of `dtype`. float16 is carried as raw Uint16 bits. */
export function allocate(dtype: DType, count: number): TensorData {
  switch (dtype) {
    case "float16": return new Uint16Array(count);
    case "float32": return new Float32Array(count);
    case "float64": return new Float64Array(count);
    case "int8": return new Int8Array(count);
    case "int16": return new Int16Array(count);
    case "int32": return new Int32Array(count);
    case "int64": return new BigInt64Array(count);
    case "uint8": return new Uint8Array(count);
    case "uint16": return new Uint16Array(count);
    case "uint32": return new Uint32Array(count);
    case "uint64": return new BigUint64Array(count);
    case "bool": return new Uint8Array(count);
    case "string": return new Array<string>(count).fill("");
  }
}

/** Plain JS values of a tensor, flattened row-major: bigint becomes number, bool becomes boolean. */
export function tensorToList(tensor: Tensor): Array<number | boolean | string> {
  const { data, dtype } = tensor;
  if (Array.isArray(data)) return data.slice();
  if (dtype === "bool") return Array.from(data as Uint8Array, (v) => v !== 0);
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) return Array.from(data, (v) => Number(v));
  return Array.from(data as ArrayLike<number>);
}

/** Nests a flat list into the given shape (row-major). A rank-0 shape returns the single element. */
export function nest<T>(flat: readonly T[], shape: readonly number[]): unknown {
  if (shape.length === 0) return flat[0];
  if (shape.length === 1) return flat.slice();
  const [outer, ...inner] = shape as [number, ...number[]];
  const step = elementCount(inner);
  const out: unknown[] = new Array(outer);
  for (let i = 0; i < outer; i++) out[i] = nest(flat.slice(i * step, (i + 1) * step), inner);
  return out;
}

/** float64 -> IEEE 754 half bits (round to nearest even), for FP16 tensors carried as Uint16Array (V2 FP16 inputs, ONNX float16 initializers). */
export function toFloat16Bits(value: number): number {
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  f32[0] = value;
  const x = u32[0] ?? 0;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1) !== 0)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) !== 0)) half++;
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  return sign | half;
}
