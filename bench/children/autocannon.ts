/**
 * Load generator child: autocannon against one URL, in a process of its own. Latencies are recorded here, per
 * response, with sub-millisecond precision and for 2xx responses only (autocannon's own histogram is integral
 * milliseconds); statuses and socket errors come from autocannon.
 */
import autocannon from "autocannon";
import { performance } from "node:perf_hooks";
import { answer, job, percentile, Samples } from "../lib/child.js";
import { bodyOf, type Stream } from "../lib/bodies.js";
import type { LoadResult } from "../lib/load.js";

export interface AutocannonJob {
  url: string;
  warmup: Stream | undefined;
  stream: Stream;
  warmupSeconds: number;
  seconds: number;
  connections: number;
  /** Requests per second over all connections; undefined: closed loop, as fast as answers come. */
  overallRate?: number;
  timeoutSeconds: number;
}

function once(j: AutocannonJob, stream: Stream, seconds: number, record: boolean): Promise<LoadResult> {
  let n = 0;
  const samples = new Samples();
  const started = performance.now();
  const cpu = process.cpuUsage();
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: j.url,
        connections: j.connections,
        duration: seconds,
        timeout: j.timeoutSeconds,
        ...(j.overallRate === undefined ? {} : { overallRate: Math.max(1, Math.round(j.overallRate)) }),
        requests: [
          {
            method: stream.method,
            path: stream.path,
            headers: { "content-type": stream.contentType },
            setupRequest: (request) => {
              request.body = bodyOf(stream, n++);
              return request;
            },
          },
        ],
      },
      (err, result) => {
        if (err !== null) {
          reject(err);
          return;
        }
        const elapsed = (performance.now() - started) / 1000;
        const statuses: Record<string, number> = {};
        let ok = 0;
        for (const [code, { count }] of Object.entries(result.statusCodeStats)) {
          if (code.startsWith("2")) ok += count;
          else statuses[code] = count;
        }
        const sorted = samples.sorted();
        const measured = Math.min(seconds, elapsed);
        const used = process.cpuUsage(cpu);
        resolve({
          tool: "autocannon",
          connections: j.connections,
          seconds: measured,
          ok,
          rps: ok / measured,
          p50: percentile(sorted, 50),
          p99: percentile(sorted, 99),
          errors: result.non2xx + result.errors,
          statuses,
          socketErrors: result.errors - result.timeouts,
          timeouts: result.timeouts,
          // autocannon's own `sent` counts each connection's whole first-second allowance up front under a rate cap.
          completed: ok + result.non2xx + result.errors,
          latencyScope: "2xx",
          clientCores: (used.user + used.system) / 1e6 / elapsed,
        });
      },
    );
    if (record) {
      instance.on("response", (_client, status, _bytes, ms) => {
        if (status >= 200 && status < 300) samples.push(ms);
      });
    }
  });
}

const j = job<AutocannonJob>();
if (j.warmup !== undefined && j.warmupSeconds > 0) await once(j, j.warmup, j.warmupSeconds, false);
answer(await once(j, j.stream, j.seconds, true));
