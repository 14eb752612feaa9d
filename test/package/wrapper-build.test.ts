import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import * as esbuild from "esbuild";
import YAML from "yaml";
import { describe, expect, it } from "vitest";
import {
  buildWrapperPackage,
  initWrapperPackage,
  WRAPPER_TEMPLATES,
  wrapperBundleStale,
  wrapperTemplateDir,
  type WrapperTemplate,
} from "../../src/package/index.js";
import { runCli } from "../cli/helpers.js";
import { catchMlship, fixture, readExpected, REPO, tempDir } from "./helpers.js";

/** The model each template is scaffolded with (a real fixture whose shapes fit it). */
const MODELS: Record<WrapperTemplate, string> = {
  "image-classifier": fixture("digits_cnn", "model.onnx"),
  "onnx-classifier": fixture("breast_cancer_mlp", "model.onnx"),
  tabular: fixture("diabetes_linear", "model.onnx"),
};

const ALLOWED_EXTERNAL = /^(node:.+|sharp|onnxruntime-node)$/;

/**
 * Every import the bundle still has, found independently of the build's own metafile: esbuild re-reads the bundle
 * with every bare import marked external and lists them.
 */
async function bundleImports(bundle: string): Promise<string[]> {
  const result = await esbuild.build({
    entryPoints: [bundle],
    bundle: true,
    write: false,
    metafile: true,
    platform: "neutral",
    format: "esm",
    logLevel: "silent",
    plugins: [{
      name: "all-external",
      setup(build) {
        build.onResolve({ filter: /^[^./]/ }, (args) => ({ path: args.path, external: true }));
      },
    }],
  });
  return [...new Set(Object.values(result.metafile.outputs).flatMap((o) => o.imports.map((i) => i.path)))].sort();
}

async function sha256(file: string): Promise<string> {
  return createHash("sha256").update(await fs.readFile(file)).digest("hex");
}

describe("mlship package init + build", () => {
  for (const template of WRAPPER_TEMPLATES) {
    it(`scaffolds and builds the ${template} template (type-check passes, bundle imports only natives and builtins)`, async () => {
      const dir = path.join(await tempDir(), template);
      const init = await initWrapperPackage(dir, { template, model: MODELS[template] });
      expect(init.files).toEqual(expect.arrayContaining(["mlship.yaml", "src/wrapper.ts", "tsconfig.json", "README.md", "input_example.json", "model.onnx"]));
      const manifest = YAML.parse(await fs.readFile(path.join(dir, "mlship.yaml"), "utf8")) as {
        flavor: string;
        files: Record<string, string>;
        custom: { entry: string; config: Record<string, unknown> };
        signature: { inputs: Array<{ name: string; shape: number[] }> };
      };
      expect(manifest.flavor).toBe("custom");
      expect(manifest.custom.entry).toBe("src/wrapper.ts");
      expect(manifest.files.model).toBe("build/wrapper.mjs");
      // The model's own shapes reached the manifest.
      if (template === "image-classifier") expect(manifest.custom.config).toMatchObject({ width: 8, height: 8, channels: 1, layout: "NCHW" });
      if (template === "onnx-classifier") expect(manifest.signature.inputs[0]?.shape).toEqual([-1, 30]);
      if (template === "tabular") expect(manifest.signature.inputs).toHaveLength(10);

      expect(await wrapperBundleStale(dir)).toBe(true);
      const result = await buildWrapperPackage(dir);
      expect(result.bundle).toBe(path.join(dir, "build", "wrapper.mjs"));
      expect(result.bytes).toBe((await fs.stat(result.bundle)).size);
      expect(result.sha256).toBe(await sha256(result.bundle));
      expect(await wrapperBundleStale(dir)).toBe(false);
      for (const imp of result.externals) expect(imp).toMatch(ALLOWED_EXTERNAL);
      const imports = await bundleImports(result.bundle);
      expect(imports.length).toBeGreaterThan(0);
      for (const imp of imports) expect(imp, `bundle import ${imp}`).toMatch(ALLOWED_EXTERNAL);
      // mlship/wrapper was bundled in (WrapperInputError is a real class the wrapper throws).
      expect(await fs.readFile(result.bundle, "utf8")).toMatch(/WrapperInputError = class extends Error/);
      if (template === "image-classifier") expect(imports).toContain("sharp");
    }, 120_000);
  }

  it("a bundle without native imports loads as a self-contained module from any folder; a source edit makes it stale", async () => {
    const dir = path.join(await tempDir(), "tab");
    await initWrapperPackage(dir, { template: "tabular" });
    const result = await buildWrapperPackage(dir);
    expect(await wrapperBundleStale(dir)).toBe(false);
    // An edit to the source makes the bundle stale again (mlship package test rebuilds it then).
    const later = new Date(Date.now() + 5_000);
    await fs.utimes(path.join(dir, "src", "wrapper.ts"), later, later);
    expect(await wrapperBundleStale(dir)).toBe(true);
    const mod = (await import(pathToFileURL(result.bundle).href)) as { default: { load: unknown; predict: unknown } };
    expect(typeof mod.default.load).toBe("function");
    expect(typeof mod.default.predict).toBe("function");
  }, 120_000);

  it("a type error fails the build with file:line:col and MLSHIP_ERR_PACKAGE_BUILD (library and CLI)", async () => {
    const dir = path.join(await tempDir(), "broken");
    await initWrapperPackage(dir, { template: "onnx-classifier" });
    const file = path.join(dir, "src", "wrapper.ts");
    const lines = (await fs.readFile(file, "utf8")).split("\n");
    const at = lines.findIndex((l) => l.startsWith("let useSoftmax"));
    lines.splice(at + 1, 0, "const broken: number = \"not a number\";");
    await fs.writeFile(file, lines.join("\n"));
    const line = at + 2;

    const error = await catchMlship(() => buildWrapperPackage(dir));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_BUILD");
    const diagnostics = error.details?.diagnostics as string[];
    expect(diagnostics).toHaveLength(1);
    expect(diagnostics[0]).toMatch(new RegExp(`^src/wrapper\\.ts:${line}:7 Type 'string' is not assignable to type 'number'`));
    await expect(fs.stat(path.join(dir, "build", "wrapper.mjs"))).rejects.toThrow();

    const cli = await runCli(["package", "build", dir]);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toContain(`src/wrapper.ts:${line}:7 Type 'string' is not assignable`);
    expect(cli.stderr).toMatch(/mlship: .*does not type-check.*\[MLSHIP_ERR_PACKAGE_BUILD\]/);
  }, 120_000);

  it("an import that cannot be bundled is a build error naming it; local modules and node_modules are bundled in", async () => {
    const dir = path.join(await tempDir(), "imports");
    await initWrapperPackage(dir, { template: "tabular" });
    // A dependency installed in the package folder and a local helper: both end up inside the bundle.
    await fs.mkdir(path.join(dir, "node_modules", "tiny-scale"), { recursive: true });
    await fs.writeFile(path.join(dir, "node_modules", "tiny-scale", "package.json"), JSON.stringify({ name: "tiny-scale", version: "1.0.0", main: "index.js" }));
    await fs.writeFile(path.join(dir, "node_modules", "tiny-scale", "index.js"), "exports.scale = (x) => x * 2;\n");
    await fs.writeFile(path.join(dir, "src", "helper.ts"), "export const OFFSET = 1;\n");
    const file = path.join(dir, "src", "wrapper.ts");
    const source = await fs.readFile(file, "utf8");
    await fs.writeFile(file, `// @ts-expect-error untyped CommonJS dependency\nimport { scale } from "tiny-scale";\nimport { OFFSET } from "./helper.js";\nexport const used = [scale, OFFSET];\n${source}`);
    const ok = await buildWrapperPackage(dir);
    expect(await bundleImports(ok.bundle)).toEqual(["node:module"]);
    const text = await fs.readFile(ok.bundle, "utf8");
    expect(text).toContain("x * 2");

    await fs.writeFile(file, `// @ts-expect-error not installed anywhere\nimport missing from "no-such-package-xyz";\nexport const used = missing;\n${source}`);
    const error = await catchMlship(() => buildWrapperPackage(dir));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_BUILD");
    expect(error.details?.diagnostics).toEqual([expect.stringMatching(/^src\/wrapper\.ts:2:\d+ cannot resolve import "no-such-package-xyz"/)]);
  }, 120_000);

  it("init refuses a non-empty folder and an unknown template", async () => {
    const dir = await tempDir();
    await fs.writeFile(path.join(dir, "keep.txt"), "mine");
    const error = await catchMlship(() => initWrapperPackage(dir, { template: "tabular" }));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_INVALID");
    expect(error.message).toContain("is not empty");
    expect(await fs.readdir(dir)).toEqual(["keep.txt"]);

    const cli = await runCli(["package", "init", dir, "--template", "tabular"]);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toMatch(/mlship: .* is not empty .*\[MLSHIP_ERR_PACKAGE_INVALID\]/);
    const usage = await runCli(["package", "init", path.join(dir, "new"), "--template", "nope"]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("MLSHIP_ERR_CLI_USAGE");
  });

  it("the CLI scaffolds and builds, printing the bundle path, size and sha256", async () => {
    const dir = path.join(await tempDir(), "cli-pkg");
    const init = await runCli(["package", "init", dir, "--template", "onnx-classifier", "--model", MODELS["onnx-classifier"]]);
    expect(init.code, init.stderr).toBe(0);
    expect(init.stdout).toContain("src/wrapper.ts");
    const built = await runCli(["package", "build", dir]);
    expect(built.code, built.stderr).toBe(0);
    const bundle = path.join(dir, "build", "wrapper.mjs");
    expect(built.stdout).toContain(`built ${bundle}`);
    expect(built.stdout).toContain(`sha256  ${await sha256(bundle)}`);
    expect(built.stdout).toMatch(new RegExp(`\\(${(await fs.stat(bundle)).size} bytes\\)`));
  }, 120_000);

  it("the onnx-classifier and tabular templates serve their fixture models as scaffolded (mlship package test)", async () => {
    const root = await tempDir();
    const n = 5;
    // onnx-classifier on the breast cancer MLP: a features vector per row, MLflow `inputs` form.
    const bc = await readExpected("breast_cancer_mlp");
    const classifier = path.join(root, "bc");
    await initWrapperPackage(classifier, { template: "onnx-classifier", model: MODELS["onnx-classifier"] });
    const bcInput = path.join(root, "bc.json");
    await fs.writeFile(bcInput, JSON.stringify({ inputs: { features: bc.inputs.slice(0, n) } }));
    const bcRun = await runCli(["package", "test", classifier, "--input", bcInput]);
    expect(bcRun.code, bcRun.stderr).toBe(0);
    // `inputs` in, columns out (MLflow's tensor-input response form).
    const columnar = (JSON.parse(bcRun.stdout) as { predictions: { prediction: string[]; probabilities: Array<Record<string, number>> } }).predictions;
    expect(columnar.prediction).toHaveLength(n);
    const bcOut = columnar.prediction.map((prediction, i) => ({ prediction, probabilities: columnar.probabilities[i] as Record<string, number> }));
    bcOut.forEach((row, i) => {
      expect(row.prediction).toBe(String((bc.outputs.label as number[])[i]));
      const want = (bc.outputs.probabilities as number[][])[i] as number[];
      expect(Math.abs((row.probabilities["0"] as number) - (want[0] as number))).toBeLessThanOrEqual(1e-5);
      expect(Math.abs((row.probabilities["1"] as number) - (want[1] as number))).toBeLessThanOrEqual(1e-5);
    });

    // tabular on the diabetes regression: one column per feature, a CSV file.
    const db = await readExpected("diabetes_linear");
    const tabular = path.join(root, "db");
    await initWrapperPackage(tabular, { template: "tabular", model: MODELS.tabular });
    const csv = path.join(root, "db.csv");
    const columns = Array.from({ length: 10 }, (_, i) => `feature_${i}`);
    await fs.writeFile(csv, [columns.join(","), ...db.inputs.slice(0, n).map((r) => r.join(","))].join("\n"));
    const dbRun = await runCli(["package", "test", tabular, "--input", csv]);
    expect(dbRun.code, dbRun.stderr).toBe(0);
    const dbOut = (JSON.parse(dbRun.stdout) as { predictions: Array<{ prediction: number }> }).predictions;
    expect(dbOut.map((r, i) => Math.abs(r.prediction - ((db.outputs.prediction as number[][])[i]?.[0] as number)))
      .every((d) => d <= 1e-3)).toBe(true);
  }, 180_000);

  it("examples/image-classifier is the image-classifier template scaffolded with the digits fixture", async () => {
    const dir = path.join(await tempDir(), "image-classifier");
    await initWrapperPackage(dir, { template: "image-classifier", model: MODELS["image-classifier"], name: "image-classifier" });
    const example = path.join(REPO, "examples", "image-classifier");
    for (const rel of ["src/wrapper.ts", "tsconfig.json", "labels.json", "model.onnx"]) {
      expect(await fs.readFile(path.join(example, rel)), rel).toEqual(await fs.readFile(path.join(dir, rel)));
    }
    // The template's wrapper itself, byte for byte: one wrapper, not two copies that drift.
    expect(await fs.readFile(path.join(example, "src/wrapper.ts"))).toEqual(
      await fs.readFile(path.join(wrapperTemplateDir("image-classifier"), "src/wrapper.ts")));
    const read = async (root: string): Promise<Record<string, unknown>> =>
      YAML.parse(await fs.readFile(path.join(root, "mlship.yaml"), "utf8")) as Record<string, unknown>;
    const [mine, theirs] = [await read(dir), await read(example)];
    for (const key of ["flavor", "files", "signature", "custom"]) expect(theirs[key], key).toEqual(mine[key]);
  }, 60_000);
});
