// Hostile input, property-based: fast-check throws malformed, oversized, deeply nested and unicode-laden payloads at
// a real server (the example models on the real worker pool, over real HTTP with the fast path on, and over gRPC
// with a client generated from the canonical proto). Whatever comes in, the answer is a 2xx or a 4xx with a JSON
// error body (never a 5xx), gRPC never answers INTERNAL or UNKNOWN, no inference worker dies, and the server still
// answers a real prediction correctly afterwards.
//
// Reproduce a failure with the seed printed in the report: FUZZ_SEED=<seed> npx vitest run test/security/fuzz.test.ts
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { status as GrpcStatus } from "@grpc/grpc-js";
import type { Client, ServiceError } from "@grpc/grpc-js";
import type { FastifyInstance } from "fastify";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { silentLogger } from "../../src/core/index.js";
import type { OnnxRuntime } from "../../src/runtime/index.js";
import { buildServer, createGrpcServer, type GrpcServer } from "../../src/serve/index.js";
import { connect, outputValues, rpc, type InferResponse } from "../grpc/client.js";
import { maxAbsDiff, readExpected, type Expected } from "../scoring/world.js";

const SEED = Number(process.env.FUZZ_SEED ?? 20_261_201);
const RUNS = Number(process.env.FUZZ_RUNS ?? 300);
/** Per family: 300 runs take a few seconds; longer hunts (FUZZ_RUNS=5000) get time in proportion. */
const TEST_TIMEOUT_MS = Math.max(60_000, RUNS * 200);
const EXAMPLES = fileURLToPath(new URL("../../examples/models/", import.meta.url));
const MODELS = ["breast-cancer", "diabetes", "digits"] as const;

// ---------------------------------------------------------------------------------------------------------------
// JSON text with what JSON.stringify cannot write: bare NaN/Infinity tokens, duplicate keys, lone surrogates kept
// as \u escapes, and nesting deeper than a recursive stringify would survive.

/** A token written as-is into the JSON text (e.g. `NaN`, `-0`, `1e999`, or broken JSON). */
class Raw {
  constructor(readonly text: string) {}
}
/** An object written with its pairs in order, keys repeated as given. */
class Pairs {
  constructor(readonly pairs: Array<[string, unknown]>) {}
}
/** `depth` nested arrays around `inner`, written without recursion. */
class Deep {
  constructor(readonly depth: number, readonly inner: unknown) {}
}

function quote(s: string): string {
  // JSON.stringify escapes lone surrogates as \udxxx (well-formed JSON.stringify), so the server sees them.
  return JSON.stringify(s);
}

function jsonText(value: unknown): string {
  if (value instanceof Raw) return value.text;
  if (value instanceof Deep) return `${"[".repeat(value.depth)}${jsonText(value.inner)}${"]".repeat(value.depth)}`;
  if (value instanceof Pairs) return `{${value.pairs.map(([k, v]) => `${quote(k)}:${jsonText(v)}`).join(",")}}`;
  if (Array.isArray(value)) return `[${value.map(jsonText).join(",")}]`;
  if (value === null || value === undefined) return "null";
  if (typeof value === "number") return Object.is(value, -0) ? "-0" : Number.isFinite(value) ? String(value) : "null";
  if (typeof value === "string") return quote(value);
  if (typeof value === "boolean") return String(value);
  if (typeof value === "object") return `{${Object.entries(value).map(([k, v]) => `${quote(k)}:${jsonText(v)}`).join(",")}}`;
  return "null";
}

/**
 * A URL path segment: percent-encoded UTF-8, except lone surrogates, which go out as the (invalid) UTF-8 bytes of
 * their code unit, so the server meets percent-escapes that do not decode.
 */
function pathSegment(s: string): string {
  let out = "";
  for (const ch of s) {
    const code = ch.codePointAt(0) as number;
    if (code >= 0xd800 && code <= 0xdfff) out += `%${(0xe0 | (code >> 12)).toString(16)}%${(0x80 | ((code >> 6) & 0x3f)).toString(16)}%${(0x80 | (code & 0x3f)).toString(16)}`.toUpperCase();
    else out += encodeURIComponent(ch);
  }
  return out;
}

/** A short, printable description of a generated case for failure messages. */
function describeCase(c: unknown): string {
  const text = typeof c === "string" ? c : (() => {
    try {
      return jsonText(c);
    } catch {
      return String(c);
    }
  })();
  return text.length > 400 ? `${text.slice(0, 400)}... (${text.length} chars)` : text;
}

// ---------------------------------------------------------------------------------------------------------------
// Arbitraries

const DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES", "BF16"];
const nastyStrings = fc.constantFrom(
  "", "\u0000", "a\u0000b", "\uD800", "\uDFFF", "x\uDC00y", "\u202Eevil\u202C", "\u200B", "\uFEFF", "\u{1F600}",
  "input\u200B", "inp\u0000ut", "__proto__", "constructor", "prototype", "../../etc/passwd", "%00", "%2e%2e%2f", "@", "@@",
  "a".repeat(5000), "مرحبا", "NaN", "Infinity", "-Infinity", "-0", "1e999", "0x10", " 1", "1,5", "true", "null",
);
const anyString = fc.oneof(nastyStrings, fc.string({ unit: "binary", maxLength: 40 }), fc.string({ maxLength: 20 }));
const datatype = fc.oneof(fc.constantFrom(...DATATYPES), fc.constantFrom("fp32", "FP128", "FLOAT", "STRING", "", "INT"), anyString, fc.constant(42), fc.constant(null));
const specialNumberTokens = fc.constantFrom("NaN", "Infinity", "-Infinity", "-0", "1e999", "-1e999", "1e-400", "123456789012345678901234567890", "0.0000", "01", "+1", ".5", "1.", "--1", "0x1F");
/** A value that may sit where a number goes. */
const numberish: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: fc.double() },
  { weight: 3, arbitrary: fc.integer() },
  { weight: 1, arbitrary: fc.constantFrom(0, -0, 1, -1, 2 ** 53, -(2 ** 53), 2 ** 63, 1e308, -1e308, 5e-324, 2 ** 31, 2 ** 32) },
  { weight: 1, arbitrary: specialNumberTokens.map((t) => new Raw(t)) },
  { weight: 1, arbitrary: fc.constantFrom("NaN", "Infinity", "-Infinity", "-0", "1.5", "abc", "") },
  { weight: 1, arbitrary: anyString },
  { weight: 1, arbitrary: fc.constantFrom(true, false, null, {}, [], [1], { a: 1 }) },
);
const shapeDim = fc.oneof(fc.integer({ min: -3, max: 64 }), fc.constantFrom(0, -1, 2 ** 31, 2 ** 32, 2 ** 53, 1e308, 1.5, -0), fc.constant("3"), fc.constant(null), fc.constant(new Raw("NaN")));
const shape: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.array(shapeDim, { maxLength: 6 }) },
  { weight: 2, arbitrary: fc.tuple(fc.integer({ min: 0, max: 8 }), fc.constantFrom(30, 10, 1, 64)).map(([r, c]) => [r, c]) },
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 0, max: 4 }), fc.constant(1), fc.constant(8), fc.constant(8)).map((t) => [...t]) },
  { weight: 1, arbitrary: fc.constantFrom(null, 30, "30", {}, [[1, 30]], [2 ** 40, 2 ** 40], [1e6, 1e6, 1e6]) },
);
/** Tensor data: flat (right-ish or wrong length), nested, ragged, deep, huge or not an array. */
const tensorData: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.array(numberish, { maxLength: 300 }) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 8 }).chain((rows) => fc.array(fc.array(numberish, { minLength: 29, maxLength: 31 }), { minLength: rows, maxLength: rows })) },
  { weight: 1, arbitrary: fc.array(fc.array(numberish, { maxLength: 40 }), { maxLength: 5 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 200_000 }).map((depth) => new Deep(depth, 1)) },
  { weight: 1, arbitrary: fc.integer({ min: 10_000, max: 120_000 }).map((n) => new Raw(`[${new Array<string>(n).fill("0.5").join(",")}]`)) },
  { weight: 1, arbitrary: fc.array(anyString, { maxLength: 8 }) },
  { weight: 1, arbitrary: fc.constantFrom(null, 1, "data", {}, { "0": 1 }, true) },
);
/** Mostly the valid thing, sometimes something hostile in its place. */
function mostly<T>(valid: fc.Arbitrary<T>, hostile: fc.Arbitrary<unknown>, validWeight = 6): fc.Arbitrary<unknown> {
  return fc.oneof({ weight: validWeight, arbitrary: valid }, { weight: 1, arbitrary: hostile });
}
const finiteValue = fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 });
/** Breast-cancer rows (30 finite values each), `rows` of them. */
const rowsOf = (rows: number): fc.Arbitrary<number[][]> => fc.array(fc.array(finiteValue, { minLength: 30, maxLength: 30 }), { minLength: rows, maxLength: rows });
/** One V2 input, valid for breast-cancer in each field unless a field was swapped for something hostile. */
const nearValidV2Input: fc.Arbitrary<unknown> = fc.integer({ min: 0, max: 6 }).chain((rows) =>
  fc
    .record({
      name: mostly(fc.constant("input"), anyString),
      shape: mostly(fc.constant([rows, 30]), shape),
      datatype: mostly(fc.constant("FP32"), datatype),
      data: mostly(rowsOf(rows).map((r) => r.flat()), tensorData),
    })
    .map((r) => new Pairs(Object.entries(r))),
);
const parameters: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(undefined),
  fc.dictionary(fc.oneof(nastyStrings, fc.constantFrom("binary_data_size", "binary_data_output", "content_type", "timeout_ms", "classification", "__proto__")), fc.oneof(numberish, fc.constant(new Pairs([["__proto__", { polluted: true }]])))),
  fc.constantFrom(null, 1, "x", []),
);
const v2Input: fc.Arbitrary<unknown> = fc
  .record(
    {
      name: fc.oneof({ weight: 4, arbitrary: fc.constantFrom("input", "image") }, { weight: 2, arbitrary: anyString }, { weight: 1, arbitrary: fc.constantFrom(null, 7, [], {}) }),
      shape,
      datatype,
      data: tensorData,
      parameters,
      extra: anyString,
    },
    { requiredKeys: [] },
  )
  .map((r) => {
    const pairs = Object.entries(r).filter(([, v]) => v !== undefined) as Array<[string, unknown]>;
    return new Pairs(pairs);
  });
const v2Body: fc.Arbitrary<unknown> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .tuple(
        fc.oneof({ weight: 4, arbitrary: fc.array(v2Input, { maxLength: 3 }) }, { weight: 4, arbitrary: nearValidV2Input.map((i) => [i]) }, { weight: 1, arbitrary: fc.constantFrom(null, {}, "inputs", 1) }),
        fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.array(fc.record({ name: anyString, parameters }, { requiredKeys: [] }), { maxLength: 3 }) }),
        fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: anyString }),
        parameters,
        fc.nat(9),
      )
      .map(([inputs, outputs, id, params, dice]) => {
        const duplicate = dice === 0;
        const pairs: Array<[string, unknown]> = [["inputs", inputs]];
        if (duplicate) pairs.push(["inputs", [{ name: "input", shape: [1, 30], datatype: "FP32", data: new Array<number>(30).fill(1) }]]);
        if (outputs !== undefined) pairs.push(["outputs", outputs]);
        if (id !== undefined) pairs.push(["id", id]);
        if (params !== undefined) pairs.push(["parameters", params]);
        return new Pairs(pairs);
      }),
  },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 4 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 300_000 }).map((depth) => new Deep(depth, { inputs: [] })) },
  { weight: 1, arbitrary: fc.constantFrom(new Raw(""), new Raw("{"), new Raw("{\"inputs\":[{]}"), new Raw("\u0000"), new Raw("[]"), new Raw("null"), new Raw("\"x\""), new Raw("{\"inputs\":NaN}"), new Raw("{\"__proto__\":{\"inputs\":[]}}")) },
);
const modelPath = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...MODELS) },
  { weight: 1, arbitrary: fc.constantFrom("breast-cancer@production", "breast-cancer@1", "breast-cancer@99", "nope", "digits@latest") },
  { weight: 1, arbitrary: anyString },
);
const v2Request = fc.record({
  model: mostly(fc.constant("breast-cancer"), modelPath, 2) as fc.Arbitrary<string>,
  version: fc.oneof({ weight: 6, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom("1", "2", "-1", "0", "1e3", "99999999999999999999", "production") }, { weight: 1, arbitrary: anyString }),
  body: v2Body,
});

const columnNames = fc.oneof(
  fc.constant(undefined),
  fc.array(fc.oneof(fc.constantFrom("mean radius", "age", "bmi", "pixel_0_0", "worst area"), anyString), { maxLength: 40 }),
  fc.constantFrom(null, "mean radius", {}, 1),
);
const BC_COLUMNS = (JSON.parse(fs.readFileSync(path.join(EXAMPLES, "breast-cancer", "input_example.json"), "utf8")) as { dataframe_split: { columns: string[] } }).dataframe_split.columns;
/** A valid breast-cancer body in one of MLflow's four shapes, with one part sometimes swapped for something hostile. */
const nearValidMlflow: fc.Arbitrary<unknown> = fc.integer({ min: 1, max: 6 }).chain((rows) =>
  fc.oneof(
    fc.record({ columns: mostly(fc.constant(BC_COLUMNS), columnNames), data: mostly(rowsOf(rows), tensorData) }).map((split) => ({ dataframe_split: split })),
    mostly(rowsOf(rows).map((r) => r.map((row) => Object.fromEntries(BC_COLUMNS.map((c, i) => [c, row[i]])))), fc.array(fc.dictionary(anyString, numberish, { maxKeys: 4 }), { maxLength: 3 })).map((records) => ({ dataframe_records: records })),
    mostly(rowsOf(rows), tensorData).map((instances) => ({ instances })),
    mostly(rowsOf(rows), tensorData).map((inputs) => ({ inputs })),
  ),
);
const mlflowBody: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: nearValidMlflow },
  fc.record({ columns: columnNames, data: tensorData, index: fc.option(fc.array(numberish, { maxLength: 5 }), { nil: undefined }) }, { requiredKeys: [] }).map((split) => ({ dataframe_split: split })),
  fc.oneof(fc.array(fc.dictionary(fc.oneof(fc.constantFrom("mean radius", "age", "bmi", "s1"), anyString), numberish, { maxKeys: 12 }), { maxLength: 6 }), fc.constantFrom(null, {}, "x")).map((records) => ({ dataframe_records: records })),
  tensorData.map((instances) => ({ instances })),
  fc.oneof(tensorData, fc.dictionary(anyString, tensorData, { maxKeys: 3 })).map((inputs) => ({ inputs })),
  fc.tuple(tensorData, tensorData).map(([a, b]) => new Pairs([["instances", a], ["inputs", b]])),
  fc.tuple(tensorData, columnNames).map(([data, columns]) => new Pairs([["dataframe_split", { columns, data }], ["dataframe_split", { data: [[1]] }], ["params", { x: 1 }]])),
  fc.jsonValue({ maxDepth: 4 }),
  fc.integer({ min: 1, max: 300_000 }).map((depth) => ({ instances: new Deep(depth, 0) })),
);
const mlflowRequest = fc.record({
  url: fc.oneof(fc.constant("/invocations"), modelPath.map((m) => `/v1/models/${pathSegment(m)}/invocations`)),
  contentType: mostly(fc.constant("application/json"), fc.constantFrom("application/json; charset=utf-8", "application/json; format=pandas-split", "application/json; format=pandas-records", "text/plain", "")) as fc.Arbitrary<string>,
  body: mlflowBody,
});

const csvCell = fc.oneof(
  { weight: 6, arbitrary: fc.double().map(String) },
  { weight: 1, arbitrary: fc.constantFrom("", "\"", "\"\"", "\"a,b\"", "\"unterminated", "NaN", "Infinity", "-0", "1e999", "a\nb", "\r", "\u0000", "\uFEFF1", "0x10", " 1 ", "\"1\"") },
  { weight: 1, arbitrary: anyString },
);
const csvText = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 6 }).chain((rows) => fc.tuple(mostly(fc.constant(BC_COLUMNS.map((c) => (c.includes(" ") ? c : c)).join(",")), anyString), fc.array(fc.array(mostly(finiteValue.map(String), csvCell, 40), { minLength: 30, maxLength: 30 }), { minLength: rows, maxLength: rows })).map(([header, lines]) => [header, ...lines.map((l) => l.join(","))].join("\n"))) },
  fc.tuple(fc.oneof(fc.constant("mean radius,mean texture"), fc.array(anyString, { maxLength: 31 }).map((h) => h.join(","))), fc.array(fc.array(csvCell, { maxLength: 33 }), { maxLength: 12 }), fc.constantFrom("\n", "\r\n", "\r"))
    .map(([header, rows, eol]) => [header, ...rows.map((r) => r.join(","))].join(eol)),
  fc.array(fc.array(csvCell, { minLength: 29, maxLength: 31 }), { minLength: 1, maxLength: 8 }).map((rows) => rows.map((r) => r.join(",")).join("\n")),
);
const csvRequest = fc.record({
  url: fc.oneof(fc.constant("/invocations"), modelPath.map((m) => `/v1/models/${pathSegment(m)}/invocations`)),
  contentType: mostly(fc.constant("text/csv"), fc.constantFrom("text/csv; charset=utf-8", "application/csv", "text/csv; charset=latin1", "text/plain")) as fc.Arbitrary<string>,
  body: fc.oneof(
    { weight: 4, arbitrary: csvText.map((t) => Buffer.from(t, "utf8")) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 4000 }).map((b) => Buffer.from(b)) },
    { weight: 1, arbitrary: fc.tuple(csvText, fc.uint8Array({ maxLength: 64 })).map(([t, junk]) => Buffer.concat([Buffer.from(t), Buffer.from(junk)])) },
  ),
});

const ELEMENT_SIZE: Record<string, number> = { BOOL: 1, UINT8: 1, INT8: 1, UINT16: 2, INT16: 2, FP16: 2, BF16: 2, UINT32: 4, INT32: 4, FP32: 4, UINT64: 8, INT64: 8, FP64: 8 };
/** A binary-extension body: JSON header (right or wrong), blobs of right or wrong sizes, a right or wrong length header. */
const binaryInput = fc.integer({ min: 0, max: 6 }).chain((rows) =>
  fc.record({
    name: mostly(fc.constant("input"), fc.oneof(fc.constant("image"), anyString)),
    datatype: mostly(fc.constant("FP32"), fc.oneof(fc.constantFrom(...DATATYPES), datatype)),
    shape: mostly(fc.constant([rows, 30]), shape),
    rows: fc.constant(rows),
    declared: mostly(fc.constant("right"), fc.oneof(fc.constant("none"), fc.integer({ min: -5, max: 10_000 }), fc.constantFrom(2 ** 40, 1.5, "12", null))),
    actualDelta: mostly(fc.constant(0), fc.integer({ min: -130, max: 130 }), 4) as fc.Arbitrary<number>,
    junk: fc.boolean(),
    withData: mostly(fc.constant(false), fc.constant(true)) as fc.Arbitrary<boolean>,
  }),
);
/** A binary-extension body: JSON header (right or wrong), blobs of right or wrong sizes, a right or wrong length header. */
const binaryRequest = fc
  .record({
    model: mostly(fc.constant("breast-cancer"), modelPath, 2) as fc.Arbitrary<string>,
    inputs: fc.oneof({ weight: 4, arbitrary: binaryInput.map((i) => [i]) }, { weight: 1, arbitrary: fc.array(binaryInput, { maxLength: 3 }) }),
    headerLength: fc.oneof({ weight: 8, arbitrary: fc.constant("right") }, { weight: 2, arbitrary: fc.integer({ min: -10, max: 100_000 }).map(String) }, { weight: 1, arbitrary: fc.constantFrom("", "abc", "1e3", "0x10", " 12", "-0", "99999999999999999999", "NaN", "12, 13") }, { weight: 1, arbitrary: fc.constant("absent") }),
    contentType: mostly(fc.constant("application/octet-stream"), fc.constantFrom("application/json", "application/vnd.sagemaker-triton.binary+json;json-header-size=0", "application/octet-stream; charset=utf-8", "text/csv")) as fc.Arbitrary<string>,
    outputBinary: fc.option(fc.oneof(fc.boolean(), numberish), { nil: undefined }),
    truncate: mostly(fc.constant(0), fc.integer({ min: 1, max: 200 }), 4) as fc.Arbitrary<number>,
    tail: mostly(fc.constant(new Uint8Array(0)), fc.uint8Array({ maxLength: 16 }), 4) as fc.Arbitrary<Uint8Array>,
  })
  .map((c) => {
    const blobs: Buffer[] = [];
    const inputs = c.inputs.map((i) => {
      const size = typeof i.datatype === "string" && Object.hasOwn(ELEMENT_SIZE, i.datatype) ? (ELEMENT_SIZE[i.datatype] as number) : 3;
      const right = i.rows * 30 * size;
      const actual = Math.max(0, right + i.actualDelta);
      const blob = Buffer.alloc(actual);
      if (i.junk) for (let k = 0; k < actual; k++) blob[k] = (k * 131 + 7) & 0xff;
      else for (let k = 0; k + 4 <= actual; k += 4) blob.writeFloatLE(0.5, k);
      blobs.push(blob);
      const params = i.declared === "none" ? undefined : { binary_data_size: i.declared === "right" ? actual : i.declared };
      return { name: i.name, datatype: i.datatype, shape: i.shape, ...(params === undefined ? {} : { parameters: params }), ...(i.withData ? { data: [1, 2, 3] } : {}) };
    });
    const header = Buffer.from(jsonText({ inputs, ...(c.outputBinary === undefined ? {} : { parameters: { binary_data_output: c.outputBinary } }) }), "utf8");
    let body = Buffer.concat([header, ...blobs, Buffer.from(c.tail)]);
    if (c.truncate > 0) body = body.subarray(0, Math.max(0, body.length - c.truncate));
    const headers: Record<string, string> = { "content-type": c.contentType };
    if (c.headerLength === "right") headers["inference-header-content-length"] = String(header.length);
    else if (c.headerLength !== "absent") headers["inference-header-content-length"] = c.headerLength;
    return { model: c.model, headers, body };
  });

// gRPC: proto3 messages built by the proto-loader client; int64 fields given as decimal strings (negatives, zeros, huge).
const grpcDim = fc.oneof(fc.integer({ min: -5, max: 64 }).map(String), fc.constantFrom("0", "-1", "30", "2147483648", "4294967296", "9007199254740993", "9223372036854775807", "-9223372036854775808"));
const grpcContents = fc.oneof(
  fc.constant(undefined),
  fc.array(fc.oneof(fc.double(), fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, -0, 3.4e38, 1e308)), { maxLength: 200 }).map((v) => ({ fp32_contents: v })),
  fc.array(fc.double(), { maxLength: 100 }).map((v) => ({ fp64_contents: v })),
  fc.array(fc.integer(), { maxLength: 100 }).map((v) => ({ int_contents: v })),
  fc.array(fc.constantFrom("0", "-1", "9223372036854775807", "-9223372036854775808", "42"), { maxLength: 100 }).map((v) => ({ int64_contents: v })),
  fc.array(fc.boolean(), { maxLength: 100 }).map((v) => ({ bool_contents: v })),
  fc.array(fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)), { maxLength: 5 }).map((v) => ({ bytes_contents: v })),
  fc.tuple(fc.array(fc.double(), { maxLength: 60 }), fc.array(fc.integer(), { maxLength: 60 })).map(([f, i]) => ({ fp32_contents: f, int_contents: i })),
);
const grpcParams = fc.option(
  fc.dictionary(fc.oneof(nastyStrings, fc.constantFrom("timeout_ms", "binary_data_size", "content_type")), fc.oneof(fc.boolean().map((b) => ({ bool_param: b })), fc.constantFrom("-1", "0", "9223372036854775807").map((v) => ({ int64_param: v })), anyString.map((s) => ({ string_param: s })), fc.double().map((d) => ({ double_param: d })))),
  { nil: undefined },
);
const grpcInput = fc.integer({ min: 0, max: 6 }).chain((rows) =>
  fc.record(
    {
      name: mostly(fc.constant("input"), fc.oneof(fc.constant("image"), anyString)),
      datatype: mostly(fc.constant("FP32"), fc.oneof(fc.constantFrom(...DATATYPES), fc.constantFrom("fp32", "", "FP128"), anyString)),
      shape: mostly(fc.constant([String(rows), "30"]), fc.array(grpcDim, { maxLength: 5 })),
      contents: mostly(fc.array(finiteValue, { minLength: rows * 30, maxLength: rows * 30 }).map((v) => ({ fp32_contents: v })), grpcContents, 2),
      parameters: grpcParams,
    },
    { requiredKeys: ["name", "datatype", "shape"] },
  ),
);
const grpcRequest = fc
  .record({
    model_name: mostly(fc.constant("breast-cancer"), modelPath, 2),
    model_version: mostly(fc.constant(""), fc.oneof(fc.constantFrom("1", "2", "-1", "production", "1e3"), anyString)),
    id: fc.oneof(fc.constant(""), anyString),
    inputs: fc.oneof({ weight: 4, arbitrary: grpcInput.map((i) => [i]) }, { weight: 1, arbitrary: fc.array(grpcInput, { maxLength: 3 }) }),
    outputs: fc.oneof({ weight: 3, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(fc.record({ name: fc.oneof(fc.constantFrom("probabilities", "label", "class", "prediction"), anyString) }), { maxLength: 3 }) }),
    raw: fc.oneof(
      { weight: 4, arbitrary: fc.constant([] as Buffer[]) },
      { weight: 2, arbitrary: fc.array(fc.integer({ min: 0, max: 6 * 30 * 8 + 9 }).map((n) => Buffer.alloc(n, 0x3f)), { maxLength: 4 }) },
      { weight: 1, arbitrary: fc.array(fc.uint8Array({ maxLength: 400 }).map((b) => Buffer.from(b)), { maxLength: 3 }) },
    ),
    parameters: grpcParams,
  })
  .map((r) => ({ model_name: r.model_name, model_version: r.model_version, id: r.id, inputs: r.inputs, outputs: r.outputs, raw_input_contents: r.raw as Buffer[], ...(r.parameters === undefined ? {} : { parameters: r.parameters }) }));

// ---------------------------------------------------------------------------------------------------------------

interface HttpAnswer {
  status: number;
  contentType: string;
  text: string;
}

const home = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-fuzz-"));
let app: Mlship;
let server: FastifyInstance;
let base: string;
/** The same app without the raw-HTTP fast path: every other request goes through Fastify's own JSON pipeline. */
let plain: FastifyInstance;
let plainBase: string;
let sent = 0;
let grpc: GrpcServer;
let client: Client;
let expected: Expected;
let restartsBefore = 0;

function workerRestarts(): number {
  return (app.runtimes.onnx as OnnxRuntime).stats().workers.reduce((n, w) => n + w.restarts, 0);
}

/** Answers of the running family per status and error code: each family must reach past the first checks. */
let seen = new Map<string, number>();
function tally(key: string): void {
  seen.set(key, (seen.get(key) ?? 0) + 1);
}

/** Prints what a family got and checks it reached the model (some successes) and many distinct refusals. */
function checkReach(family: string, minSuccesses: number, minErrorKinds: number): void {
  const summary = [...seen.entries()].sort((a, b) => b[1] - a[1]);
  seen = new Map();
  console.info(`${family}: ${summary.map(([k, n]) => `${k} x${n}`).join(", ")}`);
  const successes = summary.filter(([k]) => /^(2\d\d|OK)/.test(k)).reduce((n, [, c]) => n + c, 0);
  expect(successes, family).toBeGreaterThanOrEqual(minSuccesses);
  expect(summary.filter(([k]) => !/^(2\d\d|OK)/.test(k)).length, family).toBeGreaterThanOrEqual(minErrorKinds);
}

async function send(url: string, body: Buffer | string, headers: Record<string, string>): Promise<HttpAnswer> {
  const res = await fetch(`${sent++ % 2 === 0 ? base : plainBase}${url}`, { method: "POST", body, headers });
  const answer = { status: res.status, contentType: res.headers.get("content-type") ?? "", text: await res.text() };
  let code = "";
  if (res.status >= 400) {
    try {
      const body = JSON.parse(answer.text) as { code?: string; mlship_code?: string };
      code = ` ${body.mlship_code ?? body.code ?? ""}`;
    } catch {
      code = " (not JSON)";
    }
  }
  tally(`${res.status}${code}`);
  return answer;
}

/** The property every REST answer must have. `mlflow`: the MLflow error body, else the V2/native one. */
function checkAnswer(answer: HttpAnswer, mlflow: boolean, input: unknown): void {
  const context = `${answer.status} ${answer.text.slice(0, 300)}\nfor: ${describeCase(input)}`;
  expect(answer.status >= 200 && answer.status < 300 || answer.status >= 400 && answer.status < 500, context).toBe(true);
  if (answer.status < 400) return;
  expect(answer.contentType, context).toMatch(/^application\/json/);
  const body = JSON.parse(answer.text) as Record<string, unknown>;
  if (mlflow) {
    expect(typeof body.error_code, context).toBe("string");
    expect(typeof body.message, context).toBe("string");
    expect(body.mlship_code, context).toMatch(/^MLSHIP_ERR_/);
  } else {
    expect(typeof body.error, context).toBe("string");
    expect(body.code, context).toMatch(/^MLSHIP_ERR_/);
  }
  // A bad input names the field at fault; a body that does not parse, an unknown model or a wrong media type
  // has no field to name.
  const code = (mlflow ? body.mlship_code : body.code) as string;
  if (answer.status === 400 && !["MLSHIP_ERR_INPUT_JSON"].includes(code)) expect(typeof body.field, context).toBe("string");
}

/** Health, then a real prediction of the fixture's first rows, checked against expected.json. */
async function stillServes(): Promise<void> {
  const ready = await fetch(`${base}/v2/health/ready`);
  expect(ready.status).toBe(200);
  const rows = expected.inputs.slice(0, 5);
  const res = await send("/v2/models/breast-cancer/infer", JSON.stringify({ inputs: [{ name: "input", shape: [5, 30], datatype: "FP32", data: rows.flat() }] }), { "content-type": "application/json" });
  expect(res.status, res.text).toBe(200);
  const outputs = (JSON.parse(res.text) as { outputs: Array<{ name: string; data: unknown[] }> }).outputs;
  const probabilities = outputs.find((o) => o.name === "probabilities")?.data;
  expect(maxAbsDiff(probabilities, expected.outputs.probabilities?.slice(0, 5))).toBeLessThanOrEqual(1e-5);
  expect(workerRestarts()).toBe(restartsBefore);
}

async function grpcStillServes(): Promise<void> {
  const rows = expected.inputs.slice(0, 5);
  const reply = await rpc<InferResponse>(client, "ModelInfer", { model_name: "breast-cancer", inputs: [{ name: "input", datatype: "FP32", shape: [5, 30], contents: { fp32_contents: rows.flat() } }] });
  expect(maxAbsDiff(outputValues(reply.response, "probabilities"), expected.outputs.probabilities?.slice(0, 5))).toBeLessThanOrEqual(1e-5);
  const ready = await rpc<{ ready: boolean }>(client, "ServerReady", {});
  expect(ready.response.ready).toBe(true);
}

/** fast-check's settings: a fixed seed (printed with any failure, with the shrunk counterexample). */
const settings = { numRuns: RUNS, seed: SEED, endOnFailure: true } as const;

beforeAll(async () => {
  app = await createMlship(defaultConfig({ home, "runtime.workers": 2, "cache.backend": "off", "log.level": "silent" }), { logger: silentLogger() });
  for (const name of MODELS) await registerModel(app, path.join(EXAMPLES, name), { name, alias: "production" });
  for (const name of MODELS) await app.scoring.load(name);
  expected = await readExpected("breast_cancer_mlp");
  server = buildServer({ scoring: app.scoring, registry: app.registry, logger: false, defaultModel: "breast-cancer@production" });
  await server.listen({ host: "127.0.0.1", port: 0 });
  const address = server.server.address();
  if (address === null || typeof address === "string") throw new Error("no TCP address");
  base = `http://127.0.0.1:${address.port}`;
  plain = buildServer({ scoring: app.scoring, registry: app.registry, logger: false, defaultModel: "breast-cancer@production", fastPath: false, metrics: false });
  await plain.listen({ host: "127.0.0.1", port: 0 });
  plainBase = `http://127.0.0.1:${(plain.server.address() as { port: number }).port}`;
  grpc = createGrpcServer({ scoring: app.scoring, registry: app.registry });
  client = connect(`127.0.0.1:${await grpc.listen("127.0.0.1", 0)}`);
  restartsBefore = workerRestarts();
}, 60_000);

afterAll(async () => {
  client?.close();
  await grpc?.close(1000);
  await server?.close();
  await plain?.close();
  await app?.close();
  fs.rmSync(home, { recursive: true, force: true });
});

describe(`hostile input (seed ${SEED}, ${RUNS} runs per family)`, () => {
  it("V2 JSON infer: wrong/missing/huge shapes, every datatype, wrong lengths, NaN/Infinity, unicode, duplicate keys, deep nesting", async () => {
    await fc.assert(
      fc.asyncProperty(v2Request, async (c) => {
        const url = c.version === undefined ? `/v2/models/${pathSegment(c.model)}/infer` : `/v2/models/${pathSegment(c.model)}/versions/${pathSegment(c.version)}/infer`;
        checkAnswer(await send(url, jsonText(c.body), { "content-type": "application/json" }), false, c);
      }),
      settings,
    );
    checkReach("V2 JSON", 1, 5);
    await stillServes();
  }, TEST_TIMEOUT_MS);

  it("MLflow JSON: dataframe_split, dataframe_records, instances and inputs, malformed every way", async () => {
    await fc.assert(
      fc.asyncProperty(mlflowRequest, async (c) => {
        checkAnswer(await send(c.url, jsonText(c.body), { "content-type": c.contentType }), true, c);
      }),
      settings,
    );
    checkReach("MLflow JSON", 1, 5);
    await stillServes();
  }, TEST_TIMEOUT_MS);

  it("CSV: ragged rows, quotes, line endings and binary junk", async () => {
    await fc.assert(
      fc.asyncProperty(csvRequest, async (c) => {
        checkAnswer(await send(c.url, c.body, { "content-type": c.contentType }), true, { url: c.url, contentType: c.contentType, body: c.body.toString("latin1") });
      }),
      settings,
    );
    checkReach("CSV", 1, 5);
    await stillServes();
  }, TEST_TIMEOUT_MS);

  it("binary tensors: wrong Inference-Header-Content-Length, truncated tensors, sizes not a multiple of the element size", async () => {
    await fc.assert(
      fc.asyncProperty(binaryRequest, async (c) => {
        checkAnswer(await send(`/v2/models/${pathSegment(c.model)}/infer`, c.body, c.headers), false, { headers: c.headers, body: c.body.toString("latin1") });
      }),
      settings,
    );
    checkReach("binary tensors", 1, 5);
    await stillServes();
  }, TEST_TIMEOUT_MS);

  it("gRPC ModelInfer: mismatched raw_input_contents, wrong datatypes, negative/zero/huge shapes, unknown models", async () => {
    await fc.assert(
      fc.asyncProperty(grpcRequest, async (request) => {
        try {
          await rpc<InferResponse>(client, "ModelInfer", request);
          tally("OK");
        } catch (err) {
          const e = err as ServiceError;
          tally(`${GrpcStatus[e.code]} ${String(e.metadata.get("mlship-error-code")[0])}`);
          const context = `${e.code} ${e.details}\nfor: ${describeCase({ ...request, raw_input_contents: request.raw_input_contents.map((b) => b.length) })}`;
          expect([GrpcStatus.INTERNAL, GrpcStatus.UNKNOWN], context).not.toContain(e.code);
          expect(e.metadata.get("mlship-error-code")[0], context).toMatch(/^MLSHIP_ERR_/);
        }
      }),
      settings,
    );
    checkReach("gRPC", 1, 5);
    await grpcStillServes();
    await stillServes();
  }, TEST_TIMEOUT_MS);

  // Counterexamples the fuzzer found, kept as plain regression tests.
  it("regression: a model name longer than Fastify's default 100-character path parameter is served on every route", async () => {
    const longName = `m${"x".repeat(149)}`;
    await registerModel(app, path.join(EXAMPLES, "breast-cancer"), { name: longName });
    const metadata = await fetch(`${plainBase}/v2/models/${longName}`);
    expect(metadata.status).toBe(200);
    const csv = await send(`/v1/models/${longName}/invocations`, `${BC_COLUMNS.join(",")}\n${(expected.inputs[0] as number[]).join(",")}\n`, { "content-type": "text/csv" });
    expect(csv.status, csv.text).toBe(200);
    const blob = Buffer.from(Float32Array.from(expected.inputs[0] as number[]).buffer);
    const header = Buffer.from(JSON.stringify({ inputs: [{ name: "input", shape: [1, 30], datatype: "FP32", parameters: { binary_data_size: blob.length } }] }));
    const binary = await send(`/v2/models/${longName}/infer`, Buffer.concat([header, blob]), { "content-type": "application/octet-stream", "inference-header-content-length": String(header.length) });
    expect(binary.status, binary.text).toBe(200);
  });

  it("regression: a path segment past Fastify's limit is a 400 naming the url (it was a 400 without a field)", async () => {
    const url = `/v2/models/${"a".repeat(5000)}/infer`;
    for (const b of [base, plainBase]) {
      const res = await fetch(`${b}${url}`, { method: "POST", body: "{}", headers: { "content-type": "application/octet-stream", "inference-header-content-length": "2" } });
      expect(res.status).toBe(400);
      const body = (await res.json()) as { code: string; field?: string };
      expect(body.code).toBe("MLSHIP_ERR_INPUT_INVALID");
      expect(body.field).toBe("url");
    }
  });
});
