import type { BatchFreshnessView, BatchRunView } from "../../contract.js";
import { getJson } from "../api.js";
import { h, hashLink, replace } from "../dom.js";
import { duration, num, rate, short, timeEl } from "../format.js";
import { badge, inlineError, pageTitle, section, table, type PageContext } from "../page.js";

function runStatus(status: string): HTMLElement {
  if (status === "failed") return badge("failed", "bad");
  if (status === "completed" || status === "succeeded" || status === "success") return badge(status, "ok");
  if (status === "running") return badge("running", "info");
  return badge(status, "warn");
}

function runDuration(run: BatchRunView): string {
  const end = run.endedAt === null ? Date.now() : Date.parse(run.endedAt);
  return duration((end - Date.parse(run.startedAt)) / 1000);
}

export async function batchPage(ctx: PageContext): Promise<void> {
  const freshnessBox = h("div");
  const runsBox = h("div");
  ctx.body.append(pageTitle("Batch runs"), section("Freshness", freshnessBox), section("Runs (newest first)", runsBox));
  ctx.poll(async (signal) => {
    const [runs, freshness] = await Promise.allSettled([
      getJson<{ runs: BatchRunView[] }>("/api/v1/batch/runs?limit=50", signal),
      getJson<{ freshness: BatchFreshnessView[] }>("/api/v1/batch/freshness", signal),
    ]);
    if (runs.status === "rejected" && freshness.status === "rejected") throw runs.reason;
    replace(
      freshnessBox,
      freshness.status === "rejected"
        ? inlineError(freshness.reason)
        : table(
            [
              { label: "Model", cell: (f) => h("a", { href: hashLink("models", f.model) }, f.model) },
              { label: "Table", cell: (f) => f.table ?? "(default)" },
              { label: "Last success", cell: (f) => timeEl(f.lastSuccessAt) },
              { label: "Age", cell: (f) => duration(f.ageSeconds), numeric: true },
              { label: "Max age", cell: (f) => duration(f.maxAgeSeconds), numeric: true },
              {
                label: "State",
                cell: (f) =>
                  h(
                    "span",
                    { class: "badges" },
                    f.stale ? badge("stale", "bad") : f.lastSuccessAt === null ? badge("never succeeded", "warn") : badge("fresh", "ok"),
                    f.lastRunFailed ? badge("last run failed", "bad", f.lastError ?? "") : null,
                  ),
              },
              {
                label: "Schedule",
                cell: (f) =>
                  f.schedule === null ? "" : h("span", null, h("code", null, f.schedule.cron), " next ", timeEl(f.schedule.nextAt), f.schedule.late ? badge("late", "warn") : null),
              },
              { label: "Last error", cell: (f) => (f.lastError === null ? "" : h("span", { class: "error-text", title: f.lastError }, short(f.lastError, 120))) },
            ],
            freshness.value.freshness,
            { empty: "No batch runs recorded yet (mlship batch score ...).", rowAttrs: (f) => ({ "data-testid": `freshness-row-${f.model}`, class: f.stale || f.lastRunFailed ? "bad-row" : "" }) },
          ),
    );
    replace(
      runsBox,
      runs.status === "rejected"
        ? inlineError(runs.reason)
        : table(
            [
              { label: "Run", cell: (r) => h("code", { title: r.id }, r.id.length > 12 ? `${r.id.slice(0, 8)}…` : r.id) },
              { label: "Model", cell: (r) => h("a", { href: hashLink("models", r.model, "versions", r.version) }, `${r.model} v${r.version}`) },
              { label: "Table", cell: (r) => r.table ?? "" },
              { label: "Target", cell: (r) => h("code", null, short(r.target, 60)) },
              { label: "Status", cell: (r) => runStatus(r.status) },
              { label: "Started", cell: (r) => timeEl(r.startedAt) },
              { label: "Took", cell: runDuration, numeric: true },
              { label: "Rows in", cell: (r) => num(r.rowsIn), numeric: true },
              { label: "Rows out", cell: (r) => num(r.rowsOut), numeric: true },
              { label: "Rejected", cell: (r) => (r.rowsRejected > 0 ? badge(num(r.rowsRejected), "warn") : "0"), numeric: true },
              { label: "Speed", cell: (r) => rate(r.rowsPerSecond, "rows/s"), numeric: true },
              { label: "Shard / schedule", cell: (r) => [r.shard, r.schedule].filter(Boolean).join(" · ") },
              { label: "Error", cell: (r) => (r.error === null ? "" : h("span", { class: "error-text", title: r.error }, short(r.error, 120))) },
            ],
            runs.value.runs,
            {
              empty: "No batch runs yet.",
              rowAttrs: (r) => ({ "data-testid": `batch-run-${r.id}`, "data-status": r.status, class: r.status === "failed" ? "bad-row" : "" }),
            },
          ),
    );
    ctx.ready();
  }, 10_000);
}
