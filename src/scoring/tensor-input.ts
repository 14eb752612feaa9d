import { elementCount, MlshipError } from "../core/index.js";
import type { Tensor } from "../core/index.js";
import type { ModelContext } from "./context.js";
import { decodeImages } from "./images.js";
import { shapeFits, shapeText } from "./values.js";

/**
 * Checks tensors that arrive already typed (gRPC, library callers) against the signature; string tensors
 * for an image input hold base64-encoded images and are decoded through the image step.
 */
export async function checkTensorFeeds(feeds: Record<string, Tensor>, ctx: ModelContext): Promise<Record<string, Tensor>> {
  const out: Record<string, Tensor> = {};
  for (const [name, tensor] of Object.entries(feeds)) {
    const image = ctx.imageInputs.get(name);
    if (image !== undefined && tensor.dtype === "string") {
      out[image.target.name] = await decodeImages(tensor.data as string[], image, name);
      continue;
    }
    const spec = ctx.inputByName.get(name);
    if (spec === undefined) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `model '${ctx.name}' has no input '${name}' (inputs: ${ctx.publicSignature.inputs.map((s) => s.name).join(", ")})`, { field: name });
    }
    if (tensor.dtype !== spec.dtype) {
      throw new MlshipError("MLSHIP_ERR_INPUT_DTYPE", `input '${name}' is ${spec.dtype}, got ${tensor.dtype}`, { field: name });
    }
    if (!shapeFits(spec.shape, tensor.shape)) {
      throw new MlshipError("MLSHIP_ERR_INPUT_SHAPE", `input '${name}' has shape ${shapeText(spec.shape)}, got ${shapeText(tensor.shape)}`, { field: name });
    }
    if (tensor.data.length !== elementCount(tensor.shape)) {
      throw new MlshipError("MLSHIP_ERR_INPUT_SHAPE", `input '${name}' has ${tensor.data.length} elements but shape ${shapeText(tensor.shape)} needs ${elementCount(tensor.shape)}`, { field: name });
    }
    out[name] = tensor;
  }
  for (const spec of ctx.inputs) {
    if (out[spec.name] === undefined) throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", `missing input '${spec.name}'`, { field: spec.name });
  }
  return out;
}
