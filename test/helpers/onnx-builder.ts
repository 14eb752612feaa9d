/**
 * Builds small ONNX models in tests without Python. The encoder is product code (src/package/onnx-build.ts, also
 * used by JavaScript retraining hooks); this module keeps the names the tests import.
 */
export * from "../../src/package/onnx-build.js";
// float16 conversion checked by the builder test is scoring's (the one inputs go through).
export { toFloat16Bits } from "../../src/scoring/index.js";
