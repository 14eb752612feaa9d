/**
 * Smoke test of `npm run bench`: the body templates, the wrk report parser, and one short real run (the HTTP
 * ceiling and the digits batching pair, autocannon as load generator so it needs nothing outside node_modules)
 * that writes its JSON and markdown to a temporary folder. It runs the built dist/, like the bench.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { bodyOf, constant, mlflowMlp, streamOf, v2Digits, v2Mlp } from "../../bench/lib/bodies.js";
import { loadBenchConfig, onPath } from "../../bench/lib/config.js";
import { parseWrk } from "../../bench/lib/load.js";
import { countsToLoad, parseWrkCounts, probedWrk } from "../../bench/lib/overload.js";
import type { Report } from "../../bench/lib/report.js";

const REPO = fileURLToPath(new URL("../../", import.meta.url));

describe("bench body templates", () => {
  it("give valid JSON whose input differs per request and per run, and one body when constant", () => {
    for (const payload of [mlflowMlp(1), mlflowMlp(32), v2Mlp(1), v2Digits()]) {
      const s1 = streamOf(payload, 1);
      const s2 = streamOf(payload, 2);
      const bodies = [bodyOf(s1, 0), bodyOf(s1, 1), bodyOf(s1, 999_999), bodyOf(s2, 0)];
      expect(new Set(bodies).size).toBe(4);
      for (const b of bodies) expect(() => JSON.parse(b) as unknown).not.toThrow();
      // Distinct after the server narrows the cell to float32, too.
      const a = payload.a;
      expect(Math.fround(a.base + 999_999 * a.step)).not.toBe(Math.fround(a.base + 999_998 * a.step));
      const fixed = constant(payload);
      expect(bodyOf(streamOf(fixed, 7), 123)).toBe(bodyOf(streamOf(fixed, 1), 0));
    }
    const mlflow = JSON.parse(bodyOf(streamOf(mlflowMlp(32), 1), 5)) as { dataframe_split: { columns: string[]; data: number[][] } };
    expect(mlflow.dataframe_split.data).toHaveLength(32);
    expect(mlflow.dataframe_split.columns).toHaveLength(30);
    const digits = JSON.parse(bodyOf(streamOf(v2Digits(), 1), 5)) as { inputs: Array<{ shape: number[]; data: number[] }> };
    expect(digits.inputs[0]?.shape).toEqual([1, 1, 8, 8]);
    expect(digits.inputs[0]?.data).toHaveLength(64);
  });
});

describe("wrk report parser", () => {
  it("reads requests, percentiles in any unit, non-2xx and socket errors", () => {
    const out = [
      "Running 5s test @ http://127.0.0.1:45039/invocations",
      "  2 threads and 16 connections",
      "  Thread Stats   Avg      Stdev     Max   +/- Stdev",
      "    Latency   310.12us  200.00us   9.01ms   90.47%",
      "  Latency Distribution",
      "     50%  530.00us",
      "     75%    3.03ms",
      "     90%   29.16ms",
      "     99%    1.20s",
      "  100000 requests in 5.00s, 21.50MB read",
      "  Socket errors: connect 0, read 2, write 1, timeout 3",
      "  Non-2xx or 3xx responses: 10",
      "Requests/sec:  20000.00",
    ].join("\n");
    const r = parseWrk(out, 16);
    expect(r.ok).toBe(99_990);
    expect(r.rps).toBeCloseTo(19_998, 0);
    expect(r.p50).toBeCloseTo(0.53, 6);
    expect(r.p99).toBe(1200);
    expect(r.errors).toBe(10 + 3 + 3);
    expect(r.statuses).toEqual({ "non-2xx": 10 });
    expect(r.timeouts).toBe(3);
  });
});

describe("overload measurement: counting wrk script and latency probe", () => {
  it("reads the counts line of the wrk script", () => {
    const out = [
      "Running 3s test @ http://127.0.0.1:1/invocations",
      '  BENCH_WRK {"sent":1210,"responses":1200,"closes":0,"statuses":{"200":800,"429":390,"503":10},"durationUs":2000000,"connect":0,"read":1,"write":0,"timeout":2,"p50Us":1500,"p99Us":9000,"pacing":"clock"}',
    ].join("\n");
    const r = countsToLoad(parseWrkCounts(out), 64);
    expect(r.ok).toBe(800);
    expect(r.rps).toBe(400);
    expect(r.sent).toBe(1210);
    expect(r.completed).toBe(1200);
    expect(r.statuses).toEqual({ "429": 390, "503": 10 });
    expect(r.socketErrors).toBe(1);
    expect(r.timeouts).toBe(2);
    expect(r.errors).toBe(400 + 1 + 2);
    expect(r.p99).toBe(9);
    expect(() => parseWrkCounts("no counts here")).toThrow(/no counts/);
  });

  // A real server that sheds every third request with 429 and keeps every body it is sent.
  it("paced wrk offers about its rate and counts statuses, the probe times 2xx only, every body distinct (autocannon fallback without wrk)", async () => {
    if (!onPath("wrk")) {
      // The fallback: without wrk the bench measures the overload with autocannon.
      expect(loadBenchConfig().loadgen).toBe("autocannon");
      return;
    }
    const bodies: string[] = [];
    let count = 0;
    const server = http.createServer((req, res) => {
      let body = "";
      req.setEncoding("utf8");
      req.on("data", (c: string) => (body += c));
      req.on("end", () => {
        bodies.push(body);
        count += 1;
        res.writeHead(count % 3 === 0 ? 429 : 200, { "content-type": "application/json" });
        res.end("{}");
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const r = await probedWrk({
        baseUrl: `http://127.0.0.1:${port}`,
        payload: mlflowMlp(1),
        connections: 16,
        threads: 2,
        seconds: 2,
        rate: 400,
        probeRate: 100,
        probeConnections: 4,
      });
      expect(r.pacing).toBe("clock");
      // wrk runs 4 s (1 s lead, 2 s probe window, 1 s after) at 400 req/s.
      const sentRate = r.sent / r.seconds;
      expect(sentRate).toBeGreaterThan(300);
      expect(sentRate).toBeLessThan(500);
      expect(r.socketErrors + r.timeouts).toBe(0);
      expect(Object.keys(r.statuses)).toEqual(["429"]);
      expect(r.ok + (r.statuses["429"] ?? 0)).toBe(r.completed);
      expect(r.statuses["429"]).toBeGreaterThan((r.completed ?? 0) / 5);
      expect(r.probe.sent).toBeGreaterThan(100);
      expect(r.probe.ok + (r.probe.statuses["429"] ?? 0)).toBe(r.probe.sent);
      expect(r.probe.statuses["429"]).toBeGreaterThan(0);
      expect(r.probe.p99).toBeGreaterThan(0);
      expect(r.probe.p50).toBeLessThanOrEqual(r.probe.p99);
      // Every request (wrk's, the probe's, the probe's warm-up) carried its own input.
      expect(bodies.length).toBe(count);
      expect(new Set(bodies).size).toBe(bodies.length);
      for (const b of bodies.slice(0, 50)) expect((JSON.parse(b) as { dataframe_split: { data: number[][] } }).dataframe_split.data).toHaveLength(1);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }, 60_000);
});

describe("npm run bench (quick, partial)", () => {
  it("measures the HTTP ceiling and digits batching on/off, prints the table and targets, writes JSON and markdown", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-bench-test-"));
    try {
      const child = spawn(process.execPath, ["--import", "tsx", "bench/run.ts"], {
        cwd: REPO,
        env: {
          ...process.env,
          BENCH_QUICK: "1",
          BENCH_ONLY: "bare,digits",
          BENCH_SECONDS: "0.5",
          BENCH_WARMUP_SECONDS: "0",
          BENCH_CONNECTIONS: "4",
          BENCH_DIGITS_CONNECTIONS: "8",
          BENCH_WORKERS: "1",
          BENCH_LOADGEN: "autocannon",
          BENCH_RESULTS_DIR: dir,
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
      child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
      const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
      expect(code, `${stdout}\n${stderr}`).toBe(0);
      expect(stdout).toContain("Targets (issue 3):");
      expect(stdout).toMatch(/bare node:http, constant JSON \(HTTP ceiling\)\s+4\s+[\d,]+/);

      const files = fs.readdirSync(dir);
      expect(files.filter((f) => f.endsWith(".json"))).toHaveLength(1);
      expect(files.filter((f) => f.endsWith(".md"))).toHaveLength(1);
      expect(files).not.toContain("latest.md");
      const report = JSON.parse(fs.readFileSync(path.join(dir, files.find((f) => f.endsWith(".json")) as string), "utf8")) as Report;
      for (const id of ["bare", "digits-on", "digits-off", "bare-end"]) {
        const row = report.rows.find((r) => r.id === id);
        expect(row?.rps, id).toBeGreaterThan(0);
        expect(row?.errors, id).toBe(0);
      }
      const on = report.rows.find((r) => r.id === "digits-on");
      expect(on?.ratio).toBeGreaterThan(0);
      expect(on?.baseline).toBe("batching off");
      // Issue 3's four targets and the cache eviction target, then issue 6's batch target, issue 7's stream figures,
      // issue 8's forest figures and issue 10's replica and cold-start figures (all but the first two not measured).
      expect(report.targets).toHaveLength(10);
      for (const later of report.targets.slice(4)) expect(later.verdict).toBe("N/A");
      for (const issue of [6, 7, 8, 10]) expect(stdout).toContain(`Targets (issue ${issue}):`);
      expect(report.targets[1]?.verdict).toMatch(/^(PASS|FAIL)$/);
      expect(report.targets[0]?.verdict).toBe("N/A");
      expect(report.settings.loadgen).toBe("autocannon");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
