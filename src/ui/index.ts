import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import type { FastifyPluginAsync, FastifyReply } from "fastify";
import { errorBody, MlshipError } from "../core/index.js";

export type * from "./contract.js";

export interface UiRoutesOptions {
  /** The built dashboard (index.html, manifest.json, assets/). Default: `dist/ui` of this package. */
  dir?: string;
  /** `GET /` redirects to `/ui/` unless another route answers `/`. Default true. */
  redirectRoot?: boolean;
}

/**
 * Only this origin: scripts and styles from /ui/assets, requests to this server's API. uPlot sets inline styles
 * on its elements, hence 'unsafe-inline' for styles only (scripts never).
 */
export const UI_CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

const IMMUTABLE = "public, max-age=31536000, immutable";

interface BuiltManifest {
  index: string;
  scripts: string[];
  styles: string[];
  assets: Record<string, { bytes: number; contentType?: string }>;
}

interface Asset {
  body: Buffer;
  /** The body gzipped once at load, sent to clients that accept it (JS and CSS shrink to about 40%). */
  gzip: Buffer | null;
  contentType: string;
  etag: string;
}

interface Loaded {
  manifestMtimeMs: number;
  index: Asset;
  assets: Map<string, Asset>;
}

const CONTENT_TYPES: Record<string, string> = {
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".html": "text/html; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".woff2": "font/woff2",
  ".txt": "text/plain; charset=utf-8",
};

/** `dist/ui` of this package: the same relative place from src/ui (tsx) and dist/ui (built). */
export function defaultUiDir(): string {
  return fileURLToPath(new URL("../../dist/ui/", import.meta.url));
}

function asset(body: Buffer, contentType: string): Asset {
  const compressible = /^text\/|javascript|json|svg/.test(contentType) && body.length > 1024;
  return {
    body,
    gzip: compressible ? gzipSync(body, { level: 9 }) : null,
    contentType,
    etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`,
  };
}

/** `accept-encoding` names gzip (or `*`) with a non-zero quality. */
function acceptsGzip(header: string | string[] | undefined): boolean {
  const value = Array.isArray(header) ? header.join(",") : (header ?? "");
  return value.split(",").some((part) => {
    const [coding = "", ...params] = part.split(";").map((p) => p.trim().toLowerCase());
    if (coding !== "gzip" && coding !== "*") return false;
    const q = params.find((p) => p.startsWith("q="));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}

/** Sends an asset, gzipped when the client accepts it (`vary: accept-encoding` either way). */
function sendAsset(reply: FastifyReply, found: Asset, acceptEncoding: string | string[] | undefined): FastifyReply {
  reply.header("vary", "accept-encoding");
  if (found.gzip !== null && acceptsGzip(acceptEncoding)) return reply.header("content-encoding", "gzip").send(found.gzip);
  return reply.send(found.body);
}

/** A plain asset name as the build writes them: no separators, no dot segments. */
function safeName(name: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name) && !name.includes("..");
}

async function load(dir: string): Promise<Loaded | null> {
  const manifestPath = path.join(dir, "manifest.json");
  let stat;
  try {
    stat = await fs.stat(manifestPath);
  } catch {
    return null;
  }
  const manifest = JSON.parse(await fs.readFile(manifestPath, "utf8")) as BuiltManifest;
  const index = asset(await fs.readFile(path.join(dir, "index.html")), CONTENT_TYPES[".html"] as string);
  const assets = new Map<string, Asset>();
  for (const [name, info] of Object.entries(manifest.assets)) {
    // The manifest is ours, but a name that could leave assets/ is never served whatever wrote it.
    if (!safeName(name)) continue;
    const body = await fs.readFile(path.join(dir, "assets", name));
    assets.set(name, asset(body, info.contentType ?? CONTENT_TYPES[path.extname(name)] ?? "application/octet-stream"));
  }
  return { manifestMtimeMs: stat.mtimeMs, index, assets };
}

function notFound(reply: FastifyReply, url: string): FastifyReply {
  return reply
    .code(404)
    .header("cache-control", "no-cache")
    .send(errorBody(new MlshipError("MLSHIP_ERR_SERVE_ROUTE_NOT_FOUND", `no dashboard asset ${url}`, { field: "url" })));
}

/**
 * The dashboard at `/ui` (index.html, revalidated on every load) and its hashed assets at `/ui/assets/<name>`
 * (cached for a year: a new build has new names). Only names in the build's manifest.json are served, read into
 * memory once; a newer build (manifest.json changed) is picked up on the next page load. Without a build `/ui`
 * answers 503 saying how to make one.
 */
export const uiRoutes: FastifyPluginAsync<UiRoutesOptions> = async (app, options) => {
  const dir = options.dir ?? defaultUiDir();
  let loaded: Loaded | null = null;
  let loading: Promise<Loaded | null> | null = null;

  /** The build, re-read when its manifest changed (or when it was missing before). */
  const current = async (): Promise<Loaded | null> => {
    const mtime = await fs.stat(path.join(dir, "manifest.json")).then((s) => s.mtimeMs, () => null);
    if (mtime === null) return (loaded = null);
    if (loaded !== null && loaded.manifestMtimeMs === mtime) return loaded;
    loading ??= load(dir).finally(() => (loading = null));
    loaded = await loading;
    return loaded;
  };

  const securityHeaders = (reply: FastifyReply): FastifyReply =>
    reply
      .header("content-security-policy", UI_CONTENT_SECURITY_POLICY)
      .header("x-content-type-options", "nosniff")
      .header("referrer-policy", "no-referrer")
      .header("x-frame-options", "DENY");

  const page = async (request: { headers: Record<string, string | string[] | undefined> }, reply: FastifyReply): Promise<FastifyReply> => {
    const built = await current();
    securityHeaders(reply);
    if (built === null) {
      return reply
        .code(503)
        .header("cache-control", "no-cache")
        .header("retry-after", "10")
        .type("text/plain; charset=utf-8")
        .send(`The mlship dashboard is not built: ${path.join(dir, "index.html")} is missing.\nRun \`npm run build\` (or \`node scripts/build-ui.mjs\`) in the mlship folder, then reload.\n`);
    }
    reply.header("cache-control", "no-cache").header("etag", built.index.etag).type(built.index.contentType);
    if (request.headers["if-none-match"] === built.index.etag) return reply.code(304).send();
    return sendAsset(reply, built.index, request.headers["accept-encoding"]);
  };

  app.get("/ui", (request, reply) => page(request, reply));
  app.get("/ui/", (request, reply) => page(request, reply));
  app.get("/ui/index.html", (request, reply) => page(request, reply));

  app.get<{ Params: { name: string } }>("/ui/assets/:name", async (request, reply) => {
    const name = request.params.name;
    const built = safeName(name) ? await current() : null;
    const found = built?.assets.get(name);
    if (found === undefined) return notFound(reply, request.url.split("?")[0] ?? request.url);
    securityHeaders(reply).header("cache-control", IMMUTABLE).header("etag", found.etag).type(found.contentType);
    if (request.headers["if-none-match"] === found.etag) return reply.code(304).send();
    return sendAsset(reply, found, request.headers["accept-encoding"]);
  });

  if (options.redirectRoot !== false && !app.hasRoute({ method: "GET", url: "/" })) {
    app.get("/", (_request, reply) => reply.redirect("/ui/", 302));
  }
};
