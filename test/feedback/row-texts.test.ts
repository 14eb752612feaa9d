// The prediction log's row texts: the tabular inputs written out directly are the exact text JSON.stringify makes
// of the column object (column names JSON would reorder or drop take the object path), and rows shared by several
// events (repeats answered from one cache entry) are written once per batch with the same records, in-process and
// through the log's worker thread (one copy of the shared tensors per message).
import { readFile, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { silentLogger } from "../../src/core/index.js";
import { PredictionLogger } from "../../src/feedback/log.js";
import { fromWire, toWire } from "../../src/feedback/log-thread.js";
import type { LoggedEvent } from "../../src/feedback/log-writer.js";
import { feedbackSpecOf, recordsOf, RowTextMemo } from "../../src/feedback/spec.js";
import type { Manifest } from "../../src/package/index.js";
import type { ScoreResult, ScoringEvent } from "../../src/scoring/index.js";
import { freshSqlite, type FreshDatabase } from "../helpers/sql-stores.js";

const EXAMPLES = path.resolve(__dirname, "../../examples/models");

let home: string;
let app: Mlship;
let manifest: Manifest;
let body: { dataframe_split: { columns: string[]; data: number[][] } };
const events: ScoringEvent[] = [];

beforeAll(async () => {
  home = await mkdtemp(path.join(os.tmpdir(), "mlship-row-texts-"));
  // The default in-process prediction cache: repeats of a body are answered from one cache entry.
  app = await createMlship(defaultConfig({ home, "runtime.workers": 1 }), { logger: silentLogger() });
  manifest = (await registerModel(app, path.join(EXAMPLES, "breast-cancer"), { name: "breast-cancer", alias: "production" })).manifest;
  body = JSON.parse(await readFile(path.join(EXAMPLES, "breast-cancer", "input_example.json"), "utf8")) as typeof body;
  app.scoring.onScored((event) => events.push(event));
}, 60_000);

afterAll(async () => {
  await app?.close();
  await rm(home, { recursive: true, force: true });
});

/** Scores `rows` of the example `times` times over the same JSON body; returns the results and their events. */
async function scoreRepeated(times: number, rows: number[][]): Promise<{ results: ScoreResult[]; events: ScoringEvent[] }> {
  const bytes = Buffer.from(JSON.stringify({ dataframe_split: { columns: body.dataframe_split.columns, data: rows } }));
  const results: ScoreResult[] = [];
  for (let i = 0; i < times; i++) results.push(await app.scoring.score("breast-cancer", { kind: "json", protocol: "mlflow", bytes }, { protocol: "mlflow" }));
  const mine = results.map((r) => events.find((e) => e.requestId === r.requestId) as ScoringEvent);
  expect(mine.every((e) => e !== undefined)).toBe(true);
  return { results, events: mine };
}

/** `count` distinct rows from the example's (the first feature shifted), starting at `from`. */
function rowsOf(from: number, count: number): number[][] {
  const example = body.dataframe_split.data;
  return Array.from({ length: count }, (_, i) => {
    const row = [...(example[(from + i) % example.length] as number[])];
    row[0] = Number(((row[0] as number) + (from + i) * 0.25).toFixed(2));
    return row;
  });
}

/** The inputs text the way the object path makes it: one key per column, assigned in order, then stringified. */
function objectText(names: readonly string[], values: readonly unknown[]): string {
  const out: Record<string, unknown> = {};
  names.forEach((name, i) => (out[name] = values[i]));
  return JSON.stringify(out);
}

describe("inputs text", () => {
  it("the breast-cancer row is exactly JSON.stringify of its column object, in column order", async () => {
    const rows = rowsOf(0, 3);
    const { events: [event] } = await scoreRepeated(1, rows);
    const records = recordsOf(event as ScoringEvent, feedbackSpecOf(manifest), manifest);
    const columns = body.dataframe_split.columns;
    records.forEach((record, i) => {
      expect(record.inputs).toBe(objectText(columns, rows[i] as number[]));
      expect(Object.keys(JSON.parse(record.inputs as string) as object)).toEqual(columns);
    });
  });

  it("column names JSON would reorder or drop (integer-like, __proto__, repeated) give the object's own text", async () => {
    const row = rowsOf(10, 1)[0] as number[];
    const { events: [event] } = await scoreRepeated(1, [row]);
    const spec = feedbackSpecOf(manifest);
    const renamed = (names: (i: number) => string): Manifest => {
      const copy = structuredClone(manifest);
      copy.signature.columns = (copy.signature.columns ?? []).map((c, i) => ({ ...c, name: names(i) }));
      return copy;
    };
    for (const names of [(i: number) => (i === 5 ? "7" : `c${i}`), (i: number) => (i === 2 ? "__proto__" : `c${i}`), (i: number) => (i === 9 ? "c3" : `c${i}`)]) {
      const edited = renamed(names);
      const [record] = recordsOf(event as ScoringEvent, spec, edited);
      const columnNames = (edited.signature.columns ?? []).map((c) => c.name);
      expect(record?.inputs).toBe(objectText(columnNames, row));
    }
    // Names that need escaping stay in place, escaped.
    const quoted = renamed((i) => `col "${i}"\n`);
    const [record] = recordsOf(event as ScoringEvent, spec, quoted);
    expect(record?.inputs).toBe(objectText((quoted.signature.columns ?? []).map((c) => c.name), row));
  });
});

describe("rows shared by several events", () => {
  it("repeats answered from one cache entry share their tensors; a batch memo gives the same records", async () => {
    const rows = rowsOf(20, 2);
    const { events: repeated } = await scoreRepeated(5, rows);
    // The first answer runs the model, the second comes from the prediction cache, the rest from the exact memo.
    const shared = repeated.slice(2);
    expect(new Set(shared.map((e) => e.inputs)).size).toBe(1);
    expect(new Set(shared.map((e) => e.outputs)).size).toBe(1);
    for (const inputs of ["full", "hashed"] as const) {
      const spec = { ...feedbackSpecOf(manifest), inputs };
      const memo = new RowTextMemo();
      for (const event of repeated) {
        const plain = recordsOf(event, spec, manifest);
        expect(recordsOf(event, spec, manifest, Math.random, memo)).toEqual(plain);
        expect(plain).toHaveLength(2);
        expect(plain.map((r) => r.requestId)).toEqual([event.requestId, event.requestId]);
      }
    }
    // Different tensors in one memo are not confused.
    const { events: [other] } = await scoreRepeated(1, rowsOf(30, 2));
    const memo = new RowTextMemo();
    const spec = feedbackSpecOf(manifest);
    recordsOf(repeated[4] as ScoringEvent, spec, manifest, Math.random, memo);
    expect(recordsOf(other as ScoringEvent, spec, manifest, Math.random, memo)).toEqual(recordsOf(other as ScoringEvent, spec, manifest));
  });

  it("worker mode: every repeat is stored under its own request id with the rows the in-process build makes", async () => {
    const fresh: FreshDatabase = await freshSqlite("row-texts");
    try {
      const sqlStore = await fresh.open();
      const logger = new PredictionLogger({
        scoring: app.scoring, registry: app.registry, storeUrl: `sqlite:${sqlStore.location}`, home, logger: silentLogger(),
        spillDir: await mkdtemp(path.join(home, "spill-")), timers: false,
      });
      await logger.start();
      const rows = rowsOf(40, 2);
      const { results, events: repeated } = await scoreRepeated(20, rows);
      await logger.flush();
      await logger.close();
      expect(new Set(results.map((r) => r.requestId)).size).toBe(20);
      const stored = await sql<{ request_id: string; row: number; inputs: string; outputs: string; prediction: string; scores: string }>`
        select request_id, "row", inputs, outputs, prediction, scores from prediction_log order by id`.execute(sqlStore.db);
      expect(stored.rows).toHaveLength(40);
      const spec = feedbackSpecOf(manifest);
      for (const event of repeated) {
        const expected = recordsOf(event, spec, manifest);
        const mine = stored.rows.filter((r) => r.request_id === event.requestId).sort((a, b) => Number(a.row) - Number(b.row));
        expect(mine.map((r) => [r.inputs, r.outputs, JSON.parse(r.prediction) as unknown, JSON.parse(r.scores) as unknown])).toEqual(
          expected.map((r) => [r.inputs, r.outputs, r.prediction, r.scores]),
        );
      }
    } finally {
      await fresh.dispose();
    }
  }, 60_000);
});

describe("the log worker's wire format", () => {
  it("events come back as they were: numbers through one transferred buffer, views cut to their own elements, shared records shared", () => {
    const shared = new Float32Array(new SharedArrayBuffer(4 * 8));
    shared.set([1, 2, 3, 4, 5, 6, 7, 8]);
    const batchOutput = new Float32Array([0.25, 0.75, 0.5, 0.5]);
    const cachedInputs = { input: { dtype: "float32" as const, shape: [1, 3], data: new Float32Array([1.5, 2.5, 3.5]) } };
    const cachedOutputs = { label: { dtype: "int64" as const, shape: [1], data: new BigInt64Array([7n]) }, class: { dtype: "string" as const, shape: [1], data: ["benign"] } };
    const at = new Date("2026-01-02T03:04:05.678Z");
    const events: LoggedEvent[] = [
      {
        model: "m", version: 1, protocol: "v2", requestId: "r1", rows: 1, latencyMs: 1.5, ok: true, at, key: "k", variant: "challenger", rolloutId: "ro", draw: 0.25,
        inputs: { a: { dtype: "float32", shape: [1, 2], data: shared.subarray(2, 4) }, b: { dtype: "uint8", shape: [1, 3], data: Buffer.from([9, 8, 7]) } },
        outputs: { probabilities: { dtype: "float32", shape: [1, 2], data: batchOutput.subarray(2, 4) }, half: { dtype: "float16", shape: [1], data: new Uint16Array([15360]) } },
      },
      { model: "m", version: 1, protocol: "mlflow", requestId: "r2", rows: 1, latencyMs: 2, ok: true, at, inputs: cachedInputs, outputs: cachedOutputs },
      { model: "m", version: 1, protocol: "mlflow", requestId: "r3", rows: 1, latencyMs: 3, ok: true, at, inputs: cachedInputs, outputs: cachedOutputs },
      { model: "n", version: null, protocol: undefined, requestId: undefined, rows: 2, latencyMs: 4, ok: true, at },
    ];
    const wire = toWire(events);
    // What the message carries: a structured clone with the numbers buffer transferred.
    const received = structuredClone(wire, { transfer: [wire.numbers] });
    expect(wire.numbers.byteLength).toBe(0);
    shared.fill(0);
    const back = fromWire(received);
    expect(back).toHaveLength(4);
    const plain = (tensors: LoggedEvent["inputs"]): unknown =>
      tensors === undefined ? undefined : Object.fromEntries(Object.entries(tensors).map(([n, t]) => [n, { dtype: t.dtype, shape: t.shape, data: Array.isArray(t.data) ? t.data : Array.from(t.data as ArrayLike<number | bigint>) }]));
    expect(plain(back[0]?.inputs)).toEqual({ a: { dtype: "float32", shape: [1, 2], data: [3, 4] }, b: { dtype: "uint8", shape: [1, 3], data: [9, 8, 7] } });
    expect(plain(back[0]?.outputs)).toEqual({ probabilities: { dtype: "float32", shape: [1, 2], data: [0.5, 0.5] }, half: { dtype: "float16", shape: [1], data: [15360] } });
    expect(back[0]?.outputs?.half?.data).toBeInstanceOf(Uint16Array);
    expect(back[1]?.outputs?.label?.data).toBeInstanceOf(BigInt64Array);
    expect(plain(back[1]?.outputs)).toEqual({ label: { dtype: "int64", shape: [1], data: [7n] }, class: { dtype: "string", shape: [1], data: ["benign"] } });
    expect(back[2]?.inputs).toBe(back[1]?.inputs);
    expect(back[2]?.outputs).toBe(back[1]?.outputs);
    expect(back.map(({ inputs: _i, outputs: _o, ...rest }) => rest)).toEqual(events.map(({ inputs: _i, outputs: _o, ...rest }) => rest));
    expect(back[3]?.inputs).toBeUndefined();
    expect("key" in (back[1] as object)).toBe(false);
  });
});
