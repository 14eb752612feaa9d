import { Command } from "commander";
import { KEYS, type ConfigKey, type MlshipConfig } from "../config/index.js";
import type { CliContext, GlobalOptions } from "./context.js";
import { formatTable, printJson, printLine } from "./io.js";

function valueOf(config: MlshipConfig, key: ConfigKey): unknown {
  let value: unknown = config;
  for (const part of key.split(".")) value = (value as Record<string, unknown>)[part];
  return value;
}

export function configCommand(ctx: CliContext): Command {
  return new Command("config")
    .description("print the effective configuration and where each value came from")
    .option("--json", "print JSON ({config, sources, file})")
    .action((_opts: unknown, cmd: Command) => {
      const o = cmd.optsWithGlobals<GlobalOptions & { json?: boolean }>();
      const loaded = ctx.loadConfig(o);
      if (o.json === true) return printJson(ctx.io, loaded);
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
