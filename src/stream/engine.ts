/**
 * The stream engine (issue 7): runs a stream job's micro-batch loop in the order types.ts's header gives: read,
 * schema, score (one call per batch, the alias re-resolved every batch), operators, sinks, checkpoint, commit.
 *
 * Guarantees: a batch's source position is committed only after every sink has durably written its outputs and the
 * checkpoint (operator state, batch counter) is saved, so a crash anywhere replays the uncommitted batch and sinks,
 * idempotent on each row's id, keep one row per id. Operators must not count a replayed record twice: they keep their
 * state in the checkpoint, and the checkpoint also names the records of its last batch, whose commit a crash may have
 * cut off; operators skip those ids when they come again (predictions are still written, idempotently). Instances
 * sharing a NATS durable can each be handed the same message (a redelivery past the ack wait): records are claimed in
 * the metadata store before the operators see them, and only the claiming instance counts them (claims.ts).
 *
 * A batch that fails (scoring runtime, a sink or the checkpoint unavailable) is retried after a backoff with the
 * operators put back as they were before it; after the retries the stream stops with reason `failed`. Records the
 * model refuses (input errors) never fail a batch: they are found by bisection and go to the dead-letter sink.
 */
import { performance } from "node:perf_hooks";
import { MlshipError, toMlshipError, type DType, type Logger } from "../core/index.js";
import type { Manifest } from "../package/index.js";
import type { FeedbackService } from "../feedback/index.js";
import { formatMlflowResponse, type ScoringService } from "../scoring/index.js";
import type { SqlStore } from "../store/index.js";
import { WindowAggregation } from "./aggregate.js";
import { Checkpoint, instanceSavedProgress, stoppedInstanceProgress, type CheckpointData } from "./checkpoint.js";
import { RecordClaims } from "./claims.js";
import { StreamJoin } from "./join.js";
import type { StreamMetrics } from "./metrics.js";
import { compileSchema, effectiveFields, MAX_DEAD_LETTER_RAW_BYTES, truncateUtf8 } from "./schema.js";
import { createStreamSink } from "./sinks/index.js";
import { createStreamSource } from "./sources/index.js";
import { describeSourceSpec, StreamStatusReporter } from "./status.js";
import type {
  DeadLetter,
  FieldSpec,
  FieldType,
  OperatorState,
  OutputRow,
  SchemaSpec,
  ScoredRecord,
  SinkSpec,
  SourceBatch,
  StreamJobConfig,
  StreamProgress,
  StreamRecord,
  StreamSink,
  StreamSource,
  StreamSummary,
} from "./types.js";

export interface StreamDeps {
  scoring: ScoringService;
  /** The metadata store: SQL sinks without a URL/path write there. */
  store: SqlStore;
  logger: Logger;
  /** Needed when the join feeds the feedback loop (`join.feedback`). */
  feedback?: FeedbackService;
}

export interface StartStreamOptions {
  /** Several processes of one job (sharing a NATS durable) each need their own: the checkpoint keeps one per instance. */
  instance?: string;
  /** Aborting stops the stream like `stop()`. */
  signal?: AbortSignal;
  /** Called after each committed micro-batch. */
  onProgress?: (progress: StreamProgress) => void;
  metrics?: StreamMetrics;
  /** Backoff before each retry of a failed batch (and of opening sources and sinks). Default 1 s, 2 s, 4 s. */
  retryDelaysMs?: readonly number[];
  /**
   * How long a dependency that is down (a source, sink or store answering `MLSHIP_ERR_*_UNAVAILABLE`) is waited for
   * once `retryDelaysMs` are used up: retries go on with doubling delays (at most 30 s) until this much time has
   * passed since the first failure, so an outage pauses the job rather than ends it. Default 0 (fail after the
   * delays); `mlship stream run --max-outage` defaults to 15 minutes.
   */
  maxOutageMs?: number;
  /**
   * How often the job's row in `stream_status` (the metadata store) is rewritten while no micro-batch does it.
   * Default 5 s.
   */
  statusHeartbeatMs?: number;
}

export interface StreamHandle {
  /** Resolves when the stream has stopped and closed everything; never rejects (a failure is `reason: "failed"`). */
  readonly done: Promise<StreamSummary>;
  /** Stops after the batch in flight is committed (never in the middle of its writes); resolves like `done`. */
  stop(): Promise<StreamSummary>;
  /** The last committed batch's progress, or null before the first. */
  lastProgress(): StreamProgress | null;
  /** Why the stream failed (with its error code), once `done` resolved with reason `failed`; else null. */
  failure(): MlshipError | null;
}

/** A scored record, with where its prediction was logged (the prediction log names it by request id and row). */
export interface EngineScoredRecord extends ScoredRecord {
  requestId?: string;
  row?: number;
}

const DEFAULT_RETRY_DELAYS_MS = [1000, 2000, 4000];
/** During an outage (`maxOutageMs`), retries are at most this far apart. */
const MAX_OUTAGE_RETRY_DELAY_MS = 30_000;
/** The shortest wait for records when a source has none (the source answers as soon as some arrive). */
const MIN_IDLE_WAIT_MS = 100;
/** The checkpoint's `operators` entry where the engine keeps its own state (not an operator's name). */
const ENGINE_STATE = "_engine";
/** Ids of a batch whose commit a crash may have cut off are skipped by operators for this long at most. */
const REPLAY_GUARD_MS = 15 * 60_000;
/**
 * A record whose claim another, possibly running, instance holds unsaved is handed back to the source (not acked) until
 * it has been delivered this many times; then it is acked and left to its owner (counted by nobody if the owner never
 * saves it: logged and counted in `mlship_stream_unresolved_claims_total`). Hand-backs come about one ack wait apart,
 * and the owner's in-progress marks give up after ten ack waits, so twenty leaves the owner ample time to save or stop.
 */
const MAX_PENDING_DELIVERIES = 20;
const ROW_FIELDS_RESERVED = new Set(["key", "event_time", "model", "version", "scored_at"]);

interface EngineState {
  /** Record ids (main source) and `join:`-prefixed ids (join source) of the batch saved last. */
  replay: { ids: string[]; savedAt: number };
}

interface Operator {
  /** `aggregation:<name>` or `join`. */
  name: string;
  sink: StreamSink;
  state(): OperatorState;
  snapshot(): unknown;
  restore(snapshot: unknown): void;
}

interface AggregationOperator extends Operator {
  kind: "aggregation";
  impl: WindowAggregation;
}

interface JoinOperator extends Operator {
  kind: "join";
  impl: StreamJoin;
}

interface ReadBatch {
  main: SourceBatch;
  join: SourceBatch | null;
  readMs: number;
  /** When the records were there (after an idle wait, when it ended). */
  startedAt: number;
}

interface ScoreOutcome {
  scored: EngineScoredRecord[];
  refused: DeadLetter[];
  model: string | null;
  version: number | null;
}

class StopRequested extends Error {}

function isInputError(error: unknown): error is MlshipError {
  return error instanceof MlshipError && error.code.startsWith("MLSHIP_ERR_INPUT_");
}

function truncate(text: string): string {
  return truncateUtf8(text, MAX_DEAD_LETTER_RAW_BYTES);
}

let lastIsoMs = Number.NaN;
let lastIso = "";
/** ISO-8601 text of a time; the last one is remembered, since a batch's rows share their scoring time. */
function iso(ms: number): string {
  if (ms !== lastIsoMs) {
    lastIso = new Date(ms).toISOString();
    lastIsoMs = ms;
  }
  return lastIso;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted || ms <= 0) {
      resolve();
      return;
    }
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

function isEmpty(batch: SourceBatch | null): boolean {
  return batch === null || (batch.records.length === 0 && batch.undecodable.length === 0);
}

/** The dead-letter sink's row for a refused record. */
export function deadLetterRow(letter: DeadLetter, stream: string): OutputRow {
  return {
    id: `${letter.stage}:${letter.id}`,
    fields: {
      origin: letter.origin,
      stage: letter.stage,
      field: letter.field,
      reason: letter.reason,
      raw: truncate(letter.raw),
      at: iso(letter.at),
      stream,
    },
  };
}

/** A predictions sink's row: key, event time, the selected input fields, who scored it, then the outputs by name. */
export function predictionRow(record: ScoredRecord, options: { key: boolean; select: readonly string[] }): OutputRow {
  const fields: Record<string, unknown> = {};
  if (options.key) fields.key = record.key;
  fields.event_time = iso(record.eventTime);
  for (const name of options.select) if (!ROW_FIELDS_RESERVED.has(name)) fields[name] = record.fields[name] ?? null;
  fields.model = record.model;
  fields.version = record.version;
  fields.scored_at = iso(record.scoredAt);
  for (const [name, value] of Object.entries(record.outputs)) fields[name] = value;
  return { id: record.id, fields };
}

/** Starts a stream job; see the module comment for what it guarantees. */
export function startStream(deps: StreamDeps, config: StreamJobConfig, options: StartStreamOptions = {}): StreamHandle {
  const stopController = new AbortController();
  const requestStop = (): void => stopController.abort();
  if (options.signal?.aborted === true) requestStop();
  else options.signal?.addEventListener("abort", requestStop, { once: true });
  let last: StreamProgress | null = null;
  let failure: MlshipError | null = null;
  const done = runLoop(
    deps,
    config,
    options,
    stopController.signal,
    (p) => {
      last = p;
    },
    (error) => {
      failure = error;
    },
  )
    // runLoop catches what its parts throw; this is the last guard of "done never rejects".
    .catch((error: unknown): StreamSummary => {
      failure = toMlshipError(error);
      return { stream: config.name, reason: "failed", batches: 0, inputRows: 0, outputRows: 0, deadLetters: 0, error: failure.message };
    })
    .finally(() => options.signal?.removeEventListener("abort", requestStop));
  return {
    done,
    stop() {
      requestStop();
      return done;
    },
    lastProgress: () => last,
    failure: () => failure,
  };
}

async function runLoop(
  deps: StreamDeps,
  config: StreamJobConfig,
  options: StartStreamOptions,
  stopSignal: AbortSignal,
  setLast: (p: StreamProgress) => void,
  setFailure: (error: MlshipError) => void,
): Promise<StreamSummary> {
  const { scoring, logger } = deps;
  const log = logger.child({ stream: config.name });
  const retryDelays = options.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS;
  const maxOutageMs = options.maxOutageMs ?? 0;
  /** The wait before retry number `extra` past the configured delays, while an outage is within its budget. */
  const outageDelay = (error: unknown, extra: number, downMs: number): number | undefined => {
    if (!isUnavailable(error) || downMs >= maxOutageMs) return undefined;
    const last = retryDelays[retryDelays.length - 1] ?? 1000;
    return Math.min(MAX_OUTAGE_RETRY_DELAY_MS, last * 2 ** (extra + 1), Math.max(0, maxOutageMs - downMs));
  };
  const instance = options.instance ?? "default";
  const summary: StreamSummary = { stream: config.name, reason: "completed", batches: 0, inputRows: 0, outputRows: 0, deadLetters: 0, error: null };

  let checkpoint: Checkpoint | undefined;
  let status: StreamStatusReporter | undefined;
  let source: StreamSource | undefined;
  let joinSource: StreamSource | undefined;
  const opened: Array<{ close(): Promise<void> }> = [];

  const closeAll = async (): Promise<void> => {
    for (const item of opened.reverse()) {
      await item.close().catch((err: unknown) => log.warn({ err }, "stream: a source or sink did not close cleanly"));
    }
    await checkpoint?.close().catch((err: unknown) => log.warn({ err }, "stream: the checkpoint did not close cleanly"));
  };

  /** Runs `action`, retrying it after each delay while it fails with anything but a stop; rethrows the last error. */
  const withRetries = async <T>(what: string | (() => string), action: () => Promise<T>, onFailure?: (error: unknown) => void): Promise<T> => {
    let firstFailureAt: number | undefined;
    for (let attempt = 0; ; attempt++) {
      try {
        return await action();
      } catch (error) {
        onFailure?.(error);
        firstFailureAt ??= Date.now();
        const delay = retryDelays[attempt] ?? outageDelay(error, attempt - retryDelays.length, Date.now() - firstFailureAt);
        if (delay === undefined || stopSignal.aborted || !retryable(error)) throw error;
        log.warn({ err: error, attempt: attempt + 1, retryInMs: delay }, `stream: ${typeof what === "string" ? what : what()} failed; retrying`);
        await sleep(delay, stopSignal);
        if (stopSignal.aborted) throw new StopRequested();
      }
    }
  };

  try {
    // ---- start: checkpoint, model columns, schema, operators, sources and sinks ----
    checkpoint = await Checkpoint.open(config.checkpoint, config.name, { instance: options.instance, logger: log });
    // Only the checkpoint's holder reports: a second process refused above must not overwrite the running one's row.
    status = new StreamStatusReporter(deps.store, {
      name: config.name,
      instance,
      model: config.model,
      trigger: config.trigger,
      logger: log,
      ...(options.statusHeartbeatMs === undefined ? {} : { heartbeatMs: options.statusHeartbeatMs }),
    });
    status.start(describeSourceSpec(config.source));
    const saved = checkpoint.load();
    let nextBatchId = saved?.nextBatchId ?? 0;

    const resolved = await scoring.resolve(config.model);
    const { schema, declared } = modelSchema(config.schema, resolved.version.manifest.signature);
    const validate = compileSchema(schema, schema.fromModel ? declared : undefined);
    const schemaFields = effectiveFields(schema, schema.fromModel ? declared : undefined).map((f) => f.name);
    const features = featureColumns(config, schemaFields, declared);
    // The prediction log keeps one row per (request id, row): instances of one job count batches separately.
    const requestIdOf = (batchId: number): string => (options.instance === undefined ? `stream:${config.name}:${batchId}` : `stream:${config.name}@${options.instance}:${batchId}`);
    const validateOutcome = config.join === undefined ? undefined : compileSchema(config.join.schema);
    const mainSourceDir = await checkpoint.subdir("sources", "main");
    const joinSourceDir = config.join === undefined ? undefined : await checkpoint.subdir("sources", "join");
    if (config.join?.feedback !== undefined && deps.feedback === undefined) {
      throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", "join.feedback feeds the feedback loop, which this stream was started without", { field: "join.feedback" });
    }

    /** Creates and opens a source or sink, retrying with a new one (a failed open leaves the old one closed). */
    const openPart = async <T extends StreamSink | StreamSource>(create: () => T): Promise<T> => {
      let part: T | undefined;
      await withRetries(
        () => `opening ${part?.description ?? "a source or sink"}`,
        async () => {
          part = create();
          await part.open();
        },
        (error) => {
          void part?.close().catch(() => undefined);
          status?.retrying(error);
        },
      );
      status?.recovered();
      opened.push(part as T);
      return part as T;
    };
    const openSink = (spec: SinkSpec): Promise<StreamSink> => openPart(() => createStreamSink(spec, { store: deps.store, logger: log, name: config.name }));
    source = await openPart(() =>
      createStreamSource(config.source, { checkpointDir: mainSourceDir, logger: log, name: config.name }),
    );
    if (config.join !== undefined) {
      const joinSpec = config.join;
      joinSource = await openPart(() => createStreamSource(joinSpec.source, { checkpointDir: joinSourceDir as string, logger: log, name: `${config.name}-join` }));
    }
    const predictionSinks: StreamSink[] = [];
    for (const spec of config.sinks) predictionSinks.push(await openSink(spec));
    const deadLetterSink = await openSink(config.deadLetter);
    const operatorSinks: StreamSink[] = [];
    for (const spec of config.aggregations) operatorSinks.push(await openSink(spec.sink));
    if (config.join !== undefined) operatorSinks.push(await openSink(config.join.sink));

    const buildOperators = (): Array<AggregationOperator | JoinOperator> => {
      const list: Array<AggregationOperator | JoinOperator> = [];
      config.aggregations.forEach((spec, i) => {
        const impl = new WindowAggregation(spec, { stream: config.name, instance });
        const sink = operatorSinks[i] as StreamSink;
        list.push({ kind: "aggregation", name: `aggregation:${spec.name}`, impl, sink, state: () => impl.state(), snapshot: () => impl.snapshot(), restore: (s) => impl.restore(s) });
      });
      if (config.join !== undefined) {
        const impl = new StreamJoin(config.join, { stream: config.name });
        const sink = operatorSinks[config.aggregations.length] as StreamSink;
        list.push({ kind: "join", name: "join", impl, sink, state: () => impl.state(), snapshot: () => impl.snapshot(), restore: (s) => impl.restore(s) });
      }
      return list;
    };
    let operators = buildOperators();
    const restoreOperators = (data: CheckpointData | null): void => {
      for (const op of operators) {
        const snapshot = data?.operators[op.name];
        if (snapshot !== undefined) op.restore(snapshot);
      }
    };
    restoreOperators(saved);
    // Late records per operator as last reported, so metrics count each once (operators count since they started).
    const lateSeen = new Map<string, number>(operators.map((op) => [op.name, op.state().lateRecords]));
    const engineState = parseEngineState(saved?.operators[ENGINE_STATE]);
    const replayIds = new Set(engineState !== null && Date.now() - engineState.replay.savedAt < REPLAY_GUARD_MS ? engineState.replay.ids : []);
    const replaySavedAt = engineState?.replay.savedAt ?? 0;
    // Instances sharing a NATS durable may each be handed the same message (a redelivery past the ack wait): only the
    // instance that claimed a record counts it in its operators (claims.ts).
    let claims: RecordClaims | undefined;
    if (options.instance !== undefined && operators.length > 0 && (config.source.kind === "nats" || config.join?.source.kind === "nats")) {
      const created = new RecordClaims(deps.store, {
        stream: config.name,
        instance,
        ownerProgress: (owner) => stoppedInstanceProgress(config.checkpoint, config.name, owner),
        ownerSaved: (owner) => instanceSavedProgress(config.checkpoint, config.name, owner),
      });
      await withRetries("opening the record claims", () => created.open(nextBatchId), (error) => status?.retrying(error));
      claims = created;
    }

    log.info(
      { model: config.model, version: resolved.version.version, source: source.description, sinks: predictionSinks.map((s) => s.description), nextBatchId, instance: options.instance ?? null },
      "stream started",
    );

    // ---- the loop ----
    const trigger = config.trigger;
    let previousStart: number | null = null;
    const mainSource = source;

    // A main batch read when the join read then failed: the retried read uses it rather than read another. Its
    // messages are this process's until committed (a NATS source marks them in progress), so a batch dropped here
    // would be left to nobody for up to ten ack waits.
    let heldMain: SourceBatch | null = null;
    const readJoin = async (main: SourceBatch): Promise<SourceBatch | null> => {
      if (joinSource === undefined) return null;
      try {
        return await joinSource.next({ waitMs: 0, signal: stopSignal });
      } catch (error) {
        if (!isEmpty(main)) heldMain = main;
        throw error;
      }
    };
    const read = async (): Promise<ReadBatch | null> => {
      const tickStart = Date.now();
      let startedAt = tickStart;
      let startedPerf = performance.now();
      let main = heldMain ?? (await mainSource.next({ waitMs: 0, signal: stopSignal }));
      heldMain = null;
      let join = await readJoin(main);
      let readMs = performance.now() - startedPerf;
      if (isEmpty(main) && isEmpty(join) && trigger.kind === "processingTime" && !stopSignal.aborted) {
        // Nothing now: wait for records until the next trigger; the wait is idle time, not reading. A source answers
        // as soon as records arrive, so a short interval waits a little longer rather than poll in a busy loop.
        const remaining = trigger.intervalMs - (Date.now() - tickStart);
        main = await mainSource.next({ waitMs: Math.max(MIN_IDLE_WAIT_MS, remaining), signal: stopSignal });
        startedAt = Date.now();
        startedPerf = performance.now();
        if (!isEmpty(main)) join = await readJoin(main);
        readMs = performance.now() - startedPerf;
      }
      if (isEmpty(main) && isEmpty(join)) return null;
      return { main, join, readMs, startedAt };
    };

    for (;;) {
      if (stopSignal.aborted) break;
      const tickStart = Date.now();
      // A source unavailable for a while (NATS reconnecting) is retried like a failed batch.
      const batch = await withRetries("reading the source", read, (error) => status?.retrying(error));
      if (batch === null) {
        if (stopSignal.aborted) break;
        if (trigger.kind === "availableNow" || trigger.kind === "once") break;
        continue;
      }
      const processStart = performance.now();
      const batchId = nextBatchId;

      // Schema, once: it is pure, a retry needs no second pass.
      const deadLetters: DeadLetter[] = [...batch.main.undecodable, ...(batch.join?.undecodable ?? [])];
      const records: StreamRecord[] = [];
      for (const raw of batch.main.records) {
        const checked = validate(raw);
        if ("record" in checked) records.push(checked.record);
        else deadLetters.push(checked.deadLetter);
      }
      const outcomes: StreamRecord[] = [];
      if (batch.join !== null && validateOutcome !== undefined) {
        for (const raw of batch.join.records) {
          const checked = validateOutcome(raw);
          if ("record" in checked) outcomes.push(checked.record);
          else deadLetters.push(checked.deadLetter);
        }
      }

      let scoreMs = 0;
      let writeMs = 0;
      let outcome: ScoreOutcome = { scored: [], refused: [], model: null, version: null };
      // Records left to an owner that may still fail to count them (claims.ts): handed back at commit, not acked.
      let handBack = { main: new Set<string>(), join: new Set<string>() };
      let unresolved = 0;
      const attempt = async (): Promise<void> => {
        // ---- score: one call for the batch; an alias moved since the last batch is followed now ----
        const scoreStart = performance.now();
        await scoring.refresh();
        outcome = await scoreRecords(scoring, config, features, records, requestIdOf(batchId));
        scoreMs = performance.now() - scoreStart;

        // ---- operators (records a cut-off commit may have counted already are skipped) ----
        const writeStart = performance.now();
        let fresh = replayIds.size === 0 ? outcome.scored : outcome.scored.filter((r) => !replayIds.has(r.id));
        let freshOutcomes = replayIds.size === 0 ? outcomes : outcomes.filter((r) => !replayIds.has(`join:${r.id}`));
        if (claims !== undefined) {
          // Only records of a NATS source are claimed: a folder source is read whole by each instance that names it.
          const claimMain = config.source.kind === "nats";
          const claimJoin = config.join?.source.kind === "nats";
          const { mine, pending } = await claims.claimBatch(
            [...(claimMain ? fresh.map((r) => r.id) : []), ...(claimJoin ? freshOutcomes.map((r) => `join:${r.id}`) : [])],
            batchId,
          );
          if (claimMain) fresh = fresh.filter((r) => mine.has(r.id));
          if (claimJoin) freshOutcomes = freshOutcomes.filter((r) => mine.has(`join:${r.id}`));
          handBack = { main: new Set(), join: new Set() };
          unresolved = 0;
          if (pending.size > 0) {
            const deliveries = new Map<string, number | undefined>();
            // A message delivered twice into one batch: its latest delivery counts.
            const note = (id: string, n: number | undefined): void => {
              if (n !== undefined) deliveries.set(id, Math.max(n, deliveries.get(id) ?? 0));
            };
            for (const r of batch.main.records) note(r.id, r.deliveries);
            for (const r of batch.join?.records ?? []) note(`join:${r.id}`, r.deliveries);
            for (const id of pending) {
              if ((deliveries.get(id) ?? 1) >= MAX_PENDING_DELIVERIES) unresolved++;
              else if (id.startsWith("join:")) handBack.join.add(id.slice("join:".length));
              else handBack.main.add(id);
            }
            if (unresolved > 0) {
              log.warn(
                { unresolved, batchId },
                `stream: ${unresolved} records stayed claimed by another running instance that has not saved them after ${MAX_PENDING_DELIVERIES} deliveries; acked and left to it (uncounted if it never saves them)`,
              );
            }
          }
        }
        const operatorRows: Array<{ sink: StreamSink; rows: OutputRow[] }> = [];
        const joinedRows: OutputRow[] = [];
        for (const op of operators) {
          const rows = op.kind === "aggregation" ? op.impl.process(fresh, batchId) : op.impl.process(fresh, freshOutcomes, batchId);
          if (op.kind === "join") joinedRows.push(...rows);
          operatorRows.push({ sink: op.sink, rows });
        }

        // ---- sinks: every write durable before the checkpoint ----
        const predictionRows = outcome.scored.map((r) => predictionRow(r, { key: config.schema.key !== undefined, select: config.select }));
        const letters = [...deadLetters, ...outcome.refused].map((d) => deadLetterRow(d, config.name));
        const context = { stream: config.name, batchId };
        const writes = [
          ...predictionSinks.map((sink) => sink.write(predictionRows, context)),
          deadLetterSink.write(letters, context),
          ...operatorRows.map(({ sink, rows }) => sink.write(rows, context)),
        ];
        const settled = await Promise.allSettled(writes);
        const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
        if (failed !== undefined) throw failed.reason;
        if (config.join?.feedback !== undefined && deps.feedback !== undefined) {
          const items = feedbackOutcomes(joinedRows, config.join.feedback.actual);
          if (items.length > 0) await deps.feedback.ingestOutcomes(items);
        }
        writeMs = performance.now() - writeStart;

        // ---- checkpoint: operator state, the batch counter, and this batch's ids (in case the commit is cut off) ----
        const snapshots: Record<string, unknown> = {};
        for (const op of operators) snapshots[op.name] = op.snapshot();
        // Records handed back were not counted here: a restart must not skip them when they come again.
        const ids = [...records.filter((r) => !handBack.main.has(r.id)).map((r) => r.id), ...outcomes.filter((r) => !handBack.join.has(r.id)).map((r) => `join:${r.id}`)];
        const engine: EngineState = { replay: { ids, savedAt: Date.now() } };
        await (checkpoint as Checkpoint).save({ stream: config.name, nextBatchId: batchId + 1, operators: { ...snapshots, [ENGINE_STATE]: engine }, updatedAt: new Date().toISOString() });
      };
      try {
        await withRetries(`micro-batch ${batchId} (${batch.main.description})`, attempt, (error) => {
          options.metrics?.failedBatch(config.name);
          status?.retrying(error);
          // Put the operators back as the checkpoint has them (a failed save leaves the previous state whole): the
          // retry feeds them the batch again.
          operators = buildOperators();
          restoreOperators((checkpoint as Checkpoint).load());
        });
      } catch (error) {
        if (error instanceof StopRequested) break;
        throw error;
      }
      nextBatchId = batchId + 1;
      // Replayed ids seen once are done with; the guard also ends after a while (their commit went through).
      for (const r of records) replayIds.delete(r.id);
      for (const r of outcomes) replayIds.delete(`join:${r.id}`);
      if (replayIds.size > 0 && Date.now() - replaySavedAt > REPLAY_GUARD_MS) replayIds.clear();

      // ---- commit: ack / mark processed ----
      const commitStart = performance.now();
      try {
        // A commit that fails (NATS gone before its acks were confirmed) is retried; the status row says why meanwhile.
        await withRetries(
          `committing micro-batch ${batchId}`,
          async () => {
            await batch.main.commit(handBack.main.size === 0 ? undefined : { redeliver: handBack.main });
            await batch.join?.commit(handBack.join.size === 0 ? undefined : { redeliver: handBack.join });
          },
          (error) => status?.retrying(error),
        );
      } catch (error) {
        if (error instanceof StopRequested) break;
        throw error;
      }
      const commitMs = performance.now() - commitStart;
      if (handBack.main.size + handBack.join.size > 0) {
        log.info(
          { handedBack: handBack.main.size + handBack.join.size, batchId },
          `stream batch ${batchId}: handed back ${handBack.main.size + handBack.join.size} records another running instance claimed and has not saved yet`,
        );
      }
      if (unresolved > 0) options.metrics?.unresolvedClaims?.(config.name, unresolved);

      // ---- progress ----
      const totalMs = batch.readMs + (performance.now() - processStart);
      const numInputRows = batch.main.records.length + batch.main.undecodable.length + (batch.join === null ? 0 : batch.join.records.length + batch.join.undecodable.length);
      const numDeadLetters = deadLetters.length + outcome.refused.length;
      const sinceLast = previousStart === null ? totalMs / 1000 : (tickStart - previousStart) / 1000;
      previousStart = tickStart;
      const lag = await mainSource.lag().catch(() => null);
      const joinLag = joinSource === undefined ? undefined : await joinSource.lag().catch(() => null);
      const operatorStates: Record<string, OperatorState> = {};
      const late: Record<string, number> = {};
      for (const op of operators) {
        const state = op.state();
        operatorStates[op.name] = state;
        late[op.name] = Math.max(0, state.lateRecords - (lateSeen.get(op.name) ?? 0));
        lateSeen.set(op.name, state.lateRecords);
      }
      const progress: StreamProgress = {
        stream: config.name,
        batchId,
        timestamp: iso(batch.startedAt),
        numInputRows,
        numOutputRows: outcome.scored.length,
        numDeadLetters,
        inputRowsPerSecond: rate(numInputRows, sinceLast),
        processedRowsPerSecond: rate(numInputRows, totalMs / 1000),
        durationMs: { total: round(totalMs), read: round(batch.readMs), score: round(scoreMs), write: round(writeMs), commit: round(commitMs) },
        model: outcome.model,
        version: outcome.version,
        lag,
        operators: operatorStates,
        source: batch.main.description,
      };
      summary.batches += 1;
      summary.inputRows += numInputRows;
      summary.outputRows += outcome.scored.length;
      summary.deadLetters += numDeadLetters;
      setLast(progress);
      log.info({ progress }, `stream batch ${batchId}: ${numInputRows} in, ${outcome.scored.length} out, ${numDeadLetters} dead letters, ${round(totalMs)} ms`);
      options.metrics?.batch({
        progress,
        deadLetters: countStages([...deadLetters, ...outcome.refused]),
        lateRecords: late,
        lag: { main: lag, ...(joinLag === undefined ? {} : { join: joinLag }) },
      });
      status.batch({ progress, lateRecords: Object.values(late).reduce((sum, n) => sum + n, 0) });
      try {
        options.onProgress?.(progress);
      } catch (err) {
        log.warn({ err }, "stream: a progress listener threw");
      }
      if (trigger.kind === "once") break;
      if (trigger.kind === "processingTime") {
        // One micro-batch per interval; a batch that took longer is followed by the next at once.
        await sleep(trigger.intervalMs - (Date.now() - tickStart), stopSignal);
      }
    }
    summary.reason = stopSignal.aborted ? "stopped" : "completed";
  } catch (error) {
    if (stopSignal.aborted && error instanceof StopRequested) {
      summary.reason = "stopped";
    } else {
      const failure = toMlshipError(error);
      summary.reason = "failed";
      summary.error = failure.message;
      setFailure(failure);
      log.error({ err: error }, `stream ${config.name} failed: ${failure.message}`);
    }
  } finally {
    await closeAll();
    // After the parts closed: `stopped`/`completed` means nothing is read or written any more.
    await status?.end(summary);
  }
  log.info({ summary }, `stream ${config.name} ${summary.reason}`);
  return summary;
}

/** A dependency that is down (as opposed to a bad record or config): worth waiting for during an outage. */
function isUnavailable(error: unknown): boolean {
  return error instanceof MlshipError && error.code.endsWith("_UNAVAILABLE");
}

/** Errors that a retry cannot fix: a wrong config, a checkpoint held by another process or of another job. */
function retryable(error: unknown): boolean {
  if (!(error instanceof MlshipError)) return true;
  return !["MLSHIP_ERR_CONFIG_INVALID", "MLSHIP_ERR_STREAM_CHECKPOINT", "MLSHIP_ERR_CLI_USAGE"].includes(error.code);
}

function rate(rows: number, seconds: number): number {
  return seconds > 0 ? Math.round((rows / seconds) * 10) / 10 : 0;
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

function countStages(letters: readonly DeadLetter[]): Partial<Record<DeadLetter["stage"], number>> {
  const out: Partial<Record<DeadLetter["stage"], number>> = {};
  for (const l of letters) out[l.stage] = (out[l.stage] ?? 0) + 1;
  return out;
}

function parseEngineState(value: unknown): EngineState | null {
  if (value === null || typeof value !== "object") return null;
  const replay = (value as { replay?: unknown }).replay;
  if (replay === null || typeof replay !== "object") return null;
  const { ids, savedAt } = replay as { ids?: unknown; savedAt?: unknown };
  if (!Array.isArray(ids) || typeof savedAt !== "number") return null;
  return { replay: { ids: ids.filter((id): id is string => typeof id === "string"), savedAt } };
}

/** A schema field type for a one-value-per-row input of this dtype. */
function fieldTypeOf(dtype: DType): FieldType {
  if (dtype === "string") return "string";
  if (dtype === "bool") return "boolean";
  return "double";
}

/**
 * The schema to enforce and the model's columns. A model without declared columns whose inputs each take one value
 * per row (a Spark ML pipeline's input columns, an ONNX model with one input per column) has those inputs as its
 * columns: `fromModel` adds them with their own types (a string input stays a string), not as doubles.
 */
export function modelSchema(spec: SchemaSpec, signature: Manifest["signature"]): { schema: SchemaSpec; declared: string[] | undefined } {
  const declared = signature.columns?.map((c) => c.name);
  if (declared !== undefined || !spec.fromModel) return { schema: spec, declared };
  const perRow = signature.inputs.length > 0 && signature.inputs.every((input) => input.shape.length === 1);
  // Otherwise effectiveFields refuses fromModel, saying the model must declare its columns.
  if (!perRow) return { schema: spec, declared: undefined };
  const named = new Set(spec.fields.map((f) => f.name));
  const added: FieldSpec[] = signature.inputs
    .filter((input) => !named.has(input.name))
    .map((input) => ({ name: input.name, type: fieldTypeOf(input.dtype), nullable: false }));
  return { schema: { ...spec, fields: [...spec.fields, ...added], fromModel: false }, declared: signature.inputs.map((input) => input.name) };
}

/**
 * The columns the model is given, in order: the model's declared columns when it has them (the schema must hold
 * them all), else the schema's fields less the key and the event time.
 */
export function featureColumns(config: StreamJobConfig, schemaFields: readonly string[], declared: readonly string[] | undefined): string[] {
  if (declared !== undefined && declared.length > 0) {
    const have = new Set(schemaFields);
    const missing = declared.filter((c) => !have.has(c));
    if (missing.length > 0) {
      throw new MlshipError(
        "MLSHIP_ERR_CONFIG_INVALID",
        `the schema lacks ${missing.length} of the model's columns (${missing.slice(0, 5).map((m) => `"${m}"`).join(", ")}${missing.length > 5 ? ", ..." : ""}); add them to schema.fields or set schema.fromModel: true`,
        { field: "schema.fields" },
      );
    }
    return [...declared];
  }
  return schemaFields.filter((f) => f !== config.schema.key && f !== config.schema.eventTime);
}

/**
 * Scores the batch in one call. When the model refuses the batch for its input, halves are scored until every
 * refused record is alone: those become dead letters (stage `score`), the rest is scored.
 */
async function scoreRecords(
  scoring: ScoringService,
  config: StreamJobConfig,
  features: readonly string[],
  records: readonly StreamRecord[],
  baseRequestId: string,
): Promise<ScoreOutcome> {
  const out: ScoreOutcome = { scored: [], refused: [], model: null, version: null };
  if (records.length === 0) return out;
  const scoreSlice = async (slice: readonly StreamRecord[], requestId: string): Promise<void> => {
    try {
      const result = await scoring.score(
        config.model,
        { kind: "mlflow", body: { dataframe_split: { columns: features, data: slice.map((r) => features.map((f) => r.fields[f] ?? null)) } } },
        { protocol: "stream", requestId },
      );
      const predictions = formatMlflowResponse(result).predictions as Array<Record<string, unknown>>;
      const scoredAt = Date.now();
      out.model = result.model;
      out.version = result.version;
      slice.forEach((record, row) => {
        const scored: EngineScoredRecord = { ...record, model: result.model, version: result.version, outputs: predictions[row] ?? {}, scoredAt, requestId: result.requestId, row };
        out.scored.push(scored);
      });
    } catch (error) {
      if (!isInputError(error)) throw error;
      if (slice.length === 1) {
        const record = slice[0] as StreamRecord;
        out.refused.push({
          id: record.id,
          origin: record.origin,
          stage: "score",
          field: error.field ?? null,
          reason: error.message,
          raw: truncate(JSON.stringify(record.fields)),
          at: Date.now(),
        });
        return;
      }
      const half = Math.ceil(slice.length / 2);
      // Each half is its own request (and logged prediction request): `<request id>.<0|1>` down the bisection.
      await scoreSlice(slice.slice(0, half), `${requestId}.0`);
      await scoreSlice(slice.slice(half), `${requestId}.1`);
    }
  };
  await scoreSlice(records, baseRequestId);
  // Bisection scores halves in order, so records keep their batch order.
  return out;
}

/**
 * Outcomes for the feedback loop from joined rows that name the prediction's logged request and row: the actual
 * value is the outcome field `actual`.
 */
export function feedbackOutcomes(rows: readonly OutputRow[], actual: string): Array<Record<string, unknown>> {
  const items: Array<Record<string, unknown>> = [];
  for (const row of rows) {
    const f = row.fields;
    const requestId = f.request_id;
    // The join renames an outcome field that a prediction output also has to `outcome_<name>`.
    const value = `outcome_${actual}` in f ? f[`outcome_${actual}`] : f[actual];
    if (typeof requestId !== "string" || typeof f.row !== "number") continue;
    if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") continue;
    const eventTime = f.outcome_time;
    items.push({ request_id: requestId, row: f.row, actual: value, ...(typeof eventTime === "string" || typeof eventTime === "number" ? { event_time: eventTime } : {}) });
  }
  return items;
}
