import { MlshipError } from "../../core/index.js";
import { Adwin } from "./adwin.js";
import type { AdwinParams } from "./adwin.js";
import { Ddm } from "./ddm.js";
import type { DdmParams } from "./ddm.js";
import { Eddm } from "./eddm.js";
import type { EddmParams } from "./eddm.js";
import { PageHinkley } from "./page-hinkley.js";
import type { PageHinkleyParams } from "./page-hinkley.js";
import { DETECTOR_KINDS } from "./types.js";
import type { DetectorKind, DriftDetector } from "./types.js";

/** A detector and its parameters as a config file or a request gives them (River's parameter names). */
export type DetectorSpec =
  | ({ kind: "adwin" } & Partial<AdwinParams>)
  | ({ kind: "page_hinkley" } & Partial<PageHinkleyParams>)
  | ({ kind: "ddm" } & Partial<DdmParams>)
  | ({ kind: "eddm" } & Partial<EddmParams>);

function kindOf(value: unknown, field: string): DetectorKind {
  if (typeof value !== "string" || !(DETECTOR_KINDS as readonly string[]).includes(value)) {
    throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `${field} must be one of ${DETECTOR_KINDS.join(", ")}, got ${JSON.stringify(value)}`, {
      field,
    });
  }
  return value as DetectorKind;
}

/**
 * Builds a detector from a spec, e.g. `{ kind: "adwin", delta: 0.002 }`; missing parameters take River's defaults,
 * and an unknown kind, an unknown parameter or a bad value throws MLSHIP_ERR_CONFIG_INVALID naming the field.
 * Takes `unknown` because specs come from YAML/JSON.
 */
export function createDetector(spec: DetectorSpec | Record<string, unknown>): DriftDetector {
  if (typeof spec !== "object" || spec === null || Array.isArray(spec)) {
    throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", "a drift detector spec must be an object with a kind", { field: "kind" });
  }
  const { kind, ...params } = spec as Record<string, unknown>;
  switch (kindOf(kind, "kind")) {
    case "adwin":
      return new Adwin(params);
    case "page_hinkley":
      return new PageHinkley(params);
    case "ddm":
      return new Ddm(params);
    case "eddm":
      return new Eddm(params);
  }
}

/** Brings back a detector from `serialize()` output (after JSON), exactly where it was. */
export function restoreDetector(snapshot: unknown): DriftDetector {
  if (typeof snapshot !== "object" || snapshot === null || Array.isArray(snapshot)) {
    throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", "a detector snapshot must be an object", { field: "snapshot" });
  }
  switch (kindOf((snapshot as Record<string, unknown>).kind, "kind")) {
    case "adwin":
      return Adwin.restore(snapshot);
    case "page_hinkley":
      return PageHinkley.restore(snapshot);
    case "ddm":
      return Ddm.restore(snapshot);
    case "eddm":
      return Eddm.restore(snapshot);
  }
}
