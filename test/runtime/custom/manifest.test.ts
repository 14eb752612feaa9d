/**
 * mlship.yaml for flavor custom: the custom section, content_type on tensor specs, the checks that only apply to
 * wrappers, and registering a custom package (no ONNX graph check; the bundle must exist).
 */
import { mkdtemp, rm, unlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, test } from "vitest";
import { importModel, parseManifest, stringifyManifest, validateManifest } from "../../../src/package/index.js";
import { makePackage, X_TO_Y } from "./helpers.js";

const base = {
  format_version: 1,
  flavor: "custom",
  files: { model: "build/wrapper.mjs" },
  signature: {
    inputs: [{ name: "image", dtype: "string", shape: [-1], content_type: "base64" }],
    outputs: [
      { name: "prediction", dtype: "string", shape: [-1] },
      { name: "probabilities", dtype: "string", shape: [-1], content_type: "json" },
    ],
  },
  custom: { entry: "src/wrapper.ts", config: { top_k: 3 }, timeout_ms: 1000, memory_mb: 256, allow_read: ["/data/features"], allow_write: true },
};

function withChange(change: (m: typeof base & Record<string, unknown>) => void): unknown {
  const m = structuredClone(base) as typeof base & Record<string, unknown>;
  change(m);
  return m;
}

describe("custom manifests", () => {
  test("a full custom manifest validates and round-trips through YAML", () => {
    const m = validateManifest(base);
    expect(m.flavor).toBe("custom");
    expect(m.custom).toEqual(base.custom);
    expect(m.signature.inputs[0]?.content_type).toBe("base64");
    expect(m.signature.outputs[1]?.content_type).toBe("json");
    expect(parseManifest(stringifyManifest(m))).toEqual(m);
  });

  test.each([
    ["an input with content_type json", (m: typeof base) => { (m.signature.inputs[0] as Record<string, unknown>).content_type = "json"; }, "signature.inputs[0].content_type"],
    ["an output with content_type base64", (m: typeof base) => { (m.signature.outputs[1] as Record<string, unknown>).content_type = "base64"; }, "signature.outputs[1].content_type"],
    ["a json output that is not a string", (m: typeof base) => { (m.signature.outputs[1] as Record<string, unknown>).dtype = "float32"; }, "signature.outputs[1].content_type"],
    ["a json output with trailing dims", (m: typeof base) => { (m.signature.outputs[1] as Record<string, unknown>).shape = [-1, 2]; }, "signature.outputs[1].shape"],
    ["an unbatched tensor", (m: typeof base) => { (m.signature.outputs[0] as Record<string, unknown>).shape = [3]; }, "signature.outputs[0].shape"],
    ["a float16 tensor", (m: typeof base) => { m.signature.inputs[0] = { name: "x", dtype: "float16", shape: [-1] } as never; }, "signature.inputs[0].dtype"],
    ["an unknown custom key", (m: typeof base) => { (m.custom as Record<string, unknown>).threads = 2; }, "custom.threads"],
    ["a zero timeout", (m: typeof base) => { m.custom.timeout_ms = 0; }, "custom.timeout_ms"],
    ["a tiny heap", (m: typeof base) => { m.custom.memory_mb = 4; }, "custom.memory_mb"],
    ["a relative allow_read path", (m: typeof base) => { m.custom.allow_read = ["data"]; }, "custom.allow_read[0]"],
    ["an entry outside the package", (m: typeof base) => { m.custom.entry = "../x.ts"; }, "custom.entry"],
    ["allow_write not a boolean", (m: typeof base) => { (m.custom as Record<string, unknown>).allow_write = "yes"; }, "custom.allow_write"],
  ])("refuses %s, naming the field", (_what, change, field) => {
    expect(() => validateManifest(withChange(change))).toThrow(expect.objectContaining({ code: "MLSHIP_ERR_PACKAGE_INVALID", field }) as Error);
  });

  test("the custom section and content_type belong to flavor custom only", () => {
    const onnx = { ...base, flavor: "onnx", files: { model: "model.onnx" } };
    expect(() => validateManifest(onnx)).toThrow(expect.objectContaining({ field: "custom" }) as Error);
    const { custom: _custom, ...noCustom } = onnx;
    expect(() => validateManifest(noCustom)).toThrow(expect.objectContaining({ field: "signature.inputs[0].content_type" }) as Error);
  });

  test("the custom section is optional (defaults apply in the runtime)", () => {
    const { custom: _custom, ...rest } = base;
    expect(validateManifest(rest).custom).toBeUndefined();
  });
});

describe("registering a custom package", () => {
  test("imports without an ONNX graph check, and refuses a package whose bundle was not built", async () => {
    const pkg = await makePackage({ wrapper: "throwing.mjs", ...X_TO_Y });
    const staging = await mkdtemp(path.join(os.tmpdir(), "mlship-custom-import-"));
    try {
      const imported = await importModel(pkg.dir, { stagingDir: path.join(staging, "a") });
      expect(imported.manifest.flavor).toBe("custom");
      expect(imported.manifest.files.model).toBe("build/wrapper.mjs");
      await unlink(path.join(pkg.dir, "build", "wrapper.mjs"));
      await expect(importModel(pkg.dir, { stagingDir: path.join(staging, "b") })).rejects.toMatchObject({
        code: "MLSHIP_ERR_PACKAGE_INVALID",
        field: "files.model",
        message: expect.stringContaining(`run \`mlship package build ${pkg.dir}\``) as unknown,
      });
    } finally {
      pkg.cleanup();
      await rm(staging, { recursive: true, force: true });
    }
  });
});
