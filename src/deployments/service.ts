import { MlshipError, type Logger } from "../core/index.js";
import { parseModelRef, type Registry, type ResolvedVersion } from "../registry/index.js";
import { SqlAuditLog, type AuditAction, type AuditLog, type Rollout, type RolloutService } from "../rollout/index.js";
import type { ServingSettings } from "../package/index.js";
import type { ScoringService } from "../scoring/index.js";
import type { SqlStore } from "../store/index.js";
import { DeploymentStore, deploymentNotFound } from "./store.js";
import type {
  CreateDeploymentInput,
  Deployment,
  DeploymentActor,
  DeploymentRecord,
  DeploymentRollout,
  UpdateDeploymentInput,
} from "./types.js";
import { DEPLOYMENT_NAME, invalid, mergeSettings, overlayServing, toServingSettings, validateCreate, validateDeploymentName, validateDeploymentSettings, validateUpdate } from "./validate.js";

export interface CreateDeploymentServiceOptions {
  store: SqlStore;
  registry: Registry;
  scoring: ScoringService;
  /**
   * The rollout service that routes this server's traffic (a function: the server builds it after the routes).
   * Deployments with a `rollout` start and end rollouts through it.
   */
  rollouts: () => RolloutService;
  logger: Logger;
  /**
   * Where `deployment.create|update|delete` entries are written. Default: the audit log over `store` (the table the
   * rollout module, alias moves and version archiving write, so `mlship audit` and `GET /api/v1/audit` show them).
   */
  audit?: AuditLog;
  /** How often (at most) the store's change token is read to drop cached references. Default 500 ms. */
  refreshMs?: number;
  now?: () => Date;
}

export interface DeploymentService {
  create(input: CreateDeploymentInput, actor: DeploymentActor): Promise<Deployment>;
  update(name: string, input: UpdateDeploymentInput, actor: DeploymentActor): Promise<Deployment>;
  /** Removes the binding and ends the rollout it started (if still active); version settings stay. */
  delete(name: string, actor: DeploymentActor): Promise<void>;
  get(name: string): Promise<Deployment>;
  list(): Promise<Deployment[]>;
  /**
   * The model reference a deployment serves, for the inference route: cached until the store's change token moves
   * (or this service changes a deployment), so a PATCH reaches the next request. 404 DEPLOYMENT_NOT_FOUND.
   */
  modelOf(name: string): Promise<string>;
  close(): void;
}

/** Why the last warm-up of a version failed, by deployment (kept in memory: this server's view of its loads). */
interface WarmFailure {
  model: string;
  version: number;
  error: string;
}

const MAX_CACHED = 10_000;

/** What a PATCH changed: each field of the deployment whose value differs, before and after. */
type DeploymentChanges = Partial<Record<"model" | "settings" | "rollout", { from: unknown; to: unknown }>>;

function changesOf(before: DeploymentRecord, after: DeploymentRecord): DeploymentChanges {
  const changes: DeploymentChanges = {};
  for (const key of ["model", "settings", "rollout"] as const) {
    // Both sides come from the same validation and merge, so equal values serialize alike.
    if (JSON.stringify(before[key]) !== JSON.stringify(after[key])) changes[key] = { from: before[key], to: after[key] };
  }
  return changes;
}

/** The model name of a stored reference, for the audit entry's `model` column (so `--model NAME` finds it). */
function modelNameOf(ref: string): string | undefined {
  try {
    return parseModelRef(ref).name;
  } catch {
    // A stored reference was validated when written; an unreadable one still leaves the entry (without a model).
    return undefined;
  }
}

/**
 * Deployments over the SQL store: create/update apply the settings to the resolved version (and a rollout's
 * candidate) as registry overrides, start or update the rollout, and warm the versions through scoring.
 */
export function createDeploymentService(options: CreateDeploymentServiceOptions): DeploymentService {
  const { registry, scoring, logger } = options;
  const store = new DeploymentStore(options.store);
  const now = options.now ?? (() => new Date());
  const refreshMs = options.refreshMs ?? 500;
  const failures = new Map<string, WarmFailure>();
  const audit = options.audit ?? new SqlAuditLog(options.store);

  /**
   * One audit entry per deployment change, written after the change took effect (as the rollout module does): the
   * entry's model/version are what the deployment resolves to, `details` names the deployment and its reference.
   */
  const writeAudit = async (
    action: AuditAction,
    actor: DeploymentActor,
    target: { model?: string | undefined; version?: number | undefined; rolloutId?: string | null },
    details: Record<string, unknown>,
  ): Promise<void> => {
    await audit.record({
      actor: actor.by,
      action,
      ...(target.model === undefined ? {} : { model: target.model }),
      ...(target.version === undefined ? {} : { version: target.version }),
      ...(target.rolloutId === undefined || target.rolloutId === null ? {} : { rolloutId: target.rolloutId }),
      ...(actor.reason === undefined ? {} : { reason: actor.reason }),
      details,
    });
  };

  // name -> model reference; cleared whenever the store's change token moves.
  const refs = new Map<string, string>();
  let token: string | undefined;
  let checkedAt = Number.NEGATIVE_INFINITY;
  let checking: Promise<void> | undefined;
  const fresh = async (): Promise<void> => {
    if (Date.now() - checkedAt < refreshMs) return;
    checking ??= (async () => {
      try {
        const next = await options.store.changeToken();
        if (next !== token) refs.clear();
        token = next;
        checkedAt = Date.now();
      } finally {
        checking = undefined;
      }
    })();
    await checking;
  };
  // PostgreSQL: another replica's change reaches this one at once, not at the next poll.
  const unsubscribe = options.store.onChange?.(() => {
    checkedAt = Number.NEGATIVE_INFINITY;
  });
  const changed = (): void => {
    refs.clear();
    checkedAt = Number.NEGATIVE_INFINITY;
  };

  const versionOf = async (model: string, candidate: string | number, field: string): Promise<number> => {
    if (typeof candidate === "number") {
      await registry.getVersion(model, candidate);
      return candidate;
    }
    const ref = /^\d+$/.test(candidate) ? `${model}@${candidate}` : candidate;
    const resolved = await registry.resolve(ref);
    if (resolved.version.name !== model) throw invalid(field, `must be a version of ${model}, got ${JSON.stringify(candidate)}`);
    return resolved.version.version;
  };

  /**
   * The registry overrides of `versions`, with the deployment's settings laid over them, audited with the actor.
   * Returns what undoes it (the overrides as they were), for a request that fails after this step.
   */
  const applySettings = async (record: DeploymentRecord, model: string, versions: readonly number[], actor: DeploymentActor): Promise<() => Promise<void>> => {
    const change = toServingSettings(record.settings);
    const before = new Map<number, ServingSettings>();
    const undo = async (): Promise<void> => {
      for (const [version, settings] of before) {
        await registry.setVersionSettings(model, version, settings, { by: actor.by, reason: `deployment ${record.name}: request failed, undone` });
      }
      if (before.size > 0) await scoring.refresh();
    };
    if (Object.keys(change).length === 0) return undo;
    try {
      for (const version of new Set(versions)) {
        const current = await registry.getVersionSettings(model, version);
        await registry.setVersionSettings(model, version, overlayServing(current, change), { by: actor.by, reason: `deployment ${record.name}` });
        before.set(version, current);
      }
      await scoring.refresh();
    } catch (error) {
      // A later version's override refused: the earlier ones go back too.
      await undoQuietly(record.name, undo);
      throw error;
    }
    return undo;
  };

  const undoQuietly = async (name: string, undo: () => Promise<void>): Promise<void> => {
    try {
      await undo();
    } catch (error) {
      logger.error({ err: error, deployment: name }, "deployment: the version settings of a failed request could not be restored");
    }
  };

  /** Starts, replaces or ends the deployment's rollout; returns the id of the rollout it leaves active (or null). */
  const applyRollout = async (
    record: DeploymentRecord,
    resolved: ResolvedVersion,
    rollout: DeploymentRollout | null,
    candidate: number | undefined,
    actor: DeploymentActor,
  ): Promise<string | null> => {
    const rollouts = options.rollouts();
    const reason = actor.reason ?? `deployment ${record.name}`;
    const model = resolved.version.name;
    const ours = record.rollout_id === null ? undefined : await rollouts.get(record.rollout_id).catch(() => undefined);
    const ourActive = ours?.state === "active" ? ours : undefined;
    if (rollout === null || candidate === undefined) {
      if (ourActive !== undefined) await rollouts.abort(ourActive.id, { by: actor.by, reason });
      return null;
    }
    const alias = resolved.alias;
    if (alias === undefined) {
      throw invalid("rollout", `needs the deployment's model to follow an alias (e.g. ${model}@production): ${record.model} names a fixed version`);
    }
    const wanted = { mode: rollout.strategy, percent: rollout.percent ?? 10, sticky: rollout.sticky ?? true };
    if (ourActive !== undefined) {
      const same = (r: Rollout): boolean =>
        r.model === model && r.alias === alias && r.challenger === candidate && r.mode === wanted.mode && r.percent === wanted.percent && r.sticky === wanted.sticky &&
        JSON.stringify(r.guard) === JSON.stringify(rollout.guard ?? {});
      if (same(ourActive)) return ourActive.id;
      // The rollout module has no in-place change: the old rollout ends (audited) and the new one starts.
      await rollouts.abort(ourActive.id, { by: actor.by, reason: `${reason}: rollout changed` });
    }
    const started = await rollouts.start({
      model,
      alias,
      challenger: candidate,
      ...wanted,
      ...(rollout.guard === undefined ? {} : { guard: rollout.guard }),
      by: actor.by,
      reason,
    });
    return started.id;
  };

  /** Loads the versions that will answer; a failure is remembered for the deployment's `state`, never thrown. */
  const warm = async (name: string, model: string, versions: readonly number[]): Promise<void> => {
    failures.delete(name);
    for (const version of new Set(versions)) {
      try {
        await scoring.load(`${model}@${version}`);
      } catch (error) {
        if (error instanceof MlshipError && error.code === "MLSHIP_ERR_MODEL_NOT_READY") continue;
        const message = error instanceof Error ? error.message : String(error);
        failures.set(name, { model, version, error: message });
        logger.warn({ err: error, deployment: name, model, version }, "deployment: the model failed to load");
        return;
      }
    }
  };

  const view = async (record: DeploymentRecord): Promise<Deployment> => {
    let resolved: ResolvedVersion;
    try {
      resolved = await scoring.resolve(record.model);
    } catch (error) {
      return { ...record, resolved: null, state: "failed", error: error instanceof Error ? error.message : String(error) };
    }
    const target = { model: resolved.version.name, version: resolved.version.version };
    const failure = failures.get(record.name);
    if (failure !== undefined && failure.model === target.model && failure.version === target.version) {
      return { ...record, resolved: target, state: "failed", error: failure.error };
    }
    try {
      const ready = await scoring.isReady(`${target.model}@${target.version}`);
      return { ...record, resolved: target, state: ready ? "ready" : "loading" };
    } catch (error) {
      return { ...record, resolved: target, state: "failed", error: error instanceof Error ? error.message : String(error) };
    }
  };

  // Writes to one deployment run one after another on this server: a DELETE arriving while a PATCH starts a rollout
  // waits for it (and then ends that rollout) instead of leaving the rollout running without a deployment.
  const queues = new Map<string, Promise<unknown>>();
  const serial = <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const run = (queues.get(name) ?? Promise.resolve()).then(fn);
    const tail = run.catch(() => undefined);
    queues.set(name, tail);
    void tail.then(() => {
      if (queues.get(name) === tail) queues.delete(name);
    });
    return run;
  };

  /** Settings, rollout and warm-up for a record whose model resolves to `resolved`. */
  const apply = async (record: DeploymentRecord, resolved: ResolvedVersion, actor: DeploymentActor, rolloutGiven: boolean): Promise<DeploymentRecord> => {
    const model = resolved.version.name;
    const candidate = record.rollout === null ? undefined : await versionOf(model, record.rollout.candidate, "rollout.candidate");
    // Refused before anything changes: a rollout splits an alias's traffic, so the reference must follow one.
    if (rolloutGiven && candidate !== undefined && resolved.alias === undefined) {
      throw invalid("rollout", `needs the deployment's model to follow an alias (e.g. ${model}@production): ${record.model} names a fixed version`);
    }
    if (rolloutGiven && candidate !== undefined && resolved.alias !== undefined) {
      if (candidate === resolved.version.version) {
        throw invalid("rollout.candidate", `is version ${candidate}, which ${model}@${resolved.alias} already points to: choose another version`);
      }
      // The rollout module refuses an archived challenger, but only after the settings were written: checked here.
      const version = await registry.getVersion(model, candidate);
      if (version.status === "archived") {
        throw new MlshipError("MLSHIP_ERR_ROLLOUT_CONFLICT", `rollout.candidate is version ${candidate} of ${model}, which is archived: unarchive it before rolling it out`, {
          field: "rollout.candidate",
        });
      }
      const active = await options.rollouts().active(model, resolved.alias);
      if (active !== undefined && active.id !== record.rollout_id) {
        throw new MlshipError(
          "MLSHIP_ERR_ROLLOUT_CONFLICT",
          `rollout ${active.id} of ${model}@${resolved.alias} is already active (not started by this deployment): promote or abort it first`,
          { field: "rollout" },
        );
      }
    }
    const versions = candidate === undefined ? [resolved.version.version] : [resolved.version.version, candidate];
    const undo = await applySettings(record, model, versions, actor);
    let rolloutId = record.rollout_id;
    try {
      if (rolloutGiven) rolloutId = await applyRollout(record, resolved, record.rollout, candidate, actor);
    } catch (error) {
      // The request is refused: the settings it wrote go back (a rollout another writer started meanwhile, ...).
      await undoQuietly(record.name, undo);
      throw error;
    }
    const next = { ...record, rollout_id: rolloutId };
    await warm(record.name, model, versions);
    return next;
  };

  const createOne = async (input: CreateDeploymentInput, actor: DeploymentActor): Promise<Deployment> => {
    if ((await store.find(input.name)) !== undefined) throw new MlshipError("MLSHIP_ERR_DEPLOYMENT_EXISTS", `a deployment named '${input.name}' already exists (change it with PATCH /api/v1/deployments/${input.name})`, { field: "name" });
    const resolved = await registry.resolve(input.model);
    const at = now().toISOString();
    const record: DeploymentRecord = {
      name: input.name,
      model: input.model,
      settings: input.settings ?? {},
      rollout: input.rollout ?? null,
      rollout_id: null,
      created_at: at,
      created_by: actor.by,
      updated_at: at,
      updated_by: actor.by,
    };
    // Checked before anything changes, so a bad candidate leaves no settings behind.
    if (record.rollout !== null) await versionOf(resolved.version.name, record.rollout.candidate, "rollout.candidate");
    // The row first: the primary key settles a race between two creators before either changes anything.
    await store.insert(record);
    changed();
    let applied: DeploymentRecord;
    try {
      applied = await apply(record, resolved, actor, record.rollout !== null);
    } catch (error) {
      await store.delete(record.name).catch(() => undefined);
      changed();
      throw error;
    }
    if (applied.rollout_id !== record.rollout_id) await store.update(applied);
    await writeAudit(
      "deployment.create",
      actor,
      { model: resolved.version.name, version: resolved.version.version, rolloutId: applied.rollout_id },
      { deployment: applied.name, model: applied.model, settings: applied.settings, rollout: applied.rollout },
    );
    logger.info({ deployment: record.name, model: record.model, by: actor.by }, "deployment created");
    return view(applied);
  };

  const updateOne = async (name: string, input: UpdateDeploymentInput, actor: DeploymentActor): Promise<Deployment> => {
    const current = await store.get(name);
    const model = input.model ?? current.model;
    const resolved = await registry.resolve(model);
    const record: DeploymentRecord = {
      ...current,
      model,
      // Checked again once merged: a smaller max_batch_size than the stored preferred_batch_sizes is a 400 naming
      // the request's field (not the registry's, after the first version's override was written).
      settings: input.settings === undefined ? current.settings : validateDeploymentSettings(mergeSettings(current.settings, input.settings)),
      rollout: input.rollout === undefined ? current.rollout : input.rollout,
      updated_at: now().toISOString(),
      updated_by: actor.by,
    };
    if (record.rollout !== null) await versionOf(resolved.version.name, record.rollout.candidate, "rollout.candidate");
    // The rollout is (re)applied when it was given or when the model moved (its alias may have changed).
    const applied = await apply(record, resolved, actor, input.rollout !== undefined || model !== current.model);
    await store.update(applied);
    changed();
    await writeAudit(
      "deployment.update",
      actor,
      // The rollout the change started, or the one it ended.
      { model: resolved.version.name, version: resolved.version.version, rolloutId: applied.rollout_id ?? current.rollout_id },
      { deployment: name, model, changes: changesOf(current, applied) },
    );
    logger.info({ deployment: name, model, by: actor.by }, "deployment updated");
    return view(applied);
  };

  const deleteOne = async (name: string, actor: DeploymentActor): Promise<void> => {
    const deleted = await store.delete(name);
    changed();
    failures.delete(name);
    if (deleted.rollout_id !== null) {
      const rollouts = options.rollouts();
      const rollout = await rollouts.get(deleted.rollout_id).catch(() => undefined);
      if (rollout?.state === "active") await rollouts.abort(rollout.id, { by: actor.by, reason: actor.reason ?? `deployment ${name} deleted` });
    }
    // The version it served last, when the reference still resolves (the model may be gone).
    const resolved = await registry.resolve(deleted.model).catch(() => undefined);
    await writeAudit(
      "deployment.delete",
      actor,
      { model: resolved?.version.name ?? modelNameOf(deleted.model), version: resolved?.version.version, rolloutId: deleted.rollout_id },
      { deployment: name, model: deleted.model, settings: deleted.settings, rollout: deleted.rollout },
    );
    logger.info({ deployment: name, by: actor.by }, "deployment deleted");
  };

  return {
    async create(raw, actor) {
      const input = validateCreate(raw);
      return serial(input.name, () => createOne(input, actor));
    },

    async update(name, raw, actor) {
      validateDeploymentName(name);
      const input = validateUpdate(raw, name);
      return serial(name, () => updateOne(name, input, actor));
    },

    async delete(name, actor) {
      validateDeploymentName(name);
      return serial(name, () => deleteOne(name, actor));
    },

    async get(name) {
      if (!DEPLOYMENT_NAME.test(name)) throw deploymentNotFound(name);
      return view(await store.get(name));
    },

    async list() {
      const records = await store.list();
      return Promise.all(records.map(view));
    },

    async modelOf(name) {
      // A name no deployment can have is not looked up.
      if (!DEPLOYMENT_NAME.test(name)) throw deploymentNotFound(name);
      await fresh();
      const cached = refs.get(name);
      if (cached !== undefined) return cached;
      const record = await store.get(name);
      if (refs.size >= MAX_CACHED) refs.clear();
      refs.set(name, record.model);
      return record.model;
    },

    close() {
      unsubscribe?.();
    },
  };
}
