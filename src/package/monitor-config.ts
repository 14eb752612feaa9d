/**
 * The declared monitoring settings of a model: the `monitor:` section of `mlship.yaml`, or a standalone monitor
 * config file (YAML or JSON) given with `--config`. Both hold the same shape:
 *
 * ```yaml
 * monitor:
 *   rules:
 *     columns:
 *       mean radius: { type: float, min: 0, max: 40, non_negative: true, max_null_rate: 0.01 }
 *     expected_columns: present     # or strict: extra columns are a warning too
 *     range_tolerance: 0.1          # learned ranges widen the reference [min, max] by this share of its width
 *     max_null_rate: 0.05           # ceiling for every column without its own
 *     max_row_drop: 0.5             # a window may have at most 50% fewer rows than the previous one
 *     unseen_categories: error      # or warning, ignore
 *   drift:
 *     share: 0.5
 *     methods: { mean radius: { method: psi, threshold: 0.2 } }
 * ```
 *
 * Validation errors name the file and the YAML path of the bad field, as the package manifest does.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import YAML from "yaml";
import { MlshipError } from "../core/index.js";

/** Declared value type of a column. `int`: every value is an integer; `float`: any number. */
export type DeclaredType = "int" | "float" | "string" | "bool";
export const DECLARED_TYPES: readonly DeclaredType[] = ["int", "float", "string", "bool"];

export type ExpectedColumnsMode = "strict" | "present";
export type UnseenCategoriesMode = "error" | "warning" | "ignore";
/** The drift tests and distances a column may be assigned (`monitor.drift.methods`). */
export type DriftMethod = "ks" | "chisquare" | "z" | "psi" | "kl" | "jensenshannon" | "wasserstein" | "wasserstein_norm" | "l1";

export const DRIFT_METHODS: readonly DriftMethod[] = [
  "ks", "chisquare", "z", "psi", "kl", "jensenshannon", "wasserstein", "wasserstein_norm", "l1",
];

/** A scalar a column may be restricted to (`allowed:`). */
export type AllowedValue = string | number | boolean;

/** Rules declared for one column; every key is optional. */
export interface ColumnRules {
  type?: DeclaredType;
  /** Inclusive bounds on every value. */
  min?: number;
  max?: number;
  /** `false` switches off the non-negative rule inferred from the reference. */
  non_negative?: boolean;
  positive?: boolean;
  /** Share of missing values allowed, 0..1. */
  max_null_rate?: number;
  /** The only values the column may hold. */
  allowed?: AllowedValue[];
}

export interface RulesConfig {
  columns: Record<string, ColumnRules>;
  /** `present` (default): expected columns must be there; `strict`: and no others (a warning). */
  expected_columns: ExpectedColumnsMode;
  /** Learned ranges are `[min - tol*(max-min), max + tol*(max-min)]` of the reference (default 0.1). */
  range_tolerance: number;
  /** Ceiling for columns without their own; undefined = not declared (learned from the reference, see rules.ts). */
  max_null_rate?: number;
  /** Largest allowed drop of the row count against the previous window, 0..1 (default 0.5). */
  max_row_drop: number;
  /** Severity of categories absent from the reference (default `error`). */
  unseen_categories: UnseenCategoriesMode;
}

export interface DriftMethodChoice {
  method?: DriftMethod;
  threshold?: number;
}

/** Read by the drift module; validated here so a bad value fails when the package or file is loaded. */
export interface DriftConfig {
  /** Share of drifted features from which the dataset counts as drifted, in (0, 1]; undefined = drift default. */
  share?: number;
  methods: Record<string, DriftMethodChoice>;
}

export interface MonitorConfig {
  rules: RulesConfig;
  drift: DriftConfig;
}

export const MONITOR_DEFAULTS = {
  expected_columns: "present",
  range_tolerance: 0.1,
  max_row_drop: 0.5,
  unseen_categories: "error",
} as const satisfies Partial<RulesConfig>;

/** A config with every default and nothing declared. */
export function defaultMonitorConfig(): MonitorConfig {
  return { rules: { columns: {}, ...MONITOR_DEFAULTS }, drift: { methods: {} } };
}

/** Builds the error for a bad field; callers choose the code (a package says PACKAGE_INVALID, a file CONFIG_INVALID). */
export type MonitorConfigFail = (what: string, field: string) => MlshipError;

export interface ParseMonitorConfigOptions {
  /** YAML path of the section inside its file, prefixed to every field in errors (`monitor` in a package). */
  at?: string;
  fail?: MonitorConfigFail;
}

/** `<where>: <what is wrong> at <yaml path>`, code MLSHIP_ERR_CONFIG_INVALID. */
export function configFail(where: string): MonitorConfigFail {
  return (what, field) => new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `${where}: ${what} at ${field}`, { field });
}

/**
 * Validates a monitor section (`{rules?, drift?}`; null or undefined = all defaults) and returns it typed, with
 * defaults filled in. `where` names the file in errors.
 */
export function parseMonitorConfig(
  value: unknown,
  where: string,
  options: ParseMonitorConfigOptions = {},
): MonitorConfig {
  return new MonitorChecker(options.fail ?? configFail(where), options.at ?? "").config(value);
}

/**
 * Reads a standalone monitor config file: JSON when it ends in `.json`, YAML otherwise. The file holds either the
 * section itself (`rules:`, `drift:`) or a mapping with a single `monitor:` key around it (so a copy of the
 * package's section works as is).
 */
export async function loadMonitorConfigFile(file: string): Promise<MonitorConfig> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const what = code === "ENOENT" ? "does not exist" : `cannot be read (${code ?? String(error)})`;
    throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `monitor config file ${file} ${what}`, {
      field: "config",
      cause: error,
    });
  }
  let doc: unknown;
  if (path.extname(file).toLowerCase() === ".json") {
    try {
      doc = JSON.parse(text) as unknown;
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `${file}: not valid JSON (${reason}) at (document)`, {
        field: "(document)",
        cause: error,
      });
    }
  } else {
    const parsed = YAML.parseDocument(text, { uniqueKeys: true, prettyErrors: true });
    const first = parsed.errors[0];
    if (first !== undefined) {
      const pos = first.linePos?.[0];
      const at = pos === undefined ? "(document)" : `line ${pos.line}, column ${pos.col}`;
      const reason = (first.message.split("\n")[0] ?? first.code).replace(/ at line \d+, column \d+:?$/, "");
      throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `${file}: malformed YAML (${reason}) at ${at}`, {
        field: at,
        cause: first,
      });
    }
    doc = parsed.toJS({ maxAliasCount: 100 }) as unknown;
  }
  if (isRecord(doc) && Object.keys(doc).length === 1 && "monitor" in doc) {
    return parseMonitorConfig(doc.monitor, file, { at: "monitor" });
  }
  return parseMonitorConfig(doc, file);
}

/**
 * The section as written in YAML: declared values only, defaults left out, so `parseMonitorConfig` of the result
 * gives the same config back. Used to write `mlship.yaml`.
 */
export function monitorConfigToPlain(config: MonitorConfig): Record<string, unknown> {
  const rules: Record<string, unknown> = {};
  const columns: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(config.rules.columns)) {
    const plain: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(spec)) if (v !== undefined) plain[key] = Array.isArray(v) ? [...v] : v;
    columns[name] = plain;
  }
  if (Object.keys(columns).length > 0) rules.columns = columns;
  for (const key of ["expected_columns", "range_tolerance", "max_row_drop", "unseen_categories"] as const) {
    if (config.rules[key] !== MONITOR_DEFAULTS[key]) rules[key] = config.rules[key];
  }
  if (config.rules.max_null_rate !== undefined) rules.max_null_rate = config.rules.max_null_rate;
  const drift: Record<string, unknown> = {};
  if (config.drift.share !== undefined) drift.share = config.drift.share;
  if (Object.keys(config.drift.methods).length > 0) {
    drift.methods = Object.fromEntries(Object.entries(config.drift.methods).map(([name, choice]) => {
      const plain: Record<string, unknown> = {};
      if (choice.method !== undefined) plain.method = choice.method;
      if (choice.threshold !== undefined) plain.threshold = choice.threshold;
      return [name, plain];
    }));
  }
  const out: Record<string, unknown> = {};
  if (Object.keys(rules).length > 0) out.rules = rules;
  if (Object.keys(drift).length > 0) out.drift = drift;
  return out;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "string") return `the string ${JSON.stringify(value)}`;
  return `${typeof value} ${String(value)}`;
}

class MonitorChecker {
  constructor(private readonly fail: MonitorConfigFail, private readonly at: string) {}

  private where(field: string): string {
    if (field === "") return this.at === "" ? "(root)" : this.at;
    return this.at === "" ? field : `${this.at}.${field}`;
  }

  private error(what: string, field: string): MlshipError {
    return this.fail(what, this.where(field));
  }

  private record(value: unknown, field: string): Record<string, unknown> {
    if (!isRecord(value)) throw this.error(`expected a mapping, got ${describe(value)}`, field);
    return value;
  }

  private keys(obj: Record<string, unknown>, allowed: readonly string[], field: string): void {
    for (const key of Object.keys(obj)) {
      if (!allowed.includes(key)) {
        throw this.error(`unknown field ${JSON.stringify(key)} (allowed: ${allowed.join(", ")})`,
          field === "" ? key : `${field}.${key}`);
      }
    }
  }

  private num(value: unknown, field: string): number {
    if (typeof value !== "number" || !Number.isFinite(value)) {
      throw this.error(`expected a finite number, got ${describe(value)}`, field);
    }
    return value;
  }

  /** A share: a number in [low, 1] (low excluded when `openLow`). */
  private share(value: unknown, field: string, openLow = false): number {
    const n = this.num(value, field);
    if (n > 1 || n < 0 || (openLow && n === 0)) {
      throw this.error(`expected a number ${openLow ? "above 0" : "from 0"} up to 1, got ${n}`, field);
    }
    return n;
  }

  private bool(value: unknown, field: string): boolean {
    if (typeof value !== "boolean") throw this.error(`expected true or false, got ${describe(value)}`, field);
    return value;
  }

  private oneOf<T extends string>(value: unknown, choices: readonly T[], field: string): T {
    if (typeof value !== "string" || !(choices as readonly string[]).includes(value)) {
      throw this.error(`expected one of ${choices.join(", ")}, got ${describe(value)}`, field);
    }
    return value as T;
  }

  config(raw: unknown): MonitorConfig {
    const config = defaultMonitorConfig();
    if (raw === undefined || raw === null) return config;
    const top = this.record(raw, "");
    this.keys(top, ["rules", "drift"], "");
    if (top.rules !== undefined && top.rules !== null) config.rules = this.rules(top.rules);
    if (top.drift !== undefined && top.drift !== null) config.drift = this.drift(top.drift);
    return config;
  }

  private rules(raw: unknown): RulesConfig {
    const obj = this.record(raw, "rules");
    this.keys(obj, ["columns", "expected_columns", "range_tolerance", "max_null_rate", "max_row_drop",
      "unseen_categories"], "rules");
    const rules: RulesConfig = { columns: {}, ...MONITOR_DEFAULTS };
    if (obj.columns !== undefined && obj.columns !== null) {
      const columns = this.record(obj.columns, "rules.columns");
      for (const [name, spec] of Object.entries(columns)) {
        rules.columns[name] = this.column(spec, `rules.columns.${name}`);
      }
    }
    if (obj.expected_columns !== undefined) {
      rules.expected_columns = this.oneOf(obj.expected_columns, ["strict", "present"], "rules.expected_columns");
    }
    if (obj.range_tolerance !== undefined) {
      const tol = this.num(obj.range_tolerance, "rules.range_tolerance");
      if (tol < 0) throw this.error(`expected a number >= 0, got ${tol}`, "rules.range_tolerance");
      rules.range_tolerance = tol;
    }
    if (obj.max_null_rate !== undefined) rules.max_null_rate = this.share(obj.max_null_rate, "rules.max_null_rate");
    if (obj.max_row_drop !== undefined) rules.max_row_drop = this.share(obj.max_row_drop, "rules.max_row_drop");
    if (obj.unseen_categories !== undefined) {
      rules.unseen_categories = this.oneOf(obj.unseen_categories, ["error", "warning", "ignore"],
        "rules.unseen_categories");
    }
    return rules;
  }

  private column(raw: unknown, field: string): ColumnRules {
    // `mean radius: {}` or a bare `mean radius:` (null) declares the column expected, with no other rule.
    if (raw === null) return {};
    const obj = this.record(raw, field);
    this.keys(obj, ["type", "min", "max", "non_negative", "positive", "max_null_rate", "allowed"], field);
    const spec: ColumnRules = {};
    if (obj.type !== undefined) spec.type = this.oneOf(obj.type, DECLARED_TYPES, `${field}.type`);
    if (obj.min !== undefined) spec.min = this.num(obj.min, `${field}.min`);
    if (obj.max !== undefined) spec.max = this.num(obj.max, `${field}.max`);
    if (spec.min !== undefined && spec.max !== undefined && spec.min > spec.max) {
      throw this.error(`min ${spec.min} is above max ${spec.max}`, `${field}.min`);
    }
    if (obj.non_negative !== undefined) spec.non_negative = this.bool(obj.non_negative, `${field}.non_negative`);
    if (obj.positive !== undefined) spec.positive = this.bool(obj.positive, `${field}.positive`);
    if (spec.max !== undefined && ((spec.non_negative === true && spec.max < 0) || (spec.positive === true && spec.max <= 0))) {
      throw this.error(`max ${spec.max} contradicts ${spec.positive === true ? "positive" : "non_negative"}: true`,
        `${field}.max`);
    }
    if (obj.max_null_rate !== undefined) spec.max_null_rate = this.share(obj.max_null_rate, `${field}.max_null_rate`);
    if (obj.allowed !== undefined) spec.allowed = this.allowed(obj.allowed, `${field}.allowed`);
    if (spec.type !== undefined && (spec.type === "string" || spec.type === "bool") &&
      (spec.min !== undefined || spec.max !== undefined || spec.non_negative === true || spec.positive === true)) {
      throw this.error(`numeric bounds (min, max, non_negative, positive) need a numeric type, not ${spec.type}`,
        `${field}.type`);
    }
    return spec;
  }

  private allowed(raw: unknown, field: string): AllowedValue[] {
    if (!Array.isArray(raw)) throw this.error(`expected a list, got ${describe(raw)}`, field);
    if (raw.length === 0) throw this.error("the list is empty", field);
    const seen = new Set<string>();
    return raw.map((v: unknown, i) => {
      const at = `${field}[${i}]`;
      if (typeof v !== "string" && typeof v !== "boolean" && !(typeof v === "number" && Number.isFinite(v))) {
        throw this.error(`expected a string, number or boolean, got ${describe(v)}`, at);
      }
      const key = String(v);
      if (seen.has(key)) throw this.error(`duplicate value ${JSON.stringify(v)}`, at);
      seen.add(key);
      return v;
    });
  }

  private drift(raw: unknown): DriftConfig {
    const obj = this.record(raw, "drift");
    this.keys(obj, ["share", "methods"], "drift");
    const drift: DriftConfig = { methods: {} };
    if (obj.share !== undefined) drift.share = this.share(obj.share, "drift.share", true);
    if (obj.methods !== undefined && obj.methods !== null) {
      const methods = this.record(obj.methods, "drift.methods");
      for (const [name, choice] of Object.entries(methods)) {
        const field = `drift.methods.${name}`;
        const c = this.record(choice, field);
        this.keys(c, ["method", "threshold"], field);
        const out: DriftMethodChoice = {};
        if (c.method !== undefined) out.method = this.oneOf(c.method, DRIFT_METHODS, `${field}.method`);
        if (c.threshold !== undefined) {
          const t = this.num(c.threshold, `${field}.threshold`);
          if (t < 0) throw this.error(`expected a number >= 0, got ${t}`, `${field}.threshold`);
          out.threshold = t;
        }
        drift.methods[name] = out;
      }
    }
    return drift;
  }
}
