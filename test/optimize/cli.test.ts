import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PackageLineage } from "../../src/package/index.js";
import { fixture, runCli, tempDir } from "../cli/helpers.js";

const home = tempDir("optimize");
const env = { MLSHIP_HOME: home, MLSHIP_USER: "tester", MLSHIP_WORKERS: "1" };
const cli = (...args: string[]) => runCli(args, { env, cwd: home });
const bc = fixture("breast_cancer_mlp");
const dia = fixture("diabetes_linear");
const bcProd = path.join(bc.dir, "prod.csv");

interface VersionJson {
  version: {
    version: number;
    digest: string;
    source: string;
    tags: Record<string, string>;
    metrics: Record<string, number>;
    manifest: { metadata: { params?: Record<string, unknown>; lineage?: PackageLineage } };
  };
}

describe("mlship models optimize", () => {
  beforeAll(async () => {
    const a = await cli("models", "register", bc.onnx, "--name", "bc", "--columns-from", path.join(bc.dir, "train.csv"), "--label-column", "label");
    expect(a.code, a.stderr).toBe(0);
    const b = await cli("models", "register", dia.onnx, "--name", "dia", "--columns-from", path.join(dia.dir, "train.csv"), "--label-column", "target");
    expect(b.code, b.stderr).toBe(0);
  });
  afterAll(() => fs.rmSync(home, { recursive: true, force: true }));

  it("int8-dynamic registers a smaller child version with lineage and the report", async () => {
    const r = await cli("models", "optimize", "bc@1", "--quantize", "int8-dynamic", "--validate", bcProd, "--runs", "5", "--json");
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as {
      parent: { name: string; version: number };
      record: { version: number };
      report: { size_ratio: number; parent: { bytes: number; p50_ms_batch1: number; p50_ms_batch32: number; quality: { accuracy: number } };
        child: { bytes: number; quality: { accuracy: number } }; validation: { agreement: { agreement: number }; rows: number }; gate: { passed: boolean } };
    };
    expect(out.parent).toMatchObject({ name: "bc", version: 1 });
    expect(out.record.version).toBe(2);
    expect(out.report.child.bytes).toBeLessThan(out.report.parent.bytes);
    expect(out.report.parent.p50_ms_batch1).toBeGreaterThan(0);
    expect(out.report.parent.p50_ms_batch32).toBeGreaterThan(0);
    expect(out.report.validation.rows).toBe(143);
    expect(out.report.validation.agreement.agreement).toBeGreaterThanOrEqual(0.98);
    expect(out.report.gate.passed).toBe(true);

    const show = await cli("models", "show", "bc@2", "--json");
    const v = (JSON.parse(show.stdout) as VersionJson).version;
    expect(v.source).toBe("models:/bc/1");
    expect(v.tags).toMatchObject({ "mlship.parent": "bc@1", "mlship.optimization": "int8-dynamic" });
    expect(v.tags["mlship.parent_digest"]).toMatch(/^[0-9a-f]{64}$/);
    expect(v.manifest.metadata.params?.["optimization.method"]).toBe("int8-dynamic");
    expect(v.metrics["optimize.agreement"]).toBeGreaterThanOrEqual(0.98);

    // First-class lineage in the child's manifest: the parent version with its package digest, the command, the settings.
    const parent = (JSON.parse((await cli("models", "show", "bc@1", "--json")).stdout) as VersionJson).version;
    const lineage = v.manifest.metadata.lineage;
    expect(lineage?.parent).toStrictEqual({ model: "bc", version: 1, digest: parent.digest });
    expect(lineage?.derived_by).toBe("mlship models optimize bc@1 --quantize int8-dynamic");
    expect(lineage?.transform).toMatchObject({ method: "int8-dynamic", per_channel: false, conv: false });
    expect(lineage?.transform?.quantized_nodes).toEqual(expect.arrayContaining([expect.stringMatching(/./)]));
    expect(lineage?.transform).toStrictEqual((out as unknown as { optimization: unknown }).optimization);
    expect(v.tags["mlship.parent_digest"]).toBe(parent.digest);
    expect(parent.manifest.metadata.lineage).toBeUndefined();

    // `models show`: the version's parent, what derived it and the settings; a PARENT column in the versions table.
    const text = await cli("models", "show", "bc@2");
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain(`  parent:  bc@1 (digest ${parent.digest})`);
    expect(text.stdout).toContain("  derived by: mlship models optimize bc@1 --quantize int8-dynamic");
    expect(text.stdout).toMatch(/^ {2}transform: method=int8-dynamic, per_channel=false, conv=false, quantized_nodes=\[.+\]$/m);
    const table = text.stdout.split("\n");
    expect(table.find((l) => l.startsWith("VERSION"))).toMatch(/DIGEST\s+PARENT$/);
    expect(table.find((l) => l.startsWith("1 "))).toMatch(/\s-$/);
    expect(table.find((l) => l.startsWith("2 "))).toMatch(/\sbc@1$/);
    const plain = await cli("models", "show", "dia");
    expect(plain.stdout).not.toContain("PARENT");
    expect(plain.stdout).not.toContain("parent:");

    // The child is servable: predict through the normal scoring path.
    const rows = JSON.stringify({ dataframe_split: { columns: bc.features, data: bc.expected.inputs.slice(0, 3) } });
    const input = path.join(home, "rows.json");
    fs.writeFileSync(input, rows);
    const p = await cli("predict", "bc@2", "--input", input);
    expect(p.code, p.stderr).toBe(0);
    expect(p.stdout).toMatch(/probabilities|label/);
  });

  it("fp16 with a text report; --dry-run registers nothing", async () => {
    const r = await cli("models", "optimize", "bc@1", "--fp16", "--validate", bcProd, "--runs", "5", "--dry-run");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/optimization\s+fp16/);
    expect(r.stdout).toMatch(/gate\s+passed/);
    expect(r.stdout).toMatch(/dry run: nothing registered/);
    const list = await cli("models", "show", "bc", "--json");
    expect((JSON.parse(list.stdout) as { versions: unknown[] }).versions).toHaveLength(2);
  });

  it("int8-static with calibration and a saved onnxruntime optimization (dry run, JSON)", async () => {
    const r = await cli("models", "optimize", "bc@1", "--quantize", "int8-static", "--calibration", path.join(bc.dir, "train.csv"),
      "--calibration-method", "percentile", "--percentile", "99.9", "--optimize-level", "basic", "--validate", bcProd, "--runs", "5", "--dry-run", "--json");
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { optimization: Record<string, unknown>; report: { method: string; size_ratio: number; gate: { passed: boolean } }; record?: unknown };
    expect(out.report.method).toBe("int8-static+ort-basic");
    expect(out.optimization).toMatchObject({ calibration_method: "percentile", percentile: 99.9, calibration_rows: 426, ort_level: "basic" });
    expect(out.report.size_ratio).toBeLessThan(0.55);
    expect(out.report.gate.passed).toBe(true);
    expect(out.record).toBeUndefined();
  });

  it("the gate refuses a child whose quality drops more than the limit; nothing is registered", async () => {
    // int8 dynamic on the raw-feature linear model: activations quantized per tensor lose the small features (R2 0.46 -> ~0.13).
    const r = await cli("models", "optimize", "dia", "--quantize", "int8-dynamic", "--validate", path.join(dia.dir, "prod.csv"), "--runs", "5");
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/gate\s+REFUSED/);
    expect(r.stderr).toMatch(/refused, nothing registered: r2 drops by .* more than --max-accuracy-drop 0\.01 \[MLSHIP_ERR_OPTIMIZE_GATE_FAILED\]/);
    const show = await cli("models", "show", "dia", "--json");
    expect((JSON.parse(show.stdout) as { versions: unknown[] }).versions).toHaveLength(1);

    // An impossible limit: any drop at all is refused (fp16 changes R2 by a hair: measured +0.0003, i.e. a gain, so it passes at 0).
    const ok = await cli("models", "optimize", "dia", "--fp16", "--validate", path.join(dia.dir, "prod.csv"), "--max-accuracy-drop", "0", "--runs", "5", "--dry-run");
    expect(ok.code, ok.stderr).toBe(0);
    const neg = await cli("models", "optimize", "dia", "--fp16", "--max-accuracy-drop", "-1");
    expect(neg.code).toBe(2);
    expect(neg.stderr).toMatch(/--max-accuracy-drop must be a number >= 0/);
  });

  it("bad input gives clear errors", async () => {
    const cases: Array<[string[], number, RegExp]> = [
      [["nosuch", "--fp16"], 1, /model "nosuch" is not registered \[MLSHIP_ERR_MODEL_NOT_FOUND\]/],
      // bc resolves to bc@2, the int8 child: quantized models are not converted again.
      [["bc", "--fp16"], 1, /already quantized \(it has a DynamicQuantizeLinear node\); convert its float32 parent/],
      [["bc@2", "--quantize", "int8-dynamic"], 1, /found no MatMul or Gemm with a float32 weight initializer/],
      [["bc", "--fp16", "--quantize", "int8-dynamic"], 2, /either --quantize or --fp16/],
      [["bc"], 2, /say what to do/],
      [["bc", "--quantize", "int4"], 2, /--quantize must be int8-dynamic or int8-static/],
      [["bc", "--quantize", "int8-static"], 2, /needs --calibration FILE/],
      [["bc", "--quantize", "int8-dynamic", "--calibration", bcProd], 2, /--calibration is only for --quantize int8-static/],
      [["bc", "--fp16", "--include-conv"], 2, /--include-conv is only for --quantize int8-dynamic/],
      [["bc", "--fp16", "--per-channel"], 2, /--per-channel is only for --quantize/],
      [["bc", "--fp16", "--optimize-level", "max"], 2, /--optimize-level must be one of disabled, basic, extended, all/],
      [["bc@1", "--fp16", "--validate", path.join(dia.dir, "prod.csv")], 1, /lacks the model's columns: mean radius/],
      [["bc@1", "--fp16", "--validate", path.join(home, "missing.csv")], 1, /cannot read --validate file/],
      [["bc@1", "--fp16", "--validate", path.join(bc.dir, "prod.csv"), "--label-column", "nope"], 1, /has no label column \(nope\)/],
    ];
    for (const [args, code, message] of cases) {
      const r = await cli("models", "optimize", ...args);
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(code);
      expect(r.stderr).toMatch(message);
    }
  });
});
