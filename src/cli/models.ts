import path from "node:path";
import { Command } from "commander";
import { MlshipError, isMlshipError } from "../core/index.js";
import type { Manifest, ServingSettings, Signature } from "../package/index.js";
import { exportMlflowModel, loadPackage } from "../package/index.js";
// TODO(index): src/package/index.ts does not re-export the MLflow exporter yet (another owner's file); import it
// from there and drop this exception once it does.
import { parseModelRef, type AliasEvent, type ModelRecord, type VersionRecord } from "../registry/index.js";
import { registerModel } from "../app.js";
import type { OptimizeVersionOptions } from "../optimize/index.js";
import { collect, parseColumns, parseMetrics, parsePairs, parseVersion, usageError } from "./args.js";
import type { CliContext, GlobalOptions } from "./context.js";
import { formatKv, formatTable, printJson, printLine } from "./io.js";

interface JsonFlag {
  json?: boolean;
}

function globals<T>(cmd: Command): GlobalOptions & T {
  return cmd.optsWithGlobals<GlobalOptions & T>();
}

export function modelsCommand(ctx: CliContext): Command {
  const models = new Command("models").description("register models and manage versions, aliases and tags");

  models
    .command("register")
    .description("import a model (mlship package, MLflow model folder or .onnx file) as a new version")
    .argument("<path>", "package folder, MLflow model folder (with MLmodel) or .onnx file")
    .requiredOption("-n, --name <name>", "model name ([A-Za-z0-9_.-])")
    .option("--tag <key=value>", "version tag (repeatable)", collect)
    .option("--metric <key=value>", "numeric metric (repeatable)", collect)
    .option("--description <text>", "version description")
    .option("--columns <a,b,c>", "ordered input columns (tabular models)")
    .option("--columns-from <csv>", "take the columns from a CSV header (see --label-column)")
    .option("--label-column <name>", "column of --columns-from that is the label, not an input")
    .option("--alias <alias>", "also point this alias (e.g. production) at the new version")
    .option("--reason <text>", "why (recorded with the alias move)")
    .option("--class <name>", "Spark ML only: the class the folder must hold (e.g. LogisticRegressionModel); another is refused")
    .option("--json", "print the new version record as JSON instead of its number")
    .action(async (source: string, _opts: unknown, cmd: Command) => {
      const o = globals<
        JsonFlag & {
          name: string;
          tag?: string[];
          metric?: string[];
          description?: string;
          columns?: string;
          columnsFrom?: string;
          labelColumn?: string;
          alias?: string;
          reason?: string;
          class?: string;
        }
      >(cmd);
      if (o.columns !== undefined && o.columnsFrom !== undefined) {
        throw usageError("use either --columns or --columns-from, not both", "--columns");
      }
      if (o.labelColumn !== undefined && o.columnsFrom === undefined) {
        throw usageError("--label-column needs --columns-from", "--label-column");
      }
      const tags = parsePairs(o.tag, "--tag");
      const metrics = parseMetrics(o.metric);
      const columns = o.columns === undefined ? undefined : parseColumns(o.columns);
      const app = await ctx.app(o);
      const record = await registerModel(app, source, {
        name: o.name,
        tags,
        metrics,
        description: o.description,
        columns,
        columnsFromCsv: o.columnsFrom,
        labelColumn: o.labelColumn,
        alias: o.alias,
        reason: o.reason,
        sparkClass: o.class,
      });
      if (o.json === true) printJson(ctx.io, record);
      else printLine(ctx.io, String(record.version));
    });

  models
    .command("list")
    .alias("ls")
    .description("list registered models with their latest version and aliases")
    .option("--json", "print JSON")
    .action(async (_opts: unknown, cmd: Command) => {
      const o = globals<JsonFlag>(cmd);
      const app = await ctx.app(o);
      const list = await app.registry.listModels();
      if (o.json === true) return printJson(ctx.io, list);
      if (list.length === 0) return printLine(ctx.io, "no models registered (mlship models register PATH --name NAME)");
      printLine(
        ctx.io,
        formatTable(
          ["NAME", "LATEST", "ALIASES", "UPDATED", "DESCRIPTION"],
          list.map((m) => [m.name, String(m.latestVersion), aliasText(m), m.updatedAt, m.description ?? ""]),
        ),
      );
    });

  models
    .command("show")
    .description("show a model (versions, aliases, tags) or one version (metrics, signature)")
    .argument("<ref>", "name, name@3, name@production or models:/name@production")
    .option("--json", "print JSON")
    .action(async (refText: string, _opts: unknown, cmd: Command) => {
      const o = globals<JsonFlag>(cmd);
      const ref = parseModelRef(refText);
      const app = await ctx.app(o);
      const model = await app.registry.getModel(ref.name);
      const versions = await app.registry.listVersions(ref.name, { includeArchived: true });
      let selected: VersionRecord | null;
      if (ref.version !== undefined) {
        // An explicit version is shown even when archived (resolve would refuse it).
        selected = await app.registry.getVersion(ref.name, ref.version);
      } else if (ref.alias !== undefined) {
        selected = (await app.registry.resolve(ref)).version;
      } else {
        // A bare name shows what it resolves to; a model whose versions are all archived resolves to nothing.
        selected = await app.registry.resolve(ref).then(
          (r) => r.version,
          (error: unknown) => {
            if (isMlshipError(error) && error.httpStatus === 404) return null;
            throw error;
          },
        );
      }
      if (o.json === true) return printJson(ctx.io, { model, versions, version: selected });
      printLine(ctx.io, showModelText(model, versions, selected));
    });

  models
    .command("alias")
    .description("point ALIAS (e.g. production, staging) of a model at VERSION; the move is recorded")
    .argument("<name>", "model name")
    .argument("<alias>", "alias name (not digits, v<digits> or latest)")
    .argument("<version>", "version number")
    .option("--reason <text>", "why (kept in the alias history)")
    .action(async (name: string, alias: string, versionText: string, _opts: unknown, cmd: Command) => {
      const o = globals<{ reason?: string }>(cmd);
      const version = parseVersion(versionText);
      const app = await ctx.app(o);
      const event = await app.registry.setAlias(name, alias, version, { by: app.config.user, reason: o.reason });
      printLine(ctx.io, moveText(event));
    });

  models
    .command("unalias")
    .description("remove an alias from a model (recorded in the alias history)")
    .argument("<name>", "model name")
    .argument("<alias>", "alias name")
    .option("--reason <text>", "why (kept in the alias history)")
    .action(async (name: string, alias: string, _opts: unknown, cmd: Command) => {
      const o = globals<{ reason?: string }>(cmd);
      const app = await ctx.app(o);
      const event = await app.registry.deleteAlias(name, alias, { by: app.config.user, reason: o.reason });
      printLine(ctx.io, moveText(event));
    });

  models
    .command("rollback")
    .description("move an alias back to its previous target in the alias history (skipping archived versions), at once; ends the alias's active rollout")
    .argument("<name>", "model name")
    .option("--alias <alias>", "which alias", "production")
    .option("--reason <text>", "why (kept in the alias history and the audit log)")
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const o = globals<{ alias: string; reason?: string }>(cmd);
      const app = await ctx.app(o);
      const done = await app.rollouts.rollbackModel(name, o.alias, { by: app.config.user, ...(o.reason === undefined ? {} : { reason: o.reason }) });
      if (done.rollout !== undefined) printLine(ctx.io, `rollout ${done.rollout.id} of version ${done.rollout.challenger} ended (rolled back)`);
      printLine(ctx.io, moveText({ name, alias: o.alias, from: done.from, to: done.to }));
    });

  const statusChanges = [
    { verb: "archive", says: "archived", description: "archive a version: it is unloaded and no longer served (refused while an alias points at it)" },
    { verb: "unarchive", says: "ready", description: "make an archived version servable again" },
  ] as const;
  for (const change of statusChanges) {
    models
      .command(change.verb)
      .description(change.description)
      .argument("<name>", "model name")
      .argument("<version>", "version number")
      .option("--reason <text>", "why")
      .action(async (name: string, versionText: string, _opts: unknown, cmd: Command) => {
        const o = globals<{ reason?: string }>(cmd);
        const version = parseVersion(versionText);
        const app = await ctx.app(o);
        const record = await app.registry[change.verb](name, version, { by: app.config.user, reason: o.reason });
        await app.audit.record({ actor: app.config.user, action: `version.${change.verb}`, model: name, version, ...(o.reason === undefined ? {} : { reason: o.reason }) });
        printLine(ctx.io, `${record.name}@${record.version} ${change.says}`);
      });
  }

  models
    .command("history")
    .description("every move of a model's aliases: when, from, to, by whom, why")
    .argument("<name>", "model name")
    .option("--alias <alias>", "only this alias")
    .option("--json", "print JSON")
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const o = globals<JsonFlag & { alias?: string }>(cmd);
      const app = await ctx.app(o);
      const events = await app.registry.aliasHistory(name, o.alias);
      if (o.json === true) return printJson(ctx.io, events);
      if (events.length === 0) return printLine(ctx.io, `no alias moves recorded for ${name}`);
      printLine(
        ctx.io,
        formatTable(
          ["AT", "ALIAS", "ACTION", "FROM", "TO", "BY", "REASON"],
          events.map((e) => [e.at, e.alias, e.action, versionCell(e.from), versionCell(e.to), e.by, e.reason ?? ""]),
        ),
      );
    });

  models
    .command("tag")
    .description("set tags on a model (NAME) or on one version (NAME@VERSION)")
    .argument("<target>", "model name, or name@version for a version's tags")
    .argument("<key=value...>", "tags to set")
    .option("--json", "print the updated record as JSON")
    .action(async (target: string, pairs: string[], _opts: unknown, cmd: Command) => {
      const o = globals<JsonFlag>(cmd);
      const tags = parsePairs(pairs, "key=value");
      const ref = parseModelRef(target);
      if (ref.alias !== undefined) throw usageError(`tag NAME or NAME@VERSION, not an alias (${target})`, "target");
      const app = await ctx.app(o);
      const record =
        ref.version === undefined
          ? await app.registry.setModelTags(ref.name, tags)
          : await app.registry.setVersionTags(ref.name, ref.version, tags);
      if (o.json === true) return printJson(ctx.io, record);
      const label = ref.version === undefined ? ref.name : `${ref.name}@${ref.version}`;
      printLine(ctx.io, `${label} tags: ${formatKv(record.tags) || "-"}`);
    });

  models
    .command("settings")
    .description("show a version's effective serving settings (and where each comes from), or change its override")
    .argument("<name>", "model name")
    .argument("<version>", "version number")
    .option("--max-batch-size <n>", "most rows one batched run holds")
    .option("--max-delay-ms <n>", "most a request waits for others to join its batch (0: only what is queued)")
    .option("--preferred-batch-sizes <a,b>", "batch sizes sent at once when reached, e.g. 4,8")
    .option("--batching <on|off>", "adaptive batching for this version")
    .option("--cache <on|off>", "prediction cache for this version")
    .option("--max-queue <n>", "requests queued or running before 429")
    .option("--timeout-ms <n>", "per-request deadline before 503")
    .option("--max-request-rows <n>", "most rows one online request may carry before 413")
    .option("--instances <n>", "worker instances serving this version")
    .option("--reset", "drop the registry override (package and server defaults apply again)")
    .option("--json", "print JSON")
    .action(async (name: string, versionText: string, _opts: unknown, cmd: Command) => {
      const o = globals<
        JsonFlag & {
          maxBatchSize?: string;
          maxDelayMs?: string;
          preferredBatchSizes?: string;
          batching?: string;
          cache?: string;
          maxQueue?: string;
          timeoutMs?: string;
          maxRequestRows?: string;
          instances?: string;
          reset?: boolean;
        }
      >(cmd);
      const version = parseVersion(versionText);
      const int = (text: string | undefined, flag: string): number | undefined => {
        if (text === undefined) return undefined;
        if (!/^\s*\d+\s*$/.test(text)) throw usageError(`${flag} must be a whole number, got "${text}"`, flag);
        return Number(text);
      };
      const onOff = (text: string | undefined, flag: string): boolean | undefined => {
        if (text === undefined) return undefined;
        if (text === "on" || text === "true") return true;
        if (text === "off" || text === "false") return false;
        throw usageError(`${flag} must be on or off, got "${text}"`, flag);
      };
      const change: ServingSettings = {};
      const batching: NonNullable<ServingSettings["batching"]> = {};
      const maxBatch = int(o.maxBatchSize, "--max-batch-size");
      if (maxBatch !== undefined) batching.max_batch_size = maxBatch;
      const maxDelay = int(o.maxDelayMs, "--max-delay-ms");
      if (maxDelay !== undefined) batching.max_delay_ms = maxDelay;
      if (o.preferredBatchSizes !== undefined) {
        batching.preferred_batch_sizes = o.preferredBatchSizes.split(",").map((x) => int(x, "--preferred-batch-sizes") as number);
      }
      const enabled = onOff(o.batching, "--batching");
      if (enabled !== undefined) batching.enabled = enabled;
      if (Object.keys(batching).length > 0) change.batching = batching;
      const cache = onOff(o.cache, "--cache");
      if (cache !== undefined) change.cache = { enabled: cache };
      const maxQueue = int(o.maxQueue, "--max-queue");
      if (maxQueue !== undefined) change.max_queue = maxQueue;
      const timeout = int(o.timeoutMs, "--timeout-ms");
      if (timeout !== undefined) change.timeout_ms = timeout;
      const maxRequestRows = int(o.maxRequestRows, "--max-request-rows");
      if (maxRequestRows !== undefined) change.max_request_rows = maxRequestRows;
      const instances = int(o.instances, "--instances");
      if (instances !== undefined) change.instances = instances;
      const app = await ctx.app(o);
      const changing = o.reset === true || Object.keys(change).length > 0;
      if (changing) {
        // Flags change only the fields they name; the rest of the override stays.
        const current = o.reset === true ? {} : await app.registry.getVersionSettings(name, version);
        const merged: ServingSettings = { ...current, ...change };
        if (change.batching !== undefined) merged.batching = { ...current.batching, ...change.batching };
        if (change.cache !== undefined) merged.cache = { ...current.cache, ...change.cache };
        await app.registry.setVersionSettings(name, version, merged, { by: app.config.user });
      }
      const effective = await app.scoring.settings(name, version);
      const override = await app.registry.getVersionSettings(name, version);
      if (o.json === true) return printJson(ctx.io, { ...effective, override });
      const rows: string[][] = [];
      const flat = (prefix: string, value: unknown): void => {
        if (typeof value === "object" && value !== null && !Array.isArray(value)) {
          for (const [k, v] of Object.entries(value)) flat(prefix === "" ? k : `${prefix}.${k}`, v);
        } else rows.push([prefix, Array.isArray(value) ? value.join(",") : String(value), effective.sources[prefix] ?? "default"]);
      };
      flat("", effective.settings);
      printLine(ctx.io, `${name}@${version} serving settings${changing ? " (updated)" : ""}`);
      printLine(ctx.io, formatTable(["SETTING", "VALUE", "FROM"], rows));
    });

  models
    .command("export")
    .description("write a version as an MLflow model folder (MLmodel with the onnx and python_function flavors) that MLflow loads and serves")
    .argument("<ref>", "name, name@3, name@production or models:/name@production")
    .requiredOption("--out <dir>", "folder to write (created; must be new or empty)")
    .option("--format <format>", "export format: mlflow", "mlflow")
    .option("--python-version <version>", "Python recorded for MLflow's environment (python_version, conda.yaml, python_env.yaml)")
    .option("--json", "print the result (folder, files, notes) as JSON")
    .action(async (refText: string, _opts: unknown, cmd: Command) => {
      const o = globals<JsonFlag & { out: string; format: string; pythonVersion?: string }>(cmd);
      if (o.format !== "mlflow") throw usageError(`--format must be mlflow, got "${o.format}"`, "--format");
      const app = await ctx.app(o);
      const resolved = await app.registry.resolve(refText);
      const record = resolved.version;
      const pkg = await loadPackage(await app.artifacts.materialize(record.digest));
      const result = await exportMlflowModel(pkg, {
        outDir: path.resolve(ctx.io.cwd, o.out),
        origin: { name: record.name, version: record.version, digest: record.digest, source: record.source },
        ...(o.pythonVersion === undefined ? {} : { pythonVersion: o.pythonVersion }),
      });
      if (o.json === true) return printJson(ctx.io, { model: record.name, version: record.version, ...result });
      printLine(ctx.io, `${record.name}@${record.version} exported to ${result.dir} (MLflow onnx flavor: ${result.files.join(", ")})`);
      for (const note of result.notes) printLine(ctx.io, `note: ${note}`);
    });

  models
    .command("optimize")
    .description("make a smaller/faster version: int8 quantization, fp16 or onnxruntime graph optimization, with a report and an accuracy gate (docs/optimize.md)")
    .argument("<ref>", "the parent: name, name@3, name@production or models:/name@production")
    .option("--quantize <method>", "int8-dynamic (MatMul/Gemm weights int8, activations at run time) or int8-static (QDQ, needs --calibration)")
    .option("--calibration <csv>", "int8-static: rows (the model's feature columns) to measure activation ranges on")
    .option("--calibration-method <method>", "int8-static: minmax or percentile (default minmax)")
    .option("--percentile <p>", "int8-static with percentile: the percentile kept (default 99.99)")
    .option("--per-channel", "int8: one weight scale per output column instead of one per tensor")
    .option("--include-conv", "int8-dynamic: also quantize Conv layers (ConvInteger)")
    .option("--fp16", "convert weights and computation to float16 (inputs and outputs stay float32)")
    .option("--keep-float32 <ops>", "fp16: more op types to keep in float32, e.g. Softmax,LayerNormalization")
    .option("--optimize-level <level>", "onnxruntime graph optimization saved into the model: disabled, basic, extended or all")
    .option("--validate <csv>", "CSV with the feature columns and the label column: accuracy, agreement and the gate")
    .option("--label-column <name>", "label column of the CSV files (default label, else target)")
    .option("--max-accuracy-drop <x>", "refuse the new version when parent accuracy - new accuracy (R2 for regression) exceeds this", "0.01")
    .option("--name <name>", "register under this model name (default: the parent's)")
    .option("--description <text>", "description of the new version")
    .option("--runs <n>", "timed runs per latency figure", "50")
    .option("--dry-run", "report only; register nothing")
    .option("--json", "print the report (and the new version) as JSON")
    .action(async (refText: string, _opts: unknown, cmd: Command) => {
      const o = globals<
        JsonFlag & {
          quantize?: string;
          calibration?: string;
          calibrationMethod?: string;
          percentile?: string;
          perChannel?: boolean;
          includeConv?: boolean;
          fp16?: boolean;
          keepFloat32?: string;
          optimizeLevel?: string;
          validate?: string;
          labelColumn?: string;
          maxAccuracyDrop: string;
          name?: string;
          description?: string;
          runs: string;
          dryRun?: boolean;
        }
      >(cmd);
      const number = (text: string, flag: string): number => {
        const x = Number(text);
        if (text.trim() === "" || !Number.isFinite(x)) throw usageError(`${flag} must be a number, got "${text}"`, flag);
        return x;
      };
      const runs = number(o.runs, "--runs");
      if (!Number.isInteger(runs) || runs < 1) throw usageError(`--runs must be a whole number >= 1, got "${o.runs}"`, "--runs");
      const options: OptimizeVersionOptions = {
        ref: refText,
        maxAccuracyDrop: number(o.maxAccuracyDrop, "--max-accuracy-drop"),
        runs,
        ...(o.quantize === undefined ? {} : { quantize: o.quantize as OptimizeVersionOptions["quantize"] }),
        ...(o.calibration === undefined ? {} : { calibration: path.resolve(ctx.io.cwd, o.calibration) }),
        ...(o.calibrationMethod === undefined ? {} : { calibrationMethod: o.calibrationMethod as OptimizeVersionOptions["calibrationMethod"] }),
        ...(o.percentile === undefined ? {} : { percentile: number(o.percentile, "--percentile") }),
        ...(o.perChannel === true ? { perChannel: true } : {}),
        ...(o.includeConv === true ? { conv: true } : {}),
        ...(o.fp16 === true ? { fp16: true } : {}),
        ...(o.keepFloat32 === undefined ? {} : { keepFloat32: o.keepFloat32.split(",").map((x) => x.trim()).filter((x) => x !== "") }),
        ...(o.optimizeLevel === undefined ? {} : { level: o.optimizeLevel as OptimizeVersionOptions["level"] }),
        ...(o.validate === undefined ? {} : { validate: path.resolve(ctx.io.cwd, o.validate) }),
        ...(o.labelColumn === undefined ? {} : { labelColumn: o.labelColumn }),
        ...(o.name === undefined ? {} : { name: o.name }),
        ...(o.description === undefined ? {} : { description: o.description }),
        ...(o.dryRun === true ? { dryRun: true } : {}),
      };
      // Loaded on use: the optimizer brings onnxruntime-node into this process, which other commands do not need.
      const { checkOptimizeOptions, optimizeVersion, reportLines } = await import("../optimize/index.js");
      // Flag combinations are checked before the store is opened.
      checkOptimizeOptions(options);
      const app = await ctx.app(o);
      const result = await optimizeVersion(
        { registry: app.registry, artifacts: app.artifacts, stagingRoot: app.paths.staging, user: app.config.user },
        options,
      );
      if (o.json === true) printJson(ctx.io, result);
      else {
        printLine(ctx.io, `parent        ${result.parent.name}@${result.parent.version}`);
        for (const line of reportLines(result.report)) printLine(ctx.io, line);
        if (result.record !== undefined) printLine(ctx.io, `registered    ${result.record.name}@${result.record.version}`);
        else if (!result.refused) printLine(ctx.io, "dry run: nothing registered");
      }
      if (result.refused) {
        throw new MlshipError("MLSHIP_ERR_OPTIMIZE_GATE_FAILED", `optimized model refused, nothing registered: ${result.report.gate.message}`, {
          field: "--max-accuracy-drop",
        });
      }
    });

  return models;
}

function aliasText(model: ModelRecord): string {
  return Object.entries(model.aliases)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([alias, v]) => `${alias}=${v}`)
    .join(", ");
}

function versionCell(v: number | null): string {
  return v === null ? "-" : String(v);
}

function moveText(event: Pick<AliasEvent, "name" | "alias" | "from" | "to">): string {
  const target = `${event.name}@${event.alias}`;
  if (event.to === null) return `${target} removed (was ${versionCell(event.from)})`;
  const was = event.from === null ? "new alias" : `was ${event.from}`;
  return `${target} -> ${event.to} (${was})`;
}

function signatureLines(signature: Signature): string[] {
  const spec = (t: { name: string; dtype: string; shape: number[] }): string =>
    `${t.name} ${t.dtype} [${t.shape.join(",")}]`;
  const lines = [
    `  inputs:  ${signature.inputs.map(spec).join("; ")}`,
    `  outputs: ${signature.outputs.map(spec).join("; ")}`,
  ];
  if (signature.columns !== undefined && signature.columns.length > 0) {
    const names = signature.columns.map((c) => c.name);
    const shown = names.length > 12 ? `${names.slice(0, 12).join(", ")}, ... (${names.length} in all)` : names.join(", ");
    lines.push(`  columns: ${shown}`);
  }
  return lines;
}

function stepsLines(manifest: Manifest): string[] {
  const lines: string[] = [];
  for (const step of manifest.preprocess) {
    const what =
      step.type === "image"
        ? `image ${step.input} -> ${step.target ?? "input"} (${step.width}x${step.height}x${step.channels}, ${step.resize}, ${step.layout})`
        : step.type === "cast"
          ? `cast ${step.dtype}${step.columns === undefined ? "" : ` (${step.columns.join(", ")})`}`
          : `select_columns (${step.columns.length})`;
    lines.push(`  preprocess:  ${what}`);
  }
  for (const step of manifest.postprocess) {
    const extra = step.type === "top_k" ? ` k=${step.k}` : "";
    lines.push(`  postprocess: ${step.type}${extra} ${step.output} -> ${step.as ?? step.output}`);
  }
  return lines;
}

/** `name@version` of a version's `metadata.lineage.parent`, or undefined when it was not derived from one. */
function parentText(v: VersionRecord): string | undefined {
  const parent = v.manifest.metadata.lineage?.parent;
  return parent === undefined ? undefined : `${parent.model}@${parent.version}`;
}

/** The lines of a version's `metadata.lineage` (parent, what derived it, the transform settings); none without it. */
function lineageLines(v: VersionRecord): string[] {
  const lineage = v.manifest.metadata.lineage;
  if (lineage === undefined) return [];
  const lines: string[] = [];
  const parent = parentText(v);
  if (parent !== undefined) {
    const digest = lineage.parent?.digest;
    lines.push(`  parent:  ${parent}${digest === undefined ? "" : ` (digest ${digest})`}`);
  }
  if (lineage.derived_by !== undefined) lines.push(`  derived by: ${lineage.derived_by}`);
  const transform = Object.entries(lineage.transform ?? {})
    .map(([k, x]) => `${k}=${Array.isArray(x) ? `[${x.join("; ")}]` : String(x)}`);
  if (transform.length > 0) lines.push(`  transform: ${transform.join(", ")}`);
  return lines;
}

function showModelText(model: ModelRecord, versions: VersionRecord[], selected: VersionRecord | null): string {
  // The PARENT column appears only when some version was derived from another (e.g. by `models optimize`).
  const derived = versions.some((v) => parentText(v) !== undefined);
  const out = [
    `model        ${model.name}`,
    `description  ${model.description ?? "-"}`,
    `tags         ${formatKv(model.tags) || "-"}`,
    `aliases      ${aliasText(model) || "-"}`,
    `created      ${model.createdAt}`,
    "",
    formatTable(
      ["VERSION", "STATUS", "ALIASES", "CREATED", "BY", "DIGEST", ...(derived ? ["PARENT"] : [])],
      versions.map((v) => [
        String(v.version),
        v.status,
        v.aliases.join(","),
        v.createdAt,
        v.createdBy,
        v.digest.slice(0, 12),
        ...(derived ? [parentText(v) ?? "-"] : []),
      ]),
    ),
  ];
  if (selected !== null) {
    const aliases = selected.aliases.length > 0 ? ` (${selected.aliases.join(", ")})` : "";
    out.push(
      "",
      `version ${selected.version}${aliases}`,
      `  status:  ${selected.status}`,
      `  digest:  ${selected.digest}`,
      `  source:  ${selected.source}`,
      ...lineageLines(selected),
      `  flavor:  ${selected.manifest.flavor}${selected.manifest.metadata.framework === undefined ? "" : ` (${selected.manifest.metadata.framework})`}`,
      `  description: ${selected.description ?? "-"}`,
      `  tags:    ${formatKv(selected.tags) || "-"}`,
      `  metrics: ${formatKv(selected.metrics) || "-"}`,
      "signature:",
      ...signatureLines(selected.manifest.signature),
      ...stepsLines(selected.manifest),
    );
  }
  return out.join("\n");
}
