// The HTTP contract examples/spark-batch/score_with_mlship.py relies on, against the real binary
// (`node bin/mlship.js serve`): a pandas `to_json(orient="split")` body (index, column names with spaces, NaN as
// null, which this model refuses as a missing value) wrapped as MLflow `dataframe_split`, posted to /invocations and /v1/models/{ref}/invocations, answered with
// `predictions` as one record per row with `label` and `probabilities`; a batch over the body limit is 413 and the
// script's answer (split the batch in halves) scores the same rows.
import fs from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixture, REPO, spawnCli, startCli, tempDir } from "../cli/helpers.js";
import type { LongRunning } from "../cli/helpers.js";

const MODEL = "breast-cancer";
const PACKAGE = path.join(REPO, "examples", "models", "breast-cancer");
/** Small enough that a 60-row batch is over it and 30 rows are not (asserted below). */
const BODY_LIMIT = 10_000;

/**
 * What `batch.to_json(orient="split", double_precision=15)` gives for prod.csv rows 0-2 (expected.json rows 0-2)
 * read by pandas and sitting at index 120-122 of a partition: compact JSON, whole floats as `107.0`, the frame's
 * own index kept, column names with spaces as they are.
 */
const PANDAS_SPLIT = '{"columns":["mean radius","mean texture","mean perimeter","mean area","mean smoothness",' +
  '"mean compactness","mean concavity","mean concave points","mean symmetry","mean fractal dimension","radius error",' +
  '"texture error","perimeter error","area error","smoothness error","compactness error","concavity error",' +
  '"concave points error","symmetry error","fractal dimension error","worst radius","worst texture","worst perimeter",' +
  '"worst area","worst smoothness","worst compactness","worst concavity","worst concave points","worst symmetry",' +
  '"worst fractal dimension"],"index":[120,121,122],"data":[' +
  "[13.17,18.66,85.98,534.6,0.1158,0.1231,0.1226,0.0734,0.2128,0.06777,0.2871,0.8937,1.897,24.25,0.006532,0.02336," +
  "0.02905,0.01215,0.01743,0.003643,15.67,27.95,102.8,759.4,0.1786,0.4166,0.5006,0.2088,0.39,0.1179]," +
  "[14.26,19.65,97.83,629.9,0.07837,0.2233,0.3003,0.07798,0.1704,0.07769,0.3628,1.49,3.399,29.25,0.005298,0.07446," +
  "0.1435,0.02292,0.02566,0.01298,15.3,23.73,107.0,709.0,0.08949,0.4193,0.6783,0.1505,0.2398,0.1082]," +
  "[16.11,18.05,105.1,813.0,0.09721,0.1137,0.09447,0.05943,0.1861,0.06248,0.7049,1.332,4.533,74.08,0.00677,0.01938," +
  "0.03067,0.01167,0.01875,0.003434,19.92,25.27,129.0,1233.0,0.1314,0.2236,0.2802,0.1216,0.2792,0.08158]]}";

/** The same batch with `mean area` of the third row NaN: pandas writes it as null. */
const PANDAS_SPLIT_WITH_NAN = PANDAS_SPLIT.replace("[16.11,18.05,105.1,813.0,", "[16.11,18.05,105.1,null,");

/** The script's body: the pandas text wrapped without re-serialising it. */
function scriptBody(split: string): string {
  return `{"dataframe_split":${split}}`;
}

/** pandas' number text: shortest round-trip repr, and a float that is whole keeps `.0`. */
function pandasNumber(text: string): string {
  const n = Number(text);
  return Number.isInteger(n) ? n.toFixed(1) : String(n);
}

/** prod.csv rows [from, to) as pandas' split JSON of the 30 feature columns, index = row numbers. */
function pandasSplitOf(from: number, to: number): string {
  const lines = fs.readFileSync(path.join(fixture("breast_cancer_mlp").dir, "prod.csv"), "utf8").trim().split("\n");
  const columns = (lines[0] as string).split(",").slice(0, 30);
  const rows = lines.slice(1 + from, 1 + to).map((l) => `[${l.split(",").slice(0, 30).map(pandasNumber).join(",")}]`);
  const index = Array.from({ length: to - from }, (_, i) => from + i);
  return `{"columns":${JSON.stringify(columns)},"index":${JSON.stringify(index)},"data":[${rows.join(",")}]}`;
}

interface Prediction {
  label: number;
  probabilities: Array<number | null>;
  class?: string;
}

describe("the Spark batch example's HTTP contract (mapInPandas -> mlship)", { timeout: 90_000 }, () => {
  const home = tempDir("spark-batch");
  const env = { MLSHIP_HOME: home, MLSHIP_USER: "ci" };
  let server: LongRunning;
  let url: string;

  async function post(route: string, body: string): Promise<{ status: number; json: unknown; headers: Headers }> {
    const response = await fetch(`${url}${route}`, { method: "POST", headers: { "content-type": "application/json" }, body });
    return { status: response.status, json: (await response.json()) as unknown, headers: response.headers };
  }

  beforeAll(async () => {
    const registered = await spawnCli(["models", "register", PACKAGE, "--name", MODEL, "--alias", "production"], { env });
    expect(registered.stderr).toBe("");
    expect(registered).toMatchObject({ code: 0, stdout: "1\n" });
    server = startCli(["serve", "--port", "0"], {
      env: { ...env, MLSHIP_GRPC_PORT: "-1", MLSHIP_WORKERS: "1", MLSHIP_CACHE: "off", MLSHIP_BODY_LIMIT_BYTES: String(BODY_LIMIT) },
    });
    url = (await server.waitForStdout(/mlship serving on (http:\/\/\S+)/, 60_000))[1] as string;
  }, 90_000);

  afterAll(async () => {
    if (server !== undefined && server.child.exitCode === null) {
      server.child.kill("SIGTERM");
      await Promise.race([server.exited, sleep(15_000)]);
      if (server.child.exitCode === null) server.child.kill("SIGKILL");
    }
    fs.rmSync(home, { recursive: true, force: true });
  });

  it("a pandas split batch gets one prediction record per row, in row order, with label and probabilities", async () => {
    const expected = fixture("breast_cancer_mlp").expected;
    const tolerance = expected.tolerance.probabilities_abs as number;
    const answer = await post("/invocations", scriptBody(PANDAS_SPLIT));
    expect(answer.status, JSON.stringify(answer.json)).toBe(200);
    expect(answer.headers.get("content-type")).toMatch(/^application\/json/);
    const predictions = (answer.json as { predictions: Prediction[] }).predictions;
    expect(predictions).toHaveLength(3);
    for (const [i, record] of predictions.entries()) {
      // What the script reads: int(p["label"]) and the probabilities list.
      expect(record.label).toBe(expected.outputs.label?.[i]);
      const wanted = expected.outputs.probabilities?.[i] as number[];
      expect(record.probabilities).toHaveLength(2);
      record.probabilities.forEach((p, j) => expect(Math.abs((p as number) - (wanted[j] as number))).toBeLessThanOrEqual(tolerance));
      // The package's postprocess step adds the class name next to the graph outputs.
      expect(record.class).toBe(["malignant", "benign"][record.label]);
    }
    expect(Object.keys(predictions[0] as object).sort()).toEqual(["class", "label", "probabilities"]);
  });

  it("a NaN (null) cell reaches the server as a missing value, which this model refuses naming column and row", async () => {
    expect(PANDAS_SPLIT_WITH_NAN).not.toBe(PANDAS_SPLIT);
    const answer = await post("/invocations", scriptBody(PANDAS_SPLIT_WITH_NAN));
    // A 4xx other than 413/429 is the request's fault: the script stops with this message (fill or drop NaNs).
    expect(answer.status).toBe(400);
    expect(answer.json).toMatchObject({ error_code: "BAD_REQUEST", mlship_code: "MLSHIP_ERR_INPUT_DTYPE", field: "mean area" });
    expect((answer.json as { message: string }).message).toBe(
      "column 'mean area' row 2: the value is missing (input 'input' is float32 [-1,30])");
    expect(answer.headers.get("retry-after")).toBeNull();
  });

  it("/v1/models/{ref}/invocations answers the same batch the same way", async () => {
    const byDefault = await post("/invocations", scriptBody(PANDAS_SPLIT));
    expect(byDefault.status).toBe(200);
    const byRef = await post(`/v1/models/${encodeURIComponent(`${MODEL}@production`).replace("%40", "@")}/invocations`, scriptBody(PANDAS_SPLIT));
    expect(byRef.status).toBe(200);
    expect(byRef.json).toEqual(byDefault.json);
    expect(byRef.headers.get("mlship-model-version")).toBe(`${MODEL}@1`);
  });

  it("the index is not part of the answer: the same rows under another index score the same", async () => {
    const reindexed = PANDAS_SPLIT.replace('"index":[120,121,122]', '"index":[0,1,2]');
    const withoutIndex = PANDAS_SPLIT.replace('"index":[120,121,122],', "");
    const a = await post("/invocations", scriptBody(PANDAS_SPLIT));
    const b = await post("/invocations", scriptBody(reindexed));
    const c = await post("/invocations", scriptBody(withoutIndex));
    expect([a.status, b.status, c.status]).toEqual([200, 200, 200]);
    expect(b.json).toEqual(a.json);
    expect(c.json).toEqual(a.json);
  });

  it("a batch over the body limit is 413 with an MLflow error body; split in halves (the script's answer) it scores", async () => {
    const big = scriptBody(pandasSplitOf(0, 60));
    const halves = [scriptBody(pandasSplitOf(0, 30)), scriptBody(pandasSplitOf(30, 60))];
    expect(Buffer.byteLength(big)).toBeGreaterThan(BODY_LIMIT);
    for (const half of halves) expect(Buffer.byteLength(half)).toBeLessThan(BODY_LIMIT);

    const refused = await post("/invocations", big);
    expect(refused.status).toBe(413);
    expect(refused.json).toMatchObject({ error_code: "BAD_REQUEST", mlship_code: "MLSHIP_ERR_INPUT_TOO_LARGE" });
    expect((refused.json as { message: string }).message).toContain(`${BODY_LIMIT} bytes`);
    // 413 is not retried as is (it would fail again): no Retry-After.
    expect(refused.headers.get("retry-after")).toBeNull();

    const answers: Prediction[] = [];
    for (const half of halves) {
      const answer = await post("/invocations", half);
      expect(answer.status).toBe(200);
      answers.push(...(answer.json as { predictions: Prediction[] }).predictions);
    }
    expect(answers).toHaveLength(60);
    const expected = fixture("breast_cancer_mlp").expected;
    // expected.json holds the first 50 prod rows: the halves' labels are the model's labels for them.
    expect(answers.slice(0, 50).map((p) => p.label)).toEqual(expected.outputs.label);
  });
});
