import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { defaultMonitorConfig } from "../../src/package/index.js";
import { Alerter, alertsFromReport, gaugeSink, logSink, webhookSink } from "../../src/monitor/alerts.js";
import type { Alert, AlertSink, AlertStateStore } from "../../src/monitor/alerts.js";
import { checkRules, columnsOf, datasetDrift, profileTable, readDatasetFile, referenceFromProfile } from "../../src/monitor/index.js";
import type { CheckReport } from "../../src/monitor/index.js";

const FIXTURES = fileURLToPath(new URL("../../../shared/fixtures/breast_cancer_mlp/", import.meta.url));

/** A check of drifted.csv against train.csv, assembled from the same pieces `checkDataset` uses (no model needed). */
async function breastCancerCheck(): Promise<CheckReport> {
  const train = (await readDatasetFile(path.join(FIXTURES, "train.csv"), { excludeColumns: ["label"] })).table;
  const drifted = (await readDatasetFile(path.join(FIXTURES, "drifted.csv"), { excludeColumns: ["label"] })).table;
  const reference = profileTable(train);
  const kinds = Object.fromEntries(reference.columns.map((c) => [c.name, c.kind]));
  const edges = Object.fromEntries(reference.columns.flatMap((c) => (c.kind === "numeric" ? [[c.name, c.histogram.edges]] : [])));
  const current = profileTable(drifted, { kinds, edges });
  const rules = checkRules({ current, reference, config: defaultMonitorConfig() });
  const drift = datasetDrift(referenceFromProfile(reference), columnsOf(drifted), { kinds });
  const failures = [
    ...rules.filter((r) => !r.passed && r.severity === "error").map((r) => `rule ${r.rule}`),
    ...drift.features.filter((f) => f.drifted).map((f) => `drift in '${f.feature}'`),
  ];
  return { model: "breast-cancer", version: 3, rows: drifted.rows, source: "drifted.csv", rules, drift, skippedFeatures: [], predictionDrift: undefined, predictionDriftSkipped: "no model scored", windows: undefined, kinds: undefined, failures, passed: failures.length === 0 };
}

function alert(feature: string, severity: Alert["severity"] = "warning", kind: Alert["kind"] = "drift"): Alert {
  return {
    id: `m@1:${kind}:drift:${feature}`,
    model: "m",
    version: 1,
    kind,
    severity,
    feature,
    message: `drift in '${feature}'`,
    value: 0.001,
    threshold: 0.05,
    at: "2024-06-01T00:00:00.000Z",
  };
}

interface Received {
  body: unknown;
  headers: http.IncomingHttpHeaders;
}

/** A webhook receiver on a free port; `answer` decides each request's status (undefined: never answer). */
async function receiver(answer: (n: number) => number | undefined = () => 200): Promise<{ url: string; received: Received[]; close(): Promise<void> }> {
  const received: Received[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      received.push({ body: JSON.parse(Buffer.concat(chunks).toString("utf8")), headers: req.headers });
      const status = answer(received.length);
      if (status !== undefined) res.writeHead(status, { "content-type": "text/plain" }).end(status < 300 ? "ok" : "no");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A pino logger whose JSON lines are kept in memory. */
function memoryLogger(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: "debug" }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, lines };
}

/** `name{labels} value` samples of one metric from the Prometheus text exposition. */
async function samples(registry: Registry, name: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const line of (await registry.metrics()).split("\n")) {
    const match = /^(\w+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (match !== null && match[1] === name) out.set(match[2] ?? "", Number(match[3]));
  }
  return out;
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()?.();
});

async function openReceiver(answer?: (n: number) => number | undefined): ReturnType<typeof receiver> {
  const r = await receiver(answer);
  closers.push(r.close);
  return r;
}

describe("alertsFromReport on drifted.csv vs train.csv", () => {
  let report: CheckReport;
  beforeAll(async () => {
    report = await breastCancerCheck();
  });

  it("gives one alert per failed rule and per drifted feature, with stable ids", () => {
    const alerts = alertsFromReport(report, undefined, { now: new Date("2024-06-01T12:00:00Z") });
    const drifted = report.drift.features.filter((f) => f.drifted).map((f) => f.feature);
    // The fixture shifts these three columns (meta.json `drift.changes`).
    expect(drifted).toEqual(["mean radius", "mean texture", "worst smoothness"]);
    const driftAlerts = alerts.filter((a) => a.kind === "drift");
    expect(driftAlerts.map((a) => a.feature).sort()).toEqual([...drifted].sort());
    for (const a of driftAlerts) {
      const f = report.drift.features.find((x) => x.feature === a.feature);
      expect(a.value).toBe(f?.score);
      expect(a.threshold).toBe(f?.threshold);
      expect(a.id).toBe(`breast-cancer@3:drift:drift:${a.feature}`);
      expect(a.at).toBe("2024-06-01T12:00:00.000Z");
    }
    const failedRules = report.rules.filter((r) => !r.passed);
    const ruleAlerts = alerts.filter((a) => a.kind === "rule");
    expect(ruleAlerts).toHaveLength(failedRules.length);
    ruleAlerts.forEach((a, i) => {
      expect(a.severity).toBe(failedRules[i]?.severity);
      expect(a.threshold).toBe(failedRules[i]?.expected);
    });
    expect(alerts.filter((a) => a.kind === "dataset_drift")).toHaveLength(report.drift.drifted ? 1 : 0);
    expect(new Set(alerts.map((a) => a.id)).size).toBe(alerts.length);
    // Stable: the same report gives the same ids.
    expect(alertsFromReport(report).map((a) => a.id)).toEqual(alerts.map((a) => a.id));
  });

  it("adds dataset drift, prediction drift and the window to the alerts", () => {
    const forced: CheckReport = {
      ...report,
      drift: { ...report.drift, shareThreshold: 0.05, drifted: true },
      predictionDrift: { ...report.drift, features: report.drift.features.slice(0, 2).map((f) => ({ ...f, feature: `probabilities[${f.feature === "mean radius" ? 1 : 0}]`, drifted: true })), driftedFeatures: 2, share: 1, drifted: true },
    };
    const window = { size: "1h", start: "2024-06-01T10:00:00.000Z", end: "2024-06-01T11:00:00.000Z" };
    const alerts = alertsFromReport(forced, window);
    const dataset = alerts.find((a) => a.kind === "dataset_drift");
    expect(dataset).toMatchObject({ severity: "error", value: report.drift.share, threshold: 0.05, window, at: window.end, id: "breast-cancer@3:dataset_drift:dataset_drift:*[1h]" });
    expect(dataset?.feature).toBeUndefined();
    const outputs = alerts.filter((a) => a.kind === "prediction_drift");
    expect(outputs.map((a) => a.feature ?? "(dataset)").sort()).toEqual(["(dataset)", "probabilities[0]", "probabilities[1]"]);
    expect(alerts.every((a) => a.id.endsWith("[1h]"))).toBe(true);
  });
});

describe("webhookSink", () => {
  it("POSTs one JSON batch per call with every fired alert and the configured headers", async () => {
    const hook = await openReceiver();
    const sink = webhookSink({ url: hook.url, headers: { authorization: "Bearer t0k" } });
    const alerter = new Alerter({ sinks: [sink] });
    await alerter.process([alert("a"), alert("b", "error"), alert("c")], new Date("2024-06-01T00:00:00Z"));
    expect(hook.received).toHaveLength(1);
    const first = hook.received[0] as Received;
    expect(first.headers["content-type"]).toBe("application/json");
    expect(first.headers.authorization).toBe("Bearer t0k");
    expect(first.body).toEqual({ alerts: [alert("a"), alert("b", "error"), alert("c")] });
    expect(sink.stats).toEqual({ delivered: 1, failed: 0, attempts: 1 });
    // A call in which nothing fires (all in cool-down) sends nothing.
    await alerter.process([alert("a"), alert("b", "error"), alert("c")], new Date("2024-06-01T00:10:00Z"));
    expect(hook.received).toHaveLength(1);
  });

  it("retries after 5xx answers with the same body and succeeds", async () => {
    const hook = await openReceiver((n) => (n <= 2 ? 500 : 204));
    const sink = webhookSink({ url: hook.url, retries: 2, backoffMs: 10 });
    await new Alerter({ sinks: [sink] }).process([alert("a")]);
    expect(hook.received).toHaveLength(3);
    expect(hook.received.map((r) => r.body)).toEqual([{ alerts: [alert("a")] }, { alerts: [alert("a")] }, { alerts: [alert("a")] }]);
    expect(sink.stats).toEqual({ delivered: 1, failed: 0, attempts: 3 });
  });

  it("gives up after the last retry, logs and counts the failure, and does not throw", async () => {
    const hook = await openReceiver(() => 503);
    const { logger, lines } = memoryLogger();
    const sink = webhookSink({ url: hook.url, retries: 1, backoffMs: 5, logger });
    const result = await new Alerter({ sinks: [sink] }).process([alert("a")]);
    expect(result.fired).toHaveLength(1);
    expect(hook.received).toHaveLength(2);
    expect(sink.stats).toEqual({ delivered: 0, failed: 1, attempts: 2 });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 50, event: "monitor_webhook_failed", url: hook.url });
    expect(String(lines[0]?.msg)).toContain("HTTP 503");
  });

  it("does not retry a 4xx answer", async () => {
    const hook = await openReceiver(() => 400);
    const sink = webhookSink({ url: hook.url, retries: 3, backoffMs: 5 });
    await new Alerter({ sinks: [sink] }).process([alert("a")]);
    expect(hook.received).toHaveLength(1);
    expect(sink.stats).toEqual({ delivered: 0, failed: 1, attempts: 1 });
  });

  it("stops waiting for a receiver that never answers after the timeout, per attempt, and logs it", async () => {
    const hook = await openReceiver(() => undefined);
    const { logger, lines } = memoryLogger();
    const sink = webhookSink({ url: hook.url, timeoutMs: 200, retries: 1, backoffMs: 5, logger });
    const started = Date.now();
    const result = await new Alerter({ sinks: [sink] }).process([alert("a")]);
    // Generous bound, only to catch a hang: two 200 ms attempts.
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(result.fired).toHaveLength(1);
    expect(hook.received).toHaveLength(2);
    expect(sink.stats).toEqual({ delivered: 0, failed: 1, attempts: 2 });
    expect(String(lines[0]?.msg)).toContain("no answer within 200 ms");
  });

  it("retries connection errors and counts the failure", async () => {
    const hook = await receiver();
    await hook.close();
    const { logger, lines } = memoryLogger();
    const sink = webhookSink({ url: hook.url, retries: 2, backoffMs: 5, logger });
    await new Alerter({ sinks: [sink] }).process([alert("a")]);
    expect(sink.stats).toEqual({ delivered: 0, failed: 1, attempts: 3 });
    expect(String(lines[0]?.msg)).toMatch(/ECONNREFUSED|fetch failed/);
  });
});

describe("Alerter de-duplication", () => {
  const t0 = Date.parse("2024-06-01T00:00:00Z");
  const at = (minutes: number): Date => new Date(t0 + minutes * 60_000);

  it("sends an active alert again only after the cool-down", async () => {
    const hook = await openReceiver();
    const alerter = new Alerter({ sinks: [webhookSink({ url: hook.url })], cooldownMs: 60 * 60_000 });
    expect((await alerter.process([alert("a")], at(0))).fired).toHaveLength(1);
    const held = await alerter.process([alert("a")], at(30));
    expect(held.fired).toHaveLength(0);
    expect(held.suppressed.map((a) => a.id)).toEqual([alert("a").id]);
    expect((await alerter.process([alert("a")], at(59))).fired).toHaveLength(0);
    expect((await alerter.process([alert("a")], at(60))).fired).toHaveLength(1);
    // The cool-down restarts from the last send.
    expect((await alerter.process([alert("a")], at(100))).fired).toHaveLength(0);
    expect(hook.received).toHaveLength(2);
  });

  it("defaults to a one hour cool-down", () => {
    expect(new Alerter({ sinks: [] }).cooldownMs).toBe(3_600_000);
  });

  it("clears an alert that is gone, and fires it at once when it comes back", async () => {
    const registry = new Registry();
    const hook = await openReceiver();
    const alerter = new Alerter({ sinks: [webhookSink({ url: hook.url }), gaugeSink(registry)] });
    await alerter.process([alert("a"), alert("b", "error")], at(0));
    let gauge = await samples(registry, "mlship_monitor_alert_active");
    expect(gauge.get('{model="m",version="1",kind="drift",feature="a"}')).toBe(1);
    expect(gauge.get('{model="m",version="1",kind="drift",feature="b"}')).toBe(1);

    const second = await alerter.process([alert("a")], at(1));
    expect(second.cleared.map((a) => a.feature)).toEqual(["b"]);
    expect(second.fired).toHaveLength(0);
    gauge = await samples(registry, "mlship_monitor_alert_active");
    expect(gauge.get('{model="m",version="1",kind="drift",feature="a"}')).toBe(1);
    expect(gauge.get('{model="m",version="1",kind="drift",feature="b"}')).toBe(0);
    expect(await alerter.activeIds()).toEqual([alert("a").id]);

    const third = await alerter.process([alert("a"), alert("b", "error")], at(2));
    expect(third.fired.map((a) => a.feature)).toEqual(["b"]);
    expect(third.suppressed.map((a) => a.feature)).toEqual(["a"]);
    gauge = await samples(registry, "mlship_monitor_alert_active");
    expect(gauge.get('{model="m",version="1",kind="drift",feature="b"}')).toBe(1);
    expect(hook.received.map((r) => (r.body as { alerts: Alert[] }).alerts.map((a) => a.feature))).toEqual([["a", "b"], ["b"]]);

    const total = await samples(registry, "mlship_monitor_alerts_total");
    expect(total.get('{model="m",version="1",kind="drift",severity="warning"}')).toBe(1);
    expect(total.get('{model="m",version="1",kind="drift",severity="error"}')).toBe(2);
  });

  it("keeps a gauge at 1 while another alert with the same labels is still active", async () => {
    const registry = new Registry();
    const alerter = new Alerter({ sinks: [gaugeSink(registry)] });
    const rangeRule = { ...alert("x", "error", "rule"), id: "m@1:rule:range:x" };
    const nullRule = { ...alert("x", "warning", "rule"), id: "m@1:rule:null_rate:x" };
    await alerter.process([rangeRule, nullRule], at(0));
    await alerter.process([nullRule], at(1));
    expect((await samples(registry, "mlship_monitor_alert_active")).get('{model="m",version="1",kind="rule",feature="x"}')).toBe(1);
    await alerter.process([], at(2));
    expect((await samples(registry, "mlship_monitor_alert_active")).get('{model="m",version="1",kind="rule",feature="x"}')).toBe(0);
  });

  it("clears only within the scope a call names", async () => {
    const alerter = new Alerter({ sinks: [] });
    const other = { ...alert("z"), id: "n@2:drift:drift:z", model: "n", version: 2 };
    await alerter.process([alert("a")], at(0), { scope: "m@1" });
    await alerter.process([other], at(0), { scope: "n@2" });
    const result = await alerter.process([], at(1), { scope: "n@2" });
    expect(result.cleared.map((a) => a.id)).toEqual([other.id]);
    expect(await alerter.activeIds()).toEqual([alert("a").id]);
  });

  it("keeps the cool-down across alerters through a state store", async () => {
    const saved = new Map<string, string>();
    // JSON text in between, as a file or database would hold it.
    const store: AlertStateStore = {
      get: (key) => (saved.has(key) ? (JSON.parse(saved.get(key) as string) as unknown) : undefined),
      set: (key, value) => void saved.set(key, JSON.stringify(value)),
    };
    expect((await new Alerter({ sinks: [], stateStore: store }).process([alert("a")], at(0))).fired).toHaveLength(1);
    const restarted = new Alerter({ sinks: [], stateStore: store });
    expect(await restarted.activeIds()).toEqual([alert("a").id]);
    expect((await restarted.process([alert("a")], at(10))).fired).toHaveLength(0);
    expect((await new Alerter({ sinks: [], stateStore: store }).process([alert("a")], at(61))).fired).toHaveLength(1);
  });

  it("logs a sink that throws and still reaches the other sinks", async () => {
    const { logger, lines } = memoryLogger();
    const broken: AlertSink = {
      name: "broken",
      send: () => Promise.reject(new Error("disk full")),
    };
    const reached: Alert[] = [];
    const collecting: AlertSink = {
      name: "collect",
      send: (alerts) => {
        reached.push(...alerts);
        return Promise.resolve();
      },
    };
    await expect(new Alerter({ sinks: [broken, collecting], logger }).process([alert("a")])).resolves.toMatchObject({ fired: [alert("a")] });
    expect(reached).toEqual([alert("a")]);
    expect(lines[0]).toMatchObject({ level: 50, event: "monitor_alert_sink_failed", sink: "broken" });
  });
});

describe("logSink", () => {
  it("writes one line per alert at error or warn with the alert fields, and an info line when it clears", async () => {
    const { logger, lines } = memoryLogger();
    const alerter = new Alerter({ sinks: [logSink(logger)] });
    const window = { size: "1d", start: "2024-05-31T00:00:00.000Z", end: "2024-06-01T00:00:00.000Z" };
    await alerter.process([alert("a", "error"), { ...alert("b"), window }], new Date("2024-06-01T00:00:00Z"));
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ level: 50, msg: "drift in 'a'", event: "monitor_alert", alert: { id: alert("a").id, model: "m", version: 1, kind: "drift", severity: "error", feature: "a", value: 0.001, threshold: 0.05 } });
    expect(lines[1]).toMatchObject({ level: 40, msg: "drift in 'b'", alert: { severity: "warning", window } });
    await alerter.process([alert("a", "error")], new Date("2024-06-01T00:05:00Z"));
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatchObject({ level: 30, event: "monitor_alert_cleared", alert: { id: alert("b").id } });
  });
});
