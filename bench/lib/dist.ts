/**
 * The bench measures the built package (dist/, what `npm run build` emits and users run), never the TypeScript
 * sources through a loader. Types still come from src/, so the bench type-checks without a build.
 */
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { ROOT } from "./config.js";

export async function distModule<T>(relative: string): Promise<T> {
  const file = path.join(ROOT, "dist", relative);
  if (!fs.existsSync(file)) throw new Error(`bench: ${path.relative(ROOT, file)} is missing; run \`npm run build\` first`);
  return (await import(pathToFileURL(file).href)) as T;
}
