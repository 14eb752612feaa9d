import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MlshipError } from "../../src/core/index.js";
import {
  DEFAULT_NATS_SERVERS,
  loadStreamConfig,
  metricColumnName,
  parseDurationMs,
  parseStreamConfig,
  type StreamConfigOptions,
} from "../../src/stream/config.js";
import type { StreamJobConfig } from "../../src/stream/types.js";

const BASE_DIR = path.resolve("/jobs/scoring");
const HOME = path.resolve("/srv/mlship-home");
const OPTIONS: StreamConfigOptions = { baseDir: BASE_DIR, home: HOME, env: {} };

/** The smallest valid job; tests copy it and change one thing. */
function minimal(): Record<string, unknown> {
  return {
    name: "scorer",
    model: "breast-cancer@production",
    source: { kind: "folder", path: "incoming" },
    schema: { fields: [{ name: "id", type: "string" }], fromModel: true, key: "id" },
    sinks: [{ kind: "sqlite", table: "stream_predictions" }],
  };
}

function parse(raw: unknown, options: Partial<StreamConfigOptions> = {}): StreamJobConfig {
  return parseStreamConfig(raw, { ...OPTIONS, ...options });
}

/** Parses `raw` expecting a CONFIG_INVALID on `field` whose message matches `message`; returns the error. */
function refused(raw: unknown, field: string, message: RegExp, options: Partial<StreamConfigOptions> = {}): MlshipError {
  let caught: unknown;
  try {
    parse(raw, options);
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected a refusal at ${field}`).toBeInstanceOf(MlshipError);
  const error = caught as MlshipError;
  expect(error.code).toBe("MLSHIP_ERR_CONFIG_INVALID");
  expect(error.field).toBe(field);
  expect(error.message).toMatch(message);
  return error;
}

function withChange(change: (doc: Record<string, unknown>) => void): Record<string, unknown> {
  const doc = minimal();
  change(doc);
  return doc;
}

describe("parseStreamConfig: defaults", () => {
  it("fills every default of a minimal folder job", () => {
    const config = parse(minimal());
    expect(config).toEqual({
      name: "scorer",
      model: "breast-cancer@production",
      source: { kind: "folder", path: path.join(BASE_DIR, "incoming"), maxFilesPerTrigger: 1, recursive: false },
      schema: { fields: [{ name: "id", type: "string", nullable: false }], fromModel: true, key: "id", extra: "drop" },
      trigger: { kind: "processingTime", intervalMs: 1000 },
      select: [],
      sinks: [{ kind: "sqlite", table: "stream_predictions" }],
      deadLetter: { kind: "jsonl", path: path.join(HOME, "streams", "scorer", "dead-letter") },
      aggregations: [],
      checkpoint: path.join(HOME, "streams", "scorer"),
      predictionLog: false,
    } satisfies StreamJobConfig);
    expect(config.join).toBeUndefined();
    expect("format" in config.source).toBe(false);
  });

  it("fills the defaults of a NATS source", () => {
    const config = parse(withChange((doc) => {
      doc.name = "orders.v2";
      doc.source = { kind: "nats", stream: "ORDERS" };
    }));
    expect(config.source).toEqual({
      kind: "nats",
      servers: DEFAULT_NATS_SERVERS,
      stream: "ORDERS",
      durable: "mlship-orders_v2",
      maxMessages: 1000,
      ackWaitMs: 30_000,
      deliverPolicy: "all",
      createStream: false,
    });
    expect(DEFAULT_NATS_SERVERS).toBe("nats://127.0.0.1:4222");
  });

  it("keeps every value given explicitly", () => {
    const config = parse(withChange((doc) => {
      doc.source = {
        kind: "nats", servers: ["nats://a:4222", "nats://b:4222"], stream: "ORDERS", subject: "orders.>", durable: "scorers",
        maxMessages: 250, ackWaitMs: "1m", deliverPolicy: "new", createStream: true,
      };
      doc.trigger = "availableNow";
      doc.select = ["id"];
      doc.checkpoint = "state/cp";
      doc.predictionLog = true;
      doc.deadLetter = { kind: "parquet", path: "/var/dead" };
    }));
    expect(config.source).toEqual({
      kind: "nats", servers: "nats://a:4222,nats://b:4222", stream: "ORDERS", subject: "orders.>", durable: "scorers",
      maxMessages: 250, ackWaitMs: 60_000, deliverPolicy: "new", createStream: true,
    });
    expect(config.trigger).toEqual({ kind: "availableNow" });
    expect(config.select).toEqual(["id"]);
    expect(config.checkpoint).toBe(path.join(BASE_DIR, "state", "cp"));
    expect(config.predictionLog).toBe(true);
    expect(config.deadLetter).toEqual({ kind: "parquet", path: path.resolve("/var/dead") });
  });

  it("places the default dead-letter folder inside an explicit checkpoint", () => {
    const config = parse(withChange((doc) => { doc.checkpoint = "/data/cp"; }));
    expect(config.deadLetter).toEqual({ kind: "jsonl", path: path.join(path.resolve("/data/cp"), "dead-letter") });
  });

  it("reads a folder source's options", () => {
    const config = parse(withChange((doc) => {
      doc.source = { kind: "folder", path: "../drop", format: "parquet", maxFilesPerTrigger: 8, recursive: true };
    }));
    expect(config.source).toEqual({ kind: "folder", path: path.resolve(BASE_DIR, "../drop"), format: "parquet", maxFilesPerTrigger: 8, recursive: true });
  });
});

describe("parseStreamConfig: sinks", () => {
  it("accepts every sink kind and resolves relative paths", () => {
    const config = parse(withChange((doc) => {
      doc.sinks = [
        { kind: "sqlite", table: "preds", path: "out/preds.db" },
        { kind: "postgres", table: "preds", url: "postgresql://u@db/ml" },
        { kind: "postgres", table: "preds_store" },
        { kind: "nats", subject: "preds.out", createStream: "PREDS" },
        { kind: "jsonl", path: "out/jsonl" },
        { kind: "parquet", path: "/abs/parquet" },
      ];
    }));
    expect(config.sinks).toEqual([
      { kind: "sqlite", table: "preds", path: path.join(BASE_DIR, "out", "preds.db") },
      { kind: "postgres", table: "preds", url: "postgresql://u@db/ml" },
      { kind: "postgres", table: "preds_store" },
      { kind: "nats", servers: DEFAULT_NATS_SERVERS, subject: "preds.out", createStream: "PREDS" },
      { kind: "jsonl", path: path.join(BASE_DIR, "out", "jsonl") },
      { kind: "parquet", path: path.resolve("/abs/parquet") },
    ]);
  });

  it("accepts a single sink: mapping", () => {
    const config = parse(withChange((doc) => {
      delete doc.sinks;
      doc.sink = { kind: "jsonl", path: "out" };
    }));
    expect(config.sinks).toEqual([{ kind: "jsonl", path: path.join(BASE_DIR, "out") }]);
  });

  it("refuses bad sinks naming the field", () => {
    refused(withChange((doc) => { delete doc.sinks; }), "sinks", /is required/);
    refused(withChange((doc) => { doc.sinks = []; }), "sinks", /at least one sink/);
    refused(withChange((doc) => { doc.sinks = { kind: "jsonl", path: "x" }; }), "sinks", /must be a list, got a mapping/);
    refused(withChange((doc) => { doc.sink = { kind: "jsonl", path: "x" }; }), "sink", /cannot be given together with sinks/);
    refused(withChange((doc) => { doc.sinks = [{ kind: "jsonl", path: "x" }, { kind: "sqlite", table: "Preds" }]; }), "sinks[1].table", /"Preds" is not a valid table name: use lower-case/);
    refused(withChange((doc) => { doc.sinks = [{ kind: "sqlite", table: "1preds" }]; }), "sinks[0].table", /not a valid table name/);
    refused(withChange((doc) => { doc.sinks = [{ kind: "sqlite", table: `t${"x".repeat(63)}` }]; }), "sinks[0].table", /at most 63/);
    refused(withChange((doc) => { doc.sinks = [{ kind: "sqlite" }]; }), "sinks[0].table", /is required/);
    refused(withChange((doc) => { doc.sinks = [{ kind: "kafka", topic: "x" }]; }), "sinks[0].kind", /one of sqlite, postgres, nats, jsonl, parquet, got string "kafka"/);
    refused(withChange((doc) => { doc.sinks = [{ table: "x" }]; }), "sinks[0].kind", /is required/);
    refused(withChange((doc) => { doc.sinks = ["sqlite"]; }), "sinks[0]", /must be a mapping with kind/);
    refused(withChange((doc) => { doc.sinks = [{ kind: "postgres", table: "t", url: "mysql://x" }]; }), "sinks[0].url", /postgres:\/\//);
    refused(withChange((doc) => { doc.sinks = [{ kind: "nats", subject: "preds.*" }]; }), "sinks[0].subject", /without wildcards/);
    refused(withChange((doc) => { doc.sinks = [{ kind: "nats", subject: "preds..out" }]; }), "sinks[0].subject", /not a valid NATS subject/);
    refused(withChange((doc) => { doc.sinks = [{ kind: "nats", subject: "p", createStream: "A.B" }]; }), "sinks[0].createStream", /not a valid JetStream name/);
    refused(withChange((doc) => { doc.sinks = [{ kind: "nats", subject: "p", servers: "http://x:80" }]; }), "sinks[0].servers", /NATS server URLs/);
    refused(withChange((doc) => { doc.sinks = [{ kind: "jsonl" }]; }), "sinks[0].path", /is required/);
    // Keys of another kind are unknown here.
    refused(withChange((doc) => { doc.sinks = [{ kind: "jsonl", path: "x", table: "t" }]; }), "sinks[0].table", /not a known key; allowed keys: kind, path/);
    refused(withChange((doc) => { doc.deadLetter = { kind: "sqlite", table: "Dead" }; }), "deadLetter.table", /not a valid table name/);
  });
});

describe("parseStreamConfig: unknown keys", () => {
  it("refuses an unknown key anywhere, naming it and listing the allowed keys", () => {
    const top = refused(withChange((doc) => { doc.sinkz = []; }), "sinkz", /is not a known key/);
    expect(top.message).toContain("allowed keys: name, model, source, schema, trigger, select, sinks, sink, deadLetter, aggregations, join, checkpoint, predictionLog");
    const typo = refused(withChange((doc) => { doc.source = { kind: "folder", path: "in", maxFilesPerTriger: 2 }; }), "source.maxFilesPerTriger", /did you mean "maxFilesPerTrigger"\?/);
    expect(typo.message).toContain("allowed keys: kind, path, format, maxFilesPerTrigger, recursive");
    refused(withChange((doc) => { doc.source = { kind: "nats", stream: "S", path: "x" }; }), "source.path", /allowed keys: kind, servers, stream/);
    refused(withChange((doc) => { doc.schema = { fields: [{ name: "id", type: "string", nulable: true }] }; }), "schema.fields[0].nulable", /did you mean "nullable"/);
    refused(withChange((doc) => { doc.schema = { fields: { id: "string" }, keys: "id" }; }), "schema.keys", /did you mean "key"/);
    refused(withChange((doc) => { doc.trigger = { kind: "once", every: 3 }; }), "trigger.every", /allowed keys: kind, intervalMs/);
    refused(withChange((doc) => { doc.trigger = { processingTime: "1s", kind: "processingTime" }; }), "trigger.kind", /allowed keys: processingTime/);
  });

  it("refuses a document that is not a mapping", () => {
    refused(["name"], "config", /the document must be the stream config \(a mapping\), got a list/);
    refused(null, "config", /got null/);
  });
});

describe("parseStreamConfig: name, model, source", () => {
  it("refuses a bad name or model", () => {
    refused(withChange((doc) => { delete doc.name; }), "name", /is required/);
    refused(withChange((doc) => { doc.name = "my job"; }), "name", /letters, digits, _, \. and -/);
    refused(withChange((doc) => { doc.name = 7; }), "name", /must be a text, got number 7/);
    // `..` would put the default checkpoint at <home>/streams/.., the home folder itself.
    refused(withChange((doc) => { doc.name = ".."; }), "name", /letters, digits/);
    expect(parse(withChange((doc) => { doc.name = "v1.2_scorer-eu"; })).checkpoint).toBe(path.join(HOME, "streams", "v1.2_scorer-eu"));
    refused(withChange((doc) => { delete doc.model; }), "model", /is required/);
    refused(withChange((doc) => { doc.model = ""; }), "model", /must not be empty/);
    refused(withChange((doc) => { doc.model = "breast cancer@prod"; }), "model", /is not valid \(model reference "breast cancer@prod"/);
    expect(parse(withChange((doc) => { doc.model = "models:/breast-cancer/3"; })).model).toBe("models:/breast-cancer/3");
  });

  it("refuses bad source values naming the field", () => {
    refused(withChange((doc) => { delete doc.source; }), "source", /is required/);
    refused(withChange((doc) => { doc.source = { kind: "s3" }; }), "source.kind", /one of folder, nats/);
    refused(withChange((doc) => { doc.source = { kind: "folder" }; }), "source.path", /is required/);
    refused(withChange((doc) => { doc.source = { kind: "folder", path: "in", format: "xlsx" }; }), "source.format", /one of csv, jsonl, parquet, got string "xlsx"/);
    refused(withChange((doc) => { doc.source = { kind: "folder", path: "in", maxFilesPerTrigger: 0 }; }), "source.maxFilesPerTrigger", /must be an integer >= 1, got number 0/);
    refused(withChange((doc) => { doc.source = { kind: "folder", path: "in", maxFilesPerTrigger: 1.5 }; }), "source.maxFilesPerTrigger", /integer >= 1/);
    refused(withChange((doc) => { doc.source = { kind: "folder", path: "in", maxFilesPerTrigger: "10" }; }), "source.maxFilesPerTrigger", /integer >= 1, got string "10"/);
    refused(withChange((doc) => { doc.source = { kind: "folder", path: "in", recursive: "yes" }; }), "source.recursive", /true or false/);
    refused(withChange((doc) => { doc.source = { kind: "folder", path: "in", recursive: "true" }; }), "source.recursive", /true or false, got string "true"/);
    refused(withChange((doc) => { doc.source = { kind: "nats" }; }), "source.stream", /is required/);
    refused(withChange((doc) => { doc.source = { kind: "nats", stream: "OR DERS" }; }), "source.stream", /not a valid JetStream name/);
    refused(withChange((doc) => { doc.source = { kind: "nats", stream: "S", durable: "a.b" }; }), "source.durable", /not a valid JetStream name/);
    refused(withChange((doc) => { doc.source = { kind: "nats", stream: "S", maxMessages: -5 }; }), "source.maxMessages", /integer >= 1/);
    refused(withChange((doc) => { doc.source = { kind: "nats", stream: "S", ackWaitMs: 0 }; }), "source.ackWaitMs", /above 0/);
    refused(withChange((doc) => { doc.source = { kind: "nats", stream: "S", ackWaitMs: "soon" }; }), "source.ackWaitMs", /duration/);
    refused(withChange((doc) => { doc.source = { kind: "nats", stream: "S", deliverPolicy: "last" }; }), "source.deliverPolicy", /one of all, new/);
    refused(withChange((doc) => { doc.source = { kind: "nats", stream: "S", subject: "a.>.b" }; }), "source.subject", /not a valid NATS subject/);
    refused(withChange((doc) => { doc.source = { kind: "nats", stream: "S", createStream: true }; }), "source.subject", /required with createStream/);
    refused(withChange((doc) => { doc.source = { kind: "nats", stream: "S", servers: "nats://a:1, " }; }), "source.servers", /NATS server URLs/);
  });

  it("accepts NATS subjects with wildcards for a source", () => {
    const config = parse(withChange((doc) => { doc.source = { kind: "nats", stream: "S", subject: "orders.*.eu.>" }; }));
    expect(config.source).toMatchObject({ subject: "orders.*.eu.>" });
  });
});

describe("parseStreamConfig: durations and triggers", () => {
  it("parseDurationMs reads numbers and duration texts", () => {
    expect(parseDurationMs(250, "f")).toBe(250);
    expect(parseDurationMs(0, "f")).toBe(0);
    expect(parseDurationMs("500ms", "f")).toBe(500);
    expect(parseDurationMs("10s", "f")).toBe(10_000);
    expect(parseDurationMs("1m", "f")).toBe(60_000);
    expect(parseDurationMs("2h", "f")).toBe(7_200_000);
    expect(parseDurationMs("1d", "f")).toBe(86_400_000);
    expect(parseDurationMs("1.5s", "f")).toBe(1500);
    expect(parseDurationMs("1m30s", "f")).toBe(90_000);
    expect(parseDurationMs(" 2 s ", "f")).toBe(2000);
    expect(parseDurationMs("750", "f")).toBe(750);
    expect(parseDurationMs(1.4, "f")).toBe(1);
  });

  it("parseDurationMs refuses what is not a duration, naming the field", () => {
    for (const bad of ["", "10 seconds", "s", "-1s", "1x", "1s2", -5, Number.NaN, Number.POSITIVE_INFINITY, true, null, {}, ["1s"]]) {
      let caught: unknown;
      try {
        parseDurationMs(bad, "trigger.intervalMs");
      } catch (error) {
        caught = error;
      }
      expect(caught, `value ${String(bad)}`).toMatchObject({ code: "MLSHIP_ERR_CONFIG_INVALID", field: "trigger.intervalMs" });
      expect((caught as Error).message).toMatch(/trigger\.intervalMs must be a duration/);
    }
  });

  it("reads every trigger form", () => {
    const trigger = (value: unknown): unknown => parse(withChange((doc) => { doc.trigger = value; })).trigger;
    expect(trigger({ processingTime: "5s" })).toEqual({ kind: "processingTime", intervalMs: 5000 });
    expect(trigger({ processingTime: 200 })).toEqual({ kind: "processingTime", intervalMs: 200 });
    expect(trigger({ processingTime: 0 })).toEqual({ kind: "processingTime", intervalMs: 0 });
    expect(trigger("availableNow")).toEqual({ kind: "availableNow" });
    expect(trigger("once")).toEqual({ kind: "once" });
    expect(trigger("processingTime")).toEqual({ kind: "processingTime", intervalMs: 1000 });
    expect(trigger({ kind: "processingTime", intervalMs: "2m" })).toEqual({ kind: "processingTime", intervalMs: 120_000 });
    expect(trigger({ kind: "processingTime" })).toEqual({ kind: "processingTime", intervalMs: 1000 });
    expect(trigger({ kind: "availableNow" })).toEqual({ kind: "availableNow" });
    expect(trigger({ kind: "once" })).toEqual({ kind: "once" });
  });

  it("refuses bad triggers", () => {
    refused(withChange((doc) => { doc.trigger = "continuous"; }), "trigger", /availableNow, once, \{ processingTime: 1s \}/);
    refused(withChange((doc) => { doc.trigger = 5; }), "trigger", /got number 5/);
    refused(withChange((doc) => { doc.trigger = { processingTime: "fast" }; }), "trigger.processingTime", /duration.*got string "fast"/);
    refused(withChange((doc) => { doc.trigger = { kind: "once", intervalMs: 5 }; }), "trigger.intervalMs", /only for kind processingTime/);
    refused(withChange((doc) => { doc.trigger = { kind: "sometimes" }; }), "trigger.kind", /one of processingTime, availableNow, once/);
    refused(withChange((doc) => { doc.trigger = { kind: "processingTime", intervalMs: -1 }; }), "trigger.intervalMs", /duration/);
  });
});

describe("parseStreamConfig: environment variables", () => {
  it("expands ${VAR} and ${VAR:-default} in strings, numbers and booleans", () => {
    const env = { NATS_URL: "nats://bus:4222", ORDERS: "ORDERS_EU", BATCH: "250", WAIT: "45s", LOG: "true", EMPTY: "" };
    const config = parse({
      ...minimal(),
      name: "scorer-${ORDERS}",
      source: {
        kind: "nats", servers: "${NATS_URL}", stream: "${ORDERS}", subject: "${SUBJECT:-orders.>}", maxMessages: "${BATCH}",
        ackWaitMs: "${WAIT}", durable: "d-${EMPTY:-fallback}",
      },
      sinks: [{ kind: "postgres", url: "postgres://app:${PG_PASSWORD:-secret}@db/ml", table: "preds" }],
      predictionLog: "${LOG}",
      checkpoint: "${CP_ROOT:-/var/lib/mlship}/cp",
    }, { env });
    expect(config.name).toBe("scorer-ORDERS_EU");
    expect(config.source).toMatchObject({
      servers: "nats://bus:4222", stream: "ORDERS_EU", subject: "orders.>", maxMessages: 250, ackWaitMs: 45_000, durable: "d-fallback",
    });
    expect(config.sinks[0]).toEqual({ kind: "postgres", url: "postgres://app:secret@db/ml", table: "preds" });
    expect(config.predictionLog).toBe(true);
    expect(config.checkpoint).toBe(path.resolve("/var/lib/mlship/cp"));
  });

  it("keeps an empty set variable for ${VAR} and writes $${ as a literal ${", () => {
    const config = parse(withChange((doc) => {
      doc.sinks = [{ kind: "postgres", url: "postgres://u:p$${x}${EMPTY}@h/db", table: "preds" }];
    }), { env: { EMPTY: "" } });
    expect(config.sinks[0]).toMatchObject({ url: "postgres://u:p${x}@h/db" });
  });

  it("reads process.env by default", () => {
    const variable = `MLSHIP_TEST_STREAM_${process.pid}`;
    process.env[variable] = "from-env";
    try {
      const config = parseStreamConfig(withChange((doc) => { doc.name = `\${${variable}}`; }), { baseDir: BASE_DIR, home: HOME });
      expect(config.name).toBe("from-env");
    } finally {
      delete process.env[variable];
    }
  });

  it("refuses an unset variable without default, naming it and the field", () => {
    const error = refused(withChange((doc) => { doc.sinks = [{ kind: "jsonl", path: "${OUT_DIR}/preds" }]; }), "sinks[0].path", /environment variable OUT_DIR, which is not set/);
    expect(error.message).toContain("${OUT_DIR:-default}");
    refused(withChange((doc) => { doc.source = { kind: "nats", stream: "S", maxMessages: "${BATCH}" }; }), "source.maxMessages", /BATCH/);
    refused(withChange((doc) => { doc.source = { kind: "nats", stream: "S", maxMessages: "${BATCH}" }; }), "source.maxMessages", /integer >= 1, got string "many"/, { env: { BATCH: "many" } });
    refused(withChange((doc) => { doc.name = "${oops"; }), "name", /without a closing/);
    refused(withChange((doc) => { doc.name = "${1BAD}"; }), "name", /write \$\{NAME\} or \$\{NAME:-default\}/);
  });
});

describe("parseStreamConfig: schema", () => {
  it("reads fields as a list or as a mapping", () => {
    const asList = parse(withChange((doc) => {
      doc.schema = {
        fields: [{ name: "id", type: "string" }, { name: "ts", type: "timestamp" }, { name: "mean radius", type: "double", nullable: false }],
        key: "id",
        eventTime: "ts",
        extra: "reject",
      };
    })).schema;
    expect(asList).toEqual({
      fields: [
        { name: "id", type: "string", nullable: false },
        { name: "ts", type: "timestamp", nullable: false },
        { name: "mean radius", type: "double", nullable: false },
      ],
      fromModel: false,
      key: "id",
      eventTime: "ts",
      extra: "reject",
    });
    const asMap = parse(withChange((doc) => {
      doc.schema = { fields: { "mean radius": "double", id: "string", note: { type: "string", nullable: true }, n: { type: "long", nullable: false } } };
    })).schema;
    expect(asMap).toEqual({
      fields: [
        { name: "mean radius", type: "double", nullable: true },
        { name: "id", type: "string", nullable: true },
        { name: "note", type: "string", nullable: true },
        { name: "n", type: "long", nullable: false },
      ],
      fromModel: false,
      extra: "drop",
    });
  });

  it("allows a schema made only of the model's columns", () => {
    expect(parse(withChange((doc) => { doc.schema = { fromModel: true }; })).schema).toEqual({ fields: [], fromModel: true, extra: "drop" });
  });

  it("accepts every field type", () => {
    const types = ["string", "double", "float", "integer", "long", "boolean", "timestamp"];
    const schema = parse(withChange((doc) => { doc.schema = { fields: types.map((type) => ({ name: `f_${type}`, type })) }; })).schema;
    expect(schema.fields.map((f) => f.type)).toEqual(types);
  });

  it("refuses bad schemas naming the field", () => {
    refused(withChange((doc) => { delete doc.schema; }), "schema", /is required.*fromModel: true/);
    refused(withChange((doc) => { doc.schema = { fields: [] }; }), "schema.fields", /at least one field.*fromModel/);
    refused(withChange((doc) => { doc.schema = {}; }), "schema.fields", /at least one field/);
    refused(withChange((doc) => { doc.schema = { fields: [{ name: "a", type: "decimal" }] }; }), "schema.fields[0].type", /one of string, double, float, integer, long, boolean, timestamp, got string "decimal"/);
    refused(withChange((doc) => { doc.schema = { fields: { a: "int" } }; }), "schema.fields.a", /one of string, double/);
    refused(withChange((doc) => { doc.schema = { fields: [{ name: "a", type: "string" }, { name: "a", type: "double" }] }; }), "schema.fields[1]", /declares field "a" twice/);
    refused(withChange((doc) => { doc.schema = { fields: [{ type: "string" }] }; }), "schema.fields[0].name", /is required/);
    refused(withChange((doc) => { doc.schema = { fields: "id:string" }; }), "schema.fields", /list of \{name, type, nullable\?\} or a mapping/);
    refused(withChange((doc) => { doc.schema = { fields: { a: "string" }, key: "id" }; }), "schema.key", /must name a field listed in schema.fields.*got "id"; fields: a/);
    // With fromModel the key still has to be declared: the model's columns are features.
    refused(withChange((doc) => { doc.schema = { fromModel: true, key: "id" }; }), "schema.key", /fields: none declared/);
    refused(withChange((doc) => { doc.schema = { fields: { ts: "string" }, eventTime: "ts" }; }), "schema.eventTime", /type timestamp, but "ts" is string/);
    refused(withChange((doc) => { doc.schema = { fields: { ts: "timestamp" }, eventTime: "when" }; }), "schema.eventTime", /got "when"/);
    refused(withChange((doc) => { doc.schema = { fields: [{ name: "id", type: "string", nullable: true }], key: "id" }; }), "schema.fields[0].nullable", /must be false: the key field "id"/);
    refused(withChange((doc) => { doc.schema = { fields: { ts: { type: "timestamp", nullable: true } }, eventTime: "ts" }; }), "schema.fields.ts.nullable", /eventTime field "ts" cannot be null/);
    refused(withChange((doc) => { doc.schema = { fields: { a: "string" }, extra: "keep" }; }), "schema.extra", /one of drop, reject/);
    refused(withChange((doc) => { doc.schema = { fields: { a: "string" }, fromModel: "yes" }; }), "schema.fromModel", /true or false/);
    refused(withChange((doc) => { doc.schema = { fields: [{ name: "a", type: "string", nullable: "no" }] }; }), "schema.fields[0].nullable", /true or false/);
  });

  it("checks select against the schema", () => {
    const declared = { fields: { id: "string", region: "string" }, key: "id" };
    expect(parse(withChange((doc) => { doc.schema = declared; doc.select = ["region"]; })).select).toEqual(["region"]);
    expect(parse(withChange((doc) => { doc.schema = declared; doc.select = "region"; })).select).toEqual(["region"]);
    refused(withChange((doc) => { doc.schema = declared; doc.select = ["region", "country"]; }), "select[1]", /"country" is not a schema field; fields: id, region/);
    refused(withChange((doc) => { doc.schema = declared; doc.select = ["region", "region"]; }), "select[1]", /repeats "region"/);
    refused(withChange((doc) => { doc.select = [3]; }), "select[0]", /must be a text/);
    // With fromModel any name may be one of the model's columns, known only at start.
    expect(parse(withChange((doc) => { doc.select = ["mean radius"]; })).select).toEqual(["mean radius"]);
  });
});

describe("parseStreamConfig: aggregations", () => {
  const byLabel = {
    name: "by_label",
    window: { kind: "tumbling", sizeMs: "1m" },
    groupBy: ["label"],
    metrics: [{ fn: "count" }, { fn: "mean", field: "probabilities[1]" }],
    sink: { kind: "sqlite", table: "by_label" },
  };

  it("reads an aggregation with defaults", () => {
    const config = parse(withChange((doc) => { doc.aggregations = [byLabel]; }));
    expect(config.aggregations).toEqual([{
      name: "by_label",
      window: { kind: "tumbling", sizeMs: 60_000 },
      watermarkMs: 0,
      groupBy: ["label"],
      metrics: [{ fn: "count" }, { fn: "mean", field: "probabilities[1]" }],
      sink: { kind: "sqlite", table: "by_label" },
    }]);
    expect(config.aggregations[0]?.metrics.map(metricColumnName)).toEqual(["count", "mean_probabilities_1"]);
  });

  it("reads every window kind", () => {
    const windowOf = (window: unknown): unknown => parse(withChange((doc) => { doc.aggregations = [{ ...byLabel, window }]; })).aggregations[0]?.window;
    expect(windowOf({ kind: "batch" })).toEqual({ kind: "batch" });
    expect(windowOf("batch")).toEqual({ kind: "batch" });
    expect(windowOf({ kind: "tumbling", sizeMs: 30_000 })).toEqual({ kind: "tumbling", sizeMs: 30_000 });
    expect(windowOf({ kind: "sliding", sizeMs: "10m", slideMs: "1m" })).toEqual({ kind: "sliding", sizeMs: 600_000, slideMs: 60_000 });
    expect(windowOf({ kind: "sliding", sizeMs: "1m", slideMs: "1m" })).toEqual({ kind: "sliding", sizeMs: 60_000, slideMs: 60_000 });
  });

  it("keeps watermark, groupBy as one text and metric names", () => {
    const aggregation = parse(withChange((doc) => {
      doc.aggregations = [{ ...byLabel, watermarkMs: "30s", groupBy: "label", metrics: [{ fn: "max", field: "mean radius", as: "largest" }, { fn: "sum", field: "x" }] }];
    })).aggregations[0];
    expect(aggregation).toMatchObject({ watermarkMs: 30_000, groupBy: ["label"], metrics: [{ fn: "max", field: "mean radius", as: "largest" }, { fn: "sum", field: "x" }] });
  });

  it("refuses bad aggregations naming the field", () => {
    const agg = (change: Record<string, unknown>): Record<string, unknown> => withChange((doc) => { doc.aggregations = [{ ...byLabel, ...change }]; });
    refused(withChange((doc) => { doc.aggregations = byLabel; }), "aggregations", /must be a list/);
    refused(withChange((doc) => { doc.aggregations = [byLabel, byLabel]; }), "aggregations[1].name", /"by_label" is used by another aggregation/);
    refused(agg({ name: "by label" }), "aggregations[0].name", /letters, digits/);
    refused(agg({ window: undefined }), "aggregations[0].window", /is required/);
    refused(agg({ window: { kind: "hopping", sizeMs: 10 } }), "aggregations[0].window.kind", /one of batch, tumbling, sliding/);
    refused(agg({ window: { kind: "tumbling" } }), "aggregations[0].window.sizeMs", /is required for a tumbling window/);
    refused(agg({ window: { kind: "tumbling", sizeMs: 0 } }), "aggregations[0].window.sizeMs", /above 0/);
    refused(agg({ window: { kind: "tumbling", sizeMs: "1m", slideMs: "10s" } }), "aggregations[0].window.slideMs", /not taken by a tumbling window/);
    refused(agg({ window: { kind: "sliding", sizeMs: "1m" } }), "aggregations[0].window.slideMs", /is required for a sliding window/);
    refused(agg({ window: { kind: "sliding", sizeMs: "1m", slideMs: "2m" } }), "aggregations[0].window.slideMs", /at most sizeMs \(60000 ms\), got 120000 ms/);
    refused(agg({ window: { kind: "sliding", sizeMs: "1m", slideMs: 0 } }), "aggregations[0].window.slideMs", /above 0/);
    refused(agg({ window: { kind: "batch", sizeMs: "1m" } }), "aggregations[0].window.sizeMs", /not taken by a batch window/);
    refused(agg({ window: "hourly" }), "aggregations[0].window", /must be a window/);
    refused(agg({ watermarkMs: "-5s" }), "aggregations[0].watermarkMs", /duration/);
    refused(agg({ metrics: [] }), "aggregations[0].metrics", /at least one metric/);
    refused(agg({ metrics: undefined }), "aggregations[0].metrics", /is required/);
    refused(agg({ metrics: [{ fn: "median", field: "x" }] }), "aggregations[0].metrics[0].fn", /one of count, sum, mean, min, max/);
    refused(agg({ metrics: [{ fn: "count", field: "x" }] }), "aggregations[0].metrics[0].field", /not taken by count/);
    refused(agg({ metrics: [{ fn: "count" }, { fn: "mean" }] }), "aggregations[0].metrics[1].field", /is required for mean/);
    refused(agg({ metrics: [{ fn: "count" }, { fn: "count" }] }), "aggregations[0].metrics[1]", /output column "count" is already produced by aggregations\[0\]\.metrics\[0\]/);
    refused(agg({ metrics: [{ fn: "mean", field: "a.b" }, { fn: "mean", field: "a_b" }] }), "aggregations[0].metrics[1]", /"mean_a_b"/);
    refused(agg({ metrics: [{ fn: "sum", field: "x", as: "label" }] }), "aggregations[0].metrics[0]", /"label" is already produced by aggregations\[0\]\.groupBy\[0\]/);
    refused(agg({ metrics: [{ fn: "sum", field: "probabilities[x]" }] }), "aggregations[0].metrics[0].field", /not a valid field path/);
    refused(agg({ groupBy: ["label", "label"] }), "aggregations[0].groupBy[1]", /repeats "label"/);
    refused(agg({ groupBy: ["label["] }), "aggregations[0].groupBy[0]", /not a valid field path/);
    refused(agg({ sink: undefined }), "aggregations[0].sink", /is required/);
    refused(agg({ sink: { kind: "sqlite", table: "By" } }), "aggregations[0].sink.table", /not a valid table name/);
    refused(agg({ every: "1m" }), "aggregations[0].every", /not a known key/);
  });
});

describe("parseStreamConfig: join", () => {
  const clicks = {
    source: { kind: "nats", stream: "CLICKS", subject: "clicks.>" },
    schema: { fields: { id: "string", clicked: "boolean", at: "timestamp" }, key: "id", eventTime: "at" },
    withinMs: "10m",
    sink: { kind: "sqlite", table: "joined" },
  };

  it("reads a join with defaults", () => {
    const config = parse(withChange((doc) => { doc.join = { ...clicks, feedback: { actual: "clicked" } }; }));
    expect(config.join).toEqual({
      source: {
        kind: "nats", servers: DEFAULT_NATS_SERVERS, stream: "CLICKS", subject: "clicks.>", durable: "mlship-scorer-join",
        maxMessages: 1000, ackWaitMs: 30_000, deliverPolicy: "all", createStream: false,
      },
      schema: {
        fields: [
          { name: "id", type: "string", nullable: false },
          { name: "clicked", type: "boolean", nullable: true },
          { name: "at", type: "timestamp", nullable: false },
        ],
        fromModel: false,
        key: "id",
        eventTime: "at",
        extra: "drop",
      },
      withinMs: 600_000,
      watermarkMs: 0,
      type: "inner",
      maxStateRecords: 1_000_000,
      sink: { kind: "sqlite", table: "joined" },
      feedback: { actual: "clicked" },
    });
  });

  it("keeps explicit join options", () => {
    const join = parse(withChange((doc) => { doc.join = { ...clicks, watermarkMs: "2m", type: "leftOuter", maxStateRecords: 5000 }; })).join;
    expect(join).toMatchObject({ watermarkMs: 120_000, type: "leftOuter", maxStateRecords: 5000 });
    expect(join?.feedback).toBeUndefined();
  });

  it("refuses bad joins naming the field", () => {
    const withJoin = (change: Record<string, unknown>): Record<string, unknown> => withChange((doc) => { doc.join = { ...clicks, ...change }; });
    refused(withChange((doc) => { doc.schema = { fromModel: true }; doc.join = clicks; }), "schema.key", /required when a join is configured/);
    refused(withJoin({ source: undefined }), "join.source", /is required/);
    refused(withJoin({ schema: undefined }), "join.schema", /is required/);
    refused(withJoin({ withinMs: undefined }), "join.withinMs", /is required/);
    refused(withJoin({ sink: undefined }), "join.sink", /is required/);
    refused(withJoin({ withinMs: 0 }), "join.withinMs", /above 0/);
    refused(withJoin({ schema: { fields: { id: "string" } } }), "join.schema.key", /is required/);
    refused(withJoin({ schema: { fields: { id: "string" }, key: "id", fromModel: true } }), "join.schema.fromModel", /not allowed here/);
    refused(withJoin({ type: "outer" }), "join.type", /one of inner, leftOuter/);
    refused(withJoin({ maxStateRecords: 0 }), "join.maxStateRecords", /integer >= 1/);
    refused(withJoin({ feedback: { actual: "bought" } }), "join.feedback.actual", /"bought" is not a field of join.schema; fields: id, clicked, at/);
    refused(withJoin({ feedback: { actual: "clicked", label: "x" } }), "join.feedback.label", /allowed keys: actual/);
    refused(withJoin({ source: { kind: "folder" } }), "join.source.path", /is required/);
    refused(withJoin({ within: "1m" }), "join.within", /did you mean "withinMs"/);
  });
});

describe("loadStreamConfig", () => {
  let dir: string;

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "mlship-stream-config-"));
  });

  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it("reads YAML and resolves paths against the file's folder", async () => {
    const jobDir = path.join(dir, "job");
    await fs.mkdir(jobDir);
    const file = path.join(jobDir, "stream.yaml");
    await fs.writeFile(file, [
      "name: scorer",
      "model: breast-cancer@production",
      "source:",
      "  kind: folder",
      "  path: incoming",
      "  format: csv",
      "  maxFilesPerTrigger: 2",
      "schema:",
      "  fromModel: true",
      "  fields: { id: string }",
      "  key: id",
      "trigger: { processingTime: 500ms }",
      "sink: { kind: sqlite, table: predictions, path: out/preds.db }",
      "",
    ].join("\n"));
    const config = await loadStreamConfig(file, { home: path.join(dir, "home") });
    expect(config.source).toEqual({ kind: "folder", path: path.join(jobDir, "incoming"), format: "csv", maxFilesPerTrigger: 2, recursive: false });
    expect(config.trigger).toEqual({ kind: "processingTime", intervalMs: 500 });
    expect(config.sinks).toEqual([{ kind: "sqlite", table: "predictions", path: path.join(jobDir, "out", "preds.db") }]);
    expect(config.checkpoint).toBe(path.join(dir, "home", "streams", "scorer"));
  });

  it("reads JSON", async () => {
    const file = path.join(dir, "stream.json");
    await fs.writeFile(file, JSON.stringify({ ...minimal(), trigger: "once" }));
    const config = await loadStreamConfig(file, { home: HOME });
    expect(config.trigger).toEqual({ kind: "once" });
    expect(config.source).toMatchObject({ path: path.join(dir, "incoming") });
  });

  it("names the file in validation errors", async () => {
    const file = path.join(dir, "bad.yaml");
    await fs.writeFile(file, "name: scorer\nmodel: m\nsource: { kind: folder, path: in, maxFilesPerTrigger: 0 }\n");
    await expect(loadStreamConfig(file, { home: HOME })).rejects.toMatchObject({
      code: "MLSHIP_ERR_CONFIG_INVALID",
      field: "source.maxFilesPerTrigger",
      message: `${file}: source.maxFilesPerTrigger must be an integer >= 1, got number 0`,
    });
  });

  it("refuses a missing file, malformed YAML and JSON with field config", async () => {
    const missing = path.join(dir, "absent.yaml");
    await expect(loadStreamConfig(missing, { home: HOME })).rejects.toMatchObject({
      code: "MLSHIP_ERR_CONFIG_INVALID", field: "config", message: expect.stringContaining("does not exist") as unknown,
    });
    await expect(loadStreamConfig(dir, { home: HOME })).rejects.toMatchObject({
      code: "MLSHIP_ERR_CONFIG_INVALID", field: "config", message: expect.stringContaining("cannot be read (EISDIR)") as unknown,
    });
    const yaml = path.join(dir, "broken.yaml");
    await fs.writeFile(yaml, "name: a\nname: b\n");
    await expect(loadStreamConfig(yaml, { home: HOME })).rejects.toMatchObject({
      code: "MLSHIP_ERR_CONFIG_INVALID", field: "config", message: expect.stringMatching(/malformed YAML .* at line 2/) as unknown,
    });
    const json = path.join(dir, "broken.json");
    await fs.writeFile(json, "{ name: ");
    await expect(loadStreamConfig(json, { home: HOME })).rejects.toMatchObject({
      code: "MLSHIP_ERR_CONFIG_INVALID", field: "config", message: expect.stringContaining("not valid JSON") as unknown,
    });
  });

  it("loads the documented example of docs/streaming.md", async () => {
    const doc = await fs.readFile(path.resolve("docs/streaming.md"), "utf8");
    const example = /```yaml\n([\s\S]*?)```/.exec(doc)?.[1];
    expect(example, "docs/streaming.md has a yaml example").toBeDefined();
    const file = path.join(dir, "example", "stream.yaml");
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(file, example as string);
    const config = await loadStreamConfig(file, { home: HOME, env: {} });
    expect(config.model).toBe("breast-cancer@production");
    expect(config.source).toMatchObject({ kind: "folder", format: "csv" });
    expect(config.sinks[0]).toMatchObject({ kind: "sqlite" });
    expect(config.aggregations[0]).toMatchObject({ window: { kind: "tumbling", sizeMs: 60_000 }, groupBy: ["label"] });
    expect(config.join?.source).toMatchObject({ kind: "nats", stream: "CLICKS" });
  });
});
