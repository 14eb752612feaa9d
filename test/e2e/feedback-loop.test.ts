// The whole feedback loop through the real binary (`node bin/mlship.js serve`, built in dist/): serve the
// breast-cancer model, send traffic with business keys, post delayed outcomes while the true concept shifts, watch
// live accuracy fall, the quality alert fire, the retraining hook (examples/feedback-loop/retrain.mjs) train and
// register a challenger, the canary start and end in promotion; then a worse challenger is rolled back by itself.
import fs from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sendTraffic, summarise } from "../../examples/feedback-loop/traffic.mjs";
import type { Answer } from "../../examples/feedback-loop/traffic.mjs";
import type { QualityReport } from "../../src/feedback/types.js";
import type { AuditEntry, Rollout, RolloutStatus } from "../../src/rollout/types.js";
import { REPO, spawnCli, startCli, tempDir } from "../cli/helpers.js";
import type { LongRunning } from "../cli/helpers.js";

const MODEL = "breast-cancer";
const PACKAGE = path.join(REPO, "examples", "feedback-loop", "model");
const RETRAIN = path.join(REPO, "examples", "feedback-loop", "retrain.mjs");
/** Latest labelled rows the hook trains on: the shifted phase below posts this many, so it learns the new concept. */
const RETRAIN_ROWS = 100;
const EVALUATE_MS = 500;
const ROLLOUT_CHECK_MS = 500;

const home = tempDir("feedback-loop");
const env = { MLSHIP_HOME: home, MLSHIP_USER: "ci" };

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms = 30_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    await sleep(everyMs);
  }
  throw new Error(`${what}: not within ${ms} ms${last === undefined ? "" : ` (last error: ${String(last)})`}`);
}

function accuracyOf(answers: readonly Answer[]): number {
  return answers.filter((a) => a.predicted === a.actual).length / answers.length;
}

describe("the feedback loop end to end: shift, alert, retrain, canary, promotion and rollback", { timeout: 90_000 }, () => {
  let server: LongRunning;
  let url: string;
  /** Next row of prod.csv to send (wrapping around); keys are unique per phase prefix and offset. */
  let cursor = 0;

  async function api<T>(route: string, init?: { method: string; body: unknown }): Promise<T> {
    const response = await fetch(`${url}${route}`, init === undefined ? undefined : {
      method: init.method,
      headers: { "content-type": "application/json" },
      body: JSON.stringify(init.body),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${init?.method ?? "GET"} ${route}: HTTP ${response.status} ${text}`);
    return JSON.parse(text) as T;
  }

  async function traffic(count: number, prefix: string, flip: boolean): Promise<{ answers: Answer[]; accepted: number }> {
    const result = await sendTraffic({ url, model: MODEL, count, offset: cursor, prefix, flip });
    cursor += count;
    expect(result.feedback?.rejected).toEqual([]);
    return { answers: result.answers, accepted: result.feedback?.accepted ?? 0 };
  }

  /** Live quality of one version over the trailing minute, all variants together. */
  async function quality(version: number): Promise<QualityReport | undefined> {
    const body = await api<{ versions: QualityReport[] }>(`/api/v1/models/${MODEL}/quality?window=1m`);
    return body.versions.find((r) => r.version === version && (r.variant ?? null) === null);
  }

  async function audit(action: string): Promise<AuditEntry[]> {
    return (await api<{ entries: AuditEntry[] }>(`/api/v1/audit?model=${MODEL}&action=${action}`)).entries;
  }

  async function rollouts(): Promise<Rollout[]> {
    return (await api<{ rollouts: Rollout[] }>(`/api/v1/rollouts?model=${MODEL}`)).rollouts;
  }

  async function qualityAlertActive(version: number): Promise<boolean> {
    const text = await (await fetch(`${url}/metrics`)).text();
    return text.split("\n").some((line) =>
      line.startsWith("mlship_monitor_alert_active{") && line.includes(`model="${MODEL}"`) && line.includes(`version="${version}"`)
      && line.includes('kind="quality"') && / 1$/.test(line));
  }

  async function showModel(): Promise<{ aliases: Record<string, number>; versions: Array<{ version: number; manifest: { metadata: Record<string, unknown> } }> }> {
    const shown = await spawnCli(["models", "show", MODEL, "--json"], { env });
    expect(shown.code, shown.stderr).toBe(0);
    const body = JSON.parse(shown.stdout) as { model: { aliases: Record<string, number> }; versions: Array<{ version: number; manifest: { metadata: Record<string, unknown> } }> };
    return { aliases: body.model.aliases, versions: body.versions };
  }

  /** Shifted traffic in rounds until the rollout ends; every answer of the rollout, by arm. */
  async function driveRollout(id: string, prefix: string): Promise<{ status: RolloutStatus; answers: Answer[] }> {
    const answers: Answer[] = [];
    const status = await waitFor(`rollout ${id} ends`, async () => {
      answers.push(...(await traffic(20, prefix, true)).answers);
      const current = await api<RolloutStatus>(`/api/v1/rollouts/${id}`);
      return current.rollout.state === "active" ? undefined : current;
    }, 45_000, ROLLOUT_CHECK_MS);
    return { status, answers };
  }

  beforeAll(async () => {
    const registered = await spawnCli(["models", "register", PACKAGE, "--name", MODEL, "--alias", "production"], { env });
    expect(registered.stderr).toBe("");
    expect(registered).toMatchObject({ code: 0, stdout: "1\n" });
    server = startCli(["serve", "--port", "0"], {
      env: {
        ...env,
        MLSHIP_GRPC_PORT: "-1",
        MLSHIP_WORKERS: "1",
        // Every request must reach the model and the prediction log; identical rows recur across phases.
        MLSHIP_CACHE: "off",
        MLSHIP_FEEDBACK_FLUSH_MS: "100",
        MLSHIP_FEEDBACK_EVALUATE_MS: String(EVALUATE_MS),
        MLSHIP_ROLLOUT_CHECK_MS: String(ROLLOUT_CHECK_MS),
      },
    });
    url = (await server.waitForStdout(/mlship serving on (http:\/\/\S+)/, 60_000))[1] as string;
    await api(`/api/v1/models/${MODEL}/rollout-policy`, {
      method: "PUT",
      body: {
        onNewVersion: "auto",
        gate: null,
        canary: {
          mode: "canary",
          percent: 50,
          sticky: false,
          guard: { metric: "accuracy", window: "1m", minOutcomes: 30, margin: 0.05, autoPromote: true, promoteAfter: "1s" },
        },
        retrain: { command: `"${process.execPath}" "${RETRAIN}" --rows ${RETRAIN_ROWS}`, on: ["quality"], cooldown: "1h" },
      },
    });
  }, 90_000);

  afterAll(async () => {
    if (server !== undefined && server.child.exitCode === null) {
      server.child.kill("SIGTERM");
      await Promise.race([server.exited, sleep(15_000)]);
      if (server.child.exitCode === null) server.child.kill("SIGKILL");
    }
    fs.rmSync(home, { recursive: true, force: true });
  });

  let phase1: Answer[] = [];

  it("phase 1: true outcomes give high live accuracy and no alert", async () => {
    const { answers, accepted } = await traffic(50, "truth", false);
    expect(accepted).toBe(50);
    expect(answers.every((a) => a.version === 1 && a.variant === null)).toBe(true);
    phase1 = answers;
    const expected = accuracyOf(answers);
    expect(expected).toBeGreaterThan(0.9);
    const report = await waitFor("50 outcomes joined to version 1", async () => {
      const r = await quality(1);
      return r !== undefined && r.outcomes >= 50 ? r : undefined;
    });
    expect(report.outcomes).toBe(50);
    expect(report.metrics.accuracy).toBeCloseTo(expected, 10);
    // Two evaluation passes with the evidence in place, and still nothing fired.
    await sleep(3 * EVALUATE_MS);
    expect(await qualityAlertActive(1)).toBe(false);
    expect(await audit("retrain.trigger")).toEqual([]);
    expect(await rollouts()).toEqual([]);
  });

  let challenger: Rollout;

  it("phase 2: the concept shifts, accuracy falls, the alert fires, the hook registers version 2 and a canary starts", async () => {
    const { answers, accepted } = await traffic(RETRAIN_ROWS, "shift", true);
    expect(accepted).toBe(RETRAIN_ROWS);
    const expected = accuracyOf([...phase1, ...answers]);
    expect(expected).toBeLessThan(0.8);
    const report = await waitFor("150 outcomes joined to version 1", async () => {
      const r = await quality(1);
      return r !== undefined && r.outcomes >= 150 ? r : undefined;
    });
    expect(report.metrics.accuracy).toBeCloseTo(expected, 10);

    await waitFor("the quality alert on version 1", async () => ((await qualityAlertActive(1)) ? true : undefined), 15_000);
    const [trigger] = await waitFor("retrain.trigger in the audit log", async () => {
      const entries = await audit("retrain.trigger");
      return entries.length > 0 ? entries : undefined;
    }, 15_000);
    expect(trigger).toMatchObject({ model: MODEL, version: 1 });
    // The hook's outcome is in the entry: exit code 0, and it trained on the shifted rows the server exported.
    expect(trigger?.details, JSON.stringify(trigger?.details)).toMatchObject({ ok: true, command: { exitCode: 0 } });

    challenger = await waitFor("a canary of version 2", async () => (await rollouts()).find((r) => r.challenger === 2), 45_000, 250);
    expect(challenger).toMatchObject({ model: MODEL, alias: "production", champion: 1, challenger: 2, mode: "canary", percent: 50, sticky: false, state: "active" });
    expect(challenger.guard).toMatchObject({ metric: "accuracy", minOutcomes: 30, margin: 0.05, autoPromote: true, promoteAfter: "1s" });

    // Version 2 is the hook's model, trained on the latest shifted rows.
    const v2 = (await showModel()).versions.find((v) => v.version === 2);
    expect(v2?.manifest.metadata).toMatchObject({ params: { rows: RETRAIN_ROWS, retrained_from: 1 }, tags: { retrained_by: "feedback-loop", trigger: "quality" } });
  });

  it("phase 3: on shifted traffic the guard promotes the retrained challenger", async () => {
    const { status, answers } = await driveRollout(challenger.id, "canary2");
    expect(status.rollout.state).toBe("promoted");
    const served = summarise(answers);
    const byArm = (version: number): Answer[] => answers.filter((a) => a.version === version && a.variant !== null);
    expect(byArm(1).every((a) => a.variant === "champion"), JSON.stringify(served)).toBe(true);
    expect(byArm(2).every((a) => a.variant === "challenger"), JSON.stringify(served)).toBe(true);
    expect(byArm(2).length).toBeGreaterThanOrEqual(30);
    // The retrained model has learnt the new concept; the old one answers the opposite.
    expect(accuracyOf(byArm(2))).toBeGreaterThan(0.85);
    expect(accuracyOf(byArm(1))).toBeLessThan(0.2);

    expect((await showModel()).aliases.production).toBe(2);
    const promotions = await audit("rollout.promote");
    expect(promotions).toEqual([expect.objectContaining({ actor: "mlship-guard", rolloutId: challenger.id, model: MODEL })]);
    const after = await traffic(4, "after-promotion", true);
    expect(after.answers.map((a) => [a.version, a.variant])).toEqual([[2, null], [2, null], [2, null], [2, null]]);
  });

  it("phase 4: a worse challenger (the original model again) is rolled back automatically", async () => {
    const registered = await spawnCli(["models", "register", PACKAGE, "--name", MODEL], { env });
    expect(registered).toMatchObject({ code: 0, stdout: "3\n" });
    const worse = await waitFor("a canary of version 3", async () => (await rollouts()).find((r) => r.challenger === 3), 30_000, 250);
    expect(worse).toMatchObject({ champion: 2, challenger: 3, state: "active" });

    const { status, answers } = await driveRollout(worse.id, "canary3");
    expect(status.rollout.state, status.rollout.endReason ?? "").toBe("rolled_back");
    expect(accuracyOf(answers.filter((a) => a.version === 3))).toBeLessThan(0.2);
    expect((await showModel()).aliases.production).toBe(2);
    const rollbacks = await audit("rollout.rollback");
    expect(rollbacks).toEqual([expect.objectContaining({ rolloutId: worse.id, model: MODEL })]);
    // The hook ran once: its cool-down holds even though version 3's answers were poor.
    expect(await audit("retrain.trigger")).toHaveLength(1);
  });
});
