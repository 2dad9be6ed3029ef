"""Incremental refresh: reuse the previous features of unchanged photos, featurize the rest."""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterator
from functools import partial

import pandas as pd
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batch.config import JobConfig
from batch.featurize import featurize_images
from batch.images import images_frame
from batch.weights import ShippedWeights
from models.bundle import FEATURES_DIR, BundleError, current_version, read_manifest, version_uri
from models.manifest import Manifest, Refresh
from models.preprocess import PREPROCESSING_VERSION
from models.storage import join, storage_for

log = logging.getLogger("batch")

PREVIOUS_SCHEMA = "uri string, label string, etag string, sha256 string, view int, features array<float>"
# A photo's features are reused when its URI and the SHA-256 of its bytes are both unchanged.
# Not the ETag: locally it is mtime+size (a rewrite can keep both), and a multipart S3 ETag is
# no content hash either.
REUSE_KEY = ["uri", "sha256"]


def _content_hashes(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """uri -> uri, sha256 of the photo's bytes now (None if it cannot be read: featurized, and
    then skipped like any unreadable photo)."""
    for batch in batches:
        hashes = []
        for uri in batch["uri"]:
            try:
                hashes.append(hashlib.sha256(storage_for(uri).read_bytes(uri)).hexdigest())
            except Exception:  # noqa: BLE001 - the featurize step reports it
                hashes.append(None)
        yield pd.DataFrame({"uri": batch["uri"], "sha256": hashes})


def _read_feature_files(batches: Iterator[pd.DataFrame], columns: list[str]) -> Iterator[pd.DataFrame]:
    for batch in batches:
        for uri in batch["file"]:
            table = pq.read_table(io.BytesIO(storage_for(uri).read_bytes(uri)), columns=columns)
            yield table.to_pandas()


def read_previous_features(
    spark: SparkSession, root: str, version: str, columns: list[str] | None = None
) -> DataFrame:
    """A version's features Parquet, read by the executors through the storage layer (no S3A)."""
    columns = columns or ["uri", "label", "etag", "sha256", "view", "features"]
    schema = ", ".join(f for f in PREVIOUS_SCHEMA.split(", ") if f.split()[0] in columns)
    files = [
        f.uri
        for f in storage_for(root).list_files(join(version_uri(root, version), FEATURES_DIR))
        if f.uri.endswith(".parquet")
    ]
    if not files:
        return spark.createDataFrame([], schema=schema)
    frame = spark.createDataFrame(pd.DataFrame({"file": files}), schema="file string")
    # One task per core, each reading several files: a Python task has a fixed start cost.
    tasks = min(len(files), spark.sparkContext.defaultParallelism)
    return frame.repartition(tasks).mapInPandas(partial(_read_feature_files, columns=columns), schema=schema)


def _previous_version(config: JobConfig) -> tuple[str | None, Manifest | None, str]:
    """The version to reuse from, its manifest, or why there is none."""
    version = current_version(config.output_uri)
    if version is None:
        return None, None, "no previous version: full run"
    try:
        manifest = read_manifest(config.output_uri, version)
    except BundleError as exc:  # e.g. an older bundle format: its features are not trusted
        return version, None, f"previous version unusable ({exc}): full run"
    if manifest.featurizer != config.spec:
        return version, None, f"previous version {version} used featurizer {manifest.featurizer}: full run"
    if manifest.preprocessing.version != PREPROCESSING_VERSION:
        return version, None, f"previous version {version} used other preprocessing: full run"
    if manifest.augment != config.augment:
        return version, None, f"previous version {version} used other augmented views: full run"
    return version, manifest, ""


def refresh_features(
    spark: SparkSession,
    config: JobConfig,
    listing: pd.DataFrame,
    threads: int,
    weights: ShippedWeights | None = None,
) -> tuple[DataFrame, Refresh]:
    """Features of every listed photo, as featurize_images returns them, and what was reused;
    `weights` are the driver's shipped copy (batch.weights).

    Without --incremental, or with no compatible previous version, every photo is featurized.
    """

    def featurize(rows: pd.DataFrame) -> DataFrame:
        return featurize_images(
            images_frame(spark, rows, config),
            config.spec,
            threads=threads,
            batch_size=config.batch_size,
            augment=config.augment,
            weights=weights,
        )

    if not config.incremental:
        return featurize(listing), Refresh(incremental=False, featurized=len(listing))
    previous, manifest, note = _previous_version(config)
    if manifest is None:
        log.info("incremental refresh: %s", note)
        refresh = Refresh(incremental=True, previous_version=previous, featurized=len(listing), note=note)
        return featurize(listing), refresh

    # Keys first (a few bytes per photo, no feature vectors) to decide on the driver.
    hashes = (
        images_frame(spark, listing, config)
        .select("uri")
        .mapInPandas(_content_hashes, schema="uri string, sha256 string")
        .toPandas()
    )
    listing = listing.merge(hashes, on="uri", how="left")
    old_keys = (
        read_previous_features(spark, config.output_uri, previous, REUSE_KEY).toPandas().drop_duplicates()
    )
    old = read_previous_features(spark, config.output_uri, previous)
    matched = listing.merge(old_keys, on=REUSE_KEY, how="left", indicator=True)
    unchanged = matched["_merge"] == "both"
    to_featurize = listing[~unchanged.to_numpy()]
    to_featurize = to_featurize.drop(columns="sha256")  # featurize computes it again
    # The reused rows get the photo's current ETag (its mtime may have moved, not its bytes).
    keep = spark.createDataFrame(
        listing.loc[unchanged.to_numpy(), [*REUSE_KEY, "etag"]],
        schema="uri string, sha256 string, etag string",
    )
    reused = (
        old.drop("etag")
        .join(F.broadcast(keep), on=REUSE_KEY, how="inner")
        .select(
            "uri",
            "label",
            "etag",
            "sha256",
            "view",
            "features",
            F.lit(None).cast("string").alias("error_code"),
            F.lit(None).cast("string").alias("error"),
            F.lit(manifest.weights.sha256).alias("weights_sha256"),
            F.lit(manifest.featurizer.precision).alias("precision"),
        )
    )
    still_listed = set(listing["uri"])
    dropped = int((~old_keys["uri"].isin(still_listed)).sum())
    refresh = Refresh(
        incremental=True,
        previous_version=previous,
        reused=int(unchanged.sum()),
        featurized=len(to_featurize),
        dropped=dropped,
    )
    log.info(
        "incremental refresh from %s: reusing %d, featurizing %d, dropping %d photos",
        previous,
        refresh.reused,
        refresh.featurized,
        refresh.dropped,
    )
    return reused.unionByName(featurize(to_featurize)), refresh
