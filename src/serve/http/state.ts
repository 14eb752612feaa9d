import type { FastifyRequest } from "fastify";

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
