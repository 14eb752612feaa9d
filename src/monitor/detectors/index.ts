/** Concept-drift detectors for the per-prediction error stream (River ports): ADWIN, Page-Hinkley, DDM, EDDM. */
export * from "./types.js";
export { Adwin, ADWIN_DEFAULTS, adwinParams } from "./adwin.js";
export type { AdwinParams } from "./adwin.js";
export { PageHinkley, PAGE_HINKLEY_DEFAULTS, PAGE_HINKLEY_MODES, pageHinkleyParams } from "./page-hinkley.js";
export type { PageHinkleyMode, PageHinkleyParams } from "./page-hinkley.js";
export { Ddm, DDM_DEFAULTS, ddmParams } from "./ddm.js";
export type { DdmParams } from "./ddm.js";
export { Eddm, EDDM_DEFAULTS, eddmParams } from "./eddm.js";
export type { EddmParams } from "./eddm.js";
export { createDetector, restoreDetector } from "./factory.js";
export type { DetectorSpec } from "./factory.js";
