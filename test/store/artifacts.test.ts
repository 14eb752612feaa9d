import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MlshipError } from "../../src/core/index.js";
import { LocalArtifactStore, combineFileDigests, digestDirectory } from "../../src/store/index.js";

const FIXTURE = fileURLToPath(new URL("../../../shared/fixtures/diabetes_linear/", import.meta.url));

function sha(bytes: Buffer | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

async function writeTree(root: string, files: Record<string, string | Buffer>): Promise<string> {
  for (const [rel, content] of Object.entries(files)) {
    const file = path.join(root, ...rel.split("/"));
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(file, content);
  }
  return root;
}

describe("LocalArtifactStore", () => {
  let work: string;
  let store: LocalArtifactStore;

  beforeEach(async () => {
    work = await fs.mkdtemp(path.join(os.tmpdir(), "mlship-artifacts-"));
    store = new LocalArtifactStore(path.join(work, "store"));
  });

  afterEach(async () => {
    await fs.rm(work, { recursive: true, force: true });
  });

  it("digests sorted relative paths and per-file sha256 exactly as documented", async () => {
    const model = await fs.readFile(path.join(FIXTURE, "model.onnx"));
    const src = await writeTree(path.join(work, "src"), {
      "model.onnx": model,
      "b/z.txt": "zed",
      "B.txt": "upper",
      "a.b": "dot",
      "a/b.txt": "nested",
    });
    // Byte order of the UTF-8 path: "B.txt" < "a.b" < "a/b.txt" < "b/z.txt" < "model.onnx".
    const order = ["B.txt", "a.b", "a/b.txt", "b/z.txt", "model.onnx"];
    const contents: Record<string, string | Buffer> = { "B.txt": "upper", "a.b": "dot", "a/b.txt": "nested", "b/z.txt": "zed", "model.onnx": model };
    const text = order.map((p) => `${p}\0${sha(contents[p] ?? "")}\n`).join("");
    const { digest, files } = await digestDirectory(src);
    expect(files.map((f) => f.path)).toEqual(order);
    expect(files.find((f) => f.path === "model.onnx")).toEqual({ path: "model.onnx", sha256: sha(model), size: model.length });
    expect(digest).toBe(sha(text));
    expect(combineFileDigests([...files].reverse())).toBe(digest);

    const stored = await store.putDirectory(src);
    expect(stored.digest).toBe(digest);
    expect(stored.path).toBe(path.join(store.root, "sha256", digest));
    expect(store.path(digest)).toBe(stored.path);
  });

  it("stores a read-only copy once per content and leaves no temporary folders", async () => {
    const a = await writeTree(path.join(work, "a"), { "model.onnx": "weights", "sub/x.json": "{}" });
    const b = await writeTree(path.join(work, "b"), { "model.onnx": "weights", "sub/x.json": "{}" });
    const c = await writeTree(path.join(work, "c"), { "model.onnx": "other weights", "sub/x.json": "{}" });
    const [ra, rb] = await Promise.all([store.putDirectory(a), store.putDirectory(b)]);
    const rc = await store.putDirectory(c);
    expect(ra).toEqual(rb);
    expect(rc.digest).not.toBe(ra.digest);
    expect((await fs.readdir(path.join(store.root, "sha256"))).sort()).toEqual([ra.digest, rc.digest].sort());
    expect(await fs.readdir(path.join(store.root, "tmp"))).toEqual([]);
    for (const rel of ["model.onnx", "sub/x.json"]) {
      const mode = (await fs.stat(path.join(ra.path, rel))).mode;
      expect(mode & 0o222, rel).toBe(0);
    }
    expect(await fs.readFile(path.join(ra.path, "sub", "x.json"), "utf8")).toBe("{}");
    expect(await store.has(ra.digest)).toBe(true);
    expect(await store.has("0".repeat(64))).toBe(false);
  });

  it("verifies stored files and names what was changed, removed or added", async () => {
    const src = await writeTree(path.join(work, "src"), { "model.onnx": "weights", "labels.json": "[]", "extra/notes.md": "n" });
    const { digest, path: dir } = await store.putDirectory(src);
    expect(await store.verify(digest)).toEqual({ digest, ok: true, actualDigest: digest, problems: [] });

    await fs.chmod(path.join(dir, "model.onnx"), 0o644);
    await fs.writeFile(path.join(dir, "model.onnx"), "tampered");
    await fs.chmod(path.join(dir, "labels.json"), 0o644);
    await fs.rm(path.join(dir, "labels.json"));
    await fs.writeFile(path.join(dir, "new.bin"), "x");
    const report = await store.verify(digest);
    expect(report.ok).toBe(false);
    expect(report.actualDigest).not.toBe(digest);
    expect(report.problems).toHaveLength(3);
    expect(report.problems.some((p) => p.startsWith("model.onnx was modified"))).toBe(true);
    expect(report.problems).toContain("labels.json is missing");
    expect(report.problems).toContain("new.bin was added");

    const gone = "f".repeat(64);
    const missing = await store.verify(gone);
    expect(missing.ok).toBe(false);
    expect(missing.actualDigest).toBeNull();
    expect(missing.problems[0]).toContain("missing");
  });

  it("stores a linked file's content and refuses a link to a folder", async () => {
    const src = await writeTree(path.join(work, "src"), { "real.onnx": "weights" });
    await fs.symlink(path.join(src, "real.onnx"), path.join(src, "model.onnx"));
    const { path: dir } = await store.putDirectory(src);
    const stat = await fs.lstat(path.join(dir, "model.onnx"));
    expect(stat.isFile()).toBe(true);
    expect(await fs.readFile(path.join(dir, "model.onnx"), "utf8")).toBe("weights");

    const looped = await writeTree(path.join(work, "looped"), { "model.onnx": "w" });
    await fs.symlink(looped, path.join(looped, "self"));
    await expect(store.putDirectory(looped)).rejects.toMatchObject({ code: "MLSHIP_ERR_PACKAGE_INVALID" });
  });

  it("refuses a missing folder, a file and an empty folder, naming the path", async () => {
    const missing = path.join(work, "nope");
    await expect(store.putDirectory(missing)).rejects.toMatchObject({ code: "MLSHIP_ERR_PACKAGE_NOT_FOUND" });
    const file = path.join(work, "file.onnx");
    await fs.writeFile(file, "x");
    await expect(store.putDirectory(file)).rejects.toMatchObject({ code: "MLSHIP_ERR_PACKAGE_INVALID" });
    const empty = path.join(work, "empty");
    await fs.mkdir(path.join(empty, "sub"), { recursive: true });
    const error: unknown = await store.putDirectory(empty).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MlshipError);
    expect((error as MlshipError).message).toContain(empty);
    expect(() => store.path("not-a-digest")).toThrow(MlshipError);
  });
});
