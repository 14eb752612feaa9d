import { createHash } from "node:crypto";
import { copyFile, mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import YAML from "yaml";
import {
  inspectOnnx,
  loadPackage,
  parseManifest,
  stringifyManifest,
  validateManifest,
  writePackage,
} from "../../src/package/index.js";
import type { Manifest } from "../../src/package/index.js";
import { catchMlship, fixture, REPO, tempDir } from "./helpers.js";

const COLUMNS = Array.from({ length: 30 }, (_, i) => `f${i}`);

function baseManifest(): Manifest {
  return {
    format_version: 1,
    flavor: "onnx",
    files: { model: "model.onnx" },
    signature: {
      inputs: [{ name: "input", dtype: "float32", shape: [-1, 30] }],
      outputs: [
        { name: "probabilities", dtype: "float32", shape: [-1, 2] },
        { name: "label", dtype: "int64", shape: [-1] },
      ],
      columns: COLUMNS.map((name) => ({ name })),
    },
    input_example: "example.json",
    preprocess: [{ type: "cast", dtype: "float32" }],
    postprocess: [
      { type: "labels", output: "label", labels: ["malignant", "benign"], as: "class" },
      { type: "top_k", output: "probabilities", k: 1 },
    ],
    metadata: {
      framework: "pytorch",
      created_at: "2024-06-01T12:00:00.000Z",
      params: { epochs: 150, optimizer: "adam", standardize: true },
      metrics: { prod_accuracy: 0.965035 },
      tags: { team: "ml" },
      source_run: { system: "mlflow", id: "abc", uri: "runs:/abc/model" },
      training_data_fingerprint: "a".repeat(64),
      class_labels: ["malignant", "benign"],
      description: "breast cancer",
    },
  };
}

/** A valid package folder (breast cancer model) whose mlship.yaml is `manifest` as plain YAML (not validated). */
async function packageDir(manifest: unknown): Promise<string> {
  const dir = await tempDir();
  await copyFile(fixture("breast_cancer_mlp", "model.onnx"), path.join(dir, "model.onnx"));
  await writeFile(path.join(dir, "example.json"), JSON.stringify({ dataframe_split: { columns: COLUMNS, data: [] } }));
  await writeFile(path.join(dir, "mlship.yaml"), typeof manifest === "string" ? manifest : YAML.stringify(manifest));
  return dir;
}

function mutated(change: (m: Record<string, unknown> & Manifest) => void): unknown {
  const m = structuredClone(baseManifest()) as Record<string, unknown> & Manifest;
  change(m);
  return m;
}

describe("manifest round trip", () => {
  it("writes and reads back the same manifest", async () => {
    const dir = await packageDir("placeholder: 1");
    const written = await writePackage(dir, baseManifest());
    const loaded = await loadPackage(dir);
    expect(loaded.root).toBe(path.resolve(dir));
    expect(loaded.manifest).toStrictEqual(baseManifest());
    expect(written.manifest).toStrictEqual(loaded.manifest);
    // Text form is stable: writing the loaded manifest gives the same bytes.
    expect(stringifyManifest(loaded.manifest)).toBe(await readFile(path.join(dir, "mlship.yaml"), "utf8"));
  });

  it("fills defaults and accepts columns as plain names or {name, dtype}", () => {
    const m = validateManifest({
      format_version: 1,
      flavor: "onnx",
      files: { model: "m.onnx" },
      signature: {
        inputs: [{ name: "x", dtype: "float32", shape: [-1, 2] }],
        outputs: [{ name: "y", dtype: "float32", shape: [-1, 1] }],
        columns: ["a", { name: "b", dtype: "int64" }],
      },
    });
    expect(m.preprocess).toEqual([]);
    expect(m.postprocess).toEqual([]);
    expect(m.metadata).toEqual({});
    expect(m.signature.columns).toEqual([{ name: "a" }, { name: "b", dtype: "int64" }]);
  });

  it("loads a package given the path of its mlship.yaml", async () => {
    const dir = await packageDir(baseManifest());
    const pkg = await loadPackage(path.join(dir, "mlship.yaml"));
    expect(pkg.root).toBe(path.resolve(dir));
  });
});

describe("manifest validation errors name the file and the YAML path", () => {
  const cases: Array<[string, unknown, string, RegExp]> = [
    ["missing model file", mutated((m) => { m.files.model = "nope.onnx"; }), "files.model", /"nope.onnx" does not exist/],
    ["bad dtype", mutated((m) => { (m.signature.inputs[0] as { dtype: string }).dtype = "float"; }),
      "signature.inputs[0].dtype", /unknown dtype "float"/],
    ["duplicate input name", mutated((m) => {
      m.signature.inputs.push({ name: "input", dtype: "float32", shape: [-1, 30] });
    }), "signature.inputs[1].name", /duplicate tensor name "input"/],
    ["columns/width mismatch", mutated((m) => { m.signature.columns = COLUMNS.slice(0, 29).map((name) => ({ name })); }),
      "signature.columns", /29 columns declared but input "input" \(shape \[-1, 30\]\) takes 30 values per row/],
    ["step referencing an unknown output", mutated((m) => {
      m.postprocess = [{ type: "softmax", output: "logits" }];
    }), "postprocess[0].output", /output "logits" is not a model output/],
    ["path escape", mutated((m) => { m.files.model = "../model.onnx"; }), "files.model", /leaves the package root/],
    ["malformed YAML", "format_version: 1\nflavor: onnx\nfiles: [model.onnx\n", "line 4, column 1", /malformed YAML/],
    ["flavor that is not a string", mutated((m) => { (m as Record<string, unknown>).flavor = 3; }), "flavor",
      /expected a non-empty string, got number 3/],
    ["shape dimension below -1", mutated((m) => { (m.signature.inputs[0] as { shape: number[] }).shape = [-2, 30]; }),
      "signature.inputs[0].shape[0]", /integer >= -1/],
    ["labels count differs from the output width", mutated((m) => {
      m.postprocess = [{ type: "labels", output: "probabilities", labels: ["a", "b", "c"] }];
    }), "postprocess[0].labels", /3 labels given but output "probabilities" has 2 classes/],
    ["labels on an index output differ from class_labels", mutated((m) => {
      m.postprocess = [{ type: "labels", output: "label", labels: ["a", "b", "c"] }];
    }), "postprocess[0].labels", /3 labels given but output "label" has 2 classes/],
    ["image step with a zero size", mutated((m) => {
      m.signature.columns = undefined as never;
      delete (m.signature as { columns?: unknown }).columns;
      m.signature.inputs = [{ name: "input", dtype: "float32", shape: [-1, 1, 8, 8] }];
      m.preprocess = [{ type: "image", input: "image", width: 0, height: 8, channels: 1, resize: "area", scale: 1,
        layout: "NCHW" }];
    }), "preprocess[0].width", /positive integer/],
    ["image step that does not fit its target", mutated((m) => {
      delete (m.signature as { columns?: unknown }).columns;
      m.signature.inputs = [{ name: "input", dtype: "float32", shape: [-1, 1, 8, 8] }];
      m.preprocess = [{ type: "image", input: "image", width: 28, height: 8, channels: 1, resize: "area", scale: 1,
        layout: "NCHW" }];
    }), "preprocess[0].width", /makes \[batch, 1, 8, 28\]/],
    ["image step feeding a non-float32 input", mutated((m) => {
      delete (m.signature as { columns?: unknown }).columns;
      m.signature.inputs = [{ name: "input", dtype: "uint8", shape: [-1, 8, 8, 3] }];
      m.preprocess = [{ type: "image", input: "image", width: 8, height: 8, channels: 3, resize: "area", scale: 1,
        layout: "NHWC" }];
    }), "preprocess[0].target", /an image step feeds a float32 input; "input" is uint8/],
    ["image input named like a model input", mutated((m) => {
      delete (m.signature as { columns?: unknown }).columns;
      m.signature.inputs = [{ name: "input", dtype: "float32", shape: [-1, 1, 8, 8] }];
      m.preprocess = [{ type: "image", input: "input", width: 8, height: 8, channels: 1, resize: "area", scale: 1,
        layout: "NCHW" }];
    }), "preprocess[0].input", /has the name of a model input/],
    ["unknown top-level field", mutated((m) => { (m as Record<string, unknown>).signatures = {}; }), "signatures",
      /unknown field "signatures"/],
    ["missing format_version", mutated((m) => { delete (m as Record<string, unknown>).format_version; }),
      "format_version", /format_version is required/],
    ["class labels that fit no output", mutated((m) => {
      m.metadata.class_labels = ["a", "b", "c"];
      m.postprocess = [];
    }), "metadata.class_labels", /3 class labels but the model's class outputs have 2 columns/],
    ["cast of an undeclared column", mutated((m) => { m.preprocess = [{ type: "cast", dtype: "float32", columns: ["zz"] }]; }),
      "preprocess[0].columns[0]", /column "zz" is not in signature.columns/],
    ["bad fingerprint", mutated((m) => { m.metadata.training_data_fingerprint = "xyz"; }),
      "metadata.training_data_fingerprint", /sha256/],
    ["top_k larger than the output", mutated((m) => { m.postprocess = [{ type: "top_k", output: "probabilities", k: 3 }]; }),
      "postprocess[0].k", /k = 3 is larger than the 2 values/],
    ["softmax on an integer output", mutated((m) => { m.postprocess = [{ type: "softmax", output: "label" }]; }),
      "postprocess[0].output", /softmax needs a float32\/float64 output; "label" is int64/],
    ["columnsInput naming no input", mutated((m) => { m.signature.columnsInput = "features"; }),
      "signature.columnsInput", /columnsInput "features" is not a signature input/],
    ["lineage that is not a mapping", mutated((m) => { (m.metadata as Record<string, unknown>).lineage = "bc@1"; }),
      "metadata.lineage", /expected a mapping, got the string "bc@1"/],
    ["unknown lineage field", mutated((m) => { (m.metadata as Record<string, unknown>).lineage = { parents: [] }; }),
      "metadata.lineage.parents", /unknown field "parents" \(allowed: parent, derived_by, transform\)/],
    ["lineage parent without a model", mutated((m) => { (m.metadata as Record<string, unknown>).lineage = { parent: { version: 1 } }; }),
      "metadata.lineage.parent.model", /model is required/],
    ["lineage parent with an invalid model name", mutated((m) => {
      m.metadata.lineage = { parent: { model: "breast cancer", version: 1 } };
    }), "metadata.lineage.parent.model", /model name "breast cancer" is not valid/],
    ["lineage parent without a version", mutated((m) => { (m.metadata as Record<string, unknown>).lineage = { parent: { model: "bc" } }; }),
      "metadata.lineage.parent.version", /version is required/],
    ["lineage parent version that is not a positive integer", mutated((m) => {
      m.metadata.lineage = { parent: { model: "bc", version: 1.5 } };
    }), "metadata.lineage.parent.version", /expected a positive integer, got number 1.5/],
    ["lineage parent version given as text", mutated((m) => {
      (m.metadata as Record<string, unknown>).lineage = { parent: { model: "bc", version: "1" } };
    }), "metadata.lineage.parent.version", /expected a positive integer, got the string "1"/],
    ["lineage parent digest that is not a sha256", mutated((m) => {
      m.metadata.lineage = { parent: { model: "bc", version: 1, digest: "ABC" } };
    }), "metadata.lineage.parent.digest", /expected a sha256 digest \(64 lowercase hex digits\)/],
    ["unknown lineage parent field", mutated((m) => {
      (m.metadata as Record<string, unknown>).lineage = { parent: { model: "bc", version: 1, alias: "production" } };
    }), "metadata.lineage.parent.alias", /unknown field "alias" \(allowed: model, version, digest\)/],
    ["empty derived_by", mutated((m) => { m.metadata.lineage = { derived_by: "" }; }),
      "metadata.lineage.derived_by", /expected a non-empty string, got the string ""/],
    ["transform setting that is a mapping", mutated((m) => {
      (m.metadata as Record<string, unknown>).lineage = { transform: { calibration: { rows: 426 } } };
    }), "metadata.lineage.transform.calibration", /a transform setting is a string, number, boolean or list of strings, got a mapping/],
    ["transform list that holds numbers", mutated((m) => {
      (m.metadata as Record<string, unknown>).lineage = { transform: { sizes: [1, 2] } };
    }), "metadata.lineage.transform.sizes", /got a list/],
  ];

  it.each(cases)("%s", async (_name, manifest, field, message) => {
    const dir = await packageDir(manifest);
    const error = await catchMlship(() => loadPackage(dir));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    expect(error.field).toBe(field);
    expect(error.message).toContain(path.join(dir, "mlship.yaml"));
    expect(error.message).toContain(` at ${field}`);
    expect(error.message).toMatch(message);
  });

  it("a symlink out of the package is an escape", async () => {
    const dir = await packageDir(mutated((m) => { m.files.model = "link.onnx"; }));
    await symlink(fixture("breast_cancer_mlp", "model.onnx"), path.join(dir, "link.onnx"));
    const error = await catchMlship(() => loadPackage(dir));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    expect(error.field).toBe("files.model");
    expect(error.message).toMatch(/leaves the package root \(through a link\)/);
  });

  it("an input example that is not a request names the example file", async () => {
    const dir = await packageDir(baseManifest());
    await writeFile(path.join(dir, "example.json"), '{"rows": []}');
    const error = await catchMlship(() => loadPackage(dir));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    expect(error.field).toBe("input_example");
    expect(error.message).toContain(path.join(dir, "example.json"));
  });

  it("an unknown flavor is unsupported", async () => {
    const dir = await packageDir(mutated((m) => { (m as Record<string, unknown>).flavor = "sklearn"; }));
    const error = await catchMlship(() => loadPackage(dir));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_UNSUPPORTED");
    expect(error.field).toBe("flavor");
    expect(error.message).toContain(path.join(dir, "mlship.yaml"));
    expect(error.message).toMatch(/flavor "sklearn" is not supported/);
  });

  it("a newer format_version is unsupported", async () => {
    const error = await catchMlship(() => parseManifest("format_version: 2\n", "x/mlship.yaml"));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_UNSUPPORTED");
    expect(error.message).toBe("x/mlship.yaml: format_version 2 is newer than this mlship reads (1) at format_version");
  });

  it("duplicate YAML keys are malformed", async () => {
    const error = await catchMlship(() => parseManifest("format_version: 1\nformat_version: 1\n"));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    expect(error.message).toMatch(/^mlship.yaml: malformed YAML/);
  });

  it("a missing folder is not found; a folder without mlship.yaml too", async () => {
    const missing = await catchMlship(() => loadPackage("/nonexistent/mlship-package"));
    expect(missing.code).toBe("MLSHIP_ERR_PACKAGE_NOT_FOUND");
    expect(missing.message).toContain("/nonexistent/mlship-package");
    const empty = await tempDir();
    const noManifest = await catchMlship(() => loadPackage(empty));
    expect(noManifest.code).toBe("MLSHIP_ERR_PACKAGE_NOT_FOUND");
    expect(noManifest.message).toContain(path.join(empty, "mlship.yaml"));
  });

  it("writePackage refuses an invalid manifest without writing", async () => {
    const dir = await tempDir();
    const bad = mutated((m) => { m.postprocess = [{ type: "argmax", output: "nope" }]; }) as Manifest;
    const error = await catchMlship(() => writePackage(dir, bad));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    expect(error.field).toBe("postprocess[0].output");
    await expect(readFile(path.join(dir, "mlship.yaml"))).rejects.toThrow();
  });

  it("steps may read an earlier step's result", () => {
    const m = mutated((x) => {
      x.signature.outputs = [{ name: "logits", dtype: "float32", shape: [-1, 2] }];
      x.postprocess = [
        { type: "softmax", output: "logits", as: "probs" },
        { type: "argmax", output: "probs" },
        { type: "labels", output: "probs_argmax", labels: ["malignant", "benign"] },
      ];
    });
    expect(validateManifest(m).postprocess).toHaveLength(3);
  });
});

describe("the example packages the product ships", () => {
  const examples = [
    ["breast-cancer", "breast_cancer_mlp", 30],
    ["digits", "digits_cnn", 64],
    ["diabetes", "diabetes_linear", 10],
  ] as const;
  let metas: Record<string, { features: string[]; class_labels: string[] | null; metrics: Record<string, number> }>;

  beforeAll(async () => {
    metas = {};
    for (const [, fx] of examples) {
      metas[fx] = JSON.parse(await readFile(fixture(fx, "meta.json"), "utf8")) as (typeof metas)[string];
    }
  });

  it.each(examples)("examples/models/%s loads, matches its fixture and its graph", async (dir, fx, width) => {
    const pkg = await loadPackage(path.join(REPO, "examples/models", dir));
    const meta = metas[fx] as (typeof metas)[string];
    const m = pkg.manifest;
    expect(m.signature.columns?.map((c) => c.name)).toEqual(meta.features);
    expect(m.signature.columns).toHaveLength(width);
    expect(m.metadata.metrics).toEqual(meta.metrics);
    expect(m.metadata.class_labels ?? null).toEqual(meta.class_labels);
    expect(m.metadata.training_data_fingerprint).toBe(
      createHash("sha256").update(await readFile(fixture(fx, "train.csv"))).digest("hex"));
    const model = await readFile(path.join(pkg.root, m.files.model));
    expect(model.equals(await readFile(fixture(fx, "model.onnx")))).toBe(true);
    const graph = await inspectOnnx(path.join(pkg.root, m.files.model));
    expect(m.signature.inputs).toEqual(graph.inputs);
    expect(m.signature.outputs).toEqual(graph.outputs);
    const example = JSON.parse(await readFile(path.join(pkg.root, m.input_example as string), "utf8")) as {
      dataframe_split: { columns: string[]; data: number[][] };
    };
    expect(example.dataframe_split.columns).toEqual(meta.features);
    expect(example.dataframe_split.data).toHaveLength(2);
    if (meta.class_labels !== null) {
      expect(m.postprocess).toEqual([{ type: "labels", output: "label", labels: meta.class_labels, as: "class" }]);
    } else {
      expect(m.postprocess).toEqual([]);
    }
  });

  it("the digits package decodes `image` into the model input with exact area resizing", async () => {
    const pkg = await loadPackage(path.join(REPO, "examples/models/digits"));
    expect(pkg.manifest.preprocess).toEqual([{
      type: "image", input: "image", target: "input", width: 8, height: 8, channels: 1, resize: "area",
      scale: 1 / 255, layout: "NCHW",
    }]);
  });

  it("example inputs are the first rows of prod.csv", async () => {
    const pkg = await loadPackage(path.join(REPO, "examples/models/diabetes"));
    const example = JSON.parse(await readFile(path.join(pkg.root, "input_example.json"), "utf8")) as {
      dataframe_split: { data: number[][] };
    };
    const prod = (await readFile(fixture("diabetes_linear", "prod.csv"), "utf8")).split("\n");
    expect(example.dataframe_split.data[0]).toEqual((prod[1] as string).split(",").slice(0, 10).map(Number));
  });
});

describe("mkdir guard", () => {
  it("writePackage into a missing folder is not found", async () => {
    const dir = path.join(await tempDir(), "missing");
    const error = await catchMlship(() => writePackage(dir, baseManifest()));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_NOT_FOUND");
    await mkdir(dir);
    await expect(writePackage(dir, baseManifest())).resolves.toBeDefined();
  });
});

describe("metadata.lineage", () => {
  const lineage = {
    parent: { model: "bc", version: 1, digest: "b".repeat(64) },
    derived_by: "mlship models optimize bc@1 --quantize int8-static --calibration train.csv",
    transform: { method: "int8-static", per_channel: false, calibration_rows: 426, percentile: 99.9, skipped_nodes: ["n1: no weight", "n2: tiny"] },
  };

  it("validates, writes and reads back the parent, derived_by and transform", async () => {
    const manifest = baseManifest();
    manifest.metadata.lineage = lineage;
    expect(validateManifest(manifest).metadata.lineage).toStrictEqual(lineage);
    const dir = await packageDir("placeholder: 1");
    await writePackage(dir, manifest);
    const text = await readFile(path.join(dir, "mlship.yaml"), "utf8");
    const loaded = await loadPackage(dir);
    expect(loaded.manifest.metadata.lineage).toStrictEqual(lineage);
    expect(loaded.manifest).toStrictEqual(manifest);
    expect(stringifyManifest(loaded.manifest)).toBe(text);
    // Under metadata, in the documented field order.
    expect((YAML.parse(text) as { metadata: { lineage: unknown } }).metadata.lineage).toEqual(lineage);
    expect(text.indexOf("parent:")).toBeLessThan(text.indexOf("derived_by:"));
    expect(text.indexOf("derived_by:")).toBeLessThan(text.indexOf("transform:"));
  });

  it("every field is optional; a parent needs only model and version", () => {
    const cases = [{}, { parent: { model: "bc.v2_x-1", version: 3 } }, { derived_by: "a notebook" }, { transform: {} }];
    for (const value of cases) {
      const m = validateManifest({ ...baseManifest(), metadata: { lineage: value } });
      expect(m.metadata.lineage).toStrictEqual(value);
      expect(parseManifest(stringifyManifest(m)).metadata.lineage).toStrictEqual(value);
    }
    expect(validateManifest(baseManifest()).metadata.lineage).toBeUndefined();
  });
});

describe("serving section", () => {
  it("validates and keeps the serving settings, and writes them back", () => {
    const m = validateManifest({
      ...baseManifest(),
      serving: { batching: { enabled: true, max_batch_size: 32, max_delay_ms: 4, preferred_batch_sizes: [16, 8] }, cache: { enabled: false }, max_queue: 100, timeout_ms: 5000, max_request_rows: 1000, instances: 2 },
    });
    expect(m.serving).toEqual({
      batching: { enabled: true, max_batch_size: 32, max_delay_ms: 4, preferred_batch_sizes: [8, 16] },
      cache: { enabled: false },
      max_queue: 100,
      timeout_ms: 5000,
      max_request_rows: 1000,
      instances: 2,
    });
    expect(parseManifest(stringifyManifest(m)).serving).toEqual(m.serving);
    expect(validateManifest(baseManifest()).serving).toBeUndefined();
  });

  it("names the field of a bad value", async () => {
    const cases: Array<[unknown, string, string]> = [
      [{ batching: { max_batch_size: 0 } }, "serving.batching.max_batch_size", "must be an integer >= 1"],
      [{ batching: { max_delay_ms: 1.5 } }, "serving.batching.max_delay_ms", "must be an integer >= 0"],
      [{ batching: { preferred_batch_sizes: [4, 128], max_batch_size: 64 } }, "serving.batching.preferred_batch_sizes", "must not exceed"],
      [{ batching: { enabled: "yes" } }, "serving.batching.enabled", "true or false"],
      [{ max_queue: -1 }, "serving.max_queue", ">= 1"],
      [{ max_request_rows: 0 }, "serving.max_request_rows", "must be an integer >= 1"],
      [{ max_request_rows: "many" }, "serving.max_request_rows", "must be an integer >= 1"],
      [{ speed: 1 }, "serving.speed", "unknown field"],
    ];
    for (const [serving, field, text] of cases) {
      const e = await catchMlship(() => validateManifest({ ...baseManifest(), serving }));
      expect(e.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
      expect(e.field).toBe(field);
      expect(e.message).toContain(text);
    }
  });
});
