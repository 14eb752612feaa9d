import cliProgress from "cli-progress";
import type { BatchProgress, BatchRun, ProgressReporter } from "./types.js";

export interface ProgressReporterOptions {
  /** A terminal: draw a bar. Otherwise JSON lines (logs, CI, pipes). */
  tty: boolean;
  /** Where JSON lines go (one line per call, newline included). */
  write: (line: string) => void;
  /** The terminal the bar is drawn on. Default process.stderr (stdout stays for the run's summary). */
  stream?: NodeJS.WritableStream;
  /** JSON lines: at most one per this many milliseconds (the final summary always goes out). Default 1000. */
  intervalMs?: number;
  /** Clock, for tests. */
  now?: () => number;
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/**
 * Progress of a batch run: on a terminal, a bar over the input's bytes with rows/s and the ETA; elsewhere one JSON
 * line `{"event":"batch_progress",...}` at most every second and a `batch_done` line at the end.
 */
export function progressReporter(options: ProgressReporterOptions): ProgressReporter {
  return options.tty ? barReporter(options) : jsonReporter(options);
}

function jsonReporter(options: ProgressReporterOptions): ProgressReporter {
  const interval = options.intervalMs ?? 1000;
  const now = options.now ?? Date.now;
  let last = Number.NEGATIVE_INFINITY;
  return {
    update(progress: BatchProgress): void {
      const at = now();
      if (at - last < interval) return;
      last = at;
      options.write(
        `${JSON.stringify({
          event: "batch_progress",
          runId: progress.runId,
          rowsIn: progress.rowsIn,
          rowsOut: progress.rowsOut,
          rowsRejected: progress.rowsRejected,
          rate: round(progress.rate, 1),
          etaSeconds: progress.etaSeconds === null ? null : round(progress.etaSeconds, 1),
          bytesRead: progress.bytesRead,
          bytesTotal: progress.bytesTotal,
        })}\n`,
      );
    },
    done(run: BatchRun): void {
      options.write(`${JSON.stringify({ event: "batch_done", ...runSummary(run) })}\n`);
    },
  };
}

function barReporter(options: ProgressReporterOptions): ProgressReporter {
  let bar: cliProgress.SingleBar | undefined;
  return {
    update(progress: BatchProgress): void {
      const payload = {
        rowsOut: progress.rowsOut,
        rowsRejected: progress.rowsRejected,
        rate: Math.round(progress.rate),
        etaText: progress.etaSeconds === null ? "?" : `${Math.ceil(progress.etaSeconds)}s`,
      };
      if (bar === undefined) {
        bar = new cliProgress.SingleBar(
          {
            format: "scoring [{bar}] {percentage}% | {rowsOut} rows, {rowsRejected} rejected | {rate} rows/s | ETA {etaText}",
            stream: options.stream ?? process.stderr,
            hideCursor: true,
            fps: 5,
          },
          cliProgress.Presets.shades_classic,
        );
        bar.start(Math.max(1, progress.bytesTotal), progress.bytesRead, payload);
      } else {
        bar.update(progress.bytesRead, payload);
      }
    },
    done(): void {
      if (bar !== undefined) {
        bar.update(bar.getTotal());
        bar.stop();
      }
      bar = undefined;
    },
  };
}

/** What a finished run prints: counters, time and throughput. */
export function runSummary(run: BatchRun): {
  runId: string;
  model: string;
  version: number;
  status: string;
  rowsIn: number;
  rowsOut: number;
  rowsRejected: number;
  seconds: number;
  rowsPerSecond: number;
  /** The shard scored, null for a whole file. */
  shard: { index: number; count: number } | null;
  error: string | null;
} {
  const end = run.endedAt === null ? Date.now() : Date.parse(run.endedAt);
  const seconds = Math.max(0, (end - Date.parse(run.startedAt)) / 1000);
  return {
    runId: run.id,
    model: run.model,
    version: run.version,
    status: run.status,
    rowsIn: run.rowsIn,
    rowsOut: run.rowsOut,
    rowsRejected: run.rowsRejected,
    seconds: round(seconds, 3),
    rowsPerSecond: seconds > 0 ? Math.round(run.rowsIn / seconds) : run.rowsIn,
    shard: run.shard,
    error: run.error,
  };
}
