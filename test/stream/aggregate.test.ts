// Event-time aggregations of the scored stream (tumbling, sliding and per-batch windows, append mode with a watermark),
// and the field paths they read. Records have the breast-cancer classifier's outputs (a label and two class
// probabilities) and one of its input columns (`mean radius`).
import { describe, expect, it } from "vitest";
import { MlshipError } from "../../src/core/index.js";
import { WindowAggregation } from "../../src/stream/aggregate.js";
import { columnName, compileFieldPath } from "../../src/stream/fields.js";
import type { AggregationSpec, OutputRow, ScoredRecord } from "../../src/stream/types.js";

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const SECOND = 1000;
const MINUTE = 60 * SECOND;

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** A scored record `id` at `T0 + seconds`, benign probability `benign`, label from it, and a `mean radius` input. */
function scored(id: string, seconds: number, benign: number, meanRadius: unknown = 14): ScoredRecord {
  return {
    id,
    fields: { "mean radius": meanRadius as ScoredRecord["fields"][string], customer: `c-${id}` },
    key: `k-${id}`,
    eventTime: T0 + seconds * SECOND,
    origin: `incoming/a.csv:${id}`,
    model: "breast-cancer",
    version: 3,
    outputs: { label: benign >= 0.5 ? "benign" : "malignant", probabilities: [1 - benign, benign] },
    scoredAt: T0 + seconds * SECOND + 5,
  };
}

function spec(overrides: Partial<AggregationSpec> = {}): AggregationSpec {
  return {
    name: "by_label",
    window: { kind: "tumbling", sizeMs: MINUTE },
    watermarkMs: 30 * SECOND,
    groupBy: ["label"],
    metrics: [{ fn: "count" }],
    sink: { kind: "jsonl", path: "/unused" },
    ...overrides,
  };
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

describe("compileFieldPath", () => {
  const record = scored("r1", 0, 0.8, 17.5);
  record.fields["nested"] = null;
  (record.outputs as Record<string, unknown>)["embedding"] = { layers: [[0.5, 0.25]] };
  (record.outputs as Record<string, unknown>)["scores"] = new Float32Array([0.125, 0.875]);

  it("reads outputs, input fields, array elements and nested properties", () => {
    expect(compileFieldPath("label")(record)).toBe("benign");
    expect(compileFieldPath("probabilities[1]")(record)).toBeCloseTo(0.8, 12);
    expect(compileFieldPath("probabilities[0]")(record)).toBeCloseTo(0.2, 12);
    expect(compileFieldPath("scores[1]")(record)).toBe(0.875);
    expect(compileFieldPath("mean radius")(record)).toBe(17.5);
    expect(compileFieldPath("embedding.layers[0][1]")(record)).toBe(0.25);
    expect(compileFieldPath("customer")(record)).toBe("c-r1");
  });

  it("gives undefined for what is missing, past the end, or not an object", () => {
    expect(compileFieldPath("nope")(record)).toBeUndefined();
    expect(compileFieldPath("probabilities[2]")(record)).toBeUndefined();
    expect(compileFieldPath("label.length")(record)).toBeUndefined();
    expect(compileFieldPath("nested.inner")(record)).toBeUndefined();
    expect(compileFieldPath("label[0]")(record)).toBeUndefined();
  });

  it("reads key, eventTime, model and version from the record unless an output or field shadows them", () => {
    expect(compileFieldPath("key")(record)).toBe("k-r1");
    expect(compileFieldPath("eventTime")(record)).toBe(T0);
    expect(compileFieldPath("model")(record)).toBe("breast-cancer");
    expect(compileFieldPath("version")(record)).toBe(3);
    expect(compileFieldPath("origin")(record)).toBeUndefined();
    const shadowed = { ...record, fields: { ...record.fields, key: "from-field" }, outputs: { ...record.outputs, version: "v-out" } };
    expect(compileFieldPath("key")(shadowed)).toBe("from-field");
    expect(compileFieldPath("version")(shadowed)).toBe("v-out");
  });

  it("prefers an output over an input field of the same name, and reads plain stream records", () => {
    const both = { ...record, fields: { ...record.fields, label: "input-label" } };
    expect(compileFieldPath("label")(both)).toBe("benign");
    const plain = { id: "o1", fields: { clicked: true, label: "x" }, key: "k", eventTime: T0, origin: "o" };
    expect(compileFieldPath("clicked")(plain)).toBe(true);
    expect(compileFieldPath("label")(plain)).toBe("x");
    expect(compileFieldPath("model")(plain)).toBeUndefined();
  });

  it("reads a column whose own name looks like a path", () => {
    const odd = { ...record, fields: { ...record.fields, "a.b": 7 } };
    expect(compileFieldPath("a.b")(odd)).toBe(7);
  });

  it("refuses invalid syntax with MLSHIP_ERR_CONFIG_INVALID naming the path", () => {
    for (const bad of ["", "  ", "a..b", "a.", "[0]", "probabilities[", "probabilities[x]", "probabilities[-1]", "a]b", ".a"]) {
      const error = catchError(() => compileFieldPath(bad, "aggregations.x.groupBy[0]"));
      expect(error.code).toBe("MLSHIP_ERR_CONFIG_INVALID");
      expect(error.message).toContain(JSON.stringify(bad));
      expect(error.field).toBe("aggregations.x.groupBy[0]");
    }
  });

  it("columnName makes lower-case snake names", () => {
    expect(columnName("probabilities[1]")).toBe("probabilities_1");
    expect(columnName("Mean Radius")).toBe("mean_radius");
    expect(columnName("a.b[0]")).toBe("a_b_0");
    expect(columnName("label")).toBe("label");
  });
});

describe("WindowAggregation, tumbling windows", () => {
  it("counts by label out of order within the watermark, drops late records, emits each window once", () => {
    const aggregation = new WindowAggregation(spec(), { stream: "orders", instance: "i1" });
    expect(aggregation.name).toBe("by_label");
    expect(aggregation.state()).toEqual({ stateRecords: 0, lateRecords: 0, watermark: null });

    // max 70 s -> watermark 40 s: the first minute stays open.
    expect(aggregation.process([scored("a", 10, 0.9), scored("b", 50, 0.1), scored("c", 70, 0.8)], 0)).toEqual([]);
    expect(aggregation.state().watermark).toBe(T0 + 40 * SECOND);

    // 45 s is out of order but not behind 40 s: counted. 20 s is behind: late. 95 s moves the watermark to 65 s,
    // which closes [0, 60).
    const rows = aggregation.process([scored("d", 45, 0.7), scored("e", 20, 0.6), scored("f", 95, 0.2)], 1);
    expect(rows).toEqual([
      {
        id: `by_label:${T0}:["benign"]:i1`,
        fields: { aggregation: "by_label", window_start: iso(T0), window_end: iso(T0 + MINUTE), label: "benign", count: 2, records: 2, instance: "i1" },
      },
      {
        id: `by_label:${T0}:["malignant"]:i1`,
        fields: { aggregation: "by_label", window_start: iso(T0), window_end: iso(T0 + MINUTE), label: "malignant", count: 1, records: 1, instance: "i1" },
      },
    ]);
    expect(aggregation.state().lateRecords).toBe(1);
    expect(aggregation.state().watermark).toBe(T0 + 65 * SECOND);

    // The watermark moves (70 s) without closing [60, 120); the closed first minute is not emitted again, and a
    // record for it now is late.
    expect(aggregation.process([scored("g", 100, 0.55), scored("h", 59, 0.9)], 2)).toEqual([]);
    expect(aggregation.state().lateRecords).toBe(2);

    // 200 s -> watermark 170 s: [60, 120) closes; [120, 180) never had records; [180, 240) stays open.
    const later = aggregation.process([scored("i", 200, 0.3)], 3);
    expect(later.map((row) => [row.id, row.fields.count])).toEqual([
      [`by_label:${T0 + MINUTE}:["benign"]:i1`, 2],
      [`by_label:${T0 + MINUTE}:["malignant"]:i1`, 1],
    ]);
    // One open window with one cell and one record id.
    expect(aggregation.state()).toEqual({ stateRecords: 2, lateRecords: 2, watermark: T0 + 170 * SECOND });

    // An empty batch moves nothing; a watermark exactly at a window's end closes it.
    expect(aggregation.process([], 4)).toEqual([]);
    const closing = aggregation.process([scored("j", 270, 0.3)], 5);
    expect(closing.map((row) => row.id)).toEqual([`by_label:${T0 + 3 * MINUTE}:["malignant"]:i1`]);
  });

  it("keeps the watermark from going back when a batch holds only older records", () => {
    const aggregation = new WindowAggregation(spec(), { stream: "orders", instance: "i1" });
    aggregation.process([scored("a", 100, 0.9)], 0);
    aggregation.process([scored("b", 75, 0.9)], 1);
    expect(aggregation.state().watermark).toBe(T0 + 70 * SECOND);
    expect(aggregation.state().lateRecords).toBe(0);
  });

  it("computes sum, mean, min and max over numbers only, count over records, null when no number", () => {
    const aggregation = new WindowAggregation(
      spec({
        watermarkMs: 0,
        metrics: [
          { fn: "count" },
          { fn: "mean", field: "probabilities[1]" },
          { fn: "sum", field: "mean radius" },
          { fn: "mean", field: "mean radius" },
          { fn: "min", field: "mean radius" },
          { fn: "max", field: "mean radius", as: "largest_radius" },
        ],
      }),
      { stream: "orders", instance: "i1" },
    );
    aggregation.process(
      [
        scored("a", 1, 0.9, 10),
        scored("b", 2, 0.7, null),
        scored("c", 3, 0.6, "n/a"),
        scored("d", 4, 0.8, 20),
        scored("e", 5, 0.5, 15.5),
        scored("m1", 6, 0.2, null),
        scored("m2", 7, 0.1, "big"),
      ],
      0,
    );
    const rows = aggregation.process([scored("z", 60, 0.5, 1)], 1);
    expect(rows.map((row) => row.fields)).toEqual([
      {
        aggregation: "by_label",
        window_start: iso(T0),
        window_end: iso(T0 + MINUTE),
        label: "benign",
        count: 5,
        mean_probabilities_1: expect.closeTo(0.7, 12) as unknown,
        sum_mean_radius: 45.5,
        mean_mean_radius: expect.closeTo(45.5 / 3, 12) as unknown,
        min_mean_radius: 10,
        largest_radius: 20,
        records: 5,
        instance: "i1",
      },
      {
        aggregation: "by_label",
        window_start: iso(T0),
        window_end: iso(T0 + MINUTE),
        label: "malignant",
        count: 2,
        mean_probabilities_1: expect.closeTo(0.15, 12) as unknown,
        sum_mean_radius: null,
        mean_mean_radius: null,
        min_mean_radius: null,
        largest_radius: null,
        records: 2,
        instance: "i1",
      },
    ]);
  });

  it("groups by several paths, a missing value being its own null group", () => {
    const aggregation = new WindowAggregation(spec({ watermarkMs: 0, groupBy: ["label", "region"] }), { stream: "s", instance: "i1" });
    const withRegion = (record: ScoredRecord, region: string | null): ScoredRecord => ({ ...record, fields: { ...record.fields, ...(region === null ? {} : { region }) } });
    aggregation.process(
      [withRegion(scored("a", 1, 0.9), "north"), withRegion(scored("b", 2, 0.9), "south"), withRegion(scored("c", 3, 0.9), "north"), withRegion(scored("d", 4, 0.9), null)],
      0,
    );
    const rows = aggregation.process([scored("z", 61, 0.1)], 1);
    expect(rows.map((row) => [row.id, row.fields.label, row.fields.region, row.fields.count])).toEqual([
      [`by_label:${T0}:["benign","north"]:i1`, "benign", "north", 2],
      [`by_label:${T0}:["benign","south"]:i1`, "benign", "south", 1],
      [`by_label:${T0}:["benign",null]:i1`, "benign", null, 1],
    ]);
  });
});

describe("WindowAggregation, sliding windows", () => {
  it("puts a record in every window of size/slide that contains it", () => {
    const aggregation = new WindowAggregation(spec({ window: { kind: "sliding", sizeMs: MINUTE, slideMs: 20 * SECOND }, watermarkMs: MINUTE, groupBy: [] }), {
      stream: "s",
      instance: "i1",
    });
    // 50 s is in [0,60), [20,80), [40,100); 65 s is in [20,80), [40,100), [60,120).
    aggregation.process([scored("a", 50, 0.9), scored("b", 65, 0.9)], 0);
    expect(aggregation.state().stateRecords).toBe(4 + 2);
    const rows = aggregation.process([scored("far", 1000, 0.9)], 1);
    expect(rows.map((row) => [row.fields.window_start, row.fields.window_end, row.fields.count])).toEqual([
      [iso(T0), iso(T0 + MINUTE), 1],
      [iso(T0 + 20 * SECOND), iso(T0 + 80 * SECOND), 2],
      [iso(T0 + 40 * SECOND), iso(T0 + 100 * SECOND), 2],
      [iso(T0 + 60 * SECOND), iso(T0 + 120 * SECOND), 1],
    ]);
    expect(rows[0]?.id).toBe(`by_label:${T0}:[]:i1`);
  });

  it("handles a size that is not a multiple of the slide, and windows before the epoch", () => {
    const aggregation = new WindowAggregation(spec({ window: { kind: "sliding", sizeMs: 50 * SECOND, slideMs: 20 * SECOND }, watermarkMs: 0, groupBy: [] }), {
      stream: "s",
      instance: "i1",
    });
    // 50 s: [20,70) and [40,90), not [0,50) (the end is exclusive).
    aggregation.process([scored("a", 50, 0.9)], 0);
    const rows = aggregation.process([scored("far", 1000, 0.9)], 1);
    expect(rows.map((row) => row.fields.window_start)).toEqual([iso(T0 + 20 * SECOND), iso(T0 + 40 * SECOND)]);

    const early = new WindowAggregation(spec({ watermarkMs: 0, groupBy: [] }), { stream: "s", instance: "i1" });
    // The watermark (0) reaches the end of [-60 s, 0) at once; [0, 60 s) closes with the next batch.
    const earlyRows = early.process([{ ...scored("neg", 0, 0.9), eventTime: -30 * SECOND }, { ...scored("zero", 0, 0.9), eventTime: 0 }], 0);
    earlyRows.push(...early.process([{ ...scored("minute", 0, 0.9), eventTime: MINUTE }], 1));
    expect(earlyRows.map((row) => row.fields.window_start)).toEqual(["1969-12-31T23:59:00.000Z", "1970-01-01T00:00:00.000Z"]);
  });
});

describe("WindowAggregation, batch windows", () => {
  it("emits one row per group per micro-batch right away, with no state or watermark", () => {
    const aggregation = new WindowAggregation(
      spec({ name: "per_batch", window: { kind: "batch" }, metrics: [{ fn: "count" }, { fn: "max", field: "probabilities[1]" }] }),
      { stream: "s", instance: "w2" },
    );
    const rows = aggregation.process([scored("a", 1, 0.9), scored("b", 500, 0.2), scored("c", -50, 0.6), scored("a", 1, 0.9)], 7);
    expect(rows).toEqual([
      {
        id: 'per_batch:batch:7:["benign"]:w2',
        fields: { aggregation: "per_batch", batch_id: 7, label: "benign", count: 2, max_probabilities_1: 0.9, records: 2, instance: "w2" },
      },
      {
        id: 'per_batch:batch:7:["malignant"]:w2',
        fields: { aggregation: "per_batch", batch_id: 7, label: "malignant", count: 1, max_probabilities_1: 0.2, records: 1, instance: "w2" },
      },
    ]);
    expect(aggregation.state()).toEqual({ stateRecords: 0, lateRecords: 0, watermark: null });
    expect(aggregation.process([], 8)).toEqual([]);
    expect(aggregation.process([scored("d", 1, 0.3)], 9).map((row) => row.id)).toEqual(['per_batch:batch:9:["malignant"]:w2']);
  });
});

describe("WindowAggregation state across restarts", () => {
  const slidingSpec = spec({
    window: { kind: "sliding", sizeMs: MINUTE, slideMs: 30 * SECOND },
    watermarkMs: 20 * SECOND,
    metrics: [{ fn: "count" }, { fn: "mean", field: "probabilities[1]" }, { fn: "min", field: "mean radius" }],
  });

  /** Eight batches of records, out of order within each, spread over five minutes, with some late ones. */
  function batches(): ScoredRecord[][] {
    const all: ScoredRecord[][] = [];
    let n = 0;
    for (let batch = 0; batch < 8; batch += 1) {
      const records: ScoredRecord[] = [];
      for (let i = 0; i < 6; i += 1) {
        const seconds = batch * 35 + ((i * 17) % 40) - (i === 5 ? 60 : 0);
        records.push(scored(`r${n}`, seconds, ((n * 37) % 100) / 100, (n * 13) % 7 === 0 ? null : 10 + (n % 9)));
        n += 1;
      }
      all.push(records);
    }
    return all;
  }

  function runAll(aggregation: WindowAggregation, input: ScoredRecord[][], from = 0): OutputRow[] {
    const rows: OutputRow[] = [];
    input.forEach((records, index) => {
      if (index >= from) rows.push(...aggregation.process(records, index));
    });
    return rows;
  }

  it("restored from a JSON snapshot, gives the same rows as a run without restart", () => {
    const input = batches();
    const reference = new WindowAggregation(slidingSpec, { stream: "s", instance: "i1" });
    const expected = runAll(reference, input);
    expect(expected.length).toBeGreaterThan(10);
    expect(reference.state().lateRecords).toBeGreaterThan(0);

    const first = new WindowAggregation(slidingSpec, { stream: "s", instance: "i1" });
    const before = input.slice(0, 4).flatMap((records, index) => first.process(records, index));
    const saved = JSON.parse(JSON.stringify(first.snapshot())) as unknown;

    const second = new WindowAggregation(slidingSpec, { stream: "s", instance: "i1" });
    second.restore(saved);
    expect(second.state()).toEqual(first.state());
    const after = runAll(second, input, 4);
    expect([...before, ...after]).toEqual(expected);
    expect(second.state()).toEqual(reference.state());
  });

  it("does not count again records redelivered after the state was saved (crash before the ack)", () => {
    const input = batches();
    const reference = new WindowAggregation(slidingSpec, { stream: "s", instance: "i1" });
    const expected = runAll(reference, input);
    const expectedById = new Map(expected.map((row) => [row.id, row]));

    // Batches 0-3 processed and saved; the source committed 0-2 only, so 3 comes again, then 4-7.
    const crashed = new WindowAggregation(slidingSpec, { stream: "s", instance: "i1" });
    const written = input.slice(0, 4).flatMap((records, index) => crashed.process(records, index));
    const saved = JSON.parse(JSON.stringify(crashed.snapshot())) as unknown;
    expect(JSON.stringify(saved)).toContain('"r20"');

    const restarted = new WindowAggregation(slidingSpec, { stream: "s", instance: "i1" });
    restarted.restore(saved);
    // Some redelivered records are not behind the watermark: only the kept ids stop them counting twice.
    const savedWatermark = restarted.state().watermark ?? Number.POSITIVE_INFINITY;
    expect((input[3] ?? []).filter((record) => record.eventTime >= savedWatermark).length).toBeGreaterThan(2);
    // Redelivered as one batch with the next batch's records, in another order.
    const redelivered = [...(input[4] ?? []), ...[...(input[3] ?? [])].reverse()];
    written.push(...restarted.process(redelivered, 4));
    written.push(...runAll(restarted, input, 5));

    // Every row the uninterrupted run wrote, with the same values; no row twice.
    const writtenById = new Map(written.map((row) => [row.id, row]));
    expect(writtenById.size).toBe(written.length);
    expect(writtenById).toEqual(expectedById);
  });

  it("skips a record counted in a window still open when it comes again", () => {
    const aggregation = new WindowAggregation(spec(), { stream: "s", instance: "i1" });
    aggregation.process([scored("a", 10, 0.9), scored("b", 20, 0.9)], 0);
    const restored = new WindowAggregation(spec(), { stream: "s", instance: "i1" });
    restored.restore(JSON.parse(JSON.stringify(aggregation.snapshot())));
    // The watermark (-10 s) is behind both: they are repeats, not late records.
    restored.process([scored("a", 10, 0.9), scored("b", 20, 0.9), scored("c", 25, 0.9), scored("c", 25, 0.9)], 1);
    const rows = restored.process([scored("z", 95, 0.1)], 2);
    expect(rows.map((row) => row.fields.count)).toEqual([3]);
    expect(restored.state().lateRecords).toBe(0);
  });

  it("refuses a snapshot of another shape or a malformed one with MLSHIP_ERR_STREAM_CHECKPOINT", () => {
    const aggregation = new WindowAggregation(spec(), { stream: "s", instance: "i1" });
    aggregation.process([scored("a", 10, 0.9)], 0);
    const saved = aggregation.snapshot();
    const other = new WindowAggregation(spec({ metrics: [{ fn: "count" }, { fn: "sum", field: "mean radius" }] }), { stream: "s", instance: "i1" });
    expect(catchError(() => other.restore(saved)).code).toBe("MLSHIP_ERR_STREAM_CHECKPOINT");
    const bigger = new WindowAggregation(spec({ window: { kind: "tumbling", sizeMs: 2 * MINUTE } }), { stream: "s", instance: "i1" });
    expect(catchError(() => bigger.restore(saved)).code).toBe("MLSHIP_ERR_STREAM_CHECKPOINT");
    expect(catchError(() => aggregation.restore({ format: 1 })).code).toBe("MLSHIP_ERR_STREAM_CHECKPOINT");
    expect(catchError(() => aggregation.restore(null)).code).toBe("MLSHIP_ERR_STREAM_CHECKPOINT");
    // A different watermark delay is fine: the state is the same shape.
    const laxer = new WindowAggregation(spec({ watermarkMs: 5 * MINUTE }), { stream: "s", instance: "i1" });
    laxer.restore(saved);
    expect(laxer.state()).toEqual(aggregation.state());
  });
});

describe("WindowAggregation configuration", () => {
  const make = (overrides: Partial<AggregationSpec>): MlshipError => catchError(() => new WindowAggregation(spec(overrides), { stream: "s", instance: "i1" }));

  it("refuses bad windows, watermarks, paths and clashing columns with MLSHIP_ERR_CONFIG_INVALID", () => {
    const cases: Array<[Partial<AggregationSpec>, string]> = [
      [{ window: { kind: "tumbling" } }, "aggregations.by_label.window.sizeMs"],
      [{ window: { kind: "tumbling", sizeMs: 0 } }, "aggregations.by_label.window.sizeMs"],
      [{ window: { kind: "tumbling", sizeMs: MINUTE, slideMs: SECOND } }, "aggregations.by_label.window.slideMs"],
      [{ window: { kind: "sliding", sizeMs: MINUTE } }, "aggregations.by_label.window.slideMs"],
      [{ window: { kind: "sliding", sizeMs: MINUTE, slideMs: 2 * MINUTE } }, "aggregations.by_label.window.slideMs"],
      [{ window: { kind: "hopping" as "sliding", sizeMs: MINUTE } }, "aggregations.by_label.window.kind"],
      [{ watermarkMs: -1 }, "aggregations.by_label.watermarkMs"],
      [{ groupBy: ["probabilities["] }, "aggregations.by_label.groupBy[0]"],
      [{ metrics: [{ fn: "mean" }] }, "aggregations.by_label.metrics[0].field"],
      [{ metrics: [{ fn: "count", field: "label" }] }, "aggregations.by_label.metrics[0].field"],
      [{ metrics: [{ fn: "median" as "mean", field: "label" }] }, "aggregations.by_label.metrics[0].fn"],
      [{ metrics: [{ fn: "count" }, { fn: "count" }] }, "aggregations.by_label.metrics[1]"],
      [{ metrics: [{ fn: "max", field: "x", as: "label" }] }, "aggregations.by_label.metrics[0].as"],
      [{ metrics: [{ fn: "sum", field: "records", as: "records" }] }, "aggregations.by_label.metrics[0].as"],
      [{ groupBy: ["window_start"] }, "aggregations.by_label.groupBy[0]"],
    ];
    for (const [overrides, field] of cases) {
      const error = make(overrides);
      expect(error.code, JSON.stringify(overrides)).toBe("MLSHIP_ERR_CONFIG_INVALID");
      expect(error.field, JSON.stringify(overrides)).toBe(field);
    }
  });
});
