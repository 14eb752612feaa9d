// `mlship rollout ...` and `mlship audit` in-process, through the real program (buildProgram) with captured output,
// on a home where the breast-cancer example is registered twice.
import fs from "node:fs";
import { fileURLToPath } from "node:url";
import { CommanderError } from "commander";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { auditCommand, rolloutCommand } from "../../src/cli/rollout.js";
import { CliContext } from "../../src/cli/context.js";
import { buildProgram } from "../../src/cli/main.js";
import { toMlshipError } from "../../src/core/index.js";
import type { AuditEntry, Rollout, RolloutStatus } from "../../src/rollout/types.js";
import { runCli, tempDir, type CliResult } from "../cli/helpers.js";

const EXAMPLE = fileURLToPath(new URL("../../examples/models/breast-cancer", import.meta.url));
const home = tempDir("cli-rollout");
const env = { MLSHIP_HOME: home, MLSHIP_USER: "tester", MLSHIP_WORKERS: "1", MLSHIP_LOG_LEVEL: "warn" };

/**
 * Runs the program with the rollout and audit commands, the way `main` runs it (errors as one `mlship: ... [CODE]`
 * line, exit 1; usage errors exit 2). `main` registers them once the lead wires them; until then they are added here.
 */
async function rolloutCli(...args: string[]): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  const ctx = new CliContext({
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env,
    cwd: home,
    handleSignals: false,
  });
  const program = buildProgram(ctx);
  for (const command of [rolloutCommand(ctx), auditCommand(ctx)]) {
    if (program.commands.some((c) => c.name() === command.name())) continue;
    const apply = (cmd: typeof command): void => {
      cmd.exitOverride();
      cmd.configureOutput(program.configureOutput());
      cmd.commands.forEach(apply);
    };
    apply(command);
    program.addCommand(command);
  }
  let code = 0;
  try {
    await program.parseAsync(["node", "mlship", ...args], { from: "node" });
  } catch (error) {
    if (error instanceof CommanderError) {
      code = error.exitCode === 0 ? 0 : 2;
      if (code !== 0) stderr += `mlship: ${error.message} [MLSHIP_ERR_CLI_USAGE]\n`;
    } else {
      const e = toMlshipError(error);
      stderr += `mlship: ${e.message} [${e.code}]\n`;
      code = e.code === "MLSHIP_ERR_CLI_USAGE" ? 2 : 1;
    }
  } finally {
    await ctx.close();
  }
  return { code, stdout, stderr };
}

afterAll(() => fs.rmSync(home, { recursive: true, force: true }));

describe("mlship rollout and audit", () => {
  beforeAll(async () => {
    const first = await runCli(["models", "register", EXAMPLE, "--name", "breast-cancer", "--alias", "production"], { env, cwd: home });
    expect(first).toMatchObject({ code: 0, stdout: "1\n" });
    const second = await runCli(["models", "register", EXAMPLE, "--name", "breast-cancer"], { env, cwd: home });
    expect(second).toMatchObject({ code: 0, stdout: "2\n" });
  }, 60_000);

  it("starts a canary, shows its status and promotes it", async () => {
    const start = await rolloutCli("rollout", "start", "breast-cancer", "--challenger", "2", "--canary", "30%", "--auto-promote", "--promote-after", "30m", "--margin", "0.01", "--metric", "accuracy", "--reason", "new training data");
    expect(start.stderr).toBe("");
    expect(start.code).toBe(0);
    expect(start.stdout).toContain("started canary of breast-cancer@production: version 2 takes 30% of traffic against version 1 (sticky by key)");
    const id = /rollout ([0-9a-f-]{36})/.exec(start.stdout)?.[1];
    expect(id).toBeDefined();

    const again = await rolloutCli("rollout", "start", "breast-cancer", "--challenger", "2");
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^mlship: model "breast-cancer" already has an active canary rollout on alias "production" .* \[MLSHIP_ERR_ROLLOUT_CONFLICT\]\n$/);

    const status = await rolloutCli("rollout", "status", "breast-cancer");
    expect(status.code).toBe(0);
    expect(status.stdout).toContain(`rollout ${id as string}: canary of breast-cancer@production`);
    expect(status.stdout).toMatch(/champion\s+1\s+0\s+0/);
    expect(status.stdout).toMatch(/challenger\s+2\s+0\s+0/);
    expect(status.stdout).toContain("guard: none - auto-promotion waits until the rollout has run 30m (0 s so far)");
    const json = await rolloutCli("rollout", "status", "--id", id as string, "--json");
    const parsed = JSON.parse(json.stdout) as RolloutStatus;
    expect(parsed.rollout).toMatchObject({ id, percent: 30, guard: { autoPromote: true, promoteAfter: "30m", margin: 0.01, metric: "accuracy" }, reason: "new training data", startedBy: "tester" });

    const listed = await rolloutCli("rollout", "list", "breast-cancer", "--json");
    expect((JSON.parse(listed.stdout) as Rollout[]).map((r) => [r.id, r.state])).toEqual([[id, "active"]]);

    const promote = await rolloutCli("rollout", "promote", "breast-cancer", "--reason", "looks good");
    expect(promote.stderr).toBe("");
    expect(promote.stdout).toBe(`promoted: breast-cancer@production -> 2 (was 1); rollout ${id as string} ended\n`);
    const show = await runCli(["models", "list", "--json"], { env, cwd: home });
    expect((JSON.parse(show.stdout) as { aliases: Record<string, number> }[])[0]?.aliases).toEqual({ production: 2 });

    const none = await rolloutCli("rollout", "status", "breast-cancer");
    expect(none.code).toBe(1);
    expect(none.stderr).toBe('mlship: model "breast-cancer" has no active rollout on alias "production" [MLSHIP_ERR_ROLLOUT_NOT_FOUND]\n');
  }, 60_000);

  it("starts a shadow rollout with the default share and aborts it", async () => {
    const start = await rolloutCli("rollout", "start", "breast-cancer", "--challenger", "1", "--shadow", "--json");
    expect(start.code).toBe(0);
    const rollout = JSON.parse(start.stdout) as Rollout;
    expect(rollout).toMatchObject({ mode: "shadow", percent: 100, champion: 2, challenger: 1 });
    const abort = await rolloutCli("rollout", "abort", "breast-cancer", "--reason", "not needed");
    expect(abort.stdout).toBe(`aborted: breast-cancer@production stays on 2; rollout ${rollout.id} ended\n`);
    const table = await rolloutCli("rollout", "list");
    expect(table.stdout).toMatch(/^ID\s+MODEL\s+ALIAS\s+MODE/);
    expect(table.stdout).toMatch(/shadow\s+100%\s+2\s+1\s+aborted/);
    expect(table.stdout).toMatch(/canary\s+30%\s+1\s+2\s+promoted/);
  }, 60_000);

  it("refuses bad flags with a usage error naming the flag", async () => {
    const both = await rolloutCli("rollout", "start", "breast-cancer", "--challenger", "1", "--canary", "10", "--ab", "50");
    expect(both.code).toBe(2);
    expect(both.stderr).toContain("choose one of --canary, --shadow and --ab");
    const percent = await rolloutCli("rollout", "start", "breast-cancer", "--challenger", "1", "--canary", "150%");
    expect(percent.code).toBe(2);
    expect(percent.stderr).toContain("--canary must be a percentage from 0 to 100");
    const after = await rolloutCli("rollout", "start", "breast-cancer", "--challenger", "1", "--promote-after", "later");
    expect(after.code).toBe(2);
    expect(after.stderr).toContain("--promote-after must be a duration");
    const version = await rolloutCli("rollout", "start", "breast-cancer", "--challenger", "x");
    expect(version.code).toBe(2);
  });

  it("prints the audit log, alias moves done with `models alias` included", async () => {
    const moved = await runCli(["models", "alias", "breast-cancer", "staging", "1", "--reason", "qa"], { env, cwd: home });
    expect(moved.code).toBe(0);
    const json = await rolloutCli("audit", "--model", "breast-cancer", "--json");
    expect(json.code).toBe(0);
    const entries = JSON.parse(json.stdout) as AuditEntry[];
    expect(entries.map((e) => e.action)).toEqual(["alias.set", "rollout.abort", "rollout.start", "rollout.promote", "alias.set", "rollout.start", "alias.set"]);
    expect(entries[0]).toMatchObject({ actor: "tester", reason: "qa", details: { alias: "staging", to: 1 } });
    const table = await rolloutCli("audit", "--action", "rollout.promote");
    expect(table.stdout).toMatch(/^AT\s+ACTOR\s+ACTION/);
    expect(table.stdout).toMatch(/tester\s+rollout\.promote\s+breast-cancer\s+2\s+production 1 -> 2\s+looks good/);
    const limited = await rolloutCli("audit", "--limit", "2", "--json");
    expect(JSON.parse(limited.stdout)).toHaveLength(2);
    const bad = await rolloutCli("audit", "--action", "deploy");
    expect(bad.code).toBe(2);
  });
});
