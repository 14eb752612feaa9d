/**
 * The contract of the `sparkml` runtime flavor (issue 8): a Spark ML saved model directory (`model.save(path)` or
 * `PipelineModel.save(path)`, layout in `../shared/docs/sparkml-format.md`) is loaded without a JVM and scored in
 * TypeScript, column by column, as Spark's `transform` does.
 *
 * Data flows as a columnar `Frame`. Each supported stage class has a `StageLoader` that reads the stage's metadata
 * (params) and `data/` Parquet rows and returns a `LoadedStage` whose `transform` adds its output columns. A
 * `PipelineModel` is a stage whose children are loaded from `stages/NN_uid/`. Unknown classes are refused by name.
 *
 * The flavor runs on the worker pool like ONNX: each worker loads the directory and scores tensors. The model's
 * inputs are the pipeline's input columns (what some stage reads and no earlier stage writes): a `double` column is
 * a float64 tensor [-1], a `string` column a string tensor [-1], a `vector` column a float64 tensor [-1, size]. Its
 * outputs are Spark's output columns of the last stage (`prediction` float64 [-1]; `probability`, `rawPrediction`
 * float64 [-1, k]; a transformer's vector output float64 [-1, size]).
 */

/** `org.apache.spark.ml.linalg.Vector` (VectorUDT), dense or sparse. */
export type SparkVector =
  | { readonly type: "dense"; readonly values: Float64Array }
  | { readonly type: "sparse"; readonly size: number; readonly indices: Int32Array; readonly values: Float64Array };

/** `org.apache.spark.ml.linalg.Matrix` (MatrixUDT), as stored; `values` column-major unless `isTransposed`. */
export type SparkMatrix =
  | { readonly type: "dense"; readonly numRows: number; readonly numCols: number; readonly values: Float64Array; readonly isTransposed: boolean }
  | {
      readonly type: "sparse";
      readonly numRows: number;
      readonly numCols: number;
      readonly colPtrs: Int32Array;
      readonly rowIndices: Int32Array;
      readonly values: Float64Array;
      readonly isTransposed: boolean;
    };

/** One column of a frame. `nulls[i] === 1` marks a null cell (Spark null, distinct from NaN). */
export type FrameColumn =
  | { readonly kind: "double"; readonly values: Float64Array; readonly nulls?: Uint8Array }
  | { readonly kind: "string"; readonly values: readonly (string | null)[] }
  | { readonly kind: "vector"; readonly values: readonly (SparkVector | null)[]; readonly size?: number }
  /** `array<string>` (Tokenizer's output). */
  | { readonly kind: "strings"; readonly values: readonly (readonly string[] | null)[] };

export type ColumnKind = FrameColumn["kind"];

/** Rows of a DataFrame, by column. Stages never modify a frame: `transform` returns a new one with more columns. */
export interface Frame {
  readonly rows: number;
  readonly columns: ReadonlyMap<string, FrameColumn>;
}

/** What a stage reads or writes: the column's name and kind (and size for vectors, when known). */
export interface ColumnInfo {
  name: string;
  kind: ColumnKind;
  /** Vector length, when the stage knows it (VectorAssembler output, a model's numFeatures). */
  size?: number;
}

/** `metadata/part-00000`: one line of JSON. */
export interface StageMetadata {
  class: string;
  uid: string;
  sparkVersion: string;
  timestamp?: number;
  /** Params set explicitly. */
  paramMap: Record<string, unknown>;
  /** Defaults (Spark 2.4+ writes them; older releases do not: the loader supplies Spark's documented defaults). */
  defaultParamMap?: Record<string, unknown>;
}

/** What a stage loader gets. */
export interface StageContext {
  /** Absolute path of the stage's directory. */
  readonly dir: string;
  readonly metadata: StageMetadata;
  /** `paramMap[name]`, else `defaultParamMap[name]`, else `fallback` (Spark's default for releases that omit it). */
  param<T>(name: string, fallback?: T): T | undefined;
  /**
   * Rows of the Parquet dataset in `<dir>/<sub>` (default `data`): every `part-*.parquet` file in part order, empty
   * parts included, `_`/`.` files ignored. Vector and matrix structs are decoded to `SparkVector`/`SparkMatrix`.
   */
  readParquet(sub?: string): Promise<Record<string, unknown>[]>;
  /** Loads a nested stage directory (a PipelineModel's `stages/NN_uid`, an ensemble's trees are not stages). */
  loadStage(dir: string): Promise<LoadedStage>;
}

export interface LoadedStage {
  readonly className: string;
  readonly uid: string;
  /** Columns it reads; a pipeline's inputs are those no earlier stage writes. */
  readonly inputs: readonly ColumnInfo[];
  /** Columns it adds. */
  readonly outputs: readonly ColumnInfo[];
  /**
   * Adds the outputs to `frame`. A missing input column, or a value the stage cannot take (an unseen label with
   * handleInvalid `error`, a vector of the wrong size), throws MlshipError MLSHIP_ERR_INPUT_INVALID naming the column.
   */
  transform(frame: Frame): Frame;
}

export type StageLoader = (context: StageContext) => Promise<LoadedStage>;

/** Supported classes: the fully qualified Spark class name (and any older name of it) -> its loader. */
export type StageLoaders = Readonly<Record<string, StageLoader>>;
