// Builds the dashboard (src/ui/client) into dist/ui: minified JS and CSS with content hashes in their names under
// assets/, an index.html that references them, and manifest.json listing every asset (the server serves only those).
// Prints a size report and fails when the JavaScript is over the budget.
//
//   node scripts/build-ui.mjs [--outdir dist/ui]

import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import * as esbuild from "esbuild";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
/** The budget: the whole UI under 300 KB of JavaScript (KB = 1000 bytes, uncompressed). */
export const JS_BUDGET_BYTES = 300_000;

const CONTENT_TYPES = {
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
};

function parseArgs(argv) {
  const args = { outdir: path.join(ROOT, "dist/ui") };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--outdir" && argv[i + 1] !== undefined) args.outdir = path.resolve(argv[++i]);
    else throw new Error(`unknown argument ${argv[i]} (usage: node scripts/build-ui.mjs [--outdir DIR])`);
  }
  return args;
}

function escapeAttr(text) {
  return text.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");
}

function indexHtml(scripts, styles) {
  const links = styles.map((name) => `  <link rel="stylesheet" href="/ui/assets/${escapeAttr(name)}">`).join("\n");
  const tags = scripts.map((name) => `  <script type="module" src="/ui/assets/${escapeAttr(name)}"></script>`).join("\n");
  return `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>mlship dashboard</title>
  <link rel="icon" href="data:,">
${links}
${tags}
</head>
<body>
  <noscript>The mlship dashboard needs JavaScript. Every figure it shows is also plain JSON under /api/v1/.</noscript>
</body>
</html>
`;
}

export async function buildUi(outdir) {
  const assetsDir = path.join(outdir, "assets");
  // Only what this script wrote before: dist/ui also holds the server's compiled src/ui (index.js, contract.js).
  await fs.rm(assetsDir, { recursive: true, force: true });
  await fs.mkdir(assetsDir, { recursive: true });
  const result = await esbuild.build({
    absWorkingDir: ROOT,
    entryPoints: { main: "src/ui/client/main.ts" },
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    target: ["es2020", "chrome100", "firefox100", "safari15"],
    outdir: assetsDir,
    entryNames: "[name]-[hash]",
    assetNames: "[name]-[hash]",
    chunkNames: "[name]-[hash]",
    metafile: true,
    legalComments: "linked",
    tsconfig: "src/ui/client/tsconfig.json",
    logLevel: "warning",
  });
  const written = Object.keys(result.metafile.outputs).map((file) => path.basename(file));
  const scripts = written.filter((name) => name.endsWith(".js"));
  const styles = written.filter((name) => name.endsWith(".css"));
  const assets = {};
  for (const name of written.sort()) {
    const body = await fs.readFile(path.join(assetsDir, name));
    assets[name] = {
      bytes: body.length,
      gzipBytes: gzipSync(body).length,
      sha256: createHash("sha256").update(body).digest("hex"),
      contentType: CONTENT_TYPES[path.extname(name)] ?? "application/octet-stream",
    };
  }
  const html = indexHtml(scripts, styles);
  await fs.writeFile(path.join(outdir, "index.html"), html);
  const manifest = { index: "index.html", scripts, styles, assets, jsBudgetBytes: JS_BUDGET_BYTES };
  await fs.writeFile(path.join(outdir, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

function report(manifest, outdir) {
  const rows = Object.entries(manifest.assets).map(([name, a]) => [name, a.bytes, a.gzipBytes]);
  const width = Math.max(...rows.map(([name]) => name.length), 5);
  const kb = (n) => `${(n / 1000).toFixed(1).padStart(7)} KB`;
  const lines = [`dashboard built into ${path.relative(process.cwd(), outdir) || "."}`];
  lines.push(`  ${"asset".padEnd(width)}  ${"size".padStart(10)}  ${"gzip".padStart(10)}`);
  for (const [name, bytes, gz] of rows) lines.push(`  ${name.padEnd(width)}  ${kb(bytes)}  ${kb(gz)}`);
  const js = manifest.scripts.reduce((sum, name) => sum + manifest.assets[name].bytes, 0);
  lines.push(`  JavaScript ${kb(js)} of the ${kb(JS_BUDGET_BYTES).trim()} budget (${((js / JS_BUDGET_BYTES) * 100).toFixed(0)}%)`);
  console.log(lines.join("\n"));
  return js;
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { outdir } = parseArgs(process.argv.slice(2));
  const manifest = await buildUi(outdir);
  const js = report(manifest, outdir);
  if (js > JS_BUDGET_BYTES) {
    console.error(`build-ui: the JavaScript (${js} bytes) is over the budget of ${JS_BUDGET_BYTES} bytes`);
    process.exitCode = 1;
  }
}
