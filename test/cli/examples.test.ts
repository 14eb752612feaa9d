import fs from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createMlship, registerModel } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { curlLine, exampleRow, mlflowBody, v2Body } from "../../src/cli/examples.js";
import { EXAMPLE_MODELS, examplesDir, registerExamples } from "../../src/cli/serve.js";
import { silentLogger } from "../../src/core/index.js";
import { loadPackage } from "../../src/package/index.js";
import { tempDir } from "./helpers.js";

const home = tempDir("examples");
afterAll(() => fs.rmSync(home, { recursive: true, force: true }));

describe("quickstart's example registration", () => {
  it("registers only what is missing and gives a hand-registered model its production alias", async () => {
    const app = await createMlship(defaultConfig({ home, "runtime.workers": 1 }), { logger: silentLogger() });
    try {
      await registerModel(app, path.join(examplesDir(), "digits"), { name: "digits" });
      expect(await registerExamples(app)).toEqual(["breast-cancer", "diabetes"]);
      const models = await app.registry.listModels();
      expect(models.map((m) => [m.name, m.latestVersion, m.aliases.production])).toEqual([
        ["breast-cancer", 1, 1],
        ["diabetes", 1, 1],
        ["digits", 1, 1],
      ]);
      expect(await registerExamples(app)).toEqual([]);
      expect((await app.registry.listModels()).map((m) => m.latestVersion)).toEqual([1, 1, 1]);
    } finally {
      await app.close();
    }
  });

  it("builds one-row MLflow and V2 bodies from each package's input example", async () => {
    for (const example of EXAMPLE_MODELS) {
      const pkg = await loadPackage(path.join(examplesDir(), example.dir));
      const row = await exampleRow(pkg.root, pkg.manifest);
      expect(row, example.name).not.toBeNull();
      const columns = pkg.manifest.signature.columns?.map((c) => c.name);
      expect(mlflowBody(row!)).toEqual({ dataframe_split: { columns, data: [row!.values] } });
      const v2 = v2Body(row!, pkg.manifest) as { inputs: Array<{ shape: number[]; datatype: string; data: unknown[] }> };
      expect(v2.inputs[0]?.datatype).toBe("FP32");
      expect(v2.inputs[0]?.shape[0]).toBe(1);
      expect(v2.inputs[0]?.shape.reduce((a, b) => a * b, 1)).toBe(row!.values.length);
    }
    expect(curlLine("http://h/x", { a: "it's" })).toBe(`curl -s http://h/x -H 'Content-Type: application/json' -d '{"a":"it'\\''s"}'`);
  });
});
