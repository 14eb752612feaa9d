/**
 * Edge cases of `mlship package build`'s manifest and tsconfig handling: a folder whose name starts with two dots
 * is inside the package; a tsconfig whose `files` list is empty does not matter (the entry is the root), like one
 * whose `include` matches nothing; a tsconfig that does not parse fails the build naming it.
 */
import fs from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { buildWrapperPackage, readWrapperManifest, wrapperBundleStale } from "../../src/package/index.js";
import { catchMlship, tempDir } from "./helpers.js";

const SOURCE = `import type { ModelWrapper } from "mlship/wrapper";
const wrapper: ModelWrapper = { predict: (_context, rows) => rows.map((r) => ({ y: Number(r.x) + 1 })) };
export default wrapper;
`;

async function wrapperPackage(entry: string, tsconfig?: unknown): Promise<string> {
  const dir = await tempDir("mlship-build-edges-");
  await fs.writeFile(path.join(dir, "mlship.yaml"), [
    "format_version: 1", "flavor: custom", "files: { model: build/wrapper.mjs }", `custom: { entry: ${JSON.stringify(entry)} }`,
    "signature: { inputs: [{ name: x, dtype: float64, shape: [-1] }], outputs: [{ name: y, dtype: float64, shape: [-1] }] }", "",
  ].join("\n"));
  await fs.mkdir(path.dirname(path.join(dir, entry)), { recursive: true });
  await fs.writeFile(path.join(dir, entry), SOURCE);
  if (tsconfig !== undefined) await fs.writeFile(path.join(dir, "tsconfig.json"), typeof tsconfig === "string" ? tsconfig : JSON.stringify(tsconfig));
  return dir;
}

describe("package build edge cases", () => {
  it("an entry in a folder named '..src' is inside the package; '../x.ts' is not", async () => {
    const dir = await wrapperPackage("..src/wrapper.ts");
    const info = await readWrapperManifest(dir);
    expect(info.entry).toBe(path.join(dir, "..src", "wrapper.ts"));
    const built = await buildWrapperPackage(dir, { typecheck: false });
    expect(built.bytes).toBeGreaterThan(0);
    const outside = await wrapperPackage("src/wrapper.ts");
    await fs.writeFile(path.join(outside, "mlship.yaml"), (await fs.readFile(path.join(outside, "mlship.yaml"), "utf8")).replace('"src/wrapper.ts"', '"../wrapper.ts"'));
    const error = await catchMlship(() => readWrapperManifest(outside));
    expect(error).toMatchObject({ code: "MLSHIP_ERR_PACKAGE_INVALID", field: "custom.entry" });
  });

  it("a tsconfig with an empty files list type-checks the entry; one that does not parse fails naming tsconfig.json", async () => {
    const dir = await wrapperPackage("src/wrapper.ts", { compilerOptions: { strict: true, module: "NodeNext", moduleResolution: "NodeNext", skipLibCheck: true }, files: [] });
    const built = await buildWrapperPackage(dir);
    expect(built.bytes).toBeGreaterThan(0);
    const broken = await wrapperPackage("src/wrapper.ts", '{ "compilerOptions": { "strict": true, }, oops }');
    const error = await catchMlship(() => buildWrapperPackage(broken));
    expect(error.code).toBe("MLSHIP_ERR_PACKAGE_BUILD");
    expect(error.message).toMatch(/tsconfig\.json:1:\d+ /);
  });

  it("the staleness check skips a dangling link among the sources (an editor's lock file) instead of failing", async () => {
    const dir = await wrapperPackage("src/wrapper.ts");
    await buildWrapperPackage(dir, { typecheck: false });
    await fs.symlink("user@host.1234:1700000000", path.join(dir, "src", ".#wrapper.ts"));
    await expect(wrapperBundleStale(dir)).resolves.toBe(false);
  });
});
