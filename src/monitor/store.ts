import { sql, type Generated, type Kysely } from "kysely";
import { MlshipError } from "../core/index.js";
import { mapStoreError, type Database, type SqlStore } from "../store/index.js";
import { mergeProfiles } from "./profile/index.js";
import type { DatasetDrift, DatasetProfile, ReferenceProfile } from "./types.js";

/**
 * The `monitor_profiles` table (migrations 0003_monitor, 0011_monitor_replicas). A type alias: Kysely's withTables
 * needs index signatures.
 */
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
  /** Windows: the replica (`server.replicaId`) whose part of the window this is; '' for rows of no replica. */
  replica: Generated<string>;
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

/** Where `saveWindow` files a window: whose part of the window it is, and what its verdict covers. */
export interface SaveWindowOptions {
  /**
   * The replica whose part of the window this is (`server.replicaId`): every replica stores its own part and readers
   * merge the parts of a window. Default '': windows that are nobody's part (`mlship monitor check --windows`).
   */
  replica?: string;
  /**
   * Rows of the whole window (every replica's part saved so far) that the drift results and `insufficient` stored
   * with this part were computed on; default the part's own rows. Readers take the verdict that covers the most rows.
   */
  verdictRows?: number;
}

/** One replica's part of a stored window. */
export interface WindowPart {
  replica: string;
  window: WindowProfile;
  /** Rows the part's verdict was computed on (see `SaveWindowOptions`); undefined: the part's own rows. */
  verdictRows?: number;
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

function partRows(window: Pick<WindowProfile, "rows" | "features">): number {
  return window.rows ?? window.features.rows;
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The verdict fields of a window, without the key `undefined` where the window has none. */
function verdictFields(window: Pick<WindowProfile, "drift" | "predictionDrift" | "insufficient">): Pick<WindowProfile, "drift" | "predictionDrift" | "insufficient"> {
  return {
    ...(window.drift === undefined || window.drift === null ? {} : { drift: window.drift }),
    ...(window.predictionDrift === undefined || window.predictionDrift === null ? {} : { predictionDrift: window.predictionDrift }),
    ...(window.insufficient === undefined || window.insufficient === null ? {} : { insufficient: window.insufficient }),
  };
}

/**
 * The part whose verdict stands for the window: the one computed on the most rows (the replica that flushed last saw
 * every part saved before it), then the newest. `rows` is a part's own rows, `verdictRows` what its verdict covers.
 */
function verdictPart<T extends { verdictRows?: number | undefined; rows: number; createdAt: string }>(parts: readonly T[]): T {
  let best = parts[0] as T;
  for (const part of parts.slice(1)) {
    const covered = part.verdictRows ?? part.rows;
    const bestCovered = best.verdictRows ?? best.rows;
    if (covered > bestCovered || (covered === bestCovered && part.createdAt >= best.createdAt)) best = part;
  }
  return best;
}

/**
 * One window from the parts its replicas stored: profiles merged (`mergeProfiles`, in replica order so that every
 * reader gets the same reservoir sample), rows added up, the latest end and creation time, and the verdict of the
 * part that covers the most rows. A single part is returned as stored. Parts that cannot be merged (profiled on
 * different columns or histogram edges, as when a reference was replaced while the replicas ran) are not mixed: the
 * part with the most rows stands for the window.
 */
export function mergeWindowParts(parts: readonly WindowPart[]): WindowProfile {
  if (parts.length === 0) throw new MlshipError("MLSHIP_ERR_CORE_INTERNAL", "a window needs at least one part to merge");
  const sorted = [...parts].sort((a, b) => compareText(a.replica, b.replica));
  const windows = sorted.map((p) => ({ ...p.window, predictions: p.window.predictions ?? undefined }));
  if (windows.length === 1) return windows[0] as WindowProfile;
  const first = windows[0] as WindowProfile;
  const rows = windows.reduce((sum, w) => sum + partRows(w), 0);
  let features: DatasetProfile;
  let predictions: DatasetProfile | undefined;
  try {
    features = windows.map((w) => w.features).reduce((a, b) => mergeProfiles(a, b));
    const withPredictions = windows.flatMap((w) => (w.predictions === undefined ? [] : [w.predictions]));
    predictions = withPredictions.length === 0 ? undefined : withPredictions.reduce((a, b) => mergeProfiles(a, b));
  } catch (error) {
    if (!(error instanceof MlshipError) || error.code !== "MLSHIP_ERR_INPUT_INVALID") throw error;
    return windows.reduce((a, b) => (partRows(b) > partRows(a) ? b : a));
  }
  const verdict = verdictPart(sorted.map((p, i) => ({ ...(windows[i] as WindowProfile), rows: partRows(windows[i] as WindowProfile), verdictRows: p.verdictRows })));
  return {
    model: first.model,
    version: first.version,
    size: first.size,
    start: first.start,
    end: windows.reduce((max, w) => (w.end > max ? w.end : max), first.end),
    createdAt: windows.reduce((max, w) => (w.createdAt > max ? w.createdAt : max), first.createdAt),
    features,
    predictions,
    rows,
    ...verdictFields(verdict),
  };
}

/** Rows of a size and start, in reading order, grouped into windows. */
function groupWindows<T extends { window_size: string | null; window_start: string | null }>(rows: readonly T[], keep?: ReadonlySet<string>): T[][] {
  const groups: T[][] = [];
  let key: string | undefined;
  for (const row of rows) {
    const rowKey = `${row.window_size ?? ""}\u0000${row.window_start ?? ""}`;
    if (keep !== undefined && !keep.has(rowKey)) continue;
    if (rowKey !== key) groups.push([]);
    key = rowKey;
    (groups[groups.length - 1] as T[]).push(row);
  }
  return groups;
}

interface WindowFilter {
  since?: string;
  size?: string;
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

  /**
   * Stores a replica's part of a window (`options.replica`, default ''), replacing the part that replica stored
   * before for the same version, size and start. Readers merge the parts of a window (`mergeWindowParts`).
   */
  async saveWindow(window: WindowProfile, options: SaveWindowOptions = {}): Promise<void> {
    const start = isoText(window.start, "start");
    const end = isoText(window.end, "end");
    const createdAt = isoText(window.createdAt, "createdAt");
    const replica = options.replica ?? "";
    const normalised: WindowProfile & { verdictRows?: number } = { ...window, start, end, createdAt };
    if (options.verdictRows !== undefined) normalised.verdictRows = options.verdictRows;
    const row = {
      model: window.model,
      version: window.version,
      kind: "window",
      window_size: window.size,
      window_start: start,
      window_end: end,
      body: JSON.stringify(normalised),
      created_at: createdAt,
      replica,
    };
    await this.store.write(async (trx) => {
      await trx
        .withTables<MonitorTables>()
        .insertInto("monitor_profiles")
        .values(row)
        .onConflict((oc) =>
          oc
            .columns(["model", "version", "window_size", "window_start", "replica"])
            .where(sql<boolean>`kind = 'window'`)
            .doUpdateSet({ window_end: end, body: row.body, created_at: createdAt }),
        )
        .execute();
    });
  }

  /**
   * A version's windows, one per size and start with its replicas' parts merged (`mergeWindowParts`), oldest start
   * first (then by size label).
   */
  async listWindows(model: string, version: number, options: ListWindowsOptions = {}): Promise<WindowProfile[]> {
    const selection = await this.#selection(model, version, options);
    if (selection === undefined) return [];
    const rows = await this.#read(() =>
      this.#windowQuery(model, version, selection.filter).select(["window_size", "window_start", "replica", "body"]).orderBy("window_start").orderBy("window_size").orderBy("replica").orderBy("id").execute(),
    );
    return groupWindows(rows, selection.keep).map((parts) => mergeWindowParts(parts.map((row) => this.#part(row, model, version))));
  }

  /**
   * A version's windows without their profiles (oldest start first): span, rows and drift verdicts, one per size and
   * start (rows added up over the replicas' parts, the verdict that covers the most rows). The profiles (reservoir
   * samples, sketches) are most of a stored window, so they are cut out in SQL rather than parsed here.
   */
  async listWindowVerdicts(model: string, version: number, options: ListWindowsOptions = {}): Promise<WindowVerdicts[]> {
    const selection = await this.#selection(model, version, options);
    if (selection === undefined) return [];
    const postgres = this.store.dialect === "postgres";
    const light = postgres ? sql<string>`(body::jsonb - 'features' - 'predictions')::text` : sql<string>`json_remove(body, '$.features', '$.predictions')`;
    const featureRows = postgres ? sql<string | number | null>`(body::jsonb #>> '{features,rows}')` : sql<string | number | null>`json_extract(body, '$.features.rows')`;
    const rows = await this.#read(() =>
      this.#windowQuery(model, version, selection.filter)
        .select(["window_size", "window_start", light.as("light"), featureRows.as("feature_rows")])
        .orderBy("window_start")
        .orderBy("window_size")
        .orderBy("replica")
        .orderBy("id")
        .execute(),
    );
    return groupWindows(rows, selection.keep).map((group) => {
      const parts = group.map((row) => {
        type Light = Partial<WindowProfile> & Pick<WindowProfile, "model" | "version" | "size" | "start" | "end"> & { verdictRows?: number };
        const window = parseBody<Light>(row.light, `window of ${model}@${version}`);
        return { ...window, rows: window.rows ?? Number(row.feature_rows ?? 0), createdAt: window.createdAt ?? "" };
      });
      const first = parts[0] as (typeof parts)[number];
      const verdict = verdictPart(parts);
      const drift = verdict.drift ?? undefined;
      return {
        model: first.model,
        version: first.version,
        size: first.size,
        start: first.start,
        end: parts.reduce((max, p) => (p.end > max ? p.end : max), first.end),
        rows: parts.reduce((sum, p) => sum + p.rows, 0),
        // As `fromWindowProfile` reads a window stored without the flag.
        insufficient: verdict.insufficient ?? drift === undefined,
        drift,
        predictionDrift: verdict.predictionDrift ?? undefined,
      };
    });
  }

  /** One stored window of a version, by size and start, its replicas' parts merged; undefined when there is none. */
  async getWindow(model: string, version: number, size: string, start: Date | string): Promise<WindowProfile | undefined> {
    const parts = await this.listWindowParts(model, version, size, start);
    return parts.length === 0 ? undefined : mergeWindowParts(parts);
  }

  /** The replicas' parts of one window, as they stored them (in replica order). */
  async listWindowParts(model: string, version: number, size: string, start: Date | string): Promise<WindowPart[]> {
    const startText = isoText(start, "start");
    const rows = await this.#read(() =>
      this.#windowQuery(model, version, { size })
        .select(["window_size", "window_start", "replica", "body"])
        .where("window_start", "=", startText)
        .orderBy("replica")
        .orderBy("id")
        .execute(),
    );
    return rows.map((row) => this.#part(row, model, version)).sort((a, b) => compareText(a.replica, b.replica));
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

  /** The shared filter of the window readers: a version's windows, of one size and from `since` when given. */
  #windowQuery(model: string, version: number, filter: WindowFilter) {
    let query = this.#db.selectFrom("monitor_profiles").where("model", "=", model).where("version", "=", version).where("kind", "=", "window");
    if (filter.since !== undefined) query = query.where("window_start", ">=", filter.since);
    if (filter.size !== undefined) query = query.where("window_size", "=", filter.size);
    return query;
  }

  /**
   * What a window reader reads: the filter, and with `limit` the (size, start) keys of the newest windows (a window
   * may be stored in several parts, so the limit is on windows, not rows); undefined when nothing can match.
   */
  async #selection(model: string, version: number, options: ListWindowsOptions): Promise<{ filter: WindowFilter; keep: ReadonlySet<string> | undefined } | undefined> {
    const filter: WindowFilter = {
      ...(options.since === undefined ? {} : { since: isoText(options.since, "since") }),
      ...(options.size === undefined ? {} : { size: options.size }),
    };
    if (options.limit === undefined) return { filter, keep: undefined };
    const limit = options.limit;
    const newest = await this.#read(() =>
      this.#windowQuery(model, version, filter).select(["window_size", "window_start"]).distinct().orderBy("window_start", "desc").orderBy("window_size", "desc").limit(limit).execute(),
    );
    const oldest = newest[newest.length - 1];
    if (oldest === undefined || oldest.window_start === null) return undefined;
    return {
      filter: { ...filter, since: oldest.window_start },
      keep: new Set(newest.map((row) => `${row.window_size ?? ""}\u0000${row.window_start ?? ""}`)),
    };
  }

  #part(row: { replica: string; body: string }, model: string, version: number): WindowPart {
    const { verdictRows, ...window } = parseBody<WindowProfile & { verdictRows?: number }>(row.body, `window profile of ${model}@${version}`);
    return { replica: row.replica, window: { ...window, predictions: window.predictions ?? undefined }, ...(verdictRows === undefined ? {} : { verdictRows }) };
  }

  async #read<T>(query: () => Promise<T>): Promise<T> {
    try {
      return await query();
    } catch (error) {
      throw mapStoreError(this.store.location, error);
    }
  }
}
