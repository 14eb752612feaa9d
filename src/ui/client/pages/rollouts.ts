import type { Rollout, RolloutStatus } from "../../../rollout/index.js";
import { getJson } from "../api.js";
import { actionButton } from "../dialogs.js";
import { h, hashLink } from "../dom.js";
import { num, pct, timeEl } from "../format.js";
import { badge, facts, pageTitle, section, setBody, table, type PageContext, type Tone } from "../page.js";

const STATE_TONE: Record<string, Tone> = { active: "info", promoted: "ok", aborted: "muted", rolled_back: "bad" };

function stateBadge(state: string): HTMLElement {
  return badge(state.replace("_", " "), STATE_TONE[state] ?? "muted");
}

function describeSplit(r: Rollout): string {
  return r.mode === "shadow" ? `shadow copy of ${r.percent}% of requests` : `${r.percent}% to the challenger`;
}

/** Promote and abort buttons of an active rollout. */
function rolloutActions(ctx: PageContext, r: Rollout): HTMLElement {
  const promote = actionButton(
    {
      testid: "action-promote",
      label: "Promote",
      title: `Promote rollout ${r.id}`,
      what: h("p", null, `Model ${r.model}: point alias ${r.alias} at v${r.challenger} (now v${r.champion}) and end rollout ${r.id} as promoted.`),
      method: "POST",
      path: `/api/v1/rollouts/${encodeURIComponent(r.id)}/promote`,
      body: {},
      done: () => `Promoted: ${r.model}@${r.alias} now points at v${r.challenger}.`,
    },
    ctx.flash,
    () => ctx.reload(),
  );
  const abort = actionButton(
    {
      testid: "action-abort",
      label: "Abort",
      title: `Abort rollout ${r.id}`,
      what: h("p", null, `Model ${r.model}: end rollout ${r.id} as aborted; alias ${r.alias} stays on v${r.champion} and v${r.challenger} gets no more traffic.`),
      method: "POST",
      path: `/api/v1/rollouts/${encodeURIComponent(r.id)}/abort`,
      body: {},
      danger: true,
      done: () => `Aborted: ${r.model}@${r.alias} stays on v${r.champion}.`,
    },
    ctx.flash,
    () => ctx.reload(),
  );
  return h("span", { class: "buttons" }, promote, abort);
}

export async function rolloutsPage(ctx: PageContext): Promise<void> {
  ctx.poll(async (signal) => {
    const { rollouts } = await getJson<{ rollouts: Rollout[] }>("/api/v1/rollouts?limit=100", signal);
    const active = rollouts.filter((r) => r.state === "active").length;
    setBody(
      ctx,
      pageTitle("Rollouts"),
      section(
        `${active} active, ${rollouts.length - active} ended`,
        table(
          [
            { label: "Rollout", cell: (r) => h("a", { href: hashLink("rollouts", r.id) }, r.id) },
            { label: "Model", cell: (r) => h("a", { href: hashLink("models", r.model) }, r.model) },
            { label: "Alias", cell: (r) => r.alias },
            { label: "Mode", cell: (r) => r.mode },
            { label: "Champion → challenger", cell: (r) => `v${r.champion} → v${r.challenger}` },
            { label: "Split", cell: describeSplit },
            { label: "State", cell: (r) => stateBadge(r.state) },
            { label: "Started", cell: (r) => h("span", null, timeEl(r.startedAt), ` by ${r.startedBy}`) },
            { label: "Ended", cell: (r) => (r.endedAt === null ? "" : h("span", { title: r.endReason ?? "" }, timeEl(r.endedAt), r.endedBy ? ` by ${r.endedBy}` : "")) },
            { label: "Actions", cell: (r) => (r.state === "active" ? rolloutActions(ctx, r) : "") },
          ],
          rollouts,
          {
            empty: "No rollouts yet: start one from a model's page.",
            rowAttrs: (r) => ({ "data-testid": `rollout-row-${r.id}`, "data-state": r.state }),
          },
        ),
      ),
    );
    ctx.ready();
  }, 5000);
}

export async function rolloutPage(ctx: PageContext): Promise<void> {
  const id = ctx.params[0] ?? "";
  ctx.poll(async (signal) => {
    const status = await getJson<RolloutStatus>(`/api/v1/rollouts/${encodeURIComponent(id)}`, signal);
    const r = status.rollout;
    const c = status.comparison;
    // Rates (accuracy, f1, ...) as percentages and their difference in percentage points; errors (rmse, ...) as numbers.
    const isRate = c !== null && !["rmse", "mae", "log_loss", "mape", "r2"].includes(c.metric);
    const metricFormat = (v: number | null | undefined): string => (isRate ? pct(v, 2) : num(v, 4));
    const difference = (d: number): string => `${d >= 0 ? "+" : ""}${isRate ? `${(d * 100).toFixed(2)} points` : num(d, 4)}`;
    const verdictTone: Tone = status.verdict.action === "rollback" ? "bad" : status.verdict.action === "promote" ? "ok" : "info";
    setBody(
      ctx,
      pageTitle(h("a", { href: "#/rollouts" }, "Rollouts"), " / ", r.id),
      section(
        "Rollout",
        facts([
          ["Model", h("a", { href: hashLink("models", r.model) }, `${r.model}@${r.alias}`)],
          ["State", stateBadge(r.state)],
          ["Mode", `${r.mode}${r.sticky ? " (sticky by key)" : ""}`],
          ["Champion → challenger", `v${r.champion} → v${r.challenger}`],
          ["Split", describeSplit(r)],
          ["Started", h("span", null, timeEl(r.startedAt), ` by ${r.startedBy}${r.reason ? `: ${r.reason}` : ""}`)],
          ["Ended", r.endedAt === null ? "running" : h("span", null, timeEl(r.endedAt), ` by ${r.endedBy ?? "?"}${r.endReason ? `: ${r.endReason}` : ""}`)],
          ["Guard", h("code", null, JSON.stringify(r.guard))],
        ]),
        r.state === "active" ? h("div", { class: "toolbar" }, rolloutActions(ctx, r)) : null,
      ),
      section(
        "Variants",
        table(
          [
            { label: "Variant", cell: (v) => v.variant },
            { label: "Version", cell: (v) => h("a", { href: hashLink("models", r.model, "versions", v.version) }, `v${v.version}`) },
            { label: "Split", cell: (v) => (v.variant === "champion" ? (r.mode === "shadow" ? "100%" : `${100 - r.percent}%`) : `${r.percent}%`), numeric: true },
            { label: "Requests", cell: (v) => num(v.requests), numeric: true },
            { label: "Errors", cell: (v) => num(v.errors), numeric: true },
            { label: "Error rate", cell: (v) => (v.errorRate !== null && v.errorRate > 0.05 ? badge(pct(v.errorRate, 2), "bad") : pct(v.errorRate, 2)), numeric: true },
            { label: "Logged", cell: (v) => num(v.logged), numeric: true },
            { label: "Outcomes", cell: (v) => num(v.quality?.outcomes), numeric: true },
            {
              label: "Quality",
              cell: (v) =>
                v.quality === null
                  ? "–"
                  : Object.entries(v.quality.metrics)
                      .filter(([, x]) => x !== null)
                      .slice(0, 4)
                      .map(([k, x]) => `${k} ${num(x, 3)}`)
                      .join(" · ") || "no outcomes yet",
            },
          ],
          status.variants,
          { rowAttrs: (v) => ({ "data-testid": `variant-row-${v.variant}` }) },
        ),
      ),
      section(
        "Comparison",
        c === null
          ? h("p", { class: "muted" }, "No comparison yet (needs outcomes for both arms).")
          : h(
              "div",
              { "data-testid": "comparison" },
              facts([
                ["Metric", `${c.metric} (${c.higherIsBetter ? "higher" : "lower"} is better)`],
                ["Champion", metricFormat(c.champion)],
                ["Challenger", metricFormat(c.challenger)],
                ["Difference", c.difference === null ? "–" : difference(c.difference)],
                ["Test", c.test ?? "–"],
                ["p-value", num(c.pValue, 4)],
                ["Significant (p < 0.05)", c.significant ? badge("yes", "ok") : badge("not yet", "muted")],
              ]),
            ),
      ),
      section(
        "Verdict",
        h("p", { "data-testid": "verdict", "data-action": status.verdict.action }, badge(status.verdict.action, verdictTone), ` ${status.verdict.reason}`),
      ),
    );
    ctx.ready();
  }, 5000);
}
