import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { KEYS, loadConfig, loadConfigWithSources } from "../../src/config/index.js";
import { MlshipError } from "../../src/core/index.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-config-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function dir(name: string, yaml?: string): string {
  const d = path.join(tmp, name);
  fs.mkdirSync(d, { recursive: true });
  if (yaml !== undefined) fs.writeFileSync(path.join(d, "mlship.config.yaml"), yaml);
  return d;
}

function configError(fn: () => unknown): MlshipError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(MlshipError);
    return error as MlshipError;
  }
  throw new Error("expected a config error");
}

describe("config", () => {
  it("has defaults rooted at ./.mlship in the working directory", () => {
    const cwd = dir("defaults");
    const { config, sources, file } = loadConfigWithSources({ cwd, env: {} });
    expect(file).toBeNull();
    expect(config.home).toBe(path.join(cwd, ".mlship"));
    expect(config.store).toBe(`sqlite:${path.join(cwd, ".mlship", "mlship.db")}`);
    expect(config.artifacts).toBe(path.join(cwd, ".mlship", "artifacts"));
    expect(config.server).toEqual({
      host: "127.0.0.1",
      port: 8080,
      bodyLimitBytes: 16 * 1024 * 1024,
      defaultModel: null,
      shutdownTimeoutMs: 10_000,
      maxEventLoopDelayMs: 40,
      grpcPort: 8081,
      grpcMaxMessageBytes: 64 * 1024 * 1024,
      adminToken: null,
      adminTokenFile: null,
      inferenceTokensFile: null,
      inferenceTokens: null,
      corsOrigins: null,
      // A restarted pod keeps its name, so it goes on with its own part of the live monitoring windows.
      replicaId: os.hostname(),
    });
    expect(config.runtime.workers).toBe(os.availableParallelism());
    expect(config.runtime.intraOpThreads).toBe(1);
    expect(config.serving.maxRequestRows).toBe(65_536);
    expect(config.log.level).toBe("info");
    expect(config.user.length).toBeGreaterThan(0);
    expect(sources["server.port"]).toBe("default");
  });

  it("layers file, then MLSHIP_* variables, then flags, and freezes the result", () => {
    const cwd = dir("layers", "home: data\nserver:\n  port: 9000\n  host: 0.0.0.0\nruntime:\n  workers: 3\nuser: alice\n");
    const { config, sources } = loadConfigWithSources({
      cwd,
      env: { MLSHIP_PORT: "9100", MLSHIP_USER: "bob", MLSHIP_DEFAULT_MODEL: "iris@production" },
      overrides: { "server.port": "9200" },
      overrideSource: "flag",
    });
    expect(config.home).toBe(path.join(cwd, "data"));
    expect(config.store).toBe(`sqlite:${path.join(cwd, "data", "mlship.db")}`);
    expect(config.server.host).toBe("0.0.0.0");
    expect(config.server.port).toBe(9200);
    expect(config.runtime.workers).toBe(3);
    expect(config.user).toBe("bob");
    expect(config.server.defaultModel).toBe("iris@production");
    expect(sources["server.port"]).toBe("--port");
    expect(sources.user).toBe("MLSHIP_USER");
    expect(sources["runtime.workers"]).toContain("mlship.config.yaml");
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.server)).toBe(true);
    expect(() => {
      (config.server as { port: number }).port = 1;
    }).toThrow(TypeError);
  });

  it("accepts postgres URLs and sqlite paths for the store", () => {
    const cwd = dir("store");
    expect(loadConfig({ cwd, env: { MLSHIP_STORE: "postgres://postgres@127.0.0.1:5432/x" } }).store).toBe(
      "postgres://postgres@127.0.0.1:5432/x",
    );
    expect(loadConfig({ cwd, env: { MLSHIP_STORE: "reg.db" } }).store).toBe(`sqlite:${path.join(cwd, "reg.db")}`);
    expect(loadConfig({ cwd, env: { MLSHIP_STORE: "sqlite:/abs/r.db" } }).store).toBe("sqlite:/abs/r.db");
  });

  it("takes the replica id from MLSHIP_REPLICA_ID or server.replicaId, never an empty one", () => {
    expect(loadConfig({ cwd: dir("replica-env"), env: { MLSHIP_REPLICA_ID: "mlship-7d9c-x2kqp" } }).server.replicaId).toBe("mlship-7d9c-x2kqp");
    expect(loadConfig({ cwd: dir("replica-file", "server:\n  replicaId: replica-1\n"), env: {} }).server.replicaId).toBe("replica-1");
    expect(configError(() => loadConfig({ cwd: dir("replica-empty"), env: { MLSHIP_REPLICA_ID: " " } })).field).toBe("server.replicaId");
  });

  it("reads --config / MLSHIP_CONFIG and resolves the file's paths against the file", () => {
    const cfgDir = dir("elsewhere", "home: ./h\n");
    const cwd = dir("cwd-for-explicit");
    expect(loadConfig({ cwd, env: {}, configFile: path.join(cfgDir, "mlship.config.yaml") }).home).toBe(
      path.join(cfgDir, "h"),
    );
    expect(loadConfig({ cwd, env: { MLSHIP_CONFIG: path.join(cfgDir, "mlship.config.yaml") } }).home).toBe(
      path.join(cfgDir, "h"),
    );
    const missing = configError(() => loadConfig({ cwd, env: {}, configFile: "nope.yaml" }));
    expect(missing.code).toBe("MLSHIP_ERR_CONFIG_INVALID");
    expect(missing.message).toContain("nope.yaml");
  });

  it("names the key and its source for a bad value", () => {
    const cwd = dir("bad");
    const fromEnv = configError(() => loadConfig({ cwd, env: { MLSHIP_PORT: "eighty" } }));
    expect(fromEnv.code).toBe("MLSHIP_ERR_CONFIG_INVALID");
    expect(fromEnv.field).toBe("server.port");
    expect(fromEnv.message).toContain("server.port");
    expect(fromEnv.message).toContain("MLSHIP_PORT");

    const fromFlag = configError(() =>
      loadConfig({ cwd, env: {}, overrides: { "runtime.workers": "0" }, overrideSource: "flag" }),
    );
    expect(fromFlag.message).toContain("runtime.workers");
    expect(fromFlag.message).toContain("--workers");

    const level = configError(() => loadConfig({ cwd, env: { MLSHIP_LOG_LEVEL: "loud" } }));
    expect(level.message).toContain("log.level");
    expect(level.message).toContain("MLSHIP_LOG_LEVEL");

    const store = configError(() => loadConfig({ cwd, env: { MLSHIP_STORE: "mysql://x/y" } }));
    expect(store.message).toContain("MLSHIP_STORE");

    const rows = configError(() => loadConfig({ cwd, env: { MLSHIP_MAX_REQUEST_ROWS: "0" } }));
    expect(rows.field).toBe("serving.maxRequestRows");
    expect(rows.message).toContain("serving.maxRequestRows");
    expect(rows.message).toContain("MLSHIP_MAX_REQUEST_ROWS");
    expect(loadConfig({ cwd, env: { MLSHIP_MAX_REQUEST_ROWS: "1000" } }).serving.maxRequestRows).toBe(1000);
  });

  it("names the file for an unknown key, a bad value or broken YAML", () => {
    const unknown = dir("unknown-key", "server:\n  prot: 80\n");
    const e1 = configError(() => loadConfig({ cwd: unknown, env: {} }));
    expect(e1.message).toContain("server.prot");
    expect(e1.message).toContain("mlship.config.yaml");

    const badValue = dir("bad-value", "server:\n  bodyLimitBytes: -5\n");
    const e2 = configError(() => loadConfig({ cwd: badValue, env: {} }));
    expect(e2.message).toContain("server.bodyLimitBytes");
    expect(e2.message).toContain(path.join(badValue, "mlship.config.yaml"));

    const broken = dir("broken", "server: [\n");
    const e3 = configError(() => loadConfig({ cwd: broken, env: {} }));
    expect(e3.message).toContain("not valid YAML");
  });

  it("documents every key, its variable and default in docs/config.md", () => {
    const doc = fs.readFileSync(fileURLToPath(new URL("../../docs/config.md", import.meta.url)), "utf8");
    for (const def of KEYS) {
      expect(doc, def.key).toContain(`\`${def.key}\``);
      expect(doc, def.env).toContain(`\`${def.env}\``);
      if (def.flag !== undefined) expect(doc, def.flag).toContain(`\`${def.flag}\``);
    }
  });
});
