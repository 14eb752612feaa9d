import { constants as fsConstants } from "node:fs";
import { access, realpath, stat } from "node:fs/promises";
import path from "node:path";
import { MlshipError } from "../core/index.js";

/** The one message shape for package problems: `<file>: <what is wrong> at <yaml path>`. */
export function invalid(file: string, what: string, at: string, cause?: unknown): MlshipError {
  return new MlshipError("MLSHIP_ERR_PACKAGE_INVALID", `${file}: ${what} at ${at}`, { field: at, cause });
}

export function unsupported(file: string, what: string, at: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_PACKAGE_UNSUPPORTED", `${file}: ${what} at ${at}`, { field: at });
}

export function notFound(file: string, what: string, field?: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_PACKAGE_NOT_FOUND", `${file}: ${what}`, { field: field ?? file });
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "string") return `the string ${JSON.stringify(value)}`;
  return `${typeof value} ${String(value)}`;
}

export async function pathExists(p: string): Promise<boolean> {
  try {
    await access(p, fsConstants.F_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Checks that `rel` names a regular file inside `root` (after following symlinks) and returns its absolute path.
 * Returns a reason string instead of throwing so callers can phrase the error for their own file and field.
 */
export async function resolveInside(root: string, rel: string): Promise<{ abs: string } | { problem: string }> {
  if (rel.length === 0) return { problem: "the path is empty" };
  if (path.isAbsolute(rel) || /^[A-Za-z]:[\\/]/.test(rel)) {
    return { problem: `the path ${JSON.stringify(rel)} must be relative to the package root` };
  }
  const normal = path.normalize(rel);
  if (normal === ".." || normal.startsWith(`..${path.sep}`) || normal.split(/[\\/]/).includes("..")) {
    return { problem: `the path ${JSON.stringify(rel)} leaves the package root` };
  }
  const abs = path.resolve(root, normal);
  let info;
  try {
    info = await stat(abs);
  } catch {
    return { problem: `the file ${JSON.stringify(rel)} does not exist` };
  }
  if (!info.isFile()) return { problem: `${JSON.stringify(rel)} is not a regular file` };
  // A symlink inside the folder could still point outside it; compare real paths.
  const [realRoot, realFile] = await Promise.all([realpath(root), realpath(abs)]);
  const fromRoot = path.relative(realRoot, realFile);
  if (fromRoot.startsWith("..") || path.isAbsolute(fromRoot)) {
    return { problem: `the path ${JSON.stringify(rel)} leaves the package root (through a link)` };
  }
  return { abs };
}

/** The first line of a YAML parser message without its trailing position (we report that separately). */
export function yamlReason(message: string, code: string): string {
  const line = message.split("\n")[0] ?? "";
  const reason = line.replace(/ at line \d+, column \d+:?$/, "").trim();
  return reason.length > 0 ? reason : code;
}
