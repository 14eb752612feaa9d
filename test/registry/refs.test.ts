import { describe, expect, it } from "vitest";
import { MlshipError } from "../../src/core/index.js";
import {
  deploymentStack,
  formatModelRef,
  isReservedAlias,
  parseModelRef,
  rollbackTarget,
  validateAliasName,
  validateModelName,
} from "../../src/registry/index.js";

function codeOf(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(MlshipError);
    return { code: (error as MlshipError).code, message: (error as MlshipError).message };
  }
  throw new Error("expected a throw");
}

describe("parseModelRef", () => {
  it("parses every documented form", () => {
    expect(parseModelRef("iris")).toEqual({ name: "iris" });
    expect(parseModelRef("iris@3")).toEqual({ name: "iris", version: 3 });
    expect(parseModelRef("iris@v3")).toEqual({ name: "iris", version: 3 });
    expect(parseModelRef("iris@production")).toEqual({ name: "iris", alias: "production" });
    expect(parseModelRef("iris@latest")).toEqual({ name: "iris", alias: "latest" });
    expect(parseModelRef("models:/iris@production")).toEqual({ name: "iris", alias: "production" });
    expect(parseModelRef("models:/iris/3")).toEqual({ name: "iris", version: 3 });
    expect(parseModelRef("models:/iris/latest")).toEqual({ name: "iris", alias: "latest" });
    expect(parseModelRef("models:/iris")).toEqual({ name: "iris" });
    expect(parseModelRef("models:///iris@staging")).toEqual({ name: "iris", alias: "staging" });
    expect(parseModelRef("breast-cancer.v2_final@canary-1")).toEqual({ name: "breast-cancer.v2_final", alias: "canary-1" });
    expect(parseModelRef("9lives@12")).toEqual({ name: "9lives", version: 12 });
  });

  it("refuses malformed references with MODEL_REF_INVALID naming the text", () => {
    for (const bad of [
      "",
      "@3",
      "iris@",
      "iris@0",
      "iris@-1",
      "iris@a b",
      "iris@@x",
      "iris@x@y",
      "has space",
      "-iris",
      "iris/3",
      "models:/",
      "models:/iris/",
      "models:/iris/staging",
      "models:/iris/3/4",
      "iris@99999999999999999999",
    ]) {
      const { code, message } = codeOf(() => parseModelRef(bad));
      expect(code, bad).toBe("MLSHIP_ERR_MODEL_REF_INVALID");
      expect(message, bad).toContain(`"${bad}"`);
      if (bad === "iris@99999999999999999999") expect(message).toContain("too large");
    }
  });

  it("formats references back to their canonical text", () => {
    for (const text of ["iris", "iris@3", "iris@production"]) expect(formatModelRef(parseModelRef(text))).toBe(text);
    expect(formatModelRef(parseModelRef("models:/iris/7"))).toBe("iris@7");
  });
});

describe("names", () => {
  it("validates alias names and refuses the reserved ones", () => {
    for (const ok of ["production", "staging", "v2beta", "canary-1", "blue_green", "A.b", "x"]) {
      expect(validateAliasName(ok)).toBe(ok);
      expect(isReservedAlias(ok)).toBe(false);
    }
    for (const reserved of ["3", "0042", "v1", "V9", "latest", "Latest"]) {
      expect(isReservedAlias(reserved)).toBe(true);
      const { code, message } = codeOf(() => validateAliasName(reserved));
      expect(code).toBe("MLSHIP_ERR_REGISTRY_ALIAS_INVALID");
      expect(message).toContain("reserved");
    }
    for (const bad of ["", "has space", "-x", ".x", "a/b", "a@b", "é"]) {
      expect(codeOf(() => validateAliasName(bad)).code).toBe("MLSHIP_ERR_REGISTRY_ALIAS_INVALID");
    }
  });

  it("validates model names", () => {
    expect(validateModelName("breast-cancer")).toBe("breast-cancer");
    for (const bad of ["", " x", "x y", "_x", "a:b", "x".repeat(201)]) {
      expect(codeOf(() => validateModelName(bad)).code).toBe("MLSHIP_ERR_REGISTRY_NAME_INVALID");
    }
  });
});

describe("rollback history", () => {
  const set = (to: number) => ({ action: "set" as const, to });
  const rb = (to: number) => ({ action: "rollback" as const, to });
  const del = { action: "delete" as const, to: null };
  const all = () => true;

  it("replays sets as pushes and rollbacks as pops", () => {
    expect(deploymentStack([set(1), set(2), set(2), set(3)])).toEqual([1, 2, 3]);
    expect(deploymentStack([set(1), set(2), set(3), rb(2)])).toEqual([1, 2]);
    expect(deploymentStack([set(1), set(2), set(3), rb(1)])).toEqual([1]);
    expect(deploymentStack([set(1), del, set(2)])).toEqual([1, 2]);
  });

  it("walks back instead of toggling, skips unusable targets and runs out", () => {
    const history = [set(1), set(2), set(3)];
    expect(rollbackTarget(history, 3, all)).toBe(2);
    expect(rollbackTarget([...history, rb(2)], 2, all)).toBe(1);
    expect(rollbackTarget([...history, rb(2), rb(1)], 1, all)).toBeUndefined();
    expect(rollbackTarget(history, 3, (v) => v !== 2)).toBe(1);
    expect(rollbackTarget([set(1), set(2), set(1)], 1, all)).toBe(2);
    expect(rollbackTarget([set(5)], 5, all)).toBeUndefined();
    expect(rollbackTarget([], 5, all)).toBeUndefined();
  });
});
