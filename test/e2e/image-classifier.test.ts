/**
 * examples/image-classifier end to end: the example is built (type-check + bundle) into a temp copy, registered,
 * and served by the custom runtime (a child process with Node's permission model) over REST (MLflow JSON with
 * base64 images and file paths, V2 with binary BYTES), gRPC (raw BYTES) and through the embedded library; `mlship package test` runs
 * it through the CLI. Predictions are compared with the digits fixture's expected outputs for its 20 PNGs.
 */
import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { FastifyInstance } from "fastify";
import { pino } from "pino";
import sharp from "sharp";
import YAML from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { loadModel } from "../../src/embedded.js";
import { buildWrapperPackage } from "../../src/package/index.js";
import { buildServer, createGrpcServer } from "../../src/serve/index.js";
import { runCli } from "../cli/helpers.js";
import { connect, rpc } from "../grpc/client.js";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const DIGITS = path.resolve(fileURLToPath(new URL("../../../shared/fixtures/digits_cnn/", import.meta.url)));
const EXAMPLE = path.join(REPO, "examples", "image-classifier");
const MODEL = "digit-wrapper";

interface LabelledImage {
  file: string;
  label: number;
  expected_from_png: { probabilities: number[]; label: number };
}
interface Prediction {
  prediction: string;
  probabilities: Record<string, number>;
}

let home: string;
let pkgDir: string;
let app: Mlship;
let server: FastifyInstance;
let images: LabelledImage[];
let pngs: Buffer[];
let tolerance: number;
const logLines: Array<Record<string, unknown>> = [];

/** Every prediction matches the fixture: the same class, each probability within the fixture's tolerance. */
function expectFixture(predictions: Prediction[], which: readonly number[]): void {
  expect(predictions).toHaveLength(which.length);
  predictions.forEach((p, i) => {
    const want = images[which[i] as number] as LabelledImage;
    expect(p.prediction, `row ${i} (${want.file})`).toBe(String(want.expected_from_png.label));
    expect(p.prediction).toBe(String(want.label));
    expect(Object.keys(p.probabilities)).toEqual(["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    want.expected_from_png.probabilities.forEach((q, k) => {
      expect(Math.abs((p.probabilities[String(k)] as number) - q), `row ${i} class ${k}`).toBeLessThanOrEqual(tolerance);
    });
  });
}

function lengthPrefixed(elements: Buffer[]): Buffer {
  return Buffer.concat(elements.flatMap((e) => {
    const len = Buffer.alloc(4);
    len.writeUInt32LE(e.length, 0);
    return [len, e];
  }));
}

function readLengthPrefixed(b: Buffer): string[] {
  const out: string[] = [];
  for (let pos = 0; pos < b.length; pos += 4 + b.readUInt32LE(pos)) out.push(b.subarray(pos + 4, pos + 4 + b.readUInt32LE(pos)).toString("utf8"));
  return out;
}

/** Client side of the V2 binary extension: JSON header, then the BYTES tensor as 4-byte-length-prefixed elements. */
function v2Binary(elements: Buffer[]): { body: Buffer; headerLength: number } {
  const blob = lengthPrefixed(elements);
  const header = Buffer.from(JSON.stringify({
    inputs: [{ name: "image", shape: [elements.length], datatype: "BYTES", parameters: { binary_data_size: blob.length } }],
  }));
  return { body: Buffer.concat([header, blob]), headerLength: header.length };
}

/** `mlship ...` as a child process running the CLI from source (tsx), like `node bin/mlship.js` runs dist/. */
function spawnSourceCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const code = `const { main } = await import(${JSON.stringify(pathToFileURL(path.join(REPO, "src", "cli", "main.ts")).href)}); ` +
    "process.exitCode = await main(process.argv);";
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code, "mlship", ...args], {
      cwd: REPO,
      env: { ...process.env, MLSHIP_LOG_LEVEL: "warn" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (exit) => resolve({ code: exit ?? -1, stdout, stderr }));
  });
}

beforeAll(async () => {
  const labels = JSON.parse(await fs.readFile(path.join(DIGITS, "images", "labels.json"), "utf8")) as { images: LabelledImage[] };
  images = labels.images;
  pngs = await Promise.all(images.map((i) => fs.readFile(path.join(DIGITS, i.file))));
  tolerance = (JSON.parse(await fs.readFile(path.join(DIGITS, "expected.json"), "utf8")) as { tolerance: { probabilities_abs: number } })
    .tolerance.probabilities_abs;

  home = await fs.mkdtemp(path.join(os.tmpdir(), "mlship-image-classifier-"));
  // A copy of the example (never building inside the repository), allowed to read the fixture's image folder so
  // rows may name images by path.
  pkgDir = path.join(home, "image-classifier");
  await fs.cp(EXAMPLE, pkgDir, { recursive: true, filter: (src) => path.relative(EXAMPLE, src).split(path.sep)[0] !== "build" });
  const manifestFile = path.join(pkgDir, "mlship.yaml");
  const manifest = YAML.parse(await fs.readFile(manifestFile, "utf8")) as { custom: { config: Record<string, unknown>; allow_read?: string[] } };
  manifest.custom.config.images_dir = DIGITS;
  manifest.custom.allow_read = [DIGITS];
  await fs.writeFile(manifestFile, YAML.stringify(manifest));
  const built = await buildWrapperPackage(pkgDir);
  expect(built.externals.filter((e) => !e.startsWith("node:"))).toEqual(["sharp"]);

  const logger = pino({ level: "info" }, { write: (line: string) => void logLines.push(JSON.parse(line) as Record<string, unknown>) });
  app = await createMlship(defaultConfig({ home: path.join(home, "mlship"), "runtime.workers": 1 }), { logger });
  await registerModel(app, pkgDir, { name: MODEL, alias: "production" });
  server = buildServer({ scoring: app.scoring, registry: app.registry, logger: false, metrics: false });
}, 180_000);

afterAll(async () => {
  await server?.close();
  await app?.close();
  if (home !== undefined) await fs.rm(home, { recursive: true, force: true });
});

describe("the image-classifier example wrapper", { timeout: 90_000 }, () => {
  it("serves MLflow JSON: standard, URL-safe and data: base64, and file paths; all 20 digits match the fixture", async () => {
    const all = images.map((_, i) => i);
    const value = (i: number): string => {
      const png = pngs[i] as Buffer;
      switch (i % 4) {
        case 0: return png.toString("base64");
        case 1: return png.toString("base64url");
        case 2: return `data:image/png;base64,${png.toString("base64")}`;
        default: return (images[i] as LabelledImage).file; // relative to custom.config.images_dir
      }
    };
    const res = await server.inject({
      method: "POST",
      url: `/v1/models/${MODEL}/invocations`,
      payload: { dataframe_split: { columns: ["image"], data: all.map((i) => [value(i)]) } },
    });
    expect(res.statusCode, res.body.slice(0, 500)).toBe(200);
    expectFixture((res.json() as { predictions: Prediction[] }).predictions, all);

    // JPEG's base64 starts with "/9j/", which must not be taken for a path. (Lossy: the class is compared.)
    const jpeg = await sharp(pngs[5] as Buffer).jpeg({ quality: 100, chromaSubsampling: "4:4:4" }).toBuffer();
    expect(jpeg.toString("base64").startsWith("/9j/")).toBe(true);
    const jpegRes = await server.inject({
      method: "POST",
      url: `/v1/models/${MODEL}/invocations`,
      payload: { dataframe_records: [{ image: jpeg.toString("base64") }] },
    });
    expect(jpegRes.statusCode, jpegRes.body.slice(0, 500)).toBe(200);
    expect((jpegRes.json() as { predictions: Prediction[] }).predictions[0]?.prediction).toBe(String((images[5] as LabelledImage).label));
  });

  it("serves V2 with binary BYTES (raw PNG bytes reach the wrapper as base64)", async () => {
    const which = [3, 7, 11, 19];
    const { body, headerLength } = v2Binary(which.map((i) => pngs[i] as Buffer));
    const res = await server.inject({
      method: "POST",
      url: `/v2/models/${MODEL}/infer`,
      payload: body,
      headers: { "content-type": "application/octet-stream", "inference-header-content-length": String(headerLength) },
    });
    expect(res.statusCode, res.body.slice(0, 500)).toBe(200);
    const outputs = (res.json() as { outputs: Array<{ name: string; datatype: string; data: string[]; parameters?: Record<string, unknown> }> }).outputs;
    const byName = new Map(outputs.map((o) => [o.name, o]));
    const probabilities = byName.get("probabilities");
    expect(probabilities?.datatype).toBe("BYTES");
    expect(probabilities?.parameters?.content_type).toBe("json");
    const predictions = (byName.get("prediction")?.data ?? []).map((prediction, i) => ({
      prediction,
      probabilities: JSON.parse(probabilities?.data[i] as string) as Record<string, number>,
    }));
    expectFixture(predictions, which);
  });

  it("serves gRPC ModelInfer with the images as raw_input_contents (BYTES)", async () => {
    const grpc = createGrpcServer({ scoring: app.scoring, registry: app.registry });
    const port = await grpc.listen("127.0.0.1", 0);
    const client = connect(`127.0.0.1:${port}`);
    try {
      const which = [2, 6, 13, 17];
      const { response } = await rpc<{
        outputs: Array<{ name: string; datatype: string; contents?: { bytes_contents?: Buffer[] } }>;
        raw_output_contents: Buffer[];
      }>(client, "ModelInfer", {
        model_name: MODEL,
        inputs: [{ name: "image", datatype: "BYTES", shape: [which.length] }],
        raw_input_contents: [lengthPrefixed(which.map((i) => pngs[i] as Buffer))],
      });
      const texts = (name: string): string[] => {
        const at = response.outputs.findIndex((o) => o.name === name);
        expect(at, name).toBeGreaterThanOrEqual(0);
        const raw = response.raw_output_contents[at];
        if (raw !== undefined && raw.length > 0) return readLengthPrefixed(raw);
        return (response.outputs[at]?.contents?.bytes_contents ?? []).map((b) => b.toString("utf8"));
      };
      const probabilities = texts("probabilities");
      expectFixture(texts("prediction").map((prediction, i) => ({
        prediction,
        probabilities: JSON.parse(probabilities[i] as string) as Record<string, number>,
      })), which);
    } finally {
      client.close();
      await grpc.close(1000);
    }
  });

  it("answers through the embedded library (loadModel on the platform, and on the package folder)", async () => {
    const model = await loadModel(`${MODEL}@production`, { app });
    try {
      const which = [0, 5, 10, 15];
      const out = await model.predict(which.map((i) => ({ image: (pngs[i] as Buffer).toString("base64") })));
      expectFixture(out as unknown as Prediction[], which);
    } finally {
      await model.close();
    }
    // And straight from the built package folder, without any registry.
    const direct = await loadModel(pkgDir, { name: "direct" });
    try {
      const out = await direct.predict([{ image: `data:image/png;base64,${(pngs[9] as Buffer).toString("base64")}` }]);
      expectFixture(out as unknown as Prediction[], [9]);
    } finally {
      await direct.close();
    }
  });

  it("a bad image fails the request with 400 naming the row and the reason; the wrapper keeps serving", async () => {
    const good = (pngs[0] as Buffer).toString("base64");
    const notImage = Buffer.from("this is not an image at all").toString("base64");
    const res = await server.inject({
      method: "POST",
      url: `/v1/models/${MODEL}/invocations`,
      payload: { dataframe_split: { columns: ["image"], data: [[good], [good], [notImage]] } },
    });
    expect(res.statusCode).toBe(400);
    const body = res.json() as { error_code: string; message: string; mlship_code: string; field: string };
    expect(body).toMatchObject({ error_code: "BAD_REQUEST", mlship_code: "MLSHIP_ERR_INPUT_INVALID", field: "rows[2].image" });
    expect(body.message).toContain("row 2: image cannot be decoded");

    // A path the wrapper process may not read (outside the package and custom.allow_read).
    const outside = path.join(home, "outside.png");
    await fs.writeFile(outside, pngs[1] as Buffer);
    const denied = await server.inject({
      method: "POST",
      url: `/v1/models/${MODEL}/invocations`,
      payload: { dataframe_records: [{ image: outside }] },
    });
    expect(denied.statusCode).toBe(400);
    expect((denied.json() as { message: string }).message).toMatch(/row 0: cannot read image file .*not allowed/);

    const after = await server.inject({
      method: "POST",
      url: `/v1/models/${MODEL}/invocations`,
      payload: { dataframe_records: [{ image: good }] },
    });
    expect(after.statusCode).toBe(200);
    expectFixture((after.json() as { predictions: Prediction[] }).predictions, [0]);
  });

  it("logs every call for audit: rows, predicted classes and duration, tagged with the model version", () => {
    const audit = logLines.filter((l) => l.msg === "image classifier predict");
    expect(audit.length).toBeGreaterThanOrEqual(4);
    const first = audit[0] as Record<string, unknown>;
    expect(first).toMatchObject({ model: MODEL, version: 1, rows: 20 });
    expect(first.predictions).toEqual(images.map((i) => String(i.label)));
    expect(typeof first.duration_ms).toBe("number");
    expect(logLines.some((l) => l.msg === "image classifier: bad input" && String(l.error).includes("row 2"))).toBe(true);
  });

  it("mlship package test runs the package on an input file through the CLI (JSONL rows)", async () => {
    const input = path.join(home, "rows.jsonl");
    const which = [4, 8, 12];
    await fs.writeFile(input, which.map((i) => JSON.stringify({ image: (pngs[i] as Buffer).toString("base64") })).join("\n"));
    const cli = await runCli(["package", "test", pkgDir, "--input", input], { env: { MLSHIP_LOG_LEVEL: "warn" } });
    expect(cli.code, cli.stderr).toBe(0);
    expectFixture((JSON.parse(cli.stdout) as { predictions: Prediction[] }).predictions, which);

    // The MLflow JSON input example shipped with the example package, in a CLI process of its own (the source
    // entry through tsx, as dist/ may predate this checkout).
    const example = await spawnSourceCli(["package", "test", pkgDir, "--input", path.join(pkgDir, "input_example.json")]);
    expect(example.code, example.stderr).toBe(0);
    expectFixture((JSON.parse(example.stdout) as { predictions: Prediction[] }).predictions, [0, 1, 2]);

    // A bad row through the CLI: one error line naming the row, exit 1.
    const bad = path.join(home, "bad.jsonl");
    await fs.writeFile(bad, `${JSON.stringify({ image: (pngs[0] as Buffer).toString("base64") })}\n${JSON.stringify({ image: "bm90IGFuIGltYWdl" })}\n`);
    const failed = await runCli(["package", "test", pkgDir, "--input", bad]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/mlship: row 1: image cannot be decoded .*\[MLSHIP_ERR_INPUT_INVALID\]/);
  });
});
