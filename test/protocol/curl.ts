/**
 * The `curl` binary as an HTTP client that is not ours (conventions.md "Tests"): every request is a real curl
 * process talking to a server listening on a real port. Bodies go through files, as a user would send them with
 * `--data-binary @file`, so what the server sees is exactly what curl puts on the wire.
 */
import { execFile } from "node:child_process";
import { access, constants, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export const CURL = "/usr/bin/curl";

/** Installs curl with apt-get when it is missing (idempotent: nothing happens when it is there). */
export async function ensureCurl(): Promise<void> {
  try {
    await access(CURL, constants.X_OK);
    return;
  } catch {
    // Missing: install it rather than skip (a skipped protocol test would count as a failure anyway).
  }
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  await run("apt-get", ["update", "-qq"], { env, timeout: 300_000 });
  await run("apt-get", ["install", "-y", "-qq", "curl"], { env, timeout: 300_000 });
  await access(CURL, constants.X_OK);
}

export interface CurlResponse {
  status: number;
  /** Response headers, names lowercased (the last response's, after any `100 Continue`). */
  headers: Record<string, string>;
  body: string;
}

export interface CurlClient {
  /** Runs curl with `args` (URL paths are relative to the server's base URL). */
  curl(args: readonly string[]): Promise<CurlResponse>;
  /** Writes `content` (a string, or JSON for anything else) to a file under the client's folder; returns its path. */
  file(name: string, content: unknown): Promise<string>;
  base: string;
}

/** A client for the server at `base` keeping its request files in `dir`. */
export function curlClient(base: string, dir: string): CurlClient {
  let seq = 0;
  return {
    base,
    async file(name, content) {
      const file = path.join(dir, name);
      await writeFile(file, typeof content === "string" ? content : JSON.stringify(content));
      return file;
    },
    async curl(args) {
      const out = path.join(dir, `response-${seq++}`);
      // Relative paths become URLs on the server; everything else is passed to curl untouched.
      const argv = args.map((a) => (a.startsWith("/") && !a.startsWith("//") ? `${base}${a}` : a));
      // %{header_json} (curl >= 7.83) gives the headers as JSON; the body goes to a file, the status to stdout.
      const { stdout } = await run(CURL, ["-sS", "--max-time", "60", "-o", out, "-w", "%{response_code}\n%{header_json}", ...argv], {
        maxBuffer: 16 * 1024 * 1024,
        timeout: 90_000,
      });
      const newline = stdout.indexOf("\n");
      const status = Number(stdout.slice(0, newline));
      const raw = JSON.parse(stdout.slice(newline + 1)) as Record<string, string[]>;
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(raw)) headers[k.toLowerCase()] = v.join(", ");
      return { status, headers, body: await readFile(out, "utf8") };
    },
  };
}

/** The body as JSON, with the raw text in the failure message when it is not. */
export function json<T = Record<string, unknown>>(res: CurlResponse): T {
  try {
    return JSON.parse(res.body) as T;
  } catch {
    throw new Error(`expected a JSON body, got (${res.status}): ${res.body.slice(0, 300)}`);
  }
}
