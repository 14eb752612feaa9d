import { MlshipError } from "../core/index.js";

/** A store URL fit for messages and logs: the password (in the userinfo or a `password=` parameter) is replaced. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== "") parsed.password = "***";
    for (const key of [...parsed.searchParams.keys()]) {
      if (/pass(word)?/i.test(key)) parsed.searchParams.set(key, "***");
    }
    return parsed.toString();
  } catch {
    // Not a parseable URL: still never echo something that looks like `user:secret@`.
    return url.replace(/\/\/([^:/@]*):[^@/]*@/, "//$1:***@").replace(/(pass(?:word)?=)[^&\s]*/gi, "$1***");
  }
}

function errorCode(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" ? code : undefined;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A unique or primary-key violation (PostgreSQL 23505, SQLite SQLITE_CONSTRAINT_UNIQUE/PRIMARYKEY). */
export function isUniqueViolation(error: unknown): boolean {
  const code = errorCode(error);
  return code === "23505" || code === "SQLITE_CONSTRAINT_UNIQUE" || code === "SQLITE_CONSTRAINT_PRIMARYKEY";
}

/** A write that lost a race and may succeed when retried: SQLite busy/locked, PostgreSQL serialization/deadlock. */
export function isTransientConflict(error: unknown): boolean {
  const code = errorCode(error);
  if (code === undefined) return false;
  return code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED") || code === "40001" || code === "40P01";
}

const PG_CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EPIPE",
  "3D000", // database does not exist
  "28000", // invalid authorization
  "28P01", // wrong password
  "53300", // too many connections
  "57P01", // admin shutdown
  "57P02", // crash shutdown
  "57P03", // cannot connect now (starting up)
]);

/** Errors that mean "the store cannot be reached or opened", as opposed to a bug or a bad query. */
export function isUnavailable(error: unknown): boolean {
  const code = errorCode(error);
  if (code !== undefined) {
    if (PG_CONNECTION_CODES.has(code) || code.startsWith("08")) return true;
    if (
      code.startsWith("SQLITE_CANTOPEN") ||
      code.startsWith("SQLITE_IOERR") ||
      code === "SQLITE_NOTADB" ||
      code === "SQLITE_CORRUPT" ||
      code.startsWith("SQLITE_READONLY") ||
      code === "SQLITE_FULL" ||
      code === "SQLITE_PERM"
    ) {
      return true;
    }
  }
  if (error instanceof AggregateError) return error.errors.some(isUnavailable);
  const message = errorMessage(error);
  return /driver has already been destroyed|database connection is not open|Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(
    message,
  );
}

export function storeUnavailable(location: string, cause: unknown, what = "cannot be reached"): MlshipError {
  const reason = errorMessage(cause) || errorCode(cause) || "unknown error";
  return new MlshipError("MLSHIP_ERR_STORE_UNAVAILABLE", `metadata store ${location} ${what}: ${reason}`, {
    field: "store",
    cause,
    details: { store: location },
    retryAfterSeconds: 1,
  });
}

/**
 * Maps a failure of a store operation: MlshipErrors pass through, connection problems and writes that stayed
 * locked after retries become MLSHIP_ERR_STORE_UNAVAILABLE naming the (redacted) store, anything else is rethrown
 * untouched for `toMlshipError` to turn into an internal error.
 */
export function mapStoreError(location: string, error: unknown): unknown {
  if (error instanceof MlshipError) return error;
  if (isUnavailable(error)) return storeUnavailable(location, error);
  if (isTransientConflict(error)) return storeUnavailable(location, error, "stayed locked by another writer");
  return error;
}
