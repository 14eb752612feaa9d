/** Types of traffic.mjs for TypeScript callers (the end-to-end test). */
export declare const PROD_CSV: string;
export declare const CLASS_LABELS: readonly ["malignant", "benign"];

export interface FixtureRow {
  features: number[];
  /** 0 (malignant) or 1 (benign). */
  label: number;
}

export declare function readRows(file?: string): { columns: string[]; rows: FixtureRow[] };

export interface Answer {
  key: string;
  requestId: string | null;
  /** The version that answered (`mlship-model-version`). */
  version: number;
  /** `champion` or `challenger` during a rollout (`mlship-variant`), else null. */
  variant: string | null;
  /** The predicted class label. */
  predicted: string;
  /** The outcome posted for it. */
  actual: string;
}

export interface FeedbackCounts {
  accepted: number;
  matched: number;
  pending: number;
  late: number;
  rejected: Array<{ index: number; field: string; message: string }>;
}

export interface TrafficOptions {
  url: string;
  model?: string;
  alias?: string;
  count: number;
  offset?: number;
  prefix?: string;
  flip?: boolean;
  outcomes?: boolean;
  concurrency?: number;
  file?: string;
}

export declare function sendTraffic(options: TrafficOptions): Promise<{ answers: Answer[]; feedback: FeedbackCounts | null }>;
export declare function summarise(answers: readonly Answer[]): Record<string, { answered: number; correct: number }>;
