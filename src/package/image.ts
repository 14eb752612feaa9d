import type { Sharp, SharpOptions } from "sharp";
import { MlshipError } from "../core/index.js";
import type { ImageStep } from "./types.js";

type SharpFactory = (input?: Uint8Array, options?: SharpOptions) => Sharp;
let sharpModule: Promise<SharpFactory> | undefined;

/** sharp (libvips) is loaded on first use so that importing the package module stays cheap. */
function loadSharp(): Promise<SharpFactory> {
  sharpModule ??= import("sharp").then((m) => m.default as unknown as SharpFactory);
  return sharpModule;
}

/**
 * The most pixels an encoded request image may decode to (8192 x 8192). A few hundred bytes of PNG can claim
 * 16384 x 16384 (sharp's own limit), which would decode to 268 MB each; the header is checked before decoding.
 */
export const MAX_IMAGE_PIXELS = 8192 * 8192;

const SHARP_KERNELS = {
  nearest: "nearest",
  linear: "linear",
  cubic: "cubic",
  lanczos3: "lanczos3",
} as const;

/**
 * Decodes one encoded image (PNG, JPEG, WebP, or anything else sharp reads) into the float tensor an image step
 * describes, for one batch row: [C, H, W] (NCHW) or [H, W, C] (NHWC), value = (pixel * scale - mean[c]) / std[c].
 *
 * Colour handling follows PIL so training pipelines built on it match: alpha is dropped (not blended), colour to
 * grey uses ITU-R 601-2 luma `(R*299 + G*587 + B*114) / 1000` rounded as PIL rounds, grey to colour repeats the
 * channel. EXIF orientation is not applied. `area` is an exact box average in floating point (not rounded to 8
 * bits); the other kernels are sharp's (libvips) on 8-bit pixels.
 */
export async function decodeImage(bytes: Uint8Array, step: ImageStep): Promise<Float32Array> {
  const { pixels, width, height } = await decodePixels(bytes, step);
  const resized = await resize(pixels, width, height, step);
  return normalise(resized, step);
}

/** 8-bit pixels at the source size with the step's channel count, interleaved (HWC). */
async function decodePixels(bytes: Uint8Array, step: ImageStep):
  Promise<{ pixels: Uint8Array; width: number; height: number }> {
  let data: Buffer;
  let info: { width: number; height: number; channels: number };
  const sharp = await loadSharp();
  try {
    const image = sharp(bytes, { failOn: "error", limitInputPixels: MAX_IMAGE_PIXELS });
    const meta = await image.metadata();
    const grey = meta.space === "b-w" || meta.space === "grey16" || meta.channels === 1 ||
      (meta.channels === 2 && meta.hasAlpha === true);
    ({ data, info } = await image
      .removeAlpha()
      .toColourspace(grey ? "b-w" : "srgb")
      .raw({ depth: "uchar" })
      .toBuffer({ resolveWithObject: true }));
  } catch (error) {
    let reason = error instanceof Error ? error.message : String(error);
    if (/pixel limit/i.test(reason)) reason = `it has more than ${MAX_IMAGE_PIXELS} pixels (8192 x 8192); send a smaller image`;
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `image input ${JSON.stringify(step.input)}: cannot decode the ` +
      `image (${reason})`, { field: step.input, cause: error });
  }
  const n = info.width * info.height;
  const src = new Uint8Array(data.buffer, data.byteOffset, data.length);
  if (info.channels === step.channels) return { pixels: src, width: info.width, height: info.height };
  const out = new Uint8Array(n * step.channels);
  if (step.channels === 1) {
    const stride = info.channels;
    for (let i = 0; i < n; i++) {
      const o = i * stride;
      out[i] = ((src[o] as number) * 19595 + (src[o + 1] as number) * 38470 + (src[o + 2] as number) * 7471 +
        0x8000) >> 16;
    }
  } else {
    for (let i = 0; i < n; i++) {
      const v = src[i * info.channels] as number;
      out[i * 3] = v;
      out[i * 3 + 1] = v;
      out[i * 3 + 2] = v;
    }
  }
  return { pixels: out, width: info.width, height: info.height };
}

type Pixels = Uint8Array | Float64Array;

async function resize(pixels: Uint8Array, width: number, height: number, step: ImageStep): Promise<Pixels> {
  if (width === step.width && height === step.height) return pixels;
  if (step.resize === "area") return areaResize(pixels, width, height, step.channels, step.width, step.height);
  const sharp = await loadSharp();
  try {
    const out = await sharp(pixels, { raw: { width, height, channels: step.channels } })
      .resize(step.width, step.height, { kernel: SHARP_KERNELS[step.resize], fit: "fill" })
      // Without this sharp writes one-channel raw input back out as three-channel sRGB.
      .toColourspace(step.channels === 1 ? "b-w" : "srgb")
      .raw({ depth: "uchar" })
      .toBuffer();
    if (out.length !== step.width * step.height * step.channels) throw new Error(`sharp returned ${out.length} bytes`);
    return new Uint8Array(out.buffer, out.byteOffset, out.length);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `image input ${JSON.stringify(step.input)}: cannot resize the ` +
      `image (${reason})`, { field: step.input, cause: error });
  }
}

interface Taps {
  start: Int32Array;
  count: Int32Array;
  index: Int32Array;
  weight: Float64Array;
}

/** For each output position, the source positions it covers and the share of each (coverage / box size). */
function boxTaps(src: number, dst: number): Taps {
  const scale = src / dst;
  const start = new Int32Array(dst);
  const count = new Int32Array(dst);
  const index: number[] = [];
  const weight: number[] = [];
  for (let o = 0; o < dst; o++) {
    const lo = o * scale;
    const hi = lo + scale;
    start[o] = index.length;
    for (let s = Math.floor(lo); s < Math.min(src, Math.ceil(hi)); s++) {
      const cover = Math.min(hi, s + 1) - Math.max(lo, s);
      if (cover <= 0) continue;
      index.push(s);
      weight.push(cover / scale);
    }
    count[o] = index.length - (start[o] as number);
  }
  return { start, count, index: Int32Array.from(index), weight: Float64Array.from(weight) };
}

/** Exact area (box) averaging, separable: rows first, then columns. */
export function areaResize(pixels: Uint8Array, width: number, height: number, channels: number, outW: number,
  outH: number): Float64Array {
  const tx = boxTaps(width, outW);
  const ty = boxTaps(height, outH);
  const mid = new Float64Array(height * outW * channels);
  for (let y = 0; y < height; y++) {
    const row = y * width * channels;
    for (let x = 0; x < outW; x++) {
      const s = tx.start[x] as number;
      const e = s + (tx.count[x] as number);
      for (let c = 0; c < channels; c++) {
        let acc = 0;
        for (let t = s; t < e; t++) acc += (pixels[row + (tx.index[t] as number) * channels + c] as number) *
          (tx.weight[t] as number);
        mid[(y * outW + x) * channels + c] = acc;
      }
    }
  }
  const out = new Float64Array(outH * outW * channels);
  const rowLen = outW * channels;
  for (let y = 0; y < outH; y++) {
    const s = ty.start[y] as number;
    const e = s + (ty.count[y] as number);
    for (let i = 0; i < rowLen; i++) {
      let acc = 0;
      for (let t = s; t < e; t++) acc += (mid[(ty.index[t] as number) * rowLen + i] as number) * (ty.weight[t] as number);
      out[y * rowLen + i] = acc;
    }
  }
  return out;
}

function normalise(pixels: Pixels, step: ImageStep): Float32Array {
  const { width, height, channels, scale } = step;
  const plane = width * height;
  const out = new Float32Array(plane * channels);
  const nchw = step.layout === "NCHW";
  for (let c = 0; c < channels; c++) {
    const mean = step.mean?.[c] ?? 0;
    const std = step.std?.[c] ?? 1;
    for (let p = 0; p < plane; p++) {
      const v = ((pixels[p * channels + c] as number) * scale - mean) / std;
      out[nchw ? c * plane + p : p * channels + c] = v;
    }
  }
  return out;
}
