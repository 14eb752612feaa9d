import fs from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import { silentLogger } from "../../src/core/index.js";
import { feedbackSpecOf, recordsOf, type PredictionStore } from "../../src/feedback/index.js";
import type { Alert } from "../../src/monitor/index.js";
import { Alerter } from "../../src/monitor/index.js";
import { RetrainTrigger, retrainSink, type RetrainTriggerOptions } from "../../src/rollout/retrain.js";
import type { RetrainContext, RetrainHook, RolloutService } from "../../src/rollout/types.js";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const FIXTURES = fileURLToPath(new URL("../../../shared/fixtures/", import.meta.url));
const MODEL = "breast-cancer";
const LOGGED_ROWS = 24;
const LABELLED_ROWS = 17;

/** The prod split of the breast-cancer fixture: feature columns and the label (0 malignant, 1 benign). */
async function prodRows(): Promise<{ columns: string[]; data: number[][]; labels: number[] }> {
  const [head = "", ...lines] = (await fs.readFile(path.join(FIXTURES, "breast_cancer_mlp", "prod.csv"), "utf8")).trim().split("\n");
  const header = head.split(",");
  const labelIndex = header.indexOf("label");
  const rows = lines.map((l) => l.split(",").map(Number));
  return { columns: header.filter((_, i) => i !== labelIndex), data: rows.map((r) => r.filter((_, i) => i !== labelIndex)), labels: rows.map((r) => r[labelIndex] ?? -1) };
}

function driftAlert(version: number, at: Date, overrides: Partial<Alert> = {}): Alert {
  return {
    id: `${MODEL}@${version}:drift:drift:mean radius[1h]`,
    model: MODEL,
    version,
    kind: "drift",
    severity: "warning",
    feature: "mean radius",
    message: "drift in 'mean radius': ks p-value 0.0001 < 0.05",
    value: 0.0001,
    threshold: 0.05,
    window: { size: "1h", start: new Date(at.getTime() - 3_600_000).toISOString(), end: new Date(at.getTime() + 60_000).toISOString() },
    at: at.toISOString(),
    ...overrides,
  };
}

/** A shell command that writes what it received (stdin, its environment) to `out` as JSON and prints a line. */
function recorderCommand(out: string, exitCode = 0): string {
  const script = [
    "let d='';",
    "process.stdin.on('data',(c)=>{d+=c;}).on('end',()=>{",
    `require('fs').writeFileSync(${JSON.stringify(out).replace(/"/g, "'")},JSON.stringify({stdin:d,contextFile:process.env.MLSHIP_RETRAIN_CONTEXT,home:process.env.MLSHIP_HOME,store:process.env.MLSHIP_STORE}));`,
    `console.log('retraining started');process.exit(${exitCode});});`,
  ].join("");
  return `"${process.execPath}" -e "${script}"`;
}

describe("retraining triggers (real store, real model, real commands and webhooks)", () => {
  let home: string;
  let app: Mlship;
  let rollouts: RolloutService;
  let predictions: PredictionStore;
  let loggedAt: Date;

  const trigger = (extra: Partial<RetrainTriggerOptions> = {}): RetrainTrigger =>
    new RetrainTrigger({
      rollouts,
      registry: app.registry,
      exportPredictions: (query) => predictions.exportPredictions(query),
      quality: () => Promise.resolve({ accuracy: 0.91 }),
      dataDir: path.join(home, "retrain"),
      serverUrl: "http://127.0.0.1:8080",
      home,
      store: "sqlite:(home)/mlship.db",
      logger: silentLogger(),
      webhookBackoffMs: 10,
      ...extra,
    });

  const setHook = (retrain: RetrainHook): Promise<unknown> => rollouts.setPolicy({ ...defaultPolicy(), retrain }, { by: "test" });
  const defaultPolicy = () => ({ model: MODEL, onNewVersion: "manual" as const, gate: null, canary: { mode: "canary" as const, percent: 10, sticky: true, guard: {} }, retrain: null });

  beforeAll(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), "mlship-retrain-"));
    app = await createMlship(defaultConfig({ home, "runtime.workers": 1 }), { logger: silentLogger() });
    await registerModel(app, path.join(REPO, "examples/models/breast-cancer"), { name: MODEL, alias: "production" });
    await registerModel(app, path.join(REPO, "examples/models/breast-cancer"), { name: MODEL });
    rollouts = app.rollouts;
    predictions = app.predictions;

    // Log real predictions of the production version the way the prediction log does, then post outcomes.
    const manifest = (await app.registry.getVersion(MODEL, 1)).manifest;
    const spec = { ...feedbackSpecOf(manifest), inputs: "full" as const };
    const writes: Promise<number>[] = [];
    const off = app.scoring.onScored((event) => writes.push(predictions.insertPredictions(recordsOf(event, spec, manifest))));
    const prod = await prodRows();
    await app.scoring.score(MODEL, { kind: "mlflow", body: { dataframe_split: { columns: prod.columns, data: prod.data.slice(0, LOGGED_ROWS) } } }, { requestId: "req-retrain" });
    off();
    expect(await Promise.all(writes)).toEqual([LOGGED_ROWS]);
    loggedAt = new Date();
    const outcomes = prod.labels.slice(0, LABELLED_ROWS).map((actual, row) => ({ request_id: "req-retrain", row, actual }));
    const ingested = await predictions.ingestOutcomes(outcomes, { horizonMs: 86_400_000, pendingMs: 3_600_000 });
    expect(ingested.matched).toBe(LABELLED_ROWS);
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    await fs.rm(home, { recursive: true, force: true });
  });

  it("runs the command with the context on stdin and in MLSHIP_RETRAIN_CONTEXT, with a recent-data file that exists", async () => {
    const out = path.join(home, "command-1.json");
    await setHook({ command: recorderCommand(out), cooldown: "1h" });
    const retrain = trigger();
    const [outcome] = await retrain.handle([driftAlert(1, loggedAt), driftAlert(2, loggedAt, { id: "other-version" })]);
    expect(outcome).toMatchObject({ model: MODEL, version: 1, status: "triggered", ok: true });
    expect(outcome?.command).toMatchObject({ exitCode: 0, timedOut: false, signal: null });
    expect(outcome?.command?.output).toBe("retraining started\n");

    const received = JSON.parse(await fs.readFile(out, "utf8")) as { stdin: string; contextFile: string; home: string; store: string };
    const context = JSON.parse(received.stdin) as RetrainContext;
    expect(JSON.parse(await fs.readFile(received.contextFile, "utf8"))).toEqual(context);
    expect(received.home).toBe(home);
    expect(received.store).toBe("sqlite:(home)/mlship.db");
    expect(context).toMatchObject({ model: MODEL, version: 1, alias: "production", metrics: { accuracy: 0.91 }, mlship: { url: "http://127.0.0.1:8080", home, store: "sqlite:(home)/mlship.db" } });
    // Only the alert about the production version triggered it.
    expect(context.alerts.map((a) => a.id)).toEqual([driftAlert(1, loggedAt).id]);
    expect(context.alerts[0]?.window?.size).toBe("1h");

    // The recent data: the labelled rows only, with inputs, prediction and actual label.
    expect(context.recentData.rows).toBe(LABELLED_ROWS);
    expect(path.dirname(context.recentData.path)).toBe(path.join(home, "retrain"));
    const lines = (await fs.readFile(context.recentData.path, "utf8")).trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(LABELLED_ROWS);
    const prod = await prodRows();
    for (const [i, line] of lines.entries()) {
      expect(line).toMatchObject({ requestId: "req-retrain", row: i, model: MODEL, version: 1 });
      // The outcome as posted (the class index); quality maps it to the label text.
      expect(line.actual).toBe(prod.labels[i]);
      expect(["malignant", "benign"]).toContain(line.prediction);
      expect((line.inputs as Record<string, number>)["mean radius"]).toBeCloseTo(prod.data[i]?.[0] ?? Number.NaN, 4);
    }

    const [entry] = await rollouts.audit.list({ model: MODEL, action: "retrain.trigger" });
    expect(entry).toMatchObject({ actor: "mlship-retrain", version: 1 });
    expect(entry?.details).toMatchObject({ ok: true, command: { exitCode: 0 }, recentData: { rows: LABELLED_ROWS } });
  });

  it("keeps the cool-down per model, in memory and across restarts (from the audit log)", async () => {
    const out = path.join(home, "command-2.json");
    await setHook({ command: recorderCommand(out, 3), cooldown: "1h" });
    // The first test's call is in the audit log: a fresh trigger (a restarted server) waits too.
    const restarted = trigger();
    const [held] = await restarted.handle([driftAlert(1, loggedAt)]);
    expect(held?.status).toBe("cooldown");
    await expect(fs.access(out)).rejects.toThrow();

    // Two hours on, the hook is called again; its exit code is recorded.
    const later = trigger({ now: () => new Date(Date.now() + 2 * 3_600_000) });
    const [first, second] = await Promise.all([later.handle([driftAlert(1, loggedAt)]), later.handle([driftAlert(1, loggedAt)])]);
    const statuses = [first?.[0]?.status, second?.[0]?.status];
    expect(statuses).toEqual(["triggered", "cooldown"]);
    expect(first?.[0]).toMatchObject({ ok: false, command: { exitCode: 3 } });
    await fs.access(out);
    const [entry] = await rollouts.audit.list({ model: MODEL, action: "retrain.trigger" });
    expect(entry?.details).toMatchObject({ ok: false, command: { exitCode: 3, output: "retraining started\n" } });
    expect(entry?.reason).toContain("exit code 3");
  });

  it("ignores alert families the hook does not listen to, and kills a command past its timeout", async () => {
    await setHook({ command: "sleep 30", on: ["quality"], cooldown: "1ms", timeoutSeconds: 0.5 });
    const retrain = trigger();
    const [ignored] = await retrain.handle([driftAlert(1, loggedAt)]);
    expect(ignored).toMatchObject({ status: "skipped" });
    expect(ignored?.reason).toContain("no quality alert");

    const quality: Alert = { ...driftAlert(1, loggedAt), id: `${MODEL}@1:quality:accuracy<0.9:*[1h]`, kind: "quality", message: "accuracy 0.82 < 0.9 over 1h" };
    const started = Date.now();
    const [killed] = await retrain.handle([quality]);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(killed).toMatchObject({ status: "triggered", ok: false, command: { timedOut: true, exitCode: null, signal: "SIGTERM" } });
  });

  it("POSTs the context to a webhook, retrying a 5xx answer; the sink hands fired alerts over without waiting", async () => {
    const bodies: string[] = [];
    let calls = 0;
    const server = http.createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        calls++;
        bodies.push(body);
        res.statusCode = calls === 1 ? 503 : 202;
        res.end("{}");
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/retrain`;
      await setHook({ webhook: url, cooldown: "1ms" });
      const retrain = trigger();
      const alerter = new Alerter({ sinks: [retrainSink(retrain)] });
      const processed = await alerter.process([driftAlert(1, loggedAt)]);
      expect(processed.fired).toHaveLength(1);
      await retrain.idle();
      expect(calls).toBe(2);
      const context = JSON.parse(bodies[1] ?? "{}") as RetrainContext;
      expect(context).toMatchObject({ model: MODEL, version: 1, recentData: { rows: LABELLED_ROWS } });
      await fs.access(context.recentData.path);
      const [entry] = await rollouts.audit.list({ model: MODEL, action: "retrain.trigger" });
      expect(entry?.details).toMatchObject({ ok: true, webhook: { url, ok: true, status: 202, attempts: 2 } });

      // A 4xx answer is not retried; the failure is audited, never thrown.
      await new Promise((resolve) => setTimeout(resolve, 5));
      server.removeAllListeners("request");
      server.on("request", (_req: http.IncomingMessage, res: http.ServerResponse) => {
        calls++;
        res.statusCode = 400;
        res.end();
      });
      const [refused] = await retrain.handle([driftAlert(1, loggedAt)]);
      expect(refused).toMatchObject({ status: "triggered", ok: false, webhook: { status: 400, attempts: 1, ok: false } });
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
