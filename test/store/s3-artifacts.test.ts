// The S3-compatible artifact store against a real S3 server (s3rver on a free port, objects in a temp folder) and
// the machine's PostgreSQL: a model registered by one app (one home: one replica) is resolved, downloaded, verified
// and served by another with equal scores; corruption, deduplication, half-uploaded packages, concurrent
// materialization and an unreachable store; and the real CLI (register in one home, serve from another).
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import pg from "pg";
import S3rver from "s3rver";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { MlshipError } from "../../src/core/index.js";
import { buildServer } from "../../src/serve/index.js";
import { S3ArtifactStore, digestDirectory, openArtifactStore } from "../../src/store/index.js";
import { REPO, runCli, startCli } from "../cli/helpers.js";
import { POSTGRES_SERVER } from "../helpers/sql-stores.js";

const EXAMPLES = fileURLToPath(new URL("../../examples/models/", import.meta.url));
const BUCKET = "mlship-artifacts";
const PREFIX = "models";

// The AWS SDK's default chain reads these; s3rver accepts any signature made with them.
process.env.AWS_ACCESS_KEY_ID = "S3RVER";
process.env.AWS_SECRET_ACCESS_KEY = "S3RVER";
const S3_ENV = { AWS_ACCESS_KEY_ID: "S3RVER", AWS_SECRET_ACCESS_KEY: "S3RVER" };

const work = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-s3-"));
const database = `mlship_s3_${randomBytes(6).toString("hex")}`;
const storeUrl = `${POSTGRES_SERVER}/${database}`;
let s3: S3rver;
let endpoint: string;
let raw: S3Client;
let admin: pg.Client;
const apps: Mlship[] = [];

async function startS3(directory: string, buckets: string[]): Promise<{ server: S3rver; endpoint: string }> {
  fs.mkdirSync(directory, { recursive: true });
  const server = new S3rver({ port: 0, address: "127.0.0.1", silent: true, directory, configureBuckets: buckets.map((name) => ({ name })) });
  const { port } = await server.run();
  return { server, endpoint: `http://127.0.0.1:${port}` };
}

async function stopS3(server: S3rver): Promise<void> {
  server.httpServer?.closeAllConnections();
  await server.close();
}

function s3Store(cacheName: string, options: { url?: string; endpoint?: string } = {}): S3ArtifactStore {
  return new S3ArtifactStore({
    url: options.url ?? `s3://${BUCKET}/${PREFIX}`,
    cacheDir: path.join(work, cacheName),
    endpoint: options.endpoint ?? endpoint,
    forcePathStyle: true,
    requestTimeoutMs: 5000,
  });
}

async function appAt(home: string): Promise<Mlship> {
  const app = await createMlship(
    defaultConfig({
      home,
      store: storeUrl,
      artifacts: `s3://${BUCKET}/${PREFIX}`,
      "s3.endpoint": endpoint,
      "runtime.workers": 1,
      "cache.backend": "off",
      "feedback.log": "off",
      "log.level": "warn",
    }),
  );
  apps.push(app);
  return app;
}

async function keysUnder(prefix: string): Promise<string[]> {
  const listed = await raw.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
  return (listed.Contents ?? []).map((c) => c.Key ?? "").sort();
}

async function caught(promise: Promise<unknown>): Promise<MlshipError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(MlshipError);
    return error as MlshipError;
  }
  throw new Error("expected an MlshipError");
}

const example = JSON.parse(fs.readFileSync(path.join(EXAMPLES, "breast-cancer", "input_example.json"), "utf8")) as unknown;

beforeAll(async () => {
  ({ server: s3, endpoint } = await startS3(path.join(work, "s3"), [BUCKET]));
  raw = new S3Client({ endpoint, region: "us-east-1", forcePathStyle: true, requestChecksumCalculation: "WHEN_REQUIRED" });
  admin = new pg.Client({ connectionString: `${POSTGRES_SERVER}/postgres` });
  await admin.connect();
  await admin.query(`create database ${database}`);
});

afterAll(async () => {
  for (const app of apps) await app.close();
  raw.destroy();
  await stopS3(s3);
  await admin.query(`drop database if exists ${database} with (force)`);
  await admin.end();
  fs.rmSync(work, { recursive: true, force: true });
});

describe("S3 artifact store", () => {
  it("config picks the store from artifacts: a folder by default, s3:// for a bucket", () => {
    const config = defaultConfig({ home: path.join(work, "cfg"), artifacts: "s3://my-bucket/a/b", "s3.endpoint": "http://127.0.0.1:9000" });
    expect(config.artifacts).toBe("s3://my-bucket/a/b");
    expect(config.s3).toEqual({ endpoint: "http://127.0.0.1:9000", region: null, forcePathStyle: "on" });
    expect(defaultConfig({ home: path.join(work, "cfg") }).s3.forcePathStyle).toBe("off");
    const store = openArtifactStore({ url: config.artifacts, home: config.home, s3: { endpoint: config.s3.endpoint, forcePathStyle: true } });
    expect(store).toBeInstanceOf(S3ArtifactStore);
    expect(store.location).toBe("s3://my-bucket/a/b");
    expect(store.path("a".repeat(64))).toBe(path.join(work, "cfg", "artifact-cache", "sha256", "a".repeat(64)));
    expect(openArtifactStore({ url: "", home: "/srv/h" }).location).toBe("/srv/h/artifacts");
    expect(openArtifactStore({ url: "file:/srv/x", home: "/srv/h" }).location).toBe("/srv/x");
    expect(() => defaultConfig({ artifacts: "s3://A_bad/x" })).toThrow(/config key artifacts/);
  });

  it("one replica registers into S3, another resolves, downloads and serves the same version with equal scores", async () => {
    const first = await appAt(path.join(work, "replica-a"));
    const record = await registerModel(first, path.join(EXAMPLES, "breast-cancer"), { name: "bc", alias: "production" });
    // Files and then the manifest are in the bucket; nothing went to a local artifacts folder.
    const keys = await keysUnder(`${PREFIX}/`);
    expect(keys).toContain(`${PREFIX}/manifests/${record.digest}.json`);
    expect(keys).toContain(`${PREFIX}/sha256/${record.digest}/model.onnx`);
    expect(fs.existsSync(path.join(work, "replica-a", "artifacts"))).toBe(false);
    expect(await first.artifacts.verify(record.digest)).toMatchObject({ ok: true, actualDigest: record.digest, problems: [] });

    const second = await appAt(path.join(work, "replica-b"));
    const resolved = await second.registry.resolve("bc@production");
    expect(resolved.version.digest).toBe(record.digest);
    expect(fs.existsSync(resolved.packageDir)).toBe(false); // not downloaded until it is used

    const serverA = buildServer({ scoring: first.scoring, registry: first.registry, logger: false });
    const serverB = buildServer({ scoring: second.scoring, registry: second.registry, logger: false });
    try {
      const call = { method: "POST" as const, url: "/v1/models/bc@production/invocations", payload: example as object };
      const [a, b] = [await serverA.inject(call), await serverB.inject(call)];
      expect(a.statusCode, a.body).toBe(200);
      expect(b.statusCode, b.body).toBe(200);
      expect(b.headers["mlship-model-version"]).toBe("bc@1");
      expect(b.json()).toEqual(a.json());
    } finally {
      await serverA.close();
      await serverB.close();
    }
    // Replica B now holds a verified local copy in its own cache.
    const local = await digestDirectory(resolved.packageDir);
    expect(local.digest).toBe(record.digest);
    expect(resolved.packageDir.startsWith(path.join(work, "replica-b", "artifact-cache"))).toBe(true);
  });

  it("stores identical content once", async () => {
    const store = s3Store("dedupe-cache");
    const one = await store.putDirectory(path.join(EXAMPLES, "diabetes"));
    const before = await keysUnder(`${PREFIX}/sha256/${one.digest}/`);
    const copy = path.join(work, "diabetes-copy");
    fs.cpSync(path.join(EXAMPLES, "diabetes"), copy, { recursive: true });
    const two = await store.putDirectory(copy);
    expect(two.digest).toBe(one.digest);
    expect(await keysUnder(`${PREFIX}/sha256/${one.digest}/`)).toEqual(before);
    expect((await keysUnder(`${PREFIX}/manifests/`)).filter((k) => k.includes(one.digest))).toHaveLength(1);
    store.close();
  });

  it("catches a corrupted object in verify and in materialize", async () => {
    const store = s3Store("corrupt-cache");
    const source = path.join(work, "digits-corrupt");
    fs.cpSync(path.join(EXAMPLES, "digits"), source, { recursive: true });
    fs.writeFileSync(path.join(source, "note.txt"), "a package only this test stores\n");
    const { digest } = await store.putDirectory(source);
    expect((await store.verify(digest)).ok).toBe(true);

    await raw.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${PREFIX}/sha256/${digest}/note.txt`, Body: "tampered\n" }));
    const verification = await store.verify(digest);
    expect(verification.ok).toBe(false);
    expect(verification.problems).toEqual([expect.stringMatching(/^note\.txt was modified/)]);

    const error = await caught(store.materialize(digest));
    expect(error.code).toBe("MLSHIP_ERR_RUNTIME_LOAD");
    expect(error.message).toMatch(/note\.txt is corrupt/);
    // Nothing half-made is left where the runtime would read it.
    expect(fs.existsSync(store.path(digest))).toBe(false);
    expect(fs.readdirSync(path.join(work, "corrupt-cache", "tmp"))).toEqual([]);

    // An object added next to the package is reported too.
    await raw.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${PREFIX}/sha256/${digest}/extra.bin`, Body: "x" }));
    expect((await store.verify(digest)).problems).toContain("extra.bin was added");
    store.close();
  });

  it("counts a half-uploaded package (files but no manifest) as absent, and a new upload completes it", async () => {
    const store = s3Store("half-cache");
    const source = path.join(work, "half");
    fs.cpSync(path.join(EXAMPLES, "diabetes"), source, { recursive: true });
    fs.writeFileSync(path.join(source, "half.txt"), "half-uploaded\n");
    const planned = await digestDirectory(source);
    // The upload stopped after the files, before the manifest.
    for (const file of planned.files) {
      await raw.send(
        new PutObjectCommand({ Bucket: BUCKET, Key: `${PREFIX}/sha256/${planned.digest}/${file.path}`, Body: fs.readFileSync(path.join(source, file.path)) }),
      );
    }
    expect(await store.has(planned.digest)).toBe(false);
    expect(await store.files(planned.digest)).toBeNull();
    expect((await store.verify(planned.digest)).ok).toBe(false);
    expect((await caught(store.materialize(planned.digest))).code).toBe("MLSHIP_ERR_PACKAGE_NOT_FOUND");

    expect((await store.putDirectory(source)).digest).toBe(planned.digest);
    expect(await store.has(planned.digest)).toBe(true);
    expect((await digestDirectory(await store.materialize(planned.digest))).digest).toBe(planned.digest);
    store.close();
  });

  it("materializes a digest once per process, and safely when several processes share the cache", async () => {
    const writer = s3Store("unused-cache");
    const { digest } = await writer.putDirectory(path.join(EXAMPLES, "digits"));
    writer.close();

    const store = s3Store("shared-cache");
    const first = store.materialize(digest);
    expect(store.materialize(digest)).toBe(first); // one download shared by every caller in this process
    // Another "process" (a second store over the same cache folder) at the same time: the rename decides.
    const other = s3Store("shared-cache");
    const results = await Promise.all([first, ...Array.from({ length: 4 }, () => store.materialize(digest)), other.materialize(digest)]);
    expect(new Set(results)).toEqual(new Set([store.path(digest)]));
    expect((await digestDirectory(store.path(digest))).digest).toBe(digest);
    expect(fs.readdirSync(path.join(work, "shared-cache", "tmp"))).toEqual([]);
    store.close();
    other.close();
  });

  it("reports an unreachable store or a missing bucket as MLSHIP_ERR_STORE_UNAVAILABLE naming artifacts", async () => {
    const noBucket = s3Store("nobucket-cache", { url: "s3://no-such-bucket/x" });
    const missing = await caught(noBucket.putDirectory(path.join(EXAMPLES, "diabetes")));
    expect(missing.code).toBe("MLSHIP_ERR_STORE_UNAVAILABLE");
    expect(missing.field).toBe("artifacts");
    expect(missing.message).toMatch(/s3:\/\/no-such-bucket\/x \(config artifacts\).*bucket "no-such-bucket" does not exist/);
    noBucket.close();

    const { server, endpoint: downEndpoint } = await startS3(path.join(work, "s3-down"), [BUCKET]);
    const store = s3Store("down-cache", { endpoint: downEndpoint });
    const { digest } = await store.putDirectory(path.join(EXAMPLES, "diabetes"));
    await stopS3(server);
    const down = await caught(store.materialize(digest));
    expect(down.code).toBe("MLSHIP_ERR_STORE_UNAVAILABLE");
    expect(down.field).toBe("artifacts");
    expect(down.message).toMatch(/^artifact store s3:\/\/mlship-artifacts\/models \(config artifacts\): .*cannot be reached/);
    expect(down.message).not.toContain("S3RVER");
    expect((await caught(store.has(digest))).code).toBe("MLSHIP_ERR_STORE_UNAVAILABLE");
    store.close();
  });

  it("the real CLI registers into S3 + PostgreSQL from one home and serves from another", async () => {
    const env = {
      ...S3_ENV,
      MLSHIP_STORE: storeUrl,
      MLSHIP_ARTIFACTS: `s3://${BUCKET}/cli`,
      MLSHIP_S3_ENDPOINT: endpoint,
      MLSHIP_WORKERS: "1",
      MLSHIP_FEEDBACK_LOG: "off",
    };
    const registerHome = path.join(work, "cli-register");
    const registered = await runCli(["models", "register", path.join(REPO, "examples/models/diabetes"), "--name", "cli-diabetes", "--alias", "production"], {
      env: { ...env, MLSHIP_HOME: registerHome },
      cwd: work,
    });
    expect(registered, registered.stderr).toMatchObject({ code: 0, stdout: "1\n", stderr: "" });
    expect(await keysUnder("cli/manifests/")).toHaveLength(1);

    const serveHome = path.join(work, "cli-serve");
    const serve = startCli(["serve", "--port", "0", "--grpc-port", "-1"], { env: { ...env, MLSHIP_HOME: serveHome }, cwd: work });
    try {
      const [, url] = await serve.waitForStdout(/mlship serving on (http:\/\/\S+)/);
      const input = JSON.parse(fs.readFileSync(path.join(EXAMPLES, "diabetes", "input_example.json"), "utf8")) as unknown;
      const res = await fetch(`${url}/v1/models/cli-diabetes@production/invocations`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(input),
      });
      expect(res.status, await res.clone().text()).toBe(200);
      expect(res.headers.get("mlship-model-version")).toBe("cli-diabetes@1");
      const body = (await res.json()) as { predictions: unknown[] };
      expect(body.predictions.length).toBeGreaterThan(0);
      // The serving home downloaded the package into its cache; it has no artifacts folder of its own.
      expect(fs.readdirSync(path.join(serveHome, "artifact-cache", "sha256"))).toHaveLength(1);
      expect(fs.existsSync(path.join(serveHome, "artifacts"))).toBe(false);
      expect(serve.stderr()).not.toContain("S3RVER");
      expect(serve.stderr()).not.toContain("NodeVersionSupportWarning");
    } finally {
      serve.child.kill("SIGTERM");
      await serve.exited;
    }
  }, 60_000);
});
