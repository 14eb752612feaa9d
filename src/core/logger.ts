import { pino, type Logger } from "pino";

export type { Logger };

/** Logs go to stderr so that stdout stays for command output (conventions.md). */
export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  return pino(
    { level: options.level ?? process.env.MLSHIP_LOG_LEVEL ?? "info", name: options.name ?? "mlship" },
    pino.destination(2),
  );
}

export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
