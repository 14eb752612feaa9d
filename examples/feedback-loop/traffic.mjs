#!/usr/bin/env node
/* global fetch, URL */
/**
 * Traffic for the feedback-loop example: scores rows of the breast-cancer production split
 * (`../shared/fixtures/breast_cancer_mlp/prod.csv`) one request per row, each with a business key
 * (`X-Mlship-Key`), then posts the true outcomes by model and key to `POST /v1/feedback`. With `--flip` the posted
 * outcome is the opposite class: the concept shift (the same patients, the other truth).
 *
 * ```sh
 * node examples/feedback-loop/traffic.mjs --url http://127.0.0.1:8080 --count 50                    # true outcomes
 * node examples/feedback-loop/traffic.mjs --url http://127.0.0.1:8080 --count 100 --offset 50 --flip --prefix shift
 * ```
 *
 * It prints one JSON line: rows sent, per model version (and rollout variant) how many it answered and how many of
 * those answers matched the posted outcome, and the counts `POST /v1/feedback` answered. Also a module: the test
 * `test/e2e/feedback-loop.test.ts` imports `sendTraffic`.
 */
import fs from "node:fs";
import path from "node:path";
import process from "node:process";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const PROD_CSV = path.resolve(HERE, "..", "..", "..", "shared", "fixtures", "breast_cancer_mlp", "prod.csv");
export const CLASS_LABELS = ["malignant", "benign"];

/** The rows of a fixture CSV: the feature columns, and per row its features and its label (0 or 1, last column). */
export function readRows(file = PROD_CSV) {
  const [header, ...lines] = fs.readFileSync(file, "utf8").trim().split(/\r?\n/);
  const names = header.split(",");
  const columns = names.slice(0, -1);
  const rows = lines.map((line) => {
    const values = line.split(",").map(Number);
    return { features: values.slice(0, -1), label: values[values.length - 1] };
  });
  return { columns, rows };
}

async function request(url, init) {
  const response = await fetch(url, init);
  const text = await response.text();
  if (!response.ok) throw new Error(`${init?.method ?? "GET"} ${url}: HTTP ${response.status} ${text}`);
  return { response, body: text === "" ? null : JSON.parse(text) };
}

/** Scores one row through the alias (MLflow scoring protocol) with a business key; what answered and what it said. */
async function scoreRow(base, model, alias, columns, features, key) {
  const { response, body } = await request(`${base}/v1/models/${model}@${alias}/invocations`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-mlship-key": key },
    body: JSON.stringify({ dataframe_split: { columns, data: [features] } }),
  });
  const served = response.headers.get("mlship-model-version") ?? "";
  return {
    key,
    requestId: response.headers.get("x-request-id"),
    version: Number(served.slice(served.lastIndexOf("@") + 1)),
    variant: response.headers.get("mlship-variant"),
    predicted: body.predictions[0].class,
  };
}

/**
 * Waits until the server's prediction log has written `expected` rows more than `before` (its counters in
 * `GET /api/v1/feedback/stats`), so that the outcomes posted next join in the same request instead of waiting as
 * pending for the next join pass. Without those counters it waits one second.
 */
async function logWritten(base) {
  const response = await fetch(`${base}/api/v1/feedback/stats`);
  if (!response.ok) return undefined;
  const stats = await response.json();
  return typeof stats?.log?.written === "number" ? stats.log.written : undefined;
}

async function waitForLog(base, before, expected, timeoutMs = 15_000) {
  if (before === undefined) return sleep(1000);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const written = await logWritten(base);
    if (written === undefined || written >= before + expected) return undefined;
    await sleep(50);
  }
  throw new Error(`the prediction log did not write ${expected} rows within ${timeoutMs} ms`);
}

/**
 * Scores `count` rows starting at `offset` (wrapping around the file), keys `<prefix>-<n>`, then posts their
 * outcomes in one `POST /v1/feedback` (the true label, or the other class with `flip`). Returns the answers and the
 * feedback counts.
 */
export async function sendTraffic(options) {
  const {
    url, model = "breast-cancer", alias = "production", count, offset = 0, prefix = "row", flip = false,
    outcomes = true, concurrency = 4, file = PROD_CSV,
  } = options;
  const base = url.replace(/\/+$/, "");
  const { columns, rows } = readRows(file);
  const before = outcomes ? await logWritten(base) : undefined;
  const answers = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const n = next++;
      const row = rows[(offset + n) % rows.length];
      const actual = CLASS_LABELS[flip ? 1 - row.label : row.label];
      answers[n] = { ...(await scoreRow(base, model, alias, columns, row.features, `${prefix}-${offset + n}`)), actual };
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));

  let feedback = null;
  if (outcomes) {
    await waitForLog(base, before, count);
    feedback = (await request(`${base}/v1/feedback`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ outcomes: answers.map((a) => ({ model, key: a.key, actual: a.actual })) }),
    })).body;
  }
  return { answers, feedback };
}

/** Per served version (and variant): answers and how many matched the posted outcome. */
export function summarise(answers) {
  const byVersion = {};
  for (const a of answers) {
    const name = a.variant === null ? `v${a.version}` : `v${a.version} (${a.variant})`;
    const entry = (byVersion[name] ??= { answered: 0, correct: 0 });
    entry.answered += 1;
    if (a.predicted === a.actual) entry.correct += 1;
  }
  return byVersion;
}

async function main(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      url: { type: "string", default: "http://127.0.0.1:8080" },
      model: { type: "string", default: "breast-cancer" },
      alias: { type: "string", default: "production" },
      count: { type: "string", default: "50" },
      offset: { type: "string", default: "0" },
      prefix: { type: "string", default: "row" },
      flip: { type: "boolean", default: false },
      "no-outcomes": { type: "boolean", default: false },
    },
  });
  const count = Number(values.count);
  const offset = Number(values.offset);
  if (!Number.isInteger(count) || count < 1) throw new Error(`--count must be a positive integer, got ${values.count}`);
  if (!Number.isInteger(offset) || offset < 0) throw new Error(`--offset must be a non-negative integer, got ${values.offset}`);
  new URL(values.url);
  const { answers, feedback } = await sendTraffic({
    url: values.url, model: values.model, alias: values.alias, count, offset, prefix: values.prefix, flip: values.flip,
    outcomes: !values["no-outcomes"],
  });
  process.stdout.write(`${JSON.stringify({ sent: answers.length, served: summarise(answers), feedback })}\n`);
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`traffic: ${err.message}\n`);
    process.exitCode = 1;
  });
}
