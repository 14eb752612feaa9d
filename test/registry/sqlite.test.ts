import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { openRegistry } from "../../src/registry/index.js";
import { freshSqlite } from "../helpers/sql-stores.js";
import { makePackage } from "./packages.js";
import { registrySuite } from "./registry-suite.js";

registrySuite("SQLite", {
  fresh: () => freshSqlite("mlship-sqlite"),
});

const CHILD = fileURLToPath(new URL("./register-child.ts", import.meta.url));

function runChild(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", CHILD, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, MLSHIP_USER: "child" },
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`child exited ${code}: ${err}`))));
  });
}

describe("registry on SQLite across processes", () => {
  it("gives concurrent registrations from separate processes distinct versions and moves the change token", async () => {
    const home = await fs.mkdtemp(path.join(os.tmpdir(), "mlship-sqlite-proc-"));
    try {
      const dirs = await Promise.all(
        Array.from({ length: 8 }, (_, i) => makePackage({ params: { seed: i }, parent: home })),
      );
      const registry = await openRegistry({ home });
      try {
        const before = await registry.changeToken();
        const outputs = await Promise.all([
          runChild([home, "shared", ...dirs.slice(0, 4)]),
          runChild([home, "shared", ...dirs.slice(4)]),
        ]);
        const fromChildren = outputs.flatMap((o) => o.trim().split("\n").map(Number)).sort((a, b) => a - b);
        expect(fromChildren).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
        expect(await registry.changeToken()).not.toBe(before);
        const versions = await registry.listVersions("shared");
        expect(versions.map((v) => v.version)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
        expect(versions.every((v) => v.createdBy === "child")).toBe(true);
      } finally {
        await registry.close();
      }
      const db = await fs.stat(path.join(home, "mlship.db"));
      expect(db.isFile()).toBe(true);
    } finally {
      await fs.rm(home, { recursive: true, force: true });
    }
  });
});
