import type { AuditEntryView, PackageLineage, VersionDetail } from "../../contract.js";
import { getJson } from "../api.js";
import { h, hashLink } from "../dom.js";
import { bytes, num, timeEl } from "../format.js";
import { badge, facts, note, pageTitle, section, setBody, table, type PageContext } from "../page.js";
import { aliasHistoryTable } from "./model.js";

export function auditTable(entries: AuditEntryView[]): HTMLElement {
  return table(
    [
      { label: "When", cell: (e) => timeEl(e.at) },
      { label: "Action", cell: (e) => e.action },
      { label: "Actor", cell: (e) => e.actor },
      { label: "Model", cell: (e) => (e.model === null ? "" : `${e.model}${e.version === null ? "" : ` v${e.version}`}`) },
      { label: "Rollout", cell: (e) => (e.rolloutId === null ? "" : h("a", { href: hashLink("rollouts", e.rolloutId) }, e.rolloutId)) },
      { label: "Reason", cell: (e) => e.reason ?? "" },
      {
        label: "Details",
        cell: (e) => (e.details === null || e.details === undefined ? "" : h("code", { class: "details" }, JSON.stringify(e.details))),
      },
    ],
    entries,
    { empty: "No audited actions on this version." },
  );
}

function keyValues(values: Record<string, unknown> | undefined, empty: string): HTMLElement {
  const rows = Object.entries(values ?? {}).sort(([a], [b]) => a.localeCompare(b));
  return table(
    [
      { label: "Name", cell: ([k]) => k },
      { label: "Value", cell: ([, v]) => (typeof v === "number" ? num(v, 4) : String(v)), numeric: true },
    ],
    rows,
    { empty },
  );
}

/** The version this one was derived from (`metadata.lineage.parent`) as a link to its page, with its digest. */
function parentLink(parent: PackageLineage["parent"]): HTMLElement | string {
  if (parent === undefined) return "–";
  return h(
    "span",
    null,
    h("a", { href: hashLink("models", parent.model, "versions", parent.version), "data-testid": "lineage-parent" }, `${parent.model} v${parent.version}`),
    parent.digest === undefined ? null : [" · ", h("code", null, parent.digest)],
  );
}

/** Transform settings for the key/value table: lists (e.g. skipped nodes) as one "; "-separated text. */
function transformValues(transform: NonNullable<PackageLineage["transform"]>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(transform).map(([k, v]) => [k, Array.isArray(v) ? v.join("; ") : v]));
}

export async function versionPage(ctx: PageContext): Promise<void> {
  const name = ctx.params[0] ?? "";
  const version = ctx.params[2] ?? ctx.params[1] ?? "";
  ctx.load(async (signal) => {
    const detail = await getJson<VersionDetail>(`/api/v1/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}`, signal);
    const record = detail.record;
    const manifest = record.manifest;
    const meta = manifest.metadata;
    const lineage = meta.lineage;
    const signature = manifest.signature;
    const tensors = [
      ...signature.inputs.map((t) => ({ role: "input", ...t })),
      ...signature.outputs.map((t) => ({ role: "output", ...t })),
    ];
    const metrics = { ...(meta.metrics ?? {}), ...record.metrics };
    setBody(
      ctx,
      pageTitle(h("a", { href: "#/models" }, "Models"), " / ", h("a", { href: hashLink("models", record.name) }, record.name), ` / v${record.version}`),
      record.description ? note(record.description) : null,
      section(
        "Version",
        facts([
          ["Status", record.status === "archived" ? badge("archived", "muted") : badge("ready", "ok")],
          ["Loaded here", detail.loaded ?? "no"],
          ["Aliases", record.aliases.join(", ") || "none"],
          ["Flavor", `${manifest.flavor}${meta.framework ? ` (${meta.framework})` : ""}`],
          ["Registered", h("span", null, timeEl(record.createdAt), ` by ${record.createdBy}`)],
          ["Archived", record.archivedAt === null ? "no" : timeEl(record.archivedAt)],
          ["Tags", Object.entries(record.tags).map(([k, v]) => `${k}=${v}`).join(", ") || "–"],
          [
            "Views",
            h(
              "span",
              { class: "links" },
              h("a", { href: hashLink("drift", record.name, record.version) }, "drift"),
              h("a", { href: hashLink("quality", record.name) }, "quality"),
              h("a", { href: `#/traffic?model=${encodeURIComponent(record.name)}` }, "live traffic"),
            ),
          ],
        ]),
      ),
      section(
        "Signature",
        table(
          [
            { label: "Role", cell: (t) => t.role },
            { label: "Name", cell: (t) => t.name },
            { label: "Type", cell: (t) => t.dtype },
            { label: "Shape", cell: (t) => `[${t.shape.join(", ")}]` },
          ],
          tensors,
        ),
        signature.columns && signature.columns.length > 0
          ? h(
              "details",
              null,
              h("summary", null, `${signature.columns.length} columns feed ${signature.columnsInput ?? signature.inputs[0]?.name ?? "the input"}`),
              table(
                [
                  { label: "#", cell: (c) => String(signature.columns?.indexOf(c) ?? ""), numeric: true },
                  { label: "Column", cell: (c) => c.name },
                  { label: "Type", cell: (c) => c.dtype ?? "" },
                ],
                signature.columns,
              ),
            )
          : null,
        meta.class_labels ? h("p", null, `Class labels: ${meta.class_labels.join(", ")}`) : null,
      ),
      section("Parameters", keyValues(meta.params, "No parameters recorded.")),
      section("Metrics", keyValues(metrics, "No metrics recorded.")),
      section(
        "Lineage",
        facts([
          ["Derived from", parentLink(lineage?.parent)],
          ...(lineage?.derived_by === undefined ? [] : [["Derived by", h("code", null, lineage.derived_by)] as [string, HTMLElement]]),
          ["Registered from", h("code", null, record.source)],
          ["Digest", h("code", null, record.digest)],
          ["Source run", meta.source_run ? [meta.source_run.system, meta.source_run.id, meta.source_run.uri].filter(Boolean).join(" · ") : "–"],
          ["Training data", meta.training_data_fingerprint ? h("code", null, meta.training_data_fingerprint) : "–"],
          ["Created (package)", meta.created_at ? timeEl(meta.created_at) : "–"],
        ]),
        lineage?.transform === undefined
          ? null
          : h(
              "div",
              { "data-testid": "lineage-transform" },
              h("h3", null, "Transform settings"),
              keyValues(transformValues(lineage.transform), "No settings recorded."),
            ),
      ),
      section(
        "Files",
        table(
          [
            { label: "Path", cell: (f) => h("code", null, f.path) },
            { label: "Size", cell: (f) => bytes(f.bytes), numeric: true },
          ],
          detail.files,
          { empty: "No files listed." },
        ),
      ),
      section("Alias history", aliasHistoryTable(detail.aliasHistory)),
      section("Audit log", auditTable(detail.audit)),
      section("Serving settings", h("pre", { class: "json" }, JSON.stringify(detail.settings, null, 2))),
    );
    ctx.ready();
  });
}
