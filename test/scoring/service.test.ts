import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MlshipError } from "../../src/core/index.js";
import type { Tensor } from "../../src/core/index.js";
import { createScoringService, tensorValues } from "../../src/scoring/index.js";
import type { ScoringEvent, ScoringInput } from "../../src/scoring/index.js";
import type { Registry } from "../../src/registry/index.js";
import { createOnnxRuntime } from "../../src/runtime/index.js";
import { createWorld, DIGITS_IMAGE_STEP, maxAbsDiff, readCsv, readExpected, waitFor } from "./world.js";
import type { World } from "./world.js";

async function rejection(promise: Promise<unknown>): Promise<MlshipError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(MlshipError);
    return err as MlshipError;
  }
  throw new Error("expected a rejection");
}

function floats(t: Tensor | undefined): number[] {
  expect(t).toBeDefined();
  return tensorValues(t as Tensor) as number[];
}

describe("scoring service on the real registry and runtime", () => {
  let w: World;

  beforeAll(async () => {
    w = await createWorld({ refreshMs: 200 });
    await w.register("breast-cancer", "breast_cancer_mlp", { columns: true });
    await w.register("diabetes", "diabetes_linear", { columns: true, labelColumn: "target" });
    await w.register("digits", "digits_cnn", { image: DIGITS_IMAGE_STEP });
    await w.registerGraph("add2", "add2");
    await w.registerGraph("int64", "int64");
    await w.registerGraph("bool", "bool");
    await w.registerGraph("strings", "string");
    await w.registerGraph("dtypes", "dtypes");
    await w.registerGraph("ragged", "ragged");
  });

  afterAll(async () => {
    await w?.close();
  });

  it("loads a version once: concurrent callers share the load", async () => {
    const active = await Promise.all(Array.from({ length: 12 }, () => w.scoring.load("add2")));
    const first = active[0];
    expect(first?.key).toMatch(/^add2@1#[0-9a-f]+$/);
    for (const a of active) expect(a.loaded).toBe(first?.loaded);
    expect(w.scoring.loadedModels().filter((m) => m.model === "add2")).toHaveLength(1);
    expect(w.runtime.stats().models).toContain(first?.key);
  });

  it("matches expected.json for every fixture from records and from typed tensors", async () => {
    for (const [name, fixture, label] of [
      ["breast-cancer", "breast_cancer_mlp", "label"],
      ["diabetes", "diabetes_linear", "target"],
    ] as const) {
      const expected = await readExpected(fixture);
      const { header, rows } = await readCsv(fixture);
      const records = rows.slice(0, 50).map((r) => {
        const rec: Record<string, unknown> = {};
        header.forEach((h, i) => {
          if (h !== label) rec[h] = Number(r[i]);
        });
        rec.extra_column_is_ignored = "x";
        return rec;
      });
      const fromRecords = await w.scoring.score(name, { kind: "records", records });
      const tensor: Tensor = { dtype: "float32", shape: expected.input_shape, data: Float32Array.from(expected.inputs.flat()) };
      const fromTensors = await w.scoring.score(name, { kind: "tensors", feeds: { input: tensor } });
      for (const result of [fromRecords, fromTensors]) {
        expect(result.rows).toBe(50);
        for (const [out, want] of Object.entries(expected.outputs)) {
          const got = floats(result.outputs[out]);
          if (out === "label") expect(got).toEqual(want);
          else {
            const tol = (expected.tolerance[`${out}_abs`] as number | undefined) ?? 1e-5;
            expect(maxAbsDiff(got, want)).toBeLessThanOrEqual(tol);
          }
        }
      }
    }
  });

  it("runs requests of one event-loop turn as one batch, each getting its own rows back", async () => {
    const expected = await readExpected("breast_cancer_mlp");
    await w.scoring.load("breast-cancer");
    const runs = () => w.runtime.stats().workers.reduce((n, x) => n + x.runsCompleted, 0);
    const before = runs();
    const results = await Promise.all(
      expected.inputs.slice(0, 20).map((row, i) =>
        w.scoring.score("breast-cancer", i % 2 === 0 ? { kind: "mlflow", body: { instances: [row] } } : { kind: "v2", body: { inputs: [{ name: "input", shape: [1, 30], datatype: "FP32", data: row }] } }),
      ),
    );
    expect(runs() - before).toBeLessThan(5);
    results.forEach((r, i) => {
      expect(r.rows).toBe(1);
      expect(r.outputs.probabilities?.shape).toEqual([1, 2]);
      expect(tensorValues(r.outputs.label as Tensor)).toEqual([expected.outputs.label?.[i]]);
      expect(maxAbsDiff(tensorValues(r.outputs.probabilities as Tensor), expected.outputs.probabilities?.[i])).toBeLessThanOrEqual(1e-5);
    });
    // Different widths on a dynamic axis cannot be stacked; a failing request does not fail its neighbours.
    await w.registerGraph("broken", "broadcastFail");
    const [wide, narrow, broken, good] = await Promise.allSettled([
      w.scoring.score("ragged", { kind: "mlflow", body: { instances: [[1, 2, 3, 4]] } }),
      w.scoring.score("ragged", { kind: "mlflow", body: { instances: [[1, 2], [3, 4]] } }),
      w.scoring.score("broken", { kind: "mlflow", body: { inputs: { a: [[1, 2]], b: [[1, 2, 3]] } } }),
      w.scoring.score("broken", { kind: "mlflow", body: { inputs: { a: [[1, 2]], b: [[3, 4]] } } }),
    ]);
    expect(wide.status === "fulfilled" && tensorValues(wide.value.outputs.total as Tensor)).toEqual([10]);
    expect(narrow.status === "fulfilled" && tensorValues(narrow.value.outputs.total as Tensor)).toEqual([3, 7]);
    expect(broken.status === "rejected" && (broken.reason as MlshipError).code).toBe("MLSHIP_ERR_RUNTIME_INFERENCE");
    expect(good.status === "fulfilled" && tensorValues(good.value.outputs.sum as Tensor)).toEqual([4, 6]);
  });

  it("runs int64, bool, string and the other dtypes strictly through V2", async () => {
    const int64 = await w.scoring.score("int64", {
      kind: "v2",
      body: { inputs: [{ name: "ids", shape: [2, 2], datatype: "INT64", data: [[1, 2], [3, -4]] }] },
    });
    expect(tensorValues(int64.outputs.plus as Tensor)).toEqual([11, 2 - 2 ** 40, 13, -4 - 2 ** 40]);
    expect(int64.outputs.same?.dtype).toBe("int64");

    const bool = await w.scoring.score("bool", {
      kind: "v2",
      body: {
        inputs: [
          { name: "p", shape: [3], datatype: "BOOL", data: [true, false, true] },
          { name: "q", shape: [3], datatype: "BOOL", data: [true, true, false] },
        ],
        outputs: [{ name: "p_and_q" }],
      },
    });
    expect(Object.keys(bool.outputs)).toEqual(["p_and_q"]);
    expect(tensorValues(bool.outputs.p_and_q as Tensor)).toEqual([true, false, false]);

    const strings = await w.scoring.score("strings", {
      kind: "v2",
      body: { inputs: [{ name: "text", shape: [1, 2], datatype: "BYTES", data: ["héllo", "wörld"] }] },
    });
    expect(tensorValues(strings.outputs.echo as Tensor)).toEqual(["héllo", "wörld"]);

    const dtypes = await w.scoring.score("dtypes", {
      kind: "v2",
      body: {
        inputs: [
          { name: "f16", shape: [2], datatype: "FP16", data: [1.5, -0.25] },
          { name: "f64", shape: [2], datatype: "FP64", data: [0.1, 1e300] },
          { name: "i8", shape: [2], datatype: "INT8", data: [-128, 127] },
          { name: "i16", shape: [2], datatype: "INT16", data: [-32768, 32767] },
          { name: "i32", shape: [2], datatype: "INT32", data: [-2147483648, 2147483647] },
          { name: "u8", shape: [2], datatype: "UINT8", data: [0, 255] },
          { name: "u16", shape: [2], datatype: "UINT16", data: [0, 65535] },
          { name: "u32", shape: [2], datatype: "UINT32", data: [0, 4294967295] },
          { name: "u64", shape: [2], datatype: "UINT64", data: [0, 2 ** 53] },
        ],
      },
    });
    expect(tensorValues(dtypes.outputs.f16_as_f32 as Tensor)).toEqual([1.5, -0.25]);
    expect(tensorValues(dtypes.outputs.f16_out as Tensor)).toEqual([1.5, -0.25]);
    expect(tensorValues(dtypes.outputs.f64_out as Tensor)).toEqual([0.1, 1e300]);
    expect(tensorValues(dtypes.outputs.i8_out as Tensor)).toEqual([-128, 127]);
    expect(tensorValues(dtypes.outputs.u32_out as Tensor)).toEqual([0, 4294967295]);
    expect(tensorValues(dtypes.outputs.u64_out as Tensor)).toEqual([0, 2 ** 53]);
  });

  it("rejects V2 values of the wrong JS type or range, naming the element", async () => {
    const cases: Array<[string, unknown, string, string]> = [
      ["int64", { inputs: [{ name: "ids", shape: [2, 2], datatype: "INT64", data: [[1, 2], [3, 4.5]] }] }, "inputs[0].data[1][1]", "integer"],
      ["int64", { inputs: [{ name: "ids", shape: [1, 2], datatype: "INT64", data: [1, "2"] }] }, "inputs[0].data[1]", "integer"],
      ["bool", { inputs: [{ name: "p", shape: [1], datatype: "BOOL", data: [1] }, { name: "q", shape: [1], datatype: "BOOL", data: [true] }] }, "inputs[0].data[0]", "true or false"],
      ["strings", { inputs: [{ name: "text", shape: [1, 2], datatype: "BYTES", data: ["a", 7] }] }, "inputs[0].data[1]", "string"],
      ["dtypes", { inputs: [{ name: "i8", shape: [1], datatype: "INT8", data: [128] }] }, "inputs[0].data[0]", "out of range"],
      ["add2", { inputs: [{ name: "a", shape: [1, 3], datatype: "FP32", data: [1, null, 3] }] }, "inputs[0].data[1]", "number"],
    ];
    for (const [model, body, field, words] of cases) {
      const err = await rejection(w.scoring.score(model, { kind: "v2", body }));
      expect(err.code, JSON.stringify(body)).toBe("MLSHIP_ERR_INPUT_DTYPE");
      expect(err.field).toBe(field);
      expect(err.message).toContain(field);
      expect(err.message).toContain(words);
    }
  });

  it("feeds multi-input models from MLflow instances, inputs and records by input name", async () => {
    const instances = await w.scoring.score("add2", { kind: "mlflow", body: { instances: [{ a: [1, 2, 3], b: [10, 20, 30] }, { a: [0, 0, 1], b: [1, 1, 1] }] } });
    expect(instances.orientation).toBe("columnar");
    expect(tensorValues(instances.outputs.sum as Tensor)).toEqual([11, 22, 33, 1, 1, 2]);
    const inputs = await w.scoring.score("add2", { kind: "mlflow", body: { inputs: { a: [[1, 1, 1]], b: [["2", "2.5", 3]] } } });
    expect(tensorValues(inputs.outputs.sum as Tensor)).toEqual([3, 3.5, 4]);
    const records = await w.scoring.score("add2", { kind: "mlflow", body: { dataframe_records: [{ b: [1, 1, 1], a: [1, 2, 3] }] } });
    expect(records.orientation).toBe("records");
    expect(tensorValues(records.outputs.sum as Tensor)).toEqual([2, 3, 4]);
    const missing = await rejection(w.scoring.score("add2", { kind: "mlflow", body: { inputs: { a: [[1, 1, 1]] } } }));
    expect(missing.code).toBe("MLSHIP_ERR_INPUT_MISSING");
    expect(missing.field).toBe("inputs.b");

    // MLflow casting: numbers become strings for a string tensor; a dynamic axis takes any width.
    const strings = await w.scoring.score("strings", { kind: "mlflow", body: { instances: [[1, "x"]] } });
    expect(tensorValues(strings.outputs.echo as Tensor)).toEqual(["1", "x"]);
    const ragged = await w.scoring.score("ragged", { kind: "csv", text: "a,b,c,d\n1,2,3,4\n0.5,0.5,0.5,0.5\n" });
    expect(tensorValues(ragged.outputs.total as Tensor)).toEqual([10, 2]);
  });

  it("decodes V2 BYTES images through the image step and matches labels.json", async () => {
    const { readFile } = await import("node:fs/promises");
    const path = await import("node:path");
    const { FIXTURES } = await import("./world.js");
    const labels = JSON.parse(await readFile(path.join(FIXTURES, "digits_cnn/images/labels.json"), "utf8")) as {
      images: Array<{ file: string; label: number; expected_from_png: { probabilities: number[]; label: number } }>;
    };
    const data = await Promise.all(labels.images.map(async (img) => (await readFile(path.join(FIXTURES, "digits_cnn", img.file))).toString("base64")));
    const result = await w.scoring.score("digits", {
      kind: "v2",
      body: { inputs: [{ name: "image", shape: [data.length], datatype: "BYTES", data }] },
    });
    expect(tensorValues(result.outputs.label as Tensor)).toEqual(labels.images.map((i) => Number(i.expected_from_png.label)));
    expect(maxAbsDiff(tensorValues(result.outputs.probabilities as Tensor), labels.images.map((i) => i.expected_from_png.probabilities))).toBeLessThanOrEqual(1e-5);
    const bad = await rejection(
      w.scoring.score("digits", { kind: "v2", body: { inputs: [{ name: "image", shape: [2], datatype: "BYTES", data: [data[0], "bm90IGFuIGltYWdl"] }] } }),
    );
    expect(bad.code).toBe("MLSHIP_ERR_INPUT_INVALID");
    expect(bad.field).toBe("inputs[0].data[1]");
    expect(bad.message).toContain("cannot decode");
  });

  it("publishes post-processed outputs in metadata and scores them", async () => {
    await w.register("bc-labelled", "breast_cancer_mlp", {
      columns: true,
      postprocess: [
        { type: "labels", output: "label", labels: ["malignant", "benign"], as: "class" },
        { type: "top_k", output: "probabilities", k: 1, labels: ["malignant", "benign"] },
      ],
    });
    const md = await w.scoring.metadata("bc-labelled");
    expect(md.signature.outputs.map((o) => [o.name, o.dtype, o.shape])).toEqual([
      ["probabilities", "float32", [-1, 2]],
      ["label", "int64", [-1]],
      ["class", "string", [-1]],
      ["probabilities_top1_indices", "int64", [-1, 1]],
      ["probabilities_top1_scores", "float32", [-1, 1]],
      ["probabilities_top1_labels", "string", [-1, 1]],
    ]);
    const expected = await readExpected("breast_cancer_mlp");
    const result = await w.scoring.score(
      "bc-labelled",
      { kind: "v2", body: { inputs: [{ name: "input", shape: [50, 30], datatype: "FP32", data: expected.inputs }], outputs: [{ name: "class" }, { name: "probabilities_top1_labels" }] } },
    );
    const want = (expected.outputs.label as number[]).map((l) => (l === 1 ? "benign" : "malignant"));
    expect(Object.keys(result.outputs)).toEqual(["class", "probabilities_top1_labels"]);
    expect(tensorValues(result.outputs.class as Tensor)).toEqual(want);
    expect(tensorValues(result.outputs.probabilities_top1_labels as Tensor)).toEqual(want);
    // Every output the metadata lists comes back with that dtype and a fitting shape.
    const all = await w.scoring.score("bc-labelled", { kind: "mlflow", body: { instances: expected.inputs.slice(0, 3) } });
    for (const spec of md.signature.outputs) {
      const t = all.outputs[spec.name];
      expect(t?.dtype, spec.name).toBe(spec.dtype);
      expect(t?.shape.length).toBe(spec.shape.length);
    }
  });

  it("applies the package's select_columns and cast steps to tabular input", async () => {
    const { header } = await readCsv("breast_cancer_mlp");
    const features = header.slice(0, -1);
    await w.register("bc-select", "breast_cancer_mlp", {
      edit: (m) => ({ ...m, preprocess: [{ type: "select_columns", columns: features }, { type: "cast", dtype: "float32" }] }),
    });
    const expected = await readExpected("breast_cancer_mlp");
    // The whole prod.csv, label column included: select_columns drops it. Columns sent in another order are put
    // back in the selected order by name.
    const { text } = await readCsv("breast_cancer_mlp");
    const csv = await w.scoring.score("bc-select", { kind: "csv", text: text.split("\n").slice(0, 11).join("\n") });
    expect(tensorValues(csv.outputs.label as Tensor)).toEqual((expected.outputs.label as number[]).slice(0, 10));
    const reversed = expected.inputs.slice(0, 3).map((row) => [...row].reverse());
    const split = await w.scoring.score("bc-select", { kind: "mlflow", body: { dataframe_split: { columns: [...features].reverse(), data: reversed } } });
    expect(tensorValues(split.outputs.label as Tensor)).toEqual((expected.outputs.label as number[]).slice(0, 3));
    // Records are matched by the selected names even without declared columns; values may be numeric text.
    const records = expected.inputs.slice(0, 3).map((row) => ({ id: "x", ...Object.fromEntries(features.map((f, i) => [f, String(row[i])])) }));
    const fromRecords = await w.scoring.score("bc-select", { kind: "mlflow", body: { dataframe_records: records } });
    expect(maxAbsDiff(tensorValues(fromRecords.outputs.probabilities as Tensor), (expected.outputs.probabilities as number[][]).slice(0, 3))).toBeLessThanOrEqual(1e-5);
    const missing = await rejection(w.scoring.score("bc-select", { kind: "mlflow", body: { dataframe_records: [{ ...records[0], "worst area": undefined }] } }));
    expect(missing.code).toBe("MLSHIP_ERR_INPUT_MISSING");
    expect(missing.field).toBe("worst area");
    const notNumber = await rejection(w.scoring.score("bc-select", { kind: "mlflow", body: { dataframe_records: [records[0], { ...records[0], "mean area": "big" }] } }));
    expect(notNumber.code).toBe("MLSHIP_ERR_INPUT_DTYPE");
    expect(notNumber.field).toBe("mean area");
    expect(notNumber.message).toContain("row 1");
  });

  it("sees alias moves and rollbacks made through another connection within 2 s", async () => {
    await w.register("switch", "breast_cancer_mlp", { columns: true });
    await w.register("switch", "diabetes_linear", { columns: true, labelColumn: "target" });
    await w.registry.setAlias("switch", "production", 1);
    expect((await w.scoring.resolve("switch@production")).version.version).toBe(1);
    expect((await w.scoring.load("switch")).version).toBe(1);
    const other = await w.openSecondRegistry();
    await other.setAlias("switch", "production", 2, { by: "test", reason: "promote" });
    // The deadline only bounds the wait on a loaded machine; the requirement (2 s, conventions.md) is asserted.
    const moved = await waitFor(async () => (await w.scoring.resolve("switch@production")).version.version === 2, 10_000, 20);
    expect(moved).toBeLessThan(2000);
    const scored = await w.scoring.score("switch", { kind: "mlflow", body: { dataframe_split: { data: [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]] } } });
    expect(scored.version).toBe(2);
    expect(scored.alias).toBe("production");
    await other.rollback("switch", "production", { by: "test" });
    const rolled = await waitFor(async () => (await w.scoring.resolve("switch")).version.version === 1, 10_000, 20);
    expect(rolled).toBeLessThan(2000);
  });

  it("unloads a version once it is archived, and refuses to score it", async () => {
    await w.register("retire", "diabetes_linear");
    await w.register("retire", "diabetes_linear", { columns: true, labelColumn: "target" });
    const v1 = await w.scoring.load("retire@1");
    expect(w.runtime.stats().models).toContain(v1.key);
    const other = await w.openSecondRegistry();
    await other.archive("retire", 1, { by: "test" });
    await waitFor(async () => !w.scoring.loadedModels().some((m) => m.key === v1.key) && !w.runtime.stats().models.includes(v1.key), 10_000);
    const err = await rejection(w.scoring.score("retire@1", { kind: "mlflow", body: { instances: [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]] } }));
    expect(err.code).toBe("MLSHIP_ERR_MODEL_VERSION_NOT_FOUND");
    expect((await w.scoring.score("retire", { kind: "mlflow", body: { instances: [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]] } })).version).toBe(2);
  });

  it("answers MODEL_NOT_READY with a retry delay while a load outlasts the wait, then serves", async () => {
    const runtime = createOnnxRuntime({ workers: 1 });
    const slow = createScoringService({ registry: w.registry, runtimes: { onnx: runtime }, loadWaitMs: 0, retryAfterSeconds: 2 });
    try {
      const err = await rejection(slow.score("diabetes", { kind: "mlflow", body: { instances: [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]] } }));
      expect(err.code).toBe("MLSHIP_ERR_MODEL_NOT_READY");
      expect(err.retryAfterSeconds).toBe(2);
      expect(slow.loadedModels().map((m) => m.state)).toEqual(["loading"]);
      await waitFor(() => slow.isReady("diabetes"), 10_000);
      const ok = await slow.score("diabetes", { kind: "mlflow", body: { instances: [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]] } });
      expect(ok.rows).toBe(1);
    } finally {
      await slow.close();
      await runtime.close();
    }
  });

  it("emits one scoring event per request; a throwing listener does not fail requests", async () => {
    const events: ScoringEvent[] = [];
    const off = w.scoring.onScored((e) => events.push(e));
    const offBad = w.scoring.onScored(() => {
      throw new Error("listener bug");
    });
    try {
      const input: ScoringInput = { kind: "mlflow", body: { instances: [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]] } };
      await w.scoring.score("diabetes", input, { protocol: "test", requestId: "r1" });
      await rejection(w.scoring.score("diabetes", { kind: "mlflow", body: { instances: [[1, 2]] } }, { requestId: "r2" }));
      await rejection(w.scoring.score("nope", input, { requestId: "r3" }));
    } finally {
      off();
      offBad();
    }
    expect(events.map((e) => [e.requestId, e.model, e.version, e.ok, e.rows, e.error?.code])).toEqual([
      ["r1", "diabetes", 1, true, 2, undefined],
      ["r2", "diabetes", 1, false, 0, "MLSHIP_ERR_INPUT_SHAPE"],
      ["r3", "nope", null, false, 0, "MLSHIP_ERR_MODEL_NOT_FOUND"],
    ]);
    expect(events[0]?.protocol).toBe("test");
    expect(events[0]?.latencyMs).toBeGreaterThan(0);
    expect(events[0]?.outputs?.prediction?.shape).toEqual([2, 1]);
  });

  it("checks V2 data against the shape before allocating, so a huge claimed shape is a 400", async () => {
    // 2e8 strings would be allocated up front (a RangeError, or a fatal out-of-memory for larger shapes).
    const huge = await rejection(
      w.scoring.score("strings", { kind: "v2", body: { inputs: [{ name: "text", shape: [100_000_000, 2], datatype: "BYTES", data: ["a", "b"] }] } }),
    );
    expect(huge.code).toBe("MLSHIP_ERR_INPUT_SHAPE");
    expect(huge.field).toBe("inputs[0].data");
    expect(huge.message).toContain("has 2 elements but the shape needs 200000000");
    const images = await rejection(
      w.scoring.score("digits", { kind: "v2", body: { inputs: [{ name: "image", shape: [100_000_000], datatype: "BYTES", data: ["x"] }] } }),
    );
    expect(images.code).toBe("MLSHIP_ERR_INPUT_SHAPE");
    expect(images.field).toBe("inputs[0].data");
  });

  it("refuses data nested deeper than the tensor (V2) or absurdly deep (MLflow) with a 400, not a stack overflow", async () => {
    let deep: unknown = 1;
    for (let i = 0; i < 20_000; i++) deep = [deep];
    const v2 = await rejection(w.scoring.score("add2", { kind: "v2", body: { inputs: [{ name: "a", shape: [1, 3], datatype: "FP32", data: deep }] } }));
    expect(v2.code).toBe("MLSHIP_ERR_INPUT_SHAPE");
    expect(v2.field).toBe("inputs[0].data");
    expect(v2.message).toContain("nested more than 2 levels");
    // One level more than the rank is already not this tensor.
    const over = await rejection(w.scoring.score("add2", { kind: "v2", body: { inputs: [{ name: "a", shape: [1, 3], datatype: "FP32", data: [[[1, 2, 3]]] }] } }));
    expect(over.code).toBe("MLSHIP_ERR_INPUT_SHAPE");
    for (const [model, body] of [["ragged", { instances: [deep] }], ["add2", { inputs: { a: [deep], b: [[1, 2, 3]] } }]] as const) {
      const err = await rejection(w.scoring.score(model, { kind: "mlflow", body }));
      expect(err.code, model).toBe("MLSHIP_ERR_INPUT_SHAPE");
      expect(err.message).toContain("nested more than 32 levels");
    }
  });

  it("gives scoring events the request's own input values, not the buffers handed to a worker", async () => {
    const expected = await readExpected("breast_cancer_mlp");
    const events: ScoringEvent[] = [];
    const off = w.scoring.onScored((e) => events.push(e));
    try {
      await w.scoring.score("breast-cancer", { kind: "v2", body: { inputs: [{ name: "input", shape: [2, 30], datatype: "FP32", data: expected.inputs.slice(0, 2) }] } });
    } finally {
      off();
    }
    const input = events[0]?.inputs?.input;
    expect(input?.shape).toEqual([2, 30]);
    expect(tensorValues(input as Tensor)).toEqual(Array.from(Float32Array.from(expected.inputs.slice(0, 2).flat())));
  });

  it("survives a load listener that throws (no unhandled rejection) and still loads", async () => {
    await w.register("load-events", "diabetes_linear");
    const seen: string[] = [];
    const offBad = w.scoring.onLoaded(() => {
      throw new Error("listener bug");
    });
    const off = w.scoring.onLoaded((e) => seen.push(`${e.model}@${e.version}:${String(e.ok)}`));
    try {
      const active = await w.scoring.load("load-events");
      expect(active.version).toBe(1);
      // Give a rejection from the load callback the turns it needs to be reported.
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      offBad();
      off();
    }
    expect(seen).toEqual(["load-events@1:true"]);
  });

  it("answers concurrent typed-tensor requests whose storage does not match the dtype with a 400 each", async () => {
    await w.scoring.load("int64");
    // Plain numbers for an int64 input cannot be stacked into a BigInt64Array; that must not escape the batcher.
    const feeds = (): ScoringInput => ({ kind: "tensors", feeds: { ids: { dtype: "int64", shape: [1, 2], data: [1, 2] as unknown as BigInt64Array } } });
    const results = await Promise.allSettled([w.scoring.score("int64", feeds()), w.scoring.score("int64", feeds())]);
    for (const r of results) {
      expect(r.status).toBe("rejected");
      expect(r.status === "rejected" && (r.reason as MlshipError).code).toBe("MLSHIP_ERR_INPUT_DTYPE");
    }
    const ok = await w.scoring.score("int64", { kind: "tensors", feeds: { ids: { dtype: "int64", shape: [1, 2], data: BigInt64Array.of(1n, 2n) } } });
    expect(tensorValues(ok.outputs.same as Tensor)).toEqual([1, 2]);
  });

  it("bounds the cache of resolutions, so requests for ever-new unknown names cannot grow it", async () => {
    let calls = 0;
    const registry = w.registry;
    const counting = new Proxy(registry, {
      get(target, prop) {
        if (prop === "resolve") {
          return (ref: Parameters<Registry["resolve"]>[0]) => {
            calls += 1;
            return target.resolve(ref);
          };
        }
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
    const scoring = createScoringService({ registry: counting, runtimes: { onnx: w.runtime }, maxCachedRefs: 2, refreshMs: 60_000, backgroundRefresh: false });
    try {
      const code = async (ref: string) => (await rejection(scoring.resolve(ref))).code;
      expect(await code("ghost-1")).toBe("MLSHIP_ERR_MODEL_NOT_FOUND");
      expect(await code("ghost-1")).toBe("MLSHIP_ERR_MODEL_NOT_FOUND");
      expect(calls).toBe(1);
      await code("ghost-2");
      await code("ghost-3");
      expect(calls).toBe(3);
      // The third name found the cache full and started it over, so the first is looked up again.
      await code("ghost-1");
      expect(calls).toBe(4);
    } finally {
      await scoring.close();
    }
  });

  it("reports unknown models, versions and aliases and bad references", async () => {
    const body: ScoringInput = { kind: "mlflow", body: { instances: [[1]] } };
    expect((await rejection(w.scoring.score("nope", body))).code).toBe("MLSHIP_ERR_MODEL_NOT_FOUND");
    expect((await rejection(w.scoring.score("diabetes@9", body))).code).toBe("MLSHIP_ERR_MODEL_VERSION_NOT_FOUND");
    expect((await rejection(w.scoring.score("diabetes@staging", body))).code).toBe("MLSHIP_ERR_MODEL_ALIAS_NOT_FOUND");
    expect((await rejection(w.scoring.score("bad name!", body))).code).toBe("MLSHIP_ERR_MODEL_REF_INVALID");
    // A later registration of an unknown name is seen after the next refresh.
    await w.register("late", "diabetes_linear");
    await w.scoring.refresh();
    expect((await w.scoring.resolve("late")).version.version).toBe(1);
  });
});
