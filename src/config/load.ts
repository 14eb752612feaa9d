import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import YAML from "yaml";
import { MlshipError } from "../core/index.js";
import { parseCorsOrigins, readInferenceTokensFile } from "./security.js";
import { KEYS, LOG_LEVELS, defaultUser, type ConfigKey, type ConfigValue, type KeyDef, type MlshipConfig } from "./schema.js";

/** The file looked for in the working directory when no `--config` / `MLSHIP_CONFIG` is given. */
export const CONFIG_FILE_NAME = "mlship.config.yaml";

export interface LoadConfigOptions {
  /** Directory relative paths (and the default config file) are resolved against. Default `process.cwd()`. */
  cwd?: string;
  /** Explicit config file (`--config`); it must exist. Falls back to `MLSHIP_CONFIG`, then `./mlship.config.yaml`. */
  configFile?: string;
  /** Environment to read `MLSHIP_*` from. Default `process.env`. */
  env?: Record<string, string | undefined>;
  /** Highest-priority values: CLI flags, or options passed by a library caller. */
  overrides?: Partial<Record<ConfigKey, unknown>>;
  /** How overrides are named in error messages: `flag` uses each key's flag (`--port`). Default `option`. */
  overrideSource?: "flag" | "option";
}

export interface LoadedConfig {
  config: MlshipConfig;
  /** Where each key's value came from: `default`, `<file> (key)`, `MLSHIP_PORT`, `--port`, `option server.port`. */
  sources: Readonly<Record<ConfigKey, string>>;
  /** The config file that was read, if any. */
  file: string | null;
}

type Layer = Partial<Record<ConfigKey, { value: ConfigValue; source: string }>>;

/** Loads defaults ► config file ► MLSHIP_* variables ► overrides, validates every value and freezes the result. */
export function loadConfig(options: LoadConfigOptions = {}): MlshipConfig {
  return loadConfigWithSources(options).config;
}

export function loadConfigWithSources(options: LoadConfigOptions = {}): LoadedConfig {
  const cwd = path.resolve(options.cwd ?? process.cwd());
  const env = options.env ?? process.env;

  const explicit = options.configFile ?? nonEmpty(env.MLSHIP_CONFIG);
  let file: string | null = null;
  if (explicit !== undefined) {
    file = path.resolve(cwd, explicit);
    if (!fs.existsSync(file)) {
      throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `config file ${file} does not exist`, { field: "config" });
    }
  } else if (fs.existsSync(path.join(cwd, CONFIG_FILE_NAME))) {
    file = path.join(cwd, CONFIG_FILE_NAME);
  }

  const merged: Layer = {};
  if (file !== null) Object.assign(merged, readFileLayer(file));
  Object.assign(merged, readEnvLayer(env, cwd));
  Object.assign(merged, readOverrideLayer(options.overrides ?? {}, options.overrideSource ?? "option", cwd));

  const sources = {} as Record<ConfigKey, string>;
  const pick = <T extends ConfigValue>(key: ConfigKey, fallback: T): T => {
    const entry = merged[key];
    sources[key] = entry?.source ?? "default";
    return (entry?.value ?? fallback) as T;
  };
  const pickNullable = (key: ConfigKey): string | null => {
    const entry = merged[key];
    sources[key] = entry?.source ?? "default";
    return entry === undefined ? null : (entry.value as string | null);
  };

  const home = pick("home", path.resolve(cwd, ".mlship"));
  const port = pick<number>("server.port", 8080);
  const adminTokenFile = pickNullable("server.adminTokenFile");
  let adminToken = pickNullable("server.adminToken");
  if (adminToken === null && adminTokenFile !== null) {
    adminToken = readTokenFile(adminTokenFile, sources["server.adminTokenFile"]);
    sources["server.adminToken"] = sources["server.adminTokenFile"];
  }
  const inferenceTokensFile = pickNullable("server.inferenceTokensFile");
  const inferenceTokens = inferenceTokensFile === null ? null : readInferenceTokensFile(inferenceTokensFile, sources["server.inferenceTokensFile"]);
  const config: MlshipConfig = {
    home,
    store: pick("store", `sqlite:${path.join(home, "mlship.db")}`),
    artifacts: pick("artifacts", path.join(home, "artifacts")),
    s3: {
      endpoint: pickNullable("s3.endpoint"),
      region: pickNullable("s3.region"),
      forcePathStyle: pick<string>("s3.forcePathStyle", merged["s3.endpoint"] === undefined ? "off" : "on") as "on" | "off",
    },
    server: {
      host: pick("server.host", "127.0.0.1"),
      port,
      bodyLimitBytes: pick("server.bodyLimitBytes", 16 * 1024 * 1024),
      defaultModel: pickNullable("server.defaultModel"),
      shutdownTimeoutMs: pick("server.shutdownTimeoutMs", 10_000),
      maxEventLoopDelayMs: pick("server.maxEventLoopDelayMs", 40),
      grpcPort: pick("server.grpcPort", port === 0 ? 0 : 8081),
      grpcMaxMessageBytes: pick("server.grpcMaxMessageBytes", 64 * 1024 * 1024),
      adminToken,
      adminTokenFile,
      inferenceTokensFile,
      inferenceTokens,
      corsOrigins: pickNullable("server.corsOrigins"),
      replicaId: pick("server.replicaId", os.hostname()),
    },
    runtime: {
      workers: pick("runtime.workers", Math.max(1, os.availableParallelism())),
      intraOpThreads: pick("runtime.intraOpThreads", 1),
      interOpThreads: pick("runtime.interOpThreads", 1),
      inlineMaxMicros: pick("runtime.inlineMaxMicros", 200),
    },
    serving: {
      maxBatchSize: pick("serving.maxBatchSize", 64),
      maxDelayMs: pick("serving.maxDelayMs", 2),
      maxQueue: pick("serving.maxQueue", 256),
      timeoutMs: pick("serving.timeoutMs", 30_000),
      maxRequestRows: pick("serving.maxRequestRows", 65_536),
    },
    cache: {
      backend: pick("cache.backend", "memory"),
      maxBytes: pick("cache.maxBytes", 64 * 1024 * 1024),
      ttlSeconds: pick("cache.ttlSeconds", 300),
    },
    monitor: {
      live: pick("monitor.live", "auto"),
      windows: pick("monitor.windows", "1h,12h,1d"),
      webhookUrl: pickNullable("monitor.webhookUrl"),
    },
    feedback: {
      log: pick("feedback.log", "on"),
      horizonMs: pick("feedback.horizonMs", 7 * 86_400_000),
      pendingTimeoutMs: pick("feedback.pendingTimeoutMs", 600_000),
      bufferRows: pick("feedback.bufferRows", 10_000),
      flushMs: pick("feedback.flushMs", 100),
      spillDir: pick("feedback.spillDir", path.join(home, "spill")),
      spillMaxBytes: pick("feedback.spillMaxBytes", 1024 ** 3),
      evaluateMs: pick("feedback.evaluateMs", 60_000),
      retentionDays: pick("feedback.retentionDays", 30),
    },
    rollout: { checkMs: pick("rollout.checkMs", 15_000) },
    batch: { chunkRows: pick("batch.chunkRows", 5000), maxAgeMs: pick("batch.maxAgeMs", 86_400_000), lookupUrl: pickNullable("batch.lookupUrl") },
    log: { level: pick("log.level", "info") },
    user: pick("user", defaultUser()),
  };
  return { config: deepFreeze(config), sources: Object.freeze(sources), file };
}

/** A config with every default, rooted at `home` (for tests and library callers that do not read files or env). */
export function defaultConfig(overrides: Partial<Record<ConfigKey, unknown>> = {}): MlshipConfig {
  return loadConfig({ env: {}, overrides, cwd: process.cwd(), configFile: undefined, overrideSource: "option" });
}

/** The admin token from a file (a mounted secret): its content, trimmed. Errors name the file, never the content. */
function readTokenFile(file: string, source: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (error) {
    const reason = (error as { code?: unknown }).code ?? (error instanceof Error ? error.message : String(error));
    throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `config key server.adminTokenFile from ${source}: cannot read ${file} (${String(reason)})`, {
      field: "server.adminTokenFile",
      details: { source },
    });
  }
  const token = text.trim();
  if (token === "") {
    throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `config key server.adminTokenFile from ${source}: ${file} is empty`, {
      field: "server.adminTokenFile",
      details: { source },
    });
  }
  return token;
}

function readFileLayer(file: string): Layer {
  let doc: unknown;
  try {
    doc = YAML.parse(fs.readFileSync(file, "utf8"));
  } catch (error) {
    const reason = error instanceof Error ? error.message.split("\n")[0] : String(error);
    throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `config file ${file} is not valid YAML: ${reason}`, {
      field: "config",
      cause: error,
    });
  }
  if (doc === null || doc === undefined) return {};
  if (!isPlainObject(doc)) {
    throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `config file ${file} must hold a mapping of keys`, {
      field: "config",
    });
  }
  const flat: Record<string, unknown> = {};
  flatten(doc, "", flat);
  const base = path.dirname(file);
  const layer: Layer = {};
  for (const [name, raw] of Object.entries(flat)) {
    const def = KEYS.find((k) => k.key === name);
    const source = `${file} (${name})`;
    if (def === undefined) {
      throw new MlshipError(
        "MLSHIP_ERR_CONFIG_INVALID",
        `unknown config key ${name} in ${file}; known keys: ${KEYS.map((k) => k.key).join(", ")}`,
        { field: name },
      );
    }
    // Paths in the file are relative to the file, so a checked-in config works from any directory.
    layer[def.key] = { value: parseValue(def, raw, source, base), source };
  }
  return layer;
}

function readEnvLayer(env: Record<string, string | undefined>, cwd: string): Layer {
  const layer: Layer = {};
  for (const def of KEYS) {
    const raw = nonEmpty(env[def.env]);
    if (raw === undefined) continue;
    layer[def.key] = { value: parseValue(def, raw, def.env, cwd), source: def.env };
  }
  return layer;
}

function readOverrideLayer(
  overrides: Partial<Record<ConfigKey, unknown>>,
  kind: "flag" | "option",
  cwd: string,
): Layer {
  const layer: Layer = {};
  for (const [name, raw] of Object.entries(overrides)) {
    if (raw === undefined) continue;
    const def = KEYS.find((k) => k.key === name);
    if (def === undefined) {
      throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `unknown config key ${name}`, { field: name });
    }
    const source = kind === "flag" && def.flag !== undefined ? def.flag : `option ${def.key}`;
    layer[def.key] = { value: parseValue(def, raw, source, cwd), source };
  }
  return layer;
}

function parseValue(def: KeyDef, raw: unknown, source: string, base: string): ConfigValue {
  const bad = (expected: string): MlshipError =>
    new MlshipError(
      "MLSHIP_ERR_CONFIG_INVALID",
      `config key ${def.key} from ${source}: ${JSON.stringify(raw)} is not ${expected}`,
      { field: def.key, details: { source } },
    );
  switch (def.kind) {
    case "int": {
      const n = typeof raw === "number" ? raw : typeof raw === "string" && /^\s*-?\d+\s*$/.test(raw) ? Number(raw) : NaN;
      const min = def.min ?? 0;
      const max = def.max ?? Number.MAX_SAFE_INTEGER;
      if (!Number.isInteger(n) || n < min || n > max) throw bad(`an integer from ${min} to ${max}`);
      return n;
    }
    case "level": {
      if (typeof raw !== "string" || !(LOG_LEVELS as readonly string[]).includes(raw)) {
        throw bad(`one of ${LOG_LEVELS.join(", ")}`);
      }
      return raw;
    }
    case "path": {
      if (typeof raw !== "string" || raw.trim() === "") throw bad("a non-empty path");
      return path.resolve(base, expandHome(raw));
    }
    case "artifacts": {
      if (typeof raw !== "string" || raw.trim() === "") throw bad("a folder or an s3://bucket/prefix URL");
      if (/^s3:\/\//i.test(raw)) {
        if (!/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?$/.test(raw)) throw bad("s3://<bucket>[/<prefix>] with a bucket name of 3 to 63 lowercase letters, digits, dots or hyphens");
        return raw;
      }
      if (/^[a-z][a-z0-9+.-]*:\/\//i.test(raw)) throw bad("a folder or an s3://bucket/prefix URL");
      const folder = raw.startsWith("file:") ? raw.slice("file:".length) : raw;
      if (folder.trim() === "") throw bad("a folder or an s3://bucket/prefix URL");
      return path.resolve(base, expandHome(folder));
    }
    case "store": {
      if (typeof raw !== "string" || raw.trim() === "") throw bad("a postgres:// URL or a SQLite file");
      if (/^postgres(ql)?:\/\//.test(raw)) {
        try {
          new URL(raw);
        } catch {
          throw bad("a valid postgres:// URL");
        }
        return raw;
      }
      if (/^[a-z][a-z0-9+.-]*:\/\//i.test(raw)) throw bad("a postgres:// URL or a SQLite file (sqlite:<file>)");
      const file = raw.startsWith("sqlite:") ? raw.slice("sqlite:".length) : raw;
      if (file.trim() === "") throw bad("a postgres:// URL or a SQLite file (sqlite:<file>)");
      return `sqlite:${path.resolve(base, expandHome(file))}`;
    }
    case "cache": {
      if (raw === "memory" || raw === "off") return raw;
      if (typeof raw === "string" && /^rediss?:\/\//.test(raw)) {
        try {
          new URL(raw);
        } catch {
          throw bad("a valid redis:// URL");
        }
        return raw;
      }
      throw bad("memory, off or a redis:// URL");
    }
    case "ref": {
      if (raw === null) return null;
      if (typeof raw !== "string" || !/^\S+$/.test(raw)) throw bad("a model reference such as name@production");
      return raw;
    }
    case "live": {
      if (raw !== "auto" && raw !== "on" && raw !== "off") throw bad("auto, on or off");
      return raw;
    }
    case "onoff": {
      if (raw === true || raw === "on") return "on";
      if (raw === false || raw === "off") return "off";
      throw bad("on or off");
    }
    case "windows": {
      if (typeof raw !== "string" || !/^\s*[1-9]\d*(ms|s|m|h|d|w)\s*(,\s*[1-9]\d*(ms|s|m|h|d|w)\s*)*$/.test(raw)) throw bad("window sizes like 1h or 1h,12h,1d");
      return raw.replace(/\s+/g, "");
    }
    case "url": {
      if (typeof raw !== "string" || !/^https?:\/\//.test(raw)) throw bad("an http:// or https:// URL");
      try {
        new URL(raw);
      } catch {
        throw bad("a valid URL");
      }
      return raw;
    }
    case "secret": {
      // The message never repeats the value: it is a credential.
      if (typeof raw !== "string" || raw.trim() === "") {
        throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `config key ${def.key} from ${source} must be a non-empty string`, {
          field: def.key,
          details: { source },
        });
      }
      return raw.trim();
    }
    case "origins": {
      if (raw === null) return null;
      const origins = typeof raw === "string" ? parseCorsOrigins(raw) : undefined;
      if (origins === undefined) throw bad("a comma-separated list of origins (https://app.example.com) or *");
      return origins.join(",");
    }
    case "string": {
      if (typeof raw === "number") return String(raw);
      if (typeof raw !== "string" || raw.trim() === "") throw bad("a non-empty string");
      return raw;
    }
  }
}

function expandHome(p: string): string {
  return p === "~" || p.startsWith("~/") ? path.join(os.homedir(), p.slice(1)) : p;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function flatten(obj: Record<string, unknown>, prefix: string, out: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(obj)) {
    const name = prefix === "" ? k : `${prefix}.${k}`;
    // `server.defaultModel: null` is a value, not a section.
    if (isPlainObject(v)) flatten(v, name, out);
    else out[name] = v;
  }
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
