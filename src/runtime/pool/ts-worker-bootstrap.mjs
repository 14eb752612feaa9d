// Starts a TypeScript worker from sources (vitest, tsx). Node 20 does not apply tsx's `--import tsx` hooks to a
// worker's entry module (ERR_UNKNOWN_FILE_EXTENSION), so the worker registers tsx itself, then imports the real
// entry passed as argv[2]. Compiled workers in dist/ are plain .js and never come through here.
import process from "node:process";
import { register } from "tsx/esm/api";

register();
await import(process.argv[2]);
