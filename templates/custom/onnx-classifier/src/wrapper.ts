/**
 * ONNX classifier wrapper (mlship template `onnx-classifier`): rows carry a `features` vector; the wrapper runs the
 * ONNX model on the whole batch and returns per row `{ prediction: "<class name>", probabilities: { name: p } }`.
 *
 * `custom.config` (mlship.yaml): onnx_input / onnx_output (the ONNX tensors to feed and read), softmax (apply a
 * softmax when the model returns logits). Class names come from the `labels` artifact (a JSON array); without one
 * the classes are named by their index.
 */
import fs from "node:fs/promises";
import { WrapperInputError, type ModelWrapper, type WrapperContext, type WrapperOnnxSession, type WrapperRow } from "mlship/wrapper";

let session: WrapperOnnxSession | undefined;
let labels: string[] = [];
let onnxInput = "input";
let onnxOutput = "probabilities";
let useSoftmax = false;

function flatten(value: unknown, row: number, into: number[]): void {
  if (Array.isArray(value)) {
    for (const v of value) flatten(v, row, into);
    return;
  }
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new WrapperInputError(`row ${row}: features must hold finite numbers, got ${JSON.stringify(value)}`, row, "features");
  }
  into.push(value);
}

function softmax(values: number[]): number[] {
  const max = Math.max(...values);
  const exps = values.map((v) => Math.exp(v - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}

const wrapper: ModelWrapper = {
  async load(context: WrapperContext) {
    const { config } = context;
    if (typeof config.onnx_input === "string") onnxInput = config.onnx_input;
    if (typeof config.onnx_output === "string") onnxOutput = config.onnx_output;
    useSoftmax = config.softmax === true;
    const labelsFile = context.artifacts.labels;
    if (labelsFile !== undefined) labels = JSON.parse(await fs.readFile(labelsFile, "utf8")) as string[];
    session = await context.onnx("onnx");
  },

  async predict(context: WrapperContext, rows: WrapperRow[]) {
    if (session === undefined) throw new Error("predict before load");
    const started = Date.now();
    const values: number[] = [];
    rows.forEach((row, i) => flatten(row.features, i, values));
    const width = values.length / Math.max(rows.length, 1);
    const result = await session.run({ [onnxInput]: { data: Float32Array.from(values), dims: [rows.length, width], type: "float32" } });
    const output = result[onnxOutput];
    if (output === undefined) throw new Error(`the ONNX model returned no ${onnxOutput}`);
    const classes = output.data.length / Math.max(rows.length, 1);
    const out = rows.map((_, i) => {
      const raw = Array.from({ length: classes }, (_, k) => Number(output.data[i * classes + k]));
      const probs = useSoftmax ? softmax(raw) : raw;
      const best = probs.indexOf(Math.max(...probs));
      const name = (k: number): string => labels[k] ?? String(k);
      return { prediction: name(best), probabilities: Object.fromEntries(probs.map((p, k) => [name(k), p])) };
    });
    context.log.info("classifier predict", { rows: rows.length, predictions: out.map((r) => r.prediction), duration_ms: Date.now() - started });
    return out;
  },
};

export default wrapper;
