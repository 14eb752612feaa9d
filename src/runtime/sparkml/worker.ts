/**
 * The sparkml worker script: each loaded key holds one `SparkModel` (the saved directory read once per worker);
 * a run builds the input frame from the tensors, applies the stages, and returns the requested output columns.
 */
import { serveWorker } from "../pool/index.js";
import { frameFromTensors, tensorSpecOf, tensorsFromFrame } from "./frame.js";
import { loadSparkModel } from "./model.js";

serveWorker(async (spec) => {
  const expectClass = typeof spec.options?.expectClass === "string" ? spec.options.expectClass : undefined;
  const model = await loadSparkModel(spec.modelPath, expectClass === undefined ? {} : { expectClass });
  return {
    signature: { inputs: model.inputs.map(tensorSpecOf), outputs: model.outputs.map(tensorSpecOf) },
    run(feeds, outputs) {
      const wanted = outputs === undefined ? model.outputs : model.outputs.filter((column) => outputs.includes(column.name));
      const frame = model.stage.transform(frameFromTensors(feeds, model.inputs));
      return Promise.resolve(tensorsFromFrame(frame, wanted));
    },
    release: () => Promise.resolve(),
  };
});
