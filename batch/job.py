"""Wires the job's steps: list -> featurize -> fit -> project -> calibrate -> write -> publish."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from batch.config import JobConfig
from batch.fit import fit_projection
from batch.images import list_images
from batch.incremental import refresh_features
from batch.progress import StageProgress
from batch.report import run_report
from batch.session import spark_session
from batch.write import project_and_write
from models.bundle import (
    ArtifactBundle,
    current_version,
    list_versions,
    new_version_id,
    publish,
    version_uri,
    write_version,
)
from models.catalog import build_catalog, load_overrides
from models.preprocess import PREPROCESSING_VERSION
from models.scoring import calibrate
from models.storage import StorageError, storage_for

log = logging.getLogger("batch")


class JobError(RuntimeError):
    """The job cannot produce a bundle; the current version is left as it was."""


@dataclass
class JobResult:
    version: str
    bundle_uri: str
    manifest: dict
    skipped: list[dict] = field(default_factory=list)


class _Stages:
    """Wall time and images/s of each stage, for the manifest and the closing summary."""

    def __init__(self):
        self.rows: dict[str, dict] = {}

    def run(self, name: str, images: int, fn, *args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds = time.perf_counter() - start
        self.rows[name] = {
            "seconds": round(seconds, 3),
            "images": images,
            "images_per_s": round(images / seconds, 2) if seconds > 0 else None,
        }
        log.info("stage %-9s %7.1f s  %6d images", name, seconds, images)
        return result


def _tf_threads(spark: SparkSession, config: JobConfig) -> int:
    """TF threads per Python worker: the cores each concurrent task can use."""
    if config.tf_threads:
        return config.tf_threads
    master = spark.sparkContext.master
    if master.startswith("local"):
        return max(1, (os.cpu_count() or 1) // spark.sparkContext.defaultParallelism)
    return int(spark.conf.get("spark.task.cpus", "1"))


def _versions_info() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("numpy", "pillow", "tensorflow-cpu", "tensorflow", "keras", "pyspark", "pyarrow"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out


def run_job(config: JobConfig, spark: SparkSession | None = None) -> JobResult:
    """Run the whole job; on any failure the current version stays untouched."""
    spark = spark or spark_session(config.master, config.spark_conf)
    version = new_version_id()
    root = config.output_uri
    stages = _Stages()
    try:
        return _run(spark, config, version, stages)
    except Exception as exc:
        # The pointer was not moved; drop the half-written version so it cannot be mistaken.
        try:
            if current_version(root) != version:
                storage_for(root).delete_prefix(version_uri(root, version))
        except Exception:  # noqa: BLE001 - the original error matters more
            log.warning("could not remove the incomplete version %s", version)
        outage = None if isinstance(exc, StorageError) else _storage_outage(exc)
        if outage:  # an executor's storage error arrives wrapped in Spark's whole traceback
            raise JobError(f"storage unavailable: {outage}") from None
        raise


def _storage_outage(exc: Exception) -> str | None:
    """The storage layer's own (credential-free) message inside a Spark task failure."""
    for line in reversed(str(exc).splitlines()):
        if "StorageUnavailable: " in line:
            return line.split("StorageUnavailable: ", 1)[1].strip()
    return None


def _run(spark: SparkSession, config: JobConfig, version: str, stages: _Stages) -> JobResult:
    spec = config.spec
    overrides = None
    if config.catalog_uri:  # read first: a bad catalog file should fail before hours of work
        overrides = load_overrides(storage_for(config.catalog_uri).read_bytes(config.catalog_uri))

    listing = stages.run("list", 0, list_images, config)
    stages.rows["list"]["images"] = len(listing)
    if listing.empty:
        raise JobError(f"no .jpg/.jpeg/.png photos found under {config.input_uri}")
    n = len(listing)
    log.info("found %d photos in %d classes under %s", n, listing["label"].nunique(), config.input_uri)

    threads = _tf_threads(spark, config)
    featurized, refresh = refresh_features(spark, config, listing, threads)
    featurized = featurized.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        with StageProgress(spark.sparkContext, "featurize", n, config.progress_interval_s):
            status = stages.run(
                "featurize",
                n,
                lambda: featurized.select(
                    "uri", "label", "view", "error_code", "error", "weights_sha256"
                ).toPandas(),
            )
        skipped = (
            status[status["error_code"].notna()]
            .sort_values("uri")[["uri", "error_code", "error"]]
            .rename(columns={"error_code": "code"})
        )
        skipped_rows = skipped.to_dict("records")
        ok_status = status[status["error_code"].isna()]  # one row per photo and view
        if ok_status.empty:
            raise JobError(f"none of the {n} photos could be featurized")
        weights = ok_status["weights_sha256"].unique().tolist()
        if len(weights) != 1:
            raise JobError(f"executors ran different weights: {sorted(weights)}")
        ok = featurized.filter(F.col("features").isNotNull())
        n_ok = len(ok_status)
        dim = spec.image_size**2 * 3 if spec.kind == "pixels" else 2048
        projection = stages.run(
            "fit",
            n_ok,
            fit_projection,
            ok,
            n_rows=n_ok,
            dim=dim,
            components=config.components,
            variance=config.variance,
            max_components=config.max_components,
        )
        # "write" = features Parquet + projection, one pass over the cached features.
        embedded, written = stages.run(
            "write", n_ok, project_and_write, ok, projection, config.output_uri, version
        )
    finally:
        featurized.unpersist()

    bundle = _assemble(
        config,
        version,
        spec,
        weights[0],
        projection,
        embedded,
        skipped_rows,
        overrides,
        written,
        stages,
        spark,
    )
    # Before the manifest is written, so the manifest can point at it; removed with the version.
    bundle.manifest["report"] = run_report(config.output_uri, bundle)
    bundle.manifest["refresh"] = refresh.to_manifest()
    start = time.perf_counter()
    write_version(config.output_uri, bundle)
    publish(config.output_uri, version)  # the pointer moves last, after a full read-back check
    stages.rows["publish"] = {
        "seconds": round(time.perf_counter() - start, 3),
        "images": n_ok,
        "images_per_s": None,
    }
    _prune(config.output_uri, config.keep_versions, keep=version)
    return JobResult(version, version_uri(config.output_uri, version), bundle.manifest, skipped_rows)


def _assemble(
    config,
    version,
    spec,
    weights_sha256,
    projection,
    embedded: pd.DataFrame,
    skipped,
    overrides,
    written,
    stages,
    spark,
) -> ArtifactBundle:
    labels = embedded["label"].to_numpy().astype(str)
    sources = embedded["uri"].to_numpy().astype(str)
    views = embedded["view"].to_numpy().astype(np.int16)
    embeddings = np.stack(embedded["embedding"].to_numpy()).astype(np.float32)
    classes = np.array(sorted(set(labels.tolist())))
    label_idx = np.searchsorted(classes, labels)
    photo_idx = np.unique(sources, return_inverse=True)[1]
    calibration = calibrate(embeddings, label_idx, len(classes), groups=photo_idx, views=views)
    photos = int((views == 0).sum())
    counts = pd.Series(labels[views == 0]).value_counts().sort_index()
    explained = projection.explained_variance
    manifest = {
        "version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "input_uri": config.input_uri,
        "featurizer": spec.to_dict(),
        "weights": {
            "spec": spec.weights,
            "sha256": weights_sha256,
            "random": spec.random_weights,
            "note": ("RANDOM weights: for offline demos and tests only" if spec.random_weights else ""),
        },
        "image_size": spec.image_size,
        "preprocessing": {
            "function": "models.preprocess.preprocess_image",
            "version": PREPROCESSING_VERSION,
            "doc": "models/preprocess.py: decode, frame the fruit (models/objects.py), resize",
        },
        "augment": config.augment.to_dict(),
        "feature_dim": int(projection.components.shape[1]),
        "scaler": {
            "with_mean": True,
            "with_std": True,
            "fitted_with": "batch.fit (Spark-aggregated moments)",
        },
        "pca": {
            "k": projection.k,
            "chosen_by": projection.chosen_by,
            "variance_target": config.variance,
            "explained_variance_ratio": [round(float(v), 6) for v in explained],
            "explained_variance_kept": round(float(explained[: projection.k].sum()), 6),
            "fitted_with": "batch.fit: Spark-aggregated X^T X, numpy eigh on the driver (= pyspark.ml PCA)",
        },
        "calibration": {
            "rule": "known if distance to the class's nearest training row <= threshold, "
            "nearer than an empty scene, and confidence >= min_confidence; threshold = margin x "
            "percentile of leave-one-photo-out same-class NN distances",
            "percentile": calibration.percentile,
            "margin": calibration.margin,
            "temperature": calibration.temperature,
            "temperature_fitted_on": f"{calibration.held_out} leave-one-photo-out answers (NLL)",
            "held_out_ece": round(calibration.held_out_ece, 4),
            "min_confidence": calibration.min_confidence,
            "view_distance_factor": calibration.view_factor,
        },
        "counts": {
            "listed": photos + len(skipped),
            "featurized": photos,
            "skipped": len(skipped),
            "classes": len(classes),
            "rows": len(embedded),
            "augmented_rows": len(embedded) - photos,
        },
        "class_counts": {k: int(v) for k, v in counts.items()},
        "skipped": skipped,
        "features": {"uri": "features/", "files": written, "rows": len(embedded), "format": "parquet"},
        "stages": stages.rows,
        "spark": {
            "master": spark.sparkContext.master,
            "parallelism": spark.sparkContext.defaultParallelism,
            "version": spark.version,
        },
        "libraries": _versions_info(),
    }
    catalog = build_catalog(classes.tolist(), overrides)
    return ArtifactBundle(
        manifest=manifest,
        scaler_mean=projection.mean.astype(np.float64),
        scaler_scale=projection.scale.astype(np.float64),
        pca_components=projection.components.astype(np.float64),
        embeddings=embeddings,
        labels=labels,
        sources=sources,
        views=views,
        classes=classes,
        thresholds=calibration.thresholds,
        catalog=catalog,
    )


def _prune(root: str, keep_versions: int, keep: str) -> None:
    """Keep the newest `keep_versions` versions (always the current one)."""
    versions = list_versions(root)
    old = [v for v in versions[: max(0, len(versions) - keep_versions)] if v != keep]
    for v in old:
        try:
            storage_for(root).delete_prefix(version_uri(root, v))
            log.info("removed old version %s", v)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not remove old version %s: %s", v, exc)
