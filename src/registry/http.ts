import fs from "node:fs/promises";
import path from "node:path";
import type { FastifyPluginAsync } from "fastify";
import type { AuditEntryView, ModelDetail, ModelSummary, PackageFile, TrafficTotals, VersionDetail, VersionSummary } from "../ui/contract.js";
import { versionFromPath } from "./registry.js";
import type { AliasEvent, ModelRecord, Registry, VersionRecord } from "./types.js";

/** Trailing span of the traffic figures in the model views, in seconds. */
export const TRAFFIC_WINDOW_SECONDS = 60;

/** A version loaded in this server's runtime (the part of `ScoringService.loadedModels()` these routes read). */
export interface LoadedVersionInfo {
  model: string;
  version: number;
  state: "loading" | "ready";
}

/** The active rollout of a model, as the model views show it. */
export interface ActiveRolloutView {
  id: string;
  mode: string;
  champion: number;
  challenger: number;
  percent: number;
}

/** An audit log entry (the rollout area's `AuditEntry` has this shape). */
export type AuditEntryLike = AuditEntryView;

export interface RegistryRoutesOptions {
  registry: Registry;
  /**
   * Where a version's unpacked package lives (the artifact store: `path(digest)`), for its file list; archived
   * versions are listed too. Unset: ready versions through `registry.resolve`, archived ones without files.
   */
  artifacts?: { path(digest: string): string; files?(digest: string): Promise<readonly { path: string; size: number }[] | null> };
  /** The runtime: which versions are loaded (`loadedModels`) and their effective serving settings (`settings`). */
  scoring?: {
    loadedModels(): readonly LoadedVersionInfo[];
    settings(name: string, version: number): Promise<unknown>;
  };
  /** Request figures over a trailing span; `version` undefined sums every version of the model. Unset: zeros. */
  traffic?: { totals(model: string, version: string | undefined, windowSeconds: number): TrafficTotals };
  /** The model's active rollout, if any (any alias). Unset: none shown. */
  activeRollout?: (model: string) => Promise<ActiveRolloutView | null>;
  /** The audit log (`rollouts.audit`), for a version's entries. Unset: no entries. */
  audit?: { list(query: { model?: string; limit?: number }): Promise<readonly AuditEntryLike[]> };
}

interface NameParams {
  name: string;
}

interface VersionParams {
  name: string;
  version: string;
}

/** At most this many audit entries of a version are shown; the model's newest `AUDIT_SCAN` entries are searched. */
const AUDIT_SHOWN = 100;
const AUDIT_SCAN = 10_000;

export function emptyTraffic(windowSeconds = TRAFFIC_WINDOW_SECONDS): TrafficTotals {
  return { windowSeconds, requests: 0, requestsPerSecond: 0, errors: 0, errorRate: 0, p50Ms: null, p99Ms: null };
}

/**
 * Every regular file under a package folder with its size, sorted by path. Symbolic links are listed by neither
 * target nor size and never followed, so nothing outside the folder is read.
 */
export async function listPackageFiles(root: string): Promise<PackageFile[]> {
  const files: PackageFile[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    let entries;
    try {
      entries = await fs.readdir(dir, { withFileTypes: true });
    } catch (error) {
      // A missing package folder (artifacts pruned or on another machine) shows as no files, not a failed page.
      if ((error as { code?: unknown }).code === "ENOENT" && rel === "") return;
      throw error;
    }
    for (const entry of entries) {
      const relPath = rel === "" ? entry.name : `${rel}/${entry.name}`;
      const abs = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(abs, relPath);
      else if (entry.isFile()) files.push({ path: relPath, bytes: (await fs.lstat(abs)).size });
    }
  };
  await walk(root, "");
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return files;
}

/**
 * The registry over REST for the dashboard and scripts: `GET /api/v1/models` (every model with its versions,
 * aliases, load state, traffic and active rollout), `GET /api/v1/models/{name}` (plus the alias history) and
 * `GET /api/v1/models/{name}/versions/{version}` (record with manifest, package files, effective serving settings,
 * alias moves and audit entries of the version). Read-only. Registered by the composition root next to the serving
 * routes; errors go through the host server's error handler in the native `{error, code, field}` body (unknown
 * model or version 404, a version that is not a number 400 naming `version`).
 */
export const registryRoutes: FastifyPluginAsync<RegistryRoutesOptions> = async (app, options) => {
  const { registry } = options;

  const traffic = (model: string, version: number | undefined): TrafficTotals =>
    options.traffic?.totals(model, version === undefined ? undefined : String(version), TRAFFIC_WINDOW_SECONDS) ?? emptyTraffic();

  const loadedState = (loaded: readonly LoadedVersionInfo[], model: string, version: number): "ready" | "loading" | null =>
    loaded.find((m) => m.model === model && m.version === version)?.state ?? null;

  const versionSummary = (record: VersionRecord, loaded: readonly LoadedVersionInfo[]): VersionSummary => ({
    version: record.version,
    status: record.status,
    createdAt: record.createdAt,
    createdBy: record.createdBy,
    flavor: record.manifest.flavor,
    aliases: [...record.aliases].sort(),
    loaded: loadedState(loaded, record.name, record.version),
    traffic: traffic(record.name, record.version),
  });

  const modelSummary = async (model: ModelRecord): Promise<ModelSummary> => {
    const [versions, rollout] = await Promise.all([
      registry.listVersions(model.name, { includeArchived: true }),
      options.activeRollout?.(model.name) ?? Promise.resolve(null),
    ]);
    const loaded = options.scoring?.loadedModels() ?? [];
    return {
      name: model.name,
      description: model.description,
      tags: model.tags,
      aliases: model.aliases,
      latestVersion: model.latestVersion,
      versions: versions.sort((a, b) => b.version - a.version).map((v) => versionSummary(v, loaded)),
      traffic: traffic(model.name, undefined),
      rollout: rollout === null ? null : { id: rollout.id, mode: rollout.mode, champion: rollout.champion, challenger: rollout.challenger, percent: rollout.percent },
    };
  };

  const newestFirst = (events: readonly AliasEvent[]): AliasEvent[] => [...events].sort((a, b) => b.id - a.id);

  app.get("/api/v1/models", async () => {
    const models = await registry.listModels();
    return { models: await Promise.all(models.map(modelSummary)) };
  });

  app.get<{ Params: NameParams }>("/api/v1/models/:name", async (request): Promise<ModelDetail> => {
    const model = await registry.getModel(request.params.name);
    const [summary, history] = await Promise.all([modelSummary(model), registry.aliasHistory(model.name)]);
    return { ...summary, createdAt: model.createdAt, updatedAt: model.updatedAt, aliasHistory: newestFirst(history) };
  });

  app.get<{ Params: VersionParams }>("/api/v1/models/:name/versions/:version", async (request): Promise<VersionDetail> => {
    const number = versionFromPath(request.params.version);
    const record = await registry.getVersion(request.params.name, number);
    const name = record.name;
    const packageDir =
      options.artifacts !== undefined
        ? options.artifacts.path(record.digest)
        : record.status === "ready"
          ? (await registry.resolve({ name, version: number })).packageDir
          : undefined;
    // A store that lists its files (S3: the package manifest) answers without the package on this machine.
    const listed = options.artifacts?.files === undefined ? undefined : options.artifacts.files(record.digest);
    const [files, settings, history, audit] = await Promise.all([
      listed !== undefined
        ? listed.then((found) => (found ?? []).map((f) => ({ path: f.path, bytes: f.size })).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)))
        : packageDir === undefined
          ? Promise.resolve([])
          : listPackageFiles(packageDir),
      options.scoring?.settings(name, number) ?? Promise.resolve(null),
      registry.aliasHistory(name),
      options.audit?.list({ model: name, limit: AUDIT_SCAN }) ?? Promise.resolve([]),
    ]);
    const override = await registry.getVersionSettings(name, number);
    return {
      record,
      files,
      settings: settings === null ? null : { ...withoutNames(settings), override },
      aliasHistory: newestFirst(history.filter((e) => e.from === number || e.to === number)),
      audit: audit
        .filter((e) => e.version === number || (e.action.startsWith("alias.") && fromVersion(e.details) === number))
        .slice(0, AUDIT_SHOWN)
        .map(auditView),
      loaded: loadedState(options.scoring?.loadedModels() ?? [], name, number),
    };
  });
};

/** Effective settings as scoring gives them, without the model and version the page already names. */
function withoutNames(settings: unknown): Record<string, unknown> {
  const { model: _model, version: _version, ...rest } = settings as Record<string, unknown>;
  return rest;
}

/** The version an alias move in the audit log came from (`details.from`), if it says. */
function fromVersion(details: unknown): number | undefined {
  const from = typeof details === "object" && details !== null ? (details as { from?: unknown }).from : undefined;
  return typeof from === "number" ? from : undefined;
}

function auditView(e: AuditEntryLike): AuditEntryView {
  return { id: e.id, at: e.at, actor: e.actor, action: e.action, model: e.model, version: e.version, rolloutId: e.rolloutId, reason: e.reason, details: e.details };
}

// Routes belong to the host server (its error handler answers their errors), not to an encapsulated child.
Object.defineProperty(registryRoutes, Symbol.for("skip-override"), { value: true });
