/**
 * The prediction plumbing Spark's model base classes share (`PredictionModel`, `ClassificationModel`,
 * `ProbabilisticClassificationModel`; `../shared/docs/sparkml-format.md` §3), so each model loader only supplies its
 * math (`predictRaw`, `raw2probabilityInPlace`, overrides) and gets a `LoadedStage` whose `transform` adds Spark's
 * output columns in Spark's order (rawPrediction, probability, prediction), with Spark's rules for which column is
 * derived from which and for `thresholds`.
 *
 * Column names come from the params `featuresCol`, `predictionCol`, `rawPredictionCol`, `probabilityCol` (Spark's
 * defaults when the metadata omits them); an empty name disables that output, as in Spark.
 */
import { MlshipError } from "../../core/index.js";
import type { ColumnInfo, Frame, FrameColumn, LoadedStage, SparkVector, StageContext } from "./types.js";
import { argmax, vectorSize } from "./vectors.js";

export { argmax } from "./vectors.js";

/** A classifier's math for one row. Only `numClasses`, `numFeatures` and `predictRaw` are required. */
export interface ClassifierScorer {
  readonly numClasses: number;
  readonly numFeatures: number;
  /** Spark's `predictRaw`: a FRESH array of length `numClasses` (it becomes the row's rawPrediction vector). */
  predictRaw(features: SparkVector): Float64Array;
  /**
   * Spark's `raw2probabilityInPlace`: may overwrite and return its argument (callers always pass a copy). Present
   * makes the model probabilistic (a `probability` output and `thresholds` handling); absent, the model is a plain
   * `ClassificationModel` (LinearSVC) with rawPrediction and prediction only.
   */
  raw2probabilityInPlace?(raw: Float64Array): Float64Array;
  /** Override of `raw2prediction` (default: §3's rule). Must not modify `raw` (it is the output vector). */
  raw2prediction?(raw: Float64Array): number;
  /** Override of `probability2prediction` (default: argmax, or argmax of p/t with `thresholds`). */
  probability2prediction?(probability: Float64Array): number;
  /** Override of `predict` (used only when rawPrediction and probability outputs are both disabled). */
  predict?(features: SparkVector): number;
}

/** A model with a single `prediction` output (regressors, KMeans): Spark's `PredictionModel`. */
export interface PredictorScorer {
  readonly numFeatures: number;
  predict(features: SparkVector): number;
}

/** Output/input column names of a prediction model (empty string = output disabled). */
export interface PredictionColumns {
  readonly featuresCol: string;
  readonly predictionCol: string;
  readonly rawPredictionCol: string;
  readonly probabilityCol: string;
}

/** The column params with Spark's defaults (`features`, `prediction`, `rawPrediction`, `probability`). */
export function predictionColumns(context: StageContext): PredictionColumns {
  return {
    featuresCol: stringParam(context, "featuresCol", "features"),
    predictionCol: stringParam(context, "predictionCol", "prediction"),
    rawPredictionCol: stringParam(context, "rawPredictionCol", "rawPrediction"),
    probabilityCol: stringParam(context, "probabilityCol", "probability"),
  };
}

/**
 * The `thresholds` param when it is defined (set, or a default in `defaultParamMap`), else undefined. Values
 * encoded as Spark writes doubles (`"Inf"`, `"NaN"` strings) are decoded. Throws MLSHIP_ERR_RUNTIME_LOAD when the
 * value is not an array of numbers.
 */
export function readThresholds(context: StageContext): Float64Array | undefined {
  const raw = context.param<unknown>("thresholds");
  if (raw === undefined || raw === null) return undefined;
  if (!Array.isArray(raw)) {
    throw new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", `${context.metadata.uid}: param thresholds is not an array`, {
      field: "thresholds",
    });
  }
  return Float64Array.from(raw, (value: unknown) => sparkDouble(value, context, "thresholds"));
}

/** A JSON-encoded Spark `DoubleParam` value (number, or `"NaN"`, `"Inf"`, `"-Inf"`). */
export function sparkDouble(value: unknown, context: StageContext, name: string): number {
  if (typeof value === "number") return value;
  if (value === "NaN") return Number.NaN;
  if (value === "Inf") return Number.POSITIVE_INFINITY;
  if (value === "-Inf") return Number.NEGATIVE_INFINITY;
  throw new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", `${context.metadata.uid}: param ${name} holds ${JSON.stringify(value)}, not a number`, {
    field: name,
  });
}

/**
 * `ProbabilisticClassificationModel.probability2prediction` with thresholds: argmax of `p[i] / t[i]`, strict `>`
 * scan from -∞ (a `t = 0` class scores +∞; `0/0 = NaN` is never selected). Without thresholds: argmax.
 */
export function probabilityToPrediction(probability: ArrayLike<number>, thresholds?: ArrayLike<number>): number {
  if (thresholds === undefined) return argmax(probability);
  let best = 0;
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < probability.length; i++) {
    const scaled = (probability[i] as number) / (thresholds[i] as number);
    if (scaled > max) {
      max = scaled;
      best = i;
    }
  }
  return best;
}

/** Spark's `Utils.softmax` in place: subtract the max, exponentiate, divide by the sum. */
export function softmaxInPlace(values: Float64Array): Float64Array {
  let max = Number.NEGATIVE_INFINITY;
  for (const value of values) if (value > max) max = value;
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    const e = Math.exp((values[i] as number) - max);
    values[i] = e;
    sum += e;
  }
  for (let i = 0; i < values.length; i++) values[i] = (values[i] as number) / sum;
  return values;
}

/**
 * `ProbabilisticClassificationModel.normalizeToProbabilitiesInPlace` (Spark 3.x+): divide by the sum; a negative
 * value or a zero sum throws (MLSHIP_ERR_RUNTIME_INFERENCE), as Spark 3 does (2.x left an all-zero vector as is).
 */
export function normalizeToProbabilitiesInPlace(values: Float64Array): Float64Array {
  let sum = 0;
  for (const value of values) {
    if (value < 0) {
      throw new MlshipError("MLSHIP_ERR_RUNTIME_INFERENCE", `cannot normalize a vector with negative value ${value} to probabilities`);
    }
    sum += value;
  }
  if (sum === 0) throw new MlshipError("MLSHIP_ERR_RUNTIME_INFERENCE", "cannot normalize a vector whose values sum to 0 to probabilities");
  for (let i = 0; i < values.length; i++) values[i] = (values[i] as number) / sum;
  return values;
}

/**
 * The frame's `column` as feature vectors of length `numFeatures`. A missing column, a non-vector column, a null
 * cell or a vector of another length throws MLSHIP_ERR_INPUT_INVALID naming the column.
 */
export function readFeatureVectors(frame: Frame, column: string, numFeatures: number): readonly SparkVector[] {
  const found = frame.columns.get(column);
  if (found === undefined) {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `input column "${column}" is missing`, { field: column });
  }
  if (found.kind !== "vector") {
    throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `input column "${column}" must hold vectors, not ${found.kind}`, { field: column });
  }
  if (found.size !== undefined && found.size !== numFeatures) {
    throw new MlshipError(
      "MLSHIP_ERR_INPUT_INVALID",
      `input column "${column}" holds vectors of size ${found.size}; the model expects ${numFeatures} features`,
      { field: column },
    );
  }
  const vectors: SparkVector[] = new Array<SparkVector>(frame.rows);
  for (let row = 0; row < frame.rows; row++) {
    const vector = found.values[row];
    if (vector === null || vector === undefined) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `input column "${column}" is null at row ${row}`, { field: column });
    }
    const size = vectorSize(vector);
    if (size !== numFeatures) {
      throw new MlshipError(
        "MLSHIP_ERR_INPUT_INVALID",
        `input column "${column}" has a vector of size ${size} at row ${row}; the model expects ${numFeatures} features`,
        { field: column },
      );
    }
    vectors[row] = vector;
  }
  return vectors;
}

/** A new frame with `added` columns appended; a name the frame already has throws (Spark: "already exists"). */
export function appendColumns(frame: Frame, added: readonly (readonly [string, FrameColumn])[]): Frame {
  const columns = new Map(frame.columns);
  for (const [name, column] of added) {
    if (columns.has(name)) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `output column "${name}" already exists in the input`, { field: name });
    }
    columns.set(name, column);
  }
  return { rows: frame.rows, columns };
}

/**
 * A classification stage (Spark's `ClassificationModel`/`ProbabilisticClassificationModel.transform`):
 * rawPrediction = predictRaw(x); probability = raw2probability(copy of raw) when raw is enabled, else from x;
 * prediction = raw2prediction(raw) when raw is enabled, else probability2prediction(p) when probability is, else
 * predict(x). Defaults: raw2prediction = argmax(raw) without thresholds, else probability2prediction of the
 * probabilities; probability2prediction = `probabilityToPrediction(p, thresholds)`. `thresholds` (probabilistic
 * models only) must have `numClasses` entries (MLSHIP_ERR_RUNTIME_LOAD otherwise, checked at load where Spark checks
 * at transform).
 */
export function classifierStage(context: StageContext, scorer: ClassifierScorer): LoadedStage {
  const names = predictionColumns(context);
  const toProbability = scorer.raw2probabilityInPlace?.bind(scorer);
  const probabilistic = toProbability !== undefined;
  const thresholds = probabilistic ? readThresholds(context) : undefined;
  if (thresholds !== undefined && thresholds.length !== scorer.numClasses) {
    throw new MlshipError(
      "MLSHIP_ERR_RUNTIME_LOAD",
      `${context.metadata.uid}: thresholds has ${thresholds.length} entries but the model has ${scorer.numClasses} classes`,
      { field: "thresholds" },
    );
  }
  const probabilityCol = probabilistic ? names.probabilityCol : "";
  const probability2prediction =
    scorer.probability2prediction?.bind(scorer) ?? ((probability: Float64Array) => probabilityToPrediction(probability, thresholds));
  const raw2prediction =
    scorer.raw2prediction?.bind(scorer) ??
    ((raw: Float64Array) =>
      toProbability !== undefined && thresholds !== undefined ? probability2prediction(toProbability(Float64Array.from(raw))) : argmax(raw));
  const predict = scorer.predict?.bind(scorer) ?? ((features: SparkVector) => raw2prediction(scorer.predictRaw(features)));

  const inputs: ColumnInfo[] = [{ name: names.featuresCol, kind: "vector", size: scorer.numFeatures }];
  const outputs: ColumnInfo[] = [];
  if (names.rawPredictionCol !== "") outputs.push({ name: names.rawPredictionCol, kind: "vector", size: scorer.numClasses });
  if (probabilityCol !== "") outputs.push({ name: probabilityCol, kind: "vector", size: scorer.numClasses });
  if (names.predictionCol !== "") outputs.push({ name: names.predictionCol, kind: "double" });

  return {
    className: context.metadata.class,
    uid: context.metadata.uid,
    inputs,
    outputs,
    transform(frame: Frame): Frame {
      if (outputs.length === 0) return frame;
      const features = readFeatureVectors(frame, names.featuresCol, scorer.numFeatures);
      const rawValues: SparkVector[] | undefined = names.rawPredictionCol !== "" ? new Array<SparkVector>(frame.rows) : undefined;
      const probabilityValues: SparkVector[] | undefined = probabilityCol !== "" ? new Array<SparkVector>(frame.rows) : undefined;
      const predictions = names.predictionCol !== "" ? new Float64Array(frame.rows) : undefined;
      for (let row = 0; row < frame.rows; row++) {
        const x = features[row] as SparkVector;
        const raw = rawValues !== undefined ? scorer.predictRaw(x) : undefined;
        let probability: Float64Array | undefined;
        if (probabilityValues !== undefined && toProbability !== undefined) {
          probability = toProbability(raw !== undefined ? Float64Array.from(raw) : scorer.predictRaw(x));
          probabilityValues[row] = { type: "dense", values: probability };
        }
        if (raw !== undefined && rawValues !== undefined) rawValues[row] = { type: "dense", values: raw };
        if (predictions !== undefined) {
          predictions[row] =
            raw !== undefined ? raw2prediction(raw) : probability !== undefined ? probability2prediction(probability) : predict(x);
        }
      }
      const added: [string, FrameColumn][] = [];
      if (rawValues !== undefined) added.push([names.rawPredictionCol, { kind: "vector", values: rawValues, size: scorer.numClasses }]);
      if (probabilityValues !== undefined) added.push([probabilityCol, { kind: "vector", values: probabilityValues, size: scorer.numClasses }]);
      if (predictions !== undefined) added.push([names.predictionCol, { kind: "double", values: predictions }]);
      return appendColumns(frame, added);
    },
  };
}

/** A `PredictionModel` stage (regressors, KMeans): one double `predictionCol` (disabled when empty) from `featuresCol`. */
export function predictorStage(context: StageContext, scorer: PredictorScorer): LoadedStage {
  const names = predictionColumns(context);
  const outputs: ColumnInfo[] = names.predictionCol !== "" ? [{ name: names.predictionCol, kind: "double" }] : [];
  return {
    className: context.metadata.class,
    uid: context.metadata.uid,
    inputs: [{ name: names.featuresCol, kind: "vector", size: scorer.numFeatures }],
    outputs,
    transform(frame: Frame): Frame {
      if (outputs.length === 0) return frame;
      const features = readFeatureVectors(frame, names.featuresCol, scorer.numFeatures);
      const predictions = new Float64Array(frame.rows);
      for (let row = 0; row < frame.rows; row++) predictions[row] = scorer.predict(features[row] as SparkVector);
      return appendColumns(frame, [[names.predictionCol, { kind: "double", values: predictions }]]);
    },
  };
}

function stringParam(context: StageContext, name: string, fallback: string): string {
  const value = context.param<unknown>(name, fallback);
  if (typeof value !== "string") {
    throw new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", `${context.metadata.uid}: param ${name} is not a string`, { field: name });
  }
  return value;
}
