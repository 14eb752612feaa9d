import type { ColumnType, Generated } from "kysely";

/*
 * Table types for Kysely. The same schema exists on SQLite and PostgreSQL, so columns use only portable types:
 * integer ids, text timestamps (ISO-8601 UTC, `Date#toISOString()`, which sort as text), JSON as text.
 */

/** One row (id = 1) whose revision is bumped in every registry write transaction: the PostgreSQL change token. */
export interface RegistryStateTable {
  id: number;
  /** bigint: PostgreSQL returns it as a string. */
  revision: ColumnType<string | number, number, number>;
}

export interface ModelsTable {
  id: Generated<number>;
  name: string;
  description: string | null;
  /** JSON object of string -> string. */
  tags: string;
  created_at: string;
  updated_at: string;
}

export interface ModelVersionsTable {
  id: Generated<number>;
  model_id: number;
  version: number;
  /** "ready" | "archived" */
  status: string;
  description: string | null;
  /** JSON object of string -> string. */
  tags: string;
  /** JSON object of string -> number. */
  metrics: string;
  /** Lowercase hex sha256 of the artifact (see docs/registry.md for the algorithm). */
  digest: string;
  /** The package manifest (mlship.yaml) as JSON. */
  manifest: string;
  source: string;
  created_at: string;
  created_by: string;
  archived_at: string | null;
  archived_by: string | null;
}

export interface ModelAliasesTable {
  model_id: number;
  alias: string;
  version: number;
  updated_at: string;
  updated_by: string;
}

export interface AliasEventsTable {
  id: Generated<number>;
  model_id: number;
  alias: string;
  from_version: number | null;
  to_version: number | null;
  at: string;
  /** Who made the change (`by` is an SQL keyword). */
  actor: string;
  reason: string | null;
  /** "set" | "delete" | "rollback" */
  action: string;
}

/** The registry override of a version's serving settings (see ServingSettings). */
export interface VersionSettingsTable {
  /** model_versions.id */
  version_id: number;
  /** JSON object (ServingSettings). */
  settings: string;
  updated_at: string;
  updated_by: string;
}

/** A deployment: a named binding of a model reference to serving settings and an optional rollout (0013). */
export interface DeploymentsTable {
  name: string;
  /** The model reference it serves (`name`, `name@alias`, `name@3`). */
  model: string;
  /** JSON object: the settings as given (workers, batching, cache, ...). */
  settings: string;
  /** JSON object: the rollout as given, or null. */
  rollout: string | null;
  /** The rollout this deployment started, while it may still be active. */
  rollout_id: string | null;
  created_at: string;
  created_by: string;
  updated_at: string;
  updated_by: string;
}

export interface Database {
  registry_state: RegistryStateTable;
  models: ModelsTable;
  model_versions: ModelVersionsTable;
  model_aliases: ModelAliasesTable;
  alias_events: AliasEventsTable;
  version_settings: VersionSettingsTable;
  deployments: DeploymentsTable;
}
