/**
 * `mlship models optimize`: optimizes a registered version's ONNX model, measures parent and child, applies the
 * accuracy gate and, when it passes, registers the child as a new version: the parent's package with the new
 * model file and its lineage in the manifest metadata (`metadata.lineage`: parent model/version/digest,
 * `derived_by`, `transform`; also, for search, tags `mlship.parent`, `mlship.parent_digest`, `mlship.optimization`
 * and params `optimization.*`) and in the version's `source` (`models:/NAME/VERSION`).
 */
import { randomUUID } from "node:crypto";
import { cp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { MlshipError } from "../core/index.js";
import { loadPackage, writePackage } from "../package/index.js";
import type { Manifest } from "../package/index.js";
import type { Registry, VersionRecord } from "../registry/index.js";
import type { ArtifactStore } from "../store/index.js";
import { OPTIMIZE_LEVELS, inputInfo, openSession, readValidationCsv, rowWidth } from "./evaluate.js";
import type { ValidationSet } from "./evaluate.js";
import { measure, methodName, optimizeModel } from "./optimize.js";
import type { OptimizeReport, OptimizeSpec } from "./optimize.js";

/** What `optimizeVersion` needs from the app. */
export interface OptimizeVersionDeps {
  registry: Registry;
  artifacts: ArtifactStore;
  /** A folder for temporary packages (the app's staging folder). */
  stagingRoot: string;
  /** Who registers the new version. */
  user: string;
}

/** Options of `optimizeVersion`: the optimization plus files, gate and naming. */
export interface OptimizeVersionOptions extends Omit<OptimizeSpec, "calibration"> {
  /** The parent: name, name@3, name@production, models:/... */
  ref: string;
  /** Validation CSV (feature columns + label column): quality, agreement and the gate. */
  validate?: string;
  /** Calibration CSV for int8-static (feature columns; a label column is ignored). */
  calibration?: string;
  /** The label column of the CSV files (default `label`, else `target`). */
  labelColumn?: string;
  /** Most accepted drop of accuracy (R² for regression), parent minus child; default 0.01. */
  maxAccuracyDrop?: number;
  /** Register under this model name instead of the parent's. */
  name?: string;
  description?: string;
  /** Measure and report only; register nothing. */
  dryRun?: boolean;
  /** Timed runs per latency figure (default 50). */
  runs?: number;
}

export interface OptimizeVersionResult {
  parent: { name: string; version: number; digest: string };
  report: OptimizeReport;
  optimization: Record<string, string | number | boolean | string[]>;
  /** The new version; absent on a dry run or when the gate refused it. */
  record?: VersionRecord;
  /** True when the gate refused the child (nothing registered). */
  refused: boolean;
}

function usage(message: string, field: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_CLI_USAGE", message, { field });
}

/** Checks the option combination before anything is read. */
export function checkOptimizeOptions(o: OptimizeVersionOptions): void {
  if (o.quantize !== undefined && o.quantize !== "int8-dynamic" && o.quantize !== "int8-static") {
    throw usage(`--quantize must be int8-dynamic or int8-static, got "${String(o.quantize)}"`, "--quantize");
  }
  if (o.quantize !== undefined && o.fp16 === true) throw usage("use either --quantize or --fp16, not both", "--fp16");
  if (o.quantize === undefined && o.fp16 !== true && o.level === undefined) {
    throw usage("say what to do: --quantize int8-dynamic|int8-static, --fp16 or --optimize-level LEVEL", "--quantize");
  }
  if (o.quantize === "int8-static" && o.calibration === undefined) throw usage("--quantize int8-static needs --calibration FILE", "--calibration");
  if (o.quantize !== "int8-static" && o.calibration !== undefined) throw usage("--calibration is only for --quantize int8-static", "--calibration");
  if (o.quantize !== "int8-static" && (o.calibrationMethod !== undefined || o.percentile !== undefined)) {
    throw usage("--calibration-method and --percentile are only for --quantize int8-static", "--calibration-method");
  }
  if (o.calibrationMethod !== undefined && o.calibrationMethod !== "minmax" && o.calibrationMethod !== "percentile") {
    throw usage(`--calibration-method must be minmax or percentile, got "${String(o.calibrationMethod)}"`, "--calibration-method");
  }
  if (o.perChannel === true && o.quantize === undefined) throw usage("--per-channel is only for --quantize", "--per-channel");
  if (o.conv === true && o.quantize !== "int8-dynamic") throw usage("--include-conv is only for --quantize int8-dynamic", "--include-conv");
  if (o.keepFloat32 !== undefined && o.fp16 !== true) throw usage("--keep-float32 is only for --fp16", "--keep-float32");
  if (o.level !== undefined && !(OPTIMIZE_LEVELS as readonly string[]).includes(o.level)) {
    throw usage(`--optimize-level must be one of ${OPTIMIZE_LEVELS.join(", ")}, got "${String(o.level)}"`, "--optimize-level");
  }
  const drop = o.maxAccuracyDrop;
  if (drop !== undefined && (!Number.isFinite(drop) || drop < 0)) {
    throw usage(`--max-accuracy-drop must be a number >= 0, got ${String(drop)}`, "--max-accuracy-drop");
  }
}

/**
 * The command line that derived the child from `parentRef` (`metadata.lineage.derived_by`): the flags that shape
 * the model, not those that only measure or name it (--validate, --max-accuracy-drop, --runs, --name, --description);
 * the calibration file by its base name.
 */
export function derivedBy(parentRef: string, o: OptimizeVersionOptions): string {
  const args = ["mlship", "models", "optimize", parentRef];
  if (o.quantize !== undefined) args.push("--quantize", o.quantize);
  if (o.calibration !== undefined) args.push("--calibration", path.basename(o.calibration));
  if (o.calibrationMethod !== undefined) args.push("--calibration-method", o.calibrationMethod);
  if (o.percentile !== undefined) args.push("--percentile", String(o.percentile));
  if (o.perChannel === true) args.push("--per-channel");
  if (o.conv === true) args.push("--include-conv");
  if (o.fp16 === true) args.push("--fp16");
  if (o.keepFloat32 !== undefined && o.keepFloat32.length > 0) args.push("--keep-float32", o.keepFloat32.join(","));
  if (o.level !== undefined) args.push("--optimize-level", o.level);
  return args.map((a) => (/^[\w@:/.,=+-]+$/.test(a) ? a : JSON.stringify(a))).join(" ");
}

function lineageParams(optimization: OptimizeVersionResult["optimization"]): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(optimization)) out[`optimization.${k}`] = Array.isArray(v) ? v.join("; ") : v;
  return out;
}

/** Optimizes `options.ref` and registers the result (see the module comment). */
export async function optimizeVersion(deps: OptimizeVersionDeps, options: OptimizeVersionOptions): Promise<OptimizeVersionResult> {
  checkOptimizeOptions(options);
  const { version: parent } = await deps.registry.resolve(options.ref);
  if (parent.manifest.flavor !== "onnx") {
    throw new MlshipError("MLSHIP_ERR_PACKAGE_UNSUPPORTED", `${parent.name}@${parent.version} is a ${parent.manifest.flavor} model; optimize works on ONNX models`);
  }
  const pkg = await loadPackage(await deps.artifacts.materialize(parent.digest));
  const modelFile = path.join(pkg.root, pkg.manifest.files.model);
  const parentBytes = new Uint8Array(await readFile(modelFile));

  const probe = await openSession(parentBytes, `${parent.name}@${parent.version}`);
  let width: number;
  try {
    width = rowWidth(inputInfo(probe));
  } finally {
    await probe.release();
  }
  const columns = pkg.manifest.signature.columns?.map((c) => c.name);
  const read = (file: string, flag: string, labelOptional: boolean): Promise<ValidationSet> =>
    readValidationCsv(file, { width, labelOptional, flag, ...(columns === undefined ? {} : { columns }), ...(options.labelColumn === undefined ? {} : { labelColumn: options.labelColumn }) });
  const validation = options.validate === undefined ? undefined : await read(options.validate, "--validate", false);
  const calibration = options.calibration === undefined ? undefined : await read(options.calibration, "--calibration", true);

  const spec: OptimizeSpec = {
    ...(options.quantize === undefined ? {} : { quantize: options.quantize }),
    ...(options.perChannel === undefined ? {} : { perChannel: options.perChannel }),
    ...(options.conv === undefined ? {} : { conv: options.conv }),
    ...(calibration === undefined ? {} : { calibration }),
    ...(options.calibrationMethod === undefined ? {} : { calibrationMethod: options.calibrationMethod }),
    ...(options.percentile === undefined ? {} : { percentile: options.percentile }),
    ...(options.fp16 === undefined ? {} : { fp16: options.fp16 }),
    ...(options.keepFloat32 === undefined ? {} : { keepFloat32: options.keepFloat32 }),
    ...(options.level === undefined ? {} : { level: options.level }),
  };
  const { model, optimization } = await optimizeModel(parentBytes, spec);
  const report = await measure(parentBytes, model, methodName(spec), {
    ...(validation === undefined ? {} : { validation }),
    ...(options.maxAccuracyDrop === undefined ? {} : { maxAccuracyDrop: options.maxAccuracyDrop }),
    ...(options.runs === undefined ? {} : { runs: options.runs }),
  });
  const result: OptimizeVersionResult = {
    parent: { name: parent.name, version: parent.version, digest: parent.digest },
    report,
    optimization,
    refused: report.gate.passed === false,
  };
  if (result.refused || options.dryRun === true) return result;

  const staging = path.join(deps.stagingRoot, randomUUID());
  try {
    await mkdir(deps.stagingRoot, { recursive: true });
    await cp(pkg.root, staging, { recursive: true });
    await writeFile(path.join(staging, pkg.manifest.files.model), model);
    const parentRef = `${parent.name}@${parent.version}`;
    const metadata: Manifest["metadata"] = {
      ...pkg.manifest.metadata,
      tags: {
        ...pkg.manifest.metadata.tags,
        "mlship.parent": parentRef,
        "mlship.parent_digest": parent.digest,
        "mlship.optimization": report.method,
      },
      params: { ...pkg.manifest.metadata.params, ...lineageParams(optimization) },
      // The parent's own lineage (if it was derived too) is replaced: this one points at the parent, which points on.
      lineage: {
        parent: { model: parent.name, version: parent.version, digest: parent.digest },
        derived_by: derivedBy(parentRef, options),
        transform: { ...optimization },
      },
    };
    const description = options.description ?? `${report.method} of ${parentRef}`;
    metadata.description = description;
    await writePackage(staging, { ...pkg.manifest, metadata });
    const metrics: Record<string, number> = { "optimize.size_ratio": report.size_ratio };
    const v = report.validation;
    if (v !== undefined) {
      const child = report.child.quality ?? {};
      const parentQ = report.parent.quality ?? {};
      for (const [k, x] of Object.entries(child)) if (typeof x === "number") metrics[`optimize.validation_${k}`] = x;
      for (const [k, x] of Object.entries(parentQ)) if (typeof x === "number") metrics[`optimize.parent_validation_${k}`] = x;
      if (v.agreement.agreement !== undefined) metrics["optimize.agreement"] = v.agreement.agreement;
    }
    result.record = await deps.registry.register({
      name: options.name ?? parent.name,
      packageDir: staging,
      source: `models:/${parent.name}/${parent.version}`,
      description,
      metrics,
      by: deps.user,
    });
    return result;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
