import { randomUUID } from "node:crypto";
import os from "node:os";
import { Cron } from "croner";
import type { Kysely } from "kysely";
import { MlshipError, toMlshipError } from "../core/index.js";
import type { Alert } from "../monitor/index.js";
import { mapStoreError, type Database, type SqlStore } from "../store/index.js";
import { isFileTarget, scoreJob, type ScoreJobDeps } from "./job.js";
import { DEFAULT_PREDICTIONS_TABLE, describeTarget } from "./sinks.js";
import type { BatchRun } from "./types.js";

/**
 * `batch_schedules`, created on first use until a migration owns it. The last run is kept on the row: it is what
 * "due" is computed from, and it moves in the same transaction that takes the lock.
 */
type BatchSchedulesTable = {
  name: string;
  ref: string;
  input: string;
  id_column: string;
  target: string | null;
  target_table: string | null;
  cron: string;
  timezone: string | null;
  max_age_ms: number | null;
  created_at: string;
  created_by: string;
  enabled: number;
  last_run_id: string | null;
  last_started_at: string | null;
  last_ended_at: string | null;
  last_status: string | null;
  last_error: string | null;
};

type BatchLocksTable = { name: string; holder: string; acquired_at: string; expires_at: string };

type ScheduleTables = { batch_schedules: BatchSchedulesTable; batch_locks: BatchLocksTable };
type ScheduleDb = Kysely<Database & ScheduleTables>;

export interface ScheduleInput {
  name: string;
  ref: string;
  /** Absolute path of the input file. */
  input: string;
  idColumn: string;
  /** `sqlite` when absent, `postgres://...`, or an absolute .parquet/.jsonl path. */
  into?: string | null;
  table?: string | null;
  cron: string;
  timezone?: string | null;
  /** How old this schedule's predictions may get before they are stale; null: config `batch.maxAgeMs`. */
  maxAgeMs?: number | null;
  createdBy?: string;
  /** Default: a new schedule is enabled, a replaced one keeps its state. */
  enabled?: boolean;
}

export interface ScheduleLastRun {
  runId: string | null;
  startedAt: string;
  endedAt: string | null;
  /** `running`, `succeeded`, `failed`, `interrupted`... (a batch run status, or `failed` when no run could start). */
  status: string;
  error: string | null;
}

export interface BatchSchedule {
  name: string;
  ref: string;
  input: string;
  idColumn: string;
  into: string | null;
  table: string | null;
  cron: string;
  timezone: string | null;
  maxAgeMs: number | null;
  createdAt: string;
  createdBy: string;
  enabled: boolean;
  lastRun: ScheduleLastRun | null;
}

export interface ScheduleHealth {
  name: string;
  /** The next fire time after the last run started (or after creation): in the past when the run is owed. */
  due: Date | null;
  lastRun: ScheduleLastRun | null;
  /** A fire time passed more than the grace period ago and no run started since. */
  late: boolean;
  /** The last run failed. */
  failed: boolean;
}

const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** A fire time may pass this long before a run that has not started counts as late (at least). */
export const MIN_LATE_GRACE_MS = 15 * 60_000;
export const DEFAULT_CHECK_MS = 15_000;
/** A lock outlives a silent holder this long; a running scheduler renews it every third of that. */
export const SCHEDULE_LOCK_TTL_MS = 5 * 60_000;

function cronOf(expr: string, timezone: string | null | undefined, field = "cron"): Cron {
  try {
    return new Cron(expr, { paused: true, ...(timezone === null || timezone === undefined ? {} : { timezone }) });
  } catch (error) {
    const what = timezone !== null && timezone !== undefined && field === "cron" ? `cron "${expr}" with timezone "${timezone}"` : `cron "${expr}"`;
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `invalid ${what}: ${(error as Error).message}`, { field });
  }
}

/** Checks a schedule's cron expression and timezone; throws MLSHIP_ERR_INPUT_INVALID naming the bad one. */
export function validateSchedule(input: Pick<ScheduleInput, "name" | "cron" | "timezone">): void {
  if (!NAME_PATTERN.test(input.name)) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `schedule name must be letters, digits, '.', '_' or '-' (at most 128), got "${input.name}"`, { field: "name" });
  }
  if (input.timezone !== null && input.timezone !== undefined) {
    try {
      new Intl.DateTimeFormat("en-US", { timeZone: input.timezone });
    } catch {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `unknown timezone "${input.timezone}" (an IANA name like Europe/Paris)`, { field: "timezone" });
    }
  }
  cronOf(input.cron, input.timezone);
}

/** The first fire time strictly after `after`. */
export function nextFire(schedule: Pick<BatchSchedule, "cron" | "timezone">, after: Date): Date | null {
  return cronOf(schedule.cron, schedule.timezone).nextRun(after);
}

function toSchedule(row: BatchSchedulesTable): BatchSchedule {
  return {
    name: row.name,
    ref: row.ref,
    input: row.input,
    idColumn: row.id_column,
    into: row.target,
    table: row.target_table,
    cron: row.cron,
    timezone: row.timezone,
    maxAgeMs: row.max_age_ms === null ? null : Number(row.max_age_ms),
    createdAt: row.created_at,
    createdBy: row.created_by,
    enabled: Number(row.enabled) !== 0,
    lastRun:
      row.last_started_at === null
        ? null
        : { runId: row.last_run_id, startedAt: row.last_started_at, endedAt: row.last_ended_at, status: row.last_status ?? "running", error: row.last_error },
  };
}

/** When the schedule owes its next run from: its last run's start, else its creation. */
function anchorOf(schedule: BatchSchedule): Date {
  return new Date(schedule.lastRun?.startedAt ?? schedule.createdAt);
}

/** Schedules and their locks in the metadata store. */
export class ScheduleStore {
  readonly #store: SqlStore;

  constructor(store: SqlStore) {
    this.#store = store;
  }

  get #db(): ScheduleDb {
    return this.#store.db.withTables<ScheduleTables>();
  }

  /** Creates `batch_schedules` when missing (until a migration does). */
  async #read<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw mapStoreError(this.#store.location, error);
    }
  }

  async #write<T>(fn: (db: ScheduleDb) => Promise<T>): Promise<T> {
    try {
      return await this.#store.write((db) => fn(db.withTables<ScheduleTables>()));
    } catch (error) {
      throw mapStoreError(this.#store.location, error);
    }
  }

  /**
   * Stores a schedule, replacing one of the same name (its last run is kept, so a replaced schedule does not rerun at
   * once; so is its enabled state unless `enabled` is given).
   */
  async put(input: ScheduleInput, now = new Date()): Promise<BatchSchedule> {
    validateSchedule(input);
    if (input.maxAgeMs !== null && input.maxAgeMs !== undefined && (!Number.isSafeInteger(input.maxAgeMs) || input.maxAgeMs <= 0)) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `max age must be a positive whole number of milliseconds, got ${input.maxAgeMs}`, { field: "maxAgeMs" });
    }
    const row = {
      name: input.name,
      ref: input.ref,
      input: input.input,
      id_column: input.idColumn,
      target: input.into ?? null,
      target_table: input.table ?? null,
      cron: input.cron,
      timezone: input.timezone ?? null,
      max_age_ms: input.maxAgeMs ?? null,
      created_at: now.toISOString(),
      created_by: input.createdBy ?? "unknown",
      enabled: input.enabled === false ? 0 : 1,
    };
    await this.#write(async (db) => {
      const { name: _name, enabled, ...rest } = row;
      const update = input.enabled === undefined ? rest : { ...rest, enabled };
      await db.insertInto("batch_schedules").values(row).onConflict((oc) => oc.column("name").doUpdateSet(update)).execute();
    });
    return (await this.get(input.name)) as BatchSchedule;
  }

  /**
   * Turns a schedule off (it never fires, is never late and raises no alerts) or on again, keeping it and its last
   * run. Undefined when there is no such schedule. A schedule enabled after fire times passed while it was off runs
   * once at the next check, as after a scheduler outage.
   */
  async setEnabled(name: string, enabled: boolean): Promise<BatchSchedule | undefined> {
    const updated = await this.#write(async (db) => {
      const result = await db.updateTable("batch_schedules").set({ enabled: enabled ? 1 : 0 }).where("name", "=", name).executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    });
    return updated ? this.get(name) : undefined;
  }

  async get(name: string): Promise<BatchSchedule | undefined> {
    const row = await this.#read(() => this.#db.selectFrom("batch_schedules").selectAll().where("name", "=", name).executeTakeFirst());
    return row === undefined ? undefined : toSchedule(row);
  }

  async list(): Promise<BatchSchedule[]> {
    const rows = await this.#read(() => this.#db.selectFrom("batch_schedules").selectAll().orderBy("name").execute());
    return rows.map(toSchedule);
  }

  /** False when there was no such schedule. */
  async remove(name: string): Promise<boolean> {
    return this.#write(async (db) => {
      const result = await db.deleteFrom("batch_schedules").where("name", "=", name).executeTakeFirst();
      await db.deleteFrom("batch_locks").where("name", "=", lockName(name)).execute();
      return Number(result.numDeletedRows) > 0;
    });
  }

  /**
   * In one transaction: checks the schedule is still due, takes its lock (new, expired, or already `holder`'s) and
   * records the run's start, which moves what "due" is computed from. Of several schedulers on one store, one wins.
   */
  async claim(name: string, holder: string, now: Date, ttlMs = SCHEDULE_LOCK_TTL_MS): Promise<BatchSchedule | undefined> {
    return this.#write(async (db) => {
      const row = await db.selectFrom("batch_schedules").selectAll().where("name", "=", name).executeTakeFirst();
      if (row === undefined || Number(row.enabled) === 0) return undefined;
      const schedule = toSchedule(row);
      const due = nextFire(schedule, anchorOf(schedule));
      if (due === null || due.getTime() > now.getTime()) return undefined;
      if (!(await takeLock(db, lockName(name), holder, now, ttlMs))) return undefined;
      const startedAt = now.toISOString();
      await db
        .updateTable("batch_schedules")
        .set({ last_run_id: null, last_started_at: startedAt, last_ended_at: null, last_status: "running", last_error: null })
        .where("name", "=", name)
        .execute();
      return { ...schedule, lastRun: { runId: null, startedAt, endedAt: null, status: "running", error: null } };
    });
  }

  /** Pushes the lock's expiry on; false when `holder` lost it. */
  async renew(name: string, holder: string, now: Date, ttlMs = SCHEDULE_LOCK_TTL_MS): Promise<boolean> {
    return this.#write(async (db) => {
      const result = await db
        .updateTable("batch_locks")
        .set({ expires_at: new Date(now.getTime() + ttlMs).toISOString() })
        .where("name", "=", lockName(name))
        .where("holder", "=", holder)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    });
  }

  /** Records how the run ended and releases the lock, in one transaction. */
  async finish(name: string, holder: string, outcome: { runId: string | null; status: string; error: string | null }, now: Date): Promise<void> {
    await this.#write(async (db) => {
      await db
        .updateTable("batch_schedules")
        .set({ last_run_id: outcome.runId, last_ended_at: now.toISOString(), last_status: outcome.status, last_error: outcome.error })
        .where("name", "=", name)
        .execute();
      await db.deleteFrom("batch_locks").where("name", "=", lockName(name)).where("holder", "=", holder).execute();
    });
  }
}

export function lockName(schedule: string): string {
  return `schedule:${schedule}`;
}

async function takeLock(db: ScheduleDb, name: string, holder: string, now: Date, ttlMs: number): Promise<boolean> {
  const acquiredAt = now.toISOString();
  const expiresAt = new Date(now.getTime() + ttlMs).toISOString();
  const inserted = await db
    .insertInto("batch_locks")
    .values({ name, holder, acquired_at: acquiredAt, expires_at: expiresAt })
    .onConflict((oc) => oc.column("name").doNothing())
    .executeTakeFirst();
  if (Number(inserted.numInsertedOrUpdatedRows ?? 0n) > 0) return true;
  // A row update is atomic on both dialects: of two takers of an expired lock, the second sees it renewed.
  const updated = await db
    .updateTable("batch_locks")
    .set({ holder, acquired_at: acquiredAt, expires_at: expiresAt })
    .where("name", "=", name)
    .where((eb) => eb.or([eb("expires_at", "<=", acquiredAt), eb("holder", "=", holder)]))
    .executeTakeFirst();
  return Number(updated.numUpdatedRows) > 0;
}

/** How late a fire time may pass without a run starting before it counts as late. */
export function lateGraceMs(checkMs: number): number {
  return Math.max(MIN_LATE_GRACE_MS, 2 * checkMs);
}

/** Late/failed state of one schedule at `now`. */
export function healthOf(schedule: BatchSchedule, now: Date, checkMs = DEFAULT_CHECK_MS): ScheduleHealth {
  const due = nextFire(schedule, anchorOf(schedule));
  const running = schedule.lastRun?.status === "running";
  return {
    name: schedule.name,
    due,
    lastRun: schedule.lastRun,
    late: schedule.enabled && !running && due !== null && now.getTime() - due.getTime() > lateGraceMs(checkMs),
    failed: schedule.lastRun?.status === "failed",
  };
}

/** The model a schedule's reference names (`name@production` -> `name`). */
export function scheduleModel(schedule: Pick<BatchSchedule, "ref">): string {
  return schedule.ref.split("@")[0] ?? schedule.ref;
}

/**
 * What a schedule's runs are filed under in `batch_runs` and by `batchFreshness` (its `table`): the SQL table for
 * SQL targets (the metadata store or another PostgreSQL), the file's path for Parquet/JSON Lines targets.
 */
export function scheduleTargetKey(schedule: Pick<BatchSchedule, "into" | "table">): string {
  const into = schedule.into ?? undefined;
  return isFileTarget(into) ? describeTarget(into) : (schedule.table ?? DEFAULT_PREDICTIONS_TABLE);
}

/** The max age a (model, table) is judged by, and where it came from. */
export interface AppliedMaxAge {
  maxAgeMs: number;
  /** The enabled schedule whose `maxAgeMs` applies, or null for the fallback (`--max-age` / config `batch.maxAgeMs`). */
  schedule: string | null;
}

/**
 * The max age of `model`'s predictions in `table`: that of the enabled schedule that writes them there (the smallest
 * when several do: the table must satisfy the most demanding one), else `fallbackMs`. Schedules without a max age
 * of their own, and disabled ones, do not count.
 */
export function maxAgeFor(schedules: readonly BatchSchedule[], model: string, table: string, fallbackMs: number): AppliedMaxAge {
  let applied: AppliedMaxAge = { maxAgeMs: fallbackMs, schedule: null };
  for (const schedule of schedules) {
    if (!schedule.enabled || schedule.maxAgeMs === null) continue;
    if (scheduleModel(schedule) !== model || scheduleTargetKey(schedule) !== table) continue;
    if (applied.schedule === null || schedule.maxAgeMs < applied.maxAgeMs) applied = { maxAgeMs: schedule.maxAgeMs, schedule: schedule.name };
  }
  return applied;
}

/** How long the server reuses the schedules list for max ages: lookups must not query the store every request. */
export const SCHEDULE_MAX_AGE_CACHE_MS = 5_000;

export interface ScheduledMaxAgesOptions {
  /** The max age where no enabled schedule sets one (config `batch.maxAgeMs`). */
  fallbackMs: number;
  /** How long the schedules list is reused; default 5 s. */
  cacheMs?: number;
  /** Called when the schedules cannot be read; `fallbackMs` applies until the next read (after `cacheMs`). */
  onError?: (error: unknown) => void;
}

/** `maxAgeFor` over the store's schedules, read at most once per `cacheMs` (for the lookup routes and the gauges). */
export class ScheduledMaxAges {
  readonly #schedules: ScheduleStore;
  readonly #fallbackMs: number;
  readonly #cacheMs: number;
  readonly #onError: ScheduledMaxAgesOptions["onError"];
  #cached: { at: number; list: Promise<BatchSchedule[]> } | undefined;

  constructor(store: SqlStore, options: ScheduledMaxAgesOptions) {
    this.#schedules = new ScheduleStore(store);
    this.#fallbackMs = options.fallbackMs;
    this.#cacheMs = options.cacheMs ?? SCHEDULE_MAX_AGE_CACHE_MS;
    this.#onError = options.onError;
  }

  /** The enabled schedules' max ages as of at most `cacheMs` ago. */
  async schedules(): Promise<BatchSchedule[]> {
    const at = Date.now();
    if (this.#cached === undefined || at - this.#cached.at > this.#cacheMs) {
      // A store that cannot be read is asked again after the cache period too: not once per request, nor one
      // warning per request while it is down.
      const list = this.#schedules.list().catch((error: unknown) => {
        this.#onError?.(error);
        return [];
      });
      this.#cached = { at, list };
    }
    return this.#cached.list;
  }

  async maxAgeFor(model: string, table: string): Promise<AppliedMaxAge> {
    return maxAgeFor(await this.schedules(), model, table, this.#fallbackMs);
  }
}

/**
 * The monitoring alerts of a schedule's state: `batch:<name>:late` and `batch:<name>:failed`. A disabled schedule
 * raises none.
 */
export function scheduleAlerts(schedule: BatchSchedule, health: ScheduleHealth, now: Date, checkMs = DEFAULT_CHECK_MS): Alert[] {
  if (!schedule.enabled) return [];
  const model = scheduleModel(schedule);
  const alerts: Alert[] = [];
  if (health.late && health.due !== null) {
    const lateMs = now.getTime() - health.due.getTime();
    alerts.push({
      id: `batch:${schedule.name}:late`,
      model,
      version: 0,
      kind: "rule",
      severity: "warning",
      message: `scheduled batch run ${schedule.name} (${schedule.cron}) is late: due ${health.due.toISOString()}, not started ${Math.round(lateMs / 60_000)} min later`,
      value: lateMs,
      threshold: `<= ${lateGraceMs(checkMs)} ms`,
      at: now.toISOString(),
    });
  }
  if (health.failed && schedule.lastRun !== null) {
    alerts.push({
      id: `batch:${schedule.name}:failed`,
      model,
      version: 0,
      kind: "rule",
      severity: "error",
      message: `scheduled batch run ${schedule.name} failed at ${schedule.lastRun.endedAt ?? schedule.lastRun.startedAt}: ${schedule.lastRun.error ?? "unknown error"}`,
      value: "failed",
      threshold: "succeeded",
      at: now.toISOString(),
    });
  }
  return alerts;
}

export interface BatchSchedulerOptions {
  /** How often due schedules are looked for; default 15 s. */
  checkMs?: number;
  now?: () => Date;
  /** Receives late/failed alerts on every check while the condition lasts (an Alerter applies its cooldown). */
  onAlert?: (alert: Alert) => void | Promise<void>;
  /** This scheduler's name in `batch_locks`; default host:pid:random. */
  holder?: string;
  lockTtlMs?: number;
}

/**
 * Runs due batch schedules, one run at a time. Several schedulers may share a store: a run's lock in
 * `batch_locks` lets only one of them start each fire time.
 */
export class BatchScheduler {
  readonly schedules: ScheduleStore;
  readonly #deps: ScoreJobDeps;
  readonly #checkMs: number;
  readonly #now: () => Date;
  readonly #onAlert: BatchSchedulerOptions["onAlert"];
  readonly #holder: string;
  readonly #lockTtlMs: number;
  #timer: NodeJS.Timeout | undefined;
  #ticking: Promise<string[]> | undefined;
  #abort = new AbortController();
  #closed = false;

  constructor(deps: ScoreJobDeps, options: BatchSchedulerOptions = {}) {
    this.#deps = deps;
    this.schedules = new ScheduleStore(deps.store);
    this.#checkMs = options.checkMs ?? DEFAULT_CHECK_MS;
    this.#now = options.now ?? (() => new Date());
    this.#onAlert = options.onAlert;
    this.#holder = options.holder ?? `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.#lockTtlMs = options.lockTtlMs ?? SCHEDULE_LOCK_TTL_MS;
  }

  start(): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = setInterval(() => void this.tick().catch((error: unknown) => this.#deps.logger.error({ err: error }, "batch scheduler check failed")), this.#checkMs);
    this.#timer.unref();
    void this.tick().catch((error: unknown) => this.#deps.logger.error({ err: error }, "batch scheduler check failed"));
  }

  /** Stops the timer, interrupts the run in flight (recorded `interrupted`; the next fire time resumes it) and waits for it. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#abort.abort();
    await this.#ticking?.catch(() => undefined);
  }

  /** Per schedule: when it is due, its last run, late and failed. */
  async scheduleHealth(now = this.#now()): Promise<ScheduleHealth[]> {
    return (await this.schedules.list()).map((s) => healthOf(s, now, this.#checkMs));
  }

  /**
   * One check: runs every due schedule this scheduler can claim, one after the other, then reports alerts. Returns
   * the names it ran. A check while one is in progress waits for it and runs nothing more.
   */
  tick(): Promise<string[]> {
    if (this.#ticking !== undefined) return this.#ticking.then(() => []);
    this.#ticking = this.#check().finally(() => (this.#ticking = undefined));
    return this.#ticking;
  }

  async #check(): Promise<string[]> {
    const ran: string[] = [];
    for (const schedule of await this.schedules.list()) {
      if (this.#closed) break;
      if (!schedule.enabled) continue;
      const due = nextFire(schedule, anchorOf(schedule));
      if (due === null || due.getTime() > this.#now().getTime()) continue;
      const claimed = await this.schedules.claim(schedule.name, this.#holder, this.#now(), this.#lockTtlMs);
      if (claimed === undefined) continue;
      await this.#run(claimed);
      ran.push(schedule.name);
    }
    await this.#alert();
    return ran;
  }

  async #run(schedule: BatchSchedule): Promise<void> {
    const renewEvery = Math.max(1_000, Math.floor(this.#lockTtlMs / 3));
    const renewal = setInterval(() => {
      void this.schedules.renew(schedule.name, this.#holder, this.#now(), this.#lockTtlMs).catch((error: unknown) =>
        this.#deps.logger.warn({ err: error, schedule: schedule.name }, "could not renew a batch schedule lock"),
      );
    }, renewEvery);
    renewal.unref();
    let outcome: { runId: string | null; status: string; error: string | null };
    try {
      const run: BatchRun = await scoreJob(this.#deps, {
        ref: schedule.ref,
        input: schedule.input,
        idColumn: schedule.idColumn,
        ...(schedule.into === null ? {} : { into: schedule.into }),
        ...(schedule.table === null ? {} : { table: schedule.table }),
        // A run a crash or a shutdown stopped is continued rather than started over.
        resume: "if-any",
        signal: this.#abort.signal,
        settings: { schedule: schedule.name },
      });
      outcome = { runId: run.id, status: run.status, error: run.error ?? null };
    } catch (error) {
      const e = toMlshipError(error);
      this.#deps.logger.error({ err: e, schedule: schedule.name }, "scheduled batch run failed");
      outcome = { runId: null, status: "failed", error: `${e.message} [${e.code}]` };
    } finally {
      clearInterval(renewal);
    }
    await this.schedules.finish(schedule.name, this.#holder, outcome, this.#now());
  }

  async #alert(): Promise<void> {
    if (this.#onAlert === undefined) return;
    const now = this.#now();
    for (const schedule of await this.schedules.list()) {
      for (const alert of scheduleAlerts(schedule, healthOf(schedule, now, this.#checkMs), now, this.#checkMs)) {
        try {
          await this.#onAlert(alert);
        } catch (error) {
          this.#deps.logger.warn({ err: error, alert: alert.id }, "batch schedule alert hook failed");
        }
      }
    }
  }
}
