// `node --import ./load-recorder.mjs`: appends the URL of every module the ESM loader resolves under node_modules
// to the file named by LOAD_RECORD (test/serverless/lazy-imports.test.ts). CommonJS `require`s are not seen by
// loader hooks; the child reads those from the require cache.
import { register } from "node:module";
import process from "node:process";

const hooks = `
import fs from "node:fs";
let file;
export function initialize(data) { file = data.file; }
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  if (file && result.url.includes("/node_modules/")) fs.appendFileSync(file, result.url + "\\n");
  return result;
}
`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`, { data: { file: process.env.LOAD_RECORD } });
