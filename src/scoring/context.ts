import type { DType } from "../core/index.js";
import { defaultAs } from "../package/index.js";
import type { ImageStep, Manifest, PostprocessStep, PreprocessStep, TensorSpec } from "../package/index.js";
import type { PublicSignature } from "./types.js";
import { fitTrailing } from "./values.js";

export interface ImageInput {
  step: ImageStep;
  /** The model input the decoded images feed. */
  target: TensorSpec;
}

/** Everything the adapters need about one version, computed once when it is loaded. */
export interface ModelContext {
  name: string;
  version: number;
  manifest: Manifest;
  inputs: readonly TensorSpec[];
  inputByName: ReadonlyMap<string, TensorSpec>;
  /** Image pre-process steps by the public (BYTES) input name. */
  imageInputs: ReadonlyMap<string, ImageInput>;
  /** Declared tabular columns, in tensor order. */
  columns: readonly string[] | undefined;
  /** The input the tabular columns (or positional data) feed. */
  columnsInput: TensorSpec | undefined;
  /** Trailing dims of `columnsInput` filled by the declared columns; undefined when they do not fit it. */
  columnsTrailing: number[] | undefined;
  tabularSteps: readonly PreprocessStep[];
  postprocess: readonly PostprocessStep[];
  /** Output names a client may ask for (model outputs plus post-processing results). */
  outputNames: ReadonlySet<string>;
  publicSignature: PublicSignature;
}

function dropLast(shape: readonly number[]): number[] {
  return shape.slice(0, Math.max(0, shape.length - 1));
}

/** The output specs after post-processing, following `applyPostprocess`'s naming, dtype and shape rules. */
export function postprocessOutputSpecs(outputs: readonly TensorSpec[], steps: readonly PostprocessStep[]): TensorSpec[] {
  const specs = new Map<string, TensorSpec>();
  for (const o of outputs) specs.set(o.name, { ...o, shape: o.shape.slice() });
  // Like applyPostprocess's object: replacing an output keeps its position, new names go last.
  const put = (spec: TensorSpec): void => {
    specs.set(spec.name, spec);
  };
  for (const step of steps) {
    const source = specs.get(step.output);
    const shape = source?.shape ?? [-1];
    const sourceDtype: DType = source?.dtype ?? "float32";
    const isFloat = sourceDtype === "float32" || sourceDtype === "float64" || sourceDtype === "float16";
    switch (step.type) {
      case "softmax":
        put({ name: step.as ?? defaultAs("softmax", step.output), dtype: sourceDtype, shape: shape.slice() });
        break;
      case "argmax":
        put({ name: step.as ?? defaultAs("argmax", step.output), dtype: "int64", shape: dropLast(shape) });
        break;
      case "labels":
        put({
          name: step.as ?? defaultAs("labels", step.output),
          dtype: "string",
          shape: isFloat && shape.length >= 2 ? dropLast(shape) : shape.slice(),
        });
        break;
      case "top_k": {
        const base = step.as ?? defaultAs("top_k", step.output, step.k);
        const topShape = [...dropLast(shape), step.k];
        put({ name: `${base}_indices`, dtype: "int64", shape: topShape });
        put({ name: `${base}_scores`, dtype: sourceDtype, shape: topShape.slice() });
        if (step.labels !== undefined) put({ name: `${base}_labels`, dtype: "string", shape: topShape.slice() });
        break;
      }
    }
  }
  return [...specs.values()];
}

export function buildContext(name: string, version: number, manifest: Manifest): ModelContext {
  const inputs = manifest.signature.inputs;
  const inputByName = new Map(inputs.map((spec) => [spec.name, spec] as const));
  const imageInputs = new Map<string, ImageInput>();
  const tabularSteps: PreprocessStep[] = [];
  for (const step of manifest.preprocess) {
    if (step.type === "image") {
      const targetName = step.target ?? inputs[0]?.name;
      const target = targetName === undefined ? undefined : inputByName.get(targetName);
      if (target !== undefined) imageInputs.set(step.input, { step, target });
    } else tabularSteps.push(step);
  }
  const columnsInputName = manifest.signature.columnsInput ?? inputs[0]?.name;
  const columnsInput = columnsInputName === undefined ? undefined : inputByName.get(columnsInputName);
  const declared = manifest.signature.columns?.map((c) => c.name);
  const columns = declared !== undefined && declared.length > 0 ? declared : undefined;

  const imageTargets = new Set([...imageInputs.values()].map((i) => i.target.name));
  const publicInputs: TensorSpec[] = [];
  for (const spec of inputs) {
    if (!imageTargets.has(spec.name)) publicInputs.push({ ...spec, shape: spec.shape.slice() });
  }
  // Image inputs take the place of the tensors they feed, so clients see the BYTES input where the tensor was.
  for (const [publicName, image] of imageInputs) {
    const at = inputs.findIndex((s) => s.name === image.target.name);
    const spec: TensorSpec = { name: publicName, dtype: "string", shape: [-1] };
    publicInputs.splice(Math.min(at, publicInputs.length), 0, spec);
  }
  const outputs = postprocessOutputSpecs(manifest.signature.outputs, manifest.postprocess);
  return {
    name,
    version,
    manifest,
    inputs,
    inputByName,
    imageInputs,
    columns,
    columnsInput,
    columnsTrailing: columns === undefined || columnsInput === undefined ? undefined : fitTrailing(columnsInput.shape.slice(1), columns.length),
    tabularSteps,
    postprocess: manifest.postprocess,
    outputNames: new Set(outputs.map((o) => o.name)),
    publicSignature: { inputs: publicInputs, outputs },
  };
}
