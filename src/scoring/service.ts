import path from "node:path";
import { EventEmitter } from "node:events";
import { performance } from "node:perf_hooks";
import { MlshipError, silentLogger, toMlshipError } from "../core/index.js";
import type { Logger, Tensor } from "../core/index.js";
import { formatModelRef, parseModelRef } from "../registry/index.js";
import type { ModelRef, ResolvedVersion } from "../registry/index.js";
import type { Manifest, ServingSettings } from "../package/index.js";
import type { LoadedModel } from "../runtime/index.js";
import { DEFAULT_SERVING, Lane, mergeServing, Scheduler, type LaneSettings } from "./batcher.js";
import { ExactMemo, predictionKey, type ExactEntry } from "./cache/index.js";
import { parseJsonBody } from "./json-body.js";
import { newRequestId } from "./request-id.js";
import { buildContext, type ModelContext } from "./context.js";
import { jsonOutputNames } from "./format.js";
import { mlflowToFeeds } from "./mlflow-input.js";
import { runPostprocess } from "./package-ops.js";
import { checkTensorFeeds } from "./tensor-input.js";
import type {
  ActiveModel,
  BatchInfo,
  CacheStats,
  LoadedInfo,
  LoadEvent,
  ModelMetadata,
  Orientation,
  ScoreOptions,
  ScoreResult,
  ScoringEvent,
  ScoringInput,
  ScoringService,
  ScoringServiceOptions,
  TrafficDecision,
  TrafficRouter,
} from "./types.js";
import { v2RequestToFeeds } from "./v2-input.js";

interface LoadEntry {
  key: string;
  name: string;
  version: number;
  flavor: string;
  promise: Promise<{ loaded: LoadedModel; seconds: number }>;
  loaded: LoadedModel | undefined;
  seconds: number | undefined;
  context: ModelContext;
  /** Set when the version was archived while loading: unload as soon as the load ends. */
  retired: boolean;
  /** The version's queue in front of the pool (admission, deadline, batching); set once loaded. */
  lane: Lane | undefined;
  /** Effective serving settings: server defaults <- package `serving` <- registry override. */
  serving: ServingSettings;
  laneSettings: LaneSettings;
}

const NOT_FOUND_CODES = new Set(["MLSHIP_ERR_MODEL_NOT_FOUND", "MLSHIP_ERR_MODEL_VERSION_NOT_FOUND", "MLSHIP_ERR_MODEL_ALIAS_NOT_FOUND", "MLSHIP_ERR_MODEL_REF_INVALID"]);

function refName(ref: string | ModelRef): string {
  if (typeof ref !== "string") return ref.name;
  const s = ref.startsWith("models:/") ? ref.slice("models:/".length) : ref;
  return s.split(/[@/]/)[0] ?? s;
}

/** Copies typed-array storage (string arrays are cloned, never moved, so they can be shared). */
function copyFeeds(feeds: Record<string, Tensor>): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(feeds)) out[name] = Array.isArray(t.data) ? t : { dtype: t.dtype, shape: t.shape, data: t.data.slice() };
  return out;
}

function utf8(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8");
}

export function runtimeKey(name: string, version: number, digest: string): string {
  return `${name}@${version}#${digest}`;
}

/** The transport-agnostic scoring pipeline: resolve, load once, validate, run, post-process, emit an event. */
export function createScoringService(options: ScoringServiceOptions): ScoringService {
  const { registry, runtimes } = options;
  const logger: Logger = options.logger ?? silentLogger();
  const refreshMs = options.refreshMs ?? 500;
  const loadWaitMs = options.loadWaitMs ?? 10_000;
  const retryAfterSeconds = options.retryAfterSeconds ?? 1;
  const maxBatchRows = options.maxBatchRows ?? DEFAULT_SERVING.batching.max_batch_size;
  const scheduler = new Scheduler(options.workers ?? 1);
  const serverServing = mergeServing(
    { ...DEFAULT_SERVING, batching: { ...DEFAULT_SERVING.batching, enabled: maxBatchRows > 1, max_batch_size: Math.max(1, maxBatchRows) } },
    options.serving,
  );
  const laneSettingsOf = (serving: ServingSettings): LaneSettings => ({
    batching: {
      enabled: serving.batching?.enabled ?? true,
      maxBatchSize: serving.batching?.max_batch_size ?? DEFAULT_SERVING.batching.max_batch_size,
      maxDelayMs: serving.batching?.max_delay_ms ?? DEFAULT_SERVING.batching.max_delay_ms,
      preferred: serving.batching?.preferred_batch_sizes ?? [],
    },
    maxQueue: serving.max_queue ?? DEFAULT_SERVING.max_queue,
    timeoutMs: serving.timeout_ms ?? DEFAULT_SERVING.timeout_ms,
    instances: Math.min(serving.instances ?? scheduler.workers, scheduler.workers),
  });
  /** Re-reads a loaded version's registry override (after a registry change). */
  const applySettings = async (entry: LoadEntry, manifest: Manifest): Promise<void> => {
    let override: ServingSettings = {};
    try {
      override = await registry.getVersionSettings(entry.name, entry.version);
    } catch (err) {
      logger.warn({ err, model: entry.name, version: entry.version }, "could not read a version's serving settings; keeping the package's");
    }
    entry.serving = mergeServing(serverServing, manifest.serving, override);
    entry.laneSettings = laneSettingsOf(entry.serving);
  };
  const maxCachedRefs = Math.max(1, options.maxCachedRefs ?? 10_000);
  const events = new EventEmitter();
  const cache = options.cache;
  const memo = cache === undefined ? undefined : new ExactMemo(options.exactMemo);
  const defaultCacheTtl = options.cacheTtlSeconds ?? 300;
  const cacheCounts = new Map<string, { model: string; version: number; hits: number; misses: number }>();
  /**
   * Seconds to keep this version's results, 0 when it opts out of the cache. Reads the loaded version's effective
   * settings (registry override included), falling back to the package's own.
   */
  const cacheTtlOf = (resolved: ResolvedVersion): number => {
    const v = resolved.version;
    const c = (entryOf(resolved)?.serving ?? v.manifest.serving)?.cache;
    return cache === undefined || c?.enabled === false ? 0 : (c?.ttl_seconds ?? defaultCacheTtl);
  };
  const countCache = (model: string, version: number, hit: boolean): void => {
    const k = `${model}@${version}`;
    let c = cacheCounts.get(k);
    if (c === undefined) cacheCounts.set(k, (c = { model, version, hits: 0, misses: 0 }));
    if (hit) c.hits++;
    else c.misses++;
  };

  let token: string | undefined;
  let lastCheck = Number.NEGATIVE_INFINITY;
  let checking: Promise<void> | undefined;
  let closed = false;
  const resolutions = new Map<string, Promise<ResolvedVersion>>();
  let names: Promise<string[]> | undefined;
  const entries = new Map<string, LoadEntry>();
  /** The entry of a resolution object (resolutions are cached, so a warm request skips building the key). */
  const entryByResolution = new WeakMap<ResolvedVersion, LoadEntry>();
  const entryOf = (resolved: ResolvedVersion): LoadEntry | undefined => {
    const known = entryByResolution.get(resolved);
    if (known !== undefined && entries.get(known.key) === known) return known;
    const v = resolved.version;
    const entry = entries.get(runtimeKey(v.name, v.version, v.digest));
    if (entry !== undefined) entryByResolution.set(resolved, entry);
    return entry;
  };

  const checkToken = (): Promise<void> => {
    checking ??= (async () => {
      try {
        const next = await registry.changeToken();
        lastCheck = performance.now();
        if (next !== token) {
          const first = token === undefined;
          token = next;
          resolutions.clear();
          names = undefined;
          if (!first) {
            await sweep();
            await Promise.all([...entries.values()].map((e) => applySettings(e, e.context.manifest)));
          }
        }
      } catch (err) {
        // With a token we keep answering from the cache; the next poll tries again.
        lastCheck = performance.now();
        if (token === undefined) throw err;
        logger.warn({ err }, "registry change token poll failed; serving cached resolutions");
      } finally {
        checking = undefined;
      }
    })();
    return checking;
  };

  const fresh = async (): Promise<void> => {
    if (performance.now() - lastCheck >= refreshMs) await checkToken();
  };

  /** Unloads versions that were archived or deleted since they were loaded. */
  const sweep = async (): Promise<void> => {
    for (const entry of [...entries.values()]) {
      let gone = false;
      try {
        const record = await registry.getVersion(entry.name, entry.version);
        gone = record.status === "archived";
      } catch (err) {
        const e = toMlshipError(err);
        gone = e.code === "MLSHIP_ERR_MODEL_NOT_FOUND" || e.code === "MLSHIP_ERR_MODEL_VERSION_NOT_FOUND";
        if (!gone) logger.warn({ err, model: entry.name, version: entry.version }, "could not check a loaded version");
      }
      if (gone) await retire(entry);
    }
  };

  const retire = async (entry: LoadEntry): Promise<void> => {
    if (entries.get(entry.key) === entry) entries.delete(entry.key);
    entry.retired = true;
    entry.lane?.close();
    if (entry.loaded === undefined) return; // the load's completion handler unloads it
    const runtime = runtimes[entry.flavor];
    try {
      await runtime?.unload(entry.key);
      logger.info({ model: entry.name, version: entry.version }, "unloaded archived model version");
    } catch (err) {
      logger.warn({ err, key: entry.key }, "unloading a model version failed");
    }
  };

  // A registry change notified by the store (PostgreSQL LISTEN/NOTIFY) is checked at once; the poll below stays as
  // the fallback for stores without notifications and for when the listening connection is down.
  const stopListening = registry.onChange?.(() => {
    if (closed) return;
    // A check already running may have read the token before this commit: check again after it.
    (checking ?? Promise.resolve())
      .then(() => checkToken())
      .catch((err: unknown) => logger.debug({ err }, "registry check after a change notification failed"));
  });

  let timer: NodeJS.Timeout | undefined;
  if (options.backgroundRefresh !== false) {
    timer = setInterval(() => {
      checkToken().catch((err: unknown) => logger.debug({ err }, "background registry poll failed"));
    }, Math.max(refreshMs, 50));
    timer.unref();
  }

  /** Parsed and normalised references by their text (pure, so kept across registry changes; bounded). */
  const refKeys = new Map<string, { parsed: ModelRef; key: string }>();
  const refKeyOf = (ref: string | ModelRef): { parsed: ModelRef; key: string } => {
    if (typeof ref !== "string") return { parsed: ref, key: formatModelRef(ref) };
    let known = refKeys.get(ref);
    if (known === undefined) {
      const parsed = parseModelRef(ref);
      known = { parsed, key: formatModelRef(parsed) };
      if (refKeys.size >= maxCachedRefs) refKeys.clear();
      refKeys.set(ref, known);
    }
    return known;
  };

  const resolveFresh = (ref: string | ModelRef): Promise<ResolvedVersion> => {
    // Normalised so that `iris@v3`, `iris@3` and `models:/iris/3` share one cache entry.
    const { parsed, key } = refKeyOf(ref);
    let pending = resolutions.get(key);
    if (pending === undefined) {
      pending = registry.resolve(parsed).then((resolved) => {
        if (resolved.version.status === "archived") {
          throw new MlshipError(
            "MLSHIP_ERR_MODEL_VERSION_NOT_FOUND",
            `model '${resolved.version.name}' version ${resolved.version.version} is archived`,
            { field: "version" },
          );
        }
        return resolved;
      });
      // Names come from clients: without a bound, requests for ever-new unknown names would grow the cache
      // until the next registry change. Starting over is cheap (one query per name).
      if (resolutions.size >= maxCachedRefs) resolutions.clear();
      resolutions.set(key, pending);
      // Unknown names are cached until the next change (cheap 404s); other failures are retried next time.
      pending.catch((err: unknown) => {
        if (!NOT_FOUND_CODES.has(toMlshipError(err).code) && resolutions.get(key) === pending) resolutions.delete(key);
      });
    }
    return pending;
  };

  /** Synchronous while the change token is fresh: a warm request pays no extra promise turn. */
  const resolve = (ref: string | ModelRef): Promise<ResolvedVersion> => {
    if (closed) return Promise.reject(new MlshipError("MLSHIP_ERR_RUNTIME_UNAVAILABLE", "the scoring service is closed"));
    try {
      if (performance.now() - lastCheck >= refreshMs) return checkToken().then(() => resolveFresh(ref));
      return resolveFresh(ref);
    } catch (err) {
      return Promise.reject(err);
    }
  };

  const listening = (): boolean => events.listenerCount("scored") > 0;
  /**
   * Listeners are monitoring hooks, each wrapped on its own: one that throws must not fail the request it
   * describes, keep the listeners after it from hearing the event, or (for load events, emitted from a promise
   * callback) surface as an unhandled rejection that ends the process.
   */
  const subscribe = <E>(name: "scored" | "loaded" | "batch", listener: (event: E) => void): (() => void) => {
    const guarded = (event: E): void => {
      try {
        listener(event);
      } catch (err) {
        logger.error({ err }, `${name === "scored" ? "scoring" : "load"} event listener failed`);
      }
    };
    events.on(name, guarded);
    return () => events.off(name, guarded);
  };

  const startLoad = (resolved: ResolvedVersion): LoadEntry => {
    const existing = entryOf(resolved);
    if (existing !== undefined) return existing;
    const v = resolved.version;
    const key = runtimeKey(v.name, v.version, v.digest);
    const flavor = v.manifest.flavor;
    const runtime = runtimes[flavor];
    if (runtime === undefined) {
      throw new MlshipError("MLSHIP_ERR_PACKAGE_UNSUPPORTED", `model '${v.name}' version ${v.version} needs the '${flavor}' runtime, which this server does not have`, {
        field: "flavor",
      });
    }
    const context = buildContext(v.name, v.version, v.manifest);
    const started = performance.now();
    // The override is read first: `instances` decides which workers load the version.
    const overrideRead = registry.getVersionSettings(v.name, v.version).catch((err: unknown) => {
      logger.warn({ err, model: v.name, version: v.version }, "could not read a version's serving settings; using the package's");
      return {} satisfies ServingSettings;
    });
    const promise = overrideRead
      .then(async (override) => {
        const instances = mergeServing(serverServing, v.manifest.serving, override).instances;
        // A remote artifact store (S3) downloads the package into its local cache first.
        const packageDir = (await registry.materialize?.(resolved)) ?? resolved.packageDir;
        const modelPath = path.join(packageDir, v.manifest.files.model);
        const pkg = { root: packageDir, manifest: v.manifest, name: v.name, version: v.version };
        return runtime.load(instances === undefined ? { key, modelPath, package: pkg } : { key, modelPath, instances, package: pkg });
      })
      .then((loaded) => ({ loaded, seconds: (performance.now() - started) / 1000 }));
    const entry: LoadEntry = {
      key,
      name: v.name,
      version: v.version,
      flavor,
      promise,
      loaded: undefined,
      seconds: undefined,
      context,
      retired: false,
      lane: undefined,
      serving: mergeServing(serverServing, v.manifest.serving),
      laneSettings: laneSettingsOf(mergeServing(serverServing, v.manifest.serving)),
    };
    void overrideRead.then((override) => {
      entry.serving = mergeServing(serverServing, v.manifest.serving, override);
      entry.laneSettings = laneSettingsOf(entry.serving);
    });
    entries.set(key, entry);
    entryByResolution.set(resolved, entry);
    promise.then(
      ({ loaded, seconds }) => {
        entry.lane = new Lane(loaded, {
          name: v.name,
          version: v.version,
          settings: () => entry.laneSettings,
          // A custom wrapper runs in a process of its own, not on the shared workers: it gets a scheduler of its own,
          // so wrappers that hang until their timeout cannot hold the runs other models need.
          scheduler: flavor === "custom" ? new Scheduler(1) : scheduler,
          retryAfterSeconds,
          onBatch: (b) => {
            if (events.listenerCount("batch") > 0) events.emit("batch", { model: v.name, version: v.version, ...b } satisfies BatchInfo);
          },
        });
        entry.loaded = loaded;
        entry.seconds = seconds;
        logger.info({ model: v.name, version: v.version, seconds }, "model version loaded");
        events.emit("loaded", { model: v.name, version: v.version, key, seconds, ok: true } satisfies LoadEvent);
        if (entry.retired) void retire(entry);
      },
      (err: unknown) => {
        const e = toMlshipError(err);
        // A failed load is forgotten so the next request tries again.
        if (entries.get(key) === entry) entries.delete(key);
        logger.error({ err, model: v.name, version: v.version }, "model version failed to load");
        const seconds = (performance.now() - started) / 1000;
        events.emit("loaded", { model: v.name, version: v.version, key, seconds, ok: false, error: { code: e.code, message: e.message } } satisfies LoadEvent);
      },
    );
    return entry;
  };

  const activeOf = (resolved: ResolvedVersion, entry: LoadEntry): ActiveModel => ({
    name: entry.name,
    version: entry.version,
    alias: resolved.alias,
    key: entry.key,
    resolved,
    manifest: resolved.version.manifest,
    loaded: entry.loaded as LoadedModel,
    loadSeconds: entry.seconds ?? 0,
  });

  type Loaded = { active: ActiveModel; context: ModelContext; lane: Lane | undefined };
  const loadedOf = (resolved: ResolvedVersion, entry: LoadEntry): Loaded => ({ active: activeOf(resolved, entry), context: entry.context, lane: entry.lane });

  const waitForLoad = async (resolved: ResolvedVersion, entry: LoadEntry): Promise<Loaded> => {
    let timeout: NodeJS.Timeout | undefined;
    const waited = new Promise<"timeout">((res) => {
      timeout = setTimeout(() => res("timeout"), loadWaitMs);
    });
    try {
      const outcome = await Promise.race([entry.promise, waited]);
      if (outcome === "timeout") {
        throw new MlshipError(
          "MLSHIP_ERR_MODEL_NOT_READY",
          `model '${entry.name}' version ${entry.version} is still loading; retry in ${retryAfterSeconds} s`,
          { retryAfterSeconds },
        );
      }
    } finally {
      clearTimeout(timeout);
    }
    entry.loaded ??= (await entry.promise).loaded;
    return loadedOf(resolved, entry);
  };

  /** The loaded version, synchronously once it is loaded (the common case costs no promise turn). */
  const loadResolved = (resolved: ResolvedVersion): Loaded | Promise<Loaded> => {
    const entry = startLoad(resolved);
    return entry.loaded === undefined ? waitForLoad(resolved, entry) : loadedOf(resolved, entry);
  };

  const load = async (ref: string | ModelRef): Promise<ActiveModel> => (await loadResolved(await resolve(ref))).active;

  const prepare = async (
    input: ScoringInput,
    context: ModelContext,
  ): Promise<{ feeds: Record<string, Tensor>; rows: number; orientation: Orientation; outputs?: string[]; id?: string; parameters?: Record<string, unknown> }> => {
    switch (input.kind) {
      case "v2": {
        const p = await v2RequestToFeeds(input.body, context, input.binary);
        return { feeds: p.feeds, rows: p.rows, orientation: "columnar", outputs: p.outputs, id: p.id, parameters: p.parameters };
      }
      case "mlflow":
      case "csv":
      case "records":
        return mlflowToFeeds(input, context);
      case "json":
        return prepare(input.protocol === "v2" ? { kind: "v2", body: parseJsonBody(utf8(input.bytes)) } : { kind: "mlflow", body: parseJsonBody(utf8(input.bytes)) }, context);
      case "tensors": {
        const feeds = await checkTensorFeeds(input.feeds, context);
        const first = Object.values(feeds)[0];
        return { feeds, rows: first === undefined || first.shape.length === 0 ? 1 : (first.shape[0] as number), orientation: "columnar" };
      }
    }
  };

  /** A request answered from the prediction cache or the exact-body memo: counted, reported, returned. */
  const cachedAnswer = (
    resolved: ResolvedVersion,
    hit: Omit<ExactEntry, "rendered">,
    rendered: Map<string, Uint8Array> | undefined,
    started: number,
    opts: ScoreOptions,
    decision: TrafficDecision | undefined,
  ): ScoreResult => {
    const v = resolved.version;
    countCache(v.name, v.version, true);
    const latencyMs = performance.now() - started;
    if (listening()) {
      events.emit("scored", { model: v.name, version: v.version, alias: resolved.alias, protocol: opts.protocol, requestId: opts.requestId, rows: hit.rows, latencyMs, ok: true, inputs: hit.inputs, outputs: hit.outputs, at: new Date(), ...eventTags(opts, decision) } satisfies ScoringEvent);
    }
    const result: ScoreResult = { model: v.name, version: v.version, alias: resolved.alias, outputs: hit.outputs, rows: hit.rows, orientation: hit.orientation, id: hit.id, parameters: hit.parameters, latencyMs, cached: true, requestId: opts.requestId as string };
    if (rendered !== undefined) result.rendered = rendered;
    const json = jsonOutputNames(v.manifest);
    if (json !== undefined) result.jsonOutputs = json;
    if (decision !== undefined) {
      result.variant = decision.variant;
      result.rolloutId = decision.rolloutId;
    }
    return result;
  };

  let router: TrafficRouter | undefined = options.router;
  const maxShadowInFlight = options.maxShadowInFlight ?? 64;
  const shadowCounts = { scored: 0, failed: 0, dropped: 0, inFlight: 0 };
  /** A version reached through a rollout keeps the alias the caller followed (one object per pair, for entryOf's cache). */
  const aliasedResolutions = new WeakMap<ResolvedVersion, Map<string, ResolvedVersion>>();
  const withAlias = (resolved: ResolvedVersion, alias: string): ResolvedVersion => {
    let byAlias = aliasedResolutions.get(resolved);
    if (byAlias === undefined) aliasedResolutions.set(resolved, (byAlias = new Map()));
    let aliased = byAlias.get(alias);
    if (aliased === undefined) byAlias.set(alias, (aliased = { ...resolved, alias }));
    return aliased;
  };
  const eventTags = (opts: ScoreOptions, decision: TrafficDecision | undefined): Pick<ScoringEvent, "key" | "variant" | "rolloutId"> => {
    const tags: Pick<ScoringEvent, "key" | "variant" | "rolloutId"> = {};
    if (opts.key !== undefined) tags.key = opts.key;
    if (opts.variant !== undefined) {
      tags.variant = opts.variant;
      if (opts.rolloutId !== undefined) tags.rolloutId = opts.rolloutId;
    } else if (decision !== undefined) {
      tags.variant = decision.variant;
      tags.rolloutId = decision.rolloutId;
    }
    return tags;
  };

  /**
   * Scores the shadow copy of a request after the caller's answer, never delaying or failing it: bounded in flight
   * (beyond the bound copies are dropped and counted), its result only reported as a `shadow` scoring event.
   */
  const scoreShadow = (name: string, version: number, input: ScoringInput, opts: ScoreOptions, rolloutId: string): void => {
    if (closed) return;
    if (shadowCounts.inFlight >= maxShadowInFlight) {
      shadowCounts.dropped++;
      return;
    }
    shadowCounts.inFlight++;
    const shadowOpts: ScoreOptions = { variant: "shadow", rolloutId };
    if (opts.protocol !== undefined) shadowOpts.protocol = opts.protocol;
    if (opts.requestId !== undefined) shadowOpts.requestId = opts.requestId;
    if (opts.key !== undefined) shadowOpts.key = opts.key;
    if (opts.outputs !== undefined) shadowOpts.outputs = opts.outputs;
    scoreOnce(`${name}@${version}`, input, shadowOpts, undefined, undefined).then(
      () => {
        shadowCounts.scored++;
      },
      () => {
        shadowCounts.failed++;
      },
    ).finally(() => {
      shadowCounts.inFlight--;
    });
  };

  const score = async (ref: string | ModelRef, input: ScoringInput, options: ScoreOptions = {}): Promise<ScoreResult> => {
    // Every prediction is logged under a request id: callers that did not give one get one back in the result.
    const opts = options.requestId === undefined ? { ...options, requestId: newRequestId() } : options;
    if (router === undefined || opts.variant !== undefined) return scoreOnce(ref, input, opts, undefined, undefined);
    let resolved: ResolvedVersion;
    try {
      resolved = await resolve(ref);
    } catch {
      // The failure is reported (event, labels) by the normal path.
      return scoreOnce(ref, input, opts, undefined, undefined);
    }
    const alias = resolved.alias;
    const decision = alias === undefined ? undefined : router.route(resolved.version.name, alias, opts.routingKey ?? opts.key);
    if (decision === undefined || alias === undefined) return scoreOnce(ref, input, opts, resolved, undefined);
    const name = resolved.version.name;
    if (decision.version !== resolved.version.version) resolved = withAlias(await resolve(`${name}@${decision.version}`), alias);
    // The runtime takes typed feeds' buffers: the shadow copy needs its own before the primary run.
    const shadowInput: ScoringInput | undefined =
      decision.shadow === undefined ? undefined : input.kind === "tensors" ? { kind: "tensors", feeds: copyFeeds(input.feeds) } : input;
    const result = await scoreOnce(ref, input, opts, resolved, decision);
    if (decision.shadow !== undefined && shadowInput !== undefined) scoreShadow(name, decision.shadow, shadowInput, opts, decision.rolloutId);
    return result;
  };

  const scoreOnce = async (
    ref: string | ModelRef,
    input: ScoringInput,
    opts: ScoreOptions,
    preResolved: ResolvedVersion | undefined,
    decision: TrafficDecision | undefined,
  ): Promise<ScoreResult> => {
    const started = performance.now();
    let model: string | undefined;
    let version: number | null = null;
    let alias: string | undefined;
    let rows = 0;
    let feeds: Record<string, Tensor> | undefined;
    try {
      const resolved = preResolved ?? (await resolve(ref));
      model = resolved.version.name;
      version = resolved.version.version;
      alias = resolved.alias;
      const loading = loadResolved(resolved);
      const { active, context, lane } = loading instanceof Promise ? await loading : loading;
      // A batch run scores each row once: hashing its chunks and keeping their outputs would only fill the cache.
      const cacheTtl = opts.protocol === "batch" ? 0 : cacheTtlOf(resolved);
      let exactKey: string | undefined;
      if (input.kind === "json") {
        if (cacheTtl > 0 && memo !== undefined) {
          exactKey = ExactMemo.key(active.key, input.protocol, opts.outputs, input.bytes);
          const hit = memo.get(exactKey);
          // An entry made while nobody listened has no inputs to report; a listener now gets them parsed again.
          if (hit !== undefined && (hit.inputs !== undefined || !listening())) return cachedAnswer(resolved, hit, hit.rendered, started, opts, decision);
        }
      }
      const prepared = await prepare(input, context);
      feeds = prepared.feeds;
      rows = prepared.rows;
      // Online requests are bounded in rows; batch jobs and stream pipelines choose their own chunk sizes.
      if (opts.protocol !== "batch" && opts.protocol !== "stream") {
        const maxRows = (entryOf(resolved)?.serving ?? mergeServing(serverServing, resolved.version.manifest.serving)).max_request_rows ?? DEFAULT_SERVING.max_request_rows;
        if (rows > maxRows) {
          throw new MlshipError("MLSHIP_ERR_INPUT_TOO_LARGE", `model '${model}' version ${version} takes at most ${maxRows} rows per request (max_request_rows), got ${rows}; split the request`, { field: "max_request_rows" });
        }
      }
      let wanted = opts.outputs ?? prepared.outputs;
      if (opts.outputs !== undefined && prepared.outputs !== undefined) wanted = prepared.outputs.filter((o) => opts.outputs?.includes(o));
      if (wanted !== undefined) {
        for (const o of wanted) {
          if (!context.outputNames.has(o)) {
            throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `model '${model}' has no output '${o}' (outputs: ${[...context.outputNames].join(", ")})`, { field: "outputs" });
          }
        }
      }
      /**
       * Files a cache hit under its exact body, for the next identical request. Only on a hit: a body seen once is
       * usually never seen again, so the first answer costs no memo entry (repeats reach it from the second).
       */
      const remember = (outputs: Record<string, Tensor>, inputs: Record<string, Tensor> | undefined): Map<string, Uint8Array> | undefined => {
        if (exactKey === undefined || memo === undefined) return undefined;
        const rendered = new Map<string, Uint8Array>();
        const entry: ExactEntry = { outputs, rows, orientation: prepared.orientation, id: prepared.id, parameters: prepared.parameters, inputs, rendered };
        memo.set(exactKey, entry, cacheTtl);
        return rendered;
      };
      // Keyed on the validated tensors (so every protocol shares entries) before the runtime takes their buffers.
      const cacheKey = cacheTtl > 0 ? predictionKey({ name: model, version: resolved.version.version, digest: resolved.version.digest }, feeds, wanted) : undefined;
      if (cacheKey !== undefined && cache !== undefined) {
        const hit = await cache.get(cacheKey);
        if (hit !== undefined) {
          const answer = { outputs: hit.outputs, rows, orientation: prepared.orientation, id: prepared.id, parameters: prepared.parameters, inputs: feeds };
          return cachedAnswer(resolved, answer, remember(hit.outputs, listening() ? feeds : undefined), started, opts, decision);
        }
        countCache(model, resolved.version.version, false);
      }
      // Post-processing may read any model output, so only a model without it can skip computing outputs.
      const runOutputs = context.postprocess.length === 0 ? wanted : undefined;
      // Small requests share a run with the others of this event-loop turn; the outputs are filtered below.
      // The runtime takes the feeds' buffers (they are transferred to a worker); the event keeps its own copy.
      const runFeeds = listening() ? copyFeeds(feeds) : feeds;
      // A batch runs every output (it serves several requests), so the output filter only goes to unbatched runs.
      const runOptions = runOutputs === undefined || lane?.batching === true ? { signal: opts.signal } : { outputs: runOutputs, signal: opts.signal };
      const raw = lane !== undefined ? await lane.run(runFeeds, rows, runOptions) : await active.loaded.run(runFeeds, runOptions);
      let outputs = context.postprocess.length === 0 ? raw : runPostprocess(raw, context);
      if (wanted !== undefined) {
        const picked: Record<string, Tensor> = {};
        for (const o of wanted) {
          const t = outputs[o];
          if (t !== undefined) picked[o] = t;
        }
        outputs = picked;
      }
      // set() encodes (copies) the outputs before its first await, so the caller may mutate or transfer them.
      if (cacheKey !== undefined) void cache?.set(cacheKey, { outputs }, cacheTtl).catch((err: unknown) => logger.warn({ err }, "prediction cache store failed"));
      const latencyMs = performance.now() - started;
      if (listening()) events.emit("scored", { model, version, alias, protocol: opts.protocol, requestId: opts.requestId, rows, latencyMs, ok: true, inputs: feeds, outputs, at: new Date(), ...eventTags(opts, decision) } satisfies ScoringEvent);
      const result: ScoreResult = { model, version, alias, outputs, rows, orientation: prepared.orientation, id: prepared.id, parameters: prepared.parameters, latencyMs, cached: cacheKey === undefined ? undefined : false, requestId: opts.requestId as string };
      const json = jsonOutputNames(resolved.version.manifest);
      if (json !== undefined) result.jsonOutputs = json;
      if (decision !== undefined) {
        result.variant = decision.variant;
        result.rolloutId = decision.rolloutId;
      }
      return result;
    } catch (err) {
      const e = toMlshipError(err);
      model ??= refName(ref);
      const latencyMs = performance.now() - started;
      const error = e.field === undefined ? { code: e.code, message: e.message } : { code: e.code, message: e.message, field: e.field };
      if (listening()) events.emit("scored", { model, version, alias, protocol: opts.protocol, requestId: opts.requestId, rows, latencyMs, ok: false, error, inputs: feeds, at: new Date(), ...eventTags(opts, decision) } satisfies ScoringEvent);
      if (version === null) throw e;
      // Transports label errors (metrics, headers) with the version that refused the request.
      throw new MlshipError(e.code, e.message, {
        field: e.field,
        cause: e.cause ?? e,
        details: { ...e.details, model, version },
        retryAfterSeconds: e.retryAfterSeconds,
      });
    }
  };

  const metadata = async (ref: string | ModelRef): Promise<ModelMetadata> => {
    const resolved = await resolve(ref);
    const v = resolved.version;
    const existing = entries.get(runtimeKey(v.name, v.version, v.digest));
    const context = existing?.context ?? buildContext(v.name, v.version, v.manifest);
    const versions = (await registry.listVersions(v.name)).filter((x) => x.status !== "archived").map((x) => x.version).sort((a, b) => a - b);
    return {
      name: v.name,
      version: v.version,
      alias: resolved.alias,
      versions,
      platform: v.manifest.flavor === "onnx" ? "onnx_onnxv1" : v.manifest.flavor,
      signature: context.publicSignature,
      columns: context.columns === undefined ? undefined : [...context.columns],
    };
  };

  const isReady = async (ref: string | ModelRef): Promise<boolean> => {
    const resolved = await resolve(ref);
    const entry = startLoad(resolved);
    return entry.loaded !== undefined;
  };

  const modelNames = async (): Promise<string[]> => {
    await fresh();
    if (names === undefined) {
      const pending = registry.listModels().then((models) => models.map((m) => m.name));
      names = pending;
      pending.catch(() => {
        if (names === pending) names = undefined;
      });
    }
    return names;
  };

  return {
    resolve,
    load,
    isReady,
    metadata,
    score,
    modelNames,
    async registryReachable() {
      try {
        await registry.changeToken();
        return true;
      } catch {
        return false;
      }
    },
    async servingReady() {
      try {
        await registry.changeToken();
        return true;
      } catch {
        return [...entries.values()].some((e) => e.loaded !== undefined);
      }
    },
    loadedModels(): LoadedInfo[] {
      return [...entries.values()].map((e) => ({
        model: e.name,
        version: e.version,
        key: e.key,
        state: e.loaded === undefined ? "loading" : "ready",
        loadSeconds: e.seconds,
        runs: e.lane?.runs ?? 0,
        rowsRun: e.lane?.rowsRun ?? 0,
        busySeconds: (e.lane?.busyMs ?? 0) / 1000,
        queued: e.lane?.depth ?? 0,
      }));
    },
    refresh: checkToken,
    onScored: (listener) => subscribe("scored", listener),
    onLoaded: (listener) => subscribe("loaded", listener),
    onBatch: (listener) => subscribe("batch", listener),
    async settings(name, version) {
      const record = await registry.getVersion(name, version);
      const override = await registry.getVersionSettings(name, version);
      const settings = mergeServing(serverServing, record.manifest.serving, override);
      const sources: Record<string, "default" | "package" | "registry"> = {};
      const mark = (layer: ServingSettings | undefined, source: "default" | "package" | "registry"): void => {
        for (const [k, v] of Object.entries(layer ?? {})) {
          if (v === undefined) continue;
          if ((k === "batching" || k === "cache") && typeof v === "object" && v !== null) {
            for (const [f, x] of Object.entries(v)) if (x !== undefined) sources[`${k}.${f}`] = source;
          } else sources[k] = source;
        }
      };
      mark(serverServing, "default");
      mark(record.manifest.serving, "package");
      mark(override, "registry");
      return { model: name, version, settings, sources };
    },
    setRouter(next) {
      router = next;
    },
    shadowStats: () => ({ ...shadowCounts }),
    cacheStats(): CacheStats | undefined {
      if (cache === undefined) return undefined;
      return { backend: cache.backend, errors: cache.errors(), versions: [...cacheCounts.values()].map((c) => ({ ...c })) };
    },
    async close() {
      closed = true;
      stopListening?.();
      if (timer !== undefined) clearInterval(timer);
      await checking?.catch(() => undefined);
    },
  };
}
