// Secrets never reach a log line or a printout: the real `mlship` binary, run with a PostgreSQL store URL and a Redis
// cache URL that carry passwords, a batch lookup URL with one, an admin token, an inference tokens file and AWS keys
// in its environment, at trace level; every byte of stdout and stderr of `mlship config`, `models register`,
// `serve` (answering good and refused requests) and a failing command is searched for every secret.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LOG_REDACT_PATHS } from "../../src/core/index.js";
import { randomBytes } from "node:crypto";
import { POSTGRES_SERVER, postgresAdmin } from "../helpers/sql-stores.js";
import { spawnCli, startCli, type LongRunning } from "../cli/helpers.js";

const EXAMPLE = fileURLToPath(new URL("../../examples/models/breast-cancer", import.meta.url));
const SECRETS = {
  pg: "PgPassw0rd-secret-1177",
  redis: "RedisPassw0rd-secret-2288",
  lookup: "LookupPassw0rd-secret-3399",
  admin: "AdminToken-secret-4400",
  inference: "InferenceToken-secret-5511",
  awsSecret: "AwsSecretKey-secret-6622/abc+def",
  awsSession: "AwsSessionToken-secret-7733",
};

let admin: Awaited<ReturnType<typeof postgresAdmin>>;
const database = `mlship_secrets_${randomBytes(5).toString("hex")}`;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-secrets-"));
let env: Record<string, string>;
const running: LongRunning[] = [];

function withPassword(url: string, password: string): string {
  const u = new URL(url);
  u.username = u.username === "" ? "postgres" : u.username;
  u.password = password;
  return u.toString();
}

function expectNoSecret(text: string, what: string): void {
  for (const [name, secret] of Object.entries(SECRETS)) {
    expect(text.includes(secret), `${what} shows the ${name} secret:\n${text.slice(0, 2000)}`).toBe(false);
    expect(text.includes(encodeURIComponent(secret)), `${what} shows the ${name} secret (encoded)`).toBe(false);
  }
}

beforeAll(async () => {
  admin = await postgresAdmin();
  await admin.query(`create database ${database}`);
  const tokensFile = path.join(dir, "tokens.yaml");
  fs.writeFileSync(tokensFile, `breast-cancer:\n  - ${SECRETS.inference}\n`);
  env = {
    MLSHIP_HOME: path.join(dir, "home"),
    MLSHIP_USER: "ci",
    // The local server trusts loopback connections, so the password is sent and ignored: the commands work.
    MLSHIP_STORE: withPassword(`${POSTGRES_SERVER}/${database}`, SECRETS.pg),
    MLSHIP_BATCH_LOOKUP_URL: withPassword(`${POSTGRES_SERVER}/${database}`, SECRETS.lookup),
    MLSHIP_CACHE: `redis://default:${SECRETS.redis}@127.0.0.1:6379/0`,
    MLSHIP_ADMIN_TOKEN: SECRETS.admin,
    MLSHIP_INFERENCE_TOKENS_FILE: tokensFile,
    AWS_ACCESS_KEY_ID: "AKIAEXAMPLEKEYID0001",
    AWS_SECRET_ACCESS_KEY: SECRETS.awsSecret,
    AWS_SESSION_TOKEN: SECRETS.awsSession,
    MLSHIP_LOG_LEVEL: "trace",
  };
}, 60_000);

afterAll(async () => {
  for (const cli of running) {
    if (cli.child.exitCode === null) {
      cli.child.kill("SIGTERM");
      await cli.exited;
    }
  }
  await admin?.query(`drop database if exists ${database} with (force)`);
  await admin?.end();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("secrets in the output of real commands", { timeout: 120_000 }, () => {
  it("mlship config prints no password, token or key (table and JSON), but says they are set", async () => {
    const table = await spawnCli(["config"], { env });
    expect(table.code, table.stderr).toBe(0);
    expectNoSecret(table.stdout + table.stderr, "mlship config");
    expect(table.stdout).toMatch(/server\.adminToken\s+\*\*\*/);
    expect(table.stdout).toContain("postgres://postgres:***@127.0.0.1");
    const json = await spawnCli(["config", "--json"], { env });
    expect(json.code).toBe(0);
    expectNoSecret(json.stdout + json.stderr, "mlship config --json");
    const parsed = JSON.parse(json.stdout) as { config: { server: Record<string, unknown>; cache: { backend: string } } };
    expect(parsed.config.server.inferenceTokensFile).toBe(env.MLSHIP_INFERENCE_TOKENS_FILE);
    expect(parsed.config.server).not.toHaveProperty("inferenceTokens");
    expect(parsed.config.cache.backend).toContain("***");
  });

  it("registering, serving (good and refused requests) and stopping log none of them, even at trace level", async () => {
    const registered = await spawnCli(["models", "register", EXAMPLE, "--name", "breast-cancer", "--alias", "production"], { env });
    expect(registered.code, registered.stderr).toBe(0);
    expectNoSecret(registered.stdout + registered.stderr, "models register");

    const cli = startCli(["serve", "--port", "0", "--grpc-port", "-1", "--workers", "1"], { env });
    running.push(cli);
    const [, url] = await cli.waitForStdout(/mlship serving on (http:\/\/\S+)/);
    const base = (url as string).replace("0.0.0.0", "127.0.0.1");
    const example = JSON.parse(fs.readFileSync(path.join(EXAMPLE, "input_example.json"), "utf8")) as { dataframe_split: { data: number[][] } };
    const body = JSON.stringify({ inputs: [example.dataframe_split.data[0]] });
    const invoke = (authorization?: string) =>
      fetch(`${base}/invocations`, { method: "POST", headers: { "content-type": "application/json", ...(authorization === undefined ? {} : { authorization }) }, body });
    expect((await invoke()).status).toBe(401);
    expect((await invoke(`Bearer ${SECRETS.inference}-wrong`)).status).toBe(403);
    expect((await invoke(`Bearer ${SECRETS.inference}`)).status).toBe(200);
    expect((await invoke(`Bearer ${SECRETS.admin}`)).status).toBe(200);
    const action = await fetch(`${base}/api/v1/models/breast-cancer/versions/1/settings`, {
      method: "PUT",
      headers: { "content-type": "application/json", authorization: `Bearer ${SECRETS.admin}x` },
      body: "{}",
    });
    expect(action.status).toBe(403);
    expectNoSecret(JSON.stringify(await (await fetch(`${base}/api/v1/server`)).json()), "/api/v1/server");
    cli.child.kill("SIGTERM");
    expect(await cli.exited).toBe(0);
    expect(cli.stderr().length).toBeGreaterThan(0);
    expectNoSecret(cli.stdout() + cli.stderr(), "mlship serve");
  });

  it("a store that cannot be reached is reported without its password", async () => {
    const down = await spawnCli(["models", "list"], { env: { ...env, MLSHIP_STORE: `postgres://postgres:${SECRETS.pg}@127.0.0.1:1/nowhere` }, timeoutMs: 60_000 });
    expect(down.code).not.toBe(0);
    expect(down.stderr.length).toBeGreaterThan(0);
    expectNoSecret(down.stdout + down.stderr, "models list on a store that is down");
    const badFile = await spawnCli(["config"], { env: { ...env, MLSHIP_INFERENCE_TOKENS_FILE: path.join(dir, "tokens-bad.yaml") } });
    expect(badFile.code).not.toBe(0);
    fs.writeFileSync(path.join(dir, "tokens-bad.yaml"), `breast-cancer: [${SECRETS.inference}\n`);
    const malformed = await spawnCli(["config"], { env: { ...env, MLSHIP_INFERENCE_TOKENS_FILE: path.join(dir, "tokens-bad.yaml") } });
    expect(malformed.code).not.toBe(0);
    expect(malformed.stderr).toContain("tokens-bad.yaml");
    expectNoSecret(malformed.stdout + malformed.stderr, "a malformed tokens file");
  });

  it("censors credential fields logged whole by mistake", () => {
    const lines: string[] = [];
    const logger = pino({ redact: { paths: LOG_REDACT_PATHS, censor: "***" } }, new Writable({ write: (chunk: Buffer, _e, done) => (lines.push(chunk.toString()), done()) }));
    logger.info({ config: { server: { adminToken: SECRETS.admin, inferenceTokens: { m: [SECRETS.inference] } } } }, "config");
    logger.info({ metadata: { authorization: `Bearer ${SECRETS.inference}` } }, "grpc call");
    logger.info({ credentials: { accessKeyId: "AKIA", secretAccessKey: SECRETS.awsSecret, sessionToken: SECRETS.awsSession } }, "s3");
    logger.info({ connection: { user: "postgres", password: SECRETS.pg } }, "pg");
    expect(lines).toHaveLength(4);
    expectNoSecret(lines.join(""), "redacted log lines");
  });
});
