import fs from "node:fs";
import { fileURLToPath } from "node:url";
import { Command, CommanderError } from "commander";
import { toMlshipError, type MlshipError } from "../core/index.js";
import { CliContext } from "./context.js";
import { configCommand } from "./config-command.js";
import { deploymentsCommand } from "./deployments.js";
import { defaultIo, type CliIo } from "./io.js";
import { batchCommand } from "./batch.js";
import { batchStatusCommand } from "./batch-status.js";
import { feedbackCommand } from "./feedback.js";
import { modelsCommand } from "./models.js";
import { monitorCommand } from "./monitor.js";
import { packageCommand } from "./package.js";
import { predictCommand } from "./predict.js";
import { promoteCommand } from "./promote.js";
import { auditCommand, rolloutCommand } from "./rollout.js";
import { quickstartCommand, serveCommand } from "./serve.js";
import { streamCommand } from "./stream.js";

/** Exit codes: 0 success, 1 a command failed, 2 the command line itself was wrong. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

function packageVersion(): string {
  try {
    const file = fileURLToPath(new URL("../../package.json", import.meta.url));
    const parsed = JSON.parse(fs.readFileSync(file, "utf8")) as { version?: unknown };
    return typeof parsed.version === "string" ? parsed.version : "0.0.0";
  } catch {
    return "0.0.0";
  }
}

export function buildProgram(ctx: CliContext): Command {
  const program = new Command("mlship");
  // Settings before any subcommand is added: subcommands copy them when they are created.
  program
    .exitOverride()
    .configureOutput({
      writeOut: (text) => void ctx.io.stdout.write(text),
      writeErr: (text) => void ctx.io.stderr.write(text),
      // Errors are printed once, by main, in the `mlship: <message> [<code>]` form.
      outputError: () => undefined,
    })
    .showSuggestionAfterError(true);

  program
    .description("take a trained ML model to production: registry, ONNX runtime, REST serving")
    .version(packageVersion(), "-V, --version", "print the mlship version")
    .option("-c, --config <file>", "config file (default ./mlship.config.yaml if present)")
    .option("--home <dir>", "mlship home folder (env MLSHIP_HOME, default ./.mlship)")
    .option("--store <url>", "metadata store: postgres://... or sqlite:<file> (env MLSHIP_STORE)")
    .option("--user <name>", "who changes are attributed to (env MLSHIP_USER)")
    .option("--log-level <level>", "fatal|error|warn|info|debug|trace|silent (env MLSHIP_LOG_LEVEL)")
    .addHelpText(
      "after",
      [
        "",
        "Examples:",
        "  mlship quickstart                                  register the example models and serve them",
        "  mlship models register ./my-model --name iris --alias production",
        "  mlship predict iris@production --input rows.csv",
        "  mlship serve --port 8080 --model iris@production",
        "",
        "Exit codes: 0 ok, 1 the command failed, 2 bad command line. Errors print one line on stderr:",
        "  mlship: <message> [<code>]",
        "Docs: docs/cli.md, docs/config.md",
      ].join("\n"),
    );

  program.addCommand(modelsCommand(ctx).addCommand(promoteCommand(ctx)));
  program.addCommand(predictCommand(ctx));
  program.addCommand(monitorCommand(ctx));
  program.addCommand(batchCommand(ctx).addCommand(batchStatusCommand(ctx)));
  program.addCommand(streamCommand(ctx));
  program.addCommand(feedbackCommand(ctx));
  program.addCommand(rolloutCommand(ctx));
  program.addCommand(auditCommand(ctx));
  program.addCommand(deploymentsCommand(ctx));
  program.addCommand(serveCommand(ctx));
  program.addCommand(quickstartCommand(ctx));
  program.addCommand(configCommand(ctx));
  program.addCommand(packageCommand(ctx));
  // addCommand does not copy settings; apply them to the whole tree.
  const apply = (cmd: Command): void => {
    cmd.exitOverride();
    // --home, --store, --config ... work after any command; say so in its help.
    cmd.configureHelp({ showGlobalOptions: true });
    cmd.configureOutput(program.configureOutput());
    cmd.showSuggestionAfterError(true);
    cmd.commands.forEach(apply);
  };
  program.commands.forEach(apply);
  return program;
}

/**
 * Runs the CLI and returns the exit code. Never calls process.exit: the bin sets process.exitCode, tests read it.
 * `argv` is process.argv-shaped (node, script, ...args).
 */
export async function main(argv: readonly string[], io: Partial<CliIo> = {}): Promise<number> {
  const fullIo: CliIo = { ...defaultIo(), ...io };
  const ctx = new CliContext(fullIo);
  const program = buildProgram(ctx);
  let code = EXIT_OK;
  try {
    await program.parseAsync([...argv], { from: "node" });
  } catch (error) {
    code = report(fullIo, error);
  } finally {
    try {
      await ctx.close();
    } catch (error) {
      if (code === EXIT_OK) code = report(fullIo, error);
    }
  }
  return code;
}

function report(io: CliIo, error: unknown): number {
  if (error instanceof CommanderError) {
    // --help and --version end with a CommanderError too; they are successes.
    if (error.exitCode === 0) return EXIT_OK;
    if (error.code === "commander.help" || error.code === "commander.executeSubCommandAsync") return EXIT_USAGE;
    const message = error.message.replace(/^error:\s*/i, "").replace(/\n+/g, " ").trim();
    io.stderr.write(`mlship: ${message} (see --help) [MLSHIP_ERR_CLI_USAGE]\n`);
    return EXIT_USAGE;
  }
  const mlshipError: MlshipError = toMlshipError(error);
  const message = mlshipError.message.replace(/\s*\n\s*/g, " ").trim();
  io.stderr.write(`mlship: ${message} [${mlshipError.code}]\n`);
  // A command that needs its own exit status (an interrupted batch run: 130) says so on the error.
  const own = (mlshipError as MlshipError & { exitCode?: unknown }).exitCode;
  if (typeof own === "number") return own;
  return mlshipError.code === "MLSHIP_ERR_CLI_USAGE" ? EXIT_USAGE : EXIT_FAILURE;
}
