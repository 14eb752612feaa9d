import { monitorConfigToPlain, parseMonitorConfig } from "./monitor-config.js";
import type { MonitorConfig } from "./monitor-config.js";
import { invalid } from "./util.js";

/**
 * Validates the optional `monitor:` section of a manifest (format: docs/model-package.md, "Monitoring"); errors are
 * MLSHIP_ERR_PACKAGE_INVALID naming the file and the field (`monitor.rules.columns.mean radius.max`).
 */
export function checkMonitorSection(raw: unknown, file: string): MonitorConfig {
  return parseMonitorConfig(raw, file, { at: "monitor", fail: (what, field) => invalid(file, what, field) });
}

/** The section as written to `mlship.yaml`: declared values only. */
export function monitorSectionPlain(config: MonitorConfig): Record<string, unknown> {
  return monitorConfigToPlain(config);
}
