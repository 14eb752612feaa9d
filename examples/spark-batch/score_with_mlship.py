"""Score a Spark DataFrame with a model served by mlship, from ``mapInPandas``.

Each executor posts its pandas batches to mlship's MLflow-compatible REST endpoint as ``dataframe_split``
JSON (exactly what ``DataFrame.to_json(orient="split")`` writes) and yields the rows with the predictions
added. Spark does not need a JVM model, MLflow or the model file: only HTTP access to the mlship server.

    spark-submit score_with_mlship.py \
        --url http://mlship.internal:8080 --model breast-cancer@production \
        --input prod.csv --output scored/ --batch-size 500

The HTTP contract this script relies on is tested in mlship's test/e2e/spark-batch-contract.test.ts.
"""

from __future__ import annotations

import argparse
import email.utils
import logging
import random
import time
from typing import Iterator, List, Optional
from urllib.parse import quote

import pandas as pd
import requests
from pyspark.sql import SparkSession
from pyspark.sql.types import ArrayType, DoubleType, LongType, StructField, StructType

LOG = logging.getLogger("score_with_mlship")

# 429: the model's queue is full; 503: the server is draining, the model is loading or a deadline passed.
# Both carry Retry-After; anything else 4xx is our request's fault and retrying cannot help.
RETRY_STATUSES = {429, 502, 503, 504}


class BatchTooLarge(Exception):
    """HTTP 413: the JSON body is over the server's limit (server.bodyLimitBytes / MLSHIP_BODY_LIMIT_BYTES)."""


def invocations_url(base_url: str, model: Optional[str]) -> str:
    """`/invocations` serves the server's default model; `/v1/models/{ref}/invocations` a named one."""
    base = base_url.rstrip("/")
    if not model:
        return f"{base}/invocations"
    return f"{base}/v1/models/{quote(model, safe='@')}/invocations"


def retry_after_seconds(response: requests.Response, attempt: int) -> float:
    """Retry-After in seconds (a number or an HTTP date), else exponential backoff with jitter, capped at 30 s."""
    header = response.headers.get("Retry-After")
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            when = email.utils.parsedate_to_datetime(header)
            if when is not None:
                return max(0.0, when.timestamp() - time.time())
    return min(30.0, 0.5 * 2**attempt) * (0.5 + random.random() / 2)


def post_split(session: requests.Session, url: str, batch: pd.DataFrame, timeout: float, max_attempts: int) -> List[dict]:
    """Posts one batch as MLflow `dataframe_split`; returns the `predictions` records, in row order."""
    # to_json keeps the index and the column names (spaces included) and writes NaN as null, which mlship reads as
    # a missing value. double_precision=15 keeps float64 inputs exact enough for a float32 model.
    body = '{"dataframe_split":' + batch.to_json(orient="split", double_precision=15) + "}"
    for attempt in range(max_attempts):
        try:
            response = session.post(url, data=body.encode("utf-8"), timeout=timeout,
                                    headers={"Content-Type": "application/json"})
        except (requests.ConnectionError, requests.Timeout) as error:
            if attempt + 1 == max_attempts:
                raise
            LOG.warning("mlship unreachable (%s); retrying", error)
            time.sleep(min(30.0, 0.5 * 2**attempt))
            continue
        if response.status_code == 200:
            predictions = response.json()["predictions"]
            if len(predictions) != len(batch):
                raise RuntimeError(f"mlship answered {len(predictions)} predictions for {len(batch)} rows")
            return predictions
        if response.status_code == 413:
            raise BatchTooLarge(response.text)
        if response.status_code in RETRY_STATUSES and attempt + 1 < max_attempts:
            wait = retry_after_seconds(response, attempt)
            LOG.info("mlship answered %s; retrying in %.1f s", response.status_code, wait)
            time.sleep(wait)
            continue
        # MLflow error body: {"error_code": ..., "message": ..., "mlship_code": ..., "field": ...}
        raise RuntimeError(f"mlship answered HTTP {response.status_code}: {response.text}")
    raise RuntimeError(f"mlship did not accept the batch after {max_attempts} attempts")


def score_frame(session: requests.Session, url: str, batch: pd.DataFrame, timeout: float, max_attempts: int) -> List[dict]:
    """Scores a batch; a batch over the body limit is split in halves until each half fits."""
    try:
        return post_split(session, url, batch, timeout, max_attempts)
    except BatchTooLarge:
        if len(batch) <= 1:
            raise RuntimeError("a single row is larger than mlship's body limit; raise server.bodyLimitBytes")
        LOG.warning("a batch of %d rows is over mlship's body limit; splitting it (lower --batch-size)", len(batch))
        half = len(batch) // 2
        return (score_frame(session, url, batch.iloc[:half], timeout, max_attempts)
                + score_frame(session, url, batch.iloc[half:], timeout, max_attempts))


def make_scorer(url: str, features: List[str], batch_size: int, timeout: float, max_attempts: int):
    """The function handed to mapInPandas: runs on the executors, one HTTP session per task."""

    def score_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        with requests.Session() as session:
            for frame in batches:
                for start in range(0, len(frame), batch_size):
                    chunk = frame.iloc[start:start + batch_size]
                    predictions = score_frame(session, url, chunk[features], timeout, max_attempts)
                    out = chunk.copy()
                    out["label"] = [int(p["label"]) for p in predictions]
                    out["probabilities"] = [[float(x) if x is not None else float("nan") for x in p["probabilities"]]
                                            for p in predictions]
                    yield out

    return score_partition


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="mlship server, e.g. http://mlship:8080")
    parser.add_argument("--model", default=None, help="model reference (name, name@production, name@3); "
                        "omit to use the server's default model (/invocations)")
    parser.add_argument("--input", required=True, help="CSV with a header row (the model's input columns)")
    parser.add_argument("--output", required=True, help="folder for the scored rows (Parquet)")
    parser.add_argument("--batch-size", type=int, default=500, help="rows per HTTP request")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request")
    parser.add_argument("--max-attempts", type=int, default=8, help="tries per request on 429/503 and network errors")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)

    spark = SparkSession.builder.appName("score-with-mlship").getOrCreate()
    # Arrow batches feed mapInPandas; keep them close to --batch-size so each task sends whole requests.
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(args.batch_size))
    df = spark.read.csv(args.input, header=True, inferSchema=True)
    features = [c for c in df.columns if c != "label"]
    schema = StructType([f for f in df.schema.fields if f.name not in ("label", "probabilities")] + [
        StructField("label", LongType()),
        StructField("probabilities", ArrayType(DoubleType())),
    ])
    url = invocations_url(args.url, args.model)
    scored = df.drop("label").mapInPandas(
        make_scorer(url, features, args.batch_size, args.timeout, args.max_attempts), schema)
    scored.write.mode("overwrite").parquet(args.output)
    spark.stop()


if __name__ == "__main__":
    main()
