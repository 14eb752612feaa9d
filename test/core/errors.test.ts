import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ERROR_CODES, MlshipError, errorBody, mlflowErrorBody, toMlshipError, type ErrorCode } from "../../src/core/index.js";

const docs = readFileSync(new URL("../../docs/errors.md", import.meta.url), "utf8");

describe("error codes", () => {
  it("every code is documented in docs/errors.md with its HTTP status", () => {
    for (const [code, info] of Object.entries(ERROR_CODES)) {
      const row = docs.split("\n").find((line) => line.includes(`\`${code}\``));
      expect(row, `${code} missing from docs/errors.md`).toBeDefined();
      expect(row).toContain(`| ${info.http} |`);
    }
  });

  it("codes follow MLSHIP_ERR_<AREA>_<WHAT> and map to sane statuses", () => {
    for (const [code, info] of Object.entries(ERROR_CODES)) {
      expect(code).toMatch(/^MLSHIP_ERR_[A-Z]+_[A-Z_]+$/);
      expect(info.http).toBeGreaterThanOrEqual(400);
      expect(info.http).toBeLessThan(600);
    }
  });

  it("turns foreign errors into INTERNAL and keeps platform errors and worker-crossing plain objects", () => {
    const own = new MlshipError("MLSHIP_ERR_INPUT_SHAPE", "bad shape", { field: "inputs[0].shape" });
    expect(toMlshipError(own)).toBe(own);
    const foreign = toMlshipError(new TypeError("boom"));
    expect(foreign.code).toBe("MLSHIP_ERR_CORE_INTERNAL");
    expect(foreign.httpStatus).toBe(500);
    const crossed = toMlshipError({ message: "no input x", code: "MLSHIP_ERR_INPUT_MISSING", field: "x" });
    expect(crossed.code).toBe<ErrorCode>("MLSHIP_ERR_INPUT_MISSING");
    expect(crossed.field).toBe("x");
    expect(toMlshipError({ message: "m", code: "NOT_OURS" }).code).toBe("MLSHIP_ERR_CORE_INTERNAL");
  });

  it("builds the V2 and MLflow error bodies from conventions.md", () => {
    const e = new MlshipError("MLSHIP_ERR_MODEL_NOT_FOUND", "model 'x' is not registered", { field: "model" });
    expect(errorBody(e)).toEqual({ error: "model 'x' is not registered", code: "MLSHIP_ERR_MODEL_NOT_FOUND", field: "model" });
    expect(mlflowErrorBody(e)).toEqual({
      error_code: "RESOURCE_DOES_NOT_EXIST",
      message: "model 'x' is not registered",
      mlship_code: "MLSHIP_ERR_MODEL_NOT_FOUND",
      field: "model",
    });
    expect(e.httpStatus).toBe(404);
    expect(e.grpcStatus).toBe(5);
  });
});
