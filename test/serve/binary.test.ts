/**
 * The REST binary tensor data extension (serving-reference §1.11) against a real server: bodies are built by hand
 * the way Triton's tritonclient puts them on the wire (JSON header, then each binary tensor's little-endian bytes
 * in input order, `Inference-Header-Content-Length` = the JSON's byte length), and responses are decoded the same
 * way, independently of mlship's own codec.
 */
import { readFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildServer } from "../../src/serve/index.js";
import { createWorld, DIGITS_IMAGE_STEP, FIXTURES, maxAbsDiff, readExpected } from "../scoring/world.js";
import type { Expected, World } from "../scoring/world.js";

type Json = Record<string, unknown>;
interface HeaderOutput {
  name: string;
  shape: number[];
  datatype: string;
  parameters?: { binary_data_size?: number };
  data?: unknown[];
}

/** Client side: JSON header + blobs, as tritonclient's HTTP client builds them. */
function tritonRequest(header: Json, blobs: Buffer[]): { body: Buffer; headerLength: number } {
  const json = Buffer.from(JSON.stringify(header), "utf8");
  return { body: Buffer.concat([json, ...blobs]), headerLength: json.length };
}

function fp32(values: readonly number[]): Buffer {
  const b = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => b.writeFloatLE(v, i * 4));
  return b;
}

function lengthPrefixed(elements: readonly Buffer[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of elements) {
    const len = Buffer.alloc(4);
    len.writeUInt32LE(e.length, 0);
    parts.push(len, e);
  }
  return Buffer.concat(parts);
}

/** Client side: splits a binary response into its JSON header and each binary output's bytes, by name. */
function decodeResponse(body: Buffer, headerLength: number): { header: { outputs: HeaderOutput[] } & Json; blobs: Map<string, Buffer> } {
  const header = JSON.parse(body.subarray(0, headerLength).toString("utf8")) as { outputs: HeaderOutput[] } & Json;
  const blobs = new Map<string, Buffer>();
  let pos = headerLength;
  for (const o of header.outputs) {
    const size = o.parameters?.binary_data_size;
    if (size === undefined) continue;
    blobs.set(o.name, body.subarray(pos, pos + size));
    pos += size;
  }
  expect(pos).toBe(body.length);
  return { header, blobs };
}

function readFp32(b: Buffer): number[] {
  return Array.from({ length: b.length / 4 }, (_, i) => b.readFloatLE(i * 4));
}

function readInt64(b: Buffer): number[] {
  return Array.from({ length: b.length / 8 }, (_, i) => Number(b.readBigInt64LE(i * 8)));
}

function readLengthPrefixed(b: Buffer): string[] {
  const out: string[] = [];
  for (let pos = 0; pos < b.length; ) {
    const n = b.readUInt32LE(pos);
    out.push(b.subarray(pos + 4, pos + 4 + n).toString("utf8"));
    pos += 4 + n;
  }
  return out;
}

const ROWS = 20_000;

describe("REST binary tensor data extension", () => {
  let w: World;
  let app: FastifyInstance;
  let small: FastifyInstance;
  let bc: Expected;
  /** expected.json's 50 rows, repeated to ROWS. */
  let rows: number[][];
  let labels: Array<{ file: string; label: number; expected_from_png: { probabilities: number[]; label: number } }>;

  beforeAll(async () => {
    w = await createWorld();
    await w.register("breast-cancer", "breast_cancer_mlp");
    await w.register("digits", "digits_cnn", { image: DIGITS_IMAGE_STEP });
    await w.registerGraph("strings", "string");
    await w.registerGraph("dtypes", "dtypes");
    bc = await readExpected("breast_cancer_mlp");
    rows = Array.from({ length: ROWS }, (_, i) => bc.inputs[i % bc.inputs.length] as number[]);
    labels = (
      JSON.parse(await readFile(path.join(FIXTURES, "digits_cnn/images/labels.json"), "utf8")) as {
        images: Array<{ file: string; label: number; expected_from_png: { probabilities: number[]; label: number } }>;
      }
    ).images;
    app = buildServer({ scoring: w.scoring, registry: w.registry, logger: false });
    small = buildServer({ scoring: w.scoring, registry: w.registry, logger: false, bodyLimitBytes: 2048, metrics: false });
  });

  afterAll(async () => {
    await app?.close();
    await small?.close();
    await w?.close();
  });

  const expectedRows = (out: "probabilities" | "label", n: number): unknown[] =>
    Array.from({ length: n }, (_, i) => bc.outputs[out]?.[i % bc.inputs.length]);

  const post = async (url: string, header: Json, blobs: Buffer[], opts: { contentType?: string; headerLength?: string | null; server?: FastifyInstance } = {}) => {
    const { body, headerLength } = tritonRequest(header, blobs);
    const headers: Record<string, string> = { "content-type": opts.contentType ?? "application/octet-stream" };
    if (opts.headerLength !== null) headers["inference-header-content-length"] = opts.headerLength ?? String(headerLength);
    return (opts.server ?? app).inject({ method: "POST", url, payload: body, headers });
  };

  it("advertises binary_tensor_data in the server metadata", async () => {
    const res = await app.inject("/v2");
    expect((res.json() as { extensions: string[] }).extensions).toContain("binary_tensor_data");
  });

  it("scores 20k breast-cancer rows sent as binary FP32 and returns every output as binary", async () => {
    const input = fp32(rows.flat());
    const res = await post(
      "/v2/models/breast-cancer/infer",
      {
        id: "big",
        inputs: [{ name: "input", shape: [ROWS, 30], datatype: "FP32", parameters: { binary_data_size: input.length } }],
        parameters: { binary_data_output: true },
      },
      [input],
    );
    expect(res.statusCode, res.body.slice(0, 300)).toBe(200);
    expect(res.headers["content-type"]).toBe("application/octet-stream");
    const headerLength = Number(res.headers["inference-header-content-length"]);
    expect(headerLength).toBeGreaterThan(0);
    const { header, blobs } = decodeResponse(res.rawPayload, headerLength);
    expect(header).toMatchObject({ model_name: "breast-cancer", model_version: "1", id: "big" });
    const byName = new Map(header.outputs.map((o) => [o.name, o]));
    expect(byName.get("probabilities")).toEqual({ name: "probabilities", shape: [ROWS, 2], datatype: "FP32", parameters: { binary_data_size: ROWS * 2 * 4 } });
    expect(byName.get("label")).toEqual({ name: "label", shape: [ROWS], datatype: "INT64", parameters: { binary_data_size: ROWS * 8 } });
    const probabilities = readFp32(blobs.get("probabilities") as Buffer);
    expect(maxAbsDiff(probabilities, expectedRows("probabilities", ROWS))).toBeLessThanOrEqual(bc.tolerance.probabilities_abs as number);
    expect(readInt64(blobs.get("label") as Buffer)).toEqual(expectedRows("label", ROWS));
  });

  it("returns only the outputs asked for with binary_data as binary; JSON content type with the header works too", async () => {
    const input = fp32(rows.slice(0, 50).flat());
    const res = await post(
      "/v2/models/breast-cancer/versions/1/infer",
      {
        inputs: [{ name: "input", shape: [50, 30], datatype: "FP32", parameters: { binary_data_size: input.length } }],
        outputs: [{ name: "label", parameters: { binary_data: true } }, { name: "probabilities" }],
      },
      [input],
      { contentType: "application/json" },
    );
    expect(res.statusCode, res.body.slice(0, 300)).toBe(200);
    const { header, blobs } = decodeResponse(res.rawPayload, Number(res.headers["inference-header-content-length"]));
    expect(header.outputs.map((o) => o.name)).toEqual(["label", "probabilities"]);
    expect(readInt64(blobs.get("label") as Buffer)).toEqual(bc.outputs.label);
    const probs = header.outputs[1] as HeaderOutput;
    expect(probs.parameters).toBeUndefined();
    expect(maxAbsDiff(probs.data, bc.outputs.probabilities)).toBeLessThanOrEqual(bc.tolerance.probabilities_abs as number);

    // binary_data_output: true, overridden per output with binary_data: false.
    const mixed = await post(
      "/v2/models/breast-cancer/infer",
      {
        inputs: [{ name: "input", shape: [50, 30], datatype: "FP32", parameters: { binary_data_size: input.length } }],
        outputs: [{ name: "probabilities" }, { name: "label", parameters: { binary_data: false } }],
        parameters: { binary_data_output: true },
      },
      [input],
    );
    const m = decodeResponse(mixed.rawPayload, Number(mixed.headers["inference-header-content-length"]));
    expect([...m.blobs.keys()]).toEqual(["probabilities"]);
    expect(m.header.outputs[1]?.data).toEqual(bc.outputs.label);
  });

  it("answers plain JSON to a binary request that asks for no binary output, and takes JSON outputs as binary", async () => {
    const input = fp32(rows.slice(0, 50).flat());
    const res = await post(
      "/v2/models/breast-cancer/infer",
      { inputs: [{ name: "input", shape: [50, 30], datatype: "FP32", parameters: { binary_data_size: input.length } }] },
      [input],
    );
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toContain("application/json");
    expect(res.headers["inference-header-content-length"]).toBeUndefined();
    const outputs = (res.json() as { outputs: HeaderOutput[] }).outputs;
    expect(outputs.find((o) => o.name === "label")?.data).toEqual(bc.outputs.label);

    // A plain JSON request (no header at all) may still ask for binary outputs.
    const plain = await app.inject({
      method: "POST",
      url: "/v2/models/breast-cancer/infer",
      payload: { inputs: [{ name: "input", shape: [2, 30], datatype: "FP32", data: bc.inputs.slice(0, 2) }], parameters: { binary_data_output: true } },
    });
    expect(plain.statusCode).toBe(200);
    const p = decodeResponse(plain.rawPayload, Number(plain.headers["inference-header-content-length"]));
    expect(readInt64(p.blobs.get("label") as Buffer)).toEqual(bc.outputs.label?.slice(0, 2));
  });

  it("mixes JSON data and binary inputs; FP16 travels as half bits both ways", async () => {
    const f16 = Buffer.alloc(4);
    f16.writeUInt16LE(0x3e00, 0); // 1.5
    f16.writeUInt16LE(0xb400, 2); // -0.25
    const f64 = Buffer.alloc(16);
    f64.writeDoubleLE(0.1, 0);
    f64.writeDoubleLE(1e300, 8);
    const u64 = Buffer.alloc(16);
    u64.writeBigUInt64LE(0n, 0);
    u64.writeBigUInt64LE(18446744073709551615n, 8);
    const res = await post(
      "/v2/models/dtypes/infer",
      {
        inputs: [
          { name: "f16", shape: [2], datatype: "FP16", parameters: { binary_data_size: 4 } },
          { name: "f64", shape: [2], datatype: "FP64", parameters: { binary_data_size: 16 } },
          { name: "i8", shape: [2], datatype: "INT8", data: [-128, 127] },
          { name: "i16", shape: [2], datatype: "INT16", data: [-32768, 32767] },
          { name: "i32", shape: [2], datatype: "INT32", data: [-2147483648, 2147483647] },
          { name: "u8", shape: [2], datatype: "UINT8", data: [0, 255] },
          { name: "u16", shape: [2], datatype: "UINT16", data: [0, 65535] },
          { name: "u32", shape: [2], datatype: "UINT32", data: [0, 4294967295] },
          { name: "u64", shape: [2], datatype: "UINT64", parameters: { binary_data_size: 16 } },
        ],
        outputs: [
          { name: "f16_out", parameters: { binary_data: true } },
          { name: "f16_as_f32" },
          { name: "f64_out", parameters: { binary_data: true } },
          { name: "i8_out" },
          { name: "u64_out", parameters: { binary_data: true } },
        ],
      },
      [f16, f64, u64],
    );
    expect(res.statusCode, res.body.slice(0, 400)).toBe(200);
    const { header, blobs } = decodeResponse(res.rawPayload, Number(res.headers["inference-header-content-length"]));
    expect(blobs.get("f16_out")).toEqual(f16);
    expect(blobs.get("f64_out")).toEqual(f64);
    expect(blobs.get("u64_out")).toEqual(u64);
    expect(header.outputs.find((o) => o.name === "f16_as_f32")?.data).toEqual([1.5, -0.25]);
    expect(header.outputs.find((o) => o.name === "i8_out")?.data).toEqual([-128, 127]);
  });

  it("takes BYTES as length-prefixed binary: digit PNGs for an image input, UTF-8 text both ways", async () => {
    const pngs = await Promise.all(labels.map((i) => readFile(path.join(FIXTURES, "digits_cnn", i.file))));
    const blob = lengthPrefixed(pngs);
    const res = await post(
      "/v2/models/digits/infer",
      {
        inputs: [{ name: "image", shape: [pngs.length], datatype: "BYTES", parameters: { binary_data_size: blob.length } }],
        outputs: [{ name: "label", parameters: { binary_data: true } }, { name: "probabilities", parameters: { binary_data: true } }],
      },
      [blob],
    );
    expect(res.statusCode, res.body.slice(0, 300)).toBe(200);
    const { blobs } = decodeResponse(res.rawPayload, Number(res.headers["inference-header-content-length"]));
    expect(readInt64(blobs.get("label") as Buffer)).toEqual(labels.map((i) => i.label));
    expect(maxAbsDiff(readFp32(blobs.get("probabilities") as Buffer), labels.map((i) => i.expected_from_png.probabilities))).toBeLessThanOrEqual(1e-5);

    const words = ["héllo", "wörld", "", "日本"].map((s) => Buffer.from(s, "utf8"));
    const text = lengthPrefixed(words);
    const echo = await post(
      "/v2/models/strings/infer",
      { inputs: [{ name: "text", shape: [2, 2], datatype: "BYTES", parameters: { binary_data_size: text.length } }], parameters: { binary_data_output: true } },
      [text],
    );
    expect(echo.statusCode, echo.body.slice(0, 300)).toBe(200);
    const e = decodeResponse(echo.rawPayload, Number(echo.headers["inference-header-content-length"]));
    expect(e.header.outputs[0]).toMatchObject({ name: "echo", datatype: "BYTES", shape: [2, 2] });
    expect(readLengthPrefixed(e.blobs.get("echo") as Buffer)).toEqual(["héllo", "wörld", "", "日本"]);
  });

  describe("malformed requests are a 400 naming the field", () => {
    const two = (): Buffer => fp32(rows.slice(0, 2).flat());
    const bcInput = (size: unknown, extra: Json = {}): Json => ({
      inputs: [{ name: "input", shape: [2, 30], datatype: "FP32", parameters: { binary_data_size: size }, ...extra }],
    });
    const cases: Array<[string, () => ReturnType<typeof post>, string, string]> = [
      ["header length beyond the body", () => post("/v2/models/breast-cancer/infer", bcInput(240), [two()], { headerLength: "999999" }), "MLSHIP_ERR_INPUT_INVALID", "inference-header-content-length"],
      ["negative header length", () => post("/v2/models/breast-cancer/infer", bcInput(240), [two()], { headerLength: "-5" }), "MLSHIP_ERR_INPUT_INVALID", "inference-header-content-length"],
      ["NaN header length", () => post("/v2/models/breast-cancer/infer", bcInput(240), [two()], { headerLength: "abc" }), "MLSHIP_ERR_INPUT_INVALID", "inference-header-content-length"],
      ["fractional header length", () => post("/v2/models/breast-cancer/infer", bcInput(240), [two()], { headerLength: "1.5" }), "MLSHIP_ERR_INPUT_INVALID", "inference-header-content-length"],
      ["sizes add up to less than the bytes sent", () => post("/v2/models/breast-cancer/infer", bcInput(240), [two(), Buffer.alloc(4)]), "MLSHIP_ERR_INPUT_INVALID", "inputs[0].parameters.binary_data_size"],
      ["size beyond the bytes sent", () => post("/v2/models/breast-cancer/infer", bcInput(244), [two()]), "MLSHIP_ERR_INPUT_INVALID", "inputs[0].parameters.binary_data_size"],
      ["size not elements x 4 (sum matches)", () => post("/v2/models/breast-cancer/infer", bcInput(236), [two().subarray(0, 236)]), "MLSHIP_ERR_INPUT_SHAPE", "inputs[0].parameters.binary_data_size"],
      ["negative binary_data_size", () => post("/v2/models/breast-cancer/infer", bcInput(-240), [two()]), "MLSHIP_ERR_INPUT_INVALID", "inputs[0].parameters.binary_data_size"],
      ["binary_data_size as text", () => post("/v2/models/breast-cancer/infer", bcInput("240"), [two()]), "MLSHIP_ERR_INPUT_INVALID", "inputs[0].parameters.binary_data_size"],
      ["binary_data_size without the header", () => post("/v2/models/breast-cancer/infer", bcInput(240), [], { headerLength: null, contentType: "application/json" }), "MLSHIP_ERR_INPUT_INVALID", "inputs[0].parameters.binary_data_size"],
      ["data and binary_data_size together", () => post("/v2/models/breast-cancer/infer", bcInput(240, { data: rows.slice(0, 2) }), [two()]), "MLSHIP_ERR_INPUT_INVALID", "inputs[0].data"],
      ["bytes after the JSON but no binary input", () => post("/v2/models/breast-cancer/infer", { inputs: [{ name: "input", shape: [1, 30], datatype: "FP32", data: rows[0] }] }, [Buffer.alloc(8)]), "MLSHIP_ERR_INPUT_INVALID", "inference-header-content-length"],
      ["octet-stream without the header is all JSON", () => post("/v2/models/breast-cancer/infer", bcInput(240), [two()], { headerLength: null }), "MLSHIP_ERR_INPUT_JSON", "body"],
      ["broken JSON header", () => post("/v2/models/breast-cancer/infer", bcInput(240), [two()], { headerLength: "10" }), "MLSHIP_ERR_INPUT_JSON", "body"],
      ["BYTES element longer than the blob", () => {
        const bad = Buffer.alloc(8);
        bad.writeUInt32LE(100, 0);
        return post("/v2/models/digits/infer", { inputs: [{ name: "image", shape: [1], datatype: "BYTES", parameters: { binary_data_size: 8 } }] }, [bad]);
      }, "MLSHIP_ERR_INPUT_INVALID", "inputs[0].parameters.binary_data_size"],
      ["BYTES count not the shape's", () => {
        const text = lengthPrefixed([Buffer.from("a"), Buffer.from("b")]);
        return post("/v2/models/strings/infer", { inputs: [{ name: "text", shape: [2, 2], datatype: "BYTES", parameters: { binary_data_size: text.length } }] }, [text]);
      }, "MLSHIP_ERR_INPUT_SHAPE", "inputs[0].parameters.binary_data_size"],
      ["binary_data not a boolean", () => post("/v2/models/breast-cancer/infer", { ...bcInput(240), outputs: [{ name: "label", parameters: { binary_data: "yes" } }] }, [two()]), "MLSHIP_ERR_INPUT_INVALID", "outputs[0].parameters.binary_data"],
      ["binary_data_output not a boolean", () => post("/v2/models/breast-cancer/infer", { ...bcInput(240), parameters: { binary_data_output: 1 } }, [two()]), "MLSHIP_ERR_INPUT_INVALID", "parameters.binary_data_output"],
    ];
    for (const [what, send, code, field] of cases) {
      it(what, async () => {
        const res = await send();
        expect(res.statusCode, res.body).toBe(400);
        expect(res.json()).toMatchObject({ code, field });
        expect((res.json() as { error: string }).error).toContain(field === "inference-header-content-length" && code === "MLSHIP_ERR_INPUT_INVALID" ? "Inference-Header-Content-Length" : field === "body" ? "JSON" : field);
      });
    }
  });

  it("keeps the body limit (413) and keeps octet-stream off the MLflow routes (415)", async () => {
    const input = fp32(rows.slice(0, 20).flat());
    const res = await post(
      "/v2/models/breast-cancer/infer",
      { inputs: [{ name: "input", shape: [20, 30], datatype: "FP32", parameters: { binary_data_size: input.length } }] },
      [input],
      { server: small },
    );
    expect(res.statusCode).toBe(413);
    expect(res.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_TOO_LARGE", field: "body" });
    const mlflow = await app.inject({ method: "POST", url: "/invocations", payload: Buffer.from("{}"), headers: { "content-type": "application/octet-stream" } });
    expect(mlflow.statusCode).toBe(415);
    expect(mlflow.json()).toMatchObject({ mlship_code: "MLSHIP_ERR_INPUT_CONTENT_TYPE", field: "content-type" });
  });

  it("serves a hand-built binary body over a real socket (fetch), as tritonclient sends it", async () => {
    const server = buildServer({ scoring: w.scoring, registry: w.registry, logger: false });
    try {
      await server.listen({ host: "127.0.0.1", port: 0 });
      const { port } = server.server.address() as AddressInfo;
      const n = 1000;
      const input = fp32(rows.slice(0, n).flat());
      const { body, headerLength } = tritonRequest(
        {
          inputs: [{ name: "input", shape: [n, 30], datatype: "FP32", parameters: { binary_data_size: input.length } }],
          outputs: [{ name: "probabilities", parameters: { binary_data: true } }, { name: "label", parameters: { binary_data: true } }],
        },
        [input],
      );
      const res = await fetch(`http://127.0.0.1:${port}/v2/models/breast-cancer/infer`, {
        method: "POST",
        headers: { "Content-Type": "application/octet-stream", "Inference-Header-Content-Length": String(headerLength) },
        body: new Uint8Array(body),
      });
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("application/octet-stream");
      const payload = Buffer.from(await res.arrayBuffer());
      expect(Number(res.headers.get("content-length"))).toBe(payload.length);
      const { blobs } = decodeResponse(payload, Number(res.headers.get("inference-header-content-length")));
      expect(maxAbsDiff(readFp32(blobs.get("probabilities") as Buffer), expectedRows("probabilities", n))).toBeLessThanOrEqual(bc.tolerance.probabilities_abs as number);
      expect(readInt64(blobs.get("label") as Buffer)).toEqual(expectedRows("label", n));
    } finally {
      await server.close();
    }
  });
});
