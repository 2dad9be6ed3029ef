"""`make bench`: bare in-process featurizer (batch 32) vs the Spark job's featurize stage, same photos."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.data import DEFAULT_DATA, require_fruits360
from benchmarks.options import add_precisions


def pick_photos(data: Path, n: int) -> list[Path]:
    """n photos spread evenly over all classes of data/Training."""
    photos = sorted((data / "Training").rglob("*.jpg"))
    if not photos:
        sys.exit(f"no photos under {data}/Training")
    idx = np.linspace(0, len(photos) - 1, min(n, len(photos))).round().astype(int)
    return [photos[i] for i in idx]


def bare_throughput(photos: list[Path], spec, batch_size: int) -> tuple[float, float]:
    """Decode + preprocess + model, in this process, all cores: (img/s, build seconds)."""
    from models.featurizer import build_featurizer, featurize_bytes

    data = [p.read_bytes() for p in photos]
    start = time.perf_counter()
    featurizer = build_featurizer(spec, threads=os.cpu_count())
    build = time.perf_counter() - start
    featurize_bytes(featurizer, data[:batch_size], batch_size=batch_size)  # warm-up
    start = time.perf_counter()
    featurize_bytes(featurizer, data, batch_size=batch_size)
    return len(data) / (time.perf_counter() - start), build


def spark_throughput(
    photos: list[Path], spec, master: str, threads: int | None, batch_size: int, per_partition: int
) -> tuple[float, float]:
    """The job's own featurize stage (list -> executors read + featurize): (warm img/s, cold s)."""
    import pandas as pd

    from batch.config import JobConfig
    from batch.featurize import featurize_images
    from batch.images import images_frame
    from batch.session import spark_session

    spark = spark_session(master)
    config = JobConfig(
        "bench", "bench", spec, batch_size=batch_size, images_per_partition=per_partition, tf_threads=threads
    )
    listing = pd.DataFrame(
        {
            "uri": [str(p) for p in photos],
            "label": [p.parent.name for p in photos],
            "size": [p.stat().st_size for p in photos],
            "etag": "x",
        }
    )

    def stage(rows: pd.DataFrame) -> float:
        frame = featurize_images(
            images_frame(spark, rows, config), spec, threads=threads or 1, batch_size=batch_size
        )
        start = time.perf_counter()
        out = frame.select("uri", "error_code").toPandas()
        assert out["error_code"].isna().all() and len(out) == len(rows)
        return time.perf_counter() - start

    # Cold: Python workers start and build their model once each (cached for later tasks).
    cold = stage(listing.head(spark.sparkContext.defaultParallelism * batch_size))
    warm = stage(listing)
    spark.stop()
    return len(photos) / warm, cold


def main() -> None:
    from models.featurizer import FeaturizerSpec

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--weights", default="random:0")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--master", default="local[2]")
    p.add_argument(
        "--tf-threads",
        type=int,
        default=None,
        help="TF threads per Spark Python worker (default: cores / task slots)",
    )
    p.add_argument("--images-per-partition", type=int, default=128)
    add_precisions(p, "measured one after the other in this run; the first is the baseline of the ratios")
    args = p.parse_args()
    require_fruits360(args.data, "Training")

    photos = pick_photos(args.data, args.images)
    cores = os.cpu_count() or 1
    slots = int(args.master[6:-1]) if args.master[6:-1].isdigit() else cores
    threads = args.tf_threads or max(1, cores // slots)
    print(
        f"{len(photos)} photos from {args.data}, ResNet50 {args.image_size}px "
        f"(weights {args.weights}), batch {args.batch_size}, {cores} cores"
    )
    rates = {}
    for precision in args.precisions:
        spec = FeaturizerSpec("resnet50", args.weights, args.image_size, precision).validated()
        bare, build = bare_throughput(photos, spec, args.batch_size)
        print(
            f"[{precision}] bare featurizer (in-process, batch {args.batch_size}): {bare:7.1f} img/s  "
            f"(model build {build:.1f} s)"
        )
        rate, cold = spark_throughput(
            photos, spec, args.master, threads, args.batch_size, args.images_per_partition
        )
        print(
            f"[{precision}] Spark featurize stage ({args.master}, {threads} TF thread(s)/worker): "
            f"{rate:7.1f} img/s  (cold first stage incl. worker model builds: {cold:.1f} s)"
        )
        print(f"[{precision}] ratio Spark / bare = {rate / bare:.2f}  (target >= 0.80)")
        rates[precision] = (bare, rate)
    base = args.precisions[0]
    for precision in args.precisions[1:]:
        print(
            f"{precision} / {base}: bare {rates[precision][0] / rates[base][0]:.2f}x, "
            f"Spark featurize stage {rates[precision][1] / rates[base][1]:.2f}x  (target >= 1.30)"
        )


if __name__ == "__main__":
    main()
