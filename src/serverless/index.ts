/**
 * `mlship/serverless`: a function-platform handler over the same scoring pipeline as `mlship serve`
 * (docs/serverless.md). `handler` is ready to name in the platform's settings (`index.handler` after
 * `export { handler } from "mlship/serverless"`); it builds nothing until its first invocation.
 */
import { createHandler } from "./handler.js";

export { createHandler } from "./handler.js";
export type {
  HttpEventV1,
  HttpEventV2,
  HttpResult,
  InvocationContext,
  PlainError,
  PlainEvent,
  ServerlessHandler,
  ServerlessOptions,
} from "./handler.js";

/** The handler with every setting from the environment (MLSHIP_HOME, MLSHIP_DEFAULT_MODEL, MLSHIP_WORKERS...). */
export const handler = createHandler();
