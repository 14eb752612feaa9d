import { pino, type Logger } from "pino";
import { loadConfigWithSources, type ConfigKey, type LoadedConfig, type MlshipConfig } from "../config/index.js";
import { createMlship, type Mlship } from "../app.js";
import type { CliIo } from "./io.js";

/** Options every command accepts (declared on the root program). */
export interface GlobalOptions {
  config?: string;
  home?: string;
  store?: string;
  user?: string;
  logLevel?: string;
}

/**
 * Per-invocation state: the config is loaded once (file ► env ► flags), the app is built on first use, and
 * everything opened is closed by `main` whatever the command did.
 */
export class CliContext {
  readonly io: CliIo;
  #loaded: LoadedConfig | undefined;
  #logger: Logger | undefined;
  #app: Promise<Mlship> | undefined;

  constructor(io: CliIo) {
    this.io = io;
  }

  /** Loads the config with these flag values on top (first call wins; later calls return the same config). */
  loadConfig(
    globals: GlobalOptions,
    flags: Partial<Record<ConfigKey, unknown>> = {},
    /** Command-specific defaults, used only where neither the file, the env nor a flag set the key. */
    defaults: Partial<Record<ConfigKey, unknown>> = {},
  ): LoadedConfig {
    if (this.#loaded !== undefined) return this.#loaded;
    const load = (extra: Partial<Record<ConfigKey, unknown>>): LoadedConfig =>
      loadConfigWithSources({
        cwd: this.io.cwd,
        env: this.io.env,
        configFile: globals.config,
        overrides: {
          home: globals.home,
          store: globals.store,
          user: globals.user,
          "log.level": globals.logLevel,
          ...extra,
          ...flags,
        },
        overrideSource: "flag",
      });
    let loaded = load({});
    const applicable = Object.fromEntries(
      Object.entries(defaults).filter(([key]) => loaded.sources[key as ConfigKey] === "default"),
    );
    if (Object.keys(applicable).length > 0) loaded = load(applicable);
    this.#loaded = loaded;
    return loaded;
  }

  get config(): MlshipConfig {
    if (this.#loaded === undefined) throw new Error("config not loaded yet");
    return this.#loaded.config;
  }

  /** pino on the CLI's stderr (JSON lines), so stdout stays for command output. */
  get logger(): Logger {
    if (this.#logger === undefined) {
      const stderr = this.io.stderr;
      this.#logger = pino(
        { level: this.config.log.level, name: "mlship" },
        { write: (line: string) => void stderr.write(line) },
      );
    }
    return this.#logger;
  }

  app(
    globals: GlobalOptions,
    flags: Partial<Record<ConfigKey, unknown>> = {},
    defaults: Partial<Record<ConfigKey, unknown>> = {},
  ): Promise<Mlship> {
    this.loadConfig(globals, flags, defaults);
    this.#app ??= createMlship(this.config, { logger: this.logger });
    return this.#app;
  }

  async close(): Promise<void> {
    const app = this.#app;
    this.#app = undefined;
    if (app === undefined) return;
    const built = await app.catch(() => undefined);
    await built?.close();
  }
}
