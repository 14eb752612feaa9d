export { buildServer, requestMetricsOf } from "./server.js";
export type { RequestMetrics, RequestSnapshot } from "./metrics.js";
export { DEFAULT_BODY_LIMIT_BYTES, mlshipPlugin } from "./plugin.js";
export { mlshipVersion } from "./version.js";
export type { BuildServerOptions, MlshipPluginOptions, Protocol } from "./types.js";
