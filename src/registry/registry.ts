import os from "node:os";
import path from "node:path";
import type { Kysely, Selectable, Updateable } from "kysely";
import { MlshipError } from "../core/index.js";
import { checkServingSettings, loadPackage, type Manifest, type ServingSettings } from "../package/index.js";
import {
  isUniqueViolation,
  mapStoreError,
  touchRegistryState,
  type AliasEventsTable,
  type ArtifactStore,
  type Database,
  type ModelVersionsTable,
  type ModelsTable,
  type SqlStore,
} from "../store/index.js";
import { LATEST, parseModelRef, validateAliasName, validateModelName } from "./refs.js";
import { rollbackTarget } from "./rollback.js";
import type {
  Actor,
  AliasEvent,
  ModelRecord,
  ModelRef,
  RegisterInput,
  Registry,
  ResolvedVersion,
  VersionRecord,
  VersionStatus,
} from "./types.js";

export interface CreateRegistryOptions {
  store: SqlStore;
  artifacts: ArtifactStore;
  /** Whether `close()` also closes the store. Default true (the registry owns it). */
  closeStore?: boolean;
}

type Db = Kysely<Database>;
type ModelRow = Selectable<ModelsTable>;
type VersionRow = Selectable<ModelVersionsTable>;
type EventRow = Selectable<AliasEventsTable>;

const DEFAULT_ALIAS = "production";
const REGISTER_ATTEMPTS = 10;

/** Who a change is attributed to when the caller does not say: MLSHIP_USER, else the OS user. */
export function defaultActor(): string {
  const fromEnv = process.env.MLSHIP_USER;
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv;
  try {
    return os.userInfo().username;
  } catch {
    // Containers often run as a uid with no passwd entry.
    return "unknown";
  }
}

function now(): string {
  return new Date().toISOString();
}

function actorName(actor: Actor | undefined): string {
  return actor?.by !== undefined && actor.by !== "" ? actor.by : defaultActor();
}

function parseObject(text: string | null): Record<string, unknown> {
  if (text === null) return {};
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

function stringMapOf(text: string | null): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(parseObject(text))) if (typeof v === "string") out[k] = v;
  return out;
}

function numberMapOf(text: string | null): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(parseObject(text))) if (typeof v === "number") out[k] = v;
  return out;
}

function checkStringMap(value: unknown, field: string): Record<string, string> {
  if (value === undefined || value === null) return {};
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${field} must be an object of string values`, { field });
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (k === "") throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${field} has an empty key`, { field });
    if (typeof v !== "string") {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${field}.${k} must be a string`, { field: `${field}.${k}` });
    }
    out[k] = v;
  }
  return out;
}

function checkNumberMap(value: unknown, field: string): Record<string, number> {
  if (value === undefined || value === null) return {};
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${field} must be an object of numbers`, { field });
  }
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(value)) {
    if (k === "") throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${field} has an empty key`, { field });
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${field}.${k} must be a finite number`, {
        field: `${field}.${k}`,
      });
    }
    out[k] = v;
  }
  return out;
}

/** Checks a registry override of serving settings; errors name the field (`batching.max_batch_size`). */
export function validateVersionSettings(settings: unknown): ServingSettings {
  return checkServingSettings(settings, "", (what, field) => new MlshipError("MLSHIP_ERR_INPUT_INVALID", what, { field }));
}

/** A version number from a URL path segment (`/versions/{version}`): a positive integer, else 400 naming `version`. */
export function versionFromPath(text: string): number {
  if (!/^[1-9][0-9]{0,8}$/.test(text)) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `version must be a positive integer, got ${JSON.stringify(text)}`, { field: "version" });
  }
  return Number(text);
}

function checkVersionNumber(version: unknown): number {
  if (typeof version !== "number" || !Number.isSafeInteger(version) || version < 1) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `version ${String(version)} is not a positive integer`, {
      field: "version",
    });
  }
  return version;
}

function modelNotFound(name: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_MODEL_NOT_FOUND", `model "${name}" is not registered`, { field: "name" });
}

/** `doing` prefixes the message with the refused operation, e.g. "cannot roll back: ". */
function aliasNotFound(model: string, alias: string, aliases: ReadonlyMap<string, number>, doing: string): MlshipError {
  const list = [...aliases.keys()].sort();
  const known = list.length === 0 ? "it has no aliases" : `its aliases: ${list.join(", ")}`;
  return new MlshipError("MLSHIP_ERR_MODEL_ALIAS_NOT_FOUND", `${doing}model "${model}" has no alias "${alias}" (${known})`, {
    field: "alias",
  });
}

function listWords(items: string[]): string {
  if (items.length <= 1) return items.join("");
  return `${items.slice(0, -1).join(", ")} and ${items.at(-1) ?? ""}`;
}

class SqlRegistry implements Registry {
  readonly #store: SqlStore;
  readonly #artifacts: ArtifactStore;
  readonly #closeStore: boolean;

  constructor(options: CreateRegistryOptions) {
    this.#store = options.store;
    this.#artifacts = options.artifacts;
    this.#closeStore = options.closeStore ?? true;
  }

  /** Store failures leave as MLSHIP_ERR_STORE_UNAVAILABLE naming the store; MlshipErrors pass unchanged. */
  async #guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw mapStoreError(this.#store.location, error);
    }
  }

  get #db(): Db {
    return this.#store.db;
  }

  // ---- row access -------------------------------------------------------------------------------------------

  async #model(db: Db, name: string): Promise<ModelRow> {
    const row = await db.selectFrom("models").selectAll().where("name", "=", name).executeTakeFirst();
    if (row === undefined) throw modelNotFound(name);
    return row;
  }

  async #latestVersion(db: Db, modelId: number): Promise<number> {
    const row = await db
      .selectFrom("model_versions")
      .select((eb) => eb.fn.max("version").as("latest"))
      .where("model_id", "=", modelId)
      .executeTakeFirst();
    return row?.latest === null || row?.latest === undefined ? 0 : Number(row.latest);
  }

  async #version(db: Db, model: ModelRow, version: number): Promise<VersionRow> {
    const row = await db
      .selectFrom("model_versions")
      .selectAll()
      .where("model_id", "=", model.id)
      .where("version", "=", version)
      .executeTakeFirst();
    if (row === undefined) {
      const latest = await this.#latestVersion(db, model.id);
      throw new MlshipError(
        "MLSHIP_ERR_MODEL_VERSION_NOT_FOUND",
        `model "${model.name}" has no version ${version} (${latest === 0 ? "it has no versions" : `latest is ${latest}`})`,
        { field: "version" },
      );
    }
    return row;
  }

  async #highestReady(db: Db, model: ModelRow): Promise<VersionRow> {
    const row = await db
      .selectFrom("model_versions")
      .selectAll()
      .where("model_id", "=", model.id)
      .where("status", "=", "ready")
      .orderBy("version", "desc")
      .limit(1)
      .executeTakeFirst();
    if (row === undefined) {
      throw new MlshipError(
        "MLSHIP_ERR_MODEL_VERSION_NOT_FOUND",
        `model "${model.name}" has no version that is not archived`,
        { field: "version" },
      );
    }
    return row;
  }

  async #aliasesOf(db: Db, modelId: number): Promise<Map<string, number>> {
    const rows = await db
      .selectFrom("model_aliases")
      .select(["alias", "version"])
      .where("model_id", "=", modelId)
      .orderBy("alias")
      .execute();
    return new Map(rows.map((r) => [r.alias, r.version]));
  }

  /** The model and the version `alias` points at now; MODEL_ALIAS_NOT_FOUND naming the aliases it has otherwise. */
  async #aliasTarget(db: Db, name: string, alias: string, doing: string): Promise<{ model: ModelRow; current: number }> {
    const model = await this.#model(db, name);
    const aliases = await this.#aliasesOf(db, model.id);
    const current = aliases.get(alias);
    if (current === undefined) throw aliasNotFound(model.name, alias, aliases, doing);
    return { model, current };
  }

  #modelRecord(row: ModelRow, aliases: Map<string, number>, latestVersion: number): ModelRecord {
    return {
      name: row.name,
      description: row.description,
      tags: stringMapOf(row.tags),
      createdAt: row.created_at,
      updatedAt: row.updated_at,
      aliases: Object.fromEntries([...aliases].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
      latestVersion,
    };
  }

  #versionRecord(model: ModelRow, row: VersionRow, aliases: Map<string, number>): VersionRecord {
    const pointing = [...aliases].filter(([, v]) => v === row.version).map(([a]) => a).sort();
    return {
      name: model.name,
      version: row.version,
      status: row.status as VersionStatus,
      description: row.description,
      tags: stringMapOf(row.tags),
      metrics: numberMapOf(row.metrics),
      digest: row.digest,
      manifest: parseObject(row.manifest) as unknown as Manifest,
      source: row.source,
      createdAt: row.created_at,
      createdBy: row.created_by,
      archivedAt: row.archived_at,
      aliases: pointing,
    };
  }

  #event(row: EventRow, name: string): AliasEvent {
    return {
      id: row.id,
      name,
      alias: row.alias,
      from: row.from_version,
      to: row.to_version,
      at: row.at,
      by: row.actor,
      reason: row.reason,
      action: row.action as AliasEvent["action"],
    };
  }

  async #versionRecordOf(db: Db, model: ModelRow, version: number): Promise<VersionRecord> {
    const row = await this.#version(db, model, version);
    return this.#versionRecord(model, row, await this.#aliasesOf(db, model.id));
  }

  async #modelRecordOf(db: Db, model: ModelRow): Promise<ModelRecord> {
    return this.#modelRecord(model, await this.#aliasesOf(db, model.id), await this.#latestVersion(db, model.id));
  }

  async #recordEvent(
    db: Db,
    model: ModelRow,
    alias: string,
    from: number | null,
    to: number | null,
    action: AliasEvent["action"],
    actor: Actor | undefined,
    at: string,
  ): Promise<AliasEvent> {
    const row = await db
      .insertInto("alias_events")
      .values({
        model_id: model.id,
        alias,
        from_version: from,
        to_version: to,
        at,
        actor: actorName(actor),
        reason: actor?.reason ?? null,
        action,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    await db.updateTable("models").set({ updated_at: at }).where("id", "=", model.id).execute();
    return this.#event(row, model.name);
  }

  /**
   * Runs `fn` on version `version` of model `name` inside one registry write (version number checked, model and
   * version looked up, NOT_FOUND errors naming them).
   */
  #writeVersion<T>(name: string, version: number, fn: (db: Db, model: ModelRow, row: VersionRow) => Promise<T>): Promise<T> {
    return this.#guard(async () => {
      checkVersionNumber(version);
      return this.#store.write(async (db) => {
        await touchRegistryState(db);
        const model = await this.#model(db, name);
        return fn(db, model, await this.#version(db, model, version));
      });
    });
  }

  /** Changes a version's row (and touches its model); returns the version as it is now. */
  async #updateVersion(db: Db, model: ModelRow, row: VersionRow, change: Updateable<ModelVersionsTable>, at: string): Promise<VersionRecord> {
    await db.updateTable("model_versions").set(change).where("id", "=", row.id).execute();
    await db.updateTable("models").set({ updated_at: at }).where("id", "=", model.id).execute();
    return this.#versionRecordOf(db, model, row.version);
  }

  // ---- Registry -----------------------------------------------------------------------------------------------

  register(input: RegisterInput): Promise<VersionRecord> {
    return this.#guard(async () => {
      const name = validateModelName(input.name);
      const inputTags = checkStringMap(input.tags, "tags");
      const inputMetrics = checkNumberMap(input.metrics, "metrics");
      if (input.description !== undefined && typeof input.description !== "string") {
        throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "description must be a string", { field: "description" });
      }
      const pkg = await loadPackage(input.packageDir);
      const stored = await this.#artifacts.putDirectory(pkg.root);
      const metadata: Partial<Manifest["metadata"]> = pkg.manifest.metadata ?? {};
      const tags = { ...checkStringMap(metadata.tags, "metadata.tags"), ...inputTags };
      const metrics = { ...checkNumberMap(metadata.metrics, "metadata.metrics"), ...inputMetrics };
      const description = input.description ?? (typeof metadata.description === "string" ? metadata.description : null);
      const source = input.source ?? path.resolve(input.packageDir);
      const by = actorName(input);

      for (let attempt = 1; ; attempt += 1) {
        try {
          const version = await this.#store.write(async (db) => {
            await touchRegistryState(db);
            const at = now();
            await db
              .insertInto("models")
              // A new model starts with its first version's description, so `models list` says what it is.
              .values({ name, description, tags: "{}", created_at: at, updated_at: at })
              .onConflict((oc) => oc.column("name").doNothing())
              .execute();
            const model = await this.#model(db, name);
            const next = (await this.#latestVersion(db, model.id)) + 1;
            await db
              .insertInto("model_versions")
              .values({
                model_id: model.id,
                version: next,
                status: "ready",
                description,
                tags: JSON.stringify(tags),
                metrics: JSON.stringify(metrics),
                digest: stored.digest,
                manifest: JSON.stringify(pkg.manifest),
                source,
                created_at: at,
                created_by: by,
                archived_at: null,
                archived_by: null,
              })
              .execute();
            await db.updateTable("models").set({ updated_at: at }).where("id", "=", model.id).execute();
            return next;
          });
          return await this.getVersion(name, version);
        } catch (error) {
          // Another writer took the same version number (or created the model) between our read and insert.
          if (!isUniqueViolation(error) || attempt >= REGISTER_ATTEMPTS) throw error;
          await new Promise((resolve) => setTimeout(resolve, Math.random() * 20 * attempt));
        }
      }
    });
  }

  listModels(): Promise<ModelRecord[]> {
    return this.#guard(async () => {
      const db = this.#db;
      const models = await db.selectFrom("models").selectAll().execute();
      const aliases = await db.selectFrom("model_aliases").select(["model_id", "alias", "version"]).orderBy("alias").execute();
      const latest = await db
        .selectFrom("model_versions")
        .select((eb) => ["model_id", eb.fn.max("version").as("latest")])
        .groupBy("model_id")
        .execute();
      const latestById = new Map(latest.map((r) => [r.model_id, Number(r.latest)]));
      // Sorted here rather than in SQL so both dialects agree (PostgreSQL collations ignore case and punctuation).
      models.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      return models.map((m) => {
        const own = new Map(aliases.filter((a) => a.model_id === m.id).map((a) => [a.alias, a.version]));
        return this.#modelRecord(m, own, latestById.get(m.id) ?? 0);
      });
    });
  }

  getModel(name: string): Promise<ModelRecord> {
    return this.#guard(async () => this.#modelRecordOf(this.#db, await this.#model(this.#db, name)));
  }

  listVersions(name: string, options: { includeArchived?: boolean } = {}): Promise<VersionRecord[]> {
    return this.#guard(async () => {
      const db = this.#db;
      const model = await this.#model(db, name);
      let query = db.selectFrom("model_versions").selectAll().where("model_id", "=", model.id);
      if (options.includeArchived !== true) query = query.where("status", "=", "ready");
      const rows = await query.orderBy("version").execute();
      const aliases = await this.#aliasesOf(db, model.id);
      return rows.map((row) => this.#versionRecord(model, row, aliases));
    });
  }

  getVersion(name: string, version: number): Promise<VersionRecord> {
    return this.#guard(async () => {
      checkVersionNumber(version);
      const db = this.#db;
      return this.#versionRecordOf(db, await this.#model(db, name), version);
    });
  }

  resolve(ref: string | ModelRef): Promise<ResolvedVersion> {
    return this.#guard(async () => {
      const parsed = typeof ref === "string" ? parseModelRef(ref) : ref;
      const db = this.#db;
      const model = await this.#model(db, parsed.name);
      const aliases = await this.#aliasesOf(db, model.id);
      const resolved = (row: VersionRow, alias?: string): ResolvedVersion => {
        const version = this.#versionRecord(model, row, aliases);
        const out: ResolvedVersion = { ref: parsed, version, packageDir: this.#artifacts.path(row.digest) };
        if (alias !== undefined) out.alias = alias;
        return out;
      };

      if (parsed.version !== undefined) {
        const row = await this.#version(db, model, parsed.version);
        if (row.status === "archived") {
          throw new MlshipError(
            "MLSHIP_ERR_MODEL_VERSION_NOT_FOUND",
            `version ${row.version} of model "${model.name}" is archived; unarchive it to use it`,
            { field: "version" },
          );
        }
        return resolved(row);
      }
      if (parsed.alias === LATEST) return resolved(await this.#highestReady(db, model));
      const alias = parsed.alias ?? (aliases.has(DEFAULT_ALIAS) ? DEFAULT_ALIAS : undefined);
      if (alias === undefined) return resolved(await this.#highestReady(db, model));
      const target = aliases.get(alias);
      if (target === undefined) throw aliasNotFound(model.name, alias, aliases, "");
      const row = await this.#version(db, model, target);
      if (row.status === "archived") {
        // Archiving is refused while an alias points at a version, so this only happens if the data was edited.
        throw new MlshipError(
          "MLSHIP_ERR_MODEL_VERSION_NOT_FOUND",
          `alias "${alias}" of model "${model.name}" points at version ${row.version}, which is archived`,
          { field: "alias" },
        );
      }
      return resolved(row, alias);
    });
  }

  setAlias(name: string, alias: string, version: number, actor?: Actor): Promise<AliasEvent> {
    return this.#guard(async () => {
      validateAliasName(alias);
      checkVersionNumber(version);
      return this.#store.write(async (db) => {
        await touchRegistryState(db);
        const model = await this.#model(db, name);
        const row = await this.#version(db, model, version);
        if (row.status === "archived") {
          throw new MlshipError(
            "MLSHIP_ERR_REGISTRY_CONFLICT",
            `cannot point alias "${alias}" at version ${version} of model "${model.name}": the version is archived (unarchive it first)`,
            { field: "version" },
          );
        }
        const at = now();
        const by = actorName(actor);
        const current = await db
          .selectFrom("model_aliases")
          .select("version")
          .where("model_id", "=", model.id)
          .where("alias", "=", alias)
          .executeTakeFirst();
        if (current === undefined) {
          await db
            .insertInto("model_aliases")
            .values({ model_id: model.id, alias, version, updated_at: at, updated_by: by })
            .execute();
        } else {
          await db
            .updateTable("model_aliases")
            .set({ version, updated_at: at, updated_by: by })
            .where("model_id", "=", model.id)
            .where("alias", "=", alias)
            .execute();
        }
        return this.#recordEvent(db, model, alias, current?.version ?? null, version, "set", actor, at);
      });
    });
  }

  deleteAlias(name: string, alias: string, actor?: Actor): Promise<AliasEvent> {
    return this.#guard(() =>
      this.#store.write(async (db) => {
        await touchRegistryState(db);
        const { model, current } = await this.#aliasTarget(db, name, alias, "");
        await db.deleteFrom("model_aliases").where("model_id", "=", model.id).where("alias", "=", alias).execute();
        return this.#recordEvent(db, model, alias, current, null, "delete", actor, now());
      }),
    );
  }

  aliasHistory(name: string, alias?: string): Promise<AliasEvent[]> {
    return this.#guard(async () => {
      const db = this.#db;
      const model = await this.#model(db, name);
      let query = db.selectFrom("alias_events").selectAll().where("model_id", "=", model.id);
      if (alias !== undefined) query = query.where("alias", "=", alias);
      const rows = await query.orderBy("id").execute();
      return rows.map((row) => this.#event(row, model.name));
    });
  }

  rollback(name: string, alias: string = DEFAULT_ALIAS, actor?: Actor): Promise<AliasEvent> {
    return this.#guard(() =>
      this.#store.write(async (db) => {
        await touchRegistryState(db);
        const { model, current } = await this.#aliasTarget(db, name, alias, "cannot roll back: ");
        const history = await db
          .selectFrom("alias_events")
          .select(["action", "to_version"])
          .where("model_id", "=", model.id)
          .where("alias", "=", alias)
          .orderBy("id")
          .execute();
        const statuses = await db
          .selectFrom("model_versions")
          .select(["version", "status"])
          .where("model_id", "=", model.id)
          .execute();
        const ready = new Set(statuses.filter((s) => s.status === "ready").map((s) => s.version));
        const target = rollbackTarget(
          history.map((h) => ({ action: h.action as AliasEvent["action"], to: h.to_version })),
          current,
          (v) => ready.has(v),
        );
        if (target === undefined) {
          throw new MlshipError(
            "MLSHIP_ERR_REGISTRY_NO_ROLLBACK",
            `alias "${alias}" of model "${model.name}" (at version ${current}) has no earlier target in its history that is not archived`,
            { field: "alias" },
          );
        }
        const at = now();
        await db
          .updateTable("model_aliases")
          .set({ version: target, updated_at: at, updated_by: actorName(actor) })
          .where("model_id", "=", model.id)
          .where("alias", "=", alias)
          .execute();
        return this.#recordEvent(db, model, alias, current, target, "rollback", actor, at);
      }),
    );
  }

  archive(name: string, version: number, actor?: Actor): Promise<VersionRecord> {
    return this.#writeVersion(name, version, async (db, model, row) => {
      const aliases = await this.#aliasesOf(db, model.id);
      if (row.status === "archived") return this.#versionRecord(model, row, aliases);
      const pointing = [...aliases].filter(([, v]) => v === version).map(([a]) => a).sort();
      if (pointing.length > 0) {
        const names = listWords(pointing.map((a) => `"${a}"`));
        throw new MlshipError(
          "MLSHIP_ERR_REGISTRY_CONFLICT",
          `cannot archive version ${version} of model "${model.name}": alias${pointing.length > 1 ? "es" : ""} ${names} ` +
            `point${pointing.length > 1 ? "" : "s"} to it; move or delete ${pointing.length > 1 ? "them" : "it"} first`,
          { field: "version", details: { aliases: pointing } },
        );
      }
      const at = now();
      return this.#updateVersion(db, model, row, { status: "archived", archived_at: at, archived_by: actorName(actor) }, at);
    });
  }

  unarchive(name: string, version: number, _actor?: Actor): Promise<VersionRecord> {
    return this.#writeVersion(name, version, async (db, model, row) => {
      if (row.status === "ready") return this.#versionRecord(model, row, await this.#aliasesOf(db, model.id));
      return this.#updateVersion(db, model, row, { status: "ready", archived_at: null, archived_by: null }, now());
    });
  }

  setModelTags(name: string, tags: Record<string, string>): Promise<ModelRecord> {
    return this.#guard(async () => {
      const checked = checkStringMap(tags, "tags");
      return this.#store.write(async (db) => {
        await touchRegistryState(db);
        const model = await this.#model(db, name);
        await db
          .updateTable("models")
          .set({ tags: JSON.stringify(checked), updated_at: now() })
          .where("id", "=", model.id)
          .execute();
        return this.#modelRecordOf(db, await this.#model(db, name));
      });
    });
  }

  setVersionTags(name: string, version: number, tags: Record<string, string>): Promise<VersionRecord> {
    return this.#writeVersion(name, version, (db, model, row) =>
      this.#updateVersion(db, model, row, { tags: JSON.stringify(checkStringMap(tags, "tags")) }, now()),
    );
  }

  setModelDescription(name: string, description: string): Promise<ModelRecord> {
    return this.#guard(async () => {
      if (typeof description !== "string") {
        throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", "description must be a string", { field: "description" });
      }
      return this.#store.write(async (db) => {
        await touchRegistryState(db);
        const model = await this.#model(db, name);
        await db.updateTable("models").set({ description, updated_at: now() }).where("id", "=", model.id).execute();
        return this.#modelRecordOf(db, await this.#model(db, name));
      });
    });
  }

  getVersionSettings(name: string, version: number): Promise<ServingSettings> {
    return this.#guard(async () => {
      checkVersionNumber(version);
      const db = this.#db;
      const model = await this.#model(db, name);
      const row = await this.#version(db, model, version);
      const stored = await db.selectFrom("version_settings").select("settings").where("version_id", "=", row.id).executeTakeFirst();
      return stored === undefined ? {} : (parseObject(stored.settings) as ServingSettings);
    });
  }

  setVersionSettings(name: string, version: number, settings: ServingSettings, actor?: Actor): Promise<ServingSettings> {
    return this.#guard(async () => {
      const checked = validateVersionSettings(settings);
      return this.#writeVersion(name, version, async (db, _model, row) => {
        const at = now();
        const values = { settings: JSON.stringify(checked), updated_at: at, updated_by: actorName(actor) };
        await db
          .insertInto("version_settings")
          .values({ version_id: row.id, ...values })
          .onConflict((oc) => oc.column("version_id").doUpdateSet(values))
          .execute();
        return checked;
      });
    });
  }

  changeToken(): Promise<string> {
    return this.#store.changeToken();
  }

  materialize(resolved: ResolvedVersion): Promise<string> {
    return this.#artifacts.materialize(resolved.version.digest);
  }

  onChange(listener: () => void): () => void {
    return this.#store.onChange?.(listener) ?? (() => undefined);
  }

  async close(): Promise<void> {
    if (this.#closeStore) await this.#store.close();
  }
}

/** A registry over a SQL store and an artifact store. */
export function createRegistry(options: CreateRegistryOptions): Registry {
  return new SqlRegistry(options);
}
