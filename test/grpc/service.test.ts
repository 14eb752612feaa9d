// The gRPC Open Inference Protocol service on a real stack (SQLite registry in a temp home, ONNX runtime on worker
// threads, the shared fixtures), called through a client generated from proto/open_inference_grpc.proto.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Metadata, status } from "@grpc/grpc-js";
import type { Client } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGrpcServer } from "../../src/serve/index.js";
import type { GrpcServer } from "../../src/serve/index.js";
import { createWorld, DIGITS_IMAGE_STEP, FIXTURES, maxAbsDiff, readExpected, waitFor } from "../scoring/world.js";
import type { Expected, FixtureName, World } from "../scoring/world.js";
import { connect, decodeRaw, definition, encodeRaw, outputValues, rpc, rpcError, trailer } from "./client.js";
import type { InferResponse } from "./client.js";

const FIXTURE_MODELS: Array<[string, FixtureName]> = [
  ["breast-cancer", "breast_cancer_mlp"],
  ["digits", "digits_cnn"],
  ["diabetes", "diabetes_linear"],
];

interface Labels {
  images: Array<{ file: string; label: number; expected_from_png: { probabilities: number[]; label: number } }>;
}

function tolerance(e: Expected, output: string): number {
  return (e.tolerance[`${output}_abs`] as number | undefined) ?? 1e-5;
}

/** Every expected output of the fixture, from a response in either form; labels compared exactly. */
function checkFixture(res: InferResponse, e: Expected, rows = e.inputs.length): void {
  for (const [out, want] of Object.entries(e.outputs)) {
    const got = outputValues(res, out);
    const wanted = Array.from({ length: rows }, (_, r) => want[r % want.length]).flat(3);
    if (out === "label") expect(got, out).toEqual(wanted);
    else expect(maxAbsDiff(got, wanted), out).toBeLessThanOrEqual(tolerance(e, out));
  }
}

function fp32Input(e: Expected, rows = e.inputs.length, name = "input") {
  const flat = Array.from({ length: rows }, (_, r) => e.inputs[r % e.inputs.length] as number[]).flat();
  return { name, datatype: "FP32", shape: [rows, ...e.input_shape.slice(1)], flat };
}

describe("gRPC GRPCInferenceService on real models", { timeout: 120_000 }, () => {
  let w: World;
  let grpc: GrpcServer;
  let client: Client;
  let address: string;
  const expected = {} as Record<FixtureName, Expected>;
  let labels: Labels;
  let pngs: Buffer[];

  beforeAll(async () => {
    w = await createWorld();
    for (const [name, fixture] of FIXTURE_MODELS) {
      expected[fixture] = await readExpected(fixture);
      await w.register(name, fixture, fixture === "digits_cnn" ? { image: DIGITS_IMAGE_STEP, postprocess: [{ type: "labels", output: "label", labels: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"], as: "class" }] } : { columns: true, labelColumn: fixture === "diabetes_linear" ? "target" : "label" });
    }
    // breast-cancer: version 1 behind `production`, version 2 the latest.
    await w.register("breast-cancer", "breast_cancer_mlp", { columns: true });
    await w.registry.setAlias("breast-cancer", "production", 1, { by: "test", reason: "grpc test" });
    await w.registerGraph("int64", "int64");
    await w.registerGraph("bool", "bool");
    await w.registerGraph("strings", "string");
    await w.registerGraph("dtypes", "dtypes");
    labels = JSON.parse(await readFile(path.join(FIXTURES, "digits_cnn/images/labels.json"), "utf8")) as Labels;
    pngs = await Promise.all(labels.images.map((i) => readFile(path.join(FIXTURES, "digits_cnn", i.file))));

    grpc = createGrpcServer({ scoring: w.scoring, registry: w.registry });
    const port = await grpc.listen("127.0.0.1", 0);
    address = `127.0.0.1:${port}`;
    client = connect(address);
  });

  afterAll(async () => {
    client?.close();
    await grpc?.close(1000);
    await w?.close();
  });

  const infer = (request: object, metadata?: Metadata) => rpc<InferResponse>(client, "ModelInfer", request, metadata);

  it("ServerLive, ServerReady and ServerMetadata", async () => {
    expect((await rpc(client, "ServerLive", {})).response).toEqual({ live: true });
    expect((await rpc(client, "ServerReady", {})).response).toEqual({ ready: true });
    const pkg = JSON.parse(await readFile(fileURLToPath(new URL("../../package.json", import.meta.url)), "utf8")) as { version: string };
    expect((await rpc(client, "ServerMetadata", {})).response).toEqual({ name: "mlship", version: pkg.version, extensions: [] });
  });

  it("ModelMetadata mirrors GET /v2/models/{name}[/versions/{v}], alias references included", async () => {
    const bc = await rpc(client, "ModelMetadata", { name: "breast-cancer" });
    expect(bc.response).toEqual({
      name: "breast-cancer",
      versions: ["1", "2"],
      platform: "onnx_onnxv1",
      inputs: [{ name: "input", datatype: "FP32", shape: ["-1", "30"] }],
      outputs: [
        { name: "probabilities", datatype: "FP32", shape: ["-1", "2"] },
        { name: "label", datatype: "INT64", shape: ["-1"] },
      ],
    });
    expect(trailer(bc.trailers, "mlship-model-version")).toBe("breast-cancer@1");
    expect(trailer((await rpc(client, "ModelMetadata", { name: "breast-cancer", version: "2" })).trailers, "mlship-model-version")).toBe("breast-cancer@2");
    expect(trailer((await rpc(client, "ModelMetadata", { name: "breast-cancer@latest" })).trailers, "mlship-model-version")).toBe("breast-cancer@2");
    expect(trailer((await rpc(client, "ModelMetadata", { name: "models:/breast-cancer@production" })).trailers, "mlship-model-version")).toBe("breast-cancer@1");

    const digits = (await rpc<{ inputs: unknown[]; outputs: unknown[] }>(client, "ModelMetadata", { name: "digits" })).response;
    expect(digits.inputs).toEqual([{ name: "image", datatype: "BYTES", shape: ["-1"] }]);
    expect(digits.outputs).toEqual([
      { name: "probabilities", datatype: "FP32", shape: ["-1", "10"] },
      { name: "label", datatype: "INT64", shape: ["-1"] },
      { name: "class", datatype: "BYTES", shape: ["-1"] },
    ]);

    const unknown = await rpcError(client, "ModelMetadata", { name: "nope" });
    expect(unknown.code).toBe(status.NOT_FOUND);
    expect(trailer(unknown, "mlship-error-code")).toBe("MLSHIP_ERR_MODEL_NOT_FOUND");
    const both = await rpcError(client, "ModelMetadata", { name: "breast-cancer@production", version: "2" });
    expect(both.code).toBe(status.INVALID_ARGUMENT);
    expect(trailer(both, "mlship-error-code")).toBe("MLSHIP_ERR_MODEL_REF_INVALID");
    expect(trailer(both, "mlship-error-field")).toBe("version");
  });

  it("ModelReady starts the load and turns true; unknown models and versions are NOT_FOUND", async () => {
    await waitFor(async () => (await rpc<{ ready: boolean }>(client, "ModelReady", { name: "diabetes" })).response.ready, 30_000);
    const ready = await rpc<{ ready: boolean }>(client, "ModelReady", { name: "diabetes", version: "1" });
    expect(ready.response).toEqual({ ready: true });
    expect(trailer(ready.trailers, "mlship-model-version")).toBe("diabetes@1");

    const version = await rpcError(client, "ModelReady", { name: "diabetes", version: "7" });
    expect(version.code).toBe(status.NOT_FOUND);
    expect(trailer(version, "mlship-error-code")).toBe("MLSHIP_ERR_MODEL_VERSION_NOT_FOUND");
    const alias = await rpcError(client, "ModelReady", { name: "diabetes@staging" });
    expect(alias.code).toBe(status.NOT_FOUND);
    expect(trailer(alias, "mlship-error-code")).toBe("MLSHIP_ERR_MODEL_ALIAS_NOT_FOUND");
    const empty = await rpcError(client, "ModelReady", {});
    expect(empty.code).toBe(status.INVALID_ARGUMENT);
    expect(trailer(empty, "mlship-error-field")).toBe("name");
  });

  it("ModelInfer with typed contents matches expected.json for every fixture (id and version echoed)", async () => {
    for (const [name, fixture] of FIXTURE_MODELS) {
      const e = expected[fixture];
      const input = fp32Input(e);
      const { response, trailers } = await infer({
        model_name: name,
        id: `typed-${name}`,
        inputs: [{ name: input.name, datatype: input.datatype, shape: input.shape, contents: { fp32_contents: input.flat } }],
        outputs: Object.keys(e.outputs).map((o) => ({ name: o })),
      });
      expect(response.model_name).toBe(name);
      expect(response.model_version).toBe("1");
      expect(response.id).toBe(`typed-${name}`);
      expect(response.raw_output_contents).toEqual([]);
      expect(response.outputs.map((o) => o.name)).toEqual(Object.keys(e.outputs));
      checkFixture(response, e);
      expect(trailer(trailers, "mlship-model-version")).toBe(`${name}@1`);
      const label = response.outputs.find((o) => o.name === "label");
      if (label !== undefined) {
        expect(label.datatype).toBe("INT64");
        expect(label.shape).toEqual([String(e.inputs.length)]);
        expect(label.contents?.int64_contents).toHaveLength(e.inputs.length);
      }
    }
  });

  it("ModelInfer with raw_input_contents answers in raw_output_contents (int64 labels decoded from the bytes)", async () => {
    for (const [name, fixture] of FIXTURE_MODELS) {
      const e = expected[fixture];
      const input = fp32Input(e);
      const { response } = await infer({
        model_name: name,
        inputs: [{ name: input.name, datatype: "FP32", shape: input.shape }],
        raw_input_contents: [encodeRaw("FP32", input.flat)],
      });
      expect(response.id).toBe("");
      expect(response.raw_output_contents).toHaveLength(response.outputs.length);
      for (const o of response.outputs) expect(o.contents).toBeNull();
      checkFixture(response, e);
      const i = response.outputs.findIndex((o) => o.name === "label");
      if (i >= 0) {
        const bytes = response.raw_output_contents[i] as Buffer;
        expect(bytes.length).toBe(8 * e.inputs.length);
        expect(decodeRaw("INT64", bytes)).toEqual((e.outputs.label as number[]).map((v) => BigInt(v)));
      }
    }
  });

  it("binary_data_output and per-output binary_data choose the output form", async () => {
    const e = expected.breast_cancer_mlp;
    const input = fp32Input(e, 3);
    const typedIn = { name: "input", datatype: "FP32", shape: input.shape, contents: { fp32_contents: input.flat } };
    const rawIn = { name: "input", datatype: "FP32", shape: input.shape };
    const a = (await infer({ model_name: "breast-cancer", inputs: [typedIn], parameters: { binary_data_output: { bool_param: true } } })).response;
    expect(a.raw_output_contents).toHaveLength(2);
    checkFixture(a, e, 3);
    const b = (await infer({ model_name: "breast-cancer", inputs: [rawIn], raw_input_contents: [encodeRaw("FP32", input.flat)], parameters: { binary_data_output: { bool_param: false } } })).response;
    expect(b.raw_output_contents).toEqual([]);
    expect(b.outputs[1]?.contents?.int64_contents).toEqual((e.outputs.label as number[]).slice(0, 3).map(String));
    const c = (await infer({ model_name: "breast-cancer", inputs: [typedIn], outputs: [{ name: "label", parameters: { binary_data: { bool_param: true } } }] })).response;
    expect(c.outputs.map((o) => o.name)).toEqual(["label"]);
    expect(decodeRaw("INT64", c.raw_output_contents[0] as Buffer)).toEqual((e.outputs.label as number[]).slice(0, 3).map((v) => BigInt(v)));
    const bad = await rpcError(client, "ModelInfer", { model_name: "breast-cancer", inputs: [typedIn], parameters: { binary_data_output: { string_param: "yes" } } });
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    expect(trailer(bad, "mlship-error-field")).toBe("parameters.binary_data_output");
  });

  it("classifies the digit PNGs sent as raw encoded bytes in BYTES, typed and raw, like labels.json", async () => {
    const wantLabels = labels.images.map((i) => i.label);
    const wantProbs = labels.images.map((i) => i.expected_from_png.probabilities);
    const typed = (await infer({
      model_name: "digits",
      inputs: [{ name: "image", datatype: "BYTES", shape: [pngs.length], contents: { bytes_contents: pngs } }],
    })).response;
    const raw = (await infer({
      model_name: "digits",
      inputs: [{ name: "image", datatype: "BYTES", shape: [pngs.length] }],
      raw_input_contents: [encodeRaw("BYTES", pngs)],
      outputs: [{ name: "class" }, { name: "label" }, { name: "probabilities" }],
    })).response;
    expect(raw.outputs.map((o) => [o.name, o.datatype, o.shape])).toEqual([
      ["class", "BYTES", ["20"]],
      ["label", "INT64", ["20"]],
      ["probabilities", "FP32", ["20", "10"]],
    ]);
    for (const res of [typed, raw]) {
      expect(outputValues(res, "label")).toEqual(wantLabels);
      expect(outputValues(res, "class")).toEqual(wantLabels.map(String));
      expect(maxAbsDiff(outputValues(res, "probabilities"), wantProbs)).toBeLessThanOrEqual(1e-5);
    }
    expect(typed.outputs.find((o) => o.name === "class")?.contents?.bytes_contents.map((b) => b.toString())).toEqual(wantLabels.map(String));
  });

  it("resolves alias references in model_name and version numbers in model_version", async () => {
    const e = expected.breast_cancer_mlp;
    const input = fp32Input(e, 2);
    const body = { inputs: [{ name: "input", datatype: "FP32", shape: input.shape, contents: { fp32_contents: input.flat } }] };
    const version = async (model_name: string, model_version = "") => (await infer({ ...body, model_name, model_version })).response.model_version;
    expect(await version("breast-cancer")).toBe("1");
    expect(await version("breast-cancer@production")).toBe("1");
    expect(await version("models:/breast-cancer@production")).toBe("1");
    expect(await version("breast-cancer@latest")).toBe("2");
    expect(await version("breast-cancer@2")).toBe("2");
    expect(await version("breast-cancer", "2")).toBe("2");

    await w.registry.setAlias("breast-cancer", "production", 2, { by: "test", reason: "move" });
    try {
      await w.scoring.refresh();
      expect(await version("breast-cancer@production")).toBe("2");
    } finally {
      await w.registry.setAlias("breast-cancer", "production", 1, { by: "test", reason: "back" });
      await w.scoring.refresh();
    }

    const both = await rpcError(client, "ModelInfer", { ...body, model_name: "breast-cancer@production", model_version: "2" });
    expect(both.code).toBe(status.INVALID_ARGUMENT);
    expect(trailer(both, "mlship-error-code")).toBe("MLSHIP_ERR_MODEL_REF_INVALID");
    expect(trailer(both, "mlship-error-field")).toBe("model_version");
    expect(both.details).toContain("model_version");
    const notNumber = await rpcError(client, "ModelInfer", { ...body, model_name: "breast-cancer", model_version: "two" });
    expect(trailer(notNumber, "mlship-error-field")).toBe("model_version");
  });

  describe("errors: a status, the mlship-error-code trailer and the field", () => {
    const e = () => expected.breast_cancer_mlp;
    const good = () => {
      const input = fp32Input(e(), 2);
      return { name: "input", datatype: "FP32", shape: input.shape, contents: { fp32_contents: input.flat } };
    };

    const cases: Array<[string, () => object, number, string, string]> = [
      ["unknown model", () => ({ model_name: "nope", inputs: [good()] }), status.NOT_FOUND, "MLSHIP_ERR_MODEL_NOT_FOUND", "model_name"],
      ["unknown version", () => ({ model_name: "breast-cancer", model_version: "9", inputs: [good()] }), status.NOT_FOUND, "MLSHIP_ERR_MODEL_VERSION_NOT_FOUND", "model_version"],
      ["unknown alias", () => ({ model_name: "breast-cancer@staging", inputs: [good()] }), status.NOT_FOUND, "MLSHIP_ERR_MODEL_ALIAS_NOT_FOUND", ""],
      ["malformed reference", () => ({ model_name: "breast-cancer@", inputs: [good()] }), status.INVALID_ARGUMENT, "MLSHIP_ERR_MODEL_REF_INVALID", "model_name"],
      ["empty model_name", () => ({ inputs: [good()] }), status.INVALID_ARGUMENT, "MLSHIP_ERR_INPUT_MISSING", "model_name"],
      ["wrong datatype", () => ({ model_name: "breast-cancer", inputs: [{ ...good(), datatype: "FP64", contents: { fp64_contents: good().contents.fp32_contents } }] }), status.INVALID_ARGUMENT, "MLSHIP_ERR_INPUT_DTYPE", "inputs[0].datatype"],
      ["unknown datatype", () => ({ model_name: "breast-cancer", inputs: [{ ...good(), datatype: "FP8" }] }), status.INVALID_ARGUMENT, "MLSHIP_ERR_INPUT_DTYPE", "inputs[0].datatype"],
      ["missing datatype", () => ({ model_name: "breast-cancer", inputs: [{ ...good(), datatype: "" }] }), status.INVALID_ARGUMENT, "MLSHIP_ERR_INPUT_MISSING", "inputs[0].datatype"],
      ["wrong shape", () => ({ model_name: "breast-cancer", inputs: [{ ...good(), shape: [2, 29] }] }), status.INVALID_ARGUMENT, "MLSHIP_ERR_INPUT_SHAPE", "inputs[0].shape"],
      ["wrong rank", () => ({ model_name: "breast-cancer", inputs: [{ ...good(), shape: [60] }] }), status.INVALID_ARGUMENT, "MLSHIP_ERR_INPUT_SHAPE", "inputs[0].shape"],
      ["negative dimension", () => ({ model_name: "breast-cancer", inputs: [{ ...good(), shape: [-1, 30] }] }), status.INVALID_ARGUMENT, "MLSHIP_ERR_INPUT_SHAPE", "inputs[0].shape[0]"],
      ["too few elements", () => ({ model_name: "breast-cancer", inputs: [{ ...good(), contents: { fp32_contents: good().contents.fp32_contents.slice(1) } }] }), status.INVALID_ARGUMENT, "MLSHIP_ERR_INPUT_SHAPE", "inputs[0].contents.fp32_contents"],
      ["no contents", () => ({ model_name: "breast-cancer", inputs: [{ ...good(), contents: undefined }] }), status.INVALID_ARGUMENT, "MLSHIP_ERR_INPUT_MISSING", "inputs[0].contents.fp32_contents"],
      ["contents in the wrong field", () => ({ model_name: "breast-cancer", inputs: [{ ...good(), contents: { fp64_contents: good().contents.fp32_contents } }] }), status.INVALID_ARGUMENT, "MLSHIP_ERR_INPUT_DTYPE", "inputs[0].contents.fp64_contents"],
      ["unknown input", () => ({ model_name: "breast-cancer", inputs: [{ ...good(), name: "features" }] }), status.INVALID_ARGUMENT, "MLSHIP_ERR_INPUT_INVALID", "inputs[0].name"],
      ["input given twice", () => ({ model_name: "breast-cancer", inputs: [good(), good()] }), status.INVALID_ARGUMENT, "MLSHIP_ERR_INPUT_INVALID", "inputs[1].name"],
      ["missing input", () => ({ model_name: "breast-cancer", inputs: [] }), status.INVALID_ARGUMENT, "MLSHIP_ERR_INPUT_MISSING", "inputs"],
      ["unknown output", () => ({ model_name: "breast-cancer", inputs: [good()], outputs: [{ name: "label" }, { name: "score" }] }), status.INVALID_ARGUMENT, "MLSHIP_ERR_INPUT_INVALID", "outputs[1].name"],
      ["raw and contents mixed", () => ({ model_name: "breast-cancer", inputs: [good()], raw_input_contents: [encodeRaw("FP32", good().contents.fp32_contents)] }), status.INVALID_ARGUMENT, "MLSHIP_ERR_INPUT_INVALID", "inputs[0].contents"],
      ["raw entries != inputs", () => ({ model_name: "breast-cancer", inputs: [{ ...good(), contents: undefined }], raw_input_contents: [Buffer.alloc(240), Buffer.alloc(4)] }), status.INVALID_ARGUMENT, "MLSHIP_ERR_INPUT_INVALID", "raw_input_contents"],
      ["raw size mismatch", () => ({ model_name: "breast-cancer", inputs: [{ ...good(), contents: undefined }], raw_input_contents: [Buffer.alloc(239)] }), status.INVALID_ARGUMENT, "MLSHIP_ERR_INPUT_SHAPE", "raw_input_contents[0]"],
      ["image input as FP32", () => ({ model_name: "digits", inputs: [{ name: "image", datatype: "FP32", shape: [1], contents: { fp32_contents: [1] } }] }), status.INVALID_ARGUMENT, "MLSHIP_ERR_INPUT_DTYPE", "inputs[0].datatype"],
      ["not an image", () => ({ model_name: "digits", inputs: [{ name: "image", datatype: "BYTES", shape: [2], contents: { bytes_contents: [pngs[0], Buffer.from("not a png")] } }] }), status.INVALID_ARGUMENT, "MLSHIP_ERR_INPUT_INVALID", "inputs[0].contents.bytes_contents[1]"],
      ["empty image", () => ({ model_name: "digits", inputs: [{ name: "image", datatype: "BYTES", shape: [1], contents: { bytes_contents: [Buffer.alloc(0)] } }] }), status.INVALID_ARGUMENT, "MLSHIP_ERR_INPUT_INVALID", "inputs[0].contents.bytes_contents[0]"],
      ["truncated BYTES length prefix", () => ({ model_name: "digits", inputs: [{ name: "image", datatype: "BYTES", shape: [1] }], raw_input_contents: [Buffer.from([200, 0, 0, 0, 1, 2])] }), status.INVALID_ARGUMENT, "MLSHIP_ERR_INPUT_INVALID", "raw_input_contents[0]"],
      ["BYTES element count", () => ({ model_name: "digits", inputs: [{ name: "image", datatype: "BYTES", shape: [3] }], raw_input_contents: [encodeRaw("BYTES", [pngs[0] as Buffer])] }), status.INVALID_ARGUMENT, "MLSHIP_ERR_INPUT_SHAPE", "raw_input_contents[0]"],
      ["BOOL byte other than 0/1", () => ({ model_name: "bool", inputs: [{ name: "p", datatype: "BOOL", shape: [2] }, { name: "q", datatype: "BOOL", shape: [2] }], raw_input_contents: [Buffer.from([0, 7]), Buffer.from([1, 1])] }), status.INVALID_ARGUMENT, "MLSHIP_ERR_INPUT_DTYPE", "raw_input_contents[0][1]"],
      ["INT8 out of range", () => ({ model_name: "dtypes", inputs: dtypeInputs(1).filter((i) => i.name !== "f16").map((i) => (i.name === "i8" ? { ...i, contents: { int_contents: [300] } } : i)) }), status.INVALID_ARGUMENT, "MLSHIP_ERR_INPUT_DTYPE", "inputs[1].contents.int_contents[0]"],
      ["FP16 in typed contents", () => ({ model_name: "dtypes", inputs: dtypeInputs(1).map((i) => (i.name === "f16" ? { ...i, contents: { fp32_contents: [1] } } : i)) }), status.INVALID_ARGUMENT, "MLSHIP_ERR_INPUT_DTYPE", "inputs[0].contents"],
      ["string that is not UTF-8", () => ({ model_name: "strings", inputs: [{ name: "text", datatype: "BYTES", shape: [1, 2], contents: { bytes_contents: [Buffer.from("ok"), Buffer.from([0xff, 0xfe])] } }] }), status.INVALID_ARGUMENT, "MLSHIP_ERR_INPUT_DTYPE", "inputs[0].contents.bytes_contents[1]"],
    ];

    it.each(cases)("%s", async (_label, request, code, mlshipCode, field) => {
      const err = await rpcError(client, "ModelInfer", request());
      expect(err.code, err.details).toBe(code);
      expect(trailer(err, "mlship-error-code"), err.details).toBe(mlshipCode);
      if (field !== "") {
        expect(trailer(err, "mlship-error-field"), err.details).toBe(field);
        expect(err.details).toContain(field);
      }
      // The server is still there.
      expect((await rpc(client, "ServerLive", {})).response).toEqual({ live: true });
    });

    it("says which version refused the request", async () => {
      const err = await rpcError(client, "ModelInfer", { model_name: "breast-cancer", model_version: "2", inputs: [{ ...good(), shape: [1, 60] }] });
      expect(trailer(err, "mlship-model-version")).toBe("breast-cancer@2");
    });

    it("never crashes on bytes that are not a ModelInferRequest", async () => {
      const def = (definition["inference.GRPCInferenceService"] as unknown as Record<string, { path: string; responseDeserialize: (b: Buffer) => unknown }>).ModelInfer;
      const garbage = Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02]);
      const outcome = await new Promise<number>((resolve) => {
        client.makeUnaryRequest(def?.path as string, () => garbage, (b: Buffer) => b, {}, (err) => resolve(err?.code ?? status.OK));
      });
      expect(outcome).not.toBe(status.OK);
      expect((await rpc(client, "ServerLive", {})).response).toEqual({ live: true });
    });
  });

  /** One element per row for every input of the `dtypes` graph, in typed contents. */
  function dtypeInputs(n: number) {
    const seq = (f: (i: number) => number) => Array.from({ length: n }, (_, i) => f(i));
    return [
      { name: "f16", datatype: "FP16", shape: [n] },
      { name: "f64", datatype: "FP64", shape: [n], contents: { fp64_contents: seq((i) => i + 0.125) } },
      { name: "i8", datatype: "INT8", shape: [n], contents: { int_contents: seq((i) => -128 + i) } },
      { name: "i16", datatype: "INT16", shape: [n], contents: { int_contents: seq((i) => -32768 + i) } },
      { name: "i32", datatype: "INT32", shape: [n], contents: { int_contents: seq((i) => 2147483647 - i) } },
      { name: "u8", datatype: "UINT8", shape: [n], contents: { uint_contents: seq((i) => 255 - i) } },
      { name: "u16", datatype: "UINT16", shape: [n], contents: { uint_contents: seq((i) => 65535 - i) } },
      { name: "u32", datatype: "UINT32", shape: [n], contents: { uint_contents: seq((i) => 4294967295 - i) } },
      { name: "u64", datatype: "UINT64", shape: [n], contents: { uint64_contents: seq((i) => i).map((i) => (2n ** 64n - 1n - BigInt(i)).toString()) } },
    ];
  }

  it("carries every datatype exactly, typed and raw (FP16 only raw; an FP16 output makes the answer raw)", async () => {
    const n = 3;
    // FP16 bits of 1.5, -2 and 65504 (the largest half).
    const halves = [0x3e00, 0xc000, 0x7bff];
    const typed = dtypeInputs(n);
    const headers = typed.map(({ name, datatype, shape }) => ({ name, datatype, shape }));
    const rawContents = typed.map((i) => {
      if (i.datatype === "FP16") return encodeRaw("FP16", halves);
      const values = Object.values(i.contents ?? {})[0] as Array<number | string>;
      return encodeRaw(i.datatype, values.map((v) => (i.datatype === "UINT64" ? BigInt(v) : Number(v))));
    });
    const raw = await infer({ model_name: "dtypes", inputs: headers, raw_input_contents: rawContents });
    const res = raw.response;
    expect(res.raw_output_contents).toHaveLength(res.outputs.length);
    const out = (name: string) => decodeRaw(res.outputs.find((o) => o.name === name)?.datatype as string, res.raw_output_contents[res.outputs.findIndex((o) => o.name === name)] as Buffer);
    expect(out("f16_out")).toEqual(halves);
    expect(out("f16_as_f32")).toEqual([1.5, -2, 65504]);
    expect(out("f64_out")).toEqual([0.125, 1.125, 2.125]);
    expect(out("i8_out")).toEqual([-128, -127, -126]);
    expect(out("i16_out")).toEqual([-32768, -32767, -32766]);
    expect(out("i32_out")).toEqual([2147483647, 2147483646, 2147483645]);
    expect(out("u8_out")).toEqual([255, 254, 253]);
    expect(out("u16_out")).toEqual([65535, 65534, 65533]);
    expect(out("u32_out")).toEqual([4294967295, 4294967294, 4294967293]);
    expect(out("u64_out")).toEqual([2n ** 64n - 1n, 2n ** 64n - 2n, 2n ** 64n - 3n]);

    // Typed inputs everywhere but FP16 would mix the two forms, which the protocol forbids.
    const mixed = await rpcError(client, "ModelInfer", { model_name: "dtypes", inputs: typed, raw_input_contents: [encodeRaw("FP16", halves)] });
    expect(mixed.code).toBe(status.INVALID_ARGUMENT);

    // Typed outputs for every datatype but FP16: asking only for those keeps contents.
    const typedOutputs = ["f64_out", "i8_out", "i16_out", "i32_out", "u8_out", "u16_out", "u32_out", "u64_out"];
    const t = (await infer({
      model_name: "dtypes",
      inputs: headers,
      raw_input_contents: rawContents,
      outputs: typedOutputs.map((name) => ({ name })),
      parameters: { binary_data_output: { bool_param: false } },
    })).response;
    expect(t.raw_output_contents).toEqual([]);
    const c = (name: string) => t.outputs.find((o) => o.name === name)?.contents;
    expect(c("f64_out")?.fp64_contents).toEqual([0.125, 1.125, 2.125]);
    expect(c("i8_out")?.int_contents).toEqual([-128, -127, -126]);
    expect(c("u32_out")?.uint_contents).toEqual([4294967295, 4294967294, 4294967293]);
    expect(c("u64_out")?.uint64_contents).toEqual(["18446744073709551615", "18446744073709551614", "18446744073709551613"]);
  });

  it("keeps int64 exact beyond 2^53, and carries BOOL and BYTES both ways", async () => {
    const big = [2n ** 62n + 1n, -(2n ** 60n) - 3n, 9007199254740993n, 0n];
    const ids = { name: "ids", datatype: "INT64", shape: [2, 2] };
    const typed = (await infer({ model_name: "int64", inputs: [{ ...ids, contents: { int64_contents: big.map(String) } }] })).response;
    expect(typed.outputs.find((o) => o.name === "same")?.contents?.int64_contents).toEqual(big.map(String));
    expect(typed.outputs.find((o) => o.name === "plus")?.contents?.int64_contents).toEqual([big[0]! + 10n, big[1]! - 2n ** 40n, big[2]! + 10n, big[3]! - 2n ** 40n].map(String));
    const raw = (await infer({ model_name: "int64", inputs: [ids], raw_input_contents: [encodeRaw("INT64", big)] })).response;
    expect(decodeRaw("INT64", raw.raw_output_contents[raw.outputs.findIndex((o) => o.name === "same")] as Buffer)).toEqual(big);

    const p = [true, false, true];
    const q = [true, true, false];
    const bools = (await infer({
      model_name: "bool",
      inputs: [{ name: "p", datatype: "BOOL", shape: [3], contents: { bool_contents: p } }, { name: "q", datatype: "BOOL", shape: [3], contents: { bool_contents: q } }],
    })).response;
    expect(outputValues(bools, "not_p")).toEqual([false, true, false]);
    expect(outputValues(bools, "p_and_q")).toEqual([true, false, false]);
    const rawBools = (await infer({
      model_name: "bool",
      inputs: [{ name: "p", datatype: "BOOL", shape: [3] }, { name: "q", datatype: "BOOL", shape: [3] }],
      raw_input_contents: [encodeRaw("BOOL", p), encodeRaw("BOOL", q)],
    })).response;
    expect(outputValues(rawBools, "p_and_q")).toEqual([true, false, false]);

    const text = ["héllo", "", "wörld ✓", "x"];
    const strings = (await infer({ model_name: "strings", inputs: [{ name: "text", datatype: "BYTES", shape: [2, 2], contents: { bytes_contents: text.map((s) => Buffer.from(s)) } }] })).response;
    expect(strings.outputs[0]).toMatchObject({ name: "echo", datatype: "BYTES", shape: ["2", "2"] });
    expect(outputValues(strings, "echo")).toEqual(text);
    const rawStrings = (await infer({ model_name: "strings", inputs: [{ name: "text", datatype: "BYTES", shape: [2, 2] }], raw_input_contents: [encodeRaw("BYTES", text)] })).response;
    expect(outputValues(rawStrings, "echo")).toEqual(text);
  });

  it("accepts a message well above gRPC's 4 MB default (40k rows), typed and raw", async () => {
    const e = expected.breast_cancer_mlp;
    const rows = 40_000;
    const input = fp32Input(e, rows);
    const def = (definition["inference.GRPCInferenceService"] as unknown as Record<string, { requestSerialize: (v: object) => Buffer }>).ModelInfer;
    const typedRequest = { model_name: "breast-cancer", inputs: [{ name: "input", datatype: "FP32", shape: input.shape, contents: { fp32_contents: input.flat } }], outputs: [{ name: "label" }] };
    expect(def?.requestSerialize(typedRequest).length).toBeGreaterThan(4 * 1024 * 1024);
    const typed = (await infer(typedRequest)).response;
    checkFixture({ ...typed, outputs: typed.outputs }, { ...e, outputs: { label: e.outputs.label as unknown[] } }, rows);
    const raw = (await infer({ model_name: "breast-cancer", inputs: [{ name: "input", datatype: "FP32", shape: input.shape }], raw_input_contents: [encodeRaw("FP32", input.flat)] })).response;
    checkFixture(raw, e, rows);
  });

  it("answers concurrent calls correctly (each its own rows, model and form)", async () => {
    const calls = Array.from({ length: 60 }, async (_, k) => {
      const [name, fixture] = FIXTURE_MODELS[k % 3] as [string, FixtureName];
      const e = expected[fixture];
      const r = k % e.inputs.length;
      const row = e.inputs[r] as number[];
      const shape = [1, ...e.input_shape.slice(1)];
      const id = `call-${k}`;
      const request = k % 2 === 0
        ? { model_name: name, id, inputs: [{ name: "input", datatype: "FP32", shape, contents: { fp32_contents: row } }] }
        : { model_name: name, id, inputs: [{ name: "input", datatype: "FP32", shape }], raw_input_contents: [encodeRaw("FP32", row)] };
      const { response } = await infer(request);
      expect(response.id).toBe(id);
      expect(response.model_name).toBe(name);
      for (const [out, want] of Object.entries(e.outputs)) {
        const got = outputValues(response, out);
        if (out === "label") expect(got).toEqual([want[r]]);
        else expect(maxAbsDiff(got, want[r])).toBeLessThanOrEqual(tolerance(e, out));
      }
    });
    await Promise.all(calls);
  });

  it("takes a request id from x-request-id metadata and returns it in the trailers", async () => {
    const e = expected.diabetes_linear;
    const md = new Metadata();
    md.set("x-request-id", "req-42");
    const { trailers } = await infer({ model_name: "diabetes", inputs: [{ name: "input", datatype: "FP32", shape: [1, 10], contents: { fp32_contents: e.inputs[0] } }] }, md);
    expect(trailer(trailers, "x-request-id")).toBe("req-42");
  });
});

describe("gRPC message limits and shutdown", { timeout: 120_000 }, () => {
  let w: World;
  let e: Expected;

  beforeAll(async () => {
    w = await createWorld({ workers: 1 });
    await w.register("breast-cancer", "breast_cancer_mlp", { columns: true });
    e = await readExpected("breast_cancer_mlp");
  });

  afterAll(async () => {
    await w?.close();
  });

  it("refuses a message above the configured limit with RESOURCE_EXHAUSTED and keeps serving", async () => {
    const grpc = createGrpcServer({ scoring: w.scoring, maxMessageBytes: 1024 * 1024 });
    const client = connect(`127.0.0.1:${await grpc.listen("127.0.0.1", 0)}`);
    try {
      const big = fp32Input(e, 10_000); // 1.2 MB of raw floats
      const err = await rpcError(client, "ModelInfer", { model_name: "breast-cancer", inputs: [{ name: "input", datatype: "FP32", shape: big.shape }], raw_input_contents: [encodeRaw("FP32", big.flat)] });
      expect(err.code).toBe(status.RESOURCE_EXHAUSTED);
      expect((await rpc(client, "ServerLive", {})).response).toEqual({ live: true });
      const small = fp32Input(e, 50);
      const ok = await rpc<InferResponse>(client, "ModelInfer", { model_name: "breast-cancer", inputs: [{ name: "input", datatype: "FP32", shape: small.shape }], raw_input_contents: [encodeRaw("FP32", small.flat)] });
      checkFixture(ok.response, e);
    } finally {
      client.close();
      await grpc.close(1000);
    }
  });

  it("lets an in-flight call finish on close, then refuses new calls", async () => {
    const grpc = createGrpcServer({ scoring: w.scoring });
    const address = `127.0.0.1:${await grpc.listen("127.0.0.1", 0)}`;
    const client = connect(address);
    try {
      await rpc(client, "ServerLive", {});
      const big = fp32Input(e, 20_000);
      const inFlight = rpc<InferResponse>(client, "ModelInfer", { model_name: "breast-cancer", inputs: [{ name: "input", datatype: "FP32", shape: big.shape }], raw_input_contents: [encodeRaw("FP32", big.flat)] });
      // Let the request reach the server before shutting down.
      await new Promise((r) => setTimeout(r, 20));
      const order: string[] = [];
      const closed = grpc.close(30_000).then(() => order.push("closed"));
      const answered = inFlight.then((r) => {
        order.push("answered");
        return r;
      });
      checkFixture((await answered).response, e, 20_000);
      await closed;
      expect(order).toEqual(["answered", "closed"]);
      const after = connect(address);
      try {
        const err = await rpcError(after, "ServerLive", {});
        expect(err.code).toBe(status.UNAVAILABLE);
      } finally {
        after.close();
      }
    } finally {
      client.close();
      await grpc.close(100);
    }
  });
});
