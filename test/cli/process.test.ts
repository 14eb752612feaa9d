// The real binary in child processes: `node bin/mlship.js ...` against dist/ (npm test builds before vitest).
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectRecordsMatch, fixture, REPO, spawnCli, tempDir, writeCsv } from "./helpers.js";

const home = tempDir("cli-proc");
const env = { MLSHIP_HOME: home, MLSHIP_USER: "ci", MLSHIP_WORKERS: "1" };
const cli = (...args: string[]) => spawnCli(args, { env });

afterAll(() => fs.rmSync(home, { recursive: true, force: true }));

describe("node bin/mlship.js", { timeout: 180_000 }, () => {
  const diabetes = fixture("diabetes_linear");
  const digits = fixture("digits_cnn");

  beforeAll(async () => {
    const r = await cli(
      "models", "register", diabetes.onnx, "--name", "diabetes",
      "--columns", diabetes.features.join(","), "--metric", "rmse=56.0", "--alias", "production",
    );
    expect(r.stderr).toBe("");
    expect(r).toMatchObject({ code: 0, stdout: "1\n" });
    const second = await cli("models", "register", path.join(diabetes.dir, "model.onnx"), "--name", "diabetes", "--columns", diabetes.features.join(","));
    expect(second).toMatchObject({ code: 0, stdout: "2\n" });
  }, 180_000);

  it("registers, lists and shows", async () => {
    const list = await cli("models", "list", "--json");
    expect(list.code).toBe(0);
    expect(JSON.parse(list.stdout)).toEqual([
      expect.objectContaining({ name: "diabetes", latestVersion: 2, aliases: { production: 1 } }),
    ]);
    const show = await cli("models", "show", "diabetes@production");
    expect(show.code).toBe(0);
    expect(show.stdout).toContain("version 1 (production)");
    expect(show.stdout).toContain("rmse=56");
    expect(show.stdout).toContain("columns: age, sex, bmi, bp, s1, s2, s3, s4, s5, s6");
  });

  it("moves the alias, rolls back, and refuses to archive the aliased version (409 naming the alias)", async () => {
    expect(await cli("models", "alias", "diabetes", "production", "2")).toMatchObject({
      code: 0,
      stdout: "diabetes@production -> 2 (was 1)\n",
    });
    const refused = await cli("models", "archive", "diabetes", "2");
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim().split("\n")).toHaveLength(1);
    expect(refused.stderr).toMatch(/^mlship: .*production.* \[MLSHIP_ERR_REGISTRY_CONFLICT\]\n$/);
    expect(await cli("models", "rollback", "diabetes")).toMatchObject({ code: 0, stdout: "diabetes@production -> 1 (was 2)\n" });
    expect(await cli("models", "archive", "diabetes", "2")).toMatchObject({ code: 0, stdout: "diabetes@2 archived\n" });
    const history = JSON.parse((await cli("models", "history", "diabetes", "--json")).stdout) as Array<{ by: string; action: string }>;
    expect(history.map((e) => e.action)).toEqual(["set", "set", "rollback"]);
    expect(history.every((e) => e.by === "ci")).toBe(true);
  });

  it("predicts from JSON and CSV within the fixture tolerance", async () => {
    const json = path.join(home, "diabetes.json");
    fs.writeFileSync(json, JSON.stringify({ dataframe_split: { columns: diabetes.features, data: diabetes.expected.inputs } }));
    const fromJson = await cli("predict", "models:/diabetes@production", "--input", json);
    expect(fromJson.stderr).toBe("");
    expect(fromJson.code).toBe(0);
    expectRecordsMatch((JSON.parse(fromJson.stdout) as { predictions: unknown }).predictions, diabetes.expected);

    const csv = path.join(home, "diabetes.csv");
    writeCsv(csv, diabetes.features, diabetes.expected.inputs);
    const fromCsv = await cli("predict", "diabetes", "--input", csv);
    expect(fromCsv.code).toBe(0);
    expectRecordsMatch((JSON.parse(fromCsv.stdout) as { predictions: unknown }).predictions, diabetes.expected);
  });

  it("predicts the digits CNN from 64 pixel columns (reshaped to [1,8,8])", async () => {
    expect((await cli("models", "register", digits.onnx, "--name", "digits", "--columns-from", path.join(digits.dir, "train.csv"), "--label-column", "label")).code).toBe(0);
    const csv = path.join(home, "digits.csv");
    writeCsv(csv, digits.features, digits.expected.inputs);
    const r = await cli("predict", "digits", "--input", csv);
    expect(r.stderr).toBe("");
    expectRecordsMatch((JSON.parse(r.stdout) as { predictions: unknown }).predictions, digits.expected);
  });

  it("fails with one line and a non-zero exit for bad input", async () => {
    const missing = await cli("predict", "diabetes", "--input", "does-not-exist.csv");
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^mlship: input file .*does-not-exist\.csv cannot be read: no such file \[MLSHIP_ERR_INPUT_MISSING\]\n$/);

    const badRef = await cli("predict", "diabetes@", "--input", path.join(home, "diabetes.csv"));
    expect(badRef.code).toBe(1);
    expect(badRef.stderr).toMatch(/^mlship: .* \[MLSHIP_ERR_MODEL_REF_INVALID\]\n$/);

    const unknown = await cli("models", "show", "nope");
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^mlship: .*nope.* \[MLSHIP_ERR_MODEL_NOT_FOUND\]\n$/);

    const archived = await cli("predict", "diabetes@2", "--input", path.join(home, "diabetes.csv"));
    expect(archived.code).toBe(1);
    expect(archived.stderr).toMatch(/\[MLSHIP_ERR_MODEL_VERSION_NOT_FOUND\]\n$/);

    const usage = await cli("models", "alias", "diabetes");
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/^mlship: .*missing required argument.* \[MLSHIP_ERR_CLI_USAGE\]\n$/);

    const badPackage = await cli("models", "register", path.join(home, "diabetes.csv"), "--name", "x");
    expect(badPackage.code).toBe(1);
    expect(badPackage.stderr).toMatch(/diabetes\.csv/);
    expect(badPackage.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("prints help and the version with exit 0", async () => {
    const help = await cli("--help");
    expect(help.code).toBe(0);
    for (const command of ["models", "predict", "serve", "quickstart", "config"]) expect(help.stdout).toContain(command);
    const version = await cli("--version");
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO, "package.json"), "utf8")) as { version: string };
    expect(version).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
    const bare = await cli();
    expect(bare.code).toBe(2);
    expect(bare.stderr).toContain("Usage: mlship");
  });
});
