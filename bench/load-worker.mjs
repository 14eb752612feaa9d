// Load generator on its own thread, so the client's socket and parsing work does not share the server's event loop.
// Plain JavaScript: Node 20 does not run a TypeScript worker entry through tsx by itself.
// workerData: { url, method, body?, contentType?, connections, durationMs, warmupMs } (see LoadJob in run.ts).
import { Buffer } from "node:buffer";
import http from "node:http";
import { performance } from "node:perf_hooks";
import { URL } from "node:url";
import { parentPort, workerData } from "node:worker_threads";

async function run(job) {
  const target = new URL(job.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: job.connections });
  const payload = job.body === undefined ? undefined : Buffer.from(job.body);
  const headers = {};
  if (payload !== undefined) {
    headers["content-type"] = job.contentType ?? "application/json";
    headers["content-length"] = payload.length;
  }

  const once = () =>
    new Promise((resolve, reject) => {
      const req = http.request(
        { agent, host: target.hostname, port: target.port, path: target.pathname, method: job.method, headers },
        (res) => {
          res.on("data", () => undefined);
          res.on("end", () => resolve(res.statusCode ?? 0));
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end(payload);
    });

  const start = performance.now();
  const measureFrom = start + job.warmupMs;
  const stopAt = measureFrom + job.durationMs;
  const latencies = [];
  let errors = 0;
  let firstError;

  const loop = async () => {
    // Bounded: every loop stops at the deadline, whatever the server does.
    while (performance.now() < stopAt) {
      const t0 = performance.now();
      let ok = false;
      try {
        const status = await once();
        ok = status === 200;
        if (!ok && firstError === undefined) firstError = `HTTP ${status}`;
      } catch (error) {
        if (firstError === undefined) firstError = error instanceof Error ? error.message : String(error);
      }
      const t1 = performance.now();
      if (t0 >= measureFrom && t1 <= stopAt) {
        if (ok) latencies.push(t1 - t0);
        else errors += 1;
      }
    }
  };
  await Promise.all(Array.from({ length: job.connections }, loop));
  agent.destroy();
  latencies.sort((a, b) => a - b);
  return { requests: latencies.length, errors, seconds: job.durationMs / 1000, latencies, firstError };
}

run(workerData).then(
  (result) => parentPort.postMessage(result),
  (error) => parentPort.postMessage({ requests: 0, errors: 1, seconds: 0, latencies: [], firstError: String(error) }),
);
