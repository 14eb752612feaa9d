/** A stream job's source from its spec: a folder of files, or a NATS JetStream durable consumer. */
import type { Logger } from "../../core/index.js";
import type { SourceSpec, StreamSource } from "../types.js";
import { createFolderSource } from "./folder.js";
import { createNatsSource } from "./nats.js";

export interface CreateSourceOptions {
  /** A folder of the checkpoint the source keeps its own files in (the folder source's processed-files log). */
  checkpointDir: string;
  logger: Logger;
  /** The stream job's name (for logs and the consumer's description). */
  name: string;
}

export function createStreamSource(spec: SourceSpec, options: CreateSourceOptions): StreamSource {
  switch (spec.kind) {
    case "folder":
      return createFolderSource(spec, { checkpointDir: options.checkpointDir, logger: options.logger });
    case "nats":
      return createNatsSource(spec, { logger: options.logger, name: options.name });
  }
}

export { createFolderSource, createNatsSource };
