/**
 * Image classifier wrapper (mlship template `image-classifier`): the classic pyfunc image-classifier pattern.
 *
 * Each input row carries `image`: a file path, base64 text (standard or URL-safe, with or without a `data:` prefix),
 * or raw bytes (V2 binary / gRPC raw BYTES reach the wrapper as base64 because mlship.yaml declares the input with
 * `content_type: base64`). `predict` decodes every image with sharp, converts it to the model's channels, resizes it
 * to the model's input size, scales it, runs the ONNX model and returns per row
 * `{ prediction: "<class name>", probabilities: { "<class name>": p, ... } }`.
 *
 * Everything model-specific is in `custom.config` (mlship.yaml), written by `mlship package init --model`:
 *   onnx_input / onnx_output   the ONNX tensors to feed and read
 *   width, height, channels    the model's input image size (channels 1 = grey, 3 = RGB)
 *   layout                     NCHW or NHWC
 *   resize                     area (exact box average, mlship's own `image` preprocess step), or a sharp kernel:
 *                              nearest, linear, cubic, lanczos3
 *   scale, mean, std           value = (pixel * scale - mean[c]) / std[c]
 *   softmax                    apply a softmax to the output (when the model returns logits)
 *   images_dir                 an absolute folder that relative image paths are read from; the wrapper process
 *                              may only read the package folder and custom.allow_read, so list it there too
 */
import fs from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import sharp from "sharp";
import { WrapperInputError, type ModelWrapper, type WrapperContext, type WrapperOnnxSession, type WrapperRow } from "mlship/wrapper";

type Kernel = "area" | "nearest" | "linear" | "cubic" | "lanczos3";

interface Settings {
  onnxInput: string;
  onnxOutput: string;
  width: number;
  height: number;
  channels: 1 | 3;
  layout: "NCHW" | "NHWC";
  resize: Kernel;
  scale: number;
  mean: number[];
  std: number[];
  softmax: boolean;
  imagesDir: string | undefined;
}

/** An encoded image may decode to at most this many pixels (the limit mlship's own image step uses). */
const MAX_PIXELS = 8192 * 8192;
const KERNELS: readonly Kernel[] = ["area", "nearest", "linear", "cubic", "lanczos3"];
const IMAGE_EXTENSIONS = /\.(png|jpe?g|webp|gif|tiff?|avif|bmp|svg)$/i;
const BASE64 = /^[A-Za-z0-9+/_-]+={0,2}$/;

let settings: Settings | undefined;
let session: WrapperOnnxSession | undefined;
let labels: string[] = [];

function configError(key: string, wanted: string): Error {
  return new Error(`custom.config.${key} must be ${wanted}`);
}

function readSettings(config: Readonly<Record<string, unknown>>): Settings {
  const positive = (key: string, fallback?: number): number => {
    const value = config[key] ?? fallback;
    if (typeof value !== "number" || !Number.isInteger(value) || value < 1) throw configError(key, "a positive integer");
    return value;
  };
  const text = (key: string, fallback: string): string => {
    const value = config[key] ?? fallback;
    if (typeof value !== "string" || value === "") throw configError(key, "a non-empty string");
    return value;
  };
  const numbers = (key: string, fallback: number, count: number): number[] => {
    const value = config[key];
    if (value === undefined || value === null) return new Array<number>(count).fill(fallback);
    const list = Array.isArray(value) ? value : [value];
    if (!list.every((v) => typeof v === "number" && Number.isFinite(v))) throw configError(key, "a number or a list of numbers");
    const nums = list as number[];
    if (nums.length !== 1 && nums.length !== count) throw configError(key, `one number or ${count} (one per channel)`);
    return nums.length === 1 ? new Array<number>(count).fill(nums[0] as number) : nums;
  };
  const channels = positive("channels", 3);
  if (channels !== 1 && channels !== 3) throw configError("channels", "1 (grey) or 3 (RGB)");
  const layout = text("layout", "NCHW");
  if (layout !== "NCHW" && layout !== "NHWC") throw configError("layout", "NCHW or NHWC");
  const resize = text("resize", "area");
  if (!(KERNELS as readonly string[]).includes(resize)) throw configError("resize", KERNELS.join(", "));
  const scale = config.scale ?? 1 / 255;
  if (typeof scale !== "number" || !Number.isFinite(scale)) throw configError("scale", "a number");
  const imagesDir = config.images_dir;
  if (imagesDir !== undefined && imagesDir !== null && (typeof imagesDir !== "string" || !path.isAbsolute(imagesDir))) {
    throw configError("images_dir", "an absolute folder path (list it in custom.allow_read too)");
  }
  return {
    onnxInput: text("onnx_input", "input"),
    onnxOutput: text("onnx_output", "probabilities"),
    width: positive("width"),
    height: positive("height"),
    channels,
    layout,
    resize: resize as Kernel,
    scale,
    mean: numbers("mean", 0, channels),
    std: numbers("std", 1, channels),
    softmax: config.softmax === true,
    imagesDir: typeof imagesDir === "string" ? path.resolve(imagesDir) : undefined,
  };
}

async function readLabels(file: string | undefined): Promise<string[]> {
  if (file === undefined) return [];
  const parsed = JSON.parse(await fs.readFile(file, "utf8")) as unknown;
  if (!Array.isArray(parsed) || !parsed.every((l) => typeof l === "string")) {
    throw new Error(`${path.basename(file)} must be a JSON array of class names`);
  }
  return parsed as string[];
}

/** What a row's `image` value holds: encoded bytes, or the reason it is not an image source. */
async function imageBytes(value: unknown, row: number, s: Settings): Promise<Buffer> {
  if (value instanceof Uint8Array) return Buffer.from(value);
  if (typeof value !== "string" || value.trim() === "") {
    throw new WrapperInputError(`row ${row}: image must be a file path or base64 text, got ${value === "" ? "an empty string" : typeof value}`, row, "image");
  }
  const text = value.trim();
  const dataUrl = /^data:[^,]*?;base64,/i.exec(text);
  if (dataUrl !== null) return decodeBase64(text.slice(dataUrl[0].length), row);
  // Base64 first when it decodes to an image: JPEG's base64 starts with "/9j/", which also looks like a path.
  const compact = text.replace(/\s+/g, "");
  if (BASE64.test(compact)) {
    const bytes = Buffer.from(compact, "base64");
    if (hasImageSignature(bytes)) return bytes;
  }
  if (looksLikePath(text)) return readImageFile(text, row, s);
  return decodeBase64(text, row);
}

/** The first bytes of the formats sharp reads: PNG, JPEG, GIF, WebP (RIFF), TIFF, BMP, AVIF/HEIF (ftyp), SVG/XML. */
function hasImageSignature(b: Buffer): boolean {
  const starts = (...bytes: number[]): boolean => bytes.every((v, i) => b[i] === v);
  return starts(0x89, 0x50, 0x4e, 0x47) || starts(0xff, 0xd8, 0xff) || starts(0x47, 0x49, 0x46, 0x38) ||
    starts(0x52, 0x49, 0x46, 0x46) || starts(0x49, 0x49, 0x2a, 0x00) || starts(0x4d, 0x4d, 0x00, 0x2a) ||
    starts(0x42, 0x4d) || b.subarray(4, 8).toString("latin1") === "ftyp" || starts(0x3c);
}

function looksLikePath(text: string): boolean {
  return text.startsWith("file:") || text.startsWith("/") || text.startsWith("./") || text.startsWith("../") ||
    (IMAGE_EXTENSIONS.test(text) && !text.includes("\n"));
}

function decodeBase64(text: string, row: number): Buffer {
  const compact = text.replace(/\s+/g, "");
  if (!BASE64.test(compact)) {
    throw new WrapperInputError(`row ${row}: image is neither base64 (standard or URL-safe) nor an image file path`, row, "image");
  }
  // Buffer reads both alphabets (+/ and -_) and missing padding.
  const bytes = Buffer.from(compact, "base64");
  if (bytes.length === 0) throw new WrapperInputError(`row ${row}: image base64 decodes to no bytes`, row, "image");
  return bytes;
}

async function readImageFile(text: string, row: number, s: Settings): Promise<Buffer> {
  let file: string;
  try {
    file = text.startsWith("file:") ? fileURLToPath(text) : text;
  } catch {
    throw new WrapperInputError(`row ${row}: image path ${JSON.stringify(text)} is not a valid file: URL`, row, "image");
  }
  if (!path.isAbsolute(file)) {
    if (s.imagesDir === undefined) {
      throw new WrapperInputError(`row ${row}: image path ${JSON.stringify(text)} is relative; set custom.config.images_dir ` +
        "to the folder it is relative to, or send an absolute path", row, "image");
    }
    file = path.resolve(s.imagesDir, file);
    // A relative path must not climb out of images_dir ("../../etc/passwd").
    if (path.relative(s.imagesDir, file).startsWith("..")) {
      throw new WrapperInputError(`row ${row}: image path ${JSON.stringify(text)} leaves images_dir`, row, "image");
    }
  }
  try {
    return await fs.readFile(file);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const reason = code === "ENOENT" ? "no such file"
      : code === "ERR_ACCESS_DENIED" ? "reading it is not allowed (put it inside the package or add its folder to custom.allow_read)"
      : code === "EISDIR" ? "it is a folder"
      : error instanceof Error ? error.message : String(error);
    throw new WrapperInputError(`row ${row}: cannot read image file ${JSON.stringify(text)}: ${reason}`, row, "image");
  }
}

/** Decodes to 8-bit pixels with the model's channel count, interleaved (HWC), at the source size. */
async function decode(bytes: Buffer, row: number, s: Settings): Promise<{ pixels: Uint8Array; width: number; height: number }> {
  let data: Buffer;
  let info: { width: number; height: number; channels: number };
  try {
    const image = sharp(bytes, { failOn: "error", limitInputPixels: MAX_PIXELS });
    const meta = await image.metadata();
    const grey = meta.space === "b-w" || meta.space === "grey16" || meta.channels === 1 || (meta.channels === 2 && meta.hasAlpha === true);
    ({ data, info } = await image.removeAlpha().toColourspace(grey ? "b-w" : "srgb").raw({ depth: "uchar" })
      .toBuffer({ resolveWithObject: true }));
  } catch (error) {
    let reason = error instanceof Error ? error.message : String(error);
    if (/pixel limit/i.test(reason)) reason = "it has more than 8192 x 8192 pixels";
    throw new WrapperInputError(`row ${row}: image cannot be decoded (${reason})`, row, "image");
  }
  const n = info.width * info.height;
  const src = new Uint8Array(data.buffer, data.byteOffset, data.length);
  if (info.channels === s.channels) return { pixels: src, width: info.width, height: info.height };
  const out = new Uint8Array(n * s.channels);
  for (let i = 0; i < n; i++) {
    if (s.channels === 1) {
      // Colour to grey as PIL does (ITU-R 601-2 luma), so pipelines trained on PIL-loaded images match.
      const o = i * info.channels;
      out[i] = ((src[o] as number) * 19595 + (src[o + 1] as number) * 38470 + (src[o + 2] as number) * 7471 + 0x8000) >> 16;
    } else {
      const v = src[i * info.channels] as number;
      out[i * 3] = v;
      out[i * 3 + 1] = v;
      out[i * 3 + 2] = v;
    }
  }
  return { pixels: out, width: info.width, height: info.height };
}

/** Exact box (area) average in floating point, separable; the same numbers as mlship's `image` preprocess step. */
function areaResize(pixels: Uint8Array, width: number, height: number, channels: number, outW: number, outH: number): Float64Array {
  const taps = (src: number, dst: number): Array<Array<[number, number]>> => {
    const scale = src / dst;
    return Array.from({ length: dst }, (_, o) => {
      const lo = o * scale;
      const hi = lo + scale;
      const list: Array<[number, number]> = [];
      for (let s = Math.floor(lo); s < Math.min(src, Math.ceil(hi)); s++) {
        const cover = Math.min(hi, s + 1) - Math.max(lo, s);
        if (cover > 0) list.push([s, cover / scale]);
      }
      return list;
    });
  };
  const tx = taps(width, outW);
  const ty = taps(height, outH);
  const mid = new Float64Array(height * outW * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < outW; x++) {
      for (let c = 0; c < channels; c++) {
        let acc = 0;
        for (const [s, w] of tx[x] ?? []) acc += (pixels[(y * width + s) * channels + c] as number) * w;
        mid[(y * outW + x) * channels + c] = acc;
      }
    }
  }
  const out = new Float64Array(outH * outW * channels);
  const rowLen = outW * channels;
  for (let y = 0; y < outH; y++) {
    for (let i = 0; i < rowLen; i++) {
      let acc = 0;
      for (const [s, w] of ty[y] ?? []) acc += (mid[s * rowLen + i] as number) * w;
      out[y * rowLen + i] = acc;
    }
  }
  return out;
}

async function resize(image: { pixels: Uint8Array; width: number; height: number }, row: number, s: Settings): Promise<ArrayLike<number>> {
  if (image.width === s.width && image.height === s.height) return image.pixels;
  if (s.resize === "area") return areaResize(image.pixels, image.width, image.height, s.channels, s.width, s.height);
  try {
    const out = await sharp(image.pixels, { raw: { width: image.width, height: image.height, channels: s.channels } })
      .resize(s.width, s.height, { kernel: s.resize, fit: "fill" })
      // Without it sharp writes one-channel raw input back out as three-channel sRGB.
      .toColourspace(s.channels === 1 ? "b-w" : "srgb")
      .raw({ depth: "uchar" })
      .toBuffer();
    return new Uint8Array(out.buffer, out.byteOffset, out.length);
  } catch (error) {
    throw new WrapperInputError(`row ${row}: image cannot be resized (${error instanceof Error ? error.message : String(error)})`, row, "image");
  }
}

/** Writes one row's scaled pixels into the batch tensor at `offset`, in the model's layout. */
function normalise(pixels: ArrayLike<number>, s: Settings, into: Float32Array, offset: number): void {
  const plane = s.width * s.height;
  for (let c = 0; c < s.channels; c++) {
    const mean = s.mean[c] ?? 0;
    const std = s.std[c] ?? 1;
    for (let p = 0; p < plane; p++) {
      const v = ((pixels[p * s.channels + c] as number) * s.scale - mean) / std;
      into[offset + (s.layout === "NCHW" ? c * plane + p : p * s.channels + c)] = v;
    }
  }
}

function softmax(values: number[]): number[] {
  const max = Math.max(...values);
  const exps = values.map((v) => Math.exp(v - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}

const wrapper: ModelWrapper = {
  async load(context: WrapperContext) {
    settings = readSettings(context.config);
    labels = await readLabels(context.artifacts.labels);
    session = await context.onnx("onnx");
    if (!session.inputNames.includes(settings.onnxInput)) {
      throw new Error(`the ONNX model has no input ${JSON.stringify(settings.onnxInput)} (it has ${session.inputNames.join(", ")}); fix custom.config.onnx_input`);
    }
    if (!session.outputNames.includes(settings.onnxOutput)) {
      throw new Error(`the ONNX model has no output ${JSON.stringify(settings.onnxOutput)} (it has ${session.outputNames.join(", ")}); fix custom.config.onnx_output`);
    }
    context.log.info("image classifier loaded", {
      input: `${settings.width}x${settings.height}x${settings.channels}`,
      resize: settings.resize,
      classes: labels.length,
    });
  },

  async predict(context: WrapperContext, rows: WrapperRow[]) {
    const s = settings;
    if (s === undefined || session === undefined) throw new Error("predict before load");
    const started = Date.now();
    const size = s.width * s.height * s.channels;
    const batch = new Float32Array(rows.length * size);
    // All rows are decoded at once; the first bad row (in row order) fails the call with its reason.
    const decoded = await Promise.allSettled(rows.map(async (row, i) => {
      const image = await decode(await imageBytes(row.image, i, s), i, s);
      normalise(await resize(image, i, s), s, batch, i * size);
    }));
    const failed = decoded.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed !== undefined) {
      const error: unknown = failed.reason;
      context.log.warn("image classifier: bad input", { rows: rows.length, error: error instanceof Error ? error.message : String(error) });
      throw error;
    }
    const dims = s.layout === "NCHW" ? [rows.length, s.channels, s.height, s.width] : [rows.length, s.height, s.width, s.channels];
    const result = await session.run({ [s.onnxInput]: { data: batch, dims, type: "float32" } });
    const output = result[s.onnxOutput];
    if (output === undefined) throw new Error(`the ONNX model returned no ${s.onnxOutput}`);
    const classes = output.data.length / Math.max(rows.length, 1);
    const out = rows.map((_, i) => {
      const raw = Array.from({ length: classes }, (_, k) => Number(output.data[i * classes + k]));
      const probs = s.softmax ? softmax(raw) : raw;
      let best = 0;
      for (let k = 1; k < probs.length; k++) if ((probs[k] as number) > (probs[best] as number)) best = k;
      const name = (k: number): string => labels[k] ?? String(k);
      return {
        prediction: name(best),
        probabilities: Object.fromEntries(probs.map((p, k) => [name(k), p])),
      };
    });
    // The audit line: what was asked, what was answered, how long it took.
    context.log.info("image classifier predict", {
      rows: rows.length,
      predictions: out.map((r) => r.prediction),
      duration_ms: Date.now() - started,
    });
    return out;
  },
};

export default wrapper;
