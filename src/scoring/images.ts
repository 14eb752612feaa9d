import { MlshipError } from "../core/index.js";
import type { Tensor } from "../core/index.js";
import { decodeImage } from "../package/index.js";
import type { ImageInput } from "./context.js";
import { shapeFits, shapeText } from "./values.js";

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

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
 * Decodes a batch of encoded images into the tensor the image step feeds: [n, C, H, W] (NCHW) or
 * [n, H, W, C] (NHWC), float32.
 */
export async function decodeImages(images: readonly string[], image: ImageInput, field: string, encoding: "base64"): Promise<Tensor> {
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
  const decoded = await Promise.all(
    images.map(async (text, i) => {
      const where = `${field}[${i}]`;
      const bytes = encoding === "base64" ? base64Bytes(text, where) : Buffer.from(text, "latin1");
      try {
        return await decodeImage(bytes, step);
      } catch (err) {
        if (err instanceof MlshipError) throw new MlshipError(err.code, `${where}: ${err.message}`, { field: where, cause: err });
        throw err;
      }
    }),
  );
  for (let i = 0; i < n; i++) out.set(decoded[i] as Float32Array, i * per);
  return { dtype: "float32", shape: [n, ...dims], data: out };
}
