/** The bench's table, the issue's targets, and the files written to bench/results/. */
import fs from "node:fs";
import path from "node:path";

export interface Row {
  id: string;
  scenario: string;
  /** Concurrency as printed: connections, or in-process loops. */
  concurrency: string;
  /** Requests (or session.run calls) per second; null when the scenario did not run. */
  rps: number | null;
  unit: "req/s" | "runs/s" | "rows/s" | "inserts/s";
  p50: number | null;
  p99: number | null;
  errors: number | null;
  /** rps / the baseline's rps. */
  ratio: number | null;
  /** The baseline the ratio is against, as printed. */
  baseline: string | null;
  note: string;
  /** The raw measurement, for the JSON file. */
  raw?: unknown;
}

/** INFO: a figure an issue asks to report without a threshold. */
export type Verdict = "PASS" | "FAIL" | "N/A" | "INFO";

export interface Target {
  name: string;
  verdict: Verdict;
  /** The figures behind the verdict (or why it could not be judged). */
  detail: string;
}

export interface Report {
  startedAt: string;
  finishedAt: string;
  wallSeconds: number;
  environment: Record<string, unknown>;
  settings: Record<string, unknown>;
  rows: Row[];
  targets: Target[];
  overload: unknown;
  warnings: string[];
}

export function fmtNum(n: number | null, digits: number): string {
  if (n === null || !Number.isFinite(n)) return "-";
  if (digits === 0) return Math.round(n).toLocaleString("en-US");
  return n.toFixed(digits);
}

function ms(n: number | null): string {
  if (n === null || !Number.isFinite(n)) return "-";
  return n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : n.toFixed(0);
}

const HEADER = ["scenario", "conc", "req/s", "p50 ms", "p99 ms", "errors", "ratio", "vs", "note"];

/** What a rate counts, after the number in the "req/s" column (requests: nothing). */
const UNIT_SUFFIX: Record<Row["unit"], string> = { "req/s": "", "runs/s": " runs", "rows/s": " rows", "inserts/s": " inserts" };

function cells(row: Row): string[] {
  return [
    row.scenario,
    row.concurrency,
    row.rps === null ? "n/a" : `${fmtNum(row.rps, 0)}${UNIT_SUFFIX[row.unit]}`,
    ms(row.p50),
    ms(row.p99),
    row.errors === null ? "-" : String(row.errors),
    row.ratio === null ? "-" : `${row.ratio.toFixed(2)}x`,
    row.baseline ?? "-",
    row.note,
  ];
}

const RIGHT = new Set([1, 2, 3, 4, 5, 6]);

export function textTable(rows: Row[]): string {
  const body = rows.map(cells);
  const widths = HEADER.map((h, i) => Math.max(h.length, ...body.map((c) => (c[i] as string).length)));
  const line = (c: string[]): string =>
    c
      .map((v, i) => (RIGHT.has(i) ? v.padStart(widths[i] as number) : v.padEnd(widths[i] as number)))
      .join("  ")
      .trimEnd();
  return [line(HEADER), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}

export function targetLines(targets: Target[]): string {
  return targets.map((t) => `[${t.verdict.padEnd(4)}] ${t.name}: ${t.detail}`).join("\n");
}

/** The targets grouped by the issue that set them: a target names its issue ("(issue 6 item 8)"), else issue 3. */
export function targetsByIssue(targets: Target[]): { issue: string; targets: Target[] }[] {
  const groups = new Map<string, Target[]>();
  for (const t of targets) {
    const issue = /\(issue (\d+)/.exec(t.name)?.[1] ?? "3";
    groups.set(issue, [...(groups.get(issue) ?? []), t]);
  }
  return [...groups].map(([issue, list]) => ({ issue, targets: list }));
}

function mdEscape(s: string): string {
  return s.replace(/\|/g, "\\|");
}

export function markdown(report: Report): string {
  const env = report.environment;
  const lines: string[] = [];
  lines.push(`# mlship bench ${report.startedAt}`);
  lines.push("");
  lines.push(
    `${String(env.cpu)} x ${String(env.cores)} cores, ${String(env.memoryGiB)} GiB, ${String(env.os)}, Node ${String(env.node)}; ` +
      `load generator ${String(report.settings.loadgen)}; ${String(report.settings.seconds)} s per scenario after ` +
      `${String(report.settings.warmupSeconds)} s warm-up; CPU busy with other work at start ${env.cpuBusyBeforeStart === null ? "unknown" : `${Math.round(Number(env.cpuBusyBeforeStart) * 100)}%`}. ` +
      `Wall time ${report.wallSeconds.toFixed(0)} s.`,
  );
  lines.push("");
  lines.push(`| ${HEADER.join(" | ")} |`);
  lines.push(`| ${HEADER.map((_, i) => (RIGHT.has(i) ? "---:" : "---")).join(" | ")} |`);
  for (const row of report.rows) lines.push(`| ${cells(row).map(mdEscape).join(" | ")} |`);
  lines.push("");
  for (const group of targetsByIssue(report.targets)) {
    lines.push(`## Targets (issue ${group.issue})`);
    lines.push("");
    for (const t of group.targets) lines.push(`- **${t.verdict}** ${mdEscape(t.name)}: ${mdEscape(t.detail)}`);
    lines.push("");
  }
  lines.pop();
  if (report.warnings.length > 0) {
    lines.push("");
    lines.push("## Warnings");
    lines.push("");
    for (const w of report.warnings) lines.push(`- ${w}`);
  }
  lines.push("");
  return lines.join("\n");
}

/** Writes `<stamp>.json`, `<stamp>.md` and (for the default folder) `latest.md`; returns the paths. */
export function writeResults(report: Report, dir: string, writeLatest: boolean): string[] {
  fs.mkdirSync(dir, { recursive: true });
  const stamp = report.startedAt.replace(/[:]/g, "-").replace(/\.\d+Z$/, "Z");
  const json = path.join(dir, `${stamp}.json`);
  const md = path.join(dir, `${stamp}.md`);
  const text = markdown(report);
  fs.writeFileSync(json, `${JSON.stringify(report, null, 2)}\n`);
  fs.writeFileSync(md, text);
  const written = [json, md];
  if (writeLatest) {
    const latest = path.join(dir, "latest.md");
    fs.writeFileSync(latest, text);
    written.push(latest);
  }
  return written;
}
