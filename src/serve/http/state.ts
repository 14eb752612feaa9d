import type { IncomingHttpHeaders } from "node:http";
import type { FastifyReply, FastifyRequest } from "fastify";
import { MlshipError } from "../../core/index.js";
import type { ScoreResult } from "../../scoring/index.js";

/** What a request learned on its way through, for metrics and the version header. */
export interface RequestState {
  model: string;
  version: string;
  rows: number;
  errorCode: string | undefined;
}

const states = new WeakMap<FastifyRequest, RequestState>();

export function requestState(request: FastifyRequest): RequestState {
  let s = states.get(request);
  if (s === undefined) {
    s = { model: "", version: "", rows: 0, errorCode: undefined };
    states.set(request, s);
  }
  return s;
}

export function peekState(request: FastifyRequest): RequestState | undefined {
  return states.get(request);
}

/**
 * Records which model version answered (for metrics) and says so in the `mlship-model-version` header, which
 * every response carries once a version was resolved (conventions.md "Outputs"), errors included.
 */
export function answeredBy(request: FastifyRequest, reply: FastifyReply, model: string, version: number | string, rows?: number): void {
  const state = requestState(request);
  state.model = model;
  state.version = String(version);
  if (rows !== undefined) state.rows = rows;
  reply.header("mlship-model-version", `${model}@${version}`);
}

/** The request header carrying the caller's business key (logged with the prediction; outcomes may name it). */
export const KEY_HEADER = "x-mlship-key";
const MAX_KEY_LENGTH = 256;

/** The business key of a request, if it sent one; a key that is too long is refused naming the header. */
export function businessKeyOf(headers: IncomingHttpHeaders): string | undefined {
  const value = headers[KEY_HEADER];
  const key = Array.isArray(value) ? value[0] : value;
  if (key === undefined || key === "") return undefined;
  if (key.length > MAX_KEY_LENGTH) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `header ${KEY_HEADER} is longer than ${MAX_KEY_LENGTH} characters`, { field: KEY_HEADER });
  }
  return key;
}

/**
 * The rollout headers of an answer, as name/value pairs: which variant answered (`mlship-variant`: champion or
 * challenger) and the rollout (`mlship-rollout`). None outside a rollout.
 */
export function rolloutHeaders(result: Pick<ScoreResult, "variant" | "rolloutId">): string[] {
  if (result.variant === undefined) return [];
  return ["mlship-variant", result.variant, "mlship-rollout", result.rolloutId ?? ""];
}


/** Name/value pairs as a header object (Fastify's `reply.headers`). */
export function headerObject(pairs: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < pairs.length; i += 2) out[pairs[i] as string] = pairs[i + 1] as string;
  return out;
}
