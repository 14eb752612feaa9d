import path from "node:path";
import { EventEmitter } from "node:events";
import { performance } from "node:perf_hooks";
import { MlshipError, silentLogger, toMlshipError } from "../core/index.js";
import type { Logger, Tensor } from "../core/index.js";
import { formatModelRef, parseModelRef } from "../registry/index.js";
import type { ModelRef, ResolvedVersion } from "../registry/index.js";
import type { LoadedModel } from "../runtime/index.js";
import { createBatcher, type Batcher } from "./batcher.js";
import { buildContext, type ModelContext } from "./context.js";
import { mlflowToFeeds } from "./mlflow-input.js";
import { runPostprocess } from "./package-ops.js";
import { checkTensorFeeds } from "./tensor-input.js";
import type {
  ActiveModel,
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
  batcher: Batcher | undefined;
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
  const maxBatchRows = options.maxBatchRows ?? 128;
  const maxCachedRefs = Math.max(1, options.maxCachedRefs ?? 10_000);
  const events = new EventEmitter();

  let token: string | undefined;
  let lastCheck = Number.NEGATIVE_INFINITY;
  let checking: Promise<void> | undefined;
  let closed = false;
  const resolutions = new Map<string, Promise<ResolvedVersion>>();
  let names: Promise<string[]> | undefined;
  const entries = new Map<string, LoadEntry>();

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
          if (!first) await sweep();
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
    if (entry.loaded === undefined) return; // the load's completion handler unloads it
    const runtime = runtimes[entry.flavor];
    try {
      await runtime?.unload(entry.key);
      logger.info({ model: entry.name, version: entry.version }, "unloaded archived model version");
    } catch (err) {
      logger.warn({ err, key: entry.key }, "unloading a model version failed");
    }
  };

  let timer: NodeJS.Timeout | undefined;
  if (options.backgroundRefresh !== false) {
    timer = setInterval(() => {
      checkToken().catch((err: unknown) => logger.debug({ err }, "background registry poll failed"));
    }, Math.max(refreshMs, 50));
    timer.unref();
  }

  const resolve = async (ref: string | ModelRef): Promise<ResolvedVersion> => {
    if (closed) throw new MlshipError("MLSHIP_ERR_RUNTIME_UNAVAILABLE", "the scoring service is closed");
    await fresh();
    // Normalised so that `iris@v3`, `iris@3` and `models:/iris/3` share one cache entry.
    const parsed = typeof ref === "string" ? parseModelRef(ref) : ref;
    const key = formatModelRef(parsed);
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

  const listening = (): boolean => events.listenerCount("scored") > 0;
  /**
   * Listeners are monitoring hooks, each wrapped on its own: one that throws must not fail the request it
   * describes, keep the listeners after it from hearing the event, or (for load events, emitted from a promise
   * callback) surface as an unhandled rejection that ends the process.
   */
  const subscribe = <E>(name: "scored" | "loaded", listener: (event: E) => void): (() => void) => {
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
    const v = resolved.version;
    const key = runtimeKey(v.name, v.version, v.digest);
    const existing = entries.get(key);
    if (existing !== undefined) return existing;
    const flavor = v.manifest.flavor;
    const runtime = runtimes[flavor];
    if (runtime === undefined) {
      throw new MlshipError("MLSHIP_ERR_PACKAGE_UNSUPPORTED", `model '${v.name}' version ${v.version} needs the '${flavor}' runtime, which this server does not have`, {
        field: "flavor",
      });
    }
    const context = buildContext(v.name, v.version, v.manifest);
    const started = performance.now();
    const promise = runtime.load({ key, modelPath: path.join(resolved.packageDir, v.manifest.files.model) }).then(
      (loaded) => ({ loaded, seconds: (performance.now() - started) / 1000 }),
    );
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
      batcher: undefined,
    };
    entries.set(key, entry);
    promise.then(
      ({ loaded, seconds }) => {
        entry.loaded = loaded;
        entry.seconds = seconds;
        entry.batcher = createBatcher(loaded, loaded.inputs, loaded.outputs, maxBatchRows);
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

  const loadResolved = async (resolved: ResolvedVersion): Promise<{ active: ActiveModel; context: ModelContext; batcher: Batcher | undefined }> => {
    const entry = startLoad(resolved);
    if (entry.loaded === undefined) {
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
    }
    return { active: activeOf(resolved, entry), context: entry.context, batcher: entry.batcher };
  };

  const load = async (ref: string | ModelRef): Promise<ActiveModel> => (await loadResolved(await resolve(ref))).active;

  const prepare = async (
    input: ScoringInput,
    context: ModelContext,
  ): Promise<{ feeds: Record<string, Tensor>; rows: number; orientation: Orientation; outputs?: string[]; id?: string; parameters?: Record<string, unknown> }> => {
    switch (input.kind) {
      case "v2": {
        const p = await v2RequestToFeeds(input.body, context);
        return { feeds: p.feeds, rows: p.rows, orientation: "columnar", outputs: p.outputs, id: p.id, parameters: p.parameters };
      }
      case "mlflow":
      case "csv":
      case "records":
        return mlflowToFeeds(input, context);
      case "tensors": {
        const feeds = await checkTensorFeeds(input.feeds, context);
        const first = Object.values(feeds)[0];
        return { feeds, rows: first === undefined || first.shape.length === 0 ? 1 : (first.shape[0] as number), orientation: "columnar" };
      }
    }
  };

  const score = async (ref: string | ModelRef, input: ScoringInput, opts: ScoreOptions = {}): Promise<ScoreResult> => {
    const started = performance.now();
    let model = refName(ref);
    let version: number | null = null;
    let alias: string | undefined;
    let rows = 0;
    let feeds: Record<string, Tensor> | undefined;
    try {
      const resolved = await resolve(ref);
      model = resolved.version.name;
      version = resolved.version.version;
      alias = resolved.alias;
      const { active, context, batcher } = await loadResolved(resolved);
      const prepared = await prepare(input, context);
      feeds = prepared.feeds;
      rows = prepared.rows;
      let wanted = opts.outputs ?? prepared.outputs;
      if (opts.outputs !== undefined && prepared.outputs !== undefined) wanted = prepared.outputs.filter((o) => opts.outputs?.includes(o));
      if (wanted !== undefined) {
        for (const o of wanted) {
          if (!context.outputNames.has(o)) {
            throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `model '${model}' has no output '${o}' (outputs: ${[...context.outputNames].join(", ")})`, { field: "outputs" });
          }
        }
      }
      // Post-processing may read any model output, so only a model without it can skip computing outputs.
      const runOutputs = context.postprocess.length === 0 ? wanted : undefined;
      // Small requests share a run with the others of this event-loop turn; the outputs are filtered below.
      // The runtime takes the feeds' buffers (they are transferred to a worker); the event keeps its own copy.
      const runFeeds = listening() ? copyFeeds(feeds) : feeds;
      const raw =
        batcher !== undefined && opts.signal === undefined
          ? await batcher.run(runFeeds, rows)
          : await active.loaded.run(runFeeds, runOutputs === undefined ? { signal: opts.signal } : { outputs: runOutputs, signal: opts.signal });
      let outputs = context.postprocess.length === 0 ? raw : runPostprocess(raw, context);
      if (wanted !== undefined) {
        const picked: Record<string, Tensor> = {};
        for (const o of wanted) {
          const t = outputs[o];
          if (t !== undefined) picked[o] = t;
        }
        outputs = picked;
      }
      const latencyMs = performance.now() - started;
      if (listening()) events.emit("scored", { model, version, alias, protocol: opts.protocol, requestId: opts.requestId, rows, latencyMs, ok: true, inputs: feeds, outputs, at: new Date() } satisfies ScoringEvent);
      return { model, version, alias, outputs, rows, orientation: prepared.orientation, id: prepared.id, parameters: prepared.parameters, latencyMs };
    } catch (err) {
      const e = toMlshipError(err);
      const latencyMs = performance.now() - started;
      const error = e.field === undefined ? { code: e.code, message: e.message } : { code: e.code, message: e.message, field: e.field };
      if (listening()) events.emit("scored", { model, version, alias, protocol: opts.protocol, requestId: opts.requestId, rows, latencyMs, ok: false, error, inputs: feeds, at: new Date() } satisfies ScoringEvent);
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
    loadedModels(): LoadedInfo[] {
      return [...entries.values()].map((e) => ({
        model: e.name,
        version: e.version,
        key: e.key,
        state: e.loaded === undefined ? "loading" : "ready",
        loadSeconds: e.seconds,
      }));
    },
    refresh: checkToken,
    onScored: (listener) => subscribe("scored", listener),
    onLoaded: (listener) => subscribe("loaded", listener),
    async close() {
      closed = true;
      if (timer !== undefined) clearInterval(timer);
      await checking?.catch(() => undefined);
    },
  };
}
