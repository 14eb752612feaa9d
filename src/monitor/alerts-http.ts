/**
 * `GET /api/v1/alerts`: the active alerts of the server's Alerter (drift and rules from live monitoring, late and
 * failed batch schedules, live-quality and concept-drift alerts of the feedback loop) and its recent fired/cleared
 * events, for the dashboard. Registered by the composition root next to `monitorRoutes`.
 */
import type { FastifyPluginAsync } from "fastify";
import type { AlertEventView, AlertsResponse, AlertView } from "../ui/contract.js";
import type { Alert, Alerter } from "./alerts.js";

export interface AlertRoutesOptions {
  alerter: Alerter;
  /**
   * Active alerts computed when asked rather than raised through the alerter (batch tables that failed or went
   * stale); a failure to compute them is logged and leaves them out, the alerter's own still answer.
   */
  computed?: () => Promise<AlertView[]>;
}

/** Batch schedule alerts have ids `batch:<schedule>:late|failed` (see `scheduleAlerts`) and no version. */
const BATCH_ALERT = /^batch:.+:(late|failed)$/;
const FEEDBACK_KINDS: ReadonlySet<string> = new Set(["quality", "concept_drift"]);

/** The dashboard's view of an alert: which area raised it, and what it is about. */
export function alertView(alert: Alert, since: string): AlertView {
  const batch = BATCH_ALERT.exec(alert.id);
  const source: AlertView["source"] = batch !== null ? "batch" : FEEDBACK_KINDS.has(alert.kind) ? "feedback" : "monitor";
  return {
    id: alert.id,
    source,
    kind: batch !== null ? (batch[1] as string) : alert.kind,
    severity: alert.severity === "error" ? "error" : "warning",
    model: alert.model === "" ? null : alert.model,
    // Batch schedules name a model reference, not a version (their alerts carry version 0).
    version: batch !== null || alert.version <= 0 ? null : alert.version,
    feature: alert.feature ?? null,
    window: alert.window === undefined ? null : { size: alert.window.size, start: alert.window.start, end: alert.window.end },
    message: alert.message,
    since,
    at: alert.at,
  };
}

export const alertRoutes: FastifyPluginAsync<AlertRoutesOptions> = async (app, options) => {
  const { alerter } = options;
  app.get("/api/v1/alerts", async (): Promise<AlertsResponse> => {
    const computed = await (options.computed?.() ?? Promise.resolve([])).catch((error: unknown) => {
      app.log.warn({ err: error }, "computed alerts unavailable");
      return [];
    });
    const active = [...(await alerter.active()).map(({ alert, since }) => alertView(alert, since)), ...computed]
      // Errors before warnings, then the most recently raised first.
      .sort((a, b) => (a.severity === b.severity ? b.since.localeCompare(a.since) || a.id.localeCompare(b.id) : a.severity === "error" ? -1 : 1));
    const recent: AlertEventView[] = alerter.history.recent().map((e) => ({ at: e.at, event: e.event, alert: alertView(e.alert, e.since) }));
    return { active, recent };
  });
};

Object.defineProperty(alertRoutes, Symbol.for("skip-override"), { value: true });
