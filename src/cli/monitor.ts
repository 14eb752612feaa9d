import path from "node:path";
import { Command, Option } from "commander";
import { MlshipError } from "../core/index.js";
import fs from "node:fs/promises";
import { Alerter, alertsFromReport, checkDatasetWithProfiles, logSink, MonitorStore, profileReference, renderHtmlReport, webhookSink } from "../monitor/index.js";
import type { CheckReport, ColumnProfile, FailOn, ReferenceProfile } from "../monitor/index.js";
import { loadMonitorConfigFile } from "../package/index.js";
import { usageError } from "./args.js";
import type { CliContext, GlobalOptions } from "./context.js";
import { formatTable, printJson, printLine } from "./io.js";

function list(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), ...value.split(",").map((s) => s.trim()).filter((s) => s !== "")];
}

function number(value: number | null | undefined, digits = 4): string {
  if (value === null || value === undefined) return "";
  if (!Number.isFinite(value)) return String(value);
  return Math.abs(value) >= 1e5 || (Math.abs(value) < 1e-3 && value !== 0) ? value.toExponential(digits - 1) : String(Number(value.toPrecision(digits)));
}

function columnRow(c: ColumnProfile): string[] {
  if (c.kind === "numeric") return [c.name, "numeric", String(c.count), String(c.nulls), number(c.min), number(c.mean), number(c.max), number(c.std)];
  const top = Object.entries(c.frequencies).sort((a, b) => b[1] - a[1]).slice(0, 3).map(([k, n]) => `${k}:${n}`).join(" ");
  return [c.name, "categorical", String(c.count), String(c.nulls), "", top, "", ""];
}

function printProfile(ctx: CliContext, p: ReferenceProfile): void {
  printLine(ctx.io, `reference profile of ${p.model}@${p.version} from ${p.source.path} (${p.features.rows} rows, sha256 ${p.source.sha256.slice(0, 12)}...)`);
  printLine(ctx.io, formatTable(["feature", "kind", "count", "nulls", "min", "mean/top", "max", "std"], p.features.columns.map(columnRow)));
  if (p.predictions !== undefined) {
    printLine(ctx.io);
    printLine(ctx.io, formatTable(["prediction", "kind", "count", "nulls", "min", "mean/top", "max", "std"], p.predictions.columns.map(columnRow)));
  }
}

function printCheck(ctx: CliContext, r: CheckReport): void {
  printLine(ctx.io, `${r.model}@${r.version}: ${r.rows} rows from ${r.source}`);
  const failedRules = r.rules.filter((x) => !x.passed);
  printLine(ctx.io, `rules: ${r.rules.length - failedRules.length} of ${r.rules.length} passed`);
  if (failedRules.length > 0) {
    printLine(ctx.io, formatTable(["severity", "rule", "column", "observed", "expected", "source"], failedRules.map((x) => [x.severity, x.rule, x.column ?? "", String(x.observed ?? ""), x.expected, x.source])));
  }
  const driftRows = (d: CheckReport["drift"]): string[][] =>
    d.features.map((f) => [f.feature, f.method, number(f.statistic), f.pvalue === undefined ? "" : number(f.pvalue), `${f.operator} ${f.threshold}`, f.drifted ? "DRIFT" : "ok"]);
  printLine(ctx.io);
  printLine(ctx.io, `feature drift: ${r.drift.driftedFeatures} of ${r.drift.features.length} features (share ${r.drift.share.toFixed(3)}; dataset drift ${r.drift.drifted ? "YES" : "no"} at >= ${r.drift.shareThreshold})`);
  printLine(ctx.io, formatTable(["feature", "method", "statistic", "p-value", "drift if", "verdict"], driftRows(r.drift)));
  for (const s of r.skippedFeatures) printLine(ctx.io, `  (no drift test for '${s.feature}': ${s.reason})`);
  if (r.predictionDriftSkipped !== undefined) {
    printLine(ctx.io);
    printLine(ctx.io, `prediction drift: not measured (${r.predictionDriftSkipped})`);
  }
  if (r.predictionDrift !== undefined) {
    printLine(ctx.io);
    printLine(ctx.io, `prediction drift: ${r.predictionDrift.driftedFeatures} of ${r.predictionDrift.features.length} outputs`);
    printLine(ctx.io, formatTable(["output", "method", "statistic", "p-value", "drift if", "verdict"], driftRows(r.predictionDrift)));
  }
  if (r.windows !== undefined) {
    printLine(ctx.io);
    for (const w of r.windows) {
      const top = Object.entries(w.driftedWindows).sort((a, b) => b[1] - a[1]).slice(0, 5).map(([f, n]) => `${f} ${n}`).join(", ");
      printLine(ctx.io, `${w.size} ${w.mode} windows: ${w.windows} (${w.tested} with enough rows)${top === "" ? "" : `; drifted windows: ${top}`}`);
    }
    const kinds = r.kinds ?? [];
    if (kinds.length > 0) printLine(ctx.io, formatTable(["column", "drift kind", "evidence"], kinds.map((k) => [k.source === "predictions" ? `${k.column} (output)` : k.column, k.kind, k.evidence])));
    else printLine(ctx.io, "drift kinds: none found over time");
  }
  printLine(ctx.io);
  printLine(ctx.io, r.passed ? "check passed" : `check FAILED:\n${r.failures.map((f) => `  - ${f}`).join("\n")}`);
}

export function monitorCommand(ctx: CliContext): Command {
  const monitor = new Command("monitor").description("reference profiles, data-quality rules and drift checks (docs/monitoring.md)");

  monitor
    .command("profile")
    .description("profile a version's reference (training/validation) data and store it with the version")
    .argument("<ref>", "name@version or name@alias")
    .requiredOption("-d, --data <file>", "reference data: .csv, .parquet or .jsonl")
    .option("--label-column <names>", "columns to leave out (default label,target) for models without declared columns", list)
    .option("--no-predictions", "do not score the rows to profile the prediction distribution")
    .option("--json", "print the stored profile as JSON")
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const o = cmd.optsWithGlobals<GlobalOptions & { data: string; labelColumn?: string[]; predictions: boolean; json?: boolean }>();
      const app = await ctx.app(o, {}, { "runtime.workers": 1 });
      const resolved = await app.scoring.resolve(ref);
      const profile = await profileReference({ scoring: app.scoring, store: new MonitorStore(app.store) }, resolved, path.resolve(ctx.io.cwd, o.data), {
        labelColumns: o.labelColumn,
        predictions: o.predictions,
      });
      if (o.json === true) printJson(ctx.io, profile);
      else printProfile(ctx, profile);
    });

  type CheckFlags = GlobalOptions & {
    data: string;
    rules?: string;
    failOn: FailOn;
    predictions: boolean;
    json?: boolean;
    html?: string;
    webhook?: string;
    timeColumn?: string;
    windows?: string[];
    sliding?: boolean;
    storeWindows: boolean;
  };
  /** Both commands: the check, the HTML file and the alerts. */
  const run = async (ref: string, o: CheckFlags): Promise<CheckReport> => {
    const app = await ctx.app(o, {}, { "runtime.workers": 1 });
    const config = o.rules === undefined ? undefined : await loadMonitorConfigFile(path.resolve(ctx.io.cwd, o.rules));
    const resolved = await app.scoring.resolve(ref);
    if (o.timeColumn === undefined && (o.windows !== undefined || o.sliding === true)) throw usageError("--windows and --sliding need --time-column", "--time-column");
    const { report, reference, current, series } = await checkDatasetWithProfiles({ scoring: app.scoring, store: new MonitorStore(app.store) }, resolved, path.resolve(ctx.io.cwd, o.data), {
      config,
      failOn: o.failOn,
      predictions: o.predictions,
      ...(o.timeColumn === undefined ? {} : { timeColumn: o.timeColumn, windowMode: o.sliding === true ? "sliding" : "tumbling", storeWindows: o.storeWindows }),
      ...(o.windows === undefined ? {} : { windows: o.windows }),
    });
    if (o.html !== undefined) {
      const out = path.resolve(ctx.io.cwd, o.html);
      const windows = series?.map((w) => ({
        size: `${w.size} ${w.mode}`,
        series: w.windows
          .filter((x) => x.drift !== undefined)
          .map((x) => ({ start: x.start, end: x.end, features: Object.fromEntries((x.drift?.features ?? []).map((f) => [f.feature, { score: f.score, drifted: f.drifted, method: f.method }])) })),
      }));
      const kinds = Object.fromEntries((report.kinds ?? []).filter((k) => k.source === "features").map((k) => [k.column, { kind: k.kind, evidence: `${k.evidence} (${k.size} windows)` }]));
      await fs.writeFile(out, renderHtmlReport({ reference, current, check: report, ...(windows === undefined ? {} : { windows, kinds }) }));
      ctx.logger.info({ output: out }, "HTML report written");
    }
    if (o.webhook !== undefined) {
      const alerter = new Alerter({ sinks: [logSink(ctx.logger), webhookSink({ url: o.webhook, logger: ctx.logger })], logger: ctx.logger });
      await alerter.process(alertsFromReport(report));
    }
    return report;
  };
  const checkOptions = (command: Command): Command =>
    command
      .argument("<ref>", "name@version or name@alias")
      .requiredOption("-d, --data <file>", "current data: .csv, .parquet or .jsonl")
      .option("--rules <file>", "monitor config (YAML or JSON) instead of the package's monitor: section")
      .addOption(new Option("--fail-on <what>", "any: an error rule or any drifted feature; dataset: an error rule or dataset drift; rules: rules only").choices(["any", "dataset", "rules"]).default("any"))
      .option("--no-predictions", "do not score the rows for prediction drift")
      .option("--json", "print the report as JSON")
      .option("--html <file>", "write the report as one self-contained HTML file")
      .option("--webhook <url>", "POST the findings as alerts ({\"alerts\":[...]}) to this URL; they are logged on stderr too")
      .option("--time-column <name>", "a column of row timestamps: also compare window by window and name each drift's kind")
      .option("--windows <sizes>", "window sizes with --time-column (default 1h,12h,1d)", list)
      .option("--sliding", "sliding windows (a step of a quarter of the size) instead of tumbling ones")
      .option("--no-store-windows", "do not store the window profiles with the version");

  checkOptions(monitor.command("check").description("check a dataset against a version's reference: data-quality rules and drift; exits 1 when a check fails")).action(
    async (ref: string, _opts: unknown, cmd: Command) => {
      const report = await run(ref, cmd.optsWithGlobals<CheckFlags>());
      if (cmd.optsWithGlobals<CheckFlags>().json === true) printJson(ctx.io, report);
      else printCheck(ctx, report);
      if (!report.passed) {
        throw new MlshipError("MLSHIP_ERR_MONITOR_CHECK_FAILED", `${report.failures.length} monitoring check${report.failures.length > 1 ? "s" : ""} failed for ${report.model}@${report.version}`, {
          field: "data",
        });
      }
    },
  );

  checkOptions(monitor.command("report").description("the same comparison as check, as a report (--html FILE and/or --json); exits 0 whatever it finds")).action(
    async (ref: string, _opts: unknown, cmd: Command) => {
      const o = cmd.optsWithGlobals<CheckFlags>();
      if (o.html === undefined && o.json !== true) throw usageError("monitor report needs --html FILE or --json", "--html");
      const report = await run(ref, o);
      if (o.json === true) printJson(ctx.io, report);
      else printLine(ctx.io, `report written to ${path.resolve(ctx.io.cwd, o.html ?? "")} (${report.passed ? "all checks passed" : `${report.failures.length} findings`})`);
    },
  );

  return monitor;
}
