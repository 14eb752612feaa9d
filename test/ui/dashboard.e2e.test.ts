// The dashboard end to end, in Debian's headless Chromium (playwright-core, /usr/bin/chromium): a real `mlship serve`
// child process (built dist/) on a home seeded with real data through mlship's own CLI and library
// (test/helpers/ui-seed.ts), live traffic over HTTP, then every page of the DOM contract (.tmp/ui-dom.md): it loads,
// its charts draw, its tables hold the seeded rows, the live traffic chart grows, and promoting the canary is refused
// without the admin token and works with it. Full-page screenshots of every page go to test-artifacts/ui/.
import fs from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AlertsResponse, ModelDetail, ServerInfo, TrafficResponse } from "../../src/ui/contract.js";
import { REPO, startCli, tempDir, type LongRunning } from "../cli/helpers.js";
import { ensureChromium, launchBrowser, type BrowserSession, type PageProblem } from "../helpers/browser.js";
import { driveTraffic, seedDashboard, type SeedInfo, type TrafficResult } from "../helpers/ui-seed.js";

const TOKEN = "ui-e2e-admin-token";
const MODEL = "breast-cancer";
const ARTIFACTS = path.join(REPO, "test-artifacts", "ui");
/** Longest wait for a page to turn ready (data loaded, charts drawn). */
const READY_MS = 15_000;

/** `data-testid` form of a feature or output name (the DOM contract: characters outside [A-Za-z0-9_-] become `_`). */
const safe = (name: string): string => name.replace(/[^A-Za-z0-9_-]/g, "_");
const byTestId = (id: string): string => `[data-testid="${id}"]`;

/** Pixels of a chart's canvas: drawn at all (opaque), and in colour (series strokes and fills, not the grey axes). */
interface CanvasStats {
  canvases: number;
  width: number;
  height: number;
  opaque: number;
  colored: number;
  /** A cheap fingerprint of the pixels, to tell two drawings apart. */
  hash: number;
}

/**
 * The few browser globals the in-page functions use (this project's TypeScript has no DOM library; playwright
 * sends the functions' source to the page, where the real objects are).
 */
interface CanvasLike {
  width: number;
  height: number;
  getContext(kind: "2d"): { getImageData(x: number, y: number, w: number, h: number): { data: ArrayLike<number> } } | null;
}
interface BrowserGlobals {
  document: { querySelector(selector: string): { querySelectorAll(selector: string): ArrayLike<CanvasLike> } | null };
  sessionStorage: { getItem(key: string): string | null };
}

async function canvasStats(page: Page, testid: string): Promise<CanvasStats> {
  return page.evaluate((selector) => {
    const wrapper = (globalThis as unknown as BrowserGlobals).document.querySelector(selector);
    const canvases = wrapper === null ? [] : Array.from(wrapper.querySelectorAll(".uplot canvas"));
    const stats = { canvases: canvases.length, width: 0, height: 0, opaque: 0, colored: 0, hash: 0 };
    for (const c of canvases) {
      stats.width = Math.max(stats.width, c.width);
      stats.height = Math.max(stats.height, c.height);
      const context = c.getContext("2d");
      if (context === null || c.width === 0 || c.height === 0) continue;
      const data = context.getImageData(0, 0, c.width, c.height).data;
      let hash = 2166136261;
      for (let i = 0; i < data.length; i += 4) {
        const [r, g, b, a] = [data[i] as number, data[i + 1] as number, data[i + 2] as number, data[i + 3] as number];
        if (a === 0) continue;
        stats.opaque++;
        if (Math.max(r, g, b) - Math.min(r, g, b) > 60 && a > 100) stats.colored++;
        hash = Math.imul(hash ^ (i * 31 + r + g * 7 + b * 13 + a), 16777619) >>> 0;
      }
      stats.hash = (stats.hash ^ hash) >>> 0;
    }
    return stats;
  }, byTestId(testid));
}

describe("the dashboard in headless Chromium against mlship serve with real data", { timeout: 120_000 }, () => {
  let home: string;
  let seed: SeedInfo;
  let server: LongRunning;
  let url: string;
  let session: BrowserSession;
  let page: Page;
  let traffic: TrafficResult;
  const screenshots: string[] = [];
  /** Background traffic while the browser looks at the pages, so the live charts have something to show. */
  let trafficLoop: Promise<void> | undefined;
  let stopTraffic = false;

  async function api<T>(route: string): Promise<T> {
    const response = await fetch(`${url}${route}`);
    const text = await response.text();
    if (!response.ok) throw new Error(`GET ${route}: HTTP ${response.status} ${text}`);
    return JSON.parse(text) as T;
  }

  /** Navigates to `hash` (or clicks the nav link) and waits until the page root is ready; fails with its error. */
  async function open(root: string, how: { hash: string } | { nav: string }): Promise<void> {
    if ("hash" in how) await page.goto(`${url}/ui/${how.hash}`);
    else await page.click(`nav ${byTestId(how.nav)}`);
    const settled = `${byTestId(root)}[data-state="ready"], ${byTestId(root)}[data-state="error"]`;
    await page.waitForSelector(settled, { timeout: READY_MS });
    const state = await page.getAttribute(byTestId(root), "data-state");
    const error = await page.locator(`${byTestId(root)} ${byTestId("page-error")}`).allTextContents();
    expect({ root, state, error }).toEqual({ root, state: "ready", error: [] });
  }

  async function screenshot(name: string): Promise<void> {
    const file = path.join(ARTIFACTS, `${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    screenshots.push(file);
  }

  async function expectChartDrawn(testid: string, withData = true): Promise<CanvasStats> {
    const stats = await canvasStats(page, testid);
    expect(stats.canvases, `${testid}: a uPlot canvas`).toBeGreaterThan(0);
    expect(stats.width * stats.height, `${testid}: canvas size`).toBeGreaterThan(0);
    expect(stats.opaque, `${testid}: canvas is blank`).toBeGreaterThan(200);
    if (withData) expect(stats.colored, `${testid}: no series drawn in colour`).toBeGreaterThan(20);
    return stats;
  }

  async function rowCount(testid: string): Promise<number> {
    return page.locator(byTestId(testid)).count();
  }

  // Installing Chromium (only where it is missing) may take minutes; everything else has its own, shorter limit.
  beforeAll(() => ensureChromium(), 600_000);

  beforeAll(async () => {
    for (const built of ["dist/cli/main.js", "dist/ui/index.html"]) {
      if (!fs.existsSync(path.join(REPO, built))) {
        throw new Error(`${built} is missing: run \`npm run build\` and \`node scripts/build-ui.mjs\` (npm test builds both)`);
      }
    }
    fs.rmSync(ARTIFACTS, { recursive: true, force: true });
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    home = tempDir("ui-e2e");
    seed = await seedDashboard(home);
    server = startCli(["serve", "--port", "0", "--grpc-port", "-1"], {
      env: {
        MLSHIP_HOME: home,
        MLSHIP_ADMIN_TOKEN: TOKEN,
        MLSHIP_WORKERS: "1",
        MLSHIP_LOG_LEVEL: "warn",
        MLSHIP_USER: "ui-e2e",
        MLSHIP_REPLICA_ID: "ui-e2e-replica",
        // A 5 s live monitoring window besides the usual ones, so the drifted diabetes request below closes a window
        // (and raises its drift alerts) while the test runs.
        MLSHIP_MONITOR_WINDOWS: "5s,1h,12h,1d",
      },
    });
    url = (await server.waitForStdout(/mlship serving on (http:\/\/\S+)/, 60_000))[1] as string;
    traffic = await driveTraffic(url, { requests: 80, driftedDiabetes: true });
    if (traffic.retried.length > 0) console.log(`retried answers while the server warmed up (${traffic.retried.length}): ${[...new Set(traffic.retried)].join(" | ")}`);
    trafficLoop = (async () => {
      // No more diabetes rows: its drifted live window must stay the last one with data, so its alerts stay active.
      for (let round = 1; !stopTraffic; round++) {
        await driveTraffic(url, { requests: 8, concurrency: 2, round, diabetes: false }).catch(() => undefined);
        await sleep(250);
      }
    })();
    session = await launchBrowser();
    page = await session.newPage();
  }, 150_000);

  afterAll(async () => {
    stopTraffic = true;
    await trafficLoop;
    await session?.close();
    if (server !== undefined && server.child.exitCode === null) {
      server.child.kill("SIGTERM");
      await Promise.race([server.exited, sleep(10_000)]);
      if (server.child.exitCode === null) server.child.kill("SIGKILL");
    }
    if (home !== undefined) fs.rmSync(home, { recursive: true, force: true });
    if (screenshots.length > 0) console.log(`dashboard screenshots (${screenshots.length}):\n${screenshots.map((f) => `  ${path.relative(REPO, f)}`).join("\n")}`);
  });

  it("serves real data: traffic answered on both arms of the canary, outcomes accepted, admin token on", async () => {
    expect(traffic.errors).toEqual([]);
    expect(traffic.byVariant.champion).toBeGreaterThan(0);
    expect(traffic.byVariant.challenger).toBeGreaterThan(0);
    expect(traffic.outcomesAccepted).toBe((traffic.byVariant.champion ?? 0) + (traffic.byVariant.challenger ?? 0));
    const info = await api<ServerInfo>("/api/v1/server");
    expect(info).toMatchObject({ name: "mlship", auth: { adminToken: true }, replicaId: "ui-e2e-replica" });
    // /ui, /ui/ and /ui/index.html are the same page.
    const pages = await Promise.all(["/ui", "/ui/", "/ui/index.html"].map(async (route) => {
      const response = await fetch(`${url}${route}`);
      return { status: response.status, type: response.headers.get("content-type"), body: await response.text() };
    }));
    for (const p of pages) expect(p).toMatchObject({ status: 200, type: expect.stringContaining("text/html"), body: pages[0]?.body });
  });

  it("models: the list holds every model, the model page its versions and rollout, the version page its detail", async () => {
    await open("page-models", { hash: "" });
    for (const name of seed.models) expect(await rowCount(`model-row-${name}`), `model-row-${name}`).toBe(1);
    await screenshot("models");
    await open("page-models", { hash: "#/models" });
    expect(await rowCount(`model-row-${MODEL}`)).toBe(1);

    await open("page-model", { hash: `#/models/${MODEL}` });
    for (const v of seed.breastCancer.versions) expect(await rowCount(`version-row-${v}`), `version-row-${v}`).toBe(1);
    expect(await page.locator(byTestId("action-rollback")).count()).toBeGreaterThan(0);
    // production was only ever set to v1: nothing to roll back to, so the button is disabled and says why.
    const rollback = page.locator(byTestId("action-rollback")).first();
    expect(await rollback.isDisabled()).toBe(true);
    expect(await rollback.getAttribute("title")).toMatch(/no earlier target/);
    // The canary is active: no second rollout is offered (the server would refuse it), the active one is linked.
    for (const control of ["action-start-rollout", "rollout-challenger", "rollout-mode", "rollout-percent"]) {
      expect(await rowCount(control), control).toBe(0);
    }
    expect(await page.locator(`${byTestId("active-rollout")} a`).getAttribute("href")).toBe(`#/rollouts/${seed.rollout.id}`);
    expect(await page.locator(byTestId("page-model")).textContent()).toContain("production");
    await screenshot("model-breast-cancer");

    await open("page-version", { hash: `#/models/${MODEL}/versions/1` });
    const text = (await page.locator(byTestId("page-version")).textContent()) ?? "";
    // Signature columns, metrics and the package's files come from the registry record.
    expect(text).toContain("mean radius");
    expect(text).toContain("model.onnx");
    expect(text).toContain("accuracy");
    await screenshot("version-breast-cancer-1");
  });

  it("traffic: every chart draws, and the live requests/s chart grows while traffic flows", async () => {
    // Count the points the page receives from /api/v1/traffic while it is open.
    const received: number[] = [];
    const onResponse = async (response: { url(): string; json(): Promise<unknown>; ok(): boolean }): Promise<void> => {
      if (!response.url().includes("/api/v1/traffic") || !response.ok()) return;
      const body = (await response.json().catch(() => null)) as TrafficResponse | null;
      if (body !== null) received.push(body.series.reduce((n, s) => n + s.points.length, 0));
    };
    // The server samples its counters every few seconds: on a fast machine the page can be reached before the
    // first sample with traffic in it, and an empty chart has nothing to check.
    const firstSample = Date.now() + 30_000;
    while (!(await api<TrafficResponse>("/api/v1/traffic")).series.some((s) => s.points.some((p) => p.requestsPerSecond > 0))) {
      if (Date.now() > firstSample) throw new Error("no traffic sample with requests within 30 s");
      await sleep(200);
    }
    page.on("response", onResponse);
    try {
      await open("page-traffic", { nav: "nav-traffic" });
      for (const chart of ["chart-rps", "chart-latency", "chart-errors", "chart-batch-size", "chart-cache-hit"]) {
        await expectChartDrawn(chart, chart === "chart-rps" || chart === "chart-latency");
      }
      const before = await canvasStats(page, "chart-rps");
      const info = await api<ServerInfo>("/api/v1/server");
      // Two sample intervals later, new points have arrived and the chart was drawn again with them.
      const deadline = Date.now() + Math.max(6_000, info.trafficIntervalSeconds * 3_000);
      let after = before;
      while (Date.now() < deadline) {
        await sleep(500);
        after = await canvasStats(page, "chart-rps");
        if (after.hash !== before.hash && received.length >= 2 && received.slice(1).some((n) => n > 0)) break;
      }
      expect(received.length, "polls of /api/v1/traffic").toBeGreaterThanOrEqual(2);
      expect(received.slice(1).some((n) => n > 0), `new points after the first poll: ${JSON.stringify(received)}`).toBe(true);
      expect(after.hash, "the requests/s chart was redrawn with the new points").not.toBe(before.hash);
      expect(after.colored).toBeGreaterThan(20);
      // The time axis is a trailing window (5 min, or the server's retention when shorter) that ends at the newest sample.
      const latest = await api<TrafficResponse>("/api/v1/traffic");
      const windowSeconds = Math.min(300, latest.retentionSeconds);
      const newest = Math.max(...latest.series.flatMap((s) => s.points.map((p) => p.t))) / 1000;
      for (const chart of ["chart-rps", "chart-latency", "chart-cache-hit"]) {
        const wrapper = page.locator(byTestId(chart));
        const [min, max] = [Number(await wrapper.getAttribute("data-x-min")), Number(await wrapper.getAttribute("data-x-max"))];
        expect(max - min, `${chart}: x span`).toBeCloseTo(windowSeconds, 3);
        // The page may be one sampling interval behind the request made here.
        expect(newest - max, `${chart}: x ends at the newest sample`).toBeGreaterThanOrEqual(0);
        expect(newest - max, `${chart}: x ends at the newest sample`).toBeLessThanOrEqual(info.trafficIntervalSeconds * 2 + 1);
      }
      // Dragging across the chart zooms in, and the zoom survives the next samples; a double-click returns to the window.
      const rps = page.locator(byTestId("chart-rps"));
      const xRange = async (): Promise<[number, number]> => [Number(await rps.getAttribute("data-x-min")), Number(await rps.getAttribute("data-x-max"))];
      const box = await rps.locator(".u-over").boundingBox();
      expect(box).not.toBeNull();
      const { x, y, width, height } = box as { x: number; y: number; width: number; height: number };
      await page.mouse.move(x + width * 0.5, y + height / 2);
      await page.mouse.down();
      await page.mouse.move(x + width * 0.7, y + height / 2, { steps: 5 });
      await page.mouse.up();
      const zoomed = await xRange();
      expect(zoomed[1] - zoomed[0], "zoomed span").toBeLessThan(windowSeconds * 0.5);
      const polls = received.length;
      await expect.poll(() => received.length, { timeout: info.trafficIntervalSeconds * 3_000 }).toBeGreaterThan(polls);
      await sleep(300);
      expect(await xRange(), "the zoom is kept while samples arrive").toEqual(zoomed);
      await rps.locator(".u-over").dblclick();
      const reset = await xRange();
      expect(reset[1] - reset[0], "double-click: back to the trailing window").toBeCloseTo(windowSeconds, 3);
      await screenshot("traffic");
    } finally {
      page.off("response", onResponse);
    }
  });

  it("drift: per-feature statistic and histogram charts, the drift kinds, the rules and prediction drift", async () => {
    await open("page-drift", { hash: `#/drift/${MODEL}/1?size=1h` });
    for (const feature of seed.monitor.driftedFeatures) {
      await expectChartDrawn(`chart-drift-${safe(feature)}`);
      await expectChartDrawn(`chart-hist-${safe(feature)}`);
    }
    // A kind for every feature; the planted step in "mean radius" (drifted.csv from hour 22 of 36) is not "none".
    for (const feature of seed.monitor.features) expect(await rowCount(`drift-kind-${safe(feature)}`), `drift-kind-${feature}`).toBe(1);
    const radiusKind = (await page.locator(byTestId(`drift-kind-${safe("mean radius")}`)).textContent()) ?? "";
    expect(radiusKind.toLowerCase()).not.toMatch(/^\s*none\b/);
    const rules = page.locator(byTestId("rule-row"));
    expect(await rules.count()).toBeGreaterThan(0);
    const results = await rules.evaluateAll((rows) => rows.map((r) => ({ passed: r.getAttribute("data-passed"), severity: r.getAttribute("data-severity") })));
    expect(results.every((r) => r.passed === "true" || r.passed === "false"), JSON.stringify(results)).toBe(true);
    // The summary counts the rules that did not pass by severity: the planted step breaks learned ranges (warnings).
    const failing = results.filter((r) => r.passed === "false");
    const [errors, warnings] = [failing.filter((r) => r.severity === "error").length, failing.filter((r) => r.severity === "warning").length];
    expect(warnings, "learned range rules broken by the drifted rows").toBeGreaterThan(0);
    const rulesSummary = (await page.locator(byTestId("rules-summary")).textContent()) ?? "";
    expect(rulesSummary).toContain(`${warnings} warning`);
    if (errors === 0) expect(rulesSummary).not.toContain("failed");
    else expect(rulesSummary).toContain(`${errors} failed`);
    // A test's chart draws its statistic too, on a second axis at the right (the p-value decides, the statistic moves).
    const radiusChart = page.locator(byTestId(`chart-drift-${safe("mean radius")}`));
    expect(await radiusChart.locator(".u-legend").textContent()).toContain("ks statistic");
    expect(await radiusChart.locator(".u-axis").count(), "x, y and the statistic's axis").toBe(3);
    // Prediction drift: per output the score over the windows and the reference/current histogram.
    expect(await page.locator(`[data-testid^="chart-pred-"]`).count()).toBeGreaterThan(0);
    await expectChartDrawn(`chart-pred-${safe("probabilities[1]")}`);
    await expectChartDrawn(`chart-hist-pred-${safe("probabilities[1]")}`);
    // Each window says how many features drifted ("3 of 30"), next to the dataset verdict.
    const windowRows = await page.locator(byTestId("drift-window")).count();
    const driftedCells = await page.locator(`${byTestId("drift-window")} ${byTestId("window-drifted")}`).allTextContents();
    expect(windowRows).toBeGreaterThan(0);
    expect(driftedCells).toHaveLength(windowRows);
    for (const cell of driftedCells) expect(cell).toMatch(/^\d+ of \d+$/);
    // The planted step pushes "mean radius" past the reference's largest value: said under its histogram.
    expect(await page.locator(byTestId(`hist-outside-${safe("mean radius")}`)).textContent()).toMatch(/above/);
    await screenshot("drift-breast-cancer-1");
  });

  it("quality: metric and coverage charts over the seeded day, the confusion matrix, business counters", async () => {
    await open("page-quality", { hash: `#/quality/${MODEL}` });
    await expectChartDrawn("chart-quality-accuracy");
    await expectChartDrawn("chart-coverage");
    const matrix = page.locator(`${byTestId("confusion-matrix")}`);
    expect(await matrix.count()).toBeGreaterThan(0);
    const matrixText = (await matrix.first().textContent()) ?? "";
    expect(matrixText).toContain("malignant");
    expect(matrixText).toContain("benign");
    const text = (await page.locator(byTestId("page-quality")).textContent()) ?? "";
    expect(text).toContain("follow_up_booked");
    await screenshot("quality-breast-cancer");
  });

  it("batch runs (the failed one too), the stream's status and the alerts", async () => {
    await open("page-batch", { nav: "nav-batch" });
    expect(await rowCount(`batch-run-${seed.batch.succeeded.id}`)).toBe(1);
    expect(await rowCount(`batch-run-${seed.batch.failed.id}`)).toBe(1);
    expect(await page.locator(byTestId(`batch-run-${seed.batch.failed.id}`)).textContent()).toContain("failed");
    await screenshot("batch");

    await open("page-streams", { nav: "nav-streams" });
    const row = page.locator(byTestId(`stream-row-${seed.stream.name}`));
    expect(await row.count()).toBe(1);
    expect(await row.textContent()).toContain(MODEL);
    // The job completed: its input rate is the average over its run, not the last batch's 0.00 rows/s.
    expect(await row.getAttribute("data-state")).toBe("completed");
    expect(await row.textContent()).toMatch(/rows\/s avg/);
    expect(await page.locator(`${byTestId("page-streams")} th[title^="waiting (messages or files)"]`).count()).toBe(1);
    await screenshot("streams");

    // The drifted diabetes request's 5 s window closes and raises monitoring alerts (bmi, bp, sex, dataset drift).
    const deadline = Date.now() + 20_000;
    let active: AlertsResponse["active"] = [];
    while (Date.now() < deadline && active.length === 0) {
      active = (await api<AlertsResponse>("/api/v1/alerts")).active.filter((a) => a.model === "diabetes");
      if (active.length === 0) await sleep(500);
    }
    expect(active.length, "active diabetes alerts").toBeGreaterThan(0);
    await open("page-alerts", { nav: "nav-alerts" });
    const alertRows = page.locator(byTestId("alert-row"));
    expect(await alertRows.count()).toBeGreaterThanOrEqual(active.length);
    expect((await alertRows.allTextContents()).join("\n")).toContain("diabetes");
    await screenshot("alerts");
  });

  it("rollouts: the canary is listed; promote is refused without the token and works with it", async () => {
    await open("page-rollouts", { nav: "nav-rollouts" });
    const listed = page.locator(byTestId(`rollout-row-${seed.rollout.id}`));
    expect(await listed.count()).toBe(1);
    expect(await listed.locator(byTestId("action-promote")).count(), "promote on the active row").toBe(1);
    expect(await listed.locator(byTestId("action-abort")).count(), "abort on the active row").toBe(1);
    await screenshot("rollouts");

    await open("page-rollout", { hash: `#/rollouts/${seed.rollout.id}` });
    await screenshot("rollout");
    const production = async (): Promise<number | undefined> => (await api<ModelDetail>(`/api/v1/models/${MODEL}`)).aliases.production;
    expect(await production()).toBe(seed.breastCancer.production);

    // Cancelling the confirmation sends nothing: the rollout stays active.
    await page.click(`${byTestId("page-rollout")} ${byTestId("action-abort")}`);
    await page.waitForSelector(byTestId("confirm-dialog"), { state: "visible" });
    await page.click(byTestId("confirm-cancel"));
    await page.waitForSelector(byTestId("confirm-dialog"), { state: "hidden" });
    expect((await api<{ rollout: { state: string } }>(`/api/v1/rollouts/${seed.rollout.id}`)).rollout.state).toBe("active");

    // Without a token: the confirmation names the action, the server refuses, the page says why, nothing moves.
    expect(await page.evaluate(() => (globalThis as unknown as BrowserGlobals).sessionStorage.getItem("mlship.adminToken"))).toBeNull();
    await page.click(`${byTestId("page-rollout")} ${byTestId("action-promote")}`);
    await page.waitForSelector(`${byTestId("confirm-dialog")}`, { state: "visible" });
    expect((await page.locator(byTestId("confirm-dialog")).textContent())?.toLowerCase()).toContain("promote");
    await page.click(byTestId("confirm-ok"));
    const refusal = page.locator(byTestId("action-error"));
    await refusal.waitFor({ state: "visible", timeout: 10_000 });
    expect(await refusal.textContent()).toContain("MLSHIP_ERR_AUTH_REQUIRED");
    expect(await production()).toBe(seed.breastCancer.production);
    await screenshot("rollout-promote-refused");

    // With the token from the dialog: promoted, production -> 2.
    await page.click(byTestId("token-button"));
    await page.fill(byTestId("token-input"), TOKEN);
    await page.click(byTestId("token-save"));
    expect(await page.evaluate(() => (globalThis as unknown as BrowserGlobals).sessionStorage.getItem("mlship.adminToken"))).toBe(TOKEN);
    await page.click(`${byTestId("page-rollout")} ${byTestId("action-promote")}`);
    await page.waitForSelector(`${byTestId("confirm-dialog")}`, { state: "visible" });
    await page.click(byTestId("confirm-ok"));
    await page.locator(byTestId("action-result")).waitFor({ state: "visible", timeout: 10_000 });
    expect(await production()).toBe(seed.breastCancer.challenger);
    await screenshot("rollout-promoted");
    // The change is attributed to the dashboard (x-mlship-user) in the rollout and the alias history.
    expect((await api<{ rollout: { endedBy: string | null } }>(`/api/v1/rollouts/${seed.rollout.id}`)).rollout.endedBy).toBe("dashboard");
    const promoted = await api<ModelDetail>(`/api/v1/models/${MODEL}`);
    expect(promoted.aliasHistory[0]).toMatchObject({ alias: "production", to: seed.breastCancer.challenger, by: "dashboard" });

    // No rollout active now: the model page offers one again, and rollback of production goes back to the champion.
    await open("page-model", { hash: `#/models/${MODEL}` });
    for (const control of ["action-start-rollout", "rollout-challenger", "rollout-mode", "rollout-percent"]) {
      expect(await rowCount(control), control).toBe(1);
    }
    const rollback = page.locator(byTestId("action-rollback")).first();
    expect(await rollback.isDisabled()).toBe(false);
    expect(await rollback.getAttribute("data-target")).toBe(String(seed.breastCancer.production));
    await rollback.click();
    await page.waitForSelector(byTestId("confirm-dialog"), { state: "visible" });
    expect(await page.locator(byTestId("confirm-dialog")).textContent()).toContain(
      `production: v${seed.breastCancer.challenger} -> v${seed.breastCancer.production}`,
    );
    await screenshot("model-rollback-confirm");
    await page.click(byTestId("confirm-cancel"));
    await page.waitForSelector(byTestId("confirm-dialog"), { state: "hidden" });
    expect(await production()).toBe(seed.breastCancer.challenger);
  });

  it("no console errors, page errors or failed requests other than the expected 401", () => {
    const expected = (p: PageProblem): boolean =>
      (p.url ?? "").includes(`/api/v1/rollouts/${seed.rollout.id}/promote`) && (p.status === 401 || /\b401\b/.test(p.text));
    const unexpected = session.problems.filter((p) => !expected(p));
    expect(unexpected).toEqual([]);
    expect(session.problems.filter((p) => p.kind === "http" && p.status === 401)).toHaveLength(1);
  });
});
