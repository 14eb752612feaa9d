/**
 * Alerts from monitoring findings: a check report (rules, feature drift, dataset drift, prediction drift) becomes a
 * list of `Alert`s with stable ids; the `Alerter` de-duplicates them with a cool-down and hands them to sinks (a log
 * line, a webhook POST, Prometheus series).
 *
 * De-duplication: an alert is sent the first time it is seen, then again only once `cooldownMs` has passed while it
 * stayed active. An alert that is absent from a later `process` call is cleared (its gauge goes to 0) and fires at
 * once if it comes back, so a flapping condition is reported each time it returns.
 */
import { Counter, Gauge } from "prom-client";
import type { Registry } from "prom-client";
import type { Logger } from "../core/index.js";
import type { CheckReport } from "./service.js";
import type { DatasetDrift, FeatureDrift, Severity } from "./types.js";

/** `quality`: a live-quality threshold of the feedback loop (src/feedback), sent through the same sinks. */
export type AlertKind = "rule" | "drift" | "prediction_drift" | "dataset_drift" | "concept_drift" | "quality";

/** The production window a finding was computed on (e.g. size `1h`, ISO start and end). */
export interface AlertWindow {
  size: string;
  start: string;
  end: string;
}

export interface Alert {
  /**
   * Stable key of the condition, the same on every run while it lasts: `model@version:kind:name:feature`, plus
   * `[size]` for a window (the same feature drifting in the 1h and the 1d windows are two conditions).
   */
  id: string;
  model: string;
  version: number;
  kind: AlertKind;
  severity: Severity;
  /** The column (feature or model output) it is about; absent for dataset-level alerts. */
  feature?: string;
  message: string;
  /** The observed value: a rule's observation, a test's p-value or a distance, the share of drifted features. */
  value: number | string | null;
  /** What `value` was checked against (a rule's expected bound is text, e.g. `<= 0.05`). */
  threshold: number | string;
  window?: AlertWindow;
  /** When the finding was made (ISO 8601). */
  at: string;
}

export interface AlertsFromReportOptions {
  /** Time of the finding; default the window's end, else now. */
  now?: Date;
}

/** Per-feature drift is a warning; dataset drift (the share of drifted features passed its threshold) is an error. */
const FEATURE_DRIFT_SEVERITY: Severity = "warning";
const DATASET_DRIFT_SEVERITY: Severity = "error";

function alertId(model: string, version: number, kind: AlertKind, name: string, feature: string | undefined, window: AlertWindow | undefined): string {
  return `${model}@${version}:${kind}:${name}:${feature ?? "*"}${window === undefined ? "" : `[${window.size}]`}`;
}

function driftMessage(what: string, f: FeatureDrift): string {
  const measured = f.operator === "<" ? "p-value" : "score";
  return `${what} '${f.feature}': ${f.method} ${measured} ${Number(f.score.toPrecision(4))} ${f.operator} ${f.threshold}`;
}

/**
 * The alerts of a check report: failed rules (their own severity), drifted features, dataset drift, drifted model
 * outputs and dataset-level prediction drift. Passed rules and undrifted features give none.
 */
export function alertsFromReport(report: CheckReport, window?: AlertWindow, options: AlertsFromReportOptions = {}): Alert[] {
  const at = (options.now ?? (window === undefined ? new Date() : new Date(window.end))).toISOString();
  const { model, version } = report;
  const base = (kind: AlertKind, name: string, feature: string | undefined): Pick<Alert, "id" | "model" | "version" | "kind" | "at"> & { window?: AlertWindow; feature?: string } => ({
    id: alertId(model, version, kind, name, feature, window),
    model,
    version,
    kind,
    ...(feature === undefined ? {} : { feature }),
    ...(window === undefined ? {} : { window }),
    at,
  });
  const alerts: Alert[] = [];
  for (const rule of report.rules) {
    if (rule.passed) continue;
    alerts.push({
      ...base("rule", rule.rule, rule.column),
      severity: rule.severity,
      message: `rule ${rule.rule}${rule.column === undefined ? "" : ` on '${rule.column}'`}: ${rule.message}`,
      value: rule.observed,
      threshold: rule.expected,
    });
  }
  const driftAlerts = (drift: DatasetDrift, featureKind: AlertKind, datasetName: string, what: string): void => {
    for (const f of drift.features) {
      if (!f.drifted) continue;
      alerts.push({ ...base(featureKind, "drift", f.feature), severity: FEATURE_DRIFT_SEVERITY, message: driftMessage(what, f), value: f.score, threshold: f.threshold });
    }
    if (drift.drifted) {
      alerts.push({
        ...base(featureKind === "drift" ? "dataset_drift" : "prediction_drift", datasetName, undefined),
        severity: DATASET_DRIFT_SEVERITY,
        message: `${datasetName.replace("_", " ")}: ${drift.driftedFeatures} of ${drift.features.length} ${featureKind === "drift" ? "features" : "outputs"} drifted (share ${Number(drift.share.toFixed(3))} >= ${drift.shareThreshold})`,
        value: drift.share,
        threshold: drift.shareThreshold,
      });
    }
  };
  driftAlerts(report.drift, "drift", "dataset_drift", "drift in");
  if (report.predictionDrift !== undefined) driftAlerts(report.predictionDrift, "prediction_drift", "prediction_drift", "prediction drift in");
  return alerts;
}

/** Where alerts go. `send` receives the alerts that fire now; it should not throw (the Alerter catches and logs). */
export interface AlertSink {
  readonly name: string;
  send(alerts: readonly Alert[]): Promise<void>;
  /** Called on every `process` with every active alert (fired or held back by the cool-down) and the cleared ones. */
  observe?(state: { active: readonly Alert[]; cleared: readonly Alert[] }): void;
}

/** One line per alert, at `error` or `warn` by severity, with the alert's fields; an info line when one clears. */
export function logSink(logger: Logger): AlertSink {
  return {
    name: "log",
    send(alerts) {
      for (const alert of alerts) {
        const { message, ...fields } = alert;
        const line = { event: "monitor_alert", alert: fields };
        if (alert.severity === "error") logger.error(line, message);
        else logger.warn(line, message);
      }
      return Promise.resolve();
    },
    observe({ cleared }) {
      for (const alert of cleared) logger.info({ event: "monitor_alert_cleared", alert: { id: alert.id, model: alert.model, version: alert.version, kind: alert.kind, feature: alert.feature } }, `cleared: ${alert.message}`);
    },
  };
}

export interface WebhookSinkOptions {
  url: string;
  headers?: Record<string, string>;
  /** Per attempt. Default 5000. */
  timeoutMs?: number;
  /** Further attempts after a network error, a timeout or a 5xx answer (4xx answers are not retried). Default 2. */
  retries?: number;
  /** Wait before retry n (1-based) is `backoffMs * 2^(n-1)`. Default 500. */
  backoffMs?: number;
  /** Where failed deliveries are logged; default nowhere (they are still counted). */
  logger?: Logger;
}

export interface WebhookStats {
  /** Batches the receiver accepted (2xx). */
  delivered: number;
  /** Batches given up on after the last attempt. */
  failed: number;
  /** HTTP requests made, retries included. */
  attempts: number;
}

export interface WebhookSink extends AlertSink {
  readonly stats: WebhookStats;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * POSTs `{"alerts": [...]}` (one request per batch of fired alerts) as JSON. Never throws: after the last attempt
 * the failure is logged and counted in `stats.failed`.
 */
export function webhookSink(options: WebhookSinkOptions): WebhookSink {
  const timeoutMs = options.timeoutMs ?? 5000;
  const retries = options.retries ?? 2;
  const backoffMs = options.backoffMs ?? 500;
  const stats: WebhookStats = { delivered: 0, failed: 0, attempts: 0 };
  const headers = { "content-type": "application/json", ...options.headers };

  async function attempt(body: string): Promise<{ ok: true } | { ok: false; retryable: boolean; reason: string }> {
    stats.attempts++;
    try {
      const response = await fetch(options.url, { method: "POST", headers, body, signal: AbortSignal.timeout(timeoutMs) });
      // Drain the body so the connection can be reused or closed.
      await response.arrayBuffer().catch(() => undefined);
      if (response.ok) return { ok: true };
      return { ok: false, retryable: response.status >= 500, reason: `HTTP ${response.status}` };
    } catch (error) {
      const name = (error as Error).name;
      const reason = name === "TimeoutError" || name === "AbortError" ? `no answer within ${timeoutMs} ms` : `${(error as Error).message}${causeOf(error)}`;
      return { ok: false, retryable: true, reason };
    }
  }

  return {
    name: "webhook",
    stats,
    async send(alerts) {
      if (alerts.length === 0) return;
      const body = JSON.stringify({ alerts });
      let last = "";
      for (let n = 0; n <= retries; n++) {
        if (n > 0) await sleep(backoffMs * 2 ** (n - 1));
        const result = await attempt(body);
        if (result.ok) {
          stats.delivered++;
          return;
        }
        last = result.reason;
        if (!result.retryable) break;
      }
      stats.failed++;
      options.logger?.error({ event: "monitor_webhook_failed", url: options.url, alerts: alerts.length, attempts: stats.attempts }, `alert webhook ${options.url} failed: ${last}`);
    },
  };
}

function causeOf(error: unknown): string {
  const cause = (error as { cause?: unknown }).cause;
  return cause instanceof Error ? ` (${cause.message})` : "";
}

/**
 * `mlship_monitor_alert_active{model,version,kind,feature}`: 1 while an alert with those labels is active, 0 once
 * cleared (the feature label is empty for dataset-level alerts); `mlship_monitor_alerts_total{model,version,kind,
 * severity}`: alerts sent (after de-duplication).
 */
export function gaugeSink(registry: Registry): AlertSink {
  const active = new Gauge({
    name: "mlship_monitor_alert_active",
    help: "1 while a monitoring alert (rule, drift) is active for these labels, 0 after it cleared.",
    labelNames: ["model", "version", "kind", "feature"] as const,
    registers: [registry],
  });
  const total = new Counter({
    name: "mlship_monitor_alerts_total",
    help: "Monitoring alerts sent (after de-duplication and cool-down), by model, version, kind and severity.",
    labelNames: ["model", "version", "kind", "severity"] as const,
    registers: [registry],
  });
  const labels = (a: Alert): { model: string; version: string; kind: string; feature: string } => ({ model: a.model, version: String(a.version), kind: a.kind, feature: a.feature ?? "" });
  const key = (a: Alert): string => JSON.stringify(labels(a));
  return {
    name: "gauge",
    send(alerts) {
      for (const a of alerts) total.inc({ model: a.model, version: String(a.version), kind: a.kind, severity: a.severity });
      return Promise.resolve();
    },
    observe(state) {
      // Several alerts can share a label set (two rules on one column, two window sizes): 0 only when none is left.
      const stillActive = new Set(state.active.map(key));
      for (const a of state.cleared) if (!stillActive.has(key(a))) active.set(labels(a), 0);
      for (const a of state.active) active.set(labels(a), 1);
    },
  };
}

/** Where the cool-down state can be kept across processes (a file, the store); values are JSON. */
export interface AlertStateStore {
  get(key: string): unknown;
  set(key: string, value: unknown): void | Promise<void>;
}

interface ActiveEntry {
  alert: Alert;
  /** ISO time it first became active in this run of activity. */
  since: string;
  /** ISO time it was last sent. */
  sentAt: string;
  scope: string | undefined;
}

interface AlerterState {
  format: 1;
  active: Record<string, ActiveEntry>;
}

/** An alert active now and since when (the start of its current run of activity). */
export interface ActiveAlert {
  alert: Alert;
  since: string;
}

/** A fired alert (what the sinks were sent: new, returned, or repeated after the cool-down) or a cleared one. */
export interface AlertEvent {
  at: string;
  event: "fired" | "cleared";
  alert: Alert;
  /** When the alert became active. */
  since: string;
}

export const DEFAULT_ALERT_HISTORY = 200;

/** The last `capacity` alert events of this process, in memory (a ring buffer: the oldest goes first). */
export class AlertHistory {
  readonly #events: AlertEvent[] = [];
  #next = 0;

  constructor(readonly capacity: number = DEFAULT_ALERT_HISTORY) {}

  record(event: AlertEvent): void {
    if (this.capacity <= 0) return;
    if (this.#events.length < this.capacity) this.#events.push(event);
    else this.#events[this.#next] = event;
    this.#next = (this.#next + 1) % this.capacity;
  }

  /** Newest first. */
  recent(): AlertEvent[] {
    const n = this.#events.length;
    const out: AlertEvent[] = [];
    for (let i = 1; i <= n; i++) out.push(this.#events[(this.#next - i + n) % n] as AlertEvent);
    return out;
  }
}

export interface AlerterOptions {
  sinks: readonly AlertSink[];
  /** How many fired/cleared events `history` keeps. Default 200. */
  historySize?: number;
  /** Default one hour. */
  cooldownMs?: number;
  stateStore?: AlertStateStore;
  /** Key under which the state is kept in `stateStore`. Default `monitor.alerts`. */
  stateKey?: string;
  /** Where sink failures are logged. */
  logger?: Logger;
}

export interface ProcessOptions {
  /**
   * Only active alerts processed under the same scope can be cleared by this call, so one Alerter can serve several
   * models (scope `model@version`) or window sizes without one's findings clearing another's.
   */
  scope?: string;
}

export interface ProcessResult {
  /** Sent now: new, returned after clearing, or still active past the cool-down. */
  fired: Alert[];
  /** Active but held back by the cool-down. */
  suppressed: Alert[];
  /** Active before, absent now. */
  cleared: Alert[];
}

export const DEFAULT_ALERT_COOLDOWN_MS = 60 * 60 * 1000;

export class Alerter {
  readonly cooldownMs: number;
  /** Fired and cleared events of this process (the dashboard's recent alerts). */
  readonly history: AlertHistory;
  private readonly sinks: readonly AlertSink[];
  private readonly stateKey: string;
  private state: AlerterState | undefined;

  constructor(private readonly options: AlerterOptions) {
    this.sinks = options.sinks;
    this.cooldownMs = options.cooldownMs ?? DEFAULT_ALERT_COOLDOWN_MS;
    this.stateKey = options.stateKey ?? "monitor.alerts";
    this.history = new AlertHistory(options.historySize ?? DEFAULT_ALERT_HISTORY);
  }

  /** The alerts active now, each with the time it became active. */
  async active(): Promise<ActiveAlert[]> {
    return Object.values((await this.load()).active).map((entry) => ({ alert: entry.alert, since: entry.since }));
  }

  /** Ids of the alerts active now. */
  async activeIds(): Promise<string[]> {
    return Object.keys((await this.load()).active);
  }

  async process(alerts: readonly Alert[], now: Date = new Date(), options: ProcessOptions = {}): Promise<ProcessResult> {
    const state = await this.load();
    const nowMs = now.getTime();
    const current = new Map<string, Alert>();
    for (const a of alerts) current.set(a.id, a);

    const fired: Alert[] = [];
    const suppressed: Alert[] = [];
    for (const [id, alert] of current) {
      const entry = state.active[id];
      if (entry === undefined) {
        state.active[id] = { alert, since: now.toISOString(), sentAt: now.toISOString(), scope: options.scope };
        fired.push(alert);
      } else if (nowMs - Date.parse(entry.sentAt) >= this.cooldownMs) {
        state.active[id] = { ...entry, alert, sentAt: now.toISOString(), scope: options.scope };
        fired.push(alert);
      } else {
        state.active[id] = { ...entry, alert, scope: options.scope };
        suppressed.push(alert);
      }
    }
    const at = now.toISOString();
    for (const alert of fired) this.history.record({ at, event: "fired", alert, since: state.active[alert.id]?.since ?? at });
    const cleared: Alert[] = [];
    for (const [id, entry] of Object.entries(state.active)) {
      if (current.has(id)) continue;
      if (options.scope !== undefined && entry.scope !== options.scope) continue;
      cleared.push(entry.alert);
      this.history.record({ at, event: "cleared", alert: entry.alert, since: entry.since });
      delete state.active[id];
    }

    await this.save(state);
    const active = [...current.values()];
    // Sinks run side by side: a slow webhook does not hold back the log line or the gauge.
    await Promise.all(
      this.sinks.map(async (sink) => {
        try {
          sink.observe?.({ active, cleared });
          if (fired.length > 0) await sink.send(fired);
        } catch (error) {
          this.options.logger?.error({ event: "monitor_alert_sink_failed", sink: sink.name, err: error }, `alert sink ${sink.name} failed: ${(error as Error).message}`);
        }
      }),
    );
    return { fired, suppressed, cleared };
  }

  private async load(): Promise<AlerterState> {
    if (this.state !== undefined) return this.state;
    const stored = await this.options.stateStore?.get(this.stateKey);
    this.state = isState(stored) ? structuredClone(stored) : { format: 1, active: {} };
    return this.state;
  }

  private async save(state: AlerterState): Promise<void> {
    if (this.options.stateStore === undefined) return;
    try {
      await this.options.stateStore.set(this.stateKey, structuredClone(state));
    } catch (error) {
      // Losing the cool-down state means at worst a repeated alert; the alerts themselves still go out.
      this.options.logger?.error({ event: "monitor_alert_state_failed", err: error }, `alert state could not be saved: ${(error as Error).message}`);
    }
  }
}

function isState(value: unknown): value is AlerterState {
  return typeof value === "object" && value !== null && (value as { format?: unknown }).format === 1 && typeof (value as { active?: unknown }).active === "object";
}
