import { createHash, randomUUID } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import type * as S3Module from "@aws-sdk/client-s3";
import type { S3Client, S3ClientConfig } from "@aws-sdk/client-s3";
import { MlshipError } from "../core/index.js";
import {
  LocalArtifactStore,
  checkDigest,
  combineFileDigests,
  digestDirectory,
  pathExists,
  type ArtifactFile,
  type ArtifactStore,
  type ArtifactVerification,
  type StoredArtifact,
} from "./artifacts.js";

/** Settings of an S3-compatible store (config `artifacts`, `s3.endpoint`, `s3.region`, `s3.forcePathStyle`). */
export interface S3ArtifactStoreOptions {
  /** `s3://bucket` or `s3://bucket/prefix`. */
  url: string;
  /** Local folder downloaded packages are kept in (the runtime reads files from disk). */
  cacheDir: string;
  /** `http://host:port` of an S3-compatible server (MinIO, Ceph, ...); unset: AWS S3. */
  endpoint?: string | null;
  /** Default `us-east-1` (S3-compatible servers mostly ignore it, the SDK needs one). */
  region?: string | null;
  /** Bucket in the path (`http://host/bucket/key`) instead of the host name; most non-AWS servers need it. */
  forcePathStyle?: boolean;
  /** Per-request limit, in ms; a store that does not answer fails with MLSHIP_ERR_STORE_UNAVAILABLE. Default 30000. */
  requestTimeoutMs?: number;
}

/** What `openArtifactStore` needs from the config. */
export interface ArtifactStoreConfig {
  /** A folder, `file:<folder>`, or `s3://bucket/prefix`. */
  url: string;
  home: string;
  s3?: { endpoint?: string | null; region?: string | null; forcePathStyle?: boolean };
}

interface S3Location {
  bucket: string;
  /** Without leading or trailing `/`; may be empty. */
  prefix: string;
}

/** The object listing a package's files, written last: a package without one is absent (a half-finished upload). */
interface ArtifactManifest {
  digest: string;
  files: ArtifactFile[];
}

/** The AWS SDK module, loaded by the first store that sends a request (it takes a good share of a cold start). */
type S3Sdk = typeof S3Module;
let sdkLoading: Promise<S3Sdk> | undefined;
function loadSdk(): Promise<S3Sdk> {
  sdkLoading ??= import("@aws-sdk/client-s3");
  return sdkLoading;
}

const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const FIELD = "artifacts";

/** Parses `s3://bucket[/prefix]`; errors name the config key. */
export function parseS3Url(url: string): S3Location {
  const match = /^s3:\/\/([^/]+)\/?(.*)$/i.exec(url.trim());
  const bucket = match?.[1] ?? "";
  if (match === null || !BUCKET_RE.test(bucket)) {
    throw new MlshipError(
      "MLSHIP_ERR_CONFIG_INVALID",
      `artifacts URL "${url}" is not s3://<bucket>[/<prefix>] with a bucket name of 3 to 63 lowercase letters, digits, dots or hyphens`,
      { field: FIELD },
    );
  }
  const prefix = (match[2] ?? "").replace(/^\/+|\/+$/g, "");
  return { bucket, prefix };
}

/** The artifact store the config names: a local folder (default) or an S3-compatible bucket. */
export function openArtifactStore(config: ArtifactStoreConfig): ArtifactStore {
  const url = config.url.trim();
  if (/^s3:\/\//i.test(url)) {
    return new S3ArtifactStore({
      url,
      cacheDir: path.join(config.home, "artifact-cache"),
      endpoint: config.s3?.endpoint ?? null,
      region: config.s3?.region ?? null,
      forcePathStyle: config.s3?.forcePathStyle ?? false,
    });
  }
  if (/^file:/i.test(url)) return new LocalArtifactStore(url.slice("file:".length).replace(/^\/\/(?=\/)/, ""));
  if (url === "") return new LocalArtifactStore(path.join(config.home, "artifacts"));
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
    throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `artifacts location "${url}" is not supported: use a folder, file:<folder> or s3://bucket/prefix`, {
      field: FIELD,
    });
  }
  return new LocalArtifactStore(url);
}

function errorName(error: unknown): string {
  if (typeof error !== "object" || error === null) return "";
  const e = error as { name?: unknown; Code?: unknown; code?: unknown };
  for (const v of [e.Code, e.name, e.code]) if (typeof v === "string") return v;
  return "";
}

function httpStatus(error: unknown): number | undefined {
  const meta = (error as { $metadata?: { httpStatusCode?: unknown } } | null)?.$metadata;
  return typeof meta?.httpStatusCode === "number" ? meta.httpStatusCode : undefined;
}

function isNotFound(error: unknown): boolean {
  const name = errorName(error);
  return name === "NoSuchKey" || name === "NotFound" || (httpStatus(error) === 404 && name !== "NoSuchBucket");
}

async function bodyBytes(body: unknown): Promise<Buffer> {
  const readable = body as { transformToByteArray?: () => Promise<Uint8Array> } | undefined;
  if (readable?.transformToByteArray === undefined) return Buffer.alloc(0);
  return Buffer.from(await readable.transformToByteArray());
}

function sha256(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * Packages in an S3-compatible bucket: `<prefix>/sha256/<digest>/<relative path>` holds each file and
 * `<prefix>/manifests/<digest>.json` lists them with their sha256 and size. The manifest is written after every file,
 * so a package whose upload stopped half-way has none and counts as absent (the next register uploads it again).
 * The runtime reads files from disk, so `materialize` downloads a package into `<cacheDir>/sha256/<digest>/`: into a
 * temp folder first, every file checked against its sha256, then renamed into place (a rename is atomic, so other
 * processes sharing the cache see the whole folder or nothing). Credentials come from the AWS SDK's default chain
 * (`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, profiles, instance roles) and never appear in messages.
 */
export class S3ArtifactStore implements ArtifactStore {
  readonly location: string;
  readonly cacheDir: string;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #config: S3ClientConfig;
  /** Made on the first request, once the SDK is loaded; dropped (and destroyed) by `close`. */
  #client: Promise<{ sdk: S3Sdk; client: S3Client }> | undefined;
  readonly #materializing = new Map<string, Promise<string>>();

  constructor(options: S3ArtifactStoreOptions) {
    const { bucket, prefix } = parseS3Url(options.url);
    this.#bucket = bucket;
    this.#prefix = prefix;
    this.location = `s3://${bucket}${prefix === "" ? "" : `/${prefix}`}`;
    this.cacheDir = path.resolve(options.cacheDir);
    // The SDK is pinned to a release that still supports Node 20 (package.json); its "upgrade Node" warning
    // would print on every command that touches the store.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
    const timeout = options.requestTimeoutMs ?? 30_000;
    const config: S3ClientConfig = {
      region: options.region ?? "us-east-1",
      forcePathStyle: options.forcePathStyle ?? false,
      maxAttempts: 3,
      requestHandler: { connectionTimeout: Math.min(timeout, 5000), requestTimeout: timeout },
      // Only when an operation needs them: S3-compatible servers differ in which newer checksum headers they know.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
    };
    if (options.endpoint !== undefined && options.endpoint !== null && options.endpoint !== "") config.endpoint = options.endpoint;
    this.#config = config;
  }

  /** The SDK and this store's client, both made on first use. */
  #s3(): Promise<{ sdk: S3Sdk; client: S3Client }> {
    this.#client ??= loadSdk().then((sdk) => ({ sdk, client: new sdk.S3Client(this.#config) }));
    return this.#client;
  }

  #key(...parts: string[]): string {
    return [this.#prefix, ...parts].filter((p) => p !== "").join("/");
  }

  #fileKey(digest: string, rel: string): string {
    return this.#key("sha256", digest, rel);
  }

  #manifestKey(digest: string): string {
    return this.#key("manifests", `${digest}.json`);
  }

  /** SDK failures as MLSHIP_ERR_STORE_UNAVAILABLE naming the store and the config key; MlshipErrors pass. */
  #unavailable(error: unknown, doing: string): MlshipError {
    if (error instanceof MlshipError) return error;
    const name = errorName(error);
    let reason: string;
    if (name === "NoSuchBucket") reason = `bucket "${this.#bucket}" does not exist`;
    else if (name === "AccessDenied" || name === "InvalidAccessKeyId" || name === "SignatureDoesNotMatch" || httpStatus(error) === 403) {
      reason = `access denied (${name || "403"}); check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)`;
    } else if (name === "CredentialsProviderError") reason = "no credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)";
    else {
      const cause = (error as { cause?: unknown } | null)?.cause;
      const code = errorName(cause) || name;
      const message = error instanceof Error ? error.message : String(error);
      reason = `cannot be reached (${[code, message].filter((s) => s !== "").join(": ")})`;
    }
    return new MlshipError("MLSHIP_ERR_STORE_UNAVAILABLE", `artifact store ${this.location} (config artifacts): ${doing}: ${reason}`, {
      field: FIELD,
      cause: error,
      details: { artifacts: this.location },
    });
  }

  async #send<T>(doing: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw this.#unavailable(error, doing);
    }
  }

  /** The manifest, or null when there is none (absent or half-uploaded package). */
  async #manifest(digest: string): Promise<ArtifactManifest | null> {
    checkDigest(digest);
    let bytes: Buffer;
    try {
      const { sdk, client } = await this.#s3();
      const got = await client.send(new sdk.GetObjectCommand({ Bucket: this.#bucket, Key: this.#manifestKey(digest) }));
      bytes = await bodyBytes(got.Body);
    } catch (error) {
      if (isNotFound(error)) return null;
      throw this.#unavailable(error, `reading the manifest of ${digest}`);
    }
    let parsed: Partial<ArtifactManifest>;
    try {
      parsed = JSON.parse(bytes.toString("utf8")) as Partial<ArtifactManifest>;
    } catch {
      parsed = {};
    }
    if (parsed.digest !== digest || !Array.isArray(parsed.files)) {
      throw new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", `artifact ${digest} in ${this.location} has an unreadable manifest`, { field: FIELD });
    }
    return { digest, files: parsed.files };
  }

  path(digest: string): string {
    return path.join(this.cacheDir, "sha256", checkDigest(digest));
  }

  async has(digest: string): Promise<boolean> {
    checkDigest(digest);
    try {
      const { sdk, client } = await this.#s3();
      await client.send(new sdk.HeadObjectCommand({ Bucket: this.#bucket, Key: this.#manifestKey(digest) }));
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw this.#unavailable(error, `looking up ${digest}`);
    }
  }

  async files(digest: string): Promise<ArtifactFile[] | null> {
    return (await this.#manifest(digest))?.files ?? null;
  }

  async putDirectory(srcDir: string): Promise<StoredArtifact> {
    const source = path.resolve(srcDir);
    const stat = await fs.stat(source).catch(() => undefined);
    if (stat === undefined) {
      throw new MlshipError("MLSHIP_ERR_PACKAGE_NOT_FOUND", `package folder ${source} does not exist`, { field: source });
    }
    if (!stat.isDirectory()) throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${source} is not a folder`, { field: source });
    const planned = await digestDirectory(source);
    if (planned.files.length === 0) {
      throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `package folder ${source} has no files`, { field: source });
    }
    const digest = planned.digest;
    if (await this.has(digest)) return { digest, path: this.path(digest) };

    for (const file of planned.files) {
      const bytes = await fs.readFile(path.join(source, ...file.path.split("/")));
      // What is uploaded is hashed again, so the stored bytes are exactly what the manifest says.
      if (sha256(bytes) !== file.sha256) {
        throw new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${file.path} in ${source} changed while it was being stored; register again`, {
          field: source,
        });
      }
      await this.#send(`uploading ${file.path} of ${digest}`, async () => {
        const { sdk, client } = await this.#s3();
        return client.send(new sdk.PutObjectCommand({ Bucket: this.#bucket, Key: this.#fileKey(digest, file.path), Body: bytes, ContentLength: bytes.length }));
      });
    }
    const manifest: ArtifactManifest = { digest, files: planned.files };
    const body = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
    await this.#send(`writing the manifest of ${digest}`, async () => {
      const { sdk, client } = await this.#s3();
      return client.send(
        new sdk.PutObjectCommand({ Bucket: this.#bucket, Key: this.#manifestKey(digest), Body: body, ContentType: "application/json", ContentLength: body.length }),
      );
    });
    return { digest, path: this.path(digest) };
  }

  materialize(digest: string): Promise<string> {
    const target = this.path(digest);
    let pending = this.#materializing.get(digest);
    if (pending === undefined) {
      pending = this.#download(digest, target).finally(() => this.#materializing.delete(digest));
      this.#materializing.set(digest, pending);
    }
    return pending;
  }

  async #download(digest: string, target: string): Promise<string> {
    if (await pathExists(target)) return target;
    const manifest = await this.#manifest(digest);
    if (manifest === null) {
      throw new MlshipError("MLSHIP_ERR_PACKAGE_NOT_FOUND", `artifact ${digest} is not in ${this.location} (no manifest)`, { field: FIELD });
    }
    if (combineFileDigests(manifest.files) !== digest) {
      throw new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", `artifact ${digest} in ${this.location}: its manifest lists files that hash to another digest`, {
        field: FIELD,
      });
    }
    const tmpRoot = path.join(this.cacheDir, "tmp");
    await fs.mkdir(tmpRoot, { recursive: true });
    await fs.mkdir(path.dirname(target), { recursive: true });
    const temp = path.join(tmpRoot, randomUUID());
    try {
      for (const file of manifest.files) {
        const rel = safeRelative(file.path, digest, this.location);
        const bytes = await this.#object(digest, file.path);
        if (bytes === null) {
          throw new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", `artifact ${digest} in ${this.location}: ${file.path} is missing`, { field: FIELD });
        }
        const actual = sha256(bytes);
        if (actual !== file.sha256) {
          throw new MlshipError(
            "MLSHIP_ERR_RUNTIME_LOAD",
            `artifact ${digest} in ${this.location}: ${file.path} is corrupt (sha256 ${actual}, expected ${file.sha256})`,
            { field: FIELD, details: { file: file.path } },
          );
        }
        const to = path.join(temp, ...rel);
        await fs.mkdir(path.dirname(to), { recursive: true });
        await fs.writeFile(to, bytes, { mode: 0o444 });
      }
      try {
        await fs.rename(temp, target);
      } catch (error) {
        // Another process materialized the same digest first: its folder has the same verified bytes.
        if (!(await pathExists(target))) throw error;
      }
      return target;
    } finally {
      await fs.rm(temp, { recursive: true, force: true });
    }
  }

  /** An object's bytes, or null when it does not exist. */
  async #object(digest: string, rel: string): Promise<Buffer | null> {
    try {
      const { sdk, client } = await this.#s3();
      const got = await client.send(new sdk.GetObjectCommand({ Bucket: this.#bucket, Key: this.#fileKey(digest, rel) }));
      return await bodyBytes(got.Body);
    } catch (error) {
      if (isNotFound(error)) return null;
      throw this.#unavailable(error, `downloading ${rel} of ${digest}`);
    }
  }

  /** Every object key under the package's folder, relative to it. */
  async #listed(digest: string): Promise<string[]> {
    const prefix = `${this.#fileKey(digest, "")}/`;
    const found: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.#send(`listing ${digest}`, async () => {
        const { sdk, client } = await this.#s3();
        return client.send(new sdk.ListObjectsV2Command({ Bucket: this.#bucket, Prefix: prefix, ContinuationToken: token }));
      });
      for (const item of page.Contents ?? []) if (item.Key !== undefined) found.push(item.Key.slice(prefix.length));
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    return found;
  }

  async verify(digest: string): Promise<ArtifactVerification> {
    const manifest = await this.#manifest(digest);
    if (manifest === null) {
      return { digest, ok: false, actualDigest: null, problems: [`artifact ${digest} has no manifest in ${this.location}`] };
    }
    const problems: string[] = [];
    const now: { path: string; sha256: string }[] = [];
    for (const file of manifest.files) {
      const bytes = await this.#object(digest, file.path);
      if (bytes === null) {
        problems.push(`${file.path} is missing`);
        continue;
      }
      const actual = sha256(bytes);
      now.push({ path: file.path, sha256: actual });
      if (actual !== file.sha256) problems.push(`${file.path} was modified (sha256 ${actual}, expected ${file.sha256})`);
    }
    const listed = new Set(manifest.files.map((f) => f.path));
    for (const key of await this.#listed(digest)) if (!listed.has(key)) problems.push(`${key} was added`);
    const actualDigest = combineFileDigests(now);
    if (actualDigest !== digest && problems.length === 0) problems.push(`the files hash to ${actualDigest}, not ${digest}`);
    return { digest, ok: actualDigest === digest && problems.length === 0, actualDigest, problems };
  }

  /** Releases the HTTP connections (a later request opens new ones). */
  close(): void {
    const made = this.#client;
    this.#client = undefined;
    void made?.then(({ client }) => client.destroy()).catch(() => undefined);
  }
}

/** A manifest path as path segments, refusing anything that would leave the package folder. */
function safeRelative(rel: string, digest: string, location: string): string[] {
  const parts = rel.split("/");
  if (rel === "" || rel.includes("\\") || rel.includes("\0") || parts.some((p) => p === "" || p === "." || p === "..")) {
    throw new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", `artifact ${digest} in ${location}: its manifest names an unsafe path ${JSON.stringify(rel)}`, {
      field: FIELD,
    });
  }
  return parts;
}
