import { readFile } from "node:fs/promises";
import path from "node:path";
import sharp from "sharp";
import { beforeAll, describe, expect, it } from "vitest";
import { areaResize, decodeImage, MAX_IMAGE_PIXELS } from "../../src/package/index.js";
import type { ImageStep } from "../../src/package/index.js";
import { catchMlship, fixture, readCsv } from "./helpers.js";

interface LabelsJson {
  images: Array<{ file: string; label: number; prod_row: number; expected_from_png: { input_8x8: number[][] } }>;
}

const DIGITS: ImageStep = {
  type: "image", input: "image", target: "input", width: 8, height: 8, channels: 1, resize: "area",
  scale: 1 / 255, layout: "NCHW",
};

let labels: LabelsJson;
let prodRows: number[][];

beforeAll(async () => {
  labels = JSON.parse(await readFile(fixture("digits_cnn", "images/labels.json"), "utf8")) as LabelsJson;
  prodRows = (await readCsv(fixture("digits_cnn", "prod.csv"))).rows;
});

describe("decodeImage reproduces the digits fixture inputs", () => {
  it("has 20 images", () => {
    expect(labels.images).toHaveLength(20);
  });

  it.each(["area", "nearest"] as const)("%s: every PNG equals its prod.csv row (gray rounding) and labels.json",
    async (resize) => {
      for (const image of labels.images) {
        const bytes = await readFile(path.join(fixture("digits_cnn"), image.file));
        const got = await decodeImage(bytes, { ...DIGITS, resize });
        expect(got).toBeInstanceOf(Float32Array);
        expect(got).toHaveLength(64);
        const row = (prodRows[image.prod_row] as number[]).slice(0, 64);
        const fromPng = image.expected_from_png.input_8x8.flat();
        for (let i = 0; i < 64; i++) {
          const v = row[i] as number;
          // The PNG holds gray = round(v * 255); decoding gives exactly that gray / 255 (as float32).
          expect(got[i]).toBe(Math.fround(Math.round(v * 255) / 255));
          // ...which is within half a gray level of the CSV value (README: at most 1/510).
          expect(Math.abs((got[i] as number) - v)).toBeLessThanOrEqual(1 / 510 + 1e-7);
          // labels.json writes the same values with 8 decimals.
          expect(Math.abs((got[i] as number) - (fromPng[i] as number))).toBeLessThan(1e-7);
        }
      }
    });

  it("smoothing kernels blur across the 4x4 blocks (close, not equal)", async () => {
    const bytes = await readFile(path.join(fixture("digits_cnn"), (labels.images[0] as LabelsJson["images"][0]).file));
    const exact = await decodeImage(bytes, DIGITS);
    for (const resize of ["linear", "cubic", "lanczos3"] as const) {
      const got = await decodeImage(bytes, { ...DIGITS, resize });
      expect(got).toHaveLength(64);
      const diffs = Array.from(got, (x, i) => Math.abs(x - (exact[i] as number)));
      expect(Math.max(...diffs)).toBeGreaterThan(0);
      expect(diffs.reduce((a, b) => a + b, 0) / 64).toBeLessThan(0.2);
    }
  });

  it("decodes the same digit from lossless WebP exactly, and from JPEG approximately", async () => {
    const png = await readFile(path.join(fixture("digits_cnn"), (labels.images[3] as LabelsJson["images"][0]).file));
    const exact = await decodeImage(png, DIGITS);
    const webp = await sharp(png).webp({ lossless: true }).toBuffer();
    expect(Array.from(await decodeImage(webp, DIGITS))).toEqual(Array.from(exact));
    const jpeg = await sharp(png).jpeg({ quality: 95 }).toBuffer();
    const fromJpeg = await decodeImage(jpeg, DIGITS);
    fromJpeg.forEach((x, i) => expect(Math.abs(x - (exact[i] as number))).toBeLessThan(0.1));
  });
});

describe("decodeImage colour, layout and normalisation", () => {
  // A 2x1 RGB image: red then blue.
  let rgb: Buffer;
  beforeAll(async () => {
    rgb = await sharp(Buffer.from([255, 0, 0, 0, 0, 255]), { raw: { width: 2, height: 1, channels: 3 } }).png().toBuffer();
  });

  const step = (over: Partial<ImageStep>): ImageStep => ({
    type: "image", input: "img", width: 2, height: 1, channels: 3, resize: "nearest", scale: 1 / 255,
    layout: "NCHW", ...over,
  });

  it("NCHW puts each channel's plane together; NHWC interleaves", async () => {
    expect(Array.from(await decodeImage(rgb, step({})))).toEqual([1, 0, 0, 0, 0, 1]);
    expect(Array.from(await decodeImage(rgb, step({ layout: "NHWC" })))).toEqual([1, 0, 0, 0, 0, 1]);
    const two = await sharp(Buffer.from([10, 20, 30, 40, 50, 60]), { raw: { width: 2, height: 1, channels: 3 } })
      .png().toBuffer();
    expect(Array.from(await decodeImage(two, step({ scale: 1 })))).toEqual([10, 40, 20, 50, 30, 60]);
    expect(Array.from(await decodeImage(two, step({ scale: 1, layout: "NHWC" })))).toEqual([10, 20, 30, 40, 50, 60]);
  });

  it("applies (pixel * scale - mean[c]) / std[c] per channel", async () => {
    const mean = [0.485, 0.456, 0.406];
    const std = [0.229, 0.224, 0.225];
    const got = await decodeImage(rgb, step({ mean, std, layout: "NHWC" }));
    const want = [1, 0, 0, 0, 0, 1].map((p, i) => Math.fround((p - (mean[i % 3] as number)) / (std[i % 3] as number)));
    expect(Array.from(got)).toEqual(want);
  });

  it("colour to grey uses PIL's ITU-R 601-2 luma; grey to colour repeats the channel", async () => {
    const grey = await decodeImage(rgb, step({ channels: 1, scale: 1 }));
    // PIL: (R*299 + G*587 + B*114) / 1000 -> red 76, blue 29
    expect(Array.from(grey)).toEqual([76, 29]);
    const digit = await readFile(path.join(fixture("digits_cnn"), "images/digit_00.png"));
    const asColour = await decodeImage(digit, { ...DIGITS, channels: 3, layout: "NHWC" });
    const asGrey = await decodeImage(digit, DIGITS);
    expect(asColour).toHaveLength(192);
    for (let i = 0; i < 64; i++) {
      expect([asColour[i * 3], asColour[i * 3 + 1], asColour[i * 3 + 2]]).toEqual([asGrey[i], asGrey[i], asGrey[i]]);
    }
  });

  it("resizes colour images with sharp's kernels keeping three channels", async () => {
    // 4x2: left half red, right half blue -> 2x1 nearest: one red, one blue pixel.
    const px = [];
    for (let y = 0; y < 2; y++) for (let x = 0; x < 4; x++) px.push(...(x < 2 ? [255, 0, 0] : [0, 0, 255]));
    const png = await sharp(Buffer.from(px), { raw: { width: 4, height: 2, channels: 3 } }).png().toBuffer();
    expect(Array.from(await decodeImage(png, step({ width: 2, height: 1, layout: "NHWC" })))).toEqual([1, 0, 0, 0, 0, 1]);
    expect(Array.from(await decodeImage(png, step({ width: 2, height: 1, resize: "area", layout: "NHWC" }))))
      .toEqual([1, 0, 0, 0, 0, 1]);
  });

  it("drops an alpha channel", async () => {
    const rgba = await sharp(Buffer.from([255, 0, 0, 0, 0, 0, 255, 128]), { raw: { width: 2, height: 1, channels: 4 } })
      .png().toBuffer();
    expect(Array.from(await decodeImage(rgba, step({})))).toEqual([1, 0, 0, 0, 0, 1]);
  });

  it("refuses an image whose header claims more pixels than MAX_IMAGE_PIXELS, before decoding it", async () => {
    // 2 MB of PNG that would decode to 67 MB; a request can carry many of them.
    const side = Math.ceil(Math.sqrt(MAX_IMAGE_PIXELS)) + 8;
    const png = await sharp(Buffer.alloc(side * side), { raw: { width: side, height: side, channels: 1 } }).png({ compressionLevel: 1 }).toBuffer();
    const error = await catchMlship(() => decodeImage(png, DIGITS));
    expect(error.code).toBe("MLSHIP_ERR_INPUT_INVALID");
    expect(error.field).toBe("image");
    expect(error.message).toContain(`more than ${MAX_IMAGE_PIXELS} pixels`);
  });

  it("bytes that are no image are a 400 naming the step input", async () => {
    const error = await catchMlship(() => decodeImage(new TextEncoder().encode("not an image"), step({})));
    expect(error.code).toBe("MLSHIP_ERR_INPUT_INVALID");
    expect(error.field).toBe("img");
    expect(error.message).toMatch(/^image input "img": cannot decode the image/);
  });
});

describe("areaResize", () => {
  it("averages with fractional coverage when the ratio is not an integer", () => {
    // 3 -> 2: [0, 30, 60] -> (0 + 30*0.5)/1.5 = 10 and (30*0.5 + 60)/1.5 = 50
    expect(Array.from(areaResize(Uint8Array.from([0, 30, 60]), 3, 1, 1, 2, 1))).toEqual([10, 50]);
  });

  it("box-averages integer multiples exactly, per channel", () => {
    const px = Uint8Array.from([1, 100, 3, 100, 5, 200, 7, 200]); // 2x2, 2 channels
    expect(Array.from(areaResize(px, 2, 2, 2, 1, 1))).toEqual([4, 150]);
  });
});
