import { open, stat } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import type { InferenceSession } from "onnxruntime-node";
import type { DType } from "../core/index.js";
import type { OnnxGraphInfo, TensorSpec } from "./types.js";
import { invalid, notFound, unsupported } from "./util.js";

/** onnxruntime-node's element type names -> our dtypes. Types not listed (bfloat16, int4, float8...) are refused. */
const ORT_TYPES: Record<string, DType> = {
  float16: "float16", float32: "float32", float64: "float64",
  int8: "int8", int16: "int16", int32: "int32", int64: "int64",
  uint8: "uint8", uint16: "uint16", uint32: "uint32", uint64: "uint64",
  bool: "bool", string: "string",
};

interface OrtValueMetadata {
  name: string;
  isTensor: boolean;
  type?: string;
  shape?: ReadonlyArray<number | string>;
}

/**
 * Reads an ONNX file's inputs and outputs through onnxruntime (on the calling thread: registration time only) and
 * the ModelProto header (IR version, producer, default-domain opset) by hand, since ORT does not expose those.
 * Non-tensor outputs (e.g. skl2onnx's ZipMap) are left out of `outputs`; a non-tensor input is refused.
 */
export async function inspectOnnx(modelPath: string): Promise<OnnxGraphInfo> {
  try {
    const info = await stat(modelPath);
    if (!info.isFile()) throw new Error("not a file");
  } catch {
    throw notFound(modelPath, "no such ONNX file");
  }
  const header = await readOnnxHeader(modelPath).catch(() => undefined);
  // Loaded on first use: importing the package module must not pull the native runtime into every thread.
  const ort = await import("onnxruntime-node");
  let session: InferenceSession;
  try {
    session = await ort.InferenceSession.create(modelPath);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw invalid(modelPath, `not a valid ONNX model (onnxruntime: ${reason.replace(/^Load model from \S+ failed:/, "")})`,
      "(model file)", error);
  }
  try {
    const inputs = toSpecs(modelPath, session.inputMetadata as readonly OrtValueMetadata[], "input", true);
    const outputs = toSpecs(modelPath, session.outputMetadata as readonly OrtValueMetadata[], "output", false);
    if (outputs.length === 0) {
      throw unsupported(modelPath, "the graph has no tensor outputs (maps/sequences are not supported; for " +
        "skl2onnx classifiers convert with options={'zipmap': False})", "(graph outputs)");
    }
    const result: OnnxGraphInfo = { inputs, outputs };
    if (header?.opset !== undefined) result.opset = header.opset;
    if (header?.producer !== undefined) result.producer = header.producer;
    if (header?.irVersion !== undefined) result.irVersion = header.irVersion;
    return result;
  } finally {
    await session.release();
  }
}

function toSpecs(file: string, metas: readonly OrtValueMetadata[], kind: "input" | "output",
  strict: boolean): TensorSpec[] {
  const specs: TensorSpec[] = [];
  for (const meta of metas) {
    if (!meta.isTensor) {
      if (strict) {
        throw unsupported(file, `${kind} ${JSON.stringify(meta.name)} is not a tensor (maps/sequences are not ` +
          "supported)", `(graph ${kind}s)`);
      }
      continue;
    }
    const dtype = meta.type === undefined ? undefined : ORT_TYPES[meta.type];
    if (dtype === undefined) {
      throw unsupported(file, `${kind} ${JSON.stringify(meta.name)} has element type ${String(meta.type)}, which ` +
        "mlship does not support", `(graph ${kind}s)`);
    }
    // Symbolic dims ("batch") and unknown ones come back as strings or negative numbers: both mean variable.
    const shape = (meta.shape ?? []).map((d) => (typeof d === "number" && Number.isInteger(d) && d >= 0 ? d : -1));
    specs.push({ name: meta.name, dtype, shape });
  }
  return specs;
}

export interface OnnxHeader {
  irVersion?: number;
  producer?: string;
  opset?: number;
}

/**
 * Reads the top-level ModelProto fields we report, skipping the graph without loading it: ir_version (1),
 * producer_name (2), producer_version (3) and opset_import (8, {domain: 1, version: 2}).
 */
export async function readOnnxHeader(file: string): Promise<OnnxHeader> {
  const handle = await open(file, "r");
  try {
    const size = (await handle.stat()).size;
    const reader = new ChunkReader(handle, size);
    const header: OnnxHeader = {};
    let producerName: string | undefined;
    let producerVersion: string | undefined;
    while (reader.pos < size) {
      const tag = await reader.varint();
      const field = Number(tag >> 3n);
      const wire = Number(tag & 7n);
      if (wire === 0) {
        const v = await reader.varint();
        if (field === 1) header.irVersion = Number(v);
      } else if (wire === 2) {
        const len = Number(await reader.varint());
        if (field === 2 || field === 3) {
          const text = Buffer.from(await reader.bytes(len)).toString("utf8");
          if (field === 2) producerName = text;
          else producerVersion = text;
        } else if (field === 8 && len < 4096) {
          const opset = parseOpset(await reader.bytes(len));
          if (opset.domain === "" || opset.domain === "ai.onnx") header.opset = opset.version;
        } else {
          reader.skip(len);
        }
      } else if (wire === 1) {
        reader.skip(8);
      } else if (wire === 5) {
        reader.skip(4);
      } else {
        throw new Error(`unexpected wire type ${wire}`);
      }
    }
    if (reader.pos !== size) throw new Error("truncated protobuf");
    const producer = [producerName, producerVersion].filter((s) => s !== undefined && s.length > 0).join(" ");
    if (producer.length > 0) header.producer = producer;
    return header;
  } finally {
    await handle.close();
  }
}

function parseOpset(buf: Uint8Array): { domain: string; version?: number } {
  let pos = 0;
  let domain = "";
  let version: number | undefined;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const byte = buf[pos++];
      if (byte === undefined) throw new Error("truncated varint");
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7n;
    }
  };
  while (pos < buf.length) {
    const tag = varint();
    const field = Number(tag >> 3n);
    const wire = Number(tag & 7n);
    if (wire === 0) {
      const v = varint();
      if (field === 2) version = Number(v);
    } else if (wire === 2) {
      const len = Number(varint());
      if (field === 1) domain = Buffer.from(buf.subarray(pos, pos + len)).toString("utf8");
      pos += len;
    } else {
      throw new Error(`unexpected wire type ${wire}`);
    }
  }
  return version === undefined ? { domain } : { domain, version };
}

/** Reads a file sequentially through a small window, so skipping a large graph costs nothing. */
class ChunkReader {
  pos = 0;
  private buf = new Uint8Array(0);
  private bufStart = 0;

  constructor(private readonly handle: FileHandle, private readonly size: number) {}

  private async fill(need: number): Promise<void> {
    const offset = this.pos - this.bufStart;
    if (offset >= 0 && offset + need <= this.buf.length) return;
    const length = Math.min(Math.max(need, 64 * 1024), this.size - this.pos);
    if (length < need) throw new Error("truncated protobuf");
    const buf = new Uint8Array(length);
    const { bytesRead } = await this.handle.read(buf, 0, length, this.pos);
    if (bytesRead < need) throw new Error("short read");
    this.buf = buf.subarray(0, bytesRead);
    this.bufStart = this.pos;
  }

  async varint(): Promise<bigint> {
    await this.fill(Math.min(10, this.size - this.pos));
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      const byte = this.buf[this.pos - this.bufStart];
      if (byte === undefined) throw new Error("truncated varint");
      this.pos++;
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7n;
    }
    throw new Error("varint too long");
  }

  async bytes(len: number): Promise<Uint8Array> {
    await this.fill(len);
    const start = this.pos - this.bufStart;
    this.pos += len;
    return this.buf.subarray(start, start + len);
  }

  skip(len: number): void {
    if (len < 0 || this.pos + len > this.size) throw new Error("truncated protobuf");
    this.pos += len;
  }
}
