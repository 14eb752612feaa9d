import type { ModelSummary } from "../../contract.js";
import { getJson } from "../api.js";
import { h, hashLink } from "../dom.js";
import { ms, num, pct, rate } from "../format.js";
import { badge, pageTitle, section, setBody, table, type PageContext } from "../page.js";

export function aliasList(aliases: Record<string, number>): HTMLElement {
  const entries = Object.entries(aliases).sort(([a], [b]) => a.localeCompare(b));
  if (entries.length === 0) return h("span", { class: "muted" }, "none");
  return h("span", { class: "aliases" }, entries.map(([alias, version]) => h("span", { class: "alias" }, `${alias} → v${version}`)));
}

export function errorRateCell(errorRate: number, requests: number): HTMLElement {
  if (requests === 0) return h("span", { class: "muted" }, "–");
  const tone = errorRate >= 0.05 ? "bad" : errorRate > 0 ? "warn" : null;
  return tone === null ? h("span", null, pct(errorRate, 2)) : badge(pct(errorRate, 2), tone);
}

function statusCell(model: ModelSummary): HTMLElement {
  const ready = model.versions.filter((v) => v.status === "ready").length;
  const archived = model.versions.length - ready;
  const loaded = model.versions.filter((v) => v.loaded === "ready").length;
  return h(
    "span",
    null,
    `${ready} ready`,
    archived > 0 ? `, ${archived} archived` : "",
    loaded > 0 ? h("span", { class: "muted" }, ` (${loaded} loaded)`) : "",
  );
}

export async function modelsPage(ctx: PageContext): Promise<void> {
  ctx.poll(async (signal) => {
    const { models } = await getJson<{ models: ModelSummary[] }>("/api/v1/models", signal);
    const window = models[0]?.traffic.windowSeconds;
    setBody(
      ctx,
      pageTitle("Models"),
      section(
        "Registered models",
        table(
          [
            { label: "Model", cell: (m) => h("a", { href: hashLink("models", m.name) }, m.name) },
            { label: "Description", cell: (m) => m.description ?? "" },
            { label: "Aliases", cell: (m) => aliasList(m.aliases) },
            { label: "Versions", cell: (m) => `${m.versions.length} (latest v${m.latestVersion})`, numeric: true },
            { label: "Status", cell: statusCell },
            { label: "Traffic", cell: (m) => rate(m.traffic.requestsPerSecond), numeric: true, title: "requests per second over the trailing window" },
            { label: "Requests", cell: (m) => num(m.traffic.requests), numeric: true },
            { label: "Errors", cell: (m) => errorRateCell(m.traffic.errorRate, m.traffic.requests), numeric: true },
            { label: "p99", cell: (m) => ms(m.traffic.p99Ms), numeric: true },
            {
              label: "Rollout",
              cell: (m) =>
                m.rollout === null
                  ? h("span", { class: "muted" }, "–")
                  : h("a", { href: hashLink("rollouts", m.rollout.id) }, `${m.rollout.mode} v${m.rollout.challenger} ${m.rollout.percent}%`),
            },
          ],
          models,
          {
            empty: "No models registered yet: mlship models register <package> --name <name>.",
            rowAttrs: (m) => ({ "data-testid": `model-row-${m.name}` }),
          },
        ),
        window === undefined ? null : h("p", { class: "muted" }, `Traffic over the last ${window} s; refreshed every 5 s.`),
      ),
    );
    ctx.ready();
  }, 5000);
}
