import { MlshipError } from "../core/index.js";

/** A JSON request body: empty and malformed bodies are MLSHIP_ERR_INPUT_JSON naming the `body` field. */
export function parseJsonBody(text: string): unknown {
  if (text.trim() === "") throw new MlshipError("MLSHIP_ERR_INPUT_JSON", "the request body is empty; send a JSON document", { field: "body" });
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new MlshipError("MLSHIP_ERR_INPUT_JSON", `malformed JSON: ${reason}. Ensure that input is a valid JSON formatted string`, {
      field: "body",
    });
  }
}
