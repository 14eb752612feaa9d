export type * from "./types.js";
export { createRegistry, defaultActor, validateVersionSettings, versionFromPath } from "./registry.js";
export type { CreateRegistryOptions } from "./registry.js";
export { openRegistry } from "./open.js";
export type { OpenRegistryOptions } from "./open.js";
export {
  LATEST,
  formatModelRef,
  isReservedAlias,
  parseModelRef,
  validateAliasName,
  validateModelName,
} from "./refs.js";
export { deploymentStack, rollbackTarget } from "./rollback.js";
export type { AliasMove } from "./rollback.js";
export { emptyTraffic, listPackageFiles, registryRoutes, TRAFFIC_WINDOW_SECONDS } from "./http.js";
export type { ActiveRolloutView, AuditEntryLike, LoadedVersionInfo, RegistryRoutesOptions } from "./http.js";
