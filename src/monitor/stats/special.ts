/**
 * Special functions from stdlib, loaded on their first call rather than at import: the incomplete gamma function
 * alone pulls in a few dozen modules, and processes that never compute drift or a significance test (a serverless
 * function, `mlship serve` before its first monitor window) should not pay for them at start-up. The packages are
 * CommonJS, so a synchronous `require` on first use returns exactly what a top-level import would.
 */
import { createRequire } from "node:module";
import type Erfc from "@stdlib/math-base-special-erfc";
import type Gammainc from "@stdlib/math-base-special-gammainc";

const require = createRequire(import.meta.url);

let gammaincFn: typeof Gammainc | undefined;
let erfcFn: typeof Erfc | undefined;

/** `@stdlib/math-base-special-gammainc`: the (regularised, upper) incomplete gamma function. */
export function gammainc(x: number, a: number, regularized?: boolean, upper?: boolean): number {
  gammaincFn ??= require("@stdlib/math-base-special-gammainc") as typeof Gammainc;
  return gammaincFn(x, a, regularized, upper);
}

/** `@stdlib/math-base-special-erfc`: the complementary error function. */
export function erfc(x: number): number {
  erfcFn ??= require("@stdlib/math-base-special-erfc") as typeof Erfc;
  return erfcFn(x);
}
