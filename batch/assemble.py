"""Assembles the bundle from the outputs of the job's steps: reference rows, calibration, manifest."""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import platform
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from batch.config import JobConfig
from batch.fit import Projection, within_class_metric
from batch.probe import PROBE_C, PROBE_MIN_CONFIDENCE, train_probe
from models.bundle import ArtifactBundle
from models.catalog import build_catalog, localize
from models.manifest import (
    Calibration,
    Counts,
    FeatureFiles,
    Manifest,
    Pca,
    Preprocessing,
    Probe,
    Refresh,
    Scaler,
    SkippedPhoto,
    SparkRun,
    Stage,
    Weights,
)
from models.preprocess import PREPROCESSING_VERSION, preprocess_photo
from models.probe import REAL_PREFIX, FruitProbe
from models.scoring import calibrate, plain_coordinates
from models.storage import join

KNOWN_RULE = (
    "known if p(the answer's fruit), the mean of the fruit probe's and the neighbours', >= "
    "probe.min_confidence and the photo is "
    "nearer to the answer's class than to an empty scene, in the weighted and in plain PCA coordinates"
)
_LIBRARIES = (
    "numpy",
    "pillow",
    "tensorflow-cpu",
    "tensorflow",
    "keras",
    "pyspark",
    "pyarrow",
    "scikit-learn",
)


@dataclass(frozen=True)
class StepOutputs:
    """What the job's steps produced, handed to `assemble_bundle` in one typed value."""

    version: str
    weights_sha256: str
    precision: str  # what the executors ran (fp32 where a bf16 request met CPUs without it)
    projection: Projection
    embedded: pd.DataFrame  # uri, label, view, embedding: one row per photo and view, sorted
    feature_files: list[str]
    skipped: list[SkippedPhoto]
    refresh: Refresh
    stages: dict[str, Stage]
    spark: SparkRun
    catalog_overrides: dict | None = None


def assemble_bundle(config: JobConfig, out: StepOutputs) -> ArtifactBundle:
    """The bundle's arrays, its calibration and fruit probe (fitted here) and its manifest."""
    real_rows = out.embedded["label"].str.startswith(REAL_PREFIX).to_numpy()
    e = out.embedded[~real_rows].reset_index(drop=True)
    real = out.embedded[real_rows]
    labels = e["label"].to_numpy().astype(str)
    sources = e["uri"].to_numpy().astype(str)
    views = e["view"].to_numpy().astype(np.int16)
    weighted = np.stack(e["embedding"].to_numpy()).astype(np.float64)
    classes = np.array(sorted(set(labels.tolist())))
    label_idx = np.searchsorted(classes, labels)
    photo_idx = np.unique(sources, return_inverse=True)[1]
    # The search's metric, learnt from the photos themselves (not their views), folded into the
    # embedding map: every consumer of the embeddings (calibration, service, report) measures
    # with it. Symmetric, so the rows map as weighted @ metric and the map as metric @ map.
    metric = within_class_metric(weighted[views == 0], label_idx[views == 0], config.within_class_shrink)
    embeddings = (weighted @ metric).astype(np.float32)
    plain_map = np.linalg.inv(metric) / out.projection.weights[None, :]
    calibration = calibrate(
        embeddings,
        label_idx,
        len(classes),
        groups=photo_idx,
        views=views,
        plain=plain_coordinates(embeddings, plain_map),
    )
    originals = labels[views == 0]
    catalog = build_catalog(classes.tolist(), out.catalog_overrides)
    probe, probe_record = _probe(embeddings, labels, catalog, real, metric)
    manifest = Manifest(
        version=out.version,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        input_uri=config.input_uri,
        featurizer=replace(config.spec, precision=out.precision),
        weights=Weights(
            spec=config.spec.weights, sha256=out.weights_sha256, random=config.spec.random_weights
        ),
        preprocessing=Preprocessing(
            function=f"{preprocess_photo.__module__}.{preprocess_photo.__qualname__}",
            version=PREPROCESSING_VERSION,
        ),
        augment=config.augment,
        feature_dim=int(out.projection.components.shape[1]),
        scaler=Scaler(fitted_with="batch.fit (Spark-aggregated moments)"),
        pca=_pca(config, out.projection),
        calibration=Calibration(
            rule=KNOWN_RULE,
            percentile=calibration.percentile,
            margin=calibration.margin,
            temperature=calibration.temperature,
            temperature_fitted_on=f"{calibration.held_out} leave-one-photo-out answers (NLL)",
            held_out_ece=round(calibration.held_out_ece, 4),
            min_confidence=PROBE_MIN_CONFIDENCE,
            view_distance_factor=calibration.view_factor,
        ),
        counts=Counts(
            listed=len(originals) + len(out.skipped),
            featurized=len(originals),
            skipped=len(out.skipped),
            classes=len(classes),
            rows=len(e),
            augmented_rows=len(e) - len(originals),
            feedback=_feedback_photos(config, sources[views == 0]),
        ),
        class_counts={k: int(v) for k, v in pd.Series(originals).value_counts().sort_index().items()},
        skipped=out.skipped,
        features=FeatureFiles(files=out.feature_files, rows=len(e)),
        stages=out.stages,
        spark=out.spark,
        libraries=_library_versions(),
        refresh=out.refresh,
        probe=probe_record,
    )
    return ArtifactBundle(
        manifest=manifest,
        scaler_mean=out.projection.mean.astype(np.float64),
        scaler_scale=out.projection.scale.astype(np.float64),
        pca_components=metric @ out.projection.embedding_map,
        embeddings=embeddings,
        labels=labels,
        sources=sources,
        views=views,
        classes=classes,
        thresholds=calibration.thresholds,
        plain_thresholds=calibration.plain_thresholds,
        plain_map=plain_map,
        probe_fruits=probe.fruits,
        probe_coef=probe.coef,
        probe_intercept=probe.intercept,
        catalog=catalog,
    )


def _probe(
    embeddings: np.ndarray, labels: np.ndarray, catalog: dict, real: pd.DataFrame, metric: np.ndarray
) -> tuple[FruitProbe, Probe]:
    """The fruit probe, trained on every reference row and on the real photos of fruits that
    some class shows (a fruit without a class has no variety to answer with)."""
    fruit_of = {c: localize(c, catalog[c], "en").fruit for c in set(labels.tolist())}
    fruits = np.array([fruit_of[c] for c in labels])
    real_fruits = real["label"].str.slice(len(REAL_PREFIX)).to_numpy().astype(str)
    usable = np.isin(real_fruits, fruits)
    originals = real["view"].to_numpy() == 0
    rows = embeddings
    if usable.any():
        real_rows = np.stack(real["embedding"].to_numpy()[usable]).astype(np.float64) @ metric
        rows = np.concatenate([embeddings, real_rows])
    probe = train_probe(rows, np.concatenate([fruits, real_fruits[usable]]))
    record = Probe(
        fruits=len(probe.fruits),
        reference_rows=len(embeddings),
        real_photos=int((usable & originals).sum()),
        real_photos_unused=int((~usable & originals).sum()),
        c=PROBE_C,
        min_confidence=PROBE_MIN_CONFIDENCE,
        trained_with=f"scikit-learn {md.version('scikit-learn')} LogisticRegression (multinomial, balanced)",
    )
    return probe, record


def _feedback_photos(config: JobConfig, originals: np.ndarray) -> int:
    if not config.feedback_uri:
        return 0
    prefix = join(config.feedback_uri, "photos") + "/"
    return int(sum(str(uri).startswith(prefix) for uri in originals))


def _pca(config: JobConfig, projection: Projection) -> Pca:
    explained = projection.explained_variance
    return Pca(
        k=projection.k,
        chosen_by=projection.chosen_by,
        variance_target=config.variance,
        explained_variance_ratio=[round(float(v), 6) for v in explained],
        explained_variance_kept=round(float(explained[: projection.k].sum()), 6),
        spread_ceiling_rank=config.spread_ceiling_rank,
        # Unrounded, as applied: the service goes back to plain coordinates with plain_map (built
        # from these and the metric), the manifest records them for the report and for readers.
        component_weights=[float(v) for v in projection.weights],
        within_class_shrink=config.within_class_shrink,
        fitted_with="batch.fit: Spark-aggregated X^T X, numpy eigh on the driver (= pyspark.ml PCA)",
    )


def _library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in _LIBRARIES:
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out
