import { MlshipError } from "../core/index.js";

export function usageError(message: string, field?: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_CLI_USAGE", message, field === undefined ? {} : { field });
}

/** Commander collector for repeatable `--flag k=v` options. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

export function parsePairs(values: readonly string[] | undefined, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of values ?? []) {
    const eq = item.indexOf("=");
    if (eq <= 0) throw usageError(`${flag} expects key=value, got "${item}"`, flag);
    out[item.slice(0, eq).trim()] = item.slice(eq + 1);
  }
  return out;
}

export function parseMetrics(values: readonly string[] | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, text] of Object.entries(parsePairs(values, "--metric"))) {
    const n = Number(text);
    if (text.trim() === "" || !Number.isFinite(n)) {
      throw usageError(`--metric ${key} must be a number, got "${text}"`, "--metric");
    }
    out[key] = n;
  }
  return out;
}

export function parseVersion(text: string, what = "VERSION"): number {
  if (!/^\s*v?\d+\s*$/i.test(text)) throw usageError(`${what} must be a version number such as 3, got "${text}"`, what);
  const n = Number(text.trim().replace(/^v/i, ""));
  if (!Number.isSafeInteger(n) || n < 1) throw usageError(`${what} must be 1 or more, got "${text}"`, what);
  return n;
}

export function parseColumns(text: string): string[] {
  const columns = text.split(",").map((c) => c.trim());
  if (columns.some((c) => c === "")) throw usageError(`--columns has an empty name in "${text}"`, "--columns");
  return columns;
}
