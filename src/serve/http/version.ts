import { readFileSync } from "node:fs";

let cached: string | undefined;

/** mlship's own version from package.json (src/serve/http and dist/serve/http are both three levels deep). */
export function mlshipVersion(): string {
  if (cached !== undefined) return cached;
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version?: unknown };
    cached = typeof pkg.version === "string" ? pkg.version : "0.0.0";
  } catch {
    cached = "0.0.0";
  }
  return cached;
}
