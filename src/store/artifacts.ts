import { createHash, randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { MlshipError } from "../core/index.js";

export interface StoredArtifact {
  /** Lowercase hex sha256 of the folder (see `digestDirectory`). */
  digest: string;
  /** Absolute path of the stored, read-only copy. */
  path: string;
}

export interface ArtifactFile {
  /** Relative path with `/` separators. */
  path: string;
  sha256: string;
  size: number;
}

export interface ArtifactVerification {
  digest: string;
  ok: boolean;
  /** The digest the stored files hash to now; null when the folder is missing. */
  actualDigest: string | null;
  /** One line per problem found (missing folder, changed/missing/extra file). Empty when ok. */
  problems: string[];
}

/** Content-addressed storage of package folders. Local folder now; an S3-compatible store implements the same. */
export interface ArtifactStore {
  /** Copies a folder in, addressed by its digest; storing identical content twice keeps one copy. */
  putDirectory(srcDir: string): Promise<StoredArtifact>;
  /**
   * The local folder the files with this digest are read from (whether or not it exists yet). For a remote store
   * this is its local cache; call `materialize` before reading it.
   */
  path(digest: string): string;
  /**
   * Makes sure the files are in `path(digest)` on this machine and returns that folder. The local store has
   * nothing to do; a remote store downloads and verifies them once.
   */
  materialize(digest: string): Promise<string>;
  /** The stored files with their sha256 and size, or null when the digest is not stored. */
  files(digest: string): Promise<ArtifactFile[] | null>;
  has(digest: string): Promise<boolean>;
  /** Re-hashes the stored files and reports whether they still match their digest. */
  verify(digest: string): Promise<ArtifactVerification>;
  /** Where the artifacts live (a folder or an `s3://` URL), for messages. */
  readonly location: string;
  /** Releases connections (a remote store); optional. */
  close?(): void;
}

const DIGEST_RE = /^[0-9a-f]{64}$/;

/** Throws MLSHIP_ERR_CORE_INTERNAL unless `digest` is 64 lowercase hex digits (it becomes a path or an object key). */
export function checkDigest(digest: string): string {
  if (!DIGEST_RE.test(digest)) {
    throw new MlshipError("MLSHIP_ERR_CORE_INTERNAL", `artifact digest "${digest}" is not 64 lowercase hex digits`, {
      field: "digest",
    });
  }
  return digest;
}

export async function sha256File(file: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of createReadStream(file)) {
    const bytes = chunk as Buffer;
    size += bytes.length;
    hash.update(bytes);
  }
  return { sha256: hash.digest("hex"), size };
}

async function listFiles(root: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    const entries = await fs.readdir(dir, { withFileTypes: true });
    for (const entry of entries) {
      const abs = path.join(dir, entry.name);
      const relPath = rel === "" ? entry.name : `${rel}/${entry.name}`;
      if (entry.isDirectory()) {
        await walk(abs, relPath);
      } else if (entry.isFile()) {
        found.push(relPath);
      } else if (entry.isSymbolicLink()) {
        // A link to a file is stored as the file's content; a link to a folder could loop, so it is refused.
        const target = await fs.stat(abs).catch(() => undefined);
        if (target?.isFile() === true) {
          found.push(relPath);
        } else {
          throw new MlshipError(
            "MLSHIP_ERR_PACKAGE_INVALID",
            `${abs} is a symbolic link to a folder or to nothing; packages may only link to files`,
            { field: abs },
          );
        }
      } else {
        throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${abs} is not a regular file or folder`, { field: abs });
      }
    }
  };
  await walk(root, "");
  // Byte order of the UTF-8 path, so the order does not depend on locale or on JavaScript's UTF-16 comparison.
  return found.sort((a, b) => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8")));
}

/**
 * The digest of a set of files:
 *   sha256( for each file, in byte order of its UTF-8 relative path with `/` separators:
 *             path_utf8 || 0x00 || lowercase_hex(sha256(content)) || 0x0a )
 * Only regular files count (empty folders, permissions and times do not), so the same files give the same digest
 * on any machine.
 */
export function combineFileDigests(files: readonly { path: string; sha256: string }[]): string {
  const sorted = [...files].sort((a, b) => Buffer.compare(Buffer.from(a.path, "utf8"), Buffer.from(b.path, "utf8")));
  const hash = createHash("sha256");
  for (const file of sorted) {
    hash.update(Buffer.from(file.path, "utf8"));
    hash.update(Buffer.from([0]));
    hash.update(file.sha256, "ascii");
    hash.update(Buffer.from([0x0a]));
  }
  return hash.digest("hex");
}

/** Hashes every file under `dir` and combines them with `combineFileDigests`. */
export async function digestDirectory(dir: string): Promise<{ digest: string; files: ArtifactFile[] }> {
  const files: ArtifactFile[] = [];
  for (const rel of await listFiles(dir)) {
    const { sha256, size } = await sha256File(path.join(dir, ...rel.split("/")));
    files.push({ path: rel, sha256, size });
  }
  return { digest: combineFileDigests(files), files };
}

/** Whether something exists at the path (a folder or a file). */
export async function pathExists(p: string): Promise<boolean> {
  try {
    await fs.access(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * Artifacts on the local disk: `<root>/sha256/<digest>/` holds the files (read-only), `<root>/index/<digest>.json`
 * lists each file's sha256 so `verify` can name what changed, `<root>/tmp/` holds copies in progress.
 */
export class LocalArtifactStore implements ArtifactStore {
  readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  get location(): string {
    return this.root;
  }

  path(digest: string): string {
    return path.join(this.root, "sha256", checkDigest(digest));
  }

  materialize(digest: string): Promise<string> {
    return Promise.resolve(this.path(digest));
  }

  async files(digest: string): Promise<ArtifactFile[] | null> {
    const dir = this.path(digest);
    if (!(await pathExists(dir))) return null;
    return (await this.#readIndex(digest)) ?? (await digestDirectory(dir)).files;
  }

  has(digest: string): Promise<boolean> {
    return pathExists(this.path(digest));
  }

  async putDirectory(srcDir: string): Promise<StoredArtifact> {
    const source = path.resolve(srcDir);
    const stat = await fs.stat(source).catch(() => undefined);
    if (stat === undefined) {
      throw new MlshipError("MLSHIP_ERR_PACKAGE_NOT_FOUND", `package folder ${source} does not exist`, {
        field: source,
      });
    }
    if (!stat.isDirectory()) {
      throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${source} is not a folder`, { field: source });
    }
    const planned = await digestDirectory(source);
    if (planned.files.length === 0) {
      throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `package folder ${source} has no files`, { field: source });
    }
    if (await pathExists(this.path(planned.digest))) return { digest: planned.digest, path: this.path(planned.digest) };

    await fs.mkdir(path.join(this.root, "tmp"), { recursive: true });
    await fs.mkdir(path.join(this.root, "sha256"), { recursive: true });
    await fs.mkdir(path.join(this.root, "index"), { recursive: true });
    const temp = path.join(this.root, "tmp", randomUUID());
    try {
      for (const file of planned.files) {
        const from = path.join(source, ...file.path.split("/"));
        const to = path.join(temp, ...file.path.split("/"));
        await fs.mkdir(path.dirname(to), { recursive: true });
        await fs.copyFile(from, to);
      }
      // The digest is taken from the copy, so what is stored is exactly what the digest says even if the source
      // changed while it was copied.
      const stored = await digestDirectory(temp);
      for (const file of stored.files) await fs.chmod(path.join(temp, ...file.path.split("/")), 0o444);

      const finalPath = this.path(stored.digest);
      await this.#writeIndex(stored.digest, stored.files);
      try {
        await fs.rename(temp, finalPath);
      } catch (error) {
        // Another writer stored the same content first: keep theirs (it has the same bytes).
        if (!(await pathExists(finalPath))) throw error;
      }
      return { digest: stored.digest, path: finalPath };
    } finally {
      await fs.rm(temp, { recursive: true, force: true });
    }
  }

  async #writeIndex(digest: string, files: ArtifactFile[]): Promise<void> {
    const target = path.join(this.root, "index", `${digest}.json`);
    const temp = `${target}.${randomUUID()}.tmp`;
    await fs.writeFile(temp, `${JSON.stringify({ digest, files }, null, 2)}\n`);
    await fs.rename(temp, target);
  }

  async #readIndex(digest: string): Promise<ArtifactFile[] | undefined> {
    try {
      const text = await fs.readFile(path.join(this.root, "index", `${digest}.json`), "utf8");
      const parsed = JSON.parse(text) as { files?: unknown };
      return Array.isArray(parsed.files) ? (parsed.files as ArtifactFile[]) : undefined;
    } catch {
      return undefined;
    }
  }

  async verify(digest: string): Promise<ArtifactVerification> {
    const dir = this.path(digest);
    if (!(await pathExists(dir))) {
      return { digest, ok: false, actualDigest: null, problems: [`artifact folder ${dir} is missing`] };
    }
    const actual = await digestDirectory(dir);
    const problems: string[] = [];
    const expected = await this.#readIndex(digest);
    if (expected !== undefined) {
      const now = new Map(actual.files.map((f) => [f.path, f]));
      const before = new Map(expected.map((f) => [f.path, f]));
      for (const file of expected) {
        const current = now.get(file.path);
        if (current === undefined) problems.push(`${file.path} is missing`);
        else if (current.sha256 !== file.sha256) problems.push(`${file.path} was modified (sha256 ${current.sha256}, expected ${file.sha256})`);
      }
      for (const file of actual.files) {
        if (!before.has(file.path)) problems.push(`${file.path} was added`);
      }
    }
    if (actual.digest !== digest && problems.length === 0) {
      problems.push(`the files hash to ${actual.digest}, not ${digest}`);
    }
    return { digest, ok: actual.digest === digest && problems.length === 0, actualDigest: actual.digest, problems };
  }
}
