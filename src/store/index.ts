export { openSqlStore, touchRegistryState } from "./sql-store.js";
export type { OpenSqlStoreOptions, SqlStore } from "./sql-store.js";
export { MIGRATIONS, MIGRATION_TABLE, MIGRATION_LOCK_TABLE } from "./migrations.js";
export type { SqlDialectName, StoreMigration } from "./migrations.js";
export type * from "./schema.js";
export { isTransientConflict, isUniqueViolation, isUnavailable, mapStoreError, redactUrl } from "./errors.js";
export { LocalArtifactStore, combineFileDigests, digestDirectory } from "./artifacts.js";
export type { ArtifactFile, ArtifactStore, ArtifactVerification, StoredArtifact } from "./artifacts.js";
