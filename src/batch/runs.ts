import { randomUUID } from "node:crypto";
import os from "node:os";
import { sql, type Generated, type Kysely } from "kysely";
import { MlshipError } from "../core/index.js";
import { mapStoreError, type Database, type SqlStore } from "../store/index.js";
import type { BatchReject, BatchRun, RunStatus } from "./types.js";

/** The `batch_runs` table (migration 0006_batch). Type aliases: Kysely's withTables needs index signatures. */
export type BatchRunsTable = {
  id: string;
  model: string;
  version: number;
  ref: string;
  input: string;
  input_fingerprint: string | null;
  target: string;
  target_table: string | null;
  id_column: string;
  shard_index: number | null;
  shard_count: number | null;
  status: string;
  rows_in: number;
  rows_out: number;
  rows_rejected: number;
  started_at: string;
  heartbeat_at: string;
  ended_at: string | null;
  error: string | null;
  settings: string;
};

export type BatchRejectsTable = {
  id: Generated<number>;
  run_id: string;
  row_number: number;
  row_id: string | null;
  field: string | null;
  reason: string;
  created_at: string;
};

type BatchTables = {
  batch_runs: BatchRunsTable;
  batch_rejects: BatchRejectsTable;
};

type BatchDb = Kysely<Database & BatchTables>;

/** A running run whose heartbeat is older than this was killed (the runner beats at least once per chunk). */
export const STALE_HEARTBEAT_MS = 30_000;

export interface StartRunInput {
  model: string;
  version: number;
  ref: string;
  input: string;
  target: string;
  targetTable: string | null;
  idColumn: string;
  shard?: { index: number; count: number } | null;
  settings?: Record<string, unknown>;
  /** Default: a random UUID. */
  id?: string;
  now?: Date;
}

export interface RunCounters {
  rowsIn: number;
  rowsOut: number;
  rowsRejected: number;
}

export interface ListRunsOptions {
  model?: string;
  /** Only runs in this status. */
  status?: RunStatus;
  /** Most recent first; default 20. */
  limit?: number;
}

export interface ResumableQuery {
  model: string;
  input: string;
  target: string;
  table: string | null;
  /** The shard the run scored: shards of one input are separate runs. Default: unsharded. */
  shard?: { index: number; count: number } | null;
  now?: Date;
}

/** Which process runs a run: kept in its settings, so a killed run on this machine is known at once. */
interface RunOwner {
  pid: number;
  host: string;
}

function currentOwner(): RunOwner {
  return { pid: process.pid, host: os.hostname() };
}

/**
 * Whether the process that ran `run` is gone: only answerable on the machine it ran on (otherwise undefined, and
 * the heartbeat decides).
 */
function ownerGone(run: BatchRun): boolean | undefined {
  const owner = run.settings.owner as Partial<RunOwner> | undefined;
  if (owner === undefined || typeof owner.pid !== "number" || owner.host !== os.hostname()) return undefined;
  if (owner.pid === process.pid) return false;
  try {
    process.kill(owner.pid, 0);
    return false;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === "ESRCH";
  }
}

function toRun(row: BatchRunsTable): BatchRun {
  let settings: Record<string, unknown> = {};
  try {
    settings = JSON.parse(row.settings) as Record<string, unknown>;
  } catch {
    // A run's settings are informative only; unreadable ones must not hide the run.
  }
  return {
    id: row.id,
    model: row.model,
    version: Number(row.version),
    ref: row.ref,
    input: row.input,
    inputFingerprint: row.input_fingerprint,
    target: row.target,
    targetTable: row.target_table,
    idColumn: row.id_column,
    shard: row.shard_index === null || row.shard_count === null ? null : { index: Number(row.shard_index), count: Number(row.shard_count) },
    status: row.status as RunStatus,
    rowsIn: Number(row.rows_in),
    rowsOut: Number(row.rows_out),
    rowsRejected: Number(row.rows_rejected),
    startedAt: row.started_at,
    heartbeatAt: row.heartbeat_at,
    endedAt: row.ended_at,
    error: row.error,
    settings,
  };
}

/**
 * Batch runs and their rejected rows in the metadata store (SQLite or PostgreSQL). A run is `running` from `start`
 * until `finish`/`fail`/`interrupt`; its heartbeat moves with every progress update, so a run whose process was
 * killed shows as a `running` run with an old heartbeat, which `findResumable` offers for `--resume`.
 */
export class RunStore {
  constructor(readonly store: SqlStore) {}

  get #db(): BatchDb {
    return this.store.db.withTables<BatchTables>();
  }

  async start(input: StartRunInput): Promise<BatchRun> {
    const at = (input.now ?? new Date()).toISOString();
    const row: BatchRunsTable = {
      id: input.id ?? randomUUID(),
      model: input.model,
      version: input.version,
      ref: input.ref,
      input: input.input,
      input_fingerprint: null,
      target: input.target,
      target_table: input.targetTable,
      id_column: input.idColumn,
      shard_index: input.shard?.index ?? null,
      shard_count: input.shard?.count ?? null,
      status: "running",
      rows_in: 0,
      rows_out: 0,
      rows_rejected: 0,
      started_at: at,
      heartbeat_at: at,
      ended_at: null,
      error: null,
      settings: JSON.stringify({ ...input.settings, owner: currentOwner() }),
    };
    await this.store.write(async (trx) => {
      await trx.withTables<BatchTables>().insertInto("batch_runs").values(row).execute();
    });
    return toRun(row);
  }

  /** Marks a stopped run `running` again (same id, counters kept) for `--resume`. */
  async reopen(id: string, now = new Date()): Promise<BatchRun> {
    const before = await this.#must(id);
    await this.#update(id, {
      status: "running",
      heartbeat_at: now.toISOString(),
      ended_at: null,
      error: null,
      settings: JSON.stringify({ ...before.settings, owner: currentOwner() }),
    });
    return this.#must(id);
  }

  /** Stores the counters so far and moves the heartbeat. */
  async progress(id: string, counters: RunCounters, now = new Date()): Promise<void> {
    await this.#update(id, {
      rows_in: counters.rowsIn,
      rows_out: counters.rowsOut,
      rows_rejected: counters.rowsRejected,
      heartbeat_at: now.toISOString(),
    });
  }

  async finish(id: string, counters: RunCounters, fingerprint: string | null, now = new Date()): Promise<BatchRun> {
    return this.#end(id, "succeeded", counters, null, fingerprint, now);
  }

  async fail(id: string, counters: RunCounters, error: string, now = new Date()): Promise<BatchRun> {
    return this.#end(id, "failed", counters, error, null, now);
  }

  async interrupt(id: string, counters: RunCounters, now = new Date()): Promise<BatchRun> {
    return this.#end(id, "interrupted", counters, "interrupted", null, now);
  }

  /** Records rejected rows; a row already rejected by this run (a resumed run re-reads it) is left as it is. */
  async reject(rejects: readonly BatchReject[], now = new Date()): Promise<void> {
    if (rejects.length === 0) return;
    const createdAt = now.toISOString();
    const rows = rejects.map((r) => ({
      run_id: r.runId,
      row_number: r.rowNumber,
      row_id: r.rowId,
      field: r.field,
      reason: r.reason,
      created_at: createdAt,
    }));
    await this.store.write(async (trx) => {
      // Bounded statements: PostgreSQL allows 65535 parameters, SQLite 32766.
      for (let i = 0; i < rows.length; i += 500) {
        await trx
          .withTables<BatchTables>()
          .insertInto("batch_rejects")
          .values(rows.slice(i, i + 500))
          .onConflict((oc) => oc.columns(["run_id", "row_number"]).doNothing())
          .execute();
      }
    });
  }

  async get(id: string): Promise<BatchRun | undefined> {
    const row = await this.#read(() => this.#db.selectFrom("batch_runs").selectAll().where("id", "=", id).executeTakeFirst());
    return row === undefined ? undefined : toRun(row);
  }

  /** Runs, most recent first. */
  async list(options: ListRunsOptions = {}): Promise<BatchRun[]> {
    const rows = await this.#read(() => {
      let query = this.#db.selectFrom("batch_runs").selectAll();
      if (options.model !== undefined) query = query.where("model", "=", options.model);
      if (options.status !== undefined) query = query.where("status", "=", options.status);
      return query.orderBy("started_at", "desc").orderBy("id", "desc").limit(options.limit ?? 20).execute();
    });
    return rows.map(toRun);
  }

  /** The most recent run of a model (and table, when given), or of any status `status`. */
  async latest(model: string, options: { table?: string | null; status?: RunStatus } = {}): Promise<BatchRun | undefined> {
    const row = await this.#read(() => {
      let query = this.#db.selectFrom("batch_runs").selectAll().where("model", "=", model);
      if (options.table !== undefined) query = options.table === null ? query.where("target_table", "is", null) : query.where("target_table", "=", options.table);
      if (options.status !== undefined) query = query.where("status", "=", options.status);
      return query.orderBy("started_at", "desc").orderBy("id", "desc").limit(1).executeTakeFirst();
    });
    return row === undefined ? undefined : toRun(row);
  }

  /**
   * The latest run of the same model, input, target, table and shard that stopped before its end: failed, interrupted,
   * or still `running` while its process is gone: a heartbeat older than 30 s, or (on the machine that ran it) a
   * process id that no longer exists. A live run is never offered.
   */
  async findResumable(query: ResumableQuery): Promise<BatchRun | undefined> {
    const staleBefore = new Date((query.now ?? new Date()).getTime() - STALE_HEARTBEAT_MS).toISOString();
    const row = await this.#read(() => {
      let q = this.#db
        .selectFrom("batch_runs")
        .selectAll()
        .where("model", "=", query.model)
        .where("input", "=", query.input)
        .where("target", "=", query.target);
      q = query.table === null ? q.where("target_table", "is", null) : q.where("target_table", "=", query.table);
      const shard = query.shard ?? null;
      q = shard === null ? q.where("shard_count", "is", null) : q.where("shard_index", "=", shard.index).where("shard_count", "=", shard.count);
      return q.orderBy("started_at", "desc").orderBy("id", "desc").limit(1).executeTakeFirst();
    });
    if (row === undefined) return undefined;
    const run = toRun(row);
    if (run.status === "failed" || run.status === "interrupted") return run;
    if (run.status === "running" && (run.heartbeatAt < staleBefore || ownerGone(run) === true)) return run;
    return undefined;
  }

  async rejects(runId: string, options: { limit?: number } = {}): Promise<BatchReject[]> {
    const rows = await this.#read(() =>
      this.#db
        .selectFrom("batch_rejects")
        .select(["run_id", "row_number", "row_id", "field", "reason"])
        .where("run_id", "=", runId)
        .orderBy("row_number")
        .limit(options.limit ?? 1000)
        .execute(),
    );
    return rows.map((r) => ({ runId: r.run_id, rowNumber: Number(r.row_number), rowId: r.row_id, field: r.field, reason: r.reason }));
  }

  /** Rejected rows of a run (all of them, not only the listed ones). */
  async countRejects(runId: string): Promise<number> {
    const row = await this.#read(() =>
      this.#db
        .selectFrom("batch_rejects")
        .select(sql<number | string>`count(*)`.as("n"))
        .where("run_id", "=", runId)
        .executeTakeFirst(),
    );
    return Number(row?.n ?? 0);
  }

  async #end(
    id: string,
    status: RunStatus,
    counters: RunCounters,
    error: string | null,
    fingerprint: string | null,
    now: Date,
  ): Promise<BatchRun> {
    const at = now.toISOString();
    await this.#update(id, {
      status,
      rows_in: counters.rowsIn,
      rows_out: counters.rowsOut,
      rows_rejected: counters.rowsRejected,
      heartbeat_at: at,
      ended_at: at,
      error,
      ...(fingerprint === null ? {} : { input_fingerprint: fingerprint }),
    });
    return this.#must(id);
  }

  async #update(id: string, values: Partial<BatchRunsTable>): Promise<void> {
    const result = await this.store.write(async (trx) =>
      trx.withTables<BatchTables>().updateTable("batch_runs").set(values).where("id", "=", id).executeTakeFirst(),
    );
    if (Number(result.numUpdatedRows) === 0) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `no batch run ${id}`, { field: "run" });
    }
  }

  async #must(id: string): Promise<BatchRun> {
    const run = await this.get(id);
    if (run === undefined) throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `no batch run ${id}`, { field: "run" });
    return run;
  }

  async #read<T>(query: () => Promise<T>): Promise<T> {
    try {
      return await query();
    } catch (error) {
      throw mapStoreError(this.store.location, error);
    }
  }
}
