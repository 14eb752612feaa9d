import fs from "node:fs/promises";
import path from "node:path";
import { Command } from "commander";
import { MlshipError } from "../core/index.js";
import { formatMlflowResponse, formatV2Response, type ScoringInput } from "../scoring/index.js";
import { usageError } from "./args.js";
import type { CliContext, GlobalOptions } from "./context.js";
import { printJson } from "./io.js";

/** The V2 form is an `inputs` list of tensor objects; everything else JSON goes through the MLflow parser. */
export function isV2Body(body: unknown): boolean {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return false;
  const inputs = (body as { inputs?: unknown }).inputs;
  return (
    Array.isArray(inputs) &&
    inputs.length > 0 &&
    inputs.every(
      (t) => typeof t === "object" && t !== null && typeof (t as { datatype?: unknown }).datatype === "string",
    )
  );
}

/** Reads a request file the way the server would receive it: `.csv` as MLflow CSV, `.json` as V2 or MLflow JSON. */
export async function readInputFile(file: string): Promise<ScoringInput> {
  const ext = path.extname(file).toLowerCase();
  if (ext !== ".json" && ext !== ".csv") {
    throw usageError(`--input ${file}: use a .json or .csv file`, "--input");
  }
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (error) {
    throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", `input file ${file} cannot be read: ${describeFsError(error)}`, {
      field: "--input",
      cause: error,
    });
  }
  if (ext === ".csv") return { kind: "csv", text };
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new MlshipError("MLSHIP_ERR_INPUT_JSON", `input file ${file} is not valid JSON: ${reason}`, {
      field: "--input",
    });
  }
  return isV2Body(body) ? { kind: "v2", body } : { kind: "mlflow", body };
}

function describeFsError(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  if (code === "ENOENT") return "no such file";
  if (code === "EISDIR") return "it is a folder";
  if (code === "EACCES") return "permission denied";
  return error instanceof Error ? error.message : String(error);
}

export function predictCommand(ctx: CliContext): Command {
  return new Command("predict")
    .description("score a JSON (MLflow or V2 form) or CSV file with a registered model, in-process")
    .argument("<ref>", "name, name@3, name@production or models:/name@production")
    .requiredOption("-i, --input <file>", "request file: .json (dataframe_split, dataframe_records, instances, inputs, or V2 tensors) or .csv")
    .option("-o, --output <file>", "write the predictions JSON here instead of stdout")
    .option("--workers <n>", "inference worker threads")
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const o = cmd.optsWithGlobals<GlobalOptions & { input: string; output?: string; workers?: string }>();
      const input = await readInputFile(path.resolve(ctx.io.cwd, o.input));
      // Scoring one file needs one worker; more only costs start-up time.
      const app = await ctx.app(o, { "runtime.workers": o.workers }, { "runtime.workers": 1 });
      const result = await app.scoring.score(ref, input, { protocol: "cli" });
      const response = input.kind === "v2" ? formatV2Response(result) : formatMlflowResponse(result);
      if (o.output === undefined) return printJson(ctx.io, response);
      const out = path.resolve(ctx.io.cwd, o.output);
      await fs.writeFile(out, `${JSON.stringify(response)}\n`);
      ctx.logger.info({ output: out, model: result.model, version: result.version, rows: result.rows }, "predictions written");
    });
}
