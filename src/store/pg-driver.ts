/**
 * node-postgres for the synchronous factories that build a pool (stream and batch SQL sinks, the batch lookup
 * database), loaded on their first call instead of at import: processes on the embedded SQLite store never load it.
 * `pg` is CommonJS (its ESM entry re-exports the same object), so `require` returns exactly what
 * `import pg from "pg"` would. Asynchronous openers use `await import("pg")` instead.
 */
import { createRequire } from "node:module";
import type Pg from "pg";

const require = createRequire(import.meta.url);
let driver: typeof Pg | undefined;

export function pgDriver(): typeof Pg {
  driver ??= require("pg") as typeof Pg;
  return driver;
}
