import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { createMlship, registerModel } from "../../src/app.js";
import { MlshipError, silentLogger } from "../../src/core/index.js";
import { defaultConfig, loadConfig } from "../../src/config/index.js";
import { FIXTURES, readExpected } from "../scoring/world.js";

describe("cache configuration", () => {
  it("defaults to an in-process cache and reads cache.* from MLSHIP_* variables", () => {
    const d = defaultConfig();
    expect(d.cache).toEqual({ backend: "memory", maxBytes: 64 * 1024 * 1024, ttlSeconds: 300 });
    const env = loadConfig({ env: { MLSHIP_CACHE: "redis://127.0.0.1:6379/2", MLSHIP_CACHE_MAX_BYTES: "1024", MLSHIP_CACHE_TTL_SECONDS: "30" } });
    expect(env.cache).toEqual({ backend: "redis://127.0.0.1:6379/2", maxBytes: 1024, ttlSeconds: 30 });
    expect(loadConfig({ env: { MLSHIP_CACHE: "off" } }).cache.backend).toBe("off");
  });

  it("refuses an unknown backend or a bad TTL, naming the key", () => {
    for (const [env, key] of [
      [{ MLSHIP_CACHE: "memcached://x" }, "cache.backend"],
      [{ MLSHIP_CACHE: "redis://[bad" }, "cache.backend"],
      [{ MLSHIP_CACHE_TTL_SECONDS: "0" }, "cache.ttlSeconds"],
    ] as const) {
      let caught: unknown;
      try {
        loadConfig({ env });
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(MlshipError);
      expect((caught as MlshipError).code).toBe("MLSHIP_ERR_CONFIG_INVALID");
      expect((caught as MlshipError).field).toBe(key);
    }
  });

  it("builds the configured cache in createMlship, or none when it is off", async () => {
    const expected = await readExpected("breast_cancer_mlp");
    for (const backend of ["memory", "off"]) {
      const home = await mkdtemp(path.join(os.tmpdir(), "mlship-cache-app-"));
      const app = await createMlship(defaultConfig({ home, "runtime.workers": 1, "cache.backend": backend }), { logger: silentLogger() });
      try {
        await registerModel(app, path.join(FIXTURES, "breast_cancer_mlp", "model.onnx"), { name: "bc" });
        const input = { kind: "mlflow" as const, body: { instances: [expected.inputs[0]] } };
        const first = await app.scoring.score("bc", input);
        const second = await app.scoring.score("bc", input);
        if (backend === "memory") {
          expect([first.cached, second.cached]).toEqual([false, true]);
          expect(app.scoring.cacheStats()?.backend).toBe("memory");
        } else {
          expect([first.cached, second.cached]).toEqual([undefined, undefined]);
          expect(app.scoring.cacheStats()).toBeUndefined();
        }
      } finally {
        await app.close();
        await rm(home, { recursive: true, force: true });
      }
    }
  });
});
