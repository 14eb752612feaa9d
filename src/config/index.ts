export { KEYS, LOG_LEVELS, defaultUser } from "./schema.js";
export type { MlshipConfig, ConfigKey, ConfigValue, KeyDef, LogLevel } from "./schema.js";
export { CONFIG_FILE_NAME, loadConfig, loadConfigWithSources, defaultConfig } from "./load.js";
export type { LoadConfigOptions, LoadedConfig } from "./load.js";
