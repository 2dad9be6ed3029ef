"""Resolves the model's weights once on the driver and ships them to the executors (addFile).

Executors then need neither internet (`imagenet`) nor access to the weights' store (a file or
bucket): Spark serves the driver's copy to each executor, which checks its SHA-256 before use.
Random weights are not shipped: the seed is all there is, and every executor generates the same
tensors from it (featurize_outcome still proves they agree)."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass

from pyspark import SparkFiles
from pyspark.sql import SparkSession

from models.featurizer import FeaturizerSpec, save_resolved_weights, weights_file_suffix

log = logging.getLogger("batch")


@dataclass(frozen=True)
class ShippedWeights:
    """The driver's copy of the weights as the executors see it."""

    name: str  # the file's name among the SparkContext's files
    sha256: str  # weights_digest of its tensors, as the manifest records it

    def local_copy(self) -> str:
        """On an executor (or the driver): the path of this node's copy."""
        return SparkFiles.get(self.name)


def needs_shipping(spec: FeaturizerSpec) -> bool:
    return spec.is_network and not spec.random_weights


# Spark serves an added file to every executor that starts while the SparkContext lives, so the
# driver's copies are removed when this process exits, not when a job ends. The names are
# content-addressed: another job with the same weights reuses the same file.
_FOLDERS: set[str] = set()


def ship_weights(spark: SparkSession, spec: FeaturizerSpec) -> ShippedWeights | None:
    """Resolve spec's weights here, once, and add them to the SparkContext's files; None when
    there is nothing to ship (random weights, pixels)."""
    if not needs_shipping(spec):
        return None
    sc = spark.sparkContext
    # One folder per SparkContext: Spark refuses a second file of the same name from another
    # folder, and a later job in the same context ships the same (content-named) path again.
    folder = os.path.join(tempfile.gettempdir(), f"fruits-weights-{os.getpid()}-{sc.applicationId}")
    if folder not in _FOLDERS:
        os.makedirs(folder, exist_ok=True)
        atexit.register(shutil.rmtree, folder, True)
        _FOLDERS.add(folder)
    staging = tempfile.mkdtemp(dir=folder)
    try:
        suffix = weights_file_suffix(spec)
        digest = save_resolved_weights(spec, os.path.join(staging, f"resolved{suffix}"))
        name = f"{spec.kind}-{digest}{suffix}"
        path = os.path.join(folder, name)
        os.replace(os.path.join(staging, f"resolved{suffix}"), path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    sc.addFile(path)  # a path this context already has is kept as it was (same name, same tensors)
    log.info(
        "weights %s resolved on the driver (sha256 %s), shipped to the executors",
        spec.public_weights,
        digest[:12],
    )
    return ShippedWeights(name=name, sha256=digest)
