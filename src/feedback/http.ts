import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import { errorBody, MlshipError } from "../core/index.js";
import { parseWindowSize } from "../monitor/index.js";
import { versionFromPath } from "../registry/index.js";
import type { Registry } from "../registry/index.js";
import { parseJsonBody } from "../scoring/index.js";
import type { Protocol } from "../serve/index.js";
import type { QualitySeriesResponse } from "../ui/contract.js";
import { DEFAULT_SERIES_RANGE, DEFAULT_SERIES_STEP, qualityBuckets, spanMs } from "./series.js";
import type { FeedbackService, IngestResult, PredictionLogStats, QualityReport, Variant } from "./types.js";

/** The most outcomes (or events) one post may carry; a bigger batch is split by the client. */
export const MAX_FEEDBACK_ITEMS = 10_000;

/** As the inference routes' default (a type-only import of serve keeps Fastify's server code out of this module). */
const DEFAULT_BODY_LIMIT_BYTES = 32 * 1024 * 1024;

/** The quality window when the query names none. */
export const DEFAULT_QUALITY_WINDOW = "1d";

const VARIANTS: readonly Variant[] = ["champion", "challenger", "shadow"];

// `/v1/...` paths are MLflow-style by default in the shared error handler; these routes answer in the native body.
const NATIVE: { protocol: Protocol } = { protocol: "v2" };

export interface FeedbackRoutesOptions {
  feedback: FeedbackService;
  registry: Registry;
  /** The prediction log's counters for `GET /api/v1/feedback/stats` (null there when unset). */
  logStats?: () => PredictionLogStats;
  /** Largest feedback or events body, in bytes. Default 32 MiB (the inference routes' default). */
  bodyLimitBytes?: number;
}

interface QualityParams {
  name: string;
}

/** A repeated parameter (`?window=1h&window=1d`) arrives as an array. */
type QueryValue = string | string[] | undefined;

interface QualitySeriesQuerystring {
  range?: QueryValue;
  step?: QueryValue;
  version?: QueryValue;
}

interface QualityQuerystring {
  window?: QueryValue;
  version?: QueryValue;
  variant?: QueryValue;
}

function single(value: QueryValue, field: string): string | undefined {
  if (Array.isArray(value)) throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${field} is given ${value.length} times; give it once`, { field });
  return value;
}

/**
 * The items of a feedback or events post: a bare array, `{"<listField>": [...]}`, or one item object. Anything
 * else, an empty list, or more than MAX_FEEDBACK_ITEMS items is refused naming `listField`.
 */
export function itemsOfBody(body: unknown, listField: "outcomes" | "events"): unknown[] {
  let items: unknown[];
  if (Array.isArray(body)) {
    items = body;
  } else if (typeof body === "object" && body !== null) {
    if (listField in body) {
      const list = (body as Record<string, unknown>)[listField];
      if (!Array.isArray(list)) {
        throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${listField} must be an array of ${listField === "outcomes" ? "outcome" : "event"} objects`, { field: listField });
      }
      items = list;
    } else {
      items = [body];
    }
  } else {
    throw new MlshipError(
      "MLSHIP_ERR_INPUT_INVALID",
      `the body must be one ${listField === "outcomes" ? "outcome" : "event"} object, {"${listField}": [...]} or an array of them`,
      { field: listField },
    );
  }
  if (items.length === 0) throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${listField} is empty: send at least one item`, { field: listField });
  if (items.length > MAX_FEEDBACK_ITEMS) {
    throw new MlshipError("MLSHIP_ERR_INPUT_TOO_LARGE", `${listField} has ${items.length} items; send at most ${MAX_FEEDBACK_ITEMS} per request`, { field: listField });
  }
  return items;
}

/**
 * 202 with the counts, unless every item was rejected: then 400 with the usual error body (naming the first
 * rejected field) plus the same counts and rejections, so a client that only checks the status notices a post
 * that stored nothing.
 */
function answerIngest(reply: FastifyReply, result: IngestResult, items: number, listField: string): FastifyReply {
  if (result.accepted === 0 && result.rejected.length > 0) {
    const first = result.rejected[0];
    const error = new MlshipError(
      "MLSHIP_ERR_INPUT_INVALID",
      `every item was rejected (${result.rejected.length} of ${items}); first: ${listField}[${first?.index ?? 0}].${first?.field ?? ""}: ${first?.message ?? ""}`,
      { field: first?.field ?? listField },
    );
    return reply.code(400).type("application/json; charset=utf-8").send({ ...errorBody(error), ...result });
  }
  return reply.code(202).send(result);
}

function checkCharset(request: FastifyRequest): void {
  const type = request.headers["content-type"] ?? "";
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(type)?.[1]?.toLowerCase();
  if (charset !== undefined && charset !== "utf-8" && charset !== "utf8") {
    throw new MlshipError("MLSHIP_ERR_INPUT_CONTENT_TYPE", `charset '${charset}' is not supported; send UTF-8 JSON`, { field: "content-type" });
  }
}

function windowOf(text: string | undefined): string {
  const window = text === undefined || text.trim() === "" ? DEFAULT_QUALITY_WINDOW : text.trim();
  try {
    parseWindowSize(window);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", message, { field: "window", cause: error });
  }
  return window;
}

/** A span parameter (`range`, `step`), parsed like `window`; 400 naming it. */
function spanOf(text: string | undefined, field: string, fallback: string): string {
  const span = text === undefined || text.trim() === "" ? fallback : text.trim();
  spanMs(span, field);
  return span;
}

function variantOf(text: string | undefined): Variant | undefined {
  if (text === undefined || text === "") return undefined;
  if (!(VARIANTS as readonly string[]).includes(text)) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `variant must be one of ${VARIANTS.join(", ")}, got ${JSON.stringify(text)}`, { field: "variant" });
  }
  return text as Variant;
}

/**
 * The feedback loop over REST: outcomes (`POST /v1/feedback`) and business events (`POST /v1/events`) in, live
 * quality (`GET /api/v1/models/{name}/quality`, over time `.../quality/series`) and join counts
 * (`GET /api/v1/feedback/stats`) out.
 *
 * Encapsulated on purpose: it takes JSON bodies only (anything else is 415) without touching the host server's
 * parsers. Errors are thrown to the host server's error handler (`buildServer`'s), which answers in the native
 * `{error, code, field}` body like the other management routes.
 */
export const feedbackRoutes: FastifyPluginAsync<FeedbackRoutesOptions> = async (app, options) => {
  const { feedback, registry } = options;
  if (feedback === undefined || registry === undefined) {
    throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", "feedbackRoutes needs the `feedback` and `registry` options", { field: "feedback" });
  }
  const bodyLimit = options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES;
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("application/json", { parseAs: "string", bodyLimit }, async (request: FastifyRequest, body: string | Buffer) => {
    checkCharset(request);
    return parseJsonBody(typeof body === "string" ? body : body.toString("utf8"));
  });
  app.addContentTypeParser("*", { parseAs: "buffer", bodyLimit }, async (request: FastifyRequest) => {
    const type = request.headers["content-type"];
    throw new MlshipError(
      "MLSHIP_ERR_INPUT_CONTENT_TYPE",
      type === undefined || type === "" ? "the request has no Content-Type; send application/json" : `unsupported content type '${type}'; send application/json`,
      { field: "content-type" },
    );
  });

  // Outcomes: one object, {"outcomes": [...]} or a bare array; each by request_id (+ row) or by model + key.
  // A repost of the same outcome replaces it (never counted twice). 202 with the counts; 400 when every item was
  // rejected (see answerIngest); 413 beyond MAX_FEEDBACK_ITEMS items.
  app.post("/v1/feedback", { config: NATIVE, bodyLimit }, async (request, reply) => {
    const items = itemsOfBody(request.body, "outcomes");
    return answerIngest(reply, await feedback.ingestOutcomes(items), items.length, "outcomes");
  });

  // Business events (a click, a conversion): one object or {"events": [...]}, tied to a prediction like an outcome;
  // idempotent on event_id. Same answers as /v1/feedback.
  app.post("/v1/events", { config: NATIVE, bodyLimit }, async (request, reply) => {
    const items = itemsOfBody(request.body, "events");
    return answerIngest(reply, await feedback.ingestEvents(items), items.length, "events");
  });

  // One version's report with ?version=N, else every version with predictions in the window (each variant of an
  // active rollout apart). 404 for an unknown model or version.
  app.get<{ Params: QualityParams; Querystring: QualityQuerystring }>("/api/v1/models/:name/quality", { config: NATIVE }, async (request) => {
    const window = windowOf(single(request.query.window, "window"));
    const variant = variantOf(single(request.query.variant, "variant"));
    const versionText = single(request.query.version, "version");
    const model = (await registry.getModel(request.params.name)).name;
    if (versionText !== undefined && versionText !== "") {
      const version = (await registry.getVersion(model, versionFromPath(versionText.trim()))).version;
      return feedback.quality({ model, version, window, ...(variant === undefined ? {} : { variant }) });
    }
    const reports: QualityReport[] = await feedback.qualityAll(model, window);
    return { model, window, versions: variant === undefined ? reports : reports.filter((r) => r.variant === variant) };
  });

  // Quality over time for the dashboard: one point per bucket of `step` over the trailing `range`, per version and
  // rollout variant, each computed as a `/quality` report over that bucket; `latest` has the whole-range reports.
  app.get<{ Params: QualityParams; Querystring: QualitySeriesQuerystring }>("/api/v1/models/:name/quality/series", { config: NATIVE }, async (request): Promise<QualitySeriesResponse> => {
    const range = spanOf(single(request.query.range, "range"), "range", DEFAULT_SERIES_RANGE);
    const step = spanOf(single(request.query.step, "step"), "step", DEFAULT_SERIES_STEP);
    // Checked before any lookup, so a bad bucket count is a 400 whatever the model.
    qualityBuckets(Date.now(), range, step);
    const versionText = single(request.query.version, "version");
    const model = (await registry.getModel(request.params.name)).name;
    const version = versionText === undefined || versionText === "" ? undefined : (await registry.getVersion(model, versionFromPath(versionText.trim()))).version;
    return feedback.qualitySeries({ model, range, step, ...(version === undefined ? {} : { version }) });
  });

  app.get("/api/v1/feedback/stats", { config: NATIVE }, async () => {
    const { outcomes, events } = await feedback.store.joinStats();
    return { outcomes, events, log: options.logStats?.() ?? null };
  });
};

Object.defineProperty(feedbackRoutes, Symbol.for("fastify.display-name"), { value: "mlship-feedback" });
