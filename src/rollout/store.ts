import type { Kysely, Selectable } from "kysely";
import { MlshipError } from "../core/index.js";
import { isUniqueViolation, mapStoreError, type Database, type SqlStore } from "../store/index.js";
import type { Rollout, RolloutGuard, RolloutMode, RolloutPolicy, RolloutState } from "./types.js";

/** The `rollouts` table (migration 0005_rollout). Type aliases: Kysely's withTables needs index signatures. */
export type RolloutsTable = {
  id: string;
  model: string;
  alias: string;
  champion: number;
  challenger: number;
  mode: string;
  percent: number;
  /** 0 or 1. */
  sticky: number;
  state: string;
  /** JSON: `{ guard }`. */
  settings: string;
  started_at: string;
  started_by: string;
  ended_at: string | null;
  ended_by: string | null;
  reason: string | null;
  end_reason: string | null;
};

export type RolloutPoliciesTable = {
  model: string;
  /** The policy as JSON (without `model`). */
  policy: string;
  updated_at: string;
  updated_by: string;
};

type RolloutTables = {
  rollouts: RolloutsTable;
  rollout_policies: RolloutPoliciesTable;
};

type RolloutDb = Kysely<Database & RolloutTables>;
type RolloutRow = Selectable<RolloutsTable>;

export const DEFAULT_ALIAS = "production";

/** The policy of a model that has none stored: new versions wait for a person, canaries take 10% sticky. */
export function defaultRolloutPolicy(model: string): RolloutPolicy {
  return { model, onNewVersion: "manual", gate: null, canary: { mode: "canary", percent: 10, sticky: true, guard: {} }, retrain: null };
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new MlshipError("MLSHIP_ERR_CORE_INTERNAL", `the stored ${what} is not valid JSON`, { cause: error });
  }
}

function toRollout(row: RolloutRow): Rollout {
  const settings = parseJson(row.settings, `settings of rollout ${row.id}`) as { guard?: RolloutGuard } | null;
  return {
    id: row.id,
    model: row.model,
    alias: row.alias,
    champion: Number(row.champion),
    challenger: Number(row.challenger),
    mode: row.mode as RolloutMode,
    percent: Number(row.percent),
    sticky: Number(row.sticky) === 1,
    state: row.state as RolloutState,
    guard: settings?.guard ?? {},
    startedAt: row.started_at,
    startedBy: row.started_by,
    reason: row.reason,
    endedAt: row.ended_at,
    endedBy: row.ended_by,
    endReason: row.end_reason,
  };
}

function rolloutNotFound(id: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_ROLLOUT_NOT_FOUND", `no rollout with id "${id}"`, { field: "id" });
}

export interface ListRolloutsQuery {
  model?: string;
  state?: RolloutState;
  limit?: number;
}

/**
 * Rollouts and rollout policies in the metadata store (SQLite or PostgreSQL). The partial unique index
 * `rollouts_active_uq` keeps one active rollout per model and alias even when two servers start one at once.
 */
export class RolloutStore {
  constructor(readonly store: SqlStore) {}

  get #db(): RolloutDb {
    return this.store.db.withTables<RolloutTables>();
  }

  /** Inserts an active rollout; MLSHIP_ERR_ROLLOUT_CONFLICT when the model's alias already has one. */
  async insert(rollout: Rollout): Promise<Rollout> {
    const row: RolloutsTable = {
      id: rollout.id,
      model: rollout.model,
      alias: rollout.alias,
      champion: rollout.champion,
      challenger: rollout.challenger,
      mode: rollout.mode,
      percent: rollout.percent,
      sticky: rollout.sticky ? 1 : 0,
      state: rollout.state,
      settings: JSON.stringify({ guard: rollout.guard }),
      started_at: rollout.startedAt,
      started_by: rollout.startedBy,
      ended_at: rollout.endedAt,
      ended_by: rollout.endedBy,
      reason: rollout.reason,
      end_reason: rollout.endReason,
    };
    try {
      await this.store.write(async (trx) => {
        await trx.withTables<RolloutTables>().insertInto("rollouts").values(row).execute();
      });
    } catch (error) {
      if (isUniqueViolation(error)) {
        throw new MlshipError(
          "MLSHIP_ERR_ROLLOUT_CONFLICT",
          `model "${rollout.model}" already has an active rollout on alias "${rollout.alias}"; promote or abort it first`,
          { field: "model" },
        );
      }
      throw mapStoreError(this.store.location, error);
    }
    return rollout;
  }

  async get(id: string): Promise<Rollout> {
    const row = await this.#read(() => this.#db.selectFrom("rollouts").selectAll().where("id", "=", id).executeTakeFirst());
    if (row === undefined) throw rolloutNotFound(id);
    return toRollout(row);
  }

  async active(model: string, alias: string = DEFAULT_ALIAS): Promise<Rollout | undefined> {
    const row = await this.#read(() =>
      this.#db.selectFrom("rollouts").selectAll().where("model", "=", model).where("alias", "=", alias).where("state", "=", "active").executeTakeFirst(),
    );
    return row === undefined ? undefined : toRollout(row);
  }

  /** Every active rollout (what the router holds). */
  async allActive(): Promise<Rollout[]> {
    const rows = await this.#read(() => this.#db.selectFrom("rollouts").selectAll().where("state", "=", "active").execute());
    return rows.map(toRollout);
  }

  /** Newest first. */
  async list(query: ListRolloutsQuery = {}): Promise<Rollout[]> {
    const rows = await this.#read(() => {
      let q = this.#db.selectFrom("rollouts").selectAll();
      if (query.model !== undefined) q = q.where("model", "=", query.model);
      if (query.state !== undefined) q = q.where("state", "=", query.state);
      q = q.orderBy("started_at", "desc").orderBy("id", "desc");
      if (query.limit !== undefined) q = q.limit(query.limit);
      return q.execute();
    });
    return rows.map(toRollout);
  }

  /**
   * Ends an active rollout. The update only matches `state = 'active'`, so of two servers ending the same rollout
   * one wins and the other gets MLSHIP_ERR_ROLLOUT_CONFLICT.
   */
  async end(id: string, state: Exclude<RolloutState, "active">, by: string, reason: string | null, at: string): Promise<Rollout> {
    const updated = await this.#write(async (db) => {
      const result = await db
        .updateTable("rollouts")
        .set({ state, ended_at: at, ended_by: by, end_reason: reason })
        .where("id", "=", id)
        .where("state", "=", "active")
        .executeTakeFirst();
      return Number(result.numUpdatedRows);
    });
    const rollout = await this.get(id);
    if (updated === 0) {
      throw new MlshipError("MLSHIP_ERR_ROLLOUT_CONFLICT", `rollout ${id} of ${rollout.model}@${rollout.alias} already ended (${rollout.state})`, { field: "id" });
    }
    return rollout;
  }

  /** The stored policy, or undefined when the model has none. */
  async getPolicy(model: string): Promise<RolloutPolicy | undefined> {
    const row = await this.#read(() => this.#db.selectFrom("rollout_policies").select("policy").where("model", "=", model).executeTakeFirst());
    if (row === undefined) return undefined;
    const stored = parseJson(row.policy, `rollout policy of ${model}`) as Omit<RolloutPolicy, "model">;
    return { ...stored, model };
  }

  async setPolicy(policy: RolloutPolicy, by: string, at: string): Promise<RolloutPolicy> {
    const { model, ...rest } = policy;
    const row = { model, policy: JSON.stringify(rest), updated_at: at, updated_by: by };
    await this.#write(async (db) => {
      await db
        .insertInto("rollout_policies")
        .values(row)
        .onConflict((oc) => oc.column("model").doUpdateSet({ policy: row.policy, updated_at: at, updated_by: by }))
        .execute();
    });
    return policy;
  }

  async #read<T>(query: () => Promise<T>): Promise<T> {
    try {
      return await query();
    } catch (error) {
      throw mapStoreError(this.store.location, error);
    }
  }

  async #write<T>(fn: (db: RolloutDb) => Promise<T>): Promise<T> {
    try {
      return await this.store.write((trx) => fn(trx.withTables<RolloutTables>()));
    } catch (error) {
      throw mapStoreError(this.store.location, error);
    }
  }
}
