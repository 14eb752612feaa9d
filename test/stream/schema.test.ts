import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { MlshipError } from "../../src/core/index.js";
import { csvCell } from "../../src/batch/readers.js";
import { compileSchema, effectiveFields, MAX_DEAD_LETTER_RAW_BYTES, truncateUtf8 } from "../../src/stream/schema.js";
import type { DeadLetter, FieldType, RawRecord, SchemaSpec, StreamRecord } from "../../src/stream/types.js";

const ARRIVED_AT = Date.UTC(2026, 0, 2, 3, 4, 5);

function raw(fields: Record<string, unknown>, id = "in/a.csv#0"): RawRecord {
  return { id, fields, origin: "in/a.csv:2", arrivedAt: ARRIVED_AT };
}

function schemaOf(fields: SchemaSpec["fields"], rest: Partial<SchemaSpec> = {}): SchemaSpec {
  return { fields, fromModel: false, extra: "drop", ...rest };
}

function accepted(spec: SchemaSpec, fields: Record<string, unknown>, modelColumns?: readonly string[]): StreamRecord {
  const result = compileSchema(spec, modelColumns)(raw(fields));
  if (!("record" in result)) throw new Error(`refused: ${result.deadLetter.reason}`);
  return result.record;
}

function refusedLetter(spec: SchemaSpec, fields: Record<string, unknown>): DeadLetter {
  const result = compileSchema(spec)(raw(fields));
  if (!("deadLetter" in result)) throw new Error(`accepted: ${JSON.stringify(result.record.fields)}`);
  return result.deadLetter;
}

/** The coerced value of `value` in a single non-nullable field of `type`, or the refusal's reason. */
function coerce(type: FieldType, value: unknown): { value: unknown } | { reason: string } {
  const result = compileSchema(schemaOf([{ name: "v", type, nullable: false }]))(raw({ v: value }));
  return "record" in result ? { value: result.record.fields.v } : { reason: result.deadLetter.reason };
}

describe("compileSchema: coercion", () => {
  it("double: finite numbers, safe bigints and decimal texts", () => {
    expect(coerce("double", 1.5)).toEqual({ value: 1.5 });
    expect(coerce("double", -0.25)).toEqual({ value: -0.25 });
    expect(coerce("double", 12n)).toEqual({ value: 12 });
    expect(coerce("double", "1.5")).toEqual({ value: 1.5 });
    expect(coerce("double", " 2e3 ")).toEqual({ value: 2000 });
    expect(coerce("double", ".5")).toEqual({ value: 0.5 });
    expect(coerce("double", "abc")).toEqual({ reason: 'expected double, got string "abc"' });
    expect(coerce("double", Number.NaN)).toEqual({ reason: "expected double, got number NaN" });
    expect(coerce("double", Number.POSITIVE_INFINITY)).toEqual({ reason: "expected double, got number Infinity" });
    expect(coerce("double", "Infinity")).toEqual({ reason: 'expected double, got string "Infinity"' });
    expect(coerce("double", "0x10")).toEqual({ reason: 'expected double, got string "0x10"' });
    expect(coerce("double", "")).toEqual({ reason: 'expected double, got string ""' });
    expect(coerce("double", "1e999")).toMatchObject({ reason: expect.stringContaining("expected double") as unknown });
    expect(coerce("double", true)).toEqual({ reason: "expected double, got boolean true" });
    expect(coerce("double", 2n ** 60n)).toEqual({ reason: `expected double, got bigint ${2n ** 60n} (beyond the safe integer range)` });
    expect(coerce("double", [1])).toEqual({ reason: "expected double, got a list" });
    expect(coerce("double", { a: 1 })).toEqual({ reason: "expected double, got an object" });
  });

  it("float: like double, within the 32-bit float range", () => {
    expect(coerce("float", 3.25)).toEqual({ value: 3.25 });
    expect(coerce("float", "-7")).toEqual({ value: -7 });
    expect(coerce("float", 1e39)).toEqual({ reason: "expected float, got number 1e+39 (out of the 32-bit float range)" });
    expect(coerce("float", "x")).toEqual({ reason: 'expected float, got string "x"' });
  });

  it("integer: whole numbers in the 32-bit range", () => {
    expect(coerce("integer", 42)).toEqual({ value: 42 });
    expect(coerce("integer", -2_147_483_648)).toEqual({ value: -2_147_483_648 });
    expect(coerce("integer", 2_147_483_647)).toEqual({ value: 2_147_483_647 });
    expect(coerce("integer", "17")).toEqual({ value: 17 });
    expect(coerce("integer", " 3.0 ")).toEqual({ value: 3 });
    expect(coerce("integer", 5n)).toEqual({ value: 5 });
    expect(coerce("integer", 2_147_483_648)).toEqual({ reason: "expected integer, got number 2147483648 (out of the 32-bit integer range)" });
    expect(coerce("integer", 1.5)).toEqual({ reason: "expected integer, got number 1.5 (not a whole number)" });
    expect(coerce("integer", "1.5")).toEqual({ reason: 'expected integer, got string "1.5" (not a whole number)' });
    expect(coerce("integer", "seven")).toEqual({ reason: 'expected integer, got string "seven"' });
    expect(coerce("integer", false)).toEqual({ reason: "expected integer, got boolean false" });
  });

  it("long: safe integers", () => {
    expect(coerce("long", 9_007_199_254_740_991)).toEqual({ value: 9_007_199_254_740_991 });
    expect(coerce("long", 9_007_199_254_740_991n)).toEqual({ value: 9_007_199_254_740_991 });
    expect(coerce("long", "-12345678901")).toEqual({ value: -12_345_678_901 });
    expect(coerce("long", 9_007_199_254_740_992n)).toEqual({ reason: "expected long, got bigint 9007199254740992" });
    expect(coerce("long", "9007199254740993")).toEqual({ reason: 'expected long, got string "9007199254740993" (beyond the safe integer range, |n| <= 2^53-1)' });
    expect(coerce("long", 2.5)).toEqual({ reason: "expected long, got number 2.5 (not a whole number)" });
  });

  it("boolean: true/false, their texts in any case, 0/1", () => {
    expect(coerce("boolean", true)).toEqual({ value: true });
    expect(coerce("boolean", false)).toEqual({ value: false });
    expect(coerce("boolean", "TRUE")).toEqual({ value: true });
    expect(coerce("boolean", " False ")).toEqual({ value: false });
    expect(coerce("boolean", 1)).toEqual({ value: true });
    expect(coerce("boolean", 0)).toEqual({ value: false });
    expect(coerce("boolean", 1n)).toEqual({ value: true });
    expect(coerce("boolean", 2)).toEqual({ reason: "expected boolean, got number 2" });
    expect(coerce("boolean", "yes")).toEqual({ reason: 'expected boolean, got string "yes"' });
    expect(coerce("boolean", {})).toEqual({ reason: "expected boolean, got an object" });
  });

  it("timestamp: ms since the epoch or ISO-8601", () => {
    expect(coerce("timestamp", 1_700_000_000_000)).toEqual({ value: 1_700_000_000_000 });
    expect(coerce("timestamp", 1_700_000_000_000n)).toEqual({ value: 1_700_000_000_000 });
    expect(coerce("timestamp", "1700000000000")).toEqual({ value: 1_700_000_000_000 });
    expect(coerce("timestamp", new Date("2024-05-01T10:00:00Z"))).toEqual({ value: Date.UTC(2024, 4, 1, 10) });
    expect(coerce("timestamp", "2024-05-01")).toEqual({ value: Date.UTC(2024, 4, 1) });
    expect(coerce("timestamp", "2024-05-01T10:00:00Z")).toEqual({ value: Date.UTC(2024, 4, 1, 10) });
    expect(coerce("timestamp", "2024-05-01T10:00:00.250Z")).toEqual({ value: Date.UTC(2024, 4, 1, 10, 0, 0, 250) });
    expect(coerce("timestamp", "2024-05-01T10:00:00.123456Z")).toEqual({ value: Date.UTC(2024, 4, 1, 10, 0, 0, 123) });
    expect(coerce("timestamp", "2024-05-01T12:30:00+02:00")).toEqual({ value: Date.UTC(2024, 4, 1, 10, 30) });
    expect(coerce("timestamp", "2024-05-01T05:00:00-0500")).toEqual({ value: Date.UTC(2024, 4, 1, 10) });
    // Without an offset the time is UTC, whatever the machine's time zone.
    expect(coerce("timestamp", "2024-05-01 10:00:00")).toEqual({ value: Date.UTC(2024, 4, 1, 10) });
    expect(coerce("timestamp", "2024-05-01T10:00")).toEqual({ value: Date.UTC(2024, 4, 1, 10) });
    expect(coerce("timestamp", "2024-02-29")).toEqual({ value: Date.UTC(2024, 1, 29) });
    for (const bad of ["2024-02-30", "2023-02-29", "2024-13-01", "2024-05-01T24:00:00Z", "2024-05-01T10:60:00Z", "May 1, 2024", "yesterday", "2024-05-01T10:00:00+25:00"]) {
      const result = coerce("timestamp", bad);
      expect(result, bad).toEqual({ reason: `expected timestamp, got string ${JSON.stringify(bad)} (use ms since the epoch or ISO-8601 such as 2024-05-01T10:00:00Z)` });
    }
    expect(coerce("timestamp", Number.NaN)).toEqual({ reason: "expected timestamp, got number NaN" });
    expect(coerce("timestamp", new Date(Number.NaN))).toEqual({ reason: "expected timestamp, got an invalid date" });
    expect(coerce("timestamp", true)).toEqual({ reason: "expected timestamp, got boolean true" });
  });

  it("string: texts, and numbers, booleans and bigints as their text", () => {
    expect(coerce("string", "abc")).toEqual({ value: "abc" });
    expect(coerce("string", "")).toEqual({ value: "" });
    expect(coerce("string", 42)).toEqual({ value: "42" });
    expect(coerce("string", 1.5)).toEqual({ value: "1.5" });
    expect(coerce("string", true)).toEqual({ value: "true" });
    expect(coerce("string", 12345678901234567890n)).toEqual({ value: "12345678901234567890" });
    expect(coerce("string", new Date(Date.UTC(2024, 4, 1)))).toEqual({ value: "2024-05-01T00:00:00.000Z" });
    expect(coerce("string", ["a"])).toEqual({ reason: "expected string, got a list" });
    expect(coerce("string", { a: 1 })).toEqual({ reason: "expected string, got an object" });
  });
});

describe("compileSchema: records", () => {
  const orders = schemaOf(
    [
      { name: "id", type: "string", nullable: false },
      { name: "at", type: "timestamp", nullable: false },
      { name: "amount", type: "double", nullable: true },
      { name: "vip", type: "boolean", nullable: true },
    ],
    { key: "id", eventTime: "at" },
  );

  it("builds a record with exactly the schema's fields, in order, typed", () => {
    const result = compileSchema(orders)(raw({ vip: "true", amount: "12.5", at: "2024-05-01T10:00:00Z", id: 42, note: "dropped" }, "in/a.csv#7"));
    expect(result).toEqual({
      record: {
        id: "in/a.csv#7",
        fields: { id: "42", at: Date.UTC(2024, 4, 1, 10), amount: 12.5, vip: true },
        key: "42",
        eventTime: Date.UTC(2024, 4, 1, 10),
        origin: "in/a.csv:2",
      },
    });
    if ("record" in result) expect(Object.keys(result.record.fields)).toEqual(["id", "at", "amount", "vip"]);
  });

  it("makes missing and null nullable fields null", () => {
    const record = accepted(orders, { id: "a", at: 0, amount: null });
    expect(record.fields).toEqual({ id: "a", at: 0, amount: null, vip: null });
    expect(record.eventTime).toBe(0);
  });

  it("refuses a missing or null non-nullable field", () => {
    expect(refusedLetter(orders, { at: 5 })).toMatchObject({ field: "id", reason: "expected string, got nothing (the field is missing)" });
    expect(refusedLetter(orders, { id: "a", at: null })).toMatchObject({ field: "at", reason: "expected timestamp, got null" });
  });

  it("uses the arrival time without an event-time field and null as key without a key", () => {
    const record = accepted(schemaOf([{ name: "x", type: "double", nullable: true }]), { x: 1 });
    expect(record.eventTime).toBe(ARRIVED_AT);
    expect(record.key).toBeNull();
  });

  it("gives a key's text for any key type", () => {
    expect(accepted(schemaOf([{ name: "n", type: "long", nullable: false }], { key: "n" }), { n: "7" }).key).toBe("7");
    expect(accepted(schemaOf([{ name: "b", type: "boolean", nullable: false }], { key: "b" }), { b: 0 }).key).toBe("false");
  });

  it("drops extra fields by default and refuses them with extra: reject", () => {
    const spec = schemaOf([{ name: "a", type: "double", nullable: true }]);
    expect(accepted(spec, { a: 1, b: 2 }).fields).toEqual({ a: 1 });
    const letter = refusedLetter({ ...spec, extra: "reject" }, { a: 1, b: 2 });
    expect(letter).toMatchObject({ field: "b", reason: 'field "b" is not in the schema (schema.extra is reject)' });
    expect(accepted({ ...spec, extra: "reject" }, { a: 1 }).fields).toEqual({ a: 1 });
  });

  it("writes a complete dead letter", () => {
    const before = Date.now();
    const result = compileSchema(orders)({ id: "orders:17", fields: { id: "a", at: 1, amount: "lots", big: 3n }, origin: "orders.new #17", arrivedAt: 5 });
    expect(result).toEqual({
      deadLetter: {
        id: "orders:17",
        origin: "orders.new #17",
        stage: "schema",
        field: "amount",
        reason: 'expected double, got string "lots"',
        raw: '{"id":"a","at":1,"amount":"lots","big":"3"}',
        at: expect.any(Number) as unknown,
      },
    });
    if ("deadLetter" in result) {
      expect(result.deadLetter.at).toBeGreaterThanOrEqual(before);
      expect(result.deadLetter.at).toBeLessThanOrEqual(Date.now());
    }
  });

  it("truncates a dead letter's raw content at 64 KiB", () => {
    const spec = schemaOf([{ name: "x", type: "double", nullable: false }]);
    const letter = refusedLetter(spec, { x: "é".repeat(40_000) });
    expect(Buffer.byteLength(letter.raw, "utf8")).toBeLessThanOrEqual(MAX_DEAD_LETTER_RAW_BYTES);
    expect(Buffer.byteLength(letter.raw, "utf8")).toBeGreaterThan(MAX_DEAD_LETTER_RAW_BYTES - 4);
    expect(letter.raw.startsWith('{"x":"éé')).toBe(true);
    expect(letter.raw).not.toContain("\uFFFD");
    // The reason quotes only the start of a long value.
    expect(letter.reason.length).toBeLessThan(200);
  });

  it("truncateUtf8 never splits a character", () => {
    expect(truncateUtf8("abc", 10)).toBe("abc");
    expect(truncateUtf8("aé", 2)).toBe("a");
    expect(truncateUtf8("a😀b", 4)).toBe("a");
    expect(truncateUtf8("a😀b", 5)).toBe("a😀");
  });

  it("takes any text as a field name, quotes and code included", () => {
    const names = ['say "hi"', "back\\slash", "new\nline", "sep\u2028arator", '"); globalThis.injected = true; ("', "${x}", "ünï cødé"];
    const spec = schemaOf(names.map((name) => ({ name, type: "string" as const, nullable: false })));
    const fields = Object.fromEntries(names.map((name, i) => [name, i]));
    expect(accepted(spec, fields).fields).toEqual(Object.fromEntries(names.map((name, i) => [name, String(i)])));
    expect((globalThis as { injected?: boolean }).injected).toBeUndefined();
    expect(refusedLetter(spec, { ...fields, [names[4] as string]: [1] })).toMatchObject({ field: names[4], reason: "expected string, got a list" });
  });

  it("refuses a field named __proto__", () => {
    expect(() => compileSchema(schemaOf([{ name: "__proto__", type: "string", nullable: true }]))).toThrow(
      expect.objectContaining({ code: "MLSHIP_ERR_CONFIG_INVALID" }) as Error,
    );
  });

  it("reads a field named like an Object member only as the record's own field", () => {
    const spec = schemaOf([{ name: "constructor", type: "string", nullable: true }, { name: "toString", type: "string", nullable: false }]);
    expect(accepted(spec, { toString: "x" }).fields).toEqual({ constructor: null, toString: "x" });
    expect(refusedLetter(spec, {})).toMatchObject({ field: "toString", reason: "expected string, got nothing (the field is missing)" });
  });
});

describe("compileSchema: the model's columns", () => {
  const columns = ["mean radius", "mean texture"];

  it("appends the model's columns as non-nullable doubles", () => {
    const spec = schemaOf([{ name: "id", type: "string", nullable: false }], { fromModel: true, key: "id" });
    expect(effectiveFields(spec, columns)).toEqual([
      { name: "id", type: "string", nullable: false },
      { name: "mean radius", type: "double", nullable: false },
      { name: "mean texture", type: "double", nullable: false },
    ]);
    expect(accepted(spec, { id: "p1", "mean radius": "13.5", "mean texture": 20 }, columns).fields).toEqual({ id: "p1", "mean radius": 13.5, "mean texture": 20 });
    const missing = compileSchema(spec, columns)(raw({ id: "p1", "mean radius": 13.5 }));
    expect(missing).toMatchObject({ deadLetter: { field: "mean texture", reason: "expected double, got nothing (the field is missing)" } });
  });

  it("keeps a declared field's type over the model column of the same name", () => {
    const spec = schemaOf([{ name: "mean radius", type: "double", nullable: true }], { fromModel: true });
    expect(effectiveFields(spec, columns)).toEqual([
      { name: "mean radius", type: "double", nullable: true },
      { name: "mean texture", type: "double", nullable: false },
    ]);
  });

  it("ignores model columns without fromModel", () => {
    const spec = schemaOf([{ name: "id", type: "string", nullable: true }]);
    expect(effectiveFields(spec, columns)).toEqual([{ name: "id", type: "string", nullable: true }]);
  });

  it("refuses fromModel without the model's columns", () => {
    let caught: unknown;
    try {
      compileSchema(schemaOf([], { fromModel: true }));
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(MlshipError);
    expect(caught).toMatchObject({ code: "MLSHIP_ERR_CONFIG_INVALID", field: "schema.fromModel" });
  });

  it("refuses a key or event time that is not a field of the schema", () => {
    expect(() => compileSchema(schemaOf([{ name: "a", type: "string", nullable: false }], { key: "id" }))).toThrow(
      expect.objectContaining({ code: "MLSHIP_ERR_CONFIG_INVALID", field: "schema.key" }) as Error,
    );
    expect(() => compileSchema(schemaOf([{ name: "a", type: "string", nullable: false }], { eventTime: "a" }))).toThrow(
      expect.objectContaining({ code: "MLSHIP_ERR_CONFIG_INVALID", field: "schema.eventTime" }) as Error,
    );
  });

  it("checks the breast-cancer production rows as the folder source types them", () => {
    const file = path.resolve("../shared/fixtures/breast_cancer_mlp/prod.csv");
    const lines = fs.readFileSync(file, "utf8").split("\n").filter((line) => line.trim() !== "");
    const header = (lines[0] as string).split(",");
    const features = header.filter((name) => name !== "label");
    const spec = schemaOf([{ name: "label", type: "integer", nullable: false }], { fromModel: true, extra: "reject" });
    const check = compileSchema(spec, features);
    let records = 0;
    for (const [index, line] of lines.slice(1).entries()) {
      const cells = line.split(",");
      const fields = Object.fromEntries(header.map((name, i) => [name, csvCell(cells[i] ?? "")]));
      const result = check(raw(fields, `prod.csv#${index}`));
      if (!("record" in result)) throw new Error(`row ${index}: ${result.deadLetter.reason}`);
      expect(Object.keys(result.record.fields)).toEqual(["label", ...features]);
      expect(result.record.fields["mean radius"]).toBe(Number(cells[0]));
      records += 1;
    }
    expect(records).toBe(lines.length - 1);
    expect(records).toBeGreaterThan(100);
  });
});
