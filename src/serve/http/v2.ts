import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { MlshipError } from "../../core/index.js";
import { parseModelRef } from "../../registry/index.js";
import { formatV2Response, v2TensorMetadata } from "../../scoring/index.js";
import type { ScoringService } from "../../scoring/index.js";
import { BINARY_EXTENSION, BinaryBody, binaryOutputNames, sendBinaryResponse } from "./binary.js";
import { CsvBody } from "./content.js";
import { answeredBy, businessKeyOf, headerObject, rolloutHeaders } from "./state.js";
import type { RouteConfig } from "./types.js";
import { mlshipVersion } from "./version.js";

interface ModelParams {
  name: string;
  version?: string;
}

/** `{name}` may itself be a reference (`iris@production`, `iris@3`); `/versions/{v}` pins a version number. */
export function v2Ref(params: ModelParams): string {
  const { name, version } = params;
  if (version === undefined) return name;
  const parsed = parseModelRef(name);
  if (parsed.alias !== undefined || parsed.version !== undefined) {
    throw new MlshipError(
      "MLSHIP_ERR_MODEL_REF_INVALID",
      `'${name}' already selects ${parsed.alias !== undefined ? `alias '${parsed.alias}'` : `version ${parsed.version}`}; use either /v2/models/${name} or /v2/models/${parsed.name}/versions/${version}, not both`,
      { field: "version" },
    );
  }
  if (!/^\d+$/.test(version) || !Number.isSafeInteger(Number(version)) || Number(version) < 1) {
    throw new MlshipError("MLSHIP_ERR_MODEL_REF_INVALID", `version '${version}' is not a version number (1, 2, ...)`, { field: "version" });
  }
  return `${parsed.name}@${Number(version)}`;
}

const V2: RouteConfig = { protocol: "v2" };
const V2_MODEL: RouteConfig = { protocol: "v2", model: "v2" };
const V2_INFER: RouteConfig = { protocol: "v2", inference: true, metricsProtocol: "v2", model: "v2" };

export function registerV2Routes(app: FastifyInstance, scoring: ScoringService, bodyLimit: number): void {
  app.get("/v2/health/live", { config: V2 }, async () => ({ live: true }));

  app.get("/v2/health/ready", { config: V2 }, async (_request, reply) => {
    const ready = await scoring.servingReady();
    if (!ready) reply.code(503).header("retry-after", "1");
    return { ready };
  });

  app.get("/v2", { config: V2 }, async () => ({ name: "mlship", version: mlshipVersion(), extensions: [BINARY_EXTENSION] }));

  const metadata = async (request: FastifyRequest<{ Params: ModelParams }>, reply: FastifyReply) => {
    const md = await scoring.metadata(v2Ref(request.params));
    answeredBy(request, reply, md.name, md.version);
    return {
      name: md.name,
      versions: md.versions.map(String),
      platform: md.platform,
      inputs: md.signature.inputs.map(v2TensorMetadata),
      outputs: md.signature.outputs.map(v2TensorMetadata),
    };
  };
  app.get("/v2/models/:name", { config: V2_MODEL }, metadata);
  app.get("/v2/models/:name/versions/:version", { config: V2_MODEL }, metadata);

  const ready = async (request: FastifyRequest<{ Params: ModelParams }>, reply: FastifyReply) => {
    const ref = v2Ref(request.params);
    const resolved = await scoring.resolve(ref);
    const isReady = await scoring.isReady(ref);
    answeredBy(request, reply, resolved.version.name, resolved.version.version);
    if (!isReady) reply.code(503).header("retry-after", "1");
    return { name: resolved.version.name, ready: isReady };
  };
  app.get("/v2/models/:name/ready", { config: V2_MODEL }, ready);
  app.get("/v2/models/:name/versions/:version/ready", { config: V2_MODEL }, ready);

  const infer = async (request: FastifyRequest<{ Params: ModelParams }>, reply: FastifyReply) => {
    const ref = v2Ref(request.params);
    if (request.body instanceof CsvBody) {
      throw new MlshipError("MLSHIP_ERR_INPUT_CONTENT_TYPE", "the V2 infer route takes application/json; CSV goes to the MLflow routes (/invocations)", {
        field: "content-type",
      });
    }
    const { body } = request;
    const input = body instanceof BinaryBody ? { kind: "v2" as const, body: body.json, binary: body.binary } : { kind: "v2" as const, body };
    const key = businessKeyOf(request.headers);
    const result = await scoring.score(ref, input, key === undefined ? { protocol: "v2", requestId: String(request.id) } : { protocol: "v2", requestId: String(request.id), key });
    answeredBy(request, reply, result.model, result.version, result.rows);
    if (result.cached !== undefined) reply.header("mlship-cache", result.cached ? "hit" : "miss");
    if (result.variant !== undefined) reply.headers(headerObject(rolloutHeaders(result)));
    const binary = binaryOutputNames(input.body, Object.keys(result.outputs));
    if (binary.size > 0) return sendBinaryResponse(reply, result, binary);
    return formatV2Response(result);
  };
  app.post("/v2/models/:name/infer", { config: V2_INFER, bodyLimit }, infer);
  app.post("/v2/models/:name/versions/:version/infer", { config: V2_INFER, bodyLimit }, infer);
}
