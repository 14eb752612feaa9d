export { buildServer } from "./server.js";
export { DEFAULT_BODY_LIMIT_BYTES, mlshipPlugin } from "./plugin.js";
export { mlshipVersion } from "./version.js";
export type { BuildServerOptions, MlshipPluginOptions, Protocol } from "./types.js";
