import { Command } from "commander";
import { KEYS, type ConfigKey, type MlshipConfig } from "../config/index.js";
import { redactUrl } from "../store/index.js";
import type { CliContext, GlobalOptions } from "./context.js";
import { formatTable, printJson, printLine } from "./io.js";

function valueOf(config: MlshipConfig, key: ConfigKey): unknown {
  let value: unknown = config;
  for (const part of key.split(".")) value = (value as Record<string, unknown>)[part];
  // Credentials (the admin token) are shown as set or not, never their value.
  if (KEYS.find((def) => def.key === key)?.kind === "secret") return value === null ? null : "***";
  // Store and cache URLs may carry passwords; the printout is for humans and logs, never for secrets.
  return typeof value === "string" && value.includes("://") ? redactUrl(value) : value;
}

function redactedConfig(config: MlshipConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const def of KEYS) {
    const parts = def.key.split(".");
    let node = out;
    for (const part of parts.slice(0, -1)) node = (node[part] ??= {}) as Record<string, unknown>;
    node[parts[parts.length - 1]!] = valueOf(config, def.key);
  }
  return out;
}

export function configCommand(ctx: CliContext): Command {
  return new Command("config")
    .description("print the effective configuration and where each value came from")
    .option("--json", "print JSON ({config, sources, file})")
    .action((_opts: unknown, cmd: Command) => {
      const o = cmd.optsWithGlobals<GlobalOptions & { json?: boolean }>();
      const loaded = ctx.loadConfig(o);
      if (o.json === true) return printJson(ctx.io, { ...loaded, config: redactedConfig(loaded.config) });
      printLine(ctx.io, `config file: ${loaded.file ?? "(none)"}`);
      printLine(
        ctx.io,
        formatTable(
          ["KEY", "VALUE", "SOURCE", "ENV"],
          KEYS.map((def) => {
            const value = valueOf(loaded.config, def.key);
            return [def.key, value === null ? "(none)" : String(value), loaded.sources[def.key], def.env];
          }),
        ),
      );
    });
}
