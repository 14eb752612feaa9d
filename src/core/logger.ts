import { pino, type Logger } from "pino";

export type { Logger };

/** Fields that hold credentials (the admin token and the header it comes in), censored in every log line. */
export const LOG_REDACT_PATHS = [
  "req.headers.authorization",
  "headers.authorization",
  "authorization",
  "adminToken",
  "server.adminToken",
  "config.server.adminToken",
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
