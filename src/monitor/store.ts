import { sql, type Generated, type Kysely } from "kysely";
import { MlshipError } from "../core/index.js";
import { mapStoreError, type Database, type SqlStore } from "../store/index.js";
import type { DatasetDrift, DatasetProfile, ReferenceProfile } from "./types.js";

/** The `monitor_profiles` table (migration 0003_monitor). A type alias: Kysely's withTables needs index signatures. */
export type MonitorProfilesTable = {
  id: Generated<number>;
  model: string;
  version: number;
  /** "reference" | "window" */
  kind: string;
  /** Window size label ("1h", "12h", "1d"); null for references. */
  window_size: string | null;
  /** ISO-8601 UTC; null for references. */
  window_start: string | null;
  window_end: string | null;
  /** The profile as JSON. */
  body: string;
  created_at: string;
};

type MonitorTables = {
  monitor_profiles: MonitorProfilesTable;
};

type MonitorDb = Kysely<Database & MonitorTables>;

/** The profile of one production window of a model version. */
export interface WindowProfile {
  model: string;
  version: number;
  /** Window size label, e.g. "1h", "12h", "1d". */
  size: string;
  /** ISO-8601 UTC, start inclusive, end exclusive. */
  start: string;
  end: string;
  createdAt: string;
  features: DatasetProfile;
  predictions: DatasetProfile | undefined;
  /** Rows in the window, and its drift results when it had enough rows (see `windows.ts`). */
  rows?: number;
  drift?: DatasetDrift;
  predictionDrift?: DatasetDrift;
  insufficient?: boolean;
}

/** A stored window without its profiles: what a series of drift verdicts needs (`listWindowVerdicts`). */
export interface WindowVerdicts {
  model: string;
  version: number;
  size: string;
  start: string;
  end: string;
  rows: number;
  /** Too few rows for a verdict (or stored without drift results). */
  insufficient: boolean;
  drift: DatasetDrift | undefined;
  predictionDrift: DatasetDrift | undefined;
}

export interface ListWindowsOptions {
  /** Only windows starting at or after this instant. */
  since?: Date | string;
  /** Only windows of this size label. */
  size?: string;
  /** Only the newest this many windows (by start), still returned oldest first. */
  limit?: number;
}

function isoText(value: Date | string, field: string): string {
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `${field} is not a valid date: ${String(value)}`, { field });
  }
  return date.toISOString();
}

function parseBody<T>(body: string, what: string): T {
  try {
    return JSON.parse(body) as T;
  } catch (error) {
    throw new MlshipError("MLSHIP_ERR_CORE_INTERNAL", `the stored ${what} is not valid JSON`, { cause: error });
  }
}

/**
 * Reference and window profiles of model versions, in the metadata store (SQLite or PostgreSQL). Timestamps are
 * normalised to `Date#toISOString()` so that they sort and compare as text on both dialects.
 */
export class MonitorStore {
  constructor(readonly store: SqlStore) {}

  get #db(): MonitorDb {
    return this.store.db.withTables<MonitorTables>();
  }

  /** Stores a version's reference profile, replacing the one it had. */
  async saveReference(profile: ReferenceProfile): Promise<void> {
    const row = {
      model: profile.model,
      version: profile.version,
      kind: "reference",
      window_size: null,
      window_start: null,
      window_end: null,
      body: JSON.stringify(profile),
      created_at: isoText(profile.createdAt, "createdAt"),
    };
    await this.store.write(async (trx) => {
      await trx
        .withTables<MonitorTables>()
        .insertInto("monitor_profiles")
        .values(row)
        .onConflict((oc) =>
          oc
            .columns(["model", "version"])
            .where(sql<boolean>`kind = 'reference'`)
            .doUpdateSet({ body: row.body, created_at: row.created_at }),
        )
        .execute();
    });
  }

  /** Whether any version has a reference profile (live monitoring's `auto` mode starts only then). */
  async hasReferences(): Promise<boolean> {
    const row = await this.#read(() => this.#db.selectFrom("monitor_profiles").select("model").where("kind", "=", "reference").limit(1).executeTakeFirst());
    return row !== undefined;
  }

  async getReference(model: string, version: number): Promise<ReferenceProfile | undefined> {
    const row = await this.#read(() =>
      this.#db
        .selectFrom("monitor_profiles")
        .select("body")
        .where("model", "=", model)
        .where("version", "=", version)
        .where("kind", "=", "reference")
        .executeTakeFirst(),
    );
    if (row === undefined) return undefined;
    const profile = parseBody<ReferenceProfile>(row.body, `reference profile of ${model}@${version}`);
    return { ...profile, predictions: profile.predictions ?? undefined };
  }

  /** Stores a window's profile, replacing an earlier one of the same version, size and start. */
  async saveWindow(window: WindowProfile): Promise<void> {
    const start = isoText(window.start, "start");
    const end = isoText(window.end, "end");
    const createdAt = isoText(window.createdAt, "createdAt");
    const normalised: WindowProfile = { ...window, start, end, createdAt };
    const row = {
      model: window.model,
      version: window.version,
      kind: "window",
      window_size: window.size,
      window_start: start,
      window_end: end,
      body: JSON.stringify(normalised),
      created_at: createdAt,
    };
    await this.store.write(async (trx) => {
      await trx
        .withTables<MonitorTables>()
        .insertInto("monitor_profiles")
        .values(row)
        .onConflict((oc) =>
          oc
            .columns(["model", "version", "window_size", "window_start"])
            .where(sql<boolean>`kind = 'window'`)
            .doUpdateSet({ window_end: end, body: row.body, created_at: createdAt }),
        )
        .execute();
    });
  }

  /** A version's window profiles, oldest start first (then by size label). */
  async listWindows(model: string, version: number, options: ListWindowsOptions = {}): Promise<WindowProfile[]> {
    const since = options.since === undefined ? undefined : isoText(options.since, "since");
    const rows = await this.#read(() => {
      let query = this.#db
        .selectFrom("monitor_profiles")
        .select("body")
        .where("model", "=", model)
        .where("version", "=", version)
        .where("kind", "=", "window");
      if (since !== undefined) query = query.where("window_start", ">=", since);
      if (options.size !== undefined) query = query.where("window_size", "=", options.size);
      if (options.limit !== undefined) {
        return query.orderBy("window_start", "desc").orderBy("window_size", "desc").orderBy("id", "desc").limit(options.limit).execute().then((newest) => newest.reverse());
      }
      return query.orderBy("window_start").orderBy("window_size").orderBy("id").execute();
    });
    return rows.map((row) => {
      const window = parseBody<WindowProfile>(row.body, `window profile of ${model}@${version}`);
      return { ...window, predictions: window.predictions ?? undefined };
    });
  }

  /**
   * A version's windows without their profiles (oldest start first): span, rows and drift verdicts. The profiles
   * (reservoir samples, sketches) are most of a stored window, so they are cut out in SQL rather than parsed here.
   */
  async listWindowVerdicts(model: string, version: number, options: ListWindowsOptions = {}): Promise<WindowVerdicts[]> {
    const since = options.since === undefined ? undefined : isoText(options.since, "since");
    const postgres = this.store.dialect === "postgres";
    const light = postgres ? sql<string>`(body::jsonb - 'features' - 'predictions')::text` : sql<string>`json_remove(body, '$.features', '$.predictions')`;
    const featureRows = postgres ? sql<string | number | null>`(body::jsonb #>> '{features,rows}')` : sql<string | number | null>`json_extract(body, '$.features.rows')`;
    const rows = await this.#read(() => {
      let query = this.#db
        .selectFrom("monitor_profiles")
        .select([light.as("light"), featureRows.as("feature_rows")])
        .where("model", "=", model)
        .where("version", "=", version)
        .where("kind", "=", "window");
      if (since !== undefined) query = query.where("window_start", ">=", since);
      if (options.size !== undefined) query = query.where("window_size", "=", options.size);
      if (options.limit !== undefined) {
        return query.orderBy("window_start", "desc").orderBy("window_size", "desc").orderBy("id", "desc").limit(options.limit).execute().then((newest) => newest.reverse());
      }
      return query.orderBy("window_start").orderBy("window_size").orderBy("id").execute();
    });
    return rows.map((row) => {
      const window = parseBody<Partial<WindowProfile> & Pick<WindowProfile, "model" | "version" | "size" | "start" | "end">>(row.light, `window of ${model}@${version}`);
      const drift = window.drift ?? undefined;
      return {
        model: window.model,
        version: window.version,
        size: window.size,
        start: window.start,
        end: window.end,
        rows: window.rows ?? Number(row.feature_rows ?? 0),
        // As `fromWindowProfile` reads a window stored without the flag.
        insufficient: window.insufficient ?? drift === undefined,
        drift,
        predictionDrift: window.predictionDrift ?? undefined,
      };
    });
  }

  /** One stored window of a version, by size and start; undefined when there is none. */
  async getWindow(model: string, version: number, size: string, start: Date | string): Promise<WindowProfile | undefined> {
    const startText = isoText(start, "start");
    const row = await this.#read(() =>
      this.#db
        .selectFrom("monitor_profiles")
        .select("body")
        .where("model", "=", model)
        .where("version", "=", version)
        .where("kind", "=", "window")
        .where("window_size", "=", size)
        .where("window_start", "=", startText)
        .orderBy("id", "desc")
        .executeTakeFirst(),
    );
    if (row === undefined) return undefined;
    const window = parseBody<WindowProfile>(row.body, `window profile of ${model}@${version}`);
    return { ...window, predictions: window.predictions ?? undefined };
  }

  /** The window size labels stored for a version (in no particular order). */
  async windowSizes(model: string, version: number): Promise<string[]> {
    const rows = await this.#read(() =>
      this.#db
        .selectFrom("monitor_profiles")
        .select("window_size")
        .distinct()
        .where("model", "=", model)
        .where("version", "=", version)
        .where("kind", "=", "window")
        .execute(),
    );
    return rows.flatMap((row) => (row.window_size === null ? [] : [row.window_size]));
  }

  async #read<T>(query: () => Promise<T>): Promise<T> {
    try {
      return await query();
    } catch (error) {
      throw mapStoreError(this.store.location, error);
    }
  }
}
