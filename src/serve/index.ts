export * from "./http/index.js";
export * from "./grpc/index.js";
