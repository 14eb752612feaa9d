export {
  createGrpcServer,
  DEFAULT_GRPC_MAX_MESSAGE_BYTES,
  TRAILER_CACHE,
  TRAILER_ERROR_CODE,
  TRAILER_ERROR_FIELD,
  TRAILER_MODEL_VERSION,
  TRAILER_RETRY_AFTER,
} from "./server.js";
export type { GrpcServer, GrpcServerOptions } from "./server.js";
export { inferencePackageDefinition, LOADER_OPTIONS, PROTO_FILE, SERVICE_NAME } from "./proto.js";
