import { pino, type Logger } from "pino";

export type { Logger };

/**
 * Fields that hold credentials, censored in every log line: the admin and inference tokens and the header they come
 * in (HTTP, gRPC metadata), passwords, and AWS-style secret keys. URLs that may carry a password (the store, the
 * cache, the batch lookup database) are logged through `redactUrl` where they are logged at all.
 */
export const LOG_REDACT_PATHS = [
  "req.headers.authorization",
  "headers.authorization",
  "metadata.authorization",
  "authorization",
  "adminToken",
  "server.adminToken",
  "config.server.adminToken",
  "inferenceTokens",
  "server.inferenceTokens",
  "config.server.inferenceTokens",
  "password",
  "*.password",
  "secretAccessKey",
  "*.secretAccessKey",
  "sessionToken",
  "*.sessionToken",
];

/** Logs go to stderr so that stdout stays for command output (conventions.md). */
export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  return pino(
    {
      level: options.level ?? process.env.MLSHIP_LOG_LEVEL ?? "info",
      name: options.name ?? "mlship",
      // Credentials never reach a log line, even when a request or the config is logged whole by mistake.
      redact: { paths: LOG_REDACT_PATHS, censor: "***" },
    },
    pino.destination(2),
  );
}

export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
