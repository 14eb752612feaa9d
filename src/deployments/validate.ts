import { MlshipError } from "../core/index.js";
import { checkServingSettings, type ServingSettings } from "../package/index.js";
import { validateGuard, type RolloutMode } from "../rollout/index.js";
import type { CreateDeploymentInput, DeploymentRollout, DeploymentSettings, UpdateDeploymentInput } from "./types.js";

/** Lowercase, digits, `.`, `_`, `-`; starts with a letter or digit; at most 63 characters (a DNS label's length). */
export const DEPLOYMENT_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

const SETTINGS_KEYS = ["workers", "batching", "cache", "max_queue", "timeout_ms", "max_request_rows"] as const;
const ROLLOUT_KEYS = ["strategy", "candidate", "percent", "sticky", "guard"] as const;
const STRATEGIES: readonly RolloutMode[] = ["canary", "shadow", "ab"];

export function invalid(field: string, message: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${field} ${message}`, { field });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function checkKeys(value: Record<string, unknown>, known: readonly string[], at: string): void {
  for (const key of Object.keys(value)) {
    const field = at === "" ? key : `${at}.${key}`;
    if (!known.includes(key)) throw invalid(field, `is not a field of a deployment${at === "" ? "" : ` ${at}`} (known: ${known.join(", ")})`);
  }
}

export function validateDeploymentName(name: unknown): string {
  if (typeof name !== "string" || !DEPLOYMENT_NAME.test(name)) {
    throw invalid("name", `must be 1 to 63 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit, got ${JSON.stringify(name)}`);
  }
  return name;
}

function validateModel(model: unknown): string {
  if (typeof model !== "string" || model.trim() === "") throw invalid("model", `must be a model reference such as name@production, got ${JSON.stringify(model)}`);
  return model.trim();
}

/**
 * Checks deployment settings with the serving-settings rules of packages and the registry (`checkServingSettings`),
 * so errors name the field as the request spells it: `settings.batching.max_batch_size`. `workers` is checked here
 * and becomes the version setting `instances`.
 */
export function validateDeploymentSettings(raw: unknown): DeploymentSettings {
  if (raw === undefined || raw === null) return {};
  if (!isRecord(raw)) throw invalid("settings", "must be an object of serving settings");
  checkKeys(raw, SETTINGS_KEYS, "settings");
  // A null would read as "remove it", which a deployment cannot do (its overrides are merged, never removed): refused
  // as max_queue: null already is, rather than ignored with a 200.
  for (const key of ["workers", "batching", "cache"] as const) {
    if (raw[key] === null) throw invalid(`settings.${key}`, "cannot be null: leave it out to keep it (a setting is reset with mlship models settings --reset)");
  }
  const { workers, ...serving } = raw;
  const checked = checkServingSettings(serving, "settings", (what, field) => new MlshipError("MLSHIP_ERR_INPUT_INVALID", what, { field }));
  const out: DeploymentSettings = { ...checked };
  if (workers !== undefined && workers !== null) {
    if (typeof workers !== "number" || !Number.isSafeInteger(workers) || workers < 1) {
      throw invalid("settings.workers", `must be an integer >= 1, got ${JSON.stringify(workers)}`);
    }
    out.workers = workers;
  }
  return out;
}

export function validateDeploymentRollout(raw: unknown): DeploymentRollout | null {
  if (raw === null) return null;
  if (!isRecord(raw)) throw invalid("rollout", "must be an object (strategy, candidate, percent, sticky, guard) or null");
  checkKeys(raw, ROLLOUT_KEYS, "rollout");
  const strategy = raw.strategy ?? "canary";
  if (typeof strategy !== "string" || !(STRATEGIES as readonly string[]).includes(strategy)) {
    throw invalid("rollout.strategy", `must be one of ${STRATEGIES.join(", ")}, got ${JSON.stringify(strategy)}`);
  }
  const candidate = raw.candidate;
  const isVersion = typeof candidate === "number" && Number.isSafeInteger(candidate) && candidate >= 1;
  if (!isVersion && (typeof candidate !== "string" || candidate.trim() === "")) {
    throw invalid("rollout.candidate", `must be a version number or a reference to a version of the model (name@3), got ${JSON.stringify(candidate)}`);
  }
  const out: DeploymentRollout = { strategy: strategy as RolloutMode, candidate: typeof candidate === "string" ? candidate.trim() : (candidate as number) };
  if (raw.percent !== undefined) {
    if (typeof raw.percent !== "number" || !Number.isFinite(raw.percent) || raw.percent < 0 || raw.percent > 100) {
      throw invalid("rollout.percent", `must be a number from 0 to 100, got ${JSON.stringify(raw.percent)}`);
    }
    out.percent = raw.percent;
  }
  if (raw.sticky !== undefined) {
    if (typeof raw.sticky !== "boolean") throw invalid("rollout.sticky", `must be true or false, got ${JSON.stringify(raw.sticky)}`);
    out.sticky = raw.sticky;
  }
  if (raw.guard !== undefined && raw.guard !== null) out.guard = validateGuard(raw.guard, "rollout.guard");
  return out;
}

export function validateCreate(body: unknown): CreateDeploymentInput {
  if (!isRecord(body)) throw invalid("body", "must be a JSON object with name and model");
  checkKeys(body, ["name", "model", "settings", "rollout"], "");
  const input: CreateDeploymentInput = {
    name: validateDeploymentName(body.name),
    model: validateModel(body.model),
    settings: validateDeploymentSettings(body.settings),
  };
  if (body.rollout !== undefined) input.rollout = validateDeploymentRollout(body.rollout);
  return input;
}

/** `name` may be repeated in the body of a PATCH, but must then be the one in the URL. */
export function validateUpdate(body: unknown, name: string): UpdateDeploymentInput {
  if (body === undefined || body === null || body === "") return {};
  if (!isRecord(body)) throw invalid("body", "must be a JSON object (model, settings, rollout)");
  checkKeys(body, ["name", "model", "settings", "rollout"], "");
  if (body.name !== undefined && body.name !== name) throw invalid("name", `is ${JSON.stringify(body.name)} but the URL names '${name}' (a deployment cannot be renamed)`);
  const input: UpdateDeploymentInput = {};
  if (body.model !== undefined) input.model = validateModel(body.model);
  // Settings are merged, so null cannot clear them: a 400 rather than a silent no-op.
  if (body.settings === null) throw invalid("settings", "cannot be null: send only the settings to change (they are merged into the deployment's)");
  if (body.settings !== undefined) input.settings = validateDeploymentSettings(body.settings);
  if (body.rollout !== undefined) input.rollout = validateDeploymentRollout(body.rollout);
  return input;
}

/** Deployment settings merged field by field (batching and cache one level deep): `change` wins. */
export function mergeSettings(base: DeploymentSettings, change: DeploymentSettings): DeploymentSettings {
  const merged: DeploymentSettings = { ...base, ...change };
  if (change.batching !== undefined) merged.batching = { ...base.batching, ...change.batching };
  if (change.cache !== undefined) merged.cache = { ...base.cache, ...change.cache };
  return merged;
}

/** The version-setting override a deployment's settings amount to (`workers` -> `instances`). */
export function toServingSettings(settings: DeploymentSettings): ServingSettings {
  const { workers, ...rest } = settings;
  return workers === undefined ? rest : { ...rest, instances: workers };
}

/** A registry override with the deployment's settings laid over it, field by field. */
export function overlayServing(current: ServingSettings, change: ServingSettings): ServingSettings {
  const merged: ServingSettings = { ...current, ...change };
  if (change.batching !== undefined) merged.batching = { ...current.batching, ...change.batching };
  if (change.cache !== undefined) merged.cache = { ...current.cache, ...change.cache };
  return merged;
}
