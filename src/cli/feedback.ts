import fs from "node:fs";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { Command } from "commander";
import { MlshipError } from "../core/index.js";
import type { FeedbackRejection, IngestResult, QualityReport, Variant } from "../feedback/index.js";
import { parseWindowSize, readDatasetFile } from "../monitor/index.js";
import type { Cell, ColumnTable } from "../monitor/index.js";
import { parseModelRef } from "../registry/index.js";
import { usageError } from "./args.js";
import type { CliContext, GlobalOptions } from "./context.js";
import { formatTable, printJson, printLine } from "./io.js";

/** The most outcomes one ingestion call takes (as `POST /v1/feedback`). */
const MAX_BATCH = 10_000;
/** Rejections printed under the import summary; the rest are counted only. */
const SHOWN_REJECTIONS = 10;
const VARIANTS: readonly Variant[] = ["champion", "challenger", "shadow"];

function number(value: number | null | undefined, digits = 4): string {
  if (value === null || value === undefined) return "";
  if (!Number.isFinite(value)) return String(value);
  return Math.abs(value) >= 1e5 || (Math.abs(value) < 1e-3 && value !== 0) ? value.toExponential(digits - 1) : String(Number(value.toPrecision(digits)));
}

function positiveInteger(text: string, flag: string, max: number): number {
  const n = Number(text);
  if (!/^\s*\d+\s*$/.test(text) || !Number.isSafeInteger(n) || n < 1 || n > max) throw usageError(`${flag} must be a whole number from 1 to ${max}, got "${text}"`, flag);
  return n;
}

function windowFlag(text: string, flag: string): string {
  try {
    parseWindowSize(text);
  } catch (error) {
    throw usageError(`${flag}: ${error instanceof Error ? error.message : String(error)}`, flag);
  }
  return text.trim();
}

function variantFlag(text: string | undefined): Variant | undefined {
  if (text === undefined) return undefined;
  if (!(VARIANTS as readonly string[]).includes(text)) throw usageError(`--variant must be one of ${VARIANTS.join(", ")}, got "${text}"`, "--variant");
  return text as Variant;
}

/** `--since`: a trailing size (`1d`, `12h`) or an ISO-8601 time. */
function sinceFlag(text: string, now: Date): Date {
  if (/^\s*\d+\s*(ms|s|m|h|d|w)\s*$/.test(text)) return new Date(now.getTime() - parseWindowSize(text));
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) throw usageError(`--since must be a size such as 1d or 12h, or an ISO-8601 time, got "${text}"`, "--since");
  return date;
}

interface ImportFlags {
  model?: string;
  requestIdColumn: string;
  rowColumn: string;
  keyColumn: string;
  actualColumn: string;
  timeColumn: string;
  modelColumn: string;
  batch: string;
}

/** Where each outcome field comes from in the file (undefined: not in the file). */
interface ColumnMap {
  requestId?: Cell[];
  row?: Cell[];
  key?: Cell[];
  model?: Cell[];
  actual: Cell[];
  eventTime?: Cell[];
}

function columnMap(table: ColumnTable, o: ImportFlags, file: string): ColumnMap {
  const column = (name: string): Cell[] | undefined => {
    const index = table.columns.indexOf(name);
    return index < 0 ? undefined : table.values[index];
  };
  const actual = column(o.actualColumn);
  const columns = table.columns.map((c) => JSON.stringify(c)).join(", ");
  if (actual === undefined) {
    throw usageError(`${file} has no column "${o.actualColumn}" for the actual values (its columns: ${columns}); name it with --actual-column`, "--actual-column");
  }
  const map: ColumnMap = { actual };
  const requestId = column(o.requestIdColumn);
  const key = column(o.keyColumn);
  if (requestId === undefined && key === undefined) {
    throw usageError(
      `${file} has neither a "${o.requestIdColumn}" nor a "${o.keyColumn}" column to find the predictions by (its columns: ${columns}); name one with --request-id-column or --key-column`,
      "--request-id-column",
    );
  }
  const model = column(o.modelColumn);
  if (requestId === undefined && model === undefined && o.model === undefined) {
    throw usageError(`outcomes found by "${o.keyColumn}" need the model: pass --model NAME (or a "${o.modelColumn}" column)`, "--model");
  }
  if (requestId !== undefined) map.requestId = requestId;
  if (key !== undefined) map.key = key;
  if (model !== undefined) map.model = model;
  const row = column(o.rowColumn);
  if (row !== undefined) map.row = row;
  const eventTime = column(o.timeColumn);
  if (eventTime !== undefined) map.eventTime = eventTime;
  return map;
}

/** One file row as a `POST /v1/feedback` item (snake_case); missing cells are left out for the store to judge. */
function outcomeItem(map: ColumnMap, r: number, model: string | undefined): Record<string, unknown> {
  const item: Record<string, unknown> = { actual: map.actual[r] ?? null };
  const text = (cells: Cell[] | undefined): string | undefined => {
    const cell = cells?.[r];
    return cell === null || cell === undefined || cell === "" ? undefined : String(cell);
  };
  const requestId = text(map.requestId);
  if (requestId !== undefined) item.request_id = requestId;
  const key = text(map.key);
  if (key !== undefined) item.key = key;
  const rowModel = text(map.model) ?? model;
  if (rowModel !== undefined) item.model = rowModel;
  const row = map.row?.[r];
  if (row !== null && row !== undefined && row !== "") item.row = row;
  const eventTime = map.eventTime?.[r];
  if (eventTime !== null && eventTime !== undefined && eventTime !== "") item.event_time = eventTime;
  return item;
}

function qualityRows(reports: readonly QualityReport[]): { headers: string[]; rows: string[][] } {
  const metricNames: string[] = [];
  for (const report of reports) for (const name of Object.keys(report.metrics)) if (name !== "coverage" && !metricNames.includes(name)) metricNames.push(name);
  // The error rate comes from a server's request metrics: a CLI process has none, so the column would stay empty.
  const shown = metricNames.filter((name) => name !== "error_rate" || reports.some((r) => r.metrics[name] !== null && r.metrics[name] !== undefined));
  const headers = ["version", "variant", "predictions", "outcomes", "coverage", ...shown];
  const rows = reports.map((r) => [
    String(r.version),
    r.variant ?? "",
    String(r.predictions),
    String(r.outcomes),
    number(r.coverage),
    ...shown.map((name) => number(r.metrics[name])),
  ]);
  return { headers, rows };
}

function rejectionLine(rejection: FeedbackRejection): string {
  return `  row ${rejection.index + 1}: ${rejection.field}: ${rejection.message}`;
}

export function feedbackCommand(ctx: CliContext): Command {
  const feedback = new Command("feedback").description("outcomes, live quality and the prediction log (docs/feedback.md)");

  feedback
    .command("import")
    .description("join a file of outcomes (actual labels or values) to the logged predictions; exits 1 when every row was rejected")
    .argument("<file>", "outcomes: .csv, .parquet or .jsonl")
    .option("--model <name>", "the model of outcomes found by business key (rows without a model column value)")
    .option("--request-id-column <name>", "column of request ids", "request_id")
    .option("--row-column <name>", "column of the row within a multi-row request (row 0 where missing)", "row")
    .option("--key-column <name>", "column of business keys (X-Mlship-Key), for rows without a request id", "key")
    .option("--model-column <name>", "column of model names for key rows", "model")
    .option("--actual-column <name>", "column of the actual labels (text or class index) or values", "actual")
    .option("--time-column <name>", "column of event times, ISO-8601 or epoch seconds/ms (now where missing)", "event_time")
    .option("--batch <rows>", `outcomes per ingestion transaction (1 to ${MAX_BATCH})`, "5000")
    .action(async (fileArg: string, _opts: unknown, cmd: Command) => {
      const o = cmd.optsWithGlobals<GlobalOptions & ImportFlags>();
      const batch = positiveInteger(o.batch, "--batch", MAX_BATCH);
      const file = path.resolve(ctx.io.cwd, fileArg);
      const { table } = await readDatasetFile(file);
      if (table.rows === 0) throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${file} has no rows`, { field: "data" });
      const map = columnMap(table, o, file);
      const app = await ctx.app(o);
      const total: IngestResult = { accepted: 0, matched: 0, pending: 0, late: 0, rejected: [] };
      for (let start = 0; start < table.rows; start += batch) {
        const items: Record<string, unknown>[] = [];
        for (let r = start; r < Math.min(table.rows, start + batch); r++) items.push(outcomeItem(map, r, o.model));
        const result = await app.feedback.ingestOutcomes(items);
        total.accepted += result.accepted;
        total.matched += result.matched;
        total.pending += result.pending;
        total.late += result.late;
        // Indexes within the batch become row numbers within the file.
        total.rejected.push(...result.rejected.map((x) => ({ ...x, index: x.index + start })));
      }
      printLine(ctx.io, `imported ${total.accepted} outcomes: ${total.matched} matched, ${total.pending} pending, ${total.late} late, ${total.rejected.length} rejected`);
      for (const rejection of total.rejected.slice(0, SHOWN_REJECTIONS)) printLine(ctx.io, rejectionLine(rejection));
      if (total.rejected.length > SHOWN_REJECTIONS) printLine(ctx.io, `  ... and ${total.rejected.length - SHOWN_REJECTIONS} more rejected rows`);
      if (total.accepted === 0) {
        const first = total.rejected[0];
        throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `every row of ${file} was rejected${first === undefined ? "" : ` (first: row ${first.index + 1}, ${first.field}: ${first.message})`}`, {
          field: first?.field ?? "data",
        });
      }
    });

  feedback
    .command("quality")
    .description("live quality of a model's versions over a trailing window (predictions joined with outcomes)")
    .argument("<ref>", "name (every version with predictions in the window), name@version or name@alias")
    .option("--window <size>", "trailing window: 1h, 12h, 1d, 7d...", "1d")
    .option("--variant <variant>", "only this rollout variant: champion, challenger or shadow")
    .option("--json", "print the reports as JSON")
    .action(async (refText: string, _opts: unknown, cmd: Command) => {
      const o = cmd.optsWithGlobals<GlobalOptions & { window: string; variant?: string; json?: boolean }>();
      const window = windowFlag(o.window, "--window");
      const variant = variantFlag(o.variant);
      const ref = parseModelRef(refText);
      const app = await ctx.app(o);
      const model = (await app.registry.getModel(ref.name)).name;
      const version = ref.version === undefined && ref.alias === undefined ? undefined : (await app.registry.resolve(ref)).version.version;
      const reports =
        version === undefined
          ? (await app.feedback.qualityAll(model, window)).filter((r) => variant === undefined || r.variant === variant)
          : [await app.feedback.quality({ model, version, window, ...(variant === undefined ? {} : { variant }) })];
      if (o.json === true) {
        printJson(ctx.io, reports);
        return;
      }
      if (reports.length === 0) {
        printLine(ctx.io, `no predictions of ${model}${variant === undefined ? "" : ` (${variant})`} logged in the last ${window}`);
        return;
      }
      const first = reports[0] as QualityReport;
      printLine(ctx.io, `quality of ${model} over the last ${window} (${first.window.start} to ${first.window.end}), ${first.task}`);
      const { headers, rows } = qualityRows(reports);
      printLine(ctx.io, formatTable(headers, rows));
    });

  feedback
    .command("export")
    .description("write logged predictions with their inputs, outputs and outcomes as JSON Lines (e.g. for retraining)")
    .argument("<ref>", "name (every version) or name@version / name@alias")
    .requiredOption("-o, --out <file>", "the JSON Lines file to write")
    .option("--since <when>", "predictions made since: a trailing size (1d, 12h) or an ISO-8601 time", "1d")
    .option("--with-outcome", "only predictions with an outcome joined")
    .action(async (refText: string, _opts: unknown, cmd: Command) => {
      const o = cmd.optsWithGlobals<GlobalOptions & { out: string; since: string; withOutcome?: boolean }>();
      const now = new Date();
      const since = sinceFlag(o.since, now);
      const ref = parseModelRef(refText);
      const app = await ctx.app(o);
      const model = (await app.registry.getModel(ref.name)).name;
      const version = ref.version === undefined && ref.alias === undefined ? undefined : (await app.registry.resolve(ref)).version.version;
      const out = path.resolve(ctx.io.cwd, o.out);
      const rows = app.predictions.exportPredictions({
        model,
        ...(version === undefined ? {} : { version }),
        start: since.toISOString(),
        // End is exclusive: a prediction logged in this very millisecond is still exported.
        end: new Date(now.getTime() + 1).toISOString(),
        ...(o.withOutcome === true ? { withOutcomeOnly: true } : {}),
      });
      let written = 0;
      async function* lines(): AsyncGenerator<string> {
        for await (const row of rows) {
          written += 1;
          yield `${JSON.stringify(row)}\n`;
        }
      }
      // pipeline closes the store's cursor when the file cannot be written, and the file when the store fails.
      await pipeline(lines, fs.createWriteStream(out)).catch((error: unknown) => {
        if (error instanceof MlshipError) throw error;
        throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${out}: cannot be written (${error instanceof Error ? error.message : String(error)})`, { field: "--out", cause: error });
      });
      printLine(ctx.io, `exported ${written} predictions of ${version === undefined ? model : `${model}@${version}`} since ${since.toISOString()} to ${out}`);
    });

  feedback
    .command("stats")
    .description("outcomes and business events by join status")
    .option("--json", "print JSON")
    .action(async (_opts: unknown, cmd: Command) => {
      const o = cmd.optsWithGlobals<GlobalOptions & { json?: boolean }>();
      const app = await ctx.app(o);
      const stats = await app.predictions.joinStats();
      if (o.json === true) {
        printJson(ctx.io, stats);
        return;
      }
      const row = (name: string, s: typeof stats.outcomes): string[] => [name, String(s.matched), String(s.pending), String(s.late), String(s.unmatched)];
      printLine(ctx.io, formatTable(["kind", "matched", "pending", "late", "unmatched"], [row("outcomes", stats.outcomes), row("events", stats.events)]));
    });

  return feedback;
}
