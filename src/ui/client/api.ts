/** Reads and actions against `/api/v1/...`, with the admin token from sessionStorage on actions. */

import type { ServerInfo } from "../contract.js";

const TOKEN_KEY = "mlship.adminToken";
/** Who actions are attributed to in the audit log and the alias history. */
export const ACTOR = "dashboard";

/** A failed request: the server's `{error, code}` when it sent one. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string | null,
    readonly path: string,
  ) {
    super(message);
  }

  /** A route this server does not have (an older server, or an area it does not wire). */
  get missingRoute(): boolean {
    return this.status === 404 && (this.code === null || this.code === "MLSHIP_ERR_SERVE_ROUTE_NOT_FOUND");
  }
}

export function getToken(): string | null {
  try {
    const token = sessionStorage.getItem(TOKEN_KEY);
    return token === null || token === "" ? null : token;
  } catch {
    return null;
  }
}

export function setToken(token: string | null): void {
  if (token === null || token === "") sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token);
}

async function errorOf(response: Response, path: string): Promise<ApiError> {
  let message = `${response.status} ${response.statusText}`.trim();
  let code: string | null = null;
  try {
    const body = (await response.json()) as { error?: unknown; message?: unknown; code?: unknown; mlship_code?: unknown };
    const text = typeof body.error === "string" ? body.error : typeof body.message === "string" ? body.message : null;
    if (text !== null) message = text;
    if (typeof body.code === "string") code = body.code;
    else if (typeof body.mlship_code === "string") code = body.mlship_code;
  } catch {
    // Not JSON (a proxy's error page): the status line is all there is.
  }
  return new ApiError(response.status, message, code, path);
}

function networkError(error: unknown, path: string): ApiError {
  return new ApiError(0, `the server did not answer (${error instanceof Error ? error.message : String(error)})`, null, path);
}

/**
 * A read. `signal` marks the answer as unwanted (the page was left): the request is not cancelled (a cancelled
 * request shows as a failed one in the browser's tools, and reads are short), its answer is dropped instead.
 */
export async function getJson<T>(path: string, signal?: AbortSignal): Promise<T> {
  let response: Response;
  try {
    response = await fetch(path, { headers: { accept: "application/json" } });
  } catch (error) {
    throw networkError(error, path);
  }
  if (signal?.aborted === true) throw new DOMException("the page was left", "AbortError");
  if (!response.ok) throw await errorOf(response, path);
  return (await response.json()) as T;
}

/** An action: POST/PUT with a JSON body and the admin token (when one is stored). */
export async function sendJson<T>(method: "POST" | "PUT" | "DELETE", path: string, body: unknown): Promise<T> {
  // The server records `x-mlship-user` as the actor of the change, so the audit log says it came from here.
  const headers: Record<string, string> = { "content-type": "application/json", accept: "application/json", "x-mlship-user": ACTOR };
  const token = getToken();
  if (token !== null) headers.authorization = `Bearer ${token}`;
  let response: Response;
  try {
    response = await fetch(path, { method, headers, body: JSON.stringify(body ?? {}) });
  } catch (error) {
    throw networkError(error, path);
  }
  if (!response.ok) throw await errorOf(response, path);
  const text = await response.text();
  return (text === "" ? null : JSON.parse(text)) as T;
}

/** A sentence for an error: what failed, and how to fix it where that is known. */
export function describeError(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.missingRoute) return `This server does not offer ${error.path.split("?")[0]} (404): it may be an older mlship or the area is not wired in.`;
    if (error.status === 503) return `${error.message} (503: the service is unavailable right now; it retries by itself)`;
    return error.code === null ? error.message : `${error.message} [${error.code}]`;
  }
  return error instanceof Error ? error.message : String(error);
}

let serverInfo: ServerInfo | null = null;

export function server(): ServerInfo | null {
  return serverInfo;
}

export async function loadServer(): Promise<ServerInfo | null> {
  try {
    serverInfo = await getJson<ServerInfo>("/api/v1/server");
  } catch {
    serverInfo = null;
  }
  return serverInfo;
}

/** Actions are possible only where the server has an admin token; null when unknown (older server: try, and see). */
export function actionsDisabledReason(): string | null {
  if (serverInfo !== null && !serverInfo.auth.adminToken) {
    return "Actions are off: this server has no admin token (start it with MLSHIP_ADMIN_TOKEN set to enable them).";
  }
  return null;
}
