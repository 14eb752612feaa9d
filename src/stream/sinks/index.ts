/** Stream sinks by kind: SQL tables (sql.ts), folders of JSON Lines or Parquet files (files.ts), NATS subjects (nats.ts). */
import type { Logger } from "../../core/index.js";
import type { SqlStore } from "../../store/index.js";
import type { SinkSpec, StreamSink } from "../types.js";
import { createFolderSink } from "./files.js";
import { createNatsSink } from "./nats.js";
import { createSqlSink } from "./sql.js";

export { createFolderSink, LEDGER_FILE, partFileName } from "./files.js";
export { createNatsSink } from "./nats.js";
export { createSqlSink, outputValue, SYSTEM_COLUMNS } from "./sql.js";

/** The sink `spec` describes, not yet opened. `name` is the stream job's name. */
export function createStreamSink(spec: SinkSpec, options: { store: SqlStore; logger: Logger; name: string }): StreamSink {
  switch (spec.kind) {
    case "sqlite":
    case "postgres":
      return createSqlSink(spec, { store: options.store, logger: options.logger });
    case "jsonl":
    case "parquet":
      return createFolderSink(spec, { logger: options.logger });
    case "nats":
      return createNatsSink(spec, { logger: options.logger, name: options.name });
  }
}
