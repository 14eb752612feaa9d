/**
 * A minimal HTTP/1.1 client over one raw TCP socket, for shutdown tests: it keeps the connection open between
 * requests and can pipeline a request behind one still being answered, which fetch and node:http cannot do.
 * Responses are matched to requests in order (HTTP/1.1 pipelining).
 */
import net from "node:net";

export interface RawResponse {
  status: number;
  /** Header names lower-cased. */
  headers: Record<string, string>;
  body: string;
}

interface Pending {
  resolve: (res: RawResponse) => void;
  reject: (err: Error) => void;
}

export interface RawConnection {
  /** Writes one request; resolves with its response, in the order requests were sent. */
  request(method: string, path: string, body?: { contentType: string; text: string }): Promise<RawResponse>;
  /** Resolves once the server has closed the connection (or it failed). */
  closed: Promise<void>;
  destroy(): void;
}

/** Parses complete responses off the front of `buffer`; returns them and the bytes left over. */
function parseResponses(buffer: Buffer, ended: boolean): { responses: RawResponse[]; rest: Buffer } {
  const responses: RawResponse[] = [];
  let rest = buffer;
  for (;;) {
    const headEnd = rest.indexOf("\r\n\r\n");
    if (headEnd < 0) break;
    const [statusLine = "", ...lines] = rest.subarray(0, headEnd).toString("latin1").split("\r\n");
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1]);
    if (!Number.isInteger(status)) throw new Error(`not an HTTP response: ${statusLine}`);
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(":");
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const bodyStart = headEnd + 4;
    let body: Buffer;
    let next: number;
    if (headers["content-length"] !== undefined) {
      next = bodyStart + Number(headers["content-length"]);
      if (rest.length < next) break;
      body = rest.subarray(bodyStart, next);
    } else if (headers["transfer-encoding"]?.toLowerCase() === "chunked") {
      const chunks: Buffer[] = [];
      let pos = bodyStart;
      let done = false;
      for (;;) {
        const sizeEnd = rest.indexOf("\r\n", pos);
        if (sizeEnd < 0) break;
        const size = parseInt(rest.subarray(pos, sizeEnd).toString("latin1"), 16);
        if (rest.length < sizeEnd + 2 + size + 2) break;
        chunks.push(rest.subarray(sizeEnd + 2, sizeEnd + 2 + size));
        pos = sizeEnd + 2 + size + 2;
        if (size === 0) {
          done = true;
          break;
        }
      }
      if (!done) break;
      body = Buffer.concat(chunks);
      next = pos;
    } else {
      // No declared length: the body runs to the end of the connection.
      if (!ended) break;
      body = rest.subarray(bodyStart);
      next = rest.length;
    }
    responses.push({ status, headers, body: body.toString("utf8") });
    rest = rest.subarray(next);
  }
  return { responses, rest };
}

/** Opens a keep-alive connection to `url`'s host and port. */
export async function openConnection(url: string): Promise<RawConnection> {
  const { hostname, port } = new URL(url);
  const socket = net.connect({ host: hostname, port: Number(port) });
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  const host = `${hostname}:${port}`;
  const waiting: Pending[] = [];
  let buffer: Buffer = Buffer.alloc(0);
  let ended = false;

  const drainBuffer = (): void => {
    try {
      const { responses, rest } = parseResponses(buffer, ended);
      buffer = rest;
      for (const res of responses) waiting.shift()?.resolve(res);
    } catch (err) {
      for (const p of waiting.splice(0)) p.reject(err as Error);
    }
  };
  const failAll = (why: Error): void => {
    for (const p of waiting.splice(0)) p.reject(why);
  };
  socket.on("data", (chunk: Buffer) => {
    buffer = Buffer.concat([buffer, chunk]);
    drainBuffer();
  });
  const closed = new Promise<void>((resolve) => {
    socket.on("end", () => {
      ended = true;
      drainBuffer();
      failAll(new Error("the server closed the connection before answering"));
    });
    socket.on("error", (err) => failAll(err));
    socket.on("close", () => {
      failAll(new Error("the connection closed before an answer"));
      resolve();
    });
  });

  return {
    request(method, path, body) {
      const bytes = body === undefined ? Buffer.alloc(0) : Buffer.from(body.text, "utf8");
      const head = [
        `${method} ${path} HTTP/1.1`,
        `host: ${host}`,
        "connection: keep-alive",
        ...(body === undefined ? [] : [`content-type: ${body.contentType}`, `content-length: ${bytes.length}`]),
        "",
        "",
      ].join("\r\n");
      return new Promise<RawResponse>((resolve, reject) => {
        waiting.push({ resolve, reject });
        socket.write(Buffer.concat([Buffer.from(head, "latin1"), bytes]));
      });
    },
    closed,
    destroy: () => socket.destroy(),
  };
}

/**
 * How one request on a new connection went: answered, refused (`ECONNREFUSED`: nothing listens), or cut off after
 * connecting (a connection the kernel accepted while the listener was closing).
 */
export type Attempt =
  | { outcome: "answered"; response: RawResponse }
  | { outcome: "refused"; code: string }
  | { outcome: "cut off"; reason: string };

/** One request on a new connection. Rejects if nothing happens within `hangMs`, so a hang fails the test. */
export async function attemptOnNewConnection(url: string, path: string, hangMs = 15_000): Promise<Attempt> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer and no refusal from ${url}${path} within ${hangMs} ms`)), hangMs);
  });
  const attempt = (async (): Promise<Attempt> => {
    let conn: RawConnection;
    try {
      conn = await openConnection(url);
    } catch (err) {
      return { outcome: "refused", code: String((err as NodeJS.ErrnoException).code) };
    }
    try {
      return { outcome: "answered", response: await conn.request("GET", path) };
    } catch (err) {
      return { outcome: "cut off", reason: (err as Error).message };
    } finally {
      conn.destroy();
    }
  })();
  try {
    return await Promise.race([attempt, hang]);
  } finally {
    clearTimeout(timer);
  }
}
