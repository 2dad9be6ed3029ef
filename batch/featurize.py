"""Featurizes photos on the executors: one model per Python worker, reused by every batch."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import pandas as pd
from pyspark.sql import DataFrame

from batch.weights import ShippedWeights
from models.augment import AugmentSpec
from models.faults import checkpoint
from models.featurizer import Featurizer, FeaturizerSpec, build_featurizer, featurize_views
from models.manifest import SkippedPhoto
from models.storage import StorageUnavailable, storage_for

FEATURES_SCHEMA = (
    "uri string, label string, etag string, sha256 string, view int, "
    "features array<float>, error_code string, error string, weights_sha256 string, precision string"
)

# Lives as long as the Python worker (spark.python.worker.reuse): built once, used by all tasks.
_FEATURIZERS: dict[tuple[FeaturizerSpec, ShippedWeights | None], Featurizer] = {}


def cached_featurizer(
    spec: FeaturizerSpec, threads: int | None, weights: ShippedWeights | None = None
) -> Featurizer:
    """This worker's model; with shipped weights, built from the driver's copy and refused
    (WeightsMismatch, failing the task) unless its tensors hash to the driver's digest."""
    key = (spec, weights)
    if key not in _FEATURIZERS:
        if weights is None:
            _FEATURIZERS[key] = build_featurizer(spec, threads=threads)
        else:
            _FEATURIZERS[key] = build_featurizer(
                spec, threads=threads, weights_file=weights.local_copy(), expected_sha256=weights.sha256
            )
    return _FEATURIZERS[key]


def _featurize_partition(
    batches: Iterator[pd.DataFrame],
    spec: FeaturizerSpec,
    threads: int | None,
    batch_size: int,
    augment: AugmentSpec,
    weights: ShippedWeights | None,
) -> Iterator[pd.DataFrame]:
    featurizer = cached_featurizer(spec, threads, weights)
    for batch in batches:
        photos, read_errors = [], {}
        for i, uri in enumerate(batch["uri"]):
            try:
                photos.append(storage_for(uri).read_bytes(uri))
            except StorageUnavailable:
                raise  # the store is down, not this photo: fail the job instead of skipping all
            except Exception as exc:  # one unreadable file must not fail the job
                photos.append(b"")
                read_errors[i] = f"cannot read: {type(exc).__name__}: {exc}"
        features, errors = featurize_views(featurizer, photos, batch_size=batch_size, augment=augment)
        out = batch[["uri", "label", "etag"]].copy()
        out["sha256"] = [hashlib.sha256(p).hexdigest() for p in photos]
        out["error_code"] = [
            "unreadable" if i in read_errors else (err.code if err else None) for i, err in enumerate(errors)
        ]
        out["error"] = [read_errors.get(i) or (err.message if err else None) for i, err in enumerate(errors)]
        # Carried per row so the driver can prove every executor ran the same weights.
        out["weights_sha256"] = featurizer.weights_sha256
        out["precision"] = featurizer.precision  # bf16, or fp32 where a CPU lacks bfloat16
        # One row per view (0 = the photo itself); a photo that failed keeps only its view 0.
        rows = []
        for v in range(features.shape[1]):
            part = out.copy()
            part["view"] = v
            part["features"] = [None if err else row for row, err in zip(features[:, v], errors, strict=True)]
            rows.append(part if v == 0 else part[part["error_code"].isna()])
        out = pd.concat(rows, ignore_index=True)[[f.split()[0] for f in FEATURES_SCHEMA.split(", ")]]
        checkpoint("featurize")
        yield out


def featurize_images(
    images: DataFrame,
    spec: FeaturizerSpec,
    *,
    threads: int | None,
    batch_size: int,
    augment: AugmentSpec | None = None,
    weights: ShippedWeights | None = None,
) -> DataFrame:
    """uri, label, etag -> + sha256, view, features (NULL when skipped), error_code, error.

    One row per photo and view: view 0 is the photo, 1..augment.views its augmented views.
    `weights`: the driver's copy of spec's weights (batch.weights); None: random weights or
    pixels, which the executors make themselves.
    """
    fn = partial(
        _featurize_partition,
        spec=spec,
        threads=threads,
        batch_size=batch_size,
        augment=augment or AugmentSpec(),
        weights=weights,
    )
    return images.mapInPandas(fn, schema=FEATURES_SCHEMA)


class FeaturizeError(RuntimeError):
    """No photo could be featurized, or the executors disagree on the model."""


@dataclass(frozen=True)
class FeaturizeOutcome:
    rows: int  # featurized rows: photos and their views
    weights_sha256: str  # the one model every executor ran
    precision: str  # the arithmetic every executor ran it in
    skipped: list[SkippedPhoto]


def featurize_outcome(status: pd.DataFrame, expected_sha256: str | None = None) -> FeaturizeOutcome:
    """From the (uri, view, error_code, error, weights_sha256, precision) of every row: what was
    skipped, and the proof that every executor ran the same model in the same precision (an
    executor without bfloat16 falls back to fp32: mixed features), the one the driver resolved
    when it shipped the weights (expected_sha256); raises FeaturizeError."""
    failed = status[status["error_code"].notna()].sort_values("uri")
    skipped = [SkippedPhoto(uri=r.uri, code=r.error_code, error=r.error) for r in failed.itertuples()]
    ok = status[status["error_code"].isna()]
    if ok.empty:
        raise FeaturizeError(f"none of the {len(status)} photos could be featurized")
    weights = ok["weights_sha256"].unique().tolist()
    if len(weights) != 1:
        raise FeaturizeError(f"executors ran different weights: {sorted(weights)}")
    if expected_sha256 is not None and weights[0] != expected_sha256:
        # Reused features (--incremental) of a version made with other weights of the same spec.
        raise FeaturizeError(
            f"features made with weights {weights[0]}, the driver resolved {expected_sha256}"
        )
    precisions = ok["precision"].unique().tolist()
    if len(precisions) != 1:
        raise FeaturizeError(
            f"executors ran different precisions {sorted(precisions)}: some CPUs lack bfloat16; "
            "use --precision fp32 or executors that all have it"
        )
    return FeaturizeOutcome(rows=len(ok), weights_sha256=weights[0], precision=precisions[0], skipped=skipped)
