import type { FastifyInstance, FastifyRequest } from "fastify";
import { MlshipError } from "../../core/index.js";

/**
 * Deepest nesting of arrays and objects a JSON body may have on the routes that use the server's default JSON
 * parser (management, feedback lookups, plugins). Real bodies nest a handful of levels; handlers and error messages
 * walk values recursively, so a body nested 100,000 deep must be refused before any of them sees it.
 */
export const MAX_JSON_DEPTH = 512;

/** Whether `text` nests arrays/objects deeper than `limit` (strings are skipped, escapes honoured); one linear scan. */
export function jsonDeeperThan(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return true;
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  return false;
}

/**
 * Replaces the instance's `application/json` parser with Fastify's own (which refuses `__proto__` and
 * `constructor.prototype` keys) behind a nesting limit: deeper bodies are a 400 `MLSHIP_ERR_INPUT_JSON` naming the
 * limit. Plugins registered afterwards inherit it unless they bring their own parser.
 */
export function limitJsonDepth(app: FastifyInstance, maxDepth = MAX_JSON_DEPTH): void {
  const parse = app.getDefaultJsonParser("error", "error");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (request: FastifyRequest, body: string | Buffer, done) => {
    const text = typeof body === "string" ? body : body.toString("utf8");
    if (jsonDeeperThan(text, maxDepth)) {
      done(new MlshipError("MLSHIP_ERR_INPUT_JSON", `the JSON body nests arrays or objects more than ${maxDepth} levels deep`, { field: "body" }), undefined);
      return;
    }
    // Fastify's parser answers through `done`; its return value carries nothing.
    void parse(request, text, done);
  });
}
