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

/** Every migration, in order. Later areas (prediction logs, rollouts, ...) append theirs here. */
export const MIGRATIONS: readonly StoreMigration[] = [registry0001, versionSettings0002, monitor0003];

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
