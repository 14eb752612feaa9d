import { MlshipError } from "../core/index.js";
import type { Tensor } from "../core/index.js";
import { decodeImage } from "../package/index.js";
import type { ImageInput } from "./context.js";
import { shapeFits, shapeText } from "./values.js";

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;
const DECODE_CONCURRENCY = 2;

/** Strips a `data:image/png;base64,` prefix and checks the alphabet, so garbage is a 400, not a decoder error. */
function base64Bytes(text: string, field: string): Buffer {
  let s = text;
  if (s.startsWith("data:")) {
    const comma = s.indexOf(",");
    s = comma < 0 ? "" : s.slice(comma + 1);
  }
  s = s.replace(/\s+/g, "");
  if (s.length === 0 || !BASE64.test(s)) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${field}: not a base64-encoded image`, { field });
  }
  return Buffer.from(s, s.includes("-") || s.includes("_") ? "base64url" : "base64");
}

/**
 * Decodes a batch of base64-encoded images into the tensor the image step feeds: [n, C, H, W] (NCHW) or
 * [n, H, W, C] (NHWC), float32.
 */
export async function decodeImages(images: readonly string[], image: ImageInput, field: string): Promise<Tensor> {
  const { step, target } = image;
  const dims = step.layout === "NCHW" ? [step.channels, step.height, step.width] : [step.height, step.width, step.channels];
  if (target.dtype !== "float32" || !shapeFits(target.shape, [images.length, ...dims])) {
    throw new MlshipError(
      "MLSHIP_ERR_PACKAGE_INVALID",
      `image step '${step.input}' makes float32 ${shapeText([-1, ...dims])} but feeds input '${target.name}', which is ${target.dtype} ${shapeText(target.shape)}`,
      { field: "preprocess" },
    );
  }
  const per = step.width * step.height * step.channels;
  const n = images.length;
  const out = new Float32Array(n * per);
  // A few at a time: each decode holds the whole source image, so a request of many large images must not hold
  // them all at once (libvips already spreads one decode over its own threads).
  let next = 0;
  const decodeSome = async (): Promise<void> => {
    for (let i = next++; i < n; i = next++) {
      const where = `${field}[${i}]`;
      try {
        out.set(await decodeImage(base64Bytes(images[i] as string, where), step), i * per);
      } catch (err) {
        next = n; // the request fails with this image; the other decoders stop
        if (err instanceof MlshipError && err.field !== where) throw new MlshipError(err.code, `${where}: ${err.message}`, { field: where, cause: err });
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(DECODE_CONCURRENCY, n) }, decodeSome));
  return { dtype: "float32", shape: [n, ...dims], data: out };
}
