import type { Selectable } from "kysely";
import { MlshipError } from "../core/index.js";
import { isUniqueViolation, mapStoreError, touchRegistryState, type DeploymentsTable, type SqlStore } from "../store/index.js";
import type { DeploymentRecord, DeploymentRollout, DeploymentSettings } from "./types.js";

type DeploymentRow = Selectable<DeploymentsTable>;

export function deploymentNotFound(name: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_DEPLOYMENT_NOT_FOUND", `no deployment named '${name}' (list them with GET /api/v1/deployments)`, { field: "name" });
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new MlshipError("MLSHIP_ERR_CORE_INTERNAL", `the stored ${what} is not valid JSON`, { cause: error });
  }
}

function toRecord(row: DeploymentRow): DeploymentRecord {
  return {
    name: row.name,
    model: row.model,
    settings: parseJson(row.settings, `settings of deployment ${row.name}`) as DeploymentSettings,
    rollout: row.rollout === null ? null : (parseJson(row.rollout, `rollout of deployment ${row.name}`) as DeploymentRollout),
    rollout_id: row.rollout_id,
    created_at: row.created_at,
    created_by: row.created_by,
    updated_at: row.updated_at,
    updated_by: row.updated_by,
  };
}

/**
 * The `deployments` table (migration 0013_deployments). Every write also bumps the registry's change token in the
 * same transaction, so other processes sharing the store (replicas, the CLI) notice a deployment change as quickly as
 * an alias move (PostgreSQL NOTIFY, SQLite data_version).
 */
export class DeploymentStore {
  readonly #store: SqlStore;

  constructor(store: SqlStore) {
    this.#store = store;
  }

  async #guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw mapStoreError(this.#store.location, error);
    }
  }

  /** Undefined when no deployment has this name. */
  find(name: string): Promise<DeploymentRecord | undefined> {
    return this.#guard(async () => {
      const row = await this.#store.db.selectFrom("deployments").selectAll().where("name", "=", name).executeTakeFirst();
      return row === undefined ? undefined : toRecord(row);
    });
  }

  async get(name: string): Promise<DeploymentRecord> {
    const record = await this.find(name);
    if (record === undefined) throw deploymentNotFound(name);
    return record;
  }

  list(): Promise<DeploymentRecord[]> {
    return this.#guard(async () => {
      const rows = await this.#store.db.selectFrom("deployments").selectAll().orderBy("name").execute();
      return rows.map(toRecord);
    });
  }

  /** MLSHIP_ERR_DEPLOYMENT_EXISTS when the name is taken (the primary key decides, even between processes). */
  insert(record: DeploymentRecord): Promise<DeploymentRecord> {
    return this.#guard(async () => {
      try {
        await this.#store.write(async (db) => {
          await touchRegistryState(db);
          await db.insertInto("deployments").values(toRow(record)).execute();
        });
      } catch (error) {
        if (isUniqueViolation(error)) throw exists(record.name);
        throw error;
      }
      return record;
    });
  }

  /** Replaces every column but `name`, `created_at` and `created_by`. */
  update(record: DeploymentRecord): Promise<DeploymentRecord> {
    return this.#guard(async () => {
      const { name: _name, created_at: _at, created_by: _by, ...changes } = toRow(record);
      const result = await this.#store.write(async (db) => {
        await touchRegistryState(db);
        return db.updateTable("deployments").set(changes).where("name", "=", record.name).executeTakeFirst();
      });
      if (result.numUpdatedRows === 0n) throw deploymentNotFound(record.name);
      return record;
    });
  }

  /** The record deleted; MLSHIP_ERR_DEPLOYMENT_NOT_FOUND when there was none. */
  delete(name: string): Promise<DeploymentRecord> {
    return this.#guard(async () => {
      const deleted = await this.#store.write(async (db) => {
        const row = await db.selectFrom("deployments").selectAll().where("name", "=", name).executeTakeFirst();
        if (row === undefined) return undefined;
        await touchRegistryState(db);
        await db.deleteFrom("deployments").where("name", "=", name).execute();
        return row;
      });
      if (deleted === undefined) throw deploymentNotFound(name);
      return toRecord(deleted);
    });
  }
}

export function exists(name: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_DEPLOYMENT_EXISTS", `a deployment named '${name}' already exists (change it with PATCH /api/v1/deployments/${name})`, {
    field: "name",
  });
}

function toRow(record: DeploymentRecord): DeploymentsTable {
  return {
    name: record.name,
    model: record.model,
    settings: JSON.stringify(record.settings),
    rollout: record.rollout === null ? null : JSON.stringify(record.rollout),
    rollout_id: record.rollout_id,
    created_at: record.created_at,
    created_by: record.created_by,
    updated_at: record.updated_at,
    updated_by: record.updated_by,
  };
}
