import { MlshipError, type Logger } from "../core/index.js";
import type { Registry } from "../registry/index.js";
import type { ScoringService } from "../scoring/index.js";
import type { SqlStore } from "../store/index.js";
import { openRowSource } from "./readers.js";
import { runBatch } from "./runner.js";
import { RunStore } from "./runs.js";
import { DEFAULT_PREDICTIONS_TABLE, describeTarget, openSink } from "./sinks.js";
import type { BatchRun, ProgressReporter } from "./types.js";

/** What a batch scoring job needs from the app (a `Mlship` fits). */
export interface ScoreJobDeps {
  readonly config: { readonly home: string; readonly batch: { readonly chunkRows: number }; readonly runtime: { readonly workers: number } };
  readonly store: SqlStore;
  readonly scoring: ScoringService;
  readonly registry?: Registry;
  readonly logger: Logger;
}

export interface ScoreJobOptions {
  /** `name`, `name@alias` or `name@version`. */
  ref: string;
  /** Absolute path of the input file. */
  input: string;
  idColumn: string;
  /** `sqlite` (default), `postgres://...`, or an absolute .parquet/.jsonl path. */
  into?: string;
  /** SQL targets only; default `batch_predictions`. */
  table?: string;
  /** Default `config.batch.chunkRows`. */
  chunkRows?: number;
  shard?: { index: number; count: number };
  /** `required`: continue the last stopped run or fail; `if-any`: continue it when there is one. */
  resume?: "required" | "if-any";
  progress?: ProgressReporter;
  signal?: AbortSignal;
  settings?: Record<string, unknown>;
}

/** True when `target` names a file (Parquet/JSONL) rather than a SQL store. */
export function isFileTarget(target: string | undefined): boolean {
  const described = describeTarget(target);
  return described !== "sqlite" && !/^postgres(ql)?:\/\//i.test(described);
}

/** The run-record fields of a job: how runs of the same job are found again (resume, failure summary). */
function jobIdentity(options: ScoreJobOptions): { target: string; table: string | null } {
  const target = describeTarget(options.into);
  const table = isFileTarget(options.into) ? null : (options.table ?? DEFAULT_PREDICTIONS_TABLE);
  return { target, table };
}

/**
 * One batch scoring run, as `mlship batch score` and the scheduler start it: resolves what to resume, opens the
 * source and sink, runs it. Rethrows the run's error (the failed run is recorded; `failedRunOf` finds it).
 */
export async function scoreJob(deps: ScoreJobDeps, options: ScoreJobOptions): Promise<BatchRun> {
  const chunkRows = options.chunkRows ?? deps.config.batch.chunkRows;
  const { target, table } = jobIdentity(options);
  const runs = new RunStore(deps.store);
  const shard = options.shard ?? null;

  let resume: BatchRun | undefined;
  if (options.resume !== undefined) {
    const model = (await deps.scoring.resolve(options.ref)).version.name;
    resume = await runs.findResumable({ model, input: options.input, target, table, shard });
    if (resume === undefined && options.resume === "required") {
      const last = await runs.latest(model, { table });
      const why =
        last?.status === "running"
          ? `run ${last.id} is still running (heartbeat ${last.heartbeatAt}); a killed run can be resumed 30 s after its last heartbeat`
          : `no failed, interrupted or killed run of ${model} from ${options.input} into ${target}${table === null ? "" : ` table ${table}`}${shard === null ? "" : ` shard ${shard.index}/${shard.count}`}`;
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `nothing to resume: ${why}`, { field: "resume" });
    }
  }

  const source = await openRowSource(options.input, { chunkRows, idColumn: options.idColumn, ...(shard === null ? {} : { shard }) });
  const sink = await openSink(options.into, { store: deps.store, home: deps.config.home, ...(options.table === undefined ? {} : { table: options.table }) });
  return runBatch({
    scoring: deps.scoring,
    ...(deps.registry === undefined ? {} : { registry: deps.registry }),
    runs,
    ref: options.ref,
    source,
    sink,
    idColumn: options.idColumn,
    chunkRows,
    logger: deps.logger,
    input: options.input,
    target,
    table,
    shard,
    parallelism: deps.config.runtime.workers,
    ...(options.progress === undefined ? {} : { progress: options.progress }),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    ...(options.settings === undefined ? {} : { settings: options.settings }),
    ...(resume === undefined ? {} : { resume }),
  });
}

/** The run a failed `scoreJob` recorded (its summary is still worth showing), if it got that far. */
export async function failedRunOf(deps: ScoreJobDeps, options: ScoreJobOptions): Promise<BatchRun | undefined> {
  try {
    const { target, table } = jobIdentity(options);
    const model = (await deps.scoring.resolve(options.ref)).version.name;
    const last = await new RunStore(deps.store).latest(model, { table });
    return last !== undefined && last.status === "failed" && last.input === options.input && last.target === target ? last : undefined;
  } catch {
    return undefined;
  }
}
