// `metadata.lineage` of a package survives registration on both SQL backends: the version record's manifest, the
// stored (immutable) package's mlship.yaml and a second package written from the record all carry it unchanged.
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadPackage, stringifyManifest, writePackage } from "../../src/package/index.js";
import type { PackageLineage } from "../../src/package/index.js";
import { createRegistry } from "../../src/registry/index.js";
import { LocalArtifactStore } from "../../src/store/index.js";
import { freshPostgres, freshSqlite, postgresAdmin, type FreshDatabase } from "../helpers/sql-stores.js";
import { BREAST_CANCER_ONNX, breastCancerManifest } from "./packages.js";

let admin: pg.Client;

beforeAll(async () => {
  admin = await postgresAdmin();
});

afterAll(async () => {
  await admin.end();
});

const backends: Array<[string, () => Promise<FreshDatabase>]> = [
  ["SQLite", () => freshSqlite("mlship-lineage")],
  ["PostgreSQL", () => freshPostgres(admin, "mlship-lineage")],
];

/** The fixture model as an ordinary writable file of the package (the fixture itself is read-only). */
async function copyModel(dir: string): Promise<void> {
  await fs.copyFile(BREAST_CANCER_ONNX, path.join(dir, "model.onnx"));
  await fs.chmod(path.join(dir, "model.onnx"), 0o644);
}

describe.each(backends)("metadata.lineage round trip (%s)", (_label, fresh) => {
  it("keeps the parent, derived_by and transform through register, the stored package and a re-registration", async () => {
    const database = await fresh();
    const work = await fs.mkdtemp(path.join(os.tmpdir(), "mlship-lineage-"));
    const registry = createRegistry({ store: await database.open(), artifacts: new LocalArtifactStore(path.join(work, "artifacts")) });
    try {
      // The parent: a plain package; the child names it (model, version, digest) in its lineage.
      const parentDir = path.join(work, "parent");
      await fs.mkdir(parentDir);
      await copyModel(parentDir);
      await writePackage(parentDir, breastCancerManifest());
      const parent = await registry.register({ name: "bc", packageDir: parentDir });
      expect(parent.manifest.metadata.lineage).toBeUndefined();

      const lineage: PackageLineage = {
        parent: { model: parent.name, version: parent.version, digest: parent.digest },
        derived_by: "mlship models optimize bc@1 --quantize int8-dynamic",
        transform: { method: "int8-dynamic", per_channel: false, percentile: 99.9, quantized_nodes: ["/fc1/MatMul", "/fc2/MatMul"] },
      };
      const childDir = path.join(work, "child");
      await fs.mkdir(childDir);
      await copyModel(childDir);
      const manifest = breastCancerManifest();
      await writePackage(childDir, { ...manifest, metadata: { ...manifest.metadata, lineage } });
      const child = await registry.register({ name: "bc-int8", packageDir: childDir, source: "models:/bc/1" });

      // The record (as the HTTP API and `models show --json` return it) and a fresh read of it.
      expect(child.manifest.metadata.lineage).toStrictEqual(lineage);
      expect((await registry.getVersion("bc-int8", 1)).manifest.metadata.lineage).toStrictEqual(lineage);
      expect((await registry.listVersions("bc-int8"))[0]?.manifest.metadata.lineage).toStrictEqual(lineage);

      // The stored package: its mlship.yaml holds the lineage, and writing it again gives the same bytes.
      const storedPkg = await loadPackage(await new LocalArtifactStore(path.join(work, "artifacts")).materialize(child.digest));
      expect(storedPkg.manifest.metadata.lineage).toStrictEqual(lineage);
      const text = await fs.readFile(path.join(storedPkg.root, "mlship.yaml"), "utf8");
      expect(text).toContain(`digest: ${parent.digest}`);
      expect(text).toContain("derived_by: mlship models optimize bc@1 --quantize int8-dynamic");
      expect(stringifyManifest(storedPkg.manifest)).toBe(text);

      // A package written from the record (an export of the version) registers to the same lineage and digest.
      const againDir = path.join(work, "again");
      await fs.mkdir(againDir);
      await copyModel(againDir);
      await writePackage(againDir, child.manifest);
      const again = await registry.register({ name: "bc-int8", packageDir: againDir });
      expect(again.digest).toBe(child.digest);
      expect(again.manifest.metadata.lineage).toStrictEqual(lineage);
    } finally {
      await registry.close();
      await database.dispose();
      await fs.rm(work, { recursive: true, force: true });
    }
  });
});
