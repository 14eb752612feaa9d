import { MlshipError } from "../core/index.js";
import type { ModelRef } from "./types.js";

/** Model names and alias names: a letter or digit, then letters, digits, `_`, `.`, `-`. */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const MAX_NAME_LENGTH = 200;
/** `latest` is not stored as an alias; `name@latest` means the highest version that is not archived. */
export const LATEST = "latest";

/** The character and length rule shared by model and alias names; throws `code` naming `what`. */
function checkNameText(
  value: unknown,
  what: "model" | "alias",
  code: "MLSHIP_ERR_REGISTRY_NAME_INVALID" | "MLSHIP_ERR_REGISTRY_ALIAS_INVALID",
  reserved?: (text: string) => string | undefined,
): string {
  const field = what === "model" ? "name" : "alias";
  if (typeof value !== "string" || value === "") throw new MlshipError(code, `${what} name is empty`, { field });
  const why = reserved?.(value);
  if (why !== undefined) throw new MlshipError(code, `${what} name "${value}" is reserved: ${why}`, { field });
  if (value.length > MAX_NAME_LENGTH || !NAME_RE.test(value)) {
    throw new MlshipError(
      code,
      `${what} name "${value}" is not valid: use at most ${MAX_NAME_LENGTH} of A-Z a-z 0-9 _ . - starting with a letter or digit`,
      { field },
    );
  }
  return value;
}

/** Throws MLSHIP_ERR_REGISTRY_NAME_INVALID unless `name` is a valid model name; returns it. */
export function validateModelName(name: unknown): string {
  return checkNameText(name, "model", "MLSHIP_ERR_REGISTRY_NAME_INVALID");
}

/** True for the alias names that are refused because they would read as a version: `3`, `v3`, `latest`. */
export function isReservedAlias(alias: string): boolean {
  return /^\d+$/.test(alias) || /^v\d+$/i.test(alias) || alias.toLowerCase() === LATEST;
}

/** Throws MLSHIP_ERR_REGISTRY_ALIAS_INVALID unless `alias` may be used as an alias name; returns it. */
export function validateAliasName(alias: unknown): string {
  return checkNameText(alias, "alias", "MLSHIP_ERR_REGISTRY_ALIAS_INVALID", (text) =>
    isReservedAlias(text) ? `digits only, v<digits> and "latest" would read as a version` : undefined,
  );
}

function invalidRef(text: string, why: string): MlshipError {
  return new MlshipError(
    "MLSHIP_ERR_MODEL_REF_INVALID",
    `model reference "${text}" is not valid: ${why} (use name, name@3, name@alias, models:/name@alias or models:/name/3)`,
    { field: "ref" },
  );
}

function parseVersion(text: string, digits: string): number {
  const version = Number(digits);
  if (!Number.isSafeInteger(version)) throw invalidRef(text, `version "${digits}" is too large`);
  if (version < 1) throw invalidRef(text, `version "${digits}" must be 1 or more`);
  return version;
}

/** The part after `@` or `/`: a version number, `v<number>`, `latest`, or an alias name. */
function parseSelector(text: string, name: string, selector: string): ModelRef {
  if (selector === "") throw invalidRef(text, "nothing after the separator");
  if (/^\d+$/.test(selector)) return { name, version: parseVersion(text, selector) };
  if (/^v\d+$/i.test(selector)) return { name, version: parseVersion(text, selector.slice(1)) };
  if (selector.toLowerCase() === LATEST) return { name, alias: LATEST };
  if (!NAME_RE.test(selector) || selector.length > MAX_NAME_LENGTH) {
    throw invalidRef(text, `"${selector}" is neither a version number nor an alias name`);
  }
  return { name, alias: selector };
}

function checkName(text: string, name: string): string {
  if (name === "") throw invalidRef(text, "the model name is empty");
  if (!NAME_RE.test(name) || name.length > MAX_NAME_LENGTH) {
    throw invalidRef(text, `"${name}" is not a model name (A-Z a-z 0-9 _ . -, starting with a letter or digit)`);
  }
  return name;
}

/**
 * Parses `name`, `name@3`, `name@v3`, `name@production`, `name@latest`, `models:/name`, `models:/name@production`,
 * `models:/name/3` and `models:/name/latest`. `latest` comes back as `{ alias: "latest" }` and resolves to the
 * highest version that is not archived. Anything else: MLSHIP_ERR_MODEL_REF_INVALID naming the text.
 */
export function parseModelRef(text: string): ModelRef {
  if (typeof text !== "string") throw invalidRef(String(text), "not a string");
  let rest = text;
  let uri = false;
  if (/^models:\//i.test(rest)) {
    uri = true;
    rest = rest.slice("models:/".length);
    // MLflow also writes models:///name/...; treat the extra slashes as the same thing.
    rest = rest.replace(/^\/+/, "");
  }
  const at = rest.indexOf("@");
  if (at >= 0) {
    const name = checkName(text, rest.slice(0, at));
    return parseSelector(text, name, rest.slice(at + 1));
  }
  if (uri) {
    const slash = rest.indexOf("/");
    if (slash >= 0) {
      const name = checkName(text, rest.slice(0, slash));
      const selector = rest.slice(slash + 1);
      if (!/^\d+$/.test(selector) && selector.toLowerCase() !== LATEST) {
        throw invalidRef(text, `"${selector}" after "/" must be a version number or latest; write an alias as @${selector}`);
      }
      return parseSelector(text, name, selector);
    }
  }
  return { name: checkName(text, rest) };
}

/** The canonical text of a reference: `name`, `name@3` or `name@alias`. */
export function formatModelRef(ref: ModelRef): string {
  if (ref.version !== undefined) return `${ref.name}@${ref.version}`;
  if (ref.alias !== undefined) return `${ref.name}@${ref.alias}`;
  return ref.name;
}
