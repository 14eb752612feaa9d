import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MlshipError } from "../../src/core/index.js";
import { SqlPredictionStore } from "../../src/feedback/store.js";
import type { JoinOptions, PredictionRecord, Variant } from "../../src/feedback/types.js";
import type { SqlStore } from "../../src/store/index.js";
import { freshPostgres, freshSqlite, postgresAdmin } from "../helpers/sql-stores.js";

interface Backend {
  open(): Promise<SqlStore>;
  dispose(): Promise<void>;
}

const T0 = Date.parse("2026-12-01T10:00:00.000Z");
const HOUR = 3_600_000;
const MINUTE = 60_000;

function iso(offsetMs: number): string {
  return new Date(T0 + offsetMs).toISOString();
}

function record(fields: Partial<PredictionRecord> & Pick<PredictionRecord, "requestId" | "model">): PredictionRecord {
  return {
    row: 0,
    version: 1,
    variant: null,
    rolloutId: null,
    key: null,
    at: iso(0),
    protocol: "rest",
    inputs: JSON.stringify({ x: 1.5 }),
    inputsHash: null,
    outputs: JSON.stringify({ label: "yes", probabilities: [0.2, 0.8] }),
    prediction: "yes",
    scores: [0.2, 0.8],
    latencyMs: 1.25,
    ...fields,
  };
}

/** Join options at a given instant: horizon 1 h, pending timeout 1 h unless set. */
function joinAt(offsetMs: number, overrides: Partial<JoinOptions> = {}): JoinOptions {
  return { horizonMs: HOUR, pendingMs: HOUR, now: new Date(T0 + offsetMs), ...overrides };
}

function range(model: string, version: number, variant?: Variant) {
  return { model, version, ...(variant === undefined ? {} : { variant }), start: iso(-24 * HOUR), end: iso(24 * HOUR) };
}

async function countRows(store: SqlStore, table: "outcomes" | "business_events" | "prediction_log", model?: string): Promise<number> {
  const db = store.db.withTables<Record<typeof table, { model: string | null }>>();
  let query = db.selectFrom(table).select((eb) => eb.fn.countAll<string | number>().as("n"));
  if (model !== undefined) query = query.where("model", "=", model);
  const row = await query.executeTakeFirstOrThrow();
  return Number(row.n);
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

function suite(name: string, backend: () => Promise<Backend>): void {
  describe(`SqlPredictionStore on ${name}`, () => {
    let current: Backend;
    let store: SqlStore;
    let predictions: SqlPredictionStore;

    beforeAll(async () => {
      current = await backend();
      store = await current.open();
      predictions = new SqlPredictionStore(store, { now: () => new Date(T0) });
    });
    afterAll(async () => {
      await current.dispose();
    });

    it("inserts predictions once: a replayed batch logs nothing twice", async () => {
      const batch = [0, 1, 2].map((row) => record({ requestId: "ins-1", model: "ins", row, prediction: row === 1 ? 3.5 : "yes" }));
      expect(await predictions.insertPredictions(batch)).toBe(3);
      const again = [...batch, record({ requestId: "ins-1", model: "ins", version: 2, variant: "shadow" }), batch[0]!];
      expect(await predictions.insertPredictions(again)).toBe(1);
      expect(await countRows(store, "prediction_log", "ins")).toBe(4);
      // A latency the logger could not measure must not fail the whole batch.
      expect(await predictions.insertPredictions([record({ requestId: "ins-nan", model: "ins-nan", latencyMs: Number.NaN })])).toBe(1);
      const joined = await predictions.joined(range("ins", 1));
      expect(joined.map((p) => [p.row, p.prediction, p.scores, p.actual])).toEqual([
        [0, "yes", [0.2, 0.8], null],
        [1, 3.5, [0.2, 0.8], null],
        [2, "yes", [0.2, 0.8], null],
      ]);
    });

    it("inserts 10k rows quickly in batches", async () => {
      const rows = Array.from({ length: 10_000 }, (_, i) =>
        record({ requestId: `bulk-${Math.floor(i / 8)}`, row: i % 8, model: "bulk", at: iso(i * 10), key: `k${i}` }),
      );
      const started = performance.now();
      expect(await predictions.insertPredictions(rows)).toBe(10_000);
      const elapsed = performance.now() - started;
      // Well under a second on an idle machine; the bound leaves room for a busy shared CI box.
      expect(elapsed).toBeLessThan(name === "SQLite" ? 2000 : 5000);
      expect(await countRows(store, "prediction_log", "bulk")).toBe(10_000);
    });

    it("joins an outcome by request id to the answered prediction and its shadow copy", async () => {
      await predictions.insertPredictions([
        record({ requestId: "req-a", model: "rq", version: 1, variant: "champion", rolloutId: "ro-1" }),
        record({ requestId: "req-a", model: "rq", version: 2, variant: "shadow", rolloutId: "ro-1", at: iso(20) }),
        record({ requestId: "req-a", model: "rq", row: 1, version: 1, variant: "champion", rolloutId: "ro-1" }),
      ]);
      const result = await predictions.ingestOutcomes([{ request_id: "req-a", actual: "no", event_time: iso(10 * MINUTE) }], joinAt(11 * MINUTE));
      expect(result).toEqual({ accepted: 1, matched: 1, pending: 0, late: 0, rejected: [] });
      const champion = await predictions.joined(range("rq", 1, "champion"));
      expect(champion.map((p) => [p.row, p.actual, p.actualAt])).toEqual([
        [0, "no", iso(10 * MINUTE)],
        [1, null, null],
      ]);
      const shadow = await predictions.joined(range("rq", 2));
      expect(shadow.map((p) => [p.variant, p.actual])).toEqual([["shadow", "no"]]);
      expect(await predictions.variantCounts("ro-1")).toEqual({ champion: 2, shadow: 1 });
      expect(await predictions.variantCounts("ro-1", iso(10), iso(HOUR))).toEqual({ shadow: 1 });
    });

    it("joins a keyed outcome to each version's latest prediction before the event, within the horizon", async () => {
      await predictions.insertPredictions([
        record({ requestId: "key-1", model: "kd", key: "cust-1", at: iso(0) }),
        record({ requestId: "key-2", model: "kd", key: "cust-1", at: iso(10 * MINUTE) }),
        record({ requestId: "key-3", model: "kd", key: "cust-1", at: iso(2 * HOUR) }),
        record({ requestId: "key-4", model: "kd", key: "cust-1", version: 2, at: iso(5 * MINUTE) }),
        record({ requestId: "key-5", model: "kd", key: "cust-2", at: iso(12 * MINUTE) }),
      ]);
      const result = await predictions.ingestOutcomes([{ model: "kd", key: "cust-1", actual: 1, event_time: iso(30 * MINUTE) }], joinAt(31 * MINUTE));
      expect(result).toMatchObject({ accepted: 1, matched: 1, pending: 0, late: 0 });
      const v1 = await predictions.joined(range("kd", 1));
      expect(v1.map((p) => [p.requestId, p.actual])).toEqual([
        ["key-1", null],
        ["key-2", 1],
        ["key-5", null],
        ["key-3", null],
      ]);
      const v2 = await predictions.joined(range("kd", 2));
      expect(v2.map((p) => [p.requestId, p.actual])).toEqual([["key-4", 1]]);

      // A prediction made within the clock-skew allowance after the event still counts as the one it answers.
      await predictions.insertPredictions([record({ requestId: "key-6", model: "kd", key: "cust-3", at: iso(63 * MINUTE) })]);
      const skewed = await predictions.ingestOutcomes([{ model: "kd", key: "cust-3", actual: 0, event_time: iso(60 * MINUTE) }], joinAt(64 * MINUTE));
      expect(skewed.matched).toBe(1);
    });

    it("replaces the actual on a repost and never counts an outcome twice", async () => {
      await predictions.insertPredictions([
        record({ requestId: "rep-1", model: "rep", at: iso(0) }),
        record({ requestId: "rep-k1", model: "rep", key: "order-1", at: iso(0) }),
        record({ requestId: "rep-k2", model: "rep", key: "order-1", at: iso(20 * MINUTE) }),
      ]);
      const first = await predictions.ingestOutcomes(
        [
          { request_id: "rep-1", actual: "yes", event_time: iso(5 * MINUTE) },
          { model: "rep", key: "order-1", actual: 10, event_time: iso(30 * MINUTE) },
        ],
        joinAt(31 * MINUTE),
      );
      expect(first).toMatchObject({ accepted: 2, matched: 2 });
      const again = await predictions.ingestOutcomes(
        [
          { request_id: "rep-1", actual: "no", event_time: iso(6 * MINUTE) },
          // The event moved before the second prediction: the first one answers it now.
          { model: "rep", key: "order-1", actual: 7, event_time: iso(10 * MINUTE) },
        ],
        joinAt(32 * MINUTE),
      );
      expect(again).toMatchObject({ accepted: 2, matched: 2 });
      expect(await countRows(store, "outcomes", "rep")).toBe(1);
      const joined = await predictions.joined(range("rep", 1));
      expect(joined.map((p) => [p.requestId, p.actual, p.actualAt])).toEqual([
        ["rep-1", "no", iso(6 * MINUTE)],
        ["rep-k1", 7, iso(10 * MINUTE)],
        ["rep-k2", null, null],
      ]);
      expect(joined.filter((p) => p.actual !== null)).toHaveLength(2);
    });

    it("keeps an outcome that arrives after the horizon as late, off the prediction", async () => {
      await predictions.insertPredictions([record({ requestId: "late-1", model: "late", at: iso(0) }), record({ requestId: "late-2", model: "late", key: "k", at: iso(0) })]);
      const result = await predictions.ingestOutcomes(
        [
          { request_id: "late-1", actual: "yes", event_time: iso(2 * HOUR) },
          { model: "late", key: "k", actual: "no", event_time: iso(3 * HOUR) },
        ],
        joinAt(3 * HOUR),
      );
      expect(result).toMatchObject({ accepted: 2, matched: 0, pending: 0, late: 2 });
      expect((await predictions.joined(range("late", 1))).map((p) => p.actual)).toEqual([null, null]);

      // A repost that matched before and is late now takes its earlier actual off the prediction.
      await predictions.insertPredictions([record({ requestId: "late-3", model: "late", at: iso(0) })]);
      await predictions.ingestOutcomes([{ request_id: "late-3", actual: "yes", event_time: iso(MINUTE) }], joinAt(MINUTE));
      expect((await predictions.joined(range("late", 1))).find((p) => p.requestId === "late-3")?.actual).toBe("yes");
      const repost = await predictions.ingestOutcomes([{ request_id: "late-3", actual: "yes", event_time: iso(5 * HOUR) }], joinAt(5 * HOUR));
      expect(repost.late).toBe(1);
      expect((await predictions.joined(range("late", 1))).find((p) => p.requestId === "late-3")?.actual).toBeNull();
    });

    it("keeps an outcome pending until its prediction is logged, then joins it", async () => {
      const result = await predictions.ingestOutcomes(
        [
          { requestId: "pend-1", actual: true, eventTime: iso(MINUTE) },
          { model: "pend", key: "p-key", actual: false, event_time: iso(MINUTE) },
        ],
        joinAt(MINUTE),
      );
      expect(result).toMatchObject({ accepted: 2, matched: 0, pending: 2 });
      await predictions.insertPredictions([
        record({ requestId: "pend-1", model: "pend", at: iso(0) }),
        record({ requestId: "pend-1", model: "pend", version: 2, variant: "shadow", at: iso(0) }),
        record({ requestId: "pend-2", model: "pend", key: "p-key", at: iso(30_000) }),
      ]);
      const before = await predictions.joinStats();
      const after = await predictions.joinPending(joinAt(2 * MINUTE));
      expect(after.matched - before.outcomes.matched).toBe(2);
      expect(after.pending - before.outcomes.pending).toBe(-2);
      const v1 = await predictions.joined(range("pend", 1));
      // Booleans come back as 1 and 0.
      expect(v1.map((p) => [p.requestId, p.actual])).toEqual([
        ["pend-1", 1],
        ["pend-2", 0],
      ]);
      expect((await predictions.joined(range("pend", 2))).map((p) => p.actual)).toEqual([1]);
    });

    it("ages pending outcomes and events out to unmatched after the pending timeout", async () => {
      const early = joinAt(0);
      await predictions.ingestOutcomes([{ request_id: "never-1", actual: 1 }], early);
      await predictions.ingestEvents([{ name: "click", request_id: "never-1" }], early);
      const before = await predictions.joinStats();
      // Still within the timeout: stays pending.
      const within = await predictions.joinPending(joinAt(30 * MINUTE));
      expect(within.unmatched).toBe(before.outcomes.unmatched);
      const after = await predictions.joinPending(joinAt(2 * HOUR));
      expect(after.unmatched).toBeGreaterThan(before.outcomes.unmatched);
      expect(after.pending).toBe(0);
      expect((await predictions.joinStats()).events.pending).toBe(0);
    });

    it("rejects invalid items by field and stores the valid ones", async () => {
      await predictions.insertPredictions([record({ requestId: "rej-1", model: "rej" })]);
      const result = await predictions.ingestOutcomes(
        [
          { actual: 1 },
          { request_id: "rej-1", actual: "yes", event_time: iso(MINUTE) },
          { request_id: "rej-1" },
          { request_id: "rej-1", row: -2, actual: 1 },
          { request_id: "rej-1", actual: 1, event_time: "last tuesday" },
          "not an object",
          { model: "rej", actual: 1 },
        ],
        joinAt(MINUTE),
      );
      expect(result.accepted).toBe(1);
      expect(result.matched).toBe(1);
      expect(result.rejected.map((r) => [r.index, r.field])).toEqual([
        [0, "request_id"],
        [2, "actual"],
        [3, "row"],
        [4, "event_time"],
        [5, "item"],
        [6, "key"],
      ]);
      expect(result.rejected.every((r) => r.message.length > 0)).toBe(true);
      await expect(predictions.ingestOutcomes([{ request_id: "rej-1", actual: 1 }], { horizonMs: Number.NaN, pendingMs: HOUR })).rejects.toMatchObject({
        code: "MLSHIP_ERR_INPUT_INVALID",
        field: "horizonMs",
      });
      const nothing = await predictions.ingestOutcomes([{}], joinAt(MINUTE));
      expect(nothing).toEqual({ accepted: 0, matched: 0, pending: 0, late: 0, rejected: [{ index: 0, field: "request_id", message: "request_id, or model and key, is required" }] });
    });

    it("counts business events per version and variant, once per event id", async () => {
      await predictions.insertPredictions([
        record({ requestId: "ev-1", model: "ev", version: 1, variant: "champion", at: iso(0) }),
        record({ requestId: "ev-1", model: "ev", version: 2, variant: "shadow", at: iso(0) }),
        record({ requestId: "ev-2", model: "ev", version: 2, variant: "challenger", key: "cart-9", at: iso(MINUTE) }),
        record({ requestId: "ev-3", model: "ev", version: 1, variant: "champion", at: iso(0) }),
      ]);
      const posted = await predictions.ingestEvents(
        [
          { event_id: "click-1", name: "click", request_id: "ev-1", event_time: iso(2 * MINUTE) },
          { event_id: "click-1", name: "click", request_id: "ev-1", event_time: iso(2 * MINUTE) },
          { name: "purchase", value: 2.5, request_id: "ev-1", event_time: iso(3 * MINUTE) },
          { name: "purchase", value: 10, model: "ev", key: "cart-9", event_time: iso(4 * MINUTE) },
          { name: "purchase", value: 1, request_id: "ev-3", event_time: iso(3 * HOUR) },
          { name: "click", request_id: "ev-missing" },
          { name: "", request_id: "ev-1" },
        ],
        joinAt(5 * MINUTE),
      );
      expect(posted).toMatchObject({ accepted: 6, matched: 4, pending: 1, late: 1 });
      expect(posted.rejected).toEqual([{ index: 6, field: "name", message: "name must not be empty" }]);
      expect(await predictions.eventTotals(range("ev", 1))).toEqual({ click: { count: 1, sum: 1 }, purchase: { count: 1, sum: 2.5 } });
      expect(await predictions.eventTotals(range("ev", 1, "champion"))).toEqual({ click: { count: 1, sum: 1 }, purchase: { count: 1, sum: 2.5 } });
      expect(await predictions.eventTotals(range("ev", 2))).toEqual({ purchase: { count: 1, sum: 10 } });
      expect(await predictions.eventTotals(range("ev", 2, "shadow"))).toEqual({});

      const repost = await predictions.ingestEvents([{ event_id: "click-1", name: "click", request_id: "ev-1" }], joinAt(6 * MINUTE));
      expect(repost).toMatchObject({ accepted: 1, matched: 1 });
      expect((await predictions.eventTotals(range("ev", 1))).click).toEqual({ count: 1, sum: 1 });

      // A pending event is tied later, when its prediction arrives.
      await predictions.ingestEvents([{ event_id: "late-click", name: "click", request_id: "ev-4", event_time: iso(7 * MINUTE) }], joinAt(7 * MINUTE));
      await predictions.insertPredictions([
        record({ requestId: "ev-4", model: "ev", version: 2, variant: "challenger", at: iso(6 * MINUTE) }),
        record({ requestId: "ev-4", model: "ev", version: 1, variant: "shadow", at: iso(6 * MINUTE) }),
      ]);
      await predictions.joinPending(joinAt(8 * MINUTE));
      expect(await predictions.eventTotals(range("ev", 2, "challenger"))).toEqual({ click: { count: 1, sum: 1 }, purchase: { count: 1, sum: 10 } });
      expect((await predictions.eventTotals(range("ev", 1))).click).toEqual({ count: 1, sum: 1 });
    });

    it("handles posts larger than one join step, the last item of a target winning", async () => {
      await predictions.insertPredictions(
        Array.from({ length: 800 }, (_, i) => record({ requestId: `big-${i}`, model: "big", key: `bk-${i}`, at: iso(i) })),
      );
      const before = await predictions.joinStats();
      const outcomes = [
        ...Array.from({ length: 500 }, (_, i) => ({ request_id: `big-${i}`, actual: i % 2, event_time: iso(MINUTE) })),
        ...Array.from({ length: 300 }, (_, i) => ({ model: "big", key: `bk-${500 + i}`, actual: "keyed", event_time: iso(MINUTE) })),
        { request_id: "big-0", actual: "last", event_time: iso(MINUTE) },
      ];
      expect(await predictions.ingestOutcomes(outcomes, joinAt(2 * MINUTE))).toMatchObject({ accepted: 801, matched: 801, pending: 0, rejected: [] });
      const after = await predictions.joinStats();
      expect(after.outcomes.matched - before.outcomes.matched).toBe(800);
      const joined = await predictions.joined(range("big", 1));
      expect(joined).toHaveLength(800);
      expect(joined[0]?.actual).toBe("last");
      expect(joined[1]?.actual).toBe(1);
      expect(joined[600]?.actual).toBe("keyed");
      expect(joined.every((p) => p.actual !== null && p.actualAt === iso(MINUTE))).toBe(true);

      const events = Array.from({ length: 450 }, (_, i) => ({ event_id: `big-ev-${i}`, name: "view", value: 2, request_id: `big-${i}`, event_time: iso(MINUTE) }));
      expect(await predictions.ingestEvents(events, joinAt(2 * MINUTE))).toMatchObject({ accepted: 450, matched: 450 });
      expect(await predictions.ingestEvents([...events, events[3]], joinAt(3 * MINUTE))).toMatchObject({ accepted: 451, matched: 451 });
      expect(await predictions.eventTotals(range("big", 1))).toEqual({ view: { count: 450, sum: 900 } });
    });

    it("lists active versions and exports predictions with inputs and outcomes, oldest first", async () => {
      const rows = Array.from({ length: 1200 }, (_, i) =>
        record({ requestId: `exp-${i}`, model: "exp", version: i % 2 === 0 ? 1 : 2, variant: i % 2 === 0 ? "champion" : "challenger", at: iso(i * 1000), inputs: JSON.stringify({ i }) }),
      );
      await predictions.insertPredictions(rows);
      await predictions.ingestOutcomes(
        [0, 2, 4, 1001].map((i) => ({ request_id: `exp-${i}`, actual: i })),
        joinAt(1200 * 1000),
      );
      const active = (await predictions.activeVersions(iso(0), iso(HOUR))).filter((v) => v.model === "exp");
      expect(active).toEqual([
        { model: "exp", version: 1, variants: ["champion"] },
        { model: "exp", version: 2, variants: ["challenger"] },
      ]);
      const all = await collect(predictions.exportPredictions({ model: "exp", start: iso(0), end: iso(HOUR) }));
      expect(all).toHaveLength(1200);
      expect(all.map((p) => (p.inputs as { i: number }).i)).toEqual(rows.map((_, i) => i));
      expect(all[0]).toMatchObject({ requestId: "exp-0", key: null, outputs: { label: "yes", probabilities: [0.2, 0.8] }, actual: 0 });
      const labelled = await collect(predictions.exportPredictions({ model: "exp", version: 1, start: iso(0), end: iso(HOUR), withOutcomeOnly: true }));
      expect(labelled.map((p) => [p.requestId, p.actual])).toEqual([
        ["exp-0", 0],
        ["exp-2", 2],
        ["exp-4", 4],
      ]);
      const limited = await collect(predictions.exportPredictions({ model: "exp", variant: "challenger", start: iso(0), end: iso(HOUR), limit: 600 }));
      expect(limited).toHaveLength(600);
      expect(limited.every((p) => p.version === 2)).toBe(true);
      await expect(collect(predictions.exportPredictions({ model: "exp", start: "not a date", end: iso(HOUR) }))).rejects.toMatchObject({
        code: "MLSHIP_ERR_INPUT_INVALID",
        field: "start",
      });
    });

    it("prunes old predictions with their outcomes and events", async () => {
      const old = -40 * 24 * HOUR;
      const oldStore = new SqlPredictionStore(store, { now: () => new Date(T0 + old) });
      await oldStore.insertPredictions([record({ requestId: "old-1", model: "prn", at: iso(old) }), record({ requestId: "new-1", model: "prn", at: iso(0) })]);
      await oldStore.ingestOutcomes([{ request_id: "old-1", actual: "yes", event_time: iso(old + MINUTE) }], joinAt(old + MINUTE));
      await oldStore.ingestEvents([{ name: "click", request_id: "old-1", event_time: iso(old + MINUTE) }], joinAt(old + MINUTE));
      await predictions.ingestOutcomes([{ request_id: "new-1", actual: "no", event_time: iso(MINUTE) }], joinAt(MINUTE));
      const deleted = await predictions.prune(new Date(T0 - 30 * 24 * HOUR));
      expect(deleted).toBe(1);
      const remaining = await collect(predictions.exportPredictions({ model: "prn", start: iso(old - HOUR), end: iso(HOUR) }));
      expect(remaining.map((p) => [p.requestId, p.actual])).toEqual([["new-1", "no"]]);
      const db = store.db.withTables<{ outcomes: { request_id: string | null }; business_events: { request_id: string | null } }>();
      expect(await db.selectFrom("outcomes").select("request_id").where("request_id", "in", ["old-1", "new-1"]).execute()).toEqual([{ request_id: "new-1" }]);
      expect(await db.selectFrom("business_events").select("request_id").where("request_id", "=", "old-1").execute()).toEqual([]);
    });

    it("reports a closed store as unavailable", async () => {
      const other = await current.open();
      const closed = new SqlPredictionStore(other);
      await other.close();
      await expect(closed.joined(range("any", 1))).rejects.toMatchObject({ code: "MLSHIP_ERR_STORE_UNAVAILABLE" });
      await expect(closed.ingestOutcomes([{ request_id: "x", actual: 1 }], joinAt(0))).rejects.toBeInstanceOf(MlshipError);
      await expect(closed.insertPredictions([record({ requestId: "x", model: "x" })])).rejects.toMatchObject({ code: "MLSHIP_ERR_STORE_UNAVAILABLE" });
    });
  });
}

suite("SQLite", () => freshSqlite("mlship-feedback"));

suite("PostgreSQL", async () => {
  const admin = await postgresAdmin();
  const database = await freshPostgres(admin, "mlship-feedback-pg");
  return {
    open: () => database.open(),
    async dispose() {
      await database.dispose();
      await admin.end();
    },
  };
});

describe("SqlPredictionStore with two replicas on one PostgreSQL database", () => {
  it("never duplicates outcomes or events posted by both at once", async () => {
    const admin = await postgresAdmin();
    const database = await freshPostgres(admin, "mlship-feedback-race");
    try {
      const first = new SqlPredictionStore(await database.open());
      const second = new SqlPredictionStore(await database.open());
      const records = Array.from({ length: 40 }, (_, i) =>
        record({ requestId: `race-${i}`, model: "race", key: `key-${i}`, version: 1, at: iso(0) }),
      );
      await first.insertPredictions(records);
      await Promise.all([first.insertPredictions(records), second.insertPredictions(records)]);
      const outcomes = [
        ...Array.from({ length: 40 }, (_, i) => ({ request_id: `race-${i}`, actual: i % 3, event_time: iso(MINUTE) })),
        ...Array.from({ length: 20 }, (_, i) => ({ model: "race", key: `key-${i}`, actual: "late-key", event_time: iso(MINUTE) })),
        ...Array.from({ length: 10 }, (_, i) => ({ request_id: `race-missing-${i}`, actual: 1 })),
      ];
      const events = Array.from({ length: 30 }, (_, i) => ({ event_id: `race-ev-${i}`, name: "click", request_id: `race-${i}` }));
      const options = joinAt(2 * MINUTE);
      const results = await Promise.all([
        first.ingestOutcomes(outcomes, options),
        second.ingestOutcomes([...outcomes].reverse(), options),
        first.ingestEvents(events, options),
        second.ingestEvents([...events].reverse(), options),
        first.ingestOutcomes(outcomes, options),
        second.ingestOutcomes(outcomes, options),
      ]);
      for (const result of results) expect(result.rejected).toEqual([]);
      const stats = await first.joinStats();
      expect(stats.outcomes).toEqual({ pending: 10, matched: 60, late: 0, unmatched: 0 });
      expect(stats.events).toEqual({ pending: 0, matched: 30, late: 0, unmatched: 0 });
      const joined = await second.joined(range("race", 1));
      expect(joined).toHaveLength(40);
      expect(joined.every((p) => p.actual !== null)).toBe(true);
      expect((await first.eventTotals(range("race", 1))).click).toEqual({ count: 30, sum: 1 * 30 });
    } finally {
      await database.dispose();
      await admin.end();
    }
  });
});
