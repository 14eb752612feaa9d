import type { AlertView, AlertsResponse } from "../../contract.js";
import { getJson } from "../api.js";
import { h, hashLink } from "../dom.js";
import { timeEl } from "../format.js";
import { badge, pageTitle, section, setBody, table, type PageContext } from "../page.js";

function severity(a: AlertView): HTMLElement {
  return a.severity === "error" ? badge("error", "bad") : badge("warning", "warn");
}

function subject(a: AlertView): HTMLElement | string {
  if (a.model === null) return "";
  return h("a", { href: a.version === null ? hashLink("models", a.model) : hashLink("models", a.model, "versions", a.version) }, `${a.model}${a.version === null ? "" : ` v${a.version}`}`);
}

export async function alertsPage(ctx: PageContext): Promise<void> {
  ctx.poll(async (signal) => {
    const alerts = await getJson<AlertsResponse>("/api/v1/alerts", signal);
    setBody(
      ctx,
      pageTitle("Alerts"),
      section(
        `Active (${alerts.active.length})`,
        table(
          [
            { label: "Severity", cell: severity },
            { label: "Source", cell: (a) => a.source },
            { label: "Kind", cell: (a) => a.kind },
            { label: "Model", cell: subject },
            { label: "Message", cell: (a) => a.message },
            { label: "Since", cell: (a) => timeEl(a.since) },
          ],
          alerts.active,
          { empty: "No active alerts.", rowAttrs: (a) => ({ "data-testid": "alert-row", "data-severity": a.severity, class: a.severity === "error" ? "bad-row" : "warn-row" }) },
        ),
      ),
      section(
        "Recent events",
        table(
          [
            { label: "When", cell: (e) => timeEl(e.at) },
            { label: "Event", cell: (e) => (e.event === "fired" ? badge("fired", e.alert.severity === "error" ? "bad" : "warn") : badge("cleared", "ok")) },
            { label: "Source", cell: (e) => e.alert.source },
            { label: "Kind", cell: (e) => e.alert.kind },
            { label: "Model", cell: (e) => subject(e.alert) },
            { label: "Message", cell: (e) => e.alert.message },
          ],
          alerts.recent,
          { empty: "No alert events since this server started.", rowAttrs: () => ({ "data-testid": "alert-event-row" }) },
        ),
      ),
    );
    ctx.ready();
  }, 5000);
}
