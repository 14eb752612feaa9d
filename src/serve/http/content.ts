import type { FastifyInstance, FastifyRequest } from "fastify";
import { MlshipError } from "../../core/index.js";
import { parseJsonBody } from "../../scoring/index.js";
import { INFERENCE_HEADER, splitBinaryBody } from "./binary.js";
import { routeProtocol } from "./errors.js";

interface MediaType {
  type: string;
  params: Map<string, string>;
}

export function parseMediaType(header: string | undefined): MediaType | undefined {
  if (header === undefined) return undefined;
  const [type = "", ...rest] = header.split(";");
  const params = new Map<string, string>();
  for (const part of rest) {
    const eq = part.indexOf("=");
    if (eq < 0) {
      if (part.trim() !== "") params.set(part.trim().toLowerCase(), "");
      continue;
    }
    const key = part.slice(0, eq).trim().toLowerCase();
    const value = part.slice(eq + 1).trim().replace(/^"(.*)"$/, "$1");
    params.set(key, value);
  }
  return { type: type.trim().toLowerCase(), params };
}

/**
 * Content-type parameters as MLflow's scoring server treats them: a charset other than UTF-8 is a 415, and on
 * the MLflow routes so is any other parameter.
 */
function checkParams(request: FastifyRequest): void {
  const media = parseMediaType(request.headers["content-type"]);
  if (media === undefined) return;
  for (const [key, value] of media.params) {
    if (key === "charset") {
      const v = value.toLowerCase();
      if (v !== "utf-8" && v !== "utf8") {
        throw new MlshipError("MLSHIP_ERR_INPUT_CONTENT_TYPE", `charset '${value}' is not supported: the scoring server only supports UTF-8`, {
          field: "content-type",
        });
      }
    } else if (routeProtocol(request) === "mlflow") {
      throw new MlshipError("MLSHIP_ERR_INPUT_CONTENT_TYPE", `unrecognized content type parameter '${key}' in '${request.headers["content-type"]}'`, {
        field: "content-type",
      });
    }
  }
}

/** A body that the CSV parser produced (as opposed to parsed JSON). */
export class CsvBody {
  constructor(readonly text: string) {}
}

/**
 * A body that may use the binary tensor extension: on the V2 routes an `Inference-Header-Content-Length`
 * header splits it into JSON and tensor bytes (a `BinaryBody`); otherwise it is all JSON.
 */
function parseMaybeBinary(request: FastifyRequest, body: string | Buffer): unknown {
  const header = request.headers[INFERENCE_HEADER];
  if (header !== undefined && typeof body !== "string" && routeProtocol(request) === "v2") return splitBinaryBody(body, header, parseJsonBody);
  return parseJsonBody(typeof body === "string" ? body : body.toString("utf8"));
}

/**
 * The only parsers on mlship's routes: JSON (syntax errors become MLSHIP_ERR_INPUT_JSON), CSV and, on the V2
 * routes, the binary tensor extension (`application/octet-stream`, or JSON with `Inference-Header-Content-Length`).
 * Anything else is Fastify's 415, mapped by the error handler. Registered inside the plugin's own context, so a
 * host server's parsers are untouched.
 */
export function registerParsers(app: FastifyInstance, bodyLimit: number): void {
  app.removeAllContentTypeParsers();
  // As a buffer: under the binary extension the bytes after the JSON header are not text.
  app.addContentTypeParser("application/json", { parseAs: "buffer", bodyLimit }, async (request: FastifyRequest, body: string | Buffer) => {
    checkParams(request);
    return parseMaybeBinary(request, body);
  });
  app.addContentTypeParser("application/octet-stream", { parseAs: "buffer", bodyLimit }, async (request: FastifyRequest, body: string | Buffer) => {
    if (routeProtocol(request) !== "v2") {
      throw new MlshipError(
        "MLSHIP_ERR_INPUT_CONTENT_TYPE",
        "application/octet-stream is only taken by the V2 infer routes (binary tensor data); send application/json, text/csv or application/csv",
        { field: "content-type" },
      );
    }
    return parseMaybeBinary(request, body);
  });
  app.addContentTypeParser(["text/csv", "application/csv"], { parseAs: "string", bodyLimit }, async (request: FastifyRequest, body: string | Buffer) => {
    checkParams(request);
    return new CsvBody(typeof body === "string" ? body : body.toString("utf8"));
  });
}
