// The serverless handler's cold start and warm latency (issue 10 item 8; group `serverless` of `npm run bench`, or
// alone: `npm run build && node --import tsx bench/serverless.ts`). A bundle home with the breast-cancer example
// (registered through the CLI, alias production) is made once; then fresh Node processes, one after the other,
// import the built handler (dist/serverless/index.js) configured by the environment only, as a function platform
// would, and answer one Lambda HTTP event (payload 2.0, MLflow /invocations, 1 row). The last process then answers
// SERVERLESS_WARM (1,000) more events one at a time, as one function instance does, each with a distinct input
// (so the prediction cache cannot answer them).
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { bodyOf, mlflowMlp, streamOf } from "./lib/bodies.js";
import { READY_TAG, RESULT_TAG } from "./lib/child.js";
import { EXAMPLES, ROOT } from "./lib/config.js";
import { childEnv, spawnTracked, stop } from "./lib/proc.js";

export interface ServerlessBenchOptions {
  /** Fresh processes, each answering one event. */
  coldStarts: number;
  /** Events the last process answers after its cold one. */
  warmInvocations: number;
}

export interface ColdStart {
  /** From spawn (in the bench) to the answer line arriving: what a platform's first caller waits, less the platform. */
  spawnToAnswerMs: number;
  /** From the child's process start (performance.timeOrigin) to the answer. */
  processToAnswerMs: number;
  /** `import("mlship/serverless")` alone. */
  importMs: number;
  /** From the first handler call to its answer: init (registry copy, store, worker, model load) plus scoring. */
  handlerToAnswerMs: number;
  /** The handler's own init time (`handler.initMs`). */
  initMs: number;
  statusCode: number;
}

export interface ServerlessBenchResult {
  cold: ColdStart[];
  coldMedian: ColdStart;
  warm: { invocations: number; p50: number; p99: number; max: number; perSecond: number; failures: number };
  rssAfterWarmMiB: number;
}

/** The child: imports the built handler, answers one event, optionally `warm` more, prints one tagged JSON line. */
const CHILD = `
const started = performance.now();
const { handler } = await import(process.env.SERVERLESS_MODULE);
const imported = performance.now();
const { readFileSync } = await import("node:fs");
const events = JSON.parse(readFileSync(process.env.SERVERLESS_EVENTS, "utf8"));
const first = await handler(events.first, { awsRequestId: "cold" });
const answered = performance.now();
process.stdout.write(${JSON.stringify(READY_TAG)} + JSON.stringify({
  processToAnswerMs: answered, importMs: imported - started, handlerToAnswerMs: answered - imported, initMs: handler.initMs,
  statusCode: first.statusCode, firstBody: first.body,
}) + String.fromCharCode(10));
const warm = [];
let failures = 0;
for (let i = 0; i < events.warm.length; i++) {
  const t = performance.now();
  const r = await handler(events.warm[i], { awsRequestId: "warm-" + i });
  warm.push(performance.now() - t);
  if (r.statusCode !== 200) failures++;
}
process.stdout.write(${JSON.stringify(RESULT_TAG)} + JSON.stringify({ warm, failures, rss: process.memoryUsage().rss }) + String.fromCharCode(10));
await handler.close();
`;

function lambdaEvent(body: string): unknown {
  return {
    version: "2.0",
    rawPath: "/invocations",
    headers: { "content-type": "application/json" },
    body,
    isBase64Encoded: false,
    requestContext: { http: { method: "POST" } },
  };
}

const median = (values: number[]): number => {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)] as number;
};

export async function measureServerless(options: ServerlessBenchOptions, say: (line: string) => void = () => undefined): Promise<ServerlessBenchResult> {
  const module = path.join(ROOT, "dist", "serverless", "index.js");
  if (!fs.existsSync(module)) throw new Error("dist/serverless/index.js is missing; run `npm run build` first");
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-bench-serverless-"));
  try {
    const bundle = path.join(tmp, "bundle");
    await promisify(execFile)(
      process.execPath,
      [path.join(ROOT, "bin", "mlship.js"), "models", "register", path.join(EXAMPLES, "breast-cancer"), "--name", "breast-cancer", "--alias", "production"],
      { cwd: tmp, env: childEnv({ MLSHIP_HOME: bundle, MLSHIP_LOG_LEVEL: "warn" }), timeout: 120_000 },
    );
    // A file, not `node -e`: worker threads inherit the parent's execArgv, and `-e` there makes the workers fail.
    const childFile = path.join(tmp, "cold-child.mjs");
    fs.writeFileSync(childFile, CHILD);
    const stream = streamOf(mlflowMlp(1), 1);
    const cold: ColdStart[] = [];
    let last: { warm: number[]; failures: number; rss: number } | undefined;
    for (let i = 0; i < options.coldStarts; i++) {
      const isLast = i === options.coldStarts - 1;
      const events = {
        first: lambdaEvent(bodyOf(stream, i)),
        warm: isLast ? Array.from({ length: options.warmInvocations }, (_, n) => lambdaEvent(bodyOf(stream, options.coldStarts + n))) : [],
      };
      const eventsFile = path.join(tmp, `events-${i}.json`);
      fs.writeFileSync(eventsFile, JSON.stringify(events));
      const t0 = performance.now();
      const proc = spawnTracked(process.execPath, [childFile], {
        MLSHIP_HOME: bundle,
        MLSHIP_DEFAULT_MODEL: "breast-cancer@production",
        MLSHIP_LOG_LEVEL: "warn",
        SERVERLESS_MODULE: pathToFileURL(module).href,
        SERVERLESS_EVENTS: eventsFile,
      }, tmp);
      try {
        const got = await proc.waitLine(
          (line) => (line.startsWith(READY_TAG) ? (JSON.parse(line.slice(READY_TAG.length)) as Omit<ColdStart, "spawnToAnswerMs"> & { firstBody: string }) : undefined),
          120_000,
          "serverless cold start",
        );
        const spawnToAnswerMs = performance.now() - t0;
        if (got.statusCode !== 200) throw new Error(`the cold invocation answered ${got.statusCode}: ${got.firstBody.slice(0, 300)}`);
        const { firstBody: _body, ...figures } = got;
        cold.push({ ...figures, spawnToAnswerMs });
        say(`bench: serverless cold start ${i + 1}/${options.coldStarts}: spawn to answer ${spawnToAnswerMs.toFixed(0)} ms (import ${got.importMs.toFixed(0)} ms, handler init ${got.initMs.toFixed(0)} ms, first call ${got.handlerToAnswerMs.toFixed(0)} ms)`);
        last = await proc.waitLine(
          (line) => (line.startsWith(RESULT_TAG) ? (JSON.parse(line.slice(RESULT_TAG.length)) as { warm: number[]; failures: number; rss: number }) : undefined),
          300_000,
          "serverless warm invocations",
        );
        await proc.exited;
      } finally {
        await stop(proc, 5000);
      }
    }
    const pick = (key: keyof ColdStart): number => median(cold.map((c) => c[key]));
    const coldMedian: ColdStart = {
      spawnToAnswerMs: pick("spawnToAnswerMs"),
      processToAnswerMs: pick("processToAnswerMs"),
      importMs: pick("importMs"),
      handlerToAnswerMs: pick("handlerToAnswerMs"),
      initMs: pick("initMs"),
      statusCode: 200,
    };
    const sorted = Float64Array.from(last?.warm ?? []).sort();
    const at = (p: number): number => (sorted.length === 0 ? Number.NaN : (sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number));
    const total = sorted.reduce((a, b) => a + b, 0);
    const warm = { invocations: sorted.length, p50: at(50), p99: at(99), max: at(100), perSecond: total > 0 ? (sorted.length * 1000) / total : Number.NaN, failures: last?.failures ?? 0 };
    say(`bench: serverless warm: ${warm.invocations} invocations, p50 ${warm.p50.toFixed(2)} ms, p99 ${warm.p99.toFixed(2)} ms, ${warm.failures} failures`);
    return { cold, coldMedian, warm, rssAfterWarmMiB: (last?.rss ?? 0) / 1024 / 1024 };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** The figures as a few lines (the standalone run prints them; `npm run bench` puts them in its table). */
export function serverlessLines(r: ServerlessBenchResult): string[] {
  const c = r.coldMedian;
  return [
    `cold start (median of ${r.cold.length} fresh processes): spawn to first answer ${c.spawnToAnswerMs.toFixed(0)} ms; process start to answer ${c.processToAnswerMs.toFixed(0)} ms`,
    `  of which: import mlship/serverless ${c.importMs.toFixed(0)} ms; handler init to first answer ${c.handlerToAnswerMs.toFixed(0)} ms (init ${c.initMs.toFixed(0)} ms)`,
    `warm: ${r.warm.invocations} sequential invocations, p50 ${r.warm.p50.toFixed(2)} ms, p99 ${r.warm.p99.toFixed(2)} ms, max ${r.warm.max.toFixed(2)} ms, ${r.warm.failures} failures; RSS after ${r.rssAfterWarmMiB.toFixed(0)} MiB`,
  ];
}

// Standalone: `node --import tsx bench/serverless.ts`.
if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const coldStarts = Number(process.env.SERVERLESS_COLD ?? 5);
  const warmInvocations = Number(process.env.SERVERLESS_WARM ?? 1000);
  const result = await measureServerless({ coldStarts, warmInvocations }, (line) => process.stdout.write(`${line}\n`));
  for (const line of serverlessLines(result)) process.stdout.write(`${line}\n`);
}
