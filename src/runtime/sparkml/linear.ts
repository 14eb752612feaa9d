/**
 * Linear, probabilistic, clustering and neural-network Spark ML models, scored natively
 * (`../shared/docs/sparkml-format.md` §4, §6): LogisticRegressionModel, LinearRegressionModel, LinearSVCModel,
 * NaiveBayesModel, KMeansModel, MultilayerPerceptronClassificationModel.
 *
 * Each loader reads the stage's `data/` row(s) in every layout Spark releases wrote (§10) and hands the per-row math
 * to the shared plumbing of `predict.ts`, which adds Spark's output columns with Spark's rules.
 */
import { MlshipError } from "../../core/index.js";
import { matrixToRows } from "./io.js";
import { classifierStage, predictionColumns, predictorStage, readThresholds, sparkDouble, softmaxInPlace } from "./predict.js";
import type { LoadedStage, SparkMatrix, SparkVector, StageContext, StageLoaders } from "./types.js";
import { denseValues, dot, forEachActive, isSparkVector, vectorSize } from "./vectors.js";

const CLASSIFICATION = "org.apache.spark.ml.classification";

// ---------------------------------------------------------------------------------------------------------------
// data/ row access

/** The single row of a one-row `data/` dataset (Spark writes these with `repartition(1)`). */
async function singleDataRow(context: StageContext): Promise<Record<string, unknown>> {
  const rows = await context.readParquet();
  const row = rows[0];
  if (row === undefined) throw loadError(context, "data/ holds no rows");
  return row;
}

function loadError(context: StageContext, message: string, field?: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_RUNTIME_LOAD", `${context.metadata.class} ${context.metadata.uid}: ${message}`, {
    field: field ?? context.dir,
  });
}

function rowNumber(context: StageContext, row: Record<string, unknown>, column: string): number {
  const value = row[column];
  if (typeof value === "number") return value;
  if (typeof value === "bigint") return Number(value);
  throw loadError(context, `data column "${column}" is not a number`, column);
}

function rowVector(context: StageContext, row: Record<string, unknown>, column: string): SparkVector {
  const value = row[column];
  if (!isSparkVector(value)) throw loadError(context, `data column "${column}" is not a vector`, column);
  return value;
}

function rowMatrix(context: StageContext, row: Record<string, unknown>, column: string): SparkMatrix {
  const value = row[column];
  if (value === null || typeof value !== "object") throw loadError(context, `data column "${column}" is not a matrix`, column);
  const matrix = value as Partial<SparkMatrix>;
  if (
    (matrix.type !== "dense" && matrix.type !== "sparse") ||
    typeof matrix.numRows !== "number" ||
    typeof matrix.numCols !== "number" ||
    !(matrix.values instanceof Float64Array)
  ) {
    throw loadError(context, `data column "${column}" is not a matrix`, column);
  }
  const checked = value as SparkMatrix;
  if (checked.type === "dense" && checked.values.length !== checked.numRows * checked.numCols) {
    throw loadError(context, `data column "${column}": dense ${checked.numRows}x${checked.numCols} matrix has ${checked.values.length} values`, column);
  }
  if (checked.type === "sparse") {
    const outer = checked.isTransposed ? checked.numRows : checked.numCols;
    const inner = checked.isTransposed ? checked.numCols : checked.numRows;
    const pointersOk = checked.colPtrs.length === outer + 1 && checked.colPtrs[outer] === checked.values.length;
    const indicesOk = checked.rowIndices.length === checked.values.length && checked.rowIndices.every((index) => index >= 0 && index < inner);
    if (!pointersOk || !indicesOk) throw loadError(context, `data column "${column}" is a malformed sparse matrix`, column);
  }
  return checked;
}

/** A matrix as one dense row-major Float64Array (`A[i][j]` at `i * numCols + j`). */
function rowMajor(matrix: SparkMatrix): Float64Array {
  const out = new Float64Array(matrix.numRows * matrix.numCols);
  matrixToRows(matrix).forEach((row, i) => out.set(row, i * matrix.numCols));
  return out;
}

/** `rows · x + base` for a row-major `numRows x numCols` matrix (Spark's `gemv` into a copy of `base`). */
function affine(matrix: Float64Array, numRows: number, numCols: number, x: SparkVector, base: ArrayLike<number>): Float64Array {
  const out = new Float64Array(numRows);
  for (let i = 0; i < numRows; i++) out[i] = (base[i] as number) + dot(x, matrix.subarray(i * numCols, (i + 1) * numCols));
  return out;
}

function sigmoid(z: number): number {
  return 1 / (1 + Math.exp(-z));
}

function inputError(column: string, message: string): MlshipError {
  return new MlshipError("MLSHIP_ERR_INPUT_INVALID", `input column "${column}": ${message}`, { field: column });
}

function numberParam(context: StageContext, name: string, fallback: number): number {
  return sparkDouble(context.param<unknown>(name, fallback), context, name);
}

// ---------------------------------------------------------------------------------------------------------------
// LogisticRegressionModel (§4.1)

async function loadLogisticRegression(context: StageContext): Promise<LoadedStage> {
  const row = await singleDataRow(context);
  let numClasses: number;
  let coefficients: Float64Array;
  let intercepts: Float64Array;
  let numFeatures: number;
  let isMultinomial: boolean;
  if (row.coefficientMatrix !== undefined) {
    // Spark 2.1+: coefficientMatrix (K x F, or 1 x F row-major for binomial) and interceptVector.
    const matrix = rowMatrix(context, row, "coefficientMatrix");
    const interceptVector = rowVector(context, row, "interceptVector");
    numClasses = rowNumber(context, row, "numClasses");
    isMultinomial = row.isMultinomial === true;
    numFeatures = matrix.numCols;
    coefficients = rowMajor(matrix);
    intercepts = Float64Array.from(denseValues(interceptVector));
    if (intercepts.length !== matrix.numRows) {
      throw loadError(context, `coefficientMatrix has ${matrix.numRows} rows but interceptVector has ${intercepts.length} values`);
    }
    if (!isMultinomial && matrix.numRows !== 1) throw loadError(context, `binomial coefficientMatrix has ${matrix.numRows} rows, expected 1`);
    if (isMultinomial && matrix.numRows !== numClasses) {
      throw loadError(context, `multinomial coefficientMatrix has ${matrix.numRows} rows for ${numClasses} classes`);
    }
  } else {
    // Spark <= 2.0: binomial only, `intercept` + `coefficients`.
    const vector = rowVector(context, row, "coefficients");
    numClasses = rowNumber(context, row, "numClasses");
    isMultinomial = false;
    numFeatures = vectorSize(vector);
    coefficients = Float64Array.from(denseValues(vector));
    intercepts = Float64Array.of(rowNumber(context, row, "intercept"));
  }

  if (isMultinomial) {
    return classifierStage(context, {
      numClasses,
      numFeatures,
      predictRaw: (x) => affine(coefficients, numClasses, numFeatures, x, intercepts),
      raw2probabilityInPlace: softmaxInPlace,
    });
  }

  if (numClasses !== 2) throw loadError(context, `a binomial model must have 2 classes, not ${numClasses}`);
  const intercept = intercepts[0] as number;
  const threshold = binomialThreshold(context);
  // Spark's `_binaryThresholds`: the probability threshold and its logit (the margin threshold).
  const rawThreshold = threshold === 0 ? Number.NEGATIVE_INFINITY : threshold === 1 ? Number.POSITIVE_INFINITY : Math.log(threshold / (1 - threshold));
  const margin = (x: SparkVector): number => dot(x, coefficients) + intercept;
  return classifierStage(context, {
    numClasses: 2,
    numFeatures,
    predictRaw: (x) => {
      const m = margin(x);
      return Float64Array.of(-m, m);
    },
    raw2probabilityInPlace: (raw) => {
      raw[0] = sigmoid(raw[0] as number);
      raw[1] = 1 - (raw[0] as number);
      return raw;
    },
    raw2prediction: (raw) => ((raw[1] as number) > rawThreshold ? 1 : 0),
    probability2prediction: (probability) => ((probability[1] as number) > threshold ? 1 : 0),
    predict: (x) => (sigmoid(margin(x)) > threshold ? 1 : 0),
  });
}

/**
 * LogisticRegressionParams.getThreshold: from `thresholds` when it is set (length 2, `1 / (1 + t0 / t1)`), else
 * `threshold` (default 0.5).
 */
function binomialThreshold(context: StageContext): number {
  const thresholds = Object.hasOwn(context.metadata.paramMap, "thresholds") ? readThresholds(context) : undefined;
  if (thresholds === undefined) return numberParam(context, "threshold", 0.5);
  if (thresholds.length !== 2) throw loadError(context, `a binomial model needs 2 thresholds, not ${thresholds.length}`, "thresholds");
  const [t0, t1] = [thresholds[0] as number, thresholds[1] as number];
  if (t0 === 0) return 1;
  if (t1 === 0) return 0;
  return 1 / (1 + t0 / t1);
}

// ---------------------------------------------------------------------------------------------------------------
// LinearRegressionModel (§4.2) and LinearSVCModel (§4.4)

async function loadLinearRegression(context: StageContext): Promise<LoadedStage> {
  const row = await singleDataRow(context);
  const coefficients = rowVector(context, row, "coefficients");
  const weights = Float64Array.from(denseValues(coefficients));
  const intercept = rowNumber(context, row, "intercept");
  return predictorStage(context, { numFeatures: weights.length, predict: (x) => dot(x, weights) + intercept });
}

async function loadLinearSVC(context: StageContext): Promise<LoadedStage> {
  const row = await singleDataRow(context);
  const weights = Float64Array.from(denseValues(rowVector(context, row, "coefficients")));
  const intercept = rowNumber(context, row, "intercept");
  // The threshold applies to the margin, not a probability; Spark's default is 0.0.
  const threshold = numberParam(context, "threshold", 0);
  const margin = (x: SparkVector): number => dot(x, weights) + intercept;
  return classifierStage(context, {
    numClasses: 2,
    numFeatures: weights.length,
    predictRaw: (x) => {
      const m = margin(x);
      return Float64Array.of(-m, m);
    },
    raw2prediction: (raw) => ((raw[1] as number) > threshold ? 1 : 0),
    predict: (x) => (margin(x) > threshold ? 1 : 0),
  });
}

// ---------------------------------------------------------------------------------------------------------------
// NaiveBayesModel (§4.5)

async function loadNaiveBayes(context: StageContext): Promise<LoadedStage> {
  const row = await singleDataRow(context);
  const pi = Float64Array.from(denseValues(rowVector(context, row, "pi")));
  const thetaMatrix = rowMatrix(context, row, "theta");
  const numClasses = thetaMatrix.numRows;
  const numFeatures = thetaMatrix.numCols;
  if (pi.length !== numClasses) throw loadError(context, `pi has ${pi.length} values but theta has ${numClasses} rows`);
  const theta = rowMajor(thetaMatrix);
  const modelType = context.param<unknown>("modelType", "multinomial");
  const { featuresCol } = predictionColumns(context);

  const requireNonNegative = (x: SparkVector): void => {
    forEachActive(x, (_, value) => {
      if (!(value >= 0)) throw inputError(featuresCol, `Naive Bayes requires nonnegative feature values but found ${value}`);
    });
  };

  let predictRaw: (x: SparkVector) => Float64Array;
  switch (modelType) {
    case "multinomial":
      predictRaw = (x) => {
        requireNonNegative(x);
        return affine(theta, numClasses, numFeatures, x, pi);
      };
      break;
    case "complement": {
      const zeros = new Float64Array(numClasses);
      predictRaw = (x) => {
        requireNonNegative(x);
        const scores = affine(theta, numClasses, numFeatures, x, zeros);
        // log-sum-exp with the max shifted out, so large scores do not overflow.
        let max = Number.NEGATIVE_INFINITY;
        for (const score of scores) if (score > max) max = score;
        let sumExp = 0;
        for (const score of scores) sumExp += Math.exp(score - max);
        const logSumExp = Math.log(sumExp) + max;
        for (let c = 0; c < numClasses; c++) scores[c] = (scores[c] as number) - logSumExp;
        return scores;
      };
      break;
    }
    case "bernoulli": {
      // raw_c = (pi_c + Σ_j log(1 - e^θcj)) + Σ_j x_j (θcj - log(1 - e^θcj))
      const thetaMinusNegTheta = new Float64Array(theta.length);
      const base = Float64Array.from(pi);
      for (let c = 0; c < numClasses; c++) {
        let negThetaSum = 0;
        for (let j = 0; j < numFeatures; j++) {
          const value = theta[c * numFeatures + j] as number;
          const negTheta = Math.log1p(-Math.exp(value));
          thetaMinusNegTheta[c * numFeatures + j] = value - negTheta;
          negThetaSum += negTheta;
        }
        base[c] = (base[c] as number) + negThetaSum;
      }
      predictRaw = (x) => {
        forEachActive(x, (_, value) => {
          if (value !== 0 && value !== 1) throw inputError(featuresCol, `Bernoulli naive Bayes requires 0 or 1 feature values but found ${value}`);
        });
        return affine(thetaMinusNegTheta, numClasses, numFeatures, x, base);
      };
      break;
    }
    case "gaussian": {
      const sigmaMatrix = rowMatrix(context, row, "sigma");
      if (sigmaMatrix.numRows !== numClasses || sigmaMatrix.numCols !== numFeatures) {
        throw loadError(context, `gaussian sigma is ${sigmaMatrix.numRows}x${sigmaMatrix.numCols}, theta is ${numClasses}x${numFeatures}`);
      }
      const sigma = rowMajor(sigmaMatrix);
      const logVarSum = new Float64Array(numClasses);
      for (let c = 0; c < numClasses; c++) {
        let sum = 0;
        for (let j = 0; j < numFeatures; j++) sum += Math.log(sigma[c * numFeatures + j] as number);
        logVarSum[c] = sum;
      }
      predictRaw = (x) => {
        const values = denseValues(x);
        const raw = new Float64Array(numClasses);
        for (let c = 0; c < numClasses; c++) {
          let s = 0;
          for (let j = 0; j < numFeatures; j++) {
            const d = (values[j] as number) - (theta[c * numFeatures + j] as number);
            s += (d * d) / (sigma[c * numFeatures + j] as number);
          }
          raw[c] = (pi[c] as number) - (s + (logVarSum[c] as number)) / 2;
        }
        return raw;
      };
      break;
    }
    default:
      throw loadError(context, `unsupported modelType ${JSON.stringify(modelType)}`, "modelType");
  }
  return classifierStage(context, { numClasses, numFeatures, predictRaw, raw2probabilityInPlace: softmaxInPlace });
}

// ---------------------------------------------------------------------------------------------------------------
// KMeansModel (§6.1)

async function loadKMeans(context: StageContext): Promise<LoadedStage> {
  const rows = await context.readParquet();
  let centers: SparkVector[];
  if (rows.length === 1 && Array.isArray(rows[0]?.clusterCenters)) {
    // Spark 1.6: one row holding every center.
    centers = (rows[0].clusterCenters as unknown[]).map((center, index) => {
      if (!isSparkVector(center)) throw loadError(context, `clusterCenters[${index}] is not a vector`, "clusterCenters");
      return center;
    });
  } else {
    // Spark 2.0+: one row per cluster, in no particular order.
    const indexed = rows.map((row) => ({ index: rowNumber(context, row, "clusterIdx"), center: rowVector(context, row, "clusterCenter") }));
    indexed.sort((a, b) => a.index - b.index);
    indexed.forEach((entry, position) => {
      if (entry.index !== position) throw loadError(context, `clusterIdx values are not 0..${indexed.length - 1}`, "clusterIdx");
    });
    centers = indexed.map((entry) => entry.center);
  }
  const first = centers[0];
  if (first === undefined) throw loadError(context, "data/ holds no cluster centers");
  const numFeatures = vectorSize(first);
  if (centers.some((center) => vectorSize(center) !== numFeatures)) throw loadError(context, "cluster centers differ in size");
  const dense = centers.map((center) => Float64Array.from(denseValues(center)));

  const distanceMeasure = context.param<unknown>("distanceMeasure", "euclidean");
  const { featuresCol } = predictionColumns(context);
  if (distanceMeasure === "euclidean") {
    return predictorStage(context, {
      numFeatures,
      predict: (x) => {
        const values = denseValues(x);
        let best = 0;
        let bestDistance = Number.POSITIVE_INFINITY;
        dense.forEach((center, k) => {
          let distance = 0;
          for (let j = 0; j < numFeatures; j++) {
            const d = (values[j] as number) - (center[j] as number);
            distance += d * d;
          }
          if (distance < bestDistance) {
            bestDistance = distance;
            best = k;
          }
        });
        return best;
      },
    });
  }
  if (distanceMeasure === "cosine") {
    const norms = dense.map((center) => Math.sqrt(dot({ type: "dense", values: center }, center)));
    return predictorStage(context, {
      numFeatures,
      predict: (x) => {
        let squaredNorm = 0;
        forEachActive(x, (_, value) => (squaredNorm += value * value));
        const norm = Math.sqrt(squaredNorm);
        if (!(norm > 0)) throw inputError(featuresCol, "cosine distance is not defined for zero-length vectors");
        let best = 0;
        let bestDistance = Number.POSITIVE_INFINITY;
        dense.forEach((center, k) => {
          const distance = 1 - dot(x, center) / norm / (norms[k] as number);
          if (distance < bestDistance) {
            bestDistance = distance;
            best = k;
          }
        });
        return best;
      },
    });
  }
  throw loadError(context, `unsupported distanceMeasure ${JSON.stringify(distanceMeasure)}`, "distanceMeasure");
}

// ---------------------------------------------------------------------------------------------------------------
// MultilayerPerceptronClassificationModel (§6.2)

async function loadMultilayerPerceptron(context: StageContext): Promise<LoadedStage> {
  const row = await singleDataRow(context);
  // Spark <= 2.4 kept `layers` in data/; 3.0+ moved it to a param (SPARK-30144).
  const layersValue: unknown = row.layers ?? context.param<unknown>("layers");
  const layers = Array.isArray(layersValue) || ArrayBuffer.isView(layersValue) ? Array.from(layersValue as ArrayLike<unknown>, Number) : [];
  if (layers.length < 2 || layers.some((size) => !Number.isInteger(size) || size <= 0)) {
    throw loadError(context, `layers ${JSON.stringify(layersValue)} is not a list of at least 2 positive sizes`, "layers");
  }
  const weights = denseValues(rowVector(context, row, "weights"));
  let expected = 0;
  for (let i = 0; i + 1 < layers.length; i++) expected += (layers[i] as number) * (layers[i + 1] as number) + (layers[i + 1] as number);
  if (weights.length !== expected) throw loadError(context, `weights has ${weights.length} values; layers ${layers.join(",")} need ${expected}`, "weights");

  // Per affine layer: W (nOut x nIn, column-major) then b (nOut), back to back.
  const affineLayers = layers.slice(0, -1).map((nIn, i) => ({ nIn, nOut: layers[i + 1] as number, offset: 0 }));
  let offset = 0;
  for (const layer of affineLayers) {
    layer.offset = offset;
    offset += layer.nIn * layer.nOut + layer.nOut;
  }
  const numFeatures = layers[0] as number;
  const numClasses = layers[layers.length - 1] as number;

  const forward = (x: SparkVector): Float64Array => {
    let activation = Float64Array.from(denseValues(x));
    affineLayers.forEach((layer, index) => {
      const z = new Float64Array(layer.nOut);
      const biasOffset = layer.offset + layer.nIn * layer.nOut;
      for (let r = 0; r < layer.nOut; r++) z[r] = weights[biasOffset + r] as number;
      for (let c = 0; c < layer.nIn; c++) {
        const input = activation[c] as number;
        const column = layer.offset + c * layer.nOut;
        for (let r = 0; r < layer.nOut; r++) z[r] = (z[r] as number) + (weights[column + r] as number) * input;
      }
      // Hidden layers are sigmoid; the last affine output is rawPrediction (softmax comes in raw2probability).
      if (index < affineLayers.length - 1) for (let r = 0; r < z.length; r++) z[r] = sigmoid(z[r] as number);
      activation = z;
    });
    return activation;
  };
  return classifierStage(context, { numClasses, numFeatures, predictRaw: forward, raw2probabilityInPlace: softmaxInPlace });
}

export const linearLoaders: StageLoaders = {
  [`${CLASSIFICATION}.LogisticRegressionModel`]: loadLogisticRegression,
  "org.apache.spark.ml.regression.LinearRegressionModel": loadLinearRegression,
  [`${CLASSIFICATION}.LinearSVCModel`]: loadLinearSVC,
  [`${CLASSIFICATION}.NaiveBayesModel`]: loadNaiveBayes,
  "org.apache.spark.ml.clustering.KMeansModel": loadKMeans,
  [`${CLASSIFICATION}.MultilayerPerceptronClassificationModel`]: loadMultilayerPerceptron,
};
