/**
 * A custom wrapper package streamed and monitored like any other flavor (issue 12), on real parts: a stream job
 * (folder source, schema from the model's per-row inputs, SQLite and JSONL sinks, dead letters) scores CSV files
 * dropped in a folder; then, with the prediction log on as `mlship serve` runs it, REST requests are logged with
 * their request ids, outcomes posted to `POST /v1/feedback` join their predictions and show in live quality, and the
 * live monitor profiles the requests (a number and a string input; a number, a string and a json output) into a
 * window read back over the monitor routes.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createMlship, registerModel, runStream, startPredictionLog } from "../../../src/app.js";
import type { Mlship } from "../../../src/app.js";
import { defaultConfig } from "../../../src/config/index.js";
import { silentLogger } from "../../../src/core/index.js";
import { feedbackRoutes } from "../../../src/feedback/index.js";
import type { ExportedPrediction, IngestResult, PredictionLogger, QualityReport } from "../../../src/feedback/index.js";
import { LiveMonitor, MonitorStore, monitorRoutes, profileReference } from "../../../src/monitor/index.js";
import type { StoredWindow } from "../../../src/monitor/index.js";
import { buildServer } from "../../../src/serve/index.js";
import { parseStreamConfig } from "../../../src/stream/index.js";
import type { StreamProgress } from "../../../src/stream/index.js";
import type { MonitorSummary } from "../../../src/ui/contract.js";
import { makePackage } from "./helpers.js";

const CITIES = ["paris", "lyon", "nice", "lille"];
const SIGNATURE = {
  inputs: [
    { name: "x", dtype: "float64" as const, shape: [-1] },
    { name: "city", dtype: "string" as const, shape: [-1] },
  ],
  outputs: [
    { name: "y", dtype: "float64" as const, shape: [-1] },
    { name: "band", dtype: "string" as const, shape: [-1] },
    { name: "info", dtype: "string" as const, shape: [-1], content_type: "json" as const },
  ],
};

/** What city-price.mjs answers for a row. */
function expectedOf(x: number, city: string): { y: number; band: string; info: { city: string; even: boolean; tags: string[] } } {
  return { y: 2 * x, band: x >= 10 ? "high" : "low", info: { city, even: x % 2 === 0, tags: ["custom"] } };
}

let home: string;
let app: Mlship;
let cleanup: () => void;

beforeAll(async () => {
  home = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-custom-stream-"));
  app = await createMlship(
    defaultConfig({ home, user: "tester", "runtime.workers": 1, "cache.backend": "off", "log.level": "warn", "feedback.flushMs": 50 }),
    { logger: silentLogger() },
  );
  const pkg = await makePackage({ wrapper: "city-price.mjs", ...SIGNATURE });
  cleanup = pkg.cleanup;
  await registerModel(app, pkg.dir, { name: "city-price", alias: "production" });
}, 60_000);

afterAll(async () => {
  await app?.close();
  cleanup?.();
  fs.rmSync(home, { recursive: true, force: true });
});

/** Writes a CSV file as stream writers must: under a `.` name, then renamed into place. */
function dropCsv(folder: string, name: string, lines: readonly string[]): void {
  fs.mkdirSync(folder, { recursive: true });
  const temporary = path.join(folder, `.${name}`);
  fs.writeFileSync(temporary, `id,city,x\n${lines.join("\n")}\n`);
  fs.renameSync(temporary, path.join(folder, name));
}

describe("a custom model in a stream job", () => {
  test("scores CSV files dropped in a folder: one row per record in SQLite and JSONL, json outputs as values", { timeout: 60_000 }, async () => {
    const dir = path.join(home, "stream");
    const rows = Array.from({ length: 25 }, (_, i) => ({ id: `r${i}`, city: CITIES[i % CITIES.length] as string, x: i }));
    dropCsv(path.join(dir, "in"), "a.csv", [...rows.slice(0, 10).map((r) => `${r.id},${r.city},${r.x}`), "bad-1,paris,abc"]);
    dropCsv(path.join(dir, "in"), "b.csv", rows.slice(10).map((r) => `${r.id},${r.city},${r.x}`));
    const config = parseStreamConfig(
      {
        name: "custom-scorer",
        model: "city-price@production",
        source: { kind: "folder", path: "in" },
        // fromModel: the wrapper's per-row inputs become fields with their own types (x a double, city a string).
        schema: { fields: { id: "string" }, key: "id", fromModel: true },
        trigger: "availableNow",
        select: ["city"],
        sinks: [
          { kind: "sqlite", path: "out.sqlite", table: "predictions" },
          { kind: "jsonl", path: "out-jsonl" },
        ],
        deadLetter: { kind: "jsonl", path: "dead" },
        checkpoint: "checkpoint",
        // Logged like served requests (request id `stream:<name>:<batchId>`), so outcomes can join them.
        predictionLog: true,
      },
      { baseDir: dir, home },
    );
    const progress: StreamProgress[] = [];
    const handle = await runStream(app, config, { onProgress: (p) => progress.push(p) });
    const summary = await handle.done;
    expect(summary).toMatchObject({ reason: "completed", batches: 2, inputRows: 26, outputRows: 25, deadLetters: 1, error: null });
    expect(progress.map((p) => [p.model, p.version])).toEqual([
      ["city-price", 1],
      ["city-price", 1],
    ]);

    const db = new Database(path.join(dir, "out.sqlite"), { readonly: true });
    let table: Array<Record<string, unknown>>;
    try {
      table = db.prepare("select * from predictions").all() as Array<Record<string, unknown>>;
    } finally {
      db.close();
    }
    expect(table).toHaveLength(25);
    const byKey = new Map(table.map((r) => [r.key as string, r]));
    for (const r of rows) {
      const stored = byKey.get(r.id);
      const want = expectedOf(r.x, r.city);
      expect(stored, r.id).toMatchObject({ key: r.id, city: r.city, model: "city-price", version: 1, y: want.y, band: want.band });
      // The json output is stored as its JSON text (a JSON column), the value itself, not a quoted string.
      expect(JSON.parse(stored?.info as string), r.id).toEqual(want.info);
    }

    const jsonl = fs
      .readdirSync(path.join(dir, "out-jsonl"))
      .filter((f) => f.endsWith(".jsonl"))
      .flatMap((f) => fs.readFileSync(path.join(dir, "out-jsonl", f), "utf8").trim().split("\n"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(jsonl).toHaveLength(25);
    const r7 = jsonl.find((l) => l.key === "r7");
    expect(r7).toMatchObject({ y: 14, band: "low", info: { city: "lille", even: false, tags: ["custom"] } });

    const dead = fs
      .readdirSync(path.join(dir, "dead"))
      .filter((f) => f.endsWith(".jsonl"))
      .flatMap((f) => fs.readFileSync(path.join(dir, "dead", f), "utf8").trim().split("\n"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({ stage: "schema", field: "x" });

    const logged: ExportedPrediction[] = [];
    for await (const row of app.predictions.exportPredictions({ model: "city-price", version: 1, start: "2000-01-01T00:00:00Z", end: "2100-01-01T00:00:00Z" })) logged.push(row);
    expect(logged.map((r) => `${r.requestId}/${r.row}`).sort()).toEqual(
      [...Array.from({ length: 10 }, (_, i) => `stream:custom-scorer:0/${i}`), ...Array.from({ length: 15 }, (_, i) => `stream:custom-scorer:1/${i}`)].sort(),
    );
    const first = logged.find((r) => r.requestId === "stream:custom-scorer:1" && r.row === 0);
    expect(first?.inputs).toEqual({ x: 10, city: "nice" });
    expect(first?.outputs).toEqual(expectedOf(10, "nice"));
  });
});

describe("a custom model monitored while served, with the prediction log on", () => {
  let server: FastifyInstance;
  let log: PredictionLogger;
  let live: LiveMonitor;
  let monitorStore: MonitorStore;
  /** Each request's rows (x, city) by request id. */
  const sent = new Map<string, Array<{ x: number; city: string }>>();

  beforeAll(async () => {
    // The reference, as `mlship monitor profile city-price@1 --data reference.csv` stores it: the wrapper's inputs
    // (a number and a string column) and its predictions (a number, a string and a json output).
    monitorStore = new MonitorStore(app.store);
    const reference = path.join(home, "reference.csv");
    fs.writeFileSync(reference, "x,city,label\n" + Array.from({ length: 60 }, (_, i) => `${i % 20},${CITIES[i % CITIES.length]},${i}`).join("\n") + "\n");
    const profile = await profileReference({ scoring: app.scoring, store: monitorStore }, await app.scoring.resolve("city-price@1"), reference);
    expect(profile.features.columns.map((c) => [c.name, c.kind])).toEqual([
      ["x", "numeric"],
      ["city", "categorical"],
    ]);
    expect(profile.predictions?.columns.map((c) => c.name)).toEqual(["y", "band", "info"]);

    // As `mlship serve` wires them: the prediction log (feedback.log defaults to on), the live monitor, the
    // monitoring and feedback routes next to the serving ones.
    const started = await startPredictionLog(app);
    if (started === undefined) throw new Error("the prediction log is off by default");
    log = started;
    live = new LiveMonitor({ scoring: app.scoring, store: monitorStore, logger: app.logger, sizes: ["1h"], minRows: 10, timer: false });
    live.start();
    server = buildServer({ scoring: app.scoring, registry: app.registry, logger: false });
    await server.register(monitorRoutes, { store: monitorStore, registry: app.registry, scoring: app.scoring });
    await server.register(feedbackRoutes, { feedback: app.feedback, registry: app.registry, logStats: () => log.stats() });
    await server.ready();
  }, 60_000);

  afterAll(async () => {
    await live?.close();
    await server?.close();
    await log?.close();
  });

  test("requests are logged with their request ids, inputs and outputs (json outputs as values)", { timeout: 30_000 }, async () => {
    for (let i = 0; i < 12; i++) {
      const rows = [0, 1, 2].map((k) => ({ x: i + k * 5, city: CITIES[(i + k) % CITIES.length] as string }));
      const requestId = `cm-${i}`;
      const res = await server.inject({
        method: "POST",
        url: "/v1/models/city-price/invocations",
        headers: { "x-request-id": requestId },
        payload: { dataframe_split: { columns: ["x", "city"], data: rows.map((r) => [r.x, r.city]) } },
      });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.headers["x-request-id"]).toBe(requestId);
      const predictions = (res.json() as { predictions: Array<Record<string, unknown>> }).predictions;
      expect(predictions).toEqual(rows.map((r) => expectedOf(r.x, r.city)));
      sent.set(requestId, rows);
    }
    await log.flush();
    expect(log.stats()).toMatchObject({ received: 36, written: 36, storeErrors: 0 });

    const logged: ExportedPrediction[] = [];
    for await (const row of app.predictions.exportPredictions({ model: "city-price", version: 1, start: "2000-01-01T00:00:00Z", end: "2100-01-01T00:00:00Z" })) {
      // The stream job's rows (logged above) are not these requests'.
      if (!row.requestId.startsWith("stream:")) logged.push(row);
    }
    expect(logged).toHaveLength(36);
    for (const row of logged) {
      const input = sent.get(row.requestId)?.[row.row];
      expect(input, `${row.requestId}/${row.row}`).toBeDefined();
      const want = expectedOf(input?.x as number, input?.city as string);
      expect(row.inputs).toEqual({ x: input?.x, city: input?.city });
      expect(row.outputs).toEqual(want);
      // y is the prediction of this regression-like wrapper (its first output).
      expect(row.prediction).toBe(want.y);
    }
  });

  test("outcomes posted to /v1/feedback join their predictions and count in live quality", { timeout: 30_000 }, async () => {
    // The actual value is y + 1 for every row of the first 6 requests: MAE 1 over 18 rows.
    const outcomes = [...sent.entries()].slice(0, 6).flatMap(([requestId, rows]) => rows.map((r, row) => ({ request_id: requestId, row, actual: 2 * r.x + 1 })));
    const res = await server.inject({ method: "POST", url: "/v1/feedback", payload: { outcomes } });
    expect(res.statusCode, res.body).toBe(202);
    expect(res.json<IngestResult>()).toEqual({ accepted: 18, matched: 18, pending: 0, late: 0, rejected: [] });

    const joined = await app.predictions.joined({ model: "city-price", version: 1, start: "2000-01-01T00:00:00Z", end: "2100-01-01T00:00:00Z", withOutcome: true });
    expect(joined.map((r) => `${r.requestId}/${r.row}`).sort()).toEqual(outcomes.map((o) => `${o.request_id}/${o.row}`).sort());
    for (const row of joined) expect(row.actual).toBe((row.prediction as number) + 1);

    const quality = await server.inject("/api/v1/models/city-price/quality?version=1&window=1d");
    expect(quality.statusCode, quality.body).toBe(200);
    const report = quality.json<QualityReport>();
    expect(report).toMatchObject({ model: "city-price", version: 1, task: "regression", outcomes: 18 });
    expect(report.metrics.mae).toBeCloseTo(1, 9);
  });

  test("the live monitor profiles the requests into a window of the version, read back over the monitor routes", { timeout: 30_000 }, async () => {
    // Close the window holding the requests (the monitor's clock is the real one: an hour on is past its end).
    const flushed = await live.flush(new Date(Date.now() + 3_600_000));
    expect(flushed.errors).toBe(0);
    expect(live.stats()).toMatchObject({ versionsMonitored: 1, eventsProfiled: 12, rowsProfiled: 36, errors: 0 });
    expect(flushed.windows.map((w) => [w.window.model, w.window.version, w.window.rows])).toEqual([["city-price", 1, 36]]);

    const res = await server.inject("/api/v1/models/city-price/versions/1/monitor/windows?size=1h");
    expect(res.statusCode, res.body).toBe(200);
    const windows = (res.json() as { windows: StoredWindow[] }).windows;
    expect(windows).toHaveLength(1);
    const window = windows[0] as StoredWindow;
    expect(window.rows).toBe(36);
    expect(window.insufficient).toBe(false);
    const feature = (name: string) => window.features.columns.find((c) => c.name === name);
    expect(feature("x")).toMatchObject({ kind: "numeric", count: 36 });
    const city = feature("city");
    expect(city?.kind).toBe("categorical");
    const counts: Record<string, number> = {};
    for (const rows of sent.values()) for (const r of rows) counts[r.city] = (counts[r.city] ?? 0) + 1;
    expect(city?.kind === "categorical" ? city.frequencies : undefined).toEqual(counts);
    const prediction = (name: string) => window.predictions?.columns.find((c) => c.name === name);
    expect(prediction("y")).toMatchObject({ kind: "numeric", count: 36 });
    expect(prediction("band")).toMatchObject({ kind: "categorical" });
    expect(prediction("info")?.count).toBe(36);

    const summary = await server.inject("/api/v1/models/city-price/versions/1/monitor/summary?size=1h");
    expect(summary.statusCode, summary.body).toBe(200);
    const body = summary.json<MonitorSummary>();
    expect(body).toMatchObject({ model: "city-price", version: 1, hasReference: true, size: "1h" });
    expect(body.windows.map((w) => [w.rows, w.insufficient])).toEqual([[36, false]]);
    // Every input and output was tested against the reference: the string input and the json output too.
    expect(body.features.map((f) => [f.feature, f.kind, f.latest === null])).toEqual([
      ["x", "numeric", false],
      ["city", "categorical", false],
    ]);
    expect(body.predictions.map((f) => [f.feature, f.kind, f.latest === null])).toEqual([
      ["y", "numeric", false],
      ["band", "categorical", false],
      ["info", "categorical", false],
    ]);
  });
});
