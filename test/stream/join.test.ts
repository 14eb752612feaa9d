// The stream-stream join of predictions with outcomes (clicks): time-bounded matches on the key, watermark, late
// records, eviction, left-outer rows, the state bound, and state that survives a restart with redelivery.
import { describe, expect, it } from "vitest";
import { MlshipError } from "../../src/core/index.js";
import { StreamJoin } from "../../src/stream/join.js";
import type { JoinSpec, OutputRow, ScoredRecord, StreamRecord } from "../../src/stream/types.js";

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const SECOND = 1000;

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** A prediction `id` for `key` at `T0 + seconds`. */
function prediction(id: string, key: string | null, seconds: number, benign = 0.8): ScoredRecord {
  return {
    id,
    fields: { order_id: key, amount: 12.5 },
    key,
    eventTime: T0 + seconds * SECOND,
    origin: `orders #${id}`,
    model: "breast-cancer",
    version: 2,
    outputs: { label: benign >= 0.5 ? "benign" : "malignant", probabilities: [1 - benign, benign] },
    scoredAt: T0 + seconds * SECOND + 3,
  };
}

/** An outcome (a click) `id` for `key` at `T0 + seconds`. */
function outcome(id: string, key: string | null, seconds: number, clicked = true): StreamRecord {
  return {
    id,
    fields: { order_id: key, clicked, clicked_at: T0 + seconds * SECOND },
    key,
    eventTime: T0 + seconds * SECOND,
    origin: `clicks #${id}`,
  };
}

function spec(overrides: Partial<JoinSpec> = {}): JoinSpec {
  return {
    source: { kind: "folder", path: "/unused", maxFilesPerTrigger: 1, recursive: false },
    schema: {
      fields: [
        { name: "order_id", type: "string", nullable: false },
        { name: "clicked", type: "boolean", nullable: true },
        { name: "clicked_at", type: "timestamp", nullable: false },
      ],
      fromModel: false,
      key: "order_id",
      eventTime: "clicked_at",
      extra: "drop",
    },
    withinMs: 60 * SECOND,
    watermarkMs: 30 * SECOND,
    type: "inner",
    maxStateRecords: 1_000_000,
    sink: { kind: "jsonl", path: "/unused" },
    ...overrides,
  };
}

function ids(rows: readonly OutputRow[]): string[] {
  return rows.map((row) => row.id);
}

function catchError(action: () => unknown): MlshipError {
  try {
    action();
  } catch (error) {
    if (error instanceof MlshipError) return error;
    throw error;
  }
  throw new Error("expected an MlshipError");
}

describe("StreamJoin matching", () => {
  it("joins on the key within [prediction time, prediction time + withinMs] only", () => {
    const join = new StreamJoin(spec(), { stream: "orders" });
    const rows = join.process(
      [prediction("p1", "a", 0), prediction("p2", "b", 0)],
      [
        outcome("o-in", "a", 30),
        outcome("o-edge", "a", 60),
        outcome("o-after", "a", 61),
        outcome("o-before", "a", -1),
        outcome("o-same-time", "a", 0),
        outcome("o-other-key", "c", 10),
      ],
      0,
    );
    expect(ids(rows)).toEqual(["p1|o-in", "p1|o-edge", "p1|o-same-time"]);
    expect(rows[0]).toEqual({
      id: "p1|o-in",
      fields: {
        key: "a",
        prediction_id: "p1",
        outcome_id: "o-in",
        model: "breast-cancer",
        version: 2,
        prediction_time: iso(T0),
        outcome_time: iso(T0 + 30 * SECOND),
        label: "benign",
        probabilities: [expect.closeTo(0.2, 12) as unknown, 0.8],
        order_id: "a",
        clicked: true,
        clicked_at: T0 + 30 * SECOND,
      },
    });
  });

  it("matches across batches in either order, each pair once", () => {
    const join = new StreamJoin(spec(), { stream: "orders" });
    // The click comes first (another source's batch), the prediction in the next batch.
    expect(join.process([], [outcome("o1", "a", 20)], 0)).toEqual([]);
    expect(ids(join.process([prediction("p1", "a", 10)], [], 1))).toEqual(["p1|o1"]);
    // A second click for the same prediction, and a second prediction the first click also fits.
    expect(ids(join.process([prediction("p2", "a", 15)], [outcome("o2", "a", 40)], 2))).toEqual(["p2|o1", "p1|o2", "p2|o2"]);
    expect(join.process([prediction("p3", "z", 41)], [outcome("o3", "y", 41)], 3)).toEqual([]);
    expect(join.process([], [], 4)).toEqual([]);
  });

  it("prefixes outcome fields that collide with prediction columns, and carries request_id and row", () => {
    const join = new StreamJoin(spec(), { stream: "orders" });
    const logged = Object.assign(prediction("p1", "a", 0), { requestId: "stream:orders:0", row: 4 });
    const click: StreamRecord = { ...outcome("o1", "a", 5), fields: { order_id: "a", label: "malignant", key: "k", outcome_label: "x", clicked: false, clicked_at: T0 } };
    const [row] = join.process([logged], [click], 0);
    expect(row?.fields).toEqual({
      key: "a",
      prediction_id: "p1",
      outcome_id: "o1",
      model: "breast-cancer",
      version: 2,
      prediction_time: iso(T0),
      outcome_time: iso(T0 + 5 * SECOND),
      request_id: "stream:orders:0",
      row: 4,
      label: "benign",
      probabilities: [expect.closeTo(0.2, 12) as unknown, 0.8],
      order_id: "a",
      // `label` is the prediction's: the outcome's takes `outcome_label`, so the outcome's own `outcome_label` moves on.
      outcome_label: "malignant",
      outcome_outcome_label: "x",
      outcome_key: "k",
      clicked: false,
      clicked_at: T0,
    });
  });

  it("keeps typed-array outputs as plain arrays", () => {
    const join = new StreamJoin(spec(), { stream: "orders" });
    const typed = { ...prediction("p1", "a", 0), outputs: { probabilities: new Float32Array([0.25, 0.75]) } };
    const [row] = join.process([typed], [outcome("o1", "a", 1)], 0);
    expect(row?.fields.probabilities).toEqual([0.25, 0.75]);
    expect(JSON.parse(JSON.stringify(join.snapshot()))).toMatchObject({ predictions: [{ outputs: { probabilities: [0.25, 0.75] } }] });
  });
});

describe("StreamJoin watermark", () => {
  it("takes the min over the sides that have data, never going back, and drops records behind it", () => {
    const join = new StreamJoin(spec(), { stream: "orders" });
    expect(join.state()).toEqual({ stateRecords: 0, lateRecords: 0, watermark: null });
    // Only predictions so far: they alone set it (Spark: a side without data does not hold it back).
    join.process([prediction("p1", "a", 100)], [], 0);
    expect(join.state().watermark).toBe(T0 + 70 * SECOND);
    // Outcomes are behind: the min would be 20 s, but the watermark does not go back.
    join.process([], [outcome("o1", "a", 110), outcome("o0", "q", 50)], 1);
    expect(join.state().watermark).toBe(T0 + 70 * SECOND);
    expect(join.state().lateRecords).toBe(1);
    join.process([prediction("p2", "b", 300)], [outcome("o2", "b", 200)], 2);
    expect(join.state().watermark).toBe(T0 + 170 * SECOND);

    // Behind 170 s: late, even though a buffered record would match it.
    const rows = join.process([prediction("late-p", "b", 150)], [outcome("late-o", "b", 160), outcome("ok-o", "b", 310)], 3);
    expect(ids(rows)).toEqual(["p2|ok-o"]);
    expect(join.state().lateRecords).toBe(3);
  });

  it("evicts records that can no longer match as the watermark moves", () => {
    const join = new StreamJoin(spec(), { stream: "orders" });
    join.process([prediction("p1", "a", 0), prediction("p2", "b", 10)], [outcome("o1", "a", 5), outcome("o2", "c", 12)], 0);
    // Watermark -18 s: nothing can be evicted yet.
    expect(join.state().stateRecords).toBe(4);
    // Watermark 11 s: outcome o1 (5 s) can meet no future prediction; p1 can still get a click until 60 s.
    join.process([prediction("p3", "d", 41)], [outcome("o3", "d", 42)], 1);
    expect(join.state().watermark).toBe(T0 + 11 * SECOND);
    expect(join.state().stateRecords).toBe(5);
    // Watermark 65 s: p1 (0 + 60 < 65) and p2 (10 + 60 >= 65: kept), outcomes before 65 s all go.
    join.process([prediction("p4", "e", 95)], [outcome("o4", "e", 96)], 2);
    expect(join.state().watermark).toBe(T0 + 65 * SECOND);
    const snapshot = join.snapshot() as { predictions: Array<{ id: string }>; outcomes: Array<{ id: string }> };
    expect(snapshot.predictions.map((p) => p.id).sort()).toEqual(["p2", "p3", "p4"]);
    expect(snapshot.outcomes.map((o) => o.id).sort()).toEqual(["o4"]);
    expect(join.state().stateRecords).toBe(4);
    // Far ahead: everything older is gone.
    join.process([prediction("p5", "f", 1000)], [outcome("o5", "f", 1000)], 3);
    expect(join.state().stateRecords).toBe(2);
  });

  it("skips records with a null key but lets them move the watermark", () => {
    const join = new StreamJoin(spec(), { stream: "orders" });
    const rows = join.process([prediction("p-null", null, 100), prediction("p1", "a", 0)], [outcome("o-null", null, 100), outcome("o1", "a", 1)], 0);
    expect(ids(rows)).toEqual(["p1|o1"]);
    expect(join.unkeyed()).toBe(2);
    // The null-key records moved the watermark to 70 s, which expires p1 (bound 60 s) and o1.
    expect(join.state()).toEqual({ stateRecords: 0, lateRecords: 0, watermark: T0 + 70 * SECOND });
  });
});

describe("StreamJoin leftOuter", () => {
  it("emits each unmatched prediction once, when the watermark passes its bound", () => {
    const join = new StreamJoin(spec({ type: "leftOuter" }), { stream: "orders" });
    expect(ids(join.process([prediction("p1", "a", 0), prediction("p2", "b", 0), prediction("p3", "c", 50)], [outcome("o1", "a", 10)], 0))).toEqual(["p1|o1"]);
    // Watermark 60 s: p2's bound (60 s) is not passed yet.
    expect(join.process([prediction("p4", "d", 90)], [outcome("o4", "x", 90)], 1)).toEqual([]);
    // Watermark 61 s: p2 expires unmatched; p1 matched, so it expires silently.
    const rows = join.process([prediction("p5", "e", 91)], [outcome("o5", "x", 91)], 2);
    expect(rows).toEqual([
      {
        id: "p2|",
        fields: {
          key: "b",
          prediction_id: "p2",
          outcome_id: null,
          model: "breast-cancer",
          version: 2,
          prediction_time: iso(T0),
          outcome_time: null,
          label: "benign",
          probabilities: [expect.closeTo(0.2, 12) as unknown, 0.8],
          order_id: null,
          clicked: null,
          clicked_at: null,
        },
      },
    ]);
    // p3 (bound 110 s) expires later, once; then nothing more.
    expect(ids(join.process([prediction("p6", "f", 200)], [outcome("o6", "x", 200)], 3))).toEqual(["p3|", "p4|", "p5|"]);
    expect(join.process([], [outcome("o7", "x", 205)], 4)).toEqual([]);
    expect(join.state().stateRecords).toBe(3);
  });
});

describe("StreamJoin state bound", () => {
  it("evicts the oldest records by event time beyond maxStateRecords and counts them", () => {
    const join = new StreamJoin(spec({ maxStateRecords: 3, watermarkMs: 1000 * SECOND, type: "leftOuter" }), { stream: "orders" });
    join.process([prediction("p1", "a", 1), prediction("p2", "b", 5)], [outcome("o1", "c", 2), outcome("o2", "x", 6), outcome("o3", "e", 3)], 0);
    expect(join.evicted()).toBe(2);
    expect(join.state().stateRecords).toBe(3);
    const snapshot = join.snapshot() as { predictions: Array<{ id: string }>; outcomes: Array<{ id: string }> };
    expect(snapshot.predictions.map((p) => p.id)).toEqual(["p2"]);
    expect(snapshot.outcomes.map((o) => o.id).sort()).toEqual(["o2", "o3"]);
    // p1 was evicted: an outcome for it finds nothing, and no unmatched row is emitted for it (left outer).
    expect(join.process([], [outcome("o4", "a", 4)], 1)).toEqual([]);
    expect(join.evicted()).toBe(3);
    const far = join.process([prediction("p9", "z", 5000)], [outcome("o9", "z", 5000)], 2);
    expect(ids(far)).toEqual(["p9|o9", "p2|"]);
  });
});

describe("StreamJoin state bound, many records", () => {
  it("keeps exactly the newest maxStateRecords records, whatever order they came in", () => {
    const join = new StreamJoin(spec({ maxStateRecords: 150, watermarkMs: 1_000_000 * SECOND }), { stream: "orders" });
    const times: number[] = [];
    for (let n = 0; n < 1200; n += 1) times.push((n * 7919) % 1200);
    for (let batch = 0; batch < 12; batch += 1) {
      const slice = times.slice(batch * 100, batch * 100 + 100);
      // Several records share a time (ties are broken by id).
      join.process(
        slice.filter((t) => t % 2 === 0).map((t) => prediction(`p${t}`, `kp${t}`, Math.floor(t / 3))),
        slice.filter((t) => t % 2 === 1).map((t) => outcome(`o${t}`, `ko${t}`, Math.floor(t / 3))),
        batch,
      );
      expect(join.state().stateRecords).toBe(Math.min(150, (batch + 1) * 100));
    }
    expect(join.evicted()).toBe(1200 - 150);
    const snapshot = join.snapshot() as { predictions: Array<{ id: string; eventTime: number }>; outcomes: Array<{ id: string; eventTime: number }> };
    const keptIds = [...snapshot.predictions, ...snapshot.outcomes].map((record) => record.id).sort();
    // A record evicted once had 150 newer ones held, so what is left is the 150 newest of all (ties by id).
    const all = times.map((t) => ({ id: t % 2 === 0 ? `p${t}` : `o${t}`, eventTime: Math.floor(t / 3) }));
    all.sort((a, b) => a.eventTime - b.eventTime || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    expect(keptIds).toEqual(all.slice(-150).map((record) => record.id).sort());
  });
});

describe("StreamJoin state across restarts", () => {
  /** Ten batches of predictions and clicks over ~10 minutes, clicks 0-80 s after their prediction, some late. */
  function batches(): Array<{ predictions: ScoredRecord[]; outcomes: StreamRecord[] }> {
    const all: Array<{ predictions: ScoredRecord[]; outcomes: StreamRecord[] }> = [];
    for (let batch = 0; batch < 10; batch += 1) {
      const predictions: ScoredRecord[] = [];
      const outcomes: StreamRecord[] = [];
      for (let i = 0; i < 5; i += 1) {
        const n = batch * 5 + i;
        predictions.push(prediction(`p${n}`, `k${n % 13}`, batch * 60 + ((i * 23) % 50), ((n * 31) % 100) / 100));
        // Clicks for predictions of the previous batch (keys repeat, so some clicks match several predictions).
        const previous = (batch - 1) * 5 + i;
        if (previous >= 0 && previous % 3 !== 0) outcomes.push(outcome(`o${previous}`, `k${previous % 13}`, (batch - 1) * 60 + ((i * 23) % 50) + ((previous * 17) % 80)));
      }
      if (batch === 6) outcomes.push(outcome("late", "k1", 10));
      all.push({ predictions, outcomes });
    }
    return all;
  }

  function run(join: StreamJoin, input: ReturnType<typeof batches>, from: number, to: number): OutputRow[] {
    const rows: OutputRow[] = [];
    for (let index = from; index < to; index += 1) {
      const batch = input[index];
      if (batch !== undefined) rows.push(...join.process(batch.predictions, batch.outcomes, index));
    }
    return rows;
  }

  for (const type of ["inner", "leftOuter"] as const) {
    it(`${type}: restored from a JSON snapshot gives the same rows, and redelivered batches add no pair twice`, () => {
      const input = batches();
      const reference = new StreamJoin(spec({ type }), { stream: "orders" });
      const expected = run(reference, input, 0, input.length);
      expect(expected.filter((row) => row.fields.outcome_id !== null).length).toBeGreaterThan(10);
      expect(reference.state().lateRecords).toBeGreaterThan(0);
      if (type === "leftOuter") expect(expected.some((row) => row.id.endsWith("|"))).toBe(true);

      // Plain restart between batches.
      const first = new StreamJoin(spec({ type }), { stream: "orders" });
      const before = run(first, input, 0, 5);
      const restarted = new StreamJoin(spec({ type }), { stream: "orders" });
      restarted.restore(JSON.parse(JSON.stringify(first.snapshot())));
      expect(restarted.state()).toEqual(first.state());
      expect([...before, ...run(restarted, input, 5, input.length)]).toEqual(expected);
      expect(restarted.state()).toEqual(reference.state());
      expect(restarted.evicted()).toBe(reference.evicted());

      // Crash after saving batch 6's state, before the sources committed batches 5 and 6: they come again.
      const crashed = new StreamJoin(spec({ type }), { stream: "orders" });
      const written = run(crashed, input, 0, 7);
      const recovered = new StreamJoin(spec({ type }), { stream: "orders" });
      recovered.restore(JSON.parse(JSON.stringify(crashed.snapshot())));
      const savedWatermark = recovered.state().watermark ?? Number.POSITIVE_INFINITY;
      const notLate = input.slice(5, 7).flatMap((batch) => [...batch.predictions, ...batch.outcomes]).filter((record) => record.eventTime >= savedWatermark);
      expect(notLate.length).toBeGreaterThan(3);
      const replayed = run(recovered, input, 5, 7);
      // The redelivered batches hold records still buffered (not late): only dedup keeps their pairs from repeating.
      expect(replayed).toEqual([]);
      written.push(...run(recovered, input, 7, input.length));
      expect(ids(written)).toEqual(ids(expected));
      expect(new Set(ids(written)).size).toBe(written.length);
    });
  }

  it("refuses a malformed snapshot with MLSHIP_ERR_STREAM_CHECKPOINT", () => {
    const join = new StreamJoin(spec(), { stream: "orders" });
    expect(catchError(() => join.restore({ format: 1, predictions: [{ id: 1 }] })).code).toBe("MLSHIP_ERR_STREAM_CHECKPOINT");
    expect(catchError(() => join.restore("nope")).code).toBe("MLSHIP_ERR_STREAM_CHECKPOINT");
  });
});

describe("StreamJoin configuration", () => {
  it("refuses bad bounds, watermark, type and state limit with MLSHIP_ERR_CONFIG_INVALID", () => {
    const cases: Array<[Partial<JoinSpec>, string]> = [
      [{ withinMs: -1 }, "join.withinMs"],
      [{ withinMs: Number.NaN }, "join.withinMs"],
      [{ watermarkMs: -5 }, "join.watermarkMs"],
      [{ type: "fullOuter" as "inner" }, "join.type"],
      [{ maxStateRecords: 0 }, "join.maxStateRecords"],
      [{ maxStateRecords: 1.5 }, "join.maxStateRecords"],
    ];
    for (const [overrides, field] of cases) {
      const error = catchError(() => new StreamJoin(spec(overrides), { stream: "orders" }));
      expect(error.code).toBe("MLSHIP_ERR_CONFIG_INVALID");
      expect(error.field).toBe(field);
    }
  });
});
