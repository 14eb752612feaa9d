// Freshness of batch predictions from recorded runs, on real SQLite and PostgreSQL stores: the last success per model
// and table, failures since, the Prometheus gauges on the real server's /metrics, and `mlship batch status`.
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Command } from "commander";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { batchFreshness, batchFreshnessMetrics, type BatchFreshness } from "../../src/batch/freshness.js";
import { batchHealth, batchStatusCommand, formatAge } from "../../src/cli/batch-status.js";
import { CliContext } from "../../src/cli/context.js";
import type { CliIo } from "../../src/cli/io.js";
import { MlshipError } from "../../src/core/index.js";
import { buildServer, requestMetricsOf } from "../../src/serve/index.js";
import type { BatchRunsTable } from "../../src/batch/runs.js";
import { ScheduleStore } from "../../src/batch/schedule.js";
import type { SqlStore } from "../../src/store/index.js";
import { freshPostgres, freshSqlite, postgresAdmin, type FreshDatabase } from "../helpers/sql-stores.js";
import { createWorld, type World } from "../scoring/world.js";


const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

interface RunSpec {
  id: string;
  model: string;
  table?: string | null;
  target?: string;
  status: "running" | "succeeded" | "failed" | "interrupted";
  /** Hours before the reference time. */
  startedHoursAgo: number;
  minutes?: number;
  rows?: number;
  version?: number;
  error?: string;
  /** [index, count] */
  shard?: [number, number];
}

/**
 * The runs of the scenario, relative to `now`:
 * - bc -> batch_predictions: a success 34h ago, then a failure 10h ago (failed since success, stale at 1d);
 * - bc -> scores_daily: a success 10h ago (550 rows), then a run still going;
 * - churn -> a Parquet file: a failure, then a success (the failure is cleared);
 * - fresh -> an interrupted run only; pending -> a running run only (never succeeded).
 */
const RUNS: RunSpec[] = [
  { id: "r1", model: "bc", table: "batch_predictions", status: "succeeded", startedHoursAgo: 34, minutes: 10, rows: 569, version: 1 },
  { id: "r2", model: "bc", table: "batch_predictions", status: "failed", startedHoursAgo: 10, error: "input file /data/today.csv: no such file", version: 2 },
  { id: "r0", model: "bc", table: "batch_predictions", status: "succeeded", startedHoursAgo: 58, minutes: 10, rows: 400, version: 1 },
  { id: "r3", model: "bc", table: "scores_daily", status: "succeeded", startedHoursAgo: 10, minutes: 5, rows: 550, version: 2 },
  { id: "r4", model: "bc", table: "scores_daily", status: "running", startedHoursAgo: 0.5, version: 2 },
  { id: "r5", model: "churn", table: null, target: "/data/churn.parquet", status: "failed", startedHoursAgo: 6, error: "killed" },
  { id: "r6", model: "churn", table: null, target: "/data/churn.parquet", status: "succeeded", startedHoursAgo: 5, minutes: 30, rows: 1000 },
  { id: "r7", model: "fresh", table: "batch_predictions", status: "interrupted", startedHoursAgo: 2 },
  { id: "r8", model: "pending", table: "batch_predictions", status: "running", startedHoursAgo: 1 },
  // Three shards yesterday; today shard 0 failed while its siblings, started a moment later, succeeded.
  { id: "s0-y", model: "sharded", table: "scores", status: "succeeded", startedHoursAgo: 26, minutes: 20, rows: 100, shard: [0, 3] },
  { id: "s1-y", model: "sharded", table: "scores", status: "succeeded", startedHoursAgo: 26, minutes: 25, rows: 100, shard: [1, 3] },
  { id: "s2-y", model: "sharded", table: "scores", status: "succeeded", startedHoursAgo: 26, minutes: 30, rows: 90, shard: [2, 3] },
  { id: "s0-t", model: "sharded", table: "scores", status: "failed", startedHoursAgo: 2, error: "shard 0: worker died", shard: [0, 3] },
  { id: "s1-t", model: "sharded", table: "scores", status: "succeeded", startedHoursAgo: 1.99, minutes: 20, rows: 110, shard: [1, 3] },
  { id: "s2-t", model: "sharded", table: "scores", status: "succeeded", startedHoursAgo: 1.98, minutes: 20, rows: 95, shard: [2, 3] },
  // Sharded long ago, one process since: only the unsharded runs count.
  { id: "u-old0", model: "resharded", table: "scores", status: "failed", startedHoursAgo: 30, shard: [0, 2] },
  { id: "u-old1", model: "resharded", table: "scores", status: "succeeded", startedHoursAgo: 30, minutes: 10, rows: 7, shard: [1, 2] },
  { id: "u-new", model: "resharded", table: "scores", status: "succeeded", startedHoursAgo: 3, minutes: 60, rows: 20 },
  // Two shards, one done and one still going: the table is not complete yet.
  { id: "p0", model: "partial", table: "scores", status: "succeeded", startedHoursAgo: 1, minutes: 30, rows: 50, shard: [0, 2] },
  { id: "p1", model: "partial", table: "scores", status: "running", startedHoursAgo: 1, shard: [1, 2] },
];

async function insertRuns(store: SqlStore, now: Date): Promise<void> {
  const at = (ms: number) => new Date(now.getTime() - ms).toISOString();
  const rows: BatchRunsTable[] = RUNS.map((r) => {
    const started = r.startedHoursAgo * HOUR_MS;
    const ended = started - (r.minutes ?? 1) * 60_000;
    const done = r.status !== "running";
    return {
      id: r.id,
      model: r.model,
      version: r.version ?? 1,
      ref: `${r.model}@production`,
      input: "/data/input.csv",
      input_fingerprint: null,
      target: r.target ?? "sqlite",
      target_table: r.table ?? null,
      id_column: "id",
      shard_index: r.shard?.[0] ?? null,
      shard_count: r.shard?.[1] ?? null,
      status: r.status,
      rows_in: r.rows ?? 0,
      rows_out: r.rows ?? 0,
      rows_rejected: 0,
      started_at: at(started),
      heartbeat_at: done ? at(ended) : at(60_000),
      ended_at: done ? at(ended) : null,
      error: r.error ?? null,
      settings: "{}",
    };
  });
  await store.db.withTables<{ batch_runs: BatchRunsTable }>().insertInto("batch_runs").values(rows).execute();
}

function byTarget(entries: BatchFreshness[]): Map<string, BatchFreshness> {
  return new Map(entries.map((e) => [`${e.model}/${e.table}`, e]));
}

describe.each(["sqlite", "postgres"] as const)("batchFreshness on %s", (dialect) => {
  const now = new Date("2026-12-02T12:00:00.000Z");
  let admin: pg.Client | undefined;
  let database: FreshDatabase;
  let store: SqlStore;

  beforeAll(async () => {
    if (dialect === "postgres") {
      admin = await postgresAdmin();
      database = await freshPostgres(admin, "mlship-batch-fresh");
    } else {
      database = await freshSqlite("mlship-batch-fresh");
    }
    store = await database.open();
    await insertRuns(store, now);
  }, 60_000);

  afterAll(async () => {
    await database?.dispose();
    await admin?.end();
  });

  it("gives per model and table the last success, the last run and failures since the success", async () => {
    const entries = await batchFreshness(store, now);
    const all = byTarget(entries);
    expect([...all.keys()].sort()).toEqual([
      "bc/batch_predictions",
      "bc/scores_daily",
      "churn//data/churn.parquet",
      "fresh/batch_predictions",
      "partial/scores",
      "pending/batch_predictions",
      "resharded/scores",
      "sharded/scores",
    ]);

    const failed = all.get("bc/batch_predictions");
    expect(failed?.lastSuccess).toEqual({ runId: "r1", version: 1, endedAt: "2026-12-01T02:10:00.000Z", ageSeconds: 33 * 3600 + 50 * 60, rows: 569 });
    expect(failed?.lastRun).toMatchObject({ runId: "r2", status: "failed", version: 2, error: "input file /data/today.csv: no such file" });
    expect(failed?.failedSinceSuccess).toBe(true);
    expect(failed?.lastError).toBe("input file /data/today.csv: no such file");

    const running = all.get("bc/scores_daily");
    expect(running?.lastSuccess).toMatchObject({ runId: "r3", rows: 550, ageSeconds: 9 * 3600 + 55 * 60 });
    expect(running?.lastRun).toMatchObject({ runId: "r4", status: "running", endedAt: null });
    expect(running?.failedSinceSuccess).toBe(false);

    const recovered = all.get("churn//data/churn.parquet");
    expect(recovered).toMatchObject({ failedSinceSuccess: false, lastError: null, lastSuccess: { runId: "r6", rows: 1000 }, lastRun: { runId: "r6", status: "succeeded" } });

    expect(all.get("fresh/batch_predictions")).toMatchObject({ lastSuccess: null, failedSinceSuccess: true, lastRun: { runId: "r7", status: "interrupted" } });
    expect(all.get("pending/batch_predictions")).toMatchObject({ lastSuccess: null, failedSinceSuccess: false, lastRun: { runId: "r8", status: "running" } });
  });

  it("judges a sharded table by every shard: a failed shard is not hidden by its siblings' successes", async () => {
    const all = byTarget(await batchFreshness(store, now));
    const sharded = all.get("sharded/scores");
    expect(sharded).toMatchObject({ shards: 3, failedSinceSuccess: true, lastError: "shard 0: worker died" });
    // As fresh as its stalest shard (shard 0, yesterday, 26h - 20min ago), with every shard's last rows.
    expect(sharded?.lastSuccess).toMatchObject({ runId: "s0-y", ageSeconds: 26 * 3600 - 20 * 60, rows: 100 + 110 + 95 });
    expect(sharded?.lastRun.runId).toBe("s2-t");
    const resharded = all.get("resharded/scores");
    expect(resharded).toMatchObject({ shards: null, failedSinceSuccess: false, lastSuccess: { runId: "u-new", rows: 20, ageSeconds: 2 * 3600 } });
    const partial = all.get("partial/scores");
    expect(partial).toMatchObject({ shards: 2, failedSinceSuccess: false, lastSuccess: null, lastRun: { status: "running" } });
  });

  it("filters by model, and ages with the clock", async () => {
    const later = new Date(now.getTime() + HOUR_MS);
    const bc = await batchFreshness(store, later, { model: "bc" });
    expect(bc.map((e) => e.table).sort()).toEqual(["batch_predictions", "scores_daily"]);
    expect(byTarget(bc).get("bc/scores_daily")?.lastSuccess?.ageSeconds).toBe(10 * 3600 + 55 * 60);
    expect(await batchFreshness(store, now, { model: "nobody" })).toEqual([]);
  });

  it("judges each target: failed, stale beyond the max age, never succeeded, or ok", async () => {
    const all = byTarget(await batchFreshness(store, now));
    const health = (key: string, maxAgeMs: number) => batchHealth(all.get(key) as BatchFreshness, maxAgeMs);
    expect(health("bc/batch_predictions", 7 * DAY_MS)).toBe("failed");
    expect(health("bc/scores_daily", DAY_MS)).toBe("ok");
    expect(health("bc/scores_daily", 9 * HOUR_MS)).toBe("stale");
    expect(health("churn//data/churn.parquet", DAY_MS)).toBe("ok");
    expect(health("fresh/batch_predictions", DAY_MS)).toBe("failed");
    expect(health("pending/batch_predictions", DAY_MS)).toBe("never succeeded");
  });
});

describe("batch freshness gauges on /metrics", () => {
  const now = new Date("2026-12-02T12:00:00.000Z");
  let database: FreshDatabase;
  let store: SqlStore;
  let world: World;
  let app: ReturnType<typeof buildServer>;
  let unregister: () => void;

  beforeAll(async () => {
    database = await freshSqlite("mlship-batch-metrics");
    store = await database.open();
    await insertRuns(store, now);
    world = await createWorld({ workers: 1 });
    app = buildServer({ scoring: world.scoring, registry: world.registry, logger: false });
    const register = requestMetricsOf(app)?.register;
    if (register === undefined) throw new Error("the server has no metrics registry");
    // bc -> scores_daily is written by a schedule that wants it under 9 hours old; everything else has the 1-day default.
    await new ScheduleStore(store).put({ name: "bc-scores", ref: "bc@production", input: "/data/input.csv", idColumn: "id", table: "scores_daily", cron: "0 * * * *", maxAgeMs: 9 * HOUR_MS });
    unregister = batchFreshnessMetrics(store, register, { now: () => now, maxAgeMs: DAY_MS });
    await app.ready();
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    await world?.close();
    await database?.dispose();
  });

  it("exports the age and rows of the last success and whether a run failed since, per model and table", async () => {
    const res = await app.inject("/metrics");
    expect(res.statusCode).toBe(200);
    const text = res.body;
    expect(text).toContain("# TYPE mlship_batch_last_success_age_seconds gauge");
    expect(text).toContain(`mlship_batch_last_success_age_seconds{model="bc",table="batch_predictions"} ${33 * 3600 + 50 * 60}`);
    expect(text).toContain(`mlship_batch_last_success_age_seconds{model="bc",table="scores_daily"} ${9 * 3600 + 55 * 60}`);
    expect(text).toContain('mlship_batch_last_success_rows{model="bc",table="scores_daily"} 550');
    expect(text).toContain('mlship_batch_last_success_rows{model="churn",table="/data/churn.parquet"} 1000');
    expect(text).toContain('mlship_batch_last_run_failed{model="bc",table="batch_predictions"} 1');
    expect(text).toContain('mlship_batch_last_run_failed{model="bc",table="scores_daily"} 0');
    expect(text).toContain('mlship_batch_last_run_failed{model="fresh",table="batch_predictions"} 1');
    expect(text).toContain('mlship_batch_last_run_failed{model="pending",table="batch_predictions"} 0');
    expect(text).toContain('mlship_batch_last_run_failed{model="sharded",table="scores"} 1');
    expect(text).toContain('mlship_batch_last_success_rows{model="sharded",table="scores"} 305');
    // Stale against the schedule's max age where one writes the table, else the default.
    expect(text).toContain("# TYPE mlship_batch_predictions_stale gauge");
    expect(text).toContain('mlship_batch_predictions_stale{model="bc",table="batch_predictions"} 1');
    expect(text).toContain('mlship_batch_predictions_stale{model="bc",table="scores_daily"} 1');
    expect(text).toContain('mlship_batch_predictions_stale{model="churn",table="/data/churn.parquet"} 0');
    expect(text).toContain('mlship_batch_predictions_stale{model="resharded",table="scores"} 0');
    // No success yet: no age and no rows rather than a made-up value.
    expect(text).not.toContain('mlship_batch_predictions_stale{model="pending"');
    expect(text).not.toContain('mlship_batch_last_success_age_seconds{model="pending"');
    expect(text).not.toContain('mlship_batch_last_success_rows{model="fresh"');
  });

  it("reads the runs again at each scrape, and unregisters", async () => {
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const later = now.toISOString();
    await store.db
      .withTables<{ batch_runs: BatchRunsTable }>()
      .updateTable("batch_runs")
      .set({ status: "succeeded", ended_at: later, heartbeat_at: later, rows_out: 42 })
      .where("id", "=", "r8")
      .execute();
    const text = (await app.inject("/metrics")).body;
    expect(text).toContain('mlship_batch_last_success_age_seconds{model="pending",table="batch_predictions"} 0');
    expect(text).toContain('mlship_batch_last_success_rows{model="pending",table="batch_predictions"} 42');
    expect(text).toContain('mlship_batch_predictions_stale{model="pending",table="batch_predictions"} 0');
    // A disabled schedule's max age no longer applies: scores_daily (9h55m old) is fresh by the 1-day default.
    await new ScheduleStore(store).setEnabled("bc-scores", false);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect((await app.inject("/metrics")).body).toContain('mlship_batch_predictions_stale{model="bc",table="scores_daily"} 0');
    unregister();
    expect((await app.inject("/metrics")).body).not.toContain("mlship_batch_last_");
  });
});

interface StatusResult {
  stdout: string;
  error: unknown;
}

/** `mlship batch status ...` as the lead mounts it (`batch` holding this subcommand), on a store given by env. */
async function runStatus(args: string[], env: Record<string, string>): Promise<StatusResult> {
  let stdout = "";
  const io: CliIo = {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: () => true },
    env: { MLSHIP_LOG_LEVEL: "warn", ...env },
    cwd: os.tmpdir(),
    handleSignals: false,
  };
  const ctx = new CliContext(io);
  const program = new Command("mlship").exitOverride().option("--home <dir>").option("--store <url>");
  program.addCommand(new Command("batch").exitOverride().addCommand(batchStatusCommand(ctx).exitOverride()));
  try {
    await program.parseAsync(["node", "mlship", "batch", "status", ...args]);
    return { stdout, error: undefined };
  } catch (error) {
    return { stdout, error };
  } finally {
    await ctx.close();
  }
}

describe.each(["sqlite", "postgres"] as const)("mlship batch status on %s", (dialect) => {
  let admin: pg.Client | undefined;
  let database: FreshDatabase;
  let env: Record<string, string>;
  let home: string;

  beforeAll(async () => {
    if (dialect === "postgres") {
      admin = await postgresAdmin();
      database = await freshPostgres(admin, "mlship-batch-status");
    } else {
      database = await freshSqlite("mlship-batch-status");
    }
    const store = await database.open();
    // The command reads the real clock: the runs are placed relative to it.
    await insertRuns(store, new Date());
    home = await fs.mkdtemp(path.join(os.tmpdir(), "mlship-batch-status-home-"));
    env = { MLSHIP_STORE: dialect === "sqlite" ? `sqlite:${store.location}` : store.location, MLSHIP_HOME: home };
  }, 60_000);

  afterAll(async () => {
    await database?.dispose();
    await admin?.end();
    if (home !== undefined) await fs.rm(home, { recursive: true, force: true });
  });

  it("prints a table per model and table, marking failed, stale and never-succeeded targets", async () => {
    const { stdout, error } = await runStatus([], env);
    expect(error).toBeUndefined();
    const lines = stdout.trim().split("\n");
    expect(lines[0]).toMatch(/model\s+table\s+last success\s+age\s+max age\s+rows\s+last run\s+state/);
    const line = (model: string, table: string) => lines.find((l) => l.includes(` ${model} `) && l.includes(` ${table} `)) ?? "";
    expect(line("bc", "batch_predictions")).toMatch(/^! .*1d9h\s+1d\s+569\s+failed r2\s+failed: input file \/data\/today.csv: no such file$/);
    expect(line("bc", "scores_daily")).toMatch(/^ {3}bc .*9h5\dm\s+1d\s+550\s+running r4\s+ok$/);
    expect(line("churn", "/data/churn.parquet")).toMatch(/succeeded r6\s+ok$/);
    expect(line("fresh", "batch_predictions")).toMatch(/^! .*never .*interrupted r7\s+failed$/);
    expect(line("pending", "batch_predictions")).toMatch(/^! .*never .*running r8\s+never succeeded$/);
  });

  it("--check exits 1 (a failed check) when something needs attention, and passes for a healthy model", async () => {
    const all = await runStatus(["--check"], env);
    expect(all.error).toBeInstanceOf(MlshipError);
    expect(all.error).toMatchObject({ code: "MLSHIP_ERR_BATCH_CHECK_FAILED" });
    expect((all.error as Error).message).toContain("bc/batch_predictions failed");
    expect((all.error as Error).message).toContain("pending/batch_predictions never succeeded");
    expect((await runStatus(["churn", "--check"], env)).error).toBeUndefined();
    const stale = await runStatus(["bc", "--check", "--max-age", "9h"], env);
    expect((stale.error as Error).message).toContain("bc/scores_daily stale");
    const unknown = await runStatus(["nobody", "--check"], env);
    expect(unknown.stdout).toContain("no batch runs for model 'nobody'");
    expect((unknown.error as Error).message).toContain("model 'nobody' has no batch runs");
  });

  it("prints JSON with the max age and each target's health", async () => {
    const { stdout, error } = await runStatus(["bc", "--json", "--max-age", "12h"], env);
    expect(error).toBeUndefined();
    const body = JSON.parse(stdout) as { maxAgeSeconds: number; targets: (BatchFreshness & { health: string })[] };
    expect(body.maxAgeSeconds).toBe(12 * 3600);
    expect(body.targets.map((t) => [t.table, t.health, t.lastSuccess?.rows])).toEqual([
      ["batch_predictions", "failed", 569],
      ["scores_daily", "ok", 550],
    ]);
  });

  it("judges a table by the max age of the enabled schedule that writes it, and says which max age applied", async () => {
    const schedules = new ScheduleStore(await database.open());
    const schedule = { input: "/data/input.csv", idColumn: "id", cron: "0 * * * *" };
    // scores_daily succeeded 9h55m ago: stale for a schedule that wants it under 9h (a disabled one wanting 2d is ignored).
    await schedules.put({ ...schedule, name: "bc-scores", ref: "bc@production", table: "scores_daily", maxAgeMs: 9 * HOUR_MS });
    await schedules.put({ ...schedule, name: "bc-scores-lenient", ref: "bc", table: "scores_daily", maxAgeMs: 2 * DAY_MS, enabled: false });
    // resharded/scores succeeded 2h ago: ok for its 4h schedule even though --max-age says 1h.
    await schedules.put({ ...schedule, name: "reshard", ref: "resharded@3", table: "scores", maxAgeMs: 4 * HOUR_MS });
    // A schedule without a max age of its own leaves the file target to --max-age.
    await schedules.put({ ...schedule, name: "churn-file", ref: "churn", into: "/data/churn.parquet" });
    try {
      const { stdout, error } = await runStatus(["--json", "--max-age", "1h"], env);
      expect(error).toBeUndefined();
      const body = JSON.parse(stdout) as { maxAgeSeconds: number; targets: (BatchFreshness & { health: string; maxAgeSeconds: number; maxAgeSchedule: string | null })[] };
      expect(body.maxAgeSeconds).toBe(3600);
      const of = (model: string, table: string) => body.targets.find((t) => t.model === model && t.table === table);
      expect(of("bc", "scores_daily")).toMatchObject({ health: "stale", maxAgeSeconds: 9 * 3600, maxAgeSchedule: "bc-scores" });
      expect(of("resharded", "scores")).toMatchObject({ health: "ok", maxAgeSeconds: 4 * 3600, maxAgeSchedule: "reshard" });
      expect(of("churn", "/data/churn.parquet")).toMatchObject({ health: "stale", maxAgeSeconds: 3600, maxAgeSchedule: null });

      const table = await runStatus(["bc"], env);
      const line = table.stdout.split("\n").find((l) => l.includes(" scores_daily ")) ?? "";
      expect(line).toMatch(/^! .*9h5\dm\s+9h \(bc-scores\)\s+550\s+running r4\s+stale$/);
      const check = await runStatus(["bc", "--check"], env);
      expect((check.error as Error).message).toContain("bc/scores_daily stale");
    } finally {
      for (const name of ["bc-scores", "bc-scores-lenient", "reshard", "churn-file"]) await schedules.remove(name);
    }
  });

  it("rejects a --max-age that is not a duration as a usage error", async () => {
    const { error } = await runStatus(["--max-age", "soon"], env);
    expect(error).toMatchObject({ code: "MLSHIP_ERR_CLI_USAGE", field: "--max-age" });
  });
});

describe("formatAge", () => {
  it("shows the two largest units", () => {
    expect(formatAge(0)).toBe("0s");
    expect(formatAge(42.9)).toBe("42s");
    expect(formatAge(125)).toBe("2m5s");
    expect(formatAge(9 * 3600 + 55 * 60 + 12)).toBe("9h55m");
    expect(formatAge(2 * 86_400 + 30 * 60)).toBe("2d");
    expect(formatAge(3 * 86_400 + 4 * 3600)).toBe("3d4h");
  });
});
