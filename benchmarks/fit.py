"""`make bench-fit`: batch.fit's scaler + PCA at 6k / 30k / 90k x 2048 rows: seconds, peak memory."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from benchmarks.data import DEFAULT_DATA, require_fruits360


def real_features(data: Path, photos: int, image_size: int, weights: str) -> np.ndarray:
    """(photos, 2048) float32 ResNet50 features of real photos spread over all classes."""
    from benchmarks.featurize import pick_photos
    from models.featurizer import FeaturizerSpec, build_featurizer, featurize_bytes

    spec = FeaturizerSpec("resnet50", weights, image_size).validated()
    paths = pick_photos(data, photos)
    features, _ = featurize_bytes(build_featurizer(spec), [p.read_bytes() for p in paths])
    return features[~np.isnan(features).any(1)]


def real_features_elsewhere(data: Path, photos: int, image_size: int, weights: str) -> np.ndarray:
    """real_features in a child process, so TensorFlow never inflates the driver's memory figures."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(real_features, data, photos, image_size, weights).result()


def synthetic_rows(spark, base: np.ndarray, rows: int, rows_per_partition: int, seed: int):
    """A cached DataFrame of `rows` array<float> features made on the executors: real rows, cycled,
    each times seeded log-normal noise (non-negative like ReLU outputs, and of full rank).

    Partitions of `rows_per_partition` rows, as the job's featurize stage leaves them.
    """
    import pyarrow as pa
    from pyspark import StorageLevel

    shared = spark.sparkContext.broadcast(base)

    def generate(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        base = shared.value
        for batch in batches:
            ids = batch.column(0).to_numpy()
            if not len(ids):
                continue
            rng = np.random.default_rng([seed, int(ids[0])])
            noise = rng.lognormal(0.0, 0.2, (len(ids), base.shape[1])).astype(np.float32)
            x = base[ids % len(base)] * noise
            offsets = pa.array(np.arange(len(x) + 1, dtype=np.int32) * x.shape[1])
            features = pa.ListArray.from_arrays(offsets, pa.array(x.ravel()))
            yield pa.RecordBatch.from_arrays([features], names=["features"])

    partitions = max(1, math.ceil(rows / rows_per_partition))
    frame = spark.range(0, rows, numPartitions=partitions).mapInArrow(generate, "features array<float>")
    frame = frame.persist(StorageLevel.MEMORY_AND_DISK)
    assert frame.count() == rows  # materialise now: generation and caching stay out of the timing
    return frame


class PeakRss:
    """Peak resident memory of a process over a `with` block (Linux: resets VmHWM via clear_refs)."""

    def __init__(self, pid: int | str = "self"):
        self.proc = Path(f"/proc/{pid}")
        self.start_mb = self.peak_mb = float("nan")

    def _read_kb(self, key: str) -> float:
        for line in (self.proc / "status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
        return float("nan")

    def __enter__(self) -> PeakRss:
        with contextlib.suppress(OSError):
            self.start_mb = self._read_kb("VmRSS") / 1024
        # "5" resets the high-water mark to now; where that fails the figure is the lifetime peak.
        with contextlib.suppress(OSError):
            (self.proc / "clear_refs").write_text("5")
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.peak_mb = self._read_kb("VmHWM") / 1024
        except OSError:
            import resource

            self.peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Row:
    rows: int
    partitions: int
    seconds: float
    python_start_mb: float
    python_mb: float
    jvm_mb: float
    k: int


def time_fit(spark, frame, rows: int, dim: int) -> tuple[Row, object]:
    """Wall time of batch.fit.fit_projection with the job's defaults, and peak driver memory."""
    from batch.config import DEFAULT_VARIANCE, MAX_COMPONENTS
    from batch.fit import fit_projection

    jvm_pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    with PeakRss() as python, PeakRss(jvm_pid) as jvm:
        start = time.perf_counter()
        projection = fit_projection(
            frame,
            n_rows=rows,
            dim=dim,
            components=None,
            variance=DEFAULT_VARIANCE,
            max_components=MAX_COMPONENTS,
        )
        seconds = time.perf_counter() - start
    partitions = frame.rdd.getNumPartitions()
    row = Row(rows, partitions, seconds, python.start_mb, python.peak_mb, jvm.peak_mb, projection.k)
    return row, projection


def time_spark_ml(frame, k: int) -> tuple[float, np.ndarray]:
    """The reference: Spark ML's StandardScaler(withMean, withStd) + PCA(k) on the same rows."""
    from pyspark.ml.feature import PCA, StandardScaler
    from pyspark.ml.functions import array_to_vector

    start = time.perf_counter()
    vectors = frame.select(array_to_vector("features").alias("v"))
    scaler = StandardScaler(withMean=True, withStd=True, inputCol="v", outputCol="s").fit(vectors)
    pca = PCA(k=k, inputCol="s").fit(scaler.transform(vectors))
    return time.perf_counter() - start, pca.explainedVariance.toArray()


def main() -> None:
    from batch.session import spark_session

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Fruits-360 (holds Training/)")
    p.add_argument("--sizes", default="6000,30000,90000", help="rows per fit, comma-separated")
    p.add_argument("--photos", type=int, default=300, help="real photos the rows are derived from")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--weights", default="random:0")
    p.add_argument("--rows-per-partition", type=int, default=128, help="the job's images per partition")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--no-reference", action="store_true", help="skip Spark ML's fit at the smallest size")
    args = p.parse_args()

    require_fruits360(args.data, "Training")
    sizes = sorted(int(s) for s in args.sizes.split(","))
    start = time.perf_counter()
    base = real_features_elsewhere(args.data, args.photos, args.image_size, args.weights)
    print(
        f"{len(base)} real photos from {args.data} -> ResNet50 {args.image_size}px (weights "
        f"{args.weights}) in {time.perf_counter() - start:.1f} s; rows = those x seeded noise, "
        f"{args.rows_per_partition} per partition; {os.cpu_count()} cores, {args.master}"
    )
    spark = spark_session(args.master)
    dim = base.shape[1]
    results: list[Row] = []
    reference: tuple[float, float, float] | None = None
    for rows in sizes:
        frame = synthetic_rows(spark, base, rows, args.rows_per_partition, seed=rows)
        if not results:  # warm-up, as after the job's featurize stage: Python workers started
            time_fit(spark, frame, rows, dim)
        row, ours = time_fit(spark, frame, rows, dim)
        results.append(row)
        print(f"  fit {rows:>6} x {dim}: {row.seconds:6.1f} s", flush=True)
        if reference is None and not args.no_reference:
            seconds, theirs = time_spark_ml(frame, ours.k)
            worst = float(np.max(np.abs(ours.explained_variance[: ours.k] / theirs - 1)))
            reference = (rows, seconds, worst)
        frame.unpersist()
    spark.stop()

    print(f"\n{'rows':>7} {'parts':>6} {'fit s':>7} {'py driver MB':>18} {'JVM MB':>8} {'k':>4}")
    for r in results:
        driver = f"{r.python_mb:.0f} (from {r.python_start_mb:.0f})"
        print(f"{r.rows:>7} {r.partitions:>6} {r.seconds:>7.2f} {driver:>18} {r.jvm_mb:>8.0f} {r.k:>4}")
    print(
        "py driver MB: peak RSS of the driver's Python process during the fit (RSS before it); JVM MB: "
        "peak RSS of the driver JVM (in local mode it also runs the executors and holds the cached rows)"
    )
    if reference:
        rows, seconds, worst = reference
        ours_s = next(r.seconds for r in results if r.rows == rows)
        print(
            f"reference: Spark ML StandardScaler + PCA at {rows} rows: {seconds:.1f} s; "
            f"batch.fit / Spark ML = {ours_s / seconds:.2f} (explained variance max rel. diff {worst:.1e})"
        )


if __name__ == "__main__":
    main()
