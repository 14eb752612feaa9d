// A working wrapper: runs the breast-cancer MLP through context.onnx and answers a label, the class name and a
// json output mapping class names to probabilities. Logs one audit line per call through context.log.
let session;
let labels;

export default {
  async load(context) {
    session = await context.onnx("onnx");
    labels = context.config.labels;
    context.log.info("loaded", { inputs: session.inputNames });
  },
  async predict(context, rows) {
    const width = rows[0]?.features.length ?? 0;
    const data = new Float32Array(rows.length * width);
    rows.forEach((row, r) => data.set(row.features, r * width));
    const out = await session.run({ input: { data, dims: [rows.length, width] } });
    const probs = out.probabilities.data;
    const label = out.label.data;
    context.log.info("scored", { rows: rows.length });
    return rows.map((_, r) => ({
      label: Number(label[r]),
      class_name: labels[Number(label[r])],
      probabilities: Object.fromEntries(labels.map((name, k) => [name, probs[r * labels.length + k]])),
    }));
  },
};
