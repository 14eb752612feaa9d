// The feedback REST routes on the real server (buildServer + feedbackRoutes, as `mlship serve` mounts them), over a
// real app: the breast-cancer example scored on the fixture's held-out rows, its predictions logged to the metadata
// store (SQLite, then PostgreSQL), and outcomes posted with the fixture's true labels.
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { MAX_FEEDBACK_ITEMS } from "../../src/feedback/http.js";
import { feedbackRoutes, PredictionLogger } from "../../src/feedback/index.js";
import type { FeedbackService, IngestResult, JoinStats, PredictionLogStats, QualityReport } from "../../src/feedback/index.js";
import { buildServer } from "../../src/serve/index.js";
import { POSTGRES_SERVER, postgresAdmin } from "../helpers/sql-stores.js";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const FIXTURE = fileURLToPath(new URL("../../../shared/fixtures/breast_cancer_mlp/", import.meta.url));
const LABELS = ["malignant", "benign"];

interface ProdRow {
  features: number[];
  /** True class index (0 malignant, 1 benign). */
  label: number;
}

function readProd(): { columns: string[]; rows: ProdRow[] } {
  const lines = fs.readFileSync(path.join(FIXTURE, "prod.csv"), "utf8").trim().split("\n");
  const header = (lines[0] as string).split(",");
  return {
    columns: header.slice(0, 30),
    rows: lines.slice(1).map((line) => {
      const cells = line.split(",").map(Number);
      return { features: cells.slice(0, 30), label: cells[30] as number };
    }),
  };
}

/** What the model answered for one logged row, read from the scoring result. */
interface Answer {
  predicted: string;
  /** P(malignant), P(benign) as the model wrote them. */
  malignant: number;
  benign: number;
  label: number;
}

/** The app's store: the SQLite file in home, or a database created on the local PostgreSQL server and dropped after. */
async function storeOf(kind: "sqlite" | "postgres"): Promise<{ store?: string; drop: () => Promise<void> }> {
  if (kind === "sqlite") return { drop: async () => undefined };
  const name = `mlship_test_${randomBytes(6).toString("hex")}`;
  const admin = await postgresAdmin();
  await admin.query(`create database ${name}`);
  return {
    store: `${POSTGRES_SERVER}/${name}`,
    drop: async () => {
      await admin.query(`drop database if exists ${name} with (force)`);
      await admin.end();
    },
  };
}

describe.each(["sqlite", "postgres"] as const)("feedback REST routes (%s)", (kind) => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-feedback-http-"));
  let database: Awaited<ReturnType<typeof storeOf>> | undefined;
  const prod = readProd();
  let app: Mlship;
  let feedback: FeedbackService;
  let logger: PredictionLogger;
  let server: ReturnType<typeof buildServer>;
  /** By request id and row (`r-3/0`, `multi/2`, `cust-36`). */
  const answers = new Map<string, Answer>();

  const post = (url: string, payload: unknown, headers: Record<string, string> = {}) =>
    server.inject({ method: "POST", url, payload: typeof payload === "string" ? payload : JSON.stringify(payload), headers: { "content-type": "application/json", ...headers } });
  const outcome = (id: string, row = 0): { request_id: string; row: number; actual: number } => {
    const answer = answers.get(`${id}/${row}`) as Answer;
    return { request_id: id, row, actual: answer.label };
  };

  beforeAll(async () => {
    database = await storeOf(kind);
    app = await createMlship(defaultConfig({ home, "runtime.workers": 1, "log.level": "warn", ...(database.store === undefined ? {} : { store: database.store }) }));
    await registerModel(app, path.join(REPO, "examples/models/breast-cancer"), { name: "bc" });
    logger = new PredictionLogger({ scoring: app.scoring, store: app.predictions, registry: app.registry, logger: app.logger, spillDir: path.join(home, "spill"), timers: false });
    await logger.start();
    // The app's service, as `mlship serve` hands it to the routes (default horizon: 7 days).
    feedback = app.feedback;
    const score = async (rows: ProdRow[], options: { requestId?: string; key?: string }): Promise<void> => {
      const result = await app.scoring.score("bc@1", { kind: "mlflow", body: { dataframe_split: { columns: prod.columns, data: rows.map((r) => r.features) } } }, options);
      const classes = result.outputs.class?.data as unknown as string[];
      const probabilities = result.outputs.probabilities?.data as Float32Array;
      rows.forEach((r, i) => {
        const id = options.key ?? `${result.requestId}/${i}`;
        answers.set(id, { predicted: String(classes[i]), malignant: probabilities[i * 2] as number, benign: probabilities[i * 2 + 1] as number, label: r.label });
      });
    };
    // 30 single-row requests, one request of 5 rows, 5 requests by business key: 40 logged predictions.
    for (let i = 0; i < 30; i++) await score([prod.rows[i] as ProdRow], { requestId: `r-${i}` });
    await score(prod.rows.slice(30, 35), { requestId: "multi" });
    for (let i = 35; i < 40; i++) await score([prod.rows[i] as ProdRow], { requestId: `k-${i}`, key: `cust-${i}` });
    await logger.flush();
    server = buildServer({ scoring: app.scoring, registry: app.registry, logger: false });
    await server.register(feedbackRoutes, { feedback, registry: app.registry, logStats: () => logger.stats() });
    // A second mount with a small body limit and no prediction log counters.
    await server.register(feedbackRoutes, { feedback, registry: app.registry, bodyLimitBytes: 256, prefix: "/limited" });
    await server.ready();
  }, 120_000);

  afterAll(async () => {
    await server?.close();
    await logger?.close();
    await app?.close();
    await database?.drop();
    fs.rmSync(home, { recursive: true, force: true });
  });

  it("logged every scored row", async () => {
    expect(app.store.dialect).toBe(kind);
    expect(answers.size).toBe(40);
    const stats = logger.stats();
    expect(stats.written).toBe(40);
  });

  it("takes one outcome object: 202 with the counts", async () => {
    const res = await post("/v1/feedback", outcome("r-0"));
    expect(res.statusCode).toBe(202);
    expect(res.json<IngestResult>()).toEqual({ accepted: 1, matched: 1, pending: 0, late: 0, rejected: [] });
  });

  it("takes {outcomes: [...]}, a bare array, the rows of a multi-row request and outcomes by model and key", async () => {
    const listed = await post("/v1/feedback", { outcomes: Array.from({ length: 9 }, (_, i) => outcome(`r-${i + 1}`)) });
    expect(listed.statusCode).toBe(202);
    expect(listed.json<IngestResult>()).toEqual({ accepted: 9, matched: 9, pending: 0, late: 0, rejected: [] });
    const bare = await post("/v1/feedback", Array.from({ length: 5 }, (_, i) => outcome(`r-${i + 10}`)));
    expect(bare.json<IngestResult>()).toEqual({ accepted: 5, matched: 5, pending: 0, late: 0, rejected: [] });
    const multi = await post("/v1/feedback", { outcomes: [0, 1, 2, 3, 4].map((row) => outcome("multi", row)) });
    expect(multi.json<IngestResult>()).toEqual({ accepted: 5, matched: 5, pending: 0, late: 0, rejected: [] });
    const byKey = await post("/v1/feedback", [35, 36, 37, 38, 39].map((i) => ({ model: "bc", key: `cust-${i}`, actual: LABELS[(answers.get(`cust-${i}`) as Answer).label] })));
    expect(byKey.statusCode).toBe(202);
    expect(byKey.json<IngestResult>()).toEqual({ accepted: 5, matched: 5, pending: 0, late: 0, rejected: [] });
  });

  it("stores the good items of a mixed post and names the field of each bad one", async () => {
    const res = await post("/v1/feedback", [outcome("r-15"), { request_id: "r-16" }, { actual: 1 }, { request_id: "r-17", row: -1, actual: 1 }, { model: "bc", actual: 0 }, { request_id: "not-logged", actual: 1 }]);
    expect(res.statusCode).toBe(202);
    const body = res.json<IngestResult>();
    expect(body).toMatchObject({ accepted: 2, matched: 1, pending: 1, late: 0 });
    expect(body.rejected.map((r) => [r.index, r.field])).toEqual([
      [1, "actual"],
      [2, "request_id"],
      [3, "row"],
      [4, "key"],
    ]);
    for (const r of body.rejected) expect(r.message).not.toBe("");
  });

  it("answers 400 with the rejections when every item is bad", async () => {
    const res = await post("/v1/feedback", { outcomes: [{ request_id: "r-20" }, { request_id: "r-21", actual: { label: 1 } }] });
    expect(res.statusCode).toBe(400);
    const body = res.json<IngestResult & { code: string; error: string; field: string }>();
    expect(body).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "actual", accepted: 0, matched: 0, pending: 0, late: 0 });
    expect(body.error).toMatch(/every item was rejected \(2 of 2\)/);
    expect(body.rejected.map((r) => [r.index, r.field])).toEqual([
      [0, "actual"],
      [1, "actual"],
    ]);
  });

  it("refuses bodies that are not outcomes, naming the field", async () => {
    for (const payload of ['"just text"', "42", "null", "[]", '{"outcomes": []}', '{"outcomes": {"request_id": "r-1"}}']) {
      const res = await post("/v1/feedback", payload);
      expect(res.statusCode, payload).toBe(400);
      expect(res.json(), payload).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "outcomes" });
    }
    const tooMany = await post("/v1/feedback", { outcomes: Array.from({ length: MAX_FEEDBACK_ITEMS + 1 }, () => ({ request_id: "r-1", actual: 1 })) });
    expect(tooMany.statusCode).toBe(413);
    expect(tooMany.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_TOO_LARGE", field: "outcomes" });
    const malformed = await post("/v1/feedback", '{"request_id": "r-1", ');
    expect(malformed.statusCode).toBe(400);
    expect(malformed.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_JSON", field: "body" });
    const text = await server.inject({ method: "POST", url: "/v1/feedback", payload: "request_id=r-1", headers: { "content-type": "text/plain" } });
    expect(text.statusCode).toBe(415);
    expect(text.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_CONTENT_TYPE", field: "content-type" });
    const csv = await server.inject({ method: "POST", url: "/v1/feedback", payload: "request_id,actual\nr-1,1\n", headers: { "content-type": "text/csv" } });
    expect(csv.statusCode).toBe(415);
  });

  it("refuses a body over the limit before parsing it, and shows no log counters where none were given", async () => {
    const big = await post("/limited/v1/feedback", { outcomes: Array.from({ length: 20 }, (_, i) => outcome(`r-${i}`)) });
    expect(big.statusCode).toBe(413);
    expect(big.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_TOO_LARGE", field: "body" });
    const small = await post("/limited/v1/feedback", outcome("r-0"));
    expect(small.statusCode).toBe(202);
    const latin1 = await post("/limited/v1/feedback", outcome("r-0"), { "content-type": "application/json; charset=iso-8859-1" });
    expect(latin1.statusCode).toBe(415);
    expect(latin1.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_CONTENT_TYPE", field: "content-type" });
    const stats = await server.inject("/limited/api/v1/feedback/stats");
    expect(stats.json<{ log: unknown }>().log).toBeNull();
  });

  it("counts a reposted outcome once", async () => {
    const before = (await server.inject("/api/v1/models/bc/quality?version=1")).json<QualityReport>();
    const again = await post("/v1/feedback", [outcome("r-0"), outcome("r-1"), outcome("multi", 3)]);
    expect(again.statusCode).toBe(202);
    expect(again.json<IngestResult>()).toMatchObject({ accepted: 3, matched: 3 });
    const after = (await server.inject("/api/v1/models/bc/quality?version=1")).json<QualityReport>();
    expect(after.outcomes).toBe(before.outcomes);
    expect(after.metrics).toEqual(before.metrics);
  });

  it("reports live quality equal to the hand computation on the posted outcomes", async () => {
    const res = await server.inject("/api/v1/models/bc/quality?version=1&window=1d");
    expect(res.statusCode).toBe(200);
    const report = res.json<QualityReport>();
    // Outcomes posted: r-0..r-15, multi/0..4, cust-35..39.
    const joined = [...Array.from({ length: 16 }, (_, i) => `r-${i}/0`), ...[0, 1, 2, 3, 4].map((row) => `multi/${row}`), ...[35, 36, 37, 38, 39].map((i) => `cust-${i}`)].map(
      (id) => answers.get(id) as Answer,
    );
    expect(report).toMatchObject({ model: "bc", version: 1, task: "binary_classification", predictions: 40, outcomes: 26 });
    expect(report.window.size).toBe("1d");
    expect(report.coverage).toBeCloseTo(26 / 40, 12);
    const correct = joined.filter((a) => a.predicted === LABELS[a.label]).length;
    const tp = joined.filter((a) => a.predicted === "benign" && a.label === 1).length;
    const fp = joined.filter((a) => a.predicted === "benign" && a.label === 0).length;
    const fn = joined.filter((a) => a.predicted === "malignant" && a.label === 1).length;
    const precision = tp / (tp + fp);
    const recall = tp / (tp + fn);
    expect(report.metrics.accuracy).toBeCloseTo(correct / joined.length, 12);
    expect(report.metrics.precision).toBeCloseTo(precision, 12);
    expect(report.metrics.recall).toBeCloseTo(recall, 12);
    expect(report.metrics.f1).toBeCloseTo((2 * precision * recall) / (precision + recall), 12);
    // ROC AUC: the share of (benign, malignant) pairs the benign probability orders right (ties count half).
    const positives = joined.filter((a) => a.label === 1);
    const negatives = joined.filter((a) => a.label === 0);
    let ordered = 0;
    for (const p of positives) for (const n of negatives) ordered += p.benign > n.benign ? 1 : p.benign === n.benign ? 0.5 : 0;
    expect(report.metrics.roc_auc).toBeCloseTo(ordered / (positives.length * negatives.length), 6);
    const clip = (p: number): number => Math.min(Math.max(p, 1e-15), 1 - 1e-15);
    const logLoss = joined.reduce((s, a) => s - Math.log(clip(a.label === 1 ? a.benign : a.malignant)), 0) / joined.length;
    expect(report.metrics.log_loss).toBeCloseTo(logLoss, 5);
  });

  it("reports every version without ?version, and refuses bad queries", async () => {
    const all = await server.inject("/api/v1/models/bc/quality");
    expect(all.statusCode).toBe(200);
    const body = all.json<{ model: string; window: string; versions: QualityReport[] }>();
    expect(body.model).toBe("bc");
    expect(body.window).toBe("1d");
    expect(body.versions.map((r) => [r.version, r.predictions, r.outcomes])).toEqual([[1, 40, 26]]);
    const challenger = await server.inject("/api/v1/models/bc/quality?variant=challenger");
    expect(challenger.json<{ versions: unknown[] }>().versions).toEqual([]);

    const badWindow = await server.inject("/api/v1/models/bc/quality?window=yesterday");
    expect(badWindow.statusCode).toBe(400);
    expect(badWindow.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "window" });
    const badVariant = await server.inject("/api/v1/models/bc/quality?variant=blue");
    expect(badVariant.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "variant" });
    const twice = await server.inject("/api/v1/models/bc/quality?window=1h&window=1d");
    expect(twice.statusCode).toBe(400);
    expect(twice.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "window" });
    const badVersion = await server.inject("/api/v1/models/bc/quality?version=one");
    expect(badVersion.json()).toMatchObject({ code: "MLSHIP_ERR_INPUT_INVALID", field: "version" });
    const noModel = await server.inject("/api/v1/models/nope/quality");
    expect(noModel.statusCode).toBe(404);
    expect(noModel.json()).toMatchObject({ code: "MLSHIP_ERR_MODEL_NOT_FOUND" });
    const noVersion = await server.inject("/api/v1/models/bc/quality?version=7");
    expect(noVersion.statusCode).toBe(404);
    expect(noVersion.json()).toMatchObject({ code: "MLSHIP_ERR_MODEL_VERSION_NOT_FOUND" });
  });

  it("takes business events and counts them in the report", async () => {
    const one = await post("/v1/events", { name: "click", request_id: "r-2", event_id: "e-1" });
    expect(one.statusCode).toBe(202);
    expect(one.json<IngestResult>()).toEqual({ accepted: 1, matched: 1, pending: 0, late: 0, rejected: [] });
    const listed = await post("/v1/events", { events: [{ name: "purchase", value: 25.5, model: "bc", key: "cust-36", event_id: "e-2" }, { name: "purchase", value: 10, request_id: "r-3", event_id: "e-3" }, { value: 3, request_id: "r-4" }] });
    expect(listed.statusCode).toBe(202);
    const body = listed.json<IngestResult>();
    expect(body).toMatchObject({ accepted: 2, matched: 2 });
    expect(body.rejected.map((r) => [r.index, r.field])).toEqual([[2, "name"]]);
    const bad = await post("/v1/events", { events: "click" });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ field: "events" });
    const report = (await server.inject("/api/v1/models/bc/quality?version=1")).json<QualityReport>();
    expect(report.events.click?.count).toBe(1);
    expect(report.events.purchase).toMatchObject({ count: 2, sum: 35.5 });
  });

  it("shows the join counts and the prediction log's counters", async () => {
    const res = await server.inject("/api/v1/feedback/stats");
    expect(res.statusCode).toBe(200);
    const body = res.json<{ outcomes: JoinStats; events: JoinStats; log: PredictionLogStats | null }>();
    // 26 outcomes joined, one for a request that was never logged.
    expect(body.outcomes).toEqual({ matched: 26, pending: 1, late: 0, unmatched: 0 });
    expect(body.events).toEqual({ matched: 3, pending: 0, late: 0, unmatched: 0 });
    expect(body.log).toMatchObject({ received: 40, written: 40, buffered: 0 });
  });
});
