// Start-up cost: a function instance on the embedded defaults must not load the drivers and clients of backends it
// does not use (PostgreSQL, S3, Redis, NATS) nor the statistics and Parquet libraries, which are loaded on first use.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { fixture, REPO, tempDir } from "../cli/helpers.js";

const bc = fixture("breast_cancer_mlp");
const root = tempDir("serverless-lazy");
const home = path.join(root, "bundle");
const CHILD = fileURLToPath(new URL("./lazy-child.ts", import.meta.url));
const RECORDER = fileURLToPath(new URL("./load-recorder.mjs", import.meta.url));

/** Loaded only by the backends and computations that need them. */
const OPTIONAL = [
  "pg",
  "@aws-sdk/client-s3",
  "ioredis",
  "@nats-io/transport-node",
  "@nats-io/jetstream",
  "@stdlib/math-base-special-gammainc",
  "@stdlib/math-base-special-erfc",
];

beforeAll(async () => {
  const app = await createMlship(defaultConfig({ home, "log.level": "warn" }));
  try {
    await registerModel(app, path.join(REPO, "examples", "models", "breast-cancer"), { name: "breast-cancer", alias: "production" });
  } finally {
    await app.close();
  }
}, 60_000);

afterAll(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

async function loadedPackages(name: string, env: Record<string, string> = {}): Promise<{ statusCode: number; packages: string[] }> {
  const record = path.join(root, `${name}.txt`);
  const event = {
    version: "2.0",
    rawPath: "/invocations",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ dataframe_split: { columns: bc.features, data: bc.expected.inputs.slice(0, 2) } }),
    isBase64Encoded: false,
    requestContext: { http: { method: "POST" } },
  };
  const line = await new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "--import", RECORDER, CHILD], {
      cwd: REPO,
      env: {
        ...process.env,
        ...env,
        MLSHIP_HOME: home,
        MLSHIP_DEFAULT_MODEL: "breast-cancer@production",
        MLSHIP_LOG_LEVEL: "warn",
        MLSHIP_WORKERS: "1",
        LAZY_EVENT: JSON.stringify(event),
        LOAD_RECORD: record,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 90_000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out.trim().split("\n").at(-1) ?? "");
      else reject(new Error(`lazy-imports child exited ${String(code)}: ${err}`));
    });
  });
  return JSON.parse(line) as { statusCode: number; packages: string[] };
}

describe("lazy imports of optional backends", () => {
  it("a serverless instance on SQLite answers without loading PostgreSQL, S3, Redis, NATS, stats or Parquet code", async () => {
    const { statusCode, packages } = await loadedPackages("serverless");
    expect(statusCode).toBe(200);
    // The recorder sees what the process does load (so an empty intersection below means something).
    expect(packages).toEqual(expect.arrayContaining(["better-sqlite3", "kysely", "onnxruntime-node"]));
    expect(packages.filter((p) => OPTIONAL.includes(p) || p === "hyparquet" || p === "hyparquet-writer")).toEqual([]);
  }, 120_000);

  it("importing the package's main entry does not load them either", async () => {
    const { statusCode, packages } = await loadedPackages("main", { LAZY_MAIN: "1" });
    expect(statusCode).toBe(200);
    expect(packages).toEqual(expect.arrayContaining(["fastify", "@grpc/grpc-js"]));
    expect(packages.filter((p) => OPTIONAL.includes(p))).toEqual([]);
  }, 120_000);
});
