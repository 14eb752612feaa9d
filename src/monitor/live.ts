/**
 * Live monitoring while serving: every successful scoring event is profiled into the tumbling windows (UTC aligned,
 * as `windows.ts` cuts them) of each window size, and a window that has ended is tested against the version's
 * stored reference, stored, classified over the stored windows of its size and turned into alerts.
 *
 * Memory is bounded by the profile sizes, not by the traffic: a window holds one `DatasetProfiler` for its
 * features and one for its predictions (counts, moments, a quantile sketch, a histogram on the reference's edges
 * and a reservoir sample per numeric column; top-K frequencies per categorical one). Raw rows are never kept.
 *
 * The scoring service calls listeners synchronously inside the request, so the listener only queues the event
 * (the tensors are shared with the request, not copied) and returns; profiling happens on a later turn of the
 * event loop. Rows waiting beyond `maxQueuedRows` are dropped and counted rather than slowing scoring down.
 *
 * What an event becomes:
 * - Features: for a version whose manifest declares `signature.columns`, column i of the columns input (a
 *   `[rows, k]` tensor, k = number of declared columns) is declared column i. Any other 2-D input `[rows, k]`
 *   gives columns `input[0]` .. `input[k-1]`, and a 1-D input `[rows]` (one value per row, as a Spark ML pipeline's
 *   input columns) is the column of its own name; inputs of other ranks (images) are skipped, logged once per version.
 *   float32 values are read back as the shortest decimal that rounds to the same float32 (the number the client
 *   sent, when it had at most 7 significant digits), so they compare equal to reference values read from text.
 * - Predictions: named as `predictionTable` names them (`name` for one value per row, `name[i]` otherwise), values
 *   as `tensorValues` gives them. An output a request did not ask for counts as missing in its rows.
 * - Only reference columns the live inputs carry are profiled (the others are logged once per version).
 *
 * Time: an event belongs to the window holding the monitor's clock at the moment it hears the event (the listener
 * runs inside the scoring call, so this is the scoring time; the clock is injectable for tests). An event whose
 * window was already closed by a flush is dropped as late.
 *
 * Replicas: several `mlship serve` processes sharing one store each hear only their share of the traffic. Each stores
 * its own part of a window (keyed by its `replicaId`), and readers merge the parts of a window. When a replica closes
 * a window it merges its part with the parts the other replicas saved so far and tests, classifies and alerts on that
 * merged window, storing the verdict with its part together with the rows it covers: the replica that flushes last
 * stores the verdict of the whole traffic, and readers take the verdict that covers the most rows.
 *
 * Tests on a window run on its profile: numeric columns on the reservoir sample (every value while the window has
 * at most `sampleSize` values, so the result equals a test on the raw rows; beyond that `details.currentApproximate`
 * is true), categorical columns on the frequencies.
 */
import type { Registry } from "prom-client";
import { elementCount } from "../core/index.js";
import type { Logger, Tensor } from "../core/index.js";
import { defaultMonitorConfig } from "../package/index.js";
import type { Manifest, MonitorConfig } from "../package/index.js";
import { fromFloat16Bits, tensorValues } from "../scoring/index.js";
import type { ScoringEvent, ScoringService } from "../scoring/index.js";
import { Alerter, alertsFromReport, gaugeSink, logSink, webhookSink } from "./alerts.js";
import type { Alert, AlertSink, ProcessResult } from "./alerts.js";
import { datasetDrift, OTHER_CATEGORY, referenceFromProfile } from "./drift.js";
import type { MethodOverride } from "./drift.js";
import { classifyWindows } from "./kinds.js";
import type { ColumnKind } from "./kinds.js";
import { DatasetProfiler } from "./profile/index.js";
import { checkRules } from "./rules.js";
import type { CheckReport } from "./service.js";
import { mergeWindowParts } from "./store.js";
import type { MonitorStore, WindowProfile } from "./store.js";
import type { Cell, ColumnProfile, DatasetDrift, DatasetProfile, FeatureKind, ReferenceProfile } from "./types.js";
import { DEFAULT_MIN_WINDOW_ROWS, fromWindowProfile, parseWindowSize, toWindowProfile } from "./windows.js";
import type { StoredWindow, WindowResult } from "./windows.js";

/** Versions without a reference are looked up again at most this often. */
export const REFERENCE_RECHECK_MS = 60_000;
/** The flush timer runs every smallest size / this, at most every `MAX_FLUSH_INTERVAL_MS`. */
const FLUSH_STEPS_PER_WINDOW = 10;
const MAX_FLUSH_INTERVAL_MS = 60_000;
const MIN_FLUSH_INTERVAL_MS = 1000;
/** Rows waiting to be profiled beyond which new events are dropped. */
export const DEFAULT_MAX_QUEUED_ROWS = 100_000;
/** Stored windows of a size read back to name the drift kind (48 one-hour windows: two days). */
export const DEFAULT_KIND_WINDOWS = 48;
/** Scoring calls made by the monitor itself (reference profiling, file checks) carry this protocol label. */
export const MONITOR_PROTOCOL = "monitor";

export interface LiveMonitorOptions {
  scoring: ScoringService;
  store: MonitorStore;
  logger: Logger;
  /** Where the alert gauge and counter go (`gaugeSink`); none when unset. Ignored when `alerter` is given. */
  registry?: Registry;
  /** Window sizes, default `["1h"]`. */
  sizes?: readonly string[];
  /** Windows with fewer rows are stored as insufficient (no drift). Default 30. */
  minRows?: number;
  /** Alerts are also POSTed here (`webhookSink`). Ignored when `alerter` is given. */
  webhookUrl?: string;
  now?: () => Date;
  /** Replaces the default Alerter (log + gauge + webhook sinks). */
  alerter?: Alerter;
  /** Reservoir size per numeric column per window. Default 10000 (as reference profiles). */
  sampleSize?: number;
  /** Rows waiting to be profiled beyond which events are dropped. Default 100000. */
  maxQueuedRows?: number;
  /** Stored windows of a size read back to name the drift kind. Default 48. */
  kindWindows?: number;
  /** Run `flush` on a timer (unref'd). Default true. */
  timer?: boolean;
  /**
   * This replica's identity (`server.replicaId`): its windows are stored as its own part and merged with the other
   * replicas' parts of the same window. Default '' (one process alone).
   */
  replicaId?: string;
}

export interface LiveMonitorStats {
  /** Versions with a reference profile, being profiled. */
  versionsMonitored: number;
  /** Versions seen without a reference profile (ignored until one appears). */
  versionsWithoutReference: number;
  openWindows: number;
  eventsSeen: number;
  eventsProfiled: number;
  /** Failed requests, the monitor's own scoring calls, events without inputs, versions without a reference. */
  eventsIgnored: number;
  /** Events lost: queue full, late for a closed window, or failing to profile. */
  eventsDropped: number;
  rowsProfiled: number;
  queuedEvents: number;
  windowsSaved: number;
  /** Failures inside the monitor (logged); never thrown into scoring. */
  errors: number;
}

export interface LiveWindowFindings {
  window: StoredWindow;
  /** Drift kinds of the window's size, over the stored windows up to this one. */
  kinds: ColumnKind[];
  /** The Alerter's answer; undefined for insufficient windows (no evidence either way). */
  alerts: ProcessResult | undefined;
}

export interface FlushResult {
  /** Windows closed and stored by this flush, oldest end first. */
  windows: LiveWindowFindings[];
  /** Failures during this flush (logged and counted in `stats().errors`). */
  errors: number;
}

interface Shape {
  names: string[];
  kinds: Record<string, FeatureKind>;
  edges: Record<string, readonly number[]>;
  reference: ReturnType<typeof referenceFromProfile>;
}

interface OpenWindow {
  size: string;
  start: number;
  end: number;
  rows: number;
  features: DatasetProfiler;
  predictions: DatasetProfiler | undefined;
}

interface Monitored {
  reference: ReferenceProfile;
  manifest: Manifest;
  config: MonitorConfig;
  /** Fixed from the first event: the reference's feature columns the live inputs carry. */
  features: Shape | undefined;
  predictions: Shape | undefined;
  /** size -> window start -> window. */
  windows: Map<string, Map<number, OpenWindow>>;
  skippedInputsLogged: boolean;
}

interface VersionState {
  model: string;
  version: number;
  /** Clock time (ms) of the last reference lookup. */
  checkedAt: number;
  lookup: Promise<void> | undefined;
  monitored: Monitored | undefined;
  /** The lookup ran and found no reference (or failed). */
  unmonitored: boolean;
}

interface Queued {
  event: ScoringEvent;
  at: number;
}

function shapeOf(profile: DatasetProfile, only?: ReadonlySet<string>): Shape {
  const columns = profile.columns.filter((c) => only === undefined || only.has(c.name));
  const kinds: Record<string, FeatureKind> = {};
  const edges: Record<string, readonly number[]> = {};
  for (const column of columns) {
    kinds[column.name] = column.kind;
    if (column.kind === "numeric") edges[column.name] = column.histogram.edges;
  }
  return { names: columns.map((c) => c.name), kinds, edges, reference: referenceFromProfile({ ...profile, columns }) };
}

/** Exact powers of ten (every one up to 1e22 is a double). */
const POW10 = Array.from({ length: 23 }, (_, i) => 10 ** i);

/**
 * The shortest decimal (6 to 9 significant digits) that rounds to the same float32: what a client typed. Each
 * candidate is an integer k scaled by an exact power of ten, which IEEE division or multiplication rounds exactly as
 * parsing "k e-n" would; the fround check keeps only candidates that are the same float32. Arithmetic, not
 * `toPrecision`: this runs for every input value of every monitored request.
 */
function float32Decimal(value: number): number {
  if (!Number.isFinite(value) || value === 0) return value;
  const magnitude = Math.floor(Math.log10(Math.abs(value)));
  for (let digits = 6; digits < 9; digits++) {
    const e = digits - 1 - magnitude;
    if (e > 22 || e < -22) return value;
    const decimal = e >= 0 ? Math.round(value * (POW10[e] as number)) / (POW10[e] as number) : Math.round(value / (POW10[-e] as number)) * (POW10[-e] as number);
    if (Math.fround(decimal) === value) return decimal;
  }
  return value;
}

/** A tensor's elements as cells, float32 read back as decimals (see the file's doc). */
function inputCells(tensor: Tensor): ArrayLike<Cell> {
  const { data, dtype } = tensor;
  if (dtype === "float32" && data instanceof Float32Array) {
    const out = new Array<number>(data.length);
    for (let i = 0; i < data.length; i++) out[i] = float32Decimal(data[i] as number);
    return out;
  }
  if (dtype === "float16" && data instanceof Uint16Array) {
    const out = new Array<number>(data.length);
    for (let i = 0; i < data.length; i++) out[i] = fromFloat16Bits(data[i] as number);
    return out;
  }
  return tensorValues(tensor);
}

/** Column `column` of a row-major `[rows, width]` block. */
function columnOf(flat: ArrayLike<Cell>, rows: number, width: number, column: number): Cell[] {
  const cells = new Array<Cell>(rows);
  for (let r = 0; r < rows; r++) cells[r] = flat[r * width + column] ?? null;
  return cells;
}

/** The cells a window profile's column stands for, for `datasetDrift` (see the file's doc). */
function profileCells(column: ColumnProfile): { cells: Cell[]; source: string; approximate: boolean } {
  if (column.kind === "numeric") return { cells: column.sample, source: "window.sample", approximate: column.sample.length < column.count };
  const cells: Cell[] = [];
  for (const [value, count] of Object.entries(column.frequencies)) for (let i = 0; i < count; i++) cells.push(value);
  for (let i = 0; i < column.otherCount; i++) cells.push(OTHER_CATEGORY);
  return { cells, source: "window.frequencies", approximate: column.otherCount > 0 };
}

export class LiveMonitor {
  readonly sizes: readonly { label: string; ms: number }[];
  readonly minRows: number;
  readonly replicaId: string;
  readonly #scoring: ScoringService;
  readonly #store: MonitorStore;
  readonly #logger: Logger;
  readonly #now: () => Date;
  readonly #alerter: Alerter;
  readonly #sampleSize: number | undefined;
  readonly #maxQueuedRows: number;
  readonly #kindWindows: number;
  readonly #timerEnabled: boolean;
  readonly #versions = new Map<string, VersionState>();
  #queue: Queued[] = [];
  #queuedRows = 0;
  /** Events ever queued, and ever profiled (or dropped): a flush waits for those queued before it only. */
  #enqueued = 0;
  #processed = 0;
  #settled: { target: number; resolve: () => void }[] = [];
  #draining: Promise<void> | undefined;
  #flushing: Promise<unknown> = Promise.resolve();
  /** Windows ending at or before this (clock ms) have been closed. */
  #closedUntil = Number.NEGATIVE_INFINITY;
  #unsubscribe: (() => void) | undefined;
  #timer: NodeJS.Timeout | undefined;
  readonly #counts = { seen: 0, profiled: 0, ignored: 0, dropped: 0, rows: 0, saved: 0, errors: 0 };

  constructor(options: LiveMonitorOptions) {
    this.#scoring = options.scoring;
    this.#store = options.store;
    this.#logger = options.logger;
    this.#now = options.now ?? (() => new Date());
    this.sizes = (options.sizes ?? ["1h"]).map((label) => ({ label, ms: parseWindowSize(label) }));
    this.minRows = options.minRows ?? DEFAULT_MIN_WINDOW_ROWS;
    this.replicaId = options.replicaId ?? "";
    this.#sampleSize = options.sampleSize;
    this.#maxQueuedRows = options.maxQueuedRows ?? DEFAULT_MAX_QUEUED_ROWS;
    this.#kindWindows = options.kindWindows ?? DEFAULT_KIND_WINDOWS;
    this.#timerEnabled = options.timer ?? true;
    this.#alerter = options.alerter ?? new Alerter({ sinks: LiveMonitor.#defaultSinks(options), logger: options.logger });
  }

  static #defaultSinks(options: LiveMonitorOptions): AlertSink[] {
    const sinks: AlertSink[] = [logSink(options.logger)];
    if (options.registry !== undefined) sinks.push(gaugeSink(options.registry));
    if (options.webhookUrl !== undefined) sinks.push(webhookSink({ url: options.webhookUrl, logger: options.logger }));
    return sinks;
  }

  /** Subscribes to scoring events and starts the flush timer. */
  start(): void {
    if (this.#unsubscribe !== undefined) return;
    this.#unsubscribe = this.#scoring.onScored((event) => this.#onScored(event));
    if (this.#timerEnabled && this.sizes.length > 0) {
      const smallest = Math.min(...this.sizes.map((s) => s.ms));
      const interval = Math.max(MIN_FLUSH_INTERVAL_MS, Math.min(MAX_FLUSH_INTERVAL_MS, Math.floor(smallest / FLUSH_STEPS_PER_WINDOW)));
      this.#timer = setInterval(() => {
        // flush() logs and counts its own failures; this catch is for the unexpected.
        this.flush().catch((err: unknown) => this.#fail(err, "live monitor flush failed"));
      }, interval);
      this.#timer.unref();
    }
  }

  /** Unsubscribes and closes the windows that have ended; with `flushOpen`, also the ones still open. */
  async close(options: { flushOpen?: boolean } = {}): Promise<FlushResult> {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    const result = await this.flush();
    if (options.flushOpen === true) {
      const rest = await this.#serialised(() => this.#flush(this.#now(), true));
      result.windows.push(...rest.windows);
      result.errors += rest.errors;
    }
    for (const state of this.#versions.values()) state.monitored?.windows.clear();
    return result;
  }

  stats(): LiveMonitorStats {
    let monitored = 0;
    let without = 0;
    let open = 0;
    for (const state of this.#versions.values()) {
      if (state.monitored !== undefined) {
        monitored++;
        for (const windows of state.monitored.windows.values()) open += windows.size;
      } else if (state.unmonitored) without++;
    }
    const c = this.#counts;
    return {
      versionsMonitored: monitored,
      versionsWithoutReference: without,
      openWindows: open,
      eventsSeen: c.seen,
      eventsProfiled: c.profiled,
      eventsIgnored: c.ignored,
      eventsDropped: c.dropped,
      rowsProfiled: c.rows,
      queuedEvents: this.#queue.length,
      windowsSaved: c.saved,
      errors: c.errors,
    };
  }

  /** Profiles what is queued, then closes every window whose end has passed (see the file's doc). */
  async flush(now?: Date): Promise<FlushResult> {
    const at = now ?? this.#now();
    return this.#serialised(() => this.#flush(at, false));
  }

  #serialised<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#flushing.then(work, work);
    this.#flushing = run.catch(() => undefined);
    return run;
  }

  #fail(err: unknown, message: string, fields: Record<string, unknown> = {}): void {
    this.#counts.errors++;
    this.#logger.error({ event: "monitor_live_error", err, ...fields }, `${message}: ${err instanceof Error ? err.message : String(err)}`);
  }

  /** Called synchronously inside the scoring request: only queues. Never throws. */
  #onScored(event: ScoringEvent): void {
    try {
      this.#counts.seen++;
      if (!event.ok || event.version === null || event.inputs === undefined || event.protocol === MONITOR_PROTOCOL) {
        this.#counts.ignored++;
        return;
      }
      const at = this.#now().getTime();
      const state = this.#versions.get(`${event.model}@${event.version}`);
      if (state?.unmonitored === true && at - state.checkedAt < REFERENCE_RECHECK_MS) {
        this.#counts.ignored++;
        return;
      }
      if (this.#queuedRows + event.rows > this.#maxQueuedRows) {
        this.#counts.dropped++;
        return;
      }
      this.#queue.push({ event, at });
      this.#enqueued++;
      this.#queuedRows += event.rows;
      this.#scheduleDrain();
    } catch (err) {
      this.#fail(err, "live monitor could not take a scoring event");
    }
  }

  #scheduleDrain(): void {
    if (this.#draining !== undefined) return;
    this.#draining = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.#drain())
      .catch((err: unknown) => this.#fail(err, "live monitor profiling failed"))
      .finally(() => {
        this.#draining = undefined;
        if (this.#queue.length > 0) this.#scheduleDrain();
      });
  }

  /** Waits until the events queued so far have been profiled (later ones, under steady traffic, are not waited for). */
  async #settle(): Promise<void> {
    const target = this.#enqueued;
    if (this.#processed >= target) return;
    if (this.#draining === undefined) this.#scheduleDrain();
    await new Promise<void>((resolve) => this.#settled.push({ target, resolve }));
  }

  #eventDone(): void {
    this.#processed++;
    if (this.#settled.length === 0) return;
    const waiting = this.#settled;
    this.#settled = waiting.filter((w) => w.target > this.#processed);
    for (const w of waiting) if (w.target <= this.#processed) w.resolve();
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue;
      this.#queue = [];
      for (const { event, at } of batch) {
        this.#queuedRows -= event.rows;
        try {
          const state = await this.#versionState(event.model, event.version as number, at);
          if (state.monitored === undefined) {
            this.#counts.ignored++;
            continue;
          }
          if (this.#accumulate(state, event, at)) {
            this.#counts.profiled++;
            this.#counts.rows += event.rows;
          } else {
            this.#counts.dropped++;
          }
        } catch (err) {
          this.#counts.dropped++;
          this.#fail(err, "live monitor could not profile a scoring event", { model: event.model, version: event.version });
        } finally {
          this.#eventDone();
        }
      }
    }
  }

  /** The version's state, looking its reference up once (again every 60 s while it has none). */
  async #versionState(model: string, version: number, at: number): Promise<VersionState> {
    const key = `${model}@${version}`;
    let state = this.#versions.get(key);
    if (state === undefined) {
      state = { model, version, checkedAt: at, lookup: undefined, monitored: undefined, unmonitored: false };
      this.#versions.set(key, state);
      state.lookup = this.#lookup(state);
    } else if (state.unmonitored && state.lookup === undefined && at - state.checkedAt >= REFERENCE_RECHECK_MS) {
      state.checkedAt = at;
      state.lookup = this.#lookup(state);
    }
    if (state.lookup !== undefined) await state.lookup;
    return state;
  }

  async #lookup(state: VersionState): Promise<void> {
    try {
      const reference = await this.#store.getReference(state.model, state.version);
      if (reference === undefined) {
        state.unmonitored = true;
        this.#logger.debug({ event: "monitor_live_no_reference", model: state.model, version: state.version }, `${state.model}@${state.version} has no reference profile: not monitored live`);
        return;
      }
      const resolved = await this.#scoring.resolve(`${state.model}@${state.version}`);
      const manifest = resolved.version.manifest;
      state.monitored = {
        reference,
        manifest,
        config: manifest.monitor ?? defaultMonitorConfig(),
        features: undefined,
        predictions: reference.predictions === undefined ? undefined : shapeOf(reference.predictions),
        windows: new Map(),
        skippedInputsLogged: false,
      };
      state.unmonitored = false;
      this.#logger.info({ event: "monitor_live_version", model: state.model, version: state.version, sizes: this.sizes.map((s) => s.label) }, `monitoring ${state.model}@${state.version} live`);
    } catch (err) {
      state.unmonitored = true;
      this.#fail(err, `live monitor could not read the reference of ${state.model}@${state.version}`, { model: state.model, version: state.version });
    } finally {
      state.lookup = undefined;
    }
  }

  /** The event's inputs as named feature columns (see the file's doc). */
  #inputColumns(state: VersionState, monitored: Monitored, inputs: Record<string, Tensor>, rows: number): Map<string, Cell[]> {
    const signature = monitored.manifest.signature;
    const declared = signature.columns?.map((c) => c.name);
    const columnsInput = signature.columnsInput ?? signature.inputs[0]?.name;
    const wanted = monitored.features === undefined ? undefined : new Set(monitored.features.names);
    const columns = new Map<string, Cell[]>();
    const skipped: string[] = [];
    for (const [name, tensor] of Object.entries(inputs)) {
      // One value per row: the input is a column of its own name (a Spark ML pipeline's input columns).
      const column = tensor.shape.length === 1 && tensor.shape[0] === rows;
      if (!column && (tensor.shape.length !== 2 || tensor.shape[0] !== rows)) {
        skipped.push(`${name} [${tensor.shape.join(", ")}]`);
        continue;
      }
      const width = column ? 1 : (tensor.shape[1] as number);
      const names = column
        ? [name]
        : declared !== undefined && name === columnsInput && declared.length === width
          ? declared
          : Array.from({ length: width }, (_, i) => `${name}[${i}]`);
      if (wanted !== undefined && !names.some((n) => wanted.has(n))) continue;
      const flat = inputCells(tensor);
      names.forEach((column, i) => {
        if (wanted === undefined || wanted.has(column)) columns.set(column, columnOf(flat, rows, width, i));
      });
    }
    if (skipped.length > 0 && !monitored.skippedInputsLogged) {
      monitored.skippedInputsLogged = true;
      this.#logger.debug({ event: "monitor_live_inputs_skipped", model: state.model, version: state.version, inputs: skipped }, `live monitoring of ${state.model}@${state.version} skips inputs that are not [rows, k] tables: ${skipped.join(", ")}`);
    }
    return columns;
  }

  /** The event's outputs as prediction columns, named as `predictionTable` names them. */
  static #outputColumns(outputs: Record<string, Tensor>, rows: number, wanted: ReadonlySet<string>): Map<string, Cell[]> {
    const columns = new Map<string, Cell[]>();
    if (rows === 0) return columns;
    for (const [name, tensor] of Object.entries(outputs)) {
      const perRow = elementCount(tensor.shape) / rows;
      if (!Number.isInteger(perRow) || perRow < 1) continue;
      const names = perRow === 1 ? [name] : Array.from({ length: perRow }, (_, k) => `${name}[${k}]`);
      if (!names.some((n) => wanted.has(n))) continue;
      const values = tensorValues(tensor);
      names.forEach((column, k) => {
        if (wanted.has(column)) columns.set(column, columnOf(values, rows, perRow, k));
      });
    }
    return columns;
  }

  /** Adds the event to every size's window; false when it was late for all of them. */
  #accumulate(state: VersionState, event: ScoringEvent, at: number): boolean {
    const monitored = state.monitored as Monitored;
    const rows = event.rows;
    const inputs = this.#inputColumns(state, monitored, event.inputs ?? {}, rows);
    if (monitored.features === undefined) {
      const present = new Set(monitored.reference.features.columns.map((c) => c.name).filter((n) => inputs.has(n)));
      monitored.features = shapeOf(monitored.reference.features, present);
      const missing = monitored.reference.features.columns.map((c) => c.name).filter((n) => !present.has(n));
      if (missing.length > 0) {
        this.#logger.warn(
          { event: "monitor_live_columns_missing", model: state.model, version: state.version, missing, found: [...inputs.keys()].slice(0, 20) },
          `live monitoring of ${state.model}@${state.version}: ${missing.length} reference column(s) are not in the model inputs and are left out (${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ", ..." : ""})`,
        );
      }
    }
    const features = monitored.features;
    const nulls = (): Cell[] => new Array<Cell>(rows).fill(null);
    const featureChunk = { columns: features.names, values: features.names.map((n) => inputs.get(n) ?? nulls()), rows };
    let predictionChunk: { columns: string[]; values: Cell[][]; rows: number } | undefined;
    const predictions = monitored.predictions;
    if (predictions !== undefined) {
      const outputs = LiveMonitor.#outputColumns(event.outputs ?? {}, rows, new Set(predictions.names));
      predictionChunk = { columns: predictions.names, values: predictions.names.map((n) => outputs.get(n) ?? nulls()), rows };
    }
    let added = false;
    for (const size of this.sizes) {
      const start = Math.floor(at / size.ms) * size.ms;
      const end = start + size.ms;
      if (end <= this.#closedUntil) continue;
      let bySize = monitored.windows.get(size.label);
      if (bySize === undefined) monitored.windows.set(size.label, (bySize = new Map()));
      let window = bySize.get(start);
      if (window === undefined) {
        window = {
          size: size.label,
          start,
          end,
          rows: 0,
          features: this.#profiler(features),
          predictions: predictions === undefined ? undefined : this.#profiler(predictions),
        };
        bySize.set(start, window);
      }
      window.features.add(featureChunk);
      if (predictionChunk !== undefined) window.predictions?.add(predictionChunk);
      window.rows += rows;
      added = true;
    }
    return added;
  }

  #profiler(shape: Shape): DatasetProfiler {
    return new DatasetProfiler(shape.names, { kinds: shape.kinds, edges: shape.edges, ...(this.#sampleSize === undefined ? {} : { sampleSize: this.#sampleSize }) });
  }

  async #flush(now: Date, includeOpen: boolean): Promise<FlushResult> {
    await this.#settle();
    const nowMs = now.getTime();
    if (!includeOpen) this.#closedUntil = Math.max(this.#closedUntil, nowMs);
    const due: { state: VersionState; window: OpenWindow }[] = [];
    for (const state of this.#versions.values()) {
      for (const bySize of state.monitored?.windows.values() ?? []) {
        for (const [start, window] of bySize) {
          if (!includeOpen && window.end > nowMs) continue;
          bySize.delete(start);
          due.push({ state, window });
        }
      }
    }
    due.sort((a, b) => a.window.end - b.window.end || a.window.start - b.window.start);
    const result: FlushResult = { windows: [], errors: 0 };
    const fail = (err: unknown, message: string, fields: Record<string, unknown>): void => {
      result.errors++;
      this.#fail(err, message, fields);
    };
    for (const { state, window } of due) {
      const fields = { model: state.model, version: state.version, size: window.size, start: new Date(window.start).toISOString() };
      let stored: StoredWindow;
      try {
        stored = await this.#closeWindow(state, window, now);
        this.#counts.saved++;
      } catch (err) {
        fail(err, `live monitor could not store the ${window.size} window of ${state.model}@${state.version}`, fields);
        continue;
      }
      const findings: LiveWindowFindings = { window: stored, kinds: [], alerts: undefined };
      result.windows.push(findings);
      try {
        findings.kinds = await this.#kinds(state, stored);
        if (!stored.insufficient) findings.alerts = await this.#alert(state, stored, findings.kinds, now);
      } catch (err) {
        fail(err, `live monitor could not report the ${window.size} window of ${state.model}@${state.version}`, fields);
      }
    }
    return result;
  }

  /**
   * Stores the window as this replica's part, with the verdict of the whole window: its part merged with the parts
   * the other replicas saved so far. Returns that merged window.
   */
  async #closeWindow(state: VersionState, window: OpenWindow, now: Date): Promise<StoredWindow> {
    const own: WindowProfile = {
      model: state.model,
      version: state.version,
      size: window.size,
      start: new Date(window.start).toISOString(),
      end: new Date(window.end).toISOString(),
      createdAt: now.toISOString(),
      features: window.features.finish(),
      predictions: window.predictions?.finish(),
      rows: window.rows,
    };
    const others = (await this.#store.listWindowParts(state.model, state.version, window.size, own.start)).filter((part) => part.replica !== this.replicaId);
    const whole = others.length === 0 ? own : mergeWindowParts([{ replica: this.replicaId, window: own }, ...others]);
    const result = this.#windowResult(state, whole);
    // The part keeps its own profiles and rows; its verdict is the whole window's.
    const part = toWindowProfile({ ...result, end: own.end, features: own.features, predictions: own.predictions, rows: window.rows }, now);
    await this.#store.saveWindow(part, { replica: this.replicaId, ...(others.length === 0 ? {} : { verdictRows: result.rows }) });
    return { ...toWindowProfile(result, now), createdAt: whole.createdAt > own.createdAt ? whole.createdAt : own.createdAt };
  }

  /** A window's profiles tested against the reference (drift only with at least `minRows` rows). */
  #windowResult(state: VersionState, window: WindowProfile): WindowResult {
    const monitored = state.monitored as Monitored;
    const features = window.features;
    const predictions = window.predictions;
    const rows = window.rows ?? features.rows;
    const insufficient = rows < this.minRows;
    const config = monitored.config;
    const methods: Record<string, MethodOverride> = {};
    for (const [feature, choice] of Object.entries(config.drift.methods)) methods[feature] = { method: choice.method, threshold: choice.threshold };
    return {
      model: state.model,
      version: state.version,
      size: window.size,
      start: window.start,
      end: window.end,
      rows,
      features,
      predictions,
      drift: insufficient ? undefined : LiveMonitor.#drift(monitored.features as Shape, features, methods, config.drift.share),
      predictionDrift: insufficient || predictions === undefined || monitored.predictions === undefined ? undefined : LiveMonitor.#drift(monitored.predictions, predictions, {}, config.drift.share),
      insufficient,
    };
  }

  /** Drift of a window's profile against the reference, over the columns with values on both sides. */
  static #drift(shape: Shape, current: DatasetProfile, methods: Record<string, MethodOverride>, share: number | undefined): DatasetDrift {
    const byName = new Map(current.columns.map((c) => [c.name, c]));
    const reference: typeof shape.reference = {};
    const cells: Record<string, Cell[]> = {};
    const provenance = new Map<string, { source: string; approximate: boolean; count: number }>();
    for (const name of shape.names) {
      const ref = shape.reference[name];
      const column = byName.get(name);
      if (ref === undefined || column === undefined || ref.count === 0 || column.count === 0) continue;
      const { cells: values, source, approximate } = profileCells(column);
      reference[name] = ref;
      cells[name] = values;
      provenance.set(name, { source, approximate, count: column.count });
    }
    const drift = datasetDrift(reference, cells, { kinds: shape.kinds, methods, ...(share === undefined ? {} : { shareThreshold: share }) });
    for (const f of drift.features) {
      const p = provenance.get(f.feature);
      if (p === undefined) continue;
      f.details.currentSource = p.source;
      f.details.currentApproximate = p.approximate;
      f.currentRows = p.count;
    }
    return drift;
  }

  /** Drift kinds over the stored windows of the window's size, up to it. */
  async #kinds(state: VersionState, window: StoredWindow): Promise<ColumnKind[]> {
    const sizeMs = parseWindowSize(window.size);
    const since = new Date(Date.parse(window.start) - (this.#kindWindows - 1) * sizeMs);
    const history = (await this.#store.listWindows(state.model, state.version, { size: window.size, since }))
      .filter((w) => Date.parse(w.start) <= Date.parse(window.start))
      .map(fromWindowProfile);
    const kinds = classifyWindows(history);
    for (const k of kinds) {
      if (k.kind === "none") continue;
      this.#logger.info(
        { event: "monitor_drift_kind", model: state.model, version: state.version, size: window.size, column: k.column, source: k.source, kind: k.kind },
        `${state.model}@${state.version} ${k.source === "features" ? "feature" : "output"} '${k.column}' over ${window.size} windows: ${k.kind} drift (${k.evidence})`,
      );
    }
    return kinds;
  }

  async #alert(state: VersionState, window: StoredWindow, kinds: readonly ColumnKind[], now: Date): Promise<ProcessResult> {
    const monitored = state.monitored as Monitored;
    const features = monitored.features as Shape;
    const rules = checkRules({ current: window.features, reference: monitored.reference.features, config: monitored.config, expectedColumns: features.names });
    const drift = window.drift as DatasetDrift;
    const report: CheckReport = {
      model: state.model,
      version: state.version,
      rows: window.rows ?? window.features.rows,
      source: `live ${window.size} window ${window.start}`,
      rules,
      drift,
      skippedFeatures: [],
      predictionDrift: window.predictionDrift,
      predictionDriftSkipped: window.predictionDrift === undefined ? "the reference profile has no predictions" : undefined,
      windows: undefined,
      kinds: undefined,
      failures: [],
      passed: true,
    };
    const alerts: Alert[] = alertsFromReport(report, { size: window.size, start: window.start, end: window.end }).map((alert) => {
      const source = alert.kind === "drift" ? "features" : alert.kind === "prediction_drift" ? "predictions" : undefined;
      const kind = source === undefined ? undefined : kinds.find((k) => k.column === alert.feature && k.source === source && k.kind !== "none");
      return kind === undefined ? alert : { ...alert, message: `${alert.message} (${kind.kind} drift over the ${window.size} windows)` };
    });
    return this.#alerter.process(alerts, now, { scope: `${state.model}@${state.version}[${window.size}]` });
  }
}
