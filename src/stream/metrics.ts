/**
 * Prometheus metrics of stream jobs (`/metrics` of `mlship stream run --metrics-port`): one set per registry, every
 * series labelled with the job's name (`stream`), so several jobs can share a registry.
 */
import { Counter, Gauge, Histogram, type Registry as PromRegistry } from "prom-client";
import type { DeadLetter, StreamProgress } from "./types.js";

/** What the engine tells the metrics after each micro-batch, besides its progress. */
export interface BatchObservation {
  progress: StreamProgress;
  /** Dead letters of this batch by stage. */
  deadLetters: Partial<Record<DeadLetter["stage"], number>>;
  /** Records dropped as late in this batch, by operator (`aggregation:<name>`, `join`). */
  lateRecords: Record<string, number>;
  /** Records (or files) waiting in each source after the batch: `main`, `join`; null when unknown. */
  lag: { main: number | null; join?: number | null };
}

export interface StreamMetrics {
  readonly registry: PromRegistry;
  /** A committed micro-batch. */
  batch(observation: BatchObservation): void;
  /** A micro-batch that failed (it is retried, or the stream stops). */
  failedBatch(stream: string): void;
  /**
   * Records acked while another instance that may still be running held their claim unsaved, after being handed back
   * as often as allowed: counted only if that instance saves them (docs/streaming.md, Known limits).
   */
  unresolvedClaims?(stream: string, records: number): void;
}

function counter<T extends string>(registry: PromRegistry, name: string, help: string, labelNames: readonly T[]): Counter<T> {
  const existing = registry.getSingleMetric(name);
  if (existing instanceof Counter) return existing as Counter<T>;
  return new Counter({ name, help, labelNames, registers: [registry] });
}

function gauge<T extends string>(registry: PromRegistry, name: string, help: string, labelNames: readonly T[]): Gauge<T> {
  const existing = registry.getSingleMetric(name);
  if (existing instanceof Gauge) return existing as Gauge<T>;
  return new Gauge({ name, help, labelNames, registers: [registry] });
}

function histogram<T extends string>(registry: PromRegistry, name: string, help: string, labelNames: readonly T[], buckets: number[]): Histogram<T> {
  const existing = registry.getSingleMetric(name);
  if (existing instanceof Histogram) return existing as Histogram<T>;
  return new Histogram({ name, help, labelNames, buckets, registers: [registry] });
}

/** The stream metrics on `registry` (idempotent: a second call on the same registry shares the series). */
export function createStreamMetrics(registry: PromRegistry): StreamMetrics {
  const inputRecords = counter(registry, "mlship_stream_input_records_total", "Records read by a stream job (decoded or not).", ["stream"]);
  const outputRecords = counter(registry, "mlship_stream_output_records_total", "Records scored and written to the predictions sinks.", ["stream"]);
  const deadLetters = counter(registry, "mlship_stream_dead_letters_total", "Records sent to the dead-letter sink, by the stage that refused them (decode, schema, score).", ["stream", "stage"]);
  const lateRecords = counter(registry, "mlship_stream_late_records_total", "Records an operator dropped because their event time was behind its watermark.", ["stream", "operator"]);
  const batches = counter(registry, "mlship_stream_batches_total", "Micro-batches committed (ok) or failed (each failed attempt counts).", ["stream", "status"]);
  const duration = histogram(
    registry,
    "mlship_stream_batch_duration_seconds",
    "Micro-batch duration from read to commit.",
    ["stream"],
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
  );
  const inputRate = gauge(registry, "mlship_stream_input_rows_per_second", "Input rows per second since the previous micro-batch started.", ["stream"]);
  const processedRate = gauge(registry, "mlship_stream_processed_rows_per_second", "Rows per second of the last micro-batch's duration.", ["stream"]);
  const lag = gauge(registry, "mlship_stream_consumer_lag", "Records (NATS: pending and unacked) or files (folder: not yet processed) waiting in a source.", ["stream", "source"]);
  const stateRecords = gauge(registry, "mlship_stream_state_records", "Rows of state an operator holds (open windows' groups, buffered join records).", ["stream", "operator"]);
  const watermark = gauge(registry, "mlship_stream_watermark_seconds", "An operator's event-time watermark (seconds since the epoch).", ["stream", "operator"]);
  const unresolved = counter(
    registry,
    "mlship_stream_unresolved_claims_total",
    "Records acked while another running instance held their claim unsaved (after the allowed hand-backs): uncounted if it never saves them.",
    ["stream"],
  );
  const lastBatch = gauge(registry, "mlship_stream_last_batch_timestamp_seconds", "When the last micro-batch was committed (seconds since the epoch).", ["stream"]);

  return {
    registry,
    batch({ progress, deadLetters: byStage, lateRecords: late, lag: lags }) {
      const stream = progress.stream;
      inputRecords.inc({ stream }, progress.numInputRows);
      outputRecords.inc({ stream }, progress.numOutputRows);
      for (const [stage, n] of Object.entries(byStage)) if (n !== undefined && n > 0) deadLetters.inc({ stream, stage }, n);
      for (const [operator, n] of Object.entries(late)) if (n > 0) lateRecords.inc({ stream, operator }, n);
      batches.inc({ stream, status: "ok" });
      duration.observe({ stream }, progress.durationMs.total / 1000);
      inputRate.set({ stream }, progress.inputRowsPerSecond);
      processedRate.set({ stream }, progress.processedRowsPerSecond);
      if (lags.main !== null) lag.set({ stream, source: "main" }, lags.main);
      if (lags.join !== undefined && lags.join !== null) lag.set({ stream, source: "join" }, lags.join);
      for (const [operator, state] of Object.entries(progress.operators)) {
        stateRecords.set({ stream, operator }, state.stateRecords);
        if (state.watermark !== null) watermark.set({ stream, operator }, state.watermark / 1000);
      }
      lastBatch.set({ stream }, Date.now() / 1000);
    },
    failedBatch(stream) {
      batches.inc({ stream, status: "failed" });
    },
    unresolvedClaims(stream, records) {
      unresolved.inc({ stream }, records);
    },
  };
}
