// `mlship monitor profile` and `mlship monitor check` through the real binary, on the fixtures' train, prod and
// drifted files: the planted shifts must be found, and the undrifted file must pass.
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CheckReport, ReferenceProfile } from "../../src/monitor/index.js";
import { fixture, spawnCli, startCli, tempDir } from "./helpers.js";

const home = tempDir("cli-monitor");
const env = { MLSHIP_HOME: home, MLSHIP_USER: "ci", MLSHIP_WORKERS: "1", MLSHIP_LOG_LEVEL: "warn" };
const cli = (...args: string[]) => spawnCli(args, { env });

afterAll(() => fs.rmSync(home, { recursive: true, force: true }));

describe("mlship monitor", { timeout: 180_000 }, () => {
  const bc = fixture("breast_cancer_mlp");
  const diabetes = fixture("diabetes_linear");
  const file = (f: { dir: string }, name: string) => path.join(f.dir, name);

  beforeAll(async () => {
    expect((await cli("models", "register", bc.onnx, "--name", "bc", "--columns", bc.features.join(","), "--alias", "production")).code).toBe(0);
    expect((await cli("models", "register", diabetes.onnx, "--name", "diabetes", "--columns", diabetes.features.join(","))).code).toBe(0);
  }, 180_000);

  it("refuses a check before a reference profile exists (exit 1, code, what to run)", async () => {
    const r = await cli("monitor", "check", "bc@production", "--data", file(bc, "prod.csv"));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^mlship: .*no reference profile.*mlship monitor profile bc@1 .*\[MLSHIP_ERR_MONITOR_NO_REFERENCE\]\n$/);
  });

  it("profiles the training data with its predictions and stores it with the version", async () => {
    const r = await cli("monitor", "profile", "bc@production", "--data", file(bc, "train.csv"), "--json");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const profile = JSON.parse(r.stdout) as ReferenceProfile;
    expect(profile).toMatchObject({ model: "bc", version: 1, source: { format: "csv" } });
    const rows = fs.readFileSync(file(bc, "train.csv"), "utf8").trim().split("\n").length - 1;
    expect(profile.features.rows).toBe(rows);
    // The declared columns, in order; the label column is not a feature.
    expect(profile.features.columns.map((c) => c.name)).toEqual(bc.features);
    const radius = profile.features.columns.find((c) => c.name === "mean radius");
    const values = fs.readFileSync(file(bc, "train.csv"), "utf8").trim().split("\n").slice(1).map((l) => Number(l.split(",")[0]));
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    expect(radius?.kind).toBe("numeric");
    if (radius?.kind === "numeric") {
      expect(radius.count).toBe(rows);
      expect(radius.mean).toBeCloseTo(mean, 10);
      expect(radius.min).toBe(Math.min(...values));
      expect(radius.max).toBe(Math.max(...values));
    }
    // The prediction distribution: both class probabilities and the post-processed label.
    const outputs = profile.predictions?.columns.map((c) => c.name) ?? [];
    expect(outputs).toEqual(expect.arrayContaining(["probabilities[0]", "probabilities[1]"]));
    expect(profile.predictions?.rows).toBe(rows);
  });

  it("passes the held-out data: no rule error, no drift, exit 0", async () => {
    const r = await cli("monitor", "check", "bc@production", "--data", file(bc, "prod.csv"), "--json");
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as CheckReport;
    expect(report.passed).toBe(true);
    expect(report.drift.features.filter((f) => f.drifted)).toEqual([]);
    expect(report.drift.features).toHaveLength(bc.features.length);
    expect(report.rules.filter((x) => !x.passed && x.severity === "error")).toEqual([]);
    expect(report.predictionDrift?.drifted).toBe(false);
  });

  it("finds exactly the planted shifts in drifted.csv and exits 1 naming them", async () => {
    const r = await cli("monitor", "check", "bc@production", "--data", file(bc, "drifted.csv"));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\[MLSHIP_ERR_MONITOR_CHECK_FAILED\]\n$/);
    const drifted = r.stdout.split("\n").filter((l) => / DRIFT$/.test(l)).map((l) => l.split(/\s{2,}/)[0]);
    // fixtures README: mean radius + 1.5 std, mean texture x 1.25, worst smoothness + 3 std on ~30% of rows.
    expect(drifted.sort()).toEqual(["mean radius", "mean texture", "worst smoothness"]);
    expect(r.stdout).toContain("check FAILED");
    // Three of thirty features is not dataset drift (share 0.1 < 0.5): with --fail-on dataset the rules decide.
    const dataset = await cli("monitor", "check", "bc@production", "--data", file(bc, "drifted.csv"), "--fail-on", "dataset", "--json");
    const report = JSON.parse(dataset.stdout) as CheckReport;
    expect(report.drift).toMatchObject({ driftedFeatures: 3, drifted: false });
    expect(dataset.code).toBe(report.failures.length === 0 ? 0 : 1);
  });

  it("finds the diabetes shifts, including the category mix of sex, with the target column left out", async () => {
    expect((await cli("monitor", "profile", "diabetes@1", "--data", file(diabetes, "train.csv"))).code).toBe(0);
    const r = await cli("monitor", "check", "diabetes@1", "--data", file(diabetes, "drifted.csv"), "--json");
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout) as CheckReport;
    const flagged = report.drift.features.filter((f) => f.drifted).map((f) => f.feature).sort();
    // fixtures README: bmi + 1.5 std, bp x 1.15, sex re-drawn to 85% "2".
    expect(flagged).toEqual(["bmi", "bp", "sex"]);
    const sex = report.drift.features.find((f) => f.feature === "sex");
    expect(sex?.method).not.toBe("ks");
    expect(report.drift.features.map((f) => f.feature)).not.toContain("target");
    const prod = JSON.parse((await cli("monitor", "check", "diabetes@1", "--data", file(diabetes, "prod.csv"), "--json")).stdout) as CheckReport;
    expect(prod.drift.features.filter((f) => f.drifted)).toEqual([]);
  });

  it("writes a self-contained HTML report and POSTs the findings to a webhook", async () => {
    const received: unknown[] = [];
    const hook = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        received.push(JSON.parse(Buffer.concat(chunks).toString("utf8")));
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => hook.listen(0, "127.0.0.1", resolve));
    try {
      const url = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/alerts`;
      const html = path.join(home, "report.html");
      const r = await cli("monitor", "check", "bc@production", "--data", file(bc, "drifted.csv"), "--html", html, "--webhook", url);
      expect(r.code).toBe(1);
      const page = fs.readFileSync(html, "utf8");
      expect(page.startsWith("<!DOCTYPE html>") || page.startsWith("<!doctype html>")).toBe(true);
      expect(page).not.toMatch(/<script[^>]+src=|<link[^>]+href=|<img/i);
      for (const feature of ["mean radius", "mean texture", "worst smoothness"]) expect(page).toContain(feature);
      expect(received).toHaveLength(1);
      const alerts = (received[0] as { alerts: Array<{ kind: string; feature?: string; model: string; version: number }> }).alerts;
      const drifts = alerts.filter((a) => a.kind === "drift").map((a) => a.feature).sort();
      expect(drifts).toEqual(["mean radius", "mean texture", "worst smoothness"]);
      expect(alerts.every((a) => a.model === "bc" && a.version === 1)).toBe(true);
      // Every alert is also a log line on stderr.
      expect(r.stderr).toContain("monitor_alert");
    } finally {
      hook.close();
    }
  });

  it("applies declared rules from a --rules file (exit 1 on an error rule, the column and bound named)", async () => {
    const rules = path.join(home, "rules.yaml");
    fs.writeFileSync(rules, "rules:\n  columns:\n    mean radius: { max: 20 }\n");
    const r = await cli("monitor", "check", "bc@production", "--data", file(bc, "prod.csv"), "--rules", rules, "--json");
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout) as CheckReport;
    const failed = report.rules.filter((x) => !x.passed && x.severity === "error");
    expect(failed).toEqual([expect.objectContaining({ rule: "range", column: "mean radius", source: "declared" })]);
    expect(failed[0]?.message).toContain("20");
  });

  it("reports an emptied column as a rule failure and still tests the others", async () => {
    const lines = fs.readFileSync(file(bc, "prod.csv"), "utf8").trim().split("\n");
    // "mean radius" (the first column) emptied on every row: nothing to compare, the model cannot score the rows.
    const broken = path.join(home, "broken.csv");
    fs.writeFileSync(broken, `${[lines[0], ...lines.slice(1).map((l) => `,${l.split(",").slice(1).join(",")}`)].join("\n")}\n`);
    const r = await cli("monitor", "check", "bc@production", "--data", broken, "--json");
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout) as CheckReport;
    expect(report.skippedFeatures).toEqual([{ feature: "mean radius", reason: "the current data has no values" }]);
    expect(report.drift.features).toHaveLength(bc.features.length - 1);
    expect(report.rules).toContainEqual(expect.objectContaining({ rule: "null_rate", column: "mean radius", passed: false }));
    expect(report.predictionDriftSkipped).toBe("the current data lacks values of some features");
  });

  it("compares a timestamped file window by window, names an instant shift, and stores the windows", async () => {
    const lines = fs.readFileSync(file(bc, "prod.csv"), "utf8").trim().split("\n");
    const header = lines[0] as string;
    const rows = lines.slice(1).map((l) => l.split(","));
    const train = fs.readFileSync(file(bc, "train.csv"), "utf8").trim().split("\n").slice(1).map((l) => Number(l.split(",")[0]));
    const mean = train.reduce((a, b) => a + b, 0) / train.length;
    const std = Math.sqrt(train.reduce((a, b) => a + (b - mean) ** 2, 0) / train.length);
    // 48 hours x 60 rows resampled from prod.csv (seeded); "mean radius" + 1.5 train std from hour 24 on; hour 30
    // nearly empty (5 rows: an outage upstream).
    let seed = 12345;
    const next = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 4294967296;
    };
    const out = [`${header},ts`];
    for (let h = 0; h < 48; h++) {
      for (let k = 0; k < (h === 30 ? 5 : 60); k++) {
        const row = [...(rows[Math.floor(next() * rows.length)] as string[])];
        if (h >= 24) row[0] = String(Number(row[0]) + 1.5 * std);
        const at = new Date(Date.UTC(2026, 10, 1, h, k));
        out.push(`${row.join(",")},${at.toISOString().replace("T", " ").slice(0, 19)}`);
      }
    }
    const timed = path.join(home, "timed.csv");
    fs.writeFileSync(timed, `${out.join("\n")}\n`);
    const r = await cli("monitor", "check", "bc@production", "--data", timed, "--time-column", "ts", "--windows", "1h,6h", "--fail-on", "rules", "--json");
    expect(r.stderr).toMatch(/^mlship: 1 monitoring check failed for bc@1 \[MLSHIP_ERR_MONITOR_CHECK_FAILED\]\n$/);
    const report = JSON.parse(r.stdout) as CheckReport;
    expect(report.windows?.map((w) => [w.size, w.mode, w.windows, w.tested])).toEqual([
      ["1h", "tumbling", 48, 47],
      ["6h", "tumbling", 8, 8],
    ]);
    expect(report.windows?.[0]?.driftedWindows["mean radius"]).toBeGreaterThanOrEqual(23);
    // The outage: 5 rows after 60 is a row-count drop (an error rule), found in the 1h series only.
    const drops = report.rules.filter((x) => x.rule === "row_count_drop");
    expect(drops).toHaveLength(1);
    expect(drops[0]).toMatchObject({ passed: false, severity: "error", observed: 5, source: "previous_window" });
    expect(drops[0]?.message).toContain("1h window from 2026-11-02T06:00:00.000Z");
    const radius = report.kinds?.find((k) => k.column === "mean radius");
    expect(radius).toMatchObject({ source: "features", size: "1h", kind: "instant" });
    expect(radius?.evidence).toContain("2026-11-02T00:00:00.000Z");
    // Untouched features are never named instant or gradual.
    for (const k of report.kinds ?? []) if (k.column !== "mean radius" && k.source === "features") expect(["instant", "gradual"]).not.toContain(k.kind);
    expect(r.code).toBe(1);
    expect(report.failures).toEqual([expect.stringContaining("row_count_drop")]);
    const bad = await cli("monitor", "check", "bc@production", "--data", timed, "--time-column", "when");
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/no time column 'when'.*\[MLSHIP_ERR_INPUT_MISSING\]/);
    const usage = await cli("monitor", "check", "bc@production", "--data", timed, "--windows", "1h");
    expect(usage.code).toBe(2);
  });

  it("monitor report writes the report and exits 0 whatever it finds; it needs --html or --json", async () => {
    const html = path.join(home, "drifted-report.html");
    const r = await cli("monitor", "report", "bc@production", "--data", file(bc, "drifted.csv"), "--html", html);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("findings");
    expect(fs.readFileSync(html, "utf8")).toContain("mean radius");
    const usage = await cli("monitor", "report", "bc@production", "--data", file(bc, "drifted.csv"));
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("--html FILE or --json");
  });

  it("monitors served predictions live in mlship serve: windows stored, drift found, served over REST", async () => {
    // Short windows so the test sees them close; auto mode is on because bc@1 has a reference profile.
    const proc = startCli(["serve", "--port", "0", "--grpc-port", "-1"], { env: { ...env, MLSHIP_MONITOR_WINDOWS: "3s", MLSHIP_LOG_LEVEL: "info" } });
    try {
      const url = (await proc.waitForStdout(/mlship serving on (http:\/\/\S+)/, 90_000))[1] as string;
      const post = async (csv: string): Promise<void> => {
        const lines = fs.readFileSync(file(bc, csv), "utf8").trim().split("\n");
        const columns = (lines[0] as string).split(",").slice(0, 30);
        const data = lines.slice(1).map((l) => l.split(",").slice(0, 30).map(Number));
        const res = await fetch(`${url}/v1/models/bc@1/invocations`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ dataframe_split: { columns, data } }) });
        expect(res.status).toBe(200);
      };
      await post("drifted.csv");
      type Windows = { windows: Array<{ rows?: number; insufficient?: boolean; drift?: { features: Array<{ feature: string; drifted: boolean }> } }> };
      let stored: Windows["windows"] = [];
      for (let i = 0; i < 200 && stored.length === 0; i++) {
        await new Promise((r) => setTimeout(r, 100));
        stored = (await (await fetch(`${url}/api/v1/models/bc/versions/1/monitor/windows?size=3s`)).json() as Windows).windows.filter((w) => (w.rows ?? 0) > 0);
      }
      expect(stored.length).toBeGreaterThan(0);
      const window = stored[0];
      expect(window?.rows).toBe(143);
      const drifted = (window?.drift?.features ?? []).filter((f) => f.drifted).map((f) => f.feature).sort();
      expect(drifted).toEqual(["mean radius", "mean texture", "worst smoothness"]);
      expect(proc.stderr()).toContain("live monitoring on");
      const service = await (await fetch(`${url}/api/v1/models/bc/versions/1/monitor/service`)).json() as { requests: { total: number; rows: number } };
      expect(service.requests).toMatchObject({ total: 1, rows: 143 });
    } finally {
      proc.child.kill("SIGTERM");
      await proc.exited;
    }
  });

  it("gives a clear error for a missing data file and an unknown format", async () => {
    const missing = await cli("monitor", "profile", "bc@production", "--data", path.join(home, "nope.csv"));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^mlship: .*nope\.csv.*\[MLSHIP_ERR_/);
    const txt = path.join(home, "data.txt");
    fs.writeFileSync(txt, "a,b\n1,2\n");
    const unknown = await cli("monitor", "profile", "bc@production", "--data", txt);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain(".csv, .parquet, .jsonl");
  });
});
