/**
 * Validation and normalisation of posted outcomes and business events (pure: no store, no clock unless given).
 *
 * Items arrive as raw JSON objects (`POST /v1/feedback`, `POST /v1/events`, `mlship feedback import`, a stream),
 * snake_case per the HTTP conventions; library callers may use the camelCase names of `OutcomeInput` /
 * `BusinessEventInput` (`requestId`, `eventTime`, `eventId`). When both spellings are present the snake_case one
 * wins. Unknown fields are ignored so that clients may send their own metadata along.
 *
 * - Target: `request_id` (non-empty text; a number is taken as its text), or `model` and `key` together. The
 *   request id wins when both are given; model and key are then kept for information only.
 * - `row`: a non-negative integer (or its digits as text, as CSV imports give them). Default 0.
 * - `actual` (outcomes): a string, a finite number or a boolean, kept as given; mapping to labels is quality's job.
 * - `event_time`: ISO-8601 text (a time without a zone is UTC), or epoch seconds (a number < 1e11) or milliseconds
 *   (as a number or digits). Default: `now`. Normalised to `Date#toISOString()`.
 * - Business events: `name` (non-empty text), `value` (finite number or numeric text, default 1), `event_id`
 *   (optional idempotency key, text or number).
 *
 * A bad item yields one rejection `{ index, field, message }` naming the first bad field; the caller keeps going
 * with the other items.
 */
import type { FeedbackRejection } from "./types.js";

/** Epoch numbers below this are seconds, the others milliseconds (1e11 s is the year 5138; 1e11 ms is 1973). */
export const EPOCH_SECONDS_LIMIT = 1e11;

/** Longest id, key, model or event name accepted: guards the store against pasted documents. */
export const MAX_TEXT_LENGTH = 1024;

/** Where an outcome or an event points: one request row, or a model's business key. */
export interface FeedbackTarget {
  requestId: string | null;
  row: number;
  model: string | null;
  key: string | null;
}

export interface ParsedOutcome extends FeedbackTarget {
  actual: string | number | boolean;
  /** ISO-8601 UTC. */
  eventTime: string;
}

export interface ParsedBusinessEvent extends FeedbackTarget {
  eventId: string | null;
  name: string;
  value: number;
  /** ISO-8601 UTC. */
  eventTime: string;
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; rejection: FeedbackRejection };

class InvalidField extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function pick(item: Record<string, unknown>, snake: string, camel: string): unknown {
  return item[snake] !== undefined ? item[snake] : item[camel];
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") return value.length > 40 ? `"${value.slice(0, 40)}..."` : `"${value}"`;
  if (typeof value === "object") return "an object";
  return String(value);
}

/** Optional text identifier: undefined when absent, else non-empty text (finite numbers are taken as text). */
function optionalText(value: unknown, field: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  let text: string;
  if (typeof value === "string") text = value;
  else if (typeof value === "number" && Number.isFinite(value)) text = String(value);
  else throw new InvalidField(field, `${field} must be text, got ${describe(value)}`);
  if (text.trim() === "") throw new InvalidField(field, `${field} must not be empty`);
  if (text.length > MAX_TEXT_LENGTH) throw new InvalidField(field, `${field} is longer than ${MAX_TEXT_LENGTH} characters`);
  return text;
}

function parseRow(value: unknown): number {
  if (value === undefined || value === null) return 0;
  const row = typeof value === "string" && /^\d+$/.test(value.trim()) ? Number(value.trim()) : value;
  if (typeof row !== "number" || !Number.isSafeInteger(row) || row < 0) {
    throw new InvalidField("row", `row must be a non-negative integer, got ${describe(value)}`);
  }
  return row;
}

function fromEpoch(epoch: number, field: string, raw: unknown): string {
  if (!Number.isFinite(epoch) || epoch < 0) {
    throw new InvalidField(field, `${field} must be a non-negative epoch time, got ${describe(raw)}`);
  }
  const ms = epoch < EPOCH_SECONDS_LIMIT ? epoch * 1000 : epoch;
  const date = new Date(Math.round(ms));
  if (Number.isNaN(date.getTime())) throw new InvalidField(field, `${field} is out of range: ${describe(raw)}`);
  return date.toISOString();
}

const ISO_PATTERN = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(Z|[+-]\d{2}(?::?\d{2})?)?)?$/i;

function fromIsoText(text: string, field: string): string {
  const match = ISO_PATTERN.exec(text);
  if (match === null) {
    throw new InvalidField(field, `${field} must be ISO-8601 (e.g. 2026-12-01T10:00:00Z) or epoch seconds/milliseconds, got ${describe(text)}`);
  }
  const [, day, time, zone] = match;
  let normalised = day ?? "";
  if (time !== undefined) {
    // A time without a zone is UTC (JavaScript would read it as local time).
    let offset = zone === undefined ? "Z" : zone.toUpperCase();
    if (/^[+-]\d{2}$/.test(offset)) offset += ":00";
    else if (/^[+-]\d{4}$/.test(offset)) offset = `${offset.slice(0, 3)}:${offset.slice(3)}`;
    normalised += `T${time}${offset}`;
  }
  const ms = Date.parse(normalised);
  if (Number.isNaN(ms)) throw new InvalidField(field, `${field} is not a valid date: ${describe(text)}`);
  return new Date(ms).toISOString();
}

/**
 * An event time as ISO-8601 UTC: ISO text, or epoch seconds (< 1e11) / milliseconds as a number or digits.
 * Undefined or null gives `now`. Throws nothing: returns a rejection message instead.
 */
export function parseEventTime(value: unknown, now: Date = new Date(), field = "event_time"): { ok: true; value: string } | { ok: false; field: string; message: string } {
  try {
    return { ok: true, value: eventTime(value, now, field) };
  } catch (error) {
    if (error instanceof InvalidField) return { ok: false, field: error.field, message: error.message };
    throw error;
  }
}

function eventTime(value: unknown, now: Date, field: string): string {
  if (value === undefined || value === null) return now.toISOString();
  if (typeof value === "number") return fromEpoch(value, field, value);
  if (typeof value === "string") {
    const text = value.trim();
    if (/^\d+(\.\d+)?$/.test(text)) return fromEpoch(Number(text), field, value);
    return fromIsoText(text, field);
  }
  throw new InvalidField(field, `${field} must be ISO-8601 text or an epoch number, got ${describe(value)}`);
}

function parseTarget(item: Record<string, unknown>): FeedbackTarget {
  const requestId = optionalText(pick(item, "request_id", "requestId"), "request_id");
  const model = optionalText(item.model, "model");
  const key = optionalText(item.key, "key");
  const row = parseRow(item.row);
  if (requestId !== undefined) return { requestId, row, model: model ?? null, key: key ?? null };
  if (model === undefined && key === undefined) {
    throw new InvalidField("request_id", "request_id, or model and key, is required");
  }
  if (model === undefined) throw new InvalidField("model", "model is required with key (or give request_id)");
  if (key === undefined) throw new InvalidField("key", "key is required with model (or give request_id)");
  return { requestId: null, row, model, key };
}

function parseActual(value: unknown): string | number | boolean {
  if (value === undefined || value === null) throw new InvalidField("actual", "actual is required");
  if (typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new InvalidField("actual", `actual must be a finite number, got ${describe(value)}`);
    return value;
  }
  throw new InvalidField("actual", `actual must be a string, a number or a boolean, got ${describe(value)}`);
}

function parseValue(value: unknown): number {
  if (value === undefined || value === null) return 1;
  const number = typeof value === "string" && value.trim() !== "" ? Number(value.trim()) : value;
  if (typeof number !== "number" || !Number.isFinite(number)) {
    throw new InvalidField("value", `value must be a finite number, got ${describe(value)}`);
  }
  return number;
}

function rejected(index: number, error: unknown): { ok: false; rejection: FeedbackRejection } {
  if (error instanceof InvalidField) return { ok: false, rejection: { index, field: error.field, message: error.message } };
  throw error;
}

/** Validates one posted outcome. `now` is the default event time. */
export function parseOutcome(item: unknown, index: number, now: Date = new Date()): ParseResult<ParsedOutcome> {
  try {
    if (!isRecord(item)) throw new InvalidField("item", `an outcome must be a JSON object, got ${describe(item)}`);
    const target = parseTarget(item);
    const actual = parseActual(item.actual);
    return { ok: true, value: { ...target, actual, eventTime: eventTime(pick(item, "event_time", "eventTime"), now, "event_time") } };
  } catch (error) {
    return rejected(index, error);
  }
}

/** Validates one posted business event. `now` is the default event time. */
export function parseBusinessEvent(item: unknown, index: number, now: Date = new Date()): ParseResult<ParsedBusinessEvent> {
  try {
    if (!isRecord(item)) throw new InvalidField("item", `a business event must be a JSON object, got ${describe(item)}`);
    const eventId = optionalText(pick(item, "event_id", "eventId"), "event_id");
    const name = optionalText(item.name, "name");
    if (name === undefined) throw new InvalidField("name", "name is required");
    const value = parseValue(item.value);
    const target = parseTarget(item);
    return {
      ok: true,
      value: { ...target, eventId: eventId ?? null, name, value, eventTime: eventTime(pick(item, "event_time", "eventTime"), now, "event_time") },
    };
  } catch (error) {
    return rejected(index, error);
  }
}
