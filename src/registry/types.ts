import type { Manifest, ServingSettings } from "../package/index.js";

/** A parsed model reference: `name`, `name@3`, `name@production`, `models:/name@production`, `models:/name/3`. */
export interface ModelRef {
  name: string;
  version?: number;
  alias?: string;
}

export interface ModelRecord {
  name: string;
  description: string | null;
  tags: Record<string, string>;
  createdAt: string;
  updatedAt: string;
  /** alias -> version */
  aliases: Record<string, number>;
  /** Highest version number ever registered (archived included); 0 if none. */
  latestVersion: number;
}

export type VersionStatus = "ready" | "archived";

export interface VersionRecord {
  name: string;
  version: number;
  status: VersionStatus;
  description: string | null;
  tags: Record<string, string>;
  metrics: Record<string, number>;
  /** sha256 over the package's files (paths and contents); the artifact is stored under this digest. */
  digest: string;
  manifest: Manifest;
  /** Where the registered files came from (path or URI given at registration). */
  source: string;
  createdAt: string;
  createdBy: string;
  archivedAt: string | null;
  /** Aliases currently pointing here. */
  aliases: string[];
}

export interface AliasEvent {
  id: number;
  name: string;
  alias: string;
  /** Previous version, or null when the alias was created. */
  from: number | null;
  /** New version, or null when the alias was deleted. */
  to: number | null;
  at: string;
  by: string;
  reason: string | null;
  /** "set" | "delete" | "rollback" */
  action: "set" | "delete" | "rollback";
}

export interface ResolvedVersion {
  ref: ModelRef;
  /** The alias that was followed, if any (a bare name follows `production` when it exists). */
  alias?: string;
  version: VersionRecord;
  /**
   * Absolute path of the unpacked package folder of this version. With a remote artifact store (S3) it is a local
   * cache folder that may not exist yet: call `Registry.materialize` before reading files from it.
   */
  packageDir: string;
}

export interface Actor {
  by?: string;
  reason?: string;
}

export interface RegisterInput extends Actor {
  name: string;
  /** A package folder (with mlship.yaml) already validated by src/package. */
  packageDir: string;
  source?: string;
  description?: string;
  tags?: Record<string, string>;
  metrics?: Record<string, number>;
}

export interface Registry {
  register(input: RegisterInput): Promise<VersionRecord>;
  listModels(): Promise<ModelRecord[]>;
  getModel(name: string): Promise<ModelRecord>;
  listVersions(name: string, options?: { includeArchived?: boolean }): Promise<VersionRecord[]>;
  getVersion(name: string, version: number): Promise<VersionRecord>;
  /** Resolves per the rules in conventions.md; throws MODEL_NOT_FOUND / VERSION_NOT_FOUND / ALIAS_NOT_FOUND. */
  resolve(ref: string | ModelRef): Promise<ResolvedVersion>;
  setAlias(name: string, alias: string, version: number, actor?: Actor): Promise<AliasEvent>;
  deleteAlias(name: string, alias: string, actor?: Actor): Promise<AliasEvent>;
  aliasHistory(name: string, alias?: string): Promise<AliasEvent[]>;
  /** Moves the alias to its previous target in its history, skipping archived versions. */
  rollback(name: string, alias?: string, actor?: Actor): Promise<AliasEvent>;
  archive(name: string, version: number, actor?: Actor): Promise<VersionRecord>;
  unarchive(name: string, version: number, actor?: Actor): Promise<VersionRecord>;
  setModelTags(name: string, tags: Record<string, string>): Promise<ModelRecord>;
  setVersionTags(name: string, version: number, tags: Record<string, string>): Promise<VersionRecord>;
  setModelDescription(name: string, description: string): Promise<ModelRecord>;
  /** The runtime override of a version's serving settings ({} when none); see ServingSettings. */
  getVersionSettings(name: string, version: number): Promise<ServingSettings>;
  /** Replaces the override (merge on the caller's side); recorded with who and when; bumps the change token. */
  setVersionSettings(name: string, version: number, settings: ServingSettings, actor?: Actor): Promise<ServingSettings>;
  /** Changes whenever any registry state changes, including changes made by another process. Cheap to poll. */
  changeToken(): Promise<string>;
  /**
   * Makes sure the version's files are in `resolved.packageDir` on this machine (a remote artifact store downloads
   * and verifies them once) and returns that folder. Registries whose folders are always local may leave it out.
   */
  materialize?(resolved: ResolvedVersion): Promise<string>;
  /**
   * Calls `listener` soon after a registry change committed by any process (PostgreSQL LISTEN/NOTIFY), so caches
   * can re-check `changeToken` at once instead of at their next poll. Returns the unsubscribe function. Optional: the
   * change token stays the source of truth, and polling it alone is correct, only slower.
   */
  onChange?(listener: () => void): () => void;
  close(): Promise<void>;
}
