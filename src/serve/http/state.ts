import type { FastifyReply, FastifyRequest } from "fastify";

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
