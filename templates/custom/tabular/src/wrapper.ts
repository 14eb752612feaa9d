/**
 * Tabular model wrapper (mlship template `tabular`): each row carries one value per declared column; the wrapper
 * enriches the row (a missing value takes its default from `custom.config.defaults`, the place to look features up),
 * packs the columns in `custom.config.columns` order into one float32 tensor, runs the ONNX model and returns the
 * first value of `onnx_output` per row as `prediction`.
 */
import { WrapperInputError, type ModelWrapper, type WrapperContext, type WrapperOnnxSession, type WrapperRow } from "mlship/wrapper";

let session: WrapperOnnxSession | undefined;
let columns: string[] = [];
let defaults: Record<string, number> = {};
let onnxInput = "input";
let onnxOutput = "prediction";

const wrapper: ModelWrapper = {
  async load(context: WrapperContext) {
    const { config } = context;
    if (typeof config.onnx_input === "string") onnxInput = config.onnx_input;
    if (typeof config.onnx_output === "string") onnxOutput = config.onnx_output;
    columns = Array.isArray(config.columns) ? config.columns.map(String) : context.signature.inputs.map((i) => i.name);
    if (typeof config.defaults === "object" && config.defaults !== null) defaults = config.defaults as Record<string, number>;
    session = await context.onnx("onnx");
  },

  async predict(context: WrapperContext, rows: WrapperRow[]) {
    if (session === undefined) throw new Error("predict before load");
    const started = Date.now();
    const data = new Float32Array(rows.length * columns.length);
    rows.forEach((row, i) => {
      columns.forEach((column, c) => {
        let value = row[column];
        if (value === null || value === undefined || (typeof value === "number" && Number.isNaN(value))) value = defaults[column];
        if (typeof value !== "number" || !Number.isFinite(value)) {
          throw new WrapperInputError(`row ${i}: ${column} must be a number, got ${JSON.stringify(value ?? null)}`, i, column);
        }
        data[i * columns.length + c] = value;
      });
    });
    const result = await session.run({ [onnxInput]: { data, dims: [rows.length, columns.length], type: "float32" } });
    const output = result[onnxOutput];
    if (output === undefined) throw new Error(`the ONNX model returned no ${onnxOutput}`);
    const per = output.data.length / Math.max(rows.length, 1);
    const out = rows.map((_, i) => ({ prediction: Number(output.data[i * per]) }));
    context.log.info("tabular predict", { rows: rows.length, duration_ms: Date.now() - started });
    return out;
  },
};

export default wrapper;
