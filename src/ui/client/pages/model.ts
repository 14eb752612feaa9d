import type { AliasEvent } from "../../../registry/index.js";
// The registry's own rule, imported from its module rather than the folder's index.js: the index pulls in the
// registry's Node code, this module is pure and so runs in the browser as it does in the server.
import { rollbackTarget } from "../../../registry/rollback.js";
import type { ModelDetail, VersionSummary } from "../../contract.js";
import { getJson } from "../api.js";
import { actionButton } from "../dialogs.js";
import { h, hashLink } from "../dom.js";
import { ms, num, rate, timeEl } from "../format.js";
import { badge, facts, note, pageTitle, section, setBody, table, type PageContext } from "../page.js";
import { errorRateCell } from "./models.js";

/**
 * Where `rollback` would move the alias, computed as the registry does: its previous target in the alias's history
 * (oldest first), skipping archived versions. Null when there is none (the server would refuse).
 */
export function rollbackTargetOf(model: ModelDetail, alias: string, current: number): number | null {
  const ready = new Set(model.versions.filter((v) => v.status === "ready").map((v) => v.version));
  const history = model.aliasHistory.filter((e) => e.alias === alias).sort((a, b) => a.id - b.id);
  return rollbackTarget(history, current, (v) => ready.has(v)) ?? null;
}

export function aliasHistoryTable(history: AliasEvent[], showModel = false): HTMLElement {
  return table(
    [
      { label: "When", cell: (e) => timeEl(e.at) },
      ...(showModel ? [{ label: "Model", cell: (e: AliasEvent) => e.name }] : []),
      { label: "Alias", cell: (e) => e.alias },
      { label: "Action", cell: (e) => e.action },
      { label: "From", cell: (e) => (e.from === null ? "–" : `v${e.from}`) },
      { label: "To", cell: (e) => (e.to === null ? "deleted" : `v${e.to}`) },
      { label: "By", cell: (e) => e.by },
      { label: "Reason", cell: (e) => e.reason ?? "" },
    ],
    history,
    { empty: "No alias moves yet." },
  );
}

function versionStatus(v: VersionSummary): HTMLElement {
  if (v.status === "archived") return badge("archived", "muted");
  if (v.loaded === "ready") return badge("loaded", "ok", "loaded in this server's workers");
  if (v.loaded === "loading") return badge("loading", "warn");
  return badge("ready", "info", "registered, not loaded in this server yet (loads on its first request)");
}

function startRolloutForm(ctx: PageContext, model: ModelDetail): HTMLElement {
  const production = model.aliases.production;
  const candidates = model.versions.filter((v) => v.status === "ready" && v.version !== production);
  const challenger = h(
    "select",
    { id: "rollout-challenger", "data-testid": "rollout-challenger" },
    candidates.map((v) => h("option", { value: v.version }, `v${v.version}${v.aliases.length ? ` (${v.aliases.join(", ")})` : ""}`)),
  );
  const mode = h(
    "select",
    { id: "rollout-mode", "data-testid": "rollout-mode" },
    h("option", { value: "canary" }, "canary (a share of traffic)"),
    h("option", { value: "shadow" }, "shadow (scored, not answered)"),
    h("option", { value: "ab" }, "A/B (split, compared)"),
  );
  const percent = h("input", { id: "rollout-percent", "data-testid": "rollout-percent", type: "number", min: 0, max: 100, step: 1, value: 10 });
  const button = actionButton(
    {
      testid: "action-start-rollout",
      label: "Start rollout",
      title: `Start a rollout of ${model.name}`,
      what: "",
      method: "POST",
      path: "/api/v1/rollouts",
      body: {},
      done: (answer) => `Rollout ${(answer as { id?: string } | null)?.id ?? ""} started.`,
      prepare: () => {
        const v = Number(challenger.value);
        const p = Number(percent.value);
        const m = mode.value;
        if (!Number.isInteger(v) || v < 1) return { invalid: "Choose a challenger version first." };
        if (!Number.isFinite(p) || p < 0 || p > 100) return { invalid: "The percent must be between 0 and 100." };
        const share = m === "shadow" ? `a copy of ${p}% of the requests` : `${p}% of the traffic`;
        return {
          what: h("p", null, `Model ${model.name}: send ${share} of alias production (now v${production ?? "?"}) to v${v} as a ${m} rollout.`),
          body: { model: model.name, challenger: v, mode: m, percent: p },
        };
      },
    },
    ctx.flash,
    () => ctx.reload(),
  );
  return h(
    "form",
    { class: "inline-form", onsubmit: (e: Event) => e.preventDefault() },
    h("label", { for: "rollout-challenger" }, "Challenger"),
    challenger,
    h("label", { for: "rollout-mode" }, "Mode"),
    mode,
    h("label", { for: "rollout-percent" }, "Percent"),
    percent,
    button,
    candidates.length === 0 ? h("span", { class: "muted" }, " No other ready version to roll out.") : null,
  );
}

export async function modelPage(ctx: PageContext): Promise<void> {
  const name = ctx.params[0] ?? "";
  const load = async (signal: AbortSignal): Promise<void> => {
    const model = await getJson<ModelDetail>(`/api/v1/models/${encodeURIComponent(name)}`, signal);
    const aliasRows = Object.entries(model.aliases).sort(([a], [b]) => a.localeCompare(b));
    setBody(
      ctx,
      pageTitle(h("a", { href: "#/models" }, "Models"), " / ", model.name),
      model.description ? note(model.description) : null,
      section(
        "Overview",
        facts([
          ["Latest version", `v${model.latestVersion}`],
          ["Traffic", `${rate(model.traffic.requestsPerSecond)} · ${num(model.traffic.requests)} requests in ${model.traffic.windowSeconds} s`],
          ["Errors", errorRateCell(model.traffic.errorRate, model.traffic.requests)],
          ["Latency", `p50 ${ms(model.traffic.p50Ms)} · p99 ${ms(model.traffic.p99Ms)}`],
          ["Tags", Object.entries(model.tags).map(([k, v]) => `${k}=${v}`).join(", ") || "–"],
          ["Created", timeEl(model.createdAt)],
          [
            "Rollout",
            model.rollout === null
              ? "none active"
              : h("a", { href: hashLink("rollouts", model.rollout.id) }, `${model.rollout.mode}: v${model.rollout.champion} → v${model.rollout.challenger} at ${model.rollout.percent}%`),
          ],
          [
            "Views",
            h(
              "span",
              { class: "links" },
              h("a", { href: `#/traffic?model=${encodeURIComponent(model.name)}` }, "live traffic"),
              h("a", { href: hashLink("quality", model.name) }, "quality"),
              model.aliases.production === undefined ? null : h("a", { href: hashLink("drift", model.name, model.aliases.production) }, "drift (production)"),
            ),
          ],
        ]),
      ),
      section(
        "Aliases",
        table(
          [
            { label: "Alias", cell: ([alias]) => alias },
            { label: "Version", cell: ([, v]) => h("a", { href: hashLink("models", model.name, "versions", v) }, `v${v}`) },
            {
              label: "Rollback",
              cell: ([alias, v]) => {
                const to = rollbackTargetOf(model, alias, v);
                if (to === null) {
                  return h(
                    "button",
                    {
                      type: "button",
                      class: "action danger",
                      "data-testid": "action-rollback",
                      "data-target": "none",
                      disabled: true,
                      title: `Nothing to roll back to: alias ${alias} has no earlier target in its history that is not archived.`,
                    },
                    "Roll back",
                  );
                }
                const button = actionButton(
                  {
                    testid: "action-rollback",
                    label: `Roll back to v${to}`,
                    title: `Roll back ${model.name}@${alias} to v${to}`,
                    what: h(
                      "div",
                      null,
                      h("p", null, h("strong", null, `${alias}: v${v} -> v${to}`)),
                      h(
                        "p",
                        null,
                        `Model ${model.name}: move alias ${alias} from v${v} back to v${to} now (its previous target in the alias history, archived versions skipped). An active rollout of the alias ends as rolled back.`,
                      ),
                    ),
                    method: "POST",
                    path: `/api/v1/models/${encodeURIComponent(model.name)}/rollback`,
                    body: { alias },
                    danger: true,
                    done: (answer) => {
                      const a = answer as { from?: number | null; to?: number | null } | null;
                      return `${model.name}@${alias} rolled back: v${a?.from ?? v} → v${a?.to ?? "?"}.`;
                    },
                  },
                  ctx.flash,
                  () => ctx.reload(),
                );
                button.dataset.target = String(to);
                return button;
              },
            },
          ],
          aliasRows,
          { empty: "No aliases: point one with mlship models alias <name> production <version>." },
        ),
      ),
      section(
        "Versions",
        table(
          [
            { label: "Version", cell: (v) => h("a", { href: hashLink("models", model.name, "versions", v.version) }, `v${v.version}`) },
            { label: "Status", cell: versionStatus },
            { label: "Aliases", cell: (v) => v.aliases.join(", ") },
            { label: "Flavor", cell: (v) => v.flavor },
            { label: "Created", cell: (v) => timeEl(v.createdAt) },
            { label: "By", cell: (v) => v.createdBy },
            { label: "Traffic", cell: (v) => rate(v.traffic.requestsPerSecond), numeric: true },
            { label: "Errors", cell: (v) => errorRateCell(v.traffic.errorRate, v.traffic.requests), numeric: true },
            { label: "p50", cell: (v) => ms(v.traffic.p50Ms), numeric: true },
            { label: "p99", cell: (v) => ms(v.traffic.p99Ms), numeric: true },
            { label: "Drift", cell: (v) => h("a", { href: hashLink("drift", model.name, v.version) }, "drift") },
          ],
          model.versions,
          { rowAttrs: (v) => ({ "data-testid": `version-row-${v.version}`, class: v.status === "archived" ? "archived" : "" }) },
        ),
      ),
      model.rollout === null
        ? section("Start a rollout", startRolloutForm(ctx, model))
        : section(
            "Rollout",
            h(
              "p",
              { "data-testid": "active-rollout" },
              "A rollout is active: ",
              h("a", { href: hashLink("rollouts", model.rollout.id) }, `${model.rollout.mode} v${model.rollout.champion} → v${model.rollout.challenger} at ${model.rollout.percent}%`),
              ". Promote or abort it there before starting another (the server allows one active rollout per alias).",
            ),
          ),
      section("Alias history", aliasHistoryTable(model.aliasHistory)),
    );
    ctx.ready();
  };
  ctx.load(load);
}
