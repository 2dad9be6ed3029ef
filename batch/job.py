"""Wires the job's steps: list -> featurize -> fit -> project and write -> assemble -> publish.

Each step lives in its own module; this one only orders them, times them, and makes sure a
failed run leaves the current version as it was."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from batch.assemble import StepOutputs, assemble_bundle
from batch.config import JobConfig
from batch.featurize import FeaturizeError, featurize_outcome
from batch.fit import fit_projection
from batch.images import list_images
from batch.incremental import refresh_features
from batch.progress import StageClock, StageProgress
from batch.report import run_report
from batch.session import spark_session, threads_per_task
from batch.weights import ShippedWeights, ship_weights
from batch.write import exact_search, index_rows, project_and_write, wants_index
from models.bundle import (
    ArtifactBundle,
    LeaseRenewer,
    PointerMoved,
    PointerState,
    current_version,
    delete_version,
    drop_lease,
    new_version_id,
    pointer_state,
    prune_versions,
    publish,
    version_uri,
    write_version,
)
from models.catalog import load_overrides
from models.faults import checkpoint
from models.featurizer import feature_dim
from models.manifest import Manifest, SkippedPhoto, SparkRun
from models.storage import StorageError, storage_for

log = logging.getLogger("batch")


class JobError(RuntimeError):
    """The job cannot produce a bundle; the current version is left as it was."""


@dataclass(frozen=True)
class JobResult:
    version: str
    bundle_uri: str
    manifest: Manifest

    @property
    def skipped(self) -> list[SkippedPhoto]:
        return self.manifest.skipped


def run_job(config: JobConfig, spark: SparkSession | None = None) -> JobResult:
    """Run the whole job; on any failure the current version stays untouched."""
    spark = spark or spark_session(config.master, config.spark_conf, config.spark_settings)
    version = new_version_id()
    root = config.output_uri
    storage = storage_for(root)
    # What this run builds on: it publishes only if CURRENT is still this at the end.
    base = pointer_state(root, storage)
    # While the lease lives, retention elsewhere keeps this run's folder and every newer version.
    lease = LeaseRenewer(root, version, storage)
    lease.start()
    try:
        # The weights are resolved once, here on the driver, and Spark serves them to the
        # executors: they need no internet and no access to the weights' store.
        return _run(spark, config, version, base, ship_weights(spark, config.spec))
    except Exception as exc:
        # The pointer was not moved; drop the half-written version so it cannot be mistaken.
        try:
            if current_version(root) != version:
                delete_version(root, version, storage)
        except Exception:  # noqa: BLE001 - the original error matters more
            log.warning("could not remove the incomplete version %s", version)
        if isinstance(exc, (FeaturizeError, PointerMoved)):
            raise JobError(str(exc)) from None
        outage = None if isinstance(exc, StorageError) else _task_error(exc, "StorageUnavailable")
        if outage:  # an executor's storage error arrives wrapped in Spark's whole traceback
            raise JobError(f"storage unavailable: {outage}") from None
        mismatch = _task_error(exc, "WeightsMismatch")
        if mismatch:
            raise JobError(f"an executor refused the shipped weights: {mismatch}") from None
        raise
    finally:
        lease.stop()
        try:
            drop_lease(root, version, storage)
        except Exception:  # noqa: BLE001 - a stale lease expires by itself (LEASE_STALE)
            log.warning("could not remove the lease of %s", version)


def _run(
    spark: SparkSession, config: JobConfig, version: str, base: PointerState, weights: ShippedWeights | None
) -> JobResult:
    clock = StageClock()
    overrides = None
    if config.catalog_uri:  # read first: a bad catalog file should fail before hours of work
        overrides = load_overrides(storage_for(config.catalog_uri).read_bytes(config.catalog_uri))

    listing = clock.run("list", len, lambda: list_images(config), rate=False)
    if listing.empty:
        raise JobError(f"no .jpg/.jpeg/.png photos found under {config.input_uri}")
    n = len(listing)
    log.info("found %d photos in %d classes under %s", n, listing["label"].nunique(), config.input_uri)

    threads = threads_per_task(spark, config.tf_threads)
    featurized, refresh = refresh_features(spark, config, listing, threads, weights)
    featurized = featurized.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        status_columns = ("uri", "view", "error_code", "error", "weights_sha256", "precision")
        with StageProgress(spark.sparkContext, "featurize", n, config.progress_interval_s):
            status = clock.run("featurize", n, lambda: featurized.select(*status_columns).toPandas())
        outcome = featurize_outcome(status, weights.sha256 if weights else None)
        checkpoint("featurized")
        ok = featurized.filter(F.col("features").isNotNull())
        dim = feature_dim(config.spec)
        projection = clock.run(
            "fit",
            outcome.rows,
            lambda: fit_projection(
                ok,
                n_rows=outcome.rows,
                dim=dim,
                components=config.components,
                variance=config.variance,
                max_components=config.max_components,
                ceiling_rank=config.spread_ceiling_rank,
            ),
        )
        # "write" = features Parquet + projection, one pass over the cached features.
        embedded, files = clock.run(
            "write", outcome.rows, lambda: project_and_write(ok, projection, config.output_uri, version)
        )
    finally:
        featurized.unpersist()

    sc = spark.sparkContext
    outputs = StepOutputs(
        version=version,
        weights_sha256=outcome.weights_sha256,
        precision=outcome.precision,
        projection=projection,
        embedded=embedded,
        feature_files=files,
        skipped=outcome.skipped,
        refresh=refresh,
        stages=clock.stages,
        spark=SparkRun(master=sc.master, parallelism=sc.defaultParallelism, version=spark.version),
        catalog_overrides=overrides,
    )
    bundle = assemble_bundle(config, outputs)
    if wants_index(config.search_index, len(bundle.embeddings)):
        clock.run("index", len(bundle.embeddings), lambda: index_rows(bundle, config.search_index))
    else:
        bundle.manifest.search = exact_search(config.search_index)
    # Before the manifest is written, so the manifest can point at it; removed with the version.
    bundle.manifest.report = run_report(config.output_uri, bundle)
    # The pointer moves last, after a full read-back check of the version.
    clock.run(
        "publish", outcome.rows, lambda: _write_and_publish(config.output_uri, bundle, base), rate=False
    )
    bundle.manifest.stages = clock.stages
    prune_versions(config.output_uri, config.keep_versions, keep=version)
    return JobResult(version, version_uri(config.output_uri, version), bundle.manifest)


def _write_and_publish(root: str, bundle: ArtifactBundle, base: PointerState) -> None:
    write_version(root, bundle)
    publish(root, bundle.version, expected=base)


def _task_error(exc: Exception, kind: str) -> str | None:
    """The message of our own `kind` of error (StorageUnavailable: credential-free) inside a
    Spark task failure, which carries the executor's whole traceback."""
    for line in reversed(str(exc).splitlines()):
        if f"{kind}: " in line:
            return line.split(f"{kind}: ", 1)[1].strip()
    return None
