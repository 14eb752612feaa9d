export * from "./errors.js";
export * from "./tensor.js";
export * from "./logger.js";
