import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import { errorBody, isMlshipError, MlshipError } from "../core/index.js";
import type { Registry } from "../registry/index.js";
import { AUDIT_ACTIONS } from "./audit.js";
import { parseMargins, parseRequirement } from "./gates.js";
import type { PromoteVersionInput, PromoteVersionResult } from "./promote.js";
import { validateGuard } from "./guard.js";
import { ROLLOUT_STATES, validateMode, validatePercent } from "./service.js";
import type { AuditAction, GateSpec, RolloutService, RolloutState, StartRolloutInput } from "./types.js";

export interface RolloutRoutesOptions {
  rollouts: RolloutService;
  registry: Registry;
  /** Who changes are attributed to when the request has no `x-mlship-user` header. Default `api`. */
  user?: string;
  /**
   * Serves `POST /api/v1/models/{name}/promote` (gate on a holdout file, then alias move or canary): `promoteVersion`
   * bound to scoring and the quality code by the composition root. Unset: the route is not mounted.
   */
  promote?: (input: PromoteVersionInput) => Promise<PromoteVersionResult>;
}

interface IdParams {
  id: string;
}

interface NameParams {
  name: string;
}

function invalid(field: string, message: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${field} ${message}`, { field });
}

function bodyObject(body: unknown, optional: boolean): Record<string, unknown> {
  if ((body === undefined || body === null || body === "") && optional) return {};
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw invalid("body", "must be a JSON object");
  return body as Record<string, unknown>;
}

function checkKeys(body: Record<string, unknown>, known: readonly string[]): void {
  for (const key of Object.keys(body)) {
    if (!known.includes(key)) throw invalid(key, `is not a field of this request (known: ${known.join(", ")})`);
  }
}

function optionalText(body: Record<string, unknown>, field: string): string | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") throw invalid(field, `must be text, got ${JSON.stringify(value)}`);
  return value;
}

function queryText(value: unknown, field: string): string | undefined {
  if (value === undefined || value === "") return undefined;
  if (typeof value !== "string") throw invalid(field, "must be given once");
  return value;
}

function queryLimit(value: unknown): number | undefined {
  const text = queryText(value, "limit");
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < 1) throw invalid("limit", `must be a whole number >= 1, got ${JSON.stringify(text)}`);
  return n;
}

/**
 * Rollouts, rollback, rollout policies and the audit log over REST (`/api/v1/...`). Registered by the composition
 * root next to the serving routes; errors go through the host server's error handler, in the native
 * `{error, code, field}` body (ROLLOUT_NOT_FOUND 404, ROLLOUT_CONFLICT 409, INPUT_INVALID 400 naming the field).
 */
export const rolloutRoutes: FastifyPluginAsync<RolloutRoutesOptions> = async (app, options) => {
  const { rollouts, registry } = options;
  const actorOf = (request: FastifyRequest, reason: string | undefined): { by: string; reason?: string } => {
    const header = request.headers["x-mlship-user"];
    const by = typeof header === "string" && header.trim() !== "" ? header.trim() : (options.user ?? "api");
    return reason === undefined ? { by } : { by, reason };
  };

  app.post("/api/v1/rollouts", async (request, reply) => {
    const body = bodyObject(request.body, false);
    checkKeys(body, ["model", "challenger", "mode", "percent", "alias", "sticky", "guard", "reason"]);
    if (typeof body.model !== "string" || body.model === "") throw invalid("model", "must name a registered model");
    const challenger = body.challenger;
    if (typeof challenger !== "number" || !Number.isSafeInteger(challenger) || challenger < 1) {
      throw invalid("challenger", `must be a version number (1 or more), got ${JSON.stringify(challenger)}`);
    }
    const reason = optionalText(body, "reason");
    const input: StartRolloutInput = { model: body.model, challenger, ...actorOf(request, reason) };
    if (body.mode !== undefined) input.mode = validateMode(body.mode);
    if (body.percent !== undefined) input.percent = validatePercent(body.percent);
    const alias = optionalText(body, "alias");
    if (alias !== undefined) input.alias = alias;
    if (body.sticky !== undefined) {
      if (typeof body.sticky !== "boolean") throw invalid("sticky", `must be true or false, got ${JSON.stringify(body.sticky)}`);
      input.sticky = body.sticky;
    }
    if (body.guard !== undefined) input.guard = validateGuard(body.guard);
    const rollout = await rollouts.start(input);
    return reply.code(201).send(rollout);
  });

  app.get("/api/v1/rollouts", async (request) => {
    const query = request.query as Record<string, unknown>;
    const model = queryText(query.model, "model");
    const state = queryText(query.state, "state");
    if (state !== undefined && !(ROLLOUT_STATES as readonly string[]).includes(state)) throw invalid("state", `must be one of ${ROLLOUT_STATES.join(", ")}, got ${JSON.stringify(state)}`);
    const limit = queryLimit(query.limit);
    const list = await rollouts.list({
      ...(model === undefined ? {} : { model }),
      ...(state === undefined ? {} : { state: state as RolloutState }),
      ...(limit === undefined ? {} : { limit }),
    });
    return { rollouts: list };
  });

  app.get<{ Params: IdParams }>("/api/v1/rollouts/:id", async (request) => rollouts.status(request.params.id));

  app.post<{ Params: IdParams }>("/api/v1/rollouts/:id/promote", async (request) => {
    const body = bodyObject(request.body, true);
    checkKeys(body, ["reason"]);
    return rollouts.promote(request.params.id, actorOf(request, optionalText(body, "reason")));
  });

  app.post<{ Params: IdParams }>("/api/v1/rollouts/:id/abort", async (request) => {
    const body = bodyObject(request.body, true);
    checkKeys(body, ["reason"]);
    return rollouts.abort(request.params.id, actorOf(request, optionalText(body, "reason")));
  });

  app.post<{ Params: NameParams }>("/api/v1/models/:name/rollback", async (request) => {
    const body = bodyObject(request.body, true);
    checkKeys(body, ["alias", "reason"]);
    const alias = optionalText(body, "alias") ?? "production";
    const result = await rollouts.rollbackModel(request.params.name, alias, actorOf(request, optionalText(body, "reason")));
    return { model: request.params.name, alias, from: result.from, to: result.to, rollout: result.rollout ?? null };
  });

  const promote = options.promote;
  if (promote !== undefined) {
    app.post<{ Params: NameParams }>("/api/v1/models/:name/promote", async (request, reply) => {
      const body = bodyObject(request.body, false);
      checkKeys(body, ["version", "alias", "holdout", "label_column", "require", "margin", "canary", "reason"]);
      const version = body.version;
      if (typeof version !== "number" || !Number.isSafeInteger(version) || version < 1) throw invalid("version", `must be a version number, got ${JSON.stringify(version)}`);
      const holdout = optionalText(body, "holdout");
      const labelColumn = optionalText(body, "label_column");
      const requireTexts = body.require ?? [];
      if (!Array.isArray(requireTexts) || !requireTexts.every((r) => typeof r === "string")) throw invalid("require", 'must be a list of rules such as "accuracy >= 0.9"');
      const margin = body.margin ?? {};
      if (typeof margin !== "object" || margin === null || Array.isArray(margin)) throw invalid("margin", 'must be an object such as {"accuracy": 0.01}');
      const marginTexts = Object.entries(margin).map(([metric, value]) => {
        if (typeof value !== "number" || !Number.isFinite(value) || value < 0) throw invalid(`margin.${metric}`, `must be a number >= 0, got ${JSON.stringify(value)}`);
        return `${metric}=${value}`;
      });
      if (holdout === undefined && (labelColumn !== undefined || requireTexts.length > 0 || marginTexts.length > 0)) {
        throw invalid("holdout", "is needed for label_column, require and margin (they describe the gate on it)");
      }
      const gate: GateSpec | undefined =
        holdout === undefined
          ? undefined
          : {
              holdout,
              ...(labelColumn === undefined ? {} : { labelColumn }),
              require: (requireTexts as string[]).map(parseRequirement),
              margin: parseMargins(marginTexts),
            };
      const canary = body.canary === undefined || body.canary === null ? undefined : validatePercent(body.canary, "canary");
      const actor = actorOf(request, optionalText(body, "reason"));
      try {
        return await promote({
          model: request.params.name,
          version,
          alias: optionalText(body, "alias") ?? "production",
          ...(gate === undefined ? {} : { gate }),
          ...(canary === undefined ? {} : { canaryPercent: canary }),
          by: actor.by,
          ...(actor.reason === undefined ? {} : { reason: actor.reason }),
        });
      } catch (error) {
        // A failed gate is an answer the caller acts on: the error body carries the gate result with every check.
        if (isMlshipError(error) && error.code === "MLSHIP_ERR_ROLLOUT_GATE_FAILED") {
          return reply.code(error.httpStatus).send({ ...errorBody(error), gate: error.details });
        }
        throw error;
      }
    });
  }

  app.get<{ Params: NameParams }>("/api/v1/models/:name/rollout-policy", async (request) => {
    // 404 for a model that does not exist, rather than a default policy for a typo.
    const model = await registry.getModel(request.params.name);
    return rollouts.getPolicy(model.name);
  });

  app.put<{ Params: NameParams }>("/api/v1/models/:name/rollout-policy", async (request) => {
    const body = bodyObject(request.body, false);
    const name = request.params.name;
    if (body.model !== undefined && body.model !== name) throw invalid("model", `is "${String(body.model)}" but the URL names "${name}"`);
    const header = request.headers["x-mlship-reason"];
    const reason = typeof header === "string" && header !== "" ? header : undefined;
    // setPolicy validates every field (naming it) and fills the parts left out with the defaults.
    return rollouts.setPolicy({ ...(body as object), model: name } as Parameters<RolloutService["setPolicy"]>[0], actorOf(request, reason));
  });

  app.get("/api/v1/audit", async (request) => {
    const query = request.query as Record<string, unknown>;
    const model = queryText(query.model, "model");
    const action = queryText(query.action, "action");
    if (action !== undefined && !(AUDIT_ACTIONS as readonly string[]).includes(action)) throw invalid("action", `must be one of ${AUDIT_ACTIONS.join(", ")}, got ${JSON.stringify(action)}`);
    const since = queryText(query.since, "since");
    const limit = queryLimit(query.limit);
    const entries = await rollouts.audit.list({
      ...(model === undefined ? {} : { model }),
      ...(action === undefined ? {} : { action: action as AuditAction }),
      ...(since === undefined ? {} : { since }),
      ...(limit === undefined ? {} : { limit }),
    });
    return { entries };
  });
};
