// How long the feedback service's periodic `activeVersions` holds the event loop on the default SQLite store (its
// queries are synchronous there), before and after the `prediction_versions` summary (migration 0010):
//   node --import tsx bench/active-versions.ts [rows, default 300000]
// Logs `rows` predictions over 3 days (3 models, 2 versions each, plain and champion/challenger/shadow variants)
// through the real writer, then times, over the whole span and over the last hour:
// - before: the full scan it replaced (`select distinct model, version, variant from prediction_log where at >= ? and
//   at < ?`), run on the same database;
// - after: `SqlPredictionStore.activeVersions` (summary candidates + one indexed probe each);
// and checks that both give the same answer. Also times the migration's backfill over the same log and the writer's
// cost per 2000-row batch with and without the summary upsert.
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { sql, type Kysely } from "kysely";
import { SqlPredictionStore } from "../src/feedback/store.js";
import type { PredictionRecord, Variant } from "../src/feedback/types.js";
import { MIGRATIONS, openSqlStore, type SqlStore } from "../src/store/index.js";

const ROWS = Number(process.argv[2] ?? 300_000);
const BATCH = 2000;
const END = Date.parse("2026-12-01T12:00:00.000Z");
const SPAN = 3 * 24 * 3_600_000;
const RUNS = 15;

function records(from: number, count: number): PredictionRecord[] {
  return Array.from({ length: count }, (_, k) => {
    const i = from + k;
    const model = `model-${i % 3}`;
    // The first half of the span plain version 1; then a rollout: champion 1, challenger 2, and a shadow copy.
    const rollout = i >= ROWS / 2;
    const slot = i % 10;
    const version = rollout && slot >= 7 ? 2 : 1;
    const variant: Variant | null = !rollout ? null : slot === 9 ? "shadow" : version === 2 ? "challenger" : "champion";
    return {
      requestId: `req-${i}`,
      row: 0,
      model,
      version,
      variant,
      rolloutId: rollout ? "ro-1" : null,
      key: `key-${i % 5000}`,
      at: new Date(END - SPAN + Math.floor((i / ROWS) * SPAN)).toISOString(),
      protocol: "rest",
      inputs: JSON.stringify({ x: [i % 7, i % 11, i % 13] }),
      inputsHash: null,
      outputs: JSON.stringify({ label: "yes", probabilities: [0.3, 0.7] }),
      prediction: "yes",
      scores: [0.3, 0.7],
      latencyMs: 1.5,
    };
  });
}

function stats(samples: number[]): string {
  const sorted = [...samples].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
  return `median ${median.toFixed(3)} ms, max ${(sorted.at(-1) ?? 0).toFixed(3)} ms`;
}

async function time(fn: () => Promise<unknown>): Promise<number[]> {
  await fn();
  const samples: number[] = [];
  for (let i = 0; i < RUNS; i += 1) {
    const start = performance.now();
    await fn();
    samples.push(performance.now() - start);
  }
  return samples;
}

async function scan(store: SqlStore, start: string, end: string) {
  const result = await sql<{ model: string; version: number; variant: string | null }>`
    select distinct model, version, variant from prediction_log where at >= ${start} and at < ${end}`.execute(store.db);
  return result.rows;
}

function shape(rows: readonly { model: string; version: number; variant: string | null }[]): string {
  return rows
    .map((r) => `${r.model}@${r.version}:${r.variant ?? ""}`)
    .sort()
    .join(",");
}

const home = await fs.mkdtemp(path.join(os.tmpdir(), "mlship-bench-active-"));
try {
  const store = await openSqlStore({ home });
  const predictions = new SqlPredictionStore(store);
  const raw = store.sqlite;
  if (raw === undefined) throw new Error("expected the SQLite store");

  // The writer, with the summary upsert (now) and without it (the same prepared per-row insert as before).
  const oldInsert = raw.prepare(
    `insert into prediction_log (request_id, "row", model, version, variant, rollout_id, key, at, protocol, inputs, inputs_hash, outputs, prediction, scores, latency_ms) ` +
      `values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) on conflict (request_id, "row", model, version) do nothing`,
  );
  const withSummary: number[] = [];
  const withoutSummary: number[] = [];
  const loadStart = performance.now();
  for (let from = 0; from < ROWS; from += BATCH) {
    const batch = records(from, Math.min(BATCH, ROWS - from));
    const useOld = (from / BATCH) % 2 === 1;
    const start = performance.now();
    if (useOld) {
      await store.write(() => {
        for (const r of batch) {
          oldInsert.run(r.requestId, r.row, r.model, r.version, r.variant, r.rolloutId, r.key, new Date(r.at).toISOString(), r.protocol, r.inputs, r.inputsHash, r.outputs, JSON.stringify(r.prediction), JSON.stringify(r.scores), r.latencyMs);
        }
        return Promise.resolve();
      });
      withoutSummary.push(performance.now() - start);
    } else {
      await predictions.insertPredictions(batch);
      withSummary.push(performance.now() - start);
    }
  }
  // Half the batches skipped the summary: drop it and run migration 0010 again (it backfills from the log), timed.
  const migration = MIGRATIONS.find((m) => m.name === "0010_prediction_versions");
  if (migration === undefined) throw new Error("migration 0010_prediction_versions is missing");
  const migrateStart = performance.now();
  await store.write(async (db) => {
    await sql`drop table prediction_versions`.execute(db);
    await migration.up(db as unknown as Kysely<unknown>, "sqlite");
  });
  const backfillMs = performance.now() - migrateStart;
  const after = new SqlPredictionStore(store);
  const count = await sql<{ n: number }>`select count(*) as n from prediction_log`.execute(store.db);
  const summaryRows = await sql<{ n: number }>`select count(*) as n from prediction_versions`.execute(store.db);

  console.log(`prediction_log: ${count.rows[0]?.n} rows over 3 days, loaded in ${((performance.now() - loadStart) / 1000).toFixed(1)} s; prediction_versions: ${summaryRows.rows[0]?.n} rows`);
  console.log(`writer, ${BATCH}-row batch: with the summary upsert ${stats(withSummary)}; without ${stats(withoutSummary)}`);
  console.log(`migration 0010 (create + backfill): ${backfillMs.toFixed(1)} ms`);
  for (const [label, start, stop] of [
    ["whole span (3 days)", END - SPAN, END + 1],
    ["last hour", END - 3_600_000, END + 1],
    ["an hour mid-rollout (past)", END - SPAN / 4, END - SPAN / 4 + 3_600_000],
  ] as const) {
    const from = new Date(start).toISOString();
    const to = new Date(stop).toISOString();
    const expected = shape(await scan(store, from, to));
    const got = shape((await after.activeVersions(from, to)).flatMap((a) => a.variants.map((variant) => ({ model: a.model, version: a.version, variant }))));
    if (got !== expected) throw new Error(`activeVersions differs from the scan over ${label}: ${got} vs ${expected}`);
    const before = await time(() => scan(store, from, to));
    const now = await time(() => after.activeVersions(from, to));
    console.log(`${label}: before (full scan) ${stats(before)}; after (summary + probes) ${stats(now)}; same answer: ${expected}`);
  }
  await store.close();
} finally {
  await fs.rm(home, { recursive: true, force: true });
}
