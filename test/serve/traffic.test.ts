import type { AddressInfo } from "node:net";
import type { FastifyInstance } from "fastify";
import { Counter, Histogram, Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryPredictionCache } from "../../src/scoring/index.js";
import { buildServer, histogramQuantile, recordTraffic, requestMetricsOf, TrafficRecorder, trafficRoutes } from "../../src/serve/index.js";
import type { TrafficResponse } from "../../src/ui/contract.js";
import { createWorld, readExpected, waitFor, type World } from "../scoring/world.js";

const T0 = 1_764_547_200_000;

/** Cumulative counts per `le` of one version's latency histogram in the /metrics text, all protocols together. */
function latencyBuckets(text: string, model: string, version: string): { bounds: number[]; counts: number[] } {
  const sums = new Map<number, number>();
  for (const line of text.split("\n")) {
    if (!line.startsWith("mlship_request_duration_seconds_bucket{")) continue;
    if (!line.includes(`model="${model}"`) || !line.includes(`version="${version}"`)) continue;
    const le = /le="([^"]+)"/.exec(line)?.[1] as string;
    const bound = le === "+Inf" ? Number.POSITIVE_INFINITY : Number(le);
    sums.set(bound, (sums.get(bound) ?? 0) + Number(line.split(" ").pop()));
  }
  const bounds = [...sums.keys()].sort((a, b) => a - b);
  return { bounds, counts: bounds.map((b) => sums.get(b) as number) };
}

function metricValue(text: string, name: string, labels: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? 0 : Number(line.split(" ").pop());
}

describe("live traffic samples of a real server", () => {
  let w: World;
  let app: FastifyInstance;
  let url: string;
  let rows: number[][];
  let recorder: TrafficRecorder;

  beforeAll(async () => {
    w = await createWorld({ cache: new MemoryPredictionCache() });
    await w.register("bc", "breast_cancer_mlp", { columns: true });
    await w.register("diabetes", "diabetes_linear", { columns: true, labelColumn: "target" });
    app = buildServer({ scoring: w.scoring, registry: w.registry, logger: false });
    recorder = new TrafficRecorder((requestMetricsOf(app) as NonNullable<ReturnType<typeof requestMetricsOf>>).register);
    await app.register(trafficRoutes, { traffic: recorder });
    await app.listen({ host: "127.0.0.1", port: 0 });
    url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    rows = (await readExpected("breast_cancer_mlp")).inputs as number[][];
  });

  afterAll(async () => {
    await app?.close();
    await w?.close();
  });

  /** A V2 request over real HTTP (the fast path), one row per entry of `data`. */
  const infer = async (model: string, data: number[][], width = 30): Promise<Response> =>
    fetch(`${url}/v2/models/${model}/infer`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ inputs: [{ name: "input", shape: [data.length, width], datatype: "FP32", data: data.flat() }] }),
    });

  it("turns requests between two samples into rates, error rate, latency quantiles, batch size and cache hit rate", async () => {
    await recorder.sampleNow(T0);
    expect(recorder.traffic().series).toEqual([]);

    const a = rows.slice(0, 3);
    const b = rows.slice(3, 5);
    // Two distinct bodies, each sent twice: 2 misses (runs of 3 and 2 rows) and 2 cache hits.
    for (const data of [a, a, b, b]) {
      const res = await infer("bc", data);
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
    expect((await infer("bc", a)).headers.get("mlship-cache")).toBe("hit");
    // Two refusals of a known version: a row of 5 values where 30 are declared.
    for (let i = 0; i < 2; i++) {
      const bad = await infer("bc", [[1, 2, 3, 4, 5]], 5);
      expect(bad.status).toBe(400);
      expect(bad.headers.get("mlship-model-version")).toBe("bc@1");
      await bad.arrayBuffer();
    }
    await recorder.sampleNow(T0 + 2000);

    const metrics = await (await fetch(`${url}/metrics`)).text();
    const series = recorder.traffic().series;
    expect(series.map((s) => `${s.model}@${s.version}`)).toEqual(["bc@1"]);
    const [point] = (series[0] as { points: TrafficResponse["series"][number]["points"] }).points;
    if (point === undefined) throw new Error("no point");
    expect(point.t).toBe(T0 + 2000);
    // 7 requests over 2 s, 2 of them refused.
    expect(point.requestsPerSecond).toBeCloseTo(7 / 2, 10);
    expect(point.errorsPerSecond).toBeCloseTo(2 / 2, 10);
    // Rows answered (refused requests score none): 3 + 3 + 2 + 2 + 3.
    expect(metricValue(metrics, "mlship_rows_total", 'model="bc",version="1"')).toBe(13);
    expect(point.rowsPerSecond).toBeCloseTo(13 / 2, 10);
    // Runs happened for the misses only: 3 rows, then 2.
    expect(metricValue(metrics, "mlship_batch_size_count", 'model="bc",version="1"')).toBe(2);
    expect(point.meanBatchSize).toBeCloseTo(2.5, 10);
    expect(point.cacheHitRate).toBeCloseTo(3 / 5, 10);

    // The quantiles are those of the histogram the server holds (every request fell in this interval).
    const held = latencyBuckets(metrics, "bc", "1");
    expect(held.counts.at(-1)).toBe(7);
    const p50 = histogramQuantile(0.5, held.bounds, held.counts) as number;
    const p99 = histogramQuantile(0.99, held.bounds, held.counts) as number;
    expect(point.p50Ms).toBeCloseTo(p50 * 1000, 9);
    expect(point.p99Ms).toBeCloseTo(p99 * 1000, 9);
    // ...and the same as the request series' own figures (computed independently, over the same requests).
    const snapshot = requestMetricsOf(app)?.snapshot("bc", "1");
    expect(point.p50Ms).toBeCloseTo((snapshot?.latency.p50 as number) * 1000, 9);
    expect(point.p99Ms).toBeCloseTo((snapshot?.latency.p99 as number) * 1000, 9);
    expect(point.p50Ms as number).toBeGreaterThan(0);
    expect(point.p99Ms as number).toBeGreaterThanOrEqual(point.p50Ms as number);

    // An idle interval: zero rates, no quantiles, no batch size or hit rate.
    await recorder.sampleNow(T0 + 4000);
    const idle = recorder.traffic({ since: T0 + 2000 }).series[0]?.points;
    expect(idle).toEqual([{ t: T0 + 4000, requestsPerSecond: 0, rowsPerSecond: 0, errorsPerSecond: 0, p50Ms: null, p99Ms: null, meanBatchSize: null, cacheHitRate: null }]);

    // Totals over the window: the summed histogram, rates over the 4 s the points cover.
    const totals = recorder.totals("bc", 1, 60);
    expect(totals).toEqual({ windowSeconds: 60, requests: 7, requestsPerSecond: 7 / 4, errors: 2, errorRate: 2 / 7, p50Ms: point.p50Ms, p99Ms: point.p99Ms });
    expect(recorder.totals("bc", undefined, 60)).toEqual(totals);
    expect(recorder.totals("bc", "1", 60)).toEqual(totals);
    // The last second holds only the idle point.
    expect(recorder.totals("bc", 1, 1)).toEqual({ windowSeconds: 1, requests: 0, requestsPerSecond: 0, errors: 0, errorRate: 0, p50Ms: null, p99Ms: null });
    expect(recorder.totals("nope", undefined, 60).requests).toBe(0);
  });

  it("serves the points over HTTP, newer than since and of one model, and refuses a since that is no number", async () => {
    const diabetes = await fetch(`${url}/v2/models/diabetes/infer`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ inputs: [{ name: "input", shape: [1, 10], datatype: "FP32", data: [37, 2, 23.6, 94, 205, 138.8, 53, 4, 4.1897, 107] }] }),
    });
    expect(diabetes.status).toBe(200);
    await recorder.sampleNow(T0 + 6000);

    const all = (await (await fetch(`${url}/api/v1/traffic`)).json()) as TrafficResponse;
    expect(all.intervalSeconds).toBe(2);
    expect(all.retentionSeconds).toBe(1800);
    expect(all.now).toBe(T0 + 6000);
    expect(all.series.map((s) => [`${s.model}@${s.version}`, s.points.map((p) => p.t)])).toEqual([
      ["bc@1", [T0 + 2000, T0 + 4000, T0 + 6000]],
      ["diabetes@1", [T0 + 6000]],
    ]);
    expect(all.series[1]?.points[0]?.requestsPerSecond).toBe(0.5);

    const newer = (await (await fetch(`${url}/api/v1/traffic?since=${T0 + 4000}&model=bc`)).json()) as TrafficResponse;
    expect(newer.series).toHaveLength(1);
    expect(newer.series[0]?.points.map((p) => p.t)).toEqual([T0 + 6000]);
    // Passing `now` back gives nothing new until the next sample.
    const none = (await (await fetch(`${url}/api/v1/traffic?since=${all.now}`)).json()) as TrafficResponse;
    expect(none.series).toEqual([]);

    const refused = await fetch(`${url}/api/v1/traffic?since=yesterday`);
    expect(refused.status).toBe(400);
    const body = (await refused.json()) as { error: string; code: string; field: string };
    expect(body.code).toBe("MLSHIP_ERR_INPUT_INVALID");
    expect(body.field).toBe("since");
    expect(body.error).toContain("since");
  });

  it("starts a reset histogram fresh: the batch sizes after a reset, never a negative or mixed figure", async () => {
    // The batch-size histogram is a plain prom-client histogram: resetMetrics() sets it back to zero.
    requestMetricsOf(app)?.register.resetMetrics();
    const res = await infer("bc", rows.slice(10, 14));
    expect(res.status).toBe(200);
    expect(res.headers.get("mlship-cache")).toBe("miss");
    await recorder.sampleNow(T0 + 8000);
    const point = recorder.traffic({ since: T0 + 6000, model: "bc" }).series[0]?.points[0];
    // Before the reset: 2 runs of 5 rows; after it 1 run of 4. A plain difference would say (4-5)/(1-2) = 1.
    expect(point?.meanBatchSize).toBe(4);
    expect(point?.requestsPerSecond).toBe(0.5);
  });
});

describe("traffic recorder arithmetic on a registry of known values", () => {
  const histogram = (register: Registry): Histogram<"model" | "version" | "protocol"> =>
    new Histogram({ name: "mlship_request_duration_seconds", help: "h", labelNames: ["model", "version", "protocol"] as const, buckets: [0.1, 0.2, 0.4], registers: [register] });

  it("interpolates quantiles inside buckets across protocols, and answers the highest bound for the +Inf bucket", async () => {
    const register = new Registry();
    const h = histogram(register);
    const recorder = new TrafficRecorder(register);
    await recorder.sampleNow(T0);
    h.observe({ model: "m", version: "1", protocol: "v2" }, 0.05);
    h.observe({ model: "m", version: "1", protocol: "mlflow" }, 0.05);
    h.observe({ model: "m", version: "1", protocol: "v2" }, 0.15);
    h.observe({ model: "m", version: "1", protocol: "grpc" }, 0.15);
    await recorder.sampleNow(T0 + 2000);
    const [p] = recorder.traffic().series[0]?.points ?? [];
    // rank 2 of 4 ends the first bucket: 0.1 s; rank 3.96 is 98% into (0.1, 0.2].
    expect(p?.p50Ms).toBeCloseTo(100, 9);
    expect(p?.p99Ms).toBeCloseTo(198, 9);

    h.observe({ model: "m", version: "1", protocol: "v2" }, 0.3);
    h.observe({ model: "m", version: "1", protocol: "v2" }, 5);
    await recorder.sampleNow(T0 + 4000);
    const last = recorder.traffic({ since: T0 + 2000 }).series[0]?.points[0];
    expect(last?.p50Ms).toBeCloseTo(400, 9);
    expect(last?.p99Ms).toBeCloseTo(400, 9);
  });

  it("takes window quantiles from the summed buckets, not from the points' quantiles", async () => {
    const register = new Registry();
    const h = histogram(register);
    const recorder = new TrafficRecorder(register);
    const labels = { model: "m", version: "1", protocol: "v2" };
    await recorder.sampleNow(T0);
    h.observe(labels, 0.05);
    await recorder.sampleNow(T0 + 2000);
    for (let i = 0; i < 3; i++) h.observe(labels, 0.3);
    await recorder.sampleNow(T0 + 4000);
    const points = recorder.traffic().series[0]?.points ?? [];
    expect(points.map((p) => p.p50Ms)).toEqual([50, expect.closeTo(300, 9)]);
    // 4 observations: 1 in (0, 0.1], 3 in (0.2, 0.4]; rank 2 is a third into the last one: 266.67 ms, where the
    // mean of the points' medians would be 175 ms.
    expect(recorder.totals("m", 1, 60).p50Ms).toBeCloseTo(200 + 200 / 3, 9);
  });

  it("starts a counter that went down fresh instead of reporting a negative rate", async () => {
    const register = new Registry();
    const requests = new Counter({ name: "mlship_requests_total", help: "r", labelNames: ["model", "version", "protocol", "status"] as const, registers: [register] });
    const recorder = new TrafficRecorder(register);
    const ok = { model: "m", version: "2", protocol: "v2", status: "200" };
    const failed = { ...ok, status: "500" };
    requests.inc(ok, 10);
    requests.inc(failed, 4);
    await recorder.sampleNow(T0);
    requests.inc(ok, 6);
    await recorder.sampleNow(T0 + 2000);
    requests.reset();
    requests.inc(ok, 3);
    requests.inc(failed, 1);
    await recorder.sampleNow(T0 + 4000);
    const points = recorder.traffic().series[0]?.points ?? [];
    expect(points.map((p) => [p.requestsPerSecond, p.errorsPerSecond])).toEqual([
      [3, 0],
      [2, 0.5],
    ]);
    expect(recorder.totals("m", 2, 60)).toMatchObject({ requests: 10, errors: 1, errorRate: 0.1 });
  });

  it("keeps retentionSeconds of points and forgets a version whose series are gone once its points age out", async () => {
    const register = new Registry();
    const requests = new Counter({ name: "mlship_requests_total", help: "r", labelNames: ["model", "version", "protocol", "status"] as const, registers: [register] });
    const recorder = new TrafficRecorder(register, { intervalSeconds: 2, retentionSeconds: 10 });
    for (let i = 0; i <= 50; i++) {
      requests.inc({ model: "m", version: "1", protocol: "v2", status: "200" }, 2);
      await recorder.sampleNow(T0 + i * 2000);
    }
    const points = recorder.traffic().series[0]?.points ?? [];
    // Newer than the newest sample minus 10 s: 5 intervals of 2 s.
    expect(points.map((p) => p.t)).toEqual([46, 47, 48, 49, 50].map((i) => T0 + i * 2000));
    expect(points.every((p) => p.requestsPerSecond === 1)).toBe(true);
    expect(recorder.totals("m", 1, 3600)).toMatchObject({ requests: 10, requestsPerSecond: 1 });

    requests.reset();
    requests.remove({ model: "m", version: "1", protocol: "v2", status: "200" });
    for (let i = 51; i <= 60; i++) await recorder.sampleNow(T0 + i * 2000);
    expect(recorder.traffic().series).toEqual([]);
  });
});

describe("recordTraffic on a server's timer", () => {
  it("samples on its own every intervalSeconds and stops when the server closes", async () => {
    const w = await createWorld();
    try {
      await w.register("bc", "breast_cancer_mlp", { columns: true });
      const app = buildServer({ scoring: w.scoring, registry: w.registry, logger: false });
      const recorder = recordTraffic(app, { intervalSeconds: 0.05 });
      const rows = (await readExpected("breast_cancer_mlp")).inputs as number[][];
      const res = await app.inject({ method: "POST", url: "/v2/models/bc/infer", payload: { inputs: [{ name: "input", shape: [1, 30], datatype: "FP32", data: rows[0] }] } });
      expect(res.statusCode).toBe(200);
      await waitFor(async () => recorder.totals("bc", 1, 60).requests === 1, 5000, 20);
      await app.close();
      const last = recorder.lastSampleAt;
      await new Promise((r) => setTimeout(r, 200));
      expect(recorder.lastSampleAt).toBe(last);
    } finally {
      await w.close();
    }
  });
});
