// Real data for the dashboard's end-to-end test, made through mlship's own CLI (`main`, in this process) and library
// (`createMlship`, `registerModel`, the scoring service, the prediction store's public API): no SQL behind its back.
//
// `seedDashboard(home)` fills a fresh MLSHIP_HOME offline: three models (breast-cancer v1 + v2, diabetes, digits), a
// reference profile and 36 hourly monitoring windows of breast-cancer@1 (prod rows, then the drifted rows), a day of
// backdated predictions with outcomes and business events, an active canary of breast-cancer 2 against 1, a
// succeeded and a failed batch run, and a folder stream run (`availableNow`).
// `driveTraffic(url, seed)` then sends live requests to a running `mlship serve` (both arms of the canary) and posts
// their outcomes over `POST /v1/feedback` and business events over `POST /v1/events`.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { main } from "../../src/cli/main.js";
import { defaultConfig } from "../../src/config/index.js";
import { createLogger } from "../../src/core/index.js";
import { feedbackSpecOf, recordsOf, type PredictionRecord } from "../../src/feedback/index.js";
import type { Manifest } from "../../src/package/index.js";
import type { ScoringEvent } from "../../src/scoring/index.js";

export const REPO = fileURLToPath(new URL("../../", import.meta.url));
export const FIXTURES = fileURLToPath(new URL("../../../shared/fixtures/", import.meta.url));
const EXAMPLES = path.join(REPO, "examples", "models");

const HOUR = 3_600_000;
/** Monitoring windows written for breast-cancer@1: this many hours, the last `DRIFTED_HOURS` of them from drifted.csv. */
const MONITOR_HOURS = 36;
const DRIFTED_HOURS = 14;
const ROWS_PER_WINDOW = 40;
/** Backdated predictions: one request of `ROWS_PER_HOUR` rows per model and hour over the last `QUALITY_HOURS` hours. */
const QUALITY_HOURS = 24;
const ROWS_PER_HOUR = 12;

export interface SeedInfo {
  home: string;
  /** Files the seed wrote (timed monitoring data, batch inputs, the stream job and its folder). */
  dataDir: string;
  /** Every registered model, sorted by name. */
  models: string[];
  breastCancer: { name: "breast-cancer"; versions: number[]; production: number; challenger: number };
  rollout: { id: string; mode: "canary"; percent: number };
  monitor: {
    model: "breast-cancer";
    version: 1;
    sizes: string[];
    /** Hourly windows written (oldest first); the first `MONITOR_HOURS - DRIFTED_HOURS` undrifted. */
    hourlyWindows: number;
    driftedHours: number;
    /** Features shifted in drifted.csv (monitoring must flag them). */
    driftedFeatures: string[];
    features: string[];
  };
  quality: {
    /** Backdated prediction rows per model, with outcomes on `outcomes` of them. */
    predictions: Record<string, number>;
    outcomes: Record<string, number>;
    events: number;
    hours: number;
  };
  batch: { succeeded: { id: string; rowsOut: number }; failed: { id: string; error: string } };
  /** The stream job, run to completion (its status row is in the store: `stream_status`). */
  stream: { name: string; records: number };
}

interface Fixture {
  dir: string;
  header: string[];
  features: string[];
  label: string;
  /** Feature values per row (numbers) and the row's label/target. */
  rows: { features: number[]; label: number }[];
  drifted: { features: number[]; label: number }[];
}

function readFixture(name: string): Fixture {
  const dir = path.join(FIXTURES, name);
  const meta = JSON.parse(fs.readFileSync(path.join(dir, "meta.json"), "utf8")) as { features: string[]; label_column: string };
  const read = (file: string): { header: string[]; rows: { features: number[]; label: number }[] } => {
    const lines = fs.readFileSync(path.join(dir, file), "utf8").trim().split(/\r?\n/);
    const header = (lines[0] as string).split(",");
    const labelIndex = header.indexOf(meta.label_column);
    const rows = lines.slice(1).map((line) => {
      const cells = line.split(",").map(Number);
      return { features: meta.features.map((f) => cells[header.indexOf(f)] as number), label: cells[labelIndex] as number };
    });
    return { header, rows };
  };
  const prod = read("prod.csv");
  return { dir, header: prod.header, features: meta.features, label: meta.label_column, rows: prod.rows, drifted: read("drifted.csv").rows };
}

/** A deterministic generator, so every run seeds the same data. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state / 4294967296;
  };
}

interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `mlship ARGS` in this process against `home` (the real command tree, captured streams, no signal handlers). */
export async function mlship(home: string, args: string[], extraEnv: Record<string, string> = {}, cwd = REPO): Promise<CliRun> {
  let stdout = "";
  let stderr = "";
  const code = await main(["node", "mlship", ...args], {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env: { MLSHIP_HOME: home, MLSHIP_USER: "ui-seed", MLSHIP_LOG_LEVEL: "warn", MLSHIP_WORKERS: "1", MLSHIP_CACHE: "off", ...extraEnv },
    cwd,
    handleSignals: false,
  });
  return { code, stdout, stderr };
}

async function mustRun(home: string, args: string[], extraEnv: Record<string, string> = {}, cwd = REPO): Promise<CliRun> {
  const run = await mlship(home, args, extraEnv, cwd);
  if (run.code !== 0) throw new Error(`mlship ${args.join(" ")} exited ${run.code}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
  return run;
}

const csvLine = (cells: readonly (string | number)[]): string => cells.join(",");

/**
 * Scores `data` with `ref` through the library and stores the prediction rows as if they had been made at `at`
 * (the prediction log's own record builder, `recordsOf`, then the store's `insertPredictions`).
 */
async function logBackdated(
  app: Mlship,
  events: ScoringEvent[],
  ref: string,
  columns: string[],
  data: number[][],
  at: Date,
  requestId: string,
  manifest: Manifest,
): Promise<PredictionRecord[]> {
  const result = await app.scoring.score(ref, { kind: "mlflow", body: { dataframe_split: { columns, data } } }, { protocol: "mlflow", requestId });
  const event = events.find((e) => e.requestId === result.requestId);
  if (event === undefined) throw new Error(`no scoring event for ${requestId}`);
  const records = recordsOf({ ...event, at }, feedbackSpecOf(manifest), manifest);
  await app.predictions.insertPredictions(records);
  return records;
}

/** Fills a fresh MLSHIP_HOME with the dashboard's data (see the file's header). */
export async function seedDashboard(home: string): Promise<SeedInfo> {
  const dataDir = path.join(home, "seed-data");
  fs.mkdirSync(dataDir, { recursive: true });
  const bc = readFixture("breast_cancer_mlp");
  const diabetes = readFixture("diabetes_linear");
  const random = seeded(20261201);

  // 1. Models, through the library's registration (what `mlship models register` calls).
  const app = await createMlship(defaultConfig({ home, user: "ui-seed", "runtime.workers": 1, "cache.backend": "off", "log.level": "warn" }), {
    logger: createLogger({ level: "warn" }),
  });
  const manifests = new Map<string, Manifest>();
  const predictions: Record<string, number> = {};
  const outcomes: Record<string, number> = {};
  let events = 0;
  try {
    const v1 = await registerModel(app, path.join(EXAMPLES, "breast-cancer"), {
      name: "breast-cancer", alias: "production", reason: "first release", description: "MLP on the Wisconsin diagnostic data",
      metrics: { accuracy: 0.965 }, tags: { team: "oncology" },
    });
    manifests.set("breast-cancer@1", v1.manifest);
    const v2 = await registerModel(app, path.join(EXAMPLES, "breast-cancer"), {
      name: "breast-cancer", description: "retrained MLP (November data)", metrics: { accuracy: 0.972 }, tags: { team: "oncology", retrained: "2026-11" },
    });
    manifests.set("breast-cancer@2", v2.manifest);
    const d1 = await registerModel(app, path.join(EXAMPLES, "diabetes"), { name: "diabetes", alias: "production", reason: "first release", metrics: { rmse: 56.0 } });
    manifests.set("diabetes@1", d1.manifest);
    await registerModel(app, path.join(EXAMPLES, "digits"), { name: "digits", alias: "production", reason: "first release", metrics: { accuracy: 0.991 } });

    // 2. A day of predictions (backdated, one request per hour) with outcomes and a few business events.
    const scored: ScoringEvent[] = [];
    app.scoring.onScored((event) => scored.push(event));
    const now = Date.now();
    const outcomeItems: Record<string, unknown>[] = [];
    const eventItems: Record<string, unknown>[] = [];
    for (const [model, fixture] of [["breast-cancer", bc], ["diabetes", diabetes]] as const) {
      predictions[model] = 0;
      outcomes[model] = 0;
      for (let h = QUALITY_HOURS; h >= 1; h--) {
        const at = new Date(now - h * HOUR + Math.floor(random() * 30 * 60_000));
        // The second half of the day sees the drifted rows (quality drops a little there).
        const source = h <= QUALITY_HOURS / 2 ? fixture.drifted : fixture.rows;
        const picked = Array.from({ length: ROWS_PER_HOUR }, () => source[Math.floor(random() * source.length)] as { features: number[]; label: number });
        const requestId = `seed-${model}-${h}`;
        const records = await logBackdated(app, scored, `${model}@1`, fixture.features, picked.map((r) => r.features), at, requestId, manifests.get(`${model}@1`) as Manifest);
        predictions[model] += records.length;
        picked.forEach((row, i) => {
          // Coverage below 1: a sixth of the outcomes never arrive.
          if (i % 6 === 5) return;
          outcomeItems.push({ request_id: requestId, row: i, actual: row.label, event_time: new Date(at.getTime() + 20 * 60_000).toISOString() });
          outcomes[model] = (outcomes[model] as number) + 1;
          if (model === "breast-cancer" && i % 4 === 0) {
            eventItems.push({ event_id: `${requestId}-${i}-followup`, name: "follow_up_booked", value: 1, request_id: requestId, row: i, event_time: new Date(at.getTime() + 30 * 60_000).toISOString() });
          }
        });
      }
    }
    const ingested = await app.feedback.ingestOutcomes(outcomeItems);
    if (ingested.rejected.length > 0 || ingested.matched !== outcomeItems.length) {
      throw new Error(`seed outcomes: ${JSON.stringify({ ...ingested, rejected: ingested.rejected.slice(0, 3) })}`);
    }
    const ingestedEvents = await app.feedback.ingestEvents(eventItems);
    if (ingestedEvents.rejected.length > 0) throw new Error(`seed events: ${JSON.stringify(ingestedEvents.rejected.slice(0, 3))}`);
    events = eventItems.length;
  } finally {
    await app.close();
  }

  // 3. Monitoring: the reference profile of breast-cancer@1 from its training CSV, then hourly windows from a
  //    timestamped file: prod rows, then the drifted rows (an instant shift of three features).
  await mustRun(home, ["monitor", "profile", "breast-cancer@1", "--data", path.join(bc.dir, "train.csv")]);
  // diabetes@1 gets one too, so the server's live monitoring can raise drift alerts on it (see driveTraffic).
  await mustRun(home, ["monitor", "profile", "diabetes@1", "--data", path.join(diabetes.dir, "train.csv")]);
  const firstHour = Math.floor(Date.now() / HOUR) * HOUR - MONITOR_HOURS * HOUR;
  const timed: string[] = [csvLine([...bc.features, "ts"])];
  for (let h = 0; h < MONITOR_HOURS; h++) {
    const source = h >= MONITOR_HOURS - DRIFTED_HOURS ? bc.drifted : bc.rows;
    for (let k = 0; k < ROWS_PER_WINDOW; k++) {
      const row = source[Math.floor(random() * source.length)] as { features: number[] };
      timed.push(csvLine([...row.features, new Date(firstHour + h * HOUR + k * 60_000).toISOString()]));
    }
  }
  const timedFile = path.join(dataDir, "breast-cancer-timed.csv");
  fs.writeFileSync(timedFile, `${timed.join("\n")}\n`);
  // `report` compares and stores the windows like `check` but exits 0 whatever it finds.
  await mustRun(home, ["monitor", "report", "breast-cancer@1", "--data", timedFile, "--time-column", "ts", "--windows", "1h,6h", "--json"]);

  // 4. The canary: 2 takes half of production's traffic (a wide guard margin so it stays active during the test).
  const started = await mustRun(home, ["rollout", "start", "breast-cancer", "--challenger", "2", "--canary", "50%", "--margin", "0.5", "--reason", "retrained on November data", "--json"]);
  const rolloutId = (JSON.parse(started.stdout) as { id: string }).id;

  // 5. Batch: a successful run over the held-out rows, and one that fails (its input lacks a feature column).
  const batchInput = path.join(dataDir, "patients.csv");
  fs.writeFileSync(batchInput, `${[csvLine(["id", ...bc.features]), ...bc.rows.map((r, i) => csvLine([`p${i}`, ...r.features]))].join("\n")}\n`);
  const okRun = await mustRun(home, ["batch", "score", "breast-cancer@production", "--input", batchInput, "--id-column", "id", "--json"]);
  const okSummary = JSON.parse(okRun.stdout) as { id?: string; runId?: string; rowsOut: number };
  const brokenInput = path.join(dataDir, "patients-broken.csv");
  fs.writeFileSync(brokenInput, `${[csvLine(["id", ...bc.features.slice(1)]), ...bc.rows.slice(0, 5).map((r, i) => csvLine([`q${i}`, ...r.features.slice(1)]))].join("\n")}\n`);
  const failedRun = await mlship(home, ["batch", "score", "breast-cancer@production", "--input", brokenInput, "--id-column", "id", "--table", "broken_predictions", "--json"]);
  if (failedRun.code !== 1) throw new Error(`the broken batch run should fail: exit ${failedRun.code}\n${failedRun.stdout}\n${failedRun.stderr}`);
  const failedSummary = JSON.parse(failedRun.stdout) as { id?: string; runId?: string; error?: string };

  // 6. A stream job over a folder of CSV files, run until the folder is drained (`availableNow`).
  const streamName = "patients-stream";
  const streamDir = path.join(dataDir, "stream");
  fs.mkdirSync(path.join(streamDir, "incoming"), { recursive: true });
  let streamRecords = 0;
  for (let f = 0; f < 3; f++) {
    const slice = bc.rows.slice(f * 40, f * 40 + 40);
    const lines = [csvLine(["id", "ts", ...bc.features]), ...slice.map((r, i) => csvLine([`s${f}-${i}`, new Date(Date.now() - (3 - f) * 60_000 + i * 1000).toISOString(), ...r.features]))];
    // One malformed record per file goes to the dead letters.
    lines.push(csvLine([`s${f}-bad`, "not a time", ...slice[0]!.features]));
    streamRecords += slice.length + 1;
    fs.writeFileSync(path.join(streamDir, "incoming", `batch-${f}.csv`), `${lines.join("\n")}\n`);
  }
  const streamConfig = path.join(streamDir, "stream.yaml");
  fs.writeFileSync(
    streamConfig,
    [
      `name: ${streamName}`,
      "model: breast-cancer@production",
      "source: { kind: folder, path: incoming, maxFilesPerTrigger: 1 }",
      "schema: { fields: [{ name: id, type: string }, { name: ts, type: timestamp }], key: id, eventTime: ts, fromModel: true }",
      "trigger: availableNow",
      "sinks: [{ kind: sqlite, table: stream_predictions }]",
      "",
    ].join("\n"),
  );
  const streamRun = await mlship(home, ["stream", "run", streamConfig, "--json"]);
  if (streamRun.code !== 0) throw new Error(`mlship stream run exited ${streamRun.code}\n${streamRun.stdout}\n${streamRun.stderr}`);
  const stream = { name: streamName, records: streamRecords };

  return {
    home,
    dataDir,
    models: ["breast-cancer", "diabetes", "digits"],
    breastCancer: { name: "breast-cancer", versions: [1, 2], production: 1, challenger: 2 },
    rollout: { id: rolloutId, mode: "canary", percent: 50 },
    monitor: {
      model: "breast-cancer",
      version: 1,
      sizes: ["1h", "6h"],
      hourlyWindows: MONITOR_HOURS,
      driftedHours: DRIFTED_HOURS,
      driftedFeatures: ["mean radius", "mean texture", "worst smoothness"],
      features: bc.features,
    },
    quality: { predictions, outcomes, events, hours: QUALITY_HOURS },
    batch: {
      succeeded: { id: okSummary.id ?? okSummary.runId ?? "", rowsOut: okSummary.rowsOut },
      failed: { id: failedSummary.id ?? failedSummary.runId ?? "", error: failedSummary.error ?? "" },
    },
    stream,
  };
}

/**
 * POSTs a scoring request; a 503 or 429 (a model still loading on its first request, or shed load) is retried after
 * its `Retry-After`, as a client should, a few times.
 */
async function invoke(url: string, headers: Record<string, string>, body: unknown, retried: string[]): Promise<{ ok: boolean; status: number; headers: Headers }> {
  for (let attempt = 0; ; attempt++) {
    const response = await fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
    const text = await response.text();
    if ((response.status !== 503 && response.status !== 429) || attempt >= 20) return response;
    retried.push(`${response.status} ${text.slice(0, 200)}`);
    const retryAfter = Number(response.headers.get("retry-after") ?? "1");
    await new Promise((resolve) => setTimeout(resolve, Math.min(1000, Math.max(100, retryAfter * 1000))));
  }
}

export interface TrafficResult {
  requests: number;
  /** Answers per variant header (`champion`, `challenger`). */
  byVariant: Record<string, number>;
  /** Requests that failed even after retries (status per request). */
  errors: string[];
  /** Answers 503/429 that were retried (status and body), e.g. a model loading on its first request. */
  retried: string[];
  outcomesAccepted: number;
  eventsAccepted: number;
}

/**
 * Sends `requests` single-row requests to breast-cancer (following `production`, so the canary splits them; each
 * with a business key), `requests / 4` to diabetes and digits each, then posts the outcomes of the breast-cancer
 * answers by request id (with `event_time`) and a business event for some of them.
 */
export interface TrafficOptions {
  /** breast-cancer requests (one row each); diabetes and digits get a quarter as many each. Default 60. */
  requests?: number;
  /** Requests in flight at once. Default 4. */
  concurrency?: number;
  /** Round number: varies the rows and the business keys between calls. */
  round?: number;
  /** Send diabetes traffic. Default true (the test turns it off after the drifted request, see `driftedDiabetes`). */
  diabetes?: boolean;
  /**
   * Also score all of diabetes' drifted.csv in one request pinned to `diabetes@1`: once the server's live window
   * (`monitor.windows`) closes, its drift (bmi, bp, the mix of sex) raises monitoring alerts.
   */
  driftedDiabetes?: boolean;
}

export async function driveTraffic(url: string, options: TrafficOptions = {}): Promise<TrafficResult> {
  const requests = options.requests ?? 60;
  const concurrency = options.concurrency ?? 4;
  const round = options.round ?? 0;
  const retried: string[] = [];
  const errors: string[] = [];
  const bc = readFixture("breast_cancer_mlp");
  const diabetes = readFixture("diabetes_linear");
  const digits = readFixture("digits_cnn");
  const byVariant: Record<string, number> = {};
  const answered: { requestId: string; actual: number }[] = [];

  // Round 0 first loads every version with one pinned request each (pinned requests are never routed): the canary's
  // arms then start on equal terms, and no model's first requests wait on its load.
  if (round === 0) {
    const warm: [string, Fixture][] = [["breast-cancer@1", bc], ["breast-cancer@2", bc], ["diabetes@1", diabetes], ["digits@1", digits]];
    await Promise.all(warm.map(async ([ref, fixture]) => {
      const row = fixture.rows[0] as { features: number[] };
      const response = await invoke(`${url}/v1/models/${ref}/invocations`, {}, { dataframe_split: { columns: fixture.features, data: [row.features] } }, retried);
      if (!response.ok) errors.push(`${ref} warm-up: HTTP ${response.status}`);
    }));
  }
  const jobs: (() => Promise<void>)[] = [];
  for (let i = 0; i < requests; i++) {
    const row = bc.rows[(i + round * requests) % bc.rows.length] as { features: number[]; label: number };
    jobs.push(async () => {
      const response = await invoke(`${url}/v1/models/breast-cancer/invocations`, { "x-mlship-key": `patient-${round}-${i}` }, {
        dataframe_split: { columns: bc.features, data: [row.features] },
      }, retried);
      if (!response.ok) {
        errors.push(`breast-cancer: HTTP ${response.status}`);
        return;
      }
      const variant = response.headers.get("mlship-variant") ?? "none";
      byVariant[variant] = (byVariant[variant] ?? 0) + 1;
      answered.push({ requestId: response.headers.get("x-request-id") as string, actual: row.label });
    });
  }
  const others = options.diabetes === false ? ([["digits", digits]] as const) : ([["diabetes", diabetes], ["digits", digits]] as const);
  for (const [model, fixture] of others) {
    for (let i = 0; i < Math.ceil(requests / 4); i++) {
      const row = fixture.rows[(i + round * requests) % fixture.rows.length] as { features: number[] };
      jobs.push(async () => {
        const response = await invoke(`${url}/v1/models/${model}/invocations`, {}, { dataframe_split: { columns: fixture.features, data: [row.features] } }, retried);
        if (!response.ok) errors.push(`${model}: HTTP ${response.status}`);
      });
    }
  }
  if (options.driftedDiabetes === true) {
    jobs.push(async () => {
      const data = diabetes.drifted.map((r) => r.features);
      const response = await invoke(`${url}/v1/models/diabetes@1/invocations`, {}, { dataframe_split: { columns: diabetes.features, data } }, retried);
      if (!response.ok) errors.push(`diabetes@1 drifted: HTTP ${response.status}`);
    });
  }
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < jobs.length) await (jobs[next++] as () => Promise<void>)();
    }),
  );

  const post = async (route: string, body: unknown): Promise<{ accepted: number }> => {
    const response = await fetch(`${url}${route}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const text = await response.text();
    if (response.status !== 202) throw new Error(`POST ${route}: HTTP ${response.status} ${text}`);
    return JSON.parse(text) as { accepted: number };
  };
  const eventTime = new Date().toISOString();
  const feedback = answered.length === 0 ? { accepted: 0 } : await post("/v1/feedback", {
    outcomes: answered.map((a) => ({ request_id: a.requestId, actual: a.actual, event_time: eventTime })),
  });
  const clicks = answered.filter((_, i) => i % 3 === 0);
  const businessEvents = clicks.length === 0 ? { accepted: 0 } : await post("/v1/events", {
    events: clicks.map((a) => ({ event_id: `${a.requestId}-report-opened`, name: "report_opened", request_id: a.requestId, event_time: eventTime })),
  });
  return { requests: jobs.length, byVariant, errors, retried, outcomesAccepted: feedback.accepted, eventsAccepted: businessEvents.accepted };
}
