import { describe, expect, it } from "vitest";
import { parseBusinessEvent, parseEventTime, parseOutcome } from "../../src/feedback/outcomes.js";

const NOW = new Date("2026-12-01T12:00:00.000Z");

function rejectionOf(result: ReturnType<typeof parseOutcome> | ReturnType<typeof parseBusinessEvent>) {
  if (result.ok) throw new Error(`expected a rejection, got ${JSON.stringify(result.value)}`);
  return result.rejection;
}

describe("parseOutcome", () => {
  it("reads a request-id outcome in snake_case with defaults", () => {
    expect(parseOutcome({ request_id: "req-1", actual: "spam" }, 0, NOW)).toEqual({
      ok: true,
      value: { requestId: "req-1", row: 0, model: null, key: null, actual: "spam", eventTime: NOW.toISOString() },
    });
  });

  it("reads camelCase names from library callers and keeps the actual as given", () => {
    const parsed = parseOutcome({ requestId: "req-2", row: 3, actual: true, eventTime: "2026-12-01T10:00:00+01:00" }, 0, NOW);
    expect(parsed).toEqual({
      ok: true,
      value: { requestId: "req-2", row: 3, model: null, key: null, actual: true, eventTime: "2026-12-01T09:00:00.000Z" },
    });
  });

  it("reads a keyed outcome and prefers the request id when both are given", () => {
    expect(parseOutcome({ model: "churn", key: "cust-9", actual: 12.5 }, 0, NOW)).toMatchObject({
      ok: true,
      value: { requestId: null, model: "churn", key: "cust-9", actual: 12.5 },
    });
    expect(parseOutcome({ request_id: "r", model: "churn", key: 42, actual: 0 }, 0, NOW)).toMatchObject({
      ok: true,
      value: { requestId: "r", model: "churn", key: "42" },
    });
  });

  it("reads event times as ISO text (zone-less is UTC), epoch seconds and epoch milliseconds", () => {
    const at = (eventTime: unknown) => {
      const parsed = parseOutcome({ request_id: "r", actual: 1, event_time: eventTime }, 0, NOW);
      return parsed.ok ? parsed.value.eventTime : parsed.rejection.field;
    };
    expect(at("2026-12-01T10:00:00")).toBe("2026-12-01T10:00:00.000Z");
    expect(at("2026-12-01 10:00:00.250Z")).toBe("2026-12-01T10:00:00.250Z");
    expect(at("2026-12-01")).toBe("2026-12-01T00:00:00.000Z");
    expect(at("2026-12-01T10:00:00-0230")).toBe("2026-12-01T12:30:00.000Z");
    expect(at(1_796_119_200)).toBe("2026-12-01T10:00:00.000Z");
    expect(at(1_796_119_200_500)).toBe("2026-12-01T10:00:00.500Z");
    expect(at("1796119200")).toBe("2026-12-01T10:00:00.000Z");
    expect(at("yesterday")).toBe("event_time");
    expect(at("2026-13-45T10:00:00Z")).toBe("event_time");
    expect(at(-5)).toBe("event_time");
    expect(at({})).toBe("event_time");
  });

  it("names the bad field of each invalid item", () => {
    expect(rejectionOf(parseOutcome("nope", 4, NOW))).toMatchObject({ index: 4, field: "item" });
    expect(rejectionOf(parseOutcome({ actual: 1 }, 0, NOW))).toMatchObject({ field: "request_id", message: "request_id, or model and key, is required" });
    expect(rejectionOf(parseOutcome({ key: "k", actual: 1 }, 0, NOW)).field).toBe("model");
    expect(rejectionOf(parseOutcome({ model: "m", actual: 1 }, 0, NOW)).field).toBe("key");
    expect(rejectionOf(parseOutcome({ request_id: "", actual: 1 }, 0, NOW)).field).toBe("request_id");
    expect(rejectionOf(parseOutcome({ request_id: ["a"], actual: 1 }, 0, NOW)).field).toBe("request_id");
    expect(rejectionOf(parseOutcome({ request_id: "r" }, 0, NOW)).field).toBe("actual");
    expect(rejectionOf(parseOutcome({ request_id: "r", actual: null }, 0, NOW)).field).toBe("actual");
    expect(rejectionOf(parseOutcome({ request_id: "r", actual: [1] }, 0, NOW)).field).toBe("actual");
    expect(rejectionOf(parseOutcome({ request_id: "r", actual: Number.NaN }, 0, NOW)).field).toBe("actual");
    expect(rejectionOf(parseOutcome({ request_id: "r", actual: 1, row: -1 }, 0, NOW)).field).toBe("row");
    expect(rejectionOf(parseOutcome({ request_id: "r", actual: 1, row: 1.5 }, 0, NOW)).field).toBe("row");
    expect(rejectionOf(parseOutcome({ request_id: "r".repeat(2000), actual: 1 }, 0, NOW)).field).toBe("request_id");
  });

  it("accepts a row given as digits (CSV imports)", () => {
    expect(parseOutcome({ request_id: "r", actual: "1", row: "7" }, 0, NOW)).toMatchObject({ ok: true, value: { row: 7, actual: "1" } });
  });
});

describe("parseBusinessEvent", () => {
  it("defaults the value to 1 and reads the event id", () => {
    expect(parseBusinessEvent({ event_id: "e-1", name: "click", request_id: "r" }, 0, NOW)).toEqual({
      ok: true,
      value: { eventId: "e-1", name: "click", value: 1, requestId: "r", row: 0, model: null, key: null, eventTime: NOW.toISOString() },
    });
    expect(parseBusinessEvent({ eventId: 7, name: "purchase", value: "19.5", model: "m", key: "k" }, 0, NOW)).toMatchObject({
      ok: true,
      value: { eventId: "7", value: 19.5, model: "m", key: "k" },
    });
  });

  it("names the bad field", () => {
    expect(rejectionOf(parseBusinessEvent({ request_id: "r" }, 2, NOW))).toMatchObject({ index: 2, field: "name" });
    expect(rejectionOf(parseBusinessEvent({ name: "click", value: "lots", request_id: "r" }, 0, NOW)).field).toBe("value");
    expect(rejectionOf(parseBusinessEvent({ name: "click", value: Number.POSITIVE_INFINITY, request_id: "r" }, 0, NOW)).field).toBe("value");
    expect(rejectionOf(parseBusinessEvent({ name: "click" }, 0, NOW)).field).toBe("request_id");
    expect(rejectionOf(parseBusinessEvent({ name: "click", request_id: "r", event_id: "" }, 0, NOW)).field).toBe("event_id");
    expect(rejectionOf(parseBusinessEvent([], 0, NOW)).field).toBe("item");
  });
});

describe("parseEventTime", () => {
  it("defaults to now and reports the field", () => {
    expect(parseEventTime(undefined, NOW)).toEqual({ ok: true, value: NOW.toISOString() });
    expect(parseEventTime("soon", NOW, "eventTime")).toMatchObject({ ok: false, field: "eventTime" });
  });
});
