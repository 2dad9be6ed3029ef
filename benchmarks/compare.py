"""`make compare`: the pixel baseline vs ResNet50 (fp32 and bf16) on the same data, as one markdown table."""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from batch.config import JobConfig
from benchmarks.data import DEFAULT_DATA, require_fruits360
from evaluation import evaluate
from models.bundle import FEATURES_DIR, version_uri
from models.featurizer import FeaturizerSpec
from models.storage import join, storage_for

RANDOM_NOTE = (
    "ResNet50 runs with RANDOM weights (`random:0`) here: ImageNet weights cannot be downloaded "
    "on this machine, so its accuracy is that of an untrained network, not of ResNet50 as "
    "trained; rerun with `--weights imagenet` (or a weights file) where they can be fetched."
)


def bundle_sizes(root: str, version: str) -> tuple[int, int]:
    """Bytes the service loads (arrays, catalog, manifest) and bytes of the Parquet features."""
    vdir = version_uri(root, version)
    served = features = 0
    for f in storage_for(vdir).list_files(vdir):
        rel = f.uri[len(vdir) :].lstrip("/")
        if rel.startswith(FEATURES_DIR + "/"):
            features += f.size
        elif "/" not in rel:
            served += f.size
    return served, features


def run_featurizer(spark, name: str, args: argparse.Namespace) -> dict:
    from batch.job import run_job

    featurizer, _, precision = name.partition("@")
    spec = FeaturizerSpec.parse(featurizer, args.weights, args.image_size, precision or "fp32")
    out = join(args.out, name.replace(":", "-").replace("@", "-"))
    config = JobConfig(input_uri=join(args.data, "Training"), output_uri=out, spec=spec)
    start = time.perf_counter()
    result = run_job(config, spark)
    job_s = time.perf_counter() - start
    ev = evaluate(out, join(args.data, "Test"), top_k=5)
    served, features = bundle_sizes(out, result.version)
    m = result.manifest
    featurize = m.stages["featurize"]
    return {
        "featurizer": spec.name,
        "precision": m.featurizer.precision,
        "answers": {p.uri: p.predicted for p in ev.predictions},
        "input": f"{spec.image_size}x{spec.image_size}",
        "weights": spec.weights if spec.kind == "resnet50" else "-",
        "train_photos": m.counts.featurized,
        "classes": m.counts.classes,
        "k": m.pca.k,
        "variance_kept": m.pca.explained_variance_kept,
        "test_photos": ev.photos,
        "top1": ev.top1_accuracy,
        "top5": ev.top_k_accuracy,
        "unknown": ev.unknown_rate,
        "job_s": job_s,
        "featurize_img_s": featurize.images_per_s,
        "served_bytes": served,
        "features_bytes": features,
        "eval_img_s": ev.photos / ev.seconds if ev.seconds else None,
        "version": result.version,
    }


def agreement_with_fp32(rows: list[dict]) -> None:
    """Adds `agrees` to each row: the share of Test photos whose top-1 answer equals the fp32
    run's of the same featurizer (None for the fp32 rows themselves)."""
    fp32 = {r["featurizer"]: r["answers"] for r in rows if r["precision"] == "fp32"}
    for r in rows:
        base = fp32.get(r["featurizer"]) if r["precision"] != "fp32" else None
        r["agrees"] = (
            sum(base.get(uri) == answer for uri, answer in r["answers"].items()) / len(r["answers"])
            if base
            else None
        )


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    head = (
        "| featurizer | precision | input | weights | PCA K (variance kept) | top-1 on Test "
        "| top-5 on Test | top-1 agrees with fp32 | unknown rate | job time | featurize images/s "
        "| bundle (served) | + features Parquet |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {r['featurizer']} | {r['precision']} | {r['input']} | {r['weights']} | {r['k']} "
        f"({r['variance_kept']:.1%}) | {r['top1']:.1%} | {r['top5']:.1%} "
        f"| {'-' if r['agrees'] is None else format(r['agrees'], '.1%')} | {r['unknown']:.1%} "
        f"| {r['job_s']:.0f} s | {r['featurize_img_s']:.0f} | {r['served_bytes'] / 1e6:.1f} MB "
        f"| {r['features_bytes'] / 1e6:.1f} MB |\n"
        for r in rows
    )
    first = rows[0]
    notes = [
        f"Data: `{args.data}`: Training split ({first['train_photos']} photos, "
        f"{first['classes']} classes) builds each bundle; accuracy is on the Test split "
        f"({first['test_photos']} photos), computed by `python -m evaluation` through the "
        "service's classification path (nearest class in the PCA space).",
        f"Machine: {os.cpu_count()} cores, {platform.system()} {platform.machine()}, no GPU; "
        f"Spark `{args.master}`; job time is `run_job` wall time (listing, featurize, fit, "
        "project, write, report, publish), excluding the Spark session start; featurize "
        "images/s is the featurize stage alone. Other work on the machine slows either run: "
        f"load average {args.load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end.",
        f"ResNet50 input is {args.image_size}x{args.image_size} px (the photos' native size) "
        "instead of 224 px, to keep the run short on 2 cores.",
        RANDOM_NOTE if args.weights.startswith("random:") else "",
        "Bundle (served) = the arrays, catalog and manifest the service loads; the Parquet "
        "features (full feature vectors, for re-fitting) sit next to them.",
    ]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"# Pixel baseline vs ResNet50 (`make compare`, {stamp})\n\n"
        + head
        + body
        + "\n"
        + "".join(f"- {n}\n" for n in notes if n)
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__)
    p.add_argument("--data", default=str(DEFAULT_DATA), help="Fruits-360 root holding Training/ and Test/")
    p.add_argument("--out", default="build/compare", help="where the bundles are written")
    p.add_argument(
        "--featurizers",
        default="pixels:20,resnet50,resnet50@bf16",
        help="comma-separated; NAME@bf16 runs NAME in bfloat16 and compares its answers with NAME's",
    )
    p.add_argument("--weights", default="random:0", help="ResNet50 weights (imagenet needs a download)")
    p.add_argument("--image-size", type=int, default=100, help="ResNet50 input side")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--markdown", default=None, help="also write the table to this file")
    args = p.parse_args(argv)
    require_fruits360(Path(args.data), "Training", "Test")
    # The job's progress and stage lines are INFO logs: show them while the long runs go.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from batch.session import spark_session

    args.load_before = os.getloadavg()[0]
    spark = spark_session(args.master)
    try:
        rows = [run_featurizer(spark, name, args) for name in args.featurizers.split(",")]
    finally:
        spark.stop()
    agreement_with_fp32(rows)
    text = markdown(rows, args)
    print(text)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
