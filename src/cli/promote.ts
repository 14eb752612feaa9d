import path from "node:path";
import { Command } from "commander";
import { isMlshipError } from "../core/index.js";
import { computeQuality, feedbackSpecOf } from "../feedback/index.js";
import { parseMargins, parseRequirement, promoteVersion } from "../rollout/index.js";
import type { GateResult, GateSpec, PromoteVersionResult } from "../rollout/index.js";
import { collect, parseVersion, usageError } from "./args.js";
import type { CliContext, GlobalOptions } from "./context.js";
import { printJson, printLine } from "./io.js";

interface PromoteFlags extends GlobalOptions {
  alias: string;
  holdout?: string;
  label?: string;
  require?: string[];
  margin?: string[];
  canary?: string;
  json?: boolean;
  reason?: string;
}

/** A parse error of --require / --margin is a bad command line (exit 2), naming the flag. */
function asUsage<T>(flag: string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    if (isMlshipError(error) && error.code === "MLSHIP_ERR_INPUT_INVALID") throw usageError(`${flag}: ${error.message}`, flag);
    throw error;
  }
}

function parsePercent(text: string): number {
  const percent = Number(text);
  if (text.trim() === "" || !Number.isFinite(percent) || percent <= 0 || percent > 100) throw usageError(`--canary must be a percentage above 0 and up to 100, got "${text}"`, "--canary");
  return percent;
}

function gateText(result: GateResult, spec: GateSpec, alias: string): string[] {
  const against = result.current === null ? `no other version on '${alias}' to compare with` : `compared with version ${result.current} ('${alias}')`;
  return [
    `gate for ${result.model}@${result.candidate} on ${spec.holdout} (${result.rows} rows), ${against}:`,
    ...result.checks.map((c) => `  ${c.check}`),
    `gate ${result.passed ? "passed" : "failed"}`,
  ];
}

/**
 * `mlship models promote NAME VERSION`: moves an alias (default production) to VERSION, after a gate on a labelled
 * holdout file when --holdout is given; with --canary PCT it starts a canary rollout of VERSION instead.
 */
export function promoteCommand(ctx: CliContext): Command {
  return new Command("promote")
    .description("promote VERSION to an alias (default production): straight away, after a gate on a holdout file (--holdout), or as a canary (--canary PCT)")
    .argument("<name>", "model name")
    .argument("<version>", "version number")
    .option("--alias <alias>", "the alias to promote to", "production")
    .option("--holdout <file>", "labelled data (.csv, .jsonl, .parquet) the version must pass a gate on first")
    .option("--label <column>", "the holdout's label column (default: label, target, y or actual)")
    .option("--require <rule>", 'a gate requirement such as "accuracy>=0.9" (repeatable)', collect)
    .option("--margin <metric=value>", "largest allowed regression against the alias's current version, e.g. accuracy=0.01 (repeatable)", collect)
    .option("--canary <pct>", "start a canary rollout with this share of the alias's traffic instead of moving the alias")
    .option("--reason <text>", "why (recorded in the alias history and the audit log)")
    .option("--json", "print the gate result, the alias move or the rollout as JSON")
    .addHelpText(
      "after",
      [
        "",
        "Examples:",
        '  mlship models promote breast-cancer 2 --holdout holdout.csv --require "accuracy>=0.9" --margin accuracy=0.01',
        "  mlship models promote breast-cancer 2 --canary 10 --reason \"retrained on May data\"",
        "",
        "A gate without --require or --margin asks that the version is not worse than the alias's current one",
        "(accuracy, or rmse for regression). A failed gate prints its checks and exits 1.",
      ].join("\n"),
    )
    .action(async (name: string, versionText: string, _opts: unknown, cmd: Command) => {
      const o = cmd.optsWithGlobals<PromoteFlags>();
      const version = parseVersion(versionText);
      if (o.holdout === undefined) {
        for (const [flag, value] of [["--label", o.label], ["--require", o.require], ["--margin", o.margin]] as const) {
          if (value !== undefined) throw usageError(`${flag} needs --holdout FILE`, flag);
        }
      }
      const percent = o.canary === undefined ? undefined : parsePercent(o.canary);
      const spec: GateSpec | undefined =
        o.holdout === undefined
          ? undefined
          : {
              holdout: path.resolve(ctx.io.cwd, o.holdout),
              ...(o.label === undefined ? {} : { labelColumn: o.label }),
              require: asUsage("--require", () => (o.require ?? []).map(parseRequirement)),
              margin: asUsage("--margin", () => parseMargins(o.margin ?? [])),
            };

      const app = await ctx.app(o, {}, { "runtime.workers": 1 });
      const deps = { rollouts: app.rollouts, registry: app.registry, scoring: app.scoring, computeQuality, specOf: feedbackSpecOf };
      let out: PromoteVersionResult;
      try {
        out = await promoteVersion(deps, {
          model: name,
          version,
          alias: o.alias,
          ...(spec === undefined ? {} : { gate: spec }),
          ...(percent === undefined ? {} : { canaryPercent: percent }),
          by: app.config.user,
          ...(o.reason === undefined ? {} : { reason: o.reason }),
        });
      } catch (error) {
        // A failed gate prints its checks (or the JSON answer) before the error line and exit 1.
        if (isMlshipError(error) && error.code === "MLSHIP_ERR_ROLLOUT_GATE_FAILED" && spec !== undefined) {
          const result = error.details as unknown as GateResult;
          if (o.json === true) printJson(ctx.io, { gate: result, alias: null, rollout: null });
          else for (const line of gateText(result, spec, o.alias)) printLine(ctx.io, line);
        }
        throw error;
      }
      if (o.json !== true) {
        if (out.gate !== null && spec !== undefined) for (const line of gateText(out.gate, spec, o.alias)) printLine(ctx.io, line);
        if (out.rollout !== null) {
          const r = out.rollout;
          printLine(ctx.io, `canary ${r.id} started: ${name}@${r.challenger} gets ${r.percent}% of ${name}@${r.alias} traffic (champion ${r.champion})`);
        }
        if (out.alias !== null) {
          const e = out.alias;
          printLine(ctx.io, `${name}@${o.alias} -> ${version} (${e.from === null ? "new alias" : `was ${e.from}`})`);
        }
      }
      if (o.json === true) printJson(ctx.io, out);
    });
}
