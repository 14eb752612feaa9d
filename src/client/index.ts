/**
 * `mlship/client`: a typed client of a running mlship server (local or remote) — deployments over the management API
 * and predictions through a deployment or a model reference. It depends on nothing but the platform's `fetch`
 * (Node 18+, browsers, edge runtimes) and loads no server code (it imports only the server's types), so it stays
 * small wherever it is bundled.
 */

// The deployment wire types are the server's own (type-only imports: nothing of the server is loaded at run time),
// so the client cannot drift from the API it speaks.
import type { CreateDeploymentInput, Deployment, DeploymentRollout, DeploymentSettings, DeploymentState, UpdateDeploymentInput } from "../deployments/types.js";
import type { RolloutGuard } from "../rollout/types.js";
import type { ModelDetail, ModelSummary } from "../ui/contract.js";

export type { Deployment, DeploymentRollout, DeploymentSettings, DeploymentState, ModelDetail, ModelSummary, RolloutGuard };
export type CreateDeploymentRequest = CreateDeploymentInput;
/** Fields left out stay as they are; `settings` is merged field by field; `rollout: null` ends the rollout. */
export type UpdateDeploymentRequest = UpdateDeploymentInput;

/** An MLflow scoring body: exactly one of these keys (plus `params`), as MLflow's `/invocations` takes it. */
export type MlflowBody =
  | { dataframe_split: { columns?: string[]; index?: unknown[]; data: unknown[][] }; params?: Record<string, unknown> }
  | { dataframe_records: Record<string, unknown>[]; params?: Record<string, unknown> }
  | { instances: unknown[]; params?: Record<string, unknown> }
  | { inputs: unknown; params?: Record<string, unknown> };

/**
 * What `predict` sends: an MLflow body, rows (objects keyed by column: `dataframe_records`; arrays: `instances`), or
 * CSV text with a header row (`text/csv`).
 */
export type PredictInput = MlflowBody | readonly Record<string, unknown>[] | readonly unknown[][] | string;

export interface PredictResult<P = unknown> {
  /** MLflow's `predictions`: one object per row for dataframe/CSV input, one array per output for `instances`/`inputs`. */
  predictions: P;
  /** Which version answered, `name@version` (the `mlship-model-version` header). */
  modelVersion: string | null;
  /** `champion` or `challenger` during a rollout. */
  variant: string | null;
  requestId: string | null;
}

export interface PredictOptions {
  /** Business key (`x-mlship-key`): logged with the prediction; sticky rollouts route by it. */
  key?: string;
  signal?: AbortSignal;
}

/** A version's serving settings: the effective values, the registry override and where each value comes from. */
export interface VersionSettings {
  model: string;
  version: number;
  settings: DeploymentSettings & { instances?: number };
  override: Record<string, unknown>;
  sources: Record<string, string>;
}

export interface MlshipClientOptions {
  /** The server's base URL. Default `MLSHIP_URL`, else `http://127.0.0.1:8080`. */
  url?: string;
  /** The admin token (sent as `Authorization: Bearer`). Default `MLSHIP_ADMIN_TOKEN` (when the key is left out). */
  token?: string;
  /** Who changes are attributed to (`x-mlship-user`); the server's own user when unset. */
  user?: string;
  /** A `fetch` to use instead of the global one (tests, proxies, custom agents). */
  fetch?: typeof fetch;
  /** Abort a request after this many milliseconds. Default 60000; 0 for no limit. */
  timeoutMs?: number;
}

/** Status 0: the server was not reached (or did not answer in time); the message names the URL. */
export const NETWORK_ERROR = "MLSHIP_ERR_CLIENT_NETWORK";

/**
 * An error answer of the server, or a request that did not reach it (`status` 0, code `MLSHIP_ERR_CLIENT_NETWORK`).
 * `code` and `field` are the server's (`MLSHIP_ERR_INPUT_INVALID`, `settings.batching.max_batch_size`).
 */
export class MlshipClientError extends Error {
  readonly status: number;
  readonly code: string;
  readonly field: string | undefined;
  /** The URL that was requested. */
  readonly url: string;
  /** The parsed error body, when the server sent JSON. */
  readonly body: unknown;

  constructor(message: string, options: { status: number; code: string; field?: string; url: string; body?: unknown; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "MlshipClientError";
    this.status = options.status;
    this.code = options.code;
    this.field = options.field;
    this.url = options.url;
    this.body = options.body;
  }
}

function envOf(name: string): string | undefined {
  // No Node types needed, and nothing breaks where `process` does not exist (browsers).
  const proc = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  const value = proc?.env?.[name];
  return value === undefined || value === "" ? undefined : value;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The MLflow body for rows, or the body itself. */
function predictBody(input: PredictInput): { body: string; contentType: string } {
  if (typeof input === "string") return { body: input, contentType: "text/csv" };
  if (Array.isArray(input)) {
    const rows = input as readonly unknown[];
    const body = rows.length > 0 && rows.every(isRecord) ? { dataframe_records: rows } : { instances: rows };
    return { body: JSON.stringify(body), contentType: "application/json" };
  }
  return { body: JSON.stringify(input), contentType: "application/json" };
}

/** The server's error body in either shape: native `{error, code, field}` or MLflow `{message, mlship_code, field}`. */
function errorOf(status: number, url: string, text: string): MlshipClientError {
  let body: unknown;
  try {
    body = JSON.parse(text) as unknown;
  } catch {
    body = undefined;
  }
  if (isRecord(body)) {
    const message = typeof body.error === "string" ? body.error : typeof body.message === "string" ? body.message : undefined;
    const code = typeof body.code === "string" ? body.code : typeof body.mlship_code === "string" ? body.mlship_code : undefined;
    const field = typeof body.field === "string" ? body.field : undefined;
    if (message !== undefined || code !== undefined) {
      return new MlshipClientError(message ?? `HTTP ${status}`, { status, code: code ?? `HTTP_${status}`, ...(field === undefined ? {} : { field }), url, body });
    }
  }
  const snippet = text.trim().slice(0, 200);
  return new MlshipClientError(`HTTP ${status} from ${url}${snippet === "" ? "" : `: ${snippet}`}`, { status, code: `HTTP_${status}`, url, body });
}

/**
 * A client of one mlship server. Every method throws `MlshipClientError` on an error answer or when the server
 * cannot be reached.
 *
 * ```ts
 * const client = new MlshipClient({ url: "http://127.0.0.1:8080", token: process.env.MLSHIP_ADMIN_TOKEN });
 * await client.createDeployment({ name: "fraud", model: "fraud@production", settings: { workers: 2 } });
 * const { predictions } = await client.predict("fraud", [{ amount: 12.5, country: "FR" }]);
 * ```
 */
export class MlshipClient {
  readonly url: string;
  readonly #token: string | undefined;
  readonly #user: string | undefined;
  readonly #fetch: typeof fetch;
  readonly #timeoutMs: number;

  constructor(options: MlshipClientOptions = {}) {
    const url = options.url ?? envOf("MLSHIP_URL") ?? "http://127.0.0.1:8080";
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new MlshipClientError(`the server URL ${JSON.stringify(url)} is not a valid URL (e.g. http://127.0.0.1:8080)`, { status: 0, code: "MLSHIP_ERR_INPUT_INVALID", field: "url", url });
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
      throw new MlshipClientError(`the server URL ${JSON.stringify(url)} must start with http:// or https://`, { status: 0, code: "MLSHIP_ERR_INPUT_INVALID", field: "url", url });
    }
    this.url = url.replace(/\/+$/, "");
    // `token: undefined` given explicitly means no token (the environment is not consulted).
    this.#token = "token" in options ? options.token : envOf("MLSHIP_ADMIN_TOKEN");
    this.#user = options.user;
    const given = options.fetch ?? (globalThis as { fetch?: typeof fetch }).fetch;
    if (given === undefined) throw new MlshipClientError("no fetch is available: pass one as options.fetch", { status: 0, code: NETWORK_ERROR, url });
    this.#fetch = given;
    this.#timeoutMs = options.timeoutMs ?? 60_000;
  }

  async #request(
    method: string,
    path: string,
    options: { json?: unknown; body?: string; contentType?: string; headers?: Record<string, string>; signal?: AbortSignal } = {},
  ): Promise<Response> {
    const url = `${this.url}${path}`;
    const headers: Record<string, string> = { accept: "application/json", ...options.headers };
    if (this.#token !== undefined) headers.authorization = `Bearer ${this.#token}`;
    if (this.#user !== undefined) headers["x-mlship-user"] = this.#user;
    let body: string | undefined;
    if (options.json !== undefined) {
      body = JSON.stringify(options.json);
      headers["content-type"] = "application/json";
    } else if (options.body !== undefined) {
      body = options.body;
      headers["content-type"] = options.contentType ?? "application/json";
    }
    const signals = [options.signal, this.#timeoutMs > 0 ? AbortSignal.timeout(this.#timeoutMs) : undefined].filter((s): s is AbortSignal => s !== undefined);
    const signal = signals.length === 0 ? undefined : signals.length === 1 ? signals[0] : AbortSignal.any(signals);
    let response: Response;
    try {
      response = await this.#fetch(url, { method, headers, ...(body === undefined ? {} : { body }), ...(signal === undefined ? {} : { signal }) });
    } catch (error) {
      const cause = error instanceof Error ? ((error.cause as { message?: string } | undefined)?.message ?? error.message) : String(error);
      const timedOut = error instanceof Error && error.name === "TimeoutError";
      throw new MlshipClientError(
        timedOut ? `${method} ${url} did not answer within ${this.#timeoutMs} ms` : `cannot reach the mlship server at ${url}: ${cause}`,
        { status: 0, code: NETWORK_ERROR, url, cause: error },
      );
    }
    if (!response.ok) throw errorOf(response.status, url, await response.text().catch(() => ""));
    return response;
  }

  /**
   * The parsed JSON body of a successful answer. The timeout also covers the body (a server that sends its headers
   * and then stalls), so reading it fails like the request does; a body that is not JSON (a proxy's HTML page) is
   * MLSHIP_ERR_CLIENT_RESPONSE.
   */
  async #body<T>(method: string, path: string, response: Response): Promise<T> {
    const url = `${this.url}${path}`;
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      const timedOut = error instanceof Error && error.name === "TimeoutError";
      const cause = error instanceof Error ? error.message : String(error);
      throw new MlshipClientError(timedOut ? `${method} ${url} did not answer within ${this.#timeoutMs} ms` : `the answer of ${method} ${url} broke off: ${cause}`, {
        status: 0,
        code: NETWORK_ERROR,
        url,
        cause: error,
      });
    }
    try {
      return JSON.parse(text) as T;
    } catch (error) {
      throw new MlshipClientError(`${method} ${url} answered ${response.status} with a body that is not JSON`, {
        status: response.status,
        code: "MLSHIP_ERR_CLIENT_RESPONSE",
        url,
        cause: error,
      });
    }
  }

  async #json<T>(method: string, path: string, json?: unknown): Promise<T> {
    const response = await this.#request(method, path, json === undefined ? {} : { json });
    return this.#body<T>(method, path, response);
  }

  /** Creates a deployment: applies its settings, starts its rollout and loads the model. 409 if the name is taken. */
  createDeployment(request: CreateDeploymentRequest): Promise<Deployment> {
    return this.#json("POST", "/api/v1/deployments", request);
  }

  /** Changes a deployment's model, settings (merged) or rollout; the next request through it uses the change. */
  updateDeployment(name: string, request: UpdateDeploymentRequest): Promise<Deployment> {
    return this.#json("PATCH", `/api/v1/deployments/${encodeURIComponent(name)}`, request);
  }

  /** Removes a deployment (and ends the rollout it started); version settings stay. */
  async deleteDeployment(name: string): Promise<void> {
    const response = await this.#request("DELETE", `/api/v1/deployments/${encodeURIComponent(name)}`);
    await response.body?.cancel();
  }

  async listDeployments(): Promise<Deployment[]> {
    const answer = await this.#json<{ deployments: Deployment[] }>("GET", "/api/v1/deployments");
    return answer.deployments;
  }

  getDeployment(name: string): Promise<Deployment> {
    return this.#json("GET", `/api/v1/deployments/${encodeURIComponent(name)}`);
  }

  /** Predicts through a deployment (`POST /v1/deployments/{name}/invocations`). */
  predict<P = unknown>(name: string, input: PredictInput, options: PredictOptions = {}): Promise<PredictResult<P>> {
    return this.#predict(`/v1/deployments/${encodeURIComponent(name)}/invocations`, input, options);
  }

  /** Predicts with a model reference directly (`POST /v1/models/{ref}/invocations`): `name`, `name@production`, `name@3`. */
  predictModel<P = unknown>(ref: string, input: PredictInput, options: PredictOptions = {}): Promise<PredictResult<P>> {
    return this.#predict(`/v1/models/${encodeURIComponent(ref)}/invocations`, input, options);
  }

  async #predict<P>(path: string, input: PredictInput, options: PredictOptions): Promise<PredictResult<P>> {
    const { body, contentType } = predictBody(input);
    const response = await this.#request("POST", path, {
      body,
      contentType,
      ...(options.key === undefined ? {} : { headers: { "x-mlship-key": options.key } }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
    const parsed = await this.#body<{ predictions: P }>("POST", path, response);
    return {
      predictions: parsed.predictions,
      modelVersion: response.headers.get("mlship-model-version"),
      variant: response.headers.get("mlship-variant"),
      requestId: response.headers.get("x-request-id"),
    };
  }

  async listModels(): Promise<ModelSummary[]> {
    return (await this.#json<{ models: ModelSummary[] }>("GET", "/api/v1/models")).models;
  }

  /** A model with its versions and aliases (`GET /api/v1/models/{name}`). */
  getModel(name: string): Promise<ModelDetail> {
    return this.#json("GET", `/api/v1/models/${encodeURIComponent(name)}`);
  }

  /** A version's effective serving settings and its registry override (what deployments write). */
  getVersionSettings(name: string, version: number): Promise<VersionSettings> {
    return this.#json("GET", `/api/v1/models/${encodeURIComponent(name)}/versions/${version}/settings`);
  }
}
