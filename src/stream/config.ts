/**
 * The stream job's configuration file (`mlship stream run --config stream.yaml`): a friendly YAML (or JSON) shape,
 * checked strictly and turned into the fully-defaulted `StreamJobConfig` the engine runs. docs/streaming.md is the
 * user-facing reference of every key.
 *
 * Strict on purpose: a stream runs unattended for days, so a typo (`maxFilesPerTriger`) must stop it at start,
 * never be ignored. Every refusal is MLSHIP_ERR_CONFIG_INVALID whose `field` is the path of the bad value
 * (`sinks[1].table`, `aggregations[0].window.sizeMs`) and whose message says what is expected there.
 *
 * Conveniences, all applied while checking:
 * - `${VAR}` and `${VAR:-default}` in string values expand from the environment (`$${` writes a literal `${`).
 *   A numeric or boolean key may hold such a reference too (`maxMessages: ${BATCH:-500}`).
 * - `*Ms` keys take a number of milliseconds or a duration text: `500ms`, `10s`, `1.5m`, `2h`, `1d`, `1m30s`.
 * - Relative paths resolve against the config file's folder, so a job folder can be moved as a whole.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import YAML from "yaml";
import { MlshipError } from "../core/index.js";
import { parseModelRef } from "../registry/index.js";
import { columnName, compileFieldPath } from "./fields.js";
import type {
  AggregateMetric,
  AggregationSpec,
  FieldSpec,
  FieldType,
  FolderSourceSpec,
  JoinSpec,
  NatsSinkSpec,
  NatsSourceSpec,
  PostgresSinkSpec,
  SchemaSpec,
  SinkSpec,
  SourceSpec,
  SqliteSinkSpec,
  StreamJobConfig,
  TriggerSpec,
  WindowSpec,
} from "./types.js";

export const DEFAULT_NATS_SERVERS = "nats://127.0.0.1:4222";
export const DEFAULT_TRIGGER_INTERVAL_MS = 1000;
export const DEFAULT_MAX_FILES_PER_TRIGGER = 1;
export const DEFAULT_MAX_MESSAGES = 1000;
export const DEFAULT_ACK_WAIT_MS = 30_000;
export const DEFAULT_MAX_STATE_RECORDS = 1_000_000;

export const FIELD_TYPES: readonly FieldType[] = ["string", "double", "float", "integer", "long", "boolean", "timestamp"];

/** `.` and `..` alone would make the default checkpoint `<home>/streams/..`. */
const JOB_NAME_PATTERN = /^(?!\.{1,2}$)[A-Za-z0-9_.-]+$/;
/** Same rule as batch's `checkTableName`: a plain lower-case identifier never needs quoting. */
const TABLE_NAME_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/;
/** JetStream stream and consumer names: no whitespace, `.`, `*`, `>`, or path separators. */
const NATS_NAME_PATTERN = /^[^\s.*>/\\]+$/;
const ENV_NAME_PATTERN = /^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$/s;
const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION_PART = /(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)/gy;
const DURATION_HINT = "a duration: milliseconds as a number, or text like 500ms, 10s, 1m, 2h";

const TOP_KEYS = [
  "name", "model", "source", "schema", "trigger", "select", "sinks", "sink", "deadLetter", "aggregations", "join",
  "checkpoint", "predictionLog",
] as const;
const FOLDER_SOURCE_KEYS = ["kind", "path", "format", "maxFilesPerTrigger", "recursive"] as const;
const NATS_SOURCE_KEYS = [
  "kind", "servers", "stream", "subject", "durable", "maxMessages", "ackWaitMs", "deliverPolicy", "createStream",
] as const;
const SINK_KEYS: Record<SinkSpec["kind"], readonly string[]> = {
  sqlite: ["kind", "table", "path"],
  postgres: ["kind", "url", "table"],
  nats: ["kind", "servers", "subject", "createStream"],
  jsonl: ["kind", "path"],
  parquet: ["kind", "path"],
};
const SCHEMA_KEYS = ["fields", "fromModel", "key", "eventTime", "extra"] as const;
const FIELD_KEYS = ["name", "type", "nullable"] as const;
const TRIGGER_KEYS = ["kind", "intervalMs"] as const;
const AGGREGATION_KEYS = ["name", "window", "watermarkMs", "groupBy", "metrics", "sink"] as const;
const WINDOW_KEYS = ["kind", "sizeMs", "slideMs"] as const;
const METRIC_KEYS = ["fn", "field", "as"] as const;
const METRIC_FNS: readonly AggregateMetric["fn"][] = ["count", "sum", "mean", "min", "max"];
const JOIN_KEYS = ["source", "schema", "withinMs", "watermarkMs", "type", "maxStateRecords", "sink", "feedback"] as const;

export interface StreamConfigOptions {
  /** Relative paths resolve against this folder (the config file's folder). */
  baseDir: string;
  /** MLSHIP_HOME: the default checkpoint is `<home>/streams/<name>`. */
  home: string;
  /** Where `${VAR}` references are looked up. Default `process.env`. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Prefix of error messages (the file name when loaded from one). Default `stream config`. */
  where?: string;
}

/**
 * Checks a stream config (as parsed from YAML/JSON) and returns it with every default filled in and every path
 * absolute. Throws MLSHIP_ERR_CONFIG_INVALID naming the first bad field.
 */
export function parseStreamConfig(raw: unknown, options: StreamConfigOptions): StreamJobConfig {
  return new ConfigReader(options).job(raw);
}

/** Reads a stream config file: JSON when it ends in `.json`, YAML otherwise; relative paths resolve against its folder. */
export async function loadStreamConfig(
  file: string,
  options: { home: string; env?: Readonly<Record<string, string | undefined>> },
): Promise<StreamJobConfig> {
  const absolute = path.resolve(file);
  let text: string;
  try {
    text = await readFile(absolute, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const what = code === "ENOENT" ? "does not exist" : `cannot be read (${code ?? String(error)})`;
    throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `stream config file ${absolute} ${what}`, { field: "config", cause: error });
  }
  let doc: unknown;
  if (path.extname(absolute).toLowerCase() === ".json") {
    try {
      doc = JSON.parse(text) as unknown;
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `${absolute}: not valid JSON (${reason})`, { field: "config", cause: error });
    }
  } else {
    const parsed = YAML.parseDocument(text, { uniqueKeys: true, prettyErrors: true });
    const first = parsed.errors[0];
    if (first !== undefined) {
      const pos = first.linePos?.[0];
      const at = pos === undefined ? "" : ` at line ${pos.line}, column ${pos.col}`;
      const reason = (first.message.split("\n")[0] ?? first.code).replace(/ at line \d+, column \d+:?$/, "");
      throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `${absolute}: malformed YAML (${reason})${at}`, { field: "config", cause: first });
    }
    doc = parsed.toJS({ maxAliasCount: 100 }) as unknown;
  }
  return parseStreamConfig(doc, {
    baseDir: path.dirname(absolute),
    home: options.home,
    where: absolute,
    ...(options.env === undefined ? {} : { env: options.env }),
  });
}

/**
 * Milliseconds from a number (ms) or a duration text (`500ms`, `10s`, `1m`, `2h`, `1d`, `1m30s`, `1.5s`; a bare
 * number text is ms). Negative, non-finite and malformed values throw MLSHIP_ERR_CONFIG_INVALID naming `field`.
 * Fractions of a millisecond are rounded.
 */
export function parseDurationMs(value: unknown, field: string): number {
  const refuse = (): MlshipError =>
    new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `${field} must be ${DURATION_HINT}, got ${describeValue(value)}`, { field });
  if (typeof value === "number") {
    if (!Number.isFinite(value) || value < 0) throw refuse();
    return Math.round(value);
  }
  if (typeof value !== "string") throw refuse();
  const text = value.trim().toLowerCase();
  if (/^(\d+(\.\d+)?|\.\d+)$/.test(text)) return Math.round(Number(text));
  if (text === "") throw refuse();
  let total = 0;
  let offset = 0;
  DURATION_PART.lastIndex = 0;
  while (offset < text.length) {
    DURATION_PART.lastIndex = offset;
    const match = DURATION_PART.exec(text);
    if (match === null) throw refuse();
    total += Number(match[1]) * (DURATION_UNITS_MS[match[2] as string] as number);
    offset = DURATION_PART.lastIndex;
    while (text[offset] === " ") offset++;
  }
  if (!Number.isFinite(total)) throw refuse();
  return Math.round(total);
}

/** The output column of an aggregate metric, as the aggregation names it: its `as`, else `count` or `<fn>_<field as a column name>`. */
export function metricColumnName(metric: Pick<AggregateMetric, "fn" | "field" | "as">): string {
  if (metric.as !== undefined) return metric.as;
  if (metric.fn === "count") return "count";
  return `${metric.fn}_${columnName(metric.field ?? "")}`;
}

/** `string "abc"`, `number 0`, `a list`, `null`: how a wrong value is quoted in messages. */
function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (value === undefined) return "nothing";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "string") return `string ${JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value)}`;
  if (typeof value === "object") return "a mapping";
  return `${typeof value} ${String(value)}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function editDistance(a: string, b: string): number {
  const previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = previous[0] as number;
    previous[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = previous[j] as number;
      const cost = a[i - 1]?.toLowerCase() === b[j - 1]?.toLowerCase() ? 0 : 1;
      previous[j] = Math.min(above + 1, (previous[j - 1] as number) + 1, diagonal + cost);
      diagonal = above;
    }
  }
  return previous[b.length] as number;
}

function join(parent: string, key: string): string {
  return parent === "" ? key : `${parent}.${key}`;
}

/** Walks the raw document; every method takes the value and its field path, and throws naming that path. */
class ConfigReader {
  private readonly env: Readonly<Record<string, string | undefined>>;
  private readonly where: string;

  constructor(private readonly options: StreamConfigOptions) {
    this.env = options.env ?? process.env;
    this.where = options.where ?? "stream config";
  }

  job(raw: unknown): StreamJobConfig {
    const doc = this.mapping(raw, "", TOP_KEYS, "the stream config");
    const name = this.requiredString(doc.name, "name");
    if (!JOB_NAME_PATTERN.test(name)) {
      throw this.fail("name", `must use only letters, digits, _, . and -, got ${describeValue(name)}`);
    }
    const model = this.requiredString(doc.model, "model");
    try {
      parseModelRef(model);
    } catch (error) {
      throw this.fail("model", `is not valid (${(error as Error).message})`);
    }
    if (doc.source === undefined) throw this.fail("source", "is required: a mapping with kind folder or nats");
    const source = this.source(doc.source, "source", defaultDurable(name, ""));
    if (doc.schema === undefined) {
      throw this.fail("schema", "is required: list the fields (schema: { fields: { id: string } }) and/or use the model's columns (fromModel: true)");
    }
    const schema = this.schema(doc.schema, "schema", true);
    const trigger = doc.trigger === undefined ? defaultTrigger() : this.trigger(doc.trigger, "trigger");
    const select = doc.select === undefined ? [] : this.fieldNames(doc.select, "select", schema);

    if (doc.sinks !== undefined && doc.sink !== undefined) throw this.fail("sink", "cannot be given together with sinks: use one of them");
    let sinks: SinkSpec[];
    if (doc.sink !== undefined) {
      sinks = [this.sink(doc.sink, "sink")];
    } else {
      if (doc.sinks === undefined) throw this.fail("sinks", "is required: a list of at least one sink (or a single sink: mapping)");
      const list = this.list(doc.sinks, "sinks");
      if (list.length === 0) throw this.fail("sinks", "must list at least one sink");
      sinks = list.map((item, index) => this.sink(item, `sinks[${index}]`));
    }

    const checkpoint = doc.checkpoint === undefined ? path.resolve(this.options.home, "streams", name) : this.path(doc.checkpoint, "checkpoint");
    const deadLetter: SinkSpec =
      doc.deadLetter === undefined ? { kind: "jsonl", path: path.join(checkpoint, "dead-letter") } : this.sink(doc.deadLetter, "deadLetter");

    const aggregations = doc.aggregations === undefined ? [] : this.aggregations(doc.aggregations, "aggregations");
    const config: StreamJobConfig = {
      name,
      model,
      source,
      schema,
      trigger,
      select,
      sinks,
      deadLetter,
      aggregations,
      checkpoint,
      predictionLog: this.boolean(doc.predictionLog, "predictionLog", false),
    };
    if (doc.join !== undefined) {
      config.join = this.join(doc.join, "join", name);
      if (schema.key === undefined) {
        throw this.fail("schema.key", "is required when a join is configured: name the field predictions and outcomes are matched on");
      }
    }
    return config;
  }

  // --- sources and sinks -------------------------------------------------------------------------------------

  private source(raw: unknown, field: string, durableDefault: string): SourceSpec {
    const kind = this.kindOf(raw, field, ["folder", "nats"] as const);
    if (kind === "folder") {
      const spec = this.mapping(raw, field, FOLDER_SOURCE_KEYS, "a folder source");
      const folder: FolderSourceSpec = {
        kind,
        path: this.path(spec.path, join(field, "path")),
        maxFilesPerTrigger: this.integer(spec.maxFilesPerTrigger, join(field, "maxFilesPerTrigger"), 1, DEFAULT_MAX_FILES_PER_TRIGGER),
        recursive: this.boolean(spec.recursive, join(field, "recursive"), false),
      };
      if (spec.format !== undefined) folder.format = this.oneOf(spec.format, join(field, "format"), ["csv", "jsonl", "parquet"] as const);
      return folder;
    }
    const spec = this.mapping(raw, field, NATS_SOURCE_KEYS, "a nats source");
    const nats: NatsSourceSpec = {
      kind,
      servers: this.servers(spec.servers, join(field, "servers")),
      stream: this.natsName(spec.stream, join(field, "stream")),
      durable: spec.durable === undefined ? durableDefault : this.natsName(spec.durable, join(field, "durable")),
      maxMessages: this.integer(spec.maxMessages, join(field, "maxMessages"), 1, DEFAULT_MAX_MESSAGES),
      ackWaitMs: this.duration(spec.ackWaitMs, join(field, "ackWaitMs"), DEFAULT_ACK_WAIT_MS, { positive: true }),
      deliverPolicy: spec.deliverPolicy === undefined ? "all" : this.oneOf(spec.deliverPolicy, join(field, "deliverPolicy"), ["all", "new"] as const),
      createStream: this.boolean(spec.createStream, join(field, "createStream"), false),
    };
    if (spec.subject !== undefined) nats.subject = this.subject(spec.subject, join(field, "subject"), true);
    if (nats.createStream && nats.subject === undefined) {
      throw this.fail(join(field, "subject"), "is required with createStream: true (the created stream captures this subject)");
    }
    return nats;
  }

  private sink(raw: unknown, field: string): SinkSpec {
    const kind = this.kindOf(raw, field, ["sqlite", "postgres", "nats", "jsonl", "parquet"] as const);
    const spec = this.mapping(raw, field, SINK_KEYS[kind], `a ${kind} sink`);
    switch (kind) {
      case "sqlite": {
        const sqlite: SqliteSinkSpec = { kind, table: this.tableName(spec.table, join(field, "table")) };
        if (spec.path !== undefined) sqlite.path = this.path(spec.path, join(field, "path"));
        return sqlite;
      }
      case "postgres": {
        const postgres: PostgresSinkSpec = { kind, table: this.tableName(spec.table, join(field, "table")) };
        if (spec.url !== undefined) {
          const url = this.requiredString(spec.url, join(field, "url"));
          if (!/^postgres(ql)?:\/\//i.test(url)) {
            throw this.fail(join(field, "url"), "must be a postgres:// or postgresql:// URL (leave it out to use the metadata store)");
          }
          postgres.url = url;
        }
        return postgres;
      }
      case "nats": {
        const nats: NatsSinkSpec = {
          kind,
          servers: this.servers(spec.servers, join(field, "servers")),
          subject: this.subject(spec.subject, join(field, "subject"), false),
        };
        if (spec.createStream !== undefined) nats.createStream = this.natsName(spec.createStream, join(field, "createStream"));
        return nats;
      }
      case "jsonl":
      case "parquet":
        return { kind, path: this.path(spec.path, join(field, "path")) };
    }
  }

  // --- schema --------------------------------------------------------------------------------------------------

  private schema(raw: unknown, field: string, allowFromModel: boolean): SchemaSpec {
    const spec = this.mapping(raw, field, SCHEMA_KEYS, "a schema");
    const fromModel = this.boolean(spec.fromModel, join(field, "fromModel"), false);
    if (fromModel && !allowFromModel) {
      throw this.fail(join(field, "fromModel"), "is not allowed here: the outcomes stream is not scored, list its fields instead");
    }
    const fields = spec.fields === undefined ? [] : this.fields(spec.fields, join(field, "fields"));
    if (fields.length === 0 && !fromModel) {
      throw this.fail(join(field, "fields"), "must declare at least one field (or set fromModel: true to use the model's columns)");
    }
    const schema: SchemaSpec = {
      fields: fields.map((f) => ({ name: f.name, type: f.type, nullable: f.nullable ?? true })),
      fromModel,
      extra: spec.extra === undefined ? "drop" : this.oneOf(spec.extra, join(field, "extra"), ["drop", "reject"] as const),
    };
    const byName = new Map(fields.map((f, index) => [f.name, { ...f, index }]));
    for (const role of ["key", "eventTime"] as const) {
      if (spec[role] === undefined) continue;
      const roleField = join(field, role);
      const name = this.requiredString(spec[role], roleField);
      const declared = byName.get(name);
      if (declared === undefined) {
        const known = fields.length === 0 ? "none declared" : fields.map((f) => f.name).join(", ");
        throw this.fail(roleField, `must name a field listed in ${join(field, "fields")} (the model's columns are features, not ${role === "key" ? "keys" : "event times"}), got "${name}"; fields: ${known}`);
      }
      if (role === "eventTime" && declared.type !== "timestamp") {
        throw this.fail(roleField, `must name a field of type timestamp, but "${name}" is ${declared.type}`);
      }
      if (declared.nullable === true) {
        throw this.fail(join(declared.at, "nullable"), `must be false: the ${role} field "${name}" cannot be null`);
      }
      (schema.fields[declared.index] as FieldSpec).nullable = false;
      schema[role] = name;
    }
    return schema;
  }

  /** Fields as a list of `{name, type, nullable?}` or a mapping `name: type` / `name: {type, nullable?}`. */
  private fields(raw: unknown, field: string): DeclaredField[] {
    const out: DeclaredField[] = [];
    const seen = new Set<string>();
    const add = (name: string, type: FieldType, nullable: boolean | undefined, at: string): void => {
      if (seen.has(name)) throw this.fail(at, `declares field "${name}" twice: field names must be unique`);
      if (name === "__proto__") throw this.fail(at, `cannot be named "__proto__"`);
      seen.add(name);
      out.push({ name, type, nullable, at });
    };
    if (Array.isArray(raw)) {
      raw.forEach((item, index) => {
        const at = `${field}[${index}]`;
        const spec = this.mapping(item, at, FIELD_KEYS, "a field ({name, type, nullable?})");
        const name = this.requiredString(spec.name, join(at, "name"));
        const type = this.fieldType(spec.type, join(at, "type"));
        add(name, type, spec.nullable === undefined ? undefined : this.boolean(spec.nullable, join(at, "nullable"), true), at);
      });
      return out;
    }
    if (!isRecord(raw)) {
      throw this.fail(field, `must be a list of {name, type, nullable?} or a mapping of name to type, got ${describeValue(raw)}`);
    }
    for (const [name, value] of Object.entries(raw)) {
      const at = `${field}.${name}`;
      if (name.trim() === "") throw this.fail(at, "a field name cannot be empty");
      if (isRecord(value)) {
        const spec = this.mapping(value, at, ["type", "nullable"], "a field ({type, nullable?})");
        const nullable = spec.nullable === undefined ? undefined : this.boolean(spec.nullable, join(at, "nullable"), true);
        add(name, this.fieldType(spec.type, join(at, "type")), nullable, at);
      } else {
        add(name, this.fieldType(value, at), undefined, at);
      }
    }
    return out;
  }

  private fieldType(raw: unknown, field: string): FieldType {
    return this.oneOf(raw, field, FIELD_TYPES);
  }

  /** A list of field names of `schema` (any name when the model's columns are added at start). */
  private fieldNames(raw: unknown, field: string, schema: SchemaSpec): string[] {
    const names = this.stringList(raw, field);
    const declared = new Set(schema.fields.map((f) => f.name));
    names.forEach((name, index) => {
      if (!declared.has(name) && !schema.fromModel) {
        throw this.fail(`${field}[${index}]`, `"${name}" is not a schema field; fields: ${[...declared].join(", ")}`);
      }
    });
    return names;
  }

  // --- trigger and operators -----------------------------------------------------------------------------------

  private trigger(raw: unknown, field: string): TriggerSpec {
    const forms = "availableNow, once, { processingTime: 1s } or { kind: processingTime, intervalMs: 1s }";
    if (typeof raw === "string") {
      const text = this.expand(raw, field).trim();
      if (text === "availableNow" || text === "once") return { kind: text };
      if (text === "processingTime") return defaultTrigger();
      throw this.fail(field, `must be one of ${forms}, got ${describeValue(raw)}`);
    }
    if (!isRecord(raw)) throw this.fail(field, `must be one of ${forms}, got ${describeValue(raw)}`);
    if ("processingTime" in raw) {
      this.mapping(raw, field, ["processingTime"], "a trigger");
      return { kind: "processingTime", intervalMs: this.duration(raw.processingTime, join(field, "processingTime"), DEFAULT_TRIGGER_INTERVAL_MS) };
    }
    const spec = this.mapping(raw, field, TRIGGER_KEYS, "a trigger");
    const kind = this.oneOf(spec.kind, join(field, "kind"), ["processingTime", "availableNow", "once"] as const);
    if (kind !== "processingTime") {
      if (spec.intervalMs !== undefined) throw this.fail(join(field, "intervalMs"), `is only for kind processingTime, not ${kind}`);
      return { kind };
    }
    return { kind, intervalMs: this.duration(spec.intervalMs, join(field, "intervalMs"), DEFAULT_TRIGGER_INTERVAL_MS) };
  }

  private aggregations(raw: unknown, field: string): AggregationSpec[] {
    const names = new Set<string>();
    return this.list(raw, field).map((item, index) => {
      const at = `${field}[${index}]`;
      const spec = this.mapping(item, at, AGGREGATION_KEYS, "an aggregation");
      const name = this.requiredString(spec.name, join(at, "name"));
      if (!JOB_NAME_PATTERN.test(name)) throw this.fail(join(at, "name"), `must use only letters, digits, _, . and -, got ${describeValue(name)}`);
      if (names.has(name)) throw this.fail(join(at, "name"), `"${name}" is used by another aggregation: names must be unique`);
      names.add(name);
      if (spec.window === undefined) throw this.fail(join(at, "window"), "is required: batch, or { kind: tumbling, sizeMs: 1m } or { kind: sliding, sizeMs: 10m, slideMs: 1m }");
      const window = this.window(spec.window, join(at, "window"));
      const groupBy = spec.groupBy === undefined ? [] : this.stringList(spec.groupBy, join(at, "groupBy"));
      const columns = new Map<string, string>();
      groupBy.forEach((path, i) => {
        this.fieldPath(path, `${join(at, "groupBy")}[${i}]`);
        if (columns.has(path)) throw this.fail(`${join(at, "groupBy")}[${i}]`, `groups by "${path}" twice`);
        columns.set(path, `${join(at, "groupBy")}[${i}]`);
      });
      if (spec.metrics === undefined) throw this.fail(join(at, "metrics"), "is required: a list of at least one {fn, field?, as?}");
      const metricList = this.list(spec.metrics, join(at, "metrics"));
      if (metricList.length === 0) throw this.fail(join(at, "metrics"), "must list at least one metric {fn, field?, as?}");
      const metrics = metricList.map((m, i) => {
        const metricField = `${join(at, "metrics")}[${i}]`;
        const metric = this.metric(m, metricField);
        const column = metricColumnName(metric);
        const clash = columns.get(column);
        if (clash !== undefined) {
          throw this.fail(metricField, `output column "${column}" is already produced by ${clash}: set a different "as"`);
        }
        columns.set(column, metricField);
        return metric;
      });
      if (spec.sink === undefined) throw this.fail(join(at, "sink"), "is required: where the aggregate rows go");
      return {
        name,
        window,
        watermarkMs: this.duration(spec.watermarkMs, join(at, "watermarkMs"), 0),
        groupBy,
        metrics,
        sink: this.sink(spec.sink, join(at, "sink")),
      };
    });
  }

  private window(raw: unknown, field: string): WindowSpec {
    if (typeof raw === "string" && this.expand(raw, field).trim() === "batch") return { kind: "batch" };
    const spec = this.mapping(raw, field, WINDOW_KEYS, "a window ({kind: batch|tumbling|sliding, sizeMs?, slideMs?})");
    const kind = this.oneOf(spec.kind, join(field, "kind"), ["batch", "tumbling", "sliding"] as const);
    if (kind === "batch") {
      for (const key of ["sizeMs", "slideMs"] as const) {
        if (spec[key] !== undefined) throw this.fail(join(field, key), "is not taken by a batch window (it is one micro-batch)");
      }
      return { kind };
    }
    if (spec.sizeMs === undefined) throw this.fail(join(field, "sizeMs"), `is required for a ${kind} window: ${DURATION_HINT}, above 0`);
    const sizeMs = this.duration(spec.sizeMs, join(field, "sizeMs"), 0, { positive: true });
    if (kind === "tumbling") {
      if (spec.slideMs !== undefined) throw this.fail(join(field, "slideMs"), "is not taken by a tumbling window (use kind: sliding)");
      return { kind, sizeMs };
    }
    if (spec.slideMs === undefined) throw this.fail(join(field, "slideMs"), "is required for a sliding window: above 0 and at most sizeMs");
    const slideMs = this.duration(spec.slideMs, join(field, "slideMs"), 0, { positive: true });
    if (slideMs > sizeMs) throw this.fail(join(field, "slideMs"), `must be at most sizeMs (${sizeMs} ms), got ${slideMs} ms`);
    return { kind, sizeMs, slideMs };
  }

  private metric(raw: unknown, field: string): AggregateMetric {
    const spec = this.mapping(raw, field, METRIC_KEYS, "a metric ({fn, field?, as?})");
    const fn = this.oneOf(spec.fn, join(field, "fn"), METRIC_FNS);
    const metric: AggregateMetric = { fn };
    if (fn === "count") {
      if (spec.field !== undefined) throw this.fail(join(field, "field"), "is not taken by count (it counts records)");
    } else {
      if (spec.field === undefined) throw this.fail(join(field, "field"), `is required for ${fn}: the field path to aggregate, e.g. probabilities[1]`);
      metric.field = this.fieldPath(this.requiredString(spec.field, join(field, "field")), join(field, "field"));
    }
    // Left unset when not given: the aggregation derives the default name itself (metricColumnName).
    if (spec.as !== undefined) metric.as = this.requiredString(spec.as, join(field, "as"));
    return metric;
  }

  private join(raw: unknown, field: string, name: string): JoinSpec {
    const spec = this.mapping(raw, field, JOIN_KEYS, "a join");
    for (const key of ["source", "schema", "withinMs", "sink"] as const) {
      if (spec[key] === undefined) throw this.fail(join(field, key), "is required for a join");
    }
    const source = this.source(spec.source, join(field, "source"), defaultDurable(name, "-join"));
    const schema = this.schema(spec.schema, join(field, "schema"), false);
    if (schema.key === undefined) {
      throw this.fail(join(field, "schema.key"), "is required: outcomes are matched to predictions on this field");
    }
    const out: JoinSpec = {
      source,
      schema,
      withinMs: this.duration(spec.withinMs, join(field, "withinMs"), 0, { positive: true }),
      watermarkMs: this.duration(spec.watermarkMs, join(field, "watermarkMs"), 0),
      type: spec.type === undefined ? "inner" : this.oneOf(spec.type, join(field, "type"), ["inner", "leftOuter"] as const),
      maxStateRecords: this.integer(spec.maxStateRecords, join(field, "maxStateRecords"), 1, DEFAULT_MAX_STATE_RECORDS),
      sink: this.sink(spec.sink, join(field, "sink")),
    };
    if (spec.feedback !== undefined) {
      const feedback = this.mapping(spec.feedback, join(field, "feedback"), ["actual"], "feedback ({actual})");
      const actualField = join(field, "feedback.actual");
      const actual = this.requiredString(feedback.actual, actualField);
      if (!schema.fields.some((f) => f.name === actual)) {
        throw this.fail(actualField, `"${actual}" is not a field of join.schema; fields: ${schema.fields.map((f) => f.name).join(", ")}`);
      }
      out.feedback = { actual };
    }
    return out;
  }

  // --- scalars -------------------------------------------------------------------------------------------------

  private fail(field: string, what: string): MlshipError {
    return new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `${this.where}: ${field === "" ? "the document" : field} ${what}`, { field: field === "" ? "config" : field });
  }

  /** A mapping whose keys are all in `allowed`; an unknown key is refused with the allowed ones (and a guess). */
  private mapping(raw: unknown, field: string, allowed: readonly string[], what: string): Record<string, unknown> {
    if (!isRecord(raw)) throw this.fail(field, `must be ${what} (a mapping), got ${describeValue(raw)}`);
    for (const key of Object.keys(raw)) {
      if (allowed.includes(key)) continue;
      const guess = allowed
        .map((candidate) => ({ candidate, distance: editDistance(key, candidate) }))
        .filter((c) => c.distance <= Math.max(1, Math.floor(c.candidate.length / 4)))
        .sort((a, b) => a.distance - b.distance)[0];
      const hint = guess === undefined ? "" : ` (did you mean "${guess.candidate}"?)`;
      throw this.fail(join(field, key), `is not a known key${hint}; allowed keys: ${allowed.join(", ")}`);
    }
    return raw;
  }

  /** Reads `kind` of a mapping before its keys are checked (the allowed keys depend on it). */
  private kindOf<const K extends string>(raw: unknown, field: string, kinds: readonly K[]): K {
    if (!isRecord(raw)) throw this.fail(field, `must be a mapping with kind: ${kinds.join(" | ")}, got ${describeValue(raw)}`);
    if (raw.kind === undefined) throw this.fail(join(field, "kind"), `is required: one of ${kinds.join(", ")}`);
    return this.oneOf(raw.kind, join(field, "kind"), kinds);
  }

  private list(raw: unknown, field: string): unknown[] {
    if (!Array.isArray(raw)) throw this.fail(field, `must be a list, got ${describeValue(raw)}`);
    return raw;
  }

  /** A list of non-empty strings without repeats; a single string is a list of one. */
  private stringList(raw: unknown, field: string): string[] {
    const items = typeof raw === "string" ? [raw] : this.list(raw, field);
    const out: string[] = [];
    items.forEach((item, index) => {
      const at = typeof raw === "string" ? field : `${field}[${index}]`;
      const text = this.requiredString(item, at);
      if (out.includes(text)) throw this.fail(at, `repeats "${text}"`);
      out.push(text);
    });
    return out;
  }

  private requiredString(raw: unknown, field: string): string {
    if (raw === undefined) throw this.fail(field, "is required");
    if (typeof raw !== "string") throw this.fail(field, `must be a text, got ${describeValue(raw)}`);
    const text = this.expand(raw, field);
    if (text.trim() === "") throw this.fail(field, "must not be empty");
    return text;
  }

  private oneOf<const T extends string>(raw: unknown, field: string, allowed: readonly T[]): T {
    if (raw === undefined) throw this.fail(field, `is required: one of ${allowed.join(", ")}`);
    const text = typeof raw === "string" ? this.expand(raw, field) : raw;
    if (typeof text === "string" && (allowed as readonly string[]).includes(text)) return text as T;
    throw this.fail(field, `must be one of ${allowed.join(", ")}, got ${describeValue(raw)}`);
  }

  /**
   * The text a `${VAR}` reference in a numeric or boolean key expands to, or undefined when the value holds none
   * (a plain quoted `"10"` stays a text and is refused: YAML writes numbers without quotes).
   */
  private expandedScalar(raw: unknown, field: string): string | undefined {
    return typeof raw === "string" && raw.includes("${") ? this.expand(raw, field).trim() : undefined;
  }

  private integer(raw: unknown, field: string, min: number, fallback: number): number {
    if (raw === undefined) return fallback;
    const expanded = this.expandedScalar(raw, field);
    const value = expanded ?? raw;
    const number = expanded !== undefined && /^[+-]?\d+$/.test(expanded) ? Number(expanded) : value;
    if (typeof number !== "number" || !Number.isSafeInteger(number) || number < min) {
      throw this.fail(field, `must be an integer >= ${min}, got ${describeValue(value)}`);
    }
    return number;
  }

  private boolean(raw: unknown, field: string, fallback: boolean): boolean {
    if (raw === undefined) return fallback;
    const expanded = this.expandedScalar(raw, field);
    if (raw === true || expanded === "true") return true;
    if (raw === false || expanded === "false") return false;
    throw this.fail(field, `must be true or false, got ${describeValue(expanded ?? raw)}`);
  }

  private duration(raw: unknown, field: string, fallback: number, options: { positive?: boolean } = {}): number {
    if (raw === undefined) return fallback;
    const value = typeof raw === "string" ? this.expand(raw, field) : raw;
    let ms: number;
    try {
      ms = parseDurationMs(value, field);
    } catch {
      throw this.fail(field, `must be ${DURATION_HINT}, got ${describeValue(value)}`);
    }
    if (options.positive === true && ms <= 0) throw this.fail(field, `must be above 0 (${DURATION_HINT}), got ${describeValue(value)}`);
    return ms;
  }

  /** A field path (`label`, `probabilities[1]`) whose syntax the aggregation accepts; the prefix names this file. */
  private fieldPath(text: string, field: string): string {
    try {
      compileFieldPath(text, field);
    } catch (error) {
      throw this.fail(field, `is not a valid field path (${(error as Error).message})`);
    }
    return text;
  }

  /** An absolute path: a relative one resolves against the config file's folder. */
  private path(raw: unknown, field: string): string {
    return path.resolve(this.options.baseDir, this.requiredString(raw, field));
  }

  private tableName(raw: unknown, field: string): string {
    const table = this.requiredString(raw, field);
    if (!TABLE_NAME_PATTERN.test(table)) {
      throw this.fail(field, `"${table}" is not a valid table name: use lower-case letters, digits and _, starting with a letter or _, at most 63 characters`);
    }
    return table;
  }

  /** Comma-separated server URLs; a list of them is joined with commas. */
  private servers(raw: unknown, field: string): string {
    if (raw === undefined) return DEFAULT_NATS_SERVERS;
    const entries = Array.isArray(raw)
      ? raw.map((item, index) => this.requiredString(item, `${field}[${index}]`))
      : this.requiredString(raw, field).split(",").map((s) => s.trim());
    for (const entry of entries) {
      const scheme = /^([a-z]+):\/\//i.exec(entry)?.[1];
      if (entry === "" || /\s/.test(entry) || (scheme !== undefined && !["nats", "tls", "ws", "wss"].includes(scheme.toLowerCase()))) {
        throw this.fail(field, `must be NATS server URLs (nats://host:port, comma-separated), got ${describeValue(entry)}`);
      }
    }
    if (entries.length === 0) throw this.fail(field, "must list at least one NATS server URL");
    return entries.join(",");
  }

  private natsName(raw: unknown, field: string): string {
    const name = this.requiredString(raw, field);
    if (!NATS_NAME_PATTERN.test(name)) {
      throw this.fail(field, `"${name}" is not a valid JetStream name: no spaces, ".", "*", ">", "/" or "\\"`);
    }
    return name;
  }

  /** A NATS subject: dot-separated non-empty tokens; wildcards (`*` tokens, a last `>`) only for subscriptions. */
  private subject(raw: unknown, field: string, wildcards: boolean): string {
    const subject = this.requiredString(raw, field);
    const tokens = subject.split(".");
    const bad = tokens.some((token, index) => {
      if (token === "" || /\s/.test(token)) return true;
      if (token === "*" || (token === ">" && index === tokens.length - 1)) return !wildcards;
      return token.includes("*") || token.includes(">");
    });
    if (bad) {
      const rule = wildcards ? "dot-separated tokens, * for one token, > as the last" : "dot-separated tokens without wildcards (a subject to publish to)";
      throw this.fail(field, `"${subject}" is not a valid NATS subject: ${rule}`);
    }
    return subject;
  }

  /** Expands `${VAR}` and `${VAR:-default}` (default when unset or empty); `$${` is a literal `${`. */
  private expand(text: string, field: string): string {
    if (!text.includes("${")) return text;
    let out = "";
    let offset = 0;
    for (;;) {
      const start = text.indexOf("${", offset);
      if (start < 0) return out + text.slice(offset);
      if (start > offset && text[start - 1] === "$") {
        out += `${text.slice(offset, start - 1)}\${`;
        offset = start + 2;
        continue;
      }
      out += text.slice(offset, start);
      const end = text.indexOf("}", start + 2);
      if (end < 0) throw this.fail(field, `has "\${" without a closing "}" (write $\${ for a literal \${)`);
      const match = ENV_NAME_PATTERN.exec(text.slice(start + 2, end));
      if (match === null) {
        throw this.fail(field, `has "${text.slice(start, end + 1)}": write \${NAME} or \${NAME:-default}, NAME being letters, digits and _`);
      }
      const variable = match[1] as string;
      const fallback = match[2];
      const value = this.env[variable];
      if (value !== undefined && !(fallback !== undefined && value === "")) {
        out += value;
      } else if (fallback !== undefined) {
        out += fallback;
      } else {
        throw this.fail(field, `uses environment variable ${variable}, which is not set (write \${${variable}:-default} to give a default)`);
      }
      offset = end + 1;
    }
  }
}

/** A field as written: `nullable` undefined when not given (key and event-time fields default to false). */
interface DeclaredField {
  name: string;
  type: FieldType;
  nullable: boolean | undefined;
  /** Its path, for errors: `schema.fields[2]` or `schema.fields.id`. */
  at: string;
}

function defaultTrigger(): TriggerSpec {
  return { kind: "processingTime", intervalMs: DEFAULT_TRIGGER_INTERVAL_MS };
}

/** `mlship-<name><suffix>`; `.` is not allowed in a consumer name, so it becomes `_`. */
function defaultDurable(name: string, suffix: string): string {
  return `mlship-${name.replace(/\./g, "_")}${suffix}`;
}
