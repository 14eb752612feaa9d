export type * from "./types.js";
export { createDeploymentService } from "./service.js";
export type { CreateDeploymentServiceOptions, DeploymentService } from "./service.js";
export { DeploymentStore, deploymentNotFound } from "./store.js";
export { deploymentRoutes } from "./http.js";
export type { DeploymentRoutesOptions } from "./http.js";
export { DEPLOYMENT_NAME, validateDeploymentName, validateDeploymentRollout, validateDeploymentSettings } from "./validate.js";
