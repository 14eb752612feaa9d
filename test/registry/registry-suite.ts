import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MlshipError, type ErrorCode } from "../../src/core/index.js";
import { createRegistry, type Registry } from "../../src/registry/index.js";
import { LocalArtifactStore, type SqlStore } from "../../src/store/index.js";
import { BREAST_CANCER_ONNX, makePackage } from "./packages.js";

/** One empty database per test; `open()` gives a new, independent connection to it each time. */
export interface SuiteDatabase {
  open(): Promise<SqlStore>;
  dispose(): Promise<void>;
}

export interface SuiteBackend {
  fresh(): Promise<SuiteDatabase>;
}

export async function expectMlshipError(
  promise: Promise<unknown>,
  code: ErrorCode,
  ...fragments: string[]
): Promise<MlshipError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected ${code}`).toBeInstanceOf(MlshipError);
  const error = caught as MlshipError;
  expect(error.code).toBe(code);
  for (const fragment of fragments) expect(error.message).toContain(fragment);
  return error;
}

function sha256Hex(bytes: Buffer | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * The registry conformance suite: every behaviour of the Registry interface, run unchanged on each SQL backend.
 */
export function registrySuite(label: string, backend: SuiteBackend): void {
  describe(`registry conformance (${label})`, () => {
    let database: SuiteDatabase;
    let work: string;
    let artifacts: LocalArtifactStore;
    let registry: Registry;
    const extra: Registry[] = [];
    const savedUser = process.env.MLSHIP_USER;

    /** A second registry on a separate connection to the same database and artifact folder (another process's view). */
    async function secondRegistry(): Promise<Registry> {
      const r = createRegistry({ store: await database.open(), artifacts: new LocalArtifactStore(artifacts.root) });
      extra.push(r);
      return r;
    }

    async function registerN(name: string, count: number, reg: Registry = registry): Promise<number[]> {
      const versions: number[] = [];
      for (let i = 0; i < count; i += 1) {
        const dir = await makePackage({ params: { seed: `${name}-${versions.length}-${Math.random()}` }, parent: work });
        versions.push((await reg.register({ name, packageDir: dir })).version);
      }
      return versions;
    }

    beforeEach(async () => {
      process.env.MLSHIP_USER = "suite-user";
      database = await backend.fresh();
      work = await fs.mkdtemp(path.join(os.tmpdir(), "mlship-registry-"));
      artifacts = new LocalArtifactStore(path.join(work, "artifacts"));
      registry = createRegistry({ store: await database.open(), artifacts });
    });

    afterEach(async () => {
      await registry.close();
      for (const r of extra.splice(0)) await r.close();
      await database.dispose();
      await fs.rm(work, { recursive: true, force: true });
      if (savedUser === undefined) delete process.env.MLSHIP_USER;
      else process.env.MLSHIP_USER = savedUser;
    });

    describe("register", () => {
      it("numbers versions 1, 2, 3 per model and records what was registered", async () => {
        const dir = await makePackage({ params: { seed: 1 }, parent: work });
        const v1 = await registry.register({
          name: "breast-cancer",
          packageDir: dir,
          tags: { team: "ml", owner: "alice" },
          metrics: { auc: 0.99 },
          description: "first cut",
          by: "alice",
        });
        expect(v1.name).toBe("breast-cancer");
        expect(v1.version).toBe(1);
        expect(v1.status).toBe("ready");
        expect(v1.digest).toMatch(/^[0-9a-f]{64}$/);
        expect(v1.manifest.flavor).toBe("onnx");
        expect(v1.manifest.signature.inputs[0]).toEqual({ name: "input", dtype: "float32", shape: [-1, 30] });
        expect(v1.source).toBe(path.resolve(dir));
        expect(v1.createdBy).toBe("alice");
        expect(v1.description).toBe("first cut");
        // Input tags/metrics are laid over the manifest's metadata.
        expect(v1.tags).toEqual({ dataset: "breast_cancer", owner: "alice", team: "ml" });
        expect(v1.metrics).toEqual({ accuracy: 0.965, auc: 0.99 });
        expect(v1.archivedAt).toBeNull();
        expect(v1.aliases).toEqual([]);
        expect(new Date(v1.createdAt).toISOString()).toBe(v1.createdAt);

        const v2 = await registry.register({ name: "breast-cancer", packageDir: await makePackage({ params: { seed: 2 }, parent: work }) });
        const v3 = await registry.register({ name: "breast-cancer", packageDir: await makePackage({ params: { seed: 3 }, parent: work }) });
        expect([v2.version, v3.version]).toEqual([2, 3]);
        expect(v2.createdBy).toBe("suite-user");
        expect(v2.description).toBe("breast cancer MLP from the shared fixtures");

        const other = await registry.register({ name: "diabetes", packageDir: await makePackage({ model: "diabetes", parent: work }) });
        expect(other.version).toBe(1);

        const model = await registry.getModel("breast-cancer");
        expect(model.latestVersion).toBe(3);
        expect(model.aliases).toEqual({});
        // The model took its first version's description; later versions do not change it.
        expect(model.description).toBe("first cut");
        expect(model.tags).toEqual({});
        expect((await registry.listVersions("breast-cancer")).map((v) => v.version)).toEqual([1, 2, 3]);
        expect(await registry.getVersion("breast-cancer", 1)).toEqual(v1);
      });

      it("refuses invalid model names and stores nothing", async () => {
        const dir = await makePackage({ parent: work });
        for (const name of ["", "has space", "-leading", ".hidden", "a/b", "é", "x".repeat(201)]) {
          await expectMlshipError(registry.register({ name, packageDir: dir }), "MLSHIP_ERR_REGISTRY_NAME_INVALID");
        }
        expect(await registry.listModels()).toEqual([]);
        for (const name of ["a", "A.b_c-1", "9lives"]) {
          expect((await registry.register({ name, packageDir: dir })).version).toBe(1);
        }
      });

      it("reports a folder that is not a package", async () => {
        await expectMlshipError(
          registry.register({ name: "m", packageDir: path.join(work, "nope") }),
          "MLSHIP_ERR_PACKAGE_NOT_FOUND",
          "nope",
        );
        await expectMlshipError(registry.getModel("m"), "MLSHIP_ERR_MODEL_NOT_FOUND", '"m"');
      });

      it("refuses tags and metrics of the wrong type, naming the field", async () => {
        const dir = await makePackage({ parent: work });
        const badTags = { team: 3 } as unknown as Record<string, string>;
        const error = await expectMlshipError(
          registry.register({ name: "m", packageDir: dir, tags: badTags }),
          "MLSHIP_ERR_INPUT_INVALID",
          "tags.team",
        );
        expect(error.field).toBe("tags.team");
        await expectMlshipError(
          registry.register({ name: "m", packageDir: dir, metrics: { loss: Number.NaN } }),
          "MLSHIP_ERR_INPUT_INVALID",
          "metrics.loss",
        );
      });
    });

    describe("artifacts", () => {
      it("gives identical files the same digest and stores them once", async () => {
        const a = await makePackage({ params: { seed: "same" }, parent: work });
        const b = await makePackage({ params: { seed: "same" }, parent: work });
        const c = await makePackage({ params: { seed: "different" }, parent: work });
        const v1 = await registry.register({ name: "m", packageDir: a });
        const v2 = await registry.register({ name: "m", packageDir: b });
        const v3 = await registry.register({ name: "m", packageDir: c });
        expect(v1.digest).toBe(v2.digest);
        expect(v3.digest).not.toBe(v1.digest);
        expect([v1.version, v2.version, v3.version]).toEqual([1, 2, 3]);
        const r1 = await registry.resolve("m@1");
        const r2 = await registry.resolve("m@2");
        expect(r1.packageDir).toBe(r2.packageDir);
        const stored = await fs.readdir(path.join(artifacts.root, "sha256"));
        expect(stored.sort()).toEqual([v1.digest, v3.digest].sort());

        // The documented algorithm, computed independently.
        const files = ["mlship.yaml", "model.onnx"].sort();
        let text = "";
        for (const f of files) text += `${f}\0${sha256Hex(await fs.readFile(path.join(a, f)))}\n`;
        expect(v1.digest).toBe(sha256Hex(text));
      });

      it("keeps registered files immutable: a read-only copy, independent of the source", async () => {
        const dir = await makePackage({ parent: work });
        const v = await registry.register({ name: "m", packageDir: dir });
        const { packageDir } = await registry.resolve("m@1");
        expect(packageDir.startsWith(artifacts.root)).toBe(true);
        expect(path.basename(packageDir)).toBe(v.digest);
        for (const f of ["mlship.yaml", "model.onnx"]) {
          const mode = (await fs.stat(path.join(packageDir, f))).mode;
          expect(mode & 0o222).toBe(0);
        }
        const original = await fs.readFile(BREAST_CANCER_ONNX);
        expect(await fs.readFile(path.join(packageDir, "model.onnx"))).toEqual(original);
        // Changing the source afterwards does not touch the registered version.
        await fs.writeFile(path.join(dir, "model.onnx"), "overwritten");
        expect(await fs.readFile(path.join(packageDir, "model.onnx"))).toEqual(original);
        expect((await artifacts.verify(v.digest)).ok).toBe(true);
        expect((await registry.getVersion("m", 1)).digest).toBe(v.digest);
      });

      it("changes only tags on a version; digest, manifest and source stay as registered", async () => {
        const v = await registry.register({ name: "m", packageDir: await makePackage({ parent: work }) });
        const tagged = await registry.setVersionTags("m", 1, { stage: "qa" });
        expect(tagged.tags).toEqual({ stage: "qa" });
        expect({ ...tagged, tags: v.tags }).toEqual(v);
        expect(await registry.getVersion("m", 1)).toEqual(tagged);
      });
    });

    describe("resolve", () => {
      beforeEach(async () => {
        await registerN("iris", 3);
      });

      it("resolves a bare name to the highest version that is not archived when there is no production alias", async () => {
        const r = await registry.resolve("iris");
        expect(r.version.version).toBe(3);
        expect(r.alias).toBeUndefined();
        expect(r.ref).toEqual({ name: "iris" });
        await registry.archive("iris", 3);
        expect((await registry.resolve("iris")).version.version).toBe(2);
        expect((await registry.getModel("iris")).latestVersion).toBe(3);
      });

      it("resolves a bare name through production when it is set", async () => {
        await registry.setAlias("iris", "production", 1);
        const r = await registry.resolve("iris");
        expect(r.version.version).toBe(1);
        expect(r.alias).toBe("production");
        expect(r.version.aliases).toEqual(["production"]);
      });

      it("resolves every reference form", async () => {
        await registry.setAlias("iris", "staging", 2);
        await registry.setAlias("iris", "production", 1);
        const cases: Array<[string, number, string | undefined]> = [
          ["iris", 1, "production"],
          ["iris@3", 3, undefined],
          ["iris@v2", 2, undefined],
          ["iris@latest", 3, undefined],
          ["iris@staging", 2, "staging"],
          ["iris@production", 1, "production"],
          ["models:/iris@staging", 2, "staging"],
          ["models:/iris/3", 3, undefined],
          ["models:/iris/latest", 3, undefined],
          ["models:/iris", 1, "production"],
        ];
        for (const [ref, version, alias] of cases) {
          const r = await registry.resolve(ref);
          expect(r.version.version, ref).toBe(version);
          expect(r.alias, ref).toBe(alias);
          expect(r.version.name).toBe("iris");
          const files = await fs.readdir(r.packageDir);
          expect(files.sort(), ref).toEqual(["mlship.yaml", "model.onnx"]);
        }
        expect((await registry.resolve({ name: "iris", version: 2 })).version.version).toBe(2);
        expect((await registry.resolve({ name: "iris", alias: "staging" })).alias).toBe("staging");
      });

      it("reports unknown models, versions, aliases and archived versions by name", async () => {
        await expectMlshipError(registry.resolve("nosuch"), "MLSHIP_ERR_MODEL_NOT_FOUND", '"nosuch"');
        await expectMlshipError(registry.resolve("nosuch@production"), "MLSHIP_ERR_MODEL_NOT_FOUND", '"nosuch"');
        await expectMlshipError(registry.resolve("iris@9"), "MLSHIP_ERR_MODEL_VERSION_NOT_FOUND", "no version 9", "latest is 3");
        await expectMlshipError(registry.resolve("iris@canary"), "MLSHIP_ERR_MODEL_ALIAS_NOT_FOUND", '"canary"');
        await registry.archive("iris", 2);
        await expectMlshipError(registry.resolve("iris@2"), "MLSHIP_ERR_MODEL_VERSION_NOT_FOUND", "version 2", "archived");
        await expectMlshipError(registry.resolve("models:/iris/2"), "MLSHIP_ERR_MODEL_VERSION_NOT_FOUND", "archived");
        for (const bad of ["", "iris@", "@3", "iris@0", "iris@a b", "models:/iris/staging", "iris/3", "a b"]) {
          await expectMlshipError(registry.resolve(bad), "MLSHIP_ERR_MODEL_REF_INVALID", `"${bad}"`);
        }
      });

      it("reports a model whose versions are all archived", async () => {
        for (const v of [1, 2, 3]) await registry.archive("iris", v);
        await expectMlshipError(registry.resolve("iris"), "MLSHIP_ERR_MODEL_VERSION_NOT_FOUND", "not archived");
        await expectMlshipError(registry.resolve("iris@latest"), "MLSHIP_ERR_MODEL_VERSION_NOT_FOUND");
      });
    });

    describe("aliases", () => {
      beforeEach(async () => {
        await registerN("m", 3);
      });

      it("refuses reserved and malformed alias names", async () => {
        for (const alias of ["3", "007", "v2", "V12", "latest", "LATEST", "", "has space", "-x", "a/b", "a@b"]) {
          await expectMlshipError(registry.setAlias("m", alias, 1), "MLSHIP_ERR_REGISTRY_ALIAS_INVALID");
        }
        for (const alias of ["production", "staging", "canary-2", "v2beta", "blue_green", "A.b"]) {
          expect((await registry.setAlias("m", alias, 1)).to).toBe(1);
        }
        expect(Object.keys((await registry.getModel("m")).aliases)).toEqual(
          ["A.b", "blue_green", "canary-2", "production", "staging", "v2beta"],
        );
      });

      it("refuses to point an alias at an unknown or archived version, or on an unknown model", async () => {
        await expectMlshipError(registry.setAlias("m", "production", 7), "MLSHIP_ERR_MODEL_VERSION_NOT_FOUND", "7");
        await expectMlshipError(registry.setAlias("nope", "production", 1), "MLSHIP_ERR_MODEL_NOT_FOUND", '"nope"');
        await registry.archive("m", 2);
        const e = await expectMlshipError(registry.setAlias("m", "production", 2), "MLSHIP_ERR_REGISTRY_CONFLICT", "archived");
        expect(e.httpStatus).toBe(409);
        expect(await registry.aliasHistory("m")).toEqual([]);
      });

      it("records every move with from, to, when, who, why and the action", async () => {
        const before = new Date().toISOString();
        const e1 = await registry.setAlias("m", "production", 1, { by: "alice", reason: "first release" });
        const e2 = await registry.setAlias("m", "production", 2, { reason: "better recall" });
        const e3 = await registry.setAlias("m", "staging", 3, { by: "bob" });
        const e4 = await registry.deleteAlias("m", "staging", { by: "bob", reason: "done testing" });
        const e5 = await registry.rollback("m", "production", { by: "carol", reason: "latency regression" });

        expect(e1).toMatchObject({ name: "m", alias: "production", from: null, to: 1, by: "alice", reason: "first release", action: "set" });
        expect(e2).toMatchObject({ alias: "production", from: 1, to: 2, by: "suite-user", reason: "better recall", action: "set" });
        expect(e3).toMatchObject({ alias: "staging", from: null, to: 3, by: "bob", reason: null, action: "set" });
        expect(e4).toMatchObject({ alias: "staging", from: 3, to: null, by: "bob", reason: "done testing", action: "delete" });
        expect(e5).toMatchObject({ alias: "production", from: 2, to: 1, by: "carol", reason: "latency regression", action: "rollback" });

        const all = await registry.aliasHistory("m");
        expect(all).toEqual([e1, e2, e3, e4, e5]);
        const ids = all.map((e) => e.id);
        expect([...ids].sort((a, b) => a - b)).toEqual(ids);
        expect(new Set(ids).size).toBe(5);
        for (const e of all) {
          expect(new Date(e.at).toISOString()).toBe(e.at);
          expect(e.at >= before).toBe(true);
        }
        expect(await registry.aliasHistory("m", "production")).toEqual([e1, e2, e5]);
        expect(await registry.aliasHistory("m", "staging")).toEqual([e3, e4]);
        expect(await registry.aliasHistory("m", "canary")).toEqual([]);
        await expectMlshipError(registry.aliasHistory("zzz"), "MLSHIP_ERR_MODEL_NOT_FOUND", '"zzz"');

        expect((await registry.getModel("m")).aliases).toEqual({ production: 1 });
        expect((await registry.getVersion("m", 1)).aliases).toEqual(["production"]);
        await expectMlshipError(registry.deleteAlias("m", "staging"), "MLSHIP_ERR_MODEL_ALIAS_NOT_FOUND", '"staging"');
      });
    });

    describe("rollback", () => {
      beforeEach(async () => {
        await registerN("m", 4);
      });

      it("moves the alias to its previous target in history, not to version N-1", async () => {
        await registry.setAlias("m", "production", 1);
        await registry.setAlias("m", "production", 3);
        const e = await registry.rollback("m");
        expect(e).toMatchObject({ alias: "production", from: 3, to: 1, action: "rollback" });
        expect((await registry.resolve("m")).version.version).toBe(1);
        expect((await registry.resolve("m@production")).version.version).toBe(1);
      });

      it("walks further back on a second rollback and stops with NO_ROLLBACK when none is left", async () => {
        await registry.setAlias("m", "production", 1);
        await registry.setAlias("m", "production", 2);
        await registry.setAlias("m", "production", 3);
        expect((await registry.rollback("m")).to).toBe(2);
        expect((await registry.rollback("m")).to).toBe(1);
        const e = await expectMlshipError(registry.rollback("m"), "MLSHIP_ERR_REGISTRY_NO_ROLLBACK", '"production"', '"m"');
        expect(e.httpStatus).toBe(409);
        expect((await registry.resolve("m")).version.version).toBe(1);
      });

      it("returns to the previous deployment after a new set, and undoes a manual move back", async () => {
        await registry.setAlias("m", "production", 1);
        await registry.setAlias("m", "production", 2);
        await registry.setAlias("m", "production", 3);
        expect((await registry.rollback("m")).to).toBe(2);
        await registry.setAlias("m", "production", 4);
        expect((await registry.rollback("m")).to).toBe(2);

        await registry.setAlias("m", "staging", 1);
        await registry.setAlias("m", "staging", 2);
        await registry.setAlias("m", "staging", 1);
        expect((await registry.rollback("m", "staging")).to).toBe(2);
        // The two aliases have separate histories.
        expect((await registry.getModel("m")).aliases).toEqual({ production: 2, staging: 2 });
      });

      it("skips archived versions and the current version", async () => {
        await registry.setAlias("m", "production", 1);
        await registry.setAlias("m", "production", 2);
        await registry.setAlias("m", "production", 1);
        await registry.setAlias("m", "production", 3);
        await registry.archive("m", 1);
        // History of targets: 1, 2, 1, 3. Previous is 1 (archived) -> 2.
        expect((await registry.rollback("m")).to).toBe(2);
        // Left: 1 (archived) -> nothing usable.
        await expectMlshipError(registry.rollback("m"), "MLSHIP_ERR_REGISTRY_NO_ROLLBACK");
        await registry.unarchive("m", 1);
        expect((await registry.rollback("m")).to).toBe(1);
      });

      it("refuses a rollback when the alias has only ever had one target or is not set", async () => {
        await expectMlshipError(registry.rollback("m"), "MLSHIP_ERR_MODEL_ALIAS_NOT_FOUND", '"production"');
        await registry.setAlias("m", "production", 2);
        await expectMlshipError(registry.rollback("m"), "MLSHIP_ERR_REGISTRY_NO_ROLLBACK");
        await registry.setAlias("m", "production", 2);
        await expectMlshipError(registry.rollback("m"), "MLSHIP_ERR_REGISTRY_NO_ROLLBACK");
        await expectMlshipError(registry.rollback("nope"), "MLSHIP_ERR_MODEL_NOT_FOUND", '"nope"');
        expect((await registry.aliasHistory("m", "production")).map((e) => e.action)).toEqual(["set", "set"]);
      });

      it("can roll back after the alias was deleted and set again", async () => {
        await registry.setAlias("m", "production", 1);
        await registry.deleteAlias("m", "production");
        await registry.setAlias("m", "production", 2);
        expect((await registry.rollback("m")).to).toBe(1);
      });
    });

    describe("archive", () => {
      beforeEach(async () => {
        await registerN("m", 3);
      });

      it("refuses to archive a version an alias points to, naming the aliases", async () => {
        await registry.setAlias("m", "production", 2);
        const one = await expectMlshipError(registry.archive("m", 2), "MLSHIP_ERR_REGISTRY_CONFLICT", '"production"', "version 2");
        expect(one.httpStatus).toBe(409);
        await registry.setAlias("m", "staging", 2);
        const two = await expectMlshipError(registry.archive("m", 2), "MLSHIP_ERR_REGISTRY_CONFLICT", '"production"', '"staging"');
        expect(two.details).toEqual({ aliases: ["production", "staging"] });
        expect((await registry.getVersion("m", 2)).status).toBe("ready");
      });

      it("archives and unarchives; archived versions are hidden from lists unless asked for", async () => {
        const archived = await registry.archive("m", 1, { by: "alice" });
        expect(archived.status).toBe("archived");
        expect(archived.archivedAt).not.toBeNull();
        expect(await registry.archive("m", 1)).toEqual(archived);
        expect((await registry.listVersions("m")).map((v) => v.version)).toEqual([2, 3]);
        expect((await registry.listVersions("m", { includeArchived: true })).map((v) => v.version)).toEqual([1, 2, 3]);
        expect((await registry.getVersion("m", 1)).status).toBe("archived");

        const back = await registry.unarchive("m", 1);
        expect(back.status).toBe("ready");
        expect(back.archivedAt).toBeNull();
        expect((await registry.resolve("m@1")).version.version).toBe(1);
        await expectMlshipError(registry.archive("m", 9), "MLSHIP_ERR_MODEL_VERSION_NOT_FOUND", "9");
        await expectMlshipError(registry.archive("m", 0), "MLSHIP_ERR_INPUT_INVALID", "version");
      });

      it("keeps version numbers increasing past archived versions", async () => {
        await registry.archive("m", 3);
        const [next] = await registerN("m", 1);
        expect(next).toBe(4);
      });
    });

    describe("models, tags and descriptions", () => {
      it("lists models by name with their aliases and latest version", async () => {
        await registerN("zeta", 2);
        await registerN("alpha", 3);
        await registerN("Beta", 1);
        await registry.setAlias("alpha", "production", 2);
        await registry.archive("alpha", 3);
        const models = await registry.listModels();
        // Code-unit order on every dialect, whatever the database's collation.
        expect(models.map((m) => m.name)).toEqual(["Beta", "alpha", "zeta"]);
        expect(models[1]).toMatchObject({ name: "alpha", aliases: { production: 2 }, latestVersion: 3 });
        expect(models[2]).toMatchObject({ name: "zeta", aliases: {}, latestVersion: 2 });
        expect(models[1]?.updatedAt.localeCompare(models[1]?.createdAt ?? "")).toBeGreaterThanOrEqual(0);
      });

      it("sets model tags (replacing them), version tags and the model description", async () => {
        await registerN("m", 1);
        expect((await registry.setModelTags("m", { team: "risk", tier: "1" })).tags).toEqual({ team: "risk", tier: "1" });
        expect((await registry.setModelTags("m", { team: "fraud" })).tags).toEqual({ team: "fraud" });
        expect((await registry.setModelDescription("m", "Scores loan applications")).description).toBe("Scores loan applications");
        const model = await registry.getModel("m");
        expect(model).toMatchObject({ tags: { team: "fraud" }, description: "Scores loan applications" });
        expect((await registry.setVersionTags("m", 1, { validated: "yes" })).tags).toEqual({ validated: "yes" });
        await expectMlshipError(registry.setModelTags("nope", {}), "MLSHIP_ERR_MODEL_NOT_FOUND", '"nope"');
        await expectMlshipError(registry.setVersionTags("m", 5, {}), "MLSHIP_ERR_MODEL_VERSION_NOT_FOUND", "5");
        await expectMlshipError(
          registry.setModelTags("m", { n: 1 } as unknown as Record<string, string>),
          "MLSHIP_ERR_INPUT_INVALID",
          "tags.n",
        );
      });
    });

    describe("version settings", () => {
      it("stores a version's serving-settings override, replaces it, and bumps the change token", async () => {
        await registerN("m", 2);
        expect(await registry.getVersionSettings("m", 1)).toEqual({});
        const before = await registry.changeToken();
        const saved = await registry.setVersionSettings(
          "m",
          1,
          { batching: { max_batch_size: 16, max_delay_ms: 5, preferred_batch_sizes: [8, 4, 8] }, max_queue: 10 },
          { by: "ops" },
        );
        expect(saved).toEqual({ batching: { max_batch_size: 16, max_delay_ms: 5, preferred_batch_sizes: [4, 8] }, max_queue: 10 });
        expect(await registry.changeToken()).not.toBe(before);
        expect(await registry.getVersionSettings("m", 1)).toEqual(saved);
        // Another connection sees it; the other version has none.
        const other = await secondRegistry();
        expect(await other.getVersionSettings("m", 1)).toEqual(saved);
        expect(await other.getVersionSettings("m", 2)).toEqual({});
        await registry.setVersionSettings("m", 1, { timeout_ms: 500 });
        expect(await registry.getVersionSettings("m", 1)).toEqual({ timeout_ms: 500 });
        await registry.setVersionSettings("m", 1, {});
        expect(await registry.getVersionSettings("m", 1)).toEqual({});
      });

      it("rejects invalid values naming the field, and unknown models or versions", async () => {
        await registerN("m", 1);
        await expectMlshipError(
          registry.setVersionSettings("m", 1, { batching: { max_batch_size: 0 } }),
          "MLSHIP_ERR_INPUT_INVALID",
          "batching.max_batch_size must be an integer >= 1",
        );
        await expectMlshipError(
          registry.setVersionSettings("m", 1, { batching: { max_delay_ms: -1 } }),
          "MLSHIP_ERR_INPUT_INVALID",
          "batching.max_delay_ms",
        );
        await expectMlshipError(
          registry.setVersionSettings("m", 1, { max_queue: 1.5 }),
          "MLSHIP_ERR_INPUT_INVALID",
          "max_queue",
        );
        await expectMlshipError(
          registry.setVersionSettings("m", 1, { nope: 1 } as unknown as Record<string, never>),
          "MLSHIP_ERR_INPUT_INVALID",
          "nope",
        );
        await expectMlshipError(registry.setVersionSettings("m", 9, {}), "MLSHIP_ERR_MODEL_VERSION_NOT_FOUND", "9");
        await expectMlshipError(registry.getVersionSettings("x", 1), "MLSHIP_ERR_MODEL_NOT_FOUND", '"x"');
        expect(await registry.getVersionSettings("m", 1)).toEqual({});
      });
    });

    describe("several connections", () => {
      it("gives concurrent registrations of one model from two connections distinct versions", async () => {
        const other = await secondRegistry();
        const dirs = await Promise.all(
          Array.from({ length: 8 }, (_, i) => makePackage({ params: { seed: i }, parent: work })),
        );
        const results = await Promise.all(
          dirs.map((dir, i) => (i % 2 === 0 ? registry : other).register({ name: "race", packageDir: dir })),
        );
        const versions = results.map((r) => r.version).sort((a, b) => a - b);
        expect(versions).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
        const listed = await other.listVersions("race");
        expect(listed.map((v) => v.version)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
        // Each version kept its own package.
        expect(new Set(listed.map((v) => v.digest)).size).toBe(8);
        expect((await registry.listModels()).map((m) => m.name)).toEqual(["race"]);
      });

      it("changes the change token when another connection commits a registry change", async () => {
        await registerN("m", 2);
        const other = await secondRegistry();
        const t0 = await registry.changeToken();
        expect(await registry.changeToken()).toBe(t0);

        await other.setAlias("m", "production", 1);
        const t1 = await registry.changeToken();
        expect(t1).not.toBe(t0);
        expect((await registry.resolve("m")).version.version).toBe(1);
        expect(await registry.changeToken()).toBe(t1);

        await other.rollback("m").catch(() => undefined);
        await other.setAlias("m", "production", 2);
        const t2 = await registry.changeToken();
        expect(t2).not.toBe(t1);
        expect((await registry.resolve("m")).version.version).toBe(2);

        await other.archive("m", 1);
        const t3 = await registry.changeToken();
        expect(t3).not.toBe(t2);

        // Its own writes change it too, and the other connection sees them.
        const seen = await other.changeToken();
        await registry.setModelDescription("m", "changed here");
        expect(await registry.changeToken()).not.toBe(t3);
        expect(await other.changeToken()).not.toBe(seen);
        expect((await other.getModel("m")).description).toBe("changed here");
      });
    });
  });
}
