// Hostile packages built in a temp folder and registered through the real import path: manifest and MLmodel paths
// that leave the package (`..`, absolute), links to files outside it, archives (not a package format: refused), and
// YAML keys that try to reach Object.prototype. Nothing outside the package is read into the store, and no refused
// import leaves a version behind.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig, loadConfigWithSources } from "../../src/config/index.js";
import { MlshipError } from "../../src/core/index.js";

const EXAMPLE = fileURLToPath(new URL("../../examples/models/breast-cancer", import.meta.url));
const root = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-hostile-"));
/** A file outside every package: its bytes must never reach the artifact store. */
const SECRET_FILE = path.join(root, "outside", "secret.onnx");
const SECRET = "TOP-SECRET-BYTES-0123456789";
let app: Mlship;
let count = 0;

/** A copy of the breast-cancer package whose manifest is edited by `edit`, plus any extra setup. */
function hostilePackage(edit: (manifest: string) => string, setup: (dir: string) => void = () => undefined): string {
  const dir = path.join(root, `pkg-${++count}`);
  fs.cpSync(EXAMPLE, dir, { recursive: true });
  const manifest = path.join(dir, "mlship.yaml");
  fs.writeFileSync(manifest, edit(fs.readFileSync(manifest, "utf8")));
  setup(dir);
  return dir;
}

async function refusal(source: string, name = "hostile"): Promise<MlshipError> {
  try {
    await registerModel(app, source, { name });
  } catch (error) {
    expect(error).toBeInstanceOf(MlshipError);
    return error as MlshipError;
  }
  throw new Error(`${source} was registered`);
}

/** No artifact in the store holds the outside file's bytes. */
function storeHoldsSecret(): boolean {
  const walk = (dir: string): boolean =>
    fs.existsSync(dir) &&
    fs.readdirSync(dir, { withFileTypes: true }).some((entry) => {
      const p = path.join(dir, entry.name);
      if (entry.isDirectory()) return walk(p);
      return entry.isFile() && fs.readFileSync(p).includes(SECRET);
    });
  return walk(app.config.artifacts) || walk(app.config.home);
}

beforeAll(async () => {
  fs.mkdirSync(path.dirname(SECRET_FILE), { recursive: true });
  fs.writeFileSync(SECRET_FILE, SECRET);
  fs.writeFileSync(path.join(root, "outside", "example.json"), JSON.stringify({ inputs: [[SECRET]] }));
  app = await createMlship(defaultConfig({ home: path.join(root, "home"), user: "tester", "runtime.workers": 1, "log.level": "silent" }));
}, 60_000);

afterAll(async () => {
  await app?.close();
  fs.rmSync(root, { recursive: true, force: true });
});

describe("hostile mlship packages", { timeout: 60_000 }, () => {
  it("refuses manifest paths that leave the package: .., absolute, and through a link", async () => {
    const cases: [string, string][] = [
      [hostilePackage((m) => m.replace("model: model.onnx", "model: ../../../../../../etc/passwd")), "files.model"],
      [hostilePackage((m) => m.replace("model: model.onnx", "model: sub/../../outside/secret.onnx")), "files.model"],
      [hostilePackage((m) => m.replace("model: model.onnx", `model: ${SECRET_FILE}`)), "files.model"],
      [hostilePackage((m) => m.replace("model: model.onnx", "model: ..\\\\outside\\\\secret.onnx")), "files.model"],
      [
        hostilePackage(
          (m) => m,
          (dir) => {
            fs.rmSync(path.join(dir, "model.onnx"));
            fs.symlinkSync(SECRET_FILE, path.join(dir, "model.onnx"));
          },
        ),
        "files.model",
      ],
      [
        hostilePackage(
          (m) => m.replace("model: model.onnx", "model: model.onnx\n  extra: notes.txt"),
          (dir) => fs.symlinkSync(SECRET_FILE, path.join(dir, "notes.txt")),
        ),
        "files.extra",
      ],
      [
        hostilePackage(
          (m) => m,
          (dir) => {
            fs.rmSync(path.join(dir, "input_example.json"));
            fs.symlinkSync(path.join(root, "outside", "example.json"), path.join(dir, "input_example.json"));
          },
        ),
        "input_example",
      ],
      [
        hostilePackage(
          (m) => m.replace("model: model.onnx", "model: linked/secret.onnx"),
          (dir) => fs.symlinkSync(path.join(root, "outside"), path.join(dir, "linked")),
        ),
        "files.model",
      ],
    ];
    for (const [dir, field] of cases) {
      const e = await refusal(dir);
      expect(e.code, `${dir}: ${e.message}`).toBe("MLSHIP_ERR_PACKAGE_INVALID");
      expect(e.field, e.message).toBe(field);
      expect(e.message).toMatch(/leaves the package root|must be relative|not a regular file|does not exist/);
    }
    await expect(app.registry.getModel("hostile")).rejects.toMatchObject({ code: "MLSHIP_ERR_MODEL_NOT_FOUND" });
    expect(storeHoldsSecret()).toBe(false);
  });

  it("copies only the files the manifest names: a link sitting in the package folder is not followed", async () => {
    const dir = hostilePackage(
      (m) => m,
      (d) => fs.symlinkSync(SECRET_FILE, path.join(d, "innocent.onnx.bak")),
    );
    const version = await registerModel(app, dir, { name: "with-stray-link" });
    expect(version.version).toBe(1);
    expect(storeHoldsSecret()).toBe(false);
  });

  it("keeps __proto__ and constructor keys in mlship.yaml from reaching Object.prototype", async () => {
    const dir = hostilePackage((m) => `${m}\n__proto__:\n  polluted: 1\nconstructor:\n  prototype:\n    polluted: 1\n`);
    await refusal(dir).catch(() => undefined);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const meta = hostilePackage((m) => m.replace(/^metadata:/m, "metadata:\n  __proto__:\n    polluted: 1").concat(/^metadata:/m.test(m) ? "" : "\nmetadata:\n  tags:\n    __proto__: {polluted: 1}\n"));
    try {
      await registerModel(app, meta, { name: "proto-meta" });
    } catch (error) {
      expect(error).toBeInstanceOf(MlshipError);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty("polluted");
  });

  it("keeps __proto__ keys in mlship.config.yaml from setting config values or reaching Object.prototype", () => {
    const cwd = path.join(root, `config-${++count}`);
    fs.mkdirSync(cwd);
    fs.writeFileSync(path.join(cwd, "mlship.config.yaml"), "__proto__:\n  polluted: 1\nserver:\n  __proto__:\n    adminToken: injected\n");
    expect(() => loadConfigWithSources({ cwd, env: {} })).toThrow(/unknown config key __proto__/);
    fs.writeFileSync(path.join(cwd, "mlship.config.yaml"), "server:\n  port: 9999\n  constructor:\n    prototype:\n      polluted: 1\n");
    expect(() => loadConfigWithSources({ cwd, env: {} })).toThrow(/unknown config key server.constructor/);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).adminToken).toBeUndefined();
  });
});

describe("hostile MLflow models", { timeout: 60_000 }, () => {
  function mlflowModel(mlmodel: string, setup: (dir: string) => void = () => undefined): string {
    const dir = path.join(root, `mlflow-${++count}`);
    fs.mkdirSync(dir, { recursive: true });
    fs.copyFileSync(path.join(EXAMPLE, "model.onnx"), path.join(dir, "model.onnx"));
    fs.writeFileSync(path.join(dir, "MLmodel"), mlmodel);
    setup(dir);
    return dir;
  }
  const onnxFlavor = (data: string): string => `flavors:\n  onnx:\n    data: ${data}\n    onnx_version: 1.16.0\n`;

  it("refuses flavor data and example paths that leave the model folder", async () => {
    for (const [dir, field] of [
      [mlflowModel(onnxFlavor("../outside/secret.onnx")), "flavors.onnx.data"],
      [mlflowModel(onnxFlavor(SECRET_FILE)), "flavors.onnx.data"],
      [mlflowModel(onnxFlavor("linked.onnx"), (d) => fs.symlinkSync(SECRET_FILE, path.join(d, "linked.onnx"))), "flavors.onnx.data"],
      [mlflowModel(`${onnxFlavor("model.onnx")}saved_input_example_info:\n  artifact_path: ../outside/example.json\n  type: ndarray\n`), "saved_input_example_info.artifact_path"],
    ] as const) {
      const e = await refusal(dir, "hostile-mlflow");
      expect(e.code, e.message).toBe("MLSHIP_ERR_PACKAGE_INVALID");
      expect(e.field, e.message).toBe(field);
    }
    // The same folder with an honest path imports (the refusals above are about the paths only).
    const honest = await registerModel(app, mlflowModel(onnxFlavor("model.onnx")), { name: "honest-mlflow" });
    expect(honest.version).toBe(1);
    expect(storeHoldsSecret()).toBe(false);
  });
});

describe("archives", () => {
  it("are not a package format: a .zip or .tar.gz is refused as unsupported, never extracted", async () => {
    for (const name of ["model.zip", "model.tar.gz", "model.tar"]) {
      const file = path.join(root, name);
      // A zip-slip entry name inside: it must never be written anywhere.
      fs.writeFileSync(file, Buffer.concat([Buffer.from("PK\x03\x04"), Buffer.from("../../../../tmp/zip-slip-pwned.txt")]));
      const e = await refusal(file, "archive");
      expect(e.code).toBe("MLSHIP_ERR_PACKAGE_UNSUPPORTED");
    }
    expect(fs.existsSync("/tmp/zip-slip-pwned.txt")).toBe(false);
  });
});
