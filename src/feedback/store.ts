/**
 * The prediction log, outcomes and business events in the metadata store (SQLite or PostgreSQL), and the join of
 * outcomes with predictions (tables of migration 0004_feedback).
 *
 * Storage
 * - `prediction_log`: one row per request row and model version; `prediction` and `actual` hold JSON text (a
 *   label or a number), `scores` a JSON array. Inserts are batched and ignore rows already logged (same request id,
 *   row, model and version), so replaying a spill file never logs twice.
 * - `outcomes`: one row per (request_id, row), or per (model, key) when posted without a request id. A repost
 *   replaces the earlier one (actual, event time, `updated_at`; `received_at` stays the first arrival) and is
 *   joined again; quality reads the actual written onto the prediction rows, so a repost never counts twice.
 * - `business_events`: one row per event; idempotent on `event_id` (a repost with a known id is ignored and
 *   reported with the status the event already has).
 * - `prediction_versions` (migration 0010): one row per model, version and variant ('' for none) with the oldest
 *   and newest `at` logged, upserted in the insert's transaction. `activeVersions` reads its candidates there and
 *   confirms each with one indexed probe of `prediction_log`, instead of a scan of every prediction in the range
 *   (synchronous on SQLite: it stalled the server's event loop). The summary only ever covers more than the log:
 *   `prune` drops versions whose newest prediction it deleted and moves older `first_at`s up to its cutoff.
 *
 * The join (in the same write transaction as the upsert, so replicas posting at once stay consistent; items are
 * handled in chunks of a few statements each, in a stable order so that concurrent writers do not deadlock)
 * - Within one post, the last item for a target wins (each still counts as accepted in the reply).
 * - By request id: every logged row with that request id and row (the answered prediction and any shadow copy,
 *   i.e. each version that scored it).
 * - By model and key: for each version, the latest prediction of that model and key (and row, default 0) made at
 *   or before the event time plus `CLOCK_SKEW_MS`.
 * - A found prediction made more than `horizonMs` before the event time is too old: the outcome is `late` (kept
 *   and counted, not written onto the prediction). Otherwise the prediction gets `actual` (JSON of the value as
 *   posted), `actual_at` (the event time) and `outcome_id`, and the outcome is `matched`. Nothing found: `pending`.
 *   A repost that no longer matches a prediction it matched before clears the actual from that prediction.
 * - Business events tie to one prediction: by request id the answered one (variant not `shadow`), by key the
 *   latest non-shadow one as above; a tied event records the prediction's model, `version`, `variant` and
 *   `prediction_at` (also when late); `eventTotals` counts only `matched` events.
 * - `joinPending` retries pending outcomes and events received within `pendingMs` (one query per kind of target)
 *   and marks older pending ones `unmatched`.
 *
 * Reading back
 * - `joined` returns `actual` as posted, except booleans, which come back as 1 (true) and 0 (false) so that they
 *   read as the positive/negative class index (or value) like the other numeric actuals.
 * - `prune(before)` deletes predictions made before `before`, then outcomes last updated before it whose
 *   predictions are gone, and events received before it whose prediction (if any) was made before it, and trims
 *   `prediction_versions` to match. It returns the number of prediction rows deleted.
 *
 * Store failures are mapped with `mapStoreError` (a down PostgreSQL is MLSHIP_ERR_STORE_UNAVAILABLE).
 */
import type { Statement } from "better-sqlite3";
import { expressionBuilder, sql, type Expression, type Generated, type Kysely, type RawBuilder, type SqlBool } from "kysely";
import { MlshipError } from "../core/index.js";
import { mapStoreError, type Database, type SqlStore } from "../store/index.js";
import { parseBusinessEvent, parseOutcome, type FeedbackTarget, type ParsedBusinessEvent, type ParsedOutcome, type ParseResult } from "./outcomes.js";
import type {
  ExportedPrediction,
  IngestResult,
  JoinOptions,
  JoinStats,
  JoinedPrediction,
  OutcomeStatus,
  PredictionQuery,
  PredictionRecord,
  PredictionStore,
  Variant,
} from "./types.js";

/** How far a prediction's clock may run ahead of the outcome's event time and still be the one it answers. */
export const CLOCK_SKEW_MS = 5 * 60_000;

/**
 * Rows per multi-row insert: 15 bound values per row keep a chunk far below SQLite's (32766) and PostgreSQL's
 * (65535) limits on bound parameters, while 10k rows still take only 20 statements.
 */
const INSERT_CHUNK_ROWS = 500;
/** The columns a logged prediction row fills, in the order of the SQLite fast path's prepared insert. */
const INSERT_COLUMNS = ["request_id", "row", "model", "version", "variant", "rollout_id", "key", "at", "protocol", "inputs", "inputs_hash", "outputs", "prediction", "scores", "latency_ms"] as const;
const EXPORT_PAGE_ROWS = 500;
/**
 * Outcomes or events per join step: each step is a handful of statements (candidates, upsert, actuals), with at
 * most a few parameters per item, far below both dialects' limits.
 */
const JOIN_CHUNK = 200;

const CANDIDATE_COLUMNS = ["id", "model", "version", "variant", "at", "outcome_id"] as const;
const JOINED_CANDIDATE_COLUMNS = ["p.id as p_id", "p.model as p_model", "p.version as p_version", "p.variant as p_variant", "p.at as p_at", "p.outcome_id as p_outcome_id"] as const;

/** The tables of migration 0004_feedback. Type aliases: Kysely's withTables needs index signatures. */
export type PredictionLogTable = {
  id: Generated<number>;
  request_id: string;
  row: number;
  model: string;
  version: number;
  variant: string | null;
  rollout_id: string | null;
  key: string | null;
  at: string;
  protocol: string | null;
  inputs: string | null;
  inputs_hash: string | null;
  outputs: string;
  /** JSON text of the predicted label or value. */
  prediction: string | null;
  /** JSON array of class probabilities. */
  scores: string | null;
  latency_ms: number;
  /** JSON text of the joined outcome's actual. */
  actual: string | null;
  actual_at: string | null;
  outcome_id: number | null;
};

export type OutcomesTable = {
  id: Generated<number>;
  request_id: string | null;
  row: number;
  model: string | null;
  key: string | null;
  /** JSON text of the value as posted. */
  actual: string;
  event_time: string;
  received_at: string;
  updated_at: string;
  status: string;
};

export type BusinessEventsTable = {
  id: Generated<number>;
  event_id: string | null;
  name: string;
  value: number;
  request_id: string | null;
  row: number;
  model: string | null;
  key: string | null;
  event_time: string;
  received_at: string;
  status: string;
  version: number | null;
  variant: string | null;
  prediction_at: string | null;
};

/** Migration 0010_prediction_versions: the time span logged per model, version and variant. */
export type PredictionVersionsTable = {
  model: string;
  version: number;
  /** The variant, '' for none (a NULL would defeat the primary key). */
  variant: string;
  first_at: string;
  last_at: string;
};

type FeedbackTables = {
  prediction_log: PredictionLogTable;
  outcomes: OutcomesTable;
  business_events: BusinessEventsTable;
  prediction_versions: PredictionVersionsTable;
};

type FeedbackDb = Kysely<Database & FeedbackTables>;

export interface SqlPredictionStoreOptions {
  /** The clock (received/updated times, the default `now` of joins). Default: the system clock. */
  now?: () => Date;
}

/** A logged prediction the join may tie an outcome or event to. */
interface Candidate {
  id: number;
  model: string;
  version: number;
  variant: string | null;
  at: string;
  outcomeId: number | null;
}

interface Judgement {
  status: Exclude<OutcomeStatus, "unmatched">;
  matched: Candidate[];
  /** Candidates found but too old for the horizon. */
  late: Candidate[];
}

const STATUSES: readonly OutcomeStatus[] = ["pending", "matched", "late", "unmatched"];

function checkJoinOptions(options: JoinOptions): void {
  for (const field of ["horizonMs", "pendingMs"] as const) {
    const value = options[field];
    if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${field} must be a non-negative number of milliseconds, got ${String(value)}`, { field });
    }
  }
  if (options.now !== undefined && Number.isNaN(options.now.getTime())) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "now is not a valid date", { field: "now" });
  }
}

function isoText(value: Date | string, field: string): string {
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${field} is not a valid date: ${String(value)}`, { field });
  }
  return date.toISOString();
}

function parseJson<T>(text: string, what: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (error) {
    throw new MlshipError("MLSHIP_ERR_CORE_INTERNAL", `the stored ${what} is not valid JSON`, { cause: error });
  }
}

/** A stored prediction or actual as the quality code reads it: text or number (booleans as 1/0). */
function labelOrValue(text: string | null, what: string): string | number | null {
  if (text === null) return null;
  const value = parseJson<unknown>(text, what);
  if (typeof value === "boolean") return value ? 1 : 0;
  if (typeof value === "string" || typeof value === "number") return value;
  return null;
}

function toCandidate(row: { id: number; model: string; version: number; variant: string | null; at: string; outcome_id: number | null }): Candidate {
  return { id: row.id, model: row.model, version: row.version, variant: row.variant, at: row.at, outcomeId: row.outcome_id };
}

function joinedCandidate(row: { p_id: number; p_model: string; p_version: number; p_variant: string | null; p_at: string; p_outcome_id: number | null }): Candidate {
  return { id: row.p_id, model: row.p_model, version: row.p_version, variant: row.p_variant, at: row.p_at, outcomeId: row.p_outcome_id };
}

/** The outcome a prediction row gets. */
interface ActualWrite {
  outcomeId: number;
  /** JSON text. */
  actual: string;
  eventTime: string;
}

/**
 * `case id when ... then ... end`: one value per row id in a single UPDATE. Ids and integers are inlined as
 * literals (they are numbers this module produced), so PostgreSQL types the branches as integers; text is bound.
 */
function caseById<T extends string | number | null>(entries: readonly (readonly [number, T])[]): RawBuilder<T> {
  const branches = entries.map(([id, value]) => sql`when ${sql.lit(Math.trunc(id))} then ${typeof value === "number" ? sql.lit(Math.trunc(value)) : value}`);
  return sql<T>`case ${sql.ref("id")} ${sql.join(branches, sql` `)} end`;
}

/** Writes outcomes onto prediction rows, a chunk of rows per statement. */
async function writeActuals(db: FeedbackDb, writes: ReadonlyMap<number, ActualWrite>): Promise<void> {
  const entries = [...writes.entries()].sort((a, b) => a[0] - b[0]);
  for (let start = 0; start < entries.length; start += JOIN_CHUNK) {
    const chunk = entries.slice(start, start + JOIN_CHUNK);
    await db
      .updateTable("prediction_log")
      .set({
        actual: caseById(chunk.map(([id, write]) => [id, write.actual])),
        actual_at: caseById(chunk.map(([id, write]) => [id, write.eventTime])),
        outcome_id: caseById(chunk.map(([id, write]) => [id, write.outcomeId])),
      })
      .where(
        "id",
        "in",
        chunk.map(([id]) => id),
      )
      .execute();
  }
}

/** Latest candidate (by time, then id) per version among those made at or before `eventTime` plus the skew. */
function latestPerVersion(candidates: readonly Candidate[], eventTime: string): Candidate[] {
  const upper = Date.parse(eventTime) + CLOCK_SKEW_MS;
  const latest = new Map<number, Candidate>();
  for (const candidate of candidates) {
    if (Date.parse(candidate.at) > upper) continue;
    const current = latest.get(candidate.version);
    if (current === undefined || candidate.at > current.at || (candidate.at === current.at && candidate.id > current.id)) {
      latest.set(candidate.version, candidate);
    }
  }
  return [...latest.values()];
}

function judge(found: readonly Candidate[], eventTime: string, horizonMs: number): Judgement {
  const event = Date.parse(eventTime);
  const matched: Candidate[] = [];
  const late: Candidate[] = [];
  for (const candidate of found) (Date.parse(candidate.at) + horizonMs < event ? late : matched).push(candidate);
  const status = matched.length > 0 ? "matched" : late.length > 0 ? "late" : "pending";
  return { status, matched, late };
}

/** The one prediction a business event ties to: the latest answered (non-shadow) one. */
function eventPrediction(candidates: readonly Candidate[], target: FeedbackTarget, eventTime: string): Candidate | undefined {
  const answered = candidates.filter((c) => c.variant !== "shadow");
  const pool = target.requestId !== null ? answered : latestPerVersion(answered, eventTime);
  let best: Candidate | undefined;
  for (const candidate of pool) {
    if (best === undefined || candidate.at > best.at || (candidate.at === best.at && candidate.id > best.id)) best = candidate;
  }
  return best;
}

function emptyStats(): JoinStats {
  return { pending: 0, matched: 0, late: 0, unmatched: 0 };
}

function emptyResult(): IngestResult {
  return { accepted: 0, matched: 0, pending: 0, late: 0, rejected: [] };
}

function count(result: IngestResult, status: string): void {
  result.accepted += 1;
  if (status === "matched") result.matched += 1;
  else if (status === "pending") result.pending += 1;
  else if (status === "late") result.late += 1;
}

/** The valid items of a post, parsed; each invalid one becomes a rejection in `result`. */
function parseEach<T>(items: readonly unknown[], parse: (item: unknown, index: number, now: Date) => ParseResult<T>, now: Date, result: IngestResult): T[] {
  const valid: T[] = [];
  for (const [index, item] of items.entries()) {
    const parsed = parse(item, index, now);
    if (parsed.ok) valid.push(parsed.value);
    else result.rejected.push(parsed.rejection);
  }
  return valid;
}

/** A stable order of targets, so that concurrent writers lock outcome rows in the same order (no deadlocks). */
function targetOrder(a: FeedbackTarget, b: FeedbackTarget): number {
  const left = `${a.requestId === null ? "k" : "r"}\u0000${a.requestId ?? ""}\u0000${a.model ?? ""}\u0000${a.key ?? ""}\u0000${a.row}`;
  const right = `${b.requestId === null ? "k" : "r"}\u0000${b.requestId ?? ""}\u0000${b.model ?? ""}\u0000${b.key ?? ""}\u0000${b.row}`;
  return left < right ? -1 : left > right ? 1 : 0;
}

function targetId(target: FeedbackTarget): string {
  return target.requestId !== null ? `r\u0000${target.requestId}\u0000${target.row}` : `k\u0000${target.model ?? ""}\u0000${target.key ?? ""}`;
}

/** The rows a range read selects: one model, maybe one version and one variant, a time in [start, end). */
interface RangeQuery {
  model: string;
  version?: number | undefined;
  variant?: Variant | undefined;
  start: string;
  end: string;
}

/**
 * `model = ? [and version = ?] and <time> >= start and <time> < end [and variant = ?]`: the filter the range reads
 * of `prediction_log` (time `at`) and `business_events` (time `prediction_at`) share. Call it before the query: an
 * invalid start or end is MLSHIP_ERR_INPUT_INVALID naming the field.
 */
function inRange(query: RangeQuery, time: "at" | "prediction_at"): Expression<SqlBool> {
  const start = isoText(query.start, "start");
  const end = isoText(query.end, "end");
  const eb = expressionBuilder<{ r: { model: string | null; version: number | null; variant: string | null; at: string; prediction_at: string | null } }, "r">();
  const conditions = [eb("model", "=", query.model)];
  if (query.version !== undefined) conditions.push(eb("version", "=", query.version));
  conditions.push(eb(time, ">=", start), eb(time, "<", end));
  if (query.variant !== undefined) conditions.push(eb("variant", "=", query.variant));
  return eb.and(conditions);
}

/**
 * A batch's `prediction_versions` rows: one per model, version and variant ('' for none) with the batch's oldest
 * and newest `at`, sorted so that concurrent writers lock summary rows in the same order.
 */
function batchVersions(rows: readonly { model: string; version: number; variant: string | null; at: string }[]): PredictionVersionsTable[] {
  const byVersion = new Map<string, PredictionVersionsTable>();
  for (const row of rows) {
    const variant = row.variant ?? "";
    const id = `${row.model}\u0000${row.version}\u0000${variant}`;
    const entry = byVersion.get(id);
    if (entry === undefined) byVersion.set(id, { model: row.model, version: row.version, variant, first_at: row.at, last_at: row.at });
    else {
      if (row.at < entry.first_at) entry.first_at = row.at;
      if (row.at > entry.last_at) entry.last_at = row.at;
    }
  }
  const order = (a: PredictionVersionsTable, b: PredictionVersionsTable) =>
    a.model !== b.model ? (a.model < b.model ? -1 : 1) : a.version !== b.version ? a.version - b.version : a.variant < b.variant ? -1 : a.variant > b.variant ? 1 : 0;
  return [...byVersion.values()].sort(order);
}

/** `SqlPredictionStore`: the `PredictionStore` over the metadata store. */
export class SqlPredictionStore implements PredictionStore {
  readonly #now: () => Date;
  /** The SQLite fast path's prepared insert, made on first use. */
  #insertStatement: Statement | undefined;
  /** The SQLite fast path's prepared `prediction_versions` upsert, made on first use. */
  #versionsStatement: Statement | undefined;

  constructor(
    readonly store: SqlStore,
    options: SqlPredictionStoreOptions = {},
  ) {
    this.#now = options.now ?? (() => new Date());
  }

  get #db(): FeedbackDb {
    return this.store.db.withTables<FeedbackTables>();
  }

  async insertPredictions(records: readonly PredictionRecord[]): Promise<number> {
    if (records.length === 0) return 0;
    const rows = records.map((record) => ({
      request_id: record.requestId,
      row: record.row,
      model: record.model,
      version: record.version,
      variant: record.variant,
      rollout_id: record.rolloutId,
      key: record.key,
      at: isoText(record.at, "at"),
      protocol: record.protocol,
      inputs: record.inputs,
      inputs_hash: record.inputsHash,
      outputs: record.outputs,
      prediction: record.prediction === null ? null : JSON.stringify(record.prediction),
      scores: record.scores === null ? null : JSON.stringify(record.scores),
      // A NaN would become NULL on SQLite and fail the whole batch on the NOT NULL column.
      latency_ms: Number.isFinite(record.latencyMs) ? record.latencyMs : 0,
    }));
    const raw = this.store.sqlite;
    if (raw !== undefined) {
      // SQLite: one prepared statement run per row inside the write transaction (the prediction log's hot path).
      return this.store.write(() => {
        this.#insertStatement ??= raw.prepare(
          `insert into prediction_log (${INSERT_COLUMNS.map((c) => `"${c}"`).join(", ")}) values (${INSERT_COLUMNS.map(() => "?").join(", ")}) ` +
            `on conflict (request_id, "row", model, version) do nothing`,
        );
        const statement = this.#insertStatement;
        let inserted = 0;
        for (const row of rows) inserted += statement.run(INSERT_COLUMNS.map((c) => row[c])).changes;
        // A row only widens its version's span: the WHERE skips the write when the batch falls inside it.
        this.#versionsStatement ??= raw.prepare(
          `insert into prediction_versions (model, version, variant, first_at, last_at) values (?, ?, ?, ?, ?) ` +
            `on conflict (model, version, variant) do update set first_at = min(first_at, excluded.first_at), last_at = max(last_at, excluded.last_at) ` +
            `where excluded.first_at < prediction_versions.first_at or excluded.last_at > prediction_versions.last_at`,
        );
        for (const v of batchVersions(rows)) this.#versionsStatement.run(v.model, v.version, v.variant, v.first_at, v.last_at);
        return Promise.resolve(inserted);
      });
    }
    const [least, greatest] = this.store.dialect === "postgres" ? ["least", "greatest"] : ["min", "max"];
    return this.store.write(async (trx) => {
      const db = trx.withTables<FeedbackTables>();
      let inserted = 0;
      for (let start = 0; start < rows.length; start += INSERT_CHUNK_ROWS) {
        const result = await db
          .insertInto("prediction_log")
          .values(rows.slice(start, start + INSERT_CHUNK_ROWS))
          .onConflict((oc) => oc.columns(["request_id", "row", "model", "version"]).doNothing())
          .executeTakeFirst();
        inserted += Number(result.numInsertedOrUpdatedRows ?? 0n);
      }
      // Last in the transaction, so the summary rows (shared by every writer of a version) stay locked briefly.
      const versions = batchVersions(rows);
      for (let start = 0; start < versions.length; start += INSERT_CHUNK_ROWS) {
        await db
          .insertInto("prediction_versions")
          .values(versions.slice(start, start + INSERT_CHUNK_ROWS))
          .onConflict((oc) =>
            oc
              .columns(["model", "version", "variant"])
              .doUpdateSet({
                first_at: sql<string>`${sql.raw(least)}(prediction_versions.first_at, excluded.first_at)`,
                last_at: sql<string>`${sql.raw(greatest)}(prediction_versions.last_at, excluded.last_at)`,
              })
              .where(sql<boolean>`excluded.first_at < prediction_versions.first_at or excluded.last_at > prediction_versions.last_at`),
          )
          .execute();
      }
      return inserted;
    });
  }

  async ingestOutcomes(items: readonly unknown[], options: JoinOptions): Promise<IngestResult> {
    checkJoinOptions(options);
    const now = options.now ?? this.#now();
    const result = emptyResult();
    const valid = parseEach(items, parseOutcome, now, result);
    if (valid.length === 0) return result;
    // Within one post the last item for a target wins (one row per target in each upsert statement); every item
    // still counts as accepted. Targets are handled in a stable order so that concurrent writers lock outcome
    // rows in the same order instead of deadlocking.
    const lastOfTarget = new Map<string, ParsedOutcome>();
    for (const outcome of valid) lastOfTarget.set(targetId(outcome), outcome);
    const unique = [...lastOfTarget.values()].sort(targetOrder);
    const nowText = now.toISOString();
    const statuses = await this.store.write(async (trx) => {
      const db = trx.withTables<FeedbackTables>();
      const byTarget = new Map<string, string>();
      for (let start = 0; start < unique.length; start += JOIN_CHUNK) {
        const chunk = unique.slice(start, start + JOIN_CHUNK);
        for (const [id, status] of await this.#storeOutcomes(db, chunk, options.horizonMs, nowText)) byTarget.set(id, status);
      }
      return byTarget;
    });
    for (const outcome of valid) count(result, statuses.get(targetId(outcome)) ?? "pending");
    return result;
  }

  /** Upserts a chunk of outcomes (distinct targets) and joins them; returns each target's status. */
  async #storeOutcomes(db: FeedbackDb, outcomes: readonly ParsedOutcome[], horizonMs: number, nowText: string): Promise<Map<string, string>> {
    const found = await this.#candidates(db, outcomes);
    const judged = outcomes.map((outcome) => {
      const candidates = found.get(targetId(outcome)) ?? [];
      const pool = outcome.requestId !== null ? candidates : latestPerVersion(candidates, outcome.eventTime);
      return { outcome, candidates, actual: JSON.stringify(outcome.actual), verdict: judge(pool, outcome.eventTime, horizonMs) };
    });
    const rowOf = (entry: (typeof judged)[number]) => ({
      request_id: entry.outcome.requestId,
      row: entry.outcome.row,
      model: entry.outcome.model,
      key: entry.outcome.key,
      actual: entry.actual,
      event_time: entry.outcome.eventTime,
      received_at: nowText,
      updated_at: nowText,
      status: entry.verdict.status,
    });
    const ids = new Map<string, number>();
    const byRequest = judged.filter((entry) => entry.outcome.requestId !== null);
    const byKey = judged.filter((entry) => entry.outcome.requestId === null);
    if (byRequest.length > 0) {
      const stored = await db
        .insertInto("outcomes")
        .values(byRequest.map(rowOf))
        .onConflict((oc) =>
          oc
            .columns(["request_id", "row"])
            .where(sql<boolean>`request_id is not null`)
            .doUpdateSet((eb) => ({
              actual: eb.ref("excluded.actual"),
              event_time: eb.ref("excluded.event_time"),
              updated_at: eb.ref("excluded.updated_at"),
              status: eb.ref("excluded.status"),
              model: eb.ref("excluded.model"),
              key: eb.ref("excluded.key"),
            })),
        )
        .returning(["id", "request_id", "row"])
        .execute();
      for (const row of stored) ids.set(targetId({ requestId: row.request_id, row: row.row, model: null, key: null }), Number(row.id));
    }
    if (byKey.length > 0) {
      const stored = await db
        .insertInto("outcomes")
        .values(byKey.map(rowOf))
        .onConflict((oc) =>
          oc
            .columns(["model", "key"])
            .where(sql<boolean>`request_id is null`)
            .doUpdateSet((eb) => ({
              actual: eb.ref("excluded.actual"),
              event_time: eb.ref("excluded.event_time"),
              updated_at: eb.ref("excluded.updated_at"),
              status: eb.ref("excluded.status"),
              row: eb.ref("excluded.row"),
            })),
        )
        .returning(["id", "model", "key"])
        .execute();
      for (const row of stored) ids.set(targetId({ requestId: null, row: 0, model: row.model, key: row.key }), Number(row.id));
    }

    const writes = new Map<number, ActualWrite>();
    const matchedIds = new Set<number>();
    const staleByRequest: number[] = [];
    const keyedOutcomeIds = new Map<string, { keys: string[]; outcomeIds: number[] }>();
    const statuses = new Map<string, string>();
    for (const entry of judged) {
      const id = targetId(entry.outcome);
      const outcomeId = ids.get(id);
      if (outcomeId === undefined) throw new MlshipError("MLSHIP_ERR_CORE_INTERNAL", "an upserted outcome returned no id");
      statuses.set(id, entry.verdict.status);
      for (const candidate of entry.verdict.matched) {
        matchedIds.add(candidate.id);
        writes.set(candidate.id, { outcomeId, actual: entry.actual, eventTime: entry.outcome.eventTime });
      }
      if (entry.outcome.requestId !== null) {
        for (const candidate of entry.candidates) {
          if (candidate.outcomeId === outcomeId && !entry.verdict.matched.includes(candidate)) staleByRequest.push(candidate.id);
        }
      } else {
        const model = entry.outcome.model ?? "";
        const group = keyedOutcomeIds.get(model) ?? { keys: [], outcomeIds: [] };
        group.keys.push(entry.outcome.key ?? "");
        group.outcomeIds.push(outcomeId);
        keyedOutcomeIds.set(model, group);
      }
    }
    // A repost may no longer match what the earlier post matched: take the stale actual off those predictions.
    const cleared = { actual: null, actual_at: null, outcome_id: null };
    if (staleByRequest.length > 0) await db.updateTable("prediction_log").set(cleared).where("id", "in", staleByRequest).execute();
    for (const [model, group] of keyedOutcomeIds) {
      let clear = db.updateTable("prediction_log").set(cleared).where("model", "=", model).where("key", "in", group.keys).where("outcome_id", "in", group.outcomeIds);
      if (matchedIds.size > 0) clear = clear.where("id", "not in", [...matchedIds]);
      await clear.execute();
    }
    await writeActuals(db, writes);
    return statuses;
  }

  /**
   * The logged rows each target may join, by `targetId`: all rows of a request row, or the rows of a key (and row)
   * made at or before the target's event time plus the skew.
   */
  async #candidates(db: FeedbackDb, targets: readonly (FeedbackTarget & { eventTime: string })[]): Promise<Map<string, Candidate[]>> {
    const found = new Map<string, Candidate[]>();
    const add = (id: string, candidate: Candidate) => {
      const list = found.get(id);
      if (list === undefined) found.set(id, [candidate]);
      else list.push(candidate);
    };
    const requestIds = [...new Set(targets.flatMap((t) => (t.requestId === null ? [] : [t.requestId])))];
    if (requestIds.length > 0) {
      const wanted = new Set(targets.filter((t) => t.requestId !== null).map(targetId));
      const rows = await db
        .selectFrom("prediction_log")
        .select([...CANDIDATE_COLUMNS, "request_id", "row"])
        .where("request_id", "in", requestIds)
        .execute();
      for (const row of rows) {
        const id = targetId({ requestId: row.request_id, row: row.row, model: null, key: null });
        if (wanted.has(id)) add(id, toCandidate(row));
      }
    }
    const keyedByModel = new Map<string, (FeedbackTarget & { eventTime: string })[]>();
    for (const target of targets) {
      if (target.requestId !== null) continue;
      const list = keyedByModel.get(target.model ?? "") ?? [];
      list.push(target);
      keyedByModel.set(target.model ?? "", list);
    }
    for (const [model, keyed] of keyedByModel) {
      const upper = new Date(Math.max(...keyed.map((t) => Date.parse(t.eventTime))) + CLOCK_SKEW_MS).toISOString();
      const rows = await db
        .selectFrom("prediction_log")
        .select([...CANDIDATE_COLUMNS, "key", "row"])
        .where("model", "=", model)
        .where("key", "in", [...new Set(keyed.map((t) => t.key ?? ""))])
        .where("at", "<=", upper)
        .execute();
      const byKey = new Map<string, typeof rows>();
      for (const row of rows) {
        const list = byKey.get(row.key ?? "") ?? [];
        list.push(row);
        byKey.set(row.key ?? "", list);
      }
      for (const target of keyed) {
        const targetUpper = Date.parse(target.eventTime) + CLOCK_SKEW_MS;
        for (const row of byKey.get(target.key ?? "") ?? []) {
          if (row.row === target.row && Date.parse(row.at) <= targetUpper) add(targetId(target), toCandidate(row));
        }
      }
    }
    return found;
  }

  async ingestEvents(items: readonly unknown[], options: JoinOptions): Promise<IngestResult> {
    checkJoinOptions(options);
    const now = options.now ?? this.#now();
    const result = emptyResult();
    const valid = parseEach(items, parseBusinessEvent, now, result);
    if (valid.length === 0) return result;
    // Events with ids are stored in id order so that concurrent posts of the same ids wait instead of deadlocking.
    const order = valid
      .map((_, position) => position)
      .sort((a, b) => {
        const left = valid[a]?.eventId ?? "";
        const right = valid[b]?.eventId ?? "";
        return left < right ? -1 : left > right ? 1 : a - b;
      });
    const nowText = now.toISOString();
    const statuses = await this.store.write(async (trx) => {
      const db = trx.withTables<FeedbackTables>();
      const out = new Array<string>(valid.length);
      for (let start = 0; start < order.length; start += JOIN_CHUNK) {
        const positions = order.slice(start, start + JOIN_CHUNK);
        const chunkStatuses = await this.#storeEvents(
          db,
          positions.map((position) => valid[position] as ParsedBusinessEvent),
          options.horizonMs,
          nowText,
        );
        positions.forEach((position, i) => (out[position] = chunkStatuses[i] ?? "pending"));
      }
      return out;
    });
    for (const status of statuses) count(result, status);
    return result;
  }

  /** Stores a chunk of events (a known event id is reported with its status) and ties them; returns statuses in order. */
  async #storeEvents(db: FeedbackDb, events: readonly ParsedBusinessEvent[], horizonMs: number, nowText: string): Promise<string[]> {
    const eventIds = [...new Set(events.flatMap((e) => (e.eventId === null ? [] : [e.eventId])))];
    const known = new Map<string, string>();
    if (eventIds.length > 0) {
      const rows = await db.selectFrom("business_events").select(["event_id", "status"]).where("event_id", "in", eventIds).execute();
      for (const row of rows) if (row.event_id !== null) known.set(row.event_id, row.status);
    }
    // The first of several items with one id in this post is stored; the others report its status.
    const fresh = events.filter((e, i) => e.eventId === null || (!known.has(e.eventId) && events.findIndex((other) => other.eventId === e.eventId) === i));
    const found = await this.#candidates(db, fresh);
    const rows = fresh.map((event) => {
      const tied = eventPrediction(found.get(targetId(event)) ?? [], event, event.eventTime);
      const status = tied === undefined ? "pending" : judge([tied], event.eventTime, horizonMs).status;
      return {
        event_id: event.eventId,
        name: event.name,
        value: event.value,
        request_id: event.requestId,
        row: event.row,
        model: tied?.model ?? event.model,
        key: event.key,
        event_time: event.eventTime,
        received_at: nowText,
        status,
        version: tied?.version ?? null,
        variant: tied?.variant ?? null,
        prediction_at: tied?.at ?? null,
      };
    });
    const statusOf = new Map<ParsedBusinessEvent, string>();
    fresh.forEach((event, i) => statusOf.set(event, rows[i]?.status ?? "pending"));
    const anonymous = rows.filter((row) => row.event_id === null);
    if (anonymous.length > 0) await db.insertInto("business_events").values(anonymous).execute();
    const identified = rows.filter((row) => row.event_id !== null);
    if (identified.length > 0) {
      const stored = await db
        .insertInto("business_events")
        .values(identified)
        .onConflict((oc) => oc.column("event_id").where(sql<boolean>`event_id is not null`).doNothing())
        .returning("event_id")
        .execute();
      // A concurrent post of the same ids may have won since the check above: then report their statuses.
      const inserted = new Set(stored.map((row) => row.event_id));
      const lost = identified.flatMap((row) => (row.event_id === null || inserted.has(row.event_id) ? [] : [row.event_id]));
      if (lost.length > 0) {
        const rowsNow = await db.selectFrom("business_events").select(["event_id", "status"]).where("event_id", "in", lost).execute();
        for (const row of rowsNow) if (row.event_id !== null) known.set(row.event_id, row.status);
      }
      for (const row of identified) if (row.event_id !== null && !known.has(row.event_id)) known.set(row.event_id, row.status);
    }
    return events.map((event) => (event.eventId !== null ? (known.get(event.eventId) ?? "pending") : (statusOf.get(event) ?? "pending")));
  }

  /** Returns the outcomes' totals by status after the pass (as `joinStats().outcomes`). */
  async joinPending(options: JoinOptions): Promise<JoinStats> {
    checkJoinOptions(options);
    const now = options.now ?? this.#now();
    const cutoff = new Date(now.getTime() - options.pendingMs).toISOString();
    await this.store.write(async (trx) => {
      const db = trx.withTables<FeedbackTables>();
      await this.#retryOutcomes(db, cutoff, options.horizonMs);
      await this.#retryEvents(db, cutoff, options.horizonMs);
      await db.updateTable("outcomes").set({ status: "unmatched" }).where("status", "=", "pending").where("received_at", "<", cutoff).execute();
      await db.updateTable("business_events").set({ status: "unmatched" }).where("status", "=", "pending").where("received_at", "<", cutoff).execute();
    });
    return (await this.joinStats()).outcomes;
  }

  async #retryOutcomes(db: FeedbackDb, cutoff: string, horizonMs: number): Promise<void> {
    const outcomeColumns = ["o.id as o_id", "o.actual as o_actual", "o.event_time as o_event_time"] as const;
    const byRequest = await db
      .selectFrom("outcomes as o")
      .innerJoin("prediction_log as p", (join) => join.onRef("p.request_id", "=", "o.request_id").onRef("p.row", "=", "o.row"))
      .select([...outcomeColumns, ...JOINED_CANDIDATE_COLUMNS])
      .where("o.status", "=", "pending")
      .where("o.request_id", "is not", null)
      .where("o.received_at", ">=", cutoff)
      .execute();
    const byKey = await db
      .selectFrom("outcomes as o")
      .innerJoin("prediction_log as p", (join) => join.onRef("p.model", "=", "o.model").onRef("p.key", "=", "o.key").onRef("p.row", "=", "o.row"))
      .select([...outcomeColumns, ...JOINED_CANDIDATE_COLUMNS])
      .where("o.status", "=", "pending")
      .where("o.request_id", "is", null)
      .where("o.received_at", ">=", cutoff)
      .execute();

    const pending = new Map<number, { actual: string; eventTime: string; keyed: boolean; found: Candidate[] }>();
    for (const [rows, keyed] of [
      [byRequest, false],
      [byKey, true],
    ] as const) {
      for (const row of rows) {
        const id = Number(row.o_id);
        let entry = pending.get(id);
        if (entry === undefined) {
          entry = { actual: row.o_actual, eventTime: row.o_event_time, keyed, found: [] };
          pending.set(id, entry);
        }
        entry.found.push(joinedCandidate(row));
      }
    }
    const verdicts = new Map<number, { entry: { actual: string; eventTime: string }; verdict: Judgement }>();
    for (const [outcomeId, entry] of pending) {
      const pool = entry.keyed ? latestPerVersion(entry.found, entry.eventTime) : entry.found;
      const verdict = judge(pool, entry.eventTime, horizonMs);
      if (verdict.status !== "pending") verdicts.set(outcomeId, { entry, verdict });
    }
    const ids = [...verdicts.keys()].sort((a, b) => a - b);
    const writes = new Map<number, ActualWrite>();
    for (let start = 0; start < ids.length; start += JOIN_CHUNK) {
      const chunk = ids.slice(start, start + JOIN_CHUNK);
      // Only while still pending: a repost committed since the select above has been joined already.
      const updated = await db
        .updateTable("outcomes")
        .set({ status: caseById(chunk.map((id) => [id, verdicts.get(id)?.verdict.status ?? "pending"])) })
        .where("id", "in", chunk)
        .where("status", "=", "pending")
        .returning("id")
        .execute();
      for (const { id } of updated) {
        const judged = verdicts.get(Number(id));
        if (judged === undefined) continue;
        for (const candidate of judged.verdict.matched) {
          writes.set(candidate.id, { outcomeId: Number(id), actual: judged.entry.actual, eventTime: judged.entry.eventTime });
        }
      }
    }
    await writeActuals(db, writes);
  }

  async #retryEvents(db: FeedbackDb, cutoff: string, horizonMs: number): Promise<void> {
    const eventColumns = ["e.id as e_id", "e.event_time as e_event_time", "e.request_id as e_request_id"] as const;
    const notShadow = sql<boolean>`(p.variant is null or p.variant <> 'shadow')`;
    const byRequest = await db
      .selectFrom("business_events as e")
      .innerJoin("prediction_log as p", (join) => join.onRef("p.request_id", "=", "e.request_id").onRef("p.row", "=", "e.row"))
      .select([...eventColumns, ...JOINED_CANDIDATE_COLUMNS])
      .where("e.status", "=", "pending")
      .where("e.request_id", "is not", null)
      .where("e.received_at", ">=", cutoff)
      .where(notShadow)
      .execute();
    const byKey = await db
      .selectFrom("business_events as e")
      .innerJoin("prediction_log as p", (join) => join.onRef("p.model", "=", "e.model").onRef("p.key", "=", "e.key").onRef("p.row", "=", "e.row"))
      .select([...eventColumns, ...JOINED_CANDIDATE_COLUMNS])
      .where("e.status", "=", "pending")
      .where("e.request_id", "is", null)
      .where("e.received_at", ">=", cutoff)
      .where(notShadow)
      .execute();

    const pending = new Map<number, { eventTime: string; requestId: string | null; found: Candidate[] }>();
    for (const row of [...byRequest, ...byKey]) {
      const id = Number(row.e_id);
      let entry = pending.get(id);
      if (entry === undefined) {
        entry = { eventTime: row.e_event_time, requestId: row.e_request_id, found: [] };
        pending.set(id, entry);
      }
      entry.found.push(joinedCandidate(row));
    }
    const ties: { id: number; status: string; tied: Candidate }[] = [];
    for (const [id, entry] of pending) {
      const tied = eventPrediction(entry.found, { requestId: entry.requestId, row: 0, model: null, key: null }, entry.eventTime);
      if (tied !== undefined) ties.push({ id, status: judge([tied], entry.eventTime, horizonMs).status, tied });
    }
    ties.sort((a, b) => a.id - b.id);
    for (let start = 0; start < ties.length; start += JOIN_CHUNK) {
      const chunk = ties.slice(start, start + JOIN_CHUNK);
      await db
        .updateTable("business_events")
        .set({
          status: caseById(chunk.map((t) => [t.id, t.status])),
          model: caseById(chunk.map((t) => [t.id, t.tied.model])),
          version: caseById(chunk.map((t) => [t.id, t.tied.version])),
          variant: caseById(chunk.map((t) => [t.id, t.tied.variant])),
          prediction_at: caseById(chunk.map((t) => [t.id, t.tied.at])),
        })
        .where(
          "id",
          "in",
          chunk.map((t) => t.id),
        )
        .where("status", "=", "pending")
        .execute();
    }
  }

  async joined(query: PredictionQuery): Promise<JoinedPrediction[]> {
    const where = inRange(query, "at");
    const rows = await this.#read(() => {
      let select = this.#db
        .selectFrom("prediction_log")
        .select(["request_id", "row", "model", "version", "variant", "at", "prediction", "scores", "actual", "actual_at"])
        .where(where);
      if (query.withOutcome === true) select = select.where("actual", "is not", null);
      return select.orderBy("at").orderBy("id").execute();
    });
    return rows.map((row) => ({
      requestId: row.request_id,
      row: row.row,
      model: row.model,
      version: row.version,
      variant: row.variant as Variant | null,
      at: row.at,
      prediction: labelOrValue(row.prediction, "prediction"),
      scores: row.scores === null ? null : parseJson<number[]>(row.scores, "scores"),
      actual: labelOrValue(row.actual, "actual"),
      actualAt: row.actual_at,
    }));
  }

  async countPredictions(query: PredictionQuery): Promise<number> {
    const where = inRange(query, "at");
    const row = await this.#read(() => {
      let select = this.#db
        .selectFrom("prediction_log")
        .select((eb) => eb.fn.countAll<string | number>().as("count"))
        .where(where);
      if (query.withOutcome === true) select = select.where("actual", "is not", null);
      return select.executeTakeFirst();
    });
    return Number(row?.count ?? 0);
  }

  async eventTotals(query: PredictionQuery): Promise<Record<string, { count: number; sum: number }>> {
    const where = inRange(query, "prediction_at");
    const rows = await this.#read(() =>
      this.#db
        .selectFrom("business_events")
        .select((eb) => ["name", eb.fn.countAll<string | number>().as("count"), eb.fn.sum<string | number | null>("value").as("sum")])
        .where("status", "=", "matched")
        .where(where)
        .groupBy("name")
        .orderBy("name")
        .execute(),
    );
    const totals: Record<string, { count: number; sum: number }> = {};
    for (const row of rows) totals[row.name] = { count: Number(row.count), sum: Number(row.sum ?? 0) };
    return totals;
  }

  async joinStats(): Promise<{ outcomes: JoinStats; events: JoinStats }> {
    const [outcomes, events] = await this.#read(() =>
      Promise.all([
        this.#db.selectFrom("outcomes").select((eb) => ["status", eb.fn.countAll<string | number>().as("count")]).groupBy("status").execute(),
        this.#db.selectFrom("business_events").select((eb) => ["status", eb.fn.countAll<string | number>().as("count")]).groupBy("status").execute(),
      ]),
    );
    const tally = (rows: readonly { status: string; count: string | number }[]): JoinStats => {
      const stats = emptyStats();
      for (const row of rows) {
        if ((STATUSES as readonly string[]).includes(row.status)) stats[row.status as OutcomeStatus] = Number(row.count);
      }
      return stats;
    };
    return { outcomes: tally(outcomes), events: tally(events) };
  }

  async *exportPredictions(
    query: Omit<PredictionQuery, "version"> & { version?: number; withOutcomeOnly?: boolean; limit?: number },
  ): AsyncGenerator<ExportedPrediction> {
    const where = inRange(query, "at");
    if (query.limit !== undefined && (!Number.isInteger(query.limit) || query.limit < 0)) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `limit must be a non-negative integer, got ${String(query.limit)}`, { field: "limit" });
    }
    let remaining = query.limit ?? Number.POSITIVE_INFINITY;
    let after = 0;
    while (remaining > 0) {
      const pageSize = Math.min(EXPORT_PAGE_ROWS, remaining);
      const rows = await this.#read(() => {
        let select = this.#db
          .selectFrom("prediction_log")
          .select(["id", "request_id", "row", "model", "version", "variant", "key", "at", "inputs", "outputs", "prediction", "scores", "actual", "actual_at"])
          .where(where)
          .where("id", ">", after);
        if (query.withOutcomeOnly === true) select = select.where("actual", "is not", null);
        return select.orderBy("id").limit(pageSize).execute();
      });
      for (const row of rows) {
        yield {
          requestId: row.request_id,
          row: row.row,
          model: row.model,
          version: row.version,
          variant: row.variant as Variant | null,
          at: row.at,
          key: row.key,
          inputs: row.inputs === null ? null : parseJson<Record<string, unknown>>(row.inputs, "inputs"),
          outputs: parseJson<Record<string, unknown>>(row.outputs, "outputs"),
          prediction: labelOrValue(row.prediction, "prediction"),
          scores: row.scores === null ? null : parseJson<number[]>(row.scores, "scores"),
          actual: labelOrValue(row.actual, "actual"),
          actualAt: row.actual_at,
        };
      }
      remaining -= rows.length;
      const last = rows.at(-1);
      if (last === undefined || rows.length < pageSize) break;
      after = Number(last.id);
    }
  }

  async activeVersions(start: string, end: string): Promise<{ model: string; version: number; variants: (Variant | null)[] }[]> {
    const from = isoText(start, "start");
    const to = isoText(end, "end");
    const rows = await this.#read(async () => {
      // Candidates: the summary's versions whose span meets the range (a handful of rows, not days of predictions).
      const candidates = await this.#db
        .selectFrom("prediction_versions")
        .select(["model", "version", "variant", "first_at", "last_at"])
        .where("last_at", ">=", from)
        .where("first_at", "<", to)
        .execute();
      // Each confirmed by one probe of prediction_log_version_at_ix: a span meeting the range does not prove a
      // prediction in it (pruning leaves spans wider than what is left; a variant may pause and resume). All of a
      // variant's predictions lie within its span, so the probe is clipped to it and reads backwards from the
      // earlier of its end and the range's: `last_at` is a logged prediction, so the first row read usually answers.
      // (One bound per side: given `at < ? and at <= ?`, SQLite seeks by the first and only filters by the second.)
      const confirmed = await Promise.all(
        candidates.map(async (candidate) => {
          const hit = await this.#db
            .selectFrom("prediction_log")
            .select(sql<number>`1`.as("one"))
            .where("model", "=", candidate.model)
            .where("version", "=", candidate.version)
            .where("at", ">=", candidate.first_at > from ? candidate.first_at : from)
            .where((eb) => (candidate.last_at < to ? eb("at", "<=", candidate.last_at) : eb("at", "<", to)))
            .where((eb) => (candidate.variant === "" ? eb("variant", "is", null) : eb("variant", "=", candidate.variant)))
            .orderBy("at", "desc")
            .limit(1)
            .executeTakeFirst();
          return hit === undefined ? undefined : { model: candidate.model, version: candidate.version, variant: candidate.variant === "" ? null : candidate.variant };
        }),
      );
      return confirmed.filter((row) => row !== undefined);
    });
    const byVersion = new Map<string, { model: string; version: number; variants: (Variant | null)[] }>();
    for (const row of rows) {
      const id = `${row.model}\u0000${row.version}`;
      let entry = byVersion.get(id);
      if (entry === undefined) {
        entry = { model: row.model, version: row.version, variants: [] };
        byVersion.set(id, entry);
      }
      entry.variants.push(row.variant as Variant | null);
    }
    const variantRank = (v: Variant | null) => (v === null ? "" : v);
    return [...byVersion.values()]
      .map((entry) => ({ ...entry, variants: entry.variants.sort((a, b) => variantRank(a).localeCompare(variantRank(b))) }))
      .sort((a, b) => (a.model === b.model ? a.version - b.version : a.model < b.model ? -1 : 1));
  }

  async variantCounts(rolloutId: string, start?: string, end?: string): Promise<Partial<Record<Variant, number>>> {
    const from = start === undefined ? undefined : isoText(start, "start");
    const to = end === undefined ? undefined : isoText(end, "end");
    const rows = await this.#read(() => {
      let select = this.#db
        .selectFrom("prediction_log")
        .select((eb) => ["variant", eb.fn.countAll<string | number>().as("count")])
        .where("rollout_id", "=", rolloutId)
        .where("variant", "is not", null);
      if (from !== undefined) select = select.where("at", ">=", from);
      if (to !== undefined) select = select.where("at", "<", to);
      return select.groupBy("variant").execute();
    });
    const counts: Partial<Record<Variant, number>> = {};
    for (const row of rows) {
      if (row.variant === "champion" || row.variant === "challenger" || row.variant === "shadow") counts[row.variant] = Number(row.count);
    }
    return counts;
  }

  /** Returns the number of prediction rows deleted. */
  async prune(before: Date): Promise<number> {
    const cutoff = isoText(before, "before");
    return this.store.write(async (trx) => {
      const db = trx.withTables<FeedbackTables>();
      const deleted = await db.deleteFrom("prediction_log").where("at", "<", cutoff).executeTakeFirst();
      await db
        .deleteFrom("outcomes as o")
        .where("o.updated_at", "<", cutoff)
        .where((eb) =>
          eb.not(
            eb.exists(
              eb
                .selectFrom("prediction_log as p")
                .select(sql<number>`1`.as("one"))
                .where((inner) =>
                  inner.or([
                    inner.and([inner("o.request_id", "is not", null), inner("p.request_id", "=", inner.ref("o.request_id")), inner("p.row", "=", inner.ref("o.row"))]),
                    inner.and([inner("o.request_id", "is", null), inner("p.model", "=", inner.ref("o.model")), inner("p.key", "=", inner.ref("o.key"))]),
                  ]),
                ),
            ),
          ),
        )
        .execute();
      await db
        .deleteFrom("business_events")
        .where("received_at", "<", cutoff)
        .where((eb) => eb.or([eb("prediction_at", "is", null), eb("prediction_at", "<", cutoff)]))
        .execute();
      // The summary: a version whose newest prediction went has none left; the others' oldest is now at or after
      // the cutoff. (The cutoff rather than each version's min(at): as tight in practice, no scan, and it cannot
      // miss a prediction a concurrent PostgreSQL writer commits meanwhile, which a min read here would not see.)
      await db.deleteFrom("prediction_versions").where("last_at", "<", cutoff).execute();
      await db.updateTable("prediction_versions").set({ first_at: cutoff }).where("first_at", "<", cutoff).execute();
      return Number(deleted.numDeletedRows);
    });
  }

  async #read<T>(query: () => Promise<T>): Promise<T> {
    try {
      return await query();
    } catch (error) {
      throw mapStoreError(this.store.location, error);
    }
  }
}
