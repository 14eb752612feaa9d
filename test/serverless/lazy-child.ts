// A fresh process that does what a function instance does on the embedded defaults (SQLite store copied from the
// bundle, local artifacts, in-memory cache, no NATS): import the serverless handler, answer one event. It then
// prints one JSON line naming every package the process loaded (test/serverless/lazy-imports.test.ts).
import fs from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const event = JSON.parse(process.env.LAZY_EVENT ?? "{}") as unknown;
const { handler } = await import("../../src/serverless/index.js");
const answer = (await handler(event, { awsRequestId: "lazy-1" })) as { statusCode: number };
await handler.close();
// The package's main entry as an embedding program imports it (everything public, nothing started).
if (process.env.LAZY_MAIN === "1") await import("../../src/index.js");

const files = Object.keys(createRequire(import.meta.url).cache);
const record = process.env.LOAD_RECORD ?? "";
if (fs.existsSync(record)) for (const url of fs.readFileSync(record, "utf8").split("\n")) if (url.startsWith("file:")) files.push(fileURLToPath(url));
const packages = new Set<string>();
for (const file of files) {
  const name = /.*[/\\]node_modules[/\\]((?:@[^/\\]+[/\\])?[^/\\]+)/.exec(file)?.[1];
  if (name !== undefined) packages.add(name.replace(/\\/g, "/"));
}
process.stdout.write(`${JSON.stringify({ statusCode: answer.statusCode, packages: [...packages].sort() })}\n`);
