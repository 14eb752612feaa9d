import fs from "node:fs";
import YAML from "yaml";
import { MlshipError } from "../core/index.js";
import { validateModelName } from "../registry/index.js";

/**
 * The per-model inference tokens from `server.inferenceTokensFile`: a YAML (or JSON) mapping of model names to a
 * token or a list of tokens. Errors name the file, the model and the position of a bad entry, never a token.
 */
export function readInferenceTokensFile(file: string, source: string): Readonly<Record<string, readonly string[]>> {
  const fail = (reason: string): MlshipError =>
    new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `config key server.inferenceTokensFile from ${source}: ${file} ${reason}`, {
      field: "server.inferenceTokensFile",
      details: { source },
    });
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (error) {
    const reason = (error as { code?: unknown }).code ?? (error instanceof Error ? error.message : String(error));
    throw fail(`cannot be read (${String(reason)})`);
  }
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch {
    // The parser's message quotes the text around the error, which may be a token.
    throw fail("is not valid YAML or JSON");
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw fail("must hold a mapping of model names to lists of tokens ({model: [token, ...]})");
  }
  // A null-prototype object: a model called `constructor` or `toString` is a plain key, never an inherited one.
  const tokens = Object.create(null) as Record<string, readonly string[]>;
  for (const [model, value] of Object.entries(doc)) {
    try {
      validateModelName(model);
    } catch {
      throw fail(`names ${JSON.stringify(model.slice(0, 200))}, which is not a model name`);
    }
    const list: unknown[] = Array.isArray(value) ? value : [value];
    if (list.length === 0) throw fail(`lists no token for model ${model}`);
    tokens[model] = list.map((token, i) => {
      if (typeof token !== "string" || token.trim() === "") throw fail(`has an entry for model ${model} (item ${i}) that is not a non-empty string`);
      return token.trim();
    });
  }
  return tokens;
}

/**
 * `server.corsOrigins`: comma-separated exact origins (`scheme://host[:port]`, as a browser sends them in `Origin`)
 * or `*`; undefined when one of them is not an origin (a path, a trailing slash, a wildcard inside a name).
 */
export function parseCorsOrigins(text: string): string[] | undefined {
  const parts = text
    .split(",")
    .map((part) => part.trim())
    .filter((part) => part !== "");
  if (parts.length === 0) return undefined;
  for (const part of parts) {
    if (part === "*") continue;
    let url: URL;
    try {
      url = new URL(part);
    } catch {
      return undefined;
    }
    if ((url.protocol !== "http:" && url.protocol !== "https:") || url.origin !== part || url.hostname.includes("*")) return undefined;
  }
  return parts;
}
