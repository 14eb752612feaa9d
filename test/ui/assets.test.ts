// The dashboard's build (scripts/build-ui.mjs, run for real into a temporary folder) and how the server serves it
// (uiRoutes from src/ui): the JavaScript budget, index.html's references, content types, caching, the
// Content-Security-Policy, refused traversal attempts, and the 503 before a build exists.
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { gunzipSync } from "node:zlib";
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultUiDir, UI_CONTENT_SECURITY_POLICY, uiRoutes } from "../../src/ui/index.js";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const JS_BUDGET_BYTES = 300_000;
const run = promisify(execFile);

interface BuiltManifest {
  index: string;
  scripts: string[];
  styles: string[];
  assets: Record<string, { bytes: number; gzipBytes: number; sha256: string; contentType: string }>;
}

async function buildInto(dir: string): Promise<{ manifest: BuiltManifest; stdout: string }> {
  const { stdout } = await run(process.execPath, [path.join(REPO, "scripts/build-ui.mjs"), "--outdir", dir], { cwd: REPO, timeout: 120_000 });
  return { manifest: JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8")) as BuiltManifest, stdout };
}

async function serve(dir: string, options: { redirectRoot?: boolean; before?: (app: FastifyInstance) => void } = {}): Promise<FastifyInstance> {
  const app = Fastify({ logger: false });
  options.before?.(app);
  await app.register(uiRoutes, { dir, ...(options.redirectRoot === undefined ? {} : { redirectRoot: options.redirectRoot }) });
  await app.ready();
  return app;
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-ui-assets-"));
const built = path.join(tmp, "built");
let manifest: BuiltManifest;
let buildOutput: string;
let app: FastifyInstance;

beforeAll(async () => {
  ({ manifest, stdout: buildOutput } = await buildInto(built));
  app = await serve(built);
});

afterAll(async () => {
  await app?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe("the dashboard build", () => {
  it("bundles hashed JS and CSS, lists them in manifest.json and reports their sizes", () => {
    expect(manifest.scripts).toHaveLength(1);
    expect(manifest.styles).toHaveLength(1);
    for (const name of [...manifest.scripts, ...manifest.styles]) {
      expect(name).toMatch(/^main-[A-Z0-9]{8}\.(js|css)$/);
      const body = fs.readFileSync(path.join(built, "assets", name));
      expect(manifest.assets[name]?.bytes).toBe(body.length);
      expect(buildOutput).toContain(name);
    }
    // Every file written under assets/ is in the manifest (the server serves nothing else).
    expect(fs.readdirSync(path.join(built, "assets")).sort()).toEqual(Object.keys(manifest.assets).sort());
    expect(buildOutput).toMatch(/JavaScript\s+[\d.]+ KB of the 300\.0 KB budget/);
  });

  it("keeps the whole UI under 300 KB of JavaScript", () => {
    const scripts = Object.keys(manifest.assets).filter((name) => name.endsWith(".js"));
    const total = scripts.reduce((sum, name) => sum + fs.statSync(path.join(built, "assets", name)).size, 0);
    expect(total).toBeGreaterThan(20_000); // uPlot alone is ~50 KB: a real bundle, not an empty one
    expect(total).toBeLessThan(JS_BUDGET_BYTES);
  });

  it("writes an index.html whose every asset exists, with uPlot inside and no eval (the CSP forbids it)", () => {
    const html = fs.readFileSync(path.join(built, "index.html"), "utf8");
    const referenced = [...html.matchAll(/(?:src|href)="\/ui\/assets\/([^"]+)"/g)].map((m) => m[1] as string);
    expect(referenced.sort()).toEqual([...manifest.scripts, ...manifest.styles].sort());
    for (const name of referenced) expect(fs.existsSync(path.join(built, "assets", name))).toBe(true);
    expect(html).toContain('<script type="module"');
    const js = fs.readFileSync(path.join(built, "assets", manifest.scripts[0] as string), "utf8");
    expect(js).toContain("uplot"); // uPlot's class names
    expect(js).not.toMatch(/\beval\(|new Function\(/);
    const css = fs.readFileSync(path.join(built, "assets", manifest.styles[0] as string), "utf8");
    expect(css).toContain(".uplot");
  });

  it("never puts markup built from data into the page (no innerHTML and friends in the browser code)", () => {
    const dir = path.join(REPO, "src/ui/client");
    const files = fs.readdirSync(dir, { recursive: true }).map(String).filter((f) => f.endsWith(".ts"));
    expect(files.length).toBeGreaterThan(5);
    for (const file of files) {
      const text = fs.readFileSync(path.join(dir, file), "utf8");
      expect(text, file).not.toMatch(/\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write/);
    }
  });
});

describe("serving /ui", () => {
  it("answers /ui, /ui/ and /ui/index.html with the page, revalidated on every load, under a self-only CSP", async () => {
    const html = fs.readFileSync(path.join(built, "index.html"), "utf8");
    for (const url of ["/ui", "/ui/", "/ui/index.html"]) {
      const res = await app.inject({ method: "GET", url });
      expect(res.statusCode, url).toBe(200);
      expect(res.headers["content-type"]).toBe("text/html; charset=utf-8");
      expect(res.headers["cache-control"]).toBe("no-cache");
      expect(res.headers["content-security-policy"]).toBe(UI_CONTENT_SECURITY_POLICY);
      expect(res.headers["x-content-type-options"]).toBe("nosniff");
      expect(res.body).toBe(html);
    }
    const csp = UI_CONTENT_SECURITY_POLICY;
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toMatch(/script-src[^;]*unsafe/);
    expect(csp).toContain("style-src 'self' 'unsafe-inline'");
    const first = await app.inject({ method: "GET", url: "/ui/" });
    const again = await app.inject({ method: "GET", url: "/ui/", headers: { "if-none-match": String(first.headers.etag) } });
    expect(again.statusCode).toBe(304);
  });

  it("serves hashed assets with their content type and a year of immutable cache", async () => {
    const js = manifest.scripts[0] as string;
    const css = manifest.styles[0] as string;
    const script = await app.inject({ method: "GET", url: `/ui/assets/${js}` });
    expect(script.statusCode).toBe(200);
    expect(script.headers["content-type"]).toBe("text/javascript; charset=utf-8");
    expect(script.headers["cache-control"]).toBe("public, max-age=31536000, immutable");
    expect(script.rawPayload.equals(fs.readFileSync(path.join(built, "assets", js)))).toBe(true);
    const style = await app.inject({ method: "GET", url: `/ui/assets/${css}` });
    expect(style.statusCode).toBe(200);
    expect(style.headers["content-type"]).toBe("text/css; charset=utf-8");
    expect(style.headers["cache-control"]).toContain("immutable");
    // Gzipped for clients that accept it, the same bytes once inflated.
    const zipped = await app.inject({ method: "GET", url: `/ui/assets/${js}`, headers: { "accept-encoding": "br, gzip;q=0.8" } });
    expect(zipped.headers["content-encoding"]).toBe("gzip");
    expect(zipped.headers.vary).toBe("accept-encoding");
    expect(zipped.rawPayload.length).toBeLessThan(script.rawPayload.length / 2);
    expect(gunzipSync(zipped.rawPayload).equals(script.rawPayload)).toBe(true);
    const refused = await app.inject({ method: "GET", url: `/ui/assets/${js}`, headers: { "accept-encoding": "gzip;q=0, identity" } });
    expect(refused.headers["content-encoding"]).toBeUndefined();
    expect(refused.rawPayload.equals(script.rawPayload)).toBe(true);
    const head = await app.inject({ method: "HEAD", url: `/ui/assets/${js}` });
    expect(head.statusCode).toBe(200);
    expect(head.headers["content-type"]).toBe("text/javascript; charset=utf-8");
  });

  it("answers unknown assets with a JSON 404 and refuses every path outside the manifest", async () => {
    const unknown = await app.inject({ method: "GET", url: "/ui/assets/main-00000000.js" });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.headers["content-type"]).toMatch(/^application\/json/);
    expect(unknown.json()).toMatchObject({ code: "MLSHIP_ERR_SERVE_ROUTE_NOT_FOUND" });
    // manifest.json and index.html are in the folder but are not assets; the rest try to leave the folder.
    fs.writeFileSync(path.join(built, "secret.txt"), "do not serve");
    const attempts = [
      "/ui/assets/..%2F..%2Fpackage.json",
      "/ui/assets/..%2Fmanifest.json",
      "/ui/assets/..%2Fsecret.txt",
      "/ui/assets/%2E%2E%2Fsecret.txt",
      "/ui/assets/..%5Csecret.txt",
      "/ui/assets/../secret.txt",
      "/ui/assets/../../package.json",
      "/ui/assets/manifest.json",
      "/ui/assets/",
      "/ui/secret.txt",
      "/ui/manifest.json",
      `/ui/assets/${encodeURIComponent(path.join(built, "secret.txt"))}`,
    ];
    for (const url of attempts) {
      const res = await app.inject({ method: "GET", url });
      expect(res.statusCode, url).toBe(404);
      expect(res.body, url).not.toContain("do not serve");
      expect(res.body, url).not.toContain('"devDependencies"');
      expect(res.body, url).not.toContain('"scripts"');
    }
  });

  it("redirects / to /ui/ unless / is taken", async () => {
    const root = await app.inject({ method: "GET", url: "/" });
    expect(root.statusCode).toBe(302);
    expect(root.headers.location).toBe("/ui/");
    const taken = await serve(built, { before: (a) => a.get("/", async () => ({ mine: true })) });
    expect((await taken.inject({ method: "GET", url: "/" })).json()).toEqual({ mine: true });
    await taken.close();
    const off = await serve(built, { redirectRoot: false });
    expect((await off.inject({ method: "GET", url: "/" })).statusCode).toBe(404);
    await off.close();
  });

  it("answers 503 saying how to build while the folder is empty, and serves a build made afterwards", async () => {
    const empty = path.join(tmp, "empty");
    fs.mkdirSync(empty);
    const server = await serve(empty);
    try {
      const res = await server.inject({ method: "GET", url: "/ui/" });
      expect(res.statusCode).toBe(503);
      expect(res.headers["cache-control"]).toBe("no-cache");
      expect(res.body).toContain("npm run build");
      expect((await server.inject({ method: "GET", url: `/ui/assets/${manifest.scripts[0] as string}` })).statusCode).toBe(404);
      // Built while the server runs: the next load finds it, no restart.
      const later = await buildInto(empty);
      const page = await server.inject({ method: "GET", url: "/ui" });
      expect(page.statusCode).toBe(200);
      expect(page.body).toContain(later.manifest.scripts[0] as string);
      expect((await server.inject({ method: "GET", url: `/ui/assets/${later.manifest.scripts[0] as string}` })).statusCode).toBe(200);
    } finally {
      await server.close();
    }
  });

  it("finds the package's own dist/ui by default (from src/ under tsx as from dist/)", () => {
    expect(defaultUiDir()).toBe(path.join(REPO, "dist/ui/"));
  });
});
