import { sql, type ColumnDefinitionBuilder, type Kysely, type Migration, type MigrationProvider } from "kysely";

export type SqlDialectName = "sqlite" | "postgres";

/**
 * A schema migration, defined in code (dist/ is compiled, so nothing is read from migration files at run time).
 * Names sort in the order they run: `0001_registry`, `0002_<area>`, ... Append new ones; never edit a released one.
 */
export interface StoreMigration {
  name: string;
  up(db: Kysely<unknown>, dialect: SqlDialectName): Promise<void>;
}

/** An auto-numbered integer primary key, spelled the way each dialect wants it. */
function idColumn(dialect: SqlDialectName) {
  return (col: ColumnDefinitionBuilder) =>
    dialect === "postgres" ? col.primaryKey().generatedByDefaultAsIdentity() : col.primaryKey().autoIncrement();
}

const registry0001: StoreMigration = {
  name: "0001_registry",
  async up(db, dialect) {
    await db.schema
      .createTable("registry_state")
      .ifNotExists()
      .addColumn("id", "integer", (col) => col.primaryKey())
      .addColumn("revision", "bigint", (col) => col.notNull().defaultTo(0))
      .execute();
    await sql`insert into registry_state (id, revision) values (1, 0)`.execute(db);

    await db.schema
      .createTable("models")
      .ifNotExists()
      .addColumn("id", "integer", idColumn(dialect))
      .addColumn("name", "text", (col) => col.notNull().unique())
      .addColumn("description", "text")
      .addColumn("tags", "text", (col) => col.notNull().defaultTo("{}"))
      .addColumn("created_at", "text", (col) => col.notNull())
      .addColumn("updated_at", "text", (col) => col.notNull())
      .execute();

    await db.schema
      .createTable("model_versions")
      .ifNotExists()
      .addColumn("id", "integer", idColumn(dialect))
      .addColumn("model_id", "integer", (col) => col.notNull().references("models.id"))
      .addColumn("version", "integer", (col) => col.notNull())
      .addColumn("status", "text", (col) => col.notNull())
      .addColumn("description", "text")
      .addColumn("tags", "text", (col) => col.notNull().defaultTo("{}"))
      .addColumn("metrics", "text", (col) => col.notNull().defaultTo("{}"))
      .addColumn("digest", "text", (col) => col.notNull())
      .addColumn("manifest", "text", (col) => col.notNull())
      .addColumn("source", "text", (col) => col.notNull())
      .addColumn("created_at", "text", (col) => col.notNull())
      .addColumn("created_by", "text", (col) => col.notNull())
      .addColumn("archived_at", "text")
      .addColumn("archived_by", "text")
      // This constraint is what makes two concurrent registrations of one model end up with distinct numbers.
      .addUniqueConstraint("model_versions_model_version_uq", ["model_id", "version"])
      .addCheckConstraint("model_versions_status_ck", sql`status in ('ready', 'archived')`)
      .execute();
    await db.schema
      .createIndex("model_versions_digest_ix")
      .ifNotExists()
      .on("model_versions")
      .column("digest")
      .execute();

    await db.schema
      .createTable("model_aliases")
      .ifNotExists()
      .addColumn("model_id", "integer", (col) => col.notNull().references("models.id"))
      .addColumn("alias", "text", (col) => col.notNull())
      .addColumn("version", "integer", (col) => col.notNull())
      .addColumn("updated_at", "text", (col) => col.notNull())
      .addColumn("updated_by", "text", (col) => col.notNull())
      .addPrimaryKeyConstraint("model_aliases_pk", ["model_id", "alias"])
      .addForeignKeyConstraint(
        "model_aliases_version_fk",
        ["model_id", "version"],
        "model_versions",
        ["model_id", "version"],
      )
      .execute();

    await db.schema
      .createTable("alias_events")
      .ifNotExists()
      .addColumn("id", "integer", idColumn(dialect))
      .addColumn("model_id", "integer", (col) => col.notNull().references("models.id"))
      .addColumn("alias", "text", (col) => col.notNull())
      .addColumn("from_version", "integer")
      .addColumn("to_version", "integer")
      .addColumn("at", "text", (col) => col.notNull())
      .addColumn("actor", "text", (col) => col.notNull())
      .addColumn("reason", "text")
      .addColumn("action", "text", (col) => col.notNull())
      .addCheckConstraint("alias_events_action_ck", sql`action in ('set', 'delete', 'rollback')`)
      .execute();
    await db.schema
      .createIndex("alias_events_model_alias_ix")
      .ifNotExists()
      .on("alias_events")
      .columns(["model_id", "alias", "id"])
      .execute();
  },
};

/** Runtime overrides of a version's serving settings (batching, queue, timeout...), one row per version. */
const versionSettings0002: StoreMigration = {
  name: "0002_version_settings",
  async up(db) {
    await db.schema
      .createTable("version_settings")
      .ifNotExists()
      .addColumn("version_id", "integer", (col) => col.primaryKey().references("model_versions.id"))
      .addColumn("settings", "text", (col) => col.notNull().defaultTo("{}"))
      .addColumn("updated_at", "text", (col) => col.notNull())
      .addColumn("updated_by", "text", (col) => col.notNull())
      .execute();
  },
};

/**
 * Monitoring profiles (issue 4): a model version's reference profile (one per version) and its production
 * windows' profiles (one per version, window size and start). The body is the profile as JSON.
 */
const monitor0003: StoreMigration = {
  name: "0003_monitor",
  async up(db, dialect) {
    await db.schema
      .createTable("monitor_profiles")
      .ifNotExists()
      .addColumn("id", "integer", idColumn(dialect))
      .addColumn("model", "text", (col) => col.notNull())
      .addColumn("version", "integer", (col) => col.notNull())
      .addColumn("kind", "text", (col) => col.notNull())
      .addColumn("window_size", "text")
      .addColumn("window_start", "text")
      .addColumn("window_end", "text")
      .addColumn("body", "text", (col) => col.notNull())
      .addColumn("created_at", "text", (col) => col.notNull())
      .addCheckConstraint("monitor_profiles_kind_ck", sql`kind in ('reference', 'window')`)
      .execute();
    // Partial unique indexes (both dialects have them): one reference per version, one profile per window, so
    // concurrent saves replace instead of piling up.
    await db.schema
      .createIndex("monitor_profiles_reference_uq")
      .ifNotExists()
      .unique()
      .on("monitor_profiles")
      .columns(["model", "version"])
      .where(sql<boolean>`kind = 'reference'`)
      .execute();
    await db.schema
      .createIndex("monitor_profiles_window_uq")
      .ifNotExists()
      .unique()
      .on("monitor_profiles")
      .columns(["model", "version", "window_size", "window_start"])
      .where(sql<boolean>`kind = 'window'`)
      .execute();
  },
};


/**
 * The feedback loop (issue 5): every logged prediction row, the outcomes posted for them, and business events
 * (clicks, conversions) tied to predictions. Timestamps are ISO-8601 UTC text; JSON is text.
 */
const feedback0004: StoreMigration = {
  name: "0004_feedback",
  async up(db, dialect) {
    await db.schema
      .createTable("prediction_log")
      .ifNotExists()
      .addColumn("id", "integer", idColumn(dialect))
      .addColumn("request_id", "text", (col) => col.notNull())
      .addColumn("row", "integer", (col) => col.notNull())
      .addColumn("model", "text", (col) => col.notNull())
      .addColumn("version", "integer", (col) => col.notNull())
      .addColumn("variant", "text")
      .addColumn("rollout_id", "text")
      .addColumn("key", "text")
      .addColumn("at", "text", (col) => col.notNull())
      .addColumn("protocol", "text")
      .addColumn("inputs", "text")
      .addColumn("inputs_hash", "text")
      .addColumn("outputs", "text", (col) => col.notNull())
      .addColumn("prediction", "text")
      .addColumn("scores", "text")
      .addColumn("latency_ms", "double precision", (col) => col.notNull())
      .addColumn("actual", "text")
      .addColumn("actual_at", "text")
      .addColumn("outcome_id", "integer")
      .execute();
    // One row per (request, row, version): a replayed spill file or a retried batch never logs twice.
    await db.schema.createIndex("prediction_log_uq").ifNotExists().unique().on("prediction_log").columns(["request_id", "row", "model", "version"]).execute();
    await db.schema.createIndex("prediction_log_version_at_ix").ifNotExists().on("prediction_log").columns(["model", "version", "at"]).execute();
    await db.schema.createIndex("prediction_log_key_ix").ifNotExists().on("prediction_log").columns(["model", "key", "at"]).execute();

    await db.schema
      .createTable("outcomes")
      .ifNotExists()
      .addColumn("id", "integer", idColumn(dialect))
      .addColumn("request_id", "text")
      .addColumn("row", "integer", (col) => col.notNull().defaultTo(0))
      .addColumn("model", "text")
      .addColumn("key", "text")
      .addColumn("actual", "text", (col) => col.notNull())
      .addColumn("event_time", "text", (col) => col.notNull())
      .addColumn("received_at", "text", (col) => col.notNull())
      .addColumn("updated_at", "text", (col) => col.notNull())
      .addColumn("status", "text", (col) => col.notNull())
      .addCheckConstraint("outcomes_status_ck", sql`status in ('pending', 'matched', 'late', 'unmatched')`)
      .addCheckConstraint("outcomes_target_ck", sql`request_id is not null or (model is not null and key is not null)`)
      .execute();
    // Upsert targets: a repost of the same outcome replaces it instead of counting twice.
    await db.schema.createIndex("outcomes_request_uq").ifNotExists().unique().on("outcomes").columns(["request_id", "row"]).where(sql<boolean>`request_id is not null`).execute();
    await db.schema.createIndex("outcomes_key_uq").ifNotExists().unique().on("outcomes").columns(["model", "key"]).where(sql<boolean>`request_id is null`).execute();
    await db.schema.createIndex("outcomes_status_ix").ifNotExists().on("outcomes").columns(["status", "received_at"]).execute();

    await db.schema
      .createTable("business_events")
      .ifNotExists()
      .addColumn("id", "integer", idColumn(dialect))
      .addColumn("event_id", "text")
      .addColumn("name", "text", (col) => col.notNull())
      .addColumn("value", "double precision", (col) => col.notNull())
      .addColumn("request_id", "text")
      .addColumn("row", "integer", (col) => col.notNull().defaultTo(0))
      .addColumn("model", "text")
      .addColumn("key", "text")
      .addColumn("event_time", "text", (col) => col.notNull())
      .addColumn("received_at", "text", (col) => col.notNull())
      .addColumn("status", "text", (col) => col.notNull())
      // Filled when the event is tied to a logged prediction.
      .addColumn("version", "integer")
      .addColumn("variant", "text")
      .addColumn("prediction_at", "text")
      .addCheckConstraint("business_events_status_ck", sql`status in ('pending', 'matched', 'late', 'unmatched')`)
      .execute();
    await db.schema.createIndex("business_events_event_uq").ifNotExists().unique().on("business_events").columns(["event_id"]).where(sql<boolean>`event_id is not null`).execute();
    await db.schema.createIndex("business_events_version_ix").ifNotExists().on("business_events").columns(["model", "version", "prediction_at"]).execute();
    await db.schema.createIndex("business_events_status_ix").ifNotExists().on("business_events").columns(["status", "received_at"]).execute();
  },
};

/**
 * Safe iteration (issue 5): rollouts (champion/challenger on one endpoint), per-model rollout policies (gates,
 * automatic rollback and promotion, retraining hooks) and the audit log of every deployment action.
 */
const rollout0005: StoreMigration = {
  name: "0005_rollout",
  async up(db, dialect) {
    await db.schema
      .createTable("rollouts")
      .ifNotExists()
      .addColumn("id", "text", (col) => col.primaryKey())
      .addColumn("model", "text", (col) => col.notNull())
      .addColumn("alias", "text", (col) => col.notNull())
      .addColumn("champion", "integer", (col) => col.notNull())
      .addColumn("challenger", "integer", (col) => col.notNull())
      .addColumn("mode", "text", (col) => col.notNull())
      .addColumn("percent", "double precision", (col) => col.notNull())
      .addColumn("sticky", "integer", (col) => col.notNull())
      .addColumn("state", "text", (col) => col.notNull())
      .addColumn("settings", "text", (col) => col.notNull().defaultTo("{}"))
      .addColumn("started_at", "text", (col) => col.notNull())
      .addColumn("started_by", "text", (col) => col.notNull())
      .addColumn("ended_at", "text")
      .addColumn("ended_by", "text")
      .addColumn("reason", "text")
      .addColumn("end_reason", "text")
      .addCheckConstraint("rollouts_mode_ck", sql`mode in ('canary', 'shadow', 'ab')`)
      .addCheckConstraint("rollouts_state_ck", sql`state in ('active', 'promoted', 'aborted', 'rolled_back')`)
      .execute();
    // At most one active rollout per model and alias, even with several servers starting one at once.
    await db.schema.createIndex("rollouts_active_uq").ifNotExists().unique().on("rollouts").columns(["model", "alias"]).where(sql<boolean>`state = 'active'`).execute();
    await db.schema.createIndex("rollouts_model_ix").ifNotExists().on("rollouts").columns(["model", "started_at"]).execute();

    await db.schema
      .createTable("rollout_policies")
      .ifNotExists()
      .addColumn("model", "text", (col) => col.primaryKey())
      .addColumn("policy", "text", (col) => col.notNull())
      .addColumn("updated_at", "text", (col) => col.notNull())
      .addColumn("updated_by", "text", (col) => col.notNull())
      .execute();

    await db.schema
      .createTable("audit_log")
      .ifNotExists()
      .addColumn("id", "integer", idColumn(dialect))
      .addColumn("at", "text", (col) => col.notNull())
      .addColumn("actor", "text", (col) => col.notNull())
      .addColumn("action", "text", (col) => col.notNull())
      .addColumn("model", "text")
      .addColumn("version", "integer")
      .addColumn("rollout_id", "text")
      .addColumn("reason", "text")
      .addColumn("details", "text", (col) => col.notNull().defaultTo("{}"))
      .execute();
    await db.schema.createIndex("audit_log_model_ix").ifNotExists().on("audit_log").columns(["model", "id"]).execute();
  },
};

/**
 * Batch prediction (issue 6): runs, the rows a run rejected, the default prediction table (other tables named with
 * `--table` are made with the same shape on first use), and run locks (schedules: no overlapping runs).
 */
const batch0006: StoreMigration = {
  name: "0006_batch",
  async up(db, dialect) {
    await db.schema
      .createTable("batch_runs")
      .ifNotExists()
      .addColumn("id", "text", (col) => col.primaryKey())
      .addColumn("model", "text", (col) => col.notNull())
      .addColumn("version", "integer", (col) => col.notNull())
      .addColumn("ref", "text", (col) => col.notNull())
      .addColumn("input", "text", (col) => col.notNull())
      .addColumn("input_fingerprint", "text")
      .addColumn("target", "text", (col) => col.notNull())
      .addColumn("target_table", "text")
      .addColumn("id_column", "text", (col) => col.notNull())
      .addColumn("shard_index", "integer")
      .addColumn("shard_count", "integer")
      .addColumn("status", "text", (col) => col.notNull())
      .addColumn("rows_in", "integer", (col) => col.notNull().defaultTo(0))
      .addColumn("rows_out", "integer", (col) => col.notNull().defaultTo(0))
      .addColumn("rows_rejected", "integer", (col) => col.notNull().defaultTo(0))
      .addColumn("started_at", "text", (col) => col.notNull())
      .addColumn("heartbeat_at", "text", (col) => col.notNull())
      .addColumn("ended_at", "text")
      .addColumn("error", "text")
      .addColumn("settings", "text", (col) => col.notNull().defaultTo("{}"))
      .addCheckConstraint("batch_runs_status_ck", sql`status in ('running', 'succeeded', 'failed', 'interrupted')`)
      .execute();
    await db.schema.createIndex("batch_runs_model_ix").ifNotExists().on("batch_runs").columns(["model", "target_table", "started_at"]).execute();

    await db.schema
      .createTable("batch_rejects")
      .ifNotExists()
      .addColumn("id", "integer", idColumn(dialect))
      .addColumn("run_id", "text", (col) => col.notNull())
      .addColumn("row_number", "integer", (col) => col.notNull())
      .addColumn("row_id", "text")
      .addColumn("field", "text")
      .addColumn("reason", "text", (col) => col.notNull())
      .addColumn("created_at", "text", (col) => col.notNull())
      .execute();
    // A resumed run re-reads the rows it had rejected: one reject per row and run.
    await db.schema.createIndex("batch_rejects_uq").ifNotExists().unique().on("batch_rejects").columns(["run_id", "row_number"]).execute();

    await db.schema
      .createTable("batch_predictions")
      .ifNotExists()
      .addColumn("model", "text", (col) => col.notNull())
      .addColumn("id", "text", (col) => col.notNull())
      .addColumn("version", "integer", (col) => col.notNull())
      .addColumn("run_id", "text", (col) => col.notNull())
      .addColumn("scored_at", "text", (col) => col.notNull())
      .addColumn("outputs", "text", (col) => col.notNull())
      .addPrimaryKeyConstraint("batch_predictions_pk", ["model", "id"])
      .execute();
    await db.schema.createIndex("batch_predictions_run_ix").ifNotExists().on("batch_predictions").columns(["run_id"]).execute();

    await db.schema
      .createTable("batch_locks")
      .ifNotExists()
      .addColumn("name", "text", (col) => col.primaryKey())
      .addColumn("holder", "text", (col) => col.notNull())
      .addColumn("acquired_at", "text", (col) => col.notNull())
      .addColumn("expires_at", "text", (col) => col.notNull())
      .execute();
  },
};

/** Scheduled batch runs (issue 6): a cron expression per named schedule, and how its last run went. */
const batchSchedules0007: StoreMigration = {
  name: "0007_batch_schedules",
  async up(db) {
    await db.schema
      .createTable("batch_schedules")
      .ifNotExists()
      .addColumn("name", "text", (col) => col.primaryKey())
      .addColumn("ref", "text", (col) => col.notNull())
      .addColumn("input", "text", (col) => col.notNull())
      .addColumn("id_column", "text", (col) => col.notNull())
      .addColumn("target", "text")
      .addColumn("target_table", "text")
      .addColumn("cron", "text", (col) => col.notNull())
      .addColumn("timezone", "text")
      .addColumn("max_age_ms", "bigint")
      .addColumn("created_at", "text", (col) => col.notNull())
      .addColumn("created_by", "text", (col) => col.notNull())
      .addColumn("enabled", "integer", (col) => col.notNull().defaultTo(1))
      .addColumn("last_run_id", "text")
      .addColumn("last_started_at", "text")
      .addColumn("last_ended_at", "text")
      .addColumn("last_status", "text")
      .addColumn("last_error", "text")
      .execute();
  },
};

/**
 * Stream job status (issue 9): one row per job name and instance, written by the `mlship stream run` process (at
 * start, after every micro-batch, on a heartbeat, at the end) and read by `mlship serve` for the dashboard.
 */
const streamStatus0008: StoreMigration = {
  name: "0008_stream_status",
  async up(db) {
    await db.schema
      .createTable("stream_status")
      .ifNotExists()
      .addColumn("name", "text", (col) => col.notNull())
      .addColumn("instance", "text", (col) => col.notNull())
      .addColumn("model", "text", (col) => col.notNull())
      .addColumn("version", "integer")
      .addColumn("state", "text", (col) => col.notNull())
      .addColumn("host", "text", (col) => col.notNull())
      .addColumn("pid", "integer", (col) => col.notNull())
      .addColumn("source", "text", (col) => col.notNull())
      .addColumn("trigger", "text", (col) => col.notNull())
      .addColumn("stale_after_ms", "bigint", (col) => col.notNull())
      .addColumn("started_at", "text", (col) => col.notNull())
      .addColumn("heartbeat_at", "text", (col) => col.notNull())
      .addColumn("ended_at", "text")
      .addColumn("last_batch_at", "text")
      .addColumn("last_batch_id", "bigint")
      .addColumn("batches", "bigint", (col) => col.notNull().defaultTo(0))
      .addColumn("input_records", "bigint", (col) => col.notNull().defaultTo(0))
      .addColumn("output_records", "bigint", (col) => col.notNull().defaultTo(0))
      .addColumn("dead_letters", "bigint", (col) => col.notNull().defaultTo(0))
      .addColumn("late_records", "bigint", (col) => col.notNull().defaultTo(0))
      .addColumn("input_rows_per_second", "double precision", (col) => col.notNull().defaultTo(0))
      .addColumn("processed_rows_per_second", "double precision", (col) => col.notNull().defaultTo(0))
      .addColumn("lag", "bigint")
      .addColumn("state_records", "bigint", (col) => col.notNull().defaultTo(0))
      .addColumn("watermark", "text")
      .addColumn("last_error", "text")
      .addPrimaryKeyConstraint("stream_status_pk", ["name", "instance"])
      .addCheckConstraint("stream_status_state_ck", sql`state in ('running', 'stopped', 'failed', 'completed')`)
      .execute();
  },
};

/**
 * Issue 10: every registry write (they all bump `registry_state.revision` first, see `touchRegistryState`) notifies
 * channel `mlship_registry` with the new revision, from a trigger, so writes from any process and any code path
 * reach every replica's listener at commit. SQLite has no LISTEN/NOTIFY: nothing to do there.
 */
const registryNotify0009: StoreMigration = {
  name: "0009_registry_notify",
  async up(db, dialect) {
    if (dialect !== "postgres") return;
    await sql`
      create or replace function mlship_registry_notify() returns trigger language plpgsql as $$
      begin
        perform pg_notify('mlship_registry', new.revision::text);
        return null;
      end
      $$`.execute(db);
    await sql`drop trigger if exists registry_state_notify on registry_state`.execute(db);
    await sql`
      create trigger registry_state_notify after update on registry_state
      for each row execute function mlship_registry_notify()`.execute(db);
  },
};

/**
 * The prediction log's versions at a glance: one row per model, version and variant ('' for none: a
 * NULL would defeat the primary key) with the time span of its logged predictions. The writer keeps it in step
 * with `prediction_log` in the same transaction, so "which versions answered between A and B" reads a handful of
 * rows instead of scanning days of predictions (a synchronous SQLite scan blocked the server's event loop).
 * Backfilled from the rows already logged.
 */
const predictionVersions0010: StoreMigration = {
  name: "0010_prediction_versions",
  async up(db) {
    await db.schema
      .createTable("prediction_versions")
      .ifNotExists()
      .addColumn("model", "text", (col) => col.notNull())
      .addColumn("version", "integer", (col) => col.notNull())
      .addColumn("variant", "text", (col) => col.notNull().defaultTo(""))
      // ISO-8601 UTC text, like prediction_log.at: the oldest and newest prediction logged.
      .addColumn("first_at", "text", (col) => col.notNull())
      .addColumn("last_at", "text", (col) => col.notNull())
      .addPrimaryKeyConstraint("prediction_versions_pk", ["model", "version", "variant"])
      .execute();
    await sql`
      insert into prediction_versions (model, version, variant, first_at, last_at)
      select model, version, coalesce(variant, ''), min(at), max(at) from prediction_log
      group by model, version, coalesce(variant, '')
      on conflict (model, version, variant) do nothing`.execute(db);
  },
};

/**
 * Live monitoring across replicas: every `mlship serve` replica stores its own part of a window (its
 * `server.replicaId`), and readers merge the parts of a (size, start). Rows stored before have replica '' and stay
 * readable as they were. The window key gains the replica; the old index goes (an index, not a table constraint,
 * so SQLite can drop it too).
 */
const monitorReplicas0011: StoreMigration = {
  name: "0011_monitor_replicas",
  async up(db) {
    await db.schema
      .alterTable("monitor_profiles")
      .addColumn("replica", "text", (col) => col.notNull().defaultTo(""))
      .execute();
    await db.schema.dropIndex("monitor_profiles_window_uq").ifExists().execute();
    await db.schema
      .createIndex("monitor_profiles_window_replica_uq")
      .ifNotExists()
      .unique()
      .on("monitor_profiles")
      .columns(["model", "version", "window_size", "window_start", "replica"])
      .where(sql<boolean>`kind = 'window'`)
      .execute();
  },
};

/**
 * Quality reads only the predictions that have an outcome (`actual is not null`): a partial index on them, so a
 * report or a series over a day of traffic seeks those rows instead of checking every prediction of the range.
 */
const predictionOutcomes0012: StoreMigration = {
  name: "0012_prediction_outcomes_ix",
  async up(db) {
    await db.schema
      .createIndex("prediction_log_outcome_ix")
      .ifNotExists()
      .on("prediction_log")
      .columns(["model", "version", "at"])
      .where(sql<boolean>`actual is not null`)
      .execute();
  },
};

/**
 * Deployments (issue 12): named, stored bindings of a model reference to serving settings and an optional rollout,
 * managed over `/api/v1/deployments` and served at `/v1/deployments/{name}/invocations`. Settings and rollout are
 * kept as given (JSON text); what they changed lives in the registry (version settings) and the rollouts table.
 */
const deployments0013: StoreMigration = {
  name: "0013_deployments",
  async up(db) {
    await db.schema
      .createTable("deployments")
      .ifNotExists()
      .addColumn("name", "text", (col) => col.primaryKey())
      .addColumn("model", "text", (col) => col.notNull())
      .addColumn("settings", "text", (col) => col.notNull().defaultTo("{}"))
      .addColumn("rollout", "text")
      .addColumn("rollout_id", "text")
      .addColumn("created_at", "text", (col) => col.notNull())
      .addColumn("created_by", "text", (col) => col.notNull())
      .addColumn("updated_at", "text", (col) => col.notNull())
      .addColumn("updated_by", "text", (col) => col.notNull())
      .execute();
  },
};

/**
 * Which instance of a stream job counts a record (src/stream/claims.ts): processes sharing a NATS durable claim a
 * batch's record ids here before their aggregations and joins see them, so a message redelivered to another process
 * is counted once. Times are epoch milliseconds (compared and pruned as numbers).
 */
const streamClaims0014: StoreMigration = {
  name: "0014_stream_claims",
  async up(db) {
    await db.schema
      .createTable("stream_claims")
      .ifNotExists()
      .addColumn("stream", "text", (col) => col.notNull())
      .addColumn("record_id", "text", (col) => col.notNull())
      .addColumn("instance", "text", (col) => col.notNull())
      .addColumn("batch_id", "bigint", (col) => col.notNull())
      .addColumn("claimed_at", "bigint", (col) => col.notNull())
      .addPrimaryKeyConstraint("stream_claims_pk", ["stream", "record_id"])
      .execute();
  },
};

/** Every migration, in order. Later areas append theirs here. */
export const MIGRATIONS: readonly StoreMigration[] = [registry0001, versionSettings0002, monitor0003, feedback0004, rollout0005, batch0006, batchSchedules0007, streamStatus0008, registryNotify0009, predictionVersions0010, monitorReplicas0011, predictionOutcomes0012, deployments0013, streamClaims0014];

/** The table Kysely's Migrator records applied migrations in (and its lock table). */
export const MIGRATION_TABLE = "mlship_migration";
export const MIGRATION_LOCK_TABLE = "mlship_migration_lock";

export function migrationProvider(migrations: readonly StoreMigration[], dialect: SqlDialectName): MigrationProvider {
  return {
    getMigrations() {
      const byName: Record<string, Migration> = {};
      for (const migration of migrations) {
        byName[migration.name] = { up: (db) => migration.up(db, dialect) };
      }
      return Promise.resolve(byName);
    },
  };
}
