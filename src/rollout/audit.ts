import type { Generated, Kysely } from "kysely";
import { MlshipError } from "../core/index.js";
import { mapStoreError, type Database, type SqlStore } from "../store/index.js";
import type { AuditAction, AuditEntry, AuditInput, AuditLog } from "./types.js";

/** The `audit_log` table (migration 0005_rollout). */
export type AuditLogTable = {
  id: Generated<number>;
  at: string;
  actor: string;
  action: string;
  model: string | null;
  version: number | null;
  rollout_id: string | null;
  reason: string | null;
  /** JSON object. */
  details: string;
};

type AuditTables = { audit_log: AuditLogTable };
type AuditDb = Kysely<Database & AuditTables>;

export const AUDIT_ACTIONS: readonly AuditAction[] = [
  "alias.set",
  "alias.delete",
  "alias.rollback",
  "version.archive",
  "version.unarchive",
  "rollout.start",
  "rollout.promote",
  "rollout.abort",
  "rollout.rollback",
  "gate.pass",
  "gate.fail",
  "retrain.trigger",
  "policy.set",
  "deployment.create",
  "deployment.update",
  "deployment.delete",
];

const ALIAS_ACTIONS: Readonly<Record<string, AuditAction>> = { set: "alias.set", delete: "alias.delete", rollback: "alias.rollback" };

export interface AuditQuery {
  model?: string;
  action?: AuditAction;
  limit?: number;
  since?: string;
}

export const DEFAULT_AUDIT_LIMIT = 100;

function parseDetails(text: string): Record<string, unknown> {
  try {
    const parsed = JSON.parse(text) as unknown;
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
  } catch {
    // An unreadable details column must not hide the rest of the entry.
    return {};
  }
}

export function validateAuditQuery(query: AuditQuery): { model?: string; action?: AuditAction; limit: number; since?: string } {
  const out: { model?: string; action?: AuditAction; limit: number; since?: string } = { limit: DEFAULT_AUDIT_LIMIT };
  if (query.model !== undefined) out.model = query.model;
  if (query.action !== undefined) {
    if (!AUDIT_ACTIONS.includes(query.action)) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `action must be one of ${AUDIT_ACTIONS.join(", ")}, got ${JSON.stringify(query.action)}`, { field: "action" });
    }
    out.action = query.action;
  }
  if (query.limit !== undefined) {
    if (!Number.isSafeInteger(query.limit) || query.limit < 1 || query.limit > 10_000) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `limit must be a whole number from 1 to 10000, got ${String(query.limit)}`, { field: "limit" });
    }
    out.limit = query.limit;
  }
  if (query.since !== undefined) {
    const date = new Date(query.since);
    if (Number.isNaN(date.getTime())) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `since must be an ISO-8601 time, got ${JSON.stringify(query.since)}`, { field: "since" });
    }
    out.since = date.toISOString();
  }
  return out;
}

/**
 * The audit log over the SQL store. `list` also shows the registry's alias history (`alias_events`), so alias
 * moves made outside rollouts (`mlship models alias`, the registry API) appear as `alias.*` entries. Those entries
 * carry the negated alias-event id (ids of the two tables would collide) and `details.source: "registry"`; an
 * alias move this log already recorded under the same action (`details.aliasEventId`) is not listed twice.
 */
export class SqlAuditLog implements AuditLog {
  constructor(readonly store: SqlStore) {}

  get #db(): AuditDb {
    return this.store.db.withTables<AuditTables>();
  }

  async record(entry: AuditInput): Promise<AuditEntry> {
    const row = {
      at: new Date().toISOString(),
      actor: entry.actor,
      action: entry.action,
      model: entry.model ?? null,
      version: entry.version ?? null,
      rollout_id: entry.rolloutId ?? null,
      reason: entry.reason ?? null,
      details: JSON.stringify(entry.details ?? {}),
    };
    try {
      const inserted = await this.store.write(async (trx) =>
        trx.withTables<AuditTables>().insertInto("audit_log").values(row).returning("id").executeTakeFirstOrThrow(),
      );
      return {
        id: Number(inserted.id),
        at: row.at,
        actor: row.actor,
        action: entry.action,
        model: row.model,
        version: row.version,
        rolloutId: row.rollout_id,
        reason: row.reason,
        details: entry.details ?? {},
      };
    } catch (error) {
      throw mapStoreError(this.store.location, error);
    }
  }

  async list(query: AuditQuery = {}): Promise<AuditEntry[]> {
    const q = validateAuditQuery(query);
    try {
      const own = await this.#ownEntries(q);
      const wantsAliasMoves = q.action === undefined || q.action.startsWith("alias.");
      const moves = wantsAliasMoves ? await this.#aliasMoves(q) : [];
      const covered = new Set(
        own.filter((e) => e.action.startsWith("alias.") && typeof e.details.aliasEventId === "number").map((e) => `${e.action}:${String(e.details.aliasEventId)}`),
      );
      const merged = [...own, ...moves.filter((m) => !covered.has(`${m.action}:${String(m.details.aliasEventId)}`))];
      // Newest first; on the same instant this log's entries (written after the move they describe) come first, and
      // within each source the later id first (a move's id is its alias event id, negated: compare the event ids).
      merged.sort((a, b) => {
        if (a.at !== b.at) return a.at < b.at ? 1 : -1;
        if (a.id > 0 !== b.id > 0) return a.id > 0 ? -1 : 1;
        return Math.abs(b.id) - Math.abs(a.id);
      });
      return merged.slice(0, q.limit);
    } catch (error) {
      throw mapStoreError(this.store.location, error);
    }
  }

  async #ownEntries(q: ReturnType<typeof validateAuditQuery>): Promise<AuditEntry[]> {
    let query = this.#db.selectFrom("audit_log").selectAll();
    if (q.model !== undefined) query = query.where("model", "=", q.model);
    if (q.action !== undefined) query = query.where("action", "=", q.action);
    if (q.since !== undefined) query = query.where("at", ">=", q.since);
    const rows = await query.orderBy("id", "desc").limit(q.limit).execute();
    return rows.map((row) => ({
      id: Number(row.id),
      at: row.at,
      actor: row.actor,
      action: row.action as AuditAction,
      model: row.model,
      version: row.version === null ? null : Number(row.version),
      rolloutId: row.rollout_id,
      reason: row.reason,
      details: parseDetails(row.details),
    }));
  }

  async #aliasMoves(q: ReturnType<typeof validateAuditQuery>): Promise<AuditEntry[]> {
    let query = this.#db
      .selectFrom("alias_events")
      .innerJoin("models", "models.id", "alias_events.model_id")
      .select([
        "alias_events.id as id",
        "alias_events.alias as alias",
        "alias_events.from_version as from_version",
        "alias_events.to_version as to_version",
        "alias_events.at as at",
        "alias_events.actor as actor",
        "alias_events.reason as reason",
        "alias_events.action as action",
        "models.name as model",
      ]);
    if (q.model !== undefined) query = query.where("models.name", "=", q.model);
    if (q.action !== undefined) query = query.where("alias_events.action", "=", q.action.slice("alias.".length));
    if (q.since !== undefined) query = query.where("alias_events.at", ">=", q.since);
    // A few more than asked: some may be dropped as already covered by this log's own entries.
    const rows = await query.orderBy("alias_events.id", "desc").limit(q.limit * 2).execute();
    return rows.map((row) => ({
      id: -Number(row.id),
      at: row.at,
      actor: row.actor,
      action: ALIAS_ACTIONS[row.action] ?? "alias.set",
      model: row.model,
      version: row.to_version === null ? null : Number(row.to_version),
      rolloutId: null,
      reason: row.reason,
      details: {
        source: "registry",
        aliasEventId: Number(row.id),
        alias: row.alias,
        from: row.from_version === null ? null : Number(row.from_version),
        to: row.to_version === null ? null : Number(row.to_version),
      },
    }));
  }
}
