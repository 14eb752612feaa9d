import type { DType } from "../core/index.js";
import type { FeedbackConfig } from "./feedback-config.js";
import type { MonitorConfig } from "./monitor-config.js";

/** A named tensor in a model signature. `-1` marks a variable dimension (the batch axis first). */
export interface TensorSpec {
  name: string;
  dtype: DType;
  shape: number[];
  /**
   * `string` tensors only. `json` (outputs): elements are JSON texts (a custom wrapper's object values, e.g.
   * `{class: p}`); MLflow responses embed them as objects, V2 sends BYTES with `parameters.content_type: "json"`.
   * `base64` (inputs): raw BYTES elements (V2 binary extension, gRPC raw contents) reach the model as base64 text
   * instead of UTF-8 text, so binary payloads such as images survive.
   */
  content_type?: "json" | "base64";
}

/** One named column of tabular input; columns feed one input tensor in order. */
export interface ColumnSpec {
  name: string;
  /** The column's own type in the data, if declared (values are cast to the tensor dtype anyway). */
  dtype?: DType;
}

export interface Signature {
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /** Tabular models: the ordered columns that make up the trailing dimensions of `columnsInput`. */
  columns?: ColumnSpec[];
  /** Which input the columns feed; defaults to inputs[0]. */
  columnsInput?: string;
}

export type ResizeKernel = "nearest" | "area" | "linear" | "cubic" | "lanczos3";

/** Pre-processing runs on request records/tensors before the model. */
export type PreprocessStep =
  /** Keep and order these columns (names), dropping the rest. */
  | { type: "select_columns"; columns: string[] }
  /** Cast these columns (all when omitted) to a dtype before they are packed into the tensor. */
  | { type: "cast"; dtype: DType; columns?: string[] }
  /**
   * Decode an encoded image (PNG/JPEG/WebP bytes, V2 BYTES or base64) with sharp, resize, scale and normalise:
   * value = (pixel * scale - mean[c]) / std[c], laid out as NCHW or NHWC. The request carries the encoded images
   * in an input named `input` (BYTES, shape [-1]); the decoded tensor feeds the model input `target`.
   */
  | {
      type: "image";
      input: string;
      /** The model input the decoded tensor feeds; defaults to signature.inputs[0]. */
      target?: string;
      width: number;
      height: number;
      channels: 1 | 3;
      resize: ResizeKernel;
      scale: number;
      mean?: number[];
      std?: number[];
      layout: "NCHW" | "NHWC";
    };

/** Post-processing runs on the model's named outputs; each step adds (or replaces) an output named `as`. */
export type PostprocessStep =
  | { type: "softmax"; output: string; as?: string }
  | { type: "argmax"; output: string; as?: string }
  | { type: "labels"; output: string; labels: string[]; as?: string }
  | { type: "top_k"; output: string; k: number; labels?: string[]; as?: string };

export interface PackageMetadata {
  framework?: string;
  created_at?: string;
  params?: Record<string, string | number | boolean>;
  metrics?: Record<string, number>;
  tags?: Record<string, string>;
  /** Where the model came from: e.g. an MLflow run id and URI. */
  source_run?: { id?: string; uri?: string; system?: string };
  /** sha256 of the training data file(s), for lineage. */
  training_data_fingerprint?: string;
  /** Class labels in output order, when known. */
  class_labels?: string[];
  description?: string;
  /** The registered version this package was derived from, and how (written by `mlship models optimize`). */
  lineage?: PackageLineage;
}

/** `metadata.lineage`: where a derived package comes from (see docs/model-package.md "Metadata"). */
export interface PackageLineage {
  /** The registered version it was derived from: model name, version number and that version's package digest. */
  parent?: { model: string; version: number; digest?: string };
  /** What derived it, as a command line (`mlship models optimize bc@1 --quantize int8-dynamic`). */
  derived_by?: string;
  /** The settings of the transformation (for an optimization: method, per_channel, calibration_rows...). */
  transform?: Record<string, string | number | boolean | string[]>;
}

/** The `mlship.yaml` manifest at a package root (spec: docs/model-package.md). */
export interface Manifest {
  format_version: 1;
  flavor: "onnx" | "sparkml" | "custom";
  /** Paths relative to the package root. `model` is the artifact the runtime loads. */
  files: { model: string } & Record<string, string>;
  signature: Signature;
  /** Path (relative) of a JSON file holding an example request in MLflow `dataframe_split` or `inputs` form. */
  input_example?: string;
  preprocess: PreprocessStep[];
  postprocess: PostprocessStep[];
  metadata: PackageMetadata;
  /** How the version is served; each field can be overridden at runtime in the registry (version settings). */
  serving?: ServingSettings;
  /** Data-quality rules and drift settings for monitoring (see docs/model-package.md "Monitoring"). */
  monitor?: MonitorConfig;
  /** What the feedback loop needs to measure live quality (see docs/model-package.md "Feedback"). */
  feedback?: FeedbackConfig;
  /** Flavor `custom` only: the wrapper's source, config and limits (see docs/custom-models.md). */
  custom?: CustomSection;
}

/** `custom:` in mlship.yaml. `files.model` is the bundled module that `mlship package build` writes from `entry`. */
export interface CustomSection {
  /** The wrapper's TypeScript/JavaScript source (relative), bundled by `mlship package build` into `files.model`. */
  entry?: string;
  /** Free-form settings handed to the wrapper as `context.config`. */
  config?: Record<string, unknown>;
  /** Most milliseconds one `predict` call may take; past it the wrapper process is killed and restarted. Default 30000. */
  timeout_ms?: number;
  /** Heap limit of the wrapper process (MiB); past it the process dies and is restarted. Default 512. */
  memory_mb?: number;
  /** Extra absolute paths the wrapper may read (the package folder is always readable). Default none. */
  allow_read?: string[];
  /** Give the wrapper a scratch folder it may write to. Default false (no writes anywhere). */
  allow_write?: boolean;
}

/**
 * Serving settings of a model version. Effective value = server defaults <- package `serving` <- registry override
 * (`Registry.setVersionSettings`), merged field by field.
 */
export interface ServingSettings {
  batching?: {
    /** Off for models without a batch axis whatever this says. */
    enabled?: boolean;
    /** Most rows one merged run may hold. */
    max_batch_size?: number;
    /** Hard bound on the wait a request may spend for others to join its batch (milliseconds). */
    max_delay_ms?: number;
    /** Batch sizes to prefer: a batch that reaches one is sent at once. */
    preferred_batch_sizes?: number[];
  };
  cache?: {
    /** Prediction cache for this version (default on when the server has a cache). */
    enabled?: boolean;
    /** Entry lifetime (seconds); server default when unset. */
    ttl_seconds?: number;
  };
  /** Most requests queued or running for this version; beyond it requests get 429 with Retry-After. */
  max_queue?: number;
  /** Per-request deadline (milliseconds) from arrival to answer; 503 past it. */
  timeout_ms?: number;
  /**
   * Most rows one online request may carry; beyond it the request is refused with 413 MLSHIP_ERR_INPUT_TOO_LARGE
   * before it is queued. Batch jobs and stream pipelines choose their own chunk sizes and are not bound by it.
   */
  max_request_rows?: number;
  /** Worker instances that load this version (default: every worker). */
  instances?: number;
}

/** A package on disk: a folder with `mlship.yaml` and the files it names. */
export interface ModelPackage {
  root: string;
  manifest: Manifest;
}

/** What `inspectOnnx` reads from an ONNX file. */
export interface OnnxGraphInfo {
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /** Default-domain (ai.onnx) opset version, when the file declares one. */
  opset?: number;
  /** `producer_name producer_version` from the ModelProto, when set. */
  producer?: string;
  irVersion?: number;
}

/** Options of `importModel`; every override is applied on top of what the source itself says. */
export interface ImportOptions {
  /** A folder to write the package into; created if missing, must be empty if present. */
  stagingDir: string;
  /** Ordered column names feeding the columns input (`--columns a,b,c`). */
  columns?: string[];
  /** A CSV file whose header gives the columns (`--columns-from train.csv`), minus `labelColumn`. */
  columnsFromCsv?: string;
  labelColumn?: string;
  description?: string;
  tags?: Record<string, string>;
  metrics?: Record<string, number>;
  params?: Record<string, string | number | boolean>;
  /** A JSON file with an example request (MLflow `dataframe_split`/`inputs`/... form). */
  inputExample?: string;
  classLabels?: string[];
  /** A training data file; its sha256 becomes `metadata.training_data_fingerprint`. */
  trainingData?: string;
}

/** The image pre-processing step (see `PreprocessStep`). */
export type ImageStep = Extract<PreprocessStep, { type: "image" }>;
